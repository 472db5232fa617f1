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

use super::events::{CancelToken, Phase, Reporter};
use super::safety;
use crate::blockdev::{sys, BlockDev, FileDev, OpenMode};
use crate::discovery::{self, SystemPaths};
use crate::error::{Error, Result};
use crate::image::{hex, Chain, ChainLink, Codec, FrameRead, ImageDev};
use crate::partition::{self, gpt, PartitionTable, TableKind};
use crate::pipeline::{self, Shape};
use crate::units::{le_u32, le_u64, MIB};
use serde::Serialize;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
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
    /// How the image holds it: "used-blocks", "all", or "skipped" (not in the image).
    pub method: String,
}

/// New GPT locations on a target of another size.
#[derive(Debug, Clone, Serialize)]
pub struct GptMove {
    /// LBA of the new backup header (the target's last LBA).
    pub backup_header_lba: u64,
    /// LBA of the new backup entry array.
    pub backup_entries_lba: u64,
    /// New last usable LBA.
    pub last_usable_lba: u64,
}

/// The printable, serializable plan of a restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The image.
    pub image: PathBuf,
    /// Image ID, hex.
    pub image_id: String,
    /// "full", "incremental" or "differential".
    pub kind: String,
    /// The chain the image needs, itself first and its full image last.
    pub chain: Vec<ChainLink>,
    /// Bytes read from ancestors.
    pub ancestor_bytes: u64,
    /// The target.
    pub target: PathBuf,
    /// "block device", "existing file" or "new file".
    pub target_kind: &'static str,
    /// Target size in bytes.
    pub target_size: u64,
    /// Size of the imaged disk.
    pub source_size: u64,
    /// Logical sector size of the image.
    pub sector_size: u32,
    /// Partition table kind, if the image holds a valid one.
    pub table: Option<&'static str>,
    /// "same size", "larger target" or "smaller target".
    pub size_change: &'static str,
    /// Smallest target that can hold the image.
    pub min_target_size: u64,
    /// Set when the backup GPT moves.
    pub gpt_move: Option<GptMove>,
    /// Partitions.
    pub partitions: Vec<PlanPartition>,
    /// Chunks written.
    pub chunks: usize,
    /// Bytes written (zero chunks on a new file are skipped but still verified).
    pub write_bytes: u64,
    /// Read-back verification.
    pub verify: bool,
    /// Things the user should know.
    pub warnings: Vec<String>,
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
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    /// The target.
    pub target: PathBuf,
    /// Bytes written.
    pub written_bytes: u64,
    /// Bytes read back and compared (0 with `--no-verify`).
    pub verified_bytes: u64,
    /// How the read-back bypassed the cache: "O_DIRECT", "dropped page cache" or "none".
    pub verify_method: &'static str,
    /// Partition nodes: "BLKRRPART", "BLKPG", "not a block device" or a failure.
    pub partition_nodes: String,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Reads the image, checks the target, and builds the plan. Writes nothing.
