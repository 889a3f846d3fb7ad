//! `mountshare bench`: a load generator for any NFSv3 server, built on the in-repo client.
//!
//! Workloads ([`workload`]): sequential READ of files with a read size, requests in flight per
//! connection and connections; a GETATTR/LOOKUP mix; a full READDIRPLUS walk. Each reports
//! bytes, operations, MB/s, ops/s and latency percentiles from a bounded [`hist::Histogram`].

pub mod hist;
pub mod report;
pub mod workload;

pub use hist::Histogram;
pub use report::{BenchReport, Phase};
