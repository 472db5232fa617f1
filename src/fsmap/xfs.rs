//! XFS: recognised by its big-endian superblock at byte 0 (label, UUID, used bytes). There is no
//! used-block map yet, so every block is copied.
//!
//! `used_bytes` is (dblocks − fdblocks) × block size, trusted only when the superblock passes
//! libblkid's geometry checks (`xfs_verify_sb`) and, for version 5, its crc32c. A superblock
//! that fails the geometry checks is still reported as XFS (blkid rejects it), without
//! `used_bytes`.
//!
//! Units: offsets in bytes.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{crc32c, read_exact_soft, text_label, uuid16};
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{be16, be32, be64, byte, field, has, le32};
use crate::error::Result;

/// XFS is recognised; it has no used-block map yet.
pub(super) const FORMAT: Format = Format { probe, map: None };

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let sb = read_clamped(dev, 0, 512)?;
    if !has(&sb, 0, b"XFSB") {
        return Ok(None);
    }
    Ok(Some(FsInfo {
        kind: FsKind::Xfs,
        label: field(&sb, 108, 12).and_then(text_label),
        uuid: field(&sb, 32, 16).and_then(uuid16),
        used_bytes: xfs_used(dev, &sb),
    }))
}

/// libblkid's `xfs_verify_sb` geometry checks.
fn xfs_sane(sb: &[u8]) -> Option<bool> {
    let blocksize = u64::from(be32(sb, 4)?);
    let dblocks = be64(sb, 8)?;
    let rextsize = u64::from(be32(sb, 80)?);
    let agblocks = u64::from(be32(sb, 84)?);
    let agcount = u64::from(be32(sb, 88)?);
    let sectsize = u64::from(be16(sb, 102)?);
    let inodesize = u64::from(be16(sb, 104)?);
    let blocklog = u32::from(byte(sb, 120)?);
    let sectlog = u32::from(byte(sb, 121)?);
    let inodelog = u32::from(byte(sb, 122)?);
    let inopblog = u32::from(byte(sb, 123)?);
    let imax_pct = byte(sb, 127)?;
    let rext_bytes = rextsize.checked_mul(blocksize)?;
    let max_dblocks = agcount.checked_mul(agblocks)?;
    let min_dblocks = agcount
        .checked_sub(1)?
        .checked_mul(agblocks)?
        .checked_add(64)?;
    Some(
        agcount > 0
            && (9..=15).contains(&sectlog)
            && sectsize == 1 << sectlog
            && (9..=16).contains(&blocklog)
            && blocksize == 1 << blocklog
            && (8..=11).contains(&inodelog)
            && inodesize == 1 << inodelog
            && blocklog.checked_sub(inodelog) == Some(inopblog)
            && (4096..=1 << 30).contains(&rext_bytes)
            && imax_pct <= 100
            && dblocks != 0
            && (min_dblocks..=max_dblocks).contains(&dblocks),
    )
}

fn xfs_used(dev: &dyn BlockDev, sb: &[u8]) -> Option<u64> {
    if !xfs_sane(sb)? {
        return None;
    }
    // version 5 superblocks carry a crc32c of the whole sector (crc field as zero) at 224
    if be16(sb, 100)? & 0xF == 5 {
        let sectsize = u64::from(be16(sb, 102)?);
        let mut sector = read_exact_soft(dev, 0, sectsize)?;
        let stored = le32(&sector, 224)?;
        sector.get_mut(224..228)?.fill(0);
        if crc32c(&sector) != stored {
            return None;
        }
    }
    let blocksize = u64::from(be32(sb, 4)?);
    let dblocks = be64(sb, 8)?;
    let fdblocks = be64(sb, 144)?;
    dblocks.checked_sub(fdblocks)?.checked_mul(blocksize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;
    use std::process::Command;

    #[test]
    fn xfs_images_match_blkid_and_xfs_db() {
        let cases: [(&str, &[&str]); 2] = [("v5", &[]), ("v4", &["-m", "crc=0"])];
        for (name, extra) in cases {
            let uuid = format!("uuid={UUID_A}");
            let mut args = vec!["-q", "-L", "xlab"];
            if extra.is_empty() {
                args.extend_from_slice(&["-m", &uuid]);
            }
            args.extend_from_slice(extra);
            let Some((img, info)) = mkfs_case(300 << 20, "mkfs.xfs", &args) else {
                return;
            };
            assert_eq!(
                (info.kind, info.label.as_deref()),
                (FsKind::Xfs, Some("xlab")),
                "{name}"
            );
            if extra.is_empty() {
                assert_eq!(info.uuid.as_deref(), Some(UUID_A), "{name}");
            }
            let Some(db) = tool("xfs_db") else { continue };
            let text = output(
                Command::new(db)
                    .args(["-r", "-c", "sb 0", "-c", "p dblocks fdblocks blocksize"])
                    .arg(&img.path),
            );
            let want = (kv(&text, "dblocks") - kv(&text, "fdblocks")) * kv(&text, "blocksize");
            assert_eq!(info.used_bytes, Some(want), "{name}");
        }
    }
}
