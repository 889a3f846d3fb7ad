//! Every NFSv3 procedure, over TCP with the in-repo client: what a client sees for the read side,
//! the error paths, and NFS3ERR_ROFS for every procedure that would change the tree.
mod common;

use common::*;
use mountshare_client::proto::mount3::MountStat3;
use mountshare_client::proto::nfs3::*;
use mountshare_client::ClientError;
use std::os::unix::fs::MetadataExt;

#[tokio::test]
async fn getattr_matches_the_host_file() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    let a = m.nfs.getattr_of(&file).await.unwrap();
    let md = std::fs::symlink_metadata(t.path().join("dir/file")).unwrap();
    assert_eq!(a.ftype, Ftype3::Reg);
    assert_eq!(a.mode, md.mode() & 0o7777);
    assert_eq!((a.size, a.nlink), (md.size(), md.nlink() as u32));
    assert_eq!((a.uid, a.gid), (md.uid(), md.gid()));
    assert_eq!(a.used, md.blocks() * 512);
    assert_eq!(i64::from(a.mtime.seconds), md.mtime());
    assert_eq!(i64::from(a.mtime.nseconds), md.mtime_nsec());
    assert_eq!(i64::from(a.ctime.seconds), md.ctime());
    assert_eq!(i64::from(a.atime.seconds), md.atime());
    let root = m.nfs.getattr_of(&m.root).await.unwrap();
    assert_eq!(root.ftype, Ftype3::Dir);
    assert_eq!(root.fsid, a.fsid, "one file system");
    assert_ne!(root.fileid, a.fileid);
}

#[tokio::test]
async fn attributes_are_current_not_cached() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    assert_eq!(m.nfs.getattr_of(&file).await.unwrap().size, 11);
    std::fs::write(t.path().join("dir/file"), b"hello world, longer now").unwrap();
    assert_eq!(m.nfs.getattr_of(&file).await.unwrap().size, 23);
}

#[tokio::test]
async fn lookup_returns_object_and_directory_attributes() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let ok = m.nfs.lookup_name(&dir, b"file").await.unwrap();
    assert!(ok.object.data.len() <= 64);
    assert_eq!(ok.obj_attributes.0.unwrap().size, 11);
    assert_eq!(ok.dir_attributes.0.unwrap().ftype, Ftype3::Dir);
    // "." is the directory itself, ".." its parent, and ".." of the root is the root.
    let dot = m.nfs.lookup_name(&dir, b".").await.unwrap();
    assert_eq!(dot.object, dir);
    let up = m.nfs.lookup_name(&dir, b"..").await.unwrap();
    assert_eq!(up.object, m.root);
    let above = m.nfs.lookup_name(&m.root, b"..").await.unwrap();
    assert_eq!(above.object, m.root);
}

#[tokio::test]
async fn lookup_errors() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    assert_eq!(lookup_status(&m, &dir, b"missing").await, NfsStat3::NoEnt);
    assert_eq!(lookup_status(&m, &file, b"x").await, NfsStat3::NotDir);
    assert_eq!(
        lookup_status(&m, &dir, &[b'n'; 256]).await,
        NfsStat3::NameTooLong
    );
    // A name is one component: a slash never walks.
    assert_eq!(
        lookup_status(&m, &m.root, b"dir/file").await,
        NfsStat3::NoEnt
    );
    assert_eq!(lookup_status(&m, &m.root, b"").await, NfsStat3::NoEnt);
    // A failed LOOKUP still carries the directory's attributes.
    let res = m
        .nfs
        .lookup(&Lookup3Args {
            what: dirop(&dir, b"missing"),
        })
        .await
        .unwrap();
    match res {
        Lookup3Res::Fail(_, f) => assert!(f.dir_attributes.0.is_some()),
        Lookup3Res::Ok(_) => panic!("found a missing file"),
    }
}

#[tokio::test]
async fn read_returns_the_bytes_and_eof() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    let read = |offset, count| {
        let nfs = m.nfs.clone();
        let file = file.clone();
        async move {
            nfs.read(&Read3Args {
                file,
                offset,
                count,
            })
            .await
            .unwrap()
            .ok()
            .unwrap()
        }
    };
    let r = read(0, 5).await;
    assert_eq!(
        (r.data.as_slice(), r.count, r.eof),
        (&b"hello"[..], 5, false)
    );
    let r = read(6, 100).await;
    assert_eq!((r.data.as_slice(), r.eof), (&b"world"[..], true));
    assert_eq!(r.file_attributes.0.unwrap().size, 11);
    let r = read(1000, 10).await;
    assert_eq!((r.count, r.eof), (0, true));
    assert_eq!(m.nfs.read_all(&file).await.unwrap(), b"hello world");
}

