//! Job results in words: a finished job's summary as lines, and an error as a [`Failure`]
//! with its cause chain and what to do next. Pure functions of the job's own types.

use super::app::Failure;
use super::screens::progress::JobKind;
use crate::error::Error;
use crate::jobs::clone::CloneSummary;
use crate::jobs::copy_out::CopySummary;
use crate::jobs::image::ImageSummary;
use crate::jobs::restore::RestoreSummary;
use crate::jobs::verify::VerifySummary;
use crate::jobs::{JobError, Summary};
use crate::resize::FsGrowReport;
use crate::units::human_bytes;

use crate::error::causes as chain;

/// True for a file that holds an image (`.lbi`, a volume `.lbi.001`, or one being written).
fn is_image_file(p: &std::path::Path) -> bool {
    let p = crate::image::volumes::first_volume_of(p).unwrap_or_else(|| p.to_path_buf());
    p.extension().is_some_and(|x| x == "lbi" || x == "partial")
}

/// What to do after `e`, in one or two sentences.
fn advice(e: &Error) -> String {
    let s = match e {
        Error::TooSmall { .. } => {
            "Choose a larger disk. A smaller disk works only when every partition fits where it is."
        }
        Error::Busy { .. } => "Unmount it (or stop what uses it) and try again. Lifeboat never writes to a disk that is in use.",
        Error::ReadOnly { .. } => "The disk is write-protected: check its lock switch, or choose another disk.",
        Error::Refused { .. } => "Choose another disk or image; nothing was written.",
        Error::KeyNeeded { .. } => "The image is encrypted: open it again and type its passphrase or recovery key.",
        Error::WrongKey { .. } => "Check the passphrase (or use the recovery key) and try again; nothing was written.",
        Error::NotADisk { .. } => "Choose a disk from the list; nothing was written.",
        Error::Read { path, .. } if is_image_file(path) => {
            "The image file could not be read: the drive that holds it may be failing. Verify it (v on the home screen), or use an older image."
        }
        Error::Read { .. } => {
            "The disk could not read that place: it may be failing. Image it in rescue mode (the mode option of the image wizard), then restore or clone from that image."
        }
        Error::Write { path, .. } if is_image_file(path) => {
            "The image could not be written: the storage may be full or failing. Free space or choose another storage (s)."
        }
        Error::Write { .. } => "The target failed to write: it may be failing. Try another disk.",
        Error::FileTooLarge { .. } => {
            "The storage cannot hold a file that large. Choose an ext4, exFAT or NTFS storage (s); on FAT storage Lifeboat splits images into 4 GiB volumes by itself."
        }
        Error::VerifyMismatch { .. } => {
            "What was written does not read back the same: the target disk, its cable or its port is unreliable. Do not use it; try another disk."
        }
        Error::Image { .. } | Error::Chain { .. } => {
            "The image is damaged, incomplete, or part of its chain is missing. Press v on the home screen to verify it, or restore an older image of the chain."
        }
        Error::Table { .. } => "The partition table is damaged. Check the disk from the shell (x on the home screen) with fdisk or gdisk.",
        Error::GrowFailed { .. } => "The data is in place. Check the grown filesystem from the shell (fsck) before using the disk.",
        Error::Tool { .. } => "A helper program failed; its message is above. Check the disk from the shell.",
        Error::Unsupported(_) => "Lifeboat cannot do this yet. Nothing was written.",
        Error::Filesystem(_) => "The filesystem is damaged. Check it from the shell (fsck) before trusting it.",
        Error::Cancelled => "Cancelled as asked.",
        Error::OutOfRange { .. } | Error::Io { .. } => {
            "Check that the disks and the storage are still attached and that the storage has room."
        }
    };
    s.to_string()
}

