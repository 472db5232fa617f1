//! PID 1: bring the machine up, run the unattended commands or the UI, and stop it cleanly.

use super::cmdline::{self, BootOptions, Then};
use super::modules::{self, ModuleIndex};
use super::sys::{self, Exit, Power};
use super::{console_names, Log};
use crate::rescue::{self, EXIT_MENU, EXIT_POWEROFF, EXIT_REBOOT};
use crate::store::{self, local, STORE_DIR};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The mounts PID 1 makes, in order. "Already mounted" counts as done.
const MOUNTS: [(&str, &str, &str, libc::c_ulong, &str); 6] = [
    (
        "proc",
        "/proc",
        "proc",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
    (
        "sysfs",
        "/sys",
        "sysfs",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    ),
    ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
    (
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "gid=5,mode=620,ptmxmode=666",
    ),
    (
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    ),
    (
        "tmpfs",
        "/tmp",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    ),
];

/// Filesystem and helper modules loaded whatever the hardware (the store and the boot medium
/// need them before anything asks). Missing ones (built in, or not carried) are fine.
const ALWAYS_MODULES: [&str; 13] = [
    "ext4",
    "vfat",
    "exfat",
    "fuse",
    "isofs",
    "nls_cp437",
    "nls_iso8859_1",
    "nls_utf8",
    "efivarfs",
    "loop",
    "sd_mod",
    "sr_mod",
    "usb_storage",
];

/// PID 1's main. Never returns and never panics: every error is logged and the machine stays
/// usable (the UI restarts; the last resort is a shell, then power-off).
pub fn main() -> ! {
    let mut log = Log::early();
    for (source, target, fstype, flags, data) in MOUNTS {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = sys::mount(source, Path::new(target), fstype, flags, data) {
            if e.raw_os_error() != Some(libc::EBUSY) {
                log.line(&format!("mounting {target}: {e}"));
            }
        }
    }
    let _ = std::os::unix::fs::symlink("/proc/self/fd", "/dev/fd");
    sys::install_pid1_signals();
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    std::env::set_var("HOME", "/root");
    log = Log::open();

    let opts = cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    for p in &opts.problems {
        log.line(&format!("kernel command line: {p}"));
    }
    log.line(&format!("Lifeboat {} starting", env!("CARGO_PKG_VERSION")));

    let index = load_modules(&mut log, &opts);
    if crate::rescue::is_uefi() {
        let _ = sys::mount(
            "efivarfs",
            Path::new("/sys/firmware/efi/efivars"),
            "efivarfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY,
            "",
        );
    }
    settle(&mut log, index.as_ref(), opts.debug);
    mount_boot_medium(&mut log);
    if let Some(c) = &opts.credentials {
        install_credentials(&mut log, c);
    }
    // the NIC drivers are loaded: DHCP (or the static address) goes on in the background
    super::net::start(&mut log, &opts.net, opts.wait_secs);

    let store_result = opts
        .store
        .as_deref()
        .map(|spec| mount_store(&mut log, spec, opts.wait_secs));
    log.ready(&ready_json(&store_result, &opts.net));

    let mut then = opts.then;
    if !opts.run.is_empty() {
        let result = match &store_result {
            Some(Err(e)) => {
                serde_json::json!({"ok": false, "jobs": [], "error": format!("store: {e}")})
            }
            _ => run_jobs(&mut log, &opts),
        };
        log.result(&result.to_string());
    } else if matches!(then, Then::Poweroff | Then::Reboot) {
        // nothing ran, so there is nothing to power off after: land in the UI
        then = Then::Tui;
    }
    supervise(&mut log, then)
}

fn load_modules(log: &mut Log, opts: &BootOptions) -> Option<ModuleIndex> {
    let dir = super::module_dir();
    if !dir.join("modules.dep").exists() {
        return None; // everything built in (the mini kernel)
    }
    let index = match ModuleIndex::load(&dir) {
        Ok(i) => i,
        Err(e) => {
            log.line(&format!("reading the module index {}: {e}", dir.display()));
            return None;
        }
    };
    let mut loaded = modules::loaded_modules(Path::new("/proc/modules"));
    let mut loader = |p: &Path| load_module_file(p, opts.debug);
    for name in ALWAYS_MODULES {
        let _ = modules::load_by_name(&index, name, &mut loaded, &mut loader);
    }
    coldplug_pass(log, &index, &mut loaded, opts.debug);
    Some(index)
}

/// finit_module, announced on the console with `lifeboat.debug`.
fn load_module_file(path: &Path, debug: bool) -> std::io::Result<()> {
    if debug {
        eprintln!("lifeboat: loading {}", path.display());
    }
    modules::finit_module(path)
}

fn coldplug_pass(
    log: &mut Log,
    index: &ModuleIndex,
    loaded: &mut HashSet<String>,
    debug: bool,
) -> usize {
    let mut loader = |p: &Path| load_module_file(p, debug);
    let report = modules::coldplug(index, Path::new("/sys"), loaded, &mut loader);
    if !report.loaded.is_empty() {
        log.line(&format!("loaded modules: {}", report.loaded.join(" ")));
    }
    for (m, why) in &report.failed {
        log.quiet(&format!("module {m}: {}", crate::error::with_causes(why)));
    }
    report.loaded.len()
}

/// Waits until the set of block devices has stopped changing for 1.5 s (USB drives appear a
/// second or more after their controller), loading modules for new devices meanwhile. Gives up
/// after 15 s.
fn settle(log: &mut Log, index: Option<&ModuleIndex>, debug: bool) {
    let started = Instant::now();
    let mut loaded = modules::loaded_modules(Path::new("/proc/modules"));
    let mut last = block_devices();
    let mut stable_since = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(250));
        let new_modules = index.map_or(0, |i| coldplug_pass(log, i, &mut loaded, debug));
        let now = block_devices();
        if now != last || new_modules > 0 {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_millis(1500) && usb_storage_idle() {
            break;
        }
    }
    log.line(&format!(
        "disks: {} ({:.1} s to settle)",
        if last.is_empty() {
            "none".to_string()
        } else {
            last.join(" ")
        },
        started.elapsed().as_secs_f64()
    ));
}

