//! btrfs: recognised by its superblock at 64 KiB (label, UUID, bytes allocated on this device).
//! There is no used-block map yet, so every block is copied.
//!
//! `used_bytes` is `dev_item.bytes_used`, trusted only when the superblock's crc32c verifies
//! (other checksum types are not checked).
//!
//! Units: offsets in bytes.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{crc32c, text_label, uuid16};
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{field, has, le16, le32, le64};
use crate::error::Result;

/// btrfs is recognised; it has no used-block map yet.
pub(super) const FORMAT: Format = Format { probe, map: None };

const BTRFS_SB: u64 = 0x1_0000;

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    // libblkid's minimum size for btrfs
    if dev.len() < 1 << 20 {
        return Ok(None);
    }
    let sb = read_clamped(dev, BTRFS_SB, 4096)?;
    if !has(&sb, 0x40, b"_BHRfS_M") {
        return Ok(None);
    }
    Ok(Some(FsInfo {
        kind: FsKind::Btrfs,
        label: field(&sb, 0x12B, 256).and_then(text_label),
        uuid: field(&sb, 0x20, 16).and_then(uuid16),
        used_bytes: btrfs_used(&sb),
    }))
}

fn btrfs_used(sb: &[u8]) -> Option<u64> {
    // csum_type 0 is crc32c over the rest of the 4 KiB superblock; other types are not checked
    if le16(sb, 0xC4)? == 0 && le32(sb, 0)? != crc32c(field(sb, 0x20, 4096 - 0x20)?) {
        return None;
    }
    let dev_total = le64(sb, 0xD1)?;
    let dev_used = le64(sb, 0xD9)?;
    (dev_used <= dev_total).then_some(dev_used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;
    use std::process::Command;

    #[test]
    fn btrfs_image_matches_blkid() {
        let args = ["-q", "-f", "-L", "blab", "-U", UUID_A];
        let Some((img, info)) = mkfs_case(256 << 20, "mkfs.btrfs", &args) else {
            return;
        };
        assert_eq!(
            (info.kind, info.label.as_deref(), info.uuid.as_deref()),
            (FsKind::Btrfs, Some("blab"), Some(UUID_A))
        );
        let Some(btrfs) = tool("btrfs") else { return };
        let text = output(
            Command::new(btrfs)
                .args(["inspect-internal", "dump-super"])
                .arg(&img.path),
        );
        assert_eq!(info.used_bytes, Some(kv(&text, "dev_item.bytes_used")));
    }
}
