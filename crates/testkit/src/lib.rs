//! Test support for mountshare: fixture trees, the Linux kernel NFS client in a qemu VM, libnfs and
//! nfs-ganesha as peers, and the `mountshare serve` process under test.
//!
//! Everything here talks only to 127.0.0.0/8 on the host and to the VM's private 10.0.2.x network.

pub mod ganesha;
pub mod hangfs;
pub mod libnfs;
pub mod origin;
pub mod rclone;
pub mod server;
pub mod tree;
pub mod vm;

mod cpio;
mod error;
mod host;

pub use error::{Error, Result};
pub use server::{free_port, free_ports, wait_for_port};
/// Re-exported so that tests using the kit need no dependency of their own for temporary directories.
pub use tempfile;
