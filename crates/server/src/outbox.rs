//! A connection's replies on their way out. A call's thread hands its reply over and goes back
//! to the pool: when nothing is waiting ahead of it, it writes the reply itself, without ever
//! waiting on the socket (a reply normally fits the socket buffer, so the common case costs no
//! hand-off); what does not fit waits in the queue, and the connection's writer task sends it as
//! the client makes room. No thread and no global permit ever waits on a client's socket.
//!
//! The queue is bounded per connection in bytes: while it holds its bound, the connection is not
//! read and its calls wait before they take a global permit ([`Outbox::room`]), so a client that
//! stops reading its replies stops being served, and holds nothing anyone else needs. Replies of
//! calls already being worked on when it filled still join it; across all connections, such
//! excess is bounded too, and a connection that would pass that bound is closed. So is one whose
//! queue has made no progress for [`WRITE_STALL`].
use crate::conns::{Conns, Link};
use crate::export::Export;
use crate::reply::{Framed, Tail};
use rustix::net::SendFlags;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// How long a connection's replies may make no progress (a client that stopped reading) before
/// the connection is given up.
pub(crate) const WRITE_STALL: Duration = Duration::from_secs(120);

/// How full the queue is, as those who wait on it see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Empty,
    /// Something is queued or being written, within the bound.
    Some,
    /// At or past the bound: the connection is not read, and calls wait before work.
    Full,
    Closed,
}

/// Why a connection's replies stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// The connection ended (the client left, it was idle, evicted, or the server stops).
    Ended,
    /// The client stopped reading its replies.
    Unread,
    /// A write failed.
    Broken,
}

/// A reply and how much of it has been sent.
struct Outgoing {
    reply: Framed,
    sent: usize,
}

impl Outgoing {
    fn len(&self) -> usize {
        self.reply.wire_len()
    }

    fn done(&self) -> bool {
        self.sent >= self.len()
    }
}

struct State {
    /// Replies waiting, in order; the front one may be partly sent.
    queue: VecDeque<Outgoing>,
    /// Bytes not yet sent, of the queue and of the reply being written.
    queued: usize,
    /// Someone is writing: a call's thread, or the writer task. Only they touch the socket.
    writing: bool,
    closed: bool,
    /// The level last published.
    level: Level,
}

/// One connection's replies on their way out.
pub(crate) struct Outbox {
    sock: OwnedWriteHalf,
    state: Mutex<State>,
    /// Hands the writing over to the writer task.
    wake: Notify,
    level: watch::Sender<Level>,
    bound: usize,
    link: Arc<Link>,
    conns: Arc<Conns>,
    export: Arc<Export>,
}

