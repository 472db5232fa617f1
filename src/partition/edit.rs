//! Partition-table edits for restore and clone: fitting a table onto a target of another size,
//! growing the last partition, and giving the target a new disk ID.
//!
//! Two steps, like every destructive job (STYLE §0.3):
//! - [`plan_layout`] is pure: from the source's table and the two sizes it computes the
//!   smallest target that holds every partition (and refuses a smaller one, naming the
//!   partition in the way and how much is missing), where the backup GPT goes, and how far the
//!   last partition grows.
//! - [`apply`] rewrites the table bytes in memory: it patches the caller's copies of the
//!   areas that will be written last (the first MiB), and returns the extra writes (the new
//!   backup GPT, a patched EBR). The caller writes them after the data and before the head.
//!
//! GPT: every edit rewrites both headers (CRC), and a grown entry rewrites the entry array
//! (CRC) in both copies; the protective MBR's 0xEE entry is sized to the new disk. MBR: sizes
//! are 32-bit sector counts, so a grown partition stops at 2^32 − 1 sectors; a grown logical
//! partition grows its extended container too, and its EBR is rewritten.
//!
//! Sector-size changes (a 512-byte disk onto a 4Kn one, or the reverse): every partition
//! keeps its byte offsets, so it must start and end on a whole sector of both sizes; the
//! tables are rebuilt in the target's sectors. GPT: both headers and entry arrays at the new
//! sector size (LBA 1 and 2, and the disk's end), every entry's LBAs converted, the source's
//! primary header and entries zeroed where they lay, the protective MBR's entry resized. MBR:
//! the four primary entries' LBAs and counts converted. MBR logical partitions (EBR chains)
//! and hybrid MBRs are not translated ([`Error::Unsupported`]). Whether each filesystem can
//! live on the new sector size is the caller's check (`jobs::target`).
//!
//! Units: bytes unless a name says `lba` (in the table's logical sector size, or the
//! target's where a name says `_t`).

use super::{gpt, mbr, Partition, PartitionTable, TableKind};
use crate::blockdev::{read_vec, BlockDev};
use crate::error::{Error, Result};
use crate::units::{human_bytes, le_u32, le_u64};
use serde::Serialize;
use std::path::Path;

/// New GPT locations on the target.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GptMove {
    /// LBA of the new backup header (the target's last LBA).
    pub backup_header_lba: u64,
    /// LBA of the new backup entry array.
    pub backup_entries_lba: u64,
    /// New last usable LBA.
    pub last_usable_lba: u64,
}

/// The last partition, grown.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Grow {
    /// Partition number.
    pub number: u32,
    /// First byte (unchanged).
    pub start_bytes: u64,
    /// Size before.
    pub old_size_bytes: u64,
    /// Size after.
    pub new_size_bytes: u64,
    /// The MBR extended partition that grows with a logical one.
    pub extended: Option<u32>,
    /// Why it could not fill the disk, when it could not.
    pub limit: Option<String>,
}

/// A change of logical sector size between the source and the target.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SectorChange {
    /// The source's (the image's) logical sector size.
    pub from: u32,
    /// The target's.
    pub to: u32,
}

/// How the source's table lands on the target.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Layout {
    /// "gpt" or "mbr".
    pub table: &'static str,
    /// Smallest target that holds every partition (and the backup GPT).
    pub min_target_size: u64,
    /// Where the backup GPT goes; `None` for MBR.
    pub gpt_move: Option<GptMove>,
    /// Set with `--grow-last` when the last partition can grow.
    pub grow: Option<Grow>,
    /// With `--grow-last`, why nothing grows (the last partition already reaches the end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grow_skipped: Option<String>,
    /// The new disk GUID (GPT, upper-case) or signature (MBR, `0x…`) with `--new-disk-id`.
    pub new_disk_id: Option<String>,
    /// Set when the target's logical sector size differs: the tables are rebuilt in its
    /// sectors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector_change: Option<SectorChange>,
    /// The source's backup-GPT area (first byte), which is rebuilt, never copied, when
    /// [`Layout::rewrites_gpt`] is true.
    #[serde(skip)]
    pub source_gpt_tail: Option<u64>,
    #[serde(skip)]
    new_id: Option<[u8; 16]>,
    #[serde(skip)]
    sector_size: u32,
    #[serde(skip)]
    target_size: u64,
    #[serde(skip)]
    source_size: u64,
}

impl Layout {
    /// True when the GPT is rewritten (moved, grown, given a new ID or translated to another
    /// sector size) rather than copied.
    pub fn rewrites_gpt(&self) -> bool {
        self.gpt_move.is_some()
            && (self.target_size != self.source_size
                || self.grow.is_some()
                || self.new_id.is_some()
                || self.sector_change.is_some())
    }

    /// True when anything in the table changes.
    pub fn edits(&self) -> bool {
        self.rewrites_gpt()
            || self.grow.is_some()
            || self.new_id.is_some()
            || self.sector_change.is_some()
    }
}

/// Random bytes from the kernel.
fn random16() -> Result<[u8; 16]> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::io("reading", Path::new("/dev/urandom"), e))?;
    Ok(b)
}

