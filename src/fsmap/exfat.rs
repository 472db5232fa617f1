//! exFAT: recognised by its boot sector (label and the allocation bitmap's location from the
//! root directory, serial as UUID, used bytes from the allocation bitmap). There is no
//! used-block map yet, so every block is copied.
//!
//! `used_bytes` is the area before the cluster heap plus allocated clusters × cluster size,
//! counted in the first allocation bitmap, and only when the boot-region checksum verifies and
//! the bitmap is at most [`BITMAP_MAX_BYTES`]. The root directory is scanned for at most
//! [`DIR_SCAN_BYTES`] along at most [`CHAIN_MAX`] clusters.
//!
//! Units: offsets and sizes in bytes; clusters are numbered from 2 as on disk.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{
    fat_serial, read_exact_soft, scan_dir, utf16_label, CHAIN_MAX, COUNT_CHUNK, DIR_SCAN_BYTES,
};
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{arr, byte, field, has, le32, le64};
use crate::error::Result;

/// exFAT is recognised; it has no used-block map yet.
pub(super) const FORMAT: Format = Format { probe, map: None };

/// Largest exFAT allocation bitmap (bytes) counted for `used_bytes`.
const BITMAP_MAX_BYTES: u64 = 32 << 20;

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let bs = read_clamped(dev, 0, 512)?;
    Ok(parse_exfat(dev, &bs))
}

/// Geometry of an exFAT volume, from its boot sector.
struct Exfat {
    sector: u64,
    cluster: u64,
    fat_offset: u64,
    heap_offset: u64,
    cluster_count: u32,
}

impl Exfat {
    fn cluster_offset(&self, c: u32) -> Option<u64> {
        if c < 2 || c > self.cluster_count.checked_add(1)? {
            return None;
        }
        let index = u64::from(c - 2);
        self.heap_offset
            .checked_add(index.checked_mul(self.cluster)?)
    }

    fn next_cluster(&self, dev: &dyn BlockDev, c: u32) -> Option<u32> {
        let at = self.fat_offset.checked_add(u64::from(c).checked_mul(4)?)?;
        let entry = read_exact_soft(dev, at, 4)?;
        le32(&entry, 0)
    }
}

fn parse_exfat(dev: &dyn BlockDev, bs: &[u8]) -> Option<FsInfo> {
    if !has(bs, 3, b"EXFAT   ") || !has(bs, 0, &[0xEB, 0x76, 0x90]) || !has(bs, 510, &[0x55, 0xAA])
    {
        return None;
    }
    if field(bs, 11, 53)?.iter().any(|&b| b != 0) {
        return None;
    }
    let sector_shift = u32::from(byte(bs, 108)?);
    let cluster_shift = u32::from(byte(bs, 109)?);
    // sectors 512..4096 bytes, clusters up to 32 MiB (exFAT specification §3.1.14–15)
    if !(9..=12).contains(&sector_shift) || sector_shift + cluster_shift > 25 {
        return None;
    }
    let sector = 1u64 << sector_shift;
    let geo = Exfat {
        sector,
        cluster: sector << cluster_shift,
        fat_offset: u64::from(le32(bs, 80)?).checked_mul(sector)?,
        heap_offset: u64::from(le32(bs, 88)?).checked_mul(sector)?,
        cluster_count: le32(bs, 92)?,
    };
    let root = le32(bs, 96)?;
    let dir = exfat_scan_root(dev, &geo, root);
    let used_bytes = match dir.bitmap {
        Some((first, len)) if exfat_checksum_ok(dev, &geo) => exfat_used(dev, &geo, first, len),
        _ => None,
    };
    Some(FsInfo {
        kind: FsKind::Exfat,
        label: dir.label,
        uuid: fat_serial(arr(bs, 100)?),
        used_bytes,
    })
}

