//! Snapshot tests: every screen drawn at 80x25 and 160x50 with `TestBackend`, compared by
//! insta with the files in `snapshots/`. The module is `tui::tests` (see `mod.rs`), which
//! names those files.

use super::app::*;
use super::screens::browse::{fixture, Browse, BrowseStep};
use super::screens::clone::{CloneStep, CloneWiz};
use super::screens::image::{suggested_name, ImageKind, ImageStep, ImageWiz};
use super::screens::progress::{JobKind, Running};
use super::screens::restore::{RestoreStep, RestoreWiz};
use super::testing::{disks, storage_model};
use crate::jobs::{Event, Phase};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::PathBuf;
use std::time::Duration;

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

/// One snapshot test per size for each screen.
macro_rules! screens {
    ($($name:ident => $model:expr;)*) => {
        mod at_80x25 {
            use super::*;
            $( #[test] fn $name() { insta::assert_snapshot!(render(&$model, 80, 25)); } )*
        }
        mod at_160x50 {
            use super::*;
            $( #[test] fn $name() { insta::assert_snapshot!(render(&$model, 160, 50)); } )*
        }
    };
}

fn with(mut m: Model, f: impl FnOnce(&mut Model)) -> Model {
    f(&mut m);
    m
}

fn running() -> Model {
    with(storage_model(), |m| {
        let t0 = m.now.unwrap();
        m.screen = Screen::Running(Running {
            kind: JobKind::Restore,
            title: "Restoring sda-Samsung-SSD-860-20261115.lbi onto /dev/nvme0n1".into(),
            target: Some(PathBuf::from("/dev/nvme0n1")),
            phase: None,
            total: None,
            done: 0,
            started: t0,
            phase_started: t0,
            warnings: vec![],
            cancelling: false,
            rescue: None,
        });
        m.now = Some(t0 + Duration::from_secs(2));
        update(
            m,
            Msg::Job(Event::Phase {
                phase: Phase::Write,
                total_bytes: Some(61_235_789_824),
            }),
        );
        m.now = Some(t0 + Duration::from_secs(202));
        update(
            m,
            Msg::Job(Event::Progress {
                phase: Phase::Write,
                done_bytes: 25_000_000_000,
            }),
        );
    })
}

/// The result screen, reached the way the loop reaches it: a running restore that
/// ends (after 12:34) with `failure`, or with its summary.
fn done(failure: Option<Failure>) -> Model {
    with(running(), |m| {
        m.now = m.now.map(|n| n + Duration::from_secs(552));
        let r = match failure {
            None => Ok((
                vec![
                    "/dev/nvme0n1 was restored: 57.0 GiB written.".into(),
                    "Verified: all 57.0 GiB written were read back from the disk (O_DIRECT) and match the image.".into(),
                    "Partitions made visible by BLKRRPART.".into(),
                    "Partition 3 grew to 558.0 GiB (ntfs, ntfsresize: 92.2 GiB to 558.0 GiB).".into(),
                ],
                754.0,
            )),
            Some(f) => Err(f),
        };
        super::screens::done::finish(m, r);
    })
}

fn write_failure() -> Failure {
    crate::tui::outcome::failure(
        "restoring",
        &crate::Error::Write {
            path: PathBuf::from("/dev/nvme0n1"),
            offset: 40_265_318_400,
            len: 8 << 20,
            source: std::io::Error::from_raw_os_error(libc::EIO),
        },
        true,
    )
}

fn too_small() -> Failure {
    crate::tui::outcome::failure(
        "planning the restore",
        &crate::Error::TooSmall {
            path: PathBuf::from("/dev/sdd"),
            need: 499_000_000_000,
            have: 256_060_514_304,
            why: "partition 3 ends at byte 499000000000 (464.7 GiB), past the target's last usable byte 256060497408".into(),
        },
        false,
    )
}

fn restore(step: RestoreStep) -> Model {
    with(storage_model(), |m| {
        let mut w = RestoreWiz {
            step,
            ..RestoreWiz::default()
        };
        if step != RestoreStep::Image {
            w.image = Some(m.images[0].found.path.clone());
            w.over.grow_last = true;
        }
        if step == RestoreStep::Confirm {
            w.over.target = Some(PathBuf::from("/dev/nvme0n1"));
            w.plan = Some(Box::new(crate::jobs::restore::example_plan()));
            w.over.typed = "nvme".into();
        }
        m.screen = Screen::Restore(w);
    })
}

fn clone(step: CloneStep) -> Model {
    with(storage_model(), |m| {
        let mut w = CloneWiz {
            step,
            ..CloneWiz::default()
        };
        if step != CloneStep::Source {
            w.source = Some(PathBuf::from("/dev/sda"));
        }
        if step == CloneStep::Confirm {
            w.over.target = Some(PathBuf::from("/dev/nvme0n1"));
            w.plan = Some(Box::new(crate::jobs::clone::example_plan()));
            w.over.typed = "sda".into();
            w.over.mistyped = true;
        }
        m.screen = Screen::Clone(w);
    })
}

fn image(step: ImageStep) -> Model {
    with(storage_model(), |m| {
        let mut w = ImageWiz {
            step,
            level: 3,
            ..ImageWiz::default()
        };
        if step != ImageStep::Source {
            w.source = Some(PathBuf::from("/dev/sda"));
            w.name = suggested_name(&m.disks[0], m.now_unix);
            w.kind = ImageKind::Incremental;
        }
        if step == ImageStep::Confirm {
            w.plan = Some(Box::new(crate::jobs::image::example_plan()));
        }
        m.screen = Screen::Image(w);
    })
}

/// The browser at `step` on the SSD's full image, in `/home/ann` of p2 with two items
/// selected (a folder and a file).
fn browse(step: BrowseStep) -> Model {
    with(storage_model(), |m| {
        fixture::in_ann(m);
        if step == BrowseStep::Image {
            m.browse = Some(Browse {
                cursor: 2,
                ..Default::default()
            });
            return;
        }
        for k in [
            crossterm::event::KeyCode::Char(' '),
            crossterm::event::KeyCode::Down,
            crossterm::event::KeyCode::Down,
            crossterm::event::KeyCode::Char(' '),
        ] {
            update(
                m,
                Msg::Key(crossterm::event::KeyEvent::new(
                    k,
                    crossterm::event::KeyModifiers::NONE,
                )),
            );
        }
        let Some(b) = m.browse.as_mut() else { return };
        b.step = step;
        b.cursor = if step == BrowseStep::Partition { 1 } else { 0 };
        if step == BrowseStep::Confirm {
            let items = b
                .selected
                .iter()
                .filter_map(|s| crate::jobs::copy_out::CopyItem::named_after(s.path.clone()))
                .collect();
            b.plan = Some(Box::new(crate::jobs::copy_out::CopyPlan {
                items,
                dest: PathBuf::from("/store"),
                files: 14,
                dirs: 3,
                symlinks: 1,
                skipped: 0,
                bytes: 48_023_552,
                need_bytes: 48_300_032,
                free_bytes: 1_900_000_000_000,
            }));
        }
    })
}

fn copying() -> Model {
    with(browse(BrowseStep::Confirm), |m| {
        update(
            m,
            Msg::Key(crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Enter,
                crossterm::event::KeyModifiers::NONE,
            )),
        );
        let t0 = m.now.unwrap();
        update(
            m,
            Msg::Job(Event::Phase {
                phase: Phase::Write,
                total_bytes: Some(48_023_552),
            }),
        );
        m.now = Some(t0 + Duration::from_secs(4));
        update(
            m,
            Msg::Job(Event::Progress {
                phase: Phase::Write,
                done_bytes: 20_000_000,
            }),
        );
    })
}

/// The network screen in the rescue system with made-up interfaces (eth0 with a lease, eth1
/// without a cable, usb0 down, lo hidden), the highlight on row `cursor`.
fn network(cursor: usize) -> Model {
    use super::screens::network::fixture;
    with(storage_model(), |m| {
        m.rescue = true;
        m.screen = Screen::Network;
        m.net.refreshing = true;
        update(
            m,
            Msg::Network(Ok((fixture::interfaces(), vec![fixture::lease()]))),
        );
        m.net.cursor = cursor;
    })
}

/// The network store form on Storage, filled in by keys: SMB to nas.local with a password.
fn net_store() -> Model {
    super::screens::net_store::fixture::smb(storage_model())
}

/// The SFTP form asking to trust the server's host keys.
fn net_store_host_key() -> Model {
    use super::screens::net_store::fixture::{filled, press, SECRET};
    let mut m = filled(
        storage_model(),
        2,
        &["backup.example.org", "2222", "/srv/images", "ann", SECRET],
    );
    let Some(Cmd::HostKeys(store)) = press(&mut m, crossterm::event::KeyCode::Enter) else {
        panic!("an SFTP form asks for the host keys first");
    };
    let keys = vec![
        (
            "[backup.example.org]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO".to_string(),
            "SHA256:2Qh0HyP0T6zYzP8cWk5eXyBk7Pq5kZ4p1yP9l3R6e2A".to_string(),
        ),
        (
            "[backup.example.org]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNh".to_string(),
            "SHA256:Xb0t1m6sQy1F2m0k2hNn3kq7a4d4zqk2yqkz1Ue5oP8".to_string(),
        ),
    ];
    update(&mut m, Msg::HostKeys(Ok((store, keys))));
    m
}

/// The SMB form after the server refused the password.
fn net_store_mount_failed() -> Model {
    with(net_store(), |m| {
        update(
            m,
            Msg::Key(crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Enter,
                crossterm::event::KeyModifiers::NONE,
            )),
        );
        update(
            m,
            Msg::StorageReady(Err(crate::tui::outcome::failure_any(
                "mounting the network store",
                &crate::store::Error::NetDenied {
                    spec: "smb://ann@nas.local/backups/pcs".into(),
                    reason: "the server refused the user name or password".into(),
                }
                .into(),
                "",
            ))),
        );
    })
}

