//! The result of a job that ended: its summary, or why it failed or that it was cancelled
//! (with what to do), and its warnings. Enter goes back to the disks, scanned again.

use super::progress::JobKind;
use crate::jobs::Phase;
use crate::tui::app::{Cmd, Failure, Model, Screen};
use crate::tui::widgets::{bold, clock, failure_lines, Keys};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Padding, Paragraph, Wrap};
use ratatui::Frame;

/// A job that ended.
#[derive(Debug, Clone)]
pub struct Done {
    /// What ran.
    pub title: String,
    /// What it reported, one fact per line; empty on failure.
    pub lines: Vec<String>,
    /// Why it failed.
    pub failure: Option<Failure>,
    /// Warnings it gave.
    pub warnings: Vec<String>,
    /// Seconds it took.
    pub seconds: f64,
    /// What ran.
    pub kind: JobKind,
}

/// The title.
pub(crate) fn title(d: &Done) -> &'static str {
    match &d.failure {
        None => "finished",
        Some(f) if f.cancelled => "cancelled",
        Some(_) => "failed",
    }
}

/// The footer.
pub(crate) fn footer(model: &Model) -> Keys {
    if model.browse.as_ref().is_some_and(|b| b.copying) {
        vec![("Enter", "back to the folder")]
    } else if rescuable(model).is_some() {
        vec![
            ("r", "image in rescue mode"),
            ("Enter", "back to the disks"),
        ]
    } else {
        vec![("Enter", "back to the disks")]
    }
}

/// The disk a read error stopped an image of, when the result screen shows one.
fn rescuable(model: &Model) -> Option<std::path::PathBuf> {
    let Screen::Done(d) = &model.screen else {
        return None;
    };
    (d.kind == JobKind::Image)
        .then(|| d.failure.as_ref()?.unreadable.clone())
        .flatten()
}

/// The running job ended: its summary in lines and seconds, or why it failed. Shows the
/// result screen (only from the progress screen).
pub(crate) fn finish(model: &mut Model, r: Result<(Vec<String>, f64), Failure>) {
    let Screen::Running(run) = &model.screen else {
        return;
    };
    model.ask = None;
    let elapsed = model
        .now
        .map_or(0.0, |n| n.duration_since(run.started).as_secs_f64());
    let began = !matches!(run.phase, None | Some(Phase::Scan));
    let (lines, failure, seconds) = match r {
        Ok((lines, s)) => (lines, None, s),
        Err(mut f) => {
            if f.wipes_target && began {
                f.advice.push_str(
                    " The target disk was left without a partition table, so it cannot be mistaken for a good copy.",
                );
            }
            (Vec::new(), Some(f), elapsed)
        }
    };
    model.screen = Screen::Done(Done {
        title: run.title.clone(),
        lines,
        failure,
        warnings: run.warnings.clone(),
        seconds,
        kind: run.kind,
    });
}

/// A key on the result screen: Enter or Esc go back to the disks and scan them again.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    if k.code == KeyCode::Char('r') {
        let disk = rescuable(model)?;
        let d = model.disks.iter().find(|d| d.path == disk)?;
        model.screen = Screen::Image(super::image::ImageWiz {
            step: super::image::ImageStep::Options,
            cursor: 3,
            source: Some(disk.clone()),
            kind: crate::image::ImageKind::Full,
            level: crate::jobs::image::DEFAULT_LEVEL,
            name: format!("{}-rescue", super::image::suggested_name(d, model.now_unix)),
            rescue: true,
            full_swap: false,
            plan: None,
            ..Default::default()
        });
        return None;
    }
    if matches!(k.code, KeyCode::Enter | KeyCode::Esc) {
        if super::browse::back_from_done(model) {
            return None; // a copy out of an image: back to its folder
        }
        model.screen = Screen::Home;
        if model.scanning {
            return None;
        }
        model.scanning = true;
        return Some(Cmd::Rescan);
    }
    None
}

/// Draws the result screen.
pub(crate) fn draw(d: &Done, f: &mut Frame, area: Rect) {
    let mut lines = vec![Line::styled(d.title.clone(), bold()), Line::raw("")];
    let (title, colour) = match &d.failure {
        None => {
            lines.push(Line::styled(
                if d.kind == JobKind::CopyOut {
                    // what is checked: every byte read from the image against its hash
                    format!(
                        "Done in {}. Every byte was checked against the image's hashes as it was read.",
                        clock(d.seconds)
                    )
                } else {
                    format!("Done in {}. Everything was checked.", clock(d.seconds))
                },
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
