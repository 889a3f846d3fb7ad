//! RPC dispatch: decode a call once ([`peek`]: its header and credential, which lane it takes,
//! what makes it equal to another), then route it by program and version to its row of the
//! program's procedure table ([`crate::procedure`]), which writes the results into the reply.
//! Errors in the call itself get the RPC-level reply RFC 5531 prescribes; only a record that is
//! not an RPC call at all gets no reply. Every reply is counted here, by the status it carries.
use crate::auth::Creds;
use crate::error;
use crate::export::Export;
use crate::metrics::Slot;
use crate::procedure::{Handler, Lane, Procedure};
use crate::reply::{Framed, Reply, SharedReply};
use crate::stall::CallKey;
use crate::{mount, nfs, portmap};
use bytes::Bytes;
use mountshare_proto::mount3::{MOUNT_PROGRAM, MOUNT_V3};
use mountshare_proto::nfs3::{peek_read3_file, NFS_PROGRAM, NFS_V3};
use mountshare_proto::portmap::{PMAP_PROGRAM, PMAP_V2};
use mountshare_proto::rpc::{
    decode_call, AcceptStat, AuthStat, CallError, RejectStat, ReplyBody, RpcCall,
};
use std::net::SocketAddr;
use std::time::Instant;

/// A program served: its number, the versions served, its `program` label in the metrics, and
/// its procedure table.
struct Program {
    number: u32,
    label: &'static str,
    versions: &'static [u32],
    procedures: &'static [Procedure],
}

/// Every program served, by TCP (PORTMAP also over UDP).
static PROGRAMS: [Program; 3] = [
    Program {
        number: NFS_PROGRAM,
        label: "nfs",
        versions: &[NFS_V3],
        procedures: &nfs::PROCEDURES,
    },
    // Versions 1 and 3 share every procedure's encoding except MNT, which only version 3
    // serves (version 1's 32-byte handles cannot hold ours).
    Program {
        number: MOUNT_PROGRAM,
        label: "mount",
        versions: &[1, MOUNT_V3],
        procedures: &mount::PROCEDURES,
    },
    Program {
        number: PMAP_PROGRAM,
        label: "portmap",
        versions: &[PMAP_V2],
        procedures: &portmap::PROCEDURES,
    },
];

/// The `program` and `procedure` labels of every metrics [`Slot`], in slot order: each program's
/// procedures, then its `other` (a procedure or version not served), then `other`/`other` (an
/// unknown program, or a call that could not be read).
pub(crate) fn slot_labels() -> Vec<(&'static str, &'static str)> {
    PROGRAMS
        .iter()
        .flat_map(|p| {
            let named = p.procedures.iter().map(|r| (p.label, r.name));
            named.chain([(p.label, "other")])
        })
        .chain([("other", "other")])
        .collect()
}

/// The metrics slot of a call to `prog` version `vers`, procedure `procedure`.
fn slot(prog: u32, vers: u32, procedure: u32) -> Slot {
    let mut base = 0;
    for p in &PROGRAMS {
        let n = p.procedures.len();
        if p.number == prog {
            let at = procedure as usize;
            let served = p.versions.contains(&vers) && at < n;
            return Slot(base + if served { at } else { n });
        }
        base += n + 1;
    }
    Slot(base)
}

/// The slot of calls that could not be read: `other`/`other`.
fn unknown_slot() -> Slot {
    slot(0, 0, 0)
}

/// What the dispatcher knows of where a call came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallCtx {
    pub peer: SocketAddr,
    /// READ may splice file pages into the socket instead of copying them. Measured on
    /// loopback (docs/BENCHMARKS.md): splicing wins by a third when a connection has one call
    /// in flight, and loses by about a fifth when several 1 MiB READs are queued behind each
    /// other, so the connection asks for it only when this call is alone.
    pub zero_copy: bool,
    /// When the call's record was read: its latency is counted from here.
    pub arrived: Instant,
}

/// A call, decoded once: its header, its caller and its arguments.
pub(crate) struct Call {
    pub header: RpcCall,
    /// The caller, if the credential's flavor is one this server accepts (AUTH_SYS, AUTH_NONE).
    pub creds: Option<Creds>,
    pub args: Bytes,
}

