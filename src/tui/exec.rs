//! The command executor: carries out the [`Cmd`]s that [`update`](super::app::update)
//! returns, the I/O the pure model never does. Scans, mounts and plans run on threads of the
//! loop's scope and answer as messages (a mount or a plan as a [`Msg::Reply`] to the request
//! the menu waits for); a job runs on its own thread with its events forwarded; a shell takes
//! the terminal until it exits. Jobs are the same `plan()` and `run()` the CLI calls.
//!
//! The network: listing the interfaces and DHCP (bounded by [`DHCP_TIMEOUT`]) answer as
//! plain messages that are never dropped; asking an SFTP server for its host keys and mounting a network store
//! are requests like a local mount, and a network store is mounted where a local one would
//! be, after the same release of the store in use.

use super::app::{
    self, Cmd, ImageEntry, JobRequest, Listing, Model, Msg, NetMount, Planned, S3Open, Storage,
};
use super::screens::image::ImageKind;
use super::screens::network::DHCP_TIMEOUT;
use super::screens::storage::StoreChoice;
use super::{outcome, terminal, Exit};
use crate::access::mount::{MountOptions, PrivateMount};
use crate::discovery::SystemPaths;
use crate::jobs::chain::{self as chains, ChildKind};
use crate::jobs::copy_out;
use crate::jobs::run::VerifyJob;
use crate::jobs::{self, clone, image, restore, CancelToken};
use crate::jobs::{DEFAULT_FILE_SECTOR_SIZE, DEFAULT_THREADS};
use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the commands share with the loop: the thread scope and the channel answers come back
/// on, and what is pending (the request waited for, the running job, a mount of ours).
/// Lives for one run of the loop; `'scope` and `'env` are the loop's thread scope's.
pub(super) struct Exec<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    tx: Sender<Msg>,
    /// Scan, mount and plan threads still running.
    readers: &'env AtomicUsize,
    /// Set while a shell has the terminal: the input thread stops reading.
    paused: &'env AtomicBool,
    /// The input thread has stopped reading.
    parked: &'env AtomicBool,
    /// Where a chosen storage filesystem is mounted.
    mount_at: &'env Path,
    /// The request whose answer the menu waits for.
    latest: u64,
    /// The storage at `mount_at` was mounted by us.
    mounted: bool,
    /// The pending mount request mounts at `mount_at`.
    mounted_by_us: bool,
    /// Cancels the running job; `None` when no job runs.
    cancel: Option<CancelToken>,
    /// The browser's open image (a copy out of it holds it too, so that it stays mounted
    /// until the copy has ended).
    browse: Option<Arc<OpenImage>>,
    /// An image mounted by a request, until its answer is taken (or dropped) by `reply`.
    pending: Arc<Mutex<Option<(u64, OpenImage)>>>,
}

/// An image the browser opened (see [`PrivateMount`]).
pub(super) type OpenImage = PrivateMount;

impl<'scope, 'env> Exec<'scope, 'env> {
    /// An executor that spawns on `scope` and answers on `tx`; the atomics are the loop's
    /// (see the fields).
    pub(super) fn new(
        scope: &'scope Scope<'scope, 'env>,
        tx: Sender<Msg>,
        readers: &'env AtomicUsize,
        (paused, parked): (&'env AtomicBool, &'env AtomicBool),
        mount_at: &'env Path,
    ) -> Self {
        Exec {
            scope,
            tx,
            readers,
            paused,
            parked,
            mount_at,
            latest: 0,
            mounted: false,
            mounted_by_us: false,
            cancel: None,
            browse: None,
            pending: Arc::new(Mutex::new(None)),
        }
    }

    /// A job runs (the menu waits for its end before it leaves).
    pub(super) fn job_running(&self) -> bool {
        self.cancel.is_some()
    }

    /// The storage at `mount_at` was mounted by this menu (and is unmounted when it leaves).
    pub(super) fn mounted(&self) -> bool {
        self.mounted
    }

    /// Scans the disks (and lists `dir` first, when given) on a reader thread.
    pub(super) fn rescan(&self, dir: Option<PathBuf>) {
        let (tx, readers) = (self.tx.clone(), self.readers);
        readers.fetch_add(1, Ordering::SeqCst);
        self.scope.spawn(move || {
            let _done = Done(readers);
            // the images first: "scanning" ends with the disks, and then both are fresh
            if let Some(d) = dir {
                let _ = tx.send(Msg::Images(list_images(&d)));
            }
            let _ = tx.send(Msg::Devices(scan()));
        });
    }

