//! `mountshare doctor`: say which link of the chain is broken.
//!
//! [`path`] explains from mountinfo what is mounted at a directory (stack, kind, propagation,
//! FUSE `allow_other`) and probes it under a deadline; [`server`] walks an NFSv3 server the way a
//! kernel client would (TCP, NULL, portmapper, EXPORT, MNT, GETATTR, READDIRPLUS, READ), each step
//! with a timeout and a verdict, and [`lines`] turns what it found into mount lines that work for
//! that server. Every finding that matters names the problem and the fix.

pub mod lines;
pub mod path;
pub mod report;
pub mod server;

pub use report::{Step, Verdict};
