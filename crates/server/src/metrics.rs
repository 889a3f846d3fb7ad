//! The server's metrics: every metric name `serve` exposes is defined here, with the counters
//! the call path bumps (plain atomics in fixed arrays, no lock and no allocation per call) and
//! their Prometheus exposition (prometheus-client's text encoder, through a [`Collector`] that
//! reads the atomics and a [`Sample`] of the rest at scrape time). docs/METRICS.md lists them.
//!
//! A call is counted once, when its reply is ready to go out, by the status read back from the
//! encoded reply: the same function counts a reply the handler built, a JUKEBOX sent at the
//! deadline, and a result shared with a call that joined another (`dispatch` calls it).
use crate::conns::ConnectionStats;
use crate::stall::StallStats;
use mountshare_proto::mount3::{mountproc3, MOUNT_PROGRAM};
use mountshare_proto::nfs3::{proc3, NFS_PROGRAM, NFS_V3};
use mountshare_proto::portmap::{PMAP_PROGRAM, PMAP_V2};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- Every metric name of `serve` (counters get `_total` appended in the exposition). ----

/// Calls answered, by `program`, `procedure` and `status` (counter).
pub const CALLS: &str = "mountshare_serve_calls";
/// Time from a call's arrival to its reply being ready, by `program` and `procedure`.
pub const CALL_DURATION: &str = "mountshare_serve_call_duration_seconds";
/// File bytes sent in successful READ replies (counter).
pub const READ_BYTES: &str = "mountshare_serve_read_bytes";
/// Calls being worked on (decoding, in the backend, encoding), stuck ones included (gauge).
pub const CALLS_IN_FLIGHT: &str = "mountshare_serve_calls_in_flight";
/// Backend calls past the backend timeout and still running (gauge).
pub const BACKEND_STUCK: &str = "mountshare_serve_backend_stuck_calls";
/// Calls answered JUKEBOX at their deadline, their backend call going on (counter).
pub const BACKEND_TIMEOUTS: &str = "mountshare_serve_backend_timeouts";
/// Calls answered JUKEBOX at once: a READ of a file with a stuck READ, or too many stuck calls.
pub const BACKEND_REFUSED: &str = "mountshare_serve_backend_refused";
/// Calls that joined an equal call already running, or took its late result (counter).
pub const BACKEND_JOINED: &str = "mountshare_serve_backend_joined";
/// TCP connections open now (gauge).
pub const CONNECTIONS_OPEN: &str = "mountshare_serve_connections_open";
/// Connections closed for being idle (counter).
pub const CONNECTIONS_CLOSED_IDLE: &str = "mountshare_serve_connections_closed_idle";
/// Connections closed to admit a new one, by `reason`: `limit` (the connection limit, or no
/// descriptor left) or `per_address` (the new one's address held its most) (counter).
pub const CONNECTIONS_EVICTED: &str = "mountshare_serve_connections_evicted";
/// Connections refused, by `reason`: `allow_list` (counter).
pub const CONNECTIONS_REFUSED: &str = "mountshare_serve_connections_refused";
/// Connections closed because their client did not read its replies (counter).
pub const CONNECTIONS_CLOSED_UNREAD: &str = "mountshare_serve_connections_closed_unread";
/// Handles resolved by a walk from the root (not in the handle cache), by `outcome` (counter).
pub const HANDLE_WALKS: &str = "mountshare_serve_handle_walks";
/// Searches below a handle's guided depth, by `outcome` (counter).
pub const HANDLE_SEARCHES: &str = "mountshare_serve_handle_searches";
/// Directory entries those searches visited (counter).
pub const HANDLE_SEARCH_ENTRIES: &str = "mountshare_serve_handle_search_entries";
/// Time those searches took, in seconds (counter).
pub const HANDLE_SEARCH_SECONDS: &str = "mountshare_serve_handle_search_seconds";
/// Bytes a cache holds now, by `cache` (gauge).
pub const CACHE_BYTES: &str = "mountshare_serve_cache_bytes";
/// Entries a cache holds now, by `cache` (gauge).
pub const CACHE_ENTRIES: &str = "mountshare_serve_cache_entries";
/// The byte bound of a cache, by `cache` (gauge).
pub const CACHE_LIMIT_BYTES: &str = "mountshare_serve_cache_limit_bytes";
/// 1 while /readyz answers 200 (gauge).
pub const READY: &str = "mountshare_serve_ready";
/// Probes of the export root that failed, by `reason`: `error`, `timeout`, `busy` (counter).
pub const ROOT_PROBE_FAILURES: &str = "mountshare_serve_root_probe_failures";
/// Duration of the last probe of the export root, in seconds (gauge; the deadline if it hung).
pub const ROOT_PROBE_SECONDS: &str = "mountshare_serve_root_probe_seconds";
/// Resident memory of the process, from /proc/self/statm (gauge).
pub const RESIDENT_MEMORY: &str = "mountshare_serve_resident_memory_bytes";

