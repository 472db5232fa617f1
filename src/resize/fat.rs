//! Growing a FAT12, FAT16 or FAT32 volume in place to fill a larger partition.
//!
//! Only the sector count in the boot sector changes, so the reserved sectors, the FATs, the
//! FAT12/16 root directory and every data cluster stay where they are. The volume grows by
//! as many whole clusters as all of these allow:
//! - the partition: `(partition sectors − data start) / sectors per cluster`;
//! - the FAT: a FAT of `L` bytes addresses `L × 8 / bits per entry − 2` clusters (Linux
//!   `calc_fat_clusters` in `fs/fat/inode.c` refuses more). Enlarging the FAT would move the
//!   data area, which is not done in place;
//! - the FAT type, which every implementation derives from the cluster count: at most 4084
//!   clusters for FAT12, 65524 for FAT16 and 0x0FFFFFF5 for FAT32 (the limits of
//!   [`crate::fsmap::fat`], whose BPB parser this module uses). The type never changes;
//! - the sector count field: 32 bits, or only the 16-bit `BPB_TotSec16` on a FAT12/16 boot
//!   sector without an extended BPB, where offset 32 may belong to the boot code.
//!
//! When a limit other than the partition stops the growth, [`FatGrow::limit`] says which.
//! When the partition has room for less than one more cluster, nothing is written.
//!
//! Geometry rules are those of [`crate::fsmap::fat`], which validates the boot sector and
//! checks the dirty flags first: a volume it would not map is not grown.
//!
//! Write order, chosen so that a crash at any point leaves a consistent volume: (1) the FAT
//! entries of the new clusters are zeroed in every FAT copy (they lie beyond the old cluster
//! count, so every implementation ignores them until the count grows); (2) on FAT32, the
//! backup boot sector gets the new count and the FSInfo free-cluster count (primary and
//! backup) becomes "unknown" (0xFFFFFFFF, which fsck.fat, Linux and Windows recompute); (3)
//! last, the primary boot sector, whose sector count is the one every implementation reads.
//! The device is synced after steps 1, 2 and 3, so the primary boot sector never reaches the
//! disk before the zeroed entries. Until step 3 the volume is the old one; after it, the new.
//!
//! Units: sectors of the BPB's bytes-per-sector (not the device's logical sector size) unless
//! a name says bytes.

use crate::blockdev::{read_vec, BlockDev};
use crate::bytes::{byte, le16, le32};
use crate::error::{Error, Result};
use crate::fsmap::fat::{Bpb, FatType};

/// What growing a FAT volume did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FatGrow {
    /// Volume size in bytes before (total sectors × bytes per sector).
    pub old_bytes: u64,
    /// Volume size in bytes after (equal to old_bytes when nothing could be grown).
    pub new_bytes: u64,
    /// Cluster count before.
    pub old_clusters: u64,
    /// Cluster count after.
    pub new_clusters: u64,
    /// Set when the volume could not fill the partition, in words for the user: e.g. "the FAT
    /// has room for only N more clusters; moving the data area to enlarge the FAT is not done
    /// in place", or "FAT16 cannot hold more than 65524 clusters without becoming FAT32".
    pub limit: Option<String>,
}

/// Bytes of zeros written per call when clearing FAT16/32 entries.
const ZERO_CHUNK: u64 = 1 << 20;
/// FSInfo signatures at bytes 0, 484 and 508, and the free-cluster count at byte 488.
const FSINFO_LEAD: u32 = 0x4161_5252;
const FSINFO_STRUC: u32 = 0x6141_7272;
const FSINFO_TRAIL: u32 = 0xAA55_0000;
const FSINFO_FREE: usize = 488;

/// Why the cluster count stops at the type's maximum, in words for the user.
fn limit_text(t: FatType) -> String {
    let max = t.max_clusters();
    match t {
        FatType::Fat12 => {
            format!("FAT12 cannot hold more than {max} clusters without becoming FAT16")
        }
        FatType::Fat16 => {
            format!("FAT16 cannot hold more than {max} clusters without becoming FAT32")
        }
        FatType::Fat32 => format!("FAT32 cannot hold more than {max} clusters"),
    }
}

/// The new sector count and the boot sector field that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TotalField {
    /// `BPB_TotSec16` (offset 19), `BPB_TotSec32` left as it was.
    Sec16(u16),
    /// `BPB_TotSec16` = 0 and `BPB_TotSec32` (offset 32).
    Sec32(u32),
}

/// The volume's geometry and what growing it changes. Built from the boot sector and the
/// partition size alone, without I/O, so it can be checked before the first write.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    kind: FatType,
    bytes_per_sector: u64,
    /// Byte offset of the first FAT copy, and the length of one copy in bytes.
    fat_start: u64,
    fat_bytes: u64,
    fats: u64,
    old_total: u64,
    new_total: u64,
    old_clusters: u64,
    new_clusters: u64,
    /// Where the new count goes; `None` when nothing grows.
    field: Option<TotalField>,
    /// FAT32 sector numbers of the backup boot sector, the FSInfo sector and the backup
    /// FSInfo sector (backup boot + FSInfo), when they lie in the reserved sectors.
    backup_boot: Option<u64>,
    fsinfo: Option<u64>,
    backup_fsinfo: Option<u64>,
    limit: Option<String>,
}

impl Plan {
    /// Writes the new sector count into a copy of the boot sector.
    fn patch(&self, sector: &mut [u8]) {
        match self.field {
            Some(TotalField::Sec16(t)) => sector[19..21].copy_from_slice(&t.to_le_bytes()),
            Some(TotalField::Sec32(t)) => {
                sector[19..21].fill(0);
                sector[32..36].copy_from_slice(&t.to_le_bytes());
            }
            None => {}
        }
    }

    fn result(&self) -> FatGrow {
        FatGrow {
            old_bytes: self.old_total * self.bytes_per_sector,
            new_bytes: self.new_total * self.bytes_per_sector,
            old_clusters: self.old_clusters,
            new_clusters: self.new_clusters,
            limit: self.limit.clone(),
        }
    }
}

