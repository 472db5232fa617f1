//! The rescue environment's PID 1 and the kernel's `/sbin/modprobe` helper. The line-mode
//! console PID 1 starts is a command of the CLI (`cli/console.rs`); what the two agree on
//! (exit codes, the log file) is in [`crate::rescue`].
//!
//! `main.rs` calls [`pid1()`] when the process is PID 1, and [`applet_main`] to find out
//! whether it was started under another name: `modprobe` ([`modprobe_main`]), udhcpc's
//! `default.script` or PID 1's `lifeboat-net` child ([`net`]). The kernel command-line
//! contract is in [`cmdline`].
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

pub mod cmdline;
pub mod modules;
pub mod net;
mod pid1;
pub mod sys;

use crate::rescue::LOG_FILE;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Runs as PID 1. Never returns.
pub fn pid1() -> ! {
    pid1::main()
}

/// The exit code of the helper argv\[0\] names (`modprobe`, udhcpc's `default.script`,
/// `lifeboat-net`), or `None` when the binary runs as itself.
pub fn applet_main(argv: &[String]) -> Option<i32> {
    match argv.first()?.rsplit('/').next()? {
        "modprobe" => Some(modprobe_main(argv)),
        "default.script" => Some(net::udhcpc_script_main(argv)),
        net::NETUP_ARGV0 => Some(net::netup_main(argv)),
        _ => None,
    }
}

/// `modprobe [-q] [-b] [--] NAME [params…]`, as the kernel runs it to load a module on demand
/// (`fs-vfat`, `char-major-10-229`, …). Returns the exit code. Options other than the module
/// name are accepted and ignored; module parameters are not supported.
pub fn modprobe_main(args: &[String]) -> i32 {
    let quiet = args.iter().any(|a| a == "-q" || a == "--quiet");
    let Some(name) = args.iter().skip(1).find(|a| !a.starts_with('-')) else {
        if !quiet {
            eprintln!("modprobe: no module name given");
        }
        return 1;
    };
    let index = match modules::ModuleIndex::load(&module_dir()) {
        Ok(i) => i,
        Err(e) => {
            if !quiet {
                eprintln!("modprobe: {e}");
            }
            return 1;
        }
    };
    let mut loaded = modules::loaded_modules(Path::new("/proc/modules"));
    let mut loader = |p: &Path| modules::finit_module(p);
    match modules::load_by_name(&index, name, &mut loaded, &mut loader) {
        Ok(_) => 0,
        Err(e) => {
            if !quiet {
                eprintln!("modprobe: {name}: {e}");
            }
            1
        }
    }
}

/// The running kernel's release (`uname -r`), or "" when /proc is not mounted.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_default()
}

/// `/lib/modules/$(uname -r)`.
pub(crate) fn module_dir() -> PathBuf {
    PathBuf::from("/lib/modules").join(kernel_release())
}

/// Opens terminals (and other character devices) for writing, skipping those that fail.
fn open_for_writing(paths: &[PathBuf]) -> Vec<File> {
    paths
        .iter()
        .filter_map(|p| File::options().write(true).open(p).ok())
        .collect()
}

/// The console device nodes named in `/sys/class/tty/console/active`, the preferred one (the
/// last `console=`, which the kernel lists last) first. `tty0` ("the current VT") becomes
/// `tty1`, where the UI runs.
pub fn console_names(active: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = active
        .split_whitespace()
        .rev()
        .map(|n| if n == "tty0" { "tty1" } else { n })
        .map(|n| Path::new("/dev").join(n))
        .collect();
    v.dedup();
    v
}

/// Where PID 1's messages go: the log file, the second VT, and the consoles. Cheap to clone
/// (for the threads that copy a job's output).
#[derive(Clone)]
pub(crate) struct Sinks {
    inner: Arc<Mutex<Vec<File>>>,
}

impl Sinks {
    pub(crate) fn line(&self, line: &str) {
        if let Ok(mut files) = self.inner.lock() {
            for f in files.iter_mut() {
                let _ = writeln!(f, "{line}\r");
            }
        }
    }
}

/// PID 1's log.
pub(crate) struct Log {
    file: Option<File>,
    /// Everything: the log file, tty2 and every console.
    all: Sinks,
}

impl Log {
    /// Before /dev and /run exist: stderr only (the kernel opened /dev/console for us).
    fn early() -> Self {
        Log {
            file: None,
            all: Sinks {
                inner: Arc::new(Mutex::new(Vec::new())),
            },
        }
    }

    /// Opens the log file, the consoles and tty2 (the log VT).
    fn open() -> Self {
        let consoles = pid1::consoles();
        let file = File::options()
            .create(true)
            .append(true)
            .open(LOG_FILE)
            .ok();
        let mut files: Vec<File> = file.iter().filter_map(|f| f.try_clone().ok()).collect();
        let mut ttys = consoles;
        if Path::new("/dev/tty2").exists() && !ttys.iter().any(|t| t == Path::new("/dev/tty2")) {
            ttys.push(PathBuf::from("/dev/tty2"));
        }
        files.extend(open_for_writing(&ttys));
        Log {
            file,
            all: Sinks {
                inner: Arc::new(Mutex::new(files)),
            },
        }
    }

    /// A message for every console and the log.
    fn line(&mut self, msg: &str) {
        let line = format!("lifeboat: {msg}");
        if self.file.is_none() {
            eprintln!("{line}");
        }
        self.all.line(&line);
    }

    /// A message for every console even while the UIs run (something is wrong with them).
    fn alert(&mut self, msg: &str) {
        self.line(msg);
        for mut f in open_for_writing(&pid1::consoles()) {
            let _ = writeln!(f, "lifeboat: {msg}\r");
        }
    }

    /// A message for the log file only.
    fn quiet(&mut self, msg: &str) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(f, "lifeboat: {msg}");
        }
    }

    /// The UIs own these terminals now: from here on, messages go only to the log file and
    /// the log VT (tty2), unless a UI runs there.
    fn ui_started(&mut self, ui_ttys: &[PathBuf]) {
        let mut files: Vec<File> = self
            .file
            .iter()
            .filter_map(|f| f.try_clone().ok())
            .collect();
        let log_vt = PathBuf::from("/dev/tty2");
        if !ui_ttys.contains(&log_vt) {
            files.extend(open_for_writing(&[log_vt]));
        }
        self.all = Sinks {
            inner: Arc::new(Mutex::new(files)),
        };
    }

    fn ready(&mut self, json: &str) {
        self.all.line(&format!("LIFEBOAT-READY {json}"));
    }

    fn result(&mut self, json: &str) {
        self.all.line(&format!("LIFEBOAT-RESULT {json}"));
    }

    fn sinks(&self) -> Sinks {
        self.all.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_console_is_the_ui() {
        assert_eq!(
            console_names("ttyS0 tty0\n"),
            vec![PathBuf::from("/dev/tty1"), PathBuf::from("/dev/ttyS0")]
        );
        assert_eq!(console_names("ttyS0"), vec![PathBuf::from("/dev/ttyS0")]);
        assert!(console_names("").is_empty());
    }
}
