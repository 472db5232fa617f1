//! The I/O seam: every byte Lifeboat reads from or writes to a disk goes through [`BlockDev`].
//!
//! Implementations: [`FileDev`] (block devices and disk-image files), [`MemDev`] (RAM, for
//! tests and dry runs), [`testing::FaultyDev`] (fault injection). Offsets and lengths are in
//! bytes. Reads and writes are positional and all-or-nothing: a short read is an error, never
//! a silent partial buffer. A `BlockDev` is `Send + Sync` so pipeline threads can share one.

mod file;
mod mem;
mod slice;
pub mod sys;
pub mod testing;
pub mod timed;

pub use file::{FileDev, OpenMode};
pub use mem::MemDev;
pub use slice::Slice;

use crate::error::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// Size and sector sizes of a device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Geometry {
    /// Total size in bytes.
    pub size_bytes: u64,
    /// Logical sector size (the unit of LBAs in partition tables): 512 or 4096.
    pub logical_sector_size: u32,
    /// Physical sector size: the device's atomic write unit.
    pub physical_sector_size: u32,
}

impl Geometry {
    /// A geometry with equal logical and physical sector sizes.
    pub fn new(size_bytes: u64, sector_size: u32) -> Self {
        Geometry {
            size_bytes,
            logical_sector_size: sector_size,
            physical_sector_size: sector_size,
        }
    }
}

/// How a read-back avoided reading what was just written from a cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReadbackMethod {
    /// A second handle opened with `O_DIRECT`.
    #[serde(rename = "O_DIRECT")]
    Direct,
    /// The page cache of the device was dropped before reading.
    #[serde(rename = "dropped page cache")]
    DroppedCache,
    /// The device has no cache (memory).
    #[serde(rename = "no cache")]
    NoCache,
    /// Nothing was read back (`--no-verify`).
    #[serde(rename = "none")]
    None,
}

impl ReadbackMethod {
    /// The words the summaries use.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadbackMethod::Direct => "O_DIRECT",
            ReadbackMethod::DroppedCache => "dropped page cache",
            ReadbackMethod::NoCache => "no cache",
            ReadbackMethod::None => "none",
        }
    }
}

words!(ReadbackMethod);

/// A byte-addressable disk. All methods are positional; there is no shared cursor.
pub trait BlockDev: Send + Sync {
    /// The device's geometry. Constant for the lifetime of the handle.
    fn geometry(&self) -> Geometry;
    /// The path shown in errors and output (`"<memory>"` for RAM devices).
    fn path(&self) -> &Path;
    /// Fills `buf` from byte `offset`. Fails with [`Error::OutOfRange`] past the end and with
    /// [`Error::Read`] (carrying the offset) on an I/O error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Writes all of `buf` at byte `offset`. Fails with [`Error::OutOfRange`] past the end,
    /// [`Error::ReadOnly`] on a read-only handle and [`Error::Write`] on an I/O error.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    /// Makes every completed write durable (fsync).
    fn sync(&self) -> Result<()>;

    /// Hints that `len` bytes at `offset` will be read soon, so the kernel can start reading
    /// them in the background. A no-op unless the device has a page cache to fill.
    fn will_need(&self, _offset: u64, _len: u64) {}

    /// A handle that reads what is on the medium rather than what a cache holds, for
    /// read-back verification, and how it bypasses the cache. `None`: this device has no
    /// cache, so reading it directly is the read-back (memory devices, test wrappers).
    fn uncached(&self) -> Result<Option<(Box<dyn BlockDev>, ReadbackMethod)>> {
        Ok(None)
    }

    /// Size in bytes; shorthand for `geometry().size_bytes`.
    fn len(&self) -> u64 {
        self.geometry().size_bytes
    }
    /// True for a zero-length device.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks that `len` bytes at `offset` lie inside a device of `size` bytes.
pub(crate) fn check_range(path: &Path, offset: u64, len: usize, size: u64) -> Result<()> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange {
            path: path.to_path_buf(),
            offset,
            len,
            size,
        }),
    }
}

/// Reads `len` bytes at `offset` into a new vector.
pub fn read_vec(dev: &dyn BlockDev, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    dev.read_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads up to `len` bytes at `offset`, clamped to the device's end. Used by probes that look
/// at a fixed window which may be larger than a tiny device.
pub fn read_clamped(dev: &dyn BlockDev, offset: u64, len: usize) -> Result<Vec<u8>> {
    let size = dev.len();
    if offset >= size {
        return Ok(Vec::new());
    }
    let avail = usize::try_from(size - offset).unwrap_or(usize::MAX);
    read_vec(dev, offset, len.min(avail))
}

/// Narrows a failed chunk read down to the first unreadable sector, so the error names the
/// exact byte offset of the bad sector rather than the chunk.
pub fn narrow_read_error(dev: &dyn BlockDev, off: u64, len: u32, first: Error) -> Error {
    if !matches!(first, Error::Read { .. }) {
        return first;
    }
    let ss = u64::from(dev.geometry().logical_sector_size.max(512));
    let end = off + u64::from(len);
    // aligned, so that an O_DIRECT handle can be narrowed down too
    let mut backing = Vec::new();
    let buf = aligned(&mut backing, 64 << 10);
    let mut pos = off;
    while pos < end {
        let step = (64u64 << 10).min(end - pos);
        if dev.read_at(&mut buf[..step as usize], pos).is_ok() {
            pos += step;
            continue;
        }
        let mut s = pos;
        while s < pos + step {
            let n = ss.min(pos + step - s) as usize;
            if let Err(e) = dev.read_at(&mut buf[..n], s) {
                return e;
            }
            s += n as u64;
        }
        pos += step;
    }
    first
}

/// A buffer of `len` bytes starting at an address aligned to 4096, for `O_DIRECT`: `buf` is
/// grown to hold it (never shrunk, so a reused buffer is not cleared again) and the aligned
/// slice is returned.
pub fn aligned(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    const ALIGN: usize = 4096;
    if buf.len() < len + ALIGN {
        buf.resize(len + ALIGN, 0);
    }
    let skip = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
    &mut buf[skip..skip + len]
}
