//! Byte layouts of the v1 image format: header, chunk record, footer. Everything is
//! little-endian and encoded by hand (no serde), so the layout is exactly what `mod.rs`
//! documents. Each structure has an encode/decode pair and a round-trip test.

use super::FormatError;
use crate::units::{le_array, le_u16, le_u32, le_u64};

/// File magic at byte 0.
pub const MAGIC: [u8; 8] = *b"LIFEBOAT";
/// Footer magic (first 8 bytes of the last 128 bytes of a complete image).
pub const FOOTER_MAGIC: [u8; 8] = *b"LBFOOTER";
/// Index section magic.
pub const INDEX_MAGIC: [u8; 8] = *b"LBINDEX\0";
/// Metadata section magic.
pub const META_MAGIC: [u8; 8] = *b"LBMETA\0\0";
/// Major version: readers refuse any other major.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version written. 1.1 added frames shared by several records (`frame_offset`) and the
/// block size; 1.0 images read unchanged (every record is its own frame).
pub const VERSION_MINOR: u16 = 1;
/// Minor version of a split image (1.2 added volumes): a reader of 1.1 would find no footer
/// in the first volume, so such an image says it needs 1.2. Single-file images stay 1.1.
pub const VERSION_MINOR_VOLUMES: u16 = 2;
/// Minor version of an image that may record missing ranges (1.3 added codec 5, written by
/// `image --rescue`): a reader of 1.2 refuses codec 5 as unknown, so it never restores such
/// an image as if it were whole. Other images keep the lower minor.
pub const VERSION_MINOR_MISSING: u16 = 3;
/// Minor version of an encrypted image (1.4, [`FLAG_ENCRYPTED`]): a reader of 1.3 refuses the
/// flag, so it never reads ciphertext as data.
pub const VERSION_MINOR_ENCRYPTED: u16 = 4;
/// Minor version of an image whose frames are in a deduplicating store's packs (1.5,
/// [`FLAG_PACKED`], `packs.rs`): a reader of 1.4 refuses the flag, so it never reads a pack
/// address as an offset in the file.
pub const VERSION_MINOR_PACKED: u16 = 5;
/// The hash field of a [`Codec::Missing`] record: all zero (no content hashes to it).
pub const MISSING_HASH: [u8; 32] = [0; 32];
/// Header flag: the image is split into volumes of `volume_size` bytes (`volumes.rs`).
pub const FLAG_VOLUMES: u32 = 1;
/// Header flag: the image is encrypted (1.4, `crypt.rs`); its key ID and slots follow byte 128.
pub const FLAG_ENCRYPTED: u32 = 2;
/// Header flag: the image's frames are in the packs of the store beside it (1.5,
/// `packs.rs`); its records' file offsets are pack addresses.
pub const FLAG_PACKED: u32 = 4;
/// Header size in bytes; chunk data starts right after it.
pub const HEADER_LEN: usize = 4096;
/// Size of one index record in bytes.
pub const RECORD_LEN: usize = 64;
/// Footer size in bytes.
pub const FOOTER_LEN: usize = 128;
/// Largest raw chunk (and decoded frame) a reader accepts (64 MiB), so a hostile index cannot
/// make it allocate without bound.
pub const MAX_CHUNK_RAW: u32 = 64 << 20;

/// How a chunk's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// An independent zstd frame in this file.
    Zstd = 1,
    /// Raw bytes in this file (when compression does not help).
    Raw = 2,
    /// All zero bytes; nothing stored.
    Zero = 3,
    /// Stored in an ancestor image, found by hash (incremental and differential images).
    Parent = 4,
    /// Not in the image: the source could not be read there (`image --rescue`, 1.3). It reads
    /// as zeros, and restore names it; its hash field is [`MISSING_HASH`].
    Missing = 5,
}

impl Codec {
    fn from_u8(v: u8) -> Option<Codec> {
        Some(match v {
            1 => Codec::Zstd,
            2 => Codec::Raw,
            3 => Codec::Zero,
            4 => Codec::Parent,
            5 => Codec::Missing,
            _ => return None,
        })
    }

