//! Damage reports: which files and which filesystem structures a set of unreadable byte
//! ranges of a partition hits.
//!
//! `lifeboat image --rescue` ends with the ranges of a failing disk it could not read; the
//! image holds zeros there. [`damaged`] reads the filesystem in the image (through any
//! [`BlockDev`], offset 0 the partition's first byte), walks every file it can reach, and
//! tells, for each missing range, what it hit: files (with the exact number of their data
//! bytes lost), metadata structures, free space, or what could not be attributed and why.
//!
//! How each family is walked:
//! - **ext2/3/4:** superblock and group descriptors (32/64-bit, meta_bg, sparse_super and
//!   sparse_super2 backups; a descriptor in a missing range is read from a backup), every
//!   in-use inode (inode bitmap, or the inode's own fields when its bitmap is missing),
//!   extent trees of any depth up to 5 and the ext2/3 indirect block map, extended
//!   attribute blocks, then the directory tree from the root (inode 2), read linearly, to
//!   give each inode its first path in breadth-first order (one path per hard-linked file).
//!   Free: the block bitmap (a `BLOCK_UNINIT` group is free except its metadata).
//! - **FAT12/16/32:** reserved area (boot sector, FSInfo, backup boot sector), every FAT
//!   copy, FAT12/16's fixed root directory, every directory's and file's cluster chain (long
//!   and 8.3 names), read from whichever FAT copy is not missing. Free: FAT entry 0.
//! - **NTFS:** the boot sector, `$MFT` (from `$MFTMirr` when record 0 is missing), every
//!   in-use MFT record, base or extension (so `$ATTRIBUTE_LIST` files are covered without
//!   reading the list: every extension record names its base), their non-resident
//!   attributes (`$DATA`, named streams as `path:name`, `$INDEX_ALLOCATION` and `$BITMAP`
//!   of directories, the rest as "attributes of"), and `$FILE_NAME` (Win32 names preferred)
//!   for paths. Records 0–15 are metadata named after the system file. Free: `$Bitmap`.
//! - Anything else, or a filesystem whose superblock or boot sector cannot be read: every
//!   range is [`Hit::Unknown`] with the reason.
//!
//! Not covered: ext inline-data directories beyond `i_block`, ext `EA_INODE` attributes,
//! hard links beyond the first path, names of NTFS files whose MFT record is itself lost (the
//! parent directory's index is not read), exact lost bytes of NTFS compressed streams (the
//! on-disk bytes of the compression units are counted), a `$MFT` whose own runlist continues
//! in extension records (only the first part is walked), backup superblocks or boot sectors
//! when the primary one is missing (except FAT/ext descriptors and `$MFTMirr` above).
//!
//! Invariants: nothing is written; the missing ranges read as zeros, so every structure read
//! may be zeros or garbage: nothing panics, every loop is bounded (tree blocks and extents per
//! file as in [`super::files`], directories of at most [`MAX_DIR_BYTES`], FAT chains by the
//! cluster count, path depth [`MAX_DEPTH`]), reads go in chunks of at most 1 MiB, and memory
//! grows only with what the filesystem holds (one entry per directory and per file name)
//! and with the pieces of structures that overlap the missing ranges. Only I/O errors are
//! errors.
//!
//! Units: byte offsets and lengths relative to the partition's first byte.

use super::detect::{identify, FsKind};
use super::files::{MAX_DIR_BYTES, MAX_EXTENTS, MAX_TREE_BLOCKS};
use super::{ext, fat};
use crate::blockdev::{read_vec, BlockDev};
use crate::bytes::{byte, field, has, le16, le32, le64};
use crate::error::Result;
use std::collections::{HashMap, HashSet, VecDeque};

/// What one missing range hits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Damage {
    /// First missing byte, relative to the partition, as given.
    pub start: u64,
    /// Missing bytes, as given.
    pub len: u64,
    /// What the range hits, in order of the first byte hit; every byte of the range is
    /// accounted for by at least one hit.
    pub hits: Vec<Hit>,
}

/// One thing a missing range hits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hit {
    /// Data of a file (or of a named NTFS stream, `path:stream`).
    File {
        /// Its absolute path, or `inode N (no path)` / `MFT record N (no path)` when no
        /// directory leads to it.
        path: String,
        /// Bytes of the file's data in the range: the overlap with its data extents, cut to
        /// the file size.
        bytes: u64,
    },
    /// The record that describes a file (its ext inode or NTFS MFT record): the file cannot
    /// be opened any more, whatever happened to its data.
    FileRecord {
        /// Its absolute path when a directory still names it, else as in [`Hit::File`].
        path: String,
        /// Which record: `inode N` or `MFT record N`.
        record: String,
    },
    /// A filesystem structure: "superblock", "inode table of group 3 (inodes 8193-12288)",
    /// "the FAT (copy 1)", "the MFT (records 40-47)", "directory /etc", "block map of /a"…
    Metadata {
        /// What it is, in words.
        what: String,
    },
    /// Space the filesystem proves nobody uses: losing it is harmless.
    Free,
    /// Space that could not be attributed.
    Unknown {
        /// Why, in words: the filesystem could not be walked, or the space is in use but no
        /// file or structure found owns it.
        why: String,
    },
}

/// Most directory levels followed when building a path.
pub const MAX_DEPTH: usize = 256;
/// Largest single read.
const CHUNK: u64 = 1 << 20;
/// Files whose damaged maps are named in the reason for unattributed space.
const MAX_INCOMPLETE: usize = 8;

