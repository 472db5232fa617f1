//! The TUI's state and its pure transition function (Elm style, STYLE §6): [`Model`] holds
//! everything the screen shows, [`update`] turns one [`Msg`] into a new model and at most one
//! [`Cmd`] for the loop to carry out, and never does I/O itself.
//!
//! Screens: Home (disks), disk details, Storage (where images live, with the network store
//! form), Network (the interfaces), the image, restore, clone and verify wizards, the progress screen of a running job, and its result. Errors
//! are an overlay on the screen where they happened, with the cause chain and what to do.
//!
//! The wizards only ask; every check that can refuse (busy, mounted, too small, the storage
//! disk, the source itself) is the job's own `plan()`, run by the loop before the confirm
//! step, so the TUI refuses exactly what the CLI refuses.
//!
//! Each screen's state, keys and drawing are in its module under [`screens`](super::screens);
//! here are the model, the messages and commands, and the dispatch to the screens.

use super::outcome;
use super::screens::browse::{self, Browse};
use super::screens::clone::{self, CloneStep, CloneWiz};
use super::screens::done::{self, Done};
use super::screens::image::{self, ImageKind, ImageStep, ImageWiz};
use super::screens::image_list::image_order;
use super::screens::net_store::{self, NetForm};
use super::screens::network::{self, NetView};
use super::screens::progress::{self, can_cancel, Running};
use super::screens::restore::{self, RestoreStep, RestoreWiz};
use super::screens::storage::{self, store_choices, StoreChoice};
use super::screens::{home, sources, targets, verify};
use crate::access::mount::MountReport;
use crate::inspect::DiskReport;
use crate::jobs::chain::Found;
use crate::jobs::clone::ClonePlan;
use crate::jobs::copy_out::{CopyItem, CopyPlan, Entry};
use crate::jobs::image::ImagePlan;
use crate::jobs::restore::RestorePlan;
use crate::jobs::Event;
use crate::store::net::{Credentials, NetStore};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::PathBuf;
use std::time::Instant;

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
    /// Encrypted images in the storage that no passphrase typed so far opens: not listed
    /// until one is typed (u).
    pub locked_images: usize,
    /// The storage is a deduplicating fleet store (it has packs, an index or a store key),
    /// even when it lists no image yet.
    pub storage_fleet: bool,
    /// The passphrase being typed in the unlock dialog (u), when it is open.
    pub unlock: Option<crate::image::crypt::Secret>,
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
    /// The image browser, while it is open (its copy's progress and result keep it).
    pub browse: Option<Browse>,
    /// What the network screen shows.
    pub net: NetView,
    /// The network store form, while it is open on Storage.
    pub net_store: Option<NetForm>,
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

/// What listing the storage found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The images that can be read.
    pub images: Vec<ImageEntry>,
    /// Encrypted images no passphrase typed so far opens.
    pub locked: usize,
    /// The folder is a deduplicating fleet store.
    pub fleet: bool,
}

impl Listing {
    /// A listing of these images, none locked, in a folder that is not a fleet store.
    pub fn of(images: Vec<ImageEntry>) -> Self {
        Listing {
            images,
            ..Listing::default()
        }
    }
}

/// One image file found in the storage.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// What the image records.
    pub found: Found,
    /// The image's size (all its volumes, when it is split).
    pub file_bytes: u64,
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
    /// Browsing an image (the state is [`Model::browse`]).
    Browse,
    /// The network interfaces (the state is [`Model::net`]).
    Network,
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
    /// The image browser.
    Browse,
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
    /// The disk that could not be read, when a read error on a disk (not an image file)
    /// stopped the job: the result screen offers to image it in rescue mode.
    pub unreadable: Option<std::path::PathBuf>,
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
    /// A copy out of a mounted image.
    CopyOut(Box<CopyPlan>),
}

/// A network store to mount as the storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetMount {
    /// The store, as the form's URL parsed.
    pub store: NetStore,
    /// The password typed (hidden from `Debug` by [`Credentials`]).
    pub creds: Credentials,
    /// SFTP: known_hosts lines the user confirmed, trusted before mounting.
    pub trust: Vec<String>,
}

/// An S3 bucket's folder to open as the storage (the form's fields, checked).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Open {
    /// The endpoint's URL.
    pub endpoint: String,
    /// The region requests are signed for.
    pub region: String,
    /// The folder: `s3://bucket/folder`.
    pub url: String,
    /// The access key ID.
    pub access_key: String,
    /// The secret key (hidden from `Debug`).
    pub secret_key: String,
}

