//! Every NFSv3 result decoder (RFC 1813), as the client decodes a reply's results: the first
//! byte is the procedure number, the rest its results.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mountshare_fuzz::{round_trip, select};
use mountshare_proto::nfs3::*;

fuzz_target!(|data: &[u8]| {
    let Some((procedure, res)) = select(data) else {
        return;
    };
    match u32::from(procedure) {
        proc3::GETATTR => round_trip::<GetAttr3Res>(res),
        proc3::SETATTR => round_trip::<SetAttr3Res>(res),
        proc3::LOOKUP => round_trip::<Lookup3Res>(res),
        proc3::ACCESS => round_trip::<Access3Res>(res),
        proc3::READLINK => round_trip::<ReadLink3Res>(res),
        proc3::READ => round_trip::<Read3Res>(res),
        proc3::WRITE => round_trip::<Write3Res>(res),
        proc3::CREATE => round_trip::<Create3Res>(res),
        proc3::MKDIR => round_trip::<Mkdir3Res>(res),
        proc3::SYMLINK => round_trip::<Symlink3Res>(res),
        proc3::MKNOD => round_trip::<Mknod3Res>(res),
        proc3::REMOVE => round_trip::<Remove3Res>(res),
        proc3::RMDIR => round_trip::<Rmdir3Res>(res),
        proc3::RENAME => round_trip::<Rename3Res>(res),
        proc3::LINK => round_trip::<Link3Res>(res),
        proc3::READDIR => round_trip::<ReadDir3Res>(res),
        proc3::READDIRPLUS => round_trip::<ReadDirPlus3Res>(res),
        proc3::FSSTAT => round_trip::<FsStat3Res>(res),
        proc3::FSINFO => round_trip::<FsInfo3Res>(res),
        proc3::PATHCONF => round_trip::<PathConf3Res>(res),
        proc3::COMMIT => round_trip::<Commit3Res>(res),
        _ => {}
    }
});
