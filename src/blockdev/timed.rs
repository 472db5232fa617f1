//! [`TimedReader`]: reads a device on helper threads, so that a read the kernel never
//! finishes (a dying disk that stops answering, a USB bridge that hangs) costs its caller a
//! timeout instead of the whole job. Used by `image --rescue`.
//!
//! Each read is handed, with its buffer, to an idle helper thread; the caller waits for the
//! answer in short slices, checking its [`CancelToken`]. A read that has not answered within
//! the timeout fails with `ErrorKind::TimedOut`, and its thread is given up: a thread blocked
//! in `pread` cannot be interrupted or joined, so it is left to finish (or not) on its own,
//! holding its buffer, and its late answer is dropped. This is the one place Lifeboat leaves
//! threads unjoined (STYLE §5 asks for every thread to be joined); the number given up is
//! bounded by [`MAX_LOST`], after which every read fails at once, so a dead disk ends the
//! job instead of piling up threads.
//!
//! Helper threads that are not stuck end when the reader is dropped (their request channel
//! closes).

use super::BlockDev;
use crate::error::{Error, Result};
use crate::event::CancelToken;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Reads given up (threads left blocked) before the reader refuses every further read.
pub const MAX_LOST: u32 = 8;

/// How often a waiting caller looks at its cancel token.
const SLICE: Duration = Duration::from_millis(50);

/// A read handed to a helper: the buffer, the byte range of it to fill, the disk offset.
type Request = (Vec<u8>, std::ops::Range<usize>, u64);
/// A helper's answer: the buffer back, and how the read went.
type Answer = (Vec<u8>, Result<()>);

/// One helper thread: where to send it work and where it answers.
struct Helper {
    tx: Sender<Request>,
    rx: Receiver<Answer>,
}

/// Reads `dev` with a timeout per read. Cheap to share between threads (`&self`).
pub struct TimedReader {
    dev: Arc<dyn BlockDev>,
    timeout: Duration,
    idle: Mutex<Vec<Helper>>,
    lost: AtomicU32,
}

impl std::fmt::Debug for TimedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedReader")
            .field("dev", &self.dev.path())
            .field("timeout", &self.timeout)
            .field("lost", &self.lost.load(Ordering::SeqCst))
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
            lost: AtomicU32::new(0),
        }
    }

    /// The device read.
    pub fn dev(&self) -> &dyn BlockDev {
        &*self.dev
    }

    /// Reads given up so far.
    pub fn lost(&self) -> u32 {
        self.lost.load(Ordering::SeqCst)
    }

    fn helper(&self) -> Result<Helper> {
        if let Some(h) = self.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(h);
        }
        let (tx, req_rx) = bounded::<Request>(1);
        let (ans_tx, rx) = bounded::<Answer>(1);
        let dev = Arc::clone(&self.dev);
        std::thread::Builder::new()
            .name("lifeboat-read".into())
            .spawn(move || {
                for (mut buf, range, off) in req_rx.iter() {
                    let r = match buf.get_mut(range) {
                        Some(b) => dev.read_at(b, off),
                        None => Err(Error::Unsupported("read range outside its buffer".into())),
                    };
                    if ans_tx.send((buf, r)).is_err() {
                        break; // given up: nobody waits for this answer
                    }
                }
            })
            .map_err(|e| Error::io("starting a reader thread for", self.dev.path(), e))?;
        Ok(Helper { tx, rx })
    }

    /// Reads `buf[range]` from disk byte `off`. Returns the buffer and the outcome: a read
    /// error, `TimedOut` after the timeout, `Cancelled` when `cancel` fires first, or an
    /// immediate `TimedOut` once [`MAX_LOST`] reads have been given up.
    pub fn read(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
        cancel: &CancelToken,
    ) -> Timed {
        let len = range.len();
        if self.lost() >= MAX_LOST {
            let e = self.timed_out(off, len, "the disk stopped answering: too many reads hung");
            return (buf, Err(e));
        }
        let helper = match self.helper() {
            Ok(h) => h,
            Err(e) => return (buf, Err(e)),
        };
        let buf_len = buf.len();
        if helper.tx.send((buf, range, off)).is_err() {
            return (
                vec![0; buf_len],
                Err(Error::Unsupported("a reader thread ended".into())),
            );
        }
        let started = Instant::now();
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
            if cancel.is_cancelled() {
                self.lost.fetch_add(1, Ordering::SeqCst);
                return (vec![0; buf_len], Err(Error::Cancelled));
            }
            if started.elapsed() >= self.timeout {
                self.lost.fetch_add(1, Ordering::SeqCst);
                let e = self.timed_out(
                    off,
                    len,
                    &format!("no answer within {:.1} s", self.timeout.as_secs_f64()),
                );
                return (vec![0; buf_len], Err(e));
            }
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
        let r = TimedReader::new(slow(65536, 3000), Duration::from_millis(200));
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
    fn after_too_many_hung_reads_every_read_fails_at_once() {
        let r = TimedReader::new(slow(0, 2000), Duration::from_millis(20));
        for _ in 0..MAX_LOST {
            assert!(r.read(vec![0; 512], 0..512, 0, &CancelToken::new()).1.is_err());
        }
        let t = Instant::now();
        let e = r.read(vec![0; 512], 0..512, 0, &CancelToken::new()).1.unwrap_err();
        assert!(t.elapsed() < Duration::from_millis(20));
        assert!(e.to_string().contains("read error"), "{e}");
        assert!(
            crate::error::with_causes(&e).contains("stopped answering"),
            "{}",
            crate::error::with_causes(&e)
        );
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