pub fn plan(spec: &RestoreSpec, paths: &SystemPaths) -> Result<RestorePlan> {
    let chain = Chain::open(&spec.image, &spec.search)?;
    let reader = chain.leaf();
    safety::check_restore_target(paths, &spec.target, &spec.image)?;
    for member in chain.paths().iter().skip(1) {
        // An ancestor on the target would be overwritten while it is read.
        safety::check_restore_target(paths, &spec.target, member)?;
    }
    let h = reader.header().clone();
    let ss = h.sector_size;
    let (target_kind, target_size, target_ss) = match std::fs::metadata(&spec.target) {
        Err(_) => ("new file", h.source_size, ss),
        Ok(m) if m.file_type().is_block_device() => {
            let d = FileDev::open(&spec.target, OpenMode::Read)?;
            let g = d.geometry();
            ("block device", g.size_bytes, g.logical_sector_size)
        }
        Ok(m) if m.len() == 0 => ("new file", h.source_size, ss),
        Ok(m) => ("existing file", m.len(), ss),
    };
    let img = ImageDev::new(&chain);
    let table =
        partition::read_table(&img)?.filter(|t| !t.has_errors() && !t.partitions.is_empty());
    if table.is_some() && target_ss != ss {
        return Err(Error::Refused {
            path: spec.target.clone(),
            reason: format!(
                "its logical sector size is {target_ss} bytes but the image's is {ss}; the partition table counts in sectors, so every partition would land in the wrong place"
            ),
        });
    }
    let mut warnings: Vec<String> = reader.meta()["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(|w| format!("when imaged: {w}")))
                .collect()
        })
        .unwrap_or_default();

    let records = reader.records();
    let ssb = u64::from(ss);
    // The source's backup-GPT area, and the target's, when the table is GPT.
    let mut gpt_tail: Option<(u64, GptMove)> = None; // (source backup-GPT start, new place)
    let min_target_size = match &table {
        None => h.source_size,
        Some(t) => {
            let part_end = t
                .partitions
                .iter()
                .map(|p| p.end_bytes())
                .max()
                .unwrap_or(0);
            match (&t.kind, &t.gpt) {
                (TableKind::Gpt, Some(g)) => {
                    let entry_sectors =
                        (u64::from(g.entry_count) * u64::from(g.entry_size)).div_ceil(ssb);
                    let need = part_end.div_ceil(ssb) * ssb + (entry_sectors + 1) * ssb;
                    let n = target_size / ssb;
                    let mv = GptMove {
                        backup_header_lba: n.saturating_sub(1),
                        backup_entries_lba: n.saturating_sub(1 + entry_sectors),
                        last_usable_lba: n.saturating_sub(2 + entry_sectors),
                    };
                    let src_tail = h.source_size.saturating_sub((entry_sectors + 1) * ssb);
                    gpt_tail = Some((src_tail, mv));
                    need
                }
                _ => part_end,
            }
        }
    };
    if target_size < min_target_size {
        return Err(Error::TooSmall {
            path: spec.target.clone(),
            need: min_target_size,
            have: target_size,
        });
    }
    let size_change = match target_size.cmp(&h.source_size) {
        std::cmp::Ordering::Equal => "same size",
        std::cmp::Ordering::Greater => "larger target",
        std::cmp::Ordering::Less => "smaller target",
    };
    let moved = target_size != h.source_size;

    let head_end = MIB.min(h.source_size);
    let mut writes = Vec::new();
    let mut dropped = 0u64;
    for (i, r) in records.iter().enumerate() {
        let start = r.disk_offset;
        let mut end = start + u64::from(r.raw_len);
        if let (Some((src_tail, _)), true) = (&gpt_tail, moved) {
            // The source's backup GPT is rebuilt at the target's end, never copied.
            end = end.min((*src_tail).max(start));
        }
        let kept = end;
        end = end.min(target_size);
        dropped += kept.saturating_sub(end.max(start));
        if end <= start {
            continue;
        }
        let stage = if start < head_end {
            Stage::Head
        } else if gpt_tail.as_ref().is_some_and(|(t, _)| end > *t) {
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
        if p.method == "skipped" {
            warnings.push(format!(
                "partition {} is not in the image (imaged with --partitions); its contents on the target are left as they are",
                p.number
            ));
        }
    }
    let write_bytes = writes.iter().map(|w| w.len).sum();
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
        target: spec.target.clone(),
        target_kind,
        target_size,
        source_size: h.source_size,
        sector_size: ss,
        table: table.as_ref().map(|t| t.kind.as_str()),
        size_change,
        min_target_size,
        gpt_move: gpt_tail.filter(|_| moved).map(|t| t.1),
        partitions,
        chunks: writes.len(),
        write_bytes,
        verify: spec.verify,
        warnings,
        writes,
        threads: spec.threads,
        search: spec.search.clone(),
    })
}

