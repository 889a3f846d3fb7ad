//! When the exported file system fails: every NFS procedure that reaches the backend, and MNT,
//! with the backend call it depends on failing (injected with `FaultFs`), gets the status a
//! client should see, with the attributes that are still known, and works again once the file
//! system does.
mod common;

use common::*;
use mountshare_client::proto::mount3::MountStat3;
use mountshare_client::proto::nfs3::*;
use mountshare_client::{ClientError, Mounted};
use mountshare_fs::fault::{Fault, FaultFs, Op};
use mountshare_fs::{LocalFs, RelPath};
use rustix::io::Errno;
use std::sync::Arc;

fn rel(p: &str) -> RelPath {
    RelPath::parse(p.as_bytes()).unwrap()
}

struct Setup {
    _tree: (tempfile::TempDir, tempfile::TempDir),
    fs: Arc<FaultFs<LocalFs>>,
    srv: TestServer,
    m: Mounted,
    dir: NfsFh3,
    file: NfsFh3,
    link: NfsFh3,
}

/// A server over the sample tree behind a `FaultFs`, mounted, with handles of `dir`,
/// `dir/file` and `dir/link` looked up before any fault is injected.
async fn setup() -> Setup {
    setup_with(|_| {}).await
}

/// [`setup`], with faults injected before anything is looked up: looking a directory up lists
/// it (its times are made of its listing), so a fault of its listing must be in place first.
async fn setup_with(faults: impl FnOnce(&FaultFs<LocalFs>)) -> Setup {
    let tree = sample_tree();
    let fs = faulty(tree.0.path());
    faults(&fs);
    let srv = TestServer::start_with(fs.clone(), |_| {}).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    let link = m.nfs.lookup_path(&m.root, "dir/link").await.unwrap();
    Setup {
        _tree: tree,
        fs,
        srv,
        m,
        dir,
        file,
        link,
    }
}

async fn read(m: &Mounted, file: &NfsFh3) -> Read3Res {
    m.nfs
        .read(&Read3Args {
            file: file.clone(),
            offset: 0,
            count: 100,
        })
        .await
        .unwrap()
}

async fn readdir(m: &Mounted, dir: &NfsFh3) -> ReadDir3Res {
    m.nfs
        .readdir(&ReadDir3Args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            count: 4096,
        })
        .await
        .unwrap()
}

async fn readdirplus(m: &Mounted, dir: &NfsFh3) -> ReadDirPlus3Res {
    m.nfs
        .readdirplus(&ReadDirPlus3Args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 4096,
            maxcount: 65536,
        })
        .await
        .unwrap()
}

/// The status of every procedure that stats its object first, each on an object of the kind it
/// takes.
async fn statuses_of_procedures_that_stat(s: &Setup) -> Vec<(&'static str, NfsStat3)> {
    let (m, file) = (&s.m, &s.file);
    let n = &m.nfs;
    vec![
        (
            "GETATTR",
            n.getattr(&GetAttr3Args {
                object: file.clone(),
            })
            .await
            .unwrap()
            .status(),
        ),
        (
            "ACCESS",
            n.access(&Access3Args {
                object: file.clone(),
                access: ACCESS3_READ,
            })
            .await
            .unwrap()
            .status(),
        ),
        ("LOOKUP", lookup_status(m, &s.dir, b"file").await),
        (
            "READLINK",
            n.readlink(&ReadLink3Args {
                symlink: s.link.clone(),
            })
            .await
            .unwrap()
            .status(),
        ),
        ("READDIR", readdir(m, &s.dir).await.status()),
        ("READDIRPLUS", readdirplus(m, &s.dir).await.status()),
        (
            "FSSTAT",
            n.fsstat(&FsStat3Args {
                fsroot: file.clone(),
            })
            .await
            .unwrap()
            .status(),
        ),
        (
            "FSINFO",
            n.fsinfo(&FsInfo3Args {
                fsroot: file.clone(),
            })
            .await
            .unwrap()
            .status(),
        ),
        (
            "PATHCONF",
            n.pathconf(&PathConf3Args {
                object: file.clone(),
            })
            .await
            .unwrap()
            .status(),
        ),
    ]
}

