//! The RPC call header decoder (RFC 5531), as the server decodes every record: a decoded call
//! re-encodes to the header it came from, an AUTH_SYS credential's body round-trips as
//! `authsys_parms`, and a refused header names the xid it was sent with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mountshare_fuzz::{round_trip, same_modulo_padding};
use mountshare_proto::rpc::*;
use mountshare_proto::xdr::to_bytes;

fuzz_target!(|data: &[u8]| {
    match decode_call(data) {
        Ok((call, args_at)) => {
            assert!(args_at <= data.len());
            let again = to_bytes(&call);
            same_modulo_padding(&data[..args_at], &again, &call);
            assert_eq!(decode_call(&again), Ok((call.clone(), again.len())));
            if call.cred.flavor == AUTH_SYS {
                assert!(matches!(call.cred.as_auth_sys(), Some(Ok(_))));
                round_trip::<AuthSys>(&call.cred.body);
            }
        }
        Err(e) => {
            if let Some((xid, _)) = e.reply() {
                assert_eq!(xid.to_be_bytes()[..], data[..4], "reply to another xid");
            }
        }
    }
});