/// Plans how `table` (read from a source of `source_size` bytes) lands on a target of
/// `target_size` bytes with `target_ss`-byte logical sectors. Refuses a target too small for
/// the partitions with [`Error::TooSmall`], naming the partition in the way, and a sector
/// size the table cannot be translated to, naming the partition and why.
#[allow(clippy::too_many_arguments)]
pub fn plan_layout(
    table: &PartitionTable,
    source_size: u64,
    target: &Path,
    target_size: u64,
    target_ss: u32,
    grow_last: bool,
    new_disk_id: bool,
) -> Result<Layout> {
    let sector_change = (target_ss != table.sector_size).then_some(SectorChange {
        from: table.sector_size,
        to: target_ss,
    });
    if let Some(c) = sector_change {
        check_translatable(table, target, c)?;
    }
    // the target's sector size: every LBA on the target is counted in it
    let ss = u64::from(target_ss);
    let parts: Vec<_> = table.partitions.iter().filter(|p| !p.extended).collect();
    let last = parts.iter().max_by_key(|p| p.end_bytes()).copied();
    let part_end = table
        .partitions
        .iter()
        .map(|p| p.end_bytes())
        .max()
        .unwrap_or(0);
    let n = target_size / ss;
    let (min_target_size, gpt_move, source_gpt_tail, usable_end) = match (&table.kind, &table.gpt) {
        (TableKind::Gpt, Some(g)) => {
            let entry_sectors = (u64::from(g.entry_count) * u64::from(g.entry_size)).div_ceil(ss);
            let tail = (entry_sectors + 1) * ss;
            let source_ss = u64::from(table.sector_size);
            let source_tail =
                ((u64::from(g.entry_count) * u64::from(g.entry_size)).div_ceil(source_ss) + 1)
                    * source_ss;
            let mv = GptMove {
                backup_header_lba: n.saturating_sub(1),
                backup_entries_lba: n.saturating_sub(1 + entry_sectors),
                last_usable_lba: n.saturating_sub(2 + entry_sectors),
            };
            let usable_end = (mv.last_usable_lba + 1) * ss;
            (
                part_end.div_ceil(ss) * ss + tail,
                Some(mv),
                Some(source_size.saturating_sub(source_tail)),
                usable_end,
            )
        }
        _ => (part_end, None, None, n * ss),
    };
    if target_size < min_target_size {
        let why = match last {
            Some(p) => format!(
                "{} missing: partition {} ends at byte {} ({}), past the target's last usable byte {}",
                human_bytes(min_target_size - target_size),
                p.number,
                p.end_bytes(),
                human_bytes(p.end_bytes()),
                usable_end
            ),
            None => format!("{} missing", human_bytes(min_target_size - target_size)),
        };
        return Err(Error::TooSmall {
            path: target.to_path_buf(),
            need: min_target_size,
            have: target_size,
            why,
        });
    }
    // The partition that ends last grows; an (empty) extended partition ending after it
    // would be overlapped, so then nothing grows.
    let ext = table.partitions.iter().find(|x| x.extended);
    let blocked_by = last.and_then(|p| {
        table
            .partitions
            .iter()
            .filter(|x| x.number != p.number && !(p.logical && x.extended))
            .find(|x| x.end_bytes() > p.end_bytes())
    });
    let mut grow_skipped = None;
    let grow = match (grow_last, last, blocked_by) {
        (true, Some(p), Some(x)) => {
            grow_skipped = Some(format!(
                "partition {} cannot grow: partition {} ends after it",
                p.number, x.number
            ));
            None
        }
        (true, Some(p), None) => {
            let mut new_end = usable_end / ss * ss;
            let mut limit = None;
            if table.kind == TableKind::Mbr {
                // sizes are 32-bit sector counts: the partition's own, and for a logical
                // one its extended container's, counted from the container's start
                let base = match (p.logical, ext) {
                    (true, Some(x)) => x.start_bytes / ss,
                    _ => p.start_bytes / ss,
                };
                let max_end = base.saturating_add(u64::from(u32::MAX)).saturating_mul(ss);
                if new_end > max_end {
                    new_end = max_end;
                    limit = Some(
                        "an MBR partition holds at most 2^32 - 1 sectors; use GPT for more".into(),
                    );
                }
            }
            let grown = (new_end > p.end_bytes()).then(|| Grow {
                number: p.number,
                start_bytes: p.start_bytes,
                old_size_bytes: p.size_bytes,
                new_size_bytes: new_end - p.start_bytes,
                extended: if p.logical {
                    ext.map(|x| x.number)
                } else {
                    None
                },
                limit,
            });
            if grown.is_none() {
                grow_skipped = Some(format!(
                    "partition {} already ends at the last usable byte of the target, so --grow-last has nothing to grow",
                    p.number
                ));
            }
            grown
        }
        (true, None, _) => {
            grow_skipped = Some("the table has no partition to grow".into());
            None
        }
        _ => None,
    };
    let new_id = if new_disk_id { Some(random16()?) } else { None };
    let new_disk_id = new_id.map(|b| match table.kind {
        TableKind::Gpt => gpt::guid_upper(&uuid::Builder::from_random_bytes(b).into_uuid()),
        TableKind::Mbr => format!("0x{:08x}", le_u32(&b, 0)),
    });
    Ok(Layout {
        table: table.kind.as_str(),
        min_target_size,
        gpt_move,
        grow,
        grow_skipped,
        new_disk_id,
        sector_change,
        source_gpt_tail,
        new_id,
        sector_size: table.sector_size,
        target_size,
        source_size,
    })
}

