//! Filesystem detection by on-disk magic. [`detect`] looks at the superblocks of one partition
//! (usually a `blockdev::Slice`) and says which [`FsKind`] it holds, with the label, UUID and
//! used bytes where the format gives them cheaply.
//!
//! Invariants:
//! - **Read-only and bounded.** Every probe reads a fixed window through
//!   [`read_clamped`]; directory scans, cluster chains, FAT counts and bitmap counts have fixed
//!   byte and iteration limits (constants below), so a hostile image cannot make detection slow
//!   or allocate without bound.
//! - **Never panics on any bytes.** Every field is read with checked slicing (`get`) and all
//!   arithmetic on on-disk values is checked; a nonsensical value yields "unknown" or a partial
//!   [`FsInfo`], never a panic.
//! - **Labels and UUIDs are formatted the way `blkid -o export` prints them** (libblkid 2.38):
//!   labels are cut at the first NUL and lose trailing whitespace; UTF-16 labels are converted
//!   to UTF-8; an all-zero UUID or serial is no UUID.
//!
//! Units: every offset and size is in bytes.
//!
//! Probe order: LUKS, LVM2, btrfs, XFS, ext, NTFS, exFAT, swap, ISO 9660, FAT. Strong magics
//! win; FAT goes last because its check is the weakest and NTFS/exFAT boot sectors also end in
//! `55 AA`. The first probe that recognises the device wins (blkid instead reports ambiguity).
//!
//! Damage policy: a failed identity check (bad magic, impossible boot-sector geometry) is
//! `Ok(None)`. Once the format is identified, damage further in (a superblock whose checksum
//! or geometry does not verify, an unreadable or corrupt root directory or MFT record) only
//! clears the fields that depended on it: the kind stays. Checksums are therefore used to
//! decide whether `used_bytes` can be trusted, not whether the format is present.
//!
//! I/O errors: an error while reading a probe's primary window does not stop the other probes;
//! it is returned only if no probe recognised the device. An error while reading secondary
//! structures (root directory, MFT record, FAT, allocation bitmap) leaves the dependent field
//! `None`: the superblock has already identified the format, and a rescue tool should still
//! name a partition that has one bad sector.
//!
//! Where this differs from blkid (libblkid 2.38, on purpose):
//! - NTFS whose MFT lies beyond the device, and XFS whose superblock fails libblkid's geometry
//!   checks, are still reported, without label or `used_bytes` respectively (blkid rejects
//!   them). Like libblkid 2.38, checksums never decide identity (newer libblkid rejects ext4
//!   with a bad `metadata_csum` and exFAT with a bad boot checksum).
//! - FAT12 versus FAT16 follows the Linux driver (≤ 4084 clusters is FAT12); blkid's VERSION
//!   says FAT16 at exactly 4084. The TYPE (`vfat`) is the same.
//! - A FAT root-directory label of `NO NAME` is treated as no label.
//! - NTFS volumes with clusters above 64 KiB (sectors-per-cluster byte above 0x80) are
//!   recognised; blkid rejects them.
//! - Labels that are not valid UTF-8 are converted lossily (blkid prints the raw bytes).
//! - ext4dev-flagged and journal-device ext superblocks: ext4dev is reported as `Ext4`, an
//!   external journal device (`jbd`) is not reported. High Sierra CDs, LVM1 and swsuspend
//!   images are not recognised.

use crate::blockdev::{read_clamped, BlockDev};
use crate::error::Result;
use serde::Serialize;

/// A recognised filesystem or volume format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FsKind {
    /// ext2: no journal and no feature ext2 lacks.
    Ext2,
    /// ext3: a journal and no feature ext3 lacks.
    Ext3,
    /// ext4: any feature ext3 lacks (extents, 64bit, flex_bg, metadata_csum…).
    Ext4,
    /// FAT12: 16-bit FAT length field set and at most 4084 clusters.
    Fat12,
    /// FAT16: 16-bit FAT length field set and 4085 to 65524 clusters.
    Fat16,
    /// FAT32: 16-bit FAT length zero, 32-bit FAT length set.
    Fat32,
    /// exFAT.
    Exfat,
    /// NTFS.
    Ntfs,
    /// XFS.
    Xfs,
    /// btrfs (one device of it).
    Btrfs,
    /// Linux swap area, version 0 (`SWAP-SPACE`) or 1 (`SWAPSPACE2`).
    Swap,
    /// LUKS version 1 encrypted volume.
    Luks1,
    /// LUKS version 2 encrypted volume.
    Luks2,
    /// LVM2 physical volume.
    Lvm2,
    /// ISO 9660 (CD/DVD image), with or without Joliet.
    Iso9660,
}

impl FsKind {
    /// The name blkid prints as `TYPE=`: "ext2", "ext3", "ext4", "vfat" (all three FATs),
    /// "exfat", "ntfs", "xfs", "btrfs", "swap", "crypto_LUKS" (both LUKS versions),
    /// "LVM2_member", "iso9660".
    pub fn blkid_name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => "vfat",
            FsKind::Exfat => "exfat",
            FsKind::Ntfs => "ntfs",
            FsKind::Xfs => "xfs",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "swap",
            FsKind::Luks1 | FsKind::Luks2 => "crypto_LUKS",
            FsKind::Lvm2 => "LVM2_member",
            FsKind::Iso9660 => "iso9660",
        }
    }

    /// The name shown to humans, distinguishing variants: "FAT32", "LUKS2", "ext4", "NTFS"…
    pub fn display_name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Fat12 => "FAT12",
            FsKind::Fat16 => "FAT16",
            FsKind::Fat32 => "FAT32",
            FsKind::Exfat => "exFAT",
            FsKind::Ntfs => "NTFS",
            FsKind::Xfs => "XFS",
            FsKind::Btrfs => "btrfs",
            FsKind::Swap => "swap",
            FsKind::Luks1 => "LUKS1",
            FsKind::Luks2 => "LUKS2",
            FsKind::Lvm2 => "LVM2 PV",
            FsKind::Iso9660 => "ISO 9660",
        }
    }
}

/// What detection found on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsInfo {
    /// The format.
    pub kind: FsKind,
    /// Volume label as blkid prints `LABEL=`; `None` when absent, empty or unreadable.
    pub label: Option<String>,
    /// UUID (or serial) as blkid prints `UUID=`: hyphenated lowercase for 128-bit UUIDs,
    /// `ABCD-1234` for FAT/exFAT serials, 16 uppercase hex digits for NTFS, the volume date
    /// `YYYY-MM-DD-HH-MM-SS-CC` for ISO 9660, 6-4-4-4-4-4-6 for LVM2. `None` when absent.
    pub uuid: Option<String>,
    /// Bytes in use according to the on-disk metadata, where that is cheap and trustworthy;
    /// `None` otherwise (always for NTFS, swap, LUKS and LVM2). Per format:
    /// ext: (blocks − free blocks) × block size; FAT and exFAT: the area before the data
    /// clusters (reserved sectors, FATs, FAT12/16 root directory; exFAT cluster-heap offset)
    /// plus allocated clusters × cluster size; XFS: (dblocks − fdblocks) × block size; btrfs:
    /// bytes allocated to chunks on this device (`dev_item.bytes_used`, which counts DUP and
    /// RAID copies, unlike the filesystem-wide logical `bytes_used`); ISO 9660: the volume size.
    /// Free counts in superblocks can lag on a mounted or uncleanly unmounted filesystem.
    pub used_bytes: Option<u64>,
}

