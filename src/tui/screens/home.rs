//! Home, the disks attached to this computer with the highlighted disk's partitions, and
//! Details, everything known about that disk. Nothing is written from either; Home's keys
//! open the wizards, the storage, a shell, and (in the rescue system) power off and reboot.

use super::clone::CloneWiz;
use super::{excluded, step_cursor, WRITES_NOTHING};
use crate::inspect::DiskReport;
use crate::tui::app::{open, Action, Ask, Cmd, Model, Screen};
use crate::tui::widgets::{bold, boxed, dim, disk_table, partitions_summary, transport, Keys};
use crate::units::human_bytes;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

/// Home's title.
pub(crate) const TITLE: &str = "disks attached to this computer";
/// Details' title.
pub(crate) const DETAILS_TITLE: &str = "disk details";
/// Home's and Details' status line.
pub(crate) const STATUS: &str = WRITES_NOTHING;
/// Home's and Details' help.
pub(crate) const HELP: [&str; 12] = [
    "This screen lists every disk. Nothing is written from here.",
    "",
    "i  make an image of a disk into the storage",
    "r  restore an image onto a disk (erases that disk)",
    "c  clone one disk onto another (erases the second)",
    "v  verify an image: re-read it and check every hash",
    "o  browse an image: copy single files out of it, without restoring",
    "s  choose the storage: a USB drive or partition for images",
    "n  the network: interfaces, addresses, DHCP again",
    "Enter  everything known about the highlighted disk",
    "F5  look for disks again (after plugging one in)",
    "x  a shell; exit returns here",
];

/// Home's footer.
pub(crate) fn footer(model: &Model) -> Keys {
    let mut k = vec![
        ("Up/Down", "select"),
        ("Enter", "details"),
        ("i", "image"),
        ("r", "restore"),
        ("c", "clone"),
        ("v", "verify"),
        ("o", "browse"),
        ("s", "storage"),
        ("n", "network"),
        ("F5", "rescan"),
        ("x", "shell"),
    ];
    if model.locked_images > 0 {
        k.push(("u", "unlock"));
    }
    if model.rescue {
        k.push(("p", "power off"));
        k.push(("b", "reboot"));
    }
    k.push(("q", "quit"));
    k
}

/// Details' footer.
pub(crate) fn details_footer() -> Keys {
    vec![("Esc", "back")]
}

