//! The row type of the procedure tables: one [`Procedure`] per procedure of a program, as the
//! Linux nfsd's `nfsd_procedures3[]`. Each program's table is in its module (`nfs`, `mount`,
//! `portmap`), indexed by procedure number; `dispatch` routes a call to its row, and every fact
//! about a procedure (its name, how it is decoded and answered, whether it waits on the backend,
//! what it answers when the backend is late, its lane) is read from that row.
use crate::auth::Creds;
use crate::export::Export;
use crate::reply::{decode_args, Reply, Results};
use mountshare_proto::nfs3::NfsStat3;
use mountshare_proto::rpc::AcceptStat;
use mountshare_proto::xdr::XdrDecode;
use std::net::SocketAddr;

/// What a procedure is called with besides its arguments.
pub(crate) struct Handler<'a> {
    pub export: &'a Export,
    pub creds: &'a Creds,
    pub peer: SocketAddr,
    /// The version of the program called (MOUNT serves two).
    pub vers: u32,
    /// READ may splice file pages into the socket (see `dispatch::CallCtx`).
    pub zero_copy: bool,
}

/// Decode the arguments and write the results; arguments that do not decode are
/// `Err(GARBAGE_ARGS)`, a procedure not served (in this version) `Err(PROC_UNAVAIL)`.
pub(crate) type Run = fn(&Handler<'_>, &[u8], &mut Reply) -> Result<(), AcceptStat>;

/// The results of a procedure failed with a status, and no attributes.
pub(crate) type Failed = fn(NfsStat3, &mut Reply);

/// Which of a connection's (and the server's) two bounds on calls being worked on a call waits
/// for: a READ stuck in the backend never holds a permit a GETATTR needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// READ.
    Data,
    /// Everything else.
    Meta,
}

/// One procedure of a program.
pub(crate) struct Procedure {
    /// The name its RFC gives it (from the proto crate): the `procedure` label of its metrics.
    pub name: &'static str,
    pub call: Run,
    /// Set for a procedure that may wait on the backend. Such a call has a deadline, joins an
    /// equal call already running (`stall`), and at the deadline is answered this, with
    /// NFS3ERR_JUKEBOX.
    pub reaches_backend: Option<Failed>,
    pub lane: Lane,
}

impl Procedure {
    /// Procedure `number` of a program whose procedures `names` names, answered by `call`
    /// without the backend.
    pub(crate) const fn local(names: &'static [&'static str], number: u32, call: Run) -> Self {
        Procedure {
            name: name_in(names, number),
            call,
            reaches_backend: None,
            lane: Lane::Meta,
        }
    }

    /// Procedure `number`, answered by `call`, which may wait on the backend; `failed` is
    /// what it answers when the backend is late.
    pub(crate) const fn backend(
        names: &'static [&'static str],
        number: u32,
        call: Run,
        failed: Failed,
    ) -> Self {
        Procedure {
            reaches_backend: Some(failed),
            ..Procedure::local(names, number, call)
        }
    }

    /// The same procedure, in the data lane.
    pub(crate) const fn data_lane(self) -> Self {
        Procedure {
            lane: Lane::Data,
            ..self
        }
    }
}

/// `names[number]`, or `other` (the label of what a table does not name) when there is none.
/// A loop, because this runs in constant evaluation.
const fn name_in(names: &'static [&'static str], number: u32) -> &'static str {
    let mut rest = names;
    let mut at = 0;
    while let [first, more @ ..] = rest {
        if at == number {
            return first;
        }
        rest = more;
        at += 1;
    }
    "other"
}

/// A `void` procedure (NULL): no arguments looked at, no results.
pub(crate) fn void(_: &Handler<'_>, _: &[u8], reply: &mut Reply) -> Result<(), AcceptStat> {
    reply.success();
    Ok(())
}

/// A procedure of the program that this server does not serve.
pub(crate) fn unavailable(_: &Handler<'_>, _: &[u8], _: &mut Reply) -> Result<(), AcceptStat> {
    Err(AcceptStat::ProcUnavail)
}

/// Decode `args` as an `A`, and reply with what `handle` makes of it.
pub(crate) fn answer<A: XdrDecode, R: Results>(
    args: &[u8],
    reply: &mut Reply,
    handle: impl FnOnce(A) -> R,
) -> Result<(), AcceptStat> {
    let a = decode_args(args)?;
    reply.results(&handle(a));
    Ok(())
}
