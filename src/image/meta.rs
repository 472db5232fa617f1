//! The image metadata section, typed: [`ImageMeta`] is what the imaging job writes (as JSON,
//! inside the checksummed `LBMETA` section, see the [module docs](super)) and what `info`,
//! `restore`, `merge` and chain discovery read back.
//!
//! Compatibility rules:
//! - Field names are the JSON names `info --json` has always printed; they never change.
//! - Every field has a default (`#[serde(default)]` on each struct), so older images that lack
//!   a field (the golden fixtures hold only `tool` and `source.size_bytes`) still read.
//! - Unknown fields are ignored when reading, so newer images read in older tools. The source
//!   disk's inspect report keeps fields this type does not name (`SourceDisk::report`).
//! - Kinds are enums serialized as the strings earlier versions wrote (`"full"`,
//!   `"used-blocks"`, `"boot area"`...). An unknown kind is a metadata error, not a guess.

use crate::partition::TableKind;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What an image holds relative to other images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// Every used block of the disk; needs no other image.
    #[default]
    Full,
    /// Only what its parent chain lacks; the parent is the newest image of any kind.
    Incremental,
    /// Only what its parent chain lacks; the parent is the newest full image.
    Differential,
}

impl ImageKind {
    /// "full", "incremental" or "differential", as metadata records it.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Full => "full",
            ImageKind::Incremental => "incremental",
            ImageKind::Differential => "differential",
        }
    }
}

/// What part of the disk a region is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RegionKind {
    /// Before the first partition: MBR, GPT header and entries, boot loader gap.
    #[serde(rename = "boot area")]
    BootArea,
    /// Unallocated space between partitions.
    #[serde(rename = "gap")]
    Gap,
    /// A partition.
    #[default]
    #[serde(rename = "partition")]
    Partition,
    /// After the last partition (the backup GPT lives in its last MiB).
    #[serde(rename = "end of disk")]
    EndOfDisk,
    /// A device without a partition table that holds a filesystem.
    #[serde(rename = "filesystem")]
    Filesystem,
    /// A device without a partition table or a known filesystem.
    #[serde(rename = "disk")]
    Disk,
}

impl RegionKind {
    /// The words metadata and plans use.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionKind::BootArea => "boot area",
            RegionKind::Gap => "gap",
            RegionKind::Partition => "partition",
            RegionKind::EndOfDisk => "end of disk",
            RegionKind::Filesystem => "filesystem",
            RegionKind::Disk => "disk",
        }
    }
}

/// How a region's bytes are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CopyMethod {
    /// Only the blocks the filesystem's own maps prove used.
    #[serde(rename = "used-blocks")]
    UsedBlocks,
    /// Every byte (all-zero chunks are still elided).
    #[default]
    #[serde(rename = "all")]
    All,
    /// A large unallocated gap: only its first and last MiB.
    #[serde(rename = "partial")]
    Partial,
    /// Not in the image (a partition not selected).
    #[serde(rename = "skipped")]
    Skipped,
}

impl CopyMethod {
    /// The words metadata and plans use.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMethod::UsedBlocks => "used-blocks",
            CopyMethod::All => "all",
            CopyMethod::Partial => "partial",
            CopyMethod::Skipped => "skipped",
        }
    }
}

words!(ImageKind, RegionKind, CopyMethod);

/// One region of the source disk and what was (or, in a plan, will be) copied from it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Region {
    /// What part of the disk this is.
    pub what: RegionKind,
    /// Partition number, for partitions.
    pub partition: Option<u32>,
    /// First byte.
    pub start_bytes: u64,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Filesystem (blkid name), for partitions.
    pub fs: Option<String>,
    /// Filesystem label.
    pub label: Option<String>,
    /// Filesystem UUID.
    pub uuid: Option<String>,
    /// How it is copied.
    pub method: CopyMethod,
    /// Why the whole region is copied, or why it is skipped or partial.
    pub reason: Option<String>,
    /// Bytes the filesystem says are used (`None` without a map).
    pub used_bytes: Option<u64>,
    /// Bytes read from the source.
    pub copy_bytes: u64,
    /// Bytes the image stores for it after compression (metadata only; `None` in a plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// Chunks that hold it (metadata only; `None` in a plan).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
}

