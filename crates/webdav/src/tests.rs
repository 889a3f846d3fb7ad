//! The backend against a scripted origin on 127.0.0.1: what it sends, and what it makes of
//! answers real servers give (Decypharr's answer to a bad range, a 200 to a ranged GET, errors).

use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::AtomicUsize;

/// One request as the origin saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

type Script = dyn Fn(&Seen) -> Vec<u8> + Send + Sync;

/// An HTTP origin on std threads answering every request with what `script` gives (a whole
/// response, `Connection: close`), recording requests.
struct Origin {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn origin(script: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script: Arc<Script> = Arc::new(script);
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (script, log) = (script.clone(), log.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut headers = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                        if k == "content-length" {
                            length = v.parse().unwrap();
                        }
                        headers.push((k, v));
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let req = Seen {
                    method,
                    path,
                    headers,
                };
                let answer = script(&req);
                log.lock().unwrap().push(req);
                let mut stream = stream;
                let _ = stream.write_all(&answer);
            });
        }
    });
    Origin { port, seen }
}

impl Origin {
    fn dav(&self) -> WebDav {
        WebDav::new(
            &format!("http://127.0.0.1:{}/dav/", self.port),
            WebDavOptions {
                credentials: Some(("alice".into(), "s3cret".into())),
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn respond(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn data() -> Vec<u8> {
    (0..100u8).collect()
}

/// Decypharr's shape: `d:` prefix, absolute URLs, RFC 3339, the directory's own entry not
/// first, and a file of 100 bytes.
fn listing() -> Vec<u8> {
    let xml = r#"<?xml version="1.0"?><d:multistatus xmlns:d="DAV:">
<d:response><d:href>http://127.0.0.1/dav/a%20%5B1%5D.bin</d:href><d:propstat><d:prop><d:resourcetype/><d:getcontentlength>100</d:getcontentlength><d:getlastmodified>2024-05-01T10:20:30Z</d:getlastmodified></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
<d:response><d:href>http://127.0.0.1/dav/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
<d:response><d:href>http://127.0.0.1/dav/sub/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype><d:getlastmodified>Wed, 01 May 2024 10:20:30 GMT</d:getlastmodified></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
<d:response><d:href>http://127.0.0.1/dav/sub/deeper.txt</d:href><d:propstat><d:prop><d:resourcetype/><d:getcontentlength>1</d:getcontentlength></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
</d:multistatus>"#;
    respond(
        "207 Multi-Status",
        &[("Content-Type", "application/xml")],
        xml.as_bytes(),
    )
}

fn file() -> RelPath {
    RelPath::parse(b"a [1].bin").unwrap()
}

/// An origin that lists, and answers GET with `get`.
fn with_get(get: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Origin {
    origin(move |req| match req.method.as_str() {
        "PROPFIND" => listing(),
        "GET" => get(req),
        _ => respond("405 Method Not Allowed", &[], b""),
    })
}

fn range_of(req: &Seen) -> (u64, u64) {
    let v = &req.headers.iter().find(|(k, _)| k == "range").unwrap().1;
    let (a, b) = v.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

fn honest_range(req: &Seen) -> Vec<u8> {
    let (a, b) = range_of(req);
    respond(
        "206 Partial Content",
        &[("Content-Range", &format!("bytes {a}-{b}/100"))],
        &data()[a as usize..=b as usize],
    )
}

#[test]
fn lists_with_attributes_and_stats_listed_children_without_a_request() {
    let o = with_get(honest_range);
    let dav = o.dav();
    let mut out: Vec<mountshare_fs::DirEntryPlus> = Vec::new();
    dav.read_dir_plus(&RelPath::root(), &mut out).unwrap();
    let names: Vec<&[u8]> = out.iter().map(|e| e.name.as_slice()).collect();
    assert_eq!(
        names,
        [&b"a [1].bin"[..], b"sub"],
        "self and grandchildren left out"
    );
    let a = out[0].attr.clone().unwrap();
    assert_eq!(
        (a.kind, a.mode, a.size, a.nlink),
        (FileKind::Regular, 0o444, 100, 1)
    );
    assert_eq!(a.mtime.seconds, 1_714_558_830);
    assert_eq!(a.atime, a.mtime);
    assert_eq!(a.ino, path_hash(b"a [1].bin"));
    let d = out[1].attr.clone().unwrap();
    assert_eq!((d.kind, d.mode, d.nlink), (FileKind::Directory, 0o555, 2));
    assert_eq!(d.mtime.seconds, 1_714_558_830);
    assert_eq!(dav.stat(&file()).unwrap(), a);
    let seen = o.seen();
    assert_eq!(seen.len(), 1, "the stat was answered from the listing");
    assert_eq!(seen[0].method, "PROPFIND");
    assert_eq!(seen[0].path, "/dav/");
    let header = |k: &str| {
        seen[0]
            .headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("depth").as_deref(), Some("1"));
    assert_eq!(
        header("authorization").as_deref(),
        Some("Basic YWxpY2U6czNjcmV0")
    );
}

#[test]
fn reads_are_ranged_clamped_and_only_get_and_propfind_are_sent() {
    let o = with_get(honest_range);
    let dav = o.dav();
    let mut buf = [0u8; 30];
    let r = dav.read(&file(), 80, &mut buf).unwrap();
    assert_eq!((r.bytes, r.eof), (20, true));
    assert_eq!(&buf[..20], &data()[80..]);
    let r = dav.read(&file(), 10, &mut buf).unwrap();
    assert_eq!((r.bytes, r.eof), (30, false));
    assert_eq!(&buf[..], &data()[10..40]);
    let r = dav.read(&file(), 100, &mut buf).unwrap();
    assert_eq!((r.bytes, r.eof), (0, true));
    let seen = o.seen();
    assert!(seen
        .iter()
        .all(|s| s.method == "PROPFIND" || s.method == "GET"));
    let gets: Vec<(u64, u64)> = seen
        .iter()
        .filter(|s| s.method == "GET")
        .map(range_of)
        .collect();
    assert_eq!(
        gets,
        [(80, 99), (10, 39)],
        "clamped at the size; none past EOF"
    );
    assert!(seen.iter().any(|s| s.path == "/dav/a%20%5B1%5D.bin"));
}

fn eio_errno() -> Option<i32> {
    Some(rustix::io::Errno::IO.raw_os_error())
}

#[test]
fn decypharrs_answer_to_a_bad_range_is_eio_not_wrong_bytes() {
    let o = with_get(|_| {
        respond(
            "206 Partial Content",
            &[("Content-Range", "bytes 0-0/100")],
            &[0],
        )
    });
    let mut buf = [7u8; 10];
    assert_eq!(
        o.dav().read(&file(), 10, &mut buf).unwrap_err().errno(),
        eio_errno()
    );
    assert_eq!(buf, [7u8; 10], "nothing written");
    // A range of the right bytes of another total (the file changed) is refused too.
    let o = with_get(|req| {
        let (a, b) = range_of(req);
        respond(
            "206 Partial Content",
            &[("Content-Range", &format!("bytes {a}-{b}/999"))],
            &data()[a as usize..=b as usize],
        )
    });
    assert_eq!(
        o.dav().read(&file(), 10, &mut buf).unwrap_err().errno(),
        eio_errno()
    );
    // A body shorter than its range.
    let o = with_get(|req| {
        let (a, b) = range_of(req);
        let mut r = respond(
            "206 Partial Content",
            &[("Content-Range", &format!("bytes {a}-{b}/100"))],
            &data()[a as usize..b as usize],
        );
        // Claim the full length, send one byte less, close.
        let text = String::from_utf8_lossy(&r).replace(
            &format!("Content-Length: {}", b - a),
            &format!("Content-Length: {}", b - a + 1),
        );
        r = text.into_bytes();
        r
    });
    assert!(o.dav().read(&file(), 10, &mut buf).is_err());
}

#[test]
fn a_200_to_a_range_is_used_only_when_it_is_the_whole_file() {
    let o = with_get(|_| respond("200 OK", &[], &data()));
    let mut buf = [0u8; 10];
    let r = o.dav().read(&file(), 50, &mut buf).unwrap();
    assert_eq!(r.bytes, 10);
    assert_eq!(&buf[..], &data()[50..60]);
    let o = with_get(|_| respond("200 OK", &[], &data()[..50]));
    assert_eq!(
        o.dav().read(&file(), 10, &mut buf).unwrap_err().errno(),
        eio_errno()
    );
}

#[test]
fn statuses_and_transport_failures_map_to_errnos() {
    use rustix::io::Errno;
    let cases: [(&str, Errno); 5] = [
        ("404 Not Found", Errno::NOENT),
        ("401 Unauthorized", Errno::ACCESS),
        ("403 Forbidden", Errno::ACCESS),
        ("503 Service Unavailable", Errno::NOTCONN),
        ("500 Internal Server Error", Errno::NOTCONN),
    ];
    for (status, errno) in cases {
        let o = origin(move |_| respond(status, &[], b""));
        let err = o.dav().stat(&file()).unwrap_err();
        assert_eq!(err.errno(), Some(errno.raw_os_error()), "{status}");
    }
    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dav = WebDav::new(&format!("http://127.0.0.1:{port}/"), Default::default()).unwrap();
    assert_eq!(
        dav.stat(&file()).unwrap_err().errno(),
        Some(Errno::NOTCONN.raw_os_error())
    );
    // Not a multistatus.
    let o = origin(|_| respond("207 Multi-Status", &[], b"<html/>"));
    assert_eq!(o.dav().stat(&file()).unwrap_err().errno(), eio_errno());
}

#[test]
fn stat_of_an_unlisted_path_is_one_depth_0_propfind_tolerating_children() {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let o = origin(move |_| {
        c.fetch_add(1, Ordering::Relaxed);
        listing()
    });
    let dav = o.dav();
    let sub = dav.stat(&RelPath::parse(b"sub").unwrap()).unwrap();
    assert!(sub.is_dir());
    let seen = o.seen();
    assert_eq!(seen[0].path, "/dav/sub");
    assert!(seen[0]
        .headers
        .iter()
        .any(|(k, v)| k == "depth" && v == "0"));
    assert_eq!(
        dav.stat(&RelPath::parse(b"nothing").unwrap())
            .unwrap_err()
            .errno(),
        Some(rustix::io::Errno::NOENT.raw_os_error()),
        "an answer without the path asked for is NOENT"
    );
    assert_eq!(count.load(Ordering::Relaxed), 2);
}

#[test]
fn urls_are_checked() {
    assert_eq!(
        WebDav::new("https://h/", Default::default()).unwrap_err(),
        UrlError::Https
    );
    assert!(WebDav::new("ftp://h/", Default::default()).is_err());
    assert!(WebDav::new("http:///x", Default::default()).is_err());
    assert!(WebDav::new("http://u:p@h/", Default::default()).is_err());
    assert!(WebDav::new("http://h/?q", Default::default()).is_err());
    let dav = WebDav::new("http://h:8080/my%20dav", Default::default()).unwrap();
    assert_eq!(dav.display_url(), "http://h:8080/my%20dav/");
    assert_eq!(
        dav.url(&RelPath::parse(b"a b/c#").unwrap(), false),
        "http://h:8080/my%20dav/a%20b/c%23"
    );
    assert!(is_url("HTTP://x") && is_url("https://x") && !is_url("/srv/http://"));
    assert_eq!(base64(b"alice:s3cret"), "YWxpY2U6czNjcmV0");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(parse_content_range("bytes 0-0/100"), Some((0, 0, 100)));
    assert_eq!(parse_content_range("bytes */100"), None);
}
