//! Validated paths relative to the export root. A [`RelPath`] can only be built from names that
//! passed [`validate_name`], so it never holds `..`, `.`, an empty component or a `/` in a name.
use crate::FsError;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// The longest name accepted (NAME_MAX on Linux).
pub const MAX_NAME_LEN: usize = 255;

/// Accept `name` as one path component: not empty, not `.` or `..`, no `/` or NUL, at most
/// [`MAX_NAME_LEN`] bytes.
pub fn validate_name(name: &[u8]) -> Result<(), FsError> {
    if name.len() > MAX_NAME_LEN {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0)
    {
        return Err(FsError::InvalidName);
    }
    Ok(())
}

/// A path below the root, stored as `a/b/c` (empty for the root itself). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Arc<[u8]>);

impl RelPath {
    /// The root of the export.
    pub fn root() -> Self {
        RelPath(Arc::from(&b""[..]))
    }

    /// Parse `a/b/c` (leading, trailing and repeated slashes ignored), validating every component.
    /// `.` components are dropped; `..` is refused.
    pub fn parse(path: &[u8]) -> Result<Self, FsError> {
        let mut p = RelPath::root();
        for comp in path.split(|&b| b == b'/') {
            if comp.is_empty() || comp == b"." {
                continue;
            }
            p = p.join(comp)?;
        }
        Ok(p)
    }

    /// The path whose [`RelPath::as_bytes`] are `bytes` (`a/b/c`, or empty for the root), in
    /// one allocation: every component is validated, and anything else (a leading, trailing or
    /// doubled `/`, `.`, `..`) is refused. For paths kept as bytes and turned back into paths.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FsError> {
        if !bytes.is_empty() {
            for comp in bytes.split(|&b| b == b'/') {
                validate_name(comp)?;
            }
        }
        Ok(RelPath(Arc::from(bytes)))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The child `name` of this path.
    pub fn join(&self, name: &[u8]) -> Result<Self, FsError> {
        validate_name(name)?;
        let mut v = Vec::with_capacity(self.0.len() + 1 + name.len());
        v.extend_from_slice(&self.0);
        if !v.is_empty() {
            v.push(b'/');
        }
        v.extend_from_slice(name);
        Ok(RelPath(v.into()))
    }

    /// The parent path; the root is its own parent, so `..` never climbs above the export.
    pub fn parent(&self) -> RelPath {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => RelPath(Arc::from(&self.0[..i])),
            None => RelPath::root(),
        }
    }

    /// The last component (empty for the root).
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// The components, outermost first.
    pub fn components(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|&b| b == b'/').filter(|c| !c.is_empty())
    }

    /// Number of components (0 for the root).
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    /// The bytes `a/b/c`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path to hand to `openat2` relative to the root descriptor.
    pub(crate) fn for_syscall(&self) -> &OsStr {
        if self.0.is_empty() {
            OsStr::new(".")
        } else {
            OsStr::from_bytes(&self.0)
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/", b"a\0b"] {
            assert!(
                validate_name(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(validate_name(&[b'x'; 256]), Err(FsError::NameTooLong));
        validate_name(&[b'x'; 255]).unwrap();
        validate_name("ünïcødé name with spaces".as_bytes()).unwrap();
    }

    #[test]
    fn parse_refuses_dotdot_and_normalises() {
        assert!(RelPath::parse(b"a/../../etc").is_err());
        assert_eq!(RelPath::parse(b"//a/./b/").unwrap().as_bytes(), b"a/b");
        assert!(RelPath::parse(b"/").unwrap().is_root());
    }

    #[test]
    fn from_bytes_takes_only_what_as_bytes_gives() {
        let p = RelPath::parse(b"a/b c/d").unwrap();
        assert_eq!(RelPath::from_bytes(p.as_bytes()), Ok(p));
        assert!(RelPath::from_bytes(b"").unwrap().is_root());
        for bad in [&b"/a"[..], b"a/", b"a//b", b"a/./b", b"a/../b", b"a\0b"] {
            assert!(
                RelPath::from_bytes(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parent_of_root_is_root() {
        let p = RelPath::parse(b"a/b").unwrap();
        assert_eq!(p.parent().as_bytes(), b"a");
        assert!(p.parent().parent().is_root());
        assert!(RelPath::root().parent().is_root());
        assert_eq!(p.file_name(), b"b");
        assert_eq!(p.depth(), 2);
    }
}