/// Finds the medium this system booted from (the ISO on a CD or USB stick) and mounts it
/// read-only at /run/lifeboat/boot, which marks it as the boot disk everywhere (and so busy
/// for any write job). It is the ISO9660 filesystem whose `/.disk/info` equals the build ID
/// that build.sh wrote into both the ISO and this initramfs.
fn mount_boot_medium(log: &mut Log) {
    let Ok(id) = std::fs::read_to_string("/etc/lifeboat-build") else {
        return; // not built by build.sh (a test initramfs)
    };
    let at = Path::new(crate::discovery::LIFEBOAT_BOOT_MOUNT);
    let _ = std::fs::create_dir_all(at);
    let mut names = block_devices();
    names.retain(|n| !n.starts_with("zram"));
    for name in names {
        let dev = format!("/dev/{name}");
        let mut magic = [0u8; 5];
        let is_iso = std::fs::File::open(&dev)
            .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut magic, 32769))
            .is_ok_and(|()| &magic == b"CD001");
        if !is_iso {
            continue;
        }
        if sys::mount(
            &dev,
            at,
            "iso9660",
            libc::MS_RDONLY | libc::MS_NODEV | libc::MS_NOSUID,
            "",
        )
        .is_err()
        {
            continue;
        }
        let info = std::fs::read_to_string(at.join(".disk/info")).unwrap_or_default();
        if info.trim() == id.trim() {
            log.line(&format!("boot medium: {dev}"));
            return;
        }
        let _ = sys::umount(at, 0);
    }
    log.line(
        "boot medium: not found (booted without the ISO, e.g. from a network or QEMU -kernel)",
    );
}

fn block_devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("loop") && !n.starts_with("ram"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// usb-storage scans each new device in a kernel thread ("usb-storage" in /proc/*/comm is
/// not visible for kthreads by name reliably), so look for USB mass-storage interfaces whose
/// SCSI host has no disk yet.
fn usb_storage_idle() -> bool {
    let Ok(rd) = std::fs::read_dir("/sys/bus/usb/drivers/usb-storage") else {
        return true;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.contains(':') {
            continue; // bind/unbind/module entries, not interfaces
        }
        let has_disk = walk_has_block(&e.path(), 0);
        if !has_disk {
            return false;
        }
    }
    true
}

fn walk_has_block(dir: &Path, depth: u32) -> bool {
    if depth > 6 {
        return false;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let n = e.file_name();
        if n == "block" {
            return true;
        }
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false); // not following links
        if is_dir && walk_has_block(&e.path(), depth + 1) {
            return true;
        }
    }
    false
}

