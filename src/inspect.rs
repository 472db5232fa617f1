//! One report per disk: sysfs facts (model, serial, transport…), the validated partition table,
//! and the filesystem on each partition. This is what `lifeboat list` and `lifeboat inspect`
//! print, and its JSON field names are a stable contract for scripts:
//! disk `path`, `size_bytes`, `logical_sector_size`, `physical_sector_size`, `model`, `serial`,
//! `table`, `partitions`; partition `number`, `path`, `start_bytes`, `size_bytes`, `type`,
//! `name`, `fs`, `label`, `uuid`, `mountpoint`, `used_bytes`. Fields may be added, never
//! renamed or removed.

use crate::blockdev::{BlockDev, FileDev, OpenMode, Slice};
use crate::discovery::{self, DiskInfo, PartInfo, SystemPaths, Transport};
use crate::error::{Error, Result};
use crate::fsmap::{self, FsInfo};
use crate::partition::{self, Diagnostic, Partition, PartitionTable, Severity, TableKind};
use serde::Serialize;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// What kind of thing a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A whole block device.
    Disk,
    /// A partition block device, inspected as if it were a disk.
    Partition,
    /// A regular disk-image file.
    File,
}

/// Everything known about one disk. See the module docs for the stable JSON names.
#[derive(Debug, Clone, Serialize)]
pub struct DiskReport {
    /// Device node or image file path.
    pub path: PathBuf,
    /// Disk, partition or image file.
    pub source: Source,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Logical sector size in bytes (LBA unit).
    pub logical_sector_size: u32,
    /// Physical sector size in bytes.
    pub physical_sector_size: u32,
    /// Model string from sysfs, trimmed.
    pub model: Option<String>,
    /// Serial number from sysfs (per bus), trimmed.
    pub serial: Option<String>,
    /// Vendor from sysfs.
    pub vendor: Option<String>,
    /// Bus, when known from sysfs.
    pub transport: Option<Transport>,
    /// Removable medium flag from sysfs.
    pub removable: Option<bool>,
    /// Spinning disk, from sysfs.
    pub rotational: Option<bool>,
    /// The kernel marks the device read-only.
    pub read_only: Option<bool>,
    /// This disk holds the running system (its "/" or the boot medium).
    pub is_boot: bool,
    /// Why writing to this disk would be refused right now (mounted, swap, held), if so.
    pub busy: Option<String>,
    /// Backing file of a loop device.
    pub backing_file: Option<PathBuf>,
    /// "gpt", "mbr" or null when the disk has no partition table.
    pub table: Option<TableKind>,
    /// GPT disk GUID or MBR signature.
    pub disk_id: Option<String>,
    /// Partitions in table order.
    pub partitions: Vec<PartReport>,
    /// Filesystem written straight to the disk (no table), if any.
    pub fs: Option<FsInfo>,
    /// Findings about the partition table.
    pub diagnostics: Vec<Diagnostic>,
    /// Why the device could not be read (e.g. permission denied); the sysfs facts still show.
    pub error: Option<String>,
}

/// One partition with its filesystem.
#[derive(Debug, Clone, Serialize)]
pub struct PartReport {
    /// Partition number as the kernel names it.
    pub number: u32,
    /// Device node (e.g. /dev/sda1) when the kernel has one; null for image files.
    pub path: Option<PathBuf>,
    /// Byte offset on the disk.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// GPT type GUID (upper case) or MBR type byte (`0x83`).
    #[serde(rename = "type")]
    pub part_type: String,
    /// Human type name ("EFI System"…).
    pub type_name: Option<&'static str>,
    /// GPT partition name (PARTLABEL).
    pub name: Option<String>,
    /// GPT unique partition GUID (PARTUUID).
    pub partuuid: Option<String>,
    /// blkid filesystem type ("ext4", "vfat", "ntfs"…), null when unknown.
    pub fs: Option<&'static str>,
    /// Human filesystem variant ("FAT32", "LUKS2"…).
    pub fs_version: Option<&'static str>,
    /// Filesystem label.
    pub label: Option<String>,
    /// Filesystem UUID as blkid prints it.
    pub uuid: Option<String>,
    /// First mount point, null when not mounted.
    pub mountpoint: Option<PathBuf>,
    /// Every mount point (bind mounts show several).
    pub mountpoints: Vec<PathBuf>,
    /// Active swap.
    pub swap: bool,
    /// Kernel holders (dm-0, md0…).
    pub holders: Vec<String>,
    /// Used bytes from the filesystem's own metadata (superblock counts; FAT, exFAT and NTFS
    /// allocation maps), where cheap; see [`FsInfo::used_bytes`].
    pub used_bytes: Option<u64>,
    /// MBR extended container.
    pub extended: bool,
    /// MBR logical partition.
    pub logical: bool,
}

/// Builds the report for `dev`, whose sysfs facts (if it is a block device) are `sys`.
/// Table and filesystem problems become diagnostics; only I/O errors fail.
pub fn inspect_dev(
    dev: &dyn BlockDev,
    source: Source,
    sys: Option<&DiskInfo>,
) -> Result<DiskReport> {
    let g = dev.geometry();
    let mut report = base_report(dev.path(), source, sys);
    report.size_bytes = g.size_bytes;
    report.logical_sector_size = g.logical_sector_size;
    report.physical_sector_size = g.physical_sector_size;
    let table = partition::read_table(dev)?;
    match table {
        Some(t) => fill_table(&mut report, dev, &t, sys)?,
        None => report.fs = fsmap::detect(dev)?,
    }
    Ok(report)
}

