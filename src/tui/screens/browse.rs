//! Browse an image: single-file restore from the menu. Choose an image (any member of a
//! chain), which the loop mounts read-only; choose one of its partitions; walk its folders,
//! selecting files and folders; choose where to copy them (the image storage, or another
//! mounted filesystem); confirm; the copy runs on the progress screen, and its result leads
//! back to the folder.
//!
//! The state lives in [`Model::browse`](crate::tui::app::Model) while an image is open (the
//! copy's progress and result screens keep it); the mount itself is the loop's (it holds the
//! `MountSession`), and leaving the browser (Esc at the partition list) asks the loop to
//! close it. Folders are listed by the loop (`Cmd::ListDir`), never here; symlinks are shown,
//! never followed.

use super::image_list::{self, image_order};
use super::progress::{start, JobKind};
use super::step_cursor;
use crate::access::mount::MountReport;
use crate::jobs::copy_out::{CopyItem, CopyPlan, Entry, EntryKind};
use crate::tui::app::{Cmd, Failure, JobRequest, Model, Planned, Screen};
use crate::tui::widgets::{bold, boxed, dim, highlight, Keys};
use crate::units::human_bytes;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// The browser's state, while an image is chosen or open.
#[derive(Debug, Clone, Default)]
pub struct Browse {
    /// The step shown.
    pub step: BrowseStep,
    /// Highlighted row of the image, partition or destination list.
    pub cursor: usize,
    /// The image opened (or being opened).
    pub image: Option<PathBuf>,
    /// What the loop mounted.
    pub report: Option<MountReport>,
    /// The partition being walked (index into `report.parts`).
    pub part: Option<usize>,
    /// The folder listed (a path under the partition's mount folder).
    pub cwd: Option<PathBuf>,
    /// Its entries, folders first.
    pub entries: Vec<Entry>,
    /// Highlighted entry.
    pub entry_cursor: usize,
    /// The folder just left by going up (the highlight lands on it).
    pub came_from: Option<PathBuf>,
    /// What is selected, in the order it was selected.
    pub selected: Vec<Selected>,
    /// The checked copy, on the confirm step.
    pub plan: Option<Box<CopyPlan>>,
    /// The copy runs (or its result is shown): its result screen leads back here.
    pub copying: bool,
}

/// The browser's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrowseStep {
    /// Which image.
    #[default]
    Image,
    /// Which partition.
    Partition,
    /// Walking folders, selecting.
    Folder,
    /// Where to copy.
    Dest,
    /// The checked copy, to start.
    Confirm,
}

/// A selected file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Its path under the mount folder.
    pub path: PathBuf,
    /// As the user knows it: `p2:/home/ann/thesis.odt`.
    pub shown: String,
    /// A folder (its size is known once the copy is checked).
    pub dir: bool,
    /// A file's size.
    pub bytes: u64,
}

/// A place to copy to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// The folder.
    pub dir: PathBuf,
    /// What it is ("the image storage", "/dev/sdc1 exfat BACKUP").
    pub what: String,
    /// Free bytes, when the scan knows them.
    pub free_bytes: Option<u64>,
}

/// The title of the step.
pub(crate) fn title(b: Option<&Browse>) -> &'static str {
    match b.map_or(BrowseStep::Image, |b| b.step) {
        BrowseStep::Image => "browse: 1/5 choose the image",
        BrowseStep::Partition => "browse: 2/5 choose a partition",
        BrowseStep::Folder => "browse: 3/5 choose files and folders",
        BrowseStep::Dest => "browse: 4/5 choose where to copy",
        BrowseStep::Confirm => "browse: 5/5 confirm",
    }
}

/// The status line of the step.
pub(crate) fn status(b: Option<&Browse>) -> &'static str {
    match b.map_or(BrowseStep::Image, |b| b.step) {
        BrowseStep::Confirm => {
            "Enter copies; nothing at the destination is overwritten, the image is only read."
        }
        _ => "The image is opened read-only; nothing is written until you confirm a copy.",
    }
}

