//! The sidecar mechanism of `serve --from-process`, on a real FUSE mount made in another mount
//! namespace: the mount is invisible here (as in a second container of the pod), mountshare finds
//! the daemon by name, serves the tree through /proc/PID/root, libnfs reads it back, and after the
//! daemon is killed and started again (a container restart) the new mount is served on the same
//! port without restarting mountshare. Opening another process's /proc/PID/root needs exactly
//! CAP_SYS_PTRACE when that process holds capabilities the server lacks.
//!
//! This file is its own test harness (`harness = false`): the same binary, started as
//! `fuse-daemon DIR GENERATION` inside `unshare -m`, is the FUSE daemon. Needs root, /dev/fuse,
//! util-linux (`unshare`, `setpriv`) and libnfs-utils.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, INodeNo, LockOwner, MountOption, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry, Request,
};
use mountshare_testkit::libnfs::{self, NfsTarget};
use mountshare_testkit::server::{free_port, wait_for_port};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const EPISODE_LEN: usize = 300_000;

// ---------------------------------------------------------------------------------------------
// The FUSE daemon: `/version.txt` ("generation N\n") and `/torrents/episode.mkv`.

struct Dfs {
    generation: String,
}

fn attr(ino: u64, kind: FileType, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: if kind == FileType::Directory {
            0o555
        } else {
            0o444
        },
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

fn episode_byte(i: usize) -> u8 {
    (i % 251) as u8
}

impl Dfs {
    fn version(&self) -> Vec<u8> {
        format!("generation {}\n", self.generation).into_bytes()
    }

    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        Some(match ino {
            1 => attr(1, FileType::Directory, 0),
            2 => attr(2, FileType::RegularFile, self.version().len() as u64),
            3 => attr(3, FileType::Directory, 0),
            4 => attr(4, FileType::RegularFile, EPISODE_LEN as u64),
            _ => return None,
        })
    }
}

const TTL: Duration = Duration::from_secs(1);