/// Tells what each missing range `(start, len)` of the filesystem on `dev` hits.
///
/// `dev` is the partition, reading zeros where it is missing. Returns one [`Damage`] per
/// range, in the order given; ranges may overlap and are clipped to the device (a range
/// beyond it hits [`Hit::Unknown`]). When the filesystem is unknown or cannot be walked,
/// every range is [`Hit::Unknown`] with the reason. Fails only with I/O errors.
pub fn damaged(dev: &dyn BlockDev, missing: &[(u64, u64)]) -> Result<Vec<Damage>> {
    let m = Missing::new(missing);
    let found = match identify(dev)? {
        None => {
            Err("no known filesystem found (its superblock or boot sector may be missing)".into())
        }
        Some((info, _)) => match info.kind {
            FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => walk_ext(dev, &m)?,
            FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => walk_fat(dev, &m)?,
            FsKind::Ntfs => walk_ntfs(dev, &m)?,
            other => Err(format!("no file map for {}", other.display_name())),
        },
    };
    Ok(match found {
        Ok(mut f) => {
            f.finish();
            missing.iter().map(|&(s, l)| f.attribute(s, l)).collect()
        }
        Err(why) => missing
            .iter()
            .map(|&(start, len)| Damage {
                start,
                len,
                hits: vec![Hit::Unknown { why: why.clone() }],
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// the missing ranges, and what lies in them

/// The missing ranges, as sorted, merged `[start, end)` intervals.
struct Missing(Vec<(u64, u64)>);

impl Missing {
    fn new(ranges: &[(u64, u64)]) -> Missing {
        let mut v: Vec<(u64, u64)> = ranges
            .iter()
            .filter(|r| r.1 > 0)
            .map(|&(s, l)| (s, s.saturating_add(l)))
            .collect();
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        Missing(out)
    }

    /// Calls `f(start, len)` for every missing part of `[start, start + len)`.
    fn each(&self, start: u64, len: u64, mut f: impl FnMut(u64, u64)) {
        let end = start.saturating_add(len);
        let i = self.0.partition_point(|r| r.1 <= start);
        for &(s, e) in self.0.get(i..).unwrap_or(&[]) {
            if s >= end {
                break;
            }
            let (a, b) = (s.max(start), e.min(end));
            if a < b {
                f(a, b - a);
            }
        }
    }

    fn overlaps(&self, start: u64, len: u64) -> bool {
        let mut any = false;
        self.each(start, len, |_, _| any = true);
        any
    }
}

/// What a piece of the disk is.
#[derive(Debug, Clone)]
enum Tag {
    /// Data of file or stream `id`, from byte `off` of it.
    Data { id: u64, off: u64 },
    /// A structure of file `id`: `what` followed by its path.
    Of { what: &'static str, id: u64 },
    /// A structure named in full.
    Meta(String),
    /// Part of an ext inode table, from byte `off` of it.
    Itable {
        group: u64,
        first_ino: u64,
        inode_size: u64,
        off: u64,
    },
    /// Part of the NTFS MFT, from byte `off` of it.
    Mft { record: u64, off: u64 },
    /// The inode or MFT record of `id`, which is in use.
    Record(u64),
    /// Background: proven free.
    Free,
    /// Background: cannot be told.
    Unknown(String),
}

impl Tag {
    fn shifted(&self, d: u64) -> Tag {
        let mut t = self.clone();
        match &mut t {
            Tag::Data { off, .. } | Tag::Itable { off, .. } | Tag::Mft { off, .. } => *off += d,
            _ => {}
        }
        t
    }

    fn background(&self) -> bool {
        matches!(self, Tag::Free | Tag::Unknown(_))
    }
}

/// A tagged byte range of the partition, inside the missing ranges.
#[derive(Debug)]
struct Piece {
    start: u64,
    len: u64,
    tag: Tag,
}

/// Everything a walk found that overlaps the missing ranges.
struct Found<'m> {
    m: &'m Missing,
    pieces: Vec<Piece>,
    /// Paths of files, directories and streams, by id.
    names: HashMap<u64, String>,
    /// Sizes in bytes of files and streams, by id.
    sizes: HashMap<u64, u64>,
    /// What ids are called when they have no path: "inode", "MFT record", "file".
    unit: &'static str,
    /// Why used space no piece claims is unattributed.
    why_unowned: String,
    /// Files whose block maps could not be read completely (at most [`MAX_INCOMPLETE`]).
    incomplete: Vec<u64>,
    /// `pieces[..i]`'s largest end, once [`Found::finish`] has sorted them.
    max_end: Vec<u64>,
}

impl<'m> Found<'m> {
    fn new(m: &'m Missing, unit: &'static str, why_unowned: &str) -> Found<'m> {
        Found {
            m,
            pieces: Vec::new(),
            names: HashMap::new(),
            sizes: HashMap::new(),
            unit,
            why_unowned: why_unowned.to_owned(),
            incomplete: Vec::new(),
            max_end: Vec::new(),
        }
    }

    /// Records that `[start, start + len)` is `tag`, for its missing parts.
    fn add(&mut self, start: u64, len: u64, tag: Tag) {
        let pieces = &mut self.pieces;
        self.m.each(start, len, |s, l| {
            pieces.push(Piece {
                start: s,
                len: l,
                tag: tag.shifted(s - start),
            });
        });
    }

    fn incomplete(&mut self, id: u64) {
        if self.incomplete.len() < MAX_INCOMPLETE && !self.incomplete.contains(&id) {
            self.incomplete.push(id);
        }
    }

    fn name(&self, id: u64) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("{} {id} (no path)", self.unit))
    }

    /// Cuts data to file sizes and sorts the pieces.
    fn finish(&mut self) {
        let mut out = Vec::with_capacity(self.pieces.len());
        for p in std::mem::take(&mut self.pieces) {
            let Tag::Data { id, off } = p.tag else {
                out.push(p);
                continue;
            };
            let size = self.sizes.get(&id).copied().unwrap_or(u64::MAX);
            let keep = size.saturating_sub(off).min(p.len);
            if keep > 0 {
                out.push(Piece {
                    start: p.start,
                    len: keep,
                    tag: Tag::Data { id, off },
                });
            }
            if keep < p.len {
                out.push(Piece {
                    start: p.start + keep,
                    len: p.len - keep,
                    tag: Tag::Of {
                        what: "space allocated past the end of ",
                        id,
                    },
                });
            }
        }
        out.sort_by_key(|p| p.start);
        let mut max = 0u64;
        self.max_end = out
            .iter()
            .map(|p| {
                max = max.max(p.start + p.len);
                max
            })
            .collect();
        self.pieces = out;
        if !self.incomplete.is_empty() {
            let names: Vec<String> = self.incomplete.iter().map(|&i| self.name(i)).collect();
            self.why_unowned = format!(
                "{} (the block maps of {} are damaged: it may be their data)",
                self.why_unowned,
                names.join(", ")
            );
        }
    }

    /// The hits of range `[start, start + len)`.
    fn attribute(&self, start: u64, len: u64) -> Damage {
        let end = start.saturating_add(len);
        let mut hits: Vec<Hit> = Vec::new();
        let mut add = |h: Hit| match (&h, hits.iter_mut().find(|x| same(x, &h))) {
            (Hit::File { bytes: b, .. }, Some(Hit::File { bytes, .. })) => *bytes += b,
            (_, Some(_)) => {}
            (_, None) => hits.push(h),
        };
        let first = self.max_end.partition_point(|&e| e <= start);
        let near = self.pieces.get(first..).unwrap_or(&[]);
        let near = near.iter().take_while(|p| p.start < end);
        let mut covered: Vec<(u64, u64)> = Vec::new();
        let mut background: Vec<(u64, u64, &Tag)> = Vec::new();
        for p in near {
            let (a, b) = (p.start.max(start), (p.start + p.len).min(end));
            if a >= b {
                continue;
            }
            if p.tag.background() {
                background.push((a, b, &p.tag));
                continue;
            }
            covered.push((a, b));
            add(self.hit(&p.tag.shifted(a - p.start), b - a));
        }
        // background pieces count only where no structure claims the bytes
        let mut gaps = gaps(start, end, &mut covered);
        let mut covered2 = Vec::new();
        for (a, b, tag) in background {
            for &(ga, gb) in &gaps {
                let (x, y) = (a.max(ga), b.min(gb));
                if x < y {
                    covered2.push((x, y));
                    add(match tag {
                        Tag::Free => Hit::Free,
                        Tag::Unknown(why) => Hit::Unknown { why: why.clone() },
                        _ => continue,
                    });
                }
            }
        }
        let mut rest = Vec::new();
        for (ga, gb) in gaps.drain(..) {
            let mut inside: Vec<(u64, u64)> = covered2
                .iter()
                .filter(|c| c.0 < gb && c.1 > ga)
                .copied()
                .collect();
            rest.extend(self::gaps(ga, gb, &mut inside));
        }
        if !rest.is_empty() {
            add(Hit::Unknown {
                why: self.why_unowned.clone(),
            });
        }
        Damage { start, len, hits }
    }

    /// The hit of a non-background piece of `len` bytes tagged `tag`.
    fn hit(&self, tag: &Tag, len: u64) -> Hit {
        match tag {
            Tag::Data { id, .. } => Hit::File {
                path: self.name(*id),
                bytes: len,
            },
            Tag::Of { what, id } => Hit::Metadata {
                what: format!("{what}{}", self.name(*id)),
            },
            Tag::Meta(what) => Hit::Metadata { what: what.clone() },
            Tag::Itable {
                group,
                first_ino,
                inode_size,
                off,
            } => {
                let a = first_ino + off / inode_size;
                let b = first_ino + (off + len - 1) / inode_size;
                Hit::Metadata {
                    what: format!("inode table of group {group} (inodes {a}-{b})"),
                }
            }
            Tag::Mft { record, off } => {
                let (a, b) = (off / record, (off + len - 1) / record);
                Hit::Metadata {
                    what: format!("the MFT (records {a}-{b})"),
                }
            }
            Tag::Record(id) => Hit::FileRecord {
                path: self.name(*id),
                record: format!("{} {id}", self.unit),
            },
            Tag::Free => Hit::Free,
            Tag::Unknown(why) => Hit::Unknown { why: why.clone() },
        }
    }
}

/// Whether two hits are the same thing (a file's bytes are then added up).
fn same(a: &Hit, b: &Hit) -> bool {
    match (a, b) {
        (Hit::File { path: x, .. }, Hit::File { path: y, .. }) => x == y,
        _ => a == b,
    }
}

/// The parts of `[start, end)` no interval of `covered` holds.
fn gaps(start: u64, end: u64, covered: &mut [(u64, u64)]) -> Vec<(u64, u64)> {
    covered.sort_unstable();
    let mut out = Vec::new();
    let mut at = start;
    for &(a, b) in covered.iter() {
        if a > at {
            out.push((at, a.min(end)));
        }
        at = at.max(b);
    }
    if at < end {
        out.push((at, end));
    }
    out
}

/// Reads `len` bytes at `off`, zeros past the device's end (a structure hanging off a short
/// image is as good as missing).
fn read_soft(dev: &dyn BlockDev, off: u64, len: usize) -> Result<Vec<u8>> {
    let size = dev.len();
    if off >= size {
        return Ok(vec![0; len]);
    }
    let avail = usize::try_from(size - off).unwrap_or(usize::MAX);
    let mut v = read_vec(dev, off, len.min(avail))?;
    v.resize(len, 0);
    Ok(v)
}

/// Joins a directory path and a name.
fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads `f` as a walk outcome: the inner `Err` says why the filesystem cannot be walked.
type Walk<'m> = Result<std::result::Result<Found<'m>, String>>;

// ---------------------------------------------------------------------------------------------
// ext2/3/4

const EXT_INCOMPAT_META_BG: u32 = 0x10;
const EXT_INCOMPAT_FILETYPE: u32 = 0x2;
const EXT_COMPAT_SPARSE_SUPER2: u32 = 0x200;
const EXT_RO_SPARSE_SUPER: u32 = 0x1;
const EXT_RO_GDT_CSUM: u32 = 0x10;
const EXT_RO_METADATA_CSUM: u32 = 0x400;
const BG_INODE_UNINIT: u16 = 0x1;
const BG_BLOCK_UNINIT: u16 = 0x2;
const EXT_EXTENTS_FL: u32 = 0x8_0000;
const EXT_INLINE_DATA_FL: u32 = 0x1000_0000;
const EXT_HUGE_FILE_FL: u32 = 0x4_0000;
const EXTENT_MAGIC: u16 = 0xF30A;
const S_IFMT: u16 = 0xF000;
const S_IFDIR: u16 = 0x4000;
const S_IFLNK: u16 = 0xA000;

/// The ext geometry this walk needs, in blocks unless named otherwise.
struct ExtGeo {
    block: u64,
    blocks: u64,
    first_data: u64,
    per_group: u64,
    groups: u64,
    desc_size: u64,
    dpb: u64,
    reserved_gdt: u64,
    meta_bg: bool,
    first_meta_bg: u64,
    sparse: bool,
    sparse2: Option<[u64; 2]>,
    is64: bool,
    uninit_allowed: bool,
    ipg: u64,
    inode_size: u64,
    itable_blocks: u64,
    inodes: u64,
    first_ino: u64,
    journal_ino: u64,
    filetype: bool,
}

impl ExtGeo {
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
        [3u64, 5, 7].iter().any(|&base| {
            let mut n = base;
            while n < g {
                n = n.saturating_mul(base);
            }
            n == g
        })
    }

    fn group_start(&self, g: u64) -> u64 {
        self.first_data + g * self.per_group
    }

    /// Blocks of the primary (and legacy backup) descriptor table.
    fn gdt_blocks(&self) -> u64 {
        if self.meta_bg {
            self.first_meta_bg
        } else {
            self.groups.div_ceil(self.dpb)
        }
    }

    /// Byte offsets where group `g`'s descriptor is kept: the primary first, then backups.
    fn desc_locations(&self, g: u64) -> Vec<u64> {
        let in_block = (g % self.dpb) * self.desc_size;
        let mut out = Vec::new();
        if !self.meta_bg || g / self.dpb < self.first_meta_bg {
            let idx = g / self.dpb;
            for grp in 0..self.groups.min(1 << 16) {
                if self.has_super(grp) {
                    out.push((self.group_start(grp) + 1 + idx) * self.block + in_block);
                    if out.len() >= 3 {
                        break;
                    }
                }
            }
            // group 0's table starts after the superblock's block
            if let Some(first) = out.first_mut() {
                *first = (self.first_data + 1 + idx) * self.block + in_block;
            }
        } else {
            let first = g - g % self.dpb;
            for grp in [first, first + 1, first + self.dpb - 1] {
                if grp < self.groups {
                    let b = self.group_start(grp) + u64::from(self.has_super(grp));
                    out.push(b * self.block + in_block);
                }
            }
        }
        out
    }
}

/// One group's descriptor fields.
struct ExtDesc {
    bitmap: u64,
    ibitmap: u64,
    itable: u64,
    flags: u16,
}

/// What an inode walk keeps of a directory: its blocks in file order, or its inline bytes.
enum DirData {
    Blocks(Vec<(u64, u64)>),
    Inline(Vec<u8>),
}

fn ext_geo(dev: &dyn BlockDev) -> Result<std::result::Result<ExtGeo, String>> {
    let l = match ext::Layout::read(dev)? {
        Ok(l) => l,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let sb = read_vec(dev, 1024, 1024)?;
    let f = |off: usize| u64::from(le32(&sb, off).unwrap_or(0));
    let f16 = |off: usize| u64::from(le16(&sb, off).unwrap_or(0));
    let (compat, incompat, ro) = (f(0x5C), f(0x60) as u32, f(0x64) as u32);
    let block = l.geo.block;
    let desc_size = if l.is64 { f16(0xFE) } else { 32 };
    let isz = l.inode_size;
    let ipg = l.inodes_per_group;
    if !isz.is_power_of_two() || !(128..=block).contains(&isz) {
        return Ok(Err(format!("inode size {isz}")));
    }
    if ipg == 0 || ipg > block * 8 || u64::from(l.sb.inodes_count) > ipg * l.geo.groups {
        return Ok(Err(format!(
            "{} inodes in {} groups of {ipg}",
            l.sb.inodes_count, l.geo.groups
        )));
    }
    let first_ino = match f(0x4C) {
        0 => 11,
        _ => f(0x54).max(3),
    };
    Ok(Ok(ExtGeo {
        block,
        blocks: l.blocks,
        first_data: f(0x14),
        per_group: f(0x20),
        groups: l.geo.groups,
        desc_size,
        dpb: block / desc_size,
        reserved_gdt: f16(0xCE),
        meta_bg: incompat & EXT_INCOMPAT_META_BG != 0,
        first_meta_bg: f(0x104),
        sparse: ro & EXT_RO_SPARSE_SUPER != 0,
        sparse2: (compat as u32 & EXT_COMPAT_SPARSE_SUPER2 != 0).then(|| [f(0x24C), f(0x250)]),
        is64: l.is64,
        uninit_allowed: ro & (EXT_RO_GDT_CSUM | EXT_RO_METADATA_CSUM) != 0,
        ipg,
        inode_size: isz,
        itable_blocks: l.geo.itable_blocks,
        inodes: u64::from(l.sb.inodes_count),
        first_ino,
        journal_ino: f(0xE0),
        filetype: incompat & EXT_INCOMPAT_FILETYPE != 0,
    }))
}

/// An ext walk in progress.
struct ExtWalk<'a, 'm> {
    dev: &'a dyn BlockDev,
    g: ExtGeo,
    f: Found<'m>,
    /// Directories, by inode.
    dirs: HashMap<u64, DirData>,
}

fn walk_ext<'m>(dev: &dyn BlockDev, m: &'m Missing) -> Walk<'m> {
    let g = match ext_geo(dev)? {
        Ok(g) => g,
        Err(e) => return Ok(Err(format!("the ext filesystem cannot be walked: {e}"))),
    };
    let mut w = ExtWalk {
        dev,
        g,
        f: Found::new(
            m,
            "inode",
            "in use (block bitmap), but no file or structure found that owns it",
        ),
        dirs: HashMap::new(),
    };
    w.fixed_metadata();
    for grp in 0..w.g.groups {
        w.group(grp)?;
    }
    w.paths()?;
    Ok(Ok(w.f))
}

impl ExtWalk<'_, '_> {
    fn blocks_tag(&mut self, start: u64, n: u64, tag: Tag) {
        let bs = self.g.block;
        self.f.add(start * bs, n * bs, tag);
    }

