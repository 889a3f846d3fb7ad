//! [`HangFs`]: the `hangfs` FUSE daemon under test control: a read-only passthrough of a host
//! directory whose reads of chosen files hang until released, run as its own process so a test
//! can `kill -9` it and mount it again.
//!
//! # Control protocol
//!
//! One command per line on the daemon's Unix socket, each answered by one line (`ok ...`,
//! `timeout N` or `error WHY`). Paths are relative to the mount (`dir/file`); a GLOB matches a
//! whole path, `*` any run of characters (`/` included), `?` one character.
//!
//! | command | effect | answer |
//! |---|---|---|
//! | `hang GLOB` | reads of matching files from now on hang | `ok` |
//! | `release GLOB` | matching files stop hanging; their hung reads are answered with data | `ok N` (answered) |
//! | `release-all` | no file hangs any more; every hung read is answered | `ok N` |
//! | `fail GLOB` | reads of matching files fail with EIO from now on, hung ones included | `ok N` (answered) |
//! | `hung` | | `ok N` (reads hung now) |
//! | `wait-hung N MILLIS` | waits until at least N reads are hung | `ok N` or `timeout N` |
//! | `stats` | | `ok hung N reads N hung_total N` |
//! | `quit` | answers hung reads with EIO, unmounts, exits | `ok` |
//!
//! Rules apply in order, the last matching one deciding: `hang *` then `release a/*` hangs
//! everything but `a/`. (A failed page-cache read is retried by the kernel as a synchronous one,
//! so answering a hung read with EIO while the file still hangs would only hang it again: hence
//! `fail` is a rule too.)
//!
//! # Directory times
//!
//! [`DirTimes`] (`--dir-times`) chooses what times the daemon reports for directories, to stand
//! in for FUSE file systems that do not keep them as a local file system does:
//!
//! - [`DirTimes::Passthrough`] (the default): the host directory's own.
//! - [`DirTimes::Frozen`]: every directory has one constant atime, mtime and ctime (the daemon's
//!   start, to the second), size (4096) and link count (2), whatever is added or removed in it,
//!   like Decypharr's DFS FUSE. Nothing in a directory's attributes tells that it changed.
//! - [`DirTimes::Moving`]: every stat or lookup of a directory reports the present time as its
//!   atime, mtime and ctime, though nothing changed, like Decypharr's WebDAV (`getlastmodified`
//!   is the time of the request). Directory attributes are given to the kernel with a time to
//!   live of 0, so each `stat` of a directory on the mount reaches the daemon and sees a new time.
//!
//! In every mode a directory's listing is the host directory's at the time of the call (the
//! daemon keeps no listing, and the kernel caches none: entries added on the host show in the
//! next `readdir`), and negative lookups are not cached by the kernel either. The kernel caches
//! the attributes of files and of passthrough and frozen directories, and every name it looked
//! up, for one second.
//!
//! A read hangs in the daemon, after the kernel sent it: with the kernel's default
//! `max_background` of 12, no more than 12 page-cache reads reach the daemon at once; the others
//! wait in the kernel and are not counted by `hung`.

use crate::error::{Error, IoContext, Result};
use mountshare_mounts::mountinfo::MountTable;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The kernel's own `max_background` (`FUSE_DEFAULT_MAX_BACKGROUND`), kept by rclone and go-fuse.
pub const KERNEL_DEFAULT_MAX_BACKGROUND: u16 = 12;

/// Whether `glob` matches all of `text`: `*` matches any run of characters (also `/`), `?`
/// exactly one, anything else itself.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    // Iterative matcher with one backtrack point: linear in practice, no recursion.
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || (g[gi] != '*' && g[gi] == t[ti])) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

/// One command of the control protocol (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Hang(String),
    Release(String),
    ReleaseAll,
    Fail(String),
    Hung,
    WaitHung { count: usize, timeout: Duration },
    Stats,
    Quit,
}

impl Command {
    /// The command as a line of the protocol (without the newline).
    pub fn to_line(&self) -> String {
        match self {
            Command::Hang(g) => format!("hang {g}"),
            Command::Release(g) => format!("release {g}"),
            Command::ReleaseAll => "release-all".into(),
            Command::Fail(g) => format!("fail {g}"),
            Command::Hung => "hung".into(),
            Command::WaitHung { count, timeout } => {
                format!("wait-hung {count} {}", timeout.as_millis())
            }
            Command::Stats => "stats".into(),
            Command::Quit => "quit".into(),
        }
    }
}

