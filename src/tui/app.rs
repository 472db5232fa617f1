//! The TUI's state and its pure transition function (Elm style, STYLE §6): [`Model`] holds
//! everything the screen shows, [`update`] turns one [`Msg`] into a new model and at most one
//! [`Cmd`] for the loop to carry out, and never does I/O itself.
//!
//! Screens: Home (disks), disk details, Storage (where images live), the image, restore,
//! clone and verify wizards, the progress screen of a running job, and its result. Errors
//! are an overlay on the screen where they happened, with the cause chain and what to do.
//!
//! The wizards only ask; every check that can refuse (busy, mounted, too small, the storage
//! disk, the source itself) is the job's own `plan()`, run by the loop before the confirm
//! step, so the TUI refuses exactly what the CLI refuses.

use crate::inspect::DiskReport;
use crate::jobs::chain::Found;
use crate::jobs::clone::ClonePlan;
use crate::jobs::image::ImagePlan;
use crate::jobs::restore::RestorePlan;
use crate::jobs::{Event, Phase};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Filesystems an image store may have (blkid names).
pub const STORE_FILESYSTEMS: [&str; 6] = crate::store::local::STORE_FILESYSTEMS;

/// Everything the screen shows.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The disks, as the last scan found them.
    pub disks: Vec<DiskReport>,
    /// Index into `disks` of the highlighted disk on Home.
    pub selected: usize,
    /// The help overlay is open.
    pub help: bool,
    /// The last scan failed: the whole cause chain, in words.
    pub scan_error: Option<String>,
    /// A scan is running.
    pub scanning: bool,
    /// The screen shown.
    pub screen: Screen,
    /// Where images are read and written, once chosen.
    pub storage: Option<Storage>,
    /// Images found in the storage folder.
    pub images: Vec<ImageEntry>,
    /// Listing the storage folder failed.
    pub images_error: Option<String>,
    /// An error overlay: what failed, why, and what to do.
    pub failure: Option<Failure>,
    /// A yes/no question overlay.
    pub ask: Option<Ask>,
    /// Work in the background that the user waits for ("reading the image...").
    pub busy: Option<String>,
    /// Running as the rescue system's UI (started by PID 1): power off and reboot are offered,
    /// and leaving goes to the line console.
    pub rescue: bool,
    /// The time of the last tick.
    pub now: Option<Instant>,
    /// Seconds since 1970 at the last tick (for suggested file names).
    pub now_unix: u64,
}

/// The image store in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// The folder images are written to and read from.
    pub dir: PathBuf,
    /// The filesystem's device node, when it is one of the listed partitions.
    pub device: Option<PathBuf>,
    /// The disk that holds it (excluded as a source or a target).
    pub disk: Option<PathBuf>,
    /// Filesystem type.
    pub fs: Option<String>,
    /// Filesystem label.
    pub label: Option<String>,
}

/// One image file found in the storage.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// What the image records.
    pub found: Found,
    /// The file's size.
    pub file_bytes: u64,
}

/// A filesystem that can hold images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChoice {
    /// Device node.
    pub device: PathBuf,
    /// Its disk.
    pub disk: PathBuf,
    /// blkid-style type.
    pub fs: &'static str,
    /// Label.
    pub label: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Used bytes, when known.
    pub used_bytes: Option<u64>,
    /// Where it is mounted already.
    pub mountpoint: Option<PathBuf>,
    /// On a USB or removable disk.
    pub removable: bool,
    /// Bus of its disk.
    pub transport: Option<String>,
}

/// The screens.
#[derive(Debug, Clone, Default)]
pub enum Screen {
    /// The disks.
    #[default]
    Home,
    /// Everything known about the highlighted disk.
    Details,
    /// Choosing where images live; `then` is the wizard to open once it is mounted.
    Storage {
        /// Highlighted row.
        cursor: usize,
        /// What to open afterwards.
        then: Option<Action>,
    },
    /// Making an image.
    Image(ImageWiz),
    /// Restoring an image.
    Restore(RestoreWiz),
    /// Cloning a disk.
    Clone(CloneWiz),
    /// Choosing an image to verify.
    Verify {
        /// Highlighted image.
        cursor: usize,
    },
    /// A job runs.
    Running(Running),
    /// A job ended.
    Done(Done),
}

/// What a Home key starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The image wizard.
    Image,
    /// The restore wizard.
    Restore,
    /// The verify list.
    Verify,
}

/// Full, incremental or differential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageKind {
    /// Everything.
    #[default]
    Full,
    /// What changed since the newest image of the disk.
    Incremental,
    /// What changed since the newest full image of the disk.
    Differential,
}

impl ImageKind {
    /// One word.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Full => "full",
            ImageKind::Incremental => "incremental",
            ImageKind::Differential => "differential",
        }
    }
}

/// The image wizard.
#[derive(Debug, Clone, Default)]
pub struct ImageWiz {
    /// The step.
    pub step: ImageStep,
    /// Highlighted row (sources, or option fields).
    pub cursor: usize,
    /// The chosen source disk.
    pub source: Option<PathBuf>,
    /// Full, incremental or differential.
    pub kind: ImageKind,
    /// zstd level.
    pub level: i32,
    /// File name (without `.lbi`) for a full image.
    pub name: String,
    /// The plan, on the confirm step.
    pub plan: Option<Box<ImagePlan>>,
}