/// The footer of the step.
pub(crate) fn footer(b: Option<&Browse>) -> Keys {
    match b.map_or(BrowseStep::Image, |b| b.step) {
        BrowseStep::Image => vec![("Up/Down", "select"), ("Enter", "open"), ("Esc", "back")],
        BrowseStep::Partition => vec![
            ("Up/Down", "select"),
            ("Enter", "open"),
            ("Esc", "close the image"),
        ],
        BrowseStep::Folder => vec![
            ("Up/Down", "move"),
            ("Enter", "open folder"),
            ("Space", "select"),
            ("Bksp", "up"),
            ("c", "copy selected"),
            ("Esc", "partitions"),
        ],
        BrowseStep::Dest => vec![("Up/Down", "select"), ("Enter", "next"), ("Esc", "back")],
        BrowseStep::Confirm => vec![("Enter", "copy"), ("Esc", "back")],
    }
}

/// The help of the step.
pub(crate) fn help(b: Option<&Browse>) -> Vec<&'static str> {
    let mut v = vec![
        "Browse an image: copy single files and folders out of an image",
        "without restoring it. The image is opened read-only and never changes.",
        "",
    ];
    v.extend(match b.map_or(BrowseStep::Image, |b| b.step) {
        BrowseStep::Image => vec![
            "Choose any image, also an incremental or differential one: you see",
            "the disk as it was when that image was taken.",
        ],
        BrowseStep::Partition => vec![
            "Choose the partition to look into. Partitions whose filesystem",
            "cannot be read here are shown with the reason and cannot be chosen.",
            "Esc closes the image.",
        ],
        BrowseStep::Folder => vec![
            "Enter opens a folder, Backspace or Left goes up one folder.",
            "Space selects or deselects the highlighted file or folder (a folder",
            "is copied with everything in it); the selection stays while you walk",
            "other folders. c copies the selection. Links are copied as links.",
        ],
        BrowseStep::Dest => vec![
            "Choose where the copies go: the image storage, or another mounted",
            "filesystem. The space needed is checked before anything is copied.",
        ],
        BrowseStep::Confirm => vec![
            "Enter starts the copy. A name that exists at the destination was",
            "refused already: nothing is ever overwritten. If a file cannot be",
            "read (a damaged image), everything copied so far is removed again.",
        ],
    });
    v
}

/// Opens the browser at its first step.
pub(crate) fn open(model: &mut Model) {
    model.browse = Some(Browse::default());
    model.screen = Screen::Browse;
}

/// Where a copy may go: the image storage first, then every other mounted partition of a
/// disk that is not read-only, the boot medium, or the open image itself.
pub fn dests(model: &Model) -> Vec<Dest> {
    let mut v = Vec::new();
    if let Some(s) = &model.storage {
        v.push(Dest {
            dir: s.dir.clone(),
            what: "the image storage".into(),
            free_bytes: None,
        });
    }
    let image_dir = model
        .browse
        .as_ref()
        .and_then(|b| b.report.as_ref())
        .map(|r| r.dir.clone());
    for d in &model.disks {
        if d.is_boot || d.read_only == Some(true) {
            continue;
        }
        for p in &d.partitions {
            let Some(m) = &p.mountpoint else { continue };
            if p.swap
                || image_dir.as_ref().is_some_and(|i| m.starts_with(i))
                || v.iter().any(|x| x.dir == *m)
            {
                continue;
            }
            let dev = p
                .path
                .as_ref()
                .map_or_else(|| d.path.display().to_string(), |x| x.display().to_string());
            v.push(Dest {
                dir: m.clone(),
                what: format!(
                    "{dev} {} {}",
                    p.fs.unwrap_or("-"),
                    p.label.as_deref().unwrap_or("")
                )
                .trim_end()
                .to_string(),
                free_bytes: p.used_bytes.map(|u| p.size_bytes.saturating_sub(u)),
            });
        }
    }
    v
}

/// The loop mounted the image (or failed to).
pub(crate) fn mounted(model: &mut Model, r: Result<MountReport, Failure>) {
    let Some(b) = model.browse.as_mut().filter(|b| b.step == BrowseStep::Image) else {
        return;
    };
    match r {
        Ok(report) => {
            b.cursor = report.parts.iter().position(|p| p.dir.is_some()).unwrap_or(0);
            b.report = Some(report);
            b.step = BrowseStep::Partition;
            b.part = None;
            b.selected.clear();
        }
        Err(f) => model.failure = Some(f),
    }
}

