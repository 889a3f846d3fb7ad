//! `PortmapClient` for PORTMAP v2 (RFC 1833 section 3).

use mountshare_proto::portmap::*;

use crate::error::Result;
use crate::program::program_client;

program_client! {
    /// A PORTMAP v2 client: on port 111, or on a server's own port where it answers PORTMAP too.
    PortmapClient: PMAP_PROGRAM, PMAP_V2
}

impl PortmapClient {
    /// The port of `prog`/`vers` over `prot`, 0 if not registered.
    pub async fn getport(&self, prog: u32, vers: u32, prot: u32) -> Result<u32> {
        let m = Mapping {
            prog,
            vers,
            prot,
            port: 0,
        };
        self.call(pmapproc::GETPORT, &m).await
    }

    pub async fn dump(&self) -> Result<PmapList> {
        self.call(pmapproc::DUMP, &()).await
    }
}
