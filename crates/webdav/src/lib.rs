//! A read-only mountshare backend over an `http://` WebDAV collection (Decypharr, rclone
//! `serve webdav`, nginx, Apache): `mountshare serve http://HOST:PORT/PATH/` serves it over
//! NFSv3 without a FUSE mount in between.
//!
//! Only `PROPFIND` (Depth 1, or 0 for one object) and ranged `GET` are ever sent — never
//! `DELETE`, `PUT`, `MOVE` or any other method that changes the origin (Decypharr deletes a
//! torrent on `DELETE`). `https://` is not supported yet: the client is built without TLS, so
//! the static builds need no C compiler.
//!
//! A listing's one PROPFIND gives every entry's attributes ([`Backend::read_dir_plus`]), and
//! they are kept for [`WebDavOptions::attr_ttl`] so that a stat of an entry just listed costs
//! no request. A read is a `GET` with `Range`, and its answer is checked against what was
//! asked: a server that answers another range (Decypharr answers a bad one with `206 bytes
//! 0-0/SIZE`) gives EIO, never wrong bytes.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod href;
mod xml;

use mountshare_fs::{
    Attr, Backend, Capabilities, DirEntryName, DirSink, FileKind, FsError, FsStats, ReadOutcome,
    RelPath,
};
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the collection is reached and read.
#[derive(Clone)]
pub struct WebDavOptions {
    /// User and password for HTTP basic authentication.
    pub credentials: Option<(String, String)>,
    pub connect_timeout: Duration,
    /// How long one read from the connection may wait (also for the answer's first byte).
    pub read_timeout: Duration,
    /// The largest PROPFIND answer read; a listing past it fails (EIO), never comes back short.
    pub max_listing_bytes: u64,
    /// How long attributes from a listing (or a stat) are used without asking again.
    pub attr_ttl: Duration,
    /// Attributes kept at most (past it, the expired ones go, then all of them).
    pub max_cached_attrs: usize,
}

impl Default for WebDavOptions {
    fn default() -> Self {
        WebDavOptions {
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            max_listing_bytes: 256 << 20,
            attr_ttl: Duration::from_secs(1),
            max_cached_attrs: 1 << 17,
        }
    }
}

impl std::fmt::Debug for WebDavOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavOptions")
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("max_listing_bytes", &self.max_listing_bytes)
            .field("attr_ttl", &self.attr_ttl)
            .finish_non_exhaustive()
    }
}

/// Why a collection URL is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("https is not supported yet: serve the collection over http:// (on a trusted network or through a local TLS-terminating proxy)")]
    Https,
    #[error("{0}: not an http:// URL")]
    NotHttp(String),
    #[error("{0}: no host")]
    NoHost(String),
    #[error("{0}: a query or fragment is not allowed in the collection URL")]
    Query(String),
}

