//! Client mechanics against small in-test servers: xid matching with out-of-order replies,
//! timeouts, connection loss, record limits, the in-flight bound, and the typed helpers
//! (MNT, lookup_path, read_all, readdirplus paging) against a fake NFS export.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mountshare_client::proto::mount3::{
    mountproc3, DirPath, MountRes3, MountRes3Ok, MOUNT_PROGRAM,
};
use mountshare_client::proto::nfs3::*;
use mountshare_client::proto::record::{frame, RecordDecoder};
use mountshare_client::proto::rpc::{
    decode_call, encode_reply_header, AcceptStat, ReplyBody, RpcCall, AUTH_SYS,
};
use mountshare_client::proto::xdr::{decode, to_bytes, XdrEncode};
use mountshare_client::{
    ClientError, ConnectOptions, Mounted, NfsClient, PortmapClient, RpcConnection,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

/// The server end of an in-memory connection.
struct Server {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
    dec: RecordDecoder,
    buf: BytesMut,
}

impl Server {
    /// The next call and its argument bytes; `None` when the client has gone.
    async fn next_call(&mut self) -> Option<(RpcCall, Bytes)> {
        loop {
            if let Some(rec) = self.dec.decode(&mut self.buf).expect("client framing") {
                let (call, off) = decode_call(&rec).expect("client call header");
                return Some((call, rec.slice(off..)));
            }
            if self.rd.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    async fn reply(&mut self, xid: u32, body: ReplyBody, results: &[u8]) {
        let mut out = BytesMut::new();
        encode_reply_header(&mut out, xid, &body);
        out.put_slice(results);
        self.wr.write_all(&frame(&out)).await.expect("write reply");
    }
}

fn pair(opts: ConnectOptions) -> (RpcConnection, Server) {
    let (c, s) = tokio::io::duplex(1 << 22);
    let (rd, wr) = tokio::io::split(s);
    let server = Server {
        rd,
        wr,
        dec: RecordDecoder::new(1 << 22),
        buf: BytesMut::new(),
    };
    (RpcConnection::from_stream(c, opts), server)
}

fn opts(timeout_ms: u64, max_in_flight: usize) -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_millis(timeout_ms),
        max_in_flight,
        ..ConnectOptions::default()
    }
}

#[tokio::test]
async fn replies_out_of_order_reach_their_callers() {
    let (conn, mut server) = pair(opts(5000, 16));
    let calls: Vec<_> = (0u32..8)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call(1, 1, 1, &to_bytes(&i)).await })
        })
        .collect();
    let mut got = Vec::new();
    for _ in 0..8 {
        got.push(server.next_call().await.unwrap());
    }
    // Answer last-come first, each with ten times its argument.
    for (call, args) in got.iter().rev() {
        let n: u32 = decode(args).unwrap();
        server
            .reply(call.xid, ReplyBody::SUCCESS, &to_bytes(&(n * 10)))
            .await;
    }
    for (i, h) in calls.into_iter().enumerate() {
        let (body, res) = h.await.unwrap().unwrap();
        assert_eq!(body, ReplyBody::SUCCESS);
        assert_eq!(decode::<u32>(&res).unwrap(), i as u32 * 10);
    }
}

#[tokio::test]
async fn timeout_fails_the_call_and_a_late_reply_is_dropped() {
    let (conn, mut server) = pair(opts(200, 4));
    let first = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(1, 1, 1, &[]).await }
    });
    let (late, _) = server.next_call().await.unwrap();
    match first.await.unwrap() {
        Err(ClientError::Timeout(d)) => assert_eq!(d, Duration::from_millis(200)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The connection still works, and the stale reply goes to nobody.
    let second = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(1, 1, 2, &[]).await }
    });
    let (call, _) = server.next_call().await.unwrap();
    server
        .reply(late.xid, ReplyBody::SUCCESS, &to_bytes(&1u32))
        .await;
    server
        .reply(call.xid, ReplyBody::SUCCESS, &to_bytes(&2u32))
        .await;
    let (_, res) = second.await.unwrap().unwrap();
    assert_eq!(decode::<u32>(&res).unwrap(), 2);
}