#[tokio::test]
async fn a_failing_stat_of_the_object_fails_every_procedure_that_needs_it() {
    let s = setup().await;
    for (errno, want) in [
        (Errno::IO, NfsStat3::Io),
        // A FUSE daemon that died ("Transport endpoint is not connected"), or no mount at DIR
        // right now: the client waits and retries while the next one is found.
        (Errno::NOTCONN, NfsStat3::Jukebox),
        (Errno::AGAIN, NfsStat3::Jukebox),
        (Errno::TIMEDOUT, NfsStat3::Jukebox),
        (Errno::ACCESS, NfsStat3::Acces),
        // The handle resolved, but what it named is gone: the handle is stale.
        (Errno::NOENT, NfsStat3::Stale),
        (Errno::NOTDIR, NfsStat3::Stale),
    ] {
        let objects = [rel("dir"), rel("dir/file"), rel("dir/link")];
        s.fs.inject(
            Op::Stat,
            Fault::fail(errno).on(move |p| objects.contains(p)),
        );
        for (procedure, status) in statuses_of_procedures_that_stat(&s).await {
            assert_eq!(status, want, "{procedure} when stat fails with {errno:?}");
        }
        s.fs.clear(Op::Stat);
    }
    for (procedure, status) in statuses_of_procedures_that_stat(&s).await {
        assert_eq!(status, NfsStat3::Ok, "{procedure} once stat works again");
    }
}

#[tokio::test]
async fn lookup_of_a_name_whose_stat_fails() {
    let s = setup().await;
    for (errno, want) in [
        (Errno::IO, NfsStat3::Io),
        (Errno::AGAIN, NfsStat3::Jukebox),
        // The name itself is missing: not a stale handle.
        (Errno::NOENT, NfsStat3::NoEnt),
    ] {
        s.fs.inject(Op::Stat, Fault::fail(errno).at(&rel("dir/file")));
        let res =
            s.m.nfs
                .lookup(&Lookup3Args {
                    what: dirop(&s.dir, b"file"),
                })
                .await
                .unwrap();
        match res {
            Lookup3Res::Fail(status, f) => {
                assert_eq!(status, want, "{errno:?}");
                assert!(f.dir_attributes.0.is_some(), "the directory's attributes");
            }
            Lookup3Res::Ok(_) => panic!("LOOKUP succeeded with a failing stat ({errno:?})"),
        }
        s.fs.clear(Op::Stat);
    }
    assert_eq!(lookup_status(&s.m, &s.dir, b"file").await, NfsStat3::Ok);
}

#[tokio::test]
async fn readlink_whose_read_link_fails() {
    let s = setup().await;
    s.fs.inject(Op::ReadLink, Fault::fail(Errno::IO));
    let res =
        s.m.nfs
            .readlink(&ReadLink3Args {
                symlink: s.link.clone(),
            })
            .await
            .unwrap();
    match res {
        ReadLink3Res::Fail(status, f) => {
            assert_eq!(status, NfsStat3::Io);
            assert!(f.symlink_attributes.0.is_some());
        }
        ReadLink3Res::Ok(_) => panic!("READLINK succeeded"),
    }
    assert_eq!(s.fs.calls(Op::ReadLink), 1);
    s.fs.clear(Op::ReadLink);
    assert_eq!(s.m.nfs.readlink_of(&s.link).await.unwrap(), b"file");
}

