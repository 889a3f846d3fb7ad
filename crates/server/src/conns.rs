//! The server's table of open connections, as the kernel nfsd keeps it: at the connection limit
//! the least recently active connection is closed to admit a new one, and at the cap of one
//! client address the least recently active connection of that address is, so a new client is
//! never refused because of idle connections, not even its own address's. What was done is
//! counted ([`ConnectionStats`]). Depends on no other module of this crate.
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
    /// Connections closed to admit a new one from the same address, which held the most
    /// connections one address may hold.
    pub evicted_per_address: u64,
    /// Connections refused because their address is not in the allow-list (`--allow`).
    pub refused_allow_list: u64,
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
    evicted_per_address: AtomicU64,
    refused_allow_list: AtomicU64,
    closed_unread: AtomicU64,
}

impl ConnStats {
    pub(crate) fn snapshot(&self) -> ConnectionStats {
        ConnectionStats {
            open: self.open.load(Ordering::Relaxed),
            closed_idle: self.closed_idle.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            evicted_per_address: self.evicted_per_address.load(Ordering::Relaxed),
            refused_allow_list: self.refused_allow_list.load(Ordering::Relaxed),
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

/// Why a connection was closed to make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eviction {
    /// The server held its most connections (or had no descriptor left).
    Limit,
    /// The new connection's address held the most connections one address may hold.
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

    /// The least recently active connection (of those from `ip`, when given); of two equally
    /// recent, the older.
    fn least_recent(&self, ip: Option<IpAddr>) -> Option<u64> {
        self.links
            .values()
            .filter(|l| ip.is_none_or(|ip| l.ip == ip))
            .min_by_key(|l| (l.last_active.load(Ordering::Relaxed), l.id))
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

    /// Admit a connection from `ip`, always. When that address holds `per_address` already,
    /// its least recently active connection is told to close; else, at the connection limit,
    /// the least recently active connection of all is. Either way the closed one's place is
    /// given to this one at once.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Registered {
        let mut t = self.lock();
        let mut victim = None;
        if t.per_ip.get(&ip).copied().unwrap_or(0) >= self.per_address {
            victim = t
                .least_recent(Some(ip))
                .and_then(|id| t.remove(id))
                .map(|v| (v, Eviction::PerAddress));
        }
        if victim.is_none() && t.links.len() >= self.max {
            victim = t
                .least_recent(None)
                .and_then(|id| t.remove(id))
                .map(|v| (v, Eviction::Limit));
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
            Some((v, why)) => self.evicted(&v, why),
            None => {
                self.stats.open.fetch_add(1, Ordering::Relaxed);
            }
        }
        Registered {
            conns: self.clone(),
            link,
        }
    }

    /// Close the least recently active connection (the process ran out of descriptors, and a
    /// new client waits in the listen backlog). Returns whether there was one.
    pub(crate) fn evict_one(&self) -> bool {
        let mut t = self.lock();
        let victim = t.least_recent(None).and_then(|id| t.remove(id));
        drop(t);
        match victim {
            Some(v) => {
                self.stats.open.fetch_sub(1, Ordering::Relaxed);
                self.evicted(&v, Eviction::Limit);
                true
            }
            None => false,
        }
    }

    fn evicted(&self, victim: &Link, why: Eviction) {
        match why {
            Eviction::Limit => {
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %victim.ip, "closing the least recently active connection to admit another");
            }
            Eviction::PerAddress => {
                static PER_ADDRESS: Every10s = Every10s::new();
                self.stats
                    .evicted_per_address
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(more) = PER_ADDRESS.due() {
                    tracing::info!(peer = %victim.ip, limit = self.per_address, more_since_last_report = more, "closing the least recently active connection of an address that holds the most connections one address may (--max-connections-per-address), to admit a new one from it");
                }
            }
        }
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
        let a = conns.admit(ip("10.0.0.1"));
        let b = conns.admit(ip("10.0.0.2"));
        let c = conns.admit(ip("10.0.0.3"));
        // a is the most recently active, then c; b has done nothing since it came.
        a.link.last_active.store(1_000, Ordering::Relaxed);
        b.link.last_active.store(10, Ordering::Relaxed);
        c.link.last_active.store(500, Ordering::Relaxed);
        let d = conns.admit(ip("10.0.0.4"));
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
    fn at_its_cap_an_address_loses_its_own_least_recently_active() {
        let conns = Conns::new(100, 3, 0);
        // b (another address) is the least recently active of all: it must not be the one closed.
        let b = conns.admit(ip("10.0.0.2"));
        let a1 = conns.admit(ip("10.0.0.1"));
        let a2 = conns.admit(ip("10.0.0.1"));
        let a3 = conns.admit(ip("10.0.0.1"));
        b.link.last_active.store(1, Ordering::Relaxed);
        a1.link.last_active.store(900, Ordering::Relaxed);
        a2.link.last_active.store(300, Ordering::Relaxed);
        a3.link.last_active.store(600, Ordering::Relaxed);
        let a4 = conns.admit(ip("10.0.0.1"));
        a4.link.last_active.store(1_000, Ordering::Relaxed);
        assert!(a2.link.was_evicted());
        for kept in [&b, &a1, &a3, &a4] {
            assert!(!kept.link.was_evicted());
        }
        let s = conns.stats.snapshot();
        assert_eq!((s.open, s.evicted_per_address, s.evicted), (4, 1, 0));
        // The next one from that address closes the next least recent of it: a3.
        let a5 = conns.admit(ip("10.0.0.1"));
        assert!(a3.link.was_evicted());
        assert!(!a1.link.was_evicted() && !a4.link.was_evicted() && !a5.link.was_evicted());
        // Below the cap nothing is closed: once a connection of the address ends, it has room.
        drop((a2, a3));
        drop(a1);
        let _a6 = conns.admit(ip("10.0.0.1"));
        let s = conns.stats.snapshot();
        assert_eq!((s.open, s.evicted_per_address, s.evicted), (4, 2, 0));
        assert!(!a4.link.was_evicted() && !a5.link.was_evicted());
    }

    #[test]
    fn equally_recent_connections_go_oldest_first() {
        let conns = Conns::new(100, 2, 0);
        let a1 = conns.admit(ip("10.0.0.1"));
        let a2 = conns.admit(ip("10.0.0.1"));
        a1.link.last_active.store(5, Ordering::Relaxed);
        a2.link.last_active.store(5, Ordering::Relaxed);
        let _a3 = conns.admit(ip("10.0.0.1"));
        assert!(a1.link.was_evicted() && !a2.link.was_evicted());
    }

    #[test]
    fn eviction_to_get_a_descriptor_back() {
        let conns = Conns::new(10, 10, 0);
        assert!(!conns.evict_one(), "nothing to close");
        let a = conns.admit(ip("10.0.0.1"));
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
