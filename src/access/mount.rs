//! Mounting an image: its disk and partitions as files (FUSE), and each partition's
//! filesystem mounted read-only (or through an overlay) under a directory.
//!
//! Layout under the mount directory `DIR` (which must be an empty directory):
//! - `DIR/raw/disk`, `DIR/raw/p1`, `DIR/raw/p2`, …: the whole disk and each partition as
//!   files (a FUSE mount on `DIR/raw`, served by this process; see `access/fuse.rs`);
//! - `DIR/p1`, `DIR/p2`, …: each partition's filesystem, where it could be mounted. A disk
//!   with no partition table whose whole disk holds a filesystem gets `DIR/p0` for it.
//!
//! How each filesystem is mounted: ext2/3/4, XFS, btrfs, ISO 9660 and (where the kernel has
//! them) FAT and exFAT by the kernel, on a loop device over `DIR/raw/pN` (read-only mounts skip
//! journal replay: `noload`, `norecovery`, `rescue=nologreplay`, so a dirty journal neither
//! blocks the mount nor needs a write); NTFS through `ntfs-3g` (else the kernel's `ntfs3`), FAT
//! through `fusefat` and exFAT through `mount.exfat-fuse` where the kernel lacks them, each
//! on the raw file. With [`MountOptions::read_write`] everything reads and writes an in-memory
//! [`Overlay`]: the image is opened read-only and never written, and changes vanish at unmount.
//!
//! State: what a session made (its pid, loop devices, mounts, directories) is written to
//! `/run/lifeboat/mounts/<key>.json` ([`state_path`]), so that [`unmount`] can undo it from
//! another process: by SIGTERM to a live server, or by itself when the server was killed.
//! Teardown order: filesystem mounts (their FUSE drivers exit with them), loop devices, the
//! FUSE mount, then the directories the session made, leaving `DIR` empty as it was.

use super::fuse::{self, RawFile, RawFs, Sink};
use super::Window;
use super::{loopdev, ImageSource, Overlay, OverlayStore};
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::fsmap::FsKind;
use nix::mount::{umount2, MntFlags, MsFlags};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where mount sessions keep their state files and logs.
pub const RUN_DIR: &str = "/run/lifeboat/mounts";

/// How mount waits for a server to finish its teardown after SIGTERM before doing it itself.
const SERVER_GRACE: Duration = Duration::from_secs(30);

/// How to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Mount read-write through a memory overlay: changes are visible and thrown away at
    /// unmount. The image is never written.
    pub read_write: bool,
    /// Bytes of decoded frames the image source keeps.
    pub cache_bytes: u64,
    /// Bytes the overlay of a `read_write` mount may hold.
    pub overlay_limit: u64,
    /// Folders to look for the image's ancestors in, after its own folder.
    pub search: Vec<PathBuf>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            read_write: false,
            cache_bytes: super::DEFAULT_CACHE_BYTES,
            overlay_limit: super::DEFAULT_MEMORY_LIMIT,
            search: Vec::new(),
        }
    }
}

/// One partition of a mounted image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountedPart {
    /// `p1`, `p2`, … (the partition number in the table; `p0` for a whole-disk filesystem).
    pub name: String,
    /// Partition number (0: the whole disk, which has no partition table).
    pub number: u32,
    /// Filesystem found (`ext4`, `vfat`, `ntfs`, …, as blkid names it), if any.
    pub fs: Option<String>,
    /// Filesystem label, if any.
    pub label: Option<String>,
    /// Partition size in bytes.
    pub size_bytes: u64,
    /// The partition as a file (`DIR/raw/pN`).
    pub raw: PathBuf,
    /// Where its filesystem is mounted (`DIR/pN`), or `None` when it could not be.
    pub dir: Option<PathBuf>,
    /// Why it is not mounted (unknown filesystem, no driver, mount error…).
    pub reason: Option<String>,
    /// What mounted it: `kernel ext4`, `ntfs-3g`, `fusefat`…; `None` when not mounted.
    #[serde(default)]
    pub driver: Option<String>,
}

