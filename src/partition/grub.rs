//! GRUB 2's BIOS (i386-pc) boot chain: the two places that hold absolute disk LBAs, so that
//! `--fit` can re-point them when it moves the partition holding core.img (a GPT disk's
//! BIOS-boot partition). Pure: byte buffers in, byte buffers out, no I/O.
//!
//! How GRUB boots under BIOS (GRUB 2.00 to 2.12, `grub-core/boot/i386/pc/boot.S`,
//! `diskboot.S`, `include/grub/i386/pc/boot.h`, `util/setup.c`):
//!
//! 1. The BIOS runs sector 0, GRUB's `boot.img`. It reads ONE sector, core.img's first, from
//!    the LBA stored at byte 0x5C (`GRUB_BOOT_MACHINE_KERNEL_SECTOR`, u64 LE).
//! 2. That sector is `diskboot.img`. Its end holds a table of blocklists that it reads
//!    backwards: the first entry at byte 0x1F4 (`0x200 - GRUB_BOOT_MACHINE_LIST_SIZE`), the
//!    next 12 bytes lower, and so on, until an entry whose sector count is 0.
//!
//! | bytes of an entry | field   | meaning                                               |
//! |-------------------|---------|-------------------------------------------------------|
//! | 0..8              | start   | u64 LE, absolute disk LBA of the run's first sector   |
//! | 8..10             | len     | u16 LE, sectors in the run; 0 ends the table          |
//! | 10..12            | segment | u16 LE, real-mode segment it loads to                 |
//!
//! `grub-bios-setup` fills the table with the absolute LBAs of core.img's other sectors (the
//! BIOS-boot partition's start plus an offset, `gpt_partition_map_embed`), merging adjacent
//! runs. The segments follow from the lengths: the first run loads to 0x820
//! (`GRUB_BOOT_I386_PC_KERNEL_SEG + 0x20`) and each next one 0x20 per sector further; this
//! module uses that chain to recognise a real table. Nothing else in core.img depends on
//! where it lies: the rest is found through these pointers, GRUB's prefix names a partition
//! by number (or a filesystem by UUID), and the Reed-Solomon code `grub-bios-setup` adds
//! covers core.img after its first two sectors, never this table.
//!
//! Units: LBAs count 512-byte sectors (`GRUB_DISK_SECTOR_SIZE`), the unit GRUB writes these
//! fields in whatever the disk's logical sector size. Buffers are at least 512 bytes; only
//! their first 512 are read or written.

use crate::bytes::{field, le16, le64};

/// The sector size GRUB's BIOS pointers count in.
pub const GRUB_SECTOR: usize = 512;

/// Where `boot.img` keeps the LBA of core.img's first sector (u64 LE).
pub const KERNEL_SECTOR_OFFSET: usize = 0x5C;

/// Where `diskboot.img` keeps its first blocklist entry; later ones lie [`LIST_SIZE`] lower.
pub const FIRST_LIST_OFFSET: usize = 0x1F4;

/// Bytes per blocklist entry.
pub const LIST_SIZE: usize = 12;

/// `jmp short after_BPB; nop`: GRUB 2's `boot.img` jumps over the BPB to 0x65. GRUB Legacy's
/// stage1 jumps to 0x4A (`EB 48`); `grub-bios-setup` copies bytes 3..0x5A from the old sector
/// 0 (a FAT BPB) but never these three.
const JUMP: [u8; 3] = [0xEB, 0x63, 0x90];

/// `kernel_address` at 0x5A: the jump target after loading, 0x8000 (u16 LE).
const KERNEL_ADDRESS: (usize, [u8; 2]) = (0x5A, [0x00, 0x80]);

/// The code between the BPB area and the disk signature, where the two marks below sit.
const CODE: std::ops::Range<usize> = 0x65..0x1B8;

/// The message `boot.img` prints first (`notification_string`).
const NOTIFICATION: &[u8] = b"GRUB \0";

/// `movl 0x7C5C, %ebx`: `boot.img` loading the kernel sector's low half from 0x7C00 + 0x5C.
/// The hybrid `boot_hybrid.img` of a grub-mkrescue ISO keeps it at 0x1B0 instead (this
/// instruction reads 0x7DB0 there), so matching it proves the field sits at 0x5C.
const LOAD_KERNEL_SECTOR: [u8; 5] = [0x66, 0x8B, 0x1E, 0x5C, 0x7C];

