//! `image`: a whole disk (or a chosen set of partitions) into one verified image file.
//!
//! What is copied:
//! - everything before the first partition (MBR boot code, the GPT, the post-MBR gap that
//!   boot loaders use), the last MiB of the disk (the backup GPT), and every gap of up to
//!   16 MiB between partitions (alignment gaps and MBR extended boot records); of a larger
//!   unallocated gap only its first and last MiB;
//! - in each partition, the blocks its filesystem proves used, or every block when there is
//!   no map (unknown or damaged filesystem, journal to recover, hibernated Windows): see
//!   [`crate::fsmap`];
//! - all-zero chunks are recorded as zero and not stored.
//!
//! The whole table area is always imaged in full, whatever `--partitions` selects.

use super::events::{CancelToken, Phase, Reporter};
use super::safety;
use crate::blockdev::{BlockDev, FileDev, OpenMode, Slice};
use crate::discovery::SystemPaths;
use crate::error::{Error, Result};
use crate::fsmap::{self, FsMap, Used};
use crate::image::{format, Codec, EncodedChunk, Header, ImageWriter};
use crate::inspect::{self, DiskReport};
use crate::partition::{self, PartitionTable};
use crate::pipeline::{self, Shape};
use crate::units::MIB;
use serde::Serialize;
use std::cell::RefCell;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Default raw chunk size: 4 MiB, aligned to the disk.
pub const DEFAULT_CHUNK: u32 = 4 << 20;
/// Chunks whose reads are started ahead of the one being read.
const READ_AHEAD: usize = 4;
/// Unallocated gaps up to this size are copied whole.
const SMALL_GAP: u64 = 16 * MIB;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Block device or disk-image file.
    pub source: PathBuf,
    /// The image file to create.
    pub output: PathBuf,
    /// Partition numbers to include (`None` = all).
    pub partitions: Option<Vec<u32>>,
    /// zstd level (1..=19).
    pub level: i32,
    /// Worker threads (0 = every core).
    pub threads: usize,
    /// Raw chunk size in bytes (a power of two, 64 KiB..=64 MiB).
    pub chunk_size: u32,
    /// Logical sector size assumed for a disk-image file source.
    pub file_sector_size: u32,
}

/// One region of the source and what will be copied from it.
#[derive(Debug, Clone, Serialize)]
pub struct Region {
    /// "boot area", "gap", "partition", "end of disk".
    pub what: &'static str,
    /// Partition number, for partitions.
    pub partition: Option<u32>,
    /// First byte.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Filesystem (blkid name), for partitions.
    pub fs: Option<String>,
    /// Filesystem label.
    pub label: Option<String>,
    /// Filesystem UUID.
    pub uuid: Option<String>,
    /// "used-blocks", "all" (no map) or "skipped" (not selected / large unallocated gap).
    pub method: &'static str,
    /// Why the whole region is copied or skipped.
    pub reason: Option<String>,
    /// Bytes the filesystem says are used (`None` without a map).
    pub used_bytes: Option<u64>,
    /// Bytes that will be read.
    pub copy_bytes: u64,
}

fn total(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|r| r.1).sum()
}

impl Region {
    /// A region holding a filesystem (or unknown data), copied per `ranges`.
    #[allow(clippy::too_many_arguments)]
    fn filesystem(
        what: &'static str,
        partition: Option<u32>,
        start_bytes: u64,
        size_bytes: u64,
        map: &FsMap,
        method: &'static str,
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
        }
    }

    /// Space outside partitions: copied whole, or only at its ends when large.
    fn unallocated(
        what: &'static str,
        start_bytes: u64,
        size_bytes: u64,
        ranges: &[(u64, u64)],
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
            method: if copy == size_bytes { "all" } else { "partial" },
            reason: (copy != size_bytes)
                .then(|| "unallocated: only its first and last MiB are copied".to_string()),
            used_bytes: None,
            copy_bytes: copy,
        }
    }
}

