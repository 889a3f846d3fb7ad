//! `mountshare serve`: run the NFSv3 server over a directory until SIGTERM.
//!
//! [`tree`] turns the command line into the backend to serve, and what keeps it current; the
//! rest (the server, health, signals, the child) is the same whatever the backend.
//!
//! The mount at DIR is followed in every mode that serves a DIR (`mountshare_fs::follow`, on
//! what `mountshare_mounts::process` finds at DIR): when it is replaced (a FUSE daemon that
//! restarted and mounted again), the new one is served from the next check on,
//! and when it goes away, what it covered is never served in its place. With `--run -- COMMAND`
//! or `--from-process NAME|PID`, DIR is a FUSE tree that another process mounts, served from the
//! moment it is mounted; the child of `--run` and the signals are looked after by
//! [`crate::supervise`].

use crate::supervise::{exit_code, Child, Event, Signals};
use anyhow::{bail, Context};
use mountshare_fs::follow::{Accept, Change, Follower};
use mountshare_fs::{Backend, LocalFsOptions};
use mountshare_mounts::process::{LocateError, Selector, Source};
use mountshare_server::{CacheLimits, Server, ServerConfig};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Component, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Directory to export, read-only, or the URL of a WebDAV collection to serve
    /// (`http://HOST:PORT/PATH/`; https is not supported yet). Clients mount it as HOST:/.
    pub dir: PathBuf,

    /// With a WebDAV URL: the user for HTTP basic authentication. The password comes from
    /// --webdav-password-file or the MOUNTSHARE_WEBDAV_PASSWORD environment variable, never
    /// from the command line.
    #[arg(long, value_name = "USER")]
    pub webdav_user: Option<String>,

    /// With a WebDAV URL: a file holding the password of --webdav-user (a final newline is
    /// not part of it). Takes precedence over MOUNTSHARE_WEBDAV_PASSWORD.
    #[arg(long, value_name = "FILE")]
    pub webdav_password_file: Option<PathBuf>,

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

    /// Calls worked on at once per connection, in each of two lanes: READs, and everything
    /// else (a READ stuck in the backend never holds up a GETATTR or a listing).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_in_flight_per_connection: usize,

    /// Calls worked on at once in total, in each lane (each may hold a blocking thread).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_in_flight: usize,

    /// How long an NFS call may wait on the exported file system before the client is told to
    /// retry (NFS3ERR_JUKEBOX: the Linux client waits 5 s and asks again, and the application
    /// sees no error). The call goes on, and the retry gets its result. E.g. 5s, 2500ms.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub backend_timeout: Duration,

    /// Calls past the backend timeout that may still be running in the exported file system
    /// (one blocking thread each, and in FUSE one background request); past it, new calls are
    /// told to retry at once. Keep it at most half of --fuse-max-background.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_stuck_calls: usize,

    /// When DIR is a FUSE mount, raise its kernel connection's max_background to N (and
    /// congestion_threshold to 3/4 of N), never lowering them, at start and whenever the mount is
    /// replaced. The kernel's default, 12, lets 12 hung reads stall every read of the mount.
    /// 0 leaves the connection alone.
    #[arg(long, value_name = "N", default_value_t = mountshare_mounts::fuse::DEFAULT_MAX_BACKGROUND)]
    pub fuse_max_background: u32,

    /// A name the export root must hold (repeatable). A listing of a root that lacks one is
    /// answered NFS3ERR_JUKEBOX (clients wait), never as an empty or partial library. For
    /// Decypharr: --expect __all__.
    #[arg(long, value_name = "NAME")]
    pub expect: Vec<String>,

    /// Only clients at these addresses may connect and mount: an address (`192.168.1.7`) or a
    /// block (`10.42.0.0/16`, `fd00::/8`); repeatable. Default: everyone. A connection from
    /// elsewhere is closed at once, and MNT answers MNT3ERR_ACCES. On k3s: the pod CIDR
    /// (10.42.0.0/16, which holds the nodes' flannel addresses too) and the nodes' addresses.
    #[arg(long = "allow", value_name = "CIDR", value_parser = parse_cidr)]
    pub allow: Vec<mountshare_server::Cidr>,

    /// Close a connection with nothing going on (no call, no reply on its way) for this long.
    /// The Linux client reconnects transparently at its next call. E.g. 6m, 90s.
    #[arg(long, value_name = "DURATION", default_value = "6m", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// Connections served at once. At the limit, the least recently active one is closed to
    /// admit a new one, so idle connections never lock a client out.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,

    /// Connections one client address may hold. At it, a new connection from that address is
    /// admitted and that address's least recently active connection is closed, so idle
    /// connections never lock a client out, its own address's included. A Linux client uses
    /// one connection per server (nconnect=N: N).
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_connections_per_address: usize,

    /// Bytes of replies one connection may have waiting for its client to read them; at it,
    /// the connection is not read until the client catches up. E.g. 8MiB.
    #[arg(long, value_name = "SIZE", default_value = "8MiB", value_parser = parse_reply_queue)]
    pub max_queued_replies: usize,

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

    /// Seconds between checks that the mount at DIR (and, with --run or --from-process, the
    /// process) is still the one served; a new one is served from the next check on.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    pub check_interval: u64,

    /// Serve only a file system mounted at DIR, never DIR's own directory: until one is mounted
    /// there, calls are answered NFS3ERR_JUKEBOX (clients wait and retry). Without it, DIR's own
    /// directory is served while nothing has been mounted there since the start; once a mount
    /// was served, what it covered is never served in its place either way.
    #[arg(long, conflicts_with_all = ["run", "from_process"])]
    pub require_mount: bool,

    /// Serve /livez, /readyz and /metrics over HTTP on this address (e.g. 0.0.0.0:9103; the
    /// agent's is 29750 in deploy/). /readyz answers 200 while the NFS listener is up and the
    /// export root answered a stat within --ready-timeout. Off by default.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen_health: Option<SocketAddr>,

    /// How long a stat of the export root (probed every 2 s) may take before /readyz answers
    /// 503.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub ready_timeout: Duration,

    /// Memory for handles handed out (so they resolve without a walk of the tree).
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_bytes)]
    pub handle_cache: usize,

    /// Memory for directory listings (READDIR, READDIRPLUS and handle walks); a listing larger
    /// than this is read again for each call instead of kept.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_bytes)]
    pub dir_cache: usize,

    /// How old a directory's listing may get before a client asking for the directory's
    /// attributes or entries has it listed again, beside the call (answered from the listing
    /// in hand unless the new one is ready within 100 ms). A directory's mtime and ctime are
    /// made of its listing's names, so clients see a change exactly when there is one. With
    /// nothing changing, the backend sees at most one listing per directory per interval.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_refresh_interval)]
    pub refresh_interval: Duration,

    /// Memory for free READ buffers kept for reuse.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_bytes)]
    pub read_buffer_pool: usize,

    /// Zero-copy pipes, free or holding a reply, by capacity (1 MiB each; kernel memory that
    /// pins page cache); past it, READ copies instead.
    #[arg(long, value_name = "SIZE", default_value = "32MiB", value_parser = parse_bytes)]
    pub pipe_pool: usize,

    /// Files kept open for READ.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub open_files: usize,

    /// Memory for the open-file cache (its paths, plus a fixed cost per file).
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_bytes)]
    pub open_file_cache: usize,

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
    config.limits.max_stuck = args.max_stuck_calls;
    config.backend_timeout = args.backend_timeout;
    config.expect = args.expect.iter().map(|n| n.as_bytes().to_vec()).collect();
    config.allow = mountshare_server::AllowList::only(args.allow.clone());
    config.limits.idle_timeout = args.idle_timeout;
    config.limits.max_connections = args.max_connections.max(1);
    config.limits.max_connections_per_address = args.max_connections_per_address.max(1);
    config.limits.per_connection_reply_bytes = args.max_queued_replies;
    if args.portmap {
        config.portmap_listen = Some(SocketAddr::new(args.listen.ip(), 111));
    }
    config.health.listen = args.listen_health;
    config.health.probe_timeout = args.ready_timeout;
    config.caches = CacheLimits {
        handles: args.handle_cache,
        directories: args.dir_cache,
        read_buffers: args.read_buffer_pool,
        pipes: args.pipe_pool,
        refresh_interval: args.refresh_interval,
    };
    config
}

