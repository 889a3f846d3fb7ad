//! MOUNT protocol (RFC 1813 appendix I): hands out the root handle (or a subdirectory's) and
//! keeps the advisory list of who mounted. Versions 1 and 3 share every procedure's encoding
//! except MNT, which only version 3 serves (version 1's 32-byte handles cannot hold ours).
use crate::error;
use crate::export::Export;
use crate::procedure::{void, Handler, Procedure, Run};
use crate::reply::{decode_args, Reply};
use mountshare_fs::RelPath;
use mountshare_proto::mount3::*;
use mountshare_proto::rpc::{AcceptStat, AUTH_SYS};

/// The MOUNT procedures, by number (RFC 1813 appendix I), of both versions.
pub(crate) static PROCEDURES: [Procedure; mountproc3::NAMES.len()] = [
    local(mountproc3::NULL, void),
    local(mountproc3::MNT, mount),
    local(mountproc3::DUMP, dump),
    local(mountproc3::UMNT, unmount),
    local(mountproc3::UMNTALL, unmount_all),
    local(mountproc3::EXPORT, exports),
];

/// MOUNT procedure `number`.
const fn local(number: u32, call: Run) -> Procedure {
    Procedure::local(&mountproc3::NAMES, number, call)
}

/// MNT, for clients the allow-list allows; version 3 only.
fn mount(h: &Handler<'_>, args: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    if h.vers != MOUNT_V3 {
        return Err(AcceptStat::ProcUnavail);
    }
    let DirPath(path) = decode_args(args)?;
    let (export, peer) = (h.export, h.peer);
    let res = if export.allows(peer.ip()) {
        mnt(export, &path)
    } else {
        tracing::info!(peer = %peer, "MNT refused: the client is not in the allow-list");
        MountRes3::Fail(MountStat3::Acces)
    };
    if matches!(res, MountRes3::Ok(_)) {
        export.record_mount(peer, &String::from_utf8_lossy(&path));
        tracing::info!(peer = %peer, path = %String::from_utf8_lossy(&path), "client mounted");
    }
    reply.results(&res);
    Ok(())
}

fn dump(h: &Handler<'_>, _: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    let list = h
        .export
        .mount_list()
        .into_iter()
        .map(|(host, dir)| MountBody {
            ml_hostname: host.into_bytes(),
            ml_directory: dir.into_bytes(),
        })
        .collect();
    reply.results(&MountList(list));
    Ok(())
}

fn unmount(h: &Handler<'_>, args: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    let DirPath(path) = decode_args(args)?;
    h.export
        .forget_mount(h.peer, Some(&String::from_utf8_lossy(&path)));
    reply.success();
    Ok(())
}

fn unmount_all(h: &Handler<'_>, _: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    h.export.forget_mount(h.peer, None);
    reply.success();
    Ok(())
}

fn exports(_: &Handler<'_>, _: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    reply.results(&Exports(vec![ExportNode {
        ex_dir: b"/".to_vec(),
        ex_groups: Vec::new(),
    }]));
    Ok(())
}

/// The handle of the directory `path` names below the export: `/` is the root. No symlink is
/// followed and `..` is refused, so a MNT never reaches outside the export.
fn mnt(export: &Export, path: &[u8]) -> MountRes3 {
    let rel = match RelPath::parse(path) {
        Ok(p) => p,
        Err(e) => return MountRes3::Fail(error::mount_path_refused(&e)),
    };
    match export.stat(&rel) {
        Ok(attr) if attr.is_dir() => match export.handle_for(&rel) {
            Some(fh) => MountRes3::Ok(MountRes3Ok {
                fhandle: fh.encode(),
                auth_flavors: vec![AUTH_SYS],
            }),
            None => MountRes3::Fail(MountStat3::NameTooLong),
        },
        Ok(_) => MountRes3::Fail(MountStat3::NotDir),
        Err(e) => MountRes3::Fail(error::mount_status(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allow::AllowList;
    use crate::auth::Creds;
    use crate::metrics::Metrics;
    use mountshare_proto::rpc::{decode_reply_header, ReplyBody};
    use mountshare_proto::xdr::{decode, XdrEncode};
    use std::net::SocketAddr;
    use std::sync::Arc;

    /// MNT `/` from `peer` against an export that allows only 10.42.0.0/16.
    fn mnt_from(peer: &str) -> MountRes3 {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(mountshare_fs::LocalFs::open(dir.path()).unwrap());
        let export = Export::new(
            backend,
            1,
            2049,
            None,
            &Default::default(),
            Metrics::default(),
        )
        .allow(AllowList::only(vec!["10.42.0.0/16".parse().unwrap()]));
        let mut args = bytes::BytesMut::new();
        DirPath(b"/".to_vec()).encode(&mut args);
        let mut reply = Reply::new(7, true);
        let peer = SocketAddr::new(peer.parse().unwrap(), 700);
        let h = Handler {
            export: &export,
            creds: &Creds {
                uid: 0,
                gid: 0,
                gids: Vec::new(),
            },
            peer,
            vers: MOUNT_V3,
            zero_copy: false,
        };
        (PROCEDURES[mountproc3::MNT as usize].call)(&h, &args, &mut reply).unwrap();
        let framed = reply.finish().to_vec();
        let (xid, body, at) = decode_reply_header(&framed[4..]).unwrap();
        assert_eq!((xid, body), (7, ReplyBody::SUCCESS));
        decode(&framed[4 + at..]).unwrap()
    }

    /// A client that got past the connection's check (or any other way in) still cannot mount.
    #[test]
    fn mnt_from_outside_the_allow_list_is_acces() {
        assert!(matches!(mnt_from("10.42.3.4"), MountRes3::Ok(_)));
        assert!(matches!(
            mnt_from("10.43.0.1"),
            MountRes3::Fail(MountStat3::Acces)
        ));
        assert!(matches!(mnt_from("::ffff:10.42.3.4"), MountRes3::Ok(_)));
    }
}
