//! Network: the network interfaces of this computer (name, MAC, driver, link, IPv4
//! addresses) with what the lease record (`/run/lifeboat/net/IFACE.json`) says about the
//! highlighted one (gateway, DNS, lease), and in the rescue system a key that asks a DHCP
//! server again for the highlighted interface.
//!
//! The state is [`Model::net`]; the listing and DHCP run on the executor's threads and come
//! back as [`Msg::Network`](crate::tui::app::Msg::Network) and
//! [`Msg::Dhcp`](crate::tui::app::Msg::Dhcp), so tests feed made-up interfaces through
//! [`loaded`]. DHCP is bounded by [`DHCP_TIMEOUT`] and never blocks the keys: the screen
//! says it runs, and shows its result when it ends.

use super::step_cursor;
use crate::net::{Interface, NetConfig};
use crate::tui::app::{Cmd, Model, Screen};
use crate::tui::widgets::{bold, boxed, dim, highlight, Keys};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use std::time::Duration;

/// How long one DHCP attempt from this screen may take.
pub const DHCP_TIMEOUT: Duration = Duration::from_secs(15);

/// What the network screen shows.
#[derive(Debug, Clone, Default)]
pub struct NetView {
    /// The interfaces, as the last listing found them (loopback included; it is not shown).
    pub interfaces: Vec<Interface>,
    /// The recorded configurations (DHCP leases and static addresses), one per interface.
    pub leases: Vec<NetConfig>,
    /// A listing was asked for and has not come back yet.
    pub refreshing: bool,
    /// The last listing failed: the cause chain on one line.
    pub error: Option<String>,
    /// Highlighted row of [`shown`].
    pub cursor: usize,
    /// DHCP: running on an interface, or how the last attempt ended.
    pub dhcp: Dhcp,
}

/// DHCP from this screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Dhcp {
    /// Not asked for.
    #[default]
    Idle,
    /// Running on this interface.
    Running(String),
    /// Ended on this interface: the lease, or the cause chain on one line.
    Done(String, Result<NetConfig, String>),
}

/// The title.
pub(crate) const TITLE: &str = "network";
/// The status line.
pub(crate) const STATUS: &str = "Nothing is written to any disk from this screen.";
/// The help.
pub(crate) const HELP: [&str; 7] = [
    "Every network interface: its MAC address, driver, whether a cable",
    "(link) is there, its IPv4 addresses, and for the highlighted one the",
    "gateway and DNS servers of its DHCP lease or static address.",
    "",
    "d asks a DHCP server again for the highlighted interface (up to 15 s;",
    "rescue system only). F5 reads everything again. Network stores",
    "(SMB, NFS, SFTP) are chosen on the storage screen (s, then n).",
];

/// The footer.
pub(crate) fn footer(model: &Model) -> Keys {
    let mut k = vec![("Up/Down", "select")];
    if model.rescue {
        k.push(("d", "DHCP again"));
    }
    k.push(("F5", "refresh"));
    k.push(("Esc", "back"));
    k
}

/// The interfaces the screen lists: all but loopback, in name order.
pub fn shown(v: &NetView) -> Vec<&Interface> {
    v.interfaces.iter().filter(|i| !i.loopback).collect()
}

/// Opens the screen and asks for a fresh listing.
pub(crate) fn open(model: &mut Model) -> Option<Cmd> {
    model.screen = Screen::Network;
    refresh(model)
}

fn refresh(model: &mut Model) -> Option<Cmd> {
    if model.net.refreshing {
        return None;
    }
    model.net.refreshing = true;
    Some(Cmd::NetRefresh)
}

/// A listing came back: the interfaces and the recorded configurations, or why not. The
/// highlight stays on the same interface.
pub fn loaded(model: &mut Model, r: Result<(Vec<Interface>, Vec<NetConfig>), String>) {
    let v = &mut model.net;
    v.refreshing = false;
    match r {
        Ok((interfaces, leases)) => {
            let was = shown(v).get(v.cursor).map(|i| i.name.clone());
            v.interfaces = interfaces;
            v.leases = leases;
            v.error = None;
            let now = shown(v);
            v.cursor = was
                .and_then(|n| now.iter().position(|i| i.name == n))
                .unwrap_or(0)
                .min(now.len().saturating_sub(1));
        }
        Err(e) => v.error = Some(e),
    }
}

