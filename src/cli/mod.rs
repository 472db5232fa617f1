//! The command-line face, in two stages: clap parses `args.rs`' structs, and each command's
//! code turns its struct into the job's spec, plans it, asks for confirmation, runs it on the
//! job runner and prints the plan, the progress and the summary (or JSON). `run` dispatches;
//! `main` turns its [`Exit`] into the exit status.
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod args;
mod boottest;
mod clone;
mod common;
mod completions;
mod console;
mod disks;
mod export;
mod get;
mod image;
mod info;
mod keys;
mod merge;
mod mount;
mod netpath;
mod progress;
mod prune;
mod render;
mod restore;
mod serve;
mod verify;

use anyhow::Context;
use args::TuiArgs;
pub use args::{Args, Command};
use std::io::IsTerminal;

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
    if let Some(ca) = &args.ca {
        anyhow::ensure!(ca.is_file(), "--ca {}: no such file", ca.display());
        crate::store::http::set_ca_file(ca);
    }
    if let Some(k) = &args.key_file {
        common::set_key_file(k)?;
    }
    if !matches!(args.command, Some(Command::Tui(_)) | None) {
        common::set_key_prompt();
    }
    let mut command = match args.command {
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
    // smb://, nfs:// and sftp:// paths: mounted until the command ends
    let mounts = netpath::resolve(&mut command, args.credentials.as_deref())?;
    run_command(command).map_err(|e| mounts.explain(e))
}

/// Runs one parsed command.
fn run_command(command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Console => return Ok(console::run()),
        Command::Tui(a) => return tui(a),
        Command::List(a) => disks::list(&a)?,
        Command::Inspect(a) => disks::inspect(&a)?,
        Command::Image(a) => image::image(&a)?,
        Command::Verify(a) => verify::verify(&a)?,
        Command::Info(a) => info::info(&a.file, &a.search, a.json, a.damaged)?,
        Command::Restore(a) => return restore::restore(&a),
        Command::Clone(a) => return clone::clone(&a),
        Command::Merge(a) => merge::merge(&a)?,
        Command::Prune(a) => prune::prune(&a)?,
        Command::Gc(a) => prune::gc(&a)?,
        Command::Mount(a) => return mount::mount(&a),
        Command::Umount(a) => mount::umount(&a)?,
        Command::Serve(a) => serve::serve(&a)?,
        Command::Export(a) => export::export(&a)?,
        Command::Get(a) => get::get(&a)?,
        Command::Ls(a) => get::ls(&a)?,
        Command::BootTest(a) => return boottest::boot_test(&a),
        Command::Key(k) => keys::key(&k)?,
        Command::Completions { shell } => {
            let mut out = std::io::stdout().lock();
            completions::write(shell, &mut out).context("writing the completion script")?;
        }
    }
    Ok(Exit::Ok)
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
