//! Real-kernel tests that need no NFS: the mountinfo parser on this machine's table, and, in a
//! private mount namespace (`unshare -m`, as root), that a hostPath-style bind mount is not taken
//! for a mount, and that mounting beneath and detaching the top really replaces a mount in place.
//!
//! Each namespace test re-runs this test binary under `unshare -m --propagation private` with an
//! `#[ignore]`d inner test selected and MOUNTSHARE_IN_NS=1 set, and checks the marker it prints.

use mountshare_agent::metrics::Metrics;
use mountshare_agent::ops::MountOps;
use mountshare_agent::real::{detach_top, mount_beneath, mount_on_top, RealLimits, RealMountOps};
use mountshare_agent::reconcile::{Config, Reconciler, State};
use mountshare_mounts::mountinfo::MountTable;
use mountshare_mounts::options::MountFlags;
use rustix::mount::MountPropagationFlags;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const IN_NS: &str = "MOUNTSHARE_IN_NS";

#[test]
fn parses_this_machines_mountinfo() {
    let raw = std::fs::read("/proc/self/mountinfo").unwrap();
    let table = MountTable::parse(&raw).unwrap();
    let lines = raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(table.entries().len(), lines);
    assert!(
        table.top_at(Path::new("/")).is_some(),
        "the root is mounted"
    );
    assert!(table
        .attachment_of(Path::new("/surely/not/a/mount/point"))
        .is_some());
    let proc_mount = table
        .entries()
        .iter()
        .find(|e| e.mount_point == Path::new("/proc"));
    assert_eq!(proc_mount.map(|e| e.fstype.as_str()), Some("proc"));
}

/// Run `inner` in a fresh private mount namespace; true if it ran and passed, false if this
/// machine cannot run it (not root, or no unshare).
fn in_namespace(inner: &str) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped {inner}: needs root for mount namespaces");
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let out = match Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(exe)
        .args([
            "--exact",
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IN_NS, "1")
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped {inner}: cannot run unshare: {e}");
            return false;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{inner} failed in its namespace:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("NS-PASSED {inner}")),
        "{inner} did not run:\n{stdout}\n{stderr}"
    );
    true
}

fn guard() -> bool {
    std::env::var_os(IN_NS).is_some()
}

fn table() -> MountTable {
    MountTable::parse(&std::fs::read("/proc/self/mountinfo").unwrap()).unwrap()
}

/// A directory bind-mounted onto itself and made shared: what a Bidirectional hostPath is.
fn host_path(shared: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    rustix::mount::mount_bind(dir.path(), dir.path()).unwrap();
    let how = if shared {
        MountPropagationFlags::SHARED
    } else {
        MountPropagationFlags::PRIVATE
    };
    rustix::mount::mount_change(dir.path(), how).unwrap();
    dir
}

/// Leave no mount or mode-000 directory behind in /tmp once the namespace is gone.
fn cleanup(target: &Path) {
    while !table().stack_at(target).is_empty() {
        detach_top(target).unwrap();
    }
    std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn agent_for(target: &Path) -> Reconciler<RealMountOps> {
    // 127.0.0.1:1 refuses connections: the agent must report the server unreachable.
    let cfg = Config::new(
        "127.0.0.1:1".parse().unwrap(),
        "/".into(),
        target.to_owned(),
    );
    Reconciler::new(
        RealMountOps::new(RealLimits::default()),
        cfg,
        Metrics::new(),
        1,
    )
}

#[test]
fn a_bind_mount_of_the_target_onto_itself_is_not_a_mount() {
    in_namespace("inner_bind_mount_is_not_a_mount");
}

#[test]
#[ignore = "runs inside a private mount namespace, started by a_bind_mount_of_the_target_onto_itself_is_not_a_mount"]
fn inner_bind_mount_is_not_a_mount() {
    if !guard() {
        return;
    }
    let dir = host_path(true);
    let target = dir.path().canonicalize().unwrap();
    assert_eq!(
        table().stack_at(&target).len(),
        1,
        "the bind is a mount point (mountpoint -q would say yes)"
    );
    let mut agent = agent_for(&target);
    agent.tick(Instant::now());
    assert_eq!(agent.state(), State::Unreachable, "{}", agent.reason());
    assert!(
        agent.reason().contains("no NFS mount"),
        "{}",
        agent.reason()
    );
    assert!(!agent.is_ready());
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0,
        "the bare directory is made unreadable before any mount"
    );
    cleanup(&target);
    println!("NS-PASSED inner_bind_mount_is_not_a_mount");
}

#[test]
fn a_private_target_is_reported_and_never_mounted() {
    in_namespace("inner_private_target");
}

