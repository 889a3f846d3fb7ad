//! One client connection: records are read in order, each call is worked on by its own thread
//! of the blocking pool, and replies go out as they complete, in any order (RFC 5531 allows it;
//! the Linux client matches replies by xid). A slow call never holds up the others.
//!
//! A call runs start to end on one blocking thread: decode, file-system work, and the write of
//! the reply. A reply normally fits the socket buffer and is written without waiting, so a call
//! costs one hand-off between threads, as in a thread-pool server.
use crate::dispatch::{self, CallCtx, Framed, Tail};
use crate::export::Export;
use crate::server::Limits;
use crate::splice;
use bytes::BytesMut;
use mountshare_proto::record::RecordDecoder;
use rustix::net::SendFlags;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{watch, Mutex, OwnedSemaphorePermit, Semaphore};
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
    let wr = Arc::new(Mutex::new(wr));
    let local = Arc::new(Semaphore::new(limits.per_connection_in_flight));
    let mut decoder = RecordDecoder::new(limits.max_record);
    let mut buf = BytesMut::with_capacity(64 << 10);
    let mut calls = JoinSet::new();
    let runtime = tokio::runtime::Handle::current();
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
            let ctx = CallCtx { peer };
            let (export, wr, rt) = (export.clone(), wr.clone(), runtime.clone());
            calls.spawn_blocking(move || call(record, ctx, &export, &wr, &rt, permits));
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
    // Calls already accepted still get their replies.
    while calls.join_next().await.is_some() {}
    let _ = wr.lock().await.shutdown().await;
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
/// seconds) and never run on the executor's threads.
fn call(
    record: bytes::Bytes,
    ctx: CallCtx,
    export: &Export,
    wr: &Mutex<OwnedWriteHalf>,
    runtime: &tokio::runtime::Handle,
    permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    let peer = ctx.peer;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch::dispatch(export, &ctx, &record)
    }));
    let reply = match outcome {
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
    // Completes at once when the socket buffer has room; waits (this thread only) otherwise.
    let mut reply = reply;
    let written = runtime.block_on(async {
        let w = wr.lock().await;
        write_reply(w.as_ref(), &mut reply).await
    });
    if let Err(e) = written {
        tracing::debug!(%peer, error = %e, "write failed");
    }
    reply.recycle(export);
    drop(permits);
}

/// Write a whole reply: head, READ data (copied from a buffer or spliced from a pipe), padding.
/// The socket is corked (MSG_MORE) between the parts, so they leave as full segments.
async fn write_reply(sock: &TcpStream, reply: &mut Framed) -> std::io::Result<()> {
    let pad = reply.pad();
    let has_tail = reply.tail_len() > 0;
    send_all(sock, &reply.head, has_tail).await?;
    match &mut reply.tail {
        Some(Tail::Buf(b)) => send_all(sock, b.data(), !pad.is_empty()).await?,
        Some(Tail::Pipe(p)) => {
            while p.pending > 0 {
                sock.writable().await?;
                match sock.try_io(Interest::WRITABLE, || {
                    splice::drain_into(p, sock, !pad.is_empty())
                }) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        None => {}
    }
    send_all(sock, pad, false).await
}

async fn send_all(sock: &TcpStream, mut buf: &[u8], more: bool) -> std::io::Result<()> {
    let flags = if more {
        SendFlags::MORE
    } else {
        SendFlags::empty()
    } | SendFlags::NOSIGNAL;
    while !buf.is_empty() {
        sock.writable().await?;
        match sock.try_io(Interest::WRITABLE, || {
            Ok(rustix::net::send(sock, buf, flags)?)
        }) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
        let ctx = CallCtx { peer };
        if let Some(reply) = dispatch::dispatch_udp_portmap(&export, &ctx, &buf[..n]) {
            let _ = sock.send_to(&reply.to_vec(), peer).await;
        }
    }
}
