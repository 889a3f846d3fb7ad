//! The `hangfs` test FUSE file system itself: a passthrough whose chosen reads hang until
//! released, with 80 of them hung at once while the rest of the mount stays usable; EIO on
//! demand; a `kill -9` that leaves a dead mount and a restart that serves again.
//!
//! Needs root and /dev/fuse (both are there in CI); skips with a message otherwise.

use mountshare_testkit::hangfs::{HangFs, HangFsOptions};
use mountshare_testkit::tree::{md5_bytes, md5_file, TreeBuilder};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_hangfs");
const HUNG: usize = 80;

fn can_mount_fuse(test: &str) -> bool {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED {test}: /dev/fuse is missing (load the fuse module)");
        return false;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED {test}: needs root to mount FUSE with allow_other");
        return false;
    }
    true
}

struct Fixture {
    _dir: tempfile::TempDir,
    source: PathBuf,
    mnt: PathBuf,
}

fn fixture(hanging: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let tree = TreeBuilder::new(&source).unwrap();
    for i in 0..hanging {
        tree.file(format!("hang/h{i:03}.bin"), 200_000, i as u64)
            .unwrap();
    }
    tree.file("ok/healthy-5M.bin", 5 << 20, 4242).unwrap();
    tree.bytes("ok/small.txt", b"small\n").unwrap();
    Fixture {
        _dir: dir,
        source,
        mnt,
    }
}

/// Reads `path` on its own thread; the result arrives on the channel.
fn read_in_background(path: PathBuf) -> (JoinHandle<()>, mpsc::Receiver<std::io::Result<Vec<u8>>>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(std::fs::read(&path));
    });
    (handle, rx)
}

#[test]
fn eighty_hung_reads_block_nothing_else_and_get_their_data_when_released() {
    if !can_mount_fuse("eighty_hung_reads_block_nothing_else") {
        return;
    }
    let f = fixture(HUNG);
    let fs = HangFs::start(
        BIN,
        &f.source,
        &f.mnt,
        HangFsOptions {
            hang: vec!["hang/*".into()],
            ..HangFsOptions::default()
        },
    )
    .unwrap();

    let readers: Vec<_> = (0..HUNG)
        .map(|i| read_in_background(f.mnt.join(format!("hang/h{i:03}.bin"))))
        .collect();
    // Every reader's first read is in the daemon at the same time: nothing queues behind them.
    assert!(fs.wait_hung(HUNG, Duration::from_secs(60)).unwrap() >= HUNG);

    // The rest of the mount answers meanwhile (a stall would block these calls, and the test
    // would not finish; the fixture's drop then answers the hung reads with EIO).
    let meta = std::fs::metadata(f.mnt.join("ok/healthy-5M.bin")).unwrap();
    assert_eq!(meta.len(), 5 << 20);
    let mut names: Vec<_> = std::fs::read_dir(f.mnt.join("hang"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), HUNG);
    assert_eq!(
        md5_file(&f.mnt.join("ok/healthy-5M.bin")).unwrap(),
        md5_file(&f.source.join("ok/healthy-5M.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read(f.mnt.join("ok/small.txt")).unwrap(),
        b"small\n"
    );
    for (_, rx) in &readers {
        assert!(
            rx.try_recv().is_err(),
            "a hung read returned before its release"
        );
    }

    // Release half by pattern, then the rest: each gets exactly its bytes.
    let first_half = fs.release("hang/h00*").unwrap() + fs.release("hang/h01*").unwrap();
    assert!(first_half >= 20, "released {first_half}");
    let rest = fs.release_all().unwrap();
    assert!(rest >= HUNG - 20, "released {rest}");
    for (i, (handle, rx)) in readers.into_iter().enumerate() {
        let data = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a released read returns")
            .expect("a released read succeeds");
        handle.join().unwrap();
        assert_eq!(
            md5_bytes(&data),
            md5_file(&f.source.join(format!("hang/h{i:03}.bin"))).unwrap(),
            "h{i:03}.bin"
        );
    }
    assert_eq!(fs.hung().unwrap(), 0);
    let (hung, reads, hung_total) = fs.stats().unwrap();
    assert_eq!(hung, 0);
    assert!(
        hung_total >= HUNG as u64 && reads > hung_total,
        "{reads} {hung_total}"
    );
}

#[test]
fn fail_answers_hung_reads_with_eio_and_hanging_can_start_later() {
    if !can_mount_fuse("fail_answers_hung_reads_with_eio") {
        return;
    }
    let f = fixture(2);
    let fs = HangFs::start(BIN, &f.source, &f.mnt, HangFsOptions::default()).unwrap();
    // Nothing hangs until asked.
    assert_eq!(
        md5_file(&f.mnt.join("hang/h000.bin")).unwrap(),
        md5_file(&f.source.join("hang/h000.bin")).unwrap()
    );
    fs.hang("hang/h001.bin").unwrap();
    let (handle, rx) = read_in_background(f.mnt.join("hang/h001.bin"));
    assert_eq!(fs.wait_hung(1, Duration::from_secs(30)).unwrap(), 1);
    assert_eq!(fs.fail("hang/*").unwrap(), 1);
    let err = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap_err();
    handle.join().unwrap();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error()),
        "{err}"
    );
    // Failing is a rule: the next read fails at once.
    assert_eq!(
        std::fs::read(f.mnt.join("hang/h001.bin"))
            .unwrap_err()
            .raw_os_error(),
        Some(rustix::io::Errno::IO.raw_os_error())
    );
    // A later rule wins: release one file of a hanging pattern.
    fs.hang("hang/*").unwrap();
    fs.release("hang/h000.bin").unwrap();
    assert_eq!(
        std::fs::read(f.mnt.join("hang/h000.bin")).unwrap().len(),
        200_000
    );
    assert_eq!(fs.hung().unwrap(), 0);
}

