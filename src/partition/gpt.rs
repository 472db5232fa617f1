//! GPT reading and validation.
//!
//! Headers and entry arrays are decoded here from raw bytes rather than through the gpt
//! crate's reader, because that reader trusts the header: it `assert!`s an entry size of 128
//! (a panic on hostile input), loops `num_parts` times reading one entry each (0xFFFFFFFF
//! entries is a 512 GiB read), never checks the entry array's CRC and never reads the backup
//! copy. Everything here is bounded and every problem becomes a [`Diagnostic`].
//!
//! This module only reads. Restore and clone write the source's own table bytes back, edited
//! in place by [`super::edit`] (moved backup header, grown entry, new CRCs); nothing in the
//! library builds a GPT from scratch. The gpt crate is only a dev-dependency, used by the
//! integration tests to build fixture disks.
//!
//! Layout (UEFI 2.10 §5.3): header at LBA 1 (primary) and the last LBA (backup); fields are
//! little-endian; GUIDs are mixed-endian (first three groups little-endian).

use super::model::{Diagnostic, GptInfo, MbrRole, PartType, Partition, PartitionTable, Severity};
use super::types::gpt_type_name;
use crate::blockdev::{read_vec, BlockDev};
use crate::error::Result;
use crate::units::{le_array, le_u32, le_u64};

/// Upper bound on the entry array we are willing to read: 4 MiB. Real tables are 16 KiB
/// (128 × 128 bytes); anything near this limit is hostile or garbage.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 4 << 20;

const SIGNATURE: &[u8; 8] = b"EFI PART";

/// A decoded GPT header. Only structurally valid headers (signature, size, CRC, sane entry
/// geometry) are ever constructed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    /// LBA this header says it lives at.
    pub current_lba: u64,
    /// LBA of the other copy.
    pub alternate_lba: u64,
    /// First usable LBA.
    pub first_usable: u64,
    /// Last usable LBA (inclusive).
    pub last_usable: u64,
    /// Disk GUID.
    pub disk_guid: uuid::Uuid,
    /// First LBA of the entry array.
    pub entries_lba: u64,
    /// Number of entries.
    pub entry_count: u32,
    /// Bytes per entry.
    pub entry_size: u32,
    /// CRC32 of the entry array.
    pub entries_crc: u32,
}

fn guid(b: &[u8], at: usize) -> uuid::Uuid {
    uuid::Uuid::from_bytes_le(le_array(b, at))
}

/// Upper-case hyphenated GUID text.
pub fn guid_upper(g: &uuid::Uuid) -> String {
    g.hyphenated().to_string().to_uppercase()
}

/// Whether the sector holds the "EFI PART" signature at all.
pub fn has_signature(sector: &[u8]) -> bool {
    sector.get(..8) == Some(&SIGNATURE[..])
}