/// Refuses a table that cannot be rebuilt at another sector size: a partition that does not
/// start and end on a whole sector of the target, one that would start inside the target's
/// GPT header area, an MBR count that no longer fits 32 bits, logical partitions, a hybrid
/// MBR.
fn check_translatable(table: &PartitionTable, target: &Path, c: SectorChange) -> Result<()> {
    let tss = u64::from(c.to);
    let refused = |reason: String| Error::Refused {
        path: target.to_path_buf(),
        reason: format!(
            "its logical sector size is {} bytes, the source's {}; {reason}",
            c.to, c.from
        ),
    };
    if table.partitions.iter().any(|p| p.extended || p.logical) {
        return Err(Error::Unsupported(format!(
            "an MBR with logical partitions cannot be moved from {}-byte to {}-byte sectors yet (its extended boot records count in sectors)",
            c.from, c.to
        )));
    }
    let first_usable_t = match &table.gpt {
        Some(g) => 2 + (u64::from(g.entry_count) * u64::from(g.entry_size)).div_ceil(tss),
        None => 1,
    };
    for p in &table.partitions {
        if !p.start_bytes.is_multiple_of(tss) || !p.size_bytes.is_multiple_of(tss) {
            return Err(refused(format!(
                "partition {} (bytes {}..{}) does not start and end on a {}-byte boundary, so no table can describe it there",
                p.number,
                p.start_bytes,
                p.end_bytes(),
                c.to
            )));
        }
        if p.start_bytes < first_usable_t * tss {
            return Err(refused(format!(
                "partition {} starts at byte {}, inside the area the table itself takes at {}-byte sectors (up to byte {})",
                p.number,
                p.start_bytes,
                c.to,
                first_usable_t * tss
            )));
        }
        if table.kind == TableKind::Mbr && p.end_bytes() / tss > u64::from(u32::MAX) {
            return Err(refused(format!(
                "partition {} would end past sector 2^32 - 1, the most an MBR can count",
                p.number
            )));
        }
    }
    Ok(())
}

/// Copies `bytes` into whichever buffer of `areas` covers `[at, at + len)`; when none does,
/// appends a write of its own (written after the others, so it wins).
fn patch(areas: &mut [(u64, Vec<u8>)], extra: &mut Vec<(u64, Vec<u8>)>, at: u64, bytes: &[u8]) {
    for (off, buf) in areas.iter_mut() {
        let end = *off + buf.len() as u64;
        if at >= *off && at + bytes.len() as u64 <= end {
            let i = (at - *off) as usize;
            buf[i..i + bytes.len()].copy_from_slice(bytes);
            return;
        }
    }
    extra.push((at, bytes.to_vec()));
}

