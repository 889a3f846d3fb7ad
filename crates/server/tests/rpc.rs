//! RPC-level behaviour (RFC 5531) and hostile input: every malformed call gets the reply the RFC
//! prescribes or the connection is closed, and the server keeps serving everyone else.
mod common;

use bytes::{BufMut, BytesMut};
use common::*;
use mountshare_client::proto::mount3::MOUNT_PROGRAM;
use mountshare_client::proto::nfs3::*;
use mountshare_client::proto::portmap::*;
use mountshare_client::proto::rpc::*;
use mountshare_client::{PortmapClient, RpcConnection};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (tempfile::TempDir, tempfile::TempDir, TestServer) {
    let (t, o) = sample_tree();
    let srv = TestServer::start(t.path()).await;
    (t, o, srv)
}

#[tokio::test]
async fn unknown_program_version_and_procedure() {
    let (_t, _o, srv) = setup().await;
    let c = RpcConnection::connect(srv.addr).await.unwrap();
    let body = |r: (ReplyBody, bytes::Bytes)| r.0;
    assert_eq!(
        body(c.call(123456, 1, 0, &[]).await.unwrap()),
        ReplyBody::Accepted(AcceptStat::ProgUnavail)
    );
    assert_eq!(
        body(c.call(NFS_PROGRAM, 4, 0, &[]).await.unwrap()),
        ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 })
    );
    assert_eq!(
        body(c.call(NFS_PROGRAM, 2, 0, &[]).await.unwrap()),
        ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 })
    );
    assert_eq!(
        body(c.call(MOUNT_PROGRAM, 2, 0, &[]).await.unwrap()),
        ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 1, high: 3 })
    );
    assert_eq!(
        body(c.call(PMAP_PROGRAM, 3, 0, &[]).await.unwrap()),
        ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 2, high: 2 }),
        "rpcbind v3/v4 clients fall back to v2 on this"
    );
    assert_eq!(
        body(c.call(NFS_PROGRAM, 3, 22, &[]).await.unwrap()),
        ReplyBody::Accepted(AcceptStat::ProcUnavail)
    );
    assert_eq!(
        body(c.call(MOUNT_PROGRAM, 3, 6, &[]).await.unwrap()),
        ReplyBody::Accepted(AcceptStat::ProcUnavail)
    );
}

#[tokio::test]
async fn garbage_arguments() {
    let (_t, _o, srv) = setup().await;
    let c = RpcConnection::connect(srv.addr).await.unwrap();
    let garbage = ReplyBody::Accepted(AcceptStat::GarbageArgs);
    // A handle length past the cap, a truncated READ, a WRITE whose data is cut short.
    assert_eq!(
        c.call(NFS_PROGRAM, 3, proc3::GETATTR, &[0, 0, 0, 65])
            .await
            .unwrap()
            .0,
        garbage
    );
    assert_eq!(
        c.call(NFS_PROGRAM, 3, proc3::READ, &[0, 0, 0, 4, 1, 2, 3, 4])
            .await
            .unwrap()
            .0,
        garbage
    );
    assert_eq!(
        c.call(NFS_PROGRAM, 3, proc3::LOOKUP, &[0xff; 8])
            .await
            .unwrap()
            .0,
        garbage
    );
    assert_eq!(
        c.call(MOUNT_PROGRAM, 3, 1, &[0, 0, 0x10, 0])
            .await
            .unwrap()
            .0,
        garbage
    );
    assert_eq!(
        c.call(PMAP_PROGRAM, 2, pmapproc::GETPORT, &[0; 4])
            .await
            .unwrap()
            .0,
        garbage
    );
    // The connection is still good.
    c.call(NFS_PROGRAM, 3, 0, &[]).await.unwrap();
}

fn call_header(xid: u32, rpcvers: u32, prog: u32, vers: u32, procedure: u32) -> BytesMut {
    let mut b = BytesMut::new();
    for v in [xid, 0, rpcvers, prog, vers, procedure] {
        b.put_u32(v);
    }
    b
}

#[tokio::test]
async fn wrong_rpc_version_and_bad_credentials() {
    let (_t, _o, srv) = setup().await;
    let c = RpcConnection::connect(srv.addr).await.unwrap();
    let xid = c.next_xid();
    let msg = call_header(xid, 3, NFS_PROGRAM, 3, 0);
    let reply = c.call_raw_record(xid, &msg).await.unwrap();
    let (rx, body, _) = decode_reply_header(&reply).unwrap();
    assert_eq!(rx, xid);
    assert_eq!(
        body,
        ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 })
    );

    // A credential longer than the 400 bytes RFC 5531 allows.
    let xid = c.next_xid();
    let mut msg = call_header(xid, 2, NFS_PROGRAM, 3, 0);
    msg.put_u32(AUTH_SYS);
    msg.put_u32(100_000);
    let reply = c.call_raw_record(xid, &msg).await.unwrap();
    assert_eq!(
        decode_reply_header(&reply).unwrap().1,
        ReplyBody::Denied(RejectStat::AuthError(AuthStat::BadCred))
    );

    // A flavor this server does not speak.
    let cred = OpaqueAuth {
        flavor: RPCSEC_GSS,
        body: vec![0; 8],
    };
    let (body, _) = c
        .call_with_cred(NFS_PROGRAM, 3, 1, &cred, &[])
        .await
        .unwrap();
    assert_eq!(
        body,
        ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak))
    );
    c.call(NFS_PROGRAM, 3, 0, &[]).await.unwrap();
}

