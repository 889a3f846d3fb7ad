//! Directory listing: READDIR and READDIRPLUS list a directory completely and exactly once
//! across many calls, even a 100,000-entry one and even while it changes; cookies are honoured
//! only with their verifier.
mod common;

use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_client::Mounted;
use std::collections::{BTreeSet, HashMap};

fn make_dir(n: usize) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("big");
    std::fs::create_dir(&d).unwrap();
    for i in 0..n {
        std::fs::File::create(d.join(format!("entry-{i:06}.mkv"))).unwrap();
    }
    t
}

/// Page through `dir` with READDIRPLUS (or READDIR), returning every name in order of arrival.
async fn list(m: &Mounted, dir: &NfsFh3, plus: bool, count: u32) -> (Vec<Vec<u8>>, usize) {
    let mut names = Vec::new();
    let (mut cookie, mut verf, mut calls) = (0u64, [0u8; 8], 0);
    loop {
        calls += 1;
        let (entries, eof, v): (Vec<(Vec<u8>, u64)>, bool, CookieVerf3) = if plus {
            let ok = m
                .nfs
                .readdirplus(&ReadDirPlus3Args {
                    dir: dir.clone(),
                    cookie,
                    cookieverf: verf,
                    dircount: count / 8,
                    maxcount: count,
                })
                .await
                .unwrap()
                .ok()
                .unwrap();
            for e in &ok.reply.entries {
                if e.name != b"." && e.name != b".." {
                    assert!(e.name_attributes.0.is_some(), "attributes for every entry");
                    assert!(e.name_handle.0.is_some(), "a handle for every entry");
                }
            }
            let es = ok
                .reply
                .entries
                .into_iter()
                .map(|e| (e.name, e.cookie))
                .collect();
            (es, ok.reply.eof, ok.cookieverf)
        } else {
            let ok = m
                .nfs
                .readdir(&ReadDir3Args {
                    dir: dir.clone(),
                    cookie,
                    cookieverf: verf,
                    count,
                })
                .await
                .unwrap()
                .ok()
                .unwrap();
            let es = ok
                .reply
                .entries
                .into_iter()
                .map(|e| (e.name, e.cookie))
                .collect();
            (es, ok.reply.eof, ok.cookieverf)
        };
        verf = v;
        if let Some((_, c)) = entries.last() {
            cookie = *c;
        }
        names.extend(entries.into_iter().map(|(n, _)| n));
        if eof {
            return (names, calls);
        }
    }
}

fn assert_exactly_once(names: &[Vec<u8>], n: usize) {
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for name in names {
        *seen.entry(name).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        dups.is_empty(),
        "{} names repeated, e.g. {:?}",
        dups.len(),
        dups.first()
    );
    for i in 0..n {
        let name = format!("entry-{i:06}.mkv");
        assert!(seen.contains_key(name.as_bytes()), "{name} missing");
    }
    assert!(seen.contains_key(&b"."[..]) && seen.contains_key(&b".."[..]));
    assert_eq!(names.len(), n + 2, "exactly the entries, plus . and ..");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_entry_directory_lists_exactly_once() {
    const N: usize = 100_000;
    let t = make_dir(N);
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "big").await.unwrap();
    // The Linux client's sizes: 32 KiB READDIR, and READDIRPLUS up to 1 MiB.
    let (names, calls) = list(&m, &dir, false, 32 << 10).await;
    assert_exactly_once(&names, N);
    assert!(calls > 50, "listed across many calls ({calls})");
    let (names, calls) = list(&m, &dir, true, 256 << 10).await;
    assert_exactly_once(&names, N);
    assert!(calls > 50, "listed across many calls ({calls})");
}

#[tokio::test]
async fn entries_present_throughout_a_changing_listing_appear_once() {
    let t = make_dir(3000);
    let d = t.path().join("big");
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "big").await.unwrap();
    let mut seen = Vec::new();
    let (mut cookie, mut verf) = (0u64, [0u8; 8]);
    let mut round = 0;
    loop {
        let ok = m
            .nfs
            .readdir(&ReadDir3Args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                count: 4096,
            })
            .await
            .unwrap()
            .ok()
            .unwrap();
        verf = ok.cookieverf;
        if let Some(e) = ok.reply.entries.last() {
            cookie = e.cookie;
        }
        seen.extend(ok.reply.entries.into_iter().map(|e| e.name));
        if ok.reply.eof {
            break;
        }
        // Between calls, add files and remove some of the "odd" ones.
        round += 1;
        for j in 0..20 {
            std::fs::File::create(d.join(format!("new-{round}-{j}"))).unwrap();
        }
        let _ = std::fs::remove_file(d.join(format!("entry-{:06}.mkv", 2 * round + 1)));
        // Defeat the snapshot's timestamp granularity: the listing must stay exact either way.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for n in &seen {
        *counts.entry(n.clone()).or_default() += 1;
    }
    assert!(counts.values().all(|c| *c == 1), "no entry twice");
    for i in (0..3000).step_by(2) {
        let name = format!("entry-{i:06}.mkv").into_bytes();
        assert!(
            counts.contains_key(&name),
            "{} missing",
            String::from_utf8_lossy(&name)
        );
    }
}

