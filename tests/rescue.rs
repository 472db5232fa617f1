//! Tier 1: `image --rescue` through the library, on a sparse temp-file disk read through a
//! test device that fails, stalls, hangs and dies on chosen byte ranges
//! (`jobs::image::run_rescue_on`). No root, no loop devices.
//!
//! The source is 32 MiB of pseudo-random bytes without a partition table, so the whole disk
//! is used and every byte is imaged: what the image records as missing must then be exactly
//! the sectors the device failed, and everything else must read back as the source. Every
//! case checks the summary's missing ranges, `verify` of the image, that the image's records
//! cover the whole disk, and the bytes read back through `ImageDev` (zeros where missing).
#![allow(clippy::unwrap_used)]

mod common;

use lifeboat::blockdev::{BlockDev, FileDev, Geometry, OpenMode};
use lifeboat::discovery::SystemPaths;
use lifeboat::event::Event;
use lifeboat::image::{Chain, Codec, ImageDev, ImageReader};
use lifeboat::jobs::image::{self, ImageSpec, ImageSummary, RescueOptions};
use lifeboat::jobs::{verify, CancelToken, Reporter};
use lifeboat::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// The source disk's size.
const DISK: u64 = 32 * MIB;

/// How the device behaves once it has served its quota of reads.
#[derive(Debug, Clone, Copy)]
enum Death {
    /// Every read fails with `ENODEV`: the disk is gone (unplugged, reset by the kernel).
    Gone,
    /// Every read sleeps this long before answering: the disk stopped answering.
    Hang(Duration),
}

/// A disk with faults: wraps a [`FileDev`] and fails, stalls or hangs reads that overlap
/// chosen byte ranges, and can die after a number of reads. Counts its reads and records the
/// byte ranges it served successfully (the only bytes an image may hold).
struct Sick {
    inner: FileDev,
    /// Reads overlapping these fail with EIO, always.
    bad: Vec<Range<u64>>,
    /// Reads overlapping a range fail with EIO the first `n` times (counted per range).
    flaky: Vec<(Range<u64>, u32)>,
    flaky_used: Mutex<Vec<u32>>,
    /// Reads overlapping a range sleep this long first, then are served.
    slow: Vec<(Range<u64>, Duration)>,
    /// Every read sleeps this long first (pacing).
    pace: Duration,
    /// After this many reads, the disk dies.
    die_after: Option<(u64, Death)>,
    reads: AtomicU64,
    served: Mutex<Vec<(u64, u64)>>,
}

impl Sick {
    fn new(source: &Path, sector: u32) -> Self {
        Sick {
            inner: FileDev::open_with_sector_size(source, OpenMode::Read, sector).unwrap(),
            bad: Vec::new(),
            flaky: Vec::new(),
            flaky_used: Mutex::new(Vec::new()),
            slow: Vec::new(),
            pace: Duration::ZERO,
            die_after: None,
            reads: AtomicU64::new(0),
            served: Mutex::new(Vec::new()),
        }
    }

    fn bad(mut self, r: Range<u64>) -> Self {
        self.bad.push(r);
        self
    }

    fn flaky(mut self, r: Range<u64>, n: u32) -> Self {
        self.flaky.push((r, n));
        self.flaky_used.lock().unwrap().push(0);
        self
    }

    fn slow(mut self, r: Range<u64>, secs: f64) -> Self {
        self.slow.push((r, Duration::from_secs_f64(secs)));
        self
    }

    fn paced(mut self, secs: f64) -> Self {
        self.pace = Duration::from_secs_f64(secs);
        self
    }

