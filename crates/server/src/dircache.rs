//! Directory snapshots for READDIR, READDIRPLUS and handle resolution.
//!
//! A snapshot is a directory's names, and for READDIRPLUS each entry's attributes, sorted by
//! their cookie ([`crate::handle::name_cookie`]).
//! Because a cookie is derived from the name alone, resuming after cookie `c` means "entries
//! whose cookie is greater than `c`": entries present for the whole listing come back exactly
//! once, whatever is added or removed meanwhile, and cookies stay valid across restarts.
//!
//! Snapshots are cached so that a 100,000-entry directory is read once per listing, not once per
//! call. A snapshot is compact: every name in one buffer, beside an array of (cookie, end) pairs
//! (12 bytes per entry, not a heap allocation per name), and, when it was listed for
//! READDIRPLUS, the attributes [`Backend::read_dir_plus`] gave each entry (in one call, however
//! the backend gets them), kept as a `fattr3` sends them ([`Attr3`], 64 bytes per entry): a
//! READDIRPLUS page is answered with no stat per entry while the snapshot is valid. READDIR and
//! handle walks ask for names only, and use a snapshot with attributes when one is cached.
//!
//! The cache is bounded in directories and in bytes, attributes included, and drops snapshots
//! as soon as they are too old to be served again. A directory whose snapshot with attributes
//! is too large to keep is remembered: READDIRPLUS then lists it by name and stats the entries
//! of each page (as it did before snapshots held attributes) rather than stat every entry of
//! the directory for each call. The buffers of a large snapshot gone are kept (a few, within
//! a quarter of the bound) for the next one: a walk of a large tree replaces every snapshot
//! every few seconds, and buffers freed and allocated anew by whichever threads ran the calls
//! fragmented the allocator's per-thread arenas until RSS grew with every walk.
use crate::handle::name_cookie;
use mountshare_fs::{Attr, Backend, DirSink, FileKind, FsError, RelPath, Timestamp};
use mountshare_proto::nfs3::{Fattr3, Ftype3, NfsTime3, SpecData3};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes counted for a snapshot besides its names and index: the map slot, the `Arc` and the
/// struct itself.
const SNAPSHOT_OVERHEAD: usize = 160;

/// Spare buffers smaller than this are freed rather than kept.
const MIN_SPARE_BYTES: usize = 64 << 10;
/// Most snapshots' buffers kept spare.
const MAX_SPARE_STORES: usize = 64;

/// Directories whose snapshot with attributes was too large to keep, remembered so that
/// READDIRPLUS lists them by name (a handful: each is at least a quarter of the cache).
const MAX_WIDE_DIRS: usize = 16;

/// Attributes as NFSv3 sends them (`fattr3`, RFC 1813 2.6) less the fsid and fileid, which are
/// the export's and the path's: 64 bytes, where an [`Attr`] takes 112. Times are as sent
/// (seconds clamped to `u32`), and the mode is `Attr::mode`, 12 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attr3 {
    size: u64,
    used: u64,
    nlink: u32,
    uid: u32,
    gid: u32,
    rdev: SpecData3,
    atime: NfsTime3,
    mtime: NfsTime3,
    ctime: NfsTime3,
    mode: u16,
    ftype: Ftype3,
}

fn time3(t: Timestamp) -> NfsTime3 {
    NfsTime3 {
        seconds: t.seconds.clamp(0, i64::from(u32::MAX)) as u32,
        nseconds: t.nanos,
    }
}

impl Attr3 {
    pub(crate) fn new(a: &Attr) -> Attr3 {
        Attr3 {
            size: a.size,
            used: a.used,
            nlink: a.nlink,
            uid: a.uid,
            gid: a.gid,
            rdev: SpecData3 {
                specdata1: a.rdev.0,
                specdata2: a.rdev.1,
            },
            atime: time3(a.atime),
            mtime: time3(a.mtime),
            ctime: time3(a.ctime),
            mode: (a.mode & 0o7777) as u16,
            ftype: match a.kind {
                FileKind::Regular => Ftype3::Reg,
                FileKind::Directory => Ftype3::Dir,
                FileKind::Symlink => Ftype3::Lnk,
                FileKind::BlockDevice => Ftype3::Blk,
                FileKind::CharDevice => Ftype3::Chr,
                FileKind::Fifo => Ftype3::Fifo,
                FileKind::Socket => Ftype3::Sock,
            },
        }
    }