#[test]
fn kill9_leaves_a_dead_mount_and_restart_serves_the_same_tree_again() {
    if !can_mount_fuse("kill9_leaves_a_dead_mount") {
        return;
    }
    let f = fixture(1);
    let mut fs = HangFs::start(BIN, &f.source, &f.mnt, HangFsOptions::default()).unwrap();
    assert_eq!(
        std::fs::read(f.mnt.join("ok/small.txt")).unwrap(),
        b"small\n"
    );
    fs.kill9().unwrap();
    // (stat may still answer from the kernel's attribute cache; opening needs the daemon.)
    let err = std::fs::read(f.mnt.join("ok/small.txt")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::NOTCONN.raw_os_error()),
        "a dead FUSE mount answers ENOTCONN: {err}"
    );
    fs.restart().unwrap();
    assert_eq!(
        std::fs::read(f.mnt.join("ok/small.txt")).unwrap(),
        b"small\n"
    );
    assert_eq!(
        md5_file(&f.mnt.join("ok/healthy-5M.bin")).unwrap(),
        md5_file(&f.source.join("ok/healthy-5M.bin")).unwrap()
    );
    fs.stop();
    assert_eq!(mountshare_testkit::hangfs::mount_type_at(&f.mnt), None);
}

#[test]
fn with_the_kernel_default_only_twelve_reads_reach_the_daemon() {
    if !can_mount_fuse("with_the_kernel_default_only_twelve_reads_reach_the_daemon") {
        return;
    }
    let f = fixture(20);
    let fs = HangFs::start(
        BIN,
        &f.source,
        &f.mnt,
        HangFsOptions {
            hang: vec!["hang/*".into()],
            ..HangFsOptions::default().kernel_default_max_background()
        },
    )
    .unwrap();
    let readers: Vec<_> = (0..20)
        .map(|i| read_in_background(f.mnt.join(format!("hang/h{i:03}.bin"))))
        .collect();
    assert_eq!(fs.wait_hung(12, Duration::from_secs(60)).unwrap(), 12);
    // The other 8 wait in the kernel for a background slot, never reaching the daemon.
    let more = fs.wait_hung(13, Duration::from_secs(2));
    assert!(
        more.is_err(),
        "more than 12 reads reached the daemon: {more:?}"
    );
    fs.release_all().unwrap();
    for (handle, rx) in readers {
        let data = rx.recv_timeout(Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!(data.len(), 200_000);
        handle.join().unwrap();
    }
}