/// What a mount made, as `mount --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountReport {
    /// The image (chain member) mounted.
    pub image: PathBuf,
    /// The mount directory.
    pub dir: PathBuf,
    /// The whole disk as a file (`DIR/raw/disk`).
    pub disk: PathBuf,
    /// Partitions, in table order.
    pub parts: Vec<MountedPart>,
    /// Mounted through an overlay (changes thrown away at unmount).
    pub read_write: bool,
}

/// What a session made, in the order it made it: the state file's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MountState {
    /// The serving process.
    pid: u32,
    /// Its start time (field 22 of /proc/PID/stat), so a reused pid is not taken for it.
    start_time: u64,
    /// The mount directory (canonical).
    dir: PathBuf,
    /// The FUSE mount (`DIR/raw`), once mounted.
    fuse: Option<PathBuf>,
    /// Loop devices attached.
    loops: Vec<PathBuf>,
    /// Filesystem mounts made, kernel or FUSE driver.
    mounts: Vec<PathBuf>,
    /// Directories made under `DIR`.
    made_dirs: Vec<PathBuf>,
}

/// A live mount. Dropping it (or [`MountSession::close`]) removes every mount, loop device
/// and FUSE mount it made.
pub struct MountSession {
    report: MountReport,
    state: MountState,
    state_file: PathBuf,
    fuse: Option<fuser::BackgroundSession>,
    closed: bool,
    /// An exclusive lock on `KEY.lock` beside the state file, held for the session's life (the
    /// kernel drops it when the process dies): two mounts racing for one folder cannot both
    /// pass the checks and overwrite each other's state.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl std::fmt::Debug for MountSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountSession")
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// The state file of a mount on `dir` (canonical): `RUN_DIR/<key>.json`, where the key is
/// the first 16 hex digits of the blake3 hash of the path.
pub fn state_path(dir: &Path) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{}.json", key(dir)))
}

/// The log the `mount` command's background server writes for a mount on `dir` (canonical):
/// `RUN_DIR/<key>.log`.
pub fn log_path(dir: &Path) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{}.log", key(dir)))
}

fn key(dir: &Path) -> String {
    let h = blake3::hash(dir.as_os_str().as_encoded_bytes());
    h.to_hex()[..16].to_string()
}

/// Checks that `dir` can take a mount (an empty directory, not in use by another lifeboat
/// mount) and returns its canonical path.
pub fn check_dir(dir: &Path) -> Result<PathBuf> {
    let refuse = |reason: &str| Error::Refused {
        path: dir.to_path_buf(),
        reason: reason.into(),
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(refuse("the mount directory does not exist"))
        }
        Err(e) => return Err(Error::io("reading", dir, e)),
    };
    if !meta.is_dir() {
        return Err(refuse("not a directory"));
    }
    let canon = dir
        .canonicalize()
        .map_err(|e| Error::io("resolving", dir, e))?;
    if let Some(s) = read_state(&state_path(&canon)) {
        if alive(&s) {
            return Err(Error::Busy {
                path: canon,
                reason: format!(
                    "a lifeboat mount (pid {}) uses it; run lifeboat umount first",
                    s.pid
                ),
            });
        }
    }
    let mut entries = std::fs::read_dir(&canon).map_err(|e| Error::io("listing", &canon, e))?;
    if entries.next().is_some() {
        return Err(refuse("the mount directory is not empty"));
    }
    Ok(canon)
}

/// Takes the exclusive lock of a mount on `dir`, refusing when another lifeboat holds it.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let canon = dir
        .canonicalize()
        .map_err(|e| Error::io("resolving", dir, e))?;
    std::fs::create_dir_all(RUN_DIR).map_err(|e| Error::io("creating", RUN_DIR, e))?;
    let path = state_path(&canon).with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("opening", &path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        match e {
            nix::errno::Errno::EWOULDBLOCK => Error::Busy {
                path: canon.clone(),
                reason: "another lifeboat mount uses it; run lifeboat umount first".into(),
            },
            e => Error::io("locking", &path, e.into()),
        }
    })
}

