//! Tier 1: the NTFS used-block map must equal partclone.ntfs's domain map (`partclone.ntfs
//! -D`, which reads `$Bitmap` through libntfs-3g) cluster for cluster, plus the backup boot
//! sector after the last cluster, which partclone leaves out. Volumes come from `mkntfs` on
//! sparse files (512 B to 128 KiB clusters, 512- and 4096-byte sectors) and are filled with
//! `ntfscp` (no mount needed) or, as root, through an `ntfs-3g` FUSE mount (subdirectories,
//! deletions). The dirty flag and `hiberfil.sys` detection are checked against volumes edited
//! to match, with `ntfsinfo` confirming the edit. Detection's `used_bytes` (what `lifeboat
//! list` and `inspect` show) must equal ntfs-3g's count (`ntfscluster --info`, as `df`).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use lifeboat::blockdev::{FileDev, OpenMode};
use lifeboat::fsmap::ntfs::{used_ranges, NtfsMap};
use std::path::Path;

fn require_tools() {
    for t in ["mkntfs", "ntfscp", "ntfsinfo", "partclone.ntfs"] {
        require_tool(t);
    }
}

/// Used ranges from a ddrescue domain log written by `partclone.ntfs -D`.
fn partclone_used(img: &Path) -> Vec<(u64, u64)> {
    let log = img.with_extension("domain");
    sh(&format!(
        "partclone.ntfs -q -D -s {} -O {} >/dev/null 2>&1",
        img.display(),
        log.display()
    ));
    let text = std::fs::read_to_string(&log).unwrap();
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    let mut used = Vec::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if let [pos, size, "+"] = f[..] {
            used.push((hex(pos), hex(size)));
        }
    }
    assert!(!used.is_empty(), "empty domain log:\n{text}");
    union(&used, &[])
}

/// Sorted, merged union of two range lists.
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

fn random_file(path: &Path, len: u64, seed: u64, head: &[u8]) {
    let mut x = seed | 1;
    let mut data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    data[..head.len()].copy_from_slice(head);
    std::fs::write(path, data).unwrap();
}

fn mkntfs(img: &Path, size: u64, opts: &str) {
    let _ = std::fs::remove_file(img);
    sparse(img, size);
    sh(&format!("mkntfs -F -Q {opts} {} >/dev/null", img.display()));
}

fn ntfscp(img: &Path, local: &Path, dest: &str) {
    sh(&format!(
        "ntfscp -q {} {} {dest}",
        img.display(),
        local.display()
    ));
}

fn map(img: &Path) -> NtfsMap {
    let dev = FileDev::open(img, OpenMode::Read).unwrap();
    used_ranges(&dev).unwrap().unwrap()
}

/// Asserts our map is partclone's plus the backup boot sector (the image's last sector).
fn assert_matches_partclone(name: &str, img: &Path, sector: u64) -> NtfsMap {
    let ours = map(img);
    let size = std::fs::metadata(img).unwrap().len();
    let expected = union(&partclone_used(img), &[(size - sector, sector)]);
    assert_eq!(ours.ranges, expected, "{name}: differs from partclone");
    assert!(!ours.dirty && !ours.hibernated, "{name}");
    assert_eq!(ours.reason_unsafe, None, "{name}");
    ours
}

#[test]
fn ntfs_maps_match_partclone() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ntfs.img");
    let cases: [(&str, u64, &str, u64); 5] = [
        ("64 MiB, 4 KiB clusters", 64 << 20, "", 512),
        ("64 MiB, 512 B clusters", 64 << 20, "-c 512", 512),
        ("200 MiB, 64 KiB clusters", 200 << 20, "-c 65536", 512),
        ("200 MiB, 128 KiB clusters", 200 << 20, "-c 131072", 512),
        ("200 MiB, 4 KiB sectors", 200 << 20, "-s 4096 -c 4096", 4096),
    ];
    for (name, size, opts, sector) in cases {
        mkntfs(&img, size, opts);
        let empty = assert_matches_partclone(name, &img, sector);
        let mut kept = 0;
        for (n, len) in [1u64, 900, 5000, 70_000, size / 40, size / 9, size / 5]
            .into_iter()
            .enumerate()
        {
            let local = dir.path().join("f");
            random_file(&local, len, n as u64 + 3, b"");
            ntfscp(&img, &local, &format!("/f{n}.bin"));
            kept += len;
        }
        let full = assert_matches_partclone(name, &img, sector);
        let used = |m: &NtfsMap| m.ranges.iter().map(|r| r.1).sum::<u64>();
        assert!(
            used(&full) > used(&empty) + kept / 2,
            "{name}: files counted"
        );
    }
}

#[test]
fn ntfs_map_after_mounted_changes() {
    require_tools();
    if !require_root() {
        return;
    }
    require_tool("ntfs-3g");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ntfs.img");
    mkntfs(&img, 200 << 20, "");
    {
        let m = Mount::new(&img, "-t ntfs-3g");
        let root = m.dir.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        for n in 0..60u64 {
            let sub = ["", "a", "a/b", "a/b/c"][n as usize % 4];
            random_file(
                &root.join(sub).join(format!("f{n}")),
                100 + n * n * 1500,
                n,
                b"",
            );
        }
        for n in (0..60).step_by(3) {
            let sub = ["", "a", "a/b", "a/b/c"][n % 4];
            std::fs::remove_file(root.join(sub).join(format!("f{n}"))).unwrap();
        }
    }
    assert_matches_partclone("after a mount", &img, 512);
}

