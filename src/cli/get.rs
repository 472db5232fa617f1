//! `lifeboat get` and `lifeboat ls`: single-file restore from the command line. Each mounts
//! the image read-only in a private folder ([`crate::access::mount::private_dir`]) through
//! [`PrivateMount`], does its work, and unmounts before it returns (also on failure and on
//! Ctrl-C: the session unmounts when dropped).

use super::args::{GetArgs, LsArgs};
use super::common::{print_json, summary_of, with_progress};
use crate::access::mount::{MountOptions, MountReport, MountedPart, PrivateMount};
use crate::jobs::copy_out::{self, CopyItem, CopySpec, EntryKind};
use crate::jobs::{Job, Summary};
use crate::units::human_bytes;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// A `PART:PATH` argument: the partition's name (`p2`) and the absolute path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PartPath {
    /// `p1`, `p2`, …
    pub part: String,
    /// Absolute, inside the partition.
    pub path: PathBuf,
}

/// Parses `p2:/home/ann` (or `2:/home/ann`).
pub(super) fn parse_part_path(s: &str) -> anyhow::Result<PartPath> {
    let Some((part, path)) = s.split_once(':') else {
        bail!("{s}: expected PART:PATH, for example p2:/home/ann/thesis.odt");
    };
    let n = part.strip_prefix('p').unwrap_or(part);
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        bail!("{s}: {part} is not a partition; write p1, p2, … (lifeboat ls IMAGE lists them)");
    }
    if !path.starts_with('/') {
        bail!("{s}: the path must start with / (it is absolute inside the partition)");
    }
    Ok(PartPath {
        part: format!("p{}", n.trim_start_matches('0')),
        path: PathBuf::from(path),
    })
}

/// Fails with [`crate::Error::Cancelled`] (exit 130) once Ctrl-C or SIGTERM arrived.
fn interrupted() -> anyhow::Result<()> {
    if crate::init::sys::signalled() {
        return Err(crate::Error::Cancelled.into());
    }
    Ok(())
}

/// An image mounted in a private folder for the time `get` or `ls` runs.
struct Mounted(PrivateMount);

impl Mounted {
    fn open(image: &Path, search: &[PathBuf]) -> anyhow::Result<Mounted> {
        let opts = MountOptions {
            search: search.to_vec(),
            ..MountOptions::default()
        };
        PrivateMount::open(image, "lifeboat-get", &opts)
            .map(Mounted)
            .with_context(|| format!("mounting {}", image.display()))
    }

    fn report(&self) -> anyhow::Result<&MountReport> {
        match self.0.report() {
            Some(r) => Ok(r),
            None => bail!("internal error: the image was unmounted already"),
        }
    }

    /// The mounted partition `name`, or why it cannot be read.
    fn part(&self, name: &str) -> anyhow::Result<(&MountedPart, PathBuf)> {
        let r = self.report()?;
        let Some(p) = r.parts.iter().find(|p| p.name == name) else {
            let names: Vec<&str> = r.parts.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "{} has no partition {name}; it has {}",
                r.image.display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
        };
        match &p.dir {
            Some(d) => Ok((p, d.clone())),
            None => bail!(
                "partition {name} ({}) cannot be opened: {}",
                p.fs.as_deref().unwrap_or("no filesystem found"),
                p.reason.as_deref().unwrap_or("it is not mounted")
            ),
        }
    }

    /// Unmounts, reporting a failure.
    fn close(self) -> anyhow::Result<()> {
        self.0.close().context("unmounting the image")
    }
}

