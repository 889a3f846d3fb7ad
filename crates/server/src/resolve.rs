//! Turning a file handle back into a path, with no state that must survive a restart.
//!
//! Handles seen recently are in a bounded cache. Any other handle (after a restart, or on a
//! second server over the same tree) is found by a walk from the root guided by the handle's
//! per-component hashes, and accepted only if the whole-path hash matches.
use crate::dircache::{DirCache, DirSnapshot};
use crate::error::{self, Unresolved};
use crate::handle::{component_hash, path_hash, FileHandle, MAX_GUIDED_DEPTH};
use mountshare_fs::{Backend, RelPath};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most directory entries a search below the guided depth may visit before giving up.
const MAX_SEARCH_ENTRIES: usize = 200_000;

/// A bounded map from path hash to path, of two generations: lookups hit either, inserts go to
/// the young one, and when it is full the old one is dropped. Constant time, no unbounded growth.
pub(crate) struct HandleCache {
    capacity: usize,
    inner: Mutex<(HashMap<u64, RelPath>, HashMap<u64, RelPath>)>,
}

impl HandleCache {
    pub(crate) fn new(capacity: usize) -> Self {
        HandleCache {
            capacity: capacity.max(2),
            inner: Mutex::new((HashMap::new(), HashMap::new())),
        }
    }

    pub(crate) fn insert(&self, path: &RelPath) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.len() >= self.capacity / 2 {
            g.1 = std::mem::take(&mut g.0);
        }
        g.0.insert(path_hash(path), path.clone());
    }

    fn get(&self, fh: &FileHandle) -> Option<RelPath> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = g.0.get(&fh.path_hash) {
            // The common case on every call: no write to the map.
            return fh.matches(p).then(|| p.clone());
        }
        // Seen before the last turnover: promote it, so it survives the next one.
        let path = g.1.remove(&fh.path_hash).filter(|p| fh.matches(p))?;
        g.0.insert(fh.path_hash, path.clone());
        Some(path)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0.len() + g.1.len()
    }
}

/// Find the path `fh` names: from the cache, or by a guided walk of the tree.
pub(crate) fn resolve(
    fh: &FileHandle,
    backend: &dyn Backend,
    dirs: &DirCache,
    cache: &HandleCache,
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
    let found = walk(fh, backend, dirs, &mut failed).ok_or(failed.unwrap_or(Unresolved::Stale))?;
    cache.insert(&found);
    tracing::debug!(path = %found, "resolved handle by walking the tree");
    Ok(found)
}

/// The snapshot of `dir`, if it is a directory that can be listed now. A failure to list is
/// recorded in `failed` when [`error::walk_failed`] says it proves nothing.
fn listing(
    backend: &dyn Backend,
    dirs: &DirCache,
    dir: &RelPath,
    failed: &mut Option<Unresolved>,
) -> Option<Arc<DirSnapshot>> {
    let snap = backend.stat(dir).and_then(|attr| {
        if attr.is_dir() {
            dirs.snapshot(backend, dir, &attr).map(Some)
        } else {
            Ok(None)
        }
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
    backend: &dyn Backend,
    dirs: &DirCache,
    dir: &RelPath,
    failed: &mut Option<Unresolved>,
) -> Vec<RelPath> {
    listing(backend, dirs, dir, failed).map_or_else(Vec::new, |snap| {
        snap.entries
            .iter()
            .filter_map(|(_, name)| dir.join(name).ok())
            .collect()
    })
}

/// The path `fh` names, found from the root. `failed` records a directory on the way that the
/// file system could not list (so a miss proves nothing).
fn walk(
    fh: &FileHandle,
    backend: &dyn Backend,
    dirs: &DirCache,
    failed: &mut Option<Unresolved>,
) -> Option<RelPath> {
    let depth = usize::from(fh.depth);
    let mut frontier = vec![RelPath::root()];
    for want in &fh.components {
        let mut next = Vec::new();
        for dir in &frontier {
            let Some(snap) = listing(backend, dirs, dir, failed) else {
                continue;
            };
            // Only the names whose hash matches become paths: a big directory costs no joins.
            for (_, name) in snap
                .entries
                .iter()
                .filter(|(_, n)| component_hash(n) == *want)
            {
                if let Ok(p) = dir.join(name) {
                    next.push(p);
                }
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
    let mut budget = MAX_SEARCH_ENTRIES;
    let mut stack: Vec<(RelPath, usize)> = frontier
        .into_iter()
        .map(|p| (p, MAX_GUIDED_DEPTH))
        .collect();
    while let Some((dir, d)) = stack.pop() {
        for child in children(backend, dirs, &dir, failed) {
            budget = budget.checked_sub(1)?;
            if d + 1 == depth {
                if fh.matches(&child) {
                    return Some(child);
                }
            } else {
                stack.push((child, d + 1));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dircache::DirCacheLimits;
    use mountshare_fs::LocalFs;

    fn setup() -> (tempfile::TempDir, LocalFs) {
        let t = tempfile::tempdir().unwrap();
        let mut deep = t.path().to_path_buf();
        for i in 0..20 {
            deep.push(format!("level {i}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("file"), b"x").unwrap();
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        std::fs::write(t.path().join("a/b/c"), b"y").unwrap();
        let fs = LocalFs::open(t.path()).unwrap();
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
                &HandleCache::new(16),
            );
            assert_eq!(got, Ok(p), "{path}");
        }
    }

    #[test]
    fn forged_and_vanished_handles_are_stale() {
        let (t, fs) = setup();
        let dirs = DirCache::new(DirCacheLimits::default());
        let cache = HandleCache::new(16);
        let p = RelPath::parse(b"a/b/c").unwrap();
        let mut fh = FileHandle::for_path(&p).unwrap();
        fh.path_hash ^= 1;
        assert_eq!(resolve(&fh, &fs, &dirs, &cache), Err(Unresolved::Stale));
        let gone = RelPath::parse(b"a/b/gone").unwrap();
        let fh = FileHandle::for_path(&gone).unwrap();
        assert_eq!(resolve(&fh, &fs, &dirs, &cache), Err(Unresolved::Stale));
        std::fs::remove_file(t.path().join("a/b/c")).unwrap();
        let fh = FileHandle::for_path(&p).unwrap();
        let fresh = DirCache::new(DirCacheLimits::default());
        assert_eq!(
            resolve(&fh, &fs, &fresh, &HandleCache::new(4)),
            Err(Unresolved::Stale)
        );
    }

    #[test]
    fn handle_cache_is_bounded() {
        let c = HandleCache::new(10);
        for i in 0..1000 {
            c.insert(&RelPath::parse(format!("f{i}").as_bytes()).unwrap());
        }
        assert!(c.len() <= 10);
    }
}
