//! The Kubernetes manifests in deploy/ and the Dockerfile: every kustomization renders with
//! `kubectl kustomize`, validates against the Kubernetes schemas (`kubernetes-validate`), and
//! keeps the properties whose absence broke the user's cluster: a privileged, Bidirectional
//! agent in the host's network namespace (hostNetwork, ClusterFirstWithHostNet, --host-proc),
//! tolerating every taint at system-node-critical; unprivileged HostToContainer consumers, of
//! any workload shape; the colocated server starting Decypharr's image with its own entrypoint
//! and the full argv; one Flux unit holding the server, the Service and the agents, that the
//! consumers depend on, with health checks and no cycle; a NetworkPolicy admitting the nodes'
//! flannel addresses as k3s delivers their traffic; monitoring apart, scraping the agents and
//! the server; the recommended labels; the image named once per overlay with the release's
//! version; a FROM-scratch, non-root image; probes (of the agent and of the server) on
//! endpoints the binary really serves; equal `port` and `mountport`; no shell loops.
//!
//! Missing tools fail the tests with the command that installs them, unless MOUNTSHARE_SKIP_K8S=1.

use serde_yaml::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");
const VALIDATE_INSTALL: &str = "python3 -m pip install kubernetes-validate==1.34.1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

fn skip_k8s() -> bool {
    std::env::var("MOUNTSHARE_SKIP_K8S").is_ok_and(|v| v == "1")
}

/// Every directory under deploy/ whose kustomization is a Kustomization (not a Component).
fn kustomizations() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let file = dir.join("kustomization.yaml");
        if let Ok(text) = std::fs::read_to_string(&file) {
            let v: Value = serde_yaml::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", file.display()));
            if v["kind"].as_str() != Some("Component") {
                out.push(dir.to_path_buf());
            }
        }
        let mut subdirs: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subdirs.sort();
        for d in subdirs {
            walk(&d, out);
        }
    }
    let mut out = Vec::new();
    walk(&deploy(), &mut out);
    out
}

