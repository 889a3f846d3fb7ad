//! ONC-RPC version 2 message headers (RFC 5531): calls, replies and AUTH_SYS credentials.

use bytes::{BufMut, BytesMut};

use crate::xdr::{put_opaque_var, XdrDecode, XdrEncode, XdrError, XdrReader};
use crate::{xdr_enum, xdr_struct};

/// Defines the procedure numbers of an RPC program as a module of `u32` constants, with each
/// procedure's name as its RFC spells it (the constant's own name): `NAMES`, indexed by
/// procedure number, and `name(procedure)`. The numbers must run from 0 with no gap (a test of
/// each program checks it).
#[macro_export]
#[doc(hidden)]
macro_rules! rpc_procedures {
    ($(#[$meta:meta])* $vis:vis mod $module:ident { $($(#[$pmeta:meta])* $proc:ident = $num:literal),* $(,)? }) => {
        $(#[$meta])*
        $vis mod $module {
            $($(#[$pmeta])* pub const $proc: u32 = $num;)*

            /// Every procedure's name as the RFC spells it, indexed by procedure number.
            pub const NAMES: [&str; [$($num),*].len()] = [$(stringify!($proc)),*];

            /// The name of `procedure` as the RFC spells it, if the program defines one.
            pub const fn name(procedure: u32) -> Option<&'static str> {
                match procedure {
                    $($num => Some(stringify!($proc)),)*
                    _ => None,
                }
            }
        }
    };
}

/// The only RPC protocol version (RFC 5531 section 9).
pub const RPC_VERSION: u32 = 2;

/// `enum msg_type { CALL = 0, REPLY = 1 };`
pub const MSG_CALL: u32 = 0;
pub const MSG_REPLY: u32 = 1;

/// `enum reply_stat { MSG_ACCEPTED = 0, MSG_DENIED = 1 };`
pub const MSG_ACCEPTED: u32 = 0;
pub const MSG_DENIED: u32 = 1;

/// Authentication flavors (RFC 5531 section 8.2 and appendix A).
pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;
pub const AUTH_SHORT: u32 = 2;
pub const AUTH_DH: u32 = 3;
pub const RPCSEC_GSS: u32 = 6;

/// `opaque body<400>` in `opaque_auth` (RFC 5531 section 8.2).
pub const MAX_AUTH_BYTES: u32 = 400;
/// `string machinename<255>` in `authsys_parms` (RFC 5531 appendix A).
pub const MAX_MACHINE_NAME: u32 = 255;
/// `unsigned int gids<16>` in `authsys_parms`.
pub const MAX_AUTH_GIDS: u32 = 16;

/// ```text
/// struct opaque_auth {
///    auth_flavor flavor;
///    opaque body<400>;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueAuth {
    pub flavor: u32,
    pub body: Vec<u8>,
}

xdr_struct!(OpaqueAuth {
    flavor,
    body: opaque("opaque_auth body", MAX_AUTH_BYTES),
});

impl OpaqueAuth {
    /// AUTH_NONE with an empty body.
    pub fn none() -> Self {
        Self {
            flavor: AUTH_NONE,
            body: Vec::new(),
        }
    }

    /// AUTH_SYS carrying `parms`.
    pub fn sys(parms: &AuthSys) -> Self {
        Self {
            flavor: AUTH_SYS,
            body: crate::xdr::to_bytes(parms).to_vec(),
        }
    }

    /// The AUTH_SYS parameters, if this is an AUTH_SYS credential whose body parses.
    pub fn as_auth_sys(&self) -> Option<Result<AuthSys, XdrError>> {
        (self.flavor == AUTH_SYS).then(|| crate::xdr::decode(&self.body))
    }
}

/// ```text
/// struct authsys_parms {
///    unsigned int stamp;
///    string machinename<255>;
///    unsigned int uid;
///    unsigned int gid;
///    unsigned int gids<16>;
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSys {
    pub stamp: u32,
    pub machinename: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

impl XdrEncode for AuthSys {
    fn encode(&self, out: &mut BytesMut) {
        self.stamp.encode(out);
        put_opaque_var(out, &self.machinename);
        self.uid.encode(out);
        self.gid.encode(out);
        crate::xdr::put_list(out, &self.gids, |o, g| g.encode(o));
    }
}

impl XdrDecode for AuthSys {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(Self {
            stamp: r.get_u32()?,
            machinename: r.get_string("machinename", MAX_MACHINE_NAME)?.to_vec(),
            uid: r.get_u32()?,
            gid: r.get_u32()?,
            gids: r.get_list("gids", MAX_AUTH_GIDS, |r| r.get_u32())?,
        })
    }
}

/// A decoded call header. Named per RFC 5531 `call_body`; `procedure` is the RFC's `proc`
/// (a reserved word in Rust).
///
/// ```text
/// struct call_body {
///    unsigned int rpcvers;       /* must be equal to two (2) */
///    unsigned int prog;
///    unsigned int vers;
///    unsigned int proc;
///    opaque_auth cred;
///    opaque_auth verf;
///    /* procedure-specific parameters start here */
/// };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCall {
    pub xid: u32,
    pub prog: u32,
    pub vers: u32,
    pub procedure: u32,
    pub cred: OpaqueAuth,
    pub verf: OpaqueAuth,
}

xdr_enum! {
    /// ```text
    /// enum auth_stat {
    ///    AUTH_OK           = 0,  /* success                        */
    ///    AUTH_BADCRED      = 1,  /* bad credential (seal broken)   */
    ///    AUTH_REJECTEDCRED = 2,  /* client must begin new session  */
    ///    AUTH_BADVERF      = 3,  /* bad verifier (seal broken)     */
    ///    AUTH_REJECTEDVERF = 4,  /* verifier expired or replayed   */
    ///    AUTH_TOOWEAK      = 5,  /* rejected for security reasons  */
    ///    AUTH_INVALIDRESP  = 6,  /* bogus response verifier        */
    ///    AUTH_FAILED       = 7,  /* reason unknown                 */
    ///    AUTH_KERB_GENERIC = 8,  AUTH_TIMEEXPIRE = 9, AUTH_TKT_FILE = 10,
    ///    AUTH_DECODE = 11, AUTH_NET_ADDR = 12,
    ///    RPCSEC_GSS_CREDPROBLEM = 13, RPCSEC_GSS_CTXPROBLEM = 14
    /// };
    /// ```
    pub enum AuthStat("auth_stat") {
        Ok = 0,
        BadCred = 1,
        RejectedCred = 2,
        BadVerf = 3,
        RejectedVerf = 4,
        TooWeak = 5,
        InvalidResp = 6,
        Failed = 7,
        KerbGeneric = 8,
        TimeExpire = 9,
        TktFile = 10,
        Decode = 11,
        NetAddr = 12,
        GssCredProblem = 13,
        GssCtxProblem = 14,
    }
}

/// The outcome of an accepted call (RFC 5531 section 9, `accepted_reply`).
///
/// ```text
/// enum accept_stat {
///    SUCCESS       = 0, /* RPC executed successfully       */
///    PROG_UNAVAIL  = 1, /* remote hasn't exported program  */
///    PROG_MISMATCH = 2, /* remote can't support version #  */
///    PROC_UNAVAIL  = 3, /* program can't support procedure */
///    GARBAGE_ARGS  = 4, /* procedure can't decode params   */
///    SYSTEM_ERR    = 5  /* e.g. memory allocation failure  */
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptStat {
    /// Procedure results follow the header.
    Success,
    ProgUnavail,
    ProgMismatch {
        low: u32,
        high: u32,
    },
    ProcUnavail,
    GarbageArgs,
    SystemErr,
}

impl AcceptStat {
    /// The `accept_stat` wire value.
    pub const fn code(self) -> u32 {
        match self {
            AcceptStat::Success => 0,
            AcceptStat::ProgUnavail => 1,
            AcceptStat::ProgMismatch { .. } => 2,
            AcceptStat::ProcUnavail => 3,
            AcceptStat::GarbageArgs => 4,
            AcceptStat::SystemErr => 5,
        }
    }

    /// The name RFC 5531 gives it: `SUCCESS`, `PROG_UNAVAIL`, ...
    pub const fn name(self) -> &'static str {
        match self {
            AcceptStat::Success => "SUCCESS",
            AcceptStat::ProgUnavail => "PROG_UNAVAIL",
            AcceptStat::ProgMismatch { .. } => "PROG_MISMATCH",
            AcceptStat::ProcUnavail => "PROC_UNAVAIL",
            AcceptStat::GarbageArgs => "GARBAGE_ARGS",
            AcceptStat::SystemErr => "SYSTEM_ERR",
        }
    }
}

