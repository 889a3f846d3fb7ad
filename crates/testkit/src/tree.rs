//! Fixture trees on the host and a canonical listing of a tree, to compare a client's view with the host's.
//!
//! A [`TreeBuilder`] creates directories, files of deterministic pseudo-random content (a 1 GiB file
//! takes about as long as the disk needs to write it), directories with many entries, symlinks of
//! every kind and names with spaces, unicode and bytes that are not UTF-8. [`standard_tree`] builds
//! the tree the end-to-end tests share. [`listing`] reads a tree back into a [`Listing`]: one
//! [`Entry`] per path with its type, mode, size, nlink, uid, gid, mtime, symlink target and the md5
//! of a file's content.

use crate::error::{Error, IoContext, Result};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Size of the block the content generator works in.
const CHUNK: usize = 1 << 20;
/// Every page of generated content starts with its own offset, so a page served at the wrong
/// offset changes the checksum.
const PAGE: usize = 4096;

/// Fills `buf` with the generated content of chunk number `chunk` of a file made with `seed`.
fn pattern_chunk(seed: u64, chunk: u64, buf: &mut [u8; CHUNK]) {
    // splitmix64 over the (seed, chunk) pair: fast, deterministic, not compressible.
    let mut state = seed ^ chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for word in buf.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        word.copy_from_slice(&z.to_le_bytes());
    }
    let base = chunk * CHUNK as u64;
    for (i, page) in buf.chunks_exact_mut(PAGE).enumerate() {
        let offset = base + (i * PAGE) as u64;
        page[..8].copy_from_slice(&(offset ^ seed).to_le_bytes());
    }
}

/// The generated content of a file of `size` bytes made with `seed`, as an iterator of blocks.
pub fn pattern_blocks(size: u64, seed: u64) -> impl Iterator<Item = Vec<u8>> {
    let chunks = size.div_ceil(CHUNK as u64);
    let mut buf = Box::new([0u8; CHUNK]);
    (0..chunks).map(move |chunk| {
        pattern_chunk(seed, chunk, &mut buf);
        let len = (size - chunk * CHUNK as u64).min(CHUNK as u64) as usize;
        buf[..len].to_vec()
    })
}

/// Writes a file of `size` bytes of deterministic pseudo-random content (no holes).
pub fn write_pseudo_random(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut file = fs::File::create(path).ctx(|| format!("create {}", path.display()))?;
    let chunks = size.div_ceil(CHUNK as u64);
    let mut buf = Box::new([0u8; CHUNK]);
    for chunk in 0..chunks {
        pattern_chunk(seed, chunk, &mut buf);
        let len = (size - chunk * CHUNK as u64).min(CHUNK as u64) as usize;
        file.write_all(&buf[..len])
            .ctx(|| format!("write {}", path.display()))?;
    }
    file.sync_data()
        .ctx(|| format!("sync {}", path.display()))?;
    Ok(())
}

/// The md5 of a file's content, as 32 lowercase hex digits.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).ctx(|| format!("open {}", path.display()))?;
    md5_reader(&mut file).ctx(|| format!("read {}", path.display()))
}

