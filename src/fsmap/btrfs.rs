//! btrfs: recognised by its superblock at 64 KiB (label, UUID, bytes allocated on this device),
//! and mapped by its chunk and extent trees.
//!
//! `used_bytes` is `dev_item.bytes_used`, trusted only when the superblock's crc32c verifies
//! (other checksum types are not checked).
//!
//! The map ([`used_map`]): btrfs addresses everything by *logical* address; the chunk tree maps
//! logical ranges to stripes on devices, and the extent tree lists every allocated extent, data
//! and metadata (every tree block of every tree, the chunk and extent trees included). A block
//! of the device is used when it is:
//! - in the first MiB (boot loaders, the primary superblock), or a superblock mirror (64 MiB,
//!   256 GiB);
//! - a stripe of a chunk holding an extent the extent tree lists (both copies of a DUP chunk);
//! - a block of the chunk, root or extent tree that this reader walked (already listed, kept
//!   twice over).
//!
//! A map is made only when the filesystem proves it:
//! - the primary superblock's magic, place and crc32c verify, its sizes are sane, it does not
//!   claim more bytes than the partition has, and no flag says it is a metadata dump, mid-way
//!   through a change of UUID or checksum, or marked as having errors;
//! - it is the only device of its filesystem (`num_devices` 1, one `DEV_ITEM`, every stripe
//!   on it), and every chunk is `single` or `DUP`;
//! - its tree log is empty (`log_root` 0): writes that were fsync'ed but not committed wait in
//!   the log, in blocks the extent tree does not list, until the next mount replays them;
//! - no balance was left half done, and it uses no incompatible feature this reader does not
//!   know (zoned devices, extent tree v2 and the RAID stripe tree are refused);
//! - every tree block checks: crc32c, its own address, filesystem UUID, owning tree, level,
//!   item count and keys in order inside the range its parent gives it, no block reached
//!   twice; a DUP block whose first copy fails is read from its second;
//! - the chunks do not overlap, logically or on the device, and their stripes add up to the
//!   device's `bytes_used`; every extent lies inside a chunk, and the extents add up to the
//!   superblock's `bytes_used`.
//!
//! Anything else is a [`MapError`] and the partition is copied whole. Checksums other than
//! crc32c (xxhash64, sha256, blake2b) are not verified here, so such filesystems are copied
//! whole too.
//!
//! Units: offsets in bytes; `logical` is a btrfs logical address, `physical` a byte of this
//! device.
//!
//! Layout references: the btrfs on-disk format documentation (superblock, tree block header,
//! item and key pointer layouts, chunk and root items); field offsets are written out below.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{crc32c, text_label, uuid16};
use super::{MapError, MapResult, UsedMap};
use crate::blockdev::{read_clamped, read_vec, BlockDev};
use crate::bytes::{arr, byte, field, has, le16, le32, le64};
use crate::error::Result;
use std::collections::HashSet;

/// btrfs is recognised and mapped.
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

const BTRFS_SB: u64 = 0x1_0000;
const SB_LEN: usize = 4096;

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    // libblkid's minimum size for btrfs
    if dev.len() < 1 << 20 {
        return Ok(None);
    }
    let sb = read_clamped(dev, BTRFS_SB, SB_LEN)?;
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
    if le16(sb, 0xC4)? == 0 && !sb_crc_ok(sb) {
        return None;
    }
    let dev_total = le64(sb, 0xD1)?;
    let dev_used = le64(sb, 0xD9)?;
    (dev_used <= dev_total).then_some(dev_used)
}