    /// Superblocks, descriptor tables, reserved GDT, and what lies outside the filesystem.
    fn fixed_metadata(&mut self) {
        let bs = self.g.block;
        self.f.add(
            0,
            1024,
            Tag::Meta("boot block (before the superblock)".into()),
        );
        self.f.add(1024, 1024, Tag::Meta("superblock".into()));
        let sb_end = (self.g.first_data + 1) * bs;
        if sb_end > 2048 {
            self.f
                .add(2048, sb_end - 2048, Tag::Meta("superblock".into()));
        }
        let end = self.g.blocks * bs;
        let dev_len = self.dev.len();
        if dev_len > end {
            self.f.add(
                end,
                dev_len - end,
                Tag::Unknown("after the end of the filesystem".into()),
            );
        }
        for grp in 0..self.g.groups {
            let start = self.g.group_start(grp);
            let sb = u64::from(self.g.has_super(grp));
            let legacy = !self.g.meta_bg || grp / self.g.dpb < self.g.first_meta_bg;
            let backup = if grp == 0 {
                String::new()
            } else {
                format!("backup of group {grp}: ")
            };
            if sb == 1 && grp > 0 {
                self.blocks_tag(start, 1, Tag::Meta(format!("{backup}superblock")));
            }
            if legacy && sb == 1 {
                let gdt = self.g.gdt_blocks();
                let what = format!("{backup}group descriptors");
                self.blocks_tag(start + 1, gdt, Tag::Meta(what));
                let what = format!("{backup}reserved GDT blocks");
                self.blocks_tag(start + 1 + gdt, self.g.reserved_gdt, Tag::Meta(what));
            } else if !legacy {
                let idx = grp % self.g.dpb;
                if idx == 0 || idx == 1 || idx == self.g.dpb - 1 {
                    let what = format!(
                        "group descriptors of groups {}-{}{}",
                        grp - idx,
                        grp - idx + self.g.dpb - 1,
                        if idx == 0 { "" } else { " (backup)" }
                    );
                    self.blocks_tag(start + sb, 1, Tag::Meta(what));
                }
            }
        }
    }

    /// Group `grp`'s descriptor, from the first copy that is not missing and is sane.
    fn desc(&self, grp: u64) -> Result<Option<ExtDesc>> {
        let g = &self.g;
        for at in g.desc_locations(grp) {
            if self.f.m.overlaps(at, g.desc_size) {
                continue;
            }
            let d = read_soft(self.dev, at, g.desc_size as usize)?;
            let part = |lo: usize, hi: usize| -> u64 {
                let high = if g.is64 {
                    u64::from(le32(&d, hi).unwrap_or(0)) << 32
                } else {
                    0
                };
                u64::from(le32(&d, lo).unwrap_or(0)) | high
            };
            let desc = ExtDesc {
                bitmap: part(0, 0x20),
                ibitmap: part(4, 0x24),
                itable: part(8, 0x28),
                flags: if g.uninit_allowed {
                    le16(&d, 0x12).unwrap_or(0)
                } else {
                    0
                },
            };
            let inside = |b: u64, n: u64| b >= g.first_data && b.saturating_add(n) <= g.blocks;
            if inside(desc.bitmap, 1)
                && inside(desc.ibitmap, 1)
                && inside(desc.itable, g.itable_blocks)
            {
                return Ok(Some(desc));
            }
        }
        Ok(None)
    }

    fn group(&mut self, grp: u64) -> Result<()> {
        let bs = self.g.block;
        let start = self.g.group_start(grp);
        let len = self.g.per_group.min(self.g.blocks - start);
        let Some(d) = self.desc(grp)? else {
            self.blocks_tag(
                start,
                len,
                Tag::Unknown(format!(
                    "the descriptor of group {grp} is missing or damaged in every copy"
                )),
            );
            return Ok(());
        };
        self.blocks_tag(
            d.bitmap,
            1,
            Tag::Meta(format!("block bitmap of group {grp}")),
        );
        self.blocks_tag(
            d.ibitmap,
            1,
            Tag::Meta(format!("inode bitmap of group {grp}")),
        );
        let first_ino = grp * self.g.ipg + 1;
        self.blocks_tag(
            d.itable,
            self.g.itable_blocks,
            Tag::Itable {
                group: grp,
                first_ino,
                inode_size: self.g.inode_size,
                off: 0,
            },
        );

        // free space of the group
        if self.f.m.overlaps(start * bs, len * bs) {
            if d.flags & BG_BLOCK_UNINIT != 0 {
                self.blocks_tag(start, len, Tag::Free);
            } else if self.f.m.overlaps(d.bitmap * bs, bs) {
                let why = format!("the block bitmap of group {grp} is missing");
                self.blocks_tag(start, len, Tag::Unknown(why));
            } else {
                let bits = read_soft(self.dev, d.bitmap * bs, bs as usize)?;
                let mut runs = Vec::new();
                self.f.m.each(start * bs, len * bs, |s, l| {
                    let (a, b) = (s / bs - start, (s + l).div_ceil(bs) - start);
                    let mut run: Option<u64> = None;
                    for i in a..=b {
                        let free = i < b
                            && byte(&bits, (i / 8) as usize)
                                .is_some_and(|x| x & (1 << (i % 8)) == 0);
                        match (free, run) {
                            (true, None) => run = Some(i),
                            (false, Some(r)) => {
                                runs.push((start + r, i - r));
                                run = None;
                            }
                            _ => {}
                        }
                    }
                });
                for (s, n) in runs {
                    self.blocks_tag(s, n, Tag::Free);
                }
            }
        }

        // inodes
        if d.flags & BG_INODE_UNINIT != 0 {
            return Ok(());
        }
        let ipg = self.g.ipg;
        let isz = self.g.inode_size;
        let ibits = if self.f.m.overlaps(d.ibitmap * bs, bs) {
            None
        } else {
            Some(read_soft(self.dev, d.ibitmap * bs, bs as usize)?)
        };
        let per_chunk = (CHUNK / isz).max(1);
        let mut i = 0u64;
        while i < ipg {
            let n = per_chunk.min(ipg - i);
            let table_off = d.itable * bs + i * isz;
            let buf = read_soft(self.dev, table_off, (n * isz) as usize)?;
            for k in 0..n {
                let idx = i + k;
                let ino = first_ino + idx;
                if ino > self.g.inodes {
                    return Ok(());
                }
                let raw = field(&buf, (k * isz) as usize, isz as usize).unwrap_or(&[]);
                let slot = table_off + k * isz;
                let lost = self.f.m.overlaps(slot, isz);
                let used = match &ibits {
                    Some(b) => {
                        byte(b, (idx / 8) as usize).is_some_and(|x| x & (1 << (idx % 8)) != 0)
                    }
                    // no bitmap: trust what the inode says
                    None => {
                        !lost
                            && le16(raw, 0).unwrap_or(0) != 0
                            && le16(raw, 0x1A).unwrap_or(0) != 0
                            && le32(raw, 0x14).unwrap_or(0) == 0
                    }
                };
                if !used {
                    continue;
                }
                if lost {
                    if ino >= self.g.first_ino || ino == 2 {
                        self.f.add(slot, isz, Tag::Record(ino));
                    }
                    continue;
                }
                self.inode(ino, raw)?;
            }
            i += n;
        }
        Ok(())
    }

