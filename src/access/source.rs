//! [`ImageSource`]: an image (any chain member) as a read-only disk, for random access.
//!
//! A read walks the leaf's index (sorted, so a binary search finds the first record), and for
//! each record it overlaps finds the frame that holds its bytes: in the leaf, or in the
//! ancestor that stores the same hash. Decoded frames are kept in a cache bounded by bytes
//! (least recently used goes first). The first time a record's bytes are served from a
//! decoded frame they are checked against the record's blake3 hash; a record that fails is
//! remembered, every read that touches it fails with the chunk error (EIO at the exports), and
//! the failure is reported once to the warning sink with the chunk and its disk offset. Bytes
//! no record covers read as zeros (the image proved them unused, or they were not selected).

use crate::blockdev::{check_range, BlockDev, Geometry};
use crate::error::{Error, Result};
use crate::image::{Chain, FrameRead, Located};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Decoded frames kept by default: 256 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 256 << 20;

/// A frame's key: (chain member, file offset of its stored bytes).
type FrameKey = (usize, u64);

/// Where a warning goes (a damaged chunk): the server's log, stderr, a test's vector.
type WarnSink = Arc<dyn Fn(&str) + Send + Sync>;

struct Entry {
    frame: Arc<Vec<u8>>,
    /// Records (offset in the frame, length) already checked against their hash.
    verified: HashSet<(u32, u32)>,
    /// Last use, for eviction.
    used: u64,
}

#[derive(Default)]
struct Cache {
    frames: HashMap<FrameKey, Entry>,
    bytes: u64,
    clock: u64,
    /// Frames being decoded now: a second reader waits for the first instead of decoding
    /// the same frame again (FUSE and NBD serve several requests of one frame at once).
    pending: HashSet<FrameKey>,
    /// Leaf records whose content is bad, with the error's text.
    bad: HashMap<usize, String>,
    /// Zero-record lengths whose hash was checked (all-zero content of that length).
    zero_ok: HashSet<(u32, [u8; 32])>,
    /// Where the last read ended, to tell a sequential reader.
    last_end: u64,
}

/// What the readers and the read-ahead thread share.
struct Inner {
    chain: Chain,
    path: PathBuf,
    limit: u64,
    cache: Mutex<Cache>,
    /// Signalled when a pending frame is done (decoded or failed).
    ready: Condvar,
    warn: Mutex<Option<WarnSink>>,
}

/// Any chain member as a read-only [`BlockDev`] of the source disk's size.
///
/// A sequential reader (a read that starts where the previous one ended, give or take a
/// frame) gets the next frame decoded ahead on a second thread, so decoding overlaps with the
/// reader's own work.
pub struct ImageSource {
    inner: Arc<Inner>,
    geometry: Geometry,
    ahead: Option<SyncSender<usize>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ImageSource {
    fn drop(&mut self) {
        // the read-ahead thread ends when its channel closes (after the frame it decodes)
        self.ahead = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSource")
            .field("path", &self.inner.path)
            .field("geometry", &self.geometry)
            .field("limit", &self.inner.limit)
            .finish_non_exhaustive()
    }
}

impl ImageSource {
    /// Opens image `path` with its chain (ancestors are looked for beside it and in `search`),
    /// keeping at most `cache_bytes` of decoded frames (at least one frame is always kept).
    pub fn open(path: &Path, search: &[PathBuf], cache_bytes: u64) -> Result<Self> {
        Ok(Self::from_chain(Chain::open(path, search)?, cache_bytes))
    }

    /// A source over an open chain.
    pub fn from_chain(chain: Chain, cache_bytes: u64) -> Self {
        let h = chain.leaf().header();
        let geometry = Geometry::new(h.source_size, h.sector_size);
        let inner = Arc::new(Inner {
            path: chain.leaf().path().to_path_buf(),
            chain,
            limit: cache_bytes,
            cache: Mutex::new(Cache::default()),
            ready: Condvar::new(),
            warn: Mutex::new(None),
        });
        // read-ahead: one frame at a time, on one thread that ends when the source is dropped
        let (tx, rx) = std::sync::mpsc::sync_channel::<usize>(2);
        let worker = inner.clone();
        let worker = std::thread::Builder::new()
            .name("lifeboat-readahead".into())
            .spawn(move || {
                while let Ok(i) = rx.recv() {
                    if let Ok(l) = worker.chain.locate(i) {
                        // failures are reported when (and if) a reader needs the frame
                        let _ = worker.frame(i, &l, false);
                    }
                }
            })
            .ok();
        ImageSource {
            inner,
            geometry,
            ahead: worker.as_ref().map(|_| tx),
            worker,
        }
    }

    /// The chain being read (metadata, links).
    pub fn chain(&self) -> &Chain {
        &self.inner.chain
    }

