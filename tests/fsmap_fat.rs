//! Tier 1: the FAT used-block map must equal two independent oracles byte for byte, on
//! FAT12/16/32 images made by `mkfs.vfat` (512- and 4096-byte sectors, several cluster sizes,
//! volumes that end in a partial cluster) and filled with mtools (files of many sizes,
//! subdirectories, a deleted file):
//! - mtools: the area before the data clusters (from `fsck.fat -v`) plus the cluster chain of
//!   every file and directory (`mdir -/` lists them, `mshowfat` prints their chains);
//! - partclone.fat's domain map (`partclone.fat -D`), for FAT16 and FAT32 only: partclone
//!   0.3.23 misreads packed 12-bit entries (on a FAT12 volume with one 49-cluster file it maps
//!   36 clusters and then unrelated ones), so it is no oracle for FAT12.
//!
//! partclone skips bad clusters, so on images with bad blocks the expected map is partclone's
//! plus the bad clusters computed from the bad-block list handed to mkfs and the data-area
//! offset printed by `fsck.fat -v`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use lifeboat::blockdev::{FileDev, OpenMode};
use lifeboat::fsmap::fat::used_ranges;
use std::path::Path;

fn require_tools() {
    for t in [
        "mkfs.vfat",
        "fsck.fat",
        "mcopy",
        "mmd",
        "mdel",
        "partclone.fat",
    ] {
        require_tool(t);
    }
}

/// Used ranges from a ddrescue domain log written by `partclone.<fs> -D`.
pub fn partclone_used(tool: &str, img: &Path) -> Vec<(u64, u64)> {
    let log = img.with_extension("domain");
    sh(&format!(
        "{tool} -q -D -s {} -O {} >/dev/null 2>&1",
        img.display(),
        log.display()
    ));
    let text = std::fs::read_to_string(&log).unwrap();
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let mut used: Vec<(u64, u64)> = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [pos, size, "+"] = f[..] {
            push_merged(&mut used, hex(pos), hex(size));
        }
    }
    assert!(!used.is_empty(), "empty domain log from {tool}:\n{text}");
    used
}

fn push_merged(v: &mut Vec<(u64, u64)>, start: u64, len: u64) {
    match v.last_mut() {
        Some(last) if last.0 + last.1 == start => last.1 += len,
        _ => v.push((start, len)),
    }
}

/// Sorted union of two range lists.
fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, n) in all {
        match out.last_mut() {
            Some(last) if s <= last.0 + last.1 => last.1 = last.1.max(s + n - last.0),
            _ => out.push((s, n)),
        }
    }
    out
}