/// Decodes and checks one header sector. `Err` is a lowercase reason for diagnostics.
pub fn parse_header(sector: &[u8], expected_lba: u64) -> std::result::Result<RawHeader, String> {
    if !has_signature(sector) || sector.len() < 512 {
        return Err("no \"EFI PART\" signature".into());
    }
    let header_size = le_u32(sector, 12);
    if header_size < 92 || header_size as usize > sector.len() {
        return Err(format!(
            "header size {header_size} is outside 92..={}",
            sector.len()
        ));
    }
    let stored_crc = le_u32(sector, 16);
    let mut copy = sector[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    let computed = crc32fast::hash(&copy);
    if computed != stored_crc {
        return Err(format!(
            "header CRC mismatch (stored {stored_crc:#010x}, computed {computed:#010x})"
        ));
    }
    let h = RawHeader {
        current_lba: le_u64(sector, 24),
        alternate_lba: le_u64(sector, 32),
        first_usable: le_u64(sector, 40),
        last_usable: le_u64(sector, 48),
        disk_guid: guid(sector, 56),
        entries_lba: le_u64(sector, 72),
        entry_count: le_u32(sector, 80),
        entry_size: le_u32(sector, 84),
        entries_crc: le_u32(sector, 88),
    };
    if h.current_lba != expected_lba {
        return Err(format!(
            "header says it is at LBA {} but was read from LBA {expected_lba}",
            h.current_lba
        ));
    }
    if h.entry_size < 128 || !h.entry_size.is_power_of_two() {
        return Err(format!(
            "entry size {} is not 128 × a power of two",
            h.entry_size
        ));
    }
    if h.entry_count == 0 {
        return Err("entry count is 0".into());
    }
    let array = u64::from(h.entry_count) * u64::from(h.entry_size);
    if array > MAX_ENTRY_ARRAY_BYTES {
        return Err(format!(
            "absurd entry array: {} entries × {} bytes = {array} bytes (limit {MAX_ENTRY_ARRAY_BYTES})",
            h.entry_count, h.entry_size
        ));
    }
    if h.first_usable > h.last_usable {
        return Err(format!(
            "first usable LBA {} is after last usable LBA {}",
            h.first_usable, h.last_usable
        ));
    }
    Ok(h)
}

/// Size of the entry array in bytes (bounded by [`MAX_ENTRY_ARRAY_BYTES`] for parsed headers).
pub fn entry_array_bytes(h: &RawHeader) -> u64 {
    u64::from(h.entry_count) * u64::from(h.entry_size)
}

/// One copy (header + entries) that passed every structural check.
struct Copy {
    header: RawHeader,
    entries: Vec<u8>,
}

/// Reads the header at `lba` and its entry array, checking CRCs and bounds.
fn read_copy(dev: &dyn BlockDev, lba: u64, ss: u32) -> Result<std::result::Result<Copy, String>> {
    let disk_sectors = dev.len() / u64::from(ss);
    if lba >= disk_sectors {
        return Ok(Err(format!(
            "LBA {lba} is beyond the disk's last LBA {}",
            disk_sectors.saturating_sub(1)
        )));
    }
    let sector = read_vec(dev, lba * u64::from(ss), ss as usize)?;
    let header = match parse_header(&sector, lba) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let array = entry_array_bytes(&header);
    let array_sectors = array.div_ceil(u64::from(ss));
    let array_end = header.entries_lba.checked_add(array_sectors);
    match array_end {
        Some(end) if header.entries_lba >= 1 && end <= disk_sectors => {}
        _ => {
            return Ok(Err(format!(
                "entry array at LBA {} ({} sectors) lies outside the disk ({} sectors)",
                header.entries_lba, array_sectors, disk_sectors
            )))
        }
    }
    if header.last_usable >= disk_sectors {
        return Ok(Err(format!(
            "last usable LBA {} is beyond the disk's last LBA {}",
            header.last_usable,
            disk_sectors - 1
        )));
    }
    let entries = read_vec(dev, header.entries_lba * u64::from(ss), array as usize)?;
    let crc = crc32fast::hash(&entries);
    if crc != header.entries_crc {
        return Ok(Err(format!(
            "partition entry array CRC mismatch (stored {:#010x}, computed {crc:#010x})",
            header.entries_crc
        )));
    }
    Ok(Ok(Copy { header, entries }))
}

fn decode_entries(h: &RawHeader, entries: &[u8], ss: u32) -> Vec<Partition> {
    let mut parts = Vec::new();
    for (i, e) in entries.chunks_exact(h.entry_size as usize).enumerate() {
        let type_guid = guid(e, 0);
        if type_guid.is_nil() {
            continue;
        }
        let first_lba = le_u64(e, 32);
        let last_lba = le_u64(e, 40);
        let name_units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16_lossy(&name_units);
        let type_upper = guid_upper(&type_guid);
        let start_bytes = first_lba.saturating_mul(u64::from(ss));
        let size_bytes = last_lba
            .checked_sub(first_lba)
            .and_then(|n| n.checked_add(1))
            .map_or(0, |n| n.saturating_mul(u64::from(ss)));
        parts.push(Partition {
            number: i as u32 + 1,
            first_lba,
            last_lba,
            start_bytes,
            size_bytes,
            type_name: gpt_type_name(&type_upper),
            part_type: PartType::Gpt(type_guid),
            name: (!name.is_empty()).then_some(name),
            uuid: Some(guid_upper(&guid(e, 16))),
            attributes: le_u64(e, 48),
            logical: false,
            extended: false,
        });
    }
    parts
}

/// Reads a GPT disk. `mbr` says what LBA 0 holds. Returns `None` when neither header exists.
pub fn read(dev: &dyn BlockDev, mbr: MbrRole) -> Result<Option<PartitionTable>> {
    let ss = dev.geometry().logical_sector_size;
    let disk_sectors = dev.len() / u64::from(ss);
    let last_lba = disk_sectors.saturating_sub(1);
    let mut diags = Vec::new();
    let warn = |d: &mut Vec<Diagnostic>, m: String| {
        d.push(Diagnostic {
            severity: Severity::Warning,
            message: m,
        })
    };
    let err = |d: &mut Vec<Diagnostic>, m: String| {
        d.push(Diagnostic {
            severity: Severity::Error,
            message: m,
        })
    };

    if disk_sectors < 3 {
        return Ok(None);
    }
    let primary = read_copy(dev, 1, ss)?;
    // the backup is where the primary says, else at the disk's last LBA
    let mut backup_lbas = Vec::new();
    if let Ok(p) = &primary {
        if p.header.alternate_lba != last_lba {
            warn(
                &mut diags,
                format!(
                    "primary GPT header places the backup at LBA {} but the disk's last LBA is {last_lba} (disk resized or image copied to a different-size disk?)",
                    p.header.alternate_lba
                ),
            );
            if p.header.alternate_lba < disk_sectors {
                backup_lbas.push(p.header.alternate_lba);
            }
        }
    }
    backup_lbas.push(last_lba);
    let mut backup = Err(String::from("not found"));
    let mut backup_at = last_lba;
    for lba in backup_lbas {
        backup = read_copy(dev, lba, ss)?;
        backup_at = lba;
        if backup.is_ok() {
            break;
        }
    }
    let primary_sig = has_signature(&read_vec(dev, u64::from(ss), ss as usize)?);
    if primary.is_err() && backup.is_err() && !primary_sig {
        let backup_sig = has_signature(&read_vec(dev, last_lba * u64::from(ss), ss as usize)?);
        if !backup_sig {
            return Ok(None);
        }
    }

    let chosen = match (&primary, &backup) {
        (Ok(p), Ok(b)) => {
            compare(
                &p.header, &p.entries, &b.header, &b.entries, &mut diags, &err,
            );
            Some((p, "primary"))
        }
        (Ok(p), Err(e)) => {
            warn(
                &mut diags,
                format!("backup GPT (LBA {backup_at}) is unusable: {e}; the primary is intact"),
            );
            Some((p, "primary"))
        }
        (Err(e), Ok(b)) => {
            warn(
                &mut diags,
                format!(
                    "primary GPT (LBA 1) is unusable: {e}; using the backup at LBA {backup_at}"
                ),
            );
            Some((b, "backup"))
        }
        (Err(pe), Err(be)) => {
            err(&mut diags, format!("primary GPT (LBA 1) is unusable: {pe}"));
            err(
                &mut diags,
                format!("backup GPT (LBA {backup_at}) is unusable: {be}"),
            );
            None
        }
    };
    if mbr == MbrRole::Hybrid {
        warn(&mut diags, "hybrid MBR: LBA 0 holds MBR partitions besides the GPT protective entry; tools that read only the MBR see a different layout".into());
    }
    if mbr == MbrRole::Missing {
        warn(&mut diags, "GPT without a protective MBR in LBA 0".into());
    }
    let Some((copy, source)) = chosen else {
        return Ok(Some(PartitionTable::unreadable(
            super::TableKind::Gpt,
            ss,
            diags,
        )));
    };
    let h = &copy.header;
    let partitions = decode_entries(h, &copy.entries, ss);
    for p in &partitions {
        if p.first_lba > p.last_lba {
            err(
                &mut diags,
                format!(
                    "partition {}: first LBA {} is after last LBA {}",
                    p.number, p.first_lba, p.last_lba
                ),
            );
        } else if p.last_lba > last_lba {
            err(&mut diags, format!("partition {} (LBA {}–{}) extends beyond the end of the disk (last LBA {last_lba})", p.number, p.first_lba, p.last_lba));
        } else if p.first_lba < h.first_usable || p.last_lba > h.last_usable {
            err(
                &mut diags,
                format!(
                    "partition {} (LBA {}–{}) lies outside the usable area (LBA {}–{})",
                    p.number, p.first_lba, p.last_lba, h.first_usable, h.last_usable
                ),
            );
        }
    }
    super::check_overlaps(&partitions, &mut diags);
    Ok(Some(PartitionTable {
        kind: super::TableKind::Gpt,
        sector_size: ss,
        disk_id: guid_upper(&h.disk_guid),
        partitions,
        gpt: Some(GptInfo {
            source,
            primary_lba: primary.is_ok().then_some(1),
            backup_lba: backup.is_ok().then_some(backup_at),
            primary_entries_lba: primary.as_ref().ok().map(|c| c.header.entries_lba),
            backup_entries_lba: backup.as_ref().ok().map(|c| c.header.entries_lba),
            first_usable_lba: h.first_usable,
            last_usable_lba: h.last_usable,
            entry_count: h.entry_count,
            entry_size: h.entry_size,
            mbr,
        }),
        diagnostics: diags,
    }))
}

fn compare(
    p: &RawHeader,
    pe: &[u8],
    b: &RawHeader,
    be: &[u8],
    diags: &mut Vec<Diagnostic>,
    err: &dyn Fn(&mut Vec<Diagnostic>, String),
) {
    let mut diffs = Vec::new();
    if p.disk_guid != b.disk_guid {
        diffs.push(format!(
            "disk GUID {} vs {}",
            guid_upper(&p.disk_guid),
            guid_upper(&b.disk_guid)
        ));
    }
    if (p.first_usable, p.last_usable) != (b.first_usable, b.last_usable) {
        diffs.push(format!(
            "usable LBAs {}–{} vs {}–{}",
            p.first_usable, p.last_usable, b.first_usable, b.last_usable
        ));
    }
    if (p.entry_count, p.entry_size) != (b.entry_count, b.entry_size) {
        diffs.push(format!(
            "entry arrays {}×{} vs {}×{}",
            p.entry_count, p.entry_size, b.entry_count, b.entry_size
        ));
    } else if pe != be {
        let first = pe
            .chunks_exact(p.entry_size as usize)
            .zip(be.chunks_exact(b.entry_size as usize))
            .position(|(x, y)| x != y)
            .map_or(0, |i| i + 1);
        diffs.push(format!("partition entry {first} differs"));
    }
    if p.alternate_lba != b.current_lba || b.alternate_lba != 1 {
        diffs.push(format!(
            "cross-links primary→{} backup→{}",
            p.alternate_lba, b.alternate_lba
        ));
    }
    if !diffs.is_empty() {
        err(
            diags,
            format!(
                "primary (LBA 1) and backup (LBA {}) GPT disagree: {}; showing the primary",
                b.current_lba,
                diffs.join("; ")
            ),
        );
    }
}
