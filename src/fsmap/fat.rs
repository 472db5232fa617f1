//! Used-block map of FAT12, FAT16 and FAT32, read from the file allocation tables.
//!
//! Used, in this order on disk: the reserved sectors (boot sector, FAT32 FSInfo and backup
//! boot sector), every FAT copy, the FAT12/16 root directory, then every data cluster whose
//! FAT entry is non-zero in *any* FAT copy: allocated, end-of-chain, reserved values and BAD
//! (0xFF7 / 0xFFF7 / 0x0FFFFFF7). Bad clusters stay in the map on purpose: what is behind them
//! is the source's business, and a later bad-cluster scan must find them where they were.
//! Sectors after the last whole cluster are unused by every implementation and are left out.
//!
//! Geometry follows the Linux driver (`fs/fat/inode.c`, `fat_fill_super`) and dosfstools:
//! data area = reserved + FATs × FAT length + root entries × 32 / sector size, clusters =
//! (total sectors − data area) / sectors per cluster, FAT12 when that is ≤ 4084, FAT16 up to
//! 65524, and FAT32 exactly when the 16-bit FAT length is zero. Where implementations could
//! disagree on the geometry the BPB is refused rather than guessed: a FAT32 BPB with fewer than
//! 65525 clusters (Windows would call it FAT16), root entries on FAT32 or none on FAT12/16, a
//! root directory that is not whole sectors, a FAT too short for the cluster count, and a
//! volume larger than the partition are all [`FatMapError`]s, and the caller then copies the
//! whole partition.
//!
//! The FATs are streamed in fixed-size chunks, so memory stays bounded whatever the volume
//! size; the map is only as big as the fragmentation of the used space.
//!
//! Output units: byte ranges relative to the filesystem's first byte.

use crate::blockdev::{read_vec, BlockDev};
use crate::error::Result;
use crate::units::{le_u16, le_u32};

/// Why a FAT map could not be built; the caller copies the whole partition instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fat filesystem: {0}")]
pub struct FatMapError(pub String);

/// The used space of one FAT volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatMap {
    /// Byte ranges `(start, len)` relative to the filesystem's first byte, sorted, merged
    /// (no two ranges touch) and inside the volume.
    pub ranges: Vec<(u64, u64)>,
    /// The volume was not cleanly unmounted: the "clean shutdown" bit of FAT entry 1 is clear
    /// (FAT16 bit 15, FAT32 bit 27, first FAT; FAT12 has no such bit), or the dirty bit 0 of
    /// the boot sector's state byte is set (offset 0x25 on FAT12/16, 0x41 on FAT32), which is
    /// where Linux (`FAT_STATE_DIRTY`) and Windows NT's chkdsk request record it.
    pub dirty: bool,
}

/// FAT entries examined per chunk (even, so a FAT12 chunk starts on a byte boundary).
const CHUNK_ENTRIES: u64 = 1 << 18;
/// Largest cluster count of FAT12 and FAT16 (Linux `MAX_FAT12`, `MAX_FAT16`).
const MAX_FAT12: u64 = 0xFF4;
const MAX_FAT16: u64 = 0xFFF4;
/// Largest cluster count of FAT32 (Linux `MAX_FAT32`).
const MAX_FAT32: u64 = 0x0FFF_FFF6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bits {
    B12,
    B16,
    B32,
}

/// Geometry from the BPB, in bytes unless named otherwise.
#[derive(Debug)]
struct Layout {
    bits: Bits,
    cluster: u64,
    fat_start: u64,
    fat_bytes: u64,
    fats: u64,
    data_start: u64,
    clusters: u64,
    boot_dirty: bool,
}

impl Layout {
    /// The FAT bytes holding entries `first..first + n` (`first` even for FAT12).
    fn entry_bytes(&self, first: u64, n: u64) -> (u64, u64) {
        match self.bits {
            Bits::B12 => (first * 3 / 2, (n * 3).div_ceil(2)),
            Bits::B16 => (first * 2, n * 2),
            Bits::B32 => (first * 4, n * 4),
        }
    }

