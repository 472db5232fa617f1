//! The rescue system's network: which interfaces there are and what they hold, bringing them
//! up, DHCP through busybox `udhcpc`, static addresses, and waiting until the machine is
//! online. Network stores (`store/`: SMB, NFS, SFTP) and the faces use it; PID 1 runs it at
//! boot as `lifeboat.net=` asks ([`Mode`]).
//!
//! Owns:
//! - [`iface`]: the interfaces from `/sys/class/net` with their IPv4 addresses
//!   ([`interfaces`]), links up ([`link_up`]), the default route from `/proc/net/route`
//!   ([`default_route`]);
//! - [`config`]: one interface's IPv4 configuration ([`NetConfig`], from DHCP or static),
//!   applied with `ip` ([`apply`]), recorded as `/run/lifeboat/net/IFACE.json`
//!   ([`RUN_DIR`], read back with [`recorded`]) and in `/etc/resolv.conf`; static addresses
//!   ([`apply_static`]) in the `IFACE:ADDR/PREFIX,GATEWAY,DNS` syntax ([`StaticConfig`]);
//! - [`mod@dhcp`]: a bounded `udhcpc` run per interface ([`dhcp()`], [`dhcp_all`]) and the event
//!   handler its script is ([`dhcp::script_event`]: the rescue system links the lifeboat
//!   binary as udhcpc's default script, [`UDHCPC_SCRIPT`]);
//! - [`wait_online`]: an IPv4 address and a default route, within a time limit.
//!
//! Invariants: nothing here prints; every failure is an [`Error`] naming the interface and
//! the reason, with the output of the tool that failed. The tools (`ip`, `udhcpc`,
//! `modprobe`) are busybox's and lifeboat's own in the rescue system and iproute2/kmod on a
//! host: only the syntax both accept is used. IPv4 only. Times are whole seconds in names
//! ending `_secs` and [`std::time::Duration`]s elsewhere.

pub mod config;
pub mod dhcp;
pub mod iface;

pub use config::{apply, configs, NetConfig, Source, StaticConfig};
pub use dhcp::{dhcp, dhcp_all, UDHCPC_SCRIPT};
pub use iface::{default_route, interfaces, link_up, Interface, Ipv4Cidr, Route};

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where each interface's configuration is recorded (`IFACE.json`, a [`NetConfig`]) and
/// where udhcpc keeps its pid files (`IFACE.udhcpc.pid`).
pub const RUN_DIR: &str = "/run/lifeboat/net";

