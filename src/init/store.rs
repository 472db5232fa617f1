//! The image store: the filesystem (usually on a USB drive) where images are written and read.
//! `lifeboat.store=SPEC` mounts one at boot; the console's `store` command does it by hand.

use super::sys;
use crate::inspect::DiskReport;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the store is mounted.
pub const STORE_DIR: &str = "/store";

/// A filesystem chosen as the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTarget {
    /// The partition (or whole-disk filesystem) device node.
    pub device: PathBuf,
    /// The disk it lives on.
    pub disk: PathBuf,
    /// blkid-style type: ext2/3/4, vfat, exfat or ntfs.
    pub fs: &'static str,
    /// The filesystem label, if any.
    pub label: Option<String>,
}

/// The filesystems a store may have.
pub const STORE_FILESYSTEMS: [&str; 6] = ["ext2", "ext3", "ext4", "vfat", "exfat", "ntfs"];

/// One filesystem that could be the store: a partition, or a filesystem on a whole disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Device node (None: the kernel made no node for this partition).
    pub device: Option<PathBuf>,
    /// The disk it lives on.
    pub disk: PathBuf,
    /// Partition number (0 for a whole-disk filesystem).
    pub number: u32,
    /// blkid-style filesystem type.
    pub fs: Option<&'static str>,
    /// Filesystem label and UUID.
    pub label: Option<String>,
    /// Filesystem UUID.
    pub uuid: Option<String>,
    /// GPT partition name and partition UUID.
    pub partlabel: Option<String>,
    /// GPT partition UUID (or MBR signature-number).
    pub partuuid: Option<String>,
}

/// Every filesystem on the listed disks, whole-disk ones first.
pub fn candidates(disks: &[DiskReport]) -> Vec<Candidate> {
    let mut out = Vec::new();
    for d in disks {
        if let Some(fs) = &d.fs {
            out.push(Candidate {
                device: Some(d.path.clone()),
                disk: d.path.clone(),
                number: 0,
                fs: Some(fs.kind.blkid_name()),
                label: fs.label.clone(),
                uuid: fs.uuid.clone(),
                ..Candidate::default()
            });
        }
        for p in &d.partitions {
            out.push(Candidate {
                device: p.path.clone(),
                disk: d.path.clone(),
                number: p.number,
                fs: p.fs,
                label: p.label.clone(),
                uuid: p.uuid.clone(),
                partlabel: p.name.clone(),
                partuuid: p.partuuid.clone(),
            });
        }
    }
    out
}

/// Finds the filesystem that SPEC names. SPEC is `LABEL=x`, `UUID=x`, `PARTLABEL=x`,
/// `PARTUUID=x` (compared without regard to case) or a device path.
pub fn find(spec: &str, candidates: &[Candidate]) -> anyhow::Result<Option<StoreTarget>> {
    let (key, value) = match spec.split_once('=') {
        Some((k, v)) if !spec.starts_with('/') => (k, v),
        _ => ("PATH", spec),
    };
    if !matches!(key, "LABEL" | "UUID" | "PARTLABEL" | "PARTUUID" | "PATH") {
        bail!("store {spec:?}: expected LABEL=, UUID=, PARTLABEL=, PARTUUID= or a device path");
    }
    let eq = |a: &Option<String>| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(value));
    for c in candidates {
        let hit = match key {
            "LABEL" => eq(&c.label),
            "UUID" => eq(&c.uuid),
            "PARTLABEL" => eq(&c.partlabel),
            "PARTUUID" => eq(&c.partuuid),
            _ => c.device.as_deref() == Some(Path::new(value)),
        };
        if !hit {
            continue;
        }
        let Some(device) = c.device.clone() else {
            bail!(
                "store {spec:?} is partition {} of {}, which has no device node",
                c.number,
                c.disk.display()
            );
        };
        let Some(fs) = c.fs else {
            bail!(
                "store {spec:?} ({}) has no filesystem Lifeboat recognises",
                device.display()
            );
        };
        return Ok(Some(StoreTarget {
            device,
            disk: c.disk.clone(),
            fs,
            label: c.label.clone(),
        }));
    }
    Ok(None)
}

