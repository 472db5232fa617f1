//! `image --rescue`: imaging a failing disk. Every used block is read, read errors do not stop
//! the job, and what could not be read is recorded in the image as missing
//! ([`Codec::Missing`], format 1.3), never as zeros that look like data.
//!
//! The passes (after GNU ddrescue's copy, trim, scrape and retry, on the used blocks only):
//! 1. **copy**: the plan's chunks, forward, read and compressed in parallel like a normal
//!    image, one read per chunk (after the first read that hangs, the reads take turns at
//!    the device: see [`TimedReader`]); after the first failure, in 1 MiB pieces. A piece that fails is left for later, and the reads after it are skipped by a
//!    distance that doubles with every failure in a row (from one chunk up to
//!    [`MAX_SKIP`] or a hundredth of the copy), so the good data comes first and a bad
//!    area is not read again and again.
//! 2. **copy skipped**: the skipped chunks, backwards, one read each.
//! 3. **trim**: each failed chunk is read in blocks (64 KiB) from its first block forward
//!    until one fails, and from its last block backward until one fails; what lies between
//!    is left to scrape.
//! 4. **scrape**: what is left is read block by block; a block that fails in 4 KiB pieces,
//!    and a piece that fails sector by sector; a sector that fails is bad.
//! 5. **retry** (`--retries N` passes): every bad sector once more per pass, alternating
//!    direction, the last pass backwards.
//!
//! Every read goes through a [`TimedReader`]: a read that does not answer within the timeout
//! fails like a read error, and the job can be cancelled at any time. When the disk stops
//! answering (too many hung reads) or is gone (`ENODEV`, `ENXIO`, `ENOMEDIUM`), the passes
//! end there and everything not yet read is recorded as missing, with a warning.
//!
//! The state of every byte to read is kept in a [`RescueMap`] (the ddrescue states: not
//! tried, not trimmed, not scraped, bad, finished). Reads are in units of the source's
//! logical sector, through `O_DIRECT` on a block device (so a read error names the sector,
//! not a page of the cache).

use super::rescue_log::RescueLog;
use super::{metadata, ImagePlan, ImageSummary};
use crate::blockdev::timed::TimedReader;
use crate::blockdev::{BlockDev, FileDev, OpenMode};
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter, RescueStats};
use crate::image::encode::encode;
use crate::image::{format, hex, missing_ranges, Chain, Codec, EncodedChunk, Header, ImageWriter};
use crate::image::{MissingRange, Record};
use crate::pipeline::{self, Shape};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest skip after a failed read in the copy pass (1 GiB, as ddrescue's default).
pub const MAX_SKIP: u64 = 1 << 30;
/// Default time a single read may take before it counts as failed.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retry passes over bad sectors.
pub const DEFAULT_RETRIES: u32 = 1;

/// How `image --rescue` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RescueOptions {
    /// Retry passes over bad sectors after scraping; the last one runs backwards.
    pub retries: u32,
    /// Seconds a single read may take before it counts as failed.
    pub read_timeout_secs: f64,
    /// Go on with an earlier rescue into the same file instead of starting one: an
    /// interrupted one (its partial files and rescue log), or a sealed image whose missing
    /// ranges are tried again.
    pub resume: bool,
    /// Keep a GNU ddrescue mapfile of the rescue here (written at each checkpoint and at
    /// the end; see [`super::mapfile`]).
    pub mapfile: Option<std::path::PathBuf>,
    /// Read only the finished (`+`) blocks of this ddrescue mapfile; used blocks outside it
    /// are recorded as missing.
    pub domain: Option<std::path::PathBuf>,
}

impl Default for RescueOptions {
    fn default() -> Self {
        RescueOptions {
            retries: DEFAULT_RETRIES,
            read_timeout_secs: DEFAULT_READ_TIMEOUT.as_secs_f64(),
            resume: false,
            mapfile: None,
            domain: None,
        }
    }
}

/// What `--resume` goes on from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum ResumeFrom {
    /// A rescue whose process died: its partial files and rescue log.
    Interrupted {
        /// The rescue log.
        log: std::path::PathBuf,
        /// Its good checkpoints.
        checkpoints: u32,
        /// Bytes it had rescued.
        rescued_bytes: u64,
        /// Bytes it had not read yet or failed to read.
        left_bytes: u64,
    },
    /// A sealed image: its missing ranges are read again, and it is replaced.
    Sealed {
        /// Bytes it records as missing.
        missing_bytes: u64,
        /// In how many ranges.
        missing_ranges: usize,
    },
}

/// True when a rescue into `output` died between creating its partial file and its rescue
/// log (no sealed image, no log): it had rescued nothing.
pub(super) fn died_before_its_log(output: &std::path::Path) -> bool {
    crate::image::partial_path(output).exists()
        && !super::rescue_log::log_path(output).exists()
        && !output.exists()
}

/// Finds what `--resume` of `output` goes on from, and the header it was written with.
/// Refuses when there is nothing to resume, and a sealed image that other images name as
/// their parent (replacing it would break their chains).
pub(super) fn resume_point(output: &std::path::Path) -> Result<(ResumeFrom, Header)> {
    let log = super::rescue_log::log_path(output);
    let partial = crate::image::partial_path(output);
    if log.exists() && partial.exists() {
        let st = super::rescue_log::read(&log)?;
        let left = st.map.total() - st.map.bytes(AreaState::Finished);
        return Ok((
            ResumeFrom::Interrupted {
                log,
                checkpoints: st.checkpoints,
                rescued_bytes: st.map.bytes(AreaState::Finished),
                left_bytes: left,
            },
            st.header,
        ));
    }
    if !output.exists() {
        return Err(Error::Refused {
            path: output.to_path_buf(),
            reason: format!(
                "there is nothing to resume: no image of that name, and no {} with its rescue log {}",
                partial.display(),
                log.display()
            ),
        });
    }
    let reader = crate::image::ImageReader::open(output)?;
    let missing = missing_ranges(reader.records());
    if missing.is_empty() {
        return Err(Error::Refused {
            path: output.to_path_buf(),
            reason:
                "it records no missing ranges: every used byte was read, there is nothing to resume"
                    .into(),
        });
    }
    let id = hex(&reader.header().image_id);
    let dir = crate::image::volumes::parent_dir(output);
    if let Some(child) = crate::jobs::chain::images_in(&dir)?
        .into_iter()
        .find(|f| f.parent_id.as_deref() == Some(id.as_str()))
    {
        return Err(Error::Refused {
            path: output.to_path_buf(),
            reason: format!(
                "{} is an image made on top of it; resuming would change it under that child. Make a new incremental image with --rescue instead (it also reads what this one is missing)",
                child.path.display()
            ),
        });
    }
    // a log left by a resume that died before it began is stale: the sealed image is whole
    if log.exists() {
        let _ = std::fs::remove_file(&log);
    }
    Ok((
        ResumeFrom::Sealed {
            missing_bytes: missing.iter().map(|m| m.len_bytes).sum(),
            missing_ranges: missing.len(),
        },
        reader.header().clone(),
    ))
}

