//! [`LocalFs`]: the backend over a host directory, FUSE-backed or not.
//!
//! Every path is opened with `openat2(2)` relative to a descriptor of the root, with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: the kernel refuses any
//! resolution that would leave the root or follow a symlink, whatever the tree does between our
//! checks. Symlinks themselves are only ever read with `readlinkat`, never followed.
//!
//! The one exception to a path from the root: a listing with attributes stats each entry with
//! `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` relative to the directory it has just opened that
//! way. A name read from the directory is a single component (never `.` or `..`, which are
//! skipped, and never holding a `/`), and a final symlink is not followed, so it names an
//! entry of that directory and nothing else.
use crate::open_files::{Cached, OpenFileCache};
use crate::{
    Attr, Backend, Capabilities, DirEntryName, DirSink, FileKind, FsError, FsStats, ReadOutcome,
    RelPath,
};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Tuning of a [`LocalFs`].
#[derive(Debug, Clone)]
pub struct LocalFsOptions {
    /// How many files READ keeps open.
    pub open_files: usize,
    /// Bytes the open-file cache may hold (its paths, plus a fixed cost per entry).
    pub open_file_bytes: usize,
    /// How long an open file is trusted before its path is checked again.
    pub revalidate_after: Duration,
}

impl Default for LocalFsOptions {
    fn default() -> Self {
        LocalFsOptions {
            open_files: 256,
            open_file_bytes: 1 << 20,
            revalidate_after: Duration::from_secs(2),
        }
    }
}

/// A directory tree on this host, read beneath its root.
pub struct LocalFs {
    root: OwnedFd,
    open_files: OpenFileCache,
    /// The root is a FUSE mount: reads of one file go to it in offset order.
    in_order: bool,
}

impl LocalFs {
    /// Open `root`, which must be a directory.
    pub fn open(root: &Path) -> Result<LocalFs, FsError> {
        Self::with_options(root, LocalFsOptions::default())
    }

    pub fn with_options(root: &Path, options: LocalFsOptions) -> Result<LocalFs, FsError> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(LocalFs {
            in_order: mountshare_mounts::fuse::is_fuse(&fd),
            root: fd,
            open_files: OpenFileCache::new(
                options.open_files,
                options.open_file_bytes,
                options.revalidate_after,
            ),
        })
    }

    /// Counters of the open-file cache.
    pub fn open_file_stats(&self) -> crate::OpenFileCacheStats {
        self.open_files.stats()
    }

    fn open_beneath(&self, path: &RelPath, flags: OFlags) -> Result<OwnedFd, FsError> {
        let fd = rustix::fs::openat2(
            self.root.as_fd(),
            path.for_syscall(),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )?;
        Ok(fd)
    }

    /// An O_PATH descriptor of the object itself (a final symlink is not followed).
    fn open_path(&self, path: &RelPath) -> Result<OwnedFd, FsError> {
        self.open_beneath(path, OFlags::PATH | OFlags::NOFOLLOW)
    }

    /// Open the regular file at `path` for READ. Never waits: anything but a regular file is
    /// refused, a directory with EISDIR and everything else (FIFO, socket, device, symlink)
    /// with EINVAL, as the Linux server answers a READ of them (NFS3ERR_ISDIR, NFS3ERR_INVAL).
    ///
    /// A plain `open(O_RDONLY)` of a FIFO waits for a writer that may never come, so:
    /// 1. the type is checked first on an `O_PATH` descriptor, which opens nothing: a device's
    ///    driver never sees an open from a client's READ (opening some devices does something,
    ///    such as arming a watchdog or rewinding a tape), and a socket or FIFO is never opened;
    /// 2. the file is then opened with `O_NONBLOCK | O_NOCTTY` and its type checked again on the
    ///    opened descriptor: if the path was swapped for a FIFO in between, the open still
    ///    returns at once (a read-only non-blocking open of a FIFO does not wait for a writer);
    /// 3. `O_NONBLOCK` is cleared with `F_SETFL` before the descriptor is used. Linux ignores
    ///    it for `pread` and `splice` of a regular file, but FUSE copies the descriptor's flags
    ///    into every READ request it sends the daemon, and a daemon may take it as "don't wait"
    ///    (EAGAIN while it fetches data) and fail reads a plain open would have served. Only
    ///    the daemon's OPEN request carries `O_NONBLOCK`, where for a regular file it asks for
    ///    nothing (a daemon that opens a backing file with the same flags gets a non-blocking
    ///    open of a regular file, which behaves as a blocking one).
    ///
    /// Cost: one extra `O_PATH` lookup and `fstat` per open-file-cache miss (a hit opens
    /// nothing).
    fn open_for_read(&self, path: &RelPath) -> Result<(Arc<File>, Attr), FsError> {
        let probe = self.open_path(path)?;
        refuse_unless_regular(&Attr::from_stat(&rustix::fs::fstat(&probe)?))?;
        drop(probe);
        let fd = self.open_beneath(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK,
        )?;
        let attr = Attr::from_stat(&rustix::fs::fstat(&fd)?);
        refuse_unless_regular(&attr)?;
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        rustix::fs::fcntl_setfl(&fd, flags.difference(OFlags::NONBLOCK))?;
        Ok((Arc::new(File::from(fd)), attr))
    }

    /// Call `each` with the directory's descriptor and every name in it but `.` and `..`.
    fn each_entry(
        &self,
        path: &RelPath,
        mut each: impl FnMut(BorrowedFd<'_>, &CStr),
    ) -> Result<(), FsError> {
        let fd = self.open_beneath(path, OFlags::RDONLY | OFlags::DIRECTORY)?;
        // A second descriptor of the same open directory: the listing reads through one while
        // `each` may stat beside the other.
        let mut dir = rustix::fs::Dir::new(rustix::io::dup(&fd)?)?;
        while let Some(entry) = dir.read() {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            each(fd.as_fd(), name);
        }
        Ok(())
    }

    fn cached_file(&self, path: &RelPath) -> Result<Arc<File>, FsError> {
        match self.open_files.get(path) {
            Cached::Fresh(f) => return Ok(f),
            Cached::Check(f, dev, ino) => {
                if let Ok(now) = self.stat(path) {
                    if now.dev == dev && now.ino == ino {
                        self.open_files.validated(path);
                        return Ok(f);
                    }
                }
                self.open_files.remove(path);
            }
            Cached::Miss => {}
        }
        let (file, attr) = self.open_for_read(path)?;
        self.open_files.insert(path.clone(), file.clone(), &attr);
        Ok(file)
    }
}

