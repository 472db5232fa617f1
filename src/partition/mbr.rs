//! MBR reading and validation. The boot sector and each EBR are decoded with mbrman's
//! `MBRHeader` (an EBR has the MBR's layout). The extended-partition chain is walked here,
//! not by `mbrman::MBR::read_from`, because that walk adds u32 LBAs unchecked (an overflow
//! panic in debug builds) and follows a chain of any length; ours is bounded by
//! [`MAX_LOGICAL`] and reports loops and overflows as diagnostics.

use super::model::{Diagnostic, PartType, Partition, PartitionTable, Severity, TableKind};
use super::types::mbr_type_name;
use crate::blockdev::{read_vec, BlockDev};
use crate::error::Result;
use mbrman::{MBRHeader, MBRPartitionEntry};
use std::io::Cursor;

/// The most logical partitions we follow before declaring the chain hostile.
pub const MAX_LOGICAL: usize = 256;

/// True for the extended-partition container types (CHS, LBA, Linux).
pub fn is_extended(sys: u8) -> bool {
    matches!(sys, 0x05 | 0x0f | 0x85)
}

/// Decodes a 512-byte boot sector or EBR. `Err` carries mbrman's reason.
pub fn parse_sector(sector: &[u8]) -> std::result::Result<MBRHeader, mbrman::Error> {
    MBRHeader::read_from(&mut Cursor::new(sector))
}

fn entries(h: &MBRHeader) -> [&MBRPartitionEntry; 4] {
    [
        &h.partition_1,
        &h.partition_2,
        &h.partition_3,
        &h.partition_4,
    ]
}

fn make(number: u32, e: &MBRPartitionEntry, start_lba: u64, ss: u32, logical: bool) -> Partition {
    let sectors = u64::from(e.sectors);
    Partition {
        number,
        first_lba: start_lba,
        last_lba: (start_lba + sectors).saturating_sub(1),
        start_bytes: start_lba * u64::from(ss),
        size_bytes: sectors * u64::from(ss),
        part_type: PartType::Mbr(e.sys),
        type_name: mbr_type_name(e.sys),
        name: None,
        uuid: None,
        attributes: u64::from(e.boot & 0x80),
        logical,
        extended: is_extended(e.sys),
    }
}

/// Reads an MBR table from an already-decoded boot sector `header`.
pub fn read(dev: &dyn BlockDev, header: &MBRHeader) -> Result<PartitionTable> {
    let ss = dev.geometry().logical_sector_size;
    let disk_sectors = dev.len() / u64::from(ss);
    let mut diags = Vec::new();
    let mut parts = Vec::new();
    let mut extended = Vec::new();
    for (i, e) in entries(header).into_iter().enumerate() {
        if e.sys == 0 || e.sectors == 0 {
            continue;
        }
        let p = make(i as u32 + 1, e, u64::from(e.starting_lba), ss, false);
        if e.starting_lba == 0 {
            diags.push(error(format!(
                "partition {} starts at LBA 0, on top of the MBR itself",
                p.number
            )));
        }
        if p.extended {
            extended.push(p.clone());
        }
        parts.push(p);
    }
    if extended.len() > 1 {
        diags.push(error(format!(
            "{} extended partitions (only one is allowed); logical partitions are read from partition {} only",
            extended.len(),
            extended[0].number
        )));
    }
    if let Some(ext) = extended.first() {
        walk_logicals(dev, ext, ss, &mut parts, &mut diags)?;
    }
    for p in &parts {
        if p.last_lba >= disk_sectors {
            diags.push(error(format!(
                "partition {} (LBA {}–{}) extends beyond the end of the disk (last LBA {})",
                p.number,
                p.first_lba,
                p.last_lba,
                disk_sectors.saturating_sub(1)
            )));
        }
    }
    // the extended container overlaps its own logicals by design; check the rest
    let plain: Vec<Partition> = parts.iter().filter(|p| !p.extended).cloned().collect();
    super::check_overlaps(&plain, &mut diags);
    for x in parts.iter().filter(|p| p.extended) {
        for p in plain.iter().filter(|p| !p.logical) {
            if p.first_lba <= x.last_lba && x.first_lba <= p.last_lba {
                diags.push(error(format!(
                    "partitions {} and {} overlap (extended partition {} covers LBA {}–{})",
                    x.number, p.number, x.number, x.first_lba, x.last_lba
                )));
            }
        }
    }
    Ok(PartitionTable {
        kind: TableKind::Mbr,
        sector_size: ss,
        disk_id: format!("0x{:08x}", u32::from_le_bytes(header.disk_signature)),
        partitions: parts,
        gpt: None,
        diagnostics: diags,
    })
}

fn error(message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        message,
    }
}

fn walk_logicals(
    dev: &dyn BlockDev,
    ext: &Partition,
    ss: u32,
    parts: &mut Vec<Partition>,
    diags: &mut Vec<Diagnostic>,
) -> Result<()> {
    let base = ext.first_lba;
    let disk_sectors = dev.len() / u64::from(ss);
    let mut rel: u64 = 0;
    let mut number = 5u32;
    for _ in 0..=MAX_LOGICAL {
        let ebr_lba = base + rel;
        if ebr_lba >= disk_sectors || ebr_lba > ext.last_lba {
            diags.push(error(format!(
                "extended boot record at LBA {ebr_lba} lies outside the extended partition {} (LBA {}–{})",
                ext.number, ext.first_lba, ext.last_lba
            )));
            return Ok(());
        }
        let sector = read_vec(dev, ebr_lba * u64::from(ss), 512)?;
        let ebr = match parse_sector(&sector) {
            Ok(h) => h,
            // an empty extended partition need not hold an EBR at all
            Err(_) if rel == 0 && sector.iter().all(|&b| b == 0) => return Ok(()),
            Err(e) => {
                diags.push(error(format!(
                    "extended boot record at LBA {ebr_lba} is invalid: {e}"
                )));
                return Ok(());
            }
        };
        let data = &ebr.partition_1;
        if data.sys != 0 && data.sectors != 0 {
            let start = ebr_lba + u64::from(data.starting_lba);
            let p = make(number, data, start, ss, true);
            if p.first_lba < ext.first_lba || p.last_lba > ext.last_lba {
                diags.push(error(format!(
                    "logical partition {number} (LBA {}–{}) lies outside extended partition {} (LBA {}–{})",
                    p.first_lba, p.last_lba, ext.number, ext.first_lba, ext.last_lba
                )));
            }
            parts.push(p);
            number += 1;
        }
        let next = &ebr.partition_2;
        if next.sys == 0 || next.starting_lba == 0 {
            return Ok(());
        }
        let next_rel = u64::from(next.starting_lba);
        if next_rel <= rel {
            diags.push(error(format!(
                "extended partition chain loops back: the EBR at LBA {ebr_lba} points to LBA {}",
                base + next_rel
            )));
            return Ok(());
        }
        rel = next_rel;
    }
    diags.push(error(format!(
        "more than {MAX_LOGICAL} logical partitions; the extended partition chain is treated as hostile and not followed further"
    )));
    Ok(())
}