/// How the exported tree is opened: the open-file cache's bounds.
fn fs_options(args: &ServeArgs) -> LocalFsOptions {
    LocalFsOptions {
        open_files: args.open_files.max(1),
        open_file_bytes: args.open_file_cache,
        ..LocalFsOptions::default()
    }
}

fn parse_bytes(text: &str) -> Result<usize, String> {
    let n = mountshare_units::parse_size(text)?;
    usize::try_from(n).map_err(|_| format!("{text}: too large"))
}

fn parse_cidr(text: &str) -> Result<mountshare_server::Cidr, String> {
    text.parse()
        .map_err(|e: mountshare_server::CidrError| e.to_string())
}

/// At least a 64 KiB reply, at most 1 GiB.
fn parse_reply_queue(text: &str) -> Result<usize, String> {
    let n = mountshare_units::parse_size(text)?;
    if !(64 << 10..=1 << 30).contains(&n) {
        return Err("must be from 64KiB to 1GiB".into());
    }
    Ok(n as usize)
}

/// Raise the soft limit on open descriptors to the hard one: every connection holds one, and
/// `--max-connections` (1024) is the default soft limit by itself.
fn raise_descriptor_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the limit on open files; connections past it wait in the listen backlog");
        }
    }
}

/// From 100 ms to an hour.
fn parse_refresh_interval(text: &str) -> Result<Duration, String> {
    let d = mountshare_units::parse_duration(text)?;
    if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
        return Err("must be from 100ms to 1h".into());
    }
    Ok(d)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = mountshare_units::parse_duration(text)?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// The async runtime, with a blocking thread for every call that may be in flight.
