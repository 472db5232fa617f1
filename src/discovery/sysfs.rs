//! Reads `<sys>/block` into [`DiskInfo`]s: geometry, identity (model, serial, vendor), transport,
//! flags, holders and partitions. Mount, swap and boot facts are left empty here and filled in by
//! `busy`.
//!
//! Units: sysfs `size` and `start` are in 512-byte sectors whatever the logical sector size
//! (`set_capacity()` takes 512-byte units; Documentation/ABI/stable/sysfs-block). Everything
//! leaving this module is in bytes.
//!
//! Invariants: only a missing or unreadable `<sys>/block` directory is an error. An attribute
//! that is missing, unreadable (some `vpd_pg80` reads fail with EIO) or empty falls back to a
//! default, and a disk that vanishes mid-scan (hot unplug) is skipped. Symlinks are resolved with
//! `fs::canonicalize` so that a fake tree under a temp dir resolves inside itself.

use super::{DiskInfo, PartInfo, SystemPaths, Transport};
use crate::discovery::mountinfo::parse_devnum;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Bytes per sysfs `size`/`start` unit.
const SYSFS_SECTOR: u64 = 512;

/// The disks found plus name aliases that `/dev` paths may use.
pub(super) struct Scan {
    /// Every kept disk, sorted by name, with partitions sorted by number.
    pub disks: Vec<DiskInfo>,
    /// `mapper/<dm name>` → `dm-N`, from `<sys>/block/dm-N/dm/name`.
    pub aliases: HashMap<String, String>,
}

/// Reads every disk under `<paths.sys>/block`.
pub(super) fn read_disks(paths: &SystemPaths) -> Result<Scan> {
    let block = paths.sys.join("block");
    let entries = fs::read_dir(&block).map_err(|e| Error::io("listing", &block, e))?;
    let sys_root = fs::canonicalize(&paths.sys).unwrap_or_else(|_| paths.sys.clone());
    let mut disks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", &block, e))?;
        // kernel block device names are ASCII; anything else is not ours to handle
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some(disk) = read_disk(paths, &sys_root, &name)? {
            disks.push(disk);
        }
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    let aliases = read_aliases(&paths.sys, &disks);
    Ok(Scan { disks, aliases })
}

/// `mapper/<name>` aliases of the device-mapper disks among `disks`.
pub(super) fn read_aliases(sys: &Path, disks: &[DiskInfo]) -> HashMap<String, String> {
    disks
        .iter()
        .filter(|d| d.name.starts_with("dm-"))
        .filter_map(|d| {
            let dm_name = read_string(&sys.join("block").join(&d.name).join("dm/name"))?;
            Some((format!("mapper/{dm_name}"), d.name.clone()))
        })
        .collect()
}

/// Reads one `<sys>/block/<name>`, or `None` when it is not a real disk or has vanished.
fn read_disk(paths: &SystemPaths, sys_root: &Path, name: &str) -> Result<Option<DiskInfo>> {
    let dir = paths.sys.join("block").join(name);
    let size_bytes = read_u64(&dir.join("size"))
        .unwrap_or(0)
        .saturating_mul(SYSFS_SECTOR);
    let backing_file = read_string(&dir.join("loop/backing_file")).map(PathBuf::from);
    if !is_real(name, size_bytes, backing_file.is_some()) {
        return Ok(None);
    }
    let partitions = match read_partitions(paths, &dir) {
        Ok(parts) => parts,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };

    let device = fs::canonicalize(dir.join("device")).ok();
    let device_rel = device.as_deref().map(|d| relative_to(d, sys_root));
    let transport = classify(
        name,
        device_rel.as_deref().unwrap_or(""),
        dir.join("device/scsi_disk").is_dir(),
    );
    let ident = identity(transport, &dir, device.as_deref(), sys_root);

    let (major, minor) = read_devnum(&dir.join("dev")).unwrap_or((0, 0));
    let logical = read_u32(&dir.join("queue/logical_block_size"))
        .filter(|&s| s > 0)
        .unwrap_or(512);
    let physical = read_u32(&dir.join("queue/physical_block_size"))
        .filter(|&s| s > 0)
        .unwrap_or(logical);

    Ok(Some(DiskInfo {
        name: name.to_owned(),
        dev_path: dev_path(&paths.dev, name),
        major,
        minor,
        size_bytes,
        logical_sector_size: logical,
        physical_sector_size: physical,
        model: ident.model,
        serial: ident.serial,
        vendor: ident.vendor,
        transport,
        removable: read_flag(&dir.join("removable")),
        rotational: read_flag(&dir.join("queue/rotational")),
        read_only: read_flag(&dir.join("ro")),
        holders: read_holders(&dir),
        backing_file,
        mountpoints: Vec::new(),
        swap: false,
        is_boot: false,
        partitions,
    }))
}

