//! Command-line arguments (clap derive). Only parsing lives here; `cli::run` turns them into
//! library calls.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Lifeboat: smart, verified disk images, restores and clones, from a USB stick or any Linux.
///
/// Lifeboat reads disks directly. Run it as root to see every disk's partitions.
#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every disk with its partitions, filesystems, labels and mount points.
    ///
    /// Disks come from sysfs (/sys/block); each is opened read-only to read its partition
    /// table and filesystems. Nothing is ever written. Problems in a partition table (CRC
    /// errors, overlaps, partitions beyond the end) are shown under the disk.
    ///
    /// Examples:
    ///   lifeboat list
    ///   lifeboat list --json | jq '.[] | {path, model, size_bytes}'
    List {
        /// Print JSON (an array of disks) instead of a table. Field names are stable.
        #[arg(long)]
        json: bool,
        /// Read disks from this sysfs tree instead of /sys (for testing).
        #[arg(long, hide = true, default_value = "/sys")]
        sysfs_root: PathBuf,
    },
    /// Describe one block device or disk-image file: geometry, partition table, filesystems.
    ///
    /// PATH is a whole disk (/dev/sda, /dev/nvme0n1, /dev/loop0), a partition, or a disk-image
    /// file. The device is opened read-only. Table problems are listed as warnings and errors.
    ///
    /// Examples:
    ///   lifeboat inspect /dev/sda
    ///   lifeboat inspect --json disk.img
    ///   lifeboat inspect --sector-size 4096 nvme-4kn.img
    Inspect {
        /// Block device or disk-image file.
        path: PathBuf,
        /// Print JSON (one disk object) instead of a table.
        #[arg(long)]
        json: bool,
        /// Logical sector size assumed for image files (block devices report their own).
        #[arg(long, default_value_t = 512, value_parser = parse_sector_size)]
        sector_size: u32,
    },
}

fn parse_sector_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n @ (512 | 1024 | 2048 | 4096)) => Ok(n),
        _ => Err(format!(
            "{s} is not a sector size (512, 1024, 2048 or 4096)"
        )),
    }
}
