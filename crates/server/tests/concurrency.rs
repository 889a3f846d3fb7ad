//! No head-of-line blocking: a READ stuck in the file system (a slow FUSE read) does not hold up
//! other calls on the same connection, and the work in flight stays within its bounds.
mod common;

use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_client::{ConnectOptions, Mounted};
use mountshare_fs::{Attr, Backend, DirEntryName, FsError, FsStats, LocalFs, ReadOutcome, RelPath};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A backend whose reads of files named `slow*` block until the gate opens, like a FUSE read
/// waiting on the network.
struct Gated {
    inner: LocalFs,
    open: Mutex<bool>,
    cv: Condvar,
    inside: AtomicUsize,
    max_inside: AtomicUsize,
}

impl Gated {
    fn new(dir: &std::path::Path) -> Arc<Gated> {
        Arc::new(Gated {
            inner: LocalFs::open(dir).unwrap(),
            open: Mutex::new(false),
            cv: Condvar::new(),
            inside: AtomicUsize::new(0),
            max_inside: AtomicUsize::new(0),
        })
    }
    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
    async fn wait_inside(&self, n: usize) {
        while self.inside.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Backend for Gated {
    fn stat(&self, p: &RelPath) -> Result<Attr, FsError> {
        self.inner.stat(p)
    }
    fn read_dir(&self, p: &RelPath) -> Result<Vec<DirEntryName>, FsError> {
        self.inner.read_dir(p)
    }
    fn read_link(&self, p: &RelPath) -> Result<Vec<u8>, FsError> {
        self.inner.read_link(p)
    }
    fn statfs(&self) -> Result<FsStats, FsError> {
        self.inner.statfs()
    }
    fn read(&self, p: &RelPath, off: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError> {
        if p.file_name().starts_with(b"slow") {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_inside.fetch_max(now, Ordering::SeqCst);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
            drop(open);
            self.inside.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.read(p, off, buf)
    }
}

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("slow.mkv"), b"slow bytes").unwrap();
    std::fs::write(t.path().join("fast.txt"), b"fast bytes").unwrap();
    t
}

async fn read(m: &Mounted, fh: &NfsFh3) -> Vec<u8> {
    m.nfs
        .read(&Read3Args {
            file: fh.clone(),
            offset: 0,
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
    let gated = Gated::new(t.path());
    let srv = TestServer::start_with(gated.clone(), |_| {}).await;
    let m = srv.mount().await;
    let slow = m.nfs.lookup_path(&m.root, "slow.mkv").await.unwrap();
    let fast = m.nfs.lookup_path(&m.root, "fast.txt").await.unwrap();

    let stuck = {
        let m = m.clone();
        let slow = slow.clone();
        tokio::spawn(async move { read(&m, &slow).await })
    };
    gated.wait_inside(1).await;
    // Same connection, while the READ above is stuck in the file system.
    assert_eq!(read(&m, &fast).await, b"fast bytes");
    m.nfs.getattr_of(&slow).await.unwrap();
    let listing = m.nfs.readdirplus_all(&m.root).await.unwrap();
    assert_eq!(listing.len(), 4);
    assert!(
        !stuck.is_finished(),
        "the slow READ is still in the file system"
    );
    gated.release();
    assert_eq!(stuck.await.unwrap(), b"slow bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_are_bounded_per_connection_and_overall() {
    let t = tree();
    let gated = Gated::new(t.path());
    let srv = TestServer::start_with(gated.clone(), |c| {
        c.limits.per_connection_in_flight = 3;
        c.limits.total_in_flight = 5;
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
    for m in [&a, &a, &a, &a, &a, &a, &b, &b, &b, &b, &b, &b] {
        let m = m.clone();
        let slow = slow.clone();
        calls.push(tokio::spawn(async move { read(&m, &slow).await }));
    }
    // 3 from one connection plus 2 from the other reach the file system; no more.
    gated.wait_inside(5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gated.max_inside.load(Ordering::SeqCst), 5);
    gated.release();
    for c in calls {
        assert_eq!(c.await.unwrap(), b"slow bytes");
    }
    assert_eq!(
        gated.max_inside.load(Ordering::SeqCst),
        5,
        "never more than the global bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight() {
    let t = tree();
    let gated = Gated::new(t.path());
    let srv = TestServer::start_with(gated.clone(), |_| {}).await;
    let m = srv.mount().await;
    let slow = m.nfs.lookup_path(&m.root, "slow.mkv").await.unwrap();
    let stuck = {
        let m = m.clone();
        tokio::spawn(async move { read(&m, &slow).await })
    };
    gated.wait_inside(1).await;
    let stopping = tokio::spawn(srv.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !stopping.is_finished(),
        "shutdown waits for the call in flight"
    );
    gated.release();
    assert_eq!(
        stuck.await.unwrap(),
        b"slow bytes",
        "the call in flight got its reply"
    );
    stopping.await.unwrap();
}
