//! The real [`MountOps`]: Linux system calls, each bounded by a deadline.
//!
//! Mounting on top uses `mount(2)` with the legacy data string. Mounting beneath uses the new
//! mount API: `fsopen("nfs")`, one `fsconfig` per option, `fsmount`, then
//! `move_mount(MOVE_MOUNT_BENEATH)` (Linux 6.5), which slides the fresh mount under the dead top
//! one; `umount2(target, MNT_DETACH)` then uncovers it. The obvious alternative, mounting on top
//! and detaching the old mount through a descriptor (`umount2("/proc/self/fd/N")`), does not work:
//! resolving that magic link crosses into the mount on top, and the top one is detached instead
//! (tested in tests/kernel.rs).

use crate::ops::{MountOps, OpsError, Placement, ProbeResult};
use mountshare_mounts::options::{MountFlags, MountSpec};
use mountshare_mounts::watchdog::{Deadlined, Lane};
use rustix::fd::AsFd;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags as MsFlags, MoveMountFlags, UnmountFlags,
};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bounds on the real operations.
#[derive(Debug, Clone)]
pub struct RealLimits {
    /// How long a mount(2) may take before the agent stops waiting (the kernel keeps trying).
    pub mount_timeout: Duration,
    /// How long name resolution may take.
    pub resolve_timeout: Duration,
    /// At most this many probe threads may be stuck at once (on mounts since replaced).
    pub max_stuck_probes: usize,
}

impl Default for RealLimits {
    fn default() -> Self {
        Self {
            mount_timeout: Duration::from_secs(90),
            resolve_timeout: Duration::from_secs(10),
            max_stuck_probes: 4,
        }
    }
}

/// [`MountOps`] on the running kernel.
#[derive(Debug)]
pub struct RealMountOps {
    limits: RealLimits,
    probes: Lane,
    mounts: Lane,
    umounts: Lane,
    resolves: Lane,
    /// The mount id of the last probe and whether that probe has returned.
    last_probe: Mutex<Option<(u64, Arc<AtomicBool>)>>,
    nonce: AtomicU64,
}

impl RealMountOps {
    pub fn new(limits: RealLimits) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            probes: Lane::new("probe", limits.max_stuck_probes),
            mounts: Lane::new("mount", 1),
            umounts: Lane::new("umount", 1),
            resolves: Lane::new("resolve", 2),
            limits,
            last_probe: Mutex::new(None),
            nonce: AtomicU64::new(seed ^ u64::from(std::process::id())),
        }
    }
}

fn failed(op: &'static str, e: impl std::fmt::Display) -> OpsError {
    OpsError::Failed {
        op,
        message: e.to_string(),
    }
}

fn deadlined<T>(
    op: &'static str,
    after: Duration,
    r: Deadlined<Result<T, OpsError>>,
) -> Result<T, OpsError> {
    match r {
        Deadlined::Done(r) => r,
        Deadlined::TimedOut => Err(OpsError::TimedOut { op, after }),
        Deadlined::Busy => Err(OpsError::Busy { op }),
    }
}

fn ms_flags(f: MountFlags) -> MsFlags {
    kernel_flags(f).0
}

fn attr_flags(f: MountFlags) -> MountAttrFlags {
    kernel_flags(f).1
}

/// `f` in both kernel APIs' terms: the `mount(2)` flags and the new API's mount attributes.
/// One row per flag, so the two can never disagree.
fn kernel_flags(f: MountFlags) -> (MsFlags, MountAttrFlags) {
    let mut ms = MsFlags::empty();
    let mut attr = MountAttrFlags::empty();
    for (on, m, a) in [
        (
            f.read_only,
            MsFlags::RDONLY,
            MountAttrFlags::MOUNT_ATTR_RDONLY,
        ),
        (f.nosuid, MsFlags::NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (f.nodev, MsFlags::NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (f.noexec, MsFlags::NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
    ] {
        ms.set(m, on);
        attr.set(a, on);
    }
    (ms, attr)
}

/// Mount a file system at `target` with `mount(2)`; options are joined into the data string.
pub fn mount_on_top(
    fstype: &str,
    source: &str,
    options: &[String],
    flags: MountFlags,
    target: &Path,
) -> Result<(), OpsError> {
    rustix::mount::mount(
        source,
        target,
        fstype,
        ms_flags(flags),
        options.join(",").as_str(),
    )
    .map_err(|e| {
        failed(
            "mount",
            format!("mount {source} on {}: {e}", target.display()),
        )
    })
}

/// Create a file system with the new mount API and attach it beneath the top mount at `target`.
/// `options` are `key` flags or `key=value` strings, set one `fsconfig` call each.
pub fn mount_beneath(
    fstype: &str,
    source: &str,
    options: &[String],
    flags: MountFlags,
    target: &Path,
) -> Result<(), OpsError> {
    let unsupported = |e: rustix::io::Errno| OpsError::BeneathUnsupported {
        message: e.to_string(),
    };
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
        if e == rustix::io::Errno::NOSYS {
            unsupported(e)
        } else {
            failed("fsopen", format!("{fstype}: {e}"))
        }
    })?;
    rustix::mount::fsconfig_set_string(fs.as_fd(), "source", source)
        .map_err(|e| failed("fsconfig", format!("source={source}: {e}")))?;
    for opt in options {
        let r = match opt.split_once('=') {
            Some((k, v)) => rustix::mount::fsconfig_set_string(fs.as_fd(), k, v),
            None => rustix::mount::fsconfig_set_flag(fs.as_fd(), opt.as_str()),
        };
        r.map_err(|e| failed("fsconfig", format!("{opt}: {e}")))?;
    }
    rustix::mount::fsconfig_create(fs.as_fd())
        .map_err(|e| failed("mount", format!("{source}: {e}")))?;
    let mnt = rustix::mount::fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attr_flags(flags))
        .map_err(|e| failed("fsmount", format!("{source}: {e}")))?;
    rustix::mount::move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_BENEATH,
    )
    .map_err(|e| {
        // Before 6.5 the unknown flag is EINVAL. The detached mount is freed when `mnt` closes.
        if e == rustix::io::Errno::INVAL {
            unsupported(e)
        } else {
            failed("move_mount", format!("beneath {}: {e}", target.display()))
        }
    })
}

