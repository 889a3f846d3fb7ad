//! The state of one export: the backend, and the caches that make handles and listings cheap.
//! None of it must survive a restart: every cache can be rebuilt from the tree.
use crate::allow::AllowList;
use crate::buffers::BufferPool;
use crate::config::{CacheLimits, MAX_READ};
use crate::dircache::{self, DirCache, DirCacheLimits, DirSnapshot, FreshnessStats, Want};
use crate::error::Unresolved;
use crate::handle::FileHandle;
use crate::metrics::{CacheUsage, Metrics};
use crate::order::ReadOrder;
use crate::resolve::{self, HandleCache};
use crate::splice::PipePool;
use mountshare_fs::{Attr, Backend, FsError, RelPath};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Most entries kept in the MOUNT list (DUMP); it is advisory only.
const MAX_MOUNT_LIST: usize = 1024;

/// One exported tree and its caches.
pub(crate) struct Export {
    backend: Arc<dyn Backend>,
    dirs: DirCache,
    handles: HandleCache,
    /// READ buffers, reused across calls.
    read_buffers: BufferPool,
    /// Pipes for zero-copy READ.
    pipes: Arc<PipePool>,
    fsid: u64,
    /// The TCP port NFS and MOUNT are served on: what PORTMAP GETPORT answers.
    port: u16,
    /// The portmapper port, when PORTMAP is also served on 111.
    portmap_port: Option<u16>,
    mounts: Mutex<Vec<(String, String)>>,
    /// Names the export root must hold for a listing of it to be answered (`--expect`).
    expected: Vec<Vec<u8>>,
    metrics: Arc<Metrics>,
    /// Who may mount (`--allow`).
    allow: AllowList,
    /// READs of one file in offset order, when the backend asks for it.
    read_order: ReadOrder,
}

