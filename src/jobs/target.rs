//! The write side shared by `restore` and `clone`: opening the target, flushing so a write
//! error is pinned to a range, wiping the table areas, reading back what was written without
//! the page cache, and making the kernel see the new partitions.

use super::readback::Overlap;
use crate::blockdev::{sys, BlockDev, FileDev, OpenMode, ReadbackMethod};
use crate::discovery::{self, SystemPaths};
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::partition::edit::Layout;
use crate::partition::PartitionTable;
use crate::pipeline::{self, Shape};
use crate::units::MIB;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// What the target of a restore or clone is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetKind {
    /// A disk (or partition) device node.
    #[serde(rename = "block device")]
    BlockDevice,
    /// A disk-image file that exists (overwritten in place).
    #[serde(rename = "existing file")]
    ExistingFile,
    /// A disk-image file that does not exist yet (created with the source's size).
    #[serde(rename = "new file")]
    NewFile,
}

impl TargetKind {
    /// The words plans and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::BlockDevice => "block device",
            TargetKind::ExistingFile => "existing file",
            TargetKind::NewFile => "new file",
        }
    }
}

/// How the target's size compares with the source disk's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SizeChange {
    /// The same number of bytes.
    #[serde(rename = "same size")]
    Same,
    /// Larger: the backup GPT moves to the new end, the last partition may grow.
    #[serde(rename = "larger target")]
    Larger,
    /// Smaller: only when every partition still fits.
    #[serde(rename = "smaller target")]
    Smaller,
}

impl SizeChange {
    /// The words plans and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            SizeChange::Same => "same size",
            SizeChange::Larger => "larger target",
            SizeChange::Smaller => "smaller target",
        }
    }
}

words!(TargetKind, SizeChange);

/// What restore and clone plan alike about the disk they overwrite: where it is, what it is,
/// how its size compares, and how the partition table lands on it. Flattened into both plans'
/// JSON under the field names they always had.
#[derive(Debug, Clone, Serialize)]
pub struct TargetPlan {
    /// The target.
    #[serde(rename = "target")]
    pub path: PathBuf,
    /// Disk, existing file or new file.
    #[serde(rename = "target_kind")]
    pub kind: TargetKind,
    /// Target size in bytes.
    #[serde(rename = "target_size")]
    pub size: u64,
    /// Size of the source (or imaged) disk.
    pub source_size: u64,
    /// Logical sector size (source and target alike).
    pub sector_size: u32,
    /// Partition table kind, if the source has a valid one.
    pub table: Option<&'static str>,
    /// Same size, larger or smaller.
    pub size_change: SizeChange,
    /// Smallest target that can hold the partitions.
    #[serde(rename = "min_target_size")]
    pub min_size: u64,
    /// How the table lands on the target: backup GPT, grown partition, new disk ID.
    pub layout: Option<Layout>,
    /// With `--fit` onto a target too small for the layout as it is: what shrinks and moves
    /// (`layout` is then `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit: Option<super::fit::FitPlan>,
    /// Read back what was written.
    pub verify: bool,
    /// Bytes written between two regions handed to the overlapped read-back
    /// (128 MiB; tests make it small).
    #[serde(skip)]
    pub readback_region: u64,
}

/// What a target is, its size and logical sector size: a block device, an existing file, or
/// a new (missing or empty) file that will get `new_size` bytes and `file_ss`-byte sectors.
pub(crate) fn describe_target(
    path: &Path,
    new_size: u64,
    file_ss: u32,
) -> Result<(TargetKind, u64, u32)> {
    Ok(match std::fs::metadata(path) {
        Err(_) => (TargetKind::NewFile, new_size, file_ss),
        Ok(m) if m.file_type().is_block_device() => {
            let d = FileDev::open(path, OpenMode::Read)?;
            let g = d.geometry();
            (TargetKind::BlockDevice, g.size_bytes, g.logical_sector_size)
        }
        Ok(m) if m.len() == 0 => (TargetKind::NewFile, new_size, file_ss),
        Ok(m) => (TargetKind::ExistingFile, m.len(), file_ss),
    })
}

