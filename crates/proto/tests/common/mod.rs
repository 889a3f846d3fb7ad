//! Proptest strategies for every protocol type, shared by the round-trip and no-panic tests.

#![allow(dead_code)]

use mountshare_proto::mount3::*;
use mountshare_proto::nfs3::*;
use mountshare_proto::portmap::*;
use mountshare_proto::rpc::*;
use proptest::prelude::*;

/// A type with a strategy that generates only values the protocol allows (within caps).
pub trait Arb: Sized + std::fmt::Debug {
    fn arb() -> BoxedStrategy<Self>;
}

pub fn arb<T: Arb>() -> BoxedStrategy<T> {
    T::arb()
}

pub fn bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max).boxed()
}

pub fn list<T: Arb + 'static>(max: usize) -> BoxedStrategy<Vec<T>> {
    prop::collection::vec(arb::<T>(), 0..=max).boxed()
}

macro_rules! arb_any {
    ($($t:ty),*) => { $(impl Arb for $t { fn arb() -> BoxedStrategy<Self> { any::<$t>().boxed() } })* };
}
arb_any!(u32, u64, bool, [u8; 8]);

impl<T: Arb + 'static> Arb for Option<T> {
    fn arb() -> BoxedStrategy<Self> {
        prop::option::of(arb::<T>()).boxed()
    }
}

impl Arb for () {
    fn arb() -> BoxedStrategy<Self> {
        Just(()).boxed()
    }
}

macro_rules! arb_enum {
    ($($t:ty),*) => { $(impl Arb for $t {
        fn arb() -> BoxedStrategy<Self> { prop::sample::select(<$t>::ALL).boxed() }
    })* };
}
arb_enum!(Ftype3, StableHow, AuthStat);

impl Arb for NfsStat3 {
    /// Only failures: `NfsRes::Fail` never carries NFS3_OK.
    fn arb() -> BoxedStrategy<Self> {
        prop::sample::select(&NfsStat3::ALL[1..]).boxed()
    }
}

impl Arb for MountStat3 {
    fn arb() -> BoxedStrategy<Self> {
        prop::sample::select(&MountStat3::ALL[1..]).boxed()
    }
}

/// `Type { field: strategy, ... }`; a field without a strategy uses `arb()`.
macro_rules! arb_struct {
    ($t:ident { $($f:ident $(: $s:expr)?),* $(,)? }) => {
        impl Arb for $t {
            fn arb() -> BoxedStrategy<Self> {
                ( $( arb_struct!(@s $($s)?), )* )
                    .prop_map(|( $($f,)* )| $t { $($f),* })
                    .boxed()
            }
        }
    };
    (@s) => { arb() };
    (@s $s:expr) => { $s };
}

macro_rules! arb_newtype {
    ($t:ident $(: $s:expr)?) => {
        impl Arb for $t {
            fn arb() -> BoxedStrategy<Self> {
                arb_struct!(@s $($s)?).prop_map($t).boxed()
            }
        }
    };
}

const NAME: usize = MAX_NAME_LEN as usize;
const PATH: usize = 300;
const DATA: usize = 3000;

arb_struct!(SpecData3 {
    specdata1,
    specdata2
});
arb_struct!(NfsFh3 {
    data: bytes(NFS3_FHSIZE as usize)
});
arb_struct!(NfsTime3 { seconds, nseconds });

impl Arb for Fattr3 {
    fn arb() -> BoxedStrategy<Self> {
        (
            (arb(), arb(), arb(), arb(), arb(), arb(), arb()),
            (arb(), arb(), arb(), arb(), arb(), arb()),
        )
            .prop_map(
                |(
                    (ftype, mode, nlink, uid, gid, size, used),
                    (rdev, fsid, fileid, atime, mtime, ctime),
                )| Fattr3 {
                    ftype,
                    mode,
                    nlink,
                    uid,
                    gid,
                    size,
                    used,
                    rdev,
                    fsid,
                    fileid,
                    atime,
                    mtime,
                    ctime,
                },
            )
            .boxed()
    }
}

