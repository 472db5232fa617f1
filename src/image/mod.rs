//! The Lifeboat image format, version 1.5. This comment is the specification; `docs/FORMAT.md`
//! repeats it for readers without the source. Readers of 1.5 read 1.4, 1.3, 1.2, 1.1 and 1.0
//! images unchanged. 1.2 added split images (volumes, below); 1.3 added missing ranges
//! (codec 5, written by `image --rescue` for what a failing disk could not give); 1.4 added
//! encrypted images (below); 1.5 packed images, whose frames are in a deduplicating store's
//! packs (below). Other images are still written as 1.1 (1.2 when split), so older readers
//! read them.
//!
//! One image is one file (or one set of volumes, read as one file), written front to back as a
//! stream and then sealed by a footer:
//!
//! ```text
//! +----------------+ 0
//! | header         | 4096 bytes, fixed
//! +----------------+ 4096
//! | chunk data     | stored frames back to back: independent zstd frames or raw bytes
//! +----------------+ footer.meta_offset
//! | metadata       | "LBMETA\0\0", u64 json_len, JSON (UTF-8), u32 crc32
//! +----------------+ footer.index_offset
//! | index          | "LBINDEX\0", u64 count, count × 64-byte records, u32 crc32
//! +----------------+ file_len - 128
//! | footer         | 128 bytes, fixed; its presence marks a complete image
//! +----------------+ file_len
//! ```
//!
//! All integers are little-endian. CRCs are CRC-32 (IEEE, as zlib). Hashes are blake3-256.
//!
//! **Header** (4096 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LIFEBOAT` |
//! | 8 | 2 | major version = 1 (readers refuse others: `UnsupportedVersion`) |
//! | 10 | 2 | minor version: 1, 2 for a split image, 3 for an image that may hold missing ranges, 4 for an encrypted image (1.0 images have 0 here and in every 1.1 field) |
//! | 12 | 4 | flags: bit 0 = split into volumes (1.2); bit 1 = encrypted (1.4); bit 2 = packed (1.5); any other bit set is refused |
//! | 16 | 4 | header length = 4096 |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 16 | image ID (random) |
//! | 40 | 16 | parent image ID; all zero for a full image |
//! | 56 | 32 | parent root hash; all zero for a full image |
//! | 88 | 8 | creation time, Unix seconds |
//! | 96 | 4 | nominal chunk size in bytes (1 ..= 64 MiB) |
//! | 100 | 4 | zstd level (i32) |
//! | 104 | 8 | source disk size in bytes |
//! | 112 | 4 | source logical sector size |
//! | 116 | 4 | block size: no record crosses a multiple of it (0 in 1.0: records are chunks) |
//! | 120 | 8 | volume size in bytes when bit 0 of the flags is set (at least 1 MiB), else 0 |
//! | 128 | 3964 | reserved, 0; in an encrypted image the key ID and key slots (below) |
//! | 4092 | 4 | CRC-32 of bytes 0..4092 |
//!
//! **Index record** (64 bytes; records sorted by disk offset, ranges never overlap)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | disk offset of the range |
//! | 8 | 4 | raw length (1 ..= 64 MiB) |
//! | 12 | 4 | stored length of its frame in this file (0 for zero and parent chunks) |
//! | 16 | 8 | file offset of its frame (0 for zero and parent chunks) |
//! | 24 | 1 | codec: 1 zstd frame, 2 raw, 3 all zero, 4 held by an ancestor (found by hash), 5 missing (1.3) |
//! | 25 | 3 | reserved, 0 |
//! | 28 | 4 | offset of the record's bytes inside its decoded frame (0 in 1.0) |
//! | 32 | 32 | blake3 of the raw (uncompressed) bytes |
//!
//! Disk ranges without a record are unused space: the filesystem proved them free, or they
//! were not selected. Two records with the same hash may share stored bytes (deduplication).
//!
//! **Missing ranges** (1.3). A record with codec 5 is a range the source could not give
//! (`image --rescue` on a failing disk: read errors, reads that hung). It stores nothing,
//! its hash field is all zero (no content hashes to that), and it is only valid in an
//! image whose minor version is 3 or more: a 1.2 reader refuses codec 5, so it never
//! restores such an image as if it were whole. A reader gets zeros for it, and tells the
//! user: `info` lists missing ranges, `verify` counts them, `restore` writes zeros there and
//! names them. In a chain a missing record is never used to resolve an ancestor's content,
//! and a child taken later that could read the range stores it normally.
//!
//! **Frames.** The writer reads the disk in chunks (at most `chunk size`, never crossing a
//! multiple of it; a chunk may be several used ranges of that window, with unused bytes between
//! them) and cuts each range into records at multiples of the block size (64 KiB by default).
//! The records of one chunk that are neither zero nor held by an ancestor are concatenated, in
//! disk order, and stored as one frame: a zstd frame (with its content size in the frame
//! header, at most 64 MiB) or, when compression does not help, the raw bytes. Each such record
//! names the frame (file offset, stored length, codec) and where its bytes start inside the
//! decoded frame. So compression works on whole chunks while deduplication, and chains, match
//! data at block granularity. In 1.0 images every record is a whole chunk and its own frame.
//!
//! **Chains.** A full image has an all-zero parent ID and parent root. An incremental or
//! differential image (a *child*) names its parent by ID and root hash in its header. Its index
//! still describes the whole disk state at its own time, record by record; a record whose
//! content the chain already holds has codec 4 and no stored bytes, and a reader finds the
//! bytes in the nearest ancestor that stores a record with the same blake3 hash (at any disk
//! offset: moved data is found too). A reader must check every link: the parent file's image
//! ID and root hash equal the child's recorded ones, no image appears twice, and every codec-4
//! record is found. The metadata names the kind (`full`, `incremental`, `differential`) and the
//! parent's file name as a hint; the IDs and hashes are what bind the chain.
//!
//! **Footer** (128 bytes, at file end)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LBFOOTER` |
//! | 8 | 8 | metadata offset |
//! | 16 | 8 | metadata length (whole section) |
//! | 24 | 8 | index offset |
//! | 32 | 8 | index length (whole section) |
//! | 40 | 8 | chunk count |
//! | 48 | 8 | raw bytes described (sum of raw lengths) |
//! | 56 | 32 | root hash |
//! | 88 | 4 | CRC-32 of the whole 4096-byte header (binds footer to header; an encrypted image's leaves its key slots out, see below) |
//! | 92 | 4 | number of volumes of a split image (1.2), else 0 |
//! | 96 | 28 | reserved, 0 |
//! | 124 | 4 | CRC-32 of bytes 0..124 |
//!
//! **Root hash** = blake3("lifeboat-root-v1" ‖ image ID ‖ parent root hash ‖ for each record:
//! disk offset (u64) ‖ raw length (u32) ‖ content hash). It names the disk content the image
//! describes, independent of compression, and through the parent root the whole chain. A
//! missing range enters with its all-zero hash field, so it is told apart from zeros.
//!
//! **Metadata** is a JSON object written by the imaging job: the typed [`ImageMeta`]
//! (`image/meta.rs`). Readers ignore unknown fields, and every field has a default, so older
//! images (even the golden fixtures' `{"tool", "source": {"size_bytes"}}`) read. Kinds are
//! strings from fixed sets; an unknown one makes the metadata invalid.
//!
//! | field | JSON | meaning |
//! |---|---|---|
//! | `tool`, `tool_version` | strings | `"lifeboat"` and the version that wrote it |
//! | `created_unix` | u64 | when the image was taken |
//! | `kind` | `"full"` \| `"incremental"` \| `"differential"` | absent in old images: full when the header has no parent, else incremental |
//! | `chain_name` | string | the full image's file stem, inherited by its children |
//! | `parent` | object or null | `file`, `path` (where the parent was), `image_id`, `root_hash` (hex), `kind` |
//! | `source` | object or null | the source disk's `lifeboat inspect --json` report when imaged (`path`, `model`, `serial`, `disk_id`, `backing_file`, `size_bytes` are read back to match chains) |
//! | `source_path`, `size_bytes`, `sector_size` | string, u64, u32 | what was read |
//! | `table` | `"gpt"` \| `"mbr"` \| null | the usable partition table |
//! | `raw_table_hex` | hex string | LBA 0, and for GPT the primary header and entries, as read |
//! | `regions` | array | in disk order: `what` (`"boot area"`, `"gap"`, `"partition"`, `"end of disk"`, `"filesystem"`, `"disk"`), `partition`, `start_bytes`, `size_bytes`, `fs`, `label`, `uuid`, `method` (`"used-blocks"`, `"all"`, `"partial"`, `"skipped"`), `reason`, `used_bytes`, `copy_bytes`, `stored_bytes`, `chunks` |
//! | `selected_partitions` | array of u32 | partitions whose data is in the image |
//! | `warnings` | array of strings | given when imaging |
//! | `compression` | object | `codec` (`"zstd"`), `level`, `chunk_size`, `block_size` |
//! | `merged_unix`, `merged_from` | u64, array | only in images made by `merge`: when, and the chain's links |
//!
//! **Encrypted images** (1.4, `image --encrypt`, `image/crypt.rs`). Flag bit 1 is set and
//! the minor version is 4, so a 1.3 reader refuses the image instead of reading ciphertext as
//! data. The image has one random 256-bit master key. From it blake3's key derivation
//! (`derive_key`) makes three keys: the *frame key* (context
//! `"lifeboat 2026-12 frame key"`), the *content-ID key* (`"lifeboat 2026-12 content id"`) and
//! the 16-byte *key ID* (the first 16 bytes of `"lifeboat 2026-12 image key id"`).
//!
//! - Header bytes 128..144 hold the key ID, 144..148 the number of key slots (1 ..= 16), and
//!   slot *n* (from 0) is 128 bytes at 160 + 128·*n*: kind (u8: 1 passphrase, 2 recovery
//!   key), 3 reserved, Argon2id memory in KiB, passes and lanes (3 × u32; 0 for a recovery
//!   slot; a reader refuses more than 1 GiB, 64 passes or 16 lanes before running Argon2),
//!   salt (16), nonce (24), and the master key sealed with XChaCha20-Poly1305 (32 + 16-byte
//!   tag) under the slot's key, with associated data `"lifeboat-slot-v1" ‖ key ID ‖ kind`.
//!   A passphrase slot's key is Argon2id (v1.3) of the passphrase with the salt; a recovery
//!   slot's is blake3 `derive_key("lifeboat 2026-12 recovery slot", salt ‖ recovery key)`.
//!   A recovery key is 256 random bits, printed as 52 characters of
//!   `ABCDEFGHJKLMNPQRSTUVWXYZ23456789` in groups of four (the last carries the 256th bit and
//!   a 4-bit check).
//! - The footer's header checksum (footer byte 88) is, for an encrypted image, the CRC-32 of
//!   header bytes 0..4092 with bytes 144..4092 (the slots) zeroed, so that `lifeboat key`
//!   adds and removes slots by rewriting the header alone. The key ID stays bound.
//! - Every stored frame is `nonce (24) ‖ XChaCha20-Poly1305 ciphertext ‖ tag (16)`: the
//!   record's stored length includes these 40 bytes. The nonce is random; the associated data
//!   is `"lifeboat-frame-v1" ‖ image ID ‖ file offset of the frame (u64) ‖ codec (u8)`. The
//!   plaintext is the frame as a plain image would store it (zstd or raw). A frame in a
//!   pack (packed images, below) is shared by the images of its store, so its associated
//!   data is `"lifeboat-pack-frame-v1" ‖ key ID ‖ pack address (u64) ‖ codec (u8)` instead.
//! - The metadata section is `"LBMETA\0\0"`, u64 length, then the JSON sealed the same way
//!   (associated data `"lifeboat-meta-v1" ‖ image ID`), then the CRC-32; the index is
//!   `"LBINDEX\0"`, u64 count, the records sealed as one piece (`"lifeboat-index-v1" ‖ image
//!   ID`; 24 + 64·count + 16 bytes), then the CRC-32.
//! - Record hashes are blake3 keyed with the content-ID key, and the root hash is computed
//!   from them as above. Zero records and missing ranges are as in plain images.
//! - A child (incremental or differential) has its parent's key ID and a copy of its
//!   parent's slots at the time it was made; a reader checks that the key IDs of a chain's
//!   links are equal. A merged image keeps its chain's key and slots.
//! - What stays clear: the header (sizes, times, IDs, the chunk and block sizes, the slots)
//!   and the footer (section offsets, the record count, the bytes described, the root hash).
//!   The stored length of each frame shows through the file layout.
//!
//! **Packed images** (1.5, `image --dedup`, `image/packs.rs`). Flag bit 2 is set and the
//! minor version is 5. The image file holds the header, the metadata, the index and the
//! footer, and no frames: the metadata starts at byte 4096. Every stored record's file
//! offset is a *pack address*: bit 63 set, bits 32..63 a pack ID, bits 0..32 the offset of
//! the frame in that pack. The pack is the file (or object) `packs/XXXXXXXX.pack` (the ID in
//! eight lower-case hex digits) in the image's own folder, and holds frames end to end
//! exactly as a plain image stores them (zstd or raw); the record's stored length and frame
//! offset mean what they mean in a plain image, and its hash is checked the same way. A
//! reader refuses a pack address in an image without the flag, and a file offset without bit
//! 63 in one with it. Packs are shared: records of many images point into one pack, and one
//! frame may serve several images. Beside them, `index/ID.idx` files list the records of
//! the frames each image added (`"LBPKIDX1"`, u64 count, 64-byte records as in the index,
//! then the CRC-32 of everything before it), for writers to find what the store holds; a
//! reader of images never needs them. Packed images are full (not split, no parent).
//!
//! An **encrypted store** has one master key for all its images: `store.key` in the store's
//! folder is 4096 bytes laid out as an encrypted header's key area (`"LBSTKEY1"`, u32
//! version 1, the key ID at byte 128, the slot count and slots from byte 144 as above, the
//! CRC-32 of bytes 0..4092 at byte 4092). Each image of the store is an encrypted packed image
//! (flag bits 1 and 2) whose header holds that key ID and a copy of those slots; its records'
//! hashes are keyed with the store's content-ID key, its metadata and index are sealed to its
//! own image ID, and its frames in packs to the key ID and their pack address (above). The
//! index files of an encrypted store list keyed hashes. A reader of 1.5 from before encrypted
//! stores (December 2026) fails such an image's frames as not decrypting; it never reads them
//! as data.
//!
//! **Volumes** (1.2). Where one file cannot hold the image (FAT32 ends files at 4 GiB; the
//! writer splits there by itself, in volumes of 4 GiB − 1 MiB, or where `--volume-size` asks),
//! the image file described above is cut into volumes: `NAME.lbi` (the first, which starts
//! with the header), then `NAME.lbi.001`, `NAME.lbi.002`… (three digits at least). Every volume
//! but the last holds exactly the volume size the header gives; the last is not empty and
//! ends with the footer, which gives the count. Offsets everywhere (records, footer, sections)
//! are offsets in the whole image, the volumes laid end to end. A reader checks that no
//! volume is missing between the first and the last, that none is cut short or too long, that
//! no numbered volume follows a gap, and that the count matches the footer's; each failure
//! names the volume. A set whose last volume is full but holds no footer is missing its next
//! volume. A split image may have a single volume (its writer could not know it would fit).
//!
//! **A rescue's side files** (not part of the image). While `image --rescue` writes
//! `NAME.lbi.partial`, its rescue log `NAME.lbi.rescue` records checkpoints (the image bytes
//! made durable, the records written, the state of every byte to read), so that
//! `--resume` goes on after a crash; its layout is in `jobs/image/rescue_log.rs`. It is
//! removed when the image is sealed. `--mapfile` writes a GNU ddrescue mapfile beside.
//!
//! **Completeness**: an image is written under a temporary name (`NAME.lbi.partial`; volumes
//! `NAME.lbi.001.partial`…), fsynced, renamed (the first volume last), and its directory
//! fsynced. A file without a valid footer is never an image, so a
//! truncated file (even one cut exactly at a chunk boundary) is `Incomplete`, never a shorter
//! valid image.

