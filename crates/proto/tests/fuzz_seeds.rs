//! Writes the seed corpus of the cargo-fuzz targets (`fuzz/`): the calls and replies a Linux
//! client and this server exchange when mounting and reading (every NFSv3, MOUNT and PORTMAP
//! procedure's arguments, results for each), plus a few values of each type drawn by the
//! round-trip tests' strategies with a fixed seed. Not run by default; regenerate with
//!
//! ```text
//! cargo test -p mountshare-proto --test fuzz_seeds -- --ignored
//! ```
//!
//! Input layouts are those documented in `fuzz/src/lib.rs`.

mod common;

use bytes::BytesMut;
use common::*;
use mountshare_proto::mount3::*;
use mountshare_proto::nfs3::*;
use mountshare_proto::portmap::*;
use mountshare_proto::record::{frame, LAST_FRAGMENT};
use mountshare_proto::rpc::*;
use mountshare_proto::xdr::{to_bytes, XdrEncode};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::path::{Path, PathBuf};

/// Largest seed drawn from a strategy: seeds stay small, the fuzzer grows them.
const MAX_DRAWN: usize = 320;

struct Seeds {
    root: PathBuf,
    runner: TestRunner,
    written: usize,
}

impl Seeds {
    fn new(root: &Path) -> Seeds {
        Seeds {
            root: root.to_path_buf(),
            runner: TestRunner::deterministic(),
            written: 0,
        }
    }

    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
        self.written += 1;
    }

    /// `selector` then the XDR of `v`.
    fn put_typed(&mut self, target: &str, name: &str, selector: u8, v: &dyn XdrEncode) {
        let mut b = vec![selector];
        b.extend_from_slice(&to_bytes(v));
        self.put(target, name, &b);
    }

    /// Up to two values drawn from `T`'s strategy, with different first words (for results:
    /// usually one success and one failure), each at most [`MAX_DRAWN`] bytes.
    fn drawn<T: Arb + XdrEncode>(&mut self, target: &str, name: &str, selector: u8) {
        let strategy = arb::<T>();
        let mut kept: Vec<Vec<u8>> = Vec::new();
        for _ in 0..500 {
            if kept.len() == 2 {
                break;
            }
            let v = strategy.new_tree(&mut self.runner).unwrap().current();
            let b = to_bytes(&v).to_vec();
            let first = b.get(..4).map(<[u8]>::to_vec);
            if b.len() <= MAX_DRAWN && kept.iter().all(|k| k.get(..4).map(<[u8]>::to_vec) != first)
            {
                kept.push(b);
            }
        }
        for (i, b) in kept.iter().enumerate() {
            let mut seed = vec![selector];
            seed.extend_from_slice(b);
            self.put(target, &format!("{name}-drawn-{i}"), &seed);
        }
    }
}

/// A handle shaped like the server's: version, depth, path hash, component hashes.
fn handle(depth: u8) -> NfsFh3 {
    let mut data = vec![1, depth];
    data.extend_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
    for i in 0..depth.min(13) {
        data.extend_from_slice(&(0x0101_0101u32 * u32::from(i + 1)).to_be_bytes());
    }
    NfsFh3 { data }
}

fn root() -> NfsFh3 {
    handle(0)
}

fn attrs(ftype: Ftype3, size: u64) -> Fattr3 {
    let t = NfsTime3 {
        seconds: 1_700_000_000,
        nseconds: 123_456_789,
    };
    Fattr3 {
        ftype,
        mode: 0o644,
        nlink: 1,
        uid: 1000,
        gid: 1000,
        size,
        used: size.next_multiple_of(4096),
        rdev: SpecData3::default(),
        fsid: 0x6d73_0001,
        fileid: 0x1234_5678_9abc_def0,
        atime: t,
        mtime: t,
        ctime: t,
    }
}

fn dirop(name: &[u8]) -> DirOpArgs3 {
    DirOpArgs3 {
        dir: handle(1),
        name: name.to_vec(),
    }
}

fn sattr_mode(mode: u32) -> Sattr3 {
    Sattr3 {
        mode: Some(mode),
        ..Sattr3::default()
    }
}

/// The credential the Linux client sends.
fn linux_cred() -> OpaqueAuth {
    OpaqueAuth::sys(&AuthSys {
        stamp: 0x6543_21ab,
        machinename: b"node-1".to_vec(),
        uid: 0,
        gid: 0,
        gids: vec![0],
    })
}

