//! Clients that are hostile or broken do not lock anyone else out: idle connections past the
//! connection limit, or past one address's cap (a client is not locked out by its own address's
//! idle connections either), clients that send READs and never read the replies, clients outside
//! the allow-list, and connections left idle.
//!
//! Clients take their source address from 127.0.0.0/8 (every address there is the loopback),
//! so that the server sees several clients.
mod common;

use bytes::BytesMut;
use common::*;
use mountshare_client::proto::nfs3::*;
use mountshare_client::proto::record::{finish_record, start_record, RecordDecoder};
use mountshare_client::proto::rpc::{decode_reply_header, encode_call_header, ReplyBody};
use mountshare_client::proto::xdr::{decode, XdrEncode};
use mountshare_client::{auth_sys_root, ConnectOptions, Mounted, RpcConnection};
use mountshare_fs::fault::{Fault, Op};
use mountshare_server::{AllowList, Cidr};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any step may take before the test fails instead of hanging. Generous: the machine
/// may be busy; nothing here is a measure of speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    connect_with_buffer(from, to, None).await
}

async fn connect_with_buffer(from: &str, to: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        sock.set_recv_buffer_size(size).unwrap();
    }
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    sock.connect(to).await.unwrap()
}

/// An RPC client over a connection from `from`.
async fn client_from(from: &str, to: SocketAddr) -> RpcConnection {
    RpcConnection::from_stream(connect_from(from, to).await, ConnectOptions::default())
}

/// Whether the server closed `stream` (end of stream, or a reset) within [`PATIENCE`].
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut b = [0u8; 512];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// `f`, or a failure after [`PATIENCE`] instead of a hang.
async fn patiently<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {PATIENCE:?}"))
}

/// Mount from 127.0.0.1 and READ `name`: what a legitimate client does.
async fn read_as_new_client(addr: SocketAddr, name: &str) -> Vec<u8> {
    patiently("a new client's READ", async {
        let m = Mounted::connect(addr, "/").await.unwrap();
        let fh = m.nfs.lookup_path(&m.root, name).await.unwrap();
        m.nfs.read_all(&fh).await.unwrap()
    })
    .await
}

/// Wait until `cond` holds, or fail after [`PATIENCE`].
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    patiently(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Open files are counted against RLIMIT_NOFILE: the test holds both ends of each connection.
fn raise_descriptor_limit(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < need) {
        let want = limit.maximum.map_or(need, |m| m.min(need));
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: limit.maximum,
            },
        )
        .unwrap();
    }
    let now = getrlimit(Resource::Nofile).current;
    assert!(
        now.is_none_or(|c| c >= need),
        "this test needs {need} open files; the hard limit allows {now:?}"
    );
}

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("small.txt"), b"small file").unwrap();
    let big: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.path().join("big.bin"), big).unwrap();
    t
}

/// A READ call as one record, by hand: a client that does not wait for its replies.
fn read_record(xid: u32, file: &NfsFh3, offset: u64, count: u32) -> BytesMut {
    let mut buf = BytesMut::new();
    let start = start_record(&mut buf);
    encode_call_header(
        &mut buf,
        xid,
        NFS_PROGRAM,
        NFS_V3,
        proc3::READ,
        &auth_sys_root(),
    );
    Read3Args {
        file: file.clone(),
        offset,
        count,
    }
    .encode(&mut buf);
    finish_record(&mut buf, start);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_limit_never_lock_a_new_client_out() {
    const IDLE: usize = 1_100;
    raise_descriptor_limit(2 * IDLE as u64 + 512);
    let t = tree();
    let srv = TestServer::start(t.path()).await;
    // 1,100 connections that send nothing, from 20 addresses (each within the per-address cap).
    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let from = format!("127.0.1.{}", 1 + i % 20);
        idle.push(connect_from(&from, srv.addr).await);
    }
    until("the server takes every connection", || {
        let s = srv.observer.connections();
        s.open + s.evicted as usize >= IDLE
    })
    .await;
    assert_eq!(
        read_as_new_client(srv.addr, "small.txt").await,
        b"small file"
    );
    let s = srv.observer.connections();
    assert!(s.open <= 1024, "{s:?}");
    assert!(
        s.evicted as usize > IDLE - 1024,
        "idle connections were closed to make room: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_replies_hold_nothing_others_need() {
    let t = tree();
    let srv = TestServer::start(t.path()).await;
    let m = Mounted::connect(srv.addr, "/").await.unwrap();
    let big = m.nfs.lookup_path(&m.root, "big.bin").await.unwrap();
    // Six connections each send 64 READs of 1 MiB (other ranges each, so that none joins
    // another) and never read a byte of the replies.
    let mut attackers = Vec::new();
    for c in 0..6u64 {
        let mut s = connect_with_buffer("127.0.0.9", srv.addr, Some(4096)).await;
        let mut calls = BytesMut::new();
        for i in 0..64u64 {
            let n = c * 64 + i;
            calls.extend_from_slice(&read_record(n as u32 + 1, &big, n * 4096, 1 << 20));
        }
        s.write_all(&calls).await.unwrap();
        attackers.push(s);
    }
    // Let the attack land: the server works on the READs and their replies pile up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        read_as_new_client(srv.addr, "small.txt").await,
        b"small file"
    );
    // And the client already connected is still served too, a large READ included.
    let small = m.nfs.lookup_path(&m.root, "small.txt").await.unwrap();
    assert_eq!(m.nfs.read_all(&small).await.unwrap(), b"small file");
    let data = patiently(
        "a 1 MiB READ",
        m.nfs.read(&Read3Args {
            file: big,
            offset: 0,
            count: 1 << 20,
        }),
    )
    .await
    .unwrap()
    .ok()
    .unwrap()
    .data;
    assert_eq!(data.len(), 1 << 20);
    drop(attackers);
}

