//! `lifeboat prune`: deleting the images no kept image needs, after listing them and asking,
//! then proving every kept chain still opens.

use super::args::{GcArgs, PruneArgs};
use super::common::{print_json, typed};
use crate::image::Chain;
use crate::jobs::chain as chains;
use crate::units::human_bytes;
use anyhow::{bail, Context};
use std::io::{IsTerminal, Write};

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
    confirm_delete(yes, plan.delete.len(), "image")?;
    for d in &plan.delete {
        crate::image::remove_image(d).with_context(|| format!("deleting {}", d.display()))?;
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

/// Unless `yes`, asks to type "delete" before `n` `what`s are deleted; refuses when stdin is
/// not a terminal.
fn confirm_delete(yes: bool, n: usize, what: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to delete without confirmation: pass --yes (stdin is not a terminal)");
    }
    if !typed(&format!("Type delete to delete {n} {what}(s): "), "delete")? {
        bail!("not confirmed; nothing was deleted");
    }
    Ok(())
}

/// `lifeboat gc`.
pub fn gc(a: &GcArgs) -> anyhow::Result<()> {
    use crate::image::packs;
    if a.json && !(a.yes || a.dry_run) {
        bail!("--json needs --yes or --dry-run (there is no prompt in JSON mode)");
    }
    if !packs::is_store(&a.dir) {
        bail!(
            "{} is not a deduplicating store (it has no packs/ or index/; see image --dedup)",
            a.dir.display()
        );
    }
    let show = |r: &packs::GcReport, done: bool| -> anyhow::Result<()> {
        let mut o = std::io::stdout().lock();
        for p in &r.unused_packs {
            writeln!(
                o,
                "{} {}",
                if done { "deleted" } else { "delete" },
                p.display()
            )?;
        }
        writeln!(
            o,
            "{} image{} read; {} of {} pack{} unused: {} of {}{}",
            r.images,
            if r.images == 1 { "" } else { "s" },
            r.unused_packs.len(),
            r.packs,
            if r.packs == 1 { "" } else { "s" },
            human_bytes(r.unused_bytes),
            human_bytes(r.pack_bytes),
            if done { " freed" } else { " to free" }
        )?;
        Ok(())
    };
    // a scan that only reports comes first when someone is asked (every image is read
    // again for the real one, under the lock); with --yes the store is read once
    if !a.yes || a.dry_run {
        let first = packs::gc(&a.dir, true)?;
        if a.dry_run || first.unused_packs.is_empty() {
            if a.json {
                return print_json(&first);
            }
            return show(&first, false);
        }
        show(&first, false)?;
        confirm_delete(false, first.unused_packs.len(), "pack")?;
    }
    let done = packs::gc(&a.dir, false)?;
    if a.json {
        return print_json(&done);
    }
    show(&done, !done.unused_packs.is_empty())
}
