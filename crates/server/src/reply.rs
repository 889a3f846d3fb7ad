//! Replies: a reply being built ([`Reply`]: record mark, RPC reply header, results), the
//! complete framed reply ([`Framed`]: head, READ data as its [`Tail`], XDR padding), the
//! decoding of procedure arguments, and the return of a reply's READ buffer to its pool once it is sent.
//! Handlers write into a [`Reply`]; the connection writes out a [`Framed`].
//!
//! A reply carries what it says ([`Outcome`]: its [`Status`], and the file bytes of a READ),
//! recorded as its results are written, so that the metrics never read a reply back.
use crate::buffers::{BufferPool, DataBuf};
use crate::splice::SplicedData;
use bytes::{Bytes, BytesMut};
use mountshare_proto::mount3::{Exports, MountList, MountRes3, MountStat3};
use mountshare_proto::nfs3::{encode_read3_resok_head, NfsRes, NfsStat3, PostOpAttr};
use mountshare_proto::portmap::PmapList;
use mountshare_proto::record::{encode_record_header, start_record};
use mountshare_proto::rpc::{encode_reply_header, AcceptStat, ReplyBody};
use mountshare_proto::xdr::{decode_prefix, XdrDecode, XdrEncode};

/// The status a reply carries: the `status` label of its call in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// The RPC-level outcome, for a call refused or accepted with results that have no status
    /// of their own (NULL, DUMP, GETPORT, ...): `SUCCESS`, `GARBAGE_ARGS`, `AUTH_ERROR`, ...
    Rpc(ReplyBody),
    /// The `nfsstat3` that begins an NFSv3 procedure's results.
    Nfs(NfsStat3),
    /// The `mountstat3` of a MNT result.
    Mount(MountStat3),
}

impl Status {
    /// Its name as the RFCs spell it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Rpc(body) => body.name(),
            Status::Nfs(s) => s.name(),
            Status::Mount(s) => s.name(),
        }
    }
}

/// What a reply says, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub status: Status,
    /// The file bytes a successful READ sends.
    pub read_bytes: u64,
}

impl Outcome {
    const SUCCESS: Outcome = Outcome {
        status: Status::Rpc(ReplyBody::SUCCESS),
        read_bytes: 0,
    };
}

/// Procedure results, which know the status they carry.
pub(crate) trait Results: XdrEncode {
    fn status(&self) -> Status {
        Status::Rpc(ReplyBody::SUCCESS)
    }
}

impl<T: XdrEncode, F: XdrEncode> Results for NfsRes<T, F> {
    fn status(&self) -> Status {
        Status::Nfs(NfsRes::status(self))
    }
}

impl Results for MountRes3 {
    fn status(&self) -> Status {
        Status::Mount(MountRes3::status(self))
    }
}

// Results with no status of their own.
impl Results for MountList {}
impl Results for Exports {}
impl Results for PmapList {}
impl Results for u32 {}
impl Results for bool {}

/// A reply being built: its record header is reserved, then the RPC reply header, then results.
pub(crate) struct Reply {
    out: BytesMut,
    record_start: Option<usize>,
    body_start: usize,
    xid: u32,
    /// Bytes sent after `out` (READ data), then zero padding to a multiple of 4.
    tail: Option<Tail>,
    /// What the reply says, as written so far.
    outcome: Outcome,
}

/// READ data sent after a reply's head: from a buffer, or spliced from a pipe.
pub(crate) enum Tail {
    Buf(DataBuf),
    Pipe(SplicedData),
    /// Read out of a pipe, to be shared with calls that joined this one.
    Bytes(Bytes),
}

impl Tail {
    fn len(&self) -> usize {
        match self {
            Tail::Buf(b) => b.data().len(),
            Tail::Pipe(p) => p.len(),
            Tail::Bytes(b) => b.len(),
        }
    }
}

/// A complete reply: `head`, then the tail (READ data), then zero padding (XDR).
pub(crate) struct Framed {
    pub head: BytesMut,
    pub(crate) tail: Option<Tail>,
    tail_len: usize,
    /// What the reply says.
    pub outcome: Outcome,
}

/// A reply without its record mark and xid, and what it says: what a call that joined another
/// sends under its own xid (see `stall`).
#[derive(Debug, Clone)]
pub(crate) struct SharedReply {
    pub bytes: Bytes,
    pub outcome: Outcome,
}

const ZEROS: [u8; 3] = [0; 3];

impl Framed {
    /// Bytes of READ data after the head.
    pub(crate) fn tail_len(&self) -> usize {
        self.tail_len
    }

