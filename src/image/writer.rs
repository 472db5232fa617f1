//! [`ImageWriter`]: streams chunks into `NAME.partial` (or a set of volumes, see
//! [`super::volumes`]), then seals the image with metadata, index and footer, fsyncs it,
//! renames it to `NAME` and fsyncs the directory. Dropping an unfinished writer deletes the
//! partial files, so an interrupted run leaves nothing that looks like an image (a SIGKILL
//! leaves only `NAME.partial` files, which are never read as an image).

use super::crypt::{self, Place, Sealer};
use super::format::{
    self, Codec, Footer, Header, Record, FOOTER_LEN, HEADER_LEN, INDEX_MAGIC, META_MAGIC,
};
use super::packs::{self, PackWriter};
use super::volumes::VolumeWriter;
use crate::error::{Error, Result};
use crate::store::s3;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One chunk, already cut into records, hashed and compressed by a pipeline worker.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    /// The chunk's records in disk order. A record with codec Zstd or Raw lives in `data` at
    /// its `frame_offset` (its codec must be `frame_codec`); the writer fills in its file
    /// offset and stored length. Zero and Parent records store nothing.
    pub records: Vec<Record>,
    /// How `data` is stored: Zstd or Raw (ignored when `data` is empty).
    pub frame_codec: Codec,
    /// The frame: the stored records' bytes, compressed or raw (empty when none is stored).
    pub data: Vec<u8>,
}

impl EncodedChunk {
    /// A chunk of one record whose bytes (`raw`, hashed here) are stored as `data` with
    /// `codec` (Zstd, Raw), or not at all (Zero, Parent).
    pub fn single(disk_offset: u64, raw: &[u8], codec: Codec, data: Vec<u8>) -> EncodedChunk {
        EncodedChunk {
            records: vec![Record {
                disk_offset,
                raw_len: raw.len() as u32,
                stored_len: 0,
                file_offset: 0,
                codec,
                frame_offset: 0,
                hash: *blake3::hash(raw).as_bytes(),
            }],
            frame_codec: codec,
            data,
        }
    }

    /// Raw bytes the chunk describes.
    pub fn raw_len(&self) -> u64 {
        self.records.iter().map(|r| u64::from(r.raw_len)).sum()
    }
}

/// What a finished image holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriteSummary {
    /// Final path.
    pub path: PathBuf,
    /// Root hash, hex.
    pub root_hash: String,
    /// Number of records.
    pub chunk_count: u64,
    /// Disk bytes described.
    pub raw_bytes: u64,
    /// Size of the image in bytes (all its volumes).
    pub file_bytes: u64,
    /// Its files: the image, or its volumes in order.
    pub files: Vec<PathBuf>,
}

/// Where an image's bytes go: files (one, or volumes), or an object in an S3 store
/// ([`crate::store::s3::Upload`]), which appears only when the upload completes.
enum Out {
    Files(VolumeWriter),
    S3(Box<s3::Upload>),
    /// A deduplicating store's image ([`super::packs`]): the frames go to packs, the rest
    /// (header, metadata, index, footer) into `image`, written when the packs are durable.
    Packed(Box<PackWriter>, Vec<u8>),
}

impl Out {
    fn create(path: &Path, volume_size: u64) -> Result<Out> {
        if !s3::is_s3(path) {
            return Ok(Out::Files(VolumeWriter::create(path, volume_size)?));
        }
        if volume_size > 0 {
            return Err(Error::Unsupported(
                "split images (--volume-size) in an S3 store, where one object holds \
                       up to 1.6 TiB"
                    .into(),
            ));
        }
        let up =
            s3::Upload::start(path).map_err(|e| Error::io("starting the upload of", path, e))?;
        Ok(Out::S3(Box::new(up)))
    }

    fn write_all(&mut self, path: &Path, data: &[u8]) -> Result<()> {
        match self {
            Out::Packed(_, image) => {
                image.extend_from_slice(data);
                Ok(())
            }
            Out::Files(v) => v.write_all(data),
            Out::S3(u) => u
                .write_all(data)
                .map_err(|e| Error::io("uploading", path, e)),
        }
    }

    fn pos(&self) -> u64 {
        match self {
            Out::Packed(_, image) => image.len() as u64,
            Out::Files(v) => v.pos(),
            Out::S3(u) => u.pos(),
        }
    }
}

