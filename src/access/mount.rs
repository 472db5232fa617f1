//! Mounting an image: its disk and partitions as files (FUSE), and each partition's
//! filesystem mounted read-only (or through an overlay) under a directory.
//!
//! Layout under the mount directory `DIR`:
//! - `DIR/raw/disk`, `DIR/raw/p1`, `DIR/raw/p2`, …: the whole disk and each partition as
//!   files (a FUSE mount on `DIR/raw`);
//! - `DIR/p1`, `DIR/p2`, …: each partition's filesystem, where it could be mounted.
//!
//! SKELETON: the API below is the contract the CLI (`mount`, `umount`, `get`) and the menu
//! ("Browse an image") build on; the implementation is in progress and every entry point
//! returns [`Error::Unsupported`] until it lands.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Mount read-write through a memory overlay: changes are visible and thrown away at
    /// unmount. The image is never written.
    pub read_write: bool,
    /// Bytes of decoded frames the image source keeps.
    pub cache_bytes: u64,
    /// Bytes the overlay may hold (with `read_write`, and for journal replay).
    pub overlay_limit: u64,
    /// Folders to look for the image's ancestors in, after its own folder.
    pub search: Vec<PathBuf>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_write: false,
            cache_bytes: super::DEFAULT_CACHE_BYTES,
            overlay_limit: super::DEFAULT_MEMORY_LIMIT,
            search: Vec::new(),
        }
    }
}

/// One partition of a mounted image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedPart {
    /// `p1`, `p2`, … (the partition number in the table).
    pub name: String,
    /// Partition number.
    pub number: u32,
    /// Filesystem found (`ext4`, `vfat`, `ntfs`, …), if any.
    pub fs: Option<String>,
    /// Filesystem label, if any.
    pub label: Option<String>,
    /// Partition size in bytes.
    pub size_bytes: u64,
    /// The partition as a file (`DIR/raw/pN`).
    pub raw: PathBuf,
    /// Where its filesystem is mounted (`DIR/pN`), or `None` when it could not be.
    pub dir: Option<PathBuf>,
    /// Why it is not mounted (unknown filesystem, no driver, mount error…).
    pub reason: Option<String>,
}

/// What a mount made, as `mount --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountReport {
    /// The image (chain member) mounted.
    pub image: PathBuf,
    /// The mount directory.
    pub dir: PathBuf,
    /// The whole disk as a file (`DIR/raw/disk`).
    pub disk: PathBuf,
    /// Partitions, in table order.
    pub parts: Vec<MountedPart>,
    /// Mounted through an overlay (changes thrown away at unmount).
    pub read_write: bool,
}

/// A live mount. Dropping it (or [`MountSession::close`]) removes every mount, loop device
/// and FUSE mount it made.
#[derive(Debug)]
pub struct MountSession {
    report: MountReport,
}

impl MountSession {
    /// Mounts `image` under `dir` (which must be an empty directory).
    pub fn open(image: &Path, dir: &Path, opts: &MountOptions) -> Result<Self> {
        let _ = (image, dir, opts);
        Err(Error::Unsupported("mounting an image is not built yet".into()))
    }

    /// What was mounted where.
    pub fn report(&self) -> &MountReport {
        &self.report
    }

    /// Unmounts everything, reporting the first failure.
    pub fn close(self) -> Result<()> {
        Err(Error::Unsupported("mounting an image is not built yet".into()))
    }
}

/// Removes what a mount made under `dir`, whether its server still runs or was killed.
pub fn unmount(dir: &Path) -> Result<()> {
    let _ = dir;
    Err(Error::Unsupported("mounting an image is not built yet".into()))
}
