//! `lifeboat info`: what an image holds and its chain, from its checksummed structures (not
//! the chunk data).

use super::common::print_json;
use crate::image::{hex, Chain, ImageReader};
use crate::jobs::chain as chains;
use crate::units::human_bytes;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `lifeboat info`.
pub fn info(file: &Path, search: &[PathBuf], json: bool, damaged: bool) -> anyhow::Result<()> {
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
    let missing = crate::image::missing_ranges(r.records());
    let missing_bytes: u64 = missing.iter().map(|m| m.len_bytes).sum();
    // --damaged reads the filesystems in the image (the whole chain)
    let damage = if damaged && !missing.is_empty() {
        let c = Chain::open(file, search)?;
        Some(crate::jobs::image::damaged::damaged_files(&c)?)
    } else {
        None
    };
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
            "volume_size": h.volume_size,
            "encryption": h.keys.as_ref().map(|k| serde_json::json!({
                "cipher": crate::image::crypt::CIPHER,
                "key_id": hex(&k.key_id),
                "slots": k.slots.iter().map(|s| s.kind).collect::<Vec<_>>(),
            })),
            "files": r.files(),
            "root_hash": hex(&f.root_hash),
            "missing_bytes": missing_bytes,
            "missing": missing,
            "damaged": damage,
            "meta": meta,
        }));
    }
    let mut o = std::io::stdout().lock();
    writeln!(o, "image      {}", file.display())?;
    writeln!(o, "id         {}", hex(&h.image_id))?;
    writeln!(o, "kind       {kind}")?;
    writeln!(o, "created    {} (unix time)", h.created_unix)?;
    writeln!(o, "tool       {} {}", meta.tool, meta.tool_version)?;
    let src = meta.source.clone().unwrap_or_default();
    writeln!(
        o,
        "source     {} {} {} ({}, {}-byte sectors)",
        meta.source_path.display(),
        src.model().unwrap_or_default(),
        src.serial()
            .map(|x| format!("serial {x}"))
            .unwrap_or_default(),
        human_bytes(h.source_size),
        h.sector_size
    )?;
    writeln!(
        o,
        "table      {} {}",
        meta.table.map_or("none", |t| t.as_str()),
        src.disk_id().unwrap_or_default()
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
    if h.volume_size > 0 {
        let files = r.files();
        writeln!(
            o,
            "volumes    {} of {} each (the last may be shorter): {} … {}",
            files.len(),
            human_bytes(h.volume_size),
            files[0].display(),
            files[files.len() - 1].display()
        )?;
    }
    if let Some(k) = &h.keys {
        writeln!(
            o,
            "encrypted  {}, key ID {}, {} key slots (lifeboat key list)",
            crate::image::crypt::CIPHER,
            hex(&k.key_id),
            k.slots.len()
        )?;
    }
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
    let bytes = |v: Option<u64>| v.map(human_bytes).unwrap_or_else(|| "-".into());
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    for reg in &meta.regions {
        let how = match &reg.reason {
            Some(r) => format!("{}: {r}", reg.method),
            None => reg.method.to_string(),
        };
        writeln!(
            o,
            "{:<6} {:>12} {:>10} {:<6} {:<14} {:<38} {:>10} {:>10} {}",
            reg.partition
                .map_or_else(|| reg.what.to_string(), |n| n.to_string()),
            reg.start_bytes,
            bytes(Some(reg.size_bytes)),
            text(&reg.fs),
            text(&reg.label),
            text(&reg.uuid),
            bytes(reg.used_bytes),
            bytes(reg.stored_bytes),
            how
        )?;
    }
    for w in &meta.warnings {
        writeln!(o, "warning: {w}")?;
    }
    if !missing.is_empty() {
        writeln!(o)?;
        writeln!(
            o,
            "MISSING: {} in {} ranges could not be read when the image was taken; a restore writes zeros there",
            human_bytes(missing_bytes),
            missing.len()
        )?;
        writeln!(o, "{:>14} {:>14} {:>10}  WHERE", "START", "END", "SIZE")?;
        for m in &missing {
            let at = meta
                .regions
                .iter()
                .find(|g| g.contains(m.start_bytes))
                .map(|g| match g.partition {
                    Some(n) => format!("partition {n}"),
                    None => g.what.to_string(),
                })
                .unwrap_or_default();
            writeln!(
                o,
                "{:>14} {:>14} {:>10}  {at}",
                m.start_bytes,
                m.end_bytes(),
                human_bytes(m.len_bytes)
            )?;
        }
        match &damage {
            Some(d) => {
                writeln!(o)?;
                writeln!(o, "DAMAGED: what the missing ranges hit")?;
                for l in crate::jobs::image::damaged::lines(d) {
                    writeln!(o, "  {l}")?;
                }
            }
            None => writeln!(
                o,
                "(`lifeboat info --damaged {}` lists the files they hit)",
                file.display()
            )?,
        }
    } else if damaged {
        writeln!(o)?;
        writeln!(o, "No missing ranges: nothing is damaged.")?;
    }
    Ok(())
}
