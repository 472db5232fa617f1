//! Pure drawing of a [`Model`] (STYLE §6): no I/O, nothing but the frame. Designed for the
//! Linux text console: 16 colours, no mouse, plain box drawing, and every key in the footer.

use super::app::{
    can_cancel, excluded, image_order, image_rows, images_of, short_name, sources, store_choices,
    targets, typing, Ask, CloneStep, CloneWiz, Done, Failure, ImageKind, ImageRow, ImageStep,
    ImageWiz, JobKind, Model, RestoreStep, RestoreWiz, Running, Screen,
};
use crate::inspect::DiskReport;
use crate::jobs::chain::utc_stamp;
use crate::jobs::Phase;
use crate::units::human_bytes;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Gauge, Padding, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use std::path::Path;

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn dim() -> Style {
    Style::default().fg(Color::DarkGray)
}

fn red() -> Style {
    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
}

fn highlight() -> Style {
    Style::default()
        .fg(Color::Black)
        .bg(Color::Yellow)
        .add_modifier(Modifier::BOLD)
}

fn boxed(title: &str) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .title(format!(" {title} "))
}

/// Draws the whole screen.
pub fn view(model: &Model, f: &mut Frame) {
    let area = f.area();
    let footer = footer_lines(&footer_keys(model), area.width);
    let footer_h = footer.len().clamp(1, 3) as u16;
    let [title, body, status, footer_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(footer_h),
    ])
    .areas(area);
    draw_title(model, f, title);
    match &model.screen {
        Screen::Home => draw_home(model, f, body),
        Screen::Details => draw_details(model, f, body),
        Screen::Storage { cursor, .. } => draw_storage(model, *cursor, f, body),
        Screen::Image(w) => draw_image(model, w, f, body),
        Screen::Restore(w) => draw_restore(model, w, f, body),
        Screen::Clone(w) => draw_clone(model, w, f, body),
        Screen::Verify { cursor } => {
            draw_images(model, *cursor, "Choose the image to verify", f, body)
        }
        Screen::Running(r) => draw_running(model, r, f, body),
        Screen::Done(d) => draw_done(d, f, body),
    }
    f.render_widget(Paragraph::new(status_line(model)), status);
    f.render_widget(Paragraph::new(footer), footer_area);
    if let Some(b) = &model.busy {
        draw_popup(
            f,
            area,
            "Please wait",
            vec![Line::raw(b.clone())],
            Color::Cyan,
        );
    }
    if model.help {
        draw_help(model, f, area);
    }
    if let Some(a) = model.ask {
        draw_ask(model, a, f, area);
    }
    if let Some(e) = &model.failure {
        draw_failure(e, f, area);
    }
}

fn screen_title(model: &Model) -> &'static str {
    match &model.screen {
        Screen::Home => "disks attached to this computer",
        Screen::Details => "disk details",
        Screen::Storage { .. } => "where images are kept",
        Screen::Image(w) => match w.step {
            ImageStep::Source => "make an image: 1/3 choose the disk",
            ImageStep::Options => "make an image: 2/3 options",
            ImageStep::Confirm => "make an image: 3/3 check and start",
        },
        Screen::Restore(w) => match w.step {
            RestoreStep::Image => "restore: 1/3 choose the image",
            RestoreStep::Target => "restore: 2/3 choose the disk to overwrite",
            RestoreStep::Confirm => "restore: 3/3 confirm",
        },
        Screen::Clone(w) => match w.step {
            CloneStep::Source => "clone: 1/3 choose the disk to copy",
            CloneStep::Target => "clone: 2/3 choose the disk to overwrite",
            CloneStep::Confirm => "clone: 3/3 confirm",
        },
        Screen::Verify { .. } => "verify an image",
        Screen::Running(_) => "working",
        Screen::Done(d) => match &d.failure {
            None => "finished",
            Some(f) if f.cancelled => "cancelled",
            Some(_) => "failed",
        },
    }
}

fn draw_title(model: &Model, f: &mut Frame, area: Rect) {
    let store = match &model.storage {
        Some(s) => format!("images: {} ", s.dir.display()),
        None => "no image storage chosen ".into(),
    };
    let left = vec![
        Span::styled(
            " Lifeboat ",
            Style::default()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" {}", screen_title(model))),
    ];
    let [l, r] = Layout::horizontal([Constraint::Min(10), Constraint::Length(store.len() as u16)])
        .areas(area);
    f.render_widget(Paragraph::new(Line::from(left)), l);
    f.render_widget(Paragraph::new(Span::styled(store, dim())), r);
}