impl MountSession {
    /// Mounts `image` under `dir` (which must be an empty directory). Damaged chunks fail
    /// their reads with EIO; use [`MountSession::open_logged`] to hear about them.
    pub fn open(image: &Path, dir: &Path, opts: &MountOptions) -> Result<Self> {
        Self::open_logged(image, dir, opts, |_| {})
    }

    /// [`MountSession::open`], sending every failed read or write and each damaged chunk
    /// (once, with its number and disk offset) to `log`, from the serving threads.
    pub fn open_logged(
        image: &Path,
        dir: &Path,
        opts: &MountOptions,
        log: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Self> {
        let lock = lock_dir(dir)?;
        let canon = check_dir(dir)?;
        let log: Sink = Arc::new(log);
        let source = Arc::new(ImageSource::open(image, &opts.search, opts.cache_bytes)?);
        let l = log.clone();
        source.on_warning(move |m| l(m));
        let base: Arc<dyn BlockDev> = if opts.read_write {
            Arc::new(Overlay::new(
                source.clone(),
                OverlayStore::Memory {
                    limit: opts.overlay_limit,
                },
            )?)
        } else {
            source.clone()
        };
        let parts = plan_parts(&base, image)?;
        let mut session = MountSession {
            report: MountReport {
                image: image.to_path_buf(),
                dir: canon.clone(),
                disk: canon.join("raw/disk"),
                parts: Vec::new(),
                read_write: opts.read_write,
            },
            state: MountState {
                pid: std::process::id(),
                start_time: start_time(std::process::id()).unwrap_or(0),
                dir: canon.clone(),
                ..MountState::default()
            },
            state_file: state_path(&canon),
            fuse: None,
            closed: false,
            _lock: lock,
        };
        // from here on, a failure undoes what was made (Drop)
        session.save()?;
        let raw = canon.join("raw");
        session.mkdir(&raw)?;
        let mut files = vec![RawFile {
            name: "disk".into(),
            dev: base.clone(),
        }];
        for p in &parts {
            if p.number > 0 {
                files.push(RawFile {
                    name: p.name.clone(),
                    dev: Arc::new(Window::new(base.clone(), p.start, p.size)),
                });
            }
        }
        let fs = RawFs::new(files, opts.read_write, log);
        ensure_node("/dev/fuse", "fuse");
        // recorded before it is made: a kill in between leaves nothing `umount` cannot see
        session.state.fuse = Some(raw.clone());
        session.save()?;
        session.fuse = Some(
            fuse::spawn(fs, &raw)
                .map_err(|e| Error::io("mounting the image's files on", &raw, e))?,
        );
        let sector = base.geometry().logical_sector_size;
        for p in parts {
            let raw_file = if p.number == 0 {
                raw.join("disk")
            } else {
                raw.join(&p.name)
            };
            let mut part = MountedPart {
                name: p.name.clone(),
                number: p.number,
                fs: p.fs.map(|f| f.blkid_name().to_string()),
                label: p.label.clone(),
                size_bytes: p.size,
                raw: raw_file.clone(),
                dir: None,
                reason: None,
                driver: None,
            };
            match p.fs {
                None => part.reason = Some("no filesystem recognised".into()),
                Some(kind) => {
                    let target = canon.join(&p.name);
                    session.mkdir(&target)?;
                    match session.mount_fs(kind, &raw_file, &target, opts.read_write, sector) {
                        Ok(driver) => {
                            part.dir = Some(target);
                            part.driver = Some(driver);
                        }
                        Err(reason) => {
                            part.reason = Some(reason);
                            let _ = std::fs::remove_dir(&target);
                            session.state.made_dirs.retain(|d| d != &target);
                        }
                    }
                    session.save()?;
                }
            }
            session.report.parts.push(part);
        }
        Ok(session)
    }

    /// What was mounted where.
    pub fn report(&self) -> &MountReport {
        &self.report
    }

    /// Unmounts everything, reporting the first failure.
    pub fn close(mut self) -> Result<()> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let r = teardown(&self.state, self.fuse.take());
        if r.is_ok() {
            let _ = std::fs::remove_file(&self.state_file);
        }
        r
    }

