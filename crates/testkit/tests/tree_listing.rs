//! The fixture tree and the canonical listing: generated content is deterministic and distinct per
//! page, and the guest's listing commands (run here with the same busybox binary the VM uses)
//! parse back into exactly the listing the host computes.

use mountshare_testkit::tree::{self, Kind, TreeBuilder};
use std::process::Command;

fn busybox() -> &'static str {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("busybox-static is installed")
}

fn sh(dir: &std::path::Path, script: &str) -> Vec<u8> {
    let out = Command::new(busybox())
        .args(["sh", "-c", script])
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn generated_content_is_deterministic_and_every_page_differs() {
    let dir = tempfile::tempdir().unwrap();
    let t = TreeBuilder::new(dir.path()).unwrap();
    let a = t.file("a", 3 << 20, 42).unwrap();
    let b = t.file("b", 3 << 20, 42).unwrap();
    let c = t.file("c", 3 << 20, 43).unwrap();
    let bytes = std::fs::read(&a).unwrap();
    assert_eq!(bytes.len(), 3 << 20);
    assert_eq!(bytes, std::fs::read(&b).unwrap(), "same seed, same content");
    assert_ne!(
        bytes,
        std::fs::read(&c).unwrap(),
        "another seed, other content"
    );
    let pages: std::collections::HashSet<&[u8]> = bytes.chunks(4096).collect();
    assert_eq!(
        pages.len(),
        bytes.len() / 4096,
        "a page served at the wrong offset must change the checksum"
    );
    let streamed: Vec<u8> = tree::pattern_blocks(3 << 20, 42).flatten().collect();
    assert_eq!(streamed, bytes);
    // The md5 helpers agree with coreutils.
    let out = Command::new("md5sum").arg(&a).output().unwrap();
    let expected = String::from_utf8_lossy(&out.stdout)[..32].to_string();
    assert_eq!(tree::md5_file(&a).unwrap(), expected);
    assert_eq!(tree::md5_bytes(&bytes), expected);
}

#[test]
fn standard_tree_has_every_kind_of_entry() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = tree::standard_tree(dir.path()).unwrap();
    let listing = tree::listing(dir.path()).unwrap();
    let get = |p: &[u8]| {
        listing
            .get(p)
            .unwrap_or_else(|| panic!("{} is missing", tree::escape(p)))
    };
    assert_eq!(
        get(b"link-dangling").target.as_deref(),
        Some(&b"does/not/exist"[..])
    );
    assert_eq!(get(b"link-relative").kind, Kind::Symlink);
    assert!(get(b"link-absolute")
        .target
        .as_ref()
        .unwrap()
        .starts_with(b"/"));
    assert_eq!(get(b"setgid-dir").mode, 0o2755);
    assert_eq!(get(b"sticky-dir").mode, 0o1777);
    assert_eq!(get(b"mode600.txt").mode, 0o600);
    assert_eq!(get(b"hardlink-a").nlink, 2);
    assert_eq!(get(b"bytes-\xff\xfe-name").size, 17);
    assert_eq!(get("ünïcödé-名前.txt".as_bytes()).size, 11);
    assert_eq!(get(b"one-mib-plus-one.bin").size, (1 << 20) + 1);
    let deep = listing
        .entries
        .iter()
        .filter(|e| e.path.ends_with(b"leaf.txt"))
        .map(|e| e.path.iter().filter(|&&b| b == b'/').count())
        .max();
    assert_eq!(deep, Some(17), "the leaf lies 17 directories down");
    if fixture.has_foreign_owners {
        assert_eq!(
            (get(b"owned-by-1234.txt").uid, get(b"owned-by-1234.txt").gid),
            (1234, 5678)
        );
    }
    // Every mtime was stamped into 2001..2005, and they differ.
    let mtimes: std::collections::HashSet<i64> = listing.entries.iter().map(|e| e.mtime).collect();
    assert!(listing
        .entries
        .iter()
        .all(|e| (1_000_000_000..1_100_000_000).contains(&e.mtime)));
    assert!(mtimes.len() > listing.entries.len() / 2);
    for (path, size) in &fixture.files {
        let e = get(path.as_os_str().as_encoded_bytes());
        assert_eq!((e.kind, e.size), (Kind::File, *size));
    }
}

#[test]
fn guest_listing_commands_parse_back_into_the_host_listing() {
    let dir = tempfile::tempdir().unwrap();
    tree::standard_tree(dir.path()).unwrap();
    let stat = sh(
        dir.path(),
        "find . -mindepth 1 -exec stat -c '%f %s %h %u %g %Y %n' {} +",
    );
    let md5 = sh(dir.path(), "find . -type f -exec md5sum {} +");
    let links = sh(
        dir.path(),
        "find . -type l | while IFS= read -r l; do echo \"$l\" && readlink \"$l\" || exit 1; done",
    );
    let parsed = tree::parse_stat_listing(&stat, &md5, &links).unwrap();
    let host = tree::listing(dir.path()).unwrap();
    host.assert_same(&parsed, "busybox view of the fixture");
    // And a difference is reported, not ignored.
    let mut changed = parsed.clone();
    changed.entries[0].mtime += 1;
    assert_eq!(host.diff(&changed).len(), 1);
    let mut fewer = parsed.clone();
    fewer.entries.pop();
    assert_eq!(host.diff(&fewer).len(), 1);
}

#[test]
fn names_digest_matches_ls_sort_md5sum() {
    let dir = tempfile::tempdir().unwrap();
    let t = TreeBuilder::new(dir.path()).unwrap();
    let many = t.many("many", 1500).unwrap();
    let (count, md5) = tree::names_digest(&many).unwrap();
    assert_eq!(count, 1500);
    let out = sh(&many, "ls -1A . | sort | md5sum | cut -d' ' -f1");
    assert_eq!(String::from_utf8_lossy(&out).trim(), md5);
    assert_eq!(tree::many_name(7), "entry-000007");
}
