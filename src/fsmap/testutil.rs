//! Test helpers shared by the probes' unit tests: external tools (mkfs, blkid), sparse image
//! files, a fuzzer that flips bytes where detection reads, and hand-built images of the formats
//! whose probes the cross-format tests in [`super::detect`](mod@super::detect) exercise.
//!
//! Tools that are missing make a test print SKIP and pass, except under `CI=true`, where they
//! are required.

use super::detect::{detect, FsInfo, FsKind};
use crate::blockdev::{check_range, BlockDev, FileDev, Geometry, MemDev, OpenMode};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

// ---- tools ---------------------------------------------------------------------------

/// Finds an external program in PATH or the sbin directories. Missing: fails under
/// CI=true, otherwise prints SKIP and returns None.
pub(crate) fn tool(name: &str) -> Option<PathBuf> {
    let found = optional_tool(name);
    assert!(
        found.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "{name} is required when CI=true"
    );
    found
}

/// Like [`tool`], for programs CI is not required to have (mtools).
pub(crate) fn optional_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from);
    let found = std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIP: {name} is not installed");
    }
    found
}

pub(crate) fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawning a tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A sparse temporary image file.
pub(crate) struct Img {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
}

pub(crate) fn sparse(size: u64) -> Img {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    std::fs::File::create(&path).unwrap().set_len(size).unwrap();
    Img { _dir: dir, path }
}

pub(crate) fn image_from(bytes: &[u8]) -> Img {
    let img = sparse(0);
    std::fs::write(&img.path, bytes).unwrap();
    img
}

pub(crate) fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

pub(crate) fn read_prefix(path: &Path, len: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .take(len)
        .read_to_end(&mut buf)
        .unwrap();
    buf
}

pub(crate) fn detect_file(path: &Path) -> Option<FsInfo> {
    let dev = FileDev::open(path, OpenMode::Read).unwrap();
    detect(&dev).unwrap()
}

/// `blkid -p -o export` as a map, with blkid's backslash escapes removed.
pub(crate) fn blkid(path: &Path) -> Option<HashMap<String, String>> {
    let prog = tool("blkid")?;
    let out = Command::new(prog)
        .args(["-p", "-o", "export"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let map = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let mut value = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                value.push(if c == '\\' {
                    chars.next().unwrap_or(c)
                } else {
                    c
                });
            }
            (k.to_owned(), value)
        })
        .collect();
    Some(map)
}

/// Asserts that kind, LABEL and UUID agree with blkid on `path`.
pub(crate) fn assert_like_blkid(path: &Path, info: &FsInfo) {
    let Some(b) = blkid(path) else { return };
    let ty = b.get("TYPE").map(String::as_str);
    if info.kind == FsKind::Ext2 {
        // blkid calls ext2 "ext4" on hosts whose kernel has no ext2 driver
        assert!(matches!(ty, Some("ext2" | "ext4")), "TYPE {ty:?}");
    } else {
        assert_eq!(ty, Some(info.kind.blkid_name()), "TYPE, blkid said {b:?}");
    }
    assert_eq!(
        b.get("LABEL"),
        info.label.as_ref(),
        "LABEL, blkid said {b:?}"
    );
    assert_eq!(b.get("UUID"), info.uuid.as_ref(), "UUID, blkid said {b:?}");
}

/// Makes a sparse image of `size` bytes, runs `program args… image` on it, checks the
/// result against blkid, fuzzes it, and returns the image and what detect found.
pub(crate) fn mkfs_case(size: u64, program: &str, args: &[&str]) -> Option<(Img, FsInfo)> {
    let prog = tool(program)?;
    let img = sparse(size);
    output(Command::new(prog).args(args).arg(&img.path));
    let info =
        detect_file(&img.path).unwrap_or_else(|| panic!("{program} {args:?}: nothing detected"));
    assert_like_blkid(&img.path, &info);
    if let Some(used) = info.used_bytes {
        assert!(
            used > 0 && used <= size,
            "{program} {args:?}: used {used} of {size}"
        );
    }
    fuzz_image(&img.path, 150);
    Some((img, info))
}

/// "key: value" or "key = value" lines of a tool's output.
pub(crate) fn kv(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"));
    let value = line[line.find(key).unwrap() + key.len()..]
        .trim_start_matches([':', '=', ' ', '\t'])
        .split_whitespace()
        .next()
        .unwrap();
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => value.parse().unwrap(),
    }
}

// ---- fuzzing helpers --------------------------------------------------------------------

/// A read-only device over a borrowed buffer, so fuzzing can mutate in place.
pub(crate) struct BytesDev<'a>(pub(crate) &'a [u8]);

