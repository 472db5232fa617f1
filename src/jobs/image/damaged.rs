//! What an image's missing ranges hit: for each region of the disk (boot area, partitions)
//! whose bytes the image records as missing, the files and filesystem structures they
//! belong to ([`crate::fsmap::damage`]), read from the image itself (missing ranges read as
//! zeros). `image --rescue` ends with this list, and `info --damaged` gives it again.

use crate::error::Result;
use crate::fsmap::damage::{self, Damage, Hit};
use crate::image::{missing_ranges, Chain, ImageDev, RegionKind};
use serde::{Deserialize, Serialize};

/// The missing ranges of one region of the disk and what they hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDamage {
    /// What the region is: "partition 2", "boot area", "end of disk"…
    pub region: String,
    /// The partition number, for a partition.
    pub partition: Option<u32>,
    /// Its filesystem, as the image recorded it.
    pub fs: Option<String>,
    /// The region's first byte on the disk; the ranges below are relative to it.
    pub start_bytes: u64,
    /// Each missing range of the region and its hits.
    pub damage: Vec<Damage>,
}

impl RegionDamage {
    /// The files hit (data or their inode / MFT record), each once, in the order found.
    pub fn files(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for h in self.damage.iter().flat_map(|d| d.hits.iter()) {
            let p = match h {
                Hit::File { path, .. } | Hit::FileRecord { path, .. } => path.as_str(),
                _ => continue,
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

/// What the leaf image of `chain` is missing, region by region. Regions without a
/// filesystem map (the boot area, gaps, the end of the disk) report what they hold.
pub fn damaged_files(chain: &Chain) -> Result<Vec<RegionDamage>> {
    let leaf = chain.leaf();
    let missing = missing_ranges(leaf.records());
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let dev = ImageDev::new(chain);
    let mut out = Vec::new();
    for r in &leaf.meta().regions {
        let (start, end) = (r.start_bytes, r.start_bytes + r.size_bytes);
        let ranges: Vec<(u64, u64)> = missing
            .iter()
            .filter(|m| m.start_bytes < end && m.end_bytes() > start)
            .map(|m| {
                let s = m.start_bytes.max(start);
                (s - start, m.end_bytes().min(end) - s)
            })
            .collect();
        if ranges.is_empty() {
            continue;
        }
        let damage = match r.what {
            RegionKind::Partition | RegionKind::Filesystem | RegionKind::Disk => {
                let part = crate::blockdev::Slice::new(&dev, start, r.size_bytes);
                damage::damaged(&part, &ranges)?
            }
            RegionKind::BootArea | RegionKind::Gap | RegionKind::EndOfDisk => ranges
                .iter()
                .map(|&(s, l)| Damage {
                    start: s,
                    len: l,
                    hits: vec![Hit::Metadata {
                        what: match r.what {
                            RegionKind::BootArea => {
                                "the boot area (MBR, partition table, boot loader)".into()
                            }
                            RegionKind::EndOfDisk => {
                                "the end of the disk (the backup GPT lives there)".into()
                            }
                            _ => "space between partitions (boot loaders may use it)".into(),
                        },
                    }],
                })
                .collect(),
        };
        out.push(RegionDamage {
            region: match r.partition {
                Some(n) => format!("partition {n}"),
                None => r.what.to_string(),
            },
            partition: r.partition,
            fs: r.fs.clone(),
            start_bytes: start,
            damage,
        });
    }
    Ok(out)
}

/// The damage as lines for a person: per region, each range and what it hit.
pub fn lines(report: &[RegionDamage]) -> Vec<String> {
    let mut v = Vec::new();
    for r in report {
        let files = r.files();
        v.push(format!(
            "{}{}: {} missing range{}{}",
            r.region,
            r.fs.as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            r.damage.len(),
            if r.damage.len() == 1 { "" } else { "s" },
            if files.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} file{} damaged",
                    files.len(),
                    if files.len() == 1 { "" } else { "s" }
                )
            }
        ));
        for d in &r.damage {
            let at = r.start_bytes + d.start;
            for h in &d.hits {
                let what = match h {
                    Hit::File { path, bytes } => format!("file {path} ({bytes} bytes lost)"),
                    Hit::FileRecord { path, record } => {
                        format!("file {path} (its {record} is lost)")
                    }
                    Hit::Metadata { what } => what.clone(),
                    Hit::Free => "free space (harmless)".into(),
                    Hit::Unknown { why } => format!("unknown: {why}"),
                };
                v.push(format!("  bytes {at}..{}: {what}", at + d.len));
            }
        }
    }
    v
}
