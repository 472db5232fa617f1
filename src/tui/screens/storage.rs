//! Storage: choosing the filesystem where images are kept (usually a USB drive). Enter asks
//! the loop to mount it (unless it is mounted already) and list its images; the chosen disk
//! is never offered as a source or a target afterwards. `n` opens the network store form
//! ([`super::net_store`]) in its place, mounted at the same folder.

use super::net_store::{self, NetForm};
use super::{step_cursor, WRITES_NOTHING};
use crate::inspect::DiskReport;
use crate::tui::app::{Cmd, Model, Screen};
use crate::tui::widgets::{bold, boxed, dim, highlight, Keys};
use crate::units::human_bytes;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use std::path::PathBuf;

/// Filesystems an image store may have (blkid names).
pub const STORE_FILESYSTEMS: [&str; 6] = crate::store::local::STORE_FILESYSTEMS;

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

/// The title.
pub(crate) const TITLE: &str = "where images are kept";
/// The status line.
pub(crate) const STATUS: &str = WRITES_NOTHING;
/// The help.
pub(crate) const HELP: [&str; 5] = [
    "Choose the filesystem where images are kept, usually a USB drive.",
    "It is mounted read-write when you press Enter, and never used as",
    "a source or a target. ext4, FAT32, exFAT and NTFS work.",
    "",
    "n  a network store instead: an SMB share, an NFS export or SFTP.",
];

/// The help, with the network store form open or not.
pub(crate) fn help(model: &Model) -> Vec<&'static str> {
    match &model.net_store {
        Some(_) => net_store::HELP.to_vec(),
        None => HELP.to_vec(),
    }
}

/// The footer.
pub(crate) fn footer(model: &Model) -> Keys {
    if let Some(form) = &model.net_store {
        return net_store::footer(form);
    }
    vec![
        ("Up/Down", "select"),
        ("Enter", "use this one"),
        ("n", "network store"),
        ("F5", "rescan"),
        ("Esc", "back"),
    ]
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

/// A key on Storage.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
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
        KeyCode::Char('n') => {
            model.net_store = Some(NetForm::default());
            None
        }
        KeyCode::F(5) | KeyCode::Char('R') if !model.scanning => {
            model.scanning = true;
            Some(Cmd::Rescan)
        }
        _ => None,
    }
}

/// Draws Storage, with the highlighted row at `cursor`.
pub(crate) fn draw(model: &Model, cursor: usize, f: &mut Frame, area: Rect) {
    if let Some(form) = &model.net_store {
        net_store::draw(form, f, area);
        return;
    }
    let choices = store_choices(&model.disks);
    let [list, note] = Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(area);
    if choices.is_empty() {
        f.render_widget(
            Paragraph::new(vec![
                Line::raw("No filesystem that can hold images was found."),
                Line::raw(
                    "Plug in a USB drive formatted as ext4, FAT32, exFAT or NTFS, then press F5.",
                ),
            ])
            .wrap(Wrap { trim: true })
            .block(boxed("Choose where images are kept")),
            list,
        );
    } else {
        let rows = choices.iter().enumerate().map(|(i, c)| {
            Row::new(vec![
                Cell::from(if i == cursor { ">" } else { " " }),
                Cell::from(c.device.display().to_string()),
                Cell::from(human_bytes(c.size_bytes)),
                Cell::from(c.fs),
                Cell::from(c.label.clone().unwrap_or_else(|| "-".into())),
                Cell::from(
                    c.used_bytes
                        .map(|u| format!("{} free", human_bytes(c.size_bytes.saturating_sub(u))))
                        .unwrap_or_default(),
                ),
                Cell::from(match (&c.mountpoint, c.removable) {
                    (Some(m), _) => format!("at {}", m.display()),
                    (None, true) => "USB / removable".to_string(),
                    (None, false) => c.transport.clone().unwrap_or_default(),
                }),
            ])
            .style(if i == cursor {
                highlight()
            } else {
                Style::default()
            })
        });
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(1),
                    Constraint::Length(16),
                    Constraint::Length(10),
                    Constraint::Length(6),
                    Constraint::Fill(2),
                    Constraint::Length(16),
                    Constraint::Fill(2),
                ],
            )
            .header(Row::new(vec!["", "filesystem", "size", "type", "label", "", ""]).style(bold()))
            .block(boxed("Choose where images are kept")),
            list,
        );
    }
    let current = match &model.storage {
        Some(s) => format!("Now: {}", s.dir.display()),
        None => "Now: none chosen.".to_string(),
    };
    f.render_widget(
        Paragraph::new(vec![
            Line::raw(current),
            Line::raw("The chosen filesystem is mounted read-write only when you press Enter; it is never imaged, restored to or cloned to."),
        ])
        .style(dim())
        .wrap(Wrap { trim: true }),
        note,
    );
}
