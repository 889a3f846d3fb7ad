//! One RPC connection over a byte stream with TCP record marking: many calls in flight at once,
//! replies matched to callers by xid.
//!
//! A reader task reassembles reply records (each bounded by `max_record`) and hands each to the
//! caller waiting on its xid through a oneshot channel. A writer task owns the write half, so a
//! caller that is cancelled mid-call can never leave half a record on the wire. Calls in flight
//! are bounded by a semaphore, and each call has a timeout. When the stream ends or fails, every
//! outstanding call fails with [`ClientError::Closed`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mountshare_proto::record::{finish_record, frame, start_record, RecordDecoder};
use mountshare_proto::rpc::{
    decode_reply_header, encode_call_header, AuthSys, OpaqueAuth, ReplyBody,
};
use mountshare_proto::xdr::{decode, XdrDecode, XdrEncode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::error::{ClientError, Result};

/// How a connection behaves.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Limit on one call, from waiting for an in-flight slot to receiving the reply.
    pub timeout: Duration,
    /// Calls outstanding at once; more wait for a slot.
    pub max_in_flight: usize,
    /// Largest reply record accepted; a larger one closes the connection.
    pub max_record: usize,
    /// Credential sent with every call (see [`RpcConnection::call_with_cred`] to override).
    pub cred: OpaqueAuth,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            max_in_flight: 64,
            // A 1 MiB READ plus headers, with room for a large READDIRPLUS.
            max_record: 4 << 20,
            cred: auth_sys_root(),
        }
    }
}

/// The default credential: AUTH_SYS, uid 0, gid 0, machinename "mountshare".
pub fn auth_sys_root() -> OpaqueAuth {
    OpaqueAuth::sys(&AuthSys {
        stamp: 0,
        machinename: b"mountshare".to_vec(),
        uid: 0,
        gid: 0,
        gids: Vec::new(),
    })
}

type ReplyTx = oneshot::Sender<Result<Bytes>>;

/// Callers waiting for replies, shared by the connection handle and its two tasks.
struct Pending {
    state: Mutex<PendingState>,
    closed_tx: watch::Sender<bool>,
}

#[derive(Default)]
struct PendingState {
    calls: HashMap<u32, ReplyTx>,
    closed: Option<String>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        // A panic while holding this lock cannot leave the map inconsistent; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, xid: u32, tx: ReplyTx) -> Result<()> {
        let mut st = self.lock();
        if let Some(reason) = &st.closed {
            return Err(ClientError::Closed(reason.clone()));
        }
        if st.calls.contains_key(&xid) {
            return Err(ClientError::Protocol(format!(
                "xid {xid:#x} already in flight"
            )));
        }
        st.calls.insert(xid, tx);
        Ok(())
    }

    fn deliver(&self, record: Bytes) {
        let Some(xid) = record
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        else {
            tracing::debug!(
                len = record.len(),
                "reply record too short for an xid; dropped"
            );
            return;
        };
        match self.lock().calls.remove(&xid) {
            // The caller may have given up meanwhile; nothing to do then.
            Some(tx) => drop(tx.send(Ok(record))),
            None => tracing::debug!(xid, "reply for no outstanding call (timed out?); dropped"),
        }
    }

    fn fail_all(&self, reason: String) {
        let calls = {
            let mut st = self.lock();
            st.closed.get_or_insert(reason.clone());
            std::mem::take(&mut st.calls)
        };
        for (_, tx) in calls {
            let _ = tx.send(Err(ClientError::Closed(reason.clone())));
        }
        self.closed_tx.send_replace(true);
    }

    fn closed_reason(&self) -> String {
        self.lock()
            .closed
            .clone()
            .unwrap_or_else(|| "connection closed".to_owned())
    }
}

/// Removes a caller's entry when its call ends, whether by reply, error, timeout or drop.
struct PendingGuard<'a> {
    pending: &'a Pending,
    xid: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.pending.lock().calls.remove(&self.xid);
    }
}

