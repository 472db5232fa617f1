//! FAT12, FAT16 and FAT32: the boot-sector (BPB) parser every FAT user shares, recognition
//! (kind, label, serial, used bytes), and the used-block map read from the file allocation
//! tables.
//!
//! **The BPB** (`Bpb`) is parsed here once, for detection, the map and `resize::fat`.
//! Geometry follows the Linux driver (`fs/fat/inode.c`, `fat_fill_super`) and dosfstools:
//! data area = reserved + FATs × FAT length + root directory sectors (root entries × 32 bytes,
//! rounded up to whole sectors as Microsoft's specification does; the map refuses a root
//! directory that is not whole sectors, as Linux does), clusters = (total sectors − data area)
//! / sectors per cluster, FAT12 when that is ≤ 4084 (`MAX_FAT12`), FAT16 up to 65524
//! (`MAX_FAT16`), and FAT32 exactly when the 16-bit FAT length is zero. FAT32 holds at most
//! 0x0FFFFFF5 clusters (`MAX_FAT32`): cluster numbers run from 2 to clusters + 1, and
//! 0x0FFFFFF7 is the BAD mark, so the highest usable number is 0x0FFFFFF6. Linux's
//! `MAX_FAT32` (0x0FFFFFF6) is compared with the same count and so admits one cluster more,
//! whose number would be the BAD mark itself.
//!
//! **Probe.** A boot sector is FAT when it names a FAT (or carries `55 AA` and is not an OS/2
//! pseudo-BPB in front of JFS or HPFS) and its BPB passes `Bpb::check` with a cluster count
//! its type can hold, like libblkid's `fat_valid_superblock`. The label comes from the root
//! directory only (`NO NAME` is none); `used_bytes` is the area before the data clusters plus
//! allocated clusters × cluster size, from FAT32's FSInfo hint when it is plausible, otherwise
//! by counting the first FAT when it is at most `FAT_COUNT_MAX_BYTES`.
//!
//! **Map.** Used, in this order on disk: the reserved sectors (boot sector, FAT32 FSInfo and
//! backup boot sector), every FAT copy, the FAT12/16 root directory, then every data cluster
//! whose FAT entry is non-zero in *any* FAT copy: allocated, end-of-chain, reserved values and
//! BAD (0xFF7 / 0xFFF7 / 0x0FFFFFF7). Bad clusters stay in the map on purpose: what is behind
//! them is the source's business, and a later bad-cluster scan must find them where they were.
//! Sectors after the last whole cluster are unused by every implementation and are left out.
//! Where implementations could disagree on the geometry the BPB is refused rather than
//! guessed: a FAT32 BPB with fewer than 65525 clusters (Windows would call it FAT16), root
//! entries on FAT32 or none on FAT12/16, a root directory that is not whole sectors, a FAT too
//! short for the cluster count, and a volume larger than the partition are all [`MapError`]s,
//! and the caller then copies the whole partition. The FATs are streamed in fixed-size chunks,
//! so memory stays bounded whatever the volume size; the map is only as big as the
//! fragmentation of the used space.
//!
//! Units: offsets and sizes in bytes unless a name says sectors; clusters are numbered from 2
//! as on disk. The map's output is byte ranges relative to the filesystem's first byte.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{
    fat_serial, read_exact_soft, scan_dir, text_label, CHAIN_MAX, COUNT_CHUNK, DIR_SCAN_BYTES,
};
use super::{MapError, MapResult, UsedMap};
use crate::blockdev::{read_clamped, read_vec, BlockDev};
use crate::bytes::{arr, byte, field, has, le16, le32};
use crate::error::Result;

/// FAT12/16/32 are recognised and mapped.
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

/// The family named in this module's [`MapError`]s.
pub(crate) const FAMILY: &str = "fat";

// ---------------------------------------------------------------------------------------------
// the BPB, shared by detection, the map and resize::fat

/// Largest cluster count of FAT12 (Linux `MAX_FAT12`; Microsoft: fewer than 4085).
pub(crate) const MAX_FAT12: u64 = 0xFF4;
/// Largest cluster count of FAT16 (Linux `MAX_FAT16`; Microsoft: fewer than 65525).
pub(crate) const MAX_FAT16: u64 = 0xFFF4;
/// Largest cluster count of FAT32: the highest cluster number, clusters + 1, must stay below
/// the BAD mark 0x0FFFFFF7 (see the module documentation).
pub(crate) const MAX_FAT32: u64 = 0x0FFF_FFF5;

