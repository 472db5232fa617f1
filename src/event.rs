//! The event model at the base of the crate (STYLE §4): [`Event`], the [`Reporter`] that every
//! layer (pipeline, jobs) reports through, and the [`CancelToken`] they honour. The CLI renders
//! the stream as a progress line, log lines or NDJSON, the TUI turns it into messages, and
//! tests collect it. Nothing here prints or knows a terminal; nothing here imports a layer
//! above it.

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reading partition tables and filesystem maps.
    Scan,
    /// Reading the source and writing the image.
    Image,
    /// Writing chunks to the target.
    Write,
    /// Re-reading and checking what was written.
    Verify,
    /// Flushing the target.
    Sync,
    /// Writing the partition table and making the kernel see it.
    Partition,
    /// Growing the last partition's filesystem (`--grow-last`).
    Grow,
    /// Shrinking filesystems on their copy-on-write overlays (`--fit`).
    Shrink,
    /// Coming back for what the first pass of `image --rescue` could not read: skipped
    /// areas, then trimming, scraping and retrying failed ones.
    Rescue,
}

/// One event. `Progress.done_bytes` is cumulative within its phase, so a dropped event is
/// harmless.
///
/// `S` is the summary a finished job carries. Layers below the jobs report through a
/// [`Reporter`], which never sends `Finished`; the job runner (`jobs::run`) sends exactly one
/// `Finished` as the last event, with the typed `jobs::Summary` (`jobs::Event` is this type
/// with that summary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<S> {
    /// A phase begins; `total_bytes` is the work it will do, when known.
    Phase {
        /// The phase.
        phase: Phase,
        /// Bytes the phase will process.
        total_bytes: Option<u64>,
    },
    /// Bytes done so far in `phase`.
    Progress {
        /// The phase.
        phase: Phase,
        /// Cumulative bytes done.
        done_bytes: u64,
    },
    /// Where `image --rescue` stands: the pass it is in and what it has so far. Sent with
    /// the same rate limit as `Progress`; the numbers are totals, not steps.
    Rescue {
        /// The pass, from 1.
        pass: u32,
        /// What the pass does: "copy", "copy skipped", "trim", "scrape", "retry".
        name: String,
        /// Bytes read and stored so far.
        rescued_bytes: u64,
        /// Bytes that failed to read at least once and are not rescued (yet).
        missing_bytes: u64,
        /// Bytes not tried yet.
        untried_bytes: u64,
    },
    /// Something the user should know that does not stop the job.
    Warning {
        /// One line.
        message: String,
    },
    /// Always the last event of a job, exactly once.
    Finished {
        /// True when the job succeeded.
        ok: bool,
        /// The job's summary on success.
        summary: Option<S>,
        /// The error on failure (its whole cause chain when serialized).
        error: Option<JobError>,
    },
}

/// The numbers of an [`Event::Rescue`], as the rescue job hands them to [`Reporter::rescue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RescueStats {
    /// The pass, from 1.
    pub pass: u32,
    /// What the pass does.
    pub name: &'static str,
    /// Bytes read and stored so far.
    pub rescued_bytes: u64,
    /// Bytes that failed at least once and are not rescued.
    pub missing_bytes: u64,
    /// Bytes not tried yet.
    pub untried_bytes: u64,
}

/// What layers below the jobs send: an [`Event`] that cannot carry a summary.
pub type Report = Event<Infallible>;

impl Report {
    /// The same event in a stream whose `Finished` carries `S`.
    fn widen<S>(self) -> Event<S> {
        match self {
            Event::Phase { phase, total_bytes } => Event::Phase { phase, total_bytes },
            Event::Progress { phase, done_bytes } => Event::Progress { phase, done_bytes },
            Event::Warning { message } => Event::Warning { message },
            Event::Rescue {
                pass,
                name,
                rescued_bytes,
                missing_bytes,
                untried_bytes,
            } => Event::Rescue {
                pass,
                name,
                rescued_bytes,
                missing_bytes,
                untried_bytes,
            },
            Event::Finished { ok, error, .. } => Event::Finished {
                ok,
                summary: None,
                error,
            },
        }
    }
}

