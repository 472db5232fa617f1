//! ext2/3/4: recognition by the superblock at 1 KiB (kind, label, UUID, used bytes), and the
//! used-block map read from the block bitmaps.
//!
//! Probe: ext2, ext3 or ext4 follows libblkid's feature rules (a journal makes ext3, any
//! feature ext3 lacks makes ext4); an external journal device is not a filesystem and is not
//! reported. `used_bytes` is (blocks − free blocks) × block size, dropped when a
//! `metadata_csum` superblock's checksum does not verify.
//!
//! Map: handles 1 KiB–64 KiB blocks, 64bit descriptors, flex_bg (bitmaps and inode tables of one
//! group stored in another), meta_bg descriptor placement, sparse_super/sparse_super2 backups,
//! and BLOCK_UNINIT groups, whose bitmap is not on disk: their used blocks are computed as the
//! kernel's `ext4_init_block_bitmap` does (superblock backup, descriptors, reserved GDT, and
//! any group's bitmaps and inode table that live there). Anything inconsistent is a
//! [`MapError`], and the caller then copies the whole partition: a block is only called unused
//! when its bitmap bit says so.
//!
//! Units: offsets in bytes; the map's output is byte ranges relative to the filesystem's first
//! byte.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{crc32c_raw, text_label, uuid16};
use super::{MapError, MapResult, UsedMap};
use crate::blockdev::{read_clamped, read_vec, BlockDev};
use crate::bytes::{byte, field, le16, le32};
use crate::error::Result;

/// ext2/3/4 are recognised and mapped.
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

/// The family named in this module's [`MapError`]s.
pub(crate) const FAMILY: &str = "ext";

const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
/// Features ext3 understands (libblkid `EXT3_FEATURE_*_SUPP`); anything else makes it ext4.
const EXT3_INCOMPAT_SUPP: u32 = 0x0002 | 0x0004 | 0x0010;
const EXT3_RO_COMPAT_SUPP: u32 = 0x0001 | 0x0002 | 0x0004;
const STATE_ERROR: u16 = 0x2;
const BG_BLOCK_UNINIT: u16 = 0x2;

// ---------------------------------------------------------------------------------------------
// probe

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
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
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        // an external journal ("jbd"), not a filesystem
        return None;
    }
    let kind = if incompat & !EXT3_INCOMPAT_SUPP != 0 || ro_compat & !EXT3_RO_COMPAT_SUPP != 0 {
        FsKind::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
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
    if ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
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
    if incompat & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(sb, 0x150)?) << 32;
        free |= u64::from(le32(sb, 0x158)?) << 32;
    }
    if blocks == 0 {
        return None;
    }
    blocks.checked_sub(free)?.checked_mul(block_size)
}

// ---------------------------------------------------------------------------------------------
// map

/// The superblock fields the map needs, as stored.
pub(crate) struct Super {
    /// `s_inodes_count`.
    pub(crate) inodes_count: u32,
    magic: u16,
    log_block: u32,
    compat: u32,
    /// `s_feature_incompat`.
    pub(crate) incompat: u32,
    ro_compat: u32,
    state: u16,
    blocks_lo: u32,
    blocks_hi: u32,
    first_data: u32,
    per_group: u32,
    inodes_per_group: u32,
    inode_size: u16,
    reserved_gdt: u16,
    desc_size: u16,
    first_meta_bg: u32,
    backup_bgs: [u32; 2],
}

impl Super {
    /// Reads the fields from the 1024-byte superblock; `None` when `sb` is shorter.
    fn parse(sb: &[u8]) -> Option<Super> {
        Some(Super {
            inodes_count: le32(sb, 0x00)?,
            magic: le16(sb, 0x38)?,
            log_block: le32(sb, 0x18)?,
            compat: le32(sb, 0x5C)?,
            incompat: le32(sb, 0x60)?,
            ro_compat: le32(sb, 0x64)?,
            state: le16(sb, 0x3A)?,
            blocks_lo: le32(sb, 0x04)?,
            blocks_hi: le32(sb, 0x150)?,
            first_data: le32(sb, 0x14)?,
            per_group: le32(sb, 0x20)?,
            inodes_per_group: le32(sb, 0x28)?,
            inode_size: le16(sb, 0x58)?,
            reserved_gdt: le16(sb, 0xCE)?,
            desc_size: le16(sb, 0xFE)?,
            first_meta_bg: le32(sb, 0x104)?,
            backup_bgs: [le32(sb, 0x24C)?, le32(sb, 0x250)?],
        })
    }
}