    /// The message inside the answer `m` to request `id`, or `None` when nobody waits for it
    /// any more (a later request, or Esc while waiting: `waiting` is false).
    pub(super) fn reply(&mut self, id: u64, m: Msg, waiting: bool) -> Option<Msg> {
        if id == self.latest && matches!(m, Msg::StorageReady(Ok(_))) {
            self.mounted = self.mounted_by_us; // even when nobody waits for it any more
        }
        let wanted = id == self.latest && waiting;
        if matches!(m, Msg::Mounted(Ok(_))) {
            // the browser's image: kept when the menu takes the answer, else unmounted
            let open = match self.pending.lock() {
                Ok(mut p) if p.as_ref().is_some_and(|(pid, _)| *pid == id) => {
                    p.take().map(|(_, o)| o)
                }
                _ => None,
            };
            if wanted {
                self.browse = open.map(Arc::new);
            }
        }
        if !wanted {
            return None;
        }
        Some(m)
    }

    /// The job ended: nothing to cancel any more, and the storage folder `dir` is listed
    /// again, so that a new image (or a deleted partial one) shows in the lists at once.
    pub(super) fn job_ended(&mut self, dir: Option<PathBuf>) {
        self.cancel = None;
        if let Some(dir) = dir {
            let tx = self.tx.clone();
            self.scope.spawn(move || {
                let _ = tx.send(Msg::Images(list_images(&dir)));
            });
        }
    }

    /// Cancels the running job, if any (when the menu leaves: it never leaves a job behind;
    /// the scope joins it).
    pub(super) fn cancel(&self) {
        if let Some(c) = &self.cancel {
            c.cancel();
        }
    }

    /// Sends a new request, the one the menu now waits for: `answer(id)` runs on a reader
    /// thread and its message comes back as `Msg::Reply(id, ..)`.
    fn request(&mut self, answer: impl FnOnce(u64) -> Msg + Send + 'scope) {
        self.latest += 1;
        let id = self.latest;
        let (tx, readers) = (self.tx.clone(), self.readers);
        readers.fetch_add(1, Ordering::SeqCst);
        self.scope.spawn(move || {
            let _done = Done(readers);
            let _ = tx.send(Msg::Reply(id, Box::new(answer(id))));
        });
    }