fn status_line(model: &Model) -> Line<'static> {
    if let (Some(e), Screen::Home | Screen::Storage { .. }) = (&model.scan_error, &model.screen) {
        return Line::styled(
            format!(" scan failed: {e} (F5 tries again)"),
            Style::default().fg(Color::Red),
        );
    }
    if model.scanning {
        return Line::raw(" looking for disks...");
    }
    let text = match &model.screen {
        Screen::Home | Screen::Details | Screen::Storage { .. } | Screen::Verify { .. } => {
            "Nothing is written to any disk from this screen."
        }
        Screen::Image(_) => "Imaging only reads the disk; the image is written to the storage.",
        Screen::Restore(w) if w.step == RestoreStep::Confirm => {
            "Nothing has been written yet. Esc goes back."
        }
        Screen::Clone(w) if w.step == CloneStep::Confirm => {
            "Nothing has been written yet. Esc goes back."
        }
        Screen::Restore(_) | Screen::Clone(_) => {
            "Nothing is written until you confirm by typing the disk's name."
        }
        Screen::Running(_) => "Do not unplug any disk while this runs.",
        Screen::Done(_) => "",
    };
    Line::styled(format!(" {text}"), dim())
}

// ---------------------------------------------------------------------------------------------
// footer

fn footer_keys(model: &Model) -> Vec<(&'static str, &'static str)> {
    if model.failure.is_some() {
        return vec![("Enter", "close")];
    }
    if model.ask.is_some() {
        return vec![("y", "yes"), ("n", "no")];
    }
    if model.help {
        return vec![("any key", "close help")];
    }
    if model.busy.is_some() {
        return vec![];
    }
    let mut k: Vec<(&'static str, &'static str)> = match &model.screen {
        Screen::Home => {
            let mut k = vec![
                ("Up/Down", "select"),
                ("Enter", "details"),
                ("i", "image"),
                ("r", "restore"),
                ("c", "clone"),
                ("v", "verify"),
                ("s", "storage"),
                ("F5", "rescan"),
                ("x", "shell"),
            ];
            if model.rescue {
                k.push(("p", "power off"));
                k.push(("b", "reboot"));
            }
            k.push(("q", "quit"));
            k
        }
        Screen::Details => vec![("Esc", "back")],
        Screen::Storage { .. } => vec![
            ("Up/Down", "select"),
            ("Enter", "use this one"),
            ("F5", "rescan"),
            ("Esc", "back"),
        ],
        Screen::Image(w) => match w.step {
            ImageStep::Source => vec![("Up/Down", "select"), ("Enter", "next"), ("Esc", "back")],
            ImageStep::Options => vec![
                ("Up/Down", "field"),
                ("Left/Right", "change"),
                ("Enter", "next"),
                ("Esc", "back"),
            ],
            ImageStep::Confirm => vec![("Enter", "start"), ("Esc", "back")],
        },
        Screen::Restore(w) => match w.step {
            RestoreStep::Image => vec![("Up/Down", "select"), ("Enter", "next"), ("Esc", "back")],
            RestoreStep::Target => vec![
                ("Up/Down", "select"),
                ("g", "grow last partition"),
                ("n", "new disk ID"),
                ("Enter", "next"),
                ("Esc", "back"),
            ],
            RestoreStep::Confirm => {
                vec![
                    ("type the name", ""),
                    ("Enter", "erase and restore"),
                    ("Esc", "back"),
                ]
            }
        },
        Screen::Clone(w) => match w.step {
            CloneStep::Source => vec![("Up/Down", "select"), ("Enter", "next"), ("Esc", "back")],
            CloneStep::Target => vec![
                ("Up/Down", "select"),
                ("g", "grow last partition"),
                ("n", "new disk ID"),
                ("Enter", "next"),
                ("Esc", "back"),
            ],
            CloneStep::Confirm => {
                vec![
                    ("type the name", ""),
                    ("Enter", "erase and clone"),
                    ("Esc", "back"),
                ]
            }
        },
        Screen::Verify { .. } => vec![("Up/Down", "select"), ("Enter", "verify"), ("Esc", "back")],
        Screen::Running(r) if can_cancel(r) => vec![("c", "cancel")],
        Screen::Running(_) => vec![],
        Screen::Done(_) => vec![("Enter", "back to the disks")],
    };
    if !typing(model) && !matches!(model.screen, Screen::Running(_)) {
        k.push(("?", "help"));
    }
    k
}

