//! [`Origin`]: a debrid-like HTTP/1.1 file server on 127.0.0.1 for rclone's `http` backend: files
//! of a host directory with HTML directory indexes, `Range` requests, a configurable time to first
//! byte, a bandwidth cap per response, and paths whose requests hang (for a while or until
//! released), like dead debrid links.
//!
//! Plain std threads, one per connection, keep-alive. Every request is logged (method, path,
//! range) so tests can check what the FUSE layer above asked for. Only GET and HEAD exist.

use crate::error::{Error, IoContext, Result};
use crate::hangfs::glob_match;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Requests kept in the log.
const MAX_LOG: usize = 100_000;
/// How long an idle keep-alive connection stays open.
const IDLE: Duration = Duration::from_secs(120);
/// Body bytes written at a time (and the pacing granularity of the bandwidth cap).
const CHUNK: usize = 64 * 1024;

/// How an [`Origin`] answers.
#[derive(Debug, Clone, Default)]
pub struct OriginOptions {
    /// Delay before the response head of every GET of a file (a cold debrid link's first byte).
    pub ttfb: Duration,
    /// Also delay HEAD requests (rclone sends one per listed file) and listings.
    pub ttfb_on_head: bool,
    /// Cap of each response body, in bytes per second (`None`: as fast as the socket goes).
    pub bandwidth: Option<u64>,
    /// Print every request to stderr as it is answered (method, path, range, status).
    pub trace: bool,
}

/// How long requests of a hanging path hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangFor {
    /// Until [`Origin::release`] or [`Origin::release_all`].
    Released,
    /// This long (or until released, if sooner), then answered normally.
    Time(Duration),
}

/// One request as the origin saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Decoded path, starting with `/`.
    pub path: String,
    /// The `Range` header as parsed: first byte and last byte (inclusive) if given.
    pub range: Option<(u64, Option<u64>)>,
    pub status: u16,
}

#[derive(Default)]
struct State {
    options: OriginOptions,
    hangs: Vec<(String, HangFor)>,
    hung: usize,
    log: Vec<RequestRecord>,
    bytes_sent: u64,
}

struct Shared {
    root: PathBuf,
    state: Mutex<State>,
    changed: Condvar,
    stopping: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running origin. Stops (and releases every hung request) on drop.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Origin {
    /// Serve `root` on a free port of 127.0.0.1.
    pub fn start(root: impl AsRef<Path>, options: OriginOptions) -> Result<Origin> {
        Self::start_on(root, options, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Serve `root` on `addr` (which must be on 127.0.0.0/8).
    pub fn start_on(
        root: impl AsRef<Path>,
        options: OriginOptions,
        addr: SocketAddr,
    ) -> Result<Origin> {
        if !addr.ip().is_loopback() {
            return Err(Error::Process(format!(
                "the origin listens on loopback only, not {addr}"
            )));
        }
        let root = std::fs::canonicalize(root.as_ref())
            .ctx(|| format!("find {}", root.as_ref().display()))?;
        let listener = TcpListener::bind(addr).ctx(|| format!("bind {addr}"))?;
        let addr = listener.local_addr().ctx(|| "local address".into())?;
        let shared = Arc::new(Shared {
            root,
            state: Mutex::new(State {
                options,
                ..State::default()
            }),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = accept_shared.clone();
                std::thread::spawn(move || serve_connection(&shared, stream));
            }
        });
        Ok(Origin {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Change the time to first byte from now on.
    pub fn set_ttfb(&self, ttfb: Duration) {
        self.shared.lock().options.ttfb = ttfb;
    }

    /// Change the bandwidth cap from now on (responses already streaming keep theirs).
    pub fn set_bandwidth(&self, bytes_per_second: Option<u64>) {
        self.shared.lock().options.bandwidth = bytes_per_second;
    }

    /// Requests for paths matching `glob` (e.g. `/hang/*`) hang before their first byte.
    pub fn hang(&self, glob: &str, how_long: HangFor) {
        self.shared.lock().hangs.push((glob.to_string(), how_long));
        self.shared.changed.notify_all();
    }

    /// Remove the hang rules given as exactly `glob`; requests hanging on them go on (unless
    /// another rule still holds them). Returns how many rules were removed.
    pub fn release(&self, glob: &str) -> usize {
        let mut state = self.shared.lock();
        let before = state.hangs.len();
        state.hangs.retain(|(g, _)| g != glob);
        self.shared.changed.notify_all();
        before - state.hangs.len()
    }

    /// Remove every hang rule.
    pub fn release_all(&self) {
        self.shared.lock().hangs.clear();
        self.shared.changed.notify_all();
    }

    /// Requests hanging now.
    pub fn hung(&self) -> usize {
        self.shared.lock().hung
    }

    /// Waits until at least `count` requests hang; returns how many do.
    pub fn wait_hung(&self, count: usize, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.hung < count {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout(format!(
                    "{count} requests hanging at the origin (only {})",
                    state.hung
                )));
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(state.hung)
    }

    /// Every request so far (the most recent [`MAX_LOG`]).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.clone()
    }

    /// Body bytes sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.shared.lock().bytes_sent
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.release_all();
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    range: Option<RangeSpec>,
    close: bool,
}

/// A single byte range as sent: `bytes=A-B`, `bytes=A-` or `bytes=-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    From { first: u64, last: Option<u64> },
    Suffix(u64),
}

impl RangeSpec {
    /// Parse a `Range` header value; `None` for anything but one byte range.
    pub fn parse(value: &str) -> Option<RangeSpec> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return b.parse().ok().map(RangeSpec::Suffix);
        }
        let first = a.parse().ok()?;
        let last = if b.is_empty() {
            None
        } else {
            Some(b.parse().ok()?)
        };
        if last.is_some_and(|l| l < first) {
            return None;
        }
        Some(RangeSpec::From { first, last })
    }

    /// The bytes `[start, end)` of a file of `len` bytes, or `None` if unsatisfiable.
    pub fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            RangeSpec::From { first, .. } if first >= len => None,
            RangeSpec::From { first, last } => {
                Some((first, last.map_or(len, |l| l.saturating_add(1).min(len))))
            }
            RangeSpec::Suffix(0) => None,
            RangeSpec::Suffix(n) => Some((len.saturating_sub(n), len)),
        }
    }

    fn as_record(self) -> (u64, Option<u64>) {
        match self {
            RangeSpec::From { first, last } => (first, last),
            RangeSpec::Suffix(n) => (u64::MAX - n, None),
        }
    }
}

