//! The image wizard: choose the disk, then the kind (full, incremental or differential), the
//! file name and the compression level, then check the plan and start. Imaging only reads the
//! disk; a disk with images in the storage continues its chain by default.

use super::progress::{start, JobKind};
use super::{short_name, sources, step_cursor};
use crate::inspect::DiskReport;
use crate::jobs::image::ImagePlan;
use crate::tui::app::{Cmd, ImageEntry, JobRequest, Model, Planned, Screen};
use crate::tui::widgets::{bold, boxed, dim, draw_source_list, form_field, Keys};
use crate::units::human_bytes;
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;
use std::path::{Path, PathBuf};

/// Full, incremental or differential: the kind the image will record.
pub use crate::image::ImageKind;

/// The image wizard.
#[derive(Debug, Clone, Default)]
pub struct ImageWiz {
    /// The step.
    pub step: ImageStep,
    /// Highlighted row (sources, or option fields).
    pub cursor: usize,
    /// The chosen source disk.
    pub source: Option<PathBuf>,
    /// Full, incremental or differential.
    pub kind: ImageKind,
    /// zstd level.
    pub level: i32,
    /// File name (without `.lbi`) for a full image.
    pub name: String,
    /// Rescue mode: a failing disk; read errors are recorded as missing instead of
    /// stopping the image.
    pub rescue: bool,
    /// Every block of swap areas (`--full-swap`), not only their header.
    pub full_swap: bool,
    /// Encrypt the (full) image with the passphrase typed.
    pub encrypt: bool,
    /// The passphrase, and the same again (shown as stars).
    pub pass: [crate::image::crypt::Secret; 2],
    /// The two passphrases typed differ (or none was typed): said under them.
    pub pass_problem: Option<&'static str>,
    /// Also make a recovery key (`--recovery-key`), shown once on the result screen.
    pub recovery: bool,
    /// Make the storage a fleet store with this image (`--dedup`): its blocks are stored
    /// once for every machine imaged into it. A storage that is one already takes every
    /// image that way.
    pub fleet: bool,
    /// The plan, on the confirm step.
    pub plan: Option<Box<ImagePlan>>,
}

/// Steps of the image wizard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageStep {
    /// Which disk.
    #[default]
    Source,
    /// Kind, name, level.
    Options,
    /// The plan, and Enter to start.
    Confirm,
}

/// The status line.
pub(crate) const STATUS: &str = "Imaging only reads the disk; the image is written to the storage.";
/// The help.
pub(crate) const HELP: [&str; 5] = [
    "An image holds the partition table, the boot areas and every block",
    "the filesystems use, compressed and checksummed. The disk is only read.",
    "",
    "Incremental and differential images store only what changed; they",
    "need the earlier images of the same disk in the same storage.",
];

/// The title of step `w.step`.
pub(crate) fn title(w: &ImageWiz) -> &'static str {
    match w.step {
        ImageStep::Source => "make an image: 1/3 choose the disk",
        ImageStep::Options => "make an image: 2/3 options",
        ImageStep::Confirm => "make an image: 3/3 check and start",
    }
}

/// The footer of step `w.step`.
pub(crate) fn footer(w: &ImageWiz) -> Keys {
    match w.step {
        ImageStep::Source => vec![("Up/Down", "select"), ("Enter", "next"), ("Esc", "back")],
        ImageStep::Options => vec![
            ("Up/Down", "field"),
            ("Left/Right/Space", "change"),
            ("Enter", "next"),
            ("Esc", "back"),
        ],
        ImageStep::Confirm => vec![("Enter", "start"), ("Esc", "back")],
    }
}

/// The field of the fleet-store choice: the last one, for a full image.
fn fleet_field(w: &ImageWiz) -> Option<usize> {
    (w.kind == ImageKind::Full).then_some(if w.encrypt { 9 } else { 6 })
}

/// Whether the storage is a fleet store already (it lists images in packs).
fn storage_is_fleet(model: &Model) -> bool {
    model.storage_fleet || model.images.iter().any(|e| e.found.packed)
}

/// The images in the storage taken of `disk`.
pub fn images_of<'a>(model: &'a Model, disk: &DiskReport) -> Vec<&'a ImageEntry> {
    let me = crate::jobs::chain::DiskIdentity::of_report(disk);
    model
        .images
        .iter()
        .filter(|e| e.found.disk.differs_from(&me).is_none())
        .collect()
}

