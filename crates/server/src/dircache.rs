//! Directory snapshots for READDIR, READDIRPLUS and handle resolution.
//!
//! A snapshot is a directory's names sorted by their cookie ([`crate::handle::name_cookie`]).
//! Because a cookie is derived from the name alone, resuming after cookie `c` means "entries
//! whose cookie is greater than `c`": entries present for the whole listing come back exactly
//! once, whatever is added or removed meanwhile, and cookies stay valid across restarts.
//!
//! Snapshots are cached so that a 100,000-entry directory is read once per listing, not once per
//! call. A snapshot is compact: every name in one buffer, beside an array of (cookie, end) pairs
//! (12 bytes per entry, not a heap allocation per name). The cache is bounded in directories
//! and in bytes, and drops snapshots as soon as they are too old to be served again. The
//! buffers of a large snapshot gone are kept (a few, within a quarter of the bound) for the
//! next one: a walk
//! of a large tree replaces every snapshot every few seconds, and buffers freed and allocated
//! anew by whichever threads ran the calls fragmented the allocator's per-thread arenas until
//! RSS grew with every walk.
use crate::handle::name_cookie;
use mountshare_fs::{Attr, Backend, FsError, RelPath, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes counted for a snapshot besides its names and index: the map slot, the `Arc` and the
/// struct itself.
const SNAPSHOT_OVERHEAD: usize = 160;

/// Spare buffers smaller than this are freed rather than kept.
const MIN_SPARE_BYTES: usize = 64 << 10;
/// Most snapshots' buffers kept spare.
const MAX_SPARE_STORES: usize = 64;

/// The buffers of one snapshot.
#[derive(Debug, Default)]
struct Storage {
    /// Cookies, ascending.
    cookies: Vec<u64>,
    /// Where each entry's name ends in `names` (it starts where the previous one ends).
    ends: Vec<u32>,
    /// Every name, in cookie order.
    names: Vec<u8>,
}

impl Storage {
    /// Bytes allocated.
    fn capacity(&self) -> usize {
        self.cookies.capacity() * 8 + self.ends.capacity() * 4 + self.names.capacity()
    }

    fn fits(&self, entries: usize, name_bytes: usize) -> bool {
        self.cookies.capacity() >= entries
            && self.ends.capacity() >= entries
            && self.names.capacity() >= name_bytes
    }
}

/// Buffers of snapshots gone, for the next ones.
#[derive(Debug, Default)]
struct Spare {
    stores: Vec<Storage>,
    bytes: usize,
    max_bytes: usize,
}

impl Spare {
    /// The smallest spare storage that holds `entries` entries of `name_bytes` bytes of names,
    /// emptied; or a new one of just that size.
    fn take(&mut self, entries: usize, name_bytes: usize) -> Storage {
        let best = self
            .stores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.fits(entries, name_bytes))
            .min_by_key(|(_, s)| s.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let mut s = self.stores.swap_remove(i);
                self.bytes -= s.capacity();
                s.cookies.clear();
                s.ends.clear();
                s.names.clear();
                s
            }
            None => Storage {
                cookies: Vec::with_capacity(entries),
                ends: Vec::with_capacity(entries),
                names: Vec::with_capacity(name_bytes),
            },
        }
    }

    fn give(&mut self, store: Storage) {
        let n = store.capacity();
        // Only large buffers are worth keeping (they are the ones that fragmented the arenas),
        // and only a few: `take` looks at each, and a walk of thousands of small folders would
        // otherwise fill this with thousands of tiny ones.
        if n >= MIN_SPARE_BYTES
            && self.stores.len() < MAX_SPARE_STORES
            && self.bytes + n <= self.max_bytes
        {
            self.bytes += n;
            self.stores.push(store);
        }
    }
}

type SharedSpare = Arc<Mutex<Spare>>;

fn lock_spare(spare: &SharedSpare) -> std::sync::MutexGuard<'_, Spare> {
    spare.lock().unwrap_or_else(|e| e.into_inner())
}