arb_newtype!(PostOpAttr);
arb_struct!(WccAttr { size, mtime, ctime });
arb_newtype!(PreOpAttr);
arb_struct!(WccData { before, after });
arb_newtype!(PostOpFh3);

impl Arb for SetTime {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            Just(SetTime::DontChange),
            Just(SetTime::ServerTime),
            arb().prop_map(SetTime::ClientTime),
        ]
        .boxed()
    }
}

arb_struct!(Sattr3 {
    mode,
    uid,
    gid,
    size,
    atime,
    mtime
});
arb_struct!(DirOpArgs3 {
    dir,
    name: bytes(NAME)
});

impl<T: Arb + 'static, F: Arb + 'static> Arb for NfsRes<T, F> {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            arb::<T>().prop_map(NfsRes::Ok),
            (arb::<NfsStat3>(), arb::<F>()).prop_map(|(s, f)| NfsRes::Fail(s, f)),
        ]
        .boxed()
    }
}

arb_struct!(GetAttr3Args { object });
arb_struct!(GetAttr3ResOk { obj_attributes });
arb_struct!(SetAttr3Args {
    object,
    new_attributes,
    guard
});
arb_struct!(SetAttr3ResOk { obj_wcc });
arb_struct!(SetAttr3ResFail { obj_wcc });
arb_struct!(Lookup3Args { what });
arb_struct!(Lookup3ResOk {
    object,
    obj_attributes,
    dir_attributes
});
arb_struct!(Lookup3ResFail { dir_attributes });
arb_struct!(Access3Args { object, access });
arb_struct!(Access3ResOk {
    obj_attributes,
    access
});
arb_struct!(Access3ResFail { obj_attributes });
arb_struct!(ReadLink3Args { symlink });
arb_struct!(ReadLink3ResOk {
    symlink_attributes,
    data: bytes(PATH)
});
arb_struct!(ReadLink3ResFail { symlink_attributes });
arb_struct!(Read3Args {
    file,
    offset,
    count
});
arb_struct!(Read3ResOk {
    file_attributes,
    count,
    eof,
    data: bytes(DATA)
});
arb_struct!(Read3ResFail { file_attributes });
arb_struct!(Write3Args {
    file,
    offset,
    count,
    stable,
    data: bytes(DATA)
});
arb_struct!(Write3ResOk {
    file_wcc,
    count,
    committed,
    verf
});
arb_struct!(Write3ResFail { file_wcc });

impl Arb for CreateHow3 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            arb().prop_map(CreateHow3::Unchecked),
            arb().prop_map(CreateHow3::Guarded),
            arb().prop_map(CreateHow3::Exclusive),
        ]
        .boxed()
    }
}

arb_struct!(Create3Args { where_, how });
arb_struct!(Create3ResOk {
    obj,
    obj_attributes,
    dir_wcc
});
arb_struct!(Create3ResFail { dir_wcc });
arb_struct!(Mkdir3Args { where_, attributes });
arb_struct!(SymlinkData3 {
    symlink_attributes,
    symlink_data: bytes(PATH)
});
arb_struct!(Symlink3Args { where_, symlink });
arb_struct!(DeviceData3 {
    dev_attributes,
    spec
});

impl Arb for MknodData3 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            arb().prop_map(MknodData3::Chr),
            arb().prop_map(MknodData3::Blk),
            arb().prop_map(MknodData3::Sock),
            arb().prop_map(MknodData3::Fifo),
            prop::sample::select(&[Ftype3::Reg, Ftype3::Dir, Ftype3::Lnk][..])
                .prop_map(MknodData3::Other),
        ]
        .boxed()
    }
}

