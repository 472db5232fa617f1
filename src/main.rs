//! `lifeboat` binary: dispatch and exit codes only (0 ok, 1 failed, 2 usage, 130 cancelled,
//! and the rescue system's codes from [`lifeboat::rescue`]). The only place that ends the
//! process. As PID 1 it is the rescue environment's init; started as `modprobe` it loads
//! modules, as udhcpc's script it applies a lease.
#![allow(clippy::print_stderr)]

use clap::Parser;
use lifeboat::cli::Exit;
use lifeboat::rescue::{EXIT_MENU, EXIT_POWEROFF, EXIT_REBOOT};

fn main() {
    // a file size limit must fail a write (EFBIG, reported), not kill Lifeboat mid-image
    lifeboat::init::sys::ignore_file_size_signal();
    if std::process::id() == 1 {
        lifeboat::init::pid1(); // never returns; ignores argv (the kernel passes stray words)
    }
    let argv: Vec<String> = std::env::args().collect();
    // started as modprobe, udhcpc's script or PID 1's network child
    if let Some(code) = lifeboat::init::applet_main(&argv) {
        std::process::exit(code);
    }
    let args = lifeboat::cli::Args::parse(); // exits 2 on usage errors, 0 for --help
    if args.command.is_none() && !lifeboat::cli::menu_possible() {
        // no command and no terminal for the menu: a usage error, as clap would make it
        use clap::CommandFactory;
        let _ = lifeboat::cli::Args::command().print_help();
        std::process::exit(2);
    }
    let code = match lifeboat::cli::run(args) {
        Ok(Exit::Ok) => 0,
        Ok(Exit::Failed) => 1,
        Ok(Exit::PowerOff) => EXIT_POWEROFF,
        Ok(Exit::Reboot) => EXIT_REBOOT,
        Ok(Exit::Menu) => EXIT_MENU,
        Err(e) => {
            eprintln!("lifeboat: error: {e:#}");
            // a failure before or outside a job: PID 1 still gets a typed result
            let finished = lifeboat::jobs::Event::Finished {
                ok: false,
                summary: None,
                error: Some(lifeboat::jobs::JobError::from_message(format!("{e:#}"))),
            };
            let _ = lifeboat::rescue::write_result(&finished, false);
            let cancelled = e.chain().any(|c| {
                matches!(c.downcast_ref(), Some(lifeboat::Error::Cancelled))
                    || matches!(
                        c.downcast_ref::<std::sync::Arc<lifeboat::Error>>()
                            .map(|a| &**a),
                        Some(lifeboat::Error::Cancelled)
                    )
            });
            if cancelled {
                130
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}
