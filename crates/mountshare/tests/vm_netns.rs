//! Why the node agent must mount from the host's network namespace (`hostNetwork: true`): the
//! Linux kernel NFS client (in a qemu VM) keeps a mount's TCP connection in the network namespace
//! of the process that called mount(2), so a mount made from a pod's own network dies when the
//! pod is replaced and CNI deletes its interface.
//!
//! In the guest, against `mountshare serve` on the host:
//! - a "pod network" is a network namespace of its own, held by a sleeping process, with a
//!   macvlan of eth0 at its own 10.0.2.x address (what CNI gives a pod; qemu's user network
//!   answers it like the guest's own address);
//! - each agent runs in a mount namespace of its own with the host path bound rshared
//!   (`Bidirectional`); one consumer shell, never restarted, has both host paths bound rslave
//!   (`HostToContainer`) and, on request, lists a path and looks up a fresh name in it (a LOOKUP
//!   the client cannot answer from its caches).
//!
//! (A) without the fix: agent1 runs in pod network A (it must be told `--allow-pod-network`)
//!     and mounts; the consumer reads. Then the pod is replaced: agent1 is stopped, A's interface
//!     is deleted and its holder killed, and agent2 starts in pod network B. The consumer's reads
//!     fail (`Input/output error`) and keep failing; agent2 refuses to mount from a pod network:
//!     one log line naming the fix, `/readyz` 503 `wrong_network`.
//! (B) with the fix: the same replacement, but agent3 and agent4 run in the guest's own network
//!     namespace (the host's). agent4 adopts agent3's mount, and the consumer keeps reading for
//!     at least twice as long as (A) took to fail, without one failed read.
//!
//! It prints `netns: ...` with the figures. Set `MOUNTSHARE_SKIP_VM=1` to skip it.

use mountshare_testkit::server::{free_port, ServerProcess};
use mountshare_testkit::tempfile;
use mountshare_testkit::tree;
use mountshare_testkit::vm::{self, ExtraFile, Vm, VmConfig};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const MINUTE: Duration = Duration::from_secs(60);

/// The mountshare binary (stripped: the initramfs lives in guest RAM) and the shared libraries
/// it needs, for the guest.
fn mountshare_files(scratch: &Path) -> Vec<ExtraFile> {
    let stripped = scratch.join("mountshare");
    let strip_ok = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(BIN)
        .status()
        .is_ok_and(|s| s.success());
    let host = if strip_ok {
        stripped
    } else {
        PathBuf::from(BIN)
    };
    vm::binary_with_libraries(&host, "/usr/bin/mountshare")
        .expect("the mountshare binary and its libraries")
}

