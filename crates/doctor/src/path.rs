//! `doctor path DIR`: what is mounted at a directory, read from mountinfo, and whether it
//! answers a stat and a readdir within a deadline.
//!
//! [`analyze`] is pure (a [`MountTable`] in, findings out), so fixtures can drive it; [`probe`]
//! touches the directory on the agent's deadline [`Lane`], so a hung NFS or FUSE mount can only
//! cost the deadline, never hang the doctor.

use crate::report::{count_problems, render_steps, verdict_line, Step, Verdict};
use mountshare_mounts::mountinfo::{MountEntry, MountTable, OptionalField};
use mountshare_mounts::watchdog::{Deadlined, Lane};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// What kind of file system a mount is, for the question "is the share really here?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The kernel NFS client (`nfs`, `nfs4`).
    Nfs,
    /// A FUSE file system (`fuse`, `fuse.rclone`, `fuse.sshfs`, `fuseblk`).
    Fuse,
    /// A bind mount of a directory of a local file system (a hostPath or emptyDir volume).
    Bind,
    /// A tmpfs (an emptyDir with `medium: Memory`).
    Tmpfs,
    /// Another file system, mounted whole.
    Other,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Nfs => "kernel NFS",
            Kind::Fuse => "FUSE",
            Kind::Bind => "bind mount of a directory",
            Kind::Tmpfs => "tmpfs",
            Kind::Other => "local file system",
        }
    }
}

/// One mount of the stack, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct MountView {
    pub mount_id: u64,
    pub parent_id: u64,
    /// `MAJOR:MINOR` of the file system.
    pub dev: String,
    /// The directory of the file system that is this mount's root (`/` unless a bind mount).
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    pub mount_options: String,
    pub super_options: String,
    pub kind: Kind,
    /// `shared`, `slave`, `private` or `unbindable`.
    pub propagation: &'static str,
    /// `shared:N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_group: Option<u64>,
    /// `master:N` (a slave of peer group N).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master: Option<u64>,
    /// The same device mounted elsewhere with root `/`, when this mount is a bind of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_of: Option<String>,
}

impl MountView {
    fn of(table: &MountTable, e: &MountEntry) -> Self {
        let root = e.root.to_string_lossy().into_owned();
        // The same file system mounted whole elsewhere, earlier: this one is a bind of it.
        let whole_elsewhere = table
            .entries()
            .iter()
            .take_while(|o| o.mount_id != e.mount_id)
            .find(|o| {
                o.major == e.major
                    && o.minor == e.minor
                    && o.mount_point != e.mount_point
                    && o.root == Path::new("/")
            })
            .map(|o| o.mount_point.to_string_lossy().into_owned());
        let is_bind = root != "/" || whole_elsewhere.is_some();
        let kind = if e.is_nfs() {
            Kind::Nfs
        } else if e.is_fuse() {
            Kind::Fuse
        } else if is_bind {
            Kind::Bind
        } else if e.fstype == "tmpfs" {
            Kind::Tmpfs
        } else {
            Kind::Other
        };
        let bind_of = if root != "/" {
            Some(format!("{root} of {} {}", e.fstype, e.source))
        } else {
            whole_elsewhere.map(|mp| format!("{} {} (also mounted at {mp})", e.fstype, e.source))
        };
        Self {
            mount_id: e.mount_id,
            parent_id: e.parent_id,
            dev: format!("{}:{}", e.major, e.minor),
            root,
            mount_point: e.mount_point.to_string_lossy().into_owned(),
            fstype: e.fstype.clone(),
            source: e.source.clone(),
            mount_options: e.mount_options.clone(),
            super_options: e.super_options.clone(),
            kind,
            propagation: e.propagation(),
            peer_group: e.shared_group(),
            master: e.optional.iter().find_map(|f| match f {
                OptionalField::Master(n) => Some(*n),
                _ => None,
            }),
            bind_of,
        }
    }

    fn propagation_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.peer_group {
            parts.push(format!("shared:{n}"));
        }
        if let Some(n) = self.master {
            parts.push(format!("master:{n}"));
        }
        if parts.is_empty() {
            parts.push(self.propagation.to_owned());
        }
        parts.join(" ")
    }
}