/// Writes one image file. Chunks must arrive in increasing, non-overlapping disk order.
pub struct ImageWriter {
    out: Out,
    path: PathBuf,
    header: Header,
    records: Vec<Record>,
    /// Where each stored hash lives: (file offset, stored length, codec, frame offset).
    stored: HashMap<[u8; 32], (u64, u32, Codec, u32)>,
    /// What the fleet store held before this image (a packed image; empty otherwise):
    /// shared with the encoder, never copied.
    known: Arc<packs::Known>,
    /// Chunks may arrive in any disk order (a rescue fills in ranges it skipped); the
    /// records are sorted, and checked not to overlap, when the image is sealed.
    unordered: bool,
    /// Seals frames and sections of an encrypted image.
    sealer: Option<Sealer>,
    /// The key slots of a new encrypted image, still being made ([`ImageWriter::slots_later`]).
    pending_slots: Option<crate::jobs::image::PendingSlots>,
}

/// `NAME.partial` beside `path`: where a file is written before it is renamed into place.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

impl ImageWriter {
    /// Starts `path` (written as `path.partial`, or as volumes when `header.volume_size` is
    /// not 0). Refuses when `path`, its partial file or a volume of that name exists.
    ///
    /// An encrypted header's master key must be in the keyring ([`crypt::keyring`]): the
    /// job that made it put it there, or a passphrase given unlocks it.
    pub fn create(path: &Path, mut header: Header) -> Result<Self> {
        if header.volume_size > 0 {
            header.minor = header.minor.max(format::VERSION_MINOR_VOLUMES);
        }
        if header.keys.is_some() {
            header.minor = header.minor.max(format::VERSION_MINOR_ENCRYPTED);
        }
        let sealer = sealer_for(path, &header)?;
        let out = Out::create(path, header.volume_size)?;
        let mut w = ImageWriter {
            out,
            path: path.to_path_buf(),
            header,
            records: Vec::new(),
            stored: HashMap::new(),
            known: Arc::default(),
            unordered: false,
            sealer,
            pending_slots: None,
        };
        let h = w.header.encode();
        w.write(&h)?;
        debug_assert_eq!(w.out.pos(), HEADER_LEN as u64);
        Ok(w)
    }

    /// Starts the image `path` in the deduplicating store that is its folder
    /// ([`super::packs`]). `known` is what the store already holds (from
    /// [`packs::load_known`]): records the encoder left out as known (codec Parent) point at
    /// it, and frames whose records are all known are not stored again. Refuses when `path`
    /// exists.
    pub fn create_packed(
        path: &Path,
        mut header: Header,
        known: Arc<packs::Known>,
    ) -> Result<Self> {
        if header.volume_size > 0 {
            return Err(Error::Unsupported(
                "split images in a deduplicating store".into(),
            ));
        }
        header.flags |= format::FLAG_PACKED;
        header.minor = header.minor.max(format::VERSION_MINOR_PACKED);
        let sealer = sealer_for(path, &header)?;
        let dir = super::volumes::parent_dir(path);
        let mut w = ImageWriter {
            out: Out::Packed(Box::new(PackWriter::new(&dir)), Vec::new()),
            path: path.to_path_buf(),
            header,
            records: Vec::new(),
            stored: HashMap::new(),
            known,
            unordered: false,
            sealer,
            pending_slots: None,
        };
        let h = w.header.encode();
        w.write(&h)?;
        Ok(w)
    }

    /// Goes on writing the image `path` whose partial files hold `len` bytes written under
    /// `header`, with `records` already pushed (a rescue resumed from its log, see
    /// `jobs::image`): what the files hold after `len` is cut off. Chunks may then arrive
    /// in any order.
    pub fn resume(path: &Path, header: Header, records: Vec<Record>, len: u64) -> Result<Self> {
        if s3::is_s3(path) {
            return Err(Error::Unsupported(
                "resuming a rescue into an S3 store (rescue into a folder, then copy it)".into(),
            ));
        }
        let sealer = sealer_for(path, &header)?;
        let out = Out::Files(VolumeWriter::reopen(path, header.volume_size, len)?);
        let mut stored = HashMap::new();
        for r in records.iter().filter(|r| r.codec.stored_here()) {
            if r.file_offset + u64::from(r.stored_len) > len || r.file_offset < HEADER_LEN as u64 {
                return Err(Error::Image {
                    path: partial_path(path),
                    source: super::FormatError::Invalid {
                        what: "rescue log",
                        offset: r.file_offset,
                        reason: format!(
                            "a chunk at disk byte {} lies outside the {len} bytes written",
                            r.disk_offset
                        ),
                    },
                });
            }
            stored
                .entry(r.hash)
                .or_insert((r.file_offset, r.stored_len, r.codec, r.frame_offset));
        }
        Ok(ImageWriter {
            out,
            path: path.to_path_buf(),
            header,
            records,
            stored,
            known: Arc::default(),
            unordered: true,
            sealer,
            pending_slots: None,
        })
    }

