//! The rescue system's network at boot, as `lifeboat.net=` asks ([`crate::net::Mode`]), and
//! the two helpers the network runs as: the lifeboat binary started under other names.
//!
//! - PID 1 calls `start` once the drivers are loaded. It starts `/proc/self/exe` as
//!   `lifeboat-net` ([`netup_main`]), a child that brings `lo` up and then runs DHCP on every
//!   Ethernet interface that gets a link, or applies the static address, and exits. A child,
//!   not a thread: PID 1 reaps every process with `waitpid(-1)`, which would steal the exit
//!   statuses `udhcpc` and `ip` runs are waited for with. Boot goes on at once.
//! - udhcpc runs its script `/etc/udhcpc/default.script`, a link to the binary, for
//!   each DHCP event ([`udhcpc_script_main`]).
//! - Before a store whose SPEC is a URL, PID 1 calls `wait_for_network`.
//!
//! The helpers log to the boot log and the log VT (tty2), never to the consoles: the menu
//! may already be drawing there.

use crate::net::{self, Mode, NetConfig};
use crate::rescue::LOG_FILE;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The argv\[0\] PID 1 starts the network child under.
pub const NETUP_ARGV0: &str = "lifeboat-net";
/// How long the boot-time DHCP looks for links and leases at least (a longer
/// `lifeboat.wait=` makes it longer).
const DHCP_SECS: u64 = 30;

/// Starts the boot-time network child for `mode` (PID 1). Returns its pid; PID 1's reaper
/// collects it.
pub(crate) fn start(log: &mut super::Log, mode: &Mode, wait_secs: u64) -> Option<u32> {
    let what = match mode {
        Mode::Dhcp => "DHCP on every interface with a link, in the background".to_string(),
        Mode::Off => "off (lifeboat.net=off)".to_string(),
        Mode::Static(s) => format!("static {s}"),
    };
    log.line(&format!("network: {what}"));
    let stderr = std::fs::File::options()
        .create(true)
        .append(true)
        .open(LOG_FILE)
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let spawned = Command::new("/proc/self/exe")
        .arg0(NETUP_ARGV0)
        .arg(wait_secs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn();
    match spawned {
        Ok(child) => Some(child.id()),
        Err(e) => {
            log.line(&format!("network: starting {NETUP_ARGV0}: {e}"));
            None
        }
    }
}

/// Waits up to `wait_secs` until the machine is online, if the store SPEC needs the
/// network (a URL: [`net::is_network_spec`]); logs the outcome. `Ok(None)` for a local
/// SPEC. PID 1 calls it before mounting `lifeboat.store=`.
pub(crate) fn wait_for_network(
    log: &mut super::Log,
    spec: &str,
    wait_secs: u64,
) -> Result<Option<net::Online>, String> {
    if !net::is_network_spec(spec) {
        return Ok(None);
    }
    log.line(&format!(
        "store {spec}: waiting up to {wait_secs} s for the network"
    ));
    match net::wait_online(Duration::from_secs(wait_secs)) {
        Ok(online) => {
            log.line(&format!(
                "network: online through {} ({}, gateway {})",
                online.interface, online.address, online.gateway
            ));
            Ok(Some(online))
        }
        Err(e) => {
            let e = format!("network: {}", crate::error::with_causes(&e));
            log.line(&e);
            Err(e)
        }
    }
}

/// The boot log and the log VT, for the helpers.
struct HelperLog {
    files: Vec<std::fs::File>,
}

impl HelperLog {
    fn open() -> Self {
        let files = [Path::new(LOG_FILE), Path::new("/dev/tty2")]
            .iter()
            .filter_map(|p| std::fs::File::options().append(true).open(p).ok())
            .collect();
        HelperLog { files }
    }

    fn line(&mut self, msg: &str) {
        for f in &mut self.files {
            let _ = writeln!(f, "lifeboat: network: {msg}\r");
        }
    }
}

/// One line for a configuration: `eth0 10.0.2.15/24 via 10.0.2.2, DNS 10.0.2.3 (dhcp)`.
fn describe(c: &NetConfig) -> String {
    let mut s = format!("{} {}", c.interface, c.address);
    if let Some(r) = c.router {
        s.push_str(&format!(" via {r}"));
    }
    if !c.dns.is_empty() {
        let dns: Vec<String> = c.dns.iter().map(|d| d.to_string()).collect();
        s.push_str(&format!(", DNS {}", dns.join(" ")));
    }
    s.push_str(match c.source {
        net::Source::Dhcp => " (DHCP)",
        net::Source::Static => " (static)",
    });
    s
}

/// `lifeboat-net [WAIT_SECS]`: the boot-time network child. Reads `lifeboat.net=` from
/// /proc/cmdline, brings `lo` up, then DHCP or the static address; logs each result.
/// Returns the exit code (0 when every interface it tried is configured).
pub fn netup_main(args: &[String]) -> i32 {
    let mut log = HelperLog::open();
    let wait_secs: u64 = args
        .get(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or(super::cmdline::BootOptions::default().wait_secs);
    let opts = super::cmdline::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default());
    if let Err(e) = net::link_up("lo") {
        log.line(&crate::error::with_causes(&e));
    }
    let timeout = Duration::from_secs(wait_secs.max(DHCP_SECS));
    match &opts.net {
        Mode::Off => 0,
        Mode::Dhcp => {
            let log = std::sync::Mutex::new(log);
            let report = |_: &str, r: &net::Result<NetConfig>| {
                let msg = match r {
                    Ok(c) => describe(c),
                    Err(e) => crate::error::with_causes(e),
                };
                if let Ok(mut l) = log.lock() {
                    l.line(&msg);
                }
            };
            let results = net::dhcp_all(timeout, &report);
            if results.is_empty() {
                if let Ok(mut l) = log.lock() {
                    l.line("no Ethernet interface (no driver for the network card?)");
                }
                return 1;
            }
            i32::from(!results.iter().any(|(_, r)| r.is_ok()))
        }
        Mode::Static(s) => {
            // the driver may still be binding (USB adapters): wait for the interface
            let deadline = std::time::Instant::now() + timeout;
            let there = Path::new("/sys/class/net").join(&s.interface);
            while !there.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(250));
            }
            match net::apply_static(s) {
                Ok(c) => {
                    log.line(&describe(&c));
                    0
                }
                Err(e) => {
                    log.line(&crate::error::with_causes(&e));
                    1
                }
            }
        }
    }
}

