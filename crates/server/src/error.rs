//! The one place where errors become wire statuses: a backend [`FsError`], a handle that does
//! not decode or resolve, or a zero-copy READ that broke, becomes an `nfsstat3` (or, for MNT, a
//! `mountstat3`) here and nowhere else. Each special case has its own named function.
//!
//! The handlers still choose the statuses the protocol itself prescribes from what they see
//! (NFS3ERR_ROFS for a change, NOTDIR for a LOOKUP in a file, ACCES from the credential, ...);
//! they never look at an error's kind, nor remap a status they got from here.
//! `tests/status_mapping.rs` checks that by reading the crate's sources.
use crate::handle::BadHandle;
use crate::throttle::Throttle;
use mountshare_fs::{FileKind, FsError};
use mountshare_proto::mount3::MountStat3;
use mountshare_proto::nfs3::NfsStat3;
use rustix::io::Errno;

/// Why a handle did not resolve to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unresolved {
    /// The path it names provably does not exist (every directory on the way was listed).
    Stale,
    /// The file system failed while the path was looked for: nothing is proven, and the client
    /// must not drop the file (STALE would make it do so for good).
    Failed(NfsStat3),
}

/// A handle that did not resolve: NFS3ERR_STALE only when its path provably does not exist.
pub(crate) fn unresolved_handle(why: Unresolved) -> NfsStat3 {
    match why {
        Unresolved::Stale => NfsStat3::Stale,
        Unresolved::Failed(status) => status,
    }
}

/// A handle whose bytes are not a handle of this server: NFS3ERR_BADHANDLE.
pub(crate) fn bad_handle(err: &BadHandle) -> NfsStat3 {
    tracing::debug!(error = %err, "bad file handle");
    NfsStat3::BadHandle
}

/// A stat of the object a handle resolved to a moment ago. Gone now (ENOENT, ENOTDIR on the way)
/// means the handle is stale; anything else maps as [`nfsstat`] does.
pub(crate) fn object_status(err: &FsError) -> NfsStat3 {
    match nfsstat(err) {
        NfsStat3::NoEnt | NfsStat3::NotDir => NfsStat3::Stale,
        s => s,
    }
}

/// A READ whose open or read failed with `err`, where `kind` is what a stat of the path found
/// now (`None`: the stat failed too). Only regular files are read; say why the others are not,
/// as the RFC does.
pub(crate) fn read_status(kind: Option<FileKind>, err: &FsError) -> NfsStat3 {
    match (kind, nfsstat(err)) {
        (Some(FileKind::Directory), _) => NfsStat3::IsDir,
        (Some(FileKind::Regular), s) => s,
        (Some(_), _) => NfsStat3::Inval,
        (None, NfsStat3::NoEnt | NfsStat3::NotDir) => NfsStat3::Stale,
        (None, s) => s,
    }
}

/// A zero-copy READ that failed after bytes were moved into its pipe (the splice broke
/// part-way, or the open file could not be stat'ed): it cannot fall back to copying, and the
/// client gets EIO.
pub(crate) fn zero_copy_failed() -> NfsStat3 {
    NfsStat3::Io
}

/// A directory that a handle's guided walk could not stat or list. Gone (ENOENT, ENOTDIR) is a
/// dead end like any other name that does not match; anything else (a FUSE daemon that died or
/// hangs, EIO) leaves the handle unresolved with the status the failure maps to, never STALE.
pub(crate) fn walk_failed(err: &FsError) -> Option<Unresolved> {
    match nfsstat(err) {
        NfsStat3::NoEnt | NfsStat3::NotDir | NfsStat3::Stale => None,
        s => Some(Unresolved::Failed(s)),
    }
}

/// A call the backend did not answer within the backend timeout (it goes on), or one refused
/// at once because its file, or too many calls, are stuck: NFS3ERR_JUKEBOX, so that the Linux
/// client waits and retries without an error reaching the application.
pub(crate) fn backend_late() -> NfsStat3 {
    NfsStat3::Jukebox
}

/// A listing of the export root that lacks a name it must hold (`--expect`): the library is
/// not all there (a backend between mounts, a debrid outage). JUKEBOX, never an empty or
/// partial listing, which Plex's "empty trash after scan" would act on.
pub(crate) fn library_incomplete() -> NfsStat3 {
    NfsStat3::Jukebox
}

/// The MOUNT status of a MNT whose stat of the directory failed with `err`.
pub(crate) fn mount_status(err: &FsError) -> MountStat3 {
    match nfsstat(err) {
        NfsStat3::Acces => MountStat3::Acces,
        NfsStat3::NotDir => MountStat3::NotDir,
        NfsStat3::NoEnt | NfsStat3::Stale | NfsStat3::NameTooLong | NfsStat3::Inval => {
            MountStat3::NoEnt
        }
        // The file system failed (or is away): not a wrong path.
        _ => MountStat3::Io,
    }
}

/// A MNT path that names nothing below the export (`..`, or a component too long): NOENT.
pub(crate) fn mount_path_refused(_: &FsError) -> MountStat3 {
    MountStat3::NoEnt
}