/// Writes `len` pseudo-random bytes to `path`.
fn random_file(path: &Path, len: u64, seed: u64) {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

/// Fills the image with files adding up to about a third of `size`, in the root directory
/// and two levels of subdirectories, deletes two (one large), adds small files into the
/// holes, and returns the bytes of file data left on the volume.
fn fill(img: &Path, size: u64, scratch: &Path) -> u64 {
    let i = img.display();
    sh(&format!(
        "mmd -i {i} ::/sub && mmd -i {i} ::/sub/deeper && mmd -i {i} ::/empty"
    ));
    let budget = size / 3;
    let sizes = [1, 700, 4097, 33_000, budget / 20, budget / 7, budget / 4];
    for (n, &len) in sizes.iter().enumerate() {
        let local = scratch.join(format!("f{n}"));
        random_file(&local, len, n as u64 + 7);
        let dir = ["", "sub/", "sub/deeper/"][n % 3];
        sh(&format!(
            "mcopy -i {i} {} ::/{dir}f{n}.bin",
            local.display()
        ));
    }
    // a deleted file leaves its directory entry behind but frees its clusters
    sh(&format!("mdel -i {i} ::/sub/f1.bin ::/sub/deeper/f5.bin"));
    let mut kept = sizes.iter().sum::<u64>() - sizes[1] - sizes[5];
    for n in 0..30 {
        kept += 100 + n * 997;
        let local = scratch.join("small");
        random_file(&local, 100 + n * 997, n);
        sh(&format!(
            "mcopy -i {i} {} ::/sub/deeper/s{n}.txt",
            local.display()
        ));
    }
    kept
}

/// `fsck.fat -n -v` output (it exits 1 when it would fix something, e.g. mkfs.fat's wrong FSInfo
/// free count next to bad clusters; -n changes nothing either way).
fn fsck(img: &Path) -> String {
    sh(&format!("fsck.fat -n -v {} || true", img.display()))
}

/// The number in front of `suffix` on the first line of `fsck` containing it.
fn fsck_num(fsck: &str, suffix: &str) -> u64 {
    let l = fsck.lines().find(|l| l.contains(suffix)).unwrap();
    l.split_whitespace().next().unwrap().parse().unwrap()
}

/// The byte offset of cluster 2, from `fsck.fat -v`.
fn data_start(fsck: &str) -> u64 {
    let l = fsck
        .lines()
        .find(|l| l.contains("Data area starts at byte"))
        .unwrap();
    l.split_whitespace().nth(5).unwrap().parse().unwrap()
}

/// Used ranges according to mtools: everything before cluster 2, then the clusters of every
/// file and directory (and of the FAT32 root directory).
fn mtools_used(img: &Path) -> Vec<(u64, u64)> {
    let fsck = fsck(img);
    let start = data_start(&fsck);
    let cluster = fsck_num(&fsck, "bytes per cluster");
    let i = img.display();
    let listing = sh(&format!("mdir -/ -b -i {i} ::/"));
    let mut used = vec![(0, start)];
    for path in std::iter::once("::/").chain(listing.lines()) {
        let path = path.trim();
        let path = if path.len() > 3 {
            path.trim_end_matches('/')
        } else {
            path
        };
        let out = sh(&format!("mshowfat -i {i} '{path}'"));
        // "::/f <2-912> <914-2412> <2414>"; no '<' for the FAT12/16 root or an empty file
        let chains = out.split(['<', '>']).skip(1).step_by(2);
        for item in chains.flat_map(str::split_whitespace) {
            let (a, b) = match item.split_once('-') {
                Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                None => (item.parse().unwrap(), item.parse().unwrap()),
            };
            used.push((start + (a - 2) * cluster, (b - a + 1) * cluster));
        }
    }
    union(&used, &[])
}

/// partclone.fat's map without the sectors after the last whole cluster, which partclone
/// copies and we call unused (no FAT entry describes them); asserts that is all it adds there.
fn partclone_fat(img: &Path, fsck: &str) -> Vec<(u64, u64)> {
    let end =
        data_start(fsck) + fsck_num(fsck, "data clusters") * fsck_num(fsck, "bytes per cluster");
    let size = std::fs::metadata(img).unwrap().len();
    let mut used = partclone_used("partclone.fat", img);
    if let Some(&(s, n)) = used.last() {
        if s + n > end {
            assert!(
                s + n <= size && (s >= end || s + n - end < 1 << 20),
                "{used:?}"
            );
            used.pop();
            if s < end {
                used.push((s, end - s));
            }
        }
    }
    used
}

#[test]
fn fat_maps_match_mtools_and_partclone() {
    require_tools();
    std::env::set_var("MTOOLS_SKIP_CHECK", "1");
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, u64, &str, &str); 10] = [
        ("FAT12 2 MiB", 2 << 20, "-F 12", "FAT12"),
        ("FAT12 4K sectors", 8 << 20, "-F 12 -S 4096", "FAT12"),
        (
            "FAT12 partial last cluster",
            3_000_000,
            "-F 12 -s 8",
            "FAT12",
        ),
        ("FAT16 40 MiB", 40 << 20, "-F 16", "FAT16"),
        ("FAT16 64K clusters", 300 << 20, "-F 16 -s 128", "FAT16"),
        ("FAT16 4K sectors", 100 << 20, "-F 16 -S 4096 -s 1", "FAT16"),
        (
            "FAT16 partial",
            41_000_000 + 3 * 512,
            "-F 16 -s 16",
            "FAT16",
        ),
        ("FAT32 300 MiB", 300 << 20, "-F 32", "FAT32"),
        ("FAT32 4K sectors", 400 << 20, "-F 32 -S 4096 -s 1", "FAT32"),
        (
            "FAT32 512 B clusters",
            300 << 20,
            "-F 32 -s 1 -f 1",
            "FAT32",
        ),
    ];
    for (name, size, opts, kind) in cases {
        let img = dir.path().join("fat.img");
        let _ = std::fs::remove_file(&img);
        sparse(&img, size);
        let out = sh(&format!("mkfs.vfat {opts} {} 2>&1", img.display()));
        let kept = fill(&img, size, dir.path());
        let fsck = fsck(&img);
        assert!(
            fsck.contains(&format!("{} bit entries", &kind[3..])),
            "{name}: {out}"
        );

        let dev = FileDev::open(&img, OpenMode::Read).unwrap();
        let ours = used_ranges(&dev).unwrap().unwrap();
        let mtools = mtools_used(&img);
        assert_eq!(
            ours.ranges, mtools,
            "{name}: used ranges differ from mtools"
        );
        if kind != "FAT12" {
            let partclone = partclone_fat(&img, &fsck);
            assert_eq!(
                ours.ranges, partclone,
                "{name}: used ranges differ from partclone"
            );
        }
        let used: u64 = ours.ranges.iter().map(|r| r.1).sum();
        assert!(used > kept, "{name}: the files are in the map ({used})");
        assert!(!ours.dirty, "{name}: a fresh volume is clean");
    }
}

