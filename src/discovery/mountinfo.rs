//! Pure parsers for `/proc/self/mountinfo` and `/proc/swaps` text. No I/O happens here: callers
//! read the files and hand over the text, so tests feed literal strings.
//!
//! Format references: Documentation/filesystems/proc.rst (`/proc/<pid>/mountinfo`) and
//! `show_mountinfo()` / `swap_show()` in the kernel. Both files escape space, tab, newline and
//! backslash in paths as three-digit octal (`\040`), which [`unescape`] decodes. Malformed lines
//! are skipped, never a panic or an error: a half-understood line must not hide the good ones.
//! Swap sizes are in KiB, as the kernel prints them.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Unique mount ID (field 1).
    pub mount_id: u32,
    /// Mount ID of the parent mount (field 2); a root mount names itself or an invisible one.
    pub parent_id: u32,
    /// Major number of `st_dev` for files on this filesystem. 0 for virtual filesystems and
    /// for btrfs, which reports an anonymous device: match btrfs by [`MountEntry::source`].
    pub major: u32,
    /// Minor number of `st_dev` for files on this filesystem.
    pub minor: u32,
    /// The directory of the filesystem that forms the root of this mount (`/` unless a bind
    /// mount or subvolume), octal escapes decoded.
    pub root: PathBuf,
    /// Where it is mounted, relative to the process's root, octal escapes decoded.
    pub mount_point: PathBuf,
    /// Per-mount options, e.g. `rw,relatime`.
    pub mount_options: String,
    /// Optional tagged fields such as `shared:1` or `master:2`, in order.
    pub optional_fields: Vec<String>,
    /// Filesystem type, e.g. `ext4`, `iso9660`, `tmpfs`, `fuse.sshfs`.
    pub fs_type: String,
    /// Mount source, octal escapes decoded: `/dev/sda1`, `tmpfs`, `none`, `overlay`…
    /// Non-UTF-8 bytes are replaced with U+FFFD.
    pub source: String,
    /// Per-superblock options; empty when the kernel printed none.
    pub super_options: String,
}

/// One device or file line of `/proc/swaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapEntry {
    /// The swap device or file, octal escapes decoded (e.g. `/dev/sda2`, `/swapfile`).
    pub path: PathBuf,
    /// `partition` or `file`.
    pub kind: String,
    /// Size in KiB.
    pub size_kib: u64,
    /// Used space in KiB.
    pub used_kib: u64,
    /// Swap priority (negative when assigned by the kernel).
    pub priority: i32,
}

/// Decodes the kernel's `\NNN` octal escapes (three octal digits, value at most 0o377) into raw
/// bytes. A backslash that does not start a valid escape is kept literally.
pub fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(value) = bytes.get(i + 1..i + 4).and_then(octal3) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Value of exactly three octal digits, if they fit in a byte.
fn octal3(digits: &[u8]) -> Option<u8> {
    let mut value: u32 = 0;
    for &d in digits {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        value = value * 8 + u32::from(d - b'0');
    }
    u8::try_from(value).ok()
}

/// [`unescape`] into a path, keeping non-UTF-8 bytes intact.
fn unescape_path(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

/// [`unescape`] into a string, replacing non-UTF-8 bytes.
fn unescape_string(field: &str) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// Parses the whole text of `/proc/self/mountinfo`, in file order (parents before children,
/// later mounts over earlier ones). Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// Parses one mountinfo line, or `None` if it is malformed. Fields are separated by single
/// spaces (an empty source shows up as an empty field, so no whitespace collapsing).
pub fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    // 6 fixed fields, optional fields, "-", then fs type, source, super options
    let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let after = &fields[sep + 1..];
    if after.len() < 2 || after[0].is_empty() {
        return None;
    }
    let (major, minor) = parse_devnum(fields[2])?;
    Some(MountEntry {
        mount_id: fields[0].parse().ok()?,
        parent_id: fields[1].parse().ok()?,
        major,
        minor,
        root: unescape_path(non_empty(fields[3])?),
        mount_point: unescape_path(non_empty(fields[4])?),
        mount_options: fields[5].to_owned(),
        optional_fields: fields[6..sep]
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| (*f).to_owned())
            .collect(),
        fs_type: unescape_string(after[0]),
        source: unescape_string(after[1]),
        super_options: after
            .get(2..)
            .map(|rest| rest.join(" "))
            .unwrap_or_default(),
    })
}

