//! The command-line face, in two stages: clap parses `args.rs`' structs, and each command's
//! code turns its struct into the job's spec, plans it, asks for confirmation, runs it on the
//! job runner and prints the plan, the progress and the summary (or JSON). `run` dispatches;
//! `main` turns its [`Exit`] into the exit status.
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
use args::{InspectArgs, ListArgs, TuiArgs};
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
        None if menu_possible() => Command::Tui(TuiArgs {
            images: None,
            mount_at: std::path::PathBuf::from(crate::store::STORE_DIR),
            rescue: false,
        }),
        None => anyhow::bail!(
            "no command given, and not on a terminal for the menu; see lifeboat --help"
        ),
    };
    match command {
        Command::Console => return Ok(console::run()),
        Command::Tui(a) => return tui(a),
        Command::List(a) => list(&a)?,
        Command::Inspect(a) => inspect(&a)?,
        Command::Image(a) => jobs::image(&a)?,
        Command::Verify(a) => jobs::verify(&a)?,
        Command::Info(a) => jobs::info(&a.file, &a.search, a.json)?,
        Command::Restore(a) => jobs::restore(&a)?,
        Command::Clone(a) => jobs::clone(&a)?,
        Command::Merge(a) => jobs::merge(&a)?,
        Command::Prune(a) => jobs::prune(&a)?,
    }
    Ok(Exit::Ok)
}

/// `lifeboat list`.
fn list(a: &ListArgs) -> anyhow::Result<()> {
    let paths = SystemPaths {
        sys: a.sysfs_root.clone(),
        ..SystemPaths::default()
    };
    let disks = inspect::list(&paths).context("listing disks")?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &disks)?;
        writeln!(out)?;
    } else if disks.is_empty() {
        writeln!(out, "no disks found")?;
    } else {
        for d in &disks {
            render::disk(&mut out, d)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `lifeboat inspect`.
fn inspect(a: &InspectArgs) -> anyhow::Result<()> {
    // library errors already name the path
    let d = inspect::inspect_path(&SystemPaths::default(), &a.path, a.sector_size)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &d)?;
        writeln!(out)?;
    } else {
        render::disk(&mut out, &d)?;
    }
    out.flush()?;
    Ok(())
}

/// `lifeboat tui`: the menu, and how it ended.
fn tui(a: TuiArgs) -> anyhow::Result<Exit> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("lifeboat tui needs a terminal");
    }
    if std::os::unix::process::parent_id() == 1 {
        // started by PID 1 on a bare terminal: take it, so that a shell started from
        // the menu gets Ctrl-C and job control (the wrapper lives in init's unsafe module)
        let _ = crate::init::sys::take_controlling_tty();
    }
    let opts = crate::tui::Options {
        images: a.images,
        mount_at: a.mount_at,
        rescue: a.rescue,
    };
    let exit = crate::tui::run(&opts).context("running the terminal UI")?;
    Ok(match exit {
        crate::tui::Exit::Quit => Exit::Ok,
        crate::tui::Exit::PowerOff => Exit::PowerOff,
        crate::tui::Exit::Reboot => Exit::Reboot,
    })
}
