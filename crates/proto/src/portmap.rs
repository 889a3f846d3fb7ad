//! PORTMAP version 2 (RFC 1833 section 3): how a client finds the port of the NFS and MOUNT
//! programs.

use crate::xdr_struct;

/// `program PMAP_PROG { version PMAP_VERS { ... } = 2; } = 100000;`
pub const PMAP_PROGRAM: u32 = 100000;
pub const PMAP_V2: u32 = 2;
/// The well-known portmapper port.
pub const PMAP_PORT: u16 = 111;

/// `const IPPROTO_TCP = 6;      /* protocol number for TCP/IP */`
pub const IPPROTO_TCP: u32 = 6;
/// `const IPPROTO_UDP = 17;     /* protocol number for UDP/IP */`
pub const IPPROTO_UDP: u32 = 17;

crate::rpc_procedures! {
    /// Procedure numbers, and their names.
    ///
    /// ```text
    /// void        PMAPPROC_NULL(void)         = 0;
    /// bool        PMAPPROC_SET(mapping)       = 1;
    /// bool        PMAPPROC_UNSET(mapping)     = 2;
    /// unsigned int PMAPPROC_GETPORT(mapping)  = 3;
    /// pmaplist    PMAPPROC_DUMP(void)         = 4;
    /// call_result PMAPPROC_CALLIT(call_args)  = 5;
    /// ```
    pub mod pmapproc {
        NULL = 0,
        SET = 1,
        UNSET = 2,
        GETPORT = 3,
        DUMP = 4,
        CALLIT = 5,
    }
}

/// Cap on DUMP entries when decoding.
pub const MAX_PMAP_LIST: u32 = 1024;
/// Cap on CALLIT argument and result bytes when decoding.
pub const MAX_CALLIT_BYTES: u32 = 64 * 1024;

/// ```text
/// struct mapping {
///    unsigned int prog;
///    unsigned int vers;
///    unsigned int prot;
///    unsigned int port;
/// };
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mapping {
    pub prog: u32,
    pub vers: u32,
    pub prot: u32,
    pub port: u32,
}
xdr_struct!(Mapping {
    prog,
    vers,
    prot,
    port
});

/// The DUMP result.
///
/// ```text
/// struct pmaplist {
///    mapping map;
///    pmaplist *next;
/// };
/// ```
/// DUMP returns `pmaplist *`, so on the wire this is a TRUE before every mapping and a FALSE at
/// the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PmapList(pub Vec<Mapping>);

xdr_struct!(PmapList(linked_list("pmaplist", MAX_PMAP_LIST)));

/// ```text
/// struct call_args {
///    unsigned int prog;
///    unsigned int vers;
///    unsigned int proc;
///    opaque args<>;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallArgs {
    pub prog: u32,
    pub vers: u32,
    pub procedure: u32,
    pub args: Vec<u8>,
}
xdr_struct!(CallArgs {
    prog,
    vers,
    procedure,
    args: opaque("call_args args", MAX_CALLIT_BYTES)
});

/// ```text
/// struct call_result {
///    unsigned int port;
///    opaque res<>;
/// };
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResult {
    pub port: u32,
    pub res: Vec<u8>,
}
xdr_struct!(CallResult {
    port,
    res: opaque("call_result res", MAX_CALLIT_BYTES)
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::{decode, to_bytes};

    #[test]
    fn procedure_names_are_indexed_by_number() {
        assert_eq!(
            pmapproc::NAMES,
            ["NULL", "SET", "UNSET", "GETPORT", "DUMP", "CALLIT"]
        );
        for (n, name) in pmapproc::NAMES.iter().enumerate() {
            assert_eq!(pmapproc::name(n as u32), Some(*name));
        }
        assert_eq!(pmapproc::name(6), None);
    }

    #[test]
    fn dump_list_round_trips() {
        let l = PmapList(vec![
            Mapping {
                prog: 100003,
                vers: 3,
                prot: IPPROTO_TCP,
                port: 2049,
            },
            Mapping {
                prog: 100005,
                vers: 3,
                prot: IPPROTO_TCP,
                port: 2049,
            },
        ]);
        let b = to_bytes(&l);
        assert_eq!(b.len(), 2 * (4 + 16) + 4);
        assert_eq!(decode::<PmapList>(&b), Ok(l));
    }
}
