//! Finding files without mounting: for a few paths in an ext2/3/4 or FAT12/16/32 filesystem,
//! the byte ranges of the partition that hold each file's data.
//!
//! `boot-test` maps the disk reads a guest makes to files ("the boot loader read
//! /boot/vmlinuz-6.1"), so it needs, for a handful of paths, where their data lies. This
//! module reads the filesystem's own structures through any [`BlockDev`] (the partition, as a
//! `Slice` of the disk): no root, no mount, no kernel driver. The superblock, group
//! descriptors and BPB come from [`super::ext`] and [`super::fat`], which the used-block maps
//! also use.
//!
//! What is read:
//! - **ext2/3/4:** inodes through the group descriptors (32- and 64-bit), extent trees of any
//!   depth up to 5 (uninitialised extents are not data and are left out), the ext2/3 block
//!   map (direct, single, double and triple indirect), directories read linearly (an htree's
//!   root and index blocks hold only entries with inode 0, so a linear read sees exactly the
//!   real entries), inline data (`EXT4_INLINE_DATA_FL`: files are reported with no ranges,
//!   directories and symlinks are read from the inode and its `system.data` attribute), fast
//!   and slow symlinks, relative and absolute.
//! - **FAT12/16/32:** the fixed root directory or FAT32's root cluster chain, subdirectories,
//!   long (VFAT) and 8.3 names, compared case-insensitively, cluster chains from the first
//!   FAT, the last cluster cut to the file size.
//!
//! Not read: other filesystems ([`Error::Unsupported`] names them), ext's
//! `EA_INODE` large attributes, encrypted (fscrypt) names, casefolded ext directories (names
//! are compared byte for byte), FAT's second FAT copy.
//!
//! Invariants: nothing is written; every loop is bounded (symlink hops [`MAX_HOPS`],
//! extent-tree depth 5, tree blocks per file [`MAX_TREE_BLOCKS`], extents per file
//! [`MAX_EXTENTS`], ext directories of at most [`MAX_DIR_BYTES`], FAT directories of at most
//! 65536 entries, FAT chains checked against the cluster count and for repeats); no
//! allocation is sized from an on-disk value without such a bound; damaged structures are
//! [`Error::Filesystem`] naming the family and what is wrong, never a panic.
//!
//! Units: ranges are `(byte offset from the partition's first byte, length in bytes)`, in
//! file order, adjacent ones merged, the last one cut to the file size.

use super::detect::{identify, FsKind};
use super::{ext, fat, MapError};
use crate::blockdev::{read_vec, BlockDev};
use crate::bytes::{byte, field, le16, le32};
use crate::error::{Error, Result};
use std::collections::VecDeque;

/// One file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    /// Its absolute path as found: symlinks resolved to the target's path; on FAT the long
    /// name when there is one, else the 8.3 name.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where its data lies: `(byte offset in the partition, length)`, in file order, adjacent
    /// ranges merged, summing to at most `size` (less for sparse files and none for ext inline
    /// data).
    pub ranges: Vec<(u64, u64)>,
}

/// Symlinks followed while resolving one path; more is treated as a loop and the path as
/// missing.
pub const MAX_HOPS: u32 = 8;
/// Largest ext directory read.
pub const MAX_DIR_BYTES: u64 = 64 << 20;
/// Longest symlink target read (`PATH_MAX`).
const MAX_LINK_BYTES: u64 = 4096;
/// Extent-tree or indirect blocks read for one file.
pub const MAX_TREE_BLOCKS: usize = 1 << 16;
/// Extents (or runs of mapped blocks) kept for one file.
pub const MAX_EXTENTS: usize = 1 << 20;
/// Most entries in a FAT directory (the specification's limit).
const FAT_DIR_ENTRIES: u64 = 65536;
/// FAT entries read at once while following a chain (even, for FAT12).
const FAT_WINDOW: u64 = 4096;

