//! [`FaultFs`]: a [`Backend`] wrapper for tests that makes chosen operations fail, wait, or hang
//! until released, and counts every call, so any crate's tests can put a failing or stalled file
//! system (a dead FUSE daemon, a read stuck on the network) under the code they test.
//!
//! Compiled with this crate's tests and with the `fault` feature, which other crates enable in
//! their `[dev-dependencies]`; never part of a release build.
//!
//! ```text
//! let fs = Arc::new(FaultFs::new(LocalFs::open(dir)?));
//! fs.inject(Op::Read, Fault::fail(Errno::IO).times(2));      // the next two READs fail
//! fs.inject(Op::Stat, Fault::hold().on(|p| p.file_name() == b"slow")); // stats of `slow` hang
//! fs.wait_held(Op::Stat, 3);                                 // ... until three are stuck
//! fs.release(Op::Stat);                                      // then all go on
//! ```
//!
//! A listing with attributes ([`Backend::read_dir_plus`]) is a listing ([`Op::ReadDir`]) and a
//! stat of each entry ([`Op::Stat`]): the wrapped backend lists, and the faults of both
//! operations apply (and both count), so a test fails or holds "the stat of `file`" the same
//! way whichever of the two the code under test uses.
//!
//! Each operation has its own list of faults; a call gets the first one whose path filter
//! matches and that has calls left, and a fault is dropped once its calls are used up. Waiting
//! is on a condition variable: nothing polls or sleeps, except a [`Fault::delay`] itself.
use crate::{
    Attr, Backend, Capabilities, DirEntryName, DirSink, FsError, FsStats, ReadOutcome, RelPath,
};
use std::fmt;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The operations of a [`Backend`]. [`Backend::read_dir_plus`] is [`Op::ReadDir`] and an
/// [`Op::Stat`] per entry; [`Backend::capabilities`] is passed along as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Stat,
    ReadDir,
    ReadLink,
    Read,
    Statfs,
    OpenFile,
}

