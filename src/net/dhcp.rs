//! DHCP through busybox `udhcpc`. [`dhcp()`] runs it for one interface, bounded in time: it
//! stays in the foreground until it has a lease (or gives up, `-n`), then forks into the
//! background to renew the lease for as long as the machine runs, its pid in
//! `RUN_DIR/IFACE.udhcpc.pid` so a later run or a static address can stop it. udhcpc applies
//! nothing itself: it runs its script with the event as `$1` and the lease in the
//! environment (`interface`, `ip`, `mask` or `subnet`, `router`, `dns`, `domain`, `lease`,
//! `serverid`). In the rescue system that script is the lifeboat binary
//! ([`UDHCPC_SCRIPT`], a link to `/init`), which hands the event to [`script_event`]: it
//! applies the lease with [`super::apply`] and records it as `RUN_DIR/IFACE.json`, where
//! [`dhcp()`] reads it back. udhcpc's own output goes to `RUN_DIR/IFACE.udhcpc.log`.

use super::config::{self, prefix_of_netmask, NetConfig, Source};
use super::iface::{read_interfaces, Ipv4Cidr};
use super::{Error, Result, RUN_DIR};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// busybox udhcpc's default script path (Debian's busybox; upstream's is
/// /usr/share/udhcpc/default.script). build.sh links it to the lifeboat binary, so a
/// plain `udhcpc -i eth0` in the rescue shell configures the interface too.
pub const UDHCPC_SCRIPT: &str = "/etc/udhcpc/default.script";
/// Seconds udhcpc waits for an answer to each DISCOVER (`-T`).
const DISCOVER_WAIT_SECS: u64 = 3;
/// Shortest DHCP attempt [`dhcp_all`] gives an interface whose link came up late.
const MIN_ATTEMPT: Duration = Duration::from_secs(10);

fn pid_file(interface: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{interface}.udhcpc.pid"))
}

fn log_file(interface: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{interface}.udhcpc.log"))
}

/// Gets a DHCP lease for `interface` within `timeout` and returns it as applied: the link
/// is set up, an earlier udhcpc for it is stopped, and a new one runs until it has a lease
/// (then it stays in the background to renew it) or until `timeout`, when it is killed.
pub fn dhcp(interface: &str, timeout: Duration) -> Result<NetConfig> {
    if !Path::new("/sys/class/net").join(interface).exists() {
        return Err(Error::NoInterface {
            interface: interface.to_string(),
        });
    }
    stop_udhcpc(interface);
    let run = Path::new(RUN_DIR);
    config::forget(interface, run)?;
    super::link_up(interface)?;
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    std::fs::create_dir_all(run).map_err(io("creating", run))?;
    let log_path = log_file(interface);
    let log = std::fs::File::create(&log_path).map_err(io("creating", &log_path))?;
    let log2 = log.try_clone().map_err(io("opening", &log_path))?;
    let tries = (timeout.as_secs() / DISCOVER_WAIT_SECS).max(1).to_string();
    let pid = pid_file(interface);
    let mut child = Command::new("udhcpc")
        .args(["-i", interface, "-s", UDHCPC_SCRIPT, "-n", "-t", &tries])
        .args(["-T", &DISCOVER_WAIT_SECS.to_string(), "-p"])
        .arg(&pid)
        .args(["-x", "hostname:lifeboat"])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|source| Error::Spawn {
            interface: interface.to_string(),
            tool: "udhcpc",
            source,
        })?;
    // the foreground part ends when udhcpc forks into the background with a lease (exit 0)
    // or gives up (exit 1); a little slack over its own -t × -T budget
    let deadline = Instant::now() + timeout + Duration::from_secs(DISCOVER_WAIT_SECS);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let no_lease = |detail: String| Error::NoLease {
        interface: interface.to_string(),
        secs: timeout.as_secs(),
        detail,
    };
    let said = || last_line(&std::fs::read_to_string(&log_path).unwrap_or_default());
    match status {
        Some(s) if s.success() => config::configs(run)
            .into_iter()
            .find(|c| c.interface == interface)
            .ok_or_else(|| no_lease(format!("udhcpc ended without applying one; {}", said()))),
        Some(s) => Err(no_lease(format!("udhcpc {s}; {}", said()))),
        None => Err(no_lease(format!("udhcpc stopped; {}", said()))),
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("it said nothing")
        .to_string()
}

