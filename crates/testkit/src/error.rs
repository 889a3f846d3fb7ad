//! The error type shared by every module of the test kit.
use std::path::PathBuf;

/// Everything that can go wrong while preparing or running a test fixture.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or process call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool the tests need is not installed (qemu, the kernel, busybox-static, ganesha, libnfs).
    #[error("missing prerequisite: {0}")]
    Missing(String),
    /// Something did not happen before its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A child process failed or misbehaved.
    #[error("{0}")]
    Process(String),
    /// Output of a tool could not be understood.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    /// A path that must exist does not.
    #[error("not found: {}", .0.display())]
    NotFound(PathBuf),
}

/// Result alias for the test kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a description to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}
