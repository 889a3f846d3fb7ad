//! NFS version 3 procedures (RFC 1813 section 3.3): the read side over the backend, and
//! NFS3ERR_ROFS for every procedure that would change the tree.
use crate::config::MAX_READ;
use crate::procedure::{answer, void, Handler, Procedure, Run};
use crate::reply::{decode_args, Reply, Results, Tail};

use crate::dircache::{Attr3, DirSnapshot, Want};
use crate::error::{self, nfsstat};
use crate::export::Export;
use crate::handle::{path_hash, Children, FileHandle};
use crate::splice::{Spliced, SplicedData};
use mountshare_fs::{validate_name, Attr, FileKind, RelPath};
use mountshare_proto::nfs3::*;
use mountshare_proto::rpc::AcceptStat;
use mountshare_proto::xdr::{XdrDecode, XdrEncode};

/// The largest READDIR/READDIRPLUS reply built, whatever the client asks.
const MAX_DIR_REPLY: u32 = 1 << 20;
/// The cookie verifier: a constant of the cookie scheme, so cookies stay valid across restarts
/// and failovers. A cookie from anything else (another server, an older scheme) is refused.
pub(crate) const COOKIE_VERIFIER: CookieVerf3 = *b"mshare01";
/// Cookies of the `.` and `..` entries (real entries are always above 2).
const DOT_COOKIE: u64 = 1;
const DOTDOT_COOKIE: u64 = 2;

/// The NFSv3 procedures, by number (RFC 1813 section 3.3). Every procedure that would change
/// the tree answers NFS3ERR_ROFS, after its arguments decode.
pub(crate) static PROCEDURES: [Procedure; proc3::NAMES.len()] = [
    local(proc3::NULL, void),
    backend::<GetAttr3Res>(proc3::GETATTR, |h, args, reply| {
        answer(args, reply, |a| h.getattr(a))
    }),
    local(proc3::SETATTR, read_only::<SetAttr3Args, SetAttr3Res>),
    backend::<Lookup3Res>(proc3::LOOKUP, |h, args, reply| {
        answer(args, reply, |a| h.lookup(a))
    }),
    backend::<Access3Res>(proc3::ACCESS, |h, args, reply| {
        answer(args, reply, |a| h.access(a))
    }),
    backend::<ReadLink3Res>(proc3::READLINK, |h, args, reply| {
        answer(args, reply, |a| h.readlink(a))
    }),
    backend::<Read3Res>(proc3::READ, |h, args, reply| {
        h.read(decode_args(args)?, reply);
        Ok(())
    })
    .data_lane(),
    local(proc3::WRITE, read_only::<Write3Args, Write3Res>),
    local(proc3::CREATE, read_only::<Create3Args, Create3Res>),
    local(proc3::MKDIR, read_only::<Mkdir3Args, Mkdir3Res>),
    local(proc3::SYMLINK, read_only::<Symlink3Args, Symlink3Res>),
    local(proc3::MKNOD, read_only::<Mknod3Args, Mknod3Res>),
    local(proc3::REMOVE, read_only::<Remove3Args, Remove3Res>),
    local(proc3::RMDIR, read_only::<Rmdir3Args, Rmdir3Res>),
    local(proc3::RENAME, read_only::<Rename3Args, Rename3Res>),
    local(proc3::LINK, read_only::<Link3Args, Link3Res>),
    backend::<ReadDir3Res>(proc3::READDIR, |h, args, reply| {
        let a: ReadDir3Args = decode_args(args)?;
        reply.reserve(h.export.read_buffers(), dir_reply_room(a.count));
        reply.results(&h.readdir(a));
        Ok(())
    }),
    backend::<ReadDirPlus3Res>(proc3::READDIRPLUS, |h, args, reply| {
        let a: ReadDirPlus3Args = decode_args(args)?;
        reply.reserve(h.export.read_buffers(), dir_reply_room(a.maxcount));
        h.readdirplus(a, reply);
        Ok(())
    }),
    backend::<FsStat3Res>(proc3::FSSTAT, |h, args, reply| {
        answer(args, reply, |a| h.fsstat(a))
    }),
    backend::<FsInfo3Res>(proc3::FSINFO, |h, args, reply| {
        answer(args, reply, |a| h.fsinfo(a))
    }),
    backend::<PathConf3Res>(proc3::PATHCONF, |h, args, reply| {
        answer(args, reply, |a| h.pathconf(a))
    }),
    local(proc3::COMMIT, read_only::<Commit3Args, Commit3Res>),
];

