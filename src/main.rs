//! `lifeboat` binary: dispatch and exit codes only (0 ok, 1 failed, 2 usage, 130 cancelled).
#![allow(clippy::print_stderr)]

use clap::Parser;

fn main() {
    let args = lifeboat::cli::Args::parse(); // exits 2 on usage errors, 0 for --help
    if let Err(e) = lifeboat::cli::run(args) {
        eprintln!("lifeboat: error: {e:#}");
        let cancelled = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(lifeboat::Error::Cancelled)));
        std::process::exit(if cancelled { 130 } else { 1 });
    }
}