/// Byte offsets of `$VOLUME_INFORMATION`'s flags in MFT record 3 and in its `$MFTMirr` copy
/// (the first records follow each other from the boot sector's MFT and mirror clusters).
fn volume_flags_offsets(img: &Path) -> [u64; 2] {
    let bs = read_at(img, 0, 512);
    let bps = u64::from(u16::from_le_bytes([bs[11], bs[12]]));
    let cluster = bps * u64::from(bs[13]);
    let mft = u64::from_le_bytes(bs[0x30..0x38].try_into().unwrap()) * cluster;
    let rs = match bs[0x40] as i8 {
        v if v > 0 => v as u64 * cluster,
        v => 1 << -v,
    };
    let mirror = u64::from_le_bytes(bs[0x38..0x40].try_into().unwrap()) * cluster;
    let rec_at = mft + 3 * rs;
    let rec = read_at(img, rec_at, rs as usize);
    let mut pos = u16::from_le_bytes([rec[0x14], rec[0x15]]) as usize;
    loop {
        let kind = u32::from_le_bytes(rec[pos..pos + 4].try_into().unwrap());
        let len = u32::from_le_bytes(rec[pos + 4..pos + 8].try_into().unwrap()) as usize;
        assert_ne!(kind, 0xFFFF_FFFF, "no $VOLUME_INFORMATION");
        if kind == 0x70 {
            let value = u16::from_le_bytes([rec[pos + 20], rec[pos + 21]]) as usize;
            let at = pos + value + 10;
            assert!(at % 512 < 510, "flags under a fixup");
            return [rec_at + at as u64, mirror + 3 * rs + at as u64];
        }
        pos += len;
    }
}

#[test]
fn dirty_flag_follows_volume_information() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ntfs.img");
    mkntfs(&img, 64 << 20, "");
    assert!(!map(&img).dirty);
    for at in volume_flags_offsets(&img) {
        let flags = read_at(&img, at, 1)[0];
        write_at(&img, at, &[flags | 1]);
    }
    let info = sh(&format!("ntfsinfo -f -m {} 2>&1", img.display()));
    assert!(info.contains("Volume Flags: 0x0001"), "{info}");
    let m = map(&img);
    assert!(m.dirty && !m.hibernated);
    assert!(m.reason_unsafe.unwrap().contains("dirty"));
}

#[test]
fn hiberfil_sys_means_hibernated() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ntfs.img");
    let local = dir.path().join("hiberfil.sys");
    let cases: [(&str, u64, &[u8], bool); 5] = [
        ("hibernated", 1 << 20, b"hibr", true),
        ("Fast Startup", 1 << 20, b"HIBR", true),
        ("resuming, resident data", 200, b"wake", true),
        ("resumed (header zeroed)", 1 << 20, &[0; 4], false),
        ("other header", 300_000, b"RSTR", false),
    ];
    for (name, len, head, hibernated) in cases {
        mkntfs(&img, 64 << 20, "-c 65536");
        random_file(&local, len, 9, head);
        ntfscp(&img, &local, "/hiberfil.sys");
        let m = map(&img);
        assert_eq!(m.hibernated, hibernated, "{name}");
        assert_eq!(m.reason_unsafe.is_some(), hibernated, "{name}");
        // the map is exact either way
        let size = std::fs::metadata(&img).unwrap().len();
        let expected = union(&partclone_used(&img), &[(size - 512, 512)]);
        assert_eq!(m.ranges, expected, "{name}");
    }
}

/// ntfs-3g's used bytes (what `df` on an ntfs-3g mount says): the volume minus the free
/// clusters it counts in `$Bitmap`, as `ntfscluster --info` prints them.
fn ntfs3g_used(img: &Path) -> u64 {
    let info = sh(&format!("ntfscluster -f -i {} 2>/dev/null", img.display()));
    field(&info, "bytes per volume") - field(&info, "bytes of free space")
}

#[test]
fn detected_used_bytes_match_ntfs3g() {
    require_tools();
    require_tool("ntfscluster");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ntfs.img");
    let cases: [(&str, u64, &str, u64); 3] = [
        ("64 MiB, 4 KiB clusters", 64 << 20, "", 512),
        ("200 MiB, 64 KiB clusters", 200 << 20, "-c 65536", 512),
        ("200 MiB, 4 KiB sectors", 200 << 20, "-s 4096 -c 4096", 4096),
    ];
    for (name, size, opts, sector) in cases {
        mkntfs(&img, size, opts);
        for (n, len) in [0u64, 5000, size / 10, size / 4].into_iter().enumerate() {
            if len > 0 {
                let local = dir.path().join("f");
                random_file(&local, len, n as u64 + 11, b"");
                ntfscp(&img, &local, &format!("/u{n}.bin"));
            }
            let dev = FileDev::open(&img, OpenMode::Read).unwrap();
            let info = lifeboat::fsmap::detect(&dev).unwrap().unwrap();
            assert_eq!(info.used_bytes, Some(ntfs3g_used(&img)), "{name}, file {n}");
            // the map's clusters are the same ones, plus the backup boot sector
            let mapped: u64 = map(&img).ranges.iter().map(|r| r.1).sum();
            assert_eq!(info.used_bytes, Some(mapped - sector), "{name}, file {n}");
        }
    }
}