impl Export {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        fsid: u64,
        port: u16,
        portmap_port: Option<u16>,
        caches: &CacheLimits,
        metrics: Metrics,
    ) -> Export {
        Export {
            backend,
            dirs: DirCache::new(DirCacheLimits {
                max_bytes: caches.directories,
                refresh_interval: caches.refresh_interval,
                ..DirCacheLimits::default()
            }),
            handles: HandleCache::new(caches.handles),
            read_buffers: BufferPool::new(caches.read_buffers),
            // The default, 32 pipes of 1 MiB, stays within the default per-user pipe limit
            // (64 MiB).
            pipes: Arc::new(PipePool::new(caches.pipes, MAX_READ as usize)),
            fsid,
            port,
            portmap_port,
            mounts: Mutex::new(Vec::new()),
            expected: Vec::new(),
            metrics: Arc::new(metrics),
            allow: AllowList::everyone(),
            read_order: ReadOrder::default(),
        }
    }

    /// What the calls to this export are counted in.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where READs of one file wait for those of lower offsets (see `order.rs`).
    pub(crate) fn read_order(&self) -> &ReadOrder {
        &self.read_order
    }

    /// Only clients `allow` allows may mount.
    pub(crate) fn allow(mut self, allow: AllowList) -> Export {
        self.allow = allow;
        self
    }

    /// Whether a client at `ip` may mount.
    pub(crate) fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.allow.allows(ip)
    }

    /// Listings of the root are refused unless it holds every one of `names`.
    pub(crate) fn expect(mut self, names: Vec<Vec<u8>>) -> Export {
        self.expected = names;
        self
    }

    /// Whether the root's listing `snap` holds every expected name.
    pub(crate) fn holds_expected(&self, snap: &DirSnapshot) -> bool {
        self.expected.iter().all(|n| snap.contains(n))
    }

    /// The tree served.
    pub(crate) fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The tree served, to hand to a thread that may outlive the call (the readiness probe).
    pub(crate) fn backend_arc(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// What each cache holds now, and its bound.
    pub(crate) fn cache_usage(&self) -> Vec<CacheUsage> {
        let usage = |name, (bytes, entries): (usize, usize), limit: usize| CacheUsage {
            name,
            bytes: bytes as u64,
            entries: entries as u64,
            limit_bytes: limit as u64,
        };
        vec![
            usage("handles", self.handles.usage(), self.handles.max_bytes()),
            usage("directories", self.dirs.usage(), self.dirs.max_bytes()),
            usage(
                "read_buffers",
                self.read_buffers.usage(),
                self.read_buffers.max_bytes(),
            ),
            usage("pipes", self.pipes.usage(), self.pipes.max_bytes()),
        ]
    }

    /// The NFS fsid of every object of this export.
    pub(crate) fn fsid(&self) -> u64 {
        self.fsid
    }

    /// The TCP port NFS and MOUNT are served on: what PORTMAP GETPORT answers.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The portmapper port, when PORTMAP is also served on 111.
    pub(crate) fn portmap_port(&self) -> Option<u16> {
        self.portmap_port
    }

    /// READ buffers, reused across calls.
    pub(crate) fn read_buffers(&self) -> &BufferPool {
        &self.read_buffers
    }

    /// Pipes for zero-copy READ.
    pub(crate) fn pipes(&self) -> &Arc<PipePool> {
        &self.pipes
    }

    /// The snapshot of the directory at `path` (current attributes `attr`), from the cache or
    /// read now, listed for what it is `want`ed for.
    pub(crate) fn dir_snapshot(
        &self,
        path: &RelPath,
        attr: &Attr,
        want: Want,
    ) -> Result<Arc<DirSnapshot>, FsError> {
        self.dirs.snapshot(&self.backend, path, attr, want)
    }

    /// What the directory listings have done so far (refreshes, changes, held back).
    pub(crate) fn freshness(&self) -> FreshnessStats {
        self.dirs.stats()
    }

    /// The path a handle names, or why not.
    pub(crate) fn resolve(&self, fh: &FileHandle) -> Result<RelPath, Unresolved> {
        resolve::resolve(fh, &self.backend, &self.dirs, &self.handles, &self.metrics)
    }

    /// The handle of `path`, remembered so that it resolves without a walk.
    pub(crate) fn handle_for(&self, path: &RelPath) -> Option<FileHandle> {
        let fh = FileHandle::for_path(path)?;
        self.handles.insert(path);
        Some(fh)
    }

    /// Remember the handle of the entry `child` (built by [`crate::handle::Children`]) so that
    /// it resolves without a walk, as [`Export::handle_for`] does.
    pub(crate) fn remember_child(&self, child: &crate::handle::Child<'_>) {
        self.handles.insert_hashed(child.hash, child.path);
    }

    /// The attributes of `path` as clients get them: a directory's times are its listing's
    /// fingerprint (`dircache::change_time`), so they move exactly when its names do, whatever
    /// times the backend reports (frozen by some FUSE file systems, "now" on every request by
    /// some WebDAV servers). Asking for them refreshes the listing when it is older than the
    /// refresh interval; a directory never listed reports the backend's times until it is.
    pub(crate) fn stat(&self, path: &RelPath) -> Result<Attr, FsError> {
        let attr = self.backend.stat(path)?;
        if !attr.is_dir() {
            return Ok(attr);
        }
        Ok(match self.dirs.change(&self.backend, path, &attr) {
            Some(change) => dircache::with_change(attr, change),
            None => attr,
        })
    }

    /// The attributes of `path` as the backend gives them, for a call that takes a
    /// directory's times from the snapshot it serves ([`Export::served`]).
    pub(crate) fn stat_raw(&self, path: &RelPath) -> Result<Attr, FsError> {
        self.backend.stat(path)
    }

    /// The attributes of the entry at `path` (path hash `hash`) of a listing, as clients get
    /// them, without listing anything: a directory gets the fingerprint last known of it, or
    /// the backend's times if it was never listed.
    pub(crate) fn stat_entry(&self, path: &RelPath, hash: u64) -> Result<Attr, FsError> {
        let attr = self.backend.stat(path)?;
        Ok(
            match attr
                .is_dir()
                .then(|| self.dirs.known_change(hash))
                .flatten()
            {
                Some(change) => dircache::with_change(attr, change),
                None => attr,
            },
        )
    }

    /// The fingerprint last known of the directory whose path hashes to `hash`, without
    /// listing anything.
    pub(crate) fn known_change(&self, hash: u64) -> Option<u64> {
        self.dirs.known_change(hash)
    }

    /// `attr`, the raw attributes of the directory whose snapshot is `snap`, as served with
    /// that snapshot: its times are the snapshot's fingerprint, so a client never caches a
    /// listing under another listing's change attribute.
    pub(crate) fn served(attr: Attr, snap: &DirSnapshot) -> Attr {
        dircache::with_change(attr, snap.change())
    }

    pub(crate) fn record_mount(&self, peer: SocketAddr, dirpath: &str) {
        let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = (peer.ip().to_string(), dirpath.to_string());
        if !m.contains(&entry) {
            if m.len() >= MAX_MOUNT_LIST {
                m.remove(0);
            }
            m.push(entry);
        }
    }

    pub(crate) fn forget_mount(&self, peer: SocketAddr, dirpath: Option<&str>) {
        let host = peer.ip().to_string();
        let mut m = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(h, d)| !(h == &host && dirpath.is_none_or(|p| p == d)));
    }

    /// (host, directory) pairs of clients that mounted and have not unmounted.
    pub(crate) fn mount_list(&self) -> Vec<(String, String)> {
        self.mounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