#[tokio::test]
async fn an_oversized_record_closes_only_that_connection() {
    let (_t, _o, srv) = setup().await;
    let mut raw = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    // Claims a 2 GiB fragment: refused from the header, before anything is buffered.
    raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4])
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let n = raw.read(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "connection closed without a reply");
    // Everyone else is still served.
    let m = srv.mount().await;
    m.nfs.getattr_of(&m.root).await.unwrap();
}

#[tokio::test]
async fn records_in_many_fragments_are_reassembled() {
    let (_t, _o, srv) = setup().await;
    let mut raw = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut call = call_header(7, 2, NFS_PROGRAM, 3, 0);
    call.put_u32(AUTH_NONE);
    call.put_u32(0);
    call.put_u32(AUTH_NONE);
    call.put_u32(0);
    // Send the 40-byte NULL call as four fragments of 10 bytes, one byte at a time.
    let mut wire = Vec::new();
    for (i, chunk) in call.chunks(10).enumerate() {
        let last = if i == 3 { 0x8000_0000u32 } else { 0 };
        wire.extend_from_slice(&(last | chunk.len() as u32).to_be_bytes());
        wire.extend_from_slice(chunk);
    }
    for b in wire {
        raw.write_all(&[b]).await.unwrap();
    }
    let mut hdr = [0u8; 4];
    raw.read_exact(&mut hdr).await.unwrap();
    let len = (u32::from_be_bytes(hdr) & 0x7fff_ffff) as usize;
    let mut reply = vec![0u8; len];
    raw.read_exact(&mut reply).await.unwrap();
    let (xid, body, _) = decode_reply_header(&reply).unwrap();
    assert_eq!((xid, body), (7, ReplyBody::SUCCESS));
}

#[tokio::test]
async fn portmap_answers_for_this_port_only() {
    let (_t, _o, srv) = setup().await;
    let pm = PortmapClient::connect(srv.addr).await.unwrap();
    pm.null().await.unwrap();
    let port = u32::from(srv.addr.port());
    assert_eq!(pm.getport(NFS_PROGRAM, 3, IPPROTO_TCP).await.unwrap(), port);
    assert_eq!(
        pm.getport(MOUNT_PROGRAM, 3, IPPROTO_TCP).await.unwrap(),
        port
    );
    assert_eq!(
        pm.getport(MOUNT_PROGRAM, 1, IPPROTO_TCP).await.unwrap(),
        port
    );
    assert_eq!(
        pm.getport(NFS_PROGRAM, 3, IPPROTO_UDP).await.unwrap(),
        0,
        "no UDP"
    );
    assert_eq!(pm.getport(NFS_PROGRAM, 4, IPPROTO_TCP).await.unwrap(), 0);
    assert_eq!(
        pm.getport(100021, 4, IPPROTO_TCP).await.unwrap(),
        0,
        "no lock manager"
    );
    let dump = pm.dump().await.unwrap();
    assert!(dump
        .0
        .iter()
        .any(|m| m.prog == NFS_PROGRAM && m.vers == 3 && m.port == port));
    assert!(dump.0.iter().all(|m| m.prot == IPPROTO_TCP));
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary bytes after a valid call header, for every procedure of every program: the
    /// server answers (or closes the connection) and keeps serving.
    #[test]
    fn arbitrary_arguments_never_break_the_server(
        prog in prop_oneof![Just(NFS_PROGRAM), Just(MOUNT_PROGRAM), Just(PMAP_PROGRAM)],
        vers in 1u32..4,
        procedure in 0u32..24,
        args in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (t, _o) = sample_tree();
        runtime().block_on(async {
            let srv = TestServer::start(t.path()).await;
            let c = RpcConnection::connect(srv.addr).await.unwrap();
            let _ = c.call(prog, vers, procedure, &args).await;
            let m = srv.mount().await;
            m.nfs.getattr_of(&m.root).await.unwrap();
        });
    }

    /// Arbitrary records, framed or not: the server never dies.
    #[test]
    fn arbitrary_records_never_break_the_server(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        framed in any::<bool>(),
    ) {
        let (t, _o) = sample_tree();
        runtime().block_on(async {
            let srv = TestServer::start(t.path()).await;
            let c = RpcConnection::connect(srv.addr).await.unwrap();
            let _ = if framed { c.send_raw_record(&bytes).await } else { c.send_raw(bytes.clone()).await };
            let m = srv.mount().await;
            m.nfs.getattr_of(&m.root).await.unwrap();
        });
    }
}
