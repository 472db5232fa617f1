//! [`TimedReader`]: reads a device on helper threads, so that a read the kernel never
//! finishes (a dying disk that stops answering, a USB bridge that hangs) costs its caller a
//! timeout instead of the whole job. Used by `image --rescue`.
//!
//! Each read is handed, with its buffer, to an idle helper thread; the caller waits for the
//! answer in short slices, checking its [`CancelToken`]. A read that has not answered within
//! the timeout fails with `ErrorKind::TimedOut`, and its thread is given up: a thread blocked
//! in `pread` cannot be interrupted or joined, so it is left to finish (or not) on its own,
//! holding its buffer, and its late answer is dropped. This is the one place Lifeboat leaves
//! threads unjoined (STYLE §5 asks for every thread to be joined).
//!
//! Several reads may be in flight while the disk is healthy. But a disk works on one command
//! at a time when it hangs (so does a loop device), so with several reads in flight the one
//! that times out first need not be the one that hung. So:
//! - at the first read that times out, every read then in flight is given up too (their
//!   callers get `TimedOut`, and a rescue reads those ranges again later; they do not count
//!   as hung), and from then on the reads take turns at the device (a lock), each read's
//!   clock starting when its helper has the device: the read that hangs is the one blamed;
//! - while a given-up read is still blocked ("the disk is stalled"), no new read is sent;
//! - a stall longer than [`STALL_FACTOR`] timeouts means the disk stopped answering: every
//!   read from then on fails at once, so a dead disk ends the job instead of piling up
//!   threads (at most [`MAX_LOST`] reads hang, plus the callers' reads given up with the
//!   first).
//!
//! A read that answers at the moment its caller gives it up is either given up or answered,
//! never both: the first of the helper and the caller to claim it decides (see `Helper`).
//! A caller whose read was given up gets a new buffer back (the helper keeps the old one), so
//! it must not rely on bytes it read earlier into the same buffer.
//!
//! Helper threads that are not stuck end when the reader is dropped (their request channel
//! closes).

use super::BlockDev;
use crate::error::{Error, Result};
use crate::event::CancelToken;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads given up (threads left blocked) before the reader refuses every further read.
pub const MAX_LOST: u32 = 8;
/// A stall (a given-up read still blocked) this many timeouts long means the disk stopped
/// answering.
pub const STALL_FACTOR: u32 = 10;

/// How often a waiting caller looks at its cancel token.
const SLICE: Duration = Duration::from_millis(20);

/// A read handed to a helper: the buffer, the byte range of it to fill, the disk offset.
type Request = (Vec<u8>, std::ops::Range<usize>, u64);
/// A helper's answer: the buffer back, and how the read went.
type Answer = (Vec<u8>, Result<()>);

/// A helper's current read is at the device (or queued for it).
const RUNNING: u8 = 0;
/// The helper has its answer and sends it: the caller must take it.
const ANSWERED: u8 = 1;
/// The caller gave the read up: the helper drops its answer and ends.
const ABANDONED: u8 = 2;

/// One helper thread: where to send it work, where it answers, when its current read got the
/// device, and who owns the answer to it (`RUNNING`, `ANSWERED`, `ABANDONED`: whichever of
/// the helper and its caller moves it from `RUNNING` first decides, so an answer is never
/// both given up and sent, and a helper given up is always counted back when it returns).
struct Helper {
    tx: Sender<Request>,
    rx: Receiver<Answer>,
    started: Arc<Mutex<Option<Instant>>>,
    state: Arc<AtomicU8>,
}

/// What the helpers and callers share.
#[derive(Default)]
struct Shared {
    /// Given-up reads still blocked in the kernel.
    blocked: AtomicU32,
    /// Reads given up in all.
    lost: AtomicU32,
    /// When the current stall began (the first given-up read that is still blocked).
    stalled_since: Mutex<Option<Instant>>,
    /// The disk stopped answering: every read fails at once.
    dead: AtomicBool,
    /// Held by the helper whose read is at the device, once reads take turns.
    device: Mutex<()>,
    /// Reads take turns at the device (set at the first read that timed out).
    one_at_a_time: AtomicBool,
    /// Counts the times reads in flight were given up together (see the module docs).
    epoch: AtomicU32,
}

