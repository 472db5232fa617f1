//! Tier 2 (root): image chains of a real loop disk. A GPT disk with FAT32, ext4 and NTFS
//! partitions gets a full image, four incrementals and a differential, with files modified
//! in place, rewritten, added and deleted (whole folders too) between them. Every member is
//! restored onto a fresh disk, checked with fsck.fat, e2fsck and ntfsfix, and compared file
//! by file with a snapshot taken when that member was made. Then the chain is merged into
//! one full image that must stand alone, and a copy of it is pruned down to one kept member.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::{require_root, require_tool, sh, sparse, LoopDev, Mount};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;
const KIB: usize = 1 << 10;
/// p1 FAT32 48 MiB at 1 MiB, p2 ext4 40 MiB, p3 NTFS 40 MiB, then the backup GPT.
const DISK: u64 = 132 * MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

/// Runs lifeboat, panicking with its output unless it succeeds; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = lifeboat(args);
    assert!(
        o.status.success(),
        "lifeboat {args:?} failed ({:?}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn info(img: &Path, search: Option<&Path>) -> serde_json::Value {
    let mut args = vec!["info", "--json", p(img)];
    if let Some(s) = search {
        args.extend(["--search", p(s)]);
    }
    serde_json::from_str(&ok(&args)).unwrap()
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

fn name(x: &Path) -> String {
    x.file_name().unwrap().to_string_lossy().into_owned()
}

fn tools() {
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.ext4",
        "mkfs.vfat",
        "mkntfs",
        "mcopy",
        "mdel",
        "mdeltree",
        "mmd",
        "mdir",
        "fsck.fat",
        "ntfsfix",
        "e2fsck",
        "mount.ntfs-3g",
    ] {
        require_tool(t);
    }
}

/// Deterministic pseudo-random (incompressible) bytes.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

/// One change to a filesystem. Paths are relative, with `/`.
enum Op {
    /// Create or replace a whole file (parent folders are created).
    Put(String, Vec<u8>),
    /// Overwrite bytes inside an existing file, in place.
    Patch(String, u64, Vec<u8>),
    /// Delete a file.
    Del(String),
    /// Delete a folder and everything in it.
    DelTree(String),
}

/// The files every filesystem starts with: about 4.5 MiB, 3.8 of it incompressible.
/// `fs` (0 FAT, 1 ext4, 2 NTFS) makes each filesystem's data its own.
fn initial(fs: u32) -> Vec<Op> {
    let mut ops = Vec::new();
    for i in 0..30u32 {
        ops.push(Op::Put(
            format!("docs/n{i}.txt"),
            format!("fs{fs} note {i}\n")
                .repeat(200 + 60 * i as usize)
                .into_bytes(),
        ));
    }
    for i in 0..3 {
        ops.push(Op::Put(
            format!("big/blob{i}.bin"),
            noise(MIB as usize, fs * 100 + i),
        ));
    }
    for i in 0..8 {
        ops.push(Op::Put(
            format!("media/photo{i}.jpg"),
            noise(128 * KIB, fs * 100 + 10 + i),
        ));
    }
    ops.push(Op::Put(
        "keep/deep/er/stable.txt".into(),
        b"never changes\n".repeat(1000),
    ));
    ops.push(Op::Put("Grüße.txt".into(), "unicode name\n".into()));
    ops
}

/// The changes of round `r` (1..=5): an unaligned in-place patch of a big file, a small file
/// rewritten and another patched, a new folder with files, deletions; round 3 deletes round
/// 1's folder, round 4 a whole 1 MiB file.
fn round(fs: u32, r: u32) -> Vec<Op> {
    let seed = fs * 1000 + r * 10;
    let mut ops = vec![
        Op::Patch(
            format!("big/blob{}.bin", r % 3),
            u64::from(r) * 200_000 + 333,
            noise(50_000, seed),
        ),
        Op::Put(
            format!("docs/n{r}.txt"),
            format!("fs{fs} rewritten in round {r}\n")
                .repeat(300)
                .into_bytes(),
        ),
        Op::Patch(
            format!("docs/n{}.txt", 10 + r),
            100,
            format!("PATCHED IN ROUND {r}").into_bytes(),
        ),
        Op::Put(
            format!("new/r{r}/a.txt"),
            format!("added in round {r} on fs{fs}\n").into_bytes(),
        ),
        Op::Put(format!("new/r{r}/rand.bin"), noise(300_000, seed + 1)),
        Op::Del(format!("docs/n{}.txt", 20 + r)),
        Op::Del(format!("media/photo{r}.jpg")),
    ];
    if r == 3 {
        ops.push(Op::DelTree("new/r1".into()));
    }
    if r == 4 {
        ops.push(Op::Del("big/blob2.bin".into()));
    }
    ops
}

