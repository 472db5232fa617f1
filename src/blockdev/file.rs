//! [`FileDev`]: a block device node or a regular disk-image file.
//!
//! Block devices get their geometry from ioctls (`sys.rs`). Image files have their file size
//! and a sector size chosen by the caller (512 unless told otherwise). Opening a block device
//! for writing uses `O_EXCL`, which Linux fails with EBUSY while the device or one of its
//! partitions is mounted, used as swap, or held by LVM/MD (see open(2), "O_EXCL … block
//! device"). That is the last line of defence against writing to a disk in use.

use super::{check_range, sys, BlockDev, Geometry};
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How to open a [`FileDev`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read-only, shared. Never modifies the device.
    Read,
    /// Read-write. Block devices are opened with `O_EXCL`, so a mounted or held device is
    /// refused with [`Error::Busy`].
    Write,
    /// Read-only with `O_DIRECT`: reads bypass the page cache (read-back verification).
    /// Buffers, offsets and lengths must be aligned to the logical sector size. Filesystems
    /// without `O_DIRECT` (tmpfs) fail the open with EINVAL.
    ReadDirect,
    /// Read-only, but block devices are opened with `O_EXCL`: while the handle lives the
    /// kernel refuses to mount the device or any partition of it, and refuses an exclusive
    /// open of an overlapping device (a clone's source, so that its target cannot be a
    /// partition of it and nothing changes it during the copy). Never modifies the device.
    ReadExclusive,
    /// Read-write with `O_DIRECT`: writes bypass the page cache and report errors at once.
    /// Same alignment rules as [`OpenMode::ReadDirect`]. Without `O_EXCL` (a second `O_EXCL`
    /// open of a device fails with EBUSY): open it only while an [`OpenMode::Write`] handle of
    /// the same device holds the exclusive claim.
    WriteDirect,
}

/// A block device or regular file used as a disk.
#[derive(Debug)]
pub struct FileDev {
    file: File,
    path: PathBuf,
    geometry: Geometry,
    is_block: bool,
    read_only: bool,
}

impl FileDev {
    /// Opens `path` in `mode`. Image files are given 512-byte sectors; see
    /// [`FileDev::open_with_sector_size`].
    pub fn open(path: &Path, mode: OpenMode) -> Result<Self> {
        Self::open_with_sector_size(path, mode, 512)
    }

    /// Opens `path`; `file_sector_size` is used only when `path` is a regular file.
    pub fn open_with_sector_size(
        path: &Path,
        mode: OpenMode,
        file_sector_size: u32,
    ) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("opening", path, e))?;
        let ft = meta.file_type();
        let is_block = ft.is_block_device();
        if !is_block && !ft.is_file() {
            return Err(Error::NotADisk {
                path: path.to_path_buf(),
            });
        }
        let mut opts = OpenOptions::new();
        opts.read(true);
        let writes = matches!(mode, OpenMode::Write | OpenMode::WriteDirect);
        let mut flags = 0;
        if writes {
            opts.write(true);
            if is_block && mode == OpenMode::Write {
                flags |= libc::O_EXCL;
            }
        }
        if is_block && mode == OpenMode::ReadExclusive {
            flags |= libc::O_EXCL;
        }
        if matches!(mode, OpenMode::ReadDirect | OpenMode::WriteDirect) {
            flags |= libc::O_DIRECT;
        }
        opts.custom_flags(flags);
        let file = opts.open(path).map_err(|e| open_error(path, mode, e))?;
        let (geometry, read_only) = if is_block {
            let g = Geometry {
                size_bytes: sys::size_bytes(&file).map_err(|e| Error::io("sizing", path, e))?,
                logical_sector_size: sys::logical_sector_size(&file)
                    .map_err(|e| Error::io("reading the sector size of", path, e))?,
                physical_sector_size: sys::physical_sector_size(&file)
                    .map_err(|e| Error::io("reading the sector size of", path, e))?,
            };
            let ro = sys::is_read_only(&file).map_err(|e| Error::io("querying", path, e))?;
            (g, ro)
        } else {
            (Geometry::new(meta.len(), file_sector_size), false)
        };
        if writes && read_only {
            return Err(Error::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        Ok(FileDev {
            file,
            path: path.to_path_buf(),
            geometry,
            is_block,
            read_only: !writes,
        })
    }

    /// True when the handle is a block device node rather than an image file.
    pub fn is_block_device(&self) -> bool {
        self.is_block
    }

    /// The open file, for ioctls such as [`sys::reread_partitions`].
    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open_error(path: &Path, mode: OpenMode, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EBUSY) => Error::Busy {
            path: path.to_path_buf(),
            reason: "the kernel refused exclusive access; it or one of its partitions is \
                     mounted, used as swap, or held by LVM, RAID or another program"
                .into(),
        },
        Some(libc::EROFS) if mode != OpenMode::Read && mode != OpenMode::ReadDirect => {
            Error::ReadOnly {
                path: path.to_path_buf(),
            }
        }
        // a read-only block device refuses a write open with EACCES, even for root
        Some(libc::EACCES)
            if matches!(mode, OpenMode::Write | OpenMode::WriteDirect)
                && kernel_read_only(path) =>
        {
            Error::ReadOnly {
                path: path.to_path_buf(),
            }
        }
        _ => Error::io("opening", path, e),
    }
}