/// Looks up each pattern in the filesystem on `dev` (one partition; ext2/3/4 or FAT12/16/32).
///
/// A pattern is an absolute path; its last component may end in `*`, which matches every
/// name starting with what precedes it (`/boot/vmlinuz*`), and then every match is returned.
/// Only regular files are returned; a missing path, a dangling symlink or a symlink loop is
/// simply absent. Symlinks are followed in every component (at most [`MAX_HOPS`]). A file
/// reached by several patterns or links is returned once, under its resolved path.
///
/// Fails with [`Error::Unsupported`] when `dev` holds another filesystem or none, or a pattern
/// is relative or has a `*` elsewhere; with [`Error::Filesystem`] when the structures needed
/// are damaged; and with I/O errors.
pub fn find_files(dev: &dyn BlockDev, patterns: &[&str]) -> Result<Vec<FoundFile>> {
    let Some((info, _)) = identify(dev)? else {
        return Err(Error::Unsupported(
            "finding files on a partition without a known filesystem".into(),
        ));
    };
    match info.kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => find_in(&ExtTree::open(dev)?, patterns),
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => find_in(&FatTree::open(dev)?, patterns),
        other => Err(Error::Unsupported(format!(
            "finding files on {}",
            other.display_name()
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// path resolution, shared by both families

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Link,
    Other,
}

/// A directory entry that matched.
struct Entry<N> {
    /// The name shown in paths.
    name: String,
    /// What it points to.
    node: N,
}

/// Which names a directory lookup wants.
enum Want<'a> {
    /// This name; the first match is enough.
    Exact(&'a str),
    /// Every name starting with this.
    Prefix(&'a str),
}

/// One filesystem's view for path resolution.
trait Tree {
    /// A file, directory or link, loaded enough to answer [`Tree::kind`].
    type Node: Clone;
    /// The root directory.
    fn root(&self) -> Result<Self::Node>;
    /// What `n` is.
    fn kind(&self, n: &Self::Node) -> Kind;
    /// The entries of directory `dir` that match `want`, without `.` and `..`.
    fn find(&self, dir: &Self::Node, want: &Want) -> Result<Vec<Entry<Self::Node>>>;
    /// A symlink's target.
    fn link_target(&self, n: &Self::Node) -> Result<Vec<u8>>;
    /// A file's size and data ranges.
    fn data(&self, n: &Self::Node) -> Result<(u64, Vec<(u64, u64)>)>;
}

/// The directories from the root down to a node, with their names; empty is the root.
type Stack<N> = Vec<(String, N)>;

fn find_in<T: Tree>(t: &T, patterns: &[&str]) -> Result<Vec<FoundFile>> {
    let root = t.root()?;
    let mut out: Vec<FoundFile> = Vec::new();
    for pat in patterns {
        let Some(rest) = pat.strip_prefix('/') else {
            return Err(Error::Unsupported(format!(
                "the relative path pattern {pat:?}"
            )));
        };
        let mut comps: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
        let last = comps.pop();
        let star_inside = |c: &str| c.trim_end_matches('*').contains('*') || c.ends_with("**");
        if comps.iter().any(|c| c.contains('*')) || last.is_some_and(star_inside) {
            return Err(Error::Unsupported(format!(
                "the pattern {pat:?} (only a trailing * in the last component is understood)"
            )));
        }
        let mut found: Vec<Stack<T::Node>> = Vec::new();
        match last {
            None => {} // "/" is a directory
            Some(l) if l.ends_with('*') => {
                let prefix = l.trim_end_matches('*');
                let mut hops = 0;
                let Some(dir) = walk(t, &root, Vec::new(), owned(&comps), &mut hops)? else {
                    continue;
                };
                let dir_node = dir.last().map_or(&root, |e| &e.1);
                if t.kind(dir_node) != Kind::Dir {
                    continue;
                }
                for e in t.find(dir_node, &Want::Prefix(prefix))? {
                    let (mut stack, mut queue, mut h) = (dir.clone(), VecDeque::new(), hops);
                    if enter(t, &mut stack, e, &mut queue, &mut h)? {
                        found.extend(walk(t, &root, stack, queue, &mut h)?);
                    }
                }
            }
            Some(l) => {
                comps.push(l);
                found.extend(walk(t, &root, Vec::new(), owned(&comps), &mut 0)?);
            }
        }
        for stack in found {
            let Some((_, node)) = stack.last() else {
                continue;
            };
            if t.kind(node) != Kind::File {
                continue;
            }
            let names: Vec<&str> = stack.iter().map(|e| e.0.as_str()).collect();
            let path = format!("/{}", names.join("/"));
            if out.iter().any(|f| f.path == path) {
                continue;
            }
            let (size, ranges) = t.data(node).map_err(|e| match e {
                Error::Filesystem(MapError(why, fam)) => {
                    Error::Filesystem(MapError(format!("{path}: {why}"), fam))
                }
                other => other,
            })?;
            out.push(FoundFile { path, size, ranges });
        }
    }
    Ok(out)
}

fn owned(comps: &[&str]) -> VecDeque<String> {
    comps.iter().map(|c| (*c).to_owned()).collect()
}

/// Resolves `comps` from the directory at the top of `stack`, following symlinks. `None` when
/// a component is missing, not a directory where one is needed, or the hops run out.
fn walk<T: Tree>(
    t: &T,
    root: &T::Node,
    mut stack: Stack<T::Node>,
    mut comps: VecDeque<String>,
    hops: &mut u32,
) -> Result<Option<Stack<T::Node>>> {
    while let Some(c) = comps.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let dir = stack.last().map_or(root, |e| &e.1);
        if t.kind(dir) != Kind::Dir {
            return Ok(None);
        }
        let Some(e) = t.find(dir, &Want::Exact(&c))?.into_iter().next() else {
            return Ok(None);
        };
        if !enter(t, &mut stack, e, &mut comps, hops)? {
            return Ok(None);
        }
    }
    Ok(Some(stack))
}

/// Steps into entry `e`: pushes it, or for a symlink queues its target's components in front
/// of `comps` (from the root when absolute). False when the hops ran out or the target is
/// empty.
fn enter<T: Tree>(
    t: &T,
    stack: &mut Stack<T::Node>,
    e: Entry<T::Node>,
    comps: &mut VecDeque<String>,
    hops: &mut u32,
) -> Result<bool> {
    if t.kind(&e.node) != Kind::Link {
        stack.push((e.name, e.node));
        return Ok(true);
    }
    *hops += 1;
    if *hops > MAX_HOPS {
        return Ok(false);
    }
    let target = t.link_target(&e.node)?;
    if target.is_empty() {
        return Ok(false);
    }
    if target.first() == Some(&b'/') {
        stack.clear();
    }
    for c in String::from_utf8_lossy(&target).split('/').rev() {
        comps.push_front(c.to_owned());
    }
    Ok(true)
}

/// Pushes `(start, len)` onto `out`, merging with the last range when they touch.
fn push_range(out: &mut Vec<(u64, u64)>, start: u64, len: u64) {
    if len == 0 {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.0 + last.1 == start {
            last.1 += len;
            return;
        }
    }
    out.push((start, len));
}

// ---------------------------------------------------------------------------------------------
// ext2/3/4

const S_IFMT: u16 = 0xF000;
const S_IFDIR: u16 = 0x4000;
const S_IFREG: u16 = 0x8000;
const S_IFLNK: u16 = 0xA000;
const EXT4_HUGE_FILE_FL: u32 = 0x4_0000;
const EXT4_EXTENTS_FL: u32 = 0x8_0000;
const EXT4_INLINE_DATA_FL: u32 = 0x1000_0000;
const EXT4_ROOT_INO: u64 = 2;
const EXTENT_MAGIC: u16 = 0xF30A;
const MAX_EXTENT_DEPTH: u16 = 5;
/// Bytes of block map or extent root in the inode (`i_block`).
const I_BLOCK_LEN: usize = 60;

/// An ext filesystem being read.
struct ExtTree<'a> {
    dev: &'a dyn BlockDev,
    l: ext::Layout,
}

/// An inode: its number and its on-disk bytes.
#[derive(Clone)]
struct Inode {
    ino: u64,
    raw: Vec<u8>,
}

impl Inode {
    fn mode(&self) -> u16 {
        le16(&self.raw, 0).unwrap_or(0)
    }
    fn size(&self) -> u64 {
        let lo = u64::from(le32(&self.raw, 0x04).unwrap_or(0));
        let hi = u64::from(le32(&self.raw, 0x6C).unwrap_or(0));
        lo | hi << 32
    }
    fn flags(&self) -> u32 {
        le32(&self.raw, 0x20).unwrap_or(0)
    }
    fn i_block(&self) -> &[u8] {
        field(&self.raw, 0x28, I_BLOCK_LEN).unwrap_or(&[])
    }
}

fn ext_bad(why: String) -> Error {
    Error::Filesystem(MapError(why, ext::FAMILY))
}

impl<'a> ExtTree<'a> {
    fn open(dev: &'a dyn BlockDev) -> Result<Self> {
        let l = ext::Layout::read(dev)?.map_err(Error::Filesystem)?;
        let (isz, block, ipg) = (l.inode_size, l.geo.block, l.inodes_per_group);
        if !isz.is_power_of_two() || !(128..=block).contains(&isz) {
            return Err(ext_bad(format!("inode size {isz}")));
        }
        if ipg == 0 || u64::from(l.sb.inodes_count) > ipg.saturating_mul(l.geo.groups) {
            return Err(ext_bad(format!(
                "{} inodes in {} groups of {ipg}",
                l.sb.inodes_count, l.geo.groups
            )));
        }
        Ok(ExtTree { dev, l })
    }

    fn block(&self) -> u64 {
        self.l.geo.block
    }

    /// Checks that blocks `start..start + n` lie inside the filesystem.
    fn check_blocks(&self, ino: u64, what: &str, start: u64, n: u64) -> Result<()> {
        if start == 0 || start.checked_add(n).is_none_or(|e| e > self.l.blocks) {
            return Err(ext_bad(format!(
                "inode {ino}: {what} at block {start} (+{n}) is outside the filesystem ({} blocks)",
                self.l.blocks
            )));
        }
        Ok(())
    }

    fn read_block(&self, b: u64) -> Result<Vec<u8>> {
        read_vec(self.dev, b * self.block(), self.block() as usize)
    }

    fn inode(&self, ino: u64) -> Result<Inode> {
        let count = u64::from(self.l.sb.inodes_count);
        if ino == 0 || ino > count {
            return Err(ext_bad(format!(
                "inode {ino} is outside the inode table ({count} inodes)"
            )));
        }
        let ipg = self.l.inodes_per_group;
        let (grp, idx) = ((ino - 1) / ipg, (ino - 1) % ipg);
        let desc = self.l.desc(self.dev, grp)?.map_err(Error::Filesystem)?;
        self.check_blocks(
            ino,
            "the inode table",
            desc.itable,
            self.l.geo.itable_blocks,
        )?;
        let off = desc.itable * self.block() + idx * self.l.inode_size;
        Ok(Inode {
            ino,
            raw: read_vec(self.dev, off, self.l.inode_size as usize)?,
        })
    }

    /// The file's mapped blocks `(logical, physical, count)`, sorted by logical block, not
    /// overlapping, cut to the blocks its size covers.
    fn runs(&self, n: &Inode) -> Result<Vec<(u64, u64, u64)>> {
        let nblocks = n.size().div_ceil(self.block());
        let mut runs = Vec::new();
        let mut budget = MAX_TREE_BLOCKS;
        if n.flags() & EXT4_EXTENTS_FL != 0 {
            self.extents(n.ino, n.i_block(), None, nblocks, &mut runs, &mut budget)?;
        } else {
            self.block_map(n, nblocks, &mut runs, &mut budget)?;
        }
        runs.sort_unstable();
        let mut end = 0u64;
        for r in runs.iter_mut() {
            if r.0 < end {
                return Err(ext_bad(format!(
                    "inode {}: block map covers logical block {} twice",
                    n.ino, r.0
                )));
            }
            r.2 = r.2.min(nblocks - r.0);
            end = r.0 + r.2;
        }
        Ok(runs)
    }

    fn add_run(
        &self,
        ino: u64,
        runs: &mut Vec<(u64, u64, u64)>,
        (l, p, n): (u64, u64, u64),
    ) -> Result<()> {
        self.check_blocks(ino, "data", p, n)?;
        if let Some(last) = runs.last_mut() {
            if last.0 + last.2 == l && last.1 + last.2 == p {
                last.2 += n;
                return Ok(());
            }
        }
        if runs.len() >= MAX_EXTENTS {
            return Err(ext_bad(format!(
                "inode {ino}: more than {MAX_EXTENTS} extents"
            )));
        }
        runs.push((l, p, n));
        Ok(())
    }

    fn spend(ino: u64, budget: &mut usize) -> Result<()> {
        *budget = budget.checked_sub(1).ok_or_else(|| {
            ext_bad(format!(
                "inode {ino}: more than {MAX_TREE_BLOCKS} mapping blocks"
            ))
        })?;
        Ok(())
    }

    /// Walks an extent-tree node (`node` is the inode's `i_block` or a tree block).
    fn extents(
        &self,
        ino: u64,
        node: &[u8],
        want_depth: Option<u16>,
        nblocks: u64,
        runs: &mut Vec<(u64, u64, u64)>,
        budget: &mut usize,
    ) -> Result<()> {
        let bad = |what: String| ext_bad(format!("inode {ino}: extent tree {what}"));
        let (Some(magic), Some(entries), Some(max), Some(depth)) =
            (le16(node, 0), le16(node, 2), le16(node, 4), le16(node, 6))
        else {
            return Err(bad("node is too short".into()));
        };
        if magic != EXTENT_MAGIC {
            return Err(bad(format!("node has magic {magic:#06x}")));
        }
        if depth > MAX_EXTENT_DEPTH || want_depth.is_some_and(|d| d != depth) {
            return Err(bad(format!("node has depth {depth}")));
        }
        if entries > max || 12 + 12 * usize::from(entries) > node.len() {
            return Err(bad(format!("node holds {entries} entries of {max}")));
        }
        for i in 0..usize::from(entries) {
            let e = 12 + 12 * i;
            let (Some(a), Some(b), Some(c), Some(d)) = (
                le32(node, e),
                le16(node, e + 4),
                le16(node, e + 6),
                le32(node, e + 8),
            ) else {
                return Err(bad("entry is too short".into()));
            };
            if depth == 0 {
                let (lblk, len, start) = (u64::from(a), b, u64::from(c) << 32 | u64::from(d));
                // above 32768 the extent is uninitialised: allocated, but not data
                if len == 0 || len > 32768 || lblk >= nblocks {
                    continue;
                }
                self.add_run(ino, runs, (lblk, start, u64::from(len)))?;
            } else {
                if u64::from(a) >= nblocks {
                    continue;
                }
                // ei_leaf_lo (32 bits at +4) and ei_leaf_hi (16 bits at +8)
                let lo = u64::from(b) | u64::from(c) << 16;
                let leaf = lo | u64::from(d & 0xFFFF) << 32;
                self.check_blocks(ino, "an extent-tree block", leaf, 1)?;
                Self::spend(ino, budget)?;
                let child = self.read_block(leaf)?;
                self.extents(ino, &child, Some(depth - 1), nblocks, runs, budget)?;
            }
        }
        Ok(())
    }

    /// Walks the ext2/3 block map: 12 direct pointers, then single, double and triple
    /// indirect blocks.
    fn block_map(
        &self,
        n: &Inode,
        nblocks: u64,
        runs: &mut Vec<(u64, u64, u64)>,
        budget: &mut usize,
    ) -> Result<()> {
        let ib = n.i_block();
        let ptr = |i: usize| u64::from(le32(ib, 4 * i).unwrap_or(0));
        for i in 0..12 {
            let p = ptr(i);
            if (i as u64) < nblocks && p != 0 {
                self.add_run(n.ino, runs, (i as u64, p, 1))?;
            }
        }
        let per = self.block() / 4;
        let mut base = 12u64;
        for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
            if base >= nblocks {
                break;
            }
            let p = ptr(slot);
            if p != 0 {
                self.indirect(n.ino, p, level, base, nblocks, runs, budget)?;
            }
            base = base.saturating_add(per.saturating_pow(level));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn indirect(
        &self,
        ino: u64,
        block: u64,
        level: u32,
        base: u64,
        nblocks: u64,
        runs: &mut Vec<(u64, u64, u64)>,
        budget: &mut usize,
    ) -> Result<()> {
        self.check_blocks(ino, "an indirect block", block, 1)?;
        Self::spend(ino, budget)?;
        let buf = self.read_block(block)?;
        let per = self.block() / 4;
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
                self.add_run(ino, runs, (l, p, 1))?;
            } else {
                self.indirect(ino, p, level - 1, l, nblocks, runs, budget)?;
            }
        }
        Ok(())
    }

    /// The bytes of a file whose size is small enough to hold (directories, symlinks).
    fn contents(&self, n: &Inode, limit: u64, what: &str) -> Result<Vec<u8>> {
        let size = n.size();
        if size > limit {
            return Err(ext_bad(format!(
                "inode {}: {what} of {size} bytes (more than {limit})",
                n.ino
            )));
        }
        if n.flags() & EXT4_INLINE_DATA_FL != 0 {
            let mut v = n.i_block().to_vec();
            v.extend(self.inline_xattr(n).unwrap_or_default());
            v.truncate(size as usize);
            return Ok(v);
        }
        let mut out = vec![0u8; size as usize];
        let bs = self.block();
        for (l, p, cnt) in self.runs(n)? {
            for k in 0..cnt {
                let at = ((l + k) * bs) as usize;
                let take = (bs as usize).min(out.len().saturating_sub(at));
                if take == 0 {
                    break;
                }
                self.dev.read_at(&mut out[at..at + take], (p + k) * bs)?;
            }
        }
        Ok(out)
    }

    /// The value of the in-inode `system.data` extended attribute: the part of inline data
    /// beyond `i_block`.
    fn inline_xattr(&self, n: &Inode) -> Option<Vec<u8>> {
        let extra = u64::from(le16(&n.raw, 0x80)?);
        let start = usize::try_from(128 + extra).ok()?;
        if le32(&n.raw, start)? != 0xEA02_0000 {
            return None;
        }
        let first = start + 4;
        let mut e = first;
        // each entry takes at least 16 bytes, so this ends
        while e + 16 <= n.raw.len() && le32(&n.raw, e)? != 0 {
            let name_len = usize::from(byte(&n.raw, e)?);
            let index = byte(&n.raw, e + 1)?;
            let offs = usize::from(le16(&n.raw, e + 2)?);
            let size = usize::try_from(le32(&n.raw, e + 8)?).ok()?;
            if index == 7 && field(&n.raw, e + 16, name_len)? == b"data" {
                return field(&n.raw, first + offs, size).map(<[u8]>::to_vec);
            }
            e += (16 + name_len + 3) & !3;
        }
        None
    }
}

/// Feeds the entries of directory bytes `buf` (inline data or one block) to `visit`, until it
/// returns true; returns whether it did.
fn ext_dirents(ino: u64, buf: &[u8], visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<bool> {
    let mut pos = 0usize;
    while pos + 8 <= buf.len() {
        let bad = |what: String| {
            ext_bad(format!(
                "directory inode {ino}: entry at byte {pos} has {what}"
            ))
        };
        let child = u64::from(le32(buf, pos).unwrap_or(0));
        let raw_len = usize::from(le16(buf, pos + 4).unwrap_or(0));
        // 64 KiB blocks store a whole-block record as 0 or 65535
        let rec = if buf.len() == 65536 && (raw_len == 0 || raw_len == 65535) {
            65536
        } else {
            raw_len
        };
        if rec < 8 || rec % 4 != 0 || pos + rec > buf.len() {
            return Err(bad(format!("record length {raw_len}")));
        }
        if child != 0 {
            let name_len = usize::from(byte(buf, pos + 6).unwrap_or(0));
            if 8 + name_len > rec {
                return Err(bad(format!("a name of {name_len} bytes")));
            }
            let name = field(buf, pos + 8, name_len).unwrap_or(&[]);
            if name != b"." && name != b".." && !name.is_empty() && visit(child, name) {
                return Ok(true);
            }
        }
        pos += rec;
    }
    Ok(false)
}

impl Tree for ExtTree<'_> {
    type Node = Inode;

    fn root(&self) -> Result<Inode> {
        self.inode(EXT4_ROOT_INO)
    }

    fn kind(&self, n: &Inode) -> Kind {
        match n.mode() & S_IFMT {
            S_IFDIR => Kind::Dir,
            S_IFREG => Kind::File,
            S_IFLNK => Kind::Link,
            _ => Kind::Other,
        }
    }

    fn find(&self, dir: &Inode, want: &Want) -> Result<Vec<Entry<Inode>>> {
        let mut hits: Vec<(u64, String)> = Vec::new();
        // true once an exact lookup has its entry
        let mut visit = |child: u64, name: &[u8]| {
            let ok = match want {
                Want::Exact(w) => name == w.as_bytes(),
                Want::Prefix(p) => name.starts_with(p.as_bytes()),
            };
            if ok {
                hits.push((child, String::from_utf8_lossy(name).into_owned()));
            }
            ok && matches!(want, Want::Exact(_))
        };
        if dir.flags() & EXT4_INLINE_DATA_FL != 0 {
            // i_block: the parent's inode number, then entries; the attribute holds the rest
            let data = self.contents(dir, MAX_DIR_BYTES, "a directory")?;
            let head = data.len().min(I_BLOCK_LEN);
            if !ext_dirents(dir.ino, data.get(4..head).unwrap_or(&[]), &mut visit)? {
                ext_dirents(dir.ino, data.get(head..).unwrap_or(&[]), &mut visit)?;
            }
        } else {
            if dir.size() > MAX_DIR_BYTES {
                return Err(ext_bad(format!(
                    "directory inode {} of {} bytes (more than {MAX_DIR_BYTES})",
                    dir.ino,
                    dir.size()
                )));
            }
            'runs: for (_, p, cnt) in self.runs(dir)? {
                for k in 0..cnt {
                    let block = self.read_block(p + k)?;
                    if ext_dirents(dir.ino, &block, &mut visit)? {
                        break 'runs;
                    }
                }
            }
        }
        hits.into_iter()
            .map(|(ino, name)| {
                Ok(Entry {
                    name,
                    node: self.inode(ino)?,
                })
            })
            .collect()
    }

    fn link_target(&self, n: &Inode) -> Result<Vec<u8>> {
        let size = n.size();
        let flags = n.flags();
        let file_acl = u64::from(le32(&n.raw, 0x68).unwrap_or(0))
            | u64::from(le16(&n.raw, 0x76).unwrap_or(0)) << 32;
        let ea_blocks = match (file_acl, flags & EXT4_HUGE_FILE_FL != 0) {
            (0, _) => 0,
            (_, true) => 1,
            (_, false) => self.block() / 512,
        };
        let blocks = u64::from(le32(&n.raw, 0x1C).unwrap_or(0));
        if flags & EXT4_INLINE_DATA_FL == 0 && blocks == ea_blocks {
            // a fast symlink: the target is in i_block
            if size >= I_BLOCK_LEN as u64 {
                return Err(ext_bad(format!(
                    "inode {}: fast symlink of {size} bytes",
                    n.ino
                )));
            }
            return Ok(n.i_block()[..size as usize].to_vec());
        }
        self.contents(n, MAX_LINK_BYTES, "a symlink")
    }

    fn data(&self, n: &Inode) -> Result<(u64, Vec<(u64, u64)>)> {
        let size = n.size();
        if n.flags() & EXT4_INLINE_DATA_FL != 0 {
            return Ok((size, Vec::new()));
        }
        let bs = self.block();
        let mut out = Vec::new();
        for (l, p, cnt) in self.runs(n)? {
            let start = l * bs;
            let len = (cnt * bs).min(size - start);
            push_range(&mut out, p * bs, len);
        }
        Ok((size, out))
    }
}

