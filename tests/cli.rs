//! Tier 1: the `lifeboat` binary end to end, unprivileged: `inspect` on disk-image files built
//! with mkfs, `list` on a fake sysfs tree, exit codes, and README usage drift.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;

fn lifeboat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds a GPT disk image whose partitions hold ext4, FAT32 and NTFS, each made with mkfs on
/// its own file and spliced in (no root, no loop devices).
fn disk_image(dir: &Path) -> std::path::PathBuf {
    for t in ["sgdisk", "mkfs.ext4", "mkfs.vfat", "mkntfs", "blkid"] {
        require_tool(t);
    }
    let img = dir.join("disk.img");
    sparse(&img, 140 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+40M -t1:8300 -c1:linux -n2:0:+40M -t2:0700 -n3:0:+40M -t3:0700 {} >/dev/null",
        img.display()
    ));
    let fs = [
        ("mkfs.ext4 -q -F -L rootfs", "ext4"),
        ("mkfs.vfat -F 32 -n DATA", "vfat"),
        ("mkntfs -Q -F -L Windows", "ntfs"),
    ];
    for (i, (mkfs, name)) in fs.iter().enumerate() {
        let part = dir.join(name);
        sparse(&part, 40 * MIB);
        sh(&format!("{mkfs} {} >/dev/null 2>&1", part.display()));
        let seek = 1 + 40 * i as u64; // MiB
        sh(&format!(
            "dd if={} of={} bs=1M seek={seek} conv=notrunc,sparse status=none",
            part.display(),
            img.display()
        ));
    }
    img
}

#[test]
fn inspect_image_file_matches_blkid() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path());
    let (code, out, err) = lifeboat(&["inspect", "--json", img.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["source"], "file");
    assert_eq!(d["table"], "gpt");
    assert_eq!(d["size_bytes"], 140 * MIB);
    assert!(d["model"].is_null() && d["serial"].is_null());
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    for (i, p) in parts.iter().enumerate() {
        assert!(p["path"].is_null());
        assert_eq!(p["number"], i + 1);
        assert_eq!(p["start_bytes"], (1 + 40 * i as u64) * MIB);
        let out = sh(&format!(
            "blkid -p -o export -O {} {}",
            p["start_bytes"],
            img.display()
        ));
        let get = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(str::to_string)
        };
        assert_eq!(p["fs"].as_str().map(str::to_string), get("TYPE"));
        assert_eq!(p["label"].as_str().map(str::to_string), get("LABEL"));
        assert_eq!(p["uuid"].as_str().map(str::to_string), get("UUID"));
        assert!(p["mountpoint"].is_null());
    }
    assert!(parts[0]["used_bytes"].as_u64().unwrap() > 0);

    let (code, out, _) = lifeboat(&["inspect", img.to_str().unwrap()]);
    assert_eq!(code, 0);
    for s in [
        "gpt table",
        "Linux filesystem",
        "rootfs",
        "DATA",
        "Windows",
        "ext4",
        "vfat",
        "ntfs",
    ] {
        assert!(out.contains(s), "{s} missing from:\n{out}");
    }
}

#[test]
fn inspect_reports_damage_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path());
    write_at(&img, 512 + 16, &[0xde, 0xad]);
    let (code, out, _) = lifeboat(&["inspect", img.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("warning: primary GPT (LBA 1) is unusable: header CRC mismatch"),
        "{out}"
    );
    assert!(
        out.contains("rootfs"),
        "partitions still come from the backup:\n{out}"
    );
}

#[test]
fn errors_and_usage_exit_codes() {
    let (code, _, err) = lifeboat(&["inspect", "/nonexistent/disk.img"]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "lifeboat: error: opening /nonexistent/disk.img: No such file or directory (os error 2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = lifeboat(&["inspect", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not a block device or a disk-image file"),
        "{err}"
    );
    let (code, _, err) = lifeboat(&["inspect", "--sector-size", "1000", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("1000 is not a sector size"));
    let (code, _, _) = lifeboat(&["frobnicate"]);
    assert_eq!(code, 2);
    // an empty file is a disk without a table, not an error
    let empty = dir.path().join("empty.img");
    sparse(&empty, 0);
    let (code, out, _) = lifeboat(&["inspect", "--json", empty.to_str().unwrap()]);
    assert_eq!(code, 0);
    let d: Value = serde_json::from_str(&out).unwrap();
    assert!(d["table"].is_null() && d["partitions"].as_array().unwrap().is_empty());
}

#[test]
fn list_on_a_fake_sysfs_tree() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    let dev = sys.join("devices/pci0000:00/0000:00:05.0/virtio2/block/vdz");
    std::fs::create_dir_all(dev.join("queue")).unwrap();
    std::fs::create_dir_all(dev.join("vdz1")).unwrap();
    let w = |p: &Path, s: &str| std::fs::write(p, s).unwrap();
    w(&dev.join("size"), "2097152\n");
    w(&dev.join("dev"), "252:0\n");
    w(&dev.join("serial"), "LIFEBOAT-TEST\n");
    w(&dev.join("removable"), "0\n");
    w(&dev.join("ro"), "0\n");
    w(&dev.join("queue/logical_block_size"), "512\n");
    w(&dev.join("queue/physical_block_size"), "4096\n");
    w(&dev.join("queue/rotational"), "0\n");
    w(&dev.join("vdz1/partition"), "1\n");
    w(&dev.join("vdz1/start"), "2048\n");
    w(&dev.join("vdz1/size"), "4096\n");
    w(&dev.join("vdz1/dev"), "252:1\n");
    std::fs::create_dir_all(sys.join("block")).unwrap();
    std::os::unix::fs::symlink(
        "../devices/pci0000:00/0000:00:05.0/virtio2/block/vdz",
        sys.join("block/vdz"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../../../virtio2", dev.join("device")).unwrap();

    let (code, out, err) = lifeboat(&["list", "--json", "--sysfs-root", sys.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let all: Value = serde_json::from_str(&out).unwrap();
    let d = &all[0];
    assert_eq!(d["path"], "/dev/vdz");
    assert_eq!(d["size_bytes"], 1u64 << 30);
    assert_eq!(d["serial"], "LIFEBOAT-TEST");
    assert_eq!(d["transport"], "virtio");
    assert_eq!(d["physical_sector_size"], 4096);
    // there is no /dev/vdz on this host: the disk still shows, with the reason
    assert!(
        d["error"].as_str().unwrap().contains("/dev/vdz"),
        "{}",
        d["error"]
    );
    let (code, out, _) = lifeboat(&["list", "--sysfs-root", sys.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("/dev/vdz  1.0 GiB  serial LIFEBOAT-TEST"),
        "{out}"
    );
    assert!(out.contains("cannot read: opening /dev/vdz"), "{out}");
}

#[test]
fn readme_usage_matches_help() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for sub in [None, Some("list"), Some("inspect")] {
        let mut args: Vec<&str> = sub.into_iter().collect();
        args.push("--help");
        let (code, help, _) = lifeboat(&args);
        assert_eq!(code, 0);
        let cmd = match sub {
            Some(s) => format!("$ lifeboat {s} --help"),
            None => "$ lifeboat --help".to_string(),
        };
        let block = format!("{cmd}\n{}\n```", help.trim_end());
        assert!(
            readme.contains(&block),
            "README usage for `{cmd}` is stale: run scripts/update-readme-usage.sh"
        );
    }
}