impl BlockDev for BytesDev<'_> {
    fn geometry(&self) -> Geometry {
        Geometry::new(self.0.len() as u64, 512)
    }
    fn path(&self) -> &Path {
        Path::new("<fuzz>")
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.path(), offset, buf.len(), self.len())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.0[start..start + buf.len()]);
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(Error::ReadOnly {
            path: self.path().to_path_buf(),
        })
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// Records the byte ranges read through it.
pub(crate) struct Recorder<'a> {
    inner: &'a dyn BlockDev,
    reads: Mutex<Vec<(u64, usize)>>,
}

impl BlockDev for Recorder<'_> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.reads.lock().unwrap().push((offset, buf.len()));
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

/// xorshift64*: deterministic, no crate needed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Flips random bytes inside the ranges detect reads on the image at `path`, `rounds`
/// times, and checks detect neither panics nor fails.
pub(crate) fn fuzz_image(path: &Path, rounds: usize) {
    let file = FileDev::open(path, OpenMode::Read).unwrap();
    let rec = Recorder {
        inner: &file,
        reads: Mutex::new(Vec::new()),
    };
    detect(&rec).unwrap();
    let hot: Vec<(u64, usize)> = rec.reads.into_inner().unwrap();
    let end = hot.iter().map(|&(o, l)| o + l as u64).max().unwrap_or(0);
    let mut bytes = read_prefix(path, end + 4096);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ end);
    for _ in 0..rounds {
        let flips = 1 + rng.below(8) as usize;
        let mut saved = Vec::with_capacity(flips);
        for _ in 0..flips {
            let (o, l) = hot[rng.below(hot.len() as u64) as usize];
            // favour the start of each read, where headers live
            let span = if rng.below(2) == 0 { l.min(512) } else { l };
            let within = rng.below(span as u64);
            let at = (o + within) as usize;
            if at < bytes.len() {
                saved.push((at, bytes[at]));
                bytes[at] = rng.next() as u8;
            }
        }
        detect(&BytesDev(&bytes)).expect("an in-memory device never fails");
        for (at, b) in saved.into_iter().rev() {
            bytes[at] = b;
        }
    }
}

/// Flips random bytes inside the ranges `map` reads on the image at `path`, `rounds` times:
/// `map` must never panic or fail on the in-memory copy, and every map it makes must pass
/// [`super::check_ranges`] (sorted, disjoint, inside the device).
pub(crate) fn fuzz_map(path: &Path, map: super::MapFn, rounds: usize, seed: u64) {
    let file = FileDev::open(path, OpenMode::Read).unwrap();
    let rec = Recorder {
        inner: &file,
        reads: Mutex::new(Vec::new()),
    };
    map(&rec).unwrap().unwrap();
    let hot: Vec<(u64, usize)> = rec.reads.into_inner().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let mut rng = Rng(seed);
    for _ in 0..rounds {
        let mut saved = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let (o, l) = hot[rng.below(hot.len() as u64) as usize];
            let at = (o + rng.below(l.min(600) as u64)) as usize;
            saved.push((at, bytes[at]));
            bytes[at] = rng.next() as u8;
        }
        if let Ok(m) = map(&BytesDev(&bytes)).expect("an in-memory device never fails") {
            assert!(super::check_ranges(&m.ranges, bytes.len() as u64).is_ok());
        }
        for (at, b) in saved.into_iter().rev() {
            bytes[at] = b;
        }
    }
}

/// `map` on the image file at `path`.
pub(crate) fn map_file(path: &Path, map: super::MapFn) -> super::MapResult<super::UsedMap> {
    let dev = FileDev::open(path, OpenMode::Read).unwrap();
    map(&dev)
}

/// `map` on the image file at `path` must refuse it with a reason that contains `says`.
pub(crate) fn assert_refused(path: &Path, map: super::MapFn, says: &str) {
    match map_file(path, map).unwrap() {
        Ok(m) => panic!(
            "mapped ({} ranges) where it should say {says:?}",
            m.ranges.len()
        ),
        Err(e) => assert!(e.to_string().contains(says), "{e} (wanted {says:?})"),
    }
}

// ---- hand-built images ------------------------------------------------------------------

pub(crate) fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

pub(crate) const HAND_UUID: [u8; 16] = [
    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
];
pub(crate) const HAND_UUID_TEXT: &str = "12345678-9abc-def0-0123-456789abcdef";

/// 256 KiB holding an ext superblock with the given features and counts.
pub(crate) fn ext_image(
    compat: u32,
    incompat: u32,
    ro: u32,
    log_bs: u32,
    blocks: u64,
    free: u64,
) -> Vec<u8> {
    let mut d = vec![0u8; 256 << 10];
    let sb = &mut d[1024..2048];
    put(sb, 0x04, &(blocks as u32).to_le_bytes());
    put(sb, 0x0C, &(free as u32).to_le_bytes());
    put(sb, 0x18, &log_bs.to_le_bytes());
    put(sb, 0x38, &0xEF53u16.to_le_bytes());
    put(sb, 0x5C, &compat.to_le_bytes());
    put(sb, 0x60, &incompat.to_le_bytes());
    put(sb, 0x64, &ro.to_le_bytes());
    put(sb, 0x68, &HAND_UUID);
    put(sb, 0x78, b"hand\0");
    put(sb, 0x150, &((blocks >> 32) as u32).to_le_bytes());
    put(sb, 0x158, &((free >> 32) as u32).to_le_bytes());
    d
}