/// Why a call was refused (RFC 5531 section 9, `rejected_reply`).
///
/// ```text
/// enum reject_stat {
///    RPC_MISMATCH = 0, /* RPC version number != 2          */
///    AUTH_ERROR = 1    /* remote can't authenticate caller */
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectStat {
    RpcMismatch { low: u32, high: u32 },
    AuthError(AuthStat),
}

/// The body of a reply message. Accepted replies are encoded with an AUTH_NONE verifier, and the
/// verifier of a decoded reply is checked for size and then dropped: this project only speaks
/// AUTH_NONE and AUTH_SYS, whose reply verifiers carry nothing.
///
/// ```text
/// union reply_body switch (reply_stat stat) {
/// case MSG_ACCEPTED:
///    accepted_reply areply;
/// case MSG_DENIED:
///    rejected_reply rreply;
/// } reply;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyBody {
    Accepted(AcceptStat),
    Denied(RejectStat),
}

impl RejectStat {
    /// The `reject_stat` wire value.
    pub const fn code(self) -> u32 {
        match self {
            RejectStat::RpcMismatch { .. } => 0,
            RejectStat::AuthError(_) => 1,
        }
    }

    /// The name RFC 5531 gives it: `RPC_MISMATCH` or `AUTH_ERROR`.
    pub const fn name(self) -> &'static str {
        match self {
            RejectStat::RpcMismatch { .. } => "RPC_MISMATCH",
            RejectStat::AuthError(_) => "AUTH_ERROR",
        }
    }
}

