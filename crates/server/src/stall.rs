//! Calls the backend does not answer in time. A FUSE read of a dead debrid link can block for
//! minutes; the client must not wait on it with its whole mount, and the server must not keep
//! starting more of the same.
//!
//! - A call still in the backend at its deadline is answered NFS3ERR_JUKEBOX: the Linux client
//!   waits (5 s) and sends it again, and the application sees no error. The backend call keeps
//!   running on its thread, counted as *stuck*, and stops holding any permit.
//! - A call equal to one already running (same procedure, arguments and identity: the client's
//!   retry after JUKEBOX, or a retransmission of the same xid) joins it instead of starting
//!   another backend call; a result that arrives after its caller was answered JUKEBOX is kept a
//!   little while for that retry.
//! - While a READ of a file is stuck, other READs of that file are answered JUKEBOX at once
//!   rather than becoming stuck too; once `max_stuck` calls are stuck, every new backend call is.
//!
//! Nothing here blocks: waiting is the connection's business (async), working the call's.
pub(crate) use crate::reply::SharedReply;
use crate::throttle::Throttle;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a late result waits for the retry of the call it answers. The Linux client retries
/// a JUKEBOX after 5 s; the retry itself may wait up to a deadline.
const KEEP_LATE_RESULT: Duration = Duration::from_secs(30);
/// Bytes of late results kept at once; past it the oldest go (their retry then reads again,
/// from a backend that has just answered).
const MAX_KEPT_BYTES: usize = 64 << 20;

/// What makes two calls the same: the procedure, who asks, and the arguments' bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CallKey {
    pub procedure: u32,
    /// uid, gid and groups of the credential (not its raw bytes: AUTH_SYS's stamp changes
    /// between a call and its retry).
    pub identity: (u32, u32, Vec<u32>),
    pub args: Bytes,
    /// The READ's file handle, for the rule that a file with a stuck READ gets no other.
    pub read_handle: Option<Bytes>,
}

type Published = watch::Sender<Option<SharedReply>>;

struct Entry {
    tx: Arc<Published>,
    /// When a late result was published (the entry then waits for its retry).
    kept_since: Option<Instant>,
    kept_bytes: usize,
}

/// What a new call should do.
pub(crate) enum Join {
    /// Nothing like it runs: run it, and publish through the guard.
    Lead(Leader),
    /// The same call is running: wait for its result (until this call's deadline).
    Wait(watch::Receiver<Option<SharedReply>>),
    /// The result of the same call, which finished late.
    Ready(SharedReply),
    /// Answer JUKEBOX at once: the file has a stuck READ, or too many calls are stuck.
    Refuse,
}

/// Counters of what stalls did, since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StallStats {
    /// Backend calls past their deadline and still running.
    pub stuck_now: usize,
    /// Calls answered JUKEBOX at their deadline (their backend call went on).
    pub timed_out: u64,
    /// Calls answered JUKEBOX at once (a stuck file, or the cap on stuck calls).
    pub refused: u64,
    /// Calls that joined one already running, or took a late result.
    pub joined: u64,
}

/// The state shared by every connection of a server.
pub(crate) struct Stalls {
    pub deadline: Duration,
    max_stuck: usize,
    stuck: AtomicUsize,
    timed_out: AtomicU64,
    refused: AtomicU64,
    joined: AtomicU64,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    calls: HashMap<CallKey, Entry>,
    /// Late results in the order they were kept, for expiry.
    kept: VecDeque<CallKey>,
    kept_bytes: usize,
    /// Files with a stuck READ, and how many.
    stuck_files: HashMap<Bytes, usize>,
}

impl Stalls {
    pub(crate) fn new(deadline: Duration, max_stuck: usize) -> Arc<Stalls> {
        Arc::new(Stalls {
            deadline,
            max_stuck,
            stuck: AtomicUsize::new(0),
            timed_out: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            table: Mutex::new(Table::default()),
        })
    }