/// The printable, serializable plan of an image job.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    /// Source path.
    pub source: PathBuf,
    /// Output path.
    pub output: PathBuf,
    /// Source size in bytes.
    pub size_bytes: u64,
    /// Logical sector size.
    pub sector_size: u32,
    /// Table kind ("gpt", "mbr") or `None`.
    pub table: Option<&'static str>,
    /// Regions in disk order.
    pub regions: Vec<Region>,
    /// Total bytes that will be read.
    pub copy_bytes: u64,
    /// Chunks that will be written.
    pub chunks: usize,
    /// Warnings that do not stop the job.
    pub warnings: Vec<String>,
    /// zstd level.
    pub level: i32,
    /// Worker threads.
    pub threads: usize,
    /// Raw chunk size.
    pub chunk_size: u32,
    #[serde(skip)]
    chunk_list: Vec<(u64, u32, usize)>,
    #[serde(skip)]
    report: Option<DiskReport>,
    #[serde(skip)]
    raw_table: Vec<u8>,
    #[serde(skip)]
    file_sector_size: u32,
}

/// What a finished image job reports.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSummary {
    /// The image file.
    pub path: PathBuf,
    /// Image ID, hex.
    pub image_id: String,
    /// Root hash, hex.
    pub root_hash: String,
    /// Chunks recorded.
    pub chunk_count: u64,
    /// Source bytes read.
    pub read_bytes: u64,
    /// Size of the image file.
    pub file_bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Builds the plan: reads the table and every filesystem map. Reads the source only.