#[tokio::test]
async fn read_is_capped_at_rtmax() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("big"), vec![7u8; 3 << 20]).unwrap();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let big = m.nfs.lookup_path(&m.root, "big").await.unwrap();
    let info = m
        .nfs
        .fsinfo(&FsInfo3Args {
            fsroot: m.root.clone(),
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!((info.rtmax, info.rtpref), (1 << 20, 1 << 20));
    let r = m
        .nfs
        .read(&Read3Args {
            file: big,
            offset: 0,
            count: u32::MAX,
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(r.data.len(), 1 << 20);
    assert!(!r.eof);
}

#[tokio::test]
async fn read_errors() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let link = m.nfs.lookup_path(&m.root, "dir/link").await.unwrap();
    let read = |f: NfsFh3| {
        let nfs = m.nfs.clone();
        async move {
            nfs.read(&Read3Args {
                file: f,
                offset: 0,
                count: 10,
            })
            .await
            .unwrap()
            .status()
        }
    };
    assert_eq!(read(dir).await, NfsStat3::IsDir);
    assert_eq!(
        read(link).await,
        NfsStat3::Inval,
        "a symlink is never followed"
    );
    // Permissions come from the caller's AUTH_SYS identity.
    let secret = m.nfs.lookup_path(&m.root, "secret").await.unwrap();
    let nobody = srv.mount_as(1000, 1000).await;
    assert_eq!(
        nobody
            .nfs
            .read(&Read3Args {
                file: secret.clone(),
                offset: 0,
                count: 10
            })
            .await
            .unwrap()
            .status(),
        NfsStat3::Acces
    );
    assert_eq!(read(secret).await, NfsStat3::Ok, "root reads anything");
}

#[tokio::test]
async fn access_grants_reads_by_mode_and_never_modify() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let all = ACCESS3_READ
        | ACCESS3_LOOKUP
        | ACCESS3_MODIFY
        | ACCESS3_EXTEND
        | ACCESS3_DELETE
        | ACCESS3_EXECUTE;
    let access = |m: &mountshare_client::Mounted, path: &'static str| {
        let m = m.clone();
        async move {
            let f = m.nfs.lookup_path(&m.root, path).await.unwrap();
            m.nfs
                .access(&Access3Args {
                    object: f,
                    access: all,
                })
                .await
                .unwrap()
                .ok()
                .unwrap()
                .access
        }
    };
    assert_eq!(access(&m, "dir/file").await, ACCESS3_READ);
    assert_eq!(access(&m, "dir").await, ACCESS3_READ | ACCESS3_LOOKUP);
    let user = srv.mount_as(1000, 1000).await;
    assert_eq!(access(&user, "secret").await, 0);
    assert_eq!(access(&user, "dir/file").await, ACCESS3_READ);
}

