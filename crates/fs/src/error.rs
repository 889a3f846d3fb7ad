//! Backend errors: an errno from the host, or a request the backend refuses before any syscall.
use std::fmt;

/// Why a backend operation failed. The NFS layer maps this to `nfsstat3` in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// The host returned this errno.
    #[error("{0}")]
    Os(Errno),
    /// A name a client sent is not a valid single path component.
    #[error("invalid name")]
    InvalidName,
    /// A name is longer than [`crate::MAX_NAME_LEN`].
    #[error("name too long")]
    NameTooLong,
    /// The object is gone from the backend, but its directory's listing, which still holds
    /// it, lost most of its entries at once: a loss held back until it lasts (the backend may
    /// be restarting). Clients are told to retry, not that it is gone.
    #[error("gone while its directory's loss is held back")]
    Withheld,
}

/// A host errno with a readable form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (errno {})",
            std::io::Error::from_raw_os_error(self.0),
            self.0
        )
    }
}

impl FsError {
    /// The errno, when this error came from the host.
    pub fn errno(&self) -> Option<i32> {
        match self {
            FsError::Os(e) => Some(e.0),
            _ => None,
        }
    }
}

impl From<rustix::io::Errno> for FsError {
    fn from(e: rustix::io::Errno) -> Self {
        FsError::Os(Errno(e.raw_os_error()))
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        FsError::Os(Errno(
            e.raw_os_error()
                .unwrap_or(rustix::io::Errno::IO.raw_os_error()),
        ))
    }
}
