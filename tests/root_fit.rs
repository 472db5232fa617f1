//! Tier 2 (root): `restore --fit` and `clone --fit` (issue 17) onto disks smaller than the
//! source's layout, between real loop devices and disk-image files. GPT (FAT32 ESP, ext4,
//! NTFS) and MBR (FAT32 and ext4 primaries, an extended partition holding a logical ext4 and
//! a logical NTFS) full of real files, fitted onto targets of 40 to 60% of their size; the
//! smallest target the plan names (taken exactly, and one sector less refused); a larger
//! target (the last partition grows); XFS, which moves whole but never shrinks; and
//! `--scratch` on the target itself.
//!
//! Each fitted target is checked against the `--json` plan (where every partition went and
//! at what size, read back with `sfdisk --json` and from the kernel's partition nodes),
//! against the source (partition table IDs, types and names, filesystem IDs, every file with
//! its metadata), and with the filesystems' own checkers (e2fsck, ntfsfix, fsck.fat,
//! xfs_repair). The source disk and the image are hashed before and after: `--fit` shrinks on
//! a copy-on-write overlay and must never write either. A run leaves no mount, loop device or
//! folder of its own behind, and nothing in `--scratch`.
//!
//! Faults during the shrink (ENOSPC in `--scratch`, a read error on the source, SIGKILL)
//! each leave the target, which held a valid table, with none, and name their cause; a
//! killed run's FUSE folder is removed by the next fit.
//!
//! The host kernel has no partition-table parser: source partition nodes come from
//! `partx -a`, target nodes from lifeboat itself (BLKRRPART, then BLKPG), or from `partx -a`
//! on a loop device put over a target file afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{
    all_contents, build as build_in, contents, ext4_fill, fs_bytes, no_table_left, p, part, sha,
    stderr, stdout, Disk, Extras, Fs, Label, Part, MIB,
};
use common::{dev_size, field, require_root, require_tool, sh, FaultFs, LoopDev};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where a moved partition may start: a multiple of this.
const ALIGN: u64 = MIB;

// ---- the plan's `fit` object: every name it uses is here ----

/// The key of the fit object in a restore or clone plan (found at any depth).
const FIT_KEY: &str = "fit";

/// What the plan does with a partition (`action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Move,
    Shrink,
    ShrinkMove,
}

/// One partition of the fit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FitPart {
    number: u32,
    fs: Option<String>,
    old_start: u64,
    old_size: u64,
    new_start: u64,
    new_size: u64,
    min: u64,
    used: Option<u64>,
    action: Action,
}

/// The plan's fit: where each partition goes, the smallest target the layout fits on (bytes),
/// and the scratch space the shrinks need (bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fit {
    parts: Vec<FitPart>,
    smallest_target: u64,
    scratch_bytes: u64,
}

impl Fit {
    /// Reads the fit object; panics naming the field that is missing or of the wrong type.
    fn parse(v: &Value) -> Fit {
        let num = |o: &Value, k: &str| {
            o[k].as_u64()
                .unwrap_or_else(|| panic!("fit: `{k}` is not a number in {o}"))
        };
        let parts = v["parts"]
            .as_array()
            .unwrap_or_else(|| panic!("fit: no `parts` array in {v}"))
            .iter()
            .map(|x| FitPart {
                number: u32::try_from(num(x, "number")).unwrap(),
                fs: x["fs"].as_str().map(str::to_lowercase),
                old_start: num(x, "old_start"),
                old_size: num(x, "old_size"),
                new_start: num(x, "new_start"),
                new_size: num(x, "new_size"),
                min: num(x, "min"),
                used: x["used"].as_u64(),
                action: match x["action"].as_str() {
                    Some("keep") => Action::Keep,
                    Some("move") => Action::Move,
                    Some("shrink") => Action::Shrink,
                    Some("shrink_move") => Action::ShrinkMove,
                    other => panic!("fit: unknown action {other:?} in {x}"),
                },
            })
            .collect();
        Fit {
            parts,
            smallest_target: num(v, "smallest_target"),
            scratch_bytes: num(v, "scratch_bytes"),
        }
    }

    fn part(&self, n: u32) -> &FitPart {
        self.parts
            .iter()
            .find(|x| x.number == n)
            .unwrap_or_else(|| panic!("no partition {n} in the fit: {self:?}"))
    }
}

/// The message of a target below the smallest possible.
const TOO_SMALL: &str = "needs at least";
/// What the refusal of a `--scratch` on the target says (besides naming the target).
const SCRATCH: &str = "--scratch";
/// What the refusal of an XFS that would have to shrink says (one of these, besides naming
/// the partition and `xfs`).
const XFS_CANNOT_SHRINK: [&str; 2] = ["cannot shrink", "cannot be shrunk"];

/// The first non-null value of `key` in `v`, at any depth.
fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => m
            .get(key)
            .filter(|x| !x.is_null())
            .or_else(|| m.values().find_map(|x| find_key(x, key))),
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

fn find_fit(v: &Value) -> Option<Fit> {
    find_key(v, FIT_KEY).map(Fit::parse)
}

// ---- running lifeboat ----

fn lifeboat(args: &[&str]) -> Output {
    lifeboat_pid(args).0
}

/// Runs lifeboat; its output and its process ID.
fn lifeboat_pid(args: &[&str]) -> (Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running lifeboat");
    let pid = child.id();
    (child.wait_with_output().unwrap(), pid)
}