/// A group descriptor: block bitmap, inode bitmap and inode table locations, and whether the
/// block bitmap is uninitialised (not on disk).
pub(crate) struct Desc {
    bitmap: u64,
    ibitmap: u64,
    /// First block of the inode table.
    pub(crate) itable: u64,
    uninit: bool,
}

impl Desc {
    /// Reads a descriptor; the high halves only with `is64`. `None` when `d` is too short.
    fn parse(d: &[u8], is64: bool, uninit_allowed: bool) -> Option<Desc> {
        let at = |lo: usize, hi: usize| -> Option<u64> {
            let high = if is64 {
                u64::from(le32(d, hi)?) << 32
            } else {
                0
            };
            Some(u64::from(le32(d, lo)?) | high)
        };
        Some(Desc {
            bitmap: at(0, 0x20)?,
            ibitmap: at(4, 0x24)?,
            itable: at(8, 0x28)?,
            uninit: uninit_allowed && le16(d, 0x12)? & BG_BLOCK_UNINIT != 0,
        })
    }
}

/// Block-group geometry, in blocks unless named otherwise.
pub(crate) struct Geometry {
    /// Block size in bytes.
    pub(crate) block: u64,
    first_data: u64,
    per_group: u64,
    /// Block groups.
    pub(crate) groups: u64,
    desc_size: u64,
    descs_per_block: u64,
    reserved_gdt: u64,
    first_meta_bg: u64,
    meta_bg: bool,
    sparse: bool,
    sparse2: Option<[u64; 2]>,
    /// Blocks of one group's inode table.
    pub(crate) itable_blocks: u64,
    uninit_allowed: bool,
}

impl Geometry {
    fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if let Some(b) = self.sparse2 {
            return g == b[0] || g == b[1];
        }
        if !self.sparse || g == 1 {
            return true;
        }
        let pow = |base: u64| {
            let mut n = base;
            while n < g {
                n *= base;
            }
            n == g
        };
        pow(3) || pow(5) || pow(7)
    }

    fn group_start(&self, g: u64) -> u64 {
        self.first_data + g * self.per_group
    }

    /// Blocks of superblock, descriptors and reserved GDT at the start of group `g`.
    fn base_meta(&self, g: u64) -> u64 {
        let sb = u64::from(self.has_super(g));
        let meta_groups_start = self.first_meta_bg * self.descs_per_block;
        if !self.meta_bg || g < meta_groups_start {
            if sb == 0 {
                return 0;
            }
            let gdt = if self.meta_bg {
                self.first_meta_bg
            } else {
                self.groups.div_ceil(self.descs_per_block)
            };
            return 1 + gdt + self.reserved_gdt;
        }
        let idx = g % self.descs_per_block;
        let gdt = u64::from(idx == 0 || idx == 1 || idx == self.descs_per_block - 1);
        sb + gdt
    }

    fn desc_location(&self, g: u64) -> u64 {
        let meta_groups_start = self.first_meta_bg * self.descs_per_block;
        let byte_in_block = (g % self.descs_per_block) * self.desc_size;
        let block = if !self.meta_bg || g < meta_groups_start {
            self.first_data + 1 + g / self.descs_per_block
        } else {
            let first = g - g % self.descs_per_block;
            self.group_start(first) + u64::from(self.has_super(first))
        };
        block * self.block + byte_in_block
    }
}

/// A superblock and block-group geometry that passed the checks every reader of the
/// filesystem's structures needs: magic, block size, group sizes, descriptor size, and a
/// filesystem that fits the partition. Shared by the map and `fsmap::files`.
pub(crate) struct Layout {
    /// The superblock fields, as stored.
    pub(crate) sb: Super,
    /// Block-group geometry.
    pub(crate) geo: Geometry,
    /// Blocks in the filesystem.
    pub(crate) blocks: u64,
    /// 64bit descriptors (high halves of block numbers).
    pub(crate) is64: bool,
    /// Bytes per inode-table slot.
    pub(crate) inode_size: u64,
    /// Inodes per group.
    pub(crate) inodes_per_group: u64,
}

