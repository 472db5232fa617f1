//! The list of images in the storage, grouped per chain (per source disk), oldest first
//! within a chain: restore's first step and the verify screen both choose from it.

use super::short_name;
use crate::jobs::chain::utc_stamp;
use crate::tui::app::{ImageEntry, Model};
use crate::tui::widgets::{bold, boxed, dim, highlight, red};
use crate::units::human_bytes;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

/// One row of the image list: a chain heading, or an image (index into `model.images`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRow {
    /// A chain's heading: its name and the disk it was taken of.
    Chain(String, String),
    /// An image.
    Image(usize),
}

/// The images grouped per chain (per source disk), oldest first within a chain.
pub fn image_rows(images: &[ImageEntry]) -> Vec<ImageRow> {
    let mut order: Vec<usize> = (0..images.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&images[a].found, &images[b].found);
        (&x.chain_name, x.created_unix, &x.path).cmp(&(&y.chain_name, y.created_unix, &y.path))
    });
    let mut rows = Vec::new();
    let mut last: Option<&str> = None;
    for i in order {
        let f = &images[i].found;
        if last != Some(f.chain_name.as_str()) {
            let d = &f.disk;
            let what = d
                .model
                .clone()
                .or_else(|| d.path.clone())
                .unwrap_or_default();
            let disk = format!("{what}, {}", crate::units::human_bytes(d.size_bytes));
            rows.push(ImageRow::Chain(f.chain_name.clone(), disk));
            last = Some(f.chain_name.as_str());
        }
        rows.push(ImageRow::Image(i));
    }
    rows
}

/// The images in list order (the rows without headings).
pub fn image_order(images: &[ImageEntry]) -> Vec<usize> {
    image_rows(images)
        .into_iter()
        .filter_map(|r| match r {
            ImageRow::Image(i) => Some(i),
            ImageRow::Chain(..) => None,
        })
        .collect()
}

/// Draws the list under `title`, with the image at `cursor` (in list order) highlighted.
pub(crate) fn draw(model: &Model, cursor: usize, title: &str, f: &mut Frame, area: Rect) {
    let rows = image_rows(&model.images);
    let order = image_order(&model.images);
    let sel = order.get(cursor).copied();
    if rows.is_empty() {
        let dir = model
            .storage
            .as_ref()
            .map_or("?".to_string(), |s| s.dir.display().to_string());
        let mut lines = vec![Line::raw(format!("No images found in {dir}."))];
        if let Some(l) = locked_line(model) {
            lines.push(l);
        }
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
    let mut lines = Vec::new();
    if let Some(i) = sel {
        let d = &model.images[i].found.disk;
        lines.push(Line::styled(format!("taken of {}", d.describe()), dim()));
    }
    lines.extend(locked_line(model));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), note);
}

/// "2 encrypted images are not listed: press u…", when the storage holds any.
pub(crate) fn locked_line(model: &Model) -> Option<Line<'static>> {
    match model.locked_images {
        0 => None,
        1 => Some(Line::styled(
            "1 encrypted image is not listed: press u to type its passphrase.",
            Style::default().fg(ratatui::style::Color::Yellow),
        )),
        n => Some(Line::styled(
            format!("{n} encrypted images are not listed: press u to type their passphrase."),
            Style::default().fg(ratatui::style::Color::Yellow),
        )),
    }
}