/// Reads `dev` with a timeout per read. Cheap to share between threads (`&self`).
pub struct TimedReader {
    dev: Arc<dyn BlockDev>,
    timeout: Duration,
    idle: Mutex<Vec<Helper>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TimedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedReader")
            .field("dev", &self.dev.path())
            .field("timeout", &self.timeout)
            .field("lost", &self.lost())
            .finish()
    }
}

/// The outcome of a timed read: the buffer (the caller's own, or a new one of the same
/// length when the read was given up) and the result.
pub type Timed = (Vec<u8>, Result<()>);

impl TimedReader {
    /// A reader of `dev` whose reads fail after `timeout`.
    pub fn new(dev: Arc<dyn BlockDev>, timeout: Duration) -> Self {
        TimedReader {
            dev,
            timeout,
            idle: Mutex::new(Vec::new()),
            shared: Arc::new(Shared::default()),
        }
    }

    /// The device read.
    pub fn dev(&self) -> &dyn BlockDev {
        &*self.dev
    }

    /// Reads given up so far.
    pub fn lost(&self) -> u32 {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// True once the disk stopped answering (every read now fails at once).
    pub fn is_dead(&self) -> bool {
        self.shared.dead.load(Ordering::SeqCst)
    }

    fn stall_limit(&self) -> Duration {
        self.timeout * STALL_FACTOR
    }

    /// How long the disk has been stalled, if it is.
    fn stalled_for(&self) -> Option<Duration> {
        if self.shared.blocked.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let since = self.shared.stalled_since.lock().ok().and_then(|s| *s)?;
        Some(since.elapsed())
    }

    fn helper(&self) -> Result<Helper> {
        if let Some(h) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(h);
        }
        let (tx, req_rx) = bounded::<Request>(1);
        let (ans_tx, rx) = bounded::<Answer>(1);
        let dev = Arc::clone(&self.dev);
        let shared = Arc::clone(&self.shared);
        let started = Arc::new(Mutex::new(None));
        let started_here = Arc::clone(&started);
        let state = Arc::new(AtomicU8::new(RUNNING));
        let state_here = Arc::clone(&state);
        std::thread::Builder::new()
            .name("lifeboat-read".into())
            .spawn(move || {
                for (mut buf, range, off) in req_rx.iter() {
                    let turn = shared
                        .one_at_a_time
                        .load(Ordering::SeqCst)
                        .then(|| shared.device.lock().unwrap_or_else(|e| e.into_inner()));
                    if let Ok(mut s) = started_here.lock() {
                        *s = Some(Instant::now());
                    }
                    let r = match buf.get_mut(range) {
                        Some(b) => dev.read_at(b, off),
                        None => Err(Error::Unsupported("read range outside its buffer".into())),
                    };
                    drop(turn);
                    let mine = state_here
                        .compare_exchange(RUNNING, ANSWERED, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok();
                    if !mine || ans_tx.send((buf, r)).is_err() {
                        // given up: the disk answered after all, so this stall is over
                        if !mine && shared.blocked.fetch_sub(1, Ordering::SeqCst) == 1 {
                            if let Ok(mut s) = shared.stalled_since.lock() {
                                *s = None;
                            }
                        }
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("starting a reader thread for", self.dev.path(), e))?;
        Ok(Helper {
            tx,
            rx,
            started,
            state,
        })
    }

    /// Gives up the read `helper` is blocked in: it hung (`hung`), or it was in flight with
    /// one that did, or its caller was cancelled. `None` when it is given up; the answer when
    /// the read came back first (it is then as good as any other).
    fn abandon(&self, helper: Helper, hung: bool) -> Option<Answer> {
        if helper
            .state
            .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.give_up(hung);
            return None;
        }
        // the helper has its answer and is sending it
        let answer = helper.rx.recv().ok()?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(helper);
        }
        Some(answer)
    }

    /// Counts a read given up (see [`TimedReader::abandon`]).
    fn give_up(&self, hung: bool) {
        if hung {
            self.shared.lost.fetch_add(1, Ordering::SeqCst);
        }
        if self.shared.blocked.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Ok(mut s) = self.shared.stalled_since.lock() {
                *s = Some(Instant::now());
            }
        }
    }

    /// Marks the disk dead when it has been stalled too long; true if it is dead.
    fn check_dead(&self) -> bool {
        if self.stalled_for().is_some_and(|d| d >= self.stall_limit()) || self.lost() >= MAX_LOST {
            self.shared.dead.store(true, Ordering::SeqCst);
        }
        self.is_dead()
    }

    /// Reads `buf[range]` from disk byte `off`. Returns the buffer and the outcome: a read
    /// error, `TimedOut` after the timeout (not counting time spent stalled behind a read
    /// given up earlier), `Cancelled` when `cancel` fires first, or an immediate `TimedOut`
    /// once the disk has stopped answering.
    pub fn read(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
        cancel: &CancelToken,
    ) -> Timed {
        let len = range.len();
        let buf_len = buf.len();
        // no new command while the disk is stalled
        while self.stalled_for().is_some() {
            if self.check_dead() {
                break;
            }
            if cancel.is_cancelled() {
                return (buf, Err(Error::Cancelled));
            }
            std::thread::sleep(SLICE);
        }
        if self.check_dead() {
            let e = self.timed_out(off, len, "the disk stopped answering");
            return (buf, Err(e));
        }
        let helper = match self.helper() {
            Ok(h) => h,
            Err(e) => return (buf, Err(e)),
        };
        if let Ok(mut s) = helper.started.lock() {
            *s = None;
        }
        helper.state.store(RUNNING, Ordering::SeqCst);
        let epoch = self.shared.epoch.load(Ordering::SeqCst);
        if helper.tx.send((buf, range, off)).is_err() {
            return (
                vec![0; buf_len],
                Err(Error::Unsupported("a reader thread ended".into())),
            );
        }
        loop {
            match helper.rx.recv_timeout(SLICE) {
                Ok(answer) => {
                    if let Ok(mut idle) = self.idle.lock() {
                        idle.push(helper);
                    }
                    return answer;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return (
                        vec![0; buf_len],
                        Err(Error::Unsupported("a reader thread ended".into())),
                    )
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let (hung, e) = if cancel.is_cancelled() {
                (false, Error::Cancelled)
            } else if self.shared.epoch.load(Ordering::SeqCst) != epoch {
                // another read in flight with this one timed out: which of them hung is not
                // known, so this one is given up too and read again, one at a time
                (
                    false,
                    self.timed_out(off, len, "given up with a read that hung"),
                )
            } else {
                match helper.started.lock().ok().and_then(|s| *s) {
                    // not at the device yet (another read has it): not this read's time
                    None if !self.check_dead() => continue,
                    None => (true, self.timed_out(off, len, "the disk stopped answering")),
                    Some(started) if started.elapsed() < self.timeout => continue,
                    Some(_) => {
                        if !self.shared.one_at_a_time.swap(true, Ordering::SeqCst) {
                            // the first hang: the reads in flight with it are given up too
                            self.shared.epoch.fetch_add(1, Ordering::SeqCst);
                        }
                        let why = format!("no answer within {:.1} s", self.timeout.as_secs_f64());
                        (true, self.timed_out(off, len, &why))
                    }
                }
            };
            return match self.abandon(helper, hung) {
                Some(answer) => answer,
                None => (vec![0; buf_len], Err(e)),
            };
        }
    }

    fn timed_out(&self, offset: u64, len: usize, why: &str) -> Error {
        Error::Read {
            path: self.dev.path().to_path_buf(),
            offset,
            len,
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, why.to_string()),
        }
    }
}

/// A timed reader is a read-only device: every read has the timeout (and cannot be
/// cancelled); writes are refused. For the reads a rescue makes while it plans.
impl BlockDev for TimedReader {
    fn geometry(&self) -> super::Geometry {
        self.dev.geometry()
    }

    fn path(&self) -> &std::path::Path {
        self.dev.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        // the sector-aligned cover, at an aligned address, in case of O_DIRECT
        let unit = u64::from(self.dev.geometry().logical_sector_size.max(512));
        let start = offset / unit * unit;
        let end = (offset + buf.len() as u64)
            .next_multiple_of(unit)
            .min(self.dev.len().max(offset + buf.len() as u64));
        let cover_len = (end - start) as usize;
        let own = vec![0u8; cover_len + 4096];
        // (the buffer's heap address does not change when it moves to the helper thread)
        let at = own.as_ptr().align_offset(4096).min(4096);
        let cover = at..at + cover_len;
        let (own, res) = self.read(own, cover, start, &CancelToken::new());
        res?;
        let from = at + (offset - start) as usize;
        buf.copy_from_slice(&own[from..from + buf.len()]);
        Ok(())
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(Error::Unsupported(format!(
            "{} is read-only here",
            self.dev.path().display()
        )))
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::{Geometry, MemDev};
    use std::path::Path;

    /// A device whose reads at or after `hang_from` sleep for `sleep`.
    struct Slow {
        inner: MemDev,
        hang_from: u64,
        sleep: Duration,
    }

    impl BlockDev for Slow {
        fn geometry(&self) -> Geometry {
            self.inner.geometry()
        }
        fn path(&self) -> &Path {
            self.inner.path()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
            if offset >= self.hang_from {
                std::thread::sleep(self.sleep);
            }
            self.inner.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
            self.inner.write_at(buf, offset)
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
    }

    fn slow(hang_from: u64, sleep_ms: u64) -> Arc<dyn BlockDev> {
        let inner = MemDev::new(1 << 20, 512);
        inner.write_at(&[7u8; 4096], 0).unwrap();
        Arc::new(Slow {
            inner,
            hang_from,
            sleep: Duration::from_millis(sleep_ms),
        })
    }

    #[test]
    fn a_read_that_answers_in_time_returns_its_buffer_filled() {
        let r = TimedReader::new(slow(u64::MAX, 0), Duration::from_secs(5));
        let (buf, res) = r.read(vec![0; 8192], 4096..8192, 0, &CancelToken::new());
        res.unwrap();
        assert_eq!(&buf[4096..], &[7u8; 4096][..]);
        assert_eq!(&buf[..4096], &[0u8; 4096][..]);
        // the helper is reused
        let (_, res) = r.read(vec![0; 512], 0..512, 512, &CancelToken::new());
        res.unwrap();
        assert_eq!(r.lost(), 0);
    }

    #[test]
    fn a_hung_read_times_out_and_later_reads_still_work() {
        // (the hung read comes back after 1 s, within the 2 s a stall may last)
        let r = TimedReader::new(slow(65536, 1000), Duration::from_millis(200));
        let t = Instant::now();
        let (buf, res) = r.read(vec![0; 512], 0..512, 65536, &CancelToken::new());
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(buf.len(), 512);
        let e = res.unwrap_err();
        assert!(
            matches!(&e, Error::Read { offset: 65536, source, .. } if source.kind() == std::io::ErrorKind::TimedOut),
            "{e}"
        );
        assert_eq!(r.lost(), 1);
        let (buf, res) = r.read(vec![0; 512], 0..512, 0, &CancelToken::new());
        res.unwrap();
        assert_eq!(buf, vec![7u8; 512]);
    }

    #[test]
    fn reads_wait_out_a_stall_and_a_stall_too_long_kills_the_disk() {
        // every read at or after 64 KiB takes 400 ms; the timeout is 100 ms
        let r = Arc::new(TimedReader::new(
            slow(65536, 400),
            Duration::from_millis(100),
        ));
        assert!(r
            .read(vec![0; 512], 0..512, 65536, &CancelToken::new())
            .1
            .is_err());
        // the next read waits for the hung one to come back, then is served in time
        let t = Instant::now();
        let (_, res) = r.read(vec![0; 512], 0..512, 0, &CancelToken::new());
        res.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        assert!(!r.is_dead());

        // a read that never comes back: after STALL_FACTOR timeouts the disk is dead
        let r = TimedReader::new(slow(0, 5000), Duration::from_millis(50));
        assert!(r
            .read(vec![0; 512], 0..512, 0, &CancelToken::new())
            .1
            .is_err());
        let t = Instant::now();
        let e = r
            .read(vec![0; 512], 0..512, 0, &CancelToken::new())
            .1
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(r.is_dead());
        assert!(
            crate::error::with_causes(&e).contains("stopped answering"),
            "{}",
            crate::error::with_causes(&e)
        );
        let t = Instant::now();
        assert!(r
            .read(vec![0; 512], 0..512, 0, &CancelToken::new())
            .1
            .is_err());
        assert!(t.elapsed() < Duration::from_millis(20));
    }

    #[test]
    fn cancel_ends_a_wait() {
        let r = TimedReader::new(slow(0, 3000), Duration::from_secs(60));
        let cancel = CancelToken::new();
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c.cancel();
        });
        let t = Instant::now();
        let e = r.read(vec![0; 512], 0..512, 0, &cancel).1.unwrap_err();
        assert!(matches!(e, Error::Cancelled));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
