//! [`RcloneMount`]: `rclone mount` of an HTTP origin (such as [`crate::origin::Origin`]), a real
//! FUSE file system like the ones debrid users run: read-only, `allow_other`, no VFS cache, the
//! kernel's default `max_background`. Unmounted on drop.
//!
//! Needs Debian's `rclone` (1.60) and `fuse3` (`fusermount3`); [`rclone_available`] tells.

use crate::error::{Error, IoContext, Result};
use crate::hangfs::{mount_type_at, unmount_lazy};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The rclone binary: `MOUNTSHARE_RCLONE` or `rclone` from `PATH`.
pub fn rclone_binary() -> PathBuf {
    std::env::var_os("MOUNTSHARE_RCLONE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("rclone"))
}

/// Whether rclone runs here (`rclone version`).
pub fn rclone_available() -> bool {
    Command::new(rclone_binary())
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running `rclone mount :http: DIR --http-url URL ...`.
#[derive(Debug)]
pub struct RcloneMount {
    mountpoint: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RcloneMount {
    /// Mount `url` (e.g. `http://127.0.0.1:PORT/`) at `mountpoint`, an existing empty directory,
    /// with `--read-only --allow-other --vfs-cache-mode off` plus `extra_args` (later flags win,
    /// e.g. `--vfs-read-chunk-size 1M`), and wait until the mount is there.
    pub fn start(url: &str, mountpoint: impl AsRef<Path>, extra_args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("mountshare-rclone-")
            .tempdir()
            .ctx(|| "create a temporary directory".into())?;
        let mountpoint = fs::canonicalize(mountpoint.as_ref())
            .ctx(|| format!("find {}", mountpoint.as_ref().display()))?;
        let config = dir.path().join("rclone.conf");
        fs::write(&config, "").ctx(|| format!("write {}", config.display()))?;
        let log = dir.path().join("rclone.log");
        let child = Command::new(rclone_binary())
            .arg("mount")
            .arg(":http:")
            .arg(&mountpoint)
            .args(["--http-url", url])
            .args(["--read-only", "--allow-other", "--vfs-cache-mode", "off"])
            .arg("--config")
            .arg(&config)
            .arg("--log-file")
            .arg(&log)
            .args(["--log-level", "INFO"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::Missing("rclone (Debian package rclone)".into())
                } else {
                    Error::Io {
                        context: "start rclone".into(),
                        source: e,
                    }
                }
            })?;
        let mut mount = RcloneMount {
            mountpoint,
            child: Some(child),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if mount_type_at(&mount.mountpoint).as_deref() == Some("fuse.rclone") {
                return Ok(mount);
            }
            let exited = mount
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                let log = mount.log();
                mount.unmount();
                return Err(Error::Process(format!(
                    "rclone did not mount {url} at {} (exit status {exited:?}); log:\n{log}",
                    mount.mountpoint.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// rclone's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `fusermount3 -u`, then wait for rclone to exit (killing it after 10 s) and detach the
    /// mount if it is still there.
    pub fn unmount(&mut self) {
        if mount_type_at(&self.mountpoint).as_deref() == Some("fuse.rclone") {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.mountpoint)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for _ in 0..4 {
            if mount_type_at(&self.mountpoint).as_deref() != Some("fuse.rclone") {
                break;
            }
            if unmount_lazy(&self.mountpoint).is_err() {
                break;
            }
        }
    }
}

impl Drop for RcloneMount {
    fn drop(&mut self) {
        self.unmount();
        if std::thread::panicking() {
            eprintln!("--- rclone log ---\n{}", self.log());
        }
    }
}