fn call(xid: u32, prog: u32, vers: u32, procedure: u32, args: &dyn XdrEncode) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_call_header(&mut out, xid, prog, vers, procedure, &linux_cred());
    args.encode(&mut out);
    out.to_vec()
}

fn reply(xid: u32, res: &dyn XdrEncode) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_reply_header(&mut out, xid, &ReplyBody::SUCCESS);
    res.encode(&mut out);
    out.to_vec()
}

/// One NFSv3 call of each procedure, with the arguments a Linux client sends.
fn nfs_args() -> Vec<(&'static str, u32, Box<dyn XdrEncode>)> {
    let file = handle(2);
    vec![
        (
            "getattr",
            proc3::GETATTR,
            Box::new(GetAttr3Args { object: root() }),
        ),
        (
            "setattr",
            proc3::SETATTR,
            Box::new(SetAttr3Args {
                object: file.clone(),
                new_attributes: Sattr3 {
                    size: Some(0),
                    mtime: SetTime::ServerTime,
                    ..Sattr3::default()
                },
                guard: None,
            }),
        ),
        (
            "lookup",
            proc3::LOOKUP,
            Box::new(Lookup3Args {
                what: dirop(b"Movies"),
            }),
        ),
        (
            "access",
            proc3::ACCESS,
            Box::new(Access3Args {
                object: root(),
                access: ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_EXECUTE,
            }),
        ),
        (
            "readlink",
            proc3::READLINK,
            Box::new(ReadLink3Args { symlink: handle(3) }),
        ),
        (
            "read",
            proc3::READ,
            Box::new(Read3Args {
                file: file.clone(),
                offset: 1 << 20,
                count: 1 << 20,
            }),
        ),
        (
            "write",
            proc3::WRITE,
            Box::new(Write3Args {
                file: file.clone(),
                offset: 0,
                count: 5,
                stable: StableHow::Unstable,
                data: b"hello".to_vec(),
            }),
        ),
        (
            "create",
            proc3::CREATE,
            Box::new(Create3Args {
                where_: dirop(b"new.txt"),
                how: CreateHow3::Guarded(sattr_mode(0o644)),
            }),
        ),
        (
            "mkdir",
            proc3::MKDIR,
            Box::new(Mkdir3Args {
                where_: dirop(b"newdir"),
                attributes: sattr_mode(0o755),
            }),
        ),
        (
            "symlink",
            proc3::SYMLINK,
            Box::new(Symlink3Args {
                where_: dirop(b"link"),
                symlink: SymlinkData3 {
                    symlink_attributes: Sattr3::default(),
                    symlink_data: b"../target".to_vec(),
                },
            }),
        ),
        (
            "mknod",
            proc3::MKNOD,
            Box::new(Mknod3Args {
                where_: dirop(b"fifo"),
                what: MknodData3::Fifo(sattr_mode(0o600)),
            }),
        ),
        (
            "remove",
            proc3::REMOVE,
            Box::new(Remove3Args {
                object: dirop(b"old.txt"),
            }),
        ),
        (
            "rmdir",
            proc3::RMDIR,
            Box::new(Rmdir3Args {
                object: dirop(b"olddir"),
            }),
        ),
        (
            "rename",
            proc3::RENAME,
            Box::new(Rename3Args {
                from: dirop(b"a"),
                to: dirop(b"b"),
            }),
        ),
        (
            "link",
            proc3::LINK,
            Box::new(Link3Args {
                file: file.clone(),
                link: dirop(b"hard"),
            }),
        ),
        (
            "readdir",
            proc3::READDIR,
            Box::new(ReadDir3Args {
                dir: root(),
                cookie: 0,
                cookieverf: [0; 8],
                count: 32768,
            }),
        ),
        (
            "readdirplus",
            proc3::READDIRPLUS,
            Box::new(ReadDirPlus3Args {
                dir: root(),
                cookie: 0x0123_4567_89ab_cdef,
                cookieverf: *b"mntshr01",
                dircount: 65536,
                maxcount: 262144,
            }),
        ),
        (
            "fsstat",
            proc3::FSSTAT,
            Box::new(FsStat3Args { fsroot: root() }),
        ),
        (
            "fsinfo",
            proc3::FSINFO,
            Box::new(FsInfo3Args { fsroot: root() }),
        ),
        (
            "pathconf",
            proc3::PATHCONF,
            Box::new(PathConf3Args { object: root() }),
        ),
        (
            "commit",
            proc3::COMMIT,
            Box::new(Commit3Args {
                file,
                offset: 0,
                count: 0,
            }),
        ),
    ]
}

