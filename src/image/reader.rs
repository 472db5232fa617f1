//! [`ImageReader`]: opens an image, checks every structure before trusting it (header CRC and
//! version, footer, metadata and index CRCs, record bounds and order, root hash), and reads
//! chunks with their blake3 hash verified. Nothing unverified is ever handed out.

use super::crypt::{self, ContentHash, Place, Sealer};
use super::format::{
    self, Codec, Footer, Header, Record, FOOTER_LEN, HEADER_LEN, INDEX_MAGIC, MAX_CHUNK_RAW,
    META_MAGIC, RECORD_LEN,
};
use super::meta::ImageMeta;
use super::volumes::VolumeFile;
use super::FormatError;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Largest metadata section accepted (64 MiB).
const MAX_META: u64 = 64 << 20;

/// An open, structurally verified image.
#[derive(Debug)]
pub struct ImageReader {
    file: VolumeFile,
    path: PathBuf,
    header: Header,
    footer: Footer,
    records: Vec<Record>,
    meta: ImageMeta,
    /// Opens the frames of an encrypted image; `None` for a plain one.
    sealer: Option<Sealer>,
    /// How the records name their content.
    hasher: ContentHash,
}

/// What [`ImageReader::open_summary`] reads of an image: its header, footer and metadata,
/// checked (CRCs, the footer bound to the header, the sections' bounds, and for an encrypted
/// image the key and the sealed metadata), but not its index. Enough to list an image; to
/// read it, [`ImageReader::open`] it.
#[derive(Debug)]
pub struct ImageSummary {
    path: PathBuf,
    header: Header,
    footer: Footer,
    meta: ImageMeta,
    file_len: u64,
}

impl ImageSummary {
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The metadata written by the imaging job.
    pub fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the image file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }
}

/// The error for `source` in the image at `path`.
fn image_error(path: &Path, source: FormatError) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        source,
    }
}

/// The error for the structure `what` at `offset` of the image at `path`, invalid for
/// `reason`.
fn invalid(path: &Path, what: &'static str, offset: u64, reason: String) -> Error {
    image_error(
        path,
        FormatError::Invalid {
            what,
            offset,
            reason,
        },
    )
}

/// `len` bytes of `file` at `off`.
fn read_bytes(file: &VolumeFile, off: u64, len: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; len];
    file.read_exact_at(&mut b, off)?;
    Ok(b)
}

/// The plain bytes of the section (metadata or index) `at..at + len` of the image `path`:
/// its magic and CRC checked, then opened by `sealer` in an encrypted image.
fn read_section(
    path: &Path,
    file: &VolumeFile,
    sealer: Option<&Sealer>,
    (magic, what, place): ([u8; 8], &'static str, Place),
    (at, len): (u64, u64),
) -> Result<Vec<u8>> {
    let section = read_bytes(file, at, len as usize)?;
    let (body, crc) = section.split_at(section.len() - 4);
    if body[..8] != magic
        || crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]])
    {
        return Err(image_error(
            path,
            FormatError::Checksum { what, offset: at },
        ));
    }
    match sealer {
        None => Ok(body[16..].to_vec()),
        Some(s) => {
            let mut plain = Vec::new();
            if s.open(place, &body[16..], &mut plain) {
                Ok(plain)
            } else {
                Err(invalid(
                    path,
                    what,
                    at,
                    "it does not decrypt: changed, or from another image".into(),
                ))
            }
        }
    }
}

/// Header, footer and metadata of an image being opened, and what reads the rest.
struct Head {
    file: VolumeFile,
    header: Header,
    footer: Footer,
    meta: ImageMeta,
    sealer: Option<Sealer>,
    hasher: ContentHash,
}

/// The result of [`ImageReader::verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Chunks re-hashed.
    pub chunks: u64,
    /// Raw bytes re-hashed.
    pub raw_bytes: u64,
    /// Root hash, hex.
    pub root_hash: String,
}