/// A failure of `what` (for example "planning the restore"); `writes_target` for a restore or
/// clone, whose failure after it began writing leaves the target without a partition table.
pub fn failure(what: &str, e: &Error, writes_target: bool) -> Failure {
    let mut causes = chain(e);
    let does_not_fit = matches!(e, Error::TooSmall { .. });
    if let Error::TooSmall {
        path,
        need,
        have,
        why,
    } = e
    {
        causes[0] = format!(
            "{} ({}) is too small: it needs at least {}; {why}",
            path.display(),
            human_bytes(*have),
            human_bytes(*need)
        );
    }
    // refusals come before the first write; a failed grow leaves the copy (and its table)
    let wipes = writes_target
        && !matches!(
            e,
            Error::TooSmall { .. }
                | Error::Busy { .. }
                | Error::ReadOnly { .. }
                | Error::Refused { .. }
                | Error::NotADisk { .. }
                | Error::GrowFailed { .. }
        );
    let unreadable = match e {
        Error::Read { path, .. } if !is_image_file(path) && !writes_target => Some(path.clone()),
        _ => None,
    };
    Failure {
        what: what.to_string(),
        causes,
        advice: if unreadable.is_some() {
            "The disk could not read that place: it may be failing. Press r to image it in rescue mode: the good data first, then the bad areas sector by sector; what cannot be read is recorded as missing, and the result names it.".to_string()
        } else {
            advice(e)
        },
        does_not_fit,
        cancelled: matches!(e, Error::Cancelled),
        wipes_target: wipes,
        unreadable,
    }
}

/// The result screen's content for a job that ended with `Finished`: its summary in lines
/// and seconds (`elapsed` where the summary has none), or the failure with advice by the kind
/// of error (the typed error travels in the event within this process).
pub fn finished(
    kind: JobKind,
    summary: Option<Summary>,
    error: Option<JobError>,
    elapsed: f64,
) -> Result<(Vec<String>, f64), Failure> {
    let (what, writes) = match kind {
        JobKind::Image => ("imaging", false),
        JobKind::Restore => ("restoring", true),
        JobKind::Clone => ("cloning", true),
        JobKind::Verify => ("verifying", false),
        JobKind::CopyOut => ("copying files out of the image", false),
    };
    match (summary, error) {
        (Some(Summary::Image(s)), _) => Ok((image_lines(&s), s.seconds)),
        (Some(Summary::Restore(s)), _) => Ok((restore_lines(&s), s.seconds)),
        (Some(Summary::Clone(s)), _) => Ok((clone_lines(&s), s.seconds)),
        (Some(Summary::Verify(s)), _) => Ok((verify_lines(&s), elapsed)),
        (Some(Summary::CopyOut(s)), _) => Ok((copy_lines(&s), s.seconds)),
        (Some(Summary::Merge(s)), _) => Ok((
            vec![format!(
                "The full image {} was written and verified.",
                s.path.display()
            )],
            s.seconds,
        )),
        (Some(Summary::Export(s)), _) => Ok((
            vec![format!("{} was written and checked.", s.output.display())],
            elapsed,
        )),
        (None, Some(e)) => Err(match e.error() {
            Some(typed @ Error::Read { .. }) if kind == JobKind::CopyOut => Failure {
                advice: "That file could not be read from the image: the image is damaged there. Everything copied so far was removed again. Deselect that file and copy the rest, or use another image of the chain; v on the home screen verifies an image.".into(),
                ..failure(what, typed, writes)
            },
            Some(typed) => failure(what, typed, writes),
            None => Failure {
                what: what.to_string(),
                causes: vec![e.message().to_string()],
                advice: String::new(),
                ..Failure::default()
            },
        }),
        (None, None) => Err(Failure {
            what: what.to_string(),
            causes: vec!["the job ended without a result".into()],
            ..Failure::default()
        }),
    }
}

/// A failure from glue code (mounting, listing).
pub fn failure_any(what: &str, e: &anyhow::Error, advice: &str) -> Failure {
    Failure {
        what: what.to_string(),
        causes: e.chain().map(|c| c.to_string()).collect(),
        advice: advice.to_string(),
        ..Failure::default()
    }
}

fn rate(bytes: u64, seconds: f64) -> String {
    format!(
        "{}/s",
        human_bytes((bytes as f64 / seconds.max(0.001)) as u64)
    )
}