/// Results this server sends for the read side, and a failure of each procedure.
fn nfs_results() -> Vec<(&'static str, u32, Box<dyn XdrEncode>)> {
    let dir = PostOpAttr(Some(attrs(Ftype3::Dir, 4096)));
    let file = PostOpAttr(Some(attrs(Ftype3::Reg, 11)));
    let entry = |name: &[u8], cookie| EntryPlus3 {
        fileid: cookie,
        name: name.to_vec(),
        cookie,
        name_attributes: file,
        name_handle: PostOpFh3(Some(handle(2))),
    };
    vec![
        (
            "getattr",
            proc3::GETATTR,
            Box::new(GetAttr3Res::Ok(GetAttr3ResOk {
                obj_attributes: attrs(Ftype3::Reg, 11),
            })),
        ),
        (
            "lookup",
            proc3::LOOKUP,
            Box::new(Lookup3Res::Ok(Lookup3ResOk {
                object: handle(2),
                obj_attributes: file,
                dir_attributes: dir,
            })),
        ),
        (
            "lookup-noent",
            proc3::LOOKUP,
            Box::new(Lookup3Res::Fail(
                NfsStat3::NoEnt,
                Lookup3ResFail {
                    dir_attributes: dir,
                },
            )),
        ),
        (
            "read",
            proc3::READ,
            Box::new(Read3Res::Ok(Read3ResOk {
                file_attributes: file,
                count: 11,
                eof: true,
                data: b"hello world".to_vec(),
            })),
        ),
        (
            "read-inval",
            proc3::READ,
            Box::new(Read3Res::Fail(
                NfsStat3::Inval,
                Read3ResFail {
                    file_attributes: PostOpAttr(None),
                },
            )),
        ),
        (
            "readdirplus",
            proc3::READDIRPLUS,
            Box::new(ReadDirPlus3Res::Ok(ReadDirPlus3ResOk {
                dir_attributes: dir,
                cookieverf: *b"mntshr01",
                reply: DirListPlus3 {
                    entries: vec![entry(b"a.mkv", 3), entry(b"subtitles", 4)],
                    eof: true,
                },
            })),
        ),
        (
            "write-rofs",
            proc3::WRITE,
            Box::new(Write3Res::Fail(
                NfsStat3::RoFs,
                Write3ResFail {
                    file_wcc: WccData::default(),
                },
            )),
        ),
    ]
}

fn write_nfs(s: &mut Seeds) {
    for (name, procedure, args) in nfs_args() {
        s.put_typed(
            "nfs3_args",
            &format!("{name}-linux"),
            procedure as u8,
            &*args,
        );
    }
    for (name, procedure, res) in nfs_results() {
        s.put_typed("nfs3_res", name, procedure as u8, &*res);
    }
    macro_rules! drawn {
        ($($procedure:ident: $args:ty, $res:ty;)*) => {$(
            let p = proc3::$procedure as u8;
            let name = stringify!($procedure).to_lowercase();
            s.drawn::<$args>("nfs3_args", &name, p);
            s.drawn::<$res>("nfs3_res", &name, p);
        )*};
    }
    drawn! {
        GETATTR: GetAttr3Args, GetAttr3Res;
        SETATTR: SetAttr3Args, SetAttr3Res;
        LOOKUP: Lookup3Args, Lookup3Res;
        ACCESS: Access3Args, Access3Res;
        READLINK: ReadLink3Args, ReadLink3Res;
        READ: Read3Args, Read3Res;
        WRITE: Write3Args, Write3Res;
        CREATE: Create3Args, Create3Res;
        MKDIR: Mkdir3Args, Mkdir3Res;
        SYMLINK: Symlink3Args, Symlink3Res;
        MKNOD: Mknod3Args, Mknod3Res;
        REMOVE: Remove3Args, Remove3Res;
        RMDIR: Rmdir3Args, Rmdir3Res;
        RENAME: Rename3Args, Rename3Res;
        LINK: Link3Args, Link3Res;
        READDIR: ReadDir3Args, ReadDir3Res;
        READDIRPLUS: ReadDirPlus3Args, ReadDirPlus3Res;
        FSSTAT: FsStat3Args, FsStat3Res;
        FSINFO: FsInfo3Args, FsInfo3Res;
        PATHCONF: PathConf3Args, PathConf3Res;
        COMMIT: Commit3Args, Commit3Res;
    }
}