fn assert_ok(what: &str, args: &[&str], o: &Output) {
    assert!(
        o.status.success(),
        "{what}: lifeboat {args:?} failed ({:?}):\n{}\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Runs lifeboat and panics with its output unless it succeeds.
fn ok(what: &str, args: &[&str]) -> Output {
    let o = lifeboat(args);
    assert_ok(what, args, &o);
    o
}

/// Every JSON value on stdout, in order: a pretty-printed plan and NDJSON events alike.
fn json_values(what: &str, out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{what}: stdout is not JSON values ({e}): {out}"))
}

/// The last value must be the `finished` event with `ok: true`.
fn assert_finished_ok(what: &str, values: &[Value], out: &str) {
    let last = values.last().unwrap_or(&Value::Null);
    assert_eq!(last["event"], "finished", "{what}: {out}");
    assert_eq!(last["ok"], true, "{what}: {out}");
}

/// `lifeboat ARGS --fit` twice: with `--dry-run --json` first (its plan must hold a fit),
/// then with `--json --yes`, which must finish ok and leave nothing of its own behind.
/// Returns the dry run's fit; if the run printed its plan too, that fit must be the same.
fn fit_run(what: &str, args: &[&str]) -> Fit {
    let mut dry = args.to_vec();
    dry.extend(["--fit", "--dry-run", "--json"]);
    let o = ok(&format!("{what} (dry run)"), &dry);
    let out = stdout(&o);
    let fit = json_values(what, &out)
        .iter()
        .find_map(find_fit)
        .unwrap_or_else(|| panic!("{what}: no `{FIT_KEY}` in the dry run's plan: {out}"));
    let mut run = args.to_vec();
    run.extend(["--fit", "--json", "--yes"]);
    let (o, pid) = lifeboat_pid(&run);
    assert_ok(what, &run, &o);
    let out = stdout(&o);
    let values = json_values(what, &out);
    assert_finished_ok(what, &values, &out);
    if let Some(printed) = values.iter().find_map(find_fit) {
        assert_eq!(printed, fit, "{what}: the run's plan is not the dry run's");
    }
    no_leftovers(pid, what);
    fit
}

/// Nothing named after lifeboat's process `pid` (its private folders are `TAG-PID-N`) is
/// left: no mount, no loop device over a file in such a folder, no such folder in
/// /run/lifeboat or the temporary folder.
fn no_leftovers(pid: u32, what: &str) {
    let tag = format!("-{pid}-");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mounts = common::mounts_holding(&tag);
        let loops = common::loops_holding(&tag);
        let dirs: Vec<PathBuf> = [PathBuf::from("/run/lifeboat"), std::env::temp_dir()]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|x| x.file_name().unwrap().to_string_lossy().contains(&tag))
            .collect();
        if mounts.is_empty() && loops.is_empty() && dirs.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: lifeboat (pid {pid}) left behind mounts {mounts:?}, loop devices {loops:?}, folders {dirs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs lifeboat, which must refuse (exit 1) with every one of `want` in its message, and
/// leave every file or device in `untouched` as it was.
fn refused(what: &str, args: &[&str], want: &[&str], untouched: &[&Path]) -> String {
    let before: Vec<String> = untouched.iter().map(|x| sha(x)).collect();
    let (o, pid) = lifeboat_pid(args);
    let e = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{what}: lifeboat {args:?} did not refuse: {e}\n{}",
        stdout(&o)
    );
    for w in want {
        assert!(e.contains(w), "{what}: no `{w}` in: {e}");
    }
    for (x, b) in untouched.iter().zip(&before) {
        assert_eq!(&sha(x), b, "{what}: {} was written", x.display());
    }
    no_leftovers(pid, what);
    e
}

// ---- the tools and the disks (built by tests/common/disks.rs) ----

/// Root and every tool; skips without root unless CI demands it (then it fails).
fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    for t in [
        "sfdisk",
        "sgdisk",
        "partx",
        "losetup",
        "blockdev",
        "blkid",
        "sha256sum",
        "mkfs.ext4",
        "dumpe2fs",
        "e2fsck",
        "resize2fs",
        "mkfs.vfat",
        "fsck.fat",
        "mcopy",
        "mdel",
        "mdir",
        "mkntfs",
        "ntfsfix",
        "ntfsresize",
        "mount.ntfs-3g",
        "mkfs.xfs",
        "xfs_repair",
        "xfs_db",
        "setfattr",
        "getfattr",
    ] {
        require_tool(t);
    }
    true
}

/// A new folder under /var/tmp (disk-backed: the disks are sparse, but /tmp may be RAM).
fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lifeboat-fit-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// What the plan's `fs` must contain (lowercase).
fn plan_name(fs: Fs) -> &'static str {
    match fs {
        Fs::Fat | Fs::FatData => "fat",
        Fs::Ext4 => "ext",
        Fs::Ntfs => "ntfs",
        Fs::Xfs => "xfs",
    }
}

/// A loop disk (512-byte sectors) with filesystems full of files, GPT partitions named, and
/// [`common::disks::fill_spread`]'s files on ext4, NTFS and XFS, in its own folder under
/// /var/tmp.
fn build(label: Label, disk_mib: u64, parts: &[Part]) -> Disk {
    let extras = Extras {
        gpt_names: true,
        spread: true,
    };
    build_in(workdir(), label, 512, disk_mib, parts, extras)
}

/// A target disk-image file of `size` bytes with junk in its first MiB, its last MiB and a
/// MiB in the middle (old data must not matter, and a refusal must leave it as it was).
fn target_file(dir: &Path, name: &str, size: u64) -> PathBuf {
    common::disks::target_file(dir, name, size, &[0, size / 2, size - MIB])
}

/// A target loop disk over such a file.
fn target(dir: &Path, name: &str, size: u64) -> (LoopDev, PathBuf) {
    common::disks::target(dir, name, size, 512, &[0, size / 2, size - MIB])
}

/// A loop device, with partition nodes, over a target file that lifeboat wrote.
fn attach_written(file: &Path) -> LoopDev {
    let t = LoopDev::attach(file);
    t.add_partitions();
    t
}

// ---- reading filesystems ----