/// Path -> "dir" or "SIZE BLAKE3" for everything under a folder.
type Tree = BTreeMap<String, String>;

fn walk(root: &Path) -> Tree {
    fn go(root: &Path, dir: &Path, out: &mut Tree) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let md = std::fs::symlink_metadata(&path).unwrap();
            if md.is_dir() {
                out.insert(rel, "dir".into());
                go(root, &path, out);
            } else if md.is_file() {
                let data = std::fs::read(&path).unwrap();
                out.insert(rel, format!("{} {}", data.len(), blake3::hash(&data)));
            } else {
                panic!("unexpected file type at {}", path.display());
            }
        }
    }
    let mut out = Tree::new();
    go(root, root, &mut out);
    out
}

/// The files of the three filesystems.
#[derive(Clone, Debug)]
struct Snap {
    fat: Tree,
    ext: Tree,
    ntfs: Tree,
}

/// Differences between two trees, in a few readable lines.
fn diff(want: &Tree, got: &Tree) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => d.push(format!("missing {k}")),
            Some(g) if g != v => d.push(format!("differs {k}: want {v}, got {g}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        d.push(format!("extra {k}"));
    }
    d
}

fn assert_same(what: &str, want: &Snap, got: &Snap) {
    let mut problems = Vec::new();
    for (fs, w, g) in [
        ("FAT", &want.fat, &got.fat),
        ("ext4", &want.ext, &got.ext),
        ("NTFS", &want.ntfs, &got.ntfs),
    ] {
        problems.extend(diff(w, g).into_iter().map(|l| format!("{fs}: {l}")));
    }
    assert!(
        problems.is_empty(),
        "{what}: restored files differ from the snapshot:\n{}",
        problems.join("\n")
    );
}

/// The files on a FAT partition, copied out with mtools (the kernel has no vfat driver).
fn fat_tree(part: &Path, scratch: &Path) -> Tree {
    let out = tempfile::tempdir_in(scratch).unwrap();
    sh(&format!(
        "mcopy -s -n -i {} '::/*' {}/",
        part.display(),
        out.path().display()
    ));
    walk(out.path())
}

fn fat_exists(part: &Path, path: &str) -> bool {
    Command::new("mdir")
        .arg("-i")
        .arg(part)
        .arg(format!("::/{path}"))
        .output()
        .unwrap()
        .status
        .success()
}

fn apply_fat(part: &Path, scratch: &Path, ops: &[Op]) {
    let stage = tempfile::tempdir_in(scratch).unwrap();
    let local = stage.path().join("file");
    let i = part.display();
    for op in ops {
        match op {
            Op::Put(path, data) => {
                let mut prefix = String::new();
                let parts: Vec<&str> = path.split('/').collect();
                for dir in &parts[..parts.len() - 1] {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(dir);
                    if !fat_exists(part, &prefix) {
                        sh(&format!("mmd -i {i} '::/{prefix}'"));
                    }
                }
                std::fs::write(&local, data).unwrap();
                sh(&format!("mcopy -o -i {i} {} '::/{path}'", local.display()));
            }
            Op::Patch(path, offset, data) => {
                sh(&format!("mcopy -n -i {i} '::/{path}' {}", local.display()));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&local)
                    .unwrap();
                f.write_all_at(data, *offset).unwrap();
                drop(f);
                sh(&format!("mcopy -o -i {i} {} '::/{path}'", local.display()));
            }
            Op::Del(path) => {
                sh(&format!("mdel -i {i} '::/{path}'"));
            }
            Op::DelTree(path) => {
                sh(&format!("mdeltree -i {i} '::/{path}'"));
            }
        }
    }
}

