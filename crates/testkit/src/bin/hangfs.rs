//! hangfs: a read-only FUSE passthrough of a host directory whose reads of chosen files hang until
//! a test releases them, like a FUSE daemon over dead debrid links.
//!
//! ```text
//! hangfs --source DIR --mountpoint MNT --control SOCKET [--hang GLOB]...
//!        [--max-background N | --kernel-default-max-background] [--threads N]
//!        [--dir-times passthrough|frozen|moving]
//! ```
//!
//! It mounts at MNT (`allow_other`, read-only), listens for commands on the Unix socket SOCKET,
//! prints `ready` on stdout, and serves until `quit` (which unmounts) or a signal (which leaves a
//! dead mount behind, as a crashed daemon does). The commands, one per line, each answered by one
//! line, and the directory times of `--dir-times`, are described in `mountshare_testkit::hangfs`.
//!
//! A hung read keeps its FUSE reply object parked in a list, so it blocks nothing else: the
//! session thread goes on with other requests, and any number of reads can hang at once.
use fuser::{
    Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, Request, SessionACL,
};
use mountshare_testkit::hangfs::{
    glob_match, parse_command, Command, DirTimes, KERNEL_DEFAULT_MAX_BACKGROUND,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the kernel may keep attributes and names it got from the daemon.
const TTL: Duration = Duration::from_secs(1);
/// Directory size and link count reported by `--dir-times frozen`.
const FROZEN_DIR_SIZE: u64 = 4096;
const FROZEN_DIR_NLINK: u32 = 2;
/// The longest command line accepted on the control socket.
const MAX_COMMAND: usize = 4096;
/// The largest read the kernel may ask for (FUSE caps requests at 1 MiB today).
const MAX_READ: u32 = 16 << 20;

struct Args {
    source: PathBuf,
    mountpoint: PathBuf,
    control: PathBuf,
    hang: Vec<String>,
    /// `None`: the kernel's default (12), as rclone and go-fuse leave it.
    max_background: Option<u16>,
    threads: usize,
    dir_times: DirTimes,
}

fn parse_args() -> Result<Args, String> {
    let mut source = None;
    let mut mountpoint = None;
    let mut control = None;
    let mut hang = Vec::new();
    let mut max_background = Some(256u16);
    let mut threads = 2usize;
    let mut dir_times = DirTimes::Passthrough;
    let mut it = std::env::args_os().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .map(PathBuf::from)
        };
        match arg.to_str() {
            Some("--source") => source = Some(value("--source")?),
            Some("--mountpoint") => mountpoint = Some(value("--mountpoint")?),
            Some("--control") => control = Some(value("--control")?),
            Some("--hang") => hang.push(value("--hang")?.to_string_lossy().into_owned()),
            Some("--max-background") => {
                let v = value("--max-background")?;
                let n: u16 = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--max-background needs a number from 1 to 65535")?;
                max_background = Some(n);
            }
            Some("--kernel-default-max-background") => max_background = None,
            Some("--threads") => {
                let v = value("--threads")?;
                threads = v
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| (1..=64).contains(n))
                    .ok_or("--threads needs a number from 1 to 64")?;
            }
            Some("--dir-times") => {
                let v = value("--dir-times")?;
                dir_times = v
                    .to_str()
                    .ok_or("--dir-times needs passthrough, frozen or moving")?
                    .parse()?;
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Args {
        source: source.ok_or("--source is required")?,
        mountpoint: mountpoint.ok_or("--mountpoint is required")?,
        control: control.ok_or("--control is required")?,
        hang,
        max_background,
        threads,
        dir_times,
    })
}

/// A read parked until a test releases it.
struct HungRead {
    path: String,
    file: Arc<File>,
    offset: u64,
    size: u32,
    reply: ReplyData,
}

/// What a read of a file does, by the last rule matching its path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Serve,
    Hang,
    Fail,
}

#[derive(Default)]
struct HangState {
    /// `(glob, verdict)` in the order given; the last rule matching a path decides.
    rules: Vec<(String, Verdict)>,
    hung: Vec<HungRead>,
}

