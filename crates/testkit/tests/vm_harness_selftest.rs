//! Self-tests of the VM harness: the guest boots, talks both ways with the host and reports its
//! exit status; then the kernel NFS client in the guest mounts nfs-ganesha's export of a fixture
//! tree and sees what the host sees. This proves the harness independently of mountshare's server.

use mountshare_testkit::free_ports;
use mountshare_testkit::ganesha::Ganesha;
use mountshare_testkit::tree::{self, Field};
use mountshare_testkit::vm::{self, Vm, VmConfig};
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn harness_selftest_console_control_channel_and_exit_status() {
    if vm::skip("harness_selftest_console_control_channel_and_exit_status") {
        return;
    }
    let script = r#"
say "@@ASK"
host_wait
say "@@GOT <$HOST_LINE>"
host_wait
say "@@GOT <$HOST_LINE>"
printf 'a\000b\377\n' >/tmp/blob
emit bytes /tmp/blob
say "@@HOST_BINARY $(/opt/host/md5sum /tmp/blob)"
exit 7
"#;
    let mut vm = Vm::boot(VmConfig {
        name: "selftest".into(),
        script: script.into(),
        // A dynamically linked host program runs in the guest with its libraries.
        extra_files: vm::binary_with_libraries(
            std::path::Path::new("/usr/bin/md5sum"),
            "/opt/host/md5sum",
        )
        .expect("coreutils' md5sum"),
        ..VmConfig::default()
    })
    .expect("boot the VM");
    vm.wait_for("@@ASK", MINUTE).unwrap();
    vm.send_line("hello guest").unwrap();
    vm.send_line("second line").unwrap();
    assert_eq!(vm.wait_for("@@GOT", MINUTE).unwrap(), "@@GOT <hello guest>");
    assert_eq!(vm.wait_for("@@GOT", MINUTE).unwrap(), "@@GOT <second line>");
    assert_eq!(vm.wait_blob("bytes", MINUTE).unwrap(), b"a\0b\xff\n");
    let expected = tree::md5_bytes(b"a\0b\xff\n");
    assert_eq!(
        vm.wait_for("@@HOST_BINARY", MINUTE).unwrap(),
        format!("@@HOST_BINARY {expected}  /tmp/blob")
    );
    assert_eq!(
        vm.wait_exit(MINUTE).unwrap(),
        7,
        "the guest script's exit status"
    );
}

/// The whole chain the mountshare VM tests rely on, proved against nfs-ganesha: the guest kernel
/// mounts a host export with explicit ports and no portmapper, and `find`/`stat`/`md5sum`/
/// `readlink`/`ls -la` in the guest agree with the host. Then Debian's `mount.nfs`, shipped into
/// the guest with its libraries and `/etc/netconfig`, mounts it too.
#[test]
fn harness_selftest_kernel_client_mounts_ganesha_export() {
    if vm::skip("harness_selftest_kernel_client_mounts_ganesha_export") {
        return;
    }
    // ganesha's VFS FSAL needs name_to_handle_at(2): use a directory on the disk, not tmpfs.
    let base = tempfile::Builder::new()
        .prefix("mountshare-selftest-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let export = base.path().join("export");
    let fixture = tree::standard_tree(&export).expect("build the fixture tree");
    let big = tree::TreeBuilder::new(&export)
        .unwrap()
        .file("big.bin", 48 << 20, 99)
        .unwrap();
    let big_md5 = tree::md5_file(&big).unwrap();
    let host = tree::listing(&export).unwrap();
    assert!(
        host.entries.len() > 40,
        "the fixture has {} entries",
        host.entries.len()
    );

    let [nfs_port, mount_port] = free_ports(2)[..] else {
        unreachable!()
    };
    let ganesha = Ganesha::start(&export, nfs_port, mount_port).expect("start ganesha");
    let options = vm::kernel_mount_options(&format!(
        "vers=3,port={nfs_port},mountport={mount_port},tcp,nolock,soft"
    ));
    let script = format!(
        r#"
nfs_mount '{options}' '{host}:{path}' /mnt
emit_listing tree /mnt
emit_ls root /mnt
emit_ls dir1 /mnt/dir1
say "@@MD5 $(md5sum /mnt/big.bin | cut -d' ' -f1)"
say "@@READLINK $(readlink /mnt/link-relative)|$(readlink /mnt/link-dangling)|$(cat /mnt/link-relative | md5sum | cut -d' ' -f1)"
umount /mnt
/sbin/mount.nfs '{host}:{path}' /mnt -o 'vers=3,port={nfs_port},mountport={mount_port},tcp,nolock,soft'
say "@@HELPER $(md5sum /mnt/odd-size.bin | cut -d' ' -f1) $(grep -c ' /mnt nfs ' /proc/mounts)"
umount /mnt
"#,
        host = vm::HOST_IP,
        path = ganesha.export().display(),
    );
    let mut vm = Vm::boot(VmConfig {
        name: "selftest-ganesha".into(),
        script,
        extra_files: vm::mount_nfs_files().expect("Debian's mount.nfs (nfs-common) is installed"),
        ..VmConfig::default()
    })
    .expect("boot the VM");
    let guest = vm
        .wait_listing("tree", 5 * MINUTE)
        .expect("listing from the guest");
    // ganesha reports directory sizes of its own; everything else must match exactly.
    host.without(&[Field::DirSize]).assert_same(
        &guest.without(&[Field::DirSize]),
        "find/stat/md5sum through ganesha",
    );

    for (blob, dir) in [("root", export.clone()), ("dir1", export.join("dir1"))] {
        let guest_ls = vm.wait_blob(blob, MINUTE).unwrap();
        let host_ls = vm::host_ls(&dir).unwrap();
        let strip_sizes = |lines: Vec<String>| -> Vec<String> {
            // Directory sizes and the "total" line depend on ganesha's idea of a directory's size.
            lines
                .into_iter()
                .filter(|l| !l.starts_with("total "))
                .map(|l| {
                    if l.starts_with('d') {
                        l.split_whitespace().skip(5).collect::<Vec<_>>().join(" ")
                    } else {
                        l
                    }
                })
                .collect()
        };
        assert_eq!(
            strip_sizes(vm::ls_lines_without_parent(&guest_ls)),
            strip_sizes(vm::ls_lines_without_parent(&host_ls)),
            "ls -la of {}",
            dir.display()
        );
    }
    let md5 = vm.wait_for("@@MD5", 5 * MINUTE).unwrap();
    assert_eq!(md5, format!("@@MD5 {big_md5}"));
    let readlink = vm.wait_for("@@READLINK", MINUTE).unwrap();
    let one_byte = tree::md5_file(&export.join("one-byte.bin")).unwrap();
    assert_eq!(
        readlink,
        format!("@@READLINK one-byte.bin|does/not/exist|{one_byte}")
    );
    let helper = vm.wait_for("@@HELPER", MINUTE).unwrap();
    let odd = tree::md5_file(&export.join("odd-size.bin")).unwrap();
    assert_eq!(
        helper,
        format!("@@HELPER {odd} 1"),
        "a mount through Debian's mount.nfs in the guest"
    );
    assert_eq!(vm.wait_exit(MINUTE).unwrap(), 0);
    assert!(fixture.symlinks.len() >= 5);
    drop(ganesha);
}
