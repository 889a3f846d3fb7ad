//! rclone from Debian, a real FUSE file system, over the test kit's debrid-like HTTP origin: the
//! listing rclone builds from the origin's HTML indexes, and exactly the bytes served, for a
//! file larger than rclone's read chunk (so it is fetched in several Range requests).
//!
//! Needs root, /dev/fuse and rclone (all there in CI); skips with a message otherwise.

use mountshare_testkit::origin::{Origin, OriginOptions};
use mountshare_testkit::rclone::{rclone_available, RcloneMount};
use mountshare_testkit::tree::{md5_file, TreeBuilder};
use std::path::Path;
use std::time::Duration;

#[test]
fn rclone_over_the_origin_reads_exactly_the_bytes_served() {
    if !Path::new("/dev/fuse").exists() || !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED rclone over the origin: needs root and /dev/fuse");
        return;
    }
    if !rclone_available() {
        eprintln!(
            "SKIPPED rclone over the origin: rclone is not installed (Debian package rclone)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let tree = TreeBuilder::new(&source).unwrap();
    tree.bytes("small.txt", b"hello from the origin\n").unwrap();
    tree.file("Movies/A Film (2001)/a film.mkv", 300_000, 1)
        .unwrap();
    // 3.5 MiB against a 1 MiB first chunk (rclone doubles it: 1, 2, 4 MiB): at least 2 ranges.
    tree.file("__all__/big.bin", 3_500_000, 2).unwrap();

    let origin = Origin::start(
        &source,
        OriginOptions {
            ttfb: Duration::from_millis(50),
            ..OriginOptions::default()
        },
    )
    .unwrap();
    let rclone = RcloneMount::start(&origin.url(), &mnt, &["--vfs-read-chunk-size", "1M"]).unwrap();

    let mut top: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["Movies", "__all__", "small.txt"]);
    for rel in [
        "small.txt",
        "Movies/A Film (2001)/a film.mkv",
        "__all__/big.bin",
    ] {
        let served = source.join(rel);
        let seen = mnt.join(rel);
        assert_eq!(
            std::fs::metadata(&seen).unwrap().len(),
            std::fs::metadata(&served).unwrap().len(),
            "{rel}"
        );
        assert_eq!(
            md5_file(&seen).unwrap(),
            md5_file(&served).unwrap(),
            "{rel}"
        );
    }
    let ranged: Vec<_> = origin
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/__all__/big.bin" && r.range.is_some())
        .collect();
    assert!(
        ranged.len() >= 2,
        "rclone read the big file in chunks: {ranged:?}\n{}",
        rclone.log()
    );
    assert!(ranged.iter().all(|r| r.status == 206), "{ranged:?}");
}