/// Everything `doctor path` found.
#[derive(Debug, Clone, Serialize)]
pub struct PathReport {
    pub path: String,
    /// Where the mount table came from.
    pub mountinfo: String,
    /// Whether anything is mounted exactly at the path.
    pub mounted: bool,
    /// The mounts stacked at the path, bottom first; the last is what paths below it show.
    pub stack: Vec<MountView>,
    /// What the path shows: the top of the stack, or `none` when nothing is mounted there.
    pub kind: Option<Kind>,
    /// When nothing is mounted at the path: the mount it is a plain directory of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within: Option<MountView>,
    /// The mount that mounts made at the path attach to and propagate from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<MountView>,
    pub findings: Vec<Step>,
    pub problems: usize,
    pub healthy: bool,
}

impl PathReport {
    fn finish(&mut self) {
        self.problems = count_problems(&self.findings);
        self.healthy = self.problems == 0;
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "mountshare doctor path {}", self.path);
        let _ = writeln!(out, "mount table: {}", self.mountinfo);
        let _ = writeln!(out);
        if self.stack.is_empty() {
            let _ = writeln!(out, "nothing is mounted at {}", self.path);
            if let Some(w) = &self.within {
                let _ = writeln!(
                    out,
                    "  it is a directory of mount #{} at {} ({} {}, {})",
                    w.mount_id,
                    w.mount_point,
                    w.fstype,
                    w.source,
                    w.propagation_text()
                );
            }
        } else {
            let _ = writeln!(
                out,
                "mounts stacked at {} (bottom first; the last is on top):",
                self.path
            );
            let n = self.stack.len();
            for (i, m) in self.stack.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  #{:<5} {:<12} {:<28} root={:<20} {:<18} {}{}",
                    m.mount_id,
                    m.fstype,
                    m.source,
                    m.root,
                    m.propagation_text(),
                    m.kind.describe(),
                    if i + 1 == n { "   <- top" } else { "" }
                );
            }
        }
        let _ = writeln!(out);
        out.push_str(&render_steps(&self.findings));
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", verdict_line(self.problems));
        out
    }
}

/// Absolute and lexically clean (`.`, `..`, doubled and trailing slashes resolved), without
/// touching the file system: the path may be a dead mount, and the table may not be this
/// machine's.
pub fn clean_path(p: &Path) -> Result<PathBuf, String> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve {}: {e}", p.display()))?
            .join(p)
    };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

fn super_option<'a>(opts: &'a str, key: &str) -> Option<&'a str> {
    opts.split(',').find_map(|o| match o.split_once('=') {
        Some((k, v)) if k == key => Some(v),
        None if o == key => Some(""),
        _ => None,
    })
}

