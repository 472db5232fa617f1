//! Filesystem detection by on-disk magic. [`detect`] looks at the superblocks of one partition
//! (usually a `blockdev::Slice`) and says which [`FsKind`] it holds, with the label, UUID and
//! used bytes where the format gives them cheaply.
//!
//! This module owns the shared vocabulary ([`FsKind`], [`FsInfo`]) and the ordered list of
//! formats (`FORMATS`); each format's probe lives in its own module next to its used-block map
//! (`ext.rs`, `fat.rs`, `ntfs.rs`, `exfat.rs`, `xfs.rs`, `btrfs.rs`, `swap.rs`, `luks.rs`,
//! `bitlocker.rs`, `lvm.rs`, `iso9660.rs`), and what several probes share is in `probe.rs`. A new format is one
//! new module with a `FORMAT` and one line in `FORMATS`.
//!
//! Invariants:
//! - **Read-only and bounded.** Every probe reads a fixed window through
//!   [`crate::blockdev::read_clamped`]; directory scans, cluster chains, FAT counts and bitmap
//!   counts have fixed byte and iteration limits (constants in each format's module), so a
//!   hostile image cannot make detection slow or allocate without bound.
//! - **Never panics on any bytes.** Every field is read with the bounds-checked readers of
//!   [`crate::bytes`] and all arithmetic on on-disk values is checked; a nonsensical value
//!   yields "unknown" or a partial [`FsInfo`], never a panic.
//! - **Labels and UUIDs are formatted the way `blkid -o export` prints them** (libblkid 2.38):
//!   labels are cut at the first NUL and lose trailing whitespace; UTF-16 labels are converted
//!   to UTF-8; an all-zero UUID or serial is no UUID.
//!
//! Units: every offset and size is in bytes.
//!
//! Probe order: LUKS, BitLocker, LVM2, btrfs, XFS, ext, NTFS, exFAT, swap, ISO 9660, FAT. Strong magics
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

use super::MapFn;
use crate::blockdev::BlockDev;
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
    /// BitLocker encrypted volume (Windows Vista, 7 and later, or To Go).
    Bitlocker,
    /// LVM2 physical volume.
    Lvm2,
    /// ISO 9660 (CD/DVD image), with or without Joliet.
    Iso9660,
}

impl FsKind {
    /// The name blkid prints as `TYPE=`: "ext2", "ext3", "ext4", "vfat" (all three FATs),
    /// "exfat", "ntfs", "xfs", "btrfs", "swap", "crypto_LUKS" (both LUKS versions), "BitLocker",
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
            FsKind::Bitlocker => "BitLocker",
            FsKind::Lvm2 => "LVM2_member",
            FsKind::Iso9660 => "iso9660",
        }
    }

    /// Whether the format is an encrypted volume (LUKS, BitLocker): its blocks are ciphertext,
    /// so which are in use cannot be told without unlocking it.
    pub fn is_encrypted(self) -> bool {
        matches!(self, FsKind::Luks1 | FsKind::Luks2 | FsKind::Bitlocker)
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
            FsKind::Bitlocker => "BitLocker",
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
    /// `None` otherwise (always for swap, LUKS, BitLocker and LVM2). Per format:
    /// ext: (blocks − free blocks) × block size; FAT and exFAT: the area before the data
    /// clusters (reserved sectors, FATs, FAT12/16 root directory; exFAT cluster-heap offset)
    /// plus allocated clusters × cluster size; NTFS: clusters marked in use in `$Bitmap` ×
    /// cluster size (as ntfs-3g's `df`); XFS: (dblocks − fdblocks) × block size; btrfs:
    /// bytes allocated to chunks on this device (`dev_item.bytes_used`, which counts DUP and
    /// RAID copies, unlike the filesystem-wide logical `bytes_used`); ISO 9660: the volume size.
    /// Free counts in superblocks can lag on a mounted or uncleanly unmounted filesystem.
    pub used_bytes: Option<u64>,
}

/// One on-disk format: how [`detect`] recognises it and, when it has one, how
/// [`super::map_filesystem`] reads its used-block map. Each format's module (`fsmap/ext.rs`,
/// `fat.rs`…) defines its own `FORMAT`; [`FORMATS`] lists them in probe order.
#[derive(Clone, Copy)]
pub(crate) struct Format {
    /// Recognises the format; `Err` only when its primary window cannot be read.
    pub(crate) probe: Probe,
    /// Reads the used-block map; `None` when maps of this format are not implemented.
    pub(crate) map: Option<MapFn>,
}

/// One format's probe: `Err` only when its primary window cannot be read.
pub(crate) type Probe = fn(&dyn BlockDev) -> Result<Option<FsInfo>>;

/// Every known format, in probe order (see the module documentation for why this order).
const FORMATS: [Format; 11] = [
    super::luks::FORMAT,
    super::bitlocker::FORMAT,
    super::lvm::FORMAT,
    super::btrfs::FORMAT,
    super::xfs::FORMAT,
    super::ext::FORMAT,
    super::ntfs::FORMAT,
    super::exfat::FORMAT,
    super::swap::FORMAT,
    super::iso9660::FORMAT,
    super::fat::FORMAT,
];

/// Detects the filesystem on `dev` (a whole partition, usually a `blockdev::Slice`).
///
/// Returns `Ok(None)` when no known format is recognised. Fails only with an I/O error from
/// `dev`, and only when no probe recognised the device (see the module docs). Never panics,
/// whatever the bytes; a damaged superblock gives `Ok(None)` or a partial [`FsInfo`]. Reads at
/// most a few MiB, more only for used-space counts: FAT (at most 16 MiB of FAT), exFAT (at
/// most 32 MiB of bitmap) and NTFS (at most 128 MiB of `$Bitmap`, besides MFT records 0, 3
/// and 6).
pub fn detect(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    Ok(identify(dev)?.map(|(info, _)| info))
}

/// [`detect`], and the format whose probe recognised `dev`.
pub(crate) fn identify(dev: &dyn BlockDev) -> Result<Option<(FsInfo, Format)>> {
    let mut first_err = None;
    for format in FORMATS {
        match (format.probe)(dev) {
            Ok(Some(info)) => return Ok(Some((info, format))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::testing::FaultyDev;
    use crate::blockdev::MemDev;
    use crate::error::Error;
    use crate::fsmap::luks::LUKS_MAGIC;
    use crate::fsmap::testutil::*;

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
            (FsKind::Bitlocker, "BitLocker", "BitLocker"),
            (FsKind::Lvm2, "LVM2_member", "LVM2 PV"),
            (FsKind::Iso9660, "iso9660", "ISO 9660"),
        ];
        for (kind, blkid, human) in cases {
            assert_eq!(kind.blkid_name(), blkid);
            assert_eq!(kind.display_name(), human);
        }
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
}
