//! Mount lines that work for one server, from what `doctor server` found: the kernel `mount`
//! command, the `mount(2)` source, flags and data string, a `mountshare attach` command and a
//! Kubernetes PersistentVolume.

use mountshare_mounts::options::{MountSpec, NfsOptions};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// What the lines are made from.
#[derive(Debug, Clone)]
pub struct LineInputs<'a> {
    /// The host as the user gave it.
    pub host: &'a str,
    /// The address it resolved to.
    pub ip: IpAddr,
    pub nfs_port: u16,
    pub mount_port: u16,
    pub export: &'a str,
    /// Where the share should be mounted.
    pub target: &'a str,
}

/// The `mount(2)` call `attach` makes.
#[derive(Debug, Clone, Serialize)]
pub struct Mount2 {
    pub source: String,
    pub fstype: &'static str,
    pub flags: Vec<&'static str>,
    pub data: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MountLines {
    /// The NFS options, comma-separated, as `mount -o` takes them.
    pub options: String,
    /// `mount -t nfs -o ... HOST:EXPORT TARGET`.
    pub kernel: String,
    pub mount2: Mount2,
    pub attach: String,
    pub persistent_volume: String,
}

fn host_for_source(ip: IpAddr, host: &str) -> String {
    if host.contains(':') || matches!(ip, IpAddr::V6(_)) && host.parse::<IpAddr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The lines, with the ports given explicitly so that neither a portmapper nor mount.nfs is needed.
pub fn mount_lines(i: &LineInputs<'_>) -> MountLines {
    let defaults = NfsOptions::default();
    let mut spec = MountSpec::new(SocketAddr::new(i.ip, i.nfs_port), i.export, &defaults);
    // attach puts MOUNT on the NFS port (one port on a mountshare server); this server may differ.
    for o in &mut spec.options {
        if o.starts_with("mountport=") {
            *o = format!("mountport={}", i.mount_port);
        }
    }
    let mut flags = Vec::new();
    if spec.flags.read_only {
        flags.push("MS_RDONLY");
    }
    if spec.flags.nosuid {
        flags.push("MS_NOSUID");
    }
    if spec.flags.nodev {
        flags.push("MS_NODEV");
    }
    if spec.flags.noexec {
        flags.push("MS_NOEXEC");
    }
    // The kernel command: the same options, minus the addresses mount.nfs fills in itself.
    let mut opts: Vec<String> = vec!["ro".into(), "nosuid".into(), "nodev".into()];
    opts.extend(
        spec.options
            .iter()
            .filter(|o| {
                !o.starts_with("addr=") && !o.starts_with("mountaddr=") && *o != "nosharecache"
            })
            .cloned(),
    );
    let options = opts.join(",");
    let kernel = format!(
        "mount -t nfs -o {options} {}:{} {}",
        host_for_source(i.ip, i.host),
        i.export,
        i.target
    );
    let server_arg = if i.host.contains(':') {
        format!("[{}]:{}", i.host, i.nfs_port)
    } else {
        format!("{}:{}", i.host, i.nfs_port)
    };
    // MOUNT on its own port (nfs-ganesha, kernel nfsd): attach must be told.
    let mount_port_arg = if i.mount_port != i.nfs_port {
        format!(" --mount-port {}", i.mount_port)
    } else {
        String::new()
    };
    let attach = format!(
        "mountshare attach --server {server_arg} --export {} --target {}{mount_port_arg}",
        i.export, i.target
    );
    let named = i.host.parse::<IpAddr>().is_err();
    let mut pv = String::new();
    pv.push_str("apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: dfs\nspec:\n  capacity:\n    storage: 1Ti\n  accessModes: [ReadOnlyMany]\n  persistentVolumeReclaimPolicy: Retain\n  mountOptions:\n");
    for o in opts
        .iter()
        .filter(|o| !matches!(o.as_str(), "ro" | "nosuid" | "nodev"))
    {
        pv.push_str(&format!("    - {o}\n"));
    }
    pv.push_str("  nfs:\n");
    if named {
        pv.push_str(&format!(
            "    server: {}   # {} as resolved here: the kubelet resolves with the node's resolver, not cluster DNS\n",
            i.ip, i.host
        ));
    } else {
        pv.push_str(&format!("    server: {}\n", i.ip));
    }
    pv.push_str(&format!("    path: {}\n    readOnly: true\n", i.export));
    MountLines {
        options,
        kernel,
        mount2: Mount2 {
            source: spec.source.clone(),
            fstype: "nfs",
            flags,
            data: spec.data_string(),
        },
        attach,
        persistent_volume: pv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separate_mount_port_is_carried_everywhere() {
        let l = mount_lines(&LineInputs {
            host: "127.0.0.1",
            ip: "127.0.0.1".parse().unwrap(),
            nfs_port: 2049,
            mount_port: 20048,
            export: "/srv/x",
            target: "/mnt/dfs",
        });
        assert!(
            l.kernel.contains("port=2049,mountport=20048"),
            "{}",
            l.kernel
        );
        assert!(l.kernel.ends_with(" 127.0.0.1:/srv/x /mnt/dfs"));
        assert!(l.mount2.data.contains("mountport=20048"));
        assert!(l.mount2.data.contains("addr=127.0.0.1"));
        assert_eq!(l.mount2.source, "127.0.0.1:/srv/x");
        assert!(l.persistent_volume.contains("    - mountport=20048\n"));
        assert!(l.attach.ends_with(" --mount-port 20048"), "{}", l.attach);
    }

    #[test]
    fn one_port_server_and_named_host() {
        let l = mount_lines(&LineInputs {
            host: "nfs.example",
            ip: "10.0.0.7".parse().unwrap(),
            nfs_port: 2049,
            mount_port: 2049,
            export: "/",
            target: "/mnt/dfs",
        });
        assert!(l.kernel.contains("port=2049,mountport=2049"));
        assert!(l.kernel.contains(" nfs.example:/ "));
        assert_eq!(l.mount2.source, "10.0.0.7:/");
        assert!(l
            .persistent_volume
            .contains("server: 10.0.0.7   # nfs.example"));
        assert_eq!(
            l.attach,
            "mountshare attach --server nfs.example:2049 --export / --target /mnt/dfs"
        );
    }

    #[test]
    fn every_line_carries_attachs_freshness_options() {
        let l = mount_lines(&LineInputs {
            host: "10.0.0.7",
            ip: "10.0.0.7".parse().unwrap(),
            nfs_port: 2049,
            mount_port: 2049,
            export: "/",
            target: "/mnt/dfs",
        });
        let fresh = "lookupcache=positive,acdirmin=1,acdirmax=2";
        assert!(
            l.options.ends_with(&format!("retrans=2,{fresh}")),
            "{}",
            l.options
        );
        assert!(l.kernel.contains(fresh), "{}", l.kernel);
        assert!(l.mount2.data.ends_with(fresh), "{}", l.mount2.data);
        assert!(
            l.persistent_volume.contains(
                "    - lookupcache=positive\n    - acdirmin=1\n    - acdirmax=2\n  nfs:\n"
            ),
            "{}",
            l.persistent_volume
        );
    }
}
