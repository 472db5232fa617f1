//! `lifeboat clone`: the plan, the typed confirmation, the progress and the summary.

use super::args::CloneArgs;
use super::common::{
    confirm_overwrite, grown_line, print_json, print_layout, summary_of, with_progress,
};
use crate::discovery::SystemPaths;
use crate::jobs::{clone, Job, Summary};
use crate::units::human_bytes;
use std::io::Write;

impl From<&CloneArgs> for clone::CloneSpec {
    fn from(a: &CloneArgs) -> Self {
        clone::CloneSpec {
            source: a.source.clone(),
            target: a.target.clone(),
            verify: !a.no_verify,
            threads: a.threads,
            grow_last: a.grow_last,
            new_disk_id: a.new_disk_id,
            fit: a.fit.options(),
            file_sector_size: a.sector_size,
            full_swap: a.full_swap,
        }
    }
}

/// `lifeboat clone`.
pub fn clone(a: &CloneArgs) -> anyhow::Result<super::Exit> {
    let spec = clone::CloneSpec::from(a);
    let (yes, dry_run, json) = (a.yes, a.dry_run, a.json);
    let plan = clone::plan(&spec, &SystemPaths::default())?;
    if dry_run {
        if json {
            print_json(&plan)?;
            return Ok(super::Exit::Ok);
        }
        print_clone_plan(&mut std::io::stdout().lock(), &plan, true)?;
        return Ok(super::Exit::Ok);
    }
    if !json {
        print_clone_plan(&mut std::io::stderr().lock(), &plan, false)?;
    }
    if a.boot_test {
        // before anything is written: a missing QEMU must not surface after the job
        super::boottest::preflight(&spec.target, &a.boot)?;
    }
    confirm_overwrite(&spec.target, yes, json)?;
    let s = summary_of!(
        with_progress(json, Job::Clone(Box::new(plan.clone())))?,
        Clone
    );
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
    if a.boot_test {
        return super::boottest::check(
            &spec.target,
            &a.boot,
            &[],
            crate::access::DEFAULT_CACHE_BYTES,
            json,
        );
    }
    Ok(super::Exit::Ok)
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
        human_bytes(p.target.source_size),
        p.target.path.display(),
        p.target.kind,
        human_bytes(p.target.size)
    )?;
    writeln!(
        out,
        "  {} table, {}-byte sectors: {} (needs at least {})",
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
        if p.target.verify { "on" } else { "OFF" }
    )?;
    for w in p.warnings.iter().filter(|_| warnings) {
        writeln!(out, "  warning: {w}")?;
    }
    Ok(())
}
