//! The machine: QEMU started headless on the served disk, its QMP socket (events,
//! screendumps, quit), and the small readers that follow its log files (serial console,
//! firmware debug console, the network capture).

use super::disk::Firmware;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The disk controller the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Bus {
    /// SATA through q35's AHCI controller: every OS has a driver (Windows has no virtio).
    Ahci,
    /// virtio-blk.
    Virtio,
    /// NVMe.
    Nvme,
}

use serde::Serialize;

/// How the guest's CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// KVM when `/dev/kvm` can be opened read-write (and `LIFEBOAT_QEMU_ACCEL` is not
    /// `tcg`), TCG otherwise.
    Auto,
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation: slower, works everywhere.
    Tcg,
}

impl Accel {
    /// `Auto` made concrete for this host.
    pub fn resolve(self) -> Accel {
        match self {
            Accel::Auto => {
                let env = std::env::var("LIFEBOAT_QEMU_ACCEL").unwrap_or_default();
                if env == "tcg" {
                    Accel::Tcg
                } else if env == "kvm"
                    || std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open("/dev/kvm")
                        .is_ok()
                {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                }
            }
            a => a,
        }
    }
}

/// Where OVMF's code and variable template live (Debian's `ovmf` package), 4M build first.
const OVMF: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
];

/// How to start the machine.
#[derive(Debug, Clone)]
pub struct MachineSpec {
    /// Firmware.
    pub firmware: Firmware,
    /// Disk controller.
    pub bus: Bus,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub cpus: u32,
    /// KVM or TCG (not `Auto`).
    pub accel: Accel,
    /// Isolated user-mode networking (and a capture to see DHCP).
    pub net: bool,
    /// The NBD socket serving the disk.
    pub nbd_socket: PathBuf,
    /// The NBD export name.
    pub export: String,
    /// Private folder for sockets, the variables copy and the capture (removed by the caller).
    pub work: PathBuf,
    /// Where the serial and firmware logs go (kept).
    pub serial_log: PathBuf,
    /// The firmware debug console's log (kept).
    pub firmware_log: PathBuf,
}

/// A running QEMU and its QMP connection.
pub struct Machine {
    child: Child,
    qmp: UnixStream,
    events: Receiver<Value>,
    replies: Receiver<Value>,
    stderr: PathBuf,
    next_id: u64,
    /// Whether KVM is in use (else TCG).
    pub kvm: bool,
    /// The network capture, when networking is on.
    pub pcap: Option<PathBuf>,
}

/// Checks that QEMU (and OVMF, when `uefi`) can be found, before anything else is done.
pub fn check_tools(uefi: bool) -> Result<()> {
    let bin = qemu_binary();
    let found = if bin.contains('/') {
        Path::new(&bin).exists()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&bin).exists()))
    };
    if !found {
        return Err(Error::Unsupported(format!(
            "boot-test needs {bin} (Debian package qemu-system-x86); the rescue system has no QEMU: run it on a Linux host"
        )));
    }
    if uefi
        && !OVMF
            .iter()
            .any(|(c, v)| Path::new(c).exists() && Path::new(v).exists())
    {
        return Err(Error::Unsupported(
            "UEFI boot needs OVMF (/usr/share/OVMF/OVMF_CODE_4M.fd; Debian package ovmf)".into(),
        ));
    }
    Ok(())
}

