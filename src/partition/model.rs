//! The parsed, validated view of a partition table. Units: byte offsets and sizes, plus LBAs
//! in the table's own sector size.

use serde::{Serialize, Serializer};

/// Which partitioning scheme a disk uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// GUID partition table (with a protective or hybrid MBR in LBA 0).
    Gpt,
    /// Classic DOS/MBR table, possibly with logical partitions in an extended partition.
    Mbr,
}

impl TableKind {
    /// "gpt" or "mbr", as used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Gpt => "gpt",
            TableKind::Mbr => "mbr",
        }
    }
}

/// What LBA 0 of a GPT disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MbrRole {
    /// One 0xEE entry and nothing else, as the UEFI spec requires.
    Protective,
    /// A 0xEE entry plus MBR entries mirroring some GPT partitions (old Macs, some dual boots).
    Hybrid,
    /// No valid MBR at all (the 0x55AA signature is missing).
    Missing,
}

/// A partition type: a GPT type GUID or an MBR system byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartType {
    /// GPT partition type GUID.
    Gpt(uuid::Uuid),
    /// MBR partition type byte (0x83 Linux, 0x07 NTFS/exFAT, 0x0c FAT32 LBA…).
    Mbr(u8),
}

impl std::fmt::Display for PartType {
    /// Upper-case GUID (as sfdisk prints it) or `0x83`-style hex byte.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartType::Gpt(g) => write!(f, "{}", g.hyphenated().to_string().to_uppercase()),
            PartType::Mbr(b) => write!(f, "0x{b:02x}"),
        }
    }
}

impl Serialize for PartType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One partition, validated against the disk's size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// Number as the kernel names it: GPT entry index + 1; MBR slot 1–4, logicals from 5.
    pub number: u32,
    /// First LBA (table sector size).
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
    /// Byte offset of the partition's start.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Type GUID or type byte.
    #[serde(rename = "type")]
    pub part_type: PartType,
    /// Human name of the type, when known ("EFI System", "Linux filesystem"…).
    pub type_name: Option<&'static str>,
    /// GPT partition name (UTF-16 in the entry); `None` on MBR or when empty.
    pub name: Option<String>,
    /// GPT unique partition GUID (upper-case); `None` on MBR.
    pub uuid: Option<String>,
    /// GPT attribute bits; MBR: 0x80 in bit 7 when the boot flag is set.
    pub attributes: u64,
    /// MBR logical partition inside an extended partition.
    pub logical: bool,
    /// MBR extended partition container (holds logicals, no filesystem).
    pub extended: bool,
}

impl Partition {
    /// One past the last byte.
    pub fn end_bytes(&self) -> u64 {
        self.start_bytes.saturating_add(self.size_bytes)
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Unusual but usable: a stale or damaged backup GPT, a hybrid MBR.
    Warning,
    /// The table cannot be trusted as it is: overlapping partitions, a partition beyond the
    /// disk's end, primary and backup disagreeing. Destructive jobs must refuse such a disk.
    Error,
}

/// A precise finding about a table, for humans and for `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Warning or error.
    pub severity: Severity,
    /// One lowercase sentence naming the structure, LBA and values involved.
    pub message: String,
}

/// GPT header facts worth showing and needed later to rewrite the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GptInfo {
    /// Which header the partitions were read from: "primary" or "backup".
    pub source: &'static str,
    /// LBA of the primary header (1) if it is valid.
    pub primary_lba: Option<u64>,
    /// LBA of a valid backup header, if any.
    pub backup_lba: Option<u64>,
    /// First LBA of the primary entry array, as the valid primary header records it.
    pub primary_entries_lba: Option<u64>,
    /// First LBA of the backup entry array, as the valid backup header records it.
    pub backup_entries_lba: Option<u64>,
    /// First LBA usable by partitions.
    pub first_usable_lba: u64,
    /// Last LBA usable by partitions (inclusive).
    pub last_usable_lba: u64,
    /// Number of entries in the array.
    pub entry_count: u32,
    /// Size of each entry in bytes.
    pub entry_size: u32,
    /// What LBA 0 holds.
    pub mbr: MbrRole,
}

/// A partition table read from a disk, with everything that looked wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    /// GPT or MBR.
    pub kind: TableKind,
    /// Sector size the LBAs are in.
    pub sector_size: u32,
    /// GPT disk GUID (upper-case) or MBR disk signature as `0x1234abcd`.
    pub disk_id: String,
    /// Partitions sorted by number.
    pub partitions: Vec<Partition>,
    /// GPT header details; `None` for MBR.
    pub gpt: Option<GptInfo>,
    /// Findings, most severe first is not guaranteed; filter by severity.
    pub diagnostics: Vec<Diagnostic>,
}

impl PartitionTable {
    /// A table of `kind` that could not be read at all: no partitions, the given findings.
    pub fn unreadable(kind: TableKind, sector_size: u32, diagnostics: Vec<Diagnostic>) -> Self {
        PartitionTable {
            kind,
            sector_size,
            disk_id: String::new(),
            partitions: Vec::new(),
            gpt: None,
            diagnostics,
        }
    }

    /// The byte ranges `(start, len)` of the table's own structures on a disk of `disk_size`
    /// bytes: LBA 0; for GPT both headers and both entry arrays where the valid headers put
    /// them; for MBR the first EBR of each extended partition (later EBRs lie in the gaps
    /// inside it). A copy of the disk must hold these even where they lie outside the areas
    /// it copies anyway (a header may place its entries anywhere). Clamped to the disk;
    /// entry arrays are bounded by [`super::gpt::MAX_ENTRY_ARRAY_BYTES`] when read.
    pub fn structure_areas(&self, disk_size: u64) -> Vec<(u64, u64)> {
        let ss = u64::from(self.sector_size);
        let lba = |l: u64| l.checked_mul(ss);
        let mut areas = vec![(Some(0), ss)];
        if let Some(g) = &self.gpt {
            let entries = u64::from(g.entry_count)
                .saturating_mul(u64::from(g.entry_size))
                .min(super::gpt::MAX_ENTRY_ARRAY_BYTES);
            for h in [g.primary_lba, g.backup_lba].into_iter().flatten() {
                areas.push((lba(h), ss));
            }
            for e in [g.primary_entries_lba, g.backup_entries_lba]
                .into_iter()
                .flatten()
            {
                areas.push((lba(e), entries));
            }
        }
        for x in self.partitions.iter().filter(|p| p.extended) {
            areas.push((Some(x.start_bytes), ss));
        }
        areas
            .into_iter()
            .filter_map(|(start, len)| {
                let start = start.filter(|&s| s < disk_size)?;
                Some((start, len.min(disk_size - start)))
            })
            .filter(|&(_, len)| len > 0)
            .collect()
    }

    /// True when any finding is an [`Severity::Error`].
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}
