//! The Linux kernel NFS client, in a qemu VM, against `mountshare serve` on the host.
//!
//! The guest mounts with the user's options (`vers=3,port=P,mountport=P,tcp,nolock,soft`, plus
//! the server's address that `mount.nfs` would add) through `mount(2)` alone: no `mount.nfs`, no
//! portmapper. Two VMs:
//! - one checks that `ls -la`, `find` and `stat` agree with the host, that md5sums match
//!   (including a 512 MiB file), that a 20,000-entry directory lists completely and that symlinks
//!   read back;
//! - one reads half of a 512 MiB file, waits while the host kills the server with SIGKILL and
//!   starts it again on the same port, then reads the rest from the same open file: no error, and
//!   the md5 of the whole matches.
//!
//! Set `MOUNTSHARE_SKIP_VM=1` to skip these (they say so); otherwise a missing qemu or kernel fails.

use mountshare_testkit::server::ServerProcess;
use mountshare_testkit::tempfile;
use mountshare_testkit::tree::{self, TreeBuilder};
use mountshare_testkit::vm::{self, Vm, VmConfig};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const MINUTE: Duration = Duration::from_secs(60);
const LARGE: u64 = 512 << 20;
const MANY: usize = 20_000;

/// How a scenario mounts: extra server arguments, and the mount options for a server on `port`
/// exactly as a user would type them (the guest adds `addr=`/`mountaddr=` pointing at the host).
#[derive(Clone, Copy)]
struct Mounting {
    server_args: &'static [&'static str],
    options: fn(port: u16) -> String,
}

/// The mount line the issue names: explicit ports, no portmapper needed.
const EXPLICIT_PORTS: Mounting = Mounting {
    server_args: &[],
    options: |port| format!("vers=3,port={port},mountport={port},tcp,nolock,soft"),
};

/// A fixture directory on the disk (not tmpfs) below the target dir, removed at the end.
fn fixture_base(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create the fixture directory")
}

fn guest_script(options: &str, body: &str) -> String {
    format!(
        "set -o pipefail\nnfs_mount '{options}' '{host}:/' /mnt\nsay \"@@MOUNTED\"\n{body}\numount /mnt\n",
        options = vm::kernel_mount_options(options),
        host = vm::HOST_IP,
    )
}

fn boot(name: &str, script: String) -> Vm {
    Vm::boot(VmConfig {
        name: name.into(),
        script,
        memory_mb: 1024,
        ..VmConfig::default()
    })
    .expect("boot the VM (qemu-system-x86, linux-image-amd64 and busybox-static must be installed)")
}

/// Failures are collected so that one run reports every check that failed, not only the first.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    #[track_caller]
    fn finish(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}