/// NFSv3 procedure `number`, answered without the backend.
const fn local(number: u32, call: Run) -> Procedure {
    Procedure::local(&proc3::NAMES, number, call)
}

/// NFSv3 procedure `number`, which may wait on the backend; `R` is its results.
const fn backend<R: Failure>(number: u32, call: Run) -> Procedure {
    Procedure::backend(&proc3::NAMES, number, call, failed::<R>)
}

/// Results that can fail with a status alone (their failure arm carries only optional
/// attributes, left out).
trait Failure: Results {
    fn failure(status: NfsStat3) -> Self;
}

impl<T: XdrEncode, F: XdrEncode + Default> Failure for NfsRes<T, F> {
    fn failure(status: NfsStat3) -> Self {
        NfsRes::Fail(status, F::default())
    }
}

/// The results `R` failed with `status`, with no attributes.
fn failed<R: Failure>(status: NfsStat3, reply: &mut Reply) {
    reply.results(&R::failure(status));
}

/// A procedure that would change the tree, which is read-only: its arguments `A` are still
/// decoded, so garbage gets GARBAGE_ARGS, then its results `R` fail with NFS3ERR_ROFS.
fn read_only<A: XdrDecode, R: Failure>(
    _: &Handler<'_>,
    args: &[u8],
    reply: &mut Reply,
) -> Result<(), AcceptStat> {
    let _: A = decode_args(args)?;
    failed::<R>(NfsStat3::RoFs, reply);
    Ok(())
}

/// Room for a READDIR or READDIRPLUS reply the client allows `count` bytes: the results, and
/// the RPC header and record mark before them.
fn dir_reply_room(count: u32) -> usize {
    count.min(MAX_DIR_REPLY) as usize + 256
}

/// The `fattr3` of `path`. The fileid is the path hash, not the host inode: it must be the same
/// after a restart and on another server, where inode numbers (of a FUSE tree especially) differ.
pub(crate) fn fattr3(fsid: u64, path: &RelPath, a: &Attr) -> Fattr3 {
    Attr3::new(a).fattr3(fsid, path_hash(path))
}

fn read_failed(reply: &mut Reply, s: NfsStat3, file_attributes: PostOpAttr) {
    reply.results(&Read3Res::Fail(s, Read3ResFail { file_attributes }));
}

/// A failure with the attributes to send along with it, when they are known.
type Failed = (NfsStat3, PostOpAttr);