    /// What a special inode's blocks are called; `None` for files and directories.
    fn special(&self, ino: u64) -> Option<&'static str> {
        if ino == self.g.journal_ino && ino != 0 {
            return Some("journal");
        }
        if ino >= self.g.first_ino || ino == 2 {
            return None;
        }
        Some(match ino {
            1 => "bad blocks inode",
            3 => "user quota file",
            4 => "group quota file",
            5 => "boot loader inode",
            6 => "undelete directory inode",
            7 => "resize inode (reserved GDT map)",
            8 => "journal",
            _ => "reserved inode",
        })
    }

    fn inode(&mut self, ino: u64, raw: &[u8]) -> Result<()> {
        let bs = self.g.block;
        let mode = le16(raw, 0).unwrap_or(0);
        let size =
            u64::from(le32(raw, 4).unwrap_or(0)) | u64::from(le32(raw, 0x6C).unwrap_or(0)) << 32;
        let flags = le32(raw, 0x20).unwrap_or(0);
        let i_block = field(raw, 0x28, 60).unwrap_or(&[]);
        let special = self.special(ino);
        let is_dir = mode & S_IFMT == S_IFDIR && special.is_none();

        // extended attribute block
        let acl =
            u64::from(le32(raw, 0x68).unwrap_or(0)) | u64::from(le16(raw, 0x76).unwrap_or(0)) << 32;
        if acl != 0 && acl < self.g.blocks {
            self.blocks_tag(
                acl,
                1,
                Tag::Of {
                    what: "extended attributes of ",
                    id: ino,
                },
            );
        }
        if flags & EXT_INLINE_DATA_FL != 0 {
            if is_dir {
                self.dirs.insert(ino, DirData::Inline(i_block.to_vec()));
            }
            return Ok(());
        }
        if mode & S_IFMT == S_IFLNK {
            // a fast symlink keeps its target in i_block
            let ea_blocks = match (acl, flags & EXT_HUGE_FILE_FL != 0) {
                (0, _) => 0,
                (_, true) => 1,
                (_, false) => bs / 512,
            };
            if u64::from(le32(raw, 0x1C).unwrap_or(0)) == ea_blocks {
                return Ok(());
            }
        }
        if ino == 7 {
            // the resize inode maps the backup reserved GDT blocks, labelled already; only
            // its double-indirect block is its own
            let dind = u64::from(le32(i_block, 13 * 4).unwrap_or(0));
            if dind != 0 && dind < self.g.blocks {
                self.blocks_tag(dind, 1, Tag::Meta("resize inode (reserved GDT map)".into()));
            }
            return Ok(());
        }
        let mut runs = Vec::new();
        let mut maps = Vec::new();
        let mut ok = true;
        let nblocks = if special.is_some() {
            u64::MAX / bs
        } else {
            size.div_ceil(bs)
        };
        if flags & EXT_EXTENTS_FL != 0 {
            let mut budget = MAX_TREE_BLOCKS;
            self.extents(i_block, None, &mut runs, &mut maps, &mut budget, &mut ok)?;
        } else {
            let mut budget = MAX_TREE_BLOCKS;
            self.block_map(i_block, nblocks, &mut runs, &mut maps, &mut budget, &mut ok)?;
        }
        if !ok {
            self.f.incomplete(ino);
        }
        let map_tag = match special {
            Some(s) => Tag::Meta(s.into()),
            None => Tag::Of {
                what: "block map of ",
                id: ino,
            },
        };
        for b in maps {
            self.blocks_tag(b, 1, map_tag.clone());
        }
        runs.sort_unstable();
        if special.is_none() {
            self.f.sizes.insert(ino, size);
        }
        let mut dir_blocks = Vec::new();
        for (l, p, n, init) in runs {
            let tag = match (special, is_dir, init) {
                (Some(s), _, _) => Tag::Meta(s.into()),
                (None, true, _) => Tag::Of {
                    what: "directory ",
                    id: ino,
                },
                (None, false, false) => Tag::Of {
                    what: "preallocated space of ",
                    id: ino,
                },
                (None, false, true) => Tag::Data {
                    id: ino,
                    off: l * bs,
                },
            };
            self.blocks_tag(p, n, tag);
            if is_dir && init && l.saturating_mul(bs) < size.min(MAX_DIR_BYTES) {
                dir_blocks.push((p, n.min((size.min(MAX_DIR_BYTES) - l * bs).div_ceil(bs))));
            }
        }
        if is_dir {
            self.dirs.insert(ino, DirData::Blocks(dir_blocks));
        }
        Ok(())
    }

    /// Walks an extent-tree node, collecting `(logical, physical, count, initialised)` runs
    /// and the tree's own blocks; damaged nodes are skipped and clear `ok`.
    fn extents(
        &self,
        node: &[u8],
        want_depth: Option<u16>,
        runs: &mut Vec<(u64, u64, u64, bool)>,
        maps: &mut Vec<u64>,
        budget: &mut usize,
        ok: &mut bool,
    ) -> Result<()> {
        let (Some(magic), Some(entries), Some(depth)) =
            (le16(node, 0), le16(node, 2), le16(node, 6))
        else {
            *ok = false;
            return Ok(());
        };
        if magic != EXTENT_MAGIC || depth > 5 || want_depth.is_some_and(|d| d != depth) {
            *ok = false;
            return Ok(());
        }
        for i in 0..usize::from(entries) {
            let e = 12 + 12 * i;
            let (Some(a), Some(b), Some(c), Some(d)) = (
                le32(node, e),
                le16(node, e + 4),
                le16(node, e + 6),
                le32(node, e + 8),
            ) else {
                *ok = false;
                return Ok(());
            };
            if depth == 0 {
                let (len, init) = if b > 32768 {
                    (b - 32768, false)
                } else {
                    (b, true)
                };
                let start = u64::from(c) << 32 | u64::from(d);
                let n = u64::from(len);
                if n == 0 || start == 0 || start.saturating_add(n) > self.g.blocks {
                    *ok &= n == 0;
                    continue;
                }
                if runs.len() >= MAX_EXTENTS {
                    *ok = false;
                    return Ok(());
                }
                runs.push((u64::from(a), start, n, init));
            } else {
                let leaf = u64::from(b) | u64::from(c) << 16 | u64::from(d & 0xFFFF) << 32;
                let leaf = leaf & 0xFFFF_FFFF_FFFF;
                if leaf == 0 || leaf >= self.g.blocks || *budget == 0 {
                    *ok = false;
                    continue;
                }
                *budget -= 1;
                maps.push(leaf);
                let child = read_soft(self.dev, leaf * self.g.block, self.g.block as usize)?;
                self.extents(&child, Some(depth - 1), runs, maps, budget, ok)?;
            }
        }
        Ok(())
    }

    /// Walks the ext2/3 block map, as [`ExtWalk::extents`] does the extent tree.
    fn block_map(
        &self,
        i_block: &[u8],
        nblocks: u64,
        runs: &mut Vec<(u64, u64, u64, bool)>,
        maps: &mut Vec<u64>,
        budget: &mut usize,
        ok: &mut bool,
    ) -> Result<()> {
        let ptr = |i: usize| u64::from(le32(i_block, 4 * i).unwrap_or(0));
        for i in 0..12u64 {
            let p = ptr(i as usize);
            if i < nblocks && p != 0 {
                self.data_ptr(i, p, runs, ok);
            }
        }
        let per = self.g.block / 4;
        let mut base = 12u64;
        for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
            if base >= nblocks {
                break;
            }
            let p = ptr(slot);
            if p != 0 {
                self.indirect(p, level, base, nblocks, runs, maps, budget, ok)?;
            }
            base = base.saturating_add(per.saturating_pow(level));
        }
        Ok(())
    }

    fn data_ptr(&self, l: u64, p: u64, runs: &mut Vec<(u64, u64, u64, bool)>, ok: &mut bool) {
        if p >= self.g.blocks || runs.len() >= MAX_EXTENTS {
            *ok = false;
            return;
        }
        if let Some(last) = runs.last_mut() {
            if last.0 + last.2 == l && last.1 + last.2 == p {
                last.2 += 1;
                return;
            }
        }
        runs.push((l, p, 1, true));
    }

    #[allow(clippy::too_many_arguments)]
    fn indirect(
        &self,
        block: u64,
        level: u32,
        base: u64,
        nblocks: u64,
        runs: &mut Vec<(u64, u64, u64, bool)>,
        maps: &mut Vec<u64>,
        budget: &mut usize,
        ok: &mut bool,
    ) -> Result<()> {
        if block >= self.g.blocks || *budget == 0 {
            *ok = false;
            return Ok(());
        }
        *budget -= 1;
        maps.push(block);
        let buf = read_soft(self.dev, block * self.g.block, self.g.block as usize)?;
        let per = self.g.block / 4;
        let span = per.saturating_pow(level - 1);
        for j in 0..per {
            let l = base.saturating_add(j.saturating_mul(span));
            if l >= nblocks {
                break;
            }
            let p = u64::from(le32(&buf, 4 * j as usize).unwrap_or(0));
            if p == 0 {
                continue;
            }
            if level == 1 {
                self.data_ptr(l, p, runs, ok);
            } else {
                self.indirect(p, level - 1, l, nblocks, runs, maps, budget, ok)?;
            }
        }
        Ok(())
    }

    /// Names every directory and every inode a piece refers to, breadth first from the root.
    fn paths(&mut self) -> Result<()> {
        let mut wanted: HashSet<u64> = HashSet::new();
        for p in &self.f.pieces {
            match p.tag {
                Tag::Data { id, .. } | Tag::Of { id, .. } | Tag::Record(id) => {
                    wanted.insert(id);
                }
                _ => {}
            }
        }
        wanted.extend(self.f.incomplete.iter().copied());
        let mut names: HashMap<u64, String> = HashMap::new();
        names.insert(2, "/".into());
        let mut queue = VecDeque::from([2u64]);
        let bs = self.g.block;
        while let Some(dir) = queue.pop_front() {
            let Some(data) = self.dirs.get(&dir) else {
                continue;
            };
            let path = names.get(&dir).cloned().unwrap_or_default();
            let mut entries: Vec<(u64, Vec<u8>, u8)> = Vec::new();
            match data {
                DirData::Inline(b) => dirents(b.get(4..).unwrap_or(&[]), &mut entries),
                DirData::Blocks(blocks) => {
                    for &(p, n) in blocks {
                        for k in 0..n {
                            let b = read_soft(self.dev, (p + k) * bs, bs as usize)?;
                            dirents(&b, &mut entries);
                        }
                    }
                }
            }
            for (child, name, ftype) in entries {
                if names.contains_key(&child) || child == 0 || child > self.g.inodes {
                    continue;
                }
                let is_dir = self.dirs.contains_key(&child) && (!self.g.filetype || ftype == 2);
                if !is_dir && !wanted.contains(&child) {
                    continue;
                }
                names.insert(child, join(&path, &String::from_utf8_lossy(&name)));
                if is_dir {
                    queue.push_back(child);
                }
            }
        }
        self.f.names = names;
        Ok(())
    }
}

/// Appends the entries `(inode, name, file type)` of one directory block, without `.` and
/// `..`, stopping at the first damaged record.
fn dirents(buf: &[u8], out: &mut Vec<(u64, Vec<u8>, u8)>) {
    let mut pos = 0usize;
    while pos + 8 <= buf.len() {
        let child = u64::from(le32(buf, pos).unwrap_or(0));
        let raw = usize::from(le16(buf, pos + 4).unwrap_or(0));
        let rec = if buf.len() == 65536 && (raw == 0 || raw == 65535) {
            65536
        } else {
            raw
        };
        if rec < 8 || !rec.is_multiple_of(4) || pos + rec > buf.len() {
            return;
        }
        let name_len = usize::from(byte(buf, pos + 6).unwrap_or(0));
        if child != 0 && 8 + name_len <= rec {
            let name = field(buf, pos + 8, name_len).unwrap_or(&[]);
            if !name.is_empty() && name != b"." && name != b".." {
                out.push((child, name.to_vec(), byte(buf, pos + 7).unwrap_or(0)));
            }
        }
        pos += rec;
    }
}

// ---------------------------------------------------------------------------------------------
// FAT12/16/32

/// A FAT walk in progress.
struct FatWalk<'a, 'm> {
    dev: &'a dyn BlockDev,
    geo: fat::Geometry,
    f: Found<'m>,
    /// The last FAT window read from each copy: first entry, bytes.
    windows: Vec<Option<(u64, Vec<u8>)>>,
    next_id: u64,
}

/// FAT entries read at once (even, for FAT12).
const FAT_WINDOW: u64 = 4096;
/// Clusters followed past the end of a file's size.
const FAT_TAIL: u64 = 4096;

fn walk_fat<'m>(dev: &dyn BlockDev, m: &'m Missing) -> Walk<'m> {
    let bs = read_soft(dev, 0, 512)?;
    let geo = match fat::layout(&bs, dev.len()) {
        Ok(l) => l.geo,
        Err(e) => return Ok(Err(format!("the FAT filesystem cannot be walked: {e}"))),
    };
    let fats = geo.fats as usize;
    let mut w = FatWalk {
        dev,
        f: Found::new(
            m,
            "file",
            "allocated in the FAT, but no file or directory found that owns it",
        ),
        windows: vec![None; fats],
        geo,
        next_id: 1,
    };
    let g = &w.geo;
    let (bps, fat32) = (g.bytes_per_sector, g.fat_type == fat::FatType::Fat32);
    let mut fixed: Vec<(u64, u64, String)> = vec![(0, bps, "boot sector".into())];
    if fat32 {
        let fsinfo = u64::from(le16(&bs, 0x30).unwrap_or(0));
        let backup = u64::from(le16(&bs, 0x32).unwrap_or(0));
        if fsinfo > 0 && fsinfo < 0xFFFF {
            fixed.push((fsinfo * bps, bps, "FSInfo sector".into()));
        }
        if backup > 0 && backup < 0xFFFF {
            fixed.push((backup * bps, 3 * bps, "backup boot sector".into()));
        }
    }
    fixed.push((0, g.fat_start, "reserved sectors".into()));
    for k in 0..g.fats {
        let what = format!("the FAT (copy {} of {})", k + 1, g.fats);
        fixed.push((g.fat_start + k * g.fat_bytes, g.fat_bytes, what));
    }
    if !fat32 {
        fixed.push((
            g.root_start,
            g.data_start - g.root_start,
            "root directory".into(),
        ));
    }
    // the specific names first: a reserved sector that is the FSInfo sector is only that
    let mut claimed: Vec<(u64, u64)> = Vec::new();
    for (s, l, what) in fixed {
        let mut parts = vec![(s, s + l)];
        for &(a, b) in &claimed {
            parts = parts
                .into_iter()
                .flat_map(|(x, y)| {
                    let mut v = Vec::new();
                    if x < a.min(y) {
                        v.push((x, a.min(y)));
                    }
                    if b.max(x) < y {
                        v.push((b.max(x), y));
                    }
                    v
                })
                .collect();
        }
        for &(a, b) in &parts {
            w.f.add(a, b - a, Tag::Meta(what.clone()));
        }
        claimed.push((s, s + l));
    }
    let data_end = g.data_start + g.clusters * g.cluster;
    let total = bs_total(&bs) * bps;
    if total > data_end {
        w.f.add(data_end, total - data_end, Tag::Free);
    }
    if dev.len() > total.max(data_end) {
        let end = total.max(data_end);
        w.f.add(
            end,
            dev.len() - end,
            Tag::Unknown("after the end of the filesystem".into()),
        );
    }
    w.free()?;
    w.tree(&bs)?;
    Ok(Ok(w.f))
}

/// The boot sector's total sectors.
fn bs_total(bs: &[u8]) -> u64 {
    match le16(bs, 0x13).unwrap_or(0) {
        0 => u64::from(le32(bs, 0x20).unwrap_or(0)),
        n => u64::from(n),
    }
}

impl FatWalk<'_, '_> {
    /// FAT entry `c`, from the first copy whose bytes for it are not missing; `None` when
    /// every copy is missing there.
    fn entry(&mut self, c: u64) -> Result<Option<u32>> {
        let g = &self.geo;
        let t = g.fat_type;
        let first = c - c % FAT_WINDOW;
        let (entry_off, width) = match t {
            fat::FatType::Fat12 => (c * 3 / 2, 2),
            fat::FatType::Fat16 => (c * 2, 2),
            fat::FatType::Fat32 => (c * 4, 4),
        };
        for k in 0..g.fats {
            let base = g.fat_start + k * g.fat_bytes;
            if self.f.m.overlaps(base + entry_off, width) {
                continue;
            }
            let slot = self.windows.get_mut(k as usize);
            let Some(slot) = slot else { break };
            if !matches!(slot, Some((f, _)) if *f == first) {
                let n = FAT_WINDOW.min(g.clusters + 2 - first);
                let (off, len) = t.entry_bytes(first, n);
                *slot = Some((first, read_soft(self.dev, base + off, len as usize)?));
            }
            return Ok(slot
                .as_ref()
                .and_then(|(_, buf)| t.entry(buf, (c - first) as usize)));
        }
        Ok(None)
    }

