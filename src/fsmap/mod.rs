//! Filesystems: detection by magic, and used-block maps read from each filesystem's own
//! structures.
//!
//! [`map_filesystem`] is the entry point for imaging. A map either proves which byte ranges are
//! in use ([`Used::Ranges`]) or says the whole partition must be copied ([`Used::All`]) and why:
//! an unknown format, a damaged or inconsistent filesystem, a journal that needs recovery, a
//! hibernated Windows. A block is never called unused unless the filesystem proves it.
//!
//! One module per format holds its probe, its map (when it has one) and their tests;
//! [`detect`](mod@detect) lists the formats in probe order. Every map has the same shape, a
//! [`MapFn`]: the outer `Result` is an I/O error, the inner one a [`MapError`] saying why the
//! filesystem cannot be mapped, and a [`UsedMap`] carries the ranges and, when the
//! filesystem's state makes a partial copy unsafe (a dirty FAT, a hibernated Windows), the
//! reason.

/// `?` for a map's inner result ([`MapResult`]): an `Err(MapError)` returns `Ok(Err(..))`.
/// Defined before the format modules, which use it.
macro_rules! try_map {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

pub mod damage;
pub mod detect;
pub mod ext;
pub mod fat;
pub mod files;
pub mod ntfs;

mod bitlocker;
mod btrfs;
mod exfat;
mod iso9660;
mod luks;
mod lvm;
mod probe;
mod swap;
mod xfs;

#[cfg(test)]
pub(crate) mod testutil;

pub use detect::{detect, FsInfo, FsKind};

use crate::blockdev::BlockDev;
use crate::error::Result;
use serde::Serialize;

/// Why a filesystem's used blocks cannot be mapped: its metadata is damaged, inconsistent or
/// unsupported, does not fit the partition, or may be stale. `.0` says why, lowercase, in words
/// a user understands; `.1` is the filesystem family the text names ("ext", "fat", "ntfs").
/// The caller copies the whole partition instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{1} filesystem: {0}")]
pub struct MapError(pub String, pub &'static str);

/// A map's outcome: the outer `Err` is an I/O error, the inner one a [`MapError`].
pub type MapResult<T> = Result<std::result::Result<T, MapError>>;

/// What one filesystem's structures prove about its used space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedMap {
    /// Byte ranges `(start, len)` relative to the filesystem's first byte, sorted and merged.
    pub ranges: Vec<(u64, u64)>,
    /// Set when the ranges were read correctly but the filesystem's state means a copy of only
    /// them may not be what its owner resumes with (a FAT not cleanly unmounted, a dirty or
    /// hibernated NTFS): a sentence for the user, and [`map_filesystem`] copies every block.
    pub reason_unsafe: Option<String>,
}

/// The map every mappable format exposes (`ext::used_map`, `fat::used_map`,
/// `ntfs::used_map`): reads the filesystem on `dev` (one partition, offset 0 its first byte).
pub type MapFn = fn(&dyn BlockDev) -> MapResult<UsedMap>;

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
    let all = |fs: Option<FsInfo>, reason: String| {
        Ok(FsMap {
            fs,
            used: Used::All { reason },
        })
    };
    let Some((info, format)) = detect::identify(dev)? else {
        return all(None, "no known filesystem".into());
    };
    let name = info.kind.display_name();
    if info.kind.is_encrypted() {
        return all(
            Some(info),
            format!(
                "encrypted ({name}), copied whole: which of its blocks are in use cannot be read without unlocking it"
            ),
        );
    }
    let Some(map) = format.map else {
        return all(
            Some(info),
            format!("used-block maps of {name} are not implemented"),
        );
    };
    match map(dev)? {
        Err(e) => all(Some(info), format!("{e}")),
        // dirty or hibernated: the on-disk metadata may not describe what the owner will
        // resume with, so every block is kept and a restore is byte-identical
        Ok(UsedMap {
            reason_unsafe: Some(why),
            ..
        }) => all(Some(info), why),
        Ok(UsedMap { ranges, .. }) => match check_ranges(&ranges, dev.len()) {
            Ok(()) => Ok(FsMap {
                fs: Some(info),
                used: Used::Ranges { ranges },
            }),
            Err(why) => all(Some(info), format!("{name} map is inconsistent: {why}")),
        },
    }
}

/// How the filesystem on `dev` fares on a disk whose logical sectors change size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorFit {
    /// The filesystem.
    pub kind: FsKind,
    /// The smallest logical sector size of a disk it can live on, where the filesystem fixes
    /// one: FAT's and exFAT's bytes per sector and XFS's sector size (their structures are
    /// addressed in those sectors, and Linux refuses them on a disk with larger ones), and
    /// ext2/3/4's block size (Linux mounts no block smaller than the disk's sector). `None`
    /// for every other format: their bytes do not depend on the disk's sector size (btrfs
    /// and swap use at least 4 KiB).
    pub floor: Option<u32>,
    /// What a user should know that cannot be checked: NTFS records its own bytes per
    /// sector, which ntfs-3g ignores but Windows may not.
    pub note: Option<String>,
}

/// [`SectorFit`] of the filesystem on `dev` for a disk of `target_ss`-byte sectors; `None`
/// for no known filesystem.
pub fn sector_fit(dev: &dyn BlockDev, target_ss: u32) -> Result<Option<SectorFit>> {
    use crate::blockdev::read_clamped;
    use crate::bytes::{be16, byte, le16, le32};
    let Some(info) = detect(dev)? else {
        return Ok(None);
    };
    let head = read_clamped(dev, 0, 2048)?;
    let bps = le16(&head, 11).map(u32::from);
    let floor = match info.kind {
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => bps,
        FsKind::Exfat => byte(&head, 108).filter(|&s| s < 32).map(|s| 1u32 << s),
        FsKind::Xfs => be16(&head, 102).map(u32::from),
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => le32(&head, 1024 + 24)
            .filter(|&l| l < 22)
            .map(|l| 1024u32 << l),
        _ => None,
    };
    let bps = bps.unwrap_or(0);
    let note = (info.kind == FsKind::Ntfs && bps != target_ss).then(|| {
        format!(
            "its NTFS records {bps}-byte sectors: Linux (ntfs-3g) reads it on {target_ss}-byte sectors, Windows may not mount it until it is reformatted"
        )
    });
    Ok(Some(SectorFit {
        kind: info.kind,
        floor,
        note,
    }))
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
