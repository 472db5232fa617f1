//! One interface's IPv4 configuration: what DHCP or the user gave ([`NetConfig`]), how it is
//! applied (`ip` commands: link up, address, default route), and where it is recorded:
//! `RUN_DIR/IFACE.json` for the faces (the menu shows it, `READY` lists it) and
//! `/etc/resolv.conf`, rebuilt from every record so two interfaces do not fight over it.

use super::iface::Ipv4Cidr;
use super::{Error, Result, RUN_DIR};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the resolver configuration goes.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Most `nameserver` lines glibc and busybox read.
const MAX_NAMESERVERS: usize = 3;

/// Where a configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A DHCP lease (udhcpc).
    Dhcp,
    /// `lifeboat.net=IFACE:…` or a face's static form.
    Static,
}

/// An interface's IPv4 configuration, as recorded in `RUN_DIR/IFACE.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetConfig {
    /// The interface.
    pub interface: String,
    /// DHCP or static.
    pub source: Source,
    /// Its address and prefix.
    pub address: Ipv4Cidr,
    /// The default gateway, if any.
    pub router: Option<Ipv4Addr>,
    /// DNS servers, in order of preference.
    pub dns: Vec<Ipv4Addr>,
    /// The DNS search domain DHCP gave.
    pub domain: Option<String>,
    /// The lease's length in seconds (DHCP only).
    pub lease_secs: Option<u64>,
    /// The DHCP server that gave the lease.
    pub server: Option<Ipv4Addr>,
    /// When it was applied, in seconds since the Unix epoch.
    pub applied_unix: u64,
}

/// A static address for one interface: `IFACE:ADDR/PREFIX[,GATEWAY[,DNS…]]`, e.g.
/// `eth0:10.0.2.20/24,10.0.2.2,10.0.2.3`. The gateway may be left empty
/// (`eth0:192.168.1.9/24,,1.1.1.1`); it must lie inside the interface's subnet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticConfig {
    /// The interface.
    pub interface: String,
    /// Address and prefix.
    pub address: Ipv4Cidr,
    /// The default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
}

impl StaticConfig {
    /// Parses `IFACE:ADDR/PREFIX[,GATEWAY[,DNS…]]`.
    pub fn parse(spec: &str) -> Result<StaticConfig> {
        let bad = |reason: String| Error::BadStatic {
            spec: spec.to_string(),
            reason,
        };
        let (interface, rest) = spec
            .split_once(':')
            .ok_or_else(|| bad("no interface name before ':'".into()))?;
        if interface.is_empty()
            || interface.len() > 15
            || interface
                .chars()
                .any(|c| c == '/' || c == ':' || c == ',' || c.is_whitespace())
        {
            return Err(bad(format!("{interface:?} is not an interface name")));
        }
        let mut parts = rest.split(',');
        let addr = parts.next().unwrap_or_default();
        if !addr.contains('/') {
            return Err(bad(format!("{addr:?} has no /PREFIX (e.g. /24)")));
        }
        let address: Ipv4Cidr = addr.parse().map_err(bad)?;
        let ip = |s: &str, what: &str| {
            s.parse::<Ipv4Addr>()
                .map_err(|_| bad(format!("{what} {s:?} is not an IPv4 address")))
        };
        let gateway = match parts.next() {
            None | Some("") => None,
            Some(g) => Some(ip(g, "gateway")?),
        };
        if let Some(g) = gateway {
            if !same_subnet(address, g) {
                return Err(bad(format!("gateway {g} is outside {}", network(address))));
            }
        }
        let dns = parts
            .filter(|d| !d.is_empty())
            .map(|d| ip(d, "DNS server"))
            .collect::<Result<Vec<_>>>()?;
        Ok(StaticConfig {
            interface: interface.to_string(),
            address,
            gateway,
            dns,
        })
    }

    /// The configuration to apply.
    pub fn to_config(&self) -> NetConfig {
        NetConfig {
            interface: self.interface.clone(),
            source: Source::Static,
            address: self.address,
            router: self.gateway,
            dns: self.dns.clone(),
            domain: None,
            lease_secs: None,
            server: None,
            applied_unix: now_unix(),
        }
    }
}

impl std::fmt::Display for StaticConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.interface, self.address)?;
        if self.gateway.is_some() || !self.dns.is_empty() {
            write!(
                f,
                ",{}",
                self.gateway.map(|g| g.to_string()).unwrap_or_default()
            )?;
        }
        for d in &self.dns {
            write!(f, ",{d}")?;
        }
        Ok(())
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn same_subnet(net: Ipv4Cidr, other: Ipv4Addr) -> bool {
    let m = mask(net.prefix);
    u32::from(net.address) & m == u32::from(other) & m
}