/// A [`common::disks::snapshot`] without the directories' mtimes. resize2fs sets the mtime (seconds) of
/// every directory whose entries it rewrites for an inode it moved out of a removed block
/// group (e2fsprogs resize/resize2fs.c, `check_and_change_inodes`), so a shrunk ext4 keeps
/// every file and its metadata, but not those.
fn without_dir_mtimes(snapshot: &str) -> String {
    snapshot
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.rsplitn(6, ' ').collect();
            // [mtime, mode, links, size, type, path]
            if f.len() == 6 && f[4] == "d" && f[0].parse::<f64>().is_ok() {
                format!("{} d {} {} {}", f[5], f[3], f[2], f[1])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The filesystem's type, UUID (or serial) and label, as blkid reads them from the device.
fn fs_ids(node: &Path) -> String {
    sh(&format!(
        "blkid -p -o export -s TYPE -s UUID -s LABEL {}",
        node.display()
    ))
    .lines()
    .filter(|l| !l.starts_with("DEVNAME="))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Where a grown last partition ends on a target of `size` bytes (512-byte sectors).
fn grown_end(label: Label, size: u64) -> u64 {
    common::disks::grown_end(label, 512, size)
}

// ---- partition tables ----

/// A partition table as `sfdisk --json` reads it.
#[derive(Debug)]
struct Table {
    label: String,
    id: String,
    /// By number: the entry without its node name.
    parts: BTreeMap<u32, Value>,
}

impl Table {
    fn read(dev: &Path) -> Table {
        let v: Value =
            serde_json::from_str(&sh(&format!("sfdisk --json {}", dev.display()))).unwrap();
        let t = &v["partitiontable"];
        assert_eq!(t["sectorsize"], 512, "{t}");
        let device = t["device"].as_str().unwrap();
        let parts = t["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let node = x["node"].as_str().unwrap();
                let n = node
                    .strip_prefix(device)
                    .unwrap()
                    .trim_start_matches('p')
                    .parse()
                    .unwrap();
                let mut e = x.clone();
                e.as_object_mut().unwrap().remove("node");
                (n, e)
            })
            .collect();
        Table {
            label: t["label"].as_str().unwrap().to_string(),
            id: t["id"].as_str().unwrap().to_string(),
            parts,
        }
    }

    /// (start, size) of partition `n` in bytes.
    fn extent(&self, n: u32) -> (u64, u64) {
        let e = &self.parts[&n];
        (
            e["start"].as_u64().unwrap() * 512,
            e["size"].as_u64().unwrap() * 512,
        )
    }

    /// The entry of partition `n` without its place: type, GUID, name, attributes, boot flag.
    fn identity(&self, n: u32) -> Value {
        let mut e = self.parts[&n].clone();
        let o = e.as_object_mut().unwrap();
        o.remove("start");
        o.remove("size");
        e
    }

    /// The number of the MBR extended partition, if any.
    fn extended(&self) -> Option<u32> {
        self.parts
            .iter()
            .find(|(_, e)| matches!(e["type"].as_str(), Some("5" | "f" | "85")))
            .map(|(n, _)| *n)
    }
}

/// What a fitted target is compared with: the source's table, and each partition's
/// filesystem size and IDs and files.
struct Facts {
    table: Table,
    fs_bytes: BTreeMap<u32, u64>,
    fs_ids: BTreeMap<u32, String>,
    files: Vec<String>,
}

/// Reads a freshly built source (before its hash is taken: mounting for the files is
/// read-only, but the hash is the judge).
fn facts(src: &Disk) -> Facts {
    let node = |x: &Part| src.lo.part(x.n);
    Facts {
        table: Table::read(&src.lo.path),
        fs_bytes: src
            .parts
            .iter()
            .map(|x| (x.n, fs_bytes(&node(x), x.fs)))
            .collect(),
        fs_ids: src.parts.iter().map(|x| (x.n, fs_ids(&node(x)))).collect(),
        files: all_contents(&src.lo, &src.parts, src.dir.path(), "src"),
    }
}

/// One past the last byte a partition may use on a target of `size` bytes.
fn usable_end(label: Label, size: u64) -> u64 {
    grown_end(label, size)
}

/// The plan itself is sound for `src` onto a smaller target of `size` bytes: it has every
/// partition, as it is on the source, each between its minimum and its old size, in disk
/// order inside the usable area without overlaps, moved only left and to aligned starts,
/// XFS never shrunk, and its action says what changed.
fn check_plan(src: &Disk, fit: &Fit, size: u64, what: &str) {
    let mut got: Vec<u32> = fit.parts.iter().map(|x| x.number).collect();
    let mut want: Vec<u32> = src.parts.iter().map(|x| x.n).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "{what}: the fit's partitions: {fit:?}");
    assert!(
        fit.smallest_target <= size,
        "{what}: smallest target {} above the target's {size}: {fit:?}",
        fit.smallest_target
    );
    let mins: u64 = fit.parts.iter().map(|x| x.min).sum();
    assert!(
        fit.smallest_target >= mins,
        "{what}: smallest target {} below the sum of the minimums {mins}",
        fit.smallest_target
    );
    let mut by_new: Vec<&FitPart> = fit.parts.iter().collect();
    by_new.sort_by_key(|x| x.new_start);
    let mut by_old = by_new.clone();
    by_old.sort_by_key(|x| x.old_start);
    assert_eq!(by_new, by_old, "{what}: the disk order changed");
    let end = usable_end(src.label, size);
    let mut prev_end = 34 * 512;
    for x in by_new {
        let n = x.number;
        let s = src.parts.iter().find(|y| y.n == n).unwrap();
        let w = format!("{what}: partition {n} {x:?}");
        assert_eq!(
            (x.old_start, x.old_size),
            (s.start * MIB, s.size * MIB),
            "{w}"
        );
        let fs = x.fs.as_deref().unwrap_or("");
        assert!(fs.contains(plan_name(s.fs)), "{w}: fs");
        assert!(x.min <= x.new_size && x.new_size <= x.old_size, "{w}: size");
        if let Some(u) = x.used {
            assert!(u <= x.new_size, "{w}: used");
        }
        // a logical partition keeps room for its EBR
        let room = if s.n >= 5 { 512 } else { 0 };
        assert!(
            x.new_start >= prev_end + room,
            "{w}: overlaps the one before"
        );
        assert!(x.new_start + x.new_size <= end, "{w}: ends past {end}");
        let moved = x.new_start != x.old_start;
        let shrunk = x.new_size != x.old_size;
        if moved {
            assert!(x.new_start < x.old_start, "{w}: moved right");
            assert_eq!(x.new_start % ALIGN, 0, "{w}: unaligned start");
        }
        let action = match (moved, shrunk) {
            (false, false) => Action::Keep,
            (true, false) => Action::Move,
            (false, true) => Action::Shrink,
            (true, true) => Action::ShrinkMove,
        };
        assert_eq!(x.action, action, "{w}: action");
        if s.fs == Fs::Xfs {
            assert!(!shrunk, "{w}: an XFS shrunk");
        }
        prev_end = x.new_start + x.new_size;
    }
}

/// Everything about a fitted target `t` (a loop device with partition nodes) of `size`
/// bytes: the table is the source's with the planned starts and sizes (sfdisk and the
/// kernel's nodes agree), the IDs are kept, every filesystem is clean and holds the source's
/// files, and a shrunk one fills its new partition while the others keep their size.
fn check_target(src: &Disk, f: &Facts, fit: &Fit, t: &LoopDev, what: &str) {
    let got = Table::read(&t.path);
    assert_eq!(got.label, f.table.label, "{what}: table kind");
    assert_eq!(got.id, f.table.id, "{what}: disk GUID or MBR signature");
    assert_eq!(
        got.parts.keys().collect::<Vec<_>>(),
        f.table.parts.keys().collect::<Vec<_>>(),
        "{what}: partition numbers: {got:?}"
    );
    for n in f.table.parts.keys() {
        assert_eq!(
            got.identity(*n),
            f.table.identity(*n),
            "{what}: partition {n}'s type, GUID, name or flags"
        );
    }
    match src.label {
        Label::Gpt => {
            let v = sh(&format!("sgdisk -v {} 2>&1", t.path.display()));
            assert!(v.contains("No problems found"), "{what}: {v}");
        }
        Label::Mbr => {
            let v = sh(&format!("sfdisk -V {} 2>&1", t.path.display()));
            assert!(v.contains("No errors detected"), "{what}: {v}");
        }
    }
    // the extended partition is the source's, and holds every logical partition
    assert_eq!(got.extended(), f.table.extended(), "{what}: extended");
    if let Some(e) = got.extended() {
        let (es, el) = got.extent(e);
        for x in src.parts.iter().filter(|x| x.n >= 5) {
            let (s, l) = got.extent(x.n);
            assert!(
                es < s && s + l <= es + el,
                "{what}: logical partition {} ({s}+{l}) outside extended {e} ({es}+{el})",
                x.n
            );
        }
    }
    for (i, x) in src.parts.iter().enumerate() {
        let pl = fit.part(x.n);
        let w = format!("{what}: partition {} ({:?}), planned {pl:?}", x.n, x.fs);
        assert_eq!(got.extent(x.n), (pl.new_start, pl.new_size), "{w}: table");
        let node = t.part(x.n);
        assert!(node.exists(), "{w}: no node {}", node.display());
        assert_eq!(dev_size(&node), pl.new_size, "{w}: the kernel's node");
        assert_eq!(fs_ids(&node), f.fs_ids[&x.n], "{w}: filesystem IDs");
        let fs = fs_bytes(&node, x.fs);
        if pl.new_size == pl.old_size {
            assert_eq!(fs, f.fs_bytes[&x.n], "{w}: filesystem size changed");
        } else {
            assert!(fs <= pl.new_size, "{w}: a {fs}-byte filesystem");
            if matches!(x.fs, Fs::Ext4 | Fs::Ntfs) {
                assert!(
                    pl.new_size - fs < MIB,
                    "{w}: a {fs}-byte filesystem does not fill its partition"
                );
            }
        }
        let slug: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let got = contents(&node, x.fs, src.dir.path(), &format!("{slug}-p{}", x.n));
        if x.fs == Fs::Ext4 && pl.new_size < pl.old_size {
            assert_eq!(
                without_dir_mtimes(&got),
                without_dir_mtimes(&f.files[i]),
                "{w}: files differ"
            );
        } else {
            assert_eq!(got, f.files[i], "{w}: files differ");
        }
    }
}

fn assert_empty_dir(dir: &Path, what: &str) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "{what}: left in the scratch folder: {left:?}"
    );
}

