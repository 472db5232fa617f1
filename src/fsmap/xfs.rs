//! XFS: recognised by its big-endian superblock at byte 0 (label, UUID, used bytes), and
//! mapped by its free-space B+trees.
//!
//! `used_bytes` is (dblocks − fdblocks) × block size, trusted only when the superblock passes
//! libblkid's geometry checks (`xfs_verify_sb`) and, for version 5, its crc32c. A superblock
//! that fails the geometry checks is still reported as XFS (blkid rejects it), without
//! `used_bytes`.
//!
//! The map ([`used_map`]): every block of the data section is used except the free extents
//! that the by-block free-space B+tree (`bnobt`) of each allocation group lists. The AG
//! headers, the free list (AGFL), the log and every B+tree are therefore used. A map is made
//! only when the filesystem proves it:
//! - the superblock passes the geometry checks and its crc, is not mid-mkfs and not marked as
//!   needing repair, and names no incompatible feature this reader does not know;
//! - the log is internal and clean: its last record, just before the head, is an unmount
//!   record (so nothing waits to be replayed that could allocate blocks the trees call free);
//! - every AGF matches its AG (magic, number, length, crc) and every bnobt block its place
//!   (magic, level, record count, crc, address, owner); no block is reached twice; the free
//!   extents are inside their AG, past its headers, sorted, disjoint, and add up to the AGF's
//!   free-block count.
//!
//! Anything else is a [`MapError`] and the partition is copied whole.
//!
//! Units: offsets in bytes unless named `*_blocks`/`agbno` (filesystem blocks) or `bb` (the
//! log's 512-byte basic blocks).
//!
//! Layout references: the XFS Algorithms & Data Structures documentation (superblock, AGF,
//! short-form B+tree blocks, log record headers); field offsets are written out below.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{crc32c_raw, read_exact_soft, text_label, uuid16};
use super::{MapError, MapResult, UsedMap};
use crate::blockdev::{read_clamped, read_vec, BlockDev};
use crate::bytes::{be16, be32, be64, byte, field, has, le32};
use crate::error::Result;
use std::collections::HashSet;

/// XFS is recognised and mapped.
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
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
        let sector = read_exact_soft(dev, 0, sectsize)?;
        if !crc_ok(&sector, 224) {
            return None;
        }
    }
    let blocksize = u64::from(be32(sb, 4)?);
    let dblocks = be64(sb, 8)?;
    let fdblocks = be64(sb, 144)?;
    dblocks.checked_sub(fdblocks)?.checked_mul(blocksize)
}

// ---------------------------------------------------------------------------------------------
// the used-block map

/// The family name in [`MapError`]s.
const FAMILY: &str = "xfs";
/// Deepest free-space B+tree accepted (XFS's own limit is far lower).
const MAX_LEVELS: u32 = 16;
/// Incompatible features (v5 `sb_features_incompat`) whose filesystems this map reads: ftype,
/// sparse inodes, meta UUID, bigtime, large extent counts, exchange-range, parent pointers.
const KNOWN_INCOMPAT: u32 = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80;
/// `XFS_SB_FEAT_INCOMPAT_NEEDSREPAIR`: xfs_repair did not finish.
const NEEDS_REPAIR: u32 = 0x10;
/// Log record header magic.
const LOG_MAGIC: u32 = 0xFEED_BABE;
/// `XLOG_UNMOUNT_TRANS` in a log operation header's flags.
const UNMOUNT_TRANS: u8 = 0x20;
/// Bytes of a log basic block.
const BB: u64 = 512;
/// How far back from the log's head its last record header is looked for: the largest log
/// record (256 KiB) with its extended headers, and then some.
const LOG_SCAN: u64 = 1 << 20;

fn bad(why: impl Into<String>) -> MapError {
    MapError(why.into(), FAMILY)
}

/// What the map needs of the superblock, checked.
#[derive(Debug, Clone, Copy)]
struct Geo {
    blocksize: u64,
    sectsize: u64,
    dblocks: u64,
    agblocks: u64,
    agcount: u64,
    agblklog: u32,
    v5: bool,
    /// Filesystem block of the internal log (AG-encoded), 0 when the log is external.
    logstart: u64,
    logblocks: u64,
}

