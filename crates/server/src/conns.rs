//! The server's table of open connections, as the kernel nfsd keeps it: at the connection limit
//! the least recently active connection is closed to admit a new one (a new client is never
//! refused because of idle ones), one client address may hold only so many connections, and
//! what was done is counted ([`ConnectionStats`]). Depends on no other module of this crate.
//!
//! Each connection is registered as a [`Link`]: when it was last active (a record read, reply
//! bytes sent), and a way to tell it to close. The table never touches a socket itself.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the connections did since start: a snapshot of [`ConnStats`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: usize,
    /// Connections closed after the idle timeout.
    pub closed_idle: u64,
    /// Connections closed to admit a new one at the connection limit (or to get a descriptor
    /// back when the process had none left).
    pub evicted: u64,
    /// Connections refused because their address is not in the allow-list (`--allow`).
    pub refused_allow_list: u64,
    /// Connections refused because their address already held the most connections one
    /// address may hold.
    pub refused_per_address: u64,
    /// Connections closed because their replies were not being read: no progress for 120 s, or
    /// more replies waiting than the server has room for.
    pub closed_unread: u64,
}

/// The counters behind [`ConnectionStats`].
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    open: AtomicUsize,
    closed_idle: AtomicU64,
    evicted: AtomicU64,
    refused_allow_list: AtomicU64,
    refused_per_address: AtomicU64,
    closed_unread: AtomicU64,
}

impl ConnStats {
    pub(crate) fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.load(Ordering::Relaxed),
            closed_idle: self.closed_idle.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            refused_allow_list: self.refused_allow_list.load(Ordering::Relaxed),
            refused_per_address: self.refused_per_address.load(Ordering::Relaxed),
            closed_unread: self.closed_unread.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn closed_idle(&self) {
        self.closed_idle.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed_unread(&self) {
        self.closed_unread.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused_allow_list(&self) {
        self.refused_allow_list.fetch_add(1, Ordering::Relaxed);
    }
}

/// One registered connection, shared by the table and the connection's tasks.
pub(crate) struct Link {
    id: u64,
    ip: IpAddr,
    epoch: Instant,
    /// Milliseconds from `epoch` to the last activity.
    last_active: AtomicU64,
    close: watch::Sender<bool>,
    evicted: AtomicBool,
}

impl Link {
    /// Something happened on the connection: a record arrived, or reply bytes left.
    pub(crate) fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_active.fetch_max(ms, Ordering::Relaxed);
    }

    /// When the connection was last active.
    pub(crate) fn last_active(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_active.load(Ordering::Relaxed))
    }

    /// The client's address.
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Resolves once the table asked this connection to close (it was evicted).
    pub(crate) async fn closing(&self) {
        let mut rx = self.close.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Whether the table closed this connection to make room.
    pub(crate) fn was_evicted(&self) -> bool {
        self.evicted.load(Ordering::Relaxed)
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        self.close.send_replace(true);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address holds the most connections one address may hold.
    PerAddress,
}

/// Every open connection of a server.
pub(crate) struct Conns {
    max: usize,
    per_address: usize,
    epoch: Instant,
    next_id: AtomicU64,
    table: Mutex<Table>,
    pub(crate) stats: ConnStats,
    /// Reply bytes queued beyond their own connection's bound, across all connections.
    overflow: AtomicUsize,
    overflow_max: usize,
}

#[derive(Default)]
struct Table {
    links: HashMap<u64, Arc<Link>>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Link>> {
        let link = self.links.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&link.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&link.ip);
            }
        }
        Some(link)
    }

    /// The least recently active connection.
    fn least_recent(&self) -> Option<u64> {
        self.links
            .values()
            .min_by_key(|l| l.last_active.load(Ordering::Relaxed))
            .map(|l| l.id)
    }
}

