//! The screens, one module each: a screen's state, its keys (`key`, called by
//! [`update`](super::app::update)) and its drawing (`draw`, called by
//! [`view`](super::view::view)) live together, with the title, footer keys, status line and
//! help text it shows. The top-level [`Screen`](super::app::Screen) enum and the dispatch stay in `app` and `view`.
//!
//! Here: what several screens share, which disks may be offered as a source or a target, the
//! short name typed to confirm an erase, and the cursor keys of every list.

pub mod browse;
pub mod clone;
pub mod done;
pub mod home;
pub mod image;
pub mod image_list;
pub mod net_store;
pub mod network;
pub mod progress;
pub mod restore;
pub mod storage;
pub mod target;
pub mod verify;

use super::app::Model;
use crate::inspect::DiskReport;
use crossterm::event::KeyCode;
use std::path::Path;

/// The status line of a screen that writes nothing.
pub(crate) const WRITES_NOTHING: &str = "Nothing is written to any disk from this screen.";

/// The short name typed to confirm an erase: `sda` for `/dev/sda`, the file name for a file.
pub fn short_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
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

/// Moves `cursor` within `len` rows.
pub(crate) fn step_cursor(cursor: &mut usize, len: usize, code: KeyCode) -> bool {
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
