//! [`Overlay`]: copy-on-write over a read-only device. The base is only ever read.
//!
//! The device is cut into [`OVERLAY_BLOCK`]-byte blocks. A write stores whole blocks in the
//! overlay (a partial block is first filled from what the reader would see: the overlay's
//! copy, else the base). A read takes each block from the overlay when it was written, else
//! from the base, in as few base reads as possible. The overlay lives in memory, refusing
//! writes beyond its limit with "no space left on device", or in a sparse file created for
//! it (never an existing file), which grows only by what is written.

use crate::blockdev::{check_range, BlockDev, Geometry};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The unit the overlay stores: 4 KiB, the page and usual filesystem block size.
pub const OVERLAY_BLOCK: u64 = 4096;

/// Default limit of a memory overlay: 256 MiB.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;

/// Where the overlay keeps what is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayStore {
    /// In memory, at most this many bytes.
    Memory {
        /// Bytes the overlay may hold.
        limit: u64,
    },
    /// In a new sparse file at this path (refused when something exists there).
    File(PathBuf),
    /// In memory up to `memory` bytes, then in an unnamed scratch file in `dir` (made with
    /// `O_TMPFILE`, or created and unlinked at once where that is refused), so nothing is left
    /// behind when the process dies. Blocks are appended to the file in the order they spill
    /// (no sparse file needed: FAT and exFAT stores work), and a map finds each one's slot.
    Spill {
        /// Bytes kept in memory before the scratch file is used.
        memory: u64,
        /// The scratch folder.
        dir: PathBuf,
    },
}

enum Blocks {
    Memory {
        blocks: HashMap<u64, Box<[u8]>>,
        limit: u64,
    },
    File {
        file: File,
        path: PathBuf,
        written: std::collections::HashSet<u64>,
    },
    Spill {
        blocks: HashMap<u64, Box<[u8]>>,
        limit: u64,
        dir: PathBuf,
        /// The scratch file, made at the first block that does not fit in memory.
        file: Option<File>,
        /// Block → its slot in the scratch file (slot × 4 KiB is its offset there).
        in_file: HashMap<u64, u64>,
    },
}

/// Names of the scratch files made where `O_TMPFILE` is refused, unlinked at once.
static FALLBACK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// An unnamed, empty file in `dir`.
fn scratch_file(dir: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match tmp {
        Ok(f) => Ok(f),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            let n = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".lifeboat-overlay-{}-{n}", std::process::id()));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| Error::io("creating a scratch file in", dir, e))?;
            std::fs::remove_file(&path).map_err(|e| Error::io("unlinking", &path, e))?;
            Ok(f)
        }
        Err(e) => Err(Error::io("creating a scratch file in", dir, e)),
    }
}

/// A writable view of a read-only device; see the module doc.
pub struct Overlay {
    base: Arc<dyn BlockDev>,
    path: PathBuf,
    state: Mutex<Blocks>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("base", &self.base.path())
            .finish_non_exhaustive()
    }
}

fn no_space(path: &Path, offset: u64, len: usize) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        offset,
        len,
        source: std::io::Error::from_raw_os_error(libc::ENOSPC),
    }
}

