//! `restore`: an image onto a disk or a disk-image file.
//!
//! Order of writes (STYLE §9):
//! 1. the target's partition-table areas (first 34 and last 33 sectors) are zeroed, so a
//!    restore that stops half-way never leaves a disk that looks partitioned and complete;
//! 2. every chunk outside the first MiB and the backup-GPT area, each verified against its
//!    hash before it is written;
//! 3. the backup GPT (moved to the target's end when the size differs, with the primary
//!    header and protective MBR updated to match);
//! 4. the first MiB: MBR, primary GPT, boot loader gap;
//! 5. fsync, then read-back verification of every written byte with `O_DIRECT` (or after
//!    dropping the page cache where `O_DIRECT` is unavailable); a mismatch zeroes the table
//!    areas again;
//! 6. for block devices, BLKRRPART, then BLKPG for any partition node the kernel lacks.

use super::readback::write_and_read_back;
use super::safety;
use super::target;
use super::writer::{open_direct, DataWriter, Rest};
use crate::blockdev::ReadbackMethod;
use crate::blockdev::{BlockDev, FileDev, OpenMode};
use crate::discovery::SystemPaths;
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::image::crypt::ContentHash;
use crate::image::CopyMethod;
use crate::image::{hex, Chain, ChainLink, FrameRead, ImageDev};
use crate::partition::edit;
use crate::partition::{self, PartitionTable};
use crate::pipeline::{self, Shape};
use crate::resize::FsGrowReport;
use crate::units::MIB;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    /// The image file.
    pub image: PathBuf,
    /// Block device or disk-image file (created if missing).
    pub target: PathBuf,
    /// Read back and compare everything written.
    pub verify: bool,
    /// Worker threads (0 = every core).
    pub threads: usize,
    /// Folders to look for the image's ancestors in, besides its own.
    pub search: Vec<PathBuf>,
    /// Grow the last partition (and its filesystem) to the end of the target.
    pub grow_last: bool,
    /// Give the target a new disk GUID (GPT) or signature (MBR).
    pub new_disk_id: bool,
    /// `--fit`: onto a smaller target, shrink and move partitions; onto a larger one, grow
    /// the last partition.
    pub fit: Option<super::fit::FitOptions>,
}

/// One partition as the plan shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PlanPartition {
    /// Partition number.
    pub number: u32,
    /// First byte.
    pub start_bytes: u64,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Filesystem recorded in the image.
    pub fs: Option<String>,
    /// Label recorded in the image.
    pub label: Option<String>,
    /// How the image holds it (`None`: the image records no region for it).
    pub method: Option<CopyMethod>,
}

/// The printable, serializable plan of a restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The image.
    pub image: PathBuf,
    /// Image ID, hex.
    pub image_id: String,
    /// Full, incremental or differential.
    pub kind: crate::image::ImageKind,
    /// The chain the image needs, itself first and its full image last.
    pub chain: Vec<ChainLink>,
    /// Bytes read from ancestors.
    pub ancestor_bytes: u64,
    /// The disk written, as every restore and clone plans it.
    #[serde(flatten)]
    pub target: TargetPlan,
    /// Partitions.
    pub partitions: Vec<PlanPartition>,
    /// Chunks written.
    pub chunks: usize,
    /// Bytes written (zero chunks on a new file are skipped but still verified).
    pub write_bytes: u64,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Source ranges the image records as missing (a rescued disk): written as zeros.
    pub missing: Vec<crate::image::MissingRange>,
    #[serde(skip)]
    writes: Vec<Write>,
    #[serde(skip)]
    threads: usize,
    #[serde(skip)]
    search: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Written by the pipeline.
    Data,
    /// Written after the data: the backup GPT area.
    Tail,
    /// Written last: the first MiB.
    Head,
}

#[derive(Debug, Clone, Copy)]
struct Write {
    record: usize,
    offset: u64,
    /// Bytes of the chunk to write (less than its raw length at the target's end).
    len: u64,
    stage: Stage,
}

