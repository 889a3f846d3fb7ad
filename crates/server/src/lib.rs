//! The mountshare NFSv3 server: connections, RPC dispatch, and the NFS, MOUNT and PORTMAP
//! handlers over a [`mountshare_fs::Backend`].

pub mod dircache;
pub mod handle;
pub mod resolve;
