//! `merge`: a self-contained full image of one chain member's disk state (a synthetic full).
//!
//! Every record of the member is read from wherever the chain holds it, checked against its
//! hash, and stored again in the new file, chunk by chunk (records of one chunk-size window
//! that touch are compressed as one frame, as `image` does). The new image describes exactly
//! the same records (disk ranges and hashes) as the member; that is checked after writing,
//! and the new file is then verified on its own. Nothing in the chain is modified, so the
//! older members can be deleted afterwards (see `lifeboat prune`).

use super::verify::{self, Scope};
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::image::{
    format, hex, Chain, ChainLink, Codec, EncodedChunk, FrameRead, Header, ImageWriter, Record,
};
use crate::image::{ImageKind, ImageMeta};
use crate::pipeline::{self, Shape};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    /// The chain member whose state the new image holds.
    pub image: PathBuf,
    /// The new full image (refused if it exists).
    pub output: PathBuf,
    /// Folders to look for ancestors in, besides the image's own.
    pub search: Vec<PathBuf>,
    /// zstd level (`None`: the member's).
    pub level: Option<i32>,
    /// Worker threads (0 = every core).
    pub threads: usize,
}

/// The printable plan of a merge.
#[derive(Debug, Clone, Serialize)]
pub struct MergePlan {
    /// The member merged.
    pub image: PathBuf,
    /// The new file.
    pub output: PathBuf,
    /// The chain read, member first.
    pub chain: Vec<ChainLink>,
    /// Disk bytes the new image describes.
    pub raw_bytes: u64,
    /// Records.
    pub records: usize,
    /// zstd level.
    pub level: i32,
    #[serde(skip)]
    search: Vec<PathBuf>,
    #[serde(skip)]
    threads: usize,
    /// The volume size when the new image is split (its folder is on FAT); 0 for one file.
    pub volume_size: u64,
    /// Why it is split, when it is.
    pub split_reason: Option<String>,
}

/// What a finished merge reports.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MergeSummary {
    /// The new full image.
    pub path: PathBuf,
    /// Its image ID, hex.
    pub image_id: String,
    /// Its root hash, hex.
    pub root_hash: String,
    /// Disk bytes it describes.
    pub raw_bytes: u64,
    /// Its size.
    pub file_bytes: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Opens and checks the chain; writes nothing.
pub fn plan(spec: &MergeSpec) -> Result<MergePlan> {
    let chain = Chain::open(&spec.image, &spec.search)?;
    crate::image::volumes::refuse_existing(&spec.output)?;
    let level = spec.level.unwrap_or(chain.leaf().header().zstd_level);
    if !(1..=19).contains(&level) {
        return Err(Error::Refused {
            path: spec.output.clone(),
            reason: format!("zstd level {level} is outside 1..=19"),
        });
    }
    let raw_bytes = chain.leaf().footer().raw_bytes;
    let records = chain.leaf().records().len() as u64;
    let (volume_size, split_reason) = super::image::volume_plan(
        &spec.output,
        None,
        super::image::largest_image(raw_bytes, records, chain.leaf().header().block_size),
    )?;
    Ok(MergePlan {
        volume_size,
        split_reason,
        image: spec.image.clone(),
        output: spec.output.clone(),
        chain: chain.links().to_vec(),
        raw_bytes: chain.leaf().footer().raw_bytes,
        records: chain.leaf().records().len(),
        level,
        search: spec.search.clone(),
        threads: spec.threads,
    })
}

/// Leaf records grouped into the chunks of the new image: touching records inside one
/// chunk-size window.
fn chunks(records: &[Record], chunk_size: u64) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if let Some(last) = out.last_mut() {
            let prev = &records[last.end - 1];
            if prev.disk_offset + u64::from(prev.raw_len) == r.disk_offset
                && records[last.start].disk_offset / chunk_size == r.disk_offset / chunk_size
            {
                last.end = i + 1;
                continue;
            }
        }
        out.push(i..i + 1);
    }
    out
}

