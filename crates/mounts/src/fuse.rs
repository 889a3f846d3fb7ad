//! FUSE connection tuning, the one module of this crate that changes the system: find the
//! kernel's FUSE connection behind an exported directory (statx, `/proc/self/mountinfo` read
//! through [`crate::mountinfo`]) and raise its `max_background` and `congestion_threshold` in
//! sysfs (mounting `fusectl` first if needed), so that reads the FUSE daemon never answers
//! cannot take every request slot of the mount.
//!
//! # Why
//!
//! The kernel sends page-cache reads of a FUSE file (readahead, which is how every buffered read
//! reaches the daemon) as *background* requests, and lets at most `max_background` of them be
//! outstanding per connection. The kernel's default is 12 (`FUSE_DEFAULT_MAX_BACKGROUND`), and
//! rclone and go-fuse keep it. A read the daemon never answers (a dead debrid link) keeps its slot;
//! once 12 are stuck, every further read of *any* file on that mount waits in the kernel for a
//! slot, even a read done locally with no NFS involved. Raising the limit lets healthy reads
//! through while the stuck ones wait.
//!
//! # How
//!
//! 1. The directory's mount is found without sending anything to the FUSE daemon (which may be
//!    the thing that is stuck): `statx(AT_STATX_DONT_SYNC)` with no attribute mask gives the
//!    mount id and the device number from the kernel's own records, and `/proc/self/mountinfo`
//!    gives that mount's file-system type ([`MountEntry::is_fuse`]). Only when
//!    mountinfo cannot be read does it fall back to `fstatfs(2)`, which the daemon must answer.
//! 2. The connection is `/sys/fs/fuse/connections/DEV`, DEV being the superblock's device number
//!    in the kernel's encoding (`major << 20 | minor`; plain FUSE mounts have major 0, so it is
//!    the minor). That directory is the `fusectl` file system; when it is not mounted there, it is
//!    mounted first (needs `CAP_SYS_ADMIN`).
//! 3. Each limit is raised to the requested value if it is lower; a limit is never lowered.
//!
//! [`tune`] does all of it and returns a [`FuseTuneOutcome`] for the caller to log once.
use crate::mountinfo::{MountEntry, MountTable};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// `statfs(2)` `f_type` of a FUSE file system (also `fuseblk`).
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
/// `statfs(2)` `f_type` of the FUSE control file system mounted at [`CONNECTIONS_DIR`].
pub const FUSECTL_SUPER_MAGIC: i64 = 0x6573_5543;
/// Where the kernel lists FUSE connections, once `fusectl` is mounted there.
pub const CONNECTIONS_DIR: &str = "/sys/fs/fuse/connections";

/// The kernel's own `max_background` for a connection whose daemon asks for none
/// (`FUSE_DEFAULT_MAX_BACKGROUND`); rclone and go-fuse keep it.
pub const KERNEL_DEFAULT_MAX_BACKGROUND: u32 = 12;
/// The kernel's default `congestion_threshold`: 3/4 of its default `max_background`.
pub const KERNEL_DEFAULT_CONGESTION_THRESHOLD: u32 = 9;
/// The largest value the kernel accepts for either limit (they are 16-bit on the wire). Only
/// `CAP_SYS_ADMIN` may go above `fs.fuse.max_user_bgreq` / `max_user_congthresh`.
pub const KERNEL_MAX_LIMIT: u32 = 65_535;

/// The `max_background` we ask for by default, with [`FuseLimits::for_max_background`] deriving
/// `congestion_threshold` from it.
///
/// Why 256:
/// - It must stay well above the number of reads that can be stuck in the daemon at once on
///   behalf of our server, so that healthy reads always find a free slot: the server's cap on
///   stuck backend calls must stay well below it (at most half). One stuck `pread` of a 1 MiB NFS
///   READ holds only as many background requests as the readahead window needs (one per
///   `max_pages` of it): measured, one for the 128 KiB window of hangfs, rclone and go-fuse.
/// - The cost of a higher limit is only what is actually outstanding: each pending request pins
///   at most `max_pages` pages (128 KiB to 1 MiB), so 256 stuck requests pin 32 to 256 MiB in the
///   worst case, and the daemon sees up to 256 concurrent reads, which rclone and go-fuse serve
///   with a goroutine each.
/// - The kernel accepts up to [`KERNEL_MAX_LIMIT`] from `CAP_SYS_ADMIN`; 256 is also within the
///   non-root `fs.fuse.max_user_bgreq` of any machine with more than a few hundred MiB of memory.
pub const DEFAULT_MAX_BACKGROUND: u32 = 256;