fn plan_partitions(
    reader: &crate::image::ImageReader,
    table: Option<&PartitionTable>,
) -> Vec<PlanPartition> {
    let regions = reader.meta()["regions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(t) = table else { return Vec::new() };
    t.partitions
        .iter()
        .filter(|p| !p.extended)
        .map(|p| {
            let r = regions
                .iter()
                .find(|r| r["partition"].as_u64() == Some(u64::from(p.number)));
            let s = |k: &str| r.and_then(|r| r[k].as_str().map(str::to_string));
            PlanPartition {
                number: p.number,
                start_bytes: p.start_bytes,
                size_bytes: p.size_bytes,
                fs: s("fs"),
                label: s("label"),
                method: s("method").unwrap_or_else(|| "unknown".into()),
            }
        })
        .collect()
}

/// The target, opened for writing; `fresh` when it is a file just created (all zeros).
fn open_target(plan: &RestorePlan) -> Result<(FileDev, bool)> {
    let path = &plan.target;
    let fresh = plan.target_kind == "new file";
    if fresh {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("creating", path, e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io("creating", path, e))?
            .len();
        if len != 0 {
            return Err(Error::Refused {
                path: path.clone(),
                reason: "the file appeared or grew since the plan was made".into(),
            });
        }
        f.set_len(plan.target_size)
            .map_err(|e| Error::io("sizing", path, e))?;
    }
    let dev = FileDev::open_with_sector_size(path, OpenMode::Write, plan.sector_size)?;
    if dev.len() != plan.target_size {
        return Err(Error::Refused {
            path: path.clone(),
            reason: format!(
                "its size changed from {} to {} bytes since the plan was made",
                plan.target_size,
                dev.len()
            ),
        });
    }
    Ok((dev, fresh))
}

/// A decoded frame's writes: (write, where its bytes start in the frame, hash), and the frame
/// (returned to the pool afterwards).
type Decoded = (Vec<(Write, usize, [u8; 32])>, Vec<u8>);

/// Bytes written between two flushes of the target.
const FLUSH_EVERY: u64 = 64 * MIB;

/// Flushes the target; a failure names the range written since the last flush.
fn flush(dev: &dyn BlockDev, start: u64, end: u64) -> Result<()> {
    match dev.sync() {
        Err(Error::Io { source, .. }) => Err(Error::Write {
            path: dev.path().to_path_buf(),
            offset: start,
            len: (end - start) as usize,
            source,
        }),
        other => other,
    }
}

/// Zeroes the table areas: the first 34 and last 33 sectors (at least 17 KiB each).
fn wipe_tables(dev: &dyn BlockDev, ss: u64) -> Result<()> {
    let len = (34 * ss).max(17 << 10).min(dev.len());
    let zeros = vec![0u8; len as usize];
    dev.write_at(&zeros, 0)?;
    let tail = (33 * ss).max(17 << 10).min(dev.len());
    dev.write_at(&zeros[..tail as usize], dev.len() - tail)?;
    flush(dev, 0, dev.len())
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
    let (dev, fresh) = open_target(plan)?;
    let r = run_on(plan, &chain, &dev, fresh, reporter, cancel)
        .and_then(|w| finish(plan, &dev, w, started, reporter, cancel));
    if r.is_err() {
        // Nothing half-done may look restored: a file we created goes away, a disk loses
        // its partition tables again.
        if fresh {
            let _ = std::fs::remove_file(&plan.target);
        } else {
            let _ = wipe_tables(&dev, u64::from(plan.sector_size));
        }
    }
    r
}

/// What [`run_on`] wrote: `(offset, len, blake3)` per range, and the byte count.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Every range written, with the hash of the bytes written there.
    pub ranges: Vec<(u64, u64, [u8; 32])>,
    /// Bytes written (or skipped as known zeros on a new file).
    pub bytes: u64,
}