    /// The `fattr3` of the object `fileid` of the file system `fsid`.
    pub(crate) fn fattr3(&self, fsid: u64, fileid: u64) -> Fattr3 {
        Fattr3 {
            ftype: self.ftype,
            mode: u32::from(self.mode),
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            used: self.used,
            rdev: self.rdev,
            fsid,
            fileid,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
        }
    }
}

/// Bytes of one entry's attributes in a snapshot.
const ATTR_BYTES: usize = std::mem::size_of::<Option<Attr3>>();

/// What a listing is wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The names: READDIR, a handle walk, the check of the names the root must hold.
    Names,
    /// The names and each entry's attributes: READDIRPLUS.
    Attrs,
}

/// A listing as it arrives ([`DirSink`]), in spare buffers: each entry's cookie, name and, when
/// listed with them, attributes, in the order listed. A snapshot is then built from it in
/// cookie order, and its buffers go back to the spares: a listing allocates nothing per entry,
/// and in a steady walk nothing at all.
struct Arrivals {
    store: Storage,
    with_attrs: bool,
    /// Names past 4 GiB in all were left out (see [`DirSnapshot::new`]).
    full: bool,
}

impl Arrivals {
    fn new(spare: Option<&SharedSpare>, with_attrs: bool) -> Arrivals {
        let store = match spare {
            Some(s) => lock_spare(s).take_any(),
            None => Storage::default(),
        };
        Arrivals {
            store,
            with_attrs,
            full: false,
        }
    }

    fn name(&self, i: usize) -> &[u8] {
        self.store.name(i)
    }
}

impl DirSink for Arrivals {
    fn entry(&mut self, name: &[u8], attr: Option<Attr>) {
        // Names are at most 255 bytes, so a u32 holds the end of 16 million of them; a listing
        // past that (over 4 GiB of names) is cut short rather than wrapped.
        let end = u32::try_from(self.store.names.len() + name.len());
        let (false, Ok(end)) = (self.full, end) else {
            self.full = true;
            return;
        };
        self.store.names.extend_from_slice(name);
        self.store.ends.push(end);
        self.store.cookies.push(name_cookie(name));
        if self.with_attrs {
            self.store.attrs.push(attr.as_ref().map(Attr3::new));
        }
    }
}

/// The buffers of one snapshot.
#[derive(Debug, Default)]
struct Storage {
    /// Cookies, ascending.
    cookies: Vec<u64>,
    /// Where each entry's name ends in `names` (it starts where the previous one ends).
    ends: Vec<u32>,
    /// Every name, in cookie order.
    names: Vec<u8>,
    /// Each entry's attributes, in cookie order (`None`: they could not be had); empty when the
    /// snapshot was listed without them.
    attrs: Vec<Option<Attr3>>,
}

impl Storage {
    /// Bytes allocated.
    fn capacity(&self) -> usize {
        self.cookies.capacity() * 8
            + self.ends.capacity() * 4
            + self.names.capacity()
            + self.attrs.capacity() * ATTR_BYTES
    }

    /// The name of entry `i`.
    fn name(&self, i: usize) -> &[u8] {
        let end_of = |i: usize| self.ends.get(i).map_or(0, |e| *e as usize);
        let start = i.checked_sub(1).map_or(0, end_of);
        self.names.get(start..end_of(i)).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.cookies.clear();
        self.ends.clear();
        self.names.clear();
        self.attrs.clear();
    }

    fn fits(&self, entries: usize, name_bytes: usize, attrs: usize) -> bool {
        self.cookies.capacity() >= entries
            && self.ends.capacity() >= entries
            && self.names.capacity() >= name_bytes
            && self.attrs.capacity() >= attrs
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
    /// and `attrs` entries' attributes, emptied; or a new one of just that size.
    fn take(&mut self, entries: usize, name_bytes: usize, attrs: usize) -> Storage {
        let best = self
            .stores
            .iter()
            .enumerate()
            .filter(|(_, s)| s.fits(entries, name_bytes, attrs))
            .min_by_key(|(_, s)| s.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => self.remove(i),
            None => Storage {
                cookies: Vec::with_capacity(entries),
                ends: Vec::with_capacity(entries),
                names: Vec::with_capacity(name_bytes),
                attrs: Vec::with_capacity(attrs),
            },
        }
    }

    /// The largest spare storage, emptied, for a listing of a size not known yet; or a new one.
    fn take_any(&mut self) -> Storage {
        let largest = self
            .stores
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.capacity())
            .map(|(i, _)| i);
        largest.map_or_else(Storage::default, |i| self.remove(i))
    }

