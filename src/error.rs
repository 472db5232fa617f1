//! The crate's one error type. Variants are named for what the caller can act on
//! (STYLE §3). Display text is lowercase and never repeats its `#[source]`.

use std::io;
use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call on `path` failed outside positional I/O (open, stat, ioctl…).
    #[error("{op} {path}")]
    Io {
        /// Short lowercase gerund naming the operation, e.g. "opening".
        op: &'static str,
        /// The file or device involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading `len` bytes at byte `offset` of `path` failed (bad sector, cable…).
    #[error("read error on {path} at byte {offset} (length {len})")]
    Read {
        /// Device or file.
        path: PathBuf,
        /// Byte offset of the failed read.
        offset: u64,
        /// Length of the failed read in bytes.
        len: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing `len` bytes at byte `offset` of `path` failed (EIO, ENOSPC…).
    #[error("write error on {path} in bytes {offset}..{}", offset + *len as u64)]
    Write {
        /// Device or file.
        path: PathBuf,
        /// Byte offset of the failed write.
        offset: u64,
        /// Length of the failed write in bytes.
        len: usize,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file reached the largest size allowed (EFBIG): the process's file size limit or the
    /// filesystem's largest file. `why` says which, and what to do.
    #[error("{path} cannot grow past {at} bytes: {why}")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size when the write failed.
        at: u64,
        /// Which limit, and what to do.
        why: String,
    },
    /// An access reached past the end of a device.
    #[error("{path}: access of {len} bytes at byte {offset} is beyond the end ({size} bytes)")]
    OutOfRange {
        /// Device or file.
        path: PathBuf,
        /// Requested byte offset.
        offset: u64,
        /// Requested length in bytes.
        len: u64,
        /// The device's size in bytes.
        size: u64,
    },
    /// The device is mounted, held by another driver (LVM, RAID, swap) or opened exclusively.
    #[error("{path} is busy: {reason}")]
    Busy {
        /// The device.
        path: PathBuf,
        /// Why, in words a user understands.
        reason: String,
    },
    /// The device or file cannot be written.
    #[error("{path} is read-only")]
    ReadOnly {
        /// The device or file.
        path: PathBuf,
    },
    /// The path is neither a block device nor a regular file.
    #[error("{path} is not a block device or a disk-image file")]
    NotADisk {
        /// The offending path.
        path: PathBuf,
    },
    /// A capability that is not built yet. Never faked (README "real or absent").
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A filesystem's structures are damaged or inconsistent where a reader needed them
    /// (`fsmap::files`); the source names the filesystem and what is wrong.
    #[error("damaged filesystem")]
    Filesystem(#[source] crate::fsmap::MapError),
    /// An image file is damaged, truncated, of another version, or not an image.
    #[error("image {path}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// What is wrong and where.
        #[source]
        source: crate::image::FormatError,
    },
    /// An image chain cannot be used: a parent is missing, replaced, modified, damaged, or
    /// the chain loops. `image` is the member whose link failed.
    #[error("image chain broken at {image}: {reason}")]
    Chain {
        /// The image whose parent link failed.
        image: PathBuf,
        /// What is wrong, naming the files involved.
        reason: String,
        /// The underlying error, when a parent could not be read.
        #[source]
        source: Option<Box<Error>>,
    },
    /// The partition table could not be read at all.
    #[error("partition table of {path}")]
    Table {
        /// The disk.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: crate::partition::TableError,
    },
    /// A destructive job refuses this target (or source) for a reason the user can fix.
    #[error("refusing {path}: {reason}")]
    Refused {
        /// The disk, partition or file refused.
        path: PathBuf,
        /// Why, in words a user understands.
        reason: String,
    },
    /// The target cannot hold what must be written.
    #[error("{path} is too small: need at least {need} bytes, it has {have}; {why}")]
    TooSmall {
        /// The target.
        path: PathBuf,
        /// Bytes needed.
        need: u64,
        /// Bytes available.
        have: u64,
        /// How much is missing and what is in the way.
        why: String,
    },
    /// The copy is complete, but growing the last filesystem failed.
    #[error("{path}: the copy is complete{}, but growing the filesystem of partition {partition} failed (the partition itself was grown); check it with fsck before use", if *verified { " and verified" } else { "" })]
    GrowFailed {
        /// The target disk.
        path: PathBuf,
        /// The grown partition.
        partition: u32,
        /// Whether the copy was read back.
        verified: bool,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// An external tool (resize2fs, ntfsresize, losetup…) failed or could not be run.
    #[error("{tool} failed on {path}: {detail}")]
    Tool {
        /// The tool and its arguments.
        tool: String,
        /// The device it ran on.
        path: PathBuf,
        /// Its exit code and last lines of output, or why it could not start.
        detail: String,
    },
    /// Data read back from a target differs from what was written.
    #[error("verification failed on {path}: bytes {offset}..{end} read back differ from what was written")]
    VerifyMismatch {
        /// The target.
        path: PathBuf,
        /// First byte of the mismatching range.
        offset: u64,
        /// End (exclusive) of the mismatching range.
        end: u64,
    },
    /// The user or a signal cancelled the job.
    #[error("cancelled")]
    Cancelled,
    /// An encrypted image, and nothing to unlock it with: no passphrase given, and no
    /// terminal to ask on.
    #[error("{path} is encrypted: give its passphrase with --key-file FILE, or run on a terminal to be asked")]
    KeyNeeded {
        /// The image.
        path: PathBuf,
    },
    /// An encrypted image that no passphrase or recovery key given opens.
    #[error("wrong passphrase or key file for {path}: no key slot of the image opens with it")]
    WrongKey {
        /// The image.
        path: PathBuf,
    },
}

impl Error {
    /// Wraps an `io::Error` from a non-positional operation.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// An error and its causes, outermost first: the one walk of a cause chain that every face
/// formats from.
pub fn causes(e: &dyn std::error::Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push(c.to_string());
        cur = c.source();
    }
    out
}

/// An error and all its causes on one line, joined by ": ".
pub fn with_causes(e: &dyn std::error::Error) -> String {
    causes(e).join(": ")
}