/// DHCP on `iface` ended.
pub fn dhcp_done(model: &mut Model, iface: String, r: Result<NetConfig, String>) {
    model.net.dhcp = Dhcp::Done(iface, r);
}

/// A key on Network.
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    let n = shown(&model.net).len();
    if step_cursor(&mut model.net.cursor, n, k.code) {
        return None;
    }
    match k.code {
        KeyCode::Esc | KeyCode::Char('q') => {
            model.screen = Screen::Home;
            None
        }
        KeyCode::F(5) | KeyCode::Char('R') => refresh(model),
        KeyCode::Char('d') if model.rescue => {
            if matches!(model.net.dhcp, Dhcp::Running(_)) {
                return None; // one at a time
            }
            let name = shown(&model.net).get(model.net.cursor)?.name.clone();
            model.net.dhcp = Dhcp::Running(name.clone());
            Some(Cmd::Dhcp(name))
        }
        _ => None,
    }
}

fn link(i: &Interface) -> String {
    match i.carrier {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => format!("- ({})", i.operstate),
    }
}

fn addresses(i: &Interface) -> String {
    if i.addresses.is_empty() {
        return "-".into();
    }
    let v: Vec<String> = i.addresses.iter().map(|a| a.to_string()).collect();
    v.join(", ")
}

/// Draws Network.
pub(crate) fn draw(model: &Model, f: &mut Frame, area: Rect) {
    let v = &model.net;
    let rows = shown(v);
    let h = (rows.len().max(1) as u16 + 3).min(area.height.saturating_sub(8).max(4));
    let current = rows.get(v.cursor).copied();
    let lease_lines = lease_lines(v, current, model.rescue);
    let [list, lease, status] = Layout::vertical([
        Constraint::Length(h),
        Constraint::Length(lease_lines.len() as u16 + 2),
        Constraint::Min(2),
    ])
    .areas(area);
    if rows.is_empty() {
        let text = if v.refreshing {
            "Looking for network interfaces..."
        } else {
            "No network interface found: this computer's network card may have no driver here. F5 looks again."
        };
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: true })
                .block(boxed("Network interfaces")),
            list,
        );
    } else {
        let body = rows.iter().enumerate().map(|(n, i)| {
            Row::new(vec![
                Cell::from(if n == v.cursor { ">" } else { " " }),
                Cell::from(i.name.clone()),
                Cell::from(i.mac.clone().unwrap_or_else(|| "-".into())),
                Cell::from(i.driver.clone().unwrap_or_else(|| "-".into())),
                Cell::from(link(i)),
                Cell::from(addresses(i)),
            ])
            .style(if n == v.cursor {
                highlight()
            } else {
                Style::default()
            })
        });
        f.render_widget(
            Table::new(
                body,
                [
                    Constraint::Length(1),
                    Constraint::Length(10),
                    Constraint::Length(17),
                    Constraint::Length(11),
                    Constraint::Length(9),
                    Constraint::Fill(1),
                ],
            )
            .header(Row::new(vec!["", "interface", "MAC", "driver", "link", "IPv4"]).style(bold()))
            .block(boxed("Network interfaces")),
            list,
        );
    }
    let title = current.map_or("Configuration".to_string(), |i| {
        format!("{}: configuration", i.name)
    });
    f.render_widget(
        Paragraph::new(lease_lines)
            .wrap(Wrap { trim: false })
            .block(boxed(&title)),
        lease,
    );
    draw_status(model, f, status);
}