impl Op {
    pub const ALL: [Op; 6] = [
        Op::Stat,
        Op::ReadDir,
        Op::ReadLink,
        Op::Read,
        Op::Statfs,
        Op::OpenFile,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

type PathFilter = Arc<dyn Fn(&RelPath) -> bool + Send + Sync>;

/// What to do to calls of one operation: fail, delay or hold them; every matching call, or
/// only the next [`Fault::times`] ones, of every path or of those [`Fault::on`] selects.
#[derive(Clone)]
pub struct Fault {
    action: Action,
    remaining: Option<u64>,
    filter: Option<PathFilter>,
}

#[derive(Debug, Clone)]
enum Action {
    Fail(FsError),
    Delay(Duration),
    Hold,
}

impl Fault {
    /// The call fails with `err` (an errno such as `rustix::io::Errno::IO`, or an [`FsError`]),
    /// without reaching the wrapped backend.
    pub fn fail(err: impl Into<FsError>) -> Fault {
        Fault::new(Action::Fail(err.into()))
    }

    /// The call waits `by`, then goes through to the wrapped backend.
    pub fn delay(by: Duration) -> Fault {
        Fault::new(Action::Delay(by))
    }

    /// The call waits until released ([`FaultFs::release`], [`FaultFs::release_one`]), then
    /// goes through to the wrapped backend.
    pub fn hold() -> Fault {
        Fault::new(Action::Hold)
    }

    fn new(action: Action) -> Fault {
        Fault {
            action,
            remaining: None,
            filter: None,
        }
    }

    /// Only the next `n` matching calls (without it: every one).
    pub fn times(mut self, n: u64) -> Fault {
        self.remaining = Some(n);
        self
    }

    /// Only calls on paths for which `filter` is true. `statfs` has no path: a filter sees the
    /// root.
    pub fn on(mut self, filter: impl Fn(&RelPath) -> bool + Send + Sync + 'static) -> Fault {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Only calls on `path` itself.
    pub fn at(self, path: &RelPath) -> Fault {
        let path = path.clone();
        self.on(move |p| *p == path)
    }

    fn applies_to(&self, path: &RelPath) -> bool {
        self.remaining != Some(0) && self.filter.as_ref().is_none_or(|f| f(path))
    }
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault")
            .field("action", &self.action)
            .field("remaining", &self.remaining)
            .field("filtered", &self.filter.is_some())
            .finish()
    }
}

#[derive(Default)]
struct OpState {
    faults: Vec<Fault>,
    calls: u64,
    in_flight: usize,
    peak_in_flight: usize,
    /// Held calls are numbered in arrival order; those numbered up to `released` may go on.
    held_issued: u64,
    released: u64,
}

impl OpState {
    fn held(&self) -> usize {
        (self.held_issued - self.released) as usize
    }
}

/// A backend that passes every call to `inner`, except those a [`Fault`] catches.
pub struct FaultFs<B> {
    inner: B,
    state: Mutex<[OpState; 6]>,
    changed: Condvar,
    offer_open_files: AtomicBool,
}

impl<B: Backend> FaultFs<B> {
    pub fn new(inner: B) -> FaultFs<B> {
        FaultFs {
            inner,
            state: Mutex::new(Default::default()),
            changed: Condvar::new(),
            offer_open_files: AtomicBool::new(true),
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, [OpState; 6]> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add `fault` to those of `op`, after the ones already there.
    pub fn inject(&self, op: Op, fault: Fault) {
        self.lock()[op.index()].faults.push(fault);
    }

    /// Remove every fault of `op`, and let its held calls go on.
    pub fn clear(&self, op: Op) {
        let mut s = self.lock();
        let o = &mut s[op.index()];
        o.faults.clear();
        o.released = o.held_issued;
        self.changed.notify_all();
    }

    /// Open the gate of `op`: its held calls go on, and later calls are no longer held.
    pub fn release(&self, op: Op) {
        let mut s = self.lock();
        let o = &mut s[op.index()];
        o.faults.retain(|f| !matches!(f.action, Action::Hold));
        o.released = o.held_issued;
        self.changed.notify_all();
    }

    /// Let the longest-held call of `op` go on (later calls are still held). False if none was
    /// held.
    pub fn release_one(&self, op: Op) -> bool {
        let mut s = self.lock();
        let o = &mut s[op.index()];
        if o.held() == 0 {
            return false;
        }
        o.released += 1;
        self.changed.notify_all();
        true
    }

    /// [`FaultFs::release`] for every operation.
    pub fn release_all(&self) {
        for op in Op::ALL {
            self.release(op);
        }
    }

    /// A guard that releases every operation when dropped, so that a test that fails while
    /// calls are held ends instead of hanging on them.
    pub fn releaser(&self) -> Releaser<'_, B> {
        Releaser(self)
    }

    /// Calls of `op` held now.
    pub fn held(&self, op: Op) -> usize {
        self.lock()[op.index()].held()
    }

    /// Wait until at least `n` calls of `op` are held at once.
    pub fn wait_held(&self, op: Op, n: usize) {
        let mut s = self.lock();
        while s[op.index()].held() < n {
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// [`FaultFs::wait_held`], giving up after `timeout`: whether `n` calls were held.
    pub fn wait_held_timeout(&self, op: Op, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        while s[op.index()].held() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Calls of `op` so far, whatever became of them.
    pub fn calls(&self, op: Op) -> u64 {
        self.lock()[op.index()].calls
    }

    /// Calls of `op` inside this backend now (held, delayed, or in the wrapped backend).
    pub fn in_flight(&self, op: Op) -> usize {
        self.lock()[op.index()].in_flight
    }

    /// The most calls of `op` that were inside this backend at once.
    pub fn peak_in_flight(&self, op: Op) -> usize {
        self.lock()[op.index()].peak_in_flight
    }

    /// Whether `open_file` offers the wrapped backend's descriptors (the default). When not,
    /// it answers `None`, as a backend without descriptors does, and READ copies.
    pub fn offer_open_files(&self, offer: bool) {
        self.offer_open_files.store(offer, Ordering::SeqCst);
    }

    /// Count a call of `op` on `path`, and apply the fault that catches it, if any.
    fn enter(&self, op: Op, path: &RelPath) -> (Inside<'_, B>, Result<(), FsError>) {
        let mut s = self.lock();
        let o = &mut s[op.index()];
        o.calls += 1;
        o.in_flight += 1;
        o.peak_in_flight = o.peak_in_flight.max(o.in_flight);
        let inside = Inside { fs: self, op };
        let action = o.faults.iter_mut().find(|f| f.applies_to(path)).map(|f| {
            if let Some(n) = &mut f.remaining {
                *n -= 1;
            }
            f.action.clone()
        });
        o.faults.retain(|f| f.remaining != Some(0));
        match action {
            None => (inside, Ok(())),
            Some(Action::Fail(e)) => (inside, Err(e)),
            Some(Action::Delay(by)) => {
                drop(s);
                std::thread::sleep(by);
                (inside, Ok(()))
            }
            Some(Action::Hold) => {
                o.held_issued += 1;
                let ticket = o.held_issued;
                self.changed.notify_all();
                while s[op.index()].released < ticket {
                    s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                }
                (inside, Ok(()))
            }
        }
    }

    fn call<T>(
        &self,
        op: Op,
        path: &RelPath,
        run: impl FnOnce() -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let (_inside, caught) = self.enter(op, path);
        caught?;
        run()
    }
}

/// A call inside the backend; leaving lowers the count.
struct Inside<'a, B: Backend> {
    fs: &'a FaultFs<B>,
    op: Op,
}

impl<B: Backend> Drop for Inside<'_, B> {
    fn drop(&mut self) {
        self.fs.lock()[self.op.index()].in_flight -= 1;
    }
}

/// The entries of a listing with attributes on their way out of a [`FaultFs`]: each is a stat
/// of its path, which the faults of [`Op::Stat`] catch.
struct StatEach<'a, B: Backend> {
    fs: &'a FaultFs<B>,
    dir: &'a RelPath,
    out: &'a mut dyn DirSink,
}

impl<B: Backend> DirSink for StatEach<'_, B> {
    fn entry(&mut self, name: &[u8], attr: Option<Attr>) {
        // A name that is no path (too long) has no attributes to take away.
        let attr = match self.dir.join(name) {
            Ok(child) => {
                let (_inside, caught) = self.fs.enter(Op::Stat, &child);
                attr.filter(|_| caught.is_ok())
            }
            Err(_) => attr,
        };
        self.out.entry(name, attr);
    }
}

/// Releases every operation of a [`FaultFs`] when dropped ([`FaultFs::releaser`]).
pub struct Releaser<'a, B: Backend>(&'a FaultFs<B>);

impl<B: Backend> Drop for Releaser<'_, B> {
    fn drop(&mut self) {
        self.0.release_all();
    }
}

