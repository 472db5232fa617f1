//! Tier 2 (root): disks moved between 512-byte and 4096-byte logical sectors (4Kn), on loop
//! devices (`losetup -b 4096`). A 512-byte GPT disk with ext4 and NTFS is restored and cloned
//! onto a 4Kn disk, and the 4Kn copy imaged and restored onto a 512-byte disk again: every
//! file matches, `e2fsck -fn` and `ntfsfix -n` are clean, and the GPT passes `sgdisk -v` at
//! the new size. An MBR disk goes to 4Kn too. A FAT with 512-byte sectors cannot live on a
//! 4Kn disk: the restore and the clone are refused, naming the partition, and the target is
//! left as it was.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{contents, fill_posix, p, sha, stderr, Fs, MIB};
use common::{lifeboat_fails, lifeboat_stdout, require_root, require_tool, sh, sparse};
use common::{LoopDev, Mount};
use std::path::{Path, PathBuf};

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
        "mkfs.ext4",
        "e2fsck",
        "mkntfs",
        "ntfsfix",
        "mkfs.vfat",
    ] {
        require_tool(t);
    }
    true
}

/// A 128 MiB disk file of 512-byte sectors with a `label` ("gpt" or "dos") table: p1 ext4
/// with 4 KiB blocks (1..61 MiB), p2 `second` (61..121 MiB), both full of files.
fn source(dir: &Path, label: &str, second: Fs) -> (PathBuf, Vec<String>) {
    let file = dir.join("src.img");
    sparse(&file, 128 * MIB);
    let (t1, t2) = match (label, second) {
        ("gpt", Fs::Ntfs) => (
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        ),
        ("gpt", _) => (
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        ),
        (_, Fs::Ntfs) => ("83", "7"),
        _ => ("83", "c"),
    };
    sh(&format!(
        "printf 'label: {label}\\nstart=1MiB, size=60MiB, type={t1}\\nstart=61MiB, size=60MiB, type={t2}\\n' | sfdisk -q {}",
        file.display()
    ));
    let lo = LoopDev::attach(&file);
    lo.add_partitions();
    sh(&format!(
        "mkfs.ext4 -q -b 4096 -L lb4k1 {}",
        lo.part(1).display()
    ));
    {
        let m = Mount::new(&lo.part(1), "");
        fill_posix(m.dir.path());
    }
    match second {
        Fs::Ntfs => {
            sh(&format!(
                "mkntfs -q -F -Q -s 512 -L lb4k2 {} >/dev/null 2>&1",
                lo.part(2).display()
            ));
            let m = Mount::new(&lo.part(2), "-t ntfs-3g");
            fill_posix(m.dir.path());
        }
        _ => {
            sh(&format!(
                "mkfs.vfat -F 32 -S 512 -n LB4K2 {} >/dev/null",
                lo.part(2).display()
            ));
        }
    }
    sh("sync");
    let want = if second == Fs::Ntfs {
        vec![
            contents(&lo.part(1), Fs::Ext4, dir, "src-p1"),
            contents(&lo.part(2), Fs::Ntfs, dir, "src-p2"),
        ]
    } else {
        Vec::new()
    };
    (file, want)
}

/// A loop target of `ss`-byte sectors over a new 128 MiB file named `name`, with junk in its
/// first MiB.
fn target(dir: &Path, name: &str, ss: u32) -> (LoopDev, PathBuf) {
    common::disks::target(dir, name, 128 * MIB, ss, &[0])
}