fn set64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn set32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Applies `layout` to the table read from `src` (the source disk or the image). `areas` are
/// the caller's buffers of the table areas (at least the first MiB, as `(offset, bytes)`);
/// they are patched in place. Returns the writes to add after them: the backup GPT, EBRs, and
/// any table bytes no area covered.
pub fn apply(
    layout: &Layout,
    src: &dyn BlockDev,
    areas: &mut [(u64, Vec<u8>)],
) -> Result<Vec<(u64, Vec<u8>)>> {
    let mut extra = Vec::new();
    if !layout.edits() {
        return Ok(extra);
    }
    if let Some(c) = layout.sector_change {
        translate(layout, c, src, areas, &mut extra)?;
        return Ok(extra);
    }
    let ss = u64::from(layout.sector_size);
    let refused = |reason: String| Error::Refused {
        path: src.path().to_path_buf(),
        reason,
    };
    if let Some(mv) = layout.gpt_move.as_ref().filter(|_| layout.rewrites_gpt()) {
        rewrite_gpt(
            src,
            ss,
            layout.target_size,
            mv,
            layout.new_id.as_ref(),
            areas,
            &mut extra,
            |entries, _| {
                let Some(g) = &layout.grow else {
                    return Ok(false);
                };
                let i = (g.number - 1) as usize * entries.1;
                let entries = &mut *entries.0;
                if entries.len() < i + 48
                    || le_u64(entries, i + 32).checked_mul(ss) != Some(g.start_bytes)
                {
                    return Err(refused(format!(
                        "GPT entry {} does not start where the plan says",
                        g.number
                    )));
                }
                set64(entries, i + 40, (g.start_bytes + g.new_size_bytes) / ss - 1);
                Ok(true)
            },
        )?;
        return Ok(extra);
    }
    if layout.table != "mbr" {
        return Ok(extra);
    }
    let mut mbr0 = read_vec(src, 0, 512)?;
    if let Some(id) = &layout.new_id {
        mbr0[440..444].copy_from_slice(&id[..4]);
    }
    if let Some(g) = &layout.grow {
        let new_sectors = u32::try_from(g.new_size_bytes / ss)
            .map_err(|_| refused("the grown partition exceeds 2^32 - 1 sectors".into()))?;
        let new_end = g.start_bytes + g.new_size_bytes;
        let grow_entry = |b: &mut [u8], at: usize, start_lba: u64, end_bytes: u64| {
            let sectors = u32::try_from(end_bytes / ss - start_lba).unwrap_or(u32::MAX);
            set32(b, at + 12, sectors);
            // ending CHS: "beyond CHS", as every tool writes for large disks
            b[at + 5..at + 8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        };
        if g.number <= 4 {
            let at = 446 + (g.number as usize - 1) * 16;
            if u64::from(le_u32(&mbr0, at + 8)) * ss != g.start_bytes {
                return Err(refused(format!(
                    "MBR entry {} does not start where the plan says",
                    g.number
                )));
            }
            set32(&mut mbr0, at + 12, new_sectors);
            mbr0[at + 5..at + 8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
        } else {
            let Some(x) = g.extended else {
                return Err(refused(format!(
                    "logical partition {} has no extended partition",
                    g.number
                )));
            };
            let at = 446 + (x as usize - 1) * 16;
            let ext_start = u64::from(le_u32(&mbr0, at + 8));
            grow_entry(&mut mbr0, at, ext_start, new_end);
            // walk the EBR chain to the logical partition's EBR, keeping the one before it
            // (its link entry describes the grown EBR's extent)
            let mut rel = 0u64;
            let mut prev: Option<(u64, Vec<u8>)> = None;
            let mut found = None;
            for _ in 0..=mbr::MAX_LOGICAL {
                let ebr_lba = ext_start + rel;
                let sector = read_vec(src, ebr_lba * ss, 512)?;
                let start = ebr_lba + u64::from(le_u32(&sector, 446 + 8));
                if start.checked_mul(ss) == Some(g.start_bytes) {
                    found = Some((ebr_lba, sector));
                    break;
                }
                let next = u64::from(le_u32(&sector, 446 + 16 + 8));
                if sector[446 + 16 + 4] == 0 || next <= rel {
                    break;
                }
                prev = Some((ebr_lba, sector));
                rel = next;
            }
            let Some((ebr_lba, mut ebr)) = found else {
                return Err(refused(format!(
                    "the extended boot record of logical partition {} was not found",
                    g.number
                )));
            };
            let data_start = ebr_lba + u64::from(le_u32(&ebr, 446 + 8));
            grow_entry(&mut ebr, 446, data_start, new_end);
            patch(areas, &mut extra, ebr_lba * ss, &ebr);
            if let Some((p_lba, mut p)) = prev {
                grow_entry(&mut p, 446 + 16, ebr_lba, new_end);
                patch(areas, &mut extra, p_lba * ss, &p);
            }
        }
    }
    patch(areas, &mut extra, 0, &mbr0);
    Ok(extra)
}

/// Rebuilds the table read from `src` in the target's sectors (see the module docs), with the
/// layout's grown partition and new disk ID; patches `areas` and appends to `extra`.
fn translate(
    layout: &Layout,
    c: SectorChange,
    src: &dyn BlockDev,
    areas: &mut [(u64, Vec<u8>)],
    extra: &mut Vec<(u64, Vec<u8>)>,
) -> Result<()> {
    let (ss, tss) = (u64::from(c.from), u64::from(c.to));
    let refused = |reason: String| Error::Refused {
        path: src.path().to_path_buf(),
        reason,
    };
    // a partition's new (start, end) in bytes: the grown one ends further out
    let span = |number: u32, start: u64, end: u64| -> Result<(u64, u64)> {
        let end = match &layout.grow {
            Some(g) if g.number == number => {
                if g.start_bytes != start {
                    return Err(refused(format!(
                        "partition {number} does not start where the plan says"
                    )));
                }
                g.start_bytes + g.new_size_bytes
            }
            _ => end,
        };
        if !start.is_multiple_of(tss) || !end.is_multiple_of(tss) || end <= start {
            return Err(refused(format!(
                "partition {number} does not lie on {tss}-byte sectors"
            )));
        }
        Ok((start, end))
    };
    let mut mbr0 = read_vec(src, 0, 512)?;
    if layout.table == "mbr" {
        if let Some(id) = &layout.new_id {
            mbr0[440..444].copy_from_slice(&id[..4]);
        }
        for e in 0..4u32 {
            let at = 446 + e as usize * 16;
            let kind = mbr0[at + 4];
            let (first, count) = (
                u64::from(le_u32(&mbr0, at + 8)),
                u64::from(le_u32(&mbr0, at + 12)),
            );
            if kind == 0 || count == 0 {
                continue;
            }
            if mbr::is_extended(kind) {
                return Err(Error::Unsupported(
                    "an extended partition cannot be moved to another sector size yet".into(),
                ));
            }
            let (s, e_) = span(e + 1, first * ss, (first + count) * ss)?;
            set_entry(&mut mbr0, at, s / tss, s / tss, (e_ - s) / tss)?;
        }
        patch(areas, extra, 0, &mbr0);
        return Ok(());
    }
    let mv = layout
        .gpt_move
        .as_ref()
        .ok_or_else(|| refused("its GPT header was not read".into()))?;
    let primary = read_vec(src, ss, ss as usize)?;
    let h = gpt::parse_header(&primary, 1)
        .map_err(|r| refused(format!("its primary GPT header cannot be rewritten: {r}")))?;
    let old_entries_at = h.entries_lba * ss;
    let mut entries = read_vec(src, old_entries_at, gpt::entry_array_bytes(&h) as usize)?;
    let size = h.entry_size as usize;
    for i in 0..h.entry_count as usize {
        let at = i * size;
        if entries.len() < at + 48 || entries[at..at + 16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (le_u64(&entries, at + 32), le_u64(&entries, at + 40));
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let (s, e) = span(number, first * ss, (last + 1) * ss)?;
        if e / tss - 1 > mv.last_usable_lba {
            return Err(refused(format!(
                "partition {number} would end past the target's last usable sector"
            )));
        }
        set64(&mut entries, at + 32, s / tss);
        set64(&mut entries, at + 40, e / tss - 1);
    }
    let entry_sectors_t = (entries.len() as u64).div_ceil(tss);
    let header_size = (le_u32(&primary, 12) as usize).min(primary.len());
    // the header in a sector of the target's size, at LBA 1, its entries at LBA 2
    let mut base = vec![0u8; tss as usize];
    base[..header_size].copy_from_slice(&primary[..header_size]);
    set64(&mut base, 24, 1);
    set64(&mut base, 40, 2 + entry_sectors_t);
    set64(&mut base, 72, 2);
    let (new_primary, backup) =
        header_pair(base, header_size, mv, layout.new_id.as_ref(), &entries);
    let mut padded = entries;
    padded.resize((entry_sectors_t * tss) as usize, 0);
    // the source's primary header and entries go, then the new ones land at the new LBAs
    patch(areas, extra, ss, &vec![0u8; ss as usize]);
    patch(
        areas,
        extra,
        old_entries_at,
        &vec![0u8; padded.len().min((h.entry_count as usize) * size)],
    );
    patch(areas, extra, tss, &new_primary);
    patch(areas, extra, 2 * tss, &padded);
    // protective MBR: one 0xEE entry from LBA 1 over the disk (or 2^32 - 1 sectors)
    let n = layout.target_size / tss;
    for e in 0..4 {
        let at = 446 + e * 16;
        match mbr0[at + 4] {
            0 => {}
            0xEE => {
                set32(&mut mbr0, at + 8, 1);
                set32(&mut mbr0, at + 12, u32::try_from(n - 1).unwrap_or(u32::MAX));
            }
            _ => {
                return Err(Error::Unsupported(
                    "a hybrid MBR (MBR entries beside the protective one) cannot be moved to another sector size yet; remove them (gdisk, r then o) first".into(),
                ))
            }
        }
    }
    patch(areas, extra, 0, &mbr0);
    extra.push((mv.backup_entries_lba * tss, padded));
    extra.push((mv.backup_header_lba * tss, backup));
    Ok(())
}

/// Where the backup GPT goes on a target of `target_size` bytes, for the table read.
fn gpt_move_for(table: &PartitionTable, target_size: u64) -> Option<GptMove> {
    let g = table.gpt.as_ref()?;
    let ss = u64::from(table.sector_size);
    let entry_sectors = (u64::from(g.entry_count) * u64::from(g.entry_size)).div_ceil(ss);
    let n = target_size / ss;
    Some(GptMove {
        backup_header_lba: n.saturating_sub(1),
        backup_entries_lba: n.saturating_sub(1 + entry_sectors),
        last_usable_lba: n.saturating_sub(2 + entry_sectors),
    })
}

/// Rewrites the GPT read from `src` for a target of `target_size` bytes: `edit` may change
/// the entry array (given with the entry size; true when it did), then both headers get
/// the new backup location, last usable LBA, disk GUID (`new_id`) and CRCs; the protective
/// MBR's 0xEE entry is sized to the target. The primary header, the entries (when edited)
/// and sector 0 are patched into `areas`; the backup entries and header are appended to
/// `extra`.
#[allow(clippy::too_many_arguments)]
fn rewrite_gpt(
    src: &dyn BlockDev,
    ss: u64,
    target_size: u64,
    mv: &GptMove,
    new_id: Option<&[u8; 16]>,
    areas: &mut [(u64, Vec<u8>)],
    extra: &mut Vec<(u64, Vec<u8>)>,
    edit: impl FnOnce((&mut Vec<u8>, usize), &gpt::RawHeader) -> Result<bool>,
) -> Result<()> {
    let refused = |reason: String| Error::Refused {
        path: src.path().to_path_buf(),
        reason,
    };
    let primary = read_vec(src, ss, ss as usize)?;
    let h = gpt::parse_header(&primary, 1)
        .map_err(|r| refused(format!("its primary GPT header cannot be rewritten: {r}")))?;
    let mut entries = read_vec(src, h.entries_lba * ss, gpt::entry_array_bytes(&h) as usize)?;
    let edited = edit((&mut entries, h.entry_size as usize), &h)?;
    let header_size = le_u32(&primary, 12) as usize;
    let (new_primary, backup) = header_pair(primary.clone(), header_size, mv, new_id, &entries);
    patch(areas, extra, ss, &new_primary);
    if edited {
        patch(areas, extra, h.entries_lba * ss, &entries);
    }
    // protective MBR: the 0xEE entry covers the disk (or 2^32 - 1 sectors)
    let mut mbr0 = read_vec(src, 0, 512)?;
    let pmbr_len = u32::try_from(target_size / ss - 1).unwrap_or(u32::MAX);
    for e in 0..4 {
        let at = 446 + e * 16;
        if mbr0[at + 4] == 0xEE {
            set32(&mut mbr0, at + 12, pmbr_len);
        }
    }
    patch(areas, extra, 0, &mbr0);
    extra.push((mv.backup_entries_lba * ss, entries));
    extra.push((mv.backup_header_lba * ss, backup));
    Ok(())
}

/// Finishes both GPT headers from `primary` (a primary header, `header_size` bytes of it
/// covered by its CRC): the backup's place and the last usable LBA from `mv`, the disk GUID
/// `new_id`, the CRC of `entries`; then the backup (its own and the other header's LBA, its
/// entries' LBA). Both CRCs are sealed. Returns (primary, backup).
fn header_pair(
    mut primary: Vec<u8>,
    header_size: usize,
    mv: &GptMove,
    new_id: Option<&[u8; 16]>,
    entries: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let seal = |b: &mut [u8]| {
        b[16..20].fill(0);
        let crc = crc32fast::hash(&b[..header_size]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
    };
    set64(&mut primary, 32, mv.backup_header_lba);
    set64(&mut primary, 48, mv.last_usable_lba);
    if let Some(id) = new_id {
        let g = uuid::Builder::from_random_bytes(*id).into_uuid();
        primary[56..72].copy_from_slice(&g.to_bytes_le());
    }
    set32(&mut primary, 88, crc32fast::hash(entries));
    seal(&mut primary);
    let mut backup = primary.clone();
    set64(&mut backup, 24, mv.backup_header_lba);
    set64(&mut backup, 32, 1);
    set64(&mut backup, 72, mv.backup_entries_lba);
    seal(&mut backup);
    (primary, backup)
}

/// One extended boot record of an MBR disk's chain.
#[derive(Debug, Clone)]
pub struct Ebr {
    /// Where it is (LBA).
    pub lba: u64,
    /// Its sector.
    pub sector: Vec<u8>,
    /// Where its logical partition starts (LBA).
    pub data_lba: u64,
}

/// The EBR chain of the extended partition starting at `ext_lba`, in chain order (the
/// order of the logical partitions' numbers), at most [`mbr::MAX_LOGICAL`] records.
pub fn ebr_chain(src: &dyn BlockDev, ss: u64, ext_lba: u64) -> Result<Vec<Ebr>> {
    let mut out = Vec::new();
    let mut rel = 0u64;
    for _ in 0..mbr::MAX_LOGICAL {
        let lba = ext_lba + rel;
        let sector = read_vec(src, lba * ss, 512)?;
        if sector[510..512] != [0x55, 0xAA] {
            break;
        }
        let data_lba = lba + u64::from(le_u32(&sector, 446 + 8));
        let next = u64::from(le_u32(&sector, 446 + 16 + 8));
        let has_next = sector[446 + 16 + 4] != 0 && next > rel;
        if le_u32(&sector, 446 + 12) != 0 {
            if data_lba == lba {
                return Err(Error::Refused {
                    path: src.path().to_path_buf(),
                    reason: format!(
                        "the extended boot record at LBA {lba} describes a logical partition that starts on the record itself"
                    ),
                });
            }
            out.push(Ebr {
                lba,
                sector,
                data_lba,
            });
        }
        if !has_next {
            break;
        }
        rel = next;
    }
    Ok(out)
}

/// CHS bytes for `lba` as every partitioner writes them (255 heads, 63 sectors per track),
/// or the "beyond CHS" marker past cylinder 1023.
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / (255 * 63);
    if c > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let h = (lba / 63) % 255;
    let s = lba % 63 + 1;
    [
        h as u8,
        (s as u8) | (((c >> 2) & 0xC0) as u8),
        (c & 0xFF) as u8,
    ]
}

/// Writes an MBR or EBR entry at `at`: start LBA (relative as the caller gives it), sector
/// count, and CHS from the absolute LBAs.
fn set_entry(b: &mut [u8], at: usize, rel_start: u64, abs_start: u64, sectors: u64) -> Result<()> {
    let to32 = |v: u64| {
        u32::try_from(v).map_err(|_| {
            Error::Unsupported(format!(
                "{v} sectors do not fit an MBR entry (2^32 - 1 at most)"
            ))
        })
    };
    set32(b, at + 8, to32(rel_start)?);
    set32(b, at + 12, to32(sectors)?);
    b[at + 1..at + 4].copy_from_slice(&chs(abs_start));
    b[at + 5..at + 8].copy_from_slice(&chs(abs_start + sectors.max(1) - 1));
    Ok(())
}

/// Rewrites the table read from `src` for `placed` (the fitted layout: every partition's new
/// start and size, numbers as in `table`) on a target of `target_size` bytes, keeping
/// everything else: disk GUID or MBR signature, partition GUIDs, types, names, attributes,
/// boot flags and code.
///
/// GPT: each entry's first and last LBA, then both headers as for any GPT edit (backup at
/// the target's end). MBR: the primary entries; the extended partition spans from its first
/// EBR to its last logical partition's end (never past the next primary), and every EBR is
/// rebuilt where its logical partition now starts (the same distance before it as on the
/// source), linked in the same order. Like [`apply`], patches `areas` and returns the other
/// writes.
pub fn apply_fit(
    table: &PartitionTable,
    src: &dyn BlockDev,
    placed: &[super::fit::Placed],
    target_size: u64,
    areas: &mut [(u64, Vec<u8>)],
) -> Result<Vec<(u64, Vec<u8>)>> {
    let ss = u64::from(table.sector_size);
    let mut extra = Vec::new();
    let refused = |reason: String| Error::Refused {
        path: src.path().to_path_buf(),
        reason,
    };
    for p in placed {
        if p.new_start % ss != 0 || p.new_size % ss != 0 || p.new_size == 0 {
            return Err(refused(format!(
                "partition {} would not be a whole number of sectors",
                p.number
            )));
        }
    }
    let changes = placed
        .iter()
        .any(|p| p.new_start != p.old_start || p.new_size != p.old_size);
    if table.kind == TableKind::Gpt {
        // a hybrid MBR's entries name partitions by place too; they are not rewritten
        let mbr0 = read_vec(src, 0, 512)?;
        let hybrid = (0..4).any(|e| {
            let t = mbr0[446 + e * 16 + 4];
            t != 0 && t != 0xEE
        });
        if hybrid && changes {
            return Err(refused(
                "it has a hybrid MBR (MBR entries beside the protective one), whose entries would still point at the old places; remove them (gdisk, r then o) or fit without moving".into(),
            ));
        }
        let mv = gpt_move_for(table, target_size)
            .ok_or_else(|| refused("its GPT header was not read".into()))?;
        rewrite_gpt(
            src,
            ss,
            target_size,
            &mv,
            None,
            areas,
            &mut extra,
            |(e, size), _| {
                for p in placed {
                    let i = (p.number as usize - 1) * size;
                    if e.len() < i + 48 || le_u64(e, i + 32).checked_mul(ss) != Some(p.old_start) {
                        return Err(refused(format!(
                            "GPT entry {} does not start where the plan says",
                            p.number
                        )));
                    }
                    if p.new_start / ss + p.new_size / ss - 1 > mv.last_usable_lba {
                        return Err(refused(format!(
                            "partition {} would end past the target's last usable sector",
                            p.number
                        )));
                    }
                    set64(e, i + 32, p.new_start / ss);
                    set64(e, i + 40, (p.new_start + p.new_size) / ss - 1);
                }
                Ok(true)
            },
        )?;
        return Ok(extra);
    }
    let by_number = |n: u32| placed.iter().find(|p| p.number == n);
    let mut mbr0 = read_vec(src, 0, 512)?;
    let ext = table.partitions.iter().find(|p| p.extended);
    for p in table
        .partitions
        .iter()
        .filter(|p| !p.logical && !p.extended)
    {
        let Some(f) = by_number(p.number) else {
            continue;
        };
        let at = 446 + (p.number as usize - 1) * 16;
        if u64::from(le_u32(&mbr0, at + 8)) * ss != f.old_start {
            return Err(refused(format!(
                "MBR entry {} does not start where the plan says",
                p.number
            )));
        }
        set_entry(
            &mut mbr0,
            at,
            f.new_start / ss,
            f.new_start / ss,
            f.new_size / ss,
        )?;
    }
    if let Some(x) = ext {
        let chain = ebr_chain(src, ss, x.first_lba)?;
        let mut logicals: Vec<&Partition> = table.partitions.iter().filter(|p| p.logical).collect();
        logicals.sort_by_key(|p| p.number);
        if chain.len() != logicals.len() {
            return Err(refused(format!(
                "its extended partition's chain holds {} records for {} logical partitions",
                chain.len(),
                logicals.len()
            )));
        }
        // new EBR places: the same distance before each logical partition as on the source
        let mut news = Vec::with_capacity(chain.len());
        for (e, p) in chain.iter().zip(&logicals) {
            let f = by_number(p.number).ok_or_else(|| {
                refused(format!("logical partition {} is not in the plan", p.number))
            })?;
            if e.data_lba * ss != f.old_start {
                return Err(refused(format!(
                    "the extended boot record of logical partition {} does not point at it",
                    p.number
                )));
            }
            let room = e.data_lba - e.lba;
            let new_data = f.new_start / ss;
            let new_lba = new_data.checked_sub(room).ok_or_else(|| {
                refused(format!(
                    "no room for the EBR of logical partition {}",
                    p.number
                ))
            })?;
            news.push((new_lba, new_data, f.new_size / ss));
        }
        let ext_start = news.first().map_or(x.first_lba, |n| n.0.min(x.first_lba));
        let last_end = news.last().map_or(x.first_lba + 1, |n| n.1 + n.2);
        // the next primary after the extended partition, where it now starts
        let bound = table
            .partitions
            .iter()
            .filter(|p| !p.logical && !p.extended && p.start_bytes > x.start_bytes)
            .filter_map(|p| by_number(p.number).map(|f| f.new_start / ss))
            .min()
            .unwrap_or(target_size / ss);
        let overlaps = placed
            .iter()
            .any(|p| p.new_start < x.end_bytes() && x.start_bytes < p.new_start + p.new_size);
        if news.is_empty() && (overlaps || x.end_bytes() > target_size) {
            return Err(refused(format!(
                "its empty extended partition {} would overlap a moved partition or pass the target's end; delete it first",
                x.number
            )));
        }
        let ext_end = (x.last_lba + 1).min(bound).max(last_end);
        let at = 446 + (x.number as usize - 1) * 16;
        set_entry(&mut mbr0, at, ext_start, ext_start, ext_end - ext_start)?;
        for (i, (e, n)) in chain.iter().zip(&news).enumerate() {
            let mut b = e.sector.clone();
            set_entry(&mut b, 446, n.1 - n.0, n.1, n.2)?;
            match news.get(i + 1) {
                Some(next) => {
                    set_entry(
                        &mut b,
                        462,
                        next.0 - ext_start,
                        next.0,
                        next.1 + next.2 - next.0,
                    )?;
                    if b[462 + 4] == 0 {
                        b[462 + 4] = 0x05;
                    }
                }
                None => b[462..478].fill(0),
            }
            patch(areas, &mut extra, n.0 * ss, &b);
        }
    }
    patch(areas, &mut extra, 0, &mbr0);
    Ok(extra)
}

/// Copies into `buf` (the bytes at disk offset `off`) every part of `patches` that falls
/// inside it, so data written before the tables already holds their final bytes.
pub fn overlay(buf: &mut [u8], off: u64, patches: &[(u64, Vec<u8>)]) {
    let end = off + buf.len() as u64;
    for (at, bytes) in patches {
        let p_end = at + bytes.len() as u64;
        let (s, e) = ((*at).max(off), p_end.min(end));
        if s < e {
            buf[(s - off) as usize..(e - off) as usize]
                .copy_from_slice(&bytes[(s - at) as usize..(e - at) as usize]);
        }
    }
}

#[cfg(test)]
impl Layout {
    /// A layout for the TUI's snapshot tests.
    pub(crate) fn example(
        table: &'static str,
        min_target_size: u64,
        gpt_move: Option<GptMove>,
        grow: Option<Grow>,
    ) -> Layout {
        Layout {
            table,
            min_target_size,
            gpt_move,
            grow,
            grow_skipped: None,
            new_disk_id: None,
            sector_change: None,
            source_gpt_tail: None,
            new_id: None,
            sector_size: 512,
            target_size: 0,
            source_size: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::partition::{PartType, Partition, PartitionTable};

    fn part(number: u32, first: u64, sectors: u64, logical: bool, extended: bool) -> Partition {
        Partition {
            number,
            first_lba: first,
            last_lba: first + sectors - 1,
            start_bytes: first * 512,
            size_bytes: sectors * 512,
            part_type: PartType::Mbr(if extended { 5 } else { 0x83 }),
            type_name: None,
            name: None,
            uuid: None,
            attributes: 0,
            logical,
            extended,
        }
    }

    fn mbr(parts: Vec<Partition>) -> PartitionTable {
        PartitionTable {
            kind: TableKind::Mbr,
            sector_size: 512,
            disk_id: "0x1".into(),
            partitions: parts,
            gpt: None,
            diagnostics: vec![],
        }
    }

    #[test]
    fn an_empty_extended_partition_after_the_last_one_stops_the_grow() {
        let t = mbr(vec![
            part(1, 2048, 4096, false, false),
            part(2, 8192, 2048, false, true),
        ]);
        let l = plan_layout(&t, 16 << 20, Path::new("t"), 64 << 20, 512, true, false).unwrap();
        assert!(l.grow.is_none());
        assert!(l
            .grow_skipped
            .unwrap()
            .contains("partition 2 ends after it"));
    }

    #[test]
    fn a_logical_partition_and_its_container_stay_within_32_bit_sizes() {
        // extended at 2099200, logical at 2101248, on a 3 TB target: the container's size
        // counts from its own start, so the logical stops 2^32 - 1 sectors after that
        let t = mbr(vec![
            part(1, 2048, 2097152, false, false),
            part(2, 2099200, 4096, false, true),
            part(5, 2101248, 2048, true, false),
        ]);
        let target = 3_000_000_000_000u64;
        let l = plan_layout(&t, 2 << 30, Path::new("t"), target, 512, true, false).unwrap();
        let g = l.grow.unwrap();
        assert_eq!(g.number, 5);
        assert_eq!(g.extended, Some(2));
        assert_eq!(
            g.start_bytes + g.new_size_bytes,
            (2099200 + u64::from(u32::MAX)) * 512
        );
        assert!(g.limit.is_some());
    }

    #[test]
    fn an_mbr_moves_to_4096_byte_sectors_and_unalignable_tables_are_refused() {
        use crate::blockdev::MemDev;
        let t = mbr(vec![part(1, 2048, 20480, false, false)]);
        let src = MemDev::new(16 << 20, 512);
        let mut sector0 = vec![0u8; 512];
        sector0[446 + 4] = 0x83;
        set32(&mut sector0, 446 + 8, 2048);
        set32(&mut sector0, 446 + 12, 20480);
        sector0[510..].copy_from_slice(&[0x55, 0xAA]);
        src.write_at(&sector0, 0).unwrap();
        let l = plan_layout(&t, 16 << 20, Path::new("t"), 16 << 20, 4096, false, false).unwrap();
        assert_eq!(
            l.sector_change,
            Some(SectorChange {
                from: 512,
                to: 4096
            })
        );
        let mut areas = vec![(0u64, vec![0u8; 1 << 20])];
        let extra = apply(&l, &src, &mut areas).unwrap();
        assert!(extra.is_empty());
        let b = &areas[0].1;
        assert_eq!((le_u32(b, 446 + 8), le_u32(b, 446 + 12)), (256, 2560));

        // a start that no 4096-byte sector holds
        let odd = mbr(vec![part(1, 2049, 20480, false, false)]);
        let e = plan_layout(&odd, 16 << 20, Path::new("t"), 16 << 20, 4096, false, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("partition 1") && e.contains("4096-byte boundary"),
            "{e}"
        );
        // logical partitions are not translated yet
        let logical = mbr(vec![
            part(2, 2048, 8192, false, true),
            part(5, 4096, 2048, true, false),
        ]);
        let e = plan_layout(
            &logical,
            16 << 20,
            Path::new("t"),
            16 << 20,
            4096,
            false,
            false,
        )
        .unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e}");
    }

    #[test]
    fn too_small_names_the_partition_in_the_way() {
        let t = mbr(vec![part(1, 2048, 20480, false, false)]);
        let e = plan_layout(&t, 64 << 20, Path::new("t"), 8 << 20, 512, false, false).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("partition 1") && m.contains("missing"), "{m}");
    }

    #[test]
    fn overlay_copies_only_the_overlapping_parts() {
        let mut buf = vec![0u8; 8];
        overlay(
            &mut buf,
            100,
            &[(98, vec![1, 2, 3, 4]), (106, vec![5, 6, 7]), (200, vec![9])],
        );
        assert_eq!(buf, vec![3, 4, 0, 0, 0, 0, 5, 6]);
    }
}
