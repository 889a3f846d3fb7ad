//! Self-tests of the VM harness: the guest boots, talks both ways with the host and reports its
//! exit status; then the kernel NFS client in the guest mounts nfs-ganesha's export of a fixture
//! tree and sees what the host sees. This proves the harness independently of mountshare's server.

use mountshare_testkit::ganesha::Ganesha;
use mountshare_testkit::tree::{self, Field};
use mountshare_testkit::vm::{self, Vm, VmConfig};
use mountshare_testkit::free_port;
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
exit 7
"#;
    let mut vm = Vm::boot(VmConfig {
        name: "selftest".into(),
        script: script.into(),
        ..VmConfig::default()
    })
    .expect("boot the VM");
    vm.wait_for("@@ASK", MINUTE).unwrap();
    vm.send_line("hello guest").unwrap();
    vm.send_line("second line").unwrap();
    assert_eq!(vm.wait_for("@@GOT", MINUTE).unwrap(), "@@GOT <hello guest>");
    assert_eq!(vm.wait_for("@@GOT", MINUTE).unwrap(), "@@GOT <second line>");
    assert_eq!(vm.wait_blob("bytes", MINUTE).unwrap(), b"a\0b\xff\n");
    assert_eq!(vm.wait_exit(MINUTE).unwrap(), 7, "the guest script's exit status");
}
