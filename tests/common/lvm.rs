//! An LVM2 test disk, made without device-mapper (the host kernel has none): lvm2's own tools
//! write the PV and the volume group (`pvcreate`, `vgcreate`, then `vgcfgrestore` of metadata
//! naming the LVs, which needs no kernel help), and each LV's filesystem is made in a file and
//! written to its extents: an ext4 LV in two segments, out of order, and an XFS LV. Free
//! extents hold junk. Used by tests/root_lvm.rs and tests/qemu_e2e.rs.
#![allow(dead_code, clippy::unwrap_used)]

use super::disks::{fill_posix, snapshot};
use super::{noise, read_at, sh, sparse, write_at, LoopDev, Mount};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
/// The disk's size.
pub const DISK: u64 = 560 * MIB;
/// LVM's default extent: 4 MiB.
pub const EXTENT: u64 = 4 * MIB;
/// The partition (and PV) starts at 1 MiB; LVM puts the first extent 1 MiB into the PV.
pub const PV: u64 = MIB;
pub const PE_START: u64 = PV + MIB;

/// The LVs: name, filesystem, and segments as (PV extent, extents), in LV order.
pub const ROOT: (&str, &str, &[(u64, u64)]) = ("root", "ext4", &[(30, 10), (5, 15)]);
/// (mkfs.xfs makes nothing under 300 MB)
pub const DATA: (&str, &str, &[(u64, u64)]) = ("data", "xfs", &[(45, 76)]);

pub fn prerequisites() -> bool {
    if !super::require_root() {
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
        "mkswap",
        "blkid",
    ] {
        super::require_tool(t);
    }
    true
}

/// lvm2 without device-mapper: no udev waits, no locking daemon, no leaked-fd chatter.
pub fn lvm(args: &str) -> String {
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
pub fn extract(disk: &Path, segs: &[(u64, u64)], out: &Path) {
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
pub fn lv_files(file: &Path, fs: &str) -> String {
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

/// The swap partition (2) after the PV: its label and UUID.
pub const SWAP_LABEL: &str = "lbswap";
pub const SWAP_UUID: &str = "4c494645-424f-4154-0000-00000000005a";

/// Free extents that hold junk, which an image must not copy.
pub const JUNK: [u64; 6] = [0, 2, 20, 25, 42, 125];

/// Builds the disk `dir/disk.img`: GPT, an LVM partition from 1 MiB (540 MiB) holding volume
/// group `vg` with the LVs [`ROOT`] and [`DATA`] full of files, and a 16 MiB swap partition. Returns the disk and what
/// [`lv_files`] gives for each LV.
pub fn build(dir: &Path, vg: &str) -> (PathBuf, Vec<String>) {
    let t = dir;
    let disk = t.join("disk.img");
    sparse(&disk, DISK);
    sh(&format!(
        "printf 'label: gpt\\nstart=1MiB, size=540MiB, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\\nstart=541MiB, size=16MiB, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F\\n' | sfdisk -q {}",
        disk.display()
    ));
    for e in JUNK {
        write_at(&disk, PE_START + e * EXTENT, &noise(MIB as usize, e as u32));
    }
    {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        sh(&format!(
            "mkswap -q -L {SWAP_LABEL} -U {SWAP_UUID} {}",
            lo.part(2).display()
        ));
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
        check_lvs(&pv, vg);
    }
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
        std::fs::remove_file(&f).unwrap();
    }
    (disk, want)
}

/// lvm2 reads the volume group `vg`, with the LVs' extents where [`build`] put them, from `pv`.
pub fn check_lvs(pv: &Path, vg: &str) {
    let l = lvm(&format!(
        "lvs --devices {} --noheadings -o lv_name,seg_pe_ranges {vg}",
        pv.display()
    ));
    assert!(
        l.contains(":30-39") && l.contains(":5-19") && l.contains(":45-120"),
        "{l}"
    );
}

/// The copy `target` (a disk file) of [`build`]'s disk: lvm2 reads the same volume group, each
/// LV passes its checker with the same files as `want`, and the junk in free extents was not
/// copied.
pub fn check_copy(target: &Path, dir: &Path, vg: &str, want: &[String]) {
    {
        let lo = LoopDev::attach(target);
        lo.add_partitions();
        check_lvs(&lo.part(1), vg);
        let id = sh(&format!(
            "blkid -p -o value -s LABEL -s UUID {}",
            lo.part(2).display()
        ));
        assert!(
            id.contains(SWAP_LABEL) && id.contains(SWAP_UUID),
            "the swap partition: {id}"
        );
    }
    for ((name, fs, segs), want) in [ROOT, DATA].into_iter().zip(want) {
        let f = dir.join(format!("{name}.back"));
        extract(target, segs, &f);
        assert!(lv_files(&f, fs) == *want, "LV {name}: the files differ");
        std::fs::remove_file(&f).unwrap();
    }
    for e in JUNK {
        assert!(
            read_at(target, PE_START + e * EXTENT, MIB as usize)
                .iter()
                .all(|&b| b == 0),
            "free extent {e} was copied"
        );
    }
}