/// 1 MiB holding a FAT16 volume (512-byte sectors, 4 sectors per cluster, 1 reserved
/// sector, 2 FATs of 64 sectors, 512 root entries, 65536 sectors) with a root-directory
/// label and clusters 2 and 3 allocated.
pub(crate) fn fat16_image() -> Vec<u8> {
    let mut d = vec![0u8; 1 << 20];
    put(&mut d, 0, &[0xEB, 0x3C, 0x90]);
    put(&mut d, 3, b"mkfs.fat");
    put(&mut d, 0x0B, &512u16.to_le_bytes());
    d[0x0D] = 4;
    put(&mut d, 0x0E, &1u16.to_le_bytes());
    d[0x10] = 2;
    put(&mut d, 0x11, &512u16.to_le_bytes());
    d[0x15] = 0xF8;
    put(&mut d, 0x16, &64u16.to_le_bytes());
    put(&mut d, 0x20, &65536u32.to_le_bytes());
    d[0x26] = 0x29;
    put(&mut d, 0x27, &0x1234_ABCDu32.to_le_bytes());
    put(&mut d, 0x2B, b"BOOTLABEL  ");
    put(&mut d, 0x36, b"FAT16   ");
    put(&mut d, 510, &[0x55, 0xAA]);
    for fat in [512, 512 + 64 * 512] {
        put(
            &mut d,
            fat,
            &[0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
        );
    }
    let root = (1 + 128) * 512;
    put(&mut d, root, b"ROOTLABEL  ");
    d[root + 11] = 0x08;
    d
}

/// FAT16 metadata sectors of [`fat16_image`]: reserved + FATs + root directory.
pub(crate) const FAT16_META: u64 = (1 + 128 + 32) * 512;

/// 64 KiB holding an NTFS boot sector (512-byte sectors, 4 KiB clusters, MFT at cluster
/// 4, 1 KiB records) and MFT record 3 whose $VOLUME_NAME straddles the first fixup.
pub(crate) fn ntfs_image() -> Vec<u8> {
    let mut d = vec![0u8; 64 << 10];
    put(&mut d, 0, &[0xEB, 0x52, 0x90]);
    put(&mut d, 3, b"NTFS    ");
    put(&mut d, 0x0B, &512u16.to_le_bytes());
    d[0x0D] = 8;
    d[0x15] = 0xF8;
    put(&mut d, 0x28, &131_071u64.to_le_bytes());
    put(&mut d, 0x30, &4u64.to_le_bytes());
    put(&mut d, 0x38, &8u64.to_le_bytes());
    d[0x40] = 0xF6; // -10: 1 KiB records
    put(&mut d, 0x48, &0x0123_4567_89AB_CDEFu64.to_le_bytes());
    put(&mut d, 510, &[0x55, 0xAA]);
    let rec = 4 * 4096 + 3 * 1024;
    let r = &mut d[rec..rec + 1024];
    put(r, 0, b"FILE");
    put(r, 4, &0x30u16.to_le_bytes());
    put(r, 6, &3u16.to_le_bytes());
    put(r, 0x14, &480u16.to_le_bytes());
    put(r, 0x18, &600u32.to_le_bytes());
    // $VOLUME_NAME at 480: 24-byte header, value "HandMade" at 504..520
    put(r, 480, &0x60u32.to_le_bytes());
    put(r, 484, &40u32.to_le_bytes());
    put(r, 480 + 0x10, &16u32.to_le_bytes());
    put(r, 480 + 0x14, &24u16.to_le_bytes());
    let name: Vec<u8> = "HandMade"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    put(r, 504, &name);
    put(r, 520, &0xFFFF_FFFFu32.to_le_bytes());
    // update sequence: number 7, originals saved, stride ends replaced
    put(r, 0x30, &7u16.to_le_bytes());
    let first = [r[510], r[511]];
    let second = [r[1022], r[1023]];
    put(r, 0x32, &first);
    put(r, 0x34, &second);
    put(r, 510, &7u16.to_le_bytes());
    put(r, 1022, &7u16.to_le_bytes());
    d
}

pub(crate) fn mem(d: Vec<u8>) -> MemDev {
    MemDev::from_vec(d, 512)
}

/// A UUID the real-image tests give to mkfs.
pub(crate) const UUID_A: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
