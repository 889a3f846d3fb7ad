//! What a running server shows of itself: whether it is ready (its listener is up, and the
//! export root answered a stat within a deadline), and its metrics. The root is probed on
//! detached threads that are abandoned at the deadline (`mountshare_mounts::watchdog`), so a
//! hung FUSE file system never hangs the probe, and `/readyz` only reads what the last probe
//! found. The [`Observer`] is what `--listen-health` serves (`mountshare-health`).
use crate::config::HealthConfig;
use crate::conns::{ConnectionStats, Conns};
use crate::export::Export;
use crate::metrics::{CacheUsage, Exposition, Sample};
use crate::stall::{StallStats, Stalls};
use mountshare_fs::RelPath;
use mountshare_mounts::watchdog::{Deadlined, Lane};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Probes of the root that may be stuck at once; past it, a probe is not started (not ready).
const MAX_STUCK_PROBES: usize = 2;

/// What the last probe of the export root found.
#[derive(Debug, Clone)]
struct Probe {
    ok: bool,
    why: String,
    took: Duration,
}

/// Readiness: the listener's state and the last root probe.
pub(crate) struct Readiness {
    listening: AtomicBool,
    last: Mutex<Probe>,
    /// Failed probes: error, timeout, busy.
    failures: [AtomicU64; 3],
}

impl Readiness {
    fn new() -> Readiness {
        Readiness {
            listening: AtomicBool::new(false),
            last: Mutex::new(Probe {
                ok: false,
                why: "the export root has not been probed yet".into(),
                took: Duration::ZERO,
            }),
            failures: Default::default(),
        }
    }

    /// The listener accepts connections (`true`), or has stopped (`false`).
    pub(crate) fn set_listening(&self, up: bool) {
        self.listening.store(up, Ordering::Release);
    }

    fn last(&self) -> Probe {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn status(&self) -> (bool, String) {
        if !self.listening.load(Ordering::Acquire) {
            return (false, "not listening (starting or shutting down)".into());
        }
        let last = self.last();
        (last.ok, last.why)
    }

    fn record(&self, probe: Probe, failure: Option<usize>) {
        if let Some(n) = failure.and_then(|i| self.failures.get(i)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = probe;
    }
}

/// Stat the export root once, within `deadline`, on a thread of `lane`: what was found, and
/// the index of the failure counter to bump, if it failed.
fn probe_once(
    backend: Arc<dyn mountshare_fs::Backend>,
    lane: &Lane,
    deadline: Duration,
) -> (Probe, Option<usize>) {
    let began = Instant::now();
    let outcome = lane.run(deadline, move || backend.stat(&RelPath::root()));
    let took = began.elapsed();
    let (ok, why, failure) = match outcome {
        Deadlined::Done(Ok(attr)) if attr.is_dir() => (
            true,
            format!("the export root answered a stat in {} ms", took.as_millis()),
            None,
        ),
        Deadlined::Done(Ok(_)) => (false, "the export root is not a directory".into(), Some(0)),
        Deadlined::Done(Err(e)) => (
            false,
            format!("a stat of the export root failed: {e}"),
            Some(0),
        ),
        Deadlined::TimedOut => (
            false,
            format!(
                "the export root did not answer a stat within {} ms",
                deadline.as_millis()
            ),
            Some(1),
        ),
        Deadlined::Busy => (
            false,
            "earlier stats of the export root are still stuck".into(),
            Some(2),
        ),
    };
    (Probe { ok, why, took }, failure)
}

/// Probe the export root every `config.probe_interval` until `stop` turns true.
pub(crate) async fn probe_loop(
    export: Arc<Export>,
    readiness: Arc<Readiness>,
    config: HealthConfig,
    mut stop: watch::Receiver<bool>,
) {
    let lane = Lane::new("ready", MAX_STUCK_PROBES);
    loop {
        let backend = export.backend_arc();
        let l = lane.clone();
        let deadline = config.probe_timeout;
        let probed = tokio::task::spawn_blocking(move || probe_once(backend, &l, deadline)).await;
        if let Ok((probe, failure)) = probed {
            if !probe.ok {
                tracing::debug!(why = %probe.why, "not ready");
            }
            readiness.record(probe, failure);
        }
        tokio::select! {
            _ = tokio::time::sleep(config.probe_interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Everything an [`Observer`] reads, beside the stalls and connections it already had.
pub(crate) struct View {
    export: Arc<Export>,
    stalls: Arc<Stalls>,
    /// The listener's table of connections, whose counters `/metrics` shows.
    conns: Arc<Conns>,
    pub readiness: Arc<Readiness>,
    exposition: OnceLock<Arc<Exposition>>,
}

impl View {
    pub(crate) fn new(export: Arc<Export>, stalls: Arc<Stalls>, conns: Arc<Conns>) -> Arc<View> {
        let view = Arc::new(View {
            export,
            stalls,
            conns,
            readiness: Arc::new(Readiness::new()),
            exposition: OnceLock::new(),
        });
        // The exposition samples the view at each scrape; it holds it weakly, so the two do
        // not keep each other alive.
        let weak = Arc::downgrade(&view);
        let _ = view.exposition.set(Arc::new(Exposition::new(
            view.export.metrics().clone(),
            Arc::new(move || weak.upgrade().map(|v| v.sample()).unwrap_or_default()),
        )));
        view
    }

    fn sample(&self) -> Sample {
        let (ready, _) = self.readiness.status();
        let last = self.readiness.last();
        Sample {
            stalls: self.stalls.stats(),
            connections: self.conns.stats.snapshot(),
            caches: self.export.cache_usage(),
            freshness: self.export.freshness(),
            ready,
            probe_failures: self
                .readiness
                .failures
                .each_ref()
                .map(|n| n.load(Ordering::Relaxed)),
            probe_seconds: last.took.as_secs_f64(),
        }
    }
}

/// A view of a running server's state, for metrics, health endpoints and tests.
#[derive(Clone)]
pub struct Observer {
    pub(crate) stalls: Arc<Stalls>,
    pub(crate) conns: Arc<Conns>,
    pub(crate) view: Arc<View>,
}

impl Observer {
    /// What the backend timeout has done so far.
    pub fn stalls(&self) -> StallStats {
        self.stalls.stats()
    }

    /// Connections open, and those closed idle, evicted, refused or given up so far.
    pub fn connections(&self) -> ConnectionStats {
        self.conns.stats.snapshot()
    }

    /// Whether the server is ready (its listener is up and the export root answered its last
    /// probe in time), and why.
    pub fn readiness(&self) -> (bool, String) {
        self.view.readiness.status()
    }

    /// The metrics, in the Prometheus text exposition (docs/METRICS.md).
    pub fn metrics(&self) -> String {
        self.view
            .exposition
            .get()
            .map(|e| e.encode())
            .unwrap_or_default()
    }

    /// What each cache holds now: (name, bytes, entries).
    pub fn caches(&self) -> Vec<(&'static str, u64, u64)> {
        self.view
            .export
            .cache_usage()
            .into_iter()
            .map(
                |CacheUsage {
                     name,
                     bytes,
                     entries,
                     ..
                 }| (name, bytes, entries),
            )
            .collect()
    }
}

impl mountshare_health::Health for Observer {
    fn readiness(&self) -> (bool, String) {
        Observer::readiness(self)
    }

    fn metrics(&self) -> String {
        Observer::metrics(self)
    }
}
