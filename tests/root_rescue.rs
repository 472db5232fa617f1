//! Tier 2 (root): `image --rescue` on a failing disk. A GPT disk with FAT32, ext4 and NTFS full
//! of files sits behind faultfs (tests/helpers/faultfs.py) and a read-only loop device with
//! direct I/O (`losetup -r --direct-io=on`), so bad, slow, hanging and flaky sectors come from
//! the kernel's block layer at 512-byte precision, as a dying disk delivers them.
//!
//! Every test checks what the image records as missing (the job's JSON summary and
//! `info --json`) against the injected ranges, that `verify` passes, and that a restore onto a
//! fresh file equals the source byte for byte outside the missing ranges and holds zeros inside
//! them. The truth is the source's backing file, read directly, never through faultfs. The
//! source disk has no deleted files and its free space is zeros (a fresh sparse file), so a
//! restore of only its used blocks equals the whole disk.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{p, MIB};
use common::Mount;
use common::{field, noise, read_at, require_root, require_tool, sh, sparse, FaultFs, LoopDev};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SECTOR: u64 = 512;
/// Start of partition 1 (FAT32), 2 (ext4) and 3 (NTFS) in bytes; each is `PART_LEN` long.
const FAT_START: u64 = MIB;
const EXT_START: u64 = 41 * MIB;
const NTFS_START: u64 = 81 * MIB;
const PART_LEN: u64 = 40 * MIB;
/// The whole disk: the partitions, then room for the backup GPT.
const DISK_LEN: u64 = 124 * MIB;
/// Each filesystem holds `big.bin` of this many bytes of noise; the faults go into it.
const BIG_LEN: usize = 2 * MIB as usize;
/// No lifeboat run in this file may take longer (a hung read must not hang the job).
const LIMIT: Duration = Duration::from_secs(90);

fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.vfat",
        "mcopy",
        "mkfs.ext4",
        "dumpe2fs",
        "debugfs",
        "mkntfs",
        "mount.ntfs-3g",
        "ntfsinfo",
        "ntfscluster",
        "/usr/bin/python3",
    ] {
        require_tool(t);
    }
    common::have_fusepy()
}

// ---- the source disk ----

#[derive(Clone, Copy, Debug)]
enum Fs {
    Fat,
    Ext4,
    Ntfs,
}

/// The source disk: its backing file, and where each filesystem's `big.bin` lies on it.
struct Source {
    dir: tempfile::TempDir,
    file: PathBuf,
    /// Disk offset of every 512-byte sector of each `big.bin`, in file order.
    fat: Vec<u64>,
    ext4: Vec<u64>,
    ntfs: Vec<u64>,
}

impl Source {
    /// The disk range (start, len) holding bytes `at..at+len` of `fs`'s big.bin, which must
    /// be sector-aligned and contiguous on the disk.
    fn range(&self, fs: Fs, at: u64, len: u64) -> (u64, u64) {
        assert!(at.is_multiple_of(SECTOR) && len.is_multiple_of(SECTOR) && len > 0);
        let map = match fs {
            Fs::Fat => &self.fat,
            Fs::Ext4 => &self.ext4,
            Fs::Ntfs => &self.ntfs,
        };
        let first = (at / SECTOR) as usize;
        let n = (len / SECTOR) as usize;
        let start = map[first];
        for i in 0..n {
            assert_eq!(
                map[first + i],
                start + i as u64 * SECTOR,
                "{fs:?} big.bin bytes {at}+{len} are not contiguous on the disk"
            );
        }
        // the fault lands on the file's data, not on zeros a restore would "match" anyway
        let on_disk = read_at(&self.file, start, len as usize);
        assert_eq!(on_disk, big(fs)[at as usize..(at + len) as usize]);
        (start, len)
    }
}

fn seed(fs: Fs) -> u32 {
    match fs {
        Fs::Fat => 101,
        Fs::Ext4 => 202,
        Fs::Ntfs => 303,
    }
}