fn apply_posix(root: &Path, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(path, data) => {
                let f = root.join(path);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(f, data).unwrap();
            }
            Op::Patch(path, offset, data) => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(root.join(path))
                    .unwrap();
                f.write_all_at(data, *offset).unwrap();
            }
            Op::Del(path) => std::fs::remove_file(root.join(path)).unwrap(),
            Op::DelTree(path) => std::fs::remove_dir_all(root.join(path)).unwrap(),
        }
    }
}

/// Runs `tool args part`, panicking with its output unless it exits 0.
fn fsck(tool: &str, args: &str, part: &Path, what: &str) {
    let o = Command::new(tool).arg(args).arg(part).output().unwrap();
    assert!(
        o.status.success(),
        "{what}: {tool} {args} {} is not clean ({:?}):\n{}\n{}",
        part.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// fsck.fat, e2fsck and ntfsfix, all read-only; every one must find nothing to fix.
fn fsck_all(d: &LoopDev, what: &str) {
    fsck("fsck.fat", "-n", &d.part(1), what);
    fsck("e2fsck", "-fn", &d.part(2), what);
    fsck("ntfsfix", "-n", &d.part(3), what);
}

/// Applies each filesystem's changes to the source disk (ext4 and NTFS mounted read-write,
/// FAT through mtools), snapshots the files right before unmounting, and leaves the disk
/// unmounted and fsck-clean, ready to be imaged.
fn change(d: &LoopDev, scratch: &Path, ops: impl Fn(u32) -> Vec<Op>) -> Snap {
    apply_fat(&d.part(1), scratch, &ops(0));
    let fat = fat_tree(&d.part(1), scratch);
    let ext = {
        let m = Mount::new(&d.part(2), "");
        apply_posix(m.dir.path(), &ops(1));
        sh("sync");
        walk(m.dir.path())
    };
    let ntfs = {
        let m = Mount::new(&d.part(3), "-t ntfs-3g");
        apply_posix(m.dir.path(), &ops(2));
        sh("sync");
        walk(m.dir.path())
    };
    sh("sync");
    let snap = Snap { fat, ext, ntfs };
    for (fs, t) in [
        ("FAT", &snap.fat),
        ("ext4", &snap.ext),
        ("NTFS", &snap.ntfs),
    ] {
        assert!(t.len() > 30, "{fs}: suspiciously few files: {t:?}");
    }
    fsck_all(d, "source");
    snap
}

/// The files of a restored disk: fsck first, then FAT through mtools and ext4 and NTFS
/// mounted read-only.
fn read_back(d: &LoopDev, scratch: &Path, what: &str) -> Snap {
    fsck_all(d, what);
    let fat = fat_tree(&d.part(1), scratch);
    let ext = walk(Mount::new(&d.part(2), "-o ro").dir.path());
    let ntfs = walk(Mount::new(&d.part(3), "-t ntfs-3g -o ro").dir.path());
    Snap { fat, ext, ntfs }
}

/// Restores `img` onto a fresh same-size loop disk holding garbage, checks the result with
/// fsck and compares its files with `want`.
fn restore_and_compare(img: &Path, search: Option<&Path>, want: &Snap, scratch: &Path) {
    let what = name(img);
    let t0 = std::time::Instant::now();
    let f = scratch.join("target.img");
    sparse(&f, DISK);
    common::write_at(&f, 0, &noise(MIB as usize, 11));
    common::write_at(&f, 60 * MIB, &noise(MIB as usize, 12));
    {
        let t = LoopDev::attach(&f);
        let mut args = vec!["restore", p(img), p(&t.path), "--yes"];
        if let Some(s) = search {
            args.extend(["--search", p(s)]);
        }
        let out = ok(&args);
        assert!(
            out.contains("verified by reading back (O_DIRECT)"),
            "{what}: {out}"
        );
        for n in 1..=3 {
            assert!(
                t.part(n).exists(),
                "{what}: no node for partition {n}: {out}"
            );
        }
        let got = read_back(&t, scratch, &what);
        assert_same(&what, want, &got);
    }
    std::fs::remove_file(&f).unwrap();
    eprintln!(
        "restored {what} and compared: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// The image files in a folder, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Sleeps until the clock's second changes, so every member has its own time like real
/// nightly images (images record whole seconds; the same-second case has its own test,
/// `same_second_incrementals_chain_onto_the_newest`).
fn next_second() {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    let s = now().as_secs();
    while now().as_secs() == s {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `lifeboat image` with `args` and returns the one file it added to `dir`.
fn new_image(dir: &Path, args: &[&str]) -> PathBuf {
    next_second();
    let before = listing(dir);
    let out = ok(args);
    let added: Vec<PathBuf> = listing(dir)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert_eq!(added.len(), 1, "{args:?} added {added:?} to {dir:?}: {out}");
    let f = added.into_iter().next().unwrap();
    assert!(out.contains(p(&f)), "{out}");
    f
}

/// `base-YYYYMMDD-HHMMSS-KIND.lbi`, or `...-KIND-N.lbi` when that second's name was taken.
fn is_child_name(n: &str, kind: &str) -> bool {
    let Some(rest) = n.strip_prefix("base-").and_then(|r| r.strip_suffix(".lbi")) else {
        return false;
    };
    let b = rest.as_bytes();
    let stamp = b.len() > 16
        && b[..15].iter().enumerate().all(|(i, c)| {
            if i == 8 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    let tail = &rest[15.min(rest.len())..];
    let want = format!("-{kind}");
    stamp
        && (tail == want
            || tail.strip_prefix(&format!("{want}-")).is_some_and(|k| {
                !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit()) && k != "0" && k != "1"
            }))
}

/// Checks `info --json`: the kind, and the chain's files from the image down to the full one.
fn check_chain(img: &Path, search: Option<&Path>, kind: &str, want: &[&Path]) {
    let j = info(img, search);
    let chain = j["chain"].as_array().unwrap();
    let names: Vec<String> = chain
        .iter()
        .map(|l| name(Path::new(l["path"].as_str().unwrap())))
        .collect();
    let ctx = format!(
        "{}: kind {}, chain {names:?}, chain_error {}",
        img.display(),
        j["kind"],
        j["chain_error"]
    );
    assert_eq!(j["kind"], kind, "{ctx}");
    assert!(j["chain_error"].is_null(), "{ctx}");
    let want_names: Vec<String> = want.iter().map(|w| name(w)).collect();
    assert_eq!(names, want_names, "{ctx}");
    assert_eq!(chain[0]["kind"], kind, "{ctx}");
    assert_eq!(chain.last().unwrap()["kind"], "full", "{ctx}");
    for l in chain {
        assert!(l["file_bytes"].as_u64().unwrap() > 0, "{l}");
        assert!(l["created_unix"].as_u64().unwrap() > 0, "{l}");
        assert_eq!(l["image_id"].as_str().unwrap().len(), 32, "{l}");
    }
}

fn size(f: &Path) -> u64 {
    std::fs::metadata(f).unwrap().len()
}

/// Builds the GPT disk with empty filesystems.
fn build(file: &Path) -> LoopDev {
    sparse(file, DISK);
    let lo = LoopDev::attach(file);
    let script = format!(
        "label: gpt\\n\\nstart={}, size={}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\\nstart={}, size={}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\\nstart={}, size={}, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\\n",
        MIB / 512,
        48 * MIB / 512,
        49 * MIB / 512,
        40 * MIB / 512,
        89 * MIB / 512,
        40 * MIB / 512
    );
    sh(&format!(
        "printf '{script}' | sfdisk -q {} >/dev/null",
        lo.path.display()
    ));
    lo.add_partitions();
    sh(&format!(
        "mkfs.vfat -F 32 -n LBFAT {} >/dev/null",
        lo.part(1).display()
    ));
    sh(&format!("mkfs.ext4 -q -L lbext {}", lo.part(2).display()));
    sh(&format!(
        "mkntfs -q -F -Q -L lbntfs {} >/dev/null 2>&1",
        lo.part(3).display()
    ));
    lo
}

/// One chain member: the file, where its ancestors are if not next to it, and the files
/// the disk held when it was made.
struct Member {
    file: PathBuf,
    search: Option<PathBuf>,
    snap: Snap,
}

#[test]
fn full_four_incrementals_and_a_differential() {
    if !require_root() {
        return;
    }
    tools();
    let start = std::time::Instant::now();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let dir = w.join("chain");
    let diffs = w.join("diffs");
    let merged_dir = w.join("merged");
    let prune_dir = w.join("prune");
    let scratch = w.join("scratch");
    for d in [&dir, &diffs, &merged_dir, &prune_dir, &scratch] {
        std::fs::create_dir(d).unwrap();
    }
    let src = build(&w.join("disk.img"));
    let disk = p(&src.path).to_string();
    let snap0 = change(&src, &scratch, initial);

    // The full image.
    let full = dir.join("base.lbi");
    ok(&["image", &disk, "-o", p(&full)]);
    let j = info(&full, None);
    assert_eq!(j["kind"], "full");
    assert!(j["chain_error"].is_null(), "{}", j["chain_error"]);
    let mut members = vec![Member {
        file: full.clone(),
        search: None,
        snap: snap0,
    }];
    let mut incrs: Vec<PathBuf> = Vec::new();

    for r in 1..=4 {
        let snap = change(&src, &scratch, |fs| round(fs, r));
        let incr = new_image(&dir, &["image", &disk, "--incremental", p(&dir)]);
        let n = name(&incr);
        assert!(is_child_name(&n, "incr"), "round {r}: {n}");
        // The chain grows by one each time: this incremental, the previous ones, the full.
        let mut want: Vec<&Path> = vec![&incr];
        want.extend(incrs.iter().rev().map(PathBuf::as_path));
        want.push(&full);
        check_chain(&incr, None, "incremental", &want);
        assert_eq!(want.len(), r as usize + 1);
        members.push(Member {
            file: incr.clone(),
            search: None,
            snap,
        });
        incrs.push(incr);

        if r == 2 {
            // More changes, then a differential: its parent is the full image, whatever
            // incrementals came since.
            let snap = change(&src, &scratch, |fs| round(fs, 5));
            let d = new_image(&dir, &["image", &disk, "--differential", p(&dir)]);
            let n = name(&d);
            assert!(is_child_name(&n, "diff"), "differential: {n}");
            check_chain(&d, None, "differential", &[&d, &full]);
            // An incremental's parent is the newest image of any kind, so the differential
            // leaves the folder to let the incrementals go on chaining; info, verify and
            // restore are pointed at its full image with --search.
            let moved = diffs.join(&n);
            std::fs::rename(&d, &moved).unwrap();
            check_chain(&moved, Some(&dir), "differential", &[&moved, &full]);
            members.push(Member {
                file: moved,
                search: Some(dir.clone()),
                snap,
            });
        }
    }
    eprintln!(
        "disk built, 6 images made: {:.1} s",
        start.elapsed().as_secs_f64()
    );

    // Every member holds another state of every filesystem, so a restore that brought back
    // a neighbour's files would be caught.
    for (i, a) in members.iter().enumerate() {
        for b in &members[i + 1..] {
            let what = format!("{} and {}", name(&a.file), name(&b.file));
            assert_ne!(a.snap.fat, b.snap.fat, "FAT: {what}");
            assert_ne!(a.snap.ext, b.snap.ext, "ext4: {what}");
            assert_ne!(a.snap.ntfs, b.snap.ntfs, "NTFS: {what}");
        }
    }

    // Only the changes are stored.
    let full_bytes = size(&full);
    for m in &members[1..] {
        let b = size(&m.file);
        eprintln!("{}: {b} bytes (full: {full_bytes})", name(&m.file));
        assert!(
            b * 2 < full_bytes,
            "{} holds {b} bytes, the full image {full_bytes}",
            name(&m.file)
        );
    }
    let last = incrs.last().unwrap().clone();
    ok(&["verify", p(&last)]);
    let diff_member = &members[3];
    ok(&[
        "verify",
        p(&diff_member.file),
        "--search",
        p(diff_member.search.as_deref().unwrap()),
    ]);

    // Every member restores the disk as it was when that member was made.
    for m in &members {
        restore_and_compare(&m.file, m.search.as_deref(), &m.snap, &scratch);
    }

    // A copy of every member, to be pruned down to what the third incremental needs.
    for f in listing(&dir).iter().chain(listing(&diffs).iter()) {
        std::fs::copy(f, prune_dir.join(f.file_name().unwrap())).unwrap();
    }

    // Merge the last incremental into a full image in another folder; it must need nothing
    // else once every original chain file is gone.
    let merged = merged_dir.join("merged.lbi");
    ok(&["merge", p(&last), "-o", p(&merged)]);
    for m in &members {
        std::fs::remove_file(&m.file).unwrap();
    }
    assert!(listing(&dir).is_empty() && listing(&diffs).is_empty());
    ok(&["verify", p(&merged)]);
    let j = info(&merged, None);
    assert_eq!(j["kind"], "full");
    assert!(j["chain_error"].is_null(), "{}", j["chain_error"]);
    restore_and_compare(&merged, None, &members.last().unwrap().snap, &scratch);

    // Now that the originals are gone, prune the copy: nothing outside it can stand in for
    // a file prune wrongly deleted.
    let keep = prune_dir.join(name(&incrs[2]));
    let doomed = [name(&incrs[3]), name(&diff_member.file)];
    let mut kept: Vec<String> = vec![name(&full)];
    kept.extend(incrs[..3].iter().map(|f| name(f)));
    kept.sort();
    let dry = ok(&["prune", p(&prune_dir), "--keep", p(&keep), "--dry-run"]);
    let mut planned: Vec<String> = dry
        .lines()
        .filter_map(|l| l.strip_prefix("delete "))
        .map(|f| name(Path::new(f)))
        .collect();
    planned.sort();
    let mut doomed_sorted = doomed.to_vec();
    doomed_sorted.sort();
    assert_eq!(planned, doomed_sorted, "{dry}");
    assert_eq!(listing(&prune_dir).len(), 6, "dry run deleted something");
    let out = ok(&["prune", p(&prune_dir), "--keep", p(&keep), "--yes"]);
    let left: Vec<String> = listing(&prune_dir).iter().map(|f| name(f)).collect();
    assert_eq!(left, kept, "{out}");
    ok(&["verify", p(&keep)]);
    check_chain(
        &keep,
        None,
        "incremental",
        &[
            &keep,
            &prune_dir.join(name(&incrs[1])),
            &prune_dir.join(name(&incrs[0])),
            &prune_dir.join(name(&full)),
        ],
    );

    eprintln!("total: {:.1} s", start.elapsed().as_secs_f64());
}

/// Two incrementals of one second: the next `--incremental` must still chain onto the newer
/// one (times are whole seconds; file names would sort `-incr-2.lbi` before `-incr.lbi`, so
/// the tie is broken by the chain itself). Needs no root: the disk is a file.
#[test]
fn same_second_incrementals_chain_onto_the_newest() {
    require_tool("sfdisk");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let disk = w.join("d.img");
    sparse(&disk, 8 * MIB);
    sh(&format!(
        "printf 'label: gpt\\n\\nstart=2048, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\\n' | sfdisk -q {}",
        disk.display()
    ));
    let dir = w.join("c");
    std::fs::create_dir(&dir).unwrap();
    let full = dir.join("base.lbi");
    ok(&["image", p(&disk), "-o", p(&full)]);
    next_second();
    let mut made: Vec<PathBuf> = Vec::new();
    for i in 0..3u64 {
        common::write_at(&disk, 2 * MIB + i * 70_000, format!("round {i}").as_bytes());
        let before = listing(&dir);
        ok(&["image", p(&disk), "--incremental", p(&dir)]);
        let added: Vec<PathBuf> = listing(&dir)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        made.push(added[0].clone());
    }
    let mut want: Vec<&Path> = made.iter().rev().map(PathBuf::as_path).collect();
    want.push(&full);
    check_chain(&made[2], None, "incremental", &want);
}