impl Handler<'_> {
    fn path_of(&self, fh: &NfsFh3) -> Result<RelPath, NfsStat3> {
        let fh = FileHandle::decode(&fh.data).map_err(|e| error::bad_handle(&e))?;
        self.export.resolve(&fh).map_err(error::unresolved_handle)
    }

    /// Resolve and stat: the object's path and current attributes.
    fn object(&self, fh: &NfsFh3) -> Result<(RelPath, Attr), NfsStat3> {
        let path = self.path_of(fh)?;
        let attr = self
            .export
            .stat(&path)
            .map_err(|e| error::object_status(&e))?;
        Ok((path, attr))
    }

    fn post_op(&self, path: &RelPath, attr: &Attr) -> PostOpAttr {
        PostOpAttr(Some(fattr3(self.export.fsid(), path, attr)))
    }

    fn getattr(&self, a: GetAttr3Args) -> GetAttr3Res {
        match self.object(&a.object) {
            Ok((path, attr)) => GetAttr3Res::Ok(GetAttr3ResOk {
                obj_attributes: fattr3(self.export.fsid(), &path, &attr),
            }),
            Err(s) => GetAttr3Res::Fail(s, ()),
        }
    }

    fn lookup(&self, a: Lookup3Args) -> Lookup3Res {
        match self.lookup_inner(&a.what) {
            Ok(ok) => Lookup3Res::Ok(ok),
            Err((s, dir_attributes)) => Lookup3Res::Fail(s, Lookup3ResFail { dir_attributes }),
        }
    }

    fn lookup_inner(&self, what: &DirOpArgs3) -> Result<Lookup3ResOk, Failed> {
        let (dir, dir_attr) = self.object(&what.dir).map_err(|s| (s, PostOpAttr(None)))?;
        let dir_attributes = self.post_op(&dir, &dir_attr);
        let fail = |s| (s, dir_attributes);
        if !dir_attr.is_dir() {
            return Err(fail(NfsStat3::NotDir));
        }
        if !self.creds.can_exec(&dir_attr) {
            return Err(fail(NfsStat3::Acces));
        }
        // `.` and `..` are resolved on the path, never by the host: `..` of the root is the root.
        let child = match what.name.as_slice() {
            b"." => dir.clone(),
            b".." => dir.parent(),
            name => dir.join(name).map_err(|e| fail(nfsstat(&e)))?,
        };
        let attr = self.export.stat(&child).map_err(|e| fail(nfsstat(&e)))?;
        let fh = self
            .export
            .handle_for(&child)
            .ok_or_else(|| fail(NfsStat3::NameTooLong))?;
        Ok(Lookup3ResOk {
            object: NfsFh3 { data: fh.encode() },
            obj_attributes: self.post_op(&child, &attr),
            dir_attributes,
        })
    }

    fn access(&self, a: Access3Args) -> Access3Res {
        match self.object(&a.object) {
            Ok((path, attr)) => Access3Res::Ok(Access3ResOk {
                obj_attributes: self.post_op(&path, &attr),
                access: self.creds.access(&attr, a.access),
            }),
            Err(s) => Access3Res::Fail(s, Access3ResFail::default()),
        }
    }

    fn readlink(&self, a: ReadLink3Args) -> ReadLink3Res {
        let fail =
            |s, symlink_attributes| ReadLink3Res::Fail(s, ReadLink3ResFail { symlink_attributes });
        let (path, attr) = match self.object(&a.symlink) {
            Ok(v) => v,
            Err(s) => return fail(s, PostOpAttr(None)),
        };
        let attrs = self.post_op(&path, &attr);
        if attr.kind != FileKind::Symlink {
            return fail(NfsStat3::Inval, attrs);
        }
        match self.export.backend().read_link(&path) {
            Ok(data) => ReadLink3Res::Ok(ReadLink3ResOk {
                symlink_attributes: attrs,
                data,
            }),
            Err(e) => fail(nfsstat(&e), attrs),
        }
    }

    /// READ sends the file's bytes without copying them when it can (pages spliced through a
    /// pipe), and otherwise reads them into a pooled buffer sent as it is, after the head.
    fn read(&self, a: Read3Args, reply: &mut Reply) {
        let path = match self.path_of(&a.file) {
            Ok(p) => p,
            Err(s) => return read_failed(reply, s, PostOpAttr(None)),
        };
        let count = a.count.min(MAX_READ) as usize;
        // One sequential stream per file for backends that need it (FUSE over HTTP).
        let _turn = self
            .export
            .backend()
            .capabilities()
            .reads_in_order
            .then(|| self.export.read_order().enter(path_hash(&path), a.offset));
        if count > 0 && self.zero_copy {
            if let Some(opened) = self.export.backend().open_file(&path) {
                let file = match opened {
                    Ok(file) => file,
                    Err(e) => return self.read_error(reply, &path, e),
                };
                match self.export.pipes().read(&file, a.offset, count) {
                    Spliced::Ready(data) => {
                        return self.read_spliced(&path, &file, data, a.offset, reply)
                    }
                    // No pipe to be had, or no splice on this file system: copy instead.
                    Spliced::CopyInstead => {}
                    Spliced::Failed => {
                        return read_failed(
                            reply,
                            error::zero_copy_failed(),
                            self.post_op_of(&path),
                        )
                    }
                }
            }
        }
        let mut data = self.export.read_buffers().take(count);
        let outcome = self
            .export
            .backend()
            .read(&path, a.offset, data.room(count));
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return self.read_error(reply, &path, e),
        };
        if !self.creds.can_read_data(&outcome.attr) {
            return read_failed(reply, NfsStat3::Acces, self.post_op(&path, &outcome.attr));
        }
        self.read_ok_head(reply, &path, &outcome.attr, outcome.bytes, outcome.eof);
        data.set_len(outcome.bytes);
        reply.set_tail(Tail::Buf(data));
    }

    /// READ of bytes already spliced into a pipe: check, then send them after the head.
    fn read_spliced(
        &self,
        path: &RelPath,
        file: &std::fs::File,
        data: SplicedData,
        offset: u64,
        reply: &mut Reply,
    ) {
        let attr = match Attr::of_file(file) {
            Ok(a) => a,
            Err(_) => return read_failed(reply, error::zero_copy_failed(), self.post_op_of(path)),
        };
        if !self.creds.can_read_data(&attr) {
            return read_failed(reply, NfsStat3::Acces, self.post_op(path, &attr));
        }
        let n = data.len();
        let eof = offset.saturating_add(n as u64) >= attr.size;
        self.read_ok_head(reply, path, &attr, n, eof);
        reply.set_tail(Tail::Pipe(data));
    }

    /// READ3resok up to the opaque's length; the bytes and their padding follow as the tail.
    fn read_ok_head(&self, reply: &mut Reply, path: &RelPath, attr: &Attr, n: usize, eof: bool) {
        reply.read_ok(&self.post_op(path, attr), n as u32, eof);
    }

    /// A failed READ, with the file's attributes when a stat still finds it.
    fn read_error(&self, reply: &mut Reply, path: &RelPath, e: mountshare_fs::FsError) {
        let attr = self.export.stat(path).ok();
        let s = error::read_status(attr.as_ref().map(|a| a.kind), &e);
        let attrs = match attr {
            Some(a) => self.post_op(path, &a),
            None => PostOpAttr(None),
        };
        read_failed(reply, s, attrs)
    }

    fn post_op_of(&self, path: &RelPath) -> PostOpAttr {
        match self.export.stat(path) {
            Ok(a) => self.post_op(path, &a),
            Err(_) => PostOpAttr(None),
        }
    }

    /// The directory at `fh`, checked for READDIR: its path, attributes and snapshot (listed
    /// for what it is `want`ed for).
    fn open_dir(
        &self,
        fh: &NfsFh3,
        cookie: u64,
        verf: &CookieVerf3,
        want: Want,
    ) -> Result<(RelPath, Attr, std::sync::Arc<DirSnapshot>), Failed> {
        // The backend's attributes: a directory's times are those of the snapshot served.
        let dir = self.path_of(fh).map_err(|s| (s, PostOpAttr(None)))?;
        let attr = self
            .export
            .stat_raw(&dir)
            .map_err(|e| (error::object_status(&e), PostOpAttr(None)))?;
        let attrs = self.post_op(&dir, &attr);
        if !attr.is_dir() {
            return Err((NfsStat3::NotDir, attrs));
        }
        if !self.creds.can_read(&attr) {
            return Err((NfsStat3::Acces, attrs));
        }
        // RFC 1813 3.3.16: a cookie is only meaningful with the verifier it came with.
        if cookie != 0 && *verf != COOKIE_VERIFIER {
            return Err((NfsStat3::BadCookie, attrs));
        }
        let snap = self
            .export
            .dir_snapshot(&dir, &attr, want)
            .map_err(|e| (nfsstat(&e), attrs))?;
        let attr = Export::served(attr, &snap);
        if dir.is_root() && !self.export.holds_expected(&snap) {
            return Err((error::library_incomplete(), self.post_op(&dir, &attr)));
        }
        Ok((dir, attr, snap))
    }

    /// The entries after `cookie`: `.` and `..` first, then the snapshot in cookie order; each
    /// with its path, and the attributes the snapshot holds for it, if any.
    fn entries_after<'s>(
        dir: &RelPath,
        snap: &'s DirSnapshot,
        cookie: u64,
    ) -> impl Iterator<Item = (u64, &'s [u8], RelPath, Option<Attr3>)> + 's {
        let dot = (cookie < DOT_COOKIE).then(|| (DOT_COOKIE, &b"."[..], dir.clone(), None));
        let dotdot =
            (cookie < DOTDOT_COOKIE).then(|| (DOTDOT_COOKIE, &b".."[..], dir.parent(), None));
        let from = snap.position_after(cookie);
        let dir = dir.clone();
        dot.into_iter()
            .chain(dotdot)
            .chain(
                snap.entries_from(from)
                    .zip(from..)
                    .filter_map(move |((c, name), i)| {
                        Some((c, name, dir.join(name).ok()?, snap.attr3(i).copied()))
                    }),
            )
    }

    /// The entries of a READDIR or READDIRPLUS reply: as many of `listing` as fit in `count`
    /// bytes (at most [`MAX_DIR_REPLY`]) beside `dir_attributes`, and whether that was all of
    /// them (`eof`). `None` when not even the first fits: NFS3ERR_TOOSMALL. `listing` is taken
    /// lazily, so no entry is built past the first that does not fit.
    fn fill_reply<E>(
        dir_attributes: &PostOpAttr,
        count: u32,
        listing: impl Iterator<Item = E>,
        encoded_len: impl Fn(&E) -> usize,
    ) -> Option<(Vec<E>, bool)> {
        let limit = count.min(MAX_DIR_REPLY) as usize;
        let mut size = readdir3_resok_base_len(dir_attributes);
        let mut entries = Vec::new();
        for entry in listing {
            let len = encoded_len(&entry);
            if size + len > limit {
                return (!entries.is_empty()).then_some((entries, false));
            }
            size += len;
            entries.push(entry);
        }
        Some((entries, true))
    }

    fn readdir(&self, a: ReadDir3Args) -> ReadDir3Res {
        let (dir, attr, snap) = match self.open_dir(&a.dir, a.cookie, &a.cookieverf, Want::Names) {
            Ok(v) => v,
            Err((s, dir_attributes)) => {
                return ReadDir3Res::Fail(s, ReadDir3ResFail { dir_attributes })
            }
        };
        let dir_attributes = self.post_op(&dir, &attr);
        let listing =
            Self::entries_after(&dir, &snap, a.cookie).map(|(cookie, name, path, _)| Entry3 {
                fileid: path_hash(&path),
                name: name.to_vec(),
                cookie,
            });
        let Some((entries, eof)) =
            Self::fill_reply(&dir_attributes, a.count, listing, Entry3::encoded_len)
        else {
            return ReadDir3Res::Fail(NfsStat3::TooSmall, ReadDir3ResFail { dir_attributes });
        };
        ReadDir3Res::Ok(ReadDir3ResOk {
            dir_attributes,
            cookieverf: COOKIE_VERIFIER,
            reply: DirList3 { entries, eof },
        })
    }

    /// READDIRPLUS, written into `reply` entry by entry ([`DirListPlusWriter`]): no entry is
    /// built as a value, and each entry's path and handle are made in buffers reused from entry
    /// to entry ([`Children`]).
    fn readdirplus(&self, a: ReadDirPlus3Args, reply: &mut Reply) {
        let (dir, attr, snap) = match self.open_dir(&a.dir, a.cookie, &a.cookieverf, Want::Attrs) {
            Ok(v) => v,
            Err((s, dir_attributes)) => {
                return reply.results(&ReadDirPlus3Res::Fail(
                    s,
                    ReadDirPlus3ResFail { dir_attributes },
                ))
            }
        };
        let dir_attributes = self.post_op(&dir, &attr);
        let fsid = self.export.fsid();
        // Only maxcount bounds the reply. dircount is a hint (RFC 1813 3.3.17) and the Linux
        // client sends maxcount/8 for it; honouring it would cut every reply to a fraction of
        // what the client can take. The Linux server ignores it too.
        let limit = a.maxcount.min(MAX_DIR_REPLY) as usize;
        let out = reply.results_buf(NfsStat3::Ok);
        let mut w = DirListPlusWriter::new(out, &dir_attributes, &COOKIE_VERIFIER, limit);
        // An entry that vanished since the snapshot is still listed, without attributes: the
        // client's LOOKUP will then get NOENT. Cookies stay consistent either way.
        let mut eof = true;
        let dots = [
            (DOT_COOKIE, &b"."[..], dir.clone()),
            (DOTDOT_COOKIE, &b".."[..], dir.parent()),
        ];
        for (cookie, name, path) in dots.into_iter().filter(|(c, _, _)| *c > a.cookie) {
            // `.` is the directory as served with this snapshot.
            let attributes = if path == dir {
                Some(fattr3(fsid, &path, &attr))
            } else {
                self.export
                    .stat(&path)
                    .ok()
                    .map(|at| fattr3(fsid, &path, &at))
            };
            let fh = attributes
                .as_ref()
                .and_then(|_| self.export.handle_for(&path))
                .map(|fh| fh.encode());
            if !w.push(
                path_hash(&path),
                name,
                cookie,
                attributes.as_ref(),
                fh.as_deref(),
            ) {
                eof = false;
                break;
            }
        }
        if eof {
            let mut children = Children::of(&dir);
            let from = snap.position_after(a.cookie);
            for ((cookie, name), i) in snap.entries_from(from).zip(from..) {
                if validate_name(name).is_err() {
                    continue;
                }
                let child = children.entry(name);
                // Attributes come from the snapshot. An entry it holds none for (a directory
                // listed by name only, a stat that failed then) is stat'ed now. A directory's
                // times are the fingerprint last known of its listing (none is made here).
                let attributes = match snap.attr3(i) {
                    Some(kept) => {
                        let kept = match self.export.known_change(child.hash) {
                            Some(change) if kept.is_dir() => kept.with_change(change),
                            _ => *kept,
                        };
                        Some(kept.fattr3(fsid, child.hash))
                    }
                    None => RelPath::from_bytes(child.path).ok().and_then(|path| {
                        let at = self.export.stat_entry(&path, child.hash).ok()?;
                        Some(fattr3(fsid, &path, &at))
                    }),
                };
                let fh = attributes.as_ref().and(child.handle);
                if !w.push(child.hash, name, cookie, attributes.as_ref(), fh) {
                    eof = false;
                    break;
                }
                if fh.is_some() {
                    self.export.remember_child(&child);
                }
            }
        }
        if w.entries() == 0 && !eof {
            // Not even the first entry fits.
            w.cancel();
            let too_small = ReadDirPlus3ResFail { dir_attributes };
            return reply.results(&ReadDirPlus3Res::Fail(NfsStat3::TooSmall, too_small));
        }
        w.finish(eof);
    }

    fn fsstat(&self, a: FsStat3Args) -> FsStat3Res {
        let (path, attr) = match self.object(&a.fsroot) {
            Ok(v) => v,
            Err(s) => return FsStat3Res::Fail(s, FsStat3ResFail::default()),
        };
        let obj_attributes = self.post_op(&path, &attr);
        match self.export.backend().statfs() {
            Ok(s) => FsStat3Res::Ok(FsStat3ResOk {
                obj_attributes,
                tbytes: s.total_bytes,
                fbytes: s.free_bytes,
                abytes: s.avail_bytes,
                tfiles: s.total_files,
                ffiles: s.free_files,
                afiles: s.avail_files,
                invarsec: 0,
            }),
            Err(e) => FsStat3Res::Fail(nfsstat(&e), FsStat3ResFail { obj_attributes }),
        }
    }

    fn fsinfo(&self, a: FsInfo3Args) -> FsInfo3Res {
        let (path, attr) = match self.object(&a.fsroot) {
            Ok(v) => v,
            Err(s) => return FsInfo3Res::Fail(s, FsInfo3ResFail::default()),
        };
        FsInfo3Res::Ok(FsInfo3ResOk {
            obj_attributes: self.post_op(&path, &attr),
            rtmax: MAX_READ,
            rtpref: MAX_READ,
            rtmult: 4096,
            wtmax: MAX_READ,
            wtpref: MAX_READ,
            wtmult: 4096,
            dtpref: MAX_DIR_REPLY,
            maxfilesize: i64::MAX as u64,
            time_delta: NfsTime3 {
                seconds: 0,
                nseconds: 1,
            },
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
        })
    }

    fn pathconf(&self, a: PathConf3Args) -> PathConf3Res {
        match self.object(&a.object) {
            Ok((path, attr)) => PathConf3Res::Ok(PathConf3ResOk {
                obj_attributes: self.post_op(&path, &attr),
                linkmax: u32::MAX,
                name_max: mountshare_fs::MAX_NAME_LEN as u32,
                no_trunc: true,
                chown_restricted: true,
                case_insensitive: false,
                case_preserving: true,
            }),
            Err(s) => PathConf3Res::Fail(s, PathConf3ResFail::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procedure::Lane;
    use crate::reply::Status;
    use mountshare_proto::rpc::{decode_reply_header, ReplyBody};

    /// The status at the head of `results` of `procedure`, decoded whole as a client decodes
    /// them (a failure arm that does not decode, or bytes left over, fail the test).
    fn decoded_status(procedure: u32, results: &[u8]) -> Option<NfsStat3> {
        fn status<T: XdrDecode, F: XdrDecode>(b: &[u8]) -> Option<NfsStat3> {
            let (res, len) = mountshare_proto::xdr::decode_prefix::<NfsRes<T, F>>(b).ok()?;
            (len == b.len()).then(|| res.status())
        }
        match procedure {
            proc3::GETATTR => status::<GetAttr3ResOk, ()>(results),
            proc3::LOOKUP => status::<Lookup3ResOk, Lookup3ResFail>(results),
            proc3::ACCESS => status::<Access3ResOk, Access3ResFail>(results),
            proc3::READLINK => status::<ReadLink3ResOk, ReadLink3ResFail>(results),
            proc3::READ => status::<Read3ResOk, Read3ResFail>(results),
            proc3::READDIR => status::<ReadDir3ResOk, ReadDir3ResFail>(results),
            proc3::READDIRPLUS => status::<ReadDirPlus3ResOk, ReadDirPlus3ResFail>(results),
            proc3::FSSTAT => status::<FsStat3ResOk, FsStat3ResFail>(results),
            proc3::FSINFO => status::<FsInfo3ResOk, FsInfo3ResFail>(results),
            proc3::PATHCONF => status::<PathConf3ResOk, PathConf3ResFail>(results),
            _ => None,
        }
    }

    #[test]
    fn every_row_is_named_and_fails_as_its_procedure_at_the_deadline() {
        let mut reaching = Vec::new();
        for (number, row) in (0u32..).zip(PROCEDURES.iter()) {
            assert_eq!(Some(row.name), proc3::name(number));
            let Some(failed) = row.reaches_backend else {
                continue;
            };
            reaching.push(row.name);
            for status in [NfsStat3::Jukebox, NfsStat3::Stale] {
                let mut reply = Reply::new(9, true);
                failed(status, &mut reply);
                let framed = reply.finish();
                assert_eq!(framed.outcome.status, Status::Nfs(status), "{}", row.name);
                assert_eq!(framed.outcome.read_bytes, 0);
                let bytes = framed.to_vec();
                let body = bytes.get(4..).unwrap();
                let (xid, header, at) = decode_reply_header(body).unwrap();
                assert_eq!((xid, header), (9, ReplyBody::SUCCESS), "{}", row.name);
                let results = body.get(at..).unwrap();
                let decoded = decoded_status(number, results);
                assert_eq!(decoded, Some(status), "{}", row.name);
            }
        }
        assert_eq!(
            reaching,
            [
                "GETATTR",
                "LOOKUP",
                "ACCESS",
                "READLINK",
                "READ",
                "READDIR",
                "READDIRPLUS",
                "FSSTAT",
                "FSINFO",
                "PATHCONF"
            ]
        );
        let data: Vec<_> = PROCEDURES.iter().filter(|r| r.lane == Lane::Data).collect();
        assert!(matches!(data.as_slice(), [r] if r.name == "READ"));
    }
}
