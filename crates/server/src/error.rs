//! The one place where backend errors become `nfsstat3` codes.
use mountshare_fs::FsError;
use mountshare_proto::nfs3::NfsStat3;
use rustix::io::Errno;

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
    fn common_errors_map_as_clients_expect() {
        assert_eq!(nfsstat(&os(Errno::NOENT)), NfsStat3::NoEnt);
        assert_eq!(nfsstat(&os(Errno::NOTCONN)), NfsStat3::Io);
        assert_eq!(nfsstat(&os(Errno::LOOP)), NfsStat3::Stale);
        assert_eq!(nfsstat(&FsError::InvalidName), NfsStat3::NoEnt);
    }
}
