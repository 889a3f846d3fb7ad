//! `NfsClient`: one typed method per NFSv3 procedure, plus helpers for walking paths, reading
//! whole files and paging through directories.

use mountshare_proto::nfs3::*;
use tokio::net::ToSocketAddrs;

use crate::conn::{ConnectOptions, RpcConnection};
use crate::error::{ClientError, Result};
use crate::program::program_client;

program_client! {
    /// An NFSv3 client over an [`RpcConnection`] (which it may share with a MOUNT or PORTMAP
    /// client: one port serves all three programs).
    NfsClient: NFS_PROGRAM, NFS_V3
}

macro_rules! procedures {
    ($($(#[$doc:meta])* $name:ident: $proc:ident($args:ty) -> $res:ty;)*) => {
        $(
            $(#[$doc])*
            pub async fn $name(&self, args: &$args) -> Result<$res> {
                self.call(proc3::$proc, args).await
            }
        )*
    };
}

impl NfsClient {
    pub async fn connect_with(addr: impl ToSocketAddrs, opts: ConnectOptions) -> Result<Self> {
        Ok(Self::new(RpcConnection::connect_with(addr, opts).await?))
    }

    procedures! {
        /// Procedure 1 (RFC 1813 section 3.3.1).
        getattr: GETATTR(GetAttr3Args) -> GetAttr3Res;
        /// Procedure 2 (section 3.3.2).
        setattr: SETATTR(SetAttr3Args) -> SetAttr3Res;
        /// Procedure 3 (section 3.3.3).
        lookup: LOOKUP(Lookup3Args) -> Lookup3Res;
        /// Procedure 4 (section 3.3.4).
        access: ACCESS(Access3Args) -> Access3Res;
        /// Procedure 5 (section 3.3.5).
        readlink: READLINK(ReadLink3Args) -> ReadLink3Res;
        /// Procedure 6 (section 3.3.6).
        read: READ(Read3Args) -> Read3Res;
        /// Procedure 7 (section 3.3.7).
        write: WRITE(Write3Args) -> Write3Res;
        /// Procedure 8 (section 3.3.8).
        create: CREATE(Create3Args) -> Create3Res;
        /// Procedure 9 (section 3.3.9).
        mkdir: MKDIR(Mkdir3Args) -> Mkdir3Res;
        /// Procedure 10 (section 3.3.10).
        symlink: SYMLINK(Symlink3Args) -> Symlink3Res;
        /// Procedure 11 (section 3.3.11).
        mknod: MKNOD(Mknod3Args) -> Mknod3Res;
        /// Procedure 12 (section 3.3.12).
        remove: REMOVE(Remove3Args) -> Remove3Res;
        /// Procedure 13 (section 3.3.13).
        rmdir: RMDIR(Rmdir3Args) -> Rmdir3Res;
        /// Procedure 14 (section 3.3.14).
        rename: RENAME(Rename3Args) -> Rename3Res;
        /// Procedure 15 (section 3.3.15).
        link: LINK(Link3Args) -> Link3Res;
        /// Procedure 16 (section 3.3.16).
        readdir: READDIR(ReadDir3Args) -> ReadDir3Res;
        /// Procedure 17 (section 3.3.17).
        readdirplus: READDIRPLUS(ReadDirPlus3Args) -> ReadDirPlus3Res;
        /// Procedure 18 (section 3.3.18).
        fsstat: FSSTAT(FsStat3Args) -> FsStat3Res;
        /// Procedure 19 (section 3.3.19).
        fsinfo: FSINFO(FsInfo3Args) -> FsInfo3Res;
        /// Procedure 20 (section 3.3.20).
        pathconf: PATHCONF(PathConf3Args) -> PathConf3Res;
        /// Procedure 21 (section 3.3.21).
        commit: COMMIT(Commit3Args) -> Commit3Res;
    }

    /// The attributes of `fh`; an NFS failure is [`ClientError::Nfs`].
    pub async fn getattr_of(&self, fh: &NfsFh3) -> Result<Fattr3> {
        let args = GetAttr3Args { object: fh.clone() };
        Ok(self.getattr(&args).await?.ok()?.obj_attributes)
    }

    /// Look up one name in `dir`.
    pub async fn lookup_name(&self, dir: &NfsFh3, name: &[u8]) -> Result<Lookup3ResOk> {
        let args = Lookup3Args {
            what: DirOpArgs3 {
                dir: dir.clone(),
                name: name.to_vec(),
            },
        };
        Ok(self.lookup(&args).await?.ok()?)
    }

    /// Walk a `/`-separated path from `root` with one LOOKUP per component (empty components
    /// are skipped, so "a//b/" is "a/b"; "." and ".." are sent as names, for the server to
    /// resolve). Returns the handle of the last component.
    pub async fn lookup_path(&self, root: &NfsFh3, path: &str) -> Result<NfsFh3> {
        let mut fh = root.clone();
        for name in path.split('/').filter(|c| !c.is_empty()) {
            fh = self.lookup_name(&fh, name.as_bytes()).await?.object;
        }
        Ok(fh)
    }

    /// Read the symlink `fh` and return its target.
    pub async fn readlink_of(&self, fh: &NfsFh3) -> Result<Vec<u8>> {
        let args = ReadLink3Args {
            symlink: fh.clone(),
        };
        Ok(self.readlink(&args).await?.ok()?.data)
    }

    /// Read a whole file with READs of [`MAX_DATA_LEN`] bytes, in order, until EOF.
    pub async fn read_all(&self, fh: &NfsFh3) -> Result<Vec<u8>> {
        self.read_all_chunked(fh, MAX_DATA_LEN).await
    }

    /// Read a whole file with READs of `chunk` bytes (at most [`MAX_DATA_LEN`]).
    pub async fn read_all_chunked(&self, fh: &NfsFh3, chunk: u32) -> Result<Vec<u8>> {
        let chunk = chunk.clamp(1, MAX_DATA_LEN);
        let mut out = Vec::new();
        loop {
            let args = Read3Args {
                file: fh.clone(),
                offset: out.len() as u64,
                count: chunk,
            };
            let ok = self.read(&args).await?.ok()?;
            if ok.data.len() != ok.count as usize {
                return Err(ClientError::Protocol(format!(
                    "READ count {} but {} data bytes",
                    ok.count,
                    ok.data.len()
                )));
            }
            if ok.data.len() > chunk as usize {
                return Err(ClientError::Protocol(format!(
                    "READ returned {} bytes for a count of {chunk}",
                    ok.data.len()
                )));
            }
            let got = ok.data.len();
            out.extend_from_slice(&ok.data);
            if ok.eof {
                return Ok(out);
            }
            if got == 0 {
                return Err(ClientError::Protocol(
                    "READ returned no data and no EOF".into(),
                ));
            }
        }
    }

    /// Page through `dir` with READDIRPLUS; see [`ReadDirPlusPager`].
    pub fn readdirplus_pager(&self, dir: &NfsFh3) -> ReadDirPlusPager<'_> {
        ReadDirPlusPager {
            client: self,
            dir: dir.clone(),
            cookie: 0,
            cookieverf: [0; NFS3_COOKIEVERFSIZE],
            dircount: 32 * 1024,
            maxcount: 128 * 1024,
            eof: false,
            calls: 0,
            buffered: std::collections::VecDeque::new(),
        }
    }

    /// Every entry of `dir`, from as many READDIRPLUS calls as it takes.
    pub async fn readdirplus_all(&self, dir: &NfsFh3) -> Result<Vec<EntryPlus3>> {
        let mut pager = self.readdirplus_pager(dir);
        let mut all = Vec::new();
        while let Some(page) = pager.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Every entry of `dir`, from as many READDIR calls as it takes (`count` bytes each).
    pub async fn readdir_all(&self, dir: &NfsFh3, count: u32) -> Result<Vec<Entry3>> {
        let mut cookie = 0;
        let mut cookieverf = [0; NFS3_COOKIEVERFSIZE];
        let mut all = Vec::new();
        loop {
            let args = ReadDir3Args {
                dir: dir.clone(),
                cookie,
                cookieverf,
                count,
            };
            let ok = self.readdir(&args).await?.ok()?;
            cookieverf = ok.cookieverf;
            let n = ok.reply.entries.len();
            if let Some(last) = ok.reply.entries.last() {
                cookie = last.cookie;
            }
            all.extend(ok.reply.entries);
            if ok.reply.eof {
                return Ok(all);
            }
            if n == 0 {
                return Err(ClientError::Protocol(
                    "READDIR returned no entries and no EOF".into(),
                ));
            }
        }
    }
}

/// Pages through a directory with READDIRPLUS, carrying the cookie of the last entry and the
/// verifier the server returned into each next call (RFC 1813 section 3.3.17). Entries come
/// out exactly as the server sent them: nothing is deduplicated, so tests can check that.
#[derive(Debug)]
pub struct ReadDirPlusPager<'a> {
    client: &'a NfsClient,
    dir: NfsFh3,
    cookie: Cookie3,
    cookieverf: CookieVerf3,
    /// `dircount` of each call.
    pub dircount: u32,
    /// `maxcount` of each call.
    pub maxcount: u32,
    eof: bool,
    calls: usize,
    buffered: std::collections::VecDeque<EntryPlus3>,
}

impl ReadDirPlusPager<'_> {
    /// Set `dircount` and `maxcount` for the calls still to come.
    pub fn with_counts(mut self, dircount: u32, maxcount: u32) -> Self {
        self.dircount = dircount;
        self.maxcount = maxcount;
        self
    }

    /// READDIRPLUS calls made so far.
    pub fn calls(&self) -> usize {
        self.calls
    }

    /// The verifier from the last reply.
    pub fn cookieverf(&self) -> CookieVerf3 {
        self.cookieverf
    }

    /// The next page of entries, or `None` after the page that carried EOF. A failure status
    /// is [`ClientError::Nfs`].
    pub async fn next_page(&mut self) -> Result<Option<Vec<EntryPlus3>>> {
        if self.eof {
            return Ok(None);
        }
        let args = ReadDirPlus3Args {
            dir: self.dir.clone(),
            cookie: self.cookie,
            cookieverf: self.cookieverf,
            dircount: self.dircount,
            maxcount: self.maxcount,
        };
        self.calls += 1;
        let ok = self.client.readdirplus(&args).await?.ok()?;
        self.cookieverf = ok.cookieverf;
        self.eof = ok.reply.eof;
        match ok.reply.entries.last() {
            Some(last) => self.cookie = last.cookie,
            None if !self.eof => {
                return Err(ClientError::Protocol(
                    "READDIRPLUS returned no entries and no EOF".into(),
                ))
            }
            None => {}
        }
        Ok(Some(ok.reply.entries))
    }

    /// The next entry, fetching pages as needed; `None` at the end of the directory.
    pub async fn next_entry(&mut self) -> Result<Option<EntryPlus3>> {
        loop {
            if let Some(e) = self.buffered.pop_front() {
                return Ok(Some(e));
            }
            match self.next_page().await? {
                Some(page) => self.buffered.extend(page),
                None => return Ok(None),
            }
        }
    }
}
