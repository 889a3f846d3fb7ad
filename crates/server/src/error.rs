//! The one place where errors become wire statuses: a backend [`FsError`], a handle that does
//! not decode or resolve, or a zero-copy READ that broke, becomes an `nfsstat3` (or, for MNT, a
//! `mountstat3`) here and nowhere else. Each special case has its own named function.
//!
//! The handlers still choose the statuses the protocol itself prescribes from what they see
//! (NFS3ERR_ROFS for a change, NOTDIR for a LOOKUP in a file, ACCES from the credential, ...);
//! they never look at an error's kind, nor remap a status they got from here.
//! `tests/status_mapping.rs` checks that by reading the crate's sources.
use crate::handle::BadHandle;
use mountshare_fs::{FileKind, FsError};
use mountshare_proto::mount3::MountStat3;
use mountshare_proto::nfs3::NfsStat3;
use rustix::io::Errno;

/// The result of resolving a handle that names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stale;

/// A handle that names nothing below the export (any more): NFS3ERR_STALE.
pub(crate) fn stale_handle(_: Stale) -> NfsStat3 {
    NfsStat3::Stale
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

/// A directory that a handle's guided walk could not stat or list. For now it is a dead end:
/// the walk goes on with the other candidates, and a handle with none left is [`Stale`].
pub(crate) fn walk_failed(_: &FsError) -> Stale {
    Stale
}

/// The MOUNT status of a MNT whose stat of the directory failed with `err`.
pub(crate) fn mount_status(err: &FsError) -> MountStat3 {
    match nfsstat(err) {
        NfsStat3::Acces => MountStat3::Acces,
        NfsStat3::NotDir => MountStat3::NotDir,
        _ => MountStat3::NoEnt,
    }
}

/// A MNT path that names nothing below the export (`..`, or a component too long): NOENT.
pub(crate) fn mount_path_refused(_: &FsError) -> MountStat3 {
    MountStat3::NoEnt
}

/// The NFS status a client should see for `err`. Failures of the file system itself (not of
/// what the client asked) are logged, at most once every ten seconds: a FUSE daemon that died
/// shows here as "Transport endpoint is not connected" while clients see EIO.
pub(crate) fn nfsstat(err: &FsError) -> NfsStat3 {
    let status = map(err);
    if status == NfsStat3::Io {
        report_io(err);
    }
    status
}

fn report_io(err: &FsError) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static LAST: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(error = %err, suppressed, "the exported file system failed a call; clients get EIO");
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

fn map(err: &FsError) -> NfsStat3 {
    match err {
        // A name that cannot be one component (a `/` in it, NUL, empty) names nothing here.
        FsError::InvalidName => NfsStat3::NoEnt,
        FsError::NameTooLong => NfsStat3::NameTooLong,
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
            Errno::AGAIN | Errno::INTR => NfsStat3::Jukebox,
            // Includes ENOTCONN: a FUSE daemon that went away ("Transport endpoint is not
            // connected"). The client gets EIO, which it reports; it does not mean ESTALE.
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
        assert_eq!(mount_status(&eio), MountStat3::NoEnt);
        assert_eq!(mount_path_refused(&FsError::NameTooLong), MountStat3::NoEnt);
        assert_eq!(stale_handle(walk_failed(&eio)), NfsStat3::Stale);
        assert_eq!(zero_copy_failed(), NfsStat3::Io);
    }

    #[test]
    fn common_errors_map_as_clients_expect() {
        assert_eq!(nfsstat(&os(Errno::NOENT)), NfsStat3::NoEnt);
        assert_eq!(nfsstat(&os(Errno::NOTCONN)), NfsStat3::Io);
        assert_eq!(nfsstat(&os(Errno::LOOP)), NfsStat3::Stale);
        assert_eq!(nfsstat(&FsError::InvalidName), NfsStat3::NoEnt);
    }
}
