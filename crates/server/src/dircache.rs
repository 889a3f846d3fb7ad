//! Directory snapshots for READDIR, READDIRPLUS and handle resolution.
//!
//! A snapshot is a directory's names sorted by their cookie ([`crate::handle::name_cookie`]).
//! Because a cookie is derived from the name alone, resuming after cookie `c` means "entries
//! whose cookie is greater than `c`": entries present for the whole listing come back exactly
//! once, whatever is added or removed meanwhile, and cookies stay valid across restarts.
//!
//! Snapshots are cached so that a 100,000-entry directory is read once per listing, not once per
//! call. The cache is bounded in directories and in total entries.
use crate::handle::name_cookie;
use mountshare_fs::{Attr, Backend, FsError, RelPath, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One directory's entries, sorted by cookie.
#[derive(Debug)]
pub(crate) struct DirSnapshot {
    /// (cookie, name), ascending by cookie.
    pub entries: Vec<(u64, Vec<u8>)>,
    mtime: Timestamp,
    ctime: Timestamp,
    ino: u64,
    taken: Instant,
}

impl DirSnapshot {
    /// Whether the directory holds an entry named `name`.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        let cookie = name_cookie(name);
        let from = self.entries.partition_point(|(c, _)| *c < cookie);
        self.entries[from..]
            .iter()
            .take_while(|(c, _)| *c == cookie)
            .any(|(_, n)| n == name)
    }

    /// Index of the first entry whose cookie is greater than `cookie`.
    pub(crate) fn position_after(&self, cookie: u64) -> usize {
        self.entries.partition_point(|(c, _)| *c <= cookie)
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
    pub max_entries: usize,
    /// A snapshot is re-read after this long even if the directory's times did not change: some
    /// FUSE file systems do not update a directory's mtime when its content changes.
    pub max_age: Duration,
}

impl Default for DirCacheLimits {
    fn default() -> Self {
        DirCacheLimits {
            max_dirs: 1024,
            max_entries: 2_000_000,
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
    entries: usize,
    tick: u64,
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
        let names = backend.read_dir(path)?;
        let mut entries: Vec<(u64, Vec<u8>)> =
            names.into_iter().map(|n| (name_cookie(&n), n)).collect();
        entries.sort_unstable();
        let snap = Arc::new(DirSnapshot {
            entries,
            mtime: attr.mtime,
            ctime: attr.ctime,
            ino: attr.ino,
            taken: Instant::now(),
        });
        self.insert(path.clone(), snap.clone());
        Ok(snap)
    }

    fn insert(&self, path: RelPath, snap: Arc<DirSnapshot>) {
        let n = snap.entries.len();
        if n > self.limits.max_entries {
            return; // Too big to keep: served from this one read only.
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, _)) = inner.map.remove(&path) {
            inner.entries -= old.entries.len();
        }
        while !inner.map.is_empty()
            && (inner.map.len() >= self.limits.max_dirs
                || inner.entries + n > self.limits.max_entries)
        {
            let victim = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match victim.and_then(|v| inner.map.remove(&v)) {
                Some((old, _)) => inner.entries -= old.entries.len(),
                None => break,
            }
        }
        inner.entries += n;
        inner.map.insert(path, (snap, tick));
    }
}