fn footer_spans(keys: &[(&'static str, &'static str)]) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (key, what) in keys {
        spans.push(Span::styled(
            format!(" {key} "),
            Style::default()
                .fg(Color::Black)
                .bg(Color::Gray)
                .add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::raw(if what.is_empty() {
            " ".to_string()
        } else {
            format!(" {what}  ")
        }));
    }
    spans
}

/// The footer's lines: whole key-and-action pairs, as many per line as fit `width`.
fn footer_lines(keys: &[(&'static str, &'static str)], width: u16) -> Vec<Line<'static>> {
    let mut lines: Vec<Vec<Span<'static>>> = vec![Vec::new()];
    let mut used = 0usize;
    for pair in footer_spans(keys).chunks(2) {
        let w: usize = pair.iter().map(|s| s.width()).sum();
        if used > 0 && used + w > usize::from(width) {
            lines.push(Vec::new());
            used = 0;
        }
        used += w;
        if let Some(l) = lines.last_mut() {
            l.extend(pair.iter().cloned());
        }
    }
    lines.into_iter().map(Line::from).collect()
}

// ---------------------------------------------------------------------------------------------
// Home and details

fn draw_home(model: &Model, f: &mut Frame, area: Rect) {
    let want = model.disks.len().max(1) as u16 + 3;
    let h = want.min(area.height.saturating_sub(5).max(4));
    let [disks, parts] = Layout::vertical([Constraint::Length(h), Constraint::Min(3)]).areas(area);
    draw_disks(model, f, disks);
    draw_partitions(model.disks.get(model.selected), f, parts);
}

