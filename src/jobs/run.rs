//! The one job runner every face uses: the CLI (on a thread beside its progress renderer), the
//! TUI (on a thread feeding its message loop) and, through the CLI child it starts, PID 1's
//! unattended runs.
//!
//! A [`Job`] is a planned job. [`run`] executes it on the calling thread and [`spawn`] on a new
//! one; either way the job's events go to one channel and the last event is exactly one
//! [`Event::Finished`](crate::event::Event::Finished) with the typed [`Summary`], on success
//! and on failure alike. Jobs that run until they are stopped (serving an image, a mount) fit
//! the same shape: they end when the [`CancelToken`] is cancelled, and their `Finished` says
//! what they did.

use super::clone::{self, ClonePlan, CloneSummary};
use super::copy_out::{self, CopyPlan, CopySummary};
use super::export::{self, ExportPlan, ExportSummary};
use super::image::{self, ImagePlan, ImageSummary};
use super::merge::{self, MergePlan, MergeSummary};
use super::restore::{self, RestorePlan, RestoreSummary};
use super::verify::{self, VerifySummary};
use crate::error::{Error, Result};
use crate::event::{CancelToken, Reporter};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The event stream of a job: [`crate::event::Event`] whose `Finished` carries a [`Summary`].
pub type Event = crate::event::Event<Summary>;

/// A planned job, ready to run.
#[derive(Debug)]
pub enum Job {
    /// Write an image.
    Image(Box<ImagePlan>),
    /// Restore an image onto a disk.
    Restore(Box<RestorePlan>),
    /// Clone a disk onto another.
    Clone(Box<ClonePlan>),
    /// Verify an image and its chain.
    Verify(VerifyJob),
    /// Merge a chain into a new full image.
    Merge(Box<MergePlan>),
    /// Export a chain member's disk state as raw, qcow2, VHDX or VMDK.
    Export(Box<ExportPlan>),
    /// Copy files and folders out of a mounted image.
    CopyOut(Box<CopyPlan>),
}

/// What `verify` needs (it has no plan: opening the chain is the check).
#[derive(Debug, Clone)]
pub struct VerifyJob {
    /// The image.
    pub path: PathBuf,
    /// Folders to look for its ancestors in, after its own folder.
    pub search: Vec<PathBuf>,
    /// Decoding threads (0: every core).
    pub threads: usize,
}

/// What a finished job reports, by job. Serialized with a `"job"` field naming the variant,
/// beside the job's own summary fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Summary {
    /// `image`.
    Image(ImageSummary),
    /// `restore`.
    Restore(RestoreSummary),
    /// `clone`.
    Clone(CloneSummary),
    /// `verify`.
    Verify(VerifySummary),
    /// `merge`.
    Merge(MergeSummary),
    /// `export`.
    Export(ExportSummary),
    /// `get` (and the menu's copy out of an image).
    CopyOut(CopySummary),
}

impl Job {
    fn execute(self, reporter: &Reporter, cancel: &CancelToken) -> Result<Summary> {
        match self {
            Job::Image(p) => image::run(&p, reporter, cancel).map(Summary::Image),
            Job::Restore(p) => restore::run(&p, reporter, cancel).map(Summary::Restore),
            Job::Clone(p) => clone::run(&p, reporter, cancel).map(Summary::Clone),
            Job::Verify(v) => {
                verify::run(&v.path, &v.search, v.threads, reporter, cancel).map(Summary::Verify)
            }
            Job::Merge(p) => merge::run(&p, reporter, cancel).map(Summary::Merge),
            Job::Export(p) => export::run(&p, reporter, cancel).map(Summary::Export),
            Job::CopyOut(p) => copy_out::run(&p, reporter, cancel).map(Summary::CopyOut),
        }
    }
}

/// Runs `job` on this thread, sending its events to `events`; the last one is always
/// `Finished`. A consumer that hung up does not stop the job. The error is shared with the
/// `Finished` event (an [`crate::Error`] is not `Clone`).
pub fn run(
    job: Job,
    events: &Sender<Event>,
    cancel: &CancelToken,
) -> std::result::Result<Summary, Arc<Error>> {
    let reporter = Reporter::to(events.clone());
    let r = job.execute(&reporter, cancel).map_err(Arc::new);
    drop(reporter);
    let _ = events.send(Event::finished(&r));
    r
}

/// Starts `job` on a new thread named `lifeboat-job`. The handle returns what [`run`] returns,
/// after `Finished` was sent.
pub fn spawn(
    job: Job,
    events: Sender<Event>,
    cancel: CancelToken,
) -> std::io::Result<std::thread::JoinHandle<std::result::Result<Summary, Arc<Error>>>> {
    std::thread::Builder::new()
        .name("lifeboat-job".into())
        .spawn(move || run(job, &events, &cancel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_job_ends_with_one_finished_carrying_the_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job::Verify(VerifyJob {
            path: dir.path().join("missing.lbi"),
            search: vec![],
            threads: 1,
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let r = spawn(job, tx, CancelToken::new()).unwrap().join().unwrap();
        let err = r.unwrap_err();
        let ev: Vec<Event> = rx.iter().collect();
        assert_eq!(ev.len(), 1, "{ev:?}");
        let Some(Event::Finished {
            ok: false,
            summary: None,
            error: Some(e),
        }) = ev.last()
        else {
            panic!("{ev:?}")
        };
        assert_eq!(e.message(), crate::error::with_causes(&*err));
        assert!(e.message().contains("missing.lbi"), "{}", e.message());
        // the face gets the same typed error the job returned, to give advice by kind
        assert!(std::ptr::eq(e.error().unwrap(), &*err));
    }

    #[test]
    fn a_cancelled_job_still_ends_with_finished() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job::Verify(VerifyJob {
            path: dir.path().join("x.lbi"),
            search: vec![],
            threads: 1,
        });
        let cancel = CancelToken::new();
        cancel.cancel();
        let (tx, rx) = crossbeam_channel::unbounded();
        let _ = run(job, &tx, &cancel);
        drop(tx);
        assert!(matches!(
            rx.iter().last(),
            Some(Event::Finished { ok: false, .. })
        ));
    }
}