impl Outbox {
    /// The outbox of the connection writing to `sock`, holding at most `bound` bytes of replies.
    pub(crate) fn new(
        sock: OwnedWriteHalf,
        bound: usize,
        link: Arc<Link>,
        conns: Arc<Conns>,
        export: Arc<Export>,
    ) -> Arc<Outbox> {
        Arc::new(Outbox {
            sock,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: 0,
                writing: false,
                closed: false,
                level: Level::Empty,
            }),
            wake: Notify::new(),
            level: watch::channel(Level::Empty).0,
            bound: bound.max(1),
            link,
            conns,
            export,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stream(&self) -> &TcpStream {
        self.sock.as_ref()
    }

    /// Publish the level `st` is at, for those waiting on it (under the state's lock, so that
    /// what they see is never older than what they checked).
    fn publish(&self, st: &mut State) {
        let level = if st.closed {
            Level::Closed
        } else if st.queued >= self.bound {
            Level::Full
        } else if st.queued == 0 && !st.writing {
            Level::Empty
        } else {
            Level::Some
        };
        if level != st.level {
            st.level = level;
            self.level.send_replace(level);
        }
    }

    /// Account `add` more bytes queued (or `sent` fewer); false if the excess over this
    /// connection's bound passed the server's room for it.
    fn account(&self, st: &mut State, add: usize, sent: usize) -> bool {
        let before = st.queued.saturating_sub(self.bound);
        st.queued = st.queued + add - sent.min(st.queued + add);
        let after = st.queued.saturating_sub(self.bound);
        let ok = self.conns.overflow(before, after);
        self.publish(st);
        ok
    }

    /// Nothing queued and nothing being written.
    pub(crate) fn is_empty(&self) -> bool {
        let st = self.lock();
        st.queued == 0 && !st.writing
    }

    /// Wait until the queue is below its bound; false if the connection's replies stopped.
    pub(crate) async fn room(&self) -> bool {
        let mut rx = self.level.subscribe();
        let open = match rx.wait_for(|l| *l != Level::Full).await {
            Ok(l) => *l != Level::Closed,
            Err(_) => false,
        };
        open
    }

    /// Wait until every reply handed over has been sent (or the replies stopped).
    pub(crate) async fn flushed(&self) {
        let mut rx = self.level.subscribe();
        let _ = rx
            .wait_for(|l| matches!(l, Level::Empty | Level::Closed))
            .await;
    }

    /// Hand `reply` over, from a call's thread or a task; never waits. It is written here and now
    /// if nothing is ahead of it, as far as the socket takes it; the rest goes to the writer task.
    pub(crate) fn push(&self, reply: Framed) {
        let out = Outgoing { reply, sent: 0 };
        let mut st = self.lock();
        if st.closed {
            drop(st);
            out.reply.recycle(self.export.read_buffers());
            return;
        }
        if !self.account(&mut st, out.len(), 0) {
            drop(st);
            out.reply.recycle(self.export.read_buffers());
            self.give_up("more replies are waiting than the server has room for");
            return;
        }
        if st.writing || !st.queue.is_empty() {
            st.queue.push_back(out);
            return;
        }
        st.writing = true;
        self.publish(&mut st);
        drop(st);
        self.write_here(out);
    }

    /// Hand `reply` over once the queue is below its bound, for replies made off a call's thread
    /// (JUKEBOX, a result shared with this call): waiting costs nothing but this task. `make`
    /// builds the reply only once there is room.
    pub(crate) async fn send(&self, make: impl FnOnce() -> Framed) {
        if self.room().await {
            self.push(make());
        }
    }

    /// Write from the calling thread, without waiting: `out` first, then whatever queued behind
    /// it meanwhile. When the socket is full, the writer task takes over.
    fn write_here(&self, mut out: Outgoing) {
        loop {
            let result = send_some(self.stream(), &mut out);
            let mut st = self.lock();
            let n = match result {
                Ok(n) => n,
                Err(e) => {
                    drop(st);
                    tracing::debug!(peer = %self.link.ip(), error = %e, "write failed; closing the connection");
                    self.close(Why::Broken);
                    out.reply.recycle(self.export.read_buffers());
                    return;
                }
            };
            if n > 0 {
                self.link.touch();
            }
            self.account(&mut st, 0, n);
            if st.closed {
                drop(st);
                out.reply.recycle(self.export.read_buffers());
                return;
            }
            if !out.done() {
                // The socket is full: the writer task waits for room, and carries on.
                st.queue.push_front(out);
                drop(st);
                self.wake.notify_one();
                return;
            }
            let next = st.queue.pop_front();
            if next.is_none() {
                st.writing = false;
                self.publish(&mut st);
            }
            drop(st);
            out.reply.recycle(self.export.read_buffers());
            match next {
                Some(n) => out = n,
                None => return,
            }
        }
    }

    /// The connection's writer task: sends what the calls' threads could not, as the socket
    /// makes room; gives the connection up when nothing moves for [`WRITE_STALL`].
    pub(crate) async fn run_writer(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            if !self.write_queued().await {
                return;
            }
        }
    }

