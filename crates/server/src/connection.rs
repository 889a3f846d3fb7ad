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
use bytes::BytesMut;
use mountshare_proto::record::RecordDecoder;
use rustix::net::SendFlags;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    export: Arc<Export>,
    limits: Limits,
    global: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    _connection_permit: OwnedSemaphorePermit,
) {
    tracing::debug!(%peer, "connection opened");
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(std::sync::Mutex::new(wr));
    let local = Arc::new(Semaphore::new(limits.per_connection_in_flight));
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
            // Take both permits before reading on: when either bound is reached, the connection
            // is not read and TCP pushes back on the client.
            let permits = tokio::select! {
                p = acquire(&local, &global) => match p { Some(p) => p, None => break 'conn },
                _ = stop.changed() => break 'conn,
            };
            // Alone on the connection: every permit but this call's is free.
            let zero_copy = local.available_permits() + 1 == limits.per_connection_in_flight;
            let ctx = CallCtx { peer, zero_copy };
            let (export, wr) = (export.clone(), wr.clone());
            calls.spawn_blocking(move || call(record, ctx, &export, &wr, permits));
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
    // Calls already accepted still get their replies; then the write half, dropped with the
    // last reference, shuts the socket down.
    while calls.join_next().await.is_some() {}
    drop(wr);
    tracing::debug!(%peer, "connection closed");
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
/// seconds) and never run on the executor's threads. The reply is written from here too.
fn call(
    record: bytes::Bytes,
    ctx: CallCtx,
    export: &Export,
    wr: &std::sync::Mutex<OwnedWriteHalf>,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    let peer = ctx.peer;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch::dispatch(export, &ctx, &record)
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
    // One reply at a time on the socket; others wait here, on their own threads.
    let w = wr.lock().unwrap_or_else(|e| e.into_inner());
    let sock: &TcpStream = w.as_ref();
    if let Err(e) = write_reply(sock, &mut reply) {
        tracing::debug!(%peer, error = %e, "write failed; closing the connection");
        // The reader sees the connection end too, and stops taking calls.
        let _ = rustix::net::shutdown(sock, rustix::net::Shutdown::ReadWrite);
    }
    drop(w);
    reply.recycle(export.read_buffers());
    drop(permits);
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
        };
        if let Some(reply) = dispatch::dispatch_udp_portmap(&export, &ctx, &buf[..n]) {
            let _ = sock.send_to(&reply.to_vec(), peer).await;
        }
    }
}
