//! NFS version 3 (RFC 1813): every type and every procedure's arguments and results, with XDR
//! encode and decode for all of them (the server decodes arguments, the client results).
//!
//! Lengths the RFC leaves unbounded are capped here when decoding (see the `MAX_*` constants).

use bytes::{BufMut, BytesMut};

use crate::xdr::{opaque_var_len, put_opaque_var, XdrDecode, XdrEncode, XdrError, XdrReader};
use crate::{xdr_enum, xdr_struct};

/// `const NFS_PROGRAM = 100003;`
pub const NFS_PROGRAM: u32 = 100003;
/// `const NFS_V3 = 3;`
pub const NFS_V3: u32 = 3;

crate::rpc_procedures! {
    /// Procedure numbers (RFC 1813 section 3.3), and their names.
    pub mod proc3 {
        NULL = 0,
        GETATTR = 1,
        SETATTR = 2,
        LOOKUP = 3,
        ACCESS = 4,
        READLINK = 5,
        READ = 6,
        WRITE = 7,
        CREATE = 8,
        MKDIR = 9,
        SYMLINK = 10,
        MKNOD = 11,
        REMOVE = 12,
        RMDIR = 13,
        RENAME = 14,
        LINK = 15,
        READDIR = 16,
        READDIRPLUS = 17,
        FSSTAT = 18,
        FSINFO = 19,
        PATHCONF = 20,
        COMMIT = 21,
    }
}

/// `const NFS3_FHSIZE = 64;`
pub const NFS3_FHSIZE: u32 = 64;
/// `const NFS3_COOKIEVERFSIZE = 8;`
pub const NFS3_COOKIEVERFSIZE: usize = 8;
/// `const NFS3_CREATEVERFSIZE = 8;`
pub const NFS3_CREATEVERFSIZE: usize = 8;
/// `const NFS3_WRITEVERFSIZE = 8;`
pub const NFS3_WRITEVERFSIZE: usize = 8;

/// Cap on a decoded `filename3` (the RFC leaves `string<>` unbounded). Deliberately above NAME_MAX
/// (255): a name a little too long decodes, so the server can answer NFS3ERR_NAMETOOLONG as
/// RFC 1813 says, instead of GARBAGE_ARGS; anything longer is garbage.
pub const MAX_NAME_LEN: u32 = 1024;
/// Cap on `nfspath3`. 4096 rather than MNTPATHLEN's 1024 because Linux symlink targets may be up
/// to PATH_MAX (4096) bytes, and READLINK must carry them.
pub const MAX_PATH_LEN: u32 = 4096;
/// Cap on WRITE data and READ result data (1 MiB, the largest rtmax/wtmax we advertise or any
/// common server uses).
pub const MAX_DATA_LEN: u32 = 1 << 20;
/// Cap on the entries of one READDIR/READDIRPLUS reply when decoding.
pub const MAX_DIR_ENTRIES: u32 = 65536;

/// `typedef uint64 cookie3;` etc. Plain aliases for readability.
pub type FileId3 = u64;
pub type Cookie3 = u64;
pub type Size3 = u64;
pub type Offset3 = u64;
pub type Count3 = u32;
pub type Mode3 = u32;
pub type Uid3 = u32;
pub type Gid3 = u32;
/// `typedef opaque cookieverf3[NFS3_COOKIEVERFSIZE];`
pub type CookieVerf3 = [u8; NFS3_COOKIEVERFSIZE];
/// `typedef opaque createverf3[NFS3_CREATEVERFSIZE];`
pub type CreateVerf3 = [u8; NFS3_CREATEVERFSIZE];
/// `typedef opaque writeverf3[NFS3_WRITEVERFSIZE];`
pub type WriteVerf3 = [u8; NFS3_WRITEVERFSIZE];

xdr_enum! {
    /// ```text
    /// enum nfsstat3 {
    ///    NFS3_OK = 0, NFS3ERR_PERM = 1, NFS3ERR_NOENT = 2, NFS3ERR_IO = 5,
    ///    NFS3ERR_NXIO = 6, NFS3ERR_ACCES = 13, NFS3ERR_EXIST = 17, NFS3ERR_XDEV = 18,
    ///    NFS3ERR_NODEV = 19, NFS3ERR_NOTDIR = 20, NFS3ERR_ISDIR = 21, NFS3ERR_INVAL = 22,
    ///    NFS3ERR_FBIG = 27, NFS3ERR_NOSPC = 28, NFS3ERR_ROFS = 30, NFS3ERR_MLINK = 31,
    ///    NFS3ERR_NAMETOOLONG = 63, NFS3ERR_NOTEMPTY = 66, NFS3ERR_DQUOT = 69,
    ///    NFS3ERR_STALE = 70, NFS3ERR_REMOTE = 71, NFS3ERR_BADHANDLE = 10001,
    ///    NFS3ERR_NOT_SYNC = 10002, NFS3ERR_BAD_COOKIE = 10003, NFS3ERR_NOTSUPP = 10004,
    ///    NFS3ERR_TOOSMALL = 10005, NFS3ERR_SERVERFAULT = 10006, NFS3ERR_BADTYPE = 10007,
    ///    NFS3ERR_JUKEBOX = 10008
    /// };
    /// ```
    pub enum NfsStat3("nfsstat3") {
        Ok = 0,
        Perm = 1,
        NoEnt = 2,
        Io = 5,
        NxIo = 6,
        Acces = 13,
        Exist = 17,
        XDev = 18,
        NoDev = 19,
        NotDir = 20,
        IsDir = 21,
        Inval = 22,
        FBig = 27,
        NoSpc = 28,
        RoFs = 30,
        MLink = 31,
        NameTooLong = 63,
        NotEmpty = 66,
        DQuot = 69,
        Stale = 70,
        Remote = 71,
        BadHandle = 10001,
        NotSync = 10002,
        BadCookie = 10003,
        NotSupp = 10004,
        TooSmall = 10005,
        ServerFault = 10006,
        BadType = 10007,
        Jukebox = 10008,
    }
}

impl NfsStat3 {
    /// The name RFC 1813 gives it: `NFS3_OK`, `NFS3ERR_NOENT`, ...
    pub const fn name(self) -> &'static str {
        match self {
            NfsStat3::Ok => "NFS3_OK",
            NfsStat3::Perm => "NFS3ERR_PERM",
            NfsStat3::NoEnt => "NFS3ERR_NOENT",
            NfsStat3::Io => "NFS3ERR_IO",
            NfsStat3::NxIo => "NFS3ERR_NXIO",
            NfsStat3::Acces => "NFS3ERR_ACCES",
            NfsStat3::Exist => "NFS3ERR_EXIST",
            NfsStat3::XDev => "NFS3ERR_XDEV",
            NfsStat3::NoDev => "NFS3ERR_NODEV",
            NfsStat3::NotDir => "NFS3ERR_NOTDIR",
            NfsStat3::IsDir => "NFS3ERR_ISDIR",
            NfsStat3::Inval => "NFS3ERR_INVAL",
            NfsStat3::FBig => "NFS3ERR_FBIG",
            NfsStat3::NoSpc => "NFS3ERR_NOSPC",
            NfsStat3::RoFs => "NFS3ERR_ROFS",
            NfsStat3::MLink => "NFS3ERR_MLINK",
            NfsStat3::NameTooLong => "NFS3ERR_NAMETOOLONG",
            NfsStat3::NotEmpty => "NFS3ERR_NOTEMPTY",
            NfsStat3::DQuot => "NFS3ERR_DQUOT",
            NfsStat3::Stale => "NFS3ERR_STALE",
            NfsStat3::Remote => "NFS3ERR_REMOTE",
            NfsStat3::BadHandle => "NFS3ERR_BADHANDLE",
            NfsStat3::NotSync => "NFS3ERR_NOT_SYNC",
            NfsStat3::BadCookie => "NFS3ERR_BAD_COOKIE",
            NfsStat3::NotSupp => "NFS3ERR_NOTSUPP",
            NfsStat3::TooSmall => "NFS3ERR_TOOSMALL",
            NfsStat3::ServerFault => "NFS3ERR_SERVERFAULT",
            NfsStat3::BadType => "NFS3ERR_BADTYPE",
            NfsStat3::Jukebox => "NFS3ERR_JUKEBOX",
        }
    }
}

