//! The read-back of restore and clone, overlapped with the writing: while the job goes on
//! writing, a thread takes what was written in regions of [`REGION`] bytes, makes each region
//! durable (a sync of the target) and reads it back through the `O_DIRECT` handle, comparing
//! hashes ([`target::read_back`]: several reads in flight). The guarantee is the one the
//! sequential read-back gives: every byte written is read back from the device, after a sync,
//! never from a cache, and compared before the job reports success and before any partition
//! table is written.
//!
//! Only a handle that bypasses the cache by itself (`O_DIRECT`, or a device without a cache)
//! can read while the job writes. Where the read-back has to drop the page cache instead
//! (a filesystem that refuses `O_DIRECT`), dropping it while the job writes would race with
//! the writes, so the read-back stays sequential, after the writing.

use super::target::{self, Span, TargetPlan, Written};
use crate::blockdev::{BlockDev, ReadbackMethod};
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::units::MIB;
use crossbeam_channel::{bounded, Sender};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

/// Bytes written between two regions handed to the read-back. Each region costs one sync
/// of the target.
pub(crate) const REGION: u64 = 128 * MIB;

/// The writing of a restore or clone and everything after it: `write` writes the data,
/// handing each range it completes to the overlapped read-back it is given (if any), and
/// returns every range and the bytes written; then [`target::data_then_tables`]. The job's
/// error wins, unless the job only stopped because the read-back failed.
pub(crate) fn write_and_read_back(
    dev: &dyn BlockDev,
    plan: &TargetPlan,
    threads: usize,
    tables: &[(u64, Vec<u8>)],
    reporter: &Reporter,
    cancel: &CancelToken,
    write: impl FnOnce(&mut Option<Overlap<'_>>) -> Result<(Vec<Span>, u64)>,
) -> Result<Written> {
    let state = State::default();
    std::thread::scope(|scope| {
        let started = Instant::now();
        let every = plan.readback_region;
        let mut overlap = Overlap::start(scope, dev, plan.verify, threads, every, &state, cancel)?;
        let (written, done) = match write(&mut overlap) {
            Ok(w) => w,
            Err(e) => {
                let own = overlap.and_then(Overlap::abandon);
                return Err(match (e, own) {
                    (Error::Cancelled, Some(own)) => own,
                    (e, _) => e,
                });
            }
        };
        reporter.progress_final(Phase::Write, done);
        let (verify, tables) = (plan.verify, tables);
        let mut w = target::data_then_tables(
            dev, written, done, tables, verify, threads, overlap, reporter, cancel,
        )?;
        w.write_seconds = (started.elapsed().as_secs_f64() - w.verify_seconds).max(0.0);
        Ok(w)
    })
}

/// The read-back thread of a job that writes, and the region being gathered.
pub(crate) struct Overlap<'scope> {
    tx: Option<Sender<Vec<Span>>>,
    region: Vec<Span>,
    region_bytes: u64,
    /// The region size (tests make it small).
    every: u64,
    state: &'scope State,
    method: ReadbackMethod,
    thread: Option<ScopedJoinHandle<'scope, Result<()>>>,
}

/// What the job and its read-back thread share.
#[derive(Default)]
struct State {
    /// Bytes read back and found equal so far.
    verified: AtomicU64,
    /// Set by the read-back thread when it failed, and by the job when it stops early.
    stop: AtomicBool,
}

impl<'scope> Overlap<'scope> {
    /// Starts the read-back thread for `dev` in `scope`, or returns `None` where it has to
    /// wait for the writing (no `verify`, or a handle that must drop the page cache).
    fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        dev: &'env dyn BlockDev,
        verify: bool,
        threads: usize,
        every: u64,
        state: &'scope State,
        cancel: &'env CancelToken,
    ) -> Result<Option<Self>> {
        if !verify {
            return Ok(None);
        }
        // the O_DIRECT handle, or the device itself when it has no cache
        let (check, method) = match dev.uncached()? {
            Some((c, ReadbackMethod::Direct)) => (Some(c), ReadbackMethod::Direct),
            Some(_) => return Ok(None),
            None => (None, ReadbackMethod::NoCache),
        };
        // two regions queued at most: the job waits rather than run ahead without bound
        let (tx, rx) = bounded::<Vec<Span>>(2);
        let thread = scope.spawn(move || {
            let check = check.as_deref().unwrap_or(dev);
            let stop = &state.stop;
            // regions until the job is done, or stopped (a failure)
            let regions = rx.into_iter().take_while(|_| !stop.load(Ordering::SeqCst));
            // durable first: a sync of the target, then the reads through O_DIRECT
            let ready = || dev.sync();
            let progress = |d| state.verified.store(d, Ordering::SeqCst);
            let r = target::read_back_regions(check, regions, ready, threads, progress, cancel);
            if r.is_err() {
                stop.store(true, Ordering::SeqCst);
            }
            r.map(|_| ())
        });
        Ok(Some(Overlap {
            tx: Some(tx),
            region: Vec::new(),
            region_bytes: 0,
            every,
            state,
            method,
            thread: Some(thread),
        }))
    }

    /// Adds a range the job has written (all of it: direct writes done, the rest in the page
    /// cache). Fails when the read-back has failed, so the job stops writing; its error is
    /// the one [`Overlap::finish`] returns.
    pub(crate) fn add(&mut self, range: Span) -> Result<()> {
        if self.state.stop.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        self.region_bytes += range.1;
        self.region.push(range);
        if self.region_bytes >= self.every {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let region = std::mem::take(&mut self.region);
        self.region_bytes = 0;
        match &self.tx {
            Some(tx) if !region.is_empty() => tx.send(region).map_err(|_| Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// Once the job has written everything: hands over the last region, reports the
    /// read-back's progress as [`Phase::Verify`] (starting with what is verified already,
    /// up to `total`) and waits for it. Returns the bytes verified and how.
    pub(crate) fn finish(
        mut self,
        total: u64,
        reporter: &Reporter,
    ) -> Result<(u64, ReadbackMethod)> {
        let sent = self.send();
        self.tx = None;
        reporter.phase(Phase::Verify, Some(total));
        let thread = self.thread.take();
        let result = match thread {
            Some(t) => {
                while !t.is_finished() {
                    reporter.progress(Phase::Verify, self.state.verified.load(Ordering::SeqCst));
                    std::thread::sleep(Duration::from_millis(100));
                }
                t.join().unwrap_or(Err(Error::Cancelled))
            }
            None => Ok(()),
        };
        result?;
        sent?;
        let done = self.state.verified.load(Ordering::SeqCst);
        reporter.progress_final(Phase::Verify, done);
        Ok((done, self.method))
    }

    /// The read-back's own error, if it failed (a job that stopped because of it returns
    /// this instead of its own "cancelled").
    pub(crate) fn abandon(mut self) -> Option<Error> {
        self.state.stop.store(true, Ordering::SeqCst);
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => Some(e),
            _ => None,
        }
    }
}

impl Drop for Overlap<'_> {
    fn drop(&mut self) {
        // a job that failed: the read-back stops after its current region
        self.state.stop.store(true, Ordering::SeqCst);
    }
}