/// The content of `fs`'s big.bin.
fn big(fs: Fs) -> Vec<u8> {
    noise(BIG_LEN, seed(fs))
}

/// The files of one filesystem: big.bin and a folder of notes. Nothing is deleted, so the
/// free space stays zeros.
fn write_tree(dir: &Path, fs: Fs) {
    std::fs::write(dir.join("big.bin"), big(fs)).unwrap();
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    for i in 0..20 {
        std::fs::write(
            dir.join(format!("docs/note{i}.txt")),
            format!("{fs:?} note {i}\n").repeat(200 + i * 40),
        )
        .unwrap();
    }
    std::fs::write(dir.join("small.bin"), noise(50_000, seed(fs) + 1)).unwrap();
}

/// A 124 MiB GPT disk: p1 FAT32, p2 ext4, p3 NTFS, 40 MiB each, full of files.
fn build() -> Source {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src.img");
    sparse(&file, DISK_LEN);
    let lo = LoopDev::attach(&file);
    let s = |b: u64| b / SECTOR;
    let script = format!(
        "label: gpt\n\n\
         start={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n\
         start={}, size={}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n\
         start={}, size={}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
        s(FAT_START),
        s(PART_LEN),
        s(EXT_START),
        s(PART_LEN),
        s(NTFS_START),
        s(PART_LEN)
    );
    let script_file = dir.path().join("table.sfdisk");
    std::fs::write(&script_file, script).unwrap();
    sh(&format!(
        "sfdisk -q {} < {} >/dev/null",
        lo.path.display(),
        script_file.display()
    ));
    lo.add_partitions();
    // FAT32 through mtools (the host kernel has no vfat)
    sh(&format!(
        "mkfs.vfat -F 32 -n LBFAT {} >/dev/null",
        lo.part(1).display()
    ));
    let tree = dir.path().join("fat-tree");
    std::fs::create_dir_all(&tree).unwrap();
    write_tree(&tree, Fs::Fat);
    sh(&format!(
        "mcopy -s -i {} {}/* ::/",
        lo.part(1).display(),
        tree.display()
    ));
    sh(&format!("mkfs.ext4 -q -L lbext {}", lo.part(2).display()));
    write_tree(Mount::new(&lo.part(2), "").dir.path(), Fs::Ext4);
    sh(&format!(
        "mkntfs -q -F -Q -L lbntfs {} >/dev/null 2>&1",
        lo.part(3).display()
    ));
    write_tree(Mount::new(&lo.part(3), "-t ntfs-3g").dir.path(), Fs::Ntfs);
    sh("sync");
    // where big.bin lies, as the filesystems' own tools say ...
    let ext4 = ext4_sectors(&lo.part(2));
    let ntfs = ntfs_sectors(&lo.part(3));
    drop(lo);
    // ... and as a search of the raw disk for its content finds it (FAT has no such tool)
    let fat = raw_sectors(&file, FAT_START, &big(Fs::Fat));
    assert_eq!(
        ext4,
        raw_sectors(&file, EXT_START, &big(Fs::Ext4)),
        "debugfs and the disk disagree"
    );
    assert_eq!(
        ntfs,
        raw_sectors(&file, NTFS_START, &big(Fs::Ntfs)),
        "ntfscluster and the disk disagree"
    );
    Source {
        dir,
        file,
        fat,
        ext4,
        ntfs,
    }
}

/// The disk offset of each sector of /big.bin on the ext4 at `node`, from `debugfs`.
fn ext4_sectors(node: &Path) -> Vec<u64> {
    let bs = field(
        &sh(&format!("dumpe2fs -h {} 2>/dev/null", node.display())),
        "Block size:",
    );
    let blocks = sh(&format!(
        "debugfs -R 'blocks /big.bin' {} 2>/dev/null",
        node.display()
    ));
    let mut out: Vec<u64> = blocks
        .split_whitespace()
        .map(|b| b.parse::<u64>().unwrap())
        .flat_map(|b| (0..bs / SECTOR).map(move |i| EXT_START + b * bs + i * SECTOR))
        .collect();
    out.truncate(BIG_LEN / SECTOR as usize);
    out
}