/// Read one request head; `Ok(None)` at a clean end of the connection.
fn read_request(
    reader: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<std::result::Result<Request, u16>>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader
            .by_ref()
            .take((MAX_HEAD - head.len().min(MAX_HEAD)) as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(if head.is_empty() {
                None
            } else {
                Some(Err(400))
            });
        }
        if head.len() + line.len() > MAX_HEAD {
            return Ok(Some(Err(431)));
        }
        let end = line == b"\r\n" || line == b"\n";
        if end && head.is_empty() {
            continue; // stray blank line between requests
        }
        head.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let mut first = lines.next().unwrap_or("").split_ascii_whitespace();
    let (Some(method), Some(target), Some(version)) = (first.next(), first.next(), first.next())
    else {
        return Ok(Some(Err(400)));
    };
    let mut close = version == "HTTP/1.0";
    let mut range = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("range") {
            range = RangeSpec::parse(value);
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let target = target.split(['?', '#']).next().unwrap_or("/");
    let Some(path) = percent_decode(target) else {
        return Ok(Some(Err(400)));
    };
    Ok(Some(Ok(Request {
        method: method.to_string(),
        path,
        range,
        close,
    })))
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IDLE));
    let _ = stream.set_nodelay(true);
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let request = match read_request(&mut reader) {
            Ok(Some(Ok(r))) => r,
            Ok(Some(Err(status))) => {
                let _ = simple(&mut out, status, "bad request\n", true, false);
                return;
            }
            Ok(None) | Err(_) => return,
        };
        let close = request.close;
        match respond(shared, &mut out, &request) {
            Ok(()) if !close => {}
            _ => return,
        }
    }
}

