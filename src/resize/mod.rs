//! Growing filesystems after a restore or clone has grown their partition (`--grow-last`).
//!
//! - ext2/3/4: `e2fsck -f -p` (resize2fs insists on a freshly checked filesystem), then
//!   `resize2fs`, then `e2fsck -f -n` must be clean.
//! - NTFS: `ntfsresize --force` (it schedules chkdsk for Windows' next boot, as it always
//!   does), then `ntfsresize --info` must report the new size.
//! - FAT12/16/32: in place, by [`fat::grow`], as far as the FAT's size allows without moving
//!   data; the rest of the partition stays unused, and the report says so.
//! - anything else: the partition grows, the filesystem keeps its size, and the report says
//!   so.
//!
//! The tools are Debian's (e2fsprogs, ntfs-3g), run from `PATH`; the rescue environment
//! carries them (see `build.sh`). They work on a block device: the partition node of a disk,
//! or a loop device over the partition of a disk-image file (`losetup --offset --sizelimit`),
//! detached afterwards.
//!
//! This module runs programs but never prints: their output is captured and becomes part of
//! the error when they fail.

pub mod fat;
pub mod shrink;

use crate::blockdev::{read_vec, BlockDev, FileDev, OpenMode};
use crate::bytes::{le16, le32, le64};
use crate::discovery::{self, SystemPaths};
use crate::error::{Error, Result};
use crate::fsmap::detect::{self, FsKind};
use crate::fsmap::fat::Bpb;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How a filesystem was grown after its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum GrowMethod {
    /// ext2/3/4, with e2fsprogs' resize2fs.
    #[serde(rename = "resize2fs")]
    Resize2fs,
    /// NTFS, with ntfs-3g's ntfsresize.
    #[serde(rename = "ntfsresize")]
    Ntfsresize,
    /// FAT, by Lifeboat itself, as far as its FAT allows.
    #[serde(rename = "in place")]
    InPlace,
    /// No filesystem it can grow: only the partition grew.
    #[serde(rename = "partition only")]
    PartitionOnly,
}

impl GrowMethod {
    /// The words summaries use.
    pub fn as_str(self) -> &'static str {
        match self {
            GrowMethod::Resize2fs => "resize2fs",
            GrowMethod::Ntfsresize => "ntfsresize",
            GrowMethod::InPlace => "in place",
            GrowMethod::PartitionOnly => "partition only",
        }
    }
}

words!(GrowMethod);

/// What growing one filesystem did.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct FsGrowReport {
    /// Partition number.
    pub partition: u32,
    /// The filesystem found on it ("ext4", "ntfs", "vfat"…), or `None`.
    pub fs: Option<String>,
    /// How the filesystem was grown.
    pub method: GrowMethod,
    /// Filesystem size before, in bytes, when known.
    pub old_bytes: Option<u64>,
    /// Filesystem size after, in bytes, when known.
    pub new_bytes: Option<u64>,
    /// The new partition size in bytes.
    pub partition_bytes: u64,
    /// Why the filesystem does not fill the partition, when it does not.
    pub note: Option<String>,
}