/// Read every reply record from `s` until `n` have come.
async fn read_replies(s: &mut TcpStream, n: usize) -> Vec<bytes::Bytes> {
    let mut decoder = RecordDecoder::new(4 << 20);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    patiently("the replies", async {
        while out.len() < n {
            while let Some(r) = decoder.decode(&mut buf).unwrap() {
                out.push(r);
            }
            if out.len() >= n {
                break;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0, "the server closed");
        }
    })
    .await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_to_read_gets_every_reply_intact() {
    let t = tree();
    let content = std::fs::read(t.path().join("big.bin")).unwrap();
    let srv = TestServer::start(t.path()).await;
    let m = Mounted::connect(srv.addr, "/").await.unwrap();
    let big = m.nfs.lookup_path(&m.root, "big.bin").await.unwrap();
    let mut s = connect_with_buffer("127.0.0.1", srv.addr, Some(4096)).await;
    let mut calls = BytesMut::new();
    for i in 0..48u64 {
        calls.extend_from_slice(&read_record(i as u32 + 1, &big, i * 65_537, 1 << 20));
    }
    s.write_all(&calls).await.unwrap();
    // The replies wait (more than the connection's queue holds), then the client reads them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replies = read_replies(&mut s, 48).await;
    let mut seen = std::collections::HashSet::new();
    for r in replies {
        let (xid, body, at) = decode_reply_header(&r).unwrap();
        assert_eq!(body, ReplyBody::SUCCESS);
        let ok = decode::<Read3Res>(&r[at..]).unwrap().ok().unwrap();
        // A READ may be short (NFS allows it; a spliced one from an unaligned offset is), never
        // wrong, and never empty before the end of the file.
        let offset = u64::from(xid - 1) * 65_537;
        let want = &content[offset as usize..][..ok.data.len()];
        assert!(!ok.data.is_empty() && ok.data.len() <= 1 << 20);
        assert!(ok.data == want, "READ at {offset}: wrong bytes");
        assert!(seen.insert(xid), "one reply per call");
    }
    assert_eq!(seen.len(), 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_outside_the_allow_list_is_refused_one_inside_is_served() {
    let t = tree();
    let only: Cidr = "127.0.0.1/32".parse().unwrap();
    let srv = TestServer::start_with(
        std::sync::Arc::new(mountshare_fs::LocalFs::open(t.path()).unwrap()),
        |c| c.allow = AllowList::only(vec![only]),
    )
    .await;
    let mut outside = connect_from("127.0.0.2", srv.addr).await;
    assert!(
        closed_by_server(&mut outside).await,
        "the connection from outside is closed"
    );
    let conn = client_from("127.0.0.2", srv.addr).await;
    assert!(
        Mounted::on(conn, "/").await.is_err(),
        "a client outside cannot mount"
    );
    assert_eq!(srv.observer.connections().refused_allow_list, 2);
    let inside = Mounted::on(client_from("127.0.0.1", srv.addr).await, "/")
        .await
        .unwrap();
    let fh = inside
        .nfs
        .lookup_path(&inside.root, "small.txt")
        .await
        .unwrap();
    assert_eq!(inside.nfs.read_all(&fh).await.unwrap(), b"small file");
    assert_eq!(srv.observer.connections().refused_allow_list, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_a_clients_own_address_never_lock_it_out() {
    const IDLE: usize = 1_100;
    raise_descriptor_limit(2 * IDLE as u64 + 512);
    let t = tree();
    let srv = TestServer::start(t.path()).await;
    // 1,100 connections that send nothing, all from 127.0.0.1: the address a new client below
    // connects from, far past the per-address cap (128).
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(connect_from("127.0.0.1", srv.addr).await);
    }
    until("the server takes every connection", || {
        let s = srv.observer.connections();
        s.open + s.evicted_per_address as usize >= IDLE
    })
    .await;
    // A new connection from 127.0.0.1 mounts and READs a real file, with the right bytes.
    assert_eq!(
        read_as_new_client(srv.addr, "small.txt").await,
        b"small file"
    );
    let s = srv.observer.connections();
    assert!(s.open <= 128, "one address holds at most its cap: {s:?}");
    assert!(
        s.evicted_per_address as usize > IDLE - 128,
        "the address's idle connections were closed to make room: {s:?}"
    );
    assert_eq!(
        s.evicted, 0,
        "no other address's connection was closed: {s:?}"
    );
    // The first idle connection, the least recently active, is one of those closed.
    assert!(
        closed_by_server(&mut idle[0]).await,
        "the oldest idle connection was closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_cap_an_address_loses_its_least_recently_active_connection() {
    let t = tree();
    let srv = TestServer::start_with(
        std::sync::Arc::new(mountshare_fs::LocalFs::open(t.path()).unwrap()),
        |c| c.limits.max_connections_per_address = 4,
    )
    .await;
    let null = |c: &RpcConnection| {
        let c = c.clone();
        async move {
            patiently("NULL", c.call(NFS_PROGRAM, NFS_V3, proc3::NULL, &[]))
                .await
                .unwrap();
        }
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        let c = client_from("127.0.0.3", srv.addr).await;
        null(&c).await;
        held.push(c);
    }
    // Activity after the first round, later by the server's millisecond clock: every
    // connection but the second (neither the oldest nor the newest) is active again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in [0, 2, 3] {
        null(&held[i]).await;
    }
    // A fifth from the same address is admitted and mounts and reads; the second is closed.
    let fifth = patiently(
        "a fifth connection's MNT",
        Mounted::on(client_from("127.0.0.3", srv.addr).await, "/"),
    )
    .await
    .unwrap();
    let fh = fifth
        .nfs
        .lookup_path(&fifth.root, "small.txt")
        .await
        .unwrap();
    assert_eq!(fifth.nfs.read_all(&fh).await.unwrap(), b"small file");
    patiently(
        "the least recently active connection's close",
        held[1].closed(),
    )
    .await;
    assert!(
        held[1]
            .call(NFS_PROGRAM, NFS_V3, proc3::NULL, &[])
            .await
            .is_err(),
        "the closed connection answers nothing"
    );
    // The active ones keep working.
    for i in [0, 2, 3] {
        assert!(!held[i].is_closed(), "connection {i} was closed");
        null(&held[i]).await;
    }
    let s = srv.observer.connections();
    assert_eq!((s.evicted_per_address, s.evicted), (1, 0), "{s:?}");
    // Other addresses are not affected.
    assert_eq!(
        read_as_new_client(srv.addr, "small.txt").await,
        b"small file"
    );
    // Below the cap nothing is closed: once one of the four goes, the address has room again.
    drop(held.pop());
    until("the server sees the connection end", || {
        srv.observer.connections().open <= 3
    })
    .await;
    let again = client_from("127.0.0.3", srv.addr).await;
    null(&again).await;
    null(&held[0]).await;
    null(&held[2]).await;
    assert_eq!(fifth.nfs.read_all(&fh).await.unwrap(), b"small file");
    assert_eq!(srv.observer.connections().evicted_per_address, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_clients_reconnect() {
    let t = tree();
    std::fs::write(t.path().join("slow.txt"), b"slow bytes").unwrap();
    let fs = faulty(t.path());
    fs.offer_open_files(false);
    fs.inject(
        Op::Read,
        Fault::hold().on(|p| p.file_name().starts_with(b"slow")),
    );
    let _release = fs.releaser();
    let idle = Duration::from_millis(500);
    let srv = TestServer::start_with(fs.clone(), |c| {
        c.limits.idle_timeout = idle;
        c.backend_timeout = Duration::from_secs(600);
    })
    .await;

    // A mounted client that goes quiet is closed.
    let m = srv.mount().await;
    let fh = m.nfs.lookup_path(&m.root, "small.txt").await.unwrap();
    patiently("the idle connection's close", m.nfs.conn().closed()).await;
    assert!(srv.observer.connections().closed_idle >= 1);
    // Its client connects again, mounts nothing (handles outlive connections) and reads.
    let again = mountshare_client::NfsClient::connect(srv.addr)
        .await
        .unwrap();
    assert_eq!(again.read_all(&fh).await.unwrap(), b"small file");

    // A connection with a call in flight is not idle, however long the call takes.
    let slow = again.lookup_path(&m.root, "slow.txt").await.unwrap();
    let reading = {
        let again = again.clone();
        tokio::spawn(async move { again.read_all(&slow).await })
    };
    wait_held(&fs, Op::Read, 1).await;
    tokio::time::sleep(idle * 4).await;
    assert!(!again.conn().is_closed(), "closed with a call in flight");
    fs.release(Op::Read);
    assert_eq!(
        patiently("the slow READ", reading).await.unwrap().unwrap(),
        b"slow bytes"
    );
}
