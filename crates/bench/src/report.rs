//! Bench results: one [`Phase`] per workload run, with throughput and latency, as text or JSON.

use crate::hist::Histogram;
use serde::Serialize;
use std::fmt::Write as _;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(h: &Histogram) -> Self {
        let us = |ns: u64| (ns as f64 / 10.0).round() / 100.0;
        Self {
            count: h.count(),
            p50_us: us(h.quantile_ns(0.50)),
            p99_us: us(h.quantile_ns(0.99)),
            max_us: us(h.max_ns()),
            mean_us: us(h.mean_ns()),
        }
    }

    fn text(&self) -> String {
        let f = |us: f64| {
            if us >= 1000.0 {
                format!("{:.2} ms", us / 1000.0)
            } else {
                format!("{us:.0} us")
            }
        };
        format!(
            "p50 {}  p99 {}  max {}",
            f(self.p50_us),
            f(self.p99_us),
            f(self.max_us)
        )
    }
}

/// Counts and latency of one kind of operation within a phase.
#[derive(Debug, Clone, Serialize)]
pub struct OpStats {
    pub op: &'static str,
    pub ops: u64,
    pub ops_per_s: f64,
    pub latency: Latency,
}

/// One workload's results.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `read`, `meta` or `walk`.
    pub workload: &'static str,
    /// What was read or walked.
    pub subject: String,
    /// What ended it: `done`, `bytes`, `duration`, `ops`, `entries` or `errors`.
    pub stopped_by: &'static str,
    pub elapsed_s: f64,
    /// Successful operations.
    pub ops: u64,
    pub ops_per_s: f64,
    /// Data bytes received (READ).
    pub bytes: u64,
    /// Data bytes asked for by successful READs.
    pub bytes_requested: u64,
    /// Decimal megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// READs that returned fewer bytes than asked for.
    pub short_reads: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Over all operations of the phase.
    pub latency: Latency,
    pub by_op: Vec<OpStats>,
    /// Walk: directories listed and entries seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directories: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
}

/// A whole bench run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub server: String,
    pub nfs_port: u16,
    pub mount_port: u16,
    pub export: String,
    pub connections: usize,
    pub in_flight: usize,
    pub read_size: u32,
    pub phases: Vec<Phase>,
}

impl BenchReport {
    pub fn errors(&self) -> u64 {
        self.phases.iter().map(|p| p.errors).sum()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "mountshare bench {} export {} (NFS port {}, MOUNT port {}): {} connection(s) x {} in flight, read size {}",
            self.server,
            self.export,
            self.nfs_port,
            self.mount_port,
            self.connections,
            self.in_flight,
            mountshare_units::human_bytes(u64::from(self.read_size))
        );
        for p in &self.phases {
            let _ = writeln!(out);
            match p.workload {
                "read" => {
                    let _ = writeln!(
                        out,
                        "read {}: {} in {:.2} s = {:.1} MB/s, {:.0} ops/s (stopped by {})",
                        p.subject,
                        mountshare_units::human_bytes(p.bytes),
                        p.elapsed_s,
                        p.mb_per_s,
                        p.ops_per_s,
                        p.stopped_by
                    );
                }
                "walk" => {
                    let _ = writeln!(
                        out,
                        "walk {}: {} directories, {} entries in {:.2} s = {:.0} entries/s (stopped by {})",
                        p.subject,
                        p.directories.unwrap_or(0),
                        p.entries.unwrap_or(0),
                        p.elapsed_s,
                        p.entries.unwrap_or(0) as f64 / p.elapsed_s.max(1e-9),
                        p.stopped_by
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "{} {}: {} ops in {:.2} s = {:.0} ops/s (stopped by {})",
                        p.workload, p.subject, p.ops, p.elapsed_s, p.ops_per_s, p.stopped_by
                    );
                }
            }
            for o in &p.by_op {
                let _ = writeln!(
                    out,
                    "  {:<12} {:>9} ops {:>9.0} ops/s   latency {}",
                    o.op,
                    o.ops,
                    o.ops_per_s,
                    o.latency.text()
                );
            }
            if p.errors > 0 {
                let _ = writeln!(
                    out,
                    "  errors: {} (first: {})",
                    p.errors,
                    p.first_error.as_deref().unwrap_or("?")
                );
            }
            if p.short_reads > 0 {
                let _ = writeln!(out, "  short reads: {}", p.short_reads);
            }
        }
        out
    }
}
