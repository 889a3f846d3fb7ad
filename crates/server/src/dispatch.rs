//! RPC dispatch: decode the call header, check the credential, route by program and version,
//! and build the whole framed reply. Errors in the call itself get the RPC-level reply RFC 5531
//! prescribes; only a record that is not an RPC call at all gets no reply.
use crate::auth::Creds;
use crate::buffers::DataBuf;
use crate::export::Export;
use crate::splice::Pipe;
use crate::{mount, nfs, portmap};
use bytes::BytesMut;
use mountshare_proto::mount3::MOUNT_PROGRAM;
use mountshare_proto::nfs3::{NFS_PROGRAM, NFS_V3};
use mountshare_proto::portmap::{PMAP_PROGRAM, PMAP_V2};
use mountshare_proto::record::{encode_record_header, start_record};
use mountshare_proto::rpc::{
    decode_call, encode_reply_header, AcceptStat, AuthStat, RejectStat, ReplyBody,
};
use mountshare_proto::xdr::{decode_prefix, XdrDecode, XdrEncode};
use std::net::SocketAddr;

/// What the dispatcher knows of where a call came from.
#[derive(Debug, Clone, Copy)]
pub struct CallCtx {
    pub peer: SocketAddr,
    /// READ may splice file pages into the socket instead of copying them. Measured on
    /// loopback (docs/BENCHMARKS.md): splicing wins by a third when a connection has one call
    /// in flight, and loses by about a fifth when several 1 MiB READs are queued behind each
    /// other, so the connection asks for it only when this call is alone.
    pub zero_copy: bool,
}

/// A reply being built: its record header is reserved, then the RPC reply header, then results.
pub(crate) struct Reply {
    out: BytesMut,
    record_start: Option<usize>,
    body_start: usize,
    xid: u32,
    /// Bytes sent after `out` (READ data), then zero padding to a multiple of 4.
    tail: Option<Tail>,
}

/// READ data sent after a reply's head: from a buffer, or spliced from a pipe.
pub(crate) enum Tail {
    Buf(DataBuf),
    Pipe(Pipe),
}

impl Tail {
    fn len(&self) -> usize {
        match self {
            Tail::Buf(b) => b.data().len(),
            Tail::Pipe(p) => p.pending,
        }
    }
}

/// A complete reply: `head`, then the tail (READ data), then zero padding (XDR).
pub struct Framed {
    pub head: BytesMut,
    pub(crate) tail: Option<Tail>,
    tail_len: usize,
}

const ZEROS: [u8; 3] = [0; 3];

impl Framed {
    /// Bytes of READ data after the head.
    pub fn tail_len(&self) -> usize {
        self.tail_len
    }

    pub fn pad(&self) -> &'static [u8] {
        &ZEROS[..(4 - self.tail_len % 4) % 4]
    }

    /// The whole reply in one buffer, for replies with no spliced data (UDP, tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let tail = match &self.tail {
            Some(Tail::Buf(b)) => b.data(),
            _ => &[],
        };
        [&self.head[..], tail, self.pad()].concat()
    }

    /// Give the READ buffer or pipe back to its pool, once written.
    pub(crate) fn recycle(self, export: &Export) {
        match self.tail {
            Some(Tail::Buf(b)) => export.read_buffers.give_back(b),
            Some(Tail::Pipe(p)) => export.pipes.give_back(p),
            None => {}
        }
    }
}

impl Reply {
    fn new(xid: u32, framed: bool) -> Reply {
        let mut out = BytesMut::with_capacity(512);
        let record_start = framed.then(|| start_record(&mut out));
        let body_start = out.len();
        Reply {
            out,
            record_start,
            body_start,
            xid,
            tail: None,
        }
    }

    /// Start an accepted, successful reply; results follow.
    pub(crate) fn success(&mut self) {
        encode_reply_header(&mut self.out, self.xid, &ReplyBody::SUCCESS);
    }

    /// A successful reply carrying `results`.
    pub(crate) fn results(&mut self, results: &impl XdrEncode) {
        self.success();
        results.encode(&mut self.out);
    }

    /// The buffer results are written into, after [`Reply::success`].
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Send `data` after what was written (it must end an XDR opaque whose length was written).
    pub(crate) fn set_tail(&mut self, data: Tail) {
        self.tail = Some(data);
    }

    /// Replace whatever was written with a reply of `body` and no results.
    fn fail(&mut self, body: ReplyBody) {
        self.out.truncate(self.body_start);
        self.tail = None;
        encode_reply_header(&mut self.out, self.xid, &body);
    }

    fn finish(mut self) -> Framed {
        let tail_len = self.tail.as_ref().map_or(0, Tail::len);
        let mut framed = Framed {
            head: BytesMut::new(),
            tail: self.tail.take(),
            tail_len,
        };
        if let Some(start) = self.record_start {
            let len = self.out.len() - start - 4 + tail_len + framed.pad().len();
            self.out[start..start + 4].copy_from_slice(&encode_record_header(len));
        }
        framed.head = self.out;
        framed
    }
}

/// Decode procedure arguments; anything undecodable is GARBAGE_ARGS (RFC 5531 section 9).
/// Trailing bytes are tolerated, as by the Linux server.
pub(crate) fn decode_args<T: XdrDecode>(args: &[u8]) -> Result<T, AcceptStat> {
    decode_prefix(args).map(|(v, _)| v).map_err(|e| {
        tracing::debug!(error = %e, "garbage arguments");
        AcceptStat::GarbageArgs
    })
}

/// Handle one record received over TCP; returns the framed reply, if one is due.
pub fn dispatch(export: &Export, ctx: &CallCtx, record: &[u8]) -> Option<Framed> {
    dispatch_inner(export, ctx, record, true, false)
}

/// A SYSTEM_ERR reply to `record`, for when its handler failed.
pub fn system_err(record: &[u8]) -> Option<Framed> {
    let xid = u32::from_be_bytes(record.get(..4)?.try_into().ok()?);
    let mut reply = Reply::new(xid, true);
    reply.fail(ReplyBody::Accepted(AcceptStat::SystemErr));
    Some(reply.finish())
}

/// Handle one PORTMAP datagram (UDP carries no record marking, and only PORTMAP is served).
pub fn dispatch_udp_portmap(export: &Export, ctx: &CallCtx, datagram: &[u8]) -> Option<Framed> {
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
        MOUNT_PROGRAM => mount::call(export, ctx, call.vers, call.procedure, args, &mut reply),
        _ => Err(AcceptStat::ProgUnavail),
    };
    if let Err(stat) = outcome {
        tracing::debug!(peer = %ctx.peer, prog = call.prog, vers = call.vers, procedure = call.procedure, ?stat, "call not accepted");
        reply.fail(ReplyBody::Accepted(stat));
    }
    Some(reply.finish())
}