    fn remove(&mut self, i: usize) -> Storage {
        let mut s = self.stores.swap_remove(i);
        self.bytes -= s.capacity();
        s.clear();
        s
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
    /// A snapshot of what `arrived`, whose directory has attributes `attr`, in buffers from
    /// `spare` (where those of `arrived` go).
    fn new(arrived: Arrivals, attr: &Attr, spare: Option<SharedSpare>) -> DirSnapshot {
        let from = &arrived.store;
        let n = from.cookies.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            from.cookies
                .get(a)
                .cmp(&from.cookies.get(b))
                .then_with(|| arrived.name(a).cmp(arrived.name(b)))
        });
        let attrs = if arrived.with_attrs { n } else { 0 };
        let mut store = match &spare {
            Some(s) => lock_spare(s).take(n, from.names.len(), attrs),
            None => Spare::default().take(n, from.names.len(), attrs),
        };
        for i in order {
            let i = i as usize;
            let Some(&cookie) = from.cookies.get(i) else {
                continue;
            };
            // Fits in a u32: the names are those that fitted as they arrived.
            store.names.extend_from_slice(from.name(i));
            store.cookies.push(cookie);
            store.ends.push(store.names.len() as u32);
            if arrived.with_attrs {
                store.attrs.push(from.attrs.get(i).copied().flatten());
            }
        }
        if let Some(s) = &spare {
            lock_spare(s).give(arrived.store);
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

    /// A snapshot of `names` (tests).
    #[cfg(test)]
    fn of_names(names: Vec<Vec<u8>>, attr: &Attr) -> DirSnapshot {
        let mut arrived = Arrivals::new(None, false);
        for name in names {
            arrived.entry(&name, None);
        }
        DirSnapshot::new(arrived, attr, None)
    }

    /// Entries in the directory.
    pub(crate) fn len(&self) -> usize {
        self.store.cookies.len()
    }

    /// The name of entry `i`.
    fn name(&self, i: usize) -> &[u8] {
        self.store.name(i)
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

    /// The attributes of entry `i` as listed, when the snapshot holds them.
    pub(crate) fn attr3(&self, i: usize) -> Option<&Attr3> {
        self.store.attrs.get(i)?.as_ref()
    }

    /// Whether the snapshot was listed with each entry's attributes.
    pub(crate) fn has_attrs(&self) -> bool {
        self.len() > 0 && self.store.attrs.len() == self.len()
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
    /// Directories whose snapshot with attributes was too large to keep, newest last (at most
    /// [`MAX_WIDE_DIRS`]; their paths are not counted in the bound).
    wide: VecDeque<RelPath>,
}

impl Inner {
    fn remember_wide(&mut self, path: RelPath) {
        if !self.wide.contains(&path) {
            if self.wide.len() >= MAX_WIDE_DIRS {
                self.wide.pop_front();
            }
            self.wide.push_back(path);
        }
    }

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
    /// directory when no valid snapshot is cached: with each entry's attributes when they are
    /// wanted, unless the directory is known to be too large to keep them. A valid snapshot is
    /// served whatever it holds; the caller stats the entries it holds no attributes for.
    pub(crate) fn snapshot(
        &self,
        backend: &dyn Backend,
        path: &RelPath,
        attr: &Attr,
        want: Want,
    ) -> Result<Arc<DirSnapshot>, FsError> {
        let wide = {
            let mut inner = self.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some((snap, used)) = inner.map.get_mut(path) {
                if snap.still_valid(attr, self.limits.max_age) {
                    *used = tick;
                    return Ok(snap.clone());
                }
            }
            inner.wide.contains(path)
        };
        let with_attrs = want == Want::Attrs && !wide;
        let mut arrived = Arrivals::new(Some(&self.spare), with_attrs);
        let listed = if with_attrs {
            backend.read_dir_plus(path, &mut arrived)
        } else {
            backend.read_dir(path).map(|names| {
                for name in names {
                    arrived.entry(&name, None);
                }
            })
        };
        if let Err(e) = listed {
            lock_spare(&self.spare).give(arrived.store);
            return Err(e);
        }
        let snap = Arc::new(DirSnapshot::new(arrived, attr, Some(self.spare.clone())));
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
        if snap.has_attrs() {
            if n > max_bytes {
                // Its names alone may fit: READDIRPLUS lists it by name from now on.
                inner.remember_wide(path);
                return;
            }
        } else if n + snap.len() * ATTR_BYTES <= max_bytes {
            // Small enough again (or never too large) to keep with its attributes.
            inner.wide.retain(|p| *p != path);
        }
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
    use mountshare_fs::fault::{Fault, FaultFs, Op};
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
        let one = DirSnapshot::of_names(fs.read_dir(&a).unwrap(), &attr);
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
            assert_eq!(
                cache.snapshot(&fs, &p, &attr, Want::Names).unwrap().len(),
                N
            );
        }
        let (bytes, entries) = cache.usage();
        assert!(bytes <= cache.max_bytes(), "{bytes}");
        assert_eq!(entries, 2 * N, "the least recently used went");
        // Its buffers wait for the next snapshot, which reuses them.
        let spare = lock_spare(&cache.spare).stores.len();
        assert_eq!(spare, 1);
        let p = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&p).unwrap();
        assert_eq!(
            cache.snapshot(&fs, &p, &attr, Want::Names).unwrap().len(),
            N
        );
        assert!(lock_spare(&cache.spare).stores.len() <= spare);
    }

    fn tree(dirs: &[&str], files: usize) -> (tempfile::TempDir, Arc<FaultFs<LocalFs>>) {
        let t = tempfile::tempdir().unwrap();
        for d in dirs {
            std::fs::create_dir(t.path().join(d)).unwrap();
            for i in 0..files {
                let data = vec![b'x'; i];
                std::fs::write(t.path().join(d).join(format!("name-{i}")), data).unwrap();
            }
        }
        let fs = Arc::new(FaultFs::new(LocalFs::open(t.path()).unwrap()));
        (t, fs)
    }

    /// A cache whose snapshots never expire by age (so the test never depends on its speed).
    fn cache(max_bytes: usize) -> DirCache {
        DirCache::new(DirCacheLimits {
            max_bytes,
            max_age: Duration::from_secs(3600),
            ..DirCacheLimits::default()
        })
    }

    #[test]
    fn an_entry_attribute_takes_64_bytes_and_sends_what_the_backend_said() {
        assert_eq!(ATTR_BYTES, 64);
        let t = tempfile::tempdir().unwrap();
        let fs = LocalFs::open(t.path()).unwrap();
        let mut a = fs.stat(&RelPath::root()).unwrap();
        a.kind = FileKind::CharDevice;
        a.rdev = (4, 64);
        a.mode = 0o7755;
        a.atime = Timestamp {
            seconds: -5,
            nanos: 7,
        };
        a.mtime.seconds = i64::from(u32::MAX) + 10;
        let f = Attr3::new(&a).fattr3(7, 42);
        assert_eq!(
            (f.ftype, f.mode, f.fsid, f.fileid),
            (Ftype3::Chr, 0o7755, 7, 42)
        );
        assert_eq!(
            (f.nlink, f.uid, f.gid, f.size, f.used),
            (a.nlink, a.uid, a.gid, a.size, a.used)
        );
        assert_eq!((f.rdev.specdata1, f.rdev.specdata2), (4, 64));
        // Times as NFSv3 carries them: unsigned 32-bit seconds, clamped.
        assert_eq!((f.atime.seconds, f.atime.nseconds), (0, 7));
        assert_eq!(f.mtime.seconds, u32::MAX);
        assert_eq!(f.ctime.seconds, a.ctime.seconds as u32);
    }

    #[test]
    fn a_listing_with_attributes_is_kept_and_serves_every_call_without_a_stat() {
        let (_t, fs) = tree(&["a"], 50);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let cache = cache(16 << 20);
        let snap = cache.snapshot(fs.as_ref(), &a, &attr, Want::Attrs).unwrap();
        assert!(snap.has_attrs());
        assert_eq!(fs.calls(Op::ReadDir), 1);
        let stats = fs.calls(Op::Stat);
        for (i, (_, name)) in snap.entries().enumerate() {
            let now = fs.inner().stat(&a.join(name).unwrap()).unwrap();
            assert_eq!(snap.attr3(i), Some(&Attr3::new(&now)), "{name:?}");
        }
        // READDIRPLUS again, READDIR, a handle walk: the same snapshot, nothing read or stat'ed.
        for want in [Want::Attrs, Want::Names, Want::Attrs] {
            let again = cache.snapshot(fs.as_ref(), &a, &attr, want).unwrap();
            assert!(Arc::ptr_eq(&snap, &again));
        }
        assert_eq!(fs.calls(Op::ReadDir), 1);
        assert_eq!(fs.calls(Op::Stat), stats);
        // The attributes are counted: the same listing without them costs 64 bytes less an entry.
        let names = DirSnapshot::of_names(fs.read_dir(&a).unwrap(), &attr);
        assert_eq!(snap.bytes() - names.bytes(), 50 * ATTR_BYTES);
        assert_eq!(cache.lock().bytes, snap.bytes());
    }

    #[test]
    fn an_entry_whose_stat_failed_is_kept_without_attributes() {
        let (_t, fs) = tree(&["a"], 3);
        let a = RelPath::parse(b"a").unwrap();
        let broken = a.join(b"name-1").unwrap();
        fs.inject(Op::Stat, Fault::fail(rustix::io::Errno::IO).at(&broken));
        let attr = fs.stat(&a).unwrap();
        let snap = cache(16 << 20)
            .snapshot(fs.as_ref(), &a, &attr, Want::Attrs)
            .unwrap();
        let missing: Vec<&[u8]> = snap
            .entries()
            .enumerate()
            .filter(|(i, _)| snap.attr3(*i).is_none())
            .map(|(_, (_, name))| name)
            .collect();
        assert_eq!(missing, [&b"name-1"[..]]);
        assert_eq!(snap.len(), 3, "listed all the same");
    }

    #[test]
    fn a_listing_by_name_is_served_to_readdirplus_as_it_is() {
        let (_t, fs) = tree(&["a"], 10);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let cache = cache(16 << 20);
        let names = cache.snapshot(fs.as_ref(), &a, &attr, Want::Names).unwrap();
        assert!(!names.has_attrs() && names.attr3(0).is_none());
        let stats = fs.calls(Op::Stat);
        let plus = cache.snapshot(fs.as_ref(), &a, &attr, Want::Attrs).unwrap();
        assert!(Arc::ptr_eq(&names, &plus), "not listed again");
        assert_eq!((fs.calls(Op::ReadDir), fs.calls(Op::Stat)), (1, stats));
    }

    #[test]
    fn a_directory_too_large_to_keep_with_attributes_is_then_listed_by_name() {
        let (t, fs) = tree(&["a"], 100);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let listed = fs.inner().read_dir(&a).unwrap();
        let names = DirSnapshot::of_names(listed, &attr);
        // Room for its names (three quarters of the bound are for snapshots), not for its
        // attributes as well.
        let cache = cache((names.bytes() + 100 * ATTR_BYTES / 2) * 4 / 3);
        let first = cache.snapshot(fs.as_ref(), &a, &attr, Want::Attrs).unwrap();
        assert!(first.has_attrs(), "this call is answered with them");
        assert_eq!(cache.lock().map.len(), 0, "but they are not kept");
        let stats = fs.calls(Op::Stat);
        let second = cache.snapshot(fs.as_ref(), &a, &attr, Want::Attrs).unwrap();
        assert!(!second.has_attrs(), "listed by name");
        assert_eq!(fs.calls(Op::Stat), stats, "no stat of every entry again");
        assert_eq!(cache.usage().1, 100, "and kept");
        assert_eq!(fs.calls(Op::ReadDir), 2);
        // Once most entries are gone, it is listed with attributes again.
        for i in 10..100 {
            std::fs::remove_file(t.path().join(format!("a/name-{i}"))).unwrap();
        }
        let attr = fs.stat(&a).unwrap();
        let small = cache.snapshot(fs.as_ref(), &a, &attr, Want::Names).unwrap();
        assert_eq!(small.len(), 10);
        std::fs::write(t.path().join("a/new"), b"").unwrap();
        let attr = fs.stat(&a).unwrap();
        let plus = cache.snapshot(fs.as_ref(), &a, &attr, Want::Attrs).unwrap();
        assert!(plus.has_attrs() && plus.len() == 11);
    }
}
