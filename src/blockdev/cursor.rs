//! [`DevCursor`]: a `Read + Write + Seek` view of a [`BlockDev`], so crates that want a stream
//! (gpt, mbrman) can work on any device, including [`super::MemDev`].

use super::BlockDev;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// A seekable stream over a device. Reads past the end return 0 bytes (EOF).
pub struct DevCursor<'a> {
    dev: &'a dyn BlockDev,
    pos: u64,
}

impl<'a> DevCursor<'a> {
    /// A cursor at byte 0 of `dev`.
    pub fn new(dev: &'a dyn BlockDev) -> Self {
        DevCursor { dev, pos: 0 }
    }
}

impl std::fmt::Debug for DevCursor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCursor")
            .field("path", &self.dev.path())
            .field("pos", &self.pos)
            .finish()
    }
}

fn to_io(e: crate::error::Error) -> io::Error {
    io::Error::other(e)
}

impl Read for DevCursor<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.dev.len();
        if self.pos >= size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - self.pos) as usize;
        self.dev.read_at(&mut buf[..n], self.pos).map_err(to_io)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for DevCursor<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.dev.write_at(buf, self.pos).map_err(to_io)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.dev.sync().map_err(to_io)
    }
}

impl Seek for DevCursor<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let base = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.dev.len().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = base.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    #[test]
    fn stream_semantics() {
        let dev = MemDev::new(1024, 512);
        let mut c = DevCursor::new(&dev);
        c.seek(SeekFrom::End(-4)).unwrap();
        c.write_all(b"tail").unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).unwrap(), 0);
        c.seek(SeekFrom::Start(1020)).unwrap();
        let n = c.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"tail");
        assert!(c.seek(SeekFrom::Current(-5000)).is_err());
    }
}
