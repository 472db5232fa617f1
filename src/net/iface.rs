//! Network interfaces as the kernel shows them: names, MACs, drivers, link (carrier) and
//! operational state from `/sys/class/net/IFACE/`, IPv4 addresses from `ip -4 -o addr`
//! (busybox's and iproute2's one-line output), the default route from `/proc/net/route`.
//! The readers take their paths, so tests run them on fixtures.

use super::{Error, Result};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

/// `/sys/class/net/IFACE/type` of an Ethernet interface (ARPHRD_ETHER).
const ARPHRD_ETHER: u32 = 1;

/// An IPv4 address with its prefix length, written `10.0.2.15/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length, 0-32.
    pub prefix: u8,
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;

    /// `ADDR/PREFIX`; a bare address is a /32.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let address: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix = p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{p:?} is not a prefix length (0-32)"))?;
        Ok(Ipv4Cidr { address, prefix })
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interface {
    /// Kernel name (`eth0`, `enp3s0`, `lo`).
    pub name: String,
    /// Hardware address, lowercase `aa:bb:…`; `None` when it has none (or it is all zeros).
    pub mac: Option<String>,
    /// The driver bound to its device (`virtio_net`, `e1000e`, `r8152`), when it has one.
    pub driver: Option<String>,
    /// The loopback interface.
    pub loopback: bool,
    /// Whether a cable or link partner is there; `None` while the interface is down (the
    /// kernel only knows once it is up).
    pub carrier: Option<bool>,
    /// RFC 2863 state from sysfs: `up`, `down`, `dormant`, `unknown`, …
    pub operstate: String,
    /// Its IPv4 addresses, in the kernel's order.
    pub addresses: Vec<Ipv4Cidr>,
}

impl Interface {
    /// An Ethernet interface that DHCP at boot considers (not loopback, not a tunnel).
    pub fn is_ethernet(&self, sys_class_net: &Path) -> bool {
        !self.loopback
            && read_trimmed(&sys_class_net.join(&self.name).join("type"))
                .and_then(|t| t.parse::<u32>().ok())
                == Some(ARPHRD_ETHER)
    }
}

/// Every interface in `/sys/class/net`, sorted by name, with the IPv4 addresses `ip -4 -o
/// addr show` lists.
pub fn interfaces() -> Result<Vec<Interface>> {
    let text = super::ip_output(
        "interfaces",
        &["-4", "-o", "addr", "show"],
        "listing IPv4 addresses",
    )?;
    read_interfaces(Path::new("/sys/class/net"), &parse_ip_addr(&text))
}

/// The interfaces under `sys_class_net`, with `addresses` by interface name.
pub fn read_interfaces(
    sys_class_net: &Path,
    addresses: &HashMap<String, Vec<Ipv4Cidr>>,
) -> Result<Vec<Interface>> {
    let rd = std::fs::read_dir(sys_class_net).map_err(|source| Error::Io {
        op: "reading",
        path: sys_class_net.to_path_buf(),
        source,
    })?;
    let mut out: Vec<Interface> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|name| {
            let dir = sys_class_net.join(&name);
            let flags = read_trimmed(&dir.join("flags"))
                .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
                .unwrap_or(0);
            let loopback = flags & (libc::IFF_LOOPBACK as u32) != 0 || name == "lo";
            let mac = read_trimmed(&dir.join("address"))
                .filter(|m| !m.is_empty() && m.chars().any(|c| c != '0' && c != ':'));
            let driver = std::fs::read_link(dir.join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            // reading carrier fails (EINVAL) while the interface is down
            let carrier = read_trimmed(&dir.join("carrier")).and_then(|c| match c.as_str() {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            });
            let operstate =
                read_trimmed(&dir.join("operstate")).unwrap_or_else(|| "unknown".to_string());
            Interface {
                addresses: addresses.get(&name).cloned().unwrap_or_default(),
                name,
                mac,
                driver,
                loopback,
                carrier,
                operstate,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Parses `ip -4 -o addr show`: one line per address, `2: eth0    inet 10.0.2.15/24 brd …`.
/// Lines without `inet ADDR/PREFIX` are skipped; a label (`eth0:1`) counts for its interface.
pub fn parse_ip_addr(text: &str) -> HashMap<String, Vec<Ipv4Cidr>> {
    let mut out: HashMap<String, Vec<Ipv4Cidr>> = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(_index), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let mut words = words.skip_while(|w| *w != "inet");
        let (Some(_), Some(cidr)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(cidr) = cidr.parse::<Ipv4Cidr>() else {
            continue;
        };
        // "eth0@if3" (veth) and "eth0:1" (alias labels) both belong to eth0
        let name = name
            .trim_end_matches(':')
            .split(['@', ':'])
            .next()
            .unwrap_or(name);
        out.entry(name.to_string()).or_default().push(cidr);
    }
    out
}

/// A default route: where packets for the rest of the world go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    /// The interface it leaves through.
    pub interface: String,
    /// The gateway.
    pub gateway: Ipv4Addr,
}

/// The first usable IPv4 default route in `proc_net_route` (`/proc/net/route`): destination
/// and mask 0, up, via a gateway. `None` when there is none.
pub fn default_route(proc_net_route: &Path) -> Result<Option<Route>> {
    match std::fs::read_to_string(proc_net_route) {
        Ok(text) => Ok(parse_default_route(&text)),
        // no IPv4 in this kernel, or /proc not mounted: no route either way
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            op: "reading",
            path: proc_net_route.to_path_buf(),
            source,
        }),
    }
}

/// Parses `/proc/net/route`: a header line, then `Iface Destination Gateway Flags RefCnt Use
/// Metric Mask …` with addresses as 8 hex digits in the host's (little-endian) byte order.
/// The lowest metric wins.
pub fn parse_default_route(text: &str) -> Option<Route> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, gw, flags, metric, mask) = (
                f.first()?,
                hex(f.get(1)?)?,
                hex(f.get(2)?)?,
                hex(f.get(3)?)?,
                f.get(6)?.parse::<u32>().ok()?,
                hex(f.get(7)?)?,
            );
            let usable = dest == 0 && mask == 0 && flags & RTF_UP != 0 && flags & RTF_GATEWAY != 0;
            usable.then(|| {
                (
                    metric,
                    Route {
                        interface: (*iface).to_string(),
                        gateway: Ipv4Addr::from(gw.to_le_bytes()),
                    },
                )
            })
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, r)| r)
}