arb_struct!(Mknod3Args { where_, what });
arb_struct!(Remove3Args { object });
arb_struct!(Remove3ResOk { dir_wcc });
arb_struct!(Rename3Args { from, to });
arb_struct!(Rename3ResOk {
    fromdir_wcc,
    todir_wcc
});
arb_struct!(Link3Args { file, link });
arb_struct!(Link3ResOk {
    file_attributes,
    linkdir_wcc
});
arb_struct!(ReadDir3Args {
    dir,
    cookie,
    cookieverf,
    count
});
arb_struct!(Entry3 {
    fileid,
    name: bytes(NAME),
    cookie
});
arb_struct!(DirList3 {
    entries: list(20),
    eof
});
arb_struct!(ReadDir3ResOk {
    dir_attributes,
    cookieverf,
    reply
});
arb_struct!(ReadDir3ResFail { dir_attributes });
arb_struct!(ReadDirPlus3Args {
    dir,
    cookie,
    cookieverf,
    dircount,
    maxcount
});
arb_struct!(EntryPlus3 {
    fileid,
    name: bytes(NAME),
    cookie,
    name_attributes,
    name_handle
});
arb_struct!(DirListPlus3 {
    entries: list(10),
    eof
});
arb_struct!(ReadDirPlus3ResOk {
    dir_attributes,
    cookieverf,
    reply
});
arb_struct!(ReadDirPlus3ResFail { dir_attributes });
arb_struct!(FsStat3Args { fsroot });
arb_struct!(FsStat3ResOk {
    obj_attributes,
    tbytes,
    fbytes,
    abytes,
    tfiles,
    ffiles,
    afiles,
    invarsec
});
arb_struct!(FsStat3ResFail { obj_attributes });
arb_struct!(FsInfo3Args { fsroot });

impl Arb for FsInfo3ResOk {
    fn arb() -> BoxedStrategy<Self> {
        (
            (arb(), arb(), arb(), arb(), arb(), arb()),
            (arb(), arb(), arb(), arb(), arb()),
        )
            .prop_map(
                |(
                    (obj_attributes, rtmax, rtpref, rtmult, wtmax, wtpref),
                    (wtmult, dtpref, maxfilesize, time_delta, properties),
                )| FsInfo3ResOk {
                    obj_attributes,
                    rtmax,
                    rtpref,
                    rtmult,
                    wtmax,
                    wtpref,
                    wtmult,
                    dtpref,
                    maxfilesize,
                    time_delta,
                    properties,
                },
            )
            .boxed()
    }
}

arb_struct!(FsInfo3ResFail { obj_attributes });
arb_struct!(PathConf3Args { object });
arb_struct!(PathConf3ResOk {
    obj_attributes,
    linkmax,
    name_max,
    no_trunc,
    chown_restricted,
    case_insensitive,
    case_preserving
});
arb_struct!(PathConf3ResFail { obj_attributes });
arb_struct!(Commit3Args {
    file,
    offset,
    count
});
arb_struct!(Commit3ResOk { file_wcc, verf });
arb_struct!(Commit3ResFail { file_wcc });

// MOUNT
arb_newtype!(DirPath: bytes(MNTPATHLEN as usize));
arb_struct!(MountRes3Ok {
    fhandle: bytes(FHSIZE3 as usize),
    auth_flavors: list(MAX_AUTH_FLAVORS as usize)
});

impl Arb for MountRes3 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            arb().prop_map(MountRes3::Ok),
            arb().prop_map(MountRes3::Fail),
        ]
        .boxed()
    }
}

arb_struct!(MountBody {
    ml_hostname: bytes(MNTNAMLEN as usize),
    ml_directory: bytes(PATH)
});
arb_newtype!(MountList: list(10));
arb_struct!(ExportNode {
    ex_dir: bytes(PATH),
    ex_groups: prop::collection::vec(bytes(MNTNAMLEN as usize), 0..5)
});
arb_newtype!(Exports: list(5));

// PORTMAP
arb_struct!(Mapping {
    prog,
    vers,
    prot,
    port
});
arb_newtype!(PmapList: list(20));
arb_struct!(CallArgs {
    prog,
    vers,
    procedure,
    args: bytes(500)
});
arb_struct!(CallResult {
    port,
    res: bytes(500)
});