#[tokio::test]
async fn read_whose_read_fails() {
    let s = setup().await;
    // Copied READs only: the failing call is the read itself.
    s.fs.offer_open_files(false);
    for (errno, want) in [
        (Errno::IO, NfsStat3::Io),
        (Errno::NOTCONN, NfsStat3::Jukebox),
        (Errno::AGAIN, NfsStat3::Jukebox),
    ] {
        s.fs.inject(Op::Read, Fault::fail(errno).at(&rel("dir/file")));
        match read(&s.m, &s.file).await {
            Read3Res::Fail(status, f) => {
                assert_eq!(status, want, "{errno:?}");
                assert!(f.file_attributes.0.is_some(), "the file's attributes");
            }
            Read3Res::Ok(_) => panic!("READ succeeded with a failing read ({errno:?})"),
        }
        s.fs.clear(Op::Read);
    }
    assert_eq!(s.fs.calls(Op::Read), 3);
    assert_eq!(s.m.nfs.read_all(&s.file).await.unwrap(), b"hello world");
}

#[tokio::test]
async fn read_whose_open_fails() {
    let s = setup().await;
    // A READ alone on its connection opens the file to splice it; one behind others reads by
    // copying. Both fail here, so either way the READ does.
    s.fs.inject(Op::OpenFile, Fault::fail(Errno::IO));
    s.fs.inject(Op::Read, Fault::fail(Errno::IO));
    assert_eq!(read(&s.m, &s.file).await.status(), NfsStat3::Io);
    assert_eq!(s.fs.calls(Op::OpenFile) + s.fs.calls(Op::Read), 1);
    s.fs.clear(Op::OpenFile);
    s.fs.clear(Op::Read);
    assert_eq!(s.m.nfs.read_all(&s.file).await.unwrap(), b"hello world");
}

#[tokio::test]
async fn read_of_a_file_that_vanished_is_stale() {
    let s = setup().await;
    s.fs.offer_open_files(false);
    let file = rel("dir/file");
    s.fs.inject(Op::Read, Fault::fail(Errno::NOENT).at(&file));
    s.fs.inject(Op::Stat, Fault::fail(Errno::NOENT).at(&file));
    match read(&s.m, &s.file).await {
        Read3Res::Fail(status, f) => {
            assert_eq!(status, NfsStat3::Stale);
            assert!(f.file_attributes.0.is_none(), "nothing left to describe");
        }
        Read3Res::Ok(_) => panic!("READ of a vanished file succeeded"),
    }
}

#[tokio::test]
async fn listing_whose_read_dir_fails() {
    let s = setup_with(|fs| fs.inject(Op::ReadDir, Fault::fail(Errno::IO).at(&rel("dir")))).await;
    let listed = s.fs.calls(Op::ReadDir);
    match readdir(&s.m, &s.dir).await {
        ReadDir3Res::Fail(status, f) => {
            assert_eq!(status, NfsStat3::Io);
            assert!(f.dir_attributes.0.is_some());
        }
        ReadDir3Res::Ok(_) => panic!("READDIR succeeded"),
    }
    match readdirplus(&s.m, &s.dir).await {
        ReadDirPlus3Res::Fail(status, f) => {
            assert_eq!(status, NfsStat3::Io);
            assert!(f.dir_attributes.0.is_some());
        }
        ReadDirPlus3Res::Ok(_) => panic!("READDIRPLUS succeeded"),
    }
    assert_eq!(
        s.fs.calls(Op::ReadDir) - listed,
        2,
        "a failed listing is not cached"
    );
    s.fs.clear(Op::ReadDir);
    assert_eq!(s.m.nfs.readdirplus_all(&s.dir).await.unwrap().len(), 5);
}

