//! The mountshare NFSv3 server: connections, RPC dispatch, and the NFS, MOUNT and PORTMAP
//! handlers over a [`mountshare_fs::Backend`].
//!
//! Only [`Server`] and its configuration are public; docs/ARCHITECTURE.md maps the modules.

// Client input is hostile and must never panic the server: no unwrap, expect, panic or
// unchecked index in the code that runs (tests may). An exception is allowed where it stands,
// on the smallest item, with the reason it cannot fail.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod allow;
mod auth;
mod buffers;
mod config;
mod connection;
mod conns;
mod dircache;
mod dispatch;
mod error;
mod export;
mod handle;
mod metrics;
mod mount;
mod nfs;
mod observe;
mod order;
mod outbox;
mod portmap;
mod procedure;
mod reply;
mod resolve;
mod server;
mod splice;
mod stall;
mod throttle;

pub use allow::{AllowList, Cidr, CidrError};
pub use config::{
    CacheLimits, HealthConfig, Limits, ServerConfig, DEFAULT_BACKEND_TIMEOUT, DEFAULT_FSID,
    DEFAULT_IDLE_TIMEOUT,
};
pub use conns::ConnectionStats;
pub use dircache::listing_times;
pub use observe::Observer;
pub use server::{Server, ServerError};
pub use stall::StallStats;

/// The file-handle format, for tests that forge handles as a hostile client could. Not an API.
#[doc(hidden)]
pub use handle::{component_hash, FileHandle};
