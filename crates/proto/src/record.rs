//! TCP record marking (RFC 5531 section 11): split a byte stream into RPC records and frame
//! outgoing ones. Pure functions over buffers; the caller does the I/O.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// High bit of a fragment header: this fragment ends the record.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Largest fragment a header can describe (31 bits).
pub const MAX_FRAGMENT_LEN: usize = 0x7fff_ffff;

/// Why the stream cannot go on; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// A record would grow beyond the configured maximum.
    #[error("RPC record of at least {len} bytes exceeds the maximum of {max}")]
    TooLarge { len: usize, max: usize },
}

/// Reassembles records from fragments, refusing any record larger than `max_record` as soon as
/// a fragment header announces it, before its bytes are buffered.
#[derive(Debug)]
pub struct RecordDecoder {
    pub max_record: usize,
    /// Fragments of the current record received so far.
    partial: BytesMut,
}

impl RecordDecoder {
    pub fn new(max_record: usize) -> Self {
        Self {
            max_record,
            partial: BytesMut::new(),
        }
    }

    /// Take the next complete record out of `buf`, if it holds one. Consumes complete fragments
    /// from `buf`; leaves an incomplete fragment in place (reserving room for it, which is
    /// bounded by `max_record`). Call again until it returns `Ok(None)`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, RecordError> {
        loop {
            let Some(&[a, b, c, d]) = buf.get(..4) else {
                return Ok(None);
            };
            let hdr = u32::from_be_bytes([a, b, c, d]);
            let last = hdr & LAST_FRAGMENT != 0;
            let len = (hdr & !LAST_FRAGMENT) as usize;
            let total = self.partial.len().saturating_add(len);
            if total > self.max_record {
                return Err(RecordError::TooLarge {
                    len: total,
                    max: self.max_record,
                });
            }
            let needed = 4 + len;
            if buf.len() < needed {
                buf.reserve(needed - buf.len());
                return Ok(None);
            }
            buf.advance(4);
            let frag = buf.split_to(len);
            if !last {
                self.partial.extend_from_slice(&frag);
                continue;
            }
            if self.partial.is_empty() {
                return Ok(Some(frag.freeze()));
            }
            self.partial.extend_from_slice(&frag);
            return Ok(Some(std::mem::take(&mut self.partial).freeze()));
        }
    }

    /// Bytes of an unfinished multi-fragment record held by the decoder.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// The header of a single-fragment record of `len` bytes (last-fragment bit set).
///
/// # Panics
/// If `len` exceeds [`MAX_FRAGMENT_LEN`]; callers frame replies they built themselves, which are
/// bounded far below that. Use [`frame`] for arbitrary lengths.
pub fn encode_record_header(len: usize) -> [u8; 4] {
    assert!(len <= MAX_FRAGMENT_LEN, "record fragment too long");
    (len as u32 | LAST_FRAGMENT).to_be_bytes()
}

/// Frame `payload` as one record (split into several fragments only if it exceeds 2 GiB).
pub fn frame(payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(payload.len() + 4);
    let mut chunks = payload.chunks(MAX_FRAGMENT_LEN).peekable();
    if chunks.peek().is_none() {
        out.put_slice(&encode_record_header(0));
    }
    while let Some(chunk) = chunks.next() {
        let mut hdr = chunk.len() as u32;
        if chunks.peek().is_none() {
            hdr |= LAST_FRAGMENT;
        }
        out.put_u32(hdr);
        out.put_slice(chunk);
    }
    out
}

/// Reserve room for a record header at the end of `out` and return its position; write the
/// record after it, then call [`finish_record`]. Avoids copying a reply to frame it.
pub fn start_record(out: &mut BytesMut) -> usize {
    let start = out.len();
    out.put_u32(0);
    start
}

/// Fill in the header reserved by [`start_record`] at `start`. A `start` that did not come from
/// [`start_record`] on this buffer gets a wrong header, or none if it is past the end.
///
/// # Panics
/// If the record is over 2 GiB.
pub fn finish_record(out: &mut BytesMut, start: usize) {
    let len = out.len().saturating_sub(start).saturating_sub(4);
    if let Some(header) = out.get_mut(start..start.saturating_add(4)) {
        header.copy_from_slice(&encode_record_header(len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_fragment_round_trips() {
        let mut buf = frame(b"hello");
        let mut d = RecordDecoder::new(100);
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(b"hello"))));
        assert!(buf.is_empty());
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn fragments_are_joined() {
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        buf.put_slice(b"abc");
        buf.put_u32(2 | LAST_FRAGMENT);
        buf.put_slice(b"de");
        buf.put_slice(&frame(b"next"));
        let mut d = RecordDecoder::new(100);
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(b"abcde"))));
        assert_eq!(d.decode(&mut buf), Ok(Some(Bytes::from_static(b"next"))));
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn oversized_record_is_refused_from_its_header() {
        let mut buf = BytesMut::new();
        buf.put_u32(0xffff_ffff);
        let mut d = RecordDecoder::new(1 << 20);
        assert!(matches!(
            d.decode(&mut buf),
            Err(RecordError::TooLarge { .. })
        ));
        // Fragments that add up past the maximum are refused too.
        let mut buf = BytesMut::new();
        buf.put_u32(60);
        buf.put_bytes(1, 60);
        buf.put_u32(60 | LAST_FRAGMENT);
        let mut d = RecordDecoder::new(100);
        assert!(matches!(
            d.decode(&mut buf),
            Err(RecordError::TooLarge { len: 120, .. })
        ));
    }

    #[test]
    fn byte_at_a_time_input_assembles() {
        let whole = frame(b"0123456789");
        let mut d = RecordDecoder::new(100);
        let mut buf = BytesMut::new();
        let mut got = None;
        for b in whole.iter() {
            buf.put_u8(*b);
            if let Some(r) = d.decode(&mut buf).unwrap() {
                got = Some(r);
            }
        }
        assert_eq!(got, Some(Bytes::from_static(b"0123456789")));
    }

    #[test]
    fn start_and_finish_frame_in_place() {
        let mut out = BytesMut::new();
        let s = start_record(&mut out);
        out.put_slice(b"xyz");
        finish_record(&mut out, s);
        assert_eq!(out, frame(b"xyz"));
    }
}
