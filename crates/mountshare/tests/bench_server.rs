//! `mountshare bench` against `mountshare serve` (and once against nfs-ganesha, whose MOUNT port
//! it must find through rpcbind), with the figures checked for plausibility: bytes counted equal
//! bytes requested, operations counted equal operations asked for, a walk sees every entry.
//! No timing is asserted: the bench prints figures, it does not judge them.

use mountshare_testkit::ganesha::Ganesha;
use mountshare_testkit::server::{free_port, ServerProcess};
use mountshare_testkit::tempfile;
use mountshare_testkit::tree::TreeBuilder;
use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const MIB: u64 = 1 << 20;

fn bench(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run mountshare bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().expect("exited"), v, stderr)
}

struct Served {
    _base: tempfile::TempDir,
    root: std::path::PathBuf,
    server: ServerProcess,
}

/// 2.5 MiB and 100,000-byte files, and a tree of 4 directories x 25 files under /tree.
fn served() -> Served {
    let base = tempfile::Builder::new()
        .prefix("mountshare-bench-")
        // On disk: ganesha needs name_to_handle_at(2), which an older tmpfs /tmp lacks.
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let root = base.path().join("export");
    let t = TreeBuilder::new(&root).unwrap();
    t.file("media/two-and-a-half.bin", 5 * MIB / 2, 7).unwrap();
    t.file("media/small.bin", 100_000, 8).unwrap();
    for d in 0..4 {
        for f in 0..25 {
            t.bytes(format!("tree/d{d}/f{f:02}"), b"x").unwrap();
        }
    }
    let server = ServerProcess::start_local(BIN, &root, &[]).unwrap();
    Served {
        _base: base,
        root,
        server,
    }
}

fn addr(s: &Served) -> String {
    format!("127.0.0.1:{}", s.server.port())
}

fn phase(r: &Value, i: usize) -> &Value {
    &r["phases"][i]
}

