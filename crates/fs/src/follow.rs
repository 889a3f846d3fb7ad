//! Following a FUSE file system that another process mounts, and mounts again, at a directory:
//! where that mount is now, in our mount namespace or in another process's, and a [`Backend`]
//! that serves whichever one is current.
//!
//! A FUSE mount lives in the mount namespace of the process that made it; in Kubernetes a second
//! container of the same pod does not see it. A process that shares our mount namespace (our
//! child) sees it at DIR itself. Any other process's namespace is reachable through
//! `/proc/PID/root` when the process namespace is shared (`shareProcessNamespace: true`);
//! opening the export root there needs ptrace read access to the process (CAP_SYS_PTRACE when it
//! holds capabilities we lack). The open descriptor keeps working without it.
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
use mountshare_mounts::mountinfo::MountTable;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Whose mount namespace DIR is looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Ours (a child we start shares it).
    Own,
    /// Another process's, through `/proc/PID/root`.
    Process(Selector),
}

/// How the process whose namespace holds the mount is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Exactly this process; when it exits, it is gone for good.
    Pid(u32),
    /// Any process whose `comm` or `argv[0]` file name is this, found again after a restart.
    Name(String),
}

impl Selector {
    /// A number names a PID, anything else a process name; `None` for the empty string.
    pub fn parse(text: &str) -> Option<Selector> {
        if text.is_empty() {
            return None;
        }
        Some(match text.parse::<u32>() {
            Ok(pid) => Selector::Pid(pid),
            Err(_) => Selector::Name(text.to_string()),
        })
    }
}

/// Why the mount at DIR cannot be looked for (now or ever).
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("cannot read /proc/self/mountinfo")]
    OwnMountinfo(#[source] std::io::Error),
    /// The one process named by PID has exited: the mount will never be back.
    #[error("process {0} is gone (or not in this PID namespace: set shareProcessNamespace: true)")]
    ProcessGone(u32),
    #[error("cannot list /proc")]
    ListProc(#[source] std::io::Error),
}

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

/// A FUSE mount found at DIR: what identifies it, and the path that opens it from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The process whose namespace holds it, with its start time (so a reused PID differs).
    pub process: Option<(u32, u64)>,
    pub mount_id: u64,
    pub fstype: String,
    pub open_path: PathBuf,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} mount {}", self.fstype, self.mount_id)?;
        if let Some((pid, _)) = self.process {
            write!(f, " of pid {pid}")?;
        }
        Ok(())
    }
}

impl Found {
    /// Open the mount's root to serve it.
    pub fn open(&self) -> Result<LocalFs, OpenError> {
        self.open_with(LocalFsOptions::default())
    }

    /// Open the mount's root to serve it, tuned by `options`.
    pub fn open_with(&self, options: LocalFsOptions) -> Result<LocalFs, OpenError> {
        LocalFs::with_options(&self.open_path, options).map_err(|error| OpenError {
            path: self.open_path.clone(),
            other_process: self.process.is_some(),
            error,
        })
    }
}

/// The top mount at `dir` when it is a FUSE file system ([`MountEntry::is_fuse`]).
///
/// [`MountEntry::is_fuse`]: mountshare_mounts::mountinfo::MountEntry::is_fuse
pub fn fuse_mount_at(table: &MountTable, dir: &Path) -> Option<(u64, String)> {
    table
        .top_at(dir)
        .filter(|e| e.is_fuse())
        .map(|e| (e.mount_id, e.fstype.clone()))
}

