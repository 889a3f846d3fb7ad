//! Is the agent in the host's network namespace? The kernel NFS client keeps a mount's TCP
//! connection in the network namespace of the process that called `mount(2)`, so a mount made
//! from a pod's own network dies with that pod (CNI deletes its interface on every rollout).
//!
//! The check compares the namespace of `/proc/self/ns/net` with that of the host's PID 1, seen
//! through a `/proc` of the host's PID namespace (`--host-proc`):
//! - in a pod, a read-only hostPath of the node's `/proc` (at `/host/proc`), or `/proc` itself
//!   with `hostPID: true`;
//! - on a host (a systemd service), `/proc`.
//!
//! Namespaces are compared by the device and inode of their nsfs files (what `stat` sees
//! through the magic links), as `ip netns identify` does. Seeing PID 1 of the *host* is the part
//! that needs care: inside a container without `hostPID`, `/proc/1` is the container's own first
//! process, which shares the container's network namespace whatever it is. That case is told
//! apart by its PID namespace: the same as ours, and not the initial one (whose inode the kernel
//! fixes at `PROC_PID_INIT_INO`), so the answer is then "cannot tell", never "host".

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The inode number of the initial PID namespace (`PROC_PID_INIT_INO`, include/linux/proc_ns.h,
/// fixed since Linux 3.8).
pub const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// One namespace, as its nsfs file identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsId {
    pub dev: u64,
    pub ino: u64,
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The form `readlink /proc/PID/ns/net` prints.
        write!(f, "[{}]", self.ino)
    }
}

/// The namespaces the check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub self_net: NsId,
    pub self_pid: NsId,
    pub init_net: NsId,
    pub init_pid: NsId,
}

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The same network namespace as the host's PID 1.
    Host,
    /// Another network namespace than the host's PID 1: mounts made here die with it.
    Other { ours: NsId, host: NsId },
    /// The host's PID 1 cannot be seen, so the question cannot be answered.
    Unknown { reason: String },
}

/// Decide from the namespaces seen; `proc` names where PID 1 was looked at, for the reason.
pub fn judge(seen: &Observed, proc: &Path) -> Verdict {
    if seen.init_pid == seen.self_pid && seen.self_pid.ino != PROC_PID_INIT_INO {
        return Verdict::Unknown {
            reason: format!(
                "{}/1 is the first process of this container's own PID namespace, not the \
                 host's init",
                proc.display()
            ),
        };
    }
    if seen.init_net == seen.self_net {
        Verdict::Host
    } else {
        Verdict::Other {
            ours: seen.self_net,
            host: seen.init_net,
        }
    }
}

fn ns(path: PathBuf) -> Result<NsId, String> {
    std::fs::metadata(&path)
        .map(|m| NsId {
            dev: m.dev(),
            ino: m.ino(),
        })
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))
}

/// Read the namespaces of this process and of PID 1 under `host_proc`.
pub fn observe(host_proc: &Path) -> Result<Observed, String> {
    Ok(Observed {
        self_net: ns(PathBuf::from("/proc/self/ns/net"))?,
        self_pid: ns(PathBuf::from("/proc/self/ns/pid"))?,
        init_net: ns(host_proc.join("1/ns/net"))?,
        init_pid: ns(host_proc.join("1/ns/pid"))?,
    })
}

/// The check, on this process.
pub fn check(host_proc: &Path) -> Verdict {
    match observe(host_proc) {
        Ok(seen) => judge(&seen, host_proc),
        Err(reason) => Verdict::Unknown { reason },
    }
}

/// The one line an agent that must not mount logs (and serves on `/readyz`), naming the fix;
/// `None` when it may mount.
pub fn refusal(verdict: &Verdict, host_proc: &Path) -> Option<String> {
    match verdict {
        Verdict::Host => None,
        Verdict::Other { ours, host } => Some(format!(
            "attach runs in network namespace net:{ours}, not the host's (net:{host}, that of PID 1 \
             in {}): the kernel keeps an NFS mount's connection in the namespace of the process \
             that mounted it, so the mount would die with this pod's network on the next rollout; \
             run the DaemonSet with hostNetwork: true and dnsPolicy: ClusterFirstWithHostNet",
            host_proc.display()
        )),
        Verdict::Unknown { reason } => Some(format!(
            "cannot tell whether attach runs in the host's network namespace ({reason}), and a \
             mount made from a pod's network dies with the pod: mount the node's /proc read-only \
             (hostPath /proc at /host/proc) and pass --host-proc /host/proc, or set hostPID: true; \
             with hostNetwork: true and dnsPolicy: ClusterFirstWithHostNet"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_HOST: NsId = NsId {
        dev: 4,
        ino: 4026531840,
    };
    const NET_POD: NsId = NsId {
        dev: 4,
        ino: 4026532301,
    };
    const PID_INIT: NsId = NsId {
        dev: 4,
        ino: PROC_PID_INIT_INO,
    };
    const PID_POD: NsId = NsId {
        dev: 4,
        ino: 4026532299,
    };

    fn judge_of(self_net: NsId, self_pid: NsId, init_net: NsId, init_pid: NsId) -> Verdict {
        judge(
            &Observed {
                self_net,
                self_pid,
                init_net,
                init_pid,
            },
            Path::new("/host/proc"),
        )
    }

    #[test]
    fn a_pod_without_host_network_is_told_apart_through_the_hosts_proc() {
        // hostPath /proc at /host/proc, hostNetwork: false.
        let v = judge_of(NET_POD, PID_POD, NET_HOST, PID_INIT);
        assert_eq!(
            v,
            Verdict::Other {
                ours: NET_POD,
                host: NET_HOST
            }
        );
        let line = refusal(&v, Path::new("/host/proc")).unwrap();
        assert!(line.contains("net:[4026532301]") && line.contains("net:[4026531840]"));
        assert!(line.contains("hostNetwork: true") && line.contains("ClusterFirstWithHostNet"));
    }

    #[test]
    fn host_network_passes_with_the_hosts_proc_or_host_pid() {
        // hostNetwork: true with /host/proc; hostNetwork: true with hostPID: true; a host service.
        assert_eq!(
            judge_of(NET_HOST, PID_POD, NET_HOST, PID_INIT),
            Verdict::Host
        );
        assert_eq!(
            judge_of(NET_HOST, PID_INIT, NET_HOST, PID_INIT),
            Verdict::Host
        );
        assert_eq!(refusal(&Verdict::Host, Path::new("/proc")), None);
    }

    #[test]
    fn the_containers_own_pid_1_never_counts_as_the_host() {
        // No hostPID and --host-proc /proc: PID 1 is in our own namespaces, whatever they are.
        for net in [NET_HOST, NET_POD] {
            let v = judge_of(net, PID_POD, net, PID_POD);
            assert!(matches!(v, Verdict::Unknown { .. }), "{v:?}");
            let line = refusal(&v, Path::new("/proc")).unwrap();
            assert!(line.contains("--host-proc /host/proc") && line.contains("hostPID"));
        }
    }

    #[test]
    fn an_unreadable_host_proc_cannot_tell() {
        let v = check(Path::new("/nonexistent"));
        assert!(
            matches!(&v, Verdict::Unknown { reason } if reason.contains("/nonexistent/1/ns/net")),
            "{v:?}"
        );
        assert!(refusal(&v, Path::new("/nonexistent")).is_some());
    }
}