#[test]
#[ignore = "runs inside a private mount namespace, started by a_private_target_is_reported_and_never_mounted"]
fn inner_private_target() {
    if !guard() {
        return;
    }
    let dir = host_path(false);
    let target = dir.path().canonicalize().unwrap();
    let mut agent = agent_for(&target);
    agent.tick(Instant::now());
    assert_eq!(agent.state(), State::NotShared, "{}", agent.reason());
    assert!(
        agent.reason().contains("is a private mount"),
        "{}",
        agent.reason()
    );
    assert_eq!(table().stack_at(&target).len(), 1, "nothing was mounted");
    cleanup(&target);
    println!("NS-PASSED inner_private_target");
}

#[test]
fn mounting_beneath_then_detaching_the_top_replaces_a_mount_without_a_gap() {
    in_namespace("inner_mount_beneath");
}

fn tmpfs_flags() -> MountFlags {
    MountFlags {
        read_only: false,
        nosuid: true,
        nodev: true,
        noexec: true,
    }
}

#[test]
#[ignore = "runs inside a private mount namespace, started by mounting_beneath_then_detaching_the_top_replaces_a_mount_without_a_gap"]
fn inner_mount_beneath() {
    if !guard() {
        return;
    }
    let dir = host_path(true);
    let target = dir.path().canonicalize().unwrap();
    mount_on_top(
        "tmpfs",
        "ms-old",
        &["mode=755".into()],
        tmpfs_flags(),
        &target,
    )
    .unwrap();
    std::fs::write(target.join("from-old"), b"old").unwrap();

    match mount_beneath(
        "tmpfs",
        "ms-new",
        &["mode=755".into(), "size=1m".into()],
        tmpfs_flags(),
        &target,
    ) {
        Ok(()) => {}
        Err(mountshare_agent::ops::OpsError::BeneathUnsupported { message }) => {
            println!("kernel lacks MOVE_MOUNT_BENEATH ({message}); nothing more to prove here");
            println!("NS-PASSED inner_mount_beneath");
            return;
        }
        Err(e) => panic!("mount beneath: {e}"),
    }
    // While both are mounted, the path still shows the old mount: no gap.
    let t = table();
    let sources: Vec<&str> = t
        .stack_at(&target)
        .iter()
        .map(|e| e.source.as_str())
        .collect();
    assert_eq!(
        sources[1..],
        ["ms-new", "ms-old"],
        "new tucked beneath old: {sources:?}"
    );
    assert!(target.join("from-old").exists());

    detach_top(&target).unwrap();
    let t = table();
    let sources: Vec<&str> = t
        .stack_at(&target)
        .iter()
        .map(|e| e.source.as_str())
        .collect();
    assert_eq!(
        sources[1..],
        ["ms-new"],
        "only the new mount is left: {sources:?}"
    );
    assert!(
        !target.join("from-old").exists(),
        "the path now shows the new, empty tmpfs"
    );
    std::fs::write(target.join("from-new"), b"new").unwrap();
    assert_eq!(std::fs::read(target.join("from-new")).unwrap(), b"new");
    cleanup(&target);
    println!("NS-PASSED inner_mount_beneath");
}

#[test]
fn detaching_through_a_descriptor_of_the_lower_mount_detaches_the_top_one() {
    in_namespace("inner_fd_detach_hits_the_top");
}

/// Pins why the agent does not mount on top and then detach the old mount through an O_PATH
/// descriptor: the magic link resolves into the mount on top, which is the one detached.
#[test]
#[ignore = "runs inside a private mount namespace, started by detaching_through_a_descriptor_of_the_lower_mount_detaches_the_top_one"]
fn inner_fd_detach_hits_the_top() {
    if !guard() {
        return;
    }
    let dir = host_path(true);
    let target = dir.path().canonicalize().unwrap();
    mount_on_top("tmpfs", "ms-lower", &[], tmpfs_flags(), &target).unwrap();
    let lower = rustix::fs::open(
        &target,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    mount_on_top("tmpfs", "ms-upper", &[], tmpfs_flags(), &target).unwrap();
    let via_fd = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&lower));
    rustix::mount::unmount(via_fd.as_str(), rustix::mount::UnmountFlags::DETACH).unwrap();
    let t = table();
    let sources: Vec<&str> = t
        .stack_at(&target)
        .iter()
        .map(|e| e.source.as_str())
        .collect();
    assert_eq!(
        sources[1..],
        ["ms-lower"],
        "the upper mount went, not the lower: {sources:?}"
    );
    cleanup(&target);
    println!("NS-PASSED inner_fd_detach_hits_the_top");
}

#[test]
fn real_ops_detect_the_absent_name_lookup_as_healthy_on_a_local_dir() {
    // The probe's lookup of a fresh absent name must count ENOENT as an answer.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"x").unwrap();
    let ops = RealMountOps::new(RealLimits::default());
    let r = ops.probe(dir.path(), 1, std::time::Duration::from_secs(10));
    assert!(r.is_ok(), "{r:?}");
    let r = ops.probe(
        &dir.path().join("missing"),
        2,
        std::time::Duration::from_secs(10),
    );
    assert!(!r.is_ok(), "a missing target fails the probe: {r:?}");
}