/// The QEMU binary: `$LIFEBOAT_QEMU` or `qemu-system-x86_64` on the PATH.
fn qemu_binary() -> String {
    std::env::var("LIFEBOAT_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// A path inside a QEMU option string, where a comma separates options: doubled.
fn opt_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

fn arg(v: &mut Vec<String>, a: &str, b: impl Into<String>) {
    v.push(a.into());
    v.push(b.into());
}

/// The command line for `spec` (without the binary); public for tests and `--dry-run`-like
/// display.
pub fn command_line(
    spec: &MachineSpec,
    qmp: &Path,
    pcap: Option<&Path>,
    vars: Option<(&Path, &Path)>,
) -> Vec<String> {
    let mut v = Vec::new();
    arg(&mut v, "-name", "lifeboat-boot-test");
    v.push("-nodefaults".into());
    v.push("-no-user-config".into());
    arg(&mut v, "-machine", "q35");
    arg(
        &mut v,
        "-accel",
        if spec.accel == Accel::Kvm {
            "kvm"
        } else {
            "tcg"
        },
    );
    arg(&mut v, "-m", spec.memory_mib.to_string());
    arg(&mut v, "-smp", spec.cpus.max(1).to_string());
    arg(&mut v, "-display", "none");
    arg(&mut v, "-vga", "std");
    arg(
        &mut v,
        "-serial",
        format!("file:{}", opt_path(&spec.serial_log)),
    );
    arg(
        &mut v,
        "-chardev",
        format!("file,id=fwlog,path={}", opt_path(&spec.firmware_log)),
    );
    arg(&mut v, "-device", "isa-debugcon,iobase=0x402,chardev=fwlog");
    arg(&mut v, "-device", "pvpanic");
    arg(
        &mut v,
        "-qmp",
        format!("unix:{},server=on,wait=off", opt_path(qmp)),
    );
    arg(
        &mut v,
        "-blockdev",
        format!(
            "driver=nbd,node-name=disk0,server.type=unix,server.path={},export={}",
            opt_path(&spec.nbd_socket),
            spec.export
        ),
    );
    arg(
        &mut v,
        "-device",
        match spec.bus {
            Bus::Ahci => "ide-hd,drive=disk0,bus=ide.0,bootindex=1",
            Bus::Virtio => "virtio-blk-pci,drive=disk0,bootindex=1",
            Bus::Nvme => "nvme,drive=disk0,serial=lifeboat0,bootindex=1",
        },
    );
    if let (Some(pcap), true) = (pcap, spec.net) {
        // isolated: the guest gets an address and DHCP, but reaches neither the host nor
        // the outside
        arg(&mut v, "-netdev", "user,id=net0,restrict=on");
        arg(&mut v, "-device", "e1000,netdev=net0");
        arg(
            &mut v,
            "-object",
            format!("filter-dump,id=dump0,netdev=net0,file={}", opt_path(pcap)),
        );
    }
    if let Some((code, vars)) = vars {
        arg(
            &mut v,
            "-drive",
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                opt_path(code)
            ),
        );
        arg(
            &mut v,
            "-drive",
            format!("if=pflash,format=raw,unit=1,file={}", opt_path(vars)),
        );
    }
    v
}

/// OVMF's code file and a fresh copy of its variables in `work`.
fn ovmf(work: &Path) -> Result<(PathBuf, PathBuf)> {
    for (code, vars) in OVMF {
        if Path::new(code).exists() && Path::new(vars).exists() {
            let copy = work.join("OVMF_VARS.fd");
            std::fs::copy(vars, &copy).map_err(|e| Error::io("copying", vars, e))?;
            return Ok((PathBuf::from(code), copy));
        }
    }
    Err(Error::Unsupported(
        "UEFI boot needs OVMF (/usr/share/OVMF/OVMF_CODE_4M.fd; Debian package ovmf)".into(),
    ))
}

impl Machine {
    /// Starts QEMU for `spec` and connects to its QMP socket.
    pub fn start(spec: &MachineSpec) -> Result<Machine> {
        let qmp_path = spec.work.join("qmp.sock");
        let pcap = spec.net.then(|| spec.work.join("net.pcap"));
        let fw = match spec.firmware {
            Firmware::Uefi => Some(ovmf(&spec.work)?),
            Firmware::Bios => None,
        };
        let args = command_line(
            spec,
            &qmp_path,
            pcap.as_deref(),
            fw.as_ref().map(|(c, v)| (c.as_path(), v.as_path())),
        );
        let stderr = spec.work.join("qemu.stderr");
        let err = std::fs::File::create(&stderr).map_err(|e| Error::io("creating", &stderr, e))?;
        let bin = qemu_binary();
        // its own process group: a Ctrl-C at the terminal reaches boot-test, which stops
        // the machine itself, and not QEMU, whose death would look like a crash
        let mut cmd = Command::new(&bin);
        cmd.process_group(0)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        // killed with us: a boot-test that dies (SIGKILL, a hangup, a crash) leaves no
        // machine running
        let mut child = crate::init::sys::spawn_dying_with_parent(&mut cmd)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::Unsupported(format!(
                        "boot-test needs {bin} (Debian package qemu-system-x86); the rescue system has no QEMU: run it on a Linux host"
                    ))
                } else {
                    Error::io("starting", &bin, e)
                }
            })?;
        // the QMP socket appears once QEMU has set the machine up
        let deadline = Instant::now() + Duration::from_secs(30);
        let qmp = loop {
            if let Ok(Some(st)) = child.try_wait() {
                let text = std::fs::read_to_string(&stderr).unwrap_or_default();
                return Err(Error::Unsupported(format!(
                    "QEMU stopped at once ({st}): {}",
                    text.trim()
                )));
            }
            if let Ok(s) = UnixStream::connect(&qmp_path) {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Unsupported(
                    "QEMU did not open its QMP socket within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (etx, events) = channel();
        let (rtx, replies) = channel();
        let reader = qmp
            .try_clone()
            .map_err(|e| Error::io("reading", &qmp_path, e))?;
        std::thread::Builder::new()
            .name("lifeboat-qmp".into())
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    let Ok(line) = line else { break };
                    let Ok(v) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let sent = if v.get("event").is_some() {
                        etx.send(v)
                    } else if v.get("QMP").is_some() {
                        Ok(())
                    } else {
                        rtx.send(v)
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("starting a thread for", &qmp_path, e))?;
        let mut m = Machine {
            child,
            qmp,
            events,
            replies,
            stderr,
            next_id: 0,
            kvm: false,
            pcap,
        };
        m.command("qmp_capabilities", json!({}))?;
        m.kvm = m
            .command("query-kvm", json!({}))
            .ok()
            .and_then(|v| v.get("enabled").and_then(Value::as_bool))
            .unwrap_or(false);
        Ok(m)
    }

    /// Runs one QMP command and returns its `return` value.
    pub fn command(&mut self, name: &str, args: Value) -> Result<Value> {
        // each command carries its own id: a late answer to an earlier command that timed
        // out is never taken for this one's (a screendump that said done before its file was
        // written would show a still screen that is not)
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"execute": name, "arguments": args, "id": id});
        let mut line = msg.to_string();
        line.push('\n');
        self.qmp
            .write_all(line.as_bytes())
            .map_err(|e| Error::io("talking to QEMU about", name, e))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let reply = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(v) if v.get("id").and_then(Value::as_u64) == Some(id) => break Ok(v),
                Ok(_) => continue,
                Err(e) => break Err(e),
            }
        };
        match reply {
            Ok(v) => match v.get("return") {
                Some(r) => Ok(r.clone()),
                None => Err(Error::Unsupported(format!(
                    "QEMU refused {name}: {}",
                    v.get("error")
                        .and_then(|e| e.get("desc"))
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                ))),
            },
            Err(RecvTimeoutError::Timeout) => Err(Error::Unsupported(format!(
                "QEMU did not answer {name} within 30 s"
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(Error::Unsupported(format!(
                "QEMU closed its QMP socket during {name}"
            ))),
        }
    }

    /// The QMP events received since the last call.
    pub fn events(&self) -> Vec<Value> {
        self.events.try_iter().collect()
    }

    /// A PNG of the screen now, written to `to`.
    pub fn screendump(&mut self, to: &Path) -> Result<()> {
        self.command(
            "screendump",
            json!({"filename": to.display().to_string(), "format": "png"}),
        )
        .map(|_| ())
    }

    /// Whether QEMU has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// What QEMU printed on stderr.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Stops the machine: `quit` over QMP, then SIGKILL when it lingers; waits for it.
    pub fn stop(mut self) {
        if !self.exited() {
            let _ = self.command("quit", json!({}));
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // a machine dropped without stop() (an error, a panic) must not outlive us
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Follows a file that another process appends to: each call returns what was added.
#[derive(Debug)]
pub struct Follow {
    path: PathBuf,
    pos: u64,
}

impl Follow {
    /// Follows `path` from its start (it may not exist yet).
    pub fn new(path: &Path) -> Follow {
        Follow {
            path: path.to_path_buf(),
            pos: 0,
        }
    }

    /// The bytes appended since the last call (at most 1 MiB at a time).
    pub fn read_new(&mut self) -> Vec<u8> {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        let n = f.take(1 << 20).read_to_end(&mut buf).unwrap_or(0);
        self.pos += n as u64;
        buf
    }
}

/// Counts DHCP requests (UDP to port 67) in a pcap capture read so far, carrying partial
/// records between calls.
#[derive(Debug, Default)]
pub struct DhcpWatch {
    buf: Vec<u8>,
    header_done: bool,
}

impl DhcpWatch {
    /// Feeds new capture bytes; returns how many DHCP requests were among the packets.
    pub fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.buf.extend_from_slice(bytes);
        let mut seen = 0;
        if !self.header_done {
            if self.buf.len() < 24 {
                return 0;
            }
            self.buf.drain(..24);
            self.header_done = true;
        }
        loop {
            if self.buf.len() < 16 {
                break;
            }
            let incl =
                u32::from_le_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]) as usize;
            if incl > 1 << 18 {
                // not a capture we understand: stop looking
                self.buf.clear();
                break;
            }
            if self.buf.len() < 16 + incl {
                break;
            }
            seen += u64::from(is_dhcp_request(&self.buf[16..16 + incl]));
            self.buf.drain(..16 + incl);
        }
        seen
    }
}

/// An Ethernet frame carrying IPv4 UDP to port 67.
fn is_dhcp_request(f: &[u8]) -> bool {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] {
        return false;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[9] != 17 || ihl < 20 || ip.len() < ihl + 8 {
        return false;
    }
    let udp = &ip[ihl..];
    u16::from_be_bytes([udp[2], udp[3]]) == 67
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(proto: u8, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 9] = proto;
        f[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&dport.to_be_bytes());
        f
    }

    fn record(f: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 16];
        r[8..12].copy_from_slice(&(f.len() as u32).to_le_bytes());
        r[12..16].copy_from_slice(&(f.len() as u32).to_le_bytes());
        r.extend_from_slice(f);
        r
    }

    #[test]
    fn a_dhcp_request_is_found_across_partial_reads_and_other_packets_are_not() {
        let mut cap = vec![0u8; 24];
        cap.extend(record(&frame(6, 67)));
        cap.extend(record(&frame(17, 53)));
        let mut w = DhcpWatch::default();
        assert_eq!(w.feed(&cap), 0);
        let req = record(&frame(17, 67));
        assert_eq!(w.feed(&req[..10]), 0);
        assert_eq!(w.feed(&req[10..]), 1);
        // a hostile length stops the watch without a huge allocation
        let mut bad = vec![0u8; 16];
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(w.feed(&bad), 0);
    }

    #[test]
    fn the_command_line_serves_the_disk_on_the_chosen_bus_with_no_network_by_default() {
        let spec = MachineSpec {
            firmware: Firmware::Bios,
            bus: Bus::Ahci,
            memory_mib: 512,
            cpus: 2,
            accel: Accel::Tcg,
            net: false,
            nbd_socket: "/w/nbd.sock".into(),
            export: "boot".into(),
            work: "/w".into(),
            serial_log: "/o/serial.log".into(),
            firmware_log: "/o/firmware.log".into(),
        };
        let l = command_line(&spec, Path::new("/w/qmp.sock"), None, None).join(" ");
        assert!(l.contains("server.path=/w/nbd.sock,export=boot"), "{l}");
        assert!(l.contains("ide-hd,drive=disk0,bus=ide.0"), "{l}");
        assert!(l.contains("-nodefaults"), "{l}");
        assert!(!l.contains("netdev"), "{l}");
        assert!(!l.contains("pflash"), "{l}");
        let spec = MachineSpec {
            bus: Bus::Nvme,
            net: true,
            ..spec
        };
        let l = command_line(
            &spec,
            Path::new("/w/qmp.sock"),
            Some(Path::new("/w/net.pcap")),
            Some((Path::new("/c.fd"), Path::new("/w/v.fd"))),
        )
        .join(" ");
        assert!(l.contains("nvme,drive=disk0"), "{l}");
        assert!(l.contains("user,id=net0,restrict=on"), "{l}");
        assert!(
            l.contains("if=pflash,format=raw,unit=1,file=/w/v.fd"),
            "{l}"
        );
    }
}
