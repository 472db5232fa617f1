//! The step restore and clone share: the disk to overwrite with its options (grow the last
//! partition, a new disk ID), then the plan with the typed confirmation. Both wizards keep
//! an [`Overwrite`] and hand it the keys of these two steps; only the first step (the image,
//! or the disk to copy) and the job they start are their own.

use super::{short_name, step_cursor};
use crate::inspect::DiskReport;
use crate::tui::app::Model;
use crate::tui::widgets::{
    dim, draw_source_list, highlight, partitions_summary, red, transport, Keys,
};
use crate::units::human_bytes;
use crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// What restore and clone share: the disk to overwrite, its options, and the typed
/// confirmation.
#[derive(Debug, Clone, Default)]
pub struct Overwrite {
    /// The chosen target disk.
    pub target: Option<PathBuf>,
    /// Grow the last partition to the end of a larger target.
    pub grow_last: bool,
    /// Give the target a new disk ID.
    pub new_disk_id: bool,
    /// Fit the layout onto a smaller disk (shrink and move partitions), or grow onto a
    /// larger one (`--fit`).
    pub fit: bool,
    /// Why the last target tried does not fit.
    pub does_not_fit: Option<String>,
    /// What the user typed on the confirm step.
    pub typed: String,
    /// The typed name was wrong.
    pub mistyped: bool,
}

/// The help on the options of the target step.
pub(crate) const HELP: [&str; 3] = [
    "g grows the last partition to fill a larger disk; n gives the copy",
    "a new disk ID so that both disks can be attached together; f fits a",
    "larger layout onto a smaller disk by shrinking filesystems on a copy.",
];

/// The status line of either wizard: on the confirm step, or before it.
pub(crate) fn status(confirm: bool) -> &'static str {
    if confirm {
        "Nothing has been written yet. Esc goes back."
    } else {
        "Nothing is written until you confirm by typing the disk's name."
    }
}

/// The footer of the target step.
pub(crate) fn target_footer() -> Keys {
    vec![
        ("Up/Down", "select"),
        ("g", "grow last partition"),
        ("n", "new disk ID"),
        ("f", "fit onto a smaller disk"),
        ("Enter", "next"),
        ("Esc", "back"),
    ]
}

/// The footer of the confirm step; `go` is what Enter does ("erase and restore").
pub(crate) fn confirm_footer(go: &'static str) -> Keys {
    vec![("type the name", ""), ("Enter", go), ("Esc", "back")]
}

/// What a key on the target step of restore or clone asks for.
pub(crate) enum TargetKey {
    /// Nothing more (the key moved or toggled something, or did nothing).
    Done,
    /// Back to the first step.
    Back,
    /// Plan onto this disk.
    Chosen(PathBuf),
}

/// What a key on the confirm step asks for.
pub(crate) enum ConfirmKey {
    /// Nothing more (a letter typed or erased, a wrong name, or nothing).
    Stay,
    /// Back to the target step; the typed name is cleared.
    Back,
    /// Erase this disk: its short name was typed exactly, and Enter pressed.
    Erase(PathBuf),
}

impl Overwrite {
    /// A key on the target step: `tgts` are the offered disks (indexes into `paths`).
    pub(crate) fn target_key(
        &mut self,
        cursor: &mut usize,
        tgts: &[usize],
        paths: &[PathBuf],
        code: KeyCode,
    ) -> TargetKey {
        if step_cursor(cursor, tgts.len(), code) {
            self.does_not_fit = None;
            return TargetKey::Done;
        }
        match code {
            KeyCode::Esc => {
                self.does_not_fit = None;
                TargetKey::Back
            }
            KeyCode::Char('g') => {
                self.grow_last = !self.grow_last;
                TargetKey::Done
            }
            KeyCode::Char('n') => {
                self.new_disk_id = !self.new_disk_id;
                TargetKey::Done
            }
            KeyCode::Char('f') => {
                self.fit = !self.fit;
                self.does_not_fit = None;
                TargetKey::Done
            }
            KeyCode::Enter => match tgts.get(*cursor) {
                Some(&i) => {
                    self.target = Some(paths[i].clone());
                    self.does_not_fit = None;
                    TargetKey::Chosen(paths[i].clone())
                }
                None => TargetKey::Done,
            },
            _ => TargetKey::Done,
        }
    }