/// Checks that every filesystem on `src` (each partition of `table`, or the whole device when
/// there is none) can live on a disk of `target_ss`-byte sectors when the source's are
/// `source_ss`: refuses, naming the partition, one whose own sectors or blocks are smaller
/// (FAT or exFAT with 512-byte sectors, XFS with 512-byte sectors, ext with 1 KiB blocks on a
/// 4Kn disk). `whose` names the source in messages ("source's", "image's"). Returns warnings for what cannot be checked (NTFS). A change to smaller sectors
/// is always possible.
pub(crate) fn check_sector_change(
    src: &dyn BlockDev,
    table: Option<&PartitionTable>,
    source_ss: u32,
    target_ss: u32,
    target: &Path,
    whose: &str,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if source_ss == target_ss {
        return Ok(warnings);
    }
    let parts: Vec<(Option<u32>, u64, u64)> = match table {
        Some(t) => t
            .partitions
            .iter()
            .filter(|p| !p.extended)
            .map(|p| (Some(p.number), p.start_bytes, p.size_bytes))
            .collect(),
        None => vec![(None, 0, src.len())],
    };
    for (number, start, len) in parts {
        let name = number.map_or_else(|| "the disk".to_string(), |n| format!("partition {n}"));
        let slice = crate::blockdev::Slice::new(src, start, len);
        let Some(fit) = crate::fsmap::sector_fit(&slice, target_ss)? else {
            continue;
        };
        if let Some(floor) = fit.floor.filter(|&f| f < target_ss) {
            let unit = match fit.kind {
                crate::fsmap::FsKind::Ext2
                | crate::fsmap::FsKind::Ext3
                | crate::fsmap::FsKind::Ext4 => "blocks",
                _ => "sectors",
            };
            return Err(Error::Refused {
                path: target.to_path_buf(),
                reason: format!(
                    "its logical sector size is {target_ss} bytes, the {whose} {source_ss}; {name} holds {} with {floor}-byte {unit}, which cannot live on {target_ss}-byte sectors (Linux refuses to mount it); copy its files onto a filesystem made on the target instead",
                    fit.kind.display_name()
                ),
            });
        }
        if let Some(note) = fit.note {
            warnings.push(format!("{name}: {note}"));
        }
    }
    warnings.push(format!(
        "the target's logical sectors are {target_ss} bytes, the {whose} {source_ss}: the partition table is rebuilt in the target's sectors; a BIOS boot loader that counts sectors (GRUB's boot.img) will not find its next stage, a UEFI boot is unaffected"
    ));
    Ok(warnings)
}

/// The target, opened for writing; `fresh` when it is a file just created (all zeros).
pub(crate) fn open_target(
    path: &Path,
    kind: TargetKind,
    size: u64,
    sector_size: u32,
) -> Result<(FileDev, bool)> {
    let fresh = kind == TargetKind::NewFile;
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
                path: path.to_path_buf(),
                reason: "the file appeared or grew since the plan was made".into(),
            });
        }
        f.set_len(size).map_err(|e| Error::io("sizing", path, e))?;
    }
    let dev = FileDev::open_with_sector_size(path, OpenMode::Write, sector_size)?;
    if dev.len() != size {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: format!(
                "its size changed from {} to {} bytes since the plan was made",
                size,
                dev.len()
            ),
        });
    }
    Ok((dev, fresh))
}

/// Bytes written between two flushes of the target.
pub(crate) const FLUSH_EVERY: u64 = 64 * MIB;

