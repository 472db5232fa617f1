//! Pure `update` tests: every wizard path, with cancel and back.
//!
//! Each test drives [`update`] with messages and asserts the model and the command it
//! returns; nothing here touches a terminal or a disk. The confirm steps need real plans
//! (their fields are private), so [`Plans`] makes them with the loop's own `plan()` on
//! sparse files in a temporary folder; `update` itself still only sees values.
#![allow(clippy::unwrap_used)]

use super::app::{
    update, Action, Ask, Cmd, Failure, ImageEntry, JobRequest, Listing, Model, Msg, Planned,
    Screen, Storage,
};
use super::screens::clone::CloneStep;
use super::screens::image::{ImageKind, ImageStep, ImageWiz};
use super::screens::image_list::{image_order, image_rows, ImageRow};
use super::screens::restore::{RestoreStep, RestoreWiz};
use super::screens::storage::store_choices;
use super::screens::{short_name, sources, targets};
use super::testing::disks;
use crate::inspect::DiskReport;
use crate::jobs::chain::{DiskIdentity, Found};
use crate::jobs::{Event, Phase};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// helpers

const SDA: usize = 0;
const SDB: usize = 1; // the boot medium
const NVME: usize = 2;
/// 2023-11-14 22:13:20 UTC.
const UNIX: u64 = 1_700_000_000;

fn k(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl_c() -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL))
}

fn press(m: &mut Model, code: KeyCode) -> Option<Cmd> {
    update(m, k(code))
}

fn ch(m: &mut Model, c: char) -> Option<Cmd> {
    press(m, KeyCode::Char(c))
}

/// Types `s`, asserting that no key returns a command.
fn type_str(m: &mut Model, s: &str) {
    for c in s.chars() {
        assert!(ch(m, c).is_none(), "typing {c:?} returned a command");
    }
}