#[tokio::test]
async fn readlink_returns_the_target_as_stored() {
    let (t, o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let link = m.nfs.lookup_path(&m.root, "dir/link").await.unwrap();
    assert_eq!(m.nfs.readlink_of(&link).await.unwrap(), b"file");
    let esc = m.nfs.lookup_path(&m.root, "escape-file").await.unwrap();
    let target = m.nfs.readlink_of(&esc).await.unwrap();
    assert_eq!(
        target,
        o.path().join("passwd").as_os_str().as_encoded_bytes()
    );
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    let res = m
        .nfs
        .readlink(&ReadLink3Args { symlink: file })
        .await
        .unwrap();
    assert_eq!(res.status(), NfsStat3::Inval);
}

#[tokio::test]
async fn fsstat_fsinfo_pathconf() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let st = m
        .nfs
        .fsstat(&FsStat3Args {
            fsroot: m.root.clone(),
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(st.tbytes > 0 && st.tbytes >= st.fbytes && st.fbytes >= st.abytes);
    let info = m
        .nfs
        .fsinfo(&FsInfo3Args {
            fsroot: m.root.clone(),
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(info.properties & FSF3_SYMLINK != 0);
    assert!(info.obj_attributes.0.is_some());
    let pc = m
        .nfs
        .pathconf(&PathConf3Args {
            object: m.root.clone(),
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(pc.name_max, 255);
    assert!(pc.no_trunc && pc.case_preserving && !pc.case_insensitive);
    m.nfs.null().await.unwrap();
}

#[tokio::test]
async fn every_change_is_refused_with_rofs() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let sattr = Sattr3::default();
    let n = &m.nfs;
    let statuses = [
        n.setattr(&SetAttr3Args {
            object: file.clone(),
            new_attributes: sattr,
            guard: None,
        })
        .await
        .unwrap()
        .status(),
        n.write(&Write3Args {
            file: file.clone(),
            offset: 0,
            count: 3,
            stable: StableHow::FileSync,
            data: b"bad".to_vec(),
        })
        .await
        .unwrap()
        .status(),
        n.create(&Create3Args {
            where_: dirop(&dir, b"new"),
            how: CreateHow3::Unchecked(sattr),
        })
        .await
        .unwrap()
        .status(),
        n.mkdir(&Mkdir3Args {
            where_: dirop(&dir, b"newdir"),
            attributes: sattr,
        })
        .await
        .unwrap()
        .status(),
        n.symlink(&Symlink3Args {
            where_: dirop(&dir, b"newlink"),
            symlink: SymlinkData3 {
                symlink_attributes: sattr,
                symlink_data: b"x".to_vec(),
            },
        })
        .await
        .unwrap()
        .status(),
        n.mknod(&Mknod3Args {
            where_: dirop(&dir, b"fifo"),
            what: MknodData3::Fifo(sattr),
        })
        .await
        .unwrap()
        .status(),
        n.remove(&Remove3Args {
            object: dirop(&dir, b"file"),
        })
        .await
        .unwrap()
        .status(),
        n.rmdir(&Rmdir3Args {
            object: dirop(&dir, b"sub"),
        })
        .await
        .unwrap()
        .status(),
        n.rename(&Rename3Args {
            from: dirop(&dir, b"file"),
            to: dirop(&dir, b"moved"),
        })
        .await
        .unwrap()
        .status(),
        n.link(&Link3Args {
            file: file.clone(),
            link: dirop(&dir, b"hard"),
        })
        .await
        .unwrap()
        .status(),
        n.commit(&Commit3Args {
            file: file.clone(),
            offset: 0,
            count: 0,
        })
        .await
        .unwrap()
        .status(),
    ];
    assert_eq!(statuses, [NfsStat3::RoFs; 11]);
    // And nothing changed.
    assert_eq!(
        std::fs::read(t.path().join("dir/file")).unwrap(),
        b"hello world"
    );
    let mut names: Vec<_> = std::fs::read_dir(t.path().join("dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["file", "link", "sub"]);
}

#[tokio::test]
async fn malformed_and_unknown_handles() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let getattr = |data: Vec<u8>| {
        let nfs = m.nfs.clone();
        async move {
            nfs.getattr(&GetAttr3Args { object: fh(data) })
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(getattr(vec![]).await, NfsStat3::BadHandle);
    assert_eq!(
        getattr(vec![9; 10]).await,
        NfsStat3::BadHandle,
        "unknown version"
    );
    assert_eq!(
        getattr(vec![1, 1, 0, 0, 0, 0, 0, 0, 0, 0]).await,
        NfsStat3::BadHandle,
        "short"
    );
    // Well-formed, but names no path in the tree.
    let mut forged = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap().data;
    forged[5] ^= 0xff;
    assert_eq!(getattr(forged).await, NfsStat3::Stale);
    // A handle of a file that was removed is stale.
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    std::fs::remove_file(t.path().join("dir/file")).unwrap();
    assert_eq!(getattr(file.data).await, NfsStat3::Stale);
}

#[tokio::test]
async fn mount_protocol() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    assert_eq!(m.auth_flavors, vec![1], "AUTH_SYS");
    m.mount.null().await.unwrap();
    let exports = m.mount.export().await.unwrap();
    assert_eq!(exports.0.len(), 1);
    assert_eq!(exports.0[0].ex_dir, b"/");
    let dump = m.mount.dump().await.unwrap();
    assert_eq!(dump.0.len(), 1);
    assert_eq!(dump.0[0].ml_directory, b"/");
    // A subdirectory can be mounted; files, missing paths and escapes cannot.
    let sub = mountshare_client::Mounted::connect(srv.addr, "/dir")
        .await
        .unwrap();
    let via_root = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    assert_eq!(sub.root, via_root);
    for (path, want) in [
        ("/dir/file", MountStat3::NotDir),
        ("/missing", MountStat3::NoEnt),
        ("/../etc", MountStat3::NoEnt),
        ("/escape-dir", MountStat3::NotDir),
    ] {
        match mountshare_client::Mounted::connect(srv.addr, path).await {
            Err(ClientError::Mount(s)) => assert_eq!(s, want, "{path}"),
            other => panic!("{path}: {:?}", other.map(|m| m.root)),
        }
    }
    m.mount.umnt(b"/").await.unwrap();
    sub.mount.umntall().await.unwrap();
    assert!(m.mount.dump().await.unwrap().0.is_empty());
}
