//! The agent's Prometheus metrics. Every metric name lives here, in one place.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// 1 while the right mount is present and answered its last probe in time.
pub const MOUNT_UP: &str = "mountshare_attach_mount_up";
/// Mounts made to replace a dead or foreign one (the exposition adds `_total`).
pub const REMOUNTS: &str = "mountshare_attach_remounts";
/// Mounts made where nothing of ours was mounted (the exposition adds `_total`).
pub const MOUNTS: &str = "mountshare_attach_mounts";
/// How long each probe (stat + readdir + lookup) took; a timed-out probe counts its deadline.
pub const PROBE_DURATION: &str = "mountshare_attach_probe_duration_seconds";
/// Failed probes or mount attempts since the last success.
pub const CONSECUTIVE_FAILURES: &str = "mountshare_attach_consecutive_failures";
/// 1 for the current state, labelled `state`.
pub const STATE: &str = "mountshare_attach_state";
/// 1, labelled with the last error (`error`); absent when there has been none.
pub const LAST_ERROR: &str = "mountshare_attach_last_error";
/// Number of NFS mounts stacked at the target (1 when all is well).
pub const STACK_DEPTH: &str = "mountshare_attach_nfs_stack_depth";

type Labels = Vec<(String, String)>;

/// Handles to the metrics; cheap to clone, shared by the loop and the HTTP endpoint.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub mount_up: Gauge,
    pub remounts: Counter,
    pub mounts: Counter,
    pub probe_duration: Histogram,
    pub consecutive_failures: Gauge,
    pub stack_depth: Gauge,
    state: Family<Labels, Gauge>,
    last_error: Family<Labels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let mount_up = Gauge::default();
        let remounts = Counter::default();
        let mounts = Counter::default();
        // 1 ms .. ~33 s: a healthy probe takes milliseconds, a dead one hits the deadline.
        let probe_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let consecutive_failures = Gauge::default();
        let stack_depth = Gauge::default();
        let state = Family::<Labels, Gauge>::default();
        let last_error = Family::<Labels, Gauge>::default();
        registry.register(
            MOUNT_UP,
            "1 while the right mount is present and answers probes",
            mount_up.clone(),
        );
        registry.register(
            REMOUNTS,
            "Mounts made to replace a dead or foreign mount",
            remounts.clone(),
        );
        registry.register(
            MOUNTS,
            "Mounts made where none of ours was present",
            mounts.clone(),
        );
        registry.register(
            PROBE_DURATION,
            "Duration of stat+readdir+lookup probes",
            probe_duration.clone(),
        );
        registry.register(
            CONSECUTIVE_FAILURES,
            "Failed probes or mount attempts since the last success",
            consecutive_failures.clone(),
        );
        registry.register(
            STACK_DEPTH,
            "NFS mounts stacked at the target",
            stack_depth.clone(),
        );
        registry.register(STATE, "1 for the agent's current state", state.clone());
        registry.register(
            LAST_ERROR,
            "The last error, as the error label",
            last_error.clone(),
        );
        Self {
            registry: Arc::new(registry),
            mount_up,
            remounts,
            mounts,
            probe_duration,
            consecutive_failures,
            stack_depth,
            state,
            last_error,
        }
    }

    pub fn observe_probe(&self, took: Duration) {
        self.probe_duration.observe(took.as_secs_f64());
    }

    pub fn set_state(&self, state: &str) {
        self.state.clear();
        self.state
            .get_or_create(&vec![("state".to_owned(), state.to_owned())])
            .set(1);
    }

    pub fn set_last_error(&self, error: &str) {
        // Bound the label: it is free text from the kernel or resolver.
        let error: String = error.chars().take(200).collect();
        self.last_error.clear();
        self.last_error
            .get_or_create(&vec![("error".to_owned(), error)])
            .set(1);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_the_metrics_and_the_last_error() {
        let m = Metrics::new();
        m.mount_up.set(1);
        m.remounts.inc();
        m.observe_probe(Duration::from_millis(3));
        m.set_state("healthy");
        m.set_last_error("connect 10.0.0.5:2049: Connection refused");
        m.set_last_error("probe failed: stat: Input/output error");
        let text = m.encode();
        assert!(text.contains("mountshare_attach_mount_up 1"), "{text}");
        assert!(
            text.contains("mountshare_attach_remounts_total 1"),
            "{text}"
        );
        assert!(
            text.contains("mountshare_attach_probe_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("mountshare_attach_state{state=\"healthy\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("error=\"probe failed: stat: Input/output error\""),
            "{text}"
        );
        assert!(
            !text.contains("Connection refused"),
            "only the last error is kept: {text}"
        );
    }
}