/// Plans growing the volume whose boot sector is `bs` (at least 512 bytes) onto a partition
/// of `dev_len` bytes. `Err` carries the reason for refusing, lowercase.
///
/// Every product below multiplies fields of at most 32 bits by at most 4096 or by 8, so the
/// arithmetic cannot overflow a u64; subtractions are guarded by the checks before them.
fn plan(bs: &[u8], dev_len: u64) -> std::result::Result<Plan, String> {
    let bpb = Bpb::parse(bs).ok_or("the boot sector is too short")?;
    bpb.check()?;
    let fat32 = bpb.is_fat32();
    if fat32 && bpb.root_entries != 0 {
        return Err("the boot sector does not describe a FAT volume".into());
    }
    let bps = u64::from(bpb.bytes_per_sector);
    let spc = u64::from(bpb.sectors_per_cluster);
    let total16 = bpb.total16;
    let old_total = bpb.total_sectors();
    let part = dev_len / bps;
    if old_total > part {
        return Err(format!(
            "the volume ({} bytes) is larger than the device ({dev_len} bytes)",
            old_total * bps
        ));
    }
    let geo = match bpb.geometry() {
        Some(g) if g.data_sectors < old_total => g,
        _ => return Err("the volume has no data area".into()),
    };
    let data = geo.data_sectors;
    let old_clusters = geo.clusters;
    let kind = geo.fat_type;
    let reserved = u64::from(bpb.reserved);

    // a FAT12/16 boot sector without an extended BPB (signature 0x28 or 0x29 at 38) may be a
    // DOS 3.0 one, whose bytes 32..36 are not a sector count
    let has_total32 = fat32 || total16 == 0 || matches!(byte(bs, 38), Some(0x28 | 0x29));
    let field_max = if has_total32 {
        u64::from(u32::MAX)
    } else {
        u64::from(u16::MAX)
    };
    let room = part.min(field_max);
    let fat_bytes = geo.fat_bytes;
    let by_partition = (part - data) / spc;
    let by_field = (room - data) / spc;
    let by_fat = (fat_bytes * 8 / kind.bits()).saturating_sub(2);
    let by_type = kind.max_clusters();
    let new_clusters = by_field.min(by_fat).min(by_type).max(old_clusters);

    let limit = (by_partition > new_clusters).then(|| {
        if new_clusters >= by_type {
            limit_text(kind)
        } else if new_clusters >= by_fat {
            match by_fat.saturating_sub(old_clusters) {
                0 => "the FAT has no room for more clusters; moving the data area to enlarge \
                      the FAT is not done in place"
                    .to_string(),
                n => format!(
                    "the FAT has room for only {n} more clusters; moving the data area to \
                     enlarge the FAT is not done in place"
                ),
            }
        } else if has_total32 {
            format!("the boot sector counts at most {field_max} sectors of {bps} bytes")
        } else {
            format!("the boot sector has no extended BPB, so its sector count stops at {field_max}")
        }
    });

    let (new_total, field) = if new_clusters == old_clusters {
        (old_total, None)
    } else {
        // the partition's last sectors too, as long as they add up to no further cluster
        let t = room.min(data + (new_clusters + 1) * spc - 1);
        let field = match u16::try_from(t) {
            Ok(t16) if total16 != 0 => TotalField::Sec16(t16),
            _ => TotalField::Sec32(
                u32::try_from(t).map_err(|_| format!("{t} sectors do not fit the boot sector"))?,
            ),
        };
        (t, Some(field))
    };

    // FAT32 keeps these in the reserved sectors; 0 and 0xFFFF mean "none"
    let sector_at = |off: usize| {
        let s = u64::from(le16(bs, off)?);
        (fat32 && s != 0 && s < reserved).then_some(s)
    };
    let backup_boot = sector_at(50);
    let fsinfo = sector_at(48).filter(|&s| Some(s) != backup_boot);
    let backup_fsinfo = backup_boot
        .zip(fsinfo)
        .map(|(b, f)| b + f)
        .filter(|&s| s < reserved);
    Ok(Plan {
        kind,
        bytes_per_sector: bps,
        fat_start: geo.fat_start,
        fat_bytes,
        fats: geo.fats,
        old_total,
        new_total,
        old_clusters,
        new_clusters,
        field,
        backup_boot,
        fsinfo,
        backup_fsinfo,
        limit,
    })
}

/// Grows the FAT volume on `dev` (the partition, whose len() is the new partition size) as
/// far as the partition, the FAT's size and the FAT type allow, in place. Never moves data.
///
/// Refuses ([`Error::Refused`], before any write) a boot sector that `fsmap::fat` does not
/// accept, including a volume already larger than `dev`, and a volume that was not cleanly
/// unmounted. Reads every FAT copy once (the dirty check), writes the FAT entries of the new
/// clusters, the boot sector(s) and FSInfo as described in the module documentation, and
/// syncs `dev` before returning. When nothing can grow, writes nothing.
pub fn grow(dev: &dyn BlockDev) -> Result<FatGrow> {
    let refuse = |reason: String| Error::Refused {
        path: dev.path().to_path_buf(),
        reason,
    };
    let map = crate::fsmap::fat::used_ranges(dev)?
        .map_err(|e| refuse(format!("not a FAT volume that can be grown: {}", e.0)))?;
    if map.dirty {
        return Err(refuse(
            "the volume was not cleanly unmounted; run fsck.fat first".into(),
        ));
    }
    let mut boot = read_vec(dev, 0, 512)?;
    let p = plan(&boot, dev.len()).map_err(refuse)?;
    if p.field.is_none() {
        return Ok(p.result());
    }

    // free the new clusters in every FAT copy
    for copy in 0..p.fats {
        zero_entries(dev, &p, p.fat_start + copy * p.fat_bytes)?;
    }
    dev.sync()?;

    // FAT32: backup boot sector, FSInfo and its backup
    let bps = p.bytes_per_sector;
    if let Some(bk) = p.backup_boot {
        let mut b = read_vec(dev, bk * bps, 512)?;
        // a backup that is not a copy of this boot sector is left as it is
        if b[510..512] == [0x55, 0xAA] && b[11..64] == boot[11..64] {
            p.patch(&mut b);
            dev.write_at(&b, bk * bps)?;
        }
    }
    for s in [p.fsinfo, p.backup_fsinfo].into_iter().flatten() {
        forget_free_count(dev, s * bps)?;
    }
    dev.sync()?;

    // primary boot sector last
    p.patch(&mut boot);
    dev.write_at(&boot, 0)?;
    dev.sync()?;
    Ok(p.result())
}

/// Fewest clusters a volume of this type may have: below them every implementation would
/// take it for another type (Microsoft's limits: FAT16 from 4085, FAT32 from 65525).
fn min_clusters(kind: FatType) -> u64 {
    match kind {
        FatType::Fat12 => 1,
        FatType::Fat16 => crate::fsmap::fat::MAX_FAT12 + 1,
        FatType::Fat32 => crate::fsmap::fat::MAX_FAT16 + 1,
    }
}