/// The FAT entry width, which every implementation derives from the BPB (see [`Bpb::fat_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FatType {
    /// 12-bit entries, two in three bytes.
    Fat12,
    /// 16-bit entries.
    Fat16,
    /// 32-bit entries, of which the low 28 bits count.
    Fat32,
}

impl FatType {
    /// Bits per FAT entry.
    pub(crate) fn bits(self) -> u64 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        }
    }

    /// The largest cluster count of this type.
    pub(crate) fn max_clusters(self) -> u64 {
        match self {
            FatType::Fat12 => MAX_FAT12,
            FatType::Fat16 => MAX_FAT16,
            FatType::Fat32 => MAX_FAT32,
        }
    }

    /// The matching [`FsKind`].
    pub(crate) fn kind(self) -> FsKind {
        match self {
            FatType::Fat12 => FsKind::Fat12,
            FatType::Fat16 => FsKind::Fat16,
            FatType::Fat32 => FsKind::Fat32,
        }
    }

    /// The FAT bytes `(offset, len)` holding entries `first..first + n` (`first` even for
    /// FAT12, whose entries share bytes in pairs).
    pub(crate) fn entry_bytes(self, first: u64, n: u64) -> (u64, u64) {
        match self {
            FatType::Fat12 => (first * 3 / 2, (n * 3).div_ceil(2)),
            FatType::Fat16 => (first * 2, n * 2),
            FatType::Fat32 => (first * 4, n * 4),
        }
    }

    /// Entry `i` of FAT bytes that start at an even entry (see [`FatType::entry_bytes`]),
    /// without FAT32's reserved top four bits; `None` when `buf` does not hold it.
    pub(crate) fn entry(self, buf: &[u8], i: usize) -> Option<u32> {
        Some(match self {
            FatType::Fat12 => {
                let v = u32::from(le16(buf, i.checked_mul(3)? / 2)?);
                if i.is_multiple_of(2) {
                    v & 0xFFF
                } else {
                    v >> 4
                }
            }
            FatType::Fat16 => u32::from(le16(buf, i.checked_mul(2)?)?),
            FatType::Fat32 => le32(buf, i.checked_mul(4)?)? & 0x0FFF_FFFF,
        })
    }
}

/// The BIOS parameter block fields every FAT version has (bytes 0x0B..0x28 of the boot
/// sector), as stored: nothing is validated by [`Bpb::parse`]; [`Bpb::check`] does that.
/// Sizes are in sectors of `bytes_per_sector` bytes unless named otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bpb {
    /// `BPB_BytsPerSec` (0x0B).
    pub(crate) bytes_per_sector: u16,
    /// `BPB_SecPerClus` (0x0D).
    pub(crate) sectors_per_cluster: u8,
    /// `BPB_RsvdSecCnt` (0x0E): sectors before the first FAT.
    pub(crate) reserved: u16,
    /// `BPB_NumFATs` (0x10).
    pub(crate) fats: u8,
    /// `BPB_RootEntCnt` (0x11): 32-byte entries of the FAT12/16 root directory.
    pub(crate) root_entries: u16,
    /// `BPB_TotSec16` (0x13); zero when the count is in `total32`.
    pub(crate) total16: u16,
    /// `BPB_Media` (0x15).
    pub(crate) media: u8,
    /// `BPB_FATSz16` (0x16); zero on FAT32.
    pub(crate) fat16_len: u16,
    /// `BPB_TotSec32` (0x20).
    pub(crate) total32: u32,
    /// `BPB_FATSz32` (0x24); only meaningful when `fat16_len` is zero.
    pub(crate) fat32_len: u32,
}

/// Where a FAT volume's parts are, derived from a [`Bpb`] by [`Bpb::geometry`]. In bytes
/// unless named otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// The entry width, from the cluster count.
    pub(crate) fat_type: FatType,
    /// Bytes per sector.
    pub(crate) bytes_per_sector: u64,
    /// Bytes per cluster.
    pub(crate) cluster: u64,
    /// Offset of the first FAT.
    pub(crate) fat_start: u64,
    /// Length of one FAT copy.
    pub(crate) fat_bytes: u64,
    /// Number of FAT copies.
    pub(crate) fats: u64,
    /// Offset of the FAT12/16 root directory (the end of the FATs).
    pub(crate) root_start: u64,
    /// Offset of cluster 2; in sectors, `data_sectors`.
    pub(crate) data_start: u64,
    /// Sectors before cluster 2: reserved, FATs and root directory.
    pub(crate) data_sectors: u64,
    /// Data clusters (numbered 2..clusters + 2).
    pub(crate) clusters: u64,
}

