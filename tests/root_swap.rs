//! Tier 2 (root): swap partitions keep only their header and ends. A GPT disk with an ext4
//! and a swap partition (mkswap with a label and UUID) is imaged; the plan copies 2 MiB of the
//! swap area (all of it with `--full-swap`, and all of a hibernated one); the restored swap
//! has the same UUID and label (blkid) and `swapon` takes it.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::p;
use common::{lifeboat_stdout, plan_region, require_root, require_tool, sh, sparse, LoopDev};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;
const UUID: &str = "4c494645-424f-4154-0000-00000000ca5e";

/// The plan's region of partition 2 (with `extra` arguments).
fn region2(disk: &Path, extra: &[&str]) -> serde_json::Value {
    plan_region(disk, extra, |r| r["partition"] == 2)
}

#[test]
fn swap_keeps_its_header_and_comes_back_with_its_uuid_and_label() {
    if !require_root() {
        return;
    }
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "mkswap",
        "swapon",
        "swapoff",
        "blkid",
        "mkfs.ext4",
    ] {
        require_tool(t);
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = t.join("disk.img");
    sparse(&disk, 100 * MIB);
    sh(&format!(
        "printf 'label: gpt\\nstart=1MiB, size=24MiB\\nsize=64MiB, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\\n' | sfdisk -q {}",
        disk.display()
    ));
    {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        sh(&format!("mkfs.ext4 -q -F {}", lo.part(1).display()));
        sh(&format!(
            "mkswap -L lbswap -U {UUID} {} >/dev/null",
            lo.part(2).display()
        ));
        // old swapped-out pages: bytes a copy of only the header leaves behind
        sh(&format!(
            "dd if=/dev/urandom of={} bs=1M seek=4 count=40 conv=notrunc status=none",
            lo.part(2).display()
        ));
    }
    let r = region2(&disk, &[]);
    assert_eq!(
        (r["fs"].as_str(), r["method"].as_str()),
        (Some("swap"), Some("used-blocks")),
        "{r}"
    );
    assert_eq!(r["copy_bytes"], 2 * MIB, "{r}");
    let r = region2(&disk, &["--full-swap"]);
    assert_eq!(r["method"], "all", "{r}");
    assert!(r["reason"].as_str().unwrap().contains("--full-swap"), "{r}");

    let img = t.join("swap.lbi");
    lifeboat_stdout(&["image", p(&disk), "-o", p(&img)]);
    let target = t.join("target.img");
    sparse(&target, 100 * MIB);
    lifeboat_stdout(&["restore", p(&img), p(&target), "--yes"]);
    let lo = LoopDev::attach(&target);
    lo.add_partitions();
    let part = lo.part(2);
    let id = sh(&format!("blkid -o export {}", part.display()));
    for want in ["TYPE=swap", "LABEL=lbswap", &format!("UUID={UUID}")] {
        assert!(id.lines().any(|l| l == want), "no {want} in {id}");
    }
    let on = Command::new("swapon").arg(&part).output().unwrap();
    assert!(
        on.status.success(),
        "swapon: {}",
        String::from_utf8_lossy(&on.stderr)
    );
    let listed = sh("swapon --show=NAME --noheadings");
    let _ = Command::new("swapoff").arg(&part).status();
    assert!(
        listed.lines().any(|l| l.trim() == p(&part)),
        "{} not in swapon --show: {listed}",
        part.display()
    );
    drop(lo);

    // hibernated to its swap: not swap any more, copied whole
    common::write_at(&disk, 25 * MIB + 4096 - 10, b"S1SUSPEND\0");
    let r = region2(&disk, &[]);
    assert_eq!(r["method"], "all", "{r}");
    assert_eq!(r["copy_bytes"], 64 * MIB, "{r}");
}