    /// Write the queue out (this task holds the writing); false once the replies have stopped.
    async fn write_queued(&self) -> bool {
        let sock = self.stream();
        let mut progress = tokio::time::Instant::now();
        loop {
            let mut out = {
                let mut st = self.lock();
                if st.closed {
                    return false;
                }
                match st.queue.pop_front() {
                    Some(out) => out,
                    None => {
                        st.writing = false;
                        self.publish(&mut st);
                        return true;
                    }
                }
            };
            let result = match tokio::time::timeout_at(progress + WRITE_STALL, sock.writable())
                .await
            {
                Err(_) => {
                    self.lock().queue.push_front(out);
                    self.give_up("its replies have not been read for 120 s");
                    return false;
                }
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => sock.try_io(Interest::WRITABLE, || match send_some(sock, &mut out) {
                    Ok(0) if !out.done() => Err(std::io::ErrorKind::WouldBlock.into()),
                    other => other,
                }),
            };
            let n = match result {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
                Err(e) => {
                    tracing::debug!(peer = %self.link.ip(), error = %e, "write failed; closing the connection");
                    out.reply.recycle(self.export.read_buffers());
                    self.close(Why::Broken);
                    return false;
                }
            };
            if n > 0 {
                progress = tokio::time::Instant::now();
                self.link.touch();
            }
            let mut st = self.lock();
            self.account(&mut st, 0, n);
            if st.closed {
                drop(st);
                out.reply.recycle(self.export.read_buffers());
                return false;
            }
            if out.done() {
                drop(st);
                out.reply.recycle(self.export.read_buffers());
            } else {
                st.queue.push_front(out);
            }
        }
    }

    fn give_up(&self, why: &str) {
        tracing::info!(peer = %self.link.ip(), "closing a connection: {why}");
        self.conns.stats.closed_unread();
        self.close(Why::Unread);
    }

    /// Stop: drop what is queued, shut the socket down (the connection's reader sees it end),
    /// and wake everyone waiting. Calls still being worked on find it closed.
    pub(crate) fn close(&self, why: Why) {
        let dropped = {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            let queued = st.queued;
            self.account(&mut st, 0, queued);
            std::mem::take(&mut st.queue)
        };
        tracing::trace!(peer = %self.link.ip(), ?why, "replies stopped");
        let _ = rustix::net::shutdown(self.stream(), rustix::net::Shutdown::ReadWrite);
        for out in dropped {
            out.reply.recycle(self.export.read_buffers());
        }
        self.wake.notify_one();
    }
}

/// Send as much of `out` as the (non-blocking) socket takes: head, READ data (copied from a
/// buffer or spliced from a pipe), padding, corked (MSG_MORE) between the parts so they leave
/// as full segments. Returns the bytes sent; `out` is done, or the socket is full.
fn send_some(sock: &TcpStream, out: &mut Outgoing) -> std::io::Result<usize> {
    let head_len = out.reply.head.len();
    let tail_len = out.reply.tail_len();
    let pad = out.reply.pad();
    let mut moved = 0;
    loop {
        let n = if out.sent < head_len {
            let more = tail_len + pad.len() > 0;
            send_part(
                sock,
                out.reply.head.get(out.sent..).unwrap_or_default(),
                more,
            )?
        } else if out.sent < head_len + tail_len {
            let at = out.sent - head_len;
            let more = !pad.is_empty();
            match &mut out.reply.tail {
                Some(Tail::Buf(b)) => {
                    send_part(sock, b.data().get(at..).unwrap_or_default(), more)?
                }
                Some(Tail::Bytes(b)) => send_part(sock, b.get(at..).unwrap_or_default(), more)?,
                Some(Tail::Pipe(p)) => p.send_some(sock, more)?,
                // A reply's tail is never taken before it is sent.
                None => return Err(std::io::ErrorKind::InvalidData.into()),
            }
        } else if out.sent < head_len + tail_len + pad.len() {
            let at = out.sent - head_len - tail_len;
            send_part(sock, pad.get(at..).unwrap_or_default(), false)?
        } else {
            return Ok(moved);
        };
        if n == 0 {
            return Ok(moved);
        }
        out.sent += n;
        moved += n;
    }
}

/// One `send(2)`; 0 when the socket is full.
fn send_part(sock: &TcpStream, buf: &[u8], more: bool) -> std::io::Result<usize> {
    let flags = if more {
        SendFlags::MORE
    } else {
        SendFlags::empty()
    } | SendFlags::NOSIGNAL;
    loop {
        return match rustix::net::send(sock, buf, flags) {
            Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(n),
            Err(rustix::io::Errno::AGAIN) => Ok(0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => Err(e.into()),
        };
    }
}
