//! The client allow-list (`--allow CIDR`): which addresses may connect and mount. Parsing is
//! strict, so that a typo on the command line is an error rather than a wider or narrower list
//! than meant. Depends on no other module of this crate.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A block of addresses: `10.42.0.0/16`, `fd00::/8`, or one address (`192.168.1.7`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The first address of the block (every bit past the prefix is zero).
    base: IpAddr,
    prefix: u8,
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?}: not an IPv4 or IPv6 address")]
    Address(String),
    #[error("{0:?}: the prefix length must be a number from 0 to {1}")]
    Prefix(String, u8),
    #[error("{given:?}: bits are set past the /{prefix} prefix; did you mean {meant}?")]
    HostBits {
        given: String,
        prefix: u8,
        meant: Cidr,
    },
}

impl Cidr {
    /// The block of `prefix` leading bits of `base`; `None` if `prefix` is too long for its
    /// family or `base` has bits set past it.
    pub fn new(base: IpAddr, prefix: u8) -> Option<Cidr> {
        let cidr = Cidr { base, prefix };
        (prefix <= max_prefix(&base) && masked(base, prefix) == base).then_some(cidr)
    }

    /// Whether `ip` is in this block. An IPv4 address seen as IPv6 (`::ffff:10.42.0.5`, as on a
    /// dual-stack listener) is taken as the IPv4 address it is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.base.is_ipv4() && masked(ip, self.prefix) == self.base
    }
}

fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with every bit past the first `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `ADDR/PREFIX` or `ADDR` alone (the one address). The address is as the standard library
    /// reads it (no leading zeros in IPv4 octets, no zone); the prefix is decimal digits only,
    /// without a leading zero; bits past the prefix must be zero.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let base: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(text.to_string()))?;
        let max = max_prefix(&base);
        let prefix = match prefix {
            None => max,
            Some(p) => {
                parse_prefix(p, max).ok_or_else(|| CidrError::Prefix(text.to_string(), max))?
            }
        };
        Cidr::new(base, prefix).ok_or_else(|| CidrError::HostBits {
            given: text.to_string(),
            prefix,
            meant: Cidr {
                base: masked(base, prefix),
                prefix,
            },
        })
    }
}

fn parse_prefix(p: &str, max: u8) -> Option<u8> {
    let digits_only = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (p.len() > 1 && p.starts_with('0')) || p.len() > 3 {
        return None;
    }
    p.parse::<u8>().ok().filter(|&n| n <= max)
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// The addresses allowed to connect and mount. Empty: everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    blocks: Vec<Cidr>,
}

impl AllowList {
    /// Everyone.
    pub fn everyone() -> AllowList {
        AllowList::default()
    }

    /// Only addresses in one of `blocks`; no blocks at all is everyone.
    pub fn only(blocks: Vec<Cidr>) -> AllowList {
        AllowList { blocks }
    }

    /// Whether `ip` may connect and mount.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.blocks.is_empty() || self.blocks.iter().any(|b| b.contains(ip))
    }

    /// Whether everyone is allowed.
    pub fn is_everyone(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The blocks allowed (empty: everyone).
    pub fn blocks(&self) -> &[Cidr] {
        &self.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_blocks_hold_what_they_should() {
        let pods = cidr("10.42.0.0/16");
        assert!(pods.contains(ip("10.42.0.0")));
        assert!(pods.contains(ip("10.42.3.17")));
        assert!(pods.contains(ip("10.42.255.255")));
        assert!(!pods.contains(ip("10.43.0.1")));
        assert!(!pods.contains(ip("10.41.255.255")));
        assert!(!pods.contains(ip("::1")), "another family");
        let all = cidr("0.0.0.0/0");
        assert!(all.contains(ip("1.2.3.4")) && all.contains(ip("255.255.255.255")));
        assert!(!all.contains(ip("fe80::1")));
        let one = cidr("192.168.1.7");
        assert_eq!(one.to_string(), "192.168.1.7/32");
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.6")));
        let odd = cidr("172.16.0.0/12");
        assert!(odd.contains(ip("172.31.255.1")) && !odd.contains(ip("172.32.0.1")));
    }

    #[test]
    fn ipv6_blocks_and_mapped_ipv4() {
        let ula = cidr("fd00::/8");
        assert!(ula.contains(ip("fd12:3456::1")));
        assert!(!ula.contains(ip("fe80::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        let host = cidr("2001:db8::1/128");
        assert!(host.contains(ip("2001:db8::1")) && !host.contains(ip("2001:db8::2")));
        assert!(cidr("2001:db8::/127").contains(ip("2001:db8::1")));
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
        assert!(cidr("10.42.0.0/16").contains(ip("::ffff:10.42.1.2")));
        assert!(!cidr("10.42.0.0/16").contains(ip("::ffff:10.43.1.2")));
    }

    #[test]
    fn sloppy_text_is_refused() {
        for bad in [
            "",
            "/8",
            "10.42.0.0/",
            "10.42.0.0/33",
            "10.42.0.0/-1",
            "10.42.0.0/+16",
            "10.42.0.0/016",
            "10.42.0.0/16/8",
            "10.42.0.0 /16",
            " 10.42.0.0/16",
            "10.42.0/16",
            "010.42.0.0/16",
            "10.42.0.0.0/16",
            "256.0.0.0/8",
            "::/129",
            "fe80::1%eth0/64",
            "[::1]/128",
            "10.42.0.0/1000",
            "example.com/24",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn host_bits_past_the_prefix_are_an_error_that_says_what_was_meant() {
        let err = "10.42.1.0/16".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"10.42.1.0/16\": bits are set past the /16 prefix; did you mean 10.42.0.0/16?"
        );
        assert!("fd00::1/8".parse::<Cidr>().is_err());
        assert!(Cidr::new(ip("10.0.0.1"), 8).is_none());
        assert!(Cidr::new(ip("10.0.0.0"), 33).is_none());
    }

    #[test]
    fn an_empty_list_is_everyone_and_a_list_is_only_its_blocks() {
        assert!(AllowList::everyone().allows(ip("203.0.113.9")));
        let k3s = AllowList::only(vec![cidr("10.42.0.0/16"), cidr("192.168.1.0/24")]);
        assert!(k3s.allows(ip("10.42.7.0")));
        assert!(k3s.allows(ip("192.168.1.20")));
        assert!(!k3s.allows(ip("127.0.0.1")));
        assert!(!k3s.allows(ip("10.43.0.10")));
    }
}