/// Findings from the mount table alone.
pub fn analyze(table: &MountTable, path: &Path, mountinfo: &str) -> PathReport {
    let shown = path.to_string_lossy().into_owned();
    let stack: Vec<MountView> = table
        .stack_at(path)
        .into_iter()
        .map(|e| MountView::of(table, e))
        .collect();
    let attachment = table.attachment_of(path).map(|e| MountView::of(table, e));
    let within = if stack.is_empty() {
        attachment.clone()
    } else {
        None
    };
    let mut findings = Vec::new();
    let top = stack.last().cloned();
    match &top {
        None => {
            let what = match &within {
                Some(w) => format!(
                    "nothing is mounted at {shown}: it is a plain directory of the {} file system mounted at {} ({})",
                    w.fstype, w.mount_point, w.source
                ),
                None => format!("nothing is mounted at {shown}, and no mount contains it"),
            };
            findings.push(Step::problem(
                "mount",
                what,
                format!("mount the share there (mountshare attach --target {shown}); if a pod's hostPath points here, the node agent has not mounted it: check its /readyz and log"),
            ));
        }
        Some(t) => {
            let stacked = if stack.len() > 1 {
                format!(
                    "{} mounts stacked at {shown}; the top one, #{}, is what {shown} shows",
                    stack.len(),
                    t.mount_id
                )
            } else {
                format!("one mount at {shown}: #{}", t.mount_id)
            };
            findings.push(Step::ok("mount", stacked));
            findings.push(kind_finding(t, &shown));
            if t.kind == Kind::Nfs {
                let hard = super_option(&t.super_options, "hard").is_some()
                    || (super_option(&t.super_options, "soft").is_none()
                        && super_option(&t.super_options, "softerr").is_none());
                let vers = super_option(&t.super_options, "vers").unwrap_or("?");
                let port = super_option(&t.super_options, "port").unwrap_or("?");
                let mport = super_option(&t.super_options, "mountport").unwrap_or("?");
                let mut s = Step::ok(
                    "nfs_options",
                    format!(
                        "NFS vers={vers}, port={port}, mountport={mport}, {}",
                        if hard { "hard" } else { "soft" }
                    ),
                );
                if hard {
                    s = Step::note(
                        "nfs_options",
                        format!("NFS vers={vers}, port={port}, mountport={mport}, hard: processes reading it hang in state D while the server is down"),
                    )
                    .fix("mount it soft (mountshare attach does) unless writes must never fail");
                }
                findings.push(s);
                let dead_beneath = stack[..stack.len() - 1]
                    .iter()
                    .filter(|m| m.kind == Kind::Nfs)
                    .count();
                if dead_beneath > 0 {
                    findings.push(Step::note(
                        "stack",
                        format!("{dead_beneath} older NFS mount(s) lie beneath the top one (left by repairs on a kernel without MOVE_MOUNT_BENEATH)"),
                    ).fix("harmless; they go away with `umount` of each or a reboot"));
                }
            }
            if t.kind == Kind::Fuse {
                findings.push(fuse_finding(t, &shown));
            }
        }
    }
    if let Some(a) = &attachment {
        findings.push(propagation_finding(a, &shown, top.is_none()));
    }
    let mut report = PathReport {
        path: shown,
        mountinfo: mountinfo.to_owned(),
        mounted: !stack.is_empty(),
        kind: top.as_ref().map(|t| t.kind),
        stack,
        within,
        attachment,
        findings,
        problems: 0,
        healthy: true,
    };
    report.finish();
    report
}

fn kind_finding(t: &MountView, shown: &str) -> Step {
    let from = format!("{} from {}", t.fstype, t.source);
    match t.kind {
        Kind::Nfs => Step::ok("kind", format!("kernel NFS client: {from}")),
        Kind::Fuse => Step::ok(
            "kind",
            format!("FUSE: {from} (a FUSE mount reaches other mount namespaces only through shared peer groups; export it with mountshare serve from where it is mounted)"),
        ),
        Kind::Bind => Step::problem(
            "kind",
            format!(
                "{shown} is only a bind mount of {} (a hostPath or emptyDir volume): `mountpoint -q` says yes, but no NFS or FUSE file system is mounted here",
                t.bind_of.as_deref().unwrap_or(&t.root)
            ),
            format!("mount the share on top of it (mountshare attach --target {shown}), and test for an nfs line in /proc/self/mountinfo instead of `mountpoint -q`"),
        ),
        Kind::Tmpfs => Step::problem(
            "kind",
            format!("{shown} is a tmpfs (an emptyDir with medium: Memory?), not the share: `mountpoint -q` says yes, but no NFS or FUSE file system is mounted here"),
            format!("mount the share on top of it, and test for an nfs line in /proc/self/mountinfo instead of `mountpoint -q {shown}`"),
        ),
        Kind::Other => Step::problem(
            "kind",
            format!("{shown} is a {from}, not NFS or FUSE"),
            "if the share belongs here, mount it on top (mountshare attach --target DIR)".to_owned(),
        ),
    }
}

fn fuse_finding(t: &MountView, shown: &str) -> Step {
    if super_option(&t.super_options, "allow_other").is_some() {
        return Step::ok(
            "allow_other",
            "FUSE mount has allow_other: other users (and root) may enter it",
        );
    }
    let owner = super_option(&t.super_options, "user_id").unwrap_or("?");
    Step::problem(
        "allow_other",
        format!("FUSE mount at {shown} has no allow_other: only uid {owner} may enter it; root, the NFS server and every other user get \"Permission denied\""),
        "remount the FUSE file system with -o allow_other (a FUSE daemon not running as root also needs user_allow_other in /etc/fuse.conf)",
    )
}

