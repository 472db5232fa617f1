//! [`MemDev`]: a disk held in RAM, for tests and dry runs.

use super::{check_range, BlockDev, Geometry};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// A RAM-backed [`BlockDev`] with a fixed size and sector size.
#[derive(Debug)]
pub struct MemDev {
    data: RwLock<Vec<u8>>,
    geometry: Geometry,
    path: PathBuf,
    read_only: bool,
}

impl MemDev {
    /// A zero-filled device of `size_bytes` with `sector_size`-byte sectors.
    pub fn new(size_bytes: usize, sector_size: u32) -> Self {
        Self::from_vec(vec![0; size_bytes], sector_size)
    }

    /// A device holding `data`.
    pub fn from_vec(data: Vec<u8>, sector_size: u32) -> Self {
        MemDev {
            geometry: Geometry::new(data.len() as u64, sector_size),
            data: RwLock::new(data),
            path: PathBuf::from("<memory>"),
            read_only: false,
        }
    }

    /// Makes every later write fail with [`Error::ReadOnly`].
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// A copy of the whole contents.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data.read().map(|d| d.clone()).unwrap_or_default()
    }
}

impl BlockDev for MemDev {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.path, offset, buf.len(), self.geometry.size_bytes)?;
        let data = self.data.read().map_err(|_| poisoned(&self.path))?;
        // in range: checked above, and size_bytes == data.len()
        let start = offset as usize;
        buf.copy_from_slice(&data[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        check_range(&self.path, offset, buf.len(), self.geometry.size_bytes)?;
        let mut data = self.data.write().map_err(|_| poisoned(&self.path))?;
        let start = offset as usize;
        data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

fn poisoned(path: &Path) -> Error {
    Error::io(
        "locking",
        path,
        std::io::Error::other("memory device lock poisoned"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let dev = MemDev::new(4096, 512);
        dev.write_at(b"hello", 510).unwrap();
        let mut buf = [0u8; 5];
        dev.read_at(&mut buf, 510).unwrap();
        assert_eq!(&buf, b"hello");
        assert!(matches!(
            dev.read_at(&mut buf, 4092),
            Err(Error::OutOfRange { offset: 4092, .. })
        ));
        assert!(matches!(
            dev.write_at(&buf, u64::MAX),
            Err(Error::OutOfRange { .. })
        ));
        let ro = MemDev::new(512, 512).read_only();
        assert!(matches!(ro.write_at(b"x", 0), Err(Error::ReadOnly { .. })));
    }
}
