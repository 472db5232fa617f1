//! `image`, `verify`, `info` and `restore`: plans, confirmation, progress and summaries.

use super::args::{CloneArgs, ImageArgs, MergeArgs, PruneArgs, RestoreArgs, VerifyArgs};
use super::progress::{self, Mode};
use crate::discovery::SystemPaths;
use crate::image::{hex, Chain, ImageReader};
use crate::jobs::chain::{self as chains, ChildKind};
use crate::jobs::run::{self, VerifyJob};
use crate::jobs::{clone, image, merge, restore, CancelToken, Job, Summary};
use crate::units::human_bytes;
use anyhow::{bail, Context};
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Runs a planned job on the job runner's thread, rendering its events here (a progress line,
/// log lines, or NDJSON with `json`), with Ctrl-C turned into cancellation. Returns the typed
/// summary, or the job's error (shared with its `Finished` event).
fn with_progress(json: bool, job: Job) -> anyhow::Result<Summary> {
    crate::blockdev::sys::catch_interrupts();
    let cancel = CancelToken::new();
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let handle = run::spawn(job, tx, cancel.clone()).context("starting the job")?;
    std::thread::scope(|s| {
        let renderer = s.spawn(move || progress::render(rx, Mode::pick(json)));
        while !handle.is_finished() {
            if crate::blockdev::sys::signalled() {
                cancel.cancel();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = renderer.join();
    });
    match handle.join() {
        Ok(r) => r.map_err(anyhow::Error::from),
        Err(_) => anyhow::bail!("the job's thread panicked"),
    }
}

/// The summary of the job that was run, or an error naming the mix-up (a job returns its own
/// kind of summary, so this is an invariant, reported rather than panicked on).
macro_rules! summary_of {
    ($s:expr, $variant:ident) => {
        match $s {
            Summary::$variant(s) => s,
            other => anyhow::bail!("internal error: a {} job returned {other:?}", stringify!($variant)),
        }
    };
}

fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Resolves `--parent`, `--incremental DIR` and `--differential DIR` into a parent and an
/// output path.
fn resolve_chain(a: &ImageArgs) -> anyhow::Result<(Option<image::ParentSpec>, PathBuf)> {
    let found = match (&a.incremental, &a.differential) {
        (Some(d), _) => Some((d, ChildKind::Incremental)),
        (_, Some(d)) => Some((d, ChildKind::Differential)),
        _ => None,
    };
    if let Some((dir, kind)) = found {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // library errors name the disk or the folder
        let (mut spec, named) =
            image::ParentSpec::newest_in(dir, &a.source, a.sector_size, kind, now)?;
        spec.search = a.search.clone();
        spec.force_other_disk = a.force_other_disk;
        return Ok((Some(spec), a.output.clone().unwrap_or(named)));
    }
    let Some(output) = a.output.clone() else {
        bail!("-o FILE is required unless --incremental or --differential names a folder");
    };
    let Some(p) = &a.parent else {
        return Ok((None, output));
    };
    let full = ImageReader::open(p)?.header().is_full();
    let spec = image::ParentSpec {
        path: p.clone(),
        kind: if full {
            ChildKind::Differential
        } else {
            ChildKind::Incremental
        },
        search: a.search.clone(),
        force_other_disk: a.force_other_disk,
    };
    Ok((Some(spec), output))
}

impl TryFrom<&ImageArgs> for image::ImageSpec {
    type Error = anyhow::Error;

    /// Finds the parent of a chained image (which reads the source disk and the parent).
    fn try_from(a: &ImageArgs) -> anyhow::Result<Self> {
        let (parent, output) = resolve_chain(a)?;
        Ok(image::ImageSpec {
            partitions: a.partitions.clone(),
            level: a.level,
            threads: a.threads,
            block_size: a.block_kib.saturating_mul(1024),
            file_sector_size: a.sector_size,
            parent,
            ..image::ImageSpec::new(a.source.clone(), output)
        })
    }
}

/// `lifeboat image`.
pub fn image(a: &ImageArgs) -> anyhow::Result<()> {
    let spec = image::ImageSpec::try_from(a)?;
    let (dry_run, json) = (a.dry_run, a.json);
    let paths = SystemPaths::default();
    let plan = image::plan(&spec, &paths)?;
    if dry_run {
        if json {
            return print_json(&plan);
        }
        print_image_plan(&mut std::io::stdout().lock(), &plan, true)?;
        return Ok(());
    }
    if !json {
        print_image_plan(&mut std::io::stderr().lock(), &plan, false)?;
    }
    let s = summary_of!(with_progress(json, Job::Image(Box::new(plan.clone())))?, Image);
    if !json {
        let ratio = if s.file_bytes > 0 {
            s.read_bytes as f64 / s.file_bytes as f64
        } else {
            0.0
        };
        let chain = if s.kind == "full" {
            String::new()
        } else {
            format!(
                " ({} of it already in the chain)",
                human_bytes(s.parent_bytes)
            )
        };
        println!(
            "{} image {} written and verified: {} read{chain}, {} stored ({ratio:.2}:1), {} chunks, {:.1} s, {}/s",
            s.kind,
            s.path.display(),
            human_bytes(s.read_bytes),
            human_bytes(s.file_bytes),
            s.chunk_count,
            s.seconds,
            human_bytes((s.read_bytes as f64 / s.seconds.max(0.001)) as u64)
        );
        println!("root hash {}", s.root_hash);
    }
    Ok(())
}

/// Prints the plan; `warnings` is false when the job's warning events will print them.
fn print_image_plan(
    out: &mut impl Write,
    p: &image::ImagePlan,
    warnings: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "plan: image {} ({}, {} table, {}-byte sectors) into {}",
        p.source.display(),
        human_bytes(p.size_bytes),
        p.table.unwrap_or("no"),
        p.sector_size,
        p.output.display()
    )?;
    if let Some(par) = &p.parent {
        writeln!(
            out,
            "  {} on top of {} ({}, a chain of {} image{}); the chain holds {} blocks, which are not stored again",
            par.kind.as_str(),
            par.path.display(),
            par.parent_kind,
            par.chain_length,
            if par.chain_length == 1 { "" } else { "s" },
            par.known_blocks
        )?;
    }
    for r in &p.regions {
        let what = match r.partition {
            Some(n) => format!("partition {n}"),
            None => r.what.to_string(),
        };
        let fs =
            r.fs.as_deref()
                .map(|f| match &r.label {
                    Some(l) => format!(" {f} \"{l}\""),
                    None => format!(" {f}"),
                })
                .unwrap_or_default();
        let how = match (r.method, &r.reason) {
            ("used-blocks", _) => "used blocks".to_string(),
            (m, Some(reason)) => format!("{m}: {reason}"),
            (m, None) => m.to_string(),
        };
        writeln!(
            out,
            "  {what:<14} {:>10} at {:>12}{fs}: copy {} ({how})",
            human_bytes(r.size_bytes),
            r.start_bytes,
            human_bytes(r.copy_bytes)
        )?;
    }
    writeln!(
        out,
        "  total: read {} in {} chunks, zstd level {}, {} threads",
        human_bytes(p.copy_bytes),
        p.chunks,
        p.level,
        p.threads
    )?;
    for w in p.warnings.iter().filter(|_| warnings) {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}

/// The partition (or other region) of the image that holds disk byte `offset`.
fn region_of(meta: &serde_json::Value, offset: u64) -> Option<String> {
    let regions = meta["regions"].as_array()?;
    regions.iter().find_map(|r| {
        let s = r["start_bytes"].as_u64()?;
        let l = r["size_bytes"].as_u64()?;
        if offset < s || offset >= s + l {
            return None;
        }
        let fs = r["fs"]
            .as_str()
            .map(|f| format!(", {f}"))
            .unwrap_or_default();
        Some(match r["partition"].as_u64() {
            Some(n) => format!("partition {n} (bytes {s}..{}{fs})", s + l),
            None => format!(
                "{} (bytes {s}..{})",
                r["what"].as_str().unwrap_or("region"),
                s + l
            ),
        })
    })
}

/// Adds which partition a damaged chunk belongs to.
fn locate(e: anyhow::Error, file: &Path) -> anyhow::Error {
    let job_error = e
        .downcast_ref::<std::sync::Arc<crate::Error>>()
        .map(|a| &**a);
    if let Some(crate::Error::Image {
        source: crate::image::FormatError::Chunk { disk_offset, .. },
        path,
    }) = job_error
    {
        let off = *disk_offset;
        let holder = if path.as_os_str().is_empty() {
            file
        } else {
            path.as_path()
        };
        if let Ok(r) = ImageReader::open(holder) {
            if let Some(where_) = region_of(r.meta(), off) {
                return e.context(format!("the damaged chunk is in {where_}"));
            }
        }
    }
    e
}

impl From<&VerifyArgs> for VerifyJob {
    fn from(a: &VerifyArgs) -> Self {
        VerifyJob {
            path: a.file.clone(),
            search: a.search.clone(),
            threads: a.threads,
        }
    }
}

/// `lifeboat verify`.
pub fn verify(a: &VerifyArgs) -> anyhow::Result<()> {
    let (file, json) = (a.file.as_path(), a.json);
    let job = Job::Verify(VerifyJob::from(a));
    let s = summary_of!(with_progress(json, job).map_err(|e| locate(e, file))?, Verify);
    if !json {
        let chain = if s.chain.len() > 1 {
            format!(
                " ({} of it read from {} ancestor{}: {})",
                human_bytes(s.ancestor_bytes),
                s.chain.len() - 1,
                if s.chain.len() == 2 { "" } else { "s" },
                s.chain
                    .iter()
                    .skip(1)
                    .map(|l| l.path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        println!(
            "{}: intact: {} chunks, {} of disk data{chain}, {} file, root hash {}",
            s.path.display(),
            s.chunks,
            human_bytes(s.raw_bytes),
            human_bytes(s.file_bytes),
            s.root_hash
        );
    }
    Ok(())
}

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

impl From<&RestoreArgs> for restore::RestoreSpec {
    fn from(a: &RestoreArgs) -> Self {
        restore::RestoreSpec {
            image: a.file.clone(),
            target: a.target.clone(),
            verify: !a.no_verify,
            threads: a.threads,
            search: a.search.clone(),
            grow_last: a.grow_last,
            new_disk_id: a.new_disk_id,
        }
    }
}

/// `lifeboat restore`.
pub fn restore(a: &RestoreArgs) -> anyhow::Result<()> {
    let spec = restore::RestoreSpec::from(a);
    let plan = restore::plan(&spec, &SystemPaths::default())?;
    if a.dry_run {
        if a.json {
            return print_json(&plan);
        }
        print_restore_plan(&mut std::io::stdout().lock(), &plan, true)?;
        return Ok(());
    }
    if !a.json {
        print_restore_plan(&mut std::io::stderr().lock(), &plan, false)?;
    }
    confirm_overwrite(&a.target, a.yes, a.json)?;
    let s = summary_of!(with_progress(a.json, Job::Restore(Box::new(plan.clone())))?, Restore);
    if !a.json {
        println!(
            "restored {} onto {}: {} written, {} verified by reading back ({}), {:.1} s, {}/s; partitions: {}",
            a.file.display(),
            s.target.display(),
            human_bytes(s.written_bytes),
            human_bytes(s.verified_bytes),
            s.verify_method,
            s.seconds,
            human_bytes((s.written_bytes as f64 / s.seconds.max(0.001)) as u64),
            s.partition_nodes
        );
        if let Some(g) = &s.grown {
            println!("{}", grown_line(g));
        }
    }
    Ok(())
}

/// One line on what `--grow-last` did.
pub(super) fn grown_line(g: &crate::resize::FsGrowReport) -> String {
    let size = |b: Option<u64>| b.map_or_else(|| "?".into(), human_bytes);
    let mut s = format!(
        "grew partition {} to {}; {} {} -> {} ({})",
        g.partition,
        human_bytes(g.partition_bytes),
        g.fs.as_deref().unwrap_or("no filesystem"),
        size(g.old_bytes),
        size(g.new_bytes),
        g.method
    );
    if let Some(n) = &g.note {
        s.push_str(&format!("; note: {n}"));
    }
    s
}

/// The table edits of a restore or clone plan.
pub(super) fn print_layout(
    out: &mut impl Write,
    l: &crate::partition::edit::Layout,
    source_size: u64,
    target_size: u64,
) -> std::io::Result<()> {
    if let Some(m) = l.gpt_move.as_ref().filter(|_| l.rewrites_gpt()) {
        writeln!(
            out,
            "  backup GPT {} LBA {} (entries at {}), last usable LBA {}",
            if source_size == target_size {
                "rewritten at"
            } else {
                "moves to"
            },
            m.backup_header_lba,
            m.backup_entries_lba,
            m.last_usable_lba
        )?;
    }
    if let Some(g) = &l.grow {
        writeln!(
            out,
            "  --grow-last: partition {} grows from {} to {}{}, then its filesystem{}",
            g.number,
            human_bytes(g.old_size_bytes),
            human_bytes(g.new_size_bytes),
            g.extended
                .map(|x| format!(" (with extended partition {x})"))
                .unwrap_or_default(),
            g.limit
                .as_ref()
                .map(|w| format!(" (limit: {w})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(why) = &l.grow_skipped {
        writeln!(out, "  --grow-last: {why}")?;
    }
    if let Some(id) = &l.new_disk_id {
        writeln!(out, "  new disk ID {id} (--new-disk-id)")?;
    }
    Ok(())
}

/// Prints the plan; `warnings` is false when the job's warning events will print them.
fn print_restore_plan(
    out: &mut impl Write,
    p: &restore::RestorePlan,
    warnings: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "plan: restore {} onto {} ({}, {})",
        p.image.display(),
        p.target.display(),
        p.target_kind,
        human_bytes(p.target_size)
    )?;
    if p.chain.len() > 1 {
        writeln!(
            out,
            "  {} image: the disk as it was at {} UTC; reads {} from {} ancestor{} ({})",
            p.kind,
            chains::utc_stamp(p.chain.first().map_or(0, |l| l.created_unix)),
            human_bytes(p.ancestor_bytes),
            p.chain.len() - 1,
            if p.chain.len() == 2 { "" } else { "s" },
            p.chain
                .iter()
                .skip(1)
                .map(|l| l.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    writeln!(
        out,
        "  imaged disk {} with {} table, {}-byte sectors: {} (needs at least {})",
        human_bytes(p.source_size),
        p.table.unwrap_or("no"),
        p.sector_size,
        p.size_change,
        human_bytes(p.min_target_size)
    )?;
    if let Some(l) = &p.layout {
        print_layout(out, l, p.source_size, p.target_size)?;
    }
    for part in &p.partitions {
        writeln!(
            out,
            "  partition {:<3} {:>10} at {:>12} {:<6} {:<14} {}",
            part.number,
            human_bytes(part.size_bytes),
            part.start_bytes,
            part.fs.as_deref().unwrap_or("-"),
            part.label.as_deref().unwrap_or("-"),
            part.method
        )?;
    }
    writeln!(
        out,
        "  write {} in {} chunks, tables and first MiB last; read-back verification {}",
        human_bytes(p.write_bytes),
        p.chunks,
        if p.verify { "on" } else { "OFF" }
    )?;
    for w in p.warnings.iter().filter(|_| warnings) {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}

impl From<&CloneArgs> for clone::CloneSpec {
    fn from(a: &CloneArgs) -> Self {
        clone::CloneSpec {
            source: a.source.clone(),
            target: a.target.clone(),
            verify: !a.no_verify,
            threads: a.threads,
            grow_last: a.grow_last,
            new_disk_id: a.new_disk_id,
            file_sector_size: a.sector_size,
        }
    }
}

/// `lifeboat clone`.
pub fn clone(a: &CloneArgs) -> anyhow::Result<()> {
    let spec = clone::CloneSpec::from(a);
    let (yes, dry_run, json) = (a.yes, a.dry_run, a.json);
    let plan = clone::plan(&spec, &SystemPaths::default())?;
    if dry_run {
        if json {
            return print_json(&plan);
        }
        print_clone_plan(&mut std::io::stdout().lock(), &plan, true)?;
        return Ok(());
    }
    if !json {
        print_clone_plan(&mut std::io::stderr().lock(), &plan, false)?;
    }
    confirm_overwrite(&spec.target, yes, json)?;
    let s = summary_of!(with_progress(json, Job::Clone(Box::new(plan.clone())))?, Clone);
    if !json {
        let rate = |secs: f64| human_bytes((s.copied_bytes as f64 / secs.max(0.001)) as u64);
        println!(
            "cloned {} onto {}: {} copied in {:.1} s ({}/s), {} verified by reading back ({}) in {:.1} s; {:.1} s in all; partitions: {}",
            s.source.display(),
            s.target.display(),
            human_bytes(s.copied_bytes),
            s.copy_seconds,
            rate(s.copy_seconds),
            human_bytes(s.verified_bytes),
            s.verify_method,
            s.verify_seconds,
            s.seconds,
            s.partition_nodes
        );
        if let Some(g) = &s.grown {
            println!("{}", grown_line(g));
        }
    }
    Ok(())
}

/// Asks for the target's path to be typed unless `yes`; refuses without a terminal.
fn confirm_overwrite(target: &Path, yes: bool, json: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if json || !std::io::stdin().is_terminal() {
        bail!(
            "refusing to overwrite {} without confirmation: pass --yes (stdin is not a terminal)",
            target.display()
        );
    }
    let prompt = format!(
        "All data on {} will be destroyed. Type its path to continue: ",
        target.display()
    );
    if !typed(&prompt, &target.to_string_lossy())? {
        bail!("not confirmed; {} was not touched", target.display());
    }
    Ok(())
}

/// Prints the clone plan; `warnings` is false when the job's warning events will print them.
fn print_clone_plan(
    out: &mut impl Write,
    p: &clone::ClonePlan,
    warnings: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "plan: clone {} ({}) onto {} ({}, {})",
        p.source.display(),
        human_bytes(p.source_size),
        p.target.display(),
        p.target_kind,
        human_bytes(p.target_size)
    )?;
    writeln!(
        out,
        "  {} table, {}-byte sectors: {} (needs at least {})",
        p.table.unwrap_or("no"),
        p.sector_size,
        p.size_change,
        human_bytes(p.min_target_size)
    )?;
    if let Some(l) = &p.layout {
        print_layout(out, l, p.source_size, p.target_size)?;
    }
    for r in &p.regions {
        let name = match r.partition {
            Some(n) => format!("partition {n}"),
            None => r.what.to_string(),
        };
        writeln!(
            out,
            "  {:<13} {:>10} at {:>12} {:<6} {:<14} copy {:>10} ({})",
            name,
            human_bytes(r.size_bytes),
            r.start_bytes,
            r.fs.as_deref().unwrap_or("-"),
            r.label.as_deref().unwrap_or("-"),
            human_bytes(r.copy_bytes),
            r.method
        )?;
    }
    writeln!(
        out,
        "  copy {}, tables and first MiB last; read-back verification {}",
        human_bytes(p.copy_bytes),
        if p.verify { "on" } else { "OFF" }
    )?;
    for w in p.warnings.iter().filter(|_| warnings) {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}

/// Shows `prompt` on stderr and reads one line: true when the user typed `expected`.
fn typed(prompt: &str, expected: &str) -> anyhow::Result<bool> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    Ok(answer.trim() == expected)
}

impl From<&MergeArgs> for merge::MergeSpec {
    fn from(a: &MergeArgs) -> Self {
        merge::MergeSpec {
            image: a.file.clone(),
            output: a.output.clone(),
            search: a.search.clone(),
            level: a.level,
            threads: a.threads,
        }
    }
}

/// `lifeboat merge`.
pub fn merge(a: &MergeArgs) -> anyhow::Result<()> {
    let spec = merge::MergeSpec::from(a);
    let json = a.json;
    let plan = merge::plan(&spec)?;
    if !json {
        eprintln!(
            "plan: merge {} ({} images in its chain) into the full image {}: {} of disk data, zstd level {}",
            plan.image.display(),
            plan.chain.len(),
            plan.output.display(),
            human_bytes(plan.raw_bytes),
            plan.level
        );
    }
    let s = summary_of!(with_progress(json, Job::Merge(Box::new(plan.clone())))?, Merge);
    if !json {
        println!(
            "full image {} written and verified: the same disk content as {}, {} of disk data, {} file, {:.1} s",
            s.path.display(),
            plan.image.display(),
            human_bytes(s.raw_bytes),
            human_bytes(s.file_bytes),
            s.seconds
        );
        println!("root hash {}", s.root_hash);
        println!(
            "it needs no other file; `lifeboat prune {} --keep {}` deletes the members no kept image needs",
            s.path.parent().map_or_else(|| ".".into(), |p| p.display().to_string()),
            s.path.display()
        );
    }
    Ok(())
}

/// `lifeboat prune`.
pub fn prune(a: &PruneArgs) -> anyhow::Result<()> {
    let (dir, keep, search) = (a.dir.as_path(), a.keep.as_slice(), a.search.as_slice());
    let (yes, dry_run, json) = (a.yes, a.dry_run, a.json);
    let plan = chains::plan_prune(dir, keep, search)?;
    if json && !(yes || dry_run) {
        bail!("--json needs --yes or --dry-run (there is no prompt in JSON mode)");
    }
    if !json {
        let mut o = std::io::stdout().lock();
        for (k, files) in &plan.keep {
            writeln!(
                o,
                "keep {} (needs {} file{})",
                k.display(),
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            )?;
            for f in files.iter().skip(1) {
                writeln!(o, "  needs {}", f.display())?;
            }
        }
        for d in &plan.delete {
            writeln!(o, "delete {}", d.display())?;
        }
        for u in &plan.untouched {
            writeln!(o, "leave {} (another disk or chain)", u.display())?;
        }
        writeln!(
            o,
            "{} image{} to delete, {} freed",
            plan.delete.len(),
            if plan.delete.len() == 1 { "" } else { "s" },
            human_bytes(plan.freed_bytes)
        )?;
    }
    if dry_run || plan.delete.is_empty() {
        if json {
            return print_json(&plan);
        }
        return Ok(());
    }
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("refusing to delete without confirmation: pass --yes (stdin is not a terminal)");
        }
        let prompt = format!("Type delete to delete {} image(s): ", plan.delete.len());
        if !typed(&prompt, "delete")? {
            bail!("not confirmed; nothing was deleted");
        }
    }
    for d in &plan.delete {
        std::fs::remove_file(d).with_context(|| format!("deleting {}", d.display()))?;
    }
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
    // Prove it: every kept image still opens with its whole chain.
    for k in keep {
        Chain::open(k, search).with_context(|| {
            format!(
                "after pruning, {} no longer opens (this is a bug)",
                k.display()
            )
        })?;
    }
    if json {
        return print_json(&plan);
    }
    println!(
        "deleted {} image(s); every kept image's chain was reopened and is complete",
        plan.delete.len()
    );
    Ok(())
}
