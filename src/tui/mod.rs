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
use crate::jobs::chain::{self as chains, ChildKind, DiskIdentity};
use crate::jobs::{clone, image, restore, verify, CancelToken, Reporter};
use app::{Cmd, ImageEntry, ImageKind, JobRequest, Model, Msg, Planned, Storage, StoreChoice};
use crossbeam_channel::{bounded, Sender};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
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
            // a storage mounted here before is replaced
            let _ = crate::init::store::unmount(at);
            let t = crate::init::store::StoreTarget {
                device: c.device.clone(),
                disk: c.disk.clone(),
                fs: c.fs,
                label: c.label.clone(),
            };
            crate::init::store::mount(&t, at).map_err(|e| {
                outcome::failure_any(
                    "mounting the storage",
                    &e,
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
                    let report =
                        crate::inspect::inspect_path(&paths, source, 512).map_err(|e| fail(&e))?;
                    let me = DiskIdentity::of_report(&report);
                    let parent = chains::pick_parent(dir, &me, child).map_err(|e| fail(&e))?;
                    let out = chains::child_name(dir, &parent.chain_name, child, unix_now());
                    let spec = image::ParentSpec {
                        path: parent.path,
                        kind: child,
                        search: Vec::new(),
                        force_other_disk: false,
                    };
                    (Some(spec), out)
                }
            };
            let spec = image::ImageSpec {
                source: source.clone(),
                output,
                partitions: None,
                level: *level,
                threads: 0,
                chunk_size: image::DEFAULT_CHUNK,
                block_size: 64 << 10,
                file_sector_size: 512,
                parent,
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
                threads: 0,
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
                threads: 0,
                grow_last: *grow_last,
                new_disk_id: *new_disk_id,
                file_sector_size: 512,
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
    let mut model = Model {
        scanning: true,
        rescue: opts.rescue,
        now: Some(Instant::now()),
        now_unix: unix_now(),
        ..Model::default()
    };
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
    std::thread::scope(|s| -> std::io::Result<Exit> {
        let (stop_ref, paused_ref) = (&stop, &paused);
        let input_tx = tx.clone();
        s.spawn(move || input(input_tx, stop_ref, paused_ref));
        let tick_tx = tx.clone();
        s.spawn(move || {
            while !stop_ref.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                let _ = tick_tx.try_send(Msg::Tick(Instant::now(), unix_now()));
            }
        });
        let rescan = |tx: Sender<Msg>, dir: Option<PathBuf>| {
            s.spawn(move || {
                let _ = tx.send(Msg::Devices(scan()));
                if let Some(d) = dir {
                    let _ = tx.send(Msg::Images(list_images(&d)));
                }
            });
        };
        rescan(tx.clone(), None);
        let r = loop {
            if let Err(e) = term.draw(|f| view::view(&model, f)) {
                break Err(e);
            }
            let Ok(msg) = rx.recv() else {
                break Ok(Exit::Quit);
            };
            if matches!(msg, Msg::JobDone(_)) {
                cancel = None;
            }
            let Some(cmd) = app::update(&mut model, msg) else {
                continue;
            };
            match cmd {
                Cmd::Quit => break Ok(Exit::Quit),
                Cmd::PowerOff => break Ok(Exit::PowerOff),
                Cmd::Reboot => break Ok(Exit::Reboot),
                Cmd::Rescan => rescan(tx.clone(), model.storage.as_ref().map(|s| s.dir.clone())),
                Cmd::MountStorage(c) => {
                    let (tx, at) = (tx.clone(), opts.mount_at.clone());
                    s.spawn(move || {
                        let _ = tx.send(Msg::StorageReady(mount_storage(&c, &at)));
                    });
                }
                Cmd::Plan(req) => {
                    let tx = tx.clone();
                    s.spawn(move || {
                        let _ = tx.send(Msg::Planned(plan(&req)));
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
                    paused.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(150)); // the input thread parks
                    let r = term.suspend(shell);
                    paused.store(false, Ordering::SeqCst);
                    if let Err(e) = r {
                        model.failure = Some(app::Failure {
                            what: "starting a shell".into(),
                            causes: vec![e.to_string()],
                            advice: "The rescue system carries /bin/sh; check the boot medium."
                                .into(),
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
        r
    })
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
fn input(tx: Sender<Msg>, stop: &AtomicBool, paused: &AtomicBool) {
    use crossterm::event::{poll, read, Event};
    while !stop.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match poll(Duration::from_millis(100)) {
            Ok(true) => {
                if let Ok(Event::Key(k)) = read() {
                    if tx.send(Msg::Key(k)).is_err() {
                        return;
                    }
                } else {
                    // a resize: redraw now
                    let _ = tx.try_send(Msg::Tick(Instant::now(), unix_now()));
                }
            }
            Ok(false) => {}
            Err(_) => return,
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
}

#[cfg(test)]
mod tests {
    use super::app::{update, Model, Msg};
    use super::testing::disks;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

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

    #[test]
    fn home_80x25() {
        insta::assert_snapshot!(render(&home(), 80, 25));
    }

    #[test]
    fn home_160x50() {
        insta::assert_snapshot!(render(&home(), 160, 50));
    }

    #[test]
    fn help_80x25() {
        let mut m = home();
        m.help = true;
        insta::assert_snapshot!(render(&m, 80, 25));
    }

    #[test]
    fn scan_error_and_no_disks_80x25() {
        let mut m = Model::default();
        update(
            &mut m,
            Msg::Devices(Err("reading /sys/block: permission denied".into())),
        );
        insta::assert_snapshot!(render(&m, 80, 25));
    }
}

#[cfg(test)]
mod update_tests;