fn runtime(config: &ServerConfig) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Both lanes at full, every stuck call, and some to spare.
        .max_blocking_threads(2 * config.limits.total_in_flight + config.limits.max_stuck + 64)
        .build()
        .context("cannot start the async runtime")
}

/// The tree to serve, as the command line names it: the backend the server calls, and what
/// keeps it current.
struct Tree {
    backend: Arc<dyn Backend>,
    /// What the log calls it: DIR as followed, or what a fixed backend reads.
    name: String,
    /// The mount at DIR, followed into `backend`; `None` for a backend that is the tree for the
    /// server's whole life.
    followed: Option<Followed>,
}

/// Turn the command line into the tree to serve. Each kind of source is one arm here; one that
/// needs no following (such as a URL) is `Tree { backend, name, followed: None }`.
fn tree(args: &ServeArgs) -> anyhow::Result<Tree> {
    if let Some(url) = args.dir.to_str().filter(|d| mountshare_webdav::is_url(d)) {
        return webdav_tree(args, url);
    }
    if args.webdav_user.is_some() || args.webdav_password_file.is_some() {
        bail!("--webdav-user and --webdav-password-file need a WebDAV URL (http://HOST:PORT/PATH/) in place of DIR");
    }
    let followed = if args.run || args.from_process.is_some() {
        Followed::fuse_mount(args)?
    } else {
        Followed::directory(args)?
    };
    Ok(Tree {
        backend: followed.follower.backend(),
        name: followed.dir.display().to_string(),
        followed: Some(followed),
    })
}

/// A WebDAV collection (`mountshare_webdav`): a fixed backend, nothing to follow.
fn webdav_tree(args: &ServeArgs, url: &str) -> anyhow::Result<Tree> {
    if args.run || args.from_process.is_some() || args.require_mount {
        bail!("--run, --from-process and --require-mount serve a FUSE mount at a directory; they do not apply to a WebDAV URL");
    }
    let password = match &args.webdav_password_file {
        Some(file) => Some(read_password_file(file)?),
        None => std::env::var("MOUNTSHARE_WEBDAV_PASSWORD").ok(),
    };
    let credentials = match (&args.webdav_user, password) {
        (Some(user), Some(password)) => Some((user.clone(), password)),
        (Some(_), None) => bail!("--webdav-user needs a password: --webdav-password-file FILE or MOUNTSHARE_WEBDAV_PASSWORD"),
        (None, Some(_)) if args.webdav_password_file.is_some() => {
            bail!("--webdav-password-file needs --webdav-user")
        }
        (None, _) => None,
    };
    let options = mountshare_webdav::WebDavOptions {
        credentials,
        ..Default::default()
    };
    let backend = mountshare_webdav::WebDav::new(url, options)
        .map_err(|e| anyhow::anyhow!("cannot serve {url}: {e}"))?;
    Ok(Tree {
        name: backend.display_url(),
        backend: Arc::new(backend),
        followed: None,
    })
}

/// The password in `file`, without a final newline; at most 64 KiB are read.
fn read_password_file(file: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
        .with_context(|| format!("--webdav-password-file {}", file.display()))?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string())
}

