//! The one event stream every job emits (STYLE §4): the CLI renders it as a progress line, log
//! lines or NDJSON, and tests collect it. Jobs never see a terminal.

use crate::inspect::error_chain;
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a job is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

/// One event. `Progress.done_bytes` is cumulative within its phase, so a dropped event is
/// harmless.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
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
    /// Something the user should know that does not stop the job.
    Warning {
        /// One line.
        message: String,
    },
    /// Always the last event. `error` is the whole error chain on one line.
    Finished {
        /// True when the job succeeded.
        ok: bool,
        /// The job's summary on success.
        summary: Option<serde_json::Value>,
        /// The error chain on failure.
        error: Option<String>,
    },
}

/// Minimum interval between two progress events.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// Channel capacity: progress is dropped when the consumer lags, other events block.
const CHANNEL_CAP: usize = 1024;

#[derive(Debug)]
struct Throttle {
    last: Option<Instant>,
}

/// Sends events to one consumer. Cheap to clone; progress is rate-limited and never blocks.
#[derive(Debug, Clone)]
pub struct Reporter {
    tx: Option<Sender<Event>>,
    throttle: Arc<Mutex<Throttle>>,
}

impl Reporter {
    /// A reporter and the receiving end of its channel.
    pub fn channel() -> (Reporter, Receiver<Event>) {
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAP);
        (
            Reporter {
                tx: Some(tx),
                throttle: Arc::new(Mutex::new(Throttle { last: None })),
            },
            rx,
        )
    }

    /// A reporter that discards everything.
    pub fn silent() -> Reporter {
        Reporter {
            tx: None,
            throttle: Arc::new(Mutex::new(Throttle { last: None })),
        }
    }

    fn send(&self, e: Event) {
        if let Some(tx) = &self.tx {
            // A consumer that hung up is not the job's failure.
            let _ = tx.send(e);
        }
    }

    /// Starts a phase.
    pub fn phase(&self, phase: Phase, total_bytes: Option<u64>) {
        if let Ok(mut t) = self.throttle.lock() {
            t.last = None;
        }
        self.send(Event::Phase { phase, total_bytes });
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
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(Event::Progress { phase, done_bytes });
        }
    }

    /// Reports progress even if the last report was recent (end of a phase).
    pub fn progress_final(&self, phase: Phase, done_bytes: u64) {
        self.send(Event::Progress { phase, done_bytes });
    }

    /// A warning.
    pub fn warn(&self, message: impl Into<String>) {
        self.send(Event::Warning {
            message: message.into(),
        });
    }

    /// The last event of a job.
    pub fn finished<T: Serialize>(&self, outcome: &crate::Result<T>) {
        let e = match outcome {
            Ok(s) => Event::Finished {
                ok: true,
                summary: serde_json::to_value(s).ok(),
                error: None,
            },
            Err(e) => Event::Finished {
                ok: false,
                summary: None,
                error: Some(error_chain(e)),
            },
        };
        self.send(e);
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
        let (r, rx) = Reporter::channel();
        r.phase(Phase::Image, Some(10));
        for i in 0..1000 {
            r.progress(Phase::Image, i);
        }
        r.progress_final(Phase::Image, 1000);
        r.finished::<u32>(&Ok(7));
        let ev: Vec<Event> = rx.try_iter().collect();
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
            ev[ev.len() - 2],
            Event::Progress {
                phase: Phase::Image,
                done_bytes: 1000
            }
        );
        assert!(matches!(ev.last(), Some(Event::Finished { ok: true, .. })));
    }

    #[test]
    fn finished_carries_the_whole_error_chain() {
        let (r, rx) = Reporter::channel();
        let e: crate::Result<u32> = Err(crate::Error::io(
            "opening",
            "/x",
            std::io::Error::from_raw_os_error(libc::ENOENT),
        ));
        r.finished(&e);
        let Some(Event::Finished { ok, error, .. }) = rx.try_iter().last() else {
            panic!("no finished event");
        };
        assert!(!ok);
        assert_eq!(
            error.as_deref(),
            Some("opening /x: No such file or directory (os error 2)")
        );
    }
}
