//! `serve --run` and `serve --from-process`: serve a FUSE tree that another process mounts, from
//! the moment it is mounted, and follow it when that process remounts or restarts.
//!
//! A FUSE mount lives in the mount namespace of the process that made it, and in Kubernetes a
//! second container of the same pod does not see it. Two ways around that:
//!
//! - `--run -- COMMAND`: mountshare starts the FUSE daemon as its child in the same container,
//!   so both share one mount namespace. Signals are passed on and the child's status is ours.
//! - `--from-process NAME|PID`: in a sidecar of a pod with `shareProcessNamespace: true`, the
//!   daemon's mount namespace is reachable through `/proc/PID/root`. Opening the export root
//!   there needs ptrace read access to the process (CAP_SYS_PTRACE when the daemon holds
//!   capabilities we lack). The open descriptor keeps working without it.
//!
//! The served descriptor pins the mount it was opened on. When the daemon dies, that mount's
//! FUSE connection is gone for good (every call fails with ENOTCONN), so a check every
//! `--check-interval` compares the mount at DIR (its mount id, and the process and its start
//! time) with the one being served and re-opens the root when it changed. Connections and file
//! handles stay valid across the swap: handles name paths, not descriptors.

use crate::serve::ServeArgs;
use anyhow::{bail, Context};
use mountshare_fs::Attr;
use mountshare_fs::{Backend, DirEntryName, FsError, FsStats, LocalFs, ReadOutcome, RelPath};
use mountshare_mounts::mountinfo::MountTable;
use mountshare_server::Server;
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// Whose mount namespace DIR is looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Ours (with `--run`, the child shares it).
    Own,
    /// Another process's, through `/proc/PID/root`.
    Process(Selector),
}

/// How `--from-process` names the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Exactly this process; when it exits, it is gone for good.
    Pid(u32),
    /// Any process whose `comm` or `argv[0]` file name is this, found again after a restart.
    Name(String),
}

impl Selector {
    pub fn parse(text: &str) -> anyhow::Result<Selector> {
        if text.is_empty() {
            bail!("--from-process needs a process name or PID");
        }
        Ok(match text.parse::<u32>() {
            Ok(pid) => Selector::Pid(pid),
            Err(_) => Selector::Name(text.to_string()),
        })
    }
}

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