fn base_report(path: &Path, source: Source, sys: Option<&DiskInfo>) -> DiskReport {
    DiskReport {
        path: path.to_path_buf(),
        source,
        size_bytes: sys.map_or(0, |d| d.size_bytes),
        logical_sector_size: sys.map_or(512, |d| d.logical_sector_size),
        physical_sector_size: sys.map_or(512, |d| d.physical_sector_size),
        model: sys.and_then(|d| d.model.clone()),
        serial: sys.and_then(|d| d.serial.clone()),
        vendor: sys.and_then(|d| d.vendor.clone()),
        transport: sys.map(|d| d.transport),
        removable: sys.map(|d| d.removable),
        rotational: sys.map(|d| d.rotational),
        read_only: sys.map(|d| d.read_only),
        is_boot: sys.is_some_and(|d| d.is_boot),
        busy: sys.and_then(|d| d.is_busy()),
        backing_file: sys.and_then(|d| d.backing_file.clone()),
        table: None,
        disk_id: None,
        partitions: Vec::new(),
        fs: None,
        diagnostics: Vec::new(),
        error: None,
    }
}

fn fill_table(
    report: &mut DiskReport,
    dev: &dyn BlockDev,
    t: &PartitionTable,
    sys: Option<&DiskInfo>,
) -> Result<()> {
    report.table = Some(t.kind);
    report.disk_id = (!t.disk_id.is_empty()).then(|| t.disk_id.clone());
    report.diagnostics = t.diagnostics.clone();
    for p in &t.partitions {
        let kernel = sys.and_then(|d| match_kernel_partition(d, p));
        let fs = if p.extended || p.size_bytes == 0 {
            None
        } else {
            fsmap::detect(&Slice::new(dev, p.start_bytes, p.size_bytes))?
        };
        report.partitions.push(part_report(p, kernel, fs.as_ref()));
    }
    if let Some(d) = sys {
        for kp in &d.partitions {
            if !t
                .partitions
                .iter()
                .any(|p| match_kernel_partition(d, p).is_some_and(|k| k.number == kp.number))
            {
                report.diagnostics.push(Diagnostic {
                    severity: Severity::Warning,
                    message: format!(
                        "the kernel's {} (start byte {}, {} bytes) matches no entry of the table on disk; the kernel has not re-read the table",
                        kp.name, kp.start_bytes, kp.size_bytes
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The kernel's node for table partition `p`: same number, start and size.
fn match_kernel_partition<'d>(d: &'d DiskInfo, p: &Partition) -> Option<&'d PartInfo> {
    d.partitions.iter().find(|k| {
        k.number == p.number
            && k.start_bytes == p.start_bytes
            && (k.size_bytes == p.size_bytes || p.extended)
    })
}

fn part_report(p: &Partition, k: Option<&PartInfo>, fs: Option<&FsInfo>) -> PartReport {
    let mountpoints = k.map(|k| k.mountpoints.clone()).unwrap_or_default();
    PartReport {
        number: p.number,
        path: k.map(|k| k.dev_path.clone()),
        start_bytes: p.start_bytes,
        size_bytes: p.size_bytes,
        part_type: p.part_type.to_string(),
        type_name: p.type_name,
        name: p.name.clone(),
        partuuid: p.uuid.clone(),
        fs: fs.map(|f| f.kind.blkid_name()),
        fs_version: fs.map(|f| f.kind.display_name()),
        label: fs.and_then(|f| f.label.clone()),
        uuid: fs.and_then(|f| f.uuid.clone()),
        mountpoint: mountpoints.first().cloned(),
        mountpoints,
        swap: k.is_some_and(|k| k.swap),
        holders: k.map(|k| k.holders.clone()).unwrap_or_default(),
        used_bytes: fs.and_then(|f| f.used_bytes),
        extended: p.extended,
        logical: p.logical,
    }
}

/// Reports every disk the kernel knows. A disk that cannot be opened (permissions, no medium)
/// still appears, with its sysfs facts and `error` set.
pub fn list(paths: &SystemPaths) -> Result<Vec<DiskReport>> {
    let disks = discovery::scan(paths)?;
    Ok(disks
        .iter()
        .map(|d| {
            FileDev::open(&d.dev_path, OpenMode::Read)
                .and_then(|dev| inspect_dev(&dev, Source::Disk, Some(d)))
                .unwrap_or_else(|e| {
                    let mut r = base_report(&d.dev_path, Source::Disk, Some(d));
                    r.error = Some(crate::error::with_causes(&e));
                    r
                })
        })
        .collect())
}

/// Reports one block device or disk-image file. Image files are read with
/// `file_sector_size`-byte sectors (512 unless the image came from a 4Kn disk).
pub fn inspect_path(paths: &SystemPaths, path: &Path, file_sector_size: u32) -> Result<DiskReport> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("opening", path, e))?;
    if meta.file_type().is_block_device() {
        let dev = FileDev::open(path, OpenMode::Read)?;
        let disks = discovery::scan(paths).unwrap_or_default();
        match discovery::find_by_path(paths, &disks, path) {
            Some((d, None)) => inspect_dev(&dev, Source::Disk, Some(d)),
            Some((_, Some(_))) => inspect_dev(&dev, Source::Partition, None),
            None => inspect_dev(&dev, Source::Disk, None),
        }
    } else {
        let dev = FileDev::open_with_sector_size(path, OpenMode::Read, file_sector_size)?;
        inspect_dev(&dev, Source::File, None)
    }
}