/// Steps of the image wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageStep {
    /// Which disk.
    #[default]
    Source,
    /// Kind, name, level.
    Options,
    /// The plan, and Enter to start.
    Confirm,
}

/// The restore wizard.
#[derive(Debug, Clone, Default)]
pub struct RestoreWiz {
    /// The step.
    pub step: RestoreStep,
    /// Highlighted row.
    pub cursor: usize,
    /// The chosen image.
    pub image: Option<PathBuf>,
    /// The target and its confirmation.
    pub over: Overwrite,
    /// The plan, on the confirm step.
    pub plan: Option<Box<RestorePlan>>,
}

/// What restore and clone share: the disk to overwrite, its options, and the typed
/// confirmation.
#[derive(Debug, Clone, Default)]
pub struct Overwrite {
    /// The chosen target disk.
    pub target: Option<PathBuf>,
    /// Grow the last partition to the end of a larger target.
    pub grow_last: bool,
    /// Give the target a new disk ID.
    pub new_disk_id: bool,
    /// Why the last target tried does not fit.
    pub does_not_fit: Option<String>,
    /// What the user typed on the confirm step.
    pub typed: String,
    /// The typed name was wrong.
    pub mistyped: bool,
}

/// Steps of the restore wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreStep {
    /// Which image.
    #[default]
    Image,
    /// Which disk, and options.
    Target,
    /// The plan, and the typed confirmation.
    Confirm,
}

/// The clone wizard.
#[derive(Debug, Clone, Default)]
pub struct CloneWiz {
    /// The step.
    pub step: CloneStep,
    /// Highlighted row.
    pub cursor: usize,
    /// The disk copied.
    pub source: Option<PathBuf>,
    /// The target and its confirmation.
    pub over: Overwrite,
    /// The plan, on the confirm step.
    pub plan: Option<Box<ClonePlan>>,
}

/// Steps of the clone wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloneStep {
    /// Which disk to copy.
    #[default]
    Source,
    /// Which disk to overwrite, and options.
    Target,
    /// The plan, and the typed confirmation.
    Confirm,
}

/// A job in progress.
#[derive(Debug, Clone)]
pub struct Running {
    /// What runs.
    pub kind: JobKind,
    /// "Restoring pc.lbi onto /dev/sda".
    pub title: String,
    /// The disk being written, if any (named when cancelling).
    pub target: Option<PathBuf>,
    /// The phase.
    pub phase: Option<Phase>,
    /// Bytes the phase will process.
    pub total: Option<u64>,
    /// Bytes done in the phase.
    pub done: u64,
    /// When the job started.
    pub started: Instant,
    /// When the phase started.
    pub phase_started: Instant,
    /// Warnings so far.
    pub warnings: Vec<String>,
    /// Cancel was asked for and is being carried out.
    pub cancelling: bool,
}

/// The kinds of job the menu runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Writes an image file.
    Image,
    /// Overwrites a disk from an image.
    Restore,
    /// Overwrites a disk from another disk.
    Clone,
    /// Only reads an image.
    Verify,
}

/// A job that ended.
#[derive(Debug, Clone)]
pub struct Done {
    /// What ran.
    pub title: String,
    /// What it reported, one fact per line; empty on failure.
    pub lines: Vec<String>,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// Warnings it gave.
    pub warnings: Vec<String>,
    /// Seconds it took.
    pub seconds: f64,
}

/// An error, for people: what failed, the causes outermost first, and what to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// What was being done ("planning the restore").
    pub what: String,
    /// The error and its causes, outermost first.
    pub causes: Vec<String>,
    /// What to do next.
    pub advice: String,
    /// The target is smaller than the partitions need.
    pub does_not_fit: bool,
    /// The user cancelled.
    pub cancelled: bool,
    /// A failed restore or clone wipes the target's partition tables once it has begun
    /// writing (the result screen says so when the job got that far).
    pub wipes_target: bool,
}

/// A yes/no question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Stop the running job.
    Cancel,
    /// Power the machine off.
    PowerOff,
    /// Restart the machine.
    Reboot,
}

/// A planned job, ready to start.
#[derive(Debug, Clone)]
pub enum Planned {
    /// An image.
    Image(Box<ImagePlan>),
    /// A restore.
    Restore(Box<RestorePlan>),
    /// A clone.
    Clone(Box<ClonePlan>),
}

/// A job to plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRequest {
    /// Image `source` into `dir`.
    Image {
        /// The disk.
        source: PathBuf,
        /// The storage folder.
        dir: PathBuf,
        /// File name without `.lbi` (full images only; children are named after their chain).
        name: String,
        /// Full, incremental or differential (parent found in `dir`).
        kind: ImageKind,
        /// zstd level.
        level: i32,
    },
    /// Restore `image` onto `target`.
    Restore {
        /// The image.
        image: PathBuf,
        /// The disk.
        target: PathBuf,
        /// Grow the last partition.
        grow_last: bool,
        /// New disk ID.
        new_disk_id: bool,
    },
    /// Clone `source` onto `target`.
    Clone {
        /// The disk copied.
        source: PathBuf,
        /// The disk overwritten.
        target: PathBuf,
        /// Grow the last partition.
        grow_last: bool,
        /// New disk ID.
        new_disk_id: bool,
    },
}

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key was pressed.
    Key(KeyEvent),
    /// The 250 ms ticker: the time now, and seconds since 1970.
    Tick(Instant, u64),
    /// A scan finished: the disks, or why there are none.
    Devices(Result<Vec<DiskReport>, String>),
    /// The storage was mounted (or found mounted) and listed.
    StorageReady(Result<(Storage, Vec<ImageEntry>), Failure>),
    /// The storage folder was listed again.
    Images(Result<Vec<ImageEntry>, String>),
    /// A plan was made, or refused.
    Planned(Result<Planned, Failure>),
    /// An event of the running job.
    Job(Event),
    /// The running job ended: its summary in lines and seconds, or why it failed.
    JobDone(Result<(Vec<String>, f64), Failure>),
    /// The terminal was resized: draw again.
    Redraw,
    /// The answer to request `id` ([`Msg::StorageReady`] or [`Msg::Planned`]); the loop
    /// unwraps it, or drops it when the user stopped waiting for it. `update` ignores it.
    Reply(u64, Box<Msg>),
    /// The keyboard cannot be read (the loop leaves; `update` ignores it).
    InputFailed(String),
}

