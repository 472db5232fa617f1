//! Chunk encoding, the format's write side below the writer: a chunk of disk bytes is cut
//! into records at block boundaries, each hashed (blake3); all-zero records and records the
//! parent chain already stores carry no bytes, and the rest are compressed together into one
//! frame, stored raw when zstd does not make it smaller. See the format description in
//! [`super`] for what the records and frames mean on disk.

use super::crypt::ContentHash;
use super::format::{Codec, Record};
use super::writer::EncodedChunk;
use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::HashSet;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// Compresses `data` at zstd `level` with this thread's compressor (made once per thread and
/// level: pipeline workers compress many chunks).
pub fn compress(level: i32, data: &[u8]) -> Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if !matches!(&*c, Some((l, _)) if *l == level) {
            let comp = zstd::bulk::Compressor::new(level)
                .map_err(|e| Error::io("starting zstd", "<compressor>", e))?;
            *c = Some((level, comp));
        }
        match &mut *c {
            Some((_, comp)) => comp
                .compress(data)
                .map_err(|e| Error::io("compressing", "<chunk>", e)),
            None => Err(Error::Unsupported("zstd compressor missing".into())),
        }
    })
}

/// Whether every byte of `b` is zero. It ORs blocks of 256 bytes without stopping inside a
/// block, which the compiler turns into vector instructions; a byte-by-byte test that stops
/// at the first non-zero byte runs at about a byte per cycle, and every byte imaged passes
/// here.
pub fn is_zero(b: &[u8]) -> bool {
    b.chunks(256)
        .all(|c| c.iter().fold(0u8, |a, &x| a | x) == 0)
}

/// The blocks a new image need not store, by content hash: those its parent chain stores (a
/// set), or those its fleet store holds (a map to where, [`super::packs::Known`]). The
/// encoders ask it from every worker.
pub trait KnownBlocks: Sync {
    /// Whether a block of this hash is held elsewhere already.
    fn has(&self, hash: &[u8; 32]) -> bool;
}

impl KnownBlocks for HashSet<[u8; 32]> {
    fn has(&self, hash: &[u8; 32]) -> bool {
        self.contains(hash)
    }
}

impl<V: Sync> KnownBlocks for std::collections::HashMap<[u8; 32], V> {
    fn has(&self, hash: &[u8; 32]) -> bool {
        self.contains_key(hash)
    }
}

/// Cuts one chunk into records at multiples of `block`, hashes each, and compresses the
/// records that are neither all zero nor in `known` (hashes the parent chain stores) into one
/// frame (a pipeline worker's job). Only new data is compressed. `hasher` is the image's
/// (keyed for an encrypted image).
pub fn encode(
    level: i32,
    disk_offset: u64,
    raw: &[u8],
    block: u64,
    known: Option<&dyn KnownBlocks>,
    hasher: &ContentHash,
) -> Result<EncodedChunk> {
    encode_pieces(level, [(disk_offset, raw)], block, known, hasher)
}

/// [`encode`] for a chunk made of several byte ranges (`(disk offset, bytes)`, in disk order,
/// disjoint): the used ranges of one chunk window. Their new records share one frame, so
/// small files scattered through the window are compressed together, as a stream would be.
/// `pieces` is any iterator, so a caller slicing one read buffer needs no list of them.
pub fn encode_pieces<'a>(
    level: i32,
    pieces: impl IntoIterator<Item = (u64, &'a [u8])>,
    block: u64,
    known: Option<&dyn KnownBlocks>,
    hasher: &ContentHash,
) -> Result<EncodedChunk> {
    let block = block.max(1);
    let mut records = Vec::new();
    let mut frame = Frame::Empty;
    for (index, (disk_offset, raw)) in pieces.into_iter().enumerate() {
        let mut pos = 0usize;
        while pos < raw.len() {
            let at = disk_offset + pos as u64;
            let next = ((at / block + 1) * block - disk_offset) as usize;
            let end = next.min(raw.len());
            let piece = &raw[pos..end];
            let hash = hasher.hash(piece);
            let codec = if is_zero(piece) {
                Codec::Zero
            } else if known.is_some_and(|k| k.has(&hash)) {
                Codec::Parent
            } else {
                Codec::Zstd
            };
            let frame_offset = if codec == Codec::Zstd {
                let offset = frame.bytes().len() as u32;
                frame.push(index, raw, pos..end);
                offset
            } else {
                0
            };
            records.push(Record {
                disk_offset: at,
                raw_len: piece.len() as u32,
                stored_len: 0,
                file_offset: 0,
                codec,
                frame_offset,
                hash,
            });
            pos = end;
        }
    }
    if let Frame::Empty = frame {
        return Ok(EncodedChunk {
            records,
            frame_codec: Codec::Zero,
            data: Vec::new(),
        });
    }
    seal_frame(level, records, frame.bytes())
}