    /// The plan was made: the confirm step starts with nothing typed.
    pub(crate) fn planned(&mut self) {
        self.typed.clear();
        self.mistyped = false;
    }

    /// A key on the confirm step: Esc goes back (and clears what was typed); Enter erases
    /// the target once its short name is typed exactly.
    pub(crate) fn confirm_key(&mut self, code: KeyCode) -> ConfirmKey {
        if code == KeyCode::Esc {
            self.typed.clear();
            return ConfirmKey::Back;
        }
        let Some(target) = self.target.clone() else {
            return ConfirmKey::Stay;
        };
        match code {
            KeyCode::Char(c) if self.typed.len() < 64 => {
                self.typed.push(c);
                self.mistyped = false;
            }
            KeyCode::Backspace => {
                self.typed.pop();
                self.mistyped = false;
            }
            KeyCode::Enter => {
                if self.typed == short_name(&target) {
                    return ConfirmKey::Erase(target);
                }
                self.mistyped = true;
            }
            _ => {}
        }
        ConfirmKey::Stay
    }
}

/// The target list with a size note against `need` (the imaged or source disk's size).
#[allow(clippy::too_many_arguments)] // see draw_source_list
pub(crate) fn draw_targets(
    model: &Model,
    over: &Overwrite,
    rows: &[usize],
    cursor: usize,
    need: Option<u64>,
    origin: Option<&crate::jobs::chain::DiskIdentity>,
    skip: Option<&Path>,
    f: &mut Frame,
    area: Rect,
) {
    let (grow, new_id, fit_on) = (over.grow_last, over.new_disk_id, over.fit);
    let does_not_fit = over.does_not_fit.as_ref();
    let fit_h = if does_not_fit.is_some() { 7 } else { 0 };
    let [list, opts, fit] = Layout::vertical([
        Constraint::Min(4),
        Constraint::Length(4),
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
            Line::raw(format!(
                " [f] fit onto a smaller disk: shrink filesystems on a copy, move partitions: {}",
                onoff(fit_on)
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
                Line::raw(if fit_on {
                    "Even shrunk, the partitions do not fit. Choose a larger disk. Nothing was written."
                } else {
                    "Choose a larger disk, or press f to shrink and move the partitions to fit. Nothing was written."
                }),
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

/// The confirm step: what the target holds and will be erased, `what` the plan does, and
/// the field where its short name is typed.
pub(crate) fn erase_box(
    model: &Model,
    over: &Overwrite,
    target: &Path,
    what: &[Line<'static>],
    f: &mut Frame,
    area: Rect,
) {
    let (typed, mistyped) = (&over.typed, over.mistyped);
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

/// The plan's size change and its layout edits (grow, new disk ID), one line each.
/// The fitted layout of `--fit` on the confirm step: one line per partition, what happens
/// to it, then the notes.
pub(crate) fn fit_lines(fit: Option<&crate::jobs::fit::FitPlan>) -> Vec<Line<'static>> {
    use crate::partition::fit::Action;
    let Some(f) = fit else { return Vec::new() };
    let mut v = vec![Line::raw(
        " fit       filesystems shrink on a copy (the source is only read):",
    )];
    for p in &f.parts {
        let (what, detail) = match p.action {
            Action::Keep => ("keep", String::new()),
            Action::Move => ("move", format!("to {}", human_bytes(p.new_start))),
            Action::Shrink => ("shrink", format!("min {}", human_bytes(p.min))),
            Action::ShrinkMove => (
                "shrink, move",
                format!(
                    "to {}, min {}",
                    human_bytes(p.new_start),
                    human_bytes(p.min)
                ),
            ),
        };
        v.push(Line::raw(format!(
            "   {:>2} {:<5} {:>10} -> {:<10} {:<12} {detail}",
            p.number,
            p.fs.as_deref().unwrap_or("-"),
            human_bytes(p.old_size),
            human_bytes(p.new_size),
            what,
        )));
    }
    for n in &f.notes {
        v.push(Line::styled(
            format!(" note: {n}"),
            Style::default().fg(Color::Yellow),
        ));
    }
    v
}

pub(crate) fn layout_lines(
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