/// The two limits of one FUSE connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuseLimits {
    /// Background (readahead) requests the connection lets be outstanding at once.
    pub max_background: u32,
    /// Outstanding background requests above which the kernel skips optional (asynchronous)
    /// readahead for the connection.
    pub congestion_threshold: u32,
}

impl FuseLimits {
    /// The limits asked for by `--fuse-max-background N`: `N`, and a congestion threshold of 3/4
    /// of it (the ratio the kernel and libfuse use for their own defaults: readahead beyond what a
    /// reader asked for is dropped only once the connection is mostly busy). `None` for 0, which
    /// means "leave the connection alone". Values above [`KERNEL_MAX_LIMIT`] are clamped to it.
    pub fn for_max_background(n: u32) -> Option<FuseLimits> {
        if n == 0 {
            return None;
        }
        let max_background = n.min(KERNEL_MAX_LIMIT);
        Some(FuseLimits {
            max_background,
            congestion_threshold: (max_background * 3 / 4).max(1),
        })
    }

    /// Each limit at least as high as in `target`, never lower than it is now.
    pub fn raised_to(self, target: FuseLimits) -> FuseLimits {
        FuseLimits {
            max_background: self.max_background.max(target.max_background),
            congestion_threshold: self.congestion_threshold.max(target.congestion_threshold),
        }
    }
}

impl fmt::Display for FuseLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_background {}, congestion_threshold {}",
            self.max_background, self.congestion_threshold
        )
    }
}

/// Why a FUSE connection could not be found, read or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FuseConnError {
    /// The directory is on a file system that is not FUSE.
    #[error("not a FUSE file system (it is {fs_type})")]
    NotFuse { fs_type: String },
    /// This process may not do what tuning needs (mount `fusectl`, write the limits).
    #[error("no privilege to {what}: {} (errno {})", std::io::Error::from(*errno), errno.raw_os_error())]
    NoPrivilege {
        what: String,
        errno: rustix::io::Errno,
    },
    /// Something tuning needs is not there (the connections directory, the connection).
    #[error("{0}")]
    NotFound(String),
    /// Any other failure of a system call or of a file's contents.
    #[error("{what}: {detail}")]
    Failed { what: String, detail: String },
}

impl FuseConnError {
    fn from_errno(what: String, errno: rustix::io::Errno) -> Self {
        if errno == rustix::io::Errno::PERM || errno == rustix::io::Errno::ACCESS {
            FuseConnError::NoPrivilege { what, errno }
        } else {
            FuseConnError::Failed {
                what,
                detail: format!(
                    "{} (errno {})",
                    std::io::Error::from(errno),
                    errno.raw_os_error()
                ),
            }
        }
    }

    fn from_io(what: String, err: std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(raw) => Self::from_errno(what, rustix::io::Errno::from_raw_os_error(raw)),
            None => FuseConnError::Failed {
                what,
                detail: err.to_string(),
            },
        }
    }
}

/// What [`tune`] did, to be logged once by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuseTuneOutcome {
    /// Tuning was turned off (`--fuse-max-background 0`).
    Disabled,
    /// The directory is not on FUSE: nothing to tune.
    NotFuse { fs_type: String },
    /// At least one limit was raised.
    Raised {
        connection: PathBuf,
        before: FuseLimits,
        after: FuseLimits,
        mounted_fusectl: bool,
    },
    /// Both limits were already at or above the requested values; nothing was written.
    AlreadyHigh {
        connection: PathBuf,
        limits: FuseLimits,
        mounted_fusectl: bool,
    },
    /// This process may not change the connection (not root, no `CAP_SYS_ADMIN`).
    NoPrivilege { detail: String },
    /// The connection could not be found (no `/sys/fs/fuse/connections`, no entry for it).
    NotFound { detail: String },
    /// Anything else went wrong.
    Failed { detail: String },
}

impl FuseTuneOutcome {
    /// Whether the outcome leaves a FUSE mount at limits lower than asked for: worth a warning.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            FuseTuneOutcome::NoPrivilege { .. }
                | FuseTuneOutcome::NotFound { .. }
                | FuseTuneOutcome::Failed { .. }
        )
    }
}