/// Parse one line of the control protocol.
pub fn parse_command(line: &str) -> std::result::Result<Command, String> {
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let glob = || {
        if rest.is_empty() {
            Err(format!("{verb} needs a glob"))
        } else {
            Ok(rest.to_string())
        }
    };
    match verb {
        "hang" => Ok(Command::Hang(glob()?)),
        "release" => Ok(Command::Release(glob()?)),
        "release-all" => Ok(Command::ReleaseAll),
        "fail" => Ok(Command::Fail(glob()?)),
        "hung" => Ok(Command::Hung),
        "wait-hung" => {
            let mut it = rest.split_ascii_whitespace();
            let count = it.next().and_then(|n| n.parse().ok());
            let millis: Option<u64> = it.next().and_then(|n| n.parse().ok());
            match (count, millis, it.next()) {
                (Some(count), Some(millis), None) => Ok(Command::WaitHung {
                    count,
                    // At most ten minutes: a test that waits longer is broken anyway.
                    timeout: Duration::from_millis(millis.min(600_000)),
                }),
                _ => Err("wait-hung needs a count and milliseconds".into()),
            }
        }
        "stats" => Ok(Command::Stats),
        "quit" => Ok(Command::Quit),
        _ => Err(format!("unknown command {verb:?}")),
    }
}

/// What times `hangfs` reports for directories (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirTimes {
    /// The host directory's own attributes.
    #[default]
    Passthrough,
    /// One constant atime, mtime and ctime (the daemon's start, to the second), size and link
    /// count for every directory, whatever changes in it.
    Frozen,
    /// The present time as atime, mtime and ctime at every stat or lookup of a directory, and no
    /// caching of directory attributes in the kernel.
    Moving,
}

impl DirTimes {
    /// The value of `--dir-times`.
    pub fn as_str(self) -> &'static str {
        match self {
            DirTimes::Passthrough => "passthrough",
            DirTimes::Frozen => "frozen",
            DirTimes::Moving => "moving",
        }
    }
}

impl std::str::FromStr for DirTimes {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "passthrough" => Ok(DirTimes::Passthrough),
            "frozen" => Ok(DirTimes::Frozen),
            "moving" => Ok(DirTimes::Moving),
            _ => Err(format!(
                "--dir-times must be passthrough, frozen or moving, not {s:?}"
            )),
        }
    }
}

/// How to run a [`HangFs`].
#[derive(Debug, Clone)]
pub struct HangFsOptions {
    /// The `max_background` the daemon asks for in FUSE INIT; `None` for the kernel's default
    /// (12), as rclone and go-fuse do. Default `Some(256)`.
    pub max_background: Option<u16>,
    /// Globs of files whose reads hang from the moment of mounting.
    pub hang: Vec<String>,
    /// FUSE session threads (hung reads occupy none of them).
    pub threads: usize,
    /// What times directories report. Default [`DirTimes::Passthrough`].
    pub dir_times: DirTimes,
}

impl Default for HangFsOptions {
    fn default() -> Self {
        HangFsOptions {
            max_background: Some(256),
            hang: Vec::new(),
            threads: 2,
            dir_times: DirTimes::Passthrough,
        }
    }
}

impl HangFsOptions {
    /// Ask for nothing in FUSE INIT beyond what the kernel does by default (`max_background`
    /// 12), like rclone and go-fuse.
    pub fn kernel_default_max_background(mut self) -> Self {
        self.max_background = None;
        self
    }

    /// Report directory times as `dir_times` says: [`DirTimes::Frozen`] stands in for a FUSE
    /// file system whose directories never change times, [`DirTimes::Moving`] for one whose
    /// directories change times at every stat.
    pub fn dir_times(mut self, dir_times: DirTimes) -> Self {
        self.dir_times = dir_times;
        self
    }
}

