//! The FUSE daemon behind a plain `mountshare serve DIR` is killed (SIGKILL) and mounted again
//! (Decypharr restarting) while the Linux kernel client, in a qemu VM, lists the export every
//! 0.5 s and holds a file open: no listing is ever empty or partial, the listing comes back
//! without a remount on the client, and the open file reads to its end with the right md5.
//!
//! Needs root, /dev/fuse and the `hangfs` binary of mountshare-testkit built with the same
//! profile (`cargo test --workspace` builds it). `MOUNTSHARE_SKIP_VM=1` skips it.

use mountshare_testkit::hangfs::{Fixture, HangFs, HangFsOptions};
use mountshare_testkit::server::ServerProcess;
use mountshare_testkit::tree::{self, TreeBuilder};
use mountshare_testkit::vm::{self, Vm, VmConfig};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn a_remounted_fuse_daemon_is_followed_without_an_empty_listing() {
    if vm::skip("a_remounted_fuse_daemon_is_followed_without_an_empty_listing") {
        return;
    }
    let fixture = Fixture::new("mountshare-vm-remount-", env!("CARGO_TARGET_TMPDIR"));
    let (hangfs, source, mnt) = (&fixture.hangfs, &fixture.source, &fixture.mnt);
    let t = TreeBuilder::new(source).unwrap();
    let movie = t.file("__all__/movie.mkv", 8 << 20, 7).unwrap();
    let movie_md5 = tree::md5_file(&movie).unwrap();
    t.bytes("movies/a.mkv", b"a").unwrap();
    t.bytes("shows/b.mkv", b"b").unwrap();
    let entries = 3; // __all__, movies, shows

    let mut fs =
        HangFs::start(hangfs, source, mnt, HangFsOptions::default()).expect("mount hangfs");
    let mut server = ServerProcess::start_local(BIN, mnt, &["--expect", "__all__"])
        .expect("start mountshare serve");
    let options = format!(
        "vers=3,port={p},mountport={p},tcp,nolock,soft,timeo=100,retrans=3,actimeo=0",
        p = server.port()
    );
    let script = format!(
        r#"set -o pipefail
nfs_mount '{options}' '{host}:/' /mnt
say "@@MOUNTED"
exec 3</mnt/__all__/movie.mkv
dd bs=65536 count=64 <&3 >/tmp/first 2>/dev/null
say "@@FIRST_HALF $(wc -c </tmp/first)"
( while [ ! -e /tmp/stop ]; do
      n=$(ls /mnt 2>/tmp/ls.err | wc -l)
      say "@@LIST $n $(head -c 100 /tmp/ls.err)"
      usleep 500000
  done ) &
host_wait
cat <&3 >/tmp/rest
say "@@WHOLE $(cat /tmp/first /tmp/rest | md5sum | cut -d' ' -f1)"
touch /tmp/stop
wait
exec 3<&-
umount /mnt
"#,
        options = vm::kernel_mount_options(&options),
        host = vm::HOST_IP,
    );
    let mut guest = Vm::boot(VmConfig {
        name: "remount".into(),
        script,
        memory_mb: 512,
        ..VmConfig::default()
    })
    .expect(
        "boot the VM (qemu-system-x86, linux-image-amd64 and busybox-static must be installed)",
    );
    guest
        .wait_for("@@MOUNTED", 5 * MINUTE)
        .expect("the guest mounted");
    let first = guest.wait_for("@@FIRST_HALF ", MINUTE).unwrap();
    assert!(first.ends_with(" 4194304"), "{first}");
    let check = |line: &str| {
        let n: usize = line
            .split_ascii_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert_eq!(
            n, entries,
            "a listing while the FUSE daemon dies and comes back: {line}"
        );
    };
    for _ in 0..3 {
        check(&guest.wait_for("@@LIST ", MINUTE).unwrap());
    }

    // Decypharr dies: its mount stays, dead. Then it comes back, mounted anew at DIR.
    fs.kill9().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    fs.restart().expect("mount hangfs again");
    println!("FUSE daemon killed, and mounted again 3 s later");
    // Every listing meanwhile was whole (they wait, never come back empty); more after the
    // remount, through the same client mount (16 lines take 8 s at the least). `actimeo=0`
    // makes every `ls` ask the server, so none is answered from the client's cache alone.
    for _ in 0..16 {
        check(&guest.wait_for("@@LIST ", 2 * MINUTE).unwrap());
    }
    guest.send_line("rest").unwrap();
    let whole = guest.wait_for("@@WHOLE ", 2 * MINUTE).unwrap();
    assert!(
        whole.ends_with(&movie_md5),
        "the file held open across the remount reads to its end: {whole}, want {movie_md5}"
    );
    assert_eq!(
        guest.wait_exit(2 * MINUTE).unwrap(),
        0,
        "the guest script exits cleanly"
    );
    let log = server.log();
    assert!(
        log.contains("the mount at DIR changed; serving the new one"),
        "the server followed the remount:\n{log}"
    );
    server.terminate(MINUTE).ok();
    fs.stop();
}
