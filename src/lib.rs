//! Lifeboat: a bootable disk-rescue tool. This crate is the silent core; only `main.rs` and
//! `cli/` talk to humans.
//!
//! Architecture map (dependencies point down):
//! ```text
//! main.rs      dispatch only
//! init/        PID 1 of the rescue environment and its modprobe
//! cli/         clap arguments -> job specs, human tables and JSON, the line-mode console
//! rescue       what PID 1 and the consoles it starts agree on (exit codes, log, words)
//! store/       the image store: find and mount it (local filesystems), unmount it
//! inspect      one disk (device or image file) -> DiskReport: table + filesystems + sysfs facts
//! fsmap/       filesystem detection by magic (label, UUID, used bytes)
//! partition/   GPT and MBR: read and validate
//! discovery/   disks and partitions from sysfs and /proc/self/mountinfo
//! blockdev/    trait BlockDev: positional I/O on files, devices, memory, fault injection
//! error, units shared vocabulary
//! ```

pub mod blockdev;
pub mod cli;
pub mod discovery;
pub mod error;
pub mod event;
pub mod fsmap;
pub mod image;
pub mod init;
pub mod inspect;
pub mod jobs;
pub mod partition;
pub mod pipeline;
pub mod rescue;
pub mod resize;
pub mod store;
pub mod tui;
pub mod units;

pub use error::{Error, Result};
