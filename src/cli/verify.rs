//! `lifeboat verify`: every chunk of an image and of its chain re-read and re-hashed; a
//! damaged chunk is located in its partition.

use super::args::VerifyArgs;
use super::common::{summary_of, with_progress};
use crate::image::ImageReader;
use crate::jobs::run::VerifyJob;
use crate::jobs::{Job, Summary};
use crate::units::human_bytes;
use std::path::Path;

/// The partition (or other region) of the image that holds disk byte `offset`.
fn region_of(meta: &crate::image::ImageMeta, offset: u64) -> Option<String> {
    let r = meta.region_at(offset)?;
    let (s, e) = (r.start_bytes, r.start_bytes + r.size_bytes);
    let fs = r.fs.as_ref().map(|f| format!(", {f}")).unwrap_or_default();
    Some(match r.partition {
        Some(n) => format!("partition {n} (bytes {s}..{e}{fs})"),
        None => format!("{} (bytes {s}..{e})", r.what),
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

/// `lifeboat verify DIR` of a deduplicating store: every image in it, one after another;
/// the damaged ones are listed at the end, and make the exit status 1.
fn verify_store(a: &VerifyArgs) -> anyhow::Result<()> {
    use crate::image::packs;
    let images = packs::images(&a.file)?;
    let (_, skipped) = packs::load_known(&a.file)?;
    let mut failed = Vec::new();
    // encrypted images no passphrase given opens: not checked, which is not damage
    let mut locked = Vec::new();
    for img in &images {
        let one = VerifyArgs {
            file: img.clone(),
            search: a.search.clone(),
            json: a.json,
            threads: a.threads,
        };
        if let Err(e) = verify(&one) {
            let is_locked = e.chain().any(|c| {
                let err = c.downcast_ref::<crate::error::Error>().or_else(|| {
                    c.downcast_ref::<std::sync::Arc<crate::error::Error>>()
                        .map(|a| &**a)
                });
                matches!(
                    err,
                    Some(
                        crate::error::Error::KeyNeeded { .. }
                            | crate::error::Error::WrongKey { .. }
                    )
                )
            });
            if !a.json {
                let what = if is_locked { "NOT CHECKED" } else { "DAMAGED" };
                eprintln!("{}: {what}: {e:#}", img.display());
            }
            if is_locked {
                locked.push(img.display().to_string());
            } else {
                failed.push(img.display().to_string());
            }
        }
    }
    for s in &skipped {
        eprintln!("index skipped (writers store its chunks again): {s}");
    }
    if !a.json {
        println!(
            "store {}: {} image{}, {} intact{}",
            a.file.display(),
            images.len(),
            if images.len() == 1 { "" } else { "s" },
            images.len() - failed.len() - locked.len(),
            if skipped.is_empty() {
                String::new()
            } else {
                format!(", {} damaged index file(s)", skipped.len())
            }
        );
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} images in the store are damaged: {}{}",
            failed.len(),
            images.len(),
            failed.join(", "),
            if locked.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} more not checked: no passphrase given opens them",
                    locked.len()
                )
            }
        );
    }
    if !locked.is_empty() {
        anyhow::bail!(
            "{} of {} images in the store were not checked: they are encrypted and no \
             passphrase given opens them (give the store's with --key-file FILE): {}",
            locked.len(),
            images.len(),
            locked.join(", ")
        );
    }
    Ok(())
}

/// `lifeboat verify`.
pub fn verify(a: &VerifyArgs) -> anyhow::Result<()> {
    if crate::image::packs::is_store(&a.file) && !a.file.is_file() {
        return verify_store(a);
    }
    let (file, json) = (a.file.as_path(), a.json);
    let job = Job::Verify(VerifyJob::from(a));
    let s = summary_of!(
        with_progress(json, job).map_err(|e| locate(e, file))?,
        Verify
    );
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
        if !s.missing.is_empty() {
            println!(
                "  the image records {} of the source in {} ranges as missing (unreadable when it was taken): `lifeboat info {}` lists them",
                human_bytes(s.missing_bytes),
                s.missing.len(),
                s.path.display()
            );
        }
    }
    Ok(())
}
