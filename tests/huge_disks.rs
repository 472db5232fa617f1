//! Tier 1 (no root): disks whose first partition starts far in. A 15 TiB sparse disk file
//! whose only partition (ext4, with files) sits at its end, and a 101 GiB one whose partition
//! starts at 100 GiB, go through `image` and `restore` onto a sparse target of the same size:
//! only a few MiB are read and written (the boot area keeps its first and last MiB, not 15
//! TiB of zeros), and the partition, the first MiB and the backup GPT come back byte for
//! byte. A GPT whose entry array a header put beyond the first MiB still comes back whole.
//!
//! Disks are built without root: `truncate`, `sgdisk`, and `mke2fs -d` writing straight into
//! the file at the partition's offset.
#![allow(clippy::unwrap_used)]

mod common;

use common::{read_at, require_tool, sh, sparse};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
/// Every test partition is this long.
const PART_LEN: u64 = 64 * MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

/// Runs lifeboat with `--json` and returns the `finished` event's summary.
fn finished(args: &[&str]) -> serde_json::Value {
    let o = lifeboat(args);
    assert!(
        o.status.success(),
        "lifeboat {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["event"], "finished", "{last}");
    assert_eq!(v["ok"], true, "{last}");
    v["summary"].clone()
}

/// Bytes a file really occupies on its filesystem.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A sparse GPT disk of `size` bytes with one 64 MiB ext4 partition at `start` (a multiple
/// of 1 MiB) holding a few files; `extra` is passed to `sgdisk` first (e.g. `-j SECTOR`).
fn make_disk(dir: &Path, name: &str, size: u64, start: u64, extra: &str) -> PathBuf {
    require_tool("sgdisk");
    require_tool("mke2fs");
    let disk = dir.join(name);
    sparse(&disk, size);
    sh(&format!(
        "sgdisk -o {extra} -n1:{}:+{}M -t1:8300 {}",
        start / 512,
        PART_LEN / MIB,
        disk.display()
    ));
    let tree = dir.join(format!("{name}.tree"));
    std::fs::create_dir_all(tree.join("docs")).unwrap();
    for i in 0..20 {
        std::fs::write(
            tree.join(format!("docs/note-{i}.txt")),
            format!("note {i}\n").repeat(100 + i * 50),
        )
        .unwrap();
    }
    std::fs::write(tree.join("noise.bin"), common::noise(3 * MIB as usize, 7)).unwrap();
    sh(&format!(
        "mke2fs -q -t ext4 -F -b 4096 -E offset={start} -d {} -L far {} {}k",
        tree.display(),
        disk.display(),
        PART_LEN / 1024
    ));
    disk
}

/// Asserts that `len` bytes at `offset` are the same in both files (compared in 4 MiB
/// pieces).
fn same_range(a: &Path, b: &Path, offset: u64, len: u64, what: &str) {
    let mut pos = offset;
    while pos < offset + len {
        let n = (4 * MIB).min(offset + len - pos) as usize;
        assert!(
            read_at(a, pos, n) == read_at(b, pos, n),
            "{what} differs in the 4 MiB at byte {pos}"
        );
        pos += n as u64;
    }
}

/// Images `disk` (partition at `start`), checks the plan and the bytes read, restores onto a
/// sparse file of the same size and checks what was written and that the partition, the
/// first MiB and the backup GPT match the source.
fn round_trip(dir: &Path, disk: &Path, start: u64) {
    let size = std::fs::metadata(disk).unwrap().len();
    let img = dir.join("disk.lbi");
    let img_s = img.to_str().unwrap();
    let disk_s = disk.to_str().unwrap();

    // The plan: the boot area (all of the space before the partition) keeps its first and
    // last MiB only.
    let o = lifeboat(&["image", disk_s, "-o", img_s, "--dry-run", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let regions = plan["regions"].as_array().unwrap();
    let boot = &regions[0];
    assert_eq!(boot["what"], "boot area", "{plan}");
    assert_eq!(boot["size_bytes"], start, "{plan}");
    assert_eq!(boot["method"], "partial", "{plan}");
    assert_eq!(boot["copy_bytes"], 2 * MIB, "{plan}");
    assert_eq!(
        boot["reason"],
        "only its first MiB (MBR, GPT, boot loader) and last MiB are copied"
    );
    let planned: u64 = regions
        .iter()
        .map(|r| r["copy_bytes"].as_u64().unwrap())
        .sum();
    assert!(planned < 32 * MIB, "planned {planned} bytes: {plan}");
    assert_eq!(plan["copy_bytes"], planned, "{plan}");

    let s = finished(&["image", disk_s, "-o", img_s, "--json"]);
    let read = s["read_bytes"].as_u64().unwrap();
    assert_eq!(read, planned, "{s}");

    // The image's own record of what it holds says the same.
    let o = lifeboat(&["info", "--json", img_s]);
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["meta"]["regions"][0]["method"], "partial", "{info}");
    assert!(info["file_bytes"].as_u64().unwrap() < 16 * MIB, "{info}");

    let target = dir.join("target.img");
    sparse(&target, size);
    let t_s = target.to_str().unwrap();
    let s = finished(&["restore", img_s, t_s, "--yes", "--json"]);
    let written = s["written_bytes"].as_u64().unwrap();
    assert!(written <= planned, "restore wrote {written} bytes: {s}");
    assert_eq!(s["verified_bytes"], written, "{s}");
    assert_eq!(std::fs::metadata(&target).unwrap().len(), size);
    // Nothing touched the space in between: the target holds little more than was written
    // (plus the table wipe), and so does the source.
    assert!(allocated(&target) < 64 * MIB, "{}", allocated(&target));
    assert!(allocated(disk) < 64 * MIB, "{}", allocated(disk));

    same_range(disk, &target, start, PART_LEN, "the partition");
    same_range(disk, &target, 0, MIB, "the first MiB");
    same_range(disk, &target, size - MIB, MIB, "the last MiB (backup GPT)");
    let v = sh(&format!("sgdisk -v {} 2>&1", target.display()));
    assert!(v.contains("No problems found"), "{v}");
    // The restored partition is a filesystem holding the files.
    let part = dir.join("part.img");
    sh(&format!(
        "dd if={} of={} bs=1M skip={} count={} iflag=skip_bytes,count_bytes status=none",
        target.display(),
        part.display(),
        start,
        PART_LEN
    ));
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let note = sh(&format!(
        "debugfs -R 'cat /docs/note-19.txt' {} 2>/dev/null",
        part.display()
    ));
    assert_eq!(note, "note 19\n".repeat(100 + 19 * 50));
}

#[test]
fn fifteen_tib_disk_with_its_only_partition_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let size = 15 * TIB;
    // the last 1 MiB-aligned start that leaves room for the partition and the backup GPT
    let start = (size - 33 * 512 - PART_LEN) / MIB * MIB;
    let disk = make_disk(dir.path(), "huge.img", size, start, "");
    round_trip(dir.path(), &disk, start);
}

#[test]
fn hundred_gib_gap_before_the_first_partition() {
    let dir = tempfile::tempdir().unwrap();
    let start = 100 * GIB;
    let disk = make_disk(dir.path(), "gap.img", start + GIB, start, "");
    round_trip(dir.path(), &disk, start);
}

/// `sgdisk -j` places the primary entry array at 8 MiB, inside a 64 MiB boot area: the image
/// holds it (the plan says so), and a restore that rewrites the table (onto a larger target,
/// growing the partition) finds and edits it there.
#[test]
fn gpt_entries_beyond_the_first_mib_are_copied() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let entries = 8 * MIB;
    let start = 64 * MIB;
    let disk = make_disk(
        d,
        "moved.img",
        200 * MIB,
        start,
        &format!("-j {}", entries / 512),
    );
    let p = sh(&format!("sgdisk -p {}", disk.display()));
    assert!(
        p.contains(&format!(
            "Main partition table begins at sector {}",
            entries / 512
        )),
        "{p}"
    );
    let img = d.join("moved.lbi");
    let (disk_s, img_s) = (disk.to_str().unwrap(), img.to_str().unwrap());
    let o = lifeboat(&["image", disk_s, "-o", img_s, "--dry-run", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let boot = &plan["regions"][0];
    assert_eq!(boot["method"], "partial", "{plan}");
    assert_eq!(boot["copy_bytes"], 2 * MIB + 16384, "{plan}");
    assert!(
        boot["reason"]
            .as_str()
            .unwrap()
            .ends_with("and the partition table's structures inside it (16.0 KiB at byte 8388608)"),
        "{plan}"
    );
    finished(&["image", disk_s, "-o", img_s, "--json"]);

    // Same size: the table comes back as it was, entries at 8 MiB included.
    let same = d.join("same.img");
    sparse(&same, 200 * MIB);
    finished(&["restore", img_s, same.to_str().unwrap(), "--yes", "--json"]);
    same_range(&disk, &same, entries, 16384, "the primary entry array");
    same_range(&disk, &same, 0, MIB, "the first MiB");
    same_range(&disk, &same, start, PART_LEN, "the partition");
    let v = sh(&format!("sgdisk -v {} 2>&1", same.display()));
    assert!(v.contains("No problems found"), "{v}");

    // Larger, grown: the entry at 8 MiB is edited in place.
    let larger = d.join("larger.img");
    sparse(&larger, 300 * MIB);
    finished(&[
        "restore",
        img_s,
        larger.to_str().unwrap(),
        "--yes",
        "--grow-last",
        "--json",
    ]);
    let v = sh(&format!("sgdisk -v {} 2>&1", larger.display()));
    assert!(v.contains("No problems found"), "{v}");
    let p = sh(&format!("sgdisk -p {}", larger.display()));
    assert!(
        p.contains(&format!(
            "Main partition table begins at sector {}",
            entries / 512
        )),
        "{p}"
    );
    let last = p.lines().last().unwrap_or_default().to_string();
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields.get(1), Some(&"131072"), "{p}");
    let end: u64 = fields.get(2).unwrap().parse().unwrap();
    assert!(end > (start + PART_LEN) / 512, "not grown: {p}");
}