/// Work for the loop, outside `update`.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Scan the disks (and the storage folder) again.
    Rescan,
    /// Mount this filesystem (unless it is mounted already) and list its images.
    MountStorage(StoreChoice),
    /// Make a plan; the answer comes back as [`Msg::Planned`].
    Plan(JobRequest),
    /// Run a planned job; events come back as [`Msg::Job`], the end as [`Msg::JobDone`].
    Start(Planned),
    /// Verify an image and its chain.
    Verify(PathBuf),
    /// Cancel the running job.
    Cancel,
    /// Leave the screen for a shell, then come back.
    Shell,
    /// Power off (rescue system only).
    PowerOff,
    /// Reboot (rescue system only).
    Reboot,
    /// Leave the TUI.
    Quit,
}

// ---------------------------------------------------------------------------------------------
// Pure helpers the view shares

/// The short name typed to confirm an erase: `sda` for `/dev/sda`, the file name for a file.
pub fn short_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Every filesystem that can hold images, USB and removable disks first.
pub fn store_choices(disks: &[DiskReport]) -> Vec<StoreChoice> {
    let mut out = Vec::new();
    for d in disks {
        let removable =
            d.removable == Some(true) || d.transport == Some(crate::discovery::Transport::Usb);
        let transport = d.transport.map(|t| format!("{t:?}").to_lowercase());
        if let Some(fs) = &d.fs {
            let name = fs.kind.blkid_name();
            if STORE_FILESYSTEMS.contains(&name) {
                out.push(StoreChoice {
                    device: d.path.clone(),
                    disk: d.path.clone(),
                    fs: name,
                    label: fs.label.clone(),
                    size_bytes: d.size_bytes,
                    used_bytes: fs.used_bytes,
                    mountpoint: None,
                    removable,
                    transport: transport.clone(),
                });
            }
        }
        for p in &d.partitions {
            let (Some(fs), Some(dev)) = (p.fs, &p.path) else {
                continue;
            };
            if let Some(fs) = STORE_FILESYSTEMS.iter().find(|f| **f == fs) {
                out.push(StoreChoice {
                    device: dev.clone(),
                    disk: d.path.clone(),
                    fs,
                    label: p.label.clone(),
                    size_bytes: p.size_bytes,
                    used_bytes: p.used_bytes,
                    mountpoint: p.mountpoint.clone(),
                    removable,
                    transport: transport.clone(),
                });
            }
        }
    }
    out.sort_by_key(|c| !c.removable); // stable: disk order within each group
    out
}

/// Why a disk cannot be a source or target here, or `None`.
pub fn excluded(model: &Model, d: &DiskReport) -> Option<&'static str> {
    if d.is_boot {
        return Some(if model.rescue {
            "the Lifeboat stick"
        } else {
            "the boot medium"
        });
    }
    if model
        .storage
        .as_ref()
        .and_then(|s| s.disk.as_ref())
        .is_some_and(|s| *s == d.path)
    {
        return Some("holds the image storage");
    }
    None
}

/// Disks offered as an image or clone source: indexes into `model.disks`.
pub fn sources(model: &Model) -> Vec<usize> {
    (0..model.disks.len())
        .filter(|&i| excluded(model, &model.disks[i]).is_none())
        .collect()
}

/// Disks offered as a restore or clone target: not excluded, not the clone's source.
pub fn targets(model: &Model, not: Option<&Path>) -> Vec<usize> {
    sources(model)
        .into_iter()
        .filter(|&i| not != Some(model.disks[i].path.as_path()))
        .collect()
}

/// One row of the image list: a chain heading, or an image (index into `model.images`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRow {
    /// A chain's heading: its name and the disk it was taken of.
    Chain(String, String),
    /// An image.
    Image(usize),
}

/// The images grouped per chain (per source disk), oldest first within a chain.
pub fn image_rows(images: &[ImageEntry]) -> Vec<ImageRow> {
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&images[a].found, &images[b].found);
        (&x.chain_name, x.created_unix, &x.path).cmp(&(&y.chain_name, y.created_unix, &y.path))
    });
    let mut rows = Vec::new();
    let mut last: Option<&str> = None;
    for i in order {
        let f = &images[i].found;
        if last != Some(f.chain_name.as_str()) {
            let d = &f.disk;
            let what = d
                .model
                .clone()
                .or_else(|| d.path.clone())
                .unwrap_or_default();
            let disk = format!("{what}, {}", crate::units::human_bytes(d.size_bytes));
            rows.push(ImageRow::Chain(f.chain_name.clone(), disk));
            last = Some(f.chain_name.as_str());
        }
        rows.push(ImageRow::Image(i));
    }
    rows
}

