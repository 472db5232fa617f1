//! What the disk holds that a boot would read: the boot code a BIOS runs, the EFI loaders on
//! the ESP, the kernels and initrds, the first program of the userland, and the filesystems
//! an OS writes to. Read from the disk itself (partition table, filesystem maps, the file
//! locator) before the machine starts; the judge matches the guest's I/O against it. Also
//! which firmware the disk can boot with.

use super::judge::{Region, RegionKind};
use crate::blockdev::{BlockDev, Slice};
use crate::error::Result;
use crate::fsmap::detect::{detect, FsKind};
use crate::fsmap::files::find_files;
use crate::partition::{read_table, PartType, TableKind};
use serde::Serialize;

/// A firmware the machine can start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Firmware {
    /// SeaBIOS: runs the MBR's boot code.
    Bios,
    /// OVMF: runs the ESP's `EFI/BOOT/BOOTX64.EFI`.
    Uefi,
}

impl std::fmt::Display for Firmware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        })
    }
}

/// What a disk holds for a boot; see the module doc.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Survey {
    /// Regions any boot may touch (kernels, init, filesystems).
    pub common: Vec<Region>,
    /// Boot code a BIOS runs after the MBR's.
    pub bios: Vec<Region>,
    /// EFI loaders on the ESP.
    pub uefi: Vec<Region>,
    /// The MBR holds boot code (its first 440 bytes are not all zero).
    pub mbr_code: bool,
    /// The disk has a BIOS-boot partition (GRUB's core on GPT).
    pub bios_boot: bool,
    /// The ESP holds the removable-media loader that firmware with fresh variables starts.
    pub fallback_loader: bool,
    /// What could not be mapped, and what that means for the stages.
    pub notes: Vec<String>,
}

impl Survey {
    /// The regions for a boot with `fw`.
    pub fn regions(&self, fw: Firmware) -> Vec<Region> {
        let mut r = self.common.clone();
        r.extend(
            match fw {
                Firmware::Bios => &self.bios,
                Firmware::Uefi => &self.uefi,
            }
            .iter()
            .cloned(),
        );
        r
    }

    /// The firmwares `--firmware auto` tries, in order: BIOS when there is MBR boot code
    /// or a BIOS-boot partition, UEFI when the ESP holds the fallback loader, BIOS when
    /// neither (so the firmware itself says there is nothing to boot).
    pub fn auto_firmware(&self) -> Vec<Firmware> {
        let mut v = Vec::new();
        if self.mbr_code || self.bios_boot {
            v.push(Firmware::Bios);
        }
        if self.fallback_loader {
            v.push(Firmware::Uefi);
        }
        if v.is_empty() {
            v.push(Firmware::Bios);
        }
        v
    }
}

/// Files watched per partition.
const MAX_FILES: usize = 64;

/// Ranges watched per file (a kernel in more fragments is watched in its first ones).
const MAX_RANGES: usize = 4096;

/// The ESP's loaders: the fallback directory and the usual vendor directories.
const LOADER_DIRS: &[&str] = &[
    "/EFI/BOOT/*",
    "/EFI/debian/*",
    "/EFI/ubuntu/*",
    "/EFI/fedora/*",
    "/EFI/centos/*",
    "/EFI/redhat/*",
    "/EFI/rocky/*",
    "/EFI/almalinux/*",
    "/EFI/opensuse/*",
    "/EFI/sles/*",
    "/EFI/arch/*",
    "/EFI/Microsoft/Boot/*",
    "/EFI/systemd/*",
    "/EFI/refind/*",
];

/// Kernels and initrds, on a root filesystem, a separate /boot or the ESP.
const KERNELS: &[&str] = &[
    "/boot/vmlinuz*",
    "/boot/bzImage*",
    "/boot/kernel*",
    "/boot/initrd*",
    "/boot/initramfs*",
    "/vmlinuz*",
    "/initrd*",
    "/initramfs*",
    "/EFI/Linux/*",
];

/// The first program of a userland.
const INITS: &[&str] = &[
    "/sbin/init",
    "/usr/sbin/init",
    "/bin/init",
    "/lib/systemd/systemd",
    "/usr/lib/systemd/systemd",
];

fn has_efi_ext(p: &str) -> bool {
    p.to_ascii_lowercase().ends_with(".efi")
}

