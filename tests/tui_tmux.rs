//! The real binary's TUI in a real terminal: tmux runs `lifeboat tui` at 80x25, keys are
//! sent, and the screen is read back. Checks that it draws the Home screen and its footer,
//! opens help with `?`, closes it with any key, and leaves cleanly with `q` (exit code 0).
//! And that an arrow key whose bytes arrive 30 ms apart (Esc, then `[B`, as a slow serial line
//! may deliver them) moves in the storage screen instead of going back as Esc, while a lone
//! Esc still goes back. Needs tmux; under CI a missing tmux fails the test.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A tmux session, killed when dropped.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// Waits until the pane shows `what`, returning the screen.
fn wait_for(session: &str, what: &str) -> String {
    let start = Instant::now();
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if screen.contains(what) {
            return screen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what:?} never appeared:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `lifeboat tui` in a detached 80x25 tmux session named after `name`: the session's
/// name, and the guard that kills it even when an assertion fails. `None` (a skip) without
/// tmux, which under CI is a failure.
fn start_tui(name: &str) -> Option<(String, Session)> {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            !common::in_ci(),
            "tmux is not installed (bash .ci/install-deps.sh)"
        );
        eprintln!("SKIP: tmux not installed");
        return None;
    }
    let session = format!("lifeboat-{name}-{}", std::process::id());
    let end = Session(session.clone());
    let cmd = format!(
        "{} tui; echo EXITED rc=$?; sleep 30",
        env!("CARGO_BIN_EXE_lifeboat")
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "80",
        "-y",
        "25",
        &cmd,
    ]);
    Some((session, end))
}

#[test]
fn home_help_and_quit_in_a_real_terminal() {
    let Some((session, _end)) = start_tui("tui") else {
        return;
    };
    // the footer is the last line of a frame: once it is there, the frame is whole (a
    // capture can land in the middle of the first frame on a busy machine)
    let screen = wait_for(&session, "q  quit");
    assert!(screen.contains("Lifeboat"), "{screen}");
    assert!(screen.contains("Disks"), "{screen}");
    tmux(&["send-keys", "-t", &session, "?"]);
    wait_for(&session, "Help");
    tmux(&["send-keys", "-t", &session, "x"]);
    let start = Instant::now();
    while tmux(&["capture-pane", "-p", "-t", &session]).contains("Help") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "help did not close"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux(&["send-keys", "-t", &session, "q"]);
    let screen = wait_for(&session, "EXITED");
    tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("EXITED rc=0"), "{screen}");
    assert!(
        !screen.contains("Disks"),
        "the alternate screen was left on exit:\n{screen}"
    );
}

/// Whether the pane shows `what` within `wait`.
fn shows_within(session: &str, what: &str, wait: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < wait {
        if tmux(&["capture-pane", "-p", "-t", session]).contains(what) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn an_arrow_key_split_on_a_slow_line_is_not_esc() {
    let Some((session, _end)) = start_tui("keys") else {
        return;
    };
    wait_for(&session, "q  quit");
    // the storage screen, where Esc goes back home
    tmux(&["send-keys", "-t", &session, "s"]);
    wait_for(&session, "where images are kept");
    // Down, its bytes 30 ms apart as a serial line may deliver them: Esc, then "[B"
    tmux(&["send-keys", "-t", &session, "Escape"]);
    std::thread::sleep(Duration::from_millis(30));
    tmux(&["send-keys", "-t", &session, "-l", "[B"]);
    assert!(
        !shows_within(&session, "q  quit", Duration::from_millis(800)),
        "a split Down went back home as Esc:\n{}",
        tmux(&["capture-pane", "-p", "-t", &session])
    );
    assert!(tmux(&["capture-pane", "-p", "-t", &session]).contains("where images are kept"));
    // a real Esc, alone, still goes back
    tmux(&["send-keys", "-t", &session, "Escape"]);
    wait_for(&session, "q  quit");
    tmux(&["send-keys", "-t", &session, "q"]);
    let screen = wait_for(&session, "EXITED");
    assert!(screen.contains("EXITED rc=0"), "{screen}");
}