impl<S> Event<S> {
    /// The `Finished` event for a job's outcome (the error shared with the caller).
    pub fn finished(outcome: &std::result::Result<S, Arc<crate::Error>>) -> Self
    where
        S: Clone,
    {
        match outcome {
            Ok(s) => Event::Finished {
                ok: true,
                summary: Some(s.clone()),
                error: None,
            },
            Err(e) => Event::Finished {
                ok: false,
                summary: None,
                error: Some(JobError::new(e.clone())),
            },
        }
    }
}

/// A failed job's error as it travels in a `Finished` event: the whole cause chain as one line
/// (what is serialized and compared), and, in the process that ran the job, the typed error, so
/// a face can give advice by kind. A deserialized `JobError` has only the text.
#[derive(Debug, Clone)]
pub struct JobError {
    message: String,
    error: Option<Arc<crate::Error>>,
}

impl JobError {
    /// Wraps a job's error, shared with whoever else holds it.
    pub fn new(e: Arc<crate::Error>) -> Self {
        JobError {
            message: crate::error::with_causes(&*e),
            error: Some(e),
        }
    }

    /// An error known only by its text (from a face, outside any job).
    pub fn from_message(message: String) -> Self {
        JobError {
            message,
            error: None,
        }
    }

    /// The error and its causes on one line (`a: b: c`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The typed error, when this event was made in this process.
    pub fn error(&self) -> Option<&crate::Error> {
        self.error.as_deref()
    }
}

impl PartialEq for JobError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Serialize for JobError {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> std::result::Result<Z::Ok, Z::Error> {
        s.serialize_str(&self.message)
    }
}

impl<'de> Deserialize<'de> for JobError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(JobError {
            message: String::deserialize(d)?,
            error: None,
        })
    }
}

/// Minimum interval between two progress events.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Channel capacity: progress is dropped when the consumer lags, other events block.
const CHANNEL_CAP: usize = 1024;

#[derive(Debug)]
struct Throttle {
    last: Option<Instant>,
    last_rescue: Option<Instant>,
}

/// Whether a send may wait for the consumer.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    /// Block until the consumer has room (phases, warnings).
    Wait,
    /// Drop the event when the consumer lags (progress).
    Drop,
}

type Sink = dyn Fn(Report, Delivery) + Send + Sync;

/// Sends events to one consumer. Cheap to clone; progress is rate-limited and never blocks.
#[derive(Clone)]
pub struct Reporter {
    sink: Option<Arc<Sink>>,
    throttle: Arc<Mutex<Throttle>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("silent", &self.sink.is_none())
            .finish()
    }
}

