//! Filesystems: detection by magic (this issue) and, later, used-block maps.

pub mod detect;
pub mod ext;
pub mod fat;

pub use detect::{detect, FsInfo, FsKind};
