//! The workloads. Each spawns `connections x in_flight` workers, so every connection has
//! `in_flight` requests outstanding; workers keep their own histogram and counters, merged at
//! the end, so measuring costs no lock per operation except the work cursor.

use crate::hist::Histogram;
use crate::report::{Latency, OpStats, Phase};
use mountshare_client::{ClientError, ConnectOptions, Mounted, NfsClient, RpcConnection};
use mountshare_proto::nfs3::{
    DirOpArgs3, Fattr3, FsInfo3Args, Ftype3, GetAttr3Args, Lookup3Args, NfsFh3, Read3Args,
    MAX_DATA_LEN,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Stop after this many errors in one phase: a broken server should not be hammered.
const MAX_ERRORS: u64 = 100;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Setup {
    pub nfs: SocketAddr,
    pub mount_port: u16,
    pub export: String,
    /// Limit on each call.
    pub timeout: Duration,
    pub connections: usize,
    pub in_flight: usize,
}

/// A mounted export and the connections the load goes over.
pub struct Session {
    pub root: NfsFh3,
    pub conns: Vec<NfsClient>,
    /// The server's largest READ (FSINFO rtmax).
    pub rtmax: u32,
    pub in_flight: usize,
    _mount: Mounted,
}

/// MNT the export (over the MOUNT port) and open the NFS connections.
pub async fn open(s: &Setup) -> Result<Session, String> {
    let opts = ConnectOptions {
        timeout: s.timeout,
        max_in_flight: s.in_flight.max(1),
        ..ConnectOptions::default()
    };
    let maddr = SocketAddr::new(s.nfs.ip(), s.mount_port);
    let mconn = RpcConnection::connect_with(maddr, opts.clone())
        .await
        .map_err(|e| format!("cannot connect to MOUNT at {maddr}: {e}"))?;
    let mounted = Mounted::on(mconn, &s.export)
        .await
        .map_err(|e| format!("cannot mount {} from {maddr}: {e}", s.export))?;
    let mut conns = Vec::new();
    for _ in 0..s.connections.max(1) {
        conns.push(
            NfsClient::connect_with(s.nfs, opts.clone())
                .await
                .map_err(|e| format!("cannot connect to NFS at {}: {e}", s.nfs))?,
        );
    }
    let rtmax = match conns[0]
        .fsinfo(&FsInfo3Args {
            fsroot: mounted.root.clone(),
        })
        .await
        .map(|r| r.ok())
    {
        Ok(Ok(info)) if info.rtmax > 0 => info.rtmax.min(MAX_DATA_LEN),
        _ => MAX_DATA_LEN,
    };
    Ok(Session {
        root: mounted.root.clone(),
        conns,
        rtmax,
        in_flight: s.in_flight.max(1),
        _mount: mounted,
    })
}

/// A file to read.
#[derive(Debug, Clone)]
pub struct ReadFile {
    pub path: String,
    pub fh: NfsFh3,
    pub size: u64,
}

/// Look a path below the root up and get its size.
pub async fn resolve_file(sess: &Session, path: &str) -> Result<ReadFile, String> {
    let (fh, attr) = resolve(sess, path, Ftype3::Reg, "not a regular file").await?;
    Ok(ReadFile {
        path: path.to_owned(),
        fh,
        size: attr.size,
    })
}

/// Resolve a directory path below the root.
pub async fn resolve_dir(sess: &Session, path: &str) -> Result<NfsFh3, String> {
    let (fh, _) = resolve(sess, path, Ftype3::Dir, "not a directory").await?;
    Ok(fh)
}

/// The handle and attributes of a path below the root, which must be of type `ftype`
/// (else the error is `"{path}: {not_it}"`).
async fn resolve(
    sess: &Session,
    path: &str,
    ftype: Ftype3,
    not_it: &str,
) -> Result<(NfsFh3, Fattr3), String> {
    let nfs = &sess.conns[0];
    let fh = nfs
        .lookup_path(&sess.root, path)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let attr = nfs
        .getattr_of(&fh)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    if attr.ftype != ftype {
        return Err(format!("{path}: {not_it}"));
    }
    Ok((fh, attr))
}

/// Counters of one worker.
#[derive(Default)]
struct Tally {
    ops: u64,
    bytes: u64,
    requested: u64,
    short: u64,
    errors: u64,
    first_error: Option<String>,
    hists: Vec<(&'static str, Histogram)>,
    entries: u64,
    dirs: u64,
    largest: Option<ReadFile>,
}

impl Tally {
    fn hist(&mut self, op: &'static str) -> &mut Histogram {
        if let Some(i) = self.hists.iter().position(|(o, _)| *o == op) {
            return &mut self.hists[i].1;
        }
        self.hists.push((op, Histogram::new()));
        &mut self.hists.last_mut().expect("just pushed").1
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    /// Count a call that got no reply (`"{what}: {e}"`); true when the connection is closed,
    /// so the worker should stop.
    fn no_reply(&mut self, what: impl std::fmt::Display, e: ClientError) -> bool {
        let closed = matches!(e, ClientError::Closed(_));
        self.error(format!("{what}: {e}"));
        closed
    }

    fn merge(&mut self, o: Tally) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.requested += o.requested;
        self.short += o.short;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        for (op, h) in o.hists {
            self.hist(op).merge(&h);
        }
        self.entries += o.entries;
        self.dirs += o.dirs;
        if let Some(f) = o.largest {
            if !matches!(&self.largest, Some(l) if l.size >= f.size) {
                self.largest = Some(f);
            }
        }
    }

    fn phase(
        self,
        workload: &'static str,
        subject: String,
        stopped_by: &'static str,
        elapsed: Duration,
    ) -> Phase {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let mut all = Histogram::new();
        let mut by_op = Vec::new();
        for (op, h) in &self.hists {
            all.merge(h);
            by_op.push(OpStats {
                op,
                ops: h.count(),
                ops_per_s: h.count() as f64 / secs,
                latency: Latency::of(h),
            });
        }
        Phase {
            workload,
            subject,
            stopped_by,
            elapsed_s: (secs * 1e6).round() / 1e6,
            ops: self.ops,
            ops_per_s: self.ops as f64 / secs,
            bytes: self.bytes,
            bytes_requested: self.requested,
            mb_per_s: self.bytes as f64 / secs / 1e6,
            short_reads: self.short,
            errors: self.errors,
            first_error: self.first_error,
            latency: Latency::of(&all),
            by_op,
            directories: (workload == "walk").then_some(self.dirs),
            entries: (workload == "walk").then_some(self.entries),
        }
    }
}

/// When a phase stops.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Read exactly this many bytes (READ workload).
    pub bytes: Option<u64>,
    /// Stop issuing new requests after this long.
    pub duration: Option<Duration>,
    /// Stop after this many operations (metadata workload).
    pub ops: Option<u64>,
    /// Stop after this many directory entries (walk).
    pub entries: Option<u64>,
}

/// The sequential cursor: hands out (file, offset, count) in file order, wrapping around.
struct Cursor {
    files: Vec<ReadFile>,
    file: usize,
    offset: u64,
    issued: u64,
    budget: u64,
    read_size: u64,
    wrap: bool,
}

impl Cursor {
    fn next(&mut self) -> Option<(usize, u64, u32)> {
        if self.issued >= self.budget {
            return None;
        }
        let mut skipped = 0;
        while self.offset >= self.files[self.file].size {
            self.file += 1;
            self.offset = 0;
            if self.file == self.files.len() {
                if !self.wrap {
                    return None;
                }
                self.file = 0;
            }
            skipped += 1;
            if skipped > self.files.len() {
                return None;
            }
        }
        let f = &self.files[self.file];
        let count = self
            .read_size
            .min(f.size - self.offset)
            .min(self.budget - self.issued);
        let at = (self.file, self.offset, count as u32);
        self.offset += count;
        self.issued += count;
        Some(at)
    }
}

/// Sequential READ of `files` with `read_size` bytes per call. With no byte or time limit,
/// each file is read once.
pub async fn read(sess: &Session, files: Vec<ReadFile>, read_size: u32, limits: Limits) -> Phase {
    let subject = files
        .iter()
        .map(|f| format!("{} ({})", f.path, mountshare_units::human_bytes(f.size)))
        .collect::<Vec<_>>()
        .join(", ");
    let once: u64 = files.iter().map(|f| f.size).sum();
    let (budget, wrap) = match (limits.bytes, limits.duration) {
        (Some(b), _) => (b, true),
        (None, Some(_)) => (u64::MAX, true),
        (None, None) => (once, false),
    };
    if once == 0 {
        let mut t = Tally::default();
        t.error("every file to read is empty".into());
        return t.phase("read", subject, "errors", Duration::ZERO);
    }
    let cursor = Arc::new(Mutex::new(Cursor {
        files: files.clone(),
        file: 0,
        offset: 0,
        issued: 0,
        budget,
        read_size: u64::from(read_size.clamp(1, MAX_DATA_LEN)),
        wrap,
    }));
    let files = Arc::new(files);
    let start = Instant::now();
    let end = limits.duration.map(|d| start + d);
    let total = run_workers(sess, |nfs| {
        let cursor = cursor.clone();
        let files = files.clone();
        async move {
            let mut t = Tally::default();
            loop {
                if end.is_some_and(|e| Instant::now() >= e) || t.errors >= MAX_ERRORS {
                    break;
                }
                let Some((fi, offset, count)) =
                    cursor.lock().unwrap_or_else(|p| p.into_inner()).next()
                else {
                    break;
                };
                let args = Read3Args {
                    file: files[fi].fh.clone(),
                    offset,
                    count,
                };
                let began = Instant::now();
                let res = nfs.read(&args).await;
                let took = began.elapsed();
                match res.map(|r| r.ok()) {
                    Ok(Ok(ok)) => {
                        t.hist("READ").record(took);
                        t.ops += 1;
                        t.requested += u64::from(count);
                        t.bytes += ok.data.len() as u64;
                        if ok.data.len() < count as usize {
                            t.short += 1;
                        }
                    }
                    Ok(Err(stat)) => {
                        t.error(format!("READ {} at {offset}: {stat}", files[fi].path))
                    }
                    Err(e) => {
                        if t.no_reply(format_args!("READ {} at {offset}", files[fi].path), e) {
                            break;
                        }
                    }
                }
            }
            t
        }
    })
    .await;
    let elapsed = start.elapsed();
    let issued = cursor.lock().unwrap_or_else(|p| p.into_inner()).issued;
    let stopped_by = if total.errors >= MAX_ERRORS {
        "errors"
    } else if limits.bytes.is_some_and(|b| issued >= b) {
        "bytes"
    } else if end.is_some_and(|e| Instant::now() >= e) {
        "duration"
    } else {
        "done"
    };
    total.phase("read", subject, stopped_by, elapsed)
}

/// A GETATTR/LOOKUP mix, half and half, over the entries of `dir`.
pub async fn meta(sess: &Session, dir: NfsFh3, dir_name: &str, limits: Limits) -> Phase {
    let listing = match sess.conns[0].readdirplus_all(&dir).await {
        Ok(l) => l,
        Err(e) => {
            let mut t = Tally::default();
            t.error(format!("READDIRPLUS {dir_name}: {e}"));
            return t.phase("meta", dir_name.to_owned(), "errors", Duration::ZERO);
        }
    };
    let entries: Vec<(Vec<u8>, NfsFh3)> = listing
        .into_iter()
        .filter(|e| e.name != b"." && e.name != b"..")
        .filter_map(|e| e.name_handle.0.map(|fh| (e.name, fh)))
        .take(100_000)
        .collect();
    if entries.is_empty() {
        let mut t = Tally::default();
        t.error(format!("{dir_name} has no entries to GETATTR and LOOKUP"));
        return t.phase("meta", dir_name.to_owned(), "errors", Duration::ZERO);
    }
    let entries = Arc::new(entries);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = limits.duration.map(|d| start + d);
    let budget = limits
        .ops
        .unwrap_or(if end.is_some() { u64::MAX } else { 10_000 });
    let total = run_workers(sess, |nfs| {
        let entries = entries.clone();
        let next = next.clone();
        let dir = dir.clone();
        async move {
            let mut t = Tally::default();
            loop {
                if end.is_some_and(|e| Instant::now() >= e) || t.errors >= MAX_ERRORS {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= budget {
                    break;
                }
                let (name, fh) = &entries[((i / 2) % entries.len() as u64) as usize];
                let began = Instant::now();
                let (op, res) = if i & 1 == 0 {
                    let r = nfs.getattr(&GetAttr3Args { object: fh.clone() }).await;
                    ("GETATTR", r.map(|r| r.ok().map(|_| ())))
                } else {
                    let args = Lookup3Args {
                        what: DirOpArgs3 {
                            dir: dir.clone(),
                            name: name.clone(),
                        },
                    };
                    let r = nfs.lookup(&args).await;
                    ("LOOKUP", r.map(|r| r.ok().map(|_| ())))
                };
                let took = began.elapsed();
                match res {
                    Ok(Ok(())) => {
                        t.hist(op).record(took);
                        t.ops += 1;
                    }
                    Ok(Err(stat)) => {
                        t.error(format!("{op} {}: {stat}", String::from_utf8_lossy(name)))
                    }
                    Err(e) => {
                        if t.no_reply(op, e) {
                            break;
                        }
                    }
                }
            }
            t
        }
    })
    .await;
    let elapsed = start.elapsed();
    let stopped_by = if total.errors >= MAX_ERRORS {
        "errors"
    } else if next.load(Ordering::Relaxed) >= budget {
        "ops"
    } else {
        "duration"
    };
    total.phase("meta", dir_name.to_owned(), stopped_by, elapsed)
}

struct WalkQueue {
    dirs: VecDeque<(String, NfsFh3)>,
    active: usize,
    entries: u64,
    stop: bool,
}

/// A full READDIRPLUS walk of `dir`, directories listed in parallel. Also finds the largest
/// regular file (for the default workload).
pub async fn walk(
    sess: &Session,
    dir: NfsFh3,
    dir_name: &str,
    limits: Limits,
) -> (Phase, Option<ReadFile>) {
    let queue = Arc::new((
        Mutex::new(WalkQueue {
            dirs: VecDeque::from([(dir_name.trim_end_matches('/').to_owned(), dir)]),
            active: 0,
            entries: 0,
            stop: false,
        }),
        Notify::new(),
    ));
    let max_entries = limits.entries.unwrap_or(u64::MAX);
    let start = Instant::now();
    let end = limits.duration.map(|d| start + d);
    let mut total = run_workers(sess, |nfs| {
        let queue = queue.clone();
        async move {
            let (state, notify) = &*queue;
            let mut t = Tally::default();
            loop {
                let job = loop {
                    let notified = notify.notified();
                    {
                        let mut q = state.lock().unwrap_or_else(|p| p.into_inner());
                        if q.stop || end.is_some_and(|e| Instant::now() >= e) {
                            q.stop = true;
                            break None;
                        }
                        if let Some(d) = q.dirs.pop_front() {
                            q.active += 1;
                            break Some(d);
                        }
                        if q.active == 0 {
                            break None;
                        }
                    }
                    // Wake up now and then to notice the deadline.
                    let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
                };
                let Some((path, fh)) = job else {
                    notify.notify_waiters();
                    break;
                };
                t.dirs += 1;
                let mut pager = nfs.readdirplus_pager(&fh);
                loop {
                    let began = Instant::now();
                    let page = pager.next_page().await;
                    let took = began.elapsed();
                    let page = match page {
                        Ok(Some(p)) => p,
                        Ok(None) => break,
                        Err(e) => {
                            t.error(format!("READDIRPLUS {path}: {e}"));
                            break;
                        }
                    };
                    t.hist("READDIRPLUS").record(took);
                    t.ops += 1;
                    let mut subdirs = Vec::new();
                    let mut n = 0;
                    for e in page {
                        if e.name == b"." || e.name == b".." {
                            continue;
                        }
                        n += 1;
                        let name = format!("{path}/{}", String::from_utf8_lossy(&e.name));
                        let (Some(attr), Some(efh)) = (e.name_attributes.0, e.name_handle.0)
                        else {
                            continue;
                        };
                        match attr.ftype {
                            Ftype3::Dir => subdirs.push((name, efh)),
                            Ftype3::Reg
                                if !matches!(&t.largest, Some(l) if l.size >= attr.size) =>
                            {
                                t.largest = Some(ReadFile {
                                    path: name,
                                    fh: efh,
                                    size: attr.size,
                                });
                            }
                            _ => {}
                        }
                    }
                    t.entries += n;
                    let mut q = state.lock().unwrap_or_else(|p| p.into_inner());
                    q.entries += n;
                    if q.entries >= max_entries {
                        q.stop = true;
                    }
                    let pushed = !subdirs.is_empty();
                    q.dirs.extend(subdirs);
                    let stop = q.stop;
                    drop(q);
                    if pushed {
                        notify.notify_waiters();
                    }
                    if stop || t.errors >= MAX_ERRORS {
                        break;
                    }
                }
                let mut q = state.lock().unwrap_or_else(|p| p.into_inner());
                q.active -= 1;
                if t.errors >= MAX_ERRORS {
                    q.stop = true;
                }
                drop(q);
                notify.notify_waiters();
            }
            t
        }
    })
    .await;
    let elapsed = start.elapsed();
    let q = queue.0.lock().unwrap_or_else(|p| p.into_inner());
    let stopped_by = if total.errors >= MAX_ERRORS {
        "errors"
    } else if q.entries >= max_entries {
        "entries"
    } else if q.stop {
        "duration"
    } else {
        "done"
    };
    drop(q);
    let largest = total.largest.take();
    (
        total.phase("walk", dir_name.to_owned(), stopped_by, elapsed),
        largest,
    )
}

/// Run `work` on `in_flight` workers per connection, each given its own handle to the connection,
/// and add up what they counted.
async fn run_workers<W, F>(sess: &Session, work: W) -> Tally
where
    W: Fn(NfsClient) -> F,
    F: std::future::Future<Output = Tally> + Send + 'static,
{
    let mut workers = Vec::new();
    for conn in &sess.conns {
        for _ in 0..sess.in_flight {
            workers.push(tokio::spawn(work(conn.clone())));
        }
    }
    gather(workers).await
}

/// Wait for every worker and add up what they counted; a worker that died counts as an error
/// rather than vanishing from the totals.
async fn gather(workers: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::default();
    for w in workers {
        match w.await {
            Ok(t) => total.merge(t),
            Err(e) => total.error(format!("a worker failed: {e}")),
        }
    }
    total
}