impl Bpb {
    /// Reads the fields from a boot sector; `None` when `bs` is shorter than 0x28 bytes.
    pub(crate) fn parse(bs: &[u8]) -> Option<Bpb> {
        Some(Bpb {
            bytes_per_sector: le16(bs, 0x0B)?,
            sectors_per_cluster: byte(bs, 0x0D)?,
            reserved: le16(bs, 0x0E)?,
            fats: byte(bs, 0x10)?,
            root_entries: le16(bs, 0x11)?,
            total16: le16(bs, 0x13)?,
            media: byte(bs, 0x15)?,
            fat16_len: le16(bs, 0x16)?,
            total32: le32(bs, 0x20)?,
            fat32_len: le32(bs, 0x24)?,
        })
    }

    /// The field checks every implementation makes (Linux `fat_fill_super`, libblkid): a
    /// power-of-two sector size of 512 to 4096 bytes, a power-of-two cluster, reserved sectors
    /// and FATs present, a valid media byte, a non-zero FAT length. `Err` says which failed,
    /// lowercase.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let bps = self.bytes_per_sector;
        if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
            return Err(format!("{bps} bytes per sector"));
        }
        let spc = self.sectors_per_cluster;
        if !spc.is_power_of_two() {
            return Err(format!("{spc} sectors per cluster"));
        }
        if self.reserved == 0 || self.fats == 0 {
            return Err(format!(
                "{} reserved sectors, {} FATs",
                self.reserved, self.fats
            ));
        }
        let media = self.media;
        if !(media >= 0xF8 || media == 0xF0) {
            return Err(format!("media byte {media:#04x}"));
        }
        if self.fat_len() == 0 {
            return Err("FAT length is zero".into());
        }
        Ok(())
    }

    /// FAT32 exactly when the 16-bit FAT length is zero.
    pub(crate) fn is_fat32(&self) -> bool {
        self.fat16_len == 0
    }

    /// Sectors of one FAT copy.
    pub(crate) fn fat_len(&self) -> u64 {
        if self.is_fat32() {
            u64::from(self.fat32_len)
        } else {
            u64::from(self.fat16_len)
        }
    }

    /// The volume's sector count: `total16`, or `total32` when that is zero.
    pub(crate) fn total_sectors(&self) -> u64 {
        if self.total16 != 0 {
            u64::from(self.total16)
        } else {
            u64::from(self.total32)
        }
    }

    /// Sectors before cluster 2: reserved sectors, every FAT copy and the root directory
    /// (rounded up to whole sectors). `None` when the sector size is zero.
    pub(crate) fn data_sectors(&self) -> Option<u64> {
        let bps = u64::from(self.bytes_per_sector);
        if bps == 0 {
            return None;
        }
        let root_sectors = (u64::from(self.root_entries) * 32).div_ceil(bps);
        Some(u64::from(self.reserved) + u64::from(self.fats) * self.fat_len() + root_sectors)
    }

    /// The type a volume of `clusters` clusters with this BPB has.
    pub(crate) fn fat_type(&self, clusters: u64) -> FatType {
        if self.is_fat32() {
            FatType::Fat32
        } else if clusters <= MAX_FAT12 {
            FatType::Fat12
        } else {
            FatType::Fat16
        }
    }

    /// The volume's layout. `None` when the metadata is larger than the volume, or the sector
    /// or cluster size is zero (call [`Bpb::check`] first).
    pub(crate) fn geometry(&self) -> Option<Geometry> {
        let bps = u64::from(self.bytes_per_sector);
        let spc = u64::from(self.sectors_per_cluster);
        let fats = u64::from(self.fats);
        let reserved = u64::from(self.reserved);
        let fat_sectors = self.fat_len() * fats;
        let data_sectors = self.data_sectors()?;
        let clusters = self
            .total_sectors()
            .checked_sub(data_sectors)?
            .checked_div(spc)?;
        Some(Geometry {
            fat_type: self.fat_type(clusters),
            bytes_per_sector: bps,
            cluster: bps * spc,
            fat_start: reserved * bps,
            fat_bytes: self.fat_len() * bps,
            fats,
            root_start: (reserved + fat_sectors) * bps,
            data_start: data_sectors * bps,
            data_sectors,
            clusters,
        })
    }
}

