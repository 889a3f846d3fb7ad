//! File handles: they resolve after a restart and on a second server over a copy of the tree
//! (a failover), with identical attributes; and nothing a client sends reaches outside the root.
mod common;

use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_server::FileHandle;
use std::process::Command;

async fn handles_of(m: &mountshare_client::Mounted, paths: &[&str]) -> Vec<NfsFh3> {
    let mut out = Vec::new();
    for p in paths {
        out.push(m.nfs.lookup_path(&m.root, p).await.unwrap());
    }
    out
}

fn deep_tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let mut deep = t.path().join("tv/Some Show (2024)/Season 01");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("S01E01.mkv"), vec![1u8; 100_000]).unwrap();
    for i in 0..20 {
        deep.push(format!("nested {i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("deep.bin"), b"deep").unwrap();
    for i in 0..200 {
        std::fs::write(t.path().join(format!("tv/noise-{i}")), b"").unwrap();
    }
    t
}

const PATHS: &[&str] = &[
    "tv",
    "tv/Some Show (2024)",
    "tv/Some Show (2024)/Season 01/S01E01.mkv",
];

fn deep_path() -> String {
    let mut p = String::from("tv/Some Show (2024)/Season 01");
    for i in 0..20 {
        p.push_str(&format!("/nested {i}"));
    }
    p + "/deep.bin"
}

#[tokio::test]
async fn handles_resolve_after_a_restart() {
    let t = deep_tree();
    let deep = deep_path();
    let mut paths = PATHS.to_vec();
    paths.push(&deep);
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let fhs = handles_of(&m, &paths).await;
    let mut before = Vec::new();
    for f in &fhs {
        assert!(f.data.len() <= 64, "handles are at most 64 bytes");
        before.push(m.nfs.getattr_of(f).await.unwrap());
    }
    srv.stop().await;

    // A fresh server: no cache, no state. The old handles are used directly, no LOOKUP.
    let srv = TestServer::start(t.path()).await;
    let c = mountshare_client::NfsClient::connect(srv.addr)
        .await
        .unwrap();
    for (f, b) in fhs.iter().zip(&before) {
        assert_eq!(&c.getattr_of(f).await.unwrap(), b);
    }
    let r = c
        .read(&Read3Args {
            file: fhs[2].clone(),
            offset: 50_000,
            count: 10,
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(r.data, vec![1u8; 10]);
    assert_eq!(c.read_all(&fhs[3]).await.unwrap(), b"deep");
}

#[tokio::test]
async fn handles_resolve_on_a_second_server_over_a_copy() {
    let t = deep_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let fhs = handles_of(&m, PATHS).await;
    let mut before = Vec::new();
    for f in &fhs {
        before.push(m.nfs.getattr_of(f).await.unwrap());
    }

    // "Another machine": the same tree copied elsewhere (other inodes, other host path), served
    // by a second, independent server.
    let copy = tempfile::tempdir().unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", t.path().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(st.success());
    let other = TestServer::start(copy.path()).await;
    let c = mountshare_client::NfsClient::connect(other.addr)
        .await
        .unwrap();
    for (f, b) in fhs.iter().zip(&before) {
        let a = c.getattr_of(f).await.unwrap();
        // What the Linux client checks on every reply: same file, same file system.
        assert_eq!((a.fileid, a.fsid, a.ftype), (b.fileid, b.fsid, b.ftype));
        assert_eq!((a.size, a.mode, a.mtime), (b.size, b.mode, b.mtime));
    }
    assert_eq!(c.read_all(&fhs[2]).await.unwrap(), vec![1u8; 100_000]);
}

#[tokio::test]
async fn nothing_reaches_outside_the_root() {
    let (t, outside) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    // A symlink to a directory outside is a symlink, not a directory to walk into.
    let esc = m.nfs.lookup_path(&m.root, "escape-dir").await.unwrap();
    assert_eq!(m.nfs.getattr_of(&esc).await.unwrap().ftype, Ftype3::Lnk);
    assert_eq!(lookup_status(&m, &esc, b"passwd").await, NfsStat3::NotDir);
    let escf = m.nfs.lookup_path(&m.root, "escape-file").await.unwrap();
    let r = m
        .nfs
        .read(&Read3Args {
            file: escf,
            offset: 0,
            count: 100,
        })
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        NfsStat3::Inval,
        "the server never follows a symlink"
    );
    // `..` never climbs above the root, however often.
    let mut fh = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    for _ in 0..5 {
        fh = m.nfs.lookup_name(&fh, b"..").await.unwrap().object;
    }
    assert_eq!(fh, m.root);
    // Names with a slash are not paths.
    for name in [&b"../passwd"[..], b"/etc/passwd", b"dir/../../passwd"] {
        assert_eq!(lookup_status(&m, &m.root, name).await, NfsStat3::NoEnt);
    }
    // Forged handles for paths outside (as a client could compute them) are stale.
    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();
    for p in ["..", "../..", "etc/passwd", outside_name] {
        if let Ok(rel) = mountshare_fs::RelPath::parse(p.as_bytes()) {
            let fh = FileHandle::for_path(&rel).unwrap();
            if !rel.is_root() {
                let res = m
                    .nfs
                    .getattr(&GetAttr3Args { object: fh_of(&fh) })
                    .await
                    .unwrap();
                assert_eq!(res.status(), NfsStat3::Stale, "{p}");
            }
        }
    }
    let hand_made = FileHandle {
        depth: 2,
        path_hash: 0,
        components: vec![
            mountshare_server::component_hash(b".."),
            mountshare_server::component_hash(b"passwd"),
        ],
    };
    let res = m
        .nfs
        .getattr(&GetAttr3Args {
            object: fh_of(&hand_made),
        })
        .await
        .unwrap();
    assert_eq!(res.status(), NfsStat3::Stale);
}

fn fh_of(h: &FileHandle) -> NfsFh3 {
    NfsFh3 { data: h.encode() }
}
