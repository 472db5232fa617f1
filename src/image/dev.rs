//! [`ImageDev`]: an image seen as a read-only disk. Bytes covered by a record read as that
//! chunk's (hash-verified) content; bytes no record covers read as zeros. Restore uses it to
//! read the partition table out of an image, and later work (mounting, single-file restore)
//! builds on the same random access.

use super::format::Record;
use super::reader::ImageReader;
use crate::blockdev::{check_range, BlockDev, Geometry};
use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Mutex;

/// A read-only [`BlockDev`] over an open image.
#[derive(Debug)]
pub struct ImageDev<'a> {
    reader: &'a ImageReader,
    geometry: Geometry,
    /// The last chunk decoded: (record index, raw bytes).
    cache: Mutex<Option<(usize, Vec<u8>)>>,
}

impl<'a> ImageDev<'a> {
    /// A view of `reader` with the source disk's size and sector size.
    pub fn new(reader: &'a ImageReader) -> Self {
        let h = reader.header();
        ImageDev {
            reader,
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
        self.reader.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.path(), offset, buf.len(), self.geometry.size_bytes)?;
        buf.fill(0);
        let end = offset + buf.len() as u64;
        let records = self.reader.records();
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
            if !matches!(&*cache, Some((ci, _)) if *ci == i) {
                let mut data = cache.take().map(|c| c.1).unwrap_or_default();
                self.reader.read_chunk(i, &mut data)?;
                *cache = Some((i, data));
            }
            if let Some((_, data)) = &*cache {
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