/// The disk offset of each sector of /big.bin on the NTFS at `node`, from `ntfscluster`'s
/// runlist of its data attribute (VCN, LCN, length in clusters).
fn ntfs_sectors(node: &Path) -> Vec<u64> {
    let cs = field(
        &sh(&format!("ntfsinfo -m {}", node.display())),
        "Cluster Size:",
    );
    let dump = sh(&format!("ntfscluster -F /big.bin {} 2>&1", node.display()));
    let mut runs: Vec<(u64, u64, u64)> = dump
        .lines()
        .skip_while(|l| !l.contains("0x80 - non-resident"))
        .skip(2)
        .map_while(|l| {
            let n: Vec<u64> = l.split_whitespace().map_while(|x| x.parse().ok()).collect();
            (n.len() == 3).then(|| (n[0], n[1], n[2]))
        })
        .collect();
    assert!(!runs.is_empty(), "no runlist in {dump}");
    runs.sort_unstable();
    let mut out: Vec<u64> = runs
        .iter()
        .flat_map(|&(_, lcn, len)| lcn..lcn + len)
        .flat_map(|c| (0..cs / SECTOR).map(move |i| NTFS_START + c * cs + i * SECTOR))
        .collect();
    out.truncate(BIG_LEN / SECTOR as usize);
    out
}

/// The disk offset of each sector of `content`, found by content in the partition at `start`.
fn raw_sectors(file: &Path, start: u64, content: &[u8]) -> Vec<u64> {
    let part = read_at(file, start, PART_LEN as usize);
    let sec = SECTOR as usize;
    let index: HashMap<&[u8], u64> = part
        .chunks_exact(sec)
        .enumerate()
        .map(|(i, s)| (s, start + (i * sec) as u64))
        .collect();
    content
        .chunks_exact(sec)
        .enumerate()
        .map(|(i, s)| {
            *index
                .get(s)
                .unwrap_or_else(|| panic!("sector {i} of a file is not on the disk"))
        })
        .collect()
}

// ---- the failing disk ----

/// The source behind faultfs and a read-only direct-I/O loop device. `lo` is declared first,
/// so it is detached before the FUSE file goes.
struct Failing {
    lo: LoopDev,
    fs: FaultFs,
}

impl Failing {
    fn new(src: &Source, control: &str) -> Failing {
        let fs = FaultFs::start(&src.file, src.dir.path(), control);
        let lo = LoopDev::attach_with(&fs.disk(), "-r --direct-io=on");
        let sys = Path::new("/sys/block").join(lo.path.file_name().unwrap());
        let read = |f: &str| std::fs::read_to_string(sys.join(f)).unwrap();
        // without direct I/O the loop device reads whole pages and errors lose their sector
        assert_eq!(read("loop/dio").trim(), "1", "loop direct I/O is off");
        assert_eq!(read("queue/logical_block_size").trim(), "512");
        Failing { lo, fs }
    }

    fn dev(&self) -> &str {
        p(&self.lo.path)
    }

    /// The helper's counter `key` (faults injected so far).
    fn stat(&self, key: &str) -> u64 {
        let s = self.fs.stats();
        if s.trim().is_empty() {
            return 0;
        }
        let v: Value = serde_json::from_str(&s).unwrap();
        v[key].as_u64().unwrap()
    }
}

/// faultfs control text for `key` over `ranges`, each given as its JSON array body.
fn control(parts: &[(&str, Vec<String>)]) -> String {
    let body: Vec<String> = parts
        .iter()
        .map(|(k, r)| format!("\"{k}\": [{}]", r.join(", ")))
        .collect();
    format!("{{{}}}", body.join(", "))
}