    /// True when the chunk's bytes live in this file.
    pub fn stored_here(self) -> bool {
        matches!(self, Codec::Zstd | Codec::Raw)
    }

    /// True when a reader gets zeros for the record without reading anything: an all-zero
    /// range, or one the source could not give ([`Codec::Missing`]).
    pub fn reads_as_zero(self) -> bool {
        matches!(self, Codec::Zero | Codec::Missing)
    }
}

/// The fixed header (4096 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Minor version the writer used.
    pub minor: u16,
    /// Flags: [`FLAG_VOLUMES`] (1.2) or none. Set by `encode` from `volume_size`.
    pub flags: u32,
    /// Random identifier of this image.
    pub image_id: [u8; 16],
    /// Identifier of the parent image, all zero for a full image.
    pub parent_id: [u8; 16],
    /// Root hash of the parent image, all zero for a full image.
    pub parent_root: [u8; 32],
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Nominal raw chunk size in bytes (the last chunk of a range may be shorter).
    pub chunk_size: u32,
    /// zstd level used for Zstd chunks.
    pub zstd_level: i32,
    /// Size of the source disk in bytes.
    pub source_size: u64,
    /// Logical sector size of the source disk.
    pub sector_size: u32,
    /// Record granularity in bytes: records never cross a multiple of it, so chains match
    /// unchanged data at this size. 0 in 1.0 images (records are whole chunks).
    pub block_size: u32,
    /// The size of every volume but the last of a split image; 0 for a single file.
    pub volume_size: u64,
    /// The key ID and key slots of an encrypted image (1.4); `None` for a plain one. Sets
    /// [`FLAG_ENCRYPTED`] when encoded.
    pub keys: Option<super::crypt::KeySlots>,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

impl Header {
    /// True for a full (parentless) image.
    pub fn is_full(&self) -> bool {
        self.parent_id == [0; 16]
    }