/// The loop listed a folder (or failed to).
pub(crate) fn listed(model: &mut Model, r: Result<(PathBuf, Vec<Entry>), Failure>) {
    let Some(b) = model.browse.as_mut() else {
        return;
    };
    match r {
        Ok((dir, entries)) => {
            b.entry_cursor = b
                .came_from
                .take()
                .and_then(|c| entries.iter().position(|e| e.path == c))
                .unwrap_or(0);
            b.cwd = Some(dir);
            b.entries = entries;
            b.step = BrowseStep::Folder;
        }
        Err(f) => {
            b.came_from = None;
            model.failure = Some(f);
        }
    }
}

/// The copy was checked: show it.
pub(crate) fn planned(model: &mut Model, p: Box<CopyPlan>) {
    if let Some(b) = model.browse.as_mut().filter(|b| b.step == BrowseStep::Dest) {
        b.plan = Some(p);
        b.step = BrowseStep::Confirm;
    }
}

/// On the result screen of a copy: Enter leads back to the folder (the selection cleared
/// when the copy succeeded). False when the result is not a copy's.
pub(crate) fn back_from_done(model: &mut Model) -> bool {
    let ok = matches!(&model.screen, Screen::Done(d) if d.failure.is_none());
    let Some(b) = model.browse.as_mut().filter(|b| b.copying) else {
        return false;
    };
    b.copying = false;
    b.plan = None;
    if ok {
        b.selected.clear();
    }
    b.step = BrowseStep::Folder;
    model.screen = Screen::Browse;
    true
}

/// `p2:/home/ann` for a path under partition `part`'s mount folder.
fn shown(b: &Browse, path: &Path) -> String {
    let Some(p) = b.part.and_then(|i| b.report.as_ref()?.parts.get(i)) else {
        return path.display().to_string();
    };
    let rel = p
        .dir
        .as_ref()
        .and_then(|d| path.strip_prefix(d).ok())
        .map_or_else(|| path.display().to_string(), |r| r.display().to_string());
    format!("{}:/{rel}", p.name)
}

/// The partition's mount folder.
fn part_root(b: &Browse) -> Option<PathBuf> {
    b.part
        .and_then(|i| b.report.as_ref()?.parts.get(i))
        .and_then(|p| p.dir.clone())
}

/// Selections that are folders, files, and the files' bytes.
pub fn selection_totals(sel: &[Selected]) -> (usize, usize, u64) {
    let dirs = sel.iter().filter(|s| s.dir).count();
    let bytes = sel.iter().filter(|s| !s.dir).map(|s| s.bytes).sum();
    (dirs, sel.len() - dirs, bytes)
}

