//! Jobs: `Spec -> plan() -> run(plan, reporter, cancel)` (DESIGN §3). A plan is pure,
//! printable and serializable (`--dry-run` shows it); `run` executes it and reports through
//! [`Reporter`] events only. Every face starts a planned job the same way: [`run::spawn`]
//! (or [`run::run`] on the calling thread), which ends the job's event stream with exactly one
//! `Finished` event carrying the typed [`Summary`].

pub mod chain;
pub mod clone;
pub mod copy_out;
pub mod export;
pub mod fit;
pub mod image;
pub mod keys;
pub mod merge;
mod readback;
pub mod restore;
pub mod run;
pub mod safety;
pub mod survey;
pub mod target;
pub mod verify;
mod writer;

pub use crate::event::{CancelToken, JobError, Phase, Reporter};
pub use run::{Event, Job, Summary};
pub use target::{SizeChange, TargetKind, TargetPlan};

/// Worker threads when the user names none: 0 means one per core.
pub const DEFAULT_THREADS: usize = 0;
/// Logical sector size assumed for a disk-image file, which, unlike a block device, does not
/// report one.
pub const DEFAULT_FILE_SECTOR_SIZE: u32 = 512;