    pub(crate) fn pad(&self) -> &'static [u8] {
        ZEROS.get(..(4 - self.tail_len % 4) % 4).unwrap_or_default()
    }

    /// Bytes of the whole reply on the wire: head, READ data and padding.
    pub(crate) fn wire_len(&self) -> usize {
        self.head.len() + self.tail_len + self.pad().len()
    }

    /// The whole reply in one buffer, for replies with no spliced data (UDP, tests).
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let tail = match &self.tail {
            Some(Tail::Buf(b)) => b.data(),
            Some(Tail::Bytes(b)) => b,
            _ => &[],
        };
        [&self.head[..], tail, self.pad()].concat()
    }

    /// A copy of this reply without its record mark and xid, for calls that joined it
    /// ([`Framed::shared`] sends it under their own xid). Spliced data is read out of its pipe
    /// first, and this reply then sends that copy.
    pub(crate) fn share(&mut self) -> SharedReply {
        if let Some(Tail::Pipe(p)) = &mut self.tail {
            let data = p.read_out();
            self.tail_len = data.len();
            self.tail = Some(Tail::Bytes(data.into()));
        }
        let tail: &[u8] = match &self.tail {
            Some(Tail::Buf(b)) => b.data(),
            Some(Tail::Bytes(b)) => b,
            _ => &[],
        };
        // A framed reply: 4 bytes of record mark, then the xid.
        let body = self.head.get(8..).unwrap_or_default();
        SharedReply {
            bytes: Bytes::from([body, tail, self.pad()].concat()),
            outcome: self.outcome,
        }
    }

    /// The reply to call `xid` that is `shared` (from [`Framed::share`]); the shared bytes are
    /// sent as they are, not copied.
    pub(crate) fn shared(xid: u32, shared: &SharedReply) -> Framed {
        let bytes = &shared.bytes;
        let mut framed = Framed {
            head: BytesMut::with_capacity(8),
            tail: Some(Tail::Bytes(bytes.clone())),
            tail_len: bytes.len(),
            outcome: shared.outcome,
        };
        let len = 4 + bytes.len() + framed.pad().len();
        framed.head.extend_from_slice(&encode_record_header(len));
        framed.head.extend_from_slice(&xid.to_be_bytes());
        framed
    }

    /// Give the READ buffer and a large reply buffer back to their pool, once written. (A pipe
    /// goes back to its own pool when dropped.)
    pub(crate) fn recycle(self, buffers: &BufferPool) {
        if let Some(Tail::Buf(b)) = self.tail {
            buffers.give_back(b);
        }
        buffers.give_back_reply(self.head);
    }
}

impl Reply {
    pub(crate) fn new(xid: u32, framed: bool) -> Reply {
        let mut out = BytesMut::with_capacity(512);
        let record_start = framed.then(|| start_record(&mut out));
        let body_start = out.len();
        Reply {
            out,
            record_start,
            body_start,
            xid,
            tail: None,
            outcome: Outcome::SUCCESS,
        }
    }

    /// An accepted, successful reply with no results (a `void` procedure), in place of
    /// whatever was written.
    pub(crate) fn success(&mut self) {
        self.out.truncate(self.body_start);
        self.tail = None;
        encode_reply_header(&mut self.out, self.xid, &ReplyBody::SUCCESS);
        self.outcome = Outcome::SUCCESS;
    }

    /// A successful reply whose NFSv3 results, which begin with `status`, the caller encodes
    /// into the buffer returned (results written piece by piece, as a READ's head or a
    /// READDIRPLUS entry by entry).
    pub(crate) fn results_buf(&mut self, status: NfsStat3) -> &mut BytesMut {
        self.success();
        self.outcome.status = Status::Nfs(status);
        &mut self.out
    }

    /// A successful reply carrying `results`, and their status.
    pub(crate) fn results(&mut self, results: &impl Results) {
        self.success();
        results.encode(&mut self.out);
        self.outcome.status = results.status();
    }

    /// A successful READ of `count` bytes: the results up to the data, which must follow as
    /// the tail ([`Reply::set_tail`]).
    pub(crate) fn read_ok(&mut self, file_attributes: &PostOpAttr, count: u32, eof: bool) {
        let out = self.results_buf(NfsStat3::Ok);
        encode_read3_resok_head(out, file_attributes, count, eof);
        self.outcome.read_bytes = u64::from(count);
    }

    /// Make room for a reply of `size` bytes at once, in a buffer from `buffers` (given back by
    /// [`Framed::recycle`]), instead of growing the buffer as results are written.
    pub(crate) fn reserve(&mut self, buffers: &BufferPool, size: usize) {
        if self.out.capacity() >= size {
            return;
        }
        let mut big = buffers.take_reply(size);
        big.extend_from_slice(&self.out);
        self.out = big;
    }