impl fmt::Display for FuseTuneOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fusectl = |mounted: bool| {
            if mounted {
                format!(" (mounted fusectl at {CONNECTIONS_DIR} first)")
            } else {
                String::new()
            }
        };
        match self {
            FuseTuneOutcome::Disabled => write!(f, "FUSE connection tuning is off"),
            FuseTuneOutcome::NotFuse { fs_type } => {
                write!(f, "not a FUSE mount ({fs_type}): no FUSE tuning")
            }
            FuseTuneOutcome::Raised {
                connection,
                before,
                after,
                mounted_fusectl,
            } => write!(
                f,
                "raised FUSE max_background {} -> {}, congestion_threshold {} -> {} ({}){}",
                before.max_background,
                after.max_background,
                before.congestion_threshold,
                after.congestion_threshold,
                connection.display(),
                fusectl(*mounted_fusectl)
            ),
            FuseTuneOutcome::AlreadyHigh {
                connection,
                limits,
                mounted_fusectl,
            } => write!(
                f,
                "FUSE {limits} already at or above what was asked ({}){}",
                connection.display(),
                fusectl(*mounted_fusectl)
            ),
            FuseTuneOutcome::NoPrivilege { detail } => write!(
                f,
                "cannot tune the FUSE connection, reads may stall behind stuck ones: {detail}"
            ),
            FuseTuneOutcome::NotFound { detail } => write!(
                f,
                "cannot find the FUSE connection, reads may stall behind stuck ones: {detail}"
            ),
            FuseTuneOutcome::Failed { detail } => write!(
                f,
                "cannot tune the FUSE connection, reads may stall behind stuck ones: {detail}"
            ),
        }
    }
}

/// Raise the limits of the FUSE connection behind `dir` (any descriptor of a file or directory on
/// the mount, `O_PATH` is enough) to those of [`FuseLimits::for_max_background`]`(max_background)`.
/// `max_background == 0` leaves everything alone. Never lowers a limit; never fails: the outcome
/// says what happened.
pub fn tune(dir: impl AsFd, max_background: u32) -> FuseTuneOutcome {
    let Some(target) = FuseLimits::for_max_background(max_background) else {
        return FuseTuneOutcome::Disabled;
    };
    let conn = match FuseConnection::find(dir) {
        Ok(conn) => conn,
        Err(e) => return outcome_of_error(e),
    };
    match conn.raise(target) {
        Ok((before, after)) if before == after => FuseTuneOutcome::AlreadyHigh {
            connection: conn.dir,
            limits: after,
            mounted_fusectl: conn.mounted_fusectl,
        },
        Ok((before, after)) => FuseTuneOutcome::Raised {
            connection: conn.dir,
            before,
            after,
            mounted_fusectl: conn.mounted_fusectl,
        },
        Err(e) => outcome_of_error(e),
    }
}

/// [`tune`] of the directory at `path` (opened `O_PATH`, which the FUSE daemon never sees).
pub fn tune_path(path: &Path, max_background: u32) -> FuseTuneOutcome {
    if max_background == 0 {
        return FuseTuneOutcome::Disabled;
    }
    match open_path(path) {
        Ok(fd) => tune(fd, max_background),
        Err(e) => outcome_of_error(e),
    }
}

fn outcome_of_error(e: FuseConnError) -> FuseTuneOutcome {
    match e {
        FuseConnError::NotFuse { fs_type } => FuseTuneOutcome::NotFuse { fs_type },
        e @ FuseConnError::NoPrivilege { .. } => FuseTuneOutcome::NoPrivilege {
            detail: e.to_string(),
        },
        FuseConnError::NotFound(detail) => FuseTuneOutcome::NotFound { detail },
        e @ FuseConnError::Failed { .. } => FuseTuneOutcome::Failed {
            detail: e.to_string(),
        },
    }
}

fn open_path(path: &Path) -> Result<std::os::fd::OwnedFd, FuseConnError> {
    rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| FuseConnError::from_errno(format!("open {}", path.display()), e))
}

/// Whether `file` is on a FUSE mount, found as [`FuseConnection::find`] finds it: from mountinfo,
/// without a request to the daemon (which may hang).
pub fn is_fuse(file: impl AsFd) -> bool {
    mount_of(file.as_fd()).is_ok_and(|m| m.is_fuse())
}

/// One FUSE connection's directory under [`CONNECTIONS_DIR`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuseConnection {
    dir: PathBuf,
    fs_type: String,
    mounted_fusectl: bool,
}