/// The md5 of everything a reader yields, as 32 lowercase hex digits.
pub fn md5_reader(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The md5 of a byte slice, as 32 lowercase hex digits.
pub fn md5_bytes(data: &[u8]) -> String {
    hex(&Md5::digest(data))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds a fixture tree below a root directory. Paths given to its methods are relative to the root.
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    root: PathBuf,
}

impl TreeBuilder {
    /// A builder for the tree below `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root).ctx(|| format!("create {}", root.display()))?;
        Ok(Self { root })
    }

    /// The root of the tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path of `rel`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    fn parent_of(&self, rel: &Path) -> Result<PathBuf> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
        }
        Ok(path)
    }

    /// Creates a directory and its missing parents.
    pub fn dir(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let path = self.path(rel);
        fs::create_dir_all(&path).ctx(|| format!("create {}", path.display()))?;
        Ok(path)
    }

    /// Creates a file of `size` bytes of deterministic pseudo-random content.
    pub fn file(&self, rel: impl AsRef<Path>, size: u64, seed: u64) -> Result<PathBuf> {
        let path = self.parent_of(rel.as_ref())?;
        write_pseudo_random(&path, size, seed)?;
        Ok(path)
    }

    /// Creates a file with the given content.
    pub fn bytes(&self, rel: impl AsRef<Path>, data: &[u8]) -> Result<PathBuf> {
        let path = self.parent_of(rel.as_ref())?;
        fs::write(&path, data).ctx(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Creates directory `rel` holding `n` small files named `entry-000000` … (zero padded to six
    /// digits), each holding its own name.
    pub fn many(&self, rel: impl AsRef<Path>, n: usize) -> Result<PathBuf> {
        let dir = self.dir(rel)?;
        for i in 0..n {
            let name = many_name(i);
            let path = dir.join(&name);
            fs::write(&path, name.as_bytes()).ctx(|| format!("write {}", path.display()))?;
        }
        Ok(dir)
    }

    /// Creates directory `rel` holding `n` empty files named as by [`TreeBuilder::many`]: a
    /// million of them cost inodes, not data blocks.
    pub fn many_empty(&self, rel: impl AsRef<Path>, n: usize) -> Result<PathBuf> {
        let dir = self.dir(rel)?;
        for i in 0..n {
            let path = dir.join(many_name(i));
            fs::File::create(&path).ctx(|| format!("create {}", path.display()))?;
        }
        Ok(dir)
    }

    /// Creates a symlink at `rel` pointing to `target` (which is stored as given, not resolved).
    pub fn symlink(&self, rel: impl AsRef<Path>, target: impl AsRef<OsStr>) -> Result<PathBuf> {
        let path = self.parent_of(rel.as_ref())?;
        std::os::unix::fs::symlink(target.as_ref(), &path)
            .ctx(|| format!("symlink {}", path.display()))?;
        Ok(path)
    }

    /// Creates a hard link at `rel` to the existing `existing`.
    pub fn hard_link(&self, existing: impl AsRef<Path>, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let from = self.path(existing);
        let path = self.parent_of(rel.as_ref())?;
        fs::hard_link(&from, &path).ctx(|| format!("link {}", path.display()))?;
        Ok(path)
    }

    /// Sets the permission bits (including setuid, setgid and sticky) of `rel`.
    pub fn chmod(&self, rel: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = self.path(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .ctx(|| format!("chmod {}", path.display()))
    }

    /// Sets the numeric owner of `rel` without following a symlink (needs root for other ids).
    pub fn chown(&self, rel: impl AsRef<Path>, uid: u32, gid: u32) -> Result<()> {
        let path = self.path(rel);
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .ctx(|| format!("chown {}", path.display()))
    }

    /// Gives every directory below the root (and the root) the mtime `times` gives for its
    /// names (a server that reports a directory's times from its listing, such as `mountshare
    /// serve`, passes its own function), so that a client's view can be compared with the host's.
    /// Call it last, after [`TreeBuilder::stamp_times`].
    pub fn stamp_dir_times_with(&self, times: &ListingTimes) -> Result<()> {
        stamp_dirs_with(&self.root, times)
    }

    /// Gives every entry below the root (and the root) a distinct, deterministic mtime far from
    /// now, without following symlinks. Call it last: creating an entry changes its parent's mtime.
    pub fn stamp_times(&self) -> Result<()> {
        stamp_dir(&self.root, &self.root)
    }
}

/// The (seconds, nanoseconds) a server reports as the times of a directory holding these names.
pub type ListingTimes = dyn Fn(&[&[u8]]) -> (i64, u32);

/// The name of entry `i` made by [`TreeBuilder::many`].
pub fn many_name(i: usize) -> String {
    format!("entry-{i:06}")
}

fn stamp_dir(root: &Path, dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.ctx(|| format!("read {}", dir.display()))?;
        let path = entry.path();
        let meta = entry
            .file_type()
            .ctx(|| format!("stat {}", path.display()))?;
        if meta.is_dir() {
            stamp_dir(root, &path)?;
        } else {
            stamp(root, &path)?;
        }
    }
    stamp(root, dir)
}

fn stamp_dirs_with(dir: &Path, times: &ListingTimes) -> Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))? {
        let entry = entry.ctx(|| format!("read {}", dir.display()))?;
        let kind = entry
            .file_type()
            .ctx(|| format!("stat {}", entry.path().display()))?;
        if kind.is_dir() {
            stamp_dirs_with(&entry.path(), times)?;
        }
        names.push(entry.file_name().as_bytes().to_vec());
    }
    let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
    let (tv_sec, nanos) = times(&refs);
    let time = Timespec {
        tv_sec,
        tv_nsec: nanos as _,
    };
    let stamps = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, dir, &stamps, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| Error::Io {
        context: format!("utimensat {}", dir.display()),
        source: e.into(),
    })
}

