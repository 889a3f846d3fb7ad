//! Where MOUNT v3 answers for an NFS server: on the NFS port itself (mountshare serves both on
//! one port), else where the portmapper on the server's host says (kernel nfsd, nfs-ganesha).
//! For callers that only need to mount (`bench`); `doctor server` reports each step instead.

use std::net::SocketAddr;
use std::time::Duration;

use mountshare_proto::mount3::{MOUNT_PROGRAM, MOUNT_V3};
use mountshare_proto::portmap::IPPROTO_TCP;
use mountshare_proto::rpc::{AcceptStat, ReplyBody};
use tokio::net::TcpStream;

use crate::conn::{ConnectOptions, RpcConnection};
use crate::error::ClientError;
use crate::mount::MountClient;
use crate::portmap::PortmapClient;

/// Why an address gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    #[error("no answer to a TCP connect within {}", mountshare_units::human_duration(*.0))]
    ConnectTimeout(Duration),
    #[error("connection refused")]
    Refused,
    #[error("{0}")]
    Connect(std::io::Error),
    /// Connected, but a call failed.
    #[error("{}", .0.describe())]
    Call(ClientError),
}

/// Why no MOUNT port was found. Each says what to give instead: the MOUNT port.
#[derive(Debug, thiserror::Error)]
pub enum MountPortError {
    /// The NFS address itself takes no connection.
    #[error("{nfs}: {why}")]
    Unreachable { nfs: SocketAddr, why: NoAnswer },
    /// MOUNT NULL on the NFS port failed otherwise than with "no such program".
    #[error("MOUNT NULL on {nfs}: {}", .error.describe())]
    MountNull { nfs: SocketAddr, error: ClientError },
    #[error("MOUNT is not on port {} and the portmapper on {portmapper} does not answer ({why}): give the MOUNT port", .nfs.port())]
    NoPortmapper {
        nfs: SocketAddr,
        portmapper: SocketAddr,
        why: NoAnswer,
    },
    #[error("MOUNT is not on port {} and the portmapper on {portmapper} does not know it: give the MOUNT port", .nfs.port())]
    NotRegistered {
        nfs: SocketAddr,
        portmapper: SocketAddr,
    },
}

/// A TCP connection to `addr` carrying RPC calls, each (and the connect) limited to `limit`.
async fn connect(addr: SocketAddr, limit: Duration) -> Result<RpcConnection, NoAnswer> {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => return Err(NoAnswer::ConnectTimeout(limit)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(NoAnswer::Refused)
        }
        Ok(Err(e)) => return Err(NoAnswer::Connect(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let opts = ConnectOptions {
        timeout: limit,
        ..ConnectOptions::default()
    };
    Ok(RpcConnection::from_stream(stream, opts))
}

/// The MOUNT v3 port of the NFS server at `nfs`: `nfs`'s own port when MOUNT answers there,
/// else what the portmapper at `portmap_port` of the same host has registered for MOUNT v3 over
/// TCP. Each connect and call is limited to `limit`.
pub async fn find_mount_port(
    nfs: SocketAddr,
    portmap_port: u16,
    limit: Duration,
) -> Result<u16, MountPortError> {
    let conn = connect(nfs, limit)
        .await
        .map_err(|why| MountPortError::Unreachable { nfs, why })?;
    match MountClient::new(conn).null().await {
        Ok(()) => return Ok(nfs.port()),
        Err(ClientError::Rpc(ReplyBody::Accepted(AcceptStat::ProgUnavail))) => {}
        Err(error) => return Err(MountPortError::MountNull { nfs, error }),
    }
    let portmapper = SocketAddr::new(nfs.ip(), portmap_port);
    let no_answer = |why| MountPortError::NoPortmapper {
        nfs,
        portmapper,
        why,
    };
    let pm = PortmapClient::new(connect(portmapper, limit).await.map_err(no_answer)?);
    pm.null().await.map_err(|e| no_answer(NoAnswer::Call(e)))?;
    let port = pm
        .getport(MOUNT_PROGRAM, MOUNT_V3, IPPROTO_TCP)
        .await
        .map_err(|e| no_answer(NoAnswer::Call(e)))?;
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(MountPortError::NotRegistered { nfs, portmapper }),
    }
}