    /// Entry `i` of a chunk read with [`Layout::entry_bytes`] starting at an even entry.
    fn entry(&self, buf: &[u8], i: usize) -> u32 {
        match self.bits {
            Bits::B12 => {
                let v = u32::from(le_u16(buf, i * 3 / 2));
                if i.is_multiple_of(2) {
                    v & 0xFFF
                } else {
                    v >> 4
                }
            }
            Bits::B16 => u32::from(le_u16(buf, i * 2)),
            Bits::B32 => le_u32(buf, i * 4) & 0x0FFF_FFFF,
        }
    }
}

fn layout(bs: &[u8], dev_len: u64) -> std::result::Result<Layout, String> {
    let bps = le_u16(bs, 0x0B);
    let spc = bs[0x0D];
    let reserved = u64::from(le_u16(bs, 0x0E));
    let fats = u64::from(bs[0x10]);
    let root_entries = u64::from(le_u16(bs, 0x11));
    let total16 = le_u16(bs, 0x13);
    let media = bs[0x15];
    let fat16_len = le_u16(bs, 0x16);
    let total32 = le_u32(bs, 0x20);
    let fat32_len = le_u32(bs, 0x24);
    if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
        return Err(format!("{bps} bytes per sector"));
    }
    if !spc.is_power_of_two() {
        return Err(format!("{spc} sectors per cluster"));
    }
    if reserved == 0 || fats == 0 {
        return Err(format!("{reserved} reserved sectors, {fats} FATs"));
    }
    if !(media >= 0xF8 || media == 0xF0) {
        return Err(format!("media byte {media:#04x}"));
    }
    let bps = u64::from(bps);
    let spc = u64::from(spc);
    let fat32 = fat16_len == 0;
    let fat_len = if fat32 {
        u64::from(fat32_len)
    } else {
        u64::from(fat16_len)
    };
    if fat_len == 0 {
        return Err("FAT length is zero".into());
    }
    let total = if total16 != 0 {
        u64::from(total16)
    } else {
        u64::from(total32)
    };
    if total * bps > dev_len {
        return Err(format!(
            "{total} sectors of {bps} bytes exceed the partition ({dev_len} bytes)"
        ));
    }
    // FAT32 keeps its root directory in clusters; FAT12/16 need a fixed one of whole sectors
    if fat32 && root_entries != 0 {
        return Err(format!("FAT32 with {root_entries} fixed root entries"));
    }
    if !fat32 && (root_entries == 0 || !(root_entries * 32).is_multiple_of(bps)) {
        return Err(format!(
            "{root_entries} root directory entries (not whole {bps}-byte sectors)"
        ));
    }
    let data_sectors = reserved + fats * fat_len + root_entries * 32 / bps;
    if data_sectors >= total {
        return Err(format!(
            "metadata ({data_sectors} sectors) fills the volume ({total} sectors)"
        ));
    }
    let clusters = (total - data_sectors) / spc;
    if clusters == 0 {
        return Err("no data clusters".into());
    }
    let bits = if fat32 {
        if clusters <= MAX_FAT16 || clusters > MAX_FAT32 {
            return Err(format!(
                "FAT32 with {clusters} clusters (needs {} to {MAX_FAT32})",
                MAX_FAT16 + 1
            ));
        }
        Bits::B32
    } else if clusters <= MAX_FAT12 {
        Bits::B12
    } else if clusters <= MAX_FAT16 {
        Bits::B16
    } else {
        return Err(format!(
            "{clusters} clusters with a 16-bit FAT length (FAT16 holds {MAX_FAT16})"
        ));
    };
    let per_entry_bits = match bits {
        Bits::B12 => 12,
        Bits::B16 => 16,
        Bits::B32 => 32,
    };
    let fat_bytes = fat_len * bps;
    let fat_entries = fat_bytes * 8 / per_entry_bits;
    if fat_entries < clusters + 2 {
        return Err(format!(
            "a FAT of {fat_entries} entries cannot describe {clusters} clusters"
        ));
    }
    if fat32 {
        let root = u64::from(le_u32(bs, 0x2C));
        if root < 2 || root >= clusters + 2 {
            return Err(format!(
                "root directory cluster {root} is outside the volume"
            ));
        }
    }
    let state = if fat32 { bs[0x41] } else { bs[0x25] };
    Ok(Layout {
        bits,
        cluster: bps * spc,
        fat_start: reserved * bps,
        fat_bytes,
        fats,
        data_start: data_sectors * bps,
        clusters,
        boot_dirty: state & 1 != 0,
    })
}

