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
use crate::handle::{name_cookie, path_hash};
use mountshare_fs::{Attr, Backend, DirSink, FileKind, FsError, RelPath, Timestamp};
use mountshare_proto::nfs3::{Fattr3, Ftype3, NfsTime3, SpecData3};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

impl Attr3 {
    /// Whether these are a directory's.
    pub(crate) fn is_dir(&self) -> bool {
        self.ftype == Ftype3::Dir
    }

    /// These attributes, with a directory's times made of its listing's fingerprint `change`.
    pub(crate) fn with_change(mut self, change: u64) -> Attr3 {
        let t = time3(change_time(change));
        self.mtime = t;
        self.ctime = t;
        self
    }
}

/// Seed of the listing fingerprint ("dirchg01"): part of the scheme, the same in every process.
const CHANGE_SEED: u64 = 0x6469_7263_6867_3031;

/// The fingerprint of a listing: a hash of its names in cookie order, so the same names give
/// the same value in every process (after a restart, on another replica), and other names
/// another one. Kinds are not in it: a listing by name carries none, and a directory must get
/// one value however it was listed.
fn change_of(store: &Storage) -> u64 {
    change_of_sorted((0..store.cookies.len()).map(|i| store.name(i)))
}

/// [`change_of`] of names given in cookie order (then name order, as snapshots sort them).
fn change_of_sorted<'a>(names: impl Iterator<Item = &'a [u8]>) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::with_seed(CHANGE_SEED);
    let mut count = 0u64;
    for name in names {
        // The length first: ["ab", "c"] and ["a", "bc"] differ.
        h.update(&(name.len() as u16).to_le_bytes());
        h.update(name);
        count += 1;
    }
    h.update(&count.to_le_bytes());
    h.digest()
}

/// The mtime and ctime `serve` reports for a directory whose listing holds `names` (in any
/// order), as (seconds, nanoseconds): for tests and tools that predict them.
pub fn listing_times(names: &[&[u8]]) -> (i64, u32) {
    let mut sorted: Vec<(u64, &[u8])> = names.iter().map(|n| (name_cookie(n), *n)).collect();
    sorted.sort_unstable();
    let t = change_time(change_of_sorted(sorted.into_iter().map(|(_, n)| n)));
    (t.seconds, t.nanos)
}

/// The time a directory with fingerprint `change` reports as its mtime and ctime. The Linux
/// client drops a directory's cached listing and names when its ctime differs from the one it
/// holds (larger or smaller: NFSv3 has no ordered change attribute, fs/nfs/inode.c); these
/// times differ exactly when the listings do. They fall between 2001-09-09 and 2010-03 (28 bits
/// of seconds from 1,000,000,000, and the nanoseconds: 58 bits of the fingerprint), far from
/// any clock, so a reader can tell them apart from the backend's own.
pub(crate) fn change_time(change: u64) -> Timestamp {
    Timestamp {
        seconds: 1_000_000_000 + (change >> 36) as i64,
        nanos: ((change & ((1 << 36) - 1)) % 1_000_000_000) as u32,
    }
}