/// Copies `lifeboat.credentials=PATH` (on the boot medium, or absolute) to
/// [`crate::store::net::CREDENTIALS`], readable by root alone. The log names the file, never
/// what is in it.
fn install_credentials(log: &mut Log, path: &str) {
    let on_medium = Path::new("/run/lifeboat/boot").join(path.trim_start_matches('/'));
    let from = [on_medium.as_path(), Path::new(path)]
        .into_iter()
        .find(|p| p.is_file());
    let Some(from) = from else {
        log.line(&format!(
            "credentials: {path} is neither on the boot medium nor in the rescue system"
        ));
        return;
    };
    let to = Path::new(crate::store::net::CREDENTIALS);
    let copied = std::fs::read(from).and_then(|bytes| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::create_dir_all(to.parent().unwrap_or(Path::new("/run")));
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(to)?
            .write_all(&bytes)
    });
    match copied.map_err(|e| e.to_string()).and_then(|()| {
        crate::store::net::Credentials::read(to)
            .map(|_| ())
            .map_err(|e| crate::error::with_causes(&e))
    }) {
        Ok(()) => log.line(&format!(
            "credentials: {} for network stores",
            from.display()
        )),
        Err(e) => log.line(&format!("credentials: {e}")),
    }
}

/// Mounts a network store (`smb://`, `nfs://`, `sftp://`) at `/store`, with the boot
/// credentials. Unattended: an unknown SSH host key is refused (give `host_key=`).
fn mount_net_store(
    log: &mut Log,
    store: crate::store::Result<crate::store::net::NetStore>,
) -> Result<serde_json::Value, String> {
    use crate::store::net;
    let fail = |log: &mut Log, e: String| {
        log.line(&format!("store: {e}"));
        Err(e)
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => return fail(log, crate::error::with_causes(&e)),
    };
    let creds = match net::default_credentials() {
        Ok(c) => c,
        Err(e) => return fail(log, crate::error::with_causes(&e)),
    };
    if store.wants_password(&creds) {
        return fail(
            log,
            format!("{store} needs a password: give lifeboat.credentials= a file with password="),
        );
    }
    match net::mount(&store, &creds, net::Trust::Refuse, Path::new(STORE_DIR)) {
        Ok(()) => {
            log.line(&format!("store: {store} mounted at {STORE_DIR}"));
            Ok(serde_json::json!({
                "url": store.to_string(), "kind": store.kind, "host": store.host,
                "mountpoint": STORE_DIR,
            }))
        }
        Err(e) => fail(log, crate::error::with_causes(&e)),
    }
}

fn mount_store(log: &mut Log, spec: &str, wait_secs: u64) -> Result<serde_json::Value, String> {
    // a network store needs an address and a route first
    super::net::wait_for_network(log, spec, wait_secs)?;
    if let Some(store) = crate::store::net::NetStore::parse(spec) {
        return mount_net_store(log, store);
    }
    if crate::store::http::is_url(Path::new(spec)) {
        let e = format!(
            "lifeboat.store={spec}: a web server is not a store (images cannot be written \
             there); give the image's URL to restore or verify in lifeboat.run= instead"
        );
        log.line(&format!("store: {e}"));
        return Err(e);
    }
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    let target = loop {
        let disks =
            crate::inspect::list(&crate::discovery::SystemPaths::default()).unwrap_or_default();
        match local::find(spec, &local::candidates(&disks)) {
            Ok(Some(t)) => break t,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(500)),
            Ok(None) => {
                let e = format!("no filesystem matches lifeboat.store={spec} after {wait_secs} s");
                log.line(&e);
                return Err(e);
            }
            Err(e) => {
                let e = crate::error::with_causes(&e);
                log.line(&e);
                return Err(e);
            }
        }
    };
    match local::mount(&target, Path::new(STORE_DIR)) {
        Ok(()) => {
            log.line(&format!(
                "store: {} ({}{}) mounted at {STORE_DIR}",
                target.device.display(),
                target.fs,
                target
                    .label
                    .as_deref()
                    .map(|l| format!(", {l}"))
                    .unwrap_or_default()
            ));
            Ok(serde_json::json!({
                "device": target.device, "disk": target.disk, "fs": target.fs,
                "label": target.label, "mountpoint": STORE_DIR,
            }))
        }
        Err(e) => {
            let e = crate::error::with_causes(&e);
            log.line(&format!("store: {e}"));
            Err(e)
        }
    }
}