impl std::fmt::Display for NfsStat3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({})", self, self.as_u32())
    }
}

xdr_enum! {
    /// ```text
    /// enum ftype3 {
    ///    NF3REG = 1, NF3DIR = 2, NF3BLK = 3, NF3CHR = 4,
    ///    NF3LNK = 5, NF3SOCK = 6, NF3FIFO = 7
    /// };
    /// ```
    pub enum Ftype3("ftype3") {
        Reg = 1,
        Dir = 2,
        Blk = 3,
        Chr = 4,
        Lnk = 5,
        Sock = 6,
        Fifo = 7,
    }
}

/// A procedure result: the status, then the arm it selects (`union switch (nfsstat3 status)
/// { case NFS3_OK: T resok; default: F resfail; }`). `Fail` never carries `NfsStat3::Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NfsRes<T, F> {
    Ok(T),
    Fail(NfsStat3, F),
}

impl<T, F> NfsRes<T, F> {
    pub fn status(&self) -> NfsStat3 {
        match self {
            NfsRes::Ok(_) => NfsStat3::Ok,
            NfsRes::Fail(s, _) => *s,
        }
    }

    /// The `resok` arm, or the failure status.
    pub fn ok(self) -> Result<T, NfsStat3> {
        match self {
            NfsRes::Ok(v) => Ok(v),
            NfsRes::Fail(s, _) => Err(s),
        }
    }
}

impl<T: XdrEncode, F: XdrEncode> XdrEncode for NfsRes<T, F> {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            NfsRes::Ok(v) => {
                NfsStat3::Ok.encode(out);
                v.encode(out);
            }
            NfsRes::Fail(s, v) => {
                debug_assert!(*s != NfsStat3::Ok, "NfsRes::Fail with NFS3_OK");
                s.encode(out);
                v.encode(out);
            }
        }
    }
}

impl<T: XdrDecode, F: XdrDecode> XdrDecode for NfsRes<T, F> {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match NfsStat3::decode(r)? {
            NfsStat3::Ok => Ok(NfsRes::Ok(T::decode(r)?)),
            s => Ok(NfsRes::Fail(s, F::decode(r)?)),
        }
    }
}

/// ```text
/// struct specdata3 {
///    uint32 specdata1;
///    uint32 specdata2;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecData3 {
    pub specdata1: u32,
    pub specdata2: u32,
}
xdr_struct!(SpecData3 {
    specdata1,
    specdata2
});

/// ```text
/// struct nfs_fh3 {
///    opaque data<NFS3_FHSIZE>;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NfsFh3 {
    pub data: Vec<u8>,
}
xdr_struct!(NfsFh3 {
    data: opaque("nfs_fh3", NFS3_FHSIZE)
});

impl NfsFh3 {
    /// Encoded size: length word, data, padding.
    pub fn encoded_len(&self) -> usize {
        opaque_var_len(self.data.len())
    }
}

/// ```text
/// struct nfstime3 {
///    uint32 seconds;
///    uint32 nseconds;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NfsTime3 {
    pub seconds: u32,
    pub nseconds: u32,
}
xdr_struct!(NfsTime3 { seconds, nseconds });

/// ```text
/// struct fattr3 {
///    ftype3     type;
///    mode3      mode;
///    uint32     nlink;
///    uid3       uid;
///    gid3       gid;
///    size3      size;
///    size3      used;
///    specdata3  rdev;
///    uint64     fsid;
///    fileid3    fileid;
///    nfstime3   atime;
///    nfstime3   mtime;
///    nfstime3   ctime;
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fattr3 {
    pub ftype: Ftype3,
    pub mode: Mode3,
    pub nlink: u32,
    pub uid: Uid3,
    pub gid: Gid3,
    pub size: Size3,
    pub used: Size3,
    pub rdev: SpecData3,
    pub fsid: u64,
    pub fileid: FileId3,
    pub atime: NfsTime3,
    pub mtime: NfsTime3,
    pub ctime: NfsTime3,
}
xdr_struct!(Fattr3 {
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
    ctime
});

impl Fattr3 {
    /// Encoded size of a `fattr3`.
    pub const ENCODED_LEN: usize = 84;
}

/// ```text
/// union post_op_attr switch (bool attributes_follow) {
/// case TRUE:
///    fattr3   attributes;
/// case FALSE:
///    void;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PostOpAttr(pub Option<Fattr3>);
xdr_struct!(PostOpAttr(newtype));

impl PostOpAttr {
    pub fn encoded_len(&self) -> usize {
        4 + if self.0.is_some() {
            Fattr3::ENCODED_LEN
        } else {
            0
        }
    }
}

/// ```text
/// struct wcc_attr {
///    size3       size;
///    nfstime3    mtime;
///    nfstime3    ctime;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WccAttr {
    pub size: Size3,
    pub mtime: NfsTime3,
    pub ctime: NfsTime3,
}
xdr_struct!(WccAttr { size, mtime, ctime });

/// ```text
/// union pre_op_attr switch (bool attributes_follow) {
/// case TRUE:
///    wcc_attr  attributes;
/// case FALSE:
///    void;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreOpAttr(pub Option<WccAttr>);
xdr_struct!(PreOpAttr(newtype));

/// ```text
/// struct wcc_data {
///    pre_op_attr    before;
///    post_op_attr   after;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WccData {
    pub before: PreOpAttr,
    pub after: PostOpAttr,
}
xdr_struct!(WccData { before, after });

/// ```text
/// union post_op_fh3 switch (bool handle_follows) {
/// case TRUE:
///    nfs_fh3  handle;
/// case FALSE:
///    void;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostOpFh3(pub Option<NfsFh3>);
xdr_struct!(PostOpFh3(newtype));

impl PostOpFh3 {
    pub fn encoded_len(&self) -> usize {
        4 + self.0.as_ref().map_or(0, NfsFh3::encoded_len)
    }
}

/// `set_mode3`, `set_uid3`, `set_gid3` and `set_size3` are XDR optionals:
///
/// ```text
/// union set_mode3 switch (bool set_it) {
/// case TRUE:
///    mode3    mode;
/// default:
///    void;
/// };
/// ```
pub type SetMode3 = Option<Mode3>;
pub type SetUid3 = Option<Uid3>;
pub type SetGid3 = Option<Gid3>;
pub type SetSize3 = Option<Size3>;