fn network(c: Ipv4Cidr) -> Ipv4Cidr {
    Ipv4Cidr {
        address: Ipv4Addr::from(u32::from(c.address) & mask(c.prefix)),
        prefix: c.prefix,
    }
}

/// The prefix length of a dotted netmask (`255.255.255.0` → 24); `None` unless its ones are
/// contiguous.
pub fn prefix_of_netmask(netmask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(netmask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

pub(super) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Applies a configuration: the link up, the address (unless the interface already holds
/// exactly it, so a DHCP renewal does not drop connections), the default route, then the
/// record in [`RUN_DIR`] and `/etc/resolv.conf`.
pub fn apply(cfg: &NetConfig) -> Result<()> {
    let name = cfg.interface.as_str();
    if !Path::new("/sys/class/net").join(name).exists() {
        return Err(Error::NoInterface {
            interface: name.to_string(),
        });
    }
    super::link_up(name)?;
    let current = super::ip_output(
        name,
        &["-4", "-o", "addr", "show", "dev", name],
        "listing its addresses",
    )?;
    let current = super::iface::parse_ip_addr(&current)
        .remove(name)
        .unwrap_or_default();
    if current != [cfg.address] {
        super::ip(
            name,
            &["-4", "addr", "flush", "dev", name],
            "removing old addresses",
        )?;
        let addr = cfg.address.to_string();
        super::ip(
            name,
            &["addr", "add", &addr, "dev", name],
            &format!("adding address {addr}"),
        )?;
    }
    if let Some(r) = cfg.router {
        let r = r.to_string();
        super::ip(
            name,
            &["route", "replace", "default", "via", &r, "dev", name],
            &format!("setting the default route via {r}"),
        )?;
    }
    record(cfg, Path::new(RUN_DIR))?;
    write_resolv_conf(Path::new(RUN_DIR), Path::new(RESOLV_CONF))
}

/// Removes an interface's IPv4 addresses (its routes go with them) and its record.
pub fn deconfigure(interface: &str) -> Result<()> {
    super::ip(
        interface,
        &["-4", "addr", "flush", "dev", interface],
        "removing its addresses",
    )?;
    forget(interface, Path::new(RUN_DIR))?;
    write_resolv_conf(Path::new(RUN_DIR), Path::new(RESOLV_CONF))
}

/// `run_dir/IFACE.json`.
pub fn record_path(run_dir: &Path, interface: &str) -> PathBuf {
    run_dir.join(format!("{interface}.json"))
}

/// Writes `cfg` to `run_dir/IFACE.json` (through a temporary name, so a reader never sees
/// half of it).
pub fn record(cfg: &NetConfig, run_dir: &Path) -> Result<()> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    std::fs::create_dir_all(run_dir).map_err(io("creating", run_dir))?;
    let path = record_path(run_dir, &cfg.interface);
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_string(cfg).unwrap_or_default();
    std::fs::write(&tmp, json + "\n").map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))
}

/// Removes `run_dir/IFACE.json`, if there.
pub fn forget(interface: &str, run_dir: &Path) -> Result<()> {
    let path = record_path(run_dir, interface);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            op: "removing",
            path,
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Every recorded configuration in `run_dir` (default [`RUN_DIR`]), sorted by interface.
/// Unreadable or foreign files are skipped; a missing directory is an empty list.
pub fn configs(run_dir: &Path) -> Vec<NetConfig> {
    let mut v: Vec<NetConfig> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    v.sort_by(|a: &NetConfig, b| a.interface.cmp(&b.interface));
    v
}

/// The resolv.conf for these configurations: their DNS servers (the first three, without
/// repeats) and search domains.
pub fn resolv_conf_text(cfgs: &[NetConfig]) -> String {
    let mut servers: Vec<Ipv4Addr> = Vec::new();
    let mut domains: Vec<&str> = Vec::new();
    for c in cfgs {
        for d in &c.dns {
            if !servers.contains(d) {
                servers.push(*d);
            }
        }
        if let Some(d) = c.domain.as_deref().filter(|d| !d.is_empty()) {
            if !domains.contains(&d) {
                domains.push(d);
            }
        }
    }
    let mut text = String::from("# written by lifeboat from /run/lifeboat/net\n");
    if !domains.is_empty() {
        text.push_str(&format!("search {}\n", domains.join(" ")));
    }
    for s in servers.iter().take(MAX_NAMESERVERS) {
        text.push_str(&format!("nameserver {s}\n"));
    }
    text
}

/// Rebuilds `resolv_conf` from every record in `run_dir`.
pub fn write_resolv_conf(run_dir: &Path, resolv_conf: &Path) -> Result<()> {
    let text = resolv_conf_text(&configs(run_dir));
    std::fs::write(resolv_conf, text).map_err(|source| Error::Io {
        op: "writing",
        path: resolv_conf.to_path_buf(),
        source,
    })
}

/// Runs `tool args…` for `interface`; `action` names what it does in the error.
pub(super) fn run_tool(
    interface: &str,
    tool: &'static str,
    args: &[&str],
    action: &str,
) -> Result<()> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            interface: interface.to_string(),
            tool,
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            interface: interface.to_string(),
            action: action.to_string(),
            detail: detail(&out),
        })
    }
}