fn stamp(root: &Path, path: &Path) -> Result<()> {
    use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};
    let rel = path.strip_prefix(root).unwrap_or(path);
    // 2001-09-09 plus a per-path offset of up to ~3 years; nanoseconds too, which NFSv3 carries.
    let h = fnv1a(rel.as_os_str().as_bytes());
    let time = Timespec {
        tv_sec: 1_000_000_000 + (h % 100_000_000) as i64,
        tv_nsec: ((h >> 32) % 1_000_000_000) as _,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| Error::Io {
        context: format!("utimensat {}", path.display()),
        source: e.into(),
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What [`standard_tree`] made, relative to its root.
#[derive(Debug, Clone)]
pub struct StandardTree {
    /// The root of the tree.
    pub root: PathBuf,
    /// Regular files with their sizes, relative to the root.
    pub files: Vec<(PathBuf, u64)>,
    /// Symlinks with their targets, relative to the root.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    /// Whether the tree has entries owned by other users (only when built by root).
    pub has_foreign_owners: bool,
    /// The file at the bottom of the deep chain `d01/d02/…/leaf.txt`, relative to the root.
    pub deep_file: PathBuf,
}

/// Builds the tree the end-to-end tests share below `root` (a few dozen entries, about 3 MiB):
/// nested and deep directories (17 levels, deeper than the 13 levels a file handle names one by
/// one), files of awkward sizes, modes 0600/0755/2755/1777, other owners when run as root, a hard
/// link, symlinks (relative, to a directory, absolute, dangling, pointing outside the tree) and
/// names with spaces, unicode, quotes, a backslash and bytes that are not UTF-8. Times are stamped.
pub fn standard_tree(root: impl Into<PathBuf>) -> Result<StandardTree> {
    standard_tree_with(root, 17)
}

/// [`standard_tree`] with its deep chain `d01/d02/…/leaf.txt` only `deep_levels` directories deep.
/// `nfs-ls -R` gives up ("Recursion detected!") beyond 16 levels, so libnfs tests use fewer.
pub fn standard_tree_with(root: impl Into<PathBuf>, deep_levels: usize) -> Result<StandardTree> {
    let t = TreeBuilder::new(root)?;
    let mut files = Vec::new();
    let mut add = |rel: &str, size: u64, seed: u64| -> Result<()> {
        t.file(rel, size, seed)?;
        files.push((PathBuf::from(rel), size));
        Ok(())
    };
    add("empty.txt", 0, 1)?;
    add("one-byte.bin", 1, 2)?;
    add("page.bin", 4096, 3)?;
    add("odd-size.bin", 1_000_003, 4)?;
    add("one-mib-plus-one.bin", (1 << 20) + 1, 5)?;
    add("dir1/dir2/dir3/nested.bin", 12_345, 6)?;
    add("dir1/sibling.txt", 77, 7)?;
    add("with space.txt", 10, 8)?;
    add("ünïcödé-名前.txt", 11, 9)?;
    add("quote'\"name", 12, 10)?;
    add("back\\slash", 13, 11)?;
    add(".hidden", 14, 12)?;
    add("mode600.txt", 15, 13)?;
    add("exec.sh", 16, 14)?;
    let deep: PathBuf = (1..=deep_levels).map(|i| format!("d{i:02}")).collect();
    let deep_file = deep.join("leaf.txt");
    t.file(&deep_file, 100, 15)?;
    files.push((deep_file.clone(), 100));
    // A name that is not valid UTF-8.
    let odd = PathBuf::from(std::ffi::OsString::from_vec(
        b"bytes-\xff\xfe-name".to_vec(),
    ));
    t.file(&odd, 17, 16)?;
    files.push((odd, 17));

    t.dir("emptydir")?;
    t.dir("setgid-dir")?;
    t.dir("sticky-dir")?;
    t.chmod("mode600.txt", 0o600)?;
    t.chmod("exec.sh", 0o755)?;
    t.chmod("setgid-dir", 0o2755)?;
    t.chmod("sticky-dir", 0o1777)?;

    t.file("hardlink-a", 18, 17)?;
    t.hard_link("hardlink-a", "hardlink-b")?;
    files.push((PathBuf::from("hardlink-a"), 18));
    files.push((PathBuf::from("hardlink-b"), 18));

    let abs_target = t.path("one-byte.bin");
    let links: Vec<(&str, PathBuf)> = vec![
        ("link-relative", PathBuf::from("one-byte.bin")),
        ("link-to-dir", PathBuf::from("dir1/dir2")),
        ("dir1/dir2/link-up", PathBuf::from("../sibling.txt")),
        ("link-absolute", abs_target),
        ("link-dangling", PathBuf::from("does/not/exist")),
        (
            "link-outside",
            PathBuf::from("../../../../../../etc/passwd"),
        ),
        ("link with space", PathBuf::from("with space.txt")),
    ];
    let mut symlinks = Vec::new();
    for (rel, target) in links {
        t.symlink(rel, &target)?;
        symlinks.push((PathBuf::from(rel), target));
    }

    let is_root = rustix::process::geteuid().is_root();
    if is_root {
        t.bytes("owned-by-1234.txt", b"owned\n")?;
        files.push((PathBuf::from("owned-by-1234.txt"), 6));
        t.chown("owned-by-1234.txt", 1234, 5678)?;
        t.dir("dir-owned-by-4321")?;
        t.chown("dir-owned-by-4321", 4321, 8765)?;
        t.chown("link-relative", 1111, 2222)?;
    }
    t.stamp_times()?;
    Ok(StandardTree {
        root: t.root().to_path_buf(),
        files,
        symlinks,
        has_foreign_owners: is_root,
        deep_file,
    })
}

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    /// Every type.
    pub const ALL: [Kind; 7] = [
        Kind::File,
        Kind::Dir,
        Kind::Symlink,
        Kind::Fifo,
        Kind::Socket,
        Kind::CharDev,
        Kind::BlockDev,
    ];

    /// The type from the `S_IFMT` bits of a mode.
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & 0o170000 {
            0o100000 => Kind::File,
            0o040000 => Kind::Dir,
            0o120000 => Kind::Symlink,
            0o010000 => Kind::Fifo,
            0o140000 => Kind::Socket,
            0o020000 => Kind::CharDev,
            0o060000 => Kind::BlockDev,
            _ => return None,
        })
    }

    /// The letter `ls -l` shows for the type.
    pub fn letter(self) -> char {
        match self {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::CharDev => 'c',
            Kind::BlockDev => 'b',
        }
    }

    /// The type whose [`letter`](Kind::letter) `ls -l` shows as `c`.
    pub fn from_letter(c: u8) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| u32::from(k.letter()) == u32::from(c))
    }
}

