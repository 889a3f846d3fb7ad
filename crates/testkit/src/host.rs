//! What the kit needs from the host: the first installed copy of a program, and the logs its
//! fixtures write, read back as text.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The first of `candidates` that is a file, or [`Error::Missing`] with `missing` (which says
/// how to install it).
pub(crate) fn installed(candidates: &[&str], missing: &str) -> Result<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Missing(missing.into()))
}

/// A log file's text so far (invalid UTF-8 replaced), empty when it cannot be read.
pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