    fn marks(&self) -> (u32, u32) {
        match self.geo.fat_type {
            fat::FatType::Fat12 => (0xFF8, 0xFF7),
            fat::FatType::Fat16 => (0xFFF8, 0xFFF7),
            fat::FatType::Fat32 => (0x0FFF_FFF8, 0x0FFF_FFF7),
        }
    }

    /// Free, bad and unreadable entries of the missing data clusters.
    fn free(&mut self) -> Result<()> {
        let g = &self.geo;
        let (start, cl) = (g.data_start, g.cluster);
        let end = start + g.clusters * cl;
        let mut clusters = Vec::new();
        self.f.m.each(start, end - start, |s, l| {
            clusters.push(((s - start) / cl + 2, (s + l - start).div_ceil(cl) + 2));
        });
        let (_, bad) = self.marks();
        for (a, b) in clusters {
            for c in a..b {
                let at = start + (c - 2) * cl;
                let tag = match self.entry(c)? {
                    Some(0) => Tag::Free,
                    Some(e) if e == bad => Tag::Meta("cluster marked bad".into()),
                    Some(_) => continue,
                    None => Tag::Unknown(
                        "every copy of the FAT is missing where it describes this cluster".into(),
                    ),
                };
                self.f.add(at, cl, tag);
            }
        }
        Ok(())
    }

    /// Follows the chain from `first` for at most `limit` clusters, tagging each with
    /// `tag(k)` (`k` counted from 0). Returns whether it ended cleanly.
    fn chain(
        &mut self,
        first: u32,
        limit: u64,
        tag: &dyn Fn(u64) -> Tag,
    ) -> Result<(bool, Vec<u32>)> {
        let (eoc, _) = self.marks();
        let mut c = first;
        let mut out = Vec::new();
        let mut k = 0u64;
        loop {
            let Some(at) = self.geo.cluster_offset(c) else {
                return Ok((false, out));
            };
            self.f.add(at, self.geo.cluster, tag(k));
            out.push(c);
            k += 1;
            if k >= limit || k > self.geo.clusters {
                return Ok((k >= limit, out));
            }
            match self.entry(u64::from(c))? {
                Some(next) if next >= eoc => return Ok((true, out)),
                Some(next) if next >= 2 => c = next,
                _ => return Ok((false, out)),
            }
        }
    }

    /// Walks the directory tree from the root.
    fn tree(&mut self, bs: &[u8]) -> Result<()> {
        let g = &self.geo;
        let fat32 = g.fat_type == fat::FatType::Fat32;
        let cl = g.cluster;
        let max_dir = (65536 * 32u64).div_ceil(cl);
        // (bytes of the directory, path)
        let mut queue: VecDeque<(Option<u32>, String)> = VecDeque::new();
        queue.push_back((fat32.then(|| le32(bs, 0x2C).unwrap_or(0)), "/".into()));
        let mut seen: HashSet<u32> = HashSet::new();
        while let Some((first, path)) = queue.pop_front() {
            let bytes = match first {
                None => read_soft(
                    self.dev,
                    self.geo.root_start,
                    (self.geo.data_start - self.geo.root_start) as usize,
                )?,
                Some(c) => {
                    if !seen.insert(c) {
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    let tag: Box<dyn Fn(u64) -> Tag> = if path == "/" {
                        Box::new(|_| Tag::Meta("root directory".into()))
                    } else {
                        self.f.names.insert(id, path.clone());
                        Box::new(move |_| Tag::Of {
                            what: "directory ",
                            id,
                        })
                    };
                    let (_, chain) = self.chain(c, max_dir, &*tag)?;
                    let mut b = Vec::with_capacity(chain.len() * cl as usize);
                    for c in chain {
                        let at = self.geo.cluster_offset(c).unwrap_or(0);
                        b.extend(read_soft(self.dev, at, cl as usize)?);
                    }
                    b
                }
            };
            for (name, dir, start, size) in fat_entries(&bytes, fat32) {
                let p = join(&path, &name);
                if dir {
                    if start >= 2 {
                        queue.push_back((Some(start), p));
                    }
                    continue;
                }
                if start < 2 || size == 0 {
                    continue;
                }
                let id = self.next_id;
                self.next_id += 1;
                self.f.names.insert(id, p);
                self.f.sizes.insert(id, u64::from(size));
                let need = u64::from(size).div_ceil(cl);
                let (ok, _) =
                    self.chain(start, need + FAT_TAIL, &|k| Tag::Data { id, off: k * cl })?;
                let _ = ok;
            }
        }
        Ok(())
    }
}

/// The entries of FAT directory bytes: `(name, is directory, first cluster, size)`, without
/// `.`, `..`, labels and deleted entries; the long name when its checksum matches.
fn fat_entries(data: &[u8], fat32: bool) -> Vec<(String, bool, u32, u32)> {
    let mut out = Vec::new();
    let mut parts: Vec<Option<[u16; 13]>> = Vec::new();
    let mut sum = 0u8;
    for e in data.chunks_exact(32) {
        let b0 = e[0];
        if b0 == 0 {
            break;
        }
        if b0 == 0xE5 {
            parts.clear();
            continue;
        }
        let attr = e[11];
        if attr & 0x3F == 0x0F {
            let ord = usize::from(b0 & 0x1F);
            if b0 & 0x40 != 0 {
                parts = vec![None; ord];
                sum = e[13];
            }
            if ord == 0 || ord > parts.len() || e[13] != sum {
                parts.clear();
                continue;
            }
            let mut units = [0u16; 13];
            for (u, off) in units
                .iter_mut()
                .zip([1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30])
            {
                *u = le16(e, off).unwrap_or(0);
            }
            parts[ord - 1] = Some(units);
            continue;
        }
        let check = e[..11]
            .iter()
            .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b));
        let long =
            (!parts.is_empty() && parts.iter().all(Option::is_some) && check == sum).then(|| {
                let units: Vec<u16> = parts
                    .iter()
                    .flatten()
                    .flatten()
                    .copied()
                    .take_while(|&u| u != 0)
                    .collect();
                String::from_utf16_lossy(&units)
            });
        parts.clear();
        if attr & 0x08 != 0 || b0 == b'.' {
            continue;
        }
        let name = long.unwrap_or_else(|| short_name(e));
        let hi = if fat32 {
            u32::from(le16(e, 20).unwrap_or(0)) << 16
        } else {
            0
        };
        out.push((
            name,
            attr & 0x10 != 0,
            hi | u32::from(le16(e, 26).unwrap_or(0)),
            le32(e, 28).unwrap_or(0),
        ));
    }
    out
}

/// An 8.3 name as shown (NT lowercase flags applied).
fn short_name(e: &[u8]) -> String {
    let text = |b: &[u8], lower: bool| {
        let s: String = b.iter().map(|&c| char::from(c)).collect();
        let s = s.trim_end_matches(' ').to_owned();
        if lower {
            s.to_lowercase()
        } else {
            s
        }
    };
    let case = byte(e, 12).unwrap_or(0);
    let mut base = field(e, 0, 8).unwrap_or(&[]).to_vec();
    if base.first() == Some(&0x05) {
        base[0] = 0xE5;
    }
    let base = text(&base, case & 0x08 != 0);
    let ext = text(field(e, 8, 3).unwrap_or(&[]), case & 0x10 != 0);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

// ---------------------------------------------------------------------------------------------
// NTFS

const AT_FILE_NAME: u32 = 0x30;
const AT_DATA: u32 = 0x80;
const AT_INDEX_ALLOCATION: u32 = 0xA0;
const AT_BITMAP: u32 = 0xB0;
const AT_ATTRIBUTE_LIST: u32 = 0x20;
const AT_END: u32 = 0xFFFF_FFFF;
const NTFS_ROOT: u64 = 5;
/// Ids of named streams start here (above every 48-bit record number).
const STREAM_IDS: u64 = 1 << 48;

/// NTFS boot-sector geometry, in bytes unless named otherwise.
struct NtfsGeo {
    bps: u64,
    cluster: u64,
    total_sectors: u64,
    clusters: u64,
    mft_lcn: u64,
    mirr_lcn: u64,
    record: u64,
}

fn ntfs_geo(bs: &[u8], dev_len: u64) -> std::result::Result<NtfsGeo, String> {
    if !has(bs, 3, b"NTFS    ") {
        return Err("no NTFS signature in the boot sector".into());
    }
    let bps = u64::from(le16(bs, 0x0B).unwrap_or(0));
    if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
        return Err(format!("{bps} bytes per sector"));
    }
    let spc = match byte(bs, 0x0D).unwrap_or(0) {
        v @ 1..=0x80 if v.is_power_of_two() => u64::from(v),
        v @ 0xF4..=0xFF => 1 << (256 - u32::from(v)),
        v => return Err(format!("sectors-per-cluster byte {v:#04x}")),
    };
    let cluster = bps * spc;
    if cluster > 2 << 20 {
        return Err(format!("{cluster}-byte clusters"));
    }
    let total_sectors = le64(bs, 0x28).unwrap_or(0);
    if total_sectors.checked_mul(bps).is_none_or(|b| b > dev_len) {
        return Err(format!("{total_sectors} sectors exceed the partition"));
    }
    let clusters = total_sectors / spc;
    let record = match byte(bs, 0x40).unwrap_or(0) as i8 {
        v @ 1..=127 => u64::from(v.unsigned_abs()) * cluster,
        v @ -31..=-1 => 1 << v.unsigned_abs(),
        v => return Err(format!("clusters-per-record byte {v}")),
    };
    if !record.is_power_of_two() || !(512..=64 << 10).contains(&record) {
        return Err(format!("{record}-byte MFT records"));
    }
    let mft_lcn = le64(bs, 0x30).unwrap_or(u64::MAX);
    let mirr_lcn = le64(bs, 0x38).unwrap_or(u64::MAX);
    if clusters == 0 || mft_lcn >= clusters {
        return Err(format!("MFT at cluster {mft_lcn} is outside the volume"));
    }
    Ok(NtfsGeo {
        bps,
        cluster,
        total_sectors,
        clusters,
        mft_lcn,
        mirr_lcn,
        record,
    })
}

/// Applies a record's update sequence; false when it is torn or malformed.
fn ntfs_fixup(rec: &mut [u8]) -> bool {
    let (Some(ofs), Some(count)) = (le16(rec, 4), le16(rec, 6)) else {
        return false;
    };
    let (ofs, count) = (usize::from(ofs), usize::from(count));
    if count != rec.len() / 512 + 1 || ofs < 0x28 || ofs + 2 * count > rec.len() {
        return false;
    }
    let usn = [rec[ofs], rec[ofs + 1]];
    for i in 1..count {
        let end = i * 512;
        if rec[end - 2..end] != usn {
            return false;
        }
        rec[end - 2] = rec[ofs + 2 * i];
        rec[end - 1] = rec[ofs + 2 * i + 1];
    }
    true
}

/// One attribute: type, non-resident, name, bytes.
struct NAttr<'a> {
    kind: u32,
    nonres: bool,
    name: String,
    b: &'a [u8],
}

impl<'a> NAttr<'a> {
    fn value(&self) -> Option<&'a [u8]> {
        let len = le32(self.b, 16)? as usize;
        let off = usize::from(le16(self.b, 20)?);
        self.b.get(off..off.checked_add(len)?)
    }

    /// Runs `(vcn, lcn, clusters)` of a non-resident attribute, lenient: stops at the first
    /// damaged pair, drops runs outside the volume.
    fn runs(&self, clusters: u64) -> (Vec<(u64, u64, u64)>, bool) {
        let mut out = Vec::new();
        let (Some(lowest), Some(mp)) = (le64(self.b, 16), le16(self.b, 32)) else {
            return (out, false);
        };
        let Some(mp) = self.b.get(usize::from(mp)..).filter(|_| mp >= 0x40) else {
            return (out, false);
        };
        let (mut pos, mut vcn, mut lcn) = (0usize, lowest, 0i64);
        while let Some(&head) = mp.get(pos) {
            if head == 0 {
                return (out, true);
            }
            let (nl, no) = (usize::from(head & 0xF), usize::from(head >> 4));
            let Some(bytes) = mp
                .get(pos + 1..pos + 1 + nl + no)
                .filter(|_| (1..=8).contains(&nl) && no <= 8)
            else {
                return (out, false);
            };
            pos += 1 + nl + no;
            let len = signed(&bytes[..nl]);
            if len <= 0 || out.len() >= MAX_EXTENTS {
                return (out, false);
            }
            let len = len.unsigned_abs();
            if no > 0 {
                let Some(l) = lcn.checked_add(signed(&bytes[nl..])) else {
                    return (out, false);
                };
                lcn = l;
                match u64::try_from(lcn) {
                    Ok(s) if s.checked_add(len).is_some_and(|e| e <= clusters) => {
                        out.push((vcn, s, len));
                    }
                    _ => return (out, false),
                }
            }
            vcn = vcn.saturating_add(len);
        }
        (out, false)
    }
}