/// The state of a range of the source, as ddrescue names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AreaState {
    /// Not read yet.
    NonTried,
    /// A large read failed here; its edges are not trimmed yet.
    NonTrimmed,
    /// Trimmed; its inside is not yet read in small pieces.
    NonScraped,
    /// A sector that failed to read on its own.
    Bad,
    /// Read and stored.
    Finished,
}

impl AreaState {
    const ALL: [AreaState; 5] = [
        AreaState::NonTried,
        AreaState::NonTrimmed,
        AreaState::NonScraped,
        AreaState::Bad,
        AreaState::Finished,
    ];

    fn idx(self) -> usize {
        self as usize
    }

    /// The state stored as `v` (its position in the declaration), as the rescue log writes it.
    pub fn from_u8(v: u8) -> Option<AreaState> {
        AreaState::ALL.get(usize::from(v)).copied()
    }

    /// The character a GNU ddrescue mapfile uses for this state.
    pub fn ddrescue_char(self) -> char {
        match self {
            AreaState::NonTried => '?',
            AreaState::NonTrimmed => '*',
            AreaState::NonScraped => '/',
            AreaState::Bad => '-',
            AreaState::Finished => '+',
        }
    }
}

/// Which bytes of the source are in which state. Only the ranges given to [`RescueMap::new`]
/// are tracked (the used blocks); [`RescueMap::set`] never extends them. Areas are disjoint,
/// sorted, and neighbours in the same state are joined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescueMap {
    /// start -> (end, state)
    areas: BTreeMap<u64, (u64, AreaState)>,
    totals: [u64; 5],
}

impl RescueMap {
    /// A map of `ranges` (`(start, len)`, disjoint), all not tried.
    pub fn new(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut m = RescueMap::default();
        for (s, l) in ranges {
            if l > 0 {
                m.areas.insert(s, (s + l, AreaState::NonTried));
                m.totals[AreaState::NonTried.idx()] += l;
            }
        }
        m.join(0, u64::MAX);
        m
    }

    /// A map of `(start, end, state)` areas, as [`RescueMap::iter`] gives them; `None` if
    /// they are empty, unsorted or overlap.
    pub fn from_areas(areas: Vec<(u64, u64, AreaState)>) -> Option<Self> {
        let mut m = RescueMap::default();
        let mut end = 0u64;
        for (s, e, st) in areas {
            if s >= e || s < end {
                return None;
            }
            m.areas.insert(s, (e, st));
            m.totals[st.idx()] += e - s;
            end = e;
        }
        m.join(0, u64::MAX);
        Some(m)
    }

    /// Starts tracking the parts of `ranges` (`(start, len)`) not tracked yet, as not tried.
    pub fn track(&mut self, ranges: impl IntoIterator<Item = (u64, u64)>) {
        for (s, l) in ranges {
            let e = s + l;
            let mut pos = s;
            let covered: Vec<(u64, u64)> = self
                .areas
                .range(..e)
                .filter(|(_, &(ae, _))| ae > s)
                .map(|(&as_, &(ae, _))| (as_, ae))
                .collect();
            for (cs, ce) in covered {
                if cs > pos {
                    self.areas.insert(pos, (cs, AreaState::NonTried));
                    self.totals[AreaState::NonTried.idx()] += cs - pos;
                }
                pos = pos.max(ce);
            }
            if pos < e {
                self.areas.insert(pos, (e, AreaState::NonTried));
                self.totals[AreaState::NonTried.idx()] += e - pos;
            }
            self.join(s, e);
        }
    }

    /// The state of every byte of `start..end` when it is tracked and all in one state.
    pub fn uniform(&self, start: u64, end: u64) -> Option<AreaState> {
        let (&s, &(e, st)) = self.areas.range(..=start).next_back()?;
        (s <= start && end <= e).then_some(st)
    }

    /// Puts the tracked bytes of `start..end` in `state`.
    pub fn set(&mut self, start: u64, end: u64, state: AreaState) {
        if start >= end {
            return;
        }
        let hit: Vec<(u64, u64, AreaState)> = self
            .areas
            .range(..end)
            .rev()
            .take_while(|(_, &(e, _))| e > start)
            .map(|(&s, &(e, st))| (s, e, st))
            .collect();
        for (s, e, old) in hit {
            self.areas.remove(&s);
            let (ms, me) = (s.max(start), e.min(end));
            self.totals[old.idx()] -= me - ms;
            self.totals[state.idx()] += me - ms;
            if s < ms {
                self.areas.insert(s, (ms, old));
            }
            if me < e {
                self.areas.insert(me, (e, old));
            }
            self.areas.insert(ms, (me, state));
        }
        self.join(start, end);
    }

    /// Joins touching neighbours in the same state around `start..end`.
    fn join(&mut self, start: u64, end: u64) {
        let first = self
            .areas
            .range(..start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        let keys: Vec<u64> = self.areas.range(first..=end).map(|(&s, _)| s).collect();
        let mut prev: Option<(u64, u64, AreaState)> = None;
        for k in keys {
            let Some(&(e, st)) = self.areas.get(&k) else {
                continue;
            };
            match prev {
                Some((ps, pe, pst)) if pe == k && pst == st => {
                    self.areas.remove(&k);
                    self.areas.insert(ps, (e, st));
                    prev = Some((ps, e, st));
                }
                _ => prev = Some((k, e, st)),
            }
        }
    }

    /// The areas in `state`, as `(start, end)`, in disk order.
    pub fn areas(&self, state: AreaState) -> Vec<(u64, u64)> {
        self.areas
            .iter()
            .filter(|(_, &(_, st))| st == state)
            .map(|(&s, &(e, _))| (s, e))
            .collect()
    }

    /// Every area, `(start, end, state)`, in disk order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, AreaState)> + '_ {
        self.areas.iter().map(|(&s, &(e, st))| (s, e, st))
    }

    /// Bytes in `state`.
    pub fn bytes(&self, state: AreaState) -> u64 {
        self.totals[state.idx()]
    }

    /// Bytes tracked.
    pub fn total(&self) -> u64 {
        AreaState::ALL.iter().map(|s| self.bytes(*s)).sum()
    }
}

