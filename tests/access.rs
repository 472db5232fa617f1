//! Tier 1: the access layer on plain disk-image files. Every chain member read through
//! [`ImageSource`] equals its disk state byte for byte, at any offset and length; a damaged
//! chunk fails exactly the reads it serves (named once in the warnings) while the rest read
//! correctly; the cache stays within its bound; an overlay over an image takes writes while
//! the image file's bytes stay the same.
#![allow(clippy::unwrap_used)]

use lifeboat::access::{ImageSource, Overlay, OverlayStore};
use lifeboat::blockdev::BlockDev;
use lifeboat::image::Chain;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const MIB: usize = 1 << 20;
const DISK: usize = 20 * MIB;

fn ok(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lifeboat {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fill(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (i / 8192) % 2 == 0 {
                b"lifeboat access "[(x % 16) as usize]
            } else {
                (x >> 7) as u8
            }
        })
        .collect()
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

/// A full image, an incremental and a differential, each with the disk state it describes.
fn chain(tmp: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = tmp.join("images");
    std::fs::create_dir(&dir).unwrap();
    let disk = tmp.join("disk.img");
    let mut d = vec![0u8; DISK];
    d[..10 * MIB].copy_from_slice(&fill(1, 10 * MIB));
    std::fs::write(&disk, &d).unwrap();
    let full = dir.join("pc.lbi");
    ok(&["image", s(&disk), "-o", s(&full)]);
    let mut out = vec![(full, d.clone())];
    d[3 * MIB + 4096..3 * MIB + 4096 + 70_000].copy_from_slice(&fill(2, 70_000));
    d[12 * MIB..13 * MIB].copy_from_slice(&fill(3, MIB));
    d[6 * MIB..6 * MIB + (256 << 10)].fill(0);
    std::fs::write(&disk, &d).unwrap();
    ok(&["image", s(&disk), "--incremental", s(&dir)]);
    out.push((newest(&dir, "-incr"), d.clone()));
    d[15 * MIB..15 * MIB + 5000].copy_from_slice(&fill(4, 5000));
    std::fs::write(&disk, &d).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&["image", s(&disk), "--differential", s(&dir)]);
    out.push((newest(&dir, "-diff"), d));
    out
}

fn read(dev: &dyn BlockDev, off: usize, len: usize) -> lifeboat::error::Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    dev.read_at(&mut b, off as u64).map(|()| b)
}

#[test]
fn every_chain_member_reads_as_its_disk_state() {
    let tmp = tempfile::tempdir().unwrap();
    for (img, want) in chain(tmp.path()) {
        let src = ImageSource::open(&img, &[], 2 * MIB as u64).unwrap();
        assert_eq!(src.len(), DISK as u64);
        assert!(read(&src, 0, DISK).unwrap() == want, "{}", img.display());
        // odd offsets and lengths, across records, frames and the unused tail
        let mut x = 7u64;
        for _ in 0..300 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let off = (x >> 20) as usize % DISK;
            let len = ((x >> 8) as usize % (300 << 10)).min(DISK - off);
            assert!(
                read(&src, off, len).unwrap() == want[off..off + len],
                "{} at {off}+{len}",
                img.display()
            );
        }
        assert!(src.read_at(&mut [0u8; 2], DISK as u64 - 1).is_err());
        // the cache keeps to its bound (plus the one frame being used)
        assert!(src.cached_bytes() <= 2 * MIB as u64 + 4 * MIB as u64);
        assert!(src.damaged().is_empty());
    }
}

