//! Tier 2 (root): going on with an `image --rescue` that was killed, cancelled or sealed
//! (`--resume`), and the GNU ddrescue mapfiles it writes and reads (`--mapfile`, `--domain`).
//!
//! A 96 MiB GPT disk with ext4 full of files sits behind faultfs (tests/helpers/faultfs.py)
//! and a read-only loop device with direct I/O (`losetup -r --direct-io=on`), so bad sectors
//! come from the kernel's block layer, and `slow_read` over the whole disk paces a rescue to
//! about ten seconds so it can be killed at chosen points. The truth for every comparison is
//! an uninterrupted rescue of the same disk, and the disk's backing file read directly. The
//! disk's free space is zeros (a fresh sparse file), so a restore of its used blocks equals
//! the whole disk.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{p, MIB};
use common::{noise, read_at, require_root, require_tool, sh, sparse, FaultFs, LoopDev};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const SECTOR: u64 = 512;
const DISK_LEN: u64 = 96 * MIB;
/// Partition 2 (ext4, the files) starts here and is this long.
const P2_START: u64 = 3 * MIB;
const P2_LEN: u64 = 64 * MIB;
/// Seconds faultfs sleeps on every read request (at most 128 KiB) in [`PACED`]: the copy
/// pass of the disk's 38 MiB of used blocks then takes about eight seconds (it spans the
/// first periodic checkpoint, 5 s in).
const PACE: f64 = 0.035;
/// Where reads are paced (`(start, end)`): all but the chunks (4 MiB) holding the bad
/// sectors, whose trim pass would take long.
const PACED: [(u64, u64); 2] = [(0, 20 * MIB), (28 * MIB, DISK_LEN)];
/// The first bad sector's 64 KiB block is scraped in 4 KiB pieces and its failing piece
/// sector by sector (24 reads), slowly: this long a read (the scrape pass then takes about
/// three seconds).
const SCRAPE_PACE: f64 = 0.13;
/// No lifeboat run in this file may take longer.
const LIMIT: Duration = Duration::from_secs(60);

fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    for t in [
        "sgdisk",
        "mkfs.ext4",
        "losetup",
        "ddrescuelog",
        "/usr/bin/python3",
    ] {
        require_tool(t);
    }
    common::have_fusepy()
}

/// Bad sectors in the files' data: one sector at 20 MiB, and 7 sectors from an unaligned
/// byte range at 27 MiB + 1000 (`(start, len)` as faultfs takes them).
const BAD: [(u64, u64); 2] = [(20 * MIB, 512), (27 * MIB + 1000, 3000)];

/// The sectors `BAD` covers, as the image must list them (`(start, len)`).
fn bad_sectors() -> Vec<(u64, u64)> {
    BAD.iter()
        .map(|&(s, l)| {
            let a = s / SECTOR * SECTOR;
            let b = (s + l).div_ceil(SECTOR) * SECTOR;
            (a, b - a)
        })
        .collect()
}

// ---- the source disk ----

/// The disk's backing file, in its own temp dir (which also holds faultfs's mount point).
struct Source {
    dir: tempfile::TempDir,
    file: PathBuf,
}

/// A 96 MiB GPT disk: p1 BIOS boot (2 MiB, zeros), p2 ext4 with eight 3 MiB files of noise.
fn build() -> Source {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.img");
    sparse(&file, DISK_LEN);
    sh(&format!(
        "sgdisk -n1:2048:+2M -t1:ef02 -n2:{}:+{}M {} >/dev/null",
        P2_START / SECTOR,
        P2_LEN / MIB,
        file.display()
    ));
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..8u32 {
        std::fs::write(
            tree.join(format!("f{i}")),
            noise(3 * MIB as usize, 0x1000 + i),
        )
        .unwrap();
    }
    sh(&format!(
        "mkfs.ext4 -q -F -b 4096 -E offset={P2_START} -d {} {} {}k",
        tree.display(),
        file.display(),
        P2_LEN / 1024
    ));
    Source { dir, file }
}

