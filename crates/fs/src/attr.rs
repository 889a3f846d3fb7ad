//! File attributes as the NFS layer needs them, converted from the host's `stat`.

/// The type of a file system object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    BlockDevice,
    CharDevice,
    Fifo,
    Socket,
}

/// Seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: u32,
}

/// The attributes of one object, as it is now on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub kind: FileKind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Bytes of storage used (`st_blocks * 512`).
    pub used: u64,
    /// Device major and minor, for block and character devices.
    pub rdev: (u32, u32),
    /// Host device and inode: identify the object on this host only (never sent to clients).
    pub dev: u64,
    pub ino: u64,
    pub atime: Timestamp,
    pub mtime: Timestamp,
    pub ctime: Timestamp,
}

impl Attr {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    /// The attributes of an open file.
    pub fn of_file(fd: impl std::os::fd::AsFd) -> Result<Attr, crate::FsError> {
        Ok(Attr::from_stat(&rustix::fs::fstat(fd)?))
    }

    pub(crate) fn from_stat(st: &rustix::fs::Stat) -> Attr {
        let fmt = st.st_mode & 0o170000;
        let kind = match fmt {
            0o040000 => FileKind::Directory,
            0o120000 => FileKind::Symlink,
            0o060000 => FileKind::BlockDevice,
            0o020000 => FileKind::CharDevice,
            0o010000 => FileKind::Fifo,
            0o140000 => FileKind::Socket,
            _ => FileKind::Regular,
        };
        let ts = |s: i64, ns: u64| Timestamp {
            seconds: s,
            nanos: ns.min(999_999_999) as u32,
        };
        let rdev = st.st_rdev;
        Attr {
            kind,
            mode: st.st_mode & 0o7777,
            nlink: u32::try_from(st.st_nlink).unwrap_or(u32::MAX),
            uid: st.st_uid,
            gid: st.st_gid,
            size: u64::try_from(st.st_size).unwrap_or(0),
            used: u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512),
            rdev: (rustix::fs::major(rdev), rustix::fs::minor(rdev)),
            dev: st.st_dev,
            ino: st.st_ino,
            atime: ts(st.st_atime as i64, st.st_atime_nsec),
            mtime: ts(st.st_mtime as i64, st.st_mtime_nsec),
            ctime: ts(st.st_ctime as i64, st.st_ctime_nsec),
        }
    }
}

/// Space and file counts of the backing file system (for FSSTAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub avail_bytes: u64,
    pub total_files: u64,
    pub free_files: u64,
    pub avail_files: u64,
}
