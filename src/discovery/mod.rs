//! Disks and partitions of the running system, read from sysfs, `/proc/self/mountinfo` and
//! `/proc/swaps`, with no libudev (it has no static library; DESIGN §5).
//!
//! Owns: the list of disks ([`scan`]), their identity and geometry, their partitions, and who
//! uses them (mounts, swap, holders, boot medium; see [`DiskInfo::is_busy`]). Every path comes
//! from [`SystemPaths`], so tests run on fake trees in a temp dir.
//!
//! Units: all sizes and offsets are bytes. sysfs `size`/`start` are converted from their fixed
//! 512-byte units, whatever the logical sector size.
//!
//! Layout: `sysfs` parses `<sys>/block`; [`mountinfo`] is the pure text parser for mountinfo and
//! swaps; `busy` matches mounts, swap and holders to disks and finds the boot medium (its rule:
//! the device under `/`; else the one mounted at [`LIFEBOAT_BOOT_MOUNT`]; else any `iso9660`
//! mount; plus every disk beneath those through `holders/`).
//!
//! A scan is a snapshot: nothing here watches for hotplug or keeps files open.

mod busy;
pub mod mountinfo;
mod sysfs;
#[cfg(test)]
mod tests;

pub use busy::LIFEBOAT_BOOT_MOUNT;

use crate::error::{Error, Result};
use serde::Serialize;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where the kernel's views live. [`Default`] gives the real paths; tests point them into a
/// temp dir.
#[derive(Debug, Clone)]
pub struct SystemPaths {
    /// sysfs root, normally `/sys`.
    pub sys: PathBuf,
    /// Device directory, normally `/dev`. Device paths in [`DiskInfo`] are built under it.
    pub dev: PathBuf,
    /// Mount table, normally `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// Active swap areas, normally `/proc/swaps`.
    pub swaps: PathBuf,
}

impl Default for SystemPaths {
    fn default() -> Self {
        SystemPaths {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            mountinfo: PathBuf::from("/proc/self/mountinfo"),
            swaps: PathBuf::from("/proc/swaps"),
        }
    }
}

/// The bus a disk hangs off, from its sysfs device path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// ATA: SATA, and PATA/IDE too.
    Sata,
    /// SCSI or SAS, or anything behind a SCSI host that is not ATA or USB.
    Scsi,
    /// NVMe namespace.
    Nvme,
    /// virtio-blk (and virtio-scsi, whose path runs through the virtio device).
    Virtio,
    /// USB mass storage (including UAS and USB-attached NVMe enclosures).
    Usb,
    /// SD/MMC/eMMC.
    Mmc,
    /// Loop device backed by a file.
    Loop,
    /// Anything else, including dm-* and md* virtual devices.
    Unknown,
}

/// One whole disk from `<sys>/block`, with its partitions and who uses them.
#[derive(Debug, Clone, Serialize)]
pub struct DiskInfo {
    /// Kernel name, e.g. `"sda"`, `"nvme0n1"`, `"dm-0"`.
    pub name: String,
    /// `<dev>/<name>` (sysfs `!` becomes `/`, e.g. `cciss/c0d0`).
    pub dev_path: PathBuf,
    /// Device major number; 0 when sysfs `dev` was unreadable (never matches a lookup).
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Size in bytes (sysfs `size` × 512).
    pub size_bytes: u64,
    /// Logical sector size in bytes (`queue/logical_block_size`, default 512).
    pub logical_sector_size: u32,
    /// Physical sector size in bytes (`queue/physical_block_size`, default the logical size).
    pub physical_sector_size: u32,
    /// Model string, trimmed; `None` when unknown or empty.
    pub model: Option<String>,
    /// Serial number, trimmed; `None` when unknown or empty. For ATA without VPD page 0x80 this
    /// is the raw `wwid` (e.g. `t10.ATA     <model> <serial>` or `naa.…`).
    pub serial: Option<String>,
    /// Vendor string (SCSI INQUIRY vendor, USB manufacturer), trimmed.
    pub vendor: Option<String>,
    /// The bus.
    pub transport: Transport,
    /// sysfs `removable` (removable media, not "hot-pluggable": USB sticks often say false).
    pub removable: bool,
    /// `queue/rotational`; false when unknown.
    pub rotational: bool,
    /// sysfs `ro`: the kernel refuses writes.
    pub read_only: bool,
    /// Names in `holders/` of the whole disk (e.g. `dm-0` when the disk is an LVM PV).
    pub holders: Vec<String>,
    /// `loop/backing_file` for loop devices.
    pub backing_file: Option<PathBuf>,
    /// Where the whole disk (not a partition) is mounted, in mountinfo order.
    pub mountpoints: Vec<PathBuf>,
    /// The whole disk is an active swap area.
    pub swap: bool,
    /// This disk holds the running system or its boot medium (rule in the module docs).
    pub is_boot: bool,
    /// Partitions, sorted by number.
    pub partitions: Vec<PartInfo>,
}

