//! Who is calling (AUTH_SYS or AUTH_NONE) and what POSIX permissions allow them, as the Linux
//! NFS server does: the credential is trusted, root is not squashed, the export is read-only.
use mountshare_fs::{Attr, FileKind};
use mountshare_proto::nfs3::{ACCESS3_EXECUTE, ACCESS3_LOOKUP, ACCESS3_READ};
use mountshare_proto::rpc::{OpaqueAuth, AUTH_NONE, AUTH_SYS};

/// `nobody`, for AUTH_NONE callers.
const NOBODY: u32 = 65534;

/// The caller's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl Creds {
    /// The identity of a call's credential; `None` for flavors this server does not accept.
    pub(crate) fn from_auth(cred: &OpaqueAuth) -> Option<Creds> {
        match cred.flavor {
            AUTH_SYS => {
                let sys = cred.as_auth_sys()?.ok()?;
                Some(Creds {
                    uid: sys.uid,
                    gid: sys.gid,
                    gids: sys.gids,
                })
            }
            AUTH_NONE => Some(Creds {
                uid: NOBODY,
                gid: NOBODY,
                gids: Vec::new(),
            }),
            _ => None,
        }
    }

    fn class_bits(&self, attr: &Attr) -> u32 {
        let shift = if self.uid == attr.uid {
            6
        } else if self.gid == attr.gid || self.gids.contains(&attr.gid) {
            3
        } else {
            0
        };
        (attr.mode >> shift) & 7
    }

    pub(crate) fn can_read(&self, attr: &Attr) -> bool {
        self.uid == 0 || self.class_bits(attr) & 4 != 0
    }

    /// Search a directory, or execute a file (root: if anyone may).
    pub(crate) fn can_exec(&self, attr: &Attr) -> bool {
        if self.uid == 0 {
            return attr.kind == FileKind::Directory || attr.mode & 0o111 != 0;
        }
        self.class_bits(attr) & 1 != 0
    }

    /// READ of a file's data. As knfsd does, the owner may always read (the client checked at
    /// open time), and execute permission suffices (the client reads pages to execute).
    pub(crate) fn can_read_data(&self, attr: &Attr) -> bool {
        self.uid == attr.uid || self.can_read(attr) || self.can_exec(attr)
    }

    /// The ACCESS3 bits granted out of `requested`. Nothing that modifies is ever granted.
    pub(crate) fn access(&self, attr: &Attr, requested: u32) -> u32 {
        let mut granted = 0;
        if self.can_read(attr) {
            granted |= ACCESS3_READ;
        }
        if self.can_exec(attr) {
            granted |= if attr.kind == FileKind::Directory {
                ACCESS3_LOOKUP
            } else {
                ACCESS3_EXECUTE
            };
        }
        granted & requested
    }
}
