//! Pure drawing of a [`Model`] (STYLE §6): no I/O, nothing but the frame. Designed for the
//! Linux text console: 16 colours, no mouse, plain box drawing, and every key in the footer.

use super::app::Model;
use crate::inspect::DiskReport;
use crate::units::human_bytes;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

/// Draws the whole screen.
pub fn view(model: &Model, f: &mut Frame) {
    let area = f.area();
    let [title, disks, parts, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(disk_rows(model, area)),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                " Lifeboat ",
                Style::default()
                    .fg(Color::Black)
                    .bg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(" disks attached to this computer"),
        ])),
        title,
    );
    draw_disks(model, f, disks);
    draw_partitions(model.disks.get(model.selected), f, parts);
    let line = match (&model.error, model.scanning) {
        (Some(e), _) => Line::styled(
            format!(" scan failed: {e} (r tries again)"),
            Style::default().fg(Color::Red),
        ),
        (None, true) => Line::raw(" scanning..."),
        (None, false) => Line::styled(
            " Nothing is written to any disk from this screen.",
            Style::default().fg(Color::DarkGray),
        ),
    };
    f.render_widget(Paragraph::new(line), status);
    f.render_widget(Paragraph::new(footer_line()), footer);
    if model.help {
        draw_help(f, area);
    }
}

fn disk_rows(model: &Model, area: Rect) -> u16 {
    // borders + header + one row per disk, leaving room for the partitions
    let want = model.disks.len().max(1) as u16 + 3;
    want.min(area.height.saturating_sub(8).max(4))
}

fn footer_line() -> Line<'static> {
    let key = |k: &'static str| {
        Span::styled(
            k,
            Style::default()
                .fg(Color::Black)
                .bg(Color::Gray)
                .add_modifier(Modifier::BOLD),
        )
    };
    Line::from(vec![
        key(" Up/Down "),
        Span::raw(" select  "),
        key(" r "),
        Span::raw(" rescan  "),
        key(" ? "),
        Span::raw(" help  "),
        key(" q "),
        Span::raw(" quit"),
    ])
}

fn flags(d: &DiskReport) -> String {
    let mut f = Vec::new();
    if d.is_boot {
        f.push("BOOT MEDIUM".to_string());
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
    let block = Block::default().borders(Borders::ALL).title(" Disks ");
    if model.disks.is_empty() {
        let text = if model.scanning {
            "Looking for disks..."
        } else {
            "No disks found. Attach one and press r."
        };
        f.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let rows = model.disks.iter().enumerate().map(|(i, d)| {
        let transport = d
            .transport
            .map(|t| format!("{t:?}").to_lowercase())
            .unwrap_or_else(|| "-".into());
        let style = if i == model.selected {
            Style::default()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD)
        } else if d.is_boot {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(if i == model.selected { ">" } else { " " }),
            Cell::from(d.path.display().to_string()),
            Cell::from(human_bytes(d.size_bytes)),
            Cell::from(transport),
            Cell::from(d.model.clone().unwrap_or_else(|| "-".into())),
            Cell::from(flags(d)),
        ])
        .style(style)
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Fill(3),
            Constraint::Fill(2),
        ],
    )
    .header(
        Row::new(vec!["", "disk", "size", "bus", "model", ""])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(block);
    f.render_widget(table, area);
}

fn draw_partitions(disk: Option<&DiskReport>, f: &mut Frame, area: Rect) {
    let Some(d) = disk else {
        f.render_widget(Block::default().borders(Borders::ALL), area);
        return;
    };
    let title = format!(
        " {} : {} table, {}-byte sectors{} ",
        d.path.display(),
        d.table.map_or("no".to_string(), |t| t.as_str().to_string()),
        d.logical_sector_size,
        d.serial
            .as_deref()
            .map(|s| format!(", serial {s}"))
            .unwrap_or_default()
    );
    let block = Block::default().borders(Borders::ALL).title(title);
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
        let text = match &d.fs {
            Some(fs) => format!(
                "No partitions: the whole disk holds {} {}",
                fs.kind.display_name(),
                fs.label.as_deref().unwrap_or("")
            ),
            None => "No partitions and no filesystem found.".to_string(),
        };
        f.render_widget(Paragraph::new(text).block(block), area);
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
    .header(
        Row::new(vec!["  #", "size", "fs", "label", "type", "", ""])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(block);
    f.render_widget(table, area);
}

fn draw_help(f: &mut Frame, area: Rect) {
    let lines = vec![
        Line::styled("Keys", Style::default().add_modifier(Modifier::BOLD)),
        Line::raw(""),
        Line::raw("Up/Down, j/k   choose a disk"),
        Line::raw("Home/End       first / last disk"),
        Line::raw("r, F5          look for disks again (after plugging one in)"),
        Line::raw("?, F1          this help"),
        Line::raw("q, Esc         leave"),
        Line::raw(""),
        Line::raw("This screen only shows disks. To image, restore, clone or"),
        Line::raw("verify, leave and use the lifeboat commands (lifeboat --help);"),
        Line::raw("the wizards for them are not built yet."),
        Line::raw(""),
        Line::styled(
            "Any key closes this help.",
            Style::default().fg(Color::DarkGray),
        ),
    ];
    let w = 66.min(area.width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Help ")),
        r,
    );
}
