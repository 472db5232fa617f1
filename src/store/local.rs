//! A store on a local disk: one filesystem (usually on a USB drive), found among the disks'
//! partitions by label, UUID, partition label or UUID, or device path, and mounted read-write.
//! ext2/3/4, FAT and exFAT use the kernel's drivers; NTFS uses ntfs-3g where it is installed,
//! else the kernel's ntfs3.

use super::{Error, Result};
use crate::inspect::DiskReport;
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The filesystems a store may have (blkid names).
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
/// `PARTUUID=x` (compared without regard to case) or a device path. `Ok(None)`: nothing
/// matches (yet: a USB drive may still be appearing).
pub fn find(spec: &str, candidates: &[Candidate]) -> Result<Option<StoreTarget>> {
    let (key, value) = match spec.split_once('=') {
        Some((k, v)) if !spec.starts_with('/') => (k, v),
        _ => ("PATH", spec),
    };
    if !matches!(key, "LABEL" | "UUID" | "PARTLABEL" | "PARTUUID" | "PATH") {
        return Err(Error::BadSpec { spec: spec.into() });
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
            return Err(Error::NoDeviceNode {
                spec: spec.into(),
                number: c.number,
                disk: c.disk.clone(),
            });
        };
        let Some(fs) = c.fs else {
            return Err(Error::NoFilesystem {
                spec: spec.into(),
                device,
            });
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

/// Mounts `t` read-write at `at` (noatime, nodev, nosuid), creating `at` if need be.
/// ext2/3/4, vfat and exfat use the kernel's drivers; NTFS uses ntfs-3g where it is installed
/// (see `ntfs_3g_available` for why), or the kernel's ntfs3. The mount stays until
/// [`super::unmount`] or [`super::release`].
pub fn mount(t: &StoreTarget, at: &Path) -> Result<()> {
    if !STORE_FILESYSTEMS.contains(&t.fs) {
        return Err(Error::Unsupported {
            device: t.device.clone(),
            fs: t.fs,
        });
    }
    std::fs::create_dir_all(at).map_err(|source| Error::CreateDir {
        path: at.to_path_buf(),
        source,
    })?;
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
    let flags = MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    if t.fs == "ntfs" && ntfs_3g_available() {
        return mount_ntfs_3g(t, at);
    }
    nix::mount::mount(Some(dev.as_ref()), at, Some(kernel_type), flags, Some(data)).map_err(|e| {
        Error::Mount {
            device: t.device.clone(),
            fs: t.fs,
            at: at.to_path_buf(),
            source: std::io::Error::from(e),
        }
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

/// Runs ntfs-3g, which mounts and then detaches its FUSE daemon (the daemon points its stdio
/// at /dev/null, so waiting for its output ends when the mount is done). What it says goes
/// into the error, never onto the caller's terminal.
fn mount_ntfs_3g(t: &StoreTarget, at: &Path) -> Result<()> {
    let out = Command::new("ntfs-3g")
        .arg(&t.device)
        .arg(at)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::HelperStart {
            tool: "ntfs-3g",
            fs: "NTFS",
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Ntfs3g {
            device: t.device.clone(),
            at: at.to_path_buf(),
            status: out.status,
            output: first_paragraph(&String::from_utf8_lossy(&out.stderr)),
        });
    }
    Ok(())
}

/// The first paragraph of a tool's message on one line: ntfs-3g says what is wrong first,
/// then prints its banner and usage after a blank line.
fn first_paragraph(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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
    fn a_tools_message_is_its_first_paragraph() {
        let said = "ntfs-3g: Failed to access volume '/dev/x': No such file or directory\n\n\
                    ntfs-3g 2022.10.3 integrated FUSE 28\nUsage: ntfs-3g DEVICE DIR\n";
        assert_eq!(
            first_paragraph(said),
            "ntfs-3g: Failed to access volume '/dev/x': No such file or directory"
        );
        assert_eq!(first_paragraph("\n  a\n b \n\nc"), "a b");
        assert_eq!(first_paragraph(""), "");
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