/// `set_atime` and `set_mtime`:
///
/// ```text
/// enum time_how {
///    DONT_CHANGE        = 0,
///    SET_TO_SERVER_TIME = 1,
///    SET_TO_CLIENT_TIME = 2
/// };
/// union set_atime switch (time_how set_it) {
/// case SET_TO_CLIENT_TIME:
///    nfstime3  atime;
/// default:
///    void;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetTime {
    #[default]
    DontChange,
    ServerTime,
    ClientTime(NfsTime3),
}

impl XdrEncode for SetTime {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            SetTime::DontChange => out.put_u32(0),
            SetTime::ServerTime => out.put_u32(1),
            SetTime::ClientTime(t) => {
                out.put_u32(2);
                t.encode(out);
            }
        }
    }
}

impl XdrDecode for SetTime {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match r.get_u32()? {
            0 => Ok(SetTime::DontChange),
            1 => Ok(SetTime::ServerTime),
            2 => Ok(SetTime::ClientTime(NfsTime3::decode(r)?)),
            value => Err(XdrError::InvalidDiscriminant {
                what: "time_how",
                value,
            }),
        }
    }
}

/// ```text
/// struct sattr3 {
///    set_mode3   mode;
///    set_uid3    uid;
///    set_gid3    gid;
///    set_size3   size;
///    set_atime   atime;
///    set_mtime   mtime;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sattr3 {
    pub mode: SetMode3,
    pub uid: SetUid3,
    pub gid: SetGid3,
    pub size: SetSize3,
    pub atime: SetTime,
    pub mtime: SetTime,
}
xdr_struct!(Sattr3 {
    mode,
    uid,
    gid,
    size,
    atime,
    mtime
});

/// ```text
/// struct diropargs3 {
///    nfs_fh3     dir;
///    filename3   name;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirOpArgs3 {
    pub dir: NfsFh3,
    pub name: Vec<u8>,
}
xdr_struct!(DirOpArgs3 {
    dir,
    name: opaque("filename3", MAX_NAME_LEN)
});

// ---------------------------------------------------------------------------------------------
// Procedure 1: GETATTR (RFC 1813 section 3.3.1)

/// ```text
/// struct GETATTR3args {
///    nfs_fh3  object;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetAttr3Args {
    pub object: NfsFh3,
}
xdr_struct!(GetAttr3Args { object });

/// ```text
/// struct GETATTR3resok {
///    fattr3   obj_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetAttr3ResOk {
    pub obj_attributes: Fattr3,
}
xdr_struct!(GetAttr3ResOk { obj_attributes });

/// ```text
/// union GETATTR3res switch (nfsstat3 status) {
/// case NFS3_OK:
///    GETATTR3resok  resok;
/// default:
///    void;
/// };
/// ```
pub type GetAttr3Res = NfsRes<GetAttr3ResOk, ()>;

// ---------------------------------------------------------------------------------------------
// Procedure 2: SETATTR (section 3.3.2)

/// ```text
/// union sattrguard3 switch (bool check) {
/// case TRUE:
///    nfstime3  obj_ctime;
/// case FALSE:
///    void;
/// };
/// ```
pub type SattrGuard3 = Option<NfsTime3>;

/// ```text
/// struct SETATTR3args {
///    nfs_fh3      object;
///    sattr3       new_attributes;
///    sattrguard3  guard;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr3Args {
    pub object: NfsFh3,
    pub new_attributes: Sattr3,
    pub guard: SattrGuard3,
}
xdr_struct!(SetAttr3Args {
    object,
    new_attributes,
    guard
});

/// ```text
/// struct SETATTR3resok {
///    wcc_data  obj_wcc;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr3ResOk {
    pub obj_wcc: WccData,
}
xdr_struct!(SetAttr3ResOk { obj_wcc });

/// ```text
/// struct SETATTR3resfail {
///    wcc_data  obj_wcc;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr3ResFail {
    pub obj_wcc: WccData,
}
xdr_struct!(SetAttr3ResFail { obj_wcc });

/// `union SETATTR3res switch (nfsstat3 status) { case NFS3_OK: SETATTR3resok resok;
/// default: SETATTR3resfail resfail; };`
pub type SetAttr3Res = NfsRes<SetAttr3ResOk, SetAttr3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 3: LOOKUP (section 3.3.3)

/// ```text
/// struct LOOKUP3args {
///    diropargs3  what;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup3Args {
    pub what: DirOpArgs3,
}
xdr_struct!(Lookup3Args { what });

/// ```text
/// struct LOOKUP3resok {
///    nfs_fh3      object;
///    post_op_attr obj_attributes;
///    post_op_attr dir_attributes;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup3ResOk {
    pub object: NfsFh3,
    pub obj_attributes: PostOpAttr,
    pub dir_attributes: PostOpAttr,
}
xdr_struct!(Lookup3ResOk {
    object,
    obj_attributes,
    dir_attributes
});

/// ```text
/// struct LOOKUP3resfail {
///    post_op_attr dir_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lookup3ResFail {
    pub dir_attributes: PostOpAttr,
}
xdr_struct!(Lookup3ResFail { dir_attributes });

/// `union LOOKUP3res switch (nfsstat3 status) { case NFS3_OK: LOOKUP3resok resok;
/// default: LOOKUP3resfail resfail; };`
pub type Lookup3Res = NfsRes<Lookup3ResOk, Lookup3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 4: ACCESS (section 3.3.4)

pub const ACCESS3_READ: u32 = 0x0001;
pub const ACCESS3_LOOKUP: u32 = 0x0002;
pub const ACCESS3_MODIFY: u32 = 0x0004;
pub const ACCESS3_EXTEND: u32 = 0x0008;
pub const ACCESS3_DELETE: u32 = 0x0010;
pub const ACCESS3_EXECUTE: u32 = 0x0020;

/// ```text
/// struct ACCESS3args {
///    nfs_fh3  object;
///    uint32   access;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access3Args {
    pub object: NfsFh3,
    pub access: u32,
}
xdr_struct!(Access3Args { object, access });

/// ```text
/// struct ACCESS3resok {
///    post_op_attr   obj_attributes;
///    uint32         access;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access3ResOk {
    pub obj_attributes: PostOpAttr,
    pub access: u32,
}
xdr_struct!(Access3ResOk {
    obj_attributes,
    access
});

/// ```text
/// struct ACCESS3resfail {
///    post_op_attr   obj_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access3ResFail {
    pub obj_attributes: PostOpAttr,
}
xdr_struct!(Access3ResFail { obj_attributes });

pub type Access3Res = NfsRes<Access3ResOk, Access3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 5: READLINK (section 3.3.5)

/// ```text
/// struct READLINK3args {
///    nfs_fh3  symlink;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadLink3Args {
    pub symlink: NfsFh3,
}
xdr_struct!(ReadLink3Args { symlink });

/// ```text
/// struct READLINK3resok {
///    post_op_attr   symlink_attributes;
///    nfspath3       data;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadLink3ResOk {
    pub symlink_attributes: PostOpAttr,
    pub data: Vec<u8>,
}
xdr_struct!(ReadLink3ResOk {
    symlink_attributes,
    data: opaque("nfspath3", MAX_PATH_LEN)
});

