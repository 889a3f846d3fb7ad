//! One client connection: records are read in order, each call is worked on by its own thread
//! of the blocking pool, and replies go out as they complete, in any order (RFC 5531 allows it;
//! the Linux client matches replies by xid). A slow call never holds up the others.
//!
//! A call runs start to end on one blocking thread: decode, file-system work, and the hand-over
//! of its reply to the connection's [`Outbox`], which writes it there and then when the socket
//! has room (it normally has: a call costs one hand-off between threads, as in a thread-pool
//! server) and otherwise keeps it for the connection's writer task; the thread never waits on
//! the socket. A client that does not read its replies fills its outbox: the connection is then
//! not read, and its calls wait before they take a global permit. A connection with nothing
//! read, in flight or to send for the idle timeout is closed, and so is one the server's table
//! of connections closes to admit another ([`crate::conns`]).
use crate::config::Limits;
use crate::conns::{Conns, Registered};
use crate::dispatch::{self, Call, CallCtx, Peek};
use crate::export::Export;
use crate::outbox::{Outbox, Why};
use crate::procedure::Lane;
use crate::stall::{Join, Leader, SharedReply, Stalls};
use bytes::{Bytes, BytesMut};
use mountshare_proto::record::RecordDecoder;
use mountshare_proto::rpc::CallError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::tcp::OwnedReadHalf;
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
    outbox: Arc<Outbox>,
    /// This connection's share of each lane.
    data: Arc<Semaphore>,
    meta: Arc<Semaphore>,
    global: Arc<Lanes>,
    per_connection: usize,
}

/// What the server shares with each connection.
#[derive(Clone)]
pub(crate) struct Shared {
    pub export: Arc<Export>,
    pub stalls: Arc<Stalls>,
    pub conns: Arc<Conns>,
    pub limits: Limits,
    pub global: Arc<Lanes>,
}

/// Why a connection's reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed its side, or sent something that is not RPC: answer what was read.
    Left,
    /// The server stops: answer what was read.
    Stop,
    /// Nothing happened for the idle timeout.
    Idle,
    /// The table of connections closed it to admit another.
    Evicted,
    /// Its replies stopped (not read, or a write failed).
    Closed,
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    registered: Registered,
    shared: Shared,
    mut stop: watch::Receiver<bool>,
) {
    tracing::debug!(%peer, "connection opened");
    let Shared {
        export,
        stalls,
        conns,
        limits,
        global,
    } = shared;
    let link = registered.link.clone();
    let (rd, wr) = stream.into_split();
    let outbox = Outbox::new(
        wr,
        limits.per_connection_reply_bytes,
        link.clone(),
        conns.clone(),
        export.clone(),
    );
    let writer = tokio::spawn(outbox.clone().run_writer());
    let conn = Arc::new(Conn {
        peer,
        export,
        stalls,
        outbox: outbox.clone(),
        data: Arc::new(Semaphore::new(limits.per_connection_in_flight)),
        meta: Arc::new(Semaphore::new(limits.per_connection_in_flight)),
        global,
        per_connection: limits.per_connection_in_flight,
    });
    // Records read but not answered, in bytes: the only bound on calls the reader waits on, so
    // that it goes on reading while calls wait for their lane or are stuck in the backend.
    let queued_max = limits.per_connection_queued_bytes.max(limits.max_record);
    let queued = Arc::new(Semaphore::new(queued_max));
    let mut decoder = RecordDecoder::new(limits.max_record);
    let mut buf = BytesMut::new();
    let mut calls = JoinSet::new();
    let idle = limits.idle_timeout;
    let mut idle_check = link.last_active() + idle;
    let end = 'conn: loop {
        loop {
            let record = match decoder.decode(&mut buf) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "bad record; closing connection");
                    break 'conn End::Left;
                }
            };
            let arrived = Instant::now();
            link.touch();
            let size = u32::try_from(record.len().clamp(1, queued_max)).unwrap_or(u32::MAX);
            let room = tokio::select! {
                p = queued.clone().acquire_many_owned(size) => match p { Ok(p) => p, Err(_) => break 'conn End::Left },
                _ = stop.changed() => break 'conn End::Stop,
                _ = link.closing() => break 'conn End::Evicted,
            };
            calls.spawn(run(conn.clone(), record, arrived, room));
            while calls.try_join_next().is_some() {}
        }
        // A client that does not read its replies is not read either.
        tokio::select! {
            open = outbox.room() => if !open { break End::Closed },
            _ = stop.changed() => break End::Stop,
            _ = link.closing() => break End::Evicted,
        }
        // An idle connection holds no buffer: one is taken when bytes arrive.
        if buf.is_empty() && buf.capacity() > 0 {
            buf = BytesMut::new();
        }
        tokio::select! {
            n = read_some(&rd, &mut buf) => match n {
                Ok(0) => break End::Left,
                Ok(_) => link.touch(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "read failed");
                    break End::Left;
                }
            },
            _ = stop.changed() => break End::Stop,
            _ = link.closing() => break End::Evicted,
            _ = tokio::time::sleep_until(idle_check.into()) => {
                while calls.try_join_next().is_some() {}
                let quiet = link.last_active() + idle;
                let now = Instant::now();
                if now >= quiet && calls.is_empty() && outbox.is_empty() {
                    break End::Idle;
                }
                // Busy (a call in flight, a reply on its way): look again later.
                idle_check = quiet.max(now + Duration::from_secs(1));
            }
        }
    };
    match end {
        End::Idle => {
            tracing::debug!(%peer, timeout = ?idle, "closing an idle connection");
            conns.stats.closed_idle();
            outbox.close(Why::Ended);
        }
        End::Evicted => outbox.close(Why::Ended),
        End::Left | End::Stop | End::Closed => {}
    }
    // Calls already accepted still get their replies (a stuck backend call was answered at its
    // deadline and is not waited for; a closed connection's replies are dropped); then the
    // socket is shut down, even if a stuck call's thread still works for it.
    while calls.join_next().await.is_some() {}
    outbox.flushed().await;
    outbox.close(Why::Ended);
    let _ = writer.await;
    tracing::debug!(%peer, ?end, evicted = link.was_evicted(), "connection closed");
    drop(registered);
}

