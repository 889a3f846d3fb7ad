//! Replies: a reply being built ([`Reply`]: record mark, RPC reply header, results), the
//! complete framed reply ([`Framed`]: head, READ data as its [`Tail`], XDR padding), the
//! decoding of procedure arguments, and the return of a reply's READ buffer to its pool once it is sent.
//! Handlers write into a [`Reply`]; the connection writes out a [`Framed`].
use crate::buffers::{BufferPool, DataBuf};
use crate::splice::SplicedData;
use bytes::{Bytes, BytesMut};
use mountshare_proto::record::{encode_record_header, start_record};
use mountshare_proto::rpc::{encode_reply_header, AcceptStat, ReplyBody};
use mountshare_proto::xdr::{decode_prefix, XdrDecode, XdrEncode};

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
}

const ZEROS: [u8; 3] = [0; 3];

impl Framed {
    /// Bytes of READ data after the head.
    pub(crate) fn tail_len(&self) -> usize {
        self.tail_len
    }

    pub(crate) fn pad(&self) -> &'static [u8] {
        &ZEROS[..(4 - self.tail_len % 4) % 4]
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
    pub(crate) fn share(&mut self) -> Bytes {
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
        Bytes::from([body, tail, self.pad()].concat())
    }

    /// The reply to call `xid` that is `shared` (from [`Framed::share`]); the shared bytes are
    /// sent as they are, not copied.
    pub(crate) fn shared(xid: u32, shared: &Bytes) -> Framed {
        let mut framed = Framed {
            head: BytesMut::with_capacity(8),
            tail: Some(Tail::Bytes(shared.clone())),
            tail_len: shared.len(),
        };
        let len = 4 + shared.len() + framed.pad().len();
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
    }

    pub(crate) fn finish(mut self) -> Framed {
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
