//! Test doubles: [`FaultyDev`] wraps any [`BlockDev`] and fails reads or writes that touch
//! chosen byte ranges, the way a bad sector or a dying cable would; [`AlignCheckDev`] fails
//! I/O that `O_DIRECT` would refuse.

use super::{BlockDev, Geometry};
use crate::error::{Error, Result};
use std::io;
use std::ops::Range;
use std::path::Path;

/// A [`BlockDev`] whose reads and writes fail with EIO inside given byte ranges.
pub struct FaultyDev<D> {
    inner: D,
    bad_reads: Vec<Range<u64>>,
    bad_writes: Vec<Range<u64>>,
    lost_writes: Vec<Range<u64>>,
}

impl<D: BlockDev> FaultyDev<D> {
    /// Wraps `inner` with no faults.
    pub fn new(inner: D) -> Self {
        FaultyDev {
            inner,
            bad_reads: Vec::new(),
            bad_writes: Vec::new(),
            lost_writes: Vec::new(),
        }
    }

    /// Reads overlapping `range` (bytes) fail with EIO.
    pub fn fail_reads(mut self, range: Range<u64>) -> Self {
        self.bad_reads.push(range);
        self
    }

    /// Writes overlapping `range` (bytes) fail with EIO and write nothing.
    pub fn fail_writes(mut self, range: Range<u64>) -> Self {
        self.bad_writes.push(range);
        self
    }

    /// Writes report success, but the bytes inside `range` keep their old content (a
    /// device that lies, or loses what its cache held).
    pub fn drop_writes(mut self, range: Range<u64>) -> Self {
        self.lost_writes.push(range);
        self
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

fn hits(ranges: &[Range<u64>], offset: u64, len: usize) -> bool {
    let end = offset.saturating_add(len as u64);
    ranges.iter().any(|r| offset < r.end && r.start < end)
}

impl<D: BlockDev> BlockDev for FaultyDev<D> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if hits(&self.bad_reads, offset, buf.len()) {
            return Err(Error::Read {
                path: self.path().to_path_buf(),
                offset,
                len: buf.len(),
                source: io::Error::from_raw_os_error(libc::EIO),
            });
        }
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if hits(&self.bad_writes, offset, buf.len()) {
            return Err(Error::Write {
                path: self.path().to_path_buf(),
                offset,
                len: buf.len(),
                source: io::Error::from_raw_os_error(libc::EIO),
            });
        }
        if !hits(&self.lost_writes, offset, buf.len()) {
            return self.inner.write_at(buf, offset);
        }
        let mut kept = buf.to_vec();
        let end = offset + buf.len() as u64;
        for r in &self.lost_writes {
            let (lo, hi) = (r.start.max(offset), r.end.min(end));
            if lo < hi {
                let at = (lo - offset) as usize..(hi - offset) as usize;
                self.inner.read_at(&mut kept[at], lo)?;
            }
        }
        self.inner.write_at(&kept, offset)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

/// A device that fails every read or write whose offset, length or buffer address is not a
/// multiple of its `unit`, as `O_DIRECT` would (with `EINVAL`), and counts the writes it
/// let through. Wraps another device, which holds the bytes.
pub struct AlignCheckDev<'a> {
    inner: &'a dyn BlockDev,
    unit: u64,
    writes: std::sync::atomic::AtomicUsize,
}

impl<'a> AlignCheckDev<'a> {
    /// Checks I/O to `inner` against `unit` (for example 4096).
    pub fn new(inner: &'a dyn BlockDev, unit: u64) -> Self {
        AlignCheckDev {
            inner,
            unit,
            writes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Writes let through so far.
    pub fn writes(&self) -> usize {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check(&self, offset: u64, len: usize, addr: usize) -> std::result::Result<(), io::Error> {
        let aligned = offset.is_multiple_of(self.unit)
            && (len as u64).is_multiple_of(self.unit)
            && (addr as u64).is_multiple_of(self.unit.min(4096));
        if aligned {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
    }
}

impl BlockDev for AlignCheckDev<'_> {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len(), buf.as_ptr() as usize)
            .map_err(|source| Error::Read {
                path: self.path().to_path_buf(),
                offset,
                len: buf.len(),
                source,
            })?;
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check(offset, buf.len(), buf.as_ptr() as usize)
            .map_err(|source| Error::Write {
                path: self.path().to_path_buf(),
                offset,
                len: buf.len(),
                source,
            })?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.write_at(buf, offset)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    #[test]
    fn faults_hit_only_their_range() {
        let dev = FaultyDev::new(MemDev::new(8192, 512))
            .fail_reads(4096..4608)
            .fail_writes(0..512);
        let mut buf = [0u8; 512];
        dev.read_at(&mut buf, 3584).unwrap();
        dev.read_at(&mut buf, 4608).unwrap();
        match dev.read_at(&mut buf, 4000) {
            Err(Error::Read { offset: 4000, .. }) => {}
            other => panic!("expected a read error, got {other:?}"),
        }
        assert!(matches!(
            dev.write_at(&buf, 100),
            Err(Error::Write { offset: 100, .. })
        ));
        dev.write_at(&buf, 512).unwrap();
    }

    #[test]
    fn lost_writes_keep_the_old_bytes_of_their_range_only() {
        let dev = FaultyDev::new(MemDev::from_vec(vec![7; 4096], 512)).drop_writes(1000..1100);
        dev.write_at(&[1; 2048], 512).unwrap();
        let mut got = vec![0u8; 4096];
        dev.read_at(&mut got, 0).unwrap();
        assert!(got[..512].iter().all(|&b| b == 7));
        assert!(got[512..1000].iter().all(|&b| b == 1));
        assert!(got[1000..1100].iter().all(|&b| b == 7));
        assert!(got[1100..2560].iter().all(|&b| b == 1));
    }
}