impl Geo {
    /// Blocks in AG `agno` (the last one may be short).
    fn ag_len(&self, agno: u64) -> u64 {
        self.agblocks.min(self.dblocks - agno * self.agblocks)
    }

    /// Blocks at the start of every AG that hold its four header sectors.
    fn header_blocks(&self) -> u64 {
        (4 * self.sectsize).div_ceil(self.blocksize)
    }
}

/// Reads and checks the superblock (`sb`, its first 512 bytes).
fn geometry(dev: &dyn BlockDev, sb: &[u8]) -> Result<std::result::Result<Geo, MapError>> {
    if xfs_sane(sb) != Some(true) {
        return Ok(Err(bad("the superblock's geometry is not valid")));
    }
    let num = |v: Option<u64>| v.unwrap_or(0);
    let g = Geo {
        blocksize: num(be32(sb, 4).map(u64::from)),
        sectsize: num(be16(sb, 102).map(u64::from)),
        dblocks: num(be64(sb, 8)),
        agblocks: num(be32(sb, 84).map(u64::from)),
        agcount: num(be32(sb, 88).map(u64::from)),
        agblklog: u32::from(byte(sb, 124).unwrap_or(0)),
        v5: be16(sb, 100).unwrap_or(0) & 0xF == 5,
        logstart: num(be64(sb, 48)),
        logblocks: num(be32(sb, 96).map(u64::from)),
    };
    if g.v5 {
        let sector = read_vec(dev, 0, g.sectsize as usize)?;
        if !crc_ok(&sector, 224) {
            return Ok(Err(bad("the superblock's checksum does not match")));
        }
        let incompat = be32(sb, 216).unwrap_or(u32::MAX);
        if incompat & NEEDS_REPAIR != 0 {
            return Ok(Err(bad(
                "it is marked as needing repair (xfs_repair did not finish)",
            )));
        }
        if incompat & !KNOWN_INCOMPAT != 0 {
            return Ok(Err(bad(format!(
                "it uses incompatible features this version does not read (0x{:x})",
                incompat & !KNOWN_INCOMPAT
            ))));
        }
    }
    if byte(sb, 126) != Some(0) {
        return Ok(Err(bad("mkfs did not finish on it (sb_inprogress is set)")));
    }
    // agblklog is log2 of agblocks rounded up: the log's start is encoded with it
    if g.agblklog > 31 || g.agblocks > 1 << g.agblklog || g.agblocks <= (1 << g.agblklog) >> 1 {
        return Ok(Err(bad("the superblock's AG size and its log2 disagree")));
    }
    match g.dblocks.checked_mul(g.blocksize) {
        Some(b) if b <= dev.len() => Ok(Ok(g)),
        _ => Ok(Err(bad(format!(
            "it is larger ({} blocks of {} bytes) than its partition ({} bytes)",
            g.dblocks,
            g.blocksize,
            dev.len()
        )))),
    }
}

/// A v5 structure's crc32c: stored little-endian at `at`, computed with that field zeroed
/// (the bytes before it, four zero bytes, the bytes after it; no copy of `buf`).
fn crc_ok(buf: &[u8], at: usize) -> bool {
    let (Some(stored), Some(before), Some(after)) = (
        le32(buf, at),
        buf.get(..at),
        buf.get(at.saturating_add(4)..),
    ) else {
        return false;
    };
    let crc = crc32c_raw(crc32c_raw(!0, before), &[0; 4]);
    !crc32c_raw(crc, after) == stored
}

