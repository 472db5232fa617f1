//! Filesystems: detection by magic, and used-block maps read from each filesystem's own
//! structures.
//!
//! [`map_filesystem`] is the entry point for imaging. A map either proves which byte ranges are
//! in use ([`Used::Ranges`]) or says the whole partition must be copied ([`Used::All`]) and why:
//! an unknown format, a damaged or inconsistent filesystem, a journal that needs recovery, a
//! hibernated Windows. A block is never called unused unless the filesystem proves it.

pub mod detect;
pub mod ext;
pub mod fat;
pub mod ntfs;

pub use detect::{detect, FsInfo, FsKind};

use crate::blockdev::BlockDev;
use crate::error::Result;
use serde::Serialize;

/// Which bytes of a filesystem hold data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Used {
    /// Proven by the filesystem: sorted, merged `(start, len)` byte ranges from its first byte.
    Ranges {
        /// The ranges.
        ranges: Vec<(u64, u64)>,
    },
    /// Copy everything (all-zero chunks are still elided).
    All {
        /// Why no map could be used, in words a user understands.
        reason: String,
    },
}

/// A filesystem's identity and used map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsMap {
    /// What detection found, if anything.
    pub fs: Option<FsInfo>,
    /// What to copy.
    pub used: Used,
}

impl FsMap {
    /// Bytes the map says are used, or `None` for [`Used::All`].
    pub fn used_bytes(&self) -> Option<u64> {
        match &self.used {
            Used::Ranges { ranges } => Some(ranges.iter().map(|r| r.1).sum()),
            Used::All { .. } => None,
        }
    }
}

/// Detects the filesystem on `dev` (one partition) and reads its used map.
///
/// Fails only with I/O errors; everything a filesystem can get wrong ends in [`Used::All`]
/// with the reason.
pub fn map_filesystem(dev: &dyn BlockDev) -> Result<FsMap> {
    let fs = detect(dev)?;
    let all = |fs: Option<FsInfo>, reason: String| {
        Ok(FsMap {
            fs,
            used: Used::All { reason },
        })
    };
    let Some(info) = fs else {
        return all(None, "no known filesystem".into());
    };
    let name = info.kind.display_name();
    let proven = |r: Vec<(u64, u64)>| -> Result<FsMap> {
        match check_ranges(&r, dev.len()) {
            Ok(()) => Ok(FsMap {
                fs: Some(info.clone()),
                used: Used::Ranges { ranges: r },
            }),
            Err(why) => all(
                Some(info.clone()),
                format!("{name} map is inconsistent: {why}"),
            ),
        }
    };
    match info.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => match ext::used_ranges(dev)? {
            Ok(r) => proven(r),
            Err(e) => all(Some(info), format!("{e}")),
        },
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => match fat::used_ranges(dev)? {
            Ok(m) if m.dirty => all(
                Some(info),
                format!(
                    "{name} was not cleanly unmounted (dirty bit set), so its FAT is not trusted"
                ),
            ),
            Ok(m) => proven(m.ranges),
            Err(e) => all(Some(info), format!("{e}")),
        },
        FsKind::Ntfs => match ntfs::used_ranges(dev)? {
            Ok(m) => match m.reason_unsafe {
                // Hibernated or dirty: the on-disk bitmap may not describe what Windows will
                // resume with, so every block is kept and a restore is byte-identical.
                Some(why) => all(Some(info), why),
                None => proven(m.ranges),
            },
            Err(e) => all(Some(info), format!("{e}")),
        },
        _ => all(
            Some(info),
            format!("used-block maps of {name} are not implemented"),
        ),
    }
}

/// Checks that ranges are sorted, non-overlapping, non-empty and inside `len` bytes.
fn check_ranges(r: &[(u64, u64)], len: u64) -> std::result::Result<(), String> {
    let mut end = 0u64;
    for &(s, l) in r {
        if l == 0 || s < end {
            return Err(format!("range {s}+{l} is empty or out of order"));
        }
        end = s.checked_add(l).ok_or("range overflows")?;
        if end > len {
            return Err(format!(
                "range {s}..{end} ends beyond the partition ({len} bytes)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    #[test]
    fn unknown_content_is_copied_whole() {
        let m = map_filesystem(&MemDev::new(1 << 20, 512)).unwrap();
        assert_eq!(m.fs, None);
        assert_eq!(
            m.used,
            Used::All {
                reason: "no known filesystem".into()
            }
        );
        assert_eq!(m.used_bytes(), None);
    }

    #[test]
    fn ranges_are_checked() {
        assert!(check_ranges(&[(0, 10), (10, 5)], 15).is_ok());
        assert!(check_ranges(&[(0, 10), (5, 5)], 15).is_err());
        assert!(check_ranges(&[(0, 10), (12, 5)], 15).is_err());
        assert!(check_ranges(&[(0, 0)], 15).is_err());
        assert!(check_ranges(&[(u64::MAX, 2)], u64::MAX).is_err());
    }
}