/// Result alias of the network layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the network could not be listed, configured or reached.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing one of the network's files failed.
    #[error("{op} {path}")]
    Io {
        /// Lowercase gerund: "reading", "writing".
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// There is no interface of that name.
    #[error("{interface}: no such network interface")]
    NoInterface {
        /// The name asked for.
        interface: String,
    },
    /// A tool could not be started at all.
    #[error("{interface}: starting {tool}")]
    Spawn {
        /// The interface it was for (or the module, or "interfaces").
        interface: String,
        /// `ip`, `udhcpc`, `modprobe`.
        tool: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{interface}: {action} failed: {detail}")]
    Tool {
        /// The interface it was for (or the module, or "interfaces").
        interface: String,
        /// What was being done, e.g. "adding address 10.0.2.20/24".
        action: String,
        /// The tool's exit status and what it wrote to stderr.
        detail: String,
    },
    /// udhcpc got no lease in time.
    #[error("{interface}: no DHCP lease after {secs} s ({detail})")]
    NoLease {
        /// The interface.
        interface: String,
        /// How long it tried.
        secs: u64,
        /// What udhcpc said, or how it ended.
        detail: String,
    },
    /// The interface never reported a link (carrier).
    #[error("{interface}: no link after {secs} s (cable unplugged, or no network there)")]
    NoLink {
        /// The interface.
        interface: String,
        /// How long it waited.
        secs: u64,
    },
    /// udhcpc called its script without something a lease must have.
    #[error("{interface}: udhcpc gave no valid {var} ({value:?})")]
    BadLease {
        /// The interface.
        interface: String,
        /// The environment variable.
        var: &'static str,
        /// What it held.
        value: String,
    },
    /// A static configuration (`lifeboat.net=IFACE:ADDR/PREFIX,GATEWAY,DNS`) does not parse.
    #[error("{spec:?}: {reason} (expected IFACE:ADDR/PREFIX[,GATEWAY[,DNS…]])")]
    BadStatic {
        /// What the user wrote.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No interface had an address and a default route in time.
    #[error("not online after {secs} s: {why}")]
    Offline {
        /// How long it waited.
        secs: u64,
        /// Each interface's state, or what was missing.
        why: String,
    },
    /// The kernel does not know a filesystem type, even after asking modprobe for it.
    #[error("filesystem {fs}: not in this kernel ({detail})")]
    NoFilesystem {
        /// The filesystem type, e.g. "cifs".
        fs: String,
        /// What modprobe said.
        detail: String,
    },
}

/// What the network does at boot (`lifeboat.net=`; parsed by [`Mode::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// DHCP on every Ethernet interface that has a link (the default).
    #[default]
    Dhcp,
    /// Leave every interface down (only `lo` comes up).
    Off,
    /// One interface with a fixed address.
    Static(StaticConfig),
}

impl Mode {
    /// `dhcp`, `off` or `IFACE:ADDR/PREFIX[,GATEWAY[,DNS…]]`.
    pub fn parse(value: &str) -> Result<Mode> {
        match value {
            "dhcp" => Ok(Mode::Dhcp),
            "off" | "none" => Ok(Mode::Off),
            spec => StaticConfig::parse(spec).map(Mode::Static),
        }
    }
}

/// True when a store SPEC is reached over the network (`smb://`, `cifs://`, `nfs://`,
/// `sftp://`, `ssh://`, `http(s)://`, `s3://`, or any other `SCHEME://`), so the machine must
/// be online before it is mounted. Local specs (`LABEL=`, `/dev/sdb1`) are not.
pub fn is_network_spec(spec: &str) -> bool {
    spec.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// Where the machine is online: the interface holding the default route, its first address
/// and the gateway.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Online {
    /// The interface of the default route.
    pub interface: String,
    /// Its first IPv4 address.
    pub address: Ipv4Cidr,
    /// The default gateway.
    pub gateway: std::net::Ipv4Addr,
}

/// Waits until some interface other than `lo` has an IPv4 address, the default route goes
/// through it and its link is up (or its driver does not say), polling every 250 ms for at most `timeout`. Starts nothing: DHCP or a static
/// address must be under way (PID 1 starts them at boot). The error names each interface and
/// what it lacks.
pub fn wait_online(timeout: Duration) -> Result<Online> {
    let started = Instant::now();
    loop {
        let ifaces = interfaces()?;
        let route = default_route(std::path::Path::new("/proc/net/route"))?;
        match online_from(&ifaces, route.as_ref()) {
            Ok(online) => return Ok(online),
            Err(why) if started.elapsed() >= timeout => {
                return Err(Error::Offline {
                    secs: timeout.as_secs(),
                    why,
                })
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Online, or why not (each interface's state).
fn online_from(ifaces: &[Interface], route: Option<&Route>) -> Result<Online, String> {
    if let Some(r) = route {
        // a static address and route are there at once, link or not: wait for the link too
        if let Some(address) = ifaces
            .iter()
            .find(|i| i.name == r.interface && i.carrier != Some(false))
            .and_then(|i| i.addresses.first())
        {
            return Ok(Online {
                interface: r.interface.clone(),
                address: *address,
                gateway: r.gateway,
            });
        }
    }
    let states: Vec<String> = ifaces
        .iter()
        .filter(|i| !i.loopback)
        .map(|i| {
            let state = if i.carrier == Some(false) {
                "no link".to_string()
            } else if let Some(a) = i.addresses.first() {
                format!("{a}, no default route")
            } else if i.carrier == Some(true) {
                "link up, no address yet".to_string()
            } else {
                format!("{}, no address", i.operstate)
            };
            format!("{}: {state}", i.name)
        })
        .collect();
    Err(if states.is_empty() {
        "no network interface (no driver for the network card?)".to_string()
    } else {
        states.join("; ")
    })
}

/// Every recorded configuration (`RUN_DIR/IFACE.json`: DHCP leases and static addresses),
/// sorted by interface: what the menu shows as the network's state.
pub fn recorded() -> Vec<NetConfig> {
    configs(std::path::Path::new(RUN_DIR))
}

/// Applies a static address: stops the interface's background udhcpc (it would replace the
/// address at its next renewal), then [`apply`]s it and records it.
pub fn apply_static(s: &StaticConfig) -> Result<NetConfig> {
    dhcp::stop_udhcpc(&s.interface);
    let cfg = s.to_config();
    apply(&cfg)?;
    Ok(cfg)
}

/// Makes sure the kernel knows filesystem `fs` (`cifs`, `smb3`, `nfs`, `nfs4`), asking
/// `modprobe` for it when `/proc/filesystems` does not list it: the rescue system's
/// `/sbin/modprobe` is lifeboat itself, the same path the kernel's own requests take when
/// mount(2) meets an unknown type. NFS also loads its protocol versions (`nfsv3`, `nfsv4`),
/// which the nfs module would otherwise request on the first mount. Built-in filesystems
/// (the mini kernel) are found at once.
pub fn load_fs_module(fs: &str) -> Result<()> {
    let this = [fs];
    let (names, versions): (&[&str], &[&str]) = match fs {
        // cifs declares its crypto as softdeps without "pre:", so nothing loads them first;
        // without cmac and gcm, SMB 3 negotiation fails ("crypto alloc failed, rc=-2")
        "cifs" | "smb3" => (
            &["cifs", "smb3"],
            &[
                "cmac",
                "ccm",
                "gcm",
                "ghash_generic",
                "sha512_generic",
                "aesni_intel",
            ],
        ),
        "nfs" => (&["nfs"], &["nfsv3"]),
        "nfs4" => (&["nfs4"], &["nfsv4"]),
        _ => (&this, &[]),
    };
    let known = || {
        std::fs::read_to_string("/proc/filesystems")
            .map(|t| filesystems_has(&t, names))
            .unwrap_or(false)
    };
    let mut detail = String::new();
    if !known() {
        detail = modprobe(&format!("fs-{fs}"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
    }
    for v in versions {
        // the version modules register no filesystem: loaded, they just skip a later request
        let _ = modprobe(v);
    }
    if known() {
        Ok(())
    } else {
        Err(Error::NoFilesystem {
            fs: fs.to_string(),
            detail: if detail.is_empty() {
                "modprobe loaded nothing that registers it".to_string()
            } else {
                detail
            },
        })
    }
}

/// `modprobe -q NAME`.
fn modprobe(name: &str) -> Result<()> {
    config::run_tool(name, "modprobe", &["-q", name], &format!("loading {name}"))
}

/// True when a `/proc/filesystems` text lists any of `names`.
fn filesystems_has(text: &str, names: &[&str]) -> bool {
    text.lines()
        .filter_map(|l| l.split_whitespace().last())
        .any(|fs| names.contains(&fs))
}

/// `ip` with arguments, for the interface `interface` (named in errors); `action` says what
/// it does ("adding address …").
fn ip(interface: &str, args: &[&str], action: &str) -> Result<()> {
    config::run_tool(interface, "ip", args, action)
}

/// `ip` output on success.
fn ip_output(interface: &str, args: &[&str], action: &str) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            interface: interface.to_string(),
            tool: "ip",
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Tool {
            interface: interface.to_string(),
            action: action.to_string(),
            detail: config::detail(&out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn network_specs_are_urls() {
        for s in [
            "smb://nas/share",
            "nfs://10.0.0.1/srv",
            "sftp://u@h/p",
            "s3://b",
        ] {
            assert!(is_network_spec(s), "{s}");
        }
        for s in [
            "LABEL=BACKUP",
            "/dev/sdb1",
            "UUID=1234-ABCD",
            "://x",
            "a b://c",
        ] {
            assert!(!is_network_spec(s), "{s}");
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!(Mode::parse("dhcp").unwrap(), Mode::Dhcp);
        assert_eq!(Mode::parse("off").unwrap(), Mode::Off);
        let Mode::Static(s) = Mode::parse("eth0:10.0.2.20/24,10.0.2.2,10.0.2.3").unwrap() else {
            panic!("not static")
        };
        assert_eq!(s.interface, "eth0");
        assert!(Mode::parse("dhcpx").is_err());
    }

    fn iface(name: &str, carrier: Option<bool>, addrs: &[&str]) -> Interface {
        Interface {
            name: name.into(),
            mac: None,
            driver: None,
            loopback: name == "lo",
            carrier,
            operstate: "down".into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn online_needs_an_address_and_the_default_route() {
        let lo = iface("lo", None, &["127.0.0.1/8"]);
        let route = Route {
            interface: "eth0".into(),
            gateway: Ipv4Addr::new(10, 0, 2, 2),
        };
        let up = iface("eth0", Some(true), &["10.0.2.15/24"]);
        let online = online_from(&[lo.clone(), up.clone()], Some(&route)).unwrap();
        assert_eq!(online.interface, "eth0");
        assert_eq!(online.address.to_string(), "10.0.2.15/24");
        assert_eq!(online.gateway, Ipv4Addr::new(10, 0, 2, 2));

        let unplugged = iface("eth0", Some(false), &["10.0.2.20/24"]);
        let why = online_from(&[lo.clone(), unplugged], Some(&route)).unwrap_err();
        assert_eq!(why, "eth0: no link");
        let why = online_from(&[lo.clone(), up], None).unwrap_err();
        assert_eq!(why, "eth0: 10.0.2.15/24, no default route");
        let why = online_from(
            &[
                lo.clone(),
                iface("eth0", Some(false), &[]),
                iface("eth1", Some(true), &[]),
            ],
            Some(&route),
        )
        .unwrap_err();
        assert_eq!(why, "eth0: no link; eth1: link up, no address yet");
        let why = online_from(&[lo], None).unwrap_err();
        assert!(why.starts_with("no network interface"), "{why}");
    }

    #[test]
    fn proc_filesystems_is_read_by_its_last_column() {
        let text = "nodev\tsysfs\n\text4\nnodev\tnfs4\n";
        assert!(filesystems_has(text, &["nfs4"]));
        assert!(filesystems_has(text, &["ext4"]));
        assert!(!filesystems_has(text, &["cifs", "smb3"]));
    }
}