/// The used-block map of the XFS filesystem on `dev` (see the module docs).
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    let sb = read_vec(dev, 0, 512)?;
    let g = match geometry(dev, &sb)? {
        Ok(g) => g,
        Err(e) => return Ok(Err(e)),
    };
    if let Err(e) = log_clean(dev, &g)? {
        return Ok(Err(e));
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut push = |start_block: u64, blocks: u64| {
        let (s, l) = (start_block * g.blocksize, blocks * g.blocksize);
        match ranges.last_mut() {
            Some(last) if last.0 + last.1 == s => last.1 += l,
            _ => ranges.push((s, l)),
        }
    };
    for agno in 0..g.agcount {
        let free = match ag_free(dev, &g, agno)? {
            Ok(f) => f,
            Err(e) => return Ok(Err(e)),
        };
        let base = agno * g.agblocks;
        let mut pos = 0u64;
        for (s, l) in free {
            if s > pos {
                push(base + pos, s - pos);
            }
            pos = s + l;
        }
        let len = g.ag_len(agno);
        if pos < len {
            push(base + pos, len - pos);
        }
    }
    Ok(Ok(UsedMap {
        ranges,
        reason_unsafe: None,
    }))
}

/// The free extents `(agbno, blocks)` of AG `agno`, sorted, from its by-block B+tree.
fn ag_free(
    dev: &dyn BlockDev,
    g: &Geo,
    agno: u64,
) -> Result<std::result::Result<Vec<(u64, u64)>, MapError>> {
    let ag_len = g.ag_len(agno);
    let ag_byte = agno * g.agblocks * g.blocksize;
    let agf = read_vec(dev, ag_byte + g.sectsize, g.sectsize as usize)?;
    let field32 = |at| be32(&agf, at).map_or(u64::MAX, u64::from);
    if !has(&agf, 0, b"XAGF") || field32(4) != 1 || field32(8) != agno {
        return Ok(Err(bad(format!("AG {agno}'s header (AGF) is not valid"))));
    }
    if field32(12) != ag_len {
        return Ok(Err(bad(format!(
            "AG {agno}'s header gives its length as {} blocks, the superblock {ag_len}",
            field32(12)
        ))));
    }
    if g.v5 && !crc_ok(&agf, 216) {
        return Ok(Err(bad(format!(
            "AG {agno}'s header checksum does not match"
        ))));
    }
    let (root, levels, freeblks) = (field32(16), field32(28), field32(52));
    let first = g.header_blocks();
    if !(1..=u64::from(MAX_LEVELS)).contains(&levels) || !(first..ag_len).contains(&root) {
        return Ok(Err(bad(format!(
            "AG {agno}'s free-space tree root ({root}, {levels} levels) is not valid"
        ))));
    }
    let (magic, hdr): (&[u8; 4], usize) = if g.v5 { (b"AB3B", 56) } else { (b"ABTB", 16) };
    let bs = g.blocksize as usize;
    let leaf_max = (bs - hdr) / 8;
    let node_max = (bs - hdr) / 12;
    let mut free: Vec<(u64, u64)> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut stack = vec![(root, levels - 1)];
    while let Some((agbno, level)) = stack.pop() {
        if !seen.insert(agbno) {
            return Ok(Err(bad(format!(
                "AG {agno}'s free-space tree reaches block {agbno} twice"
            ))));
        }
        let at = (agno * g.agblocks + agbno) * g.blocksize;
        let b = read_vec(dev, at, bs)?;
        let n = be16(&b, 6).map_or(usize::MAX, usize::from);
        let max = if level == 0 { leaf_max } else { node_max };
        let ok = has(&b, 0, magic)
            && be16(&b, 4).map(u64::from) == Some(level)
            && (1..=max).contains(&n)
            && (!g.v5
                || (be64(&b, 16) == Some(at / BB)
                    && be32(&b, 48).map(u64::from) == Some(agno)
                    && crc_ok(&b, 52)));
        if !ok {
            return Ok(Err(bad(format!(
                "AG {agno}'s free-space tree block {agbno} (level {level}) is not valid"
            ))));
        }
        if level == 0 {
            for i in 0..n {
                let (s, l) = (
                    be32(&b, hdr + i * 8).map_or(u64::MAX, u64::from),
                    be32(&b, hdr + i * 8 + 4).map_or(0, u64::from),
                );
                if l == 0 || s < first || s.saturating_add(l) > ag_len {
                    return Ok(Err(bad(format!(
                        "AG {agno} lists a free extent ({s}+{l}) outside the AG"
                    ))));
                }
                free.push((s, l));
            }
        } else {
            // children right to left, so the leftmost is visited first
            for i in (0..n).rev() {
                let p = be32(&b, hdr + node_max * 8 + i * 4).map_or(u64::MAX, u64::from);
                if !(first..ag_len).contains(&p) {
                    return Ok(Err(bad(format!(
                        "AG {agno}'s free-space tree points outside the AG ({p})"
                    ))));
                }
                stack.push((p, level - 1));
            }
        }
    }
    free.sort_unstable();
    let mut end = 0u64;
    for &(s, l) in &free {
        if s < end {
            return Ok(Err(bad(format!("AG {agno}'s free extents overlap at {s}"))));
        }
        end = s + l;
    }
    let total: u64 = free.iter().map(|f| f.1).sum();
    if total != freeblks {
        return Ok(Err(bad(format!(
            "AG {agno}'s free-space tree holds {total} free blocks, its header says {freeblks}"
        ))));
    }
    Ok(Ok(free))
}