/// Mounts `t` read-write at `at`. ext2/3/4, vfat and exfat use the kernel's drivers; NTFS
/// uses ntfs-3g where it is installed (see `ntfs_3g_available` for why), or the kernel's ntfs3.
pub fn mount(t: &StoreTarget, at: &Path) -> anyhow::Result<()> {
    if !STORE_FILESYSTEMS.contains(&t.fs) {
        bail!(
            "{} holds {}, which cannot be an image store (use ext4, FAT32, exFAT or NTFS)",
            t.device.display(),
            t.fs
        );
    }
    std::fs::create_dir_all(at).with_context(|| format!("creating {}", at.display()))?;
    let dev = t.device.to_string_lossy();
    let kernel_type = match t.fs {
        "ext2" | "ext3" | "ext4" => "ext4",
        "ntfs" => "ntfs3",
        other => other,
    };
    let data = match t.fs {
        "vfat" | "exfat" => "iocharset=utf8",
        _ => "",
    };
    let flags = libc::MS_NOATIME | libc::MS_NODEV | libc::MS_NOSUID;
    if t.fs == "ntfs" && ntfs_3g_available() {
        return mount_ntfs_3g(t, at);
    }
    sys::mount(&dev, at, kernel_type, flags, data).with_context(|| {
        format!(
            "mounting {} ({}) at {}",
            t.device.display(),
            t.fs,
            at.display()
        )
    })
}

/// ntfs-3g is preferred for NTFS: Debian's kernel has no NTFS driver, and 6.1's ntfs3 cannot
/// extend the MFT of a freshly formatted volume ("no free space to extend mft"), so it fails
/// to create the first file. The kernel's ntfs3 is the fallback.
fn ntfs_3g_available() -> bool {
    ["/usr/bin/ntfs-3g", "/bin/ntfs-3g", "/usr/local/bin/ntfs-3g"]
        .iter()
        .any(|p| Path::new(p).exists())
}

fn mount_ntfs_3g(t: &StoreTarget, at: &Path) -> anyhow::Result<()> {
    let status = Command::new("ntfs-3g")
        .arg(&t.device)
        .arg(at)
        .status()
        .context("running ntfs-3g to mount the NTFS store")?;
    if !status.success() {
        bail!(
            "ntfs-3g could not mount {} at {} ({status}); a Windows volume that is hibernated \
             or was not shut down cleanly is refused read-write",
            t.device.display(),
            at.display()
        );
    }
    Ok(())
}

/// Unmounts what is mounted at `at`, if anything, but never lazily: a busy store (a job on
/// another console writing to it) stays mounted and the error says so. For replacing the
/// store while the machine runs; [`unmount`] is for power-off.
pub fn release(at: &Path) -> std::io::Result<()> {
    match sys::umount(at, 0) {
        Ok(()) => Ok(()),
        // nothing mounted there, or no such folder yet
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unmounts the store, flushing it. FUSE daemons (ntfs-3g) finish writing when they see the
/// unmount; a lazy unmount is the fallback so that power-off is never blocked.
pub fn unmount(at: &Path) -> anyhow::Result<()> {
    sys::sync();
    match sys::umount(at, 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()), // not mounted
        Err(e) => {
            let _ = sys::umount(at, libc::MNT_DETACH);
            Err(e).with_context(|| format!("unmounting {}", at.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(disk: &str, n: u32, dev: Option<&str>, fs: &'static str, label: &str) -> Candidate {
        Candidate {
            device: dev.map(PathBuf::from),
            disk: PathBuf::from(disk),
            number: n,
            fs: Some(fs),
            label: Some(label.to_string()),
            uuid: Some(format!("uuid-{disk}-{n}")),
            ..Candidate::default()
        }
    }

    #[test]
    fn finds_by_label_uuid_and_path() {
        let c = vec![
            cand("/dev/sda", 1, Some("/dev/sda1"), "ext4", "root"),
            cand("/dev/sdb", 1, Some("/dev/sdb1"), "exfat", "BACKUPS"),
            cand("/dev/sdb", 2, None, "ntfs", "NONODE"),
        ];
        let t = find("LABEL=backups", &c).unwrap().unwrap();
        assert_eq!((t.device.to_str(), t.fs), (Some("/dev/sdb1"), "exfat"));
        assert_eq!(t.disk, PathBuf::from("/dev/sdb"));
        let t = find("UUID=uuid-/dev/sda-1", &c).unwrap().unwrap();
        assert_eq!(t.device, PathBuf::from("/dev/sda1"));
        let t = find("/dev/sdb1", &c).unwrap().unwrap();
        assert_eq!(t.label.as_deref(), Some("BACKUPS"));
        assert_eq!(find("LABEL=nope", &c).unwrap(), None);
        let e = find("LABEL=NONODE", &c).unwrap_err().to_string();
        assert!(e.contains("no device node"), "{e}");
        assert!(find("FOO=bar", &c).is_err());
    }
}
