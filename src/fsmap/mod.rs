//! Filesystems: detection by magic (this issue) and, later, used-block maps.

pub mod detect;
pub mod ext;
pub mod fat;
pub mod ntfs;

pub use detect::{detect, FsInfo, FsKind};