#[test]
fn a_damaged_chunk_fails_only_its_reads_and_is_named_once() {
    let tmp = tempfile::tempdir().unwrap();
    let states = chain(tmp.path());
    let (full, want) = &states[0];
    // damage the stored frame of a record in the middle of the data
    let chain = Chain::open(full, &[]).unwrap();
    let rec = *chain
        .leaf()
        .records()
        .iter()
        .find(|r| r.disk_offset >= 5 * MIB as u64 && r.stored_len > 1000)
        .unwrap();
    drop(chain);
    let mut b = std::fs::read(full).unwrap();
    b[(rec.file_offset + u64::from(rec.stored_len) / 2) as usize] ^= 0x40;
    std::fs::write(full, &b).unwrap();

    let src = ImageSource::open(full, &[], 64 << 20).unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let l2 = log.clone();
    src.on_warning(move |m| l2.lock().unwrap().push(m.to_string()));
    // every record: those of the damaged frame may fail, and fail every time; every read
    // that succeeds returns the right bytes
    let records = Chain::open(full, &[]).unwrap().leaf().records().to_vec();
    let mut failed = Vec::new();
    for r in &records {
        let (at, n) = (r.disk_offset as usize, r.raw_len as usize);
        for _ in 0..2 {
            match read(&src, at, n) {
                Ok(got) => assert!(got == want[at..at + n], "wrong bytes at {at}"),
                Err(e) => {
                    let m = lifeboat::error::with_causes(&e);
                    assert!(m.contains("chunk") && m.contains(&at.to_string()), "{m}");
                    assert_eq!(
                        r.file_offset, rec.file_offset,
                        "a record of another frame failed: {m}"
                    );
                    failed.push(at);
                }
            }
        }
    }
    assert!(!failed.is_empty(), "the damage went unnoticed");
    // a read that spans a damaged record fails as a whole; far from it reads are right
    assert!(read(&src, failed[0].saturating_sub(100), 200).is_err());
    assert!(read(&src, 0, MIB).unwrap() == want[..MIB]);
    assert!(read(&src, 9 * MIB, MIB).unwrap() == want[9 * MIB..10 * MIB]);
    let log = log.lock().unwrap();
    assert_eq!(
        log.len() * 2,
        failed.len(),
        "each damaged record named once: {log:?}"
    );
    assert!(log[0].contains(&failed[0].to_string()), "{log:?}");
}

#[test]
fn an_overlay_over_an_image_takes_writes_and_leaves_the_file_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let states = chain(tmp.path());
    let (img, want) = &states[1];
    let before = blake3::hash(&std::fs::read(img).unwrap());
    let src: Arc<dyn BlockDev> = Arc::new(ImageSource::open(img, &[], 4 << 20).unwrap());
    for store in [
        OverlayStore::Memory { limit: 8 << 20 },
        OverlayStore::File(tmp.path().join("overlay")),
    ] {
        let ov = Overlay::new(src.clone(), store).unwrap();
        let mut model = want.clone();
        for (off, n, v) in [
            (100usize, 5000usize, 1u8),
            (5 * MIB + 3, 1 << 20, 2),
            (DISK - 10, 10, 3),
        ] {
            ov.write_at(&vec![v; n], off as u64).unwrap();
            model[off..off + n].fill(v);
        }
        assert!(read(&ov, 0, DISK).unwrap() == model);
        assert!(read(&*src, 0, DISK).unwrap() == *want);
    }
    assert_eq!(blake3::hash(&std::fs::read(img).unwrap()), before);
}

#[test]
fn many_readers_at_once_get_the_right_bytes_and_wait_for_each_other() {
    let tmp = tempfile::tempdir().unwrap();
    let states = chain(tmp.path());
    let (img, want) = &states[2];
    // a cache of one frame: readers keep evicting each other and the read-ahead's frames
    let src = Arc::new(ImageSource::open(img, &[], 1).unwrap());
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let src = src.clone();
            s.spawn(move || {
                let mut x = t + 1;
                for k in 0..60 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // half the threads read sequentially (read-ahead), half at random
                    let off = if t % 2 == 0 {
                        (k * 131_072 + t as usize * MIB) % (DISK - 131_072)
                    } else {
                        (x >> 20) as usize % (DISK - 131_072)
                    };
                    let got = read(&*src, off, 131_072).unwrap();
                    assert!(got == want[off..off + 131_072], "thread {t} at {off}");
                }
            });
        }
    });
    assert!(src.damaged().is_empty());
    // the cache's count stays true while frames are evicted and decoded again at once: at
    // most one 4 MiB frame is held (a frame counted twice would never be subtracted)
    assert!(
        src.cached_bytes() <= 4 * MIB as u64,
        "{}",
        src.cached_bytes()
    );
    // dropping the source ends its read-ahead thread (the test would hang otherwise)
    drop(src);
}