/// A connection's place in the table; dropping it frees the place.
pub(crate) struct Registered {
    conns: Arc<Conns>,
    pub(crate) link: Arc<Link>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut t = self.conns.lock();
        if t.remove(self.link.id).is_some() {
            self.conns.stats.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Conns {
    /// A table of at most `max` connections, `per_address` of them from any one address;
    /// `overflow_max` bytes of replies may wait past their connections' own bounds in all.
    pub(crate) fn new(max: usize, per_address: usize, overflow_max: usize) -> Arc<Conns> {
        Arc::new(Conns {
            max: max.max(1),
            per_address: per_address.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            table: Mutex::new(Table::default()),
            stats: ConnStats::default(),
            overflow: AtomicUsize::new(0),
            overflow_max,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admit a connection from `ip`: refused when that address holds `per_address` already; at
    /// the connection limit, the least recently active connection is told to close and its
    /// place is given to this one at once.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Registered, Refused> {
        let mut t = self.lock();
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_address {
            drop(t);
            self.stats
                .refused_per_address
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refused::PerAddress);
        }
        let mut victim = None;
        if t.links.len() >= self.max {
            victim = t.least_recent().and_then(|id| t.remove(id));
        }
        let (tx, _) = watch::channel(false);
        let link = Arc::new(Link {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ip,
            epoch: self.epoch,
            last_active: AtomicU64::new(0),
            close: tx,
            evicted: AtomicBool::new(false),
        });
        link.touch();
        t.links.insert(link.id, link.clone());
        *t.per_ip.entry(ip).or_default() += 1;
        drop(t);
        match victim {
            Some(v) => self.evicted(&v),
            None => {
                self.stats.open.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(Registered {
            conns: self.clone(),
            link,
        })
    }

    /// Close the least recently active connection (the process ran out of descriptors, and a
    /// new client waits in the listen backlog). Returns whether there was one.
    pub(crate) fn evict_one(&self) -> bool {
        let mut t = self.lock();
        let victim = t.least_recent().and_then(|id| t.remove(id));
        drop(t);
        match victim {
            Some(v) => {
                self.stats.open.fetch_sub(1, Ordering::Relaxed);
                self.evicted(&v);
                true
            }
            None => false,
        }
    }

    fn evicted(&self, victim: &Link) {
        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(peer = %victim.ip, "closing the least recently active connection to admit another");
        victim.evict();
    }

    /// Account a change of one connection's bytes queued beyond its own bound, from `before` to
    /// `after`. Returns `false` when the total beyond the bounds has passed the server's room for
    /// it, in which case the connection that grew should be closed.
    pub(crate) fn overflow(&self, before: usize, after: usize) -> bool {
        if after > before {
            let grown = after - before;
            self.overflow.fetch_add(grown, Ordering::Relaxed) + grown <= self.overflow_max
        } else {
            if after < before {
                self.overflow.fetch_sub(before - after, Ordering::Relaxed);
            }
            true
        }
    }
}

/// Say something at most every ten seconds, with how many times it was not said meanwhile.
pub(crate) struct Every10s {
    last: Mutex<Option<Instant>>,
    since: AtomicU64,
}

impl Every10s {
    pub(crate) const fn new() -> Self {
        Every10s {
            last: Mutex::new(None),
            since: AtomicU64::new(0),
        }
    }

    /// `Some(times not reported since the last report)` when it is time to report again.
    pub(crate) fn due(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            self.since.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.since.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn at_the_limit_the_least_recently_active_is_closed_for_the_new_one() {
        let conns = Conns::new(3, 10, 0);
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        let b = conns.admit(ip("10.0.0.2")).unwrap();
        let c = conns.admit(ip("10.0.0.3")).unwrap();
        // a is the most recently active, then c; b has done nothing since it came.
        a.link.last_active.store(1_000, Ordering::Relaxed);
        b.link.last_active.store(10, Ordering::Relaxed);
        c.link.last_active.store(500, Ordering::Relaxed);
        let d = conns.admit(ip("10.0.0.4")).unwrap();
        assert!(b.link.was_evicted());
        assert!(!a.link.was_evicted() && !c.link.was_evicted() && !d.link.was_evicted());
        let s = conns.stats.snapshot();
        assert_eq!((s.open, s.evicted), (3, 1));
        // The evicted connection's task ends later; its place was already given away.
        drop(b);
        assert_eq!(conns.stats.snapshot().open, 3);
        drop(a);
        assert_eq!(conns.stats.snapshot().open, 2);
        drop((c, d));
        assert_eq!(conns.stats.snapshot().open, 0);
    }

    #[test]
    fn one_address_holds_at_most_its_share() {
        let conns = Conns::new(100, 2, 0);
        let a1 = conns.admit(ip("10.0.0.1")).unwrap();
        let _a2 = conns.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(conns.admit(ip("10.0.0.1")).err(), Some(Refused::PerAddress));
        let _b = conns.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(conns.stats.snapshot().refused_per_address, 1);
        drop(a1);
        let _a3 = conns.admit(ip("10.0.0.1")).unwrap();
    }

    #[test]
    fn eviction_to_get_a_descriptor_back() {
        let conns = Conns::new(10, 10, 0);
        assert!(!conns.evict_one(), "nothing to close");
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        assert!(conns.evict_one());
        assert!(a.link.was_evicted());
        assert_eq!(conns.stats.snapshot().open, 0);
    }

    #[test]
    fn overflow_past_the_room_says_so() {
        let conns = Conns::new(10, 10, 100);
        assert!(conns.overflow(0, 60));
        assert!(!conns.overflow(0, 60), "120 > 100");
        assert!(conns.overflow(60, 0));
        assert!(conns.overflow(60, 0));
        assert!(conns.overflow(0, 100));
    }
}