fn transport(d: &DiskReport) -> String {
    d.transport
        .map(|t| format!("{t:?}").to_lowercase())
        .unwrap_or_else(|| "-".into())
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

/// A table of `rows` disks (indexes into `model.disks`) with `cursor` highlighted.
fn disk_table<'a>(
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

fn partitions_summary(d: &DiskReport) -> Vec<Line<'static>> {
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

fn draw_details(model: &Model, f: &mut Frame, area: Rect) {
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

// ---------------------------------------------------------------------------------------------
// Storage

fn draw_storage(model: &Model, cursor: usize, f: &mut Frame, area: Rect) {
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

// ---------------------------------------------------------------------------------------------
// Image wizard

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

#[allow(clippy::too_many_arguments)] // one call per wizard step; a struct would only rename them
fn draw_source_list(
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

fn image_count(model: &Model, d: &DiskReport) -> String {
    match images_of(model, d).len() {
        0 => String::new(),
        1 => "1 image in storage".into(),
        n => format!("{n} images in storage"),
    }
}

fn draw_image(model: &Model, w: &ImageWiz, f: &mut Frame, area: Rect) {
    match w.step {
        ImageStep::Source => draw_source_list(
            model,
            &sources(model),
            w.cursor,
            "Which disk do you want to image?",
            |d| image_count(model, d),
            None,
            f,
            area,
        ),
        ImageStep::Options => draw_image_options(model, w, f, area),
        ImageStep::Confirm => draw_image_confirm(w, f, area),
    }
}

fn field(label: &str, value: String, focused: bool) -> Line<'static> {
    Line::from(vec![
        Span::raw(format!(" {} {label:<12} ", if focused { ">" } else { " " })),
        Span::styled(
            value,
            if focused {
                highlight()
            } else {
                Style::default().add_modifier(Modifier::BOLD)
            },
        ),
    ])
}

fn draw_image_options(model: &Model, w: &ImageWiz, f: &mut Frame, area: Rect) {
    let source = w.source.as_deref().unwrap_or(Path::new("?"));
    let dir = model
        .storage
        .as_ref()
        .map_or("?".to_string(), |s| s.dir.display().to_string());
    let kind_help = match w.kind {
        ImageKind::Full => "everything in use on the disk; the start of a new chain",
        ImageKind::Incremental => "only what changed since the newest image of this disk",
        ImageKind::Differential => "only what changed since the newest full image of this disk",
    };
    let name = match w.kind {
        ImageKind::Full => format!("{}.lbi", w.name),
        _ => "named after its chain, with today's date".to_string(),
    };
    let mut lines = vec![
        Line::raw(format!(" Imaging {} into {dir}", source.display())),
        Line::raw(""),
        field("kind", format!("< {} >", w.kind.as_str()), w.cursor == 0),
        Line::styled(format!("                {kind_help}"), dim()),
        field(
            "file name",
            if w.cursor == 1 && w.kind == ImageKind::Full {
                format!("{}_", name)
            } else {
                name
            },
            w.cursor == 1,
        ),
        field("compression", format!("< {} >", w.level), w.cursor == 2),
        Line::styled(
            "                1 is fastest, 19 is smallest; 3 suits most disks",
            dim(),
        ),
        Line::raw(""),
        Line::raw(
            "   verify       always: the new image is read back and checked before it is called done",
        ),
    ];
    if w.kind != ImageKind::Full {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            " The parent image is found in the storage automatically and shown on the next screen.",
            dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed("Options")),
        area,
    );
}

fn draw_image_confirm(w: &ImageWiz, f: &mut Frame, area: Rect) {
    let Some(p) = &w.plan else {
        return;
    };
    let mut lines = vec![
        Line::raw(format!(
            " disk      {} ({}, {} table)",
            p.source.display(),
            human_bytes(p.size_bytes),
            p.table.unwrap_or("no")
        )),
        Line::from(vec![
            Span::raw(" image     "),
            Span::styled(p.output.display().to_string(), bold()),
        ]),
        Line::raw(format!(
            " kind      {}, compression level {}",
            p.kind, p.level
        )),
    ];
    if let Some(parent) = &p.parent {
        lines.push(Line::raw(format!(
            " parent    {} ({}, a chain of {})",
            parent.path.display(),
            parent.parent_kind,
            parent.chain_length
        )));
    }
    lines.push(Line::raw(format!(
        " to read   {} in use of {} (only blocks the filesystems use)",
        human_bytes(p.copy_bytes),
        human_bytes(p.size_bytes)
    )));
    for r in p.regions.iter().filter(|r| r.partition.is_some()) {
        lines.push(Line::styled(
            format!(
                "           partition {}: {} {}",
                r.partition.unwrap_or(0),
                r.fs.as_deref().unwrap_or("unknown"),
                human_bytes(r.copy_bytes)
            ),
            dim(),
        ));
    }
    let in_parts: u64 = p
        .regions
        .iter()
        .filter(|r| r.partition.is_some())
        .map(|r| r.copy_bytes)
        .sum();
    if p.copy_bytes > in_parts {
        lines.push(Line::styled(
            format!(
                "           boot area, partition tables and gaps: {}",
                human_bytes(p.copy_bytes - in_parts)
            ),
            dim(),
        ));
    }
    for warn in &p.warnings {
        lines.push(Line::styled(
            format!(" note: {warn}"),
            Style::default().fg(Color::Yellow),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " Nothing on the disk is changed. Press Enter to start.",
        bold(),
    ));
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed("Check, then start")),
        area,
    );
}

// ---------------------------------------------------------------------------------------------
// Restore and clone

fn draw_images(model: &Model, cursor: usize, title: &str, f: &mut Frame, area: Rect) {
    let rows = image_rows(&model.images);
    let order = image_order(&model.images);
    let sel = order.get(cursor).copied();
    if rows.is_empty() {
        let dir = model
            .storage
            .as_ref()
            .map_or("?".to_string(), |s| s.dir.display().to_string());
        let mut lines = vec![Line::raw(format!("No images found in {dir}."))];
        if let Some(e) = &model.images_error {
            lines.push(Line::styled(format!("Listing it failed: {e}"), red()));
        }
        lines.push(Line::raw(
            "Choose another storage with s on the home screen, or make an image first (i).",
        ));
        f.render_widget(
            Paragraph::new(lines)
                .wrap(Wrap { trim: true })
                .block(boxed(title)),
            area,
        );
        return;
    }
    let body = rows.iter().map(|r| match r {
        ImageRow::Chain(name, disk) => Row::new(vec![
            Cell::from(""),
            Cell::from(Span::styled(format!("{name}  ({disk})"), bold())),
        ]),
        ImageRow::Image(i) => {
            let e = &model.images[*i];
            let stamp = utc_stamp(e.found.created_unix);
            let when = format!(
                "{}-{}-{} {}:{} UTC",
                &stamp[0..4],
                &stamp[4..6],
                &stamp[6..8],
                &stamp[9..11],
                &stamp[11..13]
            );
            let here = Some(*i) == sel;
            Row::new(vec![
                Cell::from(if here { ">" } else { " " }),
                Cell::from(format!(
                    "  {:<20} {:<13} {:>10}  {}",
                    when,
                    e.found.kind,
                    human_bytes(e.file_bytes),
                    short_name(&e.found.path)
                )),
            ])
            .style(if here { highlight() } else { Style::default() })
        }
    });
    let [list, note] = Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    f.render_widget(
        Table::new(body, [Constraint::Length(1), Constraint::Fill(1)])
            .header(
                Row::new(vec![
                    "",
                    "  taken               kind          file size  file",
                ])
                .style(bold()),
            )
            .block(boxed(title)),
        list,
    );
    if let Some(i) = sel {
        let d = &model.images[i].found.disk;
        f.render_widget(
            Paragraph::new(Line::styled(format!("taken of {}", d.describe()), dim()))
                .wrap(Wrap { trim: true }),
            note,
        );
    }
}

/// The target list with a size note against `need` (the imaged or source disk's size).
#[allow(clippy::too_many_arguments)] // see draw_source_list
fn draw_targets(
    model: &Model,
    rows: &[usize],
    cursor: usize,
    need: Option<u64>,
    origin: Option<&crate::jobs::chain::DiskIdentity>,
    (grow, new_id): (bool, bool),
    does_not_fit: Option<&String>,
    skip: Option<&Path>,
    f: &mut Frame,
    area: Rect,
) {
    let fit_h = if does_not_fit.is_some() { 7 } else { 0 };
    let [list, opts, fit] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(3),
        Constraint::Length(fit_h),
    ])
    .areas(area);
    let note = |d: &DiskReport| {
        let size = match need {
            Some(n) if d.size_bytes < n => format!("smaller than {}", human_bytes(n)),
            Some(n) if d.size_bytes > n => "larger".to_string(),
            Some(_) => "same size".to_string(),
            None => String::new(),
        };
        let me = crate::jobs::chain::DiskIdentity::of_report(d);
        match origin {
            Some(o) if o.differs_from(&me).is_none() => "the imaged disk".to_string(),
            _ => size,
        }
    };
    draw_source_list(
        model,
        rows,
        cursor,
        "Which disk do you want to OVERWRITE?",
        note,
        skip,
        f,
        list,
    );
    let onoff = |b: bool| if b { "on " } else { "off" };
    f.render_widget(
        Paragraph::new(vec![
            Line::raw(format!(
                " [g] grow the last partition to the end of a larger disk: {}",
                onoff(grow)
            )),
            Line::raw(format!(
                " [n] give the copy a new disk ID (keep both disks attached later): {}",
                onoff(new_id)
            )),
            Line::styled(" Everything written is read back and checked.", dim()),
        ]),
        opts,
    );
    if let Some(why) = does_not_fit {
        f.render_widget(
            Paragraph::new(vec![
                Line::styled("This disk is too small.", red()),
                Line::raw(why.clone()),
                Line::raw("Choose a larger disk. Nothing was written."),
            ])
            .wrap(Wrap { trim: true })
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .border_style(Style::default().fg(Color::Red))
                    .title(" Does not fit "),
            ),
            fit,
        );
    }
}