#[tokio::test]
async fn cookies_survive_a_restart_and_need_their_verifier() {
    let t = make_dir(500);
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "big").await.unwrap();
    let first = m
        .nfs
        .readdir(&ReadDir3Args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            count: 2048,
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(!first.reply.eof);
    let cookie = first.reply.entries.last().unwrap().cookie;
    let got: BTreeSet<_> = first.reply.entries.iter().map(|e| e.name.clone()).collect();
    srv.stop().await;

    // A new server process, nothing carried over: the cookie and verifier still work.
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let rest = m
        .nfs
        .readdir(&ReadDir3Args {
            dir: dir.clone(),
            cookie,
            cookieverf: first.cookieverf,
            count: 1 << 20,
        })
        .await
        .unwrap()
        .ok()
        .unwrap();
    assert!(rest.reply.eof);
    let all: BTreeSet<_> = got
        .iter()
        .cloned()
        .chain(rest.reply.entries.iter().map(|e| e.name.clone()))
        .collect();
    assert_eq!(all.len(), 502);
    assert_eq!(got.len() + rest.reply.entries.len(), 502);

    // The same cookie with any other verifier is refused.
    let bad = m
        .nfs
        .readdir(&ReadDir3Args {
            dir: dir.clone(),
            cookie,
            cookieverf: *b"elsewher",
            count: 4096,
        })
        .await
        .unwrap();
    assert_eq!(bad.status(), NfsStat3::BadCookie);
}

#[tokio::test]
async fn readdir_errors() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let file = m.nfs.lookup_path(&m.root, "dir/file").await.unwrap();
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let readdir = |d: &NfsFh3, count| {
        let nfs = m.nfs.clone();
        let d = d.clone();
        async move {
            nfs.readdir(&ReadDir3Args {
                dir: d,
                cookie: 0,
                cookieverf: [0; 8],
                count,
            })
            .await
            .unwrap()
            .status()
        }
    };
    assert_eq!(readdir(&file, 4096).await, NfsStat3::NotDir);
    assert_eq!(readdir(&dir, 10).await, NfsStat3::TooSmall);
    // READDIRPLUS too: not even `.` fits in 100 bytes beside the directory's attributes, and
    // the failure still carries them.
    let plus = m
        .nfs
        .readdirplus(&ReadDirPlus3Args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: [0; 8],
            dircount: 100,
            maxcount: 100,
        })
        .await
        .unwrap();
    assert_eq!(plus.status(), NfsStat3::TooSmall);
    match plus {
        ReadDirPlus3Res::Fail(_, fail) => assert!(fail.dir_attributes.0.is_some()),
        ReadDirPlus3Res::Ok(_) => unreachable!(),
    }
    let user = srv.mount_as(1000, 1000).await;
    std::fs::create_dir(t.path().join("private")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.path().join("private"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let private = m.nfs.lookup_path(&m.root, "private").await.unwrap();
    let res = user
        .nfs
        .readdir(&ReadDir3Args {
            dir: private,
            cookie: 0,
            cookieverf: [0; 8],
            count: 4096,
        })
        .await
        .unwrap();
    assert_eq!(res.status(), NfsStat3::Acces);
}

#[tokio::test]
async fn readdirplus_entries_match_lookup() {
    let (t, _o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    let m = srv.mount().await;
    let dir = m.nfs.lookup_path(&m.root, "dir").await.unwrap();
    let entries = m.nfs.readdirplus_all(&dir).await.unwrap();
    for e in entries {
        let looked = m.nfs.lookup_name(&dir, &e.name).await.unwrap();
        assert_eq!(
            Some(looked.object),
            e.name_handle.0,
            "{:?}",
            String::from_utf8_lossy(&e.name)
        );
        assert_eq!(looked.obj_attributes.0.unwrap().fileid, e.fileid);
        // The attributes kept in the directory's snapshot are those a LOOKUP sends; but a
        // directory's times are its listing's fingerprint, known once it was listed (the
        // LOOKUP just did): until then an entry carries the backend's times.
        let listed = m.nfs.readdirplus_all(&dir).await.unwrap();
        let again = listed.iter().find(|a| a.name == e.name).unwrap();
        assert_eq!(
            looked.obj_attributes,
            again.name_attributes,
            "{:?}",
            String::from_utf8_lossy(&e.name)
        );
        let is_dir = |a: &PostOpAttr| a.0.as_ref().unwrap().ftype == Ftype3::Dir;
        if !is_dir(&e.name_attributes) || e.name == b"." || e.name == b".." {
            assert_eq!(looked.obj_attributes, e.name_attributes);
        }
    }
}
