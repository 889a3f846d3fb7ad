//! A backend that stalls (a dead debrid link behind a FUSE read): the client is told to retry
//! (NFS3ERR_JUKEBOX) at the backend timeout instead of waiting with its whole mount, the stuck
//! call goes on and its retries join it, metadata never waits for what stuck READs hold, and a
//! root without the names it must hold is never listed.
mod common;

use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_client::{ConnectOptions, Mounted};
use mountshare_fs::fault::{Fault, FaultFs, Op};
use mountshare_fs::LocalFs;
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(400);

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for name in ["slow-a.mkv", "slow-b.mkv", "slow-c.mkv"] {
        std::fs::write(t.path().join(name), b"slow bytes").unwrap();
    }
    std::fs::write(t.path().join("fast.txt"), b"fast bytes").unwrap();
    std::fs::create_dir(t.path().join("__all__")).unwrap();
    t
}

/// Reads of `slow*` files wait until released; READ copies, so the read is where it waits.
fn gated(dir: &std::path::Path) -> Arc<FaultFs<LocalFs>> {
    let fs = faulty(dir);
    fs.offer_open_files(false);
    fs.inject(
        Op::Read,
        Fault::hold().on(|p| p.file_name().starts_with(b"slow")),
    );
    fs
}

async fn read_at(m: &Mounted, fh: &NfsFh3, offset: u64) -> Read3Res {
    m.nfs
        .read(&Read3Args {
            file: fh.clone(),
            offset,
            count: 100,
        })
        .await
        .unwrap()
}

