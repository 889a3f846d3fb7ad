//! `find_mount_port` against small RPC responders on 127.0.0.1: MOUNT on the NFS port, MOUNT
//! only through a portmapper, a portmapper that does not know MOUNT, and nothing listening.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use mountshare_client::proto::mount3::MOUNT_PROGRAM;
use mountshare_client::proto::portmap::{pmapproc, PMAP_PROGRAM};
use mountshare_client::proto::record::{frame, RecordDecoder};
use mountshare_client::proto::rpc::{
    decode_call, encode_reply_header, AcceptStat, ReplyBody, RpcCall,
};
use mountshare_client::proto::xdr::to_bytes;
use mountshare_client::{find_mount_port, MountPortError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(10);

/// Answers every call on a fresh port with `answer(call)`: a reply body and its results.
async fn responder(answer: fn(&RpcCall) -> (ReplyBody, Vec<u8>)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut dec = RecordDecoder::new(1 << 16);
                let mut buf = BytesMut::new();
                loop {
                    while let Some(rec) = dec.decode(&mut buf).expect("client framing") {
                        let (call, _) = decode_call(&rec).expect("client call header");
                        let (body, results) = answer(&call);
                        let mut out = BytesMut::new();
                        encode_reply_header(&mut out, call.xid, &body);
                        out.put_slice(&results);
                        if s.write_all(&frame(&out)).await.is_err() {
                            return;
                        }
                    }
                    if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An NFS server whose MOUNT is elsewhere (nfs-ganesha, kernel nfsd): no such program here.
fn mount_elsewhere(_: &RpcCall) -> (ReplyBody, Vec<u8>) {
    (ReplyBody::Accepted(AcceptStat::ProgUnavail), Vec::new())
}

fn portmapper_with(call: &RpcCall, mount_port: u32) -> (ReplyBody, Vec<u8>) {
    assert_eq!(call.prog, PMAP_PROGRAM);
    match call.procedure {
        pmapproc::GETPORT => (ReplyBody::SUCCESS, to_bytes(&mount_port).to_vec()),
        _ => (ReplyBody::SUCCESS, Vec::new()),
    }
}

#[tokio::test]
async fn mount_on_the_nfs_port_is_that_port() {
    let nfs = responder(|call| {
        assert_eq!(call.prog, MOUNT_PROGRAM);
        (ReplyBody::SUCCESS, Vec::new())
    })
    .await;
    assert_eq!(find_mount_port(nfs, 1, LIMIT).await.unwrap(), nfs.port());
}

#[tokio::test]
async fn mount_elsewhere_is_where_the_portmapper_says() {
    let nfs = responder(mount_elsewhere).await;
    let pm = responder(|call| portmapper_with(call, 20048)).await;
    assert_eq!(find_mount_port(nfs, pm.port(), LIMIT).await.unwrap(), 20048);
}

#[tokio::test]
async fn a_portmapper_without_mount_says_to_give_the_port() {
    let nfs = responder(mount_elsewhere).await;
    let pm = responder(|call| portmapper_with(call, 0)).await;
    let err = find_mount_port(nfs, pm.port(), LIMIT).await.unwrap_err();
    assert!(
        matches!(err, MountPortError::NotRegistered { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "MOUNT is not on port {} and the portmapper on 127.0.0.1:{} does not know it: give the MOUNT port",
            nfs.port(),
            pm.port()
        )
    );
}

#[tokio::test]
async fn no_portmapper_says_to_give_the_port() {
    let nfs = responder(mount_elsewhere).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = find_mount_port(nfs, closed_port, LIMIT).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MOUNT is not on port {} and the portmapper on 127.0.0.1:{closed_port} does not answer (connection refused): give the MOUNT port",
            nfs.port()
        )
    );
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let err = find_mount_port(addr, 1, LIMIT).await.unwrap_err();
    assert_eq!(err.to_string(), format!("{addr}: connection refused"));
}