fn propagation_finding(a: &MountView, shown: &str, nothing_mounted: bool) -> Step {
    let which = if nothing_mounted {
        format!(
            "mounts made at {shown} attach to #{} at {}",
            a.mount_id, a.mount_point
        )
    } else {
        format!(
            "mounts made at {shown} attach to #{} ({})",
            a.mount_id, a.fstype
        )
    };
    match (a.peer_group, a.master) {
        (Some(g), m) => Step::ok(
            "propagation",
            format!(
                "{which}: shared, peer group {g}{}: mounts made there reach every peer of group {g}",
                m.map(|m| format!(", and a slave of group {m}")).unwrap_or_default()
            ),
        ),
        (None, Some(m)) => Step::ok(
            "propagation",
            format!("{which}: slave of peer group {m}: it receives mounts made on the host, and sends none back (right for consumers with HostToContainer; the agent needs Bidirectional)"),
        ),
        (None, None) => Step::problem(
            "propagation",
            format!("{which}: {}: mounts made or healed elsewhere never appear at {shown}, and mounts made here stay in this mount namespace", a.propagation),
            format!("consumers: mountPropagation: HostToContainer; the agent: Bidirectional (privileged); on a host: mount --make-rshared {}", a.mount_point),
        ),
    }
}

/// Add a stat and a readdir of `path`, each within `deadline`, to the report.
pub fn probe(report: &mut PathReport, path: &Path, deadline: Duration) {
    let lane = Lane::new("doctor-probe", 2);
    let shown = report.path.clone();
    let fuse_no_allow = report
        .findings
        .iter()
        .any(|f| f.step == "allow_other" && f.verdict == Verdict::Problem);
    let p = path.to_path_buf();
    let started = Instant::now();
    let stat = lane.run(deadline, move || std::fs::metadata(&p).map(|m| m.is_dir()));
    let took = started.elapsed();
    let ok = match stat {
        Deadlined::Done(Ok(true)) => {
            report
                .findings
                .push(Step::ok("stat", format!("stat {shown} answered")).took(took));
            true
        }
        Deadlined::Done(Ok(false)) => {
            report.findings.push(
                Step::problem(
                    "stat",
                    format!("{shown} is not a directory"),
                    "give the directory the share is mounted at",
                )
                .took(took),
            );
            false
        }
        Deadlined::Done(Err(e)) => {
            report
                .findings
                .push(io_problem("stat", &shown, &e, fuse_no_allow).took(took));
            false
        }
        Deadlined::TimedOut | Deadlined::Busy => {
            report.findings.push(hung("stat", &shown, deadline));
            false
        }
    };
    if !ok {
        report
            .findings
            .push(Step::skipped("readdir", "not tried: stat failed"));
        report.finish();
        return;
    }
    let p = path.to_path_buf();
    let started = Instant::now();
    let listing = lane.run(
        deadline,
        move || -> std::io::Result<(usize, Vec<String>)> {
            let mut n = 0usize;
            let mut first = Vec::new();
            for entry in std::fs::read_dir(&p)? {
                let entry = entry?;
                if first.len() < 5 {
                    first.push(entry.file_name().to_string_lossy().into_owned());
                }
                n += 1;
                if n >= 100_000 {
                    break;
                }
            }
            first.sort();
            Ok((n, first))
        },
    );
    let took = started.elapsed();
    let step = match listing {
        Deadlined::Done(Ok((0, _))) => match report.kind {
            Some(Kind::Nfs) | Some(Kind::Fuse) => Step::problem(
                "readdir",
                format!("the share at {shown} is empty"),
                "check what the server exports (mountshare doctor server HOST:PORT): a server that exports the directory beneath a FUSE mount, not the FUSE mount itself, serves an empty tree",
            ),
            _ => Step::ok("readdir", format!("{shown} is empty (as a bare mount point is)")),
        },
        Deadlined::Done(Ok((n, first))) => Step::ok(
            "readdir",
            format!(
                "{}{n} {} ({}{})",
                if n >= 100_000 { "at least " } else { "" },
                if n == 1 { "entry" } else { "entries" },
                first.join(", "),
                if n > first.len() { ", ..." } else { "" }
            ),
        ),
        Deadlined::Done(Err(e)) => io_problem("readdir", &shown, &e, fuse_no_allow),
        Deadlined::TimedOut | Deadlined::Busy => hung("readdir", &shown, deadline),
    };
    report.findings.push(step.took(took));
    report.finish();
}

