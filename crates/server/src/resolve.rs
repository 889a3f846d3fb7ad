//! Turning a file handle back into a path, with no state that must survive a restart.
//!
//! Handles seen recently are in a bounded cache. Any other handle (after a restart, or on a
//! second server over the same tree) is found by a walk from the root guided by the handle's
//! per-component hashes, and accepted only if the whole-path hash matches.
use crate::dircache::{DirCache, DirSnapshot, Want};
use crate::error::{self, Unresolved};
use crate::handle::{component_hash, path_hash, FileHandle, MAX_GUIDED_DEPTH};
use crate::metrics::{Metrics, SearchOutcome, WalkOutcome};
use mountshare_fs::{Backend, RelPath};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most directory entries a search below the guided depth may visit before giving up.
const MAX_SEARCH_ENTRIES: usize = 200_000;
/// Longest a search below the guided depth may take before giving up (checked between
/// directories and every few hundred entries; one listing that hangs is the backend timeout's
/// business).
const MAX_SEARCH_TIME: Duration = Duration::from_millis(100);
/// Entries visited between two looks at the clock.
const CLOCK_EVERY: usize = 256;

/// Bytes counted per handle-cache entry besides its path bytes: its map slot (hash, offset,
/// length, control byte) and the map's spare capacity.
const HANDLE_OVERHEAD: usize = 24;

/// A map from path hash to path, bounded in bytes, of two generations: lookups hit either,
/// inserts go to the young one, and when it holds half the bound the old one is emptied and
/// becomes the young one. Constant time, no unbounded growth.
///
/// A generation keeps its paths' bytes in one buffer, not one allocation per path, and is
/// emptied without giving its memory back: after the first turnovers the cache allocates
/// nothing. (Hundreds of thousands of small allocations, freed a generation at a time by
/// whichever threads ran the calls, left the allocator's per-thread arenas fragmented, and
/// RSS grew with every walk of a large tree.)
pub(crate) struct HandleCache {
    max_bytes: usize,
    inner: Mutex<[Generation; 2]>,
}

/// A hasher for keys that are already hashes (xxh3 of the path): they are used as they are.
/// Hashing them again (SipHash, the default) cost as much as the rest of an insert.
#[derive(Default)]
struct PathHashHasher(u64);

impl std::hash::Hasher for PathHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); anything else is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

#[derive(Default)]
struct Generation {
    /// Path hash to the path's place in `paths`.
    map: HashMap<u64, (u32, u32), std::hash::BuildHasherDefault<PathHashHasher>>,
    paths: Vec<u8>,
}

impl Generation {
    fn bytes(&self) -> usize {
        self.paths.len() + self.map.len() * HANDLE_OVERHEAD
    }

    fn path(&self, hash: u64) -> Option<&[u8]> {
        let &(at, len) = self.map.get(&hash)?;
        self.paths.get(at as usize..at as usize + len as usize)
    }

    /// Whether it holds `path` under `hash`.
    fn holds(&self, hash: u64, path: &[u8]) -> bool {
        self.path(hash) == Some(path)
    }

    /// Add `path` under `hash`, which it does not hold yet.
    fn insert(&mut self, hash: u64, path: &[u8]) {
        let (Ok(at), Ok(len)) = (u32::try_from(self.paths.len()), u32::try_from(path.len())) else {
            return;
        };
        self.paths.extend_from_slice(path);
        self.map.insert(hash, (at, len));
    }

    fn clear(&mut self) {
        self.map.clear();
        self.paths.clear();
    }
}

