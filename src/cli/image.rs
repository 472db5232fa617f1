//! `lifeboat image`: `--parent`, `--incremental` and `--differential` resolved into the
//! spec, then the plan, the progress and the summary.

use super::args::ImageArgs;
use super::common::{print_json, summary_of, with_progress};
use crate::discovery::SystemPaths;
use crate::image::ImageReader;
use crate::jobs::chain::ChildKind;
use crate::jobs::{image, Job, Summary};
use crate::units::human_bytes;
use anyhow::bail;
use std::io::Write;
use std::path::PathBuf;

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
            volume_size: a.volume_size,
            full_swap: a.full_swap,
            dedup: a.dedup,
            encrypt: if a.encrypt && a.dedup && encrypted_store(&output)? {
                // the store's passphrase: --key-file's, or asked once when its key is unlocked
                Some(image::Encrypt {
                    passphrase: super::common::given_passphrase().unwrap_or_default(),
                    recovery_key: a.recovery_key,
                })
            } else if a.encrypt && !a.dry_run {
                Some(image::Encrypt {
                    passphrase: super::common::new_passphrase()?,
                    recovery_key: a.recovery_key,
                })
            } else {
                None
            },
            rescue: a.rescue.then_some(image::RescueOptions {
                retries: a.retries,
                read_timeout_secs: a.read_timeout,
                resume: a.resume,
                mapfile: a.mapfile.clone(),
                domain: a.domain.clone(),
            }),
            ..image::ImageSpec::new(a.source.clone(), output)
        })
    }
}

/// Whether the folder of `output` is an encrypted fleet store (it has a key).
fn encrypted_store(output: &std::path::Path) -> anyhow::Result<bool> {
    let dir = crate::image::volumes::parent_dir(output);
    Ok(crate::image::packs::StoreKeys::read(&dir)?.is_some())
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
    let s = summary_of!(
        with_progress(json, Job::Image(Box::new(plan.clone())))?,
        Image
    );
    if !json {
        let ratio = if s.file_bytes > 0 {
            s.read_bytes as f64 / s.file_bytes as f64
        } else {
            0.0
        };
        let chain = if s.kind == crate::image::ImageKind::Full {
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
        if s.files.len() > 1 {
            println!(
                "  in {} volumes: {} … {}",
                s.files.len(),
                s.path.display(),
                s.files[s.files.len() - 1].display()
            );
        }
        println!("root hash {}", s.root_hash);
        if s.encrypted {
            println!(
                "encrypted ({}): every command that reads it needs its passphrase",
                crate::image::crypt::CIPHER
            );
        }
        if let Some(k) = &s.recovery_key {
            println!("recovery key (shown only now; write it down and keep it apart from the passphrase):");
            println!("  {k}");
        }
        if let Some(r) = &s.rescue {
            print_rescue(&s, r);
        }
    }
    Ok(())
}

/// What a rescue could not read, after the summary line.
fn print_rescue(s: &image::ImageSummary, r: &image::RescueReport) {
    if s.missing.is_empty() {
        let retried = if r.failed_reads > 0 {
            format!(", after {} failed reads", r.failed_reads)
        } else {
            String::new()
        };
        println!(
            "rescue: every used byte was read{retried} (passes: {})",
            r.passes.join(", ")
        );
        return;
    }
    println!(
        "rescue: {} in {} ranges could NOT be read and are recorded as missing ({} failed reads, {} hung; passes: {})",
        human_bytes(s.missing_bytes),
        s.missing.len(),
        r.failed_reads,
        r.hung_reads,
        r.passes.join(", ")
    );
    if let Some(why) = &r.stopped {
        println!("  stopped early: {why}");
    }
    for m in s.missing.iter().take(20) {
        println!(
            "  missing bytes {}..{} ({})",
            m.start_bytes,
            m.end_bytes(),
            human_bytes(m.len_bytes)
        );
    }
    if s.missing.len() > 20 {
        println!(
            "  … and {} more: lifeboat info {} lists them all",
            s.missing.len() - 20,
            s.path.display()
        );
    }
    if !s.damaged.is_empty() {
        println!("what they hit:");
        let lines = image::damaged::lines(&s.damaged);
        for l in lines.iter().take(60) {
            println!("  {l}");
        }
        if lines.len() > 60 {
            println!(
                "  … {} more lines: lifeboat info --damaged {}",
                lines.len() - 60,
                s.path.display()
            );
        }
    }
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
            (crate::image::CopyMethod::UsedBlocks, _) => "used blocks".to_string(),
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
    if let Some(c) = p.encryption {
        writeln!(
            out,
            "  encrypted: {c}, every chunk, the metadata and the index{}",
            if p.parent.is_some() {
                " (the parent's key)"
            } else {
                ""
            }
        )?;
    }
    if let Some(r) = &p.rescue {
        writeln!(
            out,
            "  rescue: read errors are recorded as missing; {} retry pass{} over bad sectors, {} s read timeout",
            r.retries,
            if r.retries == 1 { "" } else { "es" },
            r.read_timeout_secs
        )?;
    }
    if let Some(why) = &p.split_reason {
        writeln!(
            out,
            "  split: into volumes of at most {} ({}, {}.001, ... as many as needed) because {why}",
            human_bytes(p.volume_size),
            p.output.display(),
            p.output.display()
        )?;
    }
    for w in p.warnings.iter().filter(|_| warnings) {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}
