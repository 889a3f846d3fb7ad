//! The `hangfs` test FUSE file system itself: a passthrough whose chosen reads hang until
//! released, with 80 of them hung at once while the rest of the mount stays usable; EIO on
//! demand; a `kill -9` that leaves a dead mount and a restart that serves again; directory times
//! passed through, frozen or moving (`--dir-times`), with listings passed through in every mode.
//!
//! Needs root and /dev/fuse (both are there in CI); skips with a message otherwise.

use mountshare_testkit::hangfs::{DirTimes, HangFs, HangFsOptions};
use mountshare_testkit::tree::{md5_bytes, md5_file, TreeBuilder};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// Past the one second the kernel keeps attributes it got from hangfs.
const PAST_TTL: Duration = Duration::from_millis(1100);

/// `(mtime, ctime)` of `path` in nanoseconds since the epoch.
fn times(path: &Path) -> (i128, i128) {
    let m = std::fs::metadata(path).unwrap();
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    (ns(m.mtime(), m.mtime_nsec()), ns(m.ctime(), m.ctime_nsec()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mount_with(f: &Fixture, dir_times: DirTimes) -> HangFs {
    HangFs::start(
        BIN,
        &f.source,
        &f.mnt,
        HangFsOptions::default().dir_times(dir_times),
    )
    .unwrap()
}

#[test]
fn frozen_directory_times_stay_while_entries_come_and_listings_show_them_at_once() {
    if !can_mount_fuse("frozen_directory_times_stay") {
        return;
    }
    let f = fixture(1);
    let fs = mount_with(&f, DirTimes::Frozen);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let before = times(&f.mnt.join("ok"));
    let meta = std::fs::metadata(f.mnt.join("ok")).unwrap();
    assert_eq!(before.0, before.1, "mtime and ctime are the same time");
    assert_eq!(before.0 % 1_000_000_000, 0, "a whole second");
    let frozen_secs = (before.0 / 1_000_000_000) as u64;
    assert!(
        frozen_secs <= now.as_secs() && frozen_secs + 60 > now.as_secs(),
        "the daemon's start: {frozen_secs} (now {})",
        now.as_secs()
    );
    assert_eq!(times(&f.mnt), before, "every directory has the same times");
    assert_eq!(times(&f.mnt.join("hang")), before);
    let listed = names(&f.mnt.join("ok"));

    // Add a file and a folder on the host: they show in the next listing at once (the kernel
    // caches no listing), and in a lookup; the directory's attributes do not move, even once
    // the kernel asks the daemon again.
    std::fs::write(f.source.join("ok/new.txt"), b"new\n").unwrap();
    std::fs::create_dir(f.source.join("ok/new-dir")).unwrap();
    let mut want = listed.clone();
    want.extend(["new-dir".to_string(), "new.txt".to_string()]);
    want.sort();
    assert_eq!(names(&f.mnt.join("ok")), want);
    assert_eq!(std::fs::read(f.mnt.join("ok/new.txt")).unwrap(), b"new\n");
    std::thread::sleep(PAST_TTL);
    let after = std::fs::metadata(f.mnt.join("ok")).unwrap();
    assert_eq!(times(&f.mnt.join("ok")), before, "frozen times moved");
    assert_eq!((after.size(), after.nlink()), (meta.size(), meta.nlink()));
    let host = times(&f.source.join("ok"));
    assert_ne!(host, before, "the host directory's own times did move");

    // Removing entries changes nothing either.
    std::fs::remove_file(f.source.join("ok/new.txt")).unwrap();
    std::thread::sleep(PAST_TTL);
    assert_eq!(times(&f.mnt.join("ok")), before);
    assert!(!names(&f.mnt.join("ok")).contains(&"new.txt".to_string()));
    // Files keep their own times.
    assert_eq!(
        times(&f.mnt.join("ok/small.txt")),
        times(&f.source.join("ok/small.txt"))
    );
    drop(fs);
}

#[test]
fn moving_directory_times_are_the_time_of_each_stat() {
    if !can_mount_fuse("moving_directory_times_are_the_time_of_each_stat") {
        return;
    }
    let f = fixture(1);
    let fs = mount_with(&f, DirTimes::Moving);
    let host = times(&f.source.join("ok"));
    let listed = names(&f.mnt.join("ok"));
    let first = times(&f.mnt.join("ok"));
    std::thread::sleep(PAST_TTL);
    let second = times(&f.mnt.join("ok"));
    // Nothing changed, yet each stat reports its own time: at least the 1.1 s slept apart
    // (the kernel caches no directory attributes, so no stat is answered from its cache).
    assert!(
        second.0 - first.0 >= 1_000_000_000 && second.1 - first.1 >= 1_000_000_000,
        "{first:?} then {second:?}"
    );
    let stat_now = times(&f.mnt.join("ok"));
    assert!(stat_now.0 > second.0, "the very next stat moves too");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    assert!(stat_now.0 <= now && now - stat_now.0 < 5_000_000_000);
    assert!(times(&f.mnt).0 > first.0, "the root's times move too");
    assert_eq!(times(&f.source.join("ok")), host, "the host did not change");
    assert_eq!(names(&f.mnt.join("ok")), listed, "nor did the listing");
    // Files keep their own times.
    assert_eq!(
        times(&f.mnt.join("ok/small.txt")),
        times(&f.source.join("ok/small.txt"))
    );
    drop(fs);
}

#[test]
fn passthrough_directory_times_are_the_host_directory_times() {
    if !can_mount_fuse("passthrough_directory_times_are_the_host_directory_times") {
        return;
    }
    let f = fixture(1);
    let fs = mount_with(&f, DirTimes::Passthrough);
    assert_eq!(times(&f.mnt.join("ok")), times(&f.source.join("ok")));
    let before = times(&f.mnt.join("ok"));
    std::thread::sleep(PAST_TTL);
    assert_eq!(times(&f.mnt.join("ok")), before, "nothing changed");
    std::fs::write(f.source.join("ok/new.txt"), b"new\n").unwrap();
    assert!(names(&f.mnt.join("ok")).contains(&"new.txt".to_string()));
    std::thread::sleep(PAST_TTL);
    let host = times(&f.source.join("ok"));
    assert_ne!(host, before);
    assert_eq!(times(&f.mnt.join("ok")), host, "the host's new times");
    assert_eq!(
        std::fs::metadata(f.mnt.join("ok")).unwrap().nlink(),
        std::fs::metadata(f.source.join("ok")).unwrap().nlink()
    );
    drop(fs);
}