impl HandleCache {
    /// A cache of at most `max_bytes` (counted as path bytes plus a fixed overhead per entry).
    pub(crate) fn new(max_bytes: usize) -> Self {
        HandleCache {
            max_bytes,
            inner: Mutex::new(Default::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [Generation; 2]> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, path: &RelPath) {
        self.insert_hashed(path_hash(path), path.as_bytes());
    }

    /// [`HandleCache::insert`] of the path `bytes` (those of a valid [`RelPath`]), whose
    /// [`path_hash`] is `hash`.
    pub(crate) fn insert_hashed(&self, hash: u64, bytes: &[u8]) {
        let mut g = self.lock();
        let [young, old] = &mut *g;
        if young.holds(hash, bytes) {
            return;
        }
        if young.bytes() + bytes.len() + HANDLE_OVERHEAD > self.max_bytes / 2
            && !young.map.is_empty()
        {
            std::mem::swap(young, old);
            young.clear();
        }
        young.insert(hash, bytes);
    }

    fn get(&self, fh: &FileHandle) -> Option<RelPath> {
        let g = self.lock();
        let [young, old] = &*g;
        if let Some(p) = young.path(fh.path_hash) {
            // The common case on every call: no write to the map.
            return RelPath::from_bytes(p).ok().filter(|p| fh.matches(p));
        }
        // Seen before the last turnover: promote it, so it survives the next one.
        let path = RelPath::from_bytes(old.path(fh.path_hash)?)
            .ok()
            .filter(|p| fh.matches(p))?;
        drop(g);
        self.insert(&path);
        Some(path)
    }

    /// Bytes and entries held now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let [young, old] = &*self.lock();
        (young.bytes() + old.bytes(), young.map.len() + old.map.len())
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

/// Find the path `fh` names: from the cache, or by a guided walk of the tree (counted in
/// `metrics`).
pub(crate) fn resolve(
    fh: &FileHandle,
    backend: &Arc<dyn Backend>,
    dirs: &DirCache,
    cache: &HandleCache,
    metrics: &Metrics,
) -> Result<RelPath, Unresolved> {
    if fh.depth == 0 {
        return if fh.matches(&RelPath::root()) {
            Ok(RelPath::root())
        } else {
            Err(Unresolved::Stale)
        };
    }
    if let Some(p) = cache.get(fh) {
        return Ok(p);
    }
    let mut failed = None;
    let found = walk(fh, backend, dirs, &mut failed, metrics);
    metrics.walked(match (&found, &failed) {
        (Some(_), _) => WalkOutcome::Found,
        (None, None) => WalkOutcome::NotFound,
        (None, Some(_)) => WalkOutcome::Failed,
    });
    let found = found.ok_or(failed.unwrap_or(Unresolved::Stale))?;
    cache.insert(&found);
    tracing::debug!(path = %found, "resolved handle by walking the tree");
    Ok(found)
}

/// The snapshot of `dir`, if it is a directory that can be listed now. A failure to list is
/// recorded in `failed` when [`error::walk_failed`] says it proves nothing.
fn listing(
    backend: &Arc<dyn Backend>,
    dirs: &DirCache,
    dir: &RelPath,
    failed: &mut Option<Unresolved>,
) -> Option<Arc<DirSnapshot>> {
    listed(backend, dirs, dir, failed, false)
}

/// [`listing`], `again`: listed now unless listed within the refresh interval.
fn listed(
    backend: &Arc<dyn Backend>,
    dirs: &DirCache,
    dir: &RelPath,
    failed: &mut Option<Unresolved>,
    again: bool,
) -> Option<Arc<DirSnapshot>> {
    let snap = backend
        .stat(dir)
        .and_then(|attr| match (attr.is_dir(), again) {
            (false, _) => Ok(None),
            (true, false) => dirs.snapshot(backend, dir, &attr, Want::Names).map(Some),
            (true, true) => dirs.relisted(backend, dir, &attr).map(Some),
        });
    match snap {
        Ok(snap) => snap,
        Err(e) => {
            // A directory that failed may hold the path: the walk can no longer prove it gone.
            if let Some(why) = error::walk_failed(&e) {
                *failed = Some(why);
            }
            None
        }
    }
}

fn children(
    backend: &Arc<dyn Backend>,
    dirs: &DirCache,
    dir: &RelPath,
    failed: &mut Option<Unresolved>,
) -> Vec<RelPath> {
    listing(backend, dirs, dir, failed).map_or_else(Vec::new, |snap| {
        snap.entries()
            .filter_map(|(_, name)| dir.join(name).ok())
            .collect()
    })
}

/// The path `fh` names, found from the root. `failed` records a directory on the way that the
/// file system could not list (so a miss proves nothing).
fn walk(
    fh: &FileHandle,
    backend: &Arc<dyn Backend>,
    dirs: &DirCache,
    failed: &mut Option<Unresolved>,
    metrics: &Metrics,
) -> Option<RelPath> {
    let depth = usize::from(fh.depth);
    let mut frontier = vec![RelPath::root()];
    for want in &fh.components {
        let mut next = Vec::new();
        // The listings in hand first; if none holds the name, listings made now (a listing in
        // hand may be up to a refresh interval older than the name).
        for again in [false, true] {
            for dir in &frontier {
                let Some(snap) = listed(backend, dirs, dir, failed, again) else {
                    continue;
                };
                // Only the names whose hash matches become paths: a big directory costs no
                // joins.
                for (_, name) in snap.entries().filter(|(_, n)| component_hash(n) == *want) {
                    if let Ok(p) = dir.join(name) {
                        next.push(p);
                    }
                }
            }
            if !next.is_empty() {
                break;
            }
        }
        if next.is_empty() {
            return None;
        }
        frontier = next;
    }
    if depth <= MAX_GUIDED_DEPTH {
        return frontier.into_iter().find(|p| fh.matches(p));
    }
    // Deeper than the handle's guide: search the subtrees below, bounded.
    let began = Instant::now();
    let mut visited = 0;
    let (found, outcome) = search(
        fh,
        frontier,
        backend,
        dirs,
        failed,
        &mut visited,
        began + MAX_SEARCH_TIME,
    );
    metrics.searched(outcome, visited as u64, began.elapsed());
    if outcome == SearchOutcome::TimeLimit {
        tracing::debug!(depth, visited, "gave up a handle search at its time limit");
    }
    found
}

/// Search the subtrees below `frontier` (at the guided depth) for the path `fh` names, visiting
/// at most [`MAX_SEARCH_ENTRIES`] entries (counted in `visited`) until `deadline`.
fn search(
    fh: &FileHandle,
    frontier: Vec<RelPath>,
    backend: &Arc<dyn Backend>,
    dirs: &DirCache,
    failed: &mut Option<Unresolved>,
    visited: &mut usize,
    deadline: Instant,
) -> (Option<RelPath>, SearchOutcome) {
    let depth = usize::from(fh.depth);
    let mut stack: Vec<(RelPath, usize)> = frontier
        .into_iter()
        .map(|p| (p, MAX_GUIDED_DEPTH))
        .collect();
    let mut clock = CLOCK_EVERY;
    while let Some((dir, d)) = stack.pop() {
        if Instant::now() >= deadline {
            return (None, SearchOutcome::TimeLimit);
        }
        for child in children(backend, dirs, &dir, failed) {
            if *visited >= MAX_SEARCH_ENTRIES {
                return (None, SearchOutcome::EntryLimit);
            }
            *visited += 1;
            clock -= 1;
            if clock == 0 {
                clock = CLOCK_EVERY;
                if Instant::now() >= deadline {
                    return (None, SearchOutcome::TimeLimit);
                }
            }
            if d + 1 == depth {
                if fh.matches(&child) {
                    return (Some(child), SearchOutcome::Found);
                }
            } else {
                stack.push((child, d + 1));
            }
        }
    }
    (None, SearchOutcome::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dircache::DirCacheLimits;
    use mountshare_fs::LocalFs;

    fn setup() -> (tempfile::TempDir, Arc<dyn Backend>) {
        let t = tempfile::tempdir().unwrap();
        let mut deep = t.path().to_path_buf();
        for i in 0..20 {
            deep.push(format!("level {i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("file"), b"x").unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/c"), b"y").unwrap();
        let fs: Arc<dyn Backend> = Arc::new(LocalFs::open(t.path()).unwrap());
        (t, fs)
    }

    #[test]
    fn fresh_resolver_finds_paths_without_state() {
        let (_t, fs) = setup();
        let mut deep = String::new();
        for i in 0..20 {
            deep.push_str(&format!("level {i}/"));
        }
        deep.push_str("file");
        for path in ["a", "a/b", "a/b/c", deep.as_str()] {
            let p = RelPath::parse(path.as_bytes()).unwrap();
            let fh = FileHandle::for_path(&p).unwrap();
            // A new cache and dir cache: as after a restart.
            let got = resolve(
                &fh,
                &fs,
                &DirCache::new(DirCacheLimits::default()),
                &HandleCache::new(1 << 16),
                &Metrics::default(),
            );
            assert_eq!(got, Ok(p), "{path}");
        }
    }

    #[test]
    fn forged_and_vanished_handles_are_stale() {
        let (t, fs) = setup();
        let dirs = DirCache::new(DirCacheLimits::default());
        let cache = HandleCache::new(1 << 16);
        let m = Metrics::default();
        let p = RelPath::parse(b"a/b/c").unwrap();
        let mut fh = FileHandle::for_path(&p).unwrap();
        fh.path_hash ^= 1;
        assert_eq!(resolve(&fh, &fs, &dirs, &cache, &m), Err(Unresolved::Stale));
        let gone = RelPath::parse(b"a/b/gone").unwrap();
        let fh = FileHandle::for_path(&gone).unwrap();
        assert_eq!(resolve(&fh, &fs, &dirs, &cache, &m), Err(Unresolved::Stale));
        std::fs::remove_file(t.path().join("a/b/c")).unwrap();
        let fh = FileHandle::for_path(&p).unwrap();
        let fresh = DirCache::new(DirCacheLimits::default());
        assert_eq!(
            resolve(&fh, &fs, &fresh, &HandleCache::new(1 << 12), &m),
            Err(Unresolved::Stale)
        );
    }

    /// A handle deeper than its guide makes the server search the tree below the 13th level;
    /// that search gives up at its time limit, and what it cost is counted.
    #[test]
    fn deep_searches_stop_at_their_time_limit_and_are_counted() {
        use mountshare_fs::fault::{Fault, FaultFs, Op};
        let t = tempfile::tempdir().unwrap();
        let mut guided = String::new();
        for i in 0..MAX_GUIDED_DEPTH {
            guided.push_str(&format!("g{i}/"));
        }
        for b in ["b1", "b2", "b3"] {
            std::fs::create_dir_all(t.path().join(format!("{guided}a/{b}"))).unwrap();
            std::fs::write(t.path().join(format!("{guided}a/{b}/file")), b"x").unwrap();
        }
        let target = RelPath::parse(format!("{guided}a/b2/file").as_bytes()).unwrap();
        let fh = FileHandle::for_path(&target).unwrap();
        let faults = Arc::new(FaultFs::new(LocalFs::open(t.path()).unwrap()));
        let fs: Arc<dyn Backend> = faults.clone();
        let found = Metrics::default();
        let fresh = || DirCache::new(DirCacheLimits::default());
        let got = resolve(&fh, &fs, &fresh(), &HandleCache::new(1 << 16), &found);
        assert_eq!(
            got,
            Ok(target.clone()),
            "found when the tree answers at once"
        );
        assert_eq!(found.search_count(SearchOutcome::Found), 1);
        // Listings below the guided depth now take longer than a whole search may.
        let slow = MAX_SEARCH_TIME + Duration::from_millis(50);
        faults.inject(
            Op::ReadDir,
            Fault::delay(slow).on(|p: &RelPath| p.depth() > MAX_GUIDED_DEPTH),
        );
        let m = Metrics::default();
        let got = resolve(&fh, &fs, &fresh(), &HandleCache::new(1 << 16), &m);
        assert_eq!(got, Err(Unresolved::Stale));
        assert_eq!(m.search_count(SearchOutcome::TimeLimit), 1);
        assert_eq!(m.search_count(SearchOutcome::Found), 0);
        assert!(m.search_entries() >= 3, "the entries of a/ were visited");
    }

    #[test]
    fn handle_cache_is_bounded_in_bytes() {
        let c = HandleCache::new(10 * (HANDLE_OVERHEAD + 8));
        for i in 0..1000 {
            c.insert(&RelPath::parse(format!("f{i:07}").as_bytes()).unwrap());
        }
        let (bytes, entries) = c.usage();
        assert!(bytes <= c.max_bytes() && entries <= 10, "{bytes} {entries}");
        // Long paths take more room: fewer of them fit.
        let long = "d/".repeat(200);
        for i in 0..1000 {
            c.insert(&RelPath::parse(format!("{long}f{i}").as_bytes()).unwrap());
        }
        // Each is longer than half the bound: one per generation.
        let (bytes, entries) = c.usage();
        assert_eq!(entries, 2);
        assert!(bytes <= 2 * (long.len() + 5 + HANDLE_OVERHEAD), "{bytes}");
        let last = RelPath::parse(format!("{long}f999").as_bytes()).unwrap();
        let fh = FileHandle::for_path(&last).unwrap();
        assert_eq!(c.get(&fh), Some(last), "the newest is kept");
    }
}
