//! Tier 2 (root): an LVM2 physical volume imaged by the used blocks of its logical volumes'
//! filesystems. The host kernel has no device-mapper, so the volume group is made by lvm2's
//! own tools (`pvcreate`, `vgcreate`, and `vgcfgrestore` of metadata naming the LVs, which
//! needs no kernel help), and each LV's filesystem is made in a file and written to its
//! extents: an ext4 LV in two segments, out of order, and an XFS LV. Free extents hold junk.
//! After a restore, lvm2 reads the same volume group from the copy, every LV reassembled from
//! its extents passes its checker and holds the same files, and the junk is not copied.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{fill_posix, p, snapshot};
use common::{
    lifeboat_stdout, noise, plan_region, read_at, require_root, require_tool, sh, sparse, write_at,
    LoopDev, Mount,
};
use std::path::Path;
use std::process::Command;

const MIB: u64 = 1 << 20;
/// LVM's default extent: 4 MiB.
const EXTENT: u64 = 4 * MIB;
const DISK: u64 = 560 * MIB;
/// The partition (and PV) starts at 1 MiB; LVM puts the first extent 1 MiB into the PV.
const PV: u64 = MIB;
const PE_START: u64 = PV + MIB;

/// The LVs: name, filesystem, and segments as (PV extent, extents), in LV order.
const ROOT: (&str, &str, &[(u64, u64)]) = ("root", "ext4", &[(30, 10), (5, 15)]);
/// (mkfs.xfs makes nothing under 300 MB)
const DATA: (&str, &str, &[(u64, u64)]) = ("data", "xfs", &[(45, 76)]);

fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    for t in [
        "sfdisk",
        "partx",
        "losetup",
        "pvcreate",
        "vgcreate",
        "vgcfgbackup",
        "vgcfgrestore",
        "vgremove",
        "lvs",
        "mkfs.ext4",
        "e2fsck",
        "mkfs.xfs",
        "xfs_repair",
    ] {
        require_tool(t);
    }
    true
}

/// lvm2 without device-mapper: no udev waits, no locking daemon, no leaked-fd chatter.
fn lvm(args: &str) -> String {
    sh(&format!(
        "LVM_SUPPRESS_FD_WARNINGS=1 {args} --config 'activation {{ udev_sync=0 udev_rules=0 }}' 2>&1"
    ))
}

/// An LV's segments as LVM2 metadata.
fn lv_text(name: &str, segs: &[(u64, u64)]) -> String {
    let mut t = format!(
        "\t\t{name} {{\n\t\t\tid = \"lbtest-{name:0>4}-0000-0000-0000-0000-000000\"\n\t\t\tstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\n\t\t\tflags = []\n\t\t\tsegment_count = {}\n",
        segs.len()
    );
    let mut start = 0;
    for (i, (first, count)) in segs.iter().enumerate() {
        t.push_str(&format!(
            "\t\t\tsegment{} {{\n\t\t\t\tstart_extent = {start}\n\t\t\t\textent_count = {count}\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", {first}\n\t\t\t\t]\n\t\t\t}}\n",
            i + 1
        ));
        start += count;
    }
    t.push_str("\t\t}\n");
    t
}

/// Reads an LV's bytes from `disk` (the whole disk file) into `out`.
fn extract(disk: &Path, segs: &[(u64, u64)], out: &Path) {
    let mut bytes = Vec::new();
    for &(first, count) in segs {
        bytes.extend(read_at(
            disk,
            PE_START + first * EXTENT,
            (count * EXTENT) as usize,
        ));
    }
    std::fs::write(out, bytes).unwrap();
}

/// Writes `file` (an LV's bytes) to its extents on `disk`.
fn place(disk: &Path, segs: &[(u64, u64)], file: &Path) {
    let bytes = std::fs::read(file).unwrap();
    let mut at = 0usize;
    for &(first, count) in segs {
        let n = (count * EXTENT) as usize;
        write_at(disk, PE_START + first * EXTENT, &bytes[at..at + n]);
        at += n;
    }
}