/// A little-endian two's-complement integer of 1 to 8 bytes.
fn signed(b: &[u8]) -> i64 {
    let mut v: i64 = if b.last().is_some_and(|&x| x & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &x in b.iter().rev() {
        v = (v << 8) | i64::from(x);
    }
    v
}

/// The attributes of a fixed-up record, up to the first damaged one.
fn ntfs_attrs(rec: &[u8]) -> Vec<NAttr<'_>> {
    let mut out = Vec::new();
    let (Some(first), Some(used)) = (le16(rec, 0x14), le32(rec, 0x18)) else {
        return out;
    };
    let (mut pos, used) = (usize::from(first), (used as usize).min(rec.len()));
    while pos >= 0x18 && pos + 16 <= used && out.len() < 512 {
        let kind = le32(rec, pos).unwrap_or(AT_END);
        if kind == AT_END {
            break;
        }
        let len = le32(rec, pos + 4).unwrap_or(0) as usize;
        if len < 24 || !len.is_multiple_of(8) || pos + len > used {
            break;
        }
        let b = &rec[pos..pos + len];
        let nonres = byte(b, 8) != Some(0);
        if nonres && len < 0x40 {
            break;
        }
        let nlen = usize::from(byte(b, 9).unwrap_or(0));
        let noff = usize::from(le16(b, 10).unwrap_or(0));
        let name = field(b, noff, 2 * nlen).map(utf16).unwrap_or_default();
        out.push(NAttr {
            kind,
            nonres,
            name,
            b,
        });
        pos += len;
    }
    out
}

fn utf16(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Maps a stream's byte range to device byte ranges through its runs (sorted by VCN).
fn stream_extents(runs: &[(u64, u64, u64)], cluster: u64, off: u64, len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let end = off.saturating_add(len);
    for &(vcn, lcn, n) in runs {
        let (s, e) = (
            vcn.saturating_mul(cluster),
            (vcn + n).saturating_mul(cluster),
        );
        let (a, b) = (s.max(off), e.min(end));
        if a < b {
            out.push((lcn * cluster + (a - s), b - a));
        }
    }
    out
}

/// Reads a stream's bytes through its runs; holes read as zeros.
fn read_stream(
    dev: &dyn BlockDev,
    runs: &[(u64, u64, u64)],
    cluster: u64,
    off: u64,
    len: usize,
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let end = off.saturating_add(len as u64);
    for &(vcn, lcn, n) in runs {
        let (s, e) = (
            vcn.saturating_mul(cluster),
            (vcn + n).saturating_mul(cluster),
        );
        let (a, b) = (s.max(off), e.min(end));
        if a >= b {
            continue;
        }
        let part = read_soft(dev, lcn * cluster + (a - s), (b - a) as usize)?;
        if let Some(dst) = buf.get_mut((a - off) as usize..(b - off) as usize) {
            dst.copy_from_slice(&part);
        }
    }
    Ok(buf)
}

/// An NTFS walk in progress.
struct NtfsWalk<'a, 'm> {
    dev: &'a dyn BlockDev,
    g: NtfsGeo,
    f: Found<'m>,
    /// Best name of each record: parent, name, namespace rank (lower is better).
    names: HashMap<u64, (u64, String, u8)>,
    /// Named streams: id → (base record, stream name).
    streams: HashMap<(u64, String), u64>,
    /// `$Bitmap`'s runs, once record 6 is read.
    bitmap: Option<Vec<(u64, u64, u64)>>,
}

fn walk_ntfs<'m>(dev: &dyn BlockDev, m: &'m Missing) -> Walk<'m> {
    let bs = read_soft(dev, 0, 512)?;
    let g = match ntfs_geo(&bs, dev.len()) {
        Ok(g) => g,
        Err(e) => return Ok(Err(format!("the NTFS filesystem cannot be walked: {e}"))),
    };
    // record 0, from $MFTMirr when the MFT's copy is missing or torn
    let mut rec0 = None;
    for lcn in [g.mft_lcn, g.mirr_lcn] {
        if lcn >= g.clusters || m.overlaps(lcn * g.cluster, g.record) {
            continue;
        }
        let mut r = read_soft(dev, lcn * g.cluster, g.record as usize)?;
        if has(&r, 0, b"FILE") && ntfs_fixup(&mut r) {
            rec0 = Some(r);
            break;
        }
    }
    let Some(rec0) = rec0 else {
        return Ok(Err(
            "the NTFS filesystem cannot be walked: MFT record 0 ($MFT) is missing or damaged in \
             the MFT and in $MFTMirr"
                .into(),
        ));
    };
    let attrs = ntfs_attrs(&rec0);
    let Some(data) = attrs
        .iter()
        .find(|a| a.kind == AT_DATA && a.name.is_empty() && a.nonres)
    else {
        return Ok(Err(
            "the NTFS filesystem cannot be walked: $MFT has no $DATA".into(),
        ));
    };
    let (mft_runs, _) = data.runs(g.clusters);
    let mft_alloc: u64 = mft_runs.iter().map(|r| r.2 * g.cluster).sum();
    let records = le64(data.b, 48).unwrap_or(0).min(mft_alloc) / g.record;
    // the MFT's own in-use bitmap
    let in_use: Option<Vec<u8>> = match attrs
        .iter()
        .find(|a| a.kind == AT_BITMAP && a.name.is_empty())
    {
        Some(a) if !a.nonres => a.value().map(<[u8]>::to_vec),
        Some(a) => {
            let (runs, _) = a.runs(g.clusters);
            let size = le64(a.b, 48).unwrap_or(0).min(records.div_ceil(8));
            let lost = stream_extents(&runs, g.cluster, 0, size)
                .iter()
                .any(|&(s, l)| m.overlaps(s, l));
            if lost {
                None
            } else {
                Some(read_stream(dev, &runs, g.cluster, 0, size as usize)?)
            }
        }
        None => None,
    };
    let mut w = NtfsWalk {
        dev,
        f: Found::new(
            m,
            "MFT record",
            "in use ($Bitmap), but no file or structure found that owns it",
        ),
        names: HashMap::new(),
        streams: HashMap::new(),
        bitmap: None,
        g,
    };
    let g = &w.g;
    w.f.add(0, g.bps, Tag::Meta("boot sector".into()));
    let backup = g.total_sectors * g.bps;
    w.f.add(backup, g.bps, Tag::Meta("backup boot sector".into()));
    let vol_end = g.clusters * g.cluster;
    if backup > vol_end {
        w.f.add(vol_end, backup - vol_end, Tag::Free);
    }
    let after = backup + g.bps;
    if dev.len() > after {
        w.f.add(
            after,
            dev.len() - after,
            Tag::Unknown("after the end of the filesystem".into()),
        );
    }
    let rec_size = g.record;
    let cluster = g.cluster;
    for &(vcn, lcn, n) in &mft_runs {
        w.f.add(
            lcn * cluster,
            n * cluster,
            Tag::Mft {
                record: rec_size,
                off: vcn * cluster,
            },
        );
    }

    // every record
    let per_chunk = (CHUNK / rec_size).max(1);
    let mut first = 0u64;
    while first < records {
        let n = per_chunk.min(records - first);
        let mut buf = read_stream(
            dev,
            &mft_runs,
            cluster,
            first * rec_size,
            (n * rec_size) as usize,
        )?;
        for (i, rec) in buf.chunks_exact_mut(rec_size as usize).enumerate() {
            let num = first + i as u64;
            let used = in_use
                .as_ref()
                .map(|b| byte(b, (num / 8) as usize).is_some_and(|x| x & (1 << (num % 8)) != 0));
            let lost = stream_extents(&mft_runs, cluster, num * rec_size, rec_size)
                .iter()
                .any(|&(s, l)| m.overlaps(s, l));
            if lost {
                if used == Some(true) && (num == NTFS_ROOT || num >= 16) {
                    for (s, l) in stream_extents(&mft_runs, cluster, num * rec_size, rec_size) {
                        w.f.add(s, l, Tag::Record(num));
                    }
                }
                continue;
            }
            if used == Some(false) || !has(rec, 0, b"FILE") || !ntfs_fixup(rec) {
                continue;
            }
            if le16(rec, 0x16).is_none_or(|f| f & 1 == 0) {
                continue;
            }
            w.record(num, rec);
        }
        first += n;
    }
    w.free()?;
    w.paths();
    Ok(Ok(w.f))
}

/// The names of NTFS system files, by record.
fn ntfs_system(n: u64) -> String {
    match n {
        1 => "$MFTMirr".into(),
        2 => "$LogFile".into(),
        3 => "$Volume".into(),
        4 => "$AttrDef".into(),
        6 => "$Bitmap".into(),
        7 => "$Boot (boot sector)".into(),
        8 => "$BadClus (bad clusters)".into(),
        9 => "$Secure".into(),
        10 => "$UpCase".into(),
        11 => "$Extend".into(),
        n => format!("reserved MFT record {n}"),
    }
}

impl NtfsWalk<'_, '_> {
    fn record(&mut self, num: u64, rec: &[u8]) {
        let base = le64(rec, 0x20).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
        let id = if base == 0 { num } else { base };
        let c = self.g.cluster;
        let rec_size = self.g.record;
        for a in ntfs_attrs(rec) {
            if a.kind == AT_FILE_NAME && !a.nonres && base == 0 {
                let Some(v) = a.value() else { continue };
                let parent = le64(v, 0).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
                let len = usize::from(byte(v, 0x40).unwrap_or(0));
                let rank = match byte(v, 0x41).unwrap_or(0) {
                    1 | 3 => 0,
                    0 => 1,
                    _ => 2,
                };
                let Some(name) = field(v, 0x42, 2 * len).map(utf16) else {
                    continue;
                };
                if self.names.get(&id).is_none_or(|old| rank < old.2) {
                    self.names.insert(id, (parent, name, rank));
                }
                continue;
            }
            if !a.nonres || (id == 0 && a.kind == AT_DATA) {
                continue; // the MFT's own data is tagged from record 0 already
            }
            let (runs, complete) = a.runs(self.g.clusters);
            if !complete {
                self.f.incomplete(id);
            }
            if id == 6 && a.kind == AT_DATA && a.name.is_empty() {
                self.bitmap
                    .get_or_insert_with(Vec::new)
                    .extend(runs.iter().copied());
            }
            let lowest = le64(a.b, 16).unwrap_or(0);
            let tag = |vcn: u64| -> Tag {
                if id < 16 && id != NTFS_ROOT {
                    return match (id, a.kind) {
                        (0, AT_DATA) => Tag::Mft {
                            record: rec_size,
                            off: vcn * c,
                        },
                        (0, AT_BITMAP) => Tag::Meta("the MFT bitmap".into()),
                        (0, _) => Tag::Meta("$MFT".into()),
                        _ => Tag::Meta(ntfs_system(id)),
                    };
                }
                match a.kind {
                    AT_DATA => Tag::Data {
                        id: 0,
                        off: vcn * c,
                    },
                    AT_INDEX_ALLOCATION | AT_BITMAP => Tag::Of {
                        what: "directory index of ",
                        id,
                    },
                    AT_ATTRIBUTE_LIST => Tag::Of {
                        what: "attribute list of ",
                        id,
                    },
                    _ => Tag::Of {
                        what: "attributes of ",
                        id,
                    },
                }
            };
            // the data of named streams gets its own id
            let sid = if a.kind == AT_DATA && id >= 16 {
                if a.name.is_empty() {
                    id
                } else {
                    let next = STREAM_IDS + self.streams.len() as u64;
                    *self.streams.entry((id, a.name.clone())).or_insert(next)
                }
            } else {
                id
            };
            if a.kind == AT_DATA && lowest == 0 && id >= 16 {
                // data size; compressed streams count their on-disk bytes
                let compressed = le16(a.b, 12).unwrap_or(0) & 0x00FF != 0;
                if !compressed {
                    self.f.sizes.insert(sid, le64(a.b, 48).unwrap_or(0));
                }
            }
            for (vcn, lcn, n) in runs {
                let t = match tag(vcn) {
                    Tag::Data { off, .. } => Tag::Data { id: sid, off },
                    t => t,
                };
                self.f.add(lcn * c, n * c, t);
            }
        }
    }

