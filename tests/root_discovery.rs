//! Tier 2 (root): real loop devices with ext4, FAT32 and NTFS partitions. `list` and `inspect`
//! must agree with `sfdisk --json` and `blkid`, report mounts, and O_EXCL must refuse a disk
//! whose partition is mounted. Under CI (LIFEBOAT_REQUIRE_ROOT=1) these fail instead of skipping.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use lifeboat::blockdev::{BlockDev, FileDev, OpenMode};
use lifeboat::Error;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

fn lifeboat(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn blkid(dev: &Path) -> HashMap<String, String> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(dev)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tools() {
    for t in [
        "losetup",
        "partx",
        "sgdisk",
        "sfdisk",
        "blkid",
        "mkfs.ext4",
        "mkfs.vfat",
        "mkntfs",
        "mount",
    ] {
        require_tool(t);
    }
}

/// A disk with ext4, FAT32 and NTFS partitions, formatted through the loop partition nodes.
fn make_disk(dir: &Path, gpt: bool) -> (std::path::PathBuf, LoopDev) {
    let img = dir.join("disk.img");
    sparse(&img, 160 * MIB);
    if gpt {
        sh(&format!(
            "sgdisk -n1:2048:+40M -t1:8300 -c1:linux -n2:0:+40M -t2:0700 -c2:fat -n3:0:+40M -t3:0700 -c3:win {} >/dev/null",
            img.display()
        ));
    } else {
        sh(&format!(
            "printf '2048,40M,83\\n,40M,c\\n,40M,7\\n' | sfdisk -q {}",
            img.display()
        ));
    }
    let lo = LoopDev::attach(&img);
    lo.add_partitions();
    sh(&format!(
        "mkfs.ext4 -q -F -L rootfs {}",
        lo.part(1).display()
    ));
    sh(&format!(
        "mkfs.vfat -F 32 -n DATA {} >/dev/null",
        lo.part(2).display()
    ));
    sh(&format!(
        "mkntfs -Q -F -L Windows {} >/dev/null 2>&1",
        lo.part(3).display()
    ));
    (img, lo)
}

fn check_against_tools(lo: &LoopDev, disk: &Value) {
    let sf: Value =
        serde_json::from_str(&sh(&format!("sfdisk --json {}", lo.path.display()))).unwrap();
    let sparts = sf["partitiontable"]["partitions"].as_array().unwrap();
    let parts = disk["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), sparts.len());
    let label = match sf["partitiontable"]["label"].as_str().unwrap() {
        "dos" => "mbr",
        other => other,
    };
    assert_eq!(disk["table"], label);
    assert_eq!(disk["size_bytes"], 160 * MIB);
    assert_eq!(disk["logical_sector_size"], 512);
    for (p, s) in parts.iter().zip(sparts) {
        assert_eq!(p["start_bytes"], s["start"].as_u64().unwrap() * 512);
        assert_eq!(p["size_bytes"], s["size"].as_u64().unwrap() * 512);
        assert_eq!(p["path"], s["node"], "kernel node matched to the entry");
        let node = Path::new(s["node"].as_str().unwrap());
        let b = blkid(node);
        assert_eq!(
            p["fs"].as_str(),
            b.get("TYPE").map(String::as_str),
            "{node:?}"
        );
        assert_eq!(
            p["label"].as_str(),
            b.get("LABEL").map(String::as_str),
            "{node:?}"
        );
        assert_eq!(
            p["uuid"].as_str(),
            b.get("UUID").map(String::as_str),
            "{node:?}"
        );
    }
}

fn run_scenario(gpt: bool) {
    if !require_root() {
        return;
    }
    tools();
    let dir = tempfile::tempdir().unwrap();
    let (_img, lo) = make_disk(dir.path(), gpt);
    let dev = lo.path.to_str().unwrap();

    // inspect agrees with sfdisk and blkid
    let (ok, out, err) = lifeboat(&["inspect", "--json", dev]);
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["path"], dev);
    check_against_tools(&lo, &d);
    assert!(
        d["diagnostics"].as_array().unwrap().is_empty(),
        "{}",
        d["diagnostics"]
    );
    assert_eq!(d["transport"], "loop");

    // mount the ext4 partition: list reports it, and O_EXCL refuses the disk
    let m = Mount::new(&lo.part(1), "-o ro");
    let (ok, out, err) = lifeboat(&["list", "--json"]);
    assert!(ok, "{err}");
    let all: Value = serde_json::from_str(&out).unwrap();
    let d = all
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == dev)
        .expect("our loop disk is listed");
    check_against_tools(&lo, d);
    let mp = d["partitions"][0]["mountpoint"].as_str().unwrap();
    assert_eq!(Path::new(mp), m.dir.path());
    assert!(d["partitions"][1]["mountpoint"].is_null());
    assert!(
        d["busy"].as_str().unwrap().contains("mounted"),
        "{}",
        d["busy"]
    );
    let used = d["partitions"][0]["used_bytes"].as_u64().unwrap();
    assert!(used > 0 && used < 40 * MIB);

    match FileDev::open(&lo.path, OpenMode::Write) {
        Err(Error::Busy { path, reason }) => {
            assert_eq!(path, lo.path);
            assert!(reason.contains("mounted"), "{reason}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    // the partition itself too
    assert!(matches!(
        FileDev::open(&lo.part(1), OpenMode::Write),
        Err(Error::Busy { .. })
    ));
    // human output names the mount
    let (ok, out, _) = lifeboat(&["inspect", dev]);
    assert!(ok);
    assert!(out.contains(&m.dir.path().display().to_string()), "{out}");
    assert!(
        out.contains("rootfs") && out.contains("DATA") && out.contains("Windows"),
        "{out}"
    );
    drop(m);
    let w = FileDev::open(&lo.path, OpenMode::Write).expect("free after unmount");
    assert_eq!(w.len(), 160 * MIB);
}

#[test]
fn gpt_loop_disk_matches_sfdisk_and_blkid() {
    run_scenario(true);
}

#[test]
fn mbr_loop_disk_matches_sfdisk_and_blkid() {
    run_scenario(false);
}

#[test]
fn four_kn_loop_disk() {
    if !require_root() {
        return;
    }
    tools();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("4kn.img");
    sparse(&img, 64 * MIB);
    let lo = LoopDev::attach_with(&img, "-b 4096");
    // sgdisk on the 4Kn device writes a 4096-byte-sector GPT
    sh(&format!(
        "sgdisk -n1:256:+16M -t1:8300 {} >/dev/null",
        lo.path.display()
    ));
    lo.add_partitions();
    sh(&format!("mkfs.ext4 -q -F -L four {}", lo.part(1).display()));
    let dev = FileDev::open(&lo.path, OpenMode::Read).unwrap();
    assert_eq!(dev.geometry().logical_sector_size, 4096);
    let (ok, out, err) = lifeboat(&["inspect", "--json", lo.path.to_str().unwrap()]);
    assert!(ok, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["logical_sector_size"], 4096);
    assert_eq!(d["table"], "gpt");
    assert_eq!(d["partitions"][0]["start_bytes"], 256 * 4096);
    assert_eq!(d["partitions"][0]["label"], "four");
    // the same image read as a file with the wrong sector size shows no valid GPT
    let (ok, out, _) = lifeboat(&["inspect", "--json", img.to_str().unwrap()]);
    assert!(ok);
    let f: Value = serde_json::from_str(&out).unwrap();
    assert!(f["partitions"].as_array().unwrap().is_empty());
    let (ok, out, _) = lifeboat(&[
        "inspect",
        "--json",
        "--sector-size",
        "4096",
        img.to_str().unwrap(),
    ]);
    assert!(ok);
    let f: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["partitions"][0]["label"], "four");
    assert!(f["partitions"][0]["path"].is_null());
}

#[test]
fn ioctl_geometry_and_read_only() {
    if !require_root() {
        return;
    }
    tools();
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ro.img");
    sparse(&img, 8 * MIB);
    let lo = LoopDev::attach_with(&img, "-r");
    let dev = FileDev::open(&lo.path, OpenMode::Read).unwrap();
    assert!(dev.is_block_device());
    assert_eq!(dev.geometry().size_bytes, 8 * MIB);
    assert_eq!(dev.geometry().logical_sector_size, 512);
    match FileDev::open(&lo.path, OpenMode::Write) {
        Err(Error::ReadOnly { path }) => assert_eq!(path, lo.path),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
}