/// Sets an interface administratively up (`ip link set dev IFACE up`). Its carrier shows in
/// sysfs a moment later (a second or two on real NICs).
pub fn link_up(name: &str) -> Result<()> {
    super::ip(
        name,
        &["link", "set", "dev", name, "up"],
        "setting the link up",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addr_lines_of_busybox_and_iproute2() {
        let busybox = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
                       2: eth0    inet 10.0.2.15/24 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                       2: eth0    inet 192.168.7.2/16 scope global eth0:1\n";
        let m = parse_ip_addr(busybox);
        assert_eq!(m["lo"], vec!["127.0.0.1/8".parse().unwrap()]);
        assert_eq!(
            m["eth0"].iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            vec!["10.0.2.15/24", "192.168.7.2/16"]
        );
        let iproute2 = "3: veth0@if2    inet 172.17.0.2/16 brd 172.17.255.255 scope global veth0\n\
                        garbage\n4: x inet6 fe80::1/64\n5: y inet 300.1.1.1/24\n";
        let m = parse_ip_addr(iproute2);
        assert_eq!(m.len(), 1);
        assert_eq!(m["veth0"][0].prefix, 16);
    }

    #[test]
    fn cidrs_parse_and_print() {
        let c: Ipv4Cidr = "10.0.2.20/24".parse().unwrap();
        assert_eq!(c.address, Ipv4Addr::new(10, 0, 2, 20));
        assert_eq!(c.to_string(), "10.0.2.20/24");
        assert_eq!("1.2.3.4".parse::<Ipv4Cidr>().unwrap().prefix, 32);
        assert!("1.2.3.4/33".parse::<Ipv4Cidr>().is_err());
        assert!("1.2.3/8".parse::<Ipv4Cidr>().is_err());
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"10.0.2.20/24\"");
    }

    #[test]
    fn the_default_route_with_the_lowest_metric() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    eth1\t00000000\t0101A8C0\t0003\t0\t0\t20\t00000000\t0\t0\t0\n\
                    eth0\t00000000\t0202000A\t0003\t0\t0\t10\t00000000\t0\t0\t0\n\
                    eth2\t00000000\t0303000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_route(text),
            Some(Route {
                interface: "eth0".into(),
                gateway: Ipv4Addr::new(10, 0, 2, 2),
            })
        );
        let header_only = "Iface\tDestination\tGateway\n";
        assert_eq!(parse_default_route(header_only), None);
        assert_eq!(
            default_route(Path::new("/nonexistent/route")).unwrap(),
            None
        );
    }

    #[test]
    fn interfaces_from_a_sysfs_tree() {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("class/net");
        let write = |iface: &str, file: &str, text: &str| {
            let d = net.join(iface);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), text).unwrap();
        };
        write("lo", "flags", "0x9\n");
        write("lo", "address", "00:00:00:00:00:00\n");
        write("lo", "type", "772\n");
        write("lo", "operstate", "unknown\n");
        write("eth0", "flags", "0x1003\n");
        write("eth0", "address", "52:54:00:12:34:56\n");
        write("eth0", "type", "1\n");
        write("eth0", "carrier", "1\n");
        write("eth0", "operstate", "up\n");
        write("eth1", "flags", "0x1002\n");
        write("eth1", "type", "1\n");
        write("eth1", "address", "52:54:00:12:34:57\n");
        write("eth1", "operstate", "down\n");
        let drv = t.path().join("bus/pci/drivers/e1000e");
        std::fs::create_dir_all(&drv).unwrap();
        std::fs::create_dir_all(net.join("eth1/device")).unwrap();
        std::os::unix::fs::symlink(&drv, net.join("eth1/device/driver")).unwrap();

        let addrs = parse_ip_addr("2: eth0    inet 10.0.2.15/24 scope global eth0\n");
        let ifs = read_interfaces(&net, &addrs).unwrap();
        let names: Vec<&str> = ifs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1", "lo"]);
        let (eth0, eth1, lo) = (&ifs[0], &ifs[1], &ifs[2]);
        assert!(lo.loopback && lo.mac.is_none() && !lo.is_ethernet(&net));
        assert_eq!(eth0.mac.as_deref(), Some("52:54:00:12:34:56"));
        assert_eq!(eth0.carrier, Some(true));
        assert_eq!(eth0.addresses[0].to_string(), "10.0.2.15/24");
        assert!(eth0.is_ethernet(&net));
        assert_eq!(eth1.carrier, None);
        assert_eq!(eth1.operstate, "down");
        assert_eq!(eth1.driver.as_deref(), Some("e1000e"));
        assert!(eth1.addresses.is_empty());
        assert!(read_interfaces(&t.path().join("nope"), &addrs).is_err());
    }
}