/// The source behind faultfs and a read-only direct-I/O loop device. The loop device is
/// declared first, so it is detached before the FUSE file goes.
struct Failing {
    lo: LoopDev,
    fs: FaultFs,
}

impl Failing {
    fn new(src: &Source, control: &str) -> Failing {
        let fs = FaultFs::start(&src.file, src.dir.path(), control);
        let lo = LoopDev::attach_with(&fs.disk(), "-r --direct-io=on");
        let sys = Path::new("/sys/block").join(lo.path.file_name().unwrap());
        let dio = std::fs::read_to_string(sys.join("loop/dio")).unwrap();
        assert_eq!(dio.trim(), "1", "loop direct I/O is off");
        Failing { lo, fs }
    }

    fn dev(&self) -> &str {
        p(&self.lo.path)
    }

    /// Replaces the faults (faultfs's control).
    fn set(&self, control: &str) {
        self.fs.set(control);
    }

    /// faultfs's counter `key` so far.
    fn stat(&self, key: &str) -> u64 {
        let s = self.fs.stats();
        if s.trim().is_empty() {
            return 0;
        }
        let v: Value = serde_json::from_str(&s).unwrap();
        v[key].as_u64().unwrap()
    }
}

/// faultfs control: reads paced (when `paced`, see [`PACED`]), and `bad` `(start, len)`
/// failing.
fn control(paced: bool, bad: &[(u64, u64)]) -> String {
    let bad: Vec<String> = bad.iter().map(|(s, l)| format!("[{s}, {l}]")).collect();
    let slow = if paced {
        let mut r: Vec<String> = PACED
            .iter()
            .map(|(s, e)| format!("[{s}, {}, {PACE}]", e - s))
            .collect();
        r.push(format!(
            "[{}, {}, {SCRAPE_PACE}]",
            BAD[0].0 / 65536 * 65536,
            65536
        ));
        r.join(", ")
    } else {
        String::new()
    };
    format!(
        "{{\"slow_read\": [{slow}], \"bad_read\": [{}]}}",
        bad.join(", ")
    )
}

// ---- running lifeboat ----

/// A lifeboat process whose stdout lines arrive on a channel as it prints them.
struct Running {
    child: Child,
    lines: Receiver<String>,
    out: Vec<String>,
    err: std::thread::JoinHandle<String>,
    started: Instant,
    args: Vec<String>,
}

fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Running {
        child,
        lines,
        out: Vec::new(),
        err,
        started: Instant::now(),
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

impl Running {
    /// Reads stdout until a line satisfies `pred`; false if the process ended first.
    fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> bool {
        loop {
            assert!(
                self.started.elapsed() < LIMIT,
                "lifeboat {:?} still running after {LIMIT:?}",
                self.args
            );
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let hit = pred(&l);
                    self.out.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Polls `cond` every 50 ms while the process runs; false if it ended first.
    fn wait_until(&mut self, cond: impl Fn() -> bool) -> bool {
        loop {
            assert!(self.started.elapsed() < LIMIT, "{:?}: too long", self.args);
            self.drain();
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.out.push(l);
        }
    }

    /// Sleeps `secs`, then asserts the process is still running (the kill lands where
    /// the test means it to).
    fn still_running_after(&mut self, secs: f64, what: &str) {
        std::thread::sleep(Duration::from_secs_f64(secs));
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "lifeboat ended before {what}: {}",
            self.out.join("\n")
        );
    }

    /// `kill -9`, and waits for it.
    fn kill9(mut self) -> ExitStatus {
        self.child.kill().unwrap();
        self.child.wait().unwrap()
    }

    /// Waits for the process to end: its status, stdout and stderr.
    fn wait(mut self) -> (ExitStatus, String, String) {
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                self.started.elapsed() < LIMIT,
                "lifeboat {:?} still running after {LIMIT:?}",
                self.args
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // the reader thread ends with the pipe
        while let Ok(l) = self.lines.recv() {
            self.out.push(l);
        }
        (status, self.out.join("\n"), self.err.join().unwrap())
    }
}

/// `lifeboat args`, which must exit 0: stdout and stderr.
fn ok(args: &[&str]) -> (String, String) {
    let (st, out, err) = spawn(args).wait();
    assert!(st.success(), "lifeboat {args:?}: {st}\n{out}\n{err}");
    (out, err)
}

/// The summary of the `finished` event of a `--json` run's stdout, which must be ok.
fn finished(out: &str) -> Value {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("\"event\":\"finished\""))
        .unwrap_or_else(|| panic!("no finished event in:\n{out}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["ok"], true, "{line}");
    v["summary"].clone()
}

/// `image DEV -o OUT --rescue --json EXTRA...`, as a running process.
fn start_rescue(dev: &str, out: &Path, extra: &[&str]) -> Running {
    let mut args = vec![
        "image",
        dev,
        "-o",
        p(out),
        "--rescue",
        "--json",
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    spawn(&args)
}

/// A rescue run to its end, which must succeed; its summary.
fn rescue(dev: &str, out: &Path, extra: &[&str]) -> Value {
    let (st, o, e) = start_rescue(dev, out, extra).wait();
    assert!(st.success(), "rescue {extra:?}: {st}\n{o}\n{e}");
    let s = finished(&o);
    assert!(s["rescue"].is_object(), "no rescue report: {s}");
    s
}

/// `[{start_bytes, len_bytes}]` as pairs.
fn pairs(v: &Value) -> Vec<(u64, u64)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|r| {
            (
                r["start_bytes"].as_u64().unwrap(),
                r["len_bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `info --json`'s missing ranges of `img`.
fn info_missing(img: &Path) -> Vec<(u64, u64)> {
    let info: Value = serde_json::from_str(&ok(&["info", p(img), "--json"]).0).unwrap();
    pairs(&info["missing"])
}

/// `verify img` passes.
fn verify(img: &Path) {
    let (o, e) = ok(&["verify", p(img)]);
    assert!(format!("{o}{e}").contains("intact"), "{o}{e}");
}

/// Restores `img` onto a new file `name` next to it; the file.
fn restore(img: &Path, name: &str) -> PathBuf {
    let target = img.with_file_name(name);
    ok(&["restore", p(img), p(&target), "--yes"]);
    target
}

/// `got` equals `want` byte for byte, except zeros in `missing` (`(start, len)`).
fn assert_same(want: &Path, got: &Path, missing: &[(u64, u64)]) {
    let len = std::fs::metadata(want).unwrap().len();
    assert_eq!(
        std::fs::metadata(got).unwrap().len(),
        len,
        "{}",
        got.display()
    );
    let piece = 8 * MIB;
    let mut at = 0;
    while at < len {
        let n = piece.min(len - at);
        let mut w = read_at(want, at, n as usize);
        let g = read_at(got, at, n as usize);
        for &(s, l) in missing {
            let (a, b) = (s.max(at), (s + l).min(at + n));
            if a < b {
                w[(a - at) as usize..(b - at) as usize].fill(0);
            }
        }
        if w != g {
            let i = w.iter().zip(&g).position(|(x, y)| x != y).unwrap();
            panic!(
                "{} differs from {} at byte {} (missing: {missing:?})",
                got.display(),
                want.display(),
                at + i as u64
            );
        }
        at += n;
    }
}

// ---- mapfiles and ranges ----

/// The blocks of a ddrescue mapfile, `(pos, size, status)`, without its comments and
/// status line.
fn map_blocks(path: &Path) -> Vec<(u64, u64, char)> {
    let text = std::fs::read_to_string(path).unwrap();
    let num = |s: &str| match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (num(f[0]), num(f[1]), f[2].chars().next().unwrap())
        })
        .collect()
}

/// The `(start, end)` of a mapfile's blocks in one of `states`, joined.
fn map_areas(path: &Path, states: &str) -> Vec<(u64, u64)> {
    join(
        map_blocks(path)
            .into_iter()
            .filter(|b| states.contains(b.2))
            .map(|b| (b.0, b.0 + b.1))
            .collect(),
    )
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

/// `a ∩ b`, both sorted and disjoint `(start, end)`.
fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in a {
        for &(bs, be) in b {
            let (x, y) = (s.max(bs), e.min(be));
            if x < y {
                out.push((x, y));
            }
        }
    }
    join(out)
}

/// `a \ b`, both sorted and disjoint `(start, end)`.
fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(s, e) in a {
        let mut pos = s;
        for &(bs, be) in b {
            if be <= pos || bs >= e {
                continue;
            }
            if bs > pos {
                out.push((pos, bs));
            }
            pos = pos.max(be);
        }
        if pos < e {
            out.push((pos, e));
        }
    }
    out
}

fn to_pairs(v: &[(u64, u64)]) -> Vec<(u64, u64)> {
    v.iter().map(|&(s, e)| (s, e - s)).collect()
}

fn to_ranges(v: &[(u64, u64)]) -> Vec<(u64, u64)> {
    v.iter().map(|&(s, l)| (s, s + l)).collect()
}

// ---- the tests ----

/// Where a rescue is killed.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// 1.5 s into the copy pass: no checkpoint but the first (the header) is written.
    BeforeFirstCheckpoint,
    /// Mid-copy, 0.7 s after the first periodic checkpoint (5 s into the pass).
    AfterACheckpoint,
    /// One second into the scrape pass, after the copy and trim passes' checkpoints.
    InScrape,
}

#[test]
fn a_rescue_killed_anywhere_resumes_to_the_same_image() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    let base = control(true, &BAD);
    let f = Failing::new(&src, &base);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // the truth: an uninterrupted rescue
    let whole = w.join("whole.lbi");
    let whole_map = w.join("whole.map");
    let before = f.stat("slow");
    let tw = Instant::now();
    let s = rescue(f.dev(), &whole, &["--mapfile", p(&whole_map)]);
    let whole_secs = tw.elapsed().as_secs_f64();
    let whole_reads = f.stat("slow") - before;
    let want = bad_sectors();
    assert_eq!(pairs(&s["missing"]), want, "uninterrupted: {s}");
    assert_eq!(info_missing(&whole), want);
    assert!(f.stat("read_eio") > 0, "faultfs failed no read");
    verify(&whole);
    let whole_disk = restore(&whole, "whole.restored");
    assert_same(&src.file, &whole_disk, &want);
    assert!(
        (5.0..40.0).contains(&whole_secs),
        "the paced rescue took {whole_secs:.1} s"
    );
    let whole_blocks = map_blocks(&whole_map);

    for at in [
        KillAt::BeforeFirstCheckpoint,
        KillAt::AfterACheckpoint,
        KillAt::InScrape,
    ] {
        let name = format!("{at:?}");
        let img = w.join(format!("{name}.lbi"));
        let map = w.join(format!("{name}.map"));
        let mut run = start_rescue(f.dev(), &img, &["--mapfile", p(&map)]);
        match at {
            KillAt::BeforeFirstCheckpoint => {
                assert!(
                    run.wait_for(|l| l.contains("\"event\":\"rescue\"")),
                    "{name}"
                );
                run.still_running_after(1.5, &name);
            }
            KillAt::AfterACheckpoint => {
                let m = map.clone();
                let seen =
                    run.wait_until(move || m.exists() && map_blocks(&m).iter().any(|b| b.2 == '+'));
                assert!(seen, "{name}: no checkpoint before the end");
                run.drain();
                assert!(
                    !run.out.iter().any(|l| l.contains("\"name\":\"trim\"")),
                    "{name}: the first checkpoint came after the copy pass"
                );
                run.still_running_after(0.7, &name);
            }
            KillAt::InScrape => {
                assert!(
                    run.wait_for(|l| l.contains("\"name\":\"scrape\"")),
                    "{name}"
                );
                run.still_running_after(1.0, &name);
            }
        }
        let st = run.kill9();
        assert!(!st.success(), "{name}: {st}");
        assert!(!img.exists(), "{name}: a killed rescue left a sealed image");
        assert!(
            img.with_extension("lbi.partial").exists() && img.with_extension("lbi.rescue").exists(),
            "{name}: the partial image or its rescue log is missing"
        );
        // what the last checkpoint had rescued (the mapfile is written after the log)
        let rescued = map_areas(&map, "+");
        let rescued_bytes: u64 = rescued.iter().map(|r| r.1 - r.0).sum();
        match at {
            KillAt::BeforeFirstCheckpoint => assert_eq!(rescued_bytes, 0, "{name}"),
            _ => assert!(rescued_bytes > 4 * MIB, "{name}: {rescued:?}"),
        }
        // the plan says where it goes on from
        let (plan, _) = ok(&[
            "image",
            f.dev(),
            "-o",
            p(&img),
            "--rescue",
            "--resume",
            "--dry-run",
            "--json",
        ]);
        let plan: Value = serde_json::from_str(&plan).unwrap();
        assert_eq!(plan["resume"]["from"], "interrupted", "{name}: {plan}");
        assert!(
            plan["resume"]["rescued_bytes"].as_u64().unwrap() >= rescued_bytes,
            "{name}: {}",
            plan["resume"]
        );

        // What the checkpoints hold must not be read again: those of the files' data
        // (away from the filesystem's metadata, which the plan reads) now fail, so a
        // resume that read them again would record them missing.
        let files = [(P2_START + 8 * MIB, P2_START + P2_LEN - MIB)];
        let poison = intersect(&rescued, &files);
        if !matches!(at, KillAt::BeforeFirstCheckpoint) {
            assert!(!poison.is_empty(), "{name}: no file data was checkpointed");
        }
        let mut bad = BAD.to_vec();
        bad.extend(to_pairs(&poison));
        f.set(&control(true, &bad));
        let before = f.stat("slow");
        let mut sealed = None;
        for _ in 0..3 {
            let (st, o, e) =
                start_rescue(f.dev(), &img, &["--mapfile", p(&map), "--resume"]).wait();
            assert!(st.success(), "{name}: resume: {st}\n{o}\n{e}");
            if img.exists() {
                sealed = Some(finished(&o));
                break;
            }
        }
        let reads = f.stat("slow") - before;
        f.set(&base);
        let s = sealed.unwrap_or_else(|| panic!("{name}: three resumes did not seal it"));
        assert_eq!(pairs(&s["missing"]), want, "{name}: resumed: {s}");
        assert_eq!(info_missing(&img), want, "{name}");
        assert!(!img.with_extension("lbi.partial").exists(), "{name}");
        assert!(!img.with_extension("lbi.rescue").exists(), "{name}");
        verify(&img);
        let disk = restore(&img, &format!("{name}.restored"));
        assert_same(&whole_disk, &disk, &[]);
        // the same mapfile as the uninterrupted rescue's
        assert_eq!(map_blocks(&map), whole_blocks, "{name}: final mapfile");
        // a request is at most 128 KiB: not reading `rescued` again saves at least that
        // many paced ones (faultfs counts those)
        let paced: u64 = intersect(&rescued, &PACED).iter().map(|r| r.1 - r.0).sum();
        let saved = paced / (128 << 10);
        assert!(
            reads + saved <= whole_reads + 16,
            "{name}: the resume made {reads} read requests, the whole rescue {whole_reads}, and {rescued_bytes} bytes were rescued already"
        );
        std::fs::remove_file(&disk).unwrap();
    }
    eprintln!("resume after kill -9: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn sigint_seals_and_a_resume_without_faults_fills_the_image() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    let f = Failing::new(&src, &control(true, &BAD));
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("int.lbi");

    let mut run = start_rescue(f.dev(), &img, &[]);
    // Ctrl-C once 8 MiB are rescued
    let rescued = |l: &str| {
        serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v["rescued_bytes"].as_u64())
            .is_some_and(|b| b >= 8 * MIB)
    };
    assert!(run.wait_for(rescued), "the rescue ended before 8 MiB");
    sh(&format!("kill -INT {}", run.child.id()));
    let (st, out, err) = run.wait();
    assert_eq!(st.code(), Some(0), "Ctrl-C: {st}\n{out}\n{err}");
    let s = finished(&out);
    let stopped = s["rescue"]["stopped"].as_str().unwrap_or_default();
    assert!(stopped.contains("cancel"), "stopped: {}", s["rescue"]);
    // what was not read is missing: with what was read, every used byte
    let total = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "phase")
        .and_then(|v| v["total_bytes"].as_u64())
        .unwrap();
    let missing = pairs(&s["missing"]);
    let missing_bytes: u64 = missing.iter().map(|m| m.1).sum();
    assert_eq!(s["missing_bytes"], missing_bytes);
    assert_eq!(
        s["read_bytes"].as_u64().unwrap() + missing_bytes,
        total,
        "{s}"
    );
    assert!(missing_bytes >= 8 * MIB, "{s}");
    assert_eq!(info_missing(&img), missing);
    verify(&img);
    let disk = restore(&img, "int.restored");
    assert_same(&src.file, &disk, &missing);
    std::fs::remove_file(&disk).unwrap();

    // the disk cooled down: every sector reads now
    f.set("{}");
    let s = rescue(f.dev(), &img, &["--resume"]);
    assert_eq!(pairs(&s["missing"]), vec![], "{s}");
    assert_eq!(s["missing_bytes"], 0, "{s}");
    assert_eq!(info_missing(&img), vec![]);
    verify(&img);
    let disk = restore(&img, "full.restored");
    assert_same(&src.file, &disk, &[]);
    eprintln!("SIGINT and resume: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn resuming_a_sealed_image_with_a_child_is_refused_naming_the_child() {
    if !prerequisites() {
        return;
    }
    let src = build();
    let f = Failing::new(&src, &control(false, &BAD));
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("parent.lbi");
    let s = rescue(f.dev(), &img, &[]);
    assert_eq!(pairs(&s["missing"]), bad_sectors());
    let id_before = {
        let info: Value = serde_json::from_str(&ok(&["info", p(&img), "--json"]).0).unwrap();
        info["image_id"].clone()
    };
    // a child on top of it, made once the sectors read again
    f.set("{}");
    let child = work.path().join("child.lbi");
    ok(&["image", f.dev(), "-o", p(&child), "--parent", p(&img)]);

    let (st, out, err) = start_rescue(f.dev(), &img, &["--resume"]).wait();
    assert_eq!(st.code(), Some(1), "{st}\n{out}\n{err}");
    assert!(err.contains(p(&child)), "the refusal names no child: {err}");
    // nothing was touched: the parent is still sealed, whole, with its missing ranges
    assert!(!img.with_extension("lbi.partial").exists());
    assert!(!img.with_extension("lbi.rescue").exists());
    assert_eq!(info_missing(&img), bad_sectors());
    let info: Value = serde_json::from_str(&ok(&["info", p(&img), "--json"]).0).unwrap();
    assert_eq!(info["image_id"], id_before);
    verify(&img);
    verify(&child);
}

#[test]
fn the_mapfile_round_trips_through_ddrescuelog_and_a_domain_limits_the_reads() {
    if !prerequisites() {
        return;
    }
    let src = build();
    let f = Failing::new(&src, &control(false, &BAD));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // the mapfile of a rescue: ddrescuelog lists its bad sectors as the image's missing ones
    let img = w.join("m.lbi");
    let map = w.join("m.map");
    let s = rescue(f.dev(), &img, &["--mapfile", p(&map)]);
    let missing = pairs(&s["missing"]);
    assert_eq!(missing, bad_sectors());
    let listed: Vec<u64> = sh(&format!("ddrescuelog -l- -b512 {}", map.display()))
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let want: Vec<u64> = missing
        .iter()
        .flat_map(|&(s, l)| (s / SECTOR)..(s + l) / SECTOR)
        .collect();
    assert_eq!(listed, want, "ddrescuelog -l-");
    let status = sh(&format!("ddrescuelog -t {}", map.display()));
    let areas = |key: &str| -> u64 {
        let line = status
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {status}"));
        let (_, after) = line.split_once(" in ").unwrap();
        after.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert_eq!(areas("bad-sector:"), missing.len() as u64, "{status}");
    for key in ["non-trimmed:", "non-scraped:"] {
        assert_eq!(areas(key), 0, "{status}");
    }
    assert!(status.contains("finished"), "{status}");
    assert_eq!(
        sh(&format!("ddrescuelog -b512 -l+ {} | wc -l", map.display()))
            .trim()
            .parse::<u64>()
            .unwrap()
            * SECTOR,
        s["read_bytes"].as_u64().unwrap(),
        "the + blocks are what was read"
    );
    // the used blocks: those read and those that failed
    let used = map_areas(&map, "+-");

    // a domain of three pieces of the disk, made by ddrescuelog from a list of sectors; its
    // first piece ends right before the bad sector at 20 MiB, the second holds the other
    let domain = [
        (0, 10 * MIB),
        (20 * MIB + 512, 30 * MIB),
        (66 * MIB, DISK_LEN),
    ];
    let list: Vec<String> = domain
        .iter()
        .flat_map(|&(s, e)| (s / SECTOR)..(e / SECTOR))
        .map(|n| n.to_string())
        .collect();
    let list_file = w.join("domain.list");
    std::fs::write(&list_file, list.join("\n") + "\n").unwrap();
    let dmap = w.join("domain.map");
    sh(&format!(
        "ddrescuelog -c -b512 {} < {}",
        dmap.display(),
        list_file.display()
    ));
    assert_eq!(map_areas(&dmap, "+"), domain.to_vec(), "ddrescuelog -c");

    let dimg = w.join("d.lbi");
    let dmap_out = w.join("d.map");
    let ds = rescue(
        f.dev(),
        &dimg,
        &["--domain", p(&dmap), "--mapfile", p(&dmap_out)],
    );
    // missing: the used blocks outside the domain, and the bad sectors inside it
    let outside = subtract(&used, &domain);
    let bad_inside = intersect(&to_ranges(&bad_sectors()), &domain);
    let want = to_pairs(&join(outside.iter().chain(&bad_inside).copied().collect()));
    assert!(!outside.is_empty());
    assert_eq!(pairs(&ds["missing"]), want, "{ds}");
    assert_eq!(info_missing(&dimg), want);
    verify(&dimg);
    let read: u64 = intersect(&used, &domain)
        .iter()
        .map(|r| r.1 - r.0)
        .sum::<u64>()
        - bad_inside.iter().map(|r| r.1 - r.0).sum::<u64>();
    assert_eq!(ds["read_bytes"].as_u64().unwrap(), read, "{ds}");
    // its mapfile: read blocks `+` only inside the domain, the bad sector inside it `-`
    let plus = map_areas(&dmap_out, "+");
    assert_eq!(intersect(&plus, &domain), plus, "+ outside the domain");
    assert_eq!(map_areas(&dmap_out, "-"), bad_inside);
    let disk = restore(&dimg, "d.restored");
    assert_same(&src.file, &disk, &want);
}