/// Whether a command-line argument names a WebDAV collection rather than a directory.
pub fn is_url(arg: &str) -> bool {
    let lower = arg.get(..8).unwrap_or(arg).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The body of every PROPFIND: the three properties used, nothing else.
const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getcontentlength/><D:getlastmodified/></D:prop></D:propfind>"#;

/// A WebDAV collection served as a read-only tree.
pub struct WebDav {
    agent: ureq::Agent,
    /// `http://host:port`, no trailing `/`.
    origin: String,
    /// The collection's path, decoded and normalized (`dav/media`, empty for `/`).
    base: Vec<u8>,
    authorization: Option<String>,
    user: Option<String>,
    options: WebDavOptions,
    attrs: Mutex<HashMap<RelPath, (Instant, Attr)>>,
    denied_logged: AtomicBool,
}

impl std::fmt::Debug for WebDav {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDav")
            .field("url", &self.display_url())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn errno(e: rustix::io::Errno) -> FsError {
    FsError::from(e)
}

fn eio() -> FsError {
    errno(rustix::io::Errno::IO)
}

/// 64-bit FNV-1a of a path: the inode number, the same in every process.
fn path_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // 0 and 1 are not inode numbers anyone expects.
    h.max(2)
}

/// Base64 of `input` (standard alphabet, padded), for the basic-auth header.
fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = (n >> (18 - 6 * i) & 63) as usize;
                out.push(char::from(T.get(idx).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `Content-Range: bytes START-END/TOTAL`.
fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    Some((
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

impl WebDav {
    /// The collection at `url` (`http://host[:port]/path/`). Nothing is sent until the first call.
    pub fn new(url: &str, options: WebDavOptions) -> Result<WebDav, UrlError> {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(UrlError::Https);
        }
        if !lower.starts_with("http://") {
            return Err(UrlError::NotHttp(url.to_string()));
        }
        let rest = url.get(7..).unwrap_or("");
        if rest.contains(['?', '#']) {
            return Err(UrlError::Query(url.to_string()));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(UrlError::NoHost(url.to_string()));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(options.connect_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .timeout_recv_response(Some(options.read_timeout))
            .timeout_per_write(Some(options.read_timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .allow_non_standard_methods(true)
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .user_agent(concat!("mountshare/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let authorization = options
            .credentials
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        Ok(WebDav {
            agent,
            origin: format!("http://{authority}"),
            base: href::normalize(&href::decode(path.as_bytes())),
            authorization,
            user: options.credentials.as_ref().map(|c| c.0.clone()),
            options,
            attrs: Mutex::new(HashMap::new()),
            denied_logged: AtomicBool::new(false),
        })
    }

    /// The collection's URL, for logs (no credentials).
    pub fn display_url(&self) -> String {
        self.url(&RelPath::root(), true)
    }

    /// The URL of `path`, with a trailing `/` when `dir`.
    fn url(&self, path: &RelPath, dir: bool) -> String {
        let mut url = String::with_capacity(
            self.origin.len() + 3 * (self.base.len() + path.as_bytes().len()) + 2,
        );
        url.push_str(&self.origin);
        url.push('/');
        href::encode_into(&mut url, &self.base, true);
        if !self.base.is_empty() && !path.is_root() {
            url.push('/');
        }
        href::encode_into(&mut url, path.as_bytes(), true);
        if dir && !url.ends_with('/') {
            url.push('/');
        }
        url
    }

    /// The path below the collection that an `href` names; `None` for one outside it.
    fn rel_of_href(&self, href: &str) -> Option<Vec<u8>> {
        let full = href::href_path(href);
        if self.base.is_empty() {
            return Some(full);
        }
        let rest = full.strip_prefix(self.base.as_slice())?;
        match rest.split_first() {
            None => Some(Vec::new()),
            Some((b'/', tail)) => Some(tail.to_vec()),
            Some(_) => None,
        }
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Result<ureq::http::Response<ureq::Body>, FsError> {
        let mut builder = ureq::http::Request::builder().method(method).uri(url);
        if let Some(auth) = &self.authorization {
            builder = builder.header("Authorization", auth.as_str());
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(body).map_err(|e| {
            tracing::warn!(url, error = %e, "cannot build a WebDAV request");
            eio()
        })?;
        let response = self
            .agent
            .run(request)
            .map_err(|e| self.transport_error(url, e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        Err(self.status_error(method, url, status))
    }

    fn transport_error(&self, url: &str, e: ureq::Error) -> FsError {
        use ureq::Error as E;
        match e {
            E::Timeout(_) | E::ConnectionFailed | E::HostNotFound | E::Io(_) => {
                tracing::debug!(url, error = %e, "WebDAV server unreachable");
                errno(rustix::io::Errno::NOTCONN)
            }
            e => {
                tracing::warn!(url, error = %e, "WebDAV request failed");
                eio()
            }
        }
    }

    fn status_error(&self, method: &str, url: &str, status: u16) -> FsError {
        match status {
            404 | 410 => errno(rustix::io::Errno::NOENT),
            401 | 403 => {
                if !self.denied_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        url,
                        status,
                        user = self.user.as_deref().unwrap_or("(none: no --webdav-user given)"),
                        "the WebDAV server refuses these credentials; calls are answered with access denied"
                    );
                }
                errno(rustix::io::Errno::ACCESS)
            }
            500..=599 => {
                tracing::debug!(method, url, status, "WebDAV server error");
                errno(rustix::io::Errno::NOTCONN)
            }
            _ => {
                tracing::warn!(method, url, status, "unexpected WebDAV answer");
                eio()
            }
        }
    }

    fn attr_of(&self, rel: &[u8], prop: &xml::Prop) -> Attr {
        let time = prop.modified.unwrap_or_default();
        let (kind, mode, nlink, size) = if prop.is_dir {
            (FileKind::Directory, 0o555, 2, 0)
        } else {
            (FileKind::Regular, 0o444, 1, prop.size.unwrap_or(0))
        };
        Attr {
            kind,
            mode,
            nlink,
            uid: 0,
            gid: 0,
            size,
            used: size,
            rdev: (0, 0),
            dev: 0,
            ino: path_hash(rel),
            atime: time,
            mtime: time,
            ctime: time,
        }
    }

    /// PROPFIND `path` with `depth`, calling `each` with every entry's path below the collection
    /// (decoded, normalized) and attributes. Entries outside the collection are skipped.
    fn propfind(
        &self,
        path: &RelPath,
        dir: bool,
        depth: &str,
        each: &mut dyn FnMut(Vec<u8>, Attr),
    ) -> Result<(), FsError> {
        let url = self.url(path, dir);
        let response = self.request(
            "PROPFIND",
            &url,
            &[
                ("Depth", depth),
                ("Content-Type", "application/xml; charset=utf-8"),
            ],
            PROPFIND_BODY,
        )?;
        let reader = response.into_body().into_reader();
        xml::parse_multistatus(reader, self.options.max_listing_bytes, |prop| {
            if let Some(rel) = self.rel_of_href(&prop.href) {
                let attr = self.attr_of(&rel, &prop);
                each(rel, attr);
            }
        })
        .map_err(|e| {
            tracing::warn!(url, error = %e, "cannot read a WebDAV listing");
            match e {
                xml::XmlError::Io(_) => errno(rustix::io::Errno::NOTCONN),
                _ => eio(),
            }
        })
    }

    fn cached(&self, path: &RelPath) -> Option<Attr> {
        let attrs = self.attrs.lock().unwrap_or_else(|p| p.into_inner());
        let (at, attr) = attrs.get(path)?;
        (at.elapsed() < self.options.attr_ttl).then(|| attr.clone())
    }

    fn remember(&self, entries: impl IntoIterator<Item = (RelPath, Attr)>) {
        let now = Instant::now();
        let mut attrs = self.attrs.lock().unwrap_or_else(|p| p.into_inner());
        for (path, attr) in entries {
            if attrs.len() >= self.options.max_cached_attrs {
                let ttl = self.options.attr_ttl;
                attrs.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
                if attrs.len() >= self.options.max_cached_attrs {
                    attrs.clear();
                }
            }
            attrs.insert(path, (now, attr));
        }
    }

    /// List the directory at `path`: its children (name, attributes) from one PROPFIND.
    fn list(&self, path: &RelPath) -> Result<Vec<(Vec<u8>, Attr)>, FsError> {
        let want = path.as_bytes();
        let mut children = Vec::new();
        let mut own: Option<Attr> = None;
        self.propfind(path, true, "1", &mut |rel, attr| {
            if rel == want {
                own = Some(attr);
                return;
            }
            let name = if want.is_empty() {
                rel.as_slice()
            } else {
                match rel.strip_prefix(want).and_then(|r| r.strip_prefix(b"/")) {
                    Some(name) => name,
                    None => return,
                }
            };
            // Only direct children (a server that ignores Depth may send more).
            if mountshare_fs::validate_name(name).is_ok() {
                children.push((name.to_vec(), attr));
            }
        })?;
        match &own {
            Some(attr) if !attr.is_dir() => return Err(errno(rustix::io::Errno::NOTDIR)),
            _ => {}
        }
        let mut seen = std::collections::HashSet::with_capacity(children.len());
        children.retain(|(name, _)| seen.insert(name.clone()));
        self.remember(
            own.map(|a| (path.clone(), a)).into_iter().chain(
                children
                    .iter()
                    .filter_map(|(name, attr)| path.join(name).ok().map(|p| (p, attr.clone()))),
            ),
        );
        Ok(children)
    }
}

impl Backend for WebDav {
    fn stat(&self, path: &RelPath) -> Result<Attr, FsError> {
        if let Some(attr) = self.cached(path) {
            return Ok(attr);
        }
        let want = path.as_bytes();
        let mut found = None;
        self.propfind(path, path.is_root(), "0", &mut |rel, attr| {
            if rel == want && found.is_none() {
                found = Some(attr);
            }
        })?;
        let attr = found.ok_or_else(|| errno(rustix::io::Errno::NOENT))?;
        self.remember([(path.clone(), attr.clone())]);
        Ok(attr)
    }

    fn read_dir(&self, path: &RelPath) -> Result<Vec<DirEntryName>, FsError> {
        Ok(self.list(path)?.into_iter().map(|(name, _)| name).collect())
    }

    fn read_dir_plus(&self, path: &RelPath, out: &mut dyn DirSink) -> Result<(), FsError> {
        for (name, attr) in self.list(path)? {
            out.entry(&name, Some(attr));
        }
        Ok(())
    }

    fn read_link(&self, _path: &RelPath) -> Result<Vec<u8>, FsError> {
        Err(errno(rustix::io::Errno::INVAL))
    }

    fn read(&self, path: &RelPath, offset: u64, buf: &mut [u8]) -> Result<ReadOutcome, FsError> {
        let attr = self.stat(path)?;
        if attr.is_dir() {
            return Err(errno(rustix::io::Errno::ISDIR));
        }
        let size = attr.size;
        if offset >= size || buf.is_empty() {
            return Ok(ReadOutcome {
                bytes: 0,
                eof: offset >= size,
                attr,
            });
        }
        let want = (buf.len() as u64).min(size - offset);
        let end = offset + want - 1;
        let url = self.url(path, false);
        let range = format!("bytes={offset}-{end}");
        let response = self.request("GET", &url, &[("Range", &range)], "")?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let skip = match status {
            206 => {
                let got = header("content-range")
                    .as_deref()
                    .and_then(parse_content_range);
                if got != Some((offset, end, size)) {
                    tracing::warn!(url, asked = %range, size, answered = ?header("content-range"), "the WebDAV server answered another range than asked; not using it");
                    return Err(eio());
                }
                0
            }
            200 => {
                let whole = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
                if whole != Some(size) {
                    tracing::warn!(url, asked = %range, size, length = ?whole, "the WebDAV server ignored the range and its answer is not the whole file; not using it");
                    return Err(eio());
                }
                offset
            }
            _ => {
                tracing::warn!(url, status, "unexpected answer to a ranged GET");
                return Err(eio());
            }
        };
        let mut body = response.into_body().into_reader();
        if skip > 0 {
            let skipped = std::io::copy(&mut (&mut body).take(skip), &mut std::io::sink())
                .map_err(|_| errno(rustix::io::Errno::NOTCONN))?;
            if skipped != skip {
                return Err(eio());
            }
        }
        let want = usize::try_from(want).map_err(|_| eio())?;
        let dest = buf.get_mut(..want).ok_or_else(eio)?;
        body.read_exact(dest).map_err(|e| {
            tracing::warn!(url, error = %e, "a ranged GET ended early");
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                eio()
            } else {
                errno(rustix::io::Errno::NOTCONN)
            }
        })?;
        Ok(ReadOutcome {
            bytes: want,
            eof: offset + want as u64 >= size,
            attr,
        })
    }

    fn statfs(&self) -> Result<FsStats, FsError> {
        Ok(FsStats {
            total_bytes: 1 << 50,
            free_bytes: 0,
            avail_bytes: 0,
            total_files: 1 << 32,
            free_files: 0,
            avail_files: 0,
        })
    }

    fn open_file(&self, _path: &RelPath) -> Option<Result<Arc<std::fs::File>, FsError>> {
        None
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            reads_in_order: true,
        }
    }
}

#[cfg(test)]
mod tests;