mod chain;
pub mod crypt;
mod dev;
pub mod encode;
pub mod format;
pub mod meta;
pub mod packs;
mod reader;
pub mod volumes;
mod writer;

pub use chain::{kind_from, kind_of, Chain, ChainLink, FrameRead, Located, MAX_CHAIN};
pub use dev::ImageDev;
pub use format::{Codec, Footer, Header, Record};
pub use meta::{CopyMethod, ImageKind, ImageMeta, Region, RegionKind};
pub use reader::{ImageReader, ImageSummary, VerifyReport};
pub use volumes::{image_bytes, image_files, remove_image, VolumeFile, VolumeLimit};
pub use writer::{hex, partial_path, EncodedChunk, ImageWriter, WriteSummary};

/// A range of the source disk an image records as missing ([`Codec::Missing`]: `image
/// --rescue` could not read it). Bytes of the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MissingRange {
    /// First byte.
    pub start_bytes: u64,
    /// Length in bytes.
    pub len_bytes: u64,
}

impl MissingRange {
    /// One past the last byte.
    pub fn end_bytes(&self) -> u64 {
        self.start_bytes + self.len_bytes
    }
}

/// The missing ranges of an index (records in disk order), adjacent records joined.
pub fn missing_ranges(records: &[Record]) -> Vec<MissingRange> {
    let mut out: Vec<MissingRange> = Vec::new();
    for r in records.iter().filter(|r| r.codec == Codec::Missing) {
        match out.last_mut() {
            Some(m) if m.end_bytes() == r.disk_offset => m.len_bytes += u64::from(r.raw_len),
            _ => out.push(MissingRange {
                start_bytes: r.disk_offset,
                len_bytes: u64::from(r.raw_len),
            }),
        }
    }
    out
}

