//! The node agent behind `mountshare attach`: keeps an NFS export kernel-mounted at a host path,
//! knows from mountinfo whether it really is, probes it without hanging, and heals it in place.

pub mod agent;
pub mod backoff;
#[cfg(test)]
mod fake;
pub mod health;
pub mod metrics;
pub mod netns;
pub mod ops;
pub mod real;
pub mod reconcile;