/// The segment the first blocklist run loads to, and the step per sector.
const FIRST_SEGMENT: u32 = 0x820;
const SEGMENT_PER_SECTOR: u32 = 0x20;

/// What the boot code in sector 0 is, as far as moving core.img is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootCode {
    /// GRUB 2's `boot.img`, loading core.img's first sector from `core_lba` (512-byte LBA).
    Grub {
        /// The LBA at byte 0x5C.
        core_lba: u64,
    },
    /// Says "GRUB " but is not a `boot.img` this module can re-point: GRUB Legacy's stage1,
    /// a grub-mkrescue ISO's hybrid `boot_hybrid.img`, one whose kernel sector is 0 (unset),
    /// or an unknown build. A caller that moves the partition such a loader uses should warn
    /// that the disk may not boot under BIOS.
    UnknownGrub,
    /// No GRUB at all: no boot code, Windows, syslinux, a short buffer, ...
    Other,
}

/// Why [`relocate`] refused. It leaves both buffers untouched whenever it returns one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrubError {
    /// [`classify`] did not find GRUB 2's `boot.img` in sector 0.
    #[error("sector 0 does not hold GRUB's boot.img")]
    NotGrub,
    /// `boot.img` points outside the range being moved.
    #[error("boot.img points at LBA {core_lba}, outside the moved LBAs {from}..{end}")]
    CoreOutside { core_lba: u64, from: u64, end: u64 },
    /// The buffer given for core.img's first sector is shorter than a sector.
    #[error("core.img's first sector is {0} bytes, not 512")]
    ShortDiskboot(usize),
    /// The first blocklist entry is already the terminator: core.img would be one sector.
    #[error("core.img's blocklist is empty")]
    EmptyBlocklist,
    /// No entry with a zero count in the whole sector.
    #[error("core.img's blocklist has no terminator")]
    NoTerminator,
    /// An entry loads to another segment than GRUB's chain gives: not a GRUB blocklist.
    #[error("blocklist entry at byte {offset:#x} loads to segment {found:#x}, not {expected:#x}")]
    BadSegment {
        offset: usize,
        found: u16,
        expected: u32,
    },
    /// A run of core.img lies (partly) outside the range being moved.
    #[error(
        "blocklist entry at byte {offset:#x} (LBA {start}, {len} sectors) lies outside the moved LBAs {from}..{end}"
    )]
    EntryOutside {
        offset: usize,
        start: u64,
        len: u16,
        from: u64,
        end: u64,
    },
    /// The range would move onto sector 0, where `boot.img` itself lives.
    #[error("moving to LBA 0 would put core.img over sector 0")]
    OntoSectorZero,
    /// The moved range's end, or its new end, does not fit in a u64.
    #[error("moving {sectors} sectors from LBA {from} to LBA {to} overflows")]
    Overflow { from: u64, to: u64, sectors: u64 },
}

/// Classifies the boot code in `mbr` (sector 0, at least 512 bytes; a shorter slice is
/// [`BootCode::Other`]). GRUB 2's `boot.img` is recognised by its jump over the BPB, its
/// `kernel_address` (0x8000), its "GRUB " message and the instruction that loads the kernel
/// sector from 0x5C; anything else that says "GRUB " is [`BootCode::UnknownGrub`].
pub fn classify(mbr: &[u8]) -> BootCode {
    let Some(code) = mbr.get(CODE) else {
        return BootCode::Other;
    };
    if !contains(code, NOTIFICATION) {
        return BootCode::Other;
    }
    let is_boot_img = field(mbr, 0, JUMP.len()) == Some(&JUMP[..])
        && field(mbr, KERNEL_ADDRESS.0, 2) == Some(&KERNEL_ADDRESS.1[..])
        && contains(code, &LOAD_KERNEL_SECTOR);
    match le64(mbr, KERNEL_SECTOR_OFFSET) {
        Some(core_lba) if is_boot_img && core_lba != 0 => BootCode::Grub { core_lba },
        _ => BootCode::UnknownGrub,
    }
}