    fn dies_after(mut self, reads: u64, how: Death) -> Self {
        self.die_after = Some((reads, how));
        self
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// The byte ranges served, sorted and joined.
    fn served(&self) -> Vec<(u64, u64)> {
        join(self.served.lock().unwrap().clone())
    }

    fn eio(&self, offset: u64, len: usize, errno: i32) -> Error {
        Error::Read {
            path: self.inner.path().to_path_buf(),
            offset,
            len,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }
}

fn overlaps(r: &Range<u64>, offset: u64, len: usize) -> bool {
    offset < r.end && r.start < offset + len as u64
}

impl BlockDev for Sick {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat::Result<()> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        if !self.pace.is_zero() {
            std::thread::sleep(self.pace);
        }
        if let Some((after, how)) = self.die_after {
            if n >= after {
                match how {
                    Death::Gone => return Err(self.eio(offset, buf.len(), libc::ENODEV)),
                    Death::Hang(d) => {
                        std::thread::sleep(d);
                        return Err(self.eio(offset, buf.len(), libc::EIO));
                    }
                }
            }
        }
        for (r, d) in &self.slow {
            if overlaps(r, offset, buf.len()) {
                std::thread::sleep(*d);
            }
        }
        if self.bad.iter().any(|r| overlaps(r, offset, buf.len())) {
            return Err(self.eio(offset, buf.len(), libc::EIO));
        }
        for (i, (r, fails)) in self.flaky.iter().enumerate() {
            if overlaps(r, offset, buf.len()) {
                let mut used = self.flaky_used.lock().unwrap();
                if used[i] < *fails {
                    used[i] += 1;
                    return Err(self.eio(offset, buf.len(), libc::EIO));
                }
            }
        }
        self.inner.read_at(buf, offset)?;
        self.served
            .lock()
            .unwrap()
            .push((offset, offset + buf.len() as u64));
        Ok(())
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> lifeboat::Result<()> {
        Err(Error::Unsupported("a test source is read-only".into()))
    }

    fn sync(&self) -> lifeboat::Result<()> {
        Ok(())
    }
}

/// Sorts `(start, end)` ranges and joins those that touch or overlap.
fn join(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The `(start, end)` covers of byte ranges in whole sectors, joined.
fn sectors(ranges: &[Range<u64>], sector: u64) -> Vec<(u64, u64)> {
    join(
        ranges
            .iter()
            .map(|r| (r.start / sector * sector, r.end.div_ceil(sector) * sector))
            .collect(),
    )
}

/// The parts of `0..len` that `ranges` (sorted, disjoint) leave uncovered.
fn complement(ranges: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for &(s, e) in ranges {
        if s > pos {
            out.push((pos, s));
        }
        pos = pos.max(e);
    }
    if pos < len {
        out.push((pos, len));
    }
    out
}

/// A 32 MiB disk of pseudo-random bytes (no table: the whole disk is used) in `dir`.
fn make_source(dir: &Path) -> (PathBuf, Vec<u8>) {
    let bytes = common::noise(DISK as usize, 0x5eed_1234);
    let path = dir.join("disk.img");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

fn spec(source: &Path, out: &Path, sector: u32, opts: RescueOptions) -> ImageSpec {
    ImageSpec {
        level: 1,
        threads: 2,
        chunk_size: MIB as u32,
        file_sector_size: sector,
        rescue: Some(opts),
        ..ImageSpec::new(source.to_path_buf(), out.to_path_buf())
    }
}

fn opts(timeout: f64, retries: u32) -> RescueOptions {
    RescueOptions {
        read_timeout_secs: timeout,
        retries,
        ..Default::default()
    }
}

/// Plans a rescue of `source` into `out` and runs it over `dev`.
fn rescue(
    source: &Path,
    out: &Path,
    sector: u32,
    o: RescueOptions,
    dev: Arc<Sick>,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> ImageSummary {
    let plan = image::plan(&spec(source, out, sector, o), &SystemPaths::default()).unwrap();
    assert_eq!(plan.copy_bytes, DISK, "the whole disk is to be read");
    image::run_rescue_on(&plan, dev, u64::from(sector), reporter, cancel).unwrap()
}

/// The summary's missing ranges as `(start, end)`.
fn missing_of(s: &ImageSummary) -> Vec<(u64, u64)> {
    s.missing
        .iter()
        .map(|m| (m.start_bytes, m.end_bytes()))
        .collect()
}

/// Checks the image at `img`: its missing ranges are `missing` (in the summary, in `verify`
/// and in the records), `verify` passes, its records cover the whole disk, and it reads back
/// as `source` with zeros in the missing ranges.
fn check_image(name: &str, s: &ImageSummary, img: &Path, source: &[u8], missing: &[(u64, u64)]) {
    assert_eq!(missing_of(s), missing, "{name}: summary's missing ranges");
    let want_bytes: u64 = missing.iter().map(|m| m.1 - m.0).sum();
    assert_eq!(s.missing_bytes, want_bytes, "{name}: missing_bytes");

    let v = verify::run(img, &[], 2, &Reporter::silent(), &CancelToken::new())
        .unwrap_or_else(|e| panic!("{name}: verify: {e:#}"));
    let vm: Vec<(u64, u64)> = v
        .missing
        .iter()
        .map(|m| (m.start_bytes, m.end_bytes()))
        .collect();
    assert_eq!(vm, missing, "{name}: verify's missing ranges");
    assert_eq!(
        v.missing_bytes, want_bytes,
        "{name}: verify's missing bytes"
    );

    // every byte of the disk has a record, and a missing one only where it is missing
    let reader = ImageReader::open(img).unwrap();
    let mut recs: Vec<(u64, u64, Codec)> = reader
        .records()
        .iter()
        .map(|r| (r.disk_offset, r.disk_offset + u64::from(r.raw_len), r.codec))
        .collect();
    recs.sort_unstable_by_key(|r| r.0);
    let mut pos = 0;
    for &(s, e, _) in &recs {
        assert_eq!(s, pos, "{name}: records leave a gap or overlap at {pos}");
        pos = e;
    }
    assert_eq!(pos, DISK, "{name}: records end at {pos}");
    let rec_missing = join(
        recs.iter()
            .filter(|r| r.2 == Codec::Missing)
            .map(|r| (r.0, r.1))
            .collect(),
    );
    assert_eq!(rec_missing, missing, "{name}: missing records");
    drop(reader);

    let chain = Chain::open(img, &[]).unwrap();
    let dev = ImageDev::new(&chain);
    assert_eq!(dev.len(), DISK, "{name}");
    let mut want = source.to_vec();
    for &(s, e) in missing {
        want[s as usize..e as usize].fill(0);
    }
    let mut got = vec![0u8; MIB as usize];
    for off in (0..DISK).step_by(MIB as usize) {
        dev.read_at(&mut got, off).unwrap();
        let w = &want[off as usize..(off + MIB) as usize];
        if got != w {
            let i = got.iter().zip(w).position(|(a, b)| a != b).unwrap();
            panic!(
                "{name}: the image reads back wrong at byte {}",
                off + i as u64
            );
        }
    }
}

#[test]
// a case of one bad range is a list of one range, not a vec of 512 zeros
#[allow(clippy::single_range_in_vec_init)]
fn bad_sectors_are_missing_exactly_and_the_rest_reads_back() {
    // (name, sector size, injected bad byte ranges)
    let cases: Vec<(&str, u32, Vec<Range<u64>>)> = vec![
        ("first sector", 512, vec![0..512]),
        ("last sector", 512, vec![DISK - 512..DISK]),
        ("first and last bytes", 512, vec![0..1, DISK - 1..DISK]),
        (
            "unaligned, inside one sector",
            512,
            vec![5 * MIB + 1000..5 * MIB + 1010],
        ),
        (
            "unaligned, over 7 sectors",
            512,
            vec![5 * MIB + 1000..5 * MIB + 4000],
        ),
        (
            "across a block and a chunk boundary",
            512,
            vec![8 * MIB - 3 * KIB..8 * MIB + 5 * KIB + 1],
        ),
        (
            "many: start, middle, neighbours, end",
            512,
            vec![
                0..1536,
                3 * MIB + 512..3 * MIB + 1024,
                // two bad sectors of one block, with good ones between them
                3 * MIB + 4096..3 * MIB + 4608,
                3 * MIB + 40 * KIB..3 * MIB + 40 * KIB + 512,
                // neighbours that join into one range
                17 * MIB..17 * MIB + 512,
                17 * MIB + 512..17 * MIB + 2048,
                // 96 KiB: more than a block
                20 * MIB + 100..20 * MIB + 96 * KIB,
                DISK - 2048..DISK - 1,
            ],
        ),
        (
            "4096-byte sectors",
            4096,
            vec![1000..1100, 9 * MIB + 4095..9 * MIB + 4097, DISK - 1..DISK],
        ),
    ];
    for (name, sector, bad) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (src, bytes) = make_source(dir.path());
        let mut dev = Sick::new(&src, sector);
        for r in &bad {
            dev = dev.bad(r.clone());
        }
        let out = dir.path().join("out.lbi");
        let s = rescue(
            &src,
            &out,
            sector,
            opts(5.0, 1),
            Arc::new(dev),
            &Reporter::silent(),
            &CancelToken::new(),
        );
        let r = s.rescue.as_ref().unwrap();
        assert_eq!(r.stopped, None, "{name}");
        assert_eq!(r.hung_reads, 0, "{name}");
        assert!(r.failed_reads > 0, "{name}");
        // copy, (copy skipped), trim, scrape, and the one retry pass, backwards
        assert_eq!(
            r.passes.first().map(String::as_str),
            Some("copy"),
            "{name}: {r:?}"
        );
        assert_eq!(
            r.passes.last().map(String::as_str),
            Some("retry backwards"),
            "{name}: {r:?}"
        );
        for p in ["trim", "scrape"] {
            assert!(r.passes.iter().any(|x| x == p), "{name}: {r:?}");
        }
        assert_eq!(s.path, out, "{name}");
        let want = sectors(&bad, u64::from(sector));
        check_image(name, &s, &out, &bytes, &want);
        assert_eq!(s.read_bytes, DISK - s.missing_bytes, "{name}: read_bytes");
    }
}

#[test]
fn flaky_sectors_are_recovered_by_the_retry_passes() {
    // A read of a flaky range fails the first n times. A range is read by the copy pass
    // (its piece of a chunk), the trim pass (its block), the scrape pass (its 4 KiB piece,
    // then its sector) and once by each retry pass: n failures are recovered when
    // n < 4 + retries.
    let one = |at: u64| at..at + 512;
    for (name, retries, flaky, missing) in [
        (
            "retries 1",
            1,
            vec![(one(2 * MIB + 4096), 4), (6 * MIB..6 * MIB + 8 * KIB, 2)],
            vec![],
        ),
        (
            "retries 2",
            2,
            vec![(one(0), 5), (one(DISK - 512), 4), (one(11 * MIB + 512), 1)],
            vec![],
        ),
        (
            "retries 1, one failure too many",
            1,
            vec![(one(2 * MIB + 4096), 5), (one(9 * MIB), 4)],
            vec![(2 * MIB + 4096, 2 * MIB + 4608)],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (src, bytes) = make_source(dir.path());
        let mut dev = Sick::new(&src, 512);
        for (r, n) in &flaky {
            dev = dev.flaky(r.clone(), *n);
        }
        let dev = Arc::new(dev);
        let out = dir.path().join("out.lbi");
        let s = rescue(
            &src,
            &out,
            512,
            opts(5.0, retries),
            Arc::clone(&dev),
            &Reporter::silent(),
            &CancelToken::new(),
        );
        check_image(name, &s, &out, &bytes, &missing);
        let r = s.rescue.as_ref().unwrap();
        assert!(r.failed_reads > 0, "{name}");
        assert_eq!(r.stopped, None, "{name}");
        // every flaky range was read until it worked (or the passes ran out)
        let used = dev.flaky_used.lock().unwrap().clone();
        let wanted: Vec<u32> = flaky.iter().map(|f| f.1).collect();
        assert_eq!(used, wanted, "{name}");
    }
}

#[test]
fn a_read_that_hangs_past_the_timeout_loses_one_sector_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let (src, bytes) = make_source(dir.path());
    let hang = 13 * MIB + 7 * 512;
    // every read of that sector takes 0.6 s; the timeout is 0.15 s; reads near it are slow
    // but answer in time
    let dev = Arc::new(
        Sick::new(&src, 512)
            .slow(hang..hang + 512, 0.6)
            .slow(14 * MIB..14 * MIB + 4096, 0.05),
    );
    let out = dir.path().join("out.lbi");
    let t = Instant::now();
    let s = rescue(
        &src,
        &out,
        512,
        opts(0.15, 1),
        Arc::clone(&dev),
        &Reporter::silent(),
        &CancelToken::new(),
    );
    let took = t.elapsed();
    check_image("hang", &s, &out, &bytes, &[(hang, hang + 512)]);
    let r = s.rescue.as_ref().unwrap();
    assert_eq!(r.stopped, None, "{r:?}");
    // copy, trim, scrape (its 4 KiB piece and its sector) and one retry each gave it up
    // once (the reads in flight with it the first time do not count as hung)
    assert!((1..=5).contains(&r.hung_reads), "{r:?}");
    assert!(r.failed_reads >= u64::from(r.hung_reads), "{r:?}");
    assert!(took < Duration::from_secs(12), "the rescue took {took:?}");
}

#[test]
fn a_hang_late_in_an_unaligned_chunk_keeps_the_bytes_read_before_it() {
    // A partition 3 sectors past 1 MiB: its first chunk (1 MiB + 1536 .. 2 MiB) is not a
    // multiple of its own length from the disk's start. The copy pass must read it in one
    // read: when it was cut in two and the second read was given up, the bytes of the first
    // were stored as zeros (the root tests caught it).
    common::require_tool("sfdisk");
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = make_source(dir.path());
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'label: gpt\nstart=2051, size=40000\n' | sfdisk -q {}",
            src.display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&src).unwrap();
    let hang = 2 * MIB - 1024;
    let dev = Arc::new(Sick::new(&src, 512).slow(hang..hang + 512, 0.6));
    let out = dir.path().join("out.lbi");
    let plan = image::plan(
        &spec(&src, &out, 512, opts(0.15, 0)),
        &SystemPaths::default(),
    )
    .unwrap();
    let s =
        image::run_rescue_on(&plan, dev, 512, &Reporter::silent(), &CancelToken::new()).unwrap();
    assert_eq!(missing_of(&s), vec![(hang, hang + 512)]);
    let chain = Chain::open(&out, &[]).unwrap();
    let img = ImageDev::new(&chain);
    // the partition's first chunk, bar the hung sector, reads back as the source
    let start = 2051 * 512;
    let mut got = vec![0u8; (2 * MIB - start) as usize];
    img.read_at(&mut got, start).unwrap();
    let mut want = bytes[start as usize..2 * MIB as usize].to_vec();
    let h = (hang - start) as usize;
    want[h..h + 512].fill(0);
    if got != want {
        let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
        panic!("the image reads back wrong at byte {}", start + i as u64);
    }
}

#[test]
fn a_disk_that_dies_ends_the_rescue_and_the_rest_is_missing() {
    for (name, death, says) in [
        ("gone (ENODEV)", Death::Gone, "gone"),
        (
            "stops answering",
            Death::Hang(Duration::from_secs(4)),
            "stopped answering",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (src, bytes) = make_source(dir.path());
        // a bad sector first, so the dying disk is met by more than the copy pass
        let dev = Arc::new(
            Sick::new(&src, 512)
                .bad(MIB + 512..MIB + 1024)
                .dies_after(12, death),
        );
        let out = dir.path().join("out.lbi");
        let t = Instant::now();
        let s = rescue(
            &src,
            &out,
            512,
            opts(0.1, 2),
            Arc::clone(&dev),
            &Reporter::silent(),
            &CancelToken::new(),
        );
        let took = t.elapsed();
        assert!(took < Duration::from_secs(10), "{name}: took {took:?}");
        let r = s.rescue.as_ref().unwrap();
        let why = r.stopped.as_deref().unwrap_or_default();
        assert!(why.contains(says), "{name}: stopped: {:?}", r.stopped);
        // what the image holds was served by the disk; everything else is missing
        let missing = missing_of(&s);
        let served = dev.served();
        let held = complement(&missing, DISK);
        for &(hs, he) in &held {
            assert!(
                served.iter().any(|&(s, e)| s <= hs && he <= e),
                "{name}: the image holds {hs}..{he}, which the disk never served ({served:?})"
            );
        }
        assert!(
            s.missing_bytes >= DISK - 12 * MIB,
            "{name}: only {} bytes missing",
            s.missing_bytes
        );
        assert!(
            missing
                .iter()
                .any(|&(s, e)| s <= MIB + 512 && MIB + 1024 <= e),
            "{name}: the bad sector is not missing: {missing:?}"
        );
        check_image(name, &s, &out, &bytes, &missing);
    }
}

#[test]
fn cancel_seals_what_was_read_and_the_rest_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, bytes) = make_source(dir.path());
    // 30 ms a read: 32 chunks take about half a second, two at a time
    let dev = Arc::new(Sick::new(&src, 512).paced(0.03));
    let out = dir.path().join("out.lbi");
    let cancel = CancelToken::new();
    let canceller = {
        let (dev, cancel) = (Arc::clone(&dev), cancel.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            // (several reads are in flight at once: after 12, some chunks are stored)
            while dev.reads() < 12 && t.elapsed() < Duration::from_secs(20) {
                std::thread::sleep(Duration::from_millis(2));
            }
            cancel.cancel();
        })
    };
    let t = Instant::now();
    let s = rescue(
        &src,
        &out,
        512,
        opts(5.0, 1),
        Arc::clone(&dev),
        &Reporter::silent(),
        &cancel,
    );
    canceller.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let r = s.rescue.as_ref().unwrap();
    assert!(
        r.stopped.as_deref().unwrap_or_default().contains("cancel"),
        "{r:?}"
    );
    assert!(out.exists(), "the image is sealed");
    assert!(
        !image::rescue_log_path(&out).exists(),
        "the rescue log is gone"
    );
    let missing = missing_of(&s);
    assert!(
        s.missing_bytes >= DISK / 2,
        "{} bytes missing",
        s.missing_bytes
    );
    assert!(
        s.read_bytes > 0 && s.read_bytes + s.missing_bytes == DISK,
        "{s:?}"
    );
    let served = dev.served();
    for (hs, he) in complement(&missing, DISK) {
        assert!(
            served.iter().any(|&(s, e)| s <= hs && he <= e),
            "the image holds {hs}..{he}, which the disk never served"
        );
    }
    check_image("cancel", &s, &out, &bytes, &missing);
}

#[test]
fn rescue_events_rise_and_end_with_the_summarys_missing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, bytes) = make_source(dir.path());
    let bad = [3 * MIB + 512..3 * MIB + 2048, 20 * MIB..20 * MIB + 70 * KIB];
    let dev = Arc::new(
        Sick::new(&src, 512)
            .bad(bad[0].clone())
            .bad(bad[1].clone())
            .paced(0.002),
    );
    let out = dir.path().join("out.lbi");
    let (reporter, rx) = Reporter::channel::<()>();
    let collector = std::thread::spawn(move || rx.iter().collect::<Vec<Event<()>>>());
    let s = rescue(
        &src,
        &out,
        512,
        opts(5.0, 1),
        dev,
        &reporter,
        &CancelToken::new(),
    );
    drop(reporter);
    let events = collector.join().unwrap();
    check_image("events", &s, &out, &bytes, &sectors(&bad, 512));

    // (pass, name, rescued, missing, untried)
    let rescue: Vec<(u32, String, u64, u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Rescue {
                pass,
                name,
                rescued_bytes,
                missing_bytes,
                untried_bytes,
            } => Some((
                *pass,
                name.clone(),
                *rescued_bytes,
                *missing_bytes,
                *untried_bytes,
            )),
            _ => None,
        })
        .collect();
    assert!(rescue.len() >= 2, "{rescue:?}");
    for w in rescue.windows(2) {
        assert!(w[1].0 >= w[0].0, "the pass went back: {w:?}");
        assert!(w[1].2 >= w[0].2, "rescued bytes went down: {w:?}");
        assert!(w[1].4 <= w[0].4, "untried bytes went up: {w:?}");
    }
    for e in &rescue {
        assert!(e.2 + e.3 + e.4 <= DISK, "more than the disk: {e:?}");
    }
    let first = rescue.first().unwrap();
    let last = rescue.last().unwrap();
    assert!(first.2 < last.2, "nothing rose: {first:?} .. {last:?}");
    assert_eq!(last.2, s.read_bytes, "last event's rescued bytes: {last:?}");
    assert_eq!(
        last.3, s.missing_bytes,
        "last event's missing bytes: {last:?}"
    );
    assert_eq!(last.4, 0, "{last:?}");
    // every pass the summary names was reported, in order
    let mut names: Vec<String> = rescue.iter().map(|e| e.1.clone()).collect();
    names.dedup();
    assert_eq!(names, s.rescue.as_ref().unwrap().passes, "{rescue:?}");
    // the stream ends with the warning about what is missing, after the last pass
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning { message }
            if message.contains(&format!("{} bytes", s.missing_bytes)))),
        "{events:?}"
    );
}