/// Flushes the target; a failure names the range written since the last flush.
pub(crate) fn flush(dev: &dyn BlockDev, start: u64, end: u64) -> Result<()> {
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

/// Zeroes the table and signature areas: the first and the last MiB of `dev`, but never
/// bytes inside `parts` (the first partition's start and the last partition's end, so a
/// partition the job does not write keeps its content), and always at least the first 34
/// and last 33 sectors (both GPT copies). What stays is nothing a partition-table reader,
/// firmware or filesystem probe would take for a finished disk.
pub(crate) fn wipe_tables(dev: &dyn BlockDev, ss: u64, parts: Option<(u64, u64)>) -> Result<()> {
    let size = dev.len();
    let min_head = (34 * ss).max(17 << 10);
    let min_tail = (33 * ss).max(17 << 10);
    let head = match parts {
        Some((first, _)) => MIB.min(first).max(min_head),
        None => MIB,
    }
    .min(size);
    let tail_start = match parts {
        Some((_, end)) => size
            .saturating_sub(MIB)
            .max(end)
            .min(size.saturating_sub(min_tail)),
        None => size.saturating_sub(MIB),
    };
    let zeros = vec![0u8; MIB.max(min_head).max(min_tail) as usize];
    dev.write_at(&zeros[..head as usize], 0)?;
    dev.write_at(&zeros[..(size - tail_start) as usize], tail_start)?;
    flush(dev, 0, size)
}

pub(crate) use crate::blockdev::aligned;

/// Workers for a job that waits on a disk more than it computes: at least four, so that
/// I/Os queue up (measured on bench/clone.sh: 2 -> 4 workers made clone's copy phase about 8%
/// faster), unless `threads` asks for a number.
pub(crate) fn io_workers(threads: usize) -> usize {
    match threads {
        0 => Shape::for_threads(0).threads.max(4),
        n => n,
    }
}

/// Workers for a job that reads, decodes and writes image frames (restore, verify): eight, so
/// that reads of the image and writes of the target queue up on both disks (measured on a
/// 1.1 GB restore onto a direct-io loop device: 4 workers wrote in 1.45 s, 8 in 1.1 s, 12 no
/// faster), or every core if there are more, but no more than fit in 192 MiB at three
/// frame-sized buffers each (two in the pipeline's pool, one decoded); `threads` overrides.
pub(crate) fn frame_workers(threads: usize, frame_bytes: u64) -> usize {
    const BUDGET: u64 = 192 * MIB;
    match threads {
        0 => {
            let fit = (BUDGET / (3 * frame_bytes.max(1))).max(1) as usize;
            Shape::for_threads(0).threads.max(8).min(fit)
        }
        n => n,
    }
}

/// A range written: offset, length, and the blake3 of the bytes written there.
pub(crate) type Span = (u64, u64, [u8; 32]);

/// The most bytes one read-back read covers: touching ranges are read together up to this.
const READ_BACK_MAX: u64 = 4 * MIB;

/// Groups of `order` (indices into `written`, sorted by offset) whose ranges touch, each
/// covering at most [`READ_BACK_MAX`] bytes (a longer single range stays alone).
fn read_groups(written: &[(u64, u64, [u8; 32])]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..written.len()).collect();
    order.sort_by_key(|&i| written[i].0);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut span: Option<(u64, u64)> = None; // (start, end) of the last group
    for i in order {
        let (off, len, _) = written[i];
        match (&mut span, groups.last_mut()) {
            (Some((s, e)), Some(g)) if *e == off && off + len - *s <= READ_BACK_MAX => {
                *e = off + len;
                g.push(i);
            }
            _ => {
                span = Some((off, off + len));
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// Reads back every `(offset, len, blake3)` range of `dev` and compares hashes; returns the
/// bytes checked. A mismatch is [`Error::VerifyMismatch`] naming the range. Touching ranges
/// are read together (up to 4 MiB a read), by [`io_workers`] workers, so several reads are in
/// flight.
pub(crate) fn read_back(
    dev: &dyn BlockDev,
    written: &[Span],
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<u64> {
    let once = std::iter::once(written.to_vec());
    let progress = |d| reporter.progress(Phase::Verify, d);
    let done = read_back_regions(dev, once, || Ok(()), threads, progress, cancel)?;
    reporter.progress_final(Phase::Verify, done);
    Ok(done)
}

/// [`read_back`] of ranges that arrive in regions (from a job still writing): before the
/// reads of each region, `ready` runs (a sync of the target). One pipeline serves every
/// region, so threads and buffers are set up once. `progress` gets the bytes checked so far.
pub(crate) fn read_back_regions(
    dev: &dyn BlockDev,
    mut regions: impl Iterator<Item = Vec<Span>> + Send,
    mut ready: impl FnMut() -> Result<()> + Send,
    threads: usize,
    mut progress: impl FnMut(u64),
    cancel: &CancelToken,
) -> Result<u64> {
    let align = 4096u64.max(u64::from(dev.geometry().logical_sector_size));
    // the groups of the current region, handed out from the back
    let mut groups: Vec<Vec<Span>> = Vec::new();
    let mut done = 0u64;
    pipeline::run(
        Shape::for_threads(io_workers(threads)),
        cancel,
        // The producer only hands out groups; the workers read them, so reads queue up.
        |buf: Vec<u8>| {
            while groups.is_empty() {
                let Some(region) = regions.next() else {
                    return Ok(None);
                };
                ready()?;
                groups = read_groups(&region)
                    .into_iter()
                    .rev()
                    .map(|g| g.into_iter().map(|i| region[i]).collect())
                    .collect();
            }
            Ok(groups.pop().map(|g| (g, buf)))
        },
        |(g, mut buf): (Vec<Span>, Vec<u8>)| {
            let (first, last) = (g[0], g[g.len() - 1]);
            let (off, end) = (first.0, last.0 + last.1);
            // O_DIRECT needs aligned offsets and lengths: read the aligned cover.
            let a_start = off / align * align;
            let a_end = end.div_ceil(align) * align;
            let a_end = a_end.min(dev.len().max(end));
            let slice = aligned(&mut buf, (a_end - a_start) as usize);
            dev.read_at(slice, a_start)?;
            let base = (off - a_start) as usize;
            for (o, l, hash) in g {
                let at = base + (o - off) as usize;
                if *blake3::hash(&slice[at..at + l as usize]).as_bytes() != hash {
                    return Err(Error::VerifyMismatch {
                        path: dev.path().to_path_buf(),
                        offset: o,
                        end: o + l,
                    });
                }
            }
            Ok((end - off, buf))
        },
        |(len, buf)| {
            done += len;
            progress(done);
            Ok(buf)
        },
    )?;
    Ok(done)
}

/// Makes the kernel see the partitions of `table`: BLKRRPART, then BLKPG for any node the
/// kernel did not create (kernels without partition parsers). Returns what happened.
pub(crate) fn refresh_partitions(dev: &FileDev, table: Option<&PartitionTable>) -> String {
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

/// `--grow-last`, after the copy is verified and every handle of the target is closed (an
/// `O_EXCL` handle of a disk makes the kernel refuse e2fsck's exclusive open of its
/// partitions). A failure leaves a complete, verified copy whose last partition is larger
/// than its filesystem, and says so.
pub(crate) fn grow_after(
    layout: Option<&crate::partition::edit::Layout>,
    target: &Path,
    is_block: bool,
    verified: bool,
    reporter: &Reporter,
) -> Result<Option<crate::resize::FsGrowReport>> {
    let Some(g) = layout.and_then(|l| l.grow.as_ref()) else {
        return Ok(None);
    };
    reporter.phase(Phase::Grow, None);
    crate::resize::grow_partition_fs(target, is_block, g.number, g.start_bytes, g.new_size_bytes)
        .map(Some)
        .map_err(|e| Error::GrowFailed {
            path: target.to_path_buf(),
            partition: g.number,
            verified,
            source: Box::new(e),
        })
}

/// How `target_size` compares with `source_size`.
pub(crate) fn size_change(target_size: u64, source_size: u64) -> SizeChange {
    match target_size.cmp(&source_size) {
        std::cmp::Ordering::Equal => SizeChange::Same,
        std::cmp::Ordering::Greater => SizeChange::Larger,
        std::cmp::Ordering::Less => SizeChange::Smaller,
    }
}

impl TargetPlan {
    /// Opens the target for writing as planned (a new file is created with the planned size),
    /// refusing one that changed since the plan; true when the file was created here.
    pub(crate) fn open(&self) -> Result<(FileDev, bool)> {
        open_target(&self.path, self.kind, self.size, self.sector_size)
    }

    /// After a failure: nothing half-done may look restored. A file this job created goes
    /// away; a disk loses its partition tables again (`span`: the first partition's start and
    /// the last one's end, when there is a table).
    pub(crate) fn undo(&self, dev: &FileDev, fresh: bool, span: Option<(u64, u64)>) {
        if fresh {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = wipe_tables(dev, u64::from(self.sector_size), span);
        }
    }

    /// Grows the last partition's filesystem when the layout asks for it (after every handle
    /// on the target is closed).
    pub(crate) fn grow(
        &self,
        is_block: bool,
        reporter: &Reporter,
    ) -> Result<Option<crate::resize::FsGrowReport>> {
        grow_after(
            self.layout.as_ref(),
            &self.path,
            is_block,
            self.verify,
            reporter,
        )
    }
}

/// Reads back `ranges` of `dev` without its cache (see [`BlockDev::uncached`]), unless
/// `verify` is off; returns the bytes checked and how the cache was bypassed.
fn verify_ranges(
    dev: &dyn BlockDev,
    verify: bool,
    ranges: &[(u64, u64, [u8; 32])],
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<(u64, ReadbackMethod)> {
    if !verify {
        return Ok((0, ReadbackMethod::None));
    }
    match dev.uncached()? {
        Some((check, method)) => Ok((
            read_back(&*check, ranges, threads, reporter, cancel)?,
            method,
        )),
        None => Ok((
            read_back(dev, ranges, threads, reporter, cancel)?,
            ReadbackMethod::NoCache,
        )),
    }
}

/// What a restore or clone wrote and read back.
#[derive(Debug, Clone)]
pub struct Written {
    /// Every range written, with the blake3 of the bytes written there: the data, then the
    /// table areas.
    pub ranges: Vec<(u64, u64, [u8; 32])>,
    /// Bytes written (or skipped as known zeros on a new file).
    pub bytes: u64,
    /// Bytes read back and compared (0 with `--no-verify`).
    pub verified: u64,
    /// How the read-back bypassed the cache.
    pub method: ReadbackMethod,
    /// Seconds the data's read-back took.
    pub verify_seconds: f64,
    /// Seconds the data's writing took, until it was durable (set by the job).
    pub write_seconds: f64,
}

/// The end of every restore and clone, once the data is written: the data is made durable
/// and (with `verify`) read back and compared (by `overlap`, which has been reading back
/// while the job wrote, when there is one), and only then are the partition tables and
/// the first MiB (`tables`: tail areas first, the head last) written, synced and read back.
/// A target whose data was never verified therefore never carries a partition table: a
/// failure, a cancel or a crash before the end leaves it without one (the caller wipes what
/// a failure leaves).
#[allow(clippy::too_many_arguments)]
pub(crate) fn data_then_tables(
    dev: &dyn BlockDev,
    data: Vec<(u64, u64, [u8; 32])>,
    data_bytes: u64,
    tables: &[(u64, Vec<u8>)],
    verify: bool,
    threads: usize,
    overlap: Option<Overlap>,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<Written> {
    reporter.phase(Phase::Sync, None);
    dev.sync()?;
    cancel.check()?;
    let started = std::time::Instant::now();
    let total = data.iter().map(|w| w.1).sum();
    let (mut verified, method) = match overlap {
        Some(o) => o.finish(total, reporter)?,
        None => {
            if verify {
                reporter.phase(Phase::Verify, Some(total));
            }
            verify_ranges(dev, verify, &data, threads, reporter, cancel)?
        }
    };
    let verify_seconds = started.elapsed().as_secs_f64();
    reporter.phase(Phase::Partition, None);
    let mut table_ranges = Vec::with_capacity(tables.len());
    let mut bytes = data_bytes;
    for (off, b) in tables {
        cancel.check()?;
        dev.write_at(b, *off)?;
        table_ranges.push((*off, b.len() as u64, *blake3::hash(b).as_bytes()));
        bytes += b.len() as u64;
    }
    dev.sync()?;
    // a few KiB: read back without progress events, after the data's
    let (v, _) = verify_ranges(
        dev,
        verify,
        &table_ranges,
        threads,
        &Reporter::silent(),
        cancel,
    )?;
    verified += v;
    let mut ranges = data;
    ranges.extend(table_ranges);
    Ok(Written {
        ranges,
        bytes,
        verified,
        method,
        verify_seconds,
        write_seconds: 0.0,
    })
}

/// Makes the kernel see the partitions now on `dev` (see [`refresh_partitions`]); says what
/// happened, or "not a block device".
pub(crate) fn partition_nodes(dev: &FileDev) -> Result<String> {
    if !dev.is_block_device() {
        return Ok("not a block device".to_string());
    }
    let table = crate::partition::read_table(dev)?;
    Ok(refresh_partitions(dev, table.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_back_groups_join_touching_ranges_in_disk_order_up_to_4_mib() {
        let h = [0u8; 32];
        let k = 64 << 10;
        // out of order, a gap, and a run longer than 4 MiB
        let mut w = vec![(k, k, h), (0, k, h), (10 * k, k, h)];
        for n in 0..70 {
            w.push((MIB * 8 + n * k, k, h));
        }
        let g = read_groups(&w);
        assert_eq!(g[0], vec![1, 0]);
        assert_eq!(g[1], vec![2]);
        // 4 MiB is 64 records of 64 KiB: the run of 70 splits after 64
        assert_eq!(g[2].len(), 64);
        assert_eq!(g[3].len(), 6);
        assert_eq!(g.len(), 4);
        // a single range larger than the cap stays one group
        assert_eq!(read_groups(&[(0, 8 * MIB, h)]), vec![vec![0]]);
    }

    #[test]
    fn read_back_names_exactly_the_range_that_reads_back_wrong() {
        use crate::blockdev::MemDev;
        let k = 64usize << 10;
        let data: Vec<u8> = (0..16 * k).map(|i| (i * 13 % 251) as u8).collect();
        let hash = |o: usize| *blake3::hash(&data[o..o + k]).as_bytes();
        // sixteen touching 64 KiB ranges, listed out of order: one read
        let mut w: Vec<(u64, u64, [u8; 32])> = (0..16)
            .map(|n| ((n * k) as u64, k as u64, hash(n * k)))
            .collect();
        w.reverse();
        let good = MemDev::from_vec(data.clone(), 512);
        let (r, c) = (Reporter::silent(), CancelToken::new());
        assert_eq!(read_back(&good, &w, 2, &r, &c).unwrap(), 16 * k as u64);
        // a write that never reached the disk, in the middle of the group
        let mut lost = data.clone();
        lost[9 * k + 100] ^= 0xff;
        let bad = MemDev::from_vec(lost, 512);
        match read_back(&bad, &w, 2, &r, &c) {
            Err(Error::VerifyMismatch { offset, end, .. }) => {
                assert_eq!((offset, end), ((9 * k) as u64, (10 * k) as u64));
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
    }
}