/// What can be wrong with an image file. Offsets are file offsets unless named otherwise.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file does not start with the image magic.
    #[error("not a Lifeboat image (no LIFEBOAT magic at byte 0)")]
    NotAnImage,
    /// A newer (or unknown) major version.
    #[error("image format version {major}.{minor} is not supported by this Lifeboat (reads 1.x)")]
    UnsupportedVersion {
        /// Major version found.
        major: u16,
        /// Minor version found.
        minor: u16,
    },
    /// The file ends before a fixed-size structure.
    #[error("truncated {what}: need {need} bytes, file has {have}")]
    Truncated {
        /// Structure name.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// No valid footer: the image was never finished or was cut short.
    #[error(
        "incomplete image: no footer at byte {offset} (the file was truncated or never finished)"
    )]
    Incomplete {
        /// Where the footer should be.
        offset: u64,
    },
    /// A CRC does not match.
    #[error("{what} checksum mismatch at byte {offset}")]
    Checksum {
        /// Structure name.
        what: &'static str,
        /// Its file offset.
        offset: u64,
    },
    /// A structure is inconsistent.
    #[error("invalid {what} at byte {offset}: {reason}")]
    Invalid {
        /// Structure name.
        what: &'static str,
        /// Its file offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A volume of a split image is missing, cut short or too large.
    #[error("volume {volume}: {reason}")]
    Volumes {
        /// The volume's file.
        volume: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A chunk's content does not hash to its recorded hash (bit rot, tampering).
    #[error("chunk {index} (disk bytes {disk_offset}..{disk_end}, {}) is corrupt: {reason}", stored_at(.file_offset))]
    Chunk {
        /// Record number.
        index: u64,
        /// Disk offset of the chunk's range.
        disk_offset: u64,
        /// End of the range.
        disk_end: u64,
        /// File offset of the stored bytes.
        file_offset: u64,
        /// Hash mismatch, decompression failure…
        reason: String,
    },
}

/// Where a record's frame is stored, for messages: `file byte N`, or for a packed image's
/// pack address `pack packs/XXXXXXXX.pack byte N`.
fn stored_at(file_offset: &u64) -> String {
    if packs::is_address(*file_offset) {
        let (id, at) = packs::split(*file_offset);
        format!("pack packs/{id:08x}.pack byte {at}")
    } else {
        format!("file byte {file_offset}")
    }
}