/// The images in list order (the rows without headings).
pub fn image_order(images: &[ImageEntry]) -> Vec<usize> {
    image_rows(images)
        .into_iter()
        .filter_map(|r| match r {
            ImageRow::Image(i) => Some(i),
            ImageRow::Chain(..) => None,
        })
        .collect()
}

/// The images in the storage taken of `disk`.
pub fn images_of<'a>(model: &'a Model, disk: &DiskReport) -> Vec<&'a ImageEntry> {
    let me = crate::jobs::chain::DiskIdentity::of_report(disk);
    model
        .images
        .iter()
        .filter(|e| e.found.disk.differs_from(&me).is_none())
        .collect()
}

/// Images of `disk` already in the storage: (any, a full one).
pub fn chain_for(model: &Model, disk: &DiskReport) -> (bool, bool) {
    let same = images_of(model, disk);
    (!same.is_empty(), same.iter().any(|e| e.found.full))
}

/// A file name for a full image of `d`: `sda-Samsung-SSD-860-20261122`.
pub fn suggested_name(d: &DiskReport, unix: u64) -> String {
    let mut s = short_name(&d.path);
    if let Some(m) = &d.model {
        let words: Vec<String> = m
            .split_whitespace()
            .take(3)
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect()
            })
            .filter(|w: &String| !w.is_empty())
            .collect();
        if !words.is_empty() {
            s.push('-');
            s.push_str(&words.join("-"));
        }
    }
    let stamp = crate::jobs::chain::utc_stamp(unix);
    s.push('-');
    s.push_str(stamp.get(..8).unwrap_or(&stamp));
    s
}

/// The items the current screen's cursor moves over (disk, partition or image paths), or
/// `None` on a screen without such a list.
fn cursor_list(model: &Model) -> Option<Vec<PathBuf>> {
    let disk = |i: &usize| model.disks[*i].path.clone();
    let image = |i: &usize| model.images[*i].found.path.clone();
    Some(match &model.screen {
        Screen::Storage { .. } => store_choices(&model.disks)
            .into_iter()
            .map(|c| c.device)
            .collect(),
        Screen::Image(w) if w.step == ImageStep::Source => {
            sources(model).iter().map(disk).collect()
        }
        Screen::Clone(w) if w.step == CloneStep::Source => {
            sources(model).iter().map(disk).collect()
        }
        Screen::Clone(w) if w.step == CloneStep::Target => targets(model, w.source.as_deref())
            .iter()
            .map(disk)
            .collect(),
        Screen::Restore(w) if w.step == RestoreStep::Target => {
            targets(model, None).iter().map(disk).collect()
        }
        Screen::Restore(w) if w.step == RestoreStep::Image => {
            image_order(&model.images).iter().map(image).collect()
        }
        Screen::Verify { .. } => image_order(&model.images).iter().map(image).collect(),
        _ => return None,
    })
}

fn cursor_mut(model: &mut Model) -> Option<&mut usize> {
    match &mut model.screen {
        Screen::Storage { cursor, .. } | Screen::Verify { cursor } => Some(cursor),
        Screen::Image(w) => Some(&mut w.cursor),
        Screen::Clone(w) => Some(&mut w.cursor),
        Screen::Restore(w) => Some(&mut w.cursor),
        _ => None,
    }
}

/// Replaces the disks or images with `change`, keeping the cursor on the same item: a key
/// pressed before the new list was drawn must pick what the user saw. An item that went away
/// leaves the cursor on the first row (a restore or clone still names its target before
/// anything is written).
fn keep_cursor(model: &mut Model, change: impl FnOnce(&mut Model)) {
    let before = cursor_list(model);
    let at = cursor_mut(model).map(|c| *c);
    let picked = before.zip(at).and_then(|(l, c)| l.get(c).cloned());
    change(model);
    let Some(after) = cursor_list(model) else {
        return;
    };
    let to = picked
        .and_then(|p| after.iter().position(|x| *x == p))
        .unwrap_or(0);
    if let Some(c) = cursor_mut(model) {
        *c = to;
    }
}

// ---------------------------------------------------------------------------------------------
// update