/// The new records' bytes of a chunk, in order: borrowed while they are one contiguous run of
/// one piece (so a chunk whose records are all new is compressed in place, without a copy),
/// gathered into a vector from the first record that does not continue that run.
enum Frame<'a> {
    Empty,
    /// `piece[range]`, of the `index`th piece.
    Run {
        index: usize,
        piece: &'a [u8],
        range: std::ops::Range<usize>,
    },
    Gathered(Vec<u8>),
}

impl<'a> Frame<'a> {
    /// Appends `piece[range]`, where `piece` is the `index`th piece.
    fn push(&mut self, index: usize, piece: &'a [u8], range: std::ops::Range<usize>) {
        match self {
            Frame::Empty => {
                *self = Frame::Run {
                    index,
                    piece,
                    range,
                }
            }
            Frame::Run {
                index: i, range: r, ..
            } if *i == index && r.end == range.start => r.end = range.end,
            Frame::Run {
                piece: p, range: r, ..
            } => {
                let mut gathered = Vec::with_capacity(r.len() + (piece.len() - range.start));
                gathered.extend_from_slice(&p[r.clone()]);
                gathered.extend_from_slice(&piece[range]);
                *self = Frame::Gathered(gathered);
            }
            Frame::Gathered(v) => v.extend_from_slice(&piece[range]),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Frame::Empty => &[],
            Frame::Run { piece, range, .. } => &piece[range.clone()],
            Frame::Gathered(v) => v,
        }
    }
}