impl std::fmt::Debug for S3Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Open")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("url", &self.url)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl S3Open {
    /// The S3 client's configuration (path-style requests for an address or a dot-less
    /// name, as the CLI's).
    pub fn config(&self) -> std::io::Result<crate::store::s3::Config> {
        crate::store::s3::Config::new(
            &self.endpoint,
            &self.region,
            &self.access_key,
            &self.secret_key,
            None,
            false,
        )
    }
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
        /// Rescue mode (`--rescue`).
        rescue: bool,
        /// Every block of swap areas (`--full-swap`), not only their header.
        full_swap: bool,
        /// Encrypt a full image with this passphrase (`--encrypt`).
        passphrase: Option<crate::image::crypt::Secret>,
        /// And make a recovery key (`--recovery-key`).
        recovery_key: bool,
        /// Into a fleet store (`--dedup`): the storage is one, or becomes one.
        dedup: bool,
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
        /// Fit onto a smaller disk (`--fit`).
        fit: bool,
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
        /// Fit onto a smaller disk (`--fit`).
        fit: bool,
    },
    /// Copy `items` (under the open image's mount folder) into `dest`.
    CopyOut {
        /// What to copy.
        items: Vec<CopyItem>,
        /// The folder to copy into.
        dest: PathBuf,
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
    StorageReady(Result<(Storage, Listing), Failure>),
    /// The storage folder was listed again.
    Images(Result<Listing, String>),
    /// A plan was made, or refused.
    Planned(Result<Planned, Failure>),
    /// An event of the running job.
    /// An event of the running job; the job runner's `Finished` (always the last) ends it.
    Job(Event),
    /// The image chosen in the browser was mounted: what is where, or why not.
    Mounted(Result<MountReport, Failure>),
    /// A folder of the open image was listed.
    Listed(Result<(PathBuf, Vec<Entry>), Failure>),
    /// The open image was unmounted (or failed to be).
    MountClosed(Result<(), Failure>),
    /// The network interfaces and the recorded configurations were listed, or why not.
    Network(Result<(Vec<crate::net::Interface>, Vec<crate::net::NetConfig>), String>),
    /// DHCP on the interface ended: the lease, or the cause chain on one line.
    Dhcp(String, Result<crate::net::NetConfig, String>),
    /// The SFTP server's host keys (known_hosts line, fingerprint) for the store asked
    /// about, or the cause chain on one line.
    HostKeys(Result<(NetStore, Vec<(String, String)>), String>),
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
    /// Run a planned job; its events come back as [`Msg::Job`], the last one `Finished`.
    Start(Planned),
    /// Verify an image and its chain.
    Verify(PathBuf),
    /// Mount an image read-only for the browser (replacing one open before); the answer
    /// comes back as [`Msg::Mounted`].
    MountImage(PathBuf),
    /// List a folder of the open image; the answer comes back as [`Msg::Listed`].
    ListDir(PathBuf),
    /// Unmount the browser's image (once a copy out of it has ended).
    CloseMount,
    /// List the network interfaces and the recorded configurations; the answer comes back
    /// as [`Msg::Network`].
    NetRefresh,
    /// Ask a DHCP server for this interface's address (bounded by
    /// [`network::DHCP_TIMEOUT`]); the answer comes back as [`Msg::Dhcp`], then a listing.
    Dhcp(String),
    /// Ask an SFTP server for its host keys; the answer comes back as [`Msg::HostKeys`].
    HostKeys(NetStore),
    /// Mount a network store as the storage (releasing the one in use first); the answer
    /// comes back as [`Msg::StorageReady`].
    MountNetStore(NetMount),
    /// Open an S3 bucket's folder as the storage (its keys used for every S3 request from
    /// then on); the answer comes back as [`Msg::StorageReady`].
    OpenS3(S3Open),
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
// Moving between screens

/// Opens a wizard, through Storage when it needs one and none is chosen.
pub(crate) fn open(model: &mut Model, a: Action) {
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
        Action::Browse => {
            browse::open(model);
            return;
        }
    };
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
                Ok((storage, listing)) => {
                    model.storage = Some(storage);
                    model.images = listing.images;
                    model.locked_images = listing.locked;
                    model.storage_fleet = listing.fleet;
                    model.images_error = None;
                    model.net_store = None;
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
                    model.storage_fleet = false;
                    // a network store's error shows in its form, open for another try
                    match model.net_store.as_mut() {
                        Some(form) => net_store::mount_failed(form, &f.causes),
                        None => model.failure = Some(f),
                    }
                }
            }
            None
        }
        Msg::Images(r) => {
            match r {
                Ok(listing) => {
                    keep_cursor(model, |m| m.images = listing.images);
                    model.locked_images = listing.locked;
                    model.storage_fleet = listing.fleet;
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
        Msg::Job(Event::Finished { summary, error, .. }) => {
            let Screen::Running(run) = &model.screen else {
                return None;
            };
            let elapsed = model
                .now
                .map_or(0.0, |n| n.duration_since(run.started).as_secs_f64());
            let r = outcome::finished(run.kind, summary, error, elapsed);
            done::finish(model, r);
            None
        }
        Msg::Job(e) => {
            progress::event(model, e);
            None
        }
        Msg::Mounted(r) => {
            model.busy = None;
            browse::mounted(model, r);
            None
        }
        Msg::Listed(r) => {
            model.busy = None;
            browse::listed(model, r);
            None
        }
        Msg::MountClosed(r) => {
            if let Err(f) = r {
                model.failure = Some(f);
            }
            None
        }
        Msg::Network(r) => {
            network::loaded(model, r);
            None
        }
        Msg::Dhcp(iface, r) => {
            network::dhcp_done(model, iface, r);
            None
        }
        Msg::HostKeys(r) => {
            model.busy = None;
            net_store::host_keys(model, r);
            None
        }
        Msg::Redraw | Msg::InputFailed(_) | Msg::Reply(..) => None,
        Msg::Key(k) if k.kind == KeyEventKind::Release => None,
        Msg::Key(k) => key(model, k),
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
            w.over.planned();
        }
        (Ok(Planned::Clone(p)), Screen::Clone(w)) => {
            w.plan = Some(p);
            w.step = CloneStep::Confirm;
            w.over.planned();
        }
        (Ok(Planned::CopyOut(p)), Screen::Browse) => browse::planned(model, p),
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
    if model.unlock.is_some() {
        return unlock_key(model, k);
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
    if k.code == KeyCode::Char('u') && lists_images(model) {
        model.unlock = Some(crate::image::crypt::Secret(Default::default()));
        return None;
    }
    match &model.screen {
        Screen::Home => home::key(model, k),
        Screen::Details => home::details_key(model, k),
        Screen::Storage { .. } if model.net_store.is_some() => net_store::key(model, k),
        Screen::Storage { .. } => storage::key(model, k),
        Screen::Image(_) => image::key(model, k),
        Screen::Restore(_) => restore::key(model, k),
        Screen::Clone(_) => clone::key(model, k),
        Screen::Verify { .. } => verify::key(model, k),
        Screen::Running(_) => progress::key(model, k),
        Screen::Done(_) => done::key(model, k),
        Screen::Browse => browse::key(model, k),
        Screen::Network => network::key(model, k),
    }
}

/// The screen shows the storage's images (or leads to them), where u types the passphrase
/// of encrypted ones.
pub fn lists_images(model: &Model) -> bool {
    match &model.screen {
        Screen::Home | Screen::Verify { .. } => true,
        Screen::Restore(w) => w.step == RestoreStep::Image,
        _ => false,
    }
}

/// A key in the unlock dialog: the passphrase is typed (shown as stars); Enter gives it to
/// the keyring and lists the storage again, Esc closes the dialog.
fn unlock_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let typed = model.unlock.as_mut()?;
    match k.code {
        KeyCode::Esc => model.unlock = None,
        KeyCode::Backspace => {
            typed.0.pop();
        }
        KeyCode::Char(c) if typed.0.len() < 512 => typed.0.push(c),
        KeyCode::Enter if !typed.0.is_empty() => {
            let secret = model.unlock.take()?;
            crate::image::crypt::keyring::add_secret(secret.0);
            if !model.scanning {
                model.scanning = true;
                return Some(Cmd::Rescan);
            }
        }
        _ => {}
    }
    None
}

/// A text field has the keyboard: letters are typed, not keys.
pub fn typing(model: &Model) -> bool {
    match &model.screen {
        Screen::Image(w) => w.step == ImageStep::Options && matches!(w.cursor, 1 | 6 | 7),
        Screen::Restore(w) => w.step == RestoreStep::Confirm,
        Screen::Clone(w) => w.step == CloneStep::Confirm,
        Screen::Storage { .. } => model.net_store.is_some(),
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