/// ```text
/// struct READLINK3resfail {
///    post_op_attr   symlink_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadLink3ResFail {
    pub symlink_attributes: PostOpAttr,
}
xdr_struct!(ReadLink3ResFail { symlink_attributes });

pub type ReadLink3Res = NfsRes<ReadLink3ResOk, ReadLink3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 6: READ (section 3.3.6)

/// ```text
/// struct READ3args {
///    nfs_fh3  file;
///    offset3  offset;
///    count3   count;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read3Args {
    pub file: NfsFh3,
    pub offset: Offset3,
    pub count: Count3,
}
xdr_struct!(Read3Args {
    file,
    offset,
    count
});

/// ```text
/// struct READ3resok {
///    post_op_attr   file_attributes;
///    count3         count;
///    bool           eof;
///    opaque         data<>;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read3ResOk {
    pub file_attributes: PostOpAttr,
    pub count: Count3,
    pub eof: bool,
    pub data: Vec<u8>,
}
xdr_struct!(Read3ResOk {
    file_attributes,
    count,
    eof,
    data: opaque("READ data", MAX_DATA_LEN)
});

/// Encode a successful READ result (status included) straight from a borrowed buffer, so a
/// server need not copy file data into a `Read3ResOk` first. `count` is `data.len()`.
pub fn encode_read3_resok(
    out: &mut BytesMut,
    file_attributes: &PostOpAttr,
    eof: bool,
    data: &[u8],
) {
    NfsStat3::Ok.encode(out);
    file_attributes.encode(out);
    out.put_u32(data.len() as u32);
    eof.encode(out);
    put_opaque_var(out, data);
}

/// Encode the head of a successful READ result (status included): everything up to the data's
/// opaque length, which is `count`. The `count` bytes of data and their XDR padding follow, sent
/// by the caller from wherever they are (a pooled buffer, a pipe) without being copied in here.
pub fn encode_read3_resok_head(
    out: &mut BytesMut,
    file_attributes: &PostOpAttr,
    count: Count3,
    eof: bool,
) {
    NfsStat3::Ok.encode(out);
    file_attributes.encode(out);
    count.encode(out);
    eof.encode(out);
    count.encode(out);
}

/// The file handle that begins READ3args (RFC 1813 3.3.6: `nfs_fh3 file` first), as encoded:
/// its length word and at most [`NFS3_FHSIZE`] bytes of it (no padding), or as much of that as
/// `args` holds.
/// Nothing is checked: a server can tell READs of one file apart before decoding their
/// arguments (which may still turn out to be garbage).
pub fn peek_read3_file(args: &[u8]) -> &[u8] {
    let len = match args {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]).min(NFS3_FHSIZE),
        _ => 0,
    };
    let end = (4 + len as usize).min(args.len());
    args.get(..end).unwrap_or(args)
}

/// ```text
/// struct READ3resfail {
///    post_op_attr   file_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Read3ResFail {
    pub file_attributes: PostOpAttr,
}
xdr_struct!(Read3ResFail { file_attributes });

pub type Read3Res = NfsRes<Read3ResOk, Read3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 7: WRITE (section 3.3.7)

xdr_enum! {
    /// ```text
    /// enum stable_how {
    ///    UNSTABLE  = 0,
    ///    DATA_SYNC = 1,
    ///    FILE_SYNC = 2
    /// };
    /// ```
    pub enum StableHow("stable_how") {
        Unstable = 0,
        DataSync = 1,
        FileSync = 2,
    }
}

/// ```text
/// struct WRITE3args {
///    nfs_fh3     file;
///    offset3     offset;
///    count3      count;
///    stable_how  stable;
///    opaque      data<>;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write3Args {
    pub file: NfsFh3,
    pub offset: Offset3,
    pub count: Count3,
    pub stable: StableHow,
    pub data: Vec<u8>,
}
xdr_struct!(Write3Args {
    file,
    offset,
    count,
    stable,
    data: opaque("WRITE data", MAX_DATA_LEN)
});

/// ```text
/// struct WRITE3resok {
///    wcc_data    file_wcc;
///    count3      count;
///    stable_how  committed;
///    writeverf3  verf;
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write3ResOk {
    pub file_wcc: WccData,
    pub count: Count3,
    pub committed: StableHow,
    pub verf: WriteVerf3,
}
xdr_struct!(Write3ResOk {
    file_wcc,
    count,
    committed,
    verf
});

/// ```text
/// struct WRITE3resfail {
///    wcc_data    file_wcc;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Write3ResFail {
    pub file_wcc: WccData,
}
xdr_struct!(Write3ResFail { file_wcc });

pub type Write3Res = NfsRes<Write3ResOk, Write3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 8: CREATE (section 3.3.8)

/// ```text
/// enum createmode3 {
///    UNCHECKED = 0,
///    GUARDED   = 1,
///    EXCLUSIVE = 2
/// };
/// union createhow3 switch (createmode3 mode) {
/// case UNCHECKED:
/// case GUARDED:
///    sattr3       obj_attributes;
/// case EXCLUSIVE:
///    createverf3  verf;
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateHow3 {
    Unchecked(Sattr3),
    Guarded(Sattr3),
    Exclusive(CreateVerf3),
}

impl XdrEncode for CreateHow3 {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            CreateHow3::Unchecked(a) => {
                out.put_u32(0);
                a.encode(out);
            }
            CreateHow3::Guarded(a) => {
                out.put_u32(1);
                a.encode(out);
            }
            CreateHow3::Exclusive(v) => {
                out.put_u32(2);
                v.encode(out);
            }
        }
    }
}

impl XdrDecode for CreateHow3 {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match r.get_u32()? {
            0 => Ok(CreateHow3::Unchecked(Sattr3::decode(r)?)),
            1 => Ok(CreateHow3::Guarded(Sattr3::decode(r)?)),
            2 => Ok(CreateHow3::Exclusive(CreateVerf3::decode(r)?)),
            value => Err(XdrError::InvalidDiscriminant {
                what: "createmode3",
                value,
            }),
        }
    }
}

/// ```text
/// struct CREATE3args {
///    diropargs3   where;
///    createhow3   how;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create3Args {
    pub where_: DirOpArgs3,
    pub how: CreateHow3,
}
xdr_struct!(Create3Args { where_, how });

/// The `resok` of CREATE, MKDIR, SYMLINK and MKNOD, which the RFC defines identically:
///
/// ```text
/// struct CREATE3resok {
///    post_op_fh3   obj;
///    post_op_attr  obj_attributes;
///    wcc_data      dir_wcc;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Create3ResOk {
    pub obj: PostOpFh3,
    pub obj_attributes: PostOpAttr,
    pub dir_wcc: WccData,
}
xdr_struct!(Create3ResOk {
    obj,
    obj_attributes,
    dir_wcc
});

/// The `resfail` of CREATE, MKDIR, SYMLINK, MKNOD, REMOVE and RMDIR:
///
/// ```text
/// struct CREATE3resfail {
///    wcc_data      dir_wcc;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Create3ResFail {
    pub dir_wcc: WccData,
}
xdr_struct!(Create3ResFail { dir_wcc });

pub type Create3Res = NfsRes<Create3ResOk, Create3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 9: MKDIR (section 3.3.9)