/// Whether `<sys>/block/<name>` is a disk worth listing. RAM disks never are; zram, optical
/// drives and loop devices only when they have media (a loop device also needs a backing file).
/// dm-* and md* are kept: they are the targets that holders point at.
fn is_real(name: &str, size_bytes: u64, has_backing_file: bool) -> bool {
    if name.starts_with("ram") {
        return false;
    }
    if name.starts_with("loop") {
        return has_backing_file && size_bytes > 0;
    }
    if name.starts_with("zram") || name.starts_with("sr") {
        return size_bytes > 0;
    }
    true
}

/// `<dev>/<name>`, with sysfs's `!` turned back into `/` (e.g. `cciss!c0d0` → `cciss/c0d0`).
fn dev_path(dev: &Path, name: &str) -> PathBuf {
    dev.join(name.replace('!', "/"))
}

/// The partitions of the disk at `dir`: subdirectories holding `partition`, `start`, `size` and
/// `dev`. Fails only if `dir` itself cannot be listed.
fn read_partitions(paths: &SystemPaths, dir: &Path) -> io::Result<Vec<PartInfo>> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let pdir = entry.path();
        let Some(number) = read_u32(&pdir.join("partition")) else {
            continue;
        };
        let (Some(start), Some(size), Some((major, minor))) = (
            read_u64(&pdir.join("start")),
            read_u64(&pdir.join("size")),
            read_devnum(&pdir.join("dev")),
        ) else {
            continue;
        };
        parts.push(PartInfo {
            dev_path: dev_path(&paths.dev, &name),
            number,
            major,
            minor,
            start_bytes: start.saturating_mul(SYSFS_SECTOR),
            size_bytes: size.saturating_mul(SYSFS_SECTOR),
            holders: read_holders(&pdir),
            mountpoints: Vec::new(),
            swap: false,
            name,
        });
    }
    parts.sort_by(|a, b| a.number.cmp(&b.number).then_with(|| a.name.cmp(&b.name)));
    Ok(parts)
}

/// `path` relative to `root`, rendered with a leading `/` so component checks like `"/usb"`
/// also match the first component. Falls back to the whole path outside `root`.
fn relative_to(path: &Path, root: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => path.display().to_string(),
    }
}

/// The bus of disk `name` from its resolved `device` path (relative to the sysfs root, leading
/// `/`, empty when there is no `device` link) and whether `device/scsi_disk` exists.
/// First match wins: usb, nvme, virtio, ata/ide, mmc, loop, scsi.
pub(super) fn classify(name: &str, device: &str, has_scsi_disk: bool) -> Transport {
    if name.starts_with("dm-") || name.starts_with("md") {
        return Transport::Unknown;
    }
    let component_starts = |prefix: &str| {
        device.split('/').any(|c| {
            c.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with(|ch: char| ch.is_ascii_digit()))
        })
    };
    if device.contains("/usb") {
        Transport::Usb
    } else if device.contains("nvme") || name.starts_with("nvme") {
        Transport::Nvme
    } else if device.contains("virtio") {
        Transport::Virtio
    } else if device.contains("/ata") || component_starts("ide") {
        Transport::Sata
    } else if device.contains("mmc") || name.starts_with("mmcblk") {
        Transport::Mmc
    } else if name.starts_with("loop") {
        Transport::Loop
    } else if has_scsi_disk || component_starts("host") {
        Transport::Scsi
    } else {
        Transport::Unknown
    }
}