    /// Carries out `cmd`; `Some` when the menu is to leave. A shell suspends `term`, and
    /// failing to start one is shown on `model`.
    pub(super) fn execute(
        &mut self,
        cmd: Cmd,
        model: &mut Model,
        term: &mut terminal::Terminal,
    ) -> Option<Exit> {
        match cmd {
            Cmd::Quit => return Some(Exit::Quit),
            Cmd::PowerOff => return Some(Exit::PowerOff),
            Cmd::Reboot => return Some(Exit::Reboot),
            Cmd::Rescan => self.rescan(model.storage.as_ref().map(|s| s.dir.clone())),
            Cmd::MountStorage(c) => {
                self.mounted_by_us = c.mountpoint.is_none();
                if self.mounted_by_us {
                    self.mounted = false; // whatever was there is unmounted first
                }
                let at = self.mount_at.to_path_buf();
                self.request(move |_| Msg::StorageReady(mount_storage(&c, &at)));
            }
            Cmd::MountNetStore(m) => {
                self.mounted_by_us = true;
                self.mounted = false; // whatever was there is unmounted first
                let at = self.mount_at.to_path_buf();
                self.request(move |_| Msg::StorageReady(mount_net_storage(&m, &at)));
            }
            Cmd::OpenS3(o) => {
                self.request(move |_| Msg::StorageReady(open_s3_storage(&o)));
            }
            Cmd::HostKeys(store) => self.request(move |_| {
                Msg::HostKeys(
                    crate::store::net::host_key_fingerprints(&store)
                        .map(|keys| (store, keys))
                        .map_err(|e| crate::error::with_causes(&e)),
                )
            }),
            Cmd::NetRefresh => {
                let tx = self.tx.clone();
                self.scope.spawn(move || {
                    let _ = tx.send(Msg::Network(net_state()));
                });
            }
            Cmd::Dhcp(iface) => {
                // bounded by its timeout; not a reader (the menu never waits for it)
                let tx = self.tx.clone();
                self.scope.spawn(move || {
                    let r = crate::net::dhcp(&iface, DHCP_TIMEOUT)
                        .map_err(|e| crate::error::with_causes(&e));
                    let _ = tx.send(Msg::Dhcp(iface, r));
                    let _ = tx.send(Msg::Network(net_state()));
                });
            }
            Cmd::Plan(req) => self.request(move |_| Msg::Planned(plan(&req))),
            Cmd::Start(p) => {
                let (tx, c) = (self.tx.clone(), CancelToken::new());
                self.cancel = Some(c.clone());
                // a copy out of the open image keeps it mounted until the copy ends
                let hold = matches!(p, Planned::CopyOut(_))
                    .then(|| self.browse.clone())
                    .flatten();
                self.scope.spawn(move || {
                    run_job(Job::Planned(p), &tx, &c);
                    drop(hold);
                });
            }
            Cmd::Verify(path) => {
                let (tx, c) = (self.tx.clone(), CancelToken::new());
                self.cancel = Some(c.clone());
                self.scope
                    .spawn(move || run_job(Job::Verify(path), &tx, &c));
            }
            Cmd::MountImage(image) => {
                self.browse = None; // one image at a time
                let pending = self.pending.clone();
                self.request(move |id| {
                    let r = match OpenImage::open(
                        &image,
                        "lifeboat-browse",
                        &MountOptions::default(),
                    ) {
                        Ok(o) => {
                            let report = o.report().cloned();
                            // the slot keeps the newest request's image: an older one
                            // (unclaimed, or this one when a newer finished first) is
                            // unmounted, outside the lock
                            let stale = match pending.lock() {
                                Ok(p) if p.as_ref().is_some_and(|(newer, _)| *newer > id) => {
                                    Some(o)
                                }
                                Ok(mut p) => p.replace((id, o)).map(|(_, old)| old),
                                Err(_) => Some(o),
                            };
                            drop(stale);
                            report.ok_or_else(|| app::Failure {
                                what: "opening the image".into(),
                                causes: vec!["the mount ended at once".into()],
                                ..app::Failure::default()
                            })
                        }
                        Err(e) => Err(outcome::failure("opening the image", &e, false)),
                    };
                    Msg::Mounted(r)
                });
            }
            Cmd::ListDir(dir) => self.request(move |_| {
                Msg::Listed(
                    copy_out::list_dir(&dir)
                        .map(|v| (dir, v))
                        .map_err(|e| outcome::failure("reading the folder", &e, false)),
                )
            }),
            Cmd::CloseMount => {
                if let Some(open) = self.browse.take() {
                    let tx = self.tx.clone();
                    self.readers.fetch_add(1, Ordering::SeqCst);
                    let readers = self.readers;
                    self.scope.spawn(move || {
                        let _done = Done(readers);
                        // a copy still running holds the image: it is unmounted when the
                        // copy ends (the last holder drops it)
                        if let Ok(o) = Arc::try_unwrap(open) {
                            let r = o
                                .close()
                                .map_err(|e| outcome::failure("closing the image", &e, false));
                            let _ = tx.send(Msg::MountClosed(r));
                        }
                    });
                }
            }
            Cmd::Cancel => self.cancel(),
            Cmd::Shell => {
                // the input thread stops reading before the shell gets the terminal
                self.paused.store(true, Ordering::SeqCst);
                let t = Instant::now();
                while !self.parked.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(1) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let r = term.suspend(shell);
                self.paused.store(false, Ordering::SeqCst);
                let failed = match r {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(("starting a shell", e)),
                    Err(e) => Some(("taking the screen back after the shell", e)),
                };
                if let Some((what, e)) = failed {
                    model.failure = Some(app::Failure {
                        what: what.into(),
                        causes: vec![e.to_string()],
                        advice: "Press Enter; if the screen stays wrong, leave with q and come back with menu.".into(),
                        ..app::Failure::default()
                    });
                }
            }
        }
        None
    }
}

/// Disk reports for the Home screen, or the error chain in words.
fn scan() -> Result<Vec<crate::inspect::DiskReport>, String> {
    crate::inspect::list(&SystemPaths::default()).map_err(|e| crate::error::with_causes(&e))
}

/// Seconds since 1970.
pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The images in `dir`, with their file sizes, and how many encrypted ones no passphrase
/// typed so far opens.
pub(super) fn list_images(dir: &Path) -> Result<Listing, String> {
    let (found, locked) =
        chains::images_and_locked_in(dir).map_err(|e| crate::error::with_causes(&e))?;
    let images = found
        .into_iter()
        .map(|f| ImageEntry {
            file_bytes: crate::image::image_bytes(&f.path),
            found: f,
        })
        .collect();
    Ok(Listing {
        images,
        locked: locked.len(),
        fleet: crate::image::packs::is_store(dir),
    })
}

