//! What the server is configured with, and the sizes every layer agrees on: the bounds on what
//! it holds at once ([`Limits`]), where it listens ([`ServerConfig`]), the default fsid and the
//! largest READ. Depends only on `allow` (the allow-list type).
use crate::allow::AllowList;
use std::net::SocketAddr;
use std::time::Duration;

/// The fsid used unless configured: the same on every server, so that a failover to another
/// server over the same tree presents the same file system to clients.
pub const DEFAULT_FSID: u64 = 0x6d73_6861_7265_0001;

/// The largest READ served and advertised (FSINFO rtmax/rtpref); zero-copy pipes hold this much.
pub(crate) const MAX_READ: u32 = 1 << 20;

/// Bounds on what the server holds at once.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once. At the limit, the least recently active connection is closed
    /// to admit a new one (its client, if alive, reconnects: the Linux client does so
    /// transparently), so idle connections never lock a new client out.
    pub max_connections: usize,
    /// Connections one client address may hold; past it, new ones from that address are closed
    /// at once. Keeps one address from taking every place and evicting everyone else.
    pub max_connections_per_address: usize,
    /// A connection with nothing read, nothing in flight and nothing to send for this long is
    /// closed (the Linux client reconnects transparently at its next call).
    pub idle_timeout: Duration,
    /// Calls of one connection being worked on at once; past it the connection is not read.
    pub per_connection_in_flight: usize,
    /// Calls being worked on at once across all connections.
    pub total_in_flight: usize,
    /// Largest RPC record accepted; a larger one closes the connection. Room for a 1 MiB WRITE.
    pub max_record: usize,
    /// How long shutdown waits for calls in flight before giving up on them.
    pub drain_timeout: Duration,
    /// Backend calls past their deadline that may still be running; past it, new calls that
    /// would reach the backend are answered JUKEBOX at once.
    pub max_stuck: usize,
    /// Bytes of records of one connection read but not yet answered; past it the connection is
    /// not read (TCP pushes back). Calls waiting for a lane wait here, not in the reader.
    pub per_connection_queued_bytes: usize,
    /// Bytes of replies of one connection waiting to be sent (its client is slow to read them);
    /// at it, the connection is not read and its calls wait before taking a global permit.
    pub per_connection_reply_bytes: usize,
    /// Bytes of replies queued past their connection's bound (replies of calls that were being
    /// worked on when it filled), across all connections; a connection whose reply would pass it
    /// is closed.
    pub reply_overflow_bytes: usize,
}

/// The default idle timeout: longer than the Linux client's own (it drops a connection idle for
/// 5 minutes, and reconnects at the next call), so a kernel client normally closes first; the
/// kernel nfsd closes connections idle for 6 to 12 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(6 * 60);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_address: 128,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            per_connection_in_flight: 64,
            total_in_flight: 256,
            max_record: (1 << 20) + (64 << 10),
            drain_timeout: Duration::from_secs(10),
            max_stuck: 128,
            per_connection_queued_bytes: 8 << 20,
            per_connection_reply_bytes: 8 << 20,
            reply_overflow_bytes: 64 << 20,
        }
    }
}

/// What the server is asked to do.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where NFS, MOUNT and PORTMAP are served (TCP).
    pub listen: SocketAddr,
    /// Also serve PORTMAP (and everything else) here, normally port 111, over TCP and UDP, so
    /// clients given no port options find the server.
    pub portmap_listen: Option<SocketAddr>,
    /// The NFS `fsid` of the export. Keep it the same on every server of one tree.
    pub fsid: u64,
    pub limits: Limits,
    /// How long an NFS call may wait on the backend before it is answered NFS3ERR_JUKEBOX (the
    /// backend call goes on, and the client's retry joins it).
    pub backend_timeout: Duration,
    /// Names the export root must hold; a listing of a root lacking one is answered JUKEBOX.
    pub expect: Vec<Vec<u8>>,
    /// `/livez`, `/readyz` and `/metrics`, and the probe of the export root behind `/readyz`.
    pub health: HealthConfig,
    /// The byte bounds of the caches.
    pub caches: CacheLimits,
    /// Who may connect and mount (default: everyone). A connection from elsewhere is closed at
    /// once; MNT from elsewhere is answered MNT3ERR_ACCES.
    pub allow: AllowList,
}

/// The default backend timeout. Shorter than any sane client timeout (`timeo`, 10 s in the
/// mount lines we print, 60 s by default), so the client hears JUKEBOX before it retransmits;
/// long enough that a cold debrid file's first bytes (commonly 1-3 s) arrive within it, so
/// healthy cold starts are not slowed (docs/CONFIGURATION.md has the trade-off).
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

impl ServerConfig {
    pub fn new(listen: SocketAddr) -> Self {
        ServerConfig {
            listen,
            portmap_listen: None,
            fsid: DEFAULT_FSID,
            limits: Limits::default(),
            backend_timeout: DEFAULT_BACKEND_TIMEOUT,
            expect: Vec::new(),
            health: HealthConfig::default(),
            caches: CacheLimits::default(),
            allow: AllowList::everyone(),
        }
    }
}

/// The health endpoints and what `/readyz` is decided from.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Where `/livez`, `/readyz` and `/metrics` are served (HTTP); `None`: not served.
    pub listen: Option<SocketAddr>,
    /// Time between stats of the export root.
    pub probe_interval: Duration,
    /// How long a stat of the export root may take before the server is not ready.
    pub probe_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            listen: None,
            probe_interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(5),
        }
    }
}

/// How many bytes each cache may hold (docs/CONFIGURATION.md has what each is for). A cache
/// counts its entries' heap bytes, plus a fixed overhead per entry for the maps that hold them.
#[derive(Debug, Clone)]
pub struct CacheLimits {
    /// Handles handed out, mapped to their paths, so that they resolve without a walk.
    pub handles: usize,
    /// Directory listings (snapshots) for READDIR, READDIRPLUS and handle walks.
    pub directories: usize,
    /// Free READ buffers kept for reuse (a READ in progress always gets one).
    pub read_buffers: usize,
    /// Zero-copy pipes, free or holding a reply (kernel memory: each pins up to 1 MiB of page
    /// cache); past it, READ copies instead.
    pub pipes: usize,
    /// How old a directory's listing may get before a call that asks for the directory's
    /// attributes or entries has it listed again, beside the call (`serve --refresh-interval`).
    pub refresh_interval: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            handles: 16 << 20,
            directories: 16 << 20,
            read_buffers: 16 << 20,
            pipes: 32 << 20,
            refresh_interval: crate::dircache::DEFAULT_REFRESH_INTERVAL,
        }
    }
}
