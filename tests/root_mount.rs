//! Tier 2 (root): `lifeboat mount` and `umount` on a real GPT disk (ext4, FAT32, NTFS).
//!
//! A full image, an incremental and a differential are taken of a disk that changes between
//! them; each chain member is mounted and every file under DIR/p1..p3 (content, size, mode,
//! mtime; user xattrs on ext4) must equal what the source held when that image was taken
//! (the source read through the same drivers: kernel ext4, fusefat where the kernel has no
//! vfat, ntfs-3g). A `--rw` mount takes new files and a deletion that vanish at umount, with
//! the image's hash unchanged and `verify` passing. A flipped chunk in a big file fails that
//! file's reads with EIO, is named in the server's log, and leaves other files readable.
//! After `umount`, after SIGTERM to the server, and after SIGKILL followed by `umount`, no
//! mount, loop device, FUSE mount or driver process is left. Bad input (missing parent,
//! truncated image, DIR a file, DIR not empty, a disk with no partitions) gets a clear error,
//! a non-zero exit, and nothing left behind. XFS, btrfs and exFAT partitions mount as well.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::{noise, require_root, require_tool, sh, sparse, FuseExfat, LoopDev, Mount};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// Partition starts (bytes): p1 ext4 64 MiB, p2 FAT32 48 MiB, p3 NTFS 48 MiB.
const P1: u64 = MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

/// `lifeboat args`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    common::lifeboat_stdout(args)
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
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
        "setfattr",
        "getfattr",
        "debugfs",
        "ntfs-3g",
        "fusefat",
    ] {
        require_tool(t);
    }
}

/// Names, kinds, sizes, modes and mtimes of everything under `dir`, the content hash of every
/// file, and (with `xattrs`) every user xattr.
fn manifest(dir: &Path, xattrs: bool) -> String {
    let x = if xattrs {
        " && getfattr -R -d -m user . 2>/dev/null | grep -v '^$'"
    } else {
        ""
    };
    let m = sh(&format!(
        "cd '{}' && find . -printf '%p %y %s %m %T@\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum{x}",
        dir.display()
    ));
    assert!(
        m.lines().count() > 10,
        "too few files in {}: {m}",
        dir.display()
    );
    m
}

/// What the source's three filesystems hold now.
fn source_manifests(lo: &LoopDev) -> [String; 3] {
    let ext = manifest(Mount::new(&lo.part(1), "-o ro").dir.path(), true);
    let fat = manifest(common::FuseFat::new(&lo.part(2), "ro").dir.path(), false);
    let ntfs = manifest(
        Mount::new(&lo.part(3), "-t ntfs-3g -o ro").dir.path(),
        false,
    );
    [ext, fat, ntfs]
}

/// Files of varied sizes, modes and mtimes, written through a mounted directory.
fn fill_posix(dir: &Path, seed: u32, xattr: bool) {
    std::fs::create_dir_all(dir.join("docs/deep")).unwrap();
    for i in 0..12u32 {
        let f = dir.join(format!("docs/deep/n{i}.txt"));
        std::fs::write(&f, format!("note {i} ").repeat(10 + i as usize * 300)).unwrap();
        sh(&format!(
            "chmod {} '{}' && touch -d '2021-0{}-1{} 10:2{}:00' '{}'",
            ["644", "600", "640", "755"][i as usize % 4],
            f.display(),
            1 + i % 9,
            i % 10,
            i % 10,
            f.display()
        ));
    }
    std::fs::write(dir.join("big.bin"), noise(6 * MIB as usize, seed)).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::write(dir.join("small.txt"), b"small\n").unwrap();
    if xattr {
        sh(&format!(
            "setfattr -n user.lifeboat -v kept '{}'",
            dir.join("small.txt").display()
        ));
    }
}

