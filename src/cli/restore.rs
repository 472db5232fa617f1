//! `lifeboat restore`: the plan, the typed confirmation, the progress and the summary.

use super::args::RestoreArgs;
use super::common::{
    confirm_overwrite, grown_line, print_json, print_layout, summary_of, with_progress,
};
use crate::discovery::SystemPaths;
use crate::jobs::chain as chains;
use crate::jobs::{restore, Job, Summary};
use crate::units::human_bytes;
use std::io::Write;

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
            fit: a.fit.options(),
        }
    }
}

/// `lifeboat restore`.
pub fn restore(a: &RestoreArgs) -> anyhow::Result<super::Exit> {
    let spec = restore::RestoreSpec::from(a);
    let plan = restore::plan(&spec, &SystemPaths::default())?;
    if a.dry_run {
        if a.json {
            print_json(&plan)?;
            return Ok(super::Exit::Ok);
        }
        print_restore_plan(&mut std::io::stdout().lock(), &plan, true)?;
        return Ok(super::Exit::Ok);
    }
    if !a.json {
        print_restore_plan(&mut std::io::stderr().lock(), &plan, false)?;
    }
    if a.boot_test {
        // before anything is written: a missing QEMU must not surface after the job
        super::boottest::preflight(&a.target, &a.boot)?;
    }
    confirm_overwrite(&a.target, a.yes, a.json)?;
    let s = summary_of!(
        with_progress(a.json, Job::Restore(Box::new(plan.clone())))?,
        Restore
    );
    if !a.json {
        let what = if s.missing.is_empty() {
            "restored"
        } else {
            "restored WITH MISSING DATA"
        };
        println!(
            "{what} {} onto {}: {} written, {} verified by reading back ({}), {:.1} s, {}/s; partitions: {}",
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
        if !s.missing.is_empty() {
            println!(
                "warning: {}",
                crate::jobs::restore::missing_warning(&s.missing, "were written as zeros")
            );
        }
    }
    if a.boot_test {
        return super::boottest::check(
            &a.target,
            &a.boot,
            &[],
            crate::access::DEFAULT_CACHE_BYTES,
            a.json,
        );
    }
    Ok(super::Exit::Ok)
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
        p.target.path.display(),
        p.target.kind,
        human_bytes(p.target.size)
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
        human_bytes(p.target.source_size),
        p.target.table.unwrap_or("no"),
        p.target.sector_size,
        p.target.size_change,
        human_bytes(p.target.min_size)
    )?;
    if let Some(l) = &p.target.layout {
        print_layout(out, l, p.target.source_size, p.target.size)?;
    }
    if let Some(f) = &p.target.fit {
        super::common::print_fit(out, f)?;
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
                .map_or_else(|| "unknown".to_string(), |m| m.to_string())
        )?;
    }
    let (about, pieces) = match &p.target.fit {
        Some(_) => (
            "about ",
            "the used blocks of each partition at its new place".to_string(),
        ),
        None => ("", format!("{} chunks", p.chunks)),
    };
    writeln!(
        out,
        "  write {about}{} in {pieces}, tables and first MiB last; read-back verification {}",
        human_bytes(p.write_bytes),
        if p.target.verify { "on" } else { "OFF" }
    )?;
    for w in p.warnings.iter().filter(|_| warnings) {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}