/// Whether the superblock's crc32c (over bytes 32..4096, stored at 0) matches.
fn sb_crc_ok(sb: &[u8]) -> bool {
    match (le32(sb, 0), field(sb, 0x20, SB_LEN - 0x20)) {
        (Some(stored), Some(rest)) => crc32c(rest) == stored,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// the used-block map

/// The family name in [`MapError`]s.
const FAMILY: &str = "btrfs";
/// The first MiB, which btrfs never allocates (boot loaders live there), is always kept.
const RESERVED: u64 = 1 << 20;
/// Superblock mirrors past the primary (which lies inside [`RESERVED`]).
const MIRRORS: [u64; 2] = [64 << 20, 256 << 30];
/// A tree's deepest level (btrfs's `BTRFS_MAX_LEVEL` is 8: levels 0 to 7).
const MAX_LEVEL: u8 = 7;
/// Bytes of a tree block header.
const HEADER: usize = 101;
/// Bytes of an item header in a leaf (key, data offset, data size).
const ITEM: usize = 25;
/// Bytes of a key pointer in a node (key, block address, generation).
const KEY_PTR: usize = 33;
/// Bytes of a key: objectid, type, offset.
const KEY: usize = 17;
/// Bytes of a chunk item before its stripes, and of one stripe.
const CHUNK: usize = 48;
const STRIPE: usize = 32;

// tree ids (a block header's owner) and item types
const ROOT_TREE: u64 = 1;
const EXTENT_TREE: u64 = 2;
const CHUNK_TREE: u64 = 3;
const ROOT_ITEM: u8 = 132;
const EXTENT_ITEM: u8 = 168;
const METADATA_ITEM: u8 = 169;
const DEV_ITEM: u8 = 216;
const CHUNK_ITEM: u8 = 228;
/// `BTRFS_BALANCE_OBJECTID` (-4) with `TEMPORARY_ITEM`: a balance was started and not finished.
const BALANCE_OBJECTID: u64 = -4i64 as u64;
const TEMPORARY_ITEM: u8 = 248;

// chunk type bits
const DUP: u64 = 1 << 5;
/// Every profile bit (RAID0, RAID1, DUP, RAID10, RAID5, RAID6, RAID1C3, RAID1C4).
const PROFILES: u64 = 0x7F8;

// superblock flags this map refuses: errors seen, metadata dump (data blocks are missing),
// and every "change in progress"
const SUPER_ERROR: u64 = 1 << 2;
const SUPER_REFUSED: u64 = SUPER_ERROR | (0x1F << 33) | (0x7 << 38);
/// Incompatible features this map reads: mixed backrefs, default subvolume, mixed block groups,
/// lzo and zstd compression, big metadata, extended inode refs, RAID5/6 and RAID1C3/4 (only
/// ever on several devices, refused by their chunks), skinny metadata, no holes, metadata
/// UUID, simple quotas.
const KNOWN_INCOMPAT: u64 =
    0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x1_0000;
/// Read-only-compatible features this map knows: the free space tree (and its valid bit),
/// verity, the block group tree.
const KNOWN_COMPAT_RO: u64 = 0x1 | 0x2 | 0x4 | 0x8;
const INCOMPAT_METADATA_UUID: u64 = 0x400;

fn bad(why: impl Into<String>) -> MapError {
    MapError(why.into(), FAMILY)
}

/// A key: objectid, type, offset (ordered that way, as btrfs orders them).
type Key = (u64, u8, u64);

fn key_at(b: &[u8], at: usize) -> Option<Key> {
    Some((le64(b, at)?, byte(b, at + 8)?, le64(b, at + 9)?))
}

/// What the map needs of the superblock, checked.
struct Super {
    nodesize: u64,
    /// The UUID every tree block header carries (`metadata_uuid` when that feature is on).
    tree_fsid: [u8; 16],
    generation: u64,
    root: u64,
    root_level: u8,
    chunk_root: u64,
    chunk_root_level: u8,
    bytes_used: u64,
    devid: u64,
    dev_total: u64,
    dev_used: u64,
}

fn superblock(dev: &dyn BlockDev, sb: &[u8]) -> std::result::Result<Super, MapError> {
    if !has(sb, 0x40, b"_BHRfS_M") || le64(sb, 0x30) != Some(BTRFS_SB) {
        return Err(bad("the superblock is not valid"));
    }
    if le16(sb, 0xC4) != Some(0) {
        return Err(bad(format!(
            "its checksums are not crc32c (type {}), which this version does not verify",
            le16(sb, 0xC4).unwrap_or(0)
        )));
    }
    if !sb_crc_ok(sb) {
        return Err(bad("the superblock's checksum does not match"));
    }
    let num = |v: Option<u64>| v.unwrap_or(0);
    let flags = num(le64(sb, 0x38));
    if flags & SUPER_REFUSED != 0 {
        return Err(bad(if flags & SUPER_ERROR != 0 {
            "it is marked as having errors (run btrfs check)".to_string()
        } else {
            format!("its superblock flags (0x{flags:x}) say a change was left half done or it is a metadata dump")
        }));
    }
    let incompat = num(le64(sb, 0xBC));
    if incompat & !KNOWN_INCOMPAT != 0 {
        return Err(bad(format!(
            "it uses incompatible features this version does not read (0x{:x})",
            incompat & !KNOWN_INCOMPAT
        )));
    }
    let compat_ro = num(le64(sb, 0xB4));
    if compat_ro & !KNOWN_COMPAT_RO != 0 {
        return Err(bad(format!(
            "it uses features this version does not read (0x{:x})",
            compat_ro & !KNOWN_COMPAT_RO
        )));
    }
    let sectorsize = num(le32(sb, 0x90).map(u64::from));
    let nodesize = num(le32(sb, 0x94).map(u64::from));
    if !(sectorsize.is_power_of_two()
        && (4096..=65536).contains(&sectorsize)
        && nodesize.is_power_of_two()
        && (sectorsize..=65536).contains(&nodesize))
    {
        return Err(bad(format!(
            "its sizes are not valid (sector {sectorsize}, node {nodesize})"
        )));
    }
    if num(le64(sb, 0x88)) != 1 {
        return Err(bad(format!(
            "it spans {} devices; one device of several is copied whole",
            num(le64(sb, 0x88))
        )));
    }
    let s = Super {
        nodesize,
        tree_fsid: if incompat & INCOMPAT_METADATA_UUID != 0 {
            arr(sb, 0x23B)
        } else {
            arr(sb, 0x20)
        }
        .unwrap_or([0; 16]),
        generation: num(le64(sb, 0x48)),
        root: num(le64(sb, 0x50)),
        root_level: byte(sb, 0xC6).unwrap_or(u8::MAX),
        chunk_root: num(le64(sb, 0x58)),
        chunk_root_level: byte(sb, 0xC7).unwrap_or(u8::MAX),
        bytes_used: num(le64(sb, 0x78)),
        devid: num(le64(sb, 0xC9)),
        dev_total: num(le64(sb, 0xD1)),
        dev_used: num(le64(sb, 0xD9)),
    };
    if s.dev_total > dev.len() {
        return Err(bad(format!(
            "it is larger ({} bytes) than its partition ({} bytes)",
            s.dev_total,
            dev.len()
        )));
    }
    if s.root_level > MAX_LEVEL || s.chunk_root_level > MAX_LEVEL {
        return Err(bad("the superblock's tree levels are not valid"));
    }
    Ok(s)
}

/// One chunk: `len` logical bytes from `logical`, stored at each of `stripes` (device bytes).
#[derive(Debug, Clone)]
struct Chunk {
    logical: u64,
    len: u64,
    stripes: Vec<u64>,
}

/// The logical-to-physical map, sorted by logical address.
#[derive(Default)]
struct ChunkMap(Vec<Chunk>);

impl ChunkMap {
    /// The chunk holding logical bytes `logical..logical + len`, if one holds them all.
    fn find(&self, logical: u64, len: u64) -> Option<&Chunk> {
        let i = self
            .0
            .partition_point(|c| c.logical <= logical)
            .checked_sub(1)?;
        let c = &self.0[i];
        let end = logical.checked_add(len)?;
        (end <= c.logical + c.len).then_some(c)
    }

    /// Adds a chunk item (`item`, the data of a `CHUNK_ITEM` at logical `logical`), checking
    /// that it lies on this device only, in a profile this map understands, inside the device.
    fn add(&mut self, s: &Super, logical: u64, item: &[u8]) -> std::result::Result<(), MapError> {
        let len = le64(item, 0).unwrap_or(0);
        let kind = le64(item, 24).unwrap_or(0);
        let n = usize::from(le16(item, 44).unwrap_or(0));
        if len == 0 || n == 0 || item.len() < CHUNK + n * STRIPE {
            return Err(bad(format!("the chunk at {logical} is not valid")));
        }
        let want = if kind & PROFILES == 0 {
            1
        } else if kind & PROFILES == DUP {
            2
        } else {
            return Err(bad(format!(
                "the chunk at {logical} uses a RAID profile (type 0x{kind:x}); its device is copied whole"
            )));
        };
        if n != want {
            return Err(bad(format!(
                "the chunk at {logical} has {n} stripes for its profile"
            )));
        }
        let mut stripes = Vec::with_capacity(n);
        for i in 0..n {
            let at = CHUNK + i * STRIPE;
            let (devid, off) = (le64(item, at).unwrap_or(0), le64(item, at + 8).unwrap_or(0));
            if devid != s.devid {
                return Err(bad(format!(
                    "the chunk at {logical} lies on another device ({devid}); it is copied whole"
                )));
            }
            if off.checked_add(len).is_none_or(|end| end > s.dev_total) || off < RESERVED {
                return Err(bad(format!(
                    "the chunk at {logical} lies outside the device ({off}+{len})"
                )));
            }
            stripes.push(off);
        }
        if logical.checked_add(len).is_none() {
            return Err(bad(format!("the chunk at {logical} is not valid")));
        }
        let c = Chunk {
            logical,
            len,
            stripes,
        };
        let i = self.0.partition_point(|x| x.logical < logical);
        let overlaps = self
            .0
            .get(i)
            .is_some_and(|next| logical + len > next.logical)
            || i.checked_sub(1)
                .and_then(|p| self.0.get(p))
                .is_some_and(|prev| prev.logical + prev.len > logical);
        if overlaps {
            // the superblock's copy of a system chunk is met again in the chunk tree
            if self
                .0
                .get(i)
                .is_some_and(|x| x.logical == c.logical && x.len == c.len && x.stripes == c.stripes)
            {
                return Ok(());
            }
            return Err(bad(format!("the chunk at {logical} overlaps another")));
        }
        self.0.insert(i, c);
        Ok(())
    }

    /// Checks that no two stripes share a device byte and that they add up to `dev_used`.
    fn check_physical(&self, dev_used: u64) -> std::result::Result<(), MapError> {
        let mut all: Vec<(u64, u64)> = self
            .0
            .iter()
            .flat_map(|c| c.stripes.iter().map(move |&s| (s, c.len)))
            .collect();
        all.sort_unstable();
        let mut end = 0;
        for &(s, l) in &all {
            if s < end {
                return Err(bad(format!("two chunks share the device's bytes at {s}")));
            }
            end = s + l;
        }
        let total: u64 = all.iter().map(|x| x.1).sum();
        if total != dev_used {
            return Err(bad(format!(
                "its chunks hold {total} bytes of the device, its superblock says {dev_used}"
            )));
        }
        Ok(())
    }
}

/// What a tree walk calls for each leaf item: the chunk map (which the chunk tree's walk grows),
/// the item's key and its data.
type Visit<'a> = dyn FnMut(&mut ChunkMap, Key, &[u8]) -> std::result::Result<(), MapError> + 'a;

/// Walks trees block by block, checking each, and remembers every block it read.
struct Walker<'a> {
    dev: &'a dyn BlockDev,
    s: &'a Super,
    seen: HashSet<u64>,
}

impl Walker<'_> {
    /// Reads the tree block at `logical` through `chunks`, from the first copy whose checksum
    /// and header verify.
    fn block(
        &self,
        chunks: &ChunkMap,
        logical: u64,
        owner: u64,
        level: u8,
    ) -> Result<std::result::Result<Vec<u8>, MapError>> {
        let ns = self.s.nodesize;
        let Some(c) = chunks.find(logical, ns) else {
            return Ok(Err(bad(format!(
                "tree block {logical} lies outside every chunk"
            ))));
        };
        let mut why = None;
        for &stripe in &c.stripes {
            let b = read_vec(self.dev, stripe + (logical - c.logical), ns as usize)?;
            match self.check(&b, logical, owner, level) {
                Ok(()) => return Ok(Ok(b)),
                // the first copy's fault is the one named
                Err(e) => why = why.or(Some(e)),
            }
        }
        let why = why.unwrap_or_default();
        Ok(Err(bad(format!("tree block {logical} {why}"))))
    }

    fn check(
        &self,
        b: &[u8],
        logical: u64,
        owner: u64,
        level: u8,
    ) -> std::result::Result<(), String> {
        let stored = le32(b, 0);
        if stored.is_none() || field(b, 0x20, b.len() - 0x20).map(crc32c) != stored {
            return Err("has a checksum that does not match".into());
        }
        if le64(b, 0x30) != Some(logical) {
            return Err("records another address".into());
        }
        if field(b, 0x20, 16) != Some(&self.s.tree_fsid[..]) {
            return Err("belongs to another filesystem".into());
        }
        if le64(b, 0x58) != Some(owner) {
            return Err(format!(
                "belongs to tree {} (not {owner})",
                le64(b, 0x58).unwrap_or(0)
            ));
        }
        if le64(b, 0x50).is_none_or(|g| g > self.s.generation) {
            return Err("is newer than the superblock".into());
        }
        if byte(b, 0x64) != Some(level) {
            return Err(format!("is not at level {level}"));
        }
        Ok(())
    }

    /// Visits every leaf item of the tree rooted at `root` (level `level`, owned by `owner`)
    /// in key order: `visit(key, data)`. Chunks may grow while the chunk tree is walked, so
    /// `visit` gets the map to add to.
    fn walk(
        &mut self,
        chunks: &mut ChunkMap,
        owner: u64,
        root: u64,
        level: u8,
        visit: &mut Visit<'_>,
    ) -> Result<std::result::Result<(), MapError>> {
        let ns = self.s.nodesize as usize;
        let leaf_max = (ns - HEADER) / ITEM;
        let node_max = (ns - HEADER) / KEY_PTR;
        // (block, level, lowest key allowed, first key above the range)
        let mut stack: Vec<(u64, u8, Key, Option<Key>)> = vec![(root, level, (0, 0, 0), None)];
        while let Some((logical, level, lo, hi)) = stack.pop() {
            if !self.seen.insert(logical) {
                return Ok(Err(bad(format!("tree block {logical} is reached twice"))));
            }
            let b = try_map!(self.block(chunks, logical, owner, level)?);
            let n = le32(&b, 0x60).map_or(usize::MAX, |n| n as usize);
            let max = if level == 0 { leaf_max } else { node_max };
            if n > max || (n == 0 && level > 0) {
                return Ok(Err(bad(format!(
                    "tree block {logical} holds {n} items, more than fit"
                ))));
            }
            let step = if level == 0 { ITEM } else { KEY_PTR };
            let keys: Vec<Key> = (0..n)
                .filter_map(|i| key_at(&b, HEADER + i * step))
                .collect();
            let ordered = keys.windows(2).all(|w| w[0] < w[1])
                && keys.first().is_none_or(|k| *k >= lo)
                && keys.last().is_none_or(|k| hi.is_none_or(|h| *k < h));
            if keys.len() != n || !ordered {
                return Ok(Err(bad(format!(
                    "tree block {logical}'s keys are out of order"
                ))));
            }
            if level == 0 {
                for (i, &k) in keys.iter().enumerate() {
                    let at = HEADER + i * ITEM + KEY;
                    let (off, size) = (
                        le32(&b, at).map_or(usize::MAX, |v| v as usize),
                        le32(&b, at + 4).map_or(usize::MAX, |v| v as usize),
                    );
                    let data = off
                        .checked_add(size)
                        .filter(|&end| end <= ns - HEADER)
                        .and_then(|_| field(&b, HEADER + off, size));
                    let Some(data) = data else {
                        return Ok(Err(bad(format!(
                            "tree block {logical}'s item {i} lies outside the block"
                        ))));
                    };
                    try_map!(visit(chunks, k, data));
                }
            } else {
                // children right to left, so the leftmost is visited first
                for i in (0..n).rev() {
                    let child = le64(&b, HEADER + i * KEY_PTR + KEY).unwrap_or(0);
                    let child_hi = keys.get(i + 1).copied().or(hi);
                    stack.push((child, level - 1, keys[i], child_hi));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// The bootstrap chunks in the superblock's `sys_chunk_array`: enough of the map to read the
/// chunk tree.
fn sys_chunks(s: &Super, sb: &[u8]) -> std::result::Result<ChunkMap, MapError> {
    let size = le32(sb, 0xA0).map_or(0, |v| v as usize);
    let Some(array) = field(sb, 0x32B, size).filter(|_| size <= 2048) else {
        return Err(bad("the superblock's system chunk array is not valid"));
    };
    let mut map = ChunkMap::default();
    let mut at = 0;
    while at < array.len() {
        let key = key_at(array, at).ok_or_else(|| bad("the system chunk array is cut short"))?;
        let n = usize::from(le16(array, at + KEY + 44).unwrap_or(0));
        let item = field(array, at + KEY, CHUNK + n * STRIPE)
            .ok_or_else(|| bad("the system chunk array is cut short"))?;
        if key.1 != CHUNK_ITEM {
            return Err(bad(
                "the system chunk array holds something else than chunks",
            ));
        }
        map.add(s, key.2, item)?;
        at += KEY + item.len();
    }
    if map.0.is_empty() {
        return Err(bad("the superblock's system chunk array is empty"));
    }
    Ok(map)
}

/// The used-block map of the btrfs filesystem on `dev` (see the module docs).
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    let sb = read_vec(dev, BTRFS_SB, SB_LEN)?;
    let s = try_map!(superblock(dev, &sb));
    if le64(&sb, 0x60).is_some_and(|log| log != 0) {
        return Ok(Ok(UsedMap {
            ranges: vec![(0, dev.len())],
            reason_unsafe: Some(
                "its tree log holds writes not yet committed (it was not cleanly unmounted); \
                 mount it once to replay them"
                    .into(),
            ),
        }));
    }
    let mut chunks = try_map!(sys_chunks(&s, &sb));
    let mut w = Walker {
        dev,
        s: &s,
        seen: HashSet::new(),
    };

    // the chunk tree: every chunk, and the one device
    let mut devices = Vec::new();
    try_map!(w.walk(
        &mut chunks,
        CHUNK_TREE,
        s.chunk_root,
        s.chunk_root_level,
        &mut |map, key, data| {
            match key.1 {
                CHUNK_ITEM => map.add(&s, key.2, data)?,
                DEV_ITEM => devices.push(key.2),
                _ => {}
            }
            Ok(())
        }
    )?);
    if devices != [s.devid] {
        return Ok(Err(bad(format!(
            "its chunk tree lists devices {devices:?}; one device of several is copied whole"
        ))));
    }
    try_map!(chunks.check_physical(s.dev_used));

    // the root tree: where the extent tree is, and whether a balance is pending
    let mut extent_root = None;
    let mut balance = false;
    try_map!(w.walk(
        &mut chunks,
        ROOT_TREE,
        s.root,
        s.root_level,
        &mut |_, key, data| {
            if key == (EXTENT_TREE, ROOT_ITEM, 0) {
                // root item: bytenr at 176, level at 238
                match (le64(data, 176), byte(data, 238)) {
                    (Some(b), Some(l)) if l <= MAX_LEVEL => extent_root = Some((b, l)),
                    _ => return Err(bad("the extent tree's root item is not valid")),
                }
            }
            balance |= key.0 == BALANCE_OBJECTID && key.1 == TEMPORARY_ITEM;
            Ok(())
        }
    )?);
    if balance {
        return Ok(Err(bad(
            "a balance was left unfinished (resume or cancel it first)",
        )));
    }
    let Some((eroot, elevel)) = extent_root else {
        return Ok(Err(bad("its root tree has no extent tree")));
    };

    // the extent tree: every allocated logical range
    let mut logical: Vec<(u64, u64)> = Vec::new();
    let ns = s.nodesize;
    try_map!(w.walk(
        &mut chunks,
        EXTENT_TREE,
        eroot,
        elevel,
        &mut |map, key, _| {
            let len = match key.1 {
                EXTENT_ITEM => key.2,
                METADATA_ITEM => ns,
                _ => return Ok(()),
            };
            if len == 0 || map.find(key.0, len).is_none() {
                return Err(bad(format!(
                    "the extent at {}+{len} lies outside every chunk",
                    key.0
                )));
            }
            if logical.last().is_some_and(|&(s, l)| s + l > key.0) {
                return Err(bad(format!("extents overlap at {}", key.0)));
            }
            logical.push((key.0, len));
            Ok(())
        }
    )?);
    let total: u64 = logical.iter().map(|e| e.1).sum();
    if total != s.bytes_used {
        return Ok(Err(bad(format!(
            "its extents add up to {total} bytes, its superblock says {}",
            s.bytes_used
        ))));
    }

    // to device bytes: the fixed areas, the extents' stripes, and every tree block read
    let mut phys: Vec<(u64, u64)> = vec![(0, RESERVED.min(dev.len()))];
    for m in MIRRORS {
        if m + SB_LEN as u64 <= s.dev_total {
            phys.push((m, SB_LEN as u64));
        }
    }
    let tree_blocks = w.seen.iter().map(|&b| (b, ns));
    for (start, len) in logical.iter().copied().chain(tree_blocks) {
        // every extent was checked against the chunks above, and every tree block was read
        // through them
        if let Some(c) = chunks.find(start, len) {
            for &stripe in &c.stripes {
                phys.push((stripe + (start - c.logical), len));
            }
        }
    }
    phys.sort_unstable();
    let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(phys.len());
    for (s, l) in phys {
        match ranges.last_mut() {
            Some(last) if s <= last.0 + last.1 => {
                last.1 = last.1.max(s + l - last.0);
            }
            _ => ranges.push((s, l)),
        }
    }
    Ok(Ok(UsedMap {
        ranges,
        reason_unsafe: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;
    use std::process::Command;

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

    /// A 300 MiB image made by `mkfs.btrfs --rootdir` (no mount needed) from `n` files of
    /// assorted sizes (0 to 200 KiB) in two folders, with `extra` mkfs options.
    fn image(n: usize, extra: &[&str]) -> Option<Img> {
        let mkfs = tool("mkfs.btrfs")?;
        tool("btrfs")?;
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        let mut rng = Rng(0xb7f5 ^ n as u64);
        for i in 0..n {
            let len = match rng.below(4) {
                0 => 0,
                1 => rng.below(3000),
                2 => rng.below(64 << 10),
                _ => rng.below(200 << 10),
            };
            let dir = if i % 3 == 0 { "" } else { "sub/" };
            std::fs::write(
                src.path().join(format!("{dir}f{i}")),
                rng.bytes(len as usize),
            )
            .unwrap();
        }
        let img = sparse(300 << 20);
        output(
            Command::new(mkfs)
                .args(["-q", "-f", "--rootdir"])
                .arg(src.path())
                .args(extra)
                .arg(&img.path),
        );
        Some(img)
    }

    fn dump(img: &std::path::Path, args: &[&str]) -> String {
        output(
            Command::new(tool("btrfs").unwrap())
                .arg("inspect-internal")
                .args(args)
                .arg(img),
        )
    }

    /// The numbers of a line, e.g. "stripe 0 devid 1 offset 13631488" → [0, 1, 13631488].
    fn numbers(line: &str) -> Vec<u64> {
        line.split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect()
    }

    /// The used device bytes btrfs-progs' own dump of the chunk and extent trees gives: the
    /// first MiB, the 64 MiB mirror, and every extent at each of its chunk's stripes.
    fn oracle(img: &std::path::Path) -> Vec<(u64, u64)> {
        let sup = dump(img, &["dump-super"]);
        let nodesize = kv(&sup, "nodesize");
        let total = kv(&sup, "dev_item.total_bytes");
        // (logical, len, stripe offsets)
        let mut chunks: Vec<(u64, u64, Vec<u64>)> = Vec::new();
        for line in dump(img, &["dump-tree", "-t", "chunk"]).lines() {
            let l = line.trim();
            if let Some(rest) = l.split(" CHUNK_ITEM ").nth(1) {
                chunks.push((numbers(rest)[0], 0, Vec::new()));
            } else if l.starts_with("length ") {
                chunks.last_mut().unwrap().1 = numbers(l)[0];
            } else if l.starts_with("stripe ") {
                chunks
                    .last_mut()
                    .unwrap()
                    .2
                    .push(*numbers(l).last().unwrap());
            }
        }
        let mut used = vec![(0, 1 << 20)];
        if (64 << 20) + 4096 <= total {
            used.push((64 << 20, 4096));
        }
        for line in dump(img, &["dump-tree", "-t", "extent"]).lines() {
            let l = line.trim();
            let (start, len) = if l.contains(" EXTENT_ITEM ") {
                let n = numbers(l.split("key").nth(1).unwrap());
                (n[0], n[1])
            } else if l.contains(" METADATA_ITEM ") {
                (numbers(l.split("key").nth(1).unwrap())[0], nodesize)
            } else {
                continue;
            };
            let c = chunks
                .iter()
                .find(|c| c.0 <= start && start < c.0 + c.1)
                .expect("every extent is in a chunk");
            for s in &c.2 {
                used.push((s + start - c.0, len));
            }
        }
        used.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, l) in used {
            match out.last_mut() {
                Some(last) if s <= last.0 + last.1 => last.1 = last.1.max(s + l - last.0),
                _ => out.push((s, l)),
            }
        }
        out
    }

    fn map_of(path: &std::path::Path) -> MapResult<UsedMap> {
        map_file(path, used_map)
    }

    #[test]
    fn btrfs_maps_match_the_chunk_and_extent_trees_btrfs_progs_dumps() {
        let cases: [(&str, usize, &[&str]); 5] = [
            ("default (DUP metadata)", 300, &[]),
            ("single metadata", 300, &["-m", "single"]),
            ("mixed block groups", 200, &["-M"]),
            ("64 KiB nodes", 200, &["-n", "65536"]),
            // 4 KiB nodes and many files: trees of more than one level
            ("4 KiB nodes, deep trees", 1500, &["-n", "4096"]),
        ];
        for (name, n, extra) in cases {
            let Some(img) = image(n, extra) else { return };
            let m = map_of(&img.path)
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.reason_unsafe, None, "{name}");
            assert_eq!(m.ranges, oracle(&img.path), "{name}");
            let used: u64 = m.ranges.iter().map(|r| r.1).sum();
            assert!(used > 5 << 20 && used < 200 << 20, "{name}: {used} used");
            if name.contains("deep") {
                let text = dump(&img.path, &["dump-tree", "-t", "extent"]);
                assert!(
                    text.contains(" level 1 "),
                    "{name}: the extent tree is one leaf"
                );
            }
        }
    }

    /// Rewrites the superblock field at `at` and its checksum.
    fn patch_super(img: &std::path::Path, at: usize, bytes: &[u8]) {
        let mut sb = read_prefix(img, BTRFS_SB + SB_LEN as u64)[BTRFS_SB as usize..].to_vec();
        sb[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c(&sb[0x20..]);
        sb[..4].copy_from_slice(&crc.to_le_bytes());
        patch(img, BTRFS_SB, &sb);
    }

    /// Device offsets of every copy of logical `logical`, from `btrfs-map-logical`.
    fn copies(img: &std::path::Path, logical: u64) -> Vec<u64> {
        let out = output(
            Command::new(tool("btrfs-map-logical").unwrap())
                .args(["-l", &logical.to_string()])
                .arg(img),
        );
        out.lines()
            .filter(|l| l.starts_with("mirror"))
            .map(|l| numbers(l.split("physical").nth(1).unwrap())[0])
            .collect()
    }

    /// Rewrites `bytes` at `at` inside the tree block at device offset `block` and reseals its
    /// checksum, so only the change itself can be caught.
    fn patch_block(img: &std::path::Path, block: u64, nodesize: usize, at: usize, bytes: &[u8]) {
        let mut b = read_prefix(img, block + nodesize as u64)[block as usize..].to_vec();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        let crc = crc32c(&b[0x20..]);
        b[..4].copy_from_slice(&crc.to_le_bytes());
        patch(img, block, &b);
    }

    fn refused(img: &std::path::Path, says: &str) {
        assert_refused(img, used_map, says);
    }

    /// The logical address of the extent tree's root, from the dump.
    fn extent_root(img: &std::path::Path) -> u64 {
        let text = dump(img, &["dump-tree", "-t", "extent"]);
        let line = text
            .lines()
            .find(|l| l.starts_with("node ") || l.starts_with("leaf "))
            .unwrap();
        numbers(line)[0]
    }

    #[test]
    fn damaged_or_lying_btrfs_superblocks_are_refused_with_the_reason() {
        let Some(img) = image(60, &[]) else { return };
        let p = &img.path;
        let sb = read_prefix(p, BTRFS_SB + SB_LEN as u64)[BTRFS_SB as usize..].to_vec();
        let restore = || patch(p, BTRFS_SB, &sb);
        let field64 = |at: usize| le64(&sb, at).unwrap();

        patch(p, BTRFS_SB + 0x100, &[sb[0x100] ^ 1]);
        refused(p, "checksum");
        restore();
        patch_super(p, 0x88, &2u64.to_le_bytes());
        refused(p, "2 devices");
        restore();
        patch_super(p, 0x78, &(field64(0x78) + 4096).to_le_bytes());
        refused(p, "add up");
        restore();
        patch_super(p, 0xD9, &(field64(0xD9) + 4096).to_le_bytes());
        refused(p, "chunks hold");
        restore();
        patch_super(p, 0xBC, &(field64(0xBC) | 0x1000).to_le_bytes());
        refused(p, "incompatible");
        restore();
        patch_super(p, 0x38, &(field64(0x38) | SUPER_ERROR).to_le_bytes());
        refused(p, "errors");
        restore();
        patch_super(p, 0xC4, &1u16.to_le_bytes());
        refused(p, "not crc32c");
        restore();
        // a tree log waiting to be replayed: everything is kept
        patch_super(p, 0x60, &(field64(0x50)).to_le_bytes());
        let m = map_of(p).unwrap().unwrap();
        assert!(m.reason_unsafe.unwrap().contains("tree log"));
        restore();
        // a filesystem larger than its partition
        let bytes = std::fs::read(p).unwrap();
        let e = used_map(&BytesDev(&bytes[..200 << 20]))
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("larger"), "{e}");
        assert!(map_of(p).unwrap().is_ok(), "the image is whole again");
    }

    #[test]
    fn damaged_or_lying_btrfs_trees_are_refused_and_a_good_dup_copy_is_used() {
        let Some(img) = image(1500, &["-n", "4096"]) else {
            return;
        };
        let p = &img.path;
        let ns = 4096usize;
        let want = map_of(p).unwrap().unwrap();
        let root = extent_root(p);
        let [first, second] = copies(p, root)[..] else {
            panic!("the extent tree's root is not DUP");
        };
        let orig = read_prefix(p, first + ns as u64)[first as usize..].to_vec();
        let orig2 = read_prefix(p, second + ns as u64)[second as usize..].to_vec();
        assert!(orig[0x64] >= 1, "the extent tree's root is a node");

        // one bad copy: the other is read, and the map is the same
        patch(p, first + 200, &[orig[200] ^ 0x10]);
        assert_eq!(map_of(p).unwrap().unwrap(), want);
        // both bad
        patch(p, second + 200, &[orig2[200] ^ 0x10]);
        refused(p, "checksum");
        patch(p, second, &orig2);

        // from here on the first copy lies, resealed, and the second is broken, so the lie
        // is what is read
        patch(p, second + 200, &[orig2[200] ^ 0x10]);
        let ptr = |i: usize| HEADER + i * KEY_PTR + KEY;
        // a node whose second child is its first: a loop
        patch(p, first, &orig);
        patch_block(p, first, ns, ptr(1), &orig[ptr(0)..ptr(0) + 8]);
        refused(p, "twice");
        // a huge fan-out
        patch(p, first, &orig);
        patch_block(p, first, ns, 0x60, &60000u32.to_le_bytes());
        refused(p, "more than fit");
        // keys out of order
        patch(p, first, &orig);
        patch_block(p, first, ns, HEADER, &u64::MAX.to_le_bytes());
        refused(p, "out of order");
        // a block claiming another address
        patch(p, first, &orig);
        patch_block(p, first, ns, 0x30, &(root + 4096).to_le_bytes());
        refused(p, "address");
        // a child outside every chunk
        patch(p, first, &orig);
        patch_block(p, first, ns, ptr(0), &(1u64 << 50).to_le_bytes());
        refused(p, "outside every chunk");

        patch(p, first, &orig);
        patch(p, second, &orig2);
        assert_eq!(
            map_of(p).unwrap().unwrap(),
            want,
            "the image is whole again"
        );
    }

    #[test]
    fn fuzzed_btrfs_metadata_never_panics() {
        let Some(img) = image(300, &["-m", "single", "-n", "4096"]) else {
            return;
        };
        fuzz_map(&img.path, used_map, 400, 0xB7F5);
    }
}