/// ```text
/// struct MKDIR3args {
///    diropargs3   where;
///    sattr3       attributes;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mkdir3Args {
    pub where_: DirOpArgs3,
    pub attributes: Sattr3,
}
xdr_struct!(Mkdir3Args { where_, attributes });

/// `MKDIR3resok` is identical to `CREATE3resok`.
pub type Mkdir3ResOk = Create3ResOk;
/// `MKDIR3resfail` is identical to `CREATE3resfail`.
pub type Mkdir3ResFail = Create3ResFail;
pub type Mkdir3Res = NfsRes<Mkdir3ResOk, Mkdir3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 10: SYMLINK (section 3.3.10)

/// ```text
/// struct symlinkdata3 {
///    sattr3    symlink_attributes;
///    nfspath3  symlink_data;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SymlinkData3 {
    pub symlink_attributes: Sattr3,
    pub symlink_data: Vec<u8>,
}
xdr_struct!(SymlinkData3 {
    symlink_attributes,
    symlink_data: opaque("nfspath3", MAX_PATH_LEN)
});

/// ```text
/// struct SYMLINK3args {
///    diropargs3    where;
///    symlinkdata3  symlink;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Symlink3Args {
    pub where_: DirOpArgs3,
    pub symlink: SymlinkData3,
}
xdr_struct!(Symlink3Args { where_, symlink });

pub type Symlink3ResOk = Create3ResOk;
pub type Symlink3ResFail = Create3ResFail;
pub type Symlink3Res = NfsRes<Symlink3ResOk, Symlink3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 11: MKNOD (section 3.3.11)

/// ```text
/// struct devicedata3 {
///    sattr3     dev_attributes;
///    specdata3  spec;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceData3 {
    pub dev_attributes: Sattr3,
    pub spec: SpecData3,
}
xdr_struct!(DeviceData3 {
    dev_attributes,
    spec
});

/// ```text
/// union mknoddata3 switch (ftype3 type) {
/// case NF3CHR:
/// case NF3BLK:
///    devicedata3  device;
/// case NF3SOCK:
/// case NF3FIFO:
///    sattr3       pipe_attributes;
/// default:
///    void;
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MknodData3 {
    Chr(DeviceData3),
    Blk(DeviceData3),
    Sock(Sattr3),
    Fifo(Sattr3),
    /// NF3REG, NF3DIR or NF3LNK: no arm (the server answers NFS3ERR_BADTYPE).
    Other(Ftype3),
}

impl XdrEncode for MknodData3 {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            MknodData3::Chr(d) => {
                Ftype3::Chr.encode(out);
                d.encode(out);
            }
            MknodData3::Blk(d) => {
                Ftype3::Blk.encode(out);
                d.encode(out);
            }
            MknodData3::Sock(a) => {
                Ftype3::Sock.encode(out);
                a.encode(out);
            }
            MknodData3::Fifo(a) => {
                Ftype3::Fifo.encode(out);
                a.encode(out);
            }
            MknodData3::Other(t) => t.encode(out),
        }
    }
}

impl XdrDecode for MknodData3 {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(match Ftype3::decode(r)? {
            Ftype3::Chr => MknodData3::Chr(DeviceData3::decode(r)?),
            Ftype3::Blk => MknodData3::Blk(DeviceData3::decode(r)?),
            Ftype3::Sock => MknodData3::Sock(Sattr3::decode(r)?),
            Ftype3::Fifo => MknodData3::Fifo(Sattr3::decode(r)?),
            t @ (Ftype3::Reg | Ftype3::Dir | Ftype3::Lnk) => MknodData3::Other(t),
        })
    }
}

/// ```text
/// struct MKNOD3args {
///    diropargs3   where;
///    mknoddata3   what;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mknod3Args {
    pub where_: DirOpArgs3,
    pub what: MknodData3,
}
xdr_struct!(Mknod3Args { where_, what });

pub type Mknod3ResOk = Create3ResOk;
pub type Mknod3ResFail = Create3ResFail;
pub type Mknod3Res = NfsRes<Mknod3ResOk, Mknod3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedures 12 and 13: REMOVE and RMDIR (sections 3.3.12, 3.3.13)

/// ```text
/// struct REMOVE3args {
///    diropargs3  object;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remove3Args {
    pub object: DirOpArgs3,
}
xdr_struct!(Remove3Args { object });

/// ```text
/// struct REMOVE3resok {
///    wcc_data    dir_wcc;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Remove3ResOk {
    pub dir_wcc: WccData,
}
xdr_struct!(Remove3ResOk { dir_wcc });

/// `REMOVE3resfail { wcc_data dir_wcc; }`, identical to `CREATE3resfail`.
pub type Remove3ResFail = Create3ResFail;
pub type Remove3Res = NfsRes<Remove3ResOk, Remove3ResFail>;

/// ```text
/// struct RMDIR3args {
///    diropargs3  object;
/// };
/// ```
pub type Rmdir3Args = Remove3Args;
/// `RMDIR3resok { wcc_data dir_wcc; }`
pub type Rmdir3ResOk = Remove3ResOk;
/// `RMDIR3resfail { wcc_data dir_wcc; }`
pub type Rmdir3ResFail = Create3ResFail;
pub type Rmdir3Res = NfsRes<Rmdir3ResOk, Rmdir3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 14: RENAME (section 3.3.14)

/// ```text
/// struct RENAME3args {
///    diropargs3   from;
///    diropargs3   to;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rename3Args {
    pub from: DirOpArgs3,
    pub to: DirOpArgs3,
}
xdr_struct!(Rename3Args { from, to });

/// ```text
/// struct RENAME3resok {
///    wcc_data     fromdir_wcc;
///    wcc_data     todir_wcc;
/// };
/// ```
/// (`RENAME3resfail` has the same two fields.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rename3ResOk {
    pub fromdir_wcc: WccData,
    pub todir_wcc: WccData,
}
xdr_struct!(Rename3ResOk {
    fromdir_wcc,
    todir_wcc
});

pub type Rename3ResFail = Rename3ResOk;
pub type Rename3Res = NfsRes<Rename3ResOk, Rename3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 15: LINK (section 3.3.15)

/// ```text
/// struct LINK3args {
///    nfs_fh3     file;
///    diropargs3  link;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link3Args {
    pub file: NfsFh3,
    pub link: DirOpArgs3,
}
xdr_struct!(Link3Args { file, link });

/// ```text
/// struct LINK3resok {
///    post_op_attr   file_attributes;
///    wcc_data       linkdir_wcc;
/// };
/// ```
/// (`LINK3resfail` has the same two fields.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link3ResOk {
    pub file_attributes: PostOpAttr,
    pub linkdir_wcc: WccData,
}
xdr_struct!(Link3ResOk {
    file_attributes,
    linkdir_wcc
});

pub type Link3ResFail = Link3ResOk;
pub type Link3Res = NfsRes<Link3ResOk, Link3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 16: READDIR (section 3.3.16)

/// ```text
/// struct READDIR3args {
///    nfs_fh3      dir;
///    cookie3      cookie;
///    cookieverf3  cookieverf;
///    count3       count;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadDir3Args {
    pub dir: NfsFh3,
    pub cookie: Cookie3,
    pub cookieverf: CookieVerf3,
    pub count: Count3,
}
xdr_struct!(ReadDir3Args {
    dir,
    cookie,
    cookieverf,
    count
});

