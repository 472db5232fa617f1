//! [`ImageDev`]: an image (with its chain) seen as a read-only disk. Bytes covered by a record
//! read as that record's (hash-verified) content; bytes no record covers read as zeros.
//! Restore uses it to read the partition table out of an image, and later work (mounting,
//! single-file restore) builds on the same random access.

use super::chain::Chain;
use super::format::Record;
use crate::blockdev::{check_range, BlockDev, Geometry};
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Mutex;

/// A decoded frame and its key: (chain member, file offset).
type CachedFrame = ((usize, u64), Vec<u8>);

/// A read-only [`BlockDev`] over an open chain (a full image is a chain of one).
#[derive(Debug)]
pub struct ImageDev<'a> {
    chain: &'a Chain,
    geometry: Geometry,
    /// The last frame decoded: ((member, file offset), decoded frame). Records of one
    /// chunk share a frame, so reading across them decodes it once.
    cache: Mutex<Option<CachedFrame>>,
}

impl<'a> ImageDev<'a> {
    /// A view of `chain`'s leaf with the source disk's size and sector size.
    pub fn new(chain: &'a Chain) -> Self {
        let h = chain.leaf().header();
        ImageDev {
            chain,
            geometry: Geometry::new(h.source_size, h.sector_size),
            cache: Mutex::new(None),
        }
    }

    /// Index of the first record whose range ends after `offset`.
    fn first_record_after(records: &[Record], offset: u64) -> usize {
        records.partition_point(|r| r.disk_offset + u64::from(r.raw_len) <= offset)
    }
}

impl BlockDev for ImageDev<'_> {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn path(&self) -> &Path {
        self.chain.leaf().path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.path(), offset, buf.len(), self.geometry.size_bytes)?;
        buf.fill(0);
        let end = offset + buf.len() as u64;
        let records = self.chain.leaf().records();
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Error::Unsupported("image cache poisoned".into()))?;
        let mut i = Self::first_record_after(records, offset);
        while let Some(r) = records.get(i) {
            if r.disk_offset >= end {
                break;
            }
            let r_end = r.disk_offset + u64::from(r.raw_len);
            let from = offset.max(r.disk_offset);
            let to = end.min(r_end);
            let fr = self.chain.frame_reads([i])?;
            let Some(fr) = fr.first() else { break };
            let key = (
                fr.member,
                fr.parts.first().map_or(0, |p| p.1.record.file_offset),
            );
            let zero = fr
                .parts
                .first()
                .is_some_and(|p| p.1.record.codec.reads_as_zero());
            if zero || !matches!(&*cache, Some((k, _)) if *k == key) {
                let mut frame = cache.take().map(|c| c.1).unwrap_or_default();
                let mut stored = Vec::new();
                self.chain.read(fr, &mut stored)?;
                self.chain.decode(fr, &stored, &mut frame)?;
                *cache = Some((if zero { (usize::MAX, 0) } else { key }, frame));
            }
            if let Some((_, frame)) = &*cache {
                let data = self.chain.part(fr, 0, frame)?;
                let src = &data[(from - r.disk_offset) as usize..(to - r.disk_offset) as usize];
                buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
            }
            i += 1;
        }
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