/// The mount at DIR, followed: looked at every --check-interval, and what is found there
/// served from then on (`mountshare_fs::follow`).
struct Followed {
    follower: Follower,
    dir: PathBuf,
    source: Source,
    /// Only a FUSE mount that another process makes at DIR is served (`--run`,
    /// `--from-process`): the server does not listen until one is there.
    fuse_only: bool,
    /// `--fuse-max-background`, for each FUSE mount found.
    fuse_max_background: u32,
}

impl Followed {
    /// Plain `serve DIR`: whatever is mounted on top at DIR in our namespace, or DIR's own
    /// directory while nothing has been (unless --require-mount).
    fn directory(args: &ServeArgs) -> anyhow::Result<Followed> {
        let dir = export_dir(args, &Source::Own)?;
        let meta = std::fs::metadata(&dir)
            .with_context(|| format!("cannot export {}", args.dir.display()))?;
        if !meta.is_dir() {
            bail!("cannot export {}: not a directory", args.dir.display());
        }
        let accept = Accept::Any {
            require_mount: args.require_mount,
        };
        Ok(Followed::new(args, Source::Own, dir, accept))
    }

    /// `--run` (our child's mount, in our namespace) or `--from-process` (another process's,
    /// through /proc/PID/root): only a FUSE mount at DIR.
    fn fuse_mount(args: &ServeArgs) -> anyhow::Result<Followed> {
        let source = match &args.from_process {
            Some(text) => match Selector::parse(text) {
                Some(selector) => Source::Process(selector),
                None => bail!("--from-process needs a process name or PID"),
            },
            None => Source::Own,
        };
        let dir = export_dir(args, &source)?;
        Ok(Followed::new(args, source, dir, Accept::Fuse))
    }

    fn new(args: &ServeArgs, source: Source, dir: PathBuf, accept: Accept) -> Followed {
        Followed {
            follower: Follower::with(source.clone(), dir.clone(), accept).options(fs_options(args)),
            dir,
            source,
            fuse_only: accept == Accept::Fuse,
            fuse_max_background: args.fuse_max_background,
        }
    }

    /// Look at DIR once, and raise the limits of a FUSE mount just found.
    fn check(&mut self) -> Result<Change, LocateError> {
        let change = self.follower.check()?;
        tune_fuse(&change, self.fuse_max_background);
        Ok(change)
    }

