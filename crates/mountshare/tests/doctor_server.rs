//! `mountshare doctor server` against a healthy mountshare server, nfs-ganesha (MOUNT on its own
//! port, found through rpcbind), and broken ones: a closed port, a server that accepts and never
//! answers, a wrong export, and a fake that answers NFS but has no MOUNT anywhere.
//!
//! Tests other than the ganesha ones point `--portmap-port` at a closed port, so a portmapper
//! another test leaves on 111 cannot change their diagnosis.

use mountshare_testkit::ganesha::Ganesha;
use mountshare_testkit::server::{free_port, ServerProcess};
use mountshare_testkit::tempfile;
use mountshare_testkit::tree::TreeBuilder;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn doctor(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .arg("doctor")
        .arg("server")
        .args(args)
        .output()
        .expect("run mountshare doctor");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {report:#}"))
}

fn verdict<'a>(report: &'a Value, name: &str) -> &'a str {
    step(report, name)["verdict"].as_str().unwrap()
}

fn summary(report: &Value, name: &str) -> String {
    step(report, name)["summary"].as_str().unwrap().to_owned()
}

fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let base = tempfile::Builder::new()
        .prefix("mountshare-doctor-")
        // On disk: ganesha needs name_to_handle_at(2), which an older tmpfs /tmp lacks.
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let root = base.path().join("export");
    let t = TreeBuilder::new(&root).unwrap();
    t.dir("movies/empty").unwrap();
    t.file("movies/film.mkv", 100_000, 1).unwrap();
    t.bytes("version.txt", b"v1\n").unwrap();
    (base, root)
}

fn closed_port() -> String {
    free_port().to_string()
}

#[test]
fn healthy_mountshare_server_passes_every_step_and_gets_one_port_mount_lines() {
    let (_base, root) = fixture();
    let server = ServerProcess::start_local(BIN, &root, &[]).unwrap();
    let port = server.port();
    let addr = format!("127.0.0.1:{port}");
    let pm = closed_port();
    let run = doctor(&[&addr, "--json", "--portmap-port", &pm]);
    let r = json(&run);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(r["healthy"], true);
    assert_eq!(r["problems"], 0);
    for s in [
        "tcp_connect",
        "nfs_null",
        "mount_null",
        "export_list",
        "mnt",
        "getattr_root",
        "readdirplus_root",
        "read_file",
    ] {
        assert_eq!(verdict(&r, s), "ok", "{s}: {r:#}");
    }
    assert_eq!(r["mount_port"], port);
    assert_eq!(r["mount_port_found_via"], "nfs_port");
    // No portmapper: a note, with the fix the mount lines carry.
    assert_eq!(verdict(&r, "portmapper"), "note");
    assert!(summary(&r, "portmapper").contains("no portmapper"));
    assert!(
        summary(&r, "readdirplus_root").contains("2 entries"),
        "{r:#}"
    );
    assert!(
        summary(&r, "read_file").contains("/movies/film.mkv")
            || summary(&r, "read_file").contains("/version.txt")
    );
    let lines = &r["mount_lines"];
    let kernel = lines["kernel"].as_str().unwrap();
    assert!(
        kernel.contains(&format!("port={port},mountport={port}")),
        "{kernel}"
    );
    assert!(kernel.starts_with("mount -t nfs -o "));
    assert!(kernel.ends_with(" 127.0.0.1:/ /mnt/dfs"));
    // The freshness options attach mounts with, in every line.
    let fresh = "lookupcache=positive,acdirmin=1,acdirmax=2";
    assert!(kernel.contains(fresh), "{kernel}");
    let data = lines["mount2"]["data"].as_str().unwrap();
    assert!(
        data.contains("addr=127.0.0.1") && data.contains(&format!("mountport={port}")),
        "{data}"
    );
    assert!(data.contains(fresh), "{data}");
    assert_eq!(lines["mount2"]["source"], "127.0.0.1:/");
    assert_eq!(
        lines["attach"],
        format!("mountshare attach --server 127.0.0.1:{port} --export / --target /mnt/dfs")
    );
    assert!(!lines["attach"].as_str().unwrap().contains("--mount-port"));
    let pv = lines["persistent_volume"].as_str().unwrap();
    assert!(pv.contains(&format!("- mountport={port}")));
    assert!(pv.contains("- lookupcache=positive\n"), "{pv}");

    // The same walk as text.
    let text = doctor(&[&addr, "--portmap-port", &pm]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("verdict: healthy"), "{}", text.stdout);
    assert!(text.stdout.contains(kernel), "{}", text.stdout);
    assert!(text.stdout.contains("kind: PersistentVolume"));
}

