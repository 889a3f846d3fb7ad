//! libnfs's command-line tools (`nfs-ls`, `nfs-cat` from Debian's libnfs-utils) as a peer client.
//!
//! URLs carry the ports so no portmapper is asked: `nfs://HOST/EXPORT/PATH?version=3&nfsport=N&mountport=M`.
//! `nfs-cat` mounts the directory that holds the file (everything before the last `/`) and looks
//! up only the last component, so the server must accept MOUNT of that directory. For a file
//! right below an export of `/`, [`NfsTarget::url`] writes `nfs://HOST//FILE` so that directory is
//! `/` rather than the empty string, which libnfs refuses.

use crate::error::{Error, IoContext, Result};
use crate::tree::{escape, Kind, Listing};
use std::io::Read;
use std::process::{Command, Stdio};

/// Where an NFSv3 export is, for building libnfs URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsTarget {
    /// IPv4 address of the server (127.0.0.1 in tests).
    pub host: String,
    pub nfs_port: u16,
    pub mount_port: u16,
    /// The export path, such as `/` for mountshare or the directory for ganesha.
    pub export: String,
}

impl NfsTarget {
    /// An export on 127.0.0.1.
    pub fn local(nfs_port: u16, mount_port: u16, export: &str) -> Self {
        Self {
            host: "127.0.0.1".into(),
            nfs_port,
            mount_port,
            export: export.into(),
        }
    }

    /// The URL of `path` (relative to the export; empty for the export itself).
    pub fn url(&self, path: &str) -> String {
        let export = self.export.trim_end_matches('/');
        let path = path.trim_start_matches('/');
        let full = match (export.is_empty(), path.is_empty()) {
            (true, true) => "/".to_string(),
            (_, true) => export.to_string(),
            // A file right below "/": libnfs would take "" for its directory and refuse to mount
            // it ("Export is empty"); a second slash makes that directory "/".
            (true, false) if !path.contains('/') => format!("//{path}"),
            _ => format!("{export}/{path}"),
        };
        format!(
            "nfs://{}{}?version=3&nfsport={}&mountport={}",
            self.host, full, self.nfs_port, self.mount_port
        )
    }
}

/// One line of `nfs-ls` output: `-rw-r--r--  1     0     0            6 path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsEntry {
    pub kind: Kind,
    /// Permission bits as shown (`rwx` triples; setuid/setgid/sticky are not shown by nfs-ls).
    pub perms: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Path relative to the listed URL, raw bytes.
    pub path: Vec<u8>,
}

/// Runs `nfs-ls -R URL` and parses its output.
pub fn ls_recursive(url: &str) -> Result<Vec<LsEntry>> {
    let out = run("nfs-ls", &["-R", url])?;
    parse_ls(&out)
}

/// Runs `nfs-cat URL` and returns the file's bytes.
pub fn cat(url: &str) -> Result<Vec<u8>> {
    run("nfs-cat", &[url])
}

/// Runs `nfs-cat URL` and returns the number of bytes and their md5, without holding them.
pub fn cat_md5(url: &str) -> Result<(u64, String)> {
    let mut child = Command::new("nfs-cat")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| missing_or_io("nfs-cat", e))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut counter = CountingReader {
        inner: &mut stdout,
        count: 0,
    };
    let md5 = crate::tree::md5_reader(&mut counter).ctx(|| format!("read nfs-cat {url}"))?;
    let count = counter.count;
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = child.wait().ctx(|| "wait for nfs-cat".to_string())?;
    if !status.success() {
        return Err(Error::Process(format!(
            "nfs-cat {url} failed ({status}): {}",
            stderr.trim()
        )));
    }
    Ok((count, md5))
}

struct CountingReader<'a, R: Read> {
    inner: &'a mut R,
    count: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn missing_or_io(tool: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Missing(format!(
            "{tool} is not installed (apt-get install libnfs-utils)"
        ))
    } else {
        Error::Io {
            context: format!("run {tool}"),
            source: e,
        }
    }
}

fn run(tool: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing_or_io(tool, e))?;
    if !out.status.success() {
        return Err(Error::Process(format!(
            "{tool} {} failed ({}): {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout[out.stdout.len().saturating_sub(2000)..]).trim()
        )));
    }
    Ok(out.stdout)
}