/// Only regular files are read: EISDIR for a directory, EINVAL for any other type.
fn refuse_unless_regular(attr: &Attr) -> Result<(), FsError> {
    match attr.kind {
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(rustix::io::Errno::ISDIR.into()),
        FileKind::Symlink
        | FileKind::Fifo
        | FileKind::Socket
        | FileKind::CharDevice
        | FileKind::BlockDevice => Err(rustix::io::Errno::INVAL.into()),
    }
}

impl Backend for LocalFs {
    fn stat(&self, path: &RelPath) -> Result<Attr, FsError> {
        if path.is_root() {
            return Ok(Attr::from_stat(&rustix::fs::fstat(&self.root)?));
        }
        let fd = self.open_path(path)?;
        Ok(Attr::from_stat(&rustix::fs::fstat(&fd)?))
    }

    fn read_dir(&self, path: &RelPath) -> Result<Vec<DirEntryName>, FsError> {
        let mut names = Vec::new();
        self.each_entry(path, |_, name| names.push(name.to_bytes().to_vec()))?;
        Ok(names)
    }

    /// One pass over the directory: each name is stat'ed beside the directory's descriptor as
    /// it is read (see the module's note on why that cannot leave the directory).
    fn read_dir_plus(&self, path: &RelPath, out: &mut dyn DirSink) -> Result<(), FsError> {
        self.each_entry(path, |dir, name| {
            let attr = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .map(|st| Attr::from_stat(&st));
            out.entry(name.to_bytes(), attr);
        })
    }

    fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, FsError> {
        let fd = self.open_path(path)?;
        let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
        Ok(target.into_bytes())
    }