impl FuseConnection {
    /// The connection of the FUSE mount holding `file` (mounting `fusectl` first if needed).
    pub fn find(file: impl AsFd) -> Result<FuseConnection, FuseConnError> {
        let mount = mount_of(file.as_fd())?;
        if !mount.is_fuse() {
            return Err(FuseConnError::NotFuse {
                fs_type: mount.fstype,
            });
        }
        let connections = Path::new(CONNECTIONS_DIR);
        let mounted_fusectl = ensure_fusectl(connections)?;
        let dir = connections.join(connection_name(mount.major, mount.minor));
        if !dir.join("max_background").exists() {
            return Err(FuseConnError::NotFound(format!(
                "{} does not exist (mount {}:{}, {})",
                dir.display(),
                mount.major,
                mount.minor,
                mount.fstype
            )));
        }
        Ok(FuseConnection {
            dir,
            fs_type: mount.fstype,
            mounted_fusectl,
        })
    }

    /// [`FuseConnection::find`] of the file or directory at `path`.
    pub fn find_path(path: &Path) -> Result<FuseConnection, FuseConnError> {
        Self::find(open_path(path)?)
    }

    /// The connection's directory, e.g. `/sys/fs/fuse/connections/45`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mount's file-system type as mountinfo shows it (`fuse.rclone`, `fuseblk`, ...).
    pub fn fs_type(&self) -> &str {
        &self.fs_type
    }

    /// Whether finding it mounted `fusectl` at [`CONNECTIONS_DIR`].
    pub fn mounted_fusectl(&self) -> bool {
        self.mounted_fusectl
    }

    /// The connection's current limits.
    pub fn limits(&self) -> Result<FuseLimits, FuseConnError> {
        Ok(FuseLimits {
            max_background: self.read_value("max_background")?,
            congestion_threshold: self.read_value("congestion_threshold")?,
        })
    }

    /// Requests of this connection waiting for the daemon or being processed by it (the
    /// `waiting` file): a count that stays high while reads are stuck.
    pub fn waiting(&self) -> Result<u32, FuseConnError> {
        self.read_value("waiting")
    }

    /// Raise each limit to `target` where it is lower; returns the limits before and after.
    pub fn raise(&self, target: FuseLimits) -> Result<(FuseLimits, FuseLimits), FuseConnError> {
        let before = self.limits()?;
        let wanted = before.raised_to(target);
        if wanted.congestion_threshold != before.congestion_threshold {
            self.write_value("congestion_threshold", wanted.congestion_threshold)?;
        }
        if wanted.max_background != before.max_background {
            self.write_value("max_background", wanted.max_background)?;
            self.wake_blocked(wanted.max_background);
        }
        Ok((before, self.limits()?))
    }

    /// Wake the readers already blocked waiting for a background slot.
    ///
    /// When the connection was full (a stall in progress), readers sleep in the kernel as
    /// *exclusive* waiters, and a write of `max_background` wakes only one of them; the next one
    /// is woken only when a background request completes, which may be never while the daemon is
    /// stuck. So a raised limit would help new readers but leave those already waiting asleep.
    /// Each further write of the same value wakes one more: write it once per request the
    /// connection has in flight (`waiting`, which counts them all), at most `max_background`
    /// times. Writing the same value changes nothing else, and with no one waiting it is a no-op.
    fn wake_blocked(&self, max_background: u32) {
        let waiting = self.waiting().unwrap_or(0).min(max_background);
        for _ in 0..waiting {
            if self.write_value("max_background", max_background).is_err() {
                break;
            }
        }
    }

    fn read_value(&self, name: &str) -> Result<u32, FuseConnError> {
        let path = self.dir.join(name);
        let text = fs::read_to_string(&path)
            .map_err(|e| FuseConnError::from_io(format!("read {}", path.display()), e))?;
        text.trim().parse().map_err(|_| FuseConnError::Failed {
            what: format!("read {}", path.display()),
            detail: format!("not a number: {:?}", text.trim()),
        })
    }

    fn write_value(&self, name: &str, value: u32) -> Result<(), FuseConnError> {
        let path = self.dir.join(name);
        let what = || format!("write {value} to {}", path.display());
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| FuseConnError::from_io(what(), e))?;
        file.write_all(value.to_string().as_bytes()).map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                FuseConnError::Failed {
                    what: what(),
                    detail: "the kernel refused the value (above fs.fuse.max_user_bgreq or \
                             max_user_congthresh without CAP_SYS_ADMIN?)"
                        .into(),
                }
            } else {
                FuseConnError::from_io(what(), e)
            }
        })
    }

    #[cfg(test)]
    fn at(dir: PathBuf) -> FuseConnection {
        FuseConnection {
            dir,
            fs_type: "fuse.test".into(),
            mounted_fusectl: false,
        }
    }
}

