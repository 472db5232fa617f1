//! The progress screen of a running job: its phase, a gauge, the rate, time left, warnings
//! so far, and cancelling (asked for with c or Esc, confirmed with y; not while a filesystem
//! grows). Times come from the model's last tick, so drawing stays pure.

use crate::jobs::{Event, Phase};
use crate::tui::app::{Ask, Cmd, Model, Screen};
use crate::tui::widgets::{bold, boxed, clock, dim, Keys};
use crate::units::human_bytes;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Wrap};
use ratatui::Frame;
use std::path::PathBuf;
use std::time::Instant;

/// A job in progress.
#[derive(Debug, Clone)]
pub struct Running {
    /// What runs.
    pub kind: JobKind,
    /// "Restoring pc.lbi onto /dev/sda".
    pub title: String,
    /// The disk being written, if any (named when cancelling).
    pub target: Option<PathBuf>,
    /// The phase.
    pub phase: Option<Phase>,
    /// Bytes the phase will process.
    pub total: Option<u64>,
    /// Bytes done in the phase.
    pub done: u64,
    /// When the job started.
    pub started: Instant,
    /// When the phase started.
    pub phase_started: Instant,
    /// Warnings so far.
    pub warnings: Vec<String>,
    /// Cancel was asked for and is being carried out.
    pub cancelling: bool,
    /// Where a rescue (`--rescue`) stands: pass, its name, rescued, missing and untried
    /// bytes.
    pub rescue: Option<(u32, String, u64, u64, u64)>,
}

/// The kinds of job the menu runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Writes an image file.
    Image,
    /// Overwrites a disk from an image.
    Restore,
    /// Overwrites a disk from another disk.
    Clone,
    /// Only reads an image.
    Verify,
    /// Copies files out of a mounted image into a folder.
    CopyOut,
}

/// The title.
pub(crate) const TITLE: &str = "working";
/// The status line.
pub(crate) const STATUS: &str = "Do not unplug any disk while this runs.";

/// The footer: c while the job can still be cancelled.
pub(crate) fn footer(r: &Running) -> Keys {
    if can_cancel(r) {
        vec![("c", "cancel")]
    } else {
        vec![]
    }
}

/// Shows the progress screen of a job just started.
pub(crate) fn start(model: &mut Model, kind: JobKind, title: String, target: Option<PathBuf>) {
    let now = model.now.unwrap_or_else(Instant::now);
    model.screen = Screen::Running(Running {
        kind,
        title,
        target,
        phase: None,
        total: None,
        done: 0,
        started: now,
        phase_started: now,
        warnings: Vec::new(),
        cancelling: false,
        rescue: None,
    });
}

/// Applies an event of the running job to the progress screen.
pub(crate) fn event(model: &mut Model, e: Event) {
    let now = model.now;
    let Screen::Running(run) = &mut model.screen else {
        return;
    };
    match e {
        Event::Phase { phase, total_bytes } => {
            run.phase = Some(phase);
            run.total = total_bytes;
            run.done = 0;
            if let Some(n) = now {
                run.phase_started = n;
            }
        }
        Event::Progress { phase, done_bytes } => {
            if run.phase == Some(phase) {
                run.done = done_bytes;
            }
        }
        Event::Rescue {
            pass,
            name,
            rescued_bytes,
            missing_bytes,
            untried_bytes,
        } => run.rescue = Some((pass, name, rescued_bytes, missing_bytes, untried_bytes)),
        Event::Warning { message } => run.warnings.push(message),
        Event::Finished { .. } => {} // handled by `update`: it ends the progress screen
    }
}

/// The running job can still be cancelled: not twice, and not while a filesystem grows (the
/// resize tools run to their end).
pub fn can_cancel(r: &Running) -> bool {
    !r.cancelling && r.phase != Some(Phase::Grow)
}

/// A key on the progress screen: c or Esc asks whether to cancel.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let Screen::Running(r) = &model.screen else {
        return None;
    };
    if can_cancel(r) && matches!(k.code, KeyCode::Esc | KeyCode::Char('c')) {
        model.ask = Some(Ask::Cancel);
    }
    None
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
        Some(Phase::Shrink) => "shrinking filesystems on copies (the source is not written)",
        Some(Phase::Rescue) => "coming back for what could not be read",
    }
}

/// Draws the progress screen.
pub(crate) fn draw(model: &Model, r: &Running, f: &mut Frame, area: Rect) {
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
        Constraint::Length(if r.rescue.is_some() { 5 } else { 4 }),
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
    if let Some((pass, name, rescued, missing, untried)) = &r.rescue {
        lines.push(Line::styled(
            format!(
                " rescued   {}   missing {}   untried {}   pass {pass}: {name}",
                human_bytes(*rescued),
                human_bytes(*missing),
                human_bytes(*untried)
            ),
            if *missing > 0 {
                Style::default().fg(Color::Yellow)
            } else {
                Style::default()
            },
        ));
    }
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