/// One entry; `nextentry` is expressed by the position in [`DirList3::entries`].
///
/// ```text
/// struct entry3 {
///    fileid3      fileid;
///    filename3    name;
///    cookie3      cookie;
///    entry3       *nextentry;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry3 {
    pub fileid: FileId3,
    pub name: Vec<u8>,
    pub cookie: Cookie3,
}
xdr_struct!(Entry3 {
    fileid,
    name: opaque("filename3", MAX_NAME_LEN),
    cookie
});

/// Bytes an `entry3` with a name of `name_len` bytes adds to a READDIR reply, including the
/// TRUE that links it into the list. A server fills a reply until the total would pass `count`
/// (RFC 1813 section 3.3.16: `count` includes all XDR overhead).
pub const fn entry3_encoded_len(name_len: usize) -> usize {
    4 + 8 + opaque_var_len(name_len) + 8
}

/// ```text
/// struct dirlist3 {
///    entry3       *entries;
///    bool         eof;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirList3 {
    pub entries: Vec<Entry3>,
    pub eof: bool,
}

xdr_struct!(DirList3 {
    entries: linked_list("entry3 list", MAX_DIR_ENTRIES),
    eof
});

/// ```text
/// struct READDIR3resok {
///    post_op_attr dir_attributes;
///    cookieverf3  cookieverf;
///    dirlist3     reply;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadDir3ResOk {
    pub dir_attributes: PostOpAttr,
    pub cookieverf: CookieVerf3,
    pub reply: DirList3,
}
xdr_struct!(ReadDir3ResOk {
    dir_attributes,
    cookieverf,
    reply
});

/// Bytes of a READDIR or READDIRPLUS reply with no entries: status, directory attributes,
/// verifier, the FALSE ending the list and `eof`. Add [`entry3_encoded_len`] (or
/// [`entryplus3_encoded_len`]) per entry to get the whole reply, RPC header excluded.
pub fn readdir3_resok_base_len(dir_attributes: &PostOpAttr) -> usize {
    4 + dir_attributes.encoded_len() + NFS3_COOKIEVERFSIZE + 4 + 4
}

/// ```text
/// struct READDIR3resfail {
///    post_op_attr dir_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadDir3ResFail {
    pub dir_attributes: PostOpAttr,
}
xdr_struct!(ReadDir3ResFail { dir_attributes });

pub type ReadDir3Res = NfsRes<ReadDir3ResOk, ReadDir3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 17: READDIRPLUS (section 3.3.17)

/// ```text
/// struct READDIRPLUS3args {
///    nfs_fh3      dir;
///    cookie3      cookie;
///    cookieverf3  cookieverf;
///    count3       dircount;
///    count3       maxcount;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadDirPlus3Args {
    pub dir: NfsFh3,
    pub cookie: Cookie3,
    pub cookieverf: CookieVerf3,
    pub dircount: Count3,
    pub maxcount: Count3,
}
xdr_struct!(ReadDirPlus3Args {
    dir,
    cookie,
    cookieverf,
    dircount,
    maxcount
});

/// ```text
/// struct entryplus3 {
///    fileid3      fileid;
///    filename3    name;
///    cookie3      cookie;
///    post_op_attr name_attributes;
///    post_op_fh3  name_handle;
///    entryplus3   *nextentry;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryPlus3 {
    pub fileid: FileId3,
    pub name: Vec<u8>,
    pub cookie: Cookie3,
    pub name_attributes: PostOpAttr,
    pub name_handle: PostOpFh3,
}
xdr_struct!(EntryPlus3 {
    fileid,
    name: opaque("filename3", MAX_NAME_LEN),
    cookie,
    name_attributes,
    name_handle
});

/// Bytes an `entryplus3` adds to a READDIRPLUS reply (counted against `maxcount`), including
/// the TRUE that links it into the list.
pub fn entryplus3_encoded_len(
    name_len: usize,
    name_attributes: &PostOpAttr,
    name_handle: &PostOpFh3,
) -> usize {
    entry3_encoded_len(name_len) + name_attributes.encoded_len() + name_handle.encoded_len()
}

/// Bytes an entry counts against READDIRPLUS `dircount`: RFC 1813 section 3.3.17 says dircount
/// excludes the attributes and handle, so this is the size of the equivalent `entry3`.
pub const fn entryplus3_dircount_len(name_len: usize) -> usize {
    entry3_encoded_len(name_len)
}

impl EntryPlus3 {
    pub fn encoded_len(&self) -> usize {
        entryplus3_encoded_len(self.name.len(), &self.name_attributes, &self.name_handle)
    }
}

impl Entry3 {
    pub fn encoded_len(&self) -> usize {
        entry3_encoded_len(self.name.len())
    }
}

/// ```text
/// struct dirlistplus3 {
///    entryplus3   *entries;
///    bool         eof;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirListPlus3 {
    pub entries: Vec<EntryPlus3>,
    pub eof: bool,
}

xdr_struct!(DirListPlus3 {
    entries: linked_list("entryplus3 list", MAX_DIR_ENTRIES),
    eof
});

/// Writes the results of a READDIRPLUS that succeeded (`READDIRPLUS3res` with `NFS3_OK`) straight
/// into a reply, entry by entry, in the bytes [`ReadDirPlus3Res::Ok`] encodes to, without building
/// the entries first: a page of a large directory is hundreds of entries, each of which would
/// otherwise own its name and handle. Entries are taken while the results stay within `limit`
/// bytes as [`readdir3_resok_base_len`] and [`entryplus3_encoded_len`] count them.
pub struct DirListPlusWriter<'a> {
    out: &'a mut BytesMut,
    /// Where the results begin in `out`.
    start: usize,
    /// Bytes counted so far against `limit`.
    size: usize,
    limit: usize,
    entries: usize,
}

impl<'a> DirListPlusWriter<'a> {
    /// Start the results in `out`: the status, `dir_attributes` and `cookieverf`.
    pub fn new(
        out: &'a mut BytesMut,
        dir_attributes: &PostOpAttr,
        cookieverf: &CookieVerf3,
        limit: usize,
    ) -> Self {
        let start = out.len();
        NfsStat3::Ok.encode(out);
        dir_attributes.encode(out);
        cookieverf.encode(out);
        DirListPlusWriter {
            out,
            start,
            size: readdir3_resok_base_len(dir_attributes),
            limit,
            entries: 0,
        }
    }

    /// Append an entry (`name` at most [`MAX_NAME_LEN`] bytes, `handle` at most
    /// [`NFS3_FHSIZE`]) if the results stay within the limit with it; `false`, and nothing
    /// written, if they would not.
    pub fn push(
        &mut self,
        fileid: FileId3,
        name: &[u8],
        cookie: Cookie3,
        attributes: Option<&Fattr3>,
        handle: Option<&[u8]>,
    ) -> bool {
        let len = entry3_encoded_len(name.len())
            + 4
            + attributes.map_or(0, |_| Fattr3::ENCODED_LEN)
            + 4
            + handle.map_or(0, |h| opaque_var_len(h.len()));
        if self.size + len > self.limit {
            return false;
        }
        self.size += len;
        self.entries += 1;
        let out = &mut *self.out;
        out.reserve(len);
        out.put_u32(1);
        out.put_u64(fileid);
        put_opaque_var(out, name);
        out.put_u64(cookie);
        match attributes {
            Some(a) => {
                out.put_u32(1);
                a.encode(out);
            }
            None => out.put_u32(0),
        }
        match handle {
            Some(h) => {
                out.put_u32(1);
                put_opaque_var(out, h);
            }
            None => out.put_u32(0),
        }
        true
    }