/// A source disk for the fit tests with its [`Facts`], its image (`disk.lbi` in its folder),
/// and the hashes of both, taken after the image: a fit must never write either.
struct Imaged {
    src: Disk,
    f: Facts,
    img: PathBuf,
    src_sha: String,
    img_sha: String,
}

impl Imaged {
    fn new(label: Label, disk_mib: u64, parts: &[Part]) -> Imaged {
        let src = build(label, disk_mib, parts);
        let f = facts(&src);
        let img = src.dir.path().join("disk.lbi");
        ok("image", &["image", p(&src.lo.path), "-o", p(&img)]);
        let (src_sha, img_sha) = (sha(&src.lo.path), sha(&img));
        Imaged {
            src,
            f,
            img,
            src_sha,
            img_sha,
        }
    }

    /// `restore --fit` of the image onto a new target file `NAME.img` of `size` bytes, with
    /// an empty `--scratch` folder and `extra` arguments: the plan is sound (and passes
    /// `check_fit`), the scratch folder is left empty, and the target is checked. Returns the
    /// target file.
    fn restore_fit(
        &self,
        what: &str,
        name: &str,
        size: u64,
        extra: &[&str],
        check_fit: impl FnOnce(&Fit),
    ) -> PathBuf {
        let w = self.src.dir.path();
        let file = target_file(w, name, size);
        let scratch = w.join("lbscratch");
        std::fs::create_dir(&scratch).unwrap();
        let mut args = vec!["restore", p(&self.img), p(&file), "--scratch", p(&scratch)];
        args.extend(extra);
        let fit = fit_run(what, &args);
        check_plan(&self.src, &fit, size, what);
        check_fit(&fit);
        assert_empty_dir(&scratch, what);
        let t = attach_written(&file);
        check_target(&self.src, &self.f, &fit, &t, what);
        file
    }

    /// `clone --fit` of the source onto a new target loop disk `NAME` of `size` bytes: the
    /// plan is sound (and passes `check_fit`), and the target is checked.
    fn clone_fit(&self, what: &str, name: &str, size: u64, check_fit: impl FnOnce(&Fit)) {
        let (t, _file) = target(self.src.dir.path(), name, size);
        let fit = fit_run(what, &["clone", p(&self.src.lo.path), p(&t.path)]);
        check_plan(&self.src, &fit, size, what);
        check_fit(&fit);
        check_target(&self.src, &self.f, &fit, &t, what);
    }

    /// Neither the source nor the image was written.
    fn assert_unwritten(&self) {
        assert_eq!(
            sha(&self.src.lo.path),
            self.src_sha,
            "the source was written"
        );
        assert_eq!(sha(&self.img), self.img_sha, "the image was written");
    }
}

/// The NTFS (partition `n`) moved left.
fn ntfs_moved(what: &str, fit: &Fit, n: u32, kind: &str) {
    assert!(
        fit.part(n).new_start < fit.part(n).old_start,
        "{what}: the {kind}NTFS did not move: {fit:?}"
    );
}

// ---- the tests ----

/// GPT: a FAT32 ESP with little in it, a 250 MiB ext4 and a 250 MiB NTFS, each with
/// ~15 MiB of files, on a 600 MiB disk.
const GPT_FIT: [Part; 3] = [
    part(1, Fs::Fat, 1, 64),
    part(2, Fs::Ext4, 65, 250),
    part(3, Fs::Ntfs, 315, 250),
];