/// What the rescue did, beyond a normal image's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RescueReport {
    /// The passes run, in order.
    pub passes: Vec<String>,
    /// Reads that failed (errors and timeouts), over all passes.
    pub failed_reads: u64,
    /// Reads that did not answer within the timeout.
    pub hung_reads: u32,
    /// Why the passes ended before every byte was tried, when they did.
    pub stopped: Option<String>,
    /// The read timeout, seconds.
    pub read_timeout_secs: f64,
    /// Retry passes asked for.
    pub retries: u32,
}

/// Opens the source for a rescue: `O_DIRECT` on a block device (read errors then name the
/// sector), buffered otherwise. Returns the device and its read unit (the logical sector).
pub(super) fn open_source(
    source: &std::path::Path,
    file_sector_size: u32,
) -> Result<(Arc<dyn BlockDev>, u64)> {
    use std::os::unix::fs::FileTypeExt;
    let is_block = std::fs::metadata(source).is_ok_and(|m| m.file_type().is_block_device());
    let open = |mode| FileDev::open_with_sector_size(source, mode, file_sector_size);
    let dev = if is_block {
        open(OpenMode::ReadDirect).or_else(|_| open(OpenMode::Read))?
    } else {
        open(OpenMode::Read)?
    };
    let unit = u64::from(dev.geometry().logical_sector_size.max(512));
    Ok((Arc::new(dev), unit))
}

/// The source's inspect report (model, serial, partitions) for the image's metadata, given
/// up after twice the read timeout: a hung disk must not hang the plan. The inspection runs
/// on its own thread, which is left behind when it hangs.
pub(super) fn inspect_in_time(
    paths: &crate::discovery::SystemPaths,
    spec: &super::ImageSpec,
    opts: &RescueOptions,
) -> Option<crate::inspect::DiskReport> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (paths, source, ss) = (paths.clone(), spec.source.clone(), spec.file_sector_size);
    std::thread::Builder::new()
        .name("lifeboat-inspect".into())
        .spawn(move || {
            let _ = tx.send(crate::inspect::inspect_path(&paths, &source, ss).ok());
        })
        .ok()?;
    rx.recv_timeout(Duration::from_secs_f64(
        (opts.read_timeout_secs * 2.0).clamp(0.1, 86_400.0),
    ))
    .ok()
    .flatten()
}