impl Reporter {
    /// A reporter and the receiving end of its channel (bounded).
    pub fn channel<S: Send + 'static>() -> (Reporter, Receiver<Event<S>>) {
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAP);
        (Reporter::to(tx), rx)
    }

    /// A reporter that sends into `tx` (a stream whose `Finished` carries `S`).
    pub fn to<S: Send + 'static>(tx: Sender<Event<S>>) -> Reporter {
        let sink = move |e: Report, d: Delivery| {
            // A consumer that hung up is not the job's failure.
            let _ = match d {
                Delivery::Wait => tx.send(e.widen()).map_err(drop),
                Delivery::Drop => tx.try_send(e.widen()).map_err(drop),
            };
        };
        Reporter {
            sink: Some(Arc::new(sink)),
            throttle: Arc::new(Mutex::new(Throttle {
                last: None,
                last_rescue: None,
            })),
        }
    }

    /// A reporter that discards everything.
    pub fn silent() -> Reporter {
        Reporter {
            sink: None,
            throttle: Arc::new(Mutex::new(Throttle {
                last: None,
                last_rescue: None,
            })),
        }
    }

    fn send(&self, e: Report, d: Delivery) {
        if let Some(sink) = &self.sink {
            sink(e, d);
        }
    }

    /// Starts a phase.
    pub fn phase(&self, phase: Phase, total_bytes: Option<u64>) {
        if let Ok(mut t) = self.throttle.lock() {
            t.last = None;
        }
        self.send(Event::Phase { phase, total_bytes }, Delivery::Wait);
    }

    /// Reports cumulative progress; at most once per 100 ms, and never blocking.
    pub fn progress(&self, phase: Phase, done_bytes: u64) {
        let now = Instant::now();
        if let Ok(mut t) = self.throttle.lock() {
            if t.last
                .is_some_and(|l| now.duration_since(l) < PROGRESS_INTERVAL)
            {
                return;
            }
            t.last = Some(now);
        }
        self.send(Event::Progress { phase, done_bytes }, Delivery::Drop);
    }

    /// Reports where a rescue stands; at most once per 100 ms (its own clock, apart from
    /// `progress`) and never blocking, unless `last` (the end of a pass), which is always
    /// sent.
    pub fn rescue(&self, e: RescueStats, last: bool) {
        if !last {
            let now = Instant::now();
            if let Ok(mut t) = self.throttle.lock() {
                if t.last_rescue
                    .is_some_and(|l| now.duration_since(l) < PROGRESS_INTERVAL)
                {
                    return;
                }
                t.last_rescue = Some(now);
            }
        }
        let event = Event::Rescue {
            pass: e.pass,
            name: e.name.to_string(),
            rescued_bytes: e.rescued_bytes,
            missing_bytes: e.missing_bytes,
            untried_bytes: e.untried_bytes,
        };
        self.send(event, if last { Delivery::Wait } else { Delivery::Drop });
    }

    /// Reports progress even if the last report was recent (end of a phase).
    pub fn progress_final(&self, phase: Phase, done_bytes: u64) {
        self.send(Event::Progress { phase, done_bytes }, Delivery::Wait);
    }

    /// A warning.
    pub fn warn(&self, message: impl Into<String>) {
        self.send(
            Event::Warning {
                message: message.into(),
            },
            Delivery::Wait,
        );
    }
}

/// Set once to stop a job; checked between chunks.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// `Err(Error::Cancelled)` once cancelled.
    pub fn check(&self) -> crate::Result<()> {
        if self.is_cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_throttled_but_phase_and_final_are_not() {
        let (r, rx) = Reporter::channel::<u32>();
        r.phase(Phase::Image, Some(10));
        for i in 0..1000 {
            r.progress(Phase::Image, i);
        }
        r.progress_final(Phase::Image, 1000);
        drop(r);
        let ev: Vec<Event<u32>> = rx.try_iter().collect();
        assert_eq!(
            ev[0],
            Event::Phase {
                phase: Phase::Image,
                total_bytes: Some(10)
            }
        );
        let progress = ev
            .iter()
            .filter(|e| matches!(e, Event::Progress { .. }))
            .count();
        assert!(
            progress <= 3,
            "{progress} progress events were not throttled"
        );
        assert_eq!(
            ev.last(),
            Some(&Event::Progress {
                phase: Phase::Image,
                done_bytes: 1000
            })
        );
    }

    #[test]
    fn finished_carries_the_whole_error_chain_and_the_typed_error() {
        let e = crate::Error::io(
            "opening",
            "/x",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        );
        let je = JobError::new(Arc::new(e));
        assert_eq!(
            je.message(),
            "opening /x: No such file or directory (os error 2)"
        );
        assert!(matches!(je.error(), Some(crate::Error::Io { .. })));
        let ev: Event<u32> = Event::Finished {
            ok: false,
            summary: None,
            error: Some(je),
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"event":"finished","ok":false,"summary":null,"error":"opening /x: No such file or directory (os error 2)"}"#
        );
        let back: Event<u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
        let Event::Finished { error: Some(e), .. } = back else {
            panic!("not finished")
        };
        assert!(
            e.error().is_none(),
            "a deserialized error has only its text"
        );
        assert_eq!(
            Event::finished(&Ok::<u32, Arc<crate::Error>>(7)),
            Event::Finished {
                ok: true,
                summary: Some(7),
                error: None
            }
        );
    }
}