/// One path of a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the listed root, as raw bytes, without a leading `./`.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// The target of a symlink.
    pub target: Option<Vec<u8>>,
    /// The md5 of a regular file's content.
    pub md5: Option<String>,
}

/// Renders bytes with everything outside printable ASCII (and the backslash) as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}{:04o} size={} nlink={} uid={} gid={} mtime={}",
            escape(&self.path),
            self.kind.letter(),
            self.mode,
            self.size,
            self.nlink,
            self.uid,
            self.gid,
            self.mtime
        )?;
        if let Some(target) = &self.target {
            write!(f, " -> {}", escape(target))?;
        }
        if let Some(md5) = &self.md5 {
            write!(f, " md5={md5}")?;
        }
        Ok(())
    }
}

/// A canonical description of a tree: its entries sorted by path bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
}

impl Listing {
    /// Builds a listing from entries in any order.
    pub fn from_entries(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Self { entries }
    }

    /// The entry at `path` (relative, as bytes).
    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The entries below `prefix` (a relative directory path), with that prefix removed.
    pub fn subtree(&self, prefix: &[u8]) -> Listing {
        let mut p = prefix.to_vec();
        p.push(b'/');
        Listing::from_entries(
            self.entries
                .iter()
                .filter(|e| e.path.starts_with(&p))
                .map(|e| Entry {
                    path: e.path[p.len()..].to_vec(),
                    ..e.clone()
                })
                .collect(),
        )
    }

