//! What an NFS mount is made of: the server address, the export, and the NFS mount options.
//! `attach` mounts with them; `doctor` and `bench` parse the same `HOST[:PORT]` and export, and
//! `doctor server` prints the mount lines they make.
//!
//! The kernel is given everything it would otherwise ask rpcbind or mount.nfs for: the protocol,
//! the address and the port of both NFS and MOUNT (one TCP port on a mountshare server), so the
//! mount needs no helper binary and no portmapper round trip.

use std::net::{IpAddr, SocketAddr};

/// The NFS port when `--server` has none.
pub const DEFAULT_PORT: u16 = 2049;
/// Default `timeo`, in tenths of a second: the first RPC retransmission after 5 s.
pub const DEFAULT_TIMEO: u32 = 50;
/// Default `retrans`: with TCP's linear back-off (5 s, 10 s, 15 s) a soft mount returns EIO after
/// about 30 s against a dead server.
pub const DEFAULT_RETRANS: u32 = 2;
/// Default `lookupcache`: only names found are cached, so a name looked up before it existed is
/// asked of the server again at its next lookup instead of staying "not found".
pub const DEFAULT_LOOKUPCACHE: &str = "positive";
/// Default `acdirmin`, in seconds (the kernel's is 30).
pub const DEFAULT_ACDIRMIN: u32 = 1;
/// Default `acdirmax`, in seconds (the kernel's is 60): a directory's attributes, and so its
/// cached listing, are trusted for at most this long before the client asks again.
pub const DEFAULT_ACDIRMAX: u32 = 2;

/// Options that `attach` sets itself and a user may not override.
const RESERVED: &[&str] = &[
    "vers",
    "nfsvers",
    "proto",
    "mountproto",
    "addr",
    "mountaddr",
    "port",
    "mountport",
    "tcp",
    "udp",
    "clientaddr",
    "mounthost",
    "mountvers",
    "lock",
    "nolock",
];

/// A bad `--server`, `--export` or `--mount-options` value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("--server {0:?}: expected HOST or HOST:PORT (IPv6 as [ADDR]:PORT)")]
    BadServer(String),
    #[error("--export {0:?}: must be an absolute path")]
    BadExport(String),
    #[error("mount option {0:?} is set by attach itself and cannot be given")]
    Reserved(String),
    #[error("mount option {0:?} is malformed")]
    Malformed(String),
}

