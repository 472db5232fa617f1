//! The clone wizard: choose the disk to copy, then the disk to overwrite and its options,
//! then confirm by typing its name. The last two steps are the shared
//! [`target`] step; the first disk is only read.

use super::progress::{start, JobKind};
use super::target::{self, ConfirmKey, Overwrite, TargetKey};
use super::{sources, step_cursor, targets};
use crate::jobs::clone::ClonePlan;
use crate::tui::app::{Cmd, JobRequest, Model, Planned, Screen};
use crate::tui::widgets::{draw_source_list, Keys};
use crate::units::human_bytes;
use crossterm::event::KeyCode;
use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::Frame;
use std::path::PathBuf;

/// The clone wizard.
#[derive(Debug, Clone, Default)]
pub struct CloneWiz {
    /// The step.
    pub step: CloneStep,
    /// Highlighted row.
    pub cursor: usize,
    /// The disk copied.
    pub source: Option<PathBuf>,
    /// The target and its confirmation.
    pub over: Overwrite,
    /// The plan, on the confirm step.
    pub plan: Option<Box<ClonePlan>>,
}

/// Steps of the clone wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloneStep {
    /// Which disk to copy.
    #[default]
    Source,
    /// Which disk to overwrite, and options.
    Target,
    /// The plan, and the typed confirmation.
    Confirm,
}

/// The title of step `w.step`.
pub(crate) fn title(w: &CloneWiz) -> &'static str {
    match w.step {
        CloneStep::Source => "clone: 1/3 choose the disk to copy",
        CloneStep::Target => "clone: 2/3 choose the disk to overwrite",
        CloneStep::Confirm => "clone: 3/3 confirm",
    }
}

/// The footer of step `w.step`.
pub(crate) fn footer(w: &CloneWiz) -> Keys {
    match w.step {
        CloneStep::Source => vec![("Up/Down", "select"), ("Enter", "next"), ("Esc", "back")],
        CloneStep::Target => target::target_footer(),
        CloneStep::Confirm => target::confirm_footer("erase and clone"),
    }
}

/// The status line of step `w.step`.
pub(crate) fn status(w: &CloneWiz) -> &'static str {
    target::status(w.step == CloneStep::Confirm)
}

/// The help.
pub(crate) fn help() -> Vec<&'static str> {
    let mut v = vec![
        "Cloning copies one disk onto another, block for block, only what the",
        "filesystems use. The first disk is only read; the second is erased.",
    ];
    v.extend(target::HELP);
    v
}

/// A key in the clone wizard.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let srcs = sources(model);
    let paths: Vec<PathBuf> = model.disks.iter().map(|d| d.path.clone()).collect();
    let source = match &model.screen {
        Screen::Clone(w) => w.source.clone(),
        _ => None,
    };
    let tgts = targets(model, source.as_deref());
    let Screen::Clone(w) = &mut model.screen else {
        return None;
    };
    match w.step {
        CloneStep::Source => {
            if step_cursor(&mut w.cursor, srcs.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => model.screen = Screen::Home,
                KeyCode::Enter => {
                    let &i = srcs.get(w.cursor)?;
                    w.source = Some(paths[i].clone());
                    w.step = CloneStep::Target;
                    w.cursor = 0;
                    w.over.does_not_fit = None;
                }
                _ => {}
            }
            None
        }
        CloneStep::Target => {
            match w.over.target_key(&mut w.cursor, &tgts, &paths, k.code) {
                TargetKey::Done => {}
                TargetKey::Back => {
                    let src = w.source.take();
                    w.step = CloneStep::Source;
                    w.cursor = src
                        .and_then(|p| srcs.iter().position(|&i| paths[i] == p))
                        .unwrap_or(0);
                }
                TargetKey::Chosen(target) => {
                    let req = JobRequest::Clone {
                        source: w.source.clone()?,
                        target,
                        grow_last: w.over.grow_last,
                        new_disk_id: w.over.new_disk_id,
                        fit: w.over.fit,
                    };
                    model.busy = Some("Reading the source and checking the target...".into());
                    return Some(Cmd::Plan(req));
                }
            }
            None
        }
        CloneStep::Confirm => match w.over.confirm_key(k.code) {
            ConfirmKey::Stay => None,
            ConfirmKey::Back => {
                w.step = CloneStep::Target;
                w.plan = None;
                None
            }
            ConfirmKey::Erase(target) => {
                let plan = w.plan.take()?;
                let title = format!(
                    "Cloning {} onto {}",
                    plan.source.display(),
                    target.display()
                );
                start(model, JobKind::Clone, title, Some(target));
                Some(Cmd::Start(Planned::Clone(plan)))
            }
        },
    }
}

/// Draws the clone wizard's step.
pub(crate) fn draw(model: &Model, w: &CloneWiz, f: &mut Frame, area: Rect) {
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
            target::draw_targets(
                model,
                &w.over,
                &targets(model, w.source.as_deref()),
                w.cursor,
                need,
                None,
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
                    human_bytes(p.target.source_size),
                    t.display(),
                    human_bytes(p.target.size)
                )),
                Line::raw(format!(
                    " data      {} in use is copied; {} is only read",
                    human_bytes(p.copy_bytes),
                    p.source.display()
                )),
            ];
            what.extend(target::layout_lines(
                p.target.layout.as_ref(),
                p.target.size_change.as_str(),
            ));
            what.extend(target::fit_lines(p.target.fit.as_ref()));
            for warn in &p.warnings {
                what.push(Line::styled(
                    format!(" note: {warn}"),
                    Style::default().fg(Color::Yellow),
                ));
            }
            target::erase_box(model, &w.over, t, &what, f, area);
        }
    }
}
