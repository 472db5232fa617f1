//! `clone`: one disk straight onto another, used blocks only, no compression, no file in
//! between, verified.
//!
//! What is copied is what `image` would store (see [`super::survey`]): the table areas
//! whole, the boot area and other gaps whole up to 16 MiB (of larger ones their first and
//! last MiB), and in each partition the blocks its filesystem proves used (all of it when there is no map). The target may be larger (the backup GPT
//! moves to its end; `--grow-last` grows the last partition and its filesystem) or smaller
//! when every partition fits.
//!
//! Order of writes, as for `restore` (STYLE §9):
//! 1. the target's table areas are zeroed, so a clone that stops half-way never leaves a
//!    disk that looks partitioned and complete;
//! 2. the data: a producer thread reads the source in order, workers hash each piece
//!    (blake3), and the calling thread writes, so both disks stay busy; the target is
//!    flushed every 64 MiB so a write error names its range;
//! 3. the backup GPT (copied, or rebuilt at the target's end), then the first MiB (MBR,
//!    primary GPT, boot loader gap), with the table edits applied;
//! 4. fsync, then every byte written is read back without the page cache and its hash
//!    compared with the hash of what was read from the source;
//! 5. the kernel is made to see the partitions (BLKRRPART, then BLKPG);
//! 6. with `--grow-last`, the last filesystem grows ([`crate::resize`]).
//!
//! Any failure zeroes the target's table areas again (or deletes a target file it created).
//! The source is only ever opened read-only.

use super::readback::write_and_read_back;
use super::survey::{chunk, survey, usable_table, SurveyOpts};
use super::target::{TargetPlan, Written};
use super::writer::{dio_unit, open_direct, DataWriter};
use super::{safety, target};
use crate::blockdev::ReadbackMethod;
use crate::blockdev::{BlockDev, FileDev, OpenMode};
use crate::discovery::SystemPaths;
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::image::Region;
use crate::partition::edit::{self, Layout};
use crate::partition::{self, PartitionTable};
use crate::pipeline::{self, Shape};
use crate::resize::FsGrowReport;
use crate::units::MIB;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Largest piece read and written at once.
const PIECE: u64 = 4 * MIB;
/// Used ranges closer than this are copied as one piece, gap included: on a fragmented
/// filesystem one large request costs less than two small ones, and the gap's unused blocks
/// are harmless on the target (nothing reads them). On the bench disk (little
/// fragmentation) 256 KiB and 1 MiB measured the same; it bounds the request count on
/// fragmented disks.
const JOIN_GAP: u64 = 256 << 10;