/// `attr`, a directory's, with its times made of its listing's fingerprint `change`.
pub(crate) fn with_change(mut attr: Attr, change: u64) -> Attr {
    let t = change_time(change);
    attr.mtime = t;
    attr.ctime = t;
    attr
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
    /// The listing's fingerprint ([`change_of`]): what the directory's times are made of.
    change: u64,
    /// The directory's host inode when listed: another one there means another directory.
    ino: u64,
    /// When it was listed.
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
        let change = change_of(&store);
        DirSnapshot {
            store,
            spare,
            change,
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

    /// The listing's fingerprint: the same for the same names, in any process.
    pub(crate) fn change(&self) -> u64 {
        self.change
    }
}

/// Limits and timing of the [`DirCache`].
#[derive(Debug, Clone)]
pub(crate) struct DirCacheLimits {
    /// Directories kept.
    pub max_dirs: usize,
    /// Bytes of snapshots kept (a larger snapshot is served from its one read only), and of
    /// the fingerprints remembered of directories whose snapshot is gone.
    pub max_bytes: usize,
    /// A directory is listed again, beside the call, when a client asks for its attributes or
    /// its entries and its last listing is older than this (`serve --refresh-interval`).
    pub refresh_interval: Duration,
    /// How long a listing that lost most or all of its entries must hold (over at least
    /// [`HOLD_REFRESHES`] refreshes) before it is served in place of the previous one.
    pub shrink_hold: Duration,
}

/// The default of `serve --refresh-interval`.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(2);

impl Default for DirCacheLimits {
    fn default() -> Self {
        DirCacheLimits {
            // The bound in bytes is the one that matters; this one only keeps a pass over
            // the cache short. A walk of a library of 10,000 folders, each listed by its own
            // call, keeps every folder's snapshot for the next walk.
            max_dirs: 32768,
            max_bytes: 16 << 20,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            shrink_hold: Duration::from_secs(30),
        }
    }
}

/// How long a call waits for the refresh it found due before it is answered from the listing
/// in hand: a small directory's refresh is done by then, and the call gets it; a large one's
/// goes on beside, and a later call gets it.
const REFRESH_WAIT: Duration = Duration::from_millis(100);
/// How long a call that needs a directory's entries waits for its first listing under way
/// (the call's own deadline answers its client meanwhile).
const FIRST_WAIT: Duration = Duration::from_secs(3600);
/// Refreshes running at once, each on its own thread; past it, a due refresh waits for a later
/// call (a backend that hangs holds these threads, and no more).
const MAX_REFRESHING: usize = 8;
/// Refreshes in a row a shrunken listing must be seen in before it is served.
pub(crate) const HOLD_REFRESHES: u32 = 3;
/// Bytes counted for each remembered fingerprint (a hash map slot of two `u64` and its share
/// of the map's spare room).
const KNOWN_BYTES: usize = 24;

/// Whether a listing of `new` entries, after one of `old`, lost most or all of them.
fn shrunk(old: usize, new: usize) -> bool {
    new.saturating_mul(2) < old
}

/// What the cache has done, for metrics.
#[derive(Debug, Default)]
struct Counters {
    first: AtomicU64,
    refreshed: AtomicU64,
    changes: AtomicU64,
    held: AtomicU64,
    failed: AtomicU64,
}

/// What the cache has done so far (counters).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FreshnessStats {
    /// Listings of a directory with no snapshot.
    pub first_listings: u64,
    /// Listings of a directory to learn whether it changed.
    pub refreshes: u64,
    /// Refreshes that found another listing, and published it.
    pub changes: u64,
    /// Refreshes whose listing had lost most or all entries, held back.
    pub shrinks_held: u64,
    /// Refreshes that failed (the listing in hand kept being served).
    pub refresh_failures: u64,
}

/// Entries of a listing in hand small enough that its refresh runs in the calling thread.
const INLINE_ENTRIES: usize = 256;

/// A listing to make, and what it is for.
struct Job {
    pending: Arc<Pending>,
    backend: Arc<dyn Backend>,
    path: RelPath,
    attr: Attr,
    with_attrs: bool,
    first: bool,
}

impl Job {
    fn run(self, shared: &Shared) {
        let listed = shared.list(
            self.backend.as_ref(),
            &self.path,
            &self.attr,
            self.with_attrs,
        );
        shared.refreshed(&self.path, listed, self.first);
        self.pending.finish();
    }
}

/// What a call found of the refresh it found due.
enum Refresh {
    /// One is under way, to wait for ([`REFRESH_WAIT`] at most).
    UnderWay(Arc<Pending>),
    /// The call makes it, now.
    Mine(Job),
    /// None can be started now (too many under way).
    Nothing,
}

impl Refresh {
    /// Make it, or wait for it a moment.
    fn finish(self, shared: &Shared) {
        match self {
            Refresh::UnderWay(p) => p.wait(REFRESH_WAIT),
            Refresh::Mine(job) => job.run(shared),
            Refresh::Nothing => {}
        }
    }
}

/// A listing under way, that calls may wait for.
#[derive(Debug, Default)]
struct Pending {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Pending {
    /// Wait until it is done, at most `limit`.
    fn wait(&self, limit: Duration) {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let _unused = self
            .cv
            .wait_timeout_while(done, limit, |d| !*d)
            .unwrap_or_else(|e| e.into_inner());
    }

    fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }
}

/// One directory's snapshot in the cache, and where it stands.
struct Slot {
    snap: Arc<DirSnapshot>,
    /// Use tick, for eviction.
    used: u64,
    /// When the directory was last listed (whether or not that listing was published).
    checked: Instant,
    /// The refresh under way, if any.
    refresh: Option<Arc<Pending>>,
    /// Refreshes in a row whose listing shrank, and since when.
    held: u32,
    held_since: Option<Instant>,
    /// Refreshes in a row that failed, and since when.
    failed: u32,
    failed_since: Option<Instant>,
}

/// A bounded cache of [`DirSnapshot`]s keyed by directory path, refreshed beside the calls.
pub(crate) struct DirCache {
    shared: Arc<Shared>,
}

