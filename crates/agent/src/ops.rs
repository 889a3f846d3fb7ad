//! The seam between the reconcile logic and the kernel: every mount, unmount, probe, lookup and
//! connection goes through [`MountOps`], so the logic is tested against a recording fake and the
//! real kernel is exercised separately.

use mountshare_mounts::options::MountSpec;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Where a new mount goes relative to what is already mounted at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On top of the target: what was there becomes hidden beneath it.
    Top,
    /// Beneath the current top mount (`MOVE_MOUNT_BENEATH`, Linux 6.5), so that detaching the top
    /// one afterwards uncovers the new one with no moment where neither is visible.
    Beneath,
}

/// A failed operation, with the error the kernel (or resolver) gave.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OpsError {
    #[error("{op} did not return within {after:?}; left it running in the background")]
    TimedOut { op: &'static str, after: Duration },
    #[error("{op} skipped: an earlier {op} is still stuck in the kernel")]
    Busy { op: &'static str },
    #[error("{op}: {message}")]
    Failed { op: &'static str, message: String },
    /// `MOVE_MOUNT_BENEATH` is not available (Linux < 6.5); the caller may mount on top instead.
    #[error("mounting beneath is not supported by this kernel ({message})")]
    BeneathUnsupported { message: String },
}

/// The outcome of checking that the mount answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeResult {
    /// stat, readdir and a lookup all answered in `elapsed`.
    Ok { elapsed: Duration },
    /// One of them failed (EIO, ESTALE, ...).
    Failed { elapsed: Duration, error: String },
    /// No answer within the deadline; the probing thread was abandoned.
    TimedOut { deadline: Duration },
    /// The previous probe of this mount is still stuck, so no new one was started.
    StillStuck,
}

impl ProbeResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, ProbeResult::Ok { .. })
    }

    /// How long the probe took, if it finished.
    pub fn elapsed(&self) -> Option<Duration> {
        match self {
            ProbeResult::Ok { elapsed } | ProbeResult::Failed { elapsed, .. } => Some(*elapsed),
            ProbeResult::TimedOut { deadline } => Some(*deadline),
            ProbeResult::StillStuck => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ProbeResult::Ok { elapsed } => format!("answered in {elapsed:?}"),
            ProbeResult::Failed { error, .. } => format!("probe failed: {error}"),
            ProbeResult::TimedOut { deadline } => format!("no answer within {deadline:?}"),
            ProbeResult::StillStuck => "the previous probe is still stuck".to_owned(),
        }
    }
}

/// Everything the agent does to the outside world. Implementations must return within bounded
/// time: a call that can block on a dead server runs under a deadline.
pub trait MountOps {
    /// The raw text of `/proc/self/mountinfo`.
    fn mountinfo(&self) -> Result<Vec<u8>, OpsError>;
    /// Resolve the server name; IPv4 addresses first.
    fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OpsError>;
    /// Open (and close) a TCP connection to the server, to tell "unreachable" from "stale".
    fn connect(&self, addr: SocketAddr, timeout: Duration) -> Result<(), OpsError>;
    /// stat + readdir + a lookup of an absent name at `target` under `deadline`. `mount_id`
    /// identifies the mount being probed, so that a probe stuck on a mount that was since replaced
    /// does not block probes of the new one.
    fn probe(&self, target: &Path, mount_id: u64, deadline: Duration) -> ProbeResult;
    /// Mount the NFS export described by `spec` at `target`.
    fn mount_nfs(
        &self,
        spec: &MountSpec,
        target: &Path,
        placement: Placement,
    ) -> Result<(), OpsError>;
    /// Lazily detach the top mount at `target` (`umount2(MNT_DETACH)`).
    fn umount_lazy(&self, target: &Path) -> Result<(), OpsError>;
    /// Make the bare target directory unreadable to non-root (mode 000), so that a consumer
    /// listing it before any mount gets an error instead of an empty listing. Returns whether the
    /// mode was changed.
    fn protect_bare_dir(&self, target: &Path) -> Result<bool, OpsError>;
}
