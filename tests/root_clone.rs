//! Tier 2 (root): `lifeboat clone` between real loop devices, and `restore --grow-last`.
//! GPT and MBR (the last partition a logical one inside an extended partition), 512-byte and
//! 4Kn sectors, ext4 + FAT32 + NTFS full of real files, cloned onto equal-size and larger
//! disks with and without `--grow-last`, compared file by file with their metadata, checked
//! with e2fsck, fsck.fat, ntfsfix and `sgdisk -v`, and the grown filesystems measured with
//! their own tools (dumpe2fs, ntfsresize, the FAT boot sector). Plus `--new-disk-id`, a GRUB
//! BIOS boot disk copied byte for byte, the refusals (each leaving the target untouched), and
//! read and write errors injected under a loop device with tests/helpers/faultfs.py.
//!
//! The host kernel has no partition-table parser: source partition nodes come from
//! `partx -a`, target nodes from lifeboat itself (BLKRRPART, then BLKPG).
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{
    all_contents, build as build_in, ext4_fill, fat_bpb, fs_bytes, grown_end, no_table_left, p,
    part, sha, snapshot, stderr, stdout, Disk, Extras, Fs, Label, Part, MIB,
};
use common::{dev_size, noise, read_at, require_root, require_tool, sh, sparse, write_at};
use common::{FaultFs, LoopDev, Mount};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

