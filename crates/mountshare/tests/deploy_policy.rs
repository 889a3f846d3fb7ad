//! The Kubernetes manifests in deploy/ and the Dockerfile: every kustomization renders with
//! `kubectl kustomize`, validates against the Kubernetes schemas (`kubernetes-validate`), and
//! keeps the properties whose absence broke the user's cluster: a privileged, Bidirectional
//! agent; unprivileged HostToContainer consumers; probes on endpoints the binary really serves;
//! equal `port` and `mountport`; no shell loops.
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
    pod: &'a Value,
    c: &'a Value,
    init: bool,
}

impl Ctr<'_> {
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
            assert!(
                c.pod["priorityClassName"].is_string(),
                "{who}: priority class"
            );
            assert!(
                c.pod["terminationGracePeriodSeconds"].is_u64(),
                "{who}: grace period"
            );
            let tolerated: BTreeSet<&str> = c.pod["tolerations"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|t| t["key"].as_str())
                .collect();
            for taint in ["node.longhorn.io/storage", "node.kubernetes.io/gpu"] {
                assert!(tolerated.contains(taint), "{who}: must tolerate {taint}");
            }
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

#[test]
fn network_policy_and_pod_monitor_select_what_exists() {
    if skip_k8s() {
        return;
    }
    let (mut policies, mut monitors) = (0, 0);
    let labels_match = |sel: &Value, labels: &Value| {
        sel["matchLabels"]
            .as_mapping()
            .is_some_and(|m| m.iter().all(|(k, v)| labels[k.as_str().unwrap()] == *v))
    };
    let all: Vec<(PathBuf, Vec<Value>)> = all_rendered();
    let agent_labels: Vec<Value> = all
        .iter()
        .flat_map(|(_, d)| d.iter())
        .filter(|d| d["kind"] == "DaemonSet")
        .map(|d| d["spec"]["template"]["metadata"]["labels"].clone())
        .collect();
    for (dir, docs) in &all {
        for np in docs.iter().filter(|d| d["kind"] == "NetworkPolicy") {
            policies += 1;
            let who = format!("{}: {}", dir.display(), name(np));
            let server_pods: Vec<&Value> = docs
                .iter()
                .filter(|d| d["kind"] == "StatefulSet")
                .map(|d| &d["spec"]["template"]["metadata"]["labels"])
                .filter(|l| labels_match(&np["spec"]["podSelector"], l))
                .collect();
            if docs.iter().any(|d| d["kind"] == "StatefulSet") {
                assert!(
                    !server_pods.is_empty(),
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
            assert!(
                peers.iter().any(|p| agent_labels
                    .iter()
                    .any(|l| labels_match(&p["podSelector"], l))),
                "{who}: the attach agents must be admitted"
            );
        }
        for pm in docs.iter().filter(|d| d["kind"] == "PodMonitor") {
            monitors += 1;
            let who = format!("{}: {}", dir.display(), name(pm));
            let agent = containers(docs)
                .into_iter()
                .find(|c| c.runs_mountshare("attach"))
                .unwrap_or_else(|| panic!("{who}: no agent to scrape"));
            let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
            assert!(
                labels_match(
                    &pm["spec"]["selector"],
                    &ds["spec"]["template"]["metadata"]["labels"]
                ),
                "{who}: selects the agents"
            );
            let ep = &pm["spec"]["podMetricsEndpoints"][0];
            assert_eq!(ep["path"].as_str(), Some("/metrics"), "{who}");
            assert_eq!(
                agent.port_number(&ep["port"]),
                Some(port_of(&agent.flag("--listen-health").unwrap())),
                "{who}: scrapes the --listen-health port"
            );
        }
    }
    assert!(policies > 0 && monitors > 0);
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