/// A key in the browser.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let order = image_order(&model.images);
    let images: Vec<PathBuf> = model.images.iter().map(|e| e.found.path.clone()).collect();
    let dest_list = dests(model);
    let Some(b) = model.browse.as_mut() else {
        model.screen = Screen::Home;
        return None;
    };
    match b.step {
        BrowseStep::Image => {
            if step_cursor(&mut b.cursor, order.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => {
                    model.browse = None;
                    model.screen = Screen::Home;
                    None
                }
                KeyCode::Enter => {
                    let path = images.get(*order.get(b.cursor)?)?.clone();
                    b.image = Some(path.clone());
                    model.busy = Some(format!(
                        "Opening {} (read-only)...",
                        super::short_name(&path)
                    ));
                    Some(Cmd::MountImage(path))
                }
                _ => None,
            }
        }
        BrowseStep::Partition => {
            let n = b.report.as_ref().map_or(0, |r| r.parts.len());
            if step_cursor(&mut b.cursor, n, k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => {
                    let order_pos = b
                        .image
                        .as_ref()
                        .and_then(|i| order.iter().position(|&x| images.get(x) == Some(i)));
                    // leaving the image: the loop unmounts it
                    model.browse = Some(Browse {
                        cursor: order_pos.unwrap_or(0),
                        ..Browse::default()
                    });
                    Some(Cmd::CloseMount)
                }
                KeyCode::Enter | KeyCode::Right => {
                    let part = b.report.as_ref()?.parts.get(b.cursor)?;
                    let dir = part.dir.clone()?; // not mountable: its reason is shown
                    if b.part != Some(b.cursor) {
                        b.part = Some(b.cursor);
                    }
                    b.came_from = None;
                    model.busy = Some(format!("Reading {}:/ ...", part.name));
                    Some(Cmd::ListDir(dir))
                }
                _ => None,
            }
        }
        BrowseStep::Folder => {
            if step_cursor(&mut b.entry_cursor, b.entries.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::PageDown => {
                    b.entry_cursor = (b.entry_cursor + 10).min(b.entries.len().saturating_sub(1));
                    None
                }
                KeyCode::PageUp => {
                    b.entry_cursor = b.entry_cursor.saturating_sub(10);
                    None
                }
                KeyCode::Enter | KeyCode::Right => {
                    let e = b.entries.get(b.entry_cursor)?;
                    if e.kind != EntryKind::Dir {
                        return None;
                    }
                    let path = e.path.clone();
                    model.busy = Some(format!("Reading {} ...", shown(b, &path)));
                    Some(Cmd::ListDir(path))
                }
                KeyCode::Backspace | KeyCode::Left => {
                    let cwd = b.cwd.clone()?;
                    if Some(&cwd) == part_root(b).as_ref() {
                        b.step = BrowseStep::Partition;
                        b.cursor = b.part.unwrap_or(0);
                        return None;
                    }
                    let parent = cwd.parent()?.to_path_buf();
                    b.came_from = Some(cwd);
                    model.busy = Some(format!("Reading {} ...", shown(b, &parent)));
                    Some(Cmd::ListDir(parent))
                }
                KeyCode::Char(' ') => {
                    let e = b.entries.get(b.entry_cursor)?.clone();
                    if e.kind == EntryKind::Other {
                        return None; // device nodes and FIFOs are not copied
                    }
                    if let Some(i) = b.selected.iter().position(|s| s.path == e.path) {
                        b.selected.remove(i);
                    } else {
                        let s = Selected {
                            shown: shown(b, &e.path),
                            path: e.path.clone(),
                            dir: e.kind == EntryKind::Dir,
                            bytes: e.size_bytes,
                        };
                        b.selected.push(s);
                    }
                    if b.entry_cursor + 1 < b.entries.len() {
                        b.entry_cursor += 1;
                    }
                    None
                }
                KeyCode::Char('c') if !b.selected.is_empty() => {
                    b.step = BrowseStep::Dest;
                    b.cursor = 0;
                    None
                }
                KeyCode::Esc => {
                    b.step = BrowseStep::Partition;
                    b.cursor = b.part.unwrap_or(0);
                    None
                }
                _ => None,
            }
        }
        BrowseStep::Dest => {
            if step_cursor(&mut b.cursor, dest_list.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => {
                    b.step = BrowseStep::Folder;
                    None
                }
                KeyCode::Enter => {
                    let d = dest_list.get(b.cursor)?;
                    let items = b
                        .selected
                        .iter()
                        .filter_map(|s| CopyItem::named_after(s.path.clone()))
                        .collect();
                    model.busy = Some(format!("Checking {} ...", d.dir.display()));
                    Some(Cmd::Plan(JobRequest::CopyOut {
                        items,
                        dest: d.dir.clone(),
                    }))
                }
                _ => None,
            }
        }
        BrowseStep::Confirm => match k.code {
            KeyCode::Esc => {
                b.plan = None;
                b.step = BrowseStep::Dest;
                None
            }
            KeyCode::Enter => {
                let plan = b.plan.take()?;
                b.copying = true;
                let title = format!(
                    "Copying {} item{} into {}",
                    plan.items.len(),
                    if plan.items.len() == 1 { "" } else { "s" },
                    plan.dest.display()
                );
                start(model, JobKind::CopyOut, title, None);
                Some(Cmd::Start(Planned::CopyOut(plan)))
            }
            _ => None,
        },
    }
}

/// Draws the browser's step.
pub(crate) fn draw(model: &Model, f: &mut Frame, area: Rect) {
    let Some(b) = model.browse.as_ref() else {
        return;
    };
    match b.step {
        BrowseStep::Image => image_list::draw(
            model,
            b.cursor,
            "Which image do you want to browse?",
            f,
            area,
        ),
        BrowseStep::Partition => draw_parts(b, f, area),
        BrowseStep::Folder => draw_folder(b, f, area),
        BrowseStep::Dest => draw_dests(model, b, f, area),
        BrowseStep::Confirm => draw_confirm(b, f, area),
    }
}