#[test]
fn a_hostile_domain_mapfile_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = make_source(dir.path());
    let cases: [(&str, &[u8], Option<&str>); 8] = [
        ("empty", b"", Some("no status line")),
        (
            "overlapping blocks",
            b"# Mapfile\n0x0 +\n0x0 0x10000 +\n0x8000 0x10 +\n",
            Some("line 4"),
        ),
        (
            "not a number",
            b"# a\n# b\n0 + 1\n0x0 0x10 +\n0x10 0xZZ +\n",
            Some("line 5"),
        ),
        (
            "past 2^64",
            b"0 + 1\n0xFFFFFFFFFFFFFFF0 0x100 +\n",
            Some("line 2"),
        ),
        (
            "a number too large",
            b"0 + 1\n99999999999999999999999 1 +\n",
            Some("line 2"),
        ),
        ("unknown status", b"0 + 1\n0 512 X\n", Some("line 2")),
        ("status line too long", b"0 + 1 2 3\n", Some("line 1")),
        ("not text", b"0 + 1\n\xff\xfe\x00\x01 12 +\n", None),
    ];
    for (name, text, want) in cases {
        let map = dir.path().join("domain.map");
        std::fs::write(&map, text).unwrap();
        let out = dir.path().join("out.lbi");
        let o = RescueOptions {
            domain: Some(map.clone()),
            ..opts(1.0, 1)
        };
        let e = image::plan(&spec(&src, &out, 512, o), &SystemPaths::default())
            .map(|_| ())
            .unwrap_err();
        let msg = format!("{e}");
        if let Some(want) = want {
            assert!(msg.contains(want), "{name}: {msg}");
            assert!(msg.contains(&map.display().to_string()), "{name}: {msg}");
            assert!(matches!(e, Error::Refused { .. }), "{name}: {e:?}");
        }
        assert!(!out.exists(), "{name}");
    }
}