/// The name of a connection's directory under [`CONNECTIONS_DIR`]: the superblock's device number
/// in the kernel's internal encoding (`MKDEV`: 20 bits of minor), printed in decimal.
pub fn connection_name(major: u32, minor: u32) -> String {
    ((u64::from(major) << 20) | u64::from(minor & 0xf_ffff)).to_string()
}

/// The mount holding `fd`, asking the kernel only (never the daemon).
fn mount_of(fd: std::os::fd::BorrowedFd<'_>) -> Result<MountEntry, FuseConnError> {
    use rustix::fs::{AtFlags, StatxFlags};
    // No attribute in the mask and DONT_SYNC: FUSE answers from what the kernel holds, so a stuck
    // daemon cannot make this wait. The device number and mount id are always filled in.
    let stx = rustix::fs::statx(
        fd,
        "",
        AtFlags::EMPTY_PATH | AtFlags::STATX_DONT_SYNC,
        StatxFlags::MNT_ID,
    )
    .map_err(|e| FuseConnError::from_errno("statx the exported directory".into(), e))?;
    let mnt_id = (stx.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(stx.stx_mnt_id);
    match fs::read("/proc/self/mountinfo") {
        Ok(text) => MountTable::parse_lossy(&text)
            .find_device(mnt_id, stx.stx_dev_major, stx.stx_dev_minor)
            .cloned()
            .ok_or_else(|| {
                FuseConnError::NotFound(format!(
                    "no mount {}:{} in /proc/self/mountinfo",
                    stx.stx_dev_major, stx.stx_dev_minor
                ))
            }),
        Err(_) => {
            // No /proc: statfs asks the daemon, but it is the only other way to know the type.
            let sfs = rustix::fs::fstatfs(fd).map_err(|e| {
                FuseConnError::from_errno("statfs the exported directory".into(), e)
            })?;
            let f_type = f_type_of(&sfs);
            Ok(MountEntry {
                major: stx.stx_dev_major,
                minor: stx.stx_dev_minor,
                fstype: if f_type == FUSE_SUPER_MAGIC {
                    "fuse".into()
                } else {
                    format!("f_type {f_type:#x}")
                },
                ..MountEntry::default()
            })
        }
    }
}

/// `f_type`, whose width follows the architecture's `long`.
#[allow(clippy::useless_conversion)]
fn f_type_of(s: &rustix::fs::StatFs) -> i64 {
    i64::from(s.f_type)
}

/// Make sure `fusectl` is mounted at `connections`; returns whether this call mounted it.
fn ensure_fusectl(connections: &Path) -> Result<bool, FuseConnError> {
    let is_fusectl = |p: &Path| rustix::fs::statfs(p).map(|s| f_type_of(&s) == FUSECTL_SUPER_MAGIC);
    match is_fusectl(connections) {
        Ok(true) => return Ok(false),
        Ok(false) => {}
        Err(rustix::io::Errno::NOENT) => {
            return Err(FuseConnError::NotFound(format!(
                "{} does not exist (is sysfs mounted, is the fuse module loaded?)",
                connections.display()
            )))
        }
        Err(e) => {
            return Err(FuseConnError::from_errno(
                format!("statfs {}", connections.display()),
                e,
            ))
        }
    }
    match rustix::mount::mount(
        "fusectl",
        connections,
        "fusectl",
        rustix::mount::MountFlags::empty(),
        "",
    ) {
        Ok(()) => Ok(true),
        // Someone else mounted it at the same moment.
        Err(rustix::io::Errno::BUSY) if matches!(is_fusectl(connections), Ok(true)) => Ok(false),
        Err(e) => Err(FuseConnError::from_errno(
            format!("mount fusectl at {}", connections.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::is_fuse_type;

    #[test]
    fn zero_means_leave_alone_and_congestion_is_three_quarters() {
        assert_eq!(FuseLimits::for_max_background(0), None);
        assert_eq!(
            FuseLimits::for_max_background(DEFAULT_MAX_BACKGROUND),
            Some(FuseLimits {
                max_background: 256,
                congestion_threshold: 192
            })
        );
        assert_eq!(
            FuseLimits::for_max_background(1)
                .unwrap()
                .congestion_threshold,
            1,
            "a threshold of 0 would mark the connection congested all the time"
        );
        assert_eq!(
            FuseLimits::for_max_background(1_000_000),
            Some(FuseLimits {
                max_background: KERNEL_MAX_LIMIT,
                congestion_threshold: KERNEL_MAX_LIMIT * 3 / 4
            })
        );
    }

    #[test]
    fn raising_never_lowers_either_limit() {
        let now = FuseLimits {
            max_background: 300,
            congestion_threshold: 9,
        };
        let target = FuseLimits::for_max_background(256).unwrap();
        assert_eq!(
            now.raised_to(target),
            FuseLimits {
                max_background: 300,
                congestion_threshold: 192
            }
        );
    }

    #[test]
    fn connection_names_use_the_kernel_encoding() {
        // Anonymous device of a plain FUSE mount: major 0, the name is the minor.
        assert_eq!(connection_name(0, 45), "45");
        assert_eq!(connection_name(0, 300), "300");
        // fuseblk on /dev/sdb1 (8:17): MKDEV(8, 17).
        assert_eq!(connection_name(8, 17), (8u64 << 20 | 17).to_string());
    }

    #[test]
    fn a_plain_directory_is_not_fuse() {
        let dir = tempfile::tempdir().unwrap();
        match tune_path(dir.path(), DEFAULT_MAX_BACKGROUND) {
            FuseTuneOutcome::NotFuse { fs_type } => assert!(!is_fuse_type(&fs_type), "{fs_type}"),
            other => panic!("expected NotFuse, got {other:?}"),
        }
        assert_eq!(tune_path(dir.path(), 0), FuseTuneOutcome::Disabled);
    }

    fn fake_connection(max: u32, congestion: u32) -> (tempfile::TempDir, FuseConnection) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("max_background"), format!("{max}\n")).unwrap();
        fs::write(
            dir.path().join("congestion_threshold"),
            format!("{congestion}\n"),
        )
        .unwrap();
        fs::write(dir.path().join("waiting"), "3\n").unwrap();
        let conn = FuseConnection::at(dir.path().to_path_buf());
        (dir, conn)
    }

    #[test]
    fn raise_writes_only_what_is_lower() {
        let (_dir, conn) = fake_connection(12, 9);
        let target = FuseLimits::for_max_background(256).unwrap();
        let (before, after) = conn.raise(target).unwrap();
        assert_eq!(
            before,
            FuseLimits {
                max_background: 12,
                congestion_threshold: 9
            }
        );
        assert_eq!(after, target);
        assert_eq!(conn.waiting().unwrap(), 3);

        let (_dir, conn) = fake_connection(1000, 10);
        let (_, after) = conn.raise(target).unwrap();
        assert_eq!(
            after,
            FuseLimits {
                max_background: 1000,
                congestion_threshold: 192
            }
        );

        let (_dir, conn) = fake_connection(256, 192);
        let (before, after) = conn.raise(target).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn garbage_in_a_limit_file_is_an_error_not_a_panic() {
        let (dir, conn) = fake_connection(12, 9);
        fs::write(dir.path().join("max_background"), "lots\n").unwrap();
        assert!(matches!(conn.limits(), Err(FuseConnError::Failed { .. })));
    }

    #[test]
    fn outcomes_read_as_one_log_line() {
        let raised = FuseTuneOutcome::Raised {
            connection: PathBuf::from("/sys/fs/fuse/connections/45"),
            before: FuseLimits {
                max_background: 12,
                congestion_threshold: 9,
            },
            after: FuseLimits {
                max_background: 256,
                congestion_threshold: 192,
            },
            mounted_fusectl: true,
        };
        assert_eq!(
            raised.to_string(),
            "raised FUSE max_background 12 -> 256, congestion_threshold 9 -> 192 \
             (/sys/fs/fuse/connections/45) (mounted fusectl at /sys/fs/fuse/connections first)"
        );
        assert!(!raised.is_warning());
        let denied = outcome_of_error(FuseConnError::NoPrivilege {
            what: "mount fusectl at /sys/fs/fuse/connections".into(),
            errno: rustix::io::Errno::PERM,
        });
        assert!(denied.is_warning());
        assert!(
            denied.to_string().contains("no privilege to mount fusectl"),
            "{denied}"
        );
        assert!(
            denied.to_string().contains("Operation not permitted"),
            "{denied}"
        );
    }
}