    /// Entries written so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// End the list, and the results, with `eof`.
    pub fn finish(self, eof: bool) {
        self.out.put_u32(0);
        eof.encode(self.out);
    }

    /// Take back everything written, results included (to write a failure instead).
    pub fn cancel(self) {
        self.out.truncate(self.start);
    }
}

/// ```text
/// struct READDIRPLUS3resok {
///    post_op_attr dir_attributes;
///    cookieverf3  cookieverf;
///    dirlistplus3 reply;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadDirPlus3ResOk {
    pub dir_attributes: PostOpAttr,
    pub cookieverf: CookieVerf3,
    pub reply: DirListPlus3,
}
xdr_struct!(ReadDirPlus3ResOk {
    dir_attributes,
    cookieverf,
    reply
});

/// ```text
/// struct READDIRPLUS3resfail {
///    post_op_attr dir_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadDirPlus3ResFail {
    pub dir_attributes: PostOpAttr,
}
xdr_struct!(ReadDirPlus3ResFail { dir_attributes });

pub type ReadDirPlus3Res = NfsRes<ReadDirPlus3ResOk, ReadDirPlus3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 18: FSSTAT (section 3.3.18)

/// ```text
/// struct FSSTAT3args {
///    nfs_fh3   fsroot;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsStat3Args {
    pub fsroot: NfsFh3,
}
xdr_struct!(FsStat3Args { fsroot });

/// ```text
/// struct FSSTAT3resok {
///    post_op_attr obj_attributes;
///    size3        tbytes;
///    size3        fbytes;
///    size3        abytes;
///    size3        tfiles;
///    size3        ffiles;
///    size3        afiles;
///    uint32       invarsec;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStat3ResOk {
    pub obj_attributes: PostOpAttr,
    pub tbytes: Size3,
    pub fbytes: Size3,
    pub abytes: Size3,
    pub tfiles: Size3,
    pub ffiles: Size3,
    pub afiles: Size3,
    pub invarsec: u32,
}
xdr_struct!(FsStat3ResOk {
    obj_attributes,
    tbytes,
    fbytes,
    abytes,
    tfiles,
    ffiles,
    afiles,
    invarsec
});

/// ```text
/// struct FSSTAT3resfail {
///    post_op_attr obj_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStat3ResFail {
    pub obj_attributes: PostOpAttr,
}
xdr_struct!(FsStat3ResFail { obj_attributes });

pub type FsStat3Res = NfsRes<FsStat3ResOk, FsStat3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 19: FSINFO (section 3.3.19)

pub const FSF3_LINK: u32 = 0x0001;
pub const FSF3_SYMLINK: u32 = 0x0002;
pub const FSF3_HOMOGENEOUS: u32 = 0x0008;
pub const FSF3_CANSETTIME: u32 = 0x0010;

/// ```text
/// struct FSINFO3args {
///    nfs_fh3   fsroot;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsInfo3Args {
    pub fsroot: NfsFh3,
}
xdr_struct!(FsInfo3Args { fsroot });

/// ```text
/// struct FSINFO3resok {
///    post_op_attr obj_attributes;
///    uint32       rtmax;
///    uint32       rtpref;
///    uint32       rtmult;
///    uint32       wtmax;
///    uint32       wtpref;
///    uint32       wtmult;
///    uint32       dtpref;
///    size3        maxfilesize;
///    nfstime3     time_delta;
///    uint32       properties;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo3ResOk {
    pub obj_attributes: PostOpAttr,
    pub rtmax: u32,
    pub rtpref: u32,
    pub rtmult: u32,
    pub wtmax: u32,
    pub wtpref: u32,
    pub wtmult: u32,
    pub dtpref: u32,
    pub maxfilesize: Size3,
    pub time_delta: NfsTime3,
    pub properties: u32,
}
xdr_struct!(FsInfo3ResOk {
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
    properties
});

/// ```text
/// struct FSINFO3resfail {
///    post_op_attr obj_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsInfo3ResFail {
    pub obj_attributes: PostOpAttr,
}
xdr_struct!(FsInfo3ResFail { obj_attributes });

pub type FsInfo3Res = NfsRes<FsInfo3ResOk, FsInfo3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 20: PATHCONF (section 3.3.20)

/// ```text
/// struct PATHCONF3args {
///    nfs_fh3   object;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathConf3Args {
    pub object: NfsFh3,
}
xdr_struct!(PathConf3Args { object });

/// ```text
/// struct PATHCONF3resok {
///    post_op_attr obj_attributes;
///    uint32       linkmax;
///    uint32       name_max;
///    bool         no_trunc;
///    bool         chown_restricted;
///    bool         case_insensitive;
///    bool         case_preserving;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathConf3ResOk {
    pub obj_attributes: PostOpAttr,
    pub linkmax: u32,
    pub name_max: u32,
    pub no_trunc: bool,
    pub chown_restricted: bool,
    pub case_insensitive: bool,
    pub case_preserving: bool,
}
xdr_struct!(PathConf3ResOk {
    obj_attributes,
    linkmax,
    name_max,
    no_trunc,
    chown_restricted,
    case_insensitive,
    case_preserving
});

/// ```text
/// struct PATHCONF3resfail {
///    post_op_attr obj_attributes;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathConf3ResFail {
    pub obj_attributes: PostOpAttr,
}
xdr_struct!(PathConf3ResFail { obj_attributes });

pub type PathConf3Res = NfsRes<PathConf3ResOk, PathConf3ResFail>;

// ---------------------------------------------------------------------------------------------
// Procedure 21: COMMIT (section 3.3.21)

/// ```text
/// struct COMMIT3args {
///    nfs_fh3    file;
///    offset3    offset;
///    count3     count;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit3Args {
    pub file: NfsFh3,
    pub offset: Offset3,
    pub count: Count3,
}
xdr_struct!(Commit3Args {
    file,
    offset,
    count
});

/// ```text
/// struct COMMIT3resok {
///    wcc_data   file_wcc;
///    writeverf3 verf;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commit3ResOk {
    pub file_wcc: WccData,
    pub verf: WriteVerf3,
}
xdr_struct!(Commit3ResOk { file_wcc, verf });

/// ```text
/// struct COMMIT3resfail {
///    wcc_data   file_wcc;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commit3ResFail {
    pub file_wcc: WccData,
}
xdr_struct!(Commit3ResFail { file_wcc });