/// Re-encodes one chunk: the records keep their ranges and hashes; the non-zero ones are
/// compressed together as one frame.
fn encode_chunk(level: i32, recs: &[Record], bytes: &[&[u8]]) -> Result<EncodedChunk> {
    let mut frame = Vec::new();
    let mut out = Vec::with_capacity(recs.len());
    for (r, b) in recs.iter().zip(bytes) {
        let mut r = *r;
        (r.file_offset, r.stored_len, r.frame_offset) = (0, 0, 0);
        if !r.codec.reads_as_zero() {
            r.frame_offset = frame.len() as u32;
            r.codec = Codec::Zstd;
            frame.extend_from_slice(b);
        }
        out.push(r);
    }
    if frame.is_empty() {
        return Ok(EncodedChunk {
            records: out,
            frame_codec: Codec::Zero,
            data: Vec::new(),
        });
    }
    crate::image::encode::seal_frame(level, out, &frame)
}

/// A pipeline item of merge: a group of the member's records, the frames that hold them,
/// those frames' stored bytes where the producer read them (a FUSE store), and the buffer.
type Group = (
    std::ops::Range<usize>,
    Vec<FrameRead>,
    Vec<Option<(Vec<u8>, std::ops::Range<usize>)>>,
    Vec<u8>,
);

