//! [`DevFiles`]: any [`BlockDev`]s shown as regular files in a private FUSE folder, for the
//! programs that only open paths (e2fsck, resize2fs, ntfsresize). `--fit` shrinks a partition
//! this way: the file is a copy-on-write [`Overlay`](super::Overlay) of the partition, so the
//! tools change only the overlay, never the source disk or the image.
//!
//! The folder lives for as long as the value: dropping it unmounts the folder (lazily when a
//! tool still holds a file) and removes it. A process killed while it is mounted leaves an
//! unconnected FUSE mount in `/run/lifeboat` (`TAG-PID-N`), which holds no data; the next
//! [`DevFiles::open`] with the same tag unmounts and removes those of dead processes.

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
        if let Some(parent) = dir.parent() {
            clean_stale(parent, tag);
        }
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
        match fuse::spawn(RawFs::new(files, writable, sink).with_writeback(), &dir) {
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

    /// Makes everything written through the files reach their devices: the kernel caches
    /// writes (writeback), and the caller reads the devices directly next. Fsyncs each file.
    pub fn flush(&self, names: &[String]) -> Result<()> {
        for n in names {
            let p = self.path(n);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| Error::io("opening", &p, e))?;
            f.sync_all().map_err(|e| Error::io("flushing", &p, e))?;
            // a write the kernel cached may have failed after its writer's last look
            let mine = format!(" of {n} bytes ");
            if let Some(m) = self.failures().into_iter().find(|m| m.contains(&mine)) {
                return Err(Error::Refused {
                    path: p,
                    reason: format!("a write to it failed: {m}"),
                });
            }
        }
        Ok(())
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

/// Unmounts and removes the folders `TAG-PID-N` in `parent` whose process is gone, for `tag`
/// and the tags of its family (`fit` and `fit-plan`: one is the other and a suffix).
fn clean_stale(parent: &Path, tag: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut it = name.rsplitn(3, '-');
        let (Some(n), Some(pid), Some(t)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let family = t == tag
            || t.strip_prefix(tag).is_some_and(|r| r.starts_with('-'))
            || tag.strip_prefix(t).is_some_and(|r| r.starts_with('-'));
        let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u32>()) else {
            continue;
        };
        if !family || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = e.path();
        let _ = unmount_path(&path);
        let _ = std::fs::remove_dir(&path);
    }
}