/// Images of `disk` already in the storage: (any, a full one).
pub fn chain_for(model: &Model, disk: &DiskReport) -> (bool, bool) {
    let same = images_of(model, disk);
    // a fleet store's images take no children: every image there is full
    let chainable: Vec<_> = same.iter().filter(|e| !e.found.packed).collect();
    (
        !chainable.is_empty(),
        chainable.iter().any(|e| e.found.full),
    )
}

/// A file name for a full image of `d`: `sda-Samsung-SSD-860-20261122`.
pub fn suggested_name(d: &DiskReport, unix: u64) -> String {
    let mut s = short_name(&d.path);
    if let Some(m) = &d.model {
        let words: Vec<String> = m
            .split_whitespace()
            .take(3)
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect()
            })
            .filter(|w: &String| !w.is_empty())
            .collect();
        if !words.is_empty() {
            s.push('-');
            s.push_str(&words.join("-"));
        }
    }
    let stamp = crate::jobs::chain::utc_stamp(unix);
    s.push('-');
    s.push_str(stamp.get(..8).unwrap_or(&stamp));
    s
}

/// A key in the image wizard.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let srcs = sources(model);
    let dir = model.storage.as_ref().map(|s| s.dir.clone());
    let unix = model.now_unix;
    let chains: Vec<(bool, bool)> = model.disks.iter().map(|d| chain_for(model, d)).collect();
    let disks = model.disks.clone();
    let in_fleet = storage_is_fleet(model);
    let Screen::Image(w) = &mut model.screen else {
        return None;
    };
    match w.step {
        ImageStep::Source => {
            if step_cursor(&mut w.cursor, srcs.len(), k.code) {
                return None;
            }
            match k.code {
                KeyCode::Esc => model.screen = Screen::Home,
                KeyCode::Enter => {
                    let &i = srcs.get(w.cursor)?;
                    let d = &disks[i];
                    w.source = Some(d.path.clone());
                    w.name = suggested_name(d, unix);
                    // a disk with images already continues its chain by default
                    w.kind = match chains[i] {
                        (true, true) => ImageKind::Incremental,
                        _ => ImageKind::Full,
                    };
                    w.step = ImageStep::Options;
                    w.cursor = 0;
                }
                _ => {}
            }
            None
        }
        ImageStep::Options => {
            let src = w.source.clone()?;
            let Some(i) = disks.iter().position(|d| d.path == src) else {
                // the disk went away in a rescan: only going back makes sense
                if k.code == KeyCode::Esc {
                    w.step = ImageStep::Source;
                    w.cursor = 0;
                }
                return None;
            };
            let (_, has_full) = chains[i];
            // Space changes a choice as Right does (a serial line's arrow keys can arrive
            // apart and read as Esc); in the name and the passphrases it is typed
            let choice = matches!(w.cursor, 0 | 3 | 4 | 5)
                || (w.cursor == 8 && w.encrypt)
                || Some(w.cursor) == fleet_field(w);
            let code = match k.code {
                KeyCode::Char(' ') if choice => KeyCode::Right,
                c => c,
            };
            match code {
                KeyCode::Esc => {
                    w.step = ImageStep::Source;
                    w.cursor = srcs.iter().position(|&j| j == i).unwrap_or(0);
                }
                KeyCode::Up => w.cursor = w.cursor.saturating_sub(1),
                KeyCode::Down | KeyCode::Tab => {
                    let last = fleet_field(w).unwrap_or(5);
                    w.cursor = (w.cursor + 1).min(last);
                }
                // a storage that is a fleet store already: nothing to choose
                KeyCode::Left | KeyCode::Right if Some(w.cursor) == fleet_field(w) && !in_fleet => {
                    w.fleet = !w.fleet;
                }
                KeyCode::Left | KeyCode::Right if Some(w.cursor) == fleet_field(w) => {}
                KeyCode::Left | KeyCode::Right if w.cursor == 5 && w.kind == ImageKind::Full => {
                    w.encrypt = !w.encrypt;
                    w.pass_problem = None;
                }
                KeyCode::Left | KeyCode::Right if w.cursor == 8 && w.encrypt => {
                    w.recovery = !w.recovery
                }
                KeyCode::Backspace if w.encrypt && matches!(w.cursor, 6 | 7) => {
                    w.pass[w.cursor - 6].0.pop();
                    w.pass_problem = None;
                }
                KeyCode::Char(c)
                    if w.encrypt
                        && matches!(w.cursor, 6 | 7)
                        && w.pass[w.cursor - 6].0.len() < 512 =>
                {
                    w.pass[w.cursor - 6].0.push(c);
                    w.pass_problem = None;
                }
                KeyCode::Left | KeyCode::Right if w.cursor == 3 => w.rescue = !w.rescue,
                KeyCode::Left | KeyCode::Right if w.cursor == 4 => w.full_swap = !w.full_swap,
                KeyCode::Left | KeyCode::Right if w.cursor == 0 => {
                    let all = [
                        ImageKind::Full,
                        ImageKind::Incremental,
                        ImageKind::Differential,
                    ];
                    let offered: Vec<ImageKind> = all
                        .into_iter()
                        .filter(|k| *k == ImageKind::Full || has_full)
                        .collect();
                    let at = offered.iter().position(|k| *k == w.kind).unwrap_or(0);
                    let n = offered.len();
                    let next = if code == KeyCode::Right {
                        (at + 1) % n
                    } else {
                        (at + n - 1) % n
                    };
                    w.kind = offered[next];
                }
                KeyCode::Left if w.cursor == 2 => w.level = (w.level - 1).max(1),
                KeyCode::Right if w.cursor == 2 => w.level = (w.level + 1).min(19),
                KeyCode::Backspace if w.cursor == 1 => {
                    w.name.pop();
                }
                KeyCode::Char(c)
                    if w.cursor == 1
                        && (c.is_ascii_alphanumeric() || "-_.".contains(c))
                        && w.name.len() < 80 =>
                {
                    w.name.push(c);
                }
                KeyCode::Enter => {
                    let dir = dir?;
                    if w.kind == ImageKind::Full && w.name.trim_matches('.').is_empty() {
                        w.cursor = 1;
                        return None;
                    }
                    let encrypt = w.encrypt && w.kind == ImageKind::Full;
                    if encrypt && w.pass[0].0.is_empty() {
                        (w.cursor, w.pass_problem) = (6, Some("type a passphrase"));
                        return None;
                    }
                    if encrypt && w.pass[0] != w.pass[1] {
                        (w.cursor, w.pass_problem) = (7, Some("the two passphrases differ"));
                        return None;
                    }
                    model.busy = Some(format!("Reading {} and its filesystems...", src.display()));
                    return Some(Cmd::Plan(JobRequest::Image {
                        source: src,
                        dir,
                        name: w.name.clone(),
                        kind: w.kind,
                        level: w.level,
                        rescue: w.rescue,
                        full_swap: w.full_swap,
                        passphrase: encrypt.then(|| w.pass[0].clone()),
                        recovery_key: encrypt && w.recovery,
                        dedup: w.kind == ImageKind::Full && (w.fleet || in_fleet),
                    }));
                }
                _ => {}
            }
            None
        }
        ImageStep::Confirm => match k.code {
            KeyCode::Esc => {
                w.step = ImageStep::Options;
                w.plan = None;
                None
            }
            KeyCode::Enter => {
                let plan = w.plan.take()?;
                let title = format!(
                    "Imaging {} into {}",
                    plan.source.display(),
                    plan.output.display()
                );
                start(model, JobKind::Image, title, None);
                Some(Cmd::Start(Planned::Image(plan)))
            }
            _ => None,
        },
    }
}