/// One directory's entries, sorted by cookie.
#[derive(Debug)]
pub(crate) struct DirSnapshot {
    store: Storage,
    /// Where the buffers go when the snapshot is dropped.
    spare: Option<SharedSpare>,
    mtime: Timestamp,
    ctime: Timestamp,
    ino: u64,
    taken: Instant,
}

impl Drop for DirSnapshot {
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            lock_spare(&spare).give(std::mem::take(&mut self.store));
        }
    }
}

impl DirSnapshot {
    /// A snapshot of `names`, whose directory has attributes `attr`, in buffers from `spare`.
    fn new(names: Vec<Vec<u8>>, attr: &Attr, spare: Option<SharedSpare>) -> DirSnapshot {
        let mut order: Vec<(u64, u32)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (name_cookie(n), i as u32))
            .collect();
        order.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| names.get(a.1 as usize).cmp(&names.get(b.1 as usize)))
        });
        let name_bytes: usize = names.iter().map(Vec::len).sum();
        let mut store = match &spare {
            Some(s) => lock_spare(s).take(order.len(), name_bytes),
            None => Spare::default().take(order.len(), name_bytes),
        };
        for (cookie, i) in order {
            let Some(name) = names.get(i as usize) else {
                continue;
            };
            // Names are at most 255 bytes, so a u32 holds the end of 16 million of them; a
            // listing past that (over 4 GiB of names) is cut short rather than wrapped.
            let Ok(end) = u32::try_from(store.names.len() + name.len()) else {
                break;
            };
            store.names.extend_from_slice(name);
            store.cookies.push(cookie);
            store.ends.push(end);
        }
        DirSnapshot {
            store,
            spare,
            mtime: attr.mtime,
            ctime: attr.ctime,
            ino: attr.ino,
            taken: Instant::now(),
        }
    }

    /// Entries in the directory.
    pub(crate) fn len(&self) -> usize {
        self.store.cookies.len()
    }

    /// The name of entry `i`.
    fn name(&self, i: usize) -> &[u8] {
        let end_of = |i: usize| self.store.ends.get(i).map_or(0, |e| *e as usize);
        let start = i.checked_sub(1).map_or(0, end_of);
        self.store.names.get(start..end_of(i)).unwrap_or_default()
    }

    /// The entries from index `from` on, as (cookie, name), in cookie order.
    pub(crate) fn entries_from(&self, from: usize) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let cookies = self.store.cookies.iter().enumerate().skip(from);
        cookies.map(|(i, cookie)| (*cookie, self.name(i)))
    }

    /// Every entry, as (cookie, name), in cookie order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.entries_from(0)
    }

    /// What this snapshot costs in memory, as the cache counts it.
    fn bytes(&self) -> usize {
        self.store.capacity() + SNAPSHOT_OVERHEAD
    }

    /// Whether the directory holds an entry named `name`.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        let cookie = name_cookie(name);
        let cookies = &self.store.cookies;
        let from = cookies.partition_point(|c| *c < cookie);
        (from..self.len())
            .take_while(|&i| cookies.get(i) == Some(&cookie))
            .any(|i| self.name(i) == name)
    }

    /// Index of the first entry whose cookie is greater than `cookie`.
    pub(crate) fn position_after(&self, cookie: u64) -> usize {
        self.store.cookies.partition_point(|c| *c <= cookie)
    }

    fn still_valid(&self, attr: &Attr, max_age: Duration) -> bool {
        self.mtime == attr.mtime
            && self.ctime == attr.ctime
            && self.ino == attr.ino
            && self.taken.elapsed() < max_age
    }
}

/// Limits of the [`DirCache`].
#[derive(Debug, Clone)]
pub(crate) struct DirCacheLimits {
    /// Directories kept.
    pub max_dirs: usize,
    /// Bytes of snapshots kept (a larger snapshot is served from its one read only).
    pub max_bytes: usize,
    /// A snapshot is re-read after this long even if the directory's times did not change: some
    /// FUSE file systems do not update a directory's mtime when its content changes.
    pub max_age: Duration,
}