/// GPT: the image restored with `--fit` onto a file of half the disk's size (with a
/// `--scratch` folder, left empty), and the disk cloned with `--fit` onto a loop disk of two
/// fifths of it. The NTFS must move, something must shrink, and the source and the image stay
/// as they were. (lifeboat copies an ESP whole, so this FAT keeps its size; the FAT shrinks
/// are in the MBR and smallest-target tests.)
#[test]
fn gpt_restore_fit_onto_half_and_clone_fit_onto_two_fifths() {
    if !prerequisites() {
        return;
    }
    let d = Imaged::new(Label::Gpt, 600, &GPT_FIT);

    let size = 300 * MIB;
    let what = "restore 50%";
    let file = d.restore_fit(what, "restored", size, &[], |fit| {
        ntfs_moved(what, fit, 3, "");
        assert!(
            fit.parts.iter().any(|x| x.new_size < x.old_size),
            "{what}: nothing shrank: {fit:?}"
        );
    });
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size, "{what}");

    let what = "clone 40%";
    d.clone_fit(what, "cloned", 240 * MIB, |fit| {
        ntfs_moved(what, fit, 3, "")
    });

    d.assert_unwritten();
}

/// MBR: FAT32 and ext4 primaries, then an extended partition (3) holding a logical ext4 (5)
/// and a logical NTFS (6), on a 640 MiB disk.
const MBR_FIT: [Part; 4] = [
    part(1, Fs::Fat, 1, 64),
    part(2, Fs::Ext4, 65, 200),
    part(5, Fs::Ext4, 266, 200),
    part(6, Fs::Ntfs, 467, 170),
];

/// MBR with logical partitions: the image restored with `--fit` onto a file of 55% (with a
/// 4 MiB `--overlay-memory`, so the overlay spills into `--scratch`), and the disk cloned with
/// `--fit` onto a loop disk of 60%. The logical partitions stay logical, inside the source's
/// extended partition number, and the MBR signature is kept.
#[test]
fn mbr_with_logical_partitions_restore_and_clone_fit() {
    if !prerequisites() {
        return;
    }
    let d = Imaged::new(Label::Mbr, 640, &MBR_FIT);
    assert_eq!(
        d.f.table.extended(),
        Some(3),
        "the fixture: {:?}",
        d.f.table
    );

    let what = "mbr restore 55%";
    let extra = ["--overlay-memory", "4M"];
    d.restore_fit(what, "restored", 352 * MIB, &extra, |fit| {
        ntfs_moved(what, fit, 6, "logical ");
    });

    d.clone_fit("mbr clone 60%", "cloned", 384 * MIB, |_| {});

    d.assert_unwritten();
}

/// A small GPT disk: an 80 MiB FAT32 data partition with little in it (it can only shrink in
/// place), then a 120 MiB ext4.
const SMALL: [Part; 2] = [part(1, Fs::FatData, 1, 80), part(2, Fs::Ext4, 81, 120)];
const SMALL_MIB: u64 = 208;

/// The plan's smallest target is honest: one sector less is refused by restore and clone
/// ("needs at least", nothing written), and exactly that size works, every partition at its
/// minimum (the FAT shrunk in place, the ext4 shrunk and moved).
#[test]
fn fit_takes_exactly_the_smallest_target_and_refuses_one_sector_less() {
    if !prerequisites() {
        return;
    }
    let d = Imaged::new(Label::Gpt, SMALL_MIB, &SMALL);
    let (src, f, img) = (&d.src, &d.f, &d.img);
    let w = src.dir.path();

    // the smallest target, from the plan for a target only a little smaller than the disk
    let probe = target_file(w, "probe", (SMALL_MIB - 8) * MIB);
    let o = ok(
        "probe",
        &[
            "clone",
            p(&src.lo.path),
            p(&probe),
            "--fit",
            "--dry-run",
            "--json",
        ],
    );
    let fit = json_values("probe", &stdout(&o))
        .iter()
        .find_map(find_fit)
        .unwrap_or_else(|| panic!("probe: no fit in {}", stdout(&o)));
    let smallest = fit.smallest_target;
    assert_eq!(smallest % 512, 0, "{fit:?}");
    assert!(
        smallest < 160 * MIB,
        "the layout should fit in far less than 160 MiB: {fit:?}"
    );

    // one sector less: refused, by restore and by clone, with nothing written
    let short = smallest - 512;
    let need = smallest.to_string();
    let file = target_file(w, "short", short);
    refused(
        "restore one sector short",
        &["restore", p(img), p(&file), "--fit", "--yes"],
        &[TOO_SMALL, &need],
        &[&file, img, &src.lo.path],
    );
    let (t, _tf) = target(w, "short-disk", short);
    refused(
        "clone one sector short",
        &["clone", p(&src.lo.path), p(&t.path), "--fit", "--yes"],
        &[TOO_SMALL, &need],
        &[&t.path, &src.lo.path],
    );
    drop(t);

    // exactly the smallest: every partition at its minimum (give or take an alignment)
    let file = target_file(w, "smallest", smallest);
    let what = "restore smallest";
    let fit = fit_run(what, &["restore", p(img), p(&file)]);
    assert_eq!(fit.smallest_target, smallest, "{what}: {fit:?}");
    check_plan(src, &fit, smallest, what);
    for x in &fit.parts {
        assert!(
            x.new_size - x.min < ALIGN,
            "{what}: partition {} is not at its minimum: {x:?}",
            x.number
        );
    }
    assert!(
        fit.part(1).action == Action::Shrink && fit.part(2).action == Action::ShrinkMove,
        "{what}: {fit:?}"
    );
    let t = attach_written(&file);
    check_target(src, f, &fit, &t, what);
    drop(t);

    d.assert_unwritten();
}