// ---------------------------------------------------------------------------------------------
// FAT12/16/32

/// A FAT volume being read.
struct FatTree<'a> {
    dev: &'a dyn BlockDev,
    geo: fat::Geometry,
    /// FAT32's root directory cluster.
    root_cluster: u32,
}

/// A FAT file or directory.
#[derive(Clone)]
struct FatNode {
    dir: bool,
    /// First cluster (0: none, or FAT12/16's fixed root directory when `root`).
    first: u32,
    size: u64,
    /// FAT12/16's fixed root directory.
    fixed_root: bool,
}

fn fat_bad(why: String) -> Error {
    Error::Filesystem(MapError(why, fat::FAMILY))
}

impl<'a> FatTree<'a> {
    fn open(dev: &'a dyn BlockDev) -> Result<Self> {
        let bs = read_vec(dev, 0, 512)?;
        let l = fat::layout(&bs, dev.len()).map_err(fat_bad)?;
        let root_cluster = match l.geo.fat_type {
            fat::FatType::Fat32 => le32(&bs, 0x2C).unwrap_or(0),
            _ => 0,
        };
        Ok(FatTree {
            dev,
            geo: l.geo,
            root_cluster,
        })
    }

    /// The clusters of the chain starting at `start`, at most `limit` of them (fewer when it
    /// ends first), checked for clusters outside the volume, free and bad clusters, and loops.
    fn chain(&self, start: u32, limit: u64) -> Result<Vec<u32>> {
        let t = self.geo.fat_type;
        let (eoc, bad_mark) = match t {
            fat::FatType::Fat12 => (0xFF8, 0xFF7),
            fat::FatType::Fat16 => (0xFFF8, 0xFFF7),
            fat::FatType::Fat32 => (0x0FFF_FFF8, 0x0FFF_FFF7),
        };
        let entries = self.geo.clusters + 2;
        let mut window: Option<(u64, Vec<u8>)> = None;
        let mut chain = Vec::new();
        let mut c = start;
        loop {
            if u64::from(c) < 2 || u64::from(c) >= entries {
                return Err(fat_bad(format!(
                    "cluster chain from {start} reaches cluster {c}, outside the volume"
                )));
            }
            chain.push(c);
            if chain.len() as u64 >= limit {
                break;
            }
            if chain.len() as u64 > self.geo.clusters {
                return Err(fat_bad(format!("cluster chain from {start} loops")));
            }
            let cu = u64::from(c);
            let first = cu - cu % FAT_WINDOW;
            let fresh = !matches!(&window, Some((f, _)) if *f == first);
            if fresh {
                let n = FAT_WINDOW.min(entries - first);
                let (off, len) = t.entry_bytes(first, n);
                let buf = read_vec(self.dev, self.geo.fat_start + off, len as usize)?;
                window = Some((first, buf));
            }
            let next = window
                .as_ref()
                .and_then(|(_, buf)| t.entry(buf, (cu - first) as usize))
                .ok_or_else(|| fat_bad(format!("FAT entry {c} is unreadable")))?;
            if next >= eoc {
                break;
            }
            if next == bad_mark || next == 0 {
                return Err(fat_bad(format!(
                    "cluster chain from {start} reaches a {} cluster ({c} -> {next:#x})",
                    if next == 0 { "free" } else { "bad" }
                )));
            }
            c = next;
        }
        let mut sorted = chain.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(fat_bad(format!("cluster chain from {start} loops")));
        }
        Ok(chain)
    }

    /// The bytes of directory `dir`.
    fn dir_bytes(&self, dir: &FatNode) -> Result<Vec<u8>> {
        let g = &self.geo;
        if dir.fixed_root {
            return read_vec(
                self.dev,
                g.root_start,
                (g.data_start - g.root_start) as usize,
            );
        }
        let max = (FAT_DIR_ENTRIES * 32).div_ceil(g.cluster);
        let chain = self.chain(dir.first, max + 1)?;
        if chain.len() as u64 > max {
            return Err(fat_bad(format!(
                "directory at cluster {} is longer than {FAT_DIR_ENTRIES} entries",
                dir.first
            )));
        }
        let mut out = Vec::with_capacity(chain.len() * g.cluster as usize);
        for c in chain {
            let at = g
                .cluster_offset(c)
                .ok_or_else(|| fat_bad(format!("cluster {c}")))?;
            out.extend(read_vec(self.dev, at, g.cluster as usize)?);
        }
        Ok(out)
    }
}