fn ranges2(r: &[(u64, u64)]) -> Vec<String> {
    r.iter().map(|(s, l)| format!("[{s}, {l}]")).collect()
}

fn ranges3(r: &[(u64, u64, f64)]) -> Vec<String> {
    r.iter()
        .map(|(s, l, x)| format!("[{s}, {l}, {x}]"))
        .collect()
}

// ---- running lifeboat ----

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
    secs: f64,
}

/// Runs lifeboat, killing it and failing the test after [`LIMIT`].
fn lifeboat(args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lifeboat {args:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code(),
        out: out.join().unwrap(),
        err: err.join().unwrap(),
        secs: started.elapsed().as_secs_f64(),
    }
}

/// `lifeboat args`, which must exit 0.
fn ok(args: &[&str]) -> Run {
    let r = lifeboat(args);
    assert_eq!(r.code, Some(0), "lifeboat {args:?}:\n{}\n{}", r.out, r.err);
    r
}

/// The `finished` event of a `--json` run, which must be ok; its summary.
fn finished(r: &Run) -> Value {
    let line = r
        .out
        .lines()
        .rev()
        .find(|l| l.contains("\"finished\""))
        .unwrap_or_else(|| panic!("no finished event in:\n{}\n{}", r.out, r.err));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["ok"], true, "{line}");
    v["summary"].clone()
}

/// The messages of a `--json` run's warning events.
fn warnings(r: &Run) -> Vec<String> {
    r.out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "warning")
        .map(|v| v["message"].as_str().unwrap().to_string())
        .collect()
}