pub type Commit3Res = NfsRes<Commit3ResOk, Commit3ResFail>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{decode, to_bytes};

    fn attrs() -> Fattr3 {
        Fattr3 {
            ftype: Ftype3::Reg,
            mode: 0o644,
            nlink: 1,
            uid: 1,
            gid: 2,
            size: 3,
            used: 4,
            rdev: SpecData3::default(),
            fsid: 5,
            fileid: 6,
            atime: NfsTime3::default(),
            mtime: NfsTime3::default(),
            ctime: NfsTime3::default(),
        }
    }

    #[test]
    fn dirlistplus_writer_writes_what_the_results_encode_to_and_stops_at_the_limit() {
        let entry = |i: u64, attributes: bool, handle: bool| EntryPlus3 {
            fileid: 100 + i,
            name: format!("name-{}", "x".repeat(i as usize)).into_bytes(),
            cookie: 1000 + i,
            name_attributes: PostOpAttr(attributes.then(attrs)),
            name_handle: PostOpFh3(handle.then(|| NfsFh3 {
                data: vec![i as u8; 10 + i as usize],
            })),
        };
        let entries: Vec<EntryPlus3> = (0..6).map(|i| entry(i, i % 3 != 1, i % 2 == 0)).collect();
        let dir_attributes = PostOpAttr(Some(attrs()));
        let verf = *b"verifier";
        let whole = |n: usize, eof: bool| ReadDirPlus3ResOk {
            dir_attributes,
            cookieverf: verf,
            reply: DirListPlus3 {
                entries: entries[..n].to_vec(),
                eof,
            },
        };
        let len_of = |n: usize| {
            readdir3_resok_base_len(&dir_attributes)
                + entries[..n]
                    .iter()
                    .map(EntryPlus3::encoded_len)
                    .sum::<usize>()
        };
        // Room for exactly four entries: four are written, and the bytes are those of the
        // results holding those four.
        for (limit, n) in [
            (len_of(6), 6),
            (len_of(4), 4),
            (len_of(5) - 1, 4),
            (len_of(0), 0),
        ] {
            let mut out = BytesMut::from(&b"head"[..]);
            let mut w = DirListPlusWriter::new(&mut out, &dir_attributes, &verf, limit);
            let mut taken = 0;
            for e in &entries {
                let fh = e.name_handle.0.as_ref().map(|h| h.data.as_slice());
                if !w.push(
                    e.fileid,
                    &e.name,
                    e.cookie,
                    e.name_attributes.0.as_ref(),
                    fh,
                ) {
                    break;
                }
                taken += 1;
            }
            assert_eq!((taken, w.entries()), (n, n), "limit {limit}");
            w.finish(n == 6);
            let expect = to_bytes(&ReadDirPlus3Res::Ok(whole(n, n == 6)));
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &expect[..], "limit {limit}");
            assert_eq!(out.len() - 4, len_of(n), "the count matches the bytes");
        }
        let mut out = BytesMut::from(&b"head"[..]);
        let w = DirListPlusWriter::new(&mut out, &dir_attributes, &verf, 0);
        w.cancel();
        assert_eq!(&out[..], b"head");
    }

    #[test]
    fn fattr3_is_84_bytes() {
        assert_eq!(to_bytes(&attrs()).len(), Fattr3::ENCODED_LEN);
    }

    #[test]
    fn unknown_status_is_an_error() {
        assert_eq!(
            decode::<GetAttr3Res>(&[0, 0, 0, 3]),
            Err(XdrError::InvalidDiscriminant {
                what: "nfsstat3",
                value: 3
            })
        );
    }

    #[test]
    fn file_handle_longer_than_64_bytes_is_refused() {
        let mut out = BytesMut::new();
        put_opaque_var(&mut out, &[0u8; 65]);
        assert!(matches!(
            decode::<NfsFh3>(&out),
            Err(XdrError::TooLong {
                len: 65,
                max: 64,
                ..
            })
        ));
    }

    #[test]
    fn readdir_sizes_match_encoding() {
        let res = ReadDir3ResOk {
            dir_attributes: PostOpAttr(Some(attrs())),
            cookieverf: [1; 8],
            reply: DirList3 {
                entries: vec![
                    Entry3 {
                        fileid: 1,
                        name: b"a".to_vec(),
                        cookie: 1,
                    },
                    Entry3 {
                        fileid: 2,
                        name: b"abcd".to_vec(),
                        cookie: 2,
                    },
                ],
                eof: true,
            },
        };
        let expect = readdir3_resok_base_len(&res.dir_attributes)
            + res
                .reply
                .entries
                .iter()
                .map(Entry3::encoded_len)
                .sum::<usize>();
        assert_eq!(to_bytes(&ReadDir3Res::Ok(res)).len(), expect);
    }

    #[test]
    fn read_resok_helper_matches_struct_encoding() {
        let ok = Read3ResOk {
            file_attributes: PostOpAttr(Some(attrs())),
            count: 3,
            eof: true,
            data: b"xyz".to_vec(),
        };
        let mut out = BytesMut::new();
        encode_read3_resok(&mut out, &ok.file_attributes, true, b"xyz");
        assert_eq!(out, to_bytes(&Read3Res::Ok(ok)));
    }

    #[test]
    fn read_resok_head_then_data_and_padding_is_the_whole_result() {
        let attrs = PostOpAttr(Some(attrs()));
        let mut whole = BytesMut::new();
        encode_read3_resok(&mut whole, &attrs, false, b"hello");
        let mut head = BytesMut::new();
        encode_read3_resok_head(&mut head, &attrs, 5, false);
        head.extend_from_slice(b"hello\0\0\0");
        assert_eq!(head, whole);
    }

    #[test]
    fn the_file_handle_of_read_args_is_found_without_decoding() {
        let args = Read3Args {
            file: NfsFh3 { data: vec![7; 10] },
            offset: 4096,
            count: 100,
        };
        let bytes = to_bytes(&args);
        assert_eq!(peek_read3_file(&bytes), &bytes[..14]);
        // Another offset of the same file: the same handle.
        let later = to_bytes(&Read3Args {
            offset: 8192,
            ..args.clone()
        });
        assert_eq!(peek_read3_file(&later), peek_read3_file(&bytes));
        // Hostile lengths: capped at NFS3_FHSIZE, and at what there is.
        let mut huge = BytesMut::new();
        huge.put_u32(u32::MAX);
        huge.extend_from_slice(&[1; 100]);
        assert_eq!(peek_read3_file(&huge).len(), 4 + 64);
        assert_eq!(peek_read3_file(&bytes[..9]), &bytes[..9]);
        assert_eq!(peek_read3_file(&[0, 0]), &[0, 0]);
    }

    #[test]
    fn status_names_are_the_rfc_names() {
        assert_eq!(NfsStat3::Ok.name(), "NFS3_OK");
        assert_eq!(NfsStat3::NotSync.name(), "NFS3ERR_NOT_SYNC");
        assert_eq!(NfsStat3::Jukebox.name(), "NFS3ERR_JUKEBOX");
        for s in NfsStat3::ALL {
            assert!(s.name().starts_with("NFS3"), "{s:?}");
            assert_eq!(NfsStat3::ALL.get(s.index()), Some(s));
        }
    }

    #[test]
    fn procedure_names_are_indexed_by_number() {
        assert_eq!(proc3::NAMES.len(), 22);
        for (n, name) in proc3::NAMES.iter().enumerate() {
            assert_eq!(proc3::name(n as u32), Some(*name));
        }
        assert_eq!(proc3::name(proc3::READDIRPLUS), Some("READDIRPLUS"));
        assert_eq!(proc3::name(22), None);
    }

    #[test]
    fn mknod_of_regular_file_has_no_arm() {
        let v = MknodData3::Other(Ftype3::Reg);
        assert_eq!(to_bytes(&v).len(), 4);
        assert_eq!(decode::<MknodData3>(&to_bytes(&v)), Ok(v));
    }
}