/// The checksum of an 8.3 name that long-name entries carry.
fn lfn_checksum(short: &[u8]) -> u8 {
    short
        .iter()
        .fold(0u8, |s, &b| s.rotate_right(1).wrapping_add(b))
}

/// An 8.3 name as shown: trailing blanks dropped, the NT lowercase flags (byte 12) applied.
fn short_name(e: &[u8]) -> String {
    let text = |b: &[u8], lower: bool| -> String {
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

impl Tree for FatTree<'_> {
    type Node = FatNode;

    fn root(&self) -> Result<FatNode> {
        Ok(FatNode {
            dir: true,
            first: self.root_cluster,
            size: 0,
            fixed_root: self.geo.fat_type != fat::FatType::Fat32,
        })
    }

    fn kind(&self, n: &FatNode) -> Kind {
        if n.dir {
            Kind::Dir
        } else {
            Kind::File
        }
    }

    fn find(&self, dir: &FatNode, want: &Want) -> Result<Vec<Entry<FatNode>>> {
        let data = self.dir_bytes(dir)?;
        let want_lower = match want {
            Want::Exact(w) | Want::Prefix(w) => w.to_lowercase(),
        };
        let matches = |name: &str| {
            let n = name.to_lowercase();
            match want {
                Want::Exact(_) => n == want_lower,
                Want::Prefix(_) => n.starts_with(&want_lower),
            }
        };
        let mut out = Vec::new();
        // long-name parts by order (1-based), and their checksum
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
                let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
                for (u, off) in units.iter_mut().zip(offsets) {
                    *u = le16(e, off).unwrap_or(0);
                }
                parts[ord - 1] = Some(units);
                continue;
            }
            let long = if !parts.is_empty()
                && parts.iter().all(Option::is_some)
                && lfn_checksum(&e[..11]) == sum
            {
                let units: Vec<u16> = parts
                    .iter()
                    .flatten()
                    .flatten()
                    .copied()
                    .take_while(|&u| u != 0)
                    .collect();
                Some(String::from_utf16_lossy(&units))
            } else {
                None
            };
            parts.clear();
            if attr & 0x08 != 0 || e[0] == b'.' {
                continue; // volume label, "." and ".."
            }
            let short = short_name(e);
            let hit = matches(&short) || long.as_deref().is_some_and(matches);
            if !hit {
                continue;
            }
            let hi = match self.geo.fat_type {
                fat::FatType::Fat32 => u32::from(le16(e, 20).unwrap_or(0)) << 16,
                _ => 0,
            };
            let node = FatNode {
                dir: attr & 0x10 != 0,
                first: hi | u32::from(le16(e, 26).unwrap_or(0)),
                size: u64::from(le32(e, 28).unwrap_or(0)),
                fixed_root: false,
            };
            if node.dir && node.first == 0 {
                return Err(fat_bad(format!("directory {short} has no cluster")));
            }
            out.push(Entry {
                name: long.unwrap_or(short),
                node,
            });
            if matches!(want, Want::Exact(_)) {
                break;
            }
        }
        Ok(out)
    }

    fn link_target(&self, _n: &FatNode) -> Result<Vec<u8>> {
        Err(Error::Unsupported("symlinks on FAT".into()))
    }

    fn data(&self, n: &FatNode) -> Result<(u64, Vec<(u64, u64)>)> {
        let g = &self.geo;
        let mut out = Vec::new();
        if n.size == 0 {
            return Ok((0, out));
        }
        let need = n.size.div_ceil(g.cluster);
        if need > g.clusters {
            return Err(fat_bad(format!(
                "a size of {} bytes is more than the volume holds",
                n.size
            )));
        }
        let chain = self.chain(n.first, need)?;
        if (chain.len() as u64) < need {
            return Err(fat_bad(format!(
                "cluster chain from {} has {} clusters, its size needs {need}",
                n.first,
                chain.len()
            )));
        }
        let mut left = n.size;
        for c in chain {
            let at = g
                .cluster_offset(c)
                .ok_or_else(|| fat_bad(format!("cluster {c}")))?;
            let len = left.min(g.cluster);
            push_range(&mut out, at, len);
            left -= len;
        }
        Ok((n.size, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    #[test]
    fn short_names_and_checksums() {
        let mut e = [b' '; 32];
        e[..11].copy_from_slice(b"VMLINU~10-A");
        e[12] = 0;
        assert_eq!(short_name(&e), "VMLINU~1.0-A");
        e[..11].copy_from_slice(b"\x05BC     TXT");
        e[12] = 0x18;
        assert_eq!(short_name(&e), "\u{e5}bc.txt");
        // the checksum Windows stores for "FOO     BAR" (reference value from the fold)
        let want = b"FOO     BAR"
            .iter()
            .fold(0u8, |s, &b| (((s & 1) << 7) | (s >> 1)).wrapping_add(b));
        assert_eq!(lfn_checksum(b"FOO     BAR"), want);
    }

    #[test]
    fn hostile_dirents_are_errors() {
        let mut seen = Vec::new();
        let mut visit = |ino: u64, name: &[u8]| {
            seen.push((ino, name.to_vec()));
            false
        };
        // record length 0, not a multiple of 4, past the block, and a name longer than it
        for (rec, name_len) in [(0u16, 1u8), (10, 1), (2000, 1), (12, 9)] {
            let mut b = vec![0u8; 1024];
            b[..4].copy_from_slice(&5u32.to_le_bytes());
            b[4..6].copy_from_slice(&rec.to_le_bytes());
            b[6] = name_len;
            assert!(matches!(
                ext_dirents(1, &b, &mut visit),
                Err(Error::Filesystem(_))
            ));
        }
        // a whole-block entry with inode 0 (an htree node) is skipped
        let mut b = vec![0u8; 1024];
        b[4..6].copy_from_slice(&1024u16.to_le_bytes());
        assert!(!ext_dirents(1, &b, &mut visit).unwrap());
        assert!(seen.is_empty());
    }

    #[test]
    fn unknown_filesystems_are_unsupported() {
        let dev = MemDev::new(1 << 20, 512);
        assert!(matches!(
            find_files(&dev, &["/x"]),
            Err(Error::Unsupported(_))
        ));
    }
}