/// Parses `nfs-ls` output. Names may hold spaces: everything after the size column is the name.
pub fn parse_ls(out: &[u8]) -> Result<Vec<LsEntry>> {
    let mut entries = Vec::new();
    for line in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let bad = || Error::Parse {
            what: "nfs-ls output".into(),
            detail: escape(line),
        };
        // Five whitespace-separated columns, then one space, then the name.
        let mut rest = line;
        let mut cols = Vec::new();
        for _ in 0..5 {
            let start = rest.iter().position(|&b| b != b' ').ok_or_else(bad)?;
            rest = &rest[start..];
            let end = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
            cols.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            rest = &rest[end..];
        }
        let path = rest.strip_prefix(b" ").ok_or_else(bad)?.to_vec();
        let mode = cols[0].as_bytes();
        if mode.len() != 10 {
            return Err(bad());
        }
        let kind = Kind::from_letter(mode[0]).ok_or_else(bad)?;
        let mut perms = 0;
        for (i, &c) in mode[1..].iter().enumerate() {
            if c != b'-' {
                perms |= 1 << (8 - i);
            }
        }
        let num = |s: &str| s.parse::<u64>().map_err(|_| bad());
        entries.push(LsEntry {
            kind,
            perms,
            nlink: num(&cols[1])?,
            uid: num(&cols[2])? as u32,
            gid: num(&cols[3])? as u32,
            size: num(&cols[4])?,
            path,
        });
    }
    Ok(entries)
}

/// The view `nfs-ls -R` can give of a host listing: type, `rwx` bits, nlink, owner and size.
pub fn expected_ls(listing: &Listing) -> Vec<LsEntry> {
    let mut out: Vec<LsEntry> = listing
        .entries
        .iter()
        .map(|e| LsEntry {
            kind: e.kind,
            perms: e.mode & 0o777,
            nlink: e.nlink,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            path: e.path.clone(),
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Differences between what `nfs-ls -R` showed and the host's listing, one line each.
pub fn diff_ls(expected: &Listing, actual: &[LsEntry]) -> Vec<String> {
    let expected = expected_ls(expected);
    let mut actual = actual.to_vec();
    actual.sort_by(|a, b| a.path.cmp(&b.path));
    let show = |e: &LsEntry| {
        format!(
            "{} {}{:03o} nlink={} uid={} gid={} size={}",
            escape(&e.path),
            e.kind.letter(),
            e.perms,
            e.nlink,
            e.uid,
            e.gid,
            e.size
        )
    };
    let mut diffs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < expected.len() || j < actual.len() {
        match (expected.get(i), actual.get(j)) {
            (Some(e), Some(a)) if e.path == a.path => {
                if e != a {
                    diffs.push(format!("expected: {}\n  actual: {}", show(e), show(a)));
                }
                i += 1;
                j += 1;
            }
            (Some(e), Some(a)) if e.path < a.path => {
                diffs.push(format!("missing from nfs-ls: {}", show(e)));
                let _ = a;
                i += 1;
            }
            (Some(_), Some(a)) | (None, Some(a)) => {
                diffs.push(format!("only in nfs-ls: {}", show(a)));
                j += 1;
            }
            (Some(e), None) => {
                diffs.push(format!("missing from nfs-ls: {}", show(e)));
                i += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_an_export_of_root_and_of_a_directory() {
        let root = NfsTarget::local(2049, 2050, "/");
        let q = "?version=3&nfsport=2049&mountport=2050";
        assert_eq!(root.url(""), format!("nfs://127.0.0.1/{q}"));
        assert_eq!(root.url("a.txt"), format!("nfs://127.0.0.1//a.txt{q}"));
        assert_eq!(
            root.url("dir/a.txt"),
            format!("nfs://127.0.0.1/dir/a.txt{q}")
        );
        let dir = NfsTarget::local(2049, 2050, "/srv/export/");
        assert_eq!(dir.url(""), format!("nfs://127.0.0.1/srv/export{q}"));
        assert_eq!(
            dir.url("/a b"),
            format!("nfs://127.0.0.1/srv/export/a b{q}")
        );
    }

    #[test]
    fn parses_nfs_ls_lines_with_spaces_in_names() {
        let out = b"-rw-r--r--  1     0     0            6 a.txt\n\
drwxrwxrwx  2  1234  5678         4096 dir with space\n\
lrwxrwxrwx  1     0     0            9 link\n";
        let e = parse_ls(out).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].kind, e[0].perms, e[0].size), (Kind::File, 0o644, 6));
        assert_eq!(e[1].path, b"dir with space");
        assert_eq!((e[1].uid, e[1].gid, e[1].perms), (1234, 5678, 0o777));
        assert_eq!(e[2].kind, Kind::Symlink);
        assert!(parse_ls(b"garbage\n").is_err());
    }

    #[test]
    fn every_kind_parses_back_from_its_ls_letter() {
        for kind in Kind::ALL {
            let line = format!("{}rw-r--r--  1     0     0            0 x\n", kind.letter());
            assert_eq!(parse_ls(line.as_bytes()).unwrap()[0].kind, kind);
        }
    }
}
