//! What several screens draw alike: the styles (16 colours, for the Linux console), a boxed
//! block, the disk table with its partition summary, the disk list of a wizard's source and
//! target steps, an error's lines, and a duration as a clock. Pure: nothing but the frame.

use super::app::{Failure, Model};
use super::screens::excluded;
use crate::inspect::DiskReport;
use crate::units::human_bytes;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use std::path::Path;

/// Footer keys: the key's name and what it does ("" when the name says it all).
pub(crate) type Keys = Vec<(&'static str, &'static str)>;

/// Bold, for headings and values.
pub(crate) fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// Dark grey, for notes and what cannot be chosen.
pub(crate) fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

/// Bold red, for what erases or failed.
pub(crate) fn red() -> Style {
    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// Black on yellow, for the row or field under the cursor.
pub(crate) fn highlight() -> Style {
    Style::default()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD)
}

/// A form's field on one line: a `>` when `focused`, `label` padded to `width` columns, and
/// `value`, highlighted when `focused` and bold otherwise.
pub(crate) fn form_field(label: &str, width: usize, value: String, focused: bool) -> Line<'static> {
    Line::from(vec![
        Span::raw(format!(
            " {} {label:<width$} ",
            if focused { ">" } else { " " }
        )),
        Span::styled(value, if focused { highlight() } else { bold() }),
    ])
}

/// A bordered block titled `title`.
pub(crate) fn boxed(title: &str) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "))
}

/// The disk's bus in lower case ("usb", "nvme"), or "-".
pub(crate) fn transport(d: &DiskReport) -> String {
    d.transport
        .map(|t| format!("{t:?}").to_lowercase())
        .unwrap_or_else(|| "-".into())
}

/// A table of `rows` disks (indexes into `model.disks`) with `cursor` highlighted.
pub(crate) fn disk_table<'a>(
    model: &'a Model,
    rows: &[usize],
    cursor: Option<usize>,
    extra: impl Fn(&DiskReport) -> String,
    title: &'a str,
) -> Table<'a> {
    let body = rows.iter().enumerate().map(|(n, &i)| {
        let d = &model.disks[i];
        let style = if Some(n) == cursor {
            highlight()
        } else if excluded(model, d).is_some() {
            dim()
        } else {
            Style::default()
        };
        Row::new(vec![
            Cell::from(if Some(n) == cursor { ">" } else { " " }),
            Cell::from(d.path.display().to_string()),
            Cell::from(human_bytes(d.size_bytes)),
            Cell::from(transport(d)),
            Cell::from(d.model.clone().unwrap_or_else(|| "-".into())),
            Cell::from(extra(d)),
        ])
        .style(style)
    });
    Table::new(
        body,
        [
            Constraint::Length(1),
            Constraint::Length(14),
            Constraint::Length(10),
            Constraint::Length(7),
            Constraint::Fill(4),
            Constraint::Fill(3),
        ],
    )
    .header(Row::new(vec!["", "disk", "size", "bus", "model", ""]).style(bold()))
    .block(boxed(title))
}

/// One line per partition of `d` (number, size, filesystem, label, used), or what the
/// whole disk holds when it has none.
pub(crate) fn partitions_summary(d: &DiskReport) -> Vec<Line<'static>> {
    if d.partitions.is_empty() {
        return vec![Line::raw(match &d.fs {
            Some(fs) => format!(
                "  no partitions: the whole disk holds {} {}",
                fs.kind.display_name(),
                fs.label.as_deref().unwrap_or("")
            ),
            None => "  no partitions and no filesystem found".to_string(),
        })];
    }
    d.partitions
        .iter()
        .map(|p| {
            Line::raw(format!(
                "  {:>2}  {:>10}  {:<6} {:<14} {}",
                p.number,
                human_bytes(p.size_bytes),
                p.fs.unwrap_or("-"),
                p.label.clone().unwrap_or_else(|| "-".into()),
                p.used_bytes
                    .map(|u| format!("{} used", human_bytes(u)))
                    .unwrap_or_default()
            ))
        })
        .collect()
}

fn excluded_note(model: &Model, skip: Option<&Path>) -> Line<'static> {
    let mut out: Vec<String> = model
        .disks
        .iter()
        .filter_map(|d| excluded(model, d).map(|w| format!("{} ({w})", d.path.display())))
        .collect();
    if let Some(p) = skip {
        out.push(format!("{} (the source)", p.display()));
    }
    if out.is_empty() {
        Line::raw("")
    } else {
        Line::styled(format!("Not offered: {}.", out.join(", ")), dim())
    }
}

/// A wizard's disk list: `rows` (indexes into `model.disks`) titled `title` with `extra`
/// in the last column, the partitions of the disk at `cursor`, and which disks are not
/// offered (`skip` too, the clone's source).
#[allow(clippy::too_many_arguments)] // one call per wizard step; a struct would only rename them
pub(crate) fn draw_source_list(
    model: &Model,
    rows: &[usize],
    cursor: usize,
    title: &str,
    extra: impl Fn(&DiskReport) -> String,
    skip: Option<&Path>,
    f: &mut Frame,
    area: Rect,
) {
    let h = (rows.len() as u16 + 3)
        .min(area.height.saturating_sub(5))
        .max(3);
    let [list, parts, note] = Layout::vertical([
        Constraint::Length(h),
        Constraint::Min(2),
        Constraint::Length(1),
    ])
    .areas(area);
    if rows.is_empty() {
        f.render_widget(
            Paragraph::new("No disk can be chosen here. Attach one and press Esc, then F5.")
                .block(boxed(title)),
            list,
        );
    } else {
        f.render_widget(disk_table(model, rows, Some(cursor), extra, title), list);
    }
    if let Some(&i) = rows.get(cursor) {
        let d = &model.disks[i];
        f.render_widget(
            Paragraph::new(partitions_summary(d)).block(boxed(&format!("on {}", d.path.display()))),
            parts,
        );
    }
    f.render_widget(Paragraph::new(excluded_note(model, skip)), note);
}

/// An error in lines: what failed, each cause, and what to do.
pub(crate) fn failure_lines(e: &Failure) -> Vec<Line<'static>> {
    let mut lines = vec![Line::styled(format!("Failed while {}.", e.what), red())];
    for (n, c) in e.causes.iter().enumerate() {
        let lead = if n == 0 { "  " } else { "  because: " };
        lines.push(Line::raw(format!("{lead}{c}")));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled("What to do: ", bold()),
        Span::raw(e.advice.clone()),
    ]));
    lines
}

/// `h:mm:ss` or `m:ss`.
pub(crate) fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}
