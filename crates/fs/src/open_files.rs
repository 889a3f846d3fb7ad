//! A bounded cache of open files, so READ does not open and close the file on every call.
//!
//! Reads use `pread` on a shared descriptor, so any number of concurrent READs of one file share
//! one entry. An entry older than the revalidation interval is checked against the path again
//! (device and inode), so a file replaced on the host is reopened rather than served stale.
//! The cache is bounded in descriptors and in bytes (its paths, plus a fixed cost per entry).
use crate::{Attr, RelPath};
use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters of the cache, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFileCacheStats {
    pub hits: u64,
    pub opens: u64,
    pub evictions: u64,
    pub open_now: usize,
    /// Bytes held now, as the bound counts them.
    pub bytes: usize,
}

/// Bytes counted per entry besides its path: the entry, its map slot and the `Arc<File>`.
const ENTRY_OVERHEAD: usize = 128;

fn cost(path: &RelPath) -> usize {
    path.as_bytes().len() + ENTRY_OVERHEAD
}

struct Entry {
    file: Arc<File>,
    dev: u64,
    ino: u64,
    validated: Instant,
    last_used: u64,
}

pub(crate) struct OpenFileCache {
    inner: Mutex<Inner>,
    capacity: usize,
    max_bytes: usize,
    revalidate_after: Duration,
}

struct Inner {
    map: HashMap<RelPath, Entry>,
    bytes: usize,
    tick: u64,
    stats: OpenFileCacheStats,
}

impl Inner {
    fn remove(&mut self, path: &RelPath) -> bool {
        let gone = self.map.remove(path).is_some();
        if gone {
            self.bytes -= cost(path);
        }
        gone
    }
}

/// The result of a lookup: a cached descriptor, or a miss with the stale entry (if any) dropped.
pub(crate) enum Cached {
    Fresh(Arc<File>),
    /// Present but due for revalidation against the path: (file, dev, ino).
    Check(Arc<File>, u64, u64),
    Miss,
}

impl OpenFileCache {
    /// At most `capacity` descriptors and `max_bytes` bytes.
    pub(crate) fn new(capacity: usize, max_bytes: usize, revalidate_after: Duration) -> Self {
        OpenFileCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                bytes: 0,
                tick: 0,
                stats: OpenFileCacheStats::default(),
            }),
            capacity: capacity.max(1),
            max_bytes,
            revalidate_after,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves only counters and descriptors: keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, path: &RelPath) -> Cached {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let now = Instant::now();
        let hit = match inner.map.get_mut(path) {
            None => return Cached::Miss,
            Some(e) => {
                e.last_used = tick;
                if now.duration_since(e.validated) < self.revalidate_after {
                    Cached::Fresh(e.file.clone())
                } else {
                    Cached::Check(e.file.clone(), e.dev, e.ino)
                }
            }
        };
        inner.stats.hits += 1;
        hit
    }

    /// Mark an entry as checked against its path just now.
    pub(crate) fn validated(&self, path: &RelPath) {
        if let Some(e) = self.lock().map.get_mut(path) {
            e.validated = Instant::now();
        }
    }

    pub(crate) fn remove(&self, path: &RelPath) {
        self.lock().remove(path);
    }

    pub(crate) fn insert(&self, path: RelPath, file: Arc<File>, attr: &Attr) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        inner.stats.opens += 1;
        inner.remove(&path);
        let add = cost(&path);
        if add > self.max_bytes {
            return; // A path longer than the whole bound: used once, not kept.
        }
        while !inner.map.is_empty()
            && (inner.map.len() >= self.capacity || inner.bytes + add > self.max_bytes)
        {
            // Evict the least recently used. O(n) over a small, bounded map; only on a miss.
            let Some(victim) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.remove(&victim);
            inner.stats.evictions += 1;
        }
        inner.bytes += add;
        inner.map.insert(
            path,
            Entry {
                file,
                dev: attr.dev,
                ino: attr.ino,
                validated: Instant::now(),
                last_used: tick,
            },
        );
    }

    pub(crate) fn stats(&self) -> OpenFileCacheStats {
        let inner = self.lock();
        OpenFileCacheStats {
            open_now: inner.map.len(),
            bytes: inner.bytes,
            ..inner.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr() -> Attr {
        let file = File::open("/").unwrap();
        Attr::of_file(&file).unwrap()
    }

    #[test]
    fn bounded_in_descriptors_and_in_bytes() {
        let a = attr();
        let file = Arc::new(File::open("/").unwrap());
        let cache = OpenFileCache::new(4, 3 * (ENTRY_OVERHEAD + 2), Duration::from_secs(2));
        for i in 0..10 {
            let p = RelPath::parse(format!("f{i}").as_bytes()).unwrap();
            cache.insert(p, file.clone(), &a);
        }
        let st = cache.stats();
        assert_eq!(
            st.open_now, 3,
            "three short paths fit the bytes, under 4 descriptors"
        );
        assert!(st.bytes <= 3 * (ENTRY_OVERHEAD + 2));
        let long = RelPath::parse("d/".repeat(300).as_bytes()).unwrap();
        cache.insert(long.clone(), file.clone(), &a);
        assert!(matches!(cache.get(&long), Cached::Miss), "too long to keep");
        let p9 = RelPath::parse(b"f9").unwrap();
        assert!(
            matches!(cache.get(&p9), Cached::Fresh(_)),
            "the newest is kept"
        );
    }
}
