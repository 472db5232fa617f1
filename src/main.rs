//! `lifeboat` binary: dispatch and exit codes only (0 ok, 1 failed, 2 usage, 130 cancelled).
//! As PID 1 it is the rescue environment's init; started as `modprobe` it loads modules.
#![allow(clippy::print_stderr)]

use clap::Parser;

fn main() {
    if std::process::id() == 1 {
        lifeboat::init::pid1(); // never returns; ignores argv (the kernel passes stray words)
    }
    let argv: Vec<String> = std::env::args().collect();
    if argv
        .first()
        .is_some_and(|a| a.rsplit('/').next() == Some("modprobe"))
    {
        std::process::exit(lifeboat::init::modprobe_main(&argv));
    }
    let args = lifeboat::cli::Args::parse(); // exits 2 on usage errors, 0 for --help
    if args.command.is_none() && !lifeboat::cli::menu_possible() {
        // no command and no terminal for the menu: a usage error, as clap would make it
        use clap::CommandFactory;
        let _ = lifeboat::cli::Args::command().print_help();
        std::process::exit(2);
    }
    if let Err(e) = lifeboat::cli::run(args) {
        eprintln!("lifeboat: error: {e:#}");
        let cancelled = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(lifeboat::Error::Cancelled)));
        std::process::exit(if cancelled { 130 } else { 1 });
    }
}