impl ImageReader {
    /// Opens and checks `path`. Every failure names the structure and file offset.
    pub fn open(path: &Path) -> Result<Self> {
        let Head {
            file,
            header,
            footer,
            meta,
            sealer,
            hasher,
        } = Self::open_head(path, true)?;
        let fmt = |source: FormatError| image_error(path, source);
        let bad = |what, offset, reason| invalid(path, what, offset, reason);
        let seal_len = if sealer.is_some() { crypt::OVERHEAD } else { 0 };
        let footer_at = file.len() - FOOTER_LEN as u64;
        let index = read_section(
            path,
            &file,
            sealer.as_ref(),
            (INDEX_MAGIC, "index", Place::Index),
            (footer.index_offset, footer.index_len),
        )?;
        let mut records = Vec::with_capacity(footer.chunk_count as usize);
        let packed = header.flags & format::FLAG_PACKED != 0;
        let mut end = 0u64;
        let mut raw_total = 0u64;
        for (i, rb) in index.chunks_exact(RECORD_LEN).enumerate() {
            let i = i as u64;
            let sealed_at = if seal_len > 0 { crypt::NONCE_LEN } else { 0 };
            let at = footer.index_offset + 16 + sealed_at as u64 + i * RECORD_LEN as u64;
            let r = Record::decode(rb, i, at).map_err(fmt)?;
            let why = if r.raw_len == 0 || r.raw_len > MAX_CHUNK_RAW {
                Some(format!("raw length {}", r.raw_len))
            } else if r.disk_offset < end {
                Some(format!(
                    "disk offset {} overlaps or precedes the previous chunk",
                    r.disk_offset
                ))
            } else if r.disk_offset + u64::from(r.raw_len) > header.source_size {
                Some(format!(
                    "range ends beyond the source disk ({} bytes)",
                    header.source_size
                ))
            } else if r.codec.stored_here() && packed != super::packs::is_address(r.file_offset) {
                Some(format!(
                    "stored bytes at {:#x} are {} a pack, and the image {}",
                    r.file_offset,
                    if packed { "not in" } else { "in" },
                    if packed { "is packed" } else { "is not" }
                ))
            } else if r.codec.stored_here()
                && !packed
                && (r.file_offset < HEADER_LEN as u64
                    || r.file_offset + u64::from(r.stored_len) > footer.meta_offset)
            {
                Some(format!(
                    "stored bytes {}+{} lie outside the chunk area",
                    r.file_offset, r.stored_len
                ))
            } else if r.codec.stored_here() && (r.stored_len as usize) <= seal_len {
                Some(format!("stored length {} holds no frame", r.stored_len))
            } else if r.codec == Codec::Raw
                && u64::from(r.stored_len) - (seal_len as u64)
                    < u64::from(r.frame_offset) + u64::from(r.raw_len)
            {
                Some(format!(
                    "raw frame of {} bytes cannot hold {} bytes at offset {}",
                    r.stored_len, r.raw_len, r.frame_offset
                ))
            } else if u64::from(r.frame_offset) + u64::from(r.raw_len) > u64::from(MAX_CHUNK_RAW) {
                Some(format!("frame offset {} is too large", r.frame_offset))
            } else if !r.codec.stored_here()
                && (r.stored_len != 0 || r.file_offset != 0 || r.frame_offset != 0)
            {
                Some("zero or parent chunk with stored bytes".into())
            } else if r.codec == Codec::Parent && header.is_full() {
                Some("a full image refers to a parent".into())
            } else if r.codec == Codec::Missing && header.minor < format::VERSION_MINOR_MISSING {
                Some(format!(
                    "a missing range in a format 1.{} image (missing ranges came in 1.{})",
                    header.minor,
                    format::VERSION_MINOR_MISSING
                ))
            } else if r.codec == Codec::Missing && r.hash != format::MISSING_HASH {
                Some("a missing range with a content hash".into())
            } else if header.block_size > 0
                && r.disk_offset / u64::from(header.block_size)
                    != (r.disk_offset + u64::from(r.raw_len) - 1) / u64::from(header.block_size)
            {
                Some(format!(
                    "range {}+{} crosses a {}-byte block boundary",
                    r.disk_offset, r.raw_len, header.block_size
                ))
            } else {
                None
            };
            if let Some(reason) = why {
                return Err(bad("index record", at, format!("chunk {i}: {reason}")));
            }
            end = r.disk_offset + u64::from(r.raw_len);
            raw_total += u64::from(r.raw_len);
            records.push(r);
        }
        if raw_total != footer.raw_bytes {
            return Err(bad(
                "footer",
                footer_at,
                format!(
                    "raw byte total {} but the index sums to {raw_total}",
                    footer.raw_bytes
                ),
            ));
        }
        if format::root_hash(&header.image_id, &header.parent_root, &records) != footer.root_hash {
            return Err(fmt(FormatError::Checksum {
                what: "root hash",
                offset: footer_at + 56,
            }));
        }
        Ok(ImageReader {
            file,
            path: path.to_path_buf(),
            header,
            footer,
            records,
            meta,
            sealer,
            hasher,
        })
    }

