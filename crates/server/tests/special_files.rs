//! READ of a FIFO, a socket or a device node in the export: answered at once with
//! NFS3ERR_INVAL (as from the Linux server), and never holding a thread or an in-flight permit,
//! so a client that READs them cannot lock others out.
mod common;

use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_client::NfsClient;
use mountshare_fs::LocalFs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longer than any answer takes here; only a READ stuck waiting for a FIFO writer reaches it.
const STUCK: Duration = Duration::from_secs(10);

fn mknod(path: &Path, kind: rustix::fs::FileType, dev: rustix::fs::Dev) -> rustix::io::Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(0o644),
        dev,
    )
}

/// The export: `file` ("hello"), `fifo`, `sock` and, when this process may create device
/// nodes, `chr` (the null device).
struct SpecialTree {
    dir: Option<tempfile::TempDir>,
    _sock: std::os::unix::net::UnixListener,
    chr: bool,
}

impl SpecialTree {
    fn new() -> SpecialTree {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("file"), b"hello").unwrap();
        mknod(&t.path().join("fifo"), rustix::fs::FileType::Fifo, 0).unwrap();
        let sock = std::os::unix::net::UnixListener::bind(t.path().join("sock")).unwrap();
        let chr = match mknod(
            &t.path().join("chr"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::makedev(1, 3),
        ) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("no device node in this run: mknod: {e} (needs root)");
                false
            }
        };
        SpecialTree {
            dir: Some(t),
            _sock: sock,
            chr,
        }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }
}

/// If a test fails because a READ waits for a FIFO writer, that READ's thread would keep the
/// runtime from shutting down, and the test would hang instead of failing. So when dropped
/// while panicking, the tree keeps opening its FIFO for writing for a while, which releases
/// every waiting reader (and keeps the directory until then).
impl Drop for SpecialTree {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let dir = self.dir.take();
        std::thread::spawn(move || {
            let Some(dir) = dir else { return };
            for _ in 0..300 {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                    .open(dir.path().join("fifo"));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
    }
}

async fn read_status(nfs: NfsClient, file: NfsFh3) -> NfsStat3 {
    let args = Read3Args {
        file,
        offset: 0,
        count: 4096,
    };
    tokio::time::timeout(STUCK, nfs.read(&args))
        .await
        .expect("READ answered, not left waiting")
        .unwrap()
        .status()
}

#[tokio::test]
async fn read_of_a_fifo_socket_or_device_is_inval_at_once() {
    let t = SpecialTree::new();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let mut names = vec![("fifo", Ftype3::Fifo), ("sock", Ftype3::Sock)];
    if t.chr {
        names.push(("chr", Ftype3::Chr));
    }
    for (name, ftype) in names {
        let fh = m.nfs.lookup_path(&m.root, name).await.unwrap();
        assert_eq!(m.nfs.getattr_of(&fh).await.unwrap().ftype, ftype);
        assert_eq!(
            read_status(m.nfs.clone(), fh).await,
            NfsStat3::Inval,
            "READ of {name}"
        );
    }
    let file = m.nfs.lookup_path(&m.root, "file").await.unwrap();
    assert_eq!(m.nfs.read_all(&file).await.unwrap(), b"hello");
}

/// Many READs of a FIFO at once, more than the server works on in total, and then a READ of a
/// regular file from another client: if a FIFO READ waited for a writer, every permit would be
/// held and the last READ never answered.
#[tokio::test]
async fn reads_of_a_fifo_do_not_lock_out_other_clients() {
    let t = SpecialTree::new();
    let backend = Arc::new(LocalFs::open(t.path()).unwrap());
    let srv = TestServer::start_with(backend, |c| {
        c.limits.total_in_flight = 4;
        c.limits.per_connection_in_flight = 4;
    })
    .await;
    let attacker = srv.mount().await;
    let fifo = attacker
        .nfs
        .lookup_path(&attacker.root, "fifo")
        .await
        .unwrap();
    let reads: Vec<_> = (0..32)
        .map(|_| tokio::spawn(read_status(attacker.nfs.clone(), fifo.clone())))
        .collect();
    let mut statuses = Vec::new();
    for r in reads {
        statuses.push(r.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == NfsStat3::Inval),
        "{statuses:?}"
    );

    let other = srv.mount().await;
    let file = other.nfs.lookup_path(&other.root, "file").await.unwrap();
    let data = tokio::time::timeout(STUCK, other.nfs.read_all(&file))
        .await
        .expect("another client's READ is answered")
        .unwrap();
    assert_eq!(data, b"hello");
}