struct Shared {
    pending: Arc<Pending>,
    writer_tx: mpsc::Sender<Bytes>,
    inflight: Semaphore,
    next_xid: AtomicU32,
    opts: ConnectOptions,
    closed_rx: watch::Receiver<bool>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Shared {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A cheaply cloneable handle to one RPC connection. The connection's tasks stop when the last
/// handle is dropped.
#[derive(Clone)]
pub struct RpcConnection {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RpcConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConnection")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl RpcConnection {
    /// Connect over TCP with default options.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Self> {
        Self::connect_with(addr, ConnectOptions::default()).await
    }

    /// Connect over TCP.
    pub async fn connect_with(addr: impl ToSocketAddrs, opts: ConnectOptions) -> Result<Self> {
        let stream = tokio::time::timeout(opts.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout(opts.timeout))??;
        stream.set_nodelay(true)?;
        Ok(Self::from_stream(stream, opts))
    }

    /// Run the protocol over any byte stream (a TCP stream, or an in-memory pipe in tests).
    /// Must be called within a tokio runtime.
    pub fn from_stream<S>(stream: S, opts: ConnectOptions) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        let (closed_tx, closed_rx) = watch::channel(false);
        let pending = Arc::new(Pending {
            state: Mutex::new(PendingState::default()),
            closed_tx,
        });
        let max_in_flight = opts.max_in_flight.max(1);
        let (writer_tx, writer_rx) = mpsc::channel(max_in_flight);
        let reader = tokio::spawn(read_loop(rd, pending.clone(), opts.max_record));
        let writer = tokio::spawn(write_loop(wr, writer_rx, pending.clone()));
        Self {
            shared: Arc::new(Shared {
                pending,
                writer_tx,
                inflight: Semaphore::new(max_in_flight),
                next_xid: AtomicU32::new(initial_xid()),
                opts,
                closed_rx,
                tasks: [reader, writer],
            }),
        }
    }

    pub fn options(&self) -> &ConnectOptions {
        &self.shared.opts
    }

    /// A fresh xid, for callers building their own call records.
    pub fn next_xid(&self) -> u32 {
        self.shared.next_xid.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether the connection has failed or been closed by the peer.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed_rx.borrow()
    }

