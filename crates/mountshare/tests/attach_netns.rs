//! `mountshare attach` outside the host's network namespace (a DaemonSet without
//! `hostNetwork: true`): it logs one line naming the fix, stays alive and not ready, and mounts
//! nothing; `--allow-pod-network` overrides it. Also what its logs look like off a terminal:
//! plain text without ANSI colours, or JSON with `--log-format json`.
//!
//! Each agent runs in a network namespace of its own made by `unshare --net` (util-linux, with
//! `ip` from iproute2 to bring up its loopback); the test reaches its health port from a thread
//! that joins that namespace. Needs root, like `attach` itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const HEALTH_PORT: u16 = 9180;

/// `mountshare attach ARGS` in a new network namespace with its loopback up.
fn attach_in_own_netns(target: &Path, extra: &[&str]) -> Child {
    Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(BIN)
        .args(["attach", "--server", "127.0.0.1:1", "--target"])
        .arg(target)
        .args(["--listen-health", &format!("127.0.0.1:{HEALTH_PORT}")])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare (util-linux) as root")
}

/// The agent's stderr lines, as they come.
fn lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Lines until one contains `needle` (which is returned last); fails after a generous bound.
fn until(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => {
                let found = l.contains(needle);
                seen.push(l);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}); the agent said: {seen:#?}"),
        }
    }
}

/// GET `path` from the health port of the agent `pid`, from inside its network namespace.
fn get_in_netns_of(pid: u32, path: &str) -> String {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    let path = path.to_owned();
    std::thread::spawn(move || {
        // setns(2) moves this thread only.
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&ns),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns into the agent's network namespace (needs root)");
        for _ in 0..300 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", HEALTH_PORT)) {
                write!(s, "GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                return out;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent's health port never answered in its namespace");
    })
    .join()
    .unwrap()
}

fn stop(mut agent: Child) -> i32 {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&agent),
        rustix::process::Signal::Term,
    )
    .unwrap();
    agent.wait().unwrap().code().unwrap_or(-1)
}

fn bare_target() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, target)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn outside_the_hosts_network_namespace_the_agent_says_how_to_fix_it_and_stays_not_ready() {
    let (_dir, target) = bare_target();
    let mut agent = attach_in_own_netns(&target, &[]);
    let rx = lines(agent.stderr.take().unwrap());
    let said = until(&rx, "hostNetwork: true");
    let line = said.last().unwrap().clone();
    assert!(
        line.contains("ERROR") && line.contains("ClusterFirstWithHostNet"),
        "one line names the fix: {line}"
    );

    let ready = get_in_netns_of(agent.id(), "/readyz");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains("\r\n\r\nwrong_network: ") && ready.contains("hostNetwork: true"),
        "/readyz gives the state and the fix: {ready}"
    );
    assert!(get_in_netns_of(agent.id(), "/livez").starts_with("HTTP/1.1 200"));
    let metrics = get_in_netns_of(agent.id(), "/metrics");
    assert!(
        metrics.contains("mountshare_attach_state{state=\"wrong_network\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mountshare_attach_mount_up 0"),
        "{metrics}"
    );
    // It never reconciled: the bare directory was not even made mode 000.
    assert_eq!(mode(&target), 0o755);

    assert_eq!(stop(agent), 0, "exits 0 on SIGTERM");
    let rest: Vec<String> = rx.iter().collect();
    let all: Vec<&String> = said.iter().chain(&rest).collect();
    assert_eq!(
        all.iter()
            .filter(|l| l.contains("hostNetwork: true"))
            .count(),
        1,
        "the fix is logged once: {all:#?}"
    );
    assert!(
        !all.iter()
            .any(|l| l.contains("mounted") || l.contains("mode 000")),
        "{all:#?}"
    );
    assert!(
        !all.iter().any(|l| l.contains('\u{1b}')),
        "no ANSI escapes when stderr is not a terminal: {all:#?}"
    );
}

#[test]
fn allow_pod_network_reconciles_anyway_with_a_warning() {
    let (_dir, target) = bare_target();
    let mut agent = attach_in_own_netns(&target, &["--allow-pod-network"]);
    let rx = lines(agent.stderr.take().unwrap());
    let said = until(&rx, "--allow-pod-network: mounting anyway");
    assert!(said.last().unwrap().contains("WARN"), "{said:#?}");
    // The reconcile loop runs: its first verdict on the target (a temporary directory, not on
    // a shared mount) is logged.
    until(&rx, "to=not_shared");
    let ready = get_in_netns_of(agent.id(), "/readyz");
    assert!(
        ready.starts_with("HTTP/1.1 503") && !ready.contains("wrong_network"),
        "{ready}"
    );
    assert_eq!(stop(agent), 0);
}

#[test]
fn log_format_json_gives_one_json_object_per_line() {
    let (_dir, target) = bare_target();
    let mut agent = attach_in_own_netns(&target, &["--log-format", "json"]);
    let rx = lines(agent.stderr.take().unwrap());
    let said = until(&rx, "hostNetwork: true");
    assert_eq!(stop(agent), 0);
    let all: Vec<String> = said.into_iter().chain(rx.iter()).collect();
    assert!(all.len() >= 2, "{all:#?}");
    for l in &all {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        assert!(
            v["message"].is_string(),
            "flattened: the message is a top-level field: {l}"
        );
    }
    let fix = all
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"].as_str().unwrap().contains("hostNetwork: true"))
        .unwrap();
    assert_eq!(fix["level"], "ERROR");
    let starting = all
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["message"] == "attach starting")
        .unwrap();
    assert_eq!(
        starting["server"], "127.0.0.1:1",
        "fields stay fields: {starting}"
    );
}