/// Runs a merge plan.
pub fn run(plan: &MergePlan, reporter: &Reporter, cancel: &CancelToken) -> Result<MergeSummary> {
    let started = Instant::now();
    let chain = Chain::open(&plan.image, &plan.search)?;
    let now: Vec<&str> = chain.links().iter().map(|l| l.root_hash.as_str()).collect();
    let then: Vec<&str> = plan.chain.iter().map(|l| l.root_hash.as_str()).collect();
    if now != then {
        return Err(Error::Refused {
            path: plan.image.clone(),
            reason: "the chain changed since the plan was made".into(),
        });
    }
    let leaf = chain.leaf();
    let lh = leaf.header().clone();
    let image_id = *uuid::Uuid::new_v4().as_bytes();
    let header = Header {
        // missing ranges (a rescued disk) stay missing, and need the format that has them
        minor: if leaf.records().iter().any(|r| r.codec == Codec::Missing) {
            format::VERSION_MINOR_MISSING
        } else {
            format::VERSION_MINOR
        },
        flags: 0,
        image_id,
        parent_id: [0; 16],
        parent_root: [0; 32],
        // The disk state's time, so "newest image of this disk" still orders by state.
        created_unix: lh.created_unix,
        chunk_size: lh.chunk_size,
        zstd_level: plan.level,
        source_size: lh.source_size,
        sector_size: lh.sector_size,
        block_size: lh.block_size,
        volume_size: plan.volume_size,
        // a merged image keeps the chain's key and slots
        keys: lh.keys.clone(),
    };
    let records = leaf.records();
    let groups = chunks(records, u64::from(lh.chunk_size.max(1)));
    let mut writer = ImageWriter::create(&plan.output, header)?;
    reporter.phase(Phase::Image, Some(plan.raw_bytes));
    let mut next = 0usize;
    let mut done = 0u64;
    let level = plan.level;
    let regions: Vec<(u64, u64)> = leaf
        .meta()
        .regions
        .iter()
        .map(|r| (r.start_bytes, r.size_bytes))
        .collect();
    let mut stored_per_region = vec![0u64; regions.len()];
    pipeline::run(
        Shape::for_threads(plan.threads),
        cancel,
        // The producer hands out groups of records; the workers read their frames (so
        // several reads are in flight, bypassing the page cache where the store allows),
        // except on a FUSE store, where the producer reads them, in order.
        |buf: Vec<u8>| {
            let Some(g) = groups.get(next) else {
                return Ok(None);
            };
            next += 1;
            let frs = chain.frame_reads(g.clone())?;
            let mut read = Vec::with_capacity(frs.len());
            for fr in &frs {
                let mut stored = Vec::new();
                let range = chain.read_in_order(fr, &mut stored)?;
                read.push(range.map(|r| (stored, r)));
            }
            Ok(Some((g.clone(), frs, read, buf)))
        },
        |(g, frs, read, mut buf): Group| {
            // Gather the chunk's bytes from every frame that holds a part of it.
            buf.clear();
            let mut spans = vec![(0usize, 0usize); g.len()];
            let mut own = pipeline::trade_spare(Vec::new());
            let mut frame = Vec::new();
            for (fr, read) in frs.iter().zip(read) {
                match read {
                    Some((stored, range)) => chain.decode(fr, &stored[range], &mut frame)?,
                    None => {
                        let range = chain.read_in_worker(fr, None, &mut own)?;
                        chain.decode(fr, &own[range], &mut frame)?;
                    }
                }
                for (k, (i, _)) in fr.parts.iter().enumerate() {
                    let b = chain.part(fr, k, &frame)?;
                    if let Some(slot) = spans.get_mut(i - g.start) {
                        *slot = (buf.len(), b.len());
                    }
                    buf.extend_from_slice(b);
                }
            }
            pipeline::trade_spare(own);
            let recs = records.get(g.clone()).unwrap_or_default();
            let bytes: Vec<&[u8]> = spans.iter().map(|&(s, l)| &buf[s..s + l]).collect();
            let c = encode_chunk(level, recs, &bytes)?;
            Ok((c, buf))
        },
        |(c, buf)| {
            done += c.raw_len();
            if let Some(first) = c.records.first() {
                let at = first.disk_offset;
                if let Some(i) = regions.iter().position(|&(s, l)| at >= s && at < s + l) {
                    stored_per_region[i] += c.data.len() as u64;
                }
            }
            writer.push(c)?;
            reporter.progress(Phase::Image, done);
            Ok(buf)
        },
    )?;
    reporter.progress_final(Phase::Image, done);
    let meta = merged_meta(&chain, plan, &stored_per_region);
    let summary = writer.finish(&meta)?;

    // The new image must describe exactly the member's records, and be intact on its own.
    let merged = match Chain::open(&summary.path, &[]) {
        Ok(c) => c,
        Err(e) => {
            crate::image::volumes::remove_files(&summary.files);
            return Err(e);
        }
    };
    let same =
        merged.leaf().records().len() == records.len()
            && merged.leaf().records().iter().zip(records).all(|(a, b)| {
                (a.disk_offset, a.raw_len, a.hash) == (b.disk_offset, b.raw_len, b.hash)
            });
    if !same {
        crate::image::volumes::remove_files(&summary.files);
        return Err(Error::Refused {
            path: summary.path.clone(),
            reason: "the merged image does not describe the same disk content; it was deleted"
                .into(),
        });
    }
    if let Err(e) = verify::verify_chain(&merged, Scope::All, plan.threads, reporter, cancel) {
        // failed or cancelled: nothing that looks like a finished image stays behind
        crate::image::volumes::remove_files(&summary.files);
        return Err(e);
    }
    Ok(MergeSummary {
        path: summary.path,
        image_id: hex(&image_id),
        root_hash: summary.root_hash,
        raw_bytes: summary.raw_bytes,
        file_bytes: summary.file_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The member's metadata, marked as a full image with where it came from.
fn merged_meta(chain: &Chain, plan: &MergePlan, stored: &[u64]) -> ImageMeta {
    let mut meta = chain.leaf().meta().clone();
    for (r, s) in meta.regions.iter_mut().zip(stored) {
        r.stored_bytes = Some(*s);
    }
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    meta.kind = Some(ImageKind::Full);
    meta.parent = None;
    meta.chain_name = file_stem(&plan.output);
    meta.merged_unix = Some(unix);
    meta.tool_version = env!("CARGO_PKG_VERSION").into();
    meta.merged_from = chain.links().to_vec();
    meta
}

fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(off: u64, len: u32) -> Record {
        Record {
            disk_offset: off,
            raw_len: len,
            stored_len: 0,
            file_offset: 0,
            codec: Codec::Zstd,
            frame_offset: 0,
            hash: [0; 32],
        }
    }

    #[test]
    fn records_group_into_touching_runs_within_a_window() {
        let r = vec![
            rec(0, 100),
            rec(100, 100), // touches
            rec(300, 100), // gap
            rec(400, 624), // touches, ends at the window end (1024)
            rec(1024, 10), // next window
        ];
        assert_eq!(chunks(&r, 1024), vec![0..2, 2..4, 4..5]);
    }
}
