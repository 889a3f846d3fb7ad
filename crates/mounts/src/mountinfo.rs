//! Parsing `/proc/self/mountinfo`: the only source of truth for what is mounted at the target.
//!
//! Format (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT_POINT MOUNT_OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTS`.
//! The kernel escapes space, tab, newline and backslash in paths as `\ooo` (`\040`, `\011`, `\012`,
//! `\134`); see `mangle()` in fs/proc_namespace.c.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// A line of mountinfo that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mountinfo line {line}: {reason}")]
pub struct MountinfoError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// One optional field (between the mount options and the `-` separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionalField {
    /// `shared:N`: the mount is in peer group N; mounts made under it propagate to the peers.
    Shared(u64),
    /// `master:N`: the mount is a slave of peer group N (receives, never sends).
    Master(u64),
    /// `propagate_from:N`: the nearest dominant peer group the slave receives from.
    PropagateFrom(u64),
    /// `unbindable`.
    Unbindable,
    /// A field this parser does not know (the format allows new ones).
    Other(String),
}

/// One mount, as the kernel describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u64,
    pub parent_id: u64,
    pub major: u32,
    pub minor: u32,
    /// The directory of the file system that is the root of this mount (a bind mount shows the
    /// bound directory here, e.g. `/var/lib/x` for a hostPath).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub mount_options: String,
    pub optional: Vec<OptionalField>,
    pub fstype: String,
    /// The mount source (for NFS: `HOST:/export`), unescaped.
    pub source: String,
    pub super_options: String,
}

impl MountEntry {
    /// The peer group when the mount is shared: mounts made on it propagate to the host.
    pub fn shared_group(&self) -> Option<u64> {
        self.optional.iter().find_map(|f| match f {
            OptionalField::Shared(n) => Some(*n),
            _ => None,
        })
    }

    /// True for `nfs` and `nfs4` mounts.
    pub fn is_nfs(&self) -> bool {
        self.fstype == "nfs" || self.fstype == "nfs4"
    }

    /// True for a FUSE file system: `fuse`, `fuseblk`, or either with a subtype (`fuse.rclone`,
    /// `fuseblk.ntfs`). Never `fusectl`, the control file system of FUSE connections. This is
    /// the one place that decides it ([`is_fuse_type`]).
    pub fn is_fuse(&self) -> bool {
        is_fuse_type(&self.fstype)
    }

    /// A short human description of the propagation, for log lines.
    pub fn propagation(&self) -> &'static str {
        let has = |want: fn(&OptionalField) -> bool| self.optional.iter().any(want);
        if has(|f| matches!(f, OptionalField::Shared(_))) {
            "shared"
        } else if has(|f| matches!(f, OptionalField::Master(_))) {
            "slave"
        } else if has(|f| matches!(f, OptionalField::Unbindable)) {
            "unbindable"
        } else {
            "private"
        }
    }
}

/// Whether a mountinfo file-system type names FUSE, as [`MountEntry::is_fuse`] says. A FUSE
/// daemon names its subtype after a dot (`fuse.rclone`); as root, a daemon that calls mount(2)
/// itself shows as plain `fuse`.
pub fn is_fuse_type(fstype: &str) -> bool {
    let base = fstype.split_once('.').map_or(fstype, |(base, _)| base);
    base == "fuse" || base == "fuseblk"
}

