//! How restore and clone put their data on the target (one path for both):
//!
//! - Whole `O_DIRECT` units (4096 bytes, or the sector size if larger) go through a second
//!   handle opened with `O_DIRECT`, written by the pipeline's workers: several writes are in
//!   flight, no page-cache copy is made, and an error is reported at once for the range of
//!   that one write (at most a chunk).
//! - The partial units at a run's ends (FAT's 512-byte clusters, partitions at sector 63) are
//!   left to the consumer, which read-modify-writes each one through the same handle. Only the
//!   consumer touches a partial unit, one at a time, and no worker writes a unit a partial
//!   piece lies in (the pieces of a job never overlap), so no write is lost to a race.
//! - Without a direct handle (a filesystem that refuses `O_DIRECT`), and for a unit that runs
//!   past the end of the target, the bytes go through the page cache, flushed every
//!   [`target::FLUSH_EVERY`] bytes so that an error names the range written since the last
//!   flush.

use super::target;
use crate::blockdev::{aligned, BlockDev, FileDev, OpenMode};
use crate::error::Result;
use std::cell::RefCell;
use std::path::Path;
use std::sync::Mutex;

/// Memory alignment of `O_DIRECT` buffers.
const ALIGN: usize = 4096;

thread_local! {
    /// A worker's aligned staging buffer, for pieces that are not aligned in memory.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A piece left for [`DataWriter::write_rest`]: (disk offset, where it starts in the item's
/// buffer, length).
pub(crate) type Rest = (u64, usize, usize);

/// The target's two handles and the page-cache bookkeeping. Shared by the workers (`&self`).
pub(crate) struct DataWriter<'a> {
    dev: &'a dyn BlockDev,
    direct: Option<&'a dyn BlockDev>,
    /// The `O_DIRECT` unit: offsets and lengths of direct writes are multiples of it.
    unit: u64,
    /// The range written through the page cache since the last flush.
    batch: Mutex<Option<(u64, u64)>>,
}

/// Opens `path` with `O_DIRECT` (`mode` is `ReadDirect` or `WriteDirect`) and reads its first
/// unit through it, so that a filesystem that accepts the flag but fails the I/O (FUSE stores,
/// tmpfs before Linux 6.6) is found now; `None` where either fails.
pub(crate) fn open_direct(path: &Path, mode: OpenMode, sector_size: u32) -> Option<FileDev> {
    let d = FileDev::open_with_sector_size(path, mode, sector_size).ok()?;
    let unit = dio_unit(&d);
    let mut buf = Vec::new();
    (d.len() >= unit)
        .then(|| d.read_at(aligned(&mut buf, unit as usize), 0))?
        .ok()?;
    Some(d)
}

/// The `O_DIRECT` unit of `dev`: 4096 (the page size, and the block size of the filesystems
/// under image files), or its logical sector size if larger.
pub(crate) fn dio_unit(dev: &dyn BlockDev) -> u64 {
    u64::from(dev.geometry().logical_sector_size).max(ALIGN as u64)
}

impl<'a> DataWriter<'a> {
    /// Writes to `dev`, and through `direct` (the same target opened with `O_DIRECT`) where
    /// given.
    pub(crate) fn new(dev: &'a dyn BlockDev, direct: Option<&'a dyn BlockDev>) -> Self {
        DataWriter {
            dev,
            direct,
            unit: dio_unit(dev),
            batch: Mutex::new(None),
        }
    }

    /// On a worker: writes the whole units of `buf[at..at + len]` (to go at disk `offset`)
    /// through the direct handle, straight from `buf` when it is aligned in memory and
    /// through a staging copy otherwise. What is left (the partial units at either end, or
    /// everything without a direct handle) is appended to `rest`.
    pub(crate) fn write_units(
        &self,
        offset: u64,
        buf: &[u8],
        at: usize,
        len: usize,
        rest: &mut Vec<Rest>,
    ) -> Result<()> {
        let end = offset + len as u64;
        let first = offset.next_multiple_of(self.unit);
        let last = (end / self.unit * self.unit).min(self.dev.len() / self.unit * self.unit);
        let Some(direct) = self.direct.filter(|_| first < last) else {
            rest.push((offset, at, len));
            return Ok(());
        };
        if first > offset {
            rest.push((offset, at, (first - offset) as usize));
        }
        let from = at + (first - offset) as usize;
        let bytes = &buf[from..from + (last - first) as usize];
        if (bytes.as_ptr() as usize).is_multiple_of(ALIGN) {
            direct.write_at(bytes, first)?;
        } else {
            STAGING.with(|s| {
                let mut s = s.borrow_mut();
                let copy = aligned(&mut s, bytes.len());
                copy.copy_from_slice(bytes);
                direct.write_at(copy, first)
            })?;
        }
        if end > last {
            let from = at + (last - offset) as usize;
            rest.push((last, from, (end - last) as usize));
        }
        Ok(())
    }