/// Decode a record's call header and credential; a record that is no call we can answer is
/// `Err`, and [`dispatch`] answers it as RFC 5531 says.
fn decode(record: &Bytes) -> Result<Call, CallError> {
    let (header, args_at) = decode_call(record)?;
    let creds = Creds::from_auth(&header.cred);
    let args = record.slice(args_at.min(record.len())..);
    Ok(Call {
        header,
        creds,
        args,
    })
}

/// What the connection needs to know of a call before it is worked on, and the call itself.
pub(crate) struct Peek {
    /// The decoded call (or why it is none), for [`dispatch`].
    pub call: Result<Call, CallError>,
    /// Which lane it waits in.
    pub lane: Lane,
    /// Set for a call that may wait on the backend: what makes it equal to another.
    pub key: Option<CallKey>,
}

impl Peek {
    /// The call's xid, when it could be read.
    pub(crate) fn xid(&self) -> Option<u32> {
        self.call.as_ref().ok().map(|c| c.header.xid)
    }
}

/// Decode a record's call once, and look at what it is (nothing is worked on). Records that do
/// not decode, and calls that do not reach the backend, get no key: they are dispatched as they
/// are.
pub(crate) fn peek(record: &Bytes) -> Peek {
    let call = decode(record);
    let row = call.as_ref().ok().and_then(|c| {
        let h = &c.header;
        (h.prog == NFS_PROGRAM && h.vers == NFS_V3)
            .then(|| nfs::PROCEDURES.get(h.procedure as usize))
            .flatten()
    });
    let key = match (&call, row) {
        (Ok(c), Some(r)) if r.reaches_backend.is_some() => c.creds.as_ref().map(|creds| CallKey {
            procedure: c.header.procedure,
            identity: (creds.uid, creds.gid, creds.gids.clone()),
            args: c.args.clone(),
            read_handle: (r.lane == Lane::Data).then(|| c.args.slice_ref(peek_read3_file(&c.args))),
        }),
        _ => None,
    };
    let lane = match (&key, row) {
        (Some(_), Some(r)) => r.lane,
        _ => Lane::Meta,
    };
    Peek { call, lane, key }
}

/// The reply to NFS call `xid` of `procedure` (arrived at `arrived`) when the backend did not
/// answer in time: its results failed with JUKEBOX, as its row says.
pub(crate) fn backend_late(export: &Export, xid: u32, procedure: u32, arrived: Instant) -> Framed {
    let mut reply = Reply::new(xid, true);
    let failed = nfs::PROCEDURES
        .get(procedure as usize)
        .and_then(|r| r.reaches_backend);
    match failed {
        Some(failed) => failed(error::backend_late(), &mut reply),
        // Only calls that reach the backend have a deadline.
        None => reply.fail(ReplyBody::Accepted(AcceptStat::SystemErr)),
    }
    counted(
        export,
        slot(NFS_PROGRAM, NFS_V3, procedure),
        arrived,
        reply.finish(),
    )
}

/// The reply to NFS call `xid` of `procedure` (arrived at `arrived`) that joined an equal call:
/// that call's `shared` result (from [`Framed::share`]) under this call's xid.
pub(crate) fn joined(
    export: &Export,
    xid: u32,
    procedure: u32,
    shared: &SharedReply,
    arrived: Instant,
) -> Framed {
    let slot = slot(NFS_PROGRAM, NFS_V3, procedure);
    counted(export, slot, arrived, Framed::shared(xid, shared))
}

/// Count `reply` (to a call of `slot`) as answered, and hand it on: the one place a reply to a
/// call is counted, by the status it carries.
fn counted(export: &Export, slot: Slot, arrived: Instant, reply: Framed) -> Framed {
    export.metrics().answered(slot, reply.outcome, arrived);
    reply
}

/// A SYSTEM_ERR reply to call `xid`, for when its handler failed.
pub(crate) fn system_err(xid: u32) -> Framed {
    let mut reply = Reply::new(xid, true);
    reply.fail(ReplyBody::Accepted(AcceptStat::SystemErr));
    reply.finish()
}

/// Answer one call received over TCP (decoded by [`peek`]); returns the framed reply, if one is
/// due.
pub(crate) fn dispatch(
    export: &Export,
    ctx: &CallCtx,
    call: Result<Call, CallError>,
) -> Option<Framed> {
    dispatch_inner(export, ctx, call, true, false)
}