fn path(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// Home with the fixture disks, after a tick.
fn home() -> Model {
    let mut m = Model::default();
    assert!(update(&mut m, Msg::Devices(Ok(disks()))).is_none());
    assert!(update(&mut m, Msg::Tick(Instant::now(), UNIX)).is_none());
    m
}

/// An image store on `disk` (none: a folder given on the command line).
fn storage(disk: Option<&str>) -> Storage {
    Storage {
        dir: path("/mnt/store/images"),
        device: disk.map(|d| path(&format!("{d}1"))),
        disk: disk.map(path),
        fs: Some("ext4".into()),
        label: Some("STORE".into()),
    }
}

/// Home with a store on `disk` and these images.
fn home_with(disk: Option<&str>, images: Vec<ImageEntry>) -> Model {
    let mut m = home();
    m.storage = Some(storage(disk));
    m.images = images;
    m
}

/// An image of `of`, in chain `chain`.
fn entry(file: &str, of: &DiskReport, full: bool, chain: &str, created: u64) -> ImageEntry {
    ImageEntry {
        found: Found {
            path: path(file),
            image_id: format!("{created:032x}"),
            kind: if full {
                crate::image::ImageKind::Full
            } else {
                crate::image::ImageKind::Incremental
            },
            created_unix: created,
            full,
            parent_id: (!full).then(|| "00".repeat(16)),
            disk: DiskIdentity::of_report(of),
            chain_name: chain.into(),
            packed: false,
        },
        file_bytes: 1 << 30,
    }
}

/// Images of two chains, deliberately out of order: "pc" (of sda) and "laptop" (of nvme).
fn two_chains() -> Vec<ImageEntry> {
    let d = disks();
    vec![
        entry("/mnt/store/images/pc-incr-2.lbi", &d[SDA], false, "pc", 300),
        entry(
            "/mnt/store/images/laptop.lbi",
            &d[NVME],
            true,
            "laptop",
            500,
        ),
        entry("/mnt/store/images/pc.lbi", &d[SDA], true, "pc", 100),
        entry("/mnt/store/images/pc-incr-1.lbi", &d[SDA], false, "pc", 200),
    ]
}

fn failure(what: &str, does_not_fit: bool) -> Failure {
    Failure {
        what: what.into(),
        causes: vec![
            format!("{what}: the first cause"),
            "the second cause".into(),
        ],
        advice: "Do something else.".into(),
        does_not_fit,
        cancelled: false,
        wipes_target: false,
        unreadable: None,
    }
}

fn image_wiz(m: &Model) -> &ImageWiz {
    match &m.screen {
        Screen::Image(w) => w,
        s => panic!("expected the image wizard, got {s:?}"),
    }
}

fn restore_wiz(m: &Model) -> &RestoreWiz {
    match &m.screen {
        Screen::Restore(w) => w,
        s => panic!("expected the restore wizard, got {s:?}"),
    }
}

fn clone_wiz(m: &Model) -> &super::screens::clone::CloneWiz {
    match &m.screen {
        Screen::Clone(w) => w,
        s => panic!("expected the clone wizard, got {s:?}"),
    }
}

fn running(m: &Model) -> &super::screens::progress::Running {
    match &m.screen {
        Screen::Running(r) => r,
        s => panic!("expected the progress screen, got {s:?}"),
    }
}

fn done(m: &Model) -> &super::screens::done::Done {
    match &m.screen {
        Screen::Done(d) => d,
        s => panic!("expected the result screen, got {s:?}"),
    }
}

fn plan_req(c: Option<Cmd>) -> JobRequest {
    match c {
        Some(Cmd::Plan(r)) => r,
        other => panic!("expected Cmd::Plan, got {other:?}"),
    }
}

fn is_home(m: &Model) -> bool {
    matches!(m.screen, Screen::Home)
}

/// A running job (a verify of a fixture path), with a known start time.
fn running_model() -> (Model, Instant) {
    let mut m = home_with(None, two_chains());
    let t0 = Instant::now();
    update(&mut m, Msg::Tick(t0, UNIX));
    assert!(ch(&mut m, 'v').is_none());
    let c = press(&mut m, KeyCode::Enter);
    assert!(matches!(c, Some(Cmd::Verify(_))), "{c:?}");
    (m, t0)
}

/// Real plans, made with the loop's own `plan()` on sparse files (no root, no host disk).
struct Plans {
    _dir: tempfile::TempDir,
    image: Planned,
    restore: Planned,
    clone: Planned,
    /// The image the restore plan reads.
    lbi: PathBuf,
}

fn sparse(p: &Path, len: u64) {
    std::fs::File::create(p).unwrap().set_len(len).unwrap();
}

impl Plans {
    fn new() -> Plans {
        use crate::jobs::{image, CancelToken, Reporter};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let src = d.join("source.img");
        sparse(&src, 4 << 20);
        let image = super::exec::plan(&JobRequest::Image {
            source: src.clone(),
            dir: d.to_path_buf(),
            name: "disk".into(),
            kind: ImageKind::Full,
            level: 3,
            rescue: false,
            full_swap: false,
            passphrase: None,
            recovery_key: false,
            dedup: false,
        })
        .unwrap();
        let Planned::Image(p) = &image else {
            panic!("not an image plan: {image:?}")
        };
        image::run(p, &Reporter::silent(), &CancelToken::new()).unwrap();
        let lbi = p.output.clone();
        let restore = super::exec::plan(&JobRequest::Restore {
            image: lbi.clone(),
            target: d.join("restored.img"),
            grow_last: false,
            new_disk_id: false,
            fit: false,
        })
        .unwrap();
        let clone = super::exec::plan(&JobRequest::Clone {
            source: src,
            target: d.join("cloned.img"),
            grow_last: false,
            new_disk_id: false,
            fit: false,
        })
        .unwrap();
        Plans {
            _dir: dir,
            image,
            restore,
            clone,
            lbi,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Home

#[test]
fn home_cursor_stays_within_the_disks() {
    // (name, keys, selected afterwards)
    let cases: &[(&str, &[KeyCode], usize)] = &[
        ("down", &[KeyCode::Down], 1),
        ("j", &[KeyCode::Char('j')], 1),
        ("down past the end", &[KeyCode::Down; 5], 2),
        ("up at the top", &[KeyCode::Up], 0),
        (
            "k after two downs",
            &[KeyCode::Down, KeyCode::Down, KeyCode::Char('k')],
            1,
        ),
        ("end", &[KeyCode::End], 2),
        ("end then home", &[KeyCode::End, KeyCode::Home], 0),
    ];
    for (name, keys, want) in cases {
        let mut m = home();
        for &c in *keys {
            assert!(press(&mut m, c).is_none(), "{name}");
        }
        assert_eq!(m.selected, *want, "{name}");
        assert!(is_home(&m), "{name}");
    }
}

#[test]
fn home_enter_opens_details_and_esc_enter_or_q_go_back() {
    for back in [KeyCode::Esc, KeyCode::Enter, KeyCode::Char('q')] {
        let mut m = home();
        press(&mut m, KeyCode::Down);
        assert!(press(&mut m, KeyCode::Enter).is_none());
        assert!(matches!(m.screen, Screen::Details), "{back:?}");
        // other keys stay on the details
        assert!(press(&mut m, KeyCode::Down).is_none());
        assert!(ch(&mut m, 'i').is_none());
        assert!(matches!(m.screen, Screen::Details), "{back:?}");
        // q on Details goes back rather than quitting
        assert!(press(&mut m, back).is_none(), "{back:?}");
        assert!(is_home(&m), "{back:?}");
        assert_eq!(m.selected, 1, "{back:?}");
    }
}

#[test]
fn home_enter_without_disks_stays_home() {
    let mut m = Model::default();
    update(&mut m, Msg::Devices(Ok(vec![])));
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert!(is_home(&m));
    for c in [KeyCode::Down, KeyCode::End, KeyCode::Up] {
        press(&mut m, c);
        assert_eq!(m.selected, 0);
    }
}

#[test]
fn home_rescan_starts_once_while_scanning() {
    for key in [KeyCode::F(5), KeyCode::Char('R')] {
        let mut m = home();
        assert!(!m.scanning);
        assert!(matches!(press(&mut m, key), Some(Cmd::Rescan)), "{key:?}");
        assert!(m.scanning);
        assert!(press(&mut m, key).is_none(), "{key:?}: a second scan");
        assert!(press(&mut m, KeyCode::F(5)).is_none());
        // the scan's answer ends it, and a new one may start
        update(&mut m, Msg::Devices(Ok(disks())));
        assert!(!m.scanning);
        assert!(matches!(press(&mut m, key), Some(Cmd::Rescan)), "{key:?}");
        update(&mut m, Msg::Devices(Err("reading /sys/block: gone".into())));
        assert!(!m.scanning);
        assert_eq!(m.scan_error.as_deref(), Some("reading /sys/block: gone"));
        assert_eq!(m.disks.len(), 3, "a failed scan keeps the last disks");
        update(&mut m, Msg::Devices(Ok(disks())));
        assert_eq!(m.scan_error, None);
    }
}

#[test]
fn home_q_quits_and_a_stray_esc_does_not() {
    let mut m = home();
    assert!(matches!(press(&mut m, KeyCode::Char('q')), Some(Cmd::Quit)));
    // an arrow key whose bytes came apart on a serial line: Esc, then '[' and 'B'
    let mut m = home();
    for key in [KeyCode::Esc, KeyCode::Char('['), KeyCode::Char('B')] {
        assert!(press(&mut m, key).is_none(), "{key:?}");
    }
    assert!(is_home(&m) && !m.help && m.ask.is_none());
}

#[test]
fn home_x_opens_a_shell() {
    let mut m = home();
    assert!(matches!(ch(&mut m, 'x'), Some(Cmd::Shell)));
    assert!(is_home(&m));
}

#[test]
fn home_unknown_keys_do_nothing() {
    for c in [
        KeyCode::Char('z'),
        KeyCode::Tab,
        KeyCode::Left,
        KeyCode::F(2),
    ] {
        let mut m = home();
        assert!(press(&mut m, c).is_none(), "{c:?}");
        assert!(is_home(&m) && m.ask.is_none() && !m.help, "{c:?}");
    }
}

#[test]
fn key_releases_are_ignored() {
    let mut m = home();
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert!(update(&mut m, Msg::Key(release)).is_none());
    release.code = KeyCode::Down;
    assert!(update(&mut m, Msg::Key(release)).is_none());
    assert_eq!(m.selected, 0);
    assert!(is_home(&m));
}

#[test]
fn ctrl_c_quits_except_on_the_progress_screen() {
    // (name, model)
    let mut details = home();
    press(&mut details, KeyCode::Enter);
    let mut storage = home();
    ch(&mut storage, 'i');
    let mut wizard = home_with(None, vec![]);
    ch(&mut wizard, 'i');
    press(&mut wizard, KeyCode::Enter);
    press(&mut wizard, KeyCode::Down); // the name field: letters are typed
    let mut clone = home();
    ch(&mut clone, 'c');
    let cases = [
        ("home", home()),
        ("details", details),
        ("storage", storage),
        ("image name field", wizard),
        ("clone", clone),
    ];
    for (name, mut m) in cases {
        assert!(
            matches!(update(&mut m, ctrl_c()), Some(Cmd::Quit)),
            "{name}"
        );
    }
    let (mut m, _) = running_model();
    assert!(update(&mut m, ctrl_c()).is_none());
    assert_eq!(m.ask, Some(Ask::Cancel));
}

#[test]
fn help_opens_with_question_mark_or_f1_and_any_key_closes_it_without_acting() {
    // (opening key, closing key)
    let cases = [
        (KeyCode::Char('?'), KeyCode::Char('q')),
        (KeyCode::F(1), KeyCode::Enter),
        (KeyCode::Char('?'), KeyCode::Char('i')),
        (KeyCode::Char('?'), KeyCode::Down),
        (KeyCode::Char('?'), KeyCode::Esc),
        (KeyCode::Char('?'), KeyCode::Char('?')),
    ];
    for (open, close) in cases {
        let mut m = home();
        m.rescue = true;
        assert!(press(&mut m, open).is_none());
        assert!(m.help, "{open:?}");
        assert!(press(&mut m, close).is_none(), "{close:?} acted");
        assert!(!m.help, "{close:?}");
        assert!(is_home(&m), "{close:?}");
        assert_eq!(m.selected, 0, "{close:?}");
        assert!(m.ask.is_none());
    }
    // Ctrl-C closes help rather than quitting
    let mut m = home();
    ch(&mut m, '?');
    assert!(update(&mut m, ctrl_c()).is_none());
    assert!(!m.help);
}

#[test]
fn help_also_opens_in_wizards_but_not_in_text_fields() {
    let mut m = home_with(None, vec![]);
    ch(&mut m, 'i');
    ch(&mut m, '?');
    assert!(m.help, "on the image source list");
    ch(&mut m, 'x');
    assert!(!m.help);
    assert_eq!(image_wiz(&m).step, ImageStep::Source);
    press(&mut m, KeyCode::Enter);
    press(&mut m, KeyCode::Down);
    let name = image_wiz(&m).name.clone();
    ch(&mut m, '?');
    assert!(!m.help, "? in the name field is a (refused) letter");
    assert_eq!(image_wiz(&m).name, name);
}

#[test]
fn power_off_and_reboot_are_offered_only_in_the_rescue_system() {
    // (key, ask)
    for (key, ask) in [('p', Ask::PowerOff), ('b', Ask::Reboot)] {
        let mut m = home();
        assert!(ch(&mut m, key).is_none());
        assert_eq!(m.ask, None, "{key} outside rescue");

        let mut m = home();
        m.rescue = true;
        assert!(ch(&mut m, key).is_none());
        assert_eq!(m.ask, Some(ask));
        // keys other than yes and no leave the question open, and do nothing else
        assert!(ch(&mut m, 'q').is_none());
        assert!(press(&mut m, KeyCode::Down).is_none());
        assert_eq!(m.ask, Some(ask));
        assert_eq!(m.selected, 0);
        // y or Y
        for yes in ['y', 'Y'] {
            let mut y = m.clone();
            let c = ch(&mut y, yes);
            match ask {
                Ask::PowerOff => assert!(matches!(c, Some(Cmd::PowerOff)), "{c:?}"),
                _ => assert!(matches!(c, Some(Cmd::Reboot)), "{c:?}"),
            }
            assert_eq!(y.ask, None);
        }
        // n, N, Esc and Enter dismiss
        for no in [
            KeyCode::Char('n'),
            KeyCode::Char('N'),
            KeyCode::Esc,
            KeyCode::Enter,
        ] {
            let mut n = m.clone();
            assert!(press(&mut n, no).is_none(), "{no:?}");
            assert_eq!(n.ask, None, "{no:?}");
            assert!(is_home(&n), "{no:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Storage

#[test]
fn wizards_needing_storage_choose_it_first() {
    // (key, what opens afterwards)
    let cases = [
        ('i', Some(Action::Image)),
        ('r', Some(Action::Restore)),
        ('v', Some(Action::Verify)),
        ('s', None),
    ];
    for (key, then) in cases {
        let mut m = home();
        assert!(ch(&mut m, key).is_none());
        match &m.screen {
            Screen::Storage { cursor: 0, then: t } => assert_eq!(*t, then, "{key}"),
            s => panic!("{key}: {s:?}"),
        }
    }
    // cloning needs no storage
    let mut m = home();
    ch(&mut m, 'c');
    assert_eq!(clone_wiz(&m).step, CloneStep::Source);
}

#[test]
fn wizards_open_directly_once_storage_is_chosen() {
    let mut m = home_with(None, vec![]);
    ch(&mut m, 'i');
    assert_eq!(image_wiz(&m).level, 3);
    assert_eq!(image_wiz(&m).step, ImageStep::Source);
    let mut m = home_with(None, vec![]);
    ch(&mut m, 'r');
    assert_eq!(restore_wiz(&m).step, RestoreStep::Image);
    let mut m = home_with(None, vec![]);
    ch(&mut m, 'v');
    assert!(matches!(m.screen, Screen::Verify { cursor: 0 }));
    // s still offers to change it
    let mut m = home_with(None, vec![]);
    ch(&mut m, 's');
    assert!(matches!(m.screen, Screen::Storage { then: None, .. }));
}

#[test]
fn storage_ready_opens_the_wizard_that_asked_for_it() {
    for key in ['i', 'r', 'v', 's'] {
        let mut m = home();
        ch(&mut m, key);
        assert!(matches!(
            press(&mut m, KeyCode::Enter),
            Some(Cmd::MountStorage(_))
        ));
        assert!(m.busy.is_some());
        m.images_error = Some("stale".into());
        let st = storage(Some("/dev/sda"));
        let r = update(
            &mut m,
            Msg::StorageReady(Ok((st.clone(), Listing::of(two_chains())))),
        );
        assert!(r.is_none());
        assert_eq!(m.busy, None, "{key}");
        assert_eq!(m.storage, Some(st), "{key}");
        assert_eq!(m.images.len(), 4, "{key}");
        assert_eq!(m.images_error, None, "{key}");
        match (key, &m.screen) {
            ('i', Screen::Image(w)) => {
                assert_eq!(w.step, ImageStep::Source);
                assert_eq!(w.level, 3);
            }
            ('r', Screen::Restore(w)) => assert_eq!(w.step, RestoreStep::Image),
            ('v', Screen::Verify { cursor: 0 }) => {}
            ('s', Screen::Home) => {}
            (key, s) => panic!("{key}: {s:?}"),
        }
    }
}

#[test]
fn storage_failure_is_an_overlay_that_enter_or_esc_closes() {
    for close in [KeyCode::Enter, KeyCode::Esc] {
        let mut m = home();
        ch(&mut m, 'r');
        press(&mut m, KeyCode::Enter);
        let f = failure("mounting /dev/sda1", false);
        assert!(update(&mut m, Msg::StorageReady(Err(f.clone()))).is_none());
        assert_eq!(m.busy, None);
        assert_eq!(m.failure, Some(f));
        assert_eq!(m.storage, None);
        assert!(matches!(m.screen, Screen::Storage { .. }));
        // the overlay swallows other keys
        assert!(press(&mut m, KeyCode::Down).is_none());
        assert!(ch(&mut m, 'q').is_none());
        assert!(m.failure.is_some());
        assert!(matches!(
            m.screen,
            Screen::Storage {
                cursor: 0,
                then: Some(Action::Restore)
            }
        ));
        assert!(press(&mut m, close).is_none(), "{close:?}");
        assert_eq!(m.failure, None, "{close:?}");
        // still on Storage, and Esc goes home from there
        assert!(matches!(m.screen, Screen::Storage { .. }), "{close:?}");
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert!(is_home(&m));
    }
    // Ctrl-C closes the overlay and does not quit
    let mut m = home();
    m.failure = Some(failure("x", false));
    assert!(update(&mut m, ctrl_c()).is_none());
    assert_eq!(m.failure, None);
}

#[test]
fn storage_choices_of_the_fixture_are_the_ssd_filesystems_in_disk_order() {
    let got: Vec<(PathBuf, &str, Option<String>)> = store_choices(&disks())
        .into_iter()
        .map(|c| {
            assert_eq!(c.disk, path("/dev/sda"));
            assert!(!c.removable);
            (c.device, c.fs, c.label)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (path("/dev/sda1"), "vfat", Some("ESP".into())),
            (path("/dev/sda2"), "ext4", Some("root".into())),
            (path("/dev/sda3"), "ntfs", Some("Data".into())),
        ]
    );
}

#[test]
fn storage_enter_mounts_the_highlighted_choice_and_waits() {
    let choices = store_choices(&disks());
    for (downs, want) in [(0, 0), (1, 1), (2, 2), (9, 2)] {
        let mut m = home();
        ch(&mut m, 'i');
        for _ in 0..downs {
            assert!(press(&mut m, KeyCode::Down).is_none());
        }
        match press(&mut m, KeyCode::Enter) {
            Some(Cmd::MountStorage(c)) => assert_eq!(c, choices[want], "{downs} downs"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            m.busy.as_deref(),
            Some(format!("Mounting {}...", choices[want].device.display()).as_str())
        );
        // keys wait for the answer, except Esc and Ctrl-C, which stop waiting
        for c in [
            KeyCode::Enter,
            KeyCode::Up,
            KeyCode::Char('q'),
            KeyCode::Char('?'),
        ] {
            assert!(press(&mut m, c).is_none(), "{c:?} while busy");
            assert!(m.busy.is_some());
        }
        assert!(!m.help);
        let mut esc = m.clone();
        assert!(press(&mut esc, KeyCode::Esc).is_none());
        assert!(esc.busy.is_none());
        assert!(
            update(&mut m, ctrl_c()).is_none(),
            "Ctrl-C does not quit while waiting"
        );
        assert!(m.busy.is_none());
        match &m.screen {
            Screen::Storage { cursor, then } => {
                assert_eq!(*cursor, want);
                assert_eq!(*then, Some(Action::Image));
            }
            s => panic!("{s:?}"),
        }
    }
}

#[test]
fn storage_busy_text_names_the_mountpoint_of_a_mounted_choice() {
    let mut m = home();
    m.disks[SDA].partitions[1].mountpoint = Some(path("/media/root"));
    ch(&mut m, 's');
    press(&mut m, KeyCode::Down);
    assert!(
        matches!(press(&mut m, KeyCode::Enter), Some(Cmd::MountStorage(c)) if c.mountpoint == Some(path("/media/root")))
    );
    assert_eq!(
        m.busy.as_deref(),
        Some("Looking for images in /media/root...")
    );
}

#[test]
fn storage_cursor_rescan_and_esc() {
    let mut m = home();
    ch(&mut m, 'v');
    press(&mut m, KeyCode::End);
    assert!(matches!(m.screen, Screen::Storage { cursor: 2, .. }));
    press(&mut m, KeyCode::Char('k'));
    assert!(matches!(m.screen, Screen::Storage { cursor: 1, .. }));
    assert!(matches!(press(&mut m, KeyCode::F(5)), Some(Cmd::Rescan)));
    assert!(m.scanning);
    assert!(ch(&mut m, 'R').is_none(), "one scan at a time");
    assert!(ch(&mut m, 'q').is_none(), "q does not quit from Storage");
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
}

#[test]
fn storage_without_choices_ignores_enter() {
    let mut m = Model::default();
    update(&mut m, Msg::Devices(Ok(vec![disks().remove(NVME)])));
    ch(&mut m, 'i');
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(m.busy, None);
}

// ---------------------------------------------------------------------------------------------
// Image wizard

#[test]
fn image_sources_leave_out_the_boot_medium_and_the_storage_disk() {
    // (store on, sources)
    let cases: [(Option<&str>, Vec<usize>); 3] = [
        (None, vec![SDA, NVME]),
        (Some("/dev/sda"), vec![NVME]),
        (Some("/dev/nvme0n1"), vec![SDA]),
    ];
    for (disk, want) in cases {
        let m = home_with(disk, vec![]);
        assert_eq!(sources(&m), want, "{disk:?}");
        assert_eq!(targets(&m, None), want, "{disk:?}");
    }
    // the boot medium is never offered, even with no store
    assert!(!sources(&home()).contains(&SDB));
}

#[test]
fn image_source_enter_goes_to_options_with_a_suggested_name() {
    // (store on, downs, source, name)
    let cases = [
        (None, 0, "/dev/sda", "sda-Samsung-SSD-860-20231114"),
        (None, 1, "/dev/nvme0n1", "nvme0n1-WD-Blue-SN570-20231114"),
        (None, 5, "/dev/nvme0n1", "nvme0n1-WD-Blue-SN570-20231114"),
        (
            Some("/dev/sda"),
            0,
            "/dev/nvme0n1",
            "nvme0n1-WD-Blue-SN570-20231114",
        ),
    ];
    for (disk, downs, source, name) in cases {
        let mut m = home_with(disk, vec![]);
        ch(&mut m, 'i');
        for _ in 0..downs {
            press(&mut m, KeyCode::Down);
        }
        assert!(press(&mut m, KeyCode::Enter).is_none());
        let w = image_wiz(&m);
        assert_eq!(w.step, ImageStep::Options, "{source}");
        assert_eq!(w.source, Some(path(source)));
        assert_eq!(w.name, name);
        assert_eq!(w.kind, ImageKind::Full);
        assert_eq!(w.level, 3);
        assert_eq!(w.cursor, 0);
    }
}

#[test]
fn image_source_enter_with_no_sources_does_nothing() {
    let mut m = Model {
        storage: Some(storage(None)),
        ..Model::default()
    };
    update(&mut m, Msg::Devices(Ok(vec![disks().remove(SDB)])));
    ch(&mut m, 'i');
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(image_wiz(&m).step, ImageStep::Source);
}

/// Options of `source` with these images in the store; returns the model on Options.
fn image_options(images: Vec<ImageEntry>, source: usize) -> Model {
    let mut m = home_with(None, images);
    ch(&mut m, 'i');
    let at = sources(&m).iter().position(|&i| i == source).unwrap();
    for _ in 0..at {
        press(&mut m, KeyCode::Down);
    }
    press(&mut m, KeyCode::Enter);
    assert_eq!(image_wiz(&m).step, ImageStep::Options);
    assert_eq!(image_wiz(&m).source, Some(m.disks[source].path.clone()));
    m
}

fn kinds_after(m: &mut Model, code: KeyCode, n: usize) -> Vec<ImageKind> {
    (0..n)
        .map(|_| {
            assert!(press(m, code).is_none());
            image_wiz(m).kind
        })
        .collect()
}

#[test]
fn image_kind_offers_children_only_with_a_full_image_of_the_disk() {
    use ImageKind::{Differential as D, Full as F, Incremental as I};
    let d = disks();
    // (name, images, source, default kind, after Right x3, after Left x3)
    let cases = [
        ("no images", vec![], SDA, F, [F, F, F], [F, F, F]),
        (
            "a full image of sda",
            vec![entry("/s/pc.lbi", &d[SDA], true, "pc", 1)],
            SDA,
            I,
            [D, F, I],
            [F, D, I],
        ),
        ("a chain of sda", two_chains(), SDA, I, [D, F, I], [F, D, I]),
        (
            "a full image of another disk",
            vec![entry("/s/laptop.lbi", &d[NVME], true, "laptop", 1)],
            SDA,
            F,
            [F, F, F],
            [F, F, F],
        ),
        (
            "only a child image of sda (its full image is elsewhere)",
            vec![entry("/s/pc-incr.lbi", &d[SDA], false, "pc", 1)],
            SDA,
            F,
            [F, F, F],
            [F, F, F],
        ),
    ];
    for (name, images, source, default, right, left) in cases {
        let mut m = image_options(images.clone(), source);
        assert_eq!(image_wiz(&m).kind, default, "{name}: default");
        assert_eq!(
            kinds_after(&mut m, KeyCode::Right, 3),
            right,
            "{name}: right"
        );
        let mut m = image_options(images, source);
        assert_eq!(kinds_after(&mut m, KeyCode::Left, 3), left, "{name}: left");
    }
}

#[test]
fn image_identity_follows_the_disk_not_the_path() {
    // the same SSD, now seen as /dev/sdc: its serial and model still match
    let mut moved = disks()[SDA].clone();
    moved.path = path("/dev/sdc");
    let images = vec![entry("/s/pc.lbi", &moved, true, "pc", 1)];
    let m = image_options(images, SDA);
    assert_eq!(image_wiz(&m).kind, ImageKind::Incremental);
    // a disk of another model with the same serial is another disk
    let mut other = disks()[SDA].clone();
    other.model = Some("Other".into());
    let m = image_options(vec![entry("/s/pc.lbi", &other, true, "pc", 1)], SDA);
    assert_eq!(image_wiz(&m).kind, ImageKind::Full);
}

#[test]
fn image_options_cursor_moves_over_seven_fields() {
    let mut m = image_options(vec![], SDA);
    // (key, cursor afterwards)
    let steps = [
        (KeyCode::Up, 0),
        (KeyCode::Down, 1),
        (KeyCode::Tab, 2),
        (KeyCode::Down, 3),
        (KeyCode::Tab, 4),
        (KeyCode::Down, 5),
        (KeyCode::Down, 6),
        (KeyCode::Down, 6),
        (KeyCode::Up, 5),
        (KeyCode::Up, 4),
        (KeyCode::Up, 3),
        (KeyCode::Up, 2),
        (KeyCode::Up, 1),
        (KeyCode::Up, 0),
        (KeyCode::Up, 0),
    ];
    for (key, want) in steps {
        assert!(press(&mut m, key).is_none());
        assert_eq!(image_wiz(&m).cursor, want, "{key:?}");
    }
}

#[test]
fn the_swap_field_asks_for_full_swap_areas() {
    let mut m = image_options(vec![], SDA);
    for _ in 0..4 {
        press(&mut m, KeyCode::Down);
    }
    assert!(!image_wiz(&m).full_swap);
    press(&mut m, KeyCode::Right);
    assert!(image_wiz(&m).full_swap);
    press(&mut m, KeyCode::Left);
    assert!(!image_wiz(&m).full_swap);
    press(&mut m, KeyCode::Right);
    let req = press(&mut m, KeyCode::Enter);
    assert!(
        matches!(
            req,
            Some(Cmd::Plan(JobRequest::Image {
                full_swap: true,
                ..
            }))
        ),
        "{req:?}"
    );
}

#[test]
fn image_level_stays_within_1_to_19() {
    let mut m = image_options(vec![], SDA);
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Down);
    // (key, presses, level afterwards)
    let steps = [
        (KeyCode::Left, 1, 2),
        (KeyCode::Left, 1, 1),
        (KeyCode::Left, 5, 1),
        (KeyCode::Right, 1, 2),
        (KeyCode::Right, 16, 18),
        (KeyCode::Right, 1, 19),
        (KeyCode::Right, 10, 19),
        (KeyCode::Left, 1, 18),
    ];
    for (key, n, want) in steps {
        for _ in 0..n {
            assert!(press(&mut m, key).is_none());
        }
        assert_eq!(image_wiz(&m).level, want, "{key:?} x{n}");
        assert_eq!(
            image_wiz(&m).kind,
            ImageKind::Full,
            "the level field is not the kind"
        );
    }
}

#[test]
fn image_name_takes_letters_digits_dash_underscore_and_dot() {
    let mut m = image_options(vec![], SDA);
    let suggested = image_wiz(&m).name.clone();
    // letters outside the name field are not typed
    ch(&mut m, 'a');
    assert_eq!(image_wiz(&m).name, suggested);
    press(&mut m, KeyCode::Down);
    for _ in 0..suggested.len() + 3 {
        assert!(press(&mut m, KeyCode::Backspace).is_none());
    }
    assert_eq!(image_wiz(&m).name, "");
    type_str(&mut m, "My-disk_2.v1");
    assert_eq!(image_wiz(&m).name, "My-disk_2.v1");
    // refused: path separators, spaces, shell characters, non-ASCII
    type_str(&mut m, "/ \\:*?\"<>|é$~");
    assert_eq!(image_wiz(&m).name, "My-disk_2.v1");
    // keys that mean something elsewhere are letters here
    type_str(&mut m, "qjkRcvx");
    assert_eq!(image_wiz(&m).name, "My-disk_2.v1qjkRcvx");
    assert!(!m.help);
    press(&mut m, KeyCode::Backspace);
    assert_eq!(image_wiz(&m).name, "My-disk_2.v1qjkRcv");
    // Left and Right change neither kind nor level on the name field
    press(&mut m, KeyCode::Left);
    press(&mut m, KeyCode::Right);
    assert_eq!(image_wiz(&m).kind, ImageKind::Full);
    assert_eq!(image_wiz(&m).level, 3);
    // at most 80 characters
    for _ in 0..100 {
        ch(&mut m, 'z');
    }
    assert_eq!(image_wiz(&m).name.len(), 80);
}

#[test]
fn image_enter_plans_with_the_chosen_options_and_waits() {
    let mut m = image_options(vec![], SDA);
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Right);
    press(&mut m, KeyCode::Up);
    for _ in 0..8 {
        press(&mut m, KeyCode::Backspace); // "-20231114"
    }
    press(&mut m, KeyCode::Backspace);
    type_str(&mut m, "-weekly");
    let req = plan_req(press(&mut m, KeyCode::Enter));
    assert_eq!(
        req,
        JobRequest::Image {
            source: path("/dev/sda"),
            dir: path("/mnt/store/images"),
            name: "sda-Samsung-SSD-860-weekly".into(),
            kind: ImageKind::Full,
            level: 4,
            rescue: false,
            full_swap: false,
            passphrase: None,
            recovery_key: false,
            dedup: false,
        }
    );
    assert_eq!(
        m.busy.as_deref(),
        Some("Reading /dev/sda and its filesystems...")
    );
    // keys wait for the plan, except Esc, which stops waiting (the loop drops the late
    // answer)
    for c in [KeyCode::Enter, KeyCode::Backspace, KeyCode::Char('x')] {
        assert!(press(&mut m, c).is_none());
        assert!(m.busy.is_some(), "{c:?} waits");
    }
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(m.busy.is_none(), "Esc stops waiting");
    assert_eq!(image_wiz(&m).step, ImageStep::Options);
    assert_eq!(image_wiz(&m).name, "sda-Samsung-SSD-860-weekly");
}

#[test]
fn image_enter_plans_a_child_of_the_chain() {
    let mut m = image_options(two_chains(), SDA);
    press(&mut m, KeyCode::Right);
    let req = plan_req(press(&mut m, KeyCode::Enter));
    assert!(
        matches!(
            req,
            JobRequest::Image {
                kind: ImageKind::Differential,
                level: 3,
                ..
            }
        ),
        "{req:?}"
    );
}

#[test]
fn image_enter_without_a_name_goes_to_the_name_field() {
    for name in ["", ".", "..."] {
        let mut m = image_options(vec![], SDA);
        press(&mut m, KeyCode::Down);
        while !image_wiz(&m).name.is_empty() {
            press(&mut m, KeyCode::Backspace);
        }
        type_str(&mut m, name);
        press(&mut m, KeyCode::Down); // leave the field
        assert!(press(&mut m, KeyCode::Enter).is_none(), "{name:?}");
        assert_eq!(image_wiz(&m).cursor, 1, "{name:?}");
        assert_eq!(m.busy, None);
    }
    // a child image is named after its chain: no name needed
    let mut m = image_options(two_chains(), SDA);
    press(&mut m, KeyCode::Down);
    while !image_wiz(&m).name.is_empty() {
        press(&mut m, KeyCode::Backspace);
    }
    press(&mut m, KeyCode::Up);
    assert_eq!(image_wiz(&m).kind, ImageKind::Incremental);
    assert!(matches!(
        plan_req(press(&mut m, KeyCode::Enter)),
        JobRequest::Image {
            kind: ImageKind::Incremental,
            ..
        }
    ));
}

#[test]
fn image_plan_refusal_is_an_overlay_on_the_options() {
    for does_not_fit in [false, true] {
        let mut m = image_options(vec![], SDA);
        plan_req(press(&mut m, KeyCode::Enter));
        let f = failure("planning the image", does_not_fit);
        assert!(update(&mut m, Msg::Planned(Err(f.clone()))).is_none());
        assert_eq!(m.busy, None);
        assert_eq!(m.failure, Some(f));
        assert_eq!(image_wiz(&m).step, ImageStep::Options);
        press(&mut m, KeyCode::Enter);
        assert_eq!(m.failure, None);
        assert_eq!(image_wiz(&m).step, ImageStep::Options);
        // and the user can try again
        plan_req(press(&mut m, KeyCode::Enter));
    }
}

#[test]
fn image_esc_goes_back_one_step_at_a_time() {
    let plans = Plans::new();
    let mut m = image_options(vec![], NVME);
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Down);
    press(&mut m, KeyCode::Right); // level 4
    plan_req(press(&mut m, KeyCode::Enter));
    update(&mut m, Msg::Planned(Ok(plans.image.clone())));
    assert_eq!(m.busy, None);
    assert_eq!(image_wiz(&m).step, ImageStep::Confirm);
    assert!(image_wiz(&m).plan.is_some());
    // other keys do nothing on Confirm
    for c in [KeyCode::Down, KeyCode::Char('q'), KeyCode::Left] {
        assert!(press(&mut m, c).is_none());
        assert_eq!(image_wiz(&m).step, ImageStep::Confirm);
    }
    // Confirm -> Options, keeping the options
    assert!(press(&mut m, KeyCode::Esc).is_none());
    let w = image_wiz(&m);
    assert_eq!(w.step, ImageStep::Options);
    assert!(w.plan.is_none());
    assert_eq!(w.level, 4);
    assert_eq!(w.source, Some(path("/dev/nvme0n1")));
    // Options -> Source, the cursor on the chosen disk
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert_eq!(image_wiz(&m).step, ImageStep::Source);
    assert_eq!(image_wiz(&m).cursor, 1);
    // Source -> Home
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
}

#[test]
fn image_confirm_enter_starts_the_job() {
    let plans = Plans::new();
    let Planned::Image(p) = &plans.image else {
        unreachable!()
    };
    let mut m = image_options(vec![], SDA);
    plan_req(press(&mut m, KeyCode::Enter));
    update(&mut m, Msg::Planned(Ok(plans.image.clone())));
    let t = m.now.unwrap();
    match press(&mut m, KeyCode::Enter) {
        Some(Cmd::Start(Planned::Image(got))) => assert_eq!(got.output, p.output),
        other => panic!("{other:?}"),
    }
    let r = running(&m);
    assert_eq!(
        r.title,
        format!("Imaging {} into {}", p.source.display(), p.output.display())
    );
    assert_eq!(r.target, None, "an image writes no disk");
    assert_eq!((r.phase, r.total, r.done), (None, None, 0));
    assert_eq!((r.started, r.phase_started), (t, t));
    assert!(r.warnings.is_empty() && !r.cancelling);
}

#[test]
fn image_plan_for_another_wizard_is_ignored() {
    let plans = Plans::new();
    // (name, plan arriving on the image options)
    for (name, p) in [("restore", &plans.restore), ("clone", &plans.clone)] {
        let mut m = image_options(vec![], SDA);
        plan_req(press(&mut m, KeyCode::Enter));
        assert!(update(&mut m, Msg::Planned(Ok(p.clone()))).is_none());
        assert_eq!(m.busy, None, "{name}");
        assert_eq!(image_wiz(&m).step, ImageStep::Options, "{name}");
        assert!(image_wiz(&m).plan.is_none(), "{name}");
    }
    // and a plan arriving on Home (nothing open) changes nothing but busy
    let mut m = home();
    m.busy = Some("x".into());
    update(&mut m, Msg::Planned(Ok(plans.clone.clone())));
    assert!(is_home(&m));
    assert_eq!(m.busy, None);
}

#[test]
fn image_options_esc_after_the_source_disk_vanished() {
    let mut m = image_options(vec![], SDA);
    // a scan (F5 pressed just before 'i', or the one after a job) ends without sda
    let mut rest = disks();
    rest.remove(SDA);
    update(&mut m, Msg::Devices(Ok(rest)));
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert_eq!(
        image_wiz(&m).step,
        ImageStep::Source,
        "Esc should go back to the source list"
    );
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
}

// ---------------------------------------------------------------------------------------------
// Restore wizard

#[test]
fn image_list_groups_chains_by_name_oldest_first() {
    let images = two_chains();
    let d = disks();
    assert_eq!(
        image_rows(&images),
        vec![
            ImageRow::Chain(
                "laptop".into(),
                format!("{}, 931.5 GiB", d[NVME].model.as_deref().unwrap())
            ),
            ImageRow::Image(1),
            ImageRow::Chain(
                "pc".into(),
                format!("{}, 465.8 GiB", d[SDA].model.as_deref().unwrap())
            ),
            ImageRow::Image(2),
            ImageRow::Image(3),
            ImageRow::Image(0),
        ]
    );
    assert_eq!(image_order(&images), vec![1, 2, 3, 0]);
    assert!(image_rows(&[]).is_empty());
}

#[test]
fn restore_enter_picks_the_highlighted_image_in_list_order() {
    let images = two_chains();
    let order = image_order(&images);
    // (downs, list position)
    for (downs, at) in [(0, 0), (1, 1), (3, 3), (7, 3)] {
        let mut m = home_with(None, images.clone());
        ch(&mut m, 'r');
        for _ in 0..downs {
            assert!(press(&mut m, KeyCode::Char('j')).is_none());
        }
        assert!(press(&mut m, KeyCode::Enter).is_none());
        let w = restore_wiz(&m);
        assert_eq!(w.step, RestoreStep::Target, "{downs}");
        assert_eq!(
            w.image,
            Some(images[order[at]].found.path.clone()),
            "{downs}"
        );
        assert_eq!(w.cursor, 0);
        assert_eq!(w.over.does_not_fit, None);
    }
}

#[test]
fn restore_with_no_images_stays_on_the_list() {
    let mut m = home_with(None, vec![]);
    ch(&mut m, 'r');
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(restore_wiz(&m).step, RestoreStep::Image);
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
}

/// The restore wizard on Target, having picked the first image in list order.
fn restore_target(disk: Option<&str>) -> Model {
    let mut m = home_with(disk, two_chains());
    ch(&mut m, 'r');
    press(&mut m, KeyCode::Enter);
    assert_eq!(restore_wiz(&m).step, RestoreStep::Target);
    m
}

#[test]
fn restore_targets_leave_out_the_boot_medium_and_the_storage_disk() {
    // (store on, downs, target)
    let cases = [
        (None, 0, "/dev/sda"),
        (None, 1, "/dev/nvme0n1"),
        (None, 9, "/dev/nvme0n1"),
        (Some("/dev/sda"), 0, "/dev/nvme0n1"),
        (Some("/dev/sda"), 3, "/dev/nvme0n1"),
        (Some("/dev/nvme0n1"), 3, "/dev/sda"),
    ];
    for (disk, downs, want) in cases {
        let mut m = restore_target(disk);
        for _ in 0..downs {
            press(&mut m, KeyCode::Down);
        }
        match plan_req(press(&mut m, KeyCode::Enter)) {
            JobRequest::Restore { target, .. } => assert_eq!(target, path(want), "{disk:?}"),
            r => panic!("{r:?}"),
        }
    }
}

#[test]
fn restore_g_and_n_toggle_and_enter_plans_with_them() {
    // (keys, grow_last, new_disk_id)
    let cases: [(&str, bool, bool); 5] = [
        ("", false, false),
        ("g", true, false),
        ("n", false, true),
        ("gn", true, true),
        ("ggn", false, true),
    ];
    for (keys, grow, new_id) in cases {
        let mut m = restore_target(None);
        press(&mut m, KeyCode::Down);
        type_str(&mut m, keys);
        let w = restore_wiz(&m);
        assert_eq!(
            (w.over.grow_last, w.over.new_disk_id),
            (grow, new_id),
            "{keys:?}"
        );
        let req = plan_req(press(&mut m, KeyCode::Enter));
        assert_eq!(
            req,
            JobRequest::Restore {
                image: path("/mnt/store/images/laptop.lbi"),
                target: path("/dev/nvme0n1"),
                grow_last: grow,
                new_disk_id: new_id,
                fit: false,
            },
            "{keys:?}"
        );
        assert_eq!(restore_wiz(&m).over.target, Some(path("/dev/nvme0n1")));
        assert_eq!(
            m.busy.as_deref(),
            Some("Reading the image and checking the target...")
        );
        // keys wait for the plan
        assert!(ch(&mut m, 'g').is_none());
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert_eq!(restore_wiz(&m).over.grow_last, grow);
        assert_eq!(restore_wiz(&m).step, RestoreStep::Target);
    }
}

#[test]
fn restore_f_fits_and_clears_a_does_not_fit_box() {
    // (keys, fit)
    for (keys, fit) in [("f", true), ("ff", false), ("gf", true)] {
        let mut m = restore_target(None);
        plan_req(press(&mut m, KeyCode::Enter));
        update(
            &mut m,
            Msg::Planned(Err(failure("planning the restore", true))),
        );
        assert!(restore_wiz(&m).over.does_not_fit.is_some());
        type_str(&mut m, keys);
        let w = restore_wiz(&m);
        assert_eq!(w.over.fit, fit, "{keys:?}");
        // f asks for another try: the box goes away
        assert_eq!(w.over.does_not_fit, None, "{keys:?}");
        let req = plan_req(press(&mut m, KeyCode::Enter));
        match req {
            JobRequest::Restore { fit: f, .. } => assert_eq!(f, fit, "{keys:?}"),
            r => panic!("{r:?}"),
        }
    }
}

#[test]
fn restore_too_small_target_is_shown_inline_until_the_cursor_moves() {
    // (name, key that clears it)
    let cases = [
        ("down", KeyCode::Down),
        ("up", KeyCode::Up),
        ("k", KeyCode::Char('k')),
        ("end", KeyCode::End),
        ("esc", KeyCode::Esc),
    ];
    for (name, clear) in cases {
        let mut m = restore_target(None);
        plan_req(press(&mut m, KeyCode::Enter));
        let f = failure("planning the restore", true);
        assert!(update(&mut m, Msg::Planned(Err(f))).is_none());
        assert_eq!(m.busy, None);
        assert_eq!(m.failure, None, "{name}: not an overlay");
        let w = restore_wiz(&m);
        assert_eq!(w.step, RestoreStep::Target);
        assert_eq!(
            w.over.does_not_fit.as_deref(),
            Some("planning the restore: the first cause")
        );
        // toggles keep it
        ch(&mut m, 'g');
        assert!(restore_wiz(&m).over.does_not_fit.is_some(), "{name}");
        assert!(press(&mut m, clear).is_none());
        assert_eq!(restore_wiz(&m).over.does_not_fit, None, "{name}");
    }
    // trying another target clears it too
    let mut m = restore_target(None);
    plan_req(press(&mut m, KeyCode::Enter));
    update(&mut m, Msg::Planned(Err(failure("x", true))));
    plan_req(press(&mut m, KeyCode::Enter));
    assert_eq!(restore_wiz(&m).over.does_not_fit, None);
    // a refusal without causes still shows (an empty reason)
    let mut m = restore_target(None);
    plan_req(press(&mut m, KeyCode::Enter));
    let f = Failure {
        does_not_fit: true,
        ..Failure::default()
    };
    update(&mut m, Msg::Planned(Err(f)));
    assert_eq!(restore_wiz(&m).over.does_not_fit.as_deref(), Some(""));
}

#[test]
fn restore_other_plan_errors_are_an_overlay() {
    let mut m = restore_target(None);
    plan_req(press(&mut m, KeyCode::Enter));
    let f = failure("planning the restore", false);
    update(&mut m, Msg::Planned(Err(f.clone())));
    assert_eq!(m.failure, Some(f));
    assert_eq!(restore_wiz(&m).over.does_not_fit, None);
    assert_eq!(restore_wiz(&m).step, RestoreStep::Target);
    // the overlay takes the keys: Esc closes it and does not go back
    press(&mut m, KeyCode::Esc);
    assert_eq!(m.failure, None);
    assert_eq!(restore_wiz(&m).step, RestoreStep::Target);
}

#[test]
fn restore_esc_goes_back_to_the_chosen_image_then_home() {
    let images = two_chains();
    for downs in 0..4 {
        let mut m = home_with(None, images.clone());
        ch(&mut m, 'r');
        for _ in 0..downs {
            press(&mut m, KeyCode::Down);
        }
        press(&mut m, KeyCode::Enter);
        press(&mut m, KeyCode::Down); // a target cursor, forgotten on the way back
        assert!(press(&mut m, KeyCode::Esc).is_none());
        let w = restore_wiz(&m);
        assert_eq!(w.step, RestoreStep::Image);
        assert_eq!(w.cursor, downs);
        assert_eq!(w.image, None);
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert!(is_home(&m));
    }
}

#[test]
fn restore_esc_back_when_the_image_left_the_list_starts_at_the_top() {
    let mut m = home_with(None, two_chains());
    ch(&mut m, 'r');
    press(&mut m, KeyCode::End);
    press(&mut m, KeyCode::Enter);
    update(
        &mut m,
        Msg::Images(Ok(Listing::of(two_chains()[1..2].to_vec()))),
    );
    press(&mut m, KeyCode::Esc);
    assert_eq!(restore_wiz(&m).step, RestoreStep::Image);
    assert_eq!(restore_wiz(&m).cursor, 0);
}

/// The restore wizard on Confirm, with a real plan, onto /dev/nvme0n1.
fn restore_confirm(plans: &Plans) -> Model {
    let mut m = restore_target(Some("/dev/sda"));
    plan_req(press(&mut m, KeyCode::Enter));
    assert!(update(&mut m, Msg::Planned(Ok(plans.restore.clone()))).is_none());
    assert_eq!(m.busy, None);
    let w = restore_wiz(&m);
    assert_eq!(w.step, RestoreStep::Confirm);
    assert!(w.plan.is_some());
    assert_eq!((w.over.typed.as_str(), w.over.mistyped), ("", false));
    assert_eq!(w.over.target, Some(path("/dev/nvme0n1")));
    m
}

#[test]
fn restore_confirm_refuses_a_wrong_name() {
    let plans = Plans::new();
    // (typed, why it is wrong)
    let cases = [
        ("", "nothing"),
        ("sda", "another disk"),
        ("nvme0n", "too short"),
        ("nvme0n1 ", "a trailing space"),
        ("NVME0N1", "case"),
        ("/dev/nvme0n1", "the whole path"),
    ];
    for (typed, why) in cases {
        let mut m = restore_confirm(&plans);
        type_str(&mut m, typed);
        assert_eq!(restore_wiz(&m).over.typed, typed, "{why}");
        assert!(press(&mut m, KeyCode::Enter).is_none(), "{why}");
        let w = restore_wiz(&m);
        assert!(w.over.mistyped, "{why}");
        assert_eq!(w.step, RestoreStep::Confirm, "{why}");
        assert!(w.plan.is_some(), "{why}");
        // typing again clears the complaint
        assert!(ch(&mut m, 'x').is_none());
        assert!(!restore_wiz(&m).over.mistyped, "{why}");
        press(&mut m, KeyCode::Enter);
        assert!(press(&mut m, KeyCode::Backspace).is_none());
        assert!(!restore_wiz(&m).over.mistyped, "{why}");
    }
}

#[test]
fn restore_confirm_with_the_short_name_starts_the_job() {
    let plans = Plans::new();
    let mut m = restore_confirm(&plans);
    // letters that are keys elsewhere are typed here; ? does not open help
    type_str(&mut m, "q?g");
    assert!(!m.help);
    assert_eq!(restore_wiz(&m).over.typed, "q?g");
    assert!(!restore_wiz(&m).over.grow_last);
    for _ in 0..3 {
        press(&mut m, KeyCode::Backspace);
    }
    type_str(&mut m, "nvme0n1");
    assert!(!restore_wiz(&m).over.new_disk_id, "n is a letter here");
    let t = m.now.unwrap();
    match press(&mut m, KeyCode::Enter) {
        Some(Cmd::Start(Planned::Restore(p))) => assert_eq!(p.image, plans.lbi),
        other => panic!("{other:?}"),
    }
    let r = running(&m);
    assert_eq!(
        r.title,
        format!("Restoring {} onto /dev/nvme0n1", short_name(&plans.lbi))
    );
    assert_eq!(r.target, Some(path("/dev/nvme0n1")));
    assert_eq!(r.started, t);
    assert!(!r.cancelling);
}

#[test]
fn restore_confirm_typing_is_capped_at_64_characters() {
    let plans = Plans::new();
    let mut m = restore_confirm(&plans);
    for _ in 0..100 {
        ch(&mut m, 'a');
    }
    assert_eq!(restore_wiz(&m).over.typed.len(), 64);
}

#[test]
fn restore_confirm_esc_goes_back_to_the_target() {
    let plans = Plans::new();
    let mut m = restore_confirm(&plans);
    type_str(&mut m, "nvme");
    assert!(press(&mut m, KeyCode::Esc).is_none());
    let w = restore_wiz(&m);
    assert_eq!(w.step, RestoreStep::Target);
    assert!(w.plan.is_none());
    assert_eq!(w.over.typed, "");
    assert_eq!(w.image, Some(path("/mnt/store/images/laptop.lbi")));
    assert_eq!(w.cursor, 0, "still on the target tried");
    // and on through the wizard to Home
    press(&mut m, KeyCode::Esc);
    assert_eq!(restore_wiz(&m).step, RestoreStep::Image);
    press(&mut m, KeyCode::Esc);
    assert!(is_home(&m));
}

#[test]
fn restore_confirm_after_a_wrong_name_esc_and_a_new_plan_starts_clean() {
    let plans = Plans::new();
    let mut m = restore_confirm(&plans);
    type_str(&mut m, "sda");
    press(&mut m, KeyCode::Enter);
    assert!(restore_wiz(&m).over.mistyped);
    press(&mut m, KeyCode::Esc);
    plan_req(press(&mut m, KeyCode::Enter));
    update(&mut m, Msg::Planned(Ok(plans.restore.clone())));
    let w = restore_wiz(&m);
    assert_eq!(w.step, RestoreStep::Confirm);
    assert_eq!((w.over.typed.as_str(), w.over.mistyped), ("", false));
}

// ---------------------------------------------------------------------------------------------
// Clone wizard

/// The clone wizard on Target, with the source `downs` rows down the source list.
fn clone_target(disk: Option<&str>, downs: usize) -> Model {
    let mut m = home();
    if let Some(d) = disk {
        m.storage = Some(storage(Some(d)));
    }
    ch(&mut m, 'c');
    for _ in 0..downs {
        press(&mut m, KeyCode::Down);
    }
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(clone_wiz(&m).step, CloneStep::Target);
    m
}

#[test]
fn clone_targets_leave_out_the_source() {
    // (store on, source downs, source, targets)
    let cases: [(Option<&str>, usize, &str, Vec<usize>); 4] = [
        (None, 0, "/dev/sda", vec![NVME]),
        (None, 1, "/dev/nvme0n1", vec![SDA]),
        (None, 4, "/dev/nvme0n1", vec![SDA]),
        (Some("/dev/sda"), 0, "/dev/nvme0n1", vec![]),
    ];
    for (disk, downs, source, want) in cases {
        let mut m = clone_target(disk, downs);
        let w = clone_wiz(&m);
        assert_eq!(w.source, Some(path(source)), "{source}");
        assert_eq!(w.cursor, 0);
        assert_eq!(targets(&m, w.source.as_deref()), want, "{source}");
        let c = press(&mut m, KeyCode::Enter);
        match want.first() {
            Some(&t) => match plan_req(c) {
                JobRequest::Clone {
                    source: s, target, ..
                } => {
                    assert_eq!(s, path(source));
                    assert_eq!(target, m.disks[t].path);
                }
                r => panic!("{r:?}"),
            },
            None => {
                assert!(c.is_none(), "no target to clone onto");
                assert_eq!(m.busy, None);
            }
        }
    }
}

#[test]
fn clone_sources_leave_out_the_boot_medium_and_the_storage_disk() {
    let mut m = home();
    m.storage = Some(storage(Some("/dev/nvme0n1")));
    ch(&mut m, 'c');
    press(&mut m, KeyCode::End);
    press(&mut m, KeyCode::Enter);
    assert_eq!(clone_wiz(&m).source, Some(path("/dev/sda")));
    // and sda, the only disk left, is no target of its own clone
    assert!(press(&mut m, KeyCode::Enter).is_none());
}

#[test]
fn clone_g_and_n_toggle_and_enter_plans_with_them() {
    let cases: [(&str, bool, bool); 4] = [
        ("", false, false),
        ("g", true, false),
        ("n", false, true),
        ("ngng", false, false),
    ];
    for (keys, grow, new_id) in cases {
        let mut m = clone_target(None, 0);
        type_str(&mut m, keys);
        let req = plan_req(press(&mut m, KeyCode::Enter));
        assert_eq!(
            req,
            JobRequest::Clone {
                source: path("/dev/sda"),
                target: path("/dev/nvme0n1"),
                grow_last: grow,
                new_disk_id: new_id,
                fit: false,
            },
            "{keys:?}"
        );
        assert_eq!(clone_wiz(&m).over.target, Some(path("/dev/nvme0n1")));
        assert_eq!(
            m.busy.as_deref(),
            Some("Reading the source and checking the target...")
        );
        assert!(press(&mut m, KeyCode::Esc).is_none(), "waits for the plan");
        assert_eq!(clone_wiz(&m).step, CloneStep::Target);
    }
}

#[test]
fn clone_too_small_target_is_inline_and_other_errors_an_overlay() {
    let mut m = clone_target(None, 1);
    plan_req(press(&mut m, KeyCode::Enter));
    update(
        &mut m,
        Msg::Planned(Err(failure("planning the clone", true))),
    );
    assert_eq!(m.failure, None);
    assert_eq!(m.busy, None);
    assert_eq!(
        clone_wiz(&m).over.does_not_fit.as_deref(),
        Some("planning the clone: the first cause")
    );
    assert_eq!(clone_wiz(&m).step, CloneStep::Target);
    ch(&mut m, 'n');
    assert!(clone_wiz(&m).over.does_not_fit.is_some());
    press(&mut m, KeyCode::Char('j'));
    assert_eq!(clone_wiz(&m).over.does_not_fit, None);

    plan_req(press(&mut m, KeyCode::Enter));
    let f = failure("planning the clone", false);
    update(&mut m, Msg::Planned(Err(f.clone())));
    assert_eq!(m.failure, Some(f));
    assert_eq!(clone_wiz(&m).over.does_not_fit, None);
    press(&mut m, KeyCode::Enter);
    assert_eq!(m.failure, None);
    assert_eq!(clone_wiz(&m).step, CloneStep::Target);
}

#[test]
fn clone_real_too_small_target_is_a_does_not_fit_refusal() {
    // the loop's own plan(): a 4 MiB disk without a table onto a 1 MiB file
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src.img"), dir.path().join("dst.img"));
    sparse(&src, 4 << 20);
    sparse(&dst, 1 << 20);
    let r = super::exec::plan(&JobRequest::Clone {
        source: src,
        target: dst,
        grow_last: false,
        new_disk_id: false,
        fit: false,
    });
    let f = match r {
        Err(f) => f,
        Ok(p) => panic!("planned {p:?}"),
    };
    assert!(f.does_not_fit, "{f:?}");
    let mut m = clone_target(None, 0);
    plan_req(press(&mut m, KeyCode::Enter));
    update(&mut m, Msg::Planned(Err(f.clone())));
    assert_eq!(m.failure, None);
    assert_eq!(clone_wiz(&m).over.does_not_fit.as_ref(), f.causes.first());
    assert!(
        clone_wiz(&m)
            .over
            .does_not_fit
            .as_deref()
            .unwrap()
            .contains("too small"),
        "{f:?}"
    );
}

#[test]
fn clone_esc_goes_back_one_step_at_a_time() {
    let plans = Plans::new();
    let mut m = clone_target(None, 1); // source nvme0n1, second in the list
    plan_req(press(&mut m, KeyCode::Enter));
    update(&mut m, Msg::Planned(Ok(plans.clone.clone())));
    let w = clone_wiz(&m);
    assert_eq!(w.step, CloneStep::Confirm);
    assert!(w.plan.is_some());
    assert_eq!((w.over.typed.as_str(), w.over.mistyped), ("", false));
    type_str(&mut m, "sd");
    // Confirm -> Target
    assert!(press(&mut m, KeyCode::Esc).is_none());
    let w = clone_wiz(&m);
    assert_eq!(w.step, CloneStep::Target);
    assert!(w.plan.is_none());
    assert_eq!(w.over.typed, "");
    // Target -> Source, on the source chosen
    assert!(press(&mut m, KeyCode::Esc).is_none());
    let w = clone_wiz(&m);
    assert_eq!(w.step, CloneStep::Source);
    assert_eq!(w.cursor, 1);
    assert_eq!(w.source, None);
    // Source -> Home
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
}

#[test]
fn clone_target_esc_when_the_source_left_the_list_starts_at_the_top() {
    let mut m = clone_target(None, 1);
    let mut rest = disks();
    rest.remove(NVME);
    update(&mut m, Msg::Devices(Ok(rest)));
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert_eq!(clone_wiz(&m).step, CloneStep::Source);
    assert_eq!(clone_wiz(&m).cursor, 0);
}

#[test]
fn clone_confirm_needs_the_target_short_name() {
    let plans = Plans::new();
    let Planned::Clone(want) = &plans.clone else {
        unreachable!()
    };
    let mut m = clone_target(None, 1); // nvme0n1 onto sda
    plan_req(press(&mut m, KeyCode::Enter));
    update(&mut m, Msg::Planned(Ok(plans.clone.clone())));
    // the source's name is the wrong one
    type_str(&mut m, "nvme0n1");
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert!(clone_wiz(&m).over.mistyped);
    assert_eq!(clone_wiz(&m).step, CloneStep::Confirm);
    for _ in 0..7 {
        press(&mut m, KeyCode::Backspace);
    }
    assert!(!clone_wiz(&m).over.mistyped);
    type_str(&mut m, "sda");
    match press(&mut m, KeyCode::Enter) {
        Some(Cmd::Start(Planned::Clone(p))) => assert_eq!(p.target.path, want.target.path),
        other => panic!("{other:?}"),
    }
    let r = running(&m);
    assert_eq!(
        r.title,
        format!("Cloning {} onto /dev/sda", want.source.display())
    );
    assert_eq!(r.target, Some(path("/dev/sda")));
}

#[test]
fn clone_source_esc_goes_home_and_enter_without_disks_does_nothing() {
    let mut m = Model::default();
    ch(&mut m, 'c');
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(clone_wiz(&m).step, CloneStep::Source);
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
}

// ---------------------------------------------------------------------------------------------
// Verify

#[test]
fn verify_enter_verifies_the_highlighted_image_in_list_order() {
    let images = two_chains();
    let order = image_order(&images);
    for downs in 0..5 {
        let mut m = home_with(None, images.clone());
        let t = Instant::now();
        update(&mut m, Msg::Tick(t, UNIX));
        ch(&mut m, 'v');
        for _ in 0..downs {
            press(&mut m, KeyCode::Down);
        }
        let want = images[order[downs.min(3)]].found.path.clone();
        match press(&mut m, KeyCode::Enter) {
            Some(Cmd::Verify(p)) => assert_eq!(p, want, "{downs}"),
            other => panic!("{other:?}"),
        }
        let r = running(&m);
        assert_eq!(r.title, format!("Verifying {}", short_name(&want)));
        assert_eq!(r.target, None);
        assert_eq!(r.started, t);
    }
}

#[test]
fn verify_esc_goes_home_and_an_empty_list_ignores_enter() {
    let mut m = home_with(None, vec![]);
    ch(&mut m, 'v');
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert!(matches!(m.screen, Screen::Verify { cursor: 0 }));
    assert!(ch(&mut m, 'q').is_none());
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
}

// ---------------------------------------------------------------------------------------------
// Running and Done

#[test]
fn job_events_update_the_progress_screen() {
    let (mut m, t0) = running_model();
    let t1 = t0 + Duration::from_secs(3);
    update(&mut m, Msg::Tick(t1, UNIX + 3));
    /// (event, phase, total, done, warnings) afterwards.
    type Step = (Event, Option<Phase>, Option<u64>, u64, usize);
    let steps: Vec<Step> = vec![
        (
            Event::Progress {
                phase: Phase::Scan,
                done_bytes: 5,
            },
            None,
            None,
            0,
            0,
        ),
        (
            Event::Phase {
                phase: Phase::Verify,
                total_bytes: Some(1000),
            },
            Some(Phase::Verify),
            Some(1000),
            0,
            0,
        ),
        (
            Event::Progress {
                phase: Phase::Verify,
                done_bytes: 400,
            },
            Some(Phase::Verify),
            Some(1000),
            400,
            0,
        ),
        (
            Event::Progress {
                phase: Phase::Write,
                done_bytes: 900,
            },
            Some(Phase::Verify),
            Some(1000),
            400,
            0,
        ),
        (
            Event::Warning {
                message: "a bad block".into(),
            },
            Some(Phase::Verify),
            Some(1000),
            400,
            1,
        ),
        (
            Event::Phase {
                phase: Phase::Sync,
                total_bytes: None,
            },
            Some(Phase::Sync),
            None,
            0,
            1,
        ),
        // Finished ends the screen: the_runners_finished_event_ends_the_job_...
    ];
    for (e, phase, total, done_bytes, warnings) in steps {
        let name = format!("{e:?}");
        assert!(update(&mut m, Msg::Job(e)).is_none());
        let r = running(&m);
        assert_eq!(r.phase, phase, "{name}");
        assert_eq!(r.total, total, "{name}");
        assert_eq!(r.done, done_bytes, "{name}");
        assert_eq!(r.warnings.len(), warnings, "{name}");
        assert_eq!(r.started, t0, "{name}");
    }
    let r = running(&m);
    assert_eq!(r.phase_started, t1);
    assert_eq!(r.warnings, vec!["a bad block".to_string()]);
}

#[test]
fn job_messages_outside_the_progress_screen_are_ignored() {
    let mut m = home();
    update(
        &mut m,
        Msg::Job(Event::Phase {
            phase: Phase::Write,
            total_bytes: Some(1),
        }),
    );
    super::screens::done::finish(&mut m, Ok((vec!["x".into()], 1.0)));
    assert!(is_home(&m));
}

#[test]
fn running_c_esc_or_ctrl_c_ask_before_cancelling() {
    for ask_key in [k(KeyCode::Char('c')), k(KeyCode::Esc), ctrl_c()] {
        let (mut m, _) = running_model();
        assert!(update(&mut m, ask_key.clone()).is_none());
        assert_eq!(m.ask, Some(Ask::Cancel), "{ask_key:?}");
        // no: the job goes on
        for no in [KeyCode::Char('n'), KeyCode::Esc, KeyCode::Enter] {
            let mut n = m.clone();
            assert!(press(&mut n, no).is_none());
            assert_eq!(n.ask, None);
            assert!(!running(&n).cancelling);
        }
        // other keys keep asking
        assert!(ch(&mut m, 'q').is_none());
        assert_eq!(m.ask, Some(Ask::Cancel));
        // yes
        assert!(matches!(ch(&mut m, 'y'), Some(Cmd::Cancel)));
        assert_eq!(m.ask, None);
        assert!(running(&m).cancelling);
        // once cancelling, nothing asks again
        for again in [k(KeyCode::Char('c')), k(KeyCode::Esc), ctrl_c()] {
            assert!(update(&mut m, again).is_none());
            assert_eq!(m.ask, None);
        }
    }
}

#[test]
fn running_other_keys_do_nothing() {
    let (mut m, _) = running_model();
    for c in [
        KeyCode::Char('q'),
        KeyCode::Enter,
        KeyCode::Char('y'),
        KeyCode::F(5),
        KeyCode::Char('x'),
    ] {
        assert!(press(&mut m, c).is_none(), "{c:?}");
        assert!(m.ask.is_none());
        assert!(!running(&m).cancelling);
    }
    // help opens and closes over the progress screen
    ch(&mut m, '?');
    assert!(m.help);
    ch(&mut m, 'c');
    assert!(!m.help);
    assert!(m.ask.is_none(), "the key that closes help does not ask");
}

#[test]
fn job_done_ok_shows_its_lines() {
    let (mut m, t0) = running_model();
    update(
        &mut m,
        Msg::Job(Event::Warning {
            message: "w1".into(),
        }),
    );
    ch(&mut m, 'c'); // the question is open when the job ends
    update(&mut m, Msg::Tick(t0 + Duration::from_secs(9), UNIX));
    let lines = vec!["It worked.".to_string(), "Root hash 00".to_string()];
    super::screens::done::finish(&mut m, Ok((lines.clone(), 4.5)));
    assert_eq!(m.ask, None);
    let d = done(&m);
    assert!(d.title.starts_with("Verifying "), "{}", d.title);
    assert_eq!(d.lines, lines);
    assert_eq!(d.failure, None);
    assert_eq!(d.warnings, vec!["w1".to_string()]);
    assert_eq!(d.seconds, 4.5, "the job's own time");
}

#[test]
fn job_done_err_shows_the_failure() {
    let (mut m, t0) = running_model();
    update(&mut m, Msg::Tick(t0 + Duration::from_millis(2500), UNIX));
    let f = Failure {
        cancelled: true,
        ..failure("verifying", false)
    };
    super::screens::done::finish(&mut m, Err(f.clone()));
    let d = done(&m);
    assert_eq!(d.failure, Some(f));
    assert!(d.lines.is_empty());
    assert!((d.seconds - 2.5).abs() < 1e-9, "{}", d.seconds);
    assert!(
        m.failure.is_none(),
        "shown on the result screen, not an overlay"
    );
}

#[test]
fn done_enter_or_esc_goes_home_and_rescans() {
    for key in [KeyCode::Enter, KeyCode::Esc] {
        let (mut m, _) = running_model();
        super::screens::done::finish(&mut m, Ok((vec![], 1.0)));
        for other in [KeyCode::Char('q'), KeyCode::Down, KeyCode::Char('c')] {
            assert!(press(&mut m, other).is_none());
            done(&m);
        }
        assert!(matches!(press(&mut m, key), Some(Cmd::Rescan)), "{key:?}");
        assert!(is_home(&m));
        assert!(m.scanning);
    }
    // a scan already running is not asked for twice
    let (mut m, _) = running_model();
    super::screens::done::finish(&mut m, Ok((vec![], 1.0)));
    m.scanning = true;
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert!(is_home(&m));
}

#[test]
fn full_image_path_from_home_to_home() {
    let plans = Plans::new();
    let mut m = home();
    assert!(ch(&mut m, 'i').is_none());
    let c = press(&mut m, KeyCode::Down);
    assert!(c.is_none());
    let Some(Cmd::MountStorage(choice)) = press(&mut m, KeyCode::Enter) else {
        panic!("no mount")
    };
    assert_eq!(choice.device, path("/dev/sda2"));
    let st = Storage {
        dir: path("/run/lifeboat/store"),
        device: Some(choice.device),
        disk: Some(choice.disk),
        fs: Some(choice.fs.into()),
        label: choice.label,
    };
    update(&mut m, Msg::StorageReady(Ok((st, Listing::of(vec![])))));
    assert_eq!(image_wiz(&m).step, ImageStep::Source);
    assert_eq!(sources(&m), vec![NVME], "the store's disk is no source");
    press(&mut m, KeyCode::Enter);
    let req = plan_req(press(&mut m, KeyCode::Enter));
    assert!(matches!(&req, JobRequest::Image { source, dir, .. }
        if *source == path("/dev/nvme0n1") && *dir == path("/run/lifeboat/store")));
    update(&mut m, Msg::Planned(Ok(plans.image.clone())));
    assert!(matches!(
        press(&mut m, KeyCode::Enter),
        Some(Cmd::Start(Planned::Image(_)))
    ));
    update(
        &mut m,
        Msg::Job(Event::Phase {
            phase: Phase::Image,
            total_bytes: Some(10),
        }),
    );
    super::screens::done::finish(&mut m, Ok((vec!["done".into()], 1.0)));
    assert!(matches!(press(&mut m, KeyCode::Enter), Some(Cmd::Rescan)));
    assert!(is_home(&m));
    assert!(m.storage.is_some(), "the store stays chosen");
}

// ---------------------------------------------------------------------------------------------
// Ticks, scans and listings

#[test]
fn tick_sets_the_time() {
    let mut m = Model::default();
    let t = Instant::now();
    assert!(update(&mut m, Msg::Tick(t, 42)).is_none());
    assert_eq!((m.now, m.now_unix), (Some(t), 42));
    let t2 = t + Duration::from_millis(250);
    update(&mut m, Msg::Tick(t2, 43));
    assert_eq!((m.now, m.now_unix), (Some(t2), 43));
}

#[test]
fn devices_keep_the_selection_within_bounds() {
    // (name, selected before, disks after, selected after)
    let cases = [
        ("same disks", 2, 3, 2),
        ("one disk fewer", 2, 2, 1),
        ("one disk", 2, 1, 0),
        ("no disks", 1, 0, 0),
        ("first stays", 0, 1, 0),
    ];
    for (name, before, after, want) in cases {
        let mut m = home();
        m.selected = before;
        m.scanning = true;
        let mut d = disks();
        d.truncate(after);
        assert!(update(&mut m, Msg::Devices(Ok(d))).is_none());
        assert_eq!(m.selected, want, "{name}");
        assert_eq!(m.disks.len(), after, "{name}");
        assert!(!m.scanning, "{name}");
    }
}

#[test]
fn images_listing_replaces_the_list_or_records_why_not() {
    let mut m = home_with(None, vec![]);
    m.images_error = Some("old".into());
    update(&mut m, Msg::Images(Ok(Listing::of(two_chains()))));
    assert_eq!(m.images.len(), 4);
    assert_eq!(m.images_error, None);
    update(&mut m, Msg::Images(Err("permission denied".into())));
    assert_eq!(m.images.len(), 4, "a failed listing keeps the last one");
    assert_eq!(m.images_error.as_deref(), Some("permission denied"));
}

#[test]
fn stale_cursors_after_a_rescan_or_listing_never_panic() {
    let one_disk = || vec![disks().remove(SDB)]; // only the boot medium is left
                                                 // Storage: the highlighted filesystem is gone
    let mut m = home();
    ch(&mut m, 's');
    press(&mut m, KeyCode::End);
    update(&mut m, Msg::Devices(Ok(one_disk())));
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(m.busy, None);
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(is_home(&m));
    // image sources
    let mut m = home_with(None, vec![]);
    ch(&mut m, 'i');
    press(&mut m, KeyCode::End);
    update(&mut m, Msg::Devices(Ok(one_disk())));
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(image_wiz(&m).step, ImageStep::Source);
    // restore targets
    let mut m = restore_target(None);
    press(&mut m, KeyCode::End);
    update(&mut m, Msg::Devices(Ok(one_disk())));
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(m.busy, None);
    // clone targets
    let mut m = clone_target(None, 0);
    update(&mut m, Msg::Devices(Ok(one_disk())));
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(m.busy, None);
    // the image and verify lists
    let mut m = home_with(None, two_chains());
    ch(&mut m, 'v');
    press(&mut m, KeyCode::End);
    update(&mut m, Msg::Images(Ok(Listing::of(vec![]))));
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert!(matches!(m.screen, Screen::Verify { .. }));
    let mut m = home_with(None, two_chains());
    ch(&mut m, 'r');
    press(&mut m, KeyCode::End);
    update(&mut m, Msg::Images(Ok(Listing::of(vec![]))));
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(restore_wiz(&m).step, RestoreStep::Image);
}

#[test]
fn a_storage_mounted_before_the_menu_learns_its_disk_from_the_scan() {
    let mut m = Model {
        storage: Some(Storage {
            dir: path("/store"),
            device: Some(path("/dev/sda3")),
            disk: None,
            fs: Some("ntfs".into()),
            label: None,
        }),
        ..Model::default()
    };
    update(&mut m, Msg::Devices(Ok(disks())));
    assert_eq!(
        m.storage.as_ref().unwrap().disk,
        Some(path("/dev/sda")),
        "the partition's disk"
    );
    let d = m.disks.clone();
    assert_eq!(
        super::screens::excluded(&m, &d[0]),
        Some("holds the image storage"),
        "and that disk is no source or target"
    );
}

#[test]
fn a_rescan_keeps_the_cursor_on_the_disk_the_user_saw() {
    // restore target list: sda, nvme0n1; the cursor on nvme0n1
    let mut m = restore_target(None);
    press(&mut m, KeyCode::Down);
    assert_eq!(restore_wiz(&m).cursor, 1);
    // a new disk appears first in the list: Enter must still pick nvme0n1
    let mut more = disks();
    let mut usb = more[SDA].clone();
    usb.path = path("/dev/sdc");
    usb.serial = Some("NEW".into());
    more.insert(0, usb);
    update(&mut m, Msg::Devices(Ok(more)));
    assert_eq!(restore_wiz(&m).cursor, 2, "sdc, sda, nvme0n1");
    let Some(Cmd::Plan(JobRequest::Restore { target, .. })) = press(&mut m, KeyCode::Enter) else {
        panic!("no plan")
    };
    assert_eq!(target, path("/dev/nvme0n1"));
    // the highlighted disk goes away: the cursor goes to the first row, inside the list
    let mut m = restore_target(None);
    press(&mut m, KeyCode::Down);
    let mut fewer = disks();
    fewer.remove(NVME);
    update(&mut m, Msg::Devices(Ok(fewer)));
    assert_eq!(restore_wiz(&m).cursor, 0);
}

#[test]
fn a_relisted_storage_keeps_the_cursor_on_the_same_image() {
    let mut m = home_with(None, two_chains());
    ch(&mut m, 'v');
    press(&mut m, KeyCode::End);
    let before = match &m.screen {
        Screen::Verify { cursor } => *cursor,
        s => panic!("{s:?}"),
    };
    let order = image_order(&m.images);
    let want = m.images[order[before]].found.path.clone();
    // the first image in the list is deleted meanwhile: the rows shift up by one
    let mut imgs = two_chains();
    imgs.remove(order[0]);
    assert!(before > 0);
    update(&mut m, Msg::Images(Ok(Listing::of(imgs))));
    match &m.screen {
        Screen::Verify { cursor } => assert_eq!(*cursor, before - 1),
        s => panic!("{s:?}"),
    }
    let Some(Cmd::Verify(p)) = press(&mut m, KeyCode::Enter) else {
        panic!("no verify")
    };
    assert_eq!(p, want);
}

#[test]
fn the_runners_finished_event_ends_the_job_with_advice_from_the_typed_error() {
    let (mut m, t0) = running_model();
    update(&mut m, Msg::Tick(t0 + Duration::from_secs(3), UNIX));
    let e = std::sync::Arc::new(crate::Error::VerifyMismatch {
        path: PathBuf::from("/dev/sdb"),
        offset: 4096,
        end: 8192,
    });
    update(
        &mut m,
        Msg::Job(Event::Finished {
            ok: false,
            summary: None,
            error: Some(crate::jobs::JobError::new(e)),
        }),
    );
    let d = done(&m);
    let f = d.failure.as_ref().expect("a failure");
    assert_eq!(f.what, "verifying");
    assert!(f.causes[0].contains("/dev/sdb"), "{:?}", f.causes);
    assert!(
        f.advice.contains("does not read back the same"),
        "{}",
        f.advice
    );
    assert!((d.seconds - 3.0).abs() < 1e-9);

    // a verify summary: its lines, and the time the menu measured
    let (mut m, t0) = running_model();
    update(&mut m, Msg::Tick(t0 + Duration::from_secs(2), UNIX));
    let s = crate::jobs::verify::VerifySummary {
        path: PathBuf::from("/store/a.lbi"),
        chunks: 1,
        raw_bytes: 1 << 20,
        ancestor_bytes: 0,
        file_bytes: 1000,
        root_hash: "ab".into(),
        chain: Vec::new(),
        missing_bytes: 0,
        missing: Vec::new(),
    };
    update(
        &mut m,
        Msg::Job(Event::Finished {
            ok: true,
            summary: Some(crate::jobs::Summary::Verify(s.clone())),
            error: None,
        }),
    );
    let d = done(&m);
    assert_eq!(d.failure, None);
    assert_eq!(d.lines, super::outcome::verify_lines(&s));
    assert!((d.seconds - 2.0).abs() < 1e-9);
}

#[test]
fn image_rescue_mode_is_a_field_and_goes_into_the_request() {
    let mut m = image_options(vec![], SDA);
    for _ in 0..3 {
        press(&mut m, KeyCode::Down);
    }
    assert!(!image_wiz(&m).rescue);
    press(&mut m, KeyCode::Right);
    assert!(image_wiz(&m).rescue);
    let req = plan_req(press(&mut m, KeyCode::Enter));
    assert!(
        matches!(req, JobRequest::Image { rescue: true, .. }),
        "{req:?}"
    );
}

#[test]
fn a_read_error_that_stopped_an_image_offers_rescue_mode_with_r() {
    let (mut m, t0) = running_model();
    if let Screen::Running(r) = &mut m.screen {
        r.kind = super::screens::progress::JobKind::Image;
    }
    update(&mut m, Msg::Tick(t0 + Duration::from_secs(2), UNIX));
    let e = crate::Error::Read {
        path: PathBuf::from("/dev/sda"),
        offset: 4096,
        len: 512,
        source: std::io::Error::from_raw_os_error(libc::EIO),
    };
    update(
        &mut m,
        Msg::Job(Event::Finished {
            ok: false,
            summary: None,
            error: Some(crate::event::JobError::new(std::sync::Arc::new(e))),
        }),
    );
    let Screen::Done(d) = &m.screen else {
        panic!("not done: {:?}", m.screen)
    };
    let f = d.failure.as_ref().unwrap();
    assert_eq!(f.unreadable.as_deref(), Some(Path::new("/dev/sda")));
    assert!(f.advice.contains("Press r"), "{}", f.advice);
    assert!(press(&mut m, KeyCode::Char('r')).is_none());
    let w = image_wiz(&m);
    assert_eq!(
        (w.step, w.rescue, w.source.as_deref()),
        (ImageStep::Options, true, Some(Path::new("/dev/sda")))
    );
    assert!(w.name.ends_with("-rescue"), "{}", w.name);
}

#[test]
fn an_encrypted_image_needs_the_same_passphrase_twice_and_letters_are_typed_into_it() {
    let mut m = image_options(vec![], SDA);
    for _ in 0..5 {
        press(&mut m, KeyCode::Down);
    }
    assert_eq!(image_wiz(&m).cursor, 5);
    // without encryption the passphrase fields are not there: the fleet store's is next
    press(&mut m, KeyCode::Down);
    assert_eq!(image_wiz(&m).cursor, 6);
    press(&mut m, KeyCode::Down);
    assert_eq!(image_wiz(&m).cursor, 6);
    press(&mut m, KeyCode::Up);
    press(&mut m, KeyCode::Right);
    assert!(image_wiz(&m).encrypt);
    // an empty passphrase is refused on Enter
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(
        (image_wiz(&m).cursor, image_wiz(&m).pass_problem),
        (6, Some("type a passphrase"))
    );
    // keys that mean something elsewhere (q quits, ? helps, u unlocks) are letters here
    type_str(&mut m, "q?u pw");
    assert!(!m.help && m.unlock.is_none());
    press(&mut m, KeyCode::Down);
    type_str(&mut m, "q?u pX");
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert_eq!(
        (image_wiz(&m).cursor, image_wiz(&m).pass_problem),
        (7, Some("the two passphrases differ"))
    );
    press(&mut m, KeyCode::Backspace);
    type_str(&mut m, "w");
    let req = plan_req(press(&mut m, KeyCode::Enter));
    let JobRequest::Image {
        passphrase,
        recovery_key,
        ..
    } = req
    else {
        panic!("{req:?}")
    };
    assert_eq!(passphrase.expect("encrypted").0.as_str(), "q?u pw");
    assert!(!recovery_key, "a recovery key only when asked for");
    // the recovery-key field, below the passphrases: Right asks for one
    m.busy = None; // the plan would be read now; the form stays as it was
    press(&mut m, KeyCode::Down);
    assert_eq!(image_wiz(&m).cursor, 8);
    press(&mut m, KeyCode::Right);
    assert!(image_wiz(&m).recovery);
    let JobRequest::Image { recovery_key, .. } = plan_req(press(&mut m, KeyCode::Enter)) else {
        panic!()
    };
    assert!(recovery_key);
    // not encrypted after all: no recovery key either
    m.busy = None;
    image_wiz_mut(&mut m).encrypt = false;
    let JobRequest::Image {
        passphrase,
        recovery_key,
        ..
    } = plan_req(press(&mut m, KeyCode::Enter))
    else {
        panic!()
    };
    assert!(passphrase.is_none() && !recovery_key);
    // a child image is encrypted as its parent is: the field does not change
    let mut m = image_options(vec![], SDA);
    image_wiz_mut(&mut m).kind = ImageKind::Incremental;
    for _ in 0..7 {
        press(&mut m, KeyCode::Down);
    }
    press(&mut m, KeyCode::Right);
    assert!(!image_wiz(&m).encrypt);
    let JobRequest::Image { passphrase, .. } = plan_req(press(&mut m, KeyCode::Enter)) else {
        panic!()
    };
    assert!(passphrase.is_none());
}

fn image_wiz_mut(m: &mut Model) -> &mut ImageWiz {
    match &mut m.screen {
        Screen::Image(w) => w,
        s => panic!("not the image wizard: {s:?}"),
    }
}

#[test]
fn u_types_a_passphrase_that_the_keyring_keeps_and_lists_the_storage_again() {
    use crate::image::crypt::{keyring, KeySlots, MasterKey, SlotKind};
    let mut m = home_with(Some("/dev/sdc1"), two_chains());
    m.locked_images = 2;
    m.screen = Screen::Verify { cursor: 0 };
    assert!(press(&mut m, KeyCode::Char('u')).is_none());
    assert!(m.unlock.is_some());
    type_str(&mut m, "abandoned");
    // Esc closes it and gives the keyring nothing
    assert!(press(&mut m, KeyCode::Esc).is_none());
    assert!(m.unlock.is_none());
    assert!(
        matches!(m.screen, Screen::Verify { .. }),
        "Esc closed only the dialog"
    );
    press(&mut m, KeyCode::Char('u'));
    // an empty passphrase does nothing on Enter
    assert!(press(&mut m, KeyCode::Enter).is_none());
    assert!(m.unlock.is_some());
    let secret = "tui unlock test passphrase";
    type_str(&mut m, "x");
    press(&mut m, KeyCode::Backspace);
    type_str(&mut m, secret);
    assert!(matches!(press(&mut m, KeyCode::Enter), Some(Cmd::Rescan)));
    assert!(m.unlock.is_none() && m.scanning);
    let key = MasterKey::generate().unwrap();
    let slots = KeySlots::new(&key, &[(SlotKind::Passphrase, secret.as_bytes())]).unwrap();
    let abandoned = KeySlots::new(&key, &[(SlotKind::Passphrase, b"abandoned")]).unwrap();
    let got = keyring::unlock(Path::new("x.lbi"), &slots).unwrap();
    assert_eq!(got.key_id(), key.key_id());
    // (the key is in the keyring now, so only the slots' own check tells Esc apart)
    assert!(abandoned.unlock("abandoned").is_some());
    // u is not offered where letters are typed or no images are listed
    let mut m = image_options(vec![], SDA);
    press(&mut m, KeyCode::Char('u'));
    assert!(m.unlock.is_none());
}

#[test]
fn the_last_field_of_a_full_image_makes_the_storage_a_fleet_store() {
    let mut m = image_options(vec![], SDA);
    for _ in 0..8 {
        press(&mut m, KeyCode::Down);
    }
    assert_eq!(image_wiz(&m).cursor, 6, "below encrypt when it is no");
    type_str(&mut m, "ab");
    assert!(
        image_wiz(&m).pass[0].0.is_empty(),
        "no passphrase field there"
    );
    press(&mut m, KeyCode::Right);
    assert!(image_wiz(&m).fleet);
    let JobRequest::Image { dedup, .. } = plan_req(press(&mut m, KeyCode::Enter)) else {
        panic!()
    };
    assert!(dedup);
    // encrypted, it moves below the passphrases and the recovery key
    m.busy = None;
    image_wiz_mut(&mut m).cursor = 5;
    press(&mut m, KeyCode::Right);
    assert!(image_wiz(&m).encrypt);
    for _ in 0..5 {
        press(&mut m, KeyCode::Down);
    }
    assert_eq!(image_wiz(&m).cursor, 9);
    press(&mut m, KeyCode::Left);
    assert!(!image_wiz(&m).fleet);
    // a child image: no such field, and no fleet store
    image_wiz_mut(&mut m).kind = ImageKind::Incremental;
    image_wiz_mut(&mut m).fleet = true;
    image_wiz_mut(&mut m).cursor = 0;
    for _ in 0..9 {
        press(&mut m, KeyCode::Down);
    }
    assert_eq!(image_wiz(&m).cursor, 5);
    let JobRequest::Image { dedup, .. } = plan_req(press(&mut m, KeyCode::Enter)) else {
        panic!()
    };
    assert!(!dedup);
}

#[test]
fn space_changes_a_choice_and_is_typed_into_a_passphrase() {
    let mut m = image_options(vec![], SDA);
    image_wiz_mut(&mut m).cursor = 3;
    press(&mut m, KeyCode::Char(' '));
    assert!(image_wiz(&m).rescue);
    image_wiz_mut(&mut m).cursor = 5;
    press(&mut m, KeyCode::Char(' '));
    assert!(image_wiz(&m).encrypt);
    press(&mut m, KeyCode::Tab);
    type_str(&mut m, "a b");
    assert_eq!(image_wiz(&m).pass[0].0.as_str(), "a b");
    for _ in 0..3 {
        press(&mut m, KeyCode::Tab);
    }
    assert_eq!(image_wiz(&m).cursor, 9);
    press(&mut m, KeyCode::Char(' '));
    assert!(image_wiz(&m).fleet);
    // the name takes no space
    image_wiz_mut(&mut m).cursor = 1;
    let name = image_wiz(&m).name.clone();
    press(&mut m, KeyCode::Char(' '));
    assert_eq!(image_wiz(&m).name, name);
}

/// On the image wizard's last field, the fleet store cannot be turned off, and the request
/// goes into the store.
fn fleet_field_is_fixed_at_yes(m: &mut Model) {
    for _ in 0..8 {
        press(m, KeyCode::Down);
    }
    press(m, KeyCode::Left);
    assert!(!image_wiz(m).fleet, "nothing to choose");
    let JobRequest::Image { dedup, .. } = plan_req(press(m, KeyCode::Enter)) else {
        panic!()
    };
    assert!(dedup, "into the store");
}

#[test]
fn a_storage_that_is_a_fleet_store_keeps_its_field_at_yes() {
    let mut packed = entry("/s/pc.lbi", &disks()[SDA], true, "pc", 1);
    packed.found.packed = true;
    let mut m = image_options(vec![packed], SDA);
    fleet_field_is_fixed_at_yes(&mut m);
}

#[test]
fn an_empty_fleet_store_keeps_its_field_at_yes() {
    // a store with a store key or packs but no image yet (its images pruned, or its first
    // image failed) is still a fleet store: planning puts the image in it
    let mut m = image_options(vec![], SDA);
    update(
        &mut m,
        Msg::Images(Ok(Listing {
            fleet: true,
            ..Listing::default()
        })),
    );
    assert!(m.storage_fleet);
    fleet_field_is_fixed_at_yes(&mut m);
    // and the listing finds it from the store key alone
    let dir = tempfile::tempdir().unwrap();
    assert!(!super::exec::list_images(dir.path()).unwrap().fleet);
    std::fs::write(dir.path().join("store.key"), b"x").unwrap();
    assert!(super::exec::list_images(dir.path()).unwrap().fleet);
}

#[test]
fn a_disk_whose_images_are_in_a_fleet_store_is_imaged_full() {
    // a fleet store's images are full but take no children: only "full" is offered
    let mut packed = entry("/s/pc.lbi", &disks()[SDA], true, "pc", 1);
    packed.found.packed = true;
    let mut m = image_options(vec![packed], SDA);
    assert_eq!(image_wiz(&m).kind, ImageKind::Full);
    assert_eq!(
        kinds_after(&mut m, KeyCode::Right, 2),
        vec![ImageKind::Full, ImageKind::Full]
    );
}

#[test]
fn the_menu_images_into_a_fleet_store_and_refuses_what_it_cannot_hold() {
    use crate::image::crypt::{KeySlots, MasterKey, SlotKind};
    use crate::jobs::{image, CancelToken, Reporter};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("source.img");
    let mut bytes = vec![0u8; 4 << 20];
    for (i, b) in bytes.iter_mut().enumerate().take(1 << 20) {
        *b = (i * 7 + i / 251) as u8;
    }
    std::fs::write(&src, &bytes).unwrap();
    let fleet_req = |store: &Path, passphrase: Option<&str>| JobRequest::Image {
        source: src.clone(),
        dir: store.to_path_buf(),
        name: "first".into(),
        kind: ImageKind::Full,
        level: 3,
        rescue: false,
        full_swap: false,
        passphrase: passphrase.map(|p| crate::image::crypt::Secret(p.to_string().into())),
        recovery_key: false,
        dedup: true,
    };
    // a new fleet store: the first image into an empty folder, "fleet store" yes in the
    // wizard; encrypted, its passphrase becomes the store's
    for (name, pass) in [
        ("new-plain", None),
        ("new-keyed", Some("a new store's pass")),
    ] {
        let store = d.join(name);
        std::fs::create_dir_all(&store).unwrap();
        let Planned::Image(p) = super::exec::plan(&fleet_req(&store, pass)).unwrap() else {
            panic!("not an image plan")
        };
        assert!(p.dedup, "{name}");
        image::run(&p, &Reporter::silent(), &CancelToken::new()).unwrap();
        assert!(crate::image::packs::is_store(&store), "{name}");
        let found = crate::jobs::chain::images_in(&store).unwrap();
        assert!(found.len() == 1 && found[0].packed, "{name}: {found:?}");
        assert_eq!(
            crate::image::packs::StoreKeys::read(&store)
                .unwrap()
                .is_some(),
            pass.is_some(),
            "{name}: store.key"
        );
    }
    let req =
        |store: &Path, name: &str, kind, rescue, passphrase: Option<&str>| JobRequest::Image {
            source: src.clone(),
            dir: store.to_path_buf(),
            name: name.into(),
            kind,
            level: 3,
            rescue,
            full_swap: false,
            passphrase: passphrase.map(|p| crate::image::crypt::Secret(p.to_string().into())),
            recovery_key: false,
            dedup: false,
        };
    // a plain fleet store (the CLI made it: it has an index folder)
    let store = d.join("fleet");
    std::fs::create_dir_all(store.join("index")).unwrap();
    let planned = super::exec::plan(&req(&store, "pc", ImageKind::Full, false, None)).unwrap();
    let Planned::Image(p) = &planned else {
        panic!("not an image plan: {planned:?}")
    };
    assert!(p.dedup, "a full image into a fleet store is deduplicated");
    image::run(p, &Reporter::silent(), &CancelToken::new()).unwrap();
    let found = crate::jobs::chain::images_in(&store).unwrap();
    assert!(found.len() == 1 && found[0].packed, "{found:?}");
    assert!(store.join("packs").is_dir());
    for (name, kind, rescue) in [
        ("incremental", ImageKind::Incremental, false),
        ("rescue", ImageKind::Full, true),
    ] {
        let f = super::exec::plan(&req(&store, "pc2", kind, rescue, None)).unwrap_err();
        assert!(f.causes.join(" ").contains("fleet store"), "{name}: {f:?}");
        assert!(f.advice.contains("kind full"), "{name}: {f:?}");
    }
    // an encrypted fleet store: its passphrase, typed in the wizard, is needed
    let keyed = d.join("keyed");
    std::fs::create_dir_all(&keyed).unwrap();
    let pass = "menu fleet store passphrase";
    let slots = KeySlots::new(
        &MasterKey::generate().unwrap(),
        &[(SlotKind::Passphrase, pass.as_bytes())],
    )
    .unwrap();
    std::fs::write(
        crate::image::packs::store_key_path(&keyed),
        crate::image::packs::StoreKeys::encode(&slots),
    )
    .unwrap();
    let f = super::exec::plan(&req(&keyed, "pc", ImageKind::Full, false, None)).unwrap_err();
    assert!(
        f.causes.join(" ").contains("encrypted fleet store"),
        "{f:?}"
    );
    assert!(f.advice.contains("set encrypt to yes"), "{f:?}");
    let f =
        super::exec::plan(&req(&keyed, "pc", ImageKind::Full, false, Some("not it"))).unwrap_err();
    assert!(f.causes.join(" ").contains("wrong passphrase"), "{f:?}");
    let planned =
        super::exec::plan(&req(&keyed, "pc", ImageKind::Full, false, Some(pass))).unwrap();
    let Planned::Image(p) = &planned else {
        panic!("not an image plan: {planned:?}")
    };
    assert!(p.dedup && p.encryption.is_some(), "{p:?}");
    image::run(p, &Reporter::silent(), &CancelToken::new()).unwrap();
    assert_eq!(crate::jobs::chain::images_in(&keyed).unwrap().len(), 1);
    assert_eq!(
        crate::image::packs::StoreKeys::read(&keyed)
            .unwrap()
            .unwrap()
            .key_id,
        slots.key_id,
        "the store's key is kept"
    );
}