impl ReplyBody {
    pub const SUCCESS: ReplyBody = ReplyBody::Accepted(AcceptStat::Success);

    /// The name RFC 5531 gives its `accept_stat` or `reject_stat`.
    pub const fn name(self) -> &'static str {
        match self {
            ReplyBody::Accepted(stat) => stat.name(),
            ReplyBody::Denied(stat) => stat.name(),
        }
    }
}

/// Why a call header could not be dispatched, and what the server should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Not a call, or a header too malformed to trust even its xid: drop the record (or close
    /// the connection; RFC 5531 leaves the choice to the server).
    #[error("undecodable RPC call: {0}")]
    Garbage(XdrError),
    /// `rpcvers` is not 2: reply `RPC_MISMATCH { low: 2, high: 2 }` with this xid.
    #[error("RPC version {rpcvers} not supported (xid {xid:#x})")]
    RpcMismatch { xid: u32, rpcvers: u32 },
    /// The credential or verifier is malformed: reply `AUTH_ERROR(stat)` with this xid.
    #[error("bad RPC authentication {stat:?} (xid {xid:#x})")]
    Auth { xid: u32, stat: AuthStat },
}

impl CallError {
    /// The reply the server should send, if any: `(xid, body)`.
    pub fn reply(&self) -> Option<(u32, ReplyBody)> {
        match *self {
            CallError::Garbage(_) => None,
            CallError::RpcMismatch { xid, .. } => Some((
                xid,
                ReplyBody::Denied(RejectStat::RpcMismatch {
                    low: RPC_VERSION,
                    high: RPC_VERSION,
                }),
            )),
            CallError::Auth { xid, stat } => {
                Some((xid, ReplyBody::Denied(RejectStat::AuthError(stat))))
            }
        }
    }
}

/// Decode an RPC call header from one record. Returns the call and the offset at which the
/// procedure arguments start.
///
/// An AUTH_SYS credential must parse as `authsys_parms`; other flavors are passed through for
/// the server to accept or refuse.
pub fn decode_call(buf: &[u8]) -> Result<(RpcCall, usize), CallError> {
    let mut r = XdrReader::new(buf);
    let xid = r.get_u32().map_err(CallError::Garbage)?;
    let mtype = r.get_u32().map_err(CallError::Garbage)?;
    if mtype != MSG_CALL {
        return Err(CallError::Garbage(XdrError::InvalidDiscriminant {
            what: "msg_type",
            value: mtype,
        }));
    }
    let rpcvers = r.get_u32().map_err(CallError::Garbage)?;
    if rpcvers != RPC_VERSION {
        // The rest of the header may have another layout: only the xid is trusted.
        return Err(CallError::RpcMismatch { xid, rpcvers });
    }
    let prog = r.get_u32().map_err(CallError::Garbage)?;
    let vers = r.get_u32().map_err(CallError::Garbage)?;
    let procedure = r.get_u32().map_err(CallError::Garbage)?;
    let bad = |stat| CallError::Auth { xid, stat };
    let cred = OpaqueAuth::decode(&mut r).map_err(|_| bad(AuthStat::BadCred))?;
    if let Some(Err(_)) = cred.as_auth_sys() {
        return Err(bad(AuthStat::BadCred));
    }
    let verf = OpaqueAuth::decode(&mut r).map_err(|_| bad(AuthStat::BadVerf))?;
    let call = RpcCall {
        xid,
        prog,
        vers,
        procedure,
        cred,
        verf,
    };
    Ok((call, r.position()))
}

