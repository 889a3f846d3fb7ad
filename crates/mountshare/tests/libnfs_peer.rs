//! libnfs (`nfs-ls`, `nfs-cat` from Debian's libnfs-utils), a client no one here wrote, against
//! `mountshare serve`: it lists the served tree as the host sees it, and every file it reads
//! checksums equal to the local copy.
//!
//! `nfs-cat` mounts the directory holding the file and looks up only the file's name, so reading
//! nested files also proves MOUNT of subdirectories.

use mountshare_testkit::libnfs::{self, NfsTarget};
use mountshare_testkit::server::ServerProcess;
use mountshare_testkit::tempfile;
use mountshare_testkit::tree::{self, Kind, TreeBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");

struct Served {
    _base: tempfile::TempDir,
    root: std::path::PathBuf,
    server: ServerProcess,
}

fn serve_fixture() -> Served {
    let base = tempfile::Builder::new()
        .prefix("mountshare-libnfs-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let root = base.path().join("export");
    // nfs-ls -R refuses to go deeper than 16 levels ("Recursion detected!").
    tree::standard_tree_with(&root, 12).expect("build the fixture tree");
    let t = TreeBuilder::new(&root).unwrap();
    t.file("big/sixty-four-mib.bin", 64 << 20, 64).unwrap();
    t.many("many", 2_000).unwrap();
    t.stamp_times().unwrap();
    let server = ServerProcess::start_local(BIN, &root, &[]).expect("start mountshare serve");
    Served {
        _base: base,
        root,
        server,
    }
}

fn target(s: &Served) -> NfsTarget {
    NfsTarget::local(s.server.port(), s.server.port(), "/")
}

#[test]
fn nfs_ls_recursive_lists_the_served_tree() {
    let s = serve_fixture();
    let host = tree::listing(&s.root).unwrap();
    let listed = libnfs::ls_recursive(&target(&s).url("")).expect("nfs-ls -R of the export");
    assert_eq!(
        listed.len(),
        host.entries.len(),
        "nfs-ls -R shows every entry of the tree"
    );
    let diffs = libnfs::diff_ls(&host, &listed);
    assert!(
        diffs.is_empty(),
        "nfs-ls -R differs from the host's tree:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn nfs_ls_of_a_subdirectory_url() {
    let s = serve_fixture();
    let host = tree::listing(&s.root).unwrap().subtree(b"dir1");
    let listed = libnfs::ls_recursive(&target(&s).url("dir1")).expect("nfs-ls -R of dir1");
    let diffs = libnfs::diff_ls(&host, &listed);
    assert!(
        diffs.is_empty(),
        "nfs-ls -R dir1 differs:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn nfs_cat_of_every_file_matches_the_local_copy() {
    let s = serve_fixture();
    let host = tree::listing(&s.root).unwrap();
    let url = target(&s);
    let mut failures = Vec::new();
    let mut read = 0;
    for entry in host.entries.iter().filter(|e| e.kind == Kind::File) {
        // Names that a URL cannot carry as they are: libnfs does not unescape %XX.
        if entry
            .path
            .iter()
            .any(|&b| b == b'?' || b == b'%' || b == b'#' || !b.is_ascii())
        {
            continue;
        }
        if entry.path.starts_with(b"many/") && !entry.path.ends_with(b"000") {
            continue; // a sample of the many small files is enough
        }
        let rel = String::from_utf8(entry.path.clone()).unwrap();
        let expected = entry.md5.clone().unwrap();
        match libnfs::cat_md5(&url.url(&rel)) {
            Ok((len, md5)) if len == entry.size && md5 == expected => read += 1,
            Ok((len, md5)) => failures.push(format!(
                "{rel}: nfs-cat gave {len} bytes with md5 {md5}, local copy has {} bytes with md5 {expected}",
                entry.size
            )),
            Err(e) => failures.push(format!("{rel}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "nfs-cat mismatches:\n{}",
        failures.join("\n")
    );
    assert!(read >= 20, "read {read} files");
}

#[test]
fn nfs_cat_through_a_symlink_and_of_a_name_with_a_space() {
    let s = serve_fixture();
    let url = target(&s);
    let via_link = libnfs::cat(&url.url("link-relative")).expect("nfs-cat of a symlink");
    assert_eq!(
        via_link,
        std::fs::read(s.root.join("one-byte.bin")).unwrap()
    );
    let spaced = libnfs::cat(&url.url("with space.txt")).expect("nfs-cat of a name with a space");
    assert_eq!(
        spaced,
        std::fs::read(s.root.join("with space.txt")).unwrap()
    );
    assert!(
        libnfs::cat(&url.url("no-such-file")).is_err(),
        "nfs-cat of a missing file fails"
    );
}
