//! The survey every job that copies a disk starts with: which regions the disk has (boot
//! area, gaps, partitions, end of disk), what each filesystem's used-block map proves in
//! use, and the byte extents to copy. Image and clone use it today; shrinking (`--fit`) and
//! rescue imaging will too. Reads the source only.

use crate::blockdev::{BlockDev, Slice};
use crate::error::Result;
use crate::fsmap::{self, FsMap, Used};
use crate::image::{CopyMethod, Region, RegionKind};
use crate::partition::PartitionTable;
use crate::units::{human_bytes, MIB};

/// Unallocated gaps up to this size are copied whole.
const SMALL_GAP: u64 = 16 * MIB;

fn total(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|r| r.1).sum()
}

impl Region {
    /// A region holding a filesystem (or unknown data), copied per `ranges`.
    #[allow(clippy::too_many_arguments)]
    fn filesystem(
        what: RegionKind,
        partition: Option<u32>,
        start_bytes: u64,
        size_bytes: u64,
        map: &FsMap,
        method: CopyMethod,
        reason: Option<String>,
        ranges: &[(u64, u64)],
    ) -> Region {
        let fs = map.fs.as_ref();
        Region {
            what,
            partition,
            start_bytes,
            size_bytes,
            fs: fs.map(|f| f.kind.blkid_name().to_string()),
            label: fs.and_then(|f| f.label.clone()),
            uuid: fs.and_then(|f| f.uuid.clone()),
            method,
            reason,
            used_bytes: map.used_bytes(),
            copy_bytes: total(ranges),
            stored_bytes: None,
            chunks: None,
        }
    }

    /// Space outside partitions: copied whole, or (`reason` says what) only in part.
    fn unallocated(
        what: RegionKind,
        start_bytes: u64,
        size_bytes: u64,
        ranges: &[(u64, u64)],
        reason: Option<String>,
    ) -> Region {
        let copy = total(ranges);
        Region {
            what,
            partition: None,
            start_bytes,
            size_bytes,
            fs: None,
            label: None,
            uuid: None,
            method: if copy == size_bytes {
                CopyMethod::All
            } else {
                CopyMethod::Partial
            },
            reason: reason.filter(|_| copy != size_bytes),
            used_bytes: None,
            copy_bytes: copy,
            stored_bytes: None,
            chunks: None,
        }
    }
}

