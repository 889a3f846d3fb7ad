//! The server's metrics: every metric name `serve` exposes is defined here, with the counters
//! the call path bumps (plain atomics in fixed arrays, no lock and no allocation per call) and
//! their Prometheus exposition (prometheus-client's text encoder, through a [`Collector`] that
//! reads the atomics and a [`Sample`] of the rest at scrape time). docs/METRICS.md lists them.
//!
//! A call is counted once, when its reply is ready to go out, by the [`Outcome`] the reply
//! carries (its status, and the bytes of a READ, recorded as the handler wrote them; no reply is
//! read back): the same function counts a reply the handler built, a JUKEBOX sent at the
//! deadline, and a result shared with a call that joined another (`dispatch` calls it). Calls
//! are counted by [`Slot`], whose labels `dispatch` gives from the procedure tables.
use crate::conns::ConnectionStats;
use crate::dircache::FreshnessStats;
use crate::reply::{Outcome, Status};
use crate::stall::StallStats;
use mountshare_proto::mount3::MountStat3;
use mountshare_proto::nfs3::NfsStat3;
use mountshare_proto::rpc::{AcceptStat, AuthStat, RejectStat, ReplyBody};
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
/// Listings of directories made from the backend, by `reason`: `first` (no listing in hand) or
/// `refresh` (the one in hand was older than the refresh interval) (counter).
pub const DIR_LISTINGS: &str = "mountshare_serve_dir_listings";
/// Refreshes that found a directory's names changed, and served the new listing (counter).
pub const DIR_CHANGES: &str = "mountshare_serve_dir_changes";
/// Refreshes whose listing had lost most or all of its entries and was held back: the previous
/// listing kept being served (counter).
pub const DIR_SHRINKS_HELD: &str = "mountshare_serve_dir_shrinks_held";
/// Refreshes that failed; the listing in hand kept being served (counter).
pub const DIR_REFRESH_FAILURES: &str = "mountshare_serve_dir_refresh_failures";
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

/// Where a call is counted: one slot per (program, procedure), whose `program` and `procedure`
/// labels `dispatch` gives (`dispatch::slot_labels`, from the procedure tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(pub usize);

/// The RPC-level outcomes counted, in the order of their wire values: `accept_stat`, then
/// `reject_stat` (what the arms carry is not counted apart).
const RPC_OUTCOMES: [ReplyBody; 8] = [
    ReplyBody::Accepted(AcceptStat::Success),
    ReplyBody::Accepted(AcceptStat::ProgUnavail),
    ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 0, high: 0 }),
    ReplyBody::Accepted(AcceptStat::ProcUnavail),
    ReplyBody::Accepted(AcceptStat::GarbageArgs),
    ReplyBody::Accepted(AcceptStat::SystemErr),
    ReplyBody::Denied(RejectStat::RpcMismatch { low: 0, high: 0 }),
    ReplyBody::Denied(RejectStat::AuthError(AuthStat::Ok)),
];
/// How many `reject_stat` values come after the six `accept_stat` ones.
const ACCEPT_STATS: usize = 6;
/// Every status a reply can carry: the RPC outcomes, every nfsstat3, every mountstat3.
const STATUSES: usize = RPC_OUTCOMES.len() + NfsStat3::ALL.len() + MountStat3::ALL.len();

/// Where `status` is counted, among [`STATUSES`]: the order of [`all_statuses`].
fn status_index(status: Status) -> usize {
    match status {
        Status::Rpc(ReplyBody::Accepted(a)) => a.code() as usize,
        Status::Rpc(ReplyBody::Denied(r)) => ACCEPT_STATS + r.code() as usize,
        Status::Nfs(s) => RPC_OUTCOMES.len() + s.index(),
        Status::Mount(s) => RPC_OUTCOMES.len() + NfsStat3::ALL.len() + s.index(),
    }
}

/// Every status, in the order they are counted in.
fn all_statuses() -> impl Iterator<Item = Status> {
    let rpc = RPC_OUTCOMES.into_iter().map(Status::Rpc);
    let nfs = NfsStat3::ALL.iter().map(|s| Status::Nfs(*s));
    let mount = MountStat3::ALL.iter().map(|s| Status::Mount(*s));
    rpc.chain(nfs).chain(mount)
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
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
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
    /// The `program` and `procedure` labels of each slot.
    slots: Box<[(&'static str, &'static str)]>,
    /// Calls by slot, then status.
    calls: Box<[AtomicU64]>,
    latency: Box<[Histogram]>,
    read_bytes: AtomicU64,
    in_flight: AtomicI64,
    walks: [AtomicU64; 3],
    searches: [AtomicU64; 4],
    search_entries: AtomicU64,
    search_nanos: AtomicU64,
}

impl Metrics {
    /// Counters for calls in slots of these labels (see [`Slot`]).
    pub(crate) fn new(slots: Vec<(&'static str, &'static str)>) -> Self {
        let n = slots.len();
        Metrics {
            slots: slots.into_boxed_slice(),
            calls: (0..n * STATUSES).map(|_| AtomicU64::new(0)).collect(),
            latency: (0..n).map(|_| Histogram::default()).collect(),
            read_bytes: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            walks: Default::default(),
            searches: Default::default(),
            search_entries: AtomicU64::new(0),
            search_nanos: AtomicU64::new(0),
        }
    }
}