/// Stops the background udhcpc of `interface`, if its pid file names a running udhcpc.
pub fn stop_udhcpc(interface: &str) {
    let file = pid_file(interface);
    let pid = std::fs::read_to_string(&file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .filter(|p| *p > 1);
    if let Some(pid) = pid {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "udhcpc" {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    let _ = std::fs::remove_file(file);
}

/// DHCP on every Ethernet interface that has or gets a link within `timeout`: interfaces
/// that are down are set up, and each one whose carrier appears gets its own [`dhcp()`]
/// run (in parallel, each bounded by what is left of `timeout`, at least 10 s). `report`
/// is called with each interface's result as soon as it is known; interfaces that never
/// got a link end as [`Error::NoLink`]. Returns every result, sorted by interface, once
/// every interface has had its run, or after `timeout` (plus the runs still going).
pub fn dhcp_all(
    timeout: Duration,
    report: &(dyn Fn(&str, &Result<NetConfig>) + Sync),
) -> Vec<(String, Result<NetConfig>)> {
    let sys = Path::new("/sys/class/net");
    let started = Instant::now();
    let mut raised: HashSet<String> = HashSet::new();
    let mut results: Vec<(String, Result<NetConfig>)> = Vec::new();
    std::thread::scope(|s| {
        let mut running = Vec::new();
        let mut began: HashSet<String> = HashSet::new();
        loop {
            let ifaces = read_interfaces(sys, &HashMap::new()).unwrap_or_default();
            for i in ifaces.iter().filter(|i| i.is_ethernet(sys)) {
                if began.contains(&i.name) {
                    continue;
                }
                if i.carrier == Some(true) {
                    raised.insert(i.name.clone());
                    began.insert(i.name.clone());
                    let name = i.name.clone();
                    let left = timeout.saturating_sub(started.elapsed()).max(MIN_ATTEMPT);
                    running.push(s.spawn(move || {
                        let r = dhcp(&name, left);
                        report(&name, &r);
                        (name, r)
                    }));
                } else if raised.insert(i.name.clone()) {
                    if let Err(e) = super::link_up(&i.name) {
                        let r = Err(e);
                        report(&i.name, &r);
                        began.insert(i.name.clone());
                        results.push((i.name.clone(), r));
                    }
                }
            }
            // done early when every interface seen has had its run and those runs ended
            // (with none seen yet, a USB adapter may still appear: keep looking)
            let all_began = !began.is_empty() && raised.iter().all(|n| began.contains(n));
            if all_began && running.iter().all(|h| h.is_finished()) {
                break;
            }
            if started.elapsed() >= timeout {
                for name in raised.iter().filter(|n| !began.contains(*n)) {
                    let r = Err(Error::NoLink {
                        interface: name.clone(),
                        secs: timeout.as_secs(),
                    });
                    report(name, &r);
                    results.push((name.clone(), r));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        for h in running {
            if let Ok(r) = h.join() {
                results.push(r);
            }
        }
    });
    results.sort_by(|a, b| a.0.cmp(&b.0));
    results
}

/// What udhcpc's script does for one event (`$1`), with the lease in `env`:
/// `deconfig` (start, or a lease lost) removes the interface's addresses and record and
/// sets its link up; `bound` and `renew` apply the lease ([`lease_from_env`]) and return
/// it; `leasefail`, `nak` and anything else change nothing.
pub fn script_event(
    event: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<NetConfig>> {
    let interface = env("interface").unwrap_or_default();
    if interface.is_empty() {
        return Err(Error::BadLease {
            interface: "-".into(),
            var: "interface",
            value: String::new(),
        });
    }
    match event {
        "deconfig" => {
            super::link_up(&interface)?;
            config::deconfigure(&interface)?;
            Ok(None)
        }
        "bound" | "renew" => {
            let cfg = lease_from_env(env)?;
            config::apply(&cfg)?;
            Ok(Some(cfg))
        }
        _ => Ok(None),
    }
}

/// The lease udhcpc passes its script: `ip`, the prefix from `mask` (busybox gives the
/// length) or `subnet` (a dotted mask), the first of `router`, `dns` (space-separated),
/// `domain`, `lease` (seconds) and `serverid`. Only a missing or bad address or mask is an
/// error; a bad optional value is left out.
pub fn lease_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<NetConfig> {
    let interface = env("interface").unwrap_or_default();
    let bad = |var: &'static str, value: Option<String>| Error::BadLease {
        interface: interface.clone(),
        var,
        value: value.unwrap_or_default(),
    };
    let ip = env("ip");
    let address: Ipv4Addr = ip
        .as_deref()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| bad("ip", ip.clone()))?;
    let prefix = match env("mask")
        .and_then(|m| m.parse::<u8>().ok())
        .filter(|m| *m <= 32)
    {
        Some(p) => p,
        None => {
            let subnet = env("subnet");
            subnet
                .as_deref()
                .and_then(|s| s.parse().ok())
                .and_then(prefix_of_netmask)
                .ok_or_else(|| bad("subnet", subnet.clone()))?
        }
    };
    let addrs = |var: &str| -> Vec<Ipv4Addr> {
        env(var)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|a| a.parse().ok())
            .collect()
    };
    Ok(NetConfig {
        interface: interface.clone(),
        source: Source::Dhcp,
        address: Ipv4Cidr { address, prefix },
        router: addrs("router").first().copied(),
        dns: addrs("dns"),
        domain: env("domain").filter(|d| !d.trim().is_empty()),
        lease_secs: env("lease").and_then(|l| l.parse().ok()),
        server: env("serverid").and_then(|s| s.parse().ok()),
        applied_unix: config::now_unix(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn a_qemu_user_network_lease() {
        let env = env_of(&[
            ("interface", "eth0"),
            ("ip", "10.0.2.15"),
            ("subnet", "255.255.255.0"),
            ("mask", "24"),
            ("router", "10.0.2.2"),
            ("dns", "10.0.2.3"),
            ("lease", "86400"),
            ("serverid", "10.0.2.2"),
        ]);
        let c = lease_from_env(&env).unwrap();
        assert_eq!(c.interface, "eth0");
        assert_eq!(c.source, Source::Dhcp);
        assert_eq!(c.address.to_string(), "10.0.2.15/24");
        assert_eq!(c.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(c.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(c.lease_secs, Some(86400));
        assert_eq!(c.server, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(c.domain, None);
    }

    #[test]
    fn leases_with_a_dotted_mask_several_routers_or_bad_values() {
        let env = env_of(&[
            ("interface", "eth1"),
            ("ip", "192.168.1.50"),
            ("subnet", "255.255.240.0"),
            ("router", "192.168.1.1 192.168.1.2"),
            ("dns", "192.168.1.1 bogus 9.9.9.9"),
            ("domain", "home.arpa"),
            ("lease", "soon"),
        ]);
        let c = lease_from_env(&env).unwrap();
        assert_eq!(c.address.prefix, 20);
        assert_eq!(c.router, Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(c.dns.len(), 2);
        assert_eq!(c.domain.as_deref(), Some("home.arpa"));
        assert_eq!(c.lease_secs, None);

        let e = lease_from_env(&env_of(&[("interface", "eth1"), ("subnet", "255.0.0.0")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "eth1: udhcpc gave no valid ip (\"\")");
        let e = lease_from_env(&env_of(&[
            ("interface", "eth1"),
            ("ip", "10.1.1.1"),
            ("subnet", "255.0.255.0"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("subnet"), "{e}");
    }

    #[test]
    fn events_without_an_interface_or_without_work() {
        let e = script_event("bound", &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("interface"), "{e}");
        let env = env_of(&[("interface", "eth0")]);
        assert_eq!(script_event("leasefail", &env).unwrap(), None);
        assert_eq!(script_event("nak", &env).unwrap(), None);
    }

    #[test]
    fn the_last_thing_udhcpc_said() {
        assert_eq!(
            last_line("udhcpc: started\nudhcpc: no lease, failing\n\n"),
            "udhcpc: no lease, failing"
        );
        assert_eq!(last_line(""), "it said nothing");
    }
}