/// udhcpc's script (`default.script EVENT`, the lease in the environment): applies and
/// records the lease ([`net::dhcp::script_event`]). Returns the exit code; errors go to
/// stderr (udhcpc's log) and the boot log.
pub fn udhcpc_script_main(args: &[String]) -> i32 {
    let event = args.get(1).map(String::as_str).unwrap_or_default();
    let env = |k: &str| std::env::var(k).ok();
    match net::dhcp::script_event(event, &env) {
        Ok(Some(c)) if event == "bound" => {
            HelperLog::open().line(&format!("lease: {}", describe(&c)));
            0
        }
        Ok(_) => 0,
        Err(e) => {
            let e = crate::error::with_causes(&e);
            eprintln!("lifeboat: udhcpc {event}: {e}");
            HelperLog::open().line(&format!("udhcpc {event}: {e}"));
            1
        }
    }
}

use std::os::unix::process::CommandExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_read_in_one_line() {
        let s = net::StaticConfig::parse("eth0:10.0.2.20/24,10.0.2.2,10.0.2.3").unwrap();
        assert_eq!(
            describe(&s.to_config()),
            "eth0 10.0.2.20/24 via 10.0.2.2, DNS 10.0.2.3 (static)"
        );
        let s = net::StaticConfig::parse("eth1:192.168.0.9/24").unwrap();
        assert_eq!(describe(&s.to_config()), "eth1 192.168.0.9/24 (static)");
    }
}