/// Model, serial and vendor of one disk.
#[derive(Default)]
struct Identity {
    model: Option<String>,
    serial: Option<String>,
    vendor: Option<String>,
}

/// Identity per bus (DESIGN §5): the same facts live in different files on each bus.
fn identity(transport: Transport, dir: &Path, device: Option<&Path>, sys_root: &Path) -> Identity {
    let dev_attr = |attr: &str| read_string(&dir.join("device").join(attr));
    let scsi_serial = || {
        read_bytes(&dir.join("device/vpd_pg80"))
            .and_then(|page| parse_vpd_pg80(&page))
            .or_else(|| dev_attr("wwid"))
    };
    match transport {
        Transport::Nvme => Identity {
            model: dev_attr("model"),
            serial: dev_attr("serial"),
            vendor: None,
        },
        Transport::Sata | Transport::Scsi => Identity {
            model: dev_attr("model"),
            serial: scsi_serial(),
            vendor: dev_attr("vendor"),
        },
        // virtio-scsi disks have SCSI INQUIRY attributes under device/
        Transport::Virtio if dev_attr("model").is_some() => Identity {
            model: dev_attr("model"),
            serial: scsi_serial().or_else(|| read_string(&dir.join("serial"))),
            vendor: dev_attr("vendor"),
        },
        // virtio-blk has only <block>/serial; device/vendor is the virtio vendor ID (0x1af4)
        Transport::Virtio => Identity {
            model: None,
            serial: read_string(&dir.join("serial")),
            vendor: None,
        },
        Transport::Usb => {
            let usb = device.and_then(|d| usb_ancestor(d, sys_root));
            let usb_attr = |attr: &str| usb.as_ref().and_then(|u| read_string(&u.join(attr)));
            Identity {
                model: dev_attr("model").or_else(|| usb_attr("product")),
                serial: usb_attr("serial"),
                vendor: usb_attr("manufacturer").or_else(|| dev_attr("vendor")),
            }
        }
        Transport::Mmc => Identity {
            model: dev_attr("name"),
            serial: dev_attr("serial"),
            vendor: None,
        },
        Transport::Loop => Identity::default(),
        Transport::Unknown => Identity {
            model: dev_attr("model"),
            serial: dev_attr("serial"),
            vendor: dev_attr("vendor"),
        },
    }
}

/// The nearest ancestor of `device` (itself included) that is a USB device, i.e. holds
/// `idVendor`. Never climbs above `sys_root`.
fn usb_ancestor(device: &Path, sys_root: &Path) -> Option<PathBuf> {
    device
        .ancestors()
        .take_while(|p| p.starts_with(sys_root) && *p != sys_root)
        .find(|p| p.join("idVendor").is_file())
        .map(Path::to_path_buf)
}

/// The unit serial number from a SCSI VPD page 0x80 (SPC-4 §7.8.18): 4-byte header whose bytes
/// 2..4 are the big-endian page length, then that many ASCII bytes. Trimmed; `None` if empty or
/// not page 0x80.
pub(super) fn parse_vpd_pg80(page: &[u8]) -> Option<String> {
    if page.len() < 4 || page[1] != 0x80 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    let body = &page[4..page.len().min(4 + len)];
    clean(&String::from_utf8_lossy(body))
}

/// Trims whitespace and NULs; `None` when nothing is left.
fn clean(text: &str) -> Option<String> {
    let t = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!t.is_empty()).then(|| t.to_owned())
}