impl<B: Backend> Backend for FaultFs<B> {
    fn stat(&self, path: &RelPath) -> Result<Attr, FsError> {
        self.call(Op::Stat, path, || self.inner.stat(path))
    }

    fn read_dir(&self, path: &RelPath) -> Result<Vec<DirEntryName>, FsError> {
        self.call(Op::ReadDir, path, || self.inner.read_dir(path))
    }

    fn read_dir_plus(&self, path: &RelPath, out: &mut dyn DirSink) -> Result<(), FsError> {
        let mut stats = StatEach {
            fs: self,
            dir: path,
            out,
        };
        self.call(Op::ReadDir, path, || {
            self.inner.read_dir_plus(path, &mut stats)
        })
    }

    fn read_link(&self, path: &RelPath) -> Result<Vec<u8>, FsError> {
        self.call(Op::ReadLink, path, || self.inner.read_link(path))
    }

    fn read(&self, path: &RelPath, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError> {
        self.call(Op::Read, path, || self.inner.read(path, offset, buf))
    }

    fn statfs(&self) -> Result<FsStats, FsError> {
        self.call(Op::Statfs, &RelPath::root(), || self.inner.statfs())
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn open_file(&self, path: &RelPath) -> Option<Result<Arc<File>, FsError>> {
        if !self.offer_open_files.load(Ordering::SeqCst) {
            self.lock()[Op::OpenFile.index()].calls += 1;
            return None;
        }
        let (_inside, caught) = self.enter(Op::OpenFile, path);
        if let Err(e) = caught {
            return Some(Err(e));
        }
        self.inner.open_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalFs;
    use rustix::io::Errno;

    fn tree() -> (tempfile::TempDir, Arc<FaultFs<LocalFs>>) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("a"), b"aaaa").unwrap();
        std::fs::write(t.path().join("b"), b"bbbb").unwrap();
        let fs = Arc::new(FaultFs::new(LocalFs::open(t.path()).unwrap()));
        (t, fs)
    }

    fn p(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn fails_the_next_calls_then_passes_them_and_counts_all() {
        let (_t, fs) = tree();
        fs.inject(Op::Stat, Fault::fail(Errno::IO).times(2));
        assert_eq!(fs.stat(&p("a")).unwrap_err(), FsError::from(Errno::IO));
        assert_eq!(fs.stat(&p("b")).unwrap_err(), FsError::from(Errno::IO));
        assert_eq!(fs.stat(&p("a")).unwrap().size, 4);
        assert_eq!(fs.calls(Op::Stat), 3);
        assert_eq!(fs.calls(Op::Read), 0);
        assert_eq!(fs.in_flight(Op::Stat), 0);
    }

    #[test]
    fn faults_apply_per_operation_and_per_path_in_order() {
        let (_t, fs) = tree();
        fs.inject(Op::Read, Fault::fail(Errno::NOTCONN).at(&p("a")));
        fs.inject(Op::Read, Fault::fail(Errno::AGAIN).times(1));
        let mut buf = [0u8; 8];
        assert_eq!(
            fs.read(&p("b"), 0, &mut buf).unwrap_err(),
            Errno::AGAIN.into()
        );
        assert_eq!(fs.read(&p("b"), 0, &mut buf).unwrap().bytes, 4);
        for _ in 0..3 {
            assert_eq!(
                fs.read(&p("a"), 0, &mut buf).unwrap_err(),
                Errno::NOTCONN.into()
            );
        }
        fs.stat(&p("a")).unwrap();
        fs.clear(Op::Read);
        assert_eq!(fs.read(&p("a"), 0, &mut buf).unwrap().bytes, 4);
        fs.inject(Op::Statfs, Fault::fail(Errno::IO).on(|p| p.is_root()));
        assert!(fs.statfs().is_err(), "statfs is seen as the root");
    }

    #[test]
    fn held_calls_wait_until_released_one_or_all() {
        let (_t, fs) = tree();
        fs.inject(Op::Stat, Fault::hold().on(|p| p.as_bytes() == b"a"));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let fs = fs.clone();
                std::thread::spawn(move || fs.stat(&p("a")).map(|a| a.size))
            })
            .collect();
        fs.wait_held(Op::Stat, 3);
        assert_eq!(fs.held(Op::Stat), 3);
        assert_eq!(fs.in_flight(Op::Stat), 3);
        assert_eq!(fs.stat(&p("b")).unwrap().size, 4, "other paths pass");
        assert!(fs.release_one(Op::Stat));
        assert_eq!(fs.held(Op::Stat), 2);
        fs.release(Op::Stat);
        assert_eq!(fs.held(Op::Stat), 0);
        assert!(!fs.release_one(Op::Stat));
        for t in threads {
            assert_eq!(t.join().unwrap(), Ok(4));
        }
        assert_eq!(
            fs.peak_in_flight(Op::Stat),
            4,
            "three held and the stat of b"
        );
        assert_eq!(fs.in_flight(Op::Stat), 0);
        assert_eq!(fs.stat(&p("a")).unwrap().size, 4, "the gate stays open");
        assert_eq!(fs.calls(Op::Stat), 5);
    }