#[test]
fn a_domain_of_half_the_disk_leaves_the_other_half_missing_unread() {
    for (name, text, missing) in [
        (
            "first half",
            "# Mapfile\n0x00000000     +               1\n0x00000000  0x01000000  +\n0x01000000  0x01000000  ?\n".to_string(),
            vec![(16 * MIB, DISK)],
        ),
        (
            "odd pieces, decimal, past the end",
            // + blocks at 0..1 MiB, 5 MiB + 512 .. 21 MiB + 512, and 31 MiB .. beyond the end
            format!(
                "0 ?\n0 {} +\n{} {} -\n{} {} +\n{} {} /\n{} {} +\n",
                MIB,
                MIB,
                4 * MIB + 512,
                5 * MIB + 512,
                16 * MIB,
                21 * MIB + 512,
                10 * MIB - 512,
                31 * MIB,
                64 * MIB
            ),
            vec![(MIB, 5 * MIB + 512), (21 * MIB + 512, 31 * MIB)],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (src, bytes) = make_source(dir.path());
        let map = dir.path().join("domain.map");
        std::fs::write(&map, text).unwrap();
        let out = dir.path().join("out.lbi");
        let dev = Arc::new(Sick::new(&src, 512));
        let o = RescueOptions {
            domain: Some(map),
            ..opts(5.0, 1)
        };
        let plan = image::plan(&spec(&src, &out, 512, o), &SystemPaths::default()).unwrap();
        let outside: u64 = missing.iter().map(|m| m.1 - m.0).sum();
        assert_eq!(plan.copy_bytes, DISK - outside, "{name}");
        let s = image::run_rescue_on(
            &plan,
            Arc::clone(&dev) as Arc<dyn BlockDev>,
            512,
            &Reporter::silent(),
            &CancelToken::new(),
        )
        .unwrap();
        check_image(name, &s, &out, &bytes, &missing);
        assert_eq!(s.read_bytes, DISK - outside, "{name}");
        // nothing outside the domain was read
        for (s, e) in dev.served() {
            for &(ms, me) in &missing {
                assert!(e <= ms || me <= s, "{name}: read {s}..{e} outside the domain");
            }
        }
        assert_eq!(s.rescue.as_ref().unwrap().failed_reads, 0, "{name}");
    }
}
