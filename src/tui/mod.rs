//! The full-screen terminal UI (ratatui + crossterm), `lifeboat tui`.
//!
//! Elm style (STYLE §6): [`app::Model`] and the pure [`app::update`], the pure [`view::view`],
//! and this loop, the only place with I/O. One channel of [`app::Msg`] is fed by an input
//! thread, a 250 ms ticker and scans; only this thread draws. The terminal is restored on
//! every exit, and on panic by the terminal guard's hook.
//!
//! Status: the Home screen (disks, partitions, filesystems, the boot medium marked), help,
//! rescan and quit. The Storage screen and the image, restore and clone wizards are not
//! built yet; PID 1 still runs the line-mode console.

pub mod app;
mod terminal;
pub mod view;

use crate::discovery::SystemPaths;
use app::{Cmd, Model, Msg};
use crossbeam_channel::{bounded, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Disk reports for the Home screen, or the error chain in words.
fn scan() -> Result<Vec<crate::inspect::DiskReport>, String> {
    crate::inspect::list(&SystemPaths::default()).map_err(|e| crate::error::with_causes(&e))
}

/// Runs the TUI until the user leaves.
pub fn run() -> std::io::Result<()> {
    let mut term = terminal::Terminal::enter()?;
    let (tx, rx) = bounded::<Msg>(64);
    let stop = AtomicBool::new(false);
    let mut model = Model {
        scanning: true,
        ..Model::default()
    };
    std::thread::scope(|s| -> std::io::Result<()> {
        let input_tx = tx.clone();
        let stop_ref = &stop;
        s.spawn(move || input(input_tx, stop_ref));
        let tick_tx = tx.clone();
        s.spawn(move || {
            while !stop_ref.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                if tick_tx.try_send(Msg::Tick).is_err() && stop_ref.load(Ordering::SeqCst) {
                    break;
                }
            }
        });
        let rescan = |tx: Sender<Msg>| {
            s.spawn(move || {
                let _ = tx.send(Msg::Devices(scan()));
            });
        };
        rescan(tx.clone());
        let r = loop {
            if let Err(e) = term.draw(|f| view::view(&model, f)) {
                break Err(e);
            }
            let Ok(msg) = rx.recv() else { break Ok(()) };
            match app::update(&mut model, msg) {
                Some(Cmd::Quit) => break Ok(()),
                Some(Cmd::Rescan) => rescan(tx.clone()),
                None => {}
            }
        };
        stop.store(true, Ordering::SeqCst);
        // drain so that no sender blocks while the threads finish
        while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}
        r
    })
}

/// Feeds key presses until `stop`; polls so that it can be joined.
fn input(tx: Sender<Msg>, stop: &AtomicBool) {
    use crossterm::event::{poll, read, Event};
    while !stop.load(Ordering::SeqCst) {
        match poll(Duration::from_millis(100)) {
            Ok(true) => {
                if let Ok(Event::Key(k)) = read() {
                    if tx.send(Msg::Key(k)).is_err() {
                        return;
                    }
                } else if tx.try_send(Msg::Tick).is_err() {
                    // a resize or mouse event: redraw on the next message
                }
            }
            Ok(false) => {}
            Err(_) => return,
        }
    }
}

/// Fixtures for the TUI's tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::discovery::Transport;
    use crate::inspect::{DiskReport, PartReport, Source};
    use crate::partition::TableKind;
    use std::path::PathBuf;

    fn part(n: u32, size: u64, fs: &'static str, label: &str, mount: Option<&str>) -> PartReport {
        PartReport {
            number: n,
            path: Some(PathBuf::from(format!("/dev/sda{n}"))),
            start_bytes: u64::from(n) << 30,
            size_bytes: size,
            part_type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
            type_name: Some("Linux filesystem"),
            name: None,
            partuuid: None,
            fs: Some(fs),
            fs_version: None,
            label: Some(label.into()),
            uuid: None,
            mountpoint: mount.map(PathBuf::from),
            mountpoints: mount.map(PathBuf::from).into_iter().collect(),
            swap: false,
            holders: vec![],
            used_bytes: Some(size / 3),
            logical: false,
            extended: false,
        }
    }

    fn disk(path: &str, size: u64, t: Transport, model: &str, boot: bool) -> DiskReport {
        DiskReport {
            path: PathBuf::from(path),
            source: Source::Disk,
            size_bytes: size,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            model: Some(model.into()),
            serial: Some("S3Z9NB0K123456".into()),
            vendor: None,
            transport: Some(t),
            removable: Some(false),
            rotational: Some(false),
            read_only: Some(false),
            is_boot: boot,
            busy: None,
            backing_file: None,
            table: Some(TableKind::Gpt),
            disk_id: None,
            partitions: vec![],
            fs: None,
            diagnostics: vec![],
            error: None,
        }
    }

    /// Three disks: a system SSD, a USB stick that is the boot medium, an empty NVMe disk.
    pub(crate) fn disks() -> Vec<DiskReport> {
        let mut sda = disk(
            "/dev/sda",
            500_107_862_016,
            Transport::Sata,
            "Samsung SSD 860 EVO 500GB",
            false,
        );
        sda.partitions = vec![
            part(1, 536_870_912, "vfat", "ESP", None),
            part(2, 400_000_000_000, "ext4", "root", None),
            part(3, 99_000_000_000, "ntfs", "Data", None),
        ];
        let mut sdb = disk(
            "/dev/sdb",
            15_518_924_800,
            Transport::Usb,
            "SanDisk Cruzer",
            true,
        );
        sdb.partitions = vec![part(
            1,
            30_000_000,
            "iso9660",
            "LIFEBOAT",
            Some("/run/boot"),
        )];
        sdb.removable = Some(true);
        let mut nvme = disk(
            "/dev/nvme0n1",
            1_000_204_886_016,
            Transport::Nvme,
            "WD Blue SN570 1TB",
            false,
        );
        nvme.table = None;
        vec![sda, sdb, nvme]
    }
}

#[cfg(test)]
mod tests {
    use super::app::{update, Model, Msg};
    use super::testing::disks;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn render(model: &Model, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| super::view::view(model, f)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn home() -> Model {
        let mut m = Model::default();
        update(&mut m, Msg::Devices(Ok(disks())));
        m
    }

    #[test]
    fn home_80x25() {
        insta::assert_snapshot!(render(&home(), 80, 25));
    }

    #[test]
    fn home_160x50() {
        insta::assert_snapshot!(render(&home(), 160, 50));
    }

    #[test]
    fn help_80x25() {
        let mut m = home();
        m.help = true;
        insta::assert_snapshot!(render(&m, 80, 25));
    }

    #[test]
    fn scan_error_and_no_disks_80x25() {
        let mut m = Model::default();
        update(
            &mut m,
            Msg::Devices(Err("reading /sys/block: permission denied".into())),
        );
        insta::assert_snapshot!(render(&m, 80, 25));
    }
}