// ---- Labels. ----

const NFS_PROCEDURES: [&str; 22] = [
    "NULL",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READLINK",
    "READ",
    "WRITE",
    "CREATE",
    "MKDIR",
    "SYMLINK",
    "MKNOD",
    "REMOVE",
    "RMDIR",
    "RENAME",
    "LINK",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "FSINFO",
    "PATHCONF",
    "COMMIT",
];
const MOUNT_PROCEDURES: [&str; 6] = ["NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"];
const PMAP_PROCEDURES: [&str; 6] = ["NULL", "SET", "UNSET", "GETPORT", "DUMP", "CALLIT"];

/// A (program, procedure) pair: its own counters and histogram. A procedure outside its
/// program's table, or a version not served, is that program's `other`; an unknown program is
/// `other`/`other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(usize);

const NFS_BASE: usize = 0;
const MOUNT_BASE: usize = NFS_BASE + NFS_PROCEDURES.len() + 1;
const PMAP_BASE: usize = MOUNT_BASE + MOUNT_PROCEDURES.len() + 1;
const OTHER_SLOT: usize = PMAP_BASE + PMAP_PROCEDURES.len() + 1;
const SLOTS: usize = OTHER_SLOT + 1;

impl Slot {
    /// The slot of a call to `program` version `vers`, procedure `procedure`.
    pub(crate) fn of(program: u32, vers: u32, procedure: u32) -> Slot {
        let p = procedure as usize;
        let within = |base: usize, n: usize, ok: bool| Slot(base + if ok && p < n { p } else { n });
        match program {
            NFS_PROGRAM => within(NFS_BASE, NFS_PROCEDURES.len(), vers == NFS_V3),
            MOUNT_PROGRAM => within(MOUNT_BASE, MOUNT_PROCEDURES.len(), vers == 1 || vers == 3),
            PMAP_PROGRAM => within(PMAP_BASE, PMAP_PROCEDURES.len(), vers == PMAP_V2),
            _ => Slot(OTHER_SLOT),
        }
    }

    /// A record that is not a call we could read: no program known.
    pub(crate) const UNKNOWN: Slot = Slot(OTHER_SLOT);

