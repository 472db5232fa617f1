//! The full-screen terminal UI (ratatui + crossterm): `lifeboat tui`, `lifeboat` with no
//! arguments on a terminal, and the rescue system's screen.
//!
//! Elm style (STYLE §6): [`app::Model`] and the pure [`app::update`], the pure [`view::view`],
//! and this loop, the only place with I/O. One channel of [`app::Msg`] is fed by an input
//! thread, a 250 ms ticker, scans, plans, and a forwarder of the running job's events; only
//! this thread draws. Jobs are the same `plan()` and `run()` the CLI calls. The terminal is
//! restored on every exit, and on panic by the terminal guard's hook.

pub mod app;
pub mod outcome;
mod terminal;
pub mod view;

use crate::discovery::SystemPaths;
use crate::jobs::chain::{self as chains, ChildKind};
use crate::jobs::{clone, image, restore, verify, CancelToken, Reporter};
use crate::jobs::{DEFAULT_FILE_SECTOR_SIZE, DEFAULT_THREADS};
use app::{Cmd, ImageEntry, ImageKind, JobRequest, Model, Msg, Planned, Storage, StoreChoice};
use crossbeam_channel::{bounded, Sender};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the TUI was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// A folder to use as the image storage from the start.
    pub images: Option<PathBuf>,
    /// Where a chosen storage filesystem is mounted.
    pub mount_at: PathBuf,
    /// Started by the rescue system's PID 1: offer power off and reboot.
    pub rescue: bool,
}

/// Why the TUI ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The user left.
    Quit,
    /// The user asked to power off.
    PowerOff,
    /// The user asked to reboot.
    Reboot,
}

