//! A bounded cache of open files, so READ does not open and close the file on every call.
//!
//! Reads use `pread` on a shared descriptor, so any number of concurrent READs of one file share
//! one entry. An entry older than the revalidation interval is checked against the path again
//! (device and inode), so a file replaced on the host is reopened rather than served stale.
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
    revalidate_after: Duration,
}

struct Inner {
    map: HashMap<RelPath, Entry>,
    tick: u64,
    stats: OpenFileCacheStats,
}

/// The result of a lookup: a cached descriptor, or a miss with the stale entry (if any) dropped.
pub(crate) enum Cached {
    Fresh(Arc<File>),
    /// Present but due for revalidation against the path: (file, dev, ino).
    Check(Arc<File>, u64, u64),
    Miss,
}

impl OpenFileCache {
    pub(crate) fn new(capacity: usize, revalidate_after: Duration) -> Self {
        OpenFileCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
                stats: OpenFileCacheStats::default(),
            }),
            capacity: capacity.max(1),
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
        let mut inner = self.lock();
        inner.map.remove(path);
    }

    pub(crate) fn insert(&self, path: RelPath, file: Arc<File>, attr: &Attr) {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        inner.stats.opens += 1;
        if !inner.map.contains_key(&path) && inner.map.len() >= self.capacity {
            // Evict the least recently used. O(n) over a small, bounded map; only on a miss.
            if let Some(victim) = inner
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            {
                inner.map.remove(&victim);
                inner.stats.evictions += 1;
            }
        }
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
            ..inner.stats
        }
    }
}