impl Layout {
    /// Reads and checks the superblock of `dev`. The outer `Err` is an I/O error, the inner
    /// one says what does not describe a consistent filesystem that fits `dev`.
    pub(crate) fn read(dev: &dyn BlockDev) -> MapResult<Layout> {
        let bad = |s: String| Ok(Err(MapError(s, FAMILY)));
        if dev.len() < 2048 {
            return bad("device too small for a superblock".into());
        }
        let raw = read_vec(dev, 1024, 1024)?;
        let Some(s) = Super::parse(&raw) else {
            return bad("superblock is too short".into());
        };
        if s.magic != 0xEF53 {
            return bad("no ext superblock magic".into());
        }
        let log = s.log_block;
        if log > 6 {
            return bad(format!("block size log {log} is absurd"));
        }
        let block = 1024u64 << log;
        let (incompat, ro_compat, compat) = (s.incompat, s.ro_compat, s.compat);
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let mut blocks = u64::from(s.blocks_lo);
        if is64 {
            blocks |= u64::from(s.blocks_hi) << 32;
        }
        let first_data = u64::from(s.first_data);
        let per_group = u64::from(s.per_group);
        // whole bytes of bitmap per group, as the kernel requires
        if per_group == 0 || per_group > block * 8 || per_group % 8 != 0 || blocks <= first_data {
            return bad(format!(
                "{per_group} blocks per group, {blocks} blocks, first data block {first_data}"
            ));
        }
        if blocks.saturating_mul(block) > dev.len() {
            return bad(format!(
                "{blocks} blocks of {block} bytes exceed the partition ({} bytes)",
                dev.len()
            ));
        }
        let desc_size = if is64 { u64::from(s.desc_size) } else { 32 };
        // 64bit descriptors hold high halves up to byte 0x2C (the kernel wants at least 64)
        if !(32..=1024).contains(&desc_size)
            || !desc_size.is_power_of_two()
            || (is64 && desc_size < 64)
        {
            return bad(format!("descriptor size {desc_size}"));
        }
        let inode_size = match s.inode_size {
            0 => 128,
            n => u64::from(n),
        };
        let inodes_per_group = u64::from(s.inodes_per_group);
        let geo = Geometry {
            block,
            first_data,
            per_group,
            groups: (blocks - first_data).div_ceil(per_group),
            desc_size,
            descs_per_block: block / desc_size,
            reserved_gdt: u64::from(s.reserved_gdt),
            first_meta_bg: u64::from(s.first_meta_bg),
            meta_bg: incompat & INCOMPAT_META_BG != 0,
            sparse: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
            sparse2: (compat & COMPAT_SPARSE_SUPER2 != 0).then(|| s.backup_bgs.map(u64::from)),
            itable_blocks: (inodes_per_group * inode_size).div_ceil(block),
            uninit_allowed: ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0,
        };
        if geo.groups > (1 << 32) {
            return bad(format!("{} block groups", geo.groups));
        }
        Ok(Ok(Layout {
            sb: s,
            geo,
            blocks,
            is64,
            inode_size,
            inodes_per_group,
        }))
    }

    /// The descriptor of group `grp`; the inner `Err` when it is too short to parse.
    pub(crate) fn desc(&self, dev: &dyn BlockDev, grp: u64) -> MapResult<Desc> {
        let size = self.geo.desc_size;
        let d = read_vec(dev, self.geo.desc_location(grp), size as usize)?;
        Ok(
            Desc::parse(&d, self.is64, self.geo.uninit_allowed).ok_or_else(|| {
                MapError(
                    format!("group {grp}: descriptor of {size} bytes is too short"),
                    FAMILY,
                )
            }),
        )
    }
}