impl HangState {
    fn verdict(&self, path: &str) -> Verdict {
        self.rules
            .iter()
            .rev()
            .find(|(glob, _)| glob_match(glob, path))
            .map_or(Verdict::Serve, |(_, v)| *v)
    }
}

struct Shared {
    state: Mutex<HangState>,
    changed: Condvar,
    reads: AtomicU64,
    hung_total: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HangState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Inodes {
    by_path: HashMap<PathBuf, u64>,
    /// Index `ino - 1` holds the path relative to the source ("" for the root).
    paths: Vec<PathBuf>,
}

struct HangFs {
    source: PathBuf,
    max_background: Option<u16>,
    dir_times: DirTimes,
    /// The times of every directory under `--dir-times frozen`: the start, to the second.
    frozen: SystemTime,
    inodes: Mutex<Inodes>,
    files: Mutex<HashMap<u64, (String, Arc<File>)>>,
    next_fh: AtomicU64,
    shared: Arc<Shared>,
}

impl HangFs {
    fn new(
        source: PathBuf,
        max_background: Option<u16>,
        dir_times: DirTimes,
        shared: Arc<Shared>,
    ) -> Self {
        let mut inodes = Inodes::default();
        inodes.paths.push(PathBuf::new());
        inodes.by_path.insert(PathBuf::new(), 1);
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        HangFs {
            source,
            max_background,
            dir_times,
            frozen: UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs()),
            inodes: Mutex::new(inodes),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            shared,
        }
    }

    fn rel_path(&self, ino: INodeNo) -> Option<PathBuf> {
        let inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        let index = usize::try_from(u64::from(ino)).ok()?.checked_sub(1)?;
        inodes.paths.get(index).cloned()
    }

    fn ino_of(&self, rel: &Path) -> u64 {
        let mut inodes = self.inodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&ino) = inodes.by_path.get(rel) {
            return ino;
        }
        inodes.paths.push(rel.to_path_buf());
        let ino = inodes.paths.len() as u64;
        inodes.by_path.insert(rel.to_path_buf(), ino);
        ino
    }

    fn host(&self, rel: &Path) -> PathBuf {
        self.source.join(rel)
    }

    fn attr(&self, ino: u64, meta: &Metadata) -> FileAttr {
        let time = |secs: i64, nsecs: i64| {
            let nanos = u32::try_from(nsecs).unwrap_or(0);
            match u64::try_from(secs) {
                Ok(s) => UNIX_EPOCH + Duration::new(s, nanos),
                Err(_) => UNIX_EPOCH,
            }
        };
        let mut attr = FileAttr {
            ino: INodeNo(ino),
            size: meta.size(),
            blocks: meta.blocks(),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: kind_of(&meta.file_type()),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink().try_into().unwrap_or(u32::MAX),
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev().try_into().unwrap_or(0),
            blksize: 4096,
            flags: 0,
        };
        if attr.kind == FileType::Directory {
            match self.dir_times {
                DirTimes::Passthrough => {}
                DirTimes::Frozen => {
                    (attr.atime, attr.mtime, attr.ctime) = (self.frozen, self.frozen, self.frozen);
                    attr.size = FROZEN_DIR_SIZE;
                    attr.nlink = FROZEN_DIR_NLINK;
                }
                DirTimes::Moving => {
                    let now = SystemTime::now();
                    (attr.atime, attr.mtime, attr.ctime) = (now, now, now);
                }
            }
        }
        attr
    }

    /// How long the kernel may cache `attr`: not at all for a directory whose times move, so
    /// that every stat of it reaches the daemon (and sees a new time).
    fn attr_ttl(&self, attr: &FileAttr) -> Duration {
        if attr.kind == FileType::Directory && self.dir_times == DirTimes::Moving {
            Duration::ZERO
        } else {
            TTL
        }
    }
}

fn kind_of(t: &std::fs::FileType) -> FileType {
    if t.is_dir() {
        FileType::Directory
    } else if t.is_symlink() {
        FileType::Symlink
    } else if t.is_fifo() {
        FileType::NamedPipe
    } else if t.is_socket() {
        FileType::Socket
    } else if t.is_block_device() {
        FileType::BlockDevice
    } else if t.is_char_device() {
        FileType::CharDevice
    } else {
        FileType::RegularFile
    }
}

