//! The PORTMAP v2 argument and result decoders (RFC 1833): the first byte is
//! `procedure * 2` for the arguments, `procedure * 2 + 1` for the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mountshare_fuzz::{round_trip, select};
use mountshare_proto::portmap::*;

fuzz_target!(|data: &[u8]| {
    let Some((sel, rest)) = select(data) else {
        return;
    };
    let (procedure, result) = (u32::from(sel / 2), sel % 2 == 1);
    match (procedure, result) {
        (pmapproc::SET | pmapproc::UNSET | pmapproc::GETPORT, false) => round_trip::<Mapping>(rest),
        (pmapproc::SET | pmapproc::UNSET, true) => round_trip::<bool>(rest),
        (pmapproc::GETPORT, true) => round_trip::<u32>(rest),
        (pmapproc::DUMP, true) => round_trip::<PmapList>(rest),
        (pmapproc::CALLIT, false) => round_trip::<CallArgs>(rest),
        (pmapproc::CALLIT, true) => round_trip::<CallResult>(rest),
        _ => {}
    }
});
