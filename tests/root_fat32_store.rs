//! Tier 2 (root): a FAT32 backup drive. A FAT32 filesystem made with mkfs.vfat on a loop
//! device, written through fusefat (the host kernel has no vfat), takes an image larger than
//! 4 GiB: `image` sees the store is FAT, says in its plan that the image is split, and writes
//! `big.lbi`, `big.lbi.001`, `big.lbi.002` with no option given (in 2 GiB volumes: fusefat
//! fails writes past 2 GiB in a file; the kernel's vfat gets 4 GiB ones). The set verifies (the image job's own
//! read-back) and restores byte for byte. A removed or truncated volume is an error that
//! names it. And a split image mounts like any other (`lifeboat mount`).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::{lifeboat_fails as fails, lifeboat_ok as ok, require_tool, sh, LoopDev};
use std::path::Path;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // fusefat lists the volume label as a file
        .filter(|n| n != "BACKUP")
        .collect();
    v.sort();
    v
}

/// Root, and the tools of a fusefat store and of the byte comparison after a restore (false:
/// skip, outside CI).
fn fat32_prerequisites() -> bool {
    if !common::require_root() {
        return false;
    }
    for t in ["fusefat", "mkfs.vfat", "cmp"] {
        require_tool(t);
    }
    true
}

/// A FAT32 store of `size` bytes in `dir`, labelled BACKUP, mounted read-write through
/// fusefat. Bind it as `let (_lo, store)`, so that the store is unmounted before the loop
/// device goes.
fn fat32_store(dir: &Path, size: u64) -> (LoopDev, common::FuseFat) {
    let fat = dir.join("fat32.img");
    common::sparse(&fat, size);
    let lo = LoopDev::attach(&fat);
    sh(&format!(
        "mkfs.vfat -F 32 -n BACKUP {} >/dev/null",
        lo.path.display()
    ));
    let store = common::FuseFat::new(&lo.path, "rw+");
    (lo, store)
}

#[test]
fn an_image_over_4_gib_on_a_fat32_store_is_split_verified_and_restored() {
    if !fat32_prerequisites() {
        return;
    }
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    // the store: 4.5 GiB FAT32 on a loop device
    let (_lo, store) = fat32_store(work.path(), 4 * GIB + 512 * MIB);

    // the source: 4 GiB + 40 MiB that do not compress, so the image is over 4 GiB
    let src = work.path().join("source.raw");
    sh(&format!(
        "head -c {} /dev/urandom > {}",
        4 * GIB + 40 * MIB,
        src.display()
    ));
    let img = store.path().join("big.lbi");
    let plan = ok(&["image", p(&src), "-o", p(&img), "--dry-run"]);
    assert!(
        plan.contains("split: into volumes of at most 2.0 GiB")
            && plan.contains("FAT through fusefat"),
        "{plan}"
    );
    // a volume size the store cannot take is refused before anything is read
    let e = fails(&["image", p(&src), "-o", p(&img), "--volume-size", "3G"]);
    assert!(
        e.contains("more than the folder takes") && e.contains("at most 2.0 GiB"),
        "{e}"
    );
    let out = ok(&["image", p(&src), "-o", p(&img)]);
    assert!(out.contains("in 3 volumes"), "{out}");
    assert_eq!(
        names(&store.path()),
        vec!["big.lbi", "big.lbi.001", "big.lbi.002"]
    );
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 2 * GIB - MIB);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", p(&img), "--json"])).unwrap();
    assert_eq!(info["files"].as_array().unwrap().len(), 3);
    assert!(info["file_bytes"].as_u64().unwrap() > 4 * GIB);

    // restore: byte for byte
    let target = work.path().join("target.raw");
    common::sparse(&target, 4 * GIB + 40 * MIB);
    ok(&["restore", p(&img), p(&target), "--yes"]);
    sh(&format!("cmp {} {}", src.display(), target.display()));
    std::fs::remove_file(&target).unwrap();
    std::fs::remove_file(&src).unwrap();

    // a volume removed, then cut short: named
    let vol = store.path().join("big.lbi.002");
    let aside = store.path().join("aside");
    std::fs::rename(&vol, &aside).unwrap();
    let e = fails(&["verify", p(&img)]);
    assert!(e.contains("big.lbi.002") && e.contains("missing"), "{e}");
    std::fs::rename(&aside, &vol).unwrap();
    let len = std::fs::metadata(&vol).unwrap().len();
    sh(&format!("truncate -s {} {}", len - MIB, vol.display()));
    let e = fails(&["verify", p(&img)]);
    assert!(e.contains("big.lbi.002") && e.contains("truncated"), "{e}");
    // and the middle one gone
    std::fs::remove_file(&vol).unwrap();
    std::fs::remove_file(store.path().join("big.lbi.001")).unwrap();
    std::fs::write(&vol, b"x").unwrap();
    let e = fails(&["verify", p(&img)]);
    assert!(e.contains("big.lbi.001") && e.contains("missing"), "{e}");
}

