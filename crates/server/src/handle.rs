//! Stateless NFS file handles: a handle names a path below the export root by hashes, so it still
//! resolves after a restart, and on another server over the same tree, with no table kept.
//!
//! ```text
//! byte 0       format version (1)
//! byte 1       depth d: number of path components (0 = the root)
//! bytes 2..10  64-bit hash of the whole relative path, big-endian (also the NFS fileid)
//! bytes 10..   a 32-bit hash per component, for the first min(d, 13) components
//! ```
//!
//! At most 62 bytes: within NFS3_FHSIZE (64) by construction. Hashes are xxh3 with fixed seeds,
//! which are stable across builds, hosts and versions of this program.
use mountshare_fs::RelPath;

/// The format version in byte 0.
pub(crate) const VERSION: u8 = 1;
/// Component hashes carried in a handle; deeper paths are found by searching below this level.
pub(crate) const MAX_GUIDED_DEPTH: usize = 13;
/// The longest handle this format produces.
pub(crate) const MAX_HANDLE_LEN: usize = 2 + 8 + 4 * MAX_GUIDED_DEPTH;
// Every handle fits NFS3_FHSIZE, checked when this is compiled.
const _: () = assert!(MAX_HANDLE_LEN <= mountshare_proto::nfs3::NFS3_FHSIZE as usize);
/// The deepest path a handle may name. Deeper trees are refused rather than searched forever.
pub(crate) const MAX_DEPTH: usize = 255;

const PATH_SEED: u64 = 0x6d6f_756e_7473_6861; // "mountsha"
const COMPONENT_SEED: u64 = 0x7265_2d63_6f6d_7031; // "re-comp1"
const COOKIE_SEED: u64 = 0x636f_6f6b_6965_7631; // "cookiev1"

/// The 64-bit hash of a whole relative path: the handle's identity and the NFS fileid.
pub(crate) fn path_hash(path: &RelPath) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(path.as_bytes(), PATH_SEED)
}

/// The 32-bit hash of one component name, used to guide a walk from the root.
pub fn component_hash(name: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64_with_seed(name, COMPONENT_SEED) as u32
}

/// The READDIR cookie of an entry name. Cookies 0 (start), 1 (`.`) and 2 (`..`) are reserved, so
/// real entries always sort after the dot entries.
pub(crate) fn name_cookie(name: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(name, COOKIE_SEED).max(3)
}

/// A decoded handle.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileHandle {
    pub depth: u8,
    pub path_hash: u64,
    /// The first `min(depth, MAX_GUIDED_DEPTH)` component hashes.
    pub components: Vec<u32>,
}

/// Why a handle's bytes were refused (NFS3ERR_BADHANDLE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHandle {
    #[error("handle length {0} does not match its depth")]
    Length(usize),
    #[error("unknown handle version {0}")]
    Version(u8),
}