/// FAT files through mtools (`-m` keeps mtimes).
fn fill_fat(part: &Path, scratch: &Path, tag: &str) {
    let src = scratch.join(format!("fat-{tag}"));
    std::fs::create_dir_all(src.join("DIR")).unwrap();
    for i in 0..8u32 {
        let f = src.join(format!("DIR/F{tag}{i}.TXT"));
        std::fs::write(&f, format!("fat {tag} {i}\n").repeat(1 + i as usize * 700)).unwrap();
        sh(&format!(
            "touch -d '2022-0{}-0{} 0{}:00:00' '{}'",
            1 + i % 9,
            1 + i % 9,
            i % 10,
            f.display()
        ));
    }
    std::fs::write(src.join(format!("B{tag}.BIN")), noise(2 * MIB as usize, 11)).unwrap();
    sh(&format!(
        "mcopy -s -m -o -i {} {}/* ::/",
        part.display(),
        src.display()
    ));
}

/// Changes to every filesystem between two images.
fn change(lo: &LoopDev, scratch: &Path, step: u32) {
    {
        let m = Mount::new(&lo.part(1), "");
        let d = m.dir.path();
        std::fs::write(d.join(format!("new{step}.txt")), format!("step {step}\n")).unwrap();
        std::fs::remove_file(d.join(format!("docs/deep/n{step}.txt"))).unwrap();
        common::write_at(&d.join("big.bin"), MIB, &noise(300_000, 40 + step));
        sh(&format!("chmod 700 '{}'", d.join("empty").display()));
        sh(&format!(
            "setfattr -n user.step -v {step} '{}'",
            d.join("docs/deep/n11.txt").display()
        ));
    }
    fill_fat(&lo.part(2), scratch, &format!("S{step}"));
    sh(&format!(
        "mdel -i {} ::/DIR/FA{step}.TXT",
        lo.part(2).display()
    ));
    {
        let m = Mount::new(&lo.part(3), "-t ntfs-3g");
        let d = m.dir.path();
        std::fs::write(d.join(format!("ntfs-new{step}.txt")), "n".repeat(5000)).unwrap();
        std::fs::remove_file(d.join(format!("docs/deep/n{step}.txt"))).unwrap();
        common::write_at(&d.join("big.bin"), 2 * MIB, &noise(200_000, 50 + step));
    }
    sh("sync");
}

/// The disk file with its loop device (kept for the changes between images).
struct Disk {
    file: PathBuf,
    lo: LoopDev,
}

fn build(tmp: &Path) -> Disk {
    let file = tmp.join("disk.img");
    sparse(&file, 180 * MIB);
    let lo = LoopDev::attach(&file);
    sh(&format!(
        "printf 'label: gpt\\nstart=2048, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\\nstart=133120, size=98304, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\\nstart=231424, size=98304, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\\n' | sfdisk -q {} >/dev/null",
        lo.path.display()
    ));
    lo.add_partitions();
    sh(&format!(
        "mkfs.ext4 -q -b 4096 -L lbext {}",
        lo.part(1).display()
    ));
    sh(&format!(
        "mkfs.vfat -F 32 -n LBFAT {} >/dev/null 2>&1",
        lo.part(2).display()
    ));
    sh(&format!(
        "mkntfs -q -F -Q -L lbntfs {} >/dev/null 2>&1",
        lo.part(3).display()
    ));
    fill_posix(Mount::new(&lo.part(1), "").dir.path(), 7, true);
    fill_fat(&lo.part(2), tmp, "A");
    fill_posix(Mount::new(&lo.part(3), "-t ntfs-3g").dir.path(), 8, false);
    sh("sync");
    Disk { file, lo }
}

fn newest(dir: &Path, tag: &str) -> PathBuf {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(tag))
        .collect();
    v.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    v.pop().unwrap()
}

/// Every mount, loop device, FUSE mount and driver process under `dir` is gone, and `dir` is
/// empty.
fn assert_no_leftovers(dir: &Path) {
    let canon = dir.canonicalize().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mounts = common::mounts_holding(canon.to_str().unwrap());
        let loops = common::loops_holding(canon.to_str().unwrap());
        let procs = sh(&format!(
            "ps -eo args | grep -E '^(ntfs-3g|fusefat|mount.exfat)' | grep -F '{}' || true",
            canon.display()
        ));
        let entries: Vec<_> = std::fs::read_dir(&canon)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let clean = mounts.is_empty() && loops.is_empty() && procs.trim().is_empty();
        if clean && entries.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left behind under {}: mounts {mounts:?}, loops {loops:?}, drivers {procs:?}, entries {entries:?}",
            canon.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !lifeboat::access::mount::state_path(&canon).exists(),
        "state file left for {}",
        canon.display()
    );
}