/// Runs lifeboat and panics with its output unless it succeeds.
fn ok(what: &str, args: &[&str]) -> Output {
    let o = lifeboat(args);
    assert!(
        o.status.success(),
        "{what}: lifeboat {args:?} failed ({:?}):\n{}\n{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    o
}

fn tools() {
    for t in [
        "sfdisk",
        "sgdisk",
        "partx",
        "losetup",
        "blockdev",
        "blkid",
        "mkfs.ext4",
        "dumpe2fs",
        "e2fsck",
        "mkfs.vfat",
        "fsck.fat",
        "mcopy",
        "mdel",
        "mdir",
        "mkntfs",
        "ntfsfix",
        "ntfsresize",
        "mount.ntfs-3g",
        "setfattr",
        "getfattr",
    ] {
        require_tool(t);
    }
}

/// A loop disk (in a new temporary folder) with filesystems full of files.
fn build(label: Label, ss: u32, disk_mib: u64, parts: &[Part]) -> Disk {
    let dir = tempfile::tempdir().unwrap();
    build_in(dir, label, ss, disk_mib, parts, Extras::default())
}

/// A target loop disk of `size` bytes whose first MiB holds junk (old data must not matter).
fn target(dir: &Path, name: &str, size: u64, ss: u32) -> (LoopDev, PathBuf) {
    common::disks::target(dir, name, size, ss, &[0])
}

/// The last event of `lifeboat … --json`: it must be `finished` with `ok: true`; returns its
/// summary.
fn json_finished_ok(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    let last = out.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {out}"));
    assert_eq!(v["event"], "finished", "{out}");
    assert_eq!(v["ok"], true, "{out}");
    v["summary"].clone()
}

/// One clone of `src` onto a fresh target: the files of every partition match, the kernel
/// has the new nodes, GPT targets pass `sgdisk -v`, and with `--grow-last` the last partition
/// and its filesystem reach the end of the disk.
fn clone_and_check(src: &Disk, want: &[String], name: &str, size: u64, grow: bool, json: bool) {
    let s = src.dir.path();
    let (t, _f) = target(s, name, size, src.ss);
    let mut args = vec!["clone", p(&src.lo.path), p(&t.path), "--yes"];
    if grow {
        args.push("--grow-last");
    }
    if json {
        args.push("--json");
    }
    let o = ok(name, &args);
    let out = stdout(&o);
    let summary = if json {
        json_finished_ok(&o)
    } else {
        assert!(
            out.contains("verified by reading back (O_DIRECT)"),
            "{name}: {out}"
        );
        serde_json::Value::Null
    };
    for x in &src.parts {
        assert!(
            t.part(x.n).exists(),
            "{name}: no node for partition {}: {out}",
            x.n
        );
    }
    let got = all_contents(&t, &src.parts, s, name);
    for (i, x) in src.parts.iter().enumerate() {
        assert_eq!(
            got[i], want[i],
            "{name}: files of partition {} ({:?}) differ",
            x.n, x.fs
        );
    }
    if src.label == Label::Gpt {
        let v = sh(&format!("sgdisk -v {} 2>&1", t.path.display()));
        assert!(v.contains("No problems found"), "{name}: {v}");
    }
    let last = *src.parts.iter().max_by_key(|x| x.start).unwrap();
    let node = t.part(last.n);
    let old = last.size * MIB;
    if !grow {
        assert_eq!(
            dev_size(&node),
            old,
            "{name}: the last partition changed size"
        );
        assert!(!out.contains("grew partition"), "{name}: {out}");
        return;
    }
    let want_part = grown_end(src.label, src.ss, size) - last.start * MIB;
    assert_eq!(dev_size(&node), want_part, "{name}: grown partition size");
    let got_fs = fs_bytes(&node, last.fs);
    match last.fs {
        Fs::Ext4 => assert_eq!(got_fs, ext4_fill(&node, want_part), "{name}: ext4 size"),
        // NTFS keeps its last sector for the backup boot sector
        Fs::Ntfs => assert!(
            got_fs <= want_part && want_part - got_fs <= 4096,
            "{name}: NTFS is {got_fs} bytes in a {want_part}-byte partition"
        ),
        Fs::Fat | Fs::FatData => assert!(got_fs > old, "{name}: FAT did not grow"),
        Fs::Xfs => panic!("{name}: no XFS in these tests"),
    }
    if json {
        let g = &summary["grown"];
        assert_eq!(g["partition"], last.n, "{name}: {summary}");
        assert_eq!(g["partition_bytes"], want_part, "{name}: {summary}");
        if last.fs != Fs::Ntfs {
            assert_eq!(g["new_bytes"], got_fs, "{name}: {summary}");
        }
    } else {
        assert!(
            out.contains(&format!("grew partition {} to ", last.n)),
            "{name}: {out}"
        );
    }
}

const GPT_PARTS: [Part; 3] = [
    part(1, Fs::Fat, 1, 48),
    part(2, Fs::Ext4, 49, 64),
    part(3, Fs::Ntfs, 113, 48),
];

/// GPT, NTFS last: equal-size and larger targets, with and without `--grow-last`.
#[test]
fn gpt_clone_onto_equal_and_larger_disks_with_and_without_grow_last() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(Label::Gpt, 512, 180, &GPT_PARTS);
    let want = all_contents(&src.lo, &src.parts, src.dir.path(), "src");
    let before = sha(&src.lo.path);
    clone_and_check(&src, &want, "same", 180 * MIB, false, false);
    clone_and_check(&src, &want, "same-grown", 180 * MIB, true, false);
    clone_and_check(&src, &want, "larger", 200 * MIB, false, false);
    clone_and_check(&src, &want, "larger-grown", 200 * MIB, true, true);
    assert_eq!(sha(&src.lo.path), before, "the source was written");
}

/// MBR: FAT, NTFS, and an extended partition holding a logical ext4 (the last partition).
const MBR_PARTS: [Part; 3] = [
    part(1, Fs::Fat, 1, 48),
    part(2, Fs::Ntfs, 49, 48),
    part(5, Fs::Ext4, 98, 64),
];

#[test]
fn mbr_clone_with_a_logical_last_partition_onto_equal_and_larger_disks() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(Label::Mbr, 512, 180, &MBR_PARTS);
    let want = all_contents(&src.lo, &src.parts, src.dir.path(), "src");
    clone_and_check(&src, &want, "same", 180 * MIB, false, false);
    clone_and_check(&src, &want, "larger", 200 * MIB, false, true);
    // the table itself is the source's (same disk, same IDs)
    let (t, _f) = target(src.dir.path(), "dump", 180 * MIB, 512);
    ok("dump", &["clone", p(&src.lo.path), p(&t.path), "--yes"]);
    let dump = |d: &Path| sh(&format!("sfdisk -d {}", d.display())).replace(p(d), "X");
    assert_eq!(dump(&t.path), dump(&src.lo.path));
}

