//! Tier 2 (root): exFAT partitions imaged by their allocation bitmap. A GPT disk with an exFAT
//! (made by mkfs.exfat, filled through exfat-fuse: this kernel has no exfat driver) gets
//! folders of files, a third of them then deleted; it is imaged, restored to another disk and
//! every file compared (content and size, mtimes as exFAT keeps them), with `fsck.exfat -n`
//! clean on the copy and the image no larger than 1.02x `partclone.exfat | zstd -3`. A volume
//! marked dirty is copied whole, with the reason.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::p;
use common::{
    image_by_used_blocks, lifeboat_stdout, noise, plan_region, require_root, require_tool, sh,
    sparse, FuseExfat, LoopDev,
};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

/// Names, sizes, mtimes and content hashes of every file under `dir`.
fn listing(dir: &Path) -> String {
    let l = sh(&format!(
        "cd '{}' && find . -printf '%p %y %s %T@\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum",
        dir.display()
    ));
    assert!(l.lines().count() > 100, "few files: {l}");
    l
}

#[test]
fn exfat_is_imaged_by_its_bitmap_and_every_file_comes_back() {
    if !require_root() {
        return;
    }
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.exfat",
        "fsck.exfat",
        "mount.exfat-fuse",
        "partclone.exfat",
        "zstd",
    ] {
        require_tool(t);
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = t.join("disk.img");
    sparse(&disk, 200 * MIB);
    sh(&format!(
        "printf 'label: gpt\\nstart=1MiB\\n' | sfdisk -q {}",
        disk.display()
    ));
    let want = {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        sh(&format!(
            "mkfs.exfat -L LBEXFAT {} >/dev/null",
            lo.part(1).display()
        ));
        {
            let m = FuseExfat::new(&lo.part(1));
            for d in 0..6 {
                let dir = m.path().join(format!("dir{d}"));
                std::fs::create_dir(&dir).unwrap();
                for i in 0..60usize {
                    let len = 500 + (i * 7919 + d * 104_729) % 200_000;
                    std::fs::write(
                        dir.join(format!("f{i}.bin")),
                        noise(len, (d * 100 + i) as u32),
                    )
                    .unwrap();
                }
            }
            std::fs::write(m.path().join("big.bin"), noise(20 << 20, 3)).unwrap();
            sh("sync");
            for d in 0..6 {
                for i in (0..60usize).step_by(3) {
                    std::fs::remove_file(m.path().join(format!("dir{d}/f{i}.bin"))).unwrap();
                }
            }
        }
        let m = FuseExfat::new(&lo.part(1));
        listing(m.path())
    };
    let img = t.join("exfat.lbi");
    image_by_used_blocks(&disk, &img, "exfat", 2);

    let target = t.join("target.img");
    sparse(&target, 200 * MIB);
    lifeboat_stdout(&["restore", p(&img), p(&target), "--yes"]);
    let lo = LoopDev::attach(&target);
    lo.add_partitions();
    let o = Command::new("fsck.exfat")
        .arg("-n")
        .arg(lo.part(1))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "fsck.exfat -n on the restored copy: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let m = FuseExfat::new(&lo.part(1));
    assert!(
        listing(m.path()) == want,
        "the restored files differ from the source's"
    );
    drop(m);
    drop(lo);

    // marked dirty (VolumeFlags, outside the boot checksum): copied whole, with the reason
    common::write_at(&disk, MIB + 106, &[0x02, 0x00]);
    let r = plan_region(&disk, &[], |r| r["fs"] == "exfat");
    assert_eq!(r["method"], "all", "{r}");
    assert!(r["reason"].as_str().unwrap_or("").contains("dirty"), "{r}");
}
