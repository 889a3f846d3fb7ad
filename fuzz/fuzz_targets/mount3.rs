//! The MOUNT v3 argument and result decoders (RFC 1813 appendix I): the first byte is
//! `procedure * 2` for the arguments, `procedure * 2 + 1` for the result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mountshare_fuzz::{round_trip, select};
use mountshare_proto::mount3::*;

fuzz_target!(|data: &[u8]| {
    let Some((sel, rest)) = select(data) else {
        return;
    };
    let (procedure, result) = (u32::from(sel / 2), sel % 2 == 1);
    match (procedure, result) {
        (mountproc3::MNT | mountproc3::UMNT, false) => round_trip::<DirPath>(rest),
        (mountproc3::MNT, true) => round_trip::<MountRes3>(rest),
        (mountproc3::DUMP, true) => round_trip::<MountList>(rest),
        (mountproc3::EXPORT, true) => round_trip::<Exports>(rest),
        // NULL, UMNTALL and the other arms carry nothing.
        _ => {}
    }
});