fn draw_parts(b: &Browse, f: &mut Frame, area: Rect) {
    let Some(r) = &b.report else { return };
    let [list, note] = Layout::vertical([Constraint::Min(3), Constraint::Length(2)]).areas(area);
    let title = format!(
        "Partitions of {}",
        r.image
            .file_name()
            .map_or_else(|| r.image.display().to_string(), |n| n.to_string_lossy().into_owned())
    );
    if r.parts.is_empty() {
        f.render_widget(
            Paragraph::new("This image's disk has no partitions that can be opened.")
                .block(boxed(&title)),
            list,
        );
        return;
    }
    let rows = r.parts.iter().enumerate().map(|(i, p)| {
        let here = i == b.cursor;
        let state = match (&p.dir, &p.reason) {
            (Some(_), _) => "can be opened".to_string(),
            (None, Some(why)) => format!("cannot be opened: {why}"),
            (None, None) => "cannot be opened".to_string(),
        };
        Row::new(vec![
            Cell::from(if here { ">" } else { " " }),
            Cell::from(p.name.clone()),
            Cell::from(human_bytes(p.size_bytes)),
            Cell::from(p.fs.clone().unwrap_or_else(|| "-".into())),
            Cell::from(p.label.clone().unwrap_or_else(|| "-".into())),
            Cell::from(state),
        ])
        .style(if here {
            highlight()
        } else if p.dir.is_none() {
            dim()
        } else {
            Style::default()
        })
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(1),
                Constraint::Length(4),
                Constraint::Length(10),
                Constraint::Length(7),
                Constraint::Length(16),
                Constraint::Fill(1),
            ],
        )
        .header(Row::new(vec!["", "part", "size", "fs", "label", ""]).style(bold()))
        .block(boxed(&title)),
        list,
    );
    f.render_widget(
        Paragraph::new(format!(
            "Opened read-only from {}.",
            r.image.display()
        ))
        .style(dim())
        .wrap(Wrap { trim: true }),
        note,
    );
}

fn entry_row(b: &Browse, i: usize, e: &Entry) -> Row<'static> {
    let here = i == b.entry_cursor;
    let picked = b.selected.iter().any(|s| s.path == e.path);
    let mut name = e.name.clone();
    match e.kind {
        EntryKind::Dir => name.push('/'),
        EntryKind::Symlink => {
            if let Some(l) = &e.link {
                name.push_str(&format!(" -> {}", l.display()));
            }
        }
        EntryKind::Other => name.push_str("  (special file, not copied)"),
        EntryKind::File => {}
    }
    let stamp = crate::jobs::chain::utc_stamp(u64::try_from(e.mtime_unix).unwrap_or(0));
    let when = format!(
        "{}-{}-{} {}:{}",
        stamp.get(0..4).unwrap_or(""),
        stamp.get(4..6).unwrap_or(""),
        stamp.get(6..8).unwrap_or(""),
        stamp.get(9..11).unwrap_or(""),
        stamp.get(11..13).unwrap_or("")
    );
    Row::new(vec![
        Cell::from(if here { ">" } else { " " }),
        Cell::from(if picked { "[x]" } else { "[ ]" }),
        Cell::from(name),
        Cell::from(if e.kind == EntryKind::Dir {
            String::new()
        } else {
            human_bytes(e.size_bytes)
        }),
        Cell::from(when),
    ])
    .style(if here { highlight() } else { Style::default() })
}

/// "3 selected: 2 files (1.2 MiB) and 1 folder".
fn selection_line(sel: &[Selected]) -> String {
    if sel.is_empty() {
        return "Nothing selected yet: Space selects the highlighted file or folder.".into();
    }
    let (dirs, files, bytes) = selection_totals(sel);
    let mut s = format!(
        "{} selected: {} file{} ({})",
        sel.len(),
        files,
        if files == 1 { "" } else { "s" },
        human_bytes(bytes)
    );
    if dirs > 0 {
        s.push_str(&format!(
            " and {dirs} folder{} (sized when you copy)",
            if dirs == 1 { "" } else { "s" }
        ));
    }
    s
}

