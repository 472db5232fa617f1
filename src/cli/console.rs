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
use crate::store::net::{self, NetStore};
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
  store smb://user@nas/share/dir    or a network share (also nfs://nas/export, sftp://user@host/dir)
  net                               network interfaces and addresses; net dhcp [IFACE] asks again
  unstore                           unmount the store (do this before unplugging it)
  image /dev/sda -o /store/pc.lbi   image a disk onto the store
  image /dev/sda --incremental /store   only what changed since the newest image of it
  restore /store/pc.lbi /dev/sda    restore an image onto a disk (asks before erasing it)
  restore https://server/pc.lbi /dev/sda   ... or straight from a web server
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
            "net" => network(&mut out, rest),
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

/// `net`: the interfaces, their links and addresses, and the leases; `net dhcp [IFACE]` runs
/// DHCP again on IFACE (or every Ethernet interface with a link).
fn network(out: &mut impl Write, rest: &[String]) {
    if rest.first().map(String::as_str) == Some("dhcp") {
        let names: Vec<String> = match rest.get(1) {
            Some(i) => vec![i.clone()],
            None => crate::net::interfaces()
                .unwrap_or_default()
                .into_iter()
                .filter(|i| !i.loopback && i.carrier != Some(false))
                .map(|i| i.name)
                .collect(),
        };
        if names.is_empty() {
            let _ = writeln!(out, "no interface with a link (is the cable plugged in?)");
        }
        for n in names {
            let _ = writeln!(out, "{n}: asking for an address (up to 20 s)…");
            let _ = out.flush();
            match crate::net::dhcp(&n, std::time::Duration::from_secs(20)) {
                Ok(c) => {
                    let _ = writeln!(out, "{n}: {}", c.address);
                }
                Err(e) => {
                    let _ = writeln!(out, "{n}: {}", crate::error::with_causes(&e));
                }
            }
        }
        return;
    }
    let ifaces = match crate::net::interfaces() {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(out, "error: {}", crate::error::with_causes(&e));
            return;
        }
    };
    let leases = crate::net::recorded();
    for i in ifaces.iter().filter(|i| !i.loopback) {
        let link = match i.carrier {
            Some(true) => "link",
            Some(false) => "no link",
            None => "link ?",
        };
        let addrs: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            out,
            "{:<8} {:<17} {:<8} {:<7} {}",
            i.name,
            i.mac.as_deref().unwrap_or("-"),
            i.driver.as_deref().unwrap_or("-"),
            link,
            if addrs.is_empty() {
                "no address".to_string()
            } else {
                addrs.join(" ")
            }
        );
        if let Some(l) = leases.iter().find(|l| l.interface == i.name) {
            let dns: Vec<String> = l.dns.iter().map(|d| d.to_string()).collect();
            let _ = writeln!(
                out,
                "         gateway {}, DNS {}",
                l.router.map_or("-".to_string(), |r| r.to_string()),
                if dns.is_empty() {
                    "-".to_string()
                } else {
                    dns.join(" ")
                }
            );
        }
    }
    if ifaces.iter().all(|i| i.loopback) {
        let _ = writeln!(
            out,
            "no network interface (no driver for this network card?)"
        );
    }
}

/// `store smb://…`, `nfs://…`, `sftp://…`: waits for the network, asks for a password the
/// boot credentials lack, shows an unknown SSH server's key and asks before trusting it, then
/// mounts the share at the store folder.
fn mount_net_store(out: &mut impl Write, store: crate::store::Result<NetStore>) {
    let fail = |out: &mut dyn Write, e: &dyn std::fmt::Display| {
        let _ = writeln!(out, "error: {e}");
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => return fail(out, &crate::error::with_causes(&e)),
    };
    if let Err(e) = crate::net::wait_online(std::time::Duration::from_secs(20)) {
        return fail(out, &format!("{e} (see the network with: net)"));
    }
    let mut creds = match net::default_credentials() {
        Ok(c) => c,
        Err(e) => return fail(out, &crate::error::with_causes(&e)),
    };
    // SMB with a user; SFTP without a key file (the rescue system has no ~/.ssh)
    let sftp_without_key =
        store.kind == net::Kind::Sftp && creds.password.is_none() && creds.identity.is_none();
    if store.wants_password(&creds) || sftp_without_key {
        match super::common::read_secret(&format!("Password for {store}: ")) {
            Ok(p) => creds.password = Some(p),
            Err(e) => return fail(out, &e),
        }
    }
    let trusted = net::host_key_trusted(&store);
    if store.kind == net::Kind::Sftp && creds.host_keys.is_empty() && !trusted {
        let keys = match net::host_key_fingerprints(&store) {
            Ok(k) => k,
            Err(e) => return fail(out, &crate::error::with_causes(&e)),
        };
        let _ = writeln!(out, "The SSH server {} presents:", store.host);
        for (_, fp) in &keys {
            let _ = writeln!(out, "  {fp}");
        }
        let _ = write!(out, "Is this the server you expect? Type yes to trust it: ");
        let _ = out.flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if answer.trim() != "yes" {
            let _ = writeln!(out, "not trusted; nothing was mounted");
            return;
        }
        for (line, _) in &keys {
            if let Err(e) = net::trust_host_key(line) {
                return fail(out, &crate::error::with_causes(&e));
            }
        }
    }
    let _ = crate::store::release(Path::new(STORE_DIR));
    match net::mount(&store, &creds, net::Trust::Refuse, Path::new(STORE_DIR)) {
        Ok(()) => {
            let _ = writeln!(out, "{store} is mounted at {STORE_DIR}");
        }
        Err(e) => fail(out, &crate::error::with_causes(&e)),
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
        let _ = writeln!(
            out,
            "Or a network share: store smb://user@nas/share/folder, store nfs://nas/export, \
             store sftp://user@host/path"
        );
        return;
    };
    if let Some(store) = crate::store::net::NetStore::parse(spec) {
        mount_net_store(out, store);
        return;
    }
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