fn read_at(file: &File, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; size.min(MAX_READ) as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

impl Filesystem for HangFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // fuser asks for 16 unless told; ask for the kernel's own default explicitly when the
        // test wants a FUSE daemon that behaves like rclone or go-fuse.
        let max = self.max_background.unwrap_or(KERNEL_DEFAULT_MAX_BACKGROUND);
        let _ = config.set_max_background(max);
        let _ = config.set_congestion_threshold((u32::from(max) * 3 / 4).max(1) as u16);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.rel_path(parent) else {
            return reply.error(Errno::ENOENT);
        };
        let rel = dir.join(name);
        match std::fs::symlink_metadata(self.host(&rel)) {
            Ok(meta) => {
                let attr = self.attr(self.ino_of(&rel), &meta);
                reply.entry_with_ttls(&self.attr_ttl(&attr), &TTL, &attr, Generation(0));
            }
            Err(e) => reply.error(e.into()),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(rel) = self.rel_path(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match std::fs::symlink_metadata(self.host(&rel)) {
            Ok(meta) => {
                let attr = self.attr(u64::from(ino), &meta);
                reply.attr(&self.attr_ttl(&attr), &attr);
            }
            Err(e) => reply.error(e.into()),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let Some(rel) = self.rel_path(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match std::fs::read_link(self.host(&rel)) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(e.into()),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let Some(rel) = self.rel_path(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match File::open(self.host(&rel)) {
            Ok(file) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                let name = rel.to_string_lossy().into_owned();
                self.files
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(fh, (name, Arc::new(file)));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(e.into()),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let entry = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&u64::from(fh))
            .cloned();
        let Some((path, file)) = entry else {
            return reply.error(Errno::EBADF);
        };
        self.shared.reads.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = self.shared.lock();
            let verdict = state.verdict(&path);
            if verdict == Verdict::Fail {
                drop(state);
                return reply.error(Errno::EIO);
            }
            if verdict == Verdict::Hang {
                state.hung.push(HungRead {
                    path,
                    file,
                    offset,
                    size,
                    reply,
                });
                self.shared.hung_total.fetch_add(1, Ordering::Relaxed);
                self.shared.changed.notify_all();
                return;
            }
        }
        match read_at(&file, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&u64::from(fh));
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.rel_path(ino) {
            Some(rel) if self.host(&rel).is_dir() => {
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            Some(_) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(rel) = self.rel_path(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let listing = match std::fs::read_dir(self.host(&rel)) {
            Ok(it) => it,
            Err(e) => return reply.error(e.into()),
        };
        let mut entries: Vec<(u64, FileType, std::ffi::OsString)> = Vec::new();
        let parent_ino = rel.parent().map_or(1, |p| self.ino_of(p));
        entries.push((u64::from(ino), FileType::Directory, ".".into()));
        entries.push((parent_ino, FileType::Directory, "..".into()));
        let mut children: Vec<_> = listing
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name(), e.file_type().ok()?)))
            .collect();
        children.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, file_type) in children {
            let child = self.ino_of(&rel.join(&name));
            entries.push((child, kind_of(&file_type), name));
        }
        for (i, (child, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*child), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match rustix::fs::statvfs(&self.source) {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error())),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// Answer (with their data, or with EIO when `fail`) the hung reads matching `glob`.
fn answer(shared: &Shared, glob: &str, fail: bool) -> usize {
    let released: Vec<HungRead> = {
        let mut state = shared.lock();
        let (matching, keep): (Vec<_>, Vec<_>) = state
            .hung
            .drain(..)
            .partition(|h| glob_match(glob, &h.path));
        state.hung = keep;
        shared.changed.notify_all();
        matching
    };
    let n = released.len();
    for h in released {
        if fail {
            h.reply.error(Errno::EIO);
        } else {
            match read_at(&h.file, h.offset, h.size) {
                Ok(data) => h.reply.data(&data),
                Err(e) => h.reply.error(e),
            }
        }
    }
    n
}

/// Carry out one control command; `None` for `quit`.
fn execute(shared: &Shared, command: Command) -> Option<String> {
    Some(match command {
        Command::Hang(glob) => {
            shared.lock().rules.push((glob, Verdict::Hang));
            "ok".into()
        }
        Command::Release(glob) => {
            shared.lock().rules.push((glob.clone(), Verdict::Serve));
            format!("ok {}", answer(shared, &glob, false))
        }
        Command::ReleaseAll => {
            shared.lock().rules.clear();
            format!("ok {}", answer(shared, "*", false))
        }
        Command::Fail(glob) => {
            shared.lock().rules.push((glob.clone(), Verdict::Fail));
            format!("ok {}", answer(shared, &glob, true))
        }
        Command::Hung => format!("ok {}", shared.lock().hung.len()),
        Command::WaitHung { count, timeout } => {
            let deadline = Instant::now() + timeout;
            let mut state = shared.lock();
            loop {
                if state.hung.len() >= count {
                    break format!("ok {}", state.hung.len());
                }
                let now = Instant::now();
                if now >= deadline {
                    break format!("timeout {}", state.hung.len());
                }
                state = shared
                    .changed
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        Command::Stats => format!(
            "ok hung {} reads {} hung_total {}",
            shared.lock().hung.len(),
            shared.reads.load(Ordering::Relaxed),
            shared.hung_total.load(Ordering::Relaxed)
        ),
        Command::Quit => return None,
    })
}

/// Serves one control connection; returns true when it asked to quit.
fn serve_control(shared: &Shared, stream: UnixStream) -> bool {
    let Ok(write_half) = stream.try_clone() else {
        return false;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(MAX_COMMAND as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        if line.len() > MAX_COMMAND {
            let _ = writeln!(out, "error command too long");
            return false;
        }
        let text = String::from_utf8_lossy(&line);
        let answer = match parse_command(text.trim_end_matches(['\n', '\r'])) {
            Ok(command) => match execute(shared, command) {
                Some(answer) => answer,
                None => {
                    let _ = writeln!(out, "ok");
                    return true;
                }
            },
            Err(e) => format!("error {e}"),
        };
        if writeln!(out, "{answer}").is_err() {
            return false;
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("hangfs: {e}");
            return ExitCode::from(2);
        }
    };
    let shared = Arc::new(Shared {
        state: Mutex::new(HangState {
            rules: args
                .hang
                .iter()
                .map(|g| (g.clone(), Verdict::Hang))
                .collect(),
            hung: Vec::new(),
        }),
        changed: Condvar::new(),
        reads: AtomicU64::new(0),
        hung_total: AtomicU64::new(0),
    });
    let _ = std::fs::remove_file(&args.control);
    let listener = match UnixListener::bind(&args.control) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hangfs: bind {}: {e}", args.control.display());
            return ExitCode::FAILURE;
        }
    };
    let fs = HangFs::new(
        args.source.clone(),
        args.max_background,
        args.dir_times,
        shared.clone(),
    );
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("hangfs".into()),
        MountOption::Subtype("hangfs".into()),
        MountOption::NoAtime,
    ];
    config.acl = SessionACL::All;
    config.n_threads = Some(args.threads);
    let session = match fuser::spawn_mount(fs, &args.mountpoint, &config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hangfs: mount at {}: {e}", args.mountpoint.display());
            return ExitCode::FAILURE;
        }
    };
    let (quit_tx, quit_rx) = std::sync::mpsc::channel::<()>();
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                let quit_tx = quit_tx.clone();
                // One thread per connection: a `wait-hung` must not hold up other commands.
                std::thread::spawn(move || {
                    if serve_control(&shared, stream) {
                        let _ = quit_tx.send(());
                    }
                });
            }
        });
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    let _ = quit_rx.recv();
    // Wake every reader first: a mount with readers blocked in it cannot be unmounted.
    shared.lock().rules.clear();
    answer(&shared, "*", true);
    if let Err(e) = session.umount_and_join() {
        eprintln!(
            "hangfs: unmount {}: {e}; detaching it",
            args.mountpoint.display()
        );
        let _ = rustix::mount::unmount(&args.mountpoint, rustix::mount::UnmountFlags::DETACH);
    }
    let _ = std::fs::remove_file(&args.control);
    ExitCode::SUCCESS
}