    fn read(&self, path: &RelPath, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError> {
        let file = self.cached_file(path)?;
        let mut done = 0;
        while done < buf.len() {
            let at = offset.saturating_add(done as u64);
            match file.read_at(&mut buf[done..], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let attr = Attr::from_stat(&rustix::fs::fstat(file.as_fd())?);
        let eof = offset.saturating_add(done as u64) >= attr.size;
        Ok(ReadOutcome {
            bytes: done,
            eof,
            attr,
        })
    }

    fn open_file(&self, path: &RelPath) -> Option<Result<Arc<File>, FsError>> {
        Some(self.cached_file(path))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            reads_in_order: self.in_order,
        }
    }

    fn statfs(&self) -> Result<FsStats, FsError> {
        let s = rustix::fs::fstatvfs(&self.root)?;
        let frsize = if s.f_frsize > 0 {
            s.f_frsize
        } else {
            s.f_bsize
        };
        Ok(FsStats {
            total_bytes: s.f_blocks.saturating_mul(frsize),
            free_bytes: s.f_bfree.saturating_mul(frsize),
            avail_bytes: s.f_bavail.saturating_mul(frsize),
            total_files: s.f_files,
            free_files: s.f_ffree,
            avail_files: s.f_favail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, LocalFs) {
        let outside = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        std::fs::write(t.path().join("dir/file"), b"hello world").unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        symlink("file", t.path().join("dir/rel-link")).unwrap();
        symlink(outside.path(), t.path().join("escape-dir")).unwrap();
        symlink(outside.path().join("secret"), t.path().join("escape-file")).unwrap();
        std::mem::forget(outside);
        let fs = LocalFs::open(t.path()).unwrap();
        (t, fs)
    }

    fn p(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn reads_stats_and_lists() {
        let (_t, fs) = tree();
        let attr = fs.stat(&p("dir/file")).unwrap();
        assert_eq!(attr.kind, FileKind::Regular);
        assert_eq!(attr.size, 11);
        let mut buf = [0u8; 5];
        let r = fs.read(&p("dir/file"), 6, &mut buf).unwrap();
        assert_eq!((&buf[..r.bytes], r.eof), (&b"world"[..], true));
        let r = fs.read(&p("dir/file"), 0, &mut buf).unwrap();
        assert_eq!((&buf[..r.bytes], r.eof), (&b"hello"[..], false));
        let mut names = fs.read_dir(&p("dir")).unwrap();
        names.sort();
        assert_eq!(names, vec![b"file".to_vec(), b"rel-link".to_vec()]);
        assert_eq!(
            fs.open_file_stats().opens,
            1,
            "second READ reuses the open file"
        );
    }

    #[test]
    fn symlinks_are_read_never_followed() {
        let (_t, fs) = tree();
        assert_eq!(fs.stat(&p("dir/rel-link")).unwrap().kind, FileKind::Symlink);
        assert_eq!(fs.read_link(&p("dir/rel-link")).unwrap(), b"file");
        // The link's own attributes, not the target's.
        assert_eq!(fs.stat(&p("escape-file")).unwrap().kind, FileKind::Symlink);
        let mut buf = [0u8; 16];
        assert!(fs.read(&p("escape-file"), 0, &mut buf).is_err());
        assert!(fs.read(&p("dir/rel-link"), 0, &mut buf).is_err());
        assert!(fs.read_dir(&p("escape-dir")).is_err());
        assert!(fs.stat(&p("escape-dir/secret")).is_err());
    }

    #[test]
    fn a_listing_with_attributes_gives_what_stat_gives_and_follows_no_symlink() {
        let (t, fs) = tree();
        let plus = |dir: &RelPath| {
            let mut v: Vec<crate::DirEntryPlus> = Vec::new();
            fs.read_dir_plus(dir, &mut v).map(|()| v)
        };
        for dir in [RelPath::root(), p("dir")] {
            let mut fast = plus(&dir).unwrap();
            fast.sort_by(|a, b| a.name.cmp(&b.name));
            let mut slow = Vec::new();
            crate::list_then_stat(&fs, &dir, &mut slow).unwrap();
            slow.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(fast, slow, "{dir:?}");
            assert!(fast.iter().all(|e| e.attr.is_some()));
        }
        let root = plus(&RelPath::root()).unwrap();
        let kind = |name: &[u8]| {
            let e = root.iter().find(|e| e.name == name).unwrap();
            e.attr.as_ref().unwrap().kind
        };
        // The links' own attributes, not those of what they point at outside the root.
        assert_eq!(kind(b"escape-dir"), FileKind::Symlink);
        assert_eq!(kind(b"escape-file"), FileKind::Symlink);
        assert_eq!(kind(b"dir"), FileKind::Directory);
        assert!(plus(&p("escape-dir")).is_err());
        assert!(plus(&p("dir/rel-link")).is_err());
        std::fs::remove_dir_all(t.path().join("dir")).unwrap();
        assert!(plus(&p("dir")).is_err());
    }

    #[test]
    fn read_of_directory_is_eisdir() {
        let (_t, fs) = tree();
        let mut buf = [0u8; 4];
        let err = fs.read(&p("dir"), 0, &mut buf).unwrap_err();
        assert_eq!(err.errno(), Some(rustix::io::Errno::ISDIR.raw_os_error()));
    }

    /// Run `f` on its own thread; fail (rather than hang the suite) if it has not returned
    /// within 10 s, which only a read that waits for a FIFO writer would take.
    fn returns_promptly<T: Send + 'static>(
        what: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{what} did not return within 10 s: it blocked"))
    }

    fn read_err(fs: &Arc<LocalFs>, path: &str) -> Option<i32> {
        let (fs, path) = (fs.clone(), p(path));
        returns_promptly(&format!("READ of {path:?}"), move || {
            let mut buf = [0u8; 16];
            let read = fs.read(&path, 0, &mut buf).map(|r| r.bytes);
            let open = fs.open_file(&path).expect("LocalFs offers descriptors");
            assert_eq!(read.is_err(), open.is_err(), "read and open_file agree");
            read.unwrap_err().errno()
        })
    }

    const EINVAL: Option<i32> = Some(rustix::io::Errno::INVAL.raw_os_error());

    #[test]
    fn read_of_a_fifo_is_einval_at_once() {
        let t = tempfile::tempdir().unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            t.path().join("fifo"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let fs = Arc::new(LocalFs::open(t.path()).unwrap());
        assert_eq!(fs.stat(&p("fifo")).unwrap().kind, FileKind::Fifo);
        // Twice: the refusal is not cached as an open file.
        assert_eq!(read_err(&fs, "fifo"), EINVAL);
        assert_eq!(read_err(&fs, "fifo"), EINVAL);
        assert_eq!(fs.open_file_stats().open_now, 0);
    }

    #[test]
    fn read_of_a_socket_or_symlink_is_einval() {
        let t = tempfile::tempdir().unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
        symlink("sock", t.path().join("link")).unwrap();
        let fs = Arc::new(LocalFs::open(t.path()).unwrap());
        assert_eq!(fs.stat(&p("sock")).unwrap().kind, FileKind::Socket);
        assert_eq!(read_err(&fs, "sock"), EINVAL);
        assert_eq!(read_err(&fs, "link"), EINVAL);
    }

    #[test]
    fn read_of_a_device_node_is_einval_without_opening_it() {
        let t = tempfile::tempdir().unwrap();
        // The null device, a loop device, and a device of a major reserved for local use that
        // no driver claims: opening that one fails (ENXIO, or EACCES on a nodev mount), so
        // EINVAL shows that the type was checked without opening. mknod needs CAP_MKNOD.
        let nodes = [
            ("chr", rustix::fs::FileType::CharacterDevice, (1, 3)),
            ("blk", rustix::fs::FileType::BlockDevice, (7, 0)),
            ("unclaimed", rustix::fs::FileType::CharacterDevice, (240, 7)),
        ];
        for (name, kind, (major, minor)) in nodes {
            let made = rustix::fs::mknodat(
                rustix::fs::CWD,
                t.path().join(name),
                kind,
                Mode::from_raw_mode(0o644),
                rustix::fs::makedev(major, minor),
            );
            if let Err(e) = made {
                eprintln!("skipping the device-node case: mknod {name}: {e} (needs root)");
                return;
            }
        }
        let fs = Arc::new(LocalFs::open(t.path()).unwrap());
        assert_eq!(fs.stat(&p("chr")).unwrap().kind, FileKind::CharDevice);
        assert_eq!(fs.stat(&p("blk")).unwrap().kind, FileKind::BlockDevice);
        assert_eq!(read_err(&fs, "chr"), EINVAL);
        assert_eq!(read_err(&fs, "blk"), EINVAL);
        assert_eq!(read_err(&fs, "unclaimed"), EINVAL);
    }

    #[test]
    fn file_opened_for_read_is_not_left_non_blocking() {
        let (_t, fs) = tree();
        let file = fs.open_file(&p("dir/file")).unwrap().unwrap();
        let flags = rustix::fs::fcntl_getfl(file.as_fd()).unwrap();
        assert!(!flags.contains(OFlags::NONBLOCK), "flags {flags:?}");
        let mut buf = [0u8; 11];
        assert_eq!(fs.read(&p("dir/file"), 0, &mut buf).unwrap().bytes, 11);
        assert_eq!(&buf, b"hello world");
    }

    #[test]
    fn replaced_file_is_reopened_after_revalidation() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"old").unwrap();
        let fs = LocalFs::with_options(
            t.path(),
            LocalFsOptions {
                open_files: 4,
                revalidate_after: Duration::ZERO,
                ..LocalFsOptions::default()
            },
        )
        .unwrap();
        let mut buf = [0u8; 8];
        let r = fs.read(&p("f"), 0, &mut buf).unwrap();
        assert_eq!(&buf[..r.bytes], b"old");
        std::fs::write(t.path().join("g"), b"new!").unwrap();
        std::fs::rename(t.path().join("g"), t.path().join("f")).unwrap();
        let r = fs.read(&p("f"), 0, &mut buf).unwrap();
        assert_eq!(&buf[..r.bytes], b"new!");
    }

    #[test]
    fn cache_is_bounded() {
        let t = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(t.path().join(i.to_string()), b"x").unwrap();
        }
        let fs = LocalFs::with_options(
            t.path(),
            LocalFsOptions {
                open_files: 3,
                revalidate_after: Duration::from_secs(60),
                ..LocalFsOptions::default()
            },
        )
        .unwrap();
        let mut buf = [0u8; 1];
        for i in 0..10 {
            fs.read(&p(&i.to_string()), 0, &mut buf).unwrap();
        }
        let s = fs.open_file_stats();
        assert_eq!(s.open_now, 3);
        assert_eq!(s.evictions, 7);
    }
}
