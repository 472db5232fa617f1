//! [`DevFiles`]: any [`BlockDev`]s shown as regular files in a private FUSE folder, for the
//! programs that only open paths (e2fsck, resize2fs, ntfsresize). `--fit` shrinks a partition
//! this way: the file is a copy-on-write [`Overlay`](super::Overlay) of the partition, so the
//! tools change only the overlay, never the source disk or the image.
//!
//! The folder lives for as long as the value: dropping it unmounts the folder (lazily when a
//! tool still holds a file) and removes it. A process killed while it is mounted leaves an
//! unconnected FUSE mount in `/run/lifeboat`, which holds no data.

use super::fuse::{self, RawFile, RawFs, Sink};
use super::mount::{ensure_node, private_dir, unmount_path};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Devices served as files `DIR/NAME`; see the module doc.
pub struct DevFiles {
    dir: PathBuf,
    session: Option<fuser::BackgroundSession>,
    log: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for DevFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevFiles")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl DevFiles {
    /// Serves `files` (name, device) in a new private folder named after `tag`, writable
    /// when `writable`.
    pub fn open(
        tag: &str,
        files: Vec<(String, Arc<dyn BlockDev>)>,
        writable: bool,
    ) -> Result<Self> {
        let dir = private_dir(tag)?;
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        let sink: Sink = Arc::new(move |m: &str| {
            if let Ok(mut v) = l.lock() {
                if v.len() < 64 {
                    v.push(m.to_string());
                }
            }
        });
        let files = files
            .into_iter()
            .map(|(name, dev)| RawFile { name, dev })
            .collect();
        ensure_node("/dev/fuse", "fuse");
        match fuse::spawn(RawFs::new(files, writable, sink), &dir) {
            Ok(s) => Ok(DevFiles {
                dir,
                session: Some(s),
                log,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(Error::io("serving the partitions as files on", &dir, e))
            }
        }
    }

    /// The file of `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The failed reads and writes so far (the first 64), each naming the file and range.
    pub fn failures(&self) -> Vec<String> {
        self.log.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for DevFiles {
    fn drop(&mut self) {
        let _ = unmount_path(&self.dir);
        if let Some(s) = self.session.take() {
            let _ = s.join();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