/// Wait until the client sent something, then read what there is into `buf` (made room for
/// only then). `WouldBlock` when the wake-up was spurious.
async fn read_some(rd: &OwnedReadHalf, buf: &mut BytesMut) -> std::io::Result<usize> {
    rd.readable().await?;
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 << 10);
    }
    rd.try_read_buf(buf)
}

/// One call, from arrival to its reply: join an equal call or lead it, wait for a lane, work
/// on a blocking thread, and answer JUKEBOX at the deadline if the backend has not answered.
async fn run(conn: Arc<Conn>, record: Bytes, arrived: Instant, _room: OwnedSemaphorePermit) {
    let peek = dispatch::peek(&record);
    let deadline = tokio::time::Instant::from_std(arrived + conn.stalls.deadline);
    let procedure = peek.key.as_ref().map(|k| k.procedure);
    let xid = peek.xid().unwrap_or_default();
    let Peek { call, lane, key } = peek;
    let is_read = lane == Lane::Data;
    let lead = match key {
        None => None,
        Some(key) => match conn.stalls.join(key) {
            Join::Lead(lead) => Some(lead),
            Join::Ready(shared) => {
                return joined(&conn, xid, procedure, &shared, arrived).await;
            }
            Join::Refuse => return late(&conn, xid, procedure, arrived).await,
            Join::Wait(mut rx) => {
                let wait = async {
                    rx.wait_for(|r| r.is_some())
                        .await
                        .ok()
                        .and_then(|r| r.clone())
                };
                let shared = tokio::time::timeout_at(deadline, wait).await.ok().flatten();
                return match shared {
                    Some(shared) => joined(&conn, xid, procedure, &shared, arrived).await,
                    None => late(&conn, xid, procedure, arrived).await,
                };
            }
        },
    };
    let (local, global) = if is_read {
        (&conn.data, &conn.global.data)
    } else {
        (&conn.meta, &conn.global.meta)
    };
    let permits = match &lead {
        Some(_) => {
            match tokio::time::timeout_at(deadline, acquire(local, &conn.outbox, global)).await {
                Ok(p) => p,
                Err(_) => return late(&conn, xid, procedure, arrived).await,
            }
        }
        None => acquire(local, &conn.outbox, global).await,
    };
    let Some(permits) = permits else { return };
    // Alone on the connection, with nothing on its way out: every permit but this call's is
    // free, and the spliced reply goes straight into the socket.
    let zero_copy = conn.data.available_permits() + usize::from(is_read) == conn.per_connection
        && conn.meta.available_permits() + usize::from(!is_read) == conn.per_connection
        && conn.outbox.is_empty();
    let ctx = CallCtx {
        peer: conn.peer,
        zero_copy,
        arrived,
    };
    let timer = lead.as_ref().map(Leader::deadline);
    let worker = conn.clone();
    let mut work = tokio::task::spawn_blocking(move || answer(call, ctx, &worker, lead));
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
                late(&conn, xid, procedure, arrived).await;
            } else {
                let _ = work.await;
            }
        }
    }
}