/// Decode the kernel's `\ooo` escapes. A backslash not followed by three octal digits is kept as is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let b = field[i];
        if b == b'\\' && i + 3 < field.len() {
            let digits = &field[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = u32::from(digits[0] - b'0') * 64
                    + u32::from(digits[1] - b'0') * 8
                    + u32::from(digits[2] - b'0');
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

/// Encode bytes as the kernel does for mountinfo paths.
pub fn escape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

fn path_of(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn text_of(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

fn number<T: std::str::FromStr>(
    field: &[u8],
    line: usize,
    reason: &'static str,
) -> Result<T, MountinfoError> {
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(MountinfoError { line, reason })
}

fn optional_field(field: &[u8]) -> OptionalField {
    let text = String::from_utf8_lossy(field);
    let tagged = |tag: &str| text.strip_prefix(tag).and_then(|n| n.parse::<u64>().ok());
    if let Some(n) = tagged("shared:") {
        OptionalField::Shared(n)
    } else if let Some(n) = tagged("master:") {
        OptionalField::Master(n)
    } else if let Some(n) = tagged("propagate_from:") {
        OptionalField::PropagateFrom(n)
    } else if text == "unbindable" {
        OptionalField::Unbindable
    } else {
        OptionalField::Other(text.into_owned())
    }
}

/// Parse one line (without its newline). `line` is only used in errors.
pub fn parse_line(raw: &[u8], line: usize) -> Result<MountEntry, MountinfoError> {
    let err = |reason| MountinfoError { line, reason };
    let mut fields = raw.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let mut next = |reason| fields.next().ok_or(err(reason));
    let mount_id = number(next("missing mount id")?, line, "bad mount id")?;
    let parent_id = number(next("missing parent id")?, line, "bad parent id")?;
    let devno = next("missing major:minor")?;
    let colon = devno
        .iter()
        .position(|&b| b == b':')
        .ok_or(err("bad major:minor"))?;
    let major = number(&devno[..colon], line, "bad major")?;
    let minor = number(&devno[colon + 1..], line, "bad minor")?;
    let root = path_of(next("missing root")?);
    let mount_point = path_of(next("missing mount point")?);
    let mount_options = text_of(next("missing mount options")?);
    let mut optional = Vec::new();
    loop {
        let f = next("missing '-' separator")?;
        if f == b"-" {
            break;
        }
        optional.push(optional_field(f));
    }
    let fstype = text_of(next("missing file-system type")?);
    // Some file systems show an empty source; the kernel then prints "none", but be lenient.
    let source = fields.next().map(text_of).unwrap_or_default();
    let super_options = fields.next().map(text_of).unwrap_or_default();
    Ok(MountEntry {
        mount_id,
        parent_id,
        major,
        minor,
        root,
        mount_point,
        mount_options,
        optional,
        fstype,
        source,
        super_options,
    })
}

/// All mounts of a namespace, in the kernel's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTable {
    entries: Vec<MountEntry>,
}

impl MountTable {
    /// Parse the whole of a mountinfo file. Any malformed line is an error: a table we do not
    /// fully understand must not be used to decide to mount.
    pub fn parse(text: &[u8]) -> Result<Self, MountinfoError> {
        let entries = text
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| parse_line(l, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    /// Parse what can be parsed of a mountinfo file, skipping malformed lines: for questions
    /// about one known mount (by id or device), which a line of another mount cannot change.
    pub fn parse_lossy(text: &[u8]) -> Self {
        let entries = text
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .filter_map(|(i, l)| parse_line(l, i + 1).ok())
            .collect();
        Self { entries }
    }

    pub fn from_entries(entries: Vec<MountEntry>) -> Self {
        Self { entries }
    }

    pub fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The mounts stacked exactly at `path`, bottom first. The bottom one is the mount of `path`
    /// itself (a hostPath bind); each further one is mounted on the root of the one below.
    /// Parent links, not file order, decide the stacking: a mount moved beneath another
    /// (`MOVE_MOUNT_BENEATH`) appears later in the file than the one above it.
    pub fn stack_at(&self, path: &Path) -> Vec<&MountEntry> {
        let at: Vec<&MountEntry> = self
            .entries
            .iter()
            .filter(|e| e.mount_point.as_os_str().as_bytes() == path.as_os_str().as_bytes())
            .collect();
        // The top is one that no other mount here sits on; if the kernel ever shows several
        // (pre-4.11 side mounts), the last listed wins, as path lookup would pick it.
        let Some(top) = at.iter().rev().find(|e| {
            !at.iter()
                .any(|o| o.parent_id == e.mount_id && o.mount_id != e.mount_id)
        }) else {
            return Vec::new();
        };
        let mut stack = vec![*top];
        let mut current = *top;
        while let Some(below) = at
            .iter()
            .find(|e| e.mount_id == current.parent_id && e.mount_id != current.mount_id)
        {
            if stack.iter().any(|s| s.mount_id == below.mount_id) {
                break; // a cycle cannot happen in a real table; do not loop on a forged one
            }
            stack.push(below);
            current = below;
        }
        stack.reverse();
        stack
    }

    /// The mount with device number `major:minor` (as `stat` gives it for a file on the mount):
    /// the one with mount id `mount_id` when given and listed, else the first listed (a device
    /// mounted several times, through binds, shows once per mount).
    pub fn find_device(
        &self,
        mount_id: Option<u64>,
        major: u32,
        minor: u32,
    ) -> Option<&MountEntry> {
        let on_device = |e: &&MountEntry| e.major == major && e.minor == minor;
        mount_id
            .and_then(|id| {
                self.entries
                    .iter()
                    .filter(on_device)
                    .find(|e| e.mount_id == id)
            })
            .or_else(|| self.entries.iter().find(on_device))
    }

    /// The mount a path lookup of `path` ends in: the top of the stack at `path`.
    pub fn top_at(&self, path: &Path) -> Option<&MountEntry> {
        self.stack_at(path).last().copied()
    }

    /// The mount that a new mount at `path` would be attached to and propagate from: the bottom
    /// of the stack at `path` if there is one, else the top mount of the longest mount point that
    /// contains `path`.
    pub fn attachment_of(&self, path: &Path) -> Option<&MountEntry> {
        if let Some(bottom) = self.stack_at(path).first() {
            return Some(bottom);
        }
        let mut candidate = path.parent();
        while let Some(dir) = candidate {
            if let Some(top) = self.top_at(dir) {
                return Some(top);
            }
            candidate = dir.parent();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/l
35 22 0:30 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
40 22 8:1 /var/lib/kubelet/x /mnt/my\\040dir rw,relatime shared:7 master:3 - ext4 /dev/sda1 rw
41 40 0:55 / /mnt/my\\040dir ro,nosuid,nodev,relatime shared:9 - nfs 10.0.0.5:/ ro,vers=3,addr=10.0.0.5
42 22 8:1 /srv /mnt/slave rw master:3 propagate_from:2 unbindable - ext4 /dev/sda1 rw
";

    #[test]
    fn parses_fields_escapes_and_optional_fields() {
        let t = MountTable::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(t.entries().len(), 5);
        let nfs = &t.entries()[3];
        assert_eq!(nfs.mount_id, 41);
        assert_eq!(nfs.parent_id, 40);
        assert_eq!((nfs.major, nfs.minor), (0, 55));
        assert_eq!(nfs.mount_point, Path::new("/mnt/my dir"));
        assert_eq!(nfs.fstype, "nfs");
        assert_eq!(nfs.source, "10.0.0.5:/");
        assert_eq!(nfs.shared_group(), Some(9));
        let bind = &t.entries()[2];
        assert_eq!(bind.root, Path::new("/var/lib/kubelet/x"));
        assert_eq!(
            bind.optional,
            vec![OptionalField::Shared(7), OptionalField::Master(3)]
        );
        let slave = &t.entries()[4];
        assert_eq!(
            slave.optional,
            vec![
                OptionalField::Master(3),
                OptionalField::PropagateFrom(2),
                OptionalField::Unbindable
            ]
        );
        assert_eq!(slave.shared_group(), None);
        assert_eq!(slave.propagation(), "slave");
        assert_eq!(t.entries()[1].propagation(), "private");
    }

    #[test]
    fn stack_and_top_follow_parent_links() {
        let t = MountTable::parse(SAMPLE.as_bytes()).unwrap();
        let stack = t.stack_at(Path::new("/mnt/my dir"));
        let ids: Vec<u64> = stack.iter().map(|e| e.mount_id).collect();
        assert_eq!(ids, vec![40, 41]);
        assert_eq!(t.top_at(Path::new("/mnt/my dir")).unwrap().mount_id, 41);
        assert!(t.stack_at(Path::new("/mnt/my")).is_empty());
        assert_eq!(
            t.attachment_of(Path::new("/mnt/my dir")).unwrap().mount_id,
            40
        );
        assert_eq!(
            t.attachment_of(Path::new("/mnt/other")).unwrap().mount_id,
            22
        );
    }

    #[test]
    fn stack_tucked_beneath_is_ordered_by_parents_not_file_order() {
        // 50 was moved beneath 51 after 51 was mounted: 51's parent is now 50.
        let text = "\
40 22 8:1 /x /t rw shared:7 - ext4 /dev/sda1 rw
51 50 0:60 / /t ro - nfs 10.0.0.5:/ ro
50 40 0:61 / /t ro - nfs 10.0.0.5:/ ro
";
        let t = MountTable::parse(text.as_bytes()).unwrap();
        let ids: Vec<u64> = t
            .stack_at(Path::new("/t"))
            .iter()
            .map(|e| e.mount_id)
            .collect();
        assert_eq!(ids, vec![40, 50, 51]);
    }

    #[test]
    fn escapes_of_all_four_special_bytes() {
        assert_eq!(unescape(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(escape(b"a b\tc\nd\\e"), br"a\040b\011c\012d\134e".to_vec());
        // Not an escape: kept literally.
        assert_eq!(unescape(br"\9x\04"), br"\9x\04".to_vec());
        assert_eq!(unescape(br"\777"), br"\777".to_vec());
        assert_eq!(unescape(br"trailing\04"), br"trailing\04".to_vec());
        assert_eq!(unescape(br"not\9999"), br"not\9999".to_vec());
        assert_eq!(unescape(br"\"), br"\".to_vec());
    }

    /// Lines as a Linux 6.1 host shows them: FUSE mounts of rclone (a subtype, an escaped space,
    /// a bind of a subdirectory), of a daemon that mounts as root (plain `fuse`), an NTFS
    /// partition through ntfs-3g (`fuseblk`), and the FUSE control file system beside them.
    const FUSE_MOUNTS: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
36 23 0:33 / /sys/fs/fuse/connections rw,nosuid,nodev,noexec,relatime shared:16 - fusectl fusectl rw
95 27 0:45 / /mnt/my\\040library rw,nosuid,nodev,relatime shared:50 master:3 - fuse.rclone remote: rw,user_id=0,group_id=0,allow_other
96 27 0:45 /sub /srv/bind rw,relatime - fuse.rclone remote: rw,user_id=0,group_id=0
97 27 8:17 / /media/usb rw,relatime - fuseblk /dev/sdb1 rw,user_id=0,group_id=0,allow_other,blksize=4096
98 27 0:46 / /mnt/hang rw,nosuid,nodev,relatime - fuse hangfs rw,user_id=0,group_id=0
99 27 0:47 / /mnt/ntfs rw,relatime - fuseblk.ntfs-3g /dev/sdc1 rw,user_id=0,group_id=0
100 27 0:48 / /mnt/fuse2 rw,relatime - fuse2 x rw
101 27 0:49 / /mnt/nfs ro,relatime - nfs 10.0.0.5:/ ro,vers=3
";

    fn fuse_mount(point: &str) -> bool {
        let t = MountTable::parse(FUSE_MOUNTS.as_bytes()).unwrap();
        t.top_at(Path::new(point))
            .unwrap_or_else(|| panic!("no mount at {point}"))
            .is_fuse()
    }

    #[test]
    fn fuse_and_fuseblk_with_or_without_a_subtype_are_fuse() {
        for point in [
            "/mnt/my library",
            "/srv/bind",
            "/media/usb",
            "/mnt/hang",
            "/mnt/ntfs",
        ] {
            assert!(fuse_mount(point), "{point}");
        }
    }

    #[test]
    fn fusectl_is_not_fuse() {
        assert!(!fuse_mount("/sys/fs/fuse/connections"));
        assert!(!is_fuse_type("fusectl"));
    }

    #[test]
    fn other_file_systems_are_not_fuse() {
        for point in ["/", "/proc", "/sys", "/mnt/fuse2", "/mnt/nfs"] {
            assert!(!fuse_mount(point), "{point}");
        }
        for t in ["", "fuse2", "fusex.y", ".fuse", "tmpfs"] {
            assert!(!is_fuse_type(t), "{t:?}");
        }
    }

    #[test]
    fn a_mount_is_found_by_id_then_by_device() {
        let t = MountTable::parse(FUSE_MOUNTS.as_bytes()).unwrap();
        let bind = t.find_device(Some(96), 0, 45).unwrap();
        assert_eq!(bind.mount_point, Path::new("/srv/bind"));
        assert_eq!(bind.root, Path::new("/sub"));
        let any = t.find_device(None, 0, 45).unwrap();
        assert_eq!(any.mount_id, 95);
        assert_eq!(any.mount_point, Path::new("/mnt/my library"));
        let stale_id = t.find_device(Some(4242), 8, 17).unwrap();
        assert_eq!(stale_id.fstype, "fuseblk");
        assert_eq!(t.find_device(Some(96), 8, 17).unwrap().mount_id, 97);
        assert_eq!(t.find_device(None, 0, 99), None);
    }

    #[test]
    fn a_lossy_parse_skips_only_the_malformed_lines() {
        let text = format!("garbage\n{FUSE_MOUNTS}1 2 045 / /m rw - fuse a b\n");
        assert!(MountTable::parse(text.as_bytes()).is_err());
        let t = MountTable::parse_lossy(text.as_bytes());
        assert_eq!(t, MountTable::parse(FUSE_MOUNTS.as_bytes()).unwrap());
        assert_eq!(
            t.find_device(None, 0, 47).unwrap().fstype,
            "fuseblk.ntfs-3g"
        );
    }

    #[test]
    fn malformed_lines_are_errors_with_line_numbers() {
        let e = MountTable::parse(b"22 1 0:21 / / rw shared:1 - overlay o rw\nxx\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = MountTable::parse(b"22 1 0:21 / / rw shared:1 overlay o rw\n").unwrap_err();
        assert_eq!(e.reason, "missing '-' separator");
        for bad in [
            &b"x"[..],
            b"1 2 045 / /m rw - fuse a b",
            b"1 2 0:45 / /m rw shared:1",
        ] {
            assert!(
                parse_line(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest! {
        #[test]
        fn escape_round_trips(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let escaped = escape(&raw);
            prop_assert!(!escaped.contains(&b' ') && !escaped.contains(&b'\n') && !escaped.contains(&b'\t'));
            prop_assert_eq!(unescape(&escaped), raw);
        }

        #[test]
        fn mount_point_survives_a_line(raw in proptest::collection::vec(1u8..=255, 1..64)) {
            let mut line = b"7 1 0:5 / ".to_vec();
            line.extend(escape(&raw));
            line.extend_from_slice(b" rw shared:3 - tmpfs none rw");
            let e = parse_line(&line, 1).unwrap();
            prop_assert_eq!(e.mount_point.as_os_str().as_bytes(), &raw[..]);
            prop_assert_eq!(e.shared_group(), Some(3));
        }

        #[test]
        fn arbitrary_input_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = MountTable::parse(&raw);
            let _ = parse_line(&raw, 1);
        }

        #[test]
        fn arbitrary_text_lines_never_panic(s in "[0-9a-z:/ \\\\-]{0,120}") {
            let _ = MountTable::parse(s.as_bytes());
        }
    }
}