    /// On the consumer: writes a piece [`DataWriter::write_units`] left. Inside the target's
    /// last whole unit it is read-modify-written through the direct handle (one unit at a
    /// time, so its other bytes stay as they are); otherwise it goes through the page cache.
    pub(crate) fn write_rest(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        let start = offset / self.unit * self.unit;
        let end = (offset + bytes.len() as u64).next_multiple_of(self.unit);
        match self.direct {
            Some(d) if end <= self.dev.len() && end - start <= 2 * self.unit => {
                let mut buf = Vec::new();
                let cover = aligned(&mut buf, (end - start) as usize);
                d.read_at(cover, start)?;
                let at = (offset - start) as usize;
                cover[at..at + bytes.len()].copy_from_slice(bytes);
                d.write_at(cover, start)
            }
            _ => {
                self.dev.write_at(bytes, offset)?;
                let end = offset + bytes.len() as u64;
                let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
                let (s, e) = batch.map_or((offset, end), |(s, e)| (s.min(offset), e.max(end)));
                *batch = Some((s, e));
                if e - s >= target::FLUSH_EVERY {
                    *batch = None;
                    target::flush(self.dev, s, e)?;
                }
                Ok(())
            }
        }
    }

    /// Flushes what went through the page cache since the last flush; an error names that
    /// range.
    pub(crate) fn finish(&self) -> Result<()> {
        let pending = self.batch.lock().unwrap_or_else(|e| e.into_inner()).take();
        match pending {
            Some((s, e)) => target::flush(self.dev, s, e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::testing::AlignCheckDev;
    use crate::blockdev::MemDev;

    /// Every layout of a piece against the units: each byte lands, direct writes are
    /// aligned, and the bytes around a partial unit keep their old content.
    #[test]
    fn pieces_of_any_alignment_land_whole_and_keep_their_neighbours() {
        let size = 64 * 1024 + 512; // a last unit that runs past the end
        for (offset, len) in [
            (0u64, 4096usize),
            (512, 100),
            (4000, 200),
            (512, 3 * 4096),
            (4096, 8192 + 700),
            (63 * 512, 30 * 1024),
            (60 * 1024, 4096 + 512),
        ] {
            for shift in [0usize, 1, 512] {
                let old: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let dev = MemDev::from_vec(old.clone(), 512);
                let check = AlignCheckDev::new(&dev, 4096);
                let w = DataWriter::new(&dev, Some(&check));
                let mut buf = vec![0u8; shift + len + ALIGN];
                let at = shift + buf.as_ptr().align_offset(ALIGN);
                for (i, b) in buf[at..at + len].iter_mut().enumerate() {
                    *b = (i % 7) as u8 + 1;
                }
                let mut rest = Vec::new();
                w.write_units(offset, &buf, at, len, &mut rest).unwrap();
                for (o, a, l) in rest {
                    w.write_rest(o, &buf[a..a + l]).unwrap();
                }
                w.finish().unwrap();
                let mut want = old.clone();
                want[offset as usize..offset as usize + len].copy_from_slice(&buf[at..at + len]);
                let mut got = vec![0u8; size];
                dev.read_at(&mut got, 0).unwrap();
                assert!(got == want, "piece {offset}+{len}, shift {shift}");
                // a piece holding a whole unit inside the target went (partly) direct
                let whole = offset.next_multiple_of(4096) + 4096 <= offset + len as u64
                    && offset + len as u64 <= 65536;
                assert!(!whole || check.writes() > 0, "piece {offset}+{len}");
            }
        }
    }

    #[test]
    fn without_a_direct_handle_everything_goes_through_the_page_cache() {
        let dev = MemDev::new(1 << 20, 512);
        let w = DataWriter::new(&dev, None);
        let buf = vec![9u8; 8192];
        let mut rest = Vec::new();
        w.write_units(4096, &buf, 0, 8192, &mut rest).unwrap();
        assert_eq!(rest, vec![(4096, 0, 8192)]);
    }
}