fn write_mount_and_portmap(s: &mut Seeds) {
    let args = |p: u32| (p * 2) as u8;
    let res = |p: u32| (p * 2 + 1) as u8;
    let m = "mount3";
    s.put_typed(
        m,
        "mnt-args-linux",
        args(mountproc3::MNT),
        &DirPath(b"/".to_vec()),
    );
    s.put_typed(
        m,
        "umnt-args-linux",
        args(mountproc3::UMNT),
        &DirPath(b"/export/media".to_vec()),
    );
    s.put_typed(
        m,
        "mnt-res",
        res(mountproc3::MNT),
        &MountRes3::Ok(MountRes3Ok {
            fhandle: root().data,
            auth_flavors: vec![AUTH_SYS, AUTH_NONE],
        }),
    );
    s.put_typed(
        m,
        "mnt-res-noent",
        res(mountproc3::MNT),
        &MountRes3::Fail(MountStat3::NoEnt),
    );
    s.put_typed(
        m,
        "dump-res",
        res(mountproc3::DUMP),
        &MountList(vec![MountBody {
            ml_hostname: b"10.42.0.7".to_vec(),
            ml_directory: b"/".to_vec(),
        }]),
    );
    s.put_typed(
        m,
        "export-res",
        res(mountproc3::EXPORT),
        &Exports(vec![ExportNode {
            ex_dir: b"/".to_vec(),
            ex_groups: vec![b"*".to_vec()],
        }]),
    );
    s.drawn::<DirPath>(m, "mnt-args", args(mountproc3::MNT));
    s.drawn::<MountRes3>(m, "mnt-res", res(mountproc3::MNT));
    s.drawn::<MountList>(m, "dump-res", res(mountproc3::DUMP));
    s.drawn::<Exports>(m, "export-res", res(mountproc3::EXPORT));

    let p = "portmap";
    let mount_tcp = Mapping {
        prog: MOUNT_PROGRAM,
        vers: MOUNT_V3,
        prot: IPPROTO_TCP,
        port: 0,
    };
    s.put_typed(p, "getport-args-linux", args(pmapproc::GETPORT), &mount_tcp);
    s.put_typed(p, "getport-res", res(pmapproc::GETPORT), &2049u32);
    s.put_typed(p, "set-args", args(pmapproc::SET), &mount_tcp);
    s.put_typed(p, "set-res", res(pmapproc::SET), &true);
    s.put_typed(
        p,
        "dump-res",
        res(pmapproc::DUMP),
        &PmapList(vec![
            Mapping {
                prog: NFS_PROGRAM,
                vers: NFS_V3,
                prot: IPPROTO_TCP,
                port: 2049,
            },
            Mapping {
                port: 2049,
                ..mount_tcp
            },
        ]),
    );
    s.put_typed(
        p,
        "callit-args",
        args(pmapproc::CALLIT),
        &CallArgs {
            prog: NFS_PROGRAM,
            vers: NFS_V3,
            procedure: proc3::NULL,
            args: Vec::new(),
        },
    );
    s.put_typed(
        p,
        "callit-res",
        res(pmapproc::CALLIT),
        &CallResult {
            port: 2049,
            res: vec![0, 0, 0, 0],
        },
    );
    s.drawn::<Mapping>(p, "mapping", args(pmapproc::GETPORT));
    s.drawn::<PmapList>(p, "dump-res", res(pmapproc::DUMP));
    s.drawn::<CallArgs>(p, "callit-args", args(pmapproc::CALLIT));
    s.drawn::<CallResult>(p, "callit-res", res(pmapproc::CALLIT));
}