impl Geometry {
    /// Byte offset of cluster `c`, or `None` when `c` is not a data cluster.
    pub(crate) fn cluster_offset(&self, c: u32) -> Option<u64> {
        let c = u64::from(c);
        if c < 2 || c > self.clusters.checked_add(1)? {
            return None;
        }
        self.data_start
            .checked_add((c - 2).checked_mul(self.cluster)?)
    }
}

// ---------------------------------------------------------------------------------------------
// probe

/// Largest FAT (bytes) whose entries are counted for `used_bytes`.
const FAT_COUNT_MAX_BYTES: u64 = 16 << 20;

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let bs = read_clamped(dev, 0, 512)?;
    Ok(parse_fat(dev, &bs))
}

fn parse_fat(dev: &dyn BlockDev, bs: &[u8]) -> Option<FsInfo> {
    let (bpb, geo) = recognise(bs)?;
    let kind = geo.fat_type.kind();
    let uuid = match kind {
        FsKind::Fat32 => fat_serial(arr(bs, 0x43)?),
        // FAT12/16 have a serial only with an extended boot signature
        _ if matches!(byte(bs, 0x26)?, 0x28 | 0x29) => fat_serial(arr(bs, 0x27)?),
        _ => None,
    };
    let label = match kind {
        FsKind::Fat32 => fat32_root_label(dev, &geo, le32(bs, 0x2C)?),
        _ => {
            let mut budget = DIR_SCAN_BYTES;
            let mut found = None;
            scan_dir(
                dev,
                geo.root_start,
                u64::from(bpb.root_entries) * 32,
                &mut budget,
                &mut fat_label_visitor(&mut found),
            );
            found
        }
    };
    let used_bytes = fat_used(dev, bs, &geo);
    Some(FsInfo {
        kind,
        // blkid's LABEL comes from the root directory only (the boot-sector copy is
        // LABEL_FATBOOT); "NO NAME" is what formatters write for "none"
        label: label
            .as_deref()
            .filter(|l| *l != b"NO NAME    ")
            .and_then(text_label),
        uuid,
        used_bytes,
    })
}

/// Recognises a FAT boot sector like libblkid's `fat_valid_superblock` and the Linux driver:
/// a FAT name or the `55 AA` signature, a BPB that passes [`Bpb::check`], and a cluster count
/// its type can hold.
fn recognise(bs: &[u8]) -> Option<(Bpb, Geometry)> {
    let named = has(bs, 0x52, b"MSWIN")
        || has(bs, 0x52, b"FAT32   ")
        || has(bs, 0x36, b"MSDOS")
        || has(bs, 0x36, b"FAT16   ")
        || has(bs, 0x36, b"FAT12   ")
        || has(bs, 0x36, b"FAT     ");
    if !named {
        if !has(bs, 510, &[0x55, 0xAA]) {
            return None;
        }
        // OS/2 puts a FAT-like pseudo-BPB in front of JFS and HPFS
        if has(bs, 0x36, b"JFS     ") || has(bs, 0x36, b"HPFS    ") {
            return None;
        }
    }
    let bpb = Bpb::parse(bs)?;
    bpb.check().ok()?;
    let geo = bpb.geometry()?;
    (geo.clusters <= geo.fat_type.max_clusters()).then_some((bpb, geo))
}

/// A visitor for [`scan_dir`] that stores the 11-byte name of the first volume-label entry,
/// skipping deleted entries, long-name entries and anything that owns clusters (libblkid
/// `search_fat_label`).
fn fat_label_visitor(found: &mut Option<Vec<u8>>) -> impl FnMut(&[u8]) -> bool + '_ {
    move |e: &[u8]| -> bool {
        match byte(e, 0) {
            None | Some(0x00) => return true,
            Some(0xE5) => return false,
            _ => {}
        }
        let attr = byte(e, 11).unwrap_or(0);
        let owns_clusters = le16(e, 20) != Some(0) || le16(e, 26) != Some(0);
        if owns_clusters || attr & 0x3F == 0x0F {
            return false;
        }
        if attr & (0x08 | 0x10) == 0x08 {
            *found = field(e, 0, 11).map(<[u8]>::to_vec);
            return true;
        }
        false
    }
}

