//! One client connection: records are read in order, each call is worked on by its own thread
//! of the blocking pool, and replies go out as they complete, in any order (RFC 5531 allows it;
//! the Linux client matches replies by xid). A slow call never holds up the others.
//!
//! A call runs start to end on one blocking thread: decode, file-system work, and the write of
//! the reply. A reply normally fits the socket buffer and is written without waiting, so a call
//! costs one hand-off between threads, as in a thread-pool server.
use crate::config::Limits;
use crate::dispatch::{self, CallCtx};
use crate::export::Export;
use crate::reply::{Framed, Tail};
use crate::stall::{Join, Leader, Stalls};
use bytes::{Bytes, BytesMut};
use mountshare_proto::record::RecordDecoder;
use rustix::net::SendFlags;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The server-wide bounds on calls being worked on, one per lane: READs, and everything else.
/// A READ stuck in the backend can never hold a permit a GETATTR needs.
pub(crate) struct Lanes {
    pub data: Arc<Semaphore>,
    pub meta: Arc<Semaphore>,
}

impl Lanes {
    pub(crate) fn new(each: usize) -> Lanes {
        Lanes {
            data: Arc::new(Semaphore::new(each)),
            meta: Arc::new(Semaphore::new(each)),
        }
    }
}

/// What every call of one connection shares.
struct Conn {
    peer: SocketAddr,
    export: Arc<Export>,
    stalls: Arc<Stalls>,
    wr: Arc<std::sync::Mutex<OwnedWriteHalf>>,
    /// This connection's share of each lane.
    data: Arc<Semaphore>,
    meta: Arc<Semaphore>,
    global: Arc<Lanes>,
    per_connection: usize,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    export: Arc<Export>,
    stalls: Arc<Stalls>,
    limits: Limits,
    global: Arc<Lanes>,
    mut stop: watch::Receiver<bool>,
    _connection_permit: OwnedSemaphorePermit,
) {
    tracing::debug!(%peer, "connection opened");
    let (mut rd, wr) = stream.into_split();
    let conn = Arc::new(Conn {
        peer,
        export,
        stalls,
        wr: Arc::new(std::sync::Mutex::new(wr)),
        data: Arc::new(Semaphore::new(limits.per_connection_in_flight)),
        meta: Arc::new(Semaphore::new(limits.per_connection_in_flight)),
        global,
        per_connection: limits.per_connection_in_flight,
    });
    // Records read but not answered, in bytes: the only bound the reader waits on, so that it
    // goes on reading while calls wait for their lane or are stuck in the backend.
    let queued_max = limits.per_connection_queued_bytes.max(limits.max_record);
    let queued = Arc::new(Semaphore::new(queued_max));
    let mut decoder = RecordDecoder::new(limits.max_record);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut calls = JoinSet::new();
    'conn: loop {
        loop {
            let record = match decoder.decode(&mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "bad record; closing connection");
                    break 'conn;
                }
            };
            let arrived = Instant::now();
            let size = u32::try_from(record.len().clamp(1, queued_max)).unwrap_or(u32::MAX);
            let room = tokio::select! {
                p = queued.clone().acquire_many_owned(size) => match p { Ok(p) => p, Err(_) => break 'conn },
                _ = stop.changed() => break 'conn,
            };
            calls.spawn(run(conn.clone(), record, arrived, room));
            while calls.try_join_next().is_some() {}
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break;
                }
            },
            _ = stop.changed() => break,
        }
    }
    // Calls already accepted still get their replies (a stuck backend call was answered at its
    // deadline and is not waited for); then the socket is shut down, even if a stuck call's
    // thread still holds the write half.
    while calls.join_next().await.is_some() {}
    if let Ok(w) = conn.wr.lock() {
        let sock: &TcpStream = w.as_ref();
        let _ = rustix::net::shutdown(sock, rustix::net::Shutdown::ReadWrite);
    }
    tracing::debug!(%peer, "connection closed");
}