fn ready_json(store: &Option<Result<serde_json::Value, String>>, net: &crate::net::Mode) -> String {
    let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    let boot_seconds: f64 = uptime
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let firmware = if Path::new("/sys/firmware/efi").exists() {
        "uefi"
    } else {
        "bios"
    };
    let disks: Vec<serde_json::Value> =
        crate::inspect::list(&crate::discovery::SystemPaths::default())
            .unwrap_or_default()
            .iter()
            .map(|d| {
                serde_json::json!({
                    "path": d.path, "size_bytes": d.size_bytes, "transport": d.transport,
                    "model": d.model, "is_boot": d.is_boot, "partitions": d.partitions.len(),
                })
            })
            .collect();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "boot_seconds": boot_seconds,
        "firmware": firmware,
        "secure_boot": crate::rescue::secure_boot(),
        "kernel": super::kernel_release(),
        "disks": disks,
        "net": net_json(net),
        "store": match store {
            None => serde_json::Value::Null,
            Some(Ok(v)) => v.clone(),
            Some(Err(e)) => serde_json::json!({"error": e}),
        },
    })
    .to_string()
}

/// The READY line's `net`: the mode and every interface but `lo` as it is now (DHCP runs in
/// the background, so addresses may come later).
fn net_json(mode: &crate::net::Mode) -> serde_json::Value {
    let mode = match mode {
        crate::net::Mode::Dhcp => "dhcp",
        crate::net::Mode::Off => "off",
        crate::net::Mode::Static(_) => "static",
    };
    let interfaces: Vec<serde_json::Value> = crate::net::interfaces()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.loopback)
        .map(|i| {
            serde_json::json!({
                "name": i.name, "mac": i.mac, "driver": i.driver, "carrier": i.carrier,
                "addresses": i.addresses,
            })
        })
        .collect();
    serde_json::json!({"mode": mode, "interfaces": interfaces})
}

/// Runs the unattended commands in order, each as a child process whose output goes to every
/// console and the log. Stops at the first failure.
fn run_jobs(log: &mut Log, opts: &BootOptions) -> serde_json::Value {
    // a command that names a URL (restore https://…, image -o smb://…) needs the network
    // first, as a URL store does
    if let Some(url) = opts
        .run
        .iter()
        .flatten()
        .find(|w| crate::net::is_network_spec(w))
    {
        let _ = super::net::wait_for_network(log, url, opts.wait_secs);
    }
    let mut jobs = Vec::new();
    let mut ok = true;
    for args in &opts.run {
        let command = args.join(" ");
        log.line(&format!("running: lifeboat {command}"));
        let started = Instant::now();
        let (exit, error, summary) = run_one(log, args);
        let seconds = started.elapsed().as_secs_f64();
        let code = match exit {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        };
        log.line(&format!(
            "finished: lifeboat {command}: exit {code} after {seconds:.1} s"
        ));
        jobs.push(serde_json::json!({
            "command": command, "exit_code": code, "seconds": (seconds * 10.0).round() / 10.0,
            "error": error, "summary": summary,
        }));
        if code != 0 {
            ok = false;
            break;
        }
    }
    sys::sync();
    serde_json::json!({"ok": ok, "jobs": jobs})
}

/// What one command's run gave: how it ended, its error, its job's typed summary.
type Ran = (Exit, Option<String>, Option<crate::jobs::Summary>);

