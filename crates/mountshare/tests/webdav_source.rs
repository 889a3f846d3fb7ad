//! `mountshare serve http://…` against a WebDAV server no one here wrote: rclone's `serve
//! webdav` (Debian's rclone) over a local tree with a 3,000-entry directory, names with spaces,
//! brackets, `#`, `%`, `?` and non-ASCII, and a file of over 5 MiB. libnfs (`nfs-ls`,
//! `nfs-cat`) lists the same names and sizes and reads the same bytes as the tree holds; the
//! backend itself reads the names libnfs cannot put in a URL.

use mountshare_fs::{Backend, DirEntryPlus, FileKind, RelPath};
use mountshare_testkit::libnfs::{self, NfsTarget};
use mountshare_testkit::rclone::rclone_binary;
use mountshare_testkit::server::{free_port, wait_for_port, ServerProcess};
use mountshare_testkit::tempfile;
use mountshare_testkit::tree::{self, Kind, TreeBuilder};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mountshare");

const ODD_NAMES: &[&str] = &[
    "with space.txt",
    "Show [1080p] (2020).mkv",
    "hash #1.txt",
    "percent 100%.txt",
    "what?.txt",
    "héllo wörld ☃.txt",
    "all [a] #b %c ?d é &e +f.bin",
    "%20 literally.txt",
];

