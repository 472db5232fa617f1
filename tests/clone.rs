//! Tier 1: `clone` end to end on sparse disk-image files (no root), and the table edits of
//! `--grow-last` and `--new-disk-id` checked with sgdisk and sfdisk. Filesystem growth needs
//! a loop device and lives in `root_clone.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use common::{noise, read_at, require_tool, sh, sparse, write_at};
use lifeboat::blockdev::testing::FaultyDev;
use lifeboat::blockdev::{BlockDev, FileDev, MemDev, OpenMode};
use lifeboat::discovery::SystemPaths;
use lifeboat::jobs::{clone, CancelToken, Reporter};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;
const P2_START: u64 = 3 * MIB;
const P2_LEN: u64 = 64 * MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = lifeboat(args);
    assert!(
        o.status.success(),
        "lifeboat {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let o = lifeboat(args);
    assert!(!o.status.success(), "lifeboat {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A 96 MiB GPT disk: p1 BIOS boot (1..3 MiB, GRUB-like bytes), p2 ext4 with files, then
/// free space; bytes in the post-MBR gap as a boot loader would leave them.
fn make_disk(dir: &Path) -> PathBuf {
    require_tool("sgdisk");
    require_tool("mkfs.ext4");
    let disk = dir.join("disk.img");
    sparse(&disk, 96 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+2M -t1:ef02 -n2:{}:+{}M -t2:8300 {}",
        P2_START / 512,
        P2_LEN / MIB,
        s(&disk)
    ));
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..40 {
        std::fs::write(
            tree.join(format!("sub/n{i}.txt")),
            format!("{i}\n").repeat(100 + i * 50),
        )
        .unwrap();
    }
    std::fs::write(tree.join("noise.bin"), noise(5 * MIB as usize, 7)).unwrap();
    sh(&format!(
        "mkfs.ext4 -q -F -b 4096 -E offset={P2_START} -d {} -L data {} {}k",
        s(&tree),
        s(&disk),
        P2_LEN / 1024
    ));
    write_at(&disk, 40_000, b"GRUB-CORE-IMG-IN-THE-GAP");
    write_at(&disk, MIB + 4096, &noise(8192, 3)); // BIOS-boot partition payload
    disk
}

/// Files of the ext4 partition at `start` (`len` bytes) of `disk`, after a clean e2fsck.
fn ext4_files(disk: &Path, start: u64, len: u64, dir: &Path, name: &str) -> PathBuf {
    let part = dir.join(format!("{name}.part"));
    sh(&format!(
        "dd if={} of={} bs=1M skip={start} count={len} iflag=skip_bytes,count_bytes status=none",
        s(disk),
        s(&part)
    ));
    sh(&format!("e2fsck -fn {} >/dev/null", s(&part)));
    let out = dir.join(format!("{name}.files"));
    std::fs::create_dir_all(&out).unwrap();
    sh(&format!(
        "debugfs -R 'rdump / {}' {} 2>/dev/null",
        s(&out),
        s(&part)
    ));
    std::fs::remove_file(&part).unwrap();
    out
}

fn same_tree(a: &Path, b: &Path) {
    sh(&format!("diff -r {} {}", s(a), s(b)));
    let n = sh(&format!("find {} -type f | wc -l", s(b)));
    assert!(n.trim().parse::<u32>().unwrap() >= 41, "only {n} files");
}

fn spec(src: &Path, dst: &Path) -> clone::CloneSpec {
    clone::CloneSpec {
        source: src.to_path_buf(),
        target: dst.to_path_buf(),
        verify: true,
        threads: 2,
        grow_last: false,
        new_disk_id: false,
        fit: None,
        file_sector_size: 512,
        full_swap: false,
    }
}

#[test]
fn gpt_clone_onto_same_larger_and_smaller_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let want = ext4_files(&disk, P2_START, P2_LEN, d, "src");
    let src_before = sh(&format!("sha256sum < {}", s(&disk)));

    // same size, a new file
    let same = d.join("same.img");
    let out = ok(&["clone", s(&disk), s(&same), "--yes"]);
    assert!(out.contains("verified by reading back"), "{out}");
    assert_eq!(std::fs::metadata(&same).unwrap().len(), 96 * MIB);
    sh(&format!(
        "sgdisk -v {} | grep -q 'No problems found'",
        s(&same)
    ));
    same_tree(&want, &ext4_files(&same, P2_START, P2_LEN, d, "same"));
    // boot areas byte for byte: MBR, primary GPT, the post-MBR gap, the BIOS-boot partition
    assert_eq!(
        read_at(&same, 0, 3 * MIB as usize),
        read_at(&disk, 0, 3 * MIB as usize)
    );
    // the same disk IDs (a clone boots like its source)
    let guid = |p: &Path| sh(&format!("sgdisk -p {} | grep 'Disk identifier'", s(p)));
    assert_eq!(guid(&same), guid(&disk));

    // larger: an existing 160 MiB file full of junk; the backup GPT moves to its end
    let big = d.join("big.img");
    std::fs::write(&big, noise(160 * MIB as usize, 11)).unwrap();
    ok(&["clone", s(&disk), s(&big), "--yes"]);
    sh(&format!(
        "sgdisk -v {} | grep -q 'No problems found'",
        s(&big)
    ));
    let last = read_at(&big, 160 * MIB - 512, 512);
    assert_eq!(&last[..8], b"EFI PART", "backup header at the new end");
    same_tree(&want, &ext4_files(&big, P2_START, P2_LEN, d, "big"));

    // smaller: 70 MiB still holds p2 (ends at 67 MiB) and the backup GPT
    let small = d.join("small.img");
    sparse(&small, 70 * MIB);
    ok(&["clone", s(&disk), s(&small), "--yes"]);
    sh(&format!(
        "sgdisk -v {} | grep -q 'No problems found'",
        s(&small)
    ));
    same_tree(&want, &ext4_files(&small, P2_START, P2_LEN, d, "small"));

    // smaller, with the new backup GPT landing inside a copied gap (67..68 MiB holds the
    // first MiB of the free space after p2): the data must already carry the new table, or
    // the read-back would see it as a mismatch
    let snug = d.join("snug.img");
    sparse(&snug, 68 * MIB);
    ok(&["clone", s(&disk), s(&snug), "--yes"]);
    sh(&format!(
        "sgdisk -v {} | grep -q 'No problems found'",
        s(&snug)
    ));
    same_tree(&want, &ext4_files(&snug, P2_START, P2_LEN, d, "snug"));
    let img = d.join("disk.lbi");
    ok(&["image", s(&disk), "-o", s(&img)]);
    let snug2 = d.join("snug2.img");
    sparse(&snug2, 68 * MIB);
    ok(&["restore", s(&img), s(&snug2), "--yes"]);
    assert_eq!(
        std::fs::read(&snug2).unwrap(),
        std::fs::read(&snug).unwrap()
    );

    // too small: the message says how much is missing and which partition is in the way
    let tiny = d.join("tiny.img");
    sparse(&tiny, 60 * MIB);
    let e = fails(&["clone", s(&disk), s(&tiny), "--yes"]);
    assert!(
        e.contains("too small") && e.contains("partition 2") && e.contains("missing"),
        "{e}"
    );
    assert_eq!(std::fs::read(&tiny).unwrap(), vec![0u8; 60 * MIB as usize]);

    // the source was never written
    assert_eq!(sh(&format!("sha256sum < {}", s(&disk))), src_before);
}