fn read_table(path: &Path) -> std::io::Result<MountTable> {
    let text = std::fs::read(path)?;
    MountTable::parse(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Field 22 of /proc/PID/stat: the start time in clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything, even ") ".
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn name_matches(pid: u32, name: &str) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end_matches('\n') == name {
        return true;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let base = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    !base.is_empty() && base == name.as_bytes()
}

/// The FUSE mount at `dir` as process `pid` sees it, if it has one.
fn found_in(pid: u32, dir: &Path) -> Option<Found> {
    let started = start_time(pid)?;
    let table = read_table(Path::new(&format!("/proc/{pid}/mountinfo"))).ok()?;
    let (mount_id, fstype) = fuse_mount_at(&table, dir)?;
    let inside = dir.strip_prefix("/").unwrap_or(dir);
    Some(Found {
        process: Some((pid, started)),
        mount_id,
        fstype,
        open_path: Path::new(&format!("/proc/{pid}/root")).join(inside),
    })
}

/// Where the FUSE mount at `dir` (absolute, as mountinfo shows it) is now. `Ok(None)`: not
/// mounted (yet). An error means it never will be: the one process named by PID has exited.
pub fn locate(source: &Source, dir: &Path) -> Result<Option<Found>, LocateError> {
    match source {
        Source::Own => {
            let table =
                read_table(Path::new("/proc/self/mountinfo")).map_err(LocateError::OwnMountinfo)?;
            Ok(fuse_mount_at(&table, dir).map(|(mount_id, fstype)| Found {
                process: None,
                mount_id,
                fstype,
                open_path: dir.to_path_buf(),
            }))
        }
        Source::Process(Selector::Pid(pid)) => {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(LocateError::ProcessGone(*pid));
            }
            Ok(found_in(*pid, dir))
        }
        Source::Process(Selector::Name(name)) => {
            let me = std::process::id();
            let mut best: Option<Found> = None;
            for entry in std::fs::read_dir("/proc").map_err(LocateError::ListProc)? {
                let Some(pid) = entry
                    .ok()
                    .and_then(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
                else {
                    continue;
                };
                if pid == me || !name_matches(pid, name) {
                    continue;
                }
                if let Some(found) = found_in(pid, dir) {
                    // The longest-running one: children of the daemon share its namespace anyway.
                    if best.as_ref().is_none_or(|b| found.process < b.process) {
                        best = Some(found);
                    }
                }
            }
            Ok(best)
        }
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
            Accept::Any { require_mount } => match self.locate_any() {
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

    /// The top mount at DIR in our namespace, whatever it is, and the ids of the whole stack
    /// there.
    fn locate_any(&self) -> Result<(Option<Found>, Vec<u64>), LocateError> {
        let table =
            read_table(Path::new("/proc/self/mountinfo")).map_err(LocateError::OwnMountinfo)?;
        let stack = table.stack_at(&self.dir);
        let ids = stack.iter().map(|e| e.mount_id).collect();
        let top = stack.last().map(|e| Found {
            process: None,
            mount_id: e.mount_id,
            fstype: e.fstype.clone(),
            open_path: self.dir.clone(),
        });
        Ok((top, ids))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw
40 22 0:50 / /mnt/dfs rw,relatime shared:7 - tmpfs tmpfs rw
41 40 0:55 / /mnt/dfs rw,nosuid,nodev,relatime - fuse.decypharr dfs rw,user_id=0
42 22 0:56 / /mnt/other rw - fuse sshfs rw
43 22 0:57 / /mnt/plain rw - tmpfs tmpfs rw
44 22 0:33 / /sys/fs/fuse/connections rw,nosuid,nodev,noexec,relatime - fusectl fusectl rw
";

    #[test]
    fn only_a_fuse_mount_on_top_counts() {
        let t = MountTable::parse(TABLE.as_bytes()).unwrap();
        assert_eq!(
            fuse_mount_at(&t, Path::new("/mnt/dfs")),
            Some((41, "fuse.decypharr".to_string()))
        );
        assert_eq!(
            fuse_mount_at(&t, Path::new("/mnt/other")),
            Some((42, "fuse".to_string()))
        );
        assert_eq!(fuse_mount_at(&t, Path::new("/mnt/plain")), None);
        // The FUSE control file system is not a FUSE mount to serve.
        assert_eq!(
            fuse_mount_at(&t, Path::new("/sys/fs/fuse/connections")),
            None
        );
        assert_eq!(fuse_mount_at(&t, Path::new("/mnt/none")), None);
    }

    #[test]
    fn a_number_names_a_pid_anything_else_a_name() {
        assert_eq!(Selector::parse("42").unwrap(), Selector::Pid(42));
        assert_eq!(
            Selector::parse("decypharr").unwrap(),
            Selector::Name("decypharr".into())
        );
        assert!(Selector::parse("").is_none());
    }

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

    #[test]
    fn start_time_of_this_process_is_known() {
        assert!(start_time(std::process::id()).is_some());
    }
}