/// Compresses `frame` (the bytes of the records whose codec is [`Codec::Zstd`], in order) and
/// finishes the chunk: zstd when it is smaller, raw otherwise (the records say which).
pub fn seal_frame(level: i32, mut records: Vec<Record>, frame: &[u8]) -> Result<EncodedChunk> {
    let z = compress(level, frame)?;
    let (frame_codec, data) = if z.len() < frame.len() {
        (Codec::Zstd, z)
    } else {
        (Codec::Raw, frame.to_vec())
    };
    for r in records.iter_mut().filter(|r| r.codec == Codec::Zstd) {
        r.codec = frame_codec;
    }
    Ok(EncodedChunk {
        records,
        frame_codec,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_test_finds_one_set_byte_anywhere() {
        assert!(is_zero(&[]));
        for len in [1usize, 255, 256, 257, 4096, 4099] {
            let mut b = vec![0u8; len];
            assert!(is_zero(&b), "{len}");
            for at in [0, len / 2, len - 1] {
                b[at] = 0x80;
                assert!(!is_zero(&b), "{len} {at}");
                b[at] = 0;
            }
        }
    }

    #[test]
    fn zero_chunks_are_elided_and_incompressible_ones_stored_raw() {
        let z = encode(3, 0, &[0u8; 4096], 65536, None, &ContentHash::Plain).unwrap();
        assert_eq!((z.records[0].codec, z.data.len()), (Codec::Zero, 0));
        let text = b"lifeboat ".repeat(1000);
        let c = encode(3, 0, &text, 65536, None, &ContentHash::Plain).unwrap();
        assert_eq!(c.frame_codec, Codec::Zstd);
        assert!(c.data.len() < text.len() / 10);
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let r = encode(3, 0, &noise, 65536, None, &ContentHash::Plain).unwrap();
        assert_eq!(
            (r.frame_codec, r.data.as_slice()),
            (Codec::Raw, noise.as_slice())
        );
        assert_eq!(r.records[0].hash, *blake3::hash(&noise).as_bytes());
    }

    #[test]
    fn chunks_are_cut_at_blocks_and_known_blocks_are_not_stored() {
        let bs = 4096u64;
        // A chunk starting mid-block: 1000 bytes, then three whole blocks, then 500 bytes.
        let start = 3 * bs + (bs - 1000);
        let mut raw = Vec::new();
        raw.extend(std::iter::repeat_n(b'a', 1000));
        raw.extend(std::iter::repeat_n(0u8, bs as usize));
        raw.extend((0..bs).map(|i| (i % 251) as u8));
        raw.extend((0..bs).map(|i| (i % 13) as u8));
        raw.extend(std::iter::repeat_n(b'z', 500));
        let known_block =
            *blake3::hash(&raw[1000 + bs as usize..1000 + 2 * bs as usize]).as_bytes();
        let known: HashSet<[u8; 32]> = [known_block].into_iter().collect();
        let c = encode(3, start, &raw, bs, Some(&known), &ContentHash::Plain).unwrap();
        let got: Vec<(u64, u32, Codec, u32)> = c
            .records
            .iter()
            .map(|r| (r.disk_offset, r.raw_len, r.codec, r.frame_offset))
            .collect();
        assert_eq!(
            got,
            vec![
                (start, 1000, Codec::Zstd, 0),
                (4 * bs, bs as u32, Codec::Zero, 0),
                (5 * bs, bs as u32, Codec::Parent, 0),
                (6 * bs, bs as u32, Codec::Zstd, 1000),
                (7 * bs, 500, Codec::Zstd, 1000 + bs as u32),
            ]
        );
        // The frame holds exactly the new records, back to back.
        let frame = zstd::bulk::decompress(&c.data, 1 << 20).unwrap();
        assert_eq!(frame.len(), 1000 + bs as usize + 500);
        assert_eq!(&frame[..1000], &raw[..1000]);
        assert_eq!(
            &frame[1000..1000 + bs as usize],
            &raw[1000 + 2 * bs as usize..1000 + 3 * bs as usize]
        );
        for r in &c.records {
            let s = (r.disk_offset - start) as usize;
            assert_eq!(
                r.hash,
                *blake3::hash(&raw[s..s + r.raw_len as usize]).as_bytes()
            );
        }
    }

    #[test]
    fn pieces_of_one_window_share_one_frame_in_disk_order() {
        let bs = 65536u64;
        let a: Vec<u8> = (0..70_000u32).map(|i| (i % 7) as u8).collect();
        let z = vec![0u8; 4096];
        let b: Vec<u8> = (0..3000u32).map(|i| (i % 11) as u8).collect();
        let pieces = [(10_000u64, &a[..]), (200_000, &z[..]), (300_000, &b[..])];
        let c = encode_pieces(3, pieces, bs, None, &ContentHash::Plain).unwrap();
        let got: Vec<(u64, u32, Codec, u32)> = c
            .records
            .iter()
            .map(|r| (r.disk_offset, r.raw_len, r.codec, r.frame_offset))
            .collect();
        assert_eq!(
            got,
            vec![
                (10_000, (bs - 10_000) as u32, Codec::Zstd, 0),
                (bs, (80_000 - bs) as u32, Codec::Zstd, (bs - 10_000) as u32),
                (200_000, 4096, Codec::Zero, 0),
                (300_000, 3000, Codec::Zstd, 70_000),
            ]
        );
        let frame = zstd::bulk::decompress(&c.data, 1 << 20).unwrap();
        assert_eq!(frame, [&a[..], &b[..]].concat());
        // new bytes in one run (after a zero piece, before a zero block) are the frame as it
        // is without them
        let block: Vec<u8> = (0..4096u32).map(|i| (i % 11) as u8).collect();
        let tail = [&block[..], &z[..]].concat();
        let runs = encode_pieces(
            3,
            [(0u64, &z[..]), (bs, &tail[..])],
            4096,
            None,
            &ContentHash::Plain,
        )
        .unwrap();
        assert_eq!(
            zstd::bulk::decompress(&runs.data, 1 << 20).unwrap(),
            block,
            "{:?}",
            runs.records
        );
        // one piece gives what encode gives
        let one = encode_pieces(3, [(10_000, &a[..])], bs, None, &ContentHash::Plain).unwrap();
        let same = encode(3, 10_000, &a, bs, None, &ContentHash::Plain).unwrap();
        assert_eq!((one.records, one.data), (same.records, same.data));
    }
}
