//! `mountshare serve`: run the NFSv3 server over a directory until SIGTERM.
use anyhow::{bail, Context};
use mountshare_fs::LocalFs;
use mountshare_server::{Server, ServerConfig};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
pub(crate) fn server_config(args: &ServeArgs) -> ServerConfig {
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
pub(crate) fn runtime(config: &ServerConfig) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.limits.total_in_flight + 16)
        .build()
        .context("cannot start the async runtime")
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::init_logging();
    if args.run || args.from_process.is_some() {
        return crate::supervise::run(args);
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