fn kernel_read_only(path: &Path) -> bool {
    File::open(path)
        .and_then(|f| sys::is_read_only(&f))
        .unwrap_or(false)
}

impl BlockDev for FileDev {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.path, offset, buf.len(), self.geometry.size_bytes)?;
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                offset,
                len: buf.len(),
                source,
            })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
            });
        }
        check_range(&self.path, offset, buf.len(), self.geometry.size_bytes)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| Error::Write {
                path: self.path.clone(),
                offset,
                len: buf.len(),
                source,
            })
    }

    fn will_need(&self, offset: u64, len: u64) {
        // Only a hint: a failure changes nothing but speed.
        let _ = sys::will_need(&self.file, offset, len);
    }

    /// A second handle with `O_DIRECT`; where the filesystem refuses it, the page cache of
    /// the file is dropped (for both handles) and a plain handle reads it.
    fn uncached(&self) -> Result<Option<(Box<dyn BlockDev>, super::ReadbackMethod)>> {
        let ss = self.geometry().logical_sector_size;
        if let Ok(d) = FileDev::open_with_sector_size(&self.path, OpenMode::ReadDirect, ss) {
            return Ok(Some((Box::new(d), super::ReadbackMethod::Direct)));
        }
        let drop = |f: &File| {
            sys::drop_cache(f).map_err(|e| Error::io("dropping the cache of", &self.path, e))
        };
        drop(&self.file)?;
        let d = FileDev::open_with_sector_size(&self.path, OpenMode::Read, ss)?;
        drop(d.file())?;
        Ok(Some((Box::new(d), super::ReadbackMethod::DroppedCache)))
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_file_round_trip() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.as_file().set_len(1 << 20).unwrap();
        let dev = FileDev::open(tmp.path(), OpenMode::Write).unwrap();
        assert_eq!(dev.geometry(), Geometry::new(1 << 20, 512));
        dev.write_at(b"abc", 4095).unwrap();
        let mut buf = [0u8; 3];
        dev.read_at(&mut buf, 4095).unwrap();
        assert_eq!(&buf, b"abc");
        assert!(matches!(
            dev.read_at(&mut buf, (1 << 20) - 2),
            Err(Error::OutOfRange { .. })
        ));
        let ro = FileDev::open(tmp.path(), OpenMode::Read).unwrap();
        assert!(matches!(ro.write_at(b"x", 0), Err(Error::ReadOnly { .. })));
    }

    #[test]
    fn refuses_directories_and_missing_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FileDev::open(dir.path(), OpenMode::Read),
            Err(Error::NotADisk { .. })
        ));
        assert!(matches!(
            FileDev::open(&dir.path().join("nope"), OpenMode::Read),
            Err(Error::Io { op: "opening", .. })
        ));
    }
}