    /// Encodes to exactly [`HEADER_LEN`] bytes, CRC included.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        put(&mut b, 0, &MAGIC);
        put(&mut b, 8, &VERSION_MAJOR.to_le_bytes());
        put(&mut b, 10, &self.minor.to_le_bytes());
        let mut flags = if self.volume_size > 0 {
            self.flags | FLAG_VOLUMES
        } else {
            self.flags & !FLAG_VOLUMES
        };
        flags &= !FLAG_ENCRYPTED;
        if let Some(k) = &self.keys {
            flags |= FLAG_ENCRYPTED;
            k.encode_into(&mut b);
        }
        put(&mut b, 12, &flags.to_le_bytes());
        put(&mut b, 16, &(HEADER_LEN as u32).to_le_bytes());
        put(&mut b, 24, &self.image_id);
        put(&mut b, 40, &self.parent_id);
        put(&mut b, 56, &self.parent_root);
        put(&mut b, 88, &self.created_unix.to_le_bytes());
        put(&mut b, 96, &self.chunk_size.to_le_bytes());
        put(&mut b, 100, &self.zstd_level.to_le_bytes());
        put(&mut b, 104, &self.source_size.to_le_bytes());
        put(&mut b, 112, &self.sector_size.to_le_bytes());
        put(&mut b, 116, &self.block_size.to_le_bytes());
        put(&mut b, 120, &self.volume_size.to_le_bytes());
        let crc = crc32fast::hash(&b[..HEADER_LEN - 4]);
        put(&mut b, HEADER_LEN - 4, &crc.to_le_bytes());
        b
    }

    /// True for an encrypted image.
    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// The checksum the footer records of its header: of the whole header (its CRC
    /// included), except that an encrypted image's is of bytes 0..4092 with the slot area
    /// zeroed ([`super::crypt::SLOTS_AREA`]), so that key
    /// slots can be added and removed without rewriting the image.
    pub fn binding_crc(&self) -> u32 {
        let mut b = self.encode();
        if self.keys.is_none() {
            // all 4096 bytes, the header's own CRC included, as since 1.0
            return crc32fast::hash(&b);
        }
        b[super::crypt::SLOTS_AREA].fill(0);
        crc32fast::hash(&b[..HEADER_LEN - 4])
    }

    /// Decodes and checks magic, version and CRC.
    pub fn decode(b: &[u8]) -> Result<Header, FormatError> {
        if b.len() < 16 || b[..8] != MAGIC {
            return Err(FormatError::NotAnImage);
        }
        let major = le_u16(b, 8);
        if major != VERSION_MAJOR {
            return Err(FormatError::UnsupportedVersion {
                major,
                minor: le_u16(b, 10),
            });
        }
        if b.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                what: "header",
                need: HEADER_LEN as u64,
                have: b.len() as u64,
            });
        }
        let stored = le_u32(b, HEADER_LEN - 4);
        let computed = crc32fast::hash(&b[..HEADER_LEN - 4]);
        if stored != computed {
            return Err(FormatError::Checksum {
                what: "header",
                offset: 0,
            });
        }
        if le_u32(b, 16) != HEADER_LEN as u32 {
            return Err(FormatError::Invalid {
                what: "header",
                offset: 16,
                reason: format!("header length {} is not {HEADER_LEN}", le_u32(b, 16)),
            });
        }
        let h = Header {
            minor: le_u16(b, 10),
            flags: le_u32(b, 12),
            image_id: le_array(b, 24),
            parent_id: le_array(b, 40),
            parent_root: le_array(b, 56),
            created_unix: le_u64(b, 88),
            chunk_size: le_u32(b, 96),
            zstd_level: i32::from_le_bytes(le_array(b, 100)),
            source_size: le_u64(b, 104),
            sector_size: le_u32(b, 112),
            block_size: le_u32(b, 116),
            volume_size: if le_u32(b, 12) & FLAG_VOLUMES != 0 {
                le_u64(b, 120)
            } else {
                0
            },
            keys: None,
        };
        let mut h = h;
        if h.flags & FLAG_ENCRYPTED != 0 {
            if h.minor < VERSION_MINOR_ENCRYPTED {
                return Err(FormatError::Invalid {
                    what: "header",
                    offset: 12,
                    reason: format!("an encrypted image in format 1.{}", h.minor),
                });
            }
            h.keys = Some(
                super::crypt::KeySlots::decode(b).map_err(|e| FormatError::Invalid {
                    what: "header",
                    offset: super::crypt::KEYS_AT as u64,
                    reason: e.to_string(),
                })?,
            );
        }
        if h.flags & FLAG_PACKED != 0 && h.minor < VERSION_MINOR_PACKED {
            return Err(FormatError::Invalid {
                what: "header",
                offset: 12,
                reason: format!("a packed image in format 1.{}", h.minor),
            });
        }
        if h.flags & !(FLAG_VOLUMES | FLAG_ENCRYPTED | FLAG_PACKED) != 0 {
            return Err(FormatError::Invalid {
                what: "header",
                offset: 12,
                reason: format!(
                    "flags {:#x} name features this Lifeboat does not know",
                    h.flags
                ),
            });
        }
        if h.flags & FLAG_VOLUMES != 0 && h.volume_size < super::volumes::MIN_VOLUME {
            return Err(FormatError::Invalid {
                what: "header",
                offset: 120,
                reason: format!(
                    "volume size {} is below the smallest, {}",
                    h.volume_size,
                    super::volumes::MIN_VOLUME
                ),
            });
        }
        if h.chunk_size == 0 || h.chunk_size > MAX_CHUNK_RAW {
            return Err(FormatError::Invalid {
                what: "header",
                offset: 96,
                reason: format!("chunk size {} is outside 1..={MAX_CHUNK_RAW}", h.chunk_size),
            });
        }
        if h.block_size > h.chunk_size {
            return Err(FormatError::Invalid {
                what: "header",
                offset: 116,
                reason: format!(
                    "block size {} is larger than the chunk size {}",
                    h.block_size, h.chunk_size
                ),
            });
        }
        Ok(h)
    }
}

