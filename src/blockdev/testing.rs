//! Fault injection for tests: [`FaultyDev`] wraps any [`BlockDev`] and fails reads or writes
//! that touch chosen byte ranges, the way a bad sector or a dying cable would.

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
}

impl<D: BlockDev> FaultyDev<D> {
    /// Wraps `inner` with no faults.
    pub fn new(inner: D) -> Self {
        FaultyDev {
            inner,
            bad_reads: Vec::new(),
            bad_writes: Vec::new(),
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
}