/// The LBA (512-byte sectors) of core.img's first sector when `mbr` (sector 0) holds GRUB 2's
/// `boot.img`; `None` for any other boot code (see [`classify`]).
pub fn core_lba(mbr: &[u8]) -> Option<u64> {
    match classify(mbr) {
        BootCode::Grub { core_lba } => Some(core_lba),
        BootCode::UnknownGrub | BootCode::Other => None,
    }
}

/// Re-points GRUB's BIOS boot chain after the LBAs `from..from + sectors` moved to
/// `to..to + sectors` (512-byte sectors, absolute on the disk): `boot.img`'s kernel sector in
/// `mbr` (sector 0) and every blocklist start in `diskboot` (core.img's first sector, as read
/// from the source) each shift by `to - from`.
///
/// The range is normally the BIOS-boot partition, old start to new start; core.img need not
/// begin at its first sector. Everything must lie inside it: `boot.img`'s pointer and every
/// whole run of the blocklist (whose segments must also follow GRUB's chain). Otherwise this
/// returns a [`GrubError`] and changes neither buffer, so the caller can warn that the disk
/// will not boot under BIOS instead of writing a half-patched chain. On success the caller
/// writes `mbr` to the target's sector 0 and `diskboot` to the target's LBA
/// `to + (core_lba - from)`, after the partition's data (the boot area goes last).
pub fn relocate(
    mbr: &mut [u8],
    diskboot: &mut [u8],
    from: u64,
    to: u64,
    sectors: u64,
) -> Result<(), GrubError> {
    let overflow = GrubError::Overflow { from, to, sectors };
    let end = from.checked_add(sectors).ok_or(overflow.clone())?;
    to.checked_add(sectors).ok_or(overflow)?;
    if to == 0 {
        return Err(GrubError::OntoSectorZero);
    }
    let BootCode::Grub { core_lba } = classify(mbr) else {
        return Err(GrubError::NotGrub);
    };
    if !(from..end).contains(&core_lba) {
        return Err(GrubError::CoreOutside {
            core_lba,
            from,
            end,
        });
    }
    let entries = blocklist(diskboot)?;
    for e in &entries {
        let run_end = e.start.checked_add(u64::from(e.len));
        if e.start < from || run_end.is_none_or(|run_end| run_end > end) {
            return Err(GrubError::EntryOutside {
                offset: e.offset,
                start: e.start,
                len: e.len,
                from,
                end,
            });
        }
    }
    // validated: from here on nothing can fail, and every write is in bounds
    let shift = |lba: u64| lba - from + to;
    put_u64(mbr, KERNEL_SECTOR_OFFSET, shift(core_lba));
    for e in &entries {
        put_u64(diskboot, e.offset, shift(e.start));
    }
    Ok(())
}

/// One run of core.img in `diskboot.img`'s table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Byte offset of the entry in the sector.
    offset: usize,
    start: u64,
    len: u16,
}

/// The entries of `diskboot`'s blocklist table, in the order GRUB reads them, without the
/// terminator. The walk visits every 12-byte slot from 0x1F4 down to byte 8, the lowest one
/// `grub-bios-setup` accepts (it fails "no terminator in the core image" below that).
fn blocklist(diskboot: &[u8]) -> Result<Vec<Entry>, GrubError> {
    if diskboot.len() < GRUB_SECTOR {
        return Err(GrubError::ShortDiskboot(diskboot.len()));
    }
    let mut entries = Vec::new();
    let mut segment = FIRST_SEGMENT;
    for slot in 0..=FIRST_LIST_OFFSET / LIST_SIZE {
        let offset = FIRST_LIST_OFFSET - slot * LIST_SIZE;
        let (Some(start), Some(len), Some(found)) = (
            le64(diskboot, offset),
            le16(diskboot, offset + 8),
            le16(diskboot, offset + 10),
        ) else {
            break;
        };
        if len == 0 {
            if entries.is_empty() {
                return Err(GrubError::EmptyBlocklist);
            }
            return Ok(entries);
        }
        if u32::from(found) != segment {
            return Err(GrubError::BadSegment {
                offset,
                found,
                expected: segment,
            });
        }
        segment += u32::from(len) * SEGMENT_PER_SECTOR;
        entries.push(Entry { offset, start, len });
    }
    Err(GrubError::NoTerminator)
}

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes `v` (LE) at `off`; the caller has checked that 8 bytes fit there.
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    if let Some(dst) = b.get_mut(off..off + 8) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests;