/// An image job's result.
pub fn image_lines(s: &ImageSummary) -> Vec<String> {
    let mut v = vec![
        format!(
            "The {} image {} was written and verified.",
            s.kind,
            s.path.display()
        ),
        format!(
            "{} read at {}, {} stored ({:.2}:1), {} chunks.",
            human_bytes(s.read_bytes),
            rate(s.read_bytes, s.seconds),
            human_bytes(s.file_bytes),
            s.read_bytes as f64 / (s.file_bytes.max(1)) as f64,
            s.chunk_count
        ),
    ];
    if let Some(k) = &s.recovery_key {
        v.push(format!(
            "RECOVERY KEY: {k}  (write it down now and keep it apart from the image: it opens \
             the image without the passphrase, and it is shown only this once)"
        ));
    }
    if s.kind != crate::image::ImageKind::Full {
        v.push(format!(
            "{} of it was already in the chain and was not stored again.",
            human_bytes(s.parent_bytes)
        ));
    }
    if let Some(r) = &s.rescue {
        if s.missing.is_empty() {
            v.push("Rescue: every used byte of the disk was read.".into());
        } else {
            v.push(format!(
                "RESCUE: {} in {} places could not be read and are recorded as missing{}.",
                human_bytes(s.missing_bytes),
                s.missing.len(),
                r.stopped
                    .as_ref()
                    .map(|w| format!(" ({w})"))
                    .unwrap_or_default()
            ));
            for r in &s.damaged {
                let files = r.files();
                if files.is_empty() {
                    continue;
                }
                v.push(format!(
                    "Damaged files in {}: {}{}",
                    r.region,
                    files.iter().take(6).copied().collect::<Vec<_>>().join(", "),
                    if files.len() > 6 {
                        format!(
                            " and {} more (lifeboat info --damaged lists them)",
                            files.len() - 6
                        )
                    } else {
                        String::new()
                    }
                ));
            }
            v.push(
                "Run the image again in rescue mode with the same name later to try them again."
                    .into(),
            );
        }
    }
    v.push(format!("Root hash {}", s.root_hash));
    v
}

fn grown(g: &Option<FsGrowReport>) -> Option<String> {
    let g = g.as_ref()?;
    let fs = g.fs.as_deref().unwrap_or("no filesystem");
    let mut s = format!(
        "Partition {} grew to {} ({fs}, {}",
        g.partition,
        human_bytes(g.partition_bytes),
        g.method
    );
    if let (Some(a), Some(b)) = (g.old_bytes, g.new_bytes) {
        s.push_str(&format!(": {} to {}", human_bytes(a), human_bytes(b)));
    }
    s.push_str(").");
    if let Some(n) = &g.note {
        s.push(' ');
        s.push_str(n);
    }
    Some(s)
}

/// A restore's result.
pub fn restore_lines(s: &RestoreSummary) -> Vec<String> {
    let mut v = vec![format!(
        "{} was restored: {} written.",
        s.target.display(),
        human_bytes(s.written_bytes)
    )];
    v.push(if s.verified_bytes > 0 {
        format!(
            "Verified: all {} written were read back from the disk ({}) and match the image.",
            human_bytes(s.verified_bytes),
            s.verify_method
        )
    } else {
        "Not read back (verification was off).".into()
    });
    v.push(format!("Partitions made visible by {}.", s.partition_nodes));
    v.extend(grown(&s.grown));
    if !s.missing.is_empty() {
        v.push(format!(
            "WARNING: the image had {} in {} places it could not read from the old disk; zeros were written there.",
            human_bytes(s.missing_bytes),
            s.missing.len()
        ));
    }
    v
}

/// A clone's result.
pub fn clone_lines(s: &CloneSummary) -> Vec<String> {
    let mut v = vec![format!(
        "{} was cloned onto {}: {} copied at {}.",
        s.source.display(),
        s.target.display(),
        human_bytes(s.copied_bytes),
        rate(s.copied_bytes, s.copy_seconds)
    )];
    v.push(if s.verified_bytes > 0 {
        format!(
            "Verified: all {} copied were read back from {} ({}) and match the source.",
            human_bytes(s.verified_bytes),
            s.target.display(),
            s.verify_method
        )
    } else {
        "Not read back (verification was off).".into()
    });
    v.push(format!("Partitions made visible by {}.", s.partition_nodes));
    v.extend(grown(&s.grown));
    v
}