/// A loop device over part of a file, detached on drop.
struct Loop(PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup")
            .arg("-d")
            .arg(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs a tool; `ok` lists the exit codes that mean success. The error carries its output.
fn run(tool: &str, args: &[&str], dev: &Path, ok: &[i32]) -> Result<String> {
    run_with(tool, args, dev, &[], ok)
}

/// [`run`] with arguments after the device as well (`resize2fs DEV SIZE`).
fn run_with(tool: &str, args: &[&str], dev: &Path, after: &[&str], ok: &[i32]) -> Result<String> {
    let out = Command::new(tool)
        .args(args)
        .arg(dev)
        .args(after)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Tool {
            tool: tool.to_string(),
            path: dev.to_path_buf(),
            detail: format!("cannot run it ({e}); it must be installed and on PATH"),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(c) if ok.contains(&c) => Ok(text),
        code => {
            let tail: Vec<&str> = text.lines().rev().take(6).collect();
            Err(Error::Tool {
                tool: [tool]
                    .iter()
                    .chain(args)
                    .chain(after)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" "),
                path: dev.to_path_buf(),
                detail: format!(
                    "exit code {}: {}",
                    code.map_or("none (killed)".to_string(), |c| c.to_string()),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ),
            })
        }
    }
}

/// The node of partition `number` of disk `disk`, waiting up to 3 s for devtmpfs to create it
/// and checking that the kernel's idea of its place matches ours.
fn partition_node(disk: &Path, number: u32, start: u64, size: u64) -> Result<PathBuf> {
    let paths = SystemPaths::default();
    let mut last = String::from("the kernel has no node for it");
    for _ in 0..30 {
        let disks = discovery::scan(&paths)?;
        if let Some((d, _)) = discovery::find_by_path(&paths, &disks, disk) {
            if let Some(p) = d.partitions.iter().find(|p| p.number == number) {
                if p.start_bytes != start || p.size_bytes != size {
                    last = format!(
                        "the kernel places it at byte {} with {} bytes, not at {start} with {size}",
                        p.start_bytes, p.size_bytes
                    );
                } else if p.dev_path.exists() {
                    return Ok(p.dev_path.clone());
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(Error::Refused {
        path: disk.to_path_buf(),
        reason: format!("partition {number} cannot be grown: {last}"),
    })
}

/// Size in bytes of the filesystem on `dev` as its own superblock says; `None` for formats
/// whose size is not read here, or when the superblock is too short to say.
pub fn fs_size(dev: &dyn BlockDev, kind: FsKind) -> Result<Option<u64>> {
    Ok(match kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => ext_size(&read_vec(dev, 1024, 1024)?),
        FsKind::Ntfs => {
            let b = read_vec(dev, 0, 512)?;
            le64(&b, 0x28)
                .zip(le16(&b, 0x0B))
                .map(|(sectors, bps)| sectors.saturating_mul(u64::from(bps)))
        }
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
            let b = read_vec(dev, 0, 512)?;
            Bpb::parse(&b).map(|p| p.total_sectors() * u64::from(p.bytes_per_sector))
        }
        _ => None,
    })
}

/// Blocks × block size from the ext superblock `sb`, with the high half of the block count
/// only on 64bit filesystems.
fn ext_size(sb: &[u8]) -> Option<u64> {
    let lo = u64::from(le32(sb, 4)?);
    let hi = if le32(sb, 0x60)? & 0x80 != 0 {
        u64::from(le32(sb, 0x150)?)
    } else {
        0
    };
    let bs = 1024u64 << le32(sb, 24)?.min(6);
    Some(((hi << 32) | lo) * bs)
}

/// Grows the filesystem of partition `number` (now `start..start + size` bytes) on `target`
/// (a disk, or a disk-image file when `is_block` is false) to fill the partition.
pub fn grow_partition_fs(
    target: &Path,
    is_block: bool,
    number: u32,
    start: u64,
    size: u64,
) -> Result<FsGrowReport> {
    let (node, _guard) = if is_block {
        (partition_node(target, number, start, size)?, None)
    } else {
        let out = run(
            "losetup",
            &[
                "--find",
                "--show",
                "--offset",
                &start.to_string(),
                "--sizelimit",
                &size.to_string(),
            ],
            target,
            &[0],
        )?;
        let node = PathBuf::from(out.trim());
        (node.clone(), Some(Loop(node)))
    };
    let dev = FileDev::open(&node, OpenMode::Read)?;
    let info = detect::detect(&dev)?;
    let mut report = FsGrowReport {
        partition: number,
        fs: info.as_ref().map(|i| i.kind.blkid_name().to_string()),
        method: GrowMethod::PartitionOnly,
        old_bytes: None,
        new_bytes: None,
        partition_bytes: size,
        note: None,
    };
    let Some(kind) = info.map(|i| i.kind) else {
        report.note = Some("no known filesystem on it, so only the partition grew".into());
        return Ok(report);
    };
    report.old_bytes = fs_size(&dev, kind)?;
    drop(dev);
    let n = node.as_path();
    match kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            // 0: clean, 1: errors corrected; anything else is a real problem
            run("e2fsck", &["-f", "-p"], n, &[0, 1])?;
            run("resize2fs", &[], n, &[0])?;
            run("e2fsck", &["-f", "-n"], n, &[0])?;
            report.method = GrowMethod::Resize2fs;
        }
        FsKind::Ntfs => {
            run("ntfsresize", &["--force", "--no-progress-bar"], n, &[0])?;
            run("ntfsresize", &["--info", "--force"], n, &[0])?;
            report.method = GrowMethod::Ntfsresize;
            report.note = Some(
                "ntfsresize schedules a consistency check (chkdsk) for Windows' next boot".into(),
            );
        }
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
            let dev = FileDev::open(n, OpenMode::Write)?;
            let g = fat::grow(&dev)?;
            drop(dev);
            report.method = GrowMethod::InPlace;
            report.note = g.limit;
        }
        other => {
            report.note = Some(format!(
                "{} filesystems are not grown: the partition is larger, the filesystem keeps its size",
                other.blkid_name()
            ));
            report.new_bytes = report.old_bytes;
            return Ok(report);
        }
    }
    let dev = FileDev::open(n, OpenMode::Read)?;
    report.new_bytes = fs_size(&dev, kind)?;
    Ok(report)
}