fn hung(step: &'static str, shown: &str, deadline: Duration) -> Step {
    Step::problem(
        step,
        format!("{step} {shown} did not return within {}: the file system behind it is hung (an NFS server gone on a hard mount, or a stuck FUSE daemon)", mountshare_units::human_duration(deadline)),
        format!("check the server (mountshare doctor server HOST:PORT); `umount -l {shown}` detaches a dead mount (mountshare attach heals it by itself)"),
    )
}

const EIO: i32 = 5;
const EACCES: i32 = 13;
const ENOTCONN: i32 = 107;
const ESTALE: i32 = 116;

fn io_problem(step: &'static str, shown: &str, e: &std::io::Error, fuse_no_allow: bool) -> Step {
    let what = format!("{step} {shown}: {e}");
    let fix = match e.raw_os_error() {
        Some(EACCES) if fuse_no_allow => "remount the FUSE file system with -o allow_other".to_owned(),
        Some(EACCES) => "nothing is mounted yet (an attach target is mode 000 until the share is on it), or the share refuses this uid: check the stack above".to_owned(),
        Some(EIO) => "the NFS server stopped answering (a soft mount gives up with EIO): run mountshare doctor server HOST:PORT; mountshare attach replaces such a mount by itself".to_owned(),
        Some(ESTALE) => "the server no longer knows this mount's root (export replaced, or another server without stable handles): remount; mountshare attach does".to_owned(),
        Some(ENOTCONN) => "the FUSE daemon behind it died: restart it and remount; every bind of the old mount must be redone".to_owned(),
        _ => "see the error; the stack above shows what is mounted".to_owned(),
    };
    Step::problem(step, what, fix)
}

/// Compare what `path` shows here with what it shows in `other` (another process's mount
/// table, e.g. the container that made the mount): the same file system, or a mount that did not
/// propagate, and whether the two mount points can propagate at all (peer groups).
pub fn compare(report: &mut PathReport, other: &MountTable, other_name: &str) {
    let path = Path::new(&report.path);
    let shown = report.path.clone();
    let theirs = other.top_at(path).map(|e| MountView::of(other, e));
    let their_attach = other.attachment_of(path).map(|e| MountView::of(other, e));
    let ours = report.stack.last();
    let step = match (&theirs, ours) {
        (None, _) => Step::note(
            "compare",
            format!("nothing is mounted at {shown} in {other_name}"),
        ),
        (Some(t), Some(o)) if t.dev == o.dev && t.root == o.root => Step::ok(
            "compare",
            format!(
                "{other_name} sees the same file system at {shown} ({} from {})",
                t.fstype, t.source
            ),
        ),
        (Some(t), o) => {
            let here = o
                .map(|o| format!("{} from {}", o.fstype, o.source))
                .unwrap_or_else(|| "nothing mounted".to_owned());
            let groups = match (&report.attachment, &their_attach) {
                (Some(a), Some(b)) => {
                    let linked = match (a.peer_group, a.master, b.peer_group) {
                        (Some(x), _, Some(y)) if x == y => true,
                        (_, Some(m), Some(y)) if m == y => true,
                        _ => false,
                    };
                    if linked {
                        String::new()
                    } else {
                        format!(
                            "; the two mount points are in unrelated peer groups ({} here, {} there), so nothing mounted there can ever appear here",
                            a.propagation_text(),
                            b.propagation_text()
                        )
                    }
                }
                _ => String::new(),
            };
            Step::problem(
                "compare",
                format!(
                    "{other_name} sees {} from {} at {shown}, this namespace sees {here}{groups}",
                    t.fstype, t.source
                ),
                "per-container volume mounts never share a peer group, and FUSE mounts do not cross them: serve the FUSE tree over NFS from the container that mounts it (mountshare serve) and mount that in each consumer",
            )
        }
    };
    report.findings.push(step);
    report.finish();
}