/// `Some(field)` unless it is empty.
fn non_empty(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// Parses `"8:1"` into `(8, 1)`; also used for sysfs `dev` files.
pub fn parse_devnum(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Parses the whole text of `/proc/swaps`. The header line and malformed lines are skipped.
pub fn parse_swaps(text: &str) -> Vec<SwapEntry> {
    text.lines().filter_map(parse_swaps_line).collect()
}

/// Parses one `/proc/swaps` line (`Filename Type Size Used Priority`), or `None` for the
/// header and malformed lines.
fn parse_swaps_line(line: &str) -> Option<SwapEntry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() != 5 || fields[0] == "Filename" {
        return None;
    }
    Some(SwapEntry {
        path: unescape_path(fields[0]),
        kind: fields[1].to_owned(),
        size_kib: fields[2].parse().ok()?,
        used_kib: fields[3].parse().ok()?,
        priority: fields[4].parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
36 27 8:17 /sub /mnt/my\\040disk rw,noatime master:1 shared:4 - ext3 /dev/sdb1 rw,errors=continue
40 27 0:45 / /srv rw - btrfs /dev/sdc2 rw,space_cache=v2,subvolid=5,subvol=/
41 27 0:46 / /weird rw - tmpfs  rw
";

    #[test]
    fn parses_typical_lines() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].fs_type, "proc");
        assert_eq!((m[0].major, m[0].minor), (0, 21));
        let root = &m[1];
        assert_eq!(root.mount_id, 27);
        assert_eq!(root.parent_id, 1);
        assert_eq!((root.major, root.minor), (254, 0));
        assert_eq!(root.mount_point, Path::new("/"));
        assert_eq!(root.optional_fields, vec!["shared:1".to_owned()]);
        assert_eq!(root.source, "/dev/vda");
        assert_eq!(root.super_options, "rw,discard");
    }

    #[test]
    fn decodes_escapes_and_optional_fields() {
        let m = parse_mountinfo(SAMPLE);
        let e = &m[2];
        assert_eq!(e.root, Path::new("/sub"));
        assert_eq!(e.mount_point, Path::new("/mnt/my disk"));
        assert_eq!(e.mount_options, "rw,noatime");
        assert_eq!(e.optional_fields, vec!["master:1", "shared:4"]);
        assert_eq!(e.fs_type, "ext3");
        assert_eq!(e.source, "/dev/sdb1");
        assert_eq!((e.major, e.minor), (8, 17));
    }

    #[test]
    fn empty_source_is_kept_as_empty_field() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m[4].source, "");
        assert_eq!(m[4].super_options, "rw");
        assert_eq!(m[3].fs_type, "btrfs");
        assert_eq!(m[3].major, 0);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let cases = [
            ("empty", ""),
            ("garbage", "hello world"),
            ("no separator", "1 2 8:1 / /a rw ext4 /dev/sda1 rw"),
            ("bad id", "x 2 8:1 / /a rw - ext4 /dev/sda1 rw"),
            ("bad devnum", "1 2 8-1 / /a rw - ext4 /dev/sda1 rw"),
            (
                "devnum overflow",
                "1 2 99999999999:1 / /a rw - ext4 /dev/sda1 rw",
            ),
            ("nothing after separator", "1 2 8:1 / /a rw -"),
            ("only fs type", "1 2 8:1 / /a rw - ext4"),
            ("separator too early", "1 2 8:1 / - rw ext4 /dev/sda1 rw"),
            ("empty mount point", "1 2 8:1 /  rw - ext4 /dev/sda1 rw"),
        ];
        for (name, line) in cases {
            assert_eq!(parse_mountinfo_line(line), None, "case {name}");
        }
        let text = format!("{}\n{SAMPLE}\x00\u{fffd} junk\n", cases[2].1);
        assert_eq!(parse_mountinfo(&text).len(), 5);
    }

    #[test]
    fn unescape_cases() {
        let cases: [(&str, &[u8]); 6] = [
            ("plain", b"plain"),
            ("a\\040b", b"a b"),
            ("tab\\011nl\\012bs\\134", b"tab\tnl\nbs\\"),
            ("trailing\\", b"trailing\\"),
            ("short\\04", b"short\\04"),
            ("notoctal\\089 big\\777", b"notoctal\\089 big\\777"),
        ];
        for (input, want) in cases {
            assert_eq!(unescape(input), want, "input {input:?}");
        }
        // non-UTF-8 bytes survive into paths
        assert_eq!(unescape("\\377"), vec![0xff]);
    }

    #[test]
    fn parses_swaps() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/sda2                               partition\t8388604\t\t1024\t\t-2\n\
                    /swap\\040file                           file\t\t1048572\t\t0\t\t10\n\
                    /dev/broken partition notanumber 0 -1\n\
                    too few fields\n";
        let s = parse_swaps(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].path, Path::new("/dev/sda2"));
        assert_eq!(s[0].kind, "partition");
        assert_eq!(
            (s[0].size_kib, s[0].used_kib, s[0].priority),
            (8388604, 1024, -2)
        );
        assert_eq!(s[1].path, Path::new("/swap file"));
        assert_eq!(s[1].priority, 10);
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
    }

    #[test]
    fn devnum_parsing() {
        assert_eq!(parse_devnum("8:0\n"), Some((8, 0)));
        assert_eq!(parse_devnum("259:12"), Some((259, 12)));
        assert_eq!(parse_devnum("8"), None);
        assert_eq!(parse_devnum(":"), None);
    }
}