    /// Sends each damaged chunk's message, once per chunk, to `sink`.
    pub fn on_warning(&self, sink: impl Fn(&str) + Send + Sync + 'static) {
        if let Ok(mut w) = self.inner.warn.lock() {
            *w = Some(Arc::new(sink));
        }
    }

    /// Bytes of decoded frames held now (never more than the limit plus one frame).
    pub fn cached_bytes(&self) -> u64 {
        self.inner.lock().map(|c| c.bytes).unwrap_or(0)
    }

    /// Leaf records found damaged so far: (record number, message).
    pub fn damaged(&self) -> Vec<(usize, String)> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .map(|c| c.bad.iter().map(|(i, m)| (*i, m.clone())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// After a read that ended in leaf record `last`: when the reader is sequential, asks the
    /// read-ahead thread for the next frame that is neither cached nor being decoded.
    fn read_ahead(&self, offset: u64, end: u64, last: usize) {
        let Some(tx) = &self.ahead else { return };
        let Ok(mut c) = self.inner.lock() else { return };
        let prev = std::mem::replace(&mut c.last_end, end);
        let near = u64::from(crate::image::format::MAX_CHUNK_RAW);
        if offset < prev.saturating_sub(near) || offset > prev.saturating_add(near) {
            return;
        }
        let records = self.inner.chain.leaf().records();
        let Ok(cur) = self.inner.chain.locate(last) else {
            return;
        };
        let cur = (cur.member, cur.record.file_offset);
        for j in last + 1..(last + 64).min(records.len()) {
            let Ok(l) = self.inner.chain.locate(j) else {
                return;
            };
            if l.record.codec.reads_as_zero() {
                continue;
            }
            let key = (l.member, l.record.file_offset);
            if key == cur {
                continue;
            }
            if !c.frames.contains_key(&key) && !c.pending.contains(&key) {
                drop(c);
                let _ = tx.try_send(j);
            }
            return;
        }
    }
}

/// A frame being decoded; dropping it ends the wait of every reader of that frame. `done`:
/// the decoder already cleared the mark under the cache lock (a later decoder of the same
/// frame may have set it again since, and its mark must stay).
struct Pending<'a> {
    inner: &'a Inner,
    key: FrameKey,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut c = self
                .inner
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.pending.remove(&self.key);
        }
        self.inner.ready.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> Result<MutexGuard<'_, Cache>> {
        self.cache
            .lock()
            .map_err(|_| Error::Unsupported("image cache poisoned".into()))
    }

    fn warn(&self, msg: &str) {
        let sink = self.warn.lock().ok().and_then(|w| w.clone());
        if let Some(sink) = sink {
            sink(msg);
        }
    }

    /// Remembers leaf record `i` as damaged (reporting it the first time) and returns its error.
    fn fail(&self, i: usize, err: Error) -> Error {
        let msg = crate::error::with_causes(&err);
        let first = match self.lock() {
            Ok(mut c) => c.bad.insert(i, msg.clone()).is_none(),
            Err(_) => false,
        };
        if first {
            self.warn(&format!("damaged chunk: {msg}"));
        }
        err
    }

    /// The decoded frame holding leaf record `i` (located at `l`): from the cache, from the
    /// reader already decoding it, or decoded here. `mark`: a failure marks the record
    /// damaged and is reported (readers), or is only returned (read-ahead).
    fn frame(&self, i: usize, l: &Located, mark: bool) -> Result<Arc<Vec<u8>>> {
        let key = (l.member, l.record.file_offset);
        let mut c = self.lock()?;
        loop {
            if let Some(msg) = c.bad.get(&i) {
                return Err(self.bad_record(l, msg.clone()));
            }
            c.clock += 1;
            let now = c.clock;
            if let Some(e) = c.frames.get_mut(&key) {
                e.used = now;
                return Ok(e.frame.clone());
            }
            if !c.pending.contains(&key) {
                break;
            }
            c = self
                .ready
                .wait(c)
                .map_err(|_| Error::Unsupported("image cache poisoned".into()))?;
        }
        c.pending.insert(key);
        drop(c);
        // whatever happens below (an error, a panic), the key stops being pending and the
        // readers waiting for it wake up
        let mut pending = Pending {
            inner: self,
            key,
            done: false,
        };
        // decode outside the lock: other readers go on meanwhile
        let fr = FrameRead {
            member: l.member,
            parts: vec![(i, *l)],
        };
        let mut stored = Vec::new();
        let mut frame = Vec::new();
        let r = self
            .chain
            .read(&fr, &mut stored)
            .and_then(|()| self.chain.decode(&fr, &stored, &mut frame));
        let mut c = self.lock()?;
        c.pending.remove(&key);
        // from here the key may be evicted and decoded again by another reader: the guard
        // must not clear that reader's pending mark when it drops
        pending.done = true;
        if let Err(e) = r {
            drop(c);
            return Err(if mark { self.fail(i, e) } else { e });
        }
        let frame = Arc::new(frame);
        c.clock += 1;
        let used = c.clock;
        c.bytes += frame.len() as u64;
        let old = c.frames.insert(
            key,
            Entry {
                frame: frame.clone(),
                verified: HashSet::new(),
                used,
            },
        );
        if let Some(old) = old {
            c.bytes = c.bytes.saturating_sub(old.frame.len() as u64);
        }
        self.evict(&mut c, key);
        Ok(frame)
    }

