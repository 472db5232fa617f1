//! The line-mode rescue console (`lifeboat console`): what PID 1 shows when the user leaves
//! the full-screen menu (or the menu cannot run). It lists the disks, mounts the image store,
//! and runs lifeboat commands, a shell, power-off and reboot. It works on any terminal,
//! including a serial line with no size. `menu` goes back to the full-screen menu.

use super::Exit;
use crate::discovery::SystemPaths;
// Face-level system calls (the controlling terminal, ignoring Ctrl-C while a child owns it);
// their safe wrappers live in init's one unsafe module.
use crate::init::sys;
use crate::rescue::{split_words, LOG_FILE};
use crate::store::{self, local, STORE_DIR};
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

const HELP: &str = "\
Commands (the same words as the lifeboat command line):
  menu                              back to the full-screen menu
  list                              the disks again (also: disks)
  store LABEL=name | /dev/sdb1      mount the image store read-write at /store
  unstore                           unmount the store (do this before unplugging it)
  image /dev/sda -o /store/pc.lbi   image a disk onto the store
  image /dev/sda --incremental /store   only what changed since the newest image of it
  restore /store/pc.lbi /dev/sda    restore an image onto a disk (asks before erasing it)
  clone /dev/sda /dev/sdb --grow-last   copy a disk onto a bigger one, last partition grown
  verify /store/pc.lbi              check every chunk of an image
  info /store/pc.lbi                what an image holds (and its chain)
  merge FILE -o NEW / prune DIR --keep FILE   consolidate a chain (see merge --help)
  inspect /dev/sda                  one disk in detail
  ls [DIR]                          files in /store (or DIR)
  log                               this boot's log (also on the second console, Alt-F2)
  shell                             a root shell (exit returns here)
  poweroff | reboot                 stop the machine (the store is unmounted first)
  help                              this text
Add --help to any lifeboat command for its options. Ctrl-C stops a running command.";

/// Runs the console until the user asks to power off, reboot or go back to the menu, which
/// PID 1 acts on; [`Exit::Ok`] at end of input, [`Exit::Failed`] when the keyboard cannot be
/// read (said on the terminal).
pub fn run() -> Exit {
    let mut out = std::io::stdout();
    if std::os::unix::process::parent_id() == 1 {
        // started by PID 1 on a bare terminal: take it, so Ctrl-C reaches us
        if let Err(e) = sys::take_controlling_tty() {
            let _ = writeln!(out, "(no controlling terminal: {e}; Ctrl-C will not work)");
        }
    }
    home(&mut out);
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        let _ = write!(out, "\nlifeboat> ");
        let _ = out.flush();
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => return Exit::Ok,
            Ok(_) => {}
            Err(e) => {
                let _ = writeln!(out, "reading the keyboard: {e}");
                return Exit::Failed;
            }
        }
        let words = match split_words(&line) {
            Ok(w) => w,
            Err(e) => {
                let _ = writeln!(out, "{e}");
                continue;
            }
        };
        let Some((cmd, rest)) = words.split_first() else {
            continue;
        };
        match cmd.as_str() {
            "help" | "?" => {
                let _ = writeln!(out, "{HELP}");
            }
            "home" | "disks" | "list" if rest.is_empty() => home(&mut out),
            "poweroff" | "halt" => return Exit::PowerOff,
            "menu" | "tui" if rest.is_empty() && std::os::unix::process::parent_id() == 1 => {
                return Exit::Menu
            }
            "reboot" => return Exit::Reboot,
            "shell" | "sh" => {
                run_child(
                    &mut out,
                    Command::new("/bin/sh").env("PS1", "lifeboat-shell# "),
                );
            }
            "log" => match std::fs::read_to_string(LOG_FILE) {
                Ok(s) => {
                    let _ = write!(out, "{s}");
                }
                Err(e) => {
                    let _ = writeln!(out, "reading {LOG_FILE}: {e}");
                }
            },
            "ls" => {
                let dir = rest.first().map_or(STORE_DIR, String::as_str);
                ls(&mut out, Path::new(dir));
            }
            "store" => mount_store(&mut out, rest),
            "unstore" => match store::unmount(Path::new(STORE_DIR)) {
                Ok(()) => {
                    let _ = writeln!(out, "{STORE_DIR} unmounted; the drive can be unplugged");
                }
                Err(e) => {
                    let _ = writeln!(out, "error: {}", crate::error::with_causes(&e));
                }
            },
            "exit" | "quit" => {
                let _ = writeln!(
                    out,
                    "type menu for the full-screen menu, or poweroff or reboot to stop the machine"
                );
            }
            _ => {
                let mut c = Command::new("/proc/self/exe");
                c.arg0("lifeboat").args(&words);
                run_child(&mut out, &mut c);
            }
        }
    }
}