#[test]
fn bad_clusters_stay_in_the_map() {
    require_tools();
    std::env::set_var("MTOOLS_SKIP_CHECK", "1");
    let dir = tempfile::tempdir().unwrap();
    let bad_list = dir.path().join("bad.txt");
    // mkfs.fat's bad-block list counts 1 KiB blocks
    let blocks = [2000u64, 2001, 5000, 20_011];
    let text: String = blocks.iter().map(|b| format!("{b}\n")).collect();
    std::fs::write(&bad_list, text).unwrap();
    for (name, opts) in [("FAT16", "-F 16"), ("FAT32", "-F 32 -s 2")] {
        let img = dir.path().join("bad.img");
        let _ = std::fs::remove_file(&img);
        sparse(&img, 80 << 20);
        sh(&format!(
            "mkfs.vfat {opts} -l {} {} >/dev/null",
            bad_list.display(),
            img.display()
        ));
        fill(&img, 80 << 20, dir.path());
        let fsck = fsck(&img);
        let cluster = fsck_num(&fsck, "bytes per cluster");
        let data_start = data_start(&fsck);
        let bad: Vec<(u64, u64)> = blocks
            .iter()
            .map(|b| {
                let c = (b * 1024 - data_start) / cluster;
                (data_start + c * cluster, cluster)
            })
            .collect();

        let dev = FileDev::open(&img, OpenMode::Read).unwrap();
        let ours = used_ranges(&dev).unwrap().unwrap();
        let partclone = partclone_fat(&img, &fsck);
        let expected = union(&partclone, &bad);
        assert_ne!(
            expected, partclone,
            "{name}: the bad clusters are not already used"
        );
        assert_eq!(
            ours.ranges, expected,
            "{name}: partclone's map plus bad clusters"
        );
        let mtools = union(&mtools_used(&img), &bad);
        assert_eq!(ours.ranges, mtools, "{name}: mtools' map plus bad clusters");
    }
}

#[test]
fn dirty_flag_and_damage() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    // the "clean shutdown" bit of FAT[1]: FAT16 bit 15 (byte 3 of the FAT), FAT32 bit 27
    // (byte 7)
    for (kind, size, byte, mask) in [
        ("16", 40u64 << 20, 3u64, 0x80u8),
        ("32", 300 << 20, 7, 0x08),
    ] {
        let _ = std::fs::remove_file(&img);
        sparse(&img, size);
        sh(&format!("mkfs.vfat -F {kind} {} >/dev/null", img.display()));
        let dev = FileDev::open(&img, OpenMode::Read).unwrap();
        assert!(
            !used_ranges(&dev).unwrap().unwrap().dirty,
            "FAT{kind} clean"
        );
        let reserved = u16::from_le_bytes(read_at(&img, 0x0E, 2).try_into().unwrap());
        let at = u64::from(reserved) * 512 + byte;
        let old = read_at(&img, at, 1)[0];
        assert_eq!(old & mask, mask, "FAT{kind}: mkfs leaves the volume clean");
        write_at(&img, at, &[old & !mask]);
        let dev = FileDev::open(&img, OpenMode::Read).unwrap();
        assert!(used_ranges(&dev).unwrap().unwrap().dirty, "FAT{kind} dirty");
    }

    // a volume that claims more sectors than the partition has
    sparse(&img, 40 << 20);
    sh(&format!("mkfs.vfat -F 16 {} >/dev/null", img.display()));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(20 << 20)
        .unwrap();
    let dev = FileDev::open(&img, OpenMode::Read).unwrap();
    let e = used_ranges(&dev).unwrap().unwrap_err();
    assert!(e.0.contains("exceed the partition"), "{e}");
}