    /// Free clusters of the missing ranges, from `$Bitmap`.
    fn free(&mut self) -> Result<()> {
        let c = self.g.cluster;
        let end = self.g.clusters * c;
        let Some(runs) = self.bitmap.take() else {
            self.f.add(
                0,
                end,
                Tag::Unknown("$Bitmap cannot be read, so whether this is used is unknown".into()),
            );
            return Ok(());
        };
        let mut parts = Vec::new();
        self.f
            .m
            .each(0, end, |s, l| parts.push((s / c, (s + l).div_ceil(c))));
        for (a, b) in parts {
            let mut at = a;
            while at < b {
                // one chunk of bitmap bytes at a time
                let to = b.min(at + CHUNK * 8);
                let (lo, hi) = (at / 8, (to - 1) / 8 + 1);
                let ext = stream_extents(&runs, c, lo, hi - lo);
                if ext.iter().any(|&(s, l)| self.f.m.overlaps(s, l)) {
                    let why = "the part of $Bitmap saying whether this is used is missing";
                    self.f.add(at * c, (to - at) * c, Tag::Unknown(why.into()));
                    at = to;
                    continue;
                }
                let bits = read_stream(self.dev, &runs, c, lo, (hi - lo) as usize)?;
                let mut run: Option<u64> = None;
                for k in at..=to {
                    let free = k < to
                        && byte(&bits, (k / 8 - lo) as usize)
                            .is_some_and(|x| x & (1 << (k % 8)) == 0);
                    match (free, run) {
                        (true, None) => run = Some(k),
                        (false, Some(r)) => {
                            self.f.add(r * c, (k - r) * c, Tag::Free);
                            run = None;
                        }
                        _ => {}
                    }
                }
                at = to;
            }
        }
        Ok(())
    }

    /// Paths of every record and stream a piece refers to.
    fn paths(&mut self) {
        let mut wanted: HashSet<u64> = HashSet::new();
        for p in &self.f.pieces {
            match p.tag {
                Tag::Data { id, .. } | Tag::Of { id, .. } | Tag::Record(id) => {
                    wanted.insert(id);
                }
                _ => {}
            }
        }
        wanted.extend(self.f.incomplete.iter().copied());
        let by_sid: HashMap<u64, (u64, String)> =
            self.streams.iter().map(|(k, &v)| (v, k.clone())).collect();
        for id in wanted {
            let path = match by_sid.get(&id) {
                Some((base, name)) => self.path(*base).map(|p| format!("{p}:{name}")),
                None => self.path(id),
            };
            if let Some(p) = path {
                self.f.names.insert(id, p);
            }
        }
    }