fn erase_box(
    model: &Model,
    target: &Path,
    typed: &str,
    mistyped: bool,
    what: &[Line<'static>],
    f: &mut Frame,
    area: Rect,
) {
    let name = short_name(target);
    let d = model.disks.iter().find(|d| d.path == target);
    let mut lines = vec![Line::styled(
        format!(
            " EVERYTHING ON {} WILL BE ERASED AND REPLACED.",
            target.display()
        ),
        red(),
    )];
    if let Some(d) = d {
        lines.push(Line::raw(format!(
            " {}: {}, {}, serial {}, {}",
            d.path.display(),
            d.model.as_deref().unwrap_or("unknown model"),
            human_bytes(d.size_bytes),
            d.serial.as_deref().unwrap_or("unknown"),
            transport(d)
        )));
        lines.push(Line::raw(" It holds now:"));
        lines.extend(partitions_summary(d));
    }
    lines.push(Line::raw(""));
    lines.extend(what.iter().cloned());
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::raw(format!(" To go ahead, type {name} and press Enter: ")),
        Span::styled(format!("{typed}_"), highlight()),
    ]));
    if mistyped {
        lines.push(Line::styled(
            format!(" That is not {name}. Type {name} exactly, or press Esc to go back."),
            red(),
        ));
    }
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(Color::Red))
                .title(" Confirm "),
        ),
        area,
    );
}

