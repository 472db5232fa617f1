//! `lifeboat list` and `lifeboat inspect`: disks as tables ([`super::render`]) or JSON.

use super::args::{InspectArgs, ListArgs};
use super::render;
use crate::discovery::SystemPaths;
use crate::inspect;
use anyhow::Context;
use std::io::Write;

/// `lifeboat list`.
pub(super) fn list(a: &ListArgs) -> anyhow::Result<()> {
    let paths = SystemPaths {
        sys: a.sysfs_root.clone(),
        ..SystemPaths::default()
    };
    let disks = inspect::list(&paths).context("listing disks")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &disks)?;
        writeln!(out)?;
    } else if disks.is_empty() {
        writeln!(out, "no disks found")?;
    } else {
        for d in &disks {
            render::disk(&mut out, d)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `lifeboat inspect`.
pub(super) fn inspect(a: &InspectArgs) -> anyhow::Result<()> {
    // library errors already name the path
    let d = inspect::inspect_path(&SystemPaths::default(), &a.path, a.sector_size)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
    } else {
        render::disk(&mut out, &d)?;
    }
    out.flush()?;
    Ok(())
}
