//! MOUNT version 3 (RFC 1813 appendix I): the program a client asks for an export's root handle.

use bytes::BytesMut;

use crate::xdr::{
    put_linked_list, put_list, put_opaque_var, XdrDecode, XdrEncode, XdrError, XdrReader,
};
use crate::{xdr_enum, xdr_struct};

/// `program MOUNT_PROGRAM { version MOUNT_V3 { ... } = 3; } = 100005;`
pub const MOUNT_PROGRAM: u32 = 100005;
pub const MOUNT_V3: u32 = 3;

crate::rpc_procedures! {
    /// Procedure numbers, and their names.
    ///
    /// ```text
    /// void      MOUNTPROC3_NULL(void)    = 0;
    /// mountres3 MOUNTPROC3_MNT(dirpath)  = 1;
    /// mountlist MOUNTPROC3_DUMP(void)    = 2;
    /// void      MOUNTPROC3_UMNT(dirpath) = 3;
    /// void      MOUNTPROC3_UMNTALL(void) = 4;
    /// exports   MOUNTPROC3_EXPORT(void)  = 5;
    /// ```
    pub mod mountproc3 {
        NULL = 0,
        MNT = 1,
        DUMP = 2,
        UMNT = 3,
        UMNTALL = 4,
        EXPORT = 5,
    }
}

/// `const MNTPATHLEN = 1024;  /* Maximum bytes in a path name */`
pub const MNTPATHLEN: u32 = 1024;
/// `const MNTNAMLEN  = 255;   /* Maximum bytes in a name */`
pub const MNTNAMLEN: u32 = 255;
/// `const FHSIZE3    = 64;    /* Maximum bytes in a V3 file handle */`
pub const FHSIZE3: u32 = 64;
/// Cap on `auth_flavors<>` when decoding (the RFC leaves it unbounded).
pub const MAX_AUTH_FLAVORS: u32 = 16;
/// Cap on the entries of a DUMP or EXPORT list, and on the groups of one export, when decoding.
pub const MAX_MOUNT_LIST: u32 = 4096;

xdr_enum! {
    /// ```text
    /// enum mountstat3 {
    ///    MNT3_OK = 0,                 /* no error */
    ///    MNT3ERR_PERM = 1,            /* Not owner */
    ///    MNT3ERR_NOENT = 2,           /* No such file or directory */
    ///    MNT3ERR_IO = 5,              /* I/O error */
    ///    MNT3ERR_ACCES = 13,          /* Permission denied */
    ///    MNT3ERR_NOTDIR = 20,         /* Not a directory */
    ///    MNT3ERR_INVAL = 22,          /* Invalid argument */
    ///    MNT3ERR_NAMETOOLONG = 63,    /* Filename too long */
    ///    MNT3ERR_NOTSUPP = 10004,     /* Operation not supported */
    ///    MNT3ERR_SERVERFAULT = 10006  /* A failure on the server */
    /// };
    /// ```
    pub enum MountStat3("mountstat3") {
        Ok = 0,
        Perm = 1,
        NoEnt = 2,
        Io = 5,
        Acces = 13,
        NotDir = 20,
        Inval = 22,
        NameTooLong = 63,
        NotSupp = 10004,
        ServerFault = 10006,
    }
}

impl MountStat3 {
    /// The name RFC 1813 gives it: `MNT3_OK`, `MNT3ERR_NOENT`, ...
    pub const fn name(self) -> &'static str {
        match self {
            MountStat3::Ok => "MNT3_OK",
            MountStat3::Perm => "MNT3ERR_PERM",
            MountStat3::NoEnt => "MNT3ERR_NOENT",
            MountStat3::Io => "MNT3ERR_IO",
            MountStat3::Acces => "MNT3ERR_ACCES",
            MountStat3::NotDir => "MNT3ERR_NOTDIR",
            MountStat3::Inval => "MNT3ERR_INVAL",
            MountStat3::NameTooLong => "MNT3ERR_NAMETOOLONG",
            MountStat3::NotSupp => "MNT3ERR_NOTSUPP",
            MountStat3::ServerFault => "MNT3ERR_SERVERFAULT",
        }
    }
}

/// Argument of MNT and UMNT: `typedef string dirpath<MNTPATHLEN>;`
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirPath(pub Vec<u8>);

impl XdrEncode for DirPath {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque_var(out, &self.0);
    }
}

impl XdrDecode for DirPath {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Self(r.get_string("dirpath", MNTPATHLEN)?.to_vec()))
    }
}

/// ```text
/// struct mountres3_ok {
///    fhandle3   fhandle;        /* typedef opaque fhandle3<FHSIZE3>; */
///    int        auth_flavors<>;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountRes3Ok {
    pub fhandle: Vec<u8>,
    pub auth_flavors: Vec<u32>,
}

impl XdrEncode for MountRes3Ok {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque_var(out, &self.fhandle);
        put_list(out, &self.auth_flavors, |o, f| f.encode(o));
    }
}