fn layout_lines(
    l: Option<&crate::partition::edit::Layout>,
    size_change: &str,
) -> Vec<Line<'static>> {
    let mut v = vec![Line::raw(format!(" size      {size_change}"))];
    if let Some(l) = l {
        if let Some(g) = &l.grow {
            v.push(Line::raw(format!(
                " grow      partition {} from {} to {}",
                g.number,
                human_bytes(g.old_size_bytes),
                human_bytes(g.new_size_bytes)
            )));
        }
        if let Some(s) = &l.grow_skipped {
            v.push(Line::raw(format!(" grow      {s}")));
        }
        if let Some(id) = &l.new_disk_id {
            v.push(Line::raw(format!(" disk ID   new: {id}")));
        }
    }
    v
}

fn draw_restore(model: &Model, w: &RestoreWiz, f: &mut Frame, area: Rect) {
    match w.step {
        RestoreStep::Image => draw_images(
            model,
            w.cursor,
            "Which image do you want to restore?",
            f,
            area,
        ),
        RestoreStep::Target => {
            let origin = w.image.as_ref().and_then(|p| {
                model
                    .images
                    .iter()
                    .find(|e| &e.found.path == p)
                    .map(|e| &e.found.disk)
            });
            draw_targets(
                model,
                &targets(model, None),
                w.cursor,
                origin.map(|o| o.size_bytes),
                origin,
                (w.over.grow_last, w.over.new_disk_id),
                w.over.does_not_fit.as_ref(),
                None,
                f,
                area,
            );
        }
        RestoreStep::Confirm => {
            let (Some(p), Some(t)) = (&w.plan, &w.over.target) else {
                return;
            };
            let mut what = vec![
                Line::raw(format!(
                    " image     {} ({}, taken of a {} disk)",
                    p.image.display(),
                    p.kind,
                    human_bytes(p.source_size)
                )),
                Line::raw(format!(
                    " writes    {} to {} ({})",
                    human_bytes(p.write_bytes),
                    t.display(),
                    human_bytes(p.target_size)
                )),
            ];
            if p.chain.len() > 1 {
                what.push(Line::raw(format!(
                    " chain     {} images, all present",
                    p.chain.len()
                )));
            }
            what.extend(layout_lines(p.layout.as_ref(), p.size_change));
            for warn in &p.warnings {
                what.push(Line::styled(
                    format!(" note: {warn}"),
                    Style::default().fg(Color::Yellow),
                ));
            }
            erase_box(model, t, &w.over.typed, w.over.mistyped, &what, f, area);
        }
    }
}

