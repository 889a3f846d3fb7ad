//! Property tests: every protocol type decodes to exactly what was encoded, consuming exactly
//! the encoded bytes, which are a multiple of four.

mod common;

use bytes::BytesMut;
use common::*;
use mountshare_proto::mount3::*;
use mountshare_proto::nfs3::*;
use mountshare_proto::portmap::*;
use mountshare_proto::rpc::*;
use mountshare_proto::xdr::{decode_prefix, to_bytes, XdrDecode, XdrEncode};
use proptest::prelude::*;

fn round_trip<T: XdrEncode + XdrDecode + PartialEq + std::fmt::Debug>(v: &T) {
    let bytes = to_bytes(v);
    assert_eq!(
        bytes.len() % 4,
        0,
        "encoding of {v:?} is not 4-byte aligned"
    );
    let (back, used) = decode_prefix::<T>(&bytes).expect("decodes");
    assert_eq!(&back, v);
    assert_eq!(used, bytes.len());
}

macro_rules! round_trip_tests {
    ($($name:ident: $t:ty),* $(,)?) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]
            $( #[test] fn $name(v in arb::<$t>()) { round_trip(&v); } )*
        }
    };
}
for_each_codec_type!(round_trip_tests);

proptest! {
    #[test]
    fn rpc_call_header_round_trips(call in arb::<RpcCall>(), args in bytes(64)) {
        let mut out = BytesMut::new();
        call.encode(&mut out);
        let hdr = out.len();
        out.extend_from_slice(&args);
        let (back, off) = decode_call(&out).expect("valid call decodes");
        prop_assert_eq!(back, call);
        prop_assert_eq!(off, hdr);
    }

    #[test]
    fn client_call_header_round_trips(
        xid in any::<u32>(), prog in any::<u32>(), vers in any::<u32>(),
        procedure in any::<u32>(), cred in arb::<OpaqueAuth>(),
    ) {
        let mut out = BytesMut::new();
        encode_call_header(&mut out, xid, prog, vers, procedure, &cred);
        let (back, off) = decode_call(&out).expect("valid call decodes");
        prop_assert_eq!(off, out.len());
        prop_assert_eq!(back, RpcCall { xid, prog, vers, procedure, cred, verf: OpaqueAuth::none() });
    }

    #[test]
    fn reply_header_round_trips(xid in any::<u32>(), body in arb::<ReplyBody>(), res in bytes(64)) {
        let mut out = BytesMut::new();
        encode_reply_header(&mut out, xid, &body);
        let hdr = out.len();
        out.extend_from_slice(&res);
        prop_assert_eq!(decode_reply_header(&out), Ok((xid, body, hdr)));
    }

    #[test]
    fn readdir_sizes_predict_encoding(res in arb::<ReadDir3ResOk>()) {
        let expect = readdir3_resok_base_len(&res.dir_attributes)
            + res.reply.entries.iter().map(Entry3::encoded_len).sum::<usize>();
        prop_assert_eq!(to_bytes(&ReadDir3Res::Ok(res)).len(), expect);
    }

    #[test]
    fn readdirplus_sizes_predict_encoding(res in arb::<ReadDirPlus3ResOk>()) {
        let expect = readdir3_resok_base_len(&res.dir_attributes)
            + res.reply.entries.iter().map(EntryPlus3::encoded_len).sum::<usize>();
        prop_assert_eq!(to_bytes(&ReadDirPlus3Res::Ok(res)).len(), expect);
    }
}