    /// The path of record `id`, following parents to the root; `None` without a name.
    fn path(&self, id: u64) -> Option<String> {
        if id == NTFS_ROOT {
            return Some("/".into());
        }
        let mut parts: Vec<&str> = Vec::new();
        let mut at = id;
        let mut prefix = String::new();
        for _ in 0..MAX_DEPTH {
            if at == NTFS_ROOT {
                break;
            }
            match self.names.get(&at) {
                Some((parent, name, _)) => {
                    parts.push(name);
                    at = *parent;
                }
                None if at == id => return None,
                None => {
                    prefix = format!("(lost directory, MFT record {at})");
                    break;
                }
            }
        }
        parts.reverse();
        Some(format!("{prefix}/{}", parts.join("/")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::{FileDev, MemDev, OpenMode};
    use crate::fsmap::testutil::*;
    use std::path::Path;
    use std::process::Command;

    /// A file device over `path` that reads zeros in `missing`, as the rescue image does.
    fn zeroed(path: &Path, missing: &[(u64, u64)]) -> MemDev {
        let mut bytes = std::fs::read(path).unwrap();
        for &(s, l) in missing {
            let e = ((s + l) as usize).min(bytes.len());
            bytes[s as usize..e].fill(0);
        }
        MemDev::from_vec(bytes, 512)
    }

    fn files(d: &Damage) -> Vec<(String, u64)> {
        d.hits
            .iter()
            .filter_map(|h| match h {
                Hit::File { path, bytes } => Some((path.clone(), *bytes)),
                _ => None,
            })
            .collect()
    }

    fn metas(d: &Damage) -> Vec<String> {
        d.hits
            .iter()
            .filter_map(|h| match h {
                Hit::Metadata { what } => Some(what.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn gaps_and_missing_merge() {
        let m = Missing::new(&[(10, 5), (0, 3), (12, 10), (100, 0)]);
        assert_eq!(m.0, vec![(0, 3), (10, 22)]);
        let mut parts = Vec::new();
        m.each(2, 10, |s, l| parts.push((s, l)));
        assert_eq!(parts, vec![(2, 1), (10, 2)]);
        assert_eq!(gaps(0, 10, &mut [(2, 4), (3, 5)]), vec![(0, 2), (5, 10)]);
    }

    #[test]
    fn unknown_and_hostile_filesystems_are_unknown() {
        // nothing on the device
        let dev = MemDev::new(1 << 20, 512);
        let d = damaged(&dev, &[(4096, 512)]).unwrap();
        assert!(matches!(&d[0].hits[..], [Hit::Unknown { .. }]), "{d:?}");
        // an ext superblock whose geometry is garbage
        let mut img = ext_image(0x3C, 0x42, 0x3, 2, 1000, 400);
        let mut rng = Rng(7);
        for b in &mut img[1024 + 0x100..2048] {
            *b = rng.next() as u8;
        }
        let d = damaged(&mem(img), &[(8192, 4096)]).unwrap();
        assert!(matches!(&d[0].hits[..], [Hit::Unknown { .. }]), "{d:?}");
        // an NTFS boot sector whose MFT is zeros
        let d = damaged(&mem(ntfs_image()), &[(0, 512), (20000, 100)]).unwrap();
        assert_eq!(d.len(), 2);
        for x in &d {
            assert!(matches!(&x.hits[..], [Hit::Unknown { .. }]), "{d:?}");
        }
        // a FAT16 volume with a garbage root directory and FAT
        let mut img = fat16_image();
        for (i, b) in img[512..FAT16_META as usize].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        let d = damaged(&mem(img), &[(0, 1 << 20)]).unwrap();
        assert!(!d[0].hits.is_empty());
    }

    #[test]
    fn fuzzed_ext_never_panics() {
        let Some(mkfs) = tool("mkfs.ext4") else {
            return;
        };
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir(tree.path().join("d")).unwrap();
        std::fs::write(tree.path().join("d/f"), vec![1u8; 100_000]).unwrap();
        let img = sparse(4 << 20);
        output(
            Command::new(mkfs)
                .args(["-q", "-F", "-b", "1024", "-O", "^has_journal", "-d"])
                .arg(tree.path())
                .arg(&img.path),
        );
        let clean = std::fs::read(&img.path).unwrap();
        let mut rng = Rng(42);
        for _ in 0..40 {
            let mut b = clean.clone();
            for _ in 0..200 {
                let at = rng.below(600 * 1024) as usize;
                b[at] = rng.next() as u8;
            }
            let dev = MemDev::from_vec(b, 512);
            let miss = [(rng.below(4 << 20), 1 + rng.below(1 << 20))];
            let d = damaged(&dev, &miss).unwrap();
            assert_eq!(d.len(), 1);
            assert!(!d[0].hits.is_empty());
        }
    }

    /// Runs debugfs request `req` on `img`.
    fn debugfs(img: &Path, req: &str) -> String {
        let prog = tool("debugfs").unwrap();
        output(Command::new(prog).args(["-R", req]).arg(img))
    }

    /// The physical blocks of `path` from `debugfs stat`'s EXTENTS or BLOCKS section.
    fn debugfs_blocks(img: &Path, path: &str) -> Vec<u64> {
        let text = debugfs(img, &format!("blocks {path}"));
        text.split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect()
    }

    #[test]
    fn ext4_hits_agree_with_debugfs() {
        let (Some(mkfs), Some(_), Some(dumpe2fs)) =
            (tool("mkfs.ext4"), tool("debugfs"), tool("dumpe2fs"))
        else {
            return;
        };
        let tree = tempfile::tempdir().unwrap();
        let t = tree.path();
        std::fs::create_dir_all(t.join("etc/deep")).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        std::fs::write(t.join("etc/deep/big"), big).unwrap();
        std::fs::write(t.join("small.txt"), b"hello, world\n").unwrap();
        // many files, so that /etc takes more than one block
        for i in 0..150 {
            let name = format!("etc/file-with-a-long-name-{i:04}");
            std::fs::write(t.join(name), [i as u8; 10]).unwrap();
        }
        let img = sparse(8 << 20);
        output(
            Command::new(mkfs)
                .args(["-q", "-F", "-b", "4096", "-d"])
                .arg(t)
                .arg(&img.path)
                .arg("8M"),
        );
        let bs = 4096u64;
        let big = debugfs_blocks(&img.path, "/etc/deep/big");
        let small = debugfs_blocks(&img.path, "/small.txt");
        let etc = debugfs_blocks(&img.path, "/etc");
        let stat = debugfs(&img.path, "stat /small.txt");
        let small_ino = kv(&stat, "Inode:");
        let dump = output(Command::new(dumpe2fs).arg(&img.path));
        let itable: u64 = dump
            .lines()
            .find_map(|l| l.trim().strip_prefix("Inode table at "))
            .and_then(|s| s.split('-').next())
            .unwrap()
            .parse()
            .unwrap();
        let isz = kv(&dump, "Inode size:");
        let small_slot = itable * bs + (small_ino - 1) * isz;
        // a free block: the last one, which icheck says nobody owns
        let last = 2047;
        let icheck = debugfs(&img.path, &format!("icheck {last}"));
        assert!(icheck.contains("<block not found>"), "{icheck}");

        let cases: Vec<(u64, u64)> = vec![
            (big[1] * bs, 2 * bs),           // 0: two blocks of big
            (small[0] * bs + 100, 10),       // 1: inside small's block, past its end
            (small[0] * bs, 512),            // 2: small's data
            (etc[0] * bs, bs),               // 3: a directory block
            (last * bs, bs),                 // 4: free
            (1024, 1024),                    // 5: superblock
            (*big.last().unwrap() * bs, bs), // 6: big's last (partial) block
        ];
        let clean = FileDev::open(&img.path, OpenMode::Read).unwrap();
        let d = damaged(&clean, &cases).unwrap();
        let big_file = ("/etc/deep/big".to_string(), 2 * bs);
        assert_eq!(files(&d[0]), vec![big_file.clone()], "{:?}", d[0]);
        assert_eq!(d[1].hits.len(), 1, "{:?}", d[1]);
        let past = "space allocated past the end of /small.txt";
        assert_eq!(metas(&d[1]), vec![past.to_string()]);
        assert_eq!(files(&d[2]), vec![("/small.txt".into(), 13)], "{:?}", d[2]);
        assert_eq!(metas(&d[2]), vec![past.to_string()]);
        assert_eq!(
            metas(&d[3]),
            vec!["directory /etc".to_string()],
            "{:?}",
            d[3]
        );
        assert_eq!(d[4].hits, vec![Hit::Free], "{:?}", d[4]);
        assert_eq!(metas(&d[5]), vec!["superblock".to_string()], "{:?}", d[5]);
        let tail = ("/etc/deep/big".to_string(), 300_000 % bs);
        assert_eq!(files(&d[6]), vec![tail], "{:?}", d[6]);

        // the same with the data zeroed, as the rescue image holds it
        let data = [cases[0], cases[1], cases[4]];
        let d = damaged(&zeroed(&img.path, &data), &data).unwrap();
        assert_eq!(files(&d[0]), vec![big_file], "{:?}", d[0]);
        assert_eq!(d[2].hits, vec![Hit::Free], "{:?}", d[2]);

        // small's inode lost: the inode table and the file are named
        let slot = [(small_slot, isz)];
        let d = damaged(&zeroed(&img.path, &slot), &slot).unwrap();
        let record = Hit::FileRecord {
            path: "/small.txt".into(),
            record: format!("inode {small_ino}"),
        };
        assert!(d[0].hits.contains(&record), "{:?}", d[0]);
        let table = format!("inode table of group 0 (inodes {small_ino}-{small_ino})");
        assert!(metas(&d[0]).contains(&table), "{:?}", d[0]);

        // every used block icheck names is attributed to the path ncheck gives
        for b in [big[0], etc[1], small[0], itable] {
            let text = debugfs(&img.path, &format!("icheck {b}"));
            let ino = text
                .lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap();
            let one = damaged(&clean, &[(b * bs, 1)]).unwrap();
            let hits = format!("{:?}", one[0].hits);
            if ino == "<block" {
                assert!(hits.contains("inode table"), "block {b}: {hits}");
                continue;
            }
            let ncheck = debugfs(&img.path, &format!("ncheck {ino}"));
            let line = ncheck.lines().nth(1).unwrap();
            // debugfs writes directories as "//etc"
            let path = line.split_whitespace().nth(1).unwrap().replace("//", "/");
            assert!(hits.contains(&path), "block {b}: {path} not in {hits}");
        }
    }

    #[test]
    fn ext3_block_maps_and_journal() {
        let (Some(mkfs), Some(_)) = (tool("mkfs.ext3"), tool("debugfs")) else {
            return;
        };
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("f"), vec![9u8; 200 * 1024]).unwrap();
        let img = sparse(16 << 20);
        output(
            Command::new(mkfs)
                .args(["-q", "-F", "-b", "1024", "-d"])
                .arg(tree.path())
                .arg(&img.path),
        );
        let stat = debugfs(&img.path, "stat /f");
        // "(IND):1234" names the single-indirect block
        let ind: u64 = stat.split("(IND):").nth(1).unwrap()[..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let f = debugfs_blocks(&img.path, "/f");
        let journal = debugfs_blocks(&img.path, "<8>");
        let cases = [
            (ind * 1024, 1024),
            (f[20] * 1024, 1024),
            (journal[3] * 1024, 1),
        ];
        let clean = FileDev::open(&img.path, OpenMode::Read).unwrap();
        let d = damaged(&clean, &cases).unwrap();
        assert_eq!(
            metas(&d[0]),
            vec!["block map of /f".to_string()],
            "{:?}",
            d[0]
        );
        assert_eq!(files(&d[1]), vec![("/f".into(), 1024)], "{:?}", d[1]);
        assert_eq!(metas(&d[2]), vec!["journal".to_string()], "{:?}", d[2]);
        // with the indirect block zeroed, the blocks it mapped belong to nobody known
        let d = damaged(&zeroed(&img.path, &cases[..1]), &cases[..2]).unwrap();
        assert!(
            matches!(&d[1].hits[..], [Hit::Unknown { .. }]),
            "{:?}",
            d[1]
        );
    }

    /// Runs `mtools` program `prog` on image `img` with `args`.
    fn mtool(prog: &str, img: &Path, args: &[&str]) {
        let p = optional_tool(prog).unwrap();
        let mut c = Command::new(p);
        c.env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(img)
            .args(args);
        output(&mut c);
    }

    #[test]
    fn fat_hits_follow_chains() {
        let (Some(mkfs), Some(_), Some(_)) = (
            tool("mkfs.vfat"),
            optional_tool("mcopy"),
            optional_tool("mmd"),
        ) else {
            return;
        };
        for (bits, spc, size) in [
            ("12", "4", 4u64 << 20),
            ("16", "4", 32 << 20),
            ("32", "1", 64 << 20),
        ] {
            let img = sparse(size);
            output(
                Command::new(&mkfs)
                    .args(["-F", bits, "-s", spc, "-S", "512"])
                    .arg(&img.path),
            );
            let tmp = tempfile::tempdir().unwrap();
            let src = tmp.path().join("A Long Name.bin");
            std::fs::write(&src, vec![5u8; 5000]).unwrap();
            let other = tmp.path().join("other.txt");
            std::fs::write(&other, vec![6u8; 700]).unwrap();
            mtool("mmd", &img.path, &["::/sub"]);
            mtool(
                "mcopy",
                &img.path,
                &[other.to_str().unwrap(), "::/other.txt"],
            );
            let dst = "::/sub/A Long Name.bin";
            mtool("mcopy", &img.path, &[src.to_str().unwrap(), dst]);
            let dev = FileDev::open(&img.path, OpenMode::Read).unwrap();
            let bs = read_vec(&dev, 0, 512).unwrap();
            let g = fat::layout(&bs, dev.len()).unwrap().geo;
            let data = (g.data_start, g.clusters * g.cluster);
            let all = damaged(&dev, &[data]).unwrap();
            let f = files(&all[0]);
            let long = ("/sub/A Long Name.bin".to_string(), 5000);
            assert!(f.contains(&long), "FAT{bits}: {f:?}");
            assert!(f.contains(&("/other.txt".into(), 700)), "FAT{bits}: {f:?}");
            assert!(all[0].hits.contains(&Hit::Free), "FAT{bits}");
            assert!(
                metas(&all[0]).contains(&"directory /sub".to_string()),
                "FAT{bits}"
            );
            // the fixed structures
            let fat2 = g.fat_start + g.fat_bytes;
            let cases = [(0, 512), (g.fat_start, g.fat_bytes), (fat2 + 2, 2)];
            let d = damaged(&dev, &cases).unwrap();
            assert_eq!(
                metas(&d[0]),
                vec!["boot sector".to_string()],
                "FAT{bits}: {d:?}"
            );
            assert_eq!(metas(&d[1]), vec!["the FAT (copy 1 of 2)".to_string()]);
            assert_eq!(metas(&d[2]), vec!["the FAT (copy 2 of 2)".to_string()]);
            if bits != "32" {
                let root = damaged(&dev, &[(g.root_start, 32)]).unwrap();
                assert_eq!(metas(&root[0]), vec!["root directory".to_string()]);
            }
            // the first FAT zeroed: chains are read from the second
            let lost = [(g.fat_start, g.fat_bytes), data];
            let d = damaged(&zeroed(&img.path, &lost[..1]), &lost).unwrap();
            assert!(files(&d[1]).contains(&long), "FAT{bits}: {:?}", d[1]);
        }
    }

    /// Mounts NTFS image `img` with ntfs-3g (root only), runs `f` on the mount point.
    fn with_ntfs_mount(img: &Path, f: impl FnOnce(&Path)) -> bool {
        let uid = output(Command::new("id").arg("-u"));
        if uid.trim() != "0" {
            eprintln!("SKIP: populating NTFS needs root (ntfs-3g mount)");
            return false;
        }
        let Some(ntfs3g) = optional_tool("ntfs-3g") else {
            return false;
        };
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new(ntfs3g)
            .arg(img)
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        if !ok {
            eprintln!("SKIP: ntfs-3g cannot mount here");
            return false;
        }
        f(dir.path());
        let ok = Command::new("umount").arg(dir.path()).status().unwrap();
        assert!(ok.success());
        true
    }

    #[test]
    fn ntfs_hits_agree_with_ntfscluster() {
        let (Some(mkntfs), Some(ntfscluster)) = (tool("mkntfs"), optional_tool("ntfscluster"))
        else {
            return;
        };
        let img = sparse(8 << 20);
        output(
            Command::new(mkntfs)
                .args(["-F", "-Q", "-q", "-c", "4096"])
                .arg(&img.path),
        );
        let mounted = with_ntfs_mount(&img.path, |root| {
            std::fs::create_dir_all(root.join("Dir/Sub")).unwrap();
            std::fs::write(root.join("Dir/Sub/data.bin"), vec![3u8; 100_000]).unwrap();
            std::fs::write(root.join("tiny.txt"), b"small").unwrap();
            for i in 0..100 {
                std::fs::write(root.join(format!("Dir/many-{i:03}.txt")), [1u8; 2000]).unwrap();
            }
        });
        let dev = FileDev::open(&img.path, OpenMode::Read).unwrap();
        let bs = read_vec(&dev, 0, 512).unwrap();
        let g = ntfs_geo(&bs, dev.len()).unwrap();
        let c = g.cluster;
        let owner = |cl: u64| {
            let mut cmd = Command::new(&ntfscluster);
            output(cmd.args(["-c", &cl.to_string()]).arg(&img.path))
        };
        let d = damaged(&dev, &[(g.mft_lcn * c, c)]).unwrap();
        let text = format!("{:?}", d[0].hits);
        assert!(text.contains("the MFT (records 0-3)"), "{text}");
        assert!(owner(g.mft_lcn).contains("/$MFT/$DATA"));
        // cluster by cluster (a range covering the MFT would hide every record): every
        // system file, free space and, when populated, the files and directory indexes
        let mut seen = HashSet::new();
        for cl in 0..g.clusters {
            for h in damaged(&dev, &[(cl * c, c)]).unwrap().remove(0).hits {
                seen.insert(format!("{h:?}"));
            }
        }
        let text = format!("{seen:?}");
        for what in [
            "$LogFile",
            "$Bitmap",
            "boot sector",
            "$MFTMirr",
            "$UpCase",
            "Free",
        ] {
            assert!(text.contains(what), "{what} missing from {text}");
        }
        // sampled clusters: free exactly where ntfscluster finds no owner
        for cl in (0..g.clusters).step_by((g.clusters / 40) as usize) {
            let who = owner(cl);
            let one = damaged(&dev, &[(cl * c, c)]).unwrap();
            if who.contains("no inode found") {
                assert_eq!(one[0].hits, vec![Hit::Free], "cluster {cl}: {who}");
            } else {
                assert!(!one[0].hits.contains(&Hit::Free), "cluster {cl}: {who}");
            }
        }
        if !mounted {
            return;
        }
        assert!(text.contains("directory index of /Dir"), "{text}");
        // one cluster of data.bin, from ntfscluster -F
        let mut cmd = Command::new(&ntfscluster);
        let info = output(cmd.args(["-F", "/Dir/Sub/data.bin"]).arg(&img.path));
        let lcn: u64 = info
            .lines()
            .skip_while(|l| !l.contains("LCN"))
            .nth(1)
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap();
        assert!(owner(lcn + 1).contains("/Dir/Sub/data.bin/$DATA"));
        let one = damaged(&dev, &[(lcn * c + c, c)]).unwrap();
        assert_eq!(files(&one[0]), vec![("/Dir/Sub/data.bin".into(), c)]);
        // the MFT record of data.bin lost: the file is named, through its parent's record
        let info = output(
            Command::new(optional_tool("ntfsinfo").unwrap())
                .args(["-F", "/Dir/Sub/data.bin"])
                .arg(&img.path),
        );
        let rec = kv(&info, "Dumping Inode");
        let at = g.mft_lcn * c + rec * g.record;
        let lost = [(at, g.record)];
        let d = damaged(&zeroed(&img.path, &lost), &lost).unwrap();
        let text = format!("{:?}", d[0].hits);
        assert!(text.contains(&format!("MFT record {rec}")), "{text}");
        assert!(text.contains("the MFT (records"), "{text}");
    }

    #[test]
    fn hits_serialize_tagged() {
        let d = Damage {
            start: 1,
            len: 2,
            hits: vec![
                Hit::Free,
                Hit::File {
                    path: "/a".into(),
                    bytes: 2,
                },
            ],
        };
        let j = serde_json::to_string(&d).unwrap();
        assert!(j.contains(r#"{"kind":"free"}"#), "{j}");
        assert_eq!(serde_json::from_str::<Damage>(&j).unwrap(), d);
    }
}