impl Region {
    /// True when the region's data is in the image (a partition that was not skipped).
    pub fn is_selected_partition(&self) -> bool {
        self.what == RegionKind::Partition && self.method != CopyMethod::Skipped
    }

    /// True when `disk_offset` lies inside the region.
    pub fn contains(&self, disk_offset: u64) -> bool {
        disk_offset >= self.start_bytes && disk_offset - self.start_bytes < self.size_bytes
    }
}

/// The parent a child image names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ParentRef {
    /// The parent's file name when the child was written (where chain discovery looks first).
    pub file: Option<String>,
    /// The parent's absolute path when the child was written.
    pub path: Option<PathBuf>,
    /// Its image ID, hex.
    pub image_id: String,
    /// Its root hash, hex.
    pub root_hash: String,
    /// Its kind.
    pub kind: ImageKind,
}

/// The source disk as `lifeboat inspect --json` reported it when imaged, kept as written (so
/// `info --json` shows every field, null ones included), with typed accessors for the fields
/// chain discovery matches on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceDisk {
    /// The report's fields.
    pub report: serde_json::Map<String, serde_json::Value>,
}

impl SourceDisk {
    /// The source disk from a report that serializes like `lifeboat inspect --json` (the
    /// image layer does not know the report type); `None` if it does not serialize to an
    /// object.
    pub fn of_report<T: Serialize>(report: &T) -> Option<SourceDisk> {
        match serde_json::to_value(report) {
            Ok(serde_json::Value::Object(report)) => Some(SourceDisk { report }),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        self.report.get(key)?.as_str().map(str::to_string)
    }

    /// Device path or image file that was read.
    pub fn path(&self) -> Option<String> {
        self.text("path")
    }

    /// Model, when the bus reports one.
    pub fn model(&self) -> Option<String> {
        self.text("model")
    }

    /// Serial number, when the bus reports one.
    pub fn serial(&self) -> Option<String> {
        self.text("serial")
    }

    /// The partition table's disk GUID or MBR signature.
    pub fn disk_id(&self) -> Option<String> {
        self.text("disk_id")
    }

    /// A loop device's backing file.
    pub fn backing_file(&self) -> Option<String> {
        self.text("backing_file")
    }

    /// Disk size in bytes.
    pub fn size_bytes(&self) -> Option<u64> {
        self.report.get("size_bytes")?.as_u64()
    }
}

/// The compression codec of every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// zstd frames (the only codec so far).
    #[default]
    Zstd,
}

/// How the chunks were made.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Compression {
    /// The codec.
    pub codec: Codec,
    /// zstd level (1..=19).
    pub level: i32,
    /// Raw bytes per chunk, at most.
    pub chunk_size: u32,
    /// Bytes per record (the deduplication unit).
    pub block_size: u32,
}

/// The metadata section of an image.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageMeta {
    /// "lifeboat".
    pub tool: String,
    /// The version that wrote the image.
    pub tool_version: String,
    /// When the image was taken (Unix seconds).
    pub created_unix: u64,
    /// Full, incremental or differential (`None` in images that did not record it: see
    /// [`super::kind_of`]).
    pub kind: Option<ImageKind>,
    /// The chain's name: the full image's file stem, inherited by its children.
    pub chain_name: String,
    /// The parent, for a child image.
    pub parent: Option<ParentRef>,
    /// The source disk's report when imaged (`None` when it could not be inspected).
    pub source: Option<SourceDisk>,
    /// The path that was read.
    pub source_path: PathBuf,
    /// Source size in bytes.
    pub size_bytes: u64,
    /// Logical sector size of the source.
    pub sector_size: u32,
    /// The partition table kind, if the source had a usable one.
    pub table: Option<TableKind>,
    /// The table's raw bytes (first MiB / GPT areas as read), hex.
    pub raw_table_hex: String,
    /// Every region in disk order.
    pub regions: Vec<Region>,
    /// Partitions whose data is in the image.
    pub selected_partitions: Vec<u32>,
    /// Warnings given when imaging.
    pub warnings: Vec<String>,
    /// How the chunks were made.
    pub compression: Compression,
    /// For an image made by `merge`: when it was merged (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_unix: Option<u64>,
    /// For an image made by `merge`: the chain it was merged from, the member first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<super::ChainLink>,
}