/// The top mount at `dir` when it is a FUSE file system (`fuse`, `fuse.NAME`, `fuseblk`).
pub fn fuse_mount_at(table: &MountTable, dir: &Path) -> Option<(u64, String)> {
    table
        .top_at(dir)
        .filter(|e| e.fstype.starts_with("fuse"))
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

/// Where the FUSE mount at `dir` is now. `Ok(None)`: not mounted (yet). An error means it
/// never will be: the one process named by PID has exited.
pub fn locate(source: &Source, dir: &Path) -> anyhow::Result<Option<Found>> {
    match source {
        Source::Own => {
            let table = read_table(Path::new("/proc/self/mountinfo"))
                .context("cannot read /proc/self/mountinfo")?;
            Ok(fuse_mount_at(&table, dir).map(|(mount_id, fstype)| Found {
                process: None,
                mount_id,
                fstype,
                open_path: dir.to_path_buf(),
            }))
        }
        Source::Process(Selector::Pid(pid)) => {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                bail!("process {pid} is gone (or not in this PID namespace: set shareProcessNamespace: true)");
            }
            Ok(found_in(*pid, dir))
        }
        Source::Process(Selector::Name(name)) => {
            let me = std::process::id();
            let mut best: Option<Found> = None;
            for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
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

/// The backend the server holds: the open FUSE tree, replaced when the mount changes, or none
/// while it is away (calls then fail with ENOTCONN, which clients see as EIO, as with a dead
/// FUSE daemon; handles stay valid).
#[derive(Default)]
pub struct Swappable {
    current: RwLock<Option<Arc<LocalFs>>>,
}

impl Swappable {
    pub fn set(&self, fs: Option<LocalFs>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fs.map(Arc::new);
    }

    fn get(&self) -> Result<Arc<LocalFs>, FsError> {
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
    fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, FsError> {
        self.get()?.read_link(path)
    }
    fn read(&self, path: &RelPath, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError> {
        self.get()?.read(path, offset, buf)
    }
    fn statfs(&self) -> Result<FsStats, FsError> {
        self.get()?.statfs()
    }
}

fn open(found: &Found) -> anyhow::Result<LocalFs> {
    LocalFs::open(&found.open_path).with_context(|| {
        let hint = if found.process.is_some() {
            " (reading another process's /proc/PID/root needs CAP_SYS_PTRACE when it holds capabilities this one lacks)"
        } else {
            ""
        };
        format!("cannot open {}{hint}", found.open_path.display())
    })
}

/// The child started by `--run`. It is reaped here, not by `std`, because as PID 1 of a
/// container we also reap the orphans it leaves behind.
struct Child {
    pid: Pid,
    reap_all: bool,
}

impl Child {
    fn spawn(command: &[OsString]) -> anyhow::Result<Child> {
        let (program, args) = command
            .split_first()
            .context("--run needs a command after --")?;
        let child = std::process::Command::new(program)
            .args(args)
            .spawn()
            .with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
        let pid = Pid::from_child(&child);
        tracing::info!(pid = pid.as_raw_nonzero().get(), command = %program.to_string_lossy(), "child started");
        Ok(Child {
            pid,
            reap_all: std::process::id() == 1,
        })
    }

    /// The child's status once it has exited; never blocks.
    fn try_exit(&self) -> Option<WaitStatus> {
        if self.reap_all {
            let mut status = None;
            while let Ok(Some((pid, st))) = rustix::process::wait(WaitOptions::NOHANG) {
                if pid == self.pid {
                    status = Some(st);
                }
            }
            status
        } else {
            rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG)
                .ok()
                .flatten()
        }
    }

    fn forward(&self, sig: Signal) {
        if let Err(e) = rustix::process::kill_process(self.pid, sig) {
            tracing::warn!(signal = ?sig, error = %e, "cannot pass the signal on to the child");
        }
    }
}

/// Our exit code for the child's status: its own code, or 128 + the signal that killed it.
fn exit_code(status: WaitStatus) -> u8 {
    if let Some(code) = status.exit_status() {
        code as u8
    } else if let Some(sig) = status.terminating_signal() {
        (128 + sig) as u8
    } else {
        1
    }
}

/// What happened while waiting.
enum Event {
    ChildExited(WaitStatus),
    Stop,
    Tick,
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    chld: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        let make = |kind| signal(kind).context("cannot install a signal handler");
        Ok(Signals {
            term: make(SignalKind::terminate())?,
            int: make(SignalKind::interrupt())?,
            hup: make(SignalKind::hangup())?,
            chld: make(SignalKind::child())?,
        })
    }

    /// Waits for the next event. With a child, SIGTERM/SIGINT/SIGHUP go to it and we carry on
    /// until it exits; without one, SIGTERM/SIGINT stop us.
    async fn next(&mut self, child: Option<&Child>, interval: Duration) -> Event {
        if let Some(st) = child.and_then(Child::try_exit) {
            return Event::ChildExited(st);
        }
        let sig = tokio::select! {
            _ = self.term.recv() => Signal::Term,
            _ = self.int.recv() => Signal::Int,
            _ = self.hup.recv() => Signal::Hup,
            _ = self.chld.recv() => {
                return match child.and_then(Child::try_exit) {
                    Some(st) => Event::ChildExited(st),
                    None => Event::Tick,
                };
            }
            _ = tokio::time::sleep(interval) => return Event::Tick,
        };
        match child {
            Some(c) => {
                tracing::info!(signal = ?sig, "passing the signal on to the child");
                c.forward(sig);
                Event::Tick
            }
            None if sig == Signal::Hup => Event::Tick,
            None => {
                tracing::info!(signal = ?sig, "stopping");
                Event::Stop
            }
        }
    }
}

/// DIR as mountinfo shows it: absolute, without `.` or `..`.
fn export_dir(args: &ServeArgs, source: &Source) -> anyhow::Result<PathBuf> {
    let dir = if args.dir.is_absolute() || *source != Source::Own {
        args.dir.clone()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(&args.dir)
    };
    if !dir.is_absolute()
        || dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        bail!(
            "{}: with --from-process, DIR must be an absolute path without '.' or '..'",
            args.dir.display()
        );
    }
    Ok(dir)
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let source = match &args.from_process {
        Some(text) => Source::Process(Selector::parse(text)?),
        None => Source::Own,
    };
    let dir = export_dir(&args, &source)?;
    if args.check_interval == 0 {
        bail!("--check-interval must be at least 1 second");
    }
    let interval = Duration::from_secs(args.check_interval);
    let config = crate::serve::server_config(&args);
    let runtime = crate::serve::runtime(&config)?;
    runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let child = if args.run {
            Some(Child::spawn(&args.command)?)
        } else {
            None
        };
        tracing::info!(dir = %dir.display(), source = ?source, "waiting for a FUSE mount");
        let first = loop {
            if let Some(found) = locate(&source, &dir)? {
                break found;
            }
            match signals.next(child.as_ref(), interval).await {
                Event::ChildExited(st) => {
                    tracing::warn!(status = ?st, "child exited before mounting anything");
                    return Ok(ExitCode::from(exit_code(st)));
                }
                Event::Stop => return Ok(ExitCode::SUCCESS),
                Event::Tick => {}
            }
        };
        let backend = Arc::new(Swappable::default());
        backend.set(Some(open(&first)?));
        let server = Server::bind(config, backend.clone()).await?;
        tracing::info!(dir = %dir.display(), mount = %first, addr = %server.local_addr(), "export ready");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        let mut current = Some(first);
        let code = loop {
            match signals.next(child.as_ref(), interval).await {
                Event::ChildExited(st) => {
                    tracing::info!(status = ?st, "child exited; stopping");
                    break ExitCode::from(exit_code(st));
                }
                Event::Stop => break ExitCode::SUCCESS,
                Event::Tick => {}
            }
            let now = match locate(&source, &dir) {
                Ok(now) => now,
                Err(e) => {
                    tracing::error!("{e:#}");
                    break ExitCode::FAILURE;
                }
            };
            if now == current {
                continue;
            }
            match (&now, &current) {
                (Some(found), _) => match open(found) {
                    Ok(fs) => {
                        tracing::info!(new = %found, "FUSE mount changed; serving the new one");
                        backend.set(Some(fs));
                        current = now;
                    }
                    Err(e) => tracing::warn!("{e:#}"),
                },
                (None, Some(old)) => {
                    tracing::warn!(mount = %old, "FUSE mount is gone; calls fail until it is back");
                    backend.set(None);
                    current = None;
                }
                (None, None) => {}
            }
        };
        let _ = stop_tx.send(());
        let _ = serving.await;
        Ok(code)
    })
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
        assert_eq!(fuse_mount_at(&t, Path::new("/mnt/none")), None);
    }

    #[test]
    fn a_number_names_a_pid_anything_else_a_name() {
        assert_eq!(Selector::parse("42").unwrap(), Selector::Pid(42));
        assert_eq!(
            Selector::parse("decypharr").unwrap(),
            Selector::Name("decypharr".into())
        );
        assert!(Selector::parse("").is_err());
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by waitpid, which std does not see
    fn exit_code_is_the_childs_or_128_plus_signal() {
        let status = |cmd: &str| {
            let c = std::process::Command::new("sh")
                .args(["-c", cmd])
                .spawn()
                .unwrap();
            let pid = Pid::from_child(&c);
            rustix::process::waitpid(Some(pid), WaitOptions::empty())
                .unwrap()
                .unwrap()
        };
        assert_eq!(exit_code(status("exit 3")), 3);
        assert_eq!(exit_code(status("kill -TERM $$")), 128 + 15);
    }

    #[test]
    fn start_time_of_this_process_is_known() {
        assert!(start_time(std::process::id()).is_some());
    }
}
