//! `MountClient` for MOUNT v3, and `Mounted`: a connection with an export's root handle.

use mountshare_proto::mount3::*;
use mountshare_proto::nfs3::NfsFh3;
use tokio::net::ToSocketAddrs;

use crate::conn::{ConnectOptions, RpcConnection};
use crate::error::{ClientError, Result};
use crate::nfs::NfsClient;
use crate::program::program_client;

program_client! {
    /// A MOUNT v3 client (RFC 1813 appendix I).
    MountClient: MOUNT_PROGRAM, MOUNT_V3
}

impl MountClient {
    /// MNT: the root handle of the export at `path`.
    pub async fn mnt(&self, path: &[u8]) -> Result<MountRes3> {
        self.call(mountproc3::MNT, &DirPath(path.to_vec())).await
    }

    pub async fn dump(&self) -> Result<MountList> {
        self.call(mountproc3::DUMP, &()).await
    }

    pub async fn umnt(&self, path: &[u8]) -> Result<()> {
        self.call(mountproc3::UMNT, &DirPath(path.to_vec())).await
    }

    pub async fn umntall(&self) -> Result<()> {
        self.call(mountproc3::UMNTALL, &()).await
    }

    pub async fn export(&self) -> Result<Exports> {
        self.call(mountproc3::EXPORT, &()).await
    }
}

/// An export mounted over one connection: MNT has been done and `root` is its handle.
#[derive(Debug, Clone)]
pub struct Mounted {
    pub nfs: NfsClient,
    pub mount: MountClient,
    pub root: NfsFh3,
    /// The auth flavors the server listed in its MNT reply.
    pub auth_flavors: Vec<u32>,
    pub path: Vec<u8>,
}

impl Mounted {
    /// Connect to `addr` (one port serving MOUNT and NFS) and mount `path` (e.g. "/").
    pub async fn connect(addr: impl ToSocketAddrs, path: &str) -> Result<Self> {
        Self::connect_with(addr, path, ConnectOptions::default()).await
    }

    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        path: &str,
        opts: ConnectOptions,
    ) -> Result<Self> {
        let conn = RpcConnection::connect_with(addr, opts).await?;
        Self::on(conn, path).await
    }

    /// Mount `path` over an existing connection.
    pub async fn on(conn: RpcConnection, path: &str) -> Result<Self> {
        let mount = MountClient::new(conn.clone());
        match mount.mnt(path.as_bytes()).await? {
            MountRes3::Ok(ok) => Ok(Self {
                nfs: NfsClient::new(conn),
                mount,
                root: NfsFh3 { data: ok.fhandle },
                auth_flavors: ok.auth_flavors,
                path: path.as_bytes().to_vec(),
            }),
            MountRes3::Fail(s) => Err(ClientError::Mount(s)),
        }
    }

    /// UMNT the export (the connection stays open).
    pub async fn unmount(&self) -> Result<()> {
        self.mount.umnt(&self.path).await
    }
}
