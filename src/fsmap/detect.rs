//! Filesystem detection by on-disk magic. PLACEHOLDER: being written.

use crate::blockdev::BlockDev;
use crate::error::Result;
use serde::Serialize;

/// A recognised filesystem or volume format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FsKind {
    /// ext2
    Ext2,
}

impl FsKind {
    /// The name blkid uses for TYPE=.
    pub fn blkid_name(self) -> &'static str {
        "ext2"
    }
}

/// What detection found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsInfo {
    /// The format.
    pub kind: FsKind,
    /// Volume label.
    pub label: Option<String>,
    /// UUID formatted as blkid prints it.
    pub uuid: Option<String>,
    /// Bytes in use according to the superblock, where cheap.
    pub used_bytes: Option<u64>,
}

/// Detects the filesystem on `dev`.
pub fn detect(_dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    Ok(None)
}
