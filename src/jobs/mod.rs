//! Jobs: `Spec -> plan() -> run(plan, reporter, cancel)` (DESIGN §3). A plan is pure,
//! printable and serializable (`--dry-run` shows it); `run` executes it and reports through
//! [`Reporter`] events only.

pub mod chain;
pub mod clone;
pub mod events;
pub mod image;
pub mod merge;
pub mod restore;
pub mod safety;
pub(crate) mod target;
pub mod verify;

pub use events::{CancelToken, Event, Phase, Reporter};