    /// The key slots of this new encrypted image are being made by `h` (Argon2id, about 0.1 s,
    /// while the chunks are written): the header written so far holds the key ID and no
    /// slot, and [`ImageWriter::finish`] writes it again with them, before the image is
    /// renamed into place (only the slot area changes, which the footer's header checksum
    /// leaves out). An image file only: an object in S3 has its header sent first.
    pub fn slots_later(&mut self, h: crate::jobs::image::PendingSlots) {
        self.pending_slots = Some(h);
    }

    /// The records pushed so far, in the order they came.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Makes every byte pushed so far durable; returns how many bytes the files hold.
    pub fn sync_point(&mut self) -> Result<u64> {
        match &mut self.out {
            Out::Files(v) => v.sync_point(),
            Out::S3(_) | Out::Packed(..) => Err(Error::Unsupported(
                "a rescue log for an image in an S3 store or a deduplicating store (rescue \
                 into a folder, then copy it)"
                    .into(),
            )),
        }
    }

    /// Keeps the partial files if the writer is dropped unfinished: a rescue log names them,
    /// and `--resume` goes on from them.
    pub fn keep_partial(&mut self) {
        if let Out::Files(v) = &mut self.out {
            v.keep_partial();
        }
    }

    /// Lets chunks arrive in any disk order (they must still not overlap): the records are
    /// sorted when the image is sealed. For `image --rescue`, which comes back for the
    /// ranges a first pass skipped.
    pub fn allow_any_order(&mut self) {
        self.unordered = true;
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.out.write_all(&self.path, data)
    }

