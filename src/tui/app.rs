//! The TUI's state and its pure transition function (Elm style, STYLE §6): [`Model`] holds
//! everything the screen shows, [`update`] turns one [`Msg`] into a new model and at most one
//! [`Cmd`] for the loop to carry out, and never does I/O itself.
//!
//! Built so far: the Home screen (disks, their partitions and filesystems, the boot medium
//! marked), help, rescan and quit. The image, restore and clone wizards are not built yet;
//! their keys are not offered.

use crate::inspect::DiskReport;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Everything the screen shows.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The disks, as the last scan found them.
    pub disks: Vec<DiskReport>,
    /// Index into `disks` of the highlighted disk.
    pub selected: usize,
    /// The help overlay is open.
    pub help: bool,
    /// The last scan failed: the whole cause chain, in words.
    pub error: Option<String>,
    /// A scan is running.
    pub scanning: bool,
}

/// Something that happened.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A key was pressed.
    Key(KeyEvent),
    /// The 250 ms ticker.
    Tick,
    /// A scan finished: the disks, or why there are none.
    Devices(Result<Vec<DiskReport>, String>),
}

/// Work for the loop, outside `update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Scan the disks again; the result comes back as [`Msg::Devices`].
    Rescan,
    /// Leave the TUI.
    Quit,
}

/// Applies `msg` to `model`. Pure: no I/O, no terminal.
pub fn update(model: &mut Model, msg: Msg) -> Option<Cmd> {
    match msg {
        Msg::Tick => None,
        Msg::Devices(Ok(disks)) => {
            model.scanning = false;
            model.error = None;
            model.disks = disks;
            model.selected = model.selected.min(model.disks.len().saturating_sub(1));
            None
        }
        Msg::Devices(Err(e)) => {
            model.scanning = false;
            model.error = Some(e);
            None
        }
        Msg::Key(k) if k.kind == KeyEventKind::Release => None,
        Msg::Key(k) => key(model, k),
    }
}

fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
        return Some(Cmd::Quit);
    }
    if model.help {
        // any key closes help; q and Esc do nothing else
        model.help = false;
        return None;
    }
    match k.code {
        KeyCode::Char('q') | KeyCode::Esc => Some(Cmd::Quit),
        KeyCode::Char('?') | KeyCode::F(1) => {
            model.help = true;
            None
        }
        KeyCode::Up | KeyCode::Char('k') => {
            model.selected = model.selected.saturating_sub(1);
            None
        }
        KeyCode::Down | KeyCode::Char('j') => {
            if model.selected + 1 < model.disks.len() {
                model.selected += 1;
            }
            None
        }
        KeyCode::Home => {
            model.selected = 0;
            None
        }
        KeyCode::End => {
            model.selected = model.disks.len().saturating_sub(1);
            None
        }
        KeyCode::Char('r') | KeyCode::F(5) => {
            if model.scanning {
                return None;
            }
            model.scanning = true;
            Some(Cmd::Rescan)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::testing::disks;

    fn press(m: &mut Model, code: KeyCode) -> Option<Cmd> {
        update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    #[test]
    fn selection_moves_within_the_list() {
        let mut m = Model {
            disks: disks(),
            ..Model::default()
        };
        assert_eq!(press(&mut m, KeyCode::Up), None);
        assert_eq!(m.selected, 0);
        press(&mut m, KeyCode::Down);
        press(&mut m, KeyCode::Char('j'));
        press(&mut m, KeyCode::Down);
        assert_eq!(m.selected, 2, "stops at the last disk");
        press(&mut m, KeyCode::Char('k'));
        assert_eq!(m.selected, 1);
        press(&mut m, KeyCode::Home);
        assert_eq!(m.selected, 0);
        press(&mut m, KeyCode::End);
        assert_eq!(m.selected, 2);
    }

    #[test]
    fn help_opens_and_any_key_closes_it_without_acting() {
        let mut m = Model {
            disks: disks(),
            ..Model::default()
        };
        press(&mut m, KeyCode::Char('?'));
        assert!(m.help);
        assert_eq!(
            press(&mut m, KeyCode::Char('q')),
            None,
            "q closes help only"
        );
        assert!(!m.help);
        assert_eq!(press(&mut m, KeyCode::Char('q')), Some(Cmd::Quit));
    }

    #[test]
    fn rescan_is_asked_once_and_its_result_lands() {
        let mut m = Model {
            disks: disks(),
            selected: 2,
            ..Model::default()
        };
        assert_eq!(press(&mut m, KeyCode::Char('r')), Some(Cmd::Rescan));
        assert_eq!(press(&mut m, KeyCode::Char('r')), None, "already scanning");
        let mut fewer = disks();
        fewer.truncate(1);
        update(&mut m, Msg::Devices(Ok(fewer)));
        assert!(!m.scanning);
        assert_eq!(m.selected, 0, "the selection stays inside the new list");
        update(
            &mut m,
            Msg::Devices(Err("reading /sys/block: denied".into())),
        );
        assert_eq!(m.error.as_deref(), Some("reading /sys/block: denied"));
        assert_eq!(m.disks.len(), 1, "an error keeps what was shown");
        update(&mut m, Msg::Devices(Ok(Vec::new())));
        assert_eq!(m.selected, 0);
        assert!(m.error.is_none());
    }

    #[test]
    fn ctrl_c_quits_even_from_help() {
        let mut m = Model {
            help: true,
            ..Model::default()
        };
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(update(&mut m, Msg::Key(k)), Some(Cmd::Quit));
    }
}