fn draw_folder(b: &Browse, f: &mut Frame, area: Rect) {
    let here = b.cwd.as_deref().map_or_else(String::new, |c| shown(b, c));
    let [list, sel] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(area);
    if b.entries.is_empty() {
        f.render_widget(
            Paragraph::new("This folder is empty. Backspace goes up.").block(boxed(&here)),
            list,
        );
    } else {
        // keep the highlighted row on screen
        let visible = usize::from(list.height.saturating_sub(3)).max(1);
        let first = b.entry_cursor.saturating_sub(visible - 1);
        let rows: Vec<Row> = b
            .entries
            .iter()
            .enumerate()
            .skip(first)
            .take(visible)
            .map(|(i, e)| entry_row(b, i, e))
            .collect();
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Length(1),
                    Constraint::Length(3),
                    Constraint::Fill(1),
                    Constraint::Length(10),
                    Constraint::Length(16),
                ],
            )
            .header(Row::new(vec!["", "", "name", "size", "modified (UTC)"]).style(bold()))
            .block(boxed(&here)),
            list,
        );
    }
    let mut lines = vec![Line::raw(selection_line(&b.selected))];
    if !b.selected.is_empty() {
        let names: Vec<&str> = b.selected.iter().map(|s| s.shown.as_str()).collect();
        lines.push(Line::styled(names.join("  "), dim()));
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), sel);
}

fn draw_dests(model: &Model, b: &Browse, f: &mut Frame, area: Rect) {
    let list_of = dests(model);
    let [head, list] = Layout::vertical([Constraint::Length(2), Constraint::Min(3)]).areas(area);
    f.render_widget(
        Paragraph::new(format!("Copy {} to:", selection_line(&b.selected)))
            .wrap(Wrap { trim: true }),
        head,
    );
    if list_of.is_empty() {
        f.render_widget(
            Paragraph::new(
                "No place to copy to: choose an image storage (s on the home screen), or mount a disk from the shell (x).",
            )
            .wrap(Wrap { trim: true })
            .block(boxed("Where should the copies go?")),
            list,
        );
        return;
    }
    let rows = list_of.iter().enumerate().map(|(i, d)| {
        let here = i == b.cursor;
        Row::new(vec![
            Cell::from(if here { ">" } else { " " }),
            Cell::from(d.dir.display().to_string()),
            Cell::from(d.what.clone()),
            Cell::from(
                d.free_bytes
                    .map(|u| format!("{} free", human_bytes(u)))
                    .unwrap_or_default(),
            ),
        ])
        .style(if here { highlight() } else { Style::default() })
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(1),
                Constraint::Fill(2),
                Constraint::Fill(2),
                Constraint::Length(16),
            ],
        )
        .header(Row::new(vec!["", "folder", "what", ""]).style(bold()))
        .block(boxed("Where should the copies go?")),
        list,
    );
}

fn draw_confirm(b: &Browse, f: &mut Frame, area: Rect) {
    let Some(p) = &b.plan else { return };
    let mut lines = vec![
        Line::styled(format!("Copy into {}", p.dest.display()), bold()),
        Line::raw(""),
    ];
    for s in &b.selected {
        lines.push(Line::raw(format!("  {}{}", s.shown, if s.dir { "/" } else { "" })));
    }
    lines.push(Line::raw(""));
    lines.push(Line::raw(format!(
        "{} file{}, {} folder{}, {} link{}: {} to copy.",
        p.files,
        if p.files == 1 { "" } else { "s" },
        p.dirs,
        if p.dirs == 1 { "" } else { "s" },
        p.symlinks,
        if p.symlinks == 1 { "" } else { "s" },
        human_bytes(p.bytes)
    )));
    lines.push(Line::raw(format!(
        "Free at the destination: {} (needs {}).",
        human_bytes(p.free_bytes),
        human_bytes(p.need_bytes)
    )));
    if p.skipped > 0 {
        lines.push(Line::styled(
            format!(
                "{} special file{} (device nodes, FIFOs, sockets) will be skipped.",
                p.skipped,
                if p.skipped == 1 { "" } else { "s" }
            ),
            dim(),
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Modes, times and links are kept. Nothing is overwritten. Press Enter to copy.",
        dim(),
    ));
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed("Check, then copy")),
        area,
    );
}