struct Shared {
    limits: DirCacheLimits,
    inner: Mutex<Inner>,
    spare: SharedSpare,
    counters: Counters,
    /// Refresh threads running.
    refreshing: AtomicUsize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<RelPath, Slot>,
    bytes: usize,
    entries: usize,
    tick: u64,
    /// Directories whose snapshot with attributes was too large to keep, newest last (at most
    /// [`MAX_WIDE_DIRS`]; their paths are not counted in the bound).
    wide: VecDeque<RelPath>,
    /// First listings under way on a refresh thread (started by a call that wanted only the
    /// directory's attributes), which a call that needs the entries waits for.
    firsts: HashMap<RelPath, Arc<Pending>>,
    /// The fingerprint of every directory listed (by path hash), kept after its snapshot is
    /// gone: a READDIRPLUS of its parent then gives it the same times as its own GETATTR.
    known: HashMap<u64, u64>,
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

    fn remove(&mut self, path: &RelPath) -> Option<Slot> {
        let old = self.map.remove(path)?;
        self.bytes -= old.snap.bytes();
        self.entries -= old.snap.len();
        Some(old)
    }

    fn remember(&mut self, path: &RelPath, change: u64, max_known: usize) {
        if self.known.len() >= max_known && !self.known.contains_key(&path_hash(path)) {
            // Forget about an eighth, chosen by hash: no order to keep, and no pass per insert.
            let cut = self.tick;
            self.known
                .retain(|k, _| (k ^ cut).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 61 != 0);
        }
        self.known.insert(path_hash(path), change);
    }
}