    /// The same listing with the named fields blanked, for views that cannot see them.
    pub fn without(&self, fields: &[Field]) -> Listing {
        let entries = self
            .entries
            .iter()
            .map(|e| {
                let mut e = e.clone();
                for field in fields {
                    match field {
                        Field::Mode => e.mode = 0,
                        Field::Size => e.size = 0,
                        Field::Nlink => e.nlink = 0,
                        Field::Owner => {
                            e.uid = 0;
                            e.gid = 0;
                        }
                        Field::Mtime => e.mtime = 0,
                        Field::Target => e.target = None,
                        Field::Md5 => e.md5 = None,
                        Field::DirSize => {
                            if e.kind == Kind::Dir {
                                e.size = 0;
                            }
                        }
                    }
                }
                e
            })
            .collect();
        Listing { entries }
    }

    /// Human-readable differences from `other` (empty when equal): one line per path that is
    /// missing on one side or differs.
    pub fn diff(&self, other: &Listing) -> Vec<String> {
        let left: BTreeMap<&[u8], &Entry> = self
            .entries
            .iter()
            .map(|e| (e.path.as_slice(), e))
            .collect();
        let right: BTreeMap<&[u8], &Entry> = other
            .entries
            .iter()
            .map(|e| (e.path.as_slice(), e))
            .collect();
        let mut out = Vec::new();
        for (path, l) in &left {
            match right.get(path) {
                None => out.push(format!("only in expected: {l}")),
                Some(r) if r != l => out.push(format!("expected: {l}\n  actual: {r}")),
                Some(_) => {}
            }
        }
        for (path, r) in &right {
            if !left.contains_key(path) {
                out.push(format!("only in actual:   {r}"));
            }
        }
        out
    }