/// What a finished restore reports.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RestoreSummary {
    /// The target.
    pub target: PathBuf,
    /// Bytes written.
    pub written_bytes: u64,
    /// Bytes read back and compared (0 with `--no-verify`).
    pub verified_bytes: u64,
    /// How the read-back bypassed the cache.
    pub verify_method: ReadbackMethod,
    /// Partition nodes: "BLKRRPART", "BLKPG", "not a block device" or a failure.
    pub partition_nodes: String,
    /// What `--grow-last` did to the last partition's filesystem.
    pub grown: Option<FsGrowReport>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Seconds from the first data write until the data was durable (tables included).
    #[serde(default)]
    pub write_seconds: f64,
    /// Seconds the data's read-back took.
    #[serde(default)]
    pub verify_seconds: f64,
    /// Bytes the image records as missing (a rescued disk), written as zeros: the restore
    /// is complete as far as the image goes, but the disk has holes there.
    #[serde(default)]
    pub missing_bytes: u64,
    /// Those ranges, in the source disk's bytes (the target's too, unless `--fit` moved
    /// partitions).
    #[serde(default)]
    pub missing: Vec<crate::image::MissingRange>,
}

/// The warning about an image's missing ranges: their total, and the first few.
pub(crate) fn missing_warning(missing: &[crate::image::MissingRange], fate: &str) -> String {
    let bytes: u64 = missing.iter().map(|m| m.len_bytes).sum();
    let mut list: Vec<String> = missing
        .iter()
        .take(8)
        .map(|m| format!("{}..{}", m.start_bytes, m.end_bytes()))
        .collect();
    if missing.len() > 8 {
        list.push(format!("and {} more", missing.len() - 8));
    }
    format!(
        "the image records {bytes} bytes in {} ranges as missing (unreadable when it was taken); they {fate}: bytes {}",
        missing.len(),
        list.join(", ")
    )
}