    /// What to serve first: what DIR holds now, or for a FUSE mount, the first one found
    /// (waiting for it, so that nothing is served before it). `Err`: stop with this exit code
    /// (stopped, or the child exited, while waiting).
    async fn first(
        &mut self,
        signals: &mut Signals,
        child: Option<&Child>,
        interval: Duration,
    ) -> anyhow::Result<Result<Option<String>, ExitCode>> {
        let mut first = served(self.check()?)?;
        if self.fuse_only {
            // A FUSE daemon of ours (or of a sidecar's neighbour) is on its way: wait for it
            // before listening, so that nothing is served before it.
            tracing::info!(dir = %self.dir.display(), source = ?self.source, "waiting for a FUSE mount");
            while first.is_none() {
                match signals.next(child, interval).await {
                    Event::ChildExited(st) => {
                        tracing::warn!(status = ?st, "child exited before mounting anything");
                        return Ok(Err(ExitCode::from(exit_code(st))));
                    }
                    Event::Stop => return Ok(Err(ExitCode::SUCCESS)),
                    Event::Tick => {}
                }
                first = served(self.check()?)?;
            }
        } else if first.is_none() {
            tracing::warn!(dir = %self.dir.display(), "nothing is mounted at DIR: calls are answered JUKEBOX (clients wait) until something is");
        }
        Ok(Ok(first))
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::init_logging();
    let mut tree = tree(&args)?;
    if args.check_interval == 0 {
        bail!("--check-interval must be at least 1 second");
    }
    let interval = Duration::from_secs(args.check_interval);
    let config = server_config(&args);
    raise_descriptor_limit();
    let runtime = runtime(&config)?;
    runtime.block_on(async move {
        let mut signals = Signals::new()?;
        let child = if args.run {
            Some(Child::spawn(&args.command)?)
        } else {
            None
        };
        // The health port answers from the start (alive, not ready), also while waiting for a
        // FUSE mount, so a liveness probe never restarts a container whose mount is on its way.
        let early_health = match args.listen_health {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--listen-health {addr}"))?,
            ),
            None => None,
        };
        let waiting = match &early_health {
            Some(listener) => Some(tokio::spawn(mountshare_health::serve(
                tokio::net::TcpListener::from_std(listener_twin(listener)?)?,
                Arc::new(Waiting),
            ))),
            None => None,
        };
        let first = match tree.followed.as_mut() {
            Some(followed) => match followed.first(&mut signals, child.as_ref(), interval).await? {
                Ok(first) => first,
                Err(code) => return Ok(code),
            },
            None => Some(tree.name.clone()),
        };
        let mut config = config;
        config.health.listen = None;
        let mut server = Server::bind(config, tree.backend.clone()).await?;
        if let Some(task) = waiting {
            task.abort();
            let _ = task.await;
        }
        if let Some(listener) = early_health {
            server = server.with_health_listener(listener);
        }
        tracing::info!(dir = %tree.name, serving = first.as_deref().unwrap_or("nothing yet"), addr = %server.local_addr(), "export ready");
        if let Some(health) = server.health_addr() {
            tracing::info!(addr = %health, "serving /livez, /readyz and /metrics");
        }
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
            let Some(followed) = tree.followed.as_mut() else {
                continue;
            };
            match followed.check() {
                Ok(change) => report(change),
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

/// What the health endpoints say before the server is up: alive, not ready, no metrics yet.
struct Waiting;

impl mountshare_health::Health for Waiting {
    fn readiness(&self) -> (bool, String) {
        (false, "waiting for the file system to serve".into())
    }

    fn metrics(&self) -> String {
        "# EOF\n".into()
    }
}

/// A second handle on `listener`'s socket, for a task that serves it for a while.
fn listener_twin(listener: &tokio::net::TcpListener) -> anyhow::Result<std::net::TcpListener> {
    use std::os::fd::AsFd;
    let fd = listener.as_fd().try_clone_to_owned()?;
    let twin = std::net::TcpListener::from(fd);
    twin.set_nonblocking(true)?;
    Ok(twin)
}

/// Raise the FUSE connection limits of a mount just found (`mountshare_mounts::fuse`), and
/// say what was done, once per mount.
fn tune_fuse(change: &Change, max_background: u32) {
    let Change::Opened(found) = change else {
        return;
    };
    let outcome = mountshare_mounts::fuse::tune_path(&found.open_path, max_background);
    if outcome.is_warning() {
        tracing::warn!(mount = %found, "could not raise the FUSE connection's limits: {outcome}; 12 hung reads can then stall every read of this mount");
    } else {
        tracing::info!(mount = %found, "{outcome}");
    }
}

/// What the first check found to serve; a mount found that cannot be opened is an error.
fn served(change: Change) -> anyhow::Result<Option<String>> {
    Ok(match change {
        Change::Opened(found) => Some(found.to_string()),
        Change::Directory => Some("the directory itself".to_string()),
        Change::OpenFailed(e) => return Err(e.into()),
        Change::Unchanged | Change::Gone(_) => None,
    })
}

/// Log what a check of the mount at DIR changed.
fn report(change: Change) {
    match change {
        Change::Unchanged => {}
        Change::Opened(found) => {
            tracing::info!(mount = %found, "the mount at DIR changed; serving the new one")
        }
        Change::Directory => tracing::info!(
            "nothing is mounted at DIR: serving the directory itself until something is"
        ),
        Change::OpenFailed(e) => tracing::warn!("{:#}", anyhow::Error::from(e)),
        Change::Gone(old) => {
            tracing::warn!(mount = %old, "the mount served is gone from DIR: calls are answered JUKEBOX (clients wait) until one is back; what it covered is not served")
        }
    }
}

/// DIR as mountinfo shows it. In our own namespace that is the canonical path (symlinks
/// resolved); another process's DIR can only be taken as given.
fn export_dir(args: &ServeArgs, source: &Source) -> anyhow::Result<PathBuf> {
    let dir = match source {
        Source::Own => match std::fs::canonicalize(&args.dir) {
            Ok(dir) => dir,
            // --run: the child may create it; plain serve reports the missing directory itself.
            Err(_) => std::env::current_dir()
                .context("cannot read the current directory")?
                .join(&args.dir),
        },
        Source::Process(_) => args.dir.clone(),
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