    /// Panics with a readable report when `actual` differs from `self`.
    #[track_caller]
    pub fn assert_same(&self, actual: &Listing, what: &str) {
        let diff = self.diff(actual);
        assert!(
            diff.is_empty(),
            "{what}: {} difference(s) between the host's tree ({} entries) and the client's view ({} entries):\n{}",
            diff.len(),
            self.entries.len(),
            actual.entries.len(),
            diff.join("\n")
        );
    }
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A field of an [`Entry`], for [`Listing::without`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Mode,
    Size,
    /// The size of directories only (it is file-system specific).
    DirSize,
    Nlink,
    Owner,
    Mtime,
    Target,
    Md5,
}

/// Reads the tree below `root` (not including `root` itself) into a [`Listing`], hashing every
/// regular file. Symlinks are not followed.
pub fn listing(root: &Path) -> Result<Listing> {
    let mut entries = Vec::new();
    walk(root, root, &mut entries)?;
    Ok(Listing::from_entries(entries))
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let read = fs::read_dir(dir).ctx(|| format!("read {}", dir.display()))?;
    for entry in read {
        let entry = entry.ctx(|| format!("read {}", dir.display()))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).ctx(|| format!("stat {}", path.display()))?;
        let kind = Kind::from_mode(meta.mode()).ok_or_else(|| Error::Parse {
            what: "file type".into(),
            detail: format!("{} has mode {:o}", path.display(), meta.mode()),
        })?;
        let rel = path
            .strip_prefix(root)
            .expect("walked path is below the root")
            .as_os_str()
            .as_bytes()
            .to_vec();
        let target = if kind == Kind::Symlink {
            Some(
                fs::read_link(&path)
                    .ctx(|| format!("readlink {}", path.display()))?
                    .into_os_string()
                    .into_vec(),
            )
        } else {
            None
        };
        let md5 = if kind == Kind::File {
            Some(md5_file(&path)?)
        } else {
            None
        };
        out.push(Entry {
            path: rel,
            kind,
            mode: meta.mode() & 0o7777,
            size: meta.size(),
            nlink: meta.nlink(),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            target,
            md5,
        });
        if kind == Kind::Dir {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

/// The number of entries of a directory and the md5 of their names sorted bytewise, each followed
/// by a newline: the same digest as `ls -1A DIR | sort | md5sum` gives in the VM.
pub fn names_digest(dir: &Path) -> Result<(usize, String)> {
    let mut names: Vec<Vec<u8>> = fs::read_dir(dir)
        .ctx(|| format!("read {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name().into_vec()))
        .collect::<std::io::Result<_>>()
        .ctx(|| format!("read {}", dir.display()))?;
    names.sort();
    let mut hasher = Md5::new();
    for name in &names {
        hasher.update(name);
        hasher.update(b"\n");
    }
    Ok((names.len(), hex(&hasher.finalize())))
}

/// Parses the output of the guest's listing commands (see `vm`): `stat -c '%f %s %h %u %g %Y %n'`
/// lines, `md5sum` lines and pairs of lines (symlink path, target), all with `./`-prefixed paths.
pub fn parse_stat_listing(stat: &[u8], md5: &[u8], links: &[u8]) -> Result<Listing> {
    let bad = |detail: String| Error::Parse {
        what: "guest listing".into(),
        detail,
    };
    let strip = |p: &[u8]| -> Vec<u8> { p.strip_prefix(b"./").unwrap_or(p).to_vec() };
    let mut md5s: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    for line in md5.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if line.len() < 35 || &line[32..34] != b"  " {
            return Err(bad(format!("md5sum line {:?}", escape(line))));
        }
        let hash = String::from_utf8_lossy(&line[..32]).into_owned();
        md5s.insert(strip(&line[34..]), hash);
    }
    let mut targets: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut lines = links.split(|&b| b == b'\n');
    while let Some(path) = lines.next() {
        if path.is_empty() {
            continue;
        }
        let target = lines
            .next()
            .ok_or_else(|| bad(format!("symlink {} has no target line", escape(path))))?;
        targets.insert(strip(path), target.to_vec());
    }
    let mut entries = Vec::new();
    for line in stat.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let fields: Vec<&[u8]> = line.splitn(7, |&b| b == b' ').collect();
        if fields.len() != 7 {
            return Err(bad(format!("stat line {:?}", escape(line))));
        }
        let text = |i: usize| String::from_utf8_lossy(fields[i]).into_owned();
        let num = |i: usize| -> Result<u64> {
            text(i)
                .parse::<u64>()
                .map_err(|_| bad(format!("field {i} of stat line {:?}", escape(line))))
        };
        let raw_mode = u32::from_str_radix(&text(0), 16)
            .map_err(|_| bad(format!("mode of stat line {:?}", escape(line))))?;
        let kind = Kind::from_mode(raw_mode)
            .ok_or_else(|| bad(format!("file type of stat line {:?}", escape(line))))?;
        let path = strip(fields[6]);
        let mtime = text(5)
            .parse::<i64>()
            .map_err(|_| bad(format!("mtime of stat line {:?}", escape(line))))?;
        entries.push(Entry {
            kind,
            mode: raw_mode & 0o7777,
            size: num(1)?,
            nlink: num(2)?,
            uid: num(3)? as u32,
            gid: num(4)? as u32,
            mtime,
            target: if kind == Kind::Symlink {
                Some(
                    targets
                        .remove(&path)
                        .ok_or_else(|| bad(format!("no readlink output for {}", escape(&path))))?,
                )
            } else {
                None
            },
            md5: if kind == Kind::File {
                Some(
                    md5s.remove(&path)
                        .ok_or_else(|| bad(format!("no md5sum for {}", escape(&path))))?,
                )
            } else {
                None
            },
            path,
        });
    }
    Ok(Listing::from_entries(entries))
}