/// `HOST[:PORT]` as given on the command line; resolved again before every mount attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for ServerAddr {
    type Err = OptionsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || OptionsError::BadServer(s.to_owned());
        if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => DEFAULT_PORT,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            };
            return match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(_)) => Ok(Self {
                    host: host.to_owned(),
                    port,
                }),
                _ => Err(bad()),
            };
        }
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(Self {
                host: s.to_owned(),
                port: DEFAULT_PORT,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (s, DEFAULT_PORT),
        };
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !valid || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The per-mount flags (not file-system options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountFlags {
    pub read_only: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

/// The user-tunable part of the mount: flags and NFS options, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsOptions {
    pub flags: MountFlags,
    /// `soft` unless the user asked for `hard`.
    pub soft: bool,
    pub timeo: u32,
    pub retrans: u32,
    /// Other options passed to the kernel verbatim (`actimeo=1`, `rsize=1048576`, ...).
    pub extra: Vec<String>,
    /// MOUNT's port when it is not the NFS port (servers like nfs-ganesha or the kernel's nfsd);
    /// `None` for mountshare, which serves both on one port.
    pub mount_port: Option<u16>,
}

impl Default for NfsOptions {
    fn default() -> Self {
        Self {
            flags: MountFlags {
                read_only: true,
                nosuid: true,
                nodev: true,
                noexec: false,
            },
            soft: true,
            timeo: DEFAULT_TIMEO,
            retrans: DEFAULT_RETRANS,
            extra: Vec::new(),
            mount_port: None,
        }
    }
}

impl NfsOptions {
    /// Apply a comma-separated `--mount-options` string on top of the defaults.
    pub fn parse(user: &str) -> Result<Self, OptionsError> {
        let mut o = Self::default();
        for opt in user.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            if RESERVED.contains(&key) {
                return Err(OptionsError::Reserved(opt.to_owned()));
            }
            let num = || -> Result<u32, OptionsError> {
                value
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| OptionsError::Malformed(opt.to_owned()))
            };
            match (key, value) {
                // Their values decide which of the freshness defaults still apply.
                ("acdirmin" | "acdirmax" | "actimeo", _)
                    if value.and_then(|v| v.parse::<u32>().ok()).is_none() =>
                {
                    return Err(OptionsError::Malformed(opt.to_owned()))
                }
                ("ro", None) => o.flags.read_only = true,
                ("rw", None) => o.flags.read_only = false,
                ("suid", None) => o.flags.nosuid = false,
                ("nosuid", None) => o.flags.nosuid = true,
                ("dev", None) => o.flags.nodev = false,
                ("nodev", None) => o.flags.nodev = true,
                ("exec", None) => o.flags.noexec = false,
                ("noexec", None) => o.flags.noexec = true,
                ("soft", None) => o.soft = true,
                ("hard", None) => o.soft = false,
                ("timeo", _) => o.timeo = num()?,
                ("retrans", _) => o.retrans = num()?,
                _ if opt.contains(char::is_whitespace) || key.is_empty() => {
                    return Err(OptionsError::Malformed(opt.to_owned()))
                }
                _ => o.extra.push(opt.to_owned()),
            }
        }
        Ok(o)
    }

    /// The directory freshness options `attach` adds after its own: `lookupcache=positive`,
    /// `acdirmin=1` and `acdirmax=2`, minus every one the user's options replace.
    ///
    /// - `lookupcache=...` replaces ours.
    /// - `actimeo=N` and `noac` set both directory timeouts: neither of ours is added.
    /// - `acdirmin=N` replaces our `acdirmin`; our `acdirmax` stays unless it is below N.
    /// - `acdirmax=N` replaces our `acdirmax`; our `acdirmin` stays unless it is above N.
    ///
    /// So no option is given twice and the pair never contradicts itself; a timeout of ours that
    /// is dropped is the kernel's default (30 s and 60 s), so set both if you set one above ours.
    pub fn freshness(&self) -> Vec<String> {
        let mut lookupcache = false;
        let mut both = false;
        // `Some(None)`: given, with a value that is not a number (only possible when `extra`
        // was not made by `parse`); then the other one of ours is dropped as well.
        let mut min: Option<Option<u32>> = None;
        let mut max: Option<Option<u32>> = None;
        for opt in &self.extra {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            let n = || value.and_then(|v| v.parse::<u32>().ok());
            match key {
                "lookupcache" => lookupcache = true,
                "actimeo" | "noac" => both = true,
                "acdirmin" => min = Some(n()),
                "acdirmax" => max = Some(n()),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if !lookupcache {
            out.push(format!("lookupcache={DEFAULT_LOOKUPCACHE}"));
        }
        if !both {
            let keep_min =
                min.is_none() && max.is_none_or(|m| m.is_some_and(|m| DEFAULT_ACDIRMIN <= m));
            let keep_max =
                max.is_none() && min.is_none_or(|m| m.is_some_and(|m| m <= DEFAULT_ACDIRMAX));
            if keep_min {
                out.push(format!("acdirmin={DEFAULT_ACDIRMIN}"));
            }
            if keep_max {
                out.push(format!("acdirmax={DEFAULT_ACDIRMAX}"));
            }
        }
        out
    }
}

/// Everything needed for one mount attempt at one resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// `IP:/export` (`[IP]:/export` for IPv6), as mountinfo will show it.
    pub source: String,
    pub flags: MountFlags,
    /// NFS options as `key` or `key=value`, in the order given to the kernel.
    pub options: Vec<String>,
}

impl MountSpec {
    pub fn new(addr: SocketAddr, export: &str, o: &NfsOptions) -> Self {
        let ip = addr.ip();
        let port = addr.port();
        let mut options = vec![
            "vers=3".to_owned(),
            "proto=tcp".to_owned(),
            "mountproto=tcp".to_owned(),
            format!("addr={ip}"),
            format!("mountaddr={ip}"),
            format!("port={port}"),
            format!("mountport={}", o.mount_port.unwrap_or(port)),
            "nolock".to_owned(),
            // A fresh mount made to heal a dead one must not reuse the dead one's superblock.
            "nosharecache".to_owned(),
            if o.soft { "soft" } else { "hard" }.to_owned(),
            format!("timeo={}", o.timeo),
            format!("retrans={}", o.retrans),
        ];
        options.extend(o.freshness());
        options.extend(o.extra.iter().cloned());
        Self {
            source: source_for(ip, export),
            flags: o.flags,
            options,
        }
    }

    /// The legacy `mount(2)` data string.
    pub fn data_string(&self) -> String {
        self.options.join(",")
    }
}

/// The mount source for an address and export, exactly as the kernel shows it in mountinfo.
pub fn source_for(ip: IpAddr, export: &str) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{export}"),
        IpAddr::V6(v6) => format!("[{v6}]:{export}"),
    }
}