/// The interfaces and the recorded configurations, or the error chain in words.
fn net_state() -> Result<(Vec<crate::net::Interface>, Vec<crate::net::NetConfig>), String> {
    crate::net::interfaces()
        .map(|i| (i, crate::net::recorded()))
        .map_err(|e| crate::error::with_causes(&e))
}

/// Unmounts the storage mounted at `at`, if any, before another is mounted there: it is
/// replaced, but never pulled from under a job: a busy one (another console writing to it)
/// is kept and the choice refused.
fn release_storage(at: &Path) -> Result<(), app::Failure> {
    crate::store::release(at).map_err(|e| app::Failure {
        what: "changing the storage".into(),
        causes: vec![format!("unmounting {}: {e}", at.display())],
        advice: "The storage in use is busy (a job on another console may be writing to it). Let it finish, then choose again.".into(),
        ..app::Failure::default()
    })
}

/// The images in the storage folder `dir`, as a failure of the storage when it cannot be read.
fn list_storage(dir: &Path) -> Result<Listing, app::Failure> {
    list_images(dir).map_err(|e| app::Failure {
        what: "listing the storage".into(),
        causes: vec![e],
        advice: "Check the filesystem from the shell, or choose another.".into(),
        ..app::Failure::default()
    })
}

/// Mounts the network store `m` at `at` (releasing the storage there first, and trusting the
/// SSH host keys the user confirmed), and lists its images.
fn mount_net_storage(m: &NetMount, at: &Path) -> Result<(Storage, Listing), app::Failure> {
    use crate::store::net::{self, Kind, Trust};
    release_storage(at)?;
    for line in &m.trust {
        net::trust_host_key(line).map_err(|e| {
            outcome::failure_any(
                "trusting the SSH host key",
                &e.into(),
                "The rescue system's /run may be full or read-only; check it from the shell.",
            )
        })?;
    }
    // the boot credentials (lifeboat.credentials=: a domain, an SSH key, host keys) under
    // what the form says
    let mut creds = net::default_credentials().unwrap_or_default();
    if m.creds.password.is_some() {
        creds.password = m.creds.password.clone();
    }
    // the confirmed keys are in RESCUE_KNOWN_HOSTS now: any other key is refused
    net::mount(&m.store, &creds, Trust::Refuse, at).map_err(|e| {
        outcome::failure_any(
            "mounting the network store",
            &e.into(),
            "Check the host, the share or folder, the user and the password, and that this computer is online (n on the disk list).",
        )
    })?;
    let listing = list_storage(at)?;
    Ok((
        Storage {
            dir: at.to_path_buf(),
            device: None,
            disk: None,
            fs: Some(
                match m.store.kind {
                    Kind::Smb => "cifs",
                    Kind::Nfs => "nfs4",
                    Kind::Sftp => "sshfs",
                }
                .into(),
            ),
            label: Some(m.store.to_string()),
        },
        listing,
    ))
}

/// Opens the S3 folder `o` as the storage: its keys become the session's
/// ([`crate::store::s3::set_session`]), and its images are listed (which checks the endpoint,
/// the keys and the bucket). On failure the session's keys are forgotten.
fn open_s3_storage(o: &S3Open) -> Result<(Storage, Listing), app::Failure> {
    let cfg = o.config().map_err(|e| app::Failure {
        what: "opening the S3 store".into(),
        causes: vec![format!("{}: {e}", o.endpoint)],
        advice: "Check the endpoint's address.".into(),
        ..app::Failure::default()
    })?;
    crate::store::s3::set_session(Some(cfg));
    let dir = PathBuf::from(&o.url);
    let listing = list_images(&dir).map_err(|e| {
        crate::store::s3::set_session(None);
        app::Failure {
            what: "opening the S3 store".into(),
            causes: vec![e],
            advice: "Check the endpoint, the bucket, the keys, and that this computer is online (n on the disk list).".into(),
            ..app::Failure::default()
        }
    })?;
    Ok((
        Storage {
            dir,
            device: None,
            disk: None,
            fs: Some("s3".into()),
            label: Some(format!("{} at {}", o.url, o.endpoint)),
        },
        listing,
    ))
}