/// What a call found due for the directory it asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Nothing,
    /// List it again by name: has it changed?
    Names,
    /// List it again with attributes (the snapshot has none, or theirs are older than the
    /// interval, and a READDIRPLUS wants them).
    Attrs,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes snapshots may hold: the bound less what spare buffers may, and what the
    /// fingerprints remembered take now (at most an eighth).
    fn snapshot_bytes(&self, inner: &Inner) -> usize {
        let known = inner.known.len() * KNOWN_BYTES;
        (self.limits.max_bytes - self.limits.max_bytes / 4).saturating_sub(known)
    }

    /// Fingerprints remembered: an eighth of the bound.
    fn max_known(&self) -> usize {
        (self.limits.max_bytes / 8 / KNOWN_BYTES).max(1)
    }

    /// What is due for `slot`, for a call that wants `want` of a directory whose inode now is
    /// `ino`.
    fn due(&self, slot: &Slot, want: Want, ino: u64, wide: bool, now: Instant) -> Due {
        let interval = self.limits.refresh_interval;
        let snap = &slot.snap;
        let names_due = now.saturating_duration_since(slot.checked) >= interval || snap.ino != ino;
        if want == Want::Attrs && !wide && snap.len() > 0 {
            let attrs_old = now.saturating_duration_since(snap.taken) >= interval;
            if !snap.has_attrs() || attrs_old || names_due {
                return Due::Attrs;
            }
        }
        if names_due {
            Due::Names
        } else {
            Due::Nothing
        }
    }

    /// A call's use of `path`, for `want`, the directory's inode being `ino` now: whether the
    /// directory is too wide to keep with attributes, and its snapshot in hand (if any) with
    /// what is due for it.
    fn touch(
        &self,
        inner: &mut Inner,
        path: &RelPath,
        want: Want,
        ino: u64,
    ) -> (bool, Option<(Arc<DirSnapshot>, Due)>) {
        inner.tick += 1;
        let tick = inner.tick;
        let wide = inner.wide.contains(path);
        let found = inner.map.get_mut(path).map(|slot| {
            slot.used = tick;
            let due = self.due(slot, want, ino, wide, Instant::now());
            (slot.snap.clone(), due)
        });
        (wide, found)
    }

    /// List `path` now, with each entry's attributes or not.
    fn list(
        &self,
        backend: &dyn Backend,
        path: &RelPath,
        attr: &Attr,
        with_attrs: bool,
    ) -> Result<DirSnapshot, FsError> {
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
        Ok(DirSnapshot::new(arrived, attr, Some(self.spare.clone())))
    }

    /// Start a refresh of `path`, unless one is under way: on a thread of its own, or, for a
    /// directory whose listing in hand is small ([`INLINE_ENTRIES`]), as the calling thread's
    /// [`Job`] (a thread per small directory costs more than its listing). `first`: there is
    /// no snapshot yet.
    #[allow(clippy::too_many_arguments)]
    fn start(
        self: &Arc<Self>,
        inner: &mut Inner,
        backend: &Arc<dyn Backend>,
        path: &RelPath,
        attr: &Attr,
        due: Due,
        first: bool,
    ) -> Refresh {
        let under_way = if first {
            inner.firsts.get(path).cloned()
        } else {
            inner.map.get(path).and_then(|s| s.refresh.clone())
        };
        if let Some(p) = under_way {
            return Refresh::UnderWay(p);
        }
        let pending = Arc::new(Pending::default());
        let job = Job {
            pending: pending.clone(),
            backend: backend.clone(),
            path: path.clone(),
            attr: attr.clone(),
            with_attrs: due == Due::Attrs,
            first,
        };
        let small = inner
            .map
            .get(path)
            .is_some_and(|s| s.snap.len() <= INLINE_ENTRIES);
        let refresh = if !first && small {
            Refresh::Mine(job)
        } else {
            if self.refreshing.fetch_add(1, Ordering::AcqRel) >= MAX_REFRESHING {
                self.refreshing.fetch_sub(1, Ordering::AcqRel);
                return Refresh::Nothing;
            }
            let shared = self.clone();
            let spawned = std::thread::Builder::new()
                .name("dir-refresh".into())
                .spawn(move || {
                    job.run(&shared);
                    shared.refreshing.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                self.refreshing.fetch_sub(1, Ordering::AcqRel);
                return Refresh::Nothing;
            }
            Refresh::UnderWay(pending.clone())
        };
        if first {
            inner.firsts.insert(path.clone(), pending);
        } else if let Some(slot) = inner.map.get_mut(path) {
            slot.refresh = Some(pending);
        }
        refresh
    }

    /// What a listing of `path` made beside the calls found: published, or held back.
    fn refreshed(&self, path: &RelPath, listed: Result<DirSnapshot, FsError>, first: bool) {
        let c = &self.counters;
        if first {
            c.first.fetch_add(1, Ordering::Relaxed);
            if let Ok(snap) = listed {
                self.publish(path.clone(), Arc::new(snap));
            }
            self.lock().firsts.remove(path);
            return;
        }
        c.refreshed.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let hold = self.limits.shrink_hold;
        let new = {
            let mut inner = self.lock();
            let Some(slot) = inner.map.get_mut(path) else {
                drop(inner);
                // Evicted meanwhile: what was listed is the directory as it is.
                if let Ok(snap) = listed {
                    self.publish(path.clone(), Arc::new(snap));
                }
                return;
            };
            slot.refresh = None;
            slot.checked = now;
            // Seen long enough: refreshes in a row, and for long enough.
            let enough = |count: &mut u32, since: &mut Option<Instant>| {
                *count += 1;
                let since = *since.get_or_insert(now);
                *count >= HOLD_REFRESHES && now.saturating_duration_since(since) >= hold
            };
            if listed.is_ok() {
                slot.failed = 0;
                slot.failed_since = None;
            }
            match listed {
                Err(e) => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%path, error = %e, "refreshing a directory failed; its listing in hand is served");
                    if enough(&mut slot.failed, &mut slot.failed_since) {
                        // Failing for long enough: the next call lists it and gets the error.
                        inner.remove(path);
                    }
                    return;
                }
                Ok(snap) if snap.change == slot.snap.change => {
                    slot.held = 0;
                    slot.held_since = None;
                    if !snap.has_attrs() {
                        return; // Same names: keep the snapshot, with its attributes if any.
                    }
                    snap // Same names, with attributes listed anew.
                }
                Ok(snap) => {
                    if shrunk(slot.snap.len(), snap.len())
                        && !enough(&mut slot.held, &mut slot.held_since)
                    {
                        c.held.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%path, before = slot.snap.len(), now = snap.len(), "a directory's listing lost most of its entries; serving the previous one until the loss holds");
                        return;
                    }
                    c.changes.fetch_add(1, Ordering::Relaxed);
                    snap
                }
            }
        };
        self.publish(path.clone(), Arc::new(new));
    }

    /// Serve `snap` for `path` from now on.
    fn publish(&self, path: RelPath, snap: Arc<DirSnapshot>) {
        let n = snap.bytes();
        let max_known = self.max_known();
        let mut inner = self.lock();
        inner.remember(&path, snap.change, max_known);
        inner.remove(&path);
        let max_bytes = self.snapshot_bytes(&inner);
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
        let checked = snap.taken;
        inner.map.insert(
            path,
            Slot {
                snap,
                used: tick,
                checked,
                refresh: None,
                held: 0,
                held_since: None,
                failed: 0,
                failed_since: None,
            },
        );
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
            .map(|s| (s.used, s.snap.bytes()))
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
        map.retain(|_, s| {
            let keep = s.used > cut;
            if !keep {
                *bytes -= s.snap.bytes();
                *entries -= s.snap.len();
            }
            keep
        });
    }
}

impl DirCache {
    pub(crate) fn new(limits: DirCacheLimits) -> Self {
        let spare = Arc::new(Mutex::new(Spare {
            max_bytes: limits.max_bytes / 4,
            ..Spare::default()
        }));
        DirCache {
            shared: Arc::new(Shared {
                limits,
                inner: Mutex::new(Inner::default()),
                spare,
                counters: Counters::default(),
                refreshing: AtomicUsize::new(0),
            }),
        }
    }

