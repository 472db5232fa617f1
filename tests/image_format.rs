//! Tier 1: the v1 image format. Round trips, a golden fixture that pins the bytes, and hostile
//! files (flipped bits, truncation at every chunk boundary, zero length, newer versions).
#![allow(clippy::unwrap_used)]

use lifeboat::image::format::{Header, FOOTER_LEN, HEADER_LEN, VERSION_MINOR};
use lifeboat::image::{Codec, EncodedChunk, FormatError, ImageReader, ImageWriter};
use lifeboat::Error;
use std::path::{Path, PathBuf};

/// Written by the 1.0 writer (every record its own frame); 1.1 readers must read it as is.
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden-v1.lbi");
/// Written by the current (1.1) writer: blocks and a frame shared by two records.
const GOLDEN_11: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden-v1.1.lbi"
);

fn header() -> Header {
    Header {
        minor: VERSION_MINOR,
        block_size: 65536,
        volume_size: 0,
        keys: None,
        flags: 0,
        image_id: *b"golden-image-v1!",
        parent_id: [0; 16],
        parent_root: [0; 32],
        created_unix: 1_795_000_000,
        chunk_size: 64 * 1024,
        zstd_level: 3,
        source_size: 1 << 20,
        sector_size: 512,
    }
}

fn chunk(disk_offset: u64, data: &[u8], codec: Codec) -> EncodedChunk {
    let stored = match codec {
        Codec::Zstd => zstd::bulk::compress(data, 3).unwrap(),
        Codec::Raw => data.to_vec(),
        _ => Vec::new(),
    };
    EncodedChunk::single(disk_offset, data, codec, stored)
}

/// The fixture's content: a text chunk (zstd), random-looking bytes (raw), zeros, and a
/// repeat of the text chunk (deduplicated).
fn contents() -> Vec<(u64, Vec<u8>, Codec)> {
    let text: Vec<u8> = b"Lifeboat golden chunk. "
        .iter()
        .cycle()
        .take(65536)
        .copied()
        .collect();
    let mut x: u32 = 1;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    vec![
        (0, text.clone(), Codec::Zstd),
        (65536, noise, Codec::Raw),
        (131072, vec![0; 65536], Codec::Zero),
        (512 * 1024, text, Codec::Zstd),
    ]
}

fn write_image(path: &Path) -> lifeboat::image::WriteSummary {
    let mut w = ImageWriter::create(path, header()).unwrap();
    for (off, data, codec) in contents() {
        w.push(chunk(off, &data, codec)).unwrap();
    }
    w.finish(&serde_json::json!({"tool": "lifeboat golden", "source": {"size_bytes": 1048576}}))
        .unwrap()
}

fn image_err(path: &Path) -> FormatError {
    match ImageReader::open(path) {
        Err(Error::Image { source, .. }) => source,
        other => panic!("expected an image error, got {other:?}"),
    }
}

#[test]
fn round_trip_reads_every_chunk_back() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.lbi");
    let s = write_image(&p);
    assert!(!dir.path().join("a.lbi.partial").exists());
    assert_eq!(s.chunk_count, 4);
    let r = ImageReader::open(&p).unwrap();
    assert_eq!(r.header(), &header());
    assert_eq!(r.meta().tool, "lifeboat golden");
    let mut buf = Vec::new();
    for (i, (off, data, codec)) in contents().iter().enumerate() {
        let rec = r.records()[i];
        assert_eq!((rec.disk_offset, rec.codec), (*off, *codec));
        r.read_chunk(i, &mut buf).unwrap();
        assert_eq!(&buf, data);
    }
    // the repeated chunk shares the first one's stored bytes
    assert_eq!(r.records()[3].file_offset, r.records()[0].file_offset);
    let v = r.verify(|_| {}).unwrap();
    assert_eq!(v.root_hash, s.root_hash);
    assert_eq!(v.raw_bytes, 65536 * 3 + 4096);
}

