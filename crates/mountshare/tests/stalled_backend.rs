//! `mountshare serve` over FUSE backends that stall, die and come back, as a client on loopback
//! sees it: rclone (a real FUSE file system, over the test kit's debrid-like HTTP origin) with a
//! link that hangs, and the test kit's hangfs killed with SIGKILL and mounted again under a plain
//! `serve DIR`. The kernel client's view of the same is in vm_stall.rs.
//!
//! Needs root and /dev/fuse (both there in CI); rclone and fusermount3 from Debian.

use mountshare_client::proto::nfs3::*;
use mountshare_client::Mounted;
use mountshare_testkit::hangfs::{hangfs_binary, HangFs, HangFsOptions};
use mountshare_testkit::origin::{HangFor, Origin, OriginOptions};
use mountshare_testkit::rclone::RcloneMount;
use mountshare_testkit::server::ServerProcess;
use mountshare_testkit::tempfile;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn read_once(m: &Mounted, fh: &NfsFh3, offset: u64, count: u32) -> Read3Res {
    m.nfs
        .read(&Read3Args {
            file: fh.clone(),
            offset,
            count,
        })
        .await
        .expect("a reply")
}

/// Names in the export root as READDIRPLUS lists them (without `.` and `..`), or the status.
async fn root_names(m: &Mounted) -> Result<Vec<String>, NfsStat3> {
    let res = m
        .nfs
        .readdirplus(&ReadDirPlus3Args {
            dir: m.root.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 8192,
            maxcount: 65536,
        })
        .await
        .expect("a reply");
    let ok = res.ok()?;
    let mut names: Vec<String> = ok
        .reply
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

#[test]
fn rclone_with_a_dead_link_keeps_every_other_file_prompt() {
    let files = tempfile::tempdir().unwrap();
    let healthy: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(files.path().join("healthy.mkv"), &healthy).unwrap();
    std::fs::write(files.path().join("dead.mkv"), b"the dead link's bytes").unwrap();
    let origin = Origin::start(files.path(), OriginOptions::default()).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let _rclone = RcloneMount::start(&origin.url(), mnt.path(), &[]).expect("rclone mount");
    let mut server =
        ServerProcess::start_local(BIN, mnt.path(), &["--backend-timeout", "1s"]).unwrap();
    runtime().block_on(async {
        let m = Mounted::connect(server.addr(), "/").await.unwrap();
        let dead = m.nfs.lookup_path(&m.root, "dead.mkv").await.unwrap();
        let ok = m.nfs.lookup_path(&m.root, "healthy.mkv").await.unwrap();
        // The link dies once listed, as a debrid link does: its bytes never come.
        origin.hang("/dead.mkv", HangFor::Released);
        // The dead link's READ is told to retry (the client waits; the application sees no
        // error), and so is its retry, which joins the call still in rclone.
        assert_eq!(
            read_once(&m, &dead, 0, 4096).await.status(),
            NfsStat3::Jukebox
        );
        assert_eq!(
            read_once(&m, &dead, 0, 4096).await.status(),
            NfsStat3::Jukebox
        );
        // Everything else on the same connection goes on.
        assert_eq!(root_names(&m).await.unwrap(), ["dead.mkv", "healthy.mkv"]);
        assert_eq!(m.nfs.read_all(&ok).await.unwrap(), healthy);
        // The link comes back: a retry gets its bytes.
        origin.release_all();
        let began = Instant::now();
        let data = loop {
            match read_once(&m, &dead, 0, 4096).await {
                Read3Res::Ok(ok) => break ok.data,
                Read3Res::Fail(NfsStat3::Jukebox, _)
                    if began.elapsed() < Duration::from_secs(60) =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => panic!("READ of the released link: {:?}", other.status()),
            }
        };
        assert_eq!(data, b"the dead link's bytes");
    });
    server.terminate(Duration::from_secs(30)).ok();
}

#[test]
fn a_fuse_daemon_killed_and_mounted_again_is_followed_without_an_empty_listing() {
    let hangfs = hangfs_binary().expect("the hangfs binary of mountshare-testkit");
    let source = tempfile::tempdir().unwrap();
    std::fs::create_dir(source.path().join("__all__")).unwrap();
    let movie: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(source.path().join("__all__/movie.mkv"), &movie).unwrap();
    let mnt = tempfile::tempdir().unwrap();
    // Plain `serve DIR`, started before anything is mounted at DIR and told so: it must not
    // list the bare directory (the empty library) in the meantime.
    let mut server = ServerProcess::start_local(
        BIN,
        mnt.path(),
        &["--require-mount", "--backend-timeout", "1s"],
    )
    .unwrap();
    runtime().block_on(async {
        // Nothing mounted yet: MNT fails (the agent retries), never an empty export.
        match Mounted::connect(server.addr(), "/").await {
            Err(mountshare_client::ClientError::Mount(s)) => {
                assert_eq!(s, mountshare_client::proto::mount3::MountStat3::Io)
            }
            other => panic!(
                "MNT with nothing mounted at DIR: {:?}",
                other.map(|m| m.root)
            ),
        }
        let mut fs = HangFs::start(&hangfs, source.path(), mnt.path(), HangFsOptions::default())
            .expect("mount hangfs");
        let m = wait_for_mount(server.addr()).await;
        let names = wait_for_listing(&m).await;
        assert_eq!(names, ["__all__"]);
        let file = m
            .nfs
            .lookup_path(&m.root, "__all__/movie.mkv")
            .await
            .unwrap();
        let half = movie.len() as u64 / 2;
        let first = match read_once(&m, &file, 0, half as u32).await {
            Read3Res::Ok(ok) => ok.data,
            other => panic!("{:?}", other.status()),
        };

        // The daemon dies: its mount stays, dead (ENOTCONN). Clients are told to wait (or get
        // the listing from caches still fresh); the listing is never empty.
        fs.kill9().unwrap();
        let mut waited = false;
        for _ in 0..20 {
            match root_names(&m).await {
                Err(NfsStat3::Jukebox) => waited = true,
                Ok(names) => assert_eq!(names, ["__all__"], "a listing of a dead FUSE mount"),
                Err(other) => panic!("listing of a dead FUSE mount: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(
            waited,
            "once the caches are stale, clients are told to wait"
        );
        // It restarts and mounts again: the same connection, handle and file carry on.
        fs.restart().unwrap();
        assert_eq!(wait_for_listing(&m).await, ["__all__"]);
        let rest = loop {
            match read_once(&m, &file, half, half as u32).await {
                Read3Res::Ok(ok) => break ok.data,
                Read3Res::Fail(NfsStat3::Jukebox, _) => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                other => panic!(
                    "the rest of the file after the remount: {:?}",
                    other.status()
                ),
            }
        };
        assert_eq!([first, rest].concat(), movie);
    });
    let log = server.log();
    assert!(
        log.contains("the mount at DIR changed; serving the new one"),
        "the server says it followed the remount:\n{log}"
    );
    server.terminate(Duration::from_secs(30)).ok();
}

/// MNT once the server serves the mount (it checks every second).
async fn wait_for_mount(addr: std::net::SocketAddr) -> Mounted {
    let began = Instant::now();
    loop {
        match Mounted::connect(addr, "/").await {
            Ok(m) => return m,
            Err(_) if began.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("MNT: {e}"),
        }
    }
}

/// The root's listing once the server serves a mount again (it checks every second).
async fn wait_for_listing(m: &Mounted) -> Vec<String> {
    let began = Instant::now();
    loop {
        match root_names(m).await {
            Ok(names) => return names,
            Err(NfsStat3::Jukebox) if began.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(s) => panic!("listing the root: {s:?}"),
        }
    }
}
