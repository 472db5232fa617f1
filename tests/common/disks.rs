//! Test disks for the root tests (tests/root_clone.rs, tests/root_fit.rs, tests/root_image.rs):
//! loop disks with a GPT or MBR layout whose filesystems are full of real files, target disks
//! with junk in them, and the files of each filesystem read back after its own checker found
//! it clean.
#![allow(dead_code, clippy::unwrap_used)]

use super::{field, noise, read_at, sh, sparse, write_at, LoopDev, Mount};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const MIB: u64 = 1 << 20;

pub fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn sha(dev: &Path) -> String {
    sh(&format!("sha256sum < {}", dev.display()))
}

// ---- filling ----

/// Files every POSIX-ish filesystem gets, written through a mounted directory: a tree, random
/// data, a unicode name, a sparse file, a hard link, an xattr, and a deleted file (its blocks
/// hold garbage that need not be copied).
pub fn fill_posix(dir: &Path) {
    std::fs::create_dir_all(dir.join("docs/deep/er")).unwrap();
    for i in 0..40 {
        std::fs::write(
            dir.join(format!("docs/deep/er/n{i}.txt")),
            format!("note {i} ").repeat(100 + i * 50),
        )
        .unwrap();
    }
    std::fs::write(dir.join("random.bin"), noise(3 * MIB as usize, 7)).unwrap();
    std::fs::write(dir.join("Grüße — 日本語 ☃.txt"), "unicode\n").unwrap();
    let f = std::fs::File::create(dir.join("sparse.bin")).unwrap();
    f.set_len(12 * MIB).unwrap();
    drop(f);
    write_at(
        &dir.join("sparse.bin"),
        6 * MIB,
        b"data in the middle of a hole",
    );
    std::fs::hard_link(dir.join("random.bin"), dir.join("hardlink.bin")).unwrap();
    sh(&format!(
        "setfattr -n user.lifeboat -v 'kept' '{}'",
        dir.join("random.bin").display()
    ));
    std::fs::write(dir.join("deleted.bin"), noise(4 * MIB as usize, 99)).unwrap();
    sh("sync");
    std::fs::remove_file(dir.join("deleted.bin")).unwrap();
}