/// Handle one PORTMAP datagram (UDP carries no record marking, and only PORTMAP is served).
pub(crate) fn dispatch_udp_portmap(
    export: &Export,
    ctx: &CallCtx,
    datagram: &[u8],
) -> Option<Framed> {
    let call = decode(&Bytes::copy_from_slice(datagram));
    dispatch_inner(export, ctx, call, false, true)
}

fn dispatch_inner(
    export: &Export,
    ctx: &CallCtx,
    call: Result<Call, CallError>,
    framed: bool,
    portmap_only: bool,
) -> Option<Framed> {
    let call = match call {
        Ok(call) => call,
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, error = %e, "refusing call");
            let (xid, body) = e.reply()?;
            let mut reply = Reply::new(xid, framed);
            reply.fail(body);
            return Some(counted(export, unknown_slot(), ctx.arrived, reply.finish()));
        }
    };
    let h = &call.header;
    let slot = slot(h.prog, h.vers, h.procedure);
    let mut reply = Reply::new(h.xid, framed);
    let Some(creds) = &call.creds else {
        reply.fail(ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak)));
        return Some(counted(export, slot, ctx.arrived, reply.finish()));
    };
    let _working = export.metrics().working();
    let answered = match route(h, portmap_only) {
        Ok(row) => {
            let handler = Handler {
                export,
                creds,
                peer: ctx.peer,
                vers: h.vers,
                zero_copy: ctx.zero_copy,
            };
            (row.call)(&handler, &call.args, &mut reply)
        }
        Err(stat) => Err(stat),
    };
    if let Err(stat) = answered {
        tracing::debug!(peer = %ctx.peer, prog = h.prog, vers = h.vers, procedure = h.procedure, ?stat, "call not accepted");
        reply.fail(ReplyBody::Accepted(stat));
    }
    Some(counted(export, slot, ctx.arrived, reply.finish()))
}

/// The row of the procedure `call` names, or why there is none.
fn route(call: &RpcCall, portmap_only: bool) -> Result<&'static Procedure, AcceptStat> {
    if portmap_only && call.prog != PMAP_PROGRAM {
        return Err(AcceptStat::ProgUnavail);
    }
    let program = PROGRAMS
        .iter()
        .find(|p| p.number == call.prog)
        .ok_or(AcceptStat::ProgUnavail)?;
    if !program.versions.contains(&call.vers) {
        // rpcbind v3/v4 clients fall back to v2 on this answer.
        let low = program.versions.iter().copied().min().unwrap_or_default();
        let high = program.versions.iter().copied().max().unwrap_or_default();
        return Err(AcceptStat::ProgMismatch { low, high });
    }
    program
        .procedures
        .get(call.procedure as usize)
        .ok_or(AcceptStat::ProcUnavail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_named_by_its_rfc_at_its_number() {
        use mountshare_proto::{mount3::mountproc3, nfs3::proc3, portmap::pmapproc};
        let names: [&[&str]; 3] = [&proc3::NAMES, &mountproc3::NAMES, &pmapproc::NAMES];
        for (program, names) in PROGRAMS.iter().zip(names) {
            let rows: Vec<_> = program.procedures.iter().map(|r| r.name).collect();
            assert_eq!(rows, names, "{}", program.label);
        }
    }

    #[test]
    fn slots_match_their_labels() {
        let labels = slot_labels();
        let label = |s: Slot| labels.get(s.0).copied();
        assert_eq!(label(slot(NFS_PROGRAM, 3, 6)), Some(("nfs", "READ")));
        assert_eq!(label(slot(NFS_PROGRAM, 3, 22)), Some(("nfs", "other")));
        assert_eq!(label(slot(NFS_PROGRAM, 4, 1)), Some(("nfs", "other")));
        assert_eq!(label(slot(MOUNT_PROGRAM, 1, 1)), Some(("mount", "MNT")));
        assert_eq!(label(slot(MOUNT_PROGRAM, 2, 1)), Some(("mount", "other")));
        assert_eq!(
            label(slot(PMAP_PROGRAM, 2, 3)),
            Some(("portmap", "GETPORT"))
        );
        assert_eq!(label(slot(1, 1, 1)), Some(("other", "other")));
        assert_eq!(unknown_slot().0, labels.len() - 1);
    }
}