/// Runs one command; its exit and, from the typed result it writes to the file PID 1 names
/// in [`rescue::RESULT_FILE_ENV`], its error or its job's summary.
fn run_one(log: &mut Log, args: &[String]) -> Ran {
    let result = std::path::PathBuf::from(format!(
        "/run/lifeboat-result-{}.json",
        RESULTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    let _ = std::fs::remove_file(&result);
    let child = Command::new("/proc/self/exe")
        .arg0("lifeboat")
        .args(args)
        .env(rescue::RESULT_FILE_ENV, &result)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return (
                Exit::Code(127),
                Some(format!("starting lifeboat: {e}")),
                None,
            )
        }
    };
    let pid = child.id();
    let sinks = log.sinks();
    let out = child.stdout.take().map(|o| {
        let sinks = sinks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(o).lines().map_while(Result::ok) {
                sinks.line(&line);
            }
        })
    });
    let err = child.stderr.take().map(|e| {
        std::thread::spawn(move || {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                sinks.line(&line);
            }
        })
    });
    let exit = wait_for(pid, log);
    if let Some(t) = out {
        let _ = t.join();
    }
    if let Some(t) = err {
        let _ = t.join();
    }
    let (error, summary) = match rescue::read_result(&result) {
        Some(crate::jobs::Event::Finished { error, summary, .. }) => {
            (error.map(|e| e.message().to_string()), summary)
        }
        // no result: killed, or a command that is not a job and did not fail
        _ => match exit {
            Exit::Code(0) => (None, None),
            Exit::Code(c) => (Some(format!("exit code {c}, and no result written")), None),
            Exit::Signal(s) => (Some(format!("killed by signal {s}")), None),
        },
    };
    let _ = std::fs::remove_file(&result);
    (exit, error, summary)
}

