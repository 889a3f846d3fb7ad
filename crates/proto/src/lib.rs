//! The protocol layer of mountshare: XDR, ONC-RPC, TCP record marking and the NFSv3, MOUNT v3
//! and PORTMAP v2 types with their codecs. No I/O: everything here works on byte buffers, so the
//! server, the client and the tests share one implementation.

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

pub mod mount3;
pub mod nfs3;
pub mod portmap;
pub mod record;
pub mod rpc;
pub mod xdr;

pub use xdr::{XdrDecode, XdrEncode, XdrError, XdrReader};