fn guest_script(port: u16) -> String {
    let host = vm::HOST_IP;
    format!(
        r#"set -o pipefail
SERVER={host}:{port}
now() {{ cut -d. -f1 /proc/uptime; }}
# in_net NET CMD...: CMD in the network namespace of process NET ("host": the guest's own).
in_net() {{ n=$1; shift; if [ "$n" = host ]; then "$@"; else nsenter -t "$n" -n "$@"; fi; }}
ready() {{ in_net "$2" timeout 10 wget -q -O /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null; }}
readyz_body() {{ printf 'GET /readyz HTTP/1.0\r\n\r\n' | in_net "$2" timeout 10 nc 127.0.0.1 "$1" 2>/dev/null | tail -n 1; }}
mounts_at() {{ grep " $1 " /proc/self/mountinfo | awk '{{print $1 "/" $2 "/" $(NF-2) "/" $(NF-1)}}' | tr '\n' ' '; }}
wait_ready() {{
    end=$(( $(now) + $3 ))
    until ready "$1" "$2"; do
        [ "$(now)" -lt "$end" ] || {{ say "@@FAIL agent on :$1 not ready within $3 s: $(readyz_body $1 $2)"; return 1; }}
        sleep 0.5
    done
}}
# pod_net IFACE ADDR: a pod's network, as CNI makes it: a namespace of its own held by a
# sleeping process, with a macvlan of eth0 at ADDR. Sets POD.
pod_net() {{
    unshare -n sleep 1000000 &
    POD=$!
    until [ "$(readlink /proc/$POD/ns/net)" != "$(readlink /proc/1/ns/net)" ]; do sleep 0.1; done
    ip link add link eth0 name "$1" type macvlan
    ip link set "$1" netns "$POD"
    nsenter -t "$POD" -n sh -c "ip link set lo up && ip link set $1 up && ip addr add $2/24 dev $1"
    say "@@NET $1 $(nsenter -t $POD -n ip -o -4 addr show dev $1 | awk '{{print $4}}') in $(readlink /proc/$POD/ns/net) (the guest: $(readlink /proc/1/ns/net))"
}}
# delete_pod_net IFACE: what CNI does when the pod goes: the interface is deleted, the namespace
# let go (only the NFS client still holds it then).
delete_pod_net() {{ nsenter -t "$POD" -n ip link del "$1"; kill "$POD"; wait "$POD" 2>/dev/null || true; }}
# start_agent NAME NET HOSTPATH PORT [FLAGS]: attach in a new mount namespace (a new pod) with
# HOSTPATH bound rshared at /ctr/NAME, in network namespace NET; health on 127.0.0.1:PORT there;
# its log on the console as "@@LOG NAME ...". Sets AGENT (its pid).
start_agent() {{
    name=$1; net=$2; hp=$3; hport=$4; shift 4
    mkdir -p /ctr/$name
    mkfifo /tmp/$name.log
    while IFS= read -r l; do echo "@@LOG $name $l"; done </tmp/$name.log >/dev/console &
    in_net "$net" unshare -m --propagation shared sh -c "
        mount --rbind $hp /ctr/$name && mount --make-rshared /ctr/$name && echo \$\$ >/tmp/$name.pid &&
        exec env RUST_LOG=info mountshare attach --server $SERVER --target /ctr/$name \
            --listen-health 127.0.0.1:$hport $*" >/tmp/$name.log 2>&1 &
    until [ -s /tmp/$name.pid ]; do sleep 0.1; done
    AGENT=$(cat /tmp/$name.pid)
}}
stop_agent() {{ kill -TERM "$1"; while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; }}
# consumer_ls TAG DIR: the consumer reads its view of /mnt/DIR; LS is "ok COUNT" or "err MESSAGE".
consumer_ls() {{ echo "$1 $2" >/tmp/consumer.req; read -r LS </tmp/consumer.res; }}

mkdir -p /mnt/dfsA /mnt/dfsB /ctr/consumer/dfsA /ctr/consumer/dfsB
# The node's host paths: shared mounts (binds of themselves).
for d in dfsA dfsB; do mount --bind /mnt/$d /mnt/$d; mount --make-shared /mnt/$d; done

# The consumer: HostToContainer, never restarted.
mkfifo /tmp/consumer.req /tmp/consumer.res
unshare -m --propagation shared sh -c '
    . /lib/testkit.sh
    for d in dfsA dfsB; do
        mount --rbind /mnt/$d /ctr/consumer/$d && mount --make-rslave /ctr/consumer/$d || exit 1
    done
    n=0
    while :; do
        read -r tag dir </tmp/consumer.req || continue
        n=$((n+1))
        if ls -1A /ctr/consumer/$dir >/tmp/c.out 2>/tmp/c.err; then
            if stat /ctr/consumer/$dir/.fresh-$$-$n >/dev/null 2>/tmp/c.err; then
                r="err a fresh name exists"
            elif grep -q "No such file" /tmp/c.err; then
                r="ok $(wc -l </tmp/c.out)"
            else
                r="err $(head -n 1 /tmp/c.err)"
            fi
        else
            r="err $(head -n 1 /tmp/c.err)"
        fi
        say "@@LS $tag $dir pid=$$ $r"
        echo "$r" >/tmp/consumer.res
    done' &

# (A) without the fix: the agent mounts from a pod network of its own.
pod_net mvA 10.0.2.21
start_agent agent1 "$POD" /mnt/dfsA 9100 --allow-pod-network
A1=$AGENT; NET_A=$POD
wait_ready 9100 "$NET_A" 300
say "@@A_READY $(readyz_body 9100 $NET_A)"
say "@@A_NODE $(mounts_at /mnt/dfsA)"
consumer_ls a0 dfsA
case "$LS" in ok*) ;; *) say "@@FAIL (A) the consumer does not read the mount: $LS"; exit 1;; esac
# The pod is replaced: the agent stops, CNI deletes the pod's network, a new pod starts.
stop_agent $A1
delete_pod_net mvA
replaced=$(now)
say "@@A_REPLACED"
pod_net mvB 10.0.2.22
start_agent agent2 "$POD" /mnt/dfsA 9101
NET_B=$POD
A2=$AGENT
end=$(( $(now) + 300 )); i=0
while :; do
    i=$((i+1)); consumer_ls a$i dfsA
    case "$LS" in err*) break;; esac
    [ "$(now)" -lt "$end" ] || {{ say "@@FAIL (A) the consumer still reads 300 s after the pod network went: $LS"; exit 1; }}
    sleep 2