/// Answer JUKEBOX: the backend did not answer in time.
async fn late(conn: &Arc<Conn>, xid: u32, procedure: Option<u32>, arrived: Instant) {
    let Some(procedure) = procedure else { return };
    let export = conn.export.clone();
    conn.outbox
        .send(|| dispatch::backend_late(&export, xid, procedure, arrived))
        .await;
}

/// Answer with the result of the equal call this one joined.
async fn joined(
    conn: &Arc<Conn>,
    xid: u32,
    procedure: Option<u32>,
    shared: &SharedReply,
    arrived: Instant,
) {
    let Some(procedure) = procedure else { return };
    let export = conn.export.clone();
    conn.outbox
        .send(|| dispatch::joined(&export, xid, procedure, shared, arrived))
        .await;
}

/// This call's permit of its connection's lane, room in the connection's outbox, then a permit
/// of the server's lane: a call of a client that does not read its replies waits holding
/// nothing any other connection needs. `None` once the connection's replies have stopped.
async fn acquire(
    local: &Arc<Semaphore>,
    outbox: &Outbox,
    global: &Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let l = local.clone().acquire_owned().await.ok()?;
    if !outbox.room().await {
        return None;
    }
    let g = global.clone().acquire_owned().await.ok()?;
    Some((l, g))
}

/// Work on one call, on a blocking thread: file-system calls block (a FUSE read may take
/// seconds) and never run on the executor's threads. The reply is handed to the outbox from
/// here too, unless the call was answered JUKEBOX meanwhile: then its result goes to the retry.
fn answer(call: Result<Call, CallError>, ctx: CallCtx, conn: &Conn, lead: Option<Leader>) {
    let peer = ctx.peer;
    let xid = call.as_ref().ok().map(|c| c.header.xid);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch::dispatch(&conn.export, &ctx, call)
    }));
    let mut reply = match outcome {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(_) => {
            // A bug, not the client's doing: tell the client, keep the connection.
            tracing::error!(%peer, "call handler panicked");
            match xid {
                Some(xid) => dispatch::system_err(xid),
                None => return,
            }
        }
    };
    let answer = match lead {
        Some(lead) => lead.complete(|| reply.share()),
        None => true,
    };
    if answer {
        conn.outbox.push(reply);
    } else {
        reply.recycle(conn.export.read_buffers());
    }
}

/// PORTMAP over UDP (port 111 only): `mount.nfs` and the kernel may ask there first.
pub(crate) async fn serve_udp(
    sock: UdpSocket,
    export: Arc<Export>,
    allow: Arc<crate::allow::AllowList>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 9000];
    loop {
        let (n, peer) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r { Ok(r) => r, Err(_) => continue },
            _ = stop.changed() => break,
        };
        // Datagrams from outside the allow-list get no answer.
        if !allow.allows(peer.ip()) {
            continue;
        }
        let ctx = CallCtx {
            peer,
            zero_copy: false,
            arrived: Instant::now(),
        };
        if let Some(reply) =
            dispatch::dispatch_udp_portmap(&export, &ctx, buf.get(..n).unwrap_or_default())
        {
            let _ = sock.send_to(&reply.to_vec(), peer).await;
        }
    }
}