fn view_matches_host(mounting: Mounting) {
    let base = fixture_base("mountshare-vm-view-");
    let root = base.path().join("export");
    tree::standard_tree(root.join("tree")).expect("build the fixture tree");
    let t = TreeBuilder::new(&root).unwrap();
    let many = t.many("many", MANY).unwrap();
    let large = t.file("large.bin", LARGE, 512).unwrap();
    // A directory's mtime, as served, is its listing's fingerprint: the host's directories get
    // the same, so every other attribute is compared as it is.
    t.stamp_dir_times_with(&mountshare_server::listing_times)
        .unwrap();
    let host_tree = tree::listing(&root.join("tree")).unwrap();
    let host_names = tree::names_digest(&many).unwrap();
    let large_md5 = tree::md5_file(&large).unwrap();
    let one_byte_md5 = tree::md5_file(&root.join("tree/one-byte.bin")).unwrap();
    let abs_target = root.join("tree/one-byte.bin");
    let ls_dirs = ["tree", "tree/dir1", "tree/dir1/dir2", "tree/sticky-dir"];

    let mut server = ServerProcess::start_local(BIN, &root, mounting.server_args)
        .expect("start mountshare serve");
    let mut body = String::from("emit_listing tree /mnt/tree\n");
    for (i, dir) in ls_dirs.iter().enumerate() {
        body.push_str(&format!("emit_ls ls{i} '/mnt/{dir}'\n"));
    }
    body.push_str(
        r#"emit_names many /mnt/many
say "@@FIND_MANY $(find /mnt/many -type f | wc -l)"
say "@@READLINK $(readlink /mnt/tree/link-relative)|$(readlink /mnt/tree/link-dangling)|$(readlink /mnt/tree/link-absolute)|$(readlink /mnt/tree/dir1/dir2/link-up)"
say "@@THROUGH_LINK $(md5sum </mnt/tree/link-relative | cut -d' ' -f1)"
say "@@DIR_LINK $(ls /mnt/tree/link-to-dir/ | tr '\n' ' ')"
say "@@LARGE $(md5sum /mnt/large.bin | cut -d' ' -f1)"
say "@@STAT_LARGE $(stat -c '%s %h %f' /mnt/large.bin)"
"#,
    );
    let mut guest = boot(
        "view",
        guest_script(&(mounting.options)(server.port()), &body),
    );
    let mut checks = Checks::default();

    let view = guest
        .wait_listing("tree", 5 * MINUTE)
        .expect("the guest's find/stat/md5sum listing");
    let diff = host_tree.diff(&view);
    checks.check(diff.is_empty(), || {
        format!(
            "find/stat/md5sum in the guest differ from the host ({} entries on the host):\n{}",
            host_tree.entries.len(),
            diff.join("\n")
        )
    });
    for (i, dir) in ls_dirs.iter().enumerate() {
        let guest_ls = guest.wait_blob(&format!("ls{i}"), MINUTE).unwrap();
        let host_ls = vm::host_ls(&root.join(dir)).unwrap();
        let (g, h) = (
            vm::ls_lines_without_parent(&guest_ls),
            vm::ls_lines_without_parent(&host_ls),
        );
        checks.check(g == h, || {
            format!(
                "ls -la {dir} differs:\n--- host\n{}\n--- guest\n{}",
                h.join("\n"),
                g.join("\n")
            )
        });
    }
    let names = guest.wait_names("many", 5 * MINUTE).unwrap();
    checks.check(names == host_names, || {
        format!(
            "ls of the {MANY}-entry directory: guest saw {} names (md5 {}), host has {} (md5 {})",
            names.0, names.1, host_names.0, host_names.1
        )
    });
    let find = guest.wait_for("@@FIND_MANY", 5 * MINUTE).unwrap();
    checks.check(find == format!("@@FIND_MANY {MANY}"), || {
        format!("find in the {MANY}-entry directory: {find}")
    });
    let readlink = guest.wait_for("@@READLINK", MINUTE).unwrap();
    let expected = format!(
        "@@READLINK one-byte.bin|does/not/exist|{}|../sibling.txt",
        abs_target.display()
    );
    checks.check(readlink == expected, || {
        format!("readlink: got {readlink:?}, expected {expected:?}")
    });
    let through = guest.wait_for("@@THROUGH_LINK", MINUTE).unwrap();
    checks.check(through == format!("@@THROUGH_LINK {one_byte_md5}"), || {
        format!("reading through a symlink: {through}, expected md5 {one_byte_md5}")
    });
    let dir_link = guest.wait_for("@@DIR_LINK", MINUTE).unwrap();
    checks.check(dir_link.trim_end() == "@@DIR_LINK dir3 link-up", || {
        format!("listing through a symlink to a directory: {dir_link:?}")
    });
    let large_line = guest.wait_for("@@LARGE", 10 * MINUTE).unwrap();
    checks.check(large_line == format!("@@LARGE {large_md5}"), || {
        format!("md5 of the 512 MiB file: {large_line}, host has {large_md5}")
    });
    let stat = guest.wait_for("@@STAT_LARGE", MINUTE).unwrap();
    checks.check(stat == format!("@@STAT_LARGE {LARGE} 1 81a4"), || {
        format!("stat of the large file: {stat}")
    });
    let status = guest.wait_exit(2 * MINUTE).unwrap();
    checks.check(status == 0, || {
        format!("the guest script exited with {status}")
    });
    checks.finish();
    server.terminate(MINUTE).ok();
}

