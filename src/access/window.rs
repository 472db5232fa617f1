//! [`Window`]: a byte window of a shared device (one partition of an image), owning its
//! reference so it can outlive the code that made it (a FUSE file, a served export). Offsets
//! are relative to the window's start; nothing outside it can be read or written.

use crate::blockdev::{check_range, BlockDev, Geometry};
use crate::error::Result;
use std::path::Path;
use std::sync::Arc;

/// `len` bytes of a shared device starting at byte `start`.
#[derive(Clone)]
pub struct Window {
    dev: Arc<dyn BlockDev>,
    start: u64,
    len: u64,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window")
            .field("dev", &self.dev.path())
            .field("start", &self.start)
            .field("len", &self.len)
            .finish()
    }
}

impl Window {
    /// A window of `len` bytes at byte `start` of `dev`, clamped to the device's end (a
    /// partition entry that overruns the disk cannot reach past it).
    pub fn new(dev: Arc<dyn BlockDev>, start: u64, len: u64) -> Self {
        let size = dev.len();
        let start = start.min(size);
        let len = len.min(size - start);
        Window { dev, start, len }
    }

    /// The whole device.
    pub fn whole(dev: Arc<dyn BlockDev>) -> Self {
        let len = dev.len();
        Window { dev, start: 0, len }
    }

    /// Byte offset of the window in the underlying device.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl BlockDev for Window {
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
        let dev: Arc<dyn BlockDev> = Arc::new(MemDev::new(4096, 512));
        let w = Window::new(dev.clone(), 1024, 1024);
        w.write_at(b"x", 1023).unwrap();
        assert!(matches!(
            w.write_at(b"xy", 1023),
            Err(Error::OutOfRange { .. })
        ));
        let mut b = [0u8; 1];
        dev.read_at(&mut b, 2047).unwrap();
        assert_eq!(&b, b"x");
        assert_eq!(Window::new(dev.clone(), 3072, 1 << 30).len(), 1024);
        assert_eq!(Window::new(dev.clone(), 1 << 40, 10).len(), 0);
        assert_eq!(Window::whole(dev).len(), 4096);
    }
}
