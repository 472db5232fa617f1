//! `lifeboat export`: a chain member's disk as raw, qcow2, VHDX or VMDK, on the job runner
//! with the usual progress line.

use super::args::ExportArgs;
use super::common::{summary_of, with_progress};
use crate::jobs::export::{ExportFormat, ExportPlan};
use crate::jobs::{Job, Summary};
use crate::units::human_bytes;
use anyhow::{anyhow, bail};

impl TryFrom<&ExportArgs> for ExportPlan {
    type Error = anyhow::Error;

    fn try_from(a: &ExportArgs) -> anyhow::Result<Self> {
        let format = match &a.format {
            Some(f) => f.parse::<ExportFormat>().map_err(|e| anyhow!(e))?,
            None => {
                let ext = a
                    .output
                    .extension()
                    .map(|e| e.to_string_lossy().to_lowercase())
                    .unwrap_or_default();
                match ext.as_str() {
                    "img" | "raw" | "bin" => ExportFormat::Raw,
                    other => match other.parse::<ExportFormat>() {
                        Ok(f) => f,
                        Err(_) => bail!(
                            "cannot tell the format from {}: pass --format raw, qcow2, vhdx or vmdk",
                            a.output.display()
                        ),
                    },
                }
            }
        };
        Ok(ExportPlan {
            image: a.file.clone(),
            search: a.search.clone(),
            output: a.output.clone(),
            format,
            force: a.force,
            threads: a.threads,
            cache_bytes: a.cache_mib.max(1) << 20,
        })
    }
}

/// `lifeboat export`.
pub fn export(a: &ExportArgs) -> anyhow::Result<()> {
    let plan = ExportPlan::try_from(a)?;
    let s = summary_of!(with_progress(a.json, Job::Export(Box::new(plan)))?, Export);
    // with --json the Finished event already carried the summary
    if !a.json {
        println!(
            "{}: {} disk as {}, {} of data, {} on disk; checked: {}",
            s.output.display(),
            human_bytes(s.disk_bytes),
            s.format,
            human_bytes(s.data_bytes),
            human_bytes(s.file_bytes),
            s.verified
        );
    }
    Ok(())
}