/// `lifeboat get`.
pub fn get(a: &GetArgs) -> anyhow::Result<()> {
    let wanted = a
        .paths
        .iter()
        .map(|s| parse_part_path(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Ctrl-C or SIGTERM sets a flag instead of killing us with the image mounted: each step
    // below checks it, and the mount is undone when `m` is dropped
    crate::init::sys::catch_interrupts();
    let m = Mounted::open(&a.file, &a.search)?;
    interrupted()?;
    let mut items = Vec::new();
    for w in &wanted {
        let (part, root) = m.part(&w.part)?;
        let source = copy_out::inside(&root, &w.path)
            .with_context(|| format!("finding {}:{}", w.part, w.path.display()))?;
        let name = match source.file_name().filter(|_| source != root) {
            Some(n) => n.to_os_string(),
            None => part.name.clone().into(), // a whole partition: DIR/pN
        };
        items.push(CopyItem { source, name });
    }
    let spec = CopySpec {
        items,
        dest: a.to.clone(),
    };
    let plan = copy_out::plan(&spec).context("checking what to copy")?;
    interrupted()?;
    if !a.json {
        eprintln!(
            "copying {} file{}, {} folder{} and {} link{} ({}) into {} ({} free)",
            plan.files,
            if plan.files == 1 { "" } else { "s" },
            plan.dirs,
            if plan.dirs == 1 { "" } else { "s" },
            plan.symlinks,
            if plan.symlinks == 1 { "" } else { "s" },
            human_bytes(plan.bytes),
            plan.dest.display(),
            human_bytes(plan.free_bytes)
        );
    }
    let s = summary_of!(
        with_progress(a.json, Job::CopyOut(Box::new(plan)))?,
        CopyOut
    );
    m.close()?;
    if !a.json {
        for line in s.lines() {
            println!("{line}");
        }
    }
    Ok(())
}

/// One entry line: type, size, mtime (UTC), name.
fn entry_line(e: &copy_out::Entry) -> String {
    let t = match e.kind {
        EntryKind::Dir => 'd',
        EntryKind::File => '-',
        EntryKind::Symlink => 'l',
        EntryKind::Other => '?',
    };
    let stamp = crate::jobs::chain::utc_stamp(u64::try_from(e.mtime_unix).unwrap_or(0));
    let when = format!(
        "{}-{}-{} {}:{}",
        stamp.get(0..4).unwrap_or(""),
        stamp.get(4..6).unwrap_or(""),
        stamp.get(6..8).unwrap_or(""),
        stamp.get(9..11).unwrap_or(""),
        stamp.get(11..13).unwrap_or("")
    );
    let size = if e.kind == EntryKind::Dir {
        "-".to_string()
    } else {
        human_bytes(e.size_bytes)
    };
    let mut s = format!("{t} {:04o} {size:>10}  {when}  {}", e.mode, e.name);
    if let Some(l) = &e.link {
        s.push_str(&format!(" -> {}", l.display()));
    }
    s
}

/// `lifeboat ls`.
pub fn ls(a: &LsArgs) -> anyhow::Result<()> {
    let wanted = a.path.as_deref().map(parse_part_path).transpose()?;
    crate::init::sys::catch_interrupts();
    let m = Mounted::open(&a.file, &a.search)?;
    interrupted()?;
    match wanted {
        None => {
            let r = m.report()?;
            if a.json {
                print_json(&r.parts)?;
            } else {
                println!("{}:", r.image.display());
                for p in &r.parts {
                    let status = match (&p.dir, &p.reason) {
                        (Some(_), _) => "readable".to_string(),
                        (None, Some(why)) => format!("cannot be opened: {why}"),
                        (None, None) => "cannot be opened".to_string(),
                    };
                    println!(
                        "  {:<4} {:>10}  {:<6} {:<16} {status}",
                        p.name,
                        human_bytes(p.size_bytes),
                        p.fs.as_deref().unwrap_or("-"),
                        p.label.as_deref().unwrap_or("-"),
                    );
                }
            }
        }
        Some(w) => {
            let (_, root) = m.part(&w.part)?;
            let dir = copy_out::inside(&root, &w.path)
                .with_context(|| format!("finding {}:{}", w.part, w.path.display()))?;
            let entries = copy_out::list_dir(&dir)
                .with_context(|| format!("listing {}:{}", w.part, w.path.display()))?;
            // the user's paths, not the private mount folder's
            let shown: Vec<copy_out::Entry> = entries
                .into_iter()
                .map(|mut e| {
                    e.path = w.path.join(&e.name);
                    e
                })
                .collect();
            if a.json {
                print_json(&shown)?;
            } else {
                for e in &shown {
                    println!("{}", entry_line(e));
                }
            }
        }
    }
    m.close()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_paths_parse_and_bad_ones_say_how() {
        assert_eq!(
            parse_part_path("p2:/home/ann/thesis.odt").unwrap(),
            PartPath {
                part: "p2".into(),
                path: "/home/ann/thesis.odt".into()
            }
        );
        assert_eq!(parse_part_path("1:/").unwrap().part, "p1");
        assert_eq!(parse_part_path("p1:/a:b").unwrap().path, Path::new("/a:b"));
        for (bad, says) in [
            ("thesis.odt", "PART:PATH"),
            ("px:/a", "not a partition"),
            ("p:/a", "not a partition"),
            ("p1:home", "must start with /"),
        ] {
            let e = parse_part_path(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn an_entry_line_has_type_mode_size_time_and_name() {
        let e = copy_out::Entry {
            name: "thesis.odt".into(),
            path: "/home/ann/thesis.odt".into(),
            kind: EntryKind::File,
            size_bytes: 1_258_291,
            mtime_unix: 1_795_284_900,
            mode: 0o640,
            link: None,
        };
        assert_eq!(
            entry_line(&e),
            "- 0640    1.2 MiB  2026-11-21 18:15  thesis.odt"
        );
        let l = copy_out::Entry {
            kind: EntryKind::Symlink,
            link: Some("thesis.odt".into()),
            name: "latest".into(),
            size_bytes: 10,
            mode: 0o777,
            ..e
        };
        assert!(entry_line(&l).ends_with("latest -> thesis.odt"));
    }
}