impl ImageMeta {
    /// Parses the JSON body of the metadata section.
    pub fn from_json(body: &[u8]) -> serde_json::Result<ImageMeta> {
        serde_json::from_slice(body)
    }

    /// The region that holds `disk_offset`, if any.
    pub fn region_at(&self, disk_offset: u64) -> Option<&Region> {
        self.regions.iter().find(|r| r.contains(disk_offset))
    }

    /// The region of partition `number`.
    pub fn partition(&self, number: u32) -> Option<&Region> {
        self.regions
            .iter()
            .find(|r| r.what == RegionKind::Partition && r.partition == Some(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_fixtures_minimal_metadata_reads_with_defaults() {
        let m = ImageMeta::from_json(
            br#"{"source": {"size_bytes": 1048576}, "tool": "lifeboat golden"}"#,
        )
        .unwrap();
        assert_eq!(m.tool, "lifeboat golden");
        assert_eq!(m.kind, None);
        assert_eq!(m.source.unwrap().size_bytes(), Some(1 << 20));
        assert!(m.regions.is_empty() && m.parent.is_none());
    }

    #[test]
    fn kinds_keep_their_json_words_and_unknown_ones_are_refused() {
        let r = Region {
            what: RegionKind::EndOfDisk,
            method: CopyMethod::UsedBlocks,
            stored_bytes: Some(5),
            ..Region::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["what"], "end of disk");
        assert_eq!(v["method"], "used-blocks");
        assert_eq!(v["stored_bytes"], 5);
        let plan_region = serde_json::to_value(Region::default()).unwrap();
        assert!(plan_region.get("stored_bytes").is_none());
        assert_eq!(serde_json::from_value::<Region>(v).unwrap(), r);
        assert!(ImageMeta::from_json(br#"{"kind": "sideways"}"#).is_err());
        assert!(ImageMeta::from_json(br#"{"regions": [{"method": "guessed"}]}"#).is_err());
    }

    #[test]
    fn a_whole_metadata_round_trips_and_keeps_the_source_report() {
        let json = br#"{"tool":"lifeboat","tool_version":"0.1.0","created_unix":7,"kind":"incremental",
            "chain_name":"sda","parent":{"file":"a.lbi","path":"/x/a.lbi","image_id":"ab","root_hash":"cd","kind":"full"},
            "source":{"path":"/dev/sda","model":"M","serial":"S","disk_id":null,"size_bytes":9,"transport":"sata","partitions":[]},
            "source_path":"/dev/sda","size_bytes":9,"sector_size":512,"table":"gpt","raw_table_hex":"00",
            "regions":[{"what":"partition","partition":1,"start_bytes":0,"size_bytes":9,"fs":"ext4","label":null,"uuid":null,
            "method":"all","reason":"x","used_bytes":null,"copy_bytes":9,"stored_bytes":3,"chunks":1}],
            "selected_partitions":[1],"warnings":["w"],"compression":{"codec":"zstd","level":3,"chunk_size":4194304,"block_size":65536}}"#;
        let m = ImageMeta::from_json(json).unwrap();
        assert_eq!(m.kind, Some(ImageKind::Incremental));
        assert_eq!(m.table, Some(TableKind::Gpt));
        let src = m.source.as_ref().unwrap();
        assert_eq!(src.report["transport"], "sata");
        assert_eq!(src.serial().as_deref(), Some("S"));
        assert_eq!(src.disk_id(), None);
        assert_eq!(m.partition(1).unwrap().fs.as_deref(), Some("ext4"));
        assert_eq!(m.region_at(8).unwrap().partition, Some(1));
        assert!(m.region_at(9).is_none());
        let again: serde_json::Value = serde_json::to_value(&m).unwrap();
        let orig: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert_eq!(again, orig);
    }
}
