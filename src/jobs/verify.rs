//! `verify`: re-reads every chunk of an image and checks it against its hash, after
//! [`ImageReader::open`] has checked every structure (header, metadata, index, footer,
//! root hash). Decoding runs on every core.

use super::events::{CancelToken, Phase, Reporter};
use crate::error::Result;
use crate::image::{hex, ImageReader};
use crate::pipeline::{self, Shape};
use serde::Serialize;
use std::path::Path;

/// What `verify` reports for an intact image.
#[derive(Debug, Clone, Serialize)]
pub struct VerifySummary {
    /// The image.
    pub path: std::path::PathBuf,
    /// Chunks checked.
    pub chunks: u64,
    /// Disk bytes they describe.
    pub raw_bytes: u64,
    /// Bytes stored in the file.
    pub file_bytes: u64,
    /// Root hash, hex.
    pub root_hash: String,
}

/// Opens and verifies `path`.
pub fn run(
    path: &Path,
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<VerifySummary> {
    let reader = ImageReader::open(path)?;
    reporter.phase(Phase::Verify, Some(reader.footer().raw_bytes));
    verify_reader(&reader, threads, reporter, cancel)
}

/// Verifies every chunk of an open image, reporting [`Phase::Verify`] progress.
pub fn verify_reader(
    reader: &ImageReader,
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<VerifySummary> {
    let n = reader.records().len();
    let mut next = 0usize;
    let mut done = 0u64;
    pipeline::run(
        Shape::for_threads(threads),
        cancel,
        |mut stored: Vec<u8>| {
            if next == n {
                return Ok(None);
            }
            let i = next;
            next += 1;
            reader.read_stored(i, &mut stored)?;
            Ok(Some((i, stored)))
        },
        |(i, stored): (usize, Vec<u8>)| {
            let mut raw = pipeline::trade_spare(Vec::new());
            let r = reader.decode_chunk(i, &stored, &mut raw);
            let len = raw.len() as u64;
            pipeline::trade_spare(raw);
            r.map(|()| (len, stored))
        },
        |(len, stored)| {
            done += len;
            reporter.progress(Phase::Verify, done);
            Ok(stored)
        },
    )?;
    reporter.progress_final(Phase::Verify, done);
    Ok(VerifySummary {
        path: reader.path().to_path_buf(),
        chunks: n as u64,
        raw_bytes: done,
        file_bytes: reader.file_len(),
        root_hash: hex(&reader.footer().root_hash),
    })
}