#[test]
fn grow_last_and_new_disk_id_rewrite_both_gpt_copies() {
    require_tool("sfdisk");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let plan = ok(&[
        "clone",
        s(&disk),
        s(&d.join("x.img")),
        "--grow-last",
        "--dry-run",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    // same size: p2 grows to the last usable LBA (96 MiB - 33 sectors)
    assert_eq!(v["layout"]["grow"]["number"], 2);
    assert_eq!(
        v["layout"]["grow"]["new_size_bytes"].as_u64().unwrap(),
        (96 * MIB / 512 - 33) * 512 - P2_START
    );
    assert!(!d.join("x.img").exists(), "a dry run creates nothing");

    // new disk ID onto a larger disk: both copies valid, a new GUID, partitions unchanged
    let big = d.join("big.img");
    sparse(&big, 128 * MIB);
    ok(&["clone", s(&disk), s(&big), "--new-disk-id", "--yes"]);
    sh(&format!(
        "sgdisk -v {} | grep -q 'No problems found'",
        s(&big)
    ));
    let id = |p: &Path| sh(&format!("sgdisk -p {} | grep 'Disk identifier'", s(p)));
    assert_ne!(id(&big), id(&disk));
    let part_guid = |p: &Path| sh(&format!("sgdisk -i 2 {} | grep 'unique GUID'", s(p)));
    assert_eq!(part_guid(&big), part_guid(&disk));
    // the backup copy carries the same new GUID
    let primary = read_at(&big, 512, 512);
    let backup = read_at(&big, 128 * MIB - 512, 512);
    assert_eq!(primary[56..72], backup[56..72]);
    assert_ne!(primary[56..72], read_at(&disk, 512, 512)[56..72]);
}

/// MBR disk: p1 primary ext4, p2 extended with a logical p5 (ext4, the last partition).
fn make_mbr_disk(dir: &Path) -> PathBuf {
    require_tool("sfdisk");
    let disk = dir.join("mbr.img");
    sparse(&disk, 80 * MIB);
    sh(&format!(
        "printf 'label: dos\\nlabel-id: 0x12345678\\nstart=2048, size=40960, type=83\\nstart=43008, type=5\\nstart=45056, size=40960, type=83\\n' | sfdisk -q {}",
        s(&disk)
    ));
    let tree = dir.join("mtree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("a.bin"), noise(3 * MIB as usize, 5)).unwrap();
    for (start, n) in [(2048u64, 40960u64), (45056, 40960)] {
        sh(&format!(
            "mkfs.ext4 -q -F -b 1024 -E offset={} -d {} {} {}k",
            start * 512,
            s(&tree),
            s(&disk),
            n / 2
        ));
    }
    disk
}

#[test]
fn mbr_with_logical_partitions_clones_and_grows_the_logical_and_its_container() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_mbr_disk(d);
    let same = d.join("same.img");
    ok(&["clone", s(&disk), s(&same), "--yes"]);
    assert_eq!(
        sh(&format!("sfdisk -d {}", s(&same))).replace(s(&same), "X"),
        sh(&format!("sfdisk -d {}", s(&disk))).replace(s(&disk), "X")
    );
    let want = ext4_files(&disk, 45056 * 512, 40960 * 512, d, "l5");
    same_tree_min(
        &want,
        &ext4_files(&same, 45056 * 512, 40960 * 512, d, "l5c"),
    );

    // a plan on a larger target grows p5 and extended p2 to the end
    let big = d.join("big.img");
    sparse(&big, 120 * MIB);
    let plan = ok(&[
        "clone",
        s(&disk),
        s(&big),
        "--grow-last",
        "--new-disk-id",
        "--dry-run",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&plan).unwrap();
    assert_eq!(v["layout"]["grow"]["number"], 5);
    assert_eq!(v["layout"]["grow"]["extended"], 2);
    assert_eq!(
        v["layout"]["grow"]["new_size_bytes"].as_u64().unwrap(),
        120 * MIB - 45056 * 512
    );
    // the table edits alone (no filesystem growth: that needs a loop device) through the
    // library: run_on writes data and tables
    let mut sp = spec(&disk, &big);
    sp.new_disk_id = true;
    sp.grow_last = true;
    let plan = clone::plan(&sp, &SystemPaths::default()).unwrap();
    let src = FileDev::open(&disk, OpenMode::Read).unwrap();
    let dst = FileDev::open(&big, OpenMode::Write).unwrap();
    clone::run_on(
        &plan,
        &src,
        &dst,
        None,
        false,
        &Reporter::silent(),
        &CancelToken::new(),
    )
    .unwrap();
    drop(dst);
    let dump = sh(&format!("sfdisk -d {}", s(&big)));
    assert!(!dump.contains("0x12345678"), "{dump}");
    let sectors = 120 * MIB / 512;
    assert!(
        dump.contains(&format!(
            "start=       45056, size=    {:>8}",
            sectors - 45056
        )) || dump.contains(&format!("start=45056, size={}", sectors - 45056))
            || dump
                .lines()
                .any(|l| l.contains("45056") && l.contains(&(sectors - 45056).to_string())),
        "{dump}"
    );
    assert!(
        dump.lines()
            .any(|l| l.contains("43008") && l.contains(&(sectors - 43008).to_string())),
        "extended partition not grown: {dump}"
    );
}

fn same_tree_min(a: &Path, b: &Path) {
    sh(&format!("diff -r {} {}", s(a), s(b)));
}

#[test]
fn refusals_and_nothing_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let e = fails(&["clone", s(&disk), s(&disk), "--yes"]);
    assert!(e.contains("is the source") && e.contains(s(&disk)), "{e}");
    let t = d.join("t.img");
    let e = fails(&["clone", s(&disk), s(&t)]);
    assert!(e.contains("without confirmation"), "{e}");
    assert!(!t.exists());
    let e = fails(&["clone", s(&d.join("missing.img")), s(&t), "--yes"]);
    assert!(e.contains("missing.img"), "{e}");

    // a read error on the source: the error names the byte, and the target (which held an
    // old table) is left without one
    let plan = clone::plan(&spec(&disk, &t), &SystemPaths::default()).unwrap();
    let bad = P2_START + 4096 * 2; // ext4 metadata, always copied
    let src =
        FaultyDev::new(FileDev::open(&disk, OpenMode::Read).unwrap()).fail_reads(bad..bad + 512);
    let old = std::fs::read(&disk).unwrap();
    let dst = MemDev::from_vec(old.clone(), 512);
    let e = clone::run_on(
        &plan,
        &src,
        &dst,
        None,
        false,
        &Reporter::silent(),
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("at byte {bad} (length 512)")),
        "{e}"
    );
    let mut head = vec![0u8; 34 * 512];
    dst.read_at(&mut head, 0).unwrap();
    assert!(head.iter().all(|&b| b == 0), "the old table survived");

    // a write error on the target: the error names the range, and no table is written
    let src = FileDev::open(&disk, OpenMode::Read).unwrap();
    let bad = P2_START + 5 * MIB;
    let dst = FaultyDev::new(MemDev::from_vec(old, 512)).fail_writes(bad..bad + 4096);
    let e = clone::run_on(
        &plan,
        &src,
        &dst,
        None,
        false,
        &Reporter::silent(),
        &CancelToken::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("write error"), "{e}");
    let mut head = vec![0u8; 34 * 512];
    dst.inner().read_at(&mut head, 0).unwrap();
    assert!(head.iter().all(|&b| b == 0), "a table was written");
    let mut tail = vec![0u8; 33 * 512];
    dst.inner().read_at(&mut tail, 96 * MIB - 33 * 512).unwrap();
    assert!(tail.iter().all(|&b| b == 0), "a backup table was left");
}