/// The 1.1 fixture: the contents above plus one chunk whose two 64 KiB records share a
/// zstd frame.
fn write_image_11(path: &Path) -> lifeboat::image::WriteSummary {
    let mut w = ImageWriter::create(path, header()).unwrap();
    for (off, data, codec) in contents() {
        w.push(chunk(off, &data, codec)).unwrap();
    }
    let (a, b) = shared_frame_records();
    let frame = [a.clone(), b.clone()].concat();
    let mut c = EncodedChunk::single(
        768 * 1024,
        &a,
        Codec::Zstd,
        zstd::bulk::compress(&frame, 3).unwrap(),
    );
    let mut second = EncodedChunk::single(832 * 1024, &b, Codec::Zstd, Vec::new()).records[0];
    second.frame_offset = a.len() as u32;
    c.records.push(second);
    w.push(c).unwrap();
    w.finish(&serde_json::json!({"tool": "lifeboat golden 1.1", "source": {"size_bytes": 1048576}}))
        .unwrap()
}

fn shared_frame_records() -> (Vec<u8>, Vec<u8>) {
    let a: Vec<u8> = (0..65536u32).map(|i| (i % 7) as u8 + b'a').collect();
    let b: Vec<u8> = (0..65536u32).map(|i| (i % 11) as u8 + b'A').collect();
    (a, b)
}

#[test]
fn golden_fixture_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("golden.lbi");
    write_image_11(&p);
    let fresh = std::fs::read(&p).unwrap();
    if std::env::var("LIFEBOAT_BLESS").is_ok() {
        std::fs::write(GOLDEN_11, &fresh).unwrap();
    }
    let golden = std::fs::read(GOLDEN_11)
        .expect("tests/fixtures/golden-v1.1.lbi (LIFEBOAT_BLESS=1 makes it)");
    assert!(
        fresh == golden,
        "the v1.1 format changed: a format change must bump the version and add a new golden file"
    );
    let r = ImageReader::open(Path::new(GOLDEN_11)).unwrap();
    assert_eq!(&golden[..8], b"LIFEBOAT");
    assert_eq!((r.header().minor, r.header().block_size), (1, 65536));
    assert_eq!(r.footer().chunk_count, 6);
    // The last two records share one frame and read back as their own bytes.
    let (a, b) = shared_frame_records();
    let recs = r.records();
    assert_eq!(recs[4].file_offset, recs[5].file_offset);
    assert_eq!((recs[4].frame_offset, recs[5].frame_offset), (0, 65536));
    let mut buf = Vec::new();
    r.read_chunk(4, &mut buf).unwrap();
    assert_eq!(buf, a);
    r.read_chunk(5, &mut buf).unwrap();
    assert_eq!(buf, b);
    assert_eq!(
        lifeboat::image::format::root_hash(&r.header().image_id, &[0; 32], r.records()),
        r.footer().root_hash
    );
    r.verify(|_| {}).unwrap();
}

#[test]
fn version_1_0_images_still_read() {
    let r = ImageReader::open(Path::new(GOLDEN)).unwrap();
    assert_eq!((r.header().minor, r.header().block_size), (0, 0));
    assert_eq!(r.footer().chunk_count, 4);
    let mut buf = Vec::new();
    for (i, (off, data, _)) in contents().iter().enumerate() {
        assert_eq!(r.records()[i].disk_offset, *off);
        r.read_chunk(i, &mut buf).unwrap();
        assert_eq!(&buf, data);
    }
    r.verify(|_| {}).unwrap();
}

fn copy_golden(dir: &Path) -> (PathBuf, Vec<u8>) {
    let p = dir.join("g.lbi");
    let bytes = std::fs::read(GOLDEN).unwrap();
    std::fs::write(&p, &bytes).unwrap();
    (p, bytes)
}