impl Default for DirCacheLimits {
    fn default() -> Self {
        DirCacheLimits {
            // The bound in bytes is the one that matters; this one only keeps a pass over
            // the cache short. A walk of a library of 10,000 folders, each listed by its own
            // call, keeps every folder's snapshot for the next walk.
            max_dirs: 32768,
            max_bytes: 16 << 20,
            max_age: Duration::from_secs(2),
        }
    }
}

/// A bounded cache of [`DirSnapshot`]s keyed by directory path.
pub(crate) struct DirCache {
    limits: DirCacheLimits,
    inner: Mutex<Inner>,
    spare: SharedSpare,
}

#[derive(Default)]
struct Inner {
    map: HashMap<RelPath, (Arc<DirSnapshot>, u64)>,
    bytes: usize,
    entries: usize,
    tick: u64,
    /// When to look for expired snapshots again (see [`DirCache::insert`]).
    next_sweep: Option<Instant>,
}

impl Inner {
    fn remove(&mut self, path: &RelPath) {
        if let Some((old, _)) = self.map.remove(path) {
            self.bytes -= old.bytes();
            self.entries -= old.len();
        }
    }
}

impl DirCache {
    pub(crate) fn new(limits: DirCacheLimits) -> Self {
        let spare = Arc::new(Mutex::new(Spare {
            max_bytes: limits.max_bytes / 4,
            ..Spare::default()
        }));
        DirCache {
            limits,
            inner: Mutex::new(Inner::default()),
            spare,
        }
    }

    /// Bytes snapshots may hold: the bound less what spare buffers may.
    fn snapshot_bytes(&self) -> usize {
        self.limits.max_bytes - self.limits.max_bytes / 4
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The snapshot of the directory at `path`, whose current attributes are `attr`. Reads the
    /// directory when no valid snapshot is cached.
    pub(crate) fn snapshot(
        &self,
        backend: &dyn Backend,
        path: &RelPath,
        attr: &Attr,
    ) -> Result<Arc<DirSnapshot>, FsError> {
        {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some((snap, used)) = inner.map.get_mut(path) {
                if snap.still_valid(attr, self.limits.max_age) {
                    *used = tick;
                    return Ok(snap.clone());
                }
            }
        }
        let names = backend.read_dir(path)?;
        let snap = Arc::new(DirSnapshot::new(names, attr, Some(self.spare.clone())));
        self.insert(path.clone(), snap.clone());
        Ok(snap)
    }

    fn insert(&self, path: RelPath, snap: Arc<DirSnapshot>) {
        let n = snap.bytes();
        let mut inner = self.lock();
        inner.remove(&path);
        // Snapshots too old to be served again only hold memory. Looking for them costs a
        // pass over the whole cache, so it is done a few times per `max_age`, not per insert: a
        // walk of a tree of small directories inserts thousands of snapshots a second, and the
        // passes (a clock read per snapshot) were a fifth of the server's time. Expired
        // snapshots are never served meanwhile, and the bounds below hold either way.
        let max_age = self.limits.max_age;
        let now = Instant::now();
        if inner.next_sweep.is_none_or(|at| now >= at) {
            inner.next_sweep = Some(now + max_age / 4);
            let expired: Vec<RelPath> = inner
                .map
                .iter()
                .filter(|(_, (s, _))| now.saturating_duration_since(s.taken) >= max_age)
                .map(|(k, _)| k.clone())
                .collect();
            for k in &expired {
                inner.remove(k);
            }
        }
        let max_bytes = self.snapshot_bytes();
        if n > max_bytes {
            return; // Too big to keep: served from this one read only.
        }
        inner.tick += 1;
        let tick = inner.tick;
        if inner.map.len() >= self.limits.max_dirs || inner.bytes + n > max_bytes {
            self.evict(&mut inner, n, max_bytes);
        }
        inner.bytes += n;
        inner.entries += snap.len();
        inner.map.insert(path, (snap, tick));
    }

    /// Drop the least recently used snapshots until one of `n` bytes fits with a sixteenth of
    /// the bounds (directories and bytes) to spare: finding them is a pass over the cache, and a
    /// walk of a tree of small directories, which inserts a snapshot per call, would otherwise
    /// make that pass on every call once the cache is full.
    fn evict(&self, inner: &mut Inner, n: usize, max_bytes: usize) {
        let keep_dirs = self.limits.max_dirs - self.limits.max_dirs / 16;
        let keep_bytes = max_bytes - max_bytes / 16;
        // Ticks are unique: the oldest snapshots are those used at or before a cut-off tick.
        let mut by_use: Vec<(u64, usize)> = inner
            .map
            .values()
            .map(|(s, used)| (*used, s.bytes()))
            .collect();
        by_use.sort_unstable();
        let (mut dirs, mut bytes) = (inner.map.len(), inner.bytes);
        let mut cut = None;
        for (used, b) in by_use {
            if dirs < keep_dirs && bytes + n <= keep_bytes {
                break;
            }
            dirs -= 1;
            bytes -= b;
            cut = Some(used);
        }
        let Some(cut) = cut else { return };
        let Inner {
            map,
            bytes,
            entries,
            ..
        } = inner;
        map.retain(|_, (s, used)| {
            let keep = *used > cut;
            if !keep {
                *bytes -= s.bytes();
                *entries -= s.len();
            }
            keep
        });
    }

    /// Bytes (snapshots and spare buffers) and entries held now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let (bytes, entries) = {
            let inner = self.lock();
            (inner.bytes, inner.entries)
        };
        (bytes + lock_spare(&self.spare).bytes, entries)
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.limits.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mountshare_fs::LocalFs;