    /// Appends a chunk. When every record it stores was already stored in this image, the
    /// frame is not written again and the records point at the earlier copies.
    pub fn push(&mut self, mut c: EncodedChunk) -> Result<()> {
        let tmp = partial_path(&self.path);
        let invalid = move |pos: u64, reason: String| Error::Image {
            path: tmp.clone(),
            source: super::FormatError::Invalid {
                what: "chunk",
                offset: pos,
                reason,
            },
        };
        let bs = u64::from(self.header.block_size);
        let mut end = match (self.unordered, self.records.last()) {
            (false, Some(l)) => l.disk_offset + u64::from(l.raw_len),
            _ => 0,
        };
        for r in &c.records {
            if r.codec == Codec::Missing
                && (self.header.minor < format::VERSION_MINOR_MISSING
                    || r.hash != format::MISSING_HASH)
            {
                return Err(invalid(
                    self.out.pos(),
                    format!(
                        "missing range at {} needs format 1.{} and no hash",
                        r.disk_offset,
                        format::VERSION_MINOR_MISSING
                    ),
                ));
            }
            if r.raw_len == 0 || r.raw_len > format::MAX_CHUNK_RAW {
                return Err(invalid(self.out.pos(), format!("raw length {}", r.raw_len)));
            }
            if r.disk_offset < end {
                return Err(invalid(
                    self.out.pos(),
                    format!(
                        "disk offset {} overlaps or precedes the previous chunk",
                        r.disk_offset
                    ),
                ));
            }
            if bs > 0 && r.disk_offset / bs != (r.disk_offset + u64::from(r.raw_len) - 1) / bs {
                return Err(invalid(
                    self.out.pos(),
                    format!("record at {} crosses a block boundary", r.disk_offset),
                ));
            }
            if r.codec.stored_here()
                && (c.data.is_empty()
                    || r.codec != c.frame_codec
                    || u64::from(r.frame_offset) + u64::from(r.raw_len)
                        > format::MAX_CHUNK_RAW.into())
            {
                return Err(invalid(
                    self.out.pos(),
                    format!("record at {} does not fit its frame", r.disk_offset),
                ));
            }
            end = r.disk_offset + u64::from(r.raw_len);
        }
        let all_known = c
            .records
            .iter()
            .filter(|r| r.codec.stored_here())
            .all(|r| self.place_of(&r.hash).is_some());
        let frame = if all_known || c.data.is_empty() {
            None
        } else if let Out::Packed(p, _) = &mut self.out {
            let (at, len) = p.add(&mut c.data, c.frame_codec, self.sealer.as_ref())?;
            let len =
                u32::try_from(len).map_err(|_| invalid(0, "stored chunk too large".into()))?;
            Some((at, len))
        } else {
            let at = self.out.pos();
            let len = c.data.len() + self.sealer.as_ref().map_or(0, |_| crypt::OVERHEAD);
            let len =
                u32::try_from(len).map_err(|_| invalid(at, "stored chunk too large".into()))?;
            match &self.sealer {
                // encrypted where it lies (no copy of the frame): nonce, ciphertext, tag
                Some(s) => {
                    let (nonce, tag) =
                        s.seal_in_place(Place::Frame(at, c.frame_codec as u8), &mut c.data)?;
                    self.write(&nonce)?;
                    self.write(&c.data)?;
                    self.write(&tag)?;
                }
                None => self.write(&c.data)?,
            }
            Some((at, len))
        };
        for mut r in c.records {
            if r.codec.stored_here() {
                let place = match frame {
                    Some((at, len)) => (at, len, c.frame_codec, r.frame_offset),
                    None => match self.place_of(&r.hash) {
                        Some(p) => p,
                        None => return Err(invalid(self.out.pos(), "lost a stored record".into())),
                    },
                };
                if !self.known.contains_key(&r.hash) {
                    self.stored.entry(r.hash).or_insert(place);
                }
                (r.file_offset, r.stored_len, r.codec, r.frame_offset) = place;
            } else if r.codec == Codec::Parent && matches!(self.out, Out::Packed(..)) {
                // left out by the encoder as already in the store: where the store has it
                let Some(place) = self.place_of(&r.hash) else {
                    return Err(invalid(
                        self.out.pos(),
                        format!(
                            "a block at {} is neither stored nor in the store",
                            r.disk_offset
                        ),
                    ));
                };
                (r.file_offset, r.stored_len, r.codec, r.frame_offset) = place;
            } else {
                (r.file_offset, r.stored_len, r.frame_offset) = (0, 0, 0);
            }
            self.records.push(r);
        }
        Ok(())
    }

    /// Where a block of this hash is stored: in this image, or (a packed image) in the store.
    fn place_of(&self, hash: &[u8; 32]) -> Option<packs::Place> {
        self.stored
            .get(hash)
            .or_else(|| self.known.get(hash))
            .copied()
    }

    /// How many volumes the image has once `more` bytes are added.
    fn volumes_at_end(&self, more: u64) -> u32 {
        (self.out.pos() + more).div_ceil(self.header.volume_size) as u32
    }

    /// Bytes written so far (header + chunk data).
    pub fn bytes_written(&self) -> u64 {
        self.out.pos()
    }