    fn labels(self) -> (&'static str, &'static str) {
        let i = self.0;
        let pick = |table: &[&'static str], at: usize| table.get(at).copied().unwrap_or("other");
        if i < MOUNT_BASE {
            ("nfs", pick(&NFS_PROCEDURES, i - NFS_BASE))
        } else if i < PMAP_BASE {
            ("mount", pick(&MOUNT_PROCEDURES, i - MOUNT_BASE))
        } else if i < OTHER_SLOT {
            ("portmap", pick(&PMAP_PROCEDURES, i - PMAP_BASE))
        } else {
            ("other", "other")
        }
    }

    fn is_nfs_result(self) -> bool {
        // Every NFSv3 procedure but NULL begins its results with an nfsstat3.
        (NFS_BASE + 1..NFS_BASE + NFS_PROCEDURES.len()).contains(&self.0)
    }

    fn is_nfs_read(self) -> bool {
        self.0 == NFS_BASE + proc3::READ as usize
    }

    fn is_mnt(self) -> bool {
        self.0 == MOUNT_BASE + mountproc3::MNT as usize
    }
}

/// The `status` label values: RPC-level outcomes, then every nfsstat3, then every mountstat3.
const STATUSES: [&str; 48] = [
    // RPC (RFC 5531): an accepted call with no status of its own, and the failures.
    "SUCCESS",
    "PROG_UNAVAIL",
    "PROG_MISMATCH",
    "PROC_UNAVAIL",
    "GARBAGE_ARGS",
    "SYSTEM_ERR",
    "RPC_MISMATCH",
    "AUTH_ERROR",
    "UNKNOWN",
    // nfsstat3 (RFC 1813 2.6), from index 9.
    "NFS3_OK",
    "NFS3ERR_PERM",
    "NFS3ERR_NOENT",
    "NFS3ERR_IO",
    "NFS3ERR_NXIO",
    "NFS3ERR_ACCES",
    "NFS3ERR_EXIST",
    "NFS3ERR_XDEV",
    "NFS3ERR_NODEV",
    "NFS3ERR_NOTDIR",
    "NFS3ERR_ISDIR",
    "NFS3ERR_INVAL",
    "NFS3ERR_FBIG",
    "NFS3ERR_NOSPC",
    "NFS3ERR_ROFS",
    "NFS3ERR_MLINK",
    "NFS3ERR_NAMETOOLONG",
    "NFS3ERR_NOTEMPTY",
    "NFS3ERR_DQUOT",
    "NFS3ERR_STALE",
    "NFS3ERR_REMOTE",
    "NFS3ERR_BADHANDLE",
    "NFS3ERR_NOT_SYNC",
    "NFS3ERR_BAD_COOKIE",
    "NFS3ERR_NOTSUPP",
    "NFS3ERR_TOOSMALL",
    "NFS3ERR_SERVERFAULT",
    "NFS3ERR_BADTYPE",
    "NFS3ERR_JUKEBOX",
    // mountstat3 (RFC 1813 appendix I), from index 38.
    "MNT3_OK",
    "MNT3ERR_PERM",
    "MNT3ERR_NOENT",
    "MNT3ERR_IO",
    "MNT3ERR_ACCES",
    "MNT3ERR_NOTDIR",
    "MNT3ERR_INVAL",
    "MNT3ERR_NAMETOOLONG",
    "MNT3ERR_NOTSUPP",
    "MNT3ERR_SERVERFAULT",
];
const STATUS_UNKNOWN: usize = 8;
const NFS_STATUS_CODES: [u32; 29] = [
    0, 1, 2, 5, 6, 13, 17, 18, 19, 20, 21, 22, 27, 28, 30, 31, 63, 66, 69, 70, 71, 10001, 10002,
    10003, 10004, 10005, 10006, 10007, 10008,
];
const MOUNT_STATUS_CODES: [u32; 10] = [0, 1, 2, 5, 13, 20, 22, 63, 10004, 10006];

fn status_index(codes: &[u32], first: usize, code: u32) -> usize {
    codes
        .iter()
        .position(|c| *c == code)
        .map_or(STATUS_UNKNOWN, |i| first + i)
}

/// What a reply says: its `status` label index, and the file bytes of a successful READ.
/// `body` is the reply from just after its xid (msg_type onwards). Never panics: a reply too
/// short to say is `UNKNOWN`.
fn classify(slot: Slot, body: &[u8]) -> (usize, u64) {
    let word = |at: usize| -> Option<u32> {
        body.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let unknown = (STATUS_UNKNOWN, 0);
    // msg_type (REPLY = 1), reply_stat.
    match word(4) {
        Some(0) => {}
        Some(1) => {
            return match word(8) {
                Some(0) => (6, 0),
                Some(1) => (7, 0),
                _ => unknown,
            }
        }
        _ => return unknown,
    }
    // Accepted: verifier (flavor, opaque body), then accept_stat.
    let Some(verf_len) = word(12) else {
        return unknown;
    };
    let at = 16 + (verf_len as usize).div_ceil(4) * 4;
    let Some(accept) = word(at) else {
        return unknown;
    };
    if accept != 0 {
        return match accept {
            1..=5 => (accept as usize, 0),
            _ => unknown,
        };
    }
    let results = at + 4;
    if slot.is_nfs_result() {
        let Some(code) = word(results) else {
            return unknown;
        };
        let status = status_index(&NFS_STATUS_CODES, 9, code);
        if code != 0 || !slot.is_nfs_read() {
            return (status, 0);
        }
        // READ3resok: post_op_attr (a bool, then fattr3 of 84 bytes if set), count, ...
        let attrs = match word(results + 4) {
            Some(1) => 84,
            _ => 0,
        };
        let count = word(results + 8 + attrs).unwrap_or(0);
        return (status, u64::from(count));
    }
    if slot.is_mnt() {
        return match word(results) {
            Some(code) => (status_index(&MOUNT_STATUS_CODES, 38, code), 0),
            None => unknown,
        };
    }
    (0, 0)
}

// ---- Latency histograms. ----

/// Upper bounds of the latency buckets: 100 µs, doubling, up to 26.2 s (then +Inf).
const BUCKETS: usize = 19;
const FIRST_BUCKET_NANOS: u64 = 100_000;

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn record(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = if ns <= FIRST_BUCKET_NANOS {
            0
        } else {
            let q = (ns - 1) / FIRST_BUCKET_NANOS;
            (64 - q.leading_zeros() as usize).min(BUCKETS)
        };
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(ns, Ordering::Relaxed);
    }

    fn upper_bound(i: usize) -> f64 {
        if i >= BUCKETS {
            f64::MAX
        } else {
            (FIRST_BUCKET_NANOS << i) as f64 / 1e9
        }
    }
}

// ---- The counters. ----

/// How a handle walk from the root ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WalkOutcome {
    Found = 0,
    NotFound = 1,
    /// A directory on the way could not be listed: nothing proven (answered as the error says).
    Failed = 2,
}
const WALK_OUTCOMES: [&str; 3] = ["found", "not_found", "failed"];