/// `clone --fit` onto a larger disk does what `--grow-last` does: nothing moves or shrinks,
/// and the last partition (ext4) and its filesystem grow to the end.
#[test]
fn fit_onto_a_larger_disk_grows_the_last_partition() {
    if !prerequisites() {
        return;
    }
    let src = build(Label::Gpt, SMALL_MIB, &SMALL);
    let w = src.dir.path();
    let f = facts(&src);
    let src_sha = sha(&src.lo.path);
    let size = 256 * MIB;
    let (t, _file) = target(w, "larger", size);
    let what = "clone larger";
    let args = [
        "clone",
        p(&src.lo.path),
        p(&t.path),
        "--fit",
        "--json",
        "--yes",
    ];
    let (o, pid) = lifeboat_pid(&args);
    assert_ok(what, &args, &o);
    let out = stdout(&o);
    let values = json_values(what, &out);
    assert_finished_ok(what, &values, &out);
    no_leftovers(pid, what);
    if let Some(fit) = values.iter().find_map(find_fit) {
        for x in &fit.parts {
            assert!(
                x.new_start == x.old_start && x.new_size >= x.old_size,
                "{what}: partition {} moved or shrank: {fit:?}",
                x.number
            );
        }
    }
    let got = Table::read(&t.path);
    assert_eq!(got.id, f.table.id, "{what}: disk GUID");
    assert_eq!(got.extent(1), f.table.extent(1), "{what}: partition 1");
    let want_part = grown_end(Label::Gpt, size) - 81 * MIB;
    assert_eq!(got.extent(2), (81 * MIB, want_part), "{what}: partition 2");
    assert_eq!(dev_size(&t.part(2)), want_part, "{what}: the kernel's node");
    assert_eq!(
        fs_bytes(&t.part(2), Fs::Ext4),
        ext4_fill(&t.part(2), want_part),
        "{what}: ext4 not grown"
    );
    let v = sh(&format!("sgdisk -v {} 2>&1", t.path.display()));
    assert!(v.contains("No problems found"), "{what}: {v}");
    let files = all_contents(&t, &src.parts, w, "larger");
    assert_eq!(files, f.files, "{what}: files differ");
    assert_eq!(sha(&src.lo.path), src_sha, "the source was written");
}

/// An ext4 followed by a 300 MiB XFS (the smallest mkfs.xfs makes): onto a target where the
/// XFS fits whole once the ext4 shrinks, it moves left unshrunk and stays clean; onto one
/// where it would have to shrink, the clone is refused naming partition 2 and XFS.
#[test]
fn xfs_moves_whole_and_a_fit_that_would_shrink_it_is_refused() {
    if !prerequisites() {
        return;
    }
    let parts = [part(1, Fs::Ext4, 1, 160), part(2, Fs::Xfs, 161, 300)];
    let src = build(Label::Gpt, 470, &parts);
    let w = src.dir.path();
    let f = facts(&src);
    let src_sha = sha(&src.lo.path);

    let size = 400 * MIB;
    let (t, _file) = target(w, "moved", size);
    let what = "xfs moved";
    let fit = fit_run(what, &["clone", p(&src.lo.path), p(&t.path)]);
    check_plan(&src, &fit, size, what);
    assert_eq!(fit.part(2).action, Action::Move, "{what}: {fit:?}");
    assert!(
        matches!(fit.part(1).action, Action::Shrink),
        "{what}: {fit:?}"
    );
    check_target(&src, &f, &fit, &t, what);
    drop(t);

    // 1 MiB + the ext4's minimum + 300 MiB of XFS cannot fit in 304 MiB
    let (t, _file) = target(w, "squeezed", 304 * MIB);
    let e = refused(
        "xfs squeezed",
        &["clone", p(&src.lo.path), p(&t.path), "--fit", "--yes"],
        &[TOO_SMALL],
        &[&t.path, &src.lo.path],
    );
    let lower = e.to_lowercase();
    assert!(lower.contains("xfs"), "xfs squeezed: XFS not named: {e}");
    assert!(
        XFS_CANNOT_SHRINK.iter().any(|w| lower.contains(w)),
        "xfs squeezed: no {XFS_CANNOT_SHRINK:?} in: {e}"
    );
    assert!(
        e.contains("partition 2") || e.contains(&format!("{}p2", src.lo.path.display())),
        "xfs squeezed: partition 2 not named: {e}"
    );
    assert_eq!(sha(&src.lo.path), src_sha, "the source was written");
}

/// `--scratch` on the target itself is refused naming the target, with nothing written: the
/// target file given as the scratch of a restore, and the target loop disk given as the
/// scratch of a clone. The target's folder as scratch is fine (checked with a dry run).
#[test]
fn scratch_on_the_target_is_refused() {
    if !prerequisites() {
        return;
    }
    let src = build(Label::Gpt, SMALL_MIB, &SMALL);
    let w = src.dir.path();
    let img = w.join("disk.lbi");
    ok("image", &["image", p(&src.lo.path), "-o", p(&img)]);
    // small enough to need the fit (the layout ends at 201 MiB), large enough to get it
    let size = 180 * MIB;

    let file = target_file(w, "target", size);
    ok(
        "scratch in the target's folder",
        &[
            "restore",
            p(&img),
            p(&file),
            "--fit",
            "--scratch",
            p(w),
            "--dry-run",
            "--json",
        ],
    );
    refused(
        "scratch is the target file",
        &[
            "restore",
            p(&img),
            p(&file),
            "--fit",
            "--yes",
            "--scratch",
            p(&file),
        ],
        &[SCRATCH, p(&file)],
        &[&file, &img, &src.lo.path],
    );

    let (t, _tf) = target(w, "target-disk", size);
    refused(
        "scratch is the target disk",
        &[
            "clone",
            p(&src.lo.path),
            p(&t.path),
            "--fit",
            "--yes",
            "--scratch",
            p(&t.path),
        ],
        &[SCRATCH, p(&t.path)],
        &[&t.path, &src.lo.path],
    );
}

// ---- faults during the shrink ----

/// [`prerequisites`], debugfs, and python3-fusepy for tests/helpers/faultfs.py; skips when
/// fusepy is missing unless CI demands it (then it fails).
fn fault_prerequisites() -> bool {
    if !prerequisites() {
        return false;
    }
    require_tool("debugfs");
    common::have_fusepy()
}

/// One 200 MiB ext4 on a 202 MiB GPT disk. Fitted onto [`FAULT_TARGET`] it shrinks to under
/// 80 MiB, and resize2fs moves several MiB (its journal lies past 80 MiB).
const FAULT_PARTS: [Part; 1] = [part(1, Fs::Ext4, 1, 200)];
const FAULT_MIB: u64 = 202;
const FAULT_TARGET: u64 = 80 * MIB;

