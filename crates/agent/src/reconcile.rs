//! The reconcile loop's logic: look at mountinfo, probe, decide, act, one tick at a time.
//!
//! Each tick reads the truth from mountinfo (never from `mountpoint`, which a hostPath bind
//! always satisfies), checks that mounts made at the target propagate, classifies the target,
//! and does at most one repair. Repairs never leave a moment where the target shows the bare
//! directory: a replacement is mounted beneath the dead mount and only then is the dead one
//! detached.

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::ops::{MountOps, OpsError, Placement};
use mountshare_mounts::mountinfo::{MountEntry, MountTable};
use mountshare_mounts::options::{source_for, MountSpec, NfsOptions, ServerAddr};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the agent is told to behave.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerAddr,
    /// Normalized, see [`mountshare_mounts::options::normalize_export`].
    pub export: String,
    /// Absolute, without symlinks, as mountinfo shows it.
    pub target: PathBuf,
    pub options: NfsOptions,
    /// Time between probes of a healthy mount.
    pub probe_interval: Duration,
    /// A probe that has not answered by then counts as failed.
    pub probe_timeout: Duration,
    /// TCP connect timeout used to tell an unreachable server from a stale mount.
    pub connect_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Lazily unmount on exit instead of leaving the mount for the next agent to adopt.
    pub unmount_on_exit: bool,
}

impl Config {
    pub fn new(server: ServerAddr, export: String, target: PathBuf) -> Self {
        Self {
            server,
            export,
            target,
            options: NfsOptions::default(),
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            unmount_on_exit: false,
        }
    }
}

/// What the agent believes about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No tick has run yet.
    Starting,
    /// Our mount is on top and answers.
    Healthy,
    /// Our mount is on top and answers, but older NFS mounts are buried beneath it.
    Stacked,
    /// No NFS mount at the target.
    Absent,
    /// Our mount is on top but does not answer (stale, hung, erroring) while the server accepts
    /// connections.
    Unresponsive,
    /// An NFS mount of another server or export is on top.
    WrongSource,
    /// The server cannot be resolved or does not accept connections.
    Unreachable,
    /// Mounts made at the target would not reach the host (not a shared mount).
    NotShared,
    /// mountinfo could not be read or parsed.
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Healthy => "healthy",
            State::Stacked => "stacked",
            State::Absent => "absent",
            State::Unresponsive => "unresponsive",
            State::WrongSource => "wrong_source",
            State::Unreachable => "unreachable",
            State::NotShared => "not_shared",
            State::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the health endpoint reads; written only by the loop.
#[derive(Debug, Default)]
pub struct Shared {
    ready: AtomicBool,
    status: Mutex<(String, String)>,
}

impl Shared {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Not ready, in `state` for `reason`, with no reconcile loop running (an agent that must
    /// not mount, e.g. outside the host's network namespace).
    pub fn hold(&self, state: &str, reason: &str) {
        self.ready.store(false, Ordering::Release);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) =
            (state.to_owned(), reason.to_owned());
    }

    /// Set readiness and status directly (for tests of readers of this state).
    #[doc(hidden)]
    pub fn set_for_test(&self, ready: bool, state: &str, reason: &str) {
        self.ready.store(ready, Ordering::Release);
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) =
            (state.to_owned(), reason.to_owned());
    }

    /// The current state and the reason for it.
    pub fn status(&self) -> (String, String) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Why a mount is about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repair {
    /// Nothing of ours is there: mount on top of the bare directory.
    Fresh,
    /// Replace the top NFS mount (dead, or not ours).
    Replace,
}

/// Delay before looking again right after a mount was made.
const SETTLE: Duration = Duration::from_millis(500);

/// The reconcile state machine over some [`MountOps`].
pub struct Reconciler<O> {
    ops: O,
    cfg: Config,
    metrics: Metrics,
    shared: Arc<Shared>,
    state: State,
    reason: String,
    backoff: Backoff,
    next_attempt: Option<Instant>,
    addrs: Vec<SocketAddr>,
    ever_mounted: bool,
    beneath_supported: bool,
    consecutive_failures: i64,
}

impl<O: MountOps> Reconciler<O> {
    pub fn new(ops: O, cfg: Config, metrics: Metrics, seed: u64) -> Self {
        let backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max, seed);
        metrics.set_state(State::Starting.as_str());
        Self {
            ops,
            cfg,
            metrics,
            shared: Arc::new(Shared::default()),
            state: State::Starting,
            reason: String::new(),
            backoff,
            next_attempt: None,
            addrs: Vec::new(),
            ever_mounted: false,
            beneath_supported: true,
            consecutive_failures: 0,
        }
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    pub fn ops(&self) -> &O {
        &self.ops
    }

    /// When the next repair may be attempted, if one is being held back.
    pub fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    fn set(&mut self, state: State, reason: String) {
        if state != self.state {
            match state {
                State::Healthy | State::Stacked => {
                    tracing::info!(target = %self.cfg.target.display(), from = %self.state, to = %state, "{reason}")
                }
                _ => {
                    tracing::warn!(target = %self.cfg.target.display(), from = %self.state, to = %state, "{reason}")
                }
            }
            self.metrics.set_state(state.as_str());
        }
        if !matches!(state, State::Healthy | State::Stacked | State::Starting)
            && reason != self.reason
        {
            self.metrics.set_last_error(&reason);
        }
        self.state = state;
        self.reason = reason;
        if let Ok(mut s) = self.shared.status.lock() {
            *s = (state.to_string(), self.reason.clone());
        }
    }

    fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Release);
        self.metrics.mount_up.set(i64::from(ready));
    }

    fn count_failure(&mut self) {
        self.consecutive_failures += 1;
        self.metrics
            .consecutive_failures
            .set(self.consecutive_failures);
    }

    fn back_off(&mut self, now: Instant) {
        let delay = self.backoff.next_delay();
        self.next_attempt = Some(now + delay);
    }

    fn succeed(&mut self) {
        self.consecutive_failures = 0;
        self.metrics.consecutive_failures.set(0);
        self.backoff.reset();
        self.next_attempt = None;
    }

    fn expected_sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .addrs
            .iter()
            .map(|a| source_for(a.ip(), &self.cfg.export))
            .collect();
        let by_name = format!("{}:{}", self.cfg.server.host, self.cfg.export);
        if !v.contains(&by_name) {
            v.push(by_name);
        }
        v
    }

    /// Ours: an NFSv3 mount whose source is this server (by a current address, or by name) and
    /// this export. A bind mount of the directory onto itself is never ours.
    fn is_ours(&self, e: &MountEntry) -> bool {
        e.fstype == "nfs" && self.expected_sources().contains(&e.source)
    }

    /// One pass: observe, classify, repair at most once. Returns how long to wait before the next.
    pub fn tick(&mut self, now: Instant) -> Duration {
        let resolve_error = match self
            .ops
            .resolve(&self.cfg.server.host, self.cfg.server.port)
        {
            Ok(addrs) => {
                self.addrs = addrs;
                None
            }
            Err(e) => Some(e),
        };
        let table = match self.ops.mountinfo().and_then(|raw| {
            MountTable::parse(&raw).map_err(|e| OpsError::Failed {
                op: "parse mountinfo",
                message: e.to_string(),
            })
        }) {
            Ok(t) => t,
            Err(e) => {
                self.set_ready(false);
                self.set(State::Unknown, e.to_string());
                return self.cfg.probe_interval;
            }
        };
        let target = self.cfg.target.clone();

        // Propagation first: a mount that cannot reach the host is worse than none, because it
        // would make this agent look healthy while consumers see nothing.
        let attachment = table.attachment_of(&target).cloned();
        if attachment
            .as_ref()
            .and_then(MountEntry::shared_group)
            .is_none()
        {
            let kind = attachment
                .as_ref()
                .map_or("unmounted", MountEntry::propagation);
            self.set_ready(false);
            self.set(
                State::NotShared,
                format!(
                    "target {} is a {kind} mount: mounts made here will not reach the host; set \
                     mountPropagation: Bidirectional on the hostPath volume, and make the host path \
                     shared (mount --make-rshared)",
                    target.display()
                ),
            );
            return self.cfg.probe_interval;
        }

        let stack = table.stack_at(&target);
        let nfs_depth = stack.iter().filter(|e| e.is_nfs()).count();
        self.metrics.stack_depth.set(nfs_depth as i64);
        let top = stack.last().map(|e| (*e).clone());

        match top {
            Some(top) if self.is_ours(&top) => {
                let probe = self
                    .ops
                    .probe(&target, top.mount_id, self.cfg.probe_timeout);
                if let Some(took) = probe.elapsed() {
                    self.metrics.observe_probe(took);
                }
                if probe.is_ok() {
                    let adopted = !self.ever_mounted;
                    self.ever_mounted = true;
                    self.succeed();
                    self.set_ready(true);
                    let how = if adopted {
                        "adopted the existing mount of"
                    } else {
                        "mounted"
                    };
                    if nfs_depth > 1 {
                        self.set(
                            State::Stacked,
                            format!(
                                "{how} {} at {} (mount id {}); {} older NFS mount(s) remain beneath it",
                                top.source,
                                target.display(),
                                top.mount_id,
                                nfs_depth - 1
                            ),
                        );
                    } else {
                        self.set(
                            State::Healthy,
                            format!(
                                "{how} {} at {} (mount id {})",
                                top.source,
                                target.display(),
                                top.mount_id
                            ),
                        );
                    }
                    return self.cfg.probe_interval;
                }
                self.set_ready(false);
                self.unhealthy(
                    now,
                    State::Unresponsive,
                    format!(
                        "{} at {}: {}",
                        top.source,
                        target.display(),
                        probe.describe()
                    ),
                    Repair::Replace,
                    resolve_error,
                )
            }
            Some(top) if top.is_nfs() => {
                self.set_ready(false);
                let reason = format!(
                    "{} ({}) is mounted at {}, expected {}",
                    top.source,
                    top.fstype,
                    target.display(),
                    self.expected_sources().join(" or ")
                );
                self.unhealthy(
                    now,
                    State::WrongSource,
                    reason,
                    Repair::Replace,
                    resolve_error,
                )
            }
            _ => {
                self.set_ready(false);
                if !self.ever_mounted {
                    // Until the first mount, make `ls` on the bare directory fail for consumers.
                    match self.ops.protect_bare_dir(&target) {
                        Ok(true) => tracing::info!(
                            target = %target.display(),
                            "made the bare target directory mode 000 so consumers get EACCES, not an empty listing"
                        ),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(target = %target.display(), "could not protect the bare target directory: {e}")
                        }
                    }
                }
                let reason = format!("no NFS mount at {}", target.display());
                self.unhealthy(now, State::Absent, reason, Repair::Fresh, resolve_error)
            }
        }
    }

    /// Record an unhealthy observation and, unless backing off, repair it.
    fn unhealthy(
        &mut self,
        now: Instant,
        state: State,
        reason: String,
        repair: Repair,
        resolve_error: Option<OpsError>,
    ) -> Duration {
        // A probe that did not answer is a failure even when the server turns out reachable.
        let probe_failed = state == State::Unresponsive;
        if probe_failed {
            self.count_failure();
        }
        if let Some(at) = self.next_attempt.filter(|at| now < *at) {
            // Still backing off: keep the reason of the failure being waited out.
            if self.state != State::Unreachable && self.state != state {
                self.set(state, reason);
            }
            return (at - now).min(self.cfg.probe_interval);
        }
        let addr = match self.reachable_addr(resolve_error) {
            Ok(addr) => addr,
            Err(why) => {
                self.set(
                    State::Unreachable,
                    format!("{reason}; server {} unreachable: {why}", self.cfg.server),
                );
                if !probe_failed {
                    self.count_failure();
                }
                self.back_off(now);
                return self.wait(now);
            }
        };
        self.set(state, reason);
        let spec = MountSpec::new(addr, &self.cfg.export, &self.cfg.options);
        let placement = match repair {
            Repair::Fresh => Placement::Top,
            Repair::Replace if self.beneath_supported => Placement::Beneath,
            Repair::Replace => Placement::Top,
        };
        let mut result = self.ops.mount_nfs(&spec, &self.cfg.target, placement);
        let mut placed = placement;
        if let Err(OpsError::BeneathUnsupported { message }) = &result {
            tracing::warn!(
                "this kernel cannot mount beneath ({message}); mounting on top and leaving the dead mount buried beneath"
            );
            self.beneath_supported = false;
            placed = Placement::Top;
            result = self.ops.mount_nfs(&spec, &self.cfg.target, Placement::Top);
        }
        if let Err(e) = result {
            self.set(
                state,
                format!(
                    "mount {} at {} failed: {e}",
                    spec.source,
                    self.cfg.target.display()
                ),
            );
            if !probe_failed {
                self.count_failure();
            }
            self.back_off(now);
            return self.wait(now);
        }
        match repair {
            Repair::Fresh => self.metrics.mounts.inc(),
            Repair::Replace => self.metrics.remounts.inc(),
        };
        self.ever_mounted = true;
        if placed == Placement::Beneath {
            // The fresh mount is in place beneath; uncover it.
            if let Err(e) = self.ops.umount_lazy(&self.cfg.target) {
                tracing::warn!(
                    "mounted {} beneath, but detaching the old mount above it failed: {e}",
                    spec.source
                );
            }
        }
        tracing::info!(target = %self.cfg.target.display(), placement = ?placed, "mounted {} with {}", spec.source, spec.data_string());
        self.next_attempt = None;
        SETTLE
    }

    fn wait(&self, now: Instant) -> Duration {
        self.next_attempt
            .map_or(self.cfg.probe_interval, |at| {
                at.saturating_duration_since(now)
            })
            .min(self.cfg.probe_interval)
    }

    /// The first resolved address that accepts a TCP connection.
    fn reachable_addr(&self, resolve_error: Option<OpsError>) -> Result<SocketAddr, String> {
        if let Some(e) = resolve_error {
            return Err(e.to_string());
        }
        let mut last = String::from("no addresses");
        for addr in &self.addrs {
            match self.ops.connect(*addr, self.cfg.connect_timeout) {
                Ok(()) => return Ok(*addr),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// On exit: leave the mount for the next agent to adopt, or detach it if asked.
    pub fn shutdown(&mut self) {
        self.set_ready(false);
        if !self.cfg.unmount_on_exit {
            tracing::info!(target = %self.cfg.target.display(), "exiting; the mount stays in place for the next agent to adopt");
            return;
        }
        let ours_on_top = self
            .ops
            .mountinfo()
            .ok()
            .and_then(|raw| MountTable::parse(&raw).ok())
            .and_then(|t| t.top_at(&self.cfg.target).cloned())
            .is_some_and(|top| self.is_ours(&top));
        if ours_on_top {
            match self.ops.umount_lazy(&self.cfg.target) {
                Ok(()) => {
                    tracing::info!(target = %self.cfg.target.display(), "exiting; lazily unmounted")
                }
                Err(e) => {
                    tracing::warn!(target = %self.cfg.target.display(), "exiting; unmount failed: {e}")
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
