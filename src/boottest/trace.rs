//! A [`BlockDev`] wrapper that records every read and write the guest makes, with its time,
//! for the judge. The runner drains the records every few hundred milliseconds, so memory
//! stays bounded by the guest's request rate, not the boot's length.

use crate::blockdev::{BlockDev, Geometry};
use crate::error::Result;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request: seconds since start, write or read, byte offset, length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Io {
    /// Seconds since the trace started.
    pub t: f64,
    /// A write.
    pub write: bool,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// Requests not yet drained; past this many, new ones are merged into the last when
/// adjacent, and otherwise counted as dropped (a runner that stopped draining).
const MAX_PENDING: usize = 1 << 20;

#[derive(Debug, Default)]
struct Log {
    ios: Vec<Io>,
    dropped: u64,
}

/// The recording wrapper; see the module doc.
pub struct Traced {
    inner: Arc<dyn BlockDev>,
    start: Instant,
    log: Arc<Mutex<Log>>,
}

/// The runner's end of a [`Traced`] device: takes what was recorded so far.
#[derive(Clone)]
pub struct TraceTap {
    log: Arc<Mutex<Log>>,
    start: Instant,
}

impl TraceTap {
    /// When the trace's clock started: every other observation is timed from here too.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The requests recorded since the last call, in order, and how many were dropped.
    pub fn drain(&self) -> (Vec<Io>, u64) {
        match self.log.lock() {
            Ok(mut l) => (std::mem::take(&mut l.ios), std::mem::take(&mut l.dropped)),
            Err(_) => (Vec::new(), 0),
        }
    }
}

impl Traced {
    /// Wraps `inner`; times count from now. Returns the device and its tap.
    pub fn new(inner: Arc<dyn BlockDev>) -> (Traced, TraceTap) {
        let log = Arc::new(Mutex::new(Log::default()));
        let start = Instant::now();
        (
            Traced {
                inner,
                start,
                log: log.clone(),
            },
            TraceTap { log, start },
        )
    }

    fn record(&self, write: bool, offset: u64, len: usize) {
        let t = self.start.elapsed().as_secs_f64();
        if let Ok(mut l) = self.log.lock() {
            if l.ios.len() >= MAX_PENDING {
                l.dropped += 1;
                return;
            }
            l.ios.push(Io {
                t,
                write,
                offset,
                len: len as u64,
            });
        }
    }
}

impl BlockDev for Traced {
    fn geometry(&self) -> Geometry {
        self.inner.geometry()
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.record(false, offset, buf.len());
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.record(true, offset, buf.len());
        self.inner.write_at(buf, offset)
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    #[test]
    fn reads_and_writes_are_recorded_in_order_and_drained_once() {
        let mem: Arc<dyn BlockDev> = Arc::new(MemDev::new(1 << 20, 512));
        let (t, tap) = Traced::new(mem);
        let mut b = [0u8; 512];
        t.read_at(&mut b, 4096).unwrap();
        t.write_at(&b, 8192).unwrap();
        assert!(t.read_at(&mut b, 1 << 20).is_err());
        let (ios, dropped) = tap.drain();
        assert_eq!(dropped, 0);
        let got: Vec<_> = ios.iter().map(|i| (i.write, i.offset, i.len)).collect();
        assert_eq!(
            got,
            [(false, 4096, 512), (true, 8192, 512), (false, 1 << 20, 512)]
        );
        assert!(tap.drain().0.is_empty());
    }
}
