//! An async NFSv3, MOUNT v3 and PORTMAP v2 client on tokio, used by the tests, `doctor` and
//! `bench`. One [`RpcConnection`] carries many concurrent calls; [`NfsClient`],
//! [`MountClient`] and [`PortmapClient`] put typed procedures on top, and [`Mounted`] does the
//! MNT that gives an export's root handle. [`find_mount_port`] finds where MOUNT answers.

mod conn;
mod error;
mod mount;
mod mount_port;
mod nfs;
mod portmap;
mod program;

pub use conn::{auth_sys_root, ConnectOptions, RpcConnection};
pub use error::{ClientError, Result};
pub use mount::{MountClient, Mounted};
pub use mount_port::{find_mount_port, MountPortError, NoAnswer};
pub use mountshare_proto as proto;
pub use nfs::{NfsClient, ReadDirPlusPager};
pub use portmap::PortmapClient;