impl Filesystem for Dfs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = match (u64::from(parent), name.to_str()) {
            (1, Some("version.txt")) => 2,
            (1, Some("torrents")) => 3,
            (3, Some("episode.mkv")) => 4,
            _ => return reply.error(Errno::ENOENT),
        };
        reply.entry(&TTL, &self.attr_of(ino).unwrap(), fuser::Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(u64::from(ino)) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Like a daemon that takes O_NONBLOCK as "don't wait for the data": the server opens
        // with it (so that no FIFO can block the open) and must clear it before reading.
        if flags.0 & rustix::fs::OFlags::NONBLOCK.bits() as i32 != 0 {
            return reply.error(Errno::EAGAIN);
        }
        let data: Vec<u8> = match u64::from(ino) {
            2 => self.version(),
            4 => (0..EPISODE_LEN).map(episode_byte).collect(),
            _ => return reply.error(Errno::ENOENT),
        };
        let start = (offset as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries: &[(u64, FileType, &str)] = match u64::from(ino) {
            1 => &[
                (1, FileType::Directory, "."),
                (1, FileType::Directory, ".."),
                (2, FileType::RegularFile, "version.txt"),
                (3, FileType::Directory, "torrents"),
            ],
            3 => &[
                (3, FileType::Directory, "."),
                (1, FileType::Directory, ".."),
                (4, FileType::RegularFile, "episode.mkv"),
            ],
            _ => return reply.error(Errno::ENOENT),
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// Mounts the file system at `dir`, says so on stdout, and serves it until stdin closes.
fn fuse_daemon(dir: &str, generation: &str) {
    let mut config = fuser::Config::default();
    config.mount_options.extend([
        MountOption::RO,
        MountOption::FSName("testdfs".into()),
        MountOption::Subtype("dfs".into()),
    ]);
    let fs = Dfs {
        generation: generation.into(),
    };
    let session = fuser::spawn_mount(fs, dir, &config).expect("mount the test FUSE file system");
    println!("mounted");
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop(session);
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// The FUSE daemon in its own private mount namespace, as Decypharr is in its own container.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(dir: &Path, generation: u32) -> Daemon {
        let exe = std::env::current_exe().expect("own executable");
        let mut child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--"])
            .arg(&exe)
            .arg("fuse-daemon")
            .arg(dir)
            .arg(generation.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the FUSE daemon under unshare (util-linux)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read from the FUSE daemon");
        assert_eq!(
            line.trim(),
            "mounted",
            "the FUSE daemon did not mount (needs root and /dev/fuse)"
        );
        Daemon { child }
    }

    /// Kills it like a crashed container: no unmount, the FUSE connection is cut.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Serve {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Serve {
    fn start(prefix: &[&str], dir: &Path, name: &str, log: PathBuf) -> Serve {
        let port = free_port();
        let (program, pre) = match prefix.split_first() {
            Some((p, rest)) => (p.to_string(), rest.to_vec()),
            None => (BIN.to_string(), vec![]),
        };
        let mut cmd = Command::new(program);
        cmd.args(pre);
        if !prefix.is_empty() {
            cmd.arg(BIN);
        }
        let child = cmd
            .arg("serve")
            .arg(dir)
            .args(["--from-process", name, "--check-interval", "1"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start mountshare serve");
        Serve { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_listening(&mut self) {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if let Err(e) = wait_for_port(addr, Duration::from_secs(30)) {
            let _ = self.child.kill();
            panic!("mountshare serve never listened: {e}\n{}", self.log());
        }
    }

    fn target(&self) -> NfsTarget {
        NfsTarget::local(self.port, self.port, "/")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scratch() -> mountshare_testkit::tempfile::TempDir {
    mountshare_testkit::tempfile::Builder::new()
        .prefix("mountshare-sidecar-")
        .tempdir_in(std::env::temp_dir())
        .unwrap()
}

fn own_name() -> String {
    std::env::current_exe()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// What this namespace sees at DIR: nothing, as the second container of a pod.
fn assert_invisible_here(dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
    assert!(
        entries.is_empty(),
        "the FUSE mount made in another mount namespace must not be visible here"
    );
}

fn served_from_another_namespace_and_followed_across_a_restart() {
    let base = scratch();
    let dir = base.path().join("dfs");
    std::fs::create_dir(&dir).unwrap();
    let daemon = Daemon::start(&dir, 1);
    assert_invisible_here(&dir);

    let mut serve = Serve::start(&[], &dir, &own_name(), base.path().join("serve.log"));
    serve.wait_listening();
    let t = serve.target();
    let version = libnfs::cat(&t.url("version.txt")).expect("nfs-cat version.txt");
    assert_eq!(
        String::from_utf8_lossy(&version),
        "generation 1\n",
        "the file read over NFS is the one in the FUSE daemon's namespace"
    );
    let episode = libnfs::cat(&t.url("torrents/episode.mkv")).expect("nfs-cat episode.mkv");
    let want: Vec<u8> = (0..EPISODE_LEN).map(episode_byte).collect();
    assert!(
        episode == want,
        "episode.mkv read over NFS differs ({} bytes)",
        episode.len()
    );
    let listing = libnfs::ls_recursive(&t.url("")).expect("nfs-ls -R");
    let mut names: Vec<String> = listing
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["torrents", "torrents/episode.mkv", "version.txt"],
        "nfs-ls -R lists the FUSE tree"
    );

    // The daemon crashes and its container is restarted: a new process, a new namespace, a new
    // mount. mountshare keeps its port and serves the new mount.
    daemon.kill();
    let _daemon = Daemon::start(&dir, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        match libnfs::cat(&t.url("version.txt")) {
            Ok(v) if v == b"generation 2\n" => break,
            Ok(v) => last = String::from_utf8_lossy(&v).into_owned(),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let version = libnfs::cat(&t.url("version.txt")).expect("nfs-cat after the restart");
    assert_eq!(
        String::from_utf8_lossy(&version),
        "generation 2\n",
        "after the daemon restarted, the new mount is served (last answer: {last})\n{}",
        serve.log()
    );
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "mountshare kept running across the daemon's restart"
    );
}

fn needs_cap_sys_ptrace_and_nothing_more() {
    let base = scratch();
    let dir = base.path().join("dfs");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = Daemon::start(&dir, 7);

    // Root without any capability: /proc/PID/root of a process holding capabilities is refused.
    let mut bare = Serve::start(
        &["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"],
        &dir,
        &own_name(),
        base.path().join("bare.log"),
    );
    let status = bare
        .child
        .wait()
        .expect("wait for serve without capabilities");
    let log = bare.log();
    assert!(
        !status.success(),
        "serve without CAP_SYS_PTRACE must fail, not serve an empty tree:\n{log}"
    );
    assert!(
        log.contains("CAP_SYS_PTRACE"),
        "the error names the missing capability:\n{log}"
    );

    // Root with only CAP_SYS_PTRACE: enough to open the tree and serve it.
    let mut ptrace = Serve::start(
        &[
            "setpriv",
            "--bounding-set=-all,+sys_ptrace",
            "--inh-caps=-all",
            "--",
        ],
        &dir,
        &own_name(),
        base.path().join("ptrace.log"),
    );
    ptrace.wait_listening();
    let version = libnfs::cat(&ptrace.target().url("version.txt"))
        .unwrap_or_else(|e| panic!("nfs-cat with only CAP_SYS_PTRACE: {e}\n{}", ptrace.log()));
    assert_eq!(String::from_utf8_lossy(&version), "generation 7\n");
}

/// The colocated variant: `serve DIR --run -- DAEMON` in one mount namespace. The daemon's mount
/// is served once it appears; SIGTERM reaches the daemon; mountshare exits with its status.
fn run_serves_the_childs_mount_and_exits_with_its_status() {
    let base = scratch();
    let dir = base.path().join("dfs");
    std::fs::create_dir(&dir).unwrap();
    let port = free_port();
    let exe = std::env::current_exe().unwrap();
    let log = base.path().join("run.log");
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", BIN, "serve"])
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--run", "--"])
        .arg(&exe)
        .arg("fuse-daemon")
        .arg(&dir)
        .arg("3")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start serve --run under unshare");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    if let Err(e) = wait_for_port((Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(30)) {
        let _ = child.kill();
        panic!("serve --run never listened: {e}\n{}", read_log());
    }
    let t = NfsTarget::local(port, port, "/");
    let version = libnfs::cat(&t.url("version.txt")).expect("nfs-cat version.txt");
    assert_eq!(String::from_utf8_lossy(&version), "generation 3\n");

    // Keep the daemon's stdin open (its EOF would end it too): only the signal may end it.
    let _stdin = child.stdin.take();
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::Term).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "the child got SIGTERM and mountshare exits with its status\n{}",
        read_log()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fuse-daemon") {
        fuse_daemon(&args[2], &args[3]);
        return;
    }
    // `cargo test -- --list` and filters: the two scenarios are named here.
    let tests: [(&str, fn()); 3] = [
        (
            "run_serves_the_childs_mount_and_exits_with_its_status",
            run_serves_the_childs_mount_and_exits_with_its_status,
        ),
        (
            "served_from_another_namespace_and_followed_across_a_restart",
            served_from_another_namespace_and_followed_across_a_restart,
        ),
        (
            "needs_cap_sys_ptrace_and_nothing_more",
            needs_cap_sys_ptrace_and_nothing_more,
        ),
    ];
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-'));
    let mut ran = 0;
    for (name, test) in tests {
        if filter.is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        eprintln!("test {name} ...");
        test();
        eprintln!("test {name} ... ok");
        ran += 1;
    }
    // A failing test panics above; reaching here means all that ran passed.
    eprintln!("sidecar_fuse: {ran} passed, 0 failed");
}