/// Unmounts `dir` on drop, whatever happened, so a failed test leaves nothing mounted.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if std::fs::read_dir(&self.0).is_ok_and(|mut d| d.next().is_some()) {
            let _ = lifeboat(&["umount", p(&self.0)]);
        }
    }
}

/// `lifeboat mount --json IMAGE DIR`; returns the report and the time to the first `ls` of
/// DIR/p1.
fn mount(image: &Path, dir: &Path, extra: &[&str]) -> (serde_json::Value, Duration) {
    let t0 = Instant::now();
    let mut args = vec!["mount", "--json", p(image), p(dir)];
    args.extend_from_slice(extra);
    let out = ok(&args);
    let n = std::fs::read_dir(dir.join("p1")).unwrap().count();
    let t = t0.elapsed();
    assert!(n > 0);
    (serde_json::from_str(&out).unwrap(), t)
}

fn server_pid(dir: &Path) -> i32 {
    let state = lifeboat::access::mount::state_path(&dir.canonicalize().unwrap());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(Instant::now() < deadline, "server {pid} did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn chain_members_mount_with_their_files_and_leave_nothing() {
    if !require_root() {
        return;
    }
    tools();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = build(t);
    let images = t.join("images");
    std::fs::create_dir(&images).unwrap();
    let full = images.join("pc.lbi");

    // full, incremental, differential, each with what the disk held
    let mut members = Vec::new();
    let want = source_manifests(&disk.lo);
    ok(&["image", p(&disk.file), "-o", p(&full)]);
    members.push((full.clone(), want));
    change(&disk.lo, t, 1);
    let want = source_manifests(&disk.lo);
    ok(&["image", p(&disk.file), "--incremental", p(&images)]);
    members.push((newest(&images, "-incr"), want));
    change(&disk.lo, t, 2);
    let want = source_manifests(&disk.lo);
    std::thread::sleep(Duration::from_millis(1100));
    ok(&["image", p(&disk.file), "--differential", p(&images)]);
    members.push((newest(&images, "-diff"), want));

    let dir = t.join("mnt");
    std::fs::create_dir(&dir).unwrap();
    for (image, want) in &members {
        let _guard = Mounted(dir.clone());
        let (report, took) = mount(image, &dir, &[]);
        eprintln!(
            "time from mount to the first ls of DIR/p1 ({}): {took:?}",
            image.file_name().unwrap().to_string_lossy()
        );
        let parts = report["parts"].as_array().unwrap();
        let drivers: Vec<_> = parts.iter().map(|p| p["driver"].clone()).collect();
        eprintln!("drivers: {drivers:?}");
        for (i, name) in ["p1", "p2", "p3"].iter().enumerate() {
            assert_eq!(parts[i]["name"], *name);
            assert_eq!(
                parts[i]["dir"].as_str(),
                Some(p(&dir.canonicalize().unwrap().join(name))),
                "{report}"
            );
        }
        assert_eq!(parts[0]["fs"], "ext4");
        assert_eq!(parts[1]["fs"], "vfat");
        assert_eq!(parts[2]["fs"], "ntfs");
        assert_eq!(
            manifest(&dir.join("p1"), true),
            want[0],
            "ext4 of {image:?}"
        );
        assert_eq!(
            manifest(&dir.join("p2"), false),
            want[1],
            "FAT of {image:?}"
        );
        assert_eq!(
            manifest(&dir.join("p3"), false),
            want[2],
            "NTFS of {image:?}"
        );
        // the raw files: the disk's size, and its first MiB (both GPT headers' area, copied
        // whole) as on the source; free blocks inside filesystems read as zeros
        let src_len = std::fs::metadata(&disk.file).unwrap().len();
        assert_eq!(
            std::fs::metadata(dir.join("raw/disk")).unwrap().len(),
            src_len
        );
        assert_eq!(
            std::fs::metadata(dir.join("raw/p1")).unwrap().len(),
            64 * MIB
        );
        if image == &members[2].0 {
            let raw = common::read_at(&dir.join("raw/disk"), 0, MIB as usize);
            assert!(raw == common::read_at(&disk.file, 0, MIB as usize));
        }
        assert!(
            std::fs::write(dir.join("raw/p1"), b"x").is_err(),
            "raw files are read-only"
        );
        ok(&["umount", p(&dir)]);
        assert_no_leftovers(&dir);
    }

    // --rw: changes are seen, then thrown away; the image is never written
    let before = blake3::hash(&std::fs::read(&full).unwrap());
    {
        let _guard = Mounted(dir.clone());
        mount(&full, &dir, &["--rw"]);
        std::fs::write(dir.join("p1/made-rw.txt"), "rw\n").unwrap();
        std::fs::remove_file(dir.join("p1/small.txt")).unwrap();
        std::fs::write(dir.join("p3/made-rw.txt"), "rw ntfs\n").unwrap();
        sh("sync");
        assert_eq!(
            std::fs::read_to_string(dir.join("p1/made-rw.txt")).unwrap(),
            "rw\n"
        );
        assert!(!dir.join("p1/small.txt").exists());
        assert!(dir.join("p3/made-rw.txt").exists());
        // mkfs on an exported partition: a new ext4 over p1's raw file, written only into
        // the overlay, mounted and used
        sh(&format!("umount {}", dir.join("p1").display()));
        sh(&format!(
            "mkfs.ext4 -q -F -L fresh {}",
            dir.join("raw/p1").display()
        ));
        let fresh = t.join("fresh");
        std::fs::create_dir_all(&fresh).unwrap();
        sh(&format!(
            "mount -o loop {} {}",
            dir.join("raw/p1").display(),
            fresh.display()
        ));
        std::fs::write(fresh.join("on-new-fs.txt"), "new\n").unwrap();
        sh(&format!("umount {}", fresh.display()));
        let label = sh(&format!(
            "blkid -o value -s LABEL {}",
            dir.join("raw/p1").display()
        ));
        assert_eq!(label.trim(), "fresh");
        ok(&["umount", p(&dir)]);
        assert_no_leftovers(&dir);
    }
    assert_eq!(blake3::hash(&std::fs::read(&full).unwrap()), before);
    ok(&["verify", p(&full)]);
    {
        let _guard = Mounted(dir.clone());
        mount(&full, &dir, &[]);
        assert!(dir.join("p1/small.txt").exists() && !dir.join("p1/made-rw.txt").exists());
        ok(&["umount", p(&dir)]);
    }

    // a busy filesystem (a program's current folder) is refused by umount, naming it, and
    // stays mounted and whole; once the program is gone, umount works
    {
        let _guard = Mounted(dir.clone());
        mount(&full, &dir, &[]);
        let mut holder = std::process::Command::new("sleep")
            .arg("60")
            .current_dir(dir.join("p1/docs"))
            .spawn()
            .unwrap();
        let o = lifeboat(&["umount", p(&dir)]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let _ = holder.kill();
        let _ = holder.wait();
        assert!(!o.status.success(), "umount of a busy mount succeeded");
        assert!(err.contains("busy") && err.contains("p1"), "{err}");
        assert!(dir.join("p1/small.txt").exists(), "p1 was unmounted anyway");
        assert!(dir.join("raw/disk").exists(), "the raw files went away");
        ok(&["umount", p(&dir)]);
        assert_no_leftovers(&dir);
    }

    // SIGTERM to the server removes everything
    {
        let _guard = Mounted(dir.clone());
        mount(&full, &dir, &[]);
        let pid = server_pid(&dir);
        sh(&format!("kill -TERM {pid}"));
        wait_gone(pid);
        assert_no_leftovers(&dir);
    }
    // SIGKILL, then umount does the teardown itself
    {
        let _guard = Mounted(dir.clone());
        mount(&full, &dir, &[]);
        let pid = server_pid(&dir);
        sh(&format!("kill -KILL {pid}"));
        wait_gone(pid);
        ok(&["umount", p(&dir)]);
        assert_no_leftovers(&dir);
    }

    // a flipped chunk inside big.bin's data: that file fails with EIO, the log names the
    // chunk, other files read fine
    let (block, dmg) = {
        let out = sh(&format!(
            "debugfs -R 'bmap /big.bin 700' {} 2>/dev/null",
            disk.lo.part(1).display()
        ));
        (out.trim().parse::<u64>().unwrap(), t.join("damaged.lbi"))
    };
    std::fs::copy(&full, &dmg).unwrap();
    let off = P1 + block * 4096;
    let rec = *lifeboat::image::Chain::open(&dmg, &[])
        .unwrap()
        .leaf()
        .records()
        .iter()
        .find(|r| r.disk_offset <= off && off < r.disk_offset + u64::from(r.raw_len))
        .unwrap();
    let mut b = std::fs::read(&dmg).unwrap();
    b[(rec.file_offset + u64::from(rec.stored_len) / 2) as usize] ^= 0x40;
    std::fs::write(&dmg, &b).unwrap();
    drop(b);
    {
        let _guard = Mounted(dir.clone());
        mount(&dmg, &dir, &[]);
        let e = std::fs::read(dir.join("p1/big.bin")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        let n = std::fs::read_to_string(dir.join("p1/docs/deep/n11.txt")).unwrap();
        assert!(n.starts_with("note 11 "));
        assert_eq!(
            std::fs::read(dir.join("p3/big.bin")).unwrap().len(),
            6 * MIB as usize
        );
        let log = lifeboat::access::mount::log_path(&dir.canonicalize().unwrap());
        let log = std::fs::read_to_string(log).unwrap();
        // the frame flipped holds the chunk: the log names it with its disk bytes
        let named = format!("file byte {}) is corrupt", rec.file_offset);
        assert!(
            log.lines().any(|l| l.contains("damaged chunk: ")
                && l.contains(&named)
                && l.contains("disk bytes ")),
            "the log does not name the chunk at file byte {}: {log}",
            rec.file_offset
        );
        ok(&["umount", p(&dir)]);
        assert_no_leftovers(&dir);
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing() {
    if !require_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // a small disk with one ext4 partition, a full image and an incremental
    let file = t.join("disk.img");
    sparse(&file, 40 * MIB);
    {
        let lo = LoopDev::attach(&file);
        sh(&format!(
            "printf 'label: gpt\\nstart=2048, size=61440, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\\n' | sfdisk -q {} >/dev/null",
            lo.path.display()
        ));
        lo.add_partitions();
        sh(&format!("mkfs.ext4 -q {}", lo.part(1).display()));
        let m = Mount::new(&lo.part(1), "");
        std::fs::write(m.dir.path().join("a.txt"), "a").unwrap();
    }
    let images = t.join("images");
    std::fs::create_dir(&images).unwrap();
    let full = images.join("pc.lbi");
    ok(&["image", p(&file), "-o", p(&full)]);
    common::write_at(&file, 30 * MIB, b"changed");
    ok(&["image", p(&file), "--incremental", p(&images)]);
    let incr = newest(&images, "-incr");
    // an image of a disk with no partition table and no filesystem
    let bare = t.join("bare.img");
    std::fs::write(&bare, noise(8 * MIB as usize, 3)).unwrap();
    let bare_lbi = t.join("bare.lbi");
    ok(&["image", p(&bare), "-o", p(&bare_lbi)]);
    // a truncated image
    std::fs::create_dir(t.join("bad")).unwrap();
    let trunc = t.join("bad/trunc.lbi");
    let b = std::fs::read(&full).unwrap();
    std::fs::write(&trunc, &b[..b.len() / 2]).unwrap();
    // the incremental without its parent (moved away, and not found by any means)
    let orphan = t.join(incr.file_name().unwrap());
    std::fs::copy(&incr, &orphan).unwrap();
    std::fs::create_dir(t.join("away")).unwrap();
    let away = t.join("away/pc.lbi");
    std::fs::rename(&full, &away).unwrap();

    let dir = t.join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let a_file = t.join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let full_dir = t.join("full-dir");
    std::fs::create_dir(&full_dir).unwrap();
    std::fs::write(full_dir.join("keep"), "x").unwrap();
    let cases: [(&str, &Path, &Path, &str); 6] = [
        ("missing parent", &orphan, &dir, "chain"),
        ("truncated image", &trunc, &dir, "image"),
        ("no partitions", &bare_lbi, &dir, "no partitions"),
        ("DIR is a file", &full, &a_file, "not a directory"),
        ("DIR not empty", &full, &full_dir, "not empty"),
        ("DIR missing", &full, &t.join("nowhere"), "does not exist"),
    ];
    for (i, (name, image, d, words)) in cases.into_iter().enumerate() {
        if i == 1 {
            std::fs::rename(&away, &full).unwrap();
        }
        let _guard = Mounted(dir.clone());
        let o = lifeboat(&["mount", p(image), p(d)]);
        let err = String::from_utf8_lossy(&o.stderr);
        eprintln!("{name}: {}", err.trim());
        assert!(!o.status.success(), "{name}: mount succeeded");
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(err.contains(words), "{name}: {err}");
        assert_no_leftovers(&dir);
    }
    assert!(full_dir.join("keep").exists());
    // umount of a directory nothing is mounted on
    let o = lifeboat(&["umount", p(&dir)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no lifeboat mount here"));
    // the good one still mounts, and a second mount on the same DIR is refused
    let _guard = Mounted(dir.clone());
    ok(&["mount", p(&incr), p(&dir)]);
    assert_eq!(std::fs::read_to_string(dir.join("p1/a.txt")).unwrap(), "a");
    let o = lifeboat(&["mount", p(&full), p(&dir)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("run lifeboat umount first"), "{err}");
    // also in the foreground, where the server itself checks: the lock refuses it
    let o = lifeboat(&["mount", "--foreground", p(&full), p(&dir)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("umount first"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("p1/a.txt")).unwrap(), "a");
    ok(&["umount", p(&dir)]);
    assert_no_leftovers(&dir);
}

/// XFS, btrfs and exFAT partitions mount too (the kernel's xfs and btrfs read-only without
/// log replay; exFAT through exfat-fuse on a loop device where the kernel has no exfat), and
/// their files equal the source's.
#[test]
fn xfs_btrfs_and_exfat_partitions_mount_with_their_files() {
    if !require_root() {
        return;
    }
    for t in [
        "mkfs.xfs",
        "mkfs.btrfs",
        "mkfs.exfat",
        "mount.exfat-fuse",
        "sfdisk",
    ] {
        require_tool(t);
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let disk = t.join("disk.img");
    sparse(&disk, 560 * MIB);
    sh(&format!(
        "printf 'label: gpt\\nstart=1MiB, size=320MiB\\nsize=160MiB\\nsize=64MiB\\n' | sfdisk -q {}",
        disk.display()
    ));
    let want: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("file{i}.bin"),
                noise(300_000 + i * 77_777, i as u32 + 7),
            )
        })
        .collect();
    {
        let lo = LoopDev::attach(&disk);
        lo.add_partitions();
        sh(&format!("mkfs.xfs -q -f -L lbxfs {}", lo.part(1).display()));
        sh(&format!(
            "mkfs.btrfs -q -f -L lbbtrfs {}",
            lo.part(2).display()
        ));
        sh(&format!(
            "mkfs.exfat -L LBEXFAT {} >/dev/null",
            lo.part(3).display()
        ));
        for n in [1, 2] {
            let m = Mount::new(&lo.part(n), "");
            for (name, data) in &want {
                std::fs::write(m.dir.path().join(name), data).unwrap();
            }
            sh("sync");
        }
        let m = FuseExfat::new(&lo.part(3));
        for (name, data) in &want {
            std::fs::write(m.path().join(name), data).unwrap();
        }
        m.unmount();
    } // the loop device detaches here (LoopDev's drop)
    let img = t.join("more.lbi");
    ok(&["image", p(&disk), "-o", p(&img)]);
    let dir = t.join("m");
    std::fs::create_dir(&dir).unwrap();
    let _guard = Mounted(dir.clone());
    let (report, _) = mount(&img, &dir, &[]);
    let parts = report["parts"].as_array().unwrap();
    for (i, fs) in ["xfs", "btrfs", "exfat"].iter().enumerate() {
        assert_eq!(parts[i]["fs"], *fs, "{report}");
        assert!(
            parts[i]["dir"].is_string(),
            "p{} not mounted: {report}",
            i + 1
        );
        for (name, data) in &want {
            let got = std::fs::read(dir.join(format!("p{}", i + 1)).join(name)).unwrap();
            assert!(got == *data, "{fs}: {name} differs");
        }
    }
    ok(&["umount", p(&dir)]);
    assert_no_leftovers(&dir);
}