/// The home screen: version, firmware, and the disks.
fn home(out: &mut impl Write) {
    let sb = match crate::rescue::secure_boot() {
        Some(true) => "UEFI, Secure Boot on",
        Some(false) => "UEFI, Secure Boot off",
        None if crate::rescue::is_uefi() => "UEFI",
        None => "BIOS",
    };
    let _ = writeln!(
        out,
        "\n=== Lifeboat {} rescue console ({sb}) ===\n",
        env!("CARGO_PKG_VERSION")
    );
    match crate::inspect::list(&SystemPaths::default()) {
        Ok(disks) if disks.is_empty() => {
            let _ = writeln!(out, "No disks found. Attach one, then type: list");
        }
        Ok(disks) => {
            let _ = writeln!(out, "Disks:");
            for d in &disks {
                let _ = super::render::disk(out, d);
            }
        }
        Err(e) => {
            let _ = writeln!(out, "listing disks: {e}");
        }
    }
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            crate::discovery::mountinfo::parse_mountinfo(&m)
                .iter()
                .any(|e| e.mount_point == Path::new(STORE_DIR))
        })
        .unwrap_or(false);
    let _ = writeln!(
        out,
        "Image store: {}\nType help for the commands, for example: store LABEL=BACKUPS",
        if mounted {
            "mounted at /store"
        } else {
            "none (type: store LABEL=name)"
        }
    );
}

fn run_child(out: &mut impl Write, cmd: &mut Command) {
    // Spawn first, then ignore Ctrl-C while the child owns it: an ignored signal would be
    // inherited by the child across exec.
    let status = cmd.spawn().and_then(|mut child| {
        sys::ignore_interrupts(true);
        let status = child.wait();
        sys::ignore_interrupts(false);
        status
    });
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            let _ = writeln!(out, "({s})");
        }
        Err(e) => {
            let _ = writeln!(out, "could not start it: {e}");
        }
    }
}

fn ls(out: &mut impl Write, dir: &Path) {
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut entries: Vec<(String, u64, bool)> = rd
                .filter_map(|e| e.ok())
                .map(|e| {
                    let md = e.metadata().ok();
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        md.as_ref().map_or(0, |m| m.len()),
                        md.as_ref().is_some_and(|m| m.is_dir()),
                    )
                })
                .collect();
            entries.sort();
            if entries.is_empty() {
                let _ = writeln!(out, "{} is empty", dir.display());
            }
            for (name, len, is_dir) in entries {
                let size = if is_dir {
                    "dir".to_string()
                } else {
                    crate::units::human_bytes(len)
                };
                let _ = writeln!(out, "{size:>12}  {name}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "{}: {e}", dir.display());
        }
    }
}

fn mount_store(out: &mut impl Write, rest: &[String]) {
    let disks = crate::inspect::list(&SystemPaths::default()).unwrap_or_default();
    let candidates = local::candidates(&disks);
    let Some(spec) = rest.first() else {
        let _ = writeln!(out, "Filesystems that can hold images:");
        for c in candidates
            .iter()
            .filter(|c| c.fs.is_some_and(|f| local::STORE_FILESYSTEMS.contains(&f)))
        {
            let _ = writeln!(
                out,
                "  {:<14} {:<6} {}",
                c.device
                    .as_deref()
                    .map_or("(no node)".into(), |p| p.display().to_string()),
                c.fs.unwrap_or(""),
                c.label
                    .as_deref()
                    .map(|l| format!("LABEL={l}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(out, "Then: store /dev/sdXN   or   store LABEL=name");
        return;
    };
    match local::find(spec, &candidates) {
        Ok(Some(t)) => match local::mount(&t, Path::new(STORE_DIR)) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "{} ({}) is mounted at {STORE_DIR}",
                    t.device.display(),
                    t.fs
                );
            }
            Err(e) => {
                let _ = writeln!(out, "error: {}", crate::error::with_causes(&e));
            }
        },
        Ok(None) => {
            let _ = writeln!(
                out,
                "nothing matches {spec}; type store (alone) to see the choices"
            );
        }
        Err(e) => {
            let _ = writeln!(out, "error: {}", crate::error::with_causes(&e));
        }
    }
}
