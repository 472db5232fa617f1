//! Shrinking filesystems for `--fit` (restore or clone onto a smaller disk).
//!
//! Always on a copy: the caller hands a copy-on-write overlay of the partition
//! ([`crate::access::Overlay`]), and for the external tools the same overlay as a file
//! ([`crate::access::devfiles::DevFiles`]); the source disk and the image are never written.
//!
//! - ext2/3/4: the minimum is `resize2fs -P`'s estimate; the shrink is `e2fsck -f -p`
//!   (resize2fs insists on a freshly checked filesystem), `resize2fs FILE SIZE`, then
//!   `e2fsck -f -n` must be clean.
//! - NTFS: the minimum is what `ntfsresize --info` says it "might resize at"; the shrink is
//!   `ntfsresize --no-action` (its dry run), then the real one, then `ntfsresize --info` must
//!   read the result. ntfsresize marks the volume for a consistency check at Windows' next
//!   boot, as it always does.
//! - FAT12/16/32: in place by [`super::fat::shrink`], down to where the last used cluster
//!   ends (clusters are not moved).
//! - anything else (XFS, swap, encrypted or unknown contents): cannot shrink; the reason says
//!   why.

use super::fat;
use super::{fs_size, run, run_with};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fsmap::detect::FsKind;
use std::path::Path;

/// True when the tools here can shrink `kind`.
pub fn can_shrink(kind: FsKind) -> bool {
    matches!(
        kind,
        FsKind::Ext2
            | FsKind::Ext3
            | FsKind::Ext4
            | FsKind::Ntfs
            | FsKind::Fat12
            | FsKind::Fat16
            | FsKind::Fat32
    )
}

/// True when shrinking `kind` needs the partition as a file (an external tool).
pub fn needs_file(kind: FsKind) -> bool {
    matches!(
        kind,
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 | FsKind::Ntfs
    )
}

/// The smallest size in bytes the filesystem `kind` on `dev` can shrink to, as its tool
/// estimates it (no margin added). `file` is `dev` as a file, for the external tools.
pub fn min_bytes(kind: FsKind, dev: &dyn BlockDev, file: Option<&Path>) -> Result<u64> {
    let need_file = || {
        file.ok_or_else(|| {
            Error::Unsupported(format!(
                "the minimum size of {} is measured on a file",
                kind.blkid_name()
            ))
        })
    };
    match kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            let f = need_file()?;
            let out = run("resize2fs", &["-P"], f, &[0])?;
            let blocks = out
                .lines()
                .find_map(|l| l.split("minimum size of the filesystem:").nth(1))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::Tool {
                    tool: "resize2fs -P".into(),
                    path: f.to_path_buf(),
                    detail: format!("no estimate in its output: {}", out.trim()),
                })?;
            let sb = crate::blockdev::read_vec(dev, 1024, 1024)?;
            let bs = 1024u64 << crate::units::le_u32(&sb, 24).min(6);
            Ok(blocks * bs)
        }
        FsKind::Ntfs => {
            let f = need_file()?;
            let out = run(
                "ntfsresize",
                &["--info", "--force", "--no-progress-bar"],
                f,
                &[0],
            )?;
            out.lines()
                .find_map(|l| l.split("might resize at ").nth(1))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| Error::Tool {
                    tool: "ntfsresize --info".into(),
                    path: f.to_path_buf(),
                    detail: format!(
                        "it gives no size to shrink to: {}",
                        out.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
                    ),
                })
        }
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => Ok(fat::shrink_min(dev)?.min_bytes),
        other => Err(Error::Unsupported(format!(
            "{} filesystems cannot be shrunk",
            other.blkid_name()
        ))),
    }
}

/// Shrinks the filesystem `kind` on `dev` (`file` is the same device as a file) to fit in
/// `new_bytes`; returns its new size in bytes. Every tool's output is part of its error.
pub fn shrink(kind: FsKind, dev: &dyn BlockDev, file: &Path, new_bytes: u64) -> Result<u64> {
    match kind {
        FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
            // 0: clean, 1: errors corrected; anything else is a real problem
            run("e2fsck", &["-f", "-p"], file, &[0, 1])?;
            let size = format!("{}K", new_bytes / 1024);
            run_with("resize2fs", &[], file, &[&size], &[0])?;
            run("e2fsck", &["-f", "-n"], file, &[0])?;
        }
        FsKind::Ntfs => {
            let size = new_bytes.to_string();
            let args = ["--force", "--no-progress-bar", "--size", &size];
            let mut dry = vec!["--no-action"];
            dry.extend_from_slice(&args);
            run("ntfsresize", &dry, file, &[0])?;
            run("ntfsresize", &args, file, &[0])?;
            // its consistency check of the result
            run(
                "ntfsresize",
                &["--info", "--force", "--no-progress-bar"],
                file,
                &[0],
            )?;
        }
        FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
            return fat::shrink(dev, new_bytes);
        }
        other => {
            return Err(Error::Unsupported(format!(
                "{} filesystems cannot be shrunk",
                other.blkid_name()
            )))
        }
    }
    let got = fs_size(dev, kind)?.unwrap_or(new_bytes);
    if got > new_bytes {
        return Err(Error::Tool {
            tool: format!("shrinking {}", kind.blkid_name()),
            path: file.to_path_buf(),
            detail: format!(
                "the filesystem has {got} bytes after the shrink, more than {new_bytes}"
            ),
        });
    }
    Ok(got)
}
