//! Tier 1: the ext used-block map must equal the complement of dumpe2fs's free-block lists,
//! block for block, across layouts (flex_bg, no flex_bg, 64bit, meta_bg, 1 KiB blocks, ext2,
//! sparse_super2) on filesystems filled with files by `mkfs -d`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use lifeboat::blockdev::{FileDev, OpenMode};
use lifeboat::fsmap::ext::used_ranges;
use std::path::Path;

/// Used block ranges according to dumpe2fs (complement of "Free blocks:" lists).
fn dumpe2fs_used(img: &Path) -> (u64, Vec<(u64, u64)>) {
    let out = sh(&format!("dumpe2fs {} 2>/dev/null", img.display()));
    let field = |name: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let blocks = field("Block count:");
    let bsize = field("Block size:");
    let mut free: Vec<(u64, u64)> = Vec::new();
    for l in out.lines() {
        // per-group lines are indented; the superblock's "Free blocks:" is a count
        let Some(list) = l.strip_prefix("  Free blocks:") else {
            continue;
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (a, b) = match item.split_once('-') {
                Some((a, b)) => (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()),
                None => (item.parse().unwrap(), item.parse().unwrap()),
            };
            free.push((a, b + 1));
        }
    }
    free.sort_unstable();
    let mut used = Vec::new();
    let mut at = 0;
    for (a, b) in free {
        if a > at {
            used.push((at * bsize, (a - at) * bsize));
        }
        at = b;
    }
    if at < blocks {
        used.push((at * bsize, (blocks - at) * bsize));
    }
    (bsize, used)
}

fn fill_dir(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    let mut x: u64 = 42;
    for i in 0..40 {
        let len = 1000 + (i * 37_123) % 400_000;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let sub = if i % 3 == 0 { "sub/deeper" } else { "sub" };
        std::fs::write(dir.join(sub).join(format!("f{i}.bin")), data).unwrap();
    }
}

#[test]
fn ext_maps_match_dumpe2fs() {
    for t in ["mkfs.ext4", "dumpe2fs"] {
        require_tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let content = dir.path().join("content");
    fill_dir(&content);
    let cases = [
        ("ext4 default", "mkfs.ext4", "", "64M"),
        ("ext4 no flex_bg", "mkfs.ext4", "-O ^flex_bg", "64M"),
        (
            "ext4 64bit 1k blocks",
            "mkfs.ext4",
            "-O 64bit -b 1024",
            "48M",
        ),
        (
            "ext4 meta_bg",
            "mkfs.ext4",
            "-O meta_bg,^resize_inode",
            "200M",
        ),
        (
            "ext4 many groups",
            "mkfs.ext4",
            "-b 1024 -g 1024 -N 2048",
            "40M",
        ),
        ("ext4 sparse_super2", "mkfs.ext4", "-O sparse_super2", "96M"),
        ("ext3", "mkfs.ext3", "", "40M"),
        ("ext2 1k", "mkfs.ext2", "-b 1024", "20M"),
        (
            "ext4 no uninit",
            "mkfs.ext4",
            "-O ^metadata_csum,^uninit_bg",
            "64M",
        ),
    ];
    for (name, mkfs, opts, size) in cases {
        let img = dir.path().join("fs.img");
        let _ = std::fs::remove_file(&img);
        sh(&format!(
            "{mkfs} -q -F {opts} -d {} {} {size}",
            content.display(),
            img.display()
        ));
        let dev = FileDev::open(&img, OpenMode::Read).unwrap();
        let ours = used_ranges(&dev).unwrap().unwrap();
        let (_, theirs) = dumpe2fs_used(&img);
        assert_eq!(ours, theirs, "{name}: used ranges differ from dumpe2fs");
        let used: u64 = ours.iter().map(|r| r.1).sum();
        assert!(used > 15 * 400_000 / 2, "{name}: files are in the map");
    }
}

#[test]
fn damaged_ext_is_refused_not_guessed() {
    require_tool("mkfs.ext4");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    sh(&format!("mkfs.ext4 -q -F -b 4096 {} 32M", img.display()));
    // a descriptor pointing its bitmap past the end
    let desc_at = 4096u64; // 4 KiB blocks: descriptors in block 1
    write_at(&img, desc_at, &u32::MAX.to_le_bytes());
    let dev = FileDev::open(&img, OpenMode::Read).unwrap();
    let e = used_ranges(&dev).unwrap().unwrap_err();
    assert!(e.0.contains("group 0: block bitmap"), "{e}");
    // a filesystem claiming more blocks than the partition has
    sh(&format!("mkfs.ext4 -q -F {} 32M", img.display()));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let dev = FileDev::open(&img, OpenMode::Read).unwrap();
    assert!(used_ranges(&dev)
        .unwrap()
        .unwrap_err()
        .0
        .contains("exceed the partition"));
}