/// Applies `msg` to `model`. Pure: no I/O, no terminal.
pub fn update(model: &mut Model, msg: Msg) -> Option<Cmd> {
    match msg {
        Msg::Tick(now, unix) => {
            model.now = Some(now);
            model.now_unix = unix;
            None
        }
        Msg::Devices(Ok(disks)) => {
            model.scanning = false;
            model.scan_error = None;
            keep_cursor(model, |m| m.disks = disks);
            if let Some(st) = &mut model.storage {
                if let Some(dev) = &st.device {
                    // the disk that holds the storage, so that it is never offered
                    if let Some(d) = model.disks.iter().find(|d| {
                        d.path == *dev || d.partitions.iter().any(|p| p.path.as_ref() == Some(dev))
                    }) {
                        st.disk = Some(d.path.clone());
                    }
                }
            }
            model.selected = model.selected.min(model.disks.len().saturating_sub(1));
            None
        }
        Msg::Devices(Err(e)) => {
            model.scanning = false;
            model.scan_error = Some(e);
            None
        }
        Msg::StorageReady(r) => {
            model.busy = None;
            match r {
                Ok((storage, images)) => {
                    model.storage = Some(storage);
                    model.images = images;
                    model.images_error = None;
                    let then = match &model.screen {
                        Screen::Storage { then, .. } => *then,
                        _ => None,
                    };
                    model.screen = Screen::Home;
                    if let Some(a) = then {
                        open(model, a);
                    }
                }
                Err(f) => {
                    // the old storage may be unmounted by now: choose again
                    model.storage = None;
                    model.images.clear();
                    model.failure = Some(f);
                }
            }
            None
        }
        Msg::Images(r) => {
            match r {
                Ok(images) => {
                    keep_cursor(model, |m| m.images = images);
                    model.images_error = None;
                }
                Err(e) => model.images_error = Some(e),
            }
            None
        }
        Msg::Planned(r) => {
            model.busy = None;
            planned(model, r);
            None
        }
        Msg::Job(e) => {
            job_event(model, e);
            None
        }
        Msg::JobDone(r) => {
            let Screen::Running(run) = &model.screen else {
                return None;
            };
            model.ask = None;
            let elapsed = model
                .now
                .map_or(0.0, |n| n.duration_since(run.started).as_secs_f64());
            let began = !matches!(run.phase, None | Some(Phase::Scan));
            let (lines, failure, seconds) = match r {
                Ok((lines, s)) => (lines, None, s),
                Err(mut f) => {
                    if f.wipes_target && began {
                        f.advice.push_str(
                            " The target disk was left without a partition table, so it cannot be mistaken for a good copy.",
                        );
                    }
                    (Vec::new(), Some(f), elapsed)
                }
            };
            model.screen = Screen::Done(Done {
                title: run.title.clone(),
                lines,
                failure,
                warnings: run.warnings.clone(),
                seconds,
            });
            None
        }
        Msg::Redraw | Msg::InputFailed(_) | Msg::Reply(..) => None,
        Msg::Key(k) if k.kind == KeyEventKind::Release => None,
        Msg::Key(k) => key(model, k),
    }
}

fn job_event(model: &mut Model, e: Event) {
    let now = model.now;
    let Screen::Running(run) = &mut model.screen else {
        return;
    };
    match e {
        Event::Phase { phase, total_bytes } => {
            run.phase = Some(phase);
            run.total = total_bytes;
            run.done = 0;
            if let Some(n) = now {
                run.phase_started = n;
            }
        }
        Event::Progress { phase, done_bytes } => {
            if run.phase == Some(phase) {
                run.done = done_bytes;
            }
        }
        Event::Warning { message } => run.warnings.push(message),
        Event::Finished { .. } => {} // JobDone carries the outcome, with advice
    }
}

fn planned(model: &mut Model, r: Result<Planned, Failure>) {
    match (r, &mut model.screen) {
        (Ok(Planned::Image(p)), Screen::Image(w)) => {
            w.plan = Some(p);
            w.step = ImageStep::Confirm;
        }
        (Ok(Planned::Restore(p)), Screen::Restore(w)) => {
            w.plan = Some(p);
            w.step = RestoreStep::Confirm;
            w.over.typed.clear();
            w.over.mistyped = false;
        }
        (Ok(Planned::Clone(p)), Screen::Clone(w)) => {
            w.plan = Some(p);
            w.step = CloneStep::Confirm;
            w.over.typed.clear();
            w.over.mistyped = false;
        }
        (
            Err(f),
            Screen::Restore(RestoreWiz { over, .. }) | Screen::Clone(CloneWiz { over, .. }),
        ) if f.does_not_fit => {
            over.does_not_fit = Some(f.causes.first().cloned().unwrap_or_default());
        }
        (Err(f), _) => model.failure = Some(f),
        (Ok(_), _) => {} // the user left the wizard meanwhile
    }
}

fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let ctrl_c = k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c');
    if model.failure.is_some() {
        if matches!(k.code, KeyCode::Enter | KeyCode::Esc) || ctrl_c {
            model.failure = None;
        }
        return None;
    }
    if let Some(ask) = model.ask {
        return answer(model, ask, k);
    }
    if model.help {
        model.help = false; // any key closes help and does nothing else
        return None;
    }
    if model.busy.is_some() {
        // planning or mounting: Esc (or Ctrl-C) stops waiting, and the late answer is
        // dropped by the loop; other keys wait
        if k.code == KeyCode::Esc || ctrl_c {
            model.busy = None;
        }
        return None;
    }
    if ctrl_c {
        return match &model.screen {
            Screen::Running(r) => {
                if can_cancel(r) {
                    model.ask = Some(Ask::Cancel);
                }
                None
            }
            _ => Some(Cmd::Quit),
        };
    }
    if matches!(k.code, KeyCode::Char('?') | KeyCode::F(1)) && !typing(model) {
        model.help = true;
        return None;
    }
    match &model.screen {
        Screen::Home => home_key(model, k),
        Screen::Details => {
            if matches!(k.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
                model.screen = Screen::Home;
            }
            None
        }
        Screen::Storage { .. } => storage_key(model, k),
        Screen::Image(_) => image_key(model, k),
        Screen::Restore(_) => restore_key(model, k),
        Screen::Clone(_) => clone_key(model, k),
        Screen::Verify { .. } => verify_key(model, k),
        Screen::Running(r) => {
            if can_cancel(r) && matches!(k.code, KeyCode::Esc | KeyCode::Char('c')) {
                model.ask = Some(Ask::Cancel);
            }
            None
        }
        Screen::Done(_) => {
            if matches!(k.code, KeyCode::Enter | KeyCode::Esc) {
                model.screen = Screen::Home;
                if model.scanning {
                    return None;
                }
                model.scanning = true;
                return Some(Cmd::Rescan);
            }
            None
        }
    }
}

