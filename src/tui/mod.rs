//! The full-screen terminal UI (ratatui + crossterm): `lifeboat tui`, `lifeboat` with no
//! arguments on a terminal, and the rescue system's screen.
//!
//! Elm style (STYLE §6): [`app::Model`] and the pure [`app::update`], the pure [`view::view`],
//! and this loop, the only place with I/O. One channel of [`app::Msg`] is fed by an input
//! thread, a 250 ms ticker, scans, plans, and a forwarder of the running job's events; only
//! this thread draws. Jobs are the same `plan()` and `run()` the CLI calls. The terminal is
//! restored on every exit, and on panic by the terminal guard's hook.
//!
//! Each screen's state, keys and drawing live in one module under [`screens`]; `exec` carries
//! out the commands `update` returns; `run` here is the loop that ties them together.

pub mod app;
mod exec;
mod keys;
pub mod outcome;
pub mod screens;
mod terminal;
pub mod view;
mod widgets;

use app::{Model, Msg, Storage};
use crossbeam_channel::{bounded, Sender};
use exec::{list_images, unix_now, Exec};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// The model the menu starts with: scanning, and the storage given by `--images` or mounted
/// at `opts.mount_at` already, with its images listed.
fn first_model(opts: &Options) -> Model {
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
            Ok(l) => {
                (model.images, model.locked_images, model.storage_fleet) =
                    (l.images, l.locked, l.fleet)
            }
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
            Ok(l) => {
                (model.images, model.locked_images, model.storage_fleet) =
                    (l.images, l.locked, l.fleet)
            }
            Err(e) => model.images_error = Some(e),
        }
    }
    model
}

/// Runs the TUI until the user leaves.
pub fn run(opts: &Options) -> std::io::Result<Exit> {
    let mut term = terminal::Terminal::enter()?;
    let (tx, rx) = bounded::<Msg>(64);
    let stop = AtomicBool::new(false);
    let paused = AtomicBool::new(false);
    let parked = AtomicBool::new(false);
    let readers = AtomicUsize::new(0); // scan, mount and plan threads still running
    let mut model = first_model(opts);
    // the terminal or keyboard failed while a job ran: the job is not cancelled for that;
    // the menu leaves once it ends
    let mut broken: Option<String> = None;
    let (exit, mounted) = std::thread::scope(|s| {
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
        let mut exec = Exec::new(s, tx.clone(), &readers, (&paused, &parked), &opts.mount_at);
        exec.rescan(None);
        let mut draw = true;
        let r = loop {
            if draw && broken.is_none() {
                if let Err(e) = term.draw(|f| view::view(&model, f)) {
                    if !exec.job_running() {
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
                Msg::Reply(id, m) => match exec.reply(id, *m, model.busy.is_some()) {
                    Some(m) => m,
                    None => continue,
                },
                m => m,
            };
            // the clock only shows on the progress screen: other ticks draw nothing (a
            // serial console is slow)
            draw = !matches!(msg, Msg::Tick(..)) || matches!(model.screen, app::Screen::Running(_));
            if let Msg::InputFailed(e) = msg {
                // a menu without a keyboard is useless: leave, so that PID 1 starts the line
                // console in its place; a running job runs to its end first
                if !exec.job_running() {
                    break Err(std::io::Error::other(e));
                }
                broken = Some(e);
                continue;
            }
            let job_ended = matches!(msg, Msg::Job(crate::jobs::Event::Finished { .. }));
            if job_ended {
                exec.job_ended(model.storage.as_ref().map(|s| s.dir.clone()));
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
            if let Some(exit) = exec.execute(cmd, &mut model, &mut term) {
                break Ok(exit);
            }
        };
        exec.cancel(); // never leaves a job behind; the scope joins it
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
        (r, exec.mounted())
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

/// Feeds key presses until `stop`; polls so that it can be joined, and reads nothing while
/// `paused` (a shell has the terminal). Arrow keys whose bytes a serial line split are put
/// back together first ([`keys::Joiner`]).
fn input(tx: Sender<Msg>, stop: &AtomicBool, paused: &AtomicBool, parked: &AtomicBool) {
    use crossterm::event::{poll, read, Event};
    let mut joiner = keys::Joiner::default();
    while !stop.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) {
            parked.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        parked.store(false, Ordering::SeqCst);
        let wait = if joiner.waiting() {
            keys::WAIT
        } else {
            Duration::from_millis(100)
        };
        let event = match poll(wait) {
            Ok(true) => read(),
            Ok(false) => {
                // an Esc with nothing after it in time is a real one
                let late = joiner.flush();
                if late.into_iter().any(|k| tx.send(Msg::Key(k)).is_err()) {
                    return;
                }
                continue;
            }
            Err(e) => Err(e),
        };
        let msgs = match event {
            // Ctrl-L repaints the whole screen, as in most terminal programs
            Ok(Event::Key(k))
                if k.code == crossterm::event::KeyCode::Char('l')
                    && k.modifiers
                        .contains(crossterm::event::KeyModifiers::CONTROL) =>
            {
                vec![Msg::Redraw]
            }
            Ok(Event::Key(k)) => joiner.push(k).into_iter().map(Msg::Key).collect(),
            Ok(_) => vec![Msg::Redraw], // a resize
            Err(e) => vec![Msg::InputFailed(format!("reading the keyboard: {e}"))],
        };
        for msg in msgs {
            let failed = matches!(msg, Msg::InputFailed(_));
            if tx.send(msg).is_err() || failed {
                return;
            }
        }
    }
}

/// Fixtures for the TUI's tests.
#[cfg(test)]
pub(crate) mod testing;

/// Snapshot tests of every screen (the module keeps the name `tests`: insta names the
/// snapshot files after it).
#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;

#[cfg(test)]
mod update_tests;