done
failed_after=$(( $(now) - replaced ))
say "@@A_FAILED after=$failed_after $LS"
# ... and keeps failing: nothing repairs a mount whose network is gone.
sleep 10
consumer_ls a_again dfsA
say "@@A_STILL $LS"
say "@@A_AGENT2 $(readyz_body 9101 $NET_B)"
say "@@A_NODE_AFTER $(mounts_at /mnt/dfsA)"
stop_agent $A2
delete_pod_net mvB

# (B) with the fix: the same replacement, the agents in the host's network namespace.
pod_net mvC 10.0.2.23
start_agent agent3 host /mnt/dfsB 9102
A3=$AGENT
wait_ready 9102 host 300
say "@@B_READY $(readyz_body 9102 host)"
say "@@B_NODE $(mounts_at /mnt/dfsB)"
consumer_ls b0 dfsB
stop_agent $A3
delete_pod_net mvC
replaced=$(now)
say "@@B_REPLACED"
pod_net mvD 10.0.2.24
start_agent agent4 host /mnt/dfsB 9103
A4=$AGENT
watch=$(( failed_after * 2 )); [ "$watch" -ge 60 ] || watch=60
i=0; bad=0
while [ $(( $(now) - replaced )) -lt "$watch" ]; do
    i=$((i+1)); consumer_ls b$i dfsB
    case "$LS" in ok*) ;; *) bad=$((bad+1));; esac
    sleep 2
done
say "@@B_WATCHED reads=$i failed=$bad seconds=$(( $(now) - replaced ))"
wait_ready 9103 host 120
say "@@B_AGENT4 $(readyz_body 9103 host)"
say "@@B_NODE_AFTER $(mounts_at /mnt/dfsB)"
stop_agent $A4
sleep 1
say "@@END"
"#
    )
}

fn lines_with(console: &[String], prefix: &str) -> Vec<String> {
    console
        .iter()
        .filter_map(|l| l.strip_prefix(prefix).map(str::to_owned))
        .collect()
}

