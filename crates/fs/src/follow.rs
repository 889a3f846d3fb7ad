//! Following a FUSE file system that another process mounts, and mounts again, at a directory:
//! each mount found there ([`mountshare_mounts::process`] looks, in our mount namespace or in
//! another process's) is opened as a [`LocalFs`] ([`OpenFound`]), and [`Swappable`] is a
//! [`Backend`] that serves whichever one is current.
//!
//! Opening the export root of a mount in another process's namespace (through `/proc/PID/root`)
//! needs ptrace read access to the process (CAP_SYS_PTRACE when it holds capabilities we lack).
//! The open descriptor keeps working without it.
//!
//! The served descriptor pins the mount it was opened on. When the daemon dies, that mount's FUSE
//! connection is gone for good (every call fails with ENOTCONN), so the caller runs
//! [`Follower::check`] every few seconds: it compares the mount at DIR (its mount id, and the
//! process and its start time) with the one being served and re-opens the root when it changed.
//! NFS file handles stay valid across the swap: they name paths, not descriptors.
//!
//! Everything here is blocking (it reads `/proc`), and nothing here waits: the caller decides
//! when to look again.

use crate::{
    Attr, Backend, Capabilities, DirEntryName, DirSink, FsError, FsStats, LocalFs, LocalFsOptions,
    ReadOutcome, RelPath,
};
use mountshare_mounts::process::{locate, locate_any, Found, LocateError, Source};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// A mount was found but its root cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open {}{}", .path.display(), if *.other_process { PTRACE_HINT } else { "" })]
pub struct OpenError {
    pub path: PathBuf,
    /// Through another process's `/proc/PID/root`.
    pub other_process: bool,
    #[source]
    pub error: FsError,
}

const PTRACE_HINT: &str = " (reading another process's /proc/PID/root needs CAP_SYS_PTRACE when it holds capabilities this one lacks)";

/// Opening a [`Found`] mount's root to serve it.
pub trait OpenFound {
    /// Open the mount's root to serve it.
    fn open(&self) -> Result<LocalFs, OpenError> {
        self.open_with(LocalFsOptions::default())
    }

    /// Open the mount's root to serve it, tuned by `options`.
    fn open_with(&self, options: LocalFsOptions) -> Result<LocalFs, OpenError>;
}

impl OpenFound for Found {
    fn open_with(&self, options: LocalFsOptions) -> Result<LocalFs, OpenError> {
        LocalFs::with_options(&self.open_path, options).map_err(|error| OpenError {
            path: self.open_path.clone(),
            other_process: self.process.is_some(),
            error,
        })
    }
}

/// The backend the server holds when what it serves may change under it: any backend, replaced
/// by [`Swappable::set`] (the [`Follower`] sets the FUSE tree it found, again when the mount
/// changes), or none while it is away (calls then fail with ENOTCONN, as with a dead FUSE
/// daemon, which the server answers NFS3ERR_JUKEBOX: clients wait and retry; handles stay
/// valid).
///
/// Every call goes to the backend current at that moment, and so do its
/// [`Backend::capabilities`]: nothing of the one before is kept.
#[derive(Default)]
pub struct Swappable {
    current: RwLock<Option<Arc<dyn Backend>>>,
}

impl Swappable {
    /// Serve `backend` from now on; `None`: fail every call until the next `set`.
    pub fn set(&self, backend: Option<Arc<dyn Backend>>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = backend;
    }

    fn get(&self) -> Result<Arc<dyn Backend>, FsError> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| FsError::from(rustix::io::Errno::NOTCONN))
    }
}

impl Backend for Swappable {
    fn stat(&self, path: &RelPath) -> Result<Attr, FsError> {
        self.get()?.stat(path)
    }
    fn read_dir(&self, path: &RelPath) -> Result<Vec<DirEntryName>, FsError> {
        self.get()?.read_dir(path)
    }
    fn read_dir_plus(&self, path: &RelPath, out: &mut dyn DirSink) -> Result<(), FsError> {
        self.get()?.read_dir_plus(path, out)
    }
    fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, FsError> {
        self.get()?.read_link(path)
    }
    fn read(&self, path: &RelPath, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError> {
        self.get()?.read(path, offset, buf)
    }
    fn statfs(&self) -> Result<FsStats, FsError> {
        self.get()?.statfs()
    }
    fn open_file(&self, path: &RelPath) -> Option<Result<Arc<std::fs::File>, FsError>> {
        match self.get() {
            Ok(fs) => fs.open_file(path),
            Err(e) => Some(Err(e)),
        }
    }
    /// Nothing served: nothing asked (the calls fail anyway).
    fn capabilities(&self) -> Capabilities {
        self.get().map(|fs| fs.capabilities()).unwrap_or_default()
    }
}

/// Which file systems at DIR are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// Only a FUSE mount at DIR (`--run`, `--from-process`): nothing is served until one is there.
    Fuse,
    /// Whatever is mounted on top at DIR (plain `serve DIR`). While nothing is, and nothing ever
    /// was since the start, DIR's own directory is served, unless `require_mount`.
    Any { require_mount: bool },
}