/// What the record says about `i`: address, gateway, DNS, domain, lease.
fn lease_lines(v: &NetView, i: Option<&Interface>, rescue: bool) -> Vec<Line<'static>> {
    let Some(i) = i else {
        return vec![];
    };
    match v.leases.iter().find(|c| c.interface == i.name) {
        None => {
            let mut l = vec![Line::raw(format!(
                " No DHCP lease or static address is recorded for {}.",
                i.name
            ))];
            let hint = match (i.carrier, rescue) {
                (Some(false), _) => {
                    " Without a cable (link: no) DHCP cannot work; plug one in, then d."
                }
                (_, true) => " d asks a DHCP server for an address.",
                (_, false) => "",
            };
            if !hint.is_empty() {
                l.push(Line::styled(hint, dim()));
            }
            l
        }
        Some(c) => {
            let mut l = vec![
                Line::raw(format!(
                    " {:<9} {} ({})",
                    "address",
                    c.address,
                    match c.source {
                        crate::net::Source::Dhcp => "DHCP lease",
                        crate::net::Source::Static => "static",
                    }
                )),
                Line::raw(format!(
                    " {:<9} {}",
                    "gateway",
                    c.router.map_or("none".to_string(), |r| r.to_string())
                )),
                Line::raw(format!(
                    " {:<9} {}",
                    "DNS",
                    if c.dns.is_empty() {
                        "none".to_string()
                    } else {
                        c.dns
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                )),
            ];
            if let Some(d) = &c.domain {
                l.push(Line::raw(format!(" {:<9} {d}", "domain")));
            }
            if let Some(s) = c.lease_secs {
                l.push(Line::raw(format!(
                    " {:<9} {} s{}",
                    "lease",
                    s,
                    c.server
                        .map(|s| format!(", from the DHCP server {s}"))
                        .unwrap_or_default()
                )));
            }
            l
        }
    }
}

fn draw_status(model: &Model, f: &mut Frame, area: Rect) {
    let v = &model.net;
    let mut lines = Vec::new();
    if let Some(e) = &v.error {
        lines.push(Line::styled(
            format!(" Listing the interfaces failed: {e}"),
            Style::default().fg(Color::Red),
        ));
    }
    match &v.dhcp {
        Dhcp::Idle if !model.rescue => lines.push(Line::styled(
            " DHCP is offered in the rescue system only: this computer's network is its own.",
            dim(),
        )),
        Dhcp::Idle => {}
        Dhcp::Running(i) => lines.push(Line::styled(
            format!(
                " Asking for a DHCP lease on {i} (up to {} s)...",
                DHCP_TIMEOUT.as_secs()
            ),
            Style::default().fg(Color::Cyan),
        )),
        Dhcp::Done(i, Ok(c)) => lines.push(Line::styled(
            format!(
                " DHCP on {i}: {}{}",
                c.address,
                c.router
                    .map(|r| format!(", gateway {r}"))
                    .unwrap_or_default()
            ),
            Style::default().fg(Color::Green),
        )),
        Dhcp::Done(i, Err(e)) => lines.push(Line::styled(
            format!(" DHCP on {i} failed: {e}"),
            Style::default().fg(Color::Red),
        )),
    }
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}

/// Made-up interfaces and leases for the tests (never `/sys`).
#[cfg(test)]
pub(crate) mod fixture {
    use crate::net::{Interface, NetConfig, Source};

    fn iface(name: &str, mac: &str, driver: &str, carrier: Option<bool>, a: &[&str]) -> Interface {
        Interface {
            name: name.into(),
            mac: (!mac.is_empty()).then(|| mac.into()),
            driver: (!driver.is_empty()).then(|| driver.into()),
            loopback: name == "lo",
            carrier,
            operstate: if carrier.is_some() { "up" } else { "down" }.into(),
            addresses: a.iter().map(|a| a.parse().expect("a cidr")).collect(),
        }
    }

    /// lo, eth0 with a DHCP lease, eth1 without a cable, usb0 down.
    pub(crate) fn interfaces() -> Vec<Interface> {
        vec![
            iface(
                "eth0",
                "52:54:00:12:34:56",
                "virtio_net",
                Some(true),
                &["10.0.2.15/24"],
            ),
            iface("eth1", "52:54:00:ab:cd:ef", "e1000e", Some(false), &[]),
            iface("lo", "", "", None, &["127.0.0.1/8"]),
            iface("usb0", "02:1a:11:f0:aa:01", "r8152", None, &[]),
        ]
    }

