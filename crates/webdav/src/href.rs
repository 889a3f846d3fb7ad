//! Paths in URLs: percent-encoding what is sent, decoding the `href`s a server answers with.

/// Whether `b` goes into a request path as it is (RFC 3986 unreserved characters).
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Append `bytes` (one path component, or several joined by `/` when `keep_slash`) to `out`,
/// percent-encoded: every byte but the unreserved ones, so spaces, `#`, `%`, `?`, brackets and
/// non-ASCII bytes reach the server as data, never as URL syntax.
pub(crate) fn encode_into(out: &mut String, bytes: &[u8], keep_slash: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push('%');
            let digit = |n: u8| char::from(HEX.get(usize::from(n)).copied().unwrap_or(b'0'));
            out.push(digit(b >> 4));
            out.push(digit(b & 15));
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode `text`; a `%` not followed by two hex digits is kept as it is.
pub(crate) fn decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                text.get(i + 1).copied().and_then(hex),
                text.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// The decoded path of an `href`: an absolute URL (`http://host:port/a%20b/`) loses its scheme
/// and authority, an absolute path (`/a%20b/`) is taken as it is. Decoded, with no trailing
/// `/` (the root is empty).
pub(crate) fn href_path(href: &str) -> Vec<u8> {
    let href = href.trim();
    let path = match href.find("://") {
        Some(i) => {
            let rest = href.get(i + 3..).unwrap_or("");
            match rest.find('/') {
                Some(j) => rest.get(j..).unwrap_or("/"),
                None => "/",
            }
        }
        None => href,
    };
    normalize(&decode(path.as_bytes()))
}

/// `path` with its empty components dropped and joined by single `/`, no leading or trailing
/// `/` (`//a//b/` → `a/b`).
pub(crate) fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for comp in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_everything_but_unreserved() {
        let mut s = String::new();
        encode_into(&mut s, "a b[1]#%?é/c".as_bytes(), true);
        assert_eq!(s, "a%20b%5B1%5D%23%25%3F%C3%A9/c");
        let mut s = String::new();
        encode_into(&mut s, b"a/b", false);
        assert_eq!(s, "a%2Fb");
    }

    #[test]
    fn decodes_and_round_trips() {
        let name = "Movie [2020] #1 100% what? é ü".as_bytes();
        let mut s = String::new();
        encode_into(&mut s, name, false);
        assert_eq!(decode(s.as_bytes()), name);
        assert_eq!(decode(b"bad%zzend%4"), b"bad%zzend%4");
        assert_eq!(decode(b"%e2%82%AC"), "€".as_bytes());
    }

    #[test]
    fn hrefs_absolute_urls_and_paths() {
        assert_eq!(href_path("http://h:1/dav/a%20b/"), b"dav/a b");
        assert_eq!(href_path("https://h/"), b"");
        assert_eq!(href_path("http://h"), b"");
        assert_eq!(href_path("/dav//x%23y"), b"dav/x#y");
        assert_eq!(href_path(" /a/ "), b"a");
    }
}
