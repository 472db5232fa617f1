//! Pure drawing of a [`Model`] (STYLE §6): no I/O, nothing but the frame. Designed for the
//! Linux text console: 16 colours, no mouse, plain box drawing, and every key in the footer.
//!
//! Here is the frame: the title bar, the status line, the footer of keys and the overlays
//! (please wait, help, a question, an error). Each screen's body, title, keys and help text
//! are drawn by its module under [`screens`](super::screens).

use super::app::{typing, Ask, Failure, Model, Screen};
use super::screens::progress::JobKind;
use super::screens::{
    browse, clone, done, home, image, network, progress, restore, storage, verify,
};
use super::widgets::{bold, boxed, dim, failure_lines, Keys};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

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
        Screen::Home => home::draw(model, f, body),
        Screen::Details => home::draw_details(model, f, body),
        Screen::Storage { cursor, .. } => storage::draw(model, *cursor, f, body),
        Screen::Image(w) => image::draw(model, w, f, body),
        Screen::Restore(w) => restore::draw(model, w, f, body),
        Screen::Clone(w) => clone::draw(model, w, f, body),
        Screen::Verify { cursor } => verify::draw(model, *cursor, f, body),
        Screen::Running(r) => progress::draw(model, r, f, body),
        Screen::Done(d) => done::draw(d, f, body),
        Screen::Browse => browse::draw(model, f, body),
        Screen::Network => network::draw(model, f, body),
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
    if let Some(typed) = &model.unlock {
        let stars = "*".repeat(typed.0.chars().count());
        draw_popup(
            f,
            area,
            "Encrypted images",
            vec![
                Line::styled("Passphrase or recovery key:", bold()),
                Line::raw(format!("{stars}_")),
                Line::raw(""),
                Line::raw(
                    "It opens every encrypted image it fits, until the menu ends; it is never shown or saved.",
                ),
                Line::raw("Enter: unlock    Esc: cancel"),
            ],
            Color::Cyan,
        );
    }
    if let Some(e) = &model.failure {
        draw_failure(e, f, area);
    }
}

fn screen_title(model: &Model) -> &'static str {
    match &model.screen {
        Screen::Home => home::TITLE,
        Screen::Details => home::DETAILS_TITLE,
        Screen::Storage { .. } => storage::TITLE,
        Screen::Image(w) => image::title(w),
        Screen::Restore(w) => restore::title(w),
        Screen::Clone(w) => clone::title(w),
        Screen::Verify { .. } => verify::TITLE,
        Screen::Running(_) => progress::TITLE,
        Screen::Done(d) => done::title(d),
        Screen::Browse => browse::title(model.browse.as_ref()),
        Screen::Network => network::TITLE,
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
        Screen::Home | Screen::Details => home::STATUS,
        Screen::Storage { .. } => storage::STATUS,
        Screen::Verify { .. } => verify::STATUS,
        Screen::Image(_) => image::STATUS,
        Screen::Restore(w) => restore::status(w),
        Screen::Clone(w) => clone::status(w),
        Screen::Running(_) => progress::STATUS,
        Screen::Done(_) => "",
        Screen::Browse => browse::status(model.browse.as_ref()),
        Screen::Network => network::STATUS,
    };
    Line::styled(format!(" {text}"), dim())
}

// ---------------------------------------------------------------------------------------------
// footer

fn footer_keys(model: &Model) -> Keys {
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
    let mut k = match &model.screen {
        Screen::Home => home::footer(model),
        Screen::Details => home::details_footer(),
        Screen::Storage { .. } => storage::footer(model),
        Screen::Image(w) => image::footer(w),
        Screen::Restore(w) => restore::footer(w),
        Screen::Clone(w) => clone::footer(w),
        Screen::Verify { .. } => verify::footer(),
        Screen::Running(r) => progress::footer(r),
        Screen::Done(_) => done::footer(model),
        Screen::Browse => browse::footer(model.browse.as_ref()),
        Screen::Network => network::footer(model),
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
                (Some(JobKind::CopyOut), _) => {
                    "Everything copied so far is removed again; the image is only read.".into()
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
        Screen::Home | Screen::Details => home::HELP.to_vec(),
        Screen::Storage { .. } => storage::help(model),
        Screen::Image(_) => image::HELP.to_vec(),
        Screen::Restore(_) => restore::help(),
        Screen::Clone(_) => clone::help(),
        Screen::Verify { .. } => verify::HELP.to_vec(),
        Screen::Browse => browse::help(model.browse.as_ref()),
        Screen::Network => network::HELP.to_vec(),
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