/// Joins sorted `(start, len)` pieces whose gap is at most `gap`, up to `max` bytes each.
fn coalesce(pieces: &[(u64, u64)], gap: u64, max: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(pieces.len());
    for &(s, l) in pieces {
        if let Some(last) = out.last_mut() {
            let end = last.0 + last.1;
            if s >= end && s - end <= gap && s + l - last.0 <= max {
                last.1 = s + l - last.0;
                continue;
            }
        }
        out.push((s, l));
    }
    out
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct CloneSpec {
    /// The disk (or disk-image file) to copy. Only read.
    pub source: PathBuf,
    /// The disk (or disk-image file, created if missing) to overwrite.
    pub target: PathBuf,
    /// Read back and compare everything written.
    pub verify: bool,
    /// Hashing threads (0 = every core).
    pub threads: usize,
    /// Grow the last partition (and its filesystem) to the target's end.
    pub grow_last: bool,
    /// Give the target a new disk GUID (GPT) or signature (MBR).
    pub new_disk_id: bool,
    /// Logical sector size assumed for disk-image files (block devices report their own).
    pub file_sector_size: u32,
    /// `--fit`: onto a smaller target, shrink and move partitions; onto a larger one, grow
    /// the last partition.
    pub fit: Option<super::fit::FitOptions>,
    /// Copy swap areas whole (`--full-swap`) instead of their header and ends.
    pub full_swap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Data,
    Tail,
    Head,
}

/// The printable, serializable plan of a clone.
#[derive(Debug, Clone, Serialize)]
pub struct ClonePlan {
    /// The source.
    pub source: PathBuf,
    /// The disk written, as every restore and clone plans it.
    #[serde(flatten)]
    pub target: TargetPlan,
    /// What is copied from each part of the source.
    pub regions: Vec<Region>,
    /// Bytes copied.
    pub copy_bytes: u64,
    /// Things the user should know.
    pub warnings: Vec<String>,
    #[serde(skip)]
    pieces: Vec<(u64, u64, Stage)>,
    #[serde(skip)]
    threads: usize,
    #[serde(skip)]
    table_read: Option<PartitionTable>,
    /// The source's logical sector size (the target's may differ).
    #[serde(skip)]
    source_ss: u32,
}

/// What a finished clone reports.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CloneSummary {
    /// The source.
    pub source: PathBuf,
    /// The target.
    pub target: PathBuf,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Bytes read back and compared (0 with `--no-verify`).
    pub verified_bytes: u64,
    /// How the read-back bypassed the cache: "O_DIRECT", "dropped page cache" or "none".
    pub verify_method: ReadbackMethod,
    /// Partition nodes: "BLKRRPART", "BLKPG", "not a block device" or a failure.
    pub partition_nodes: String,
    /// What `--grow-last` did to the last partition's filesystem.
    pub grown: Option<FsGrowReport>,
    /// Seconds spent copying (data and tables, up to the final sync).
    pub copy_seconds: f64,
    /// Seconds spent reading back.
    pub verify_seconds: f64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Reads the source's table and filesystem maps, checks both disks, and builds the plan.
/// Writes nothing.
pub fn plan(spec: &CloneSpec, paths: &SystemPaths) -> Result<ClonePlan> {
    safety::check_clone(paths, &spec.source, &spec.target)?;
    if spec.grow_last || spec.fit.is_some() {
        safety::check_grow_target(paths, &spec.target)?;
    }
    if let Some(dir) = spec.fit.as_ref().and_then(|f| f.scratch.as_ref()) {
        safety::check_scratch(paths, dir, &spec.target, &spec.source)?;
    }
    let src = FileDev::open_with_sector_size(&spec.source, OpenMode::Read, spec.file_sector_size)?;
    let source_size = src.len();
    let ss = src.geometry().logical_sector_size;
    let (target_kind, target_size, target_ss) =
        target::describe_target(&spec.target, source_size, ss)?;
    let table = partition::read_table(&src)?;
    let mut warnings = Vec::new();
    let usable = usable_table(table.as_ref(), &mut warnings);
    if target_ss != ss {
        if spec.fit.is_some() {
            return Err(Error::Unsupported(format!(
                "--fit onto a disk of another sector size ({target_ss} bytes, the source's {ss}) is not implemented; clone onto a disk at least as large as the source without --fit"
            )));
        }
        warnings.extend(target::check_sector_change(
            &src,
            usable,
            ss,
            target_ss,
            &spec.target,
            "source's",
        )?);
    }
    let mut fit = None;
    let layout = match usable {
        Some(t) => match edit::plan_layout(
            t,
            source_size,
            &spec.target,
            target_size,
            target_ss,
            spec.grow_last || spec.fit.is_some(),
            spec.new_disk_id,
        ) {
            Err(Error::TooSmall { .. }) if spec.fit.is_some() => {
                super::fit::refuse_new_disk_id(spec.new_disk_id, &spec.target)?;
                let src: std::sync::Arc<dyn BlockDev> = std::sync::Arc::new(
                    FileDev::open_with_sector_size(&spec.source, OpenMode::Read, ss)?,
                );
                let opts = spec.fit.as_ref().expect("checked above");
                fit = Some(super::fit::plan(src, t, &spec.target, target_size, opts)?);
                None
            }
            r => Some(r?),
        },
        None => None,
    };
    if usable.is_none() && (spec.grow_last || spec.new_disk_id) {
        return Err(Error::Refused {
            path: spec.source.clone(),
            reason: "it has no valid partition table, so there is no last partition to grow and no disk ID to change".into(),
        });
    }
    let min_target_size = match (&fit, &layout) {
        (Some(f), _) => f.smallest_target,
        (None, Some(l)) => l.min_target_size,
        (None, None) => source_size,
    };
    if fit.is_none() && target_size < min_target_size {
        return Err(Error::TooSmall {
            path: spec.target.clone(),
            need: min_target_size,
            have: target_size,
            why: "the source has no partition table, so the whole disk must fit".into(),
        });
    }
    if (layout.is_some() || fit.is_some()) && !spec.new_disk_id {
        warnings.push(
            "the target keeps the source's disk ID and its partition and filesystem IDs, so it boots like the source; do not leave both disks attached to one computer (--new-disk-id changes only the disk ID; partition and filesystem IDs stay the same)".into(),
        );
    }
    let (regions, extents) = survey(
        &src,
        usable,
        None,
        SurveyOpts {
            full_swap: spec.full_swap,
            ..Default::default()
        },
        &mut warnings,
    )?;

    // Head: the first MiB, read whole and written last. Tail: the source's backup GPT,
    // copied as it is unless the table is rewritten (then rebuilt at the target's end).
    let head_end = MIB.min(source_size);
    let tail = layout.as_ref().and_then(|l| l.source_gpt_tail);
    let rebuilt = layout.as_ref().is_some_and(Layout::rewrites_gpt);
    let mut pieces = vec![(0, head_end, Stage::Head)];
    let mut dropped = 0u64;
    for (off, len, _) in chunk(&extents, PIECE) {
        let (mut s, mut e) = (off.max(head_end), off + u64::from(len));
        if let Some(t) = tail {
            if e > t {
                if !rebuilt {
                    pieces.push((s.max(t), e, Stage::Tail));
                }
                e = e.min(t);
            }
        }
        let kept = e;
        e = e.min(target_size);
        dropped += kept.saturating_sub(e.max(s));
        s = s.min(e);
        if e > s {
            pieces.push((s, e - s, Stage::Data));
        }
    }
    // Tail pieces hold (start, end); make them (start, len) and clip to the target.
    for p in pieces.iter_mut().filter(|p| p.2 == Stage::Tail) {
        p.1 = p.1.min(target_size).saturating_sub(p.0);
    }
    pieces.retain(|p| p.1 > 0);
    if dropped > 0 && fit.is_none() {
        warnings.push(format!(
            "{dropped} bytes of the source lie past the target's end, outside every partition, and are not copied"
        ));
    }
    let copy_bytes = match &fit {
        Some(f) => f.write_bytes(),
        None => pieces.iter().map(|p| p.1).sum(),
    };
    let size_change = target::size_change(target_size, source_size);
    Ok(ClonePlan {
        source: spec.source.clone(),
        target: TargetPlan {
            path: spec.target.clone(),
            kind: target_kind,
            size: target_size,
            source_size,
            sector_size: target_ss,
            table: usable.map(|t| t.kind.as_str()),
            size_change,
            min_size: min_target_size,
            layout,
            verify: spec.verify,
            readback_region: super::readback::REGION,
            fit,
        },
        regions,
        copy_bytes,
        warnings,
        pieces,
        threads: spec.threads,
        table_read: usable.cloned(),
        source_ss: ss,
    })
}

impl ClonePlan {
    /// The first partition's start and the last one's end, when the source has a table.
    fn partition_span(&self) -> Option<(u64, u64)> {
        let t = self.table_read.as_ref()?;
        let first = t.partitions.iter().map(|p| p.start_bytes).min()?;
        let end = t.partitions.iter().map(|p| p.end_bytes()).max()?;
        Some((first, end))
    }
}

/// Runs a clone plan.
pub fn run(plan: &ClonePlan, reporter: &Reporter, cancel: &CancelToken) -> Result<CloneSummary> {
    let started = Instant::now();
    for w in &plan.warnings {
        reporter.warn(w.clone());
    }
    // Exclusive (for a disk): nothing can mount or claim the source while it is copied, and
    // the target's own exclusive open fails if it overlaps the source.
    let src =
        FileDev::open_with_sector_size(&plan.source, OpenMode::ReadExclusive, plan.source_ss)?;
    let table_now = partition::read_table(&src)?;
    let table_changed = plan.table_read.is_some() && table_now.as_ref() != plan.table_read.as_ref();
    if src.len() != plan.target.source_size || table_changed {
        return Err(Error::Refused {
            path: plan.source.clone(),
            reason: "the source changed since the plan was made".into(),
        });
    }
    let (dev, fresh) = plan.target.open()?;
    // The data goes through O_DIRECT handles where the filesystem allows them: no page
    // cache copies, no readahead in small steps, and write errors reported at once. `dev`
    // holds the exclusive claim on the target for as long as the direct handle lives.
    let src_direct = open_direct(&plan.source, OpenMode::ReadDirect, plan.source_ss);
    let dev_direct = open_direct(
        &plan.target.path,
        OpenMode::WriteDirect,
        plan.target.sector_size,
    );
    let direct = match (&src_direct, &dev_direct) {
        (Some(s), Some(d)) => Some((s as &dyn BlockDev, d as &dyn BlockDev)),
        _ => None,
    };
    let r = match (&plan.target.fit, &plan.table_read) {
        (Some(fit), Some(table)) => {
            let shared: std::sync::Arc<dyn BlockDev> = std::sync::Arc::new(
                FileDev::open_with_sector_size(&plan.source, OpenMode::Read, plan.source_ss)?,
            );
            super::fit::run(
                fit,
                shared,
                table,
                &plan.target,
                &dev,
                direct.map(|d| d.1),
                fresh,
                plan.threads,
                reporter,
                cancel,
            )
        }
        _ => run_on(plan, &src, &dev, direct, fresh, reporter, cancel),
    }
    .and_then(|w| finish(plan, &dev, w, started));
    if r.is_err() {
        let span = match &plan.target.fit {
            Some(f) => f.span(),
            None => plan.partition_span(),
        };
        plan.target.undo(&dev, fresh, span);
    }
    let mut s = r?;
    let is_block = dev.is_block_device();
    drop((dev, dev_direct, src_direct, src));
    s.grown = plan.target.grow(is_block, reporter)?;
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

/// The whole write: wipe the old tables, the data, sync, read the data back (unless
/// `plan.target.verify` is off), then the tables and first MiB, sync, and read those back
/// (`target::data_then_tables`). Public so that tests can inject faults into either
/// disk.
///
/// `direct` holds `O_DIRECT` handles of the same two disks: sector-aligned data pieces go
/// through them (from 4096-aligned buffers), everything else through `src` and `dev`.
pub fn run_on(
    plan: &ClonePlan,
    src: &dyn BlockDev,
    dev: &dyn BlockDev,
    direct: Option<(&dyn BlockDev, &dyn BlockDev)>,
    fresh: bool,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<Written> {
    let ss = u64::from(plan.target.sector_size);
    let data: Vec<(u64, u64)> = plan
        .pieces
        .iter()
        .filter(|p| p.2 == Stage::Data)
        .map(|p| (p.0, p.1))
        .collect();
    let data = coalesce(&data, JOIN_GAP, 2 * PIECE);
    // The tables, built in memory first: the data pieces must carry any edit that lands in
    // them (an EBR in a gap, a new backup GPT inside a copied gap on a smaller target), or
    // the read-back would find the edit and call it a mismatch.
    let read = |off: u64, len: u64| -> Result<Vec<u8>> {
        let mut b = vec![0u8; len as usize];
        src.read_at(&mut b, off)
            .map_err(|e| crate::blockdev::narrow_read_error(src, off, len as u32, e))?;
        Ok(b)
    };
    let mut tail: Vec<(u64, Vec<u8>)> = Vec::new();
    for p in plan.pieces.iter().filter(|p| p.2 == Stage::Tail) {
        tail.push((p.0, read(p.0, p.1)?));
    }
    let mut head: Vec<(u64, Vec<u8>)> = Vec::new();
    for p in plan.pieces.iter().filter(|p| p.2 == Stage::Head) {
        head.push((p.0, read(p.0, p.1)?));
    }
    let mut patches = Vec::new();
    if let Some(layout) = &plan.target.layout {
        let extra = edit::apply(layout, src, &mut head)?;
        // an edit only partly inside an area (e.g. an EBR at its edge) is in it as well
        for (o, b) in head.iter_mut().chain(tail.iter_mut()) {
            edit::overlay(b, *o, &extra);
        }
        patches.clone_from(&extra);
        let head_end = MIB.min(plan.target.source_size);
        for (o, b) in extra {
            if o < head_end {
                head.push((o, b));
            } else {
                tail.push((o, b));
            }
        }
    }
    // Only now, with everything read that could refuse or fail, is the target touched.
    if !fresh {
        target::wipe_tables(dev, ss, plan.partition_span())?;
    }
    reporter.phase(Phase::Write, Some(plan.copy_bytes));
    let mut written: Vec<(u64, u64, [u8; 32])> = Vec::with_capacity(plan.pieces.len() + 4);
    let mut done = 0u64;
    let mut next = 0usize;
    let writer = DataWriter::new(dev, direct.map(|(_, d)| d));
    // O_DIRECT wants offsets and lengths aligned to the device's DIO unit, which can be 4096
    // on a 512-byte-sector device (a 4K backing filesystem): pieces aligned to it are read
    // direct, the rest (FAT's 512-byte clusters) through the page cache.
    let dio = dio_unit(src).max(dio_unit(dev));
    let aligned = |off: u64, len: u64| off.is_multiple_of(dio) && len.is_multiple_of(dio);
    let workers = target::io_workers(plan.threads);
    // The tables, last: the tail copied or rebuilt, then the first MiB, once the data is
    // durable and read back (the read-back runs beside the writing: `readback`).
    let tables: Vec<(u64, Vec<u8>)> = tail.into_iter().chain(head).collect();
    let (target, threads) = (&plan.target, plan.threads);
    write_and_read_back(dev, target, threads, &tables, reporter, cancel, |overlap| {
        pipeline::run(
            Shape::for_threads(workers),
            cancel,
            // The producer only hands out pieces; the workers read them (so two or more reads
            // are in flight, which a single sequential reader cannot do with O_DIRECT), hash
            // them and write them (`writer`); the calling thread writes what is left.
            |buf: Vec<u8>| {
                let Some(&(off, len)) = data.get(next) else {
                    return Ok(None);
                };
                next += 1;
                if direct.is_none() || !aligned(off, len) {
                    if let Some(&(a, l)) = data.get(next) {
                        src.will_need(a, l);
                    }
                }
                Ok(Some((off, len, buf)))
            },
            |(off, len, mut buf): (u64, u64, Vec<u8>)| {
                let fast = direct.filter(|_| aligned(off, len));
                let (from, skip) = match fast {
                    Some((d, _)) => {
                        let slice = target::aligned(&mut buf, len as usize);
                        let skip = slice.as_ptr() as usize - buf.as_ptr() as usize;
                        (d, skip)
                    }
                    None => {
                        buf.resize(len as usize, 0);
                        (src, 0)
                    }
                };
                let piece = &mut buf[skip..skip + len as usize];
                if let Err(e) = from.read_at(piece, off) {
                    // narrowed down through the same handle: a buffered one would read whole
                    // page-cache blocks and name the block's start, not the bad sector
                    return Err(crate::blockdev::narrow_read_error(from, off, len as u32, e));
                }
                edit::overlay(piece, off, &patches);
                let hash = *blake3::hash(piece).as_bytes();
                let mut rest = Vec::new();
                writer.write_units(off, &buf, skip, len as usize, &mut rest)?;
                Ok((off, len, hash, rest, buf))
            },
            |(off, len, hash, rest, buf)| {
                for (o, at, l) in rest {
                    writer.write_rest(o, &buf[at..at + l])?;
                }
                written.push((off, len, hash));
                if let Some(o) = overlap.as_mut() {
                    o.add((off, len, hash))?;
                }
                done += len;
                reporter.progress(Phase::Write, done);
                Ok(buf)
            },
        )
        .and_then(|()| writer.finish())?;
        Ok((written, done))
    })
}

/// The kernel's partition nodes, and the summary.
fn finish(
    plan: &ClonePlan,
    dev: &FileDev,
    written: Written,
    started: Instant,
) -> Result<CloneSummary> {
    let nodes = target::partition_nodes(dev)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(CloneSummary {
        source: plan.source.clone(),
        target: plan.target.path.clone(),
        copied_bytes: written.bytes,
        verified_bytes: written.verified,
        verify_method: written.method,
        partition_nodes: nodes,
        grown: None,
        copy_seconds: (seconds - written.verify_seconds).max(0.0),
        verify_seconds: written.verify_seconds,
        seconds,
    })
}

/// A plan for the TUI's snapshot tests: a 500 GB disk onto a 1 TB NVMe disk.
#[cfg(test)]
pub(crate) fn example_plan() -> ClonePlan {
    ClonePlan {
        source: PathBuf::from("/dev/sda"),
        target: TargetPlan {
            path: PathBuf::from("/dev/nvme0n1"),
            kind: super::TargetKind::BlockDevice,
            source_size: 500_107_862_016,
            size: 1_000_204_886_016,
            sector_size: 512,
            table: Some("gpt"),
            size_change: super::SizeChange::Larger,
            min_size: 499_000_000_000,
            layout: None,
            verify: true,
            readback_region: super::readback::REGION,
            fit: None,
        },
        regions: Vec::new(),
        copy_bytes: 61_235_789_824,
        warnings: vec!["the target keeps the source's disk ID and its partition and filesystem IDs, so it boots like the source; do not leave both disks attached to one computer".into()],
        pieces: Vec::new(),
        threads: 2,
        table_read: None,
        source_ss: 512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_pieces_join_up_to_the_limit_and_far_ones_do_not() {
        let k = 1024u64;
        let got = coalesce(
            &[
                (0, 4 * k),
                (8 * k, 4 * k),
                (1000 * k, 4 * k),
                (1004 * k, 10 * k),
            ],
            256 * k,
            16 * k,
        );
        assert_eq!(got, vec![(0, 12 * k), (1000 * k, 14 * k)]);
        // the size limit splits a run of touching pieces
        let got = coalesce(&[(0, 10 * k), (10 * k, 10 * k)], 256 * k, 16 * k);
        assert_eq!(got, vec![(0, 10 * k), (10 * k, 10 * k)]);
        assert!(coalesce(&[], 1, 1).is_empty());
    }
}