    fn save(&self) -> Result<()> {
        std::fs::create_dir_all(RUN_DIR).map_err(|e| Error::io("creating", RUN_DIR, e))?;
        let tmp = self.state_file.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| Error::io("writing", &tmp, std::io::Error::other(e)))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &self.state_file)
            .map_err(|e| Error::io("writing", &self.state_file, e))
    }

    fn mkdir(&mut self, d: &Path) -> Result<()> {
        std::fs::create_dir(d).map_err(|e| Error::io("creating", d, e))?;
        self.state.made_dirs.push(d.to_path_buf());
        Ok(())
    }

    /// Mounts filesystem `kind` from `raw` on `target`; the driver's name, or why not.
    fn mount_fs(
        &mut self,
        kind: FsKind,
        raw: &Path,
        target: &Path,
        rw: bool,
        sector: u32,
    ) -> std::result::Result<String, String> {
        let kernel = |s: &mut Self, fstype: &str, data: &[&str]| {
            s.kernel_mount(raw, target, fstype, data, rw, sector)
        };
        match kind {
            FsKind::Ext2 | FsKind::Ext3 | FsKind::Ext4 => {
                kernel(self, "ext4", if rw { &[] } else { &["noload"] })
            }
            FsKind::Xfs => kernel(self, "xfs", if rw { &[] } else { &["norecovery"] }),
            FsKind::Btrfs if rw => kernel(self, "btrfs", &[]),
            FsKind::Btrfs => kernel(self, "btrfs", &["rescue=nologreplay"])
                .or_else(|_| kernel(self, "btrfs", &["nologreplay"])),
            FsKind::Iso9660 => kernel(self, "iso9660", &[]),
            FsKind::Fat12 | FsKind::Fat16 | FsKind::Fat32 => {
                kernel(self, "vfat", &[]).or_else(|k| {
                    let ro = if rw { "rw+" } else { "ro" };
                    self.helper_mount("fusefat", &["-o", ro], raw, target)
                        .map_err(|h| format!("{k}; {h}"))
                })
            }
            FsKind::Exfat => kernel(self, "exfat", &[]).or_else(|k| {
                // run as root, exfat-fuse wants a block device ("Block device required")
                let ro = if rw { "rw" } else { "ro" };
                self.helper_mount_on_loop("mount.exfat-fuse", &["-o", ro], raw, target, rw, sector)
                    .map_err(|h| format!("{k}; {h}"))
            }),
            FsKind::Ntfs => {
                let ro = if rw { "rw" } else { "ro" };
                self.helper_mount("ntfs-3g", &["-o", ro], raw, target)
                    .or_else(|h| kernel(self, "ntfs3", &[]).map_err(|k| format!("{h}; {k}")))
            }
            FsKind::Swap => Err("swap space: nothing to mount".into()),
            FsKind::Luks1 | FsKind::Luks2 => Err("encrypted (LUKS): not supported".into()),
            FsKind::Bitlocker => Err("encrypted (BitLocker): not supported".into()),
            FsKind::Lvm2 => Err("LVM physical volume: not supported".into()),
        }
    }

    /// A kernel mount of `raw` through a loop device.
    fn kernel_mount(
        &mut self,
        raw: &Path,
        target: &Path,
        fstype: &str,
        data: &[&str],
        rw: bool,
        sector: u32,
    ) -> std::result::Result<String, String> {
        ensure_node("/dev/loop-control", "loop");
        let (dev, handle) =
            loopdev::attach(raw, rw, sector).map_err(|e| crate::error::with_causes(&e))?;
        self.state.loops.push(dev.clone());
        let _ = self.save();
        let mut flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
        if !rw {
            flags |= MsFlags::MS_RDONLY;
        }
        let data = data.join(",");
        // recorded before it is made (teardown skips what is not mounted)
        self.state.mounts.push(target.to_path_buf());
        let _ = self.save();
        let r = nix::mount::mount(
            Some(&dev),
            target,
            Some(fstype),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        );
        drop(handle);
        match r {
            Ok(()) => Ok(format!("kernel {fstype}")),
            Err(e) => {
                self.state.mounts.retain(|m| m != target);
                // the handle was the last holder: autoclear has detached the device already,
                // and its number may belong to someone else by now, so never detach by path
                self.state.loops.retain(|l| l != &dev);
                let why = match e {
                    nix::errno::Errno::ENODEV => "the kernel has no such driver".to_string(),
                    e => e.desc().to_lowercase(),
                };
                Err(format!("kernel {fstype}: {why}"))
            }
        }
    }

    /// A FUSE driver that needs a block device, on a loop device over `raw`. The driver holds
    /// the device open while mounted; the device detaches itself when the driver closes it.
    fn helper_mount_on_loop(
        &mut self,
        tool: &str,
        args: &[&str],
        raw: &Path,
        target: &Path,
        rw: bool,
        sector: u32,
    ) -> std::result::Result<String, String> {
        ensure_node("/dev/loop-control", "loop");
        let (dev, handle) =
            loopdev::attach(raw, rw, sector).map_err(|e| crate::error::with_causes(&e))?;
        self.state.loops.push(dev.clone());
        let _ = self.save();
        let r = self.helper_mount(tool, args, &dev, target);
        drop(handle);
        if r.is_err() {
            self.state.loops.retain(|l| l != &dev);
        }
        r
    }

    /// A FUSE driver (`ntfs-3g`, `fusefat`…) on `raw`, which detaches once mounted.
    fn helper_mount(
        &mut self,
        tool: &str,
        args: &[&str],
        raw: &Path,
        target: &Path,
    ) -> std::result::Result<String, String> {
        self.state.mounts.push(target.to_path_buf());
        let _ = self.save();
        let out = Command::new(tool)
            .args(args)
            .arg(raw)
            .arg(target)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                self.state.mounts.retain(|m| m != target);
                return Err(if e.kind() == std::io::ErrorKind::NotFound {
                    format!("{tool}: not installed")
                } else {
                    format!("{tool}: {e}")
                });
            }
        };
        // a detaching driver returns once mounted; one that failed leaves nothing mounted
        if out.status.success() && is_mountpoint(target) {
            return Ok(tool.to_string());
        }
        self.state.mounts.retain(|m| m != target);
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed");
        Err(format!("{tool}: {}", line.trim()))
    }
}