/// What a [`Follower::check`] did.
#[derive(Debug)]
pub enum Change {
    /// The mount at DIR is the one served (or there is still none).
    Unchanged,
    /// A mount other than the one served (or the first) was found and is served from now on.
    Opened(Found),
    /// Nothing is mounted at DIR, nothing was, and no mount is required: DIR's own directory is
    /// served (and left as soon as something is mounted there).
    Directory,
    /// A mount other than the one served was found but cannot be opened; what was served before
    /// stays, and the next check tries again.
    OpenFailed(OpenError),
    /// The mount served is no longer at DIR; calls fail (ENOTCONN) until one is back. What was
    /// beneath it (an empty directory, a volume's bind) is never served in its place.
    Gone(Found),
}

/// The mount at a directory, followed: where to look for it, the one served now, and the
/// [`Swappable`] backend that serves it.
pub struct Follower {
    source: Source,
    dir: PathBuf,
    accept: Accept,
    current: Option<Found>,
    /// Serving DIR's own directory (nothing was ever mounted there).
    plain: bool,
    /// Mounts that were beneath the served one when it was opened: when one of them is on top
    /// again, the served mount went away and what it covered must not be served.
    covered: Vec<u64>,
    /// A mount was served since the start: DIR's own directory is what it covered.
    mounted_once: bool,
    backend: Arc<Swappable>,
    /// How each mount found is opened.
    options: LocalFsOptions,
}

impl Follower {
    /// Follow the FUSE mount at `dir` (absolute, as mountinfo shows it) as `source` sees it.
    /// Nothing is served until a [`Follower::check`] finds it.
    pub fn new(source: Source, dir: PathBuf) -> Follower {
        Follower::with(source, dir, Accept::Fuse)
    }

    /// Follow whatever `accept` admits at `dir`, as `source` sees it.
    pub fn with(source: Source, dir: PathBuf, accept: Accept) -> Follower {
        Follower {
            source,
            dir,
            accept,
            current: None,
            plain: false,
            covered: Vec::new(),
            mounted_once: false,
            backend: Arc::default(),
            options: LocalFsOptions::default(),
        }
    }

    /// Open every mount found with `options` (the open-file cache's bounds).
    pub fn options(mut self, options: LocalFsOptions) -> Follower {
        self.options = options;
        self
    }

    /// The backend to hand to the server; it serves whatever the checks found.
    pub fn backend(&self) -> Arc<Swappable> {
        self.backend.clone()
    }

    /// Look at DIR once and serve what is mounted there now when it is not what is served. An
    /// error means the mount can never be found again (see [`locate`]).
    pub fn check(&mut self) -> Result<Change, LocateError> {
        let (now, stack) = match self.accept {
            Accept::Fuse => (locate(&self.source, &self.dir)?, Vec::new()),
            Accept::Any { require_mount } => match locate_any(&self.dir) {
                Ok(found) => found,
                // No /proc (a bare chroot): nothing can be followed, but a directory that
                // needs no mount can still be served as it is.
                Err(LocateError::OwnMountinfo(e))
                    if !require_mount && self.current.is_none() && !self.mounted_once =>
                {
                    if !self.plain {
                        tracing::warn!(error = %e, "cannot read /proc/self/mountinfo: serving DIR as it is, without following what is mounted there");
                    }
                    (None, Vec::new())
                }
                Err(e) => return Err(e),
            },
        };
        if now == self.current {
            return self.maybe_plain();
        }
        Ok(match now {
            Some(found) if self.covered.contains(&found.mount_id) => self.gone(),
            Some(found) => match found.open_with(self.options.clone()) {
                Ok(fs) => {
                    self.backend.set(Some(Arc::new(fs)));
                    self.covered = stack
                        .into_iter()
                        .filter(|&id| id != found.mount_id)
                        .collect();
                    self.current = Some(found.clone());
                    self.plain = false;
                    self.mounted_once = true;
                    Change::Opened(found)
                }
                Err(e) => Change::OpenFailed(e),
            },
            None => self.gone(),
        })
    }