    /// Wait until the connection is closed (by the peer or an error).
    pub async fn closed(&self) {
        let mut rx = self.shared.closed_rx.clone();
        // An error means the sender is gone, which only happens once the tasks are gone too.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Make a call with the connection's credential and already-encoded arguments. Returns the
    /// reply body and the bytes after the reply header (the results, for a successful call).
    pub async fn call(
        &self,
        prog: u32,
        vers: u32,
        procedure: u32,
        args: &[u8],
    ) -> Result<(ReplyBody, Bytes)> {
        let cred = self.shared.opts.cred.clone();
        self.call_with_cred(prog, vers, procedure, &cred, args)
            .await
    }

    /// Like [`call`](Self::call) with another credential.
    pub async fn call_with_cred(
        &self,
        prog: u32,
        vers: u32,
        procedure: u32,
        cred: &OpaqueAuth,
        args: &[u8],
    ) -> Result<(ReplyBody, Bytes)> {
        self.call_encoding(prog, vers, procedure, cred, |out| {
            out.extend_from_slice(args)
        })
        .await
    }

    /// Call with typed arguments and results. A reply other than SUCCESS is
    /// [`ClientError::Rpc`].
    pub async fn call_typed<A: XdrEncode, R: XdrDecode>(
        &self,
        prog: u32,
        vers: u32,
        procedure: u32,
        args: &A,
    ) -> Result<R> {
        let cred = self.shared.opts.cred.clone();
        let (body, results) = self
            .call_encoding(prog, vers, procedure, &cred, |out| args.encode(out))
            .await?;
        if body != ReplyBody::SUCCESS {
            return Err(ClientError::Rpc(body));
        }
        Ok(decode::<R>(&results)?)
    }

    async fn call_encoding(
        &self,
        prog: u32,
        vers: u32,
        procedure: u32,
        cred: &OpaqueAuth,
        args: impl FnOnce(&mut BytesMut),
    ) -> Result<(ReplyBody, Bytes)> {
        let xid = self.next_xid();
        let mut buf = BytesMut::with_capacity(256);
        let start = start_record(&mut buf);
        encode_call_header(&mut buf, xid, prog, vers, procedure, cred);
        args(&mut buf);
        finish_record(&mut buf, start);
        let reply = self.exchange(xid, buf.freeze()).await?;
        let (_xid, body, off) = decode_reply_header(&reply)?;
        Ok((body, reply.slice(off..)))
    }

    /// Send `payload` framed as one record, without waiting for anything. For tests that send
    /// malformed calls.
    pub async fn send_raw_record(&self, payload: &[u8]) -> Result<()> {
        self.send_raw(frame(payload).freeze()).await
    }

    /// Write `bytes` to the stream verbatim, record marking included (or deliberately not).
    pub async fn send_raw(&self, bytes: impl Into<Bytes>) -> Result<()> {
        self.shared
            .writer_tx
            .send(bytes.into())
            .await
            .map_err(|_| ClientError::Closed(self.shared.pending.closed_reason()))
    }

    /// Send `payload` (a whole RPC message, typically with an xid from
    /// [`next_xid`](Self::next_xid)) as one record and wait for the reply record with `xid`.
    /// Returns the whole reply record, header included.
    pub async fn call_raw_record(&self, xid: u32, payload: &[u8]) -> Result<Bytes> {
        self.exchange(xid, frame(payload).freeze()).await
    }

    async fn exchange(&self, xid: u32, framed: Bytes) -> Result<Bytes> {
        let timeout = self.shared.opts.timeout;
        tokio::time::timeout(timeout, self.exchange_untimed(xid, framed))
            .await
            .unwrap_or(Err(ClientError::Timeout(timeout)))
    }

    async fn exchange_untimed(&self, xid: u32, framed: Bytes) -> Result<Bytes> {
        let sh = &*self.shared;
        let _permit = sh
            .inflight
            .acquire()
            .await
            .map_err(|_| ClientError::Closed(sh.pending.closed_reason()))?;
        let (tx, rx) = oneshot::channel();
        sh.pending.register(xid, tx)?;
        let _guard = PendingGuard {
            pending: &sh.pending,
            xid,
        };
        sh.writer_tx
            .send(framed)
            .await
            .map_err(|_| ClientError::Closed(sh.pending.closed_reason()))?;
        rx.await
            .unwrap_or_else(|_| Err(ClientError::Closed(sh.pending.closed_reason())))
    }
}

/// Start xids somewhere different per connection, so a server's duplicate-request logic never
/// confuses two clients' calls.
fn initial_xid() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.subsec_nanos() ^ (now.as_secs() as u32).rotate_left(16)
}

async fn read_loop<R: AsyncRead>(rd: R, pending: Arc<Pending>, max_record: usize) {
    tokio::pin!(rd);
    let mut dec = RecordDecoder::new(max_record);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let reason = 'read: loop {
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(record)) => pending.deliver(record),
                Ok(None) => break,
                Err(e) => break 'read format!("bad reply stream: {e}"),
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "connection closed by peer".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read error: {e}"),
        }
    };
    tracing::debug!(%reason, "RPC connection closed");
    pending.fail_all(reason);
}

async fn write_loop<W: AsyncWrite>(wr: W, mut rx: mpsc::Receiver<Bytes>, pending: Arc<Pending>) {
    tokio::pin!(wr);
    while let Some(b) = rx.recv().await {
        if let Err(e) = wr.write_all(&b).await {
            pending.fail_all(format!("write error: {e}"));
            return;
        }
    }
    // Every handle is gone: let the peer see the end of the stream.
    let _ = wr.shutdown().await;
}