    /// Opens `path` as far as a listing needs ([`ImageSummary`]): the index is not read.
    /// Without `prompt`, an encrypted image opens only with a key or passphrase given
    /// before; nobody is asked.
    pub fn open_summary(path: &Path, prompt: bool) -> Result<ImageSummary> {
        let h = Self::open_head(path, prompt)?;
        Ok(ImageSummary {
            path: path.to_path_buf(),
            file_len: h.file.len(),
            header: h.header,
            footer: h.footer,
            meta: h.meta,
        })
    }

    /// Reads and checks the header, footer and metadata of `path`.
    fn open_head(path: &Path, prompt: bool) -> Result<Head> {
        let file = VolumeFile::open(path)?;
        let file_len = file.len();
        let fmt = |source: FormatError| image_error(path, source);
        let read = |off: u64, len: usize| read_bytes(&file, off, len);
        if file_len < 8 {
            return Err(fmt(FormatError::NotAnImage));
        }
        let head = read(0, (file_len.min(HEADER_LEN as u64)) as usize)?;
        let first = super::volumes::first_volume_of(path).filter(|f| f.is_file());
        let header = Header::decode(&head).map_err(|e| match (&e, first) {
            (FormatError::NotAnImage, Some(first)) => fmt(FormatError::Volumes {
                volume: path.to_path_buf(),
                reason: format!(
                    "this is a later volume of a split image: open its first volume, {}",
                    first.display()
                ),
            }),
            _ => fmt(e),
        })?;
        // an encrypted image is unlocked before anything past the header is read: a wrong
        // passphrase is told as such, never as damage
        let key = match &header.keys {
            Some(slots) => Some(crypt::keyring::unlock_with(path, slots, prompt)?),
            None => None,
        };
        let sealer = key.as_ref().map(|k| k.sealer(header.image_id));
        let hasher = key.map(|k| k.content_hash()).unwrap_or_default();
        let seal_len = if sealer.is_some() { crypt::OVERHEAD } else { 0 };
        let min = (HEADER_LEN + FOOTER_LEN) as u64;
        if file_len < min {
            return Err(fmt(FormatError::Incomplete { offset: file_len }));
        }
        let footer_at = file_len - FOOTER_LEN as u64;
        let footer = Footer::decode(&read(footer_at, FOOTER_LEN)?, footer_at).map_err(|e| {
            // a split image without its end: name the volume to look at
            match (&e, file.missing_end()) {
                (FormatError::Incomplete { .. }, Some((volume, reason))) => {
                    fmt(FormatError::Volumes { volume, reason })
                }
                _ => fmt(e),
            }
        })?;
        let found = if header.volume_size > 0 {
            file.count()
        } else {
            0
        };
        if footer.volumes as usize != found {
            return Err(fmt(FormatError::Invalid {
                what: "footer",
                offset: footer_at,
                reason: format!(
                    "the image was written as {} volumes but {found} are here",
                    footer.volumes
                ),
            }));
        }
        if footer.header_crc != header.binding_crc() {
            return Err(fmt(FormatError::Invalid {
                what: "footer",
                offset: footer_at,
                reason: "it belongs to a different header".into(),
            }));
        }
        // sections must tile the file: chunks | meta | index | footer
        let bad = |what, offset, reason| invalid(path, what, offset, reason);
        let expect_index_len = footer
            .chunk_count
            .checked_mul(RECORD_LEN as u64)
            .and_then(|n| n.checked_add(20 + seal_len as u64));
        if footer.meta_offset < HEADER_LEN as u64
            || footer.meta_len < 20 + seal_len as u64
            || footer.meta_len > MAX_META
            || footer.meta_offset.checked_add(footer.meta_len) != Some(footer.index_offset)
            || footer.index_offset.checked_add(footer.index_len) != Some(footer_at)
            || expect_index_len != Some(footer.index_len)
        {
            return Err(bad(
                "footer",
                footer_at,
                format!(
                    "sections do not fit the file: metadata {}+{}, index {}+{} ({} chunks), footer at {footer_at}",
                    footer.meta_offset, footer.meta_len, footer.index_offset, footer.index_len, footer.chunk_count
                ),
            ));
        }
        let json = read_section(
            path,
            &file,
            sealer.as_ref(),
            (META_MAGIC, "metadata", Place::Meta),
            (footer.meta_offset, footer.meta_len),
        )?;
        let meta = ImageMeta::from_json(&json)
            .map_err(|e| bad("metadata", footer.meta_offset, format!("not valid: {e}")))?;
        Ok(Head {
            file,
            header,
            footer,
            meta,
            sealer,
            hasher,
        })
    }