impl Drop for MountSession {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}

/// Loads `module` with `modprobe` when device node `node` is missing (the rescue system's
/// Debian kernel has fuse and loop as modules, and devtmpfs makes their nodes only once they
/// are loaded; there `modprobe` is lifeboat itself), then waits up to 1 s for the node. A
/// failure shows later, as the error of opening the node.
pub(crate) fn ensure_node(node: &str, module: &str) {
    if Path::new(node).exists() {
        return;
    }
    let _ = Command::new("modprobe")
        .args(["-q", module])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(1);
    while !Path::new(node).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One partition to offer.
struct PartPlan {
    name: String,
    number: u32,
    start: u64,
    size: u64,
    fs: Option<FsKind>,
    label: Option<String>,
}

/// The partitions of `disk` with their filesystems; the whole disk as `p0` when it has no
/// table but holds a filesystem; an error when there is nothing to mount.
fn plan_parts(disk: &Arc<dyn BlockDev>, image: &Path) -> Result<Vec<PartPlan>> {
    let table = crate::partition::read_table(&**disk)?;
    let mut out = Vec::new();
    for p in table.iter().flat_map(|t| &t.partitions) {
        if p.extended {
            continue;
        }
        let w = Window::new(disk.clone(), p.start_bytes, p.size_bytes);
        // an unreadable superblock is "no filesystem", not a failed mount of the others
        let info = crate::fsmap::detect(&w).ok().flatten();
        out.push(PartPlan {
            name: format!("p{}", p.number),
            number: p.number,
            start: p.start_bytes,
            size: w.len(),
            fs: info.as_ref().map(|i| i.kind),
            label: info.and_then(|i| i.label),
        });
    }
    if out.is_empty() {
        if let Some(info) = crate::fsmap::detect(&**disk).ok().flatten() {
            out.push(PartPlan {
                name: "p0".into(),
                number: 0,
                start: 0,
                size: disk.len(),
                fs: Some(info.kind),
                label: info.label,
            });
        } else {
            return Err(Error::Refused {
                path: image.to_path_buf(),
                reason: "the disk in this image has no partitions and no filesystem: \
                         nothing to mount"
                    .into(),
            });
        }
    }
    Ok(out)
}

/// Undoes what `state` lists: filesystem mounts (killing FUSE drivers left serving them),
/// loop devices, the FUSE mount (joining its server when this process runs it), directories.
fn teardown(state: &MountState, fuse: Option<fuser::BackgroundSession>) -> Result<()> {
    let mut first: Option<Error> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    for m in state.mounts.iter().rev() {
        keep(unmount_path(m));
        kill_helpers(m);
    }
    for l in &state.loops {
        if loopdev::backing_file(l).is_some_and(|b| b.starts_with(&state.dir)) {
            keep(loopdev::detach(l));
        }
    }
    if let Some(raw) = &state.fuse {
        keep(unmount_path(raw));
    }
    if let Some(bg) = fuse {
        // its threads end once the mount is gone
        let _ = bg.join();
    }
    for d in state.made_dirs.iter().rev() {
        if !is_mountpoint(d) {
            let _ = std::fs::remove_dir(d);
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Unmounts `path` if something is mounted there, retrying while busy for up to 2 s (a loop
/// device being released); still busy, it stays mounted and the error says why.
fn unmount_now(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while is_mountpoint(path) {
        match umount2(path, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(nix::errno::Errno::EBUSY) => {
                return Err(Error::Busy {
                    path: path.to_path_buf(),
                    reason: "a program is using it (a shell's current folder or an open file); \
                             close it and run lifeboat umount again"
                        .into(),
                })
            }
            Err(e) => return Err(Error::io("unmounting", path, e.into())),
        }
    }
    Ok(())
}

/// Unmounts `path` if something is mounted there: normally, retrying while busy for up to
/// 2 s (a loop device being released), then lazily (MNT_DETACH).
pub(crate) fn unmount_path(path: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while is_mountpoint(path) {
        match umount2(path, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => {
                return umount2(path, MntFlags::MNT_DETACH)
                    .map_err(|e| Error::io("unmounting", path, e.into()))
            }
        }
    }
    Ok(())
}

/// SIGTERMs FUSE driver processes still serving `mountpoint` (after a lazy unmount, or a
/// driver that did not exit), found by their command line.
fn kill_helpers(mountpoint: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let want = mountpoint.as_os_str().as_encoded_bytes();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        let driver = args.first().is_some_and(|a| {
            let name = a.rsplit(|b| *b == b'/').next().unwrap_or(a);
            [
                &b"ntfs-3g"[..],
                b"fusefat",
                b"mount.exfat-fuse",
                b"exfat-fuse",
            ]
            .contains(&name)
        });
        if driver && args.contains(&want) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// True when `path` is a mount point in this process's namespace.
pub fn is_mountpoint(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| {
        crate::discovery::mountinfo::parse_mountinfo(&t)
            .iter()
            .any(|m| m.mount_point == path)
    })
}

fn read_state(path: &Path) -> Option<MountState> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Field 22 (start time in clock ticks) of /proc/PID/stat; `None` when the process is gone
/// or a zombie (it has exited; only its parent has not reaped it yet).
fn start_time(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name (field 2) may hold spaces: count from the last ')'
    let mut rest = s[s.rfind(')')? + 1..].split_whitespace();
    if matches!(rest.next(), Some("Z" | "X")) {
        return None;
    }
    rest.nth(18)?.parse().ok()
}

/// True while the server that wrote `s` runs.
fn alive(s: &MountState) -> bool {
    s.pid != 0 && start_time(s.pid).is_some_and(|t| t == s.start_time)
}

/// Removes what a mount made under `dir`, whether its server still runs or was killed.
///
/// A live server gets SIGTERM and does its own teardown (waited for, up to 30 s; then it is
/// killed); otherwise this process undoes what the state file lists.
pub fn unmount(dir: &Path) -> Result<()> {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let file = state_path(&canon);
    let Some(state) = read_state(&file) else {
        return Err(Error::Refused {
            path: dir.to_path_buf(),
            reason: "no lifeboat mount here".into(),
        });
    };
    if alive(&state) && state.pid == std::process::id() {
        return Err(Error::Busy {
            path: canon,
            reason: "mounted by this process: close its session".into(),
        });
    }
    // the filesystems first, each refused while in use (a shell's folder, an open file), so
    // that a busy mount stays whole and usable instead of being detached half-way
    for m in state.mounts.iter().rev() {
        unmount_now(m)?;
        kill_helpers(m);
    }
    if alive(&state) {
        let pid = nix::unistd::Pid::from_raw(state.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + SERVER_GRACE;
        while alive(&state) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive(&state) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(&state) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !file.exists() {
            return Ok(());
        }
    }
    // the server is gone (killed, or its own teardown failed): undo what it listed
    teardown(&state, None)?;
    let _ = std::fs::remove_file(&file);
    Ok(())
}

/// A new, empty folder (mode 0700) to mount an image in: under `/run/lifeboat` when `/run`
/// can be written (the rescue system, root on a host), else under the temporary folder. The
/// caller removes it (empty) when done.
pub fn private_dir(tag: &str) -> Result<PathBuf> {
    let run = Path::new("/run/lifeboat");
    let base = if std::fs::create_dir_all(run).is_ok()
        && nix::unistd::access(run, nix::unistd::AccessFlags::W_OK).is_ok()
    {
        run.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let pid = std::process::id();
    for n in 0..1000u32 {
        let d = base.join(format!("{tag}-{pid}-{n}"));
        match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(&d)
        {
            Ok(()) => return Ok(d),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("creating", d, e)),
        }
    }
    Err(Error::Refused {
        path: base,
        reason: "no free name for a private folder".into(),
    })
}

/// An image mounted in its own new private folder ([`private_dir`]), for the time one
/// command or one menu visit needs it: unmounted, and the folder removed, when closed or
/// dropped.
#[derive(Debug)]
pub struct PrivateMount {
    session: Option<MountSession>,
    dir: PathBuf,
}

impl PrivateMount {
    /// Mounts `image` read-only in a new private folder named after `tag`.
    pub fn open(image: &Path, tag: &str, opts: &MountOptions) -> Result<PrivateMount> {
        let dir = private_dir(tag)?;
        match MountSession::open(image, &dir, opts) {
            Ok(s) => Ok(PrivateMount {
                session: Some(s),
                dir,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// What was mounted where (`None` once closed).
    pub fn report(&self) -> Option<&MountReport> {
        self.session.as_ref().map(MountSession::report)
    }

    /// Unmounts, reporting a failure; the folder is removed once everything is unmounted.
    pub fn close(mut self) -> Result<()> {
        let r = self.session.take().map_or(Ok(()), MountSession::close);
        if r.is_ok() {
            let _ = std::fs::remove_dir(&self.dir);
        }
        r
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            drop(s); // unmounts
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}