fn fat32_root_label(dev: &dyn BlockDev, geo: &Geometry, root: u32) -> Option<Vec<u8>> {
    let mut found = None;
    {
        let mut budget = DIR_SCAN_BYTES;
        let mut visit = fat_label_visitor(&mut found);
        let mut cluster = root;
        for _ in 0..CHAIN_MAX {
            let at = geo.cluster_offset(cluster)?;
            if scan_dir(dev, at, geo.cluster, &mut budget, &mut visit) {
                break;
            }
            let entry_at = geo
                .fat_start
                .checked_add(u64::from(cluster).checked_mul(4)?)?;
            cluster = le32(&read_exact_soft(dev, entry_at, 4)?, 0)? & 0x0FFF_FFFF;
        }
    }
    found
}

/// Metadata area plus allocated clusters (see [`FsInfo::used_bytes`]).
fn fat_used(dev: &dyn BlockDev, bs: &[u8], geo: &Geometry) -> Option<u64> {
    let allocated = match geo.fat_type {
        FatType::Fat32 => match fat32_fsinfo_free(dev, bs, geo) {
            Some(free) => geo.clusters - u64::from(free),
            None => count_fat_entries(dev, geo)?,
        },
        _ => count_fat_entries(dev, geo)?,
    };
    geo.data_start
        .checked_add(allocated.checked_mul(geo.cluster)?)
}

/// The FSInfo free-cluster hint, when its signatures are right and the count is plausible.
fn fat32_fsinfo_free(dev: &dyn BlockDev, bs: &[u8], geo: &Geometry) -> Option<u32> {
    let sector = le16(bs, 0x30)?;
    if sector == 0 || sector == 0xFFFF {
        return None;
    }
    let info = read_exact_soft(
        dev,
        u64::from(sector).checked_mul(geo.bytes_per_sector)?,
        512,
    )?;
    if !has(&info, 0, b"RRaA") || !has(&info, 484, b"rrAa") {
        return None;
    }
    let free = le32(&info, 488)?;
    (u64::from(free) <= geo.clusters).then_some(free)
}

/// Counts non-free entries for clusters 2.. in the first FAT, if it is at most
/// [`FAT_COUNT_MAX_BYTES`].
fn count_fat_entries(dev: &dyn BlockDev, geo: &Geometry) -> Option<u64> {
    let t = geo.fat_type;
    let entries = geo.clusters + 2;
    if t == FatType::Fat12 {
        // at most 4086 entries: read all 6 KiB at once
        let (_, len) = t.entry_bytes(0, entries);
        let fat = read_exact_soft(dev, geo.fat_start, len)?;
        let mut used = 0;
        for n in 2..entries as usize {
            used += u64::from(t.entry(&fat, n)? != 0);
        }
        return Some(used);
    }
    let width = t.bits() / 8;
    let bytes = entries.checked_mul(width)?;
    if bytes > FAT_COUNT_MAX_BYTES {
        return None;
    }
    let mut used = 0;
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(COUNT_CHUNK);
        let chunk = read_exact_soft(dev, geo.fat_start.checked_add(done)?, n)?;
        for i in 0..(n / width) as usize {
            if done / width + (i as u64) < 2 {
                continue; // entries 0 and 1 are the media byte and flags
            }
            used += u64::from(t.entry(&chunk, i)? != 0);
        }
        done += n;
    }
    Some(used)
}

// ---------------------------------------------------------------------------------------------
// map

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

/// The geometry the map trusts, and the boot sector's dirty bit.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The checked geometry.
    pub(crate) geo: Geometry,
    boot_dirty: bool,
}