/// Gives `dev` (a target file or loop disk) a valid GPT with one partition, so that no table
/// after a failed fit means lifeboat wiped it.
fn give_table(dev: &Path) {
    sh(&format!(
        "printf 'label: gpt\\n\\nstart=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\\n' | sfdisk -q {} >/dev/null",
        dev.display()
    ));
    let pt = sh(&format!("blkid -p -o value -s PTTYPE {}", dev.display()));
    assert_eq!(pt.trim(), "gpt", "the old table on {}", dev.display());
}

/// A tmpfs of `size` on a new folder, unmounted (and the folder removed) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn new(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir(&dir).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={size},mode=0700 lifeboat-test {}",
            dir.display()
        ));
        Tmpfs { dir }
    }

    /// Bytes in use, as df sees them.
    fn used(&self) -> u64 {
        let out = sh(&format!("df -B1 --output=used {}", self.dir.display()));
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The mount points in /proc/self/mountinfo of lifeboat `pid`'s `fit` folders
/// (`…/fit-PID-N`).
fn fit_mounts(pid: u32) -> Vec<String> {
    let tag = format!("/fit-{pid}-");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.contains(&tag))
        .map(String::from)
        .collect()
}

/// (pid, command name) of every child of process `pid`.
fn children(pid: u32) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let (head, rest) = stat.rsplit_once(") ")?;
            let comm = head.split_once(" (")?.1.to_string();
            let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
            (ppid == pid).then_some((p, comm))
        })
        .collect()
}

/// The process ID of the faultfs.py serving `fs` (found by its mount point).
fn faultfs_pid(fs: &FaultFs) -> u32 {
    let disk = fs.disk();
    let mnt = disk.parent().unwrap().to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                args.iter().any(|a| a.ends_with(b"faultfs.py")) && args.contains(&mnt.as_bytes())
            })
        })
        .unwrap_or_else(|| panic!("no faultfs.py process for {mnt}"))
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// A lifeboat run to be killed, whose source is served by a faultfs that may be stopped
/// (SIGSTOP: every read that reaches it waits). On drop: lifeboat is killed if it still
/// runs, the faultfs resumed, and any `fit` FUSE folder the killed lifeboat left is
/// unmounted and removed, so that a failed test leaves nothing behind.
struct Killable {
    child: Option<std::process::Child>,
    pid: u32,
    faultfs: u32,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Killable {
    fn spawn(args: &[&str], faultfs: u32) -> Killable {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running lifeboat");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Killable {
            pid: child.id(),
            child: Some(child),
            faultfs,
            lines,
        }
    }

    /// Reads stdout until an event with `event` and `phase` appears; panics with what came
    /// (and stderr) if the run ends first or takes more than two minutes.
    fn wait_for_phase(&mut self, phase: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let v: Value = serde_json::from_str(&l)
                        .unwrap_or_else(|e| panic!("not an NDJSON event ({e}): {l}"));
                    if v["event"] == "phase" && v["phase"] == phase {
                        return;
                    }
                    seen.push(l);
                }
                Err(e) => {
                    let err = self.finish_stderr();
                    panic!(
                        "no `{phase}` phase ({e:?}); stdout: {}\nstderr: {err}",
                        seen.join("\n")
                    );
                }
            }
        }
    }

    /// Kills lifeboat (if needed), resumes the faultfs and returns stderr.
    fn finish_stderr(&mut self) -> String {
        let Some(mut c) = self.child.take() else {
            return String::new();
        };
        let _ = c.kill();
        signal(self.faultfs, "CONT");
        let _ = c.wait();
        let mut e = String::new();
        if let Some(mut s) = c.stderr.take() {
            use std::io::Read;
            let _ = s.read_to_string(&mut e);
        }
        e
    }

    /// SIGKILL, then the faultfs resumes; lifeboat's exit status.
    fn kill(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        signal(self.faultfs, "CONT");
        c.wait().unwrap()
    }
}

impl Drop for Killable {
    fn drop(&mut self) {
        let _ = self.finish_stderr();
        signal(self.faultfs, "CONT");
        for m in fit_mounts(self.pid) {
            let _ = Command::new("umount").args(["-l", &m]).status();
            let _ = std::fs::remove_dir(&m);
        }
    }
}

/// ENOSPC in the scratch folder: `restore --fit` of an image onto a file that held a valid
/// table, with `--overlay-memory 1M` and `--scratch` on a 1 MiB tmpfs, while resize2fs moves
/// several MiB. The run stops (exit 1) naming the scratch folder and "No space left", after
/// the target's table was wiped: no table is left. The image and the source disk are as
/// they were, and the scratch folder is empty (df: nothing in use, the unnamed scratch file
/// is gone).
#[test]
fn enospc_in_the_scratch_folder_during_the_shrink_names_it_and_leaves_no_table() {
    if !prerequisites() {
        return;
    }
    let src = build(Label::Gpt, FAULT_MIB, &FAULT_PARTS);
    let w = src.dir.path();
    let img = w.join("disk.lbi");
    ok("image", &["image", p(&src.lo.path), "-o", p(&img)]);
    let file = target_file(w, "target", FAULT_TARGET);
    give_table(&file);
    let scratch = Tmpfs::new(w.join("tmpfs-scratch"), "1M");
    let sdir = p(&scratch.dir);

    // the plan shrinks the ext4, so the run gets as far as the shrink
    let mut args = vec![
        "restore",
        p(&img),
        p(&file),
        "--fit",
        "--scratch",
        sdir,
        "--overlay-memory",
        "1M",
    ];
    let mut dry = args.clone();
    dry.extend(["--dry-run", "--json"]);
    let o = ok("ENOSPC dry run", &dry);
    let fit = json_values("ENOSPC dry run", &stdout(&o))
        .iter()
        .find_map(find_fit)
        .unwrap_or_else(|| panic!("no fit in {}", stdout(&o)));
    let pl = fit.part(1);
    assert!(
        pl.new_size < pl.old_size && pl.new_size < FAULT_TARGET,
        "the ext4 does not shrink: {fit:?}"
    );

    let what = "ENOSPC in --scratch";
    args.push("--yes");
    let e = refused(what, &args, &[sdir], &[&img, &src.lo.path]);
    assert!(
        e.to_lowercase().contains("no space left"),
        "{what}: no \"No space left\" in: {e}"
    );
    no_table_left(&file, what);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        FAULT_TARGET,
        "{what}: the target file changed size"
    );
    assert_empty_dir(&scratch.dir, what);
    assert_eq!(
        scratch.used(),
        0,
        "{what}: the scratch file outlived the run"
    );
}