/// Reads the partition table of a failing disk: sectors that fail read as zeros (which no
/// table's signature or checksum accepts, so a damaged primary GPT gives way to the backup),
/// and a table that still cannot be read means none (the whole disk is then imaged).
pub(super) fn lenient_table(
    dev: &dyn BlockDev,
    warnings: &mut Vec<String>,
) -> Option<crate::partition::PartitionTable> {
    let l = Lenient::new(dev);
    let table = crate::partition::read_table(&l);
    let failed = l.failed();
    if !failed.is_empty() {
        warnings.push(format!(
            "the partition table area has unreadable sectors (bytes {}); they are read as zeros to find the table",
            failed
                .iter()
                .map(|(s, e)| format!("{s}..{e}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    match table {
        Ok(t) => t,
        Err(e) => {
            warnings.push(format!(
                "the partition table could not be read ({}): the whole disk is imaged",
                crate::error::with_causes(&e)
            ));
            None
        }
    }
}

/// A read-only view of a device in which sectors that fail to read read as zeros, and are
/// listed. Only for structures whose checksums reject zeros (partition tables): never for
/// allocation maps, where zeros would mean "free".
pub(super) struct Lenient<'a> {
    dev: &'a dyn BlockDev,
    failed: std::sync::Mutex<Vec<(u64, u64)>>,
}

impl<'a> Lenient<'a> {
    pub(super) fn new(dev: &'a dyn BlockDev) -> Self {
        Lenient {
            dev,
            failed: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The byte ranges that failed, in the order they were met.
    pub(super) fn failed(&self) -> Vec<(u64, u64)> {
        self.failed.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

impl BlockDev for Lenient<'_> {
    fn geometry(&self) -> crate::blockdev::Geometry {
        self.dev.geometry()
    }

    fn path(&self) -> &std::path::Path {
        self.dev.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if self.dev.read_at(buf, offset).is_ok() {
            return Ok(());
        }
        let unit = u64::from(self.dev.geometry().logical_sector_size.max(512));
        let mut pos = 0usize;
        while pos < buf.len() {
            let at = offset + pos as u64;
            let n = ((at / unit + 1) * unit - at).min((buf.len() - pos) as u64) as usize;
            let piece = &mut buf[pos..pos + n];
            if let Err(e) = self.dev.read_at(piece, at) {
                if !matches!(e, Error::Read { .. }) {
                    return Err(e);
                }
                piece.fill(0);
                if let Ok(mut f) = self.failed.lock() {
                    let end = at + n as u64;
                    if !f.iter().any(|&(s, e)| s <= at && end <= e) {
                        match f.last_mut() {
                            Some(last) if last.1 == at => last.1 = end,
                            _ => f.push((at, end)),
                        }
                    }
                }
            }
            pos += n;
        }
        Ok(())
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(Error::Unsupported("the lenient view is read-only".into()))
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// True for errors that say the device is gone, not that a sector is bad.
fn device_gone(e: &Error) -> bool {
    let Error::Read { source, .. } = e else {
        return false;
    };
    matches!(
        source.raw_os_error(),
        Some(libc::ENODEV | libc::ENXIO | libc::ENOMEDIUM)
    )
}

/// The growing skip of the copy pass, shared by its workers (who see failures first) and
/// its producer (who skips).
struct Skip {
    until: AtomicU64,
    size: AtomicU64,
    min: u64,
    max: u64,
}

impl Skip {
    fn failed(&self, end: u64) {
        let size = (self.size.load(Ordering::SeqCst) * 2)
            .max(self.min)
            .min(self.max);
        self.size.store(size, Ordering::SeqCst);
        self.until.fetch_max(end + size, Ordering::SeqCst);
    }

    fn succeeded(&self) {
        self.size.store(0, Ordering::SeqCst);
    }
}

/// Where rescued bytes go: the writer, the map, the per-region counters.
struct Sink<'a> {
    plan: &'a ImagePlan,
    writer: ImageWriter,
    map: RescueMap,
    stored: Vec<u64>,
    chunks: Vec<u64>,
    parent_bytes: u64,
    /// The rescue log, and how many of the writer's records it holds.
    log: RescueLog,
    logged: usize,
    last_checkpoint: Instant,
}

/// Time between two checkpoints of the rescue log.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);

impl Sink<'_> {
    /// Counts what a resumed image already holds into the per-region numbers.
    fn count_resumed(&mut self) {
        let mut frames = HashSet::new();
        let records: Vec<Record> = self.writer.records().to_vec();
        for r in records {
            if r.codec == Codec::Parent {
                self.parent_bytes += u64::from(r.raw_len);
            }
            if r.codec.stored_here() && frames.insert(r.file_offset) {
                let region = self.region_of(r.disk_offset);
                if let Some(s) = self.stored.get_mut(region) {
                    *s += u64::from(r.stored_len);
                }
                if let Some(n) = self.chunks.get_mut(region) {
                    *n += 1;
                }
            }
        }
    }

    /// Writes a checkpoint to the rescue log when one is due (or `force`): the image's files
    /// are made durable first, then the records since the last one and the map are logged.
    fn checkpoint(&mut self, pass: u32, force: bool) -> Result<()> {
        if !force && self.last_checkpoint.elapsed() < CHECKPOINT_EVERY {
            return Ok(());
        }
        let written = self.writer.sync_point()?;
        let records = self.writer.records().get(self.logged..).unwrap_or_default();
        self.log.append(written, pass, records, &self.map)?;
        self.logged = self.writer.records().len();
        self.last_checkpoint = Instant::now();
        self.write_mapfile(pass, false)
    }

    /// Writes the ddrescue mapfile, when one is asked for.
    fn write_mapfile(&self, pass: u32, finished: bool) -> Result<()> {
        let Some(path) = self.plan.rescue.as_ref().and_then(|o| o.mapfile.as_ref()) else {
            return Ok(());
        };
        let command = format!(
            "lifeboat image {} -o {} --rescue",
            self.plan.source.display(),
            self.plan.output.display()
        );
        let text =
            super::mapfile::render(&self.map, self.plan.size_bytes, pass, finished, &command);
        super::mapfile::write(path, &text)
    }

    /// The plan's region holding disk byte `off`.
    fn region_of(&self, off: u64) -> usize {
        let list = &self.plan.chunk_list;
        let i = list.partition_point(|c| c.0 <= off).saturating_sub(1);
        list.get(i).map_or(0, |c| c.2)
    }

    /// Stores an encoded chunk and marks its range finished.
    fn store(&mut self, c: EncodedChunk, region: usize) -> Result<()> {
        let (start, end) = match (c.records.first(), c.records.last()) {
            (Some(f), Some(l)) => (f.disk_offset, l.disk_offset + u64::from(l.raw_len)),
            _ => return Ok(()),
        };
        self.parent_bytes += c
            .records
            .iter()
            .filter(|r| r.codec == Codec::Parent)
            .map(|r| u64::from(r.raw_len))
            .sum::<u64>();
        if let Some(s) = self.stored.get_mut(region) {
            *s += c.data.len() as u64;
        }
        if let Some(n) = self.chunks.get_mut(region) {
            *n += 1;
        }
        self.writer.push(c)?;
        self.map.set(start, end, AreaState::Finished);
        Ok(())
    }
}

/// The job's state.
struct Rescue<'a> {
    plan: &'a ImagePlan,
    reader: TimedReader,
    unit: u64,
    block: u64,
    level: i32,
    known: Option<&'a dyn crate::image::encode::KnownBlocks>,
    /// How records hash their content (keyed for an encrypted image).
    hasher: crate::image::crypt::ContentHash,
    out: Sink<'a>,
    failed_reads: u64,
    pass: u32,
    pass_name: &'static str,
    passes: Vec<String>,
    stopped: Option<String>,
    /// Blocks that failed whole in the trim pass: scraping goes to their sectors at once.
    failed_blocks: HashSet<u64>,
    reporter: &'a Reporter,
    cancel: &'a CancelToken,
}

/// Runs a rescue plan (see the module docs): like [`super::run`], but read errors and hung
/// reads are recorded as missing ranges instead of failing the job.
pub(super) fn run(
    plan: &ImagePlan,
    opts: &RescueOptions,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<ImageSummary> {
    let (dev, unit) = open_source(&plan.source, plan.file_sector_size)?;
    run_on(plan, opts, dev, unit, reporter, cancel)
}

/// [`run`] on an open source read in units of `unit` bytes (tests inject faults here).
pub(crate) fn run_on(
    plan: &ImagePlan,
    opts: &RescueOptions,
    dev: Arc<dyn BlockDev>,
    unit: u64,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<ImageSummary> {
    let started = Instant::now();
    super::begin_run(plan, dev.len(), reporter)?;
    let timeout = Duration::from_secs_f64(opts.read_timeout_secs.clamp(0.05, 86_400.0));
    let (writer, log, map) = open_output(plan)?;
    let (image_id, created_unix) = (writer.header().image_id, writer.header().created_unix);
    let mut out = Sink {
        plan,
        map,
        stored: vec![0; plan.regions.len()],
        chunks: vec![0; plan.regions.len()],
        parent_bytes: 0,
        log,
        logged: writer.records().len(),
        last_checkpoint: Instant::now(),
        writer,
    };
    out.count_resumed();
    let mut r = Rescue {
        plan,
        reader: TimedReader::new(dev, timeout),
        unit,
        block: u64::from(plan.block_size).max(unit),
        level: plan.level,
        known: plan
            .chain
            .as_ref()
            .map(|c| c.stored_hashes() as &dyn crate::image::encode::KnownBlocks),
        hasher: plan.content_hash()?,
        out,
        failed_reads: 0,
        pass: 0,
        pass_name: "",
        passes: Vec::new(),
        stopped: None,
        failed_blocks: HashSet::new(),
        reporter,
        cancel,
    };
    match r.passes(opts.retries) {
        Ok(()) => {}
        // cancelled: what was rescued is sealed, and --resume goes on later
        Err(Error::Cancelled) => r.stopped = Some("it was cancelled".into()),
        Err(e) => {
            // the partial image and its log stay: --resume goes on from them
            let _ = r.out.checkpoint(r.pass, true);
            reporter.warn(format!(
                "what was rescued so far is kept in {} and its log {}: run the same command with --resume to go on",
                crate::image::partial_path(&plan.output).display(),
                super::rescue_log::log_path(&plan.output).display()
            ));
            return Err(e);
        }
    }
    let cancelled = cancel.is_cancelled();
    let missing = r.record_missing()?;
    let missing_bytes = missing.iter().map(|m| m.len_bytes).sum::<u64>();
    if let Some(why) = &r.stopped {
        reporter.warn(format!(
            "the rescue stopped early: {why}; what was not read is recorded as missing (--resume reads more later)"
        ));
    }
    if missing_bytes > 0 {
        reporter.warn(format!(
            "{missing_bytes} bytes in {} ranges could not be read and are recorded as missing",
            missing.len()
        ));
    }
    let report = RescueReport {
        passes: r.passes.clone(),
        failed_reads: r.failed_reads,
        hung_reads: r.reader.lost(),
        stopped: r.stopped.clone(),
        read_timeout_secs: timeout.as_secs_f64(),
        retries: opts.retries,
    };
    let read_bytes = r.out.map.bytes(AreaState::Finished);
    let meta = metadata(plan, created_unix, &r.out.stored, &r.out.chunks);
    r.out.write_mapfile(r.pass, r.stopped.is_none())?;
    let (parent_bytes, writer, log) = (r.out.parent_bytes, r.out.writer, r.out.log);
    let summary = writer.finish(&meta)?;

    let check_started = Instant::now();
    // a cancelled rescue's image is still checked before it is reported
    let check_cancel = if cancelled {
        CancelToken::new()
    } else {
        cancel.clone()
    };
    let checked = super::check_written(plan, &summary, reporter, &check_cancel);
    log.remove();
    checked?;
    let search = super::plan_search(plan);
    // which files the missing ranges hit, read from the sealed image
    let damaged = if missing.is_empty() {
        Vec::new()
    } else {
        match Chain::open(&summary.path, &search).and_then(|c| super::damaged::damaged_files(&c)) {
            Ok(d) => d,
            Err(e) => {
                reporter.warn(format!(
                    "the missing ranges could not be matched to files: {}",
                    crate::error::with_causes(&e)
                ));
                Vec::new()
            }
        }
    };
    Ok(ImageSummary {
        path: summary.path,
        image_id: hex(&image_id),
        root_hash: summary.root_hash,
        chunk_count: summary.chunk_count,
        read_bytes,
        parent_bytes,
        file_bytes: summary.file_bytes,
        files: summary.files,
        kind: plan.kind,
        seconds: started.elapsed().as_secs_f64(),
        write_seconds: (check_started - started).as_secs_f64(),
        verify_seconds: check_started.elapsed().as_secs_f64(),
        missing_bytes,
        missing,
        encrypted: plan.keys().is_some(),
        recovery_key: plan.recovery_key().map(str::to_string),
        rescue: Some(report),
        damaged,
    })
}

/// The image writer, the rescue log and the map a rescue starts from: new ones, or those of
/// the rescue `plan.resume` goes on from.
fn open_output(plan: &ImagePlan) -> Result<(ImageWriter, RescueLog, RescueMap)> {
    let log_path = super::rescue_log::log_path(&plan.output);
    let chunks = || plan.chunk_list.iter().map(|c| (c.0, u64::from(c.1)));
    match &plan.resume {
        None => {
            let (parent_id, parent_root) = match &plan.chain {
                Some(c) => (c.leaf().header().image_id, c.leaf().footer().root_hash),
                None => ([0; 16], [0; 32]),
            };
            let header = Header {
                minor: format::VERSION_MINOR_MISSING,
                flags: 0,
                image_id: *uuid::Uuid::new_v4().as_bytes(),
                parent_id,
                parent_root,
                created_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                chunk_size: plan.chunk_size,
                zstd_level: plan.level,
                source_size: plan.size_bytes,
                sector_size: plan.sector_size,
                block_size: plan.block_size,
                volume_size: plan.volume_size,
                keys: plan.keys().cloned(),
            };
            let mut writer = ImageWriter::create(&plan.output, header)?;
            writer.allow_any_order();
            let log = RescueLog::create(&log_path, writer.header())?;
            // from here on, what is written is worth keeping
            writer.keep_partial();
            Ok((writer, log, RescueMap::new(chunks())))
        }
        Some(ResumeFrom::Interrupted { .. }) => {
            let st = super::rescue_log::read(&log_path)?;
            let mut map = st.map;
            map.track(chunks());
            let mut writer = ImageWriter::resume(&plan.output, st.header, st.records, st.written)?;
            writer.keep_partial();
            let log = RescueLog::reopen(&log_path, st.good_len)?;
            Ok((writer, log, map))
        }
        Some(ResumeFrom::Sealed { .. }) => {
            let reader = crate::image::ImageReader::open(&plan.output)?;
            let header = reader.header().clone();
            let missing = missing_ranges(reader.records());
            let records: Vec<Record> = reader
                .records()
                .iter()
                .filter(|r| r.codec != Codec::Missing)
                .copied()
                .collect();
            let written = reader.footer().meta_offset;
            let files = reader.files();
            drop(reader);
            // what is missing is read again, except used blocks outside the --domain
            let outside: Vec<(u64, u64)> = plan
                .outside_domain
                .iter()
                .map(|&(s, l)| (s, s + l))
                .collect();
            let again = super::mapfile::subtract(
                &missing
                    .iter()
                    .map(|m| (m.start_bytes, m.end_bytes()))
                    .collect::<Vec<_>>(),
                &outside,
            );
            let map = RescueMap::new(again.iter().map(|&(s, e)| (s, e - s)));
            // the log first, then the image becomes partial again (the first volume last):
            // from the moment it is no longer an image, the log says how to go on
            let mut log = RescueLog::create(&log_path, &header)?;
            log.append(written, 0, &records, &map)?;
            for (n, f) in files.iter().enumerate().rev() {
                let to = crate::image::partial_path(&crate::image::volumes::volume_path(
                    &plan.output,
                    n,
                ));
                std::fs::rename(f, &to).map_err(|e| Error::io("renaming", f, e))?;
            }
            let mut writer = ImageWriter::resume(&plan.output, header, records, written)?;
            writer.keep_partial();
            Ok((writer, log, map))
        }
    }
}

/// A read of the copy pass: the chunk, its region, its buffer, and whether it is skipped.
type CopyItem = (u64, u32, usize, Vec<u8>, bool);
/// What a copy-pass worker made of its chunk.
enum Copied {
    /// Read: the encoded good runs, and the ranges `(start, end)` whose reads failed.
    Read(Vec<EncodedChunk>, Vec<(u64, u64)>),
    Skipped,
}

/// Once a read has failed, the copy pass reads chunks in pieces of this size, so that a bad
/// sector costs the trim pass one piece, not a whole chunk (ddrescue's copy pass reads
/// 64 KiB clusters). Until then it reads whole chunks: smaller reads cost a healthy disk
/// about a tenth more time (bench/rescue.sh).
const COPY_READ: u64 = 1 << 20;

impl Rescue<'_> {
    /// Every pass, in order, each ending with a checkpoint.
    fn passes(&mut self, retries: u32) -> Result<()> {
        // the header (and a resumed image's state) durable before anything else
        self.out.checkpoint(self.pass, true)?;
        self.copy()?;
        self.out.checkpoint(self.pass, true)?;
        self.copy_skipped()?;
        self.out.checkpoint(self.pass, true)?;
        self.trim()?;
        self.out.checkpoint(self.pass, true)?;
        self.scrape()?;
        self.out.checkpoint(self.pass, true)?;
        for i in 0..retries {
            // the last retry pass runs backwards, and the ones before alternate
            self.retry((retries - 1 - i).is_multiple_of(2))?;
            self.out.checkpoint(self.pass, true)?;
        }
        Ok(())
    }

    fn begin(&mut self, name: &'static str, total: u64) {
        self.pass += 1;
        self.pass_name = name;
        self.passes.push(name.to_string());
        self.reporter.phase(self.phase(), Some(total));
        self.stats(true);
    }

    fn phase(&self) -> Phase {
        if self.pass == 1 {
            Phase::Image
        } else {
            Phase::Rescue
        }
    }

    fn stats(&self, last: bool) {
        let m = &self.out.map;
        self.reporter.rescue(
            RescueStats {
                pass: self.pass,
                name: self.pass_name,
                rescued_bytes: m.bytes(AreaState::Finished),
                missing_bytes: m.bytes(AreaState::NonTrimmed)
                    + m.bytes(AreaState::NonScraped)
                    + m.bytes(AreaState::Bad),
                untried_bytes: m.bytes(AreaState::NonTried),
            },
            last,
        );
    }

    /// Encodes and stores `bytes`, read at disk byte `off`.
    fn keep(&mut self, off: u64, bytes: &[u8]) -> Result<()> {
        let c = encode(self.level, off, bytes, self.block, self.known, &self.hasher)?;
        let region = self.out.region_of(off);
        self.out.store(c, region)
    }

    /// Reads `s..e` and stores it: true when it was read (and is now finished), false when
    /// the read failed; `Err` when cancelled or the image cannot be written.
    fn read_keep(&mut self, s: u64, e: u64, buf: &mut Vec<u8>) -> Result<bool> {
        let Some(range) = self.read(s, e - s, buf)? else {
            return Ok(false);
        };
        let bytes = std::mem::take(buf);
        let kept = self.keep(s, &bytes[range]);
        *buf = bytes;
        kept.map(|()| true)
    }

    /// Whether the passes must end: the disk is gone or stopped answering. Sets `stopped`.
    fn must_stop(&mut self, e: Option<&Error>) -> bool {
        if self.stopped.is_some() {
            return true;
        }
        if let Some(e) = e.filter(|e| device_gone(e)) {
            self.stopped = Some(format!(
                "the disk is gone ({})",
                crate::error::with_causes(e)
            ));
        } else if self.reader.is_dead() {
            self.stopped = Some(format!(
                "the disk stopped answering ({} reads hung for more than the timeout)",
                self.reader.lost()
            ));
        }
        self.stopped.is_some()
    }

    /// Reads `len` bytes at `off` with a timeout into `buf`: `Ok(Some(range))` where the bytes
    /// are in `buf`, `Ok(None)` when the read failed (counted), `Err` when cancelled.
    fn read(
        &mut self,
        off: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<std::ops::Range<usize>>> {
        let (range, cover) = aligned_range(buf, off, len, self.unit, self.reader.dev().len());
        let (back, res) = self.reader.read(
            std::mem::take(buf),
            cover,
            cover_start(off, self.unit),
            self.cancel,
        );
        *buf = back;
        match res {
            Ok(()) => Ok(Some(range)),
            Err(Error::Cancelled) => Err(Error::Cancelled),
            Err(e) => {
                self.failed_reads += 1;
                self.must_stop(Some(&e));
                Ok(None)
            }
        }
    }

    /// Pass 1: every chunk, forward, read and compressed in parallel; a failure skips ahead.
    fn copy(&mut self) -> Result<()> {
        // the chunks not tried at all (all of them, unless this is a resumed rescue)
        let list: Vec<(u64, u32, usize)> = self
            .plan
            .chunk_list
            .iter()
            .filter(|c| {
                self.out.map.uniform(c.0, c.0 + u64::from(c.1)) == Some(AreaState::NonTried)
            })
            .copied()
            .collect();
        if list.is_empty() {
            return Ok(());
        }
        self.begin("copy", list.iter().map(|c| u64::from(c.1)).sum());
        let skip = Skip {
            until: AtomicU64::new(0),
            size: AtomicU64::new(0),
            min: u64::from(self.plan.chunk_size),
            max: MAX_SKIP.min((self.plan.copy_bytes / 100).max(u64::from(self.plan.chunk_size))),
        };
        let stop = AtomicBool::new(false);
        let seen_error = AtomicBool::new(false);
        let failed = AtomicU64::new(0);
        let mut next = 0usize;
        let mut done = 0u64;
        let list = &list;
        let (unit, dev_len, level, block, known, hasher) = (
            self.unit,
            self.reader.dev().len(),
            self.level,
            self.block,
            self.known,
            &self.hasher,
        );
        let (reader, cancel, reporter) = (&self.reader, self.cancel, self.reporter);
        let (pass, out) = (self.pass, &mut self.out);
        let mut first_gone: Option<Error> = None;
        pipeline::run(
            Shape::for_threads(self.plan.threads.max(1) * 2),
            cancel,
            |buf: Vec<u8>| {
                if stop.load(Ordering::SeqCst) {
                    return Ok(None);
                }
                let Some(&(off, len, region)) = list.get(next) else {
                    return Ok(None);
                };
                next += 1;
                let skipped = off < skip.until.load(Ordering::SeqCst);
                Ok(Some((off, len, region, buf, skipped)))
            },
            |(off, len, region, mut buf, skipped): CopyItem| {
                if skipped {
                    return Ok(((off, len, region, Copied::Skipped), buf, None));
                }
                let end = off + u64::from(len);
                let (_, cover) = aligned_range(&mut buf, off, u64::from(len), unit, dev_len);
                let start = cover_start(off, unit);
                let cover_end = start + cover.len() as u64;
                // the cover in pieces; each piece's bytes go to their place in `buf`
                let mut good: Vec<(u64, u64)> = Vec::new();
                let mut bad: Vec<(u64, u64)> = Vec::new();
                let mut gone_err = None;
                // (whole: one read, so that a read given up, whose buffer is replaced, takes
                // no piece read before it)
                let whole = !seen_error.load(Ordering::SeqCst) || cover_end - start <= COPY_READ;
                let pieces = if whole {
                    vec![(start, cover_end)]
                } else {
                    cut(&[(start, cover_end)], COPY_READ)
                };
                let mut scratch = Vec::new();
                for (ps, pe) in pieces {
                    let at = cover.start + (ps - start) as usize;
                    let n = (pe - ps) as usize;
                    // a read given up keeps its buffer: in pieces, each piece is read into a
                    // scratch buffer and copied into place, so the pieces read before it stay
                    let res = if whole {
                        let (back, res) =
                            reader.read(std::mem::take(&mut buf), at..at + n, ps, cancel);
                        buf = back;
                        res
                    } else {
                        if scratch.len() < n + 4096 {
                            scratch.resize(n + 4096, 0);
                        }
                        let sat = scratch.as_ptr().align_offset(4096).min(4096);
                        let (back, res) =
                            reader.read(std::mem::take(&mut scratch), sat..sat + n, ps, cancel);
                        scratch = back;
                        if res.is_ok() {
                            buf[at..at + n].copy_from_slice(&scratch[sat..sat + n]);
                        }
                        res
                    };
                    let (ws, we) = (ps.max(off), pe.min(end));
                    if ws >= we {
                        continue;
                    }
                    match res {
                        Ok(()) => match good.last_mut() {
                            Some(g) if g.1 == ws => g.1 = we,
                            _ => good.push((ws, we)),
                        },
                        Err(Error::Cancelled) => return Err(Error::Cancelled),
                        Err(e) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            seen_error.store(true, Ordering::SeqCst);
                            bad.push((ws, we));
                            if device_gone(&e) || reader.is_dead() {
                                stop.store(true, Ordering::SeqCst);
                                gone_err = Some(e);
                                // what is left of the chunk is not tried
                                break;
                            }
                        }
                    }
                }
                if bad.is_empty() {
                    skip.succeeded();
                } else {
                    skip.failed(end);
                }
                let mut chunks = Vec::with_capacity(good.len());
                for (gs, ge) in good {
                    let from = cover.start + (gs - start) as usize;
                    let bytes = &buf[from..from + (ge - gs) as usize];
                    chunks.push(encode(level, gs, bytes, block, known, hasher)?);
                }
                Ok(((off, len, region, Copied::Read(chunks, bad)), buf, gone_err))
            },
            |((_, len, region, c), buf, gone): (CopyOut, Vec<u8>, Option<Error>)| {
                done += u64::from(len);
                if first_gone.is_none() {
                    first_gone = gone;
                }
                match c {
                    Copied::Read(chunks, bad) => {
                        for c in chunks {
                            out.store(c, region)?;
                        }
                        for (s, e) in bad {
                            out.map.set(s, e, AreaState::NonTrimmed);
                        }
                    }
                    Copied::Skipped => {}
                }
                out.checkpoint(pass, false)?;
                reporter.progress(Phase::Image, done);
                let m = &out.map;
                reporter.rescue(
                    RescueStats {
                        pass,
                        name: "copy",
                        rescued_bytes: m.bytes(AreaState::Finished),
                        missing_bytes: m.bytes(AreaState::NonTrimmed),
                        untried_bytes: m.bytes(AreaState::NonTried),
                    },
                    false,
                );
                Ok(buf)
            },
        )?;
        self.failed_reads += failed.load(Ordering::SeqCst);
        self.must_stop(first_gone.as_ref());
        self.reporter.progress_final(Phase::Image, done);
        self.stats(true);
        Ok(())
    }

    /// Pass 2: the chunks the copy pass skipped, backwards, one read each.
    fn copy_skipped(&mut self) -> Result<()> {
        let areas = self.out.map.areas(AreaState::NonTried);
        if areas.is_empty() || self.must_stop(None) {
            return Ok(());
        }
        let pieces = cut(&areas, u64::from(self.plan.chunk_size));
        self.begin("copy skipped", pieces.iter().map(|p| p.1 - p.0).sum());
        let mut buf = Vec::new();
        let mut done = 0u64;
        for &(s, e) in pieces.iter().rev() {
            if self.must_stop(None) {
                break;
            }
            if !self.read_keep(s, e, &mut buf)? {
                self.out.map.set(s, e, AreaState::NonTrimmed);
            }
            done += e - s;
            self.reporter.progress(Phase::Rescue, done);
            self.stats(false);
            self.out.checkpoint(self.pass, false)?;
        }
        self.reporter.progress_final(Phase::Rescue, done);
        self.stats(true);
        Ok(())
    }

    /// Pass 3: each failed area, block by block from both ends inwards, up to the first
    /// block that fails on each side; the rest is left to scrape.
    fn trim(&mut self) -> Result<()> {
        let areas = self.out.map.areas(AreaState::NonTrimmed);
        if areas.is_empty() || self.must_stop(None) {
            return Ok(());
        }
        self.begin("trim", areas.iter().map(|a| a.1 - a.0).sum());
        let mut buf = Vec::new();
        let mut done = 0u64;
        for (s, e) in areas {
            let blocks = cut(&[(s, e)], self.block);
            // forward from the first block, then backward from the last (not reading the one
            // that failed again), each up to its first failure
            let lo = self.trim_side(&blocks, 0..blocks.len(), &mut buf, &mut done)?;
            let hi = if lo + 1 < blocks.len() {
                let back = (lo + 1..blocks.len()).rev();
                blocks.len() - self.trim_side(&blocks, back, &mut buf, &mut done)?
            } else {
                blocks.len()
            };
            if lo < hi {
                let (from, to) = (blocks[lo].0, blocks[hi - 1].1);
                self.out.map.set(from, to, AreaState::NonScraped);
            }
        }
        self.reporter.progress_final(Phase::Rescue, done);
        self.stats(true);
        Ok(())
    }

    /// Reads `blocks[i]` for `i` in `order` until one fails (it is remembered, so scraping
    /// does not read it whole again); returns how many were read.
    fn trim_side(
        &mut self,
        blocks: &[(u64, u64)],
        order: impl Iterator<Item = usize>,
        buf: &mut Vec<u8>,
        done: &mut u64,
    ) -> Result<usize> {
        let mut read = 0usize;
        for i in order {
            if self.must_stop(None) {
                break;
            }
            let Some(&(bs, be)) = blocks.get(i) else {
                break;
            };
            match self.read_keep(bs, be, buf)? {
                true => read += 1,
                false => {
                    self.failed_blocks.insert(bs);
                    break;
                }
            }
            *done += be - bs;
            self.reporter.progress(Phase::Rescue, *done);
            self.stats(false);
            self.out.checkpoint(self.pass, false)?;
        }
        Ok(read)
    }

    /// Pass 4: what trimming left, block by block, and a failed block sector by sector.
    fn scrape(&mut self) -> Result<()> {
        let areas = self.out.map.areas(AreaState::NonScraped);
        if areas.is_empty() || self.must_stop(None) {
            return Ok(());
        }
        self.begin("scrape", areas.iter().map(|a| a.1 - a.0).sum());
        let mut buf = Vec::new();
        let mut done = 0u64;
        for (bs, be) in cut(&areas, self.block) {
            if self.must_stop(None) {
                break;
            }
            // a block that failed whole when trimming is not read whole again
            let whole = !self.failed_blocks.contains(&bs) && self.read_keep(bs, be, &mut buf)?;
            if !whole {
                self.pages(bs, be, &mut buf)?;
            }
            done += be - bs;
            self.reporter.progress(Phase::Rescue, done);
            self.stats(false);
            self.out.checkpoint(self.pass, false)?;
        }
        self.reporter.progress_final(Phase::Rescue, done);
        self.stats(true);
        Ok(())
    }

    /// Reads a failed block `s..e` in 4 KiB pieces, and a piece that fails sector by sector
    /// (on a disk whose sectors are smaller): 24 reads find a bad sector in a 64 KiB block
    /// instead of 128, and the sector is read once more, not less.
    fn pages(&mut self, s: u64, e: u64, buf: &mut Vec<u8>) -> Result<()> {
        const PAGE: u64 = 4096;
        if self.unit >= PAGE {
            return self.sectors(s, e, false, buf);
        }
        for (ps, pe) in cut(&[(s, e)], PAGE) {
            if self.must_stop(None) {
                break;
            }
            if !self.read_keep(ps, pe, buf)? {
                self.sectors(ps, pe, false, buf)?;
            }
        }
        Ok(())
    }

    /// Reads `s..e` sector by sector (`backwards` from the end): good runs are stored, a
    /// sector that fails is bad.
    fn sectors(&mut self, s: u64, e: u64, backwards: bool, buf: &mut Vec<u8>) -> Result<()> {
        let units = cut(&[(s, e)], self.unit);
        let mut order: Vec<usize> = (0..units.len()).collect();
        if backwards {
            order.reverse();
        }
        // a run of good sectors, kept as (start, bytes) and stored when it ends
        let mut run: Option<(u64, Vec<u8>)> = None;
        for i in order {
            if self.must_stop(None) {
                break;
            }
            let (us, ue) = units[i];
            match self.read(us, ue - us, buf)? {
                Some(range) => {
                    let got = &buf[range];
                    run = match run.take() {
                        Some((rs, mut bytes)) if !backwards && rs + bytes.len() as u64 == us => {
                            bytes.extend_from_slice(got);
                            Some((rs, bytes))
                        }
                        Some((rs, bytes)) if backwards && ue == rs => {
                            let mut joined = got.to_vec();
                            joined.extend_from_slice(&bytes);
                            Some((us, joined))
                        }
                        other => {
                            if let Some((rs, bytes)) = other {
                                self.keep(rs, &bytes)?;
                            }
                            Some((us, got.to_vec()))
                        }
                    };
                }
                None => {
                    if let Some((rs, bytes)) = run.take() {
                        self.keep(rs, &bytes)?;
                    }
                    self.out.map.set(us, ue, AreaState::Bad);
                }
            }
        }
        if let Some((rs, bytes)) = run.take() {
            self.keep(rs, &bytes)?;
        }
        Ok(())
    }

    /// A retry pass: every bad sector once more.
    fn retry(&mut self, backwards: bool) -> Result<()> {
        let mut areas = self.out.map.areas(AreaState::Bad);
        if areas.is_empty() || self.must_stop(None) {
            return Ok(());
        }
        self.begin(
            if backwards {
                "retry backwards"
            } else {
                "retry"
            },
            areas.iter().map(|a| a.1 - a.0).sum(),
        );
        if backwards {
            areas.reverse();
        }
        let mut buf = Vec::new();
        let mut done = 0u64;
        for (s, e) in areas {
            // bad areas are cut at blocks so that a run of good sectors stays in one record
            let mut blocks = cut(&[(s, e)], self.block);
            if backwards {
                blocks.reverse();
            }
            for (bs, be) in blocks {
                if self.must_stop(None) {
                    break;
                }
                self.sectors(bs, be, backwards, &mut buf)?;
                done += be - bs;
                self.reporter.progress(Phase::Rescue, done);
                self.stats(false);
                self.out.checkpoint(self.pass, false)?;
            }
        }
        self.reporter.progress_final(Phase::Rescue, done);
        self.stats(true);
        Ok(())
    }

    /// Records every byte that is not finished as missing, and returns the missing ranges.
    fn record_missing(&mut self) -> Result<Vec<MissingRange>> {
        let mut todo: Vec<(u64, u64)> = self
            .out
            .map
            .iter()
            .filter(|a| a.2 != AreaState::Finished)
            .map(|a| (a.0, a.1))
            .collect();
        // used blocks outside the --domain were never to be read (those the map tracks,
        // from an earlier run with another domain, are as the map says)
        let tracked: Vec<(u64, u64)> = self.out.map.iter().map(|a| (a.0, a.1)).collect();
        let outside: Vec<(u64, u64)> = self
            .plan
            .outside_domain
            .iter()
            .map(|&(s, l)| (s, s + l))
            .collect();
        todo.extend(super::mapfile::subtract(&outside, &tracked));
        todo.sort_unstable();
        let mut records = Vec::new();
        for (s, e) in cut(&todo, self.block) {
            records.push(Record {
                disk_offset: s,
                raw_len: (e - s) as u32,
                stored_len: 0,
                file_offset: 0,
                codec: Codec::Missing,
                frame_offset: 0,
                hash: format::MISSING_HASH,
            });
        }
        let missing = missing_ranges(&records);
        for r in records {
            self.out.writer.push(EncodedChunk {
                records: vec![r],
                frame_codec: Codec::Zero,
                data: Vec::new(),
            })?;
        }
        Ok(missing)
    }
}

/// A copy-pass outcome: the chunk and what became of it.
type CopyOut = (u64, u32, usize, Copied);

/// Cuts `(start, end)` areas at multiples of `step`, in order.
fn cut(areas: &[(u64, u64)], step: u64) -> Vec<(u64, u64)> {
    let step = step.max(1);
    let mut out = Vec::new();
    for &(s, e) in areas {
        let mut pos = s;
        while pos < e {
            let next = ((pos / step + 1) * step).min(e);
            out.push((pos, next));
            pos = next;
        }
    }
    out
}

/// The first byte of the `unit`-aligned cover of `off`.
fn cover_start(off: u64, unit: u64) -> u64 {
    off / unit * unit
}

/// Makes `buf` hold the `unit`-aligned cover of `off..off+len` (clamped to `dev_len`) at a
/// 4096-aligned address: returns where the wanted bytes are in `buf`, and the cover's range
/// in `buf` (which the read fills from disk byte [`cover_start`]).
fn aligned_range(
    buf: &mut Vec<u8>,
    off: u64,
    len: u64,
    unit: u64,
    dev_len: u64,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let start = cover_start(off, unit);
    let end = (off + len)
        .next_multiple_of(unit)
        .min(dev_len.max(off + len));
    let cover = (end - start) as usize;
    if buf.len() < cover + 4096 {
        buf.resize(cover + 4096, 0);
    }
    let at = buf.as_ptr().align_offset(4096).min(4096);
    let want = at + (off - start) as usize;
    (want..want + len as usize, at..at + cover)
}