    pub(crate) fn stats(&self) -> StallStats {
        StallStats {
            stuck_now: self.stuck.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decide what the call `key` does.
    pub(crate) fn join(self: &Arc<Self>, key: CallKey) -> Join {
        let mut t = self.lock();
        t.expire(Instant::now());
        if let Some(entry) = t.calls.get(&key) {
            self.joined.fetch_add(1, Ordering::Relaxed);
            let rx = entry.tx.subscribe();
            let ready = rx.borrow().clone();
            return match ready {
                Some(reply) => Join::Ready(reply),
                None => Join::Wait(rx),
            };
        }
        let file_stuck = key
            .read_handle
            .as_ref()
            .is_some_and(|fh| t.stuck_files.contains_key(fh));
        if file_stuck || self.stuck.load(Ordering::Relaxed) >= self.max_stuck {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Join::Refuse;
        }
        let tx = Arc::new(watch::channel(None).0);
        t.calls.insert(
            key.clone(),
            Entry {
                tx: tx.clone(),
                kept_since: None,
                kept_bytes: 0,
            },
        );
        Join::Lead(Leader {
            stalls: self.clone(),
            key: Some(key),
            tx,
            state: Arc::new(AtomicU8::new(RUNNING)),
        })
    }
}

impl Table {
    fn expire(&mut self, now: Instant) {
        while let Some(key) = self.kept.front() {
            let Some(entry) = self.calls.get(key) else {
                self.kept.pop_front();
                continue;
            };
            let old = entry
                .kept_since
                .is_none_or(|t| now.duration_since(t) >= KEEP_LATE_RESULT);
            if !old && self.kept_bytes <= MAX_KEPT_BYTES {
                break;
            }
            let Some(key) = self.kept.pop_front() else {
                break;
            };
            if let Some(e) = self.calls.remove(&key) {
                self.kept_bytes -= e.kept_bytes;
            }
        }
    }
}

const RUNNING: u8 = 0;
const ANSWERED: u8 = 1;
const LATE: u8 = 2;

/// The one call of its kind running in the backend. Whoever finishes first of the call (with
/// its result) and the deadline (with JUKEBOX) answers the client; the other does nothing.
pub(crate) struct Leader {
    stalls: Arc<Stalls>,
    key: Option<CallKey>,
    tx: Arc<Published>,
    state: Arc<AtomicU8>,
}

/// The deadline's side of a [`Leader`], held by the connection while the call runs.
pub(crate) struct Deadline {
    stalls: Arc<Stalls>,
    state: Arc<AtomicU8>,
    read_handle: Option<Bytes>,
}

impl Leader {
    pub(crate) fn deadline(&self) -> Deadline {
        Deadline {
            stalls: self.stalls.clone(),
            state: self.state.clone(),
            read_handle: self.key.as_ref().and_then(|k| k.read_handle.clone()),
        }
    }

    /// The call finished. Returns `true` if its caller still waits for this reply (write it),
    /// `false` if it was answered JUKEBOX at the deadline. `share` makes the copy of the reply
    /// that those who joined get, and that a late call keeps for its retry; it is called only
    /// then.
    pub(crate) fn complete(mut self, share: impl FnOnce() -> SharedReply) -> bool {
        let Some(key) = self.key.take() else {
            return true;
        };
        let answered = self
            .state
            .compare_exchange(RUNNING, ANSWERED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if answered {
            // Joiners subscribe under the table's lock: once the entry is gone none can come,
            // so the count below is final.
            let mut t = self.stalls.lock();
            t.calls.remove(&key);
            let wanted = self.tx.receiver_count() > 0;
            drop(t);
            if wanted {
                self.tx.send_replace(Some(share()));
            }
            return true;
        }
        let reply = share();
        let len = reply.bytes.len();
        self.tx.send_replace(Some(reply));
        let mut t = self.stalls.lock();
        if let Some(entry) = t.calls.get_mut(&key) {
            entry.kept_since = Some(Instant::now());
            entry.kept_bytes = len;
            t.kept_bytes += len;
            t.kept.push_back(key.clone());
        }
        t.expire(Instant::now());
        drop(t);
        self.unstick(&key);
        false
    }

    fn unstick(&self, key: &CallKey) {
        self.stalls.stuck.fetch_sub(1, Ordering::Relaxed);
        if let Some(fh) = &key.read_handle {
            let mut t = self.stalls.lock();
            if let Some(n) = t.stuck_files.get_mut(fh) {
                *n -= 1;
                if *n == 0 {
                    t.stuck_files.remove(fh);
                }
            }
        }
    }
}

impl Drop for Leader {
    /// Not published (no one wanted it, the call never ran, or it panicked): forget it. Those
    /// who joined see the channel close and answer JUKEBOX; their retry leads anew.
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let late = self.state.load(Ordering::Acquire) == LATE;
            self.stalls.lock().calls.remove(&key);
            if late {
                self.unstick(&key);
            }
        }
    }
}

impl Deadline {
    /// The deadline passed: `true` if the call is still running, and is now stuck (its caller
    /// gets JUKEBOX from the one who called this); `false` if it has just answered.
    pub(crate) fn expire(&self) -> bool {
        let late = self
            .state
            .compare_exchange(RUNNING, LATE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if late {
            let stuck = self.stalls.stuck.fetch_add(1, Ordering::Relaxed) + 1;
            self.stalls.timed_out.fetch_add(1, Ordering::Relaxed);
            if let Some(fh) = &self.read_handle {
                *self
                    .stalls
                    .lock()
                    .stuck_files
                    .entry(fh.clone())
                    .or_default() += 1;
            }
            report_stuck(stuck, self.stalls.deadline);
        }
        late
    }
}

/// Say, at most every ten seconds, that backend calls are outliving their deadline.
fn report_stuck(stuck: usize, deadline: Duration) {
    static EVERY_10S: Throttle = Throttle::every(10);
    let Some(more) = EVERY_10S.admit() else {
        return;
    };
    tracing::warn!(
        stuck,
        more_since_last_report = more,
        deadline = ?deadline,
        "the exported file system did not answer a call within the backend timeout: the client was told to retry (JUKEBOX); the call goes on"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(args: &'static [u8], read: bool) -> CallKey {
        CallKey {
            procedure: 6,
            identity: (0, 0, vec![]),
            args: Bytes::from_static(args),
            read_handle: read.then(|| Bytes::from_static(b"fh")),
        }
    }

    /// A reply `bytes` that says NFS3_OK and sent `bytes` of a file.
    fn shared(bytes: &'static [u8]) -> SharedReply {
        SharedReply {
            bytes: Bytes::from_static(bytes),
            outcome: crate::reply::Outcome {
                status: crate::reply::Status::Nfs(mountshare_proto::nfs3::NfsStat3::Ok),
                read_bytes: bytes.len() as u64,
            },
        }
    }

    fn bytes_of(r: &Option<SharedReply>) -> Option<&[u8]> {
        r.as_ref().map(|r| &r.bytes[..])
    }

    fn lead(s: &Arc<Stalls>, k: CallKey) -> Leader {
        match s.join(k) {
            Join::Lead(l) => l,
            _ => panic!("expected to lead"),
        }
    }

    #[test]
    fn a_retry_joins_and_gets_the_late_result() {
        let s = Stalls::new(Duration::from_secs(5), 8);
        let first = lead(&s, key(b"a", true));
        assert!(first.deadline().expire(), "still running at the deadline");
        assert_eq!(s.stats().stuck_now, 1);
        // Another range of the same file is refused while one READ of it is stuck.
        assert!(matches!(s.join(key(b"b", true)), Join::Refuse));
        // The retry of the same call waits for it.
        let Join::Wait(mut rx) = s.join(key(b"a", true)) else {
            panic!("the retry joins")
        };
        assert!(!first.complete(|| shared(b"data")), "answered already");
        assert_eq!(bytes_of(&rx.borrow_and_update()), Some(&b"data"[..]));
        assert_eq!(s.stats().stuck_now, 0);
        // A later retry takes the kept result, and what it says; the file is no longer refused.
        let Join::Ready(kept) = s.join(key(b"a", true)) else {
            panic!("the late result is kept for the retry")
        };
        assert_eq!(&kept.bytes[..], b"data");
        assert_eq!(kept.outcome, shared(b"data").outcome);
        let _ = lead(&s, key(b"b", true));
    }

    #[test]
    fn a_prompt_call_shares_only_with_those_who_joined() {
        let s = Stalls::new(Duration::from_secs(5), 8);
        let first = lead(&s, key(b"a", false));
        let dl = first.deadline();
        assert!(first.complete(|| panic!("nobody joined: no copy")));
        assert!(!dl.expire(), "answered before the deadline");
        let second = lead(&s, key(b"a", false));
        let Join::Wait(mut rx) = s.join(key(b"a", false)) else {
            panic!("joins the running call")
        };
        assert!(second.complete(|| shared(b"r")));
        assert_eq!(bytes_of(&rx.borrow_and_update()), Some(&b"r"[..]));
        let _ = lead(&s, key(b"a", false));
        assert_eq!(s.stats().stuck_now, 0);
    }

    #[test]
    fn the_cap_on_stuck_calls_refuses_new_ones() {
        let s = Stalls::new(Duration::from_secs(5), 1);
        let first = lead(&s, key(b"a", false));
        assert!(first.deadline().expire());
        assert!(matches!(s.join(key(b"other", false)), Join::Refuse));
        assert_eq!(s.stats().refused, 1);
        drop(first); // the stuck call ended (it panicked): nothing kept, nothing stuck
        assert_eq!(s.stats().stuck_now, 0);
        let _ = lead(&s, key(b"other", false));
    }
}