/// `rclone serve webdav DIR` on 127.0.0.1; killed on drop.
struct RcloneWebdav {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl RcloneWebdav {
    fn start(dir: &std::path::Path, log: std::path::PathBuf) -> RcloneWebdav {
        let port = free_port();
        let child = Command::new(rclone_binary())
            .args(["serve", "webdav"])
            .arg(dir)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--config", "/dev/null", "--read-only", "--log-file"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rclone serve webdav (Debian package rclone)");
        let mut served = RcloneWebdav { child, port, log };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        if let Err(e) = wait_for_port(addr, Duration::from_secs(30)) {
            let _ = served.child.kill();
            panic!("rclone serve webdav: {e}");
        }
        served
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RcloneWebdav {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- rclone log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

struct Fixture {
    base: tempfile::TempDir,
    root: std::path::PathBuf,
    rclone: RcloneWebdav,
}

fn fixture() -> Fixture {
    let base = tempfile::Builder::new()
        .prefix("mountshare-webdav-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let root = base.path().join("origin");
    let t = TreeBuilder::new(&root).unwrap();
    t.many("many", 3_000).unwrap();
    t.file("big/five-mib-and-a-bit.bin", (5 << 20) + 12_345, 7)
        .unwrap();
    t.bytes("top.txt", b"at the top\n").unwrap();
    t.bytes("empty", b"").unwrap();
    for (i, name) in ODD_NAMES.iter().enumerate() {
        t.file(
            format!("odd names [dir] #%/{name}"),
            1000 + i as u64,
            i as u64,
        )
        .unwrap();
        t.bytes(name, name.as_bytes()).unwrap();
    }
    t.dir("odd names [dir] #%/empty dir é").unwrap();
    let rclone = RcloneWebdav::start(&root, base.path().join("rclone.log"));
    Fixture { base, root, rclone }
}

/// Path, kind and (for files) size: what the WebDAV source shows of a tree.
fn shape(kind: Kind, size: u64, path: &[u8]) -> (Vec<u8>, char, u64) {
    let size = if kind == Kind::File { size } else { 0 };
    (path.to_vec(), kind.letter(), size)
}

#[test]
fn libnfs_lists_and_reads_the_tree_served_by_webdav() {
    let f = fixture();
    let server =
        ServerProcess::start_local(BIN, f.rclone.url(), &[]).expect("start mountshare serve URL");
    let target = NfsTarget::local(server.port(), server.port(), "/");
    let host = tree::listing(&f.root).unwrap();
    let mut expected: Vec<_> = host
        .entries
        .iter()
        .map(|e| shape(e.kind, e.size, &e.path))
        .collect();
    expected.sort();
    let listed = libnfs::ls_recursive(&target.url("")).expect("nfs-ls -R of the served URL");
    let mut got: Vec<_> = listed
        .iter()
        .map(|e| shape(e.kind, e.size, &e.path))
        .collect();
    got.sort();
    assert_eq!(got.len(), expected.len(), "nfs-ls -R shows every entry");
    let diffs: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|(a, b)| a != b)
        .take(20)
        .map(|(a, b)| format!("tree {a:?} / nfs-ls {b:?}"))
        .collect();
    assert!(diffs.is_empty(), "nfs-ls differs:\n{}", diffs.join("\n"));
    assert!(
        listed.iter().all(|e| e.uid == 0 && e.gid == 0),
        "owned by root"
    );
    assert!(listed
        .iter()
        .all(|e| e.perms == if e.kind == Kind::Dir { 0o555 } else { 0o444 }));

    let mut failures = Vec::new();
    let mut read = 0;
    for entry in host.entries.iter().filter(|e| e.kind == Kind::File) {
        // Names a libnfs URL cannot carry (it does not unescape %XX); the backend test reads them.
        if entry
            .path
            .iter()
            .any(|&b| b == b'?' || b == b'%' || b == b'#' || !b.is_ascii())
        {
            continue;
        }
        if entry.path.starts_with(b"many/") && !entry.path.ends_with(b"00") {
            continue;
        }
        let rel = String::from_utf8(entry.path.clone()).unwrap();
        let expected = entry.md5.clone().unwrap();
        match libnfs::cat_md5(&target.url(&rel)) {
            Ok((len, md5)) if len == entry.size && md5 == expected => read += 1,
            Ok((len, md5)) => failures.push(format!(
                "{rel}: nfs-cat gave {len} bytes with md5 {md5}; the tree has {} bytes with md5 {expected}",
                entry.size
            )),
            Err(e) => failures.push(format!("{rel}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "nfs-cat mismatches:\n{}",
        failures.join("\n")
    );
    assert!(read >= 30, "read {read} files");
    assert!(
        libnfs::cat(&target.url("no-such-file")).is_err(),
        "nfs-cat of a missing file fails"
    );
    drop(f.base);
}

fn read_all(dav: &mountshare_webdav::WebDav, path: &RelPath, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let r = dav.read(path, out.len() as u64, &mut buf).unwrap();
        out.extend_from_slice(&buf[..r.bytes]);
        if r.eof {
            return out;
        }
        assert_eq!(r.bytes, chunk, "a read short of EOF fills the buffer");
    }
}

#[test]
fn the_backend_reads_every_odd_name_and_lists_with_attributes() {
    let f = fixture();
    let dav = mountshare_webdav::WebDav::new(&f.rclone.url(), Default::default()).unwrap();
    let root = RelPath::root();
    let mut top: Vec<DirEntryPlus> = Vec::new();
    dav.read_dir_plus(&root, &mut top).unwrap();
    let mut names: Vec<Vec<u8>> = top.iter().map(|e| e.name.clone()).collect();
    names.sort();
    let mut want: Vec<Vec<u8>> = std::fs::read_dir(&f.root)
        .unwrap()
        .map(|e| {
            use std::os::unix::ffi::OsStrExt;
            e.unwrap().file_name().as_bytes().to_vec()
        })
        .collect();
    want.sort();
    assert_eq!(names, want);
    assert!(
        top.iter().all(|e| e.attr.is_some()),
        "every entry has attributes"
    );
    for name in ODD_NAMES {
        let path = RelPath::parse(name.as_bytes()).unwrap();
        assert_eq!(read_all(&dav, &path, 7), name.as_bytes(), "{name}");
        let nested = RelPath::parse(format!("odd names [dir] #%/{name}").as_bytes()).unwrap();
        let expected = std::fs::read(f.root.join(format!("odd names [dir] #%/{name}"))).unwrap();
        // A fresh backend: stat of a path never listed (PROPFIND Depth 0), then ranged reads.
        let fresh = mountshare_webdav::WebDav::new(&f.rclone.url(), Default::default()).unwrap();
        let attr = fresh.stat(&nested).unwrap();
        assert_eq!(attr.kind, FileKind::Regular);
        assert_eq!(attr.size, expected.len() as u64, "{name}");
        assert_eq!(read_all(&fresh, &nested, 100), expected, "{name}");
    }
    let dir = RelPath::parse(b"odd names [dir] #%/empty dir \xc3\xa9").unwrap();
    assert!(dav.stat(&dir).unwrap().is_dir());
    assert!(dav.read_dir(&dir).unwrap().is_empty());
    let many = dav.read_dir(&RelPath::parse(b"many").unwrap()).unwrap();
    assert_eq!(many.len(), 3_000);
    let big = RelPath::parse(b"big/five-mib-and-a-bit.bin").unwrap();
    let data = read_all(&dav, &big, 1 << 20);
    assert_eq!(
        data,
        std::fs::read(f.root.join("big/five-mib-and-a-bit.bin")).unwrap()
    );
    let empty = RelPath::parse(b"empty").unwrap();
    assert!(read_all(&dav, &empty, 10).is_empty());
    let missing = RelPath::parse(b"no such [file]").unwrap();
    assert_eq!(
        dav.stat(&missing).unwrap_err().errno(),
        Some(rustix::io::Errno::NOENT.raw_os_error())
    );
    assert_eq!(
        dav.read_link(&empty).unwrap_err().errno(),
        Some(rustix::io::Errno::INVAL.raw_os_error()),
        "read_link is EINVAL"
    );
}

/// Run `mountshare serve ARGS` expecting it to fail; returns its stderr.
fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("MOUNTSHARE_WEBDAV_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn command_line_mistakes_with_a_url_are_clear_errors() {
    let l = "127.0.0.1:0";
    let e = serve_fails(&["https://127.0.0.1:1/", "--listen", l], &[]);
    assert!(e.contains("https is not supported yet"), "{e}");
    let e = serve_fails(
        &["http://127.0.0.1:1/", "--listen", l, "--require-mount"],
        &[],
    );
    assert!(e.contains("do not apply to a WebDAV URL"), "{e}");
    let e = serve_fails(
        &["http://127.0.0.1:1/", "--listen", l, "--from-process", "x"],
        &[],
    );
    assert!(e.contains("do not apply to a WebDAV URL"), "{e}");
    let e = serve_fails(
        &["http://127.0.0.1:1/", "--listen", l, "--webdav-user", "u"],
        &[],
    );
    assert!(e.contains("needs a password"), "{e}");
    let e = serve_fails(&[".", "--listen", l, "--webdav-user", "u"], &[]);
    assert!(e.contains("need a WebDAV URL"), "{e}");
}