#[test]
fn a_mount_made_from_a_pod_network_dies_with_it_and_one_made_from_the_hosts_survives() {
    if vm::skip("a_mount_made_from_a_pod_network_dies_with_it_and_one_made_from_the_hosts_survives")
    {
        return;
    }
    let began = Instant::now();
    let base = tempfile::Builder::new()
        .prefix("mountshare-vm-netns-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create the fixture directory");
    let root = base.path().join("export");
    tree::standard_tree(&root).expect("build the fixture tree");
    let port = free_port();
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let server = ServerProcess::start(BIN, &root, listen, &[]).expect("start mountshare serve");

    let mut guest = Vm::boot(VmConfig {
        name: "netns".into(),
        script: guest_script(port),
        memory_mb: 1024,
        extra_files: mountshare_files(base.path()),
        extra_modules: vec!["macvlan".into()],
        ..VmConfig::default()
    })
    .expect(
        "boot the VM (qemu-system-x86, linux-image-amd64 and busybox-static must be installed)",
    );

    guest
        .wait_for("@@A_READY", 5 * MINUTE)
        .expect("(A) the agent in a pod network mounts through its macvlan");
    guest
        .wait_for("@@A_REPLACED", 2 * MINUTE)
        .expect("(A) the pod is replaced");
    let replaced = Instant::now();
    guest
        .wait_for("@@A_FAILED", 6 * MINUTE)
        .expect("(A) the consumer's reads fail once the pod network is gone");
    let failed_after = replaced.elapsed();
    guest
        .wait_for("@@B_READY", 6 * MINUTE)
        .expect("(B) the agent in the host's network mounts");
    guest
        .wait_for("@@B_WATCHED", 12 * MINUTE)
        .expect("(B) the consumer is watched across the replacement");
    guest
        .wait_for("@@END", 3 * MINUTE)
        .expect("(B) the new agent adopts the mount");
    let status = guest.wait_exit(2 * MINUTE).unwrap();
    let console = guest.console();
    let one = |prefix: &str| -> String {
        lines_with(&console, prefix)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {prefix:?} line on the console"))
    };
    let log = |agent: &str| lines_with(&console, &format!("@@LOG {agent} "));
    let watched = one("@@B_WATCHED ");
    eprintln!(
        "netns: (A) agent in a pod network: the consumer's reads failed {:.0}s after the pod's \
         network was deleted ({}); (B) agent in the host's network: {watched}; VM test took {:.0}s",
        failed_after.as_secs_f64(),
        one("@@A_FAILED "),
        began.elapsed().as_secs_f64(),
    );
    assert_eq!(status, 0, "the guest script exits cleanly");

    // The pod networks had addresses of their own, in namespaces other than the guest's.
    for net in lines_with(&console, "@@NET ") {
        let words: Vec<&str> = net.split_whitespace().collect();
        assert!(words[1].starts_with("10.0.2.2"), "{net}");
        assert_ne!(
            words[3],
            words.last().unwrap().trim_end_matches(')'),
            "{net}"
        );
    }

    // (A) the mount was made from pod network A, and the consumer read it.
    assert!(
        one("@@A_READY ").starts_with("healthy"),
        "{}",
        one("@@A_READY ")
    );
    assert!(
        log("agent1")
            .iter()
            .any(|l| l.contains("--allow-pod-network: mounting anyway")),
        "agent1 was told it mounts from a pod network: {:#?}",
        log("agent1")
    );
    assert!(one("@@A_NODE ").contains("/nfs/"), "{}", one("@@A_NODE "));
    // ... then, with that network gone, the consumer gets errors, and keeps getting them.
    let failed = one("@@A_FAILED ");
    assert!(failed.contains(" err "), "{failed}");
    let still = one("@@A_STILL ");
    assert!(
        still.starts_with("err "),
        "(A) the dead mount stays dead: {still}"
    );
    assert_eq!(
        one("@@A_NODE "),
        one("@@A_NODE_AFTER "),
        "(A) the dead mount is still what the node has at the host path"
    );
    // agent2, in pod network B, says why it does not mount, once, and stays not ready.
    let agent2 = one("@@A_AGENT2 ");
    assert!(
        agent2.starts_with("wrong_network: ") && agent2.contains("hostNetwork: true"),
        "(A) agent2's /readyz: {agent2}"
    );
    let fix_lines: Vec<String> = log("agent2")
        .into_iter()
        .filter(|l| l.contains("hostNetwork: true"))
        .collect();
    assert_eq!(fix_lines.len(), 1, "{:#?}", log("agent2"));
    assert!(
        fix_lines[0].contains("ERROR") && fix_lines[0].contains("ClusterFirstWithHostNet"),
        "{}",
        fix_lines[0]
    );
    assert!(
        !log("agent2").iter().any(|l| l.contains("mountshare_agent")),
        "(A) agent2 never ran its reconcile loop, so it mounted nothing: {:#?}",
        log("agent2")
    );

    // (B) the agents in the host's network: the consumer never failed a read, the new agent
    // adopted the mount (the node's mount ids unchanged).
    assert!(
        one("@@B_READY ").starts_with("healthy"),
        "{}",
        one("@@B_READY ")
    );
    let reads: u32 = watched
        .split_whitespace()
        .find_map(|w| w.strip_prefix("reads="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(reads >= 10, "(B) the consumer read {reads} times");
    assert!(watched.contains(" failed=0 "), "(B) {watched}");
    for l in lines_with(&console, "@@LS ")
        .iter()
        .filter(|l| l.contains(" dfsB "))
    {
        assert!(
            l.contains(" ok "),
            "(B) every read of the host-network mount works: {l}"
        );
    }
    assert!(
        one("@@B_AGENT4 ").starts_with("healthy"),
        "{}",
        one("@@B_AGENT4 ")
    );
    assert!(
        log("agent4")
            .iter()
            .any(|l| l.contains("adopted the existing mount")),
        "(B) agent4 adopted agent3's mount: {:#?}",
        log("agent4")
    );
    assert_eq!(one("@@B_NODE "), one("@@B_NODE_AFTER "));
    for agent in ["agent3", "agent4"] {
        assert!(
            !log(agent).iter().any(|l| l.contains("hostNetwork")),
            "{agent} is in the host's network namespace: {:#?}",
            log(agent)
        );
    }
    drop(server);
}