/// Whole call and reply records, and record-marked streams of them.
fn write_rpc(s: &mut Seeds) {
    let mut calls = vec![
        (
            "portmap-getport",
            call(
                1,
                PMAP_PROGRAM,
                PMAP_V2,
                pmapproc::GETPORT,
                &Mapping {
                    prog: MOUNT_PROGRAM,
                    vers: MOUNT_V3,
                    prot: IPPROTO_TCP,
                    port: 0,
                },
            ),
        ),
        (
            "mount-mnt",
            call(
                2,
                MOUNT_PROGRAM,
                MOUNT_V3,
                mountproc3::MNT,
                &DirPath(b"/".to_vec()),
            ),
        ),
    ];
    for (i, (name, procedure, args)) in nfs_args().into_iter().enumerate() {
        let xid = 0x1000 + i as u32;
        calls.push((name, call(xid, NFS_PROGRAM, NFS_V3, procedure, &*args)));
    }
    // A NULL call with AUTH_NONE, as rpcinfo and health checks send.
    let mut null = BytesMut::new();
    encode_call_header(
        &mut null,
        3,
        NFS_PROGRAM,
        NFS_V3,
        proc3::NULL,
        &OpaqueAuth::none(),
    );
    calls.push(("null-auth-none", null.to_vec()));
    for (name, c) in &calls {
        s.put("rpc_call", name, c);
    }
    for i in 0..4 {
        let c = arb::<RpcCall>().new_tree(&mut s.runner).unwrap().current();
        s.put("rpc_call", &format!("drawn-{i}"), &to_bytes(&c));
    }

    for (name, _, res) in nfs_results() {
        s.put("rpc_reply", name, &reply(7, &*res));
    }
    let bodies = [
        (
            "prog-mismatch",
            ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 }),
        ),
        ("proc-unavail", ReplyBody::Accepted(AcceptStat::ProcUnavail)),
        ("garbage-args", ReplyBody::Accepted(AcceptStat::GarbageArgs)),
        (
            "rpc-mismatch",
            ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 }),
        ),
        (
            "auth-badcred",
            ReplyBody::Denied(RejectStat::AuthError(AuthStat::BadCred)),
        ),
    ];
    for (name, body) in bodies {
        let mut out = BytesMut::new();
        encode_reply_header(&mut out, 8, &body);
        s.put("rpc_reply", name, &out);
    }

    // Record streams: two bytes of maximum record size, one byte of how reads are cut.
    let stream = |max: u16, cut: u8, body: &[u8]| {
        let mut b = max.to_be_bytes().to_vec();
        b.push(cut);
        b.extend_from_slice(body);
        b
    };
    let (getattr, read) = (&calls[2].1, &calls[7].1);
    let mut two = frame(getattr).to_vec();
    two.extend_from_slice(&frame(read));
    s.put("record", "two-calls", &stream(4096, 7, &two));
    let mut fragments = Vec::new();
    let (a, b) = read.split_at(read.len() / 2);
    fragments.extend_from_slice(&(a.len() as u32).to_be_bytes());
    fragments.extend_from_slice(a);
    fragments.extend_from_slice(&(b.len() as u32 | LAST_FRAGMENT).to_be_bytes());
    fragments.extend_from_slice(b);
    s.put("record", "two-fragments", &stream(4096, 3, &fragments));
    let mut over = frame(getattr).to_vec();
    over.extend_from_slice(&(0x7fff_ffffu32 | LAST_FRAGMENT).to_be_bytes());
    s.put("record", "oversized-header", &stream(256, 1, &over));
    s.put("record", "empty-record", &stream(16, 0, &frame(&[])));
}

fn write_all(root: &Path) -> usize {
    let mut s = Seeds::new(root);
    write_nfs(&mut s);
    write_mount_and_portmap(&mut s);
    write_rpc(&mut s);
    s.written
}

const TARGETS: [&str; 7] = [
    "record",
    "rpc_call",
    "rpc_reply",
    "nfs3_args",
    "nfs3_res",
    "mount3",
    "portmap",
];

/// The generator runs, gives every target seeds, and keeps them small (the committed corpus is
/// a starting point, not a record of fuzzing).
#[test]
fn seeds_cover_every_target_and_stay_small() {
    let dir = std::env::temp_dir().join(format!("mountshare-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(write_all(&dir) > 100);
    for target in TARGETS {
        let mut total = 0;
        for seed in std::fs::read_dir(dir.join(target)).unwrap() {
            let len = seed.unwrap().metadata().unwrap().len();
            assert!(len <= 1024, "a seed of {target} has {len} bytes");
            total += len;
        }
        assert!(total > 0, "no seed for {target}");
        assert!(
            total <= 16 << 10,
            "{target}'s seeds add up to {total} bytes"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "writes fuzz/corpus; run with --ignored to regenerate the seeds"]
fn write_fuzz_seeds() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for target in TARGETS {
        let _ = std::fs::remove_dir_all(corpus.join(target));
    }
    let n = write_all(&corpus);
    println!("wrote {n} seeds under {}", corpus.display());
}
