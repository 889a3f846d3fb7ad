//! nfs-ganesha as a reference server: a read-only NFSv3 VFS export of a directory on 127.0.0.1.
//!
//! Ganesha registers with rpcbind, which [`Ganesha::start`] starts when nothing listens on
//! 127.0.0.1:111 (and stops again afterwards). Only one ganesha runs at a time on a machine (they
//! would fight over the rpcbind registrations), so starting one waits for any other started by this
//! kit, in this or another process, to stop. The exported directory must be on a file system
//! that supports `name_to_handle_at(2)` (ext4, xfs and btrfs do; older tmpfs does not).

use crate::error::{Error, IoContext, Result};
use crate::host::{installed, read_log};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static IN_PROCESS: Mutex<()> = Mutex::new(());
const LOCK_FILE: &str = "/tmp/mountshare-testkit-ganesha.lock";

/// The configuration [`Ganesha::start`] writes: NFSv3 only over TCP, on 127.0.0.1, one read-only
/// VFS export of `export` with no squashing, NLM and RQUOTA off, no grace period.
pub fn config(export: &Path, nfs_port: u16, mount_port: u16, state_dir: &Path) -> String {
    format!(
        r#"NFS_CORE_PARAM {{
    Bind_addr = 127.0.0.1;
    NFS_Port = {nfs_port};
    MNT_Port = {mount_port};
    Protocols = 3;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    mount_path_pseudo = false;
}}
NFSV4 {{
    Graceless = true;
    RecoveryBackend = fs;
    RecoveryRoot = "{state}/recovery";
}}
NFS_KRB5 {{
    Active_krb5 = false;
}}
LOG {{
    Default_Log_Level = EVENT;
}}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = "{export}";
    Protocols = 3;
    Transports = TCP;
    Access_Type = RO;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL {{
        Name = VFS;
    }}
}}
"#,
        export = export.display(),
        state = state_dir.display(),
    )
}

/// A running ganesha. Stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Ganesha {
    child: Option<Child>,
    rpcbind: Option<Child>,
    export: PathBuf,
    nfs_port: u16,
    mount_port: u16,
    log: PathBuf,
    _state: tempfile::TempDir,
    _lock: fs::File,
    _guard: MutexGuard<'static, ()>,
}

impl Ganesha {
    /// Exports `export` (made absolute) read-only on 127.0.0.1 with NFS on `nfs_port` and MOUNT on
    /// `mount_port`, which must differ. Returns once the export answers.
    pub fn start(export: &Path, nfs_port: u16, mount_port: u16) -> Result<Ganesha> {
        if nfs_port == mount_port {
            return Err(Error::Process(
                "ganesha needs distinct NFS and MOUNT ports".into(),
            ));
        }
        let binary = installed(
            &["/usr/bin/ganesha.nfsd", "/usr/sbin/ganesha.nfsd"],
            "ganesha.nfsd is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs)",
        )?;
        let export = fs::canonicalize(export).ctx(|| format!("resolve {}", export.display()))?;
        let guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .ctx(|| format!("open {LOCK_FILE}"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            Error::Io {
                context: format!("lock {LOCK_FILE}"),
                source: e.into(),
            }
        })?;
        let rpcbind = ensure_rpcbind()?;
        let state = tempfile::Builder::new()
            .prefix("mountshare-ganesha-")
            .tempdir()
            .ctx(|| "create a temporary directory".to_string())?;
        fs::create_dir_all(state.path().join("recovery"))
            .ctx(|| "create the recovery dir".to_string())?;
        let conf = state.path().join("ganesha.conf");
        fs::write(&conf, config(&export, nfs_port, mount_port, state.path()))
            .ctx(|| format!("write {}", conf.display()))?;
        let log = state.path().join("ganesha.log");
        let child = Command::new(&binary)
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(&log)
            .arg("-p")
            .arg(state.path().join("ganesha.pid"))
            .args(["-N", "NIV_EVENT"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ctx(|| format!("start {}", binary.display()))?;
        let mut ganesha = Ganesha {
            child: Some(child),
            rpcbind,
            export,
            nfs_port,
            mount_port,
            log,
            _state: state,
            _lock: lock,
            _guard: guard,
        };
        ganesha.wait_ready(Duration::from_secs(60))?;
        Ok(ganesha)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let nfs = SocketAddr::from((Ipv4Addr::LOCALHOST, self.nfs_port));
        let mnt = SocketAddr::from((Ipv4Addr::LOCALHOST, self.mount_port));
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(status) = child.try_wait().ctx(|| "wait for ganesha".to_string())? {
                return Err(Error::Process(format!(
                    "ganesha exited with {status} while starting; log:\n{}",
                    self.log_tail(40)
                )));
            }
            let initialized = self.log().contains("NFS SERVER INITIALIZED");
            if initialized
                && TcpStream::connect_timeout(&nfs, Duration::from_millis(500)).is_ok()
                && TcpStream::connect_timeout(&mnt, Duration::from_millis(500)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "ganesha did not start serving within {timeout:?}; log:\n{}",
                    self.log_tail(40)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exported directory (absolute); NFSv3 clients mount it by this path.
    pub fn export(&self) -> &Path {
        &self.export
    }

    /// The NFS port.
    pub fn nfs_port(&self) -> u16 {
        self.nfs_port
    }

    /// The MOUNT port.
    pub fn mount_port(&self) -> u16 {
        self.mount_port
    }

    /// Ganesha's log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Stops ganesha: SIGTERM, then SIGKILL after 15 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(15));
        }
        if let Some(rpcbind) = self.rpcbind.take() {
            terminate(rpcbind, Duration::from_secs(5));
        }
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of the ganesha log ---\n{}",
                self.log_tail(40)
            );
        }
        self.stop();
    }
}

fn terminate(mut child: Child, grace: Duration) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::Term);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Starts rpcbind in the foreground when nothing answers on 127.0.0.1:111; returns that child so
/// it can be stopped, or `None` when one was already running.
fn ensure_rpcbind() -> Result<Option<Child>> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 111));
    if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
        return Ok(None);
    }
    let binary = installed(
        &["/usr/sbin/rpcbind", "/sbin/rpcbind", "/usr/bin/rpcbind"],
        "rpcbind is not installed (apt-get install rpcbind)",
    )?;
    let mut child = Command::new(&binary)
        .args(["-f", "-w"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ctx(|| format!("start {}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(Some(child));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Process(format!("rpcbind exited with {status}")));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout(
                "rpcbind did not listen on 127.0.0.1:111".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