impl FileHandle {
    /// The handle of `path`. Paths deeper than [`MAX_DEPTH`] have no handle.
    pub fn for_path(path: &RelPath) -> Option<FileHandle> {
        let depth = path.depth();
        if depth > MAX_DEPTH {
            return None;
        }
        Some(FileHandle {
            depth: depth as u8,
            path_hash: path_hash(path),
            components: path
                .components()
                .take(MAX_GUIDED_DEPTH)
                .map(component_hash)
                .collect(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + 4 * self.components.len());
        out.push(VERSION);
        out.push(self.depth);
        out.extend_from_slice(&self.path_hash.to_be_bytes());
        for c in &self.components {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<FileHandle, BadHandle> {
        let too_short = || BadHandle::Length(bytes.len());
        let [version, depth, rest @ ..] = bytes else {
            return Err(too_short());
        };
        let Some((hash, components)) = rest.split_first_chunk::<8>() else {
            return Err(too_short());
        };
        if *version != VERSION {
            return Err(BadHandle::Version(*version));
        }
        let guided = usize::from(*depth).min(MAX_GUIDED_DEPTH);
        if components.len() != 4 * guided {
            return Err(BadHandle::Length(bytes.len()));
        }
        let components = components
            .chunks_exact(4)
            .filter_map(|c| c.try_into().ok())
            .map(u32::from_be_bytes)
            .collect();
        Ok(FileHandle {
            depth: *depth,
            path_hash: u64::from_be_bytes(*hash),
            components,
        })
    }

    /// Whether `path` is the path this handle names.
    pub fn matches(&self, path: &RelPath) -> bool {
        FileHandle::for_path(path).as_ref() == Some(self)
    }
}

/// The path, path hash and handle of each entry of one directory in turn, built in buffers
/// reused from entry to entry: a READDIRPLUS page has hundreds of entries, and building each
/// one's [`RelPath`] and [`FileHandle`] took five allocations per entry. The bytes are those of
/// `dir.join(name)` and `FileHandle::for_path(..).encode()`.
pub(crate) struct Children {
    /// The directory's path and a `/` (none after the root), then the current entry's name.
    path: Vec<u8>,
    prefix: usize,
    /// The current entry's handle: version, depth, path hash, component hashes; the directory's
    /// part is kept from entry to entry. Empty when the entries are too deep to have handles.
    handle: Vec<u8>,
    handle_prefix: usize,
    /// Whether an entry's own component hash is in its handle.
    guided: bool,
}

/// An entry, as [`Children::entry`] builds it.
pub(crate) struct Child<'a> {
    /// `dir/name`, as [`RelPath::as_bytes`] would give it.
    pub path: &'a [u8],
    /// [`path_hash`] of the path: the entry's fileid.
    pub hash: u64,
    /// The encoded handle, unless the entry is deeper than [`MAX_DEPTH`].
    pub handle: Option<&'a [u8]>,
}

impl Children {
    /// The entries of the directory `dir`.
    pub(crate) fn of(dir: &RelPath) -> Children {
        let depth = dir.depth() + 1;
        let mut path = Vec::with_capacity(dir.as_bytes().len() + 1 + mountshare_fs::MAX_NAME_LEN);
        path.extend_from_slice(dir.as_bytes());
        if !path.is_empty() {
            path.push(b'/');
        }
        let mut handle = Vec::with_capacity(MAX_HANDLE_LEN);
        if depth <= MAX_DEPTH {
            handle.push(VERSION);
            handle.push(depth as u8);
            handle.extend_from_slice(&[0; 8]);
            for c in dir.components().take(MAX_GUIDED_DEPTH) {
                handle.extend_from_slice(&component_hash(c).to_be_bytes());
            }
        }
        Children {
            prefix: path.len(),
            path,
            handle_prefix: handle.len(),
            handle,
            guided: depth <= MAX_GUIDED_DEPTH,
        }
    }

    /// The entry `name`, which must be a valid name ([`mountshare_fs::validate_name`]).
    pub(crate) fn entry(&mut self, name: &[u8]) -> Child<'_> {
        self.path.truncate(self.prefix);
        self.path.extend_from_slice(name);
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(&self.path, PATH_SEED);
        let handle = if self.handle.is_empty() {
            None
        } else {
            self.handle.truncate(self.handle_prefix);
            if let Some(h) = self.handle.get_mut(2..10) {
                h.copy_from_slice(&hash.to_be_bytes());
            }
            if self.guided {
                self.handle
                    .extend_from_slice(&component_hash(name).to_be_bytes());
            }
            Some(self.handle.as_slice())
        };
        Child {
            path: &self.path,
            hash,
            handle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> RelPath {
        RelPath::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn handles_fit_nfs3_fhsize_at_any_depth() {
        let mut path = RelPath::root();
        for i in 0..MAX_DEPTH {
            let fh = FileHandle::for_path(&path).unwrap();
            assert!(fh.encode().len() <= 64, "depth {i}");
            assert!(fh.encode().len() <= MAX_HANDLE_LEN);
            path = path.join(&[b'x'; 255]).unwrap();
        }
        assert!(FileHandle::for_path(&path).is_some());
        assert!(FileHandle::for_path(&path.join(b"one-too-deep").unwrap()).is_none());
    }

    #[test]
    fn hashes_are_stable_across_builds() {
        // Pinned values: changing them invalidates every handle clients hold. Don't.
        let fh = FileHandle::for_path(&p("tv/Show/S01E01.mkv")).unwrap();
        assert_eq!(fh.depth, 3);
        assert_eq!(FileHandle::decode(&fh.encode()).unwrap(), fh, "round trip");
        assert_eq!(path_hash(&p("tv/Show/S01E01.mkv")), PINNED_PATH_HASH);
        assert_eq!(component_hash(b"tv"), PINNED_COMPONENT_HASH);
    }
    const PINNED_PATH_HASH: u64 = 988663913334294124;
    const PINNED_COMPONENT_HASH: u32 = 879185430;

    #[test]
    fn root_handle_is_ten_bytes() {
        let fh = FileHandle::for_path(&RelPath::root()).unwrap();
        assert_eq!(fh.encode().len(), 10);
        assert!(fh.matches(&RelPath::root()));
        assert!(!fh.matches(&p("a")));
    }

    #[test]
    fn children_are_built_as_paths_and_handles_are() {
        let mut dir = RelPath::root();
        for depth in 0..=MAX_DEPTH {
            let mut children = Children::of(&dir);
            for name in [&b"a"[..], b"S01E01.mkv", &[b'y'; 255]] {
                let path = dir.join(name).unwrap();
                let child = children.entry(name);
                assert_eq!(child.path, path.as_bytes(), "depth {depth}");
                assert_eq!(child.hash, path_hash(&path));
                let expect = FileHandle::for_path(&path).map(|fh| fh.encode());
                assert_eq!(child.handle.map(<[u8]>::to_vec), expect, "depth {depth}");
            }
            dir = dir.join(format!("d{depth}").as_bytes()).unwrap();
        }
        // Entries one too deep have no handle, as they have none from `for_path`.
        assert!(Children::of(&dir).entry(b"x").handle.is_none());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = FileHandle::decode(&bytes);
        }

        #[test]
        fn round_trip(names in proptest::collection::vec("[a-zA-Z0-9 ._-]{1,20}", 0..20)) {
            let mut path = RelPath::root();
            for n in &names {
                if let Ok(q) = path.join(n.as_bytes()) { path = q; }
            }
            let fh = FileHandle::for_path(&path).unwrap();
            let bytes = fh.encode();
            prop_assert!(bytes.len() <= 64);
            prop_assert_eq!(FileHandle::decode(&bytes).unwrap(), fh.clone());
            prop_assert!(fh.matches(&path));
        }
    }
}