fn respond(shared: &Shared, out: &mut TcpStream, req: &Request) -> std::io::Result<()> {
    let head_only = req.method == "HEAD";
    let log = |status: u16| {
        let mut state = shared.lock();
        if state.log.len() >= MAX_LOG {
            state.log.remove(0);
        }
        let record = RequestRecord {
            method: req.method.clone(),
            path: req.path.clone(),
            range: req.range.map(RangeSpec::as_record),
            status,
        };
        if state.options.trace {
            eprintln!(
                "{} {} {:?} {}",
                record.method, record.path, record.range, record.status
            );
        }
        state.log.push(record);
    };
    if req.method != "GET" && !head_only {
        log(405);
        return simple(out, 405, "only GET and HEAD\n", false, false);
    }
    let Some(host_path) = resolve(&shared.root, &req.path) else {
        log(404);
        return simple(out, 404, "not found\n", false, head_only);
    };
    wait_out_hangs(shared, &req.path);
    let options = shared.lock().options.clone();
    let meta = match std::fs::metadata(&host_path) {
        Ok(m) => m,
        Err(_) => {
            log(404);
            return simple(out, 404, "not found\n", false, head_only);
        }
    };
    // A GET of a file waits for its first byte; HEADs and listings only when asked to.
    let delayed = if head_only || meta.is_dir() {
        options.ttfb_on_head
    } else {
        true
    };
    if delayed {
        std::thread::sleep(options.ttfb);
    }
    if meta.is_dir() {
        let body = listing(&host_path, &req.path)?;
        log(200);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        out.write_all(head.as_bytes())?;
        if !head_only {
            out.write_all(&body)?;
        }
        return Ok(());
    }
    let len = meta.len();
    let modified = http_date(meta.modified().unwrap_or(UNIX_EPOCH));
    let (status, start, end) = match req.range {
        None => (200, 0, len),
        Some(spec) => match spec.resolve(len) {
            Some((s, e)) => (206, s, e),
            None => {
                log(416);
                let head = format!(
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\n\r\n"
                );
                return out.write_all(head.as_bytes());
            }
        },
    };
    log(status);
    let mut head =
        format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Accept-Ranges: bytes\r\nLast-Modified: {modified}\r\n",
        if status == 200 { "OK" } else { "Partial Content" },
        end - start
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end.saturating_sub(1)
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if head_only {
        return Ok(());
    }
    let file = File::open(&host_path)?;
    let mut buf = vec![0u8; CHUNK];
    let began = Instant::now();
    let mut offset = start;
    while offset < end {
        let want = ((end - offset) as usize).min(CHUNK);
        let n = file.read_at(&mut buf[..want], offset)?;
        if n == 0 {
            break; // the file shrank: the client sees a short body
        }
        out.write_all(&buf[..n])?;
        offset += n as u64;
        shared.lock().bytes_sent += n as u64;
        if let Some(rate) = options.bandwidth.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64((offset - start) as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(began.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    Ok(())
}

/// Blocks while a hang rule matches `path` (each rule for its own time).
fn wait_out_hangs(shared: &Shared, path: &str) {
    let began = Instant::now();
    let mut state = shared.lock();
    let mut counted = false;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        // The longest remaining wait of the rules that match, `None` for "until released".
        let mut wait: Option<Option<Duration>> = None;
        for (glob, how) in &state.hangs {
            if !glob_match(glob, path) {
                continue;
            }
            match how {
                HangFor::Released => wait = Some(None),
                HangFor::Time(d) => {
                    if let Some(left) = d.checked_sub(began.elapsed()).filter(|l| !l.is_zero()) {
                        wait = match wait {
                            Some(None) => Some(None),
                            Some(Some(w)) => Some(Some(w.max(left))),
                            None => Some(Some(left)),
                        };
                    }
                }
            }
        }
        let Some(wait) = wait else { break };
        if !counted {
            counted = true;
            state.hung += 1;
            shared.changed.notify_all();
        }
        state = match wait {
            None => shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                shared
                    .changed
                    .wait_timeout(state, d)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
    if counted {
        state.hung -= 1;
        shared.changed.notify_all();
    }
}

fn simple(
    out: &mut TcpStream,
    status: u16,
    body: &str,
    close: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    out.write_all(head.as_bytes())?;
    if !head_only {
        out.write_all(body.as_bytes())?;
    }
    Ok(())
}

/// The host path of a request path, refusing anything that could leave the root.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    let mut host = root.to_path_buf();
    for component in rel.components() {
        match component {
            Component::Normal(name) => host.push(name),
            Component::CurDir => {}
            _ => return None,
        }
    }
    // No symlink may lead out either.
    let real = std::fs::canonicalize(&host).ok()?;
    real.starts_with(root).then_some(real)
}

/// `%XX` decoding of a request target; `None` for a malformed escape or a NUL.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// Percent-encode a name for a link: everything but unreserved characters.
pub fn percent_encode(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for &c in name {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML index of a directory, links relative to it (`name`, `dir/`), sorted by name.
fn listing(dir: &Path, url_path: &str) -> std::io::Result<Vec<u8>> {
    let mut entries: Vec<(Vec<u8>, bool)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| {
            let is_dir = e.path().is_dir();
            (e.file_name().as_bytes().to_vec(), is_dir)
        })
        .collect();
    entries.sort();
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><title>Index of {0}</title></head><body><h1>Index of {0}</h1><pre>\n",
        html_escape(url_path)
    );
    for (name, is_dir) in entries {
        let slash = if is_dir { "/" } else { "" };
        html.push_str(&format!(
            "<a href=\"{}{slash}\">{}{slash}</a>\n",
            percent_encode(&name),
            html_escape(&String::from_utf8_lossy(&name))
        ));
    }
    html.push_str("</pre></body></html>\n");
    Ok(html.into_bytes())
}

/// An HTTP date (RFC 7231 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s| RangeSpec::parse(s);
        assert_eq!(
            r("bytes=0-99"),
            Some(RangeSpec::From {
                first: 0,
                last: Some(99)
            })
        );
        assert_eq!(
            r("bytes=100-"),
            Some(RangeSpec::From {
                first: 100,
                last: None
            })
        );
        assert_eq!(r("bytes=-10"), Some(RangeSpec::Suffix(10)));
        for bad in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-",
            "bytes=-",
            "",
        ] {
            assert_eq!(r(bad), None, "{bad}");
        }
        assert_eq!(r("bytes=0-99").unwrap().resolve(50), Some((0, 50)));
        assert_eq!(r("bytes=10-19").unwrap().resolve(50), Some((10, 20)));
        assert_eq!(r("bytes=50-").unwrap().resolve(50), None);
        assert_eq!(r("bytes=-10").unwrap().resolve(50), Some((40, 50)));
        assert_eq!(r("bytes=-100").unwrap().resolve(50), Some((0, 50)));
        assert_eq!(
            r("bytes=0-18446744073709551615").unwrap().resolve(5),
            Some((0, 5))
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(percent_encode(b"a b&c/\xff.mkv"), "a%20b%26c%2F%FF.mkv");
        assert_eq!(percent_decode("/a%20b/%41").as_deref(), Some("/a b/A"));
        assert_eq!(percent_decode("/bad%2"), None);
        assert_eq!(percent_decode("/nul%00"), None);
        assert_eq!(html_escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }

    #[test]
    fn http_dates() {
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            http_date(UNIX_EPOCH + Duration::from_secs(1_709_210_096)),
            "Thu, 29 Feb 2024 12:34:56 GMT"
        );
    }

    fn get(origin: &Origin, head: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(origin.addr()).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&all[..split]).into_owned(),
            all[split + 4..].to_vec(),
        )
    }

    #[test]
    fn serves_files_ranges_listings_and_hangs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub dir")).unwrap();
        std::fs::write(dir.path().join("sub dir/f.bin"), b"0123456789").unwrap();
        std::fs::write(dir.path().join("a&b.txt"), b"x").unwrap();
        let origin = Origin::start(dir.path(), OriginOptions::default()).unwrap();

        let (head, body) = get(
            &origin,
            "GET /sub%20dir/f.bin HTTP/1.1\r\nRange: bytes=2-4\r\nConnection: close\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(head.contains("Content-Range: bytes 2-4/10"), "{head}");
        assert_eq!(body, b"234");
        let (head, body) = get(
            &origin,
            "GET /sub%20dir/f.bin HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"));
        assert_eq!(body, b"0123456789");
        let (head, _) = get(
            &origin,
            "GET /sub%20dir/f.bin HTTP/1.1\r\nRange: bytes=10-\r\nConnection: close\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 416"), "{head}");
        let (head, body) = get(
            &origin,
            "HEAD /sub%20dir/f.bin HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            head.contains("Content-Length: 10") && head.contains("Last-Modified: "),
            "{head}"
        );
        assert!(body.is_empty());
        let (_, body) = get(&origin, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        let html = String::from_utf8(body).unwrap();
        assert!(
            html.contains("<a href=\"sub%20dir/\">sub dir/</a>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"a%26b.txt\">a&amp;b.txt</a>"),
            "{html}"
        );
        let (head, _) = get(
            &origin,
            "GET /../etc/passwd HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        let (head, _) = get(&origin, "DELETE / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let (head, _) = get(&origin, &long);
        assert!(head.starts_with("HTTP/1.1 431"), "{head}");

        // Keep-alive: two requests on one connection.
        let mut s = TcpStream::connect(origin.addr()).unwrap();
        s.write_all(
            b"GET /a%26b.txt HTTP/1.1\r\n\r\nGET /a%26b.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        assert_eq!(all.matches("HTTP/1.1 200 OK").count(), 2, "{all}");

        // A hanging path answers only once released; others are not held up.
        origin.hang("/sub dir/*", HangFor::Released);
        let addr = origin.addr();
        let hung = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /sub%20dir/f.bin HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        assert_eq!(origin.wait_hung(1, Duration::from_secs(30)).unwrap(), 1);
        let (head, _) = get(
            &origin,
            "GET /a%26b.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"));
        assert_eq!(origin.release("/sub dir/*"), 1);
        assert!(hung.join().unwrap().ends_with(b"0123456789"));
        assert_eq!(origin.hung(), 0);

        // A timed hang ends by itself.
        origin.hang("/a&b.txt", HangFor::Time(Duration::from_millis(100)));
        let (head, body) = get(
            &origin,
            "GET /a%26b.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"));
        assert_eq!(body, b"x");

        let gets = origin
            .requests()
            .into_iter()
            .filter(|r| r.path == "/sub dir/f.bin" && r.range == Some((2, Some(4))))
            .count();
        assert_eq!(gets, 1);
    }
}