/// Every state of the form draws the password as stars only: the typed text is in no cell
/// row of any frame, at either size.
#[test]
fn the_password_is_never_drawn() {
    use super::screens::net_store::fixture::SECRET;
    let mut help = net_store();
    help.help = true;
    for (name, m) in [
        ("filled", net_store()),
        (
            "s3",
            super::screens::net_store::fixture::s3(storage_model()),
        ),
        ("host key", net_store_host_key()),
        ("mount failed", net_store_mount_failed()),
        ("help", help),
    ] {
        assert_eq!(
            m.net_store.as_ref().map(|f| f.password.as_str()),
            Some(SECRET),
            "{name}: the fixture typed it"
        );
        for (w, h) in [(80, 25), (160, 50)] {
            let text = render(&m, w, h);
            assert!(!text.contains(SECRET), "{name} at {w}x{h}:\n{text}");
            assert!(
                !text.contains("Tr0ub"),
                "{name} at {w}x{h}: part of it drawn"
            );
        }
    }
    let text = render(&net_store(), 80, 25);
    assert!(
        text.contains(&"*".repeat(SECRET.len())),
        "the password shows as one star per character:\n{text}"
    );
}

screens! {
    network_screen => network(0);
    network_no_link => network(1);
    network_down => network(2);
    network_dhcp_running => with(network(1), |m| {
        update(m, Msg::Key(crossterm::event::KeyEvent::new(
            crossterm::event::KeyCode::Char('d'),
            crossterm::event::KeyModifiers::NONE,
        )));
    });
    network_dhcp_failed => with(network(1), |m| {
        update(m, Msg::Dhcp(
            "eth1".into(),
            Err("eth1: no DHCP lease after 15 s (udhcpc: no lease, failing)".into()),
        ));
    });
    network_dhcp_done => with(network(0), |m| {
        update(m, Msg::Dhcp("eth0".into(), Ok(crate::tui::screens::network::fixture::lease())));
    });
    network_on_a_host => with(network(0), |m| m.rescue = false);
    network_help => with(network(0), |m| m.help = true);
    network_none => with(storage_model(), |m| {
        m.screen = Screen::Network;
        update(m, Msg::Network(Ok((vec![], vec![]))));
    });
    storage_net_store => net_store();
    storage_net_store_nfs => crate::tui::screens::net_store::fixture::filled(
        storage_model(), 1, &["10.0.0.5", "", "/srv/images"],
    );
    storage_net_store_invalid => with(
        crate::tui::screens::net_store::fixture::filled(storage_model(), 0, &["nas.local", "44x"]),
        |m| {
            update(m, Msg::Key(crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Enter,
                crossterm::event::KeyModifiers::NONE,
            )));
        },
    );
    storage_net_store_s3 => crate::tui::screens::net_store::fixture::s3(storage_model());
    storage_net_store_host_key => net_store_host_key();
    storage_net_store_mount_failed => net_store_mount_failed();
    storage_net_store_help => with(net_store(), |m| m.help = true);
    browse_image => browse(BrowseStep::Image);
    browse_partition => browse(BrowseStep::Partition);
    browse_folder => browse(BrowseStep::Folder);
    browse_empty_folder => with(browse(BrowseStep::Folder), |m| {
        if let Some(b) = m.browse.as_mut() { b.entries.clear(); b.selected.clear(); }
    });
    browse_dest => browse(BrowseStep::Dest);
    browse_confirm => browse(BrowseStep::Confirm);
    browse_help => with(browse(BrowseStep::Folder), |m| m.help = true);
    browse_mount_failed => with(browse(BrowseStep::Image), |m| {
        m.failure = Some(crate::tui::outcome::failure(
            "opening the image",
            &crate::Error::Chain {
                image: "/store/sda-Samsung-SSD-860-20261122-incr.lbi".into(),
                reason: "its parent sda-Samsung-SSD-860-20261115.lbi is not in /store".into(),
                source: None,
            },
            false,
        ));
    });
    browse_copying => copying();
    browse_copy_done => with(copying(), |m| {
        update(m, Msg::Job(Event::Finished {
            ok: true,
            summary: Some(crate::jobs::Summary::CopyOut(crate::jobs::copy_out::CopySummary {
                dest: PathBuf::from("/store"),
                copied: vec![PathBuf::from("/store/Documents"), PathBuf::from("/store/notes.txt")],
                files: 14, dirs: 3, symlinks: 1, skipped: 0, bytes: 48_023_552, seconds: 9.5,
            })),
            error: None,
        }));
    });
    browse_copy_failed => with(copying(), |m| {
        let e = crate::Error::Read {
            path: PathBuf::from("/run/lifeboat/lifeboat-browse-42-0/p2/home/ann/Documents/thesis-v2.odt"),
            offset: 1 << 20, len: 1 << 20,
            source: std::io::Error::from_raw_os_error(libc::EIO),
        };
        update(m, Msg::Job(Event::Finished {
            ok: false, summary: None,
            error: Some(crate::jobs::JobError::new(std::sync::Arc::new(e))),
        }));
    });
    home_screen => home();
    help => with(home(), |m| m.help = true);
    scan_error_and_no_disks => with(Model::default(), |m| {
        update(m, Msg::Devices(Err("reading /sys/block: permission denied".into())));
    });
    details => with(home(), |m| m.screen = Screen::Details);
    storage_choose => with(home(), |m| {
        m.screen = Screen::Storage { cursor: 0, then: Some(Action::Restore) };
        m.disks = storage_model().disks;
    });
    storage_mounting => with(home(), |m| {
        m.disks = storage_model().disks;
        m.screen = Screen::Storage { cursor: 0, then: None };
        m.busy = Some("Mounting /dev/sdc1...".into());
    });
    storage_mount_failed => with(home(), |m| {
        m.disks = storage_model().disks;
        m.screen = Screen::Storage { cursor: 0, then: None };
        m.failure = Some(crate::tui::outcome::failure_any(
            "mounting the storage",
            &anyhow::anyhow!("EIO").context("mounting /dev/sdc1 (ntfs) at /store"),
            "Choose another filesystem, or check this one from the shell (fsck).",
        ));
    });
    image_source => image(ImageStep::Source);
    image_options => image(ImageStep::Options);
    image_options_encrypted => with(image(ImageStep::Options), |m| {
        if let Screen::Image(w) = &mut m.screen {
            w.kind = ImageKind::Full;
            w.encrypt = true;
            w.cursor = 7;
            w.pass[0].0.push_str("secret");
            w.pass[1].0.push_str("secreX");
            w.pass_problem = Some("the two passphrases differ");
        }
    });
    image_confirm => image(ImageStep::Confirm);
    restore_image => restore(RestoreStep::Image);
    restore_no_images => with(restore(RestoreStep::Image), |m| m.images.clear());
    restore_target => restore(RestoreStep::Target);
    restore_does_not_fit => with(restore(RestoreStep::Target), |m| {
        update(m, Msg::Planned(Err(too_small())));
    });
    restore_confirm => restore(RestoreStep::Confirm);
    restore_confirm_fit => with(restore(RestoreStep::Confirm), |m| {
        if let Screen::Restore(w) = &mut m.screen {
            w.over.fit = true;
            if let Some(p) = w.plan.as_mut() {
                p.target.layout = None;
                p.target.size = 256_060_514_304;
                p.target.size_change = crate::jobs::SizeChange::Smaller;
                p.target.fit = Some(crate::jobs::fit::FitPlan::example());
            }
        }
    });
    restore_fit_does_not_fit => with(restore(RestoreStep::Target), |m| {
        if let Screen::Restore(w) = &mut m.screen { w.over.fit = true; }
        update(m, Msg::Planned(Err(too_small())));
    });
    restore_plan_refused => with(restore(RestoreStep::Target), |m| {
        update(m, Msg::Planned(Err(crate::tui::outcome::failure(
            "planning the restore",
            &crate::Error::Busy { path: PathBuf::from("/dev/nvme0n1"), reason: "partition 2 is mounted at /mnt".into() },
            false,
        ))));
    });
    clone_source => clone(CloneStep::Source);
    clone_target => clone(CloneStep::Target);
    clone_confirm_mistyped => clone(CloneStep::Confirm);
    verify_list => with(storage_model(), |m| m.screen = Screen::Verify { cursor: 1 });
    verify_list_locked => with(storage_model(), |m| {
        m.screen = Screen::Verify { cursor: 1 };
        m.locked_images = 2;
    });
    unlock_dialog => with(storage_model(), |m| {
        m.screen = Screen::Verify { cursor: 1 };
        m.locked_images = 1;
        m.unlock = Some(crate::image::crypt::Secret(zeroize::Zeroizing::new("hunter2".into())));
    });
    progress => running();
    progress_cancel_asked => with(running(), |m| m.ask = Some(Ask::Cancel));
    progress_cancelling => with(running(), |m| {
        if let Screen::Running(r) = &mut m.screen { r.cancelling = true; }
        update(m, Msg::Job(Event::Warning { message: "partition 4: unknown filesystem, copied whole".into() }));
    });
    done_ok => done(None);
    done_failed => done(Some(write_failure()));
    done_cancelled => done(Some(crate::tui::outcome::failure("restoring", &crate::Error::Cancelled, true)));
    power_off_asked => with(home(), |m| { m.rescue = true; m.ask = Some(Ask::PowerOff); });
}