/// Reads the image, checks the target, and builds the plan. Writes nothing.
pub fn plan(spec: &RestoreSpec, paths: &SystemPaths) -> Result<RestorePlan> {
    let chain = Chain::open(&spec.image, &spec.search)?;
    let reader = chain.leaf();
    safety::check_restore_target(paths, &spec.target, &spec.image)?;
    if spec.grow_last || spec.fit.is_some() {
        safety::check_grow_target(paths, &spec.target)?;
    }
    if let Some(dir) = spec.fit.as_ref().and_then(|f| f.scratch.as_ref()) {
        safety::check_scratch(paths, dir, &spec.target, &spec.image)?;
    }
    for member in chain.paths().iter().skip(1) {
        // An ancestor on the target would be overwritten while it is read.
        safety::check_restore_target(paths, &spec.target, member)?;
    }
    let h = reader.header().clone();
    let ss = h.sector_size;
    let (target_kind, target_size, target_ss) =
        target::describe_target(&spec.target, h.source_size, ss)?;
    let img = ImageDev::new(&chain);
    let table =
        partition::read_table(&img)?.filter(|t| !t.has_errors() && !t.partitions.is_empty());
    let mut warnings: Vec<String> = reader
        .meta()
        .warnings
        .iter()
        .map(|w| format!("when imaged: {w}"))
        .collect();
    if target_ss != ss {
        if spec.fit.is_some() {
            return Err(Error::Unsupported(format!(
                "--fit onto a disk of another sector size ({target_ss} bytes, the image's {ss}) is not implemented; restore onto a disk at least as large as the image's without --fit"
            )));
        }
        warnings.extend(target::check_sector_change(
            &img,
            table.as_ref(),
            ss,
            target_ss,
            &spec.target,
            "image's",
        )?);
    }

    let missing = crate::image::missing_ranges(reader.records());
    if !missing.is_empty() {
        warnings.push(missing_warning(&missing, "will be written as zeros"));
    }
    let records = reader.records();
    let mut fit = None;
    let layout = match &table {
        Some(t) => match edit::plan_layout(
            t,
            h.source_size,
            &spec.target,
            target_size,
            target_ss,
            spec.grow_last || spec.fit.is_some(),
            spec.new_disk_id,
        ) {
            Err(Error::TooSmall { .. }) if spec.fit.is_some() => {
                super::fit::refuse_new_disk_id(spec.new_disk_id, &spec.target)?;
                let src: std::sync::Arc<dyn BlockDev> =
                    std::sync::Arc::new(crate::access::ImageSource::from_chain(
                        Chain::open(&spec.image, &spec.search)?,
                        super::fit::SOURCE_CACHE_BYTES,
                    ));
                let opts = spec.fit.as_ref().expect("checked above");
                fit = Some(super::fit::plan(src, t, &spec.target, target_size, opts)?);
                None
            }
            r => Some(r?),
        },
        None => None,
    };
    let min_target_size = match (&fit, &layout) {
        (Some(f), _) => f.smallest_target,
        (None, Some(l)) => l.min_target_size,
        (None, None) => h.source_size,
    };
    if target_size < min_target_size {
        return Err(Error::TooSmall {
            path: spec.target.clone(),
            need: min_target_size,
            have: target_size,
            why: "the image holds no partition table, so the whole disk must fit".into(),
        });
    }
    if table.is_none() && (spec.grow_last || spec.new_disk_id) {
        return Err(Error::Refused {
            path: spec.image.clone(),
            reason: "the image holds no valid partition table, so there is no last partition to grow and no disk ID to change".into(),
        });
    }
    let size_change = target::size_change(target_size, h.source_size);
    // The source's backup GPT is rebuilt at the target's end when the table is rewritten.
    let gpt_tail = layout
        .as_ref()
        .and_then(|l| l.source_gpt_tail.filter(|_| l.rewrites_gpt()));

    let head_end = MIB.min(h.source_size);
    let mut writes = Vec::new();
    let mut dropped = 0u64;
    for (i, r) in records.iter().enumerate() {
        if fit.is_some() {
            // a fitted restore copies by partition (`fit::run`), not by record
            break;
        }
        let start = r.disk_offset;
        let mut end = start + u64::from(r.raw_len);
        if let Some(src_tail) = gpt_tail {
            end = end.min(src_tail.max(start));
        }
        let kept = end;
        end = end.min(target_size);
        dropped += kept.saturating_sub(end.max(start));
        if end <= start {
            continue;
        }
        let stage = if start < head_end {
            Stage::Head
        } else if layout
            .as_ref()
            .and_then(|l| l.source_gpt_tail)
            .is_some_and(|t| end > t)
        {
            Stage::Tail
        } else {
            Stage::Data
        };
        writes.push(Write {
            record: i,
            offset: start,
            len: end - start,
            stage,
        });
    }
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} bytes of the image lie past the target's end, outside every partition, and are not written"
        ));
    }
    let partitions = plan_partitions(reader, table.as_ref());
    for p in &partitions {
        if p.method == Some(CopyMethod::Skipped) {
            warnings.push(format!(
                "partition {} is not in the image (imaged with --partitions); its contents on the target are left as they are",
                p.number
            ));
        }
    }
    let write_bytes = match &fit {
        Some(f) => f.write_bytes(),
        None => writes.iter().map(|w| w.len).sum(),
    };
    let mut ancestor_bytes = 0;
    for w in &writes {
        if chain.locate(w.record)?.member != 0 {
            ancestor_bytes += w.len;
        }
    }
    Ok(RestorePlan {
        image: spec.image.clone(),
        image_id: hex(&h.image_id),
        kind: crate::image::kind_of(reader),
        chain: chain.links().to_vec(),
        ancestor_bytes,
        target: TargetPlan {
            path: spec.target.clone(),
            kind: target_kind,
            size: target_size,
            source_size: h.source_size,
            sector_size: target_ss,
            table: table.as_ref().map(|t| t.kind.as_str()),
            size_change,
            min_size: min_target_size,
            layout,
            verify: spec.verify,
            readback_region: super::readback::REGION,
            fit,
        },
        partitions,
        chunks: writes.len(),
        write_bytes,
        warnings,
        missing,
        writes,
        threads: spec.threads,
        search: spec.search.clone(),
    })
}

fn plan_partitions(
    reader: &crate::image::ImageReader,
    table: Option<&PartitionTable>,
) -> Vec<PlanPartition> {
    let meta = reader.meta();
    let Some(t) = table else { return Vec::new() };
    t.partitions
        .iter()
        .filter(|p| !p.extended)
        .map(|p| {
            let r = meta.partition(p.number);
            PlanPartition {
                number: p.number,
                start_bytes: p.start_bytes,
                size_bytes: p.size_bytes,
                fs: r.and_then(|r| r.fs.clone()),
                label: r.and_then(|r| r.label.clone()),
                method: r.map(|r| r.method),
            }
        })
        .collect()
}

/// A decoded frame's writes: (write, where its bytes start in the frame, hash), and the frame
/// (returned to the pool afterwards).
/// A frame to restore, its stored bytes' range when the producer read them, and the buffer.
type Frame<'a> = (
    &'a (FrameRead, Vec<Write>),
    Option<std::ops::Range<usize>>,
    Vec<u8>,
);
type Decoded = (Vec<(Write, usize, [u8; 32])>, Vec<Rest>, Vec<u8>);