    #[cfg(test)]
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// The snapshot of the directory at `path`, whose current attributes are `attr`, for a
    /// call that needs its entries. The snapshot in hand is served; when it is older than the
    /// refresh interval (or, for READDIRPLUS, holds no attributes or old ones) the directory
    /// is listed again beside the call, which waits [`REFRESH_WAIT`] at most for it. With no
    /// snapshot in hand, the directory is listed now (or the listing under way awaited).
    pub(crate) fn snapshot(
        &self,
        backend: &Arc<dyn Backend>,
        path: &RelPath,
        attr: &Attr,
        want: Want,
    ) -> Result<Arc<DirSnapshot>, FsError> {
        let shared = &self.shared;
        let (pending, wide) = {
            let mut inner = shared.lock();
            let (wide, found) = shared.touch(&mut inner, path, want, attr.ino);
            match found {
                Some((snap, Due::Nothing)) => return Ok(snap),
                Some((snap, due)) => {
                    let refresh = shared.start(&mut inner, backend, path, attr, due, false);
                    drop(inner);
                    refresh.finish(shared);
                    let inner = shared.lock();
                    return Ok(inner.map.get(path).map_or(snap, |s| s.snap.clone()));
                }
                None => (inner.firsts.get(path).cloned(), wide),
            }
        };
        if let Some(p) = pending {
            // A first listing is under way: it is this call's listing too.
            p.wait(FIRST_WAIT);
            if let Some(slot) = shared.lock().map.get(path) {
                return Ok(slot.snap.clone());
            }
        }
        let with_attrs = want == Want::Attrs && !wide;
        let snap = Arc::new(shared.list(backend.as_ref(), path, attr, with_attrs)?);
        shared.counters.first.fetch_add(1, Ordering::Relaxed);
        shared.publish(path.clone(), snap.clone());
        Ok(snap)
    }

    /// The fingerprint of the directory at `path` (current attributes `attr`), for a call
    /// that asks for its attributes: from the listing in hand, which is refreshed beside the
    /// call when it is older than the refresh interval (the call waits [`REFRESH_WAIT`] at most
    /// for it). With no listing in hand, one is started, and the fingerprint last known (if
    /// any) is answered until it is done.
    pub(crate) fn change(
        &self,
        backend: &Arc<dyn Backend>,
        path: &RelPath,
        attr: &Attr,
    ) -> Option<u64> {
        let shared = &self.shared;
        let refresh = {
            let mut inner = shared.lock();
            let (wide, found) = shared.touch(&mut inner, path, Want::Names, attr.ino);
            match found {
                Some((snap, Due::Nothing)) => return Some(snap.change),
                Some((_, due)) => shared.start(&mut inner, backend, path, attr, due, false),
                None => {
                    // Listed with attributes, as the READDIRPLUS that usually follows wants.
                    let due = if wide { Due::Names } else { Due::Attrs };
                    shared.start(&mut inner, backend, path, attr, due, true)
                }
            }
        };
        refresh.finish(shared);
        let inner = shared.lock();
        match inner.map.get(path) {
            Some(slot) => Some(slot.snap.change),
            None => inner.known.get(&path_hash(path)).copied(),
        }
    }

    /// The snapshot of `path` listed by name now, in this call, unless its listing in hand is
    /// younger than the refresh interval: for a handle walk that did not find a name in the
    /// listing in hand (the name may be newer). A listing that shrank is held back as ever.
    pub(crate) fn relisted(
        &self,
        backend: &Arc<dyn Backend>,
        path: &RelPath,
        attr: &Attr,
    ) -> Result<Arc<DirSnapshot>, FsError> {
        let shared = &self.shared;
        let fresh = {
            let inner = shared.lock();
            inner
                .map
                .get(path)
                .map(|s| (s.snap.clone(), s.checked.elapsed()))
        };
        match fresh {
            Some((snap, age)) if age < shared.limits.refresh_interval => return Ok(snap),
            Some(_) => {
                let listed = shared.list(backend.as_ref(), path, attr, false);
                shared.refreshed(path, listed, false);
            }
            None => return self.snapshot(backend, path, attr, Want::Names),
        }
        let inner = shared.lock();
        match inner.map.get(path) {
            Some(slot) => Ok(slot.snap.clone()),
            None => {
                drop(inner);
                self.snapshot(backend, path, attr, Want::Names)
            }
        }
    }

    /// Whether the listing of `dir` served now holds `name` while a loss of most of its
    /// entries is held back: a lookup of `name` that the backend cannot find then waits.
    pub(crate) fn withholds(&self, dir: &RelPath, name: &[u8]) -> bool {
        let inner = self.shared.lock();
        inner
            .map
            .get(dir)
            .is_some_and(|s| s.held > 0 && s.snap.contains(name))
    }