/// A failed tool's exit status and the last lines of its stderr, on one line.
pub(super) fn detail(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines
        .get(lines.len().saturating_sub(3)..)
        .unwrap_or_default();
    if tail.is_empty() {
        out.status.to_string()
    } else {
        format!("{} ({})", tail.join("; "), out.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_specs() {
        let s = StaticConfig::parse("eth0:10.0.2.20/24,10.0.2.2,10.0.2.3").unwrap();
        assert_eq!(s.interface, "eth0");
        assert_eq!(s.address.to_string(), "10.0.2.20/24");
        assert_eq!(s.gateway, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(s.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(s.to_string(), "eth0:10.0.2.20/24,10.0.2.2,10.0.2.3");

        let s = StaticConfig::parse("enp3s0:192.168.1.9/24").unwrap();
        assert_eq!((s.gateway, s.dns.len()), (None, 0));
        assert_eq!(s.to_string(), "enp3s0:192.168.1.9/24");
        let s = StaticConfig::parse("eth1:192.168.1.9/24,,1.1.1.1,9.9.9.9").unwrap();
        assert_eq!(s.gateway, None);
        assert_eq!(s.dns.len(), 2);

        for (spec, why) in [
            ("10.0.2.20/24", "no interface"),
            (":10.0.2.20/24", "not an interface name"),
            ("eth0:10.0.2.20", "no /PREFIX"),
            ("eth0:10.0.2.300/24", "not an IPv4 address"),
            ("eth0:10.0.2.20/40", "not a prefix length"),
            ("eth0:10.0.2.20/24,10.0.3.1", "outside 10.0.2.0/24"),
            ("eth0:10.0.2.20/24,10.0.2.2,dns.example", "DNS server"),
            ("eth0:10.0.2.20/24,gw", "gateway \"gw\""),
        ] {
            let e = StaticConfig::parse(spec).unwrap_err().to_string();
            assert!(e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn netmasks_to_prefixes() {
        assert_eq!(prefix_of_netmask(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of_netmask(Ipv4Addr::new(255, 255, 240, 0)), Some(20));
        assert_eq!(prefix_of_netmask(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(
            prefix_of_netmask(Ipv4Addr::new(255, 255, 255, 255)),
            Some(32)
        );
        assert_eq!(prefix_of_netmask(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert!(same_subnet(
            "10.0.2.20/0".parse().unwrap(),
            Ipv4Addr::new(1, 2, 3, 4)
        ));
    }

    fn cfg(name: &str, dns: &[[u8; 4]], domain: Option<&str>) -> NetConfig {
        NetConfig {
            interface: name.into(),
            source: Source::Dhcp,
            address: "10.0.2.15/24".parse().unwrap(),
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: dns.iter().map(|d| Ipv4Addr::from(*d)).collect(),
            domain: domain.map(str::to_string),
            lease_secs: Some(86400),
            server: None,
            applied_unix: 1,
        }
    }

    #[test]
    fn records_round_trip_and_make_one_resolv_conf() {
        let t = tempfile::tempdir().unwrap();
        let run = t.path().join("net");
        assert!(configs(&run).is_empty());
        let a = cfg("eth0", &[[10, 0, 2, 3], [1, 1, 1, 1]], Some("lan"));
        let b = cfg("eth1", &[[1, 1, 1, 1], [9, 9, 9, 9], [8, 8, 8, 8]], None);
        record(&b, &run).unwrap();
        record(&a, &run).unwrap();
        std::fs::write(run.join("junk.json"), "{").unwrap();
        std::fs::write(run.join("eth0.udhcpc.pid"), "12").unwrap();
        assert_eq!(configs(&run), vec![a.clone(), b.clone()]);
        let resolv = t.path().join("resolv.conf");
        write_resolv_conf(&run, &resolv).unwrap();
        assert_eq!(
            std::fs::read_to_string(&resolv).unwrap(),
            "# written by lifeboat from /run/lifeboat/net\nsearch lan\n\
             nameserver 10.0.2.3\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n"
        );
        forget("eth0", &run).unwrap();
        forget("eth0", &run).unwrap();
        assert_eq!(configs(&run), vec![b]);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["address"], "10.0.2.15/24");
        assert_eq!(json["source"], "dhcp");
        assert_eq!(json["router"], "10.0.2.2");
    }
}