impl Overlay {
    /// A copy-on-write view of `base`, keeping writes in `store`.
    pub fn new(base: Arc<dyn BlockDev>, store: OverlayStore) -> Result<Self> {
        let state = match store {
            OverlayStore::Memory { limit } => Blocks::Memory {
                blocks: HashMap::new(),
                limit,
            },
            OverlayStore::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| Error::io("creating the overlay file", &path, e))?;
                file.set_len(base.len())
                    .map_err(|e| Error::io("sizing the overlay file", &path, e))?;
                Blocks::File {
                    file,
                    path,
                    written: Default::default(),
                }
            }
            OverlayStore::Spill { memory, dir } => {
                if !dir.is_dir() {
                    return Err(Error::Refused {
                        path: dir,
                        reason: "the scratch folder does not exist or is not a folder".into(),
                    });
                }
                Blocks::Spill {
                    blocks: HashMap::new(),
                    limit: memory,
                    dir,
                    file: None,
                    in_file: HashMap::new(),
                }
            }
        };
        Ok(Overlay {
            path: base.path().to_path_buf(),
            base,
            state: Mutex::new(state),
        })
    }

    /// The device underneath (never written).
    pub fn base(&self) -> &Arc<dyn BlockDev> {
        &self.base
    }

    /// Bytes written through the overlay so far (whole blocks).
    pub fn written_bytes(&self) -> u64 {
        match self.state.lock().as_deref() {
            Ok(Blocks::Memory { blocks, .. }) => blocks.len() as u64 * OVERLAY_BLOCK,
            Ok(Blocks::File { written, .. }) => written.len() as u64 * OVERLAY_BLOCK,
            Ok(Blocks::Spill {
                blocks, in_file, ..
            }) => (blocks.len() + in_file.len()) as u64 * OVERLAY_BLOCK,
            Err(_) => 0,
        }
    }

    /// Bytes of what was written that went to the scratch file (0 for other stores).
    pub fn spilled_bytes(&self) -> u64 {
        match self.state.lock().as_deref() {
            Ok(Blocks::Spill { in_file, .. }) => in_file.len() as u64 * OVERLAY_BLOCK,
            _ => 0,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Blocks>> {
        self.state
            .lock()
            .map_err(|_| Error::Unsupported("overlay state poisoned".into()))
    }

    /// Length of block `b` (the last one may be short).
    fn block_len(&self, b: u64) -> usize {
        (self.base.len() - b * OVERLAY_BLOCK).min(OVERLAY_BLOCK) as usize
    }
}

impl Blocks {
    /// Copies block `b` into `out` if the overlay holds it.
    fn get(&self, b: u64, out: &mut [u8]) -> Result<bool> {
        match self {
            Blocks::Memory { blocks, .. } => Ok(blocks.get(&b).is_some_and(|d| {
                out.copy_from_slice(&d[..out.len()]);
                true
            })),
            Blocks::File {
                file,
                path,
                written,
            } => {
                if !written.contains(&b) {
                    return Ok(false);
                }
                file.read_exact_at(out, b * OVERLAY_BLOCK)
                    .map_err(|source| Error::Read {
                        path: path.clone(),
                        offset: b * OVERLAY_BLOCK,
                        len: out.len(),
                        source,
                    })?;
                Ok(true)
            }
            Blocks::Spill {
                blocks,
                dir,
                file,
                in_file,
                ..
            } => {
                if let Some(d) = blocks.get(&b) {
                    out.copy_from_slice(&d[..out.len()]);
                    return Ok(true);
                }
                match (file, in_file.get(&b)) {
                    (Some(f), Some(&slot)) => {
                        f.read_exact_at(out, slot * OVERLAY_BLOCK)
                            .map_err(|source| Error::Read {
                                path: dir.clone(),
                                offset: slot * OVERLAY_BLOCK,
                                len: out.len(),
                                source,
                            })?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    fn has(&self, b: u64) -> bool {
        match self {
            Blocks::Memory { blocks, .. } => blocks.contains_key(&b),
            Blocks::File { written, .. } => written.contains(&b),
            Blocks::Spill {
                blocks, in_file, ..
            } => blocks.contains_key(&b) || in_file.contains_key(&b),
        }
    }

    /// Stores block `b`'s new content.
    fn put(&mut self, b: u64, data: &[u8], base_path: &Path) -> Result<()> {
        match self {
            Blocks::Memory { blocks, limit } => {
                if !blocks.contains_key(&b) && (blocks.len() as u64 + 1) * OVERLAY_BLOCK > *limit {
                    return Err(no_space(base_path, b * OVERLAY_BLOCK, data.len()));
                }
                let mut block = vec![0u8; OVERLAY_BLOCK as usize].into_boxed_slice();
                block[..data.len()].copy_from_slice(data);
                blocks.insert(b, block);
                Ok(())
            }
            Blocks::File {
                file,
                path,
                written,
            } => {
                file.write_all_at(data, b * OVERLAY_BLOCK)
                    .map_err(|source| Error::Write {
                        path: path.clone(),
                        offset: b * OVERLAY_BLOCK,
                        len: data.len(),
                        source,
                    })?;
                written.insert(b);
                Ok(())
            }
            Blocks::Spill {
                blocks,
                limit,
                dir,
                file,
                in_file,
            } => {
                let in_memory = blocks.contains_key(&b);
                if in_memory
                    || (!in_file.contains_key(&b)
                        && (blocks.len() as u64 + 1) * OVERLAY_BLOCK <= *limit)
                {
                    let mut block = vec![0u8; OVERLAY_BLOCK as usize].into_boxed_slice();
                    block[..data.len()].copy_from_slice(data);
                    blocks.insert(b, block);
                    return Ok(());
                }
                if file.is_none() {
                    *file = Some(scratch_file(dir)?);
                }
                let f = file.as_ref().expect("made above");
                let next = in_file.len() as u64;
                let slot = *in_file.get(&b).unwrap_or(&next);
                // the scratch folder is named: a full one is the user's to fix
                f.write_all_at(data, slot * OVERLAY_BLOCK)
                    .map_err(|source| Error::Write {
                        path: dir.clone(),
                        offset: slot * OVERLAY_BLOCK,
                        len: data.len(),
                        source,
                    })?;
                in_file.insert(b, slot);
                Ok(())
            }
        }
    }
}

impl BlockDev for Overlay {
    fn geometry(&self) -> Geometry {
        self.base.geometry()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(&self.path, offset, buf.len(), self.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        // which blocks the overlay holds, decided under the lock; then the base runs outside it
        let mut base_runs: Vec<(u64, u64)> = Vec::new();
        {
            let st = self.lock()?;
            let mut b = offset / OVERLAY_BLOCK;
            let mut block = vec![0u8; OVERLAY_BLOCK as usize];
            while b * OVERLAY_BLOCK < end {
                let bs = b * OVERLAY_BLOCK;
                let from = offset.max(bs);
                let to = end.min(bs + self.block_len(b) as u64);
                if st.has(b) {
                    let len = self.block_len(b);
                    st.get(b, &mut block[..len])?;
                    buf[(from - offset) as usize..(to - offset) as usize]
                        .copy_from_slice(&block[(from - bs) as usize..(to - bs) as usize]);
                } else {
                    match base_runs.last_mut() {
                        Some(run) if run.1 == from => run.1 = to,
                        _ => base_runs.push((from, to)),
                    }
                }
                b += 1;
            }
        }
        for (from, to) in base_runs {
            self.base.read_at(
                &mut buf[(from - offset) as usize..(to - offset) as usize],
                from,
            )?;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(&self.path, offset, buf.len(), self.len())?;
        let end = offset + buf.len() as u64;
        let mut st = self.lock()?;
        let mut b = offset / OVERLAY_BLOCK;
        let mut block = vec![0u8; OVERLAY_BLOCK as usize];
        while b * OVERLAY_BLOCK < end {
            let bs = b * OVERLAY_BLOCK;
            let len = self.block_len(b);
            let from = offset.max(bs);
            let to = end.min(bs + len as u64);
            let data = &mut block[..len];
            if from != bs || to != bs + len as u64 {
                // a partial block: start from what a reader sees now
                if !st.get(b, data)? {
                    self.base.read_at(data, bs)?;
                }
            }
            data[(from - bs) as usize..(to - bs) as usize]
                .copy_from_slice(&buf[(from - offset) as usize..(to - offset) as usize]);
            st.put(b, data, &self.path)?;
            b += 1;
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        match &*self.lock()? {
            Blocks::Memory { .. } | Blocks::Spill { .. } => Ok(()),
            Blocks::File { file, path, .. } => file
                .sync_data()
                .map_err(|e| Error::io("syncing the overlay file", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    fn base(len: usize) -> Arc<dyn BlockDev> {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        Arc::new(MemDev::from_vec(data, 512))
    }

    /// A model of the overlay: a plain copy that takes every write.
    fn check(ov: &Overlay, model: &[u8]) {
        let mut got = vec![0u8; model.len()];
        ov.read_at(&mut got, 0).unwrap();
        assert_eq!(got, model);
    }

    #[test]
    fn writes_are_seen_and_the_base_is_untouched() {
        let len = 3 * 4096 + 1000; // a short last block
        let b = base(len);
        let before = crate::blockdev::read_vec(&*b, 0, len).unwrap();
        let ov = Overlay::new(b.clone(), OverlayStore::Memory { limit: 1 << 20 }).unwrap();
        let mut model = before.clone();
        let writes: &[(u64, usize, u8)] = &[
            (10, 5, 0xaa),             // partial first block
            (4090, 20, 0xbb),          // across a block boundary
            (8192, 4096, 0xcc),        // a whole block
            (len as u64 - 3, 3, 0xdd), // the short last block
            (12, 2, 0xee),             // again into a written block
        ];
        for &(off, n, v) in writes {
            ov.write_at(&vec![v; n], off).unwrap();
            model[off as usize..off as usize + n].fill(v);
            check(&ov, &model);
        }
        // unaligned reads across written and unwritten blocks
        for (off, n) in [
            (0usize, 1usize),
            (4000, 300),
            (4095, 4098),
            (9000, len - 9000),
        ] {
            let mut got = vec![0u8; n];
            ov.read_at(&mut got, off as u64).unwrap();
            assert_eq!(got, model[off..off + n], "read {off}+{n}");
        }
        assert_eq!(crate::blockdev::read_vec(&*b, 0, len).unwrap(), before);
        assert_eq!(ov.written_bytes(), 4 * 4096);
    }

    #[test]
    fn memory_limit_gives_no_space_and_changes_nothing() {
        let ov = Overlay::new(base(64 << 10), OverlayStore::Memory { limit: 8192 }).unwrap();
        ov.write_at(&[1u8; 8192], 0).unwrap();
        let e = ov.write_at(&[2u8; 10], 20_000).unwrap_err();
        match e {
            Error::Write { source, .. } => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC))
            }
            other => panic!("{other:?}"),
        }
        // rewriting what it holds still works
        ov.write_at(&[3u8; 100], 100).unwrap();
        let mut got = [0u8; 4];
        ov.read_at(&mut got, 20_000).unwrap();
        assert_eq!(
            got,
            [
                (20_000 % 251) as u8,
                (20_001 % 251) as u8,
                (20_002 % 251) as u8,
                (20_003 % 251) as u8
            ]
        );
    }

    #[test]
    fn file_store_is_sparse_new_and_matches_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ov");
        let len = 1 << 20;
        let ov = Overlay::new(base(len), OverlayStore::File(p.clone())).unwrap();
        let mut model = crate::blockdev::read_vec(&*base(len), 0, len).unwrap();
        ov.write_at(&[7u8; 5000], 300_000).unwrap();
        model[300_000..305_000].fill(7);
        check(&ov, &model);
        ov.sync().unwrap();
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(md.len(), len as u64);
        assert!(
            md.blocks() * 512 <= 64 << 10,
            "overlay file not sparse: {}",
            md.blocks()
        );
        // an existing file is never reused or overwritten
        assert!(Overlay::new(base(len), OverlayStore::File(p)).is_err());
    }

    #[test]
    fn spill_keeps_memory_first_then_an_unnamed_scratch_file() {
        let dir = tempfile::tempdir().unwrap();
        let len = 1 << 20;
        let ov = Overlay::new(
            base(len),
            OverlayStore::Spill {
                memory: 3 * 4096,
                dir: dir.path().to_path_buf(),
            },
        )
        .unwrap();
        let mut model = crate::blockdev::read_vec(&*base(len), 0, len).unwrap();
        for (i, off) in [0u64, 5000, 70_000, 200_001, 900_000, 5000, 1_048_000]
            .into_iter()
            .enumerate()
        {
            let n = 3000 + i * 100;
            let n = n.min(len - off as usize);
            ov.write_at(&vec![i as u8 + 1; n], off).unwrap();
            model[off as usize..off as usize + n].fill(i as u8 + 1);
            check(&ov, &model);
        }
        assert!(ov.spilled_bytes() > 0);
        assert!(ov.written_bytes() > ov.spilled_bytes());
        // the scratch file has no name: the folder stays empty
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // a missing folder is refused up front
        assert!(Overlay::new(
            base(len),
            OverlayStore::Spill {
                memory: 0,
                dir: dir.path().join("nope"),
            },
        )
        .is_err());
    }

    #[test]
    fn out_of_range_is_refused() {
        let ov = Overlay::new(base(4096), OverlayStore::Memory { limit: 1 << 20 }).unwrap();
        assert!(ov.write_at(&[0u8; 2], 4095).is_err());
        assert!(ov.read_at(&mut [0u8; 2], 4095).is_err());
    }
}