/// `image DEV -o OUT --rescue --json EXTRA...`, which must succeed; its summary.
fn rescue(dev: &str, out: &Path, extra: &[&str]) -> (Value, Run) {
    let mut args = vec!["image", dev, "-o", p(out), "--rescue", "--json"];
    args.extend_from_slice(extra);
    let r = ok(&args);
    let s = finished(&r);
    assert!(s["rescue"].is_object(), "no rescue report: {s}");
    (s, r)
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

/// The image records exactly `want` as missing: in the job's summary, in `info --json` and
/// `info`'s MISSING table; and `verify` passes and mentions them.
fn assert_missing(img: &Path, summary: &Value, want: &[(u64, u64)]) {
    let total: u64 = want.iter().map(|r| r.1).sum();
    assert_eq!(pairs(&summary["missing"]), want, "image summary: {summary}");
    assert_eq!(summary["missing_bytes"], total, "image summary: {summary}");
    let info: Value = serde_json::from_str(&ok(&["info", p(img), "--json"]).out).unwrap();
    assert_eq!(pairs(&info["missing"]), want, "info --json");
    assert_eq!(info["missing_bytes"], total, "info --json");
    let text = ok(&["info", p(img)]).out;
    if want.is_empty() {
        assert!(!text.contains("MISSING"), "{text}");
    } else {
        assert!(text.contains("MISSING:"), "{text}");
        for (s, l) in want {
            let (s, e) = (s.to_string(), (s + l).to_string());
            assert!(
                text.lines().any(|line| {
                    let t: Vec<&str> = line.split_whitespace().collect();
                    t.len() >= 2 && t[0] == s && t[1] == e
                }),
                "info does not list {s}..{e}:\n{text}"
            );
        }
    }
    let v = ok(&["verify", p(img)]);
    let said = format!("{}{}", v.out, v.err);
    assert!(said.contains("intact"), "{said}");
    assert_eq!(
        said.contains("missing"),
        !want.is_empty(),
        "verify on missing bytes: {said}"
    );
}

/// Restores `img` onto a new file `name` in `dir` (text output); the file.
fn restore(img: &Path, dir: &Path, name: &str, missing: &[(u64, u64)]) -> PathBuf {
    let target = dir.join(name);
    let r = ok(&["restore", p(img), p(&target), "--yes"]);
    let said = format!("{}{}", r.out, r.err);
    assert_eq!(
        said.contains("restored WITH MISSING DATA"),
        !missing.is_empty(),
        "{said}"
    );
    for (s, l) in missing {
        assert!(said.contains(&format!("{s}..{}", s + l)), "{said}");
    }
    target
}

/// `restored` equals `source` byte for byte outside `missing`, and is zeros inside it.
fn assert_restored(source: &Path, restored: &Path, missing: &[(u64, u64)]) {
    let len = std::fs::metadata(source).unwrap().len();
    assert_eq!(std::fs::metadata(restored).unwrap().len(), len);
    let piece = 4 * MIB;
    let mut at = 0;
    while at < len {
        let n = piece.min(len - at);
        let mut want = read_at(source, at, n as usize);
        let got = read_at(restored, at, n as usize);
        for &(s, l) in missing {
            let (a, b) = (s.max(at), (s + l).min(at + n));
            if a < b {
                want[(a - at) as usize..(b - at) as usize].fill(0);
            }
        }
        if want != got {
            let i = want.iter().zip(&got).position(|(x, y)| x != y).unwrap();
            let j = want.iter().zip(&got).rposition(|(x, y)| x != y).unwrap();
            let zeros = got[i..=j].iter().all(|&b| b == 0);
            panic!(
                "{} differs from the source at bytes {}..{} ({} there; missing: {missing:?})",
                restored.display(),
                at + i as u64,
                at + j as u64 + 1,
                if zeros { "zeros" } else { "other bytes" }
            );
        }
        at += n;
    }
}

/// The injected ranges, sorted, as the image must list them.
fn sorted(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.sort_unstable();
    r
}

// ---- the tests ----

#[test]
fn bad_sectors_in_fat_ext4_and_ntfs_files_are_missing_exactly() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    // single sectors and a 4 KiB run in each filesystem's file data (the NTFS run and the
    // FAT one straddle a cluster boundary), two of them in the same 64 KiB block of ext4
    let bad = sorted(vec![
        src.range(Fs::Fat, 300 * 1024 + 1536, SECTOR),
        src.range(Fs::Fat, 1536 * 1024 + 512, 4096),
        src.range(Fs::Ext4, 100 * 1024 + 512, SECTOR),
        src.range(Fs::Ext4, 100 * 1024 + 8192, SECTOR),
        src.range(Fs::Ext4, 1024 * 1024, 4096),
        src.range(Fs::Ntfs, 200 * 1024 + 1024, SECTOR),
        src.range(Fs::Ntfs, 700 * 1024 + 2048, 4096),
    ]);
    let disk = Failing::new(&src, &control(&[("bad_read", ranges2(&bad))]));
    let img = src.dir.path().join("rescued.lbi");
    let (summary, _) = rescue(disk.dev(), &img, &[]);
    assert!(disk.stat("read_eio") > 0, "no fault was hit");
    assert!(
        summary["rescue"]["failed_reads"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert_missing(&img, &summary, &bad);
    // the damaged files: what the rescue names, and `info --damaged`, are what the
    // filesystems' own tools say the bad ranges hold
    let want = oracle(&src, &bad);
    assert_eq!(damaged_files(&summary["damaged"]), want, "{summary}");
    let info: Value =
        serde_json::from_str(&ok(&["info", p(&img), "--damaged", "--json"]).out).unwrap();
    assert_eq!(damaged_files(&info["damaged"]), want, "info --damaged");
    let text = ok(&["info", p(&img), "--damaged"]).out;
    assert!(
        text.contains("DAMAGED") && text.contains("file /big.bin"),
        "{text}"
    );
    let restored = restore(&img, src.dir.path(), "restored.img", &bad);
    assert_restored(&src.file, &restored, &bad);
    eprintln!("bad sectors: {:.1} s", t.elapsed().as_secs_f64());
}

/// Per partition, the files a damage report (the summary's or `info`'s `damaged`) names,
/// with the bytes of their data lost.
fn damaged_files(
    v: &Value,
) -> std::collections::BTreeMap<u64, std::collections::BTreeMap<String, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for region in v
        .as_array()
        .unwrap_or_else(|| panic!("no damage report: {v}"))
    {
        let Some(n) = region["partition"].as_u64() else {
            continue;
        };
        let files: &mut std::collections::BTreeMap<String, u64> = out.entry(n).or_default();
        for d in region["damage"].as_array().unwrap() {
            for h in d["hits"].as_array().unwrap() {
                assert_eq!(h["kind"], "file", "a bad range in a file's data hit {h}");
                *files
                    .entry(h["path"].as_str().unwrap().to_string())
                    .or_default() += h["bytes"].as_u64().unwrap();
            }
        }
    }
    out
}

/// What the filesystems' tools say the bad ranges hold: on ext4, `debugfs icheck` (block to
/// inode) and `ncheck` (inode to path); on NTFS, `ntfscluster -c` (cluster to file); on FAT,
/// which has no such tool, the file whose content the range was found by (big.bin).
fn oracle(
    src: &Source,
    bad: &[(u64, u64)],
) -> std::collections::BTreeMap<u64, std::collections::BTreeMap<String, u64>> {
    let mut out: std::collections::BTreeMap<u64, std::collections::BTreeMap<String, u64>> =
        Default::default();
    let ext = format!("{}?offset={EXT_START}", src.file.display());
    let bs = field(
        &sh(&format!("dumpe2fs -h '{ext}' 2>/dev/null")),
        "Block size:",
    );
    let ntfs = LoopDev::attach_with(
        &src.file,
        &format!("-r -o {NTFS_START} --sizelimit {PART_LEN}"),
    );
    let cs = field(
        &sh(&format!("ntfsinfo -m {}", ntfs.path.display())),
        "Cluster Size:",
    );
    for &(start, len) in bad {
        let (part, path) = if start >= NTFS_START {
            let cluster = (start - NTFS_START) / cs;
            let said = sh(&format!(
                "ntfscluster -c {cluster} {} 2>&1",
                ntfs.path.display()
            ));
            let line = said
                .lines()
                .find(|l| l.starts_with("Inode "))
                .unwrap_or_else(|| panic!("ntfscluster -c {cluster}: {said}"));
            // "Inode 64 /big.bin/$DATA"
            let path = line.split_whitespace().nth(2).unwrap();
            (3, path.trim_end_matches("/$DATA").to_string())
        } else if start >= EXT_START {
            let block = (start - EXT_START) / bs;
            let icheck = sh(&format!("debugfs -R 'icheck {block}' '{ext}' 2>/dev/null"));
            let inode = icheck
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("icheck {block}: {icheck}"))
                .to_string();
            let ncheck = sh(&format!("debugfs -R 'ncheck {inode}' '{ext}' 2>/dev/null"));
            let path = ncheck
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("ncheck {inode}: {ncheck}"))
                // (debugfs of e2fsprogs 1.47 prints paths under the root as "//name")
                .replacen("//", "/", 1);
            (2, path)
        } else {
            (1, "/big.bin".to_string())
        };
        *out.entry(part).or_default().entry(path).or_default() += len;
    }
    out
}

