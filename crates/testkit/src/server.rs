//! The `mountshare serve` process under test: start it, wait for its port, `kill -9` it, restart it.
//!
//! The binary's path comes from the caller; integration tests of the `mountshare` crate pass
//! `env!("CARGO_BIN_EXE_mountshare")`. The server's output goes to a log file that is printed when
//! the test panics.

use crate::error::{Error, IoContext, Result};
use crate::host::read_log;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// `n` distinct TCP ports on 127.0.0.1 that were free a moment ago (held together while chosen,
/// so they differ from each other).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .expect("bind an ephemeral port on 127.0.0.1")
        })
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

/// Waits until `addr` accepts a TCP connection.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "nothing accepts connections on {addr}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `mountshare serve DIR --listen ADDR` (plus extra arguments). Killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    bin: PathBuf,
    dir: PathBuf,
    listen: SocketAddr,
    extra_args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
    _logdir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the server and waits until its port accepts connections.
    pub fn start(
        bin: impl AsRef<Path>,
        dir: impl AsRef<Path>,
        listen: SocketAddr,
        extra_args: &[&str],
    ) -> Result<Self> {
        let bin = bin.as_ref().to_path_buf();
        if !bin.is_file() {
            return Err(Error::NotFound(bin));
        }
        let logdir = tempfile::Builder::new()
            .prefix("mountshare-server-log-")
            .tempdir()
            .ctx(|| "create a temporary directory".to_string())?;
        let mut server = Self {
            bin,
            dir: dir.as_ref().to_path_buf(),
            listen,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            log: logdir.path().join("server.log"),
            starts: 0,
            _logdir: logdir,
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts a server on a free port of 127.0.0.1.
    pub fn start_local(
        bin: impl AsRef<Path>,
        dir: impl AsRef<Path>,
        extra_args: &[&str],
    ) -> Result<Self> {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        Self::start(bin, dir, listen, extra_args)
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .ctx(|| format!("open {}", self.log.display()))?;
            let err = log.try_clone().ctx(|| "dup the log".to_string())?;
            let mut child = Command::new(&self.bin)
                .arg("serve")
                .arg(&self.dir)
                .arg("--listen")
                .arg(self.listen.to_string())
                .args(&self.extra_args)
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .ctx(|| format!("start {}", self.bin.display()))?;
            let connect_to = if self.listen.ip().is_unspecified() {
                SocketAddr::from((Ipv4Addr::LOCALHOST, self.listen.port()))
            } else {
                self.listen
            };
            loop {
                if let Some(status) = child.try_wait().ctx(|| "wait for the server".to_string())? {
                    // The port may still be held by the previous instance for a moment after
                    // kill -9; retry until the deadline, then report the server's own words.
                    if Instant::now() >= deadline {
                        return Err(Error::Process(format!(
                            "mountshare serve exited with {status} before accepting connections on {}; log:\n{}",
                            self.listen,
                            self.log()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    break;
                }
                if TcpStream::connect_timeout(&connect_to, Duration::from_millis(500)).is_ok() {
                    self.child = Some(child);
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Timeout(format!(
                        "mountshare serve did not accept connections on {} within 30 s; log:\n{}",
                        self.listen,
                        self.log()
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listen.port()
    }

    /// The process id of the running instance.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().ctx(|| "kill -9 the server".to_string())?;
            child.wait().ctx(|| "reap the server".to_string())?;
        }
        Ok(())
    }

    /// Starts the server again with the same directory, address and arguments.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9()?;
        self.spawn()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| Error::Process("the server is not running".into()))?;
        let pid = rustix::process::Pid::from_raw(child.id() as i32)
            .ok_or_else(|| Error::Process("bad pid".into()))?;
        rustix::process::kill_process(pid, rustix::process::Signal::Term).map_err(|e| {
            Error::Io {
                context: "SIGTERM the server".into(),
                source: e.into(),
            }
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().ctx(|| "wait for the server".to_string())? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout(
                    "the server did not exit after SIGTERM".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many times the server was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Everything the server printed so far (all instances).
    pub fn log(&self) -> String {
        read_log(&self.log)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let start = lines.len().saturating_sub(60);
            eprintln!(
                "--- last lines of the mountshare server log ({}) ---\n{}",
                self.listen,
                lines[start..].join("\n")
            );
        }
    }
}