/// One partition of a [`DiskInfo`].
#[derive(Debug, Clone, Serialize)]
pub struct PartInfo {
    /// Kernel name, e.g. `"sda1"`, `"nvme0n1p2"`.
    pub name: String,
    /// `<dev>/<name>`.
    pub dev_path: PathBuf,
    /// Partition number (sysfs `partition`), 1-based.
    pub number: u32,
    /// Device major number.
    pub major: u32,
    /// Device minor number.
    pub minor: u32,
    /// Offset from the start of the disk in bytes (sysfs `start` × 512).
    pub start_bytes: u64,
    /// Size in bytes (sysfs `size` × 512).
    pub size_bytes: u64,
    /// Names in the partition's `holders/` (dm-*, md*).
    pub holders: Vec<String>,
    /// Where the partition is mounted, in mountinfo order, escapes decoded.
    pub mountpoints: Vec<PathBuf>,
    /// The partition is an active swap area.
    pub swap: bool,
}

/// Lists every disk in `<paths.sys>/block`, sorted by name, with partitions, mounts, swap and
/// the boot flag filled in. RAM disks, empty zram/optical drives and unbacked loop devices are
/// left out; dm-* and md* are kept.
///
/// Fails if `<sys>/block` or the mountinfo file cannot be read (without mountinfo nothing could
/// be called idle). A missing swaps file means no swap (kernels without `CONFIG_SWAP`).
pub fn scan(paths: &SystemPaths) -> Result<Vec<DiskInfo>> {
    let sysfs::Scan { mut disks, aliases } = sysfs::read_disks(paths)?;
    let mounts = mountinfo::parse_mountinfo(&read_text(&paths.mountinfo)?);
    let swaps = match read_text(&paths.swaps) {
        Ok(text) => mountinfo::parse_swaps(&text),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let index = busy::Index::new(paths, &aliases, &disks);
    busy::annotate(&mut disks, &index, &mounts, &swaps);
    Ok(disks)
}

/// Reads a text file, replacing invalid UTF-8 (the parsers keep octal-escaped bytes intact).
fn read_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The disk, and the partition if it is one, with device number `major:minor`. Major 0 (no
/// block device) never matches.
pub fn find_by_devnum(
    disks: &[DiskInfo],
    major: u32,
    minor: u32,
) -> Option<(&DiskInfo, Option<&PartInfo>)> {
    if major == 0 {
        return None;
    }
    disks.iter().find_map(|d| {
        if (d.major, d.minor) == (major, minor) {
            return Some((d, None));
        }
        d.partitions
            .iter()
            .find(|p| (p.major, p.minor) == (major, minor))
            .map(|p| (d, Some(p)))
    })
}

/// The disk, and the partition if it is one, that `path` refers to. A block device node
/// (symlinks followed, e.g. `/dev/disk/by-id/…`) is matched by its `st_rdev`. A path under
/// `paths.dev` that is not a block device node (fake trees in tests, a stale node) is matched
/// by name as mount sources are. Anything else, such as an image file, gives `None`.
pub fn find_by_path<'d>(
    paths: &SystemPaths,
    disks: &'d [DiskInfo],
    path: &Path,
) -> Option<(&'d DiskInfo, Option<&'d PartInfo>)> {
    if let Ok(meta) = fs::metadata(path) {
        if meta.file_type().is_block_device() {
            let rdev = meta.rdev();
            return find_by_devnum(disks, libc::major(rdev), libc::minor(rdev));
        }
    }
    let rel = path.strip_prefix(&paths.dev).ok()?;
    let aliases = sysfs::read_aliases(&paths.sys, disks);
    let (di, pi) = busy::Index::new(paths, &aliases, disks).resolve(rel)?;
    let disk = &disks[di];
    Some((disk, pi.map(|i| &disk.partitions[i])))
}
