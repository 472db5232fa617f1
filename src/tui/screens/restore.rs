//! The restore wizard: choose the image, then the disk to overwrite and its options, then
//! confirm by typing the disk's name. The last two steps are the shared
//! [`target`] step.

use super::image_list::{self, image_order};
use super::progress::{start, JobKind};
use super::target::{self, ConfirmKey, Overwrite, TargetKey};
use super::{short_name, step_cursor, targets};
use crate::jobs::restore::RestorePlan;
use crate::tui::app::{Cmd, JobRequest, Model, Planned, Screen};
use crate::tui::widgets::Keys;
use crate::units::human_bytes;
use crossterm::event::KeyCode;
use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::Frame;
use std::path::PathBuf;

/// The restore wizard.
#[derive(Debug, Clone, Default)]
pub struct RestoreWiz {
    /// The step.
    pub step: RestoreStep,
    /// Highlighted row.
    pub cursor: usize,
    /// The chosen image.
    pub image: Option<PathBuf>,
    /// The target and its confirmation.
    pub over: Overwrite,
    /// The plan, on the confirm step.
    pub plan: Option<Box<RestorePlan>>,
}

/// Steps of the restore wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestoreStep {
    /// Which image.
    #[default]
    Image,
    /// Which disk, and options.
    Target,
    /// The plan, and the typed confirmation.
    Confirm,
}

/// The title of step `w.step`.
pub(crate) fn title(w: &RestoreWiz) -> &'static str {
    match w.step {
        RestoreStep::Image => "restore: 1/3 choose the image",
        RestoreStep::Target => "restore: 2/3 choose the disk to overwrite",
        RestoreStep::Confirm => "restore: 3/3 confirm",
    }
}

/// The footer of step `w.step`.
pub(crate) fn footer(w: &RestoreWiz) -> Keys {
    match w.step {
        RestoreStep::Image => vec![("Up/Down", "select"), ("Enter", "next"), ("Esc", "back")],
        RestoreStep::Target => target::target_footer(),
        RestoreStep::Confirm => target::confirm_footer("erase and restore"),
    }
}

/// The status line of step `w.step`.
pub(crate) fn status(w: &RestoreWiz) -> &'static str {
    target::status(w.step == RestoreStep::Confirm)
}

/// The help.
pub(crate) fn help() -> Vec<&'static str> {
    let mut v = vec![
        "Restoring writes the image onto a disk and erases everything on it.",
        "The disk must be at least as large as the image's partitions need.",
    ];
    v.extend(target::HELP);
    v.push("Everything written is read back and compared before it says done.");
    v
}

/// A key in the restore wizard.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let order = image_order(&model.images);
    let tgts = targets(model, None);
    let paths: Vec<PathBuf> = model.disks.iter().map(|d| d.path.clone()).collect();
    let images: Vec<PathBuf> = model.images.iter().map(|e| e.found.path.clone()).collect();
    let Screen::Restore(w) = &mut model.screen else {
        return None;
    };
    match w.step {
        RestoreStep::Image => {
            if step_cursor(&mut w.cursor, order.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => model.screen = Screen::Home,
                KeyCode::Enter => {
                    let &i = order.get(w.cursor)?;
                    w.image = Some(images[i].clone());
                    w.step = RestoreStep::Target;
                    w.cursor = 0;
                    w.over.does_not_fit = None;
                }
                _ => {}
            }
            None
        }
        RestoreStep::Target => {
            match w.over.target_key(&mut w.cursor, &tgts, &paths, k.code) {
                TargetKey::Done => {}
                TargetKey::Back => {
                    let img = w.image.take();
                    w.step = RestoreStep::Image;
                    w.cursor = img
                        .and_then(|p| order.iter().position(|&i| images[i] == p))
                        .unwrap_or(0);
                }
                TargetKey::Chosen(target) => {
                    let req = JobRequest::Restore {
                        image: w.image.clone()?,
                        target,
                        grow_last: w.over.grow_last,
                        new_disk_id: w.over.new_disk_id,
                        fit: w.over.fit,
                    };
                    model.busy = Some("Reading the image and checking the target...".into());
                    return Some(Cmd::Plan(req));
                }
            }
            None
        }
        RestoreStep::Confirm => match w.over.confirm_key(k.code) {
            ConfirmKey::Stay => None,
            ConfirmKey::Back => {
                w.step = RestoreStep::Target;
                w.plan = None;
                None
            }
            ConfirmKey::Erase(target) => {
                let plan = w.plan.take()?;
                let title = format!(
                    "Restoring {} onto {}",
                    short_name(&plan.image),
                    target.display()
                );
                start(model, JobKind::Restore, title, Some(target));
                Some(Cmd::Start(Planned::Restore(plan)))
            }
        },
    }
}

/// Draws the restore wizard's step.
pub(crate) fn draw(model: &Model, w: &RestoreWiz, f: &mut Frame, area: Rect) {
    match w.step {
        RestoreStep::Image => image_list::draw(
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
            target::draw_targets(
                model,
                &w.over,
                &targets(model, None),
                w.cursor,
                origin.map(|o| o.size_bytes),
                origin,
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
                    human_bytes(p.target.source_size)
                )),
                Line::raw(format!(
                    " writes    {} to {} ({})",
                    human_bytes(p.write_bytes),
                    t.display(),
                    human_bytes(p.target.size)
                )),
            ];
            if p.chain.len() > 1 {
                what.push(Line::raw(format!(
                    " chain     {} images, all present",
                    p.chain.len()
                )));
            }
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