/// Everything before read-back: wipe, data, tables, sync. Returns the written ranges.
/// Public so that tests can inject faults into the target.
pub fn run_on(
    plan: &RestorePlan,
    chain: &Chain,
    dev: &dyn BlockDev,
    fresh: bool,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<Written> {
    let ss = u64::from(plan.sector_size);
    if !fresh {
        wipe_tables(dev, ss)?;
    }

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
    let total = plan.write_bytes;
    reporter.phase(Phase::Write, Some(total));
    let mut written: Vec<(u64, u64, [u8; 32])> = Vec::with_capacity(plan.writes.len() + 2);
    let mut done = 0u64;
    let mut next = 0usize;
    let records = chain.leaf().records();
    // Buffered writes report errors at fsync; flushing every FLUSH_EVERY bytes pins a
    // failure to the range just written and bounds the dirty data.
    let mut batch: Option<(u64, u64)> = None;
    pipeline::run(
        Shape::for_threads(plan.threads),
        cancel,
        |mut stored: Vec<u8>| {
            let Some(job) = jobs.get(next) else {
                return Ok(None);
            };
            next += 1;
            chain.read(&job.0, &mut stored)?;
            Ok(Some((job, stored)))
        },
        |(job, stored): (&(FrameRead, Vec<Write>), Vec<u8>)| {
            let (fr, ws) = job;
            // The stored bytes become this worker's spare once decoded.
            let mut frame = pipeline::trade_spare(Vec::new());
            let decoded = chain.decode(fr, &stored, &mut frame);
            pipeline::trade_spare(stored);
            decoded?;
            // Each record is written straight from the decoded frame: (write, where its
            // bytes start in the frame, hash).
            let mut out = Vec::with_capacity(ws.len());
            for (k, w) in ws.iter().enumerate() {
                let bytes = chain.part(fr, k, &frame)?;
                let bytes = bytes.get(..w.len as usize).unwrap_or(bytes);
                let hash = if w.len == u64::from(records[w.record].raw_len) {
                    records[w.record].hash
                } else {
                    *blake3::hash(bytes).as_bytes()
                };
                let at = bytes.as_ptr() as usize - frame.as_ptr() as usize;
                out.push((*w, at, hash));
            }
            Ok((out, frame))
        },
        |(out, frame): Decoded| {
            // Contiguous records go down in one write.
            let mut run: Option<(u64, usize, usize)> = None; // (disk offset, at, len)
            let mut runs = Vec::new();
            for (w, at, hash) in out {
                if !(fresh && records[w.record].codec == Codec::Zero) {
                    match &mut run {
                        Some((o, a, l)) if *o + *l as u64 == w.offset && *a + *l == at => {
                            *l += w.len as usize;
                        }
                        _ => {
                            runs.extend(run.take());
                            run = Some((w.offset, at, w.len as usize));
                        }
                    }
                }
                written.push((w.offset, w.len, hash));
                done += w.len;
            }
            runs.extend(run);
            for (offset, at, len) in runs {
                let bytes = frame.get(at..at + len).unwrap_or_default();
                dev.write_at(bytes, offset)?;
                let end = offset + len as u64;
                batch = Some(batch.map_or((offset, end), |(s, e)| (s.min(offset), e.max(end))));
                if let Some((s, e)) = batch.filter(|(s, e)| e - s >= FLUSH_EVERY) {
                    flush(dev, s, e)?;
                    batch = None;
                }
            }
            reporter.progress(Phase::Write, done);
            Ok(frame)
        },
    )?;

    if let Some((s, e)) = batch {
        flush(dev, s, e)?;
    }

    // 3 and 4. The tables, last: decoded and verified one by one, patched when GPT moves.
    reporter.phase(Phase::Partition, None);
    let mut head_tail: Vec<(u64, Vec<u8>, Stage)> = Vec::new();
    for w in plan.writes.iter().filter(|w| w.stage != Stage::Data) {
        cancel.check()?;
        let mut raw = Vec::new();
        chain.read_record(w.record, &mut raw)?;
        raw.truncate(w.len as usize);
        head_tail.push((w.offset, raw, w.stage));
    }
    if let Some(mv) = &plan.gpt_move {
        relocate_gpt(
            &mut head_tail,
            &ImageDev::new(chain),
            mv,
            ss,
            plan.target_size,
        )?;
    }
    head_tail.sort_by_key(|(o, _, s)| (*s == Stage::Head, *o));
    for (off, bytes, _) in &head_tail {
        dev.write_at(bytes, *off)?;
        written.push((*off, bytes.len() as u64, *blake3::hash(bytes).as_bytes()));
        done += bytes.len() as u64;
    }
    reporter.progress_final(Phase::Write, done);

    reporter.phase(Phase::Sync, None);
    dev.sync()?;
    Ok(Written {
        ranges: written,
        bytes: done,
    })
}

/// Read-back verification and the kernel's partition nodes.
fn finish(
    plan: &RestorePlan,
    dev: &FileDev,
    written: Written,
    started: Instant,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<RestoreSummary> {
    let done = written.bytes;
    let written = written.ranges;
    // 5. Read-back verification, never from the page cache.
    let mut verified = 0u64;
    let mut method = "none";
    if plan.verify {
        reporter.phase(Phase::Verify, Some(written.iter().map(|w| w.1).sum()));
        let (check, m) = open_for_readback(dev, plan)?;
        method = m;
        verified = read_back(&check, &written, plan.threads, reporter, cancel)?;
    }

    // 6. The kernel's view of the new partitions.
    let nodes = if dev.is_block_device() {
        let table = partition::read_table(dev)?;
        refresh_partitions(dev, table.as_ref())
    } else {
        "not a block device".to_string()
    };
    Ok(RestoreSummary {
        target: plan.target.clone(),
        written_bytes: done,
        verified_bytes: verified,
        verify_method: method,
        partition_nodes: nodes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Rewrites the primary GPT header and protective MBR in the head chunks and adds the new
/// backup entry array and header at the target's end.
fn relocate_gpt(
    writes: &mut Vec<(u64, Vec<u8>, Stage)>,
    img: &ImageDev<'_>,
    mv: &GptMove,
    ss: u64,
    target_size: u64,
) -> Result<()> {
    let mut primary = vec![0u8; ss as usize];
    img.read_at(&mut primary, ss)?;
    let h = gpt::parse_header(&primary, 1).map_err(|reason| Error::Refused {
        path: img.path().to_path_buf(),
        reason: format!("its primary GPT header cannot be moved: {reason}"),
    })?;
    let entries_len = gpt::entry_array_bytes(&h);
    let mut entries = vec![0u8; entries_len as usize];
    img.read_at(&mut entries, h.entries_lba * ss)?;
    let header_size = le_u32(&primary, 12) as usize;
    let set = |b: &mut [u8], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let seal = |b: &mut [u8]| {
        b[16..20].fill(0);
        let crc = crc32fast::hash(&b[..header_size]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
    };
    let mut new_primary = primary.clone();
    set(&mut new_primary, 32, mv.backup_header_lba);
    set(&mut new_primary, 48, mv.last_usable_lba);
    seal(&mut new_primary);
    let mut backup = new_primary.clone();
    set(&mut backup, 24, mv.backup_header_lba);
    set(&mut backup, 32, 1);
    set(&mut backup, 72, mv.backup_entries_lba);
    seal(&mut backup);
    debug_assert_eq!(le_u64(&backup, 24), mv.backup_header_lba);

    let disk_sectors = target_size / ss;
    let pmbr_len = u32::try_from(disk_sectors - 1).unwrap_or(u32::MAX);
    let patch = |writes: &mut Vec<(u64, Vec<u8>, Stage)>, at: u64, bytes: &[u8]| {
        for (off, buf, _) in writes.iter_mut() {
            let end = *off + buf.len() as u64;
            if at >= *off && at + bytes.len() as u64 <= end {
                let i = (at - *off) as usize;
                buf[i..i + bytes.len()].copy_from_slice(bytes);
                return true;
            }
        }
        false
    };
    if !patch(writes, ss, &new_primary) {
        return Err(Error::Unsupported(
            "the image does not hold the primary GPT header as one chunk".into(),
        ));
    }
    // Protective MBR: the 0xEE entry's size in LBAs.
    let mut mbr = vec![0u8; 512];
    img.read_at(&mut mbr, 0)?;
    for e in 0..4 {
        let at = 446 + e * 16;
        if mbr[at + 4] == 0xEE {
            mbr[at + 12..at + 16].copy_from_slice(&pmbr_len.to_le_bytes());
        }
    }
    patch(writes, 0, &mbr);
    writes.push((mv.backup_entries_lba * ss, entries, Stage::Tail));
    writes.push((mv.backup_header_lba * ss, backup, Stage::Tail));
    Ok(())
}

/// A handle that reads the device, not the page cache.
fn open_for_readback(dev: &FileDev, plan: &RestorePlan) -> Result<(FileDev, &'static str)> {
    match FileDev::open_with_sector_size(&plan.target, OpenMode::ReadDirect, plan.sector_size) {
        Ok(d) => Ok((d, "O_DIRECT")),
        Err(_) => {
            sys::drop_cache(dev.file())
                .map_err(|e| Error::io("dropping the cache of", &plan.target, e))?;
            let d = FileDev::open_with_sector_size(&plan.target, OpenMode::Read, plan.sector_size)?;
            sys::drop_cache(d.file())
                .map_err(|e| Error::io("dropping the cache of", &plan.target, e))?;
            Ok((d, "dropped page cache"))
        }
    }
}

/// A buffer of `len` bytes starting at an address aligned to 4096, for `O_DIRECT`.
fn aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    const ALIGN: usize = 4096;
    buf.resize(len + ALIGN, 0);
    let skip = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
    &mut buf[skip..skip + len]
}

fn read_back(
    dev: &FileDev,
    written: &[(u64, u64, [u8; 32])],
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<u64> {
    let align = 4096u64.max(u64::from(dev.geometry().logical_sector_size));
    let mut next = 0usize;
    let mut done = 0u64;
    pipeline::run(
        Shape::for_threads(threads),
        cancel,
        |mut buf: Vec<u8>| {
            let Some(&(off, len, hash)) = written.get(next) else {
                return Ok(None);
            };
            next += 1;
            // O_DIRECT needs aligned offsets and lengths: read the aligned cover.
            let a_start = off / align * align;
            let a_end = (off + len).div_ceil(align) * align;
            let a_end = a_end.min(dev.len().max(off + len));
            let slice = aligned(&mut buf, (a_end - a_start) as usize);
            dev.read_at(slice, a_start)?;
            let skip = (buf.as_ptr().align_offset(4096)).min(4096) + (off - a_start) as usize;
            Ok(Some((off, len, hash, skip, buf)))
        },
        |(off, len, hash, skip, buf): (u64, u64, [u8; 32], usize, Vec<u8>)| {
            let got = blake3::hash(&buf[skip..skip + len as usize]);
            if *got.as_bytes() != hash {
                return Err(Error::VerifyMismatch {
                    path: dev.path().to_path_buf(),
                    offset: off,
                    end: off + len,
                });
            }
            Ok((len, buf))
        },
        |(len, buf)| {
            done += len;
            reporter.progress(Phase::Verify, done);
            Ok(buf)
        },
    )?;
    reporter.progress_final(Phase::Verify, done);
    Ok(done)
}

/// Makes the kernel see the partitions of `table`: BLKRRPART, then BLKPG for any node the
/// kernel did not create (kernels without partition parsers). Returns what happened.
fn refresh_partitions(dev: &FileDev, table: Option<&PartitionTable>) -> String {
    let mut rr = Err(std::io::Error::from_raw_os_error(libc::EBUSY));
    for _ in 0..20 {
        rr = sys::reread_partitions(dev.file());
        if !matches!(&rr, Err(e) if e.raw_os_error() == Some(libc::EBUSY)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let Some(t) = table else {
        return match rr {
            Ok(()) => "BLKRRPART (no partition table)".into(),
            Err(e) => format!("BLKRRPART failed: {e}"),
        };
    };
    let existing = existing_partitions(dev.path());
    let mut added = 0;
    let mut failures = Vec::new();
    for p in t.partitions.iter().filter(|p| !p.extended) {
        match existing.iter().find(|(n, _, _)| *n == p.number) {
            Some(&(_, start, size)) if start == p.start_bytes && size == p.size_bytes => continue,
            Some(_) => {
                if let Err(e) = sys::delete_partition(dev.file(), p.number) {
                    failures.push(format!("removing stale partition {}: {e}", p.number));
                    continue;
                }
            }
            None => {}
        }
        match sys::add_partition(dev.file(), p.number, p.start_bytes, p.size_bytes) {
            Ok(()) => added += 1,
            Err(e) => failures.push(format!("adding partition {}: {e}", p.number)),
        }
    }
    for (n, _, _) in &existing {
        if !t.partitions.iter().any(|p| p.number == *n && !p.extended) {
            if let Err(e) = sys::delete_partition(dev.file(), *n) {
                failures.push(format!("removing stale partition {n}: {e}"));
            }
        }
    }
    let mut s = match (&rr, added) {
        (Ok(()), 0) => "BLKRRPART".to_string(),
        (_, 0) => "already present".to_string(),
        (_, n) => format!("BLKPG added {n}"),
    };
    if !failures.is_empty() {
        s.push_str(&format!(" (failed: {})", failures.join("; ")));
    }
    s
}

/// Partition nodes the kernel has for the disk at `path`: (number, start bytes, size bytes).
fn existing_partitions(path: &Path) -> Vec<(u32, u64, u64)> {
    let paths = SystemPaths::default();
    let disks = discovery::scan(&paths).unwrap_or_default();
    discovery::find_by_path(&paths, &disks, path)
        .map(|(d, _)| {
            d.partitions
                .iter()
                .map(|p| (p.number, p.start_bytes, p.size_bytes))
                .collect()
        })
        .unwrap_or_default()
}