    /// eth0's DHCP lease.
    pub(crate) fn lease() -> NetConfig {
        NetConfig {
            interface: "eth0".into(),
            source: Source::Dhcp,
            address: "10.0.2.15/24".parse().expect("a cidr"),
            router: Some([10, 0, 2, 2].into()),
            dns: vec![[10, 0, 2, 3].into(), [1, 1, 1, 1].into()],
            domain: Some("lab.example".into()),
            lease_secs: Some(86_400),
            server: Some([10, 0, 2, 2].into()),
            applied_unix: 1_795_339_800,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::{update, Msg};
    use crossterm::event::KeyModifiers;

    fn press(m: &mut Model, code: KeyCode) -> Option<Cmd> {
        update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn listed(rescue: bool) -> Model {
        let mut m = Model {
            rescue,
            ..Model::default()
        };
        let cmd = press(&mut m, KeyCode::Char('n'));
        assert!(matches!(cmd, Some(Cmd::NetRefresh)), "{cmd:?}");
        assert!(matches!(m.screen, Screen::Network));
        // a second F5 while the listing runs asks for nothing more
        assert!(press(&mut m, KeyCode::F(5)).is_none());
        update(
            &mut m,
            Msg::Network(Ok((fixture::interfaces(), vec![fixture::lease()]))),
        );
        m
    }

    #[test]
    fn loopback_is_not_listed_and_the_highlight_follows_its_interface() {
        let mut m = listed(true);
        let names: Vec<&str> = shown(&m.net).iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1", "usb0"]);
        press(&mut m, KeyCode::Down);
        press(&mut m, KeyCode::Down);
        assert_eq!(m.net.cursor, 2);
        // eth1 went away: the highlight stays on usb0
        assert!(matches!(
            press(&mut m, KeyCode::F(5)),
            Some(Cmd::NetRefresh)
        ));
        let mut fewer = fixture::interfaces();
        fewer.retain(|i| i.name != "eth1");
        update(&mut m, Msg::Network(Ok((fewer, vec![]))));
        assert_eq!(shown(&m.net)[m.net.cursor].name, "usb0");
        // a failed listing keeps what was there and says why
        press(&mut m, KeyCode::F(5));
        update(
            &mut m,
            Msg::Network(Err("listing IPv4 addresses failed".into())),
        );
        assert_eq!(shown(&m.net).len(), 2);
        assert!(m.net.error.is_some() && !m.net.refreshing);
    }

    #[test]
    fn dhcp_runs_on_the_highlighted_interface_one_at_a_time() {
        let mut m = listed(true);
        press(&mut m, KeyCode::Down);
        let cmd = press(&mut m, KeyCode::Char('d'));
        assert!(matches!(&cmd, Some(Cmd::Dhcp(i)) if i == "eth1"), "{cmd:?}");
        assert_eq!(m.net.dhcp, Dhcp::Running("eth1".into()));
        // the keys still work while it runs, but a second DHCP waits for the first
        press(&mut m, KeyCode::Up);
        assert!(press(&mut m, KeyCode::Char('d')).is_none());
        update(
            &mut m,
            Msg::Dhcp(
                "eth1".into(),
                Err("eth1: no DHCP lease after 15 s (no answer)".into()),
            ),
        );
        assert!(matches!(&m.net.dhcp, Dhcp::Done(i, Err(_)) if i == "eth1"));
        let cmd = press(&mut m, KeyCode::Char('d'));
        assert!(matches!(&cmd, Some(Cmd::Dhcp(i)) if i == "eth0"), "{cmd:?}");
        update(&mut m, Msg::Dhcp("eth0".into(), Ok(fixture::lease())));
        assert!(matches!(&m.net.dhcp, Dhcp::Done(_, Ok(c)) if c.interface == "eth0"));
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert!(matches!(m.screen, Screen::Home));
    }

    #[test]
    fn a_host_is_not_offered_dhcp() {
        let mut m = listed(false);
        assert!(press(&mut m, KeyCode::Char('d')).is_none());
        assert_eq!(m.net.dhcp, Dhcp::Idle);
        assert!(!footer(&m).iter().any(|(k, _)| *k == "d"));
    }
}