    /// The verified bytes' frame of leaf record `i` (located at `l`), through the cache: the
    /// record's hash is checked the first time it is served from a decoded frame.
    fn record(&self, i: usize, l: &Located) -> Result<Arc<Vec<u8>>> {
        let key = (l.member, l.record.file_offset);
        let part = (l.record.frame_offset, l.record.raw_len);
        let frame = self.frame(i, l, true)?;
        let checked = self
            .lock()?
            .frames
            .get(&key)
            .is_some_and(|e| Arc::ptr_eq(&e.frame, &frame) && e.verified.contains(&part));
        if checked {
            return Ok(frame);
        }
        let fr = FrameRead {
            member: l.member,
            parts: vec![(i, *l)],
        };
        self.chain
            .part(&fr, 0, &frame)
            .map_err(|e| self.fail(i, e))?;
        if let Some(e) = self.lock()?.frames.get_mut(&key) {
            if Arc::ptr_eq(&e.frame, &frame) {
                e.verified.insert(part);
            }
        }
        Ok(frame)
    }

    /// Drops the least recently used frames (never `keep`) until the cache fits its limit.
    fn evict(&self, c: &mut Cache, keep: FrameKey) {
        while c.bytes > self.limit && c.frames.len() > 1 {
            let Some(old) = c
                .frames
                .iter()
                .filter(|(k, _)| **k != keep)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(e) = c.frames.remove(&old) {
                c.bytes = c.bytes.saturating_sub(e.frame.len() as u64);
            }
        }
    }

    /// The error for a record already known to be damaged.
    fn bad_record(&self, l: &Located, msg: String) -> Error {
        Error::Image {
            path: self
                .chain
                .member_path(l.member)
                .unwrap_or(&self.path)
                .to_path_buf(),
            source: crate::image::FormatError::Chunk {
                index: l.index,
                disk_offset: l.record.disk_offset,
                disk_end: l.record.disk_offset + u64::from(l.record.raw_len),
                file_offset: l.record.file_offset,
                reason: format!("damaged (found earlier: {msg})"),
            },
        }
    }

    /// Checks once per (length, hash) that a zero record's hash is that of zeros.
    fn check_zero(&self, i: usize, l: &Located) -> Result<()> {
        let key = (l.record.raw_len, l.record.hash);
        if self.lock()?.zero_ok.contains(&key) {
            return Ok(());
        }
        let fr = FrameRead {
            member: l.member,
            parts: vec![(i, *l)],
        };
        let zeros = vec![0u8; l.record.raw_len as usize];
        self.chain
            .part(&fr, 0, &zeros)
            .map_err(|e| self.fail(i, e))?;
        self.lock()?.zero_ok.insert(key);
        Ok(())
    }
}

impl BlockDev for ImageSource {
    fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn path(&self) -> &Path {
        &self.inner.path
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(
            &self.inner.path,
            offset,
            buf.len(),
            self.geometry.size_bytes,
        )?;
        buf.fill(0);
        let end = offset + buf.len() as u64;
        let inner = &*self.inner;
        let records = inner.chain.leaf().records();
        let mut last = None;
        let mut i = records.partition_point(|r| r.disk_offset + u64::from(r.raw_len) <= offset);
        while let Some(r) = records.get(i) {
            if r.disk_offset >= end {
                break;
            }
            let from = offset.max(r.disk_offset);
            let to = end.min(r.disk_offset + u64::from(r.raw_len));
            let l = inner.chain.locate(i)?;
            if l.record.codec.reads_as_zero() {
                inner.check_zero(i, &l)?;
            } else {
                let frame = inner.record(i, &l)?;
                last = Some(i);
                let start = l.record.frame_offset as usize;
                let src = frame
                    .get(
                        start + (from - r.disk_offset) as usize
                            ..start + (to - r.disk_offset) as usize,
                    )
                    .ok_or_else(|| Error::Unsupported(format!("chunk {i} frame too short")))?;
                buf[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
            }
            i += 1;
        }
        if let Some(last) = last {
            self.read_ahead(offset, end, last);
        }
        Ok(())
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(Error::ReadOnly {
            path: self.inner.path.clone(),
        })
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
