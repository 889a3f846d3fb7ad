//! PORTMAP version 2 (RFC 1833 section 3), answering for this server only: NFS v3 and MOUNT
//! (v1, v3) over TCP are on the server's port; nothing is served over UDP, and nothing else is
//! registered. Clients with no port options (the kernel, `mount.nfs`, the kubelet) ask here.
use crate::export::Export;
use crate::procedure::{unavailable, void, Handler, Procedure, Run};
use crate::reply::{decode_args, Reply};
use mountshare_proto::mount3::{MOUNT_PROGRAM, MOUNT_V3};
use mountshare_proto::nfs3::{NFS_PROGRAM, NFS_V3};
use mountshare_proto::portmap::*;
use mountshare_proto::rpc::AcceptStat;

/// The PORTMAP procedures, by number (RFC 1833 section 3.2). CALLIT is not served.
pub(crate) static PROCEDURES: [Procedure; pmapproc::NAMES.len()] = [
    local(pmapproc::NULL, void),
    local(pmapproc::SET, refuse_registration),
    local(pmapproc::UNSET, refuse_registration),
    local(pmapproc::GETPORT, getport),
    local(pmapproc::DUMP, dump),
    local(pmapproc::CALLIT, unavailable),
];

/// PORTMAP procedure `number`.
const fn local(number: u32, call: Run) -> Procedure {
    Procedure::local(&pmapproc::NAMES, number, call)
}

fn getport(h: &Handler<'_>, args: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    let m: Mapping = decode_args(args)?;
    let export = h.export;
    let port = if registered(export)
        .iter()
        .any(|r| r.prog == m.prog && r.vers == m.vers && r.prot == m.prot)
    {
        if m.prog == PMAP_PROGRAM {
            u32::from(export.portmap_port().unwrap_or(export.port()))
        } else {
            u32::from(export.port())
        }
    } else {
        0
    };
    reply.results(&port);
    Ok(())
}

fn dump(h: &Handler<'_>, _: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    reply.results(&PmapList(registered(h.export)));
    Ok(())
}

/// SET and UNSET: registrations are not accepted from anyone; answer "false" as a portmapper
/// does.
fn refuse_registration(_: &Handler<'_>, args: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    let _: Mapping = decode_args(args)?;
    reply.results(&false);
    Ok(())
}

fn registered(export: &Export) -> Vec<Mapping> {
    let port = u32::from(export.port());
    let mut list = vec![
        Mapping {
            prog: NFS_PROGRAM,
            vers: NFS_V3,
            prot: IPPROTO_TCP,
            port,
        },
        Mapping {
            prog: MOUNT_PROGRAM,
            vers: MOUNT_V3,
            prot: IPPROTO_TCP,
            port,
        },
        Mapping {
            prog: MOUNT_PROGRAM,
            vers: 1,
            prot: IPPROTO_TCP,
            port,
        },
    ];
    let pm = u32::from(export.portmap_port().unwrap_or(export.port()));
    list.push(Mapping {
        prog: PMAP_PROGRAM,
        vers: PMAP_V2,
        prot: IPPROTO_TCP,
        port: pm,
    });
    if export.portmap_port().is_some() {
        list.push(Mapping {
            prog: PMAP_PROGRAM,
            vers: PMAP_V2,
            prot: IPPROTO_UDP,
            port: pm,
        });
    }
    list
}