/// The table to follow when copying a disk: `table` when it is valid and has partitions.
/// A table with errors is not followed (the whole disk is copied instead), and a warning
/// naming its problems is added to `warnings`.
pub(crate) fn usable_table<'t>(
    table: Option<&'t PartitionTable>,
    warnings: &mut Vec<String>,
) -> Option<&'t PartitionTable> {
    match table {
        Some(t) if !t.has_errors() && !t.partitions.is_empty() => Some(t),
        Some(t) if t.has_errors() => {
            warnings.push(format!(
                "the {} partition table has errors, so the whole disk is copied as it is: {}",
                t.kind.as_str(),
                t.diagnostics
                    .iter()
                    .map(|d| d.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            None
        }
        _ => None,
    }
}

/// What a survey copies whole besides what no map proves.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SurveyOpts {
    /// A rescue: a filesystem whose structures fail to read is copied whole instead of
    /// failing the survey.
    pub lenient: bool,
    /// `--full-swap`: swap areas whole, not just their header.
    pub full_swap: bool,
}

/// A byte range to copy: `(start, len, index of its region)`.
pub(crate) type Extent = (u64, u64, usize);

/// Where the data of `dev` is: for each region (boot area, gap, partition, end of disk) what
/// is copied, and the byte extents `(start, len, region index)` to copy, in disk order.
/// `usable` is a valid partition table (or `None`: the device as one filesystem or unknown);
/// `selection` limits the partitions whose data is copied (the table areas always are).
/// `opts` says what else to copy whole (see [`SurveyOpts`]).
pub(crate) fn survey(
    dev: &dyn BlockDev,
    usable: Option<&PartitionTable>,
    selection: Option<&[u32]>,
    opts: SurveyOpts,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Region>, Vec<Extent>)> {
    let lenient = opts.lenient;
    // `lenient` (a rescue): a filesystem whose structures cannot be read is copied whole
    let map_filesystem = |dev: &dyn BlockDev| match fsmap::map_filesystem(dev) {
        Ok(FsMap {
            fs: Some(fs),
            used: Used::Ranges { .. },
        }) if opts.full_swap && fs.kind == fsmap::FsKind::Swap => Ok(FsMap {
            fs: Some(fs),
            used: Used::All {
                reason: "--full-swap: every block of the swap area is copied".into(),
            },
        }),
        Err(e @ crate::Error::Read { .. }) if lenient => Ok(FsMap {
            fs: fsmap::detect(dev).ok().flatten(),
            used: Used::All {
                reason: format!(
                    "its filesystem could not be read ({}): every block is copied",
                    crate::error::with_causes(&e)
                ),
            },
        }),
        other => other,
    };
    let size = dev.len();
    let mut regions = Vec::new();
    let mut extents: Vec<(u64, u64, usize)> = Vec::new();
    let mut push = |regions: &mut Vec<Region>, r: Region, ranges: Vec<(u64, u64)>| {
        let idx = regions.len();
        for (s, l) in ranges {
            if l > 0 {
                extents.push((s, l, idx));
            }
        }
        regions.push(r);
    };

    match usable {
        None => {
            // No usable table: the device may hold a filesystem directly, or be unknown.
            let map = map_filesystem(dev)?;
            let (method, reason, ranges) = match &map.used {
                Used::Ranges { ranges } => (CopyMethod::UsedBlocks, None, ranges.clone()),
                Used::All { reason } => (CopyMethod::All, Some(reason.clone()), vec![(0, size)]),
            };
            if let Some(r) = &reason {
                if map.fs.is_some() {
                    warnings.push(format!("whole device copied: {r}"));
                }
            }
            let what = if map.fs.is_some() {
                RegionKind::Filesystem
            } else {
                RegionKind::Disk
            };
            let r = Region::filesystem(what, None, 0, size, &map, method, reason, &ranges);
            push(&mut regions, r, ranges);
        }
        Some(t) => {
            let mut parts: Vec<_> = t.partitions.iter().filter(|p| !p.extended).collect();
            parts.sort_by_key(|p| p.start_bytes);
            let ext = t.partitions.iter().find(|p| p.extended);
            let in_extended =
                |s: u64, e: u64| ext.is_some_and(|x| s >= x.start_bytes && e <= x.end_bytes());
            let areas = t.structure_areas(size);
            // Gaps before a partition also keep whatever of them lies inside the extended
            // partition, whole: EBRs live there, and a logical partition may sit far after
            // its EBR (a first gap that runs from LBA 0 into the extended partition).
            let mut areas_before = areas.clone();
            if let Some(x) = ext {
                areas_before.push((x.start_bytes, x.end_bytes().saturating_sub(x.start_bytes)));
            }
            let mut pos = 0u64;
            let tail_start = size
                .saturating_sub(MIB)
                .max(parts.last().map_or(0, |p| p.end_bytes()));
            for (i, p) in parts.iter().enumerate() {
                let start = p.start_bytes.min(size);
                if start > pos {
                    let (what, ranges, reason) =
                        gap_ranges(i == 0, pos, start, in_extended(pos, start), &areas_before);
                    let r = Region::unallocated(what, pos, start - pos, &ranges, reason);
                    push(&mut regions, r, ranges);
                }
                let end = p.end_bytes().min(size);
                let selected = selection.is_none_or(|s| s.contains(&p.number));
                let slice = Slice::new(dev, start, end.saturating_sub(start));
                let map = if selected {
                    map_filesystem(&slice)?
                } else {
                    FsMap {
                        fs: fsmap::detect(&slice).ok().flatten(),
                        used: Used::All {
                            reason: "not selected".into(),
                        },
                    }
                };
                let (method, reason, ranges) = match (&map.used, selected) {
                    (_, false) => (
                        CopyMethod::Skipped,
                        Some("not selected with --partitions".into()),
                        vec![],
                    ),
                    (Used::Ranges { ranges }, true) => {
                        (CopyMethod::UsedBlocks, None, ranges.clone())
                    }
                    (Used::All { reason }, true) => {
                        if map.fs.is_some()
                            || reason.starts_with("its filesystem could not be read")
                        {
                            warnings.push(format!(
                                "partition {} is copied block by block: {reason}",
                                p.number
                            ));
                        }
                        (
                            CopyMethod::All,
                            Some(reason.clone()),
                            vec![(0, end - start)],
                        )
                    }
                };
                let ranges: Vec<(u64, u64)> =
                    ranges.into_iter().map(|(s, l)| (s + start, l)).collect();
                let r = Region::filesystem(
                    RegionKind::Partition,
                    Some(p.number),
                    start,
                    end - start,
                    &map,
                    method,
                    reason,
                    &ranges,
                );
                push(&mut regions, r, ranges);
                pos = pos.max(end);
            }
            if pos < size {
                // Trailing space: the last MiB (backup GPT) always, the rest like a gap.
                let (mut ranges, reason) = if tail_start > pos {
                    let (_, r, why) = gap_ranges(false, pos, tail_start, false, &areas);
                    (r, why)
                } else {
                    (Vec::new(), None)
                };
                ranges.push((tail_start.max(pos), size - tail_start.max(pos)));
                let ranges = merge(ranges);
                let r =
                    Region::unallocated(RegionKind::EndOfDisk, pos, size - pos, &ranges, reason);
                push(&mut regions, r, ranges);
            }
        }
    }

    extents.sort_by_key(|e| e.0);
    Ok((regions, extents))
}

/// What is copied of an unallocated gap `[s, e)`: its kind (the boot area when `first`),
/// the byte ranges, and why not all of it (`None` when it is copied whole).
///
/// A gap up to [`SMALL_GAP`] is copied whole (1 or 2 MiB alignment gaps, a boot loader in
/// the post-MBR gap), and so is a gap inside an extended partition (it holds the EBRs). A
/// larger one keeps its first MiB (for the boot area: MBR, GPT, boot loader) and last MiB,
/// plus whatever of `table_areas` (the partition table's own structures, see
/// [`PartitionTable::structure_areas`]) lies inside it: a 15 TiB disk whose only partition
/// sits at its end is read in seconds, not hours, and a GPT whose entries lie beyond the
/// first MiB still comes back whole.
pub(crate) fn gap_ranges(
    first: bool,
    s: u64,
    e: u64,
    in_extended: bool,
    table_areas: &[(u64, u64)],
) -> (RegionKind, Vec<(u64, u64)>, Option<String>) {
    let len = e - s;
    let what = if first {
        RegionKind::BootArea
    } else {
        RegionKind::Gap
    };
    if in_extended || len <= SMALL_GAP {
        return (what, vec![(s, len)], None);
    }
    let ends = [(s, MIB), (e - MIB, MIB)];
    let inside: Vec<(u64, u64)> = table_areas
        .iter()
        .filter_map(|&(a, l)| {
            let lo = a.max(s);
            let hi = a.saturating_add(l).min(e);
            (hi > lo).then(|| (lo, hi - lo))
        })
        .filter(|&(a, l)| !ends.iter().any(|&(x, n)| a >= x && a + l <= x + n))
        .collect();
    let mut reason = if first {
        "only its first MiB (MBR, GPT, boot loader) and last MiB are copied".to_string()
    } else {
        "unallocated: only its first and last MiB are copied".to_string()
    };
    if !inside.is_empty() {
        let at: Vec<String> = inside
            .iter()
            .map(|(a, l)| format!("{} at byte {a}", human_bytes(*l)))
            .collect();
        reason.push_str(&format!(
            ", and the partition table's structures inside it ({})",
            at.join(", ")
        ));
    }
    let mut ranges = ends.to_vec();
    ranges.extend(inside);
    (what, merge(ranges), Some(reason))
}

fn merge(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, l) in r {
        if let Some(last) = out.last_mut() {
            if s <= last.0 + last.1 {
                let end = (last.0 + last.1).max(s + l);
                last.1 = end - last.0;
                continue;
            }
        }
        out.push((s, l));
    }
    out
}

