//! `lifeboat info`: what an image holds and its chain, from its checksummed structures (not
//! the chunk data).

use super::common::print_json;
use crate::image::{hex, Chain, ImageReader};
use crate::jobs::chain as chains;
use crate::units::human_bytes;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `lifeboat info`.
pub fn info(file: &Path, search: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let r = ImageReader::open(file)?;
    let h = r.header();
    let f = r.footer();
    let meta = r.meta();
    // Bytes stored in this file: each frame counted once.
    let mut frames: Vec<(u64, u32)> = r
        .records()
        .iter()
        .filter(|x| x.codec.stored_here())
        .map(|x| (x.file_offset, x.stored_len))
        .collect();
    frames.sort_unstable();
    frames.dedup();
    let stored: u64 = frames.iter().map(|x| u64::from(x.1)).sum();
    let kind = crate::image::kind_of(&r);
    let chain = if h.is_full() {
        Ok(None)
    } else {
        Chain::open(file, search).map(Some)
    };
    let links = match &chain {
        Ok(Some(c)) => c.links().to_vec(),
        _ => Vec::new(),
    };
    let chain_bytes: u64 = links.iter().map(|l| l.file_bytes).sum();
    let chain_error = chain.as_ref().err().map(|e| crate::error::with_causes(e));
    if json {
        return print_json(&serde_json::json!({
            "path": file,
            "format_version": format!("{}.{}", crate::image::format::VERSION_MAJOR, h.minor),
            "image_id": hex(&h.image_id),
            "kind": kind,
            "parent_id": if h.is_full() { None } else { Some(hex(&h.parent_id)) },
            "parent_root_hash": if h.is_full() { None } else { Some(hex(&h.parent_root)) },
            "block_size": h.block_size,
            "chain": links,
            "chain_bytes": if h.is_full() { r.file_len() } else { chain_bytes },
            "chain_error": chain_error,
            "created_unix": h.created_unix,
            "source_size": h.source_size,
            "sector_size": h.sector_size,
            "chunk_size": h.chunk_size,
            "zstd_level": h.zstd_level,
            "chunk_count": f.chunk_count,
            "raw_bytes": f.raw_bytes,
            "stored_bytes": stored,
            "file_bytes": r.file_len(),
            "root_hash": hex(&f.root_hash),
            "meta": meta,
        }));
    }
    let mut o = std::io::stdout().lock();
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    writeln!(o, "image      {}", file.display())?;
    writeln!(o, "id         {}", hex(&h.image_id))?;
    writeln!(o, "kind       {kind}")?;
    writeln!(o, "created    {} (unix time)", h.created_unix)?;
    writeln!(
        o,
        "tool       {} {}",
        s(&meta["tool"]).unwrap_or_default(),
        s(&meta["tool_version"]).unwrap_or_default()
    )?;
    let src = &meta["source"];
    writeln!(
        o,
        "source     {} {} {} ({}, {}-byte sectors)",
        s(&meta["source_path"]).unwrap_or_default(),
        s(&src["model"]).unwrap_or_default(),
        s(&src["serial"])
            .map(|x| format!("serial {x}"))
            .unwrap_or_default(),
        human_bytes(h.source_size),
        h.sector_size
    )?;
    writeln!(
        o,
        "table      {} {}",
        s(&meta["table"]).unwrap_or_else(|| "none".into()),
        s(&src["disk_id"]).unwrap_or_default()
    )?;
    writeln!(
        o,
        "compressed zstd level {}, {} chunks",
        h.zstd_level,
        human_bytes(u64::from(h.chunk_size))
    )?;
    writeln!(
        o,
        "data       {} chunks, {} of disk data, {} stored, file {}",
        f.chunk_count,
        human_bytes(f.raw_bytes),
        human_bytes(stored),
        human_bytes(r.file_len())
    )?;
    writeln!(o, "root hash  {}", hex(&f.root_hash))?;
    if !h.is_full() {
        writeln!(o, "parent     {}", hex(&h.parent_id))?;
        match &chain_error {
            Some(e) => writeln!(o, "chain      BROKEN: {e}")?,
            None => {
                writeln!(
                    o,
                    "chain      {} images, {} in all (restoring this image reads them all)",
                    links.len(),
                    human_bytes(chain_bytes)
                )?;
                writeln!(
                    o,
                    "  {:<12} {:<17} {:<32} {:>10}  FILE",
                    "KIND", "TAKEN (UTC)", "ID", "SIZE"
                )?;
                for l in &links {
                    writeln!(
                        o,
                        "  {:<12} {:<17} {:<32} {:>10}  {}",
                        l.kind,
                        chains::utc_stamp(l.created_unix),
                        l.image_id,
                        human_bytes(l.file_bytes),
                        l.path.display()
                    )?;
                }
            }
        }
    }
    writeln!(o)?;
    writeln!(
        o,
        "{:<6} {:>12} {:>10} {:<6} {:<14} {:<38} {:>10} {:>10} HOW",
        "PART", "START", "SIZE", "FS", "LABEL", "UUID", "USED", "STORED"
    )?;
    for reg in meta["regions"].as_array().into_iter().flatten() {
        let n = reg["partition"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let num = |k: &str| {
            reg[k]
                .as_u64()
                .map(human_bytes)
                .unwrap_or_else(|| "-".into())
        };
        let how = match (s(&reg["method"]), s(&reg["reason"])) {
            (Some(m), Some(r)) => format!("{m}: {r}"),
            (Some(m), None) => m,
            _ => String::new(),
        };
        writeln!(
            o,
            "{:<6} {:>12} {:>10} {:<6} {:<14} {:<38} {:>10} {:>10} {}",
            if reg["partition"].is_null() {
                s(&reg["what"]).unwrap_or_default()
            } else {
                n
            },
            reg["start_bytes"].as_u64().unwrap_or(0),
            num("size_bytes"),
            s(&reg["fs"]).unwrap_or_else(|| "-".into()),
            s(&reg["label"]).unwrap_or_else(|| "-".into()),
            s(&reg["uuid"]).unwrap_or_else(|| "-".into()),
            num("used_bytes"),
            num("stored_bytes"),
            how
        )?;
    }
    for w in meta["warnings"].as_array().into_iter().flatten() {
        writeln!(o, "warning: {}", w.as_str().unwrap_or_default())?;
    }
    Ok(())
}
