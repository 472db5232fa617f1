//! Lifeboat: a bootable disk-rescue tool. This crate is the silent core plus its three faces;
//! only `main.rs`, `cli/`, `tui/` and `init/` talk to humans.
//!
//! Architecture map (dependencies point down):
//! ```text
//! main.rs      dispatch and exit codes only: the only place the process exits
//! cli/ tui/ init/   the faces: clap arguments -> job specs with one file per command and the
//!              line-mode console, the menu (one module per screen), PID 1 of the rescue
//!              environment with its modprobe
//! rescue       what PID 1 and the consoles it starts agree on (exit codes, log, words)
//! jobs/        image, restore, clone, verify, merge: Spec -> plan() -> run(plan, reporter,
//!              cancel); run.rs is the one runner every face starts jobs with (typed Finished);
//!              survey.rs maps a disk into regions and extents (image, clone; later shrink,
//!              rescue); target.rs writes data, reads it back, then the tables
//! store/       the image store: find and mount it (local filesystems), unmount it; network
//!              stores come next
//! net/         the network: interfaces, DHCP (udhcpc), static addresses, wait_online; used by
//!              network stores and the faces
//! inspect      one disk (device or image file) -> DiskReport: table + filesystems + sysfs facts
//! resize       growing filesystems after a restore or clone
//! pipeline/    threaded read -> work -> ordered write, bounded, first error wins
//! image/       the file format (mod.rs is the spec): meta (typed metadata), encode (chunks),
//!              writer, reader, chain
//! fsmap/       filesystems: detection by magic and used-block maps, one module per filesystem
//! partition/   GPT and MBR: read, validate, plan and patch layouts
//! discovery/   disks and partitions from sysfs and /proc/self/mountinfo
//! blockdev/    trait BlockDev: positional I/O on files, devices, memory, fault injection;
//!              the block ioctls (through nix)
//! event        Event, Reporter, CancelToken: what every layer reports through
//! bytes        bounds-checked little/big-endian readers for hostile on-disk bytes
//! error, units shared vocabulary
//! ```

/// `Display` for a word-valued enum through its `as_str` (padding honoured, so tables can
/// align it), and `== "word"` comparisons: the one impl of each for every such enum.
macro_rules! words {
    ($($t:ty),+ $(,)?) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }
        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    )+};
}

pub mod access;
pub mod blockdev;
pub mod boottest;
pub mod bytes;
pub mod cli;
pub mod discovery;
pub mod error;
pub mod event;
pub mod fsmap;
pub mod image;
pub mod init;
pub mod inspect;
pub mod jobs;
pub mod net;
pub mod partition;
pub mod pipeline;
pub mod rescue;
pub mod resize;
pub mod store;
pub mod tui;
pub mod units;

pub use error::{Error, Result};