/// Mounts `c` at `at` unless it is mounted already, and lists its images.
fn mount_storage(c: &StoreChoice, at: &Path) -> Result<(Storage, Listing), app::Failure> {
    let dir = match &c.mountpoint {
        Some(m) => m.clone(),
        None => {
            release_storage(at)?;
            let t = crate::store::local::StoreTarget {
                device: c.device.clone(),
                disk: c.disk.clone(),
                fs: c.fs,
                label: c.label.clone(),
            };
            crate::store::local::mount(&t, at).map_err(|e| {
                outcome::failure_any(
                    "mounting the storage",
                    &e.into(),
                    "Choose another filesystem, or check this one from the shell (fsck). A Windows disk must be shut down fully (not hibernated) to be written.",
                )
            })?;
            at.to_path_buf()
        }
    };
    let listing = list_storage(&dir)?;
    Ok((
        Storage {
            dir,
            device: Some(c.device.clone()),
            disk: Some(c.disk.clone()),
            fs: Some(c.fs.to_string()),
            label: c.label.clone(),
        },
        listing,
    ))
}

/// Plans `req` with the job's own `plan()`, so that the TUI refuses what the CLI refuses.
pub(super) fn plan(req: &JobRequest) -> Result<Planned, app::Failure> {
    let paths = SystemPaths::default();
    match req {
        JobRequest::Image {
            source,
            dir,
            name,
            kind,
            level,
            rescue,
            full_swap,
            passphrase,
            recovery_key,
            dedup,
        } => {
            let what = "planning the image";
            let fail = |e: &crate::Error| outcome::failure(what, e, false);
            let mut resume = false;
            // a storage that is a fleet store (made by a first image with "fleet store" yes,
            // or `image --dedup`) takes full images, deduplicated against the others, under
            // its key if it has one
            let fleet = *dedup || crate::image::packs::is_store(dir);
            if fleet {
                let refuse = |why: &str, advice: &str| app::Failure {
                    what: what.into(),
                    causes: vec![format!("{}: {why}", dir.display())],
                    advice: advice.into(),
                    ..app::Failure::default()
                };
                if *kind != ImageKind::Full || *rescue {
                    return Err(refuse(
                        "a fleet store holds full images only, made in the normal mode (each \
                         stores only what the store does not hold yet)",
                        "Go back (Esc) and choose the kind full and the mode normal.",
                    ));
                }
                let keyed = crate::image::packs::StoreKeys::read(dir)
                    .map_err(|e| fail(&e))?
                    .is_some();
                if keyed && passphrase.is_none() {
                    return Err(refuse(
                        "it is an encrypted fleet store: every image there is encrypted under \
                         its key",
                        "Go back (Esc), set encrypt to yes and type the store's passphrase.",
                    ));
                }
            }
            let (parent, output) = match kind {
                ImageKind::Full => {
                    let out = dir.join(format!("{name}.lbi"));
                    // a rescue into a name already used goes on with that rescue
                    resume = *rescue && (image::rescue_log_path(&out).exists() || out.exists());
                    if let Some(taken) = crate::image::volumes::existing_files(&out)
                        .first()
                        .filter(|_| !resume)
                    {
                        return Err(app::Failure {
                            what: what.into(),
                            causes: vec![format!("{} already exists", taken.display())],
                            advice: "Go back (Esc) and choose another name.".into(),
                            ..app::Failure::default()
                        });
                    }
                    (None, out)
                }
                ImageKind::Incremental | ImageKind::Differential => {
                    let child = if *kind == ImageKind::Incremental {
                        ChildKind::Incremental
                    } else {
                        ChildKind::Differential
                    };
                    let (spec, out) = image::ParentSpec::newest_in(
                        dir,
                        source,
                        DEFAULT_FILE_SECTOR_SIZE,
                        child,
                        unix_now(),
                    )
                    .map_err(|e| fail(&e))?;
                    (Some(spec), out)
                }
            };
            let spec = image::ImageSpec {
                full_swap: *full_swap,
                encrypt: passphrase.clone().map(|p| image::Encrypt {
                    passphrase: p,
                    recovery_key: *recovery_key,
                }),
                level: *level,
                parent,
                dedup: fleet,
                rescue: rescue.then(|| image::RescueOptions {
                    resume,
                    ..image::RescueOptions::default()
                }),
                ..image::ImageSpec::new(source.clone(), output)
            };
            image::plan(&spec, &paths)
                .map(|p| Planned::Image(Box::new(p)))
                .map_err(|e| fail(&e))
        }
        JobRequest::Restore {
            image,
            target,
            grow_last,
            new_disk_id,
            fit,
        } => {
            let spec = restore::RestoreSpec {
                image: image.clone(),
                target: target.clone(),
                verify: true,
                threads: DEFAULT_THREADS,
                search: Vec::new(),
                grow_last: *grow_last,
                new_disk_id: *new_disk_id,
                fit: fit.then(crate::jobs::fit::FitOptions::default),
            };
            restore::plan(&spec, &paths)
                .map(|p| Planned::Restore(Box::new(p)))
                .map_err(|e| outcome::failure("planning the restore", &e, false))
        }
        JobRequest::Clone {
            source,
            target,
            grow_last,
            new_disk_id,
            fit,
        } => {
            let spec = clone::CloneSpec {
                source: source.clone(),
                target: target.clone(),
                verify: true,
                threads: DEFAULT_THREADS,
                grow_last: *grow_last,
                new_disk_id: *new_disk_id,
                file_sector_size: DEFAULT_FILE_SECTOR_SIZE,
                fit: fit.then(crate::jobs::fit::FitOptions::default),
                full_swap: false,
            };
            clone::plan(&spec, &paths)
                .map(|p| Planned::Clone(Box::new(p)))
                .map_err(|e| outcome::failure("planning the clone", &e, false))
        }
        JobRequest::CopyOut { items, dest } => {
            let spec = copy_out::CopySpec {
                items: items.clone(),
                dest: dest.clone(),
            };
            copy_out::plan(&spec)
                .map(|p| Planned::CopyOut(Box::new(p)))
                .map_err(|e| outcome::failure("checking the copy", &e, false))
        }
    }
}