/// Encode a call header; the caller appends the procedure arguments. The verifier is AUTH_NONE,
/// as for every flavor this project uses.
pub fn encode_call_header(
    out: &mut BytesMut,
    xid: u32,
    prog: u32,
    vers: u32,
    procedure: u32,
    cred: &OpaqueAuth,
) {
    out.put_u32(xid);
    out.put_u32(MSG_CALL);
    out.put_u32(RPC_VERSION);
    out.put_u32(prog);
    out.put_u32(vers);
    out.put_u32(procedure);
    cred.encode(out);
    OpaqueAuth::none().encode(out);
}

/// Encode `call` as a header (with its own verifier); used by tests and tools that need to send
/// a precise header.
impl XdrEncode for RpcCall {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.xid);
        out.put_u32(MSG_CALL);
        out.put_u32(RPC_VERSION);
        out.put_u32(self.prog);
        out.put_u32(self.vers);
        out.put_u32(self.procedure);
        self.cred.encode(out);
        self.verf.encode(out);
    }
}

/// Encode a reply header. For `Accepted(Success)` the caller appends the procedure results.
///
/// ```text
/// struct accepted_reply {
///    opaque_auth verf;
///    union switch (accept_stat stat) {
///    case SUCCESS:
///       opaque results[0];
///    case PROG_MISMATCH:
///       struct { unsigned int low; unsigned int high; } mismatch_info;
///    default:
///       void;
///    } reply_data;
/// };
/// union rejected_reply switch (reject_stat stat) {
/// case RPC_MISMATCH:
///    struct { unsigned int low; unsigned int high; } mismatch_info;
/// case AUTH_ERROR:
///    auth_stat stat;
/// };
/// ```
pub fn encode_reply_header(out: &mut BytesMut, xid: u32, body: &ReplyBody) {
    out.put_u32(xid);
    out.put_u32(MSG_REPLY);
    match *body {
        ReplyBody::Accepted(stat) => {
            out.put_u32(MSG_ACCEPTED);
            OpaqueAuth::none().encode(out);
            out.put_u32(stat.code());
            if let AcceptStat::ProgMismatch { low, high } = stat {
                out.put_u32(low);
                out.put_u32(high);
            }
        }
        ReplyBody::Denied(stat) => {
            out.put_u32(MSG_DENIED);
            out.put_u32(stat.code());
            match stat {
                RejectStat::RpcMismatch { low, high } => {
                    out.put_u32(low);
                    out.put_u32(high);
                }
                RejectStat::AuthError(s) => s.encode(out),
            }
        }
    }
}