    /// The fingerprint last known of the directory whose path hashes to `hash`, without
    /// listing anything: for the entries of a READDIRPLUS.
    pub(crate) fn known_change(&self, hash: u64) -> Option<u64> {
        self.shared.lock().known.get(&hash).copied()
    }

    /// Bytes (snapshots, spare buffers, fingerprints) and entries held now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let (bytes, entries) = {
            let inner = self.shared.lock();
            (inner.bytes + inner.known.len() * KNOWN_BYTES, inner.entries)
        };
        (bytes + lock_spare(&self.shared.spare).bytes, entries)
    }

    pub(crate) fn max_bytes(&self) -> usize {
        self.shared.limits.max_bytes
    }

    /// What the cache has done so far.
    pub(crate) fn stats(&self) -> FreshnessStats {
        let c = &self.shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FreshnessStats {
            first_listings: load(&c.first),
            refreshes: load(&c.refreshed),
            changes: load(&c.changes),
            shrinks_held: load(&c.held),
            refresh_failures: load(&c.failed),
        }
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
        let fs: Arc<dyn Backend> = Arc::new(LocalFs::open(t.path()).unwrap());
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
        let spare = lock_spare(&cache.shared.spare).stores.len();
        assert_eq!(spare, 1);
        let p = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&p).unwrap();
        assert_eq!(
            cache.snapshot(&fs, &p, &attr, Want::Names).unwrap().len(),
            N
        );
        assert!(lock_spare(&cache.shared.spare).stores.len() <= spare);
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

    /// `cache`'s snapshots, in a cache of the same bound that refreshes after `interval`, and
    /// publishes a shrunken listing at its third refresh in a row.
    fn refreshing(cache: DirCache, interval: Duration) -> DirCache {
        let limits = DirCacheLimits {
            refresh_interval: interval,
            shrink_hold: Duration::ZERO,
            ..cache.shared.limits.clone()
        };
        let inner = std::mem::take(&mut *cache.lock());
        let fresh = DirCache::new(limits);
        *fresh.lock() = inner;
        fresh
    }

    fn dynb(fs: &Arc<FaultFs<LocalFs>>) -> Arc<dyn Backend> {
        fs.clone()
    }

    /// A cache whose snapshots never expire by age (so the test never depends on its speed).
    fn cache(max_bytes: usize) -> DirCache {
        DirCache::new(DirCacheLimits {
            max_bytes,
            refresh_interval: Duration::from_secs(3600),
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
        let snap = cache.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        assert!(snap.has_attrs());
        assert_eq!(fs.calls(Op::ReadDir), 1);
        let stats = fs.calls(Op::Stat);
        for (i, (_, name)) in snap.entries().enumerate() {
            let now = fs.inner().stat(&a.join(name).unwrap()).unwrap();
            assert_eq!(snap.attr3(i), Some(&Attr3::new(&now)), "{name:?}");
        }
        // READDIRPLUS again, READDIR, a handle walk: the same snapshot, nothing read or stat'ed.
        for want in [Want::Attrs, Want::Names, Want::Attrs] {
            let again = cache.snapshot(&dynb(&fs), &a, &attr, want).unwrap();
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
            .snapshot(&dynb(&fs), &a, &attr, Want::Attrs)
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
    fn a_listing_by_name_is_listed_with_attributes_beside_the_first_readdirplus() {
        let (_t, fs) = tree(&["a"], 10);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let cache = cache(16 << 20);
        let names = cache.snapshot(&dynb(&fs), &a, &attr, Want::Names).unwrap();
        assert!(!names.has_attrs() && names.attr3(0).is_none());
        // READDIR again, a handle walk: the same listing.
        let again = cache.snapshot(&dynb(&fs), &a, &attr, Want::Names).unwrap();
        assert!(Arc::ptr_eq(&names, &again));
        // READDIRPLUS: listed with attributes beside the call, which a small directory's call
        // waits for; the fingerprint is the same (same names).
        let plus = cache.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        assert!(plus.has_attrs(), "listed with attributes");
        assert_eq!(plus.change(), names.change());
        assert_eq!(fs.calls(Op::ReadDir), 2);
        let stats = fs.calls(Op::Stat);
        let kept = cache.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        assert!(Arc::ptr_eq(&plus, &kept));
        assert_eq!((fs.calls(Op::ReadDir), fs.calls(Op::Stat)), (2, stats));
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
        let first = cache.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        assert!(first.has_attrs(), "this call is answered with them");
        assert_eq!(cache.lock().map.len(), 0, "but they are not kept");
        let stats = fs.calls(Op::Stat);
        let second = cache.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        assert!(!second.has_attrs(), "listed by name");
        assert_eq!(fs.calls(Op::Stat), stats, "no stat of every entry again");
        assert_eq!(cache.usage().1, 100, "and kept");
        assert_eq!(fs.calls(Op::ReadDir), 2);
        // Once most entries are gone (for long enough: the refreshes that find the loss hold
        // it back), it is listed with attributes again.
        for i in 10..100 {
            std::fs::remove_file(t.path().join(format!("a/name-{i}"))).unwrap();
        }
        let cache = refreshing(cache, Duration::ZERO);
        let attr = fs.stat(&a).unwrap();
        for _ in 1..HOLD_REFRESHES {
            let held = cache.snapshot(&dynb(&fs), &a, &attr, Want::Names).unwrap();
            assert_eq!(held.len(), 100, "held back");
        }
        let small = cache.snapshot(&dynb(&fs), &a, &attr, Want::Names).unwrap();
        assert_eq!(small.len(), 10);
        std::fs::write(t.path().join("a/new"), b"").unwrap();
        let attr = fs.stat(&a).unwrap();
        let plus = cache.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        assert!(plus.has_attrs() && plus.len() == 11);
    }

    #[test]
    fn the_fingerprint_is_made_of_the_names_alone_the_same_in_every_cache() {
        let (t, fs) = tree(&["a", "b"], 20);
        // `b` holds the same names as `a`, with other sizes, created in another order.
        for i in 0..20 {
            std::fs::write(t.path().join(format!("b/name-{i}")), vec![b'y'; 100 - i]).unwrap();
        }
        let (a, b) = (RelPath::parse(b"a").unwrap(), RelPath::parse(b"b").unwrap());
        let one = cache(16 << 20);
        let other = cache(16 << 20);
        let of = |c: &DirCache, p: &RelPath, want| {
            let attr = fs.stat(p).unwrap();
            c.snapshot(&dynb(&fs), p, &attr, want).unwrap().change()
        };
        let first = of(&one, &a, Want::Attrs);
        assert_eq!(
            first,
            of(&other, &a, Want::Names),
            "another cache, listed by name"
        );
        assert_eq!(
            first,
            of(&other, &b, Want::Attrs),
            "same names, other attributes"
        );
        let attr = fs.stat(&a).unwrap();
        assert_eq!(one.change(&dynb(&fs), &a, &attr), Some(first));
        assert_eq!(one.known_change(path_hash(&a)), Some(first));
        // Another name: another fingerprint, and other times.
        std::fs::write(t.path().join("a/new"), b"").unwrap();
        let fresh = cache(16 << 20);
        let second = of(&fresh, &a, Want::Names);
        assert_ne!(first, second);
        assert_ne!(change_time(first), change_time(second));
        let t = change_time(second);
        assert!((1_000_000_000..1_000_000_000 + (1 << 28)).contains(&t.seconds));
        assert!(t.nanos < 1_000_000_000);
        // A name moved from one entry to the next is another listing too.
        let split = |names: &[&str]| {
            let mut arrived = Arrivals::new(None, false);
            for n in names {
                arrived.entry(n.as_bytes(), None);
            }
            DirSnapshot::new(arrived, &attr, None).change()
        };
        assert_ne!(split(&["ab", "c"]), split(&["a", "bc"]));
        // What tools are told to expect is what is served.
        let t = change_time(split(&["x", "y"]));
        assert_eq!(listing_times(&[b"y", b"x"]), (t.seconds, t.nanos));
        assert_eq!(
            split(&["x", "y"]),
            split(&["y", "x"]),
            "order listed does not count"
        );
    }

    #[test]
    fn with_nothing_changing_a_directory_is_listed_once_per_interval() {
        let (_t, fs) = tree(&["a"], 5);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let c = cache(16 << 20);
        for _ in 0..50 {
            c.change(&dynb(&fs), &a, &attr).unwrap();
            c.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
            c.snapshot(&dynb(&fs), &a, &attr, Want::Names).unwrap();
        }
        assert_eq!(fs.calls(Op::ReadDir), 1, "one listing in the interval");
        let stats = c.stats();
        assert_eq!((stats.first_listings, stats.refreshes), (1, 0));
        // Past the interval each call that asks lists it again, by name: nothing changed.
        let c = refreshing(c, Duration::ZERO);
        for _ in 0..3 {
            c.change(&dynb(&fs), &a, &attr).unwrap();
        }
        assert_eq!(fs.calls(Op::ReadDir), 4);
        let stats = c.stats();
        assert_eq!((stats.refreshes, stats.changes), (3, 0));
    }

    #[test]
    fn a_call_is_answered_from_the_listing_in_hand_while_a_refresh_hangs() {
        // Large enough to be refreshed beside the calls (a small one is refreshed by the call).
        const N: usize = INLINE_ENTRIES + 1;
        let (t, fs) = tree(&["a"], N);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let c = refreshing(cache(16 << 20), Duration::ZERO);
        let before = c.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        std::fs::write(t.path().join("a/new"), b"").unwrap();
        fs.inject(Op::ReadDir, Fault::hold());
        // Both kinds of call come back, with what was in hand, while the refresh hangs.
        let served = c.snapshot(&dynb(&fs), &a, &attr, Want::Attrs).unwrap();
        assert!(Arc::ptr_eq(&before, &served));
        assert_eq!(c.change(&dynb(&fs), &a, &attr), Some(before.change()));
        assert!(fs.wait_held_timeout(Op::ReadDir, 1, Duration::from_secs(10)));
        assert_eq!(fs.held(Op::ReadDir), 1, "one refresh, however many calls");
        fs.clear(Op::ReadDir);
        fs.release_all();
        // Once it is done, calls get the new listing.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut now = before.change();
        while now == before.change() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            now = c.change(&dynb(&fs), &a, &attr).unwrap();
        }
        assert_ne!(now, before.change(), "the new listing is served");
        assert_eq!(c.stats().changes, 1);
        assert_eq!(
            c.snapshot(&dynb(&fs), &a, &attr, Want::Names)
                .unwrap()
                .len(),
            N + 1
        );
    }

    #[test]
    fn a_listing_that_empties_is_held_back_until_the_loss_holds() {
        let (t, fs) = tree(&["a"], 10);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let c = refreshing(cache(16 << 20), Duration::ZERO);
        let full = c.snapshot(&dynb(&fs), &a, &attr, Want::Names).unwrap();
        let away = t.path().join("away");
        std::fs::rename(t.path().join("a"), &away).unwrap();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let attr = fs.stat(&a).unwrap();
        // The backend answers empty for a while: served as it was, counted.
        assert_eq!(
            c.snapshot(&dynb(&fs), &a, &attr, Want::Names)
                .unwrap()
                .len(),
            10
        );
        for _ in 2..HOLD_REFRESHES {
            assert_eq!(c.change(&dynb(&fs), &a, &attr), Some(full.change()));
        }
        assert_eq!(c.stats().shrinks_held, u64::from(HOLD_REFRESHES - 1));
        // Its names are withheld from lookups that the backend cannot answer meanwhile.
        assert!(c.withholds(&a, b"name-3") && !c.withholds(&a, b"name-10"));
        // It comes back: nothing changed, as far as clients could tell.
        std::fs::remove_dir(t.path().join("a")).unwrap();
        std::fs::rename(&away, t.path().join("a")).unwrap();
        let attr = fs.stat(&a).unwrap();
        assert_eq!(c.change(&dynb(&fs), &a, &attr), Some(full.change()));
        assert_eq!(c.stats().changes, 0);
        assert!(!c.withholds(&a, b"name-3"), "nothing held back any more");
        // A failing listing keeps the one in hand too.
        fs.inject(
            Op::ReadDir,
            Fault::fail(rustix::io::Errno::NOTCONN).times(1),
        );
        assert_eq!(
            c.snapshot(&dynb(&fs), &a, &attr, Want::Names)
                .unwrap()
                .len(),
            10
        );
        assert_eq!(c.stats().refresh_failures, 1);
        // Emptied for good: published at the refresh that sees it for the third time in a row.
        for i in 0..10 {
            std::fs::remove_file(t.path().join(format!("a/name-{i}"))).unwrap();
        }
        let lens: Vec<usize> = (0..HOLD_REFRESHES)
            .map(|_| {
                c.snapshot(&dynb(&fs), &a, &attr, Want::Names)
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(lens, [10, 10, 0]);
        assert_eq!(c.stats().changes, 1);
    }

    #[test]
    fn a_shrunken_listing_waits_for_the_hold_time_as_well() {
        let (t, fs) = tree(&["a"], 4);
        let a = RelPath::parse(b"a").unwrap();
        let attr = fs.stat(&a).unwrap();
        let c = DirCache::new(DirCacheLimits {
            refresh_interval: Duration::ZERO,
            shrink_hold: Duration::from_secs(3600),
            ..DirCacheLimits::default()
        });
        c.snapshot(&dynb(&fs), &a, &attr, Want::Names).unwrap();
        for i in 0..4 {
            std::fs::remove_file(t.path().join(format!("a/name-{i}"))).unwrap();
        }
        for _ in 0..10 {
            assert_eq!(
                c.snapshot(&dynb(&fs), &a, &attr, Want::Names)
                    .unwrap()
                    .len(),
                4
            );
        }
        // Losing less than half is published at once.
        let (_t2, fs2) = tree(&["a"], 4);
        c.snapshot(&dynb(&fs2), &a, &attr, Want::Names).unwrap();
    }
}
