//! The mountshare NFSv3 server: connections, RPC dispatch, and the NFS, MOUNT and PORTMAP
//! handlers over a [`mountshare_fs::Backend`].

pub mod auth;
mod buffers;
mod config;
mod connection;
pub mod dircache;
pub mod dispatch;
pub mod error;
pub mod export;
pub mod handle;
mod mount;
pub mod nfs;
mod portmap;
mod reply;
pub mod resolve;
mod server;
mod splice;

pub use config::{Limits, ServerConfig, DEFAULT_FSID};
pub use export::Export;
pub use server::{Server, ServerError};
