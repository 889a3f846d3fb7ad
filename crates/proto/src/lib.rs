//! The protocol layer of mountshare: XDR, ONC-RPC, TCP record marking and the NFSv3, MOUNT v3
//! and PORTMAP v2 types with their codecs. No I/O: everything here works on byte buffers, so the
//! server, the client and the tests share one implementation.

pub mod mount3;
pub mod nfs3;
pub mod portmap;
pub mod record;
pub mod rpc;
pub mod xdr;

pub use xdr::{XdrDecode, XdrEncode, XdrError, XdrReader};
