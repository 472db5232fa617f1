//! Reading an image without restoring it, and changing what is read without writing it.
//!
//! - [`ImageSource`]: any chain member seen as a read-only disk, through its index and chain,
//!   with a bounded cache of decoded, hash-checked frames. A damaged chunk fails exactly the
//!   reads it serves; other reads go on.
//! - [`Overlay`]: copy-on-write over any read-only [`BlockDev`](crate::blockdev::BlockDev):
//!   writes land in memory (up to a limit) or in a sparse file, reads see them, and the source
//!   is never written.
//!
//! The exports built on them (FUSE files and mounts, the NBD server, `export`) and later
//! `boot-test` and the shrink for smaller disks all read images through these two pieces.

pub mod devfiles;
mod fuse;
mod loopdev;
pub mod mount;
pub mod nbd;
mod overlay;
mod source;

pub use overlay::{Overlay, OverlayStore, DEFAULT_MEMORY_LIMIT, OVERLAY_BLOCK};
pub use source::{ImageSource, DEFAULT_CACHE_BYTES};
/// A partition of a shared device (an image), owning its reference so that a FUSE file or an
/// export can keep it.
pub type Window = crate::blockdev::Slice<std::sync::Arc<dyn crate::blockdev::BlockDev>>;
