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
    // (an S3 store is no folder files can be copied into)
    if let Some(s) = model
        .storage
        .as_ref()
        .filter(|s| !crate::store::s3::is_s3(&s.dir))
    {
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
    let Some(b) = model
        .browse
        .as_mut()
        .filter(|b| b.step == BrowseStep::Image)
    else {
        return;
    };
    match r {
        Ok(report) => {
            b.cursor = report
                .parts
                .iter()
                .position(|p| p.dir.is_some())
                .unwrap_or(0);
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
        r.image.file_name().map_or_else(
            || r.image.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
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
        Paragraph::new(format!("Opened read-only from {}.", r.image.display()))
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
        lines.push(Line::raw(format!(
            "  {}{}",
            s.shown,
            if s.dir { "/" } else { "" }
        )));
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

/// A mounted image as the loop reports it, and folder entries, for the tests.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use crate::access::mount::MountedPart;

    /// Where the fixture image is mounted.
    pub(crate) const DIR: &str = "/run/lifeboat/lifeboat-browse-42-0";

    fn part(n: u32, fs: &str, label: &str, size: u64, why: Option<&str>) -> MountedPart {
        MountedPart {
            name: format!("p{n}"),
            number: n,
            fs: Some(fs.into()),
            label: Some(label.into()),
            size_bytes: size,
            raw: PathBuf::from(format!("{DIR}/raw/p{n}")),
            dir: why.is_none().then(|| PathBuf::from(format!("{DIR}/p{n}"))),
            reason: why.map(str::to_string),
            driver: why.is_none().then(|| format!("kernel {fs}")),
        }
    }

    /// The SSD's full image: an ESP, an ext4 root, and an NTFS that cannot be mounted.
    pub(crate) fn report() -> MountReport {
        MountReport {
            image: PathBuf::from("/store/sda-Samsung-SSD-860-20261115.lbi"),
            dir: PathBuf::from(DIR),
            disk: PathBuf::from(format!("{DIR}/raw/disk")),
            parts: vec![
                part(1, "vfat", "ESP", 536_870_912, None),
                part(2, "ext4", "root", 400_000_000_000, None),
                part(
                    3,
                    "ntfs",
                    "Data",
                    99_000_000_000,
                    Some("no NTFS driver (ntfs-3g) on this system"),
                ),
            ],
            read_write: false,
        }
    }

    /// An entry of `dir`.
    pub(crate) fn entry(dir: &str, name: &str, kind: EntryKind, size: u64) -> Entry {
        Entry {
            name: name.into(),
            path: Path::new(dir).join(name),
            kind,
            size_bytes: size,
            mtime_unix: 1_795_284_900,
            mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
            link: (kind == EntryKind::Symlink).then(|| PathBuf::from("thesis-v3.odt")),
        }
    }

    /// `/home/ann` of p2.
    pub(crate) fn ann() -> (PathBuf, Vec<Entry>) {
        let d = format!("{DIR}/p2/home/ann");
        (
            PathBuf::from(&d),
            vec![
                entry(&d, "Documents", EntryKind::Dir, 0),
                entry(&d, "Pictures", EntryKind::Dir, 0),
                entry(&d, "notes.txt", EntryKind::File, 2_345),
                entry(&d, "thesis-v3.odt", EntryKind::File, 1_258_291),
                entry(&d, "thesis.odt", EntryKind::Symlink, 13),
            ],
        )
    }

    /// The browser in `/home/ann` of p2 of the storage model's first image.
    pub(crate) fn in_ann(m: &mut Model) {
        let (cwd, entries) = ann();
        m.browse = Some(Browse {
            step: BrowseStep::Folder,
            image: Some(report().image),
            report: Some(report()),
            part: Some(1),
            cwd: Some(cwd),
            entries,
            ..Browse::default()
        });
        m.screen = Screen::Browse;
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{ann, entry, in_ann, report, DIR};
    use super::*;
    use crate::jobs::copy_out::CopySummary;
    use crate::jobs::{Event, JobError, Summary};
    use crate::tui::app::{update, Msg};
    use crate::tui::testing::storage_model;
    use crossterm::event::KeyModifiers;
    use std::sync::Arc;

    fn press(m: &mut Model, code: KeyCode) -> Option<Cmd> {
        update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn b(m: &Model) -> &Browse {
        m.browse.as_ref().expect("the browser is open")
    }

    fn plan_of(items: &[Selected], dest: &str) -> Box<CopyPlan> {
        Box::new(CopyPlan {
            items: items
                .iter()
                .filter_map(|s| CopyItem::named_after(s.path.clone()))
                .collect(),
            dest: PathBuf::from(dest),
            files: 14,
            dirs: 3,
            symlinks: 1,
            skipped: 0,
            bytes: 48_000_000,
            need_bytes: 48_300_000,
            free_bytes: 1_900_000_000_000,
        })
    }

    /// The storage model, browser open on its first image and mounted.
    fn mounted_model() -> Model {
        let mut m = storage_model();
        assert!(press(&mut m, KeyCode::Char('o')).is_none());
        assert!(matches!(m.screen, Screen::Browse));
        assert_eq!(b(&m).step, BrowseStep::Image);
        let cmd = press(&mut m, KeyCode::Enter);
        let first = m.images[image_order(&m.images)[0]].found.path.clone();
        assert!(
            matches!(&cmd, Some(Cmd::MountImage(p)) if *p == first),
            "{cmd:?}"
        );
        assert!(m.busy.as_deref().is_some_and(|s| s.contains("read-only")));
        update(&mut m, Msg::Mounted(Ok(report())));
        assert!(m.busy.is_none());
        m
    }

    #[test]
    fn without_storage_browse_asks_for_it_first() {
        let mut m = storage_model();
        m.storage = None;
        press(&mut m, KeyCode::Char('o'));
        assert!(matches!(
            m.screen,
            Screen::Storage {
                then: Some(crate::tui::app::Action::Browse),
                ..
            }
        ));
    }

    #[test]
    fn a_mount_error_is_shown_and_the_image_can_be_chosen_again() {
        let mut m = storage_model();
        press(&mut m, KeyCode::Char('o'));
        press(&mut m, KeyCode::Down);
        assert!(matches!(
            press(&mut m, KeyCode::Enter),
            Some(Cmd::MountImage(_))
        ));
        let f = crate::tui::outcome::failure(
            "opening the image",
            &crate::Error::Chain {
                image: "/store/sda-Samsung-SSD-860-20261122-incr.lbi".into(),
                reason: "its parent sda-Samsung-SSD-860-20261115.lbi is not in /store".into(),
                source: None,
            },
            false,
        );
        update(&mut m, Msg::Mounted(Err(f)));
        assert!(m.busy.is_none());
        assert!(m
            .failure
            .as_ref()
            .is_some_and(|f| f.causes[0].contains("is not in /store")));
        press(&mut m, KeyCode::Enter); // closes the error
        assert!(m.failure.is_none());
        assert_eq!((b(&m).step, b(&m).cursor), (BrowseStep::Image, 1));
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert!(matches!(m.screen, Screen::Home) && m.browse.is_none());
    }

    #[test]
    fn an_unmountable_partition_cannot_be_opened_and_others_are_listed() {
        let mut m = mounted_model();
        assert_eq!((b(&m).step, b(&m).cursor), (BrowseStep::Partition, 0));
        press(&mut m, KeyCode::End);
        assert_eq!(b(&m).cursor, 2);
        assert!(press(&mut m, KeyCode::Enter).is_none(), "p3 has no mount");
        assert!(m.busy.is_none());
        press(&mut m, KeyCode::Up);
        let cmd = press(&mut m, KeyCode::Enter);
        assert!(
            matches!(&cmd, Some(Cmd::ListDir(d)) if *d == Path::new(DIR).join("p2")),
            "{cmd:?}"
        );
        assert_eq!(b(&m).part, Some(1));
        let root = Path::new(DIR).join("p2");
        let entries = vec![entry(root.to_str().unwrap(), "home", EntryKind::Dir, 0)];
        update(&mut m, Msg::Listed(Ok((root.clone(), entries))));
        assert_eq!(b(&m).step, BrowseStep::Folder);
        assert_eq!(b(&m).cwd.as_deref(), Some(root.as_path()));
        // a listing error keeps the folder shown
        update(
            &mut m,
            Msg::Listed(Err(crate::tui::outcome::failure(
                "reading the folder",
                &crate::Error::io(
                    "listing",
                    "/x",
                    std::io::Error::from_raw_os_error(libc::EIO),
                ),
                false,
            ))),
        );
        assert!(m.failure.is_some());
        assert_eq!(b(&m).cwd.as_deref(), Some(root.as_path()));
    }

    #[test]
    fn enter_opens_folders_backspace_goes_up_to_the_folder_left() {
        let mut m = storage_model();
        in_ann(&mut m);
        // Enter on a file does nothing; on a folder lists it
        press(&mut m, KeyCode::Down);
        press(&mut m, KeyCode::Down);
        assert!(press(&mut m, KeyCode::Enter).is_none());
        press(&mut m, KeyCode::Home);
        let docs = Path::new(DIR).join("p2/home/ann/Documents");
        assert!(matches!(press(&mut m, KeyCode::Enter), Some(Cmd::ListDir(d)) if d == docs));
        update(&mut m, Msg::Listed(Ok((docs.clone(), vec![]))));
        // an empty folder: keys do nothing, Backspace goes up
        assert!(b(&m).entries.is_empty());
        for k in [
            KeyCode::Enter,
            KeyCode::Char(' '),
            KeyCode::Down,
            KeyCode::Char('c'),
        ] {
            assert!(press(&mut m, k).is_none());
        }
        assert_eq!(b(&m).step, BrowseStep::Folder);
        let up = press(&mut m, KeyCode::Backspace);
        let ann_dir = ann().0;
        assert!(
            matches!(&up, Some(Cmd::ListDir(d)) if *d == ann_dir),
            "{up:?}"
        );
        update(&mut m, Msg::Listed(Ok(ann())));
        assert_eq!(
            b(&m).entry_cursor,
            0,
            "the highlight is on Documents, the folder left"
        );
        // Left from the partition's root goes back to the partitions
        let root = Path::new(DIR).join("p2");
        if let Some(br) = m.browse.as_mut() {
            br.cwd = Some(root);
        }
        assert!(press(&mut m, KeyCode::Left).is_none());
        assert_eq!((b(&m).step, b(&m).cursor), (BrowseStep::Partition, 1));
    }

    #[test]
    fn space_selects_and_deselects_and_the_totals_follow() {
        let mut m = storage_model();
        in_ann(&mut m);
        press(&mut m, KeyCode::Char(' ')); // Documents/
        assert_eq!(b(&m).entry_cursor, 1, "Space moves on");
        press(&mut m, KeyCode::Down);
        press(&mut m, KeyCode::Down);
        press(&mut m, KeyCode::Char(' ')); // thesis-v3.odt
        press(&mut m, KeyCode::Char(' ')); // the link
        let sel = &b(&m).selected;
        assert_eq!(
            sel.iter().map(|s| s.shown.as_str()).collect::<Vec<_>>(),
            [
                "p2:/home/ann/Documents",
                "p2:/home/ann/thesis-v3.odt",
                "p2:/home/ann/thesis.odt"
            ]
        );
        assert_eq!(selection_totals(sel), (1, 2, 1_258_291 + 13));
        assert_eq!(
            selection_line(sel),
            "3 selected: 2 files (1.2 MiB) and 1 folder (sized when you copy)"
        );
        press(&mut m, KeyCode::Up);
        press(&mut m, KeyCode::Char(' ')); // thesis-v3.odt again: deselected
        assert_eq!(b(&m).selected.len(), 2);
        assert!(!b(&m).selected.iter().any(|s| s.shown.ends_with("v3.odt")));
    }

    #[test]
    fn copy_goes_through_destination_and_confirm_and_back_to_the_folder() {
        let mut m = storage_model();
        in_ann(&mut m);
        assert!(press(&mut m, KeyCode::Char('c')).is_none());
        assert_eq!(
            b(&m).step,
            BrowseStep::Folder,
            "nothing selected: c does nothing"
        );
        press(&mut m, KeyCode::Down);
        press(&mut m, KeyCode::Down);
        press(&mut m, KeyCode::Char(' ')); // notes.txt
        press(&mut m, KeyCode::Char('c'));
        assert_eq!((b(&m).step, b(&m).cursor), (BrowseStep::Dest, 0));
        let d = dests(&m);
        assert_eq!(d[0].dir, Path::new("/store"), "the storage first");
        assert!(d.iter().all(|x| !x.dir.starts_with(DIR)));
        // Esc back to the folder keeps the selection
        press(&mut m, KeyCode::Esc);
        assert_eq!((b(&m).step, b(&m).selected.len()), (BrowseStep::Folder, 1));
        press(&mut m, KeyCode::Char('c'));
        let cmd = press(&mut m, KeyCode::Enter);
        let Some(Cmd::Plan(JobRequest::CopyOut { items, dest })) = cmd else {
            panic!("{cmd:?}")
        };
        assert_eq!(dest, Path::new("/store"));
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name, "notes.txt");
        assert!(m.busy.is_some());
        let sel = b(&m).selected.clone();
        update(
            &mut m,
            Msg::Planned(Ok(Planned::CopyOut(plan_of(&sel, "/store")))),
        );
        assert_eq!(b(&m).step, BrowseStep::Confirm);
        // Esc goes back to the destinations and drops the plan
        press(&mut m, KeyCode::Esc);
        assert!(b(&m).step == BrowseStep::Dest && b(&m).plan.is_none());
        update(
            &mut m,
            Msg::Planned(Ok(Planned::CopyOut(plan_of(&sel, "/store")))),
        );
        let cmd = press(&mut m, KeyCode::Enter);
        assert!(
            matches!(cmd, Some(Cmd::Start(Planned::CopyOut(_)))),
            "{cmd:?}"
        );
        let Screen::Running(r) = &m.screen else {
            panic!("not running")
        };
        assert_eq!(r.kind, JobKind::CopyOut);
        update(
            &mut m,
            Msg::Job(Event::Finished {
                ok: true,
                summary: Some(Summary::CopyOut(CopySummary {
                    dest: "/store".into(),
                    copied: vec!["/store/notes.txt".into()],
                    files: 1,
                    dirs: 0,
                    symlinks: 0,
                    skipped: 0,
                    bytes: 2_345,
                    seconds: 0.2,
                })),
                error: None,
            }),
        );
        let Screen::Done(d) = &m.screen else {
            panic!("not done")
        };
        assert!(d.failure.is_none());
        assert!(d.lines[0].contains("Copied 1 file"), "{:?}", d.lines);
        assert!(
            press(&mut m, KeyCode::Enter).is_none(),
            "no rescan: back to the folder"
        );
        assert!(matches!(m.screen, Screen::Browse));
        assert_eq!(b(&m).step, BrowseStep::Folder);
        assert!(b(&m).selected.is_empty() && !b(&m).copying);
    }

    #[test]
    fn a_failed_copy_keeps_the_selection() {
        let mut m = storage_model();
        in_ann(&mut m);
        press(&mut m, KeyCode::Char(' '));
        press(&mut m, KeyCode::Char('c'));
        press(&mut m, KeyCode::Enter);
        let sel = b(&m).selected.clone();
        update(
            &mut m,
            Msg::Planned(Ok(Planned::CopyOut(plan_of(&sel, "/store")))),
        );
        press(&mut m, KeyCode::Enter);
        let e = crate::Error::Read {
            path: Path::new(DIR).join("p2/home/ann/Documents/a.odt"),
            offset: 1 << 20,
            len: 1 << 20,
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        update(
            &mut m,
            Msg::Job(Event::Finished {
                ok: false,
                summary: None,
                error: Some(JobError::new(Arc::new(e))),
            }),
        );
        let Screen::Done(d) = &m.screen else {
            panic!("not done")
        };
        let f = d.failure.as_ref().unwrap();
        assert!(f.causes[0].contains("Documents/a.odt"), "{:?}", f.causes);
        press(&mut m, KeyCode::Enter);
        assert_eq!(b(&m).step, BrowseStep::Folder);
        assert_eq!(b(&m).selected, sel);
        // a refused plan (a name that exists) is an error box on the destination step
        press(&mut m, KeyCode::Char('c'));
        press(&mut m, KeyCode::Enter);
        let refused = crate::tui::outcome::failure(
            "checking the copy",
            &crate::Error::Refused {
                path: "/store/Documents".into(),
                reason: "it exists already".into(),
            },
            false,
        );
        update(&mut m, Msg::Planned(Err(refused)));
        assert!(m.failure.is_some());
        assert_eq!(b(&m).step, BrowseStep::Dest);
    }

    #[test]
    fn esc_walks_back_and_closes_the_mount_at_the_top() {
        let mut m = storage_model();
        in_ann(&mut m);
        press(&mut m, KeyCode::Char(' '));
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert_eq!((b(&m).step, b(&m).cursor), (BrowseStep::Partition, 1));
        assert!(matches!(press(&mut m, KeyCode::Esc), Some(Cmd::CloseMount)));
        assert_eq!(b(&m).step, BrowseStep::Image);
        assert!(b(&m).report.is_none() && b(&m).selected.is_empty());
        let at = image_order(&m.images)[b(&m).cursor];
        assert_eq!(
            m.images[at].found.path,
            report().image,
            "the open image stays highlighted"
        );
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert!(m.browse.is_none() && matches!(m.screen, Screen::Home));
        // a late mount answer after leaving is ignored
        update(&mut m, Msg::Mounted(Ok(report())));
        assert!(m.browse.is_none());
        // an unmount failure is shown
        update(
            &mut m,
            Msg::MountClosed(Err(crate::tui::outcome::failure(
                "closing the image",
                &crate::Error::Busy {
                    path: DIR.into(),
                    reason: "a shell is in p2".into(),
                },
                false,
            ))),
        );
        assert!(m.failure.is_some());
    }
}