/// A key on Home.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let n = model.disks.len();
    if step_cursor(&mut model.selected, n, k.code) {
        return None;
    }
    match k.code {
        // not Esc: it goes back one step elsewhere, and the home screen has none to go back
        // to. (An arrow key split on a serial line is put together before it gets here:
        // tui::keys)
        KeyCode::Char('q') => Some(Cmd::Quit),
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
        KeyCode::Char('o') => {
            open(model, Action::Browse);
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
        KeyCode::Char('n') => super::network::open(model),
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

/// A key on Details: Esc, Enter or q go back.
pub(crate) fn details_key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    if matches!(k.code, KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q')) {
        model.screen = Screen::Home;
    }
    None
}

/// Draws Home: the disks, and the highlighted one's partitions.
pub(crate) fn draw(model: &Model, f: &mut Frame, area: Rect) {
    let want = model.disks.len().max(1) as u16 + 3;
    let h = want.min(area.height.saturating_sub(5).max(4));
    let [disks, parts] = Layout::vertical([Constraint::Length(h), Constraint::Min(3)]).areas(area);
    draw_disks(model, f, disks);
    draw_partitions(model.disks.get(model.selected), f, parts);
}

fn flags(model: &Model, d: &DiskReport) -> String {
    let mut f = Vec::new();
    if d.is_boot {
        f.push("BOOT MEDIUM".to_string());
    } else if let Some(why) = excluded(model, d) {
        f.push(why.to_string());
    }
    if let Some(b) = &d.busy {
        f.push(format!("in use: {b}"));
    }
    if d.read_only == Some(true) {
        f.push("read-only".into());
    }
    f.join(", ")
}

fn draw_disks(model: &Model, f: &mut Frame, area: Rect) {
    if model.disks.is_empty() {
        let text = if model.scanning {
            "Looking for disks..."
        } else {
            "No disks found. Attach one and press F5."
        };
        f.render_widget(Paragraph::new(text).block(boxed("Disks")), area);
        return;
    }
    let all: Vec<usize> = (0..model.disks.len()).collect();
    f.render_widget(
        disk_table(
            model,
            &all,
            Some(model.selected),
            |d| flags(model, d),
            "Disks",
        ),
        area,
    );
}

fn draw_partitions(disk: Option<&DiskReport>, f: &mut Frame, area: Rect) {
    let Some(d) = disk else {
        f.render_widget(Block::default().borders(Borders::ALL), area);
        return;
    };
    let title = format!(
        "{} : {} table, {}-byte sectors{}",
        d.path.display(),
        d.table.map_or("no".to_string(), |t| t.as_str().to_string()),
        d.logical_sector_size,
        d.serial
            .as_deref()
            .map(|s| format!(", serial {s}"))
            .unwrap_or_default()
    );
    let block = boxed(&title);
    if let Some(e) = &d.error {
        f.render_widget(
            Paragraph::new(format!("cannot read this disk: {e}"))
                .style(Style::default().fg(Color::Red))
                .wrap(Wrap { trim: true })
                .block(block),
            area,
        );
        return;
    }
    if d.partitions.is_empty() {
        f.render_widget(Paragraph::new(partitions_summary(d)).block(block), area);
        return;
    }
    let rows = d.partitions.iter().map(|p| {
        let used = p
            .used_bytes
            .map(|u| format!("{} used", human_bytes(u)))
            .unwrap_or_default();
        let mount = p
            .mountpoint
            .as_ref()
            .map(|m| format!("mounted at {}", m.display()))
            .unwrap_or_default();
        Row::new(vec![
            Cell::from(format!("{:>3}", p.number)),
            Cell::from(human_bytes(p.size_bytes)),
            Cell::from(p.fs.unwrap_or("-")),
            Cell::from(p.label.clone().unwrap_or_else(|| "-".into())),
            Cell::from(p.type_name.unwrap_or("")),
            Cell::from(used),
            Cell::from(mount),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(14),
            Constraint::Fill(3),
            Constraint::Length(17),
            Constraint::Fill(2),
        ],
    )
    .header(Row::new(vec!["  #", "size", "fs", "label", "type", "", ""]).style(bold()))
    .block(block);
    f.render_widget(table, area);
}

/// Draws Details.
pub(crate) fn draw_details(model: &Model, f: &mut Frame, area: Rect) {
    let Some(d) = model.disks.get(model.selected) else {
        return;
    };
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut lines = vec![
        Line::from(vec![
            Span::styled(d.path.display().to_string(), bold()),
            Span::raw(format!("  {}", flags(model, d))),
        ]),
        Line::raw(format!("model        {}", opt(&d.model))),
        Line::raw(format!("serial       {}", opt(&d.serial))),
        Line::raw(format!(
            "size         {} ({} bytes)",
            human_bytes(d.size_bytes),
            d.size_bytes
        )),
        Line::raw(format!(
            "sectors      {} bytes logical, {} physical",
            d.logical_sector_size, d.physical_sector_size
        )),
        Line::raw(format!(
            "bus          {}{}",
            transport(d),
            if d.removable == Some(true) {
                ", removable"
            } else {
                ""
            }
        )),
        Line::raw(format!(
            "table        {}{}",
            d.table.map_or("none", |t| t.as_str()),
            d.disk_id
                .as_deref()
                .map(|i| format!(", disk ID {i}"))
                .unwrap_or_default()
        )),
    ];
    if let Some(b) = &d.backing_file {
        lines.push(Line::raw(format!("file         {}", b.display())));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("partitions", bold()));
    for p in &d.partitions {
        lines.push(Line::raw(format!(
            "  {:>2}  {}  {}  {}  starts at {}",
            p.number,
            p.path
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string()),
            human_bytes(p.size_bytes),
            p.type_name.unwrap_or(&p.part_type),
            human_bytes(p.start_bytes)
        )));
        lines.push(Line::raw(format!(
            "      {} label {}, uuid {}{}",
            p.fs.unwrap_or("no filesystem"),
            opt(&p.label),
            opt(&p.uuid),
            p.mountpoint
                .as_ref()
                .map(|m| format!(", mounted at {}", m.display()))
                .unwrap_or_default()
        )));
    }
    if d.partitions.is_empty() {
        lines.extend(partitions_summary(d));
    }
    for diag in &d.diagnostics {
        lines.push(Line::styled(format!("note: {}", diag.message), dim()));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed("Disk details")),
        area,
    );
}

#[cfg(test)]
mod tests {
    /// The walk-through qemu/demo.sh prints before the boot (and the README repeats) names
    /// keys that the menu's home screen really has, for what the hint says they do.
    #[test]
    fn the_demo_hint_names_the_home_screens_keys() {
        let hint = include_str!("../../../qemu/demo.sh");
        let keys = super::footer(&crate::tui::testing::storage_model());
        let mut steps = 0;
        for line in hint.lines() {
            let Some((key, rest)) = line.strip_prefix("  ").and_then(|l| l.split_once("  ")) else {
                continue;
            };
            if key.len() != 1 {
                continue;
            }
            let word = rest.split(':').next().unwrap_or("");
            assert!(
                keys.iter().any(|(k, w)| *k == key && *w == word),
                "demo.sh says {key} is {word}; the menu's keys are {keys:?}"
            );
            steps += 1;
        }
        assert_eq!(
            steps, 4,
            "the demo's four steps: storage, image, restore, verify"
        );
        let readme = include_str!("../../../README.md");
        for step in [
            "`s` choose USB-BACKUP",
            "`i` image",
            "`r` restore",
            "`v` verify",
        ] {
            assert!(readme.contains(step), "README's quick start lacks {step}");
        }
    }
}