fn draw_clone(model: &Model, w: &CloneWiz, f: &mut Frame, area: Rect) {
    match w.step {
        CloneStep::Source => draw_source_list(
            model,
            &sources(model),
            w.cursor,
            "Which disk do you want to copy?",
            |_| String::new(),
            None,
            f,
            area,
        ),
        CloneStep::Target => {
            let need = w
                .source
                .as_ref()
                .and_then(|p| model.disks.iter().find(|d| &d.path == p))
                .map(|d| d.size_bytes);
            draw_targets(
                model,
                &targets(model, w.source.as_deref()),
                w.cursor,
                need,
                None,
                (w.over.grow_last, w.over.new_disk_id),
                w.over.does_not_fit.as_ref(),
                w.source.as_deref(),
                f,
                area,
            );
        }
        CloneStep::Confirm => {
            let (Some(p), Some(t)) = (&w.plan, &w.over.target) else {
                return;
            };
            let mut what = vec![
                Line::raw(format!(
                    " copy      {} ({}) onto {} ({})",
                    p.source.display(),
                    human_bytes(p.source_size),
                    t.display(),
                    human_bytes(p.target_size)
                )),
                Line::raw(format!(
                    " data      {} in use is copied; {} is only read",
                    human_bytes(p.copy_bytes),
                    p.source.display()
                )),
            ];
            what.extend(layout_lines(p.layout.as_ref(), p.size_change));
            for warn in &p.warnings {
                what.push(Line::styled(
                    format!(" note: {warn}"),
                    Style::default().fg(Color::Yellow),
                ));
            }
            erase_box(model, t, &w.over.typed, w.over.mistyped, &what, f, area);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Progress and result

/// `h:mm:ss` or `m:ss`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn phase_words(p: Option<Phase>) -> &'static str {
    match p {
        None => "starting",
        Some(Phase::Scan) => "reading the partition table and filesystems",
        Some(Phase::Image) => "reading the disk and writing the image",
        Some(Phase::Write) => "writing",
        Some(Phase::Verify) => "reading back and checking",
        Some(Phase::Sync) => "flushing to the disk",
        Some(Phase::Partition) => "writing the partition table",
        Some(Phase::Grow) => "growing the last partition's filesystem",
    }
}

fn draw_running(model: &Model, r: &Running, f: &mut Frame, area: Rect) {
    let now = model.now.unwrap_or(r.started);
    let elapsed = now.saturating_duration_since(r.started).as_secs_f64();
    let in_phase = now.saturating_duration_since(r.phase_started).as_secs_f64();
    let rate = if in_phase > 0.5 {
        r.done as f64 / in_phase
    } else {
        0.0
    };
    let ratio = match r.total {
        Some(t) if t > 0 => (r.done as f64 / t as f64).clamp(0.0, 1.0),
        _ => 0.0,
    };
    let eta = match r.total {
        Some(t) if rate > 0.0 && t > r.done => clock((t - r.done) as f64 / rate),
        Some(_) if rate > 0.0 => "0:00".into(),
        _ => "-".into(),
    };
    let [head, gauge, facts, warns] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3),
        Constraint::Length(4),
        Constraint::Min(1),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(vec![
            Line::styled(r.title.clone(), bold()),
            Line::raw(format!("Now: {}", phase_words(r.phase))),
        ])
        .block(Block::default().borders(Borders::BOTTOM)),
        head,
    );
    f.render_widget(
        Gauge::default()
            .block(boxed("progress"))
            .gauge_style(Style::default().fg(Color::Green).bg(Color::Black))
            .ratio(ratio)
            .label(format!("{:.0}%", ratio * 100.0)),
        gauge,
    );
    let total = r.total.map_or("?".into(), human_bytes);
    let mut lines = vec![
        Line::raw(format!(" done      {} of {}", human_bytes(r.done), total)),
        Line::raw(format!(
            " rate      {}/s        left about {eta}",
            human_bytes(rate as u64)
        )),
        Line::raw(format!(" elapsed   {}", clock(elapsed))),
    ];
    if r.cancelling {
        lines.push(Line::styled(
            " Cancelling: finishing the current piece and cleaning up...",
            Style::default().fg(Color::Yellow),
        ));
    } else if r.phase == Some(Phase::Grow) {
        lines.push(Line::styled(
            " The data is written and checked; growing cannot be interrupted safely.",
            dim(),
        ));
    }
    f.render_widget(Paragraph::new(lines), facts);
    if !r.warnings.is_empty() {
        let w: Vec<Line> = r
            .warnings
            .iter()
            .map(|w| Line::styled(format!("note: {w}"), Style::default().fg(Color::Yellow)))
            .collect();
        f.render_widget(
            Paragraph::new(w)
                .wrap(Wrap { trim: true })
                .block(boxed("notes")),
            warns,
        );
    }
}

fn failure_lines(e: &Failure) -> Vec<Line<'static>> {
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

fn draw_done(d: &Done, f: &mut Frame, area: Rect) {
    let mut lines = vec![Line::styled(d.title.clone(), bold()), Line::raw("")];
    let (title, colour) = match &d.failure {
        None => {
            lines.push(Line::styled(
                format!("Done in {}. Everything was checked.", clock(d.seconds)),
                Style::default()
                    .fg(Color::Green)
                    .add_modifier(Modifier::BOLD),
            ));
            lines.extend(d.lines.iter().map(|l| Line::raw(l.clone())));
            ("Finished", Color::Green)
        }
        Some(e) if e.cancelled => {
            lines.push(Line::styled(
                format!("Cancelled after {}.", clock(d.seconds)),
                Style::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD),
            ));
            lines.push(Line::raw(e.advice.clone()));
            ("Cancelled", Color::Yellow)
        }
        Some(e) => {
            lines.extend(failure_lines(e));
            ("Failed", Color::Red)
        }
    };
    for w in &d.warnings {
        lines.push(Line::styled(
            format!("note: {w}"),
            Style::default().fg(Color::Yellow),
        ));
    }
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(colour))
                .padding(Padding::horizontal(1))
                .title(format!(" {title} ")),
        ),
        area,
    );
}

// ---------------------------------------------------------------------------------------------
// Overlays

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_popup(f: &mut Frame, area: Rect, title: &str, lines: Vec<Line<'static>>, c: Color) {
    let w = 70.min(area.width);
    // wrapped height: every line's width over the inner width
    let inner = usize::from(w.saturating_sub(2).max(1));
    let h: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let r = centered(area, w, h as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(c))
                .title(format!(" {title} ")),
        ),
        r,
    );
}

