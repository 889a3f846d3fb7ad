//! The file-system backend of mountshare: read a directory tree (FUSE-backed or not) by paths
//! relative to its root, with no way for a path to reach outside it.
//!
//! Everything here is blocking: callers run it on a blocking thread pool, never on an async
//! executor. The NFS layer above knows files only by [`RelPath`]; it never sees host paths.
//! [`LocalFs`] serves one directory; [`follow::Swappable`] serves whichever FUSE mount a
//! [`follow::Follower`] last found at a directory, in this mount namespace or another process's.

mod attr;
mod error;
/// Test support: a backend wrapper that injects failures, delays and stalls.
#[cfg(any(test, feature = "fault"))]
pub mod fault;
pub mod follow;
mod local;
mod open_files;
mod path;

pub use attr::{Attr, FileKind, FsStats, Timestamp};
pub use error::FsError;
pub use local::{LocalFs, LocalFsOptions};
pub use open_files::OpenFileCacheStats;
pub use path::{validate_name, RelPath, MAX_NAME_LEN};

/// A directory entry as listed by [`Backend::read_dir`]: its name only (never `.` or `..`).
pub type DirEntryName = Vec<u8>;

/// What a READ returned: bytes read, and the attributes of the file read from.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub bytes: usize,
    pub eof: bool,
    pub attr: Attr,
}

/// The operations the NFS layer needs from a tree. All are read-only and blocking.
pub trait Backend: Send + Sync + 'static {
    /// Attributes of the object at `path`, not following a final symlink.
    fn stat(&self, path: &RelPath) -> Result<Attr, FsError>;
    /// Names in the directory at `path`, without `.` and `..`, in no particular order.
    fn read_dir(&self, path: &RelPath) -> Result<Vec<DirEntryName>, FsError>;
    /// The target of the symlink at `path`, as stored; never followed.
    fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, FsError>;
    /// Fill `buf` from `offset` of the regular file at `path` (fewer bytes only at end of file).
    fn read(&self, path: &RelPath, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError>;
    /// Space and file counts of the file system holding the root.
    fn statfs(&self) -> Result<FsStats, FsError>;
    /// The open regular file at `path`, for reads that move pages without copying them
    /// (`splice`). `None` when this backend has no descriptors to offer; READ then uses
    /// [`Backend::read`].
    fn open_file(&self, _path: &RelPath) -> Option<Result<std::sync::Arc<std::fs::File>, FsError>> {
        None
    }
    /// Whether concurrent reads of one file should reach this backend in offset order, one at a
    /// time. True for FUSE file systems over a network stream (rclone without a VFS cache,
    /// debrid backends): a read out of order makes them reopen the stream at the new offset,
    /// which costs a whole first byte (measured: 45 MB/s in order, 0.6 MB/s with 8 READs of one
    /// file in flight, docs/BENCHMARKS.md).
    fn reads_in_order(&self) -> bool {
        false
    }
}