/// Reads the boot sector and the FATs of the FAT volume on `dev` and returns its used space.
///
/// `dev` is the partition (offset 0 is the boot sector). The outer `Err` is an I/O error; the
/// inner one means the BPB or the FATs do not describe a consistent volume that fits `dev`,
/// so nothing can be called unused. Reads the boot sector and every FAT copy once, in chunks
/// of at most 1 MiB.
pub fn used_ranges(dev: &dyn BlockDev) -> Result<std::result::Result<FatMap, FatMapError>> {
    if dev.len() < 512 {
        return Ok(Err(FatMapError(
            "device too small for a boot sector".into(),
        )));
    }
    let bs = read_vec(dev, 0, 512)?;
    let l = match layout(&bs, dev.len()) {
        Ok(l) => l,
        Err(e) => return Ok(Err(FatMapError(e))),
    };

    // everything before cluster 2: reserved sectors, FATs, FAT12/16 root directory
    let mut ranges: Vec<(u64, u64)> = vec![(0, l.data_start)];
    let mut push = |start: u64, len: u64| match ranges.last_mut() {
        Some(last) if last.0 + last.1 == start => last.1 += len,
        _ => ranges.push((start, len)),
    };

    let mut dirty = l.boot_dirty;
    let end = l.clusters + 2;
    let mut first = 0u64;
    let mut used = Vec::new();
    let mut run: Option<u64> = None; // first cluster of the current used run
    while first < end {
        let n = CHUNK_ENTRIES.min(end - first);
        let (off, len) = l.entry_bytes(first, n);
        used.clear();
        used.resize(n as usize, false);
        for copy in 0..l.fats {
            let buf = read_vec(dev, l.fat_start + copy * l.fat_bytes + off, len as usize)?;
            for (i, u) in used.iter_mut().enumerate() {
                *u |= l.entry(&buf, i) != 0;
            }
            if copy == 0 && first == 0 {
                let e1 = l.entry(&buf, 1);
                dirty |= match l.bits {
                    Bits::B12 => false,
                    Bits::B16 => e1 & 0x8000 == 0,
                    Bits::B32 => e1 & 0x0800_0000 == 0,
                };
            }
        }
        for (i, &u) in used.iter().enumerate() {
            let c = first + i as u64;
            if c < 2 {
                continue; // entries 0 and 1 are the media byte and the flags
            }
            match (u, run) {
                (true, None) => run = Some(c),
                (false, Some(r)) => {
                    push(l.data_start + (r - 2) * l.cluster, (c - r) * l.cluster);
                    run = None;
                }
                _ => {}
            }
        }
        first += n;
    }
    if let Some(r) = run {
        push(l.data_start + (r - 2) * l.cluster, (end - r) * l.cluster);
    }
    Ok(Ok(FatMap { ranges, dirty }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    /// A FAT16 volume: 512-byte sectors, 4 sectors per cluster, 1 reserved sector, 2 FATs of
    /// 32 sectors, 512 root entries (32 sectors), 20000 sectors in all (4975 clusters, 2..=4976).
    fn fat16() -> Vec<u8> {
        let mut img = vec![0u8; 20_000 * 512];
        let bs = &mut img[..512];
        bs[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        bs[0x0D] = 4;
        bs[0x0E..0x10].copy_from_slice(&1u16.to_le_bytes());
        bs[0x10] = 2;
        bs[0x11..0x13].copy_from_slice(&512u16.to_le_bytes());
        bs[0x13..0x15].copy_from_slice(&20_000u16.to_le_bytes());
        bs[0x15] = 0xF8;
        bs[0x16..0x18].copy_from_slice(&32u16.to_le_bytes());
        bs[510] = 0x55;
        bs[511] = 0xAA;
        for fat in [512, 512 + 32 * 512] {
            img[fat..fat + 4].copy_from_slice(&[0xF8, 0xFF, 0xFF, 0xFF]);
        }
        img
    }

    fn set16(img: &mut [u8], fat: usize, cluster: usize, v: u16) {
        let at = 512 + fat * 32 * 512 + cluster * 2;
        img[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn map(img: Vec<u8>) -> std::result::Result<FatMap, FatMapError> {
        used_ranges(&MemDev::from_vec(img, 512)).unwrap()
    }

    #[test]
    fn clusters_from_every_fat_copy_including_bad_ones() {
        let mut img = fat16();
        let data = (1 + 64 + 32) * 512;
        set16(&mut img, 0, 2, 0xFFFF);
        set16(&mut img, 0, 5, 6);
        set16(&mut img, 0, 6, 0xFFF8);
        set16(&mut img, 0, 10, 0xFFF7); // bad
        set16(&mut img, 1, 20, 0xFFFF); // only in the second copy
        set16(&mut img, 0, 4976, 0xFFFF); // last cluster
        let m = map(img).unwrap();
        let c = 2048;
        assert_eq!(
            m.ranges,
            vec![
                (0, data + c),
                (data + 3 * c, 2 * c),
                (data + 8 * c, c),
                (data + 18 * c, c),
                (data + 4974 * c, c),
            ]
        );
        assert!(!m.dirty);
    }

    #[test]
    fn dirty_bits() {
        let mut img = fat16();
        set16(&mut img, 0, 1, 0x7FFF);
        assert!(map(img).unwrap().dirty);
        let mut img = fat16();
        img[0x25] = 1;
        assert!(map(img).unwrap().dirty);
    }

    #[test]
    fn hostile_bpbs_are_errors() {
        type Edit = fn(&mut Vec<u8>);
        let cases: [(&str, Edit, &str); 9] = [
            ("odd sector size", |i| i[0x0B] = 0x01, "bytes per sector"),
            ("zero cluster", |i| i[0x0D] = 0, "sectors per cluster"),
            (
                "three sectors per cluster",
                |i| i[0x0D] = 3,
                "sectors per cluster",
            ),
            ("no FATs", |i| i[0x10] = 0, "FATs"),
            (
                "bigger than the device",
                |i| i[0x13..0x15].copy_from_slice(&40_000u16.to_le_bytes()),
                "exceed the partition",
            ),
            (
                "FAT too short",
                |i| i[0x16..0x18].copy_from_slice(&2u16.to_le_bytes()),
                "cannot describe",
            ),
            (
                "metadata fills the volume",
                |i| i[0x0E..0x10].copy_from_slice(&30_000u16.to_le_bytes()),
                "fills the volume",
            ),
            (
                "root dir not whole sectors",
                |i| i[0x11..0x13].copy_from_slice(&3u16.to_le_bytes()),
                "root directory entries",
            ),
            (
                "FAT32 with few clusters",
                |i| {
                    i[0x16..0x18].fill(0);
                    i[0x11..0x13].fill(0);
                    i[0x24..0x28].copy_from_slice(&32u32.to_le_bytes());
                },
                "FAT32 with",
            ),
        ];
        for (name, edit, want) in cases {
            let mut img = fat16();
            edit(&mut img);
            let e = map(img).unwrap_err();
            assert!(e.0.contains(want), "{name}: {e}");
        }
        assert!(used_ranges(&MemDev::new(100, 512)).unwrap().is_err());
        assert!(used_ranges(&MemDev::new(4096, 512)).unwrap().is_err());
    }

    #[test]
    fn fat12_entries_unpack() {
        // 2880 sectors, 1 sector per cluster, 2 FATs of 9 sectors, 224 root entries
        let mut img = vec![0u8; 2880 * 512];
        let bs = &mut img[..512];
        bs[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        bs[0x0D] = 1;
        bs[0x0E] = 1;
        bs[0x10] = 2;
        bs[0x11..0x13].copy_from_slice(&224u16.to_le_bytes());
        bs[0x13..0x15].copy_from_slice(&2880u16.to_le_bytes());
        bs[0x15] = 0xF0;
        bs[0x16] = 9;
        // entries 0..=5: F0 FF FF | 03 40 00 | 00 F0 FF -> 0xFF0, 0xFFF, 0x003, 0x004, 0, 0xFFF
        img[512..521].copy_from_slice(&[0xF0, 0xFF, 0xFF, 0x03, 0x40, 0x00, 0x00, 0xF0, 0xFF]);
        let m = map(img).unwrap();
        let data = (1 + 18 + 14) * 512;
        assert_eq!(m.ranges, vec![(0, data + 2 * 512), (data + 3 * 512, 512)]);
        assert!(!m.dirty);
    }
}