    #[test]
    fn waiting_for_held_calls_can_give_up() {
        let (_t, fs) = tree();
        fs.inject(Op::ReadDir, Fault::hold());
        assert!(!fs.wait_held_timeout(Op::ReadDir, 1, Duration::from_millis(10)));
        let lister = {
            let fs = fs.clone();
            std::thread::spawn(move || fs.read_dir(&RelPath::root()).map(|n| n.len()))
        };
        assert!(fs.wait_held_timeout(Op::ReadDir, 1, Duration::from_secs(60)));
        drop(fs.releaser());
        assert_eq!(lister.join().unwrap(), Ok(2));
    }

    #[test]
    fn delays_then_passes_through() {
        let (_t, fs) = tree();
        let by = Duration::from_millis(20);
        fs.inject(Op::ReadLink, Fault::delay(by).times(1));
        let start = Instant::now();
        assert!(
            fs.read_link(&p("a")).is_err(),
            "not a symlink: the backend answered"
        );
        assert!(start.elapsed() >= by);
        assert_eq!(fs.calls(Op::ReadLink), 1);
    }

    #[test]
    fn a_listing_with_attributes_is_a_listing_and_a_stat_of_each_entry() {
        let (_t, fs) = tree();
        fs.inject(Op::Stat, Fault::fail(Errno::IO).at(&p("b")));
        let mut entries: Vec<crate::DirEntryPlus> = Vec::new();
        fs.read_dir_plus(&RelPath::root(), &mut entries).unwrap();
        entries.sort_by(|x, y| x.name.cmp(&y.name));
        assert_eq!(entries[0].name, b"a");
        assert_eq!(entries[0].attr.as_ref().map(|a| a.size), Some(4));
        assert_eq!(entries[1].name, b"b");
        assert_eq!(
            entries[1].attr, None,
            "its stat fails, so it has no attributes"
        );
        assert_eq!((fs.calls(Op::ReadDir), fs.calls(Op::Stat)), (1, 2));
        fs.inject(Op::ReadDir, Fault::fail(Errno::IO).times(1));
        assert!(fs.read_dir_plus(&RelPath::root(), &mut entries).is_err());
    }

    #[test]
    fn open_files_can_be_failed_or_withheld() {
        let (_t, fs) = tree();
        assert!(matches!(fs.open_file(&p("a")), Some(Ok(_))));
        fs.inject(Op::OpenFile, Fault::fail(Errno::IO).times(1));
        assert!(matches!(fs.open_file(&p("a")), Some(Err(_))));
        fs.offer_open_files(false);
        assert!(fs.open_file(&p("a")).is_none());
        assert_eq!(fs.calls(Op::OpenFile), 3);
    }
}
