//! The `207 Multi-Status` answer to a PROPFIND, read as a stream: one [`Prop`] per `<response>`.
//!
//! Servers differ (Decypharr, rclone, nginx, Apache): namespace prefixes (`d:`, `D:`, none, a
//! default `xmlns`), `href`s as absolute URLs or absolute paths, `getlastmodified` in RFC 1123
//! or RFC 3339. Elements are matched by local name whatever their prefix. A document type
//! declaration is refused (so no entity is ever declared, let alone expanded), and the
//! document may be at most the cap given: past it the listing is an error, never a part of it.

use mountshare_fs::Timestamp;
use quick_xml::events::Event;
use std::io::{BufRead, Read};

/// The longest text of one element kept (an `href` or a property value).
const MAX_TEXT: usize = 16 << 10;
/// The deepest nesting of elements accepted.
const MAX_DEPTH: usize = 64;

/// What one `<response>` says about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Prop {
    /// The `href`, as sent (still percent-encoded).
    pub href: String,
    pub is_dir: bool,
    pub size: Option<u64>,
    pub modified: Option<Timestamp>,
}

/// Why a multistatus could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum XmlError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the answer declares a document type (refused: no entities are expanded)")]
    DocType,
    #[error("an element's text is longer than {MAX_TEXT} bytes")]
    TextTooLong,
    #[error("elements are nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("the answer is not well-formed: {0}")]
    Syntax(String),
    #[error("the answer is not a multistatus")]
    NotMultistatus,
    #[error("reading the answer: {0}")]
    Io(#[from] std::io::Error),
}

/// A reader that fails, rather than ends, once more than `cap` bytes come from `inner`.
pub(crate) struct Capped<R> {
    inner: R,
    cap: u64,
    left: u64,
}

impl<R: Read> Capped<R> {
    pub(crate) fn new(inner: R, cap: u64) -> Self {
        Capped {
            inner,
            cap,
            left: cap,
        }
    }
}

/// The error [`Capped`] reports, recognised again by [`is_cap_error`].
#[derive(Debug)]
struct OverCap(u64);

impl std::fmt::Display for OverCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl std::error::Error for OverCap {}

fn is_cap_error(e: &std::io::Error) -> Option<u64> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<OverCap>())
        .map(|c| c.0)
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(std::io::Error::other(OverCap(self.cap))),
            };
        }
        let want = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = self.inner.read(buf.get_mut(..want).unwrap_or_default())?;
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

/// Which element's text is being collected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Href,
    Length,
    Modified,
    Status,
    ResponseStatus,
}

/// One `<propstat>`'s properties, applied to the response only when its status is 200.
#[derive(Default)]
struct PropStat {
    is_dir: bool,
    size: Option<u64>,
    modified: Option<Timestamp>,
    ok: bool,
}

/// Read a multistatus from `body`, at most `cap` bytes of it, calling `each` per response
/// that is not itself an error (a `<status>` outside `<propstat>` that is not 2xx).
pub(crate) fn parse_multistatus<R: Read>(
    body: R,
    cap: u64,
    mut each: impl FnMut(Prop),
) -> Result<(), XmlError> {
    let reader = std::io::BufReader::with_capacity(64 << 10, Capped::new(body, cap));
    parse(reader, &mut each).map_err(|e| match e {
        XmlError::Io(io) => match is_cap_error(&io) {
            Some(cap) => XmlError::TooLarge(cap),
            None => XmlError::Io(io),
        },
        e => e,
    })
}

fn syntax(e: quick_xml::Error) -> XmlError {
    match e {
        quick_xml::Error::Io(io) => {
            let io = std::sync::Arc::try_unwrap(io)
                .unwrap_or_else(|shared| std::io::Error::new(shared.kind(), shared.to_string()));
            match is_cap_error(&io) {
                Some(cap) => XmlError::TooLarge(cap),
                None => XmlError::Io(io),
            }
        }
        e => XmlError::Syntax(e.to_string()),
    }
}

