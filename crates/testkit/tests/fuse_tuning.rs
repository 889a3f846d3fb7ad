//! `mountshare_mounts::fuse` on a real FUSE mount (hangfs keeping the kernel's default
//! `max_background` of 12, as rclone and go-fuse do): it finds the connection under
//! /sys/fs/fuse/connections (mounting fusectl if needed), raises both limits, and a healthy read
//! then gets through while the connection's 12 default slots are held by hung reads, including
//! one that was already waiting for a slot when the tuning was applied.
//!
//! Needs root and /dev/fuse (both are there in CI); skips with a message otherwise.

use mountshare_mounts::fuse::{
    tune_path, FuseConnection, FuseLimits, FuseTuneOutcome, CONNECTIONS_DIR,
    KERNEL_DEFAULT_CONGESTION_THRESHOLD, KERNEL_DEFAULT_MAX_BACKGROUND,
};
use mountshare_mounts::mountinfo::MountTable;
use mountshare_testkit::hangfs::{HangFs, HangFsOptions};
use mountshare_testkit::tree::{md5_bytes, md5_file, TreeBuilder};
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_hangfs");

fn fusectl_mounted() -> bool {
    let text = std::fs::read("/proc/self/mountinfo").unwrap();
    MountTable::parse(&text)
        .unwrap()
        .top_at(Path::new(CONNECTIONS_DIR))
        .is_some_and(|m| m.fstype == "fusectl")
}

/// Polls `done` (a kernel counter, which has no event to wait on) for up to a minute.
fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    for _ in 0..6000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn tuning_raises_the_limits_and_healthy_reads_get_past_twelve_hung_ones() {
    if !Path::new("/dev/fuse").exists() || !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED fuse tuning: needs root and /dev/fuse");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let tree = TreeBuilder::new(&source).unwrap();
    for i in 0..20 {
        tree.file(format!("hang/h{i:02}.bin"), 100_000, i).unwrap();
    }
    tree.file("ok/healthy-5M.bin", 5 << 20, 7).unwrap();
    let fs = HangFs::start(
        BIN,
        &source,
        &mnt,
        HangFsOptions {
            hang: vec!["hang/*".into()],
            ..HangFsOptions::default().kernel_default_max_background()
        },
    )
    .unwrap();

    let fusectl_before = fusectl_mounted();
    let conn = FuseConnection::find_path(&mnt).unwrap();
    assert!(fusectl_mounted());
    assert_eq!(conn.mounted_fusectl(), !fusectl_before);
    assert!(
        conn.dir().starts_with(CONNECTIONS_DIR),
        "{}",
        conn.dir().display()
    );
    assert_eq!(
        conn.limits().unwrap(),
        FuseLimits {
            max_background: KERNEL_DEFAULT_MAX_BACKGROUND,
            congestion_threshold: KERNEL_DEFAULT_CONGESTION_THRESHOLD
        }
    );

    // Take every default slot with hung reads (the rest wait in the kernel).
    let (tx, rx) = mpsc::channel();
    let readers: Vec<_> = (0..20)
        .map(|i| {
            let path = mnt.join(format!("hang/h{i:02}.bin"));
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(std::fs::read(path).map(|d| d.len()));
            })
        })
        .collect();
    assert_eq!(fs.wait_hung(12, Duration::from_secs(60)).unwrap(), 12);
    assert!(
        conn.waiting().unwrap() >= 12,
        "waiting {}",
        conn.waiting().unwrap()
    );

    // A healthy read now waits in the kernel for a slot, behind the hung ones.
    let healthy = mnt.join("ok/healthy-5M.bin");
    let want = md5_file(&source.join("ok/healthy-5M.bin")).unwrap();
    let read_healthy = || {
        let (sum_tx, sum_rx) = mpsc::channel();
        let healthy = healthy.clone();
        std::thread::spawn(move || {
            let _ = sum_tx.send(std::fs::read(healthy).map(|d| md5_bytes(&d)));
        });
        sum_rx
    };
    let blocked = read_healthy();
    wait_until(
        || conn.waiting().unwrap() >= 21,
        "the healthy read to wait on the connection",
    );
    assert!(
        blocked.try_recv().is_err(),
        "the healthy read got a slot untuned"
    );

    let outcome = tune_path(&mnt, 256);
    let FuseTuneOutcome::Raised {
        connection,
        before,
        after,
        ..
    } = &outcome
    else {
        panic!("expected Raised, got {outcome:?}");
    };
    assert_eq!(connection, conn.dir());
    assert_eq!(
        (before.max_background, before.congestion_threshold),
        (12, 9)
    );
    assert_eq!(
        (after.max_background, after.congestion_threshold),
        (256, 192)
    );
    // What the kernel itself now says, read back from sysfs.
    let read = |name: &str| std::fs::read_to_string(conn.dir().join(name)).unwrap();
    assert_eq!(read("max_background").trim(), "256");
    assert_eq!(read("congestion_threshold").trim(), "192");
    println!("{outcome}");

    // The read that was already waiting gets through (the kernel wakes one waiter per write of
    // the limit; tuning wakes them all), and so does a new one, while the 12 stay hung. Without
    // the tuning both wait until the hung reads are released: the bounds would fail the test.
    let bound = Duration::from_secs(60);
    let sum = blocked
        .recv_timeout(bound)
        .expect("the waiting read gets through once tuned");
    assert_eq!(sum.unwrap(), want);
    let sum = read_healthy()
        .recv_timeout(bound)
        .expect("a new read gets through");
    assert_eq!(sum.unwrap(), want);
    assert!(fs.hung().unwrap() >= 12);

    // Applying it again changes nothing; it never lowers; 0 leaves the connection alone.
    assert!(matches!(
        tune_path(&mnt, 256),
        FuseTuneOutcome::AlreadyHigh { .. }
    ));
    std::fs::write(conn.dir().join("max_background"), "1000").unwrap();
    match tune_path(&mnt, 256) {
        FuseTuneOutcome::AlreadyHigh { limits, .. } => assert_eq!(
            limits,
            FuseLimits {
                max_background: 1000,
                congestion_threshold: 192
            }
        ),
        other => panic!("expected AlreadyHigh, got {other:?}"),
    }
    assert_eq!(tune_path(&mnt, 0), FuseTuneOutcome::Disabled);
    assert_eq!(conn.limits().unwrap().max_background, 1000);

    fs.release_all().unwrap();
    for _ in &readers {
        let len = rx.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!(len, 100_000);
    }
    for r in readers {
        r.join().unwrap();
    }
}