#[test]
fn a_closed_port_is_a_refused_connection() {
    let port = closed_port();
    let run = doctor(&[
        &format!("127.0.0.1:{port}"),
        "--json",
        "--portmap-port",
        &closed_port(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let r = json(&run);
    assert_eq!(r["healthy"], false);
    assert_eq!(verdict(&r, "tcp_connect"), "problem");
    assert!(summary(&r, "tcp_connect").contains("connection refused"));
    assert!(step(&r, "tcp_connect")["fix"]
        .as_str()
        .unwrap()
        .contains("nothing listens"));
    assert_eq!(verdict(&r, "nfs_null"), "skipped");
    assert_eq!(verdict(&r, "mnt"), "skipped");
    assert!(r.get("mount_lines").is_none());
    let text = doctor(&[
        &format!("127.0.0.1:{port}"),
        "--portmap-port",
        &closed_port(),
    ]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("PROBLEM  tcp_connect"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("verdict: 1 problem found"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_server_that_accepts_and_never_answers_is_caught_by_the_nfs_null_timeout() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s); // accept, read nothing, answer nothing
        }
    });
    let run = doctor(&[
        &format!("127.0.0.1:{port}"),
        "--json",
        "--timeout",
        "1s",
        "--portmap-port",
        &closed_port(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let r = json(&run);
    assert_eq!(verdict(&r, "tcp_connect"), "ok");
    assert_eq!(verdict(&r, "nfs_null"), "problem");
    assert!(
        summary(&r, "nfs_null").contains("does not answer RPC"),
        "{r:#}"
    );
    assert_eq!(verdict(&r, "mount_null"), "skipped");
    assert!(r.get("mount_lines").is_none());
}

#[test]
fn a_wrong_export_is_named_with_the_export_to_use() {
    let (_base, root) = fixture();
    let server = ServerProcess::start_local(BIN, &root, &[]).unwrap();
    let run = doctor(&[
        &format!("127.0.0.1:{}", server.port()),
        "--json",
        "--export",
        "/mnt/dfs",
        "--portmap-port",
        &closed_port(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let r = json(&run);
    assert_eq!(verdict(&r, "mount_null"), "ok");
    assert_eq!(verdict(&r, "mnt"), "problem");
    assert!(summary(&r, "mnt").contains("no such export"), "{r:#}");
    assert!(
        step(&r, "mnt")["fix"]
            .as_str()
            .unwrap()
            .contains("--export /"),
        "{r:#}"
    );
    assert_eq!(verdict(&r, "getattr_root"), "skipped");
}

#[test]
fn an_empty_export_is_a_problem_even_though_every_call_succeeds() {
    // The user's FUSE tree was fine, but the server exported the empty directory beneath it.
    let base = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_local(BIN, base.path(), &[]).unwrap();
    let run = doctor(&[
        &format!("127.0.0.1:{}", server.port()),
        "--json",
        "--portmap-port",
        &closed_port(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let r = json(&run);
    assert_eq!(verdict(&r, "mnt"), "ok");
    assert_eq!(verdict(&r, "readdirplus_root"), "problem");
    assert!(
        summary(&r, "readdirplus_root").contains("is empty"),
        "{r:#}"
    );
    assert!(step(&r, "readdirplus_root")["fix"]
        .as_str()
        .unwrap()
        .contains("FUSE"));
    assert_eq!(verdict(&r, "read_file"), "note");
}

/// Answers NFS NULL and PROG_UNAVAIL to every other program (MOUNT, PORTMAP), as an NFS server
/// whose MOUNT lives elsewhere would on its NFS port.
fn nfs_only_fake() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_fake(stream));
        }
    });
    port
}

fn serve_fake(mut s: TcpStream) {
    loop {
        let mut mark = [0u8; 4];
        if s.read_exact(&mut mark).is_err() {
            return;
        }
        let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
        let mut call = vec![0u8; len];
        if s.read_exact(&mut call).is_err() || len < 24 {
            return;
        }
        let xid = &call[0..4];
        let prog = u32::from_be_bytes(call[12..16].try_into().unwrap());
        let accept_stat: u32 = if prog == 100003 { 0 } else { 1 };
        let mut reply = Vec::new();
        reply.extend_from_slice(&(0x8000_0000u32 | 24).to_be_bytes());
        reply.extend_from_slice(xid);
        for w in [1u32, 0, 0, 0, accept_stat] {
            reply.extend_from_slice(&w.to_be_bytes());
        }
        if s.write_all(&reply).is_err() {
            return;
        }
    }
}

#[test]
fn nfs_without_mount_on_its_port_and_no_portmapper_is_a_problem_naming_mountport() {
    let port = nfs_only_fake();
    let run = doctor(&[
        &format!("127.0.0.1:{port}"),
        "--json",
        "--portmap-port",
        &closed_port(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let r = json(&run);
    assert_eq!(verdict(&r, "nfs_null"), "ok");
    assert_eq!(verdict(&r, "mount_null"), "note");
    assert!(summary(&r, "mount_null").contains("PROG_UNAVAIL"), "{r:#}");
    assert_eq!(verdict(&r, "mount_lookup"), "problem");
    assert!(
        summary(&r, "mount_lookup").contains("no MOUNT v3 service found"),
        "{r:#}"
    );
    assert!(step(&r, "mount_lookup")["fix"]
        .as_str()
        .unwrap()
        .contains("mountport="));
    assert_eq!(verdict(&r, "mnt"), "skipped");
}

fn ganesha_fixture() -> (tempfile::TempDir, Ganesha) {
    let (base, root) = fixture();
    let g = Ganesha::start(&root, free_port(), free_port()).expect("start nfs-ganesha");
    (base, g)
}

#[test]
fn ganesha_mount_port_is_found_through_the_portmapper_and_carried_in_the_lines() {
    let (_base, g) = ganesha_fixture();
    let export = g.export().to_str().unwrap().to_owned();
    let (nfs, mnt) = (g.nfs_port(), g.mount_port());
    let run = doctor(&[&format!("127.0.0.1:{nfs}"), "--json", "--export", &export]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, g.log());
    let r = json(&run);
    assert_eq!(verdict(&r, "nfs_null"), "ok");
    assert_eq!(verdict(&r, "mount_null"), "note");
    assert_eq!(verdict(&r, "portmapper"), "ok", "{r:#}");
    assert_eq!(r["portmapper"]["mount_v3_tcp"], mnt);
    assert_eq!(verdict(&r, "mount_lookup"), "ok");
    assert_eq!(r["mount_port"], mnt);
    assert_eq!(r["mount_port_found_via"], "portmapper");
    assert!(summary(&r, "mount_lookup").contains(&format!("port={nfs},mountport={mnt}")));
    for s in ["mnt", "getattr_root", "readdirplus_root", "read_file"] {
        assert_eq!(verdict(&r, s), "ok", "{s}: {r:#}");
    }
    let lines = &r["mount_lines"];
    let opts = format!("port={nfs},mountport={mnt}");
    assert!(lines["kernel"].as_str().unwrap().contains(&opts));
    assert!(lines["kernel"]
        .as_str()
        .unwrap()
        .contains(&format!(" 127.0.0.1:{export} /mnt/dfs")));
    assert!(lines["mount2"]["data"]
        .as_str()
        .unwrap()
        .contains(&format!("port={nfs},mountport={mnt}")));
    assert!(lines["persistent_volume"]
        .as_str()
        .unwrap()
        .contains(&format!("- mountport={mnt}")));
    // MOUNT on its own port: attach is told where.
    assert!(lines["attach"]
        .as_str()
        .unwrap()
        .ends_with(&format!("--mount-port {mnt}")));

    // Ganesha exports the directory by its path, not "/": MNT / fails and the fix names it.
    let run = doctor(&[&format!("127.0.0.1:{nfs}"), "--json"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let r = json(&run);
    assert_eq!(verdict(&r, "mnt"), "problem");
    assert!(
        step(&r, "mnt")["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("--export {export}")),
        "{r:#}"
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    let run = doctor(&["not a host"]);
    assert_eq!(run.code, 2);
    let run = doctor(&["127.0.0.1:2049", "--export", "relative"]);
    assert_eq!(run.code, 2);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.starts_with("mountshare: "), "{}", run.stderr);
}