/// How far a FAT volume can shrink in place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FatMin {
    /// The volume's size now, in bytes.
    pub bytes: u64,
    /// The smallest size in bytes: where its last used cluster ends, or the fewest clusters
    /// its type allows, whichever is more.
    pub min_bytes: u64,
}

/// The checks shared by [`shrink_min`] and [`shrink`]: the volume's geometry, the end of its
/// last used byte and its boot sector.
fn shrink_geometry(dev: &dyn BlockDev) -> Result<(crate::fsmap::fat::Geometry, Bpb, u64, Vec<u8>)> {
    let refuse = |reason: String| Error::Refused {
        path: dev.path().to_path_buf(),
        reason,
    };
    let map = crate::fsmap::fat::used_ranges(dev)?
        .map_err(|e| refuse(format!("not a FAT volume that can be shrunk: {}", e.0)))?;
    if map.dirty {
        return Err(refuse(
            "the FAT volume was not cleanly unmounted; run fsck.fat first".into(),
        ));
    }
    let boot = read_vec(dev, 0, 512)?;
    let bpb = Bpb::parse(&boot).ok_or_else(|| refuse("the boot sector is too short".into()))?;
    bpb.check().map_err(refuse)?;
    let geo = bpb
        .geometry()
        .ok_or_else(|| refuse("the volume has no data area".into()))?;
    let used_end = map.ranges.last().map_or(0, |r| r.0 + r.1);
    Ok((geo, bpb, used_end, boot))
}

/// How far the FAT volume on `dev` can shrink without moving a cluster. Reads the FAT (and
/// refuses a volume `fsmap::fat` would not map, or one not cleanly unmounted).
pub fn shrink_min(dev: &dyn BlockDev) -> Result<FatMin> {
    let (geo, bpb, used_end, _) = shrink_geometry(dev)?;
    let bps = geo.bytes_per_sector;
    let used_clusters = used_end
        .saturating_sub(geo.data_start)
        .div_ceil(geo.cluster);
    let clusters = used_clusters.max(min_clusters(geo.fat_type));
    Ok(FatMin {
        bytes: bpb.total_sectors() * bps,
        min_bytes: geo.data_start + clusters * geo.cluster,
    })
}

/// Shrinks the FAT volume on `dev` in place to at most `new_bytes`, in whole clusters. Moves
/// nothing: refuses ([`Error::Refused`], before any write) when a used cluster lies past the
/// new end or the type would need fewer clusters than it allows. The FAT keeps its size (a
/// FAT larger than its volume needs is valid everywhere); the entries past the new count are
/// all free already. Write order as for [`grow`]: the FAT32 backup boot sector and the FSInfo
/// free count and next-free hint ("unknown") first, the primary boot sector last, with a sync
/// in between. Returns the new size in bytes.
pub fn shrink(dev: &dyn BlockDev, new_bytes: u64) -> Result<u64> {
    let refuse = |reason: String| Error::Refused {
        path: dev.path().to_path_buf(),
        reason,
    };
    let (geo, bpb, used_end, mut boot) = shrink_geometry(dev)?;
    let bps = geo.bytes_per_sector;
    let old_total = bpb.total_sectors();
    let spc = geo.cluster / bps;
    if new_bytes >= old_total * bps {
        return Ok(old_total * bps);
    }
    let new_clusters = (new_bytes / bps).saturating_sub(geo.data_sectors) / spc;
    let new_total = geo.data_sectors + new_clusters * spc;
    if new_clusters < min_clusters(geo.fat_type) {
        return Err(refuse(format!(
            "a {} volume needs at least {} clusters; {new_bytes} bytes hold {new_clusters}",
            geo.fat_type.kind().blkid_name(),
            min_clusters(geo.fat_type)
        )));
    }
    if used_end > new_total * bps {
        return Err(refuse(format!(
            "its data reaches byte {used_end}, past the new end at {}; clusters are not moved",
            new_total * bps
        )));
    }
    let fat32 = bpb.is_fat32();
    let patch = |b: &mut [u8]| {
        if !fat32 && bpb.total16 != 0 {
            if let Ok(t) = u16::try_from(new_total) {
                b[19..21].copy_from_slice(&t.to_le_bytes());
                return;
            }
        }
        b[19..21].fill(0);
        b[32..36].copy_from_slice(&(new_total as u32).to_le_bytes());
    };
    if fat32 {
        let reserved = u64::from(bpb.reserved);
        let sector_at = |off: usize| {
            let s = u64::from(le16(&boot, off).unwrap_or(0));
            (s != 0 && s < reserved).then_some(s)
        };
        let backup = sector_at(50);
        let fsinfo = sector_at(48).filter(|&s| Some(s) != backup);
        if let Some(bk) = backup {
            let mut b = read_vec(dev, bk * bps, 512)?;
            if b[510..512] == [0x55, 0xAA] && b[11..64] == boot[11..64] {
                patch(&mut b);
                dev.write_at(&b, bk * bps)?;
            }
        }
        let backup_fsinfo = backup
            .zip(fsinfo)
            .map(|(b, f)| b + f)
            .filter(|&s| s < reserved);
        for s in [fsinfo, backup_fsinfo].into_iter().flatten() {
            forget_free_count(dev, s * bps)?;
        }
        dev.sync()?;
    }
    patch(&mut boot);
    dev.write_at(&boot, 0)?;
    dev.sync()?;
    Ok(new_total * bps)
}

/// Zeroes FAT entries `old_clusters + 2 .. new_clusters + 2` of the FAT copy at byte `fat`.
/// FAT12 packs two entries in three bytes, so the nibble shared with the last old entry (or
/// the first entry past the new count) is kept.
fn zero_entries(dev: &dyn BlockDev, p: &Plan, fat: u64) -> Result<()> {
    let (first, end) = (p.old_clusters + 2, p.new_clusters + 2);
    if p.kind == FatType::Fat12 {
        // at most 4086 entries, so at most 6129 bytes
        let lo = first * 3 / 2;
        let hi = (end * 3).div_ceil(2);
        let mut buf = read_vec(dev, fat + lo, (hi - lo) as usize)?;
        for i in first..end {
            let at = (i * 3 / 2 - lo) as usize;
            if i.is_multiple_of(2) {
                buf[at] = 0;
                buf[at + 1] &= 0xF0;
            } else {
                buf[at] &= 0x0F;
                buf[at + 1] = 0;
            }
        }
        return dev.write_at(&buf, fat + lo);
    }
    let width = p.kind.bits() / 8;
    let (mut off, end) = (first * width, end * width);
    let zeros = vec![0u8; ZERO_CHUNK.min(end - off) as usize];
    while off < end {
        let n = ZERO_CHUNK.min(end - off) as usize;
        dev.write_at(&zeros[..n], fat + off)?;
        off += n as u64;
    }
    Ok(())
}