/// One call, from arrival to its reply: join an equal call or lead it, wait for a lane, work
/// on a blocking thread, and answer JUKEBOX at the deadline if the backend has not answered.
async fn run(conn: Arc<Conn>, record: Bytes, arrived: Instant, _room: OwnedSemaphorePermit) {
    let peek = dispatch::peek(&record);
    let deadline = tokio::time::Instant::from_std(arrived + conn.stalls.deadline);
    let procedure = peek.key.as_ref().map(|k| k.procedure);
    let lead = match peek.key {
        None => None,
        Some(key) => match conn.stalls.join(key) {
            Join::Lead(lead) => Some(lead),
            Join::Ready(shared) => {
                return joined(&conn, peek.xid, procedure, &shared, arrived).await
            }
            Join::Refuse => return late(&conn, peek.xid, procedure, arrived).await,
            Join::Wait(mut rx) => {
                let wait = async {
                    rx.wait_for(|r| r.is_some())
                        .await
                        .ok()
                        .and_then(|r| r.clone())
                };
                let shared = tokio::time::timeout_at(deadline, wait).await.ok().flatten();
                return match shared {
                    Some(shared) => joined(&conn, peek.xid, procedure, &shared, arrived).await,
                    None => late(&conn, peek.xid, procedure, arrived).await,
                };
            }
        },
    };
    let (local, global) = if peek.is_read {
        (&conn.data, &conn.global.data)
    } else {
        (&conn.meta, &conn.global.meta)
    };
    let permits = match &lead {
        Some(_) => match tokio::time::timeout_at(deadline, acquire(local, global)).await {
            Ok(p) => p,
            Err(_) => return late(&conn, peek.xid, procedure, arrived).await,
        },
        None => acquire(local, global).await,
    };
    let Some(permits) = permits else { return };
    // Alone on the connection: every permit but this call's is free.
    let zero_copy = conn.data.available_permits() + usize::from(peek.is_read)
        == conn.per_connection
        && conn.meta.available_permits() + usize::from(!peek.is_read) == conn.per_connection;
    let ctx = CallCtx {
        peer: conn.peer,
        zero_copy,
        arrived,
    };
    let timer = lead.as_ref().map(Leader::deadline);
    let worker = conn.clone();
    let mut work = tokio::task::spawn_blocking(move || call(record, ctx, &worker, lead));
    let Some(timer) = timer else {
        let _ = work.await;
        return;
    };
    tokio::select! {
        _ = &mut work => {}
        _ = tokio::time::sleep_until(deadline) => {
            if timer.expire() {
                // The backend call goes on, on its thread, holding no permit; its result is
                // kept for the client's retry.
                drop(permits);
                late(&conn, peek.xid, procedure, arrived).await;
            } else {
                let _ = work.await;
            }
        }
    }
}

/// Answer JUKEBOX: the backend did not answer in time.
async fn late(conn: &Arc<Conn>, xid: u32, procedure: Option<u32>, arrived: Instant) {
    let Some(procedure) = procedure else { return };
    send(
        conn,
        dispatch::backend_late(&conn.export, xid, procedure, arrived),
    )
    .await;
}

/// Answer with the result of the equal call this one joined.
async fn joined(
    conn: &Arc<Conn>,
    xid: u32,
    procedure: Option<u32>,
    shared: &[u8],
    arrived: Instant,
) {
    let Some(procedure) = procedure else { return };
    send(
        conn,
        dispatch::joined(&conn.export, xid, procedure, shared, arrived),
    )
    .await;
}

/// Write a reply that was not made on a blocking thread (a JUKEBOX, a joined call's result).
async fn send(conn: &Arc<Conn>, mut reply: Framed) {
    let conn = conn.clone();
    let _ = tokio::task::spawn_blocking(move || {
        write_locked(&conn, &mut reply);
        reply.recycle(conn.export.read_buffers());
    })
    .await;
}

async fn acquire(
    local: &Arc<Semaphore>,
    global: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let l = local.clone().acquire_owned().await.ok()?;
    let g = global.clone().acquire_owned().await.ok()?;
    Some((l, g))
}

