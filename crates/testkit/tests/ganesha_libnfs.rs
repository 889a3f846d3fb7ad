//! libnfs against nfs-ganesha: proves the ganesha and libnfs helpers (the same checks run against
//! mountshare in the `mountshare` crate's tests).

use mountshare_testkit::free_ports;
use mountshare_testkit::ganesha::Ganesha;
use mountshare_testkit::libnfs::{self, NfsTarget};
use mountshare_testkit::tree;

#[test]
fn libnfs_lists_and_reads_a_ganesha_export() {
    let base = tempfile::Builder::new()
        .prefix("mountshare-ganesha-libnfs-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let export = base.path().join("export");
    // nfs-ls -R stops at 16 levels; keep the deep chain shallower.
    tree::standard_tree_with(&export, 12).unwrap();
    let host = tree::listing(&export).unwrap();
    let [nfs_port, mount_port] = free_ports(2)[..] else {
        unreachable!()
    };
    let ganesha = Ganesha::start(&export, nfs_port, mount_port).expect("start ganesha");
    let target = NfsTarget::local(nfs_port, mount_port, &ganesha.export().to_string_lossy());

    let listed = libnfs::ls_recursive(&target.url("")).expect("nfs-ls -R");
    // ganesha reports directory sizes of its own; compare everything else.
    let host_view = host.without(&[tree::Field::DirSize]);
    let mut listed_view = listed.clone();
    for e in &mut listed_view {
        if e.kind == tree::Kind::Dir {
            e.size = 0;
        }
    }
    let diffs = libnfs::diff_ls(&host_view, &listed_view);
    assert!(
        diffs.is_empty(),
        "nfs-ls -R differs from the host:\n{}",
        diffs.join("\n")
    );

    for rel in [
        "odd-size.bin",
        "with space.txt",
        "dir1/dir2/dir3/nested.bin",
        "link-relative",
    ] {
        let data = libnfs::cat(&target.url(rel)).unwrap_or_else(|e| panic!("nfs-cat {rel}: {e}"));
        let local = std::fs::read(export.join(rel)).unwrap();
        assert_eq!(tree::md5_bytes(&data), tree::md5_bytes(&local), "{rel}");
    }
    let (len, md5) = libnfs::cat_md5(&target.url("one-mib-plus-one.bin")).unwrap();
    assert_eq!(len, (1 << 20) + 1);
    assert_eq!(
        md5,
        tree::md5_file(&export.join("one-mib-plus-one.bin")).unwrap()
    );
    assert!(
        libnfs::cat(&target.url("does-not-exist")).is_err(),
        "a missing file is an error"
    );
}