/// One index record: where a disk range's bytes are and what they hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Byte offset of the range on the source disk.
    pub disk_offset: u64,
    /// Length of the range in bytes (uncompressed).
    pub raw_len: u32,
    /// Bytes stored in this file (0 for Zero and Parent).
    pub stored_len: u32,
    /// Offset of the stored frame in this file (0 for Zero and Parent).
    pub file_offset: u64,
    /// How the bytes are stored.
    pub codec: Codec,
    /// Where the record's bytes start inside its decoded frame (0 for Zero and Parent, and
    /// in 1.0 images).
    pub frame_offset: u32,
    /// blake3 of the uncompressed bytes.
    pub hash: [u8; 32],
}

impl Record {
    /// The hash of the bytes a reader gets for this record: its hash, or for a missing range
    /// (whose hash field is [`MISSING_HASH`]) that of the zeros it reads as.
    /// `hasher` is the image's ([`super::ImageReader::hasher`]).
    pub fn content_hash(&self, hasher: &super::crypt::ContentHash) -> [u8; 32] {
        if self.codec == Codec::Missing {
            hasher.zeros(self.raw_len as usize)
        } else {
            self.hash
        }
    }

    /// Encodes to exactly [`RECORD_LEN`] bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; RECORD_LEN];
        put(&mut b, 0, &self.disk_offset.to_le_bytes());
        put(&mut b, 8, &self.raw_len.to_le_bytes());
        put(&mut b, 12, &self.stored_len.to_le_bytes());
        put(&mut b, 16, &self.file_offset.to_le_bytes());
        b[24] = self.codec as u8;
        put(&mut b, 28, &self.frame_offset.to_le_bytes());
        put(&mut b, 32, &self.hash);
        out.extend_from_slice(&b);
    }

    /// Decodes record number `i` (for error messages) from exactly [`RECORD_LEN`] bytes.
    pub fn decode(b: &[u8], i: u64, section_offset: u64) -> Result<Record, FormatError> {
        let codec = Codec::from_u8(b[24]).ok_or_else(|| FormatError::Invalid {
            what: "index record",
            offset: section_offset,
            reason: format!("chunk {i}: unknown codec {}", b[24]),
        })?;
        Ok(Record {
            disk_offset: le_u64(b, 0),
            raw_len: le_u32(b, 8),
            stored_len: le_u32(b, 12),
            file_offset: le_u64(b, 16),
            codec,
            frame_offset: le_u32(b, 28),
            hash: le_array(b, 32),
        })
    }
}

/// The fixed footer (128 bytes) at the very end of a complete image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// File offset of the metadata section.
    pub meta_offset: u64,
    /// Length of the metadata section in bytes.
    pub meta_len: u64,
    /// File offset of the index section.
    pub index_offset: u64,
    /// Length of the index section in bytes.
    pub index_len: u64,
    /// Number of index records.
    pub chunk_count: u64,
    /// Sum of raw_len over all records (bytes of disk content described).
    pub raw_bytes: u64,
    /// Root hash (see `mod.rs`).
    pub root_hash: [u8; 32],
    /// CRC32 of the header, binding the footer to its header.
    pub header_crc: u32,
    /// The number of volumes of a split image (1.2); 0 for a single file.
    pub volumes: u32,
}

impl Footer {
    /// Encodes to exactly [`FOOTER_LEN`] bytes, CRC included.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; FOOTER_LEN];
        put(&mut b, 0, &FOOTER_MAGIC);
        put(&mut b, 8, &self.meta_offset.to_le_bytes());
        put(&mut b, 16, &self.meta_len.to_le_bytes());
        put(&mut b, 24, &self.index_offset.to_le_bytes());
        put(&mut b, 32, &self.index_len.to_le_bytes());
        put(&mut b, 40, &self.chunk_count.to_le_bytes());
        put(&mut b, 48, &self.raw_bytes.to_le_bytes());
        put(&mut b, 56, &self.root_hash);
        put(&mut b, 88, &self.header_crc.to_le_bytes());
        put(&mut b, 92, &self.volumes.to_le_bytes());
        let crc = crc32fast::hash(&b[..FOOTER_LEN - 4]);
        put(&mut b, FOOTER_LEN - 4, &crc.to_le_bytes());
        b
    }

    /// Decodes and checks magic and CRC. `offset` is the footer's file offset.
    pub fn decode(b: &[u8], offset: u64) -> Result<Footer, FormatError> {
        if b.len() != FOOTER_LEN || b[..8] != FOOTER_MAGIC {
            return Err(FormatError::Incomplete { offset });
        }
        if le_u32(b, FOOTER_LEN - 4) != crc32fast::hash(&b[..FOOTER_LEN - 4]) {
            return Err(FormatError::Checksum {
                what: "footer",
                offset,
            });
        }
        Ok(Footer {
            meta_offset: le_u64(b, 8),
            meta_len: le_u64(b, 16),
            index_offset: le_u64(b, 24),
            index_len: le_u64(b, 32),
            chunk_count: le_u64(b, 40),
            raw_bytes: le_u64(b, 48),
            root_hash: le_array(b, 56),
            header_crc: le_u32(b, 88),
            volumes: le_u32(b, 92),
        })
    }
}

