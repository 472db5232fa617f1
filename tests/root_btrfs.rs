//! Tier 2 (root): btrfs partitions imaged by their used blocks. A GPT disk with a btrfs (DUP
//! metadata, zstd compression) is filled with files, a subvolume of thousands of small ones
//! and a snapshot of it; half of the subvolume's files and a large file are then deleted, so
//! block groups are left part-used, and a balance of the emptiest ones moves extents. It is
//! imaged, restored to another disk, `btrfs check` and `btrfs scrub` must pass on the copy,
//! and every file is compared (content, size, links, mode, mtime, xattrs). A btrfs copied
//! while fsync'ed writes wait in its tree log must be copied whole, and the restored copy must
//! replay them.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{fill_posix, p, snapshot};
use common::{
    image_by_used_blocks, lifeboat_stdout, plan_region, require_root, require_tool, sh, sparse,
    LoopDev, Mount,
};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;
const DISK: u64 = 520 * MIB;

fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.btrfs",
        "btrfs",
        "xfs_io",
    ] {
        require_tool(t);
    }
    true
}

/// A GPT disk file with one partition from 1 MiB, and a btrfs on it labelled `lbbtrfs`.
fn disk(dir: &Path, name: &str) -> std::path::PathBuf {
    let disk = dir.join(name);
    sparse(&disk, DISK);
    sh(&format!(
        "printf 'label: gpt\\nstart=1MiB\\n' | sfdisk -q {}",
        disk.display()
    ));
    let lo = LoopDev::attach(&disk);
    lo.add_partitions();
    sh(&format!(
        "mkfs.btrfs -q -f -L lbbtrfs {}",
        lo.part(1).display()
    ));
    disk
}

fn restore_and_compare(img: &Path, dir: &Path, want: &str) {
    let target = dir.join("target.img");
    sparse(&target, DISK);
    lifeboat_stdout(&["restore", p(img), p(&target), "--yes"]);
    let lo = LoopDev::attach(&target);
    lo.add_partitions();
    let o = Command::new("btrfs")
        .args(["check", "--readonly"])
        .arg(lo.part(1))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "btrfs check on the restored copy: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let m = Mount::new(&lo.part(1), "-o ro");
    // scrub reads every copy of every block and checks it against its checksum
    let scrub = Command::new("btrfs")
        .args(["scrub", "start", "-B", "-r"])
        .arg(m.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&scrub.stdout),
        String::from_utf8_lossy(&scrub.stderr)
    );
    assert!(
        scrub.status.success() && text.contains("no errors found"),
        "btrfs scrub on the restored copy: {text}"
    );
    let got = snapshot(m.dir.path());
    assert!(got == want, "the restored files differ from the source's");
}

#[test]
fn btrfs_is_imaged_by_its_used_blocks_and_every_file_comes_back() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = disk(t, "disk.img");
    let want = {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        {
            let m = Mount::new(&lo.part(1), "-o compress=zstd");
            let root = m.dir.path();
            fill_posix(root);
            // text compresses: its extents are smaller on the disk than in the file
            std::fs::write(
                root.join("text.txt"),
                "btrfs compresses this line\n".repeat(40000),
            )
            .unwrap();
            sh(&format!("btrfs -q subvolume create {}/vol", root.display()));
            for i in 0..3000usize {
                let f = root.join(format!("vol/f{i}"));
                std::fs::write(&f, common::noise(1024 + (i * 577) % 9000, i as u32)).unwrap();
            }
            std::fs::write(root.join("big.bin"), common::noise(96 << 20, 3)).unwrap();
            sh("sync");
            sh(&format!(
                "btrfs -q subvolume snapshot {0}/vol {0}/vol-snap",
                root.display()
            ));
            // half the files leave the subvolume (the snapshot keeps them), the big file goes
            for i in (0..3000usize).filter(|i| i % 2 == 0) {
                std::fs::remove_file(root.join(format!("vol/f{i}"))).unwrap();
            }
            std::fs::remove_file(root.join("big.bin")).unwrap();
            sh("sync");
            // the emptiest data block groups are balanced; the rest stay part-used
            sh(&format!(
                "btrfs -q balance start -dusage=40 {} >/dev/null",
                root.display()
            ));
            sh("sync");
        }
        let m = Mount::new(&lo.part(1), "-o ro");
        snapshot(m.dir.path())
    };
    let img = t.join("btrfs.lbi");
    image_by_used_blocks(&disk, &img, "btrfs", 3);
    restore_and_compare(&img, t, &want);
}

#[test]
fn a_btrfs_copied_with_writes_in_its_tree_log_is_copied_whole() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = disk(t, "disk.img");
    let crash = t.join("crash.img");
    {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        // a long commit interval: the fsync'ed file is in the log, not yet in a commit
        let m = Mount::new(&lo.part(1), "-o commit=300");
        fill_posix(m.dir.path());
        sh("sync");
        let late = m.dir.path().join("late.bin");
        std::fs::write(&late, common::noise(2 << 20, 5)).unwrap();
        sh(&format!("xfs_io -c fsync {}", late.display()));
        // the disk as a power cut would leave it
        sh(&format!(
            "cp --sparse=always {} {}",
            disk.display(),
            crash.display()
        ));
    }
    let r = plan_region(&crash, &[], |r| r["fs"] == "btrfs");
    assert_eq!(r["method"], "all", "{r}");
    assert!(
        r["reason"].as_str().unwrap_or("").contains("tree log"),
        "{r}"
    );
    let img = t.join("btrfs.lbi");
    lifeboat_stdout(&["image", p(&crash), "-o", p(&img)]);
    // what the crashed disk shows once its log is replayed, against the restored copy's
    let want = {
        let lo = LoopDev::attach(&crash);
        lo.add_partitions();
        let m = Mount::new(&lo.part(1), "");
        let s = snapshot(m.dir.path());
        assert!(
            s.contains("late.bin"),
            "the fsync'ed file was not in the log"
        );
        s
    };
    let target = t.join("target.img");
    sparse(&target, DISK);
    lifeboat_stdout(&["restore", p(&img), p(&target), "--yes"]);
    let lo = LoopDev::attach(&target);
    lo.add_partitions();
    let m = Mount::new(&lo.part(1), "");
    assert!(snapshot(m.dir.path()) == want, "the restored files differ");
}