#[tokio::test]
async fn readdirplus_lists_an_entry_whose_stat_fails_without_attributes() {
    // Failing from the start: the listing made when `dir` is looked up has no attributes for
    // it either.
    let tree = sample_tree();
    let fs = faulty(tree.0.path());
    fs.inject(Op::Stat, Fault::fail(Errno::IO).at(&rel("dir/file")));
    let srv = TestServer::start_with(fs.clone(), |_| {}).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let entries = m.nfs.readdirplus_all(&dir).await.unwrap();
    let mut names: Vec<_> = entries.iter().map(|e| e.name.clone()).collect();
    names.sort();
    assert_eq!(names, [&b"."[..], b"..", b"file", b"link", b"sub"]);
    for e in &entries {
        let failed = e.name == b"file";
        assert_eq!(e.name_attributes.0.is_none(), failed, "{:?}", e.name);
        assert_eq!(e.name_handle.0.is_none(), failed, "{:?}", e.name);
    }
}

#[tokio::test]
async fn fsstat_whose_statfs_fails() {
    let s = setup().await;
    s.fs.inject(Op::Statfs, Fault::fail(Errno::IO));
    let res =
        s.m.nfs
            .fsstat(&FsStat3Args {
                fsroot: s.m.root.clone(),
            })
            .await
            .unwrap();
    match res {
        FsStat3Res::Fail(status, f) => {
            assert_eq!(status, NfsStat3::Io);
            assert!(f.obj_attributes.0.is_some());
        }
        FsStat3Res::Ok(_) => panic!("FSSTAT succeeded"),
    }
    assert_eq!(s.fs.calls(Op::Statfs), 1);
}

#[tokio::test]
async fn mnt_whose_stat_fails() {
    let s = setup().await;
    for (errno, want) in [
        (Errno::ACCESS, MountStat3::Acces),
        (Errno::NOTDIR, MountStat3::NotDir),
        (Errno::NOENT, MountStat3::NoEnt),
        // The file system failing is not a wrong path.
        (Errno::IO, MountStat3::Io),
        (Errno::NOTCONN, MountStat3::Io),
    ] {
        s.fs.inject(Op::Stat, Fault::fail(errno).at(&rel("dir")));
        match Mounted::connect(s.srv.addr, "/dir").await {
            Err(ClientError::Mount(status)) => assert_eq!(status, want, "{errno:?}"),
            other => panic!("{errno:?}: {:?}", other.map(|m| m.root)),
        }
        s.fs.clear(Op::Stat);
    }
    let sub = Mounted::connect(s.srv.addr, "/dir").await.unwrap();
    assert_eq!(sub.root, s.dir);
}

#[tokio::test]
async fn a_handle_whose_walk_cannot_list_a_directory_is_never_stale() {
    let (t, _o) = sample_tree();
    // A handle from another server, so this one has to walk the tree to resolve it.
    let file = {
        let first = TestServer::start(t.path()).await;
        let m = first.mount().await;
        m.nfs.lookup_path(&m.root, "dir/file").await.unwrap()
    };
    let fs = faulty(t.path());
    let srv = TestServer::start_with(fs.clone(), |_| {}).await;
    let m = srv.mount().await;
    let args = GetAttr3Args { object: file };
    // STALE would make the client drop the file for good: a listing that fails proves nothing.
    for (errno, want) in [
        (Errno::IO, NfsStat3::Io),
        (Errno::NOTCONN, NfsStat3::Jukebox),
        (Errno::AGAIN, NfsStat3::Jukebox),
    ] {
        fs.inject(Op::ReadDir, Fault::fail(errno));
        assert_eq!(
            m.nfs.getattr(&args).await.unwrap().status(),
            want,
            "{errno:?}"
        );
        assert!(fs.calls(Op::ReadDir) >= 1, "the walk reached the backend");
        fs.clear(Op::ReadDir);
    }
    assert_eq!(m.nfs.getattr(&args).await.unwrap().status(), NfsStat3::Ok);
    // Only a path that provably does not exist is stale.
    std::fs::remove_file(t.path().join("dir/file")).unwrap();
    let fresh = TestServer::start(t.path()).await;
    let m = fresh.mount().await;
    assert_eq!(
        m.nfs.getattr(&args).await.unwrap().status(),
        NfsStat3::Stale
    );
}
