//! Tier 1: `fsmap::files::find_files` on filesystems built in sparse files by `mkfs -d`
//! (ext2/3/4), debugfs (fragmented files) and mtools (FAT12/16/32): the bytes at the ranges it
//! returns must equal the source files, symlinks must resolve to their targets, and damaged
//! images must give errors, never panics.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use lifeboat::blockdev::{BlockDev, FileDev, MemDev, OpenMode, Slice};
use lifeboat::error::Error;
use lifeboat::fsmap::files::{find_files, FoundFile};
use std::collections::BTreeMap;
use std::path::Path;

/// The bytes at `f`'s ranges, read from the image file (the partition starting at `base`).
fn bytes_of(img: &Path, base: u64, f: &FoundFile) -> Vec<u8> {
    let mut out = Vec::new();
    for &(off, len) in &f.ranges {
        out.extend(read_at(img, base + off, len as usize));
    }
    out
}

fn find(img: &Path, patterns: &[&str]) -> BTreeMap<String, FoundFile> {
    let dev = FileDev::open(img, OpenMode::Read).unwrap();
    find_files(&dev, patterns)
        .unwrap()
        .into_iter()
        .map(|f| (f.path.clone(), f))
        .collect()
}

/// Checks that `got` holds exactly the files `want` (path -> source file) with their bytes;
/// with `inline`, a small file may have no ranges (ext inline data).
fn check(
    img: &Path,
    got: &BTreeMap<String, FoundFile>,
    want: &[(&str, &Path)],
    name: &str,
    inline: bool,
) {
    let paths: Vec<&str> = got.keys().map(String::as_str).collect();
    let mut want_paths: Vec<&str> = want.iter().map(|w| w.0).collect();
    want_paths.sort_unstable();
    assert_eq!(paths, want_paths, "{name}: paths found");
    for (path, src) in want {
        let f = &got[*path];
        let data = std::fs::read(src).unwrap();
        assert_eq!(f.size, data.len() as u64, "{name}: size of {path}");
        if inline && f.ranges.is_empty() && data.len() < 60 {
            continue;
        }
        assert!(
            bytes_of(img, 0, f) == data,
            "{name}: bytes of {path} differ ({} ranges)",
            f.ranges.len()
        );
    }
}

/// A root tree with a kernel, an initrd, busybox, symlinks of every kind and a large
/// directory.
fn linux_tree(root: &Path) {
    for d in ["boot", "bin", "sbin", "usr/lib", "etc", "many"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("boot/vmlinuz-6.1"), noise(3 << 20, 1)).unwrap();
    std::fs::write(root.join("boot/initrd.img-6.1"), noise(700_001, 2)).unwrap();
    std::fs::write(root.join("boot/config-6.1"), noise(5000, 3)).unwrap();
    std::fs::write(root.join("bin/busybox"), noise(900_000, 4)).unwrap();
    std::fs::write(root.join("usr/lib/libc.so.6"), noise(50_000, 5)).unwrap();
    std::fs::write(root.join("etc/hostname"), b"rescue\n").unwrap();
    for i in 0..2000 {
        std::fs::write(root.join(format!("many/f{i}")), format!("{i}\n")).unwrap();
    }
    let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    link("vmlinuz-6.1", "boot/vmlinuz");
    link("../bin/busybox", "sbin/init");
    link("usr/lib", "lib"); // a directory symlink
    link("/bin/busybox", "etc/abs");
    // a slow symlink: longer than the 60 bytes an inode holds
    let long = format!("/{}/../bin/busybox", "x".repeat(70));
    std::fs::create_dir_all(root.join("x".repeat(70))).unwrap();
    link(&long, "etc/slow");
    link("loop2", "etc/loop1");
    link("loop1", "etc/loop2");
    link("/nowhere", "etc/dangling");
}

const LINUX_PATTERNS: [&str; 13] = [
    "/boot/vmlinuz*",
    "/boot/initrd*",
    "/sbin/init",
    "/lib/libc.so.6",
    "/lib/../etc/hostname",
    "/etc/abs",
    "/etc/slow",
    "/etc/loop1",
    "/etc/dangling",
    "/missing/file",
    "/many/f1999",
    "/many/f123*",
    "/boot",
];