/// MBR `--grow-last` grows logical partition 5 (ext4), its extended partition 3 and the
/// ext4 filesystem, on an equal-size and on a larger disk.
#[test]
fn mbr_clone_grow_last_grows_the_logical_ext4_and_its_extended_partition() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(Label::Mbr, 512, 180, &MBR_PARTS);
    let want = all_contents(&src.lo, &src.parts, src.dir.path(), "src");
    clone_and_check(&src, &want, "same-grown", 180 * MIB, true, false);
    let size = 200 * MIB;
    clone_and_check(&src, &want, "larger-grown", size, true, true);
    // (the target of the last clone is detached by now; check the table on a fresh one)
    let (t, _f) = target(src.dir.path(), "table", size, 512);
    ok(
        "table",
        &["clone", p(&src.lo.path), p(&t.path), "--yes", "--grow-last"],
    );
    let dump = sh(&format!("sfdisk -d {}", t.path.display()));
    let sectors = size / 512;
    for (start, what) in [(97 * MIB / 512, "extended"), (98 * MIB / 512, "logical")] {
        assert!(
            dump.lines()
                .any(|l| l.contains(&format!("start={start:>12}, size={:>12}", sectors - start))),
            "{what} partition not grown to the end: {dump}"
        );
    }
}

/// A small MBR disk whose last partition is FAT32: it grows in place as far as its FAT allows,
/// and lifeboat says why it stopped short of the partition's end.
#[test]
fn fat32_last_grows_as_far_as_its_fat_allows() {
    if !require_root() {
        return;
    }
    tools();
    let parts = [part(1, Fs::Ext4, 1, 24), part(2, Fs::Fat, 25, 40)];
    let src = build(Label::Mbr, 512, 72, &parts);
    let s = src.dir.path();
    let want = all_contents(&src.lo, &src.parts, s, "src");
    let (bps, old_total) = fat_bpb(&src.lo.part(2));
    let (t, _f) = target(s, "fat", 128 * MIB, 512);
    let o = ok(
        "fat",
        &["clone", p(&src.lo.path), p(&t.path), "--yes", "--grow-last"],
    );
    let out = stdout(&o);
    let node = t.part(2);
    assert_eq!(dev_size(&node), 103 * MIB, "partition 2 not grown: {out}");
    let got = all_contents(&t, &src.parts, s, "fat");
    assert_eq!(got, want, "files differ");
    // the FAT of a 40 MiB FAT32 has room for a few more clusters, far from 103 MiB
    let (nbps, total) = fat_bpb(&node);
    assert_eq!(nbps, bps);
    assert!(
        total > old_total,
        "FAT did not grow: {total} sectors: {out}"
    );
    assert!(total * bps < 103 * MIB, "{total} sectors: {out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("grew partition 2 to 103.0 MiB; vfat"))
        .unwrap_or_else(|| panic!("no result line: {out}"));
    assert!(
        line.contains(&format!(
            "-> {} (in place); note: the FAT has room for only",
            lifeboat_human(total * bps)
        )),
        "{line}"
    );
}

/// lifeboat's `human_bytes`: one decimal, binary units.
fn lifeboat_human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

/// A small disk with one ext4 partition, and the files on it.
fn small_ext4_disk(label: Label, disk_mib: u64) -> (Disk, Vec<String>) {
    let src = build(label, 512, disk_mib, &[part(1, Fs::Ext4, 1, 40)]);
    let want = all_contents(&src.lo, &src.parts, src.dir.path(), "src");
    (src, want)
}

/// GPT `--grow-last` with ext4 last, onto a larger disk.
#[test]
fn gpt_clone_grow_last_grows_a_last_ext4() {
    if !require_root() {
        return;
    }
    tools();
    let (src, want) = small_ext4_disk(Label::Gpt, 48);
    clone_and_check(&src, &want, "ext4-grown", 96 * MIB, true, false);
}

/// `--new-disk-id` changes the disk GUID in both GPT copies (and nothing else), or the MBR
/// signature; without it the IDs stay and the plan warns.
#[test]
fn new_disk_id_changes_only_the_disk_id() {
    if !require_root() {
        return;
    }
    tools();
    // GPT
    let (src, _) = small_ext4_disk(Label::Gpt, 48);
    let d = src.dir.path();
    let id = |x: &Path| {
        sh(&format!(
            "sgdisk -p {} | grep 'Disk identifier'",
            x.display()
        ))
    };
    let part_guid = |x: &Path| sh(&format!("sgdisk -i 1 {} | grep 'unique GUID'", x.display()));
    let (same, _f) = target(d, "keep", 64 * MIB, 512);
    let o = ok("keep", &["clone", p(&src.lo.path), p(&same.path), "--yes"]);
    assert!(
        stderr(&o).contains("keeps the source's disk ID and its partition and filesystem IDs"),
        "{}",
        stderr(&o)
    );
    assert_eq!(id(&same.path), id(&src.lo.path));
    assert_eq!(part_guid(&same.path), part_guid(&src.lo.path));
    let (new, _f) = target(d, "new", 64 * MIB, 512);
    let o = ok(
        "new",
        &[
            "clone",
            p(&src.lo.path),
            p(&new.path),
            "--new-disk-id",
            "--yes",
        ],
    );
    assert!(
        !stderr(&o).contains("keeps the source's disk"),
        "{}",
        stderr(&o)
    );
    let v = sh(&format!("sgdisk -v {} 2>&1", new.path.display()));
    assert!(v.contains("No problems found"), "{v}");
    assert_ne!(id(&new.path), id(&src.lo.path));
    assert_eq!(part_guid(&new.path), part_guid(&src.lo.path));
    let primary = read_at(&new.path, 512, 512);
    let backup = read_at(&new.path, 64 * MIB - 512, 512);
    assert_eq!(&backup[..8], b"EFI PART");
    assert_eq!(primary[56..72], backup[56..72], "the two copies disagree");
    assert_ne!(primary[56..72], read_at(&src.lo.path, 512, 512)[56..72]);
    drop((same, new, src));

    // MBR
    let (src, _) = small_ext4_disk(Label::Mbr, 48);
    let d = src.dir.path();
    let sig = |x: &Path| read_at(x, 440, 4);
    let (same, _f) = target(d, "keep", 48 * MIB, 512);
    let o = ok(
        "mbr keep",
        &["clone", p(&src.lo.path), p(&same.path), "--yes"],
    );
    assert!(
        stderr(&o).contains("keeps the source's disk ID and its partition and filesystem IDs"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sig(&same.path), sig(&src.lo.path));
    let (new, _f) = target(d, "new", 48 * MIB, 512);
    ok(
        "mbr new",
        &[
            "clone",
            p(&src.lo.path),
            p(&new.path),
            "--new-disk-id",
            "--yes",
        ],
    );
    assert_ne!(sig(&new.path), sig(&src.lo.path));
    let dump = |x: &Path| {
        sh(&format!("sfdisk -d {}", x.display()))
            .lines()
            .filter(|l| !l.starts_with("label-id") && !l.starts_with("device"))
            .map(|l| l.replace(p(x), "X"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        dump(&new.path),
        dump(&src.lo.path),
        "only the signature changes"
    );
}

/// A GPT disk booted by GRUB for i386-pc (boot.img in the MBR, core.img in the BIOS-boot
/// partition, /boot/grub on ext4): the boot code, the post-MBR gap and the BIOS-boot
/// partition are copied byte for byte, and the GRUB files match.
#[test]
fn bios_boot_partition_and_grub_are_cloned_byte_for_byte() {
    if !require_root() {
        return;
    }
    tools();
    require_tool("grub-install");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("grub.img");
    sparse(&file, 64 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+1M -t1:ef02 -n2:4096:0 -t2:8300 {} >/dev/null",
        file.display()
    ));
    let src = LoopDev::attach(&file);
    src.add_partitions();
    sh(&format!("mkfs.ext4 -q -L boot {}", src.part(2).display()));
    let grub_files = |node: &Path| {
        let m = Mount::new(node, "-o ro");
        snapshot(&m.dir.path().join("boot/grub"))
    };
    {
        let m = Mount::new(&src.part(2), "");
        let boot = m.dir.path().join("boot");
        sh(&format!(
            "grub-install --target=i386-pc --boot-directory={} --modules='part_gpt ext2' {} 2>&1",
            boot.display(),
            src.path.display()
        ));
        std::fs::write(
            boot.join("grub/grub.cfg"),
            "set timeout=0\nmenuentry lifeboat { echo cloned }\n",
        )
        .unwrap();
        sh("sync");
    }
    let want_files = grub_files(&src.part(2));
    let head = read_at(&src.path, 0, 2 * MIB as usize);
    assert!(
        head[..440].windows(4).any(|w| w == b"GRUB"),
        "no GRUB boot code in the MBR"
    );
    let core = &head[MIB as usize..];
    assert!(
        core.windows(4).any(|w| w == b"GRUB") || core.iter().any(|&b| b != 0),
        "the BIOS-boot partition is empty"
    );
    let (t, _f) = target(d, "grub-target", 96 * MIB, 512);
    let o = ok("grub", &["clone", p(&src.path), p(&t.path), "--yes"]);
    let got = read_at(&t.path, 0, 2 * MIB as usize);
    assert!(got[..440] == head[..440], "MBR boot code differs");
    assert!(
        got[34 * 512..MIB as usize] == head[34 * 512..MIB as usize],
        "the post-MBR gap differs"
    );
    assert!(
        got[MIB as usize..] == head[MIB as usize..],
        "the BIOS-boot partition differs"
    );
    assert!(
        read_at(&t.part(1), 0, MIB as usize) == core,
        "p1 node differs"
    );
    let v = sh(&format!("sgdisk -v {} 2>&1", t.path.display()));
    assert!(v.contains("No problems found"), "{v}");
    let e = Command::new("e2fsck")
        .arg("-fn")
        .arg(t.part(2))
        .output()
        .unwrap();
    assert!(e.status.success(), "e2fsck: {}", stdout(&e));
    assert_eq!(grub_files(&t.part(2)), want_files, "{}", stdout(&o));
}

/// `restore --grow-last`: a GPT disk whose last partition is ext4, imaged and restored onto a
/// larger disk; files, fsck and the new ext4 size.
#[test]
fn restore_grow_last_grows_a_last_ext4() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(
        Label::Gpt,
        512,
        80,
        &[part(1, Fs::Fat, 1, 40), part(2, Fs::Ext4, 41, 36)],
    );
    let s = src.dir.path();
    let want = all_contents(&src.lo, &src.parts, s, "src");
    let img = s.join("disk.lbi");
    ok("image", &["image", p(&src.lo.path), "-o", p(&img)]);
    let size = 128 * MIB;
    let (t, _f) = target(s, "restored", size, 512);
    let o = ok(
        "restore",
        &["restore", p(&img), p(&t.path), "--grow-last", "--yes"],
    );
    let out = stdout(&o);
    assert!(out.contains("verified by reading back (O_DIRECT)"), "{out}");
    let got = all_contents(&t, &src.parts, s, "restored");
    assert_eq!(got, want, "files differ");
    let v = sh(&format!("sgdisk -v {} 2>&1", t.path.display()));
    assert!(v.contains("No problems found"), "{v}");
    let want_part = grown_end(Label::Gpt, 512, size) - 41 * MIB;
    assert_eq!(dev_size(&t.part(2)), want_part);
    assert_eq!(
        fs_bytes(&t.part(2), Fs::Ext4),
        ext4_fill(&t.part(2), want_part),
        "{out}"
    );
    assert!(out.contains("grew partition 2 to "), "{out}");
}

/// Every refusal names the disk and the reason, exits 1, and leaves the target (and the
/// source) as they were.
#[test]
fn refusals_name_the_disk_and_the_reason_and_touch_nothing() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(
        Label::Gpt,
        512,
        64,
        &[part(1, Fs::Ext4, 1, 16), part(2, Fs::Ext4, 17, 40)],
    );
    let d = src.dir.path();
    let src_before = sha(&src.lo.path);
    let refused = |what: &str, t: &Path, want: &[&str]| {
        let before = sha(t);
        let o = lifeboat(&["clone", p(&src.lo.path), p(t), "--yes"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {e}");
        for w in want {
            assert!(e.contains(w), "{what}: no `{w}` in: {e}");
        }
        assert!(!stdout(&o).contains("cloned"), "{what}");
        assert_eq!(sha(t), before, "{what}: the target was written");
        assert_eq!(
            sha(&src.lo.path),
            src_before,
            "{what}: the source was written"
        );
    };

    // too small: 57 MiB of partitions plus the backup GPT do not fit in 48 MiB
    let (small, _f) = target(d, "small", 48 * MIB, 512);
    let need = 57 * MIB + 33 * 512;
    refused(
        "too small",
        &small.path,
        &[
            &format!("{} is too small", small.path.display()),
            &format!("need at least {need} bytes, it has {}", 48 * MIB),
            &format!("{} missing", lifeboat_human(need - 48 * MIB)),
            &format!("partition 2 ends at byte {}", 57 * MIB),
        ],
    );

    // a target with a mounted partition
    let busy_file = d.join("busy.img");
    std::fs::copy(&src.file, &busy_file).unwrap();
    let busy = LoopDev::attach(&busy_file);
    busy.add_partitions();
    {
        let _m = Mount::new(&busy.part(2), "-o ro");
        refused(
            "mounted",
            &busy.path,
            &[&format!("{} is busy", busy.path.display()), "mounted"],
        );
    }

    // the source itself, and a partition of it
    refused(
        "itself",
        &src.lo.path,
        &[&format!(
            "refusing {}: it is the source {} itself",
            src.lo.path.display(),
            src.lo.path.display()
        )],
    );
    refused(
        "own partition",
        &src.lo.part(2),
        &[
            &format!("refusing {}", src.lo.part(2).display()),
            &format!("overlaps the source {}", src.lo.path.display()),
        ],
    );

    // a second loop device over the source's own file
    let twin = LoopDev::attach(&src.file);
    refused(
        "same file",
        &twin.path,
        &["are loop devices over the same file"],
    );
    drop(twin);

    // a read-only target
    let ro_file = d.join("ro.img");
    sparse(&ro_file, 64 * MIB);
    let ro = LoopDev::attach_with(&ro_file, "-r");
    refused(
        "read-only",
        &ro.path,
        &[&format!("{} is read-only", ro.path.display())],
    );

    // 4096-byte sectors against a 512-byte source whose small ext4 has 1 KiB blocks
    let (k4, _f) = target(d, "4k", 64 * MIB, 4096);
    refused(
        "sector size",
        &k4.path,
        &[&format!(
            "refusing {}: its logical sector size is 4096 bytes, the source's 512; partition 1 holds ext4 with 1024-byte blocks",
            k4.path.display()
        )],
    );
}

/// 4Kn: GPT between two 4096-byte-sector loop disks, NTFS last and grown; the 4Kn FAT is
/// compared byte for byte.
#[test]
fn gpt_4kn_clone_grows_ntfs() {
    if !require_root() {
        return;
    }
    tools();
    let src = build(Label::Gpt, 4096, 180, &GPT_PARTS);
    let want = all_contents(&src.lo, &src.parts, src.dir.path(), "src");
    clone_and_check(&src, &want, "4kn-grown", 200 * MIB, true, false);
}

// ---- faults ----

fn fault_prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    tools();
    common::have_fusepy()
}

const F_P2_START: u64 = 3 * MIB;
const F_P2_LEN: u64 = 64 * MIB;
const F_SIZE: u64 = 96 * MIB;

/// A 96 MiB GPT disk file: BIOS-boot p1, ext4 p2 (3..67 MiB) with 24 MiB of files.
fn fault_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.img");
    sparse(&disk, F_SIZE);
    sh(&format!(
        "sgdisk -n1:2048:+2M -t1:ef02 -n2:{}:+{}M {} >/dev/null",
        F_P2_START / 512,
        F_P2_LEN / MIB,
        disk.display()
    ));
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..8u8 {
        std::fs::write(
            tree.join(format!("f{i}")),
            vec![i.wrapping_mul(37) | 1; 3 * MIB as usize],
        )
        .unwrap();
    }
    sh(&format!(
        "mkfs.ext4 -q -F -b 4096 -E offset={F_P2_START} -d {} {} {}k",
        tree.display(),
        disk.display(),
        F_P2_LEN / 1024
    ));
    disk
}

/// A read error on the source, in the middle of the ext4 files: the clone stops naming the
/// byte, and the target (which held a valid table) is left without one.
#[test]
fn read_error_on_the_source_names_the_byte_and_leaves_no_table() {
    if !fault_prerequisites() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let disk = fault_disk(w);
    let bad = F_P2_START + 20 * MIB;
    let fs = FaultFs::start(&disk, w, &format!("{{\"bad_read\": [[{bad}, 4096]]}}"));
    let src = LoopDev::attach_with(&fs.disk(), "-r");
    let tfile = w.join("target.img");
    std::fs::copy(&disk, &tfile).unwrap(); // an old, valid GPT disk
    let t = LoopDev::attach(&tfile);
    let o = lifeboat(&["clone", p(&src.path), p(&t.path), "--yes"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!(
            "read error on {} at byte {bad}",
            src.path.display()
        )),
        "{e}\nfaults: {}",
        fs.stats()
    );
    assert!(!stdout(&o).contains("cloned"), "{}", stdout(&o));
    no_table_left(&t.path, "read error");
    drop(src);
    fs.set("{}");
}

/// A write error on the target: the error names the byte range, and no table is left; with
/// and without read-back verification (the error must be caught when written, not only when
/// read back).
///
/// The bad range is large on purpose: the loop driver completes a short write of its backing
/// file as a success (drivers/block/loop.c, `lo_complete_rq`), and FUSE reports a write whose
/// later 128 KiB request fails as a short write, so an error in the middle of a request larger
/// than 128 KiB never reaches the loop device's writer. A request that *starts* in the bad
/// range fails whole, and with ~60 MiB of bad range some always do.
#[test]
fn write_error_on_the_target_names_the_range_and_leaves_no_table() {
    if !fault_prerequisites() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let disk = fault_disk(w);
    let src = LoopDev::attach(&disk);
    let (bad, bad_end) = (F_P2_START + 4 * MIB, F_P2_START + F_P2_LEN);
    for verify in [true, false] {
        let what = if verify { "verified" } else { "--no-verify" };
        let tfile = w.join("target.img");
        // an old, valid GPT disk, with old data that differs from the source's where the
        // writes fail, so that a lost write cannot pass for a good one
        std::fs::copy(&disk, &tfile).unwrap();
        write_at(&tfile, bad, &noise(4 * MIB as usize, 13));
        let fs = FaultFs::start(
            &tfile,
            w,
            &format!("{{\"bad_write\": [[{bad}, {}]]}}", bad_end - bad),
        );
        let t = LoopDev::attach(&fs.disk());
        let mut args = vec!["clone", p(&src.path), p(&t.path), "--yes"];
        if !verify {
            args.push("--no-verify");
        }
        let o = lifeboat(&args);
        let e = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{what}: {e}\n{}\nfaults: {}",
            stdout(&o),
            fs.stats()
        );
        let prefix = format!("write error on {} in bytes ", t.path.display());
        let at = e
            .find(&prefix)
            .unwrap_or_else(|| panic!("{what}: {e}\nfaults: {}", fs.stats()));
        let range: String = e[at + prefix.len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let (a, b) = range.split_once("..").unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        assert!(
            a < bad_end && bad < b && b <= F_SIZE,
            "{what}: {a}..{b} is not in the bad range {bad}..{bad_end}: {e}"
        );
        assert!(!stdout(&o).contains("cloned"), "{what}: {}", stdout(&o));
        no_table_left(&t.path, what);
        drop(t);
        fs.set("{}");
        drop(fs);
        // and on the file under it, past every cache
        let head = read_at(&tfile, 0, 34 * 512);
        assert!(
            head.iter().all(|&b| b == 0),
            "{what}: a partition table survived"
        );
    }
}