/// Counters with no call slot, for tests that count only walks and searches.
#[cfg(test)]
impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Vec::new())
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
    /// A reply to a call of `slot` that arrived at `arrived` is ready, and says `outcome`. The
    /// one place calls are counted.
    pub(crate) fn answered(&self, slot: Slot, outcome: Outcome, arrived: Instant) {
        let at = slot.0 * STATUSES + status_index(outcome.status);
        if let Some(calls) = self.calls.get(at) {
            calls.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(latency) = self.latency.get(slot.0) {
            latency.record(arrived.elapsed());
        }
        if outcome.read_bytes > 0 {
            self.read_bytes
                .fetch_add(outcome.read_bytes, Ordering::Relaxed);
        }
    }

    /// Count a call as being worked on while the guard lives.
    pub(crate) fn working(&self) -> Working<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Working(self)
    }

    pub(crate) fn walked(&self, outcome: WalkOutcome) {
        if let Some(n) = self.walks.get(outcome as usize) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    pub(crate) fn search_count(&self, outcome: SearchOutcome) -> u64 {
        self.searches
            .get(outcome as usize)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    #[cfg(test)]
    pub(crate) fn search_entries(&self) -> u64 {
        self.search_entries.load(Ordering::Relaxed)
    }

    pub(crate) fn searched(&self, outcome: SearchOutcome, entries: u64, took: Duration) {
        if let Some(n) = self.searches.get(outcome as usize) {
            n.fetch_add(1, Ordering::Relaxed);
        }
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
    pub freshness: FreshnessStats,
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
        for (slot, (program, procedure)) in m.slots.iter().enumerate() {
            for status in all_statuses() {
                let at = slot * STATUSES + status_index(status);
                let n = m.calls.get(at).map_or(0, load);
                if n > 0 {
                    let labels = vec![
                        ("program", *program),
                        ("procedure", *procedure),
                        ("status", status.name()),
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
            for (h, (program, procedure)) in m.latency.iter().zip(m.slots.iter()) {
                let buckets: Vec<(f64, u64)> = h
                    .buckets
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (Histogram::upper_bound(i), load(n)))
                    .collect();
                let count: u64 = buckets.iter().map(|(_, n)| n).sum();
                if count == 0 {
                    continue;
                }
                let labels = [("program", *program), ("procedure", *procedure)];
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

        let f = &s.freshness;
        counter(
            &mut enc,
            DIR_LISTINGS,
            "Listings of directories made from the backend",
            &[
                (vec![("reason", "first")], f.first_listings),
                (vec![("reason", "refresh")], f.refreshes),
            ],
        )?;
        counter(
            &mut enc,
            DIR_CHANGES,
            "Refreshes that found a directory's names changed",
            &[(vec![], f.changes)],
        )?;
        counter(
            &mut enc,
            DIR_SHRINKS_HELD,
            "Refreshes whose listing lost most or all entries and was held back",
            &[(vec![], f.shrinks_held)],
        )?;
        counter(
            &mut enc,
            DIR_REFRESH_FAILURES,
            "Refreshes of a directory that failed",
            &[(vec![], f.refresh_failures)],
        )?;

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

    /// Every `status` label value there is, as docs/METRICS.md, the dashboard and alerts know
    /// them, each counted apart.
    #[test]
    fn status_labels_are_the_rfc_names_each_counted_apart() {
        let names: Vec<_> = all_statuses().map(Status::name).collect();
        let mut expected = vec![
            "SUCCESS",
            "PROG_UNAVAIL",
            "PROG_MISMATCH",
            "PROC_UNAVAIL",
            "GARBAGE_ARGS",
            "SYSTEM_ERR",
            "RPC_MISMATCH",
            "AUTH_ERROR",
        ];
        expected.extend([
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
        ]);
        expected.extend([
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
        ]);
        assert_eq!(names, expected);
        assert_eq!(names.len(), STATUSES);
        for (i, status) in all_statuses().enumerate() {
            assert_eq!(status_index(status), i, "{}", status.name());
        }
        // What an arm carries is not a status of its own.
        let mismatch = ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 });
        assert_eq!(status_index(Status::Rpc(mismatch)), 2);
        let weak = ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak));
        assert_eq!(status_index(Status::Rpc(weak)), 7);
    }

    fn nfs(status: NfsStat3, read_bytes: u64) -> Outcome {
        Outcome {
            status: Status::Nfs(status),
            read_bytes,
        }
    }

    #[test]
    fn the_exposition_has_counts_latencies_and_sampled_state() {
        let m = Arc::new(Metrics::new(vec![("nfs", "GETATTR"), ("nfs", "READ")]));
        let read = Slot(1);
        let began = Instant::now();
        m.answered(read, nfs(NfsStat3::Ok, 100), began);
        m.answered(read, nfs(NfsStat3::Ok, 50), began);
        m.answered(read, nfs(NfsStat3::Jukebox, 0), began);
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
            DIR_LISTINGS,
            DIR_CHANGES,
            DIR_SHRINKS_HELD,
            DIR_REFRESH_FAILURES,
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