    /// Seals the image: metadata, index, footer, fsync, rename, directory fsync.
    ///
    /// `meta` is the image's [`ImageMeta`](super::ImageMeta) for every image the jobs write;
    /// the writer accepts any serializable value so that tests can forge images with
    /// metadata of older (or hostile) shapes, which readers must cope with.
    pub fn finish<M: serde::Serialize>(mut self, meta: &M) -> Result<WriteSummary> {
        if self.unordered {
            self.records.sort_by_key(|r| r.disk_offset);
            let mut end = 0u64;
            for r in &self.records {
                if r.disk_offset < end {
                    return Err(Error::Image {
                        path: partial_path(&self.path),
                        source: super::FormatError::Invalid {
                            what: "chunk",
                            offset: self.out.pos(),
                            reason: format!("disk offset {} overlaps another chunk", r.disk_offset),
                        },
                    });
                }
                end = r.disk_offset + u64::from(r.raw_len);
            }
        }
        let meta_offset = self.out.pos();
        let json = serde_json::to_vec(meta).map_err(|e| {
            Error::io(
                "encoding metadata for",
                &self.path,
                std::io::Error::other(e),
            )
        })?;
        let json = match &self.sealer {
            Some(s) => s.seal(Place::Meta, &json)?,
            None => json,
        };
        let mut sec = Vec::with_capacity(json.len() + 20);
        sec.extend_from_slice(&META_MAGIC);
        sec.extend_from_slice(&(json.len() as u64).to_le_bytes());
        sec.extend_from_slice(&json);
        let crc = crc32fast::hash(&sec);
        sec.extend_from_slice(&crc.to_le_bytes());
        self.write(&sec)?;
        let meta_len = self.out.pos() - meta_offset;

        let index_offset = self.out.pos();
        let mut recs = Vec::with_capacity(self.records.len() * format::RECORD_LEN);
        for r in &self.records {
            r.encode(&mut recs);
        }
        if let Some(s) = &self.sealer {
            recs = s.seal(Place::Index, &recs)?;
        }
        let mut idx = Vec::with_capacity(20 + recs.len());
        idx.extend_from_slice(&INDEX_MAGIC);
        idx.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        idx.extend_from_slice(&recs);
        let crc = crc32fast::hash(&idx);
        idx.extend_from_slice(&crc.to_le_bytes());
        self.write(&idx)?;
        let index_len = self.out.pos() - index_offset;

        let root = format::root_hash(
            &self.header.image_id,
            &self.header.parent_root,
            &self.records,
        );
        let raw_bytes = self.records.iter().map(|r| u64::from(r.raw_len)).sum();
        let footer = Footer {
            meta_offset,
            meta_len,
            index_offset,
            index_len,
            chunk_count: self.records.len() as u64,
            raw_bytes,
            root_hash: root,
            header_crc: self.header.binding_crc(),
            volumes: if self.header.volume_size > 0 {
                self.volumes_at_end(FOOTER_LEN as u64)
            } else {
                0
            },
        };
        self.write(&footer.encode())?;
        let head = match self.pending_slots.take() {
            Some(h) => {
                let slots = crate::jobs::image::join_slots(h)?;
                if self.header.keys.as_ref().map(|k| k.key_id) != Some(slots.key_id) {
                    return Err(Error::Unsupported(
                        "key slots made for another key (a bug: nothing was kept)".into(),
                    ));
                }
                self.header.keys = Some(slots);
                Some(self.header.encode())
            }
            None => None,
        };
        if self
            .header
            .keys
            .as_ref()
            .is_some_and(|k| k.slots.is_empty())
        {
            return Err(Error::Unsupported(
                "an encrypted image without a key slot (a bug: nothing was kept)".into(),
            ));
        }
        let file_bytes = self.out.pos();
        let mut file_bytes = file_bytes;
        if head.is_some() && !matches!(self.out, Out::Files(_)) {
            return Err(Error::Unsupported(
                "key slots made after the header of an image in S3 or a fleet store".into(),
            ));
        }
        let files = match self.out {
            Out::Packed(p, image) => {
                // packs, then the store's index of the new frames, then the image
                file_bytes += p.bytes();
                p.finish(&hex(&self.header.image_id), &self.records)?;
                write_image_object(&self.path, &image)?;
                vec![self.path.clone()]
            }
            Out::Files(v) => v.finish_with_head(head.as_deref())?,
            Out::S3(u) => {
                u.finish()
                    .map_err(|e| Error::io("uploading", &self.path, e))?;
                vec![self.path.clone()]
            }
        };
        Ok(WriteSummary {
            path: self.path.clone(),
            root_hash: hex(&root),
            chunk_count: self.records.len() as u64,
            raw_bytes,
            file_bytes,
            files,
        })
    }
}

/// Writes a packed image's own bytes as `path`: an object (refused if one of that name
/// appeared meanwhile), or a file written as `NAME.partial` and renamed.
fn write_image_object(path: &Path, bytes: &[u8]) -> Result<()> {
    if s3::is_s3(path) {
        return match s3::put_new(path, bytes) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Refused {
                path: path.to_path_buf(),
                reason: "an object of that name appeared while the image was written".into(),
            }),
            Err(e) => Err(Error::io("uploading", path, e)),
        };
    }
    let mut v = VolumeWriter::create(path, 0)?;
    v.write_all(bytes)?;
    v.finish()?;
    Ok(())
}

/// The sealer of the image `path` whose header is `header`: `None` for a plain image.
fn sealer_for(path: &Path, header: &Header) -> Result<Option<Sealer>> {
    match &header.keys {
        Some(slots) => Ok(Some(
            crypt::keyring::unlock(path, slots)?.sealer(header.image_id),
        )),
        None => Ok(None),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