/// Work on one call, on a blocking thread: file-system calls block (a FUSE read may take
/// seconds) and never run on the executor's threads. The reply is written from here too,
/// unless the call was answered JUKEBOX meanwhile: then its result goes to the retry.
fn call(record: Bytes, ctx: CallCtx, conn: &Conn, lead: Option<Leader>) {
    let peer = ctx.peer;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch::dispatch(&conn.export, &ctx, &record)
    }));
    let mut reply = match outcome {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(_) => {
            // A bug, not the client's doing: tell the client, keep the connection.
            tracing::error!(%peer, "call handler panicked");
            match dispatch::system_err(&record) {
                Some(r) => r,
                None => return,
            }
        }
    };
    let answer = match lead {
        Some(lead) => lead.complete(|| reply.share()),
        None => true,
    };
    if answer {
        write_locked(conn, &mut reply);
    }
    reply.recycle(conn.export.read_buffers());
}

/// Write `reply` under the connection's write lock (one reply at a time on the socket; others
/// wait here, on their own threads).
fn write_locked(conn: &Conn, reply: &mut Framed) {
    let w = conn.wr.lock().unwrap_or_else(|e| e.into_inner());
    let sock: &TcpStream = w.as_ref();
    if let Err(e) = write_reply(sock, reply) {
        tracing::debug!(peer = %conn.peer, error = %e, "write failed; closing the connection");
        // The reader sees the connection end too, and stops taking calls.
        let _ = rustix::net::shutdown(sock, rustix::net::Shutdown::ReadWrite);
    }
}

/// How long a reply may make no progress (a client that stopped reading) before the connection
/// is given up.
const WRITE_STALL: std::time::Duration = std::time::Duration::from_secs(120);

/// Write a whole reply: head, READ data (copied from a buffer or spliced from a pipe), padding.
/// The socket is corked (MSG_MORE) between the parts, so they leave as full segments. When the
/// socket is full, this thread waits in `poll(2)`: the kernel wakes it as soon as there is room.
fn write_reply(sock: &TcpStream, reply: &mut Framed) -> std::io::Result<()> {
    let pad = reply.pad();
    let has_tail = reply.tail_len() > 0;
    send_all(sock, &reply.head, has_tail)?;
    match &mut reply.tail {
        Some(Tail::Buf(b)) => send_all(sock, b.data(), !pad.is_empty())?,
        Some(Tail::Bytes(b)) => send_all(sock, b, !pad.is_empty())?,
        Some(Tail::Pipe(p)) => p.send(sock, !pad.is_empty(), || wait_writable(sock))?,
        None => {}
    }
    send_all(sock, pad, false)
}

fn send_all(sock: &TcpStream, mut buf: &[u8], more: bool) -> std::io::Result<()> {
    let flags = if more {
        SendFlags::MORE
    } else {
        SendFlags::empty()
    } | SendFlags::NOSIGNAL;
    while !buf.is_empty() {
        match rustix::net::send(sock, buf, flags) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::AGAIN) => wait_writable(sock)?,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn wait_writable(sock: &TcpStream) -> std::io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(sock, PollFlags::OUT)];
    match poll(&mut fds, WRITE_STALL.as_millis() as i32) {
        Ok(0) => Err(std::io::ErrorKind::TimedOut.into()),
        Ok(_) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// PORTMAP over UDP (port 111 only): `mount.nfs` and the kernel may ask there first.
pub(crate) async fn serve_udp(
    sock: UdpSocket,
    export: Arc<Export>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 9000];
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
            _ = stop.changed() => break,
        };
        let ctx = CallCtx {
            peer,
            zero_copy: false,
            arrived: Instant::now(),
        };
        if let Some(reply) = dispatch::dispatch_udp_portmap(&export, &ctx, &buf[..n]) {
            let _ = sock.send_to(&reply.to_vec(), peer).await;
        }
    }
}
