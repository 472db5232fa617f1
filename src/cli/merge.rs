//! `lifeboat merge`: a chain member's state written as one self-contained full image.

use super::args::MergeArgs;
use super::common::{summary_of, with_progress};
use crate::jobs::{merge, Job, Summary};
use crate::units::human_bytes;

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
        if let Some(why) = &plan.split_reason {
            eprintln!(
                "  split: into volumes of at most {} because {why}",
                human_bytes(plan.volume_size)
            );
        }
    }
    let s = summary_of!(
        with_progress(json, Job::Merge(Box::new(plan.clone())))?,
        Merge
    );
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