#[test]
fn fixed_bytes_mode_reads_exactly_the_bytes_asked_for_across_file_ends() {
    let s = served();
    // 10 MiB over a 2.5 MiB file read 1 MiB at a time: four passes of 1 + 1 + 0.5 MiB
    // would be 12 READs for exactly 10 MiB.
    let (code, r, err) = bench(&[
        "--server",
        &addr(&s),
        "--file",
        "/media/two-and-a-half.bin",
        "--bytes",
        "10MiB",
        "--read-size",
        "1MiB",
        "--in-flight",
        "4",
    ]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    let p = phase(&r, 0);
    assert_eq!(p["workload"], "read");
    assert_eq!(p["stopped_by"], "bytes");
    assert_eq!(p["bytes"], 10 * MIB);
    assert_eq!(p["bytes_requested"], 10 * MIB);
    assert_eq!(p["ops"], 12);
    assert_eq!(p["latency"]["count"], 12);
    assert_eq!(p["errors"], 0);
    assert_eq!(p["short_reads"], 0);
    assert!(p["mb_per_s"].as_f64().unwrap() > 0.0);
    let lat = &p["latency"];
    assert!(lat["p50_us"].as_f64().unwrap() <= lat["p99_us"].as_f64().unwrap());
    assert!(lat["p99_us"].as_f64().unwrap() <= lat["max_us"].as_f64().unwrap());
}

#[test]
fn several_files_with_no_limit_are_each_read_once_over_several_connections() {
    let s = served();
    let (code, r, err) = bench(&[
        "--server",
        &addr(&s),
        "--file",
        "/media/two-and-a-half.bin",
        "--file",
        "/media/small.bin",
        "--read-size",
        "64KiB",
        "--connections",
        "2",
        "--in-flight",
        "3",
    ]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    let p = phase(&r, 0);
    assert_eq!(p["stopped_by"], "done");
    assert_eq!(p["bytes"], 5 * MIB / 2 + 100_000);
    assert_eq!(p["bytes_requested"], p["bytes"]);
    // 40 READs of 64 KiB, then ceil(100000 / 65536) = 2.
    assert_eq!(p["ops"], 42);
    assert_eq!(r["connections"], 2);
    assert_eq!(r["read_size"], 65536);
}

#[test]
fn fixed_duration_mode_counts_what_it_read() {
    let s = served();
    let (code, r, err) = bench(&[
        "--server",
        &addr(&s),
        "--file",
        "/media/small.bin",
        "--duration",
        "500ms",
        "--read-size",
        "16KiB",
    ]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    let p = phase(&r, 0);
    assert_eq!(p["stopped_by"], "duration");
    assert!(p["ops"].as_u64().unwrap() > 0);
    assert_eq!(p["bytes"], p["bytes_requested"]);
    assert_eq!(p["latency"]["count"], p["ops"]);
}

#[test]
fn the_metadata_mix_does_the_operations_asked_for() {
    let s = served();
    let (code, r, err) = bench(&[
        "--server",
        &addr(&s),
        "--workload",
        "meta",
        "--dir",
        "/tree/d1",
        "--ops",
        "1000",
    ]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    let p = phase(&r, 0);
    assert_eq!(p["stopped_by"], "ops");
    assert_eq!(p["ops"], 1000);
    let by: Vec<(String, u64)> = p["by_op"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["op"].as_str().unwrap().to_owned(),
                o["ops"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(by.contains(&("GETATTR".to_owned(), 500)), "{by:?}");
    assert!(by.contains(&("LOOKUP".to_owned(), 500)), "{by:?}");
}

#[test]
fn a_walk_sees_every_entry_and_the_default_workload_reads_the_largest_file() {
    let s = served();
    let (code, r, err) = bench(&[
        "--server",
        &addr(&s),
        "--workload",
        "walk",
        "--dir",
        "/tree",
    ]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    let p = phase(&r, 0);
    assert_eq!(p["stopped_by"], "done");
    assert_eq!(p["entries"], 4 + 100);
    assert_eq!(p["directories"], 5);

    // Only --server: walk the export, then read its largest file once.
    let (code, r, err) = bench(&["--server", &addr(&s)]);
    assert_eq!(code, 0, "{r:#}\n{err}");
    let walk = phase(&r, 0);
    assert_eq!(walk["workload"], "walk");
    // media, tree, 2 files, 4 dirs, 100 files.
    assert_eq!(walk["entries"], 2 + 2 + 4 + 100);
    let read = phase(&r, 1);
    assert_eq!(read["workload"], "read");
    assert!(
        read["subject"]
            .as_str()
            .unwrap()
            .starts_with("/media/two-and-a-half.bin"),
        "{read:#}"
    );
    assert_eq!(read["bytes"], 5 * MIB / 2);
    assert_eq!(read["bytes_requested"], 5 * MIB / 2);
    let _ = &s.root;
}

#[test]
fn bench_finds_ganeshas_mount_port_and_reads_the_same_bytes() {
    let s = served();
    let g = Ganesha::start(&s.root, free_port(), free_port()).expect("start nfs-ganesha");
    let export = g.export().to_str().unwrap().to_owned();
    let (code, r, err) = bench(&[
        "--server",
        &format!("127.0.0.1:{}", g.nfs_port()),
        "--export",
        &export,
        "--file",
        "/media/two-and-a-half.bin",
        "--bytes",
        "4MiB",
        "--read-size",
        "256KiB",
    ]);
    assert_eq!(code, 0, "{r:#}\n{err}\n{}", g.log());
    assert_eq!(r["mount_port"], g.mount_port());
    let p = phase(&r, 0);
    assert_eq!(p["bytes"], 4 * MIB);
    assert_eq!(p["ops"], 16);
    assert_eq!(p["errors"], 0);
}

#[test]
fn bad_arguments_exit_2() {
    let out = Command::new(BIN)
        .args(["bench", "--server", "127.0.0.1:1", "--workload", "read"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs at least one --file"), "{err}");
    let out = Command::new(BIN)
        .args(["bench", "--server", "127.0.0.1:1", "--read-size", "2MiB"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