/// A job the loop runs.
enum Job {
    Planned(Planned),
    Verify(PathBuf),
}

/// Runs `job` through the job runner, forwarding its events as [`Msg::Job`]; the last one is
/// the runner's `Finished`, with the typed summary or error.
fn run_job(job: Job, tx: &Sender<Msg>, cancel: &CancelToken) {
    let job = match job {
        Job::Planned(Planned::Image(p)) => jobs::Job::Image(p),
        Job::Planned(Planned::Restore(p)) => jobs::Job::Restore(p),
        Job::Planned(Planned::Clone(p)) => jobs::Job::Clone(p),
        Job::Planned(Planned::CopyOut(p)) => jobs::Job::CopyOut(p),
        Job::Verify(path) => jobs::Job::Verify(VerifyJob {
            path,
            search: Vec::new(),
            threads: DEFAULT_THREADS,
        }),
    };
    let (events, rx) = crossbeam_channel::bounded(1024);
    std::thread::scope(|s| {
        let fwd = tx.clone();
        s.spawn(move || {
            for e in rx {
                if fwd.send(Msg::Job(e)).is_err() {
                    return;
                }
            }
        });
        let _ = jobs::run::run(job, &events, cancel);
        drop(events); // ends the forwarder after the last event
    });
}

/// Counts a reader thread out when it ends, however it ends.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A shell on the terminal until it exits.
fn shell() -> std::io::Result<()> {
    let sh = std::env::var_os("SHELL")
        .filter(|s| Path::new(s).exists())
        .unwrap_or_else(|| "/bin/sh".into());
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "Lifeboat: a shell. Type exit to go back to the menu.");
    std::process::Command::new(sh)
        .env("PS1", "lifeboat-shell# ")
        .status()
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Codec, EncodedChunk, Header, ImageMeta, ImageWriter};

    #[test]
    fn a_split_image_is_listed_once_with_every_volume_counted() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("pc.lbi");
        let header = Header {
            chunk_size: 1 << 20,
            source_size: 4 << 20,
            block_size: 1 << 20,
            volume_size: 1 << 20,
            ..crate::image::format::sample_header()
        };
        let mut w = ImageWriter::create(&first, header).unwrap();
        for i in 0..3u64 {
            let raw: Vec<u8> = (0..1 << 20).map(|b: u64| (b * 7 + i) as u8).collect();
            w.push(EncodedChunk::single(i << 20, &raw, Codec::Raw, raw.clone()))
                .unwrap();
        }
        let s = w.finish(&ImageMeta::default()).unwrap();
        assert_eq!(s.files.len(), 4);
        let l = list_images(dir.path()).unwrap();
        let (listed, locked) = (l.images, l.locked);
        assert!(!l.fleet);
        assert_eq!((listed.len(), locked), (1, 0), "{listed:?}");
        assert_eq!(listed[0].found.path, first);
        assert_eq!(listed[0].file_bytes, s.file_bytes);
    }
}