fn parse<B: BufRead>(body: B, each: &mut dyn FnMut(Prop)) -> Result<(), XmlError> {
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    // Local names of the open elements.
    let mut stack: Vec<Vec<u8>> = Vec::new();
    let mut seen_root = false;
    let mut response: Option<(Prop, bool)> = None; // (what it says, whether it is not an error)
    let mut propstat: Option<PropStat> = None;
    let mut field: Option<Field> = None;
    let mut text = String::new();
    loop {
        buf.clear();
        let event = reader.read_event_into(&mut buf).map_err(syntax)?;
        match event {
            Event::DocType(_) => return Err(XmlError::DocType),
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name().as_ref().to_vec();
                if !seen_root {
                    if name != b"multistatus" {
                        return Err(XmlError::NotMultistatus);
                    }
                    seen_root = true;
                }
                let parent = stack.last().map(Vec::as_slice);
                match (name.as_slice(), parent) {
                    (b"response", Some(b"multistatus")) => {
                        response = Some((Prop::default(), true));
                    }
                    (b"href", Some(b"response")) => field = Some(Field::Href),
                    (b"status", Some(b"response")) => field = Some(Field::ResponseStatus),
                    (b"propstat", Some(b"response")) => propstat = Some(PropStat::default()),
                    (b"status", Some(b"propstat")) => field = Some(Field::Status),
                    (b"getcontentlength", Some(b"prop")) => field = Some(Field::Length),
                    (b"getlastmodified", Some(b"prop")) => field = Some(Field::Modified),
                    (b"collection", Some(b"resourcetype")) => {
                        if let Some(ps) = propstat.as_mut() {
                            ps.is_dir = true;
                        }
                    }
                    _ => {}
                }
                text.clear();
                if empty {
                    field = None;
                } else {
                    if stack.len() >= MAX_DEPTH {
                        return Err(XmlError::TooDeep);
                    }
                    stack.push(name);
                }
            }
            Event::Text(t) => {
                if field.is_some() {
                    let s = t.unescape().map_err(syntax)?;
                    if text.len() + s.len() > MAX_TEXT {
                        return Err(XmlError::TextTooLong);
                    }
                    text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if field.is_some() {
                    let s = std::str::from_utf8(c.as_ref())
                        .map_err(|e| XmlError::Syntax(e.to_string()))?;
                    if text.len() + s.len() > MAX_TEXT {
                        return Err(XmlError::TextTooLong);
                    }
                    text.push_str(s);
                }
            }
            Event::End(_) => {
                let name = stack.pop().unwrap_or_default();
                if let Some(f) = field.take() {
                    let value = text.trim();
                    match f {
                        Field::Href => {
                            if let Some((prop, _)) = response.as_mut() {
                                prop.href = value.to_string();
                            }
                        }
                        Field::ResponseStatus => {
                            if let Some((_, ok)) = response.as_mut() {
                                *ok = status_is_success(value);
                            }
                        }
                        Field::Status => {
                            if let Some(ps) = propstat.as_mut() {
                                ps.ok = status_is_success(value);
                            }
                        }
                        Field::Length => {
                            if let Some(ps) = propstat.as_mut() {
                                ps.size = value.parse().ok();
                            }
                        }
                        Field::Modified => {
                            if let Some(ps) = propstat.as_mut() {
                                ps.modified = parse_date(value);
                            }
                        }
                    }
                    text.clear();
                }
                match name.as_slice() {
                    b"propstat" => {
                        if let (Some(ps), Some((prop, _))) = (propstat.take(), response.as_mut()) {
                            if ps.ok {
                                prop.is_dir |= ps.is_dir;
                                prop.size = prop.size.or(ps.size);
                                prop.modified = prop.modified.or(ps.modified);
                            }
                        }
                    }
                    b"response" if stack.last().map(Vec::as_slice) == Some(b"multistatus") => {
                        if let Some((prop, ok)) = response.take() {
                            if ok && !prop.href.is_empty() {
                                each(prop);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => {
                return if seen_root {
                    Ok(())
                } else {
                    Err(XmlError::NotMultistatus)
                };
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
}

/// `HTTP/1.1 200 OK` and the like: a 2xx status line.
fn status_is_success(line: &str) -> bool {
    line.split_whitespace()
        .nth(1)
        .is_some_and(|code| code.len() == 3 && code.starts_with('2'))
}

/// `getlastmodified` as RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`, what RFC 4918 asks for)
/// or RFC 3339 (`2024-05-01T10:20:30.5Z`, what some servers send).
pub(crate) fn parse_date(text: &str) -> Option<Timestamp> {
    if let Ok(t) = httpdate::parse_http_date(text) {
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        return Some(Timestamp {
            seconds: i64::try_from(d.as_secs()).ok()?,
            nanos: d.subsec_nanos(),
        });
    }
    parse_rfc3339(text)
}

fn digits(s: &str, from: usize, len: usize) -> Option<i64> {
    let part = s.get(from..from + len)?;
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let s = text.trim();
    let b = s.as_bytes();
    if b.len() < 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let (year, month, day) = (digits(s, 0, 4)?, digits(s, 5, 2)?, digits(s, 8, 2)?);
    let (hour, min, sec) = (digits(s, 11, 2)?, digits(s, 14, 2)?, digits(s, 17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b.get(i).copied().unwrap_or(b'0') - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let o = digits(s, i + 1, 2)? * 3600 + digits(s, i + 4, 2)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset;
    Some(Timestamp { seconds, nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(xml: &str) -> Result<Vec<Prop>, XmlError> {
        let mut out = Vec::new();
        parse_multistatus(xml.as_bytes(), 1 << 20, |p| out.push(p))?;
        Ok(out)
    }

    #[test]
    fn dates_in_both_forms() {
        let t = |s| parse_date(s).map(|t| (t.seconds, t.nanos));
        assert_eq!(t("Sun, 06 Nov 1994 08:49:37 GMT"), Some((784_111_777, 0)));
        assert_eq!(t("1994-11-06T08:49:37Z"), Some((784_111_777, 0)));
        assert_eq!(
            t("1994-11-06T09:49:37.25+01:00"),
            Some((784_111_777, 250_000_000))
        );
        assert_eq!(t("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(t("2024-02-29T12:00:00Z"), Some((1_709_208_000, 0)));
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2024-13-01T00:00:00Z"), None);
    }

    /// rclone serve webdav: `D:` prefix, absolute paths, RFC 1123, 404 propstat for the
    /// properties a collection lacks.
    #[test]
    fn rclone_dialect() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<D:multistatus xmlns:D="DAV:">
<D:response><D:href>/</D:href><D:propstat><D:prop><D:resourcetype><D:collection xmlns:D="DAV:"/></D:resourcetype><D:getlastmodified>Mon, 02 Jan 2006 15:04:05 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getcontentlength></D:getcontentlength></D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>
<D:response><D:href>/a%20b%5B1%5D%23%25%3F%C3%A9.mkv</D:href><D:propstat><D:prop><D:resourcetype></D:resourcetype><D:getcontentlength>5242880</D:getcontentlength><D:getlastmodified>Mon, 02 Jan 2006 15:04:05 GMT</D:getlastmodified></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
</D:multistatus>"#;
        let props = parse_all(xml).unwrap();
        assert_eq!(props.len(), 2);
        assert!(props[0].is_dir);
        assert_eq!(props[0].size, None);
        assert_eq!(props[1].href, "/a%20b%5B1%5D%23%25%3F%C3%A9.mkv");
        assert!(!props[1].is_dir);
        assert_eq!(props[1].size, Some(5_242_880));
        assert_eq!(props[1].modified.unwrap().seconds, 1_136_214_245);
    }

    /// Decypharr-like: lower-case `d:` prefix, absolute URLs, RFC 3339 dates, no getetag.
    #[test]
    fn lowercase_prefix_absolute_urls_rfc3339() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><d:multistatus xmlns:d="DAV:">
<d:response><d:href>http://127.0.0.1:8282/webdav/__all__/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype><d:getlastmodified>2024-05-01T10:20:30Z</d:getlastmodified></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
<d:response><d:href>http://127.0.0.1:8282/webdav/__all__/Show%20S01%20%5B1080p%5D/</d:href><d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype><d:getlastmodified>2024-05-01T10:20:30.123456789Z</d:getlastmodified></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
</d:multistatus>"#;
        let props = parse_all(xml).unwrap();
        assert_eq!(props.len(), 2);
        assert!(props.iter().all(|p| p.is_dir));
        assert_eq!(props[1].modified.unwrap().nanos, 123_456_789);
    }

    /// A default namespace and no prefix at all; a response-level 404 is skipped.
    #[test]
    fn default_namespace_and_response_status() {
        let xml = r#"<multistatus xmlns="DAV:"><response><href>/x/f.txt</href><propstat><prop><getcontentlength>12</getcontentlength><resourcetype/></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/x/gone</href><status>HTTP/1.1 404 Not Found</status></response></multistatus>"#;
        let props = parse_all(xml).unwrap();
        assert_eq!(props.len(), 1);
        assert_eq!(props[0].size, Some(12));
        assert!(!props[0].is_dir);
    }

    #[test]
    fn entities_in_hrefs_are_the_predefined_ones_only() {
        let xml = r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/a&amp;b&#x20;c</D:href><D:propstat><D:prop><D:resourcetype/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"#;
        assert_eq!(parse_all(xml).unwrap()[0].href, "/a&b c");
    }

    #[test]
    fn doctype_and_entity_declarations_are_refused() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>
<D:multistatus xmlns:D="DAV:"><D:response><D:href>/&lol2;</D:href></D:response></D:multistatus>"#;
        assert!(matches!(parse_all(xml), Err(XmlError::DocType)));
        // An undeclared entity is an error, never expanded or kept.
        let xml = r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/&lol;</D:href></D:response></D:multistatus>"#;
        assert!(parse_all(xml).is_err());
    }

    #[test]
    fn an_answer_over_the_cap_is_an_error_not_a_partial_listing() {
        let mut xml = String::from(r#"<D:multistatus xmlns:D="DAV:">"#);
        for i in 0..1000 {
            xml.push_str(&format!("<D:response><D:href>/f{i}</D:href><D:propstat><D:prop><D:resourcetype/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"));
        }
        xml.push_str("</D:multistatus>");
        let mut n = 0;
        let r = parse_multistatus(xml.as_bytes(), 10_000, |_| n += 1);
        assert!(matches!(r, Err(XmlError::TooLarge(10_000))), "{r:?}");
        let mut n = 0;
        parse_multistatus(xml.as_bytes(), xml.len() as u64, |_| n += 1).unwrap();
        assert_eq!(n, 1000);
    }

    #[test]
    fn hostile_shapes_are_errors() {
        assert!(matches!(
            parse_all("<html>no</html>"),
            Err(XmlError::NotMultistatus)
        ));
        assert!(matches!(parse_all(""), Err(XmlError::NotMultistatus)));
        let deep = format!("<multistatus>{}", "<a>".repeat(100));
        assert!(matches!(parse_all(&deep), Err(XmlError::TooDeep)));
        let long = format!(
            "<multistatus><response><href>/{}</href></response></multistatus>",
            "a".repeat(MAX_TEXT + 1)
        );
        assert!(matches!(parse_all(&long), Err(XmlError::TextTooLong)));
        assert!(
            parse_all("<multistatus><response><href>/a</wrong></response></multistatus>").is_err()
        );
    }
}