/// Validates the boot sector `bs` (512 bytes) of a volume on a partition of `dev_len` bytes
/// more strictly than recognition does: everything where implementations could disagree is
/// refused (see the module documentation). `Err` says why, lowercase.
pub(crate) fn layout(bs: &[u8], dev_len: u64) -> std::result::Result<Layout, String> {
    let bpb = Bpb::parse(bs).ok_or("the boot sector is too short")?;
    bpb.check()?;
    let bps = u64::from(bpb.bytes_per_sector);
    let fat32 = bpb.is_fat32();
    let total = bpb.total_sectors();
    if total * bps > dev_len {
        return Err(format!(
            "{total} sectors of {bps} bytes exceed the partition ({dev_len} bytes)"
        ));
    }
    // FAT32 keeps its root directory in clusters; FAT12/16 need a fixed one of whole sectors
    let root_entries = u64::from(bpb.root_entries);
    if fat32 && root_entries != 0 {
        return Err(format!("FAT32 with {root_entries} fixed root entries"));
    }
    if !fat32 && (root_entries == 0 || !(root_entries * 32).is_multiple_of(bps)) {
        return Err(format!(
            "{root_entries} root directory entries (not whole {bps}-byte sectors)"
        ));
    }
    let data_sectors = bpb.data_sectors().ok_or("zero bytes per sector")?;
    if data_sectors >= total {
        return Err(format!(
            "metadata ({data_sectors} sectors) fills the volume ({total} sectors)"
        ));
    }
    let geo = bpb.geometry().ok_or("no geometry")?;
    let clusters = geo.clusters;
    if clusters == 0 {
        return Err("no data clusters".into());
    }
    match geo.fat_type {
        FatType::Fat32 if clusters <= MAX_FAT16 || clusters > MAX_FAT32 => {
            return Err(format!(
                "FAT32 with {clusters} clusters (needs {} to {MAX_FAT32})",
                MAX_FAT16 + 1
            ));
        }
        FatType::Fat16 if clusters > MAX_FAT16 => {
            return Err(format!(
                "{clusters} clusters with a 16-bit FAT length (FAT16 holds {MAX_FAT16})"
            ));
        }
        _ => {}
    }
    let fat_entries = geo.fat_bytes * 8 / geo.fat_type.bits();
    if fat_entries < clusters + 2 {
        return Err(format!(
            "a FAT of {fat_entries} entries cannot describe {clusters} clusters"
        ));
    }
    let state_at = if fat32 {
        let root = u64::from(le32(bs, 0x2C).ok_or("the boot sector is too short")?);
        if root < 2 || root >= clusters + 2 {
            return Err(format!(
                "root directory cluster {root} is outside the volume"
            ));
        }
        0x41
    } else {
        0x25
    };
    let state = byte(bs, state_at).ok_or("the boot sector is too short")?;
    Ok(Layout {
        geo,
        boot_dirty: state & 1 != 0,
    })
}

/// Reads the boot sector and the FATs of the FAT volume on `dev` and returns its used space.
///
/// `dev` is the partition (offset 0 is the boot sector). The outer `Err` is an I/O error; the
/// inner one means the BPB or the FATs do not describe a consistent volume that fits `dev`,
/// so nothing can be called unused. Reads the boot sector and every FAT copy once, in chunks
/// of at most 1 MiB.
pub fn used_ranges(dev: &dyn BlockDev) -> MapResult<FatMap> {
    Ok(read_map(dev)?.map(|(m, _)| m))
}