/// Lazily detach the top mount at `target`.
pub fn detach_top(target: &Path) -> Result<(), OpsError> {
    // UMOUNT_NOFOLLOW: the target is ours; never follow a symlink planted there.
    rustix::mount::unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
        .map_err(|e| failed("umount", format!("{}: {e}", target.display())))
}

/// stat, read one directory entry, and look up a name that cannot be cached (the NFS client
/// answers stat and readdir from its caches for up to a minute; a LOOKUP of a fresh name always
/// reaches the server).
fn probe_path(target: &Path, absent_name: &str) -> Result<(), String> {
    let md = std::fs::metadata(target).map_err(|e| format!("stat {}: {e}", target.display()))?;
    if !md.is_dir() {
        return Err(format!("{} is not a directory", target.display()));
    }
    let mut entries = std::fs::read_dir(target).map_err(|e| format!("opendir: {e}"))?;
    if let Some(Err(e)) = entries.next() {
        return Err(format!("readdir: {e}"));
    }
    match std::fs::symlink_metadata(target.join(absent_name)) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("lookup: {e}")),
    }
}

impl MountOps for RealMountOps {
    fn mountinfo(&self) -> Result<Vec<u8>, OpsError> {
        std::fs::read("/proc/self/mountinfo").map_err(|e| failed("read /proc/self/mountinfo", e))
    }

    fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OpsError> {
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let name = host.to_owned();
        let after = self.limits.resolve_timeout;
        let r = self.resolves.run(after, move || {
            let mut addrs: Vec<SocketAddr> = (name.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| failed("resolve", format!("{name}: {e}")))?
                .collect();
            addrs.sort_by_key(|a| a.is_ipv6()); // stable: IPv4 first, resolver order kept
            addrs.dedup();
            if addrs.is_empty() {
                return Err(failed("resolve", format!("{name}: no addresses")));
            }
            Ok(addrs)
        });
        deadlined("resolve", after, r)
    }

    fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<(), OpsError> {
        TcpStream::connect_timeout(&addr, timeout)
            .map(drop)
            .map_err(|e| failed("connect", format!("{addr}: {e}")))
    }

    fn probe(&self, target: &Path, mount_id: u64, deadline: Duration) -> ProbeResult {
        let done = Arc::new(AtomicBool::new(false));
        {
            let mut last = self.last_probe.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((id, prev)) = last.as_ref() {
                if *id == mount_id && !prev.load(Ordering::Acquire) {
                    return ProbeResult::StillStuck;
                }
            }
            *last = Some((mount_id, done.clone()));
        }
        let n = self
            .nonce
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        let name = format!(".mountshare-probe-{n:016x}");
        let path: PathBuf = target.to_owned();
        let started = Instant::now();
        let r = self.probes.run(deadline, move || {
            let r = probe_path(&path, &name);
            done.store(true, Ordering::Release);
            r
        });
        match r {
            Deadlined::Done(Ok(())) => ProbeResult::Ok {
                elapsed: started.elapsed(),
            },
            Deadlined::Done(Err(error)) => ProbeResult::Failed {
                elapsed: started.elapsed(),
                error,
            },
            Deadlined::TimedOut => ProbeResult::TimedOut { deadline },
            Deadlined::Busy => ProbeResult::StillStuck,
        }
    }

    fn mount_nfs(
        &self,
        spec: &MountSpec,
        target: &Path,
        placement: Placement,
    ) -> Result<(), OpsError> {
        let spec = spec.clone();
        let target = target.to_owned();
        let after = self.limits.mount_timeout;
        let r = self.mounts.run(after, move || match placement {
            Placement::Top => mount_on_top("nfs", &spec.source, &spec.options, spec.flags, &target),
            Placement::Beneath => {
                mount_beneath("nfs", &spec.source, &spec.options, spec.flags, &target)
            }
        });
        deadlined("mount", after, r)
    }

    fn umount_lazy(&self, target: &Path) -> Result<(), OpsError> {
        let target = target.to_owned();
        let after = Duration::from_secs(10);
        deadlined(
            "umount",
            after,
            self.umounts.run(after, move || detach_top(&target)),
        )
    }

    fn protect_bare_dir(&self, target: &Path) -> Result<bool, OpsError> {
        let md = std::fs::metadata(target)
            .map_err(|e| failed("stat", format!("{}: {e}", target.display())))?;
        if md.permissions().mode() & 0o7777 == 0 {
            return Ok(false);
        }
        std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o000))
            .map_err(|e| failed("chmod", format!("{}: {e}", target.display())))?;
        Ok(true)
    }
}
