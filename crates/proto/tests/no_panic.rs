//! Property tests: no input, random or a corrupted valid message, panics a decoder.

mod common;

use bytes::BytesMut;
use common::*;
use mountshare_proto::mount3::*;
use mountshare_proto::nfs3::*;
use mountshare_proto::portmap::*;
use mountshare_proto::record::{frame, RecordDecoder};
use mountshare_proto::rpc::*;
use mountshare_proto::xdr::{decode, to_bytes, XdrDecode, XdrEncode};
use proptest::prelude::*;

/// Random bytes, biased towards short buffers and small length words so that decoders get past
/// their first field often.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(0xff), any::<u8>()],
            0..512
        ),
    ]
}

/// A valid encoding with some bytes overwritten and possibly cut short.
fn corrupt<T: XdrEncode + std::fmt::Debug + 'static>(
    v: impl Strategy<Value = T>,
) -> impl Strategy<Value = Vec<u8>> {
    (
        v,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(v, edits, cut, do_cut)| {
            let mut b = to_bytes(&v).to_vec();
            if !b.is_empty() {
                for (i, byte) in edits {
                    let i = i.index(b.len());
                    b[i] = byte;
                }
                if do_cut {
                    b.truncate(cut.index(b.len()));
                }
            }
            b
        })
}

fn decodes_without_panic<T: XdrDecode>(b: &[u8]) {
    let _ = decode::<T>(b);
}

macro_rules! no_panic_tests {
    ($($name:ident: $t:ty),* $(,)?) => {
        mod random {
            use super::*;
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(128))]
                $( #[test] fn $name(b in noise()) { decodes_without_panic::<$t>(&b); } )*
            }
        }
        mod corrupted {
            use super::*;
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(128))]
                $( #[test] fn $name(b in corrupt(arb::<$t>())) { decodes_without_panic::<$t>(&b); } )*
            }
        }
    };
}
for_each_codec_type!(no_panic_tests);

fn call_bytes() -> impl Strategy<Value = Vec<u8>> {
    arb::<RpcCall>().prop_map(|c| to_bytes(&c).to_vec())
}

fn reply_bytes() -> impl Strategy<Value = Vec<u8>> {
    (any::<u32>(), arb::<ReplyBody>()).prop_map(|(xid, body)| {
        let mut out = BytesMut::new();
        encode_reply_header(&mut out, xid, &body);
        out.to_vec()
    })
}

/// Apply random edits and a cut to raw bytes.
fn mangle(b: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        b,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(mut b, edits, cut)| {
            if !b.is_empty() {
                for (i, byte) in edits {
                    let i = i.index(b.len());
                    b[i] = byte;
                }
                if let Some(c) = cut {
                    b.truncate(c.index(b.len()));
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_call_never_panics(b in prop_oneof![noise(), mangle(call_bytes())]) {
        if let Ok((_, off)) = decode_call(&b) {
            prop_assert!(off <= b.len());
        }
    }

    /// The READ file-handle peek never panics, stays within the handle's cap, and finds exactly
    /// the encoded handle (without its padding) of arguments that decode.
    #[test]
    fn read_file_peek_is_the_encoded_handle(b in prop_oneof![noise(), corrupt(arb::<Read3Args>())]) {
        let peeked = peek_read3_file(&b);
        prop_assert!(b.starts_with(peeked));
        prop_assert!(peeked.len() <= 4 + NFS3_FHSIZE as usize);
        if let Ok(args) = decode::<Read3Args>(&b) {
            let handle = to_bytes(&args.file);
            prop_assert_eq!(peeked, &handle[..4 + args.file.data.len()]);
        }
    }

    #[test]
    fn decode_reply_header_never_panics(b in prop_oneof![noise(), mangle(reply_bytes())]) {
        if let Ok((_, _, off)) = decode_reply_header(&b) {
            prop_assert!(off <= b.len());
        }
    }

    /// Random bytes fed in random chunks: the decoder errors or yields records, never panics,
    /// never yields a record over its maximum, and never buffers more than it was given.
    #[test]
    fn record_decoder_never_panics(
        b in noise(),
        chunks in prop::collection::vec(1usize..40, 1..20),
        max in 0usize..300,
    ) {
        let mut d = RecordDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut rest = &b[..];
        let mut chunks = chunks.into_iter().cycle();
        while !rest.is_empty() {
            let n = chunks.next().unwrap_or(1).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(r)) => prop_assert!(r.len() <= max),
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
        }
    }

    /// Valid records split at arbitrary points come out intact and in order.
    #[test]
    fn record_decoder_reassembles_any_chunking(
        records in prop::collection::vec(bytes(100), 1..6),
        chunks in prop::collection::vec(1usize..50, 1..20),
    ) {
        let mut stream = Vec::new();
        for r in &records {
            stream.extend_from_slice(&frame(r));
        }
        let mut d = RecordDecoder::new(100);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &stream[..];
        let mut chunks = chunks.into_iter().cycle();
        while !rest.is_empty() {
            let n = chunks.next().unwrap_or(1).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(r) = d.decode(&mut buf).expect("valid stream") {
                got.push(r.to_vec());
            }
        }
        prop_assert_eq!(got, records);
    }
}
