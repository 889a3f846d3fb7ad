//! The RPC reply header decoder (RFC 5531), as the client decodes every reply: a decoded header
//! re-encodes to the bytes it came from. An accepted reply's verifier is checked and dropped
//! by the decoder and re-encoded as AUTH_NONE, so it is compared on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mountshare_fuzz::{round_trip, same_modulo_padding};
use mountshare_proto::rpc::*;
use mountshare_proto::xdr::decode_prefix;

fuzz_target!(|data: &[u8]| {
    let Ok((xid, body, results_at)) = decode_reply_header(data) else {
        return;
    };
    assert!(results_at <= data.len());
    let mut again = bytes::BytesMut::new();
    encode_reply_header(&mut again, xid, &body);
    let mut wire = data[..results_at].to_vec();
    if let ReplyBody::Accepted(_) = body {
        // xid, REPLY, MSG_ACCEPTED, then the verifier.
        let (_, verf_len) = decode_prefix::<OpaqueAuth>(&wire[12..]).expect("decoded before");
        round_trip::<OpaqueAuth>(&wire[12..12 + verf_len]);
        let none = [0u8; 8];
        wire.splice(12..12 + verf_len, none);
    }
    same_modulo_padding(&wire, &again, &body);
    assert_eq!(decode_reply_header(&again), Ok((xid, body, again.len())));
});
