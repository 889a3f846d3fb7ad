//! `mountshare serve`: run the NFSv3 server over a directory until SIGTERM.
//!
//! With `--run -- COMMAND` or `--from-process NAME|PID`, DIR is a FUSE tree that another process
//! mounts: it is served from the moment it is mounted and followed when that process remounts
//! or restarts (`mountshare_fs::follow`); the child of `--run` and the signals are looked after
//! by [`crate::supervise`].

use crate::supervise::{exit_code, Child, Event, Signals};
use anyhow::{bail, Context};
use mountshare_fs::follow::{Change, Follower, Selector, Source};
use mountshare_fs::LocalFs;
use mountshare_server::{Server, ServerConfig};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Component, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Directory to export, read-only. Clients mount it as HOST:/.
    pub dir: PathBuf,

    /// Address and port for NFS, MOUNT and PORTMAP (all three on this one TCP port).
    #[arg(long, default_value = "0.0.0.0:2049", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,

    /// Also answer PORTMAP on port 111 (TCP and UDP) of the listen address, so clients given
    /// no port options (plain `mount -t nfs -o vers=3`, kubelet `nfs:` volumes) find the server.
    #[arg(long)]
    pub portmap: bool,

    /// The NFS fsid presented to clients. Every server of one tree must use the same value so
    /// that clients carry on across a failover.
    #[arg(long, value_name = "N", default_value_t = mountshare_server::DEFAULT_FSID)]
    pub fsid: u64,

    /// Calls worked on at once per connection.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_in_flight_per_connection: usize,

    /// Calls worked on at once in total (each may hold a blocking thread).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_in_flight: usize,

    /// Start COMMAND (given after `--`) as a child, wait until it has a FUSE file system mounted
    /// at DIR, serve it, pass SIGTERM, SIGINT and SIGHUP on to the child, and exit with the
    /// child's status when it exits.
    #[arg(long, requires = "command", conflicts_with = "from_process")]
    pub run: bool,

    /// Serve DIR as the process NAME (or PID) sees it, through /proc/PID/root, for a sidecar in
    /// a pod with a shared process namespace. Waits for such a process with a FUSE file system
    /// at DIR, and follows it when it restarts or remounts.
    #[arg(long, value_name = "NAME|PID")]
    pub from_process: Option<String>,

    /// Seconds between checks that the FUSE mount (and the process) is still the one served.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    pub check_interval: u64,

    /// The command `--run` starts, with its arguments.
    #[arg(last = true, value_name = "COMMAND", requires = "run")]
    pub command: Vec<OsString>,
}

/// The server configuration the flags describe.
fn server_config(args: &ServeArgs) -> ServerConfig {
    let mut config = ServerConfig::new(args.listen);
    config.fsid = args.fsid;
    config.limits.per_connection_in_flight = args.max_in_flight_per_connection.max(1);
    config.limits.total_in_flight = args.max_in_flight.max(1);
    if args.portmap {
        config.portmap_listen = Some(SocketAddr::new(args.listen.ip(), 111));
    }
    config
}

/// The async runtime, with a blocking thread for every call that may be in flight.
fn runtime(config: &ServerConfig) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.limits.total_in_flight + 16)
        .build()
        .context("cannot start the async runtime")
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::init_logging();
    if args.run || args.from_process.is_some() {
        return run_following(args);
    }
    let meta = std::fs::metadata(&args.dir)
        .with_context(|| format!("cannot export {}", args.dir.display()))?;
    if !meta.is_dir() {
        bail!("cannot export {}: not a directory", args.dir.display());
    }
    let backend =
        LocalFs::open(&args.dir).with_context(|| format!("cannot open {}", args.dir.display()))?;
    let config = server_config(&args);
    let runtime = runtime(&config)?;
    runtime.block_on(async move {
        let server = Server::bind(config, Arc::new(backend)).await?;
        tracing::info!(dir = %args.dir.display(), addr = %server.local_addr(), "export ready");
        server.run(crate::shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// DIR as mountinfo shows it: absolute, without `.` or `..`.
fn export_dir(args: &ServeArgs, source: &Source) -> anyhow::Result<PathBuf> {
    let dir = if args.dir.is_absolute() || *source != Source::Own {
        args.dir.clone()
    } else {
        std::env::current_dir()
            .context("cannot read the current directory")?
            .join(&args.dir)
    };
    if !dir.is_absolute()
        || dir
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        bail!(
            "{}: with --from-process, DIR must be an absolute path without '.' or '..'",
            args.dir.display()
        );
    }
    Ok(dir)
}

/// `serve --run` and `serve --from-process`: wait for the FUSE mount at DIR, serve it, and check
/// every `--check-interval` that it is still the one served.
fn run_following(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let source = match &args.from_process {
        Some(text) => match Selector::parse(text) {
            Some(selector) => Source::Process(selector),
            None => bail!("--from-process needs a process name or PID"),
        },
        None => Source::Own,
    };
    let dir = export_dir(&args, &source)?;
    if args.check_interval == 0 {
        bail!("--check-interval must be at least 1 second");
    }
    let interval = Duration::from_secs(args.check_interval);
    let config = server_config(&args);
    let runtime = runtime(&config)?;
    runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let child = if args.run {
            Some(Child::spawn(&args.command)?)
        } else {
            None
        };
        tracing::info!(dir = %dir.display(), source = ?source, "waiting for a FUSE mount");
        let mut follower = Follower::new(source, dir.clone());
        let first = loop {
            match follower.check()? {
                Change::Opened(found) => break found,
                Change::OpenFailed(e) => return Err(e.into()),
                Change::Unchanged | Change::Gone(_) => {}
            }
            match signals.next(child.as_ref(), interval).await {
                Event::ChildExited(st) => {
                    tracing::warn!(status = ?st, "child exited before mounting anything");
                    return Ok(ExitCode::from(exit_code(st)));
                }
                Event::Stop => return Ok(ExitCode::SUCCESS),
                Event::Tick => {}
            }
        };
        let server = Server::bind(config, follower.backend()).await?;
        tracing::info!(dir = %dir.display(), mount = %first, addr = %server.local_addr(), "export ready");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        let code = loop {
            match signals.next(child.as_ref(), interval).await {
                Event::ChildExited(st) => {
                    tracing::info!(status = ?st, "child exited; stopping");
                    break ExitCode::from(exit_code(st));
                }
                Event::Stop => break ExitCode::SUCCESS,
                Event::Tick => {}
            }
            match follower.check() {
                Ok(Change::Unchanged) => {}
                Ok(Change::Opened(found)) => {
                    tracing::info!(new = %found, "FUSE mount changed; serving the new one")
                }
                Ok(Change::OpenFailed(e)) => tracing::warn!("{:#}", anyhow::Error::from(e)),
                Ok(Change::Gone(old)) => {
                    tracing::warn!(mount = %old, "FUSE mount is gone; calls fail until it is back")
                }
                Err(e) => {
                    tracing::error!("{:#}", anyhow::Error::from(e));
                    break ExitCode::FAILURE;
                }
            }
        };
        let _ = stop_tx.send(());
        let _ = serving.await;
        Ok(code)
    })
}