/// Checks an LV's filesystem (in a file) and returns its files.
fn lv_files(file: &Path, fs: &str) -> String {
    let (tool, flag) = if fs == "xfs" {
        ("xfs_repair", "-n")
    } else {
        ("e2fsck", "-fn")
    };
    let o = Command::new(tool).arg(flag).arg(file).output().unwrap();
    assert!(
        o.status.success(),
        "{tool} {flag} on the LV: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let lo = LoopDev::attach(file);
    // the source's XFS (same UUID) may be mounted too
    let opts = if fs == "xfs" { "-o ro,nouuid" } else { "-o ro" };
    let m = Mount::new(&lo.path, opts);
    snapshot(m.dir.path())
}

#[test]
fn an_lvm_pv_is_imaged_by_its_logical_volumes_used_blocks() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = t.join("disk.img");
    sparse(&disk, DISK);
    sh(&format!(
        "printf 'label: gpt\\nstart=1MiB, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\\n' | sfdisk -q {}",
        disk.display()
    ));
    // junk in the extents no LV will use
    for e in [0u64, 2, 20, 25, 42, 125] {
        write_at(&disk, PE_START + e * EXTENT, &noise(MIB as usize, e as u32));
    }
    let vg = format!("lbvg{}", std::process::id());
    {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        let pv = lo.part(1);
        lvm(&format!("pvcreate -q -ff -y {}", pv.display()));
        lvm(&format!("vgcreate -q {vg} {}", pv.display()));
        let backup = t.join("vg.txt");
        lvm(&format!("vgcfgbackup -q -f {} {vg}", backup.display()));
        let text = std::fs::read_to_string(&backup).unwrap();
        assert!(text.contains("pe_start = 2048"), "{text}");
        // the LVs go after the physical_volumes section, inside the VG's
        let end = text.rfind('}').unwrap();
        let lvs = format!(
            "\tlogical_volumes {{\n{}{}\t}}\n",
            lv_text(ROOT.0, ROOT.2),
            lv_text(DATA.0, DATA.2)
        );
        std::fs::write(&backup, format!("{}{lvs}{}", &text[..end], &text[end..])).unwrap();
        lvm(&format!("vgcfgrestore -q -f {} {vg}", backup.display()));
        let l = lvm(&format!("lvs --noheadings -o lv_name,seg_pe_ranges {vg}"));
        assert!(
            l.contains(":30-39") && l.contains(":5-19") && l.contains(":45-120"),
            "{l}"
        );
    }
    // the filesystems, made in files and written to the LVs' extents
    let mut want = Vec::new();
    for (name, fs, segs) in [ROOT, DATA] {
        let f = t.join(format!("{name}.lv"));
        let size: u64 = segs.iter().map(|s| s.1 * EXTENT).sum();
        sparse(&f, size);
        if fs == "xfs" {
            sh(&format!("mkfs.xfs -q -f -L lb{name} {}", f.display()));
        } else {
            sh(&format!("mkfs.ext4 -q -F -L lb{name} {}", f.display()));
        }
        {
            let lo = LoopDev::attach(&f);
            let m = Mount::new(&lo.path, "");
            fill_posix(m.dir.path());
            for i in 0..200u32 {
                std::fs::write(m.dir.path().join(format!("f{i}")), noise(20_000, i)).unwrap();
            }
        }
        place(&disk, segs, &f);
        want.push(lv_files(&f, fs));
    }

    let r = plan_region(&disk, &[], |r| r["fs"] == "LVM2_member");
    assert_eq!(r["method"], "used-blocks", "{r}");
    let (copy, size) = (
        r["copy_bytes"].as_u64().unwrap(),
        r["size_bytes"].as_u64().unwrap(),
    );
    assert!(copy < size / 4, "{copy} of {size} bytes to copy: {r}");
    let img = t.join("lvm.lbi");
    lifeboat_stdout(&["image", p(&disk), "-o", p(&img)]);
    let target = t.join("target.img");
    sparse(&target, DISK);
    lifeboat_stdout(&["restore", p(&img), p(&target), "--yes"]);

    // lvm2 reads the same VG and LVs from the copy
    {
        let lo = LoopDev::attach(&target);
        lo.add_partitions();
        let l = lvm(&format!(
            "lvs --devices {} --noheadings -o lv_name,seg_pe_ranges {vg}",
            lo.part(1).display()
        ));
        assert!(
            l.contains(":30-39") && l.contains(":5-19") && l.contains(":45-120"),
            "{l}"
        );
    }
    for ((name, fs, segs), want) in [ROOT, DATA].into_iter().zip(&want) {
        let f = t.join(format!("{name}.back"));
        extract(&target, segs, &f);
        assert!(lv_files(&f, fs) == *want, "LV {name}: the files differ");
    }
    // free extents are not copied
    for e in [0u64, 2, 20, 25, 42, 125] {
        assert!(
            read_at(&target, PE_START + e * EXTENT, MIB as usize)
                .iter()
                .all(|&b| b == 0),
            "free extent {e} was copied"
        );
    }
}