/// Detects the filesystem on `dev` (a whole partition, usually a `blockdev::Slice`).
///
/// Returns `Ok(None)` when no known format is recognised. Fails only with an I/O error from
/// `dev`, and only when no probe recognised the device (see the module docs). Never panics,
/// whatever the bytes; a damaged superblock gives `Ok(None)` or a partial [`FsInfo`]. Reads at
/// most a few MiB (more only for FAT/exFAT used-space counts, which are capped at 32 MiB).
pub fn detect(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    const PROBES: [Probe; 10] = [
        probe_luks,
        probe_lvm2,
        probe_btrfs,
        probe_xfs,
        probe_ext,
        probe_ntfs,
        probe_exfat,
        probe_swap,
        probe_iso9660,
        probe_fat,
    ];
    let mut first_err = None;
    for probe in PROBES {
        match probe(dev) {
            Ok(Some(info)) => return Ok(Some(info)),
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// One format's probe: `Err` only when its primary window cannot be read.
type Probe = fn(&dyn BlockDev) -> Result<Option<FsInfo>>;

/// Bytes of directory entries scanned for a label (and the exFAT bitmap entry).
const DIR_SCAN_BYTES: u64 = 1 << 20;
/// Clusters followed along a directory's cluster chain.
const CHAIN_MAX: usize = 64;
/// Largest FAT (bytes) whose entries are counted for `used_bytes`.
const FAT_COUNT_MAX_BYTES: u64 = 16 << 20;
/// Largest exFAT allocation bitmap (bytes) counted for `used_bytes`.
const BITMAP_MAX_BYTES: u64 = 32 << 20;
/// Largest single read while counting FAT entries or bitmap bits.
const COUNT_CHUNK: u64 = 1 << 20;
/// Block size of directory reads.
const DIR_BLOCK: u64 = 4096;

// ---------------------------------------------------------------------------------------------
// byte helpers: all return None when the field lies outside the buffer

fn field(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    field(b, off, N)?.try_into().ok()
}

fn byte(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    arr(b, off).map(u16::from_le_bytes)
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    arr(b, off).map(u32::from_le_bytes)
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    arr(b, off).map(u64::from_le_bytes)
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    arr(b, off).map(u16::from_be_bytes)
}

fn be32(b: &[u8], off: usize) -> Option<u32> {
    arr(b, off).map(u32::from_be_bytes)
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    arr(b, off).map(u64::from_be_bytes)
}

/// True when `magic` sits at `off`.
fn has(b: &[u8], off: usize, magic: &[u8]) -> bool {
    field(b, off, magic.len()) == Some(magic)
}

/// A read of a secondary structure: errors and short reads are "not available".
fn read_soft(dev: &dyn BlockDev, offset: u64, len: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?;
    read_clamped(dev, offset, len).ok()
}

/// Like [`read_soft`] but only a complete read counts.
fn read_exact_soft(dev: &dyn BlockDev, offset: u64, len: u64) -> Option<Vec<u8>> {
    let buf = read_soft(dev, offset, len)?;
    (buf.len() as u64 == len).then_some(buf)
}

// ---------------------------------------------------------------------------------------------
// label and UUID formatting, following libblkid

/// blkid's `isspace` trim of the C locale.
fn rtrim(s: &str) -> &str {
    s.trim_end_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A byte-string label: up to the first NUL, lossy UTF-8, trailing whitespace trimmed.
fn text_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(raw.get(..end)?);
    non_empty(rtrim(&s))
}

/// A UTF-16 label: up to the first NUL unit, unpaired surrogates replaced, trimmed.
fn utf16_label(raw: &[u8], big_endian: bool) -> Option<String> {
    let units = raw
        .chunks_exact(2)
        .filter_map(|p| <[u8; 2]>::try_from(p).ok())
        .map(|p| {
            if big_endian {
                u16::from_be_bytes(p)
            } else {
                u16::from_le_bytes(p)
            }
        })
        .take_while(|&u| u != 0);
    let s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    non_empty(rtrim(&s))
}

/// A 16-byte binary UUID as lowercase hyphenated text; all zeros is no UUID.
fn uuid16(raw: &[u8]) -> Option<String> {
    if raw.iter().all(|&b| b == 0) {
        return None;
    }
    uuid::Uuid::from_slice(raw)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// A little-endian 32-bit FAT/exFAT volume serial as blkid prints it: `ABCD-1234`.
fn fat_serial(raw: [u8; 4]) -> Option<String> {
    if raw == [0; 4] {
        return None;
    }
    let [a, b, c, d] = raw;
    Some(format!("{d:02X}{c:02X}-{b:02X}{a:02X}"))
}

// ---------------------------------------------------------------------------------------------
// checksums

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc32c_table();

/// CRC-32C (Castagnoli) update without pre- or post-inversion: the kernel's `crc32c_le`.
fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        // index is masked to 0..=255, the table's size
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// Standard CRC-32C (initial and final inversion), as btrfs and XFS store it.
fn crc32c(data: &[u8]) -> u32 {
    !crc32c_raw(!0, data)
}

/// LVM2's label CRC (a CRC-32 variant with its own seed), from lvm2 `lib/misc/crc.c`.
fn lvm2_crc(data: &[u8]) -> u32 {
    const T: [u32; 16] = [
        0x0000_0000,
        0x1DB7_1064,
        0x3B6E_20C8,
        0x26D9_30AC,
        0x76DC_4190,
        0x6B6B_51F4,
        0x4DB2_6158,
        0x5005_713C,
        0xEDB8_8320,
        0xF00F_9344,
        0xD6D6_A3E8,
        0xCB61_B38C,
        0x9B64_C2B0,
        0x86D3_D2D4,
        0xA00A_E278,
        0xBDBD_F21C,
    ];
    let mut crc: u32 = 0xF597_A6CF;
    for &b in data {
        crc ^= u32::from(b);
        // indexes are masked to 0..=15, the table's size
        crc = (crc >> 4) ^ T[(crc & 0xF) as usize];
        crc = (crc >> 4) ^ T[(crc & 0xF) as usize];
    }
    crc
}

// ---------------------------------------------------------------------------------------------
// LUKS: header at 0 (or, for LUKS2 with a wiped primary, a secondary header)

const LUKS_MAGIC: &[u8] = b"LUKS\xba\xbe";
const LUKS2_SECONDARY_MAGIC: &[u8] = b"SKUL\xba\xbe";
/// Where cryptsetup may put the LUKS2 secondary header (libblkid `LUKS2_HDR2_OFFSETS`).
const LUKS2_SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
];

fn probe_luks(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let hdr = read_clamped(dev, 0, 512)?;
    if has(&hdr, 0, LUKS_MAGIC) {
        if let Some(info) = parse_luks(&hdr, 0) {
            return Ok(Some(info));
        }
    }
    for off in LUKS2_SECONDARY_OFFSETS {
        if off >= dev.len() {
            break;
        }
        if let Some(h) = read_soft(dev, off, 512) {
            if has(&h, 0, LUKS2_SECONDARY_MAGIC) {
                if let Some(info) = parse_luks(&h, off) {
                    return Ok(Some(info));
                }
            }
        }
    }
    Ok(None)
}

/// Parses a LUKS header found at byte `offset` of the device.
fn parse_luks(h: &[u8], offset: u64) -> Option<FsInfo> {
    let kind = match be16(h, 6)? {
        1 if offset == 0 => FsKind::Luks1,
        // a LUKS2 header records its own offset; a copy elsewhere is stale
        2 if be64(h, 256)? == offset => FsKind::Luks2,
        _ => return None,
    };
    let label = match kind {
        FsKind::Luks2 => field(h, 24, 48).and_then(text_label),
        _ => None,
    };
    Some(FsInfo {
        kind,
        label,
        uuid: field(h, 168, 40).and_then(text_label),
        used_bytes: None,
    })
}

// ---------------------------------------------------------------------------------------------
// LVM2 PV: "LABELONE" label in one of the first four 512-byte sectors

fn probe_lvm2(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let head = read_clamped(dev, 0, 4 * 512)?;
    for sector in 0..4u64 {
        let Some(label) = field(&head, sector as usize * 512, 512) else {
            break;
        };
        if !has(label, 0, b"LABELONE") || !has(label, 24, b"LVM2 001") {
            continue;
        }
        // the label records its own sector; a mismatch is a stale copy
        if le64(label, 8) != Some(sector) {
            continue;
        }
        let crc_ok = le32(label, 16) == label.get(20..).map(lvm2_crc);
        return Ok(Some(FsInfo {
            kind: FsKind::Lvm2,
            label: None,
            uuid: if crc_ok { lvm2_uuid(label) } else { None },
            used_bytes: None,
        }));
    }
    Ok(None)
}

/// The PV UUID (32 characters at the pv_header, whose offset the label gives), as
/// 6-4-4-4-4-4-6 like blkid and `pvs`.
fn lvm2_uuid(label: &[u8]) -> Option<String> {
    let at = usize::try_from(le32(label, 20)?).ok()?;
    let raw = field(label, at, 32)?;
    if !raw.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let mut out = String::with_capacity(38);
    for (i, &c) in raw.iter().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            out.push('-');
        }
        out.push(char::from(c));
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// btrfs: superblock at 64 KiB

const BTRFS_SB: u64 = 0x1_0000;

fn probe_btrfs(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
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

// ---------------------------------------------------------------------------------------------
// XFS: big-endian superblock at 0

fn probe_xfs(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
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

// ---------------------------------------------------------------------------------------------
// ext2/3/4: superblock at 1024

const EXT_COMPAT_HAS_JOURNAL: u32 = 0x0004;
const EXT_INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const EXT_INCOMPAT_64BIT: u32 = 0x0080;
const EXT_RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
/// Features ext3 understands (libblkid `EXT3_FEATURE_*_SUPP`); anything else makes it ext4.
const EXT3_INCOMPAT_SUPP: u32 = 0x0002 | 0x0004 | 0x0010;
const EXT3_RO_COMPAT_SUPP: u32 = 0x0001 | 0x0002 | 0x0004;

fn probe_ext(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let sb = read_clamped(dev, 1024, 1024)?;
    Ok(parse_ext(&sb))
}

fn parse_ext(sb: &[u8]) -> Option<FsInfo> {
    if le16(sb, 0x38)? != 0xEF53 {
        return None;
    }
    let compat = le32(sb, 0x5C)?;
    let incompat = le32(sb, 0x60)?;
    let ro_compat = le32(sb, 0x64)?;
    if incompat & EXT_INCOMPAT_JOURNAL_DEV != 0 {
        // an external journal ("jbd"), not a filesystem
        return None;
    }
    let kind = if incompat & !EXT3_INCOMPAT_SUPP != 0 || ro_compat & !EXT3_RO_COMPAT_SUPP != 0 {
        FsKind::Ext4
    } else if compat & EXT_COMPAT_HAS_JOURNAL != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    Some(FsInfo {
        kind,
        label: field(sb, 0x78, 16).and_then(text_label),
        uuid: field(sb, 0x68, 16).and_then(uuid16),
        used_bytes: ext_used(sb, incompat, ro_compat),
    })
}

fn ext_used(sb: &[u8], incompat: u32, ro_compat: u32) -> Option<u64> {
    if ro_compat & EXT_RO_COMPAT_METADATA_CSUM != 0 {
        // s_checksum_type 1 = crc32c; s_checksum covers everything before it, no final xor
        if byte(sb, 0x175)? != 1 || crc32c_raw(!0, field(sb, 0, 0x3FC)?) != le32(sb, 0x3FC)? {
            return None;
        }
    }
    let log = le32(sb, 0x18)?;
    // 64 KiB is the largest block size ext4 supports
    if log > 6 {
        return None;
    }
    let block_size = 1024u64 << log;
    let mut blocks = u64::from(le32(sb, 0x04)?);
    let mut free = u64::from(le32(sb, 0x0C)?);
    if incompat & EXT_INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(sb, 0x150)?) << 32;
        free |= u64::from(le32(sb, 0x158)?) << 32;
    }
    if blocks == 0 {
        return None;
    }
    blocks.checked_sub(free)?.checked_mul(block_size)
}

// ---------------------------------------------------------------------------------------------
// NTFS: boot sector at 0, label in MFT record 3 ($Volume)

/// Largest MFT record read for the label; real records are 1 or 4 KiB.
const NTFS_MAX_RECORD: u64 = 64 << 10;
/// Attributes walked in the $Volume record.
const NTFS_MAX_ATTRS: usize = 64;
/// The unit the update-sequence fixups protect, whatever the sector size.
const NTFS_FIXUP_STRIDE: usize = 512;

fn probe_ntfs(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let bs = read_clamped(dev, 0, 512)?;
    Ok(parse_ntfs(dev, &bs))
}

fn parse_ntfs(dev: &dyn BlockDev, bs: &[u8]) -> Option<FsInfo> {
    if !has(bs, 3, b"NTFS    ") {
        return None;
    }
    let bps = le16(bs, 0x0B)?;
    if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
        return None;
    }
    let spc_raw = byte(bs, 0x0D)?;
    let spc: u64 = match spc_raw {
        1..=0x80 if spc_raw.is_power_of_two() => u64::from(spc_raw),
        // above 0x80 the byte is a negative power of two: clusters above 64 KiB
        0x81..=0xFF => 1u64.checked_shl(256 - u32::from(spc_raw))?,
        _ => return None,
    };
    let cluster = u64::from(bps).checked_mul(spc)?;
    if cluster > 2 << 20 {
        return None;
    }
    // fields FAT uses must be zero on NTFS
    let zero = le16(bs, 0x0E)? == 0
        && byte(bs, 0x10)? == 0
        && le16(bs, 0x11)? == 0
        && le16(bs, 0x13)? == 0
        && le16(bs, 0x16)? == 0
        && le32(bs, 0x20)? == 0;
    if !zero {
        return None;
    }
    let cpr = byte(bs, 0x40)?;
    let record_size: u64 = match cpr {
        1..=64 if cpr.is_power_of_two() => u64::from(cpr).checked_mul(cluster)?,
        // 0xE1..=0xF7 are -31..=-9: the record is 2^-n bytes
        0xE1..=0xF7 => 1u64 << (256 - u32::from(cpr)),
        _ => return None,
    };
    let serial = le64(bs, 0x48)?;
    Some(FsInfo {
        kind: FsKind::Ntfs,
        label: ntfs_label(dev, bs, cluster, record_size),
        uuid: (serial != 0).then(|| format!("{serial:016X}")),
        used_bytes: None,
    })
}

fn ntfs_label(dev: &dyn BlockDev, bs: &[u8], cluster: u64, record_size: u64) -> Option<String> {
    if record_size > NTFS_MAX_RECORD {
        return None;
    }
    let mft = le64(bs, 0x30)?.checked_mul(cluster)?;
    // the first 16 MFT records are contiguous, so record 3 follows record 0 directly
    let at = mft.checked_add(record_size.checked_mul(3)?)?;
    let mut rec = read_exact_soft(dev, at, record_size)?;
    if !has(&rec, 0, b"FILE") {
        return None;
    }
    apply_fixups(&mut rec)?;
    volume_name(&rec)
}

/// Applies the update-sequence array: the last two bytes of every 512-byte stride must hold
/// the sequence number and are replaced by the saved originals. `None` on a torn record.
fn apply_fixups(rec: &mut [u8]) -> Option<()> {
    let usa_ofs = usize::from(le16(rec, 4)?);
    let usa_count = usize::from(le16(rec, 6)?);
    let strides = usa_count.checked_sub(1)?;
    if strides.checked_mul(NTFS_FIXUP_STRIDE)? > rec.len() {
        return None;
    }
    let usn: [u8; 2] = arr(rec, usa_ofs)?;
    for i in 1..=strides {
        let saved: [u8; 2] = arr(rec, usa_ofs.checked_add(i.checked_mul(2)?)?)?;
        let end = i.checked_mul(NTFS_FIXUP_STRIDE)?;
        let tail = rec.get_mut(end.checked_sub(2)?..end)?;
        if *tail != usn {
            return None;
        }
        tail.copy_from_slice(&saved);
    }
    Some(())
}

/// The resident $VOLUME_NAME (0x60) attribute of a fixed-up MFT record, UTF-16LE.
fn volume_name(rec: &[u8]) -> Option<String> {
    let mut off = usize::from(le16(rec, 0x14)?);
    let end = usize::try_from(le32(rec, 0x18)?).ok()?.min(rec.len());
    for _ in 0..NTFS_MAX_ATTRS {
        let ty = le32(rec, off)?;
        if ty == 0xFFFF_FFFF {
            return None;
        }
        let len = usize::try_from(le32(rec, off.checked_add(4)?)?).ok()?;
        if len < 24 || off.checked_add(len)? > end {
            return None;
        }
        if ty == 0x60 {
            let attr = field(rec, off, len)?;
            if byte(attr, 8)? != 0 {
                return None; // non-resident volume name: not produced by any real NTFS
            }
            let value_len = usize::try_from(le32(attr, 0x10)?).ok()?;
            let value_off = usize::from(le16(attr, 0x14)?);
            return utf16_label(field(attr, value_off, value_len)?, false);
        }
        off = off.checked_add(len)?;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// exFAT: boot sector at 0, label and allocation bitmap in the root directory

fn probe_exfat(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
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
    expected
        .chunks_exact(4)
        .all(|w| <[u8; 4]>::try_from(w).ok().map(u32::from_le_bytes) == Some(sum))
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

// ---------------------------------------------------------------------------------------------
// directory scanning shared by FAT and exFAT

/// Feeds the 32-byte entries of `len` bytes of directory at `offset` to `visit`, in blocks of
/// at most [`DIR_BLOCK`] bytes, until `visit` returns true. Returns true when the scan must
/// stop: the visitor asked, a read failed or came up short, or `budget` (bytes) ran out.
fn scan_dir(
    dev: &dyn BlockDev,
    offset: u64,
    len: u64,
    budget: &mut u64,
    visit: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    let mut pos = 0u64;
    while pos < len {
        let n = (len - pos).min(DIR_BLOCK).min(*budget);
        if n == 0 {
            return true;
        }
        let Some(at) = offset.checked_add(pos) else {
            return true;
        };
        let Some(block) = read_exact_soft(dev, at, n) else {
            return true;
        };
        for entry in block.chunks_exact(32) {
            if visit(entry) {
                return true;
            }
        }
        pos += n;
        *budget -= n;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// FAT12/16/32: BIOS parameter block at 0, label in the root directory

fn probe_fat(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let bs = read_clamped(dev, 0, 512)?;
    Ok(parse_fat(dev, &bs))
}

/// Geometry of a FAT volume, from its BPB.
struct Fat {
    kind: FsKind,
    bytes_per_sector: u64,
    cluster: u64,
    /// Byte offset of the first FAT.
    fat_offset: u64,
    /// Byte offset of the FAT12/16 root directory (= end of the FATs).
    root_offset: u64,
    /// Byte offset of cluster 2.
    data_offset: u64,
    clusters: u32,
}

impl Fat {
    fn cluster_offset(&self, c: u32) -> Option<u64> {
        if c < 2 || c > self.clusters.checked_add(1)? {
            return None;
        }
        self.data_offset
            .checked_add(u64::from(c - 2).checked_mul(self.cluster)?)
    }
}

fn parse_fat(dev: &dyn BlockDev, bs: &[u8]) -> Option<FsInfo> {
    let geo = fat_geometry(bs)?;
    let uuid = match geo.kind {
        FsKind::Fat32 => fat_serial(arr(bs, 0x43)?),
        // FAT12/16 have a serial only with an extended boot signature
        _ if matches!(byte(bs, 0x26)?, 0x28 | 0x29) => fat_serial(arr(bs, 0x27)?),
        _ => None,
    };
    let root_entries = u64::from(le16(bs, 0x11)?);
    let label = match geo.kind {
        FsKind::Fat32 => fat32_root_label(dev, &geo, le32(bs, 0x2C)?),
        _ => {
            let mut budget = DIR_SCAN_BYTES;
            let mut found = None;
            scan_dir(
                dev,
                geo.root_offset,
                root_entries * 32,
                &mut budget,
                &mut fat_label_visitor(&mut found),
            );
            found
        }
    };
    let used_bytes = fat_used(dev, bs, &geo);
    Some(FsInfo {
        kind: geo.kind,
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

/// Validates the BPB like libblkid's `fat_valid_superblock` and the Linux driver.
fn fat_geometry(bs: &[u8]) -> Option<Fat> {
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
    let bps = le16(bs, 0x0B)?;
    let spc = byte(bs, 0x0D)?;
    let reserved = le16(bs, 0x0E)?;
    let fats = byte(bs, 0x10)?;
    let root_entries = le16(bs, 0x11)?;
    let total16 = le16(bs, 0x13)?;
    let media = byte(bs, 0x15)?;
    let fat16_len = le16(bs, 0x16)?;
    let total32 = le32(bs, 0x20)?;
    let fat32_len = le32(bs, 0x24)?;
    if fats == 0
        || reserved == 0
        || !(media >= 0xF8 || media == 0xF0)
        || !spc.is_power_of_two()
        || !bps.is_power_of_two()
        || !(512..=4096).contains(&bps)
    {
        return None;
    }
    let bps = u64::from(bps);
    let fat_len = if fat16_len != 0 {
        u64::from(fat16_len)
    } else {
        u64::from(fat32_len)
    };
    if fat_len == 0 {
        return None;
    }
    let total = if total16 != 0 {
        u64::from(total16)
    } else {
        u64::from(total32)
    };
    let fat_sectors = fat_len * u64::from(fats);
    let root_sectors = (u64::from(root_entries) * 32).div_ceil(bps);
    let meta_sectors = u64::from(reserved) + fat_sectors + root_sectors;
    let clusters = total.checked_sub(meta_sectors)? / u64::from(spc);
    let kind = if fat16_len == 0 {
        FsKind::Fat32
    } else if clusters <= 4084 {
        FsKind::Fat12
    } else {
        FsKind::Fat16
    };
    let max = match kind {
        FsKind::Fat32 => 0x0FFF_FFF6,
        _ => 65524,
    };
    if clusters > max {
        return None;
    }
    Some(Fat {
        kind,
        bytes_per_sector: bps,
        cluster: bps * u64::from(spc),
        fat_offset: u64::from(reserved) * bps,
        root_offset: (u64::from(reserved) + fat_sectors) * bps,
        data_offset: meta_sectors * bps,
        clusters: u32::try_from(clusters).ok()?,
    })
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

fn fat32_root_label(dev: &dyn BlockDev, geo: &Fat, root: u32) -> Option<Vec<u8>> {
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
                .fat_offset
                .checked_add(u64::from(cluster).checked_mul(4)?)?;
            cluster = le32(&read_exact_soft(dev, entry_at, 4)?, 0)? & 0x0FFF_FFFF;
        }
    }
    found
}

/// Metadata area plus allocated clusters (see [`FsInfo::used_bytes`]).
fn fat_used(dev: &dyn BlockDev, bs: &[u8], geo: &Fat) -> Option<u64> {
    let allocated = match geo.kind {
        FsKind::Fat32 => match fat32_fsinfo_free(dev, bs, geo) {
            Some(free) => u64::from(geo.clusters - free),
            None => count_fat_entries(dev, geo)?,
        },
        _ => count_fat_entries(dev, geo)?,
    };
    geo.data_offset
        .checked_add(allocated.checked_mul(geo.cluster)?)
}

/// The FSInfo free-cluster hint, when its signatures are right and the count is plausible.
fn fat32_fsinfo_free(dev: &dyn BlockDev, bs: &[u8], geo: &Fat) -> Option<u32> {
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
    (free <= geo.clusters).then_some(free)
}

/// Counts non-free entries for clusters 2.. in the first FAT, if it is at most
/// [`FAT_COUNT_MAX_BYTES`].
fn count_fat_entries(dev: &dyn BlockDev, geo: &Fat) -> Option<u64> {
    let entries = u64::from(geo.clusters) + 2;
    if geo.kind == FsKind::Fat12 {
        // at most 4086 entries: read all 6 KiB at once
        let fat = read_exact_soft(dev, geo.fat_offset, (entries * 3).div_ceil(2))?;
        let mut used = 0;
        for n in 2..entries as usize {
            let pair = le16(&fat, n + n / 2)?;
            let value = if n % 2 == 0 { pair & 0xFFF } else { pair >> 4 };
            used += u64::from(value != 0);
        }
        return Some(used);
    }
    let width: u64 = if geo.kind == FsKind::Fat16 { 2 } else { 4 };
    let bytes = entries.checked_mul(width)?;
    if bytes > FAT_COUNT_MAX_BYTES {
        return None;
    }
    let mut used = 0;
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(COUNT_CHUNK);
        let chunk = read_exact_soft(dev, geo.fat_offset.checked_add(done)?, n)?;
        for (i, e) in chunk.chunks_exact(width as usize).enumerate() {
            if done / width + (i as u64) < 2 {
                continue; // entries 0 and 1 are the media byte and flags
            }
            let value = match *e {
                [a, b] => u32::from(u16::from_le_bytes([a, b])),
                [a, b, c, d] => u32::from_le_bytes([a, b, c, d]) & 0x0FFF_FFFF,
                _ => 0,
            };
            used += u64::from(value != 0);
        }
        done += n;
    }
    Some(used)
}

// ---------------------------------------------------------------------------------------------
// swap: signature at the end of the first page, v1 header at 1024

const SWAP_PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
/// TuxOnIce keeps a valid swap signature behind its own header; libblkid ignores those.
const TUXONICE_MAGIC: &[u8] = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c";

fn probe_swap(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    // libblkid's minimum: ten 4 KiB pages
    if dev.len() < 10 * 4096 {
        return Ok(None);
    }
    for page in SWAP_PAGE_SIZES {
        let sig = read_clamped(dev, page - 10, 10)?;
        let v1 = sig.as_slice() == b"SWAPSPACE2";
        if !v1 && sig.as_slice() != b"SWAP-SPACE" {
            continue;
        }
        let head = read_clamped(dev, 0, 1024 + 512)?;
        if has(&head, 0, TUXONICE_MAGIC) {
            return Ok(None);
        }
        if !v1 {
            // version 0 has neither label nor UUID
            return Ok(Some(swap_info(None, None)));
        }
        return Ok(parse_swap_v1(head.get(1024..).unwrap_or_default()));
    }
    Ok(None)
}

fn swap_info(label: Option<String>, uuid: Option<String>) -> FsInfo {
    FsInfo {
        kind: FsKind::Swap,
        label,
        uuid,
        used_bytes: None,
    }
}

fn parse_swap_v1(hdr: &[u8]) -> Option<FsInfo> {
    // version 1 in either byte order, and a last page
    let version = arr::<4>(hdr, 0)?;
    if version != [1, 0, 0, 0] && version != [0, 0, 0, 1] {
        return None;
    }
    if le32(hdr, 4)? == 0 {
        return None;
    }
    // libblkid trusts label and UUID only when padding[32..34] is clear
    if le32(hdr, 172)? != 0 || le32(hdr, 176)? != 0 {
        return Some(swap_info(None, None));
    }
    Some(swap_info(
        field(hdr, 28, 16).and_then(text_label),
        field(hdr, 12, 16).and_then(uuid16),
    ))
}

// ---------------------------------------------------------------------------------------------
// ISO 9660: volume descriptors from 32 KiB

const ISO_PVD: u64 = 0x8000;
const ISO_SECTOR: u64 = 2048;
/// Volume descriptors examined after the primary one.
const ISO_MAX_DESCRIPTORS: u64 = 16;

fn probe_iso9660(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let pvd = read_clamped(dev, ISO_PVD, ISO_SECTOR as usize)?;
    if !has(&pvd, 1, b"CD001") {
        return Ok(None);
    }
    let pvd_label = field(&pvd, 40, 32).unwrap_or_default();
    let label = match joliet_label(dev) {
        // use the Joliet label only when it says more than the d-character one
        Some(joliet) if !ascii_eq_utf16be(pvd_label, joliet.as_slice()) => {
            utf16_label(&joliet, true)
        }
        _ => text_label(pvd_label),
    };
    // blkid's UUID: the modification date, or the creation date when that is unset
    let uuid = match field(&pvd, 830, 17).and_then(iso_date) {
        Some(IsoDate::Unset) | None => match field(&pvd, 813, 17).and_then(iso_date) {
            Some(IsoDate::Set(u)) => u,
            _ => None,
        },
        Some(IsoDate::Set(u)) => u,
    };
    let used_bytes = match (le32(&pvd, 80), le16(&pvd, 128)) {
        (Some(blocks), Some(size)) if size.is_power_of_two() && size >= 512 => {
            u64::from(blocks).checked_mul(u64::from(size))
        }
        _ => None,
    };
    Ok(Some(FsInfo {
        kind: FsKind::Iso9660,
        label,
        uuid,
        used_bytes,
    }))
}

/// The 32-byte volume identifier of the first Joliet supplementary volume descriptor.
fn joliet_label(dev: &dyn BlockDev) -> Option<Vec<u8>> {
    for i in 1..=ISO_MAX_DESCRIPTORS {
        let vd = read_exact_soft(dev, ISO_PVD + i * ISO_SECTOR, ISO_SECTOR)?;
        if !has(&vd, 1, b"CD001") {
            return None;
        }
        match byte(&vd, 0)? {
            0xFF => return None, // set terminator
            2 if has(&vd, 88, b"%/@") || has(&vd, 88, b"%/C") || has(&vd, 88, b"%/E") => {
                return field(&vd, 40, 32).map(<[u8]>::to_vec);
            }
            _ => {}
        }
    }
    None
}

/// libblkid's test whether the UTF-16BE Joliet label starts with the same characters as the
/// primary label.
fn ascii_eq_utf16be(ascii: &[u8], utf16: &[u8]) -> bool {
    utf16
        .chunks_exact(2)
        .zip(ascii)
        .all(|(u, &a)| u.first() == Some(&0) && u.get(1) == Some(&a))
}

enum IsoDate {
    /// All digits '0' and no zone offset: the standard's "not specified".
    Unset,
    /// Formatted as `YYYY-MM-DD-HH-MM-SS-CC`; `None` when the field is all NUL bytes.
    Set(Option<String>),
}

fn iso_date(d: &[u8]) -> Option<IsoDate> {
    let digits = field(d, 0, 16)?;
    if digits.iter().all(|&c| c == b'0') && byte(d, 16)? == 0 {
        return Some(IsoDate::Unset);
    }
    if digits.iter().all(|&c| c == 0) {
        return Some(IsoDate::Set(None));
    }
    let mut out = Vec::with_capacity(22);
    for (i, &c) in digits.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10 | 12 | 14) {
            out.push(b'-');
        }
        out.push(c);
    }
    Some(IsoDate::Set(Some(
        String::from_utf8_lossy(&out).into_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::testing::FaultyDev;
    use crate::blockdev::{check_range, FileDev, Geometry, MemDev, OpenMode};
    use crate::error::Error;
    use std::collections::HashMap;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::Mutex;

    // ---- tools ---------------------------------------------------------------------------

    /// Finds an external program in PATH or the sbin directories. Missing: fails under
    /// CI=true, otherwise prints SKIP and returns None.
    fn tool(name: &str) -> Option<PathBuf> {
        let found = optional_tool(name);
        assert!(
            found.is_some() || std::env::var("CI").as_deref() != Ok("true"),
            "{name} is required when CI=true"
        );
        found
    }

    /// Like [`tool`], for programs CI is not required to have (mtools).
    fn optional_tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
        let found = std::env::split_paths(&path)
            .chain(extra)
            .map(|d| d.join(name))
            .find(|p| p.is_file());
        if found.is_none() {
            eprintln!("SKIP: {name} is not installed");
        }
        found
    }

    fn output(cmd: &mut Command) -> String {
        let out = cmd.output().expect("spawning a tool");
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A sparse temporary image file.
    struct Img {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn sparse(size: u64) -> Img {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs.img");
        std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        Img { _dir: dir, path }
    }

    fn image_from(bytes: &[u8]) -> Img {
        let img = sparse(0);
        std::fs::write(&img.path, bytes).unwrap();
        img
    }

    fn patch(path: &Path, offset: u64, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        f.write_all(bytes).unwrap();
    }

    fn read_prefix(path: &Path, len: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .unwrap()
            .take(len)
            .read_to_end(&mut buf)
            .unwrap();
        buf
    }

    fn detect_file(path: &Path) -> Option<FsInfo> {
        let dev = FileDev::open(path, OpenMode::Read).unwrap();
        detect(&dev).unwrap()
    }

    /// `blkid -p -o export` as a map, with blkid's backslash escapes removed.
    fn blkid(path: &Path) -> Option<HashMap<String, String>> {
        let prog = tool("blkid")?;
        let out = Command::new(prog)
            .args(["-p", "-o", "export"])
            .arg(path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let map = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                let mut value = String::new();
                let mut chars = v.chars();
                while let Some(c) = chars.next() {
                    value.push(if c == '\\' {
                        chars.next().unwrap_or(c)
                    } else {
                        c
                    });
                }
                (k.to_owned(), value)
            })
            .collect();
        Some(map)
    }

    /// Asserts that kind, LABEL and UUID agree with blkid on `path`.
    fn assert_like_blkid(path: &Path, info: &FsInfo) {
        let Some(b) = blkid(path) else { return };
        let ty = b.get("TYPE").map(String::as_str);
        if info.kind == FsKind::Ext2 {
            // blkid calls ext2 "ext4" on hosts whose kernel has no ext2 driver
            assert!(matches!(ty, Some("ext2" | "ext4")), "TYPE {ty:?}");
        } else {
            assert_eq!(ty, Some(info.kind.blkid_name()), "TYPE, blkid said {b:?}");
        }
        assert_eq!(
            b.get("LABEL"),
            info.label.as_ref(),
            "LABEL, blkid said {b:?}"
        );
        assert_eq!(b.get("UUID"), info.uuid.as_ref(), "UUID, blkid said {b:?}");
    }

    /// Makes a sparse image of `size` bytes, runs `program args… image` on it, checks the
    /// result against blkid, fuzzes it, and returns the image and what detect found.
    fn mkfs_case(size: u64, program: &str, args: &[&str]) -> Option<(Img, FsInfo)> {
        let prog = tool(program)?;
        let img = sparse(size);
        output(Command::new(prog).args(args).arg(&img.path));
        let info = detect_file(&img.path)
            .unwrap_or_else(|| panic!("{program} {args:?}: nothing detected"));
        assert_like_blkid(&img.path, &info);
        if let Some(used) = info.used_bytes {
            assert!(
                used > 0 && used <= size,
                "{program} {args:?}: used {used} of {size}"
            );
        }
        fuzz_image(&img.path, 150);
        Some((img, info))
    }

    /// "key: value" or "key = value" lines of a tool's output.
    fn kv(text: &str, key: &str) -> u64 {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"));
        let value = line[line.find(key).unwrap() + key.len()..]
            .trim_start_matches([':', '=', ' ', '\t'])
            .split_whitespace()
            .next()
            .unwrap();
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
            None => value.parse().unwrap(),
        }
    }

    // ---- fuzzing helpers --------------------------------------------------------------------

    /// A read-only device over a borrowed buffer, so fuzzing can mutate in place.
    struct BytesDev<'a>(&'a [u8]);

    impl BlockDev for BytesDev<'_> {
        fn geometry(&self) -> Geometry {
            Geometry::new(self.0.len() as u64, 512)
        }
        fn path(&self) -> &Path {
            Path::new("<fuzz>")
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
            check_range(self.path(), offset, buf.len(), self.len())?;
            let start = offset as usize;
            buf.copy_from_slice(&self.0[start..start + buf.len()]);
            Ok(())
        }
        fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
            Err(Error::ReadOnly {
                path: self.path().to_path_buf(),
            })
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
    }

    /// Records the byte ranges read through it.
    struct Recorder<'a> {
        inner: &'a dyn BlockDev,
        reads: Mutex<Vec<(u64, usize)>>,
    }

    impl BlockDev for Recorder<'_> {
        fn geometry(&self) -> Geometry {
            self.inner.geometry()
        }
        fn path(&self) -> &Path {
            self.inner.path()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
            self.reads.lock().unwrap().push((offset, buf.len()));
            self.inner.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
            self.inner.write_at(buf, offset)
        }
        fn sync(&self) -> Result<()> {
            self.inner.sync()
        }
    }

    /// xorshift64*: deterministic, no crate needed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// Flips random bytes inside the ranges detect reads on the image at `path`, `rounds`
    /// times, and checks detect neither panics nor fails.
    fn fuzz_image(path: &Path, rounds: usize) {
        let file = FileDev::open(path, OpenMode::Read).unwrap();
        let rec = Recorder {
            inner: &file,
            reads: Mutex::new(Vec::new()),
        };
        detect(&rec).unwrap();
        let hot: Vec<(u64, usize)> = rec.reads.into_inner().unwrap();
        let end = hot.iter().map(|&(o, l)| o + l as u64).max().unwrap_or(0);
        let mut bytes = read_prefix(path, end + 4096);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ end);
        for _ in 0..rounds {
            let flips = 1 + rng.below(8) as usize;
            let mut saved = Vec::with_capacity(flips);
            for _ in 0..flips {
                let (o, l) = hot[rng.below(hot.len() as u64) as usize];
                // favour the start of each read, where headers live
                let span = if rng.below(2) == 0 { l.min(512) } else { l };
                let within = rng.below(span as u64);
                let at = (o + within) as usize;
                if at < bytes.len() {
                    saved.push((at, bytes[at]));
                    bytes[at] = rng.next() as u8;
                }
            }
            detect(&BytesDev(&bytes)).expect("an in-memory device never fails");
            for (at, b) in saved.into_iter().rev() {
                bytes[at] = b;
            }
        }
    }

    // ---- hand-built images ------------------------------------------------------------------

    fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
        buf[off..off + bytes.len()].copy_from_slice(bytes);
    }

    const HAND_UUID: [u8; 16] = [
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd,
        0xef,
    ];
    const HAND_UUID_TEXT: &str = "12345678-9abc-def0-0123-456789abcdef";

    /// 256 KiB holding an ext superblock with the given features and counts.
    fn ext_image(
        compat: u32,
        incompat: u32,
        ro: u32,
        log_bs: u32,
        blocks: u64,
        free: u64,
    ) -> Vec<u8> {
        let mut d = vec![0u8; 256 << 10];
        let sb = &mut d[1024..2048];
        put(sb, 0x04, &(blocks as u32).to_le_bytes());
        put(sb, 0x0C, &(free as u32).to_le_bytes());
        put(sb, 0x18, &log_bs.to_le_bytes());
        put(sb, 0x38, &0xEF53u16.to_le_bytes());
        put(sb, 0x5C, &compat.to_le_bytes());
        put(sb, 0x60, &incompat.to_le_bytes());
        put(sb, 0x64, &ro.to_le_bytes());
        put(sb, 0x68, &HAND_UUID);
        put(sb, 0x78, b"hand\0");
        put(sb, 0x150, &((blocks >> 32) as u32).to_le_bytes());
        put(sb, 0x158, &((free >> 32) as u32).to_le_bytes());
        d
    }

    /// 1 MiB holding a FAT16 volume (512-byte sectors, 4 sectors per cluster, 1 reserved
    /// sector, 2 FATs of 64 sectors, 512 root entries, 65536 sectors) with a root-directory
    /// label and clusters 2 and 3 allocated.
    fn fat16_image() -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        put(&mut d, 0, &[0xEB, 0x3C, 0x90]);
        put(&mut d, 3, b"mkfs.fat");
        put(&mut d, 0x0B, &512u16.to_le_bytes());
        d[0x0D] = 4;
        put(&mut d, 0x0E, &1u16.to_le_bytes());
        d[0x10] = 2;
        put(&mut d, 0x11, &512u16.to_le_bytes());
        d[0x15] = 0xF8;
        put(&mut d, 0x16, &64u16.to_le_bytes());
        put(&mut d, 0x20, &65536u32.to_le_bytes());
        d[0x26] = 0x29;
        put(&mut d, 0x27, &0x1234_ABCDu32.to_le_bytes());
        put(&mut d, 0x2B, b"BOOTLABEL  ");
        put(&mut d, 0x36, b"FAT16   ");
        put(&mut d, 510, &[0x55, 0xAA]);
        for fat in [512, 512 + 64 * 512] {
            put(
                &mut d,
                fat,
                &[0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            );
        }
        let root = (1 + 128) * 512;
        put(&mut d, root, b"ROOTLABEL  ");
        d[root + 11] = 0x08;
        d
    }

    /// FAT16 metadata sectors of [`fat16_image`]: reserved + FATs + root directory.
    const FAT16_META: u64 = (1 + 128 + 32) * 512;

    /// 64 KiB holding an NTFS boot sector (512-byte sectors, 4 KiB clusters, MFT at cluster
    /// 4, 1 KiB records) and MFT record 3 whose $VOLUME_NAME straddles the first fixup.
    fn ntfs_image() -> Vec<u8> {
        let mut d = vec![0u8; 64 << 10];
        put(&mut d, 0, &[0xEB, 0x52, 0x90]);
        put(&mut d, 3, b"NTFS    ");
        put(&mut d, 0x0B, &512u16.to_le_bytes());
        d[0x0D] = 8;
        d[0x15] = 0xF8;
        put(&mut d, 0x28, &131_071u64.to_le_bytes());
        put(&mut d, 0x30, &4u64.to_le_bytes());
        put(&mut d, 0x38, &8u64.to_le_bytes());
        d[0x40] = 0xF6; // -10: 1 KiB records
        put(&mut d, 0x48, &0x0123_4567_89AB_CDEFu64.to_le_bytes());
        put(&mut d, 510, &[0x55, 0xAA]);
        let rec = 4 * 4096 + 3 * 1024;
        let r = &mut d[rec..rec + 1024];
        put(r, 0, b"FILE");
        put(r, 4, &0x30u16.to_le_bytes());
        put(r, 6, &3u16.to_le_bytes());
        put(r, 0x14, &480u16.to_le_bytes());
        put(r, 0x18, &600u32.to_le_bytes());
        // $VOLUME_NAME at 480: 24-byte header, value "HandMade" at 504..520
        put(r, 480, &0x60u32.to_le_bytes());
        put(r, 484, &40u32.to_le_bytes());
        put(r, 480 + 0x10, &16u32.to_le_bytes());
        put(r, 480 + 0x14, &24u16.to_le_bytes());
        let name: Vec<u8> = "HandMade"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        put(r, 504, &name);
        put(r, 520, &0xFFFF_FFFFu32.to_le_bytes());
        // update sequence: number 7, originals saved, stride ends replaced
        put(r, 0x30, &7u16.to_le_bytes());
        let first = [r[510], r[511]];
        let second = [r[1022], r[1023]];
        put(r, 0x32, &first);
        put(r, 0x34, &second);
        put(r, 510, &7u16.to_le_bytes());
        put(r, 1022, &7u16.to_le_bytes());
        d
    }

    /// 1 MiB holding an LVM2 PV label in sector 1 with PV UUID `pv`.
    fn lvm2_image(pv: &[u8; 32]) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        let l = &mut d[512..1024];
        put(l, 0, b"LABELONE");
        put(l, 8, &1u64.to_le_bytes());
        put(l, 20, &32u32.to_le_bytes());
        put(l, 24, b"LVM2 001");
        put(l, 32, pv);
        put(l, 64, &(1u64 << 20).to_le_bytes()); // device size
        let crc = lvm2_crc(&l[20..]);
        put(l, 16, &crc.to_le_bytes());
        d
    }

    fn mem(d: Vec<u8>) -> MemDev {
        MemDev::from_vec(d, 512)
    }

    // ---- unit tests that need no tools ------------------------------------------------------

    #[test]
    fn names_match_blkid_and_humans() {
        let cases = [
            (FsKind::Ext2, "ext2", "ext2"),
            (FsKind::Ext3, "ext3", "ext3"),
            (FsKind::Ext4, "ext4", "ext4"),
            (FsKind::Fat12, "vfat", "FAT12"),
            (FsKind::Fat16, "vfat", "FAT16"),
            (FsKind::Fat32, "vfat", "FAT32"),
            (FsKind::Exfat, "exfat", "exFAT"),
            (FsKind::Ntfs, "ntfs", "NTFS"),
            (FsKind::Xfs, "xfs", "XFS"),
            (FsKind::Btrfs, "btrfs", "btrfs"),
            (FsKind::Swap, "swap", "swap"),
            (FsKind::Luks1, "crypto_LUKS", "LUKS1"),
            (FsKind::Luks2, "crypto_LUKS", "LUKS2"),
            (FsKind::Lvm2, "LVM2_member", "LVM2 PV"),
            (FsKind::Iso9660, "iso9660", "ISO 9660"),
        ];
        for (kind, blkid, human) in cases {
            assert_eq!(kind.blkid_name(), blkid);
            assert_eq!(kind.display_name(), human);
        }
    }

    #[test]
    fn checksums_match_reference_vectors() {
        // RFC 3720 B.4 / the usual "123456789" check value
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn label_and_uuid_formatting() {
        assert_eq!(text_label(b"abc  \t\0junk"), Some("abc".into()));
        assert_eq!(text_label(b"   "), None);
        assert_eq!(text_label(b""), None);
        let utf16: Vec<u8> = "Été \0x"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(utf16_label(&utf16, false), Some("Été".into()));
        assert_eq!(
            utf16_label(&[0x00, 0xD8, 0x41, 0x00], false),
            Some("\u{FFFD}A".into())
        );
        assert_eq!(uuid16(&HAND_UUID), Some(HAND_UUID_TEXT.into()));
        assert_eq!(uuid16(&[0; 16]), None);
        assert_eq!(
            fat_serial(0x1234_ABCDu32.to_le_bytes()),
            Some("1234-ABCD".into())
        );
        assert_eq!(fat_serial([0; 4]), None);
    }

    #[test]
    fn ext_kind_follows_blkid_feature_rules() {
        let cases = [
            ("ext2", 0x38, 0x2, 0x3, Some(FsKind::Ext2)),
            ("ext3", 0x3C, 0x2, 0x3, Some(FsKind::Ext3)),
            ("ext3 needing recovery", 0x3C, 0x6, 0x3, Some(FsKind::Ext3)),
            ("ext4 extents", 0x3C, 0x42, 0x3, Some(FsKind::Ext4)),
            ("ext4 flex_bg", 0x3C, 0x202, 0x3, Some(FsKind::Ext4)),
            ("ext4 without journal", 0x38, 0x42, 0x3, Some(FsKind::Ext4)),
            ("ext4 by huge_file", 0x3C, 0x2, 0xB, Some(FsKind::Ext4)),
            ("journal device", 0x0, 0x8, 0x0, None),
        ];
        for (name, compat, incompat, ro, want) in cases {
            let got = detect(&mem(ext_image(compat, incompat, ro, 2, 1000, 400))).unwrap();
            assert_eq!(got.as_ref().map(|i| i.kind), want, "{name}");
            if let Some(info) = got {
                assert_eq!(info.label.as_deref(), Some("hand"), "{name}");
                assert_eq!(info.uuid.as_deref(), Some(HAND_UUID_TEXT), "{name}");
                assert_eq!(info.used_bytes, Some(600 * 4096), "{name}");
            }
        }
    }

    #[test]
    fn ext_used_bytes_uses_high_halves_only_with_64bit() {
        let blocks = (3u64 << 32) + 10;
        let free = (1u64 << 32) + 4;
        let with = detect(&mem(ext_image(0x3C, 0xC2, 0x3, 2, blocks, free))).unwrap();
        assert_eq!(with.unwrap().used_bytes, Some((blocks - free) * 4096));
        let without = detect(&mem(ext_image(0x3C, 0x42, 0x3, 2, blocks, free))).unwrap();
        assert_eq!(without.unwrap().used_bytes, Some(6 * 4096));
        let more_free = detect(&mem(ext_image(0x3C, 0x42, 0x3, 2, 10, 20))).unwrap();
        assert_eq!(more_free.unwrap().used_bytes, None);
    }

    #[test]
    fn ext_absurd_block_size_is_partial() {
        let info = detect(&mem(ext_image(0x3C, 0x42, 0x3, 200, 1000, 10)))
            .unwrap()
            .unwrap();
        assert_eq!(info.kind, FsKind::Ext4);
        assert_eq!(info.used_bytes, None);
        let max = detect(&mem(ext_image(0x3C, 0x42, 0x3, u32::MAX, u64::MAX, 0))).unwrap();
        assert_eq!(max.unwrap().used_bytes, None);
    }

    #[test]
    fn ext_bad_metadata_csum_drops_used_bytes() {
        let mut d = ext_image(0x3C, 0x42, 0x403, 2, 1000, 400);
        d[1024 + 0x175] = 1;
        let crc = crc32c_raw(!0, &d[1024..1024 + 0x3FC]);
        put(&mut d, 1024 + 0x3FC, &crc.to_le_bytes());
        let good = detect(&mem(d.clone())).unwrap().unwrap();
        assert_eq!(good.used_bytes, Some(600 * 4096));
        d[1024 + 0x200] ^= 1;
        let bad = detect(&mem(d)).unwrap().unwrap();
        assert_eq!((bad.kind, bad.used_bytes), (FsKind::Ext4, None));
        assert_eq!(bad.label.as_deref(), Some("hand"));
    }

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

    #[test]
    fn ntfs_hand_built_applies_fixups() {
        let info = detect(&mem(ntfs_image())).unwrap().unwrap();
        assert_eq!(
            info,
            FsInfo {
                kind: FsKind::Ntfs,
                label: Some("HandMade".into()),
                uuid: Some("0123456789ABCDEF".into()),
                used_bytes: None,
            }
        );
    }

    #[test]
    fn ntfs_hostile_boot_sectors() {
        let mut bad_record_size = ntfs_image();
        bad_record_size[0x40] = 0x80;
        assert_eq!(detect(&mem(bad_record_size)).unwrap(), None);

        for lcn in [1u64 << 40, u64::MAX / 4096 + 1, u64::MAX] {
            let mut far = ntfs_image();
            put(&mut far, 0x30, &lcn.to_le_bytes());
            let info = detect(&mem(far)).unwrap().unwrap();
            assert_eq!((info.kind, info.label), (FsKind::Ntfs, None), "lcn {lcn}");
        }

        let mut torn = ntfs_image();
        torn[4 * 4096 + 3 * 1024 + 1022] = 8;
        assert_eq!(detect(&mem(torn)).unwrap().unwrap().label, None);

        let mut looping = ntfs_image();
        put(&mut looping, 4 * 4096 + 3 * 1024 + 484, &0u32.to_le_bytes());
        assert_eq!(detect(&mem(looping)).unwrap().unwrap().label, None);

        let mut huge_clusters = ntfs_image();
        huge_clusters[0x0D] = 0x81; // 2^127 sectors per cluster
        assert_eq!(detect(&mem(huge_clusters)).unwrap(), None);

        let mut fat_fields = ntfs_image();
        fat_fields[0x10] = 2;
        assert_eq!(detect(&mem(fat_fields)).unwrap(), None);
    }

    #[test]
    fn luks_hand_built() {
        let mut d = vec![0u8; 64 << 10];
        put(&mut d, 0, LUKS_MAGIC);
        put(&mut d, 6, &2u16.to_be_bytes());
        put(&mut d, 24, b"crypt label");
        put(&mut d, 168, HAND_UUID_TEXT.as_bytes());
        let info = detect(&mem(d.clone())).unwrap().unwrap();
        assert_eq!(info.kind, FsKind::Luks2);
        assert_eq!(info.label.as_deref(), Some("crypt label"));
        assert_eq!(info.uuid.as_deref(), Some(HAND_UUID_TEXT));
        // a LUKS2 header that claims to live elsewhere is stale
        put(&mut d, 256, &0x4000u64.to_be_bytes());
        assert_eq!(detect(&mem(d.clone())).unwrap(), None);
        // ...unless it is found there, as the secondary header
        let mut second = vec![0u8; 64 << 10];
        second[0x4000..0x4000 + 512].copy_from_slice(&d[..512]);
        put(&mut second, 0x4000, LUKS2_SECONDARY_MAGIC);
        assert_eq!(detect(&mem(second)).unwrap().unwrap().kind, FsKind::Luks2);
        // unknown versions are not guessed at
        put(&mut d, 6, &3u16.to_be_bytes());
        assert_eq!(detect(&mem(d)).unwrap(), None);
    }

    #[test]
    fn lvm2_hand_built() {
        let info = detect(&mem(lvm2_image(b"abcdefGHIJKL0123456789mnopqrstuv"))).unwrap();
        assert_eq!(
            info,
            Some(FsInfo {
                kind: FsKind::Lvm2,
                label: None,
                uuid: Some("abcdef-GHIJ-KL01-2345-6789-mnop-qrstuv".into()),
                used_bytes: None,
            })
        );
        let mut bad_crc = lvm2_image(b"abcdefGHIJKL0123456789mnopqrstuv");
        bad_crc[512 + 100] ^= 1;
        let info = detect(&mem(bad_crc)).unwrap().unwrap();
        assert_eq!((info.kind, info.uuid), (FsKind::Lvm2, None));
        let mut wrong_sector = lvm2_image(b"abcdefGHIJKL0123456789mnopqrstuv");
        put(&mut wrong_sector, 512 + 8, &2u64.to_le_bytes());
        assert_eq!(detect(&mem(wrong_sector)).unwrap(), None);
    }

    #[test]
    fn lvm2_hand_built_matches_blkid() {
        let img = image_from(&lvm2_image(b"Zq3xY7AbCdEfGhIjKlMnOpQrStUvWx01"));
        // libblkid skips RAID-type probes on very small devices
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img.path)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let info = detect_file(&img.path).unwrap();
        assert_eq!(
            info.uuid.as_deref(),
            Some("Zq3xY7-AbCd-EfGh-IjKl-MnOp-QrSt-UvWx01")
        );
        assert_like_blkid(&img.path, &info);
    }

    #[test]
    fn swap_v0_matches_blkid() {
        let mut d = vec![0u8; 64 << 10];
        put(&mut d, 4096 - 10, b"SWAP-SPACE");
        let img = image_from(&d);
        let info = detect_file(&img.path).unwrap();
        assert_eq!(
            (info.kind, &info.label, &info.uuid),
            (FsKind::Swap, &None, &None)
        );
        assert_like_blkid(&img.path, &info);
        // too small for swap (libblkid needs ten pages)
        assert_eq!(detect(&mem(d[..32 << 10].to_vec())).unwrap(), None);
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let mut rng = Rng(42);
        for len in [
            0usize,
            1,
            100,
            511,
            512,
            1025,
            4096,
            40960,
            65536 + 100,
            1 << 20,
        ] {
            assert_eq!(
                detect(&mem(vec![0; len])).unwrap(),
                None,
                "zeros, {len} bytes"
            );
            detect(&mem(rng.bytes(len))).unwrap();
        }
        // random bytes behind every magic, at every probe's offset
        let magics: [(usize, &[u8]); 14] = [
            (0, LUKS_MAGIC),
            (512, b"LABELONE"),
            (0x10040, b"_BHRfS_M"),
            (0, b"XFSB"),
            (1024 + 0x38, &[0x53, 0xEF]),
            (3, b"NTFS    "),
            (3, b"EXFAT   "),
            (4086, b"SWAPSPACE2"),
            (65526, b"SWAPSPACE2"),
            (0x8001, b"CD001"),
            (0x36, b"FAT16   "),
            (0x52, b"FAT32   "),
            (510, &[0x55, 0xAA]),
            (0x8801, b"CD001"),
        ];
        for round in 0..300 {
            let mut d = rng.bytes(96 << 10);
            for (off, magic) in magics.iter().filter(|_| rng.below(3) == 0) {
                put(&mut d, *off, magic);
            }
            if round % 2 == 0 {
                // keep exFAT's and LVM's fixed bytes so their parsers go deeper
                put(&mut d, 0, &[0xEB, 0x76, 0x90]);
                put(&mut d, 11, &[0u8; 53]);
                put(&mut d, 512 + 24, b"LVM2 001");
            }
            detect(&mem(d)).unwrap();
        }
        // hand-built images with random damage
        for base in [
            fat16_image(),
            ntfs_image(),
            ext_image(0x3C, 0xC2, 0x403, 2, 9, 3),
        ] {
            let mut d = base.clone();
            for _ in 0..500 {
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(40 << 10) as usize % d.len();
                    d[at] = rng.next() as u8;
                }
                detect(&BytesDev(&d)).unwrap();
                d.copy_from_slice(&base);
            }
        }
    }

    #[test]
    fn detects_through_a_partition_slice() {
        let mut disk = vec![0u8; 3 << 20];
        disk[1 << 20..(1 << 20) + (256 << 10)]
            .copy_from_slice(&ext_image(0x3C, 0x42, 0x3, 2, 1000, 400));
        let disk = mem(disk);
        assert_eq!(detect(&disk).unwrap(), None);
        let part = crate::blockdev::Slice::new(&disk, 1 << 20, 2 << 20);
        assert_eq!(detect(&part).unwrap().unwrap().kind, FsKind::Ext4);
    }

    #[test]
    fn read_errors_elsewhere_do_not_hide_a_filesystem() {
        // the btrfs and swap windows are unreadable, the ext superblock is fine
        let dev = FaultyDev::new(mem(ext_image(0x3C, 0x42, 0x3, 2, 1000, 400)))
            .fail_reads(0x1_0000..0x1_1000)
            .fail_reads(0..512);
        assert_eq!(detect(&dev).unwrap().unwrap().kind, FsKind::Ext4);
        // nothing recognisable and an unreadable sector: the error is reported
        let dev = FaultyDev::new(MemDev::new(1 << 20, 512)).fail_reads(1024..1536);
        assert!(matches!(detect(&dev), Err(Error::Read { .. })));
        // a bad root-directory sector costs the label only
        let dev = FaultyDev::new(mem(fat16_image())).fail_reads(129 * 512..130 * 512);
        let info = detect(&dev).unwrap().unwrap();
        assert_eq!((info.kind, info.label), (FsKind::Fat16, None));
    }

    // ---- real images made by the tools, compared with blkid --------------------------------

    const UUID_A: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

    /// (block count, free blocks, block size) from `dumpe2fs -h`.
    fn dumpe2fs_used(path: &Path) -> Option<u64> {
        let text = output(Command::new(tool("dumpe2fs")?).arg("-h").arg(path));
        Some((kv(&text, "Block count") - kv(&text, "Free blocks")) * kv(&text, "Block size"))
    }

    #[test]
    fn ext_images_match_blkid_and_dumpe2fs() {
        let content = tempfile::tempdir().unwrap();
        std::fs::write(content.path().join("data"), vec![7u8; 3 << 20]).unwrap();
        let content_dir = content.path().to_str().unwrap();
        let cases: [(&str, &str, &[&str], FsKind); 6] = [
            ("ext2", "mkfs.ext2", &[], FsKind::Ext2),
            ("ext3", "mkfs.ext3", &[], FsKind::Ext3),
            ("ext4", "mkfs.ext4", &["-d", content_dir], FsKind::Ext4),
            (
                "ext4 64bit",
                "mkfs.ext4",
                &["-O", "64bit", "-b", "4096"],
                FsKind::Ext4,
            ),
            (
                "ext4 no journal",
                "mkfs.ext4",
                &["-O", "^has_journal"],
                FsKind::Ext4,
            ),
            (
                "ext4 no csum",
                "mkfs.ext4",
                &["-O", "^metadata_csum"],
                FsKind::Ext4,
            ),
        ];
        for (name, program, extra, kind) in cases {
            let mut args = vec!["-q", "-F", "-L", "lab", "-U", UUID_A];
            args.extend_from_slice(extra);
            let Some((img, info)) = mkfs_case(32 << 20, program, &args) else {
                continue;
            };
            assert_eq!(info.kind, kind, "{name}");
            assert_eq!(info.label.as_deref(), Some("lab"), "{name}");
            assert_eq!(info.uuid.as_deref(), Some(UUID_A), "{name}");
            if let Some(want) = dumpe2fs_used(&img.path) {
                assert_eq!(info.used_bytes, Some(want), "{name}");
            }
            if kind == FsKind::Ext4 && !extra.is_empty() && extra[0] == "-d" {
                assert!(
                    info.used_bytes.unwrap() > 3 << 20,
                    "{name}: file not counted"
                );
            }
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

    #[test]
    fn ntfs_images_match_blkid() {
        let cases: [(&str, &[&str], &str); 3] = [
            ("default", &["-L", "Nt Lab"], "Nt Lab"),
            ("4K sectors", &["-s", "4096", "-L", "four"], "four"),
            (
                "64K clusters",
                &["-c", "65536", "-L", "Big Clusters"],
                "Big Clusters",
            ),
        ];
        for (name, extra, label) in cases {
            let mut args = vec!["-F", "-Q", "-q"];
            args.extend_from_slice(extra);
            let Some((_img, info)) = mkfs_case(64 << 20, "mkntfs", &args) else {
                return;
            };
            assert_eq!(info.kind, FsKind::Ntfs, "{name}");
            assert_eq!(info.label.as_deref(), Some(label), "{name}");
            assert_eq!(info.uuid.as_ref().map(String::len), Some(16), "{name}");
        }
    }

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

    #[test]
    fn swap_images_match_blkid() {
        for page in ["4096", "16384", "65536"] {
            let args = ["-L", "slab", "-U", UUID_A, "-p", page];
            let Some((_img, info)) = mkfs_case(64 << 20, "mkswap", &args) else {
                return;
            };
            assert_eq!(
                (info.kind, info.label.as_deref(), info.uuid.as_deref()),
                (FsKind::Swap, Some("slab"), Some(UUID_A)),
                "page size {page}"
            );
        }
    }

    #[test]
    fn luks_images_match_blkid() {
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("key");
        std::fs::write(&key, b"not a secret").unwrap();
        let key = key.to_str().unwrap();
        let fast = ["--pbkdf-force-iterations", "1000", "--key-file", key];
        let luks2 = [
            &["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2"][..],
            &fast,
            &["--label", "myluks", "--uuid", UUID_A],
        ]
        .concat();
        let luks1 = [&["luksFormat", "-q", "--type", "luks1"][..], &fast].concat();
        let cases: [(&[&str], FsKind, Option<&str>); 2] = [
            (&luks2, FsKind::Luks2, Some("myluks")),
            (&luks1, FsKind::Luks1, None),
        ];
        for (args, kind, label) in cases {
            let Some((img, info)) = mkfs_case(32 << 20, "cryptsetup", args) else {
                return;
            };
            assert_eq!((info.kind, info.label.as_deref()), (kind, label));
            if kind == FsKind::Luks2 {
                assert_eq!(info.uuid.as_deref(), Some(UUID_A));
                // primary header wiped: found through the secondary one, like blkid
                patch(&img.path, 0, &[0u8; 512]);
                let info = detect_file(&img.path).unwrap();
                assert_eq!(info.kind, FsKind::Luks2);
                assert_like_blkid(&img.path, &info);
            }
        }
    }

    #[test]
    fn iso9660_images_match_blkid() {
        let Some(xorriso) = tool("xorriso") else {
            return;
        };
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("hello.txt"), b"hello\n").unwrap();
        std::fs::write(tree.path().join("boot.img"), [0u8; 2048]).unwrap();
        let tree = tree.path().to_str().unwrap();
        let cases: [(&str, Vec<&str>, Option<&str>); 4] = [
            ("plain", vec!["-as", "mkisofs", "-V", "ISOLAB"], None),
            (
                "joliet",
                vec!["-as", "mkisofs", "-J", "-V", "Joliet Lab"],
                None,
            ),
            (
                // the El Torito boot record sits between the primary and Joliet descriptors
                "joliet after boot record",
                vec![
                    "-as",
                    "mkisofs",
                    "-J",
                    "-V",
                    "Joliet Lab",
                    "-b",
                    "boot.img",
                    "-no-emul-boot",
                ],
                None,
            ),
            (
                "dates",
                vec![
                    "-volid",
                    "DATES",
                    "-volume_date",
                    "c",
                    "2011010203040500",
                    "-volume_date",
                    "m",
                    "2012010203040500",
                    "-map",
                    tree,
                    "/",
                ],
                Some("2012-01-02-03-04-05-00"),
            ),
        ];
        for (name, args, uuid) in cases {
            let img = sparse(0);
            std::fs::remove_file(&img.path).unwrap();
            let mut cmd = Command::new(&xorriso);
            if name == "dates" {
                // native xorriso commands run in order: the output device comes first
                cmd.arg("-outdev").arg(&img.path).args(&args);
            } else {
                cmd.args(&args).arg("-o").arg(&img.path).arg(tree);
            }
            output(&mut cmd);
            let info = detect_file(&img.path).unwrap();
            assert_eq!(info.kind, FsKind::Iso9660, "{name}");
            assert_like_blkid(&img.path, &info);
            if let Some(uuid) = uuid {
                assert_eq!(info.uuid.as_deref(), Some(uuid), "{name}");
            }
            let len = std::fs::metadata(&img.path).unwrap().len();
            assert!(info.used_bytes.is_some_and(|u| u > 0 && u <= len), "{name}");
            fuzz_image(&img.path, 150);
            if name.starts_with("joliet") {
                // a primary label that differs from the Joliet one (as a strict mkisofs
                // would upper-case it): the Joliet label wins, as in blkid
                patch(
                    &img.path,
                    0x8028,
                    format!("{:<32}", "JOLIET_LAB").as_bytes(),
                );
                let info = detect_file(&img.path).unwrap();
                assert_eq!(info.label.as_deref(), Some("Joliet Lab"));
                assert_like_blkid(&img.path, &info);
            }
        }
    }
}