impl RestorePlan {
    /// The first partition's start and the last one's end, when the image has a table.
    fn partition_span(&self) -> Option<(u64, u64)> {
        let first = self.partitions.iter().map(|p| p.start_bytes).min()?;
        let end = self
            .partitions
            .iter()
            .map(|p| p.start_bytes + p.size_bytes)
            .max()?;
        Some((first, end))
    }
}

/// Runs a restore plan.
pub fn run(
    plan: &RestorePlan,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<RestoreSummary> {
    let started = Instant::now();
    for w in &plan.warnings {
        reporter.warn(w.clone());
    }
    let chain = Chain::open(&plan.image, &plan.search)?;
    let now: Vec<String> = chain.links().iter().map(|l| l.root_hash.clone()).collect();
    let then: Vec<String> = plan.chain.iter().map(|l| l.root_hash.clone()).collect();
    if hex(&chain.leaf().header().image_id) != plan.image_id || now != then {
        return Err(Error::Refused {
            path: plan.image.clone(),
            reason: "the image or its chain changed since the plan was made".into(),
        });
    }
    let (dev, fresh) = plan.target.open()?;
    // Whole O_DIRECT units go through a second handle (`writer`); `dev` holds the exclusive
    // claim on the target for as long as that handle lives.
    let direct = open_direct(
        &plan.target.path,
        OpenMode::WriteDirect,
        plan.target.sector_size,
    );
    let direct_dev = direct.as_ref().map(|d| d as &dyn BlockDev);
    let r = match &plan.target.fit {
        Some(fit) => {
            let src: std::sync::Arc<dyn BlockDev> = std::sync::Arc::new(
                crate::access::ImageSource::from_chain(chain, super::fit::SOURCE_CACHE_BYTES),
            );
            partition::read_table(&*src).and_then(|t| {
                let t = t.ok_or_else(|| Error::Refused {
                    path: plan.image.clone(),
                    reason: "its partition table is gone since the plan was made".into(),
                })?;
                super::fit::run(
                    fit,
                    src,
                    &t,
                    &plan.target,
                    &dev,
                    direct_dev,
                    fresh,
                    plan.threads,
                    reporter,
                    cancel,
                )
            })
        }
        None => run_on(plan, &chain, &dev, direct_dev, fresh, reporter, cancel),
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
    drop(dev);
    s.grown = plan.target.grow(is_block, reporter)?;
    s.seconds = started.elapsed().as_secs_f64();
    Ok(s)
}

pub use super::target::{TargetKind, TargetPlan, Written};

/// The whole write: wipe the old tables, the data, sync, read the data back (unless
/// `plan.target.verify` is off), then the tables and first MiB, sync, and read those back
/// (`target::data_then_tables`). Public so that tests can inject faults into the
/// target.
pub fn run_on(
    plan: &RestorePlan,
    chain: &Chain,
    dev: &dyn BlockDev,
    direct: Option<&dyn BlockDev>,
    fresh: bool,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<Written> {
    let ss = u64::from(plan.target.sector_size);

    // 2. Data chunks through the pipeline: read a frame (from the image or an ancestor) →
    //    decode it and check every record's hash → write the records.
    let data: Vec<Write> = plan
        .writes
        .iter()
        .copied()
        .filter(|w| w.stage == Stage::Data)
        .collect();
    let reads = chain.frame_reads(data.iter().map(|w| w.record))?;
    let by_record: std::collections::HashMap<usize, Write> =
        data.iter().map(|w| (w.record, *w)).collect();
    let mut jobs: Vec<(FrameRead, Vec<Write>)> = Vec::with_capacity(reads.len());
    for fr in reads {
        let ws = fr
            .parts
            .iter()
            .filter_map(|(i, _)| by_record.get(i).copied())
            .collect();
        jobs.push((fr, ws));
    }
    // The tables, built first (decoded and verified one by one, edited when the layout
    // changes): data records must carry any edit that lands in them (an EBR in a gap, a
    // new backup GPT inside a copied gap), or the read-back would call the edit a mismatch.
    let mut head_tail: Vec<(u64, Vec<u8>, Stage)> = Vec::new();
    let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
    for w in plan.writes.iter().filter(|w| w.stage != Stage::Data) {
        cancel.check()?;
        let mut raw = Vec::new();
        chain.read_record(w.record, &mut raw)?;
        raw.truncate(w.len as usize);
        head_tail.push((w.offset, raw, w.stage));
    }
    if let Some(layout) = &plan.target.layout {
        let mut areas: Vec<(u64, Vec<u8>)> = head_tail.drain(..).map(|(o, b, _)| (o, b)).collect();
        let extra = edit::apply(layout, &ImageDev::new(chain), &mut areas)?;
        // an edit only partly inside an area (e.g. an EBR at its edge) is in it as well
        for (o, b) in areas.iter_mut() {
            edit::overlay(b, *o, &extra);
        }
        patches.clone_from(&extra);
        let head_end = MIB.min(plan.target.source_size);
        let stage = |o: u64| {
            if o < head_end {
                Stage::Head
            } else {
                Stage::Tail
            }
        };
        head_tail = areas.into_iter().map(|(o, b)| (o, b, stage(o))).collect();
        head_tail.extend(extra.into_iter().map(|(o, b)| (o, b, stage(o))));
    }
    // Tail first, then the head; the stable sort keeps each patch after what it patches.
    head_tail.sort_by_key(|(_, _, s)| *s == Stage::Head);
    // Only now, with everything read that could refuse or fail, is the target touched.
    if !fresh {
        target::wipe_tables(dev, ss, plan.partition_span())?;
    }
    let total = plan.write_bytes;
    reporter.phase(Phase::Write, Some(total));
    let mut written: Vec<(u64, u64, [u8; 32])> = Vec::with_capacity(plan.writes.len() + 2);
    let mut done = 0u64;
    let mut next = 0usize;
    let records = chain.leaf().records();
    let plain_hashes = *chain.hasher() == ContentHash::Plain;
    let writer = DataWriter::new(dev, direct);
    let chunk_bytes = chain.max_chunk_size();
    // The tables are written last, after the data's read-back (which runs beside the
    // writing, a region at a time: `readback`).
    let tables: Vec<(u64, Vec<u8>)> = head_tail.into_iter().map(|(o, b, _)| (o, b)).collect();
    let (target, threads) = (&plan.target, plan.threads);
    write_and_read_back(dev, target, threads, &tables, reporter, cancel, |overlap| {
        // The workers read, decode and write, so several I/Os are in flight on both disks.
        pipeline::run(
            Shape::for_threads(target::frame_workers(plan.threads, chunk_bytes)),
            cancel,
            // The workers read the frames (so several reads are in flight; on a FUSE store the
            // producer reads them, in order), decode, check and write them.
            |mut stored: Vec<u8>| {
                let Some(job) = jobs.get(next) else {
                    return Ok(None);
                };
                next += 1;
                let read = chain.read_in_order(&job.0, &mut stored)?;
                Ok(Some((job, read, stored)))
            },
            |(job, read, mut stored): Frame| {
                let (fr, ws) = job;
                let range = chain.read_in_worker(fr, read, &mut stored)?;
                // The stored bytes become this worker's spare once decoded.
                let mut frame = pipeline::trade_spare(Vec::new());
                let decoded = chain.decode_aligned(fr, &stored[range], &mut frame, 4096);
                pipeline::trade_spare(stored);
                let pad = decoded?;
                // Each record is written straight from the decoded frame: (write, where its
                // bytes start in the frame, hash).
                let mut out = Vec::with_capacity(ws.len());
                for (k, w) in ws.iter().enumerate() {
                    let bytes = chain.part(fr, k, &frame[pad..])?;
                    let bytes = bytes.get(..w.len as usize).unwrap_or(bytes);
                    let at = bytes.as_ptr() as usize - frame.as_ptr() as usize;
                    let len = bytes.len();
                    let end = w.offset + len as u64;
                    let patched = patches
                        .iter()
                        .any(|(o, b)| *o < end && w.offset < o + b.len() as u64);
                    let (at, hash) = if patched {
                        // a copy at the frame's end: records with equal content share their
                        // bytes in the frame, and the others must stay as they are
                        let copy = frame.len();
                        frame.extend_from_within(at..at + len);
                        let bytes = &mut frame[copy..];
                        edit::overlay(bytes, w.offset, &patches);
                        (copy, *blake3::hash(bytes).as_bytes())
                    } else if w.len == u64::from(records[w.record].raw_len) && plain_hashes {
                        // the record's hash is the blake3 the read-back checks (an
                        // encrypted image's are keyed: hashed again below)
                        (at, records[w.record].content_hash(&ContentHash::Plain))
                    } else {
                        (at, *blake3::hash(bytes).as_bytes())
                    };
                    out.push((*w, at, hash));
                }
                // Contiguous records go down in one write; zero records are holes already on
                // a new file.
                let mut run: Option<(u64, usize, usize)> = None; // (disk offset, at, len)
                let mut rest = Vec::new();
                for &(w, at, _) in &out {
                    if fresh && records[w.record].codec.reads_as_zero() {
                        continue;
                    }
                    match &mut run {
                        Some((o, a, l)) if *o + *l as u64 == w.offset && *a + *l == at => {
                            *l += w.len as usize;
                        }
                        _ => {
                            if let Some((o, a, l)) = run.replace((w.offset, at, w.len as usize)) {
                                writer.write_units(o, &frame, a, l, &mut rest)?;
                            }
                        }
                    }
                }
                if let Some((o, a, l)) = run {
                    writer.write_units(o, &frame, a, l, &mut rest)?;
                }
                Ok((out, rest, frame))
            },
            |(out, rest, frame): Decoded| {
                for (offset, at, len) in rest {
                    writer.write_rest(offset, &frame[at..at + len])?;
                }
                for (w, _, hash) in out {
                    written.push((w.offset, w.len, hash));
                    if let Some(o) = overlap.as_mut() {
                        o.add((w.offset, w.len, hash))?;
                    }
                    done += w.len;
                }
                reporter.progress(Phase::Write, done);
                Ok(frame)
            },
        )
        .and_then(|()| writer.finish())?;
        Ok((written, done))
    })
}

/// The kernel's partition nodes, and the summary.
fn finish(
    plan: &RestorePlan,
    dev: &FileDev,
    written: Written,
    started: Instant,
) -> Result<RestoreSummary> {
    // 6. The kernel's view of the new partitions.
    let nodes = target::partition_nodes(dev)?;
    Ok(RestoreSummary {
        target: plan.target.path.clone(),
        written_bytes: written.bytes,
        verified_bytes: written.verified,
        verify_method: written.method,
        partition_nodes: nodes,
        grown: None,
        seconds: started.elapsed().as_secs_f64(),
        write_seconds: written.write_seconds,
        verify_seconds: written.verify_seconds,
        missing_bytes: plan.missing.iter().map(|m| m.len_bytes).sum(),
        missing: plan.missing.clone(),
    })
}

/// A plan for the TUI's snapshot tests: last week's image of a 500 GB disk onto a 1 TB NVMe
/// disk, growing the last partition.
#[cfg(test)]
pub(crate) fn example_plan() -> RestorePlan {
    use crate::partition::edit::{GptMove, Grow};
    RestorePlan {
        image: PathBuf::from("/store/sda-Samsung-SSD-860-20261115.lbi"),
        image_id: "7d1c".into(),
        kind: crate::image::ImageKind::Full,
        chain: Vec::new(),
        ancestor_bytes: 0,
        target: TargetPlan {
            path: PathBuf::from("/dev/nvme0n1"),
            kind: TargetKind::BlockDevice,
            size: 1_000_204_886_016,
            source_size: 500_107_862_016,
            sector_size: 512,
            table: Some("gpt"),
            size_change: super::SizeChange::Larger,
            min_size: 499_000_000_000,
            layout: Some(crate::partition::edit::Layout::example(
                "gpt",
                499_000_000_000,
                Some(GptMove {
                    backup_header_lba: 1_953_525_167,
                    backup_entries_lba: 1_953_525_135,
                    last_usable_lba: 1_953_525_134,
                }),
                Some(Grow {
                    number: 3,
                    start_bytes: 401_074_470_912,
                    old_size_bytes: 99_000_000_000,
                    new_size_bytes: 599_130_398_720,
                    extended: None,
                    limit: None,
                }),
            )),
            verify: true,
            readback_region: super::readback::REGION,
            fit: None,
        },
        partitions: Vec::new(),
        chunks: 14_600,
        write_bytes: 61_235_789_824,
        warnings: vec![],
        missing: vec![],
        writes: Vec::new(),
        threads: 2,
        search: Vec::new(),
    }
}