#[test]
fn flipped_bit_in_a_chunk_is_named_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut b) = copy_golden(dir.path());
    let r = ImageReader::open(&p).unwrap();
    let raw = r.records()[1];
    b[raw.file_offset as usize + 100] ^= 0x01;
    std::fs::write(&p, &b).unwrap();
    let r = ImageReader::open(&p).unwrap(); // structure is intact
    match r.verify(|_| {}) {
        Err(Error::Image {
            source:
                FormatError::Chunk {
                    index,
                    disk_offset,
                    file_offset,
                    ..
                },
            ..
        }) => {
            assert_eq!(
                (index, disk_offset, file_offset),
                (1, 65536, raw.file_offset)
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = lifeboat::error::with_causes(&r.verify(|_| {}).unwrap_err());
    assert!(
        msg.contains("chunk 1 (disk bytes 65536..69632, file byte 4"),
        "{msg}"
    );
}

#[test]
fn flipped_bits_in_structures() {
    let dir = tempfile::tempdir().unwrap();
    let (p, orig) = copy_golden(dir.path());
    let r = ImageReader::open(&p).unwrap();
    let f = *r.footer();
    let zstd_at = r.records()[0].file_offset as usize;
    let cases: [(&str, usize); 5] = [
        ("header", 300),
        ("index", f.index_offset as usize + 40),
        ("metadata", f.meta_offset as usize + 20),
        ("footer", orig.len() - 50),
        ("zstd chunk", zstd_at + 5),
    ];
    for (name, at) in cases {
        let mut b = orig.clone();
        b[at] ^= 0x10;
        std::fs::write(&p, &b).unwrap();
        let outcome = ImageReader::open(&p).and_then(|r| r.verify(|_| {}).map(|_| ()));
        let err = outcome.expect_err(name);
        let msg = lifeboat::error::with_causes(&err);
        match name {
            "zstd chunk" => assert!(msg.contains("chunk 0"), "{name}: {msg}"),
            "footer" => assert!(msg.contains("footer checksum mismatch"), "{name}: {msg}"),
            _ => assert!(
                msg.contains(&format!("{name} checksum mismatch")),
                "{name}: {msg}"
            ),
        }
    }
}

#[test]
fn truncation_anywhere_is_incomplete_never_shorter() {
    let dir = tempfile::tempdir().unwrap();
    let (p, b) = copy_golden(dir.path());
    let r = ImageReader::open(&p).unwrap();
    // every chunk boundary, every section boundary, and one byte short
    let mut cuts: Vec<usize> = r
        .records()
        .iter()
        .filter(|r| r.codec.stored_here())
        .map(|r| (r.file_offset + u64::from(r.stored_len)) as usize)
        .collect();
    cuts.extend([
        HEADER_LEN,
        r.footer().meta_offset as usize,
        r.footer().index_offset as usize,
        b.len() - FOOTER_LEN,
        b.len() - 1,
    ]);
    for cut in cuts {
        std::fs::write(&p, &b[..cut]).unwrap();
        match image_err(&p) {
            FormatError::Incomplete { .. } | FormatError::Checksum { what: "footer", .. } => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    std::fs::write(&p, &b[..100]).unwrap();
    assert!(matches!(
        image_err(&p),
        FormatError::Truncated { what: "header", .. }
    ));
    std::fs::write(&p, b"").unwrap();
    assert!(matches!(image_err(&p), FormatError::NotAnImage));
}

#[test]
fn newer_version_is_refused_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let (p, mut b) = copy_golden(dir.path());
    b[8] = 2;
    std::fs::write(&p, &b).unwrap();
    let e = image_err(&p);
    assert!(matches!(
        e,
        FormatError::UnsupportedVersion { major: 2, minor: 0 }
    ));
    assert_eq!(
        e.to_string(),
        "image format version 2.0 is not supported by this Lifeboat (reads 1.x)"
    );
}

#[test]
fn unfinished_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.lbi");
    {
        let mut w = ImageWriter::create(&p, header()).unwrap();
        w.push(chunk(0, &[1; 4096], Codec::Raw)).unwrap();
        assert!(dir.path().join("x.lbi.partial").exists());
        // an out-of-order chunk is refused
        assert!(w.push(chunk(0, &[1; 4096], Codec::Raw)).is_err());
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    write_image(&p);
    assert!(
        ImageWriter::create(&p, header()).is_err(),
        "never overwrites an image"
    );
}

#[test]
fn format_doc_matches_the_module_spec() {
    let src =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/image/mod.rs")).unwrap();
    let spec: String = src
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect();
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/FORMAT.md")).unwrap();
    assert!(
        doc.ends_with(&spec),
        "docs/FORMAT.md is stale: run scripts/update-format-doc.sh"
    );
}

/// Written by the 1.3 writer (`image --rescue`): the 1.1 contents, then two missing ranges
/// (a sector and a whole block) that the source could not give.
const GOLDEN_13: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden-v1.3.lbi"
);

fn missing(disk_offset: u64, len: u32) -> EncodedChunk {
    EncodedChunk {
        records: vec![lifeboat::image::Record {
            disk_offset,
            raw_len: len,
            stored_len: 0,
            file_offset: 0,
            codec: Codec::Missing,
            frame_offset: 0,
            hash: lifeboat::image::format::MISSING_HASH,
        }],
        frame_codec: Codec::Zero,
        data: Vec::new(),
    }
}

fn write_image_13(path: &Path) -> lifeboat::image::WriteSummary {
    let h = Header {
        minor: lifeboat::image::format::VERSION_MINOR_MISSING,
        ..header()
    };
    let mut w = ImageWriter::create(path, h).unwrap();
    w.allow_any_order();
    // out of disk order, as a rescue that comes back for what it skipped pushes them
    w.push(missing(896 * 1024, 512)).unwrap();
    for (off, data, codec) in contents() {
        w.push(chunk(off, &data, codec)).unwrap();
    }
    w.push(missing(960 * 1024, 65536)).unwrap();
    w.finish(&serde_json::json!({"tool": "lifeboat golden 1.3", "source": {"size_bytes": 1048576}}))
        .unwrap()
}

#[test]
fn golden_1_3_fixture_with_missing_ranges_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("golden.lbi");
    write_image_13(&p);
    let fresh = std::fs::read(&p).unwrap();
    if std::env::var("LIFEBOAT_BLESS").is_ok() {
        std::fs::write(GOLDEN_13, &fresh).unwrap();
    }
    let golden = std::fs::read(GOLDEN_13)
        .expect("tests/fixtures/golden-v1.3.lbi (LIFEBOAT_BLESS=1 makes it)");
    assert!(
        fresh == golden,
        "the v1.3 format changed: a format change must bump the version and add a new golden file"
    );
    let r = ImageReader::open(Path::new(GOLDEN_13)).unwrap();
    assert_eq!(r.header().minor, 3);
    assert_eq!(r.footer().chunk_count, 6);
    // records come out sorted, whatever order they were pushed in
    let offs: Vec<u64> = r.records().iter().map(|x| x.disk_offset).collect();
    assert_eq!(
        offs,
        vec![0, 65536, 131072, 512 * 1024, 896 * 1024, 960 * 1024]
    );
    let m = lifeboat::image::missing_ranges(r.records());
    assert_eq!(
        m.iter()
            .map(|m| (m.start_bytes, m.len_bytes))
            .collect::<Vec<_>>(),
        vec![(896 * 1024, 512), (960 * 1024, 65536)]
    );
    // a missing range reads as zeros, and the image verifies
    let mut buf = Vec::new();
    r.read_chunk(5, &mut buf).unwrap();
    assert_eq!(buf, vec![0u8; 65536]);
    r.verify(|_| {}).unwrap();
    // the root hash tells a missing range from zeros
    let mut as_zero: Vec<lifeboat::image::Record> = r.records().to_vec();
    as_zero[5].codec = Codec::Zero;
    as_zero[5].hash = *blake3::hash(&[0u8; 65536]).as_bytes();
    assert_ne!(
        lifeboat::image::format::root_hash(&r.header().image_id, &[0; 32], &as_zero),
        r.footer().root_hash
    );
}

#[test]
fn missing_ranges_need_format_1_3_and_no_hash() {
    let dir = tempfile::tempdir().unwrap();
    // the writer refuses a missing range in an older format
    let mut w = ImageWriter::create(&dir.path().join("old.lbi"), header()).unwrap();
    let e = lifeboat::error::with_causes(&w.push(missing(0, 512)).unwrap_err());
    assert!(e.contains("missing range at 0 needs format 1.3"), "{e}");
    // a reader refuses one forged into a 1.1 image, and one with a content hash
    let p = dir.path().join("g.lbi");
    std::fs::copy(GOLDEN_13, &p).unwrap();
    let r = ImageReader::open(&p).unwrap();
    let index_at = r.footer().index_offset as usize;
    drop(r);
    let mut b = std::fs::read(&p).unwrap();
    // the last record's hash byte (record 5: 16 + 5 * 64 + 32)
    let rec5 = index_at + 16 + 5 * 64;
    b[rec5 + 32] = 1;
    let body_end = index_at + 16 + 6 * 64;
    let crc = crc32fast::hash(&b[index_at..body_end]);
    b[body_end..body_end + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p, &b).unwrap();
    assert!(
        matches!(image_err(&p), FormatError::Invalid { reason, .. } if reason.contains("missing range with a content hash"))
    );
}
