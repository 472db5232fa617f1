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
    /// The line-mode rescue console that the boot environment shows: disks, the image store,
    /// and every lifeboat command at a prompt. Type help inside it.
    Console,
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
    /// Image a whole disk into one compressed, checksummed file, copying only used blocks.
    ///
    /// SOURCE is a disk (/dev/sda, /dev/nvme0n1) or a disk-image file. The partition table and
    /// everything outside partitions that boot loaders use (MBR boot code, the gap before the
    /// first partition, both GPT copies) are copied whole. Inside partitions only the blocks
    /// that ext2/3/4, FAT12/16/32 and NTFS mark used are read; other filesystems, and damaged,
    /// dirty or hibernated ones (Windows Fast Startup), are copied block by block with all-zero
    /// chunks left out, and a warning says why. Chunks are compressed with zstd on every core
    /// and hashed with blake3. The image is written as FILE.partial,
    /// read back and verified, and only then renamed to FILE. The source is only ever read.
    ///
    /// Examples:
    ///   lifeboat image /dev/sda -o /mnt/usb/laptop.lbi
    ///   lifeboat image /dev/nvme0n1 -o backup.lbi --partitions 1,2 --level 6
    ///   lifeboat image disk.img -o disk.lbi --dry-run
    #[command(verbatim_doc_comment)]
    Image {
        /// Disk or disk-image file to read.
        source: PathBuf,
        /// The image file to create (refused if it exists).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Image only these partitions (numbers as `lifeboat inspect` shows them); the table
        /// and boot areas are always included.
        #[arg(long, value_delimiter = ',', value_name = "N,M")]
        partitions: Option<Vec<u32>>,
        /// zstd compression level, 1 (fastest) to 19 (smallest).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
        level: i32,
        /// Compression threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Print the plan (regions, filesystems, what will be copied) and stop.
        #[arg(long)]
        dry_run: bool,
        /// Print events as JSON lines (NDJSON) on stdout instead of a progress line.
        #[arg(long)]
        json: bool,
        /// Logical sector size assumed for a disk-image file source.
        #[arg(long, default_value_t = 512, value_parser = parse_sector_size)]
        sector_size: u32,
    },
    /// Check every chunk and structure of an image file.
    ///
    /// Re-reads and re-hashes every chunk and checks the header, index, metadata and footer
    /// checksums and the root hash. Exit status 0 means the image is intact; 1 means it is
    /// not, and the message names the chunk, the file offset, the disk range and the
    /// partition it belongs to.
    ///
    /// Examples:
    ///   lifeboat verify laptop.lbi
    ///   lifeboat verify --json laptop.lbi
    #[command(verbatim_doc_comment)]
    Verify {
        /// The image file.
        file: PathBuf,
        /// Print events as JSON lines (NDJSON) on stdout.
        #[arg(long)]
        json: bool,
        /// Decompression threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Show what an image holds: source disk, partition table, filesystems, sizes, hashes.
    ///
    /// Reads the header, metadata, index and footer (all checksummed) but not the chunk data;
    /// use `lifeboat verify` for that.
    ///
    /// Examples:
    ///   lifeboat info laptop.lbi
    ///   lifeboat info --json laptop.lbi | jq .meta.regions
    #[command(verbatim_doc_comment)]
    Info {
        /// The image file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write an image back onto a disk or into a disk-image file. Destroys the target's data.
    ///
    /// TARGET is a disk (/dev/sdb) or a disk-image file, created with the source's size if it
    /// does not exist. The target may be the same size as the imaged disk, larger (a GPT's
    /// backup copy is moved to the new end), or smaller if every partition still fits (the
    /// exact size needed is printed otherwise). Every chunk is checked against its hash before
    /// it is written, the partition table and first MiB are written last, and everything
    /// written is read back from the disk (not the cache) and compared. Mounted or busy
    /// disks, the disk holding the image, and read-only disks are refused.
    ///
    /// The plan is printed first. Writing needs --yes, or typing the target's path at the
    /// prompt on a terminal.
    ///
    /// Examples:
    ///   lifeboat restore laptop.lbi /dev/sdb --dry-run
    ///   lifeboat restore laptop.lbi /dev/sdb
    ///   lifeboat restore laptop.lbi restored.img --yes
    #[command(verbatim_doc_comment)]
    Restore {
        /// The image file.
        file: PathBuf,
        /// Disk or disk-image file to overwrite.
        target: PathBuf,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Print the plan and stop.
        #[arg(long)]
        dry_run: bool,
        /// Skip the read-back verification (not recommended).
        #[arg(long)]
        no_verify: bool,
        /// Print events as JSON lines (NDJSON) on stdout. Requires --yes or --dry-run.
        #[arg(long)]
        json: bool,
        /// Decompression threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
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