#[tokio::test]
async fn connection_close_fails_every_pending_call() {
    let (conn, mut server) = pair(opts(10_000, 8));
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call(1, 1, 1, &[]).await })
        })
        .collect();
    for _ in 0..3 {
        server.next_call().await.unwrap();
    }
    drop(server);
    for h in calls {
        let r = tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .expect("pending call fails promptly, not at its timeout")
            .unwrap();
        assert!(matches!(r, Err(ClientError::Closed(_))), "{r:?}");
    }
    conn.closed().await;
    assert!(conn.is_closed());
    assert!(matches!(
        conn.call(1, 1, 1, &[]).await,
        Err(ClientError::Closed(_))
    ));
}

#[tokio::test]
async fn oversized_reply_record_closes_the_connection() {
    let (conn, mut server) = pair(ConnectOptions {
        max_record: 1024,
        ..opts(5000, 4)
    });
    let call = tokio::spawn({
        let conn = conn.clone();
        async move { conn.call(1, 1, 1, &[]).await }
    });
    server.next_call().await.unwrap();
    // A header announcing 1 MiB: refused before the bytes arrive.
    server
        .wr
        .write_all(&(0x8000_0000u32 | (1 << 20)).to_be_bytes())
        .await
        .unwrap();
    match call.await.unwrap() {
        Err(ClientError::Closed(reason)) => assert!(reason.contains("exceeds"), "{reason}"),
        other => panic!("expected Closed, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_in_flight_are_bounded() {
    let (conn, mut server) = pair(opts(5000, 2));
    let calls: Vec<_> = (0u32..5)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call(1, 1, i, &[]).await })
        })
        .collect();
    let a = server.next_call().await.unwrap().0;
    let b = server.next_call().await.unwrap().0;
    // No third call may arrive while two are unanswered.
    let third = tokio::time::timeout(Duration::from_millis(200), server.next_call()).await;
    assert!(third.is_err(), "a third call was sent with two in flight");
    server.reply(a.xid, ReplyBody::SUCCESS, &[]).await;
    server.reply(b.xid, ReplyBody::SUCCESS, &[]).await;
    for _ in 0..3 {
        let c = server.next_call().await.unwrap().0;
        server.reply(c.xid, ReplyBody::SUCCESS, &[]).await;
    }
    for h in calls {
        h.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn unsuccessful_replies_and_bad_results_are_errors() {
    let (conn, mut server) = pair(opts(5000, 4));
    let nfs = NfsClient::new(conn.clone());
    let task = tokio::spawn(async move {
        let null = nfs.null().await;
        let getattr = nfs
            .getattr(&GetAttr3Args {
                object: NfsFh3 { data: vec![1] },
            })
            .await;
        (null, getattr)
    });
    let (c, _) = server.next_call().await.unwrap();
    assert_eq!((c.prog, c.vers, c.procedure), (NFS_PROGRAM, NFS_V3, 0));
    server
        .reply(c.xid, ReplyBody::Accepted(AcceptStat::ProgUnavail), &[])
        .await;
    let (c, _) = server.next_call().await.unwrap();
    // NFS3_OK followed by a truncated fattr3.
    server
        .reply(c.xid, ReplyBody::SUCCESS, &[0, 0, 0, 0, 0, 0])
        .await;
    let (null, getattr) = task.await.unwrap();
    assert!(matches!(
        null,
        Err(ClientError::Rpc(ReplyBody::Accepted(
            AcceptStat::ProgUnavail
        )))
    ));
    assert!(matches!(getattr, Err(ClientError::Xdr(_))), "{getattr:?}");
}

#[tokio::test]
async fn raw_records_reach_the_server_verbatim() {
    let (conn, mut server) = pair(opts(5000, 4));
    let xid = conn.next_xid();
    let mut msg = BytesMut::new();
    msg.put_u32(xid);
    msg.put_u32(0); // CALL
    msg.put_u32(3); // rpcvers 3: the server must answer RPC_MISMATCH
    let task = tokio::spawn({
        let conn = conn.clone();
        let msg = msg.clone();
        async move { conn.call_raw_record(xid, &msg).await }
    });
    let rec = loop {
        if let Some(r) = server.dec.decode(&mut server.buf).unwrap() {
            break r;
        }
        server.rd.read_buf(&mut server.buf).await.unwrap();
    };
    assert_eq!(&rec[..], &msg[..]);
    let mut out = BytesMut::new();
    encode_reply_header(
        &mut out,
        xid,
        &ReplyBody::Denied(mountshare_client::proto::rpc::RejectStat::RpcMismatch {
            low: 2,
            high: 2,
        }),
    );
    server.wr.write_all(&frame(&out)).await.unwrap();
    assert_eq!(task.await.unwrap().unwrap(), out.freeze());
}

// ---------------------------------------------------------------------------------------------
// A fake export: "/" with a directory "a" holding a file "b", and 1000 files in the root
// listed 37 per READDIRPLUS.

const ROOT: &[u8] = &[1];
const DIR_A: &[u8] = &[2];
const FILE_B: &[u8] = &[3];
const ENTRIES: usize = 1000;
const PAGE: usize = 37;
const VERF: [u8; 8] = [7; 8];

fn content() -> Vec<u8> {
    (0..2_500_000u32).map(|i| (i % 251) as u8).collect()
}

fn attrs(ftype: Ftype3, size: u64) -> Fattr3 {
    Fattr3 {
        ftype,
        mode: 0o755,
        nlink: 1,
        uid: 0,
        gid: 0,
        size,
        used: size,
        rdev: SpecData3::default(),
        fsid: 1,
        fileid: size,
        atime: NfsTime3::default(),
        mtime: NfsTime3::default(),
        ctime: NfsTime3::default(),
    }
}

fn fake_export(call: &RpcCall, args: &[u8], data: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    match (call.prog, call.procedure) {
        (MOUNT_PROGRAM, mountproc3::MNT) => {
            let path: DirPath = decode(args).unwrap();
            assert_eq!(path.0, b"/");
            MountRes3::Ok(MountRes3Ok {
                fhandle: ROOT.to_vec(),
                auth_flavors: vec![AUTH_SYS],
            })
            .encode(&mut out);
        }
        (NFS_PROGRAM, proc3::LOOKUP) => {
            let a: Lookup3Args = decode(args).unwrap();
            let found = match (&a.what.dir.data[..], &a.what.name[..]) {
                (ROOT, b"a") => Some(DIR_A),
                (DIR_A, b"b") => Some(FILE_B),
                _ => None,
            };
            match found {
                Some(fh) => Lookup3Res::Ok(Lookup3ResOk {
                    object: NfsFh3 { data: fh.to_vec() },
                    ..Default::default()
                }),
                None => Lookup3Res::Fail(NfsStat3::NoEnt, Lookup3ResFail::default()),
            }
            .encode(&mut out);
        }
        (NFS_PROGRAM, proc3::READ) => {
            let a: Read3Args = decode(args).unwrap();
            assert_eq!(a.file.data, FILE_B);
            let start = (a.offset as usize).min(data.len());
            let end = start.saturating_add(a.count as usize).min(data.len());
            encode_read3_resok(
                &mut out,
                &PostOpAttr(Some(attrs(Ftype3::Reg, data.len() as u64))),
                end == data.len(),
                &data[start..end],
            );
        }
        (NFS_PROGRAM, proc3::READDIRPLUS) => {
            let a: ReadDirPlus3Args = decode(args).unwrap();
            if a.cookie != 0 && a.cookieverf != VERF {
                ReadDirPlus3Res::Fail(NfsStat3::BadCookie, Default::default()).encode(&mut out);
                return out;
            }
            let start = a.cookie as usize;
            let end = (start + PAGE).min(ENTRIES);
            let entries = (start..end)
                .map(|i| EntryPlus3 {
                    fileid: i as u64 + 100,
                    name: format!("f{i}").into_bytes(),
                    cookie: i as u64 + 1,
                    name_attributes: PostOpAttr(Some(attrs(Ftype3::Reg, 0))),
                    name_handle: PostOpFh3(None),
                })
                .collect();
            ReadDirPlus3Res::Ok(ReadDirPlus3ResOk {
                dir_attributes: PostOpAttr(None),
                cookieverf: VERF,
                reply: DirListPlus3 {
                    entries,
                    eof: end == ENTRIES,
                },
            })
            .encode(&mut out);
        }
        other => panic!("fake export got an unexpected call {other:?}"),
    }
    out
}

/// Serve the fake export over TCP on 127.0.0.1, answering calls concurrently.
async fn spawn_fake_export() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let data = std::sync::Arc::new(content());
        while let Ok((sock, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let (mut rd, mut wr) = sock.into_split();
                let mut dec = RecordDecoder::new(1 << 20);
                let mut buf = BytesMut::new();
                loop {
                    while let Some(rec) = dec.decode(&mut buf).unwrap() {
                        let (call, off) = decode_call(&rec).unwrap();
                        let sys = call.cred.as_auth_sys().unwrap().unwrap();
                        assert_eq!((sys.uid, sys.gid), (0, 0));
                        assert_eq!(sys.machinename, b"mountshare");
                        let results = fake_export(&call, &rec[off..], &data);
                        let mut out = BytesMut::new();
                        encode_reply_header(&mut out, call.xid, &ReplyBody::SUCCESS);
                        out.put_slice(&results);
                        wr.write_all(&frame(&out)).await.unwrap();
                    }
                    match rd.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn mount_lookup_read_and_list_a_fake_export() {
    let addr = spawn_fake_export().await;
    let m = Mounted::connect(addr, "/").await.unwrap();
    assert_eq!(m.root.data, ROOT);
    assert_eq!(m.auth_flavors, vec![AUTH_SYS]);

    let fh = m.nfs.lookup_path(&m.root, "/a//b").await.unwrap();
    assert_eq!(fh.data, FILE_B);
    assert!(matches!(
        m.nfs.lookup_path(&m.root, "a/missing").await,
        Err(ClientError::Nfs(NfsStat3::NoEnt))
    ));

    assert_eq!(m.nfs.read_all(&fh).await.unwrap(), content());
    assert_eq!(m.nfs.read_all_chunked(&fh, 4096).await.unwrap(), content());

    let mut pager = m.nfs.readdirplus_pager(&m.root);
    let mut names = Vec::new();
    while let Some(e) = pager.next_entry().await.unwrap() {
        names.push(String::from_utf8(e.name).unwrap());
    }
    assert_eq!(pager.calls(), ENTRIES.div_ceil(PAGE));
    assert_eq!(pager.cookieverf(), VERF);
    let expect: Vec<_> = (0..ENTRIES).map(|i| format!("f{i}")).collect();
    assert_eq!(names, expect);
    assert_eq!(m.nfs.readdirplus_all(&m.root).await.unwrap().len(), ENTRIES);
}

#[tokio::test]
async fn concurrent_reads_share_one_tcp_connection() {
    let addr = spawn_fake_export().await;
    let nfs = NfsClient::connect(addr).await.unwrap();
    let fh = NfsFh3 {
        data: FILE_B.to_vec(),
    };
    let data = content();
    let reads: Vec<_> = (0..16u64)
        .map(|i| {
            let nfs = nfs.clone();
            let fh = fh.clone();
            tokio::spawn(async move {
                let args = Read3Args {
                    file: fh,
                    offset: i * 65536,
                    count: 65536,
                };
                (i, nfs.read(&args).await.unwrap().ok().unwrap().data)
            })
        })
        .collect();
    for r in reads {
        let (i, got) = r.await.unwrap();
        let start = i as usize * 65536;
        assert_eq!(got, data[start..start + 65536]);
    }
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_an_io_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = PortmapClient::connect(addr).await.unwrap_err();
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
}