/// Numbers the result files of unattended commands.
static RESULTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Waits for one child, reaping every other process that ends meanwhile (orphans are
/// re-parented to PID 1). Signals to PID 1 during the wait are logged and then acted on by
/// the supervisor.
fn wait_for(pid: u32, log: &mut Log) -> Exit {
    loop {
        match sys::wait_any(true) {
            Ok(Some((p, exit))) if p == pid => return exit,
            Ok(_) => {}
            Err(e) => {
                log.line(&format!("waiting for process {pid}: {e}"));
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// What runs on one console.
struct Slot {
    tty: PathBuf,
    pid: Option<u32>,
    ui: Ui,
}

/// What runs on a console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ui {
    /// The full-screen menu (`lifeboat tui --rescue`), the default.
    Menu,
    /// The line-mode console: after the user leaves the menu, or when the menu fails.
    Console,
    /// A root shell, once (`lifeboat.then=shell`), then the menu.
    Shell,
}

/// The next program on a console after `ui` ended with `exit` (power off and reboot are
/// handled before).
fn next_ui(ui: Ui, exit: Exit) -> Ui {
    match (ui, exit) {
        (Ui::Shell, _) => Ui::Menu,
        (Ui::Console, Exit::Code(EXIT_MENU)) => Ui::Menu,
        (Ui::Console, _) => Ui::Console,
        // q in the menu leaves for the line console; a menu that failed (a terminal it cannot
        // drive) falls back to it too, so a console is never lost
        (Ui::Menu, _) => Ui::Console,
    }
}

/// Runs the UI on every console (the screen and the serial line, so whoever is looking finds
/// it) for as long as the machine is up, restarting it when it stops. `then` = shell starts a
/// shell on the main console first.
fn supervise(log: &mut Log, then: Then) -> ! {
    match then {
        Then::Poweroff => shutdown(log, &[], Power::Off),
        Then::Reboot => shutdown(log, &[], Power::Reboot),
        Then::Shell | Then::Tui => {}
    }
    // the menu draws on the consoles: routine kernel notices would print over it
    if let Err(e) = sys::console_loglevel(4) {
        log.line(&format!("setting the console log level: {e}"));
    }
    let ttys = consoles();
    let ttys = if ttys.is_empty() {
        vec![PathBuf::from("/dev/console")]
    } else {
        ttys
    };
    let mut slots: Vec<Slot> = ttys
        .into_iter()
        .enumerate()
        .map(|(i, tty)| Slot {
            tty,
            pid: None,
            ui: if i == 0 && then == Then::Shell {
                Ui::Shell
            } else {
                Ui::Menu
            },
        })
        .collect();
    log.ui_started(&slots.iter().map(|s| s.tty.clone()).collect::<Vec<_>>());
    loop {
        for slot in slots.iter_mut().filter(|s| s.pid.is_none()) {
            // busybox setsid -c: a session of its own with the terminal as its controlling
            // terminal, so Ctrl-C and job control work in the shell
            let (program, args): (&str, &[&str]) = match slot.ui {
                Ui::Shell => ("/bin/setsid", &["-c", "/bin/sh"]),
                Ui::Console => ("/proc/self/exe", &["console"]),
                Ui::Menu => (
                    "/proc/self/exe",
                    &["tui", "--rescue", "--mount-at", STORE_DIR],
                ),
            };
            match spawn_on(&slot.tty, program, args) {
                Ok(pid) => slot.pid = Some(pid),
                Err(e) => log.alert(&format!(
                    "starting {program} on {}: {e}",
                    slot.tty.display()
                )),
            }
        }
        if slots.iter().all(|s| s.pid.is_none()) {
            std::thread::sleep(Duration::from_secs(2)); // nothing could start: retry calmly
        }
        match sys::wait_any(true) {
            Ok(Some((pid, exit))) => {
                if let Some(slot) = slots.iter_mut().find(|s| s.pid == Some(pid)) {
                    slot.pid = None;
                    match exit {
                        Exit::Code(EXIT_POWEROFF) => shutdown(log, &slots, Power::Off),
                        Exit::Code(EXIT_REBOOT) => shutdown(log, &slots, Power::Reboot),
                        other => {
                            let next = next_ui(slot.ui, other);
                            let normal = matches!(other, Exit::Code(0) | Exit::Code(EXIT_MENU));
                            if !normal {
                                log.line(&format!(
                                    "{:?} on {} stopped ({other:?}); starting {next:?}",
                                    slot.ui,
                                    slot.tty.display()
                                ));
                                std::thread::sleep(Duration::from_secs(1));
                            }
                            slot.ui = next;
                        }
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                log.line(&format!("waiting for processes: {e}"));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if let Some(action) = sys::take_signal().and_then(signal_action) {
            shutdown(log, &slots, action);
        }
    }
}

/// busybox `poweroff` sends SIGUSR2 (`halt` SIGUSR1), `reboot` SIGTERM; Ctrl-Alt-Del is SIGINT.
fn signal_action(sig: i32) -> Option<Power> {
    match sig {
        libc::SIGUSR1 | libc::SIGUSR2 => Some(Power::Off),
        libc::SIGTERM | libc::SIGINT => Some(Power::Reboot),
        _ => None,
    }
}

/// Starts a program on a terminal. The program makes itself a session leader with that
/// terminal as its controlling terminal (the console does it first thing; the shell runs under
/// `setsid -c`): a `pre_exec` hook would do it here, but std's fork path for hooks fails with
/// ENOSYS on the mini kernel, while the posix_spawn path works on both kernels.
fn spawn_on(tty: &Path, program: &str, args: &[&str]) -> std::io::Result<u32> {
    let open = || std::fs::OpenOptions::new().read(true).write(true).open(tty);
    let mut cmd = Command::new(program);
    let serial = tty.to_string_lossy().contains("ttyS");
    cmd.arg0(if program == "/proc/self/exe" {
        "lifeboat"
    } else {
        program
    })
    .args(args)
    .stdin(open()?)
    .stdout(open()?)
    .stderr(open()?)
    .env("TERM", if serial { "vt220" } else { "linux" });
    Ok(cmd.spawn()?.id())
}

/// Sync, unmount the store, then power off or reboot. Never returns.
fn shutdown(log: &mut Log, slots: &[Slot], how: Power) -> ! {
    *log = Log::open(); // every console again: the UIs are going away
    log.line(match how {
        Power::Off => "powering off",
        Power::Reboot => "rebooting",
    });
    for pid in slots.iter().filter_map(|s| s.pid) {
        let _ = sys::kill(pid, libc::SIGHUP); // they must not hold the store open
    }
    std::thread::sleep(Duration::from_millis(200));
    sys::sync();
    if let Err(e) = store::unmount(Path::new(STORE_DIR)) {
        log.line(&crate::error::with_causes(&e));
    }
    // give FUSE daemons (ntfs-3g) a moment to finish after the unmount
    for _ in 0..20 {
        if let Ok(Some(_)) = sys::wait_any(false) {
            continue; // reaped one; look again
        }
        if !fuse_daemons_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    sys::sync();
    let e = sys::power(how);
    log.line(&format!("reboot(2) failed: {e}"));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn fuse_daemons_running() -> bool {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()).any(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "ntfs-3g")
            })
        })
        .unwrap_or(false)
}

/// Which consoles the kernel writes to, the main one first (the last `console=`).
pub(super) fn consoles() -> Vec<PathBuf> {
    console_names(&std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default())
}

use std::os::unix::process::CommandExt;
