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
    if let Err(e) = lifeboat::cli::run(args) {
        eprintln!("lifeboat: error: {e:#}");
        let cancelled = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(lifeboat::Error::Cancelled)));
        std::process::exit(if cancelled { 130 } else { 1 });
    }
}