/// The raw bytes of a sysfs attribute, `None` on any error.
fn read_bytes(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

/// A trimmed, non-empty sysfs attribute; `None` when missing, unreadable or blank.
fn read_string(path: &Path) -> Option<String> {
    read_bytes(path).and_then(|b| clean(&String::from_utf8_lossy(&b)))
}

/// A decimal sysfs attribute.
fn read_u64(path: &Path) -> Option<u64> {
    read_string(path)?.parse().ok()
}

/// A decimal sysfs attribute that fits in 32 bits.
fn read_u32(path: &Path) -> Option<u32> {
    read_string(path)?.parse().ok()
}

/// A `0`/`1` sysfs attribute; missing or unreadable means false.
fn read_flag(path: &Path) -> bool {
    read_u64(path).is_some_and(|v| v != 0)
}

/// A `major:minor` sysfs `dev` attribute.
fn read_devnum(path: &Path) -> Option<(u32, u32)> {
    parse_devnum(&read_string(path)?)
}

/// Names in `<dir>/holders`, sorted; empty when the directory is missing.
fn read_holders(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join("holders")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let cases = [
            (
                "sata",
                "sda",
                "/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0",
                false,
                Transport::Sata,
            ),
            (
                "usb",
                "sdb",
                "/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0",
                true,
                Transport::Usb,
            ),
            (
                "nvme",
                "nvme0n1",
                "/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0",
                false,
                Transport::Nvme,
            ),
            (
                "nvme multipath",
                "nvme0n1",
                "/devices/virtual/nvme-subsystem/nvme-subsys0",
                false,
                Transport::Nvme,
            ),
            ("nvme no link", "nvme1n1", "", false, Transport::Nvme),
            (
                "virtio",
                "vda",
                "/devices/pci0000:00/0000:00:02.0/virtio1",
                false,
                Transport::Virtio,
            ),
            (
                "pata ide",
                "hda",
                "/devices/pci0000:00/0000:00:01.1/ide0/0.0",
                false,
                Transport::Sata,
            ),
            (
                "mmc",
                "mmcblk0",
                "/devices/platform/soc/mmc_host/mmc0/mmc0:0001",
                false,
                Transport::Mmc,
            ),
            ("loop", "loop0", "", false, Transport::Loop),
            (
                "scsi host",
                "sdc",
                "/devices/pci0000:00/0000:00:10.0/host2/target2:0:0/2:0:0:0",
                false,
                Transport::Scsi,
            ),
            (
                "scsi_disk only",
                "sdd",
                "/devices/platform/x/y",
                true,
                Transport::Scsi,
            ),
            ("dm", "dm-0", "", false, Transport::Unknown),
            ("md", "md127", "", false, Transport::Unknown),
            ("unknown", "zram0", "", false, Transport::Unknown),
            (
                "hostile name",
                "sde",
                "/devices/platform/hostname/x",
                false,
                Transport::Unknown,
            ),
        ];
        for (case, name, device, scsi_disk, want) in cases {
            assert_eq!(classify(name, device, scsi_disk), want, "case {case}");
        }
    }

    #[test]
    fn vpd_pg80_cases() {
        let mut good = vec![0x00, 0x80, 0x00, 0x0c];
        good.extend_from_slice(b"  WD-WCC4N0  ");
        assert_eq!(parse_vpd_pg80(&good).as_deref(), Some("WD-WCC4N0"));
        // length longer than the data: use what is there
        assert_eq!(
            parse_vpd_pg80(&[0, 0x80, 0, 50, b'A', b'B']).as_deref(),
            Some("AB")
        );
        // trailing bytes beyond the length are ignored
        assert_eq!(
            parse_vpd_pg80(&[0, 0x80, 0, 2, b'A', b'B', b'C']).as_deref(),
            Some("AB")
        );
        assert_eq!(parse_vpd_pg80(&[0, 0x80, 0, 4, b' ', 0, 0, b' ']), None);
        assert_eq!(parse_vpd_pg80(&[0, 0x80, 0]), None);
        assert_eq!(parse_vpd_pg80(&[0, 0x83, 0, 2, b'A', b'B']), None);
    }

    #[test]
    fn is_real_rules() {
        assert!(!is_real("ram0", 1 << 20, false));
        assert!(!is_real("zram0", 0, false));
        assert!(is_real("zram0", 1 << 20, false));
        assert!(!is_real("loop0", 1 << 20, false));
        assert!(!is_real("loop0", 0, true));
        assert!(is_real("loop0", 1 << 20, true));
        assert!(!is_real("sr0", 0, false));
        assert!(is_real("sr0", 1 << 20, false));
        assert!(is_real("dm-0", 0, false));
        assert!(is_real("sda", 0, false));
    }

    #[test]
    fn dev_path_handles_bang() {
        assert_eq!(
            dev_path(Path::new("/dev"), "cciss!c0d0"),
            Path::new("/dev/cciss/c0d0")
        );
    }
}
