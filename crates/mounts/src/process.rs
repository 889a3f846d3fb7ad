//! Process discovery: where the FUSE mount at a directory is now, in our mount namespace or in
//! another process's, read from that namespace's mountinfo ([`crate::mountinfo`]).
//!
//! A FUSE mount lives in the mount namespace of the process that made it; in Kubernetes a second
//! container of the same pod does not see it. A process that shares our mount namespace (our
//! child) sees it at DIR itself. Any other process's namespace is reachable through
//! `/proc/PID/root` when the process namespace is shared (`shareProcessNamespace: true`), and its
//! mounts are listed in `/proc/PID/mountinfo`. A mount found there is named with the process and
//! its start time, so that a restarted daemon that got the same PID still counts as a new mount.
//!
//! Everything here is blocking (it reads `/proc`), and nothing here waits: the caller decides
//! when to look again. Opening what was found is the caller's (`mountshare-fs` serves it).

use crate::mountinfo::MountTable;
use std::path::{Path, PathBuf};

/// Whose mount namespace DIR is looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Ours (a child we start shares it).
    Own,
    /// Another process's, through `/proc/PID/root`.
    Process(Selector),
}

/// How the process whose namespace holds the mount is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Exactly this process; when it exits, it is gone for good.
    Pid(u32),
    /// Any process whose `comm` or `argv[0]` file name is this, found again after a restart.
    Name(String),
}

impl Selector {
    /// A number names a PID, anything else a process name; `None` for the empty string.
    pub fn parse(text: &str) -> Option<Selector> {
        if text.is_empty() {
            return None;
        }
        Some(match text.parse::<u32>() {
            Ok(pid) => Selector::Pid(pid),
            Err(_) => Selector::Name(text.to_string()),
        })
    }
}

/// Why the mount at DIR cannot be looked for (now or ever).
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("cannot read /proc/self/mountinfo")]
    OwnMountinfo(#[source] std::io::Error),
    /// The one process named by PID has exited: the mount will never be back.
    #[error("process {0} is gone (or not in this PID namespace: set shareProcessNamespace: true)")]
    ProcessGone(u32),
    #[error("cannot list /proc")]
    ListProc(#[source] std::io::Error),
}

/// A mount found at DIR: what identifies it, and the path that opens it from here.
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

/// The top mount at `dir` when it is a FUSE file system ([`MountEntry::is_fuse`]).
///
/// [`MountEntry::is_fuse`]: crate::mountinfo::MountEntry::is_fuse
pub fn fuse_mount_at(table: &MountTable, dir: &Path) -> Option<(u64, String)> {
    table
        .top_at(dir)
        .filter(|e| e.is_fuse())
        .map(|e| (e.mount_id, e.fstype.clone()))
}

fn read_table(path: &Path) -> std::io::Result<MountTable> {
    let text = std::fs::read(path)?;
    MountTable::parse(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn own_table() -> Result<MountTable, LocateError> {
    read_table(Path::new("/proc/self/mountinfo")).map_err(LocateError::OwnMountinfo)
}

/// Field 22 of /proc/PID/stat: the start time in clock ticks after boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything, even ") ".
    let rest = stat.get(stat.rfind(')')? + 1..)?;
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

/// Where the FUSE mount at `dir` (absolute, as mountinfo shows it) is now. `Ok(None)`: not
/// mounted (yet). An error means it never will be: the one process named by PID has exited.
pub fn locate(source: &Source, dir: &Path) -> Result<Option<Found>, LocateError> {
    match source {
        Source::Own => Ok(
            fuse_mount_at(&own_table()?, dir).map(|(mount_id, fstype)| Found {
                process: None,
                mount_id,
                fstype,
                open_path: dir.to_path_buf(),
            }),
        ),
        Source::Process(Selector::Pid(pid)) => {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return Err(LocateError::ProcessGone(*pid));
            }
            Ok(found_in(*pid, dir))
        }
        Source::Process(Selector::Name(name)) => {
            let me = std::process::id();
            let mut best: Option<Found> = None;
            for entry in std::fs::read_dir("/proc").map_err(LocateError::ListProc)? {
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

/// The top mount at `dir` (absolute, as mountinfo shows it) in our namespace, whatever it is,
/// and the mount ids of the whole stack there, bottom first.
pub fn locate_any(dir: &Path) -> Result<(Option<Found>, Vec<u64>), LocateError> {
    let table = own_table()?;
    let stack = table.stack_at(dir);
    let ids = stack.iter().map(|e| e.mount_id).collect();
    let top = stack.last().map(|e| Found {
        process: None,
        mount_id: e.mount_id,
        fstype: e.fstype.clone(),
        open_path: dir.to_path_buf(),
    });
    Ok((top, ids))
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
44 22 0:33 / /sys/fs/fuse/connections rw,nosuid,nodev,noexec,relatime - fusectl fusectl rw
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
        // The FUSE control file system is not a FUSE mount to serve.
        assert_eq!(
            fuse_mount_at(&t, Path::new("/sys/fs/fuse/connections")),
            None
        );
        assert_eq!(fuse_mount_at(&t, Path::new("/mnt/none")), None);
    }

    #[test]
    fn a_number_names_a_pid_anything_else_a_name() {
        assert_eq!(Selector::parse("42").unwrap(), Selector::Pid(42));
        assert_eq!(
            Selector::parse("decypharr").unwrap(),
            Selector::Name("decypharr".into())
        );
        assert!(Selector::parse("").is_none());
    }

    #[test]
    fn start_time_of_this_process_is_known() {
        assert!(start_time(std::process::id()).is_some());
    }
}
