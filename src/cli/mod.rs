//! The command-line face: parse arguments, call the library, print tables or JSON.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod args;
mod console;
mod jobs;
mod progress;
mod render;

use crate::discovery::SystemPaths;
use crate::inspect;
use anyhow::Context;
pub use args::{Args, Command};
use std::io::{IsTerminal, Write};

/// True when stdin and stdout are a terminal, so that `lifeboat` alone can open the menu.
pub fn menu_possible() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// How a command ended, when it did not fail: what `main` turns into the exit status. Only
/// `main` exits the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done: status 0.
    Ok,
    /// Failed, and the failure was already shown (the console): status 1.
    Failed,
    /// The user asked the rescue system to power off: [`crate::rescue::EXIT_POWEROFF`].
    PowerOff,
    /// The user asked the rescue system to reboot: [`crate::rescue::EXIT_REBOOT`].
    Reboot,
    /// The line console asks for the menu again: [`crate::rescue::EXIT_MENU`].
    Menu,
}

/// Runs a parsed command. Errors carry their whole cause chain; `main` maps them to exit 1
/// (130 when cancelled).
pub fn run(args: Args) -> anyhow::Result<Exit> {
    let command = match args.command {
        Some(c) => c,
        None if menu_possible() => Command::Tui {
            images: None,
            mount_at: std::path::PathBuf::from(crate::store::STORE_DIR),
            rescue: false,
        },
        None => anyhow::bail!(
            "no command given, and not on a terminal for the menu; see lifeboat --help"
        ),
    };
    let mut out = std::io::stdout().lock();
    match command {
        Command::Console => {
            drop(out);
            return Ok(console::run());
        }
        Command::List { json, sysfs_root } => {
            let paths = SystemPaths {
                sys: sysfs_root,
                ..SystemPaths::default()
            };
            let disks = inspect::list(&paths).context("listing disks")?;
            if json {
                serde_json::to_writer_pretty(&mut out, &disks)?;
                writeln!(out)?;
            } else if disks.is_empty() {
                writeln!(out, "no disks found")?;
            } else {
                for d in &disks {
                    render::disk(&mut out, d)?;
                }
            }
        }
        Command::Inspect {
            path,
            json,
            sector_size,
        } => {
            // library errors already name the path
            let d = inspect::inspect_path(&SystemPaths::default(), &path, sector_size)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &d)?;
                writeln!(out)?;
            } else {
                render::disk(&mut out, &d)?;
            }
        }
        Command::Image {
            source,
            output,
            parent,
            incremental,
            differential,
            search,
            force_other_disk,
            partitions,
            level,
            threads,
            dry_run,
            json,
            sector_size,
            block_kib,
        } => {
            drop(out);
            return jobs::image(jobs::ImageArgs {
                source,
                output,
                parent,
                incremental,
                differential,
                search,
                force_other_disk,
                partitions,
                level,
                threads,
                dry_run,
                json,
                sector_size,
                block_size: block_kib.saturating_mul(1024),
            })
            .map(|()| Exit::Ok);
        }
        Command::Verify {
            file,
            search,
            json,
            threads,
        } => {
            drop(out);
            return jobs::verify(&file, &search, json, threads).map(|()| Exit::Ok);
        }
        Command::Info { file, search, json } => {
            drop(out);
            return jobs::info(&file, &search, json).map(|()| Exit::Ok);
        }
        Command::Restore {
            file,
            target,
            search,
            yes,
            dry_run,
            no_verify,
            json,
            threads,
            grow_last,
            new_disk_id,
        } => {
            drop(out);
            return jobs::restore(jobs::RestoreArgs {
                grow_last,
                new_disk_id,
                file: &file,
                target: &target,
                search,
                yes,
                dry_run,
                verify: !no_verify,
                json,
                threads,
            })
            .map(|()| Exit::Ok);
        }
        Command::Tui {
            images,
            mount_at,
            rescue,
        } => {
            drop(out);
            if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
                anyhow::bail!("lifeboat tui needs a terminal");
            }
            if std::os::unix::process::parent_id() == 1 {
                // started by PID 1 on a bare terminal: take it, so that a shell started from
                // the menu gets Ctrl-C and job control
                let _ = crate::init::sys::take_controlling_tty();
            }
            let opts = crate::tui::Options {
                images,
                mount_at,
                rescue,
            };
            let exit = crate::tui::run(&opts).context("running the terminal UI")?;
            return Ok(match exit {
                crate::tui::Exit::Quit => Exit::Ok,
                crate::tui::Exit::PowerOff => Exit::PowerOff,
                crate::tui::Exit::Reboot => Exit::Reboot,
            });
        }
        Command::Clone {
            source,
            target,
            grow_last,
            new_disk_id,
            yes,
            dry_run,
            no_verify,
            json,
            threads,
            sector_size,
        } => {
            drop(out);
            let spec = crate::jobs::clone::CloneSpec {
                source,
                target,
                verify: !no_verify,
                threads,
                grow_last,
                new_disk_id,
                file_sector_size: sector_size,
            };
            return jobs::clone(spec, yes, dry_run, json).map(|()| Exit::Ok);
        }
        Command::Merge {
            file,
            output,
            search,
            level,
            threads,
            json,
        } => {
            drop(out);
            let spec = crate::jobs::merge::MergeSpec {
                image: file,
                output,
                search,
                level,
                threads,
            };
            return jobs::merge(spec, json).map(|()| Exit::Ok);
        }
        Command::Prune {
            dir,
            keep,
            search,
            yes,
            dry_run,
            json,
        } => {
            drop(out);
            return jobs::prune(&dir, &keep, &search, yes, dry_run, json).map(|()| Exit::Ok);
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}
