//! The file-system backend of mountshare: read a directory tree (FUSE-backed or not) by paths
//! relative to its root, with no way for a path to reach outside it.
//!
//! Everything here is blocking: callers run it on a blocking thread pool, never on an async
//! executor. The NFS layer above knows files only by [`RelPath`]; it never sees host paths.
//! The [`Backend`] trait is the seam between the NFS layer and a tree: [`LocalFs`] serves one
//! directory; [`follow::Swappable`] serves whichever backend it was last given, such as the
//! FUSE mount a [`follow::Follower`] last opened at a directory, in this mount namespace or
//! another process's (where it is, `mountshare_mounts::process` finds).

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

/// Where [`Backend::read_dir_plus`] puts a directory's entries, one at a time as it lists them,
/// so that a listing goes straight into its consumer's buffers (the server's directory
/// snapshot) with no allocation per entry.
pub trait DirSink {
    /// One entry: its name (never `.` or `..`) and its attributes, as [`Backend::stat`] of the
    /// entry's path would give them; `None` when they could not be had (the entry vanished, or
    /// its stat failed), and the entry is listed all the same.
    fn entry(&mut self, name: &[u8], attr: Option<Attr>);
}

/// A directory entry with its attributes, as a `Vec<DirEntryPlus>` collects a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntryPlus {
    pub name: DirEntryName,
    pub attr: Option<Attr>,
}

impl DirSink for Vec<DirEntryPlus> {
    fn entry(&mut self, name: &[u8], attr: Option<Attr>) {
        self.push(DirEntryPlus {
            name: name.to_vec(),
            attr,
        });
    }
}

/// What a READ returned: bytes read, and the attributes of the file read from.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub bytes: usize,
    pub eof: bool,
    pub attr: Attr,
}

/// What a backend asks of the server beyond the operations every backend has, as one value:
/// a wrapper passes all of it along by forwarding [`Backend::capabilities`], so a flag added
/// here reaches the server through every wrapper without a change to any of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Concurrent reads of one file should reach this backend in offset order, one at a time.
    /// True for FUSE file systems over a network stream (rclone without a VFS cache, debrid
    /// backends): a read out of order makes them reopen the stream at the new offset, which
    /// costs a whole first byte (measured: 45 MB/s in order, 0.6 MB/s with 8 READs of one file
    /// in flight, docs/BENCHMARKS.md).
    pub reads_in_order: bool,
}

/// The operations the NFS layer needs from a tree. All are read-only and blocking.
///
/// Every method is required, with no default body: a wrapper (one that follows a remounted
/// tree, one that injects faults) that does not forward a method does not compile, so none can
/// silently fall back to a slower or weaker path. What a backend cannot do better has a plain
/// implementation to call: [`list_then_stat`] for [`Backend::read_dir_plus`], `None` for
/// [`Backend::open_file`], `Capabilities::default()`.
pub trait Backend: Send + Sync + 'static {
    /// Attributes of the object at `path`, not following a final symlink.
    fn stat(&self, path: &RelPath) -> Result<Attr, FsError>;
    /// Names in the directory at `path`, without `.` and `..`, in no particular order.
    fn read_dir(&self, path: &RelPath) -> Result<Vec<DirEntryName>, FsError>;
    /// The entries of the directory at `path` with their attributes, in one call, into `out`:
    /// what [`Backend::read_dir`] lists, each with what [`Backend::stat`] of it gives (an entry
    /// whose attributes cannot be had is listed with `None`). A backend that lists with
    /// attributes in one request (a WebDAV PROPFIND) fills it from that request; one that
    /// cannot do better than a stat per entry calls [`list_then_stat`]. Fails only when the
    /// listing does; what `out` got before the failure is then to be dropped.
    fn read_dir_plus(&self, path: &RelPath, out: &mut dyn DirSink) -> Result<(), FsError>;
    /// The target of the symlink at `path`, as stored; never followed.
    fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, FsError>;
    /// Fill `buf` from `offset` of the regular file at `path` (fewer bytes only at end of file).
    fn read(&self, path: &RelPath, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError>;
    /// Space and file counts of the file system holding the root.
    fn statfs(&self) -> Result<FsStats, FsError>;
    /// The open regular file at `path`, for reads that move pages without copying them
    /// (`splice`). `None` when this backend has no descriptors to offer; READ then uses
    /// [`Backend::read`].
    fn open_file(&self, path: &RelPath) -> Option<Result<std::sync::Arc<std::fs::File>, FsError>>;
    /// What this backend asks of the server beyond its operations (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities;
}

/// [`Backend::read_dir_plus`] for a backend that has no cheaper way: list the directory, then
/// stat each entry.
pub fn list_then_stat<B: Backend + ?Sized>(
    backend: &B,
    path: &RelPath,
    out: &mut dyn DirSink,
) -> Result<(), FsError> {
    for name in backend.read_dir(path)? {
        let attr = path.join(&name).ok().and_then(|p| backend.stat(&p).ok());
        out.entry(&name, attr);
    }
    Ok(())
}
