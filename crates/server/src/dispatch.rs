//! RPC dispatch: decode the call header, check the credential, and route by program and
//! version to the NFS, MOUNT or PORTMAP handler, which write their results into the reply.
//! Errors in the call itself get the RPC-level reply RFC 5531 prescribes; only a record that is
//! not an RPC call at all gets no reply.
use crate::auth::Creds;
use crate::error;
use crate::export::Export;
use crate::metrics::Slot;
use crate::reply::{Framed, Reply};
use crate::stall::CallKey;
use crate::{mount, nfs, portmap};
use bytes::Bytes;
use mountshare_proto::mount3::MOUNT_PROGRAM;
use mountshare_proto::nfs3::{proc3, NFS3_FHSIZE, NFS_PROGRAM, NFS_V3};
use mountshare_proto::portmap::{PMAP_PROGRAM, PMAP_V2};
use mountshare_proto::rpc::{decode_call, AcceptStat, AuthStat, RejectStat, ReplyBody};
use std::net::SocketAddr;
use std::time::Instant;

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

/// Handle one record received over TCP; returns the framed reply, if one is due.
pub(crate) fn dispatch(export: &Export, ctx: &CallCtx, record: &[u8]) -> Option<Framed> {
    dispatch_inner(export, ctx, record, true, false)
}

/// What the connection needs to know of a call before it is worked on: which lane it takes,
/// and, for an NFS call that may wait on the backend, what makes it equal to another.
pub(crate) struct Peek {
    pub xid: u32,
    /// A READ: it takes the data lane; everything else takes the metadata lane.
    pub is_read: bool,
    /// Set for NFSv3 procedures that reach the backend (they have a deadline).
    pub key: Option<CallKey>,
}

/// Look at a call's header (nothing is worked on). Records that do not decode, and calls the
/// deadline does not apply to, get no key: they are dispatched as they are.
pub(crate) fn peek(record: &Bytes) -> Peek {
    let xid = record
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_be_bytes);
    let none = Peek {
        xid,
        is_read: false,
        key: None,
    };
    let Ok((call, args_at)) = decode_call(record) else {
        return none;
    };
    if call.prog != NFS_PROGRAM || call.vers != NFS_V3 || !nfs::reaches_backend(call.procedure) {
        return none;
    }
    let Some(creds) = Creds::from_auth(&call.cred) else {
        return none;
    };
    let args = record.slice(args_at.min(record.len())..);
    let is_read = call.procedure == proc3::READ;
    // A READ's arguments begin with the file handle (RFC 1813 3.3.6): a length, then bytes.
    let read_handle = is_read.then(|| {
        let len = args
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_be_bytes) as usize;
        args.slice(..(4 + len.min(NFS3_FHSIZE as usize)).min(args.len()))
    });
    Peek {
        xid,
        is_read,
        key: Some(CallKey {
            procedure: call.procedure,
            identity: (creds.uid, creds.gid, creds.gids),
            args,
            read_handle,
        }),
    }
}

/// The reply to NFS call `xid` of `procedure` (arrived at `arrived`) when the backend did not
/// answer in time.
pub(crate) fn backend_late(export: &Export, xid: u32, procedure: u32, arrived: Instant) -> Framed {
    let mut reply = Reply::new(xid, true);
    nfs::failed(procedure, error::backend_late(), &mut reply);
    counted(
        export,
        Slot::of(NFS_PROGRAM, NFS_V3, procedure),
        arrived,
        reply.finish(),
        true,
    )
}

/// The reply to NFS call `xid` of `procedure` (arrived at `arrived`) that joined an equal call:
/// that call's `shared` result (from [`Framed::share`]) under this call's xid.
pub(crate) fn joined(
    export: &Export,
    xid: u32,
    procedure: u32,
    shared: &Bytes,
    arrived: Instant,
) -> Framed {
    let slot = Slot::of(NFS_PROGRAM, NFS_V3, procedure);
    export.metrics().answered(slot, shared, arrived);
    Framed::shared(xid, shared)
}

/// Count `reply` (to a call of `slot`) as answered, and hand it on: the one place a reply to a
/// call is counted, by the status it carries.
fn counted(export: &Export, slot: Slot, arrived: Instant, reply: Framed, framed: bool) -> Framed {
    // The reply after its xid (and its record mark, over TCP).
    let skip = if framed { 8 } else { 4 };
    let body = reply.head.get(skip..).unwrap_or_default();
    export.metrics().answered(slot, body, arrived);
    reply
}

/// A SYSTEM_ERR reply to `record`, for when its handler failed.
pub(crate) fn system_err(record: &[u8]) -> Option<Framed> {
    let xid = u32::from_be_bytes(record.get(..4)?.try_into().ok()?);
    let mut reply = Reply::new(xid, true);
    reply.fail(ReplyBody::Accepted(AcceptStat::SystemErr));
    Some(reply.finish())
}

/// Handle one PORTMAP datagram (UDP carries no record marking, and only PORTMAP is served).
pub(crate) fn dispatch_udp_portmap(
    export: &Export,
    ctx: &CallCtx,
    datagram: &[u8],
) -> Option<Framed> {
    dispatch_inner(export, ctx, datagram, false, true)
}

fn dispatch_inner(
    export: &Export,
    ctx: &CallCtx,
    record: &[u8],
    framed: bool,
    portmap_only: bool,
) -> Option<Framed> {
    let (call, args_at) = match decode_call(record) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, error = %e, "refusing call");
            let (xid, body) = e.reply()?;
            let mut reply = Reply::new(xid, framed);
            reply.fail(body);
            return Some(counted(
                export,
                Slot::UNKNOWN,
                ctx.arrived,
                reply.finish(),
                framed,
            ));
        }
    };
    let args = record.get(args_at..).unwrap_or_default();
    let slot = Slot::of(call.prog, call.vers, call.procedure);
    let mut reply = Reply::new(call.xid, framed);
    let Some(creds) = Creds::from_auth(&call.cred) else {
        reply.fail(ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak)));
        return Some(counted(export, slot, ctx.arrived, reply.finish(), framed));
    };
    let _working = export.metrics().working();
    let outcome = match call.prog {
        PMAP_PROGRAM if call.vers == PMAP_V2 => {
            portmap::call(export, call.procedure, args, &mut reply)
        }
        // rpcbind v3/v4 clients fall back to v2 on this answer.
        PMAP_PROGRAM => Err(AcceptStat::ProgMismatch {
            low: PMAP_V2,
            high: PMAP_V2,
        }),
        _ if portmap_only => Err(AcceptStat::ProgUnavail),
        NFS_PROGRAM if call.vers == NFS_V3 => nfs::call(
            export,
            &creds,
            call.procedure,
            args,
            ctx.zero_copy,
            &mut reply,
        ),
        NFS_PROGRAM => Err(AcceptStat::ProgMismatch {
            low: NFS_V3,
            high: NFS_V3,
        }),
        MOUNT_PROGRAM => mount::call(
            export,
            ctx.peer,
            call.vers,
            call.procedure,
            args,
            &mut reply,
        ),
        _ => Err(AcceptStat::ProgUnavail),
    };
    if let Err(stat) = outcome {
        tracing::debug!(peer = %ctx.peer, prog = call.prog, vers = call.vers, procedure = call.procedure, ?stat, "call not accepted");
        reply.fail(ReplyBody::Accepted(stat));
    }
    Some(counted(export, slot, ctx.arrived, reply.finish(), framed))
}