/// Root hash: blake3 over the image ID, the parent root hash, and for each record in index
/// order its disk offset, raw length and content hash. It names the disk *content* the image
/// describes (independent of compression), including chunks kept in ancestors.
pub fn root_hash(image_id: &[u8; 16], parent_root: &[u8; 32], records: &[Record]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"lifeboat-root-v1");
    h.update(image_id);
    h.update(parent_root);
    for r in records {
        h.update(&r.disk_offset.to_le_bytes());
        h.update(&r.raw_len.to_le_bytes());
        h.update(&r.hash);
    }
    *h.finalize().as_bytes()
}

/// A valid single-file header for the crate's unit tests.
#[cfg(test)]
pub(crate) fn sample_header() -> Header {
    Header {
        minor: VERSION_MINOR,
        flags: 0,
        image_id: [7; 16],
        parent_id: [0; 16],
        parent_root: [0; 32],
        created_unix: 1_790_000_000,
        chunk_size: 4 << 20,
        zstd_level: 3,
        source_size: 1 << 30,
        sector_size: 512,
        block_size: 64 << 10,
        volume_size: 0,
        keys: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        sample_header()
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = header();
        let b = h.encode();
        assert_eq!(b.len(), HEADER_LEN);
        assert_eq!(Header::decode(&b).unwrap(), h);
        assert!(h.is_full());
        let mut bad = b.clone();
        bad[200] ^= 1;
        assert!(matches!(
            Header::decode(&bad),
            Err(FormatError::Checksum { what: "header", .. })
        ));
        let mut newer = b.clone();
        newer[8] = 2;
        assert!(matches!(
            Header::decode(&newer),
            Err(FormatError::UnsupportedVersion { major: 2, .. })
        ));
        assert!(matches!(
            Header::decode(b"nope"),
            Err(FormatError::NotAnImage)
        ));
        assert!(matches!(
            Header::decode(&b[..100]),
            Err(FormatError::Truncated { .. })
        ));
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            disk_offset: 1 << 40,
            raw_len: 4 << 20,
            stored_len: 12345,
            file_offset: 4096,
            codec: Codec::Zstd,
            frame_offset: 65536,
            hash: [9; 32],
        };
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(b.len(), RECORD_LEN);
        assert_eq!(Record::decode(&b, 0, 0).unwrap(), r);
        b[24] = 99;
        assert!(Record::decode(&b, 5, 77).is_err());
    }

    #[test]
    fn footer_round_trip() {
        let f = Footer {
            meta_offset: 1,
            meta_len: 2,
            index_offset: 3,
            index_len: 4,
            chunk_count: 5,
            raw_bytes: 6,
            root_hash: [8; 32],
            header_crc: 9,
            volumes: 0,
        };
        let b = f.encode();
        assert_eq!(Footer::decode(&b, 0).unwrap(), f);
        let mut bad = b.clone();
        bad[60] ^= 1;
        assert!(matches!(
            Footer::decode(&bad, 10),
            Err(FormatError::Checksum { offset: 10, .. })
        ));
        assert!(matches!(
            Footer::decode(&[0; FOOTER_LEN], 10),
            Err(FormatError::Incomplete { offset: 10 })
        ));
    }
}