#[test]
fn unreadable_table_sectors_and_superblock_are_missing_and_the_partition_is_copied_whole() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    // LBA 1 (the primary GPT header) and LBA 2 (the entries of our partitions): one range;
    // and the ext4 superblock (bytes 1024..2048 of the partition)
    let bad = vec![(SECTOR, 2 * SECTOR), (EXT_START + 1024, 1024)];
    let disk = Failing::new(&src, &control(&[("bad_read", ranges2(&bad))]));
    let img = src.dir.path().join("rescued.lbi");
    let (summary, run) = rescue(disk.dev(), &img, &[]);
    let warned = warnings(&run);
    assert!(
        warned.iter().any(|w| w.contains("partition table area")),
        "{warned:?}"
    );
    assert_missing(&img, &summary, &bad);
    // the backup GPT gave the same partitions; the ext4 is copied whole, the others by map
    let info: Value = serde_json::from_str(&ok(&["info", p(&img), "--json"]).out).unwrap();
    let regions = info["meta"]["regions"].as_array().unwrap();
    let part = |n: u64| {
        regions
            .iter()
            .find(|r| r["partition"] == n)
            .unwrap_or_else(|| panic!("no partition {n} in {regions:?}"))
    };
    for (n, start, method) in [
        (1, FAT_START, "used-blocks"),
        (2, EXT_START, "all"),
        (3, NTFS_START, "used-blocks"),
    ] {
        let r = part(n);
        assert_eq!(r["start_bytes"], start, "{r}");
        assert_eq!(r["size_bytes"], PART_LEN, "{r}");
        assert_eq!(r["method"], method, "{r}");
    }
    assert!(
        part(2)["reason"]
            .as_str()
            .is_some_and(|s| s.contains("every block is copied")),
        "{}",
        part(2)
    );
    // what they hit: the boot area, and the ext4's superblock
    let hits = summary["damaged"].to_string();
    assert!(
        hits.contains("the boot area") && hits.contains("superblock"),
        "{hits}"
    );
    let restored = restore(&img, src.dir.path(), "restored.img", &bad);
    assert_restored(&src.file, &restored, &bad);
    eprintln!("table and superblock: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn slow_sectors_within_the_timeout_lose_nothing() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    let slow: Vec<(u64, u64, f64)> = [
        src.range(Fs::Fat, 64 * 1024, SECTOR),
        src.range(Fs::Ext4, 512 * 1024, SECTOR),
        src.range(Fs::Ntfs, 1024 * 1024 + 512, SECTOR),
    ]
    .iter()
    .map(|&(s, l)| (s, l, 0.3))
    .collect();
    let disk = Failing::new(&src, &control(&[("slow_read", ranges3(&slow))]));
    let img = src.dir.path().join("rescued.lbi");
    let (summary, _) = rescue(disk.dev(), &img, &["--read-timeout", "5"]);
    assert!(disk.stat("slow") >= 3, "the slow sectors were not read");
    let rescue = &summary["rescue"];
    assert_eq!(rescue["failed_reads"], 0, "{summary}");
    assert_eq!(rescue["hung_reads"], 0, "{summary}");
    assert_eq!(rescue["stopped"], Value::Null, "{summary}");
    assert_missing(&img, &summary, &[]);
    let restored = restore(&img, src.dir.path(), "restored.img", &[]);
    assert_restored(&src.file, &restored, &[]);
    eprintln!("slow sectors: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn a_read_that_hangs_past_the_timeout_loses_that_sector_only() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    let hang = src.range(Fs::Ext4, 512 * 1024 + 1024, SECTOR);
    let disk = Failing::new(
        &src,
        &control(&[("slow_read", ranges3(&[(hang.0, hang.1, 6.0)]))]),
    );
    let img = src.dir.path().join("rescued.lbi");
    let (summary, run) = rescue(disk.dev(), &img, &["--read-timeout", "1"]);
    eprintln!("image with a hung read: {:.1} s", run.secs);
    assert!(disk.stat("slow") >= 1, "the hanging sector was not read");
    assert!(
        summary["rescue"]["hung_reads"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert_missing(&img, &summary, &[hang]);
    let restored = restore(&img, src.dir.path(), "restored.img", &[hang]);
    assert_restored(&src.file, &restored, &[hang]);
    eprintln!("hung read: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn errors_that_go_away_are_recovered_by_a_later_pass() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    // the first read of one fails, the first two of the other
    let once = src.range(Fs::Fat, 800 * 1024, SECTOR);
    let twice = src.range(Fs::Ntfs, 300 * 1024 + 1024, 4096);
    let flaky = vec![
        format!("[{}, {}, 1]", once.0, once.1),
        format!("[{}, {}, 2]", twice.0, twice.1),
    ];
    let disk = Failing::new(&src, &control(&[("flaky_read", flaky)]));
    let img = src.dir.path().join("rescued.lbi");
    let (summary, _) = rescue(disk.dev(), &img, &["--retries", "2"]);
    // both ranges failed as often as asked, and a pass after the copy read them (the loop
    // device retries the rest of a read that came back short, so one failed read of
    // lifeboat's may use up two of faultfs's failures)
    assert_eq!(disk.stat("read_eio"), 3, "{}", disk.fs.stats());
    let report = &summary["rescue"];
    assert!(report["failed_reads"].as_u64().unwrap() >= 1, "{summary}");
    assert!(report["passes"].as_array().unwrap().len() > 1, "{summary}");
    assert_missing(&img, &summary, &[]);
    let restored = restore(&img, src.dir.path(), "restored.img", &[]);
    assert_restored(&src.file, &restored, &[]);
    eprintln!("flaky sectors: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn a_child_of_a_rescued_image_fills_in_its_missing_sectors() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    let bad = sorted(vec![
        src.range(Fs::Ext4, 1500 * 1024, SECTOR),
        src.range(Fs::Ntfs, 100 * 1024, 4096),
    ]);
    let disk = Failing::new(&src, &control(&[("bad_read", ranges2(&bad))]));
    let full = src.dir.path().join("full.lbi");
    let (summary, _) = rescue(disk.dev(), &full, &[]);
    assert_missing(&full, &summary, &bad);
    // the disk reads again (a cooled-down drive, a reseated cable)
    disk.fs.set("{}");
    for (name, rescue_flag) in [("child-rescue.lbi", true), ("child-plain.lbi", false)] {
        let child = src.dir.path().join(name);
        let mut args = vec![
            "image",
            disk.dev(),
            "-o",
            p(&child),
            "--parent",
            p(&full),
            "--json",
        ];
        if rescue_flag {
            args.push("--rescue");
        }
        let summary = finished(&ok(&args));
        assert_ne!(summary["kind"], "full", "{name}: {summary}");
        assert_missing(&child, &summary, &[]);
        let restored = restore(&child, src.dir.path(), &format!("{name}.img"), &[]);
        assert_restored(&src.file, &restored, &[]);
    }
    eprintln!("chain: {:.1} s", t.elapsed().as_secs_f64());
}

#[test]
fn restore_json_names_the_missing_ranges() {
    if !prerequisites() {
        return;
    }
    let t = Instant::now();
    let src = build();
    let bad = sorted(vec![
        src.range(Fs::Fat, 1024 * 1024, SECTOR),
        src.range(Fs::Ntfs, 1200 * 1024, 4096),
    ]);
    let disk = Failing::new(&src, &control(&[("bad_read", ranges2(&bad))]));
    let img = src.dir.path().join("rescued.lbi");
    let (summary, _) = rescue(disk.dev(), &img, &[]);
    assert_missing(&img, &summary, &bad);
    let target = src.dir.path().join("restored.img");
    let r = ok(&["restore", p(&img), p(&target), "--yes", "--json"]);
    let summary = finished(&r);
    assert_eq!(pairs(&summary["missing"]), bad, "{summary}");
    assert_eq!(
        summary["missing_bytes"],
        bad.iter().map(|r| r.1).sum::<u64>(),
        "{summary}"
    );
    let warned = warnings(&r);
    for (s, l) in &bad {
        assert!(
            warned
                .iter()
                .any(|w| w.contains(&format!("{s}..{}", s + l))),
            "no warning names {s}..{}: {warned:?}",
            s + l
        );
    }
    assert_restored(&src.file, &target, &bad);
    // the text face says it too
    let again = restore(&img, src.dir.path(), "restored-text.img", &bad);
    assert_restored(&src.file, &again, &bad);
    eprintln!("restore --json: {:.1} s", t.elapsed().as_secs_f64());
}
