//! No head-of-line blocking: a READ stuck in the file system (a slow FUSE read) does not hold up
//! other calls on the same connection, and the work in flight stays within its bounds.
mod common;

use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_client::{ConnectOptions, Mounted};
use mountshare_fs::fault::{Fault, FaultFs, Op};
use mountshare_fs::LocalFs;
use std::sync::Arc;
use std::time::Duration;

/// The tree at `dir`, where reads of files named `slow*` block until released, like a FUSE read
/// waiting on the network. READ copies (no descriptors are offered), so the read is where it
/// waits.
fn gated(dir: &std::path::Path) -> Arc<FaultFs<LocalFs>> {
    let fs = faulty(dir);
    fs.offer_open_files(false);
    fs.inject(
        Op::Read,
        Fault::hold().on(|p| p.file_name().starts_with(b"slow")),
    );
    fs
}

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("slow.mkv"), b"slow bytes").unwrap();
    std::fs::write(t.path().join("fast.txt"), b"fast bytes").unwrap();
    t
}

async fn read(m: &Mounted, fh: &NfsFh3) -> Vec<u8> {
    read_at(m, fh, 0).await
}

async fn read_at(m: &Mounted, fh: &NfsFh3, offset: u64) -> Vec<u8> {
    m.nfs
        .read(&Read3Args {
            file: fh.clone(),
            offset,
            count: 100,
        })
        .await
        .unwrap()
        .ok()
        .unwrap()
        .data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_read_does_not_block_the_connection() {
    let t = tree();
    let gated = gated(t.path());
    let _release = gated.releaser();
    let srv = TestServer::start_with(gated.clone(), |_| {}).await;
    let m = srv.mount().await;
    let slow = m.nfs.lookup_path(&m.root, "slow.mkv").await.unwrap();
    let fast = m.nfs.lookup_path(&m.root, "fast.txt").await.unwrap();

    let stuck = {
        let m = m.clone();
        let slow = slow.clone();
        tokio::spawn(async move { read(&m, &slow).await })
    };
    wait_held(&gated, Op::Read, 1).await;
    // Same connection, while the READ above is stuck in the file system.
    assert_eq!(read(&m, &fast).await, b"fast bytes");
    m.nfs.getattr_of(&slow).await.unwrap();
    let listing = m.nfs.readdirplus_all(&m.root).await.unwrap();
    assert_eq!(listing.len(), 4);
    assert!(
        !stuck.is_finished(),
        "the slow READ is still in the file system"
    );
    gated.release(Op::Read);
    assert_eq!(stuck.await.unwrap(), b"slow bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_are_bounded_per_connection_and_overall() {
    let t = tree();
    let gated = gated(t.path());
    let _release = gated.releaser();
    let srv = TestServer::start_with(gated.clone(), |c| {
        c.limits.per_connection_in_flight = 3;
        c.limits.total_in_flight = 5;
        // This test is about the bounds, not the deadline.
        c.backend_timeout = Duration::from_secs(600);
    })
    .await;
    let opts = || ConnectOptions {
        max_in_flight: 64,
        ..ConnectOptions::default()
    };
    let a = Mounted::connect_with(srv.addr, "/", opts()).await.unwrap();
    let b = Mounted::connect_with(srv.addr, "/", opts()).await.unwrap();
    let slow = a.nfs.lookup_path(&a.root, "slow.mkv").await.unwrap();
    let mut calls = Vec::new();
    // Each READ of another range: equal calls would join one backend call instead.
    for (i, m) in [&a, &a, &a, &a, &a, &a, &b, &b, &b, &b, &b, &b]
        .into_iter()
        .enumerate()
    {
        let m = m.clone();
        let slow = slow.clone();
        calls.push(tokio::spawn(async move {
            (i, read_at(&m, &slow, i as u64).await)
        }));
    }
    // 3 from one connection plus 2 from the other reach the file system; no more.
    wait_held(&gated, Op::Read, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gated.peak_in_flight(Op::Read), 5);
    gated.release(Op::Read);
    for c in calls {
        let (i, data) = c.await.unwrap();
        assert_eq!(data, &b"slow bytes"[i.min(10)..]);
    }
    assert_eq!(
        gated.peak_in_flight(Op::Read),
        5,
        "never more than the global bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight() {
    let t = tree();
    let gated = gated(t.path());
    let _release = gated.releaser();
    let srv = TestServer::start_with(gated.clone(), |_| {}).await;
    let m = srv.mount().await;
    let slow = m.nfs.lookup_path(&m.root, "slow.mkv").await.unwrap();
    let stuck = {
        let m = m.clone();
        tokio::spawn(async move { read(&m, &slow).await })
    };
    wait_held(&gated, Op::Read, 1).await;
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the call in flight"
    );
    gated.release(Op::Read);
    assert_eq!(
        stuck.await.unwrap(),
        b"slow bytes",
        "the call in flight got its reply"
    );
    stopping.await.unwrap();
}