    #[test]
    fn snapshots_are_sorted_by_cookie_and_the_cache_is_bounded_in_bytes() {
        // Large enough that a snapshot's buffers are worth keeping spare.
        const N: usize = 300;
        let name = |i: usize| format!("name-{i}-{}", "x".repeat(240));
        let t = tempfile::tempdir().unwrap();
        for d in ["a", "b", "c"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
            for i in 0..N {
                std::fs::write(t.path().join(d).join(name(i)), b"").unwrap();
            }
        }
        let fs = LocalFs::open(t.path()).unwrap();
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let one = DirSnapshot::new(fs.read_dir(&a).unwrap(), &attr, None);
        assert_eq!(one.len(), N);
        assert!(one.bytes() >= MIN_SPARE_BYTES);
        let cookies: Vec<u64> = one.entries().map(|(c, _)| c).collect();
        assert!(cookies.windows(2).all(|w| w[0] <= w[1]), "cookie order");
        assert!(one.entries().all(|(c, n)| name_cookie(n) == c));
        assert!(one.contains(name(42).as_bytes()) && !one.contains(name(N).as_bytes()));
        let after = one.position_after(cookies[9]);
        assert_eq!(one.entries_from(after).count(), N - 10);
        // Room for two snapshots, not three (a quarter of the bound is for
        // spare buffers).
        let cache = DirCache::new(DirCacheLimits {
            max_bytes: one.bytes() * 4 - 100,
            ..DirCacheLimits::default()
        });
        for d in ["a", "b", "c"] {
            let p = RelPath::parse(d.as_bytes()).unwrap();
            let attr = fs.stat(&p).unwrap();
            assert_eq!(cache.snapshot(&fs, &p, &attr).unwrap().len(), N);
        }
        let (bytes, entries) = cache.usage();
        assert!(bytes <= cache.max_bytes(), "{bytes}");
        assert_eq!(entries, 2 * N, "the least recently used went");
        // Its buffers wait for the next snapshot, which reuses them.
        let spare = lock_spare(&cache.spare).stores.len();
        assert_eq!(spare, 1);
        let p = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&p).unwrap();
        assert_eq!(cache.snapshot(&fs, &p, &attr).unwrap().len(), N);
        assert!(lock_spare(&cache.spare).stores.len() <= spare);
    }
}
