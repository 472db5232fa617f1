//! Verify: choose an image from the storage; Enter re-reads it (and the images it builds on)
//! and checks every chunk's hash. Nothing is written. The state is the highlighted row of
//! [`Screen::Verify`].

use super::image_list::{self, image_order};
use super::progress::{start, JobKind};
use super::{short_name, step_cursor, WRITES_NOTHING};
use crate::tui::app::{Cmd, Model, Screen};
use crate::tui::widgets::Keys;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::Frame;
use std::path::PathBuf;

/// The title.
pub(crate) const TITLE: &str = "verify an image";
/// The status line.
pub(crate) const STATUS: &str = WRITES_NOTHING;
/// The help.
pub(crate) const HELP: [&str; 2] = [
    "Verifying re-reads every chunk of an image (and of the images it",
    "builds on) and checks its hash. Nothing is written.",
];

/// The footer.
pub(crate) fn footer() -> Keys {
    vec![("Up/Down", "select"), ("Enter", "verify"), ("Esc", "back")]
}

/// A key on Verify.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
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

/// Draws the image list with the image at `cursor` highlighted.
pub(crate) fn draw(model: &Model, cursor: usize, f: &mut Frame, area: Rect) {
    image_list::draw(model, cursor, "Choose the image to verify", f, area)
}