/// The NFS status a client should see for `err`. Failures of the file system itself (not of
/// what the client asked) are logged, at most once every ten seconds.
pub(crate) fn nfsstat(err: &FsError) -> NfsStat3 {
    let status = map(err);
    if matches!(status, NfsStat3::Io | NfsStat3::Jukebox) {
        report_io(err, status);
    }
    status
}

fn report_io(err: &FsError, status: NfsStat3) {
    static EVERY_10S: Throttle = Throttle::every(10);
    let Some(suppressed) = EVERY_10S.admit() else {
        return;
    };
    let told = if status == NfsStat3::Jukebox {
        "clients are told to retry (JUKEBOX)"
    } else {
        "clients get EIO"
    };
    tracing::warn!(error = %err, suppressed, "the exported file system failed a call; {told}");
}

fn map(err: &FsError) -> NfsStat3 {
    match err {
        // A name that cannot be one component (a `/` in it, NUL, empty) names nothing here.
        FsError::InvalidName => NfsStat3::NoEnt,
        FsError::NameTooLong => NfsStat3::NameTooLong,
        FsError::Withheld => NfsStat3::Jukebox,
        FsError::Os(e) => match Errno::from_raw_os_error(e.0) {
            Errno::NOENT => NfsStat3::NoEnt,
            Errno::NOTDIR => NfsStat3::NotDir,
            Errno::ISDIR => NfsStat3::IsDir,
            Errno::ACCESS => NfsStat3::Acces,
            Errno::PERM => NfsStat3::Perm,
            Errno::NAMETOOLONG => NfsStat3::NameTooLong,
            Errno::INVAL => NfsStat3::Inval,
            Errno::NXIO | Errno::NODEV => NfsStat3::NxIo,
            Errno::FBIG | Errno::OVERFLOW => NfsStat3::FBig,
            Errno::ROFS => NfsStat3::RoFs,
            Errno::STALE => NfsStat3::Stale,
            // A symlink or a mount crossing appeared where a directory was: what the handle
            // named is no longer reachable beneath the root.
            Errno::LOOP | Errno::XDEV => NfsStat3::Stale,
            // Transient: the file system is busy, or away and being followed (ENOTCONN is a
            // FUSE daemon that died, "Transport endpoint is not connected", or no mount at DIR
            // right now; the server serves the next one within a check). The client waits
            // and retries; the application sees no error.
            Errno::AGAIN
            | Errno::INTR
            | Errno::NOTCONN
            | Errno::TIMEDOUT
            | Errno::CONNABORTED
            | Errno::SHUTDOWN
            | Errno::BUSY => NfsStat3::Jukebox,
            // EIO and the rest: a real failure of the file system, reported to the client.
            _ => NfsStat3::Io,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mountshare_fs::FsError;

    fn os(e: Errno) -> FsError {
        FsError::from(e)
    }

    #[test]
    fn special_cases_keep_their_statuses() {
        assert_eq!(object_status(&os(Errno::NOENT)), NfsStat3::Stale);
        assert_eq!(object_status(&os(Errno::NOTDIR)), NfsStat3::Stale);
        assert_eq!(object_status(&os(Errno::ACCESS)), NfsStat3::Acces);
        let eio = os(Errno::IO);
        assert_eq!(
            read_status(Some(FileKind::Directory), &eio),
            NfsStat3::IsDir
        );
        assert_eq!(read_status(Some(FileKind::Regular), &eio), NfsStat3::Io);
        assert_eq!(read_status(Some(FileKind::Symlink), &eio), NfsStat3::Inval);
        assert_eq!(read_status(None, &os(Errno::NOENT)), NfsStat3::Stale);
        assert_eq!(read_status(None, &eio), NfsStat3::Io);
        assert_eq!(mount_status(&os(Errno::ACCESS)), MountStat3::Acces);
        assert_eq!(mount_status(&os(Errno::NOTDIR)), MountStat3::NotDir);
        assert_eq!(mount_status(&eio), MountStat3::Io);
        assert_eq!(mount_status(&os(Errno::NOENT)), MountStat3::NoEnt);
        assert_eq!(mount_path_refused(&FsError::NameTooLong), MountStat3::NoEnt);
        assert_eq!(walk_failed(&eio), Some(Unresolved::Failed(NfsStat3::Io)));
        assert_eq!(
            walk_failed(&os(Errno::NOTCONN)),
            Some(Unresolved::Failed(NfsStat3::Jukebox))
        );
        assert_eq!(walk_failed(&os(Errno::NOENT)), None);
        assert_eq!(unresolved_handle(Unresolved::Stale), NfsStat3::Stale);
        assert_eq!(zero_copy_failed(), NfsStat3::Io);
    }

    #[test]
    fn common_errors_map_as_clients_expect() {
        assert_eq!(nfsstat(&os(Errno::NOENT)), NfsStat3::NoEnt);
        assert_eq!(nfsstat(&os(Errno::NOTCONN)), NfsStat3::Jukebox);
        assert_eq!(nfsstat(&os(Errno::IO)), NfsStat3::Io);
        assert_eq!(nfsstat(&os(Errno::TIMEDOUT)), NfsStat3::Jukebox);
        assert_eq!(nfsstat(&os(Errno::LOOP)), NfsStat3::Stale);
        assert_eq!(nfsstat(&FsError::InvalidName), NfsStat3::NoEnt);
    }
}
