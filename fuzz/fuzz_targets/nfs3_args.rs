//! Every NFSv3 argument decoder (RFC 1813), as the server decodes a call's arguments: the first
//! byte is the procedure number, the rest its arguments. READ's are also peeked at for their file
//! handle, as the server does before decoding them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mountshare_fuzz::{round_trip, select};
use mountshare_proto::nfs3::*;

fuzz_target!(|data: &[u8]| {
    let Some((procedure, args)) = select(data) else {
        return;
    };
    match u32::from(procedure) {
        proc3::GETATTR => round_trip::<GetAttr3Args>(args),
        proc3::SETATTR => round_trip::<SetAttr3Args>(args),
        proc3::LOOKUP => round_trip::<Lookup3Args>(args),
        proc3::ACCESS => round_trip::<Access3Args>(args),
        proc3::READLINK => round_trip::<ReadLink3Args>(args),
        proc3::READ => {
            round_trip::<Read3Args>(args);
            read_file_peek(args);
        }
        proc3::WRITE => round_trip::<Write3Args>(args),
        proc3::CREATE => round_trip::<Create3Args>(args),
        proc3::MKDIR => round_trip::<Mkdir3Args>(args),
        proc3::SYMLINK => round_trip::<Symlink3Args>(args),
        proc3::MKNOD => round_trip::<Mknod3Args>(args),
        proc3::REMOVE => round_trip::<Remove3Args>(args),
        proc3::RMDIR => round_trip::<Rmdir3Args>(args),
        proc3::RENAME => round_trip::<Rename3Args>(args),
        proc3::LINK => round_trip::<Link3Args>(args),
        proc3::READDIR => round_trip::<ReadDir3Args>(args),
        proc3::READDIRPLUS => round_trip::<ReadDirPlus3Args>(args),
        proc3::FSSTAT => round_trip::<FsStat3Args>(args),
        proc3::FSINFO => round_trip::<FsInfo3Args>(args),
        proc3::PATHCONF => round_trip::<PathConf3Args>(args),
        proc3::COMMIT => round_trip::<Commit3Args>(args),
        _ => {}
    }
});

/// The server keys READs by the file handle it peeks at before decoding: always a prefix of the
/// arguments, within the handle's cap, and the encoded handle itself when they decode.
fn read_file_peek(args: &[u8]) {
    let peeked = peek_read3_file(args);
    assert!(args.starts_with(peeked));
    assert!(peeked.len() <= 4 + NFS3_FHSIZE as usize);
    if let Ok(a) = mountshare_proto::xdr::decode::<Read3Args>(args) {
        assert_eq!(peeked.get(4..), Some(&a.file.data[..]));
    }
}