impl XdrDecode for MountRes3Ok {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            fhandle: r.get_opaque_var("fhandle3", FHSIZE3)?.to_vec(),
            auth_flavors: r.get_list("auth_flavors", MAX_AUTH_FLAVORS, |r| r.get_u32())?,
        })
    }
}

/// ```text
/// union mountres3 switch (mountstat3 fhs_status) {
/// case MNT3_OK:
///    mountres3_ok  mountinfo;
/// default:
///    void;
/// };
/// ```
/// `Fail` never carries `MountStat3::Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRes3 {
    Ok(MountRes3Ok),
    Fail(MountStat3),
}

impl XdrEncode for MountRes3 {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            MountRes3::Ok(v) => {
                MountStat3::Ok.encode(out);
                v.encode(out);
            }
            MountRes3::Fail(s) => {
                debug_assert!(*s != MountStat3::Ok, "MountRes3::Fail with MNT3_OK");
                s.encode(out);
            }
        }
    }
}

impl XdrDecode for MountRes3 {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        match MountStat3::decode(r)? {
            MountStat3::Ok => Ok(MountRes3::Ok(MountRes3Ok::decode(r)?)),
            s => Ok(MountRes3::Fail(s)),
        }
    }
}

impl MountRes3 {
    pub fn status(&self) -> MountStat3 {
        match self {
            MountRes3::Ok(_) => MountStat3::Ok,
            MountRes3::Fail(s) => *s,
        }
    }
}

/// One element of a DUMP reply.
///
/// ```text
/// typedef struct mountbody *mountlist;
/// struct mountbody {
///    name       ml_hostname;   /* typedef string name<MNTNAMLEN>; */
///    dirpath    ml_directory;
///    mountlist  ml_next;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountBody {
    pub ml_hostname: Vec<u8>,
    pub ml_directory: Vec<u8>,
}
xdr_struct!(MountBody {
    ml_hostname: opaque("name", MNTNAMLEN),
    ml_directory: opaque("dirpath", MNTPATHLEN)
});

/// The DUMP result: `mountlist` as a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountList(pub Vec<MountBody>);

xdr_struct!(MountList(linked_list("mountlist", MAX_MOUNT_LIST)));

/// One element of an EXPORT reply; `ex_groups` is the `groups` list of names.
///
/// ```text
/// typedef struct groupnode *groups;
/// struct groupnode {
///    name     gr_name;
///    groups   gr_next;
/// };
/// typedef struct exportnode *exports;
/// struct exportnode {
///    dirpath  ex_dir;
///    groups   ex_groups;
///    exports  ex_next;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportNode {
    pub ex_dir: Vec<u8>,
    pub ex_groups: Vec<Vec<u8>>,
}

impl XdrEncode for ExportNode {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque_var(out, &self.ex_dir);
        put_linked_list(out, &self.ex_groups, |o, g| put_opaque_var(o, g));
    }
}

impl XdrDecode for ExportNode {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            ex_dir: r.get_string("dirpath", MNTPATHLEN)?.to_vec(),
            ex_groups: r.get_linked_list("groups", MAX_MOUNT_LIST, |r| {
                Ok(r.get_string("name", MNTNAMLEN)?.to_vec())
            })?,
        })
    }
}

/// The EXPORT result: `exports` as a list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports(pub Vec<ExportNode>);

xdr_struct!(Exports(linked_list("exports", MAX_MOUNT_LIST)));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{decode, to_bytes};

    #[test]
    fn mnt_reply_round_trips() {
        let res = MountRes3::Ok(MountRes3Ok {
            fhandle: vec![1, 2, 3],
            auth_flavors: vec![0, 1],
        });
        assert_eq!(decode::<MountRes3>(&to_bytes(&res)), Ok(res));
        let fail = MountRes3::Fail(MountStat3::NoEnt);
        assert_eq!(to_bytes(&fail).len(), 4);
        assert_eq!(decode::<MountRes3>(&to_bytes(&fail)), Ok(fail));
    }

    #[test]
    fn names_are_the_rfc_names() {
        assert_eq!(MountStat3::Ok.name(), "MNT3_OK");
        assert_eq!(MountStat3::ServerFault.name(), "MNT3ERR_SERVERFAULT");
        assert_eq!(
            MountRes3::Fail(MountStat3::Acces).status().name(),
            "MNT3ERR_ACCES"
        );
        assert_eq!(
            mountproc3::NAMES,
            ["NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"]
        );
        for (n, name) in mountproc3::NAMES.iter().enumerate() {
            assert_eq!(mountproc3::name(n as u32), Some(*name));
        }
    }

    #[test]
    fn dirpath_over_1024_bytes_is_refused() {
        let mut out = BytesMut::new();
        put_opaque_var(&mut out, &[b'a'; 1025]);
        assert!(matches!(
            decode::<DirPath>(&out),
            Err(XdrError::TooLong { len: 1025, .. })
        ));
    }
}