fn linux_want(src: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    let mut w: Vec<(&str, std::path::PathBuf)> = vec![
        ("/boot/vmlinuz-6.1", src.join("boot/vmlinuz-6.1")),
        ("/boot/initrd.img-6.1", src.join("boot/initrd.img-6.1")),
        ("/bin/busybox", src.join("bin/busybox")),
        ("/usr/lib/libc.so.6", src.join("usr/lib/libc.so.6")),
        ("/many/f1999", src.join("many/f1999")),
        ("/many/f123", src.join("many/f123")),
    ];
    for i in 0..10 {
        let p: &'static str = Box::leak(format!("/many/f123{i}").into_boxed_str());
        w.push((p, src.join(format!("many/f123{i}"))));
    }
    w
}

#[test]
fn ext_files_match_their_sources() {
    for t in ["mkfs.ext4", "e2fsck", "debugfs"] {
        require_tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("root");
    linux_tree(&src);
    let cases = [
        ("ext4", "mkfs.ext4", ""),
        ("ext4 64bit 1k blocks", "mkfs.ext4", "-b 1024 -O 64bit"),
        ("ext3 (block maps)", "mkfs.ext3", ""),
        ("ext3 1k blocks (double indirect)", "mkfs.ext3", "-b 1024"),
        ("ext2", "mkfs.ext2", ""),
        ("ext4 inline_data", "mkfs.ext4", "-O inline_data"),
    ];
    let want = linux_want(&src);
    let want: Vec<(&str, &Path)> = want.iter().map(|(p, s)| (*p, s.as_path())).collect();
    for (name, mkfs, opts) in cases {
        let img = dir.path().join("fs.img");
        let _ = std::fs::remove_file(&img);
        sh(&format!(
            "{mkfs} -q -F {opts} -d {} {} 64M",
            src.display(),
            img.display()
        ));
        // rebuild large directories as htrees (mkfs -d writes them linear), and check /many
        // became one (EXT2_INDEX_FL)
        sh(&format!(
            "e2fsck -fyD {} >/dev/null 2>&1; test $? -le 1",
            img.display()
        ));
        let stat = sh(&format!(
            "debugfs -R 'stat /many' {} 2>/dev/null",
            img.display()
        ));
        let flags = stat
            .split("Flags: 0x")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next();
        let flags = u32::from_str_radix(flags.unwrap(), 16).unwrap();
        assert!(flags & 0x1000 != 0, "{name}: /many is not an htree");
        // "/lib/../etc/hostname" is missing: /lib is /usr/lib, so .. is /usr, which has no
        // etc (as the kernel resolves it)
        let got = find(&img, &LINUX_PATTERNS);
        check(&img, &got, &want, name, name.contains("inline"));
        if name.contains("inline") {
            // small files live in the inode: no ranges, and the directory holding them may
            // be inline too
            let f = &find(&img, &["/etc/hostname"])["/etc/hostname"];
            assert_eq!((f.size, f.ranges.len()), (7, 0), "{name}");
        } else {
            let f = &find(&img, &["/etc/hostname"])["/etc/hostname"];
            assert_eq!(bytes_of(&img, 0, f), b"rescue\n", "{name}");
        }
    }
}

#[test]
fn through_a_partition_slice() {
    require_tool("mkfs.ext4");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("root");
    linux_tree(&src);
    let img = dir.path().join("fs.img");
    sh(&format!(
        "mkfs.ext4 -q -F -d {} {} 64M",
        src.display(),
        img.display()
    ));
    // the filesystem 1 MiB into a disk file
    let disk = dir.path().join("disk.img");
    sparse(&disk, 66 << 20);
    sh(&format!(
        "dd if={} of={} bs=1M seek=1 conv=notrunc,sparse status=none",
        img.display(),
        disk.display()
    ));
    let dev = FileDev::open(&disk, OpenMode::Read).unwrap();
    let part = Slice::new(&dev, 1 << 20, 64 << 20);
    let found = find_files(&part, &["/sbin/init"]).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].path, "/bin/busybox");
    assert_eq!(
        bytes_of(&disk, 1 << 20, &found[0]),
        std::fs::read(src.join("bin/busybox")).unwrap()
    );
}