fn image_count(model: &Model, d: &DiskReport) -> String {
    match images_of(model, d).len() {
        0 => String::new(),
        1 => "1 image in storage".into(),
        n => format!("{n} images in storage"),
    }
}

/// Draws the image wizard's step.
pub(crate) fn draw(model: &Model, w: &ImageWiz, f: &mut Frame, area: Rect) {
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
        ImageStep::Options => draw_options(model, w, f, area),
        ImageStep::Confirm => draw_confirm(w, f, area),
    }
}

fn field(label: &str, value: String, focused: bool) -> Line<'static> {
    form_field(label, 12, value, focused)
}

fn draw_options(model: &Model, w: &ImageWiz, f: &mut Frame, area: Rect) {
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
        field(
            "mode",
            format!("< {} >", if w.rescue { "rescue" } else { "normal" }),
            w.cursor == 3,
        ),
        Line::styled(
            if w.rescue {
                "                for a failing disk: unreadable sectors become missing ranges"
            } else {
                "                stops at a read error; rescue is for a failing disk"
            },
            dim(),
        ),
        field(
            "swap",
            format!("< {} >", if w.full_swap { "every block" } else { "header" }),
            w.cursor == 4,
        ),
        Line::styled(
            if w.full_swap {
                "                swap areas copied whole, block by block"
            } else {
                "                only its header: the same UUID and label, nothing else to keep"
            },
            dim(),
        ),
    ];
    if w.kind == ImageKind::Full {
        lines.push(field(
            "encrypt",
            format!("< {} >", if w.encrypt { "yes" } else { "no" }),
            w.cursor == 5,
        ));
        if w.encrypt {
            for (i, label) in ["passphrase", "again"].into_iter().enumerate() {
                let stars = "*".repeat(w.pass[i].0.chars().count());
                let typed = if w.cursor == 6 + i {
                    format!("{stars}_")
                } else {
                    stars
                };
                lines.push(field(label, typed, w.cursor == 6 + i));
            }
            lines.push(Line::styled(
                match w.pass_problem {
                    Some(p) => format!("                {p}"),
                    None => "                every command that reads the image will ask for it; it cannot be recovered".into(),
                },
                match w.pass_problem {
                    Some(_) => Style::default().fg(Color::Red),
                    None => dim(),
                },
            ));
            lines.push(field(
                "recovery key",
                if w.recovery {
                    "< yes >  shown once when done: write it down, keep it apart".into()
                } else {
                    "< no >   a printable second key that opens the image".into()
                },
                w.cursor == 8,
            ));
        } else {
            lines.push(Line::styled(
                "                XChaCha20-Poly1305 under a passphrase; for images that leave the building",
                dim(),
            ));
        }
    } else {
        lines.push(field("encrypt", "as its parent is".into(), w.cursor == 5));
    }
    if let Some(at) = fleet_field(w) {
        let value = if storage_is_fleet(model) {
            "yes      the storage is one: blocks it holds already are not stored again".to_string()
        } else if w.fleet {
            "< yes >  the storage becomes one: shared blocks stored once for all machines".into()
        } else {
            "< no >   this image in a file of its own".into()
        };
        lines.push(field("fleet store", value, w.cursor == at));
    }
    lines.push(Line::raw(""));
    lines.push(Line::raw(
        "   verify       always: the new image is read back and checked before it is called done",
    ));
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