/// A copy's result: what was copied where.
pub fn copy_lines(s: &CopySummary) -> Vec<String> {
    s.lines()
}

/// A verify's result.
pub fn verify_lines(s: &VerifySummary) -> Vec<String> {
    let mut v = vec![format!(
        "{} is intact: {} chunks re-read, {} of disk data checked against their hashes.",
        s.path.display(),
        s.chunks,
        human_bytes(s.raw_bytes)
    )];
    if s.chain.len() > 1 {
        v.push(format!(
            "Its chain of {} images is complete ({} read from ancestors).",
            s.chain.len(),
            human_bytes(s.ancestor_bytes)
        ));
    }
    if !s.missing.is_empty() {
        v.push(format!(
            "It records {} of its disk in {} places as missing (unreadable when it was taken).",
            human_bytes(s.missing_bytes),
            s.missing.len()
        ));
    }
    v.push(format!("Root hash {}", s.root_hash));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn a_recovery_key_is_on_the_result_screen_only_when_one_was_made() {
        let mut s: ImageSummary = serde_json::from_value(serde_json::json!({
            "path": "/store/pc.lbi", "image_id": "ab", "root_hash": "cd", "chunk_count": 3,
            "read_bytes": 3_000_000, "parent_bytes": 0, "kind": "full", "file_bytes": 1_000_000,
            "seconds": 1.5, "encrypted": true,
        }))
        .unwrap();
        assert!(!image_lines(&s).iter().any(|l| l.contains("RECOVERY")));
        s.recovery_key = Some("ABCD-EFGH-JKLM".into());
        let lines = image_lines(&s);
        let line = lines.iter().find(|l| l.contains("RECOVERY KEY")).unwrap();
        assert!(
            line.contains("ABCD-EFGH-JKLM") && line.contains("only this once"),
            "{line}"
        );
    }

    #[test]
    fn too_small_names_sizes_in_words_and_is_marked() {
        let e = Error::TooSmall {
            path: PathBuf::from("/dev/sdc"),
            need: 70_254_592,
            have: 52_428_800,
            why: "partition 2 ends past the target's end".into(),
        };
        let f = failure("planning the restore", &e, false);
        assert!(f.does_not_fit);
        assert_eq!(
            f.causes,
            ["/dev/sdc (50.0 MiB) is too small: it needs at least 67.0 MiB; partition 2 ends past the target's end"]
        );
        assert!(f.advice.contains("larger disk"), "{}", f.advice);
    }

    #[test]
    fn the_cause_chain_is_kept_in_order() {
        let e = Error::Read {
            path: PathBuf::from("/dev/sda"),
            offset: 4096,
            len: 512,
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        let f = failure("restoring", &e, true);
        assert_eq!(f.causes.len(), 2);
        assert!(f.causes[0].contains("at byte 4096"), "{:?}", f.causes);
        assert!(f.causes[1].contains("Input/output error"), "{:?}", f.causes);
        assert!(f.wipes_target);
        assert!(
            f.advice.contains("rescue mode") && f.unreadable.is_none(),
            "a disk's read error when restoring: {}",
            f.advice
        );
        let img = Error::Read {
            path: PathBuf::from("/store/pc.lbi"),
            offset: 4096,
            len: 512,
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        let f = failure("restoring", &img, true);
        assert!(
            f.advice.contains("image file could not be read"),
            "{}",
            f.advice
        );
        let g = Error::GrowFailed {
            path: PathBuf::from("/dev/sdb"),
            partition: 2,
            verified: true,
            source: Box::new(Error::Cancelled),
        };
        assert!(
            !failure("restoring", &g, true).wipes_target,
            "a grown copy keeps its table"
        );
        let c = failure("restoring", &Error::Cancelled, true);
        assert!(c.cancelled && !c.does_not_fit);
    }
}