/// [`used_ranges`], and the volume's type.
fn read_map(dev: &dyn BlockDev) -> MapResult<(FatMap, FatType)> {
    let bad = |why: String| Ok(Err(MapError(why, FAMILY)));
    if dev.len() < 512 {
        return bad("device too small for a boot sector".into());
    }
    let bs = read_vec(dev, 0, 512)?;
    let Layout { geo: l, boot_dirty } = match layout(&bs, dev.len()) {
        Ok(l) => l,
        Err(e) => return bad(e),
    };
    let t = l.fat_type;

    // everything before cluster 2: reserved sectors, FATs, FAT12/16 root directory
    let mut ranges: Vec<(u64, u64)> = vec![(0, l.data_start)];
    let mut push = |start: u64, len: u64| match ranges.last_mut() {
        Some(last) if last.0 + last.1 == start => last.1 += len,
        _ => ranges.push((start, len)),
    };

    let mut dirty = boot_dirty;
    let end = l.clusters + 2;
    let mut first = 0u64;
    let mut used = Vec::new();
    let mut run: Option<u64> = None; // first cluster of the current used run
    while first < end {
        let n = CHUNK_ENTRIES.min(end - first);
        let (off, len) = t.entry_bytes(first, n);
        used.clear();
        used.resize(n as usize, false);
        for copy in 0..l.fats {
            let buf = read_vec(dev, l.fat_start + copy * l.fat_bytes + off, len as usize)?;
            for (i, u) in used.iter_mut().enumerate() {
                // the chunk holds every entry it was read for; were one missing, it would
                // count as used
                *u |= t.entry(&buf, i) != Some(0);
            }
            if copy == 0 && first == 0 {
                let e1 = t.entry(&buf, 1);
                dirty |= match t {
                    FatType::Fat12 => false,
                    FatType::Fat16 => e1.is_none_or(|e| e & 0x8000 == 0),
                    FatType::Fat32 => e1.is_none_or(|e| e & 0x0800_0000 == 0),
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
    Ok(Ok((FatMap { ranges, dirty }, t)))
}

/// [`used_ranges`] in the shape every mappable filesystem shares: a dirty volume's FAT is not
/// trusted, so the map carries the reason and the caller copies every block.
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    let (m, t) = match read_map(dev)? {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let reason_unsafe = m.dirty.then(|| {
        format!(
            "{} was not cleanly unmounted (dirty bit set), so its FAT is not trusted",
            t.kind().display_name()
        )
    });
    Ok(Ok(UsedMap {
        ranges: m.ranges,
        reason_unsafe,
    }))
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

    fn map(img: Vec<u8>) -> std::result::Result<FatMap, MapError> {
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

/// The probe's tests, moved from `detect`: hand-built volumes and real ones from mkfs.fat,
/// compared with blkid and fsck.fat.
#[cfg(test)]
mod probe_tests {
    use super::*;
    use crate::fsmap::detect::detect;
    use crate::fsmap::testutil::*;
    use std::path::Path;
    use std::process::Command;

    #[test]
    fn fat16_hand_built() {
        let info = detect(&mem(fat16_image())).unwrap().unwrap();
        assert_eq!(
            info,
            FsInfo {
                kind: FsKind::Fat16,
                label: Some("ROOTLABEL".into()),
                uuid: Some("1234-ABCD".into()),
                used_bytes: Some(FAT16_META + 2 * 2048),
            }
        );
    }

    #[test]
    fn fat_label_rules() {
        // the boot-sector label is not LABEL (blkid reports it as LABEL_FATBOOT)
        let mut d = fat16_image();
        put(&mut d, (1 + 128) * 512, &[0u8; 32]);
        assert_eq!(detect(&mem(d.clone())).unwrap().unwrap().label, None);
        // "NO NAME" is no label; deleted, long-name and cluster-owning entries are skipped
        let root = (1 + 128) * 512;
        let mut entry = |i: usize, name: &[u8; 11], attr: u8, cluster: u16| {
            put(&mut d, root + i * 32, name);
            d[root + i * 32 + 11] = attr;
            put(&mut d, root + i * 32 + 26, &cluster.to_le_bytes());
        };
        entry(0, b"\xE5DELETED   ", 0x08, 0);
        entry(1, b"ALONGNAME  ", 0x0F, 0);
        entry(2, b"OWNSDATA   ", 0x08, 5);
        entry(3, b"A DIR      ", 0x18, 0);
        entry(4, b"REAL LABEL ", 0x28, 0);
        assert_eq!(
            detect(&mem(d.clone())).unwrap().unwrap().label.as_deref(),
            Some("REAL LABEL")
        );
        put(&mut d, root + 4 * 32, b"NO NAME    ");
        assert_eq!(detect(&mem(d)).unwrap().unwrap().label, None);
    }

    #[test]
    fn fat_rejects_impossible_bpb() {
        let cases: [(&str, usize, &[u8]); 7] = [
            ("zero bytes per sector", 0x0B, &[0, 0]),
            ("bytes per sector not a power of two", 0x0B, &[0x01, 0x02]),
            ("zero sectors per cluster", 0x0D, &[0]),
            ("sectors per cluster not a power of two", 0x0D, &[3]),
            ("no reserved sectors", 0x0E, &[0, 0]),
            ("no FATs", 0x10, &[0]),
            ("metadata larger than the volume", 0x20, &[0x10, 0, 0, 0]),
        ];
        for (name, off, bytes) in cases {
            let mut d = fat16_image();
            put(&mut d, off, bytes);
            assert_eq!(detect(&mem(d)).unwrap(), None, "{name}");
        }
    }

    #[test]
    fn fat12_fat16_boundary_follows_linux() {
        // 1 reserved + 2 FATs of 12 sectors + 32 root sectors = 57; one sector per cluster
        for (clusters, want) in [(4084, FsKind::Fat12), (4085, FsKind::Fat16)] {
            let mut d = fat16_image();
            d[0x0D] = 1;
            put(&mut d, 0x16, &12u16.to_le_bytes());
            put(&mut d, 0x20, &(57 + clusters as u32).to_le_bytes());
            assert_eq!(detect(&mem(d)).unwrap().unwrap().kind, want, "{clusters}");
        }
    }

    /// Used bytes of a FAT image by fsck.fat's cluster count and the BPB's metadata size.
    fn fsck_fat_used(path: &Path) -> Option<u64> {
        let text = output(Command::new(tool("fsck.fat")?).arg("-n").arg(path));
        let counts = text.split_whitespace().find(|w| w.contains('/'))?;
        let (used, _) = counts.split_once('/')?;
        let used: u64 = used.parse().ok()?;
        let bs = read_prefix(path, 512);
        let bps = u64::from(le16(&bs, 0x0B)?);
        let spc = u64::from(bs[0x0D]);
        let fat_len = match le16(&bs, 0x16)? {
            0 => u64::from(le32(&bs, 0x24)?),
            n => u64::from(n),
        };
        let root = (u64::from(le16(&bs, 0x11)?) * 32).div_ceil(bps);
        let meta = (u64::from(le16(&bs, 0x0E)?) + u64::from(bs[0x10]) * fat_len + root) * bps;
        Some(meta + used * bps * spc)
    }

    #[test]
    fn fat_images_match_blkid_and_fsck() {
        let cases: [(&str, u64, &[&str], FsKind); 5] = [
            (
                "FAT12",
                8 << 20,
                &["-F", "12", "-n", "MYFAT12"],
                FsKind::Fat12,
            ),
            (
                "FAT16",
                64 << 20,
                &["-F", "16", "-n", "MYFAT16"],
                FsKind::Fat16,
            ),
            (
                "FAT16 4K sectors",
                128 << 20,
                &["-F", "16", "-S", "4096", "-n", "BIGSECT"],
                FsKind::Fat16,
            ),
            (
                "FAT32",
                300 << 20,
                &["-F", "32", "-n", "MYFAT32"],
                FsKind::Fat32,
            ),
            ("FAT32 unlabelled", 300 << 20, &["-F", "32"], FsKind::Fat32),
        ];
        let payload = tempfile::tempdir().unwrap();
        let file = payload.path().join("payload.bin");
        std::fs::write(&file, Rng(7).bytes(300 << 10)).unwrap();
        for (name, size, extra, kind) in cases {
            let mut args = vec!["-i", "1234ABCD"];
            args.extend_from_slice(extra);
            let Some((img, info)) = mkfs_case(size, "mkfs.vfat", &args) else {
                return;
            };
            assert_eq!(info.kind, kind, "{name}");
            assert_eq!(info.uuid.as_deref(), Some("1234-ABCD"), "{name}");
            let label = extra.iter().position(|a| *a == "-n").map(|i| extra[i + 1]);
            assert_eq!(info.label.as_deref(), label, "{name}");
            if let Some(want) = fsck_fat_used(&img.path) {
                assert_eq!(info.used_bytes, Some(want), "{name}, empty");
            }
            // with files in it (mtools), compared again with fsck.fat
            let Some(mcopy) = optional_tool("mcopy") else {
                continue;
            };
            let target = format!("{}@@0", img.path.display());
            output(
                Command::new(&mcopy)
                    .args(["-i", &target])
                    .arg(&file)
                    .arg("::/a.bin"),
            );
            output(
                Command::new(&mcopy)
                    .args(["-i", &target])
                    .arg(&file)
                    .arg("::/b.bin"),
            );
            let info = detect_file(&img.path).unwrap();
            assert_like_blkid(&img.path, &info);
            if let Some(want) = fsck_fat_used(&img.path) {
                assert_eq!(info.used_bytes, Some(want), "{name}, with files");
            }
            if kind == FsKind::Fat32 {
                // without a usable FSInfo hint the FAT itself is counted
                let mut d = read_prefix(&img.path, 4 << 20);
                put(&mut d, 512 + 488, &u32::MAX.to_le_bytes());
                assert_eq!(
                    detect(&mem(d)).unwrap().unwrap().used_bytes,
                    info.used_bytes
                );
            }
        }
    }

    #[test]
    fn fat_label_variants_match_blkid() {
        // a boot-sector label that differs from the root-directory one, and a boot-sector
        // label with no root-directory label at all
        let cases: [(&str, &[&str], Option<&str>); 2] = [
            (
                "both labels",
                &["-F", "16", "-n", "ROOTSIDE"],
                Some("ROOTSIDE"),
            ),
            ("boot label only", &["-F", "16"], None),
        ];
        for (name, args, want) in cases {
            let Some((img, _)) = mkfs_case(32 << 20, "mkfs.vfat", args) else {
                return;
            };
            patch(&img.path, 0x2B, b"BOOTSIDE   ");
            let info = detect_file(&img.path).unwrap();
            assert_eq!(info.label.as_deref(), want, "{name}");
            assert_like_blkid(&img.path, &info);
        }
    }
}
