//! `mountshare attach`: the node agent that keeps an export mounted at a host path.
use anyhow::{bail, Context};
use mountshare_agent::health::{self, HealthState};
use mountshare_agent::metrics::Metrics;
use mountshare_agent::netns;
use mountshare_agent::real::{RealLimits, RealMountOps};
use mountshare_agent::reconcile::{Config, Reconciler, Shared};
use mountshare_mounts::options::{normalize_export, NfsOptions, ServerAddr};
use std::net::SocketAddr;
use std::path::{Component, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// NFS server as HOST[:PORT] (default port 2049); HOST is resolved again before every mount.
    #[arg(long, value_name = "HOST[:PORT]")]
    server: ServerAddr,
    /// Directory to keep the export mounted at (in a pod: the hostPath with Bidirectional propagation).
    #[arg(long, value_name = "DIR")]
    target: PathBuf,
    /// Path exported by the server.
    #[arg(long, default_value = "/")]
    export: String,
    /// Extra mount options, comma-separated (e.g. "hard", "rw", "timeo=100", "acdirmax=5").
    /// Defaults: ro,nosuid,nodev,soft,timeo=50,retrans=2 and, so that new entries show within
    /// seconds, lookupcache=positive,acdirmin=1,acdirmax=2; an option given here replaces the
    /// default it contradicts (actimeo and noac replace both acdir ones).
    #[arg(long, value_name = "OPTS", default_value = "")]
    mount_options: String,
    /// MOUNT's port, for servers that serve it apart from NFS (nfs-ganesha, the kernel's nfsd;
    /// `mountshare doctor server` finds it). Default: the NFS port, as mountshare serves both.
    #[arg(long, value_name = "PORT")]
    mount_port: Option<u16>,
    /// Serve /livez, /readyz and /metrics on this address (e.g. 0.0.0.0:29750, as in deploy/).
    #[arg(long, value_name = "ADDR")]
    listen_health: Option<SocketAddr>,
    /// Lazily unmount on exit instead of leaving the mount for the next agent to adopt.
    #[arg(long)]
    unmount_on_exit: bool,
    /// Seconds between probes of the mount.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    probe_interval: u64,
    /// Seconds a probe may take before the mount counts as unresponsive.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    probe_timeout: u64,
    /// A /proc of the host's PID namespace, where PID 1 is the host's init: attach mounts only
    /// from the network namespace of that process (in a pod: a hostPath of the node's /proc,
    /// or /proc with hostPID: true).
    #[arg(long, default_value = "/proc", value_name = "DIR")]
    host_proc: PathBuf,
    /// Mount even outside the host's network namespace. The mount's connection then lives and
    /// dies with this process's network namespace (a pod's, on every rollout): for tests.
    #[arg(long)]
    allow_pod_network: bool,
}

/// The state `/readyz` and the metrics show for an agent that refuses to mount from where it is.
const WRONG_NETWORK: &str = "wrong_network";

/// Absolute and free of symlinks, as mountinfo shows it, without touching the target itself
/// (it may be a dead NFS mount): only its parent is canonicalized.
fn resolve_target(target: &std::path::Path) -> anyhow::Result<PathBuf> {
    if !target.is_absolute()
        || target
            .components()
            .any(|c| matches!(c, Component::ParentDir))
    {
        bail!(
            "--target {}: must be an absolute path without '..'",
            target.display()
        );
    }
    let name = target
        .file_name()
        .context("--target must name a directory, not /")?;
    let parent = target.parent().context("--target has no parent")?;
    let parent = parent
        .canonicalize()
        .with_context(|| format!("--target {}: parent directory", target.display()))?;
    Ok(parent.join(name))
}

pub fn run(args: AttachArgs) -> anyhow::Result<ExitCode> {
    crate::init_logging();
    if !is_root() {
        bail!("attach must run as root (CAP_SYS_ADMIN) to mount");
    }
    let export = normalize_export(&args.export)?;
    let mut options = NfsOptions::parse(&args.mount_options)?;
    options.mount_port = args.mount_port;
    let target = resolve_target(&args.target)?;
    if args.probe_interval == 0 || args.probe_timeout == 0 {
        bail!("--probe-interval and --probe-timeout must be at least 1 second");
    }
    let mut cfg = Config::new(args.server.clone(), export, target);
    cfg.options = options;
    cfg.unmount_on_exit = args.unmount_on_exit;
    cfg.probe_interval = Duration::from_secs(args.probe_interval);
    cfg.probe_timeout = Duration::from_secs(args.probe_timeout);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Before anything is logged: a SIGTERM from now on is a clean stop.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("installing the SIGINT handler")?;
        let listener = match args.listen_health {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--listen-health {addr}"))?,
            ),
            None => None,
        };
        let metrics = Metrics::new();
        let seed = u64::from(std::process::id())
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0) as u64);
        tracing::info!(
            server = %cfg.server, export = %cfg.export, target = %cfg.target.display(),
            "attach starting"
        );
        let verdict = netns::check(&args.host_proc);
        if let Some(line) = netns::refusal(&verdict, &args.host_proc) {
            if !args.allow_pod_network {
                // One line, then not ready until stopped: nothing is mounted from here.
                tracing::error!("{line}");
                let shared = std::sync::Arc::new(Shared::default());
                shared.hold(WRONG_NETWORK, &line);
                metrics.set_state(WRONG_NETWORK);
                metrics.set_last_error(&line);
                if let Some(listener) = listener {
                    tokio::spawn(health::serve(listener, HealthState { shared, metrics }));
                }
                wait_for_stop(&mut term, &mut int).await;
                return Ok(ExitCode::SUCCESS);
            }
            tracing::warn!("--allow-pod-network: mounting anyway; {line}");
        }
        let reconciler = Reconciler::new(
            RealMountOps::new(RealLimits::default()),
            cfg,
            metrics.clone(),
            seed,
        );
        let shared = reconciler.shared();
        let agent =
            mountshare_agent::agent::spawn(reconciler).context("starting the reconcile loop")?;
        if let Some(listener) = listener {
            tokio::spawn(health::serve(listener, HealthState { shared, metrics }));
        }
        wait_for_stop(&mut term, &mut int).await;
        // The loop's operations are deadline-bounded; don't wait on a stuck kernel call for long.
        let stopped = tokio::task::spawn_blocking(move || agent.stop(Duration::from_secs(15)))
            .await
            .unwrap_or(false);
        if !stopped {
            tracing::warn!("the reconcile loop did not stop in time; exiting anyway");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Until SIGTERM or SIGINT.
async fn wait_for_stop(
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn is_root() -> bool {
    // /proc/self/status avoids a libc dependency in the binary crate.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