/// Reads the disk's table and filesystems; see the module doc. Fails only when the disk
/// cannot be read; what cannot be mapped (damaged or unsupported filesystems) is a note.
pub fn survey(dev: &dyn BlockDev) -> Result<Survey> {
    let mut s = Survey::default();
    let mut mbr = [0u8; 512];
    if dev.len() >= 512 {
        dev.read_at(&mut mbr, 0)?;
        s.mbr_code = mbr[..440].iter().any(|&b| b != 0);
    }
    let table = read_table(dev)?;
    let parts: Vec<(String, u64, u64, Option<&'static str>, bool)> = match &table {
        Some(t) => {
            if t.kind == TableKind::Mbr {
                if let Some(first) = t.partitions.iter().map(|p| p.start_bytes).min() {
                    if first > 512 {
                        s.bios.push(Region {
                            kind: RegionKind::BootCode,
                            start: 512,
                            len: first - 512,
                            what: "the gap after the MBR".into(),
                        });
                    }
                }
            }
            t.partitions
                .iter()
                .filter(|p| !p.extended)
                .map(|p| {
                    let esp = matches!(p.part_type, PartType::Mbr(0xef))
                        || p.type_name == Some("EFI System");
                    (
                        format!("p{}", p.number),
                        p.start_bytes,
                        p.size_bytes,
                        p.type_name,
                        esp,
                    )
                })
                .collect()
        }
        None => vec![("the whole disk".to_string(), 0, dev.len(), None, false)],
    };
    for (name, start, len, type_name, esp) in parts {
        if type_name == Some("BIOS boot") {
            s.bios_boot = true;
            s.bios.push(Region {
                kind: RegionKind::BootCode,
                start,
                len,
                what: format!("BIOS-boot partition ({name})"),
            });
            continue;
        }
        if start > 0 && !esp {
            s.bios.push(Region {
                kind: RegionKind::BootCode,
                start,
                len: 512.min(len),
                what: format!("the boot sector of {name}"),
            });
        }
        let part = Slice::new(dev, start, len);
        let kind = match detect(&part) {
            Ok(Some(info)) => info.kind,
            Ok(None) => continue,
            Err(e) => {
                s.notes.push(format!("{name}: not read ({e})"));
                continue;
            }
        };
        let fat = matches!(kind, FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32);
        let ext = matches!(kind, FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4);
        // every volume an OS writes to once it runs, LVM and LUKS included (their writes are
        // the only sign of a userland inside them)
        if !esp && kind != FsKind::Iso9660 {
            s.common.push(Region {
                kind: RegionKind::Filesystem,
                start,
                len,
                what: format!("{} ({name})", kind.blkid_name()),
            });
        }
        if !(fat || ext) {
            if matches!(
                kind,
                FsKind::Ntfs
                    | FsKind::Xfs
                    | FsKind::Btrfs
                    | FsKind::Lvm2
                    | FsKind::Luks1
                    | FsKind::Luks2
                    | FsKind::Bitlocker
            ) {
                s.notes.push(format!(
                    "{name}: files on {} are not located (only ext2/3/4 and FAT are): a boot from it is seen by its writes (stage 3), not by its kernel or init reads",
                    kind.blkid_name()
                ));
            }
            continue;
        }
        let mut patterns: Vec<&str> = KERNELS.to_vec();
        if esp || fat {
            patterns.extend_from_slice(LOADER_DIRS);
        }
        if ext {
            patterns.extend_from_slice(INITS);
        }
        let found = match find_files(&part, &patterns) {
            Ok(f) => f,
            Err(e) => {
                s.notes.push(format!("{name}: files not located ({e})"));
                continue;
            }
        };
        // bounded, whatever the filesystem holds: a hostile /boot of a million hard links or
        // a file in a million fragments must not make a million regions
        if found.len() > MAX_FILES {
            s.notes.push(format!(
                "{name}: {} files matched; only the first {MAX_FILES} are watched",
                found.len()
            ));
        }
        for f in found.into_iter().take(MAX_FILES) {
            let lower = f.path.to_ascii_lowercase();
            let kind = if lower.starts_with("/efi/")
                && has_efi_ext(&lower)
                && !lower.starts_with("/efi/linux/")
            {
                if lower.starts_with("/efi/boot/bootx64.efi") {
                    s.fallback_loader = true;
                }
                RegionKind::Loader
            } else if INITS.iter().any(|i| f.path == *i) || (ext && !is_kernel(&lower)) {
                RegionKind::Init
            } else {
                RegionKind::Kernel
            };
            for &(off, n) in f.ranges.iter().take(MAX_RANGES) {
                let region = Region {
                    kind,
                    start: start + off,
                    len: n,
                    what: format!("{} ({name})", f.path),
                };
                match kind {
                    RegionKind::Loader => s.uefi.push(region),
                    _ => s.common.push(region),
                }
            }
        }
    }
    if !s.uefi.is_empty() && !s.fallback_loader {
        s.notes.push(
            "the ESP has boot loaders but no EFI/BOOT/BOOTX64.EFI: firmware with fresh variables (as here) starts only that one"
                .into(),
        );
    }
    Ok(s)
}

/// A kernel or initrd by its path (the rest found on ext are init programs).
fn is_kernel(lower: &str) -> bool {
    KERNELS
        .iter()
        .any(|k| lower.starts_with(&k.trim_end_matches('*').to_ascii_lowercase()))
}