fn render(dir: &Path) -> String {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run kubectl ({e}): install kubectl, or set MOUNTSHARE_SKIP_K8S=1")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    // kubectl kustomize separates documents with a `---` line.
    yaml.split("\n---\n")
        .map(|d| serde_yaml::from_str::<Value>(d).unwrap_or_else(|e| panic!("rendered YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// Everything the example overlays put in the cluster, rendered once.
fn all_rendered() -> Vec<(PathBuf, Vec<Value>)> {
    kustomizations()
        .into_iter()
        .map(|d| {
            let docs = documents(&render(&d));
            (d, docs)
        })
        .collect()
}

fn name(v: &Value) -> String {
    format!(
        "{}/{}",
        v["kind"].as_str().unwrap_or("?"),
        v["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A container of a workload, with its pod spec.
struct Ctr<'a> {
    owner: String,
    /// The object the pod spec belongs to.
    doc: &'a Value,
    pod: &'a Value,
    c: &'a Value,
    init: bool,
}

impl<'a> Ctr<'a> {
    fn name(&self) -> String {
        format!(
            "{} container {}",
            self.owner,
            self.c["name"].as_str().unwrap_or("?")
        )
    }
    /// command followed by args.
    fn argv(&self) -> Vec<String> {
        let mut v = strs(&self.c["command"]);
        v.extend(strs(&self.c["args"]));
        v
    }
    fn runs_mountshare(&self, sub: &str) -> bool {
        let argv = self.argv();
        let image_is_ours = self.c["image"]
            .as_str()
            .is_some_and(|i| i.contains("mountshare"));
        let binary = argv.first().is_some_and(|a| a.ends_with("/mountshare"));
        let at = if binary { 1 } else { 0 };
        (binary || (image_is_ours && self.c["command"].is_null()))
            && argv.get(at).map(String::as_str) == Some(sub)
    }
    fn flag(&self, flag: &str) -> Option<String> {
        let argv = self.argv();
        let i = argv.iter().position(|a| a == flag)?;
        argv.get(i + 1).cloned()
    }
    /// The metadata of the pod template (or of the pod).
    fn pod_metadata(&self) -> &'a Value {
        match self.doc["kind"].as_str() {
            Some("Pod") => &self.doc["metadata"],
            Some("CronJob") => &self.doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"],
            _ => &self.doc["spec"]["template"]["metadata"],
        }
    }
    fn privileged(&self) -> bool {
        self.c["securityContext"]["privileged"].as_bool() == Some(true)
    }
    fn volume(&self, name: &str) -> Option<&Value> {
        self.pod["volumes"]
            .as_sequence()?
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
    }
    fn mounts(&self) -> Vec<&Value> {
        self.c["volumeMounts"]
            .as_sequence()
            .map(|s| s.iter().collect())
            .unwrap_or_default()
    }
    /// A probe's port, by number or by the name of a containerPort.
    fn port_number(&self, port: &Value) -> Option<u64> {
        if let Some(n) = port.as_u64() {
            return Some(n);
        }
        let name = port.as_str()?;
        self.c["ports"]
            .as_sequence()?
            .iter()
            .find(|p| p["name"].as_str() == Some(name))?["containerPort"]
            .as_u64()
    }
}

fn pod_spec(doc: &Value) -> Option<&Value> {
    match doc["kind"].as_str()? {
        "Pod" => Some(&doc["spec"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            Some(&doc["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        _ => None,
    }
}

fn containers(docs: &[Value]) -> Vec<Ctr<'_>> {
    let mut out = Vec::new();
    for doc in docs {
        let Some(pod) = pod_spec(doc) else { continue };
        for (key, init) in [("initContainers", true), ("containers", false)] {
            for c in pod[key].as_sequence().into_iter().flatten() {
                out.push(Ctr {
                    owner: name(doc),
                    doc,
                    pod,
                    c,
                    init,
                });
            }
        }
    }
    out
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr}: no port"))
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_kustomization_renders_and_validates_against_the_kubernetes_schemas() {
    if skip_k8s() {
        eprintln!("MOUNTSHARE_SKIP_K8S=1: not rendering deploy/");
        return;
    }
    let dirs = kustomizations();
    assert!(dirs.len() >= 4, "deploy/ holds the base and the examples");
    let scratch = std::env::temp_dir().join(format!("mountshare-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    for dir in dirs {
        let rendered = render(&dir);
        assert!(
            !documents(&rendered).is_empty(),
            "{} renders nothing",
            dir.display()
        );
        let file = scratch.join("rendered.yaml");
        std::fs::write(&file, &rendered).unwrap();
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet"])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run kubernetes-validate ({e}): {VALIDATE_INSTALL}, or set MOUNTSHARE_SKIP_K8S=1")
            });
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !text.contains("ERROR"),
            "{} does not validate against the Kubernetes schemas:\n{text}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn the_agent_is_privileged_bidirectional_and_probed_on_its_health_port() {
    if skip_k8s() {
        return;
    }
    let mut agents = 0;
    for (dir, docs) in all_rendered() {
        for c in containers(&docs)
            .into_iter()
            .filter(|c| c.runs_mountshare("attach"))
        {
            agents += 1;
            let who = format!("{}: {}", dir.display(), c.name());
            assert!(c.privileged(), "{who}: attach must be privileged to mount");
            let target = c.flag("--target").expect("attach --target");
            let mount = c
                .mounts()
                .into_iter()
                .find(|m| m["mountPath"].as_str() == Some(target.as_str()))
                .unwrap_or_else(|| panic!("{who}: nothing mounted at --target {target}"));
            assert_eq!(
                mount["mountPropagation"].as_str(),
                Some("Bidirectional"),
                "{who}: the agent's mount must reach the host"
            );
            let vol = c.volume(mount["name"].as_str().unwrap()).unwrap();
            assert!(
                vol["hostPath"]["path"].is_string(),
                "{who}: the target is a hostPath"
            );
            let health = c
                .flag("--listen-health")
                .unwrap_or_else(|| panic!("{who}: probes need --listen-health"));
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
                let get = &c.c[probe]["httpGet"];
                assert_eq!(get["path"].as_str(), Some(path), "{who}: {probe} path");
                assert_eq!(
                    c.port_number(&get["port"]),
                    Some(port_of(&health)),
                    "{who}: {probe} must probe the --listen-health port"
                );
            }
            assert!(
                c.c["resources"]["requests"].is_mapping()
                    && c.c["resources"]["limits"].is_mapping(),
                "{who}: resources"
            );
            assert_eq!(
                c.pod["priorityClassName"].as_str(),
                Some("system-node-critical"),
                "{who}: evicted last, like the node's own components"
            );
            assert!(
                c.pod["terminationGracePeriodSeconds"].is_u64(),
                "{who}: grace period"
            );
            // Every node, whatever its taints: one toleration of everything.
            let tolerations = c.pod["tolerations"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            assert!(
                tolerations.iter().any(|t| t["operator"] == "Exists"
                    && t["key"].is_null()
                    && t["effect"].is_null()),
                "{who}: tolerations must include {{operator: Exists}} (any key, any effect): {tolerations:?}"
            );
            // The mount's connection lives in the network namespace of the process that mounts.
            assert_eq!(
                c.pod["hostNetwork"].as_bool(),
                Some(true),
                "{who}: a mount made from the pod's network dies with the pod"
            );
            assert_eq!(
                c.pod["dnsPolicy"].as_str(),
                Some("ClusterFirstWithHostNet"),
                "{who}: with hostNetwork only this keeps the Service name resolvable"
            );
            // The network namespace check sees the host's PID 1 through a hostPath of /proc.
            let host_proc = c
                .flag("--host-proc")
                .unwrap_or_else(|| panic!("{who}: --host-proc, or attach cannot tell"));
            let m = c
                .mounts()
                .into_iter()
                .find(|m| m["mountPath"].as_str() == Some(host_proc.as_str()))
                .unwrap_or_else(|| panic!("{who}: nothing mounted at --host-proc {host_proc}"));
            assert_eq!(m["readOnly"].as_bool(), Some(true), "{who}");
            let vol = c.volume(m["name"].as_str().unwrap()).unwrap();
            assert_eq!(vol["hostPath"]["path"].as_str(), Some("/proc"), "{who}");
            assert!(
                c.flag("--allow-pod-network").is_none()
                    && !c.argv().iter().any(|a| a == "--allow-pod-network"),
                "{who}: --allow-pod-network is for tests"
            );
            // The health port is on the node: clear of NodePorts and ephemeral ports, declared
            // (so the scheduler sees it), and the one the scrape annotation names.
            let port = port_of(&health);
            assert!(
                (1024..30000).contains(&port),
                "{who}: health port {port} must be below the NodePort range (30000-32767) and \
                 the ephemeral range (32768-60999), and unprivileged"
            );
            assert!(
                !(9100..=9999).contains(&port),
                "{who}: health port {port} is in the exporters' range (node-exporter: 9100)"
            );
            let declared: Vec<u64> = c.c["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| p["containerPort"].as_u64())
                .collect();
            assert!(declared.contains(&port), "{who}: containerPort {port}");
            let ann = &c.pod_metadata()["annotations"];
            assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"), "{who}");
            assert_eq!(
                ann["prometheus.io/port"].as_str(),
                Some(port.to_string().as_str()),
                "{who}: the scrape annotation names the health port"
            );
            assert_eq!(
                ann["prometheus.io/path"].as_str(),
                Some("/metrics"),
                "{who}"
            );
        }
    }
    assert!(agents > 0, "no overlay runs mountshare attach");
}

#[test]
fn consumers_are_host_to_container_and_not_privileged() {
    if skip_k8s() {
        return;
    }
    let mut seen = BTreeSet::new();
    for (dir, docs) in all_rendered() {
        for c in containers(&docs) {
            if c.runs_mountshare("attach") {
                continue;
            }
            for m in c.mounts() {
                let Some(vol) = c.volume(m["name"].as_str().unwrap_or("")) else {
                    continue;
                };
                if vol["hostPath"]["path"].as_str() != Some("/mnt/decypharr-dfs") {
                    continue;
                }
                let who = format!("{}: {}", dir.display(), c.name());
                assert_eq!(
                    m["mountPropagation"].as_str(),
                    Some("HostToContainer"),
                    "{who}: consumers must see the agent's later mounts, and never send any"
                );
                assert!(!c.privileged(), "{who}: a consumer needs no privilege");
                seen.insert(c.c["name"].as_str().unwrap_or("?").to_string());
            }
        }
    }
    for app in ["sonarr", "radarr", "plex"] {
        assert!(
            seen.contains(app),
            "the homelab example mounts the DFS into {app}"
        );
    }
}

#[test]
fn nfs_mount_options_give_equal_port_and_mountport_and_the_pinned_ip() {
    if skip_k8s() {
        return;
    }
    let mut pvs = 0;
    for (dir, docs) in all_rendered() {
        let cluster_ip = docs
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "decypharr-streaming-nfs")
            .and_then(|s| s["spec"]["clusterIP"].as_str().map(str::to_string));
        for pv in docs
            .iter()
            .filter(|d| d["kind"] == "PersistentVolume" && d["spec"]["nfs"].is_mapping())
        {
            pvs += 1;
            let who = format!("{}: {}", dir.display(), name(pv));
            let opts = strs(&pv["spec"]["mountOptions"]);
            let get = |k: &str| {
                opts.iter()
                    .find_map(|o| o.strip_prefix(&format!("{k}=")).map(str::to_string))
            };
            let port = get("port")
                .unwrap_or_else(|| panic!("{who}: no port= (a portmapper would be asked)"));
            assert_eq!(
                get("mountport").as_deref(),
                Some(port.as_str()),
                "{who}: MOUNT is on the NFS port"
            );
            assert_eq!(get("vers").as_deref(), Some("3"), "{who}: vers=3");
            assert_eq!(get("proto").as_deref(), Some("tcp"), "{who}: proto=tcp");
            assert_eq!(get("mountproto").as_deref(), Some("tcp"), "{who}");
            assert!(opts.iter().any(|o| o == "nolock"), "{who}: nolock (no NLM)");
            assert!(
                !opts.iter().any(|o| o == "hard"),
                "{who}: hard mounts hang pods in state D"
            );
            // Freshness, as attach mounts: new items visible within seconds, not a minute.
            assert_eq!(
                get("lookupcache").as_deref(),
                Some("positive"),
                "{who}: lookupcache=positive (a name not found is asked again, never cached)"
            );
            assert_eq!(get("acdirmin").as_deref(), Some("1"), "{who}: acdirmin=1");
            assert_eq!(get("acdirmax").as_deref(), Some("2"), "{who}: acdirmax=2");
            let server = pv["spec"]["nfs"]["server"].as_str().unwrap();
            assert!(
                server.parse::<std::net::IpAddr>().is_ok(),
                "{who}: the kubelet resolves with the node's DNS: give an IP, not {server}"
            );
            assert_eq!(
                Some(server.to_string()),
                cluster_ip,
                "{who}: the PV names the pinned ClusterIP of the Service"
            );
        }
    }
    assert!(pvs > 0, "no overlay renders the nfs-pv component");
}

#[test]
fn no_container_runs_a_shell_or_a_sleep_loop() {
    if skip_k8s() {
        return;
    }
    for (dir, docs) in all_rendered() {
        for c in containers(&docs) {
            let argv = c.argv();
            let who = format!("{}: {} {:?}", dir.display(), c.name(), argv);
            if let Some(first) = argv.first() {
                let base = first.rsplit('/').next().unwrap();
                assert!(
                    !["sh", "bash", "ash", "dash", "zsh", "busybox"].contains(&base),
                    "{who}: no shell scripts in containers"
                );
            }
            for a in &argv {
                for bad in ["while true", "while :", "sleep ", "until ", "sh -c"] {
                    assert!(!a.contains(bad), "{who}: no shell loop ({bad:?})");
                }
                assert_ne!(a, "sleep", "{who}: no sleep");
            }
        }
    }
}

#[test]
fn server_variants_are_wired_to_the_service() {
    if skip_k8s() {
        return;
    }
    let (mut colocated, mut sidecar) = (0, 0);
    for (dir, docs) in all_rendered() {
        let services: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                d["metadata"]["name"] == "decypharr-streaming-nfs" && d["kind"] == "Service"
            })
            .collect();
        for c in containers(&docs)
            .into_iter()
            .filter(|c| c.runs_mountshare("serve"))
        {
            let who = format!("{}: {}", dir.display(), c.name());
            let listen = c.flag("--listen").unwrap_or_else(|| "0.0.0.0:2049".into());
            let health = c
                .flag("--listen-health")
                .unwrap_or_else(|| panic!("{who}: probes and metrics need --listen-health"));
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/livez")] {
                let get = &c.c[probe]["httpGet"];
                assert_eq!(get["path"].as_str(), Some(path), "{who}: {probe} path");
                assert_eq!(
                    c.port_number(&get["port"]),
                    Some(port_of(&health)),
                    "{who}: {probe} must probe the --listen-health port"
                );
            }
            let annotations = &c.pod_metadata()["annotations"];
            assert_eq!(
                annotations["prometheus.io/port"]
                    .as_str()
                    .and_then(|p| p.parse().ok()),
                Some(port_of(&health)),
                "{who}: the scrape annotation names the --listen-health port"
            );
            for s in &services {
                for p in s["spec"]["ports"].as_sequence().unwrap() {
                    let port = p["port"].as_u64().unwrap();
                    if port == 2049 {
                        assert_eq!(p["targetPort"].as_u64(), Some(port_of(&listen)), "{who}");
                    }
                    if port == 111 {
                        assert!(
                            c.argv().iter().any(|a| a == "--portmap"),
                            "{who}: the Service exposes 111, so serve needs --portmap"
                        );
                    }
                }
            }
            let argv = c.argv();
            if argv.iter().any(|a| a == "--run") {
                colocated += 1;
                let dash = argv
                    .iter()
                    .position(|a| a == "--")
                    .expect("--run -- COMMAND");
                assert!(
                    dash + 1 < argv.len(),
                    "{who}: --run needs the command after --"
                );
                // The full argv is set, so nothing of the workload's own args is appended, and
                // what follows `--` is what Decypharr's image runs: its ENTRYPOINT
                // (/entrypoint.sh: /app set up, privileges dropped to PUID:PGID), then its CMD
                // with the config directory.
                assert!(
                    c.c["command"].is_sequence() && c.c["args"].is_sequence(),
                    "{who}: both command and args, or the container's own args are appended"
                );
                assert_eq!(
                    &argv[dash + 1..],
                    [
                        "/entrypoint.sh",
                        "/usr/bin/decypharr",
                        "--config",
                        "/config"
                    ],
                    "{who}: mountshare starts Decypharr's image as the image would"
                );
                assert_eq!(
                    argv.iter().filter(|a| *a == "--config").count(),
                    1,
                    "{who}: {argv:?}"
                );
                // The binary comes from the init container, through a shared volume.
                let bin_dir = Path::new(&argv[0])
                    .parent()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let mount = c
                    .mounts()
                    .into_iter()
                    .find(|m| m["mountPath"].as_str() == Some(&bin_dir))
                    .unwrap_or_else(|| panic!("{who}: nothing mounted at {bin_dir}"));
                let init = containers(&docs)
                    .into_iter()
                    .filter(|i| i.init && i.owner == c.owner)
                    .find(|i| {
                        i.mounts().iter().any(|m2| {
                            m2["name"] == mount["name"] && m2["readOnly"].as_bool() != Some(true)
                        })
                    })
                    .unwrap_or_else(|| panic!("{who}: no init container fills {bin_dir}"));
                // The image has no cp: the binary copies itself (`mountshare install DIR`).
                let init_argv = init.argv();
                assert_eq!(
                    init_argv,
                    [dockerfile_binary().as_str(), "install", bin_dir.as_str()],
                    "{who}: the init container installs the binary into {bin_dir}"
                );
                assert_eq!(
                    argv[0],
                    format!("{bin_dir}/mountshare"),
                    "{who}: runs what `install` wrote"
                );
            }
            if let Some(process) = c.flag("--from-process") {
                sidecar += 1;
                assert!(!process.is_empty());
                assert_eq!(
                    c.pod["shareProcessNamespace"].as_bool(),
                    Some(true),
                    "{who}: --from-process needs shareProcessNamespace"
                );
                assert!(!c.privileged(), "{who}: the sidecar needs no privilege");
                let caps = strs(&c.c["securityContext"]["capabilities"]["add"]);
                assert!(
                    caps.iter().any(|c| c == "SYS_PTRACE"),
                    "{who}: /proc/PID/root of Decypharr needs CAP_SYS_PTRACE"
                );
                assert_eq!(
                    c.c["securityContext"]["runAsUser"].as_u64(),
                    Some(0),
                    "{who}"
                );
            }
        }
    }
    assert!(
        colocated > 0 && sidecar > 0,
        "both server variants are rendered"
    );
}

/// Whether `ip` is inside `cidr` (IPv4).
fn in_cidr(ip: std::net::Ipv4Addr, cidr: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let net: std::net::Ipv4Addr = net.parse().unwrap();
    let len: u32 = len.parse().unwrap();
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Whether the peers of a NetworkPolicy rule admit traffic from `ip` (a source that is not a
/// pod of a selected namespace).
fn ip_admitted(peers: &[Value], ip: std::net::Ipv4Addr) -> bool {
    peers.iter().any(|p| {
        p["ipBlock"]["cidr"]
            .as_str()
            .is_some_and(|c| in_cidr(ip, c))
            && !p["ipBlock"]["except"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|e| in_cidr(ip, e.as_str().unwrap()))
    })
}

#[test]
fn the_network_policy_admits_node_traffic_as_it_arrives_on_k3s() {
    if skip_k8s() {
        return;
    }
    let mut policies = 0;
    for (dir, docs) in &all_rendered() {
        for np in docs.iter().filter(|d| d["kind"] == "NetworkPolicy") {
            policies += 1;
            let who = format!("{}: {}", dir.display(), name(np));
            let labels_match = |sel: &Value, labels: &Value| {
                sel["matchLabels"]
                    .as_mapping()
                    .is_some_and(|m| m.iter().all(|(k, v)| labels[k.as_str().unwrap()] == *v))
            };
            if docs.iter().any(|d| d["kind"] == "StatefulSet") {
                assert!(
                    docs.iter()
                        .filter(|d| d["kind"] == "StatefulSet")
                        .any(|d| labels_match(
                            &np["spec"]["podSelector"],
                            &d["spec"]["template"]["metadata"]["labels"]
                        )),
                    "{who}: selects no pod of this overlay"
                );
            }
            let rule = np["spec"]["ingress"]
                .as_sequence()
                .unwrap()
                .iter()
                .find(|r| {
                    r["ports"]
                        .as_sequence()
                        .is_some_and(|p| p.iter().any(|p| p["port"] == 2049))
                })
                .unwrap_or_else(|| panic!("{who}: no rule for 2049"));
            let peers = rule["from"].as_sequence().expect("2049 is not open to all");
            // k3s defaults: pod CIDR 10.42.0.0/16, node N has 10.42.N.0/24, flannel.1 holds
            // 10.42.N.0 and cni0 10.42.N.1. A node's host network (attach, kubelet mounts)
            // reaches the pod through the ClusterIP masqueraded to one of those two.
            for node in 0..3u8 {
                for host in [0u8, 1] {
                    let ip = std::net::Ipv4Addr::new(10, 42, node, host);
                    assert!(
                        ip_admitted(peers, ip),
                        "{who}: node {node}'s traffic arrives from {ip} (flannel.1/cni0)"
                    );
                }
                for pod in [2u8, 17, 254] {
                    let ip = std::net::Ipv4Addr::new(10, 42, node, pod);
                    assert!(
                        !ip_admitted(peers, ip),
                        "{who}: {ip} is a pod's address: pods come in by namespace, not by IP"
                    );
                }
            }
            for lan in ["192.168.1.10", "10.0.0.10"] {
                assert!(
                    !ip_admitted(peers, lan.parse().unwrap()),
                    "{who}: node LAN addresses never reach a pod behind the ClusterIP: {lan}"
                );
            }
            // Opt-in for NFS clients in pods.
            assert!(
                peers.iter().any(|p| {
                    p["namespaceSelector"]["matchLabels"]["mountshare.io/nfs-client"] == "true"
                }),
                "{who}: namespaces labelled mountshare.io/nfs-client=true"
            );
            // Port 111 when the Service exposes it.
            let service_has_111 = docs.iter().any(|d| {
                d["kind"] == "Service"
                    && d["spec"]["ports"]
                        .as_sequence()
                        .is_some_and(|p| p.iter().any(|p| p["port"] == 111))
            });
            let rule_has_111 = rule["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|p| p["port"] == 111);
            assert_eq!(service_has_111, rule_has_111, "{who}: 111 with --portmap");
        }
    }
    assert!(policies > 0);
}

/// A scrape target of the manifests: an attach agent or a server, with its pod's metadata, its
/// `--listen-health` port, and the number its container port named `health` stands for.
struct Target<'a> {
    who: String,
    meta: &'a Value,
    listen_health: u64,
    named_health: Option<u64>,
}

fn targets<'a>(all: &'a [(PathBuf, Vec<Value>)], sub: &str) -> Vec<Target<'a>> {
    all.iter()
        .flat_map(|(dir, docs)| {
            containers(docs)
                .into_iter()
                .filter(|c| !c.init && c.runs_mountshare(sub))
                .map(move |c| {
                    let who = format!("{}: {}", dir.display(), c.name());
                    let health = c
                        .flag("--listen-health")
                        .unwrap_or_else(|| panic!("{who}: serves no metrics (--listen-health)"));
                    Target {
                        meta: c.pod_metadata(),
                        listen_health: port_of(&health),
                        named_health: c.port_number(&Value::from("health")),
                        who,
                    }
                })
        })
        .collect()
}

#[test]
fn monitoring_is_optional_and_scrapes_the_agents_and_the_server() {
    if skip_k8s() {
        return;
    }
    let all = all_rendered();
    let agents = targets(&all, "attach");
    let servers = targets(&all, "serve");
    assert!(!agents.is_empty() && !servers.is_empty());
    let (mut monitors, mut of_agents, mut of_servers) = (0, 0, 0);
    for (dir, docs) in &all {
        for pm in docs.iter().filter(|d| d["kind"] == "PodMonitor") {
            monitors += 1;
            let who = format!("{}: {}", dir.display(), name(pm));
            // Apart from everything else: where the operator's CRDs are absent, a PodMonitor
            // in the mountshare unit would fail the whole unit.
            assert!(
                docs.iter().all(|d| d["kind"] == "PodMonitor"),
                "{who}: a PodMonitor goes in a kustomization of its own"
            );
            let sel = pm["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
            let selects = |t: &&Target| {
                sel.iter()
                    .all(|(k, v)| t.meta["labels"][k.as_str().unwrap()] == *v)
            };
            let agents_selected: Vec<&Target> = agents.iter().filter(selects).collect();
            let servers_selected: Vec<&Target> = servers.iter().filter(selects).collect();
            assert!(
                !agents_selected.is_empty() || !servers_selected.is_empty(),
                "{who}: selects no agent and no server"
            );
            of_agents += usize::from(!agents_selected.is_empty());
            of_servers += usize::from(!servers_selected.is_empty());
            let ep = &pm["spec"]["podMetricsEndpoints"][0];
            assert_eq!(ep["path"].as_str(), Some("/metrics"), "{who}");
            assert_eq!(ep["port"].as_str(), Some("health"), "{who}");
            for t in agents_selected.into_iter().chain(servers_selected) {
                assert!(t.listen_health > 0);
                assert_eq!(
                    t.named_health,
                    Some(t.listen_health),
                    "{who}: scrapes the port named health of {}, which must be its --listen-health port",
                    t.who
                );
            }
        }
    }
    assert!(
        monitors > 0,
        "the monitoring component is rendered somewhere"
    );
    assert!(
        of_agents > 0 && of_servers > 0,
        "the monitoring component scrapes the agents and the server"
    );
    // Without the operator: plain scrape annotations on every agent and server pod.
    for t in agents.iter().chain(&servers) {
        let ann = &t.meta["annotations"];
        assert_eq!(
            ann["prometheus.io/port"].as_str(),
            Some(t.listen_health.to_string().as_str()),
            "{}",
            t.who
        );
        assert_eq!(
            ann["prometheus.io/path"].as_str(),
            Some("/metrics"),
            "{}",
            t.who
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The endpoints the probes name are served by the real binary.

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn probe_paths_in_the_manifests_are_answered_by_mountshare_attach() {
    if skip_k8s() {
        return;
    }
    let mut paths = BTreeSet::new();
    for (_, docs) in all_rendered() {
        for c in containers(&docs)
            .into_iter()
            .filter(|c| c.runs_mountshare("attach"))
        {
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(p) = c.c[probe]["httpGet"]["path"].as_str() {
                    paths.insert(p.to_string());
                }
            }
        }
    }
    assert!(!paths.is_empty());
    // An agent with an unreachable server: alive, not ready, and it mounts nothing.
    let base = std::env::temp_dir().join(format!("mountshare-probe-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut agent = Command::new(BIN)
        .args(["attach", "--server", "127.0.0.1:1", "--target"])
        .arg(base.join("target"))
        .args(["--listen-health", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/livez").is_none() {
        if Instant::now() > deadline || agent.try_wait().unwrap().is_some() {
            let _ = agent.kill();
            let mut err = String::new();
            let _ = agent.stderr.take().unwrap().read_to_string(&mut err);
            panic!("mountshare attach never served its health port (needs root):\n{err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in &paths {
        let answer = http_get(port, path).unwrap_or_default();
        let status = answer.lines().next().unwrap_or("").to_string();
        assert!(
            status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.1 503"),
            "a probe of {path} gets {status:?} from mountshare attach"
        );
    }
    assert!(
        http_get(port, "/livez")
            .unwrap()
            .starts_with("HTTP/1.1 200"),
        "liveness does not depend on the server"
    );
    assert!(
        http_get(port, "/readyz")
            .unwrap()
            .starts_with("HTTP/1.1 503"),
        "not ready while the server is unreachable"
    );
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn probe_paths_in_the_manifests_are_answered_by_mountshare_serve() {
    if skip_k8s() {
        return;
    }
    let mut paths = BTreeSet::new();
    for (_, docs) in all_rendered() {
        for c in containers(&docs)
            .into_iter()
            .filter(|c| c.runs_mountshare("serve"))
        {
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(p) = c.c[probe]["httpGet"]["path"].as_str() {
                    paths.insert(p.to_string());
                }
            }
        }
    }
    assert!(!paths.is_empty());
    // A server of a directory that answers: alive, ready, and its metrics are served.
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (nfs, port) = (free(), free());
    let mut server = Command::new(BIN)
        .arg("serve")
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{nfs}")])
        .args(["--listen-health", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        if Instant::now() > deadline || server.try_wait().unwrap().is_some() {
            let _ = server.kill();
            let mut err = String::new();
            let _ = server.stderr.take().unwrap().read_to_string(&mut err);
            panic!("mountshare serve never became ready on its health port:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in &paths {
        let answer = http_get(port, path).unwrap_or_default();
        let status = answer.lines().next().unwrap_or("").to_string();
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "a probe of {path} gets {status:?} from a healthy mountshare serve"
        );
    }
    let metrics = http_get(port, "/metrics").unwrap_or_default();
    assert!(
        metrics.contains("mountshare_serve_ready 1"),
        "the scrape target serves the server's metrics:\n{metrics}"
    );
    let _ = server.kill();
    let _ = server.wait();
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile: FROM scratch, the prebuilt static binary per architecture, a non-root user.

/// The final stage of the Dockerfile, instruction by instruction (continuations joined).
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(cont) = l.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(l);
        let (word, rest) = logical.split_once(' ').unwrap_or((&logical, ""));
        let word = word.to_ascii_uppercase();
        if word == "FROM" {
            out.clear();
        }
        out.push((word, rest.trim().to_string()));
        logical.clear();
    }
    out
}

fn instruction(name: &str) -> Vec<String> {
    dockerfile()
        .into_iter()
        .filter(|(w, _)| w == name)
        .map(|(_, r)| r)
        .collect()
}

/// Where the image holds the binary: its ENTRYPOINT.
fn dockerfile_binary() -> String {
    let entry = instruction("ENTRYPOINT");
    let json: Vec<String> =
        serde_json::from_str(entry.last().expect("the final stage has an ENTRYPOINT")).unwrap();
    json[0].clone()
}

/// `version` of `[workspace.package]` in Cargo.toml: the release's version.
fn workspace_version() -> String {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let mut in_section = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if let Some(v) = line.strip_prefix("version = ").filter(|_| in_section) {
            return v.trim_matches('"').to_string();
        }
    }
    panic!("no version in [workspace.package] of Cargo.toml");
}

#[test]
fn the_image_is_the_static_binary_from_scratch_running_as_non_root() {
    let from = instruction("FROM");
    assert_eq!(
        from,
        ["scratch"],
        "the image holds nothing but the binary (no shell, no libc): FROM scratch"
    );
    assert!(
        instruction("ARG").iter().any(|a| a == "TARGETARCH"),
        "one Dockerfile for every platform of a buildx build"
    );
    let entry = dockerfile_binary();
    let copies = instruction("COPY");
    assert_eq!(copies.len(), 1, "{copies:?}");
    let words: Vec<&str> = copies[0].split_whitespace().collect();
    assert_eq!(
        words.last(),
        Some(&entry.as_str()),
        "COPY puts the binary at the ENTRYPOINT"
    );
    assert!(
        words.contains(&"--chmod=0755"),
        "artifacts lose their mode bits"
    );
    let src = words[words.len() - 2];
    assert_eq!(src, "dist/${TARGETARCH}/mountshare");
    // The context holds what scripts/build-static writes, and .dockerignore lets it through.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let build = std::fs::read_to_string(repo().join("scripts/build-static")).unwrap();
    assert!(build.contains("dist/$arch/mountshare"));
    for arch in ["amd64", "arm64"] {
        let path = src.replace("${TARGETARCH}", arch);
        assert!(
            ignore.lines().any(|l| l.trim() == format!("!{path}")),
            ".dockerignore must admit {path}"
        );
        assert!(
            build.contains(&format!("{arch})")),
            "build-static builds {arch}"
        );
    }
    let user = instruction("USER");
    let uid = user
        .last()
        .expect("USER")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "a numeric non-root USER (scratch has no /etc/passwd): {user:?}"
    );
    assert!(
        instruction("ENV")
            .iter()
            .any(|e| e == "PATH=/usr/local/bin"),
        "kubectl exec POD -- mountshare ... finds it"
    );
    assert!(
        !instruction("RUN").iter().any(|_| true),
        "nothing runs in a scratch image"
    );

    // The binary prints the workspace's version (the release's name).
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("mountshare {}", workspace_version())
    );
    // The manifests run that path or no path at all (the image's ENTRYPOINT).
    if skip_k8s() {
        return;
    }
    for (dir, docs) in all_rendered() {
        for c in containers(&docs) {
            if let Some(cmd) = c.argv().first() {
                if cmd.ends_with("/mountshare")
                    && c.c["image"]
                        .as_str()
                        .is_some_and(|i| i.contains("mountshare"))
                {
                    assert_eq!(cmd, &entry, "{}: {}", dir.display(), c.name());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One Flux unit, images once per overlay, labels, consumers of any shape.

/// The example Flux repository (deploy/examples/homelab is its root).
fn flux_repo() -> PathBuf {
    deploy().join("examples/homelab")
}

/// Every Flux Kustomization of the example: those its kustomizations render (applied) and any
/// other ks.yaml on disk (optional units), with whether it is applied.
fn flux_units() -> Vec<(Value, bool)> {
    let mut units: Vec<(Value, bool)> = Vec::new();
    for (dir, docs) in all_rendered() {
        if !dir.starts_with(flux_repo()) {
            continue;
        }
        for d in docs
            .into_iter()
            .filter(|d| d["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1")
        {
            if !units.iter().any(|(u, _)| name(u) == name(&d)) {
                units.push((d, true));
            }
        }
    }
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "ks.yaml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&flux_repo(), &mut files);
    for f in files {
        let d: Value = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        if !units.iter().any(|(u, _)| name(u) == name(&d)) {
            units.push((d, false));
        }
    }
    units
}

#[test]
fn one_flux_unit_holds_everything_mountshare_needs_and_nothing_waits_in_a_cycle() {
    if skip_k8s() {
        return;
    }
    let units = flux_units();
    assert!(
        units.len() >= 4,
        "the example has a unit per app: {}",
        units.len()
    );
    let namespaces: BTreeSet<String> = all_rendered()
        .into_iter()
        .flat_map(|(_, d)| d)
        .filter(|d| d["kind"] == "Namespace")
        .filter_map(|d| d["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let applied: BTreeSet<String> = units
        .iter()
        .filter(|(_, a)| *a)
        .map(|(u, _)| u["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let mut agent_unit = None;
    let mut consumer_units = Vec::new();
    let mut rendered_by_unit = Vec::new();
    for (u, is_applied) in &units {
        let who = name(u);
        let spec = &u["spec"];
        assert_eq!(u["metadata"]["namespace"], "flux-system", "{who}");
        assert_eq!(spec["sourceRef"]["kind"], "GitRepository", "{who}");
        assert_eq!(spec["prune"].as_bool(), Some(true), "{who}");
        assert!(spec["interval"].is_string(), "{who}");
        let path = spec["path"].as_str().unwrap();
        let dir = flux_repo().join(path.trim_start_matches("./"));
        assert!(
            dir.join("kustomization.yaml").is_file(),
            "{who}: path {path} is not a kustomization of the example repository"
        );
        let docs = documents(&render(&dir));
        if let Some(ns) = spec["targetNamespace"].as_str() {
            assert!(
                namespaces.contains(ns),
                "{who}: targetNamespace {ns} is created next to the units"
            );
            for d in &docs {
                let n = &d["metadata"]["namespace"];
                assert!(n.is_null() || n == ns, "{who}: {} in {n:?}", name(d));
            }
        }
        for hc in spec["healthChecks"].as_sequence().into_iter().flatten() {
            assert!(
                docs.iter().any(|d| d["kind"] == hc["kind"]
                    && d["metadata"]["name"] == hc["name"]
                    && d["apiVersion"] == hc["apiVersion"]),
                "{who}: health check {hc:?} names nothing the unit applies"
            );
        }
        let deps: Vec<String> = spec["dependsOn"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect();
        if *is_applied {
            for dep in &deps {
                assert!(
                    applied.contains(dep),
                    "{who}: dependsOn {dep}, which is not applied"
                );
            }
        }
        let ctrs = containers(&docs);
        if ctrs.iter().any(|c| c.runs_mountshare("attach")) {
            agent_unit = Some((who.clone(), deps.clone(), spec.clone()));
            // The server and its Service converge in the same unit as the agents that wait
            // for them.
            assert!(
                ctrs.iter().any(|c| c.runs_mountshare("serve")),
                "{who}: the agents' unit must hold the server too, or it waits forever"
            );
            assert!(
                docs.iter().any(|d| d["kind"] == "Service"
                    && d["metadata"]["name"] == "decypharr-streaming-nfs"),
                "{who}: and the Service"
            );
            let checked: BTreeSet<&str> = spec["healthChecks"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|h| h["kind"].as_str())
                .collect();
            assert!(
                spec["wait"].as_bool() == Some(true)
                    || (checked.contains("DaemonSet") && checked.contains("StatefulSet")),
                "{who}: healthy only once the server serves and every node has the mount"
            );
        }
        let consumes = ctrs.iter().any(|c| {
            !c.runs_mountshare("attach")
                && c.mounts().iter().any(|m| {
                    c.volume(m["name"].as_str().unwrap_or(""))
                        .is_some_and(|v| v["hostPath"]["path"] == "/mnt/decypharr-dfs")
                })
        });
        if consumes {
            consumer_units.push((who.clone(), deps.clone()));
        }
        rendered_by_unit.push((u["metadata"]["name"].as_str().unwrap().to_string(), deps));
    }
    let (agent_who, agent_deps, _) = agent_unit.expect("a unit runs the node agents");
    let agent_name = agent_who.trim_start_matches("Kustomization/");
    assert!(
        agent_deps.iter().all(|d| !applied.contains(d)),
        "{agent_who}: waits on nothing of the example ({agent_deps:?})"
    );
    assert!(consumer_units.len() >= 3, "{consumer_units:?}");
    for (who, deps) in &consumer_units {
        assert!(
            deps.iter().any(|d| d == agent_name),
            "{who}: consumers start once the library is mounted (dependsOn {agent_name})"
        );
    }
    // No cycle: every unit reaches the end of its dependencies.
    for (start, _) in &rendered_by_unit {
        let mut seen = BTreeSet::new();
        let mut todo = vec![start.clone()];
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            if let Some((_, deps)) = rendered_by_unit.iter().find(|(m, _)| *m == n) {
                for d in deps {
                    assert_ne!(d, start, "{start} depends on itself through {n}");
                    todo.push(d.clone());
                }
            }
        }
    }
}

#[test]
fn every_overlay_names_the_image_once_with_the_release_version() {
    if skip_k8s() {
        return;
    }
    let version = workspace_version();
    let release = "ghcr.io/OWNER/mountshare";
    // The components' own references: the release's name and version.
    for file in [
        "node-agent/attach-daemonset.yaml",
        "colocated-server/statefulset-patch.yaml",
        "sidecar-server/statefulset-patch.yaml",
    ] {
        let text = std::fs::read_to_string(deploy().join("components").join(file)).unwrap();
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("image:"))
        {
            assert_eq!(
                line.trim(),
                format!("image: {release}:{version}"),
                "components/{file}"
            );
        }
    }
    let mut overlays = 0;
    for (dir, docs) in all_rendered() {
        let images: Vec<String> = containers(&docs)
            .iter()
            .filter_map(|c| c.c["image"].as_str().map(str::to_string))
            .filter(|i| i.contains("mountshare"))
            .collect();
        if images.is_empty() {
            continue;
        }
        overlays += 1;
        let k: Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
                .unwrap();
        let entries: Vec<&Value> = k["images"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter(|e| e["name"] == release)
            .collect();
        assert_eq!(
            entries.len(),
            1,
            "{}: one `images:` entry for {release}",
            dir.display()
        );
        let tag = entries[0]["newTag"].as_str().unwrap_or("");
        assert_eq!(tag, version, "{}: the release's version", dir.display());
        let want = format!("{}:{tag}", entries[0]["newName"].as_str().unwrap());
        assert!(want.ends_with(&format!("/mountshare:{version}")));
        for i in &images {
            assert_eq!(i, &want, "{}: every mountshare container", dir.display());
        }
    }
    assert!(overlays >= 2);
}

#[test]
fn mountshare_objects_carry_the_recommended_labels() {
    if skip_k8s() {
        return;
    }
    let ours = |d: &Value| {
        matches!(
            (d["kind"].as_str(), d["metadata"]["name"].as_str()),
            (Some("Service"), Some("decypharr-streaming-nfs"))
                | (Some("NetworkPolicy"), Some("decypharr-streaming-nfs"))
                | (
                    Some("DaemonSet" | "ServiceAccount" | "PodMonitor"),
                    Some("mountshare-attach")
                )
                | (Some("PodMonitor"), Some("mountshare-server"))
                | (
                    Some("PersistentVolume" | "PersistentVolumeClaim"),
                    Some("decypharr-dfs")
                )
        )
    };
    let mut seen = BTreeSet::new();
    for (dir, docs) in all_rendered() {
        for d in docs.iter().filter(|d| ours(d)) {
            let who = format!("{}: {}", dir.display(), name(d));
            let mut label_sets = vec![&d["metadata"]["labels"]];
            if d["kind"] == "DaemonSet" {
                label_sets.push(&d["spec"]["template"]["metadata"]["labels"]);
            }
            for labels in label_sets {
                assert_eq!(labels["app.kubernetes.io/name"], "mountshare", "{who}");
                assert_eq!(labels["app.kubernetes.io/part-of"], "mountshare", "{who}");
                assert!(
                    labels["app.kubernetes.io/component"].is_string(),
                    "{who}: app.kubernetes.io/component"
                );
            }
            seen.insert(d["kind"].as_str().unwrap().to_string());
        }
    }
    assert!(seen.len() >= 6, "{seen:?}");
}

/// `to` relative to the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

#[test]
fn the_consumer_component_fits_any_workload_shape() {
    if skip_k8s() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("consumer-shapes-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let component = relative(
        &dir.path().canonicalize().unwrap(),
        &deploy()
            .join("components/consumer-hostpath")
            .canonicalize()
            .unwrap(),
    );
    let workload = |kind: &str, name: &str, pod: &str| {
        format!(
            "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  \
             selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: \
             {{labels: {{app: {name}}}}}\n    spec:\n{pod}"
        )
    };
    let shapes = [
        // No volumes, no volumeMounts.
        workload("Deployment", "bare", "      containers: [{name: app, image: i}]\n"),
        // volumes, but no volumeMounts on the first container; a sidecar with mounts.
        workload(
            "StatefulSet",
            "half",
            "      containers:\n        - {name: app, image: i}\n        - name: side\n          image: j\n          volumeMounts: [{name: config, mountPath: /config}]\n      volumes: [{name: config, emptyDir: {}}]\n",
        ),
        // Both lists, and an old mountshare-dfs volume (an NFS one) to be replaced.
        workload(
            "DaemonSet",
            "full",
            "      containers:\n        - name: app\n          image: i\n          volumeMounts: [{name: config, mountPath: /config}, {name: mountshare-dfs, mountPath: /old}]\n      volumes: [{name: config, emptyDir: {}}, {name: mountshare-dfs, nfs: {server: 10.0.0.1, path: /}}]\n",
        ),
    ];
    let mut resources = Vec::new();
    for (i, s) in shapes.iter().enumerate() {
        let f = format!("w{i}.yaml");
        std::fs::write(dir.path().join(&f), s).unwrap();
        resources.push(f);
    }
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "resources: [{}]\ncomponents: [{}]\n",
            resources.join(", "),
            component.display()
        ),
    )
    .unwrap();
    let docs = documents(&render(dir.path()));
    assert_eq!(
        docs.len(),
        3,
        "the local-config source is not an object of the cluster"
    );
    for d in &docs {
        let who = name(d);
        let pod = pod_spec(d).unwrap();
        let vols: Vec<&Value> = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|v| v["name"] == "mountshare-dfs")
            .collect();
        assert_eq!(vols.len(), 1, "{who}: {pod:?}");
        assert_eq!(vols[0]["hostPath"]["path"], "/mnt/decypharr-dfs", "{who}");
        assert_eq!(vols[0]["hostPath"]["type"], "Directory", "{who}");
        assert!(vols[0]["nfs"].is_null(), "{who}: replaced, not merged");
        let first = &pod["containers"][0];
        let mounts: Vec<&Value> = first["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == "mountshare-dfs")
            .collect();
        assert_eq!(mounts.len(), 1, "{who}");
        assert_eq!(mounts[0]["mountPath"], "/mnt/dfs", "{who}");
        assert_eq!(mounts[0]["mountPropagation"], "HostToContainer", "{who}");
        assert_eq!(mounts[0]["readOnly"].as_bool(), Some(true), "{who}");
        // What was there stays.
        if d["kind"] != "Deployment" {
            assert!(
                pod["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|v| v["name"] == "config"),
                "{who}"
            );
        }
        if d["kind"] == "StatefulSet" {
            assert_eq!(
                pod["containers"][1]["volumeMounts"]
                    .as_sequence()
                    .unwrap()
                    .len(),
                1,
                "{who}: only the first container is given the mount"
            );
        }
    }
}

#[test]
fn the_app_template_values_mount_what_the_component_mounts() {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy().join("examples/app-template/values.yaml")).unwrap(),
    )
    .unwrap();
    let component: Value = serde_yaml::from_str(
        &std::fs::read_to_string(deploy().join("components/consumer-hostpath/mount.yaml")).unwrap(),
    )
    .unwrap();
    let p = &values["persistence"]["mountshare-dfs"];
    let (vol, mount) = (
        &component["spec"]["volume"],
        &component["spec"]["volumeMount"],
    );
    assert_eq!(p["type"], "hostPath");
    assert_eq!(p["hostPath"], vol["hostPath"]["path"]);
    assert_eq!(p["hostPathType"], vol["hostPath"]["type"]);
    let g = &p["globalMounts"][0];
    assert_eq!(g["path"], mount["mountPath"]);
    assert_eq!(g["readOnly"], mount["readOnly"]);
    assert_eq!(g["mountPropagation"], "HostToContainer");
    assert_eq!(g["mountPropagation"], mount["mountPropagation"]);
}

/// The first ```yaml block after `heading` in docs/DEPLOY.md.
fn deploy_doc_yaml(heading: &str) -> String {
    let doc = std::fs::read_to_string(repo().join("docs/DEPLOY.md")).unwrap();
    let section = &doc[doc
        .find(heading)
        .unwrap_or_else(|| panic!("DEPLOY.md has no {heading:?}"))..];
    let block = &section[section.find("```yaml\n").expect("a yaml block") + 8..];
    block[..block.find("```").unwrap()].to_string()
}

#[test]
fn the_health_port_changes_with_the_patch_deploy_md_gives() {
    if skip_k8s() {
        return;
    }
    let unit =
        deploy().join("examples/homelab/clusters/homelab/apps/media/decypharr-streaming/app");
    let dir = tempfile::Builder::new()
        .prefix("health-port-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let rel = relative(
        &dir.path().canonicalize().unwrap(),
        &unit.canonicalize().unwrap(),
    );
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "resources: [{}]\n{}",
            rel.display(),
            deploy_doc_yaml("## The health port")
        ),
    )
    .unwrap();
    let docs = documents(&render(dir.path()));
    let agent = containers(&docs)
        .into_iter()
        .find(|c| c.runs_mountshare("attach"))
        .unwrap();
    let port = port_of(&agent.flag("--listen-health").unwrap());
    assert_ne!(port, 29750, "the patch changed --listen-health");
    assert_eq!(agent.port_number(&Value::from("health")), Some(port));
    assert_eq!(
        agent.pod_metadata()["annotations"]["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str())
    );
}

#[test]
fn the_pull_secret_patch_deploy_md_gives_reaches_every_pod_that_pulls_the_image() {
    if skip_k8s() {
        return;
    }
    let unit =
        deploy().join("examples/homelab/clusters/homelab/apps/media/decypharr-streaming/app");
    let dir = tempfile::Builder::new()
        .prefix("pull-secret-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let rel = relative(
        &dir.path().canonicalize().unwrap(),
        &unit.canonicalize().unwrap(),
    );
    let patch = deploy_doc_yaml("**A package on GHCR starts private.**");
    let patch: String = patch
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!("resources: [{}]\n{patch}", rel.display()),
    )
    .unwrap();
    let docs = documents(&render(dir.path()));
    let mut pulling = 0;
    for c in containers(&docs).into_iter().filter(|c| {
        c.c["image"]
            .as_str()
            .is_some_and(|i| i.contains("mountshare"))
    }) {
        pulling += 1;
        let secrets = if c.pod["imagePullSecrets"].is_sequence() {
            &c.pod["imagePullSecrets"]
        } else {
            let sa = c.pod["serviceAccountName"].as_str().unwrap_or("default");
            &docs
                .iter()
                .find(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == sa)
                .unwrap_or_else(|| {
                    panic!("{}: no pull secret and no ServiceAccount {sa}", c.name())
                })["imagePullSecrets"]
        };
        assert!(
            secrets
                .as_sequence()
                .is_some_and(|s| s.iter().any(|x| x["name"] == "ghcr-pull")),
            "{}: pulls the image without the secret",
            c.name()
        );
    }
    assert!(pulling >= 2);
}