/// Whether the internal log is clean: its last record before the head is an unmount record
/// (xfsprogs' `xlog_find_tail` check). Anything it cannot prove is a [`MapError`].
fn log_clean(dev: &dyn BlockDev, g: &Geo) -> Result<std::result::Result<(), MapError>> {
    if g.logstart == 0 {
        return Ok(Err(bad(
            "its log is on another device, so a clean unmount cannot be checked",
        )));
    }
    let (agno, agbno) = (
        g.logstart >> g.agblklog,
        g.logstart & ((1 << g.agblklog) - 1),
    );
    let bbs = g.logblocks * g.blocksize / BB;
    if agno >= g.agcount || agbno + g.logblocks > g.ag_len(agno) || bbs < 2 {
        return Ok(Err(bad(
            "the superblock places its log outside the filesystem",
        )));
    }
    let start = (agno * g.agblocks + agbno) * g.blocksize;
    // the cycle number stamped on basic block `i`: a record header carries it after its magic
    let cycle = |b: &[u8]| match be32(b, 0) {
        Some(LOG_MAGIC) => be32(b, 4),
        c => c,
    };
    let at = |i: u64| -> Result<Vec<u8>> { read_vec(dev, start + (i % bbs) * BB, BB as usize) };
    let (first, last) = (cycle(&at(0)?), cycle(&at(bbs - 1)?));
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(Err(bad("its log cannot be read")));
    };
    // the head: where the cycle number drops (the whole log in one cycle: it wrapped at 0)
    let head = if first == last {
        0
    } else if last.wrapping_add(1) == first {
        let (mut lo, mut hi) = (0u64, bbs - 1);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            match cycle(&at(mid)?) {
                Some(c) if c == first => lo = mid,
                Some(c) if c == last => hi = mid,
                _ => return Ok(Err(bad("its log's cycle numbers are not consistent"))),
            }
        }
        hi
    } else {
        return Ok(Err(bad("its log's cycle numbers are not consistent")));
    };
    // the last record header before the head, in the window read back from it
    let window = (LOG_SCAN / BB).min(bbs);
    let mut buf = vec![0u8; (window * BB) as usize];
    let from = (head + bbs - window) % bbs;
    let to_end = (bbs - from).min(window);
    dev.read_at(&mut buf[..(to_end * BB) as usize], start + from * BB)?;
    if to_end < window {
        dev.read_at(&mut buf[(to_end * BB) as usize..], start)?;
    }
    let head_cycle = if head == 0 {
        first
    } else {
        cycle(&at(head - 1)?).unwrap_or(0)
    };
    let found = (0..window).rev().find(|&k| {
        let b = &buf[(k * BB) as usize..((k + 1) * BB) as usize];
        be32(b, 0) == Some(LOG_MAGIC) && be32(b, 4) == Some(head_cycle)
    });
    let Some(k) = found else {
        return Ok(Err(bad("its log has no record before its head")));
    };
    let rec = &buf[(k * BB) as usize..((k + 1) * BB) as usize];
    let rhead = (from + k) % bbs;
    let version = be32(rec, 8).unwrap_or(0);
    let hblks = if version & 2 != 0 {
        be32(rec, 320).map_or(1, |h| u64::from(h).div_ceil(32768).max(1))
    } else {
        1
    };
    let h_len = be32(rec, 12).map_or(0, u64::from);
    let ops = be32(rec, 40);
    let after = (rhead + hblks + h_len.div_ceil(BB)) % bbs;
    let flags = byte(&at(rhead + hblks)?, 9).unwrap_or(0);
    if after == head && ops == Some(1) && flags & UNMOUNT_TRANS != 0 {
        Ok(Ok(()))
    } else {
        Ok(Err(bad(
            "it was not cleanly unmounted (its log needs replaying: mount it once, or run xfs_repair)",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;
    use std::process::Command;

    #[test]
    fn crc_ok_is_the_crc32c_of_the_block_with_its_crc_field_zeroed() {
        let block = Rng(0x2545_F491).bytes(512);
        for at in [0usize, 1, 52, 216, 224, 508] {
            let mut zeroed = block.clone();
            zeroed[at..at + 4].fill(0);
            let mut b = block.clone();
            b[at..at + 4].copy_from_slice(&crate::fsmap::probe::crc32c(&zeroed).to_le_bytes());
            assert!(crc_ok(&b, at), "crc at {at}");
            b[(at + 100) % 512] ^= 1;
            assert!(!crc_ok(&b, at), "a flipped bit, crc at {at}");
        }
        assert!(!crc_ok(&block, 509), "no room for the crc field");
        assert!(!crc_ok(&[], 0));
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

    /// A prototype file for `mkfs.xfs -p` in `dir`: a folder of `n` files of assorted sizes
    /// (0 to 300 KiB) and a few in the root.
    fn proto(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
        let mut rng = Rng(0x5eed ^ n as u64);
        let mut text = String::from("/dev/null\n0 0\nd--755 0 0\n");
        let mut files = Vec::new();
        for i in 0..n {
            let len = match rng.below(4) {
                0 => 0,
                1 => rng.below(4096),
                2 => rng.below(64 << 10),
                _ => rng.below(300 << 10),
            };
            let src = dir.join(format!("src{i}"));
            std::fs::write(&src, rng.bytes(len as usize)).unwrap();
            files.push(format!("f{i} ---644 0 0 {}\n", src.display()));
        }
        text.push_str(&files[..n / 4].concat());
        text.push_str("sub d--755 0 0\n");
        text.push_str(&files[n / 4..].concat());
        text.push_str("$\n$\n");
        let p = dir.join("proto");
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `xfs_db -r` on `img` with `cmds`.
    fn db(img: &std::path::Path, cmds: &[&str]) -> String {
        let mut c = Command::new(tool("xfs_db").unwrap());
        c.arg("-r");
        for x in cmds {
            c.args(["-c", x]);
        }
        output(c.arg(img))
    }

    /// The free extents xfs_db lists (`freesp -d`, which includes the AG free lists, less those
    /// blocks), as merged byte ranges.
    fn oracle_free(img: &std::path::Path) -> Vec<(u64, u64)> {
        let sb = db(img, &["sb 0", "p agcount agblocks blocksize"]);
        let (agcount, agblocks, bs) = (
            kv(&sb, "agcount"),
            kv(&sb, "agblocks"),
            kv(&sb, "blocksize"),
        );
        let mut agfl = HashSet::new();
        for ag in 0..agcount {
            let t = db(img, &[&format!("agfl {ag}"), "p bno"]);
            for tok in t.split_whitespace() {
                if let Some((_, v)) = tok.split_once(':') {
                    if let Ok(b) = v.parse::<u64>() {
                        agfl.insert((ag, b));
                    }
                }
            }
        }
        let mut free: Vec<(u64, u64)> = Vec::new();
        for line in db(img, &["freesp -d"]).lines() {
            let f: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            let [ag, bno, len] = f[..] else { continue };
            if len == 1 && agfl.contains(&(ag, bno)) {
                continue;
            }
            free.push(((ag * agblocks + bno) * bs, len * bs));
        }
        merge(free)
    }

    fn merge(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (s, l) in v {
            match out.last_mut() {
                Some(last) if last.0 + last.1 == s => last.1 += l,
                _ => out.push((s, l)),
            }
        }
        out
    }

    /// The gaps of `used` within `0..len`.
    fn complement(used: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut pos = 0;
        for &(s, l) in used {
            if s > pos {
                out.push((pos, s - pos));
            }
            pos = s + l;
        }
        if pos < len {
            out.push((pos, len - pos));
        }
        out
    }

    fn map_of(path: &std::path::Path) -> MapResult<UsedMap> {
        map_file(path, used_map)
    }

    #[test]
    fn xfs_maps_match_xfs_db_free_space() {
        let cases: [(&str, &[&str]); 4] = [
            ("v5 4K", &[]),
            ("v5 1K blocks", &["-b", "size=1024"]),
            ("v5 4K sectors", &["-s", "size=4096"]),
            ("v4", &["-m", "crc=0"]),
        ];
        let Some(mkfs) = tool("mkfs.xfs") else { return };
        if tool("xfs_db").is_none() {
            return;
        }
        for (name, extra) in cases {
            let src = tempfile::tempdir().unwrap();
            let p = proto(src.path(), 400);
            let img = sparse(320 << 20);
            output(
                Command::new(&mkfs)
                    .args(["-q", "-f", "-p"])
                    .arg(&p)
                    .args(extra)
                    .arg(&img.path),
            );
            let m = map_of(&img.path)
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.reason_unsafe, None, "{name}");
            let sb = db(&img.path, &["sb 0", "p dblocks blocksize"]);
            let len = kv(&sb, "dblocks") * kv(&sb, "blocksize");
            let free = complement(&m.ranges, len);
            assert_eq!(free, oracle_free(&img.path), "{name}: free extents");
            let used: u64 = m.ranges.iter().map(|r| r.1).sum();
            // the files (about 40 MiB) and the log are in the map
            assert!(
                used > 40 << 20 && used < len / 2,
                "{name}: {used} used of {len}"
            );
        }
    }

    /// A v4 (no checksums) image whose structures a test may edit, and its geometry.
    fn v4_image() -> Option<(Img, u64, u64, u64)> {
        let mkfs = tool("mkfs.xfs")?;
        let src = tempfile::tempdir().unwrap();
        let p = proto(src.path(), 40);
        let img = sparse(320 << 20);
        output(
            Command::new(mkfs)
                .args(["-q", "-f", "-m", "crc=0", "-p"])
                .arg(&p)
                .arg(&img.path),
        );
        let sb = read_prefix(&img.path, 512);
        let bs = u64::from(be32(&sb, 4).unwrap());
        let agblocks = u64::from(be32(&sb, 84).unwrap());
        let sect = u64::from(be16(&sb, 102).unwrap());
        assert!(map_of(&img.path).unwrap().is_ok());
        Some((img, bs, agblocks, sect))
    }

    fn refused(img: &std::path::Path, says: &str) {
        assert_refused(img, used_map, says);
    }

    #[test]
    fn damaged_or_lying_xfs_structures_are_refused_with_the_reason() {
        let Some((img, bs, agblocks, sect)) = v4_image() else {
            return;
        };
        let agf1 = agblocks * bs + sect;
        let orig = read_prefix(&img.path, (agblocks + 1) * bs);
        let agf = &orig[agf1 as usize..(agf1 + sect) as usize];
        let restore = || patch(&img.path, agf1, agf);
        let root = u64::from(be32(agf, 16).unwrap());
        let freeblks = be32(agf, 52).unwrap();

        // a free-block count that does not add up
        patch(&img.path, agf1 + 52, &(freeblks + 1).to_be_bytes());
        refused(&img.path, "free blocks");
        restore();
        // a tree root inside the AG's headers
        patch(&img.path, agf1 + 16, &0u32.to_be_bytes());
        refused(&img.path, "root");
        restore();
        // an AGF that claims another AG
        patch(&img.path, agf1 + 8, &7u32.to_be_bytes());
        refused(&img.path, "AGF");
        restore();
        // a leaf record that runs past the AG
        let leaf = (agblocks + root) * bs;
        let rec =
            read_prefix(&img.path, leaf + bs)[(leaf + 16) as usize..(leaf + 24) as usize].to_vec();
        patch(&img.path, leaf + 20, &(agblocks as u32).to_be_bytes());
        refused(&img.path, "outside the AG");
        patch(&img.path, leaf + 16, &rec);
        // a tree block of the wrong kind
        patch(&img.path, leaf, b"ABTC");
        refused(&img.path, "not valid");
        patch(&img.path, leaf, b"ABTB");
        // a filesystem larger than its partition
        let dev =
            crate::blockdev::FileDev::open(&img.path, crate::blockdev::OpenMode::Read).unwrap();
        let short = BytesDev(&orig[..(agblocks + 1) as usize * bs as usize]);
        drop(dev);
        let e = used_map(&short).unwrap().unwrap_err();
        assert!(e.to_string().contains("larger"), "{e}");
        assert!(
            map_of(&img.path).unwrap().is_ok(),
            "the image is whole again"
        );
    }

    #[test]
    fn an_xfs_whose_log_needs_replaying_is_copied_whole() {
        let Some((img, bs, agblocks, _)) = v4_image() else {
            return;
        };
        let sb = read_prefix(&img.path, 512);
        let logstart = be64(&sb, 48).unwrap();
        let agblklog = u32::from(sb[124]);
        let log = ((logstart >> agblklog) * agblocks + (logstart & ((1 << agblklog) - 1))) * bs;
        // mkfs leaves one unmount record at the log's start: its operation's flags
        let op = read_prefix(&img.path, log + 1024);
        assert_eq!(be32(&op, log as usize), Some(LOG_MAGIC));
        assert_eq!(op[(log + 512 + 9) as usize] & UNMOUNT_TRANS, UNMOUNT_TRANS);
        patch(&img.path, log + 512 + 9, &[0x02]);
        refused(&img.path, "not cleanly unmounted");
        // a log with no record at all before its head
        patch(&img.path, log + 512 + 9, &[UNMOUNT_TRANS]);
        patch(&img.path, log, &[0; 4]);
        refused(&img.path, "log");
    }

    #[test]
    fn checksums_guard_every_v5_structure() {
        let Some((img, _)) = mkfs_case(320 << 20, "mkfs.xfs", &["-q"]) else {
            return;
        };
        assert!(map_of(&img.path).unwrap().is_ok());
        let sb = read_prefix(&img.path, 512);
        let (bs, agblocks, sect) = (
            u64::from(be32(&sb, 4).unwrap()),
            u64::from(be32(&sb, 84).unwrap()),
            u64::from(be16(&sb, 102).unwrap()),
        );
        let agf = read_prefix(&img.path, agblocks * bs + 2 * sect)
            [(agblocks * bs + sect) as usize..]
            .to_vec();
        let root = u64::from(be32(&agf, 16).unwrap());
        for (what, at) in [
            ("AGF", agblocks * bs + sect + 60),
            ("tree block", (agblocks + root) * bs + 100),
        ] {
            let old = read_prefix(&img.path, at + 1)[at as usize];
            patch(&img.path, at, &[old ^ 0x40]);
            assert!(
                map_of(&img.path).unwrap().is_err(),
                "{what}: a flipped bit went unseen"
            );
            patch(&img.path, at, &[old]);
        }
        assert!(map_of(&img.path).unwrap().is_ok());
    }

    #[test]
    fn fuzzed_xfs_metadata_never_panics() {
        let Some((img, ..)) = v4_image() else { return };
        fuzz_map(&img.path, used_map, 400, 0x00F0_CCA5);
    }
}
