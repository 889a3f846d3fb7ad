//! `mountshare serve --portmap`: a client given no port options finds the server by itself, as
//! a plain `mount -t nfs -o vers=3,nolock HOST:/ /mnt` or a kubelet `nfs:` volume does. Checked
//! with the Linux kernel client in a qemu VM, two ways:
//! - Debian's `mount.nfs` with only `vers=3,nolock` (it asks the portmapper on port 111 for the
//!   NFS and MOUNT ports, over UDP or TCP);
//! - `mount(2)` with no `port=`/`mountport=` at all (the kernel's own portmapper client).
//!
//! Needs port 111 free on the host (no rpcbind running). `MOUNTSHARE_SKIP_VM=1` skips it.

use mountshare_testkit::server::ServerProcess;
use mountshare_testkit::tempfile;
use mountshare_testkit::tree::{self, TreeBuilder};
use mountshare_testkit::vm::{self, Vm, VmConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn clients_without_port_options_find_the_server_through_its_portmapper() {
    if vm::skip("clients_without_port_options_find_the_server_through_its_portmapper") {
        return;
    }
    if std::net::TcpListener::bind("0.0.0.0:111").is_err() {
        panic!("port 111 is taken on this host (rpcbind running?): stop it to run this test");
    }
    let base = tempfile::Builder::new()
        .prefix("mountshare-vm-portmap-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let root = base.path().join("export");
    let t = TreeBuilder::new(&root).unwrap();
    let many = t.many("shows", 300).unwrap();
    let movie = t.file("movie.mkv", 3 << 20, 7).unwrap();
    let host_names = tree::names_digest(&many).unwrap();
    let movie_md5 = tree::md5_file(&movie).unwrap();

    // NFS on an arbitrary port: only the portmapper on 111 tells clients where it is.
    let port = mountshare_testkit::server::free_port();
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let _srv = ServerProcess::start(BIN, &root, listen, &["--portmap"]).unwrap();

    let host = vm::HOST_IP;
    let script = format!(
        r#"set -o pipefail
/sbin/mount.nfs '{host}:/' /mnt -o vers=3,nolock
say "@@OPTS $(grep ' /mnt nfs ' /proc/mounts)"
emit_names helper /mnt/shows
say "@@MD5 helper $(md5sum /mnt/movie.mkv | cut -d' ' -f1)"
umount /mnt
mount -t nfs -o 'vers=3,addr={host},proto=tcp,mountproto=tcp,nolock,soft' '{host}:/' /mnt
emit_names kernel /mnt/shows
say "@@MD5 kernel $(md5sum /mnt/movie.mkv | cut -d' ' -f1)"
umount /mnt
"#
    );
    let mut vm = Vm::boot(VmConfig {
        name: "portmap".into(),
        script,
        extra_files: vm::mount_nfs_files().expect("Debian's mount.nfs (nfs-common) is installed"),
        ..VmConfig::default()
    })
    .expect("boot the VM");

    let opts = vm
        .wait_for("@@OPTS", 2 * MINUTE)
        .expect("mount.nfs mounted");
    assert!(
        opts.contains(&format!("port={port}")) && opts.contains(&format!("mountport={port}")),
        "mount.nfs learned the server's port from its portmapper: {opts}"
    );
    for how in ["helper", "kernel"] {
        assert_eq!(
            vm.wait_names(how, 2 * MINUTE).unwrap(),
            host_names,
            "{how}: the directory lists as on the host"
        );
        let md5 = vm.wait_for(&format!("@@MD5 {how}"), 2 * MINUTE).unwrap();
        assert!(md5.ends_with(&movie_md5), "{how}: {md5} vs {movie_md5}");
    }
    assert_eq!(
        vm.wait_exit(MINUTE).unwrap(),
        0,
        "{}",
        vm.console().join("\n")
    );
}
