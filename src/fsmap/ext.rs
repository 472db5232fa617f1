//! Used-block map of ext2/3/4, read from the block bitmaps.
//!
//! Handles 1 KiB–64 KiB blocks, 64bit descriptors, flex_bg (bitmaps and inode tables of one
//! group stored in another), meta_bg descriptor placement, sparse_super/sparse_super2 backups,
//! and BLOCK_UNINIT groups, whose bitmap is not on disk: their used blocks are computed as the
//! kernel's `ext4_init_block_bitmap` does (superblock backup, descriptors, reserved GDT, and
//! any group's bitmaps and inode table that live there). Anything inconsistent is an error,
//! and the caller then copies the whole partition: a block is only called unused when its
//! bitmap bit says so.
//!
//! Output units: byte ranges relative to the filesystem's first byte.

use crate::blockdev::{read_vec, BlockDev};
use crate::error::Result;
use crate::units::{le_u16, le_u32};

/// Why an ext map could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ext filesystem: {0}")]
pub struct ExtMapError(pub String);

const INCOMPAT_RECOVER: u32 = 0x4;
const STATE_ERROR: u16 = 0x2;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_64BIT: u32 = 0x80;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_GDT_CSUM: u32 = 0x10;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
const BG_BLOCK_UNINIT: u16 = 0x2;

struct Geometry {
    block: u64,
    first_data: u64,
    per_group: u64,
    groups: u64,
    desc_size: u64,
    descs_per_block: u64,
    reserved_gdt: u64,
    first_meta_bg: u64,
    meta_bg: bool,
    sparse: bool,
    sparse2: Option<[u64; 2]>,
    itable_blocks: u64,
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

/// Byte ranges (start, len), sorted and merged, of every block the filesystem uses.
pub fn used_ranges(
    dev: &dyn BlockDev,
) -> Result<std::result::Result<Vec<(u64, u64)>, ExtMapError>> {
    let bad = |s: String| Ok(Err(ExtMapError(s)));
    if dev.len() < 2048 {
        return bad("device too small for a superblock".into());
    }
    let sb = read_vec(dev, 1024, 1024)?;
    if le_u16(&sb, 0x38) != 0xEF53 {
        return bad("no ext superblock magic".into());
    }
    let log = le_u32(&sb, 0x18);
    if log > 6 {
        return bad(format!("block size log {log} is absurd"));
    }
    let block = 1024u64 << log;
    let incompat = le_u32(&sb, 0x60);
    let ro_compat = le_u32(&sb, 0x64);
    let compat = le_u32(&sb, 0x5C);
    let is64 = incompat & INCOMPAT_64BIT != 0;
    if incompat & INCOMPAT_RECOVER != 0 {
        return bad(
            "the journal needs recovery (not cleanly unmounted), so the on-disk bitmaps may be stale"
                .into(),
        );
    }
    if le_u16(&sb, 0x3A) & STATE_ERROR != 0 {
        return bad("the filesystem is marked as having errors (run e2fsck on it)".into());
    }
    let mut blocks = u64::from(le_u32(&sb, 0x04));
    if is64 {
        blocks |= u64::from(le_u32(&sb, 0x150)) << 32;
    }
    let first_data = u64::from(le_u32(&sb, 0x14));
    let per_group = u64::from(le_u32(&sb, 0x20));
    if per_group == 0 || per_group > block * 8 || blocks <= first_data {
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
    let desc_size = if is64 {
        u64::from(le_u16(&sb, 0xFE))
    } else {
        32
    };
    if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() {
        return bad(format!("descriptor size {desc_size}"));
    }
    let inode_size = match le_u16(&sb, 0x58) {
        0 => 128,
        n => u64::from(n),
    };
    let inodes_per_group = u64::from(le_u32(&sb, 0x28));
    let g = Geometry {
        block,
        first_data,
        per_group,
        groups: (blocks - first_data).div_ceil(per_group),
        desc_size,
        descs_per_block: block / desc_size,
        reserved_gdt: u64::from(le_u16(&sb, 0xCE)),
        first_meta_bg: u64::from(le_u32(&sb, 0x104)),
        meta_bg: incompat & INCOMPAT_META_BG != 0,
        sparse: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
        sparse2: (compat & COMPAT_SPARSE_SUPER2 != 0)
            .then(|| [u64::from(le_u32(&sb, 0x24C)), u64::from(le_u32(&sb, 0x250))]),
        itable_blocks: (inodes_per_group * inode_size).div_ceil(block),
        uninit_allowed: ro_compat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM) != 0,
    };
    if g.groups > (1 << 32) {
        return bad(format!("{} block groups", g.groups));
    }

    // descriptors: bitmap location, inode bitmap, inode table, flags
    struct Desc {
        bitmap: u64,
        ibitmap: u64,
        itable: u64,
        uninit: bool,
    }
    let mut descs = Vec::with_capacity(g.groups as usize);
    for grp in 0..g.groups {
        let d = read_vec(dev, g.desc_location(grp), desc_size as usize)?;
        let hi = |at: usize| {
            if is64 {
                u64::from(le_u32(&d, at)) << 32
            } else {
                0
            }
        };
        let desc = Desc {
            bitmap: u64::from(le_u32(&d, 0)) | hi(0x20),
            ibitmap: u64::from(le_u32(&d, 4)) | hi(0x24),
            itable: u64::from(le_u32(&d, 8)) | hi(0x28),
            uninit: g.uninit_allowed && le_u16(&d, 0x12) & BG_BLOCK_UNINIT != 0,
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
            let set = bits[(i / 8) as usize] & (1 << (i % 8)) != 0;
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