/// The `hangfs` binary built with this test kit: `MOUNTSHARE_HANGFS` if set, else `hangfs` in
/// the target directory of the running test (`target/PROFILE/hangfs`). Tests of this crate should
/// pass `env!("CARGO_BIN_EXE_hangfs")` instead; other crates' tests need the binary built first
/// (`cargo test --workspace` builds it; so does `cargo build -p mountshare-testkit --bin hangfs`
/// with the same profile).
pub fn hangfs_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MOUNTSHARE_HANGFS") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ctx(|| "find the running test binary".into())?;
    // target/PROFILE/deps/TEST-HASH -> target/PROFILE/hangfs
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("hangfs"))
        .ok_or_else(|| Error::NotFound(exe.clone()))?;
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(Error::Missing(format!(
            "{} (build it: cargo build -p mountshare-testkit --bin hangfs, with the profile of the test)",
            candidate.display()
        )))
    }
}

/// A running `hangfs` daemon mounted at a directory. Stopped and unmounted on drop.
#[derive(Debug)]
pub struct HangFs {
    bin: PathBuf,
    source: PathBuf,
    mountpoint: PathBuf,
    options: HangFsOptions,
    control: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl HangFs {
    /// Mount `source` (read-only) at `mountpoint`, an existing directory, and wait until the
    /// daemon takes commands.
    pub fn start(
        bin: impl AsRef<Path>,
        source: impl AsRef<Path>,
        mountpoint: impl AsRef<Path>,
        options: HangFsOptions,
    ) -> Result<Self> {
        let bin = bin.as_ref().to_path_buf();
        if !bin.is_file() {
            return Err(Error::NotFound(bin));
        }
        if !Path::new("/dev/fuse").exists() {
            return Err(Error::Missing("/dev/fuse (the fuse kernel module)".into()));
        }
        let dir = tempfile::Builder::new()
            .prefix("mountshare-hangfs-")
            .tempdir()
            .ctx(|| "create a temporary directory".into())?;
        let mountpoint = fs::canonicalize(mountpoint.as_ref())
            .ctx(|| format!("find {}", mountpoint.as_ref().display()))?;
        let mut fs = HangFs {
            bin,
            source: source.as_ref().to_path_buf(),
            mountpoint,
            options,
            control: dir.path().join("control.sock"),
            log: dir.path().join("hangfs.log"),
            child: None,
            _dir: dir,
        };
        fs.spawn()?;
        Ok(fs)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .ctx(|| format!("open {}", self.log.display()))?;
        let mut cmd = Process::new(&self.bin);
        cmd.arg("--source")
            .arg(&self.source)
            .arg("--mountpoint")
            .arg(&self.mountpoint)
            .arg("--control")
            .arg(&self.control)
            .arg("--threads")
            .arg(self.options.threads.to_string())
            .arg("--dir-times")
            .arg(self.options.dir_times.as_str());
        match self.options.max_background {
            Some(n) => cmd.arg("--max-background").arg(n.to_string()),
            None => cmd.arg("--kernel-default-max-background"),
        };
        for glob in &self.options.hang {
            cmd.arg("--hang").arg(glob);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .ctx(|| format!("start {}", self.bin.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx.recv_timeout(Duration::from_secs(30));
        self.child = Some(child);
        match ready {
            Ok(line) if line.trim() == "ready" => Ok(()),
            _ => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                let _ = self.kill9();
                Err(Error::Process(format!(
                    "hangfs did not come up at {} (exit status {status:?}); log:\n{}",
                    self.mountpoint.display(),
                    self.log()
                )))
            }
        }
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send one command and return the answer after `ok` (empty for a bare `ok`).
    fn command(&self, command: Command, wait: Duration) -> Result<String> {
        let line = command.to_line();
        let mut stream = UnixStream::connect(&self.control)
            .ctx(|| format!("connect to hangfs at {}", self.control.display()))?;
        stream
            .set_read_timeout(Some(wait + Duration::from_secs(10)))
            .ctx(|| "set a read timeout".into())?;
        writeln!(stream, "{line}").ctx(|| format!("send {line:?} to hangfs"))?;
        let mut answer = String::new();
        BufReader::new((&stream).take(64 * 1024))
            .read_line(&mut answer)
            .ctx(|| format!("read hangfs's answer to {line:?}"))?;
        let answer = answer.trim_end();
        if answer == "ok" {
            Ok(String::new())
        } else if let Some(rest) = answer.strip_prefix("ok ") {
            Ok(rest.to_string())
        } else if let Some(n) = answer.strip_prefix("timeout ") {
            Err(Error::Timeout(format!(
                "{line:?}: only {n} reads hung after {wait:?}"
            )))
        } else {
            Err(Error::Process(format!(
                "hangfs answered {line:?} with {answer:?}"
            )))
        }
    }

    fn count(&self, command: Command, wait: Duration) -> Result<usize> {
        let answer = self.command(command, wait)?;
        answer.trim().parse().map_err(|_| Error::Parse {
            what: "a hangfs count".into(),
            detail: answer,
        })
    }

    /// Reads of files matching `glob` hang from now on.
    pub fn hang(&self, glob: &str) -> Result<()> {
        self.command(Command::Hang(glob.into()), Duration::ZERO)
            .map(|_| ())
    }

    /// Files matching `glob` stop hanging; returns how many hung reads were answered.
    pub fn release(&self, glob: &str) -> Result<usize> {
        self.count(Command::Release(glob.into()), Duration::ZERO)
    }

    /// Nothing hangs any more; returns how many hung reads were answered.
    pub fn release_all(&self) -> Result<usize> {
        self.count(Command::ReleaseAll, Duration::ZERO)
    }

    /// Reads of files matching `glob` fail with EIO from now on, those hung now included;
    /// returns how many hung reads were answered.
    pub fn fail(&self, glob: &str) -> Result<usize> {
        self.count(Command::Fail(glob.into()), Duration::ZERO)
    }

    /// How many reads are hung in the daemon now.
    pub fn hung(&self) -> Result<usize> {
        self.count(Command::Hung, Duration::ZERO)
    }

    /// Wait (in the daemon, no polling) until at least `count` reads are hung; returns how many.
    pub fn wait_hung(&self, count: usize, timeout: Duration) -> Result<usize> {
        self.count(Command::WaitHung { count, timeout }, timeout)
    }

    /// `(hung now, reads received, reads that ever hung)`.
    pub fn stats(&self) -> Result<(u64, u64, u64)> {
        let answer = self.command(Command::Stats, Duration::ZERO)?;
        let numbers: Vec<u64> = answer
            .split_ascii_whitespace()
            .skip(1)
            .step_by(2)
            .filter_map(|n| n.parse().ok())
            .collect();
        match numbers[..] {
            [hung, reads, total] => Ok((hung, reads, total)),
            _ => Err(Error::Parse {
                what: "hangfs stats".into(),
                detail: answer,
            }),
        }
    }

    /// `kill -9` the daemon, leaving its mount behind dead (every access fails with ENOTCONN),
    /// as when a FUSE daemon crashes.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().ctx(|| "wait for hangfs".into())?;
        }
        Ok(())
    }

    /// Mount a fresh daemon at the same place, first detaching whatever is mounted there (the
    /// dead mount a [`HangFs::kill9`] left), as a restarting FUSE daemon does.
    pub fn restart(&mut self) -> Result<()> {
        self.stop_process();
        self.detach_dead_mounts();
        if fuse_mounted_at(&self.mountpoint) {
            return Err(Error::Process(format!(
                "cannot detach the FUSE mount at {}",
                self.mountpoint.display()
            )));
        }
        self.spawn()
    }

    /// Mount a fresh daemon on top of whatever is mounted at the mount point now (a dead mount
    /// stays underneath).
    pub fn remount_on_top(&mut self) -> Result<()> {
        self.stop_process();
        self.spawn()
    }

    fn stop_process(&mut self) {
        if self.child.is_some() {
            let _ = self.command(Command::Quit, Duration::ZERO);
            if let Some(mut child) = self.child.take() {
                for _ in 0..100 {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Stop the daemon (hung reads get EIO) and unmount.
    pub fn stop(&mut self) {
        self.stop_process();
        self.detach_dead_mounts();
    }

    /// Detach every FUSE mount left at the mount point (dead ones after a kill, stacked ones).
    fn detach_dead_mounts(&self) {
        for _ in 0..16 {
            if !fuse_mounted_at(&self.mountpoint) {
                break;
            }
            if unmount_lazy(&self.mountpoint).is_err() {
                break;
            }
        }
    }
}

impl Drop for HangFs {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- hangfs log ---\n{}", self.log());
        }
    }
}

/// The file-system type of the topmost mount at exactly `path` (`fuse.hangfs`, `fuse.rclone`),
/// from `/proc/self/mountinfo`.
pub fn mount_type_at(path: &Path) -> Option<String> {
    let text = fs::read("/proc/self/mountinfo").ok()?;
    MountTable::parse_lossy(&text)
        .top_at(path)
        .map(|m| m.fstype.clone())
}

/// Whether the topmost mount at exactly `path` is FUSE (a hangfs mount, live or dead).
fn fuse_mounted_at(path: &Path) -> bool {
    let Ok(text) = fs::read("/proc/self/mountinfo") else {
        return false;
    };
    MountTable::parse_lossy(&text)
        .top_at(path)
        .is_some_and(|m| m.is_fuse())
}

/// Detach the mount at `path` now (`umount -l`), even with files open or the daemon dead.
pub fn unmount_lazy(path: &Path) -> Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) => Ok(()),
        Err(_) => {
            let status = Process::new("fusermount3")
                .args(["-u", "-z"])
                .arg(path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ctx(|| "run fusermount3".into())?;
            if status.success() {
                Ok(())
            } else {
                Err(Error::Process(format!(
                    "cannot unmount {}: umount2(MNT_DETACH) and fusermount3 -u -z failed",
                    path.display()
                )))
            }
        }
    }
}

/// Where a test mounts hangfs: a temporary directory below `under` (on disk, e.g. the test's
/// `CARGO_TARGET_TMPDIR`) holding `source` (the tree to serve, to be filled) and `mnt` (the empty
/// mount point), and the hangfs binary. Panics with a clear message when the test cannot run
/// here: not root, no /dev/fuse, or hangfs not built.
pub struct Fixture {
    pub hangfs: PathBuf,
    pub source: PathBuf,
    pub mnt: PathBuf,
    _base: tempfile::TempDir,
}

impl Fixture {
    pub fn new(prefix: &str, under: impl AsRef<Path>) -> Fixture {
        assert!(
            Path::new("/dev/fuse").exists() && rustix::process::geteuid().is_root(),
            "this test needs root and /dev/fuse"
        );
        let hangfs = hangfs_binary().expect("the hangfs binary of mountshare-testkit");
        let base = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(under)
            .expect("create the fixture directory");
        let source = base.path().join("source");
        let mnt = base.path().join("mnt");
        fs::create_dir_all(&source).expect("create the source directory");
        fs::create_dir(&mnt).expect("create the mount point");
        Fixture {
            hangfs,
            source,
            mnt,
            _base: base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "a/b/c"));
        assert!(glob_match("hang/*", "hang/f01.bin"));
        assert!(!glob_match("hang/*", "ok/f01.bin"));
        assert!(glob_match("*.mkv", "Movies/A (2001)/a.mkv"));
        assert!(glob_match("f?.bin", "f1.bin"));
        assert!(!glob_match("f?.bin", "f10.bin"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("**x", "yyx"));
    }

    #[test]
    fn dir_times_round_trip() {
        for d in [DirTimes::Passthrough, DirTimes::Frozen, DirTimes::Moving] {
            assert_eq!(d.as_str().parse::<DirTimes>(), Ok(d));
        }
        assert!("Frozen".parse::<DirTimes>().is_err());
        assert!("".parse::<DirTimes>().is_err());
        assert_eq!(HangFsOptions::default().dir_times, DirTimes::Passthrough);
    }

    #[test]
    fn commands_round_trip() {
        for c in [
            Command::Hang("hang/*".into()),
            Command::Release("dir with space/*".into()),
            Command::ReleaseAll,
            Command::Fail("x".into()),
            Command::Hung,
            Command::WaitHung {
                count: 80,
                timeout: Duration::from_millis(1500),
            },
            Command::Stats,
            Command::Quit,
        ] {
            assert_eq!(parse_command(&c.to_line()), Ok(c));
        }
        for bad in [
            "",
            "hang",
            "hang ",
            "wait-hung 3",
            "wait-hung x 10",
            "wait-hung 1 2 3",
            "nope",
        ] {
            assert!(parse_command(bad).is_err(), "{bad:?}");
        }
    }
}
