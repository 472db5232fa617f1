//! Tier 2 (root): image and restore real disks on loop devices: GPT and MBR, 512-byte and
//! 4Kn sectors, ext4 + FAT32 + NTFS full of real files (deleted files, sparse files,
//! hardlinks, xattrs, unicode names), restored onto same-size and larger disks, compared
//! file by file with their metadata, and checked with e2fsck, fsck.fat and ntfsfix. Plus the
//! refusals that protect data: busy, read-only, image-holding and wrong-sector-size targets,
//! mounted sources, and a full output filesystem.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{fill_fat, fill_posix, snapshot};
use common::{noise, require_root, require_tool, sh, sparse, LoopDev, Mount};
use std::path::Path;
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tools() {
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.ext4",
        "mkfs.vfat",
        "mkntfs",
        "mcopy",
        "mdel",
        "fsck.fat",
        "ntfsfix",
        "e2fsck",
        "setfattr",
        "getfattr",
        "mount.ntfs-3g",
    ] {
        require_tool(t);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Label {
    Gpt,
    Mbr,
}

/// A disk: p1 FAT32 48 MiB, p2 ext4 64 MiB, p3 NTFS 48 MiB; 180 MiB in all.
struct Disk {
    _file_dir: tempfile::TempDir,
    lo: LoopDev,
}

fn build(label: Label, ss: u32) -> Disk {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("src.img");
    sparse(&file, 180 * MIB);
    let lbl = if label == Label::Gpt { "gpt" } else { "dos" };
    let (t1, t2, t3) = if label == Label::Gpt {
        (
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        )
    } else {
        ("c", "83", "7")
    };
    let u = u64::from(ss);
    let script = format!(
        "label: {lbl}\nsector-size: {ss}\n\nstart={}, size={}, type={t1}\nstart={}, size={}, type={t2}\nstart={}, size={}, type={t3}\n",
        MIB / u,
        48 * MIB / u,
        49 * MIB / u,
        64 * MIB / u,
        113 * MIB / u,
        48 * MIB / u
    );
    let extra = if ss == 4096 { "-b 4096" } else { "" };
    let lo = LoopDev::attach_with(&file, extra);
    sh(&format!(
        "printf '{}' | sfdisk -q {} >/dev/null",
        script.replace('\n', "\\n"),
        lo.path.display()
    ));
    lo.add_partitions();
    let fat_ss = if ss == 4096 { "-S 4096" } else { "" };
    sh(&format!(
        "mkfs.vfat -F 32 {fat_ss} -n LBFAT {} >/dev/null",
        lo.part(1).display()
    ));
    sh(&format!("mkfs.ext4 -q -L lbext {}", lo.part(2).display()));
    sh(&format!(
        "mkntfs -q -F -Q -s {ss} -L lbntfs {} >/dev/null 2>&1",
        lo.part(3).display()
    ));
    if ss == 512 {
        // mtools cannot address FAT with 4096-byte sectors ("Error reading FAT"), so the
        // 4Kn FAT stays empty and is compared byte for byte instead.
        fill_fat(&lo.part(1), dir.path());
    }
    {
        let m = Mount::new(&lo.part(2), "");
        fill_posix(m.dir.path());
    }
    {
        let m = Mount::new(&lo.part(3), "-t ntfs-3g");
        fill_posix(m.dir.path());
    }
    sh("sync");
    Disk { _file_dir: dir, lo }
}

fn fat_snapshot(part: &Path, scratch: &Path, name: &str) -> String {
    if sh(&format!("blockdev --getss {}", part.display())).trim() == "4096" {
        let fsck = Command::new("fsck.fat")
            .arg("-n")
            .arg(part)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "fsck.fat {name}: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        return sh(&format!("sha256sum < {}", part.display()));
    }
    let out = scratch.join(format!("fat-{name}"));
    std::fs::create_dir_all(&out).unwrap();
    sh(&format!(
        "mcopy -s -n -i {} ::/* {}/",
        part.display(),
        out.display()
    ));
    let fsck = Command::new("fsck.fat")
        .arg("-n")
        .arg(part)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "fsck.fat {name}: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let l = sh(&format!(
        "mdir -/ -a -i {} ::/ | grep -v 'bytes free' ; cd {} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum",
        part.display(),
        out.display()
    ));
    assert!(l.contains("BOOTX64.EFI") && !l.contains("gone.bin"), "{l}");
    l
}

fn snapshots(d: &LoopDev, scratch: &Path, name: &str) -> (String, String, String) {
    let fat = fat_snapshot(&d.part(1), scratch, name);
    let e = Command::new("e2fsck")
        .arg("-fn")
        .arg(d.part(2))
        .output()
        .unwrap();
    assert!(
        e.status.success(),
        "e2fsck {name}: {}",
        String::from_utf8_lossy(&e.stdout)
    );
    let ext = snapshot(Mount::new(&d.part(2), "-o ro").dir.path());
    let n = Command::new("ntfsfix")
        .arg("-n")
        .arg(d.part(3))
        .output()
        .unwrap();
    assert!(
        n.status.success(),
        "ntfsfix {name}: {}",
        String::from_utf8_lossy(&n.stdout)
    );
    let ntfs = snapshot(Mount::new(&d.part(3), "-t ntfs-3g -o ro").dir.path());
    (fat, ext, ntfs)
}