fn draw_ask(model: &Model, a: Ask, f: &mut Frame, area: Rect) {
    let lines = match a {
        Ask::Cancel => {
            let (kind, target) = match &model.screen {
                Screen::Running(r) => (Some(r.kind), r.target.clone()),
                _ => (None, None),
            };
            let mut v = vec![Line::styled("Cancel the running job?", bold())];
            v.push(Line::raw(match (kind, target) {
                (Some(JobKind::Restore | JobKind::Clone), Some(t)) => format!(
                    "{} will be left INCOMPLETE: its partition table is wiped so that it cannot be mistaken for a good copy. Its old contents are already gone.",
                    t.display()
                ),
                (Some(JobKind::Image), _) => {
                    "The unfinished image file is deleted; the disk was only read.".into()
                }
                _ => "Nothing is changed: the image stays as it is, unchecked.".into(),
            }));
            v.push(Line::raw(""));
            v.push(Line::raw("y: cancel the job    n: keep going"));
            v
        }
        Ask::PowerOff => vec![
            Line::styled("Power off this computer?", bold()),
            Line::raw("The storage is unmounted first."),
            Line::raw("y: power off    n: stay"),
        ],
        Ask::Reboot => vec![
            Line::styled("Restart this computer?", bold()),
            Line::raw("The storage is unmounted first. Remove the Lifeboat stick to boot the restored disk."),
            Line::raw("y: restart    n: stay"),
        ],
    };
    draw_popup(f, area, "Are you sure?", lines, Color::Yellow);
}

fn draw_failure(e: &Failure, f: &mut Frame, area: Rect) {
    let mut lines = failure_lines(e);
    lines.push(Line::raw(""));
    lines.push(Line::styled("Enter closes this message.", dim()));
    draw_popup(f, area, "Error", lines, Color::Red);
}

fn help_text(model: &Model) -> Vec<&'static str> {
    let mut v = match &model.screen {
        Screen::Home | Screen::Details => vec![
            "This screen lists every disk. Nothing is written from here.",
            "",
            "i  make an image of a disk into the storage",
            "r  restore an image onto a disk (erases that disk)",
            "c  clone one disk onto another (erases the second)",
            "v  verify an image: re-read it and check every hash",
            "s  choose the storage: a USB drive or partition for images",
            "Enter  everything known about the highlighted disk",
            "F5  look for disks again (after plugging one in)",
            "x  a shell; exit returns here",
        ],
        Screen::Storage { .. } => vec![
            "Choose the filesystem where images are kept, usually a USB drive.",
            "It is mounted read-write when you press Enter, and never used as",
            "a source or a target. ext4, FAT32, exFAT and NTFS work.",
        ],
        Screen::Image(_) => vec![
            "An image holds the partition table, the boot areas and every block",
            "the filesystems use, compressed and checksummed. The disk is only read.",
            "",
            "Incremental and differential images store only what changed; they",
            "need the earlier images of the same disk in the same storage.",
        ],
        Screen::Restore(_) => vec![
            "Restoring writes the image onto a disk and erases everything on it.",
            "The disk must be at least as large as the image's partitions need.",
            "g grows the last partition to fill a larger disk; n gives the copy",
            "a new disk ID so that both disks can be attached together.",
            "Everything written is read back and compared before it says done.",
        ],
        Screen::Clone(_) => vec![
            "Cloning copies one disk onto another, block for block, only what the",
            "filesystems use. The first disk is only read; the second is erased.",
            "g grows the last partition to fill a larger disk; n gives the copy",
            "a new disk ID so that both disks can be attached together.",
        ],
        Screen::Verify { .. } => vec![
            "Verifying re-reads every chunk of an image (and of the images it",
            "builds on) and checks its hash. Nothing is written.",
        ],
        Screen::Running(_) | Screen::Done(_) => vec![],
    };
    v.extend([
        "",
        "Up/Down or j/k move, Enter goes on, Esc goes back one step.",
        "Ctrl-L repaints the screen if something printed over it.",
    ]);
    if model.rescue {
        v.push("p powers off and b restarts (from the disk list).");
    }
    v.push("q leaves (from the disk list).");
    v
}

fn draw_help(model: &Model, f: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = vec![Line::styled("Help", bold()), Line::raw("")];
    lines.extend(help_text(model).into_iter().map(Line::raw));
    lines.push(Line::raw(""));
    lines.push(Line::styled("Any key closes this help.", dim()));
    let w = 74.min(area.width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = centered(area, w, h);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed("Help")),
        r,
    );
}