    /// Send `data` after what was written (it must end an XDR opaque whose length was written).
    pub(crate) fn set_tail(&mut self, data: Tail) {
        self.tail = Some(data);
    }

    /// Replace whatever was written with a reply of `body` and no results.
    pub(crate) fn fail(&mut self, body: ReplyBody) {
        self.out.truncate(self.body_start);
        self.tail = None;
        encode_reply_header(&mut self.out, self.xid, &body);
        self.outcome = Outcome {
            status: Status::Rpc(body),
            read_bytes: 0,
        };
    }

    pub(crate) fn finish(mut self) -> Framed {
        let tail_len = self.tail.as_ref().map_or(0, Tail::len);
        let mut framed = Framed {
            head: BytesMut::new(),
            tail: self.tail.take(),
            tail_len,
            outcome: self.outcome,
        };
        if let Some(start) = self.record_start {
            let len = self.out.len() - start - 4 + tail_len + framed.pad().len();
            if let Some(mark) = self.out.get_mut(start..start + 4) {
                mark.copy_from_slice(&encode_record_header(len));
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use mountshare_proto::nfs3::{GetAttr3Res, Read3Res, Read3ResFail};
    use mountshare_proto::rpc::RejectStat;

    fn said(reply: Reply) -> (&'static str, u64) {
        let o = reply.finish().outcome;
        (o.status.name(), o.read_bytes)
    }

    #[test]
    fn a_reply_carries_the_status_it_wrote() {
        let mut r = Reply::new(1, true);
        r.success();
        assert_eq!(said(r), ("SUCCESS", 0));
        let mut r = Reply::new(1, true);
        r.results(&GetAttr3Res::Fail(NfsStat3::Stale, ()));
        assert_eq!(said(r), ("NFS3ERR_STALE", 0));
        let mut r = Reply::new(1, true);
        r.results(&MountRes3::Fail(MountStat3::Acces));
        assert_eq!(said(r), ("MNT3ERR_ACCES", 0));
        let mut r = Reply::new(1, true);
        r.results(&PmapList(Vec::new()));
        assert_eq!(said(r), ("SUCCESS", 0));
        // A failure replaces whatever was written, READ bytes included.
        let mut r = Reply::new(1, true);
        r.read_ok(&PostOpAttr(None), 4096, false);
        r.fail(ReplyBody::Accepted(AcceptStat::GarbageArgs));
        assert_eq!(said(r), ("GARBAGE_ARGS", 0));
        let mut r = Reply::new(1, false);
        r.fail(ReplyBody::Denied(RejectStat::AuthError(
            mountshare_proto::rpc::AuthStat::TooWeak,
        )));
        assert_eq!(said(r), ("AUTH_ERROR", 0));
        let mut r = Reply::new(1, true);
        r.results(&Read3Res::Fail(NfsStat3::Jukebox, Read3ResFail::default()));
        assert_eq!(said(r), ("NFS3ERR_JUKEBOX", 0));
    }

    /// Results written over others (a READDIRPLUS whose first entry did not fit) replace them:
    /// the bytes and the status are those of a reply that had only the last.
    #[test]
    fn results_replace_what_was_written() {
        let mut fresh = Reply::new(1, true);
        fresh.results(&GetAttr3Res::Fail(NfsStat3::TooSmall, ()));
        let fresh = fresh.finish();
        let mut over = Reply::new(1, true);
        over.results_buf(NfsStat3::Ok).extend_from_slice(&[0; 40]);
        over.set_tail(Tail::Bytes(Bytes::from_static(b"abc")));
        over.results(&GetAttr3Res::Fail(NfsStat3::TooSmall, ()));
        let over = over.finish();
        assert_eq!(over.to_vec(), fresh.to_vec());
        assert_eq!(over.outcome, fresh.outcome);
        assert_eq!(over.outcome.status.name(), "NFS3ERR_TOOSMALL");
    }

    #[test]
    fn a_shared_reply_keeps_its_status_and_bytes() {
        let mut r = Reply::new(1, true);
        r.read_ok(&PostOpAttr(None), 3, true);
        r.set_tail(Tail::Bytes(Bytes::from_static(b"abc")));
        let mut framed = r.finish();
        let whole = framed.to_vec();
        let shared = framed.share();
        assert_eq!(shared.outcome, framed.outcome);
        assert_eq!(shared.outcome.read_bytes, 3);
        let joined = Framed::shared(2, &shared);
        assert_eq!(joined.outcome, framed.outcome);
        // The same reply under the other xid.
        let mut expected = whole.clone();
        if let Some(xid) = expected.get_mut(4..8) {
            xid.copy_from_slice(&2u32.to_be_bytes());
        }
        assert_eq!(joined.to_vec(), expected);
    }
}