/// Fills the filesystem with small files, deletes every other one and writes `big` with
/// debugfs, so that its blocks land in the holes.
fn fragment(img: &Path, big: &Path, dir: &Path) {
    let mut cmds = String::new();
    for i in 0..200 {
        cmds.push_str(&format!("write {} s{i}\n", dir.join("small").display()));
    }
    for i in (0..200).step_by(2) {
        cmds.push_str(&format!("rm s{i}\n"));
    }
    cmds.push_str(&format!("write {} frag\n", big.display()));
    let script = dir.join("cmds");
    std::fs::write(&script, cmds).unwrap();
    sh(&format!(
        "debugfs -w -f {} {} >/dev/null 2>&1",
        script.display(),
        img.display()
    ));
}

#[test]
fn fragmented_and_sparse_ext_files() {
    for t in ["mkfs.ext4", "debugfs"] {
        require_tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small"), noise(8192, 9)).unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, noise(1 << 20, 10)).unwrap();
    // a sparse file reaching into the triple-indirect range of 1 KiB blocks (> 64 MiB)
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let holes = empty.join("holes");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&holes).unwrap();
        f.write_all_at(&noise(4096, 11), 0).unwrap();
        f.write_all_at(&noise(8192, 12), 70 << 20).unwrap();
    }
    for (name, mkfs, opts) in [
        ("ext4", "mkfs.ext4", "-b 1024"),
        ("ext3", "mkfs.ext3", "-b 1024"),
    ] {
        let img = dir.path().join("fs.img");
        let _ = std::fs::remove_file(&img);
        sh(&format!(
            "{mkfs} -q -F {opts} -d {} {} 32M",
            empty.display(),
            img.display()
        ));
        fragment(&img, &big, dir.path());
        let got = find(&img, &["/frag", "/holes", "/s1"]);
        let f = &got["/frag"];
        assert!(f.ranges.len() > 4, "{name}: {} ranges", f.ranges.len());
        assert_eq!(bytes_of(&img, 0, f), std::fs::read(&big).unwrap(), "{name}");
        assert_eq!(bytes_of(&img, 0, &got["/s1"]), noise(8192, 9), "{name}");
        let h = &got["/holes"];
        assert_eq!(h.size, (70 << 20) + 8192, "{name}");
        let mut data = noise(4096, 11);
        data.extend(noise(8192, 12));
        assert_eq!(bytes_of(&img, 0, h), data, "{name}: sparse file");
    }
}

/// Runs an mtools command on the image.
fn mtool(img: &Path, cmd: &str, args: &str) {
    sh(&format!("{cmd} -i {} {args}", img.display()));
}