/// Validate `--export`: absolute, no whitespace, no trailing slash except for `/` itself.
pub fn normalize_export(export: &str) -> Result<String, OptionsError> {
    if !export.starts_with('/') || export.contains(char::is_whitespace) || export.contains(',') {
        return Err(OptionsError::BadExport(export.to_owned()));
    }
    let trimmed = export.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_separate_mount_port_is_passed_to_the_kernel() {
        let o = NfsOptions {
            mount_port: Some(20048),
            ..NfsOptions::default()
        };
        let spec = MountSpec::new("10.0.0.5:2049".parse().unwrap(), "/export", &o);
        let data = spec.data_string();
        assert!(data.contains("port=2049,mountport=20048"), "{data}");
    }

    #[test]
    fn server_forms() {
        let p = |s: &str| s.parse::<ServerAddr>();
        assert_eq!(
            p("nfs.media.svc").unwrap(),
            ServerAddr {
                host: "nfs.media.svc".into(),
                port: 2049
            }
        );
        assert_eq!(
            p("10.0.0.5:12049").unwrap(),
            ServerAddr {
                host: "10.0.0.5".into(),
                port: 12049
            }
        );
        assert_eq!(
            p("[fd00::1]:7").unwrap(),
            ServerAddr {
                host: "fd00::1".into(),
                port: 7
            }
        );
        assert_eq!(p("fd00::1").unwrap().port, 2049);
        assert!(p("host:").is_err());
        assert!(p("host:0").is_err());
        assert!(p("host:99999").is_err());
        assert!(p("").is_err());
        assert!(p("a b").is_err());
        assert!(p("[10.0.0.1]:5").is_err());
        assert_eq!(p("[fd00::1]:7").unwrap().to_string(), "[fd00::1]:7");
    }

    #[test]
    fn default_data_string_needs_no_portmapper_and_is_soft() {
        let addr: SocketAddr = "10.0.0.5:2049".parse().unwrap();
        let spec = MountSpec::new(addr, "/", &NfsOptions::default());
        assert_eq!(spec.source, "10.0.0.5:/");
        assert_eq!(
            spec.data_string(),
            "vers=3,proto=tcp,mountproto=tcp,addr=10.0.0.5,mountaddr=10.0.0.5,port=2049,\
             mountport=2049,nolock,nosharecache,soft,timeo=50,retrans=2,\
             lookupcache=positive,acdirmin=1,acdirmax=2"
        );
        assert!(spec.flags.read_only && spec.flags.nosuid && spec.flags.nodev);
    }

    #[test]
    fn user_options_override_defaults_and_reserved_ones_are_refused() {
        let o = NfsOptions::parse("hard,timeo=600,rw,actimeo=1").unwrap();
        assert!(!o.soft && !o.flags.read_only);
        assert_eq!(o.timeo, 600);
        assert_eq!(o.extra, vec!["actimeo=1".to_owned()]);
        let spec = MountSpec::new("[fd00::1]:2049".parse().unwrap(), "/media", &o);
        assert_eq!(spec.source, "[fd00::1]:/media");
        assert!(spec
            .data_string()
            .ends_with(",hard,timeo=600,retrans=2,lookupcache=positive,actimeo=1"));
        assert_eq!(
            NfsOptions::parse("port=111"),
            Err(OptionsError::Reserved("port=111".into()))
        );
        assert_eq!(
            NfsOptions::parse("vers=4"),
            Err(OptionsError::Reserved("vers=4".into()))
        );
        assert_eq!(
            NfsOptions::parse("timeo=x"),
            Err(OptionsError::Malformed("timeo=x".into()))
        );
    }

    /// The data string's options after `retrans=`: the freshness defaults left, then the user's.
    fn tail(user: &str) -> String {
        let o = NfsOptions::parse(user).unwrap();
        let data = MountSpec::new("10.0.0.5:2049".parse().unwrap(), "/", &o).data_string();
        let (_, tail) = data.split_once(",retrans=2").unwrap();
        tail.trim_start_matches(',').to_owned()
    }

    #[test]
    fn freshness_defaults_yield_to_the_users_options() {
        let ours = "lookupcache=positive,acdirmin=1,acdirmax=2";
        assert_eq!(tail(""), ours);
        // Options unrelated to freshness change nothing.
        assert_eq!(tail("rsize=1048576,ac"), format!("{ours},rsize=1048576,ac"));
        // lookupcache replaces ours, whatever its value.
        assert_eq!(
            tail("lookupcache=all"),
            "acdirmin=1,acdirmax=2,lookupcache=all"
        );
        assert_eq!(
            tail("lookupcache=none"),
            "acdirmin=1,acdirmax=2,lookupcache=none"
        );
        // actimeo and noac set both directory timeouts: neither of ours stays.
        assert_eq!(tail("actimeo=3"), "lookupcache=positive,actimeo=3");
        assert_eq!(tail("actimeo=0"), "lookupcache=positive,actimeo=0");
        assert_eq!(tail("noac"), "lookupcache=positive,noac");
        assert_eq!(tail("noac,lookupcache=none"), "noac,lookupcache=none");
        // acdirmin replaces ours; our acdirmax stays while it is not below it.
        assert_eq!(
            tail("acdirmin=2"),
            "lookupcache=positive,acdirmax=2,acdirmin=2"
        );
        assert_eq!(
            tail("acdirmin=0"),
            "lookupcache=positive,acdirmax=2,acdirmin=0"
        );
        assert_eq!(tail("acdirmin=5"), "lookupcache=positive,acdirmin=5");
        // acdirmax replaces ours; our acdirmin stays while it is not above it.
        assert_eq!(
            tail("acdirmax=10"),
            "lookupcache=positive,acdirmin=1,acdirmax=10"
        );
        assert_eq!(tail("acdirmax=0"), "lookupcache=positive,acdirmax=0");
        // Both given: both are the user's.
        assert_eq!(
            tail("acdirmax=10,acdirmin=5,lookupcache=all"),
            "acdirmax=10,acdirmin=5,lookupcache=all"
        );
        // No option appears twice, whatever the user gives.
        for user in [
            "",
            "acdirmin=5",
            "acdirmax=1",
            "actimeo=3",
            "noac",
            "lookupcache=all",
        ] {
            let t = tail(user);
            let keys: Vec<&str> = t.split(',').map(|o| o.split('=').next().unwrap()).collect();
            let mut unique = keys.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(keys.len(), unique.len(), "{user:?}: {t}");
        }
    }

    #[test]
    fn freshness_timeouts_must_be_numbers() {
        for bad in [
            "acdirmin=x",
            "acdirmax=",
            "actimeo",
            "acdirmin=-1",
            "actimeo=1s",
        ] {
            assert_eq!(
                NfsOptions::parse(bad),
                Err(OptionsError::Malformed(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn freshness_of_options_not_made_by_parse() {
        // A value that is not a number drops the other one of ours too: nothing to compare.
        let o = NfsOptions {
            extra: vec!["acdirmin=soon".into()],
            ..NfsOptions::default()
        };
        assert_eq!(o.freshness(), vec!["lookupcache=positive".to_owned()]);
    }

    #[test]
    fn exports_are_normalized() {
        assert_eq!(normalize_export("/").unwrap(), "/");
        assert_eq!(normalize_export("/media/").unwrap(), "/media");
        assert!(normalize_export("media").is_err());
    }
}