/// The running job can still be cancelled: not twice, and not while a filesystem grows (the
/// resize tools run to their end).
pub fn can_cancel(r: &Running) -> bool {
    !r.cancelling && r.phase != Some(Phase::Grow)
}

/// A text field has the keyboard: letters are typed, not keys.
pub fn typing(model: &Model) -> bool {
    match &model.screen {
        Screen::Image(w) => w.step == ImageStep::Options && w.cursor == 1,
        Screen::Restore(w) => w.step == RestoreStep::Confirm,
        Screen::Clone(w) => w.step == CloneStep::Confirm,
        _ => false,
    }
}

fn answer(model: &mut Model, ask: Ask, k: KeyEvent) -> Option<Cmd> {
    match k.code {
        KeyCode::Char('y') | KeyCode::Char('Y') => {
            model.ask = None;
            match ask {
                Ask::Cancel => {
                    if let Screen::Running(r) = &mut model.screen {
                        r.cancelling = true;
                        Some(Cmd::Cancel)
                    } else {
                        None
                    }
                }
                Ask::PowerOff => Some(Cmd::PowerOff),
                Ask::Reboot => Some(Cmd::Reboot),
            }
        }
        KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc | KeyCode::Enter => {
            model.ask = None;
            None
        }
        _ => None,
    }
}

/// Moves `cursor` within `len` rows.
fn step_cursor(cursor: &mut usize, len: usize, code: KeyCode) -> bool {
    match code {
        KeyCode::Up | KeyCode::Char('k') => *cursor = cursor.saturating_sub(1),
        KeyCode::Down | KeyCode::Char('j') => {
            if *cursor + 1 < len {
                *cursor += 1;
            }
        }
        KeyCode::Home => *cursor = 0,
        KeyCode::End => *cursor = len.saturating_sub(1),
        _ => return false,
    }
    true
}

/// Opens a wizard, through Storage when it needs one and none is chosen.
fn open(model: &mut Model, a: Action) {
    if model.storage.is_none() {
        model.screen = Screen::Storage {
            cursor: 0,
            then: Some(a),
        };
        return;
    }
    model.screen = match a {
        Action::Image => Screen::Image(ImageWiz {
            level: crate::jobs::image::DEFAULT_LEVEL,
            ..ImageWiz::default()
        }),
        Action::Restore => Screen::Restore(RestoreWiz::default()),
        Action::Verify => Screen::Verify { cursor: 0 },
    };
}

fn home_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let n = model.disks.len();
    if step_cursor(&mut model.selected, n, k.code) {
        return None;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => Some(Cmd::Quit),
        KeyCode::Enter if n > 0 => {
            model.screen = Screen::Details;
            None
        }
        KeyCode::F(5) | KeyCode::Char('R') => {
            if model.scanning {
                return None;
            }
            model.scanning = true;
            Some(Cmd::Rescan)
        }
        KeyCode::Char('i') => {
            open(model, Action::Image);
            None
        }
        KeyCode::Char('r') => {
            open(model, Action::Restore);
            None
        }
        KeyCode::Char('v') => {
            open(model, Action::Verify);
            None
        }
        KeyCode::Char('c') => {
            model.screen = Screen::Clone(CloneWiz::default());
            None
        }
        KeyCode::Char('s') => {
            model.screen = Screen::Storage {
                cursor: 0,
                then: None,
            };
            None
        }
        KeyCode::Char('x') => Some(Cmd::Shell),
        KeyCode::Char('p') if model.rescue => {
            model.ask = Some(Ask::PowerOff);
            None
        }
        KeyCode::Char('b') if model.rescue => {
            model.ask = Some(Ask::Reboot);
            None
        }
        _ => None,
    }
}

fn storage_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let choices = store_choices(&model.disks);
    let Screen::Storage { cursor, .. } = &mut model.screen else {
        return None;
    };
    if step_cursor(cursor, choices.len(), k.code) {
        return None;
    }
    match k.code {
        KeyCode::Esc => {
            model.screen = Screen::Home;
            None
        }
        KeyCode::Enter => {
            let c = choices.get(*cursor)?.clone();
            model.busy = Some(match &c.mountpoint {
                Some(m) => format!("Looking for images in {}...", m.display()),
                None => format!("Mounting {}...", c.device.display()),
            });
            Some(Cmd::MountStorage(c))
        }
        KeyCode::F(5) | KeyCode::Char('R') if !model.scanning => {
            model.scanning = true;
            Some(Cmd::Rescan)
        }
        _ => None,
    }
}