pub fn plan(spec: &ImageSpec, paths: &SystemPaths) -> Result<ImagePlan> {
    if !(1..=19).contains(&spec.level) {
        return Err(Error::Refused {
            path: spec.output.clone(),
            reason: format!("zstd level {} is outside 1..=19", spec.level),
        });
    }
    if !spec.chunk_size.is_power_of_two()
        || !(64 << 10..=format::MAX_CHUNK_RAW).contains(&spec.chunk_size)
    {
        return Err(Error::Refused {
            path: spec.output.clone(),
            reason: format!(
                "chunk size {} is not a power of two between 64 KiB and 64 MiB",
                spec.chunk_size
            ),
        });
    }
    safety::check_image_source(paths, &spec.source, &spec.output)?;
    let dev = FileDev::open_with_sector_size(&spec.source, OpenMode::Read, spec.file_sector_size)?;
    let report = inspect::inspect_path(paths, &spec.source, spec.file_sector_size).ok();
    let table = partition::read_table(&dev)?;
    let size = dev.len();
    let ss = dev.geometry().logical_sector_size;
    let mut warnings = Vec::new();

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

    let usable = match &table {
        Some(t) if !t.has_errors() && !t.partitions.is_empty() => Some(t),
        Some(t) if t.has_errors() => {
            warnings.push(format!(
                "the {} partition table has errors, so the whole disk is copied: {}",
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
    };
    if let Some(sel) = &spec.partitions {
        let nums: Vec<u32> = usable
            .map(|t| t.partitions.iter().map(|p| p.number).collect())
            .unwrap_or_default();
        for n in sel {
            if !nums.contains(n) {
                return Err(Error::Refused {
                    path: spec.source.clone(),
                    reason: format!(
                        "it has no partition {n} (partitions: {})",
                        if nums.is_empty() {
                            "none".to_string()
                        } else {
                            nums.iter()
                                .map(u32::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                });
            }
        }
    }

    match usable {
        None => {
            // No usable table: the device may hold a filesystem directly, or be unknown.
            let map = fsmap::map_filesystem(&dev)?;
            let (method, reason, ranges) = match &map.used {
                Used::Ranges { ranges } => ("used-blocks", None, ranges.clone()),
                Used::All { reason } => ("all", Some(reason.clone()), vec![(0, size)]),
            };
            if let Some(r) = &reason {
                if map.fs.is_some() {
                    warnings.push(format!("whole device copied: {r}"));
                }
            }
            let what = if map.fs.is_some() {
                "filesystem"
            } else {
                "disk"
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
            let mut pos = 0u64;
            let tail_start = size
                .saturating_sub(MIB)
                .max(parts.last().map_or(0, |p| p.end_bytes()));
            for (i, p) in parts.iter().enumerate() {
                let start = p.start_bytes.min(size);
                if start > pos {
                    let (what, ranges) = gap_ranges(i == 0, pos, start, in_extended(pos, start));
                    let r = Region::unallocated(what, pos, start - pos, &ranges);
                    push(&mut regions, r, ranges);
                }
                let end = p.end_bytes().min(size);
                let selected = spec
                    .partitions
                    .as_ref()
                    .is_none_or(|s| s.contains(&p.number));
                let slice = Slice::new(&dev, start, end.saturating_sub(start));
                let map = if selected {
                    fsmap::map_filesystem(&slice)?
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
                        "skipped",
                        Some("not selected with --partitions".into()),
                        vec![],
                    ),
                    (Used::Ranges { ranges }, true) => ("used-blocks", None, ranges.clone()),
                    (Used::All { reason }, true) => {
                        if map.fs.is_some() {
                            warnings.push(format!(
                                "partition {} is copied block by block: {reason}",
                                p.number
                            ));
                        }
                        ("all", Some(reason.clone()), vec![(0, end - start)])
                    }
                };
                let ranges: Vec<(u64, u64)> =
                    ranges.into_iter().map(|(s, l)| (s + start, l)).collect();
                let r = Region::filesystem(
                    "partition",
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
                let mut ranges = if tail_start > pos {
                    gap_ranges(false, pos, tail_start, false).1
                } else {
                    Vec::new()
                };
                ranges.push((tail_start.max(pos), size - tail_start.max(pos)));
                let ranges = merge(ranges);
                let r = Region::unallocated("end of disk", pos, size - pos, &ranges);
                push(&mut regions, r, ranges);
            }
        }
    }

    extents.sort_by_key(|e| e.0);
    let chunk_list = chunk(&extents, u64::from(spec.chunk_size));
    let copy_bytes = chunk_list.iter().map(|c| u64::from(c.1)).sum();
    let raw_table = table
        .as_ref()
        .map(|t| raw_table_bytes(&dev, t))
        .transpose()?
        .unwrap_or_default();
    Ok(ImagePlan {
        source: spec.source.clone(),
        output: spec.output.clone(),
        size_bytes: size,
        sector_size: ss,
        table: table.as_ref().map(|t| t.kind.as_str()),
        regions,
        copy_bytes,
        chunks: chunk_list.len(),
        warnings,
        level: spec.level,
        threads: Shape::for_threads(spec.threads).threads,
        chunk_size: spec.chunk_size,
        chunk_list,
        report,
        raw_table,
        file_sector_size: spec.file_sector_size,
    })
}

/// The byte ranges copied from an unallocated gap.
fn gap_ranges(first: bool, s: u64, e: u64, in_extended: bool) -> (&'static str, Vec<(u64, u64)>) {
    let len = e - s;
    let what = if first { "boot area" } else { "gap" };
    if first || in_extended || len <= SMALL_GAP {
        return (what, vec![(s, len)]);
    }
    (what, vec![(s, MIB), (e - MIB, MIB)])
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
fn chunk(extents: &[(u64, u64, usize)], cs: u64) -> Vec<(u64, u32, usize)> {
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

/// LBA 0 and, for GPT, the primary header and entry array, as they are on the source.
fn raw_table_bytes(dev: &dyn BlockDev, t: &PartitionTable) -> Result<Vec<u8>> {
    let ss = u64::from(t.sector_size);
    let mut len = ss;
    if let Some(g) = &t.gpt {
        let entries = u64::from(g.entry_count) * u64::from(g.entry_size);
        len = (2 * ss + entries).min(4 * MIB);
    }
    crate::blockdev::read_clamped(dev, 0, len as usize)
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

fn compress(level: i32, data: &[u8]) -> Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if !matches!(&*c, Some((l, _)) if *l == level) {
            let comp = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::io("starting zstd", "<compressor>", e))?;
            *c = Some((level, comp));
        }
        match &mut *c {
            Some((_, comp)) => comp
                .compress(data)
                .map_err(|e| Error::io("compressing", "<chunk>", e)),
            None => Err(Error::Unsupported("zstd compressor missing".into())),
        }
    })
}

/// Compresses and hashes one chunk (a pipeline worker's job).
pub(crate) fn encode(level: i32, disk_offset: u64, raw: &[u8]) -> Result<EncodedChunk> {
    let hash = *blake3::hash(raw).as_bytes();
    let raw_len = raw.len() as u32;
    if raw.iter().all(|&b| b == 0) {
        return Ok(EncodedChunk {
            disk_offset,
            raw_len,
            hash,
            codec: Codec::Zero,
            data: Vec::new(),
        });
    }
    let z = compress(level, raw)?;
    let (codec, data) = if z.len() < raw.len() {
        (Codec::Zstd, z)
    } else {
        (Codec::Raw, raw.to_vec())
    };
    Ok(EncodedChunk {
        disk_offset,
        raw_len,
        hash,
        codec,
        data,
    })
}

/// Runs a plan: reads the source, writes the image, verifies it, and renames it into place.
pub fn run(plan: &ImagePlan, reporter: &Reporter, cancel: &CancelToken) -> Result<ImageSummary> {
    let dev = FileDev::open_with_sector_size(&plan.source, OpenMode::Read, plan.file_sector_size)?;
    run_on(plan, &dev, reporter, cancel)
}

/// [`run`] reading from an already open source (tests inject faults here).
pub fn run_on(
    plan: &ImagePlan,
    dev: &dyn BlockDev,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<ImageSummary> {
    let started = Instant::now();
    for w in &plan.warnings {
        reporter.warn(w.clone());
    }
    if dev.len() != plan.size_bytes {
        return Err(Error::Refused {
            path: plan.source.clone(),
            reason: format!(
                "its size changed from {} to {} bytes since the plan",
                plan.size_bytes,
                dev.len()
            ),
        });
    }
    let created_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let image_id = *uuid::Uuid::new_v4().as_bytes();
    let header = Header {
        minor: format::VERSION_MINOR,
        flags: 0,
        image_id,
        parent_id: [0; 16],
        parent_root: [0; 32],
        created_unix,
        chunk_size: plan.chunk_size,
        zstd_level: plan.level,
        source_size: plan.size_bytes,
        sector_size: plan.sector_size,
    };
    let mut writer = ImageWriter::create(&plan.output, header)?;
    let mut stored_per_region = vec![0u64; plan.regions.len()];
    let mut chunks_per_region = vec![0u64; plan.regions.len()];
    reporter.phase(Phase::Image, Some(plan.copy_bytes));
    let mut next = 0usize;
    let mut done = 0u64;
    let level = plan.level;
    pipeline::run(
        Shape::for_threads(plan.threads),
        cancel,
        |mut buf: Vec<u8>| {
            let Some(&(off, len, region)) = plan.chunk_list.get(next) else {
                return Ok(None);
            };
            next += 1;
            // Keep the device busy while the workers compress: ask for the chunks ahead.
            let ahead = if next == 1 {
                1..=READ_AHEAD
            } else {
                next - 1 + READ_AHEAD..=next - 1 + READ_AHEAD
            };
            for &(a_off, a_len, _) in ahead.filter_map(|i| plan.chunk_list.get(i)) {
                dev.will_need(a_off, u64::from(a_len));
            }
            buf.resize(len as usize, 0);
            if let Err(e) = dev.read_at(&mut buf, off) {
                return Err(locate_bad_read(dev, off, len, e));
            }
            Ok(Some((off, region, buf)))
        },
        |(off, region, buf): (u64, usize, Vec<u8>)| {
            let c = encode(level, off, &buf)?;
            Ok((c, region, buf))
        },
        |(c, region, buf)| {
            done += u64::from(c.raw_len);
            stored_per_region[region] += c.data.len() as u64;
            chunks_per_region[region] += 1;
            writer.push(c)?;
            reporter.progress(Phase::Image, done);
            Ok(buf)
        },
    )?;
    reporter.progress_final(Phase::Image, done);
    let meta = metadata(plan, created_unix, &stored_per_region, &chunks_per_region);
    let summary = writer.finish(&meta)?;

    // Nothing is reported as done before the file on disk has been read back and checked.
    reporter.phase(Phase::Verify, Some(summary.raw_bytes));
    let reader = crate::image::ImageReader::open(&summary.path)?;
    super::verify::verify_reader(&reader, plan.threads, reporter, cancel)?;

    Ok(ImageSummary {
        path: summary.path,
        image_id: crate::image::hex(&image_id),
        root_hash: summary.root_hash,
        chunk_count: summary.chunk_count,
        read_bytes: done,
        file_bytes: summary.file_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Narrows a failed chunk read down to the first unreadable sector, so the error names the
/// exact byte offset of the bad sector rather than the chunk.
fn locate_bad_read(dev: &dyn BlockDev, off: u64, len: u32, first: Error) -> Error {
    if !matches!(first, Error::Read { .. }) {
        return first;
    }
    let ss = u64::from(dev.geometry().logical_sector_size.max(512));
    let end = off + u64::from(len);
    let mut buf = vec![0u8; (64 << 10) as usize];
    let mut pos = off;
    while pos < end {
        let step = (64u64 << 10).min(end - pos);
        if dev.read_at(&mut buf[..step as usize], pos).is_ok() {
            pos += step;
            continue;
        }
        let mut s = pos;
        while s < pos + step {
            let n = ss.min(pos + step - s) as usize;
            if let Err(e) = dev.read_at(&mut buf[..n], s) {
                return e;
            }
            s += n as u64;
        }
        pos += step;
    }
    first
}

/// The metadata section: what `info` shows and what `restore` plans with.
fn metadata(
    plan: &ImagePlan,
    created_unix: u64,
    stored: &[u64],
    chunks: &[u64],
) -> serde_json::Value {
    let regions: Vec<serde_json::Value> = plan
        .regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("stored_bytes".into(), stored[i].into());
                o.insert("chunks".into(), chunks[i].into());
            }
            v
        })
        .collect();
    serde_json::json!({
        "tool": "lifeboat",
        "tool_version": env!("CARGO_PKG_VERSION"),
        "created_unix": created_unix,
        "kind": "full",
        "source": plan.report,
        "source_path": plan.source,
        "size_bytes": plan.size_bytes,
        "sector_size": plan.sector_size,
        "table": plan.table,
        "raw_table_hex": crate::image::hex(&plan.raw_table),
        "regions": regions,
        "selected_partitions": plan.regions.iter().filter(|r| r.what == "partition" && r.method != "skipped").filter_map(|r| r.partition).collect::<Vec<_>>(),
        "warnings": plan.warnings,
        "compression": {"codec": "zstd", "level": plan.level, "chunk_size": plan.chunk_size},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            gap_ranges(true, 0, 100 * MIB, false).1,
            vec![(0, 100 * MIB)]
        );
        assert_eq!(gap_ranges(false, 0, 10 * MIB, false).1, vec![(0, 10 * MIB)]);
        assert_eq!(
            gap_ranges(false, 0, 100 * MIB, false).1,
            vec![(0, MIB), (99 * MIB, MIB)]
        );
        assert_eq!(
            gap_ranges(false, 0, 100 * MIB, true).1,
            vec![(0, 100 * MIB)]
        );
    }

    #[test]
    fn zero_chunks_are_elided_and_incompressible_ones_stored_raw() {
        let z = encode(3, 0, &[0u8; 4096]).unwrap();
        assert_eq!((z.codec, z.data.len()), (Codec::Zero, 0));
        let text = b"lifeboat ".repeat(1000);
        let c = encode(3, 0, &text).unwrap();
        assert_eq!(c.codec, Codec::Zstd);
        assert!(c.data.len() < text.len() / 10);
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let r = encode(3, 0, &noise).unwrap();
        assert_eq!((r.codec, r.data.as_slice()), (Codec::Raw, noise.as_slice()));
        assert_eq!(r.hash, *blake3::hash(&noise).as_bytes());
    }
}
