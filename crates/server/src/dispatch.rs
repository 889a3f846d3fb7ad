//! RPC dispatch: decode the call header, check the credential, and route by program and
//! version to the NFS, MOUNT or PORTMAP handler, which write their results into the reply.
//! Errors in the call itself get the RPC-level reply RFC 5531 prescribes; only a record that is
//! not an RPC call at all gets no reply.
use crate::auth::Creds;
use crate::export::Export;
use crate::reply::{Framed, Reply};
use crate::{mount, nfs, portmap};
use mountshare_proto::mount3::MOUNT_PROGRAM;
use mountshare_proto::nfs3::{NFS_PROGRAM, NFS_V3};
use mountshare_proto::portmap::{PMAP_PROGRAM, PMAP_V2};
use mountshare_proto::rpc::{decode_call, AcceptStat, AuthStat, RejectStat, ReplyBody};
use std::net::SocketAddr;

/// What the dispatcher knows of where a call came from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallCtx {
    pub peer: SocketAddr,
    /// READ may splice file pages into the socket instead of copying them. Measured on
    /// loopback (docs/BENCHMARKS.md): splicing wins by a third when a connection has one call
    /// in flight, and loses by about a fifth when several 1 MiB READs are queued behind each
    /// other, so the connection asks for it only when this call is alone.
    pub zero_copy: bool,
}

/// Handle one record received over TCP; returns the framed reply, if one is due.
pub(crate) fn dispatch(export: &Export, ctx: &CallCtx, record: &[u8]) -> Option<Framed> {
    dispatch_inner(export, ctx, record, true, false)
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
            return Some(reply.finish());
        }
    };
    let args = record.get(args_at..).unwrap_or_default();
    let mut reply = Reply::new(call.xid, framed);
    let Some(creds) = Creds::from_auth(&call.cred) else {
        reply.fail(ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak)));
        return Some(reply.finish());
    };
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
    Some(reply.finish())
}