#[test]
fn a_split_image_mounts_like_any_other() {
    if !common::require_root() {
        return;
    }
    for t in ["sgdisk", "mke2fs"] {
        require_tool(t);
    }
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let big = common::noise(3 * MIB as usize, 5);
    std::fs::write(files.join("big.bin"), &big).unwrap();
    std::fs::write(files.join("hello.txt"), b"split but whole\n").unwrap();
    let disk = work.path().join("disk.raw");
    common::sparse(&disk, 40 * MIB);
    sh(&format!(
        "sgdisk -o -n1:2048:+30M {} >/dev/null",
        disk.display()
    ));
    sh(&format!(
        "mke2fs -q -t ext4 -F -E offset={} -d {} {} 30720",
        MIB,
        files.display(),
        disk.display()
    ));
    let img = work.path().join("disk.lbi");
    let out = ok(&["image", p(&disk), "-o", p(&img), "--volume-size", "1M"]);
    assert!(out.contains("volumes"), "{out}");
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    ok(&["mount", p(&img), p(&mnt)]);
    let got = (
        std::fs::read(mnt.join("p1/hello.txt")),
        std::fs::read(mnt.join("p1/big.bin")),
    );
    ok(&["umount", p(&mnt)]);
    assert_eq!(got.0.unwrap(), b"split but whole\n");
    assert!(got.1.unwrap() == big);
}

/// On a FUSE store the image is read in order by one thread (fusefat re-walks a file's
/// cluster chain for every read that does not follow the last one) and written through the
/// page cache (no `O_DIRECT` there). A chain made, merged and restored on a small fusefat
/// store takes those paths: the merged image restores the newer state byte for byte.
#[test]
fn a_chain_on_a_fuse_store_merges_and_restores() {
    if !fat32_prerequisites() {
        return;
    }
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let (_lo, store) = fat32_store(work.path(), 256 * MIB);
    // 24 MiB: 8 MiB of noise, 8 of zeros, 8 of text; then 1 MiB changed in the middle
    let src = work.path().join("source.raw");
    let mut bytes = common::noise(8 * MIB as usize, 9);
    bytes.extend(std::iter::repeat_n(0u8, 8 * MIB as usize));
    bytes.extend(b"lifeboat ".iter().cycle().take(8 * MIB as usize));
    std::fs::write(&src, &bytes).unwrap();
    let full = store.path().join("d.lbi");
    ok(&["image", p(&src), "-o", p(&full), "--volume-size", "4M"]);
    bytes[12 * MIB as usize..13 * MIB as usize].copy_from_slice(&common::noise(MIB as usize, 10));
    std::fs::write(&src, &bytes).unwrap();
    let incr = store.path().join("d-incr.lbi");
    ok(&["image", p(&src), "-o", p(&incr), "--parent", p(&full)]);
    let merged = store.path().join("merged.lbi");
    ok(&["merge", p(&incr), "-o", p(&merged)]);
    let target = work.path().join("target.raw");
    common::sparse(&target, 24 * MIB);
    ok(&["restore", p(&merged), p(&target), "--yes"]);
    sh(&format!("cmp {} {}", src.display(), target.display()));
}
