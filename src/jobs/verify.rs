//! `verify`: re-reads every chunk an image needs, from the image itself and from its
//! ancestors, and checks each against its hash, after [`Chain::open`] has checked every
//! structure (header, metadata, index, footer, root hash) of every member and every link of
//! the chain. Decoding runs on every core.

use crate::error::Result;
use crate::event::{CancelToken, Phase, Reporter};
use crate::image::{hex, Chain, ChainLink, FrameRead};
use crate::pipeline::{self, Shape};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What `verify` reports for an intact image.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct VerifySummary {
    /// The image.
    pub path: PathBuf,
    /// Chunks (records) checked.
    pub chunks: u64,
    /// Disk bytes they describe.
    pub raw_bytes: u64,
    /// Of those, bytes read from ancestors.
    pub ancestor_bytes: u64,
    /// Size of the image file.
    pub file_bytes: u64,
    /// Root hash, hex.
    pub root_hash: String,
    /// The chain, the image first and its full image last.
    pub chain: Vec<ChainLink>,
    /// Source bytes the image records as missing (a rescue could not read them): the image
    /// is intact, but the disk it describes has holes there.
    #[serde(default)]
    pub missing_bytes: u64,
    /// Those ranges, in disk order.
    #[serde(default)]
    pub missing: Vec<crate::image::MissingRange>,
}

/// Which records to re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every record, wherever its bytes are (the whole disk state).
    All,
    /// Only the records stored in the leaf itself (right after writing it; the chain's links
    /// and resolution are checked by opening it).
    Own,
}

/// Opens `path` with its chain (looking next to it, then in `search`) and verifies it.
pub fn run(
    path: &Path,
    search: &[PathBuf],
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<VerifySummary> {
    let chain = Chain::open(path, search)?;
    verify_chain(&chain, Scope::All, threads, reporter, cancel)
}

/// Re-reads and checks the records of the chain's leaf in `scope`, reporting
/// [`Phase::Verify`] progress.
pub fn verify_chain(
    chain: &Chain,
    scope: Scope,
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<VerifySummary> {
    let leaf = chain.leaf();
    let missing = crate::image::missing_ranges(leaf.records());
    let n = leaf.records().len();
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        if scope == Scope::All || chain.locate(i)?.member == 0 {
            items.push(i);
        }
    }
    let reads: Vec<FrameRead> = chain.frame_reads(items)?;
    let total: u64 = reads
        .iter()
        .flat_map(|f| f.parts.iter())
        .map(|(_, l)| u64::from(l.record.raw_len))
        .sum();
    reporter.phase(Phase::Verify, Some(total));
    let mut next = 0usize;
    let mut done = 0u64;
    let mut chunks = 0u64;
    let mut ancestor_bytes = 0u64;
    let chunk_bytes = chain.max_chunk_size();
    pipeline::run(
        Shape::for_threads(super::target::frame_workers(threads, chunk_bytes)),
        cancel,
        // The workers read the frames (so several reads are in flight, bypassing the page
        // cache where the store allows; on a FUSE store the producer reads them, in order)
        // and check them.
        |mut stored: Vec<u8>| {
            let Some(fr) = reads.get(next) else {
                return Ok(None);
            };
            next += 1;
            let read = chain.read_in_order(fr, &mut stored)?;
            Ok(Some((fr, read, stored)))
        },
        |(fr, read, mut stored): (&FrameRead, Option<std::ops::Range<usize>>, Vec<u8>)| {
            let range = chain.read_in_worker(fr, read, &mut stored)?;
            let mut frame = pipeline::trade_spare(Vec::new());
            let r = chain.decode_checked(fr, &stored[range], &mut frame);
            pipeline::trade_spare(frame);
            r.map(|len| (fr, len, stored))
        },
        |(fr, len, stored)| {
            done += len;
            chunks += fr.parts.len() as u64;
            if fr.member != 0 {
                ancestor_bytes += len;
            }
            reporter.progress(Phase::Verify, done);
            Ok(stored)
        },
    )?;
    reporter.progress_final(Phase::Verify, done);
    Ok(VerifySummary {
        path: leaf.path().to_path_buf(),
        chunks,
        raw_bytes: done,
        ancestor_bytes,
        file_bytes: leaf.file_len(),
        root_hash: hex(&leaf.footer().root_hash),
        chain: chain.links().to_vec(),
        missing_bytes: missing.iter().map(|m| m.len_bytes).sum(),
        missing,
    })
}