/// Splits sorted extents into chunks at multiples of `cs`, joining touching pieces of one
/// region within a window.
pub(crate) fn chunk(extents: &[(u64, u64, usize)], cs: u64) -> Vec<(u64, u32, usize)> {
    let mut out: Vec<(u64, u32, usize)> = Vec::new();
    for &(s, l, region) in extents {
        let mut pos = s;
        let end = s + l;
        while pos < end {
            let window_end = (pos / cs + 1) * cs;
            let piece_end = end.min(window_end);
            if let Some(last) = out.last_mut() {
                let last_end = last.0 + u64::from(last.1);
                let same_window = last.0 / cs == pos / cs;
                // Only touching ranges join. Copying small gaps along was measured with
                // bench/ (512 MiB disk): a 64 KiB allowance stored 1.6% more, because
                // deleted-file garbage in the gaps costs more than chunk boundaries save.
                if last.2 == region && same_window && pos == last_end {
                    last.1 = (piece_end - last.0) as u32;
                    pos = piece_end;
                    continue;
                }
            }
            out.push((pos, (piece_end - pos) as u32, region));
            pos = piece_end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The survey of `dev` with `table`, default options; it must succeed.
    fn survey_of(dev: &dyn BlockDev, table: &PartitionTable) -> (Vec<Region>, Vec<Extent>) {
        let mut warnings = Vec::new();
        match survey(dev, Some(table), None, SurveyOpts::default(), &mut warnings) {
            Ok(r) => r,
            Err(e) => panic!("survey: {e}"),
        }
    }

    #[test]
    fn chunks_split_at_aligned_windows_and_join_touching_ranges() {
        let cs = 1 << 20;
        let ext = vec![
            (0, 4096, 0),
            (4096, 4096, 0),               // touching: joined
            (1_000_000, 100_000, 0),       // crosses the 1 MiB boundary: split
            (2 << 20, 4096, 1),            // new region
            ((2 << 20) + 4096, 512, 1),    // touching: joined
            ((2 << 20) + 500_000, 512, 1), // a gap: separate
        ];
        let c = chunk(&ext, cs);
        assert_eq!(
            c,
            vec![
                (0, 8192, 0),
                (1_000_000, (cs - 1_000_000) as u32, 0),
                (cs, (1_100_000 - cs) as u32, 0),
                (2 << 20, 4096 + 512, 1),
                ((2 << 20) + 500_000, 512, 1),
            ]
        );
    }

    #[test]
    fn large_gaps_keep_only_their_ends() {
        let ranges = |first, s, e, ext| gap_ranges(first, s, e, ext, &[]).1;
        // a boot area up to 16 MiB (alignment gap, GRUB's core.img) is copied whole
        assert_eq!(ranges(true, 0, MIB, false), vec![(0, MIB)]);
        assert_eq!(ranges(true, 0, 16 * MIB, false), vec![(0, 16 * MIB)]);
        // a larger one keeps its first and last MiB, like any large gap
        assert_eq!(
            ranges(true, 0, 100 * MIB, false),
            vec![(0, MIB), (99 * MIB, MIB)]
        );
        let (what, _, why) = gap_ranges(true, 0, 100 * MIB, false, &[]);
        assert_eq!(what, RegionKind::BootArea);
        assert_eq!(
            why.as_deref(),
            Some("only its first MiB (MBR, GPT, boot loader) and last MiB are copied")
        );
        assert_eq!(ranges(false, 0, 10 * MIB, false), vec![(0, 10 * MIB)]);
        assert_eq!(
            ranges(false, 0, 100 * MIB, false),
            vec![(0, MIB), (99 * MIB, MIB)]
        );
        // inside an extended partition: EBRs may be anywhere, so all of it
        assert_eq!(ranges(false, 0, 100 * MIB, true), vec![(0, 100 * MIB)]);
        // 15 TiB before the only partition: 2 MiB read, not 15 TiB
        let tib15 = 15 << 40;
        assert_eq!(
            ranges(true, 0, tib15, false),
            vec![(0, MIB), (tib15 - MIB, MIB)]
        );
    }

    #[test]
    fn table_structures_in_a_large_gap_are_copied_and_named() {
        // entries at 8 MiB; one at 512 (inside the first MiB) and one straddling the gap's
        // end add nothing new or only their part inside the gap
        let areas = [(512, 16384), (8 * MIB, 16384), (100 * MIB - 4096, 8192)];
        let (_, r, why) = gap_ranges(true, 0, 100 * MIB, false, &areas);
        assert_eq!(r, vec![(0, MIB), (8 * MIB, 16384), (99 * MIB, MIB)]);
        let why = why.unwrap_or_default();
        assert!(
            why.ends_with(
                "and the partition table's structures inside it (16.0 KiB at byte 8388608)"
            ),
            "{why}"
        );
        // a small gap is whole anyway, and areas outside the gap are ignored
        assert_eq!(
            gap_ranges(false, 0, 10 * MIB, false, &areas).1,
            vec![(0, 10 * MIB)]
        );
        assert_eq!(
            gap_ranges(false, 200 * MIB, 300 * MIB, false, &areas).1,
            vec![(200 * MIB, MIB), (299 * MIB, MIB)]
        );
    }

    /// A GPT disk of 66 MiB whose primary entry array a header put at 8 MiB and whose only
    /// partition starts at 64 MiB: the survey copies the first MiB, the array and the last MiB
    /// before the partition, never the rest of the 64 MiB boot area.
    #[test]
    fn survey_copies_a_gpt_entry_array_beyond_the_first_mib() {
        use crate::blockdev::MemDev;
        use crate::partition::{GptInfo, MbrRole, PartType, Partition, PartitionTable, TableKind};
        let size = 66 * MIB;
        let dev = MemDev::new(size as usize, 512);
        let part = Partition {
            number: 1,
            first_lba: 64 * MIB / 512,
            last_lba: 65 * MIB / 512 - 1,
            start_bytes: 64 * MIB,
            size_bytes: MIB,
            part_type: PartType::Gpt(uuid::Uuid::nil()),
            type_name: None,
            name: None,
            uuid: None,
            attributes: 0,
            logical: false,
            extended: false,
        };
        let table = PartitionTable {
            kind: TableKind::Gpt,
            sector_size: 512,
            disk_id: String::new(),
            partitions: vec![part],
            gpt: Some(GptInfo {
                source: "primary",
                primary_lba: Some(1),
                backup_lba: Some(size / 512 - 1),
                first_usable_lba: 34,
                last_usable_lba: size / 512 - 34,
                entry_count: 128,
                entry_size: 128,
                primary_entries_lba: Some(8 * MIB / 512),
                backup_entries_lba: Some(size / 512 - 33),
                mbr: MbrRole::Protective,
            }),
            diagnostics: Vec::new(),
        };
        let (regions, extents) = survey_of(&dev, &table);
        assert_eq!(regions[0].what, RegionKind::BootArea);
        assert_eq!(regions[0].method, CopyMethod::Partial);
        assert_eq!(regions[0].copy_bytes, 2 * MIB + 16384);
        let boot: Vec<(u64, u64)> = extents
            .iter()
            .filter(|e| e.2 == 0)
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(boot, vec![(0, MIB), (8 * MIB, 16384), (63 * MIB, MIB)]);
        // the backup GPT lies in the end of disk, which is copied whole (1 MiB)
        let last = regions.last().map(|r| (r.what, r.copy_bytes));
        assert_eq!(last, Some((RegionKind::EndOfDisk, MIB)));
    }

    #[test]
    fn a_first_gap_running_into_the_extended_partition_keeps_that_part_whole() {
        use crate::blockdev::MemDev;
        use crate::partition::{PartType, Partition, PartitionTable, TableKind};
        let size = 120 * MIB;
        let dev = MemDev::new(size as usize, 512);
        let part = |number, start: u64, len: u64, logical, extended| Partition {
            number,
            first_lba: start / 512,
            last_lba: (start + len) / 512 - 1,
            start_bytes: start,
            size_bytes: len,
            part_type: PartType::Mbr(if extended { 0x0f } else { 0x83 }),
            type_name: None,
            name: None,
            uuid: None,
            attributes: 0,
            logical,
            extended,
        };
        // the extended partition starts at 40 MiB (its EBR), its only logical at 100 MiB:
        // the first gap runs from LBA 0 to 100 MiB, past the extended partition's start
        let table = PartitionTable {
            kind: TableKind::Mbr,
            sector_size: 512,
            disk_id: String::new(),
            partitions: vec![
                part(1, 40 * MIB, 80 * MIB, false, true),
                part(5, 100 * MIB, 10 * MIB, true, false),
            ],
            gpt: None,
            diagnostics: Vec::new(),
        };
        let (regions, extents) = survey_of(&dev, &table);
        assert_eq!(regions[0].what, RegionKind::BootArea);
        let boot: Vec<(u64, u64)> = extents
            .iter()
            .filter(|e| e.2 == 0)
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(boot, vec![(0, MIB), (40 * MIB, 60 * MIB)]);
    }
}
