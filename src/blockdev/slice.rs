//! [`Slice`]: a byte window of another device, e.g. one partition of a disk, seen as a device
//! of its own. Offsets are relative to the window's start; nothing outside it can be touched.
//! It borrows the device (`Slice<&dyn BlockDev>`, for a survey) or shares it
//! (`Slice<Arc<dyn BlockDev>>`, for a partition file that outlives the code that made it).

use super::{check_range, BlockDev, Geometry};
use crate::error::Result;
use std::ops::Deref;
use std::path::Path;

/// `len` bytes of the device `dev` points to, starting at byte `start`.
#[derive(Clone)]
pub struct Slice<D> {
    dev: D,
    start: u64,
    len: u64,
}

impl<D: Deref> std::fmt::Debug for Slice<D>
where
    D::Target: BlockDev,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slice")
            .field("dev", &self.dev.path())
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl<D: Deref> Slice<D>
where
    D::Target: BlockDev,
{
    /// A window of `len` bytes at byte `start` of `dev`. The window is clamped to the device's
    /// end, so a partition entry that overruns the disk cannot cause reads past it.
    pub fn new(dev: D, start: u64, len: u64) -> Self {
        let size = dev.len();
        let start = start.min(size);
        let len = len.min(size - start);
        Slice { dev, start, len }
    }

    /// Byte offset of the window in the underlying device.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl<D: Deref + Send + Sync> BlockDev for Slice<D>
where
    D::Target: BlockDev,
{
    fn geometry(&self) -> Geometry {
        Geometry {
            size_bytes: self.len,
            ..self.dev.geometry()
        }
    }

    fn path(&self) -> &Path {
        self.dev.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.path(), offset, buf.len(), self.len)?;
        self.dev.read_at(buf, self.start + offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(self.path(), offset, buf.len(), self.len)?;
        self.dev.write_at(buf, self.start + offset)
    }

    fn sync(&self) -> Result<()> {
        self.dev.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;
    use crate::error::Error;

    #[test]
    fn window_is_bounded_and_clamped() {
        let dev = MemDev::new(4096, 512);
        let s = Slice::new(&dev, 1024, 1024);
        s.write_at(b"x", 1023).unwrap();
        assert!(matches!(
            s.write_at(b"xy", 1023),
            Err(Error::OutOfRange { .. })
        ));
        let mut b = [0u8; 1];
        dev.read_at(&mut b, 2047).unwrap();
        assert_eq!(&b, b"x");
        assert_eq!(Slice::new(&dev, 3072, 1 << 30).len(), 1024);
        assert_eq!(Slice::new(&dev, 1 << 40, 10).len(), 0);
    }
}
