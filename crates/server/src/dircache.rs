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
//! and in bytes, and drops snapshots as soon as they are too old to be served again.
use crate::handle::name_cookie;
use mountshare_fs::{Attr, Backend, FsError, RelPath, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes counted for a snapshot besides its names and index: the map slot, the `Arc` and the
/// struct itself.
const SNAPSHOT_OVERHEAD: usize = 160;

/// One directory's entries, sorted by cookie.
#[derive(Debug)]
pub(crate) struct DirSnapshot {
    /// Cookies, ascending.
    cookies: Box<[u64]>,
    /// Where each entry's name ends in `names` (it starts where the previous one ends).
    ends: Box<[u32]>,
    /// Every name, in cookie order.
    names: Box<[u8]>,
    mtime: Timestamp,
    ctime: Timestamp,
    ino: u64,
    taken: Instant,
}

impl DirSnapshot {
    /// A snapshot of `names`, whose directory has attributes `attr`.
    fn new(names: Vec<Vec<u8>>, attr: &Attr) -> DirSnapshot {
        let mut entries: Vec<(u64, Vec<u8>)> =
            names.into_iter().map(|n| (name_cookie(&n), n)).collect();
        entries.sort_unstable();
        let total: usize = entries.iter().map(|(_, n)| n.len()).sum();
        let mut all = Vec::with_capacity(total);
        let mut cookies = Vec::with_capacity(entries.len());
        let mut ends = Vec::with_capacity(entries.len());
        for (cookie, name) in entries {
            // Names are at most 255 bytes, so a u32 holds the end of 16 million of them; a
            // listing past that (over 4 GiB of names) is cut short rather than wrapped.
            let Ok(end) = u32::try_from(all.len() + name.len()) else {
                break;
            };
            all.extend_from_slice(&name);
            cookies.push(cookie);
            ends.push(end);
        }
        DirSnapshot {
            cookies: cookies.into(),
            ends: ends.into(),
            names: all.into(),
            mtime: attr.mtime,
            ctime: attr.ctime,
            ino: attr.ino,
            taken: Instant::now(),
        }
    }

    /// Entries in the directory.
    pub(crate) fn len(&self) -> usize {
        self.cookies.len()
    }

    /// The name of entry `i`.
    fn name(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.names[start..self.ends[i] as usize]
    }

    /// The entries from index `from` on, as (cookie, name), in cookie order.
    pub(crate) fn entries_from(&self, from: usize) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        (from..self.len()).map(|i| (self.cookies[i], self.name(i)))
    }

    /// Every entry, as (cookie, name), in cookie order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.entries_from(0)
    }

    /// What this snapshot costs in memory, as the cache counts it.
    fn bytes(&self) -> usize {
        self.names.len() + self.cookies.len() * 12 + SNAPSHOT_OVERHEAD
    }

    /// Whether the directory holds an entry named `name`.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        let cookie = name_cookie(name);
        let from = self.cookies.partition_point(|c| *c < cookie);
        (from..self.len())
            .take_while(|&i| self.cookies[i] == cookie)
            .any(|i| self.name(i) == name)
    }

    /// Index of the first entry whose cookie is greater than `cookie`.
    pub(crate) fn position_after(&self, cookie: u64) -> usize {
        self.cookies.partition_point(|c| *c <= cookie)
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
            max_dirs: 1024,
            max_bytes: 16 << 20,
            max_age: Duration::from_secs(2),
        }
    }
}

/// A bounded cache of [`DirSnapshot`]s keyed by directory path.
pub(crate) struct DirCache {
    limits: DirCacheLimits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<RelPath, (Arc<DirSnapshot>, u64)>,
    bytes: usize,
    entries: usize,
    tick: u64,
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
        DirCache {
            limits,
            inner: Mutex::new(Inner::default()),
        }
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
        let snap = Arc::new(DirSnapshot::new(backend.read_dir(path)?, attr));
        self.insert(path.clone(), snap.clone());
        Ok(snap)
    }

    fn insert(&self, path: RelPath, snap: Arc<DirSnapshot>) {
        let n = snap.bytes();
        let mut inner = self.lock();
        inner.remove(&path);
        // Snapshots too old to be served again only hold memory.
        let max_age = self.limits.max_age;
        let expired: Vec<RelPath> = inner
            .map
            .iter()
            .filter(|(_, (s, _))| s.taken.elapsed() >= max_age)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            inner.remove(k);
        }
        if n > self.limits.max_bytes {
            return; // Too big to keep: served from this one read only.
        }
        inner.tick += 1;
        let tick = inner.tick;
        while !inner.map.is_empty()
            && (inner.map.len() >= self.limits.max_dirs || inner.bytes + n > self.limits.max_bytes)
        {
            let victim = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(v) => inner.remove(&v),
                None => break,
            }
        }
        inner.bytes += n;
        inner.entries += snap.len();
        inner.map.insert(path, (snap, tick));
    }

    /// Bytes and entries held now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.bytes, inner.entries)
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
        let t = tempfile::tempdir().unwrap();
        for d in ["a", "b", "c"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
            for i in 0..100 {
                std::fs::write(t.path().join(d).join(format!("name-{i}")), b"").unwrap();
            }
        }
        let fs = LocalFs::open(t.path()).unwrap();
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let one = DirSnapshot::new(fs.read_dir(&a).unwrap(), &attr);
        assert_eq!(one.len(), 100);
        let cookies: Vec<u64> = one.entries().map(|(c, _)| c).collect();
        assert!(cookies.windows(2).all(|w| w[0] <= w[1]), "cookie order");
        assert!(one.entries().all(|(c, n)| name_cookie(n) == c));
        assert!(one.contains(b"name-42") && !one.contains(b"name-100"));
        let after = one.position_after(cookies[9]);
        assert_eq!(one.entries_from(after).count(), 90);
        // Room for two snapshots of 100 entries, not three.
        let cache = DirCache::new(DirCacheLimits {
            max_bytes: one.bytes() * 2 + 10,
            ..DirCacheLimits::default()
        });
        for d in ["a", "b", "c"] {
            let p = RelPath::parse(d.as_bytes()).unwrap();
            let attr = fs.stat(&p).unwrap();
            assert_eq!(cache.snapshot(&fs, &p, &attr).unwrap().len(), 100);
        }
        let (bytes, entries) = cache.usage();
        assert!(bytes <= cache.max_bytes(), "{bytes}");
        assert_eq!(entries, 200, "the least recently used went");
    }
}
