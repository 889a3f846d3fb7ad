//! The client's error type: transport, timeout, RPC-level refusal, undecodable replies, and the
//! protocol's own failure statuses.

use std::time::Duration;

use mountshare_proto::mount3::MountStat3;
use mountshare_proto::nfs3::NfsStat3;
use mountshare_proto::rpc::{AcceptStat, ReplyBody};
use mountshare_proto::xdr::XdrError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// No reply within the call timeout. The connection stays usable; a late reply is dropped.
    #[error("RPC call timed out after {0:?}")]
    Timeout(Duration),
    /// The connection is gone (peer closed it, a read or write failed, or a reply record was
    /// too large); every outstanding and later call fails with this.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The server answered with something other than `MSG_ACCEPTED` / `SUCCESS`.
    #[error("RPC call not successful: {0:?}")]
    Rpc(ReplyBody),
    /// The reply could not be decoded.
    #[error("undecodable reply: {0}")]
    Xdr(#[from] XdrError),
    /// An NFS procedure failed (only from the convenience helpers; the typed procedure methods
    /// return the `*Res` with its status).
    #[error("NFS error {0}")]
    Nfs(NfsStat3),
    /// MNT failed.
    #[error("MOUNT error {0:?}")]
    Mount(MountStat3),
    /// The server broke the protocol in a way a decoder cannot see, e.g. a READ that returns no
    /// data and no EOF, which would loop forever.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The error in words for a person reading a report: what the server said or did not say
    /// (`no reply within 5.00 s`, `program not available (PROG_UNAVAIL)`), rather than the
    /// variant's debugging form.
    pub fn describe(&self) -> String {
        match self {
            ClientError::Timeout(d) => {
                format!("no reply within {}", mountshare_units::human_duration(*d))
            }
            ClientError::Rpc(ReplyBody::Accepted(AcceptStat::ProgUnavail)) => {
                "program not available (PROG_UNAVAIL)".into()
            }
            ClientError::Rpc(ReplyBody::Accepted(AcceptStat::ProgMismatch { low, high })) => {
                format!("version not supported (PROG_MISMATCH: versions {low} to {high})")
            }
            ClientError::Rpc(ReplyBody::Accepted(a)) => format!("call not accepted ({a:?})"),
            ClientError::Rpc(ReplyBody::Denied(d)) => format!("call denied ({d:?})"),
            ClientError::Closed(why) => format!("connection closed ({why})"),
            other => other.to_string(),
        }
    }
}

impl From<NfsStat3> for ClientError {
    fn from(s: NfsStat3) -> Self {
        ClientError::Nfs(s)
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
