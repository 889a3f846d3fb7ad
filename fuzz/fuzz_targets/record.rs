//! The TCP record-marking decoder (RFC 5531 section 11), as the server and the client read
//! every connection. Input: two bytes of maximum record size, one byte that picks how the
//! stream is cut into reads, then the stream. The records and the error must not depend on
//! how the stream was cut, no record exceeds the maximum, every record re-frames to itself,
//! and a stream of single-fragment records re-frames to exactly the bytes consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mountshare_proto::record::{frame, RecordDecoder, RecordError};

/// The records decoded from `stream` fed in reads of the given sizes, the error that ended it
/// (if any), and the bytes consumed.
fn decode_all(
    stream: &[u8],
    max: usize,
    mut next_read: impl FnMut() -> usize,
) -> (Vec<Vec<u8>>, Option<RecordError>, usize) {
    let mut dec = RecordDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut records = Vec::new();
    let mut fed = 0;
    while fed < stream.len() {
        let n = next_read().clamp(1, stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(r)) => {
                    assert!(r.len() <= max, "record of {} over maximum {max}", r.len());
                    records.push(r.to_vec());
                }
                Ok(None) => break,
                Err(e) => return (records, Some(e), fed - buf.len()),
            }
        }
        assert!(
            dec.pending() <= max,
            "decoder holds {} over {max}",
            dec.pending()
        );
    }
    (records, None, fed - buf.len() - dec.pending())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let mut cut = u32::from(data[2]) | 1;
    let stream = &data[3..];

    let (whole, whole_err, consumed) = decode_all(stream, max, || stream.len());
    let (pieces, pieces_err, _) = decode_all(stream, max, || {
        cut = cut.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (cut >> 16) as usize % 64 + 1
    });
    assert_eq!(whole, pieces, "records depend on how the stream was cut");
    assert_eq!(
        whole_err, pieces_err,
        "error depends on how the stream was cut"
    );

    let mut reframed = Vec::new();
    for r in &whole {
        let mut one = frame(r);
        reframed.extend_from_slice(&one);
        let mut dec = RecordDecoder::new(max);
        assert_eq!(dec.decode(&mut one).unwrap().as_deref(), Some(&r[..]));
        assert!(one.is_empty());
    }
    if whole_err.is_none() && reframed.len() == consumed {
        assert_eq!(
            reframed[..],
            stream[..consumed],
            "single fragments re-frame exactly"
        );
    }
});
