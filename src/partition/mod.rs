//! Partition tables: read GPT and MBR from any [`BlockDev`], validate them, and describe every
//! problem as a [`Diagnostic`] instead of failing or panicking.
//!
//! Entry point: [`read_table`]. A disk whose LBA 0 has a 0xEE entry, or which has a valid GPT
//! header, is read as GPT (protective or hybrid MBR); otherwise as MBR; otherwise it has no
//! table (`Ok(None)`), e.g. a filesystem written straight to the disk. All reads are bounded
//! (entry arrays ≤ 4 MiB, ≤ 256 logical partitions), so hostile tables cannot hang us.

pub mod edit;
pub mod fit;
pub mod gpt;
pub mod grub;
pub mod mbr;
mod model;
pub mod types;

pub use model::{
    Diagnostic, GptInfo, MbrRole, PartType, Partition, PartitionTable, Severity, TableKind,
};

use crate::blockdev::{read_vec, BlockDev};
use crate::error::Result;

/// Why a table could not be read at all (as opposed to a table read with [`Diagnostic`]s).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The logical sector size is not one a partition table can use.
    #[error("unsupported logical sector size {0}")]
    SectorSize(u32),
}

/// Reads and validates the partition table of `dev`. `Ok(None)`: no table at all.
/// I/O errors are returned; structural problems become diagnostics.
pub fn read_table(dev: &dyn BlockDev) -> Result<Option<PartitionTable>> {
    let ss = dev.geometry().logical_sector_size;
    if !(512..=65536).contains(&ss) || !ss.is_power_of_two() {
        return Err(crate::Error::Table {
            path: dev.path().to_path_buf(),
            source: TableError::SectorSize(ss),
        });
    }
    if dev.len() < u64::from(ss) {
        return Ok(None);
    }
    let lba0 = read_vec(dev, 0, ss as usize)?;
    let signed = lba0.get(510..512) == Some(&[0x55, 0xaa][..]);
    let mbr = if signed {
        match mbr::parse_sector(&lba0[..512]) {
            Ok(h) => Some(h),
            Err(e)
                if !has_fs_signature(&lba0)
                    && !gpt::has_signature(&read_vec(dev, u64::from(ss), ss as usize)?) =>
            {
                return Ok(Some(PartitionTable::unreadable(
                    TableKind::Mbr,
                    ss,
                    vec![Diagnostic {
                        severity: Severity::Error,
                        message: format!(
                            "the MBR in LBA 0 has a boot signature but cannot be decoded: {e}"
                        ),
                    }],
                )))
            }
            Err(_) => None,
        }
    } else {
        None
    };
    let (has_ee, others) = match &mbr {
        Some(h) => {
            let es = [
                &h.partition_1,
                &h.partition_2,
                &h.partition_3,
                &h.partition_4,
            ];
            let ee = es.iter().any(|e| e.sys == 0xee);
            let others = es.iter().filter(|e| e.sys != 0 && e.sys != 0xee).count();
            (ee, others)
        }
        None => (false, 0),
    };
    let role = match (&mbr, has_ee, others) {
        (None, _, _) => MbrRole::Missing,
        (Some(_), true, 0) => MbrRole::Protective,
        (Some(_), true, _) => MbrRole::Hybrid,
        (Some(_), false, _) => MbrRole::Protective, // unused: no 0xEE means MBR below
    };
    if has_ee || mbr.is_none() {
        if let Some(t) = gpt::read(dev, role)? {
            return Ok(Some(t));
        }
        if has_ee && ss > 512 && gpt::has_signature(&read_vec(dev, 512, 512)?) {
            // a hybrid ISO (ours, or any distribution's) on a CD/DVD drive: its GPT counts
            // 512-byte sectors, which an optical drive does not have
            return Ok(Some(PartitionTable::unreadable(TableKind::Gpt, ss, vec![Diagnostic {
                severity: Severity::Warning,
                message: format!(
                    "the GPT describes 512-byte sectors but the device has {ss}-byte sectors (a hybrid ISO on optical media); partitions not shown"
                ),
            }])));
        }
        if has_ee {
            return Ok(Some(PartitionTable::unreadable(TableKind::Gpt, ss, vec![Diagnostic {
                    severity: Severity::Error,
                    message: "protective MBR (type 0xee) found but neither GPT header (LBA 1 nor the last LBA) exists".into(),
                }])));
        }
        return Ok(None);
    }
    let Some(header) = mbr else {
        return Ok(None);
    };
    if looks_like_boot_sector_not_table(&header, &lba0) {
        return Ok(None);
    }
    let mut table = mbr::read(dev, &header)?;
    if gpt::has_signature(&read_vec(dev, u64::from(ss), ss as usize)?) {
        table.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            message: "a GPT header is present at LBA 1 but the MBR has no protective (0xee) entry; the GPT is stale and ignored, as the kernel and firmware would".into(),
        });
    }
    Ok(Some(table))
}

/// A FAT/NTFS/exFAT volume written directly to a disk also ends in 0x55AA. Its "entries" are
/// boot code; treat it as having no table when it has a filesystem signature and its entries
/// are not plausible.
fn looks_like_boot_sector_not_table(h: &mbrman::MBRHeader, lba0: &[u8]) -> bool {
    let fs_sig = has_fs_signature(lba0);
    let es = [
        &h.partition_1,
        &h.partition_2,
        &h.partition_3,
        &h.partition_4,
    ];
    let all_empty = es.iter().all(|e| e.sys == 0);
    fs_sig && (all_empty || es.iter().any(|e| e.boot != 0 && e.boot != 0x80))
}

fn has_fs_signature(lba0: &[u8]) -> bool {
    matches!(lba0.get(3..11), Some(b"NTFS    ") | Some(b"EXFAT   "))
        || matches!(lba0.get(82..87), Some(b"FAT32"))
        || matches!(lba0.get(54..59), Some(b"FAT12") | Some(b"FAT16"))
}

/// Appends an error for every pair of partitions that share a sector.
pub(crate) fn check_overlaps(parts: &[Partition], diags: &mut Vec<Diagnostic>) {
    let mut sorted: Vec<&Partition> = parts.iter().filter(|p| p.first_lba <= p.last_lba).collect();
    sorted.sort_by_key(|p| (p.first_lba, p.number));
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if b.first_lba > a.last_lba {
                break;
            }
            diags.push(Diagnostic {
                severity: Severity::Error,
                message: format!(
                    "partitions {} (LBA {}–{}) and {} (LBA {}–{}) overlap",
                    a.number, a.first_lba, a.last_lba, b.number, b.first_lba, b.last_lba
                ),
            });
        }
    }
}