fn image_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let srcs = sources(model);
    let dir = model.storage.as_ref().map(|s| s.dir.clone());
    let unix = model.now_unix;
    let chains: Vec<(bool, bool)> = model.disks.iter().map(|d| chain_for(model, d)).collect();
    let disks = model.disks.clone();
    let Screen::Image(w) = &mut model.screen else {
        return None;
    };
    match w.step {
        ImageStep::Source => {
            if step_cursor(&mut w.cursor, srcs.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => model.screen = Screen::Home,
                KeyCode::Enter => {
                    let &i = srcs.get(w.cursor)?;
                    let d = &disks[i];
                    w.source = Some(d.path.clone());
                    w.name = suggested_name(d, unix);
                    // a disk with images already continues its chain by default
                    w.kind = match chains[i] {
                        (true, true) => ImageKind::Incremental,
                        _ => ImageKind::Full,
                    };
                    w.step = ImageStep::Options;
                    w.cursor = 0;
                }
                _ => {}
            }
            None
        }
        ImageStep::Options => {
            let src = w.source.clone()?;
            let Some(i) = disks.iter().position(|d| d.path == src) else {
                // the disk went away in a rescan: only going back makes sense
                if k.code == KeyCode::Esc {
                    w.step = ImageStep::Source;
                    w.cursor = 0;
                }
                return None;
            };
            let (_, has_full) = chains[i];
            match k.code {
                KeyCode::Esc => {
                    w.step = ImageStep::Source;
                    w.cursor = srcs.iter().position(|&j| j == i).unwrap_or(0);
                }
                KeyCode::Up => w.cursor = w.cursor.saturating_sub(1),
                KeyCode::Down | KeyCode::Tab => w.cursor = (w.cursor + 1).min(2),
                KeyCode::Left | KeyCode::Right if w.cursor == 0 => {
                    let all = [
                        ImageKind::Full,
                        ImageKind::Incremental,
                        ImageKind::Differential,
                    ];
                    let offered: Vec<ImageKind> = all
                        .into_iter()
                        .filter(|k| *k == ImageKind::Full || has_full)
                        .collect();
                    let at = offered.iter().position(|k| *k == w.kind).unwrap_or(0);
                    let n = offered.len();
                    let next = if k.code == KeyCode::Right {
                        (at + 1) % n
                    } else {
                        (at + n - 1) % n
                    };
                    w.kind = offered[next];
                }
                KeyCode::Left if w.cursor == 2 => w.level = (w.level - 1).max(1),
                KeyCode::Right if w.cursor == 2 => w.level = (w.level + 1).min(19),
                KeyCode::Backspace if w.cursor == 1 => {
                    w.name.pop();
                }
                KeyCode::Char(c)
                    if w.cursor == 1
                        && (c.is_ascii_alphanumeric() || "-_.".contains(c))
                        && w.name.len() < 80 =>
                {
                    w.name.push(c);
                }
                KeyCode::Enter => {
                    let dir = dir?;
                    if w.kind == ImageKind::Full && w.name.trim_matches('.').is_empty() {
                        w.cursor = 1;
                        return None;
                    }
                    model.busy = Some(format!("Reading {} and its filesystems...", src.display()));
                    return Some(Cmd::Plan(JobRequest::Image {
                        source: src,
                        dir,
                        name: w.name.clone(),
                        kind: w.kind,
                        level: w.level,
                    }));
                }
                _ => {}
            }
            None
        }
        ImageStep::Confirm => match k.code {
            KeyCode::Esc => {
                w.step = ImageStep::Options;
                w.plan = None;
                None
            }
            KeyCode::Enter => {
                let plan = w.plan.take()?;
                let title = format!(
                    "Imaging {} into {}",
                    plan.source.display(),
                    plan.output.display()
                );
                start(model, JobKind::Image, title, None);
                Some(Cmd::Start(Planned::Image(plan)))
            }
            _ => None,
        },
    }
}

fn start(model: &mut Model, kind: JobKind, title: String, target: Option<PathBuf>) {
    let now = model.now.unwrap_or_else(Instant::now);
    model.screen = Screen::Running(Running {
        kind,
        title,
        target,
        phase: None,
        total: None,
        done: 0,
        started: now,
        phase_started: now,
        warnings: Vec::new(),
        cancelling: false,
    });
}

/// What a key on the target step of restore or clone asks for.
enum TargetKey {
    /// Nothing more (the key moved or toggled something, or did nothing).
    Done,
    /// Back to the first step.
    Back,
    /// Plan onto this disk.
    Chosen(PathBuf),
}

impl Overwrite {
    /// A key on the target step: `tgts` are the offered disks (indexes into `paths`).
    fn target_key(
        &mut self,
        cursor: &mut usize,
        tgts: &[usize],
        paths: &[PathBuf],
        code: KeyCode,
    ) -> TargetKey {
        if step_cursor(cursor, tgts.len(), code) {
            self.does_not_fit = None;
            return TargetKey::Done;
        }
        match code {
            KeyCode::Esc => {
                self.does_not_fit = None;
                TargetKey::Back
            }
            KeyCode::Char('g') => {
                self.grow_last = !self.grow_last;
                TargetKey::Done
            }
            KeyCode::Char('n') => {
                self.new_disk_id = !self.new_disk_id;
                TargetKey::Done
            }
            KeyCode::Enter => match tgts.get(*cursor) {
                Some(&i) => {
                    self.target = Some(paths[i].clone());
                    self.does_not_fit = None;
                    TargetKey::Chosen(paths[i].clone())
                }
                None => TargetKey::Done,
            },
            _ => TargetKey::Done,
        }
    }

