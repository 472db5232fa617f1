//! Human-readable tables for `list` and `inspect`. Plain text, no colours, fits 80 columns for
//! typical disks (the Linux console and serial lines).

use crate::inspect::{DiskReport, Source};
use crate::partition::Severity;
use crate::units::human_bytes;
use std::io::{self, Write};

fn or_dash(s: Option<&str>) -> &str {
    match s {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    }
}

/// Writes one disk and its partitions.
pub fn disk(out: &mut impl Write, d: &DiskReport) -> io::Result<()> {
    let mut head = format!("{}  {}", d.path.display(), human_bytes(d.size_bytes));
    let desc: Vec<&str> = [d.vendor.as_deref(), d.model.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    if !desc.is_empty() {
        head.push_str(&format!("  {}", desc.join(" ")));
    }
    if let Some(s) = &d.serial {
        head.push_str(&format!("  serial {s}"));
    }
    writeln!(out, "{head}")?;
    let mut facts = Vec::new();
    match d.source {
        Source::File => facts.push("image file".to_string()),
        Source::Partition => facts.push("partition device".to_string()),
        Source::Disk => {}
    }
    if let Some(t) = d.transport {
        facts.push(format!("{t:?}").to_lowercase());
    }
    facts.push(match d.table {
        Some(t) => format!("{} table", t.as_str()),
        None => "no partition table".into(),
    });
    if let Some(id) = &d.disk_id {
        facts.push(format!("id {id}"));
    }
    if d.logical_sector_size == d.physical_sector_size {
        facts.push(format!("{}-byte sectors", d.logical_sector_size));
    } else {
        facts.push(format!(
            "{}/{}-byte sectors",
            d.logical_sector_size, d.physical_sector_size
        ));
    }
    if d.removable == Some(true) {
        facts.push("removable".into());
    }
    if d.read_only == Some(true) {
        facts.push("read-only".into());
    }
    if d.is_boot {
        facts.push("BOOT DISK".into());
    }
    if let Some(f) = &d.backing_file {
        facts.push(format!("backed by {}", f.display()));
    }
    writeln!(out, "  {}", facts.join(", "))?;
    if let Some(b) = &d.busy {
        writeln!(out, "  in use: {b}")?;
    }
    if let Some(e) = &d.error {
        writeln!(out, "  cannot read: {e}")?;
    }
    if let Some(fs) = &d.fs {
        writeln!(
            out,
            "  whole-disk filesystem: {} label {} uuid {}",
            fs.kind.display_name(),
            or_dash(fs.label.as_deref()),
            or_dash(fs.uuid.as_deref())
        )?;
    }
    if !d.partitions.is_empty() {
        let rows: Vec<[String; 8]> = d
            .partitions
            .iter()
            .map(|p| {
                let dev = p
                    .path
                    .as_ref()
                    .map_or("-".to_string(), |p| p.display().to_string());
                let ty = if p.extended {
                    "extended".to_string()
                } else {
                    p.type_name.map_or(p.part_type.clone(), str::to_string)
                };
                let mounted = if p.swap {
                    "[swap]".to_string()
                } else {
                    p.mountpoint
                        .as_ref()
                        .map_or("-".into(), |m| m.display().to_string())
                };
                [
                    p.number.to_string(),
                    dev,
                    human_bytes(p.size_bytes),
                    ty,
                    or_dash(p.fs).to_string(),
                    or_dash(p.label.as_deref().or(p.name.as_deref())).to_string(),
                    p.used_bytes.map_or("-".into(), human_bytes),
                    mounted,
                ]
            })
            .collect();
        let header = [
            "#", "DEVICE", "SIZE", "TYPE", "FS", "LABEL", "USED", "MOUNTED",
        ];
        let mut widths = header.map(str::len);
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[&str]| {
            let mut s = String::from("  ");
            for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string()
        };
        writeln!(out, "{}", line(&header))?;
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            writeln!(out, "{}", line(&cells))?;
        }
    }
    for diag in &d.diagnostics {
        let tag = match diag.severity {
            Severity::Warning => "warning",
            Severity::Error => "ERROR",
        };
        writeln!(out, "  {tag}: {}", diag.message)?;
    }
    writeln!(out)
}