/// A read error on the source during the shrink: the source disk file is served through
/// faultfs under a read-only loop device, with a bad range on a directory block of the ext4.
/// The plan does not read it (resize2fs -P reads no directory), so the plan succeeds; e2fsck
/// -f reads it in pass 2, on the overlay, after the target's table was wiped. `clone --fit`
/// stops (exit 1) naming the source loop device, a byte range that holds the bad block, and
/// "Input/output error"; the target, which held a valid table, has none; the disk file is as
/// it was.
#[test]
fn read_error_on_the_source_during_the_shrink_names_it_and_leaves_no_table() {
    if !fault_prerequisites() {
        return;
    }
    let src = build(Label::Gpt, FAULT_MIB, &FAULT_PARTS);
    let w = src.dir.path();
    let node = src.lo.part(1);
    let bs = field(
        &sh(&format!("dumpe2fs -h {} 2>/dev/null", node.display())),
        "Block size:",
    );
    let blocks = sh(&format!(
        "debugfs -R 'blocks /spread3' {} 2>/dev/null",
        node.display()
    ));
    let block: u64 = blocks
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("debugfs: no block for /spread3: {blocks:?}"));
    let bad = FAULT_PARTS[0].start * MIB + block * bs;
    let disk = w.join("src.img");
    let disk_sha = sha(&disk);

    let fs = FaultFs::start(&disk, w, &format!("{{\"bad_read\": [[{bad}, {bs}]]}}"));
    let sl = LoopDev::attach_with(&fs.disk(), "-r");
    let (t, _tf) = target(w, "target", FAULT_TARGET);
    give_table(&t.path);
    let what = "read error during the shrink";
    let e = refused(
        what,
        &["clone", p(&sl.path), p(&t.path), "--fit", "--yes"],
        &[p(&sl.path), "Input/output error"],
        &[],
    );
    let prefix = format!("read error on {} at byte ", sl.path.display());
    let at = e
        .find(&prefix)
        .unwrap_or_else(|| panic!("{what}: no `{prefix}` in: {e}\nfaults: {}", fs.stats()));
    let rest = &e[at + prefix.len()..];
    let num = |s: &str| -> u64 {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("{what}: no number in {s:?}"))
    };
    let from = num(rest);
    let len = rest
        .find("(length ")
        .map(|i| num(&rest[i + "(length ".len()..]))
        .unwrap_or_else(|| panic!("{what}: no length in: {e}"));
    assert!(
        from < bad + bs && bad < from + len,
        "{what}: bytes {from}..{} do not hold the bad block {bad}..{}: {e}",
        from + len,
        bad + bs
    );
    assert!(
        fs.stats().contains("\"read_eio\""),
        "{what}: faultfs failed no read"
    );
    no_table_left(&t.path, what);
    drop(sl);
    fs.set("{}");
    assert_eq!(sha(&disk), disk_sha, "{what}: the source was written");
}

/// SIGKILL during the shrink: `clone --fit --json --yes` (with `--scratch` and 1M of overlay
/// memory) from a source served through faultfs; when the `shrink` phase begins, the faultfs
/// is stopped, so the shrink waits on its reads; once lifeboat's `fit` FUSE folder is
/// mounted and e2fsck or resize2fs runs on it, lifeboat gets SIGKILL. The target, which held
/// a valid table, has none; the scratch folder is empty; the shrink tools end; the source is
/// as it was. The FUSE folder stays behind, unconnected; the next `clone --fit` (a dry run)
/// unmounts and removes it.
#[test]
fn sigkill_during_the_shrink_leaves_no_table_and_the_next_fit_removes_its_mount() {
    if !fault_prerequisites() {
        return;
    }
    let src = build(Label::Gpt, FAULT_MIB, &FAULT_PARTS);
    let w = src.dir.path();
    let disk = w.join("src.img");
    let disk_sha = sha(&disk);
    let fs = FaultFs::start(&disk, w, "{}");
    let ffs = faultfs_pid(&fs);
    let sl = LoopDev::attach_with(&fs.disk(), "-r");
    let (t, _tf) = target(w, "target", FAULT_TARGET);
    give_table(&t.path);
    let scratch = w.join("lbscratch");
    std::fs::create_dir(&scratch).unwrap();
    let what = "SIGKILL during the shrink";

    let mut run = Killable::spawn(
        &[
            "clone",
            p(&sl.path),
            p(&t.path),
            "--fit",
            "--json",
            "--yes",
            "--scratch",
            p(&scratch),
            "--overlay-memory",
            "1M",
        ],
        ffs,
    );
    let pid = run.pid;
    run.wait_for_phase("shrink");
    signal(ffs, "STOP");
    // the shrink is under way: the FUSE folder is mounted and a shrink tool runs on it
    let deadline = Instant::now() + Duration::from_secs(20);
    let tools = loop {
        let tools: Vec<(u32, String)> = children(pid)
            .into_iter()
            .filter(|(_, c)| c == "e2fsck" || c == "resize2fs")
            .collect();
        if !fit_mounts(pid).is_empty() && !tools.is_empty() {
            break tools;
        }
        if Instant::now() > deadline {
            let err = run.finish_stderr();
            panic!(
                "{what}: no shrink under way (mounts {:?}, children {:?}); stderr: {err}",
                fit_mounts(pid),
                children(pid)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let status = run.kill();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{what}: {status:?}");
    }
    // the tools lose their FUSE file and end
    let deadline = Instant::now() + Duration::from_secs(20);
    while tools
        .iter()
        .any(|(p, _)| Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "{what}: the shrink tools {tools:?} still run 20 s after lifeboat was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    no_table_left(&t.path, what);
    assert_empty_dir(&scratch, what);
    let stale = fit_mounts(pid);

    // the next fit removes the dead run's FUSE folder
    ok(
        "the next fit (dry run)",
        &[
            "clone",
            p(&sl.path),
            p(&t.path),
            "--fit",
            "--dry-run",
            "--json",
        ],
    );
    assert!(
        fit_mounts(pid).is_empty(),
        "{what}: the next fit left the killed run's FUSE folder mounted: {:?} (after the kill: {stale:?})",
        fit_mounts(pid)
    );
    no_leftovers(pid, "after the next fit");
    drop(run);
    drop(sl);
    assert_eq!(sha(&disk), disk_sha, "{what}: the source was written");
}