/// Byte ranges (start, len), sorted and merged, of every block the filesystem uses.
///
/// `dev` is the partition. The outer `Err` is an I/O error; the inner one means the
/// superblock or the descriptors do not describe a consistent filesystem that fits `dev`, or
/// the on-disk bitmaps may be stale (journal needing recovery, errors flagged).
pub fn used_ranges(dev: &dyn BlockDev) -> MapResult<Vec<(u64, u64)>> {
    let bad = |s: String| Ok(Err(MapError(s, FAMILY)));
    let l = match Layout::read(dev)? {
        Ok(l) => l,
        Err(e) => return Ok(Err(e)),
    };
    if l.sb.incompat & INCOMPAT_RECOVER != 0 {
        return bad(
            "the journal needs recovery (not cleanly unmounted), so the on-disk bitmaps may be stale"
                .into(),
        );
    }
    if l.sb.state & STATE_ERROR != 0 {
        return bad("the filesystem is marked as having errors (run e2fsck on it)".into());
    }
    let Layout { geo: g, blocks, .. } = l;
    let (block, first_data, per_group, desc_size, is64) =
        (g.block, g.first_data, g.per_group, g.desc_size, l.is64);

    // descriptors: bitmap location, inode bitmap, inode table, flags
    let mut descs = Vec::with_capacity(g.groups as usize);
    for grp in 0..g.groups {
        let d = read_vec(dev, g.desc_location(grp), desc_size as usize)?;
        let Some(desc) = Desc::parse(&d, is64, g.uninit_allowed) else {
            return bad(format!(
                "group {grp}: descriptor of {desc_size} bytes is too short"
            ));
        };
        for (what, b, n) in [
            ("block bitmap", desc.bitmap, 1),
            ("inode bitmap", desc.ibitmap, 1),
            ("inode table", desc.itable, g.itable_blocks),
        ] {
            if b < first_data || b.saturating_add(n) > blocks {
                return bad(format!(
                    "group {grp}: {what} at block {b} is outside the filesystem ({blocks} blocks)"
                ));
            }
        }
        descs.push(desc);
    }

    let mut used: Vec<(u64, u64)> = Vec::new(); // block ranges
    let mut push = |start: u64, len: u64| {
        if len == 0 {
            return;
        }
        if let Some(last) = used.last_mut() {
            if last.0 + last.1 == start {
                last.1 += len;
                return;
            }
        }
        used.push((start, len));
    };
    if first_data > 0 {
        push(0, first_data); // boot block of 1 KiB filesystems
    }
    let bits_len = (per_group / 8) as usize;
    for (grp, d) in descs.iter().enumerate() {
        let grp = grp as u64;
        let start = g.group_start(grp);
        let len = per_group.min(blocks - start);
        if d.uninit {
            // no bitmap on disk: what the kernel would initialise it to
            let mut in_group: Vec<(u64, u64)> = vec![(start, g.base_meta(grp))];
            for o in &descs {
                for (b, n) in [(o.bitmap, 1), (o.ibitmap, 1), (o.itable, g.itable_blocks)] {
                    let lo = b.max(start);
                    let hi = (b + n).min(start + len);
                    if lo < hi {
                        in_group.push((lo, hi - lo));
                    }
                }
            }
            in_group.sort_unstable();
            let mut cur: Option<(u64, u64)> = None;
            for (s, n) in in_group {
                match cur {
                    Some((cs, cn)) if s <= cs + cn => cur = Some((cs, (s + n).max(cs + cn) - cs)),
                    Some((cs, cn)) => {
                        push(cs, cn);
                        cur = Some((s, n));
                    }
                    None => cur = Some((s, n)),
                }
            }
            if let Some((cs, cn)) = cur {
                push(cs, cn.min(start + len - cs));
            }
            continue;
        }
        let bits = read_vec(dev, d.bitmap * block, bits_len)?;
        let mut run: Option<u64> = None;
        for i in 0..len {
            // a bit past the bitmap cannot happen (whole bytes per group); count it as used
            let set = byte(&bits, (i / 8) as usize).is_none_or(|b| b & (1 << (i % 8)) != 0);
            match (set, run) {
                (true, None) => run = Some(i),
                (false, Some(r)) => {
                    push(start + r, i - r);
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(r) = run {
            push(start + r, len - r);
        }
    }
    Ok(Ok(used
        .into_iter()
        .map(|(s, n)| (s * block, n * block))
        .collect()))
}

/// [`used_ranges`] in the shape every mappable filesystem shares. Nothing makes a correct ext
/// map untrustworthy: a journal needing recovery or flagged errors are [`MapError`]s already.
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    Ok(used_ranges(dev)?.map(|ranges| UsedMap {
        ranges,
        reason_unsafe: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::detect::detect;
    use crate::fsmap::probe::crc32c_raw;
    use crate::fsmap::testutil::*;
    use std::path::Path;
    use std::process::Command;

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
}