/// Sets the free-cluster count of the FSInfo sector at byte `off` to "unknown", if the
/// sector carries all three FSInfo signatures; otherwise leaves it alone.
fn forget_free_count(dev: &dyn BlockDev, off: u64) -> Result<()> {
    let mut s = read_vec(dev, off, 512)?;
    if le32(&s, 0) == Some(FSINFO_LEAD)
        && le32(&s, 484) == Some(FSINFO_STRUC)
        && le32(&s, 508) == Some(FSINFO_TRAIL)
    {
        s[FSINFO_FREE..FSINFO_FREE + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        // the next-free hint may point past a shrunk volume's end: "unknown" too
        s[FSINFO_FREE + 4..FSINFO_FREE + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        dev.write_at(&s, off)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::testing::FaultyDev;
    use crate::blockdev::{FileDev, MemDev, OpenMode};
    use crate::fsmap::fat::MAX_FAT32;
    use crate::units::MIB;
    use crate::units::{le_u16, le_u32};
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    // ---- synthetic boot sectors ----------------------------------------------------------

    /// The BPB fields a test varies; 512-byte sectors, media 0xF8.
    #[derive(Clone, Copy)]
    struct Bpb {
        spc: u8,
        reserved: u16,
        fats: u8,
        root: u16,
        total: u32,
        fat_len: u32,
        fat32: bool,
        ebpb: bool,
    }

    const FAT16: Bpb = Bpb {
        spc: 4,
        reserved: 1,
        fats: 2,
        root: 512,
        total: 20_000,
        fat_len: 32,
        fat32: false,
        ebpb: true,
    };
    const FAT12: Bpb = Bpb {
        spc: 1,
        reserved: 1,
        fats: 2,
        root: 224,
        total: 2880,
        fat_len: 12,
        fat32: false,
        ebpb: true,
    };
    const FAT32: Bpb = Bpb {
        spc: 16,
        reserved: 32,
        fats: 2,
        root: 0,
        total: 6_000_000,
        fat_len: 0x0020_0000,
        fat32: true,
        ebpb: true,
    };

    fn boot(b: &Bpb) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[13] = b.spc;
        s[14..16].copy_from_slice(&b.reserved.to_le_bytes());
        s[16] = b.fats;
        s[17..19].copy_from_slice(&b.root.to_le_bytes());
        match u16::try_from(b.total) {
            Ok(t) if !b.fat32 => s[19..21].copy_from_slice(&t.to_le_bytes()),
            _ => s[32..36].copy_from_slice(&b.total.to_le_bytes()),
        }
        s[21] = 0xF8;
        if b.fat32 {
            s[36..40].copy_from_slice(&b.fat_len.to_le_bytes());
            s[44] = 2; // root directory cluster
            s[48] = 1; // FSInfo
            s[50] = 6; // backup boot sector
            s[66] = if b.ebpb { 0x29 } else { 0 };
        } else {
            s[22..24].copy_from_slice(&(b.fat_len as u16).to_le_bytes());
            s[38] = if b.ebpb { 0x29 } else { 0 };
        }
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    #[test]
    fn plans() {
        use TotalField::{Sec16, Sec32};
        // (name, BPB, partition sectors, new clusters, new total, field, limit contains)
        #[allow(clippy::type_complexity)]
        let cases: [(&str, Bpb, u64, u64, u64, Option<TotalField>, Option<&str>); 11] = [
            // data starts at 97; 4975 clusters; the FAT addresses 8190
            (
                "fat16 fills the partition",
                FAT16,
                30_000,
                7475,
                30_000,
                Some(Sec16(30_000)),
                None,
            ),
            (
                "fat16 outgrows BPB_TotSec16",
                Bpb {
                    fat_len: 128,
                    ..FAT16
                },
                70_000,
                17_427,
                70_000,
                Some(Sec32(70_000)),
                None,
            ),
            (
                "fat16 stops at its FAT",
                FAT16,
                100_000,
                8190,
                97 + 8191 * 4 - 1,
                Some(Sec16(32_860)),
                Some("the FAT has room for only 3215 more clusters; moving the data area"),
            ),
            (
                "fat16 stops at its type",
                Bpb {
                    spc: 1,
                    fat_len: 256,
                    total: 10_000,
                    ..FAT16
                },
                100_000,
                65_524,
                545 + 65_524,
                Some(Sec32(66_069)),
                Some("FAT16 cannot hold more than 65524 clusters without becoming FAT32"),
            ),
            (
                "fat16 without an extended BPB keeps a 16-bit count",
                Bpb {
                    spc: 1,
                    fat_len: 256,
                    total: 10_000,
                    ebpb: false,
                    ..FAT16
                },
                100_000,
                65_535 - 545,
                65_535,
                Some(Sec16(65_535)),
                Some("no extended BPB"),
            ),
            (
                "fat12 stops at its type",
                FAT12,
                8000,
                4084,
                39 + 4084,
                Some(Sec16(4123)),
                Some("FAT12 cannot hold more than 4084 clusters without becoming FAT16"),
            ),
            (
                "fat12 stops at its FAT",
                Bpb {
                    fat_len: 9,
                    ..FAT12
                },
                8000,
                3070,
                33 + 3070,
                Some(Sec16(3103)),
                Some("the FAT has room for only 223 more clusters"),
            ),
            (
                "fat32 stops at 2^32 - 1 sectors",
                FAT32,
                1 << 34,
                (u64::from(u32::MAX) - 4_194_336) / 16,
                u64::from(u32::MAX),
                Some(Sec32(u32::MAX)),
                Some("the boot sector counts at most 4294967295 sectors of 512 bytes"),
            ),
            (
                "fat32 stops at its type",
                Bpb { spc: 8, ..FAT32 },
                1 << 34,
                MAX_FAT32,
                4_194_336 + MAX_FAT32 * 8 + 7,
                Some(Sec32(4_194_336 + 0x0FFF_FFF5 * 8 + 7)),
                Some("FAT32 cannot hold more than 268435445 clusters"),
            ),
            (
                "less than one more cluster: nothing to do",
                Bpb {
                    total: 97 + 4975 * 4,
                    ..FAT16
                },
                20_000,
                4975,
                97 + 4975 * 4,
                None,
                None,
            ),
            (
                "a full FAT: nothing to do",
                Bpb {
                    total: 97 + 8190 * 4,
                    ..FAT16
                },
                100_000,
                8190,
                97 + 8190 * 4,
                None,
                Some("the FAT has no room for more clusters"),
            ),
        ];
        for (name, bpb, part, clusters, total, field, limit) in cases {
            let p = plan(&boot(&bpb), part * 512).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(p.new_clusters, clusters, "{name}");
            assert_eq!(p.new_total, total, "{name}");
            assert_eq!(p.field, field, "{name}");
            // the new total holds exactly the new clusters
            let data = p.fat_start / 512 + p.fats * p.fat_bytes / 512 + u64::from(bpb.root) / 16;
            assert_eq!((total - data) / u64::from(bpb.spc), clusters, "{name}");
            match (limit, &p.limit) {
                (None, None) => {}
                (Some(want), Some(got)) => assert!(got.contains(want), "{name}: {got}"),
                _ => panic!("{name}: limit {:?}", p.limit),
            }
        }
        let p = plan(&boot(&FAT32), 1 << 40).unwrap();
        assert_eq!(
            (p.backup_boot, p.fsinfo, p.backup_fsinfo),
            (Some(6), Some(1), Some(7))
        );
        assert_eq!(
            plan(&boot(&FAT16), 100_000 * 512).unwrap().backup_boot,
            None
        );
        // a FAT too short for the volume (fsmap refuses it first) plans no growth, no panic
        let p = plan(
            &boot(&Bpb {
                fat_len: 2,
                ..FAT16
            }),
            30_000 * 512,
        )
        .unwrap();
        assert_eq!((p.new_clusters, p.field), (4990, None));
        let e = plan(&boot(&FAT16), 19_999 * 512).unwrap_err();
        assert!(e.contains("larger than the device"), "{e}");
    }

    // ---- synthetic volumes in memory -----------------------------------------------------

    /// The [`FAT16`] volume on a device of `dev_sectors`, every FAT byte past the 4975
    /// clusters filled with 0xAB.
    fn fat16_image(dev_sectors: usize) -> Vec<u8> {
        let mut img = vec![0u8; dev_sectors * 512];
        img[..512].copy_from_slice(&boot(&FAT16));
        for fat in [512, 512 + 32 * 512] {
            img[fat..fat + 4].copy_from_slice(&[0xF8, 0xFF, 0xFF, 0xFF]);
            img[fat + 4977 * 2..fat + 32 * 512].fill(0xAB);
        }
        img
    }

    fn refused(r: Result<FatGrow>) -> String {
        match r {
            Err(Error::Refused { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn grows_in_memory_and_zeroes_only_the_new_entries() {
        let dev = MemDev::from_vec(fat16_image(30_000), 512);
        let g = grow(&dev).unwrap();
        assert_eq!(
            g,
            FatGrow {
                old_bytes: 20_000 * 512,
                new_bytes: 30_000 * 512,
                old_clusters: 4975,
                new_clusters: 7475,
                limit: None,
            }
        );
        let img = dev.to_vec();
        assert_eq!(le_u16(&img, 19), 30_000);
        for fat in [512, 512 + 32 * 512] {
            assert!(img[fat + 4977 * 2..fat + 7477 * 2].iter().all(|&b| b == 0));
            assert!(img[fat + 7477 * 2..fat + 32 * 512]
                .iter()
                .all(|&b| b == 0xAB));
        }
        let map = crate::fsmap::fat::used_ranges(&dev).unwrap().unwrap();
        assert_eq!(map.ranges, vec![(0, 97 * 512)]);
        // again: nothing left to grow, nothing written
        let g2 = grow(&dev).unwrap();
        assert_eq!((g2.old_clusters, g2.new_clusters), (7475, 7475));
        assert_eq!(g2.new_bytes, g2.old_bytes);
        assert_eq!(g2.limit, None);
        assert_eq!(dev.to_vec(), img);
    }

    #[test]
    fn a_failed_write_leaves_the_old_volume() {
        // the boot sector is written last: failing it leaves the FATs zeroed, the count old
        let dev = FaultyDev::new(MemDev::from_vec(fat16_image(30_000), 512)).fail_writes(0..512);
        assert!(matches!(grow(&dev), Err(Error::Write { offset: 0, .. })));
        let img = dev.inner().to_vec();
        assert_eq!(le_u16(&img, 19), 20_000);
        assert!(img[512 + 4977 * 2..512 + 7477 * 2].iter().all(|&b| b == 0));
        // a failing second FAT copy stops everything before the boot sector
        let second = 512 + 32 * 512;
        let dev = FaultyDev::new(MemDev::from_vec(fat16_image(30_000), 512))
            .fail_writes(second..second + 32 * 512);
        assert!(matches!(grow(&dev), Err(Error::Write { .. })));
        assert_eq!(le_u16(&dev.inner().to_vec(), 19), 20_000);
        let map = crate::fsmap::fat::used_ranges(&dev).unwrap().unwrap();
        assert!(!map.dirty);
    }

    #[test]
    fn refusals_write_nothing() {
        type Edit = fn(&mut Vec<u8>);
        let cases: [(&str, usize, Edit, &str); 5] = [
            ("not FAT", 30_000, |i| i.fill(0), "not a FAT volume"),
            (
                "larger than the device",
                19_000,
                |_| {},
                "exceed the partition",
            ),
            (
                "boot sector dirty bit",
                30_000,
                |i| i[0x25] = 1,
                "not cleanly unmounted; run fsck.fat first",
            ),
            (
                "FAT clean-shutdown bit clear",
                30_000,
                |i| i[512 + 3] = 0x7F,
                "not cleanly unmounted",
            ),
            ("tiny device", 0, |_| {}, "not a FAT volume"),
        ];
        for (name, sectors, edit, want) in cases {
            let mut img = fat16_image(30_000);
            img.truncate(sectors * 512);
            edit(&mut img);
            let dev = MemDev::from_vec(img.clone(), 512);
            let reason = refused(grow(&dev));
            assert!(reason.contains(want), "{name}: {reason}");
            assert!(dev.to_vec() == img, "{name}: the device was written");
        }
    }

    // ---- real filesystems from mkfs.fat --------------------------------------------------

    /// Finds a program in PATH or the sbin directories. Missing: fails under CI=true,
    /// otherwise prints SKIP and returns None.
    fn tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
        let found = std::env::split_paths(&path)
            .chain(extra)
            .map(|d| d.join(name))
            .find(|p| p.is_file());
        assert!(
            found.is_some() || std::env::var("CI").as_deref() != Ok("true"),
            "{name} is required when CI=true"
        );
        if found.is_none() {
            eprintln!("SKIP: {name} is not installed");
        }
        found
    }

    /// mkfs.fat, fsck.fat and mcopy, or None (and a SKIP note) when one is missing.
    struct Tools {
        mkfs: PathBuf,
        fsck: PathBuf,
        mcopy: PathBuf,
    }

    fn tools() -> Option<Tools> {
        Some(Tools {
            mkfs: tool("mkfs.fat")?,
            fsck: tool("fsck.fat")?,
            mcopy: tool("mcopy")?,
        })
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().expect("spawning a tool");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{cmd:?} failed: {text}");
        text
    }

    impl Tools {
        /// `fsck.fat -n` must find nothing to repair; returns (used, total) clusters.
        fn fsck(&self, img: &Path) -> (u64, u64) {
            let out = run(Command::new(&self.fsck).arg("-n").arg(img));
            let counts = out
                .split_whitespace()
                .find(|w| w.contains('/') && w.split('/').all(|n| n.parse::<u64>().is_ok()))
                .unwrap_or_else(|| panic!("no cluster counts in {out}"));
            let (used, total) = counts.split_once('/').unwrap();
            (used.parse().unwrap(), total.parse().unwrap())
        }

        fn mcopy(&self, img: &Path, from: &str, to: &str) {
            run(Command::new(&self.mcopy)
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(img)
                .args(["-o", from, to]));
        }
    }

    /// Deterministic file content.
    fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// The geometry of a volume, parsed here independently of `plan`.
    #[derive(Debug)]
    struct Geo {
        bits: u64,
        spc: u64,
        fat_start: u64,
        fat_bytes: u64,
        fats: u64,
        data: u64,
        total: u64,
    }

    fn geo(f: &File) -> Geo {
        let mut b = [0u8; 512];
        f.read_exact_at(&mut b, 0).unwrap();
        assert_eq!(le_u16(&b, 11), 512);
        let spc = u64::from(b[13]);
        let reserved = u64::from(le_u16(&b, 14));
        let fats = u64::from(b[16]);
        let root = u64::from(le_u16(&b, 17));
        let fat_len = match le_u16(&b, 22) {
            0 => u64::from(le_u32(&b, 36)),
            n => u64::from(n),
        };
        let total = match le_u16(&b, 19) {
            0 => u64::from(le_u32(&b, 32)),
            n => u64::from(n),
        };
        let data = reserved + fats * fat_len + root / 16;
        let clusters = (total - data) / spc;
        let bits = if le_u16(&b, 22) == 0 {
            32
        } else if clusters <= 4084 {
            12
        } else {
            16
        };
        Geo {
            bits,
            spc,
            fat_start: reserved * 512,
            fat_bytes: fat_len * 512,
            fats,
            data,
            total,
        }
    }

    impl Geo {
        fn clusters(&self) -> u64 {
            (self.total - self.data) / self.spc
        }

        fn capacity(&self) -> u64 {
            self.fat_bytes * 8 / self.bits - 2
        }

        fn read_fat(&self, f: &File, copy: u64) -> Vec<u8> {
            let mut v = vec![0u8; self.fat_bytes as usize];
            f.read_exact_at(&mut v, self.fat_start + copy * self.fat_bytes)
                .unwrap();
            v
        }

        fn write_fat(&self, f: &File, copy: u64, v: &[u8]) {
            f.write_all_at(v, self.fat_start + copy * self.fat_bytes)
                .unwrap();
        }

        fn entry(&self, fat: &[u8], i: u64) -> u32 {
            let i = i as usize;
            match self.bits {
                12 => {
                    let v = u32::from(le_u16(fat, i * 3 / 2));
                    if i.is_multiple_of(2) {
                        v & 0xFFF
                    } else {
                        v >> 4
                    }
                }
                16 => u32::from(le_u16(fat, i * 2)),
                _ => le_u32(fat, i * 4),
            }
        }

        fn set_entry(&self, fat: &mut [u8], i: u64, v: u32) {
            let i = i as usize;
            match self.bits {
                12 => {
                    let at = i * 3 / 2;
                    let old = le_u16(fat, at);
                    let new = if i.is_multiple_of(2) {
                        (old & 0xF000) | (v as u16 & 0xFFF)
                    } else {
                        (old & 0x000F) | ((v as u16) << 4)
                    };
                    fat[at..at + 2].copy_from_slice(&new.to_le_bytes());
                }
                16 => fat[i * 2..i * 2 + 2].copy_from_slice(&(v as u16).to_le_bytes()),
                _ => fat[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes()),
            }
        }

        fn bad(&self) -> u32 {
            match self.bits {
                12 => 0xFF7,
                16 => 0xFFF7,
                _ => 0x0FFF_FFF7,
            }
        }
    }

    /// Garbage a stale FAT may hold past the cluster count: chain pointers to low clusters.
    fn garbage(i: u64) -> u32 {
        3 + (i % 61) as u32
    }

    /// Cuts the volume's sector count so that it holds `clusters` clusters, in BPB_TotSec16
    /// when `total16`, and marks the FAT32 free count unknown (it counted the bigger volume).
    fn shrink(f: &File, clusters: u64, total16: bool) {
        let g = geo(f);
        let total = g.data + clusters * g.spc;
        let mut sectors = vec![0u64];
        let mut b = [0u8; 512];
        f.read_exact_at(&mut b, 0).unwrap();
        if g.bits == 32 {
            sectors.push(u64::from(le_u16(&b, 50)));
            for s in [
                u64::from(le_u16(&b, 48)),
                u64::from(le_u16(&b, 48) + le_u16(&b, 50)),
            ] {
                f.write_all_at(&u32::MAX.to_le_bytes(), s * 512 + 488)
                    .unwrap();
            }
        }
        for s in sectors {
            f.read_exact_at(&mut b, s * 512).unwrap();
            if total16 {
                b[19..21].copy_from_slice(&(total as u16).to_le_bytes());
                b[32..36].fill(0);
            } else {
                b[19..21].fill(0);
                b[32..36].copy_from_slice(&(total as u32).to_le_bytes());
            }
            f.write_all_at(&b, s * 512).unwrap();
        }
    }

    /// One real-filesystem scenario.
    struct Case {
        name: &'static str,
        /// Image size for mkfs.fat, and its options.
        mkfs_bytes: u64,
        mkfs_args: &'static [&'static str],
        /// Cut the volume to this many clusters first (and into BPB_TotSec16 when set).
        shrink: Option<(u64, bool)>,
        /// Partition size when growing.
        grow_bytes: u64,
        /// Files put on the volume before growing.
        files: &'static [usize],
        /// Mark the last old cluster bad (tests the FAT12 nibble shared with the new ones).
        mark_last_bad: bool,
        /// Expected limit text, if any.
        limit: Option<&'static str>,
        /// A file that does not fit before and must fit after (0: none).
        big: usize,
    }

    fn run_case(t: &Tools, c: &Case) {
        let name = c.name;
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fat.img");
        File::create(&img).unwrap().set_len(c.mkfs_bytes).unwrap();
        run(Command::new(&t.mkfs).args(c.mkfs_args).arg(&img));
        let f = File::options().read(true).write(true).open(&img).unwrap();
        if let Some((clusters, total16)) = c.shrink {
            shrink(&f, clusters, total16);
        }
        let before = geo(&f);
        let old = before.clusters();
        assert_eq!(t.fsck(&img).1, old, "{name}");

        // files, then garbage in every FAT copy past the cluster count
        let mut files = Vec::new();
        for (k, &len) in c.files.iter().enumerate() {
            let data = pattern(k as u64 + 7, len);
            let src = dir.path().join(format!("in{k}"));
            std::fs::write(&src, &data).unwrap();
            let dst = format!("::/file number {k}.bin");
            t.mcopy(&img, src.to_str().unwrap(), &dst);
            files.push((dst, data));
        }
        for copy in 0..before.fats {
            let mut fat = before.read_fat(&f, copy);
            if c.mark_last_bad {
                before.set_entry(&mut fat, old + 1, before.bad());
            }
            for i in old + 2..before.capacity() + 2 {
                before.set_entry(&mut fat, i, garbage(i));
            }
            before.write_fat(&f, copy, &fat);
        }
        let (used, total) = t.fsck(&img);
        assert_eq!(total, old, "{name}");
        let free_before = (total - used) * before.spc * 512;

        // grow onto the bigger partition
        f.set_len(c.grow_bytes).unwrap();
        let dev = FileDev::open_with_sector_size(&img, OpenMode::Write, 512).unwrap();
        let g = grow(&dev).unwrap_or_else(|e| panic!("{name}: {e}"));
        drop(dev);
        let part = c.grow_bytes / 512;
        let max_type = match before.bits {
            12 => 4084,
            16 => 65_524,
            _ => 0x0FFF_FFF5,
        };
        let want = ((part - before.data) / before.spc)
            .min(before.capacity())
            .min(max_type)
            .max(old);
        let want_total = if want == old {
            before.total
        } else {
            part.min(before.data + (want + 1) * before.spc - 1)
        };
        assert_eq!(
            (g.old_clusters, g.new_clusters, g.old_bytes, g.new_bytes),
            (old, want, before.total * 512, want_total * 512),
            "{name}"
        );
        match (c.limit, &g.limit) {
            (None, None) => {}
            (Some(w), Some(l)) => assert!(l.contains(w), "{name}: {l}"),
            _ => panic!("{name}: limit {:?}", g.limit),
        }
        let after = geo(&f);
        assert_eq!(after.total, want_total, "{name}");

        // the new entries are free in every copy; the old ones and those past the end kept
        for copy in 0..after.fats {
            let fat = after.read_fat(&f, copy);
            if c.mark_last_bad {
                assert_eq!(after.entry(&fat, old + 1), after.bad(), "{name}");
            }
            for i in old + 2..want + 2 {
                assert_eq!(after.entry(&fat, i), 0, "{name}: entry {i}");
            }
            for i in want + 2..after.capacity() + 2 {
                assert_eq!(after.entry(&fat, i), garbage(i), "{name}: entry {i}");
            }
        }
        if after.bits == 32 {
            let mut b = [0u8; 512];
            let mut bk = [0u8; 512];
            f.read_exact_at(&mut b, 0).unwrap();
            f.read_exact_at(&mut bk, u64::from(le_u16(&b, 50)) * 512)
                .unwrap();
            assert!(b == bk, "{name}: backup boot sector differs");
            let mut free = [0u8; 4];
            f.read_exact_at(&mut free, u64::from(le_u16(&b, 48)) * 512 + 488)
                .unwrap();
            assert_eq!(u32::from_le_bytes(free), u32::MAX, "{name}");
        }

        // fsck.fat agrees, the files are intact, and the new space is usable
        assert_eq!(t.fsck(&img).1, want, "{name}");
        let read_back = |from: &str, data: &[u8]| {
            let out = dir.path().join("out");
            let _ = std::fs::remove_file(&out);
            t.mcopy(&img, from, out.to_str().unwrap());
            assert!(
                std::fs::read(&out).unwrap() == data,
                "{name}: {from} differs"
            );
        };
        for (path, data) in &files {
            read_back(path, data);
        }
        if c.big > 0 {
            assert!(
                c.big as u64 > free_before,
                "{name}: the big file fitted before"
            );
            let data = pattern(99, c.big);
            let src = dir.path().join("big");
            std::fs::write(&src, &data).unwrap();
            t.mcopy(&img, src.to_str().unwrap(), "::/big.bin");
            t.fsck(&img);
            read_back("::/big.bin", &data);
        }
    }

    #[test]
    fn fat32_with_slack_fills_the_partition() {
        let Some(t) = tools() else { return };
        // mkfs sizes the FAT for 300 MiB; the volume is cut to 250000 clusters (~127 MiB)
        run_case(
            &t,
            &Case {
                name: "fat32",
                mkfs_bytes: 300 * MIB,
                mkfs_args: &["-F", "32", "-s", "1", "-S", "512"],
                shrink: Some((250_000, false)),
                grow_bytes: 300 * MIB,
                files: &[40 << 20, 3 << 20, 1000],
                mark_last_bad: true,
                limit: None,
                big: 100 << 20,
            },
        );
    }

    #[test]
    fn fat16_with_slack_fills_the_partition() {
        let Some(t) = tools() else { return };
        // 2 KiB clusters; the cut volume counts its sectors in BPB_TotSec16, the grown one
        // needs BPB_TotSec32
        run_case(
            &t,
            &Case {
                name: "fat16",
                mkfs_bytes: 64 * MIB,
                mkfs_args: &["-F", "16", "-s", "4", "-S", "512"],
                shrink: Some((15_001, true)),
                grow_bytes: 64 * MIB,
                files: &[1 << 20, 5 << 20, 100],
                mark_last_bad: true,
                limit: None,
                big: 40 << 20,
            },
        );
    }

    #[test]
    fn fat12_grows_to_its_type_limit() {
        let Some(t) = tools() else { return };
        // an odd old count puts the first new entry in the nibble after the last old one
        for (name, clusters) in [("fat12 odd", 2001), ("fat12 even", 2000)] {
            run_case(
                &t,
                &Case {
                    name,
                    mkfs_bytes: 2 * MIB,
                    mkfs_args: &["-F", "12", "-s", "1", "-S", "512"],
                    shrink: Some((clusters, true)),
                    grow_bytes: 4 * MIB,
                    files: &[100_000, 300_000],
                    mark_last_bad: true,
                    limit: Some("FAT12 cannot hold more than 4084 clusters without becoming FAT16"),
                    big: 1_200_000,
                },
            );
        }
    }

    #[test]
    fn no_slack_grows_only_as_far_as_the_fat() {
        let Some(t) = tools() else { return };
        // mkfs.fat sizes the FAT for the volume; only its last sector's spare entries remain
        run_case(
            &t,
            &Case {
                name: "no slack",
                mkfs_bytes: 64 * MIB,
                mkfs_args: &["-S", "512"],
                shrink: None,
                grow_bytes: 128 * MIB,
                files: &[70_000],
                mark_last_bad: false,
                limit: Some("the FAT has room for only"),
                big: 0,
            },
        );
        // and what is grown stays grown: a second run finds nothing to do
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fat.img");
        File::create(&img).unwrap().set_len(64 * MIB).unwrap();
        run(Command::new(&t.mkfs).arg("-S").arg("512").arg(&img));
        File::options()
            .write(true)
            .open(&img)
            .unwrap()
            .set_len(128 * MIB)
            .unwrap();
        let dev = FileDev::open_with_sector_size(&img, OpenMode::Write, 512).unwrap();
        let g = grow(&dev).unwrap();
        assert!(g.new_clusters > g.old_clusters && g.new_clusters - g.old_clusters < 256);
        let g2 = grow(&dev).unwrap();
        assert_eq!(
            (g2.old_clusters, g2.new_clusters),
            (g.new_clusters, g.new_clusters)
        );
        assert!(g2.limit.unwrap().contains("no room"));
    }

    #[test]
    fn real_refusals_write_nothing() {
        let Some(t) = tools() else { return };
        type Edit = fn(&File);
        let cases: [(&str, &[&str], Edit, &str); 4] = [
            (
                "fat32 dirty bit",
                &["-F", "32", "-s", "1"],
                |f| f.write_all_at(&[1], 0x41).unwrap(),
                "not cleanly unmounted; run fsck.fat first",
            ),
            (
                "fat16 clean-shutdown bit clear",
                &["-F", "16"],
                |f| {
                    let g = geo(f);
                    f.write_all_at(&[0x7F], g.fat_start + 3).unwrap();
                },
                "not cleanly unmounted",
            ),
            (
                "volume larger than the device",
                &[],
                |f| f.set_len(32 * MIB).unwrap(),
                "exceed the partition",
            ),
            (
                "not FAT",
                &[],
                |f| f.write_all_at(&[0u8; 4096], 0).unwrap(),
                "not a FAT volume",
            ),
        ];
        for (name, args, edit, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join("fat.img");
            File::create(&img).unwrap().set_len(64 * MIB).unwrap();
            run(Command::new(&t.mkfs).args(args).arg(&img));
            let f = File::options().read(true).write(true).open(&img).unwrap();
            f.set_len(128 * MIB).unwrap();
            edit(&f);
            let before = std::fs::read(&img).unwrap();
            let dev = FileDev::open_with_sector_size(&img, OpenMode::Write, 512).unwrap();
            let reason = refused(grow(&dev));
            assert!(reason.contains(want), "{name}: {reason}");
            assert!(std::fs::read(&img).unwrap() == before, "{name}: written");
        }
    }

    #[test]
    fn shrink_in_place_keeps_every_file_and_refuses_less_than_the_minimum() {
        let Some(t) = tools() else { return };
        let cases: [(&str, &[&str], u64); 2] = [
            ("fat16", &["-F", "16", "-S", "512"], 64 * MIB),
            ("fat32", &["-F", "32", "-s", "1", "-S", "512"], 128 * MIB),
        ];
        for (name, args, size) in cases {
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join("fat.img");
            File::create(&img).unwrap().set_len(size).unwrap();
            run(Command::new(&t.mkfs).args(args).arg(&img));
            let mut files = Vec::new();
            for k in 0..3u64 {
                let host = dir.path().join(format!("f{k}"));
                let data = pattern(k + 3, 700_000 + k as usize * 1000);
                std::fs::write(&host, &data).unwrap();
                t.mcopy(&img, host.to_str().unwrap(), &format!("::/f{k}"));
                files.push(data);
            }
            let dev = FileDev::open_with_sector_size(&img, OpenMode::Write, 512).unwrap();
            let m = shrink_min(&dev).unwrap();
            assert_eq!(m.bytes, size, "{name}");
            assert!(m.min_bytes < size / 2, "{name}: {m:?}");
            // below the minimum: refused, nothing written
            let before = std::fs::read(&img).unwrap();
            let e = super::shrink(&dev, m.min_bytes - 4096).unwrap_err();
            assert!(matches!(e, Error::Refused { .. }), "{name}: {e}");
            assert!(std::fs::read(&img).unwrap() == before, "{name}: written");
            // at the minimum plus 1 MiB: the volume ends there, and every file is whole
            let new = super::shrink(&dev, m.min_bytes + MIB).unwrap();
            assert!(
                new <= m.min_bytes + MIB && new >= m.min_bytes,
                "{name}: {new}"
            );
            drop(dev);
            File::options()
                .write(true)
                .open(&img)
                .unwrap()
                .set_len(new)
                .unwrap();
            t.fsck(&img);
            for (k, data) in files.iter().enumerate() {
                let out = dir.path().join(format!("out{k}"));
                t.mcopy(&img, &format!("::/f{k}"), out.to_str().unwrap());
                assert!(std::fs::read(&out).unwrap() == *data, "{name}: f{k}");
            }
        }
    }
}