/// Disk reports for the Home screen, or the error chain in words.
fn scan() -> Result<Vec<crate::inspect::DiskReport>, String> {
    crate::inspect::list(&SystemPaths::default()).map_err(|e| crate::error::with_causes(&e))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The images in `dir`, with their file sizes.
fn list_images(dir: &Path) -> Result<Vec<ImageEntry>, String> {
    let found = chains::images_in(dir).map_err(|e| crate::error::with_causes(&e))?;
    Ok(found
        .into_iter()
        .map(|f| ImageEntry {
            file_bytes: std::fs::metadata(&f.path).map_or(0, |m| m.len()),
            found: f,
        })
        .collect())
}

/// Mounts `c` at `at` unless it is mounted already, and lists its images.
fn mount_storage(c: &StoreChoice, at: &Path) -> Result<(Storage, Vec<ImageEntry>), app::Failure> {
    let dir = match &c.mountpoint {
        Some(m) => m.clone(),
        None => {
            // a storage mounted here before is replaced, but never pulled from under a job:
            // a busy one (another console writing to it) is kept and the choice refused
            if let Err(e) = crate::store::release(at) {
                return Err(app::Failure {
                    what: "changing the storage".into(),
                    causes: vec![format!("unmounting {}: {e}", at.display())],
                    advice: "The storage in use is busy (a job on another console may be writing to it). Let it finish, then choose again.".into(),
                    ..app::Failure::default()
                });
            }
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
    let images = list_images(&dir).map_err(|e| app::Failure {
        what: "listing the storage".into(),
        causes: vec![e],
        advice: "Check the filesystem from the shell, or choose another.".into(),
        ..app::Failure::default()
    })?;
    Ok((
        Storage {
            dir,
            device: Some(c.device.clone()),
            disk: Some(c.disk.clone()),
            fs: Some(c.fs.to_string()),
            label: c.label.clone(),
        },
        images,
    ))
}

/// Plans `req` with the job's own `plan()`, so that the TUI refuses what the CLI refuses.
fn plan(req: &JobRequest) -> Result<Planned, app::Failure> {
    let paths = SystemPaths::default();
    match req {
        JobRequest::Image {
            source,
            dir,
            name,
            kind,
            level,
        } => {
            let what = "planning the image";
            let fail = |e: &crate::Error| outcome::failure(what, e, false);
            let (parent, output) = match kind {
                ImageKind::Full => {
                    let out = dir.join(format!("{name}.lbi"));
                    if out.exists() {
                        return Err(app::Failure {
                            what: what.into(),
                            causes: vec![format!("{} already exists", out.display())],
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
                level: *level,
                parent,
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
        } => {
            let spec = restore::RestoreSpec {
                image: image.clone(),
                target: target.clone(),
                verify: true,
                threads: DEFAULT_THREADS,
                search: Vec::new(),
                grow_last: *grow_last,
                new_disk_id: *new_disk_id,
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
        } => {
            let spec = clone::CloneSpec {
                source: source.clone(),
                target: target.clone(),
                verify: true,
                threads: DEFAULT_THREADS,
                grow_last: *grow_last,
                new_disk_id: *new_disk_id,
                file_sector_size: DEFAULT_FILE_SECTOR_SIZE,
            };
            clone::plan(&spec, &paths)
                .map(|p| Planned::Clone(Box::new(p)))
                .map_err(|e| outcome::failure("planning the clone", &e, false))
        }
    }
}

/// A job the loop runs.
enum Job {
    Planned(Planned),
    Verify(PathBuf),
}

/// Runs `job`, forwarding its events as [`Msg::Job`] while it runs; the end is
/// [`Msg::JobDone`], sent after the last event.
fn run_job(job: Job, tx: &Sender<Msg>, cancel: &CancelToken) {
    let (reporter, rx) = Reporter::channel();
    let r = std::thread::scope(|s| {
        let fwd = tx.clone();
        s.spawn(move || {
            for e in rx {
                if fwd.send(Msg::Job(e)).is_err() {
                    return;
                }
            }
        });
        let r = match job {
            Job::Planned(Planned::Image(p)) => image::run(&p, &reporter, cancel)
                .map(|s| (outcome::image_lines(&s), s.seconds))
                .map_err(|e| outcome::failure("imaging", &e, false)),
            Job::Planned(Planned::Restore(p)) => restore::run(&p, &reporter, cancel)
                .map(|s| (outcome::restore_lines(&s), s.seconds))
                .map_err(|e| outcome::failure("restoring", &e, true)),
            Job::Planned(Planned::Clone(p)) => clone::run(&p, &reporter, cancel)
                .map(|s| (outcome::clone_lines(&s), s.seconds))
                .map_err(|e| outcome::failure("cloning", &e, true)),
            Job::Verify(path) => {
                let t = Instant::now();
                verify::run(&path, &[], 0, &reporter, cancel)
                    .map(|s| (outcome::verify_lines(&s), t.elapsed().as_secs_f64()))
                    .map_err(|e| outcome::failure("verifying", &e, false))
            }
        };
        drop(reporter); // ends the forwarder after the last event
        r
    });
    let _ = tx.send(Msg::JobDone(r));
}

/// Runs the TUI until the user leaves.
pub fn run(opts: &Options) -> std::io::Result<Exit> {
    let mut term = terminal::Terminal::enter()?;
    let (tx, rx) = bounded::<Msg>(64);
    let stop = AtomicBool::new(false);
    let paused = AtomicBool::new(false);
    let parked = AtomicBool::new(false);
    let readers = AtomicUsize::new(0); // scan, mount and plan threads still running
    let mut model = Model {
        scanning: true,
        rescue: opts.rescue,
        now: Some(Instant::now()),
        now_unix: unix_now(),
        ..Model::default()
    };
    let mounted_store = || -> Option<Storage> {
        // a store mounted before the menu started (lifeboat.store= at boot, or the line
        // console's store command) is the storage from the start
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let m = crate::discovery::mountinfo::parse_mountinfo(&text)
            .into_iter()
            .rfind(|m| m.mount_point == opts.mount_at)?;
        Some(Storage {
            dir: opts.mount_at.clone(),
            device: m
                .source
                .starts_with("/dev/")
                .then(|| PathBuf::from(&m.source)),
            disk: None, // found from the device once the disks are scanned
            fs: Some(m.fs_type),
            label: None,
        })
    };
    if let Some(st) = opts.images.is_none().then(mounted_store).flatten() {
        match list_images(&st.dir) {
            Ok(v) => model.images = v,
            Err(e) => model.images_error = Some(e),
        }
        model.storage = Some(st);
    }
    if let Some(dir) = &opts.images {
        model.storage = Some(Storage {
            dir: dir.clone(),
            device: None,
            disk: None,
            fs: None,
            label: None,
        });
        match list_images(dir) {
            Ok(v) => model.images = v,
            Err(e) => model.images_error = Some(e),
        }
    }
    let mut cancel: Option<CancelToken> = None;
    let mut mounted = false; // the storage at opts.mount_at was mounted by us
    let mut mounted_by_us = false; // the pending mount request mounts at opts.mount_at
    let mut latest = 0u64; // the request whose answer the menu waits for
                           // the terminal or keyboard failed while a job ran: the job is not cancelled for that;
                           // the menu leaves once it ends
    let mut broken: Option<String> = None;
    let exit = std::thread::scope(|s| -> std::io::Result<Exit> {
        let (stop_ref, paused_ref, parked_ref) = (&stop, &paused, &parked);
        let input_tx = tx.clone();
        s.spawn(move || input(input_tx, stop_ref, paused_ref, parked_ref));
        let tick_tx = tx.clone();
        s.spawn(move || {
            while !stop_ref.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                let _ = tick_tx.try_send(Msg::Tick(Instant::now(), unix_now()));
            }
        });
        let readers_ref = &readers;
        let rescan = |tx: Sender<Msg>, dir: Option<PathBuf>| {
            readers_ref.fetch_add(1, Ordering::SeqCst);
            s.spawn(move || {
                let _done = Done(readers_ref);
                // the images first: "scanning" ends with the disks, and then both are fresh
                if let Some(d) = dir {
                    let _ = tx.send(Msg::Images(list_images(&d)));
                }
                let _ = tx.send(Msg::Devices(scan()));
            });
        };
        rescan(tx.clone(), None);
        let mut draw = true;
        let r = loop {
            if draw && broken.is_none() {
                if let Err(e) = term.draw(|f| view::view(&model, f)) {
                    if cancel.is_none() {
                        break Err(e);
                    }
                    broken = Some(format!("drawing the screen: {e}"));
                }
            }
            let Ok(msg) = rx.recv() else {
                break Ok(Exit::Quit);
            };
            if matches!(msg, Msg::Redraw) {
                let _ = term.clear(); // the next frame repaints everything
            }
            let msg = match msg {
                // an answer nobody waits for any more (Esc while waiting) is dropped
                Msg::Reply(id, m) => {
                    if id == latest && matches!(*m, Msg::StorageReady(Ok(_))) {
                        mounted = mounted_by_us; // even when nobody waits for it any more
                    }
                    if id != latest || model.busy.is_none() {
                        continue;
                    }
                    *m
                }
                m => m,
            };
            // the clock only shows on the progress screen: other ticks draw nothing (a
            // serial console is slow)
            draw = !matches!(msg, Msg::Tick(..)) || matches!(model.screen, app::Screen::Running(_));
            if let Msg::InputFailed(e) = msg {
                // a menu without a keyboard is useless: leave, so that PID 1 starts the line
                // console in its place; a running job runs to its end first
                if cancel.is_none() {
                    break Err(std::io::Error::other(e));
                }
                broken = Some(e);
                continue;
            }
            let job_ended = matches!(msg, Msg::JobDone(_));
            if matches!(msg, Msg::JobDone(_)) {
                cancel = None;
                // a new image (or a deleted partial one) shows in the lists at once
                if let Some(dir) = model.storage.as_ref().map(|s| s.dir.clone()) {
                    let tx = tx.clone();
                    s.spawn(move || {
                        let _ = tx.send(Msg::Images(list_images(&dir)));
                    });
                }
            }
            let cmd = app::update(&mut model, msg);
            if let (true, Some(e)) = (job_ended, &broken) {
                let outcome = match &model.screen {
                    app::Screen::Done(d) => match &d.failure {
                        None => d.lines.join(" "),
                        Some(f) => format!("{} failed: {}", d.title, f.causes.join(": ")),
                    },
                    _ => String::new(),
                };
                break Err(std::io::Error::other(format!(
                    "{e}; the job ran to its end meanwhile: {outcome}"
                )));
            }
            let Some(cmd) = cmd else {
                continue;
            };
            match cmd {
                Cmd::Quit => break Ok(Exit::Quit),
                Cmd::PowerOff => break Ok(Exit::PowerOff),
                Cmd::Reboot => break Ok(Exit::Reboot),
                Cmd::Rescan => rescan(tx.clone(), model.storage.as_ref().map(|s| s.dir.clone())),
                Cmd::MountStorage(c) => {
                    latest += 1;
                    let id = latest;
                    mounted_by_us = c.mountpoint.is_none();
                    if mounted_by_us {
                        mounted = false; // whatever was there is unmounted first
                    }
                    let (tx, at) = (tx.clone(), opts.mount_at.clone());
                    readers.fetch_add(1, Ordering::SeqCst);
                    let readers = &readers;
                    s.spawn(move || {
                        let _done = Done(readers);
                        let r = mount_storage(&c, &at);
                        let _ = tx.send(Msg::Reply(id, Box::new(Msg::StorageReady(r))));
                    });
                }
                Cmd::Plan(req) => {
                    latest += 1;
                    let id = latest;
                    let tx = tx.clone();
                    readers.fetch_add(1, Ordering::SeqCst);
                    let readers = &readers;
                    s.spawn(move || {
                        let _done = Done(readers);
                        let _ = tx.send(Msg::Reply(id, Box::new(Msg::Planned(plan(&req)))));
                    });
                }
                Cmd::Start(p) => {
                    let (tx, c) = (tx.clone(), CancelToken::new());
                    cancel = Some(c.clone());
                    s.spawn(move || run_job(Job::Planned(p), &tx, &c));
                }
                Cmd::Verify(path) => {
                    let (tx, c) = (tx.clone(), CancelToken::new());
                    cancel = Some(c.clone());
                    s.spawn(move || run_job(Job::Verify(path), &tx, &c));
                }
                Cmd::Cancel => {
                    if let Some(c) = &cancel {
                        c.cancel();
                    }
                }
                Cmd::Shell => {
                    // the input thread stops reading before the shell gets the terminal
                    paused.store(true, Ordering::SeqCst);
                    let t = Instant::now();
                    while !parked.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(1) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let r = term.suspend(shell);
                    paused.store(false, Ordering::SeqCst);
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
        };
        if let Some(c) = &cancel {
            c.cancel(); // never leaves a job behind; the scope joins it
        }
        stop.store(true, Ordering::SeqCst);
        // drain so that no sender blocks while the threads finish
        while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}
        // a scan or plan stuck on a disk that does not answer is still joined: the terminal
        // is given back first, and the wait is explained
        term.leave();
        if readers.load(Ordering::SeqCst) > 0 {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "lifeboat: waiting for a disk that does not answer (a scan, mount or plan is still reading it)..."
            );
        }
        r
    });
    // On a host, leaving the menu unmounts the storage it mounted; the rescue system keeps
    // it for the line console, and unmounts it at power off.
    if mounted && !opts.rescue && matches!(exit, Ok(Exit::Quit)) {
        drop(term);
        if let Err(e) = crate::store::unmount(&opts.mount_at) {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "lifeboat: {}",
                crate::error::with_causes(&e)
            );
        }
    }
    exit
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

/// Feeds key presses until `stop`; polls so that it can be joined, and reads nothing while
/// `paused` (a shell has the terminal).
fn input(tx: Sender<Msg>, stop: &AtomicBool, paused: &AtomicBool, parked: &AtomicBool) {
    use crossterm::event::{poll, read, Event};
    while !stop.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) {
            parked.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        parked.store(false, Ordering::SeqCst);
        let event = match poll(Duration::from_millis(100)) {
            Ok(true) => read(),
            Ok(false) => continue,
            Err(e) => Err(e),
        };
        let msg = match event {
            // Ctrl-L repaints the whole screen, as in most terminal programs
            Ok(Event::Key(k))
                if k.code == crossterm::event::KeyCode::Char('l')
                    && k.modifiers
                        .contains(crossterm::event::KeyModifiers::CONTROL) =>
            {
                Msg::Redraw
            }
            Ok(Event::Key(k)) => Msg::Key(k),
            Ok(_) => Msg::Redraw, // a resize
            Err(e) => Msg::InputFailed(format!("reading the keyboard: {e}")),
        };
        let failed = matches!(msg, Msg::InputFailed(_));
        if tx.send(msg).is_err() || failed {
            return;
        }
    }
}

/// Fixtures for the TUI's tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::discovery::Transport;
    use crate::inspect::{DiskReport, PartReport, Source};
    use crate::partition::TableKind;
    use std::path::PathBuf;

    fn part(n: u32, size: u64, fs: &'static str, label: &str, mount: Option<&str>) -> PartReport {
        PartReport {
            number: n,
            path: Some(PathBuf::from(format!("/dev/sda{n}"))),
            start_bytes: u64::from(n) << 30,
            size_bytes: size,
            part_type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
            type_name: Some("Linux filesystem"),
            name: None,
            partuuid: None,
            fs: Some(fs),
            fs_version: None,
            label: Some(label.into()),
            uuid: None,
            mountpoint: mount.map(PathBuf::from),
            mountpoints: mount.map(PathBuf::from).into_iter().collect(),
            swap: false,
            holders: vec![],
            used_bytes: Some(size / 3),
            logical: false,
            extended: false,
        }
    }

    fn disk(path: &str, size: u64, t: Transport, model: &str, boot: bool) -> DiskReport {
        DiskReport {
            path: PathBuf::from(path),
            source: Source::Disk,
            size_bytes: size,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            model: Some(model.into()),
            serial: Some("S3Z9NB0K123456".into()),
            vendor: None,
            transport: Some(t),
            removable: Some(false),
            rotational: Some(false),
            read_only: Some(false),
            is_boot: boot,
            busy: None,
            backing_file: None,
            table: Some(TableKind::Gpt),
            disk_id: None,
            partitions: vec![],
            fs: None,
            diagnostics: vec![],
            error: None,
        }
    }

    /// Three disks: a system SSD, a USB stick that is the boot medium, an empty NVMe disk.
    pub(crate) fn disks() -> Vec<DiskReport> {
        let mut sda = disk(
            "/dev/sda",
            500_107_862_016,
            Transport::Sata,
            "Samsung SSD 860 EVO 500GB",
            false,
        );
        sda.partitions = vec![
            part(1, 536_870_912, "vfat", "ESP", None),
            part(2, 400_000_000_000, "ext4", "root", None),
            part(3, 99_000_000_000, "ntfs", "Data", None),
        ];
        let mut sdb = disk(
            "/dev/sdb",
            15_518_924_800,
            Transport::Usb,
            "SanDisk Cruzer",
            true,
        );
        sdb.partitions = vec![part(
            1,
            30_000_000,
            "iso9660",
            "LIFEBOAT",
            Some("/run/boot"),
        )];
        sdb.removable = Some(true);
        let mut nvme = disk(
            "/dev/nvme0n1",
            1_000_204_886_016,
            Transport::Nvme,
            "WD Blue SN570 1TB",
            false,
        );
        nvme.table = None;
        vec![sda, sdb, nvme]
    }

    /// [`disks`] plus a USB drive holding the image storage (exFAT at /store) with three
    /// images: a chain of the SSD (full and incremental) and an older full image of another
    /// disk; the clock fixed at 2026-11-22 09:30 UTC.
    pub(crate) fn storage_model() -> super::app::Model {
        use super::app::{ImageEntry, Model, Storage};
        use crate::jobs::chain::{DiskIdentity, Found};
        let mut all = disks();
        let mut sdc = disk(
            "/dev/sdc",
            2_000_398_934_016,
            Transport::Usb,
            "WD Elements 25A2",
            false,
        );
        sdc.removable = Some(true);
        sdc.partitions = vec![part(
            1,
            2_000_397_885_440,
            "exfat",
            "BACKUP",
            Some("/store"),
        )];
        sdc.partitions[0].path = Some(PathBuf::from("/dev/sdc1"));
        all.push(sdc);
        let ssd = DiskIdentity::of_report(&all[0]);
        let other = DiskIdentity {
            path: Some("/dev/sda".into()),
            model: Some("ST1000DM003".into()),
            serial: Some("Z1D5K8XQ".into()),
            disk_id: None,
            size_bytes: 1_000_204_886_016,
            backing_file: None,
        };
        let found = |name: &str, kind: &str, unix: u64, disk: &DiskIdentity, chain: &str| Found {
            path: PathBuf::from(format!("/store/{name}")),
            image_id: "00".into(),
            kind: kind.into(),
            created_unix: unix,
            full: kind == "full",
            parent_id: (kind != "full").then(|| "00".into()),
            disk: disk.clone(),
            chain_name: chain.into(),
        };
        let chain = "sda-Samsung-SSD-860-20261115";
        let images = vec![
            ImageEntry {
                found: found(&format!("{chain}.lbi"), "full", 1_794_736_800, &ssd, chain),
                file_bytes: 31_457_280_000,
            },
            ImageEntry {
                found: found(
                    &format!("{chain}-20261121-181500-incr.lbi"),
                    "incremental",
                    1_795_284_900,
                    &ssd,
                    chain,
                ),
                file_bytes: 1_288_490_188,
            },
            ImageEntry {
                found: found("old-hdd.lbi", "full", 1_761_535_980, &other, "old-hdd"),
                file_bytes: 120_259_084_288,
            },
        ];
        let now = std::time::Instant::now();
        Model {
            disks: all,
            storage: Some(Storage {
                dir: PathBuf::from("/store"),
                device: Some(PathBuf::from("/dev/sdc1")),
                disk: Some(PathBuf::from("/dev/sdc")),
                fs: Some("exfat".into()),
                label: Some("BACKUP".into()),
            }),
            images,
            now: Some(now),
            now_unix: 1_795_339_800,
            ..Model::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::app::*;
    use super::testing::{disks, storage_model};
    use crate::jobs::{Event, Phase};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use std::path::PathBuf;
    use std::time::Duration;

    fn render(model: &Model, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| super::view::view(model, f)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn home() -> Model {
        let mut m = Model::default();
        update(&mut m, Msg::Devices(Ok(disks())));
        m
    }

    /// One snapshot test per size for each screen.
    macro_rules! screens {
        ($($name:ident => $model:expr;)*) => {
            mod at_80x25 {
                use super::*;
                $( #[test] fn $name() { insta::assert_snapshot!(render(&$model, 80, 25)); } )*
            }
            mod at_160x50 {
                use super::*;
                $( #[test] fn $name() { insta::assert_snapshot!(render(&$model, 160, 50)); } )*
            }
        };
    }

    fn with(mut m: Model, f: impl FnOnce(&mut Model)) -> Model {
        f(&mut m);
        m
    }

    fn running() -> Model {
        with(storage_model(), |m| {
            let t0 = m.now.unwrap();
            m.screen = Screen::Running(Running {
                kind: JobKind::Restore,
                title: "Restoring sda-Samsung-SSD-860-20261115.lbi onto /dev/nvme0n1".into(),
                target: Some(PathBuf::from("/dev/nvme0n1")),
                phase: None,
                total: None,
                done: 0,
                started: t0,
                phase_started: t0,
                warnings: vec![],
                cancelling: false,
            });
            m.now = Some(t0 + Duration::from_secs(2));
            update(
                m,
                Msg::Job(Event::Phase {
                    phase: Phase::Write,
                    total_bytes: Some(61_235_789_824),
                }),
            );
            m.now = Some(t0 + Duration::from_secs(202));
            update(
                m,
                Msg::Job(Event::Progress {
                    phase: Phase::Write,
                    done_bytes: 25_000_000_000,
                }),
            );
        })
    }

    /// The result screen, reached the way the loop reaches it: a running restore that
    /// ends (after 12:34) with `failure`, or with its summary.
    fn done(failure: Option<Failure>) -> Model {
        with(running(), |m| {
            m.now = m.now.map(|n| n + Duration::from_secs(552));
            let r = match failure {
                None => Ok((
                    vec![
                        "/dev/nvme0n1 was restored: 57.0 GiB written.".into(),
                        "Verified: all 57.0 GiB written were read back from the disk (O_DIRECT) and match the image.".into(),
                        "Partitions made visible by BLKRRPART.".into(),
                        "Partition 3 grew to 558.0 GiB (ntfs, ntfsresize: 92.2 GiB to 558.0 GiB).".into(),
                    ],
                    754.0,
                )),
                Some(f) => Err(f),
            };
            update(m, Msg::JobDone(r));
        })
    }

    fn write_failure() -> Failure {
        crate::tui::outcome::failure(
            "restoring",
            &crate::Error::Write {
                path: PathBuf::from("/dev/nvme0n1"),
                offset: 40_265_318_400,
                len: 8 << 20,
                source: std::io::Error::from_raw_os_error(libc::EIO),
            },
            true,
        )
    }

    fn too_small() -> Failure {
        crate::tui::outcome::failure(
            "planning the restore",
            &crate::Error::TooSmall {
                path: PathBuf::from("/dev/sdd"),
                need: 499_000_000_000,
                have: 256_060_514_304,
                why: "partition 3 ends at byte 499000000000 (464.7 GiB), past the target's last usable byte 256060497408".into(),
            },
            false,
        )
    }

    fn restore(step: RestoreStep) -> Model {
        with(storage_model(), |m| {
            let mut w = RestoreWiz {
                step,
                ..RestoreWiz::default()
            };
            if step != RestoreStep::Image {
                w.image = Some(m.images[0].found.path.clone());
                w.over.grow_last = true;
            }
            if step == RestoreStep::Confirm {
                w.over.target = Some(PathBuf::from("/dev/nvme0n1"));
                w.plan = Some(Box::new(crate::jobs::restore::example_plan()));
                w.over.typed = "nvme".into();
            }
            m.screen = Screen::Restore(w);
        })
    }

    fn clone(step: CloneStep) -> Model {
        with(storage_model(), |m| {
            let mut w = CloneWiz {
                step,
                ..CloneWiz::default()
            };
            if step != CloneStep::Source {
                w.source = Some(PathBuf::from("/dev/sda"));
            }
            if step == CloneStep::Confirm {
                w.over.target = Some(PathBuf::from("/dev/nvme0n1"));
                w.plan = Some(Box::new(crate::jobs::clone::example_plan()));
                w.over.typed = "sda".into();
                w.over.mistyped = true;
            }
            m.screen = Screen::Clone(w);
        })
    }

    fn image(step: ImageStep) -> Model {
        with(storage_model(), |m| {
            let mut w = ImageWiz {
                step,
                level: 3,
                ..ImageWiz::default()
            };
            if step != ImageStep::Source {
                w.source = Some(PathBuf::from("/dev/sda"));
                w.name = suggested_name(&m.disks[0], m.now_unix);
                w.kind = ImageKind::Incremental;
            }
            if step == ImageStep::Confirm {
                w.plan = Some(Box::new(crate::jobs::image::example_plan()));
            }
            m.screen = Screen::Image(w);
        })
    }

    screens! {
        home_screen => home();
        help => with(home(), |m| m.help = true);
        scan_error_and_no_disks => with(Model::default(), |m| {
            update(m, Msg::Devices(Err("reading /sys/block: permission denied".into())));
        });
        details => with(home(), |m| m.screen = Screen::Details);
        storage_choose => with(home(), |m| {
            m.screen = Screen::Storage { cursor: 0, then: Some(Action::Restore) };
            m.disks = storage_model().disks;
        });
        storage_mounting => with(home(), |m| {
            m.disks = storage_model().disks;
            m.screen = Screen::Storage { cursor: 0, then: None };
            m.busy = Some("Mounting /dev/sdc1...".into());
        });
        storage_mount_failed => with(home(), |m| {
            m.disks = storage_model().disks;
            m.screen = Screen::Storage { cursor: 0, then: None };
            m.failure = Some(crate::tui::outcome::failure_any(
                "mounting the storage",
                &anyhow::anyhow!("EIO").context("mounting /dev/sdc1 (ntfs) at /store"),
                "Choose another filesystem, or check this one from the shell (fsck).",
            ));
        });
        image_source => image(ImageStep::Source);
        image_options => image(ImageStep::Options);
        image_confirm => image(ImageStep::Confirm);
        restore_image => restore(RestoreStep::Image);
        restore_no_images => with(restore(RestoreStep::Image), |m| m.images.clear());
        restore_target => restore(RestoreStep::Target);
        restore_does_not_fit => with(restore(RestoreStep::Target), |m| {
            update(m, Msg::Planned(Err(too_small())));
        });
        restore_confirm => restore(RestoreStep::Confirm);
        restore_plan_refused => with(restore(RestoreStep::Target), |m| {
            update(m, Msg::Planned(Err(crate::tui::outcome::failure(
                "planning the restore",
                &crate::Error::Busy { path: PathBuf::from("/dev/nvme0n1"), reason: "partition 2 is mounted at /mnt".into() },
                false,
            ))));
        });
        clone_source => clone(CloneStep::Source);
        clone_target => clone(CloneStep::Target);
        clone_confirm_mistyped => clone(CloneStep::Confirm);
        verify_list => with(storage_model(), |m| m.screen = Screen::Verify { cursor: 1 });
        progress => running();
        progress_cancel_asked => with(running(), |m| m.ask = Some(Ask::Cancel));
        progress_cancelling => with(running(), |m| {
            if let Screen::Running(r) = &mut m.screen { r.cancelling = true; }
            update(m, Msg::Job(Event::Warning { message: "partition 4: unknown filesystem, copied whole".into() }));
        });
        done_ok => done(None);
        done_failed => done(Some(write_failure()));
        done_cancelled => done(Some(crate::tui::outcome::failure("restoring", &crate::Error::Cancelled, true)));
        power_off_asked => with(home(), |m| { m.rescue = true; m.ask = Some(Ask::PowerOff); });
    }
}

#[cfg(test)]
mod update_tests;