fn read_survives_kill9(mounting: Mounting) {
    let base = fixture_base("mountshare-vm-restart-");
    let root = base.path().join("export");
    let fixture = tree::standard_tree(root.join("tree")).expect("build the fixture tree");
    let large = TreeBuilder::new(&root)
        .unwrap()
        .file("large.bin", LARGE, 4242)
        .unwrap();
    let large_md5 = tree::md5_file(&large).unwrap();
    let leaf_rel = Path::new("tree")
        .join(&fixture.deep_file)
        .display()
        .to_string();
    let leaf_md5 = tree::md5_file(&root.join(&leaf_rel)).unwrap();
    let half_mib = LARGE / 2 / (1 << 20);

    let mut server = ServerProcess::start_local(BIN, &root, mounting.server_args)
        .expect("start mountshare serve");
    // One open file description for both halves: the second dd carries on at the offset the
    // first one stopped at, through the handle the client got before the restart.
    let body = format!(
        r#"ls /mnt/tree >/dev/null
{{ dd bs=1M count={half_mib} 2>/tmp/dd1.err || {{ say "@@ERROR first half: $(cat /tmp/dd1.err)"; exit 1; }}
   say "@@HALF_READ"
   host_wait
   say "@@RESUMING after $HOST_LINE"
   dd bs=1M 2>/tmp/dd2.err || {{ say "@@ERROR second half: $(cat /tmp/dd2.err)"; exit 1; }}
}} </mnt/large.bin | md5sum >/tmp/large.md5
say "@@WHOLE $(cut -d' ' -f1 /tmp/large.md5)"
say "@@DEEP $(md5sum </mnt/{leaf_rel} | cut -d' ' -f1)"
"#
    );
    let mut guest = boot(
        "restart",
        guest_script(&(mounting.options)(server.port()), &body),
    );
    guest
        .wait_for("@@HALF_READ", 10 * MINUTE)
        .expect("the guest read the first half");
    let old_pid = server.pid();
    server.kill9().expect("kill -9 the server");
    server
        .restart()
        .expect("start the server again on the same port");
    assert_ne!(server.pid(), old_pid, "a new server process");
    guest.send_line("restart").unwrap();
    guest.wait_for("@@RESUMING", MINUTE).unwrap();
    let whole = guest
        .wait_for("@@WHOLE", 10 * MINUTE)
        .expect("the guest read the rest of the file after the restart");
    assert_eq!(
        whole,
        format!("@@WHOLE {large_md5}"),
        "md5 of the file read across the server's kill -9 and restart"
    );
    let deep = guest.wait_for("@@DEEP", 2 * MINUTE).unwrap();
    assert_eq!(
        deep,
        format!("@@DEEP {leaf_md5}"),
        "a file 17 directories down, looked up after the restart"
    );
    assert_eq!(
        guest.wait_exit(2 * MINUTE).unwrap(),
        0,
        "the guest script exits cleanly"
    );
    assert!(
        !guest.console().iter().any(|l| l.starts_with("@@ERROR")),
        "no read error in the guest"
    );
    assert_eq!(server.starts(), 2);
}

#[test]
fn kernel_client_view_matches_host() {
    if vm::skip("kernel_client_view_matches_host") {
        return;
    }
    view_matches_host(EXPLICIT_PORTS);
}

#[test]
fn kernel_client_read_survives_server_kill9_and_restart() {
    if vm::skip("kernel_client_read_survives_server_kill9_and_restart") {
        return;
    }
    read_survives_kill9(EXPLICIT_PORTS);
}