    fn gone(&mut self) -> Change {
        match self.current.take() {
            Some(old) => {
                self.backend.set(None);
                Change::Gone(old)
            }
            None => Change::Unchanged,
        }
    }

    /// With nothing served and nothing mounted, serve DIR itself when that is allowed: only
    /// before any mount was served (afterwards the directory is what a mount covered).
    fn maybe_plain(&mut self) -> Result<Change, LocateError> {
        let allowed = matches!(
            self.accept,
            Accept::Any {
                require_mount: false
            }
        );
        if !allowed || self.plain || self.current.is_some() || self.mounted_once {
            return Ok(Change::Unchanged);
        }
        let found = Found {
            process: None,
            mount_id: 0,
            fstype: "directory".into(),
            open_path: self.dir.clone(),
        };
        Ok(match found.open_with(self.options.clone()) {
            Ok(fs) => {
                self.backend.set(Some(Arc::new(fs)));
                self.plain = true;
                Change::Directory
            }
            Err(e) => Change::OpenFailed(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_followed_backend_offers_open_files_for_zero_copy() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"data").unwrap();
        let swappable = Swappable::default();
        let path = RelPath::parse(b"f").unwrap();
        assert!(
            matches!(swappable.open_file(&path), Some(Err(_))),
            "nothing served: the call fails, as every other"
        );
        swappable.set(Some(Arc::new(LocalFs::open(t.path()).unwrap())));
        // `None` would make every READ copy: zero-copy lost under --run and --from-process.
        let file = swappable.open_file(&path).expect("an open file is offered");
        assert_eq!(file.unwrap().metadata().unwrap().len(), 4);
    }

    /// A backend that only answers `capabilities`.
    struct Asks(Capabilities);

    impl Backend for Asks {
        fn stat(&self, _: &RelPath) -> Result<Attr, FsError> {
            Err(rustix::io::Errno::IO.into())
        }
        fn read_dir(&self, _: &RelPath) -> Result<Vec<DirEntryName>, FsError> {
            Err(rustix::io::Errno::IO.into())
        }
        fn read_dir_plus(&self, _: &RelPath, _: &mut dyn DirSink) -> Result<(), FsError> {
            Err(rustix::io::Errno::IO.into())
        }
        fn read_link(&self, _: &RelPath) -> Result<Vec<u8>, FsError> {
            Err(rustix::io::Errno::IO.into())
        }
        fn read(&self, _: &RelPath, _: u64, _: &mut [u8]) -> Result<ReadOutcome, FsError> {
            Err(rustix::io::Errno::IO.into())
        }
        fn statfs(&self) -> Result<FsStats, FsError> {
            Err(rustix::io::Errno::IO.into())
        }
        fn open_file(&self, _: &RelPath) -> Option<Result<Arc<std::fs::File>, FsError>> {
            None
        }
        fn capabilities(&self) -> Capabilities {
            self.0
        }
    }

    #[test]
    fn the_followed_backend_asks_what_the_one_it_serves_asks() {
        let swappable = Swappable::default();
        assert_eq!(swappable.capabilities(), Capabilities::default());
        let in_order = Capabilities {
            reads_in_order: true,
        };
        swappable.set(Some(Arc::new(Asks(in_order))));
        assert_eq!(swappable.capabilities(), in_order);
        swappable.set(Some(Arc::new(Asks(Capabilities::default()))));
        assert_eq!(swappable.capabilities(), Capabilities::default());
    }

    #[test]
    fn the_followed_backend_lists_with_attributes() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"data").unwrap();
        let swappable = Swappable::default();
        let mut entries: Vec<crate::DirEntryPlus> = Vec::new();
        assert!(swappable
            .read_dir_plus(&RelPath::root(), &mut entries)
            .is_err());
        swappable.set(Some(Arc::new(LocalFs::open(t.path()).unwrap())));
        swappable
            .read_dir_plus(&RelPath::root(), &mut entries)
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].attr.as_ref().map(|a| a.size), Some(4));
    }
}