    /// A key on the confirm step: true when Enter was pressed with the target's short name
    /// typed exactly.
    fn confirm_key(&mut self, code: KeyCode) -> bool {
        let Some(want) = self.target.as_deref().map(short_name) else {
            return false;
        };
        match code {
            KeyCode::Char(c) if self.typed.len() < 64 => {
                self.typed.push(c);
                self.mistyped = false;
            }
            KeyCode::Backspace => {
                self.typed.pop();
                self.mistyped = false;
            }
            KeyCode::Enter => {
                if self.typed == want {
                    return true;
                }
                self.mistyped = true;
            }
            _ => {}
        }
        false
    }
}

fn restore_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let order = image_order(&model.images);
    let tgts = targets(model, None);
    let paths: Vec<PathBuf> = model.disks.iter().map(|d| d.path.clone()).collect();
    let images: Vec<PathBuf> = model.images.iter().map(|e| e.found.path.clone()).collect();
    let Screen::Restore(w) = &mut model.screen else {
        return None;
    };
    match w.step {
        RestoreStep::Image => {
            if step_cursor(&mut w.cursor, order.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => model.screen = Screen::Home,
                KeyCode::Enter => {
                    let &i = order.get(w.cursor)?;
                    w.image = Some(images[i].clone());
                    w.step = RestoreStep::Target;
                    w.cursor = 0;
                    w.over.does_not_fit = None;
                }
                _ => {}
            }
            None
        }
        RestoreStep::Target => {
            match w.over.target_key(&mut w.cursor, &tgts, &paths, k.code) {
                TargetKey::Done => {}
                TargetKey::Back => {
                    let img = w.image.take();
                    w.step = RestoreStep::Image;
                    w.cursor = img
                        .and_then(|p| order.iter().position(|&i| images[i] == p))
                        .unwrap_or(0);
                }
                TargetKey::Chosen(target) => {
                    let req = JobRequest::Restore {
                        image: w.image.clone()?,
                        target,
                        grow_last: w.over.grow_last,
                        new_disk_id: w.over.new_disk_id,
                    };
                    model.busy = Some("Reading the image and checking the target...".into());
                    return Some(Cmd::Plan(req));
                }
            }
            None
        }
        RestoreStep::Confirm => {
            if k.code == KeyCode::Esc {
                w.step = RestoreStep::Target;
                w.plan = None;
                w.over.typed.clear();
                return None;
            }
            if !w.over.confirm_key(k.code) {
                return None;
            }
            let target = w.over.target.clone()?;
            let plan = w.plan.take()?;
            let title = format!(
                "Restoring {} onto {}",
                short_name(&plan.image),
                target.display()
            );
            start(model, JobKind::Restore, title, Some(target));
            Some(Cmd::Start(Planned::Restore(plan)))
        }
    }
}

fn clone_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let srcs = sources(model);
    let paths: Vec<PathBuf> = model.disks.iter().map(|d| d.path.clone()).collect();
    let source = match &model.screen {
        Screen::Clone(w) => w.source.clone(),
        _ => None,
    };
    let tgts = targets(model, source.as_deref());
    let Screen::Clone(w) = &mut model.screen else {
        return None;
    };
    match w.step {
        CloneStep::Source => {
            if step_cursor(&mut w.cursor, srcs.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => model.screen = Screen::Home,
                KeyCode::Enter => {
                    let &i = srcs.get(w.cursor)?;
                    w.source = Some(paths[i].clone());
                    w.step = CloneStep::Target;
                    w.cursor = 0;
                    w.over.does_not_fit = None;
                }
                _ => {}
            }
            None
        }
        CloneStep::Target => {
            match w.over.target_key(&mut w.cursor, &tgts, &paths, k.code) {
                TargetKey::Done => {}
                TargetKey::Back => {
                    let src = w.source.take();
                    w.step = CloneStep::Source;
                    w.cursor = src
                        .and_then(|p| srcs.iter().position(|&i| paths[i] == p))
                        .unwrap_or(0);
                }
                TargetKey::Chosen(target) => {
                    let req = JobRequest::Clone {
                        source: w.source.clone()?,
                        target,
                        grow_last: w.over.grow_last,
                        new_disk_id: w.over.new_disk_id,
                    };
                    model.busy = Some("Reading the source and checking the target...".into());
                    return Some(Cmd::Plan(req));
                }
            }
            None
        }
        CloneStep::Confirm => {
            if k.code == KeyCode::Esc {
                w.step = CloneStep::Target;
                w.plan = None;
                w.over.typed.clear();
                return None;
            }
            if !w.over.confirm_key(k.code) {
                return None;
            }
            let target = w.over.target.clone()?;
            let plan = w.plan.take()?;
            let title = format!(
                "Cloning {} onto {}",
                plan.source.display(),
                target.display()
            );
            start(model, JobKind::Clone, title, Some(target));
            Some(Cmd::Start(Planned::Clone(plan)))
        }
    }
}

fn verify_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let order = image_order(&model.images);
    let images: Vec<PathBuf> = model.images.iter().map(|e| e.found.path.clone()).collect();
    let Screen::Verify { cursor } = &mut model.screen else {
        return None;
    };
    if step_cursor(cursor, order.len(), k.code) {
        return None;
    }
    match k.code {
        KeyCode::Esc => {
            model.screen = Screen::Home;
            None
        }
        KeyCode::Enter => {
            let path = images[*order.get(*cursor)?].clone();
            start(
                model,
                JobKind::Verify,
                format!("Verifying {}", short_name(&path)),
                None,
            );
            Some(Cmd::Verify(path))
        }
        _ => None,
    }
}
