//! `mountshare doctor path` on mount tables from fixtures (containers of the user's cluster: a
//! hostPath bind with and without NFS on top, a private propagation, FUSE with and without
//! allow_other, a sidecar's tmpfs emptyDir in its own peer group), and on this machine's own
//! table, where the directory is also probed.

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn doctor(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(["doctor", "path"])
        .args(args)
        .output()
        .expect("run mountshare doctor");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/mountinfo/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn on_fixture(name: &str) -> (Run, Value) {
    let run = doctor(&["/mnt/dfs", "--json", "--mountinfo", &fixture(name)]);
    let v = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", run.stdout, run.stderr));
    (run, v)
}

fn finding<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no finding {name} in {r:#}"))
}

fn problem(r: &Value, name: &str) -> (String, String) {
    let f = finding(r, name);
    assert_eq!(f["verdict"], "problem", "{name}: {r:#}");
    (
        f["summary"].as_str().unwrap().to_owned(),
        f["fix"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_hostpath_bind_with_nothing_on_it_is_only_a_bind_mount() {
    let (run, r) = on_fixture("hostpath_bind.txt");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(r["mounted"], true); // what `mountpoint -q` sees
    assert_eq!(r["kind"], "bind");
    assert_eq!(r["stack"].as_array().unwrap().len(), 1);
    let (what, fix) = problem(&r, "kind");
    assert!(
        what.contains("only a bind mount of /mnt/decypharr-dfs"),
        "{what}"
    );
    assert!(what.contains("mountpoint -q"), "{what}");
    assert!(fix.contains("nfs line"), "{fix}");
    // HostToContainer: a slave, which is right for a consumer.
    assert_eq!(finding(&r, "propagation")["verdict"], "ok");
    assert!(finding(&r, "propagation")["summary"]
        .as_str()
        .unwrap()
        .contains("slave of peer group 1"));
    assert_eq!(finding(&r, "stat")["verdict"], "skipped");
}

#[test]
fn nfs_on_top_of_a_hostpath_is_healthy_and_is_the_top_of_the_stack() {
    let (run, r) = on_fixture("hostpath_nfs.txt");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(r["healthy"], true);
    assert_eq!(r["kind"], "nfs");
    let stack = r["stack"].as_array().unwrap();
    assert_eq!(stack.len(), 2);
    assert_eq!(stack[1]["mount_id"], 2201);
    assert_eq!(stack[1]["source"], "10.43.200.129:/");
    assert_eq!(stack[0]["kind"], "bind");
    assert!(finding(&r, "nfs_options")["summary"]
        .as_str()
        .unwrap()
        .contains("port=2049, mountport=2049, soft"));
    let text = doctor(&["/mnt/dfs", "--mountinfo", &fixture("hostpath_nfs.txt")]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("<- top"), "{}", text.stdout);
    assert!(text.stdout.contains("verdict: healthy"), "{}", text.stdout);
}

#[test]
fn a_private_mount_point_is_a_propagation_problem() {
    let (run, r) = on_fixture("private_nfs.txt");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(r["kind"], "nfs");
    assert_eq!(r["attachment"]["propagation"], "private");
    let (what, fix) = problem(&r, "propagation");
    assert!(what.contains("private"), "{what}");
    assert!(
        fix.contains("HostToContainer") && fix.contains("Bidirectional"),
        "{fix}"
    );
    assert_eq!(r["problems"], 1);
}

#[test]
fn fuse_without_allow_other_is_a_problem_and_with_it_is_not() {
    let (run, r) = on_fixture("fuse_no_allow_other.txt");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(r["kind"], "fuse");
    let (what, fix) = problem(&r, "allow_other");
    assert!(what.contains("uid 1000"), "{what}");
    assert!(fix.contains("-o allow_other"), "{fix}");
    // The FUSE mount sits on a tmpfs emptyDir in peer group 549.
    assert_eq!(r["attachment"]["peer_group"], 549);

    let (run, r) = on_fixture("fuse_allow_other.txt");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(finding(&r, "allow_other")["verdict"], "ok");
}

#[test]
fn a_sidecars_tmpfs_emptydir_is_not_the_share_and_shows_its_own_peer_group() {
    let (run, r) = on_fixture("emptydir_memory_sidecar.txt");
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(r["kind"], "tmpfs");
    let (what, _) = problem(&r, "kind");
    assert!(what.contains("tmpfs"), "{what}");
    assert_eq!(r["attachment"]["peer_group"], 303);
}

#[test]
fn comparing_with_the_container_that_made_the_fuse_mount_names_both_peer_groups() {
    let run = doctor(&[
        "/mnt/dfs",
        "--json",
        "--mountinfo",
        &fixture("emptydir_memory_sidecar.txt"),
        "--compare",
        &fixture("fuse_allow_other.txt"),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let r: Value = serde_json::from_str(&run.stdout).unwrap();
    let (what, fix) = problem(&r, "compare");
    assert!(
        what.contains("sees fuse.rclone from dfs at /mnt/dfs"),
        "{what}"
    );
    assert!(what.contains("shared:303 here, shared:549 there"), "{what}");
    assert!(fix.contains("mountshare serve"), "{fix}");

    // The same table on both sides: the same file system.
    let run = doctor(&[
        "/mnt/dfs",
        "--json",
        "--mountinfo",
        &fixture("fuse_allow_other.txt"),
        "--compare",
        &fixture("fuse_allow_other.txt"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stdout);
}

#[test]
fn nothing_mounted_at_a_local_directory_and_it_is_probed() {
    let dir = mountshare_testkit::tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), b"x").unwrap();
    let shown = dir.path().to_str().unwrap();
    let run = doctor(&[shown, "--json"]);
    let r: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(r["mounted"], false);
    let (what, _) = problem(&r, "mount");
    assert!(
        what.starts_with(&format!("nothing is mounted at {shown}")),
        "{what}"
    );
    assert_eq!(finding(&r, "stat")["verdict"], "ok");
    assert_eq!(finding(&r, "readdir")["verdict"], "ok");
    assert!(finding(&r, "readdir")["summary"]
        .as_str()
        .unwrap()
        .starts_with("1 entry (x)"));
}

#[test]
fn an_unreadable_mount_table_exits_2_with_one_line() {
    let run = doctor(&["/mnt/dfs", "--mountinfo", "/nonexistent/mountinfo"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("/nonexistent/mountinfo"));
    assert!(run.stdout.is_empty());
}
