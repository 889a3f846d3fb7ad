//! `PortmapClient` for PORTMAP v2 (RFC 1833 section 3).

use mountshare_proto::portmap::*;

use tokio::net::ToSocketAddrs;

use crate::conn::RpcConnection;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct PortmapClient {
    conn: RpcConnection,
}

impl PortmapClient {
    pub fn new(conn: RpcConnection) -> Self {
        Self { conn }
    }

    /// Connect over TCP with default options (e.g. to port 111, or to a server's own port).
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self> {
        Ok(Self::new(RpcConnection::connect(addr).await?))
    }

    pub fn conn(&self) -> &RpcConnection {
        &self.conn
    }

    pub async fn null(&self) -> Result<()> {
        self.conn
            .call_typed(PMAP_PROGRAM, PMAP_V2, pmapproc::NULL, &())
            .await
    }

    /// The port of `prog`/`vers` over `prot`, 0 if not registered.
    pub async fn getport(&self, prog: u32, vers: u32, prot: u32) -> Result<u32> {
        let m = Mapping {
            prog,
            vers,
            prot,
            port: 0,
        };
        self.conn
            .call_typed(PMAP_PROGRAM, PMAP_V2, pmapproc::GETPORT, &m)
            .await
    }

    pub async fn dump(&self) -> Result<PmapList> {
        self.conn
            .call_typed(PMAP_PROGRAM, PMAP_V2, pmapproc::DUMP, &())
            .await
    }
}