/// 12 MiB more in six top-level folders, which ext4's allocator spreads over the block
/// groups, so that a shrink has blocks to move (the disks' other files fit at the start).
pub fn fill_spread(dir: &Path, seed: u32) {
    for i in 0..6u32 {
        let d = dir.join(format!("spread{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("bulk.bin"), noise(2 * MIB as usize, seed * 10 + i)).unwrap();
    }
    sh("sync");
}

/// Files on a FAT partition through mtools (the host kernel has no vfat driver).
pub fn fill_fat(part: &Path, scratch: &Path) {
    let src = scratch.join(format!(
        "fatsrc-{}",
        part.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::create_dir_all(src.join("EFI/BOOT")).unwrap();
    std::fs::write(src.join("EFI/BOOT/BOOTX64.EFI"), noise(700_000, 3)).unwrap();
    for i in 0..30 {
        std::fs::write(
            src.join(format!("file{i}.txt")),
            format!("fat {i}\n").repeat(500 + i * 90),
        )
        .unwrap();
    }
    std::fs::write(src.join("Ünïcode name.txt"), "fat unicode\n").unwrap();
    std::fs::write(src.join("gone.bin"), noise(2 * MIB as usize, 5)).unwrap();
    sh(&format!(
        "mcopy -s -i {} {}/* ::/",
        part.display(),
        src.display()
    ));
    sh(&format!("mdel -i {} ::/gone.bin", part.display()));
}

// ---- building ----

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Label {
    Gpt,
    Mbr,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Fs {
    /// FAT32 in an EFI system partition on GPT, type 0x0c on MBR.
    Fat,
    /// FAT32 in a Microsoft basic data partition on GPT, type 0x0c on MBR.
    FatData,
    Ext4,
    Ntfs,
    Xfs,
}

/// One partition of a test disk: number, filesystem, start and size in MiB. On MBR, numbers
/// from 5 are logical partitions; the extended partition (the next free primary number)
/// starts 1 MiB before the first of them and ends with the last.
#[derive(Clone, Copy, Debug)]
pub struct Part {
    pub n: u32,
    pub fs: Fs,
    pub start: u64,
    pub size: u64,
}

pub const fn part(n: u32, fs: Fs, start: u64, size: u64) -> Part {
    Part { n, fs, start, size }
}

/// What [`build`] adds to a plain layout.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extras {
    /// GPT partitions get names (`lb part N`).
    pub gpt_names: bool,
    /// ext4, NTFS and XFS get [`fill_spread`]'s files too.
    pub spread: bool,
}

/// A loop disk with filesystems full of files, its file `src.img` in `dir`. `lo` is declared
/// first so it is detached before its directory goes.
pub struct Disk {
    pub lo: LoopDev,
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub label: Label,
    pub ss: u32,
    pub parts: Vec<Part>,
}

pub fn losetup_extra(ss: u32) -> &'static str {
    if ss == 4096 {
        "-b 4096"
    } else {
        ""
    }
}

/// Builds a `disk_mib` MiB disk of `ss`-byte sectors in `dir` with `parts`, each filesystem
/// full of files (a FAT on 4096-byte sectors stays empty: mtools cannot write it).
pub fn build(
    dir: tempfile::TempDir,
    label: Label,
    ss: u32,
    disk_mib: u64,
    parts: &[Part],
    extras: Extras,
) -> Disk {
    let file = dir.path().join("src.img");
    sparse(&file, disk_mib * MIB);
    let u = u64::from(ss);
    let lbl = if label == Label::Gpt { "gpt" } else { "dos" };
    let mut script = format!("label: {lbl}\nsector-size: {ss}\n\n");
    let mut extended_done = false;
    for x in parts {
        let ty = match (label, x.fs) {
            (Label::Gpt, Fs::Fat) => "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            (Label::Gpt, Fs::Ext4 | Fs::Xfs) => "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            (Label::Gpt, Fs::Ntfs | Fs::FatData) => "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
            (Label::Mbr, Fs::Fat | Fs::FatData) => "c",
            (Label::Mbr, Fs::Ext4 | Fs::Xfs) => "83",
            (Label::Mbr, Fs::Ntfs) => "7",
        };
        if x.n >= 5 && !extended_done {
            let last = parts
                .iter()
                .filter(|l| l.n >= 5)
                .map(|l| l.start + l.size)
                .max();
            let ext_start = x.start - 1;
            script.push_str(&format!(
                "start={}, size={}, type=5\n",
                ext_start * MIB / u,
                (last.unwrap() - ext_start) * MIB / u
            ));
            extended_done = true;
        }
        let name = if extras.gpt_names && label == Label::Gpt {
            format!(", name=\"lb part {}\"", x.n)
        } else {
            String::new()
        };
        script.push_str(&format!(
            "start={}, size={}, type={ty}{name}\n",
            x.start * MIB / u,
            x.size * MIB / u
        ));
    }
    let lo = LoopDev::attach_with(&file, losetup_extra(ss));
    let script_file = dir.path().join("table.sfdisk");
    std::fs::write(&script_file, script).unwrap();
    sh(&format!(
        "sfdisk -q {} < {} >/dev/null",
        lo.path.display(),
        script_file.display()
    ));
    lo.add_partitions();
    for x in parts {
        let node = lo.part(x.n);
        let posix = |opts: &str| {
            let m = Mount::new(&node, opts);
            fill_posix(m.dir.path());
            if extras.spread {
                fill_spread(m.dir.path(), x.n);
            }
        };
        match x.fs {
            Fs::Fat | Fs::FatData => {
                let fat_ss = if ss == 4096 { "-S 4096" } else { "" };
                sh(&format!(
                    "mkfs.vfat -F 32 {fat_ss} -n LBFAT{} {} >/dev/null",
                    x.n,
                    node.display()
                ));
                if ss == 512 {
                    // mtools cannot read FAT with 4096-byte sectors; that one stays empty and
                    // is compared byte for byte
                    fill_fat(&node, dir.path());
                }
            }
            Fs::Ext4 => {
                sh(&format!("mkfs.ext4 -q -L lbext{} {}", x.n, node.display()));
                posix("");
            }
            Fs::Ntfs => {
                sh(&format!(
                    "mkntfs -q -F -Q -s {ss} -L lbntfs{} {} >/dev/null 2>&1",
                    x.n,
                    node.display()
                ));
                posix("-t ntfs-3g");
            }
            Fs::Xfs => {
                sh(&format!(
                    "mkfs.xfs -q -f -L lbxfs{} {}",
                    x.n,
                    node.display()
                ));
                posix("");
            }
        }
    }
    sh("sync");
    Disk {
        lo,
        dir,
        file,
        label,
        ss,
        parts: parts.to_vec(),
    }
}

/// A target disk-image file `dir/NAME.img` of `size` bytes with a MiB of junk at each of
/// `junk` (old data must not matter, and a refusal must leave it as it was).
pub fn target_file(dir: &Path, name: &str, size: u64, junk: &[u64]) -> PathBuf {
    let f = dir.join(format!("{name}.img"));
    sparse(&f, size);
    for (i, off) in junk.iter().enumerate() {
        write_at(&f, *off, &noise(MIB as usize, 11 + i as u32));
    }
    f
}

/// A target loop disk of `ss`-byte sectors over such a file.
pub fn target(dir: &Path, name: &str, size: u64, ss: u32, junk: &[u64]) -> (LoopDev, PathBuf) {
    let f = target_file(dir, name, size, junk);
    (LoopDev::attach_with(&f, losetup_extra(ss)), f)
}

// ---- reading back ----

/// Content, sizes, link counts, modes, mtimes and xattrs of every file under `dir`.
pub fn snapshot(dir: &Path) -> String {
    let listing = sh(&format!(
        "cd '{}' && find . -printf '%p %y %s %n %m %T@\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum && getfattr -R -d -m user . 2>/dev/null | grep -v '^$' || true",
        dir.display()
    ));
    assert!(
        listing.lines().count() > 40,
        "suspiciously few files in {}: {listing}",
        dir.display()
    );
    listing
}

/// `tool flag node` must succeed: a filesystem checker's verdict.
fn check(tool: &str, flag: &str, node: &Path, name: &str) {
    let o = Command::new(tool).arg(flag).arg(node).output().unwrap();
    assert!(
        o.status.success(),
        "{tool} {flag} {name}: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

pub fn fsck_fat(part: &Path, name: &str) {
    check("fsck.fat", "-n", part, name);
}

/// The FAT's files (names, sizes, dates through mdir; contents through mcopy), after a clean
/// fsck.fat. A 4Kn FAT (unreadable by mtools) is hashed whole instead.
pub fn fat_contents(part: &Path, scratch: &Path, name: &str) -> String {
    fsck_fat(part, name);
    if sh(&format!("blockdev --getss {}", part.display())).trim() == "4096" {
        return sha(part);
    }
    let out = scratch.join(format!("fat-{name}"));
    std::fs::create_dir_all(&out).unwrap();
    sh(&format!(
        "mcopy -s -n -i {} ::/* {}/",
        part.display(),
        out.display()
    ));
    let l = sh(&format!(
        "mdir -/ -a -i {} ::/ | grep -v 'bytes free' ; cd {} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum",
        part.display(),
        out.display()
    ));
    assert!(l.contains("BOOTX64.EFI") && !l.contains("gone.bin"), "{l}");
    l
}

/// The files of one filesystem after its own checker found it clean.
pub fn contents(node: &Path, fs: Fs, scratch: &Path, name: &str) -> String {
    match fs {
        Fs::Fat | Fs::FatData => fat_contents(node, scratch, name),
        Fs::Ext4 => {
            check("e2fsck", "-fn", node, name);
            snapshot(Mount::new(node, "-o ro").dir.path())
        }
        Fs::Ntfs => {
            check("ntfsfix", "-n", node, name);
            snapshot(Mount::new(node, "-t ntfs-3g -o ro").dir.path())
        }
        Fs::Xfs => {
            check("xfs_repair", "-n", node, name);
            // the source's XFS (same UUID) may be attached too
            snapshot(Mount::new(node, "-o ro,nouuid").dir.path())
        }
    }
}

pub fn all_contents(lo: &LoopDev, parts: &[Part], scratch: &Path, name: &str) -> Vec<String> {
    parts
        .iter()
        .map(|x| contents(&lo.part(x.n), x.fs, scratch, &format!("{name}-p{}", x.n)))
        .collect()
}

// ---- sizes ----

/// The size resize2fs gives an ext4 grown into a `part`-byte partition: the partition
/// rounded down to whole blocks and whole 4 KiB pages (resize2fs rounds to the page size when
/// blocks are smaller).
pub fn ext4_fill(node: &Path, part: u64) -> u64 {
    let bs = field(
        &sh(&format!("dumpe2fs -h {} 2>/dev/null", node.display())),
        "Block size:",
    );
    let unit = bs.max(4096);
    part / unit * unit
}

/// (bytes per sector, total sectors) of a FAT boot sector.
pub fn fat_bpb(node: &Path) -> (u64, u64) {
    let b = read_at(node, 0, 512);
    let bps = u64::from(u16::from_le_bytes([b[11], b[12]]));
    let t16 = u64::from(u16::from_le_bytes([b[19], b[20]]));
    let t32 = u64::from(u32::from_le_bytes(b[32..36].try_into().unwrap()));
    (bps, if t16 != 0 { t16 } else { t32 })
}

/// The filesystem's size in bytes as its own tools report it.
pub fn fs_bytes(node: &Path, fs: Fs) -> u64 {
    match fs {
        Fs::Ext4 => {
            let d = sh(&format!("dumpe2fs -h {} 2>/dev/null", node.display()));
            field(&d, "Block count:") * field(&d, "Block size:")
        }
        Fs::Ntfs => {
            let d = sh(&format!(
                "ntfsresize --info --force {} 2>&1",
                node.display()
            ));
            field(&d, "Current volume size:")
        }
        Fs::Fat | Fs::FatData => {
            let (bps, total) = fat_bpb(node);
            bps * total
        }
        Fs::Xfs => {
            let d = sh(&format!(
                "xfs_db -r -c 'sb 0' -c 'p dblocks' -c 'p blocksize' {}",
                node.display()
            ));
            let v = |k: &str| -> u64 {
                let l = d
                    .lines()
                    .find(|l| l.starts_with(k))
                    .unwrap_or_else(|| panic!("no {k} in {d}"));
                l.split('=').nth(1).unwrap().trim().parse().unwrap()
            };
            v("dblocks") * v("blocksize")
        }
    }
}

/// Where a grown last partition ends on a target of `size` bytes: before the backup GPT
/// (header + 16 KiB of entries), or at the disk's end on MBR.
pub fn grown_end(label: Label, ss: u32, size: u64) -> u64 {
    let u = u64::from(ss);
    match label {
        Label::Gpt => size - u - 16384,
        Label::Mbr => size / u * u,
    }
}

// ---- faults ----

/// The target shows no partition table: zeros in its first 34 sectors, nothing for blkid or
/// sfdisk.
pub fn no_table_left(dev: &Path, what: &str) {
    let head = read_at(dev, 0, 34 * 512);
    assert!(
        head.iter().all(|&b| b == 0),
        "{what}: the first 34 sectors are not zero"
    );
    let pt = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "PTTYPE"])
        .arg(dev)
        .output()
        .unwrap();
    assert!(
        stdout(&pt).trim().is_empty(),
        "{what}: blkid sees {}",
        stdout(&pt)
    );
    let sf = Command::new("sfdisk").arg("-d").arg(dev).output().unwrap();
    assert!(!sf.status.success(), "{what}: sfdisk reads {}", stdout(&sf));
}