fn draw_confirm(w: &ImageWiz, f: &mut Frame, area: Rect) {
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
    if p.dedup {
        lines.push(Line::raw(
            " fleet     into the storage's fleet store: chunks it holds already are not stored again",
        ));
    }
    if let Some(c) = p.encryption {
        lines.push(Line::raw(format!(
            " encrypted {c}{}",
            if p.parent.is_some() {
                ", with its parent's key"
            } else if p.dedup {
                ", under the fleet store's key"
            } else {
                ", under the passphrase typed"
            }
        )));
    }
    if let Some(r) = &p.rescue {
        lines.push(Line::styled(
            format!(
                " mode      RESCUE: read errors do not stop it; {} retry pass{}, {} s per read at most",
                r.retries,
                if r.retries == 1 { "" } else { "es" },
                r.read_timeout_secs
            ),
            Style::default().fg(Color::Yellow),
        ));
    }
    match &p.resume {
        Some(crate::jobs::image::ResumeFrom::Interrupted {
            rescued_bytes,
            left_bytes,
            ..
        }) => {
            lines.push(Line::raw(format!(
                " resumes   the rescue that stopped: {} already read, {} left to try",
                human_bytes(*rescued_bytes),
                human_bytes(*left_bytes)
            )));
        }
        Some(crate::jobs::image::ResumeFrom::Sealed {
            missing_bytes,
            missing_ranges,
        }) => {
            lines.push(Line::raw(format!(
                " resumes   the finished rescue: tries its {} missing in {missing_ranges} places again",
                human_bytes(*missing_bytes)
            )));
        }
        None => {}
    }
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
    if p.split_reason.is_some() {
        lines.push(Line::styled(
            format!(
                " note: the storage is FAT, which holds no file over 4 GiB: the image is written \
                 as {} volumes (.lbi, .lbi.001, ...), read as one image.",
                human_bytes(p.volume_size)
            ),
            Style::default().fg(Color::Yellow),
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