#[test]
fn fat_files_match_their_sources() {
    for t in ["mkfs.vfat", "mcopy", "mmd", "mdel"] {
        require_tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let efi = dir.path().join("bootx64.efi");
    std::fs::write(&efi, noise(300_001, 20)).unwrap();
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, noise(1 << 20, 21)).unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, noise(3000, 22)).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    for (name, size_mb, fat) in [("FAT12", 4, "12"), ("FAT16", 32, "16"), ("FAT32", 64, "32")] {
        let img = dir.path().join("fat.img");
        let _ = std::fs::remove_file(&img);
        sparse(&img, size_mb << 20);
        sh(&format!("mkfs.vfat -F {fat} {} >/dev/null", img.display()));
        mtool(
            &img,
            "mmd",
            "::/EFI ::/EFI/BOOT ::/boot '::/Long Directory Name'",
        );
        mtool(
            &img,
            "mcopy",
            &format!("{} ::/EFI/BOOT/BOOTX64.EFI", efi.display()),
        );
        // fragment the kernel: small files, every other deleted, then the kernel
        for i in 0..20 {
            mtool(&img, "mcopy", &format!("{} ::/boot/s{i}", small.display()));
        }
        for i in (0..20).step_by(2) {
            mtool(&img, "mdel", &format!("::/boot/s{i}"));
        }
        if fat == "32" {
            // mtools allocates after FSInfo's next-free hint: make it unknown, so that the
            // search starts at the volume's start and finds the holes
            write_at(&img, 512 + 492, &u32::MAX.to_le_bytes());
        }
        mtool(
            &img,
            "mcopy",
            &format!("{} ::/boot/vmlinuz-6.1.0-amd64", kernel.display()),
        );
        mtool(
            &img,
            "mcopy",
            &format!("{} '::/Long Directory Name/Some File.txt'", small.display()),
        );
        mtool(&img, "mcopy", &format!("{} ::/boot/EMPTY", empty.display()));
        let got = find(
            &img,
            &[
                "/efi/boot/bootx64.efi",
                "/BOOT/VMLINUZ*",
                "/long directory name/some file.TXT",
                "/boot/s1",
                "/boot/empty",
                "/boot/s0",
                "/nothing/here",
            ],
        );
        check(
            &img,
            &got,
            &[
                ("/EFI/BOOT/BOOTX64.EFI", &efi),
                ("/boot/vmlinuz-6.1.0-amd64", &kernel),
                ("/Long Directory Name/Some File.txt", &small),
                ("/boot/s1", &small),
                ("/boot/EMPTY", &empty),
            ],
            name,
            false,
        );
        assert!(
            got["/boot/vmlinuz-6.1.0-amd64"].ranges.len() > 1,
            "{name}: fragmented"
        );
        // 8.3 aliases of long names match too
        let short = find(&img, &["/LONGDI~1/SOMEFI~1.TXT", "/boot/vmlinu~1.0-a"]);
        assert!(
            short.contains_key("/Long Directory Name/Some File.txt"),
            "{name}: {:?}",
            short.keys()
        );
        assert!(short.contains_key("/boot/vmlinuz-6.1.0-amd64"), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// hostile images

fn err_of(data: Vec<u8>, patterns: &[&str]) -> Error {
    let dev = MemDev::from_vec(data, 512);
    match find_files(&dev, patterns) {
        Err(e) => e,
        Ok(v) => panic!("expected an error, found {v:?}"),
    }
}

fn ext_image(dir: &Path) -> (Vec<u8>, FoundFile) {
    let src = dir.join("root");
    std::fs::create_dir_all(src.join("boot")).unwrap();
    std::fs::write(src.join("boot/vmlinuz"), noise(200_000, 30)).unwrap();
    let img = dir.join("h.img");
    sh(&format!(
        "mkfs.ext4 -q -F -b 4096 -d {} {} 16M",
        src.display(),
        img.display()
    ));
    let f = find(&img, &["/boot/vmlinuz"])
        .remove("/boot/vmlinuz")
        .unwrap();
    (std::fs::read(&img).unwrap(), f)
}

#[test]
fn damaged_ext_gives_errors() {
    require_tool("mkfs.ext4");
    let dir = tempfile::tempdir().unwrap();
    let (img, file) = ext_image(dir.path());
    // truncated: the superblock says more blocks than there are
    let e = err_of(img[..img.len() / 2].to_vec(), &["/boot/vmlinuz"]);
    assert!(format!("{:?}", e).contains("exceed the partition"), "{e:?}");
    // the middle of the superblock zeroed (magic kept)
    let mut d = img.clone();
    d[1024 + 0x04..1024 + 0x30].fill(0);
    assert!(matches!(
        err_of(d, &["/boot/vmlinuz"]),
        Error::Filesystem(_)
    ));
    // the file's extent points past the end of the disk: find the extent (start block of
    // the first range, little-endian, at +8 of an extent entry) in the inode table and move it
    let start = (file.ranges[0].0 / 4096) as u32;
    let mut d = img.clone();
    let needle = start.to_le_bytes();
    let at = (0..d.len() - 4)
        .find(|&i| {
            d[i..i + 4] == needle && d[i - 8..i - 6] == [0, 0] && i % 4 == 0 && {
                // an extent header 12 bytes before the first entry
                d[i - 20..i - 18] == [0x0A, 0xF3]
            }
        })
        .expect("extent entry");
    d[at..at + 4].copy_from_slice(&0x00FF_FFFFu32.to_le_bytes());
    let e = err_of(d, &["/boot/vmlinuz"]);
    let text = lifeboat::error::with_causes(&e);
    assert!(text.contains("outside the filesystem"), "{text}");
    assert!(text.contains("/boot/vmlinuz"), "{text}");
}

#[test]
fn damaged_fat_gives_errors() {
    for t in ["mkfs.vfat", "mcopy"] {
        require_tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fat.img");
    sparse(&img, 32 << 20);
    sh(&format!("mkfs.vfat -F 16 {} >/dev/null", img.display()));
    let src = dir.path().join("k");
    std::fs::write(&src, noise(100_000, 40)).unwrap();
    mtool(&img, "mcopy", &format!("{} ::/KERNEL", src.display()));
    let f = find(&img, &["/kernel"]).remove("/KERNEL").unwrap();
    let data = std::fs::read(&img).unwrap();
    let bps = u64::from(u16::from_le_bytes([data[11], data[12]]));
    let spc = u64::from(data[13]);
    let reserved = u64::from(u16::from_le_bytes([data[14], data[15]]));
    let fat_len = u64::from(u16::from_le_bytes([data[22], data[23]]));
    let root_entries = u64::from(u16::from_le_bytes([data[17], data[18]]));
    let data_start = (reserved + 2 * fat_len) * bps + root_entries * 32;
    let first = ((f.ranges[0].0 - data_start) / (bps * spc) + 2) as usize;
    let fat = (reserved * bps) as usize;
    // the chain's second cluster points back to the first: a loop
    let mut d = data.clone();
    d[fat + (first + 1) * 2..fat + (first + 1) * 2 + 2]
        .copy_from_slice(&(first as u16).to_le_bytes());
    let text = lifeboat::error::with_causes(&err_of(d, &["/KERNEL"]));
    assert!(text.contains("loops"), "{text}");
    // the directory entry points outside the volume
    let root = fat + 2 * fat_len as usize * bps as usize;
    let entry = (0..root_entries as usize)
        .map(|i| root + 32 * i)
        .find(|&e| &data[e..e + 11] == b"KERNEL     ")
        .unwrap();
    let mut d = data.clone();
    d[entry + 26..entry + 28].copy_from_slice(&0xFFF0u16.to_le_bytes());
    let text = lifeboat::error::with_causes(&err_of(d, &["/KERNEL"]));
    assert!(text.contains("outside the volume"), "{text}");
    // a free cluster in the chain
    let mut d = data.clone();
    d[fat + first * 2..fat + first * 2 + 2].fill(0);
    let text = lifeboat::error::with_causes(&err_of(d, &["/KERNEL"]));
    assert!(text.contains("free"), "{text}");
}

/// Random damage anywhere in the metadata: every outcome is allowed except a panic.
#[test]
fn random_damage_never_panics() {
    for t in ["mkfs.ext4", "mkfs.vfat", "mcopy"] {
        require_tool(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let (ext, _) = ext_image(dir.path());
    let fat_img = dir.path().join("fat.img");
    sparse(&fat_img, 8 << 20);
    sh(&format!("mkfs.vfat -F 12 {} >/dev/null", fat_img.display()));
    let src = dir.path().join("k");
    std::fs::write(&src, noise(50_000, 41)).unwrap();
    mtool(&fat_img, "mcopy", &format!("{} ::/KERNEL", src.display()));
    let fat = std::fs::read(&fat_img).unwrap();
    let mut x: u64 = 7;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (base, meta) in [(ext, 160usize << 10), (fat, 40 << 10)] {
        for _ in 0..300 {
            let mut d = base.clone();
            for _ in 0..1 + rnd() % 8 {
                let at = (rnd() as usize) % meta;
                d[at] = rnd() as u8;
            }
            let dev = MemDev::from_vec(d, 512);
            let _ = find_files(&dev, &["/boot/vmlinuz", "/KERNEL", "/boot/*", "/*"]);
            assert!(dev.len() > 0);
        }
    }
}

#[test]
fn bad_patterns_are_unsupported() {
    require_tool("mkfs.vfat");
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fat.img");
    sparse(&img, 4 << 20);
    sh(&format!("mkfs.vfat {} >/dev/null", img.display()));
    let dev = FileDev::open(&img, OpenMode::Read).unwrap();
    for p in ["boot/x", "/a*/b", "/a*b", "/a**"] {
        assert!(
            matches!(find_files(&dev, &[p]), Err(Error::Unsupported(_))),
            "{p}"
        );
    }
    assert!(find_files(&dev, &["/", "/*", "/missing"])
        .unwrap()
        .is_empty());
}