/// The target holds the source's files, its filesystems are clean, and its GPT verifies at
/// its own sector size (`gpt`) with partitions at the same bytes as the source's.
fn check_copy(t: &LoopDev, ss: u32, gpt: bool, want: &[String], dir: &Path, name: &str) {
    assert_eq!(
        sh(&format!("blockdev --getss {}", t.path.display())).trim(),
        ss.to_string()
    );
    if gpt {
        let v = sh(&format!("sgdisk -v {}", t.path.display()));
        assert!(v.contains("No problems found"), "{name}: sgdisk -v: {v}");
    }
    let u = u64::from(ss);
    let dump = sh(&format!("sfdisk -d {}", t.path.display()));
    for (n, start) in [(1, MIB), (2, 61 * MIB)] {
        let line = dump
            .lines()
            .find(|l| l.contains(&format!("{}p{n} ", t.path.display())))
            .unwrap_or_else(|| panic!("{name}: no partition {n} in {dump}"));
        assert!(
            line.contains(&format!("start={:>12}", start / u))
                || line.contains(&format!("start= {}", start / u))
                || line.contains(&format!("start={}", start / u)),
            "{name}: partition {n} is not at byte {start}: {line}"
        );
    }
    // restore and clone add the nodes themselves (BLKPG)
    assert!(t.part(2).exists(), "{name}: no partition nodes");
    let got = vec![
        contents(&t.part(1), Fs::Ext4, dir, &format!("{name}-p1")),
        contents(&t.part(2), Fs::Ntfs, dir, &format!("{name}-p2")),
    ];
    assert!(got == want, "{name}: the files differ from the source's");
}

#[test]
fn a_512_byte_gpt_disk_goes_to_4kn_by_restore_and_clone_and_comes_back() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (src, want) = source(d, "gpt", Fs::Ntfs);
    let img = d.join("512.lbi");
    lifeboat_stdout(&["image", p(&src), "-o", p(&img)]);

    // restore onto 4Kn
    let (k4, _f) = target(d, "4k", 4096);
    let out = common::run_lifeboat(&["restore", p(&img), p(&k4.path), "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rebuilt in the target's sectors"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("partition 2: its NTFS records 512-byte sectors"),
        "{}",
        stderr(&out)
    );
    check_copy(&k4, 4096, true, &want, d, "restored-4k");

    // and back: the 4Kn disk imaged, restored onto 512-byte sectors
    let img4 = d.join("4k.lbi");
    lifeboat_stdout(&["image", p(&k4.path), "-o", p(&img4)]);
    let (back, _g) = target(d, "back", 512);
    lifeboat_stdout(&["restore", p(&img4), p(&back.path), "--yes"]);
    check_copy(&back, 512, true, &want, d, "back-512");

    // clone, 512 onto 4Kn
    let src_lo = LoopDev::attach(&src);
    let (c4, _h) = target(d, "clone4k", 4096);
    lifeboat_stdout(&["clone", p(&src_lo.path), p(&c4.path), "--yes"]);
    check_copy(&c4, 4096, true, &want, d, "cloned-4k");
}

#[test]
fn an_mbr_disk_goes_to_4kn() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (src, want) = source(d, "dos", Fs::Ntfs);
    let img = d.join("mbr.lbi");
    lifeboat_stdout(&["image", p(&src), "-o", p(&img)]);
    let (k4, _f) = target(d, "4k", 4096);
    lifeboat_stdout(&["restore", p(&img), p(&k4.path), "--yes"]);
    check_copy(&k4, 4096, false, &want, d, "mbr-4k");
}

#[test]
fn a_fat_with_512_byte_sectors_is_refused_on_4kn_and_nothing_is_touched() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (src, _) = source(d, "gpt", Fs::Fat);
    let img = d.join("fat.lbi");
    lifeboat_stdout(&["image", p(&src), "-o", p(&img)]);
    let (k4, _f) = target(d, "4k", 4096);
    let before = sha(&k4.path);
    let want =
        "partition 2 holds FAT32 with 512-byte sectors, which cannot live on 4096-byte sectors";
    let e = lifeboat_fails(&["restore", p(&img), p(&k4.path), "--yes"]);
    assert!(e.contains(want), "{e}");
    assert!(e.contains(&k4.path.display().to_string()), "{e}");
    let src_lo = LoopDev::attach(&src);
    let e = lifeboat_fails(&["clone", p(&src_lo.path), p(&k4.path), "--yes"]);
    assert!(e.contains(want), "{e}");
    assert_eq!(sha(&k4.path), before, "the target was written");
}