fn status(r: &Read3Res) -> NfsStat3 {
    r.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_read_is_told_to_retry_and_its_retries_join_it() {
    let t = tree();
    let fs = gated(t.path());
    let _release = fs.releaser();
    let srv = TestServer::start_with(fs.clone(), |c| c.backend_timeout = TIMEOUT).await;
    let m = srv.mount().await;
    let slow = m.nfs.lookup_path(&m.root, "slow-a.mkv").await.unwrap();

    // The first READ waits at most the backend timeout, then hears JUKEBOX.
    assert_eq!(status(&read_at(&m, &slow, 0).await), NfsStat3::Jukebox);
    assert_eq!(fs.held(Op::Read), 1, "the backend call goes on");
    assert_eq!(srv.observer.stalls().stuck_now, 1);
    // The client's retries (new xids, same arguments) join it: no second backend call.
    assert_eq!(status(&read_at(&m, &slow, 0).await), NfsStat3::Jukebox);
    assert_eq!(status(&read_at(&m, &slow, 0).await), NfsStat3::Jukebox);
    assert_eq!(fs.calls(Op::Read), 1);
    // Another range of the same file does not start another stuck call either.
    assert_eq!(status(&read_at(&m, &slow, 5).await), NfsStat3::Jukebox);
    assert_eq!(fs.calls(Op::Read), 1);

    // The backend answers: the next retry gets the data at once.
    fs.release(Op::Read);
    wait_until(|| srv.observer.stalls().stuck_now == 0).await;
    match read_at(&m, &slow, 0).await {
        Read3Res::Ok(ok) => assert_eq!(ok.data, b"slow bytes"),
        other => panic!("the retry after the backend answered: {:?}", other.status()),
    }
    assert_eq!(fs.calls(Op::Read), 1, "the retry took the late result");
    let stats = srv.observer.stalls();
    assert_eq!(stats.timed_out, 1);
    assert!(stats.joined >= 3, "{stats:?}");
    // And the file reads normally from then on.
    match read_at(&m, &slow, 5).await {
        Read3Res::Ok(ok) => assert_eq!(ok.data, b"bytes"),
        other => panic!("{:?}", other.status()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_never_waits_for_what_stuck_reads_hold() {
    let t = tree();
    let fs = gated(t.path());
    let _release = fs.releaser();
    // One READ at a time per connection and overall, and no deadline to help: only the lanes
    // keep metadata going.
    let srv = TestServer::start_with(fs.clone(), |c| {
        c.limits.per_connection_in_flight = 1;
        c.limits.total_in_flight = 1;
        c.backend_timeout = Duration::from_secs(600);
    })
    .await;
    let opts = ConnectOptions {
        max_in_flight: 64,
        ..ConnectOptions::default()
    };
    let m = Mounted::connect_with(srv.addr, "/", opts).await.unwrap();
    let mut stuck = Vec::new();
    for (i, name) in ["slow-a.mkv", "slow-b.mkv", "slow-c.mkv"]
        .iter()
        .enumerate()
    {
        let fh = m.nfs.lookup_path(&m.root, name).await.unwrap();
        let m = m.clone();
        stuck.push(tokio::spawn(
            async move { read_at(&m, &fh, i as u64).await },
        ));
    }
    wait_held(&fs, Op::Read, 1).await;
    // The READ lane is full (one held, two waiting for it); the same connection still answers
    // everything else, and keeps being read.
    let fast = m.nfs.lookup_path(&m.root, "fast.txt").await.unwrap();
    m.nfs.getattr_of(&fast).await.unwrap();
    assert_eq!(m.nfs.readdirplus_all(&m.root).await.unwrap().len(), 7);
    let fsinfo = m
        .nfs
        .fsinfo(&FsInfo3Args {
            fsroot: m.root.clone(),
        })
        .await
        .unwrap();
    assert_eq!(fsinfo.status(), NfsStat3::Ok);
    assert!(stuck.iter().all(|s| !s.is_finished()));
    fs.release(Op::Read);
    for s in stuck {
        assert_eq!(s.await.unwrap().status(), NfsStat3::Ok);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_calls_are_capped_and_counted() {
    let t = tree();
    let fs = gated(t.path());
    let _release = fs.releaser();
    let srv = TestServer::start_with(fs.clone(), |c| {
        c.backend_timeout = TIMEOUT;
        c.limits.max_stuck = 2;
    })
    .await;
    let m = srv.mount().await;
    let a = m.nfs.lookup_path(&m.root, "slow-a.mkv").await.unwrap();
    let b = m.nfs.lookup_path(&m.root, "slow-b.mkv").await.unwrap();
    let c = m.nfs.lookup_path(&m.root, "slow-c.mkv").await.unwrap();
    assert_eq!(status(&read_at(&m, &a, 0).await), NfsStat3::Jukebox);
    assert_eq!(status(&read_at(&m, &b, 0).await), NfsStat3::Jukebox);
    assert_eq!(srv.observer.stalls().stuck_now, 2);
    // At the cap, a READ of a third file is refused at once: it never reaches the backend.
    assert_eq!(status(&read_at(&m, &c, 0).await), NfsStat3::Jukebox);
    assert_eq!(fs.calls(Op::Read), 2);
    assert!(srv.observer.stalls().refused >= 1);
    fs.release(Op::Read);
    wait_until(|| srv.observer.stalls().stuck_now == 0).await;
    assert_eq!(status(&read_at(&m, &c, 0).await), NfsStat3::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_lookup_is_told_to_retry_too() {
    let t = tree();
    let fs = faulty(t.path());
    let _release = fs.releaser();
    let srv = TestServer::start_with(fs.clone(), |c| c.backend_timeout = TIMEOUT).await;
    let m = srv.mount().await;
    // The whole FUSE daemon hangs: stat of anything waits.
    fs.inject(Op::Stat, Fault::hold());
    assert_eq!(
        lookup_status(&m, &m.root.clone(), b"fast.txt").await,
        NfsStat3::Jukebox
    );
    fs.release(Op::Stat);
    wait_until(|| srv.observer.stalls().stuck_now == 0).await;
    assert_eq!(
        lookup_status(&m, &m.root.clone(), b"fast.txt").await,
        NfsStat3::Ok
    );
}

#[tokio::test]
async fn a_root_without_an_expected_name_is_never_listed() {
    let t = tree();
    let srv = TestServer::start_with(Arc::new(LocalFs::open(t.path()).unwrap()), |c| {
        c.expect = vec![b"__all__".to_vec()];
        c.caches.refresh_interval = Duration::from_millis(100);
    })
    .await;
    let m = srv.mount().await;
    assert_eq!(m.nfs.readdirplus_all(&m.root).await.unwrap().len(), 7);
    // Decypharr between mounts, or an outage: its root is there but `__all__` is not. Once
    // the root is listed again (past the refresh interval), its listing is refused.
    std::fs::remove_dir(t.path().join("__all__")).unwrap();
    let mut status = NfsStat3::Ok;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let plus = m
            .nfs
            .readdirplus(&ReadDirPlus3Args {
                dir: m.root.clone(),
                cookie: 0,
                cookieverf: [0; 8],
                dircount: 4096,
                maxcount: 65536,
            })
            .await
            .unwrap();
        status = plus.status();
        if status != NfsStat3::Ok {
            break;
        }
    }
    assert_eq!(status, NfsStat3::Jukebox);
    let plain = m
        .nfs
        .readdir(&ReadDir3Args {
            dir: m.root.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            count: 65536,
        })
        .await
        .unwrap();
    assert_eq!(plain.status(), NfsStat3::Jukebox);
    // Files are still served; only the root's listing waits for the library.
    let fast = m.nfs.lookup_path(&m.root, "fast.txt").await.unwrap();
    assert_eq!(m.nfs.read_all(&fast).await.unwrap(), b"fast bytes");
    std::fs::create_dir(t.path().join("__all__")).unwrap();
    let mut listed = Err(None);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        listed = m
            .nfs
            .readdirplus_all(&m.root)
            .await
            .map(|l| l.len())
            .map_err(Some);
        if listed.is_ok() {
            break;
        }
    }
    assert_eq!(listed.ok(), Some(7), "listed again once it holds __all__");
}

/// Wait (polling, bounded) until `cond` holds: the stuck call's thread ends a moment after it
/// is released.
async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}
