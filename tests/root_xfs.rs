//! Tier 2 (root): XFS partitions imaged by their used blocks. A GPT disk with an XFS of 1 KiB
//! blocks is filled with files (thousands of small ones, half of them then deleted, so the
//! free-space B+trees have more than one level), imaged, restored to another disk, and every
//! file compared (content, size, links, mode, mtime, xattrs); `xfs_repair -n` must pass on the
//! copy. An XFS whose log needs replaying (a forced shutdown) must be copied whole, and its
//! files must be there after the restored copy replays its log.
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

fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.xfs",
        "xfs_db",
        "xfs_repair",
        "xfs_io",
    ] {
        require_tool(t);
    }
    true
}

/// A 420 MiB GPT disk file with one XFS partition (1 KiB blocks) from 1 MiB.
fn disk(dir: &Path) -> std::path::PathBuf {
    let disk = dir.join("disk.img");
    sparse(&disk, 420 * MIB);
    sh(&format!(
        "printf 'label: gpt\\nstart=1MiB\\n' | sfdisk -q {}",
        disk.display()
    ));
    disk
}

fn restore_and_compare(img: &Path, dir: &Path, want: &str) {
    let target = dir.join("target.img");
    sparse(&target, 420 * MIB);
    lifeboat_stdout(&["restore", p(img), p(&target), "--yes"]);
    let lo = LoopDev::attach(&target);
    lo.add_partitions();
    let o = Command::new("xfs_repair")
        .arg("-n")
        .arg(lo.part(1))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "xfs_repair -n on the restored copy: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let m = Mount::new(&lo.part(1), "-o ro");
    let got = snapshot(m.dir.path());
    assert!(got == want, "the restored files differ from the source's");
}

#[test]
fn xfs_is_imaged_by_its_used_blocks_and_every_file_comes_back() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = disk(t);
    let want = {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        sh(&format!(
            "mkfs.xfs -q -f -b size=1024 -L lbxfs {}",
            lo.part(1).display()
        ));
        {
            let m = Mount::new(&lo.part(1), "");
            let root = m.dir.path();
            fill_posix(root);
            // thousands of small files, every other one deleted: free space in many pieces
            for d in 0..8 {
                std::fs::create_dir(root.join(format!("small{d}"))).unwrap();
            }
            for i in 0..3200usize {
                let f = root.join(format!("small{}/f{i}", i % 8));
                std::fs::write(&f, common::noise(1024 + (i * 577) % 6000, i as u32)).unwrap();
            }
            sh("sync");
            // (every other file of each folder: the files of a folder lie together)
            for i in (0..3200usize).filter(|i| (i / 8) % 2 == 0) {
                std::fs::remove_file(root.join(format!("small{}/f{i}", i % 8))).unwrap();
            }
            sh("sync");
        }
        // the free-space trees are deeper than one block somewhere
        let levels: u64 = (0..4)
            .map(|ag| {
                let out = sh(&format!(
                    "xfs_db -r -c 'agf {ag}' -c 'p bnolevel' {}",
                    lo.part(1).display()
                ));
                out.trim().rsplit(' ').next().unwrap().parse().unwrap()
            })
            .max()
            .unwrap();
        assert!(levels >= 2, "the free-space trees have {levels} level(s)");
        let m = Mount::new(&lo.part(1), "-o ro");
        snapshot(m.dir.path())
    };
    let img = t.join("xfs.lbi");
    image_by_used_blocks(&disk, &img, "xfs", 3);
    restore_and_compare(&img, t, &want);
}

#[test]
fn an_xfs_shut_down_with_its_log_unreplayed_is_copied_whole() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = disk(t);
    {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        sh(&format!("mkfs.xfs -q -f -L lbxfs {}", lo.part(1).display()));
        let m = Mount::new(&lo.part(1), "");
        fill_posix(m.dir.path());
        sh("sync");
        std::fs::write(m.dir.path().join("late.bin"), common::noise(2 << 20, 5)).unwrap();
        sh(&format!(
            "xfs_io -x -c 'shutdown -f' {}",
            m.dir.path().display()
        ));
    }
    let img = t.join("xfs.lbi");
    let r = plan_region(&disk, &[], |r| r["fs"] == "xfs");
    assert_eq!(r["method"], "all", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not cleanly unmounted"),
        "{r}"
    );
    lifeboat_stdout(&["image", p(&disk), "-o", p(&img)]);
    // what the source shows once its log is replayed, against the restored copy's
    let want = {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        let m = Mount::new(&lo.part(1), "");
        let s = snapshot(m.dir.path());
        assert!(
            s.contains("late.bin"),
            "the late file did not survive the shutdown"
        );
        s
    };
    let target = t.join("target.img");
    sparse(&target, 420 * MIB);
    lifeboat_stdout(&["restore", p(&img), p(&target), "--yes"]);
    let lo = LoopDev::attach(&target);
    lo.add_partitions();
    let m = Mount::new(&lo.part(1), "");
    assert!(snapshot(m.dir.path()) == want, "the restored files differ");
}