/// How a search below a handle's guided depth ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchOutcome {
    Found = 0,
    NotFound = 1,
    /// Gave up after the most entries a search may visit.
    EntryLimit = 2,
    /// Gave up after the longest a search may take.
    TimeLimit = 3,
}
const SEARCH_OUTCOMES: [&str; 4] = ["found", "not_found", "entry_limit", "time_limit"];

/// Everything the call path counts. One per server, shared by every call.
pub(crate) struct Metrics {
    calls: Box<[AtomicU64]>,
    latency: Box<[Histogram]>,
    read_bytes: AtomicU64,
    in_flight: AtomicI64,
    walks: [AtomicU64; 3],
    searches: [AtomicU64; 4],
    search_entries: AtomicU64,
    search_nanos: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            calls: (0..SLOTS * STATUSES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..SLOTS).map(|_| Histogram::default()).collect(),
            read_bytes: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            walks: Default::default(),
            searches: Default::default(),
            search_entries: AtomicU64::new(0),
            search_nanos: AtomicU64::new(0),
        }
    }
}

/// A call being worked on: counted in [`CALLS_IN_FLIGHT`] until dropped.
pub(crate) struct Working<'a>(&'a Metrics);

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// A reply to a call of `slot` that arrived at `arrived` is ready; `body` is the reply from
    /// just after its xid. The one place calls are counted.
    pub(crate) fn answered(&self, slot: Slot, body: &[u8], arrived: Instant) {
        let (status, read) = classify(slot, body);
        self.calls[slot.0 * STATUSES.len() + status].fetch_add(1, Ordering::Relaxed);
        self.latency[slot.0].record(arrived.elapsed());
        if read > 0 {
            self.read_bytes.fetch_add(read, Ordering::Relaxed);
        }
    }

    /// Count a call as being worked on while the guard lives.
    pub(crate) fn working(&self) -> Working<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Working(self)
    }

    pub(crate) fn walked(&self, outcome: WalkOutcome) {
        self.walks[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn search_count(&self, outcome: SearchOutcome) -> u64 {
        self.searches[outcome as usize].load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn search_entries(&self) -> u64 {
        self.search_entries.load(Ordering::Relaxed)
    }

    pub(crate) fn searched(&self, outcome: SearchOutcome, entries: u64, took: Duration) {
        self.searches[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.search_entries.fetch_add(entries, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.search_nanos.fetch_add(ns, Ordering::Relaxed);
    }
}

// ---- What is sampled at scrape time. ----

/// What one cache holds now, and its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheUsage {
    pub name: &'static str,
    pub bytes: u64,
    pub entries: u64,
    pub limit_bytes: u64,
}

/// The state read when `/metrics` is scraped, beside the counters.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sample {
    pub stalls: StallStats,
    pub connections: ConnectionStats,
    pub caches: Vec<CacheUsage>,
    pub ready: bool,
    /// Failed root probes by reason: error, timeout, busy.
    pub probe_failures: [u64; 3],
    pub probe_seconds: f64,
}

const PROBE_FAILURE_REASONS: [&str; 3] = ["error", "timeout", "busy"];

/// The resident set size of this process, in bytes (VmRSS of /proc/self/status).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

type Sampler = Arc<dyn Fn() -> Sample + Send + Sync>;

/// The collector behind `/metrics`: the counters, and a [`Sample`] taken at each scrape.
pub(crate) struct Exposition {
    metrics: Arc<Metrics>,
    sample: Sampler,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exposition")
    }
}

impl Exposition {
    pub(crate) fn new(metrics: Arc<Metrics>, sample: Sampler) -> Exposition {
        Exposition { metrics, sample }
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(self: &Arc<Self>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Shared(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[derive(Debug)]
struct Shared(Arc<Exposition>);

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    if let [(labels, v)] = values {
        if labels.is_empty() {
            return ConstCounter::new(*v).encode(m);
        }
    }
    for (labels, v) in values {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue + Copy + std::fmt::Debug>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(Labels, V)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    if let [(labels, v)] = values {
        if labels.is_empty() {
            return ConstGauge::new(*v).encode(m);
        }
    }
    for (labels, v) in values {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Shared {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0.metrics;
        let s = (self.0.sample)();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        let mut calls = Vec::new();
        for slot in 0..SLOTS {
            let (program, procedure) = Slot(slot).labels();
            for (status, label) in STATUSES.iter().enumerate() {
                let n = load(&m.calls[slot * STATUSES.len() + status]);
                if n > 0 {
                    let labels = vec![
                        ("program", program),
                        ("procedure", procedure),
                        ("status", *label),
                    ];
                    calls.push((labels, n));
                }
            }
        }
        counter(&mut enc, CALLS, "Calls answered", &calls)?;

        {
            let mut hist = enc.encode_descriptor(
                CALL_DURATION,
                "Time from a call's arrival to its reply being ready",
                None,
                MetricType::Histogram,
            )?;
            for slot in 0..SLOTS {
                let h = &m.latency[slot];
                let buckets: Vec<(f64, u64)> = (0..=BUCKETS)
                    .map(|i| (Histogram::upper_bound(i), load(&h.buckets[i])))
                    .collect();
                let count: u64 = buckets.iter().map(|(_, n)| n).sum();
                if count == 0 {
                    continue;
                }
                let (program, procedure) = Slot(slot).labels();
                let labels = [("program", program), ("procedure", procedure)];
                hist.encode_family(&labels)?.encode_histogram::<()>(
                    load(&h.sum_nanos) as f64 / 1e9,
                    count,
                    &buckets,
                    None,
                )?;
            }
        }

        counter(
            &mut enc,
            READ_BYTES,
            "File bytes sent in successful READ replies",
            &[(vec![], load(&m.read_bytes))],
        )?;
        gauge(
            &mut enc,
            CALLS_IN_FLIGHT,
            "Calls being worked on, stuck ones included",
            &[(vec![], m.in_flight.load(Ordering::Relaxed))],
        )?;

        gauge(
            &mut enc,
            BACKEND_STUCK,
            "Backend calls past the backend timeout and still running",
            &[(vec![], s.stalls.stuck_now as i64)],
        )?;
        counter(
            &mut enc,
            BACKEND_TIMEOUTS,
            "Calls answered JUKEBOX at their deadline",
            &[(vec![], s.stalls.timed_out)],
        )?;
        counter(
            &mut enc,
            BACKEND_REFUSED,
            "Calls answered JUKEBOX at once (a stuck file, or too many stuck calls)",
            &[(vec![], s.stalls.refused)],
        )?;
        counter(
            &mut enc,
            BACKEND_JOINED,
            "Calls that joined an equal call already running",
            &[(vec![], s.stalls.joined)],
        )?;

        let c = s.connections;
        gauge(
            &mut enc,
            CONNECTIONS_OPEN,
            "TCP connections open",
            &[(vec![], c.open as i64)],
        )?;
        counter(
            &mut enc,
            CONNECTIONS_CLOSED_IDLE,
            "Connections closed for being idle",
            &[(vec![], c.closed_idle)],
        )?;
        counter(
            &mut enc,
            CONNECTIONS_EVICTED,
            "Connections closed to admit a new one",
            &[
                (vec![("reason", "limit")], c.evicted),
                (vec![("reason", "per_address")], c.evicted_per_address),
            ],
        )?;
        counter(
            &mut enc,
            CONNECTIONS_REFUSED,
            "Connections refused",
            &[(vec![("reason", "allow_list")], c.refused_allow_list)],
        )?;
        counter(
            &mut enc,
            CONNECTIONS_CLOSED_UNREAD,
            "Connections closed because their client did not read its replies",
            &[(vec![], c.closed_unread)],
        )?;

        let walks: Vec<_> = WALK_OUTCOMES
            .iter()
            .zip(&m.walks)
            .map(|(o, n)| (vec![("outcome", *o)], load(n)))
            .collect();
        counter(
            &mut enc,
            HANDLE_WALKS,
            "Handles resolved by a walk from the root",
            &walks,
        )?;
        let searches: Vec<_> = SEARCH_OUTCOMES
            .iter()
            .zip(&m.searches)
            .map(|(o, n)| (vec![("outcome", *o)], load(n)))
            .collect();
        counter(
            &mut enc,
            HANDLE_SEARCHES,
            "Searches below a handle's guided depth",
            &searches,
        )?;
        counter(
            &mut enc,
            HANDLE_SEARCH_ENTRIES,
            "Directory entries visited by handle searches",
            &[(vec![], load(&m.search_entries))],
        )?;
        ConstCounter::new(load(&m.search_nanos) as f64 / 1e9).encode(enc.encode_descriptor(
            HANDLE_SEARCH_SECONDS,
            "Time spent in handle searches",
            None,
            MetricType::Counter,
        )?)?;

        let of = |f: fn(&CacheUsage) -> u64| -> Vec<(Labels, i64)> {
            s.caches
                .iter()
                .map(|c| (vec![("cache", c.name)], f(c) as i64))
                .collect()
        };
        gauge(
            &mut enc,
            CACHE_BYTES,
            "Bytes a cache holds",
            &of(|c| c.bytes),
        )?;
        gauge(
            &mut enc,
            CACHE_ENTRIES,
            "Entries a cache holds",
            &of(|c| c.entries),
        )?;
        gauge(
            &mut enc,
            CACHE_LIMIT_BYTES,
            "The byte bound of a cache",
            &of(|c| c.limit_bytes),
        )?;

        gauge(
            &mut enc,
            READY,
            "1 while /readyz answers 200",
            &[(vec![], i64::from(s.ready))],
        )?;
        let failures: Vec<_> = PROBE_FAILURE_REASONS
            .iter()
            .zip(s.probe_failures)
            .map(|(r, n)| (vec![("reason", *r)], n))
            .collect();
        counter(
            &mut enc,
            ROOT_PROBE_FAILURES,
            "Probes of the export root that failed",
            &failures,
        )?;
        gauge(
            &mut enc,
            ROOT_PROBE_SECONDS,
            "Duration of the last probe of the export root",
            &[(vec![], s.probe_seconds)],
        )?;
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut enc,
                RESIDENT_MEMORY,
                "Resident memory of the process",
                &[(vec![], rss as i64)],
            )?;
        }
        Ok(())
    }
}

/// Parse the exposition back into `name{labels} -> value`, for tests.
#[cfg(test)]
pub(crate) fn parse(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use mountshare_proto::rpc::{encode_reply_header, AcceptStat, ReplyBody};
    use mountshare_proto::xdr::XdrEncode;

    fn reply(body: &ReplyBody, results: &[u32]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_reply_header(&mut out, 7, body);
        for r in results {
            r.encode(&mut out);
        }
        out[4..].to_vec()
    }

    #[test]
    fn statuses_are_read_back_from_the_encoded_reply() {
        let read = Slot::of(NFS_PROGRAM, 3, proc3::READ);
        let ok = reply(&ReplyBody::SUCCESS, &[0, 0, 4096, 1, 4096]);
        assert_eq!(classify(read, &ok), (9, 4096), "NFS3_OK, no attributes");
        let mut with_attrs = vec![0, 1];
        with_attrs.extend([0; 21]);
        with_attrs.extend([10, 0, 10]);
        assert_eq!(
            classify(read, &reply(&ReplyBody::SUCCESS, &with_attrs)),
            (9, 10)
        );
        let stale = reply(&ReplyBody::SUCCESS, &[70]);
        assert_eq!(STATUSES[classify(read, &stale).0], "NFS3ERR_STALE");
        let late = reply(&ReplyBody::SUCCESS, &[10008]);
        let getattr = Slot::of(NFS_PROGRAM, 3, proc3::GETATTR);
        assert_eq!(STATUSES[classify(getattr, &late).0], "NFS3ERR_JUKEBOX");
        let null = Slot::of(NFS_PROGRAM, 3, proc3::NULL);
        assert_eq!(
            STATUSES[classify(null, &reply(&ReplyBody::SUCCESS, &[])).0],
            "SUCCESS"
        );
        let garbage = reply(&ReplyBody::Accepted(AcceptStat::GarbageArgs), &[]);
        assert_eq!(STATUSES[classify(getattr, &garbage).0], "GARBAGE_ARGS");
        let mnt = Slot::of(MOUNT_PROGRAM, 3, mountproc3::MNT);
        assert_eq!(
            STATUSES[classify(mnt, &reply(&ReplyBody::SUCCESS, &[13])).0],
            "MNT3ERR_ACCES"
        );
        assert_eq!(STATUSES[classify(mnt, &[1, 2]).0], "UNKNOWN");
        assert_eq!(Slot::of(NFS_PROGRAM, 4, 1).labels(), ("nfs", "other"));
        assert_eq!(
            Slot::of(PMAP_PROGRAM, 2, 3).labels(),
            ("portmap", "GETPORT")
        );
        assert_eq!(Slot::of(1, 1, 1).labels(), ("other", "other"));
    }

    #[test]
    fn the_exposition_has_counts_latencies_and_sampled_state() {
        let m = Arc::new(Metrics::default());
        let read = Slot::of(NFS_PROGRAM, 3, proc3::READ);
        let began = Instant::now();
        m.answered(
            read,
            &reply(&ReplyBody::SUCCESS, &[0, 0, 100, 1, 100]),
            began,
        );
        m.answered(read, &reply(&ReplyBody::SUCCESS, &[0, 0, 50, 1, 50]), began);
        m.answered(read, &reply(&ReplyBody::SUCCESS, &[10008]), began);
        let w = m.working();
        m.searched(SearchOutcome::TimeLimit, 1234, Duration::from_millis(100));
        let e = Arc::new(Exposition::new(
            m.clone(),
            Arc::new(|| Sample {
                stalls: StallStats {
                    stuck_now: 3,
                    ..Default::default()
                },
                ready: true,
                ..Default::default()
            }),
        ));
        let text = e.encode();
        let v = parse(&text);
        let get = |k: &str| {
            v.get(k)
                .copied()
                .unwrap_or_else(|| panic!("{k} in\n{text}"))
        };
        assert_eq!(
            get(r#"mountshare_serve_calls_total{program="nfs",procedure="READ",status="NFS3_OK"}"#),
            2.0
        );
        assert_eq!(
            get(
                r#"mountshare_serve_calls_total{program="nfs",procedure="READ",status="NFS3ERR_JUKEBOX"}"#
            ),
            1.0
        );
        assert_eq!(
            get(r#"mountshare_serve_call_duration_seconds_count{program="nfs",procedure="READ"}"#),
            3.0
        );
        assert_eq!(
            get(
                r#"mountshare_serve_call_duration_seconds_bucket{le="+Inf",program="nfs",procedure="READ"}"#
            ),
            3.0
        );
        assert_eq!(get("mountshare_serve_read_bytes_total"), 150.0);
        assert_eq!(get("mountshare_serve_calls_in_flight"), 1.0);
        drop(w);
        assert_eq!(get("mountshare_serve_backend_stuck_calls"), 3.0);
        assert_eq!(get("mountshare_serve_ready"), 1.0);
        assert_eq!(
            get(r#"mountshare_serve_handle_searches_total{outcome="time_limit"}"#),
            1.0
        );
        assert_eq!(get("mountshare_serve_handle_search_entries_total"), 1234.0);
        assert!(get("mountshare_serve_resident_memory_bytes") > 0.0);
        assert_eq!(parse(&e.encode())["mountshare_serve_calls_in_flight"], 0.0);
    }

    /// Every metric name defined here is documented, and the dashboard asks for no other.
    #[test]
    fn docs_and_dashboard_name_exactly_these_metrics() {
        let names = [
            CALLS,
            CALL_DURATION,
            READ_BYTES,
            CALLS_IN_FLIGHT,
            BACKEND_STUCK,
            BACKEND_TIMEOUTS,
            BACKEND_REFUSED,
            BACKEND_JOINED,
            CONNECTIONS_OPEN,
            CONNECTIONS_CLOSED_IDLE,
            CONNECTIONS_EVICTED,
            CONNECTIONS_REFUSED,
            CONNECTIONS_CLOSED_UNREAD,
            HANDLE_WALKS,
            HANDLE_SEARCHES,
            HANDLE_SEARCH_ENTRIES,
            HANDLE_SEARCH_SECONDS,
            CACHE_BYTES,
            CACHE_ENTRIES,
            CACHE_LIMIT_BYTES,
            READY,
            ROOT_PROBE_FAILURES,
            ROOT_PROBE_SECONDS,
            RESIDENT_MEMORY,
        ];
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let doc = std::fs::read_to_string(repo.join("docs/METRICS.md")).unwrap();
        let dash = std::fs::read_to_string(repo.join("deploy/dashboards/mountshare.json")).unwrap();
        let known = |word: &str| {
            let base = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            names.contains(&base) || names.contains(&word)
        };
        for name in names {
            assert!(
                doc.contains(name),
                "docs/METRICS.md does not describe {name}"
            );
        }
        for text in [&doc, &dash] {
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("mountshare_serve_") {
                    assert!(known(word), "{word} is not a metric of serve");
                }
            }
        }
    }

    #[test]
    fn latency_buckets_double_from_100us() {
        let h = Histogram::default();
        for us in [50, 100, 101, 200, 201, 30_000_000] {
            h.record(Duration::from_micros(us));
        }
        let counts: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(&counts[..3], &[2, 2, 1]);
        assert_eq!(counts[BUCKETS], 1, "past 26.2 s: +Inf");
        assert_eq!(Histogram::upper_bound(1), 0.0002);
    }
}