    /// How this image's records hash their content (keyed for an encrypted image): what a
    /// caller comparing bytes with a record's hash must use.
    pub fn hasher(&self) -> &ContentHash {
        &self.hasher
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Index records in disk order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The metadata written by the imaging job.
    pub fn meta(&self) -> &ImageMeta {
        &self.meta
    }

    /// True when the image is on a FUSE store: read it in order, from one thread
    /// ([`VolumeFile::in_order`]).
    pub fn in_order(&self) -> bool {
        self.file.in_order()
    }

    /// Size of the image file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file.len()
    }

    /// The image's files: the image itself, or its volumes in order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.file.paths().map(Path::to_path_buf).collect()
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&self, index: usize) -> Result<&Record> {
        self.records.get(index).ok_or_else(|| Error::Image {
            path: self.path.clone(),
            source: FormatError::Invalid {
                what: "index",
                offset: self.footer.index_offset,
                reason: format!("no chunk {index}"),
            },
        })
    }

    /// Reads chunk `index` into `out` (resized to its raw length) and verifies its hash.
    /// Chunks held by an ancestor cannot be read from this file alone: open the chain
    /// ([`super::Chain`]).
    pub fn read_chunk(&self, index: usize, out: &mut Vec<u8>) -> Result<()> {
        let r = *self.record(index)?;
        let mut stored = Vec::new();
        let mut frame = Vec::new();
        self.read_frame(&r, &mut stored)?;
        self.decode_frame(index as u64, &r, &stored, &mut frame)?;
        let bytes = self.record_bytes(index as u64, &r, &frame)?;
        out.clear();
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// Reads the stored bytes of `r`'s frame as they are in the file (empty for zero
    /// chunks). Nothing is verified yet: pass them to [`ImageReader::decode_frame`].
    pub fn read_frame(&self, r: &Record, stored: &mut Vec<u8>) -> Result<()> {
        stored.clear();
        match r.codec {
            Codec::Zero | Codec::Missing => Ok(()),
            Codec::Parent => Err(Error::Unsupported(format!(
                "disk bytes {}..{} of {} are held by an ancestor image; open the image as a chain",
                r.disk_offset,
                r.disk_offset + u64::from(r.raw_len),
                self.path.display()
            ))),
            Codec::Raw | Codec::Zstd => {
                stored.resize(r.stored_len as usize, 0);
                self.file.read_exact_at(stored, r.file_offset)
            }
        }
    }

    /// [`ImageReader::read_frame`] into `stored[range]`, bypassing the page cache where the
    /// image's filesystem allows ([`VolumeFile::read_uncached`]); returns the range.
    pub fn read_frame_uncached(
        &self,
        r: &Record,
        stored: &mut Vec<u8>,
    ) -> Result<std::ops::Range<usize>> {
        if r.codec != Codec::Raw && r.codec != Codec::Zstd {
            self.read_frame(r, stored)?;
            return Ok(0..0);
        }
        let len = r.stored_len as usize;
        let at = self.file.read_uncached(stored, r.file_offset, len)?;
        Ok(at..at + len)
    }

    /// The error for record `index` (`r`) whose content is bad.
    fn corrupt(&self, index: u64, r: &Record, reason: String) -> Error {
        Error::Image {
            path: self.path.clone(),
            source: FormatError::Chunk {
                index,
                disk_offset: r.disk_offset,
                disk_end: r.disk_offset + u64::from(r.raw_len),
                file_offset: r.file_offset,
                reason,
            },
        }
    }

    /// Decodes the stored frame of record `index` (`r`) into `frame`: decompressed, or copied
    /// when raw, or `raw_len` zeros for a zero chunk. Check the record's own bytes with
    /// [`ImageReader::record_bytes`]. Thread-safe: pipeline workers call it in parallel.
    pub fn decode_frame(
        &self,
        index: u64,
        r: &Record,
        stored: &[u8],
        frame: &mut Vec<u8>,
    ) -> Result<()> {
        self.decode_frame_at(index, r, stored, frame, 0)
    }

    /// [`ImageReader::decode_frame`] into `frame[base..]`; the first `base` bytes of `frame`
    /// are left as they are (padding that puts the frame at an aligned address).
    pub fn decode_frame_at(
        &self,
        index: u64,
        r: &Record,
        stored: &[u8],
        frame: &mut Vec<u8>,
        base: usize,
    ) -> Result<()> {
        let Some(sealer) = self.sealer.as_ref().filter(|_| r.codec.stored_here()) else {
            return self.decode_plain(index, r, stored, frame, base, r.stored_len as usize);
        };
        if stored.len() != r.stored_len as usize {
            return Err(self.corrupt(
                index,
                r,
                format!("stored {} bytes, expected {}", stored.len(), r.stored_len),
            ));
        }
        PLAIN.with(|p| {
            let mut plain = std::mem::take(&mut *p.borrow_mut());
            let out = if sealer.open(
                Place::Frame(r.file_offset, r.codec as u8),
                stored,
                &mut plain,
            ) {
                let len = plain.len();
                self.decode_plain(index, r, &plain, frame, base, len)
            } else {
                Err(self.corrupt(
                    index,
                    r,
                    if super::packs::is_address(r.file_offset) {
                        "its frame does not decrypt: changed, moved, or from another store"
                    } else {
                        "its frame does not decrypt: changed, moved, or from another image"
                    }
                    .into(),
                ))
            };
            *p.borrow_mut() = plain;
            out
        })
    }

    /// [`ImageReader::decode_frame_at`] of a frame as stored in a plain image, or opened from
    /// an encrypted one: `len` bytes are expected.
    fn decode_plain(
        &self,
        index: u64,
        r: &Record,
        stored: &[u8],
        frame: &mut Vec<u8>,
        base: usize,
        len: usize,
    ) -> Result<()> {
        match r.codec {
            Codec::Zero | Codec::Missing => {
                frame.resize(base, 0);
                frame.resize(base + r.raw_len as usize, 0);
            }
            Codec::Parent => {
                return Err(Error::Unsupported(format!(
                    "chunk {index} of {} is held by an ancestor image; open the image as a chain",
                    self.path.display()
                )))
            }
            Codec::Raw => {
                if stored.len() != len {
                    return Err(self.corrupt(
                        index,
                        r,
                        format!("stored {} bytes, expected {len}", stored.len()),
                    ));
                }
                frame.resize(base, 0);
                frame.extend_from_slice(stored);
            }
            Codec::Zstd => {
                let size = match zstd::zstd_safe::get_frame_content_size(stored) {
                    Ok(Some(n)) if n <= u64::from(MAX_CHUNK_RAW) => n as usize,
                    Ok(Some(n)) => {
                        return Err(self.corrupt(
                            index,
                            r,
                            format!("zstd frame claims {n} bytes, more than {MAX_CHUNK_RAW}"),
                        ))
                    }
                    // 1.0 writers always recorded the size; without it the record bounds it.
                    Ok(None) => (r.frame_offset + r.raw_len) as usize,
                    Err(_) => {
                        return Err(self.corrupt(index, r, "zstd frame header is invalid".into()))
                    }
                };
                // grown, never cleared first: a reused buffer is not zeroed for each frame
                if frame.len() < base + size {
                    frame.resize(base + size, 0);
                }
                let n = decompress(stored, &mut frame[base..base + size]).map_err(|e| {
                    self.corrupt(index, r, format!("zstd frame does not decode: {e}"))
                })?;
                frame.truncate(base + n);
            }
        }
        Ok(())
    }

    /// Record `index`'s (`r`'s) bytes inside its decoded `frame`, checked against its blake3
    /// hash. Nothing unverified leaves this function.
    pub fn record_bytes<'f>(&self, index: u64, r: &Record, frame: &'f [u8]) -> Result<&'f [u8]> {
        let start = r.frame_offset as usize;
        let end = start + r.raw_len as usize;
        let bytes = frame.get(start..end).ok_or_else(|| {
            self.corrupt(
                index,
                r,
                format!(
                    "its frame decodes to {} bytes, too short for bytes {start}..{end}",
                    frame.len()
                ),
            )
        })?;
        // a missing range has no content to check: its reader gets zeros
        if r.codec != Codec::Missing && self.hasher.hash(bytes) != r.hash {
            return Err(self.corrupt(index, r, "content does not match its blake3 hash".into()));
        }
        Ok(bytes)
    }

    /// Drops the index from memory (an ancestor in a chain keeps only what the leaf needs).
    pub(crate) fn forget_records(&mut self) {
        self.records = Vec::new();
    }

    /// Re-reads and re-hashes every chunk stored in this file (single-threaded; chains and
    /// the parallel check are in [`crate::jobs::verify`]). `progress(done_raw_bytes)` is
    /// called after each record.
    pub fn verify(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport> {
        let mut stored = Vec::new();
        let mut frame = Vec::new();
        let mut current: Option<(u64, Codec)> = None;
        let mut done = 0u64;
        for (i, r) in self.records.iter().enumerate() {
            if r.codec == Codec::Parent {
                return Err(Error::Unsupported(format!(
                    "{} is part of a chain; verify it as a chain",
                    self.path.display()
                )));
            }
            let key = (r.file_offset, r.codec);
            if r.codec.reads_as_zero() || current != Some(key) {
                self.read_frame(r, &mut stored)?;
                self.decode_frame(i as u64, r, &stored, &mut frame)?;
                current = r.codec.stored_here().then_some(key);
            }
            self.record_bytes(i as u64, r, &frame)?;
            done += u64::from(r.raw_len);
            progress(done);
        }
        Ok(VerifyReport {
            chunks: self.records.len() as u64,
            raw_bytes: done,
            root_hash: super::writer::hex(&self.footer.root_hash),
        })
    }
}

thread_local! {
    /// The opened (decrypted) frame of an encrypted image, reused by each thread.
    static PLAIN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decodes the zstd frame `stored` into `out` with this thread's decompression context,
/// made once per thread (a context per frame cost restore and verify an allocation and its
/// set-up for every chunk).
fn decompress(stored: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let d = match &mut *d {
            Some(d) => d,
            slot => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress_to_buffer(stored, out)
    })
}