// RPC
arb_struct!(AuthSys {
    stamp,
    machinename: bytes(MAX_MACHINE_NAME as usize),
    uid,
    gid,
    gids: list(MAX_AUTH_GIDS as usize)
});

impl Arb for OpaqueAuth {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            Just(OpaqueAuth::none()),
            arb::<AuthSys>().prop_map(|a| OpaqueAuth::sys(&a)),
            // An unknown flavor with an opaque body.
            (7u32..100, bytes(MAX_AUTH_BYTES as usize))
                .prop_map(|(flavor, body)| OpaqueAuth { flavor, body }),
        ]
        .boxed()
    }
}

arb_struct!(RpcCall {
    xid,
    prog,
    vers,
    procedure,
    cred,
    verf
});

impl Arb for AcceptStat {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            Just(AcceptStat::Success),
            Just(AcceptStat::ProgUnavail),
            (arb(), arb()).prop_map(|(low, high)| AcceptStat::ProgMismatch { low, high }),
            Just(AcceptStat::ProcUnavail),
            Just(AcceptStat::GarbageArgs),
            Just(AcceptStat::SystemErr),
        ]
        .boxed()
    }
}

impl Arb for ReplyBody {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![
            arb().prop_map(ReplyBody::Accepted),
            (arb(), arb())
                .prop_map(|(low, high)| ReplyBody::Denied(RejectStat::RpcMismatch { low, high })),
            arb().prop_map(|s| ReplyBody::Denied(RejectStat::AuthError(s))),
        ]
        .boxed()
    }
}

/// Invoke `$m!(Type)` for every type that has a codec and a strategy: every NFSv3 `*Args` and
/// `*Res`, the MOUNT and PORTMAP arguments and results, and the shared building blocks.
#[macro_export]
macro_rules! for_each_codec_type {
    ($m:ident) => {
        $m!(
            fattr3: Fattr3,
            post_op_attr: PostOpAttr,
            wcc_data: WccData,
            post_op_fh3: PostOpFh3,
            sattr3: Sattr3,
            getattr_args: GetAttr3Args,
            getattr_res: GetAttr3Res,
            setattr_args: SetAttr3Args,
            setattr_res: SetAttr3Res,
            lookup_args: Lookup3Args,
            lookup_res: Lookup3Res,
            access_args: Access3Args,
            access_res: Access3Res,
            readlink_args: ReadLink3Args,
            readlink_res: ReadLink3Res,
            read_args: Read3Args,
            read_res: Read3Res,
            write_args: Write3Args,
            write_res: Write3Res,
            create_args: Create3Args,
            create_res: Create3Res,
            mkdir_args: Mkdir3Args,
            mkdir_res: Mkdir3Res,
            symlink_args: Symlink3Args,
            symlink_res: Symlink3Res,
            mknod_args: Mknod3Args,
            mknod_res: Mknod3Res,
            remove_args: Remove3Args,
            remove_res: Remove3Res,
            rmdir_args: Rmdir3Args,
            rmdir_res: Rmdir3Res,
            rename_args: Rename3Args,
            rename_res: Rename3Res,
            link_args: Link3Args,
            link_res: Link3Res,
            readdir_args: ReadDir3Args,
            readdir_res: ReadDir3Res,
            readdirplus_args: ReadDirPlus3Args,
            readdirplus_res: ReadDirPlus3Res,
            fsstat_args: FsStat3Args,
            fsstat_res: FsStat3Res,
            fsinfo_args: FsInfo3Args,
            fsinfo_res: FsInfo3Res,
            pathconf_args: PathConf3Args,
            pathconf_res: PathConf3Res,
            commit_args: Commit3Args,
            commit_res: Commit3Res,
            mount_dirpath: DirPath,
            mount_mnt_res: MountRes3,
            mount_dump_res: MountList,
            mount_export_res: Exports,
            pmap_mapping: Mapping,
            pmap_dump_res: PmapList,
            pmap_callit_args: CallArgs,
            pmap_callit_res: CallResult,
            auth_sys: AuthSys,
            opaque_auth: OpaqueAuth,
        );
    };
}