fn round_trip(label: Label, ss: u32) {
    if !require_root() {
        return;
    }
    tools();
    let src = build(label, ss);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let want = snapshots(&src.lo, s, "src");
    let img = s.join("disk.lbi");
    let o = lifeboat(&["image", p(&src.lo.path), "-o", p(&img)]);
    assert!(o.status.success(), "image: {}", stderr(&o));
    let v = lifeboat(&["verify", p(&img)]);
    assert!(v.status.success(), "verify: {}", stderr(&v));
    // Every filesystem was imaged from its own used-block map (a 4Kn FAT32 this small has
    // too few clusters to be FAT32 for Windows, so it is copied whole on purpose).
    let info: serde_json::Value =
        serde_json::from_slice(&lifeboat(&["info", "--json", p(&img)]).stdout).unwrap();
    for r in info["meta"]["regions"].as_array().unwrap() {
        if let Some(n) = r["partition"].as_u64() {
            let want = if n == 1 && ss == 4096 {
                "all"
            } else {
                "used-blocks"
            };
            assert_eq!(r["method"], want, "partition {n}: {r}");
        }
    }
    let extra = if ss == 4096 { "-b 4096" } else { "" };
    for (name, size) in [("same", 180 * MIB), ("larger", 256 * MIB)] {
        let f = s.join(format!("{name}.img"));
        sparse(&f, size);
        // Old garbage on the target must not matter.
        common::write_at(&f, 0, &noise(MIB as usize, 11));
        let t = LoopDev::attach_with(&f, extra);
        let o = lifeboat(&["restore", p(&img), p(&t.path), "--yes"]);
        assert!(o.status.success(), "restore {name}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("verified by reading back (O_DIRECT)"), "{out}");
        // The kernel sees the new partitions without any help from the test.
        for n in 1..=3 {
            assert!(
                t.part(n).exists(),
                "{name}: no node for partition {n}: {out}"
            );
        }
        let got = snapshots(&t, s, name);
        assert_eq!(got.0, want.0, "{name}: FAT files differ");
        assert_eq!(got.1, want.1, "{name}: ext4 files differ");
        assert_eq!(got.2, want.2, "{name}: NTFS files differ");
        if label == Label::Gpt {
            let v = sh(&format!("sgdisk -v {} 2>&1", t.path.display()));
            assert!(v.contains("No problems found"), "{name}: {v}");
        }
    }
}

#[test]
fn gpt_512_round_trip() {
    round_trip(Label::Gpt, 512);
}

#[test]
fn mbr_512_round_trip() {
    round_trip(Label::Mbr, 512);
}

#[test]
fn gpt_4kn_round_trip() {
    round_trip(Label::Gpt, 4096);
}

#[test]
fn refusals_name_the_disk_and_the_reason() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(Label::Gpt, 512);
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let img = s.join("disk.lbi");
    assert!(lifeboat(&["image", p(&src.lo.path), "-o", p(&img)])
        .status
        .success());

    // A mounted source is refused (the image would be inconsistent).
    {
        let _m = Mount::new(&src.lo.part(2), "-o ro");
        let o = lifeboat(&["image", p(&src.lo.path), "-o", p(&s.join("m.lbi"))]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains("is busy") && e.contains("p2 is mounted at"),
            "{e}"
        );
    }
    // A busy target: one of its partitions is mounted.
    {
        let f = s.join("busy.img");
        std::fs::copy(src._file_dir.path().join("src.img"), &f).unwrap();
        let t = LoopDev::attach(&f);
        t.add_partitions();
        let _m = Mount::new(&t.part(2), "-o ro");
        let o = lifeboat(&["restore", p(&img), p(&t.path), "--yes"]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("{} is busy", t.path.display())) && e.contains("mounted"),
            "{e}"
        );
    }
    // A read-only target.
    {
        let f = s.join("ro.img");
        sparse(&f, 180 * MIB);
        let t = LoopDev::attach_with(&f, "-r");
        let o = lifeboat(&["restore", p(&img), p(&t.path), "--yes"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("is read-only"), "{}", stderr(&o));
    }
    // A target with another logical sector size, onto which the image's FAT cannot go.
    {
        let f = s.join("4k.img");
        sparse(&f, 180 * MIB);
        let t = LoopDev::attach_with(&f, "-b 4096");
        let o = lifeboat(&["restore", p(&img), p(&t.path), "--yes"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("its logical sector size is 4096 bytes, the image's 512; partition 1 holds FAT32 with 512-byte sectors"),
            "{}",
            stderr(&o)
        );
    }
    // The disk that holds the image.
    {
        let f = s.join("holder.img");
        sparse(&f, 64 * MIB);
        let t = LoopDev::attach(&f);
        sh(&format!("mkfs.ext4 -q {}", t.path.display()));
        let m = Mount::new(&t.path, "");
        let inner = m.dir.path().join("copy.lbi");
        std::fs::copy(&img, &inner).unwrap();
        let o = lifeboat(&["restore", p(&inner), p(&t.path), "--yes"]);
        assert_eq!(o.status.code(), Some(1));
        let e = stderr(&o);
        assert!(e.contains("holds the image file"), "{e}");
        // And imaging a disk onto itself.
        let o = lifeboat(&["image", p(&t.path), "-o", p(&m.dir.path().join("self.lbi"))]);
        assert_eq!(o.status.code(), Some(1));
    }
}

#[test]
fn full_output_filesystem_leaves_no_image() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(Label::Gpt, 512);
    let m = tempfile::tempdir().unwrap();
    sh(&format!(
        "mount -t tmpfs -o size=4m tmpfs {}",
        m.path().display()
    ));
    let out = m.path().join("full.lbi");
    let o = lifeboat(&["image", p(&src.lo.path), "-o", p(&out)]);
    let listing = sh(&format!("ls -A {}", m.path().display()));
    sh(&format!("umount {}", m.path().display()));
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("write error") && e.contains("No space left on device"),
        "{e}"
    );
    assert!(listing.trim().is_empty(), "left behind: {listing}");
}