/// Decode a reply header. Returns the xid, the body and the offset of the procedure results
/// (meaningful for `Accepted(Success)`).
pub fn decode_reply_header(buf: &[u8]) -> Result<(u32, ReplyBody, usize), XdrError> {
    let mut r = XdrReader::new(buf);
    let xid = r.get_u32()?;
    let mtype = r.get_u32()?;
    if mtype != MSG_REPLY {
        return Err(XdrError::InvalidDiscriminant {
            what: "msg_type",
            value: mtype,
        });
    }
    let body = match r.get_u32()? {
        MSG_ACCEPTED => {
            let _verf = OpaqueAuth::decode(&mut r)?;
            let stat = match r.get_u32()? {
                0 => AcceptStat::Success,
                1 => AcceptStat::ProgUnavail,
                2 => AcceptStat::ProgMismatch {
                    low: r.get_u32()?,
                    high: r.get_u32()?,
                },
                3 => AcceptStat::ProcUnavail,
                4 => AcceptStat::GarbageArgs,
                5 => AcceptStat::SystemErr,
                value => {
                    return Err(XdrError::InvalidDiscriminant {
                        what: "accept_stat",
                        value,
                    })
                }
            };
            ReplyBody::Accepted(stat)
        }
        MSG_DENIED => {
            let stat = match r.get_u32()? {
                0 => RejectStat::RpcMismatch {
                    low: r.get_u32()?,
                    high: r.get_u32()?,
                },
                1 => RejectStat::AuthError(AuthStat::decode(&mut r)?),
                value => {
                    return Err(XdrError::InvalidDiscriminant {
                        what: "reject_stat",
                        value,
                    })
                }
            };
            ReplyBody::Denied(stat)
        }
        value => {
            return Err(XdrError::InvalidDiscriminant {
                what: "reply_stat",
                value,
            })
        }
    };
    Ok((xid, body, r.position()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(rpcvers: u32) -> BytesMut {
        let mut out = BytesMut::new();
        out.put_u32(7);
        out.put_u32(MSG_CALL);
        out.put_u32(rpcvers);
        out.put_u32(100003);
        out.put_u32(3);
        out.put_u32(0);
        out
    }

    #[test]
    fn call_round_trips_with_args_offset() {
        let cred = OpaqueAuth::sys(&AuthSys {
            stamp: 1,
            machinename: b"host".to_vec(),
            uid: 1000,
            gid: 1000,
            gids: vec![1, 2, 3],
        });
        let mut out = BytesMut::new();
        encode_call_header(&mut out, 42, 100003, 3, 6, &cred);
        let hdr_len = out.len();
        out.put_u32(0xdead_beef);
        let (call, off) = decode_call(&out).unwrap();
        assert_eq!(off, hdr_len);
        assert_eq!(call.xid, 42);
        assert_eq!(call.procedure, 6);
        assert_eq!(call.cred, cred);
        assert_eq!(call.verf, OpaqueAuth::none());
        assert_eq!(
            call.cred.as_auth_sys().unwrap().unwrap().gids,
            vec![1, 2, 3]
        );
    }

    #[test]
    fn wrong_rpc_version_asks_for_mismatch_reply() {
        let err = decode_call(&header(3)).unwrap_err();
        assert_eq!(err, CallError::RpcMismatch { xid: 7, rpcvers: 3 });
        assert_eq!(
            err.reply(),
            Some((
                7,
                ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 })
            ))
        );
    }

    #[test]
    fn oversized_credential_is_badcred() {
        let mut out = header(2);
        out.put_u32(AUTH_SYS);
        out.put_u32(401);
        out.put_bytes(0, 404);
        let err = decode_call(&out).unwrap_err();
        assert_eq!(
            err,
            CallError::Auth {
                xid: 7,
                stat: AuthStat::BadCred
            }
        );
    }

    #[test]
    fn auth_sys_with_too_many_gids_is_badcred() {
        let mut body = BytesMut::new();
        body.put_u32(0);
        put_opaque_var(&mut body, b"h");
        body.put_u32(0);
        body.put_u32(0);
        body.put_u32(17);
        body.put_bytes(0, 17 * 4);
        let mut out = header(2);
        OpaqueAuth {
            flavor: AUTH_SYS,
            body: body.to_vec(),
        }
        .encode(&mut out);
        OpaqueAuth::none().encode(&mut out);
        assert!(matches!(
            decode_call(&out),
            Err(CallError::Auth {
                stat: AuthStat::BadCred,
                ..
            })
        ));
    }

    #[test]
    fn a_reply_is_not_a_call() {
        let mut out = BytesMut::new();
        encode_reply_header(&mut out, 1, &ReplyBody::SUCCESS);
        assert!(matches!(decode_call(&out), Err(CallError::Garbage(_))));
        assert!(matches!(decode_call(&[0, 0]), Err(CallError::Garbage(_))));
    }

    #[test]
    fn reply_statuses_have_their_rfc_names() {
        let names: Vec<_> = [
            ReplyBody::SUCCESS,
            ReplyBody::Accepted(AcceptStat::ProgUnavail),
            ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 }),
            ReplyBody::Accepted(AcceptStat::ProcUnavail),
            ReplyBody::Accepted(AcceptStat::GarbageArgs),
            ReplyBody::Accepted(AcceptStat::SystemErr),
            ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 }),
            ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak)),
        ]
        .iter()
        .map(|b| b.name())
        .collect();
        assert_eq!(
            names,
            [
                "SUCCESS",
                "PROG_UNAVAIL",
                "PROG_MISMATCH",
                "PROC_UNAVAIL",
                "GARBAGE_ARGS",
                "SYSTEM_ERR",
                "RPC_MISMATCH",
                "AUTH_ERROR"
            ]
        );
    }

    #[test]
    fn reply_headers_round_trip() {
        let bodies = [
            ReplyBody::SUCCESS,
            ReplyBody::Accepted(AcceptStat::ProgUnavail),
            ReplyBody::Accepted(AcceptStat::ProcUnavail),
            ReplyBody::Accepted(AcceptStat::SystemErr),
            ReplyBody::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 }),
            ReplyBody::Accepted(AcceptStat::GarbageArgs),
            ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 }),
            ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak)),
        ];
        for body in bodies {
            let mut out = BytesMut::new();
            encode_reply_header(&mut out, 9, &body);
            let n = out.len();
            out.put_u32(5);
            assert_eq!(decode_reply_header(&out), Ok((9, body, n)));
        }
    }
}