/// The boot-region checksum (exFAT specification §3.4): sectors 0–10, skipping VolumeFlags and
/// PercentInUse, must match every 32-bit word of sector 11.
fn exfat_checksum_ok(dev: &dyn BlockDev, geo: &Exfat) -> bool {
    let Some(region) = read_exact_soft(dev, 0, geo.sector * 12) else {
        return false;
    };
    let split = (geo.sector * 11) as usize; // at most 11 × 4096
    let (summed, expected) = region.split_at(split.min(region.len()));
    let mut sum: u32 = 0;
    for (i, &b) in summed.iter().enumerate() {
        if matches!(i, 106 | 107 | 112) {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(u32::from(b));
    }
    expected.chunks_exact(4).all(|w| le32(w, 0) == Some(sum))
}

#[derive(Default)]
struct ExfatRoot {
    label: Option<String>,
    /// First cluster and length in bytes of the first allocation bitmap.
    bitmap: Option<(u32, u64)>,
}

fn exfat_scan_root(dev: &dyn BlockDev, geo: &Exfat, root: u32) -> ExfatRoot {
    let mut found = ExfatRoot::default();
    let mut have_label = false;
    let mut visit = |e: &[u8]| -> bool {
        match byte(e, 0) {
            None | Some(0x00) => return true, // end of directory
            Some(0x83) => {
                let chars = usize::from(byte(e, 1).unwrap_or(0)).min(11);
                found.label = field(e, 2, chars * 2).and_then(|raw| utf16_label(raw, false));
                have_label = true;
            }
            // first allocation bitmap (BitmapFlags bit 0 clear)
            Some(0x81) if found.bitmap.is_none() && byte(e, 1).unwrap_or(1) & 1 == 0 => {
                found.bitmap = le32(e, 20).zip(le64(e, 24));
            }
            _ => {}
        }
        have_label && found.bitmap.is_some()
    };
    let mut budget = DIR_SCAN_BYTES;
    let mut cluster = root;
    for _ in 0..CHAIN_MAX {
        let Some(at) = geo.cluster_offset(cluster) else {
            break;
        };
        if scan_dir(dev, at, geo.cluster, &mut budget, &mut visit) {
            break;
        }
        match geo.next_cluster(dev, cluster) {
            Some(next) => cluster = next,
            None => break,
        }
    }
    found
}

/// Heap offset plus allocated clusters, counted in the allocation bitmap. The bitmap is read as
/// one contiguous run from its first cluster, as the Linux exfat driver does.
fn exfat_used(dev: &dyn BlockDev, geo: &Exfat, first: u32, len: u64) -> Option<u64> {
    let bits = u64::from(geo.cluster_count);
    let need = bits.div_ceil(8);
    if need > len || need > BITMAP_MAX_BYTES {
        return None;
    }
    let at = geo.cluster_offset(first)?;
    let allocated = count_bits(dev, at, bits)?;
    geo.heap_offset
        .checked_add(allocated.checked_mul(geo.cluster)?)
}

/// Counts set bits among the first `bits` bits at `offset`, reading in bounded chunks.
fn count_bits(dev: &dyn BlockDev, offset: u64, bits: u64) -> Option<u64> {
    let bytes = bits.div_ceil(8);
    let mut done = 0u64;
    let mut ones = 0u64;
    while done < bytes {
        let n = (bytes - done).min(COUNT_CHUNK);
        let chunk = read_exact_soft(dev, offset.checked_add(done)?, n)?;
        for (i, &b) in chunk.iter().enumerate() {
            let first_bit = (done + i as u64) * 8;
            let valid = bits.saturating_sub(first_bit).min(8);
            let mask = if valid >= 8 { 0xFF } else { (1u8 << valid) - 1 };
            ones += u64::from((b & mask).count_ones());
        }
        done += n;
    }
    Some(ones)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;
    use std::process::Command;

    #[test]
    fn exfat_image_matches_blkid_and_dump() {
        let Some((img, info)) = mkfs_case(64 << 20, "mkfs.exfat", &["-L", "ExLab"]) else {
            return;
        };
        assert_eq!(
            (info.kind, info.label.as_deref()),
            (FsKind::Exfat, Some("ExLab"))
        );
        assert!(info.uuid.is_some());
        let Some(dump) = tool("dump.exfat") else {
            return;
        };
        let text = output(Command::new(dump).arg(&img.path));
        let sector = 1u64 << kv(&text, "Sector Size Bits");
        let heap = kv(&text, "Cluster Heap Offset (sector offset)") * sector;
        let used = kv(&text, "Total Clusters") - kv(&text, "Free Clusters");
        assert_eq!(
            info.used_bytes,
            Some(heap + used * kv(&text, "Cluster size"))
        );
        // a damaged boot-region checksum keeps the kind and label, not the count
        patch(&img.path, 0x70, &[0x01]);
        patch(&img.path, 0x1F0, &[0xAB]);
        let damaged = detect_file(&img.path).unwrap();
        assert_eq!(
            (damaged.kind, damaged.label.as_deref(), damaged.used_bytes),
            (FsKind::Exfat, Some("ExLab"), None)
        );
    }
}
