//! An NBD server over any [`BlockDev`]: an [`ImageSource`](super::ImageSource) read-only, or
//! an [`Overlay`](super::Overlay) over it to take writes. qemu, qemu-img, qemu-io and the
//! kernel's `nbd-client` speak to it.
//!
//! The protocol (the NBD project's `proto.md`), as much of it as this server speaks:
//! - **Handshake**: fixed newstyle only. The server sends `NBDMAGIC`, `IHAVEOPT` and its flags
//!   (`FIXED_NEWSTYLE | NO_ZEROES`); the client answers with its flags (unknown ones close the
//!   connection). Options: `EXPORT_NAME`, `GO` and `INFO` (replying `NBD_INFO_EXPORT`, and
//!   `NBD_INFO_BLOCK_SIZE` when asked; other information requests are ignored, as the
//!   protocol allows), `LIST` and `ABORT`. Every other option (`STARTTLS`,
//!   `STRUCTURED_REPLY`, meta contexts) gets `NBD_REP_ERR_UNSUP`, so clients fall back to
//!   simple replies. The one export is named `""` or [`ServeOptions::name`]; another name
//!   gets `NBD_REP_ERR_UNKNOWN` (with `EXPORT_NAME`, which has no error reply, the
//!   connection is closed).
//! - **Transmission**: `READ`, `WRITE`, `FLUSH`, `TRIM` (accepted and ignored: trimming is
//!   advisory), `WRITE_ZEROES` and `DISC`, with simple replies, one request at a time per
//!   connection. Flags: `HAS_FLAGS`, `SEND_FLUSH`, `SEND_WRITE_ZEROES`, `CAN_MULTI_CONN` (every
//!   connection shares one device, so a flush on one covers the writes of all), and
//!   `READ_ONLY` unless the export is writable.
//! - **Errors**: a damaged chunk or a read error is `EIO`, a write to a read-only export
//!   `EPERM`, a full overlay `ENOSPC` (so is a write past the end, as the protocol asks), any
//!   other request outside the device or longer than [`MAX_REQUEST`] `EINVAL`, an unknown
//!   command `EINVAL`. A write whose payload is longer than [`MAX_REQUEST`] closes the
//!   connection (its bytes cannot be trusted to be a payload).
//!
//! [`Server::bind`] listens on a unix socket or a TCP address; [`Server::serve`] gives each
//! client its own thread until the [`CancelToken`] is cancelled, then shuts every connection
//! down and joins every thread. Dropping the server removes its unix socket. Log lines
//! (connections, failed requests) go to a [`LogSink`]; nothing here prints.

use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::event::CancelToken;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest read or write payload served (32 MiB, the protocol's usual maximum).
pub const MAX_REQUEST: u32 = 32 << 20;

/// Where log lines go: the CLI's stderr, a test's vector.
pub type LogSink = Arc<dyn Fn(&str) + Send + Sync>;

// handshake
const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CLIENT_FLAGS_KNOWN: u32 = 3;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) + 1;
const REP_ERR_INVALID: u32 = (1 << 31) + 3;
const REP_ERR_UNKNOWN: u32 = (1 << 31) + 6;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

/// The longest option payload read (an export name is at most 4096 bytes).
const MAX_OPTION: u32 = 64 << 10;

// transmission
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const TF_HAS_FLAGS: u16 = 1;
const TF_READ_ONLY: u16 = 1 << 1;
const TF_SEND_FLUSH: u16 = 1 << 2;
const TF_SEND_WRITE_ZEROES: u16 = 1 << 6;
const TF_CAN_MULTI_CONN: u16 = 1 << 8;

const CMD_FLAG_FUA: u16 = 1;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;

/// NBD error numbers (the protocol's own, equal to Linux's).
const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;

/// How often blocked loops look at the cancel token.
const POLL: Duration = Duration::from_millis(50);

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket at this path (created; refused when something other than a stale
    /// socket is there).
    Unix(PathBuf),
    /// A TCP address, `ADDR:PORT` (`[::1]:10809` for IPv6; port 0 picks a free one).
    Tcp(String),
}

impl std::str::FromStr for Listen {
    type Err = String;

    /// `unix:PATH` or `tcp:ADDR:PORT`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a socket path, as in unix:/tmp/pc.sock".into());
            }
            Ok(Listen::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            match a.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(Listen::Tcp(a.to_string()))
                }
                _ => Err(format!(
                    "{s}: tcp: needs ADDR:PORT, as in tcp:127.0.0.1:10809"
                )),
            }
        } else {
            Err(format!(
                "{s}: give unix:PATH (as in unix:/tmp/pc.sock) or tcp:ADDR:PORT (as in tcp:127.0.0.1:10809)"
            ))
        }
    }
}

/// What is served and how.
#[derive(Clone)]
pub struct ServeOptions {
    /// The export's name (besides `""`, which every client may use).
    pub name: String,
    /// Whether writes are taken (the device must take them: an overlay).
    pub writable: bool,
    /// Where log lines go (none: dropped).
    pub log: Option<LogSink>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("name", &self.name)
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

impl ServeOptions {
    fn log(&self, msg: &str) {
        if let Some(l) = &self.log {
            l(msg);
        }
    }
}

/// What a server did, when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Connections accepted.
    pub clients: u64,
    /// Bytes read by clients.
    pub read_bytes: u64,
    /// Bytes written by clients.
    pub written_bytes: u64,
    /// Requests that failed (answered with an error).
    pub failed_requests: u64,
}

enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// One client connection.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(Shutdown::Both),
            Conn::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}

/// A listening NBD server; see the module doc.
pub struct Server {
    listener: Listener,
    /// The unix socket to remove when dropped.
    socket: Option<PathBuf>,
    local: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Removes a unix socket at `path` that nobody listens on any more (a server that was
/// killed); refuses anything else.
fn clear_stale_socket(path: &Path) -> Result<()> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("looking at", path, e)),
    };
    let refuse = |reason: &str| Error::Refused {
        path: path.to_path_buf(),
        reason: reason.into(),
    };
    if !md.file_type().is_socket() {
        return Err(refuse("it exists and is not a socket"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(refuse("another server is listening on it")),
        Err(_) => {
            std::fs::remove_file(path).map_err(|e| Error::io("removing the stale socket", path, e))
        }
    }
}

impl Server {
    /// Listens on `addr`. A unix socket is created (a stale one, whose server is gone, is
    /// replaced); TCP port 0 picks a free port, which [`Server::address`] shows.
    pub fn bind(addr: &Listen) -> Result<Server> {
        match addr {
            Listen::Unix(path) => {
                clear_stale_socket(path)?;
                let l = UnixListener::bind(path).map_err(|e| Error::io("listening on", path, e))?;
                l.set_nonblocking(true)
                    .map_err(|e| Error::io("listening on", path, e))?;
                Ok(Server {
                    listener: Listener::Unix(l),
                    socket: Some(path.clone()),
                    local: format!("unix:{}", path.display()),
                })
            }
            Listen::Tcp(a) => {
                let addrs: Vec<SocketAddr> = a
                    .to_socket_addrs()
                    .map_err(|e| Error::io("resolving", a, e))?
                    .collect();
                let l =
                    TcpListener::bind(&addrs[..]).map_err(|e| Error::io("listening on", a, e))?;
                l.set_nonblocking(true)
                    .map_err(|e| Error::io("listening on", a, e))?;
                let local = l
                    .local_addr()
                    .map_err(|e| Error::io("listening on", a, e))?;
                Ok(Server {
                    listener: Listener::Tcp(l),
                    socket: None,
                    local: format!("tcp:{local}"),
                })
            }
        }
    }

    /// Where it listens: `unix:PATH` or `tcp:ADDR:PORT` (with the port chosen).
    pub fn address(&self) -> &str {
        &self.local
    }

    /// The NBD URI of export `name` for qemu and qemu-img: `nbd+unix:///NAME?socket=PATH` or
    /// `nbd://ADDR:PORT/NAME`.
    pub fn uri(&self, name: &str) -> String {
        match (&self.listener, &self.socket) {
            (Listener::Unix(_), Some(p)) => format!("nbd+unix:///{name}?socket={}", p.display()),
            _ => format!(
                "nbd://{}/{name}",
                self.local.strip_prefix("tcp:").unwrap_or(&self.local)
            ),
        }
    }

    fn accept(&self) -> io::Result<Option<(Conn, String)>> {
        let r = match &self.listener {
            Listener::Unix(l) => l
                .accept()
                .map(|(s, _)| (Conn::Unix(s), "unix socket".into())),
            Listener::Tcp(l) => l.accept().map(|(s, a)| {
                let _ = s.set_nodelay(true);
                (Conn::Tcp(s), a.to_string())
            }),
        };
        match r {
            Ok((c, peer)) => {
                match &c {
                    Conn::Unix(s) => s.set_nonblocking(false)?,
                    Conn::Tcp(s) => s.set_nonblocking(false)?,
                }
                Ok(Some((c, peer)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Serves `dev` to every client that connects, each on its own thread, until `cancel` is
    /// cancelled; then shuts every connection down, joins the threads and returns what was
    /// done. Fails only when accepting fails.
    pub fn serve(
        &self,
        dev: Arc<dyn BlockDev>,
        opts: &ServeOptions,
        cancel: &CancelToken,
    ) -> Result<ServeStats> {
        let conns: Mutex<HashMap<u64, Conn>> = Mutex::new(HashMap::new());
        let totals = Mutex::new(ServeStats::default());
        let next = AtomicU64::new(1);
        let r = std::thread::scope(|scope| -> Result<()> {
            let result = loop {
                if cancel.is_cancelled() {
                    break Ok(());
                }
                let (conn, peer) = match self.accept() {
                    Ok(Some(c)) => c,
                    Ok(None) => {
                        std::thread::sleep(POLL);
                        continue;
                    }
                    // out of descriptors or memory, a client gone before it was accepted:
                    // the clients being served go on, and new ones are taken once it passes
                    Err(e) => {
                        opts.log(&format!("accepting a client: {e}"));
                        std::thread::sleep(POLL);
                        continue;
                    }
                };
                let id = next.fetch_add(1, Ordering::SeqCst);
                match conn.try_clone() {
                    Ok(c) => {
                        if let Ok(mut m) = conns.lock() {
                            m.insert(id, c);
                        }
                    }
                    Err(e) => {
                        opts.log(&format!("client {id} ({peer}): refused: {e}"));
                        continue;
                    }
                }
                let (dev, conns, totals) = (dev.clone(), &conns, &totals);
                let spawned = std::thread::Builder::new()
                    .name(format!("nbd-client-{id}"))
                    .spawn_scoped(scope, move || {
                        opts.log(&format!("client {id} connected ({peer})"));
                        let mut st = ServeStats::default();
                        let how = match serve_conn(conn, &*dev, opts, id, &mut st) {
                            Ok(()) => "disconnected".to_string(),
                            Err(e) => format!("dropped: {e}"),
                        };
                        opts.log(&format!(
                            "client {id} {how} (read {} bytes, wrote {} bytes, {} failed requests)",
                            st.read_bytes, st.written_bytes, st.failed_requests
                        ));
                        if let Ok(mut t) = totals.lock() {
                            t.clients += 1;
                            t.read_bytes += st.read_bytes;
                            t.written_bytes += st.written_bytes;
                            t.failed_requests += st.failed_requests;
                        }
                        if let Ok(mut m) = conns.lock() {
                            m.remove(&id);
                        }
                    });
                if let Err(e) = spawned {
                    opts.log(&format!("client {id}: no thread for it: {e}"));
                    if let Ok(mut m) = conns.lock() {
                        if let Some(c) = m.remove(&id) {
                            c.shutdown();
                        }
                    }
                }
            };
            // stop every client: their blocked reads return, their threads end
            if let Ok(m) = conns.lock() {
                for c in m.values() {
                    c.shutdown();
                }
            }
            result
        });
        let _ = dev.sync();
        r?;
        Ok(totals.into_inner().unwrap_or_default())
    }
}

/// Serves one connection: handshake, then requests until the client leaves.
fn serve_conn(
    mut conn: Conn,
    dev: &dyn BlockDev,
    opts: &ServeOptions,
    id: u64,
    st: &mut ServeStats,
) -> io::Result<()> {
    match handshake(&mut conn, dev, opts)? {
        Negotiated::Transmit => transmit(&mut conn, dev, opts, id, st),
        Negotiated::Closed => Ok(()),
    }
}

/// How the handshake ended.
#[derive(Debug, PartialEq, Eq)]
enum Negotiated {
    /// Go on to transmission.
    Transmit,
    /// The client aborted or asked for an unknown export: close.
    Closed,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn transmission_flags(opts: &ServeOptions) -> u16 {
    let mut f = TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_WRITE_ZEROES | TF_CAN_MULTI_CONN;
    if !opts.writable {
        f |= TF_READ_ONLY;
    }
    f
}

fn option_reply(w: &mut impl Write, opt: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&opt.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b)
}

/// The fixed newstyle handshake and option haggling.
fn handshake(
    c: &mut (impl Read + Write),
    dev: &dyn BlockDev,
    opts: &ServeOptions,
) -> io::Result<Negotiated> {
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    c.write_all(&hello)?;
    let mut cf = [0u8; 4];
    c.read_exact(&mut cf)?;
    let client_flags = u32::from_be_bytes(cf);
    if client_flags & !CLIENT_FLAGS_KNOWN != 0 {
        return Err(bad_data("the client sent unknown handshake flags"));
    }
    let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
    let size = dev.len();
    let tflags = transmission_flags(opts);
    let known = |name: &[u8]| name.is_empty() || name == opts.name.as_bytes();
    loop {
        let mut head = [0u8; 16];
        c.read_exact(&mut head)?;
        let (magic, opt, len) = (
            u64_at(&head, 0).unwrap_or(0),
            u32_at(&head, 8).unwrap_or(0),
            u32_at(&head, 12).unwrap_or(0),
        );
        if magic != IHAVEOPT {
            return Err(bad_data("bad option magic"));
        }
        if len > MAX_OPTION {
            return Err(bad_data("option data too long"));
        }
        let mut data = vec![0u8; len as usize];
        c.read_exact(&mut data)?;
        match opt {
            OPT_EXPORT_NAME => {
                if !known(&data) {
                    return Ok(Negotiated::Closed);
                }
                let mut b = Vec::with_capacity(134);
                b.extend_from_slice(&size.to_be_bytes());
                b.extend_from_slice(&tflags.to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0u8; 124]);
                }
                c.write_all(&b)?;
                return Ok(Negotiated::Transmit);
            }
            OPT_ABORT => {
                let _ = option_reply(c, opt, REP_ACK, &[]);
                return Ok(Negotiated::Closed);
            }
            OPT_LIST => {
                if !data.is_empty() {
                    option_reply(c, opt, REP_ERR_INVALID, b"LIST takes no data")?;
                    continue;
                }
                let name = opts.name.as_bytes();
                let mut d = Vec::with_capacity(4 + name.len());
                d.extend_from_slice(&(name.len() as u32).to_be_bytes());
                d.extend_from_slice(name);
                option_reply(c, opt, REP_SERVER, &d)?;
                option_reply(c, opt, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO => {
                let Some(requests) = parse_info(&data) else {
                    option_reply(c, opt, REP_ERR_INVALID, b"malformed request")?;
                    continue;
                };
                if !known(requests.0) {
                    option_reply(c, opt, REP_ERR_UNKNOWN, b"no such export")?;
                    continue;
                }
                let mut d = Vec::with_capacity(12);
                d.extend_from_slice(&INFO_EXPORT.to_be_bytes());
                d.extend_from_slice(&size.to_be_bytes());
                d.extend_from_slice(&tflags.to_be_bytes());
                option_reply(c, opt, REP_INFO, &d)?;
                if requests.1.contains(&INFO_BLOCK_SIZE) {
                    let mut d = Vec::with_capacity(14);
                    d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
                    d.extend_from_slice(&1u32.to_be_bytes());
                    d.extend_from_slice(&4096u32.to_be_bytes());
                    d.extend_from_slice(&MAX_REQUEST.to_be_bytes());
                    option_reply(c, opt, REP_INFO, &d)?;
                }
                option_reply(c, opt, REP_ACK, &[])?;
                if opt == OPT_GO {
                    return Ok(Negotiated::Transmit);
                }
            }
            _ => option_reply(c, opt, REP_ERR_UNSUP, &[])?,
        }
    }
}

/// An INFO/GO request: the export name and the information types asked for.
fn parse_info(d: &[u8]) -> Option<(&[u8], Vec<u16>)> {
    let n = u32_at(d, 0)? as usize;
    let name = d.get(4..4 + n)?;
    let count = u16_at(d, 4 + n)? as usize;
    let rest = d.get(6 + n..)?;
    if rest.len() != count * 2 {
        return None;
    }
    Some((
        name,
        rest.chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect(),
    ))
}

/// The NBD error number for a failed request.
fn errno_of(e: &Error) -> u32 {
    match e {
        Error::ReadOnly { .. } => EPERM,
        Error::OutOfRange { .. } => EINVAL,
        Error::Write { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => ENOSPC,
        _ => EIO,
    }
}

fn simple_reply(w: &mut impl Write, error: u32, cookie: u64, data: &[u8]) -> io::Result<()> {
    let mut head = [0u8; 16];
    head[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    head[4..8].copy_from_slice(&error.to_be_bytes());
    head[8..].copy_from_slice(&cookie.to_be_bytes());
    if data.is_empty() {
        w.write_all(&head)
    } else {
        w.write_all(&head)?;
        w.write_all(data)
    }
}

/// Answers requests until the client disconnects.
fn transmit(
    c: &mut (impl Read + Write),
    dev: &dyn BlockDev,
    opts: &ServeOptions,
    id: u64,
    st: &mut ServeStats,
) -> io::Result<()> {
    let size = dev.len();
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut head = [0u8; 28];
        match c.read_exact(&mut head) {
            Ok(()) => {}
            // a client that goes without DISC
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        if u32_at(&head, 0) != Some(REQUEST_MAGIC) {
            return Err(bad_data("bad request magic"));
        }
        let flags = u16_at(&head, 4).unwrap_or(0);
        let cmd = u16_at(&head, 6).unwrap_or(0);
        let cookie = u64_at(&head, 8).unwrap_or(0);
        let offset = u64_at(&head, 16).unwrap_or(0);
        let len = u32_at(&head, 24).unwrap_or(0);
        let in_range = offset
            .checked_add(u64::from(len))
            .is_some_and(|end| end <= size);
        let outcome: std::result::Result<(), (u32, String)> = match cmd {
            CMD_DISC => return Ok(()),
            CMD_READ => {
                if len > MAX_REQUEST {
                    Err((EINVAL, format!("read of {len} bytes is too long")))
                } else if !in_range {
                    Err((
                        EINVAL,
                        format!("read of {len} bytes at {offset} is beyond the end"),
                    ))
                } else {
                    buf.resize(len as usize, 0);
                    match dev.read_at(&mut buf, offset) {
                        Ok(()) => {
                            simple_reply(c, 0, cookie, &buf)?;
                            st.read_bytes += u64::from(len);
                            continue;
                        }
                        Err(e) => Err((errno_of(&e), crate::error::with_causes(&e))),
                    }
                }
            }
            CMD_WRITE => {
                if len > MAX_REQUEST {
                    return Err(bad_data("write payload longer than 32 MiB"));
                }
                buf.resize(len as usize, 0);
                c.read_exact(&mut buf)?;
                if !opts.writable {
                    Err((EPERM, "the export is read-only".into()))
                } else if !in_range {
                    Err((
                        ENOSPC,
                        format!("write of {len} bytes at {offset} is beyond the end"),
                    ))
                } else {
                    let r = dev.write_at(&buf, offset).and_then(|()| {
                        if flags & CMD_FLAG_FUA != 0 {
                            dev.sync()
                        } else {
                            Ok(())
                        }
                    });
                    match r {
                        Ok(()) => {
                            st.written_bytes += u64::from(len);
                            Ok(())
                        }
                        Err(e) => Err((errno_of(&e), crate::error::with_causes(&e))),
                    }
                }
            }
            CMD_WRITE_ZEROES => {
                if !opts.writable {
                    Err((EPERM, "the export is read-only".into()))
                } else if !in_range {
                    Err((
                        ENOSPC,
                        format!("write of {len} bytes at {offset} is beyond the end"),
                    ))
                } else {
                    match write_zeroes(dev, offset, len) {
                        Ok(()) => {
                            st.written_bytes += u64::from(len);
                            Ok(())
                        }
                        Err(e) => Err((errno_of(&e), crate::error::with_causes(&e))),
                    }
                }
            }
            CMD_FLUSH => dev
                .sync()
                .map_err(|e| (errno_of(&e), crate::error::with_causes(&e))),
            CMD_TRIM => {
                if !opts.writable {
                    Err((EPERM, "the export is read-only".into()))
                } else if !in_range {
                    Err((
                        EINVAL,
                        format!("trim of {len} bytes at {offset} is beyond the end"),
                    ))
                } else {
                    Ok(())
                }
            }
            other => Err((EINVAL, format!("unknown command {other}"))),
        };
        match outcome {
            Ok(()) => simple_reply(c, 0, cookie, &[])?,
            Err((errno, why)) => {
                st.failed_requests += 1;
                opts.log(&format!(
                    "client {id}: {} of {len} bytes at {offset} failed ({}): {why}",
                    command_name(cmd),
                    errno_name(errno)
                ));
                simple_reply(c, errno, cookie, &[])?;
            }
        }
    }
}

fn write_zeroes(dev: &dyn BlockDev, offset: u64, len: u32) -> Result<()> {
    const PIECE: u64 = 1 << 20;
    let zeros = vec![0u8; PIECE.min(u64::from(len)) as usize];
    let end = offset + u64::from(len);
    let mut at = offset;
    while at < end {
        let n = PIECE.min(end - at) as usize;
        dev.write_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

fn command_name(cmd: u16) -> &'static str {
    match cmd {
        CMD_READ => "read",
        CMD_WRITE => "write",
        CMD_FLUSH => "flush",
        CMD_TRIM => "trim",
        CMD_WRITE_ZEROES => "write-zeroes",
        _ => "request",
    }
}

fn errno_name(e: u32) -> &'static str {
    match e {
        EPERM => "EPERM",
        EIO => "EIO",
        EINVAL => "EINVAL",
        ENOSPC => "ENOSPC",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Overlay, OverlayStore};
    use crate::blockdev::testing::FaultyDev;
    use crate::blockdev::MemDev;

    const SIZE: usize = 1 << 20;

    fn mem() -> MemDev {
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
        MemDev::from_vec(data, 512)
    }

    fn base() -> Arc<dyn BlockDev> {
        Arc::new(mem())
    }

    /// A minimal NBD client: fixed newstyle, GO, simple replies.
    struct Client {
        s: UnixStream,
        size: u64,
        flags: u16,
        cookie: u64,
    }

    fn read_u32(s: &mut UnixStream) -> u32 {
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        u32::from_be_bytes(b)
    }

    fn read_u64(s: &mut UnixStream) -> u64 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).unwrap();
        u64::from_be_bytes(b)
    }

    fn send_option(s: &mut UnixStream, opt: u32, data: &[u8]) {
        let mut b = IHAVEOPT.to_be_bytes().to_vec();
        b.extend_from_slice(&opt.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        s.write_all(&b).unwrap();
    }

    /// (reply type, data)
    fn read_reply(s: &mut UnixStream, opt: u32) -> (u32, Vec<u8>) {
        assert_eq!(read_u64(s), REPLY_MAGIC);
        assert_eq!(read_u32(s), opt);
        let kind = read_u32(s);
        let len = read_u32(s);
        let mut d = vec![0u8; len as usize];
        s.read_exact(&mut d).unwrap();
        (kind, d)
    }

    fn go_data(name: &str, infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    fn greet(s: &mut UnixStream) {
        assert_eq!(read_u64(s), NBDMAGIC);
        assert_eq!(read_u64(s), IHAVEOPT);
        let mut f = [0u8; 2];
        s.read_exact(&mut f).unwrap();
        assert_eq!(u16::from_be_bytes(f), FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        s.write_all(&3u32.to_be_bytes()).unwrap();
    }

    impl Client {
        fn connect(path: &Path, name: &str) -> Client {
            let mut s = UnixStream::connect(path).unwrap();
            greet(&mut s);
            // options a server without them must refuse, so the client falls back
            for opt in [8u32, 5, 10] {
                send_option(&mut s, opt, &[]);
                assert_eq!(read_reply(&mut s, opt).0, REP_ERR_UNSUP);
            }
            send_option(&mut s, OPT_GO, &go_data(name, &[INFO_BLOCK_SIZE]));
            let (mut size, mut flags, mut saw_block) = (0, 0, false);
            loop {
                let (kind, d) = read_reply(&mut s, OPT_GO);
                match kind {
                    REP_INFO if u16_at(&d, 0) == Some(INFO_EXPORT) => {
                        size = u64_at(&d, 2).unwrap();
                        flags = u16_at(&d, 10).unwrap();
                    }
                    REP_INFO => {
                        assert_eq!(u16_at(&d, 0), Some(INFO_BLOCK_SIZE));
                        assert_eq!(u32_at(&d, 10), Some(MAX_REQUEST));
                        saw_block = true;
                    }
                    REP_ACK => break,
                    other => panic!("GO reply {other:#x}"),
                }
            }
            assert!(saw_block);
            Client {
                s,
                size,
                flags,
                cookie: 0,
            }
        }

        /// (error, data)
        fn request(&mut self, cmd: u16, offset: u64, len: u32, payload: &[u8]) -> (u32, Vec<u8>) {
            self.cookie += 1;
            let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&cmd.to_be_bytes());
            b.extend_from_slice(&self.cookie.to_be_bytes());
            b.extend_from_slice(&offset.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(payload);
            self.s.write_all(&b).unwrap();
            assert_eq!(read_u32(&mut self.s), SIMPLE_REPLY_MAGIC);
            let err = read_u32(&mut self.s);
            assert_eq!(read_u64(&mut self.s), self.cookie);
            let mut d = Vec::new();
            if cmd == CMD_READ && err == 0 {
                d = vec![0u8; len as usize];
                self.s.read_exact(&mut d).unwrap();
            }
            (err, d)
        }

        fn read(&mut self, offset: u64, len: u32) -> std::result::Result<Vec<u8>, u32> {
            match self.request(CMD_READ, offset, len, &[]) {
                (0, d) => Ok(d),
                (e, _) => Err(e),
            }
        }

        fn disconnect(mut self) {
            self.cookie += 1;
            let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&CMD_DISC.to_be_bytes());
            b.extend_from_slice(&[0u8; 20]);
            self.s.write_all(&b).unwrap();
        }
    }

    /// A server on a unix socket in `dir`, serving on a thread; the log collected.
    struct Running {
        cancel: CancelToken,
        handle: Option<std::thread::JoinHandle<Result<ServeStats>>>,
        path: PathBuf,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Running {
        fn start(dir: &Path, dev: Arc<dyn BlockDev>, writable: bool) -> Running {
            let path = dir.join("s.sock");
            let server = Server::bind(&Listen::Unix(path.clone())).unwrap();
            assert_eq!(
                server.uri("pc"),
                format!("nbd+unix:///pc?socket={}", path.display())
            );
            let log = Arc::new(Mutex::new(Vec::new()));
            let l2 = log.clone();
            let opts = ServeOptions {
                name: "pc".into(),
                writable,
                log: Some(Arc::new(move |m: &str| {
                    l2.lock().unwrap().push(m.to_string())
                })),
            };
            let cancel = CancelToken::new();
            let c2 = cancel.clone();
            let handle = std::thread::spawn(move || server.serve(dev, &opts, &c2));
            Running {
                cancel,
                handle: Some(handle),
                path,
                log,
            }
        }

        fn stop(mut self) -> ServeStats {
            self.cancel.cancel();
            self.handle.take().unwrap().join().unwrap().unwrap()
        }
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "unix:/tmp/a.sock".parse::<Listen>(),
            Ok(Listen::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:10809".parse::<Listen>(),
            Ok(Listen::Tcp("127.0.0.1:10809".into()))
        );
        assert_eq!(
            "tcp:[::1]:0".parse::<Listen>(),
            Ok(Listen::Tcp("[::1]:0".into()))
        );
        for bad in [
            "unix:",
            "tcp:127.0.0.1",
            "tcp::80",
            "tcp:h:99999",
            "/tmp/x",
            "",
        ] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }

    #[test]
    fn handshake_list_info_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let srv = Running::start(dir.path(), base(), false);
        // LIST, INFO for an unknown and the known name, ABORT
        let mut s = UnixStream::connect(&srv.path).unwrap();
        greet(&mut s);
        send_option(&mut s, OPT_LIST, &[]);
        let (k, d) = read_reply(&mut s, OPT_LIST);
        assert_eq!(k, REP_SERVER);
        assert_eq!(d, b"\0\0\0\x02pc");
        assert_eq!(read_reply(&mut s, OPT_LIST).0, REP_ACK);
        send_option(&mut s, OPT_INFO, &go_data("other", &[]));
        assert_eq!(read_reply(&mut s, OPT_INFO).0, REP_ERR_UNKNOWN);
        send_option(&mut s, OPT_INFO, b"\0\0\0\x09pc");
        assert_eq!(read_reply(&mut s, OPT_INFO).0, REP_ERR_INVALID);
        send_option(&mut s, OPT_INFO, &go_data("", &[1, 2]));
        let (k, d) = read_reply(&mut s, OPT_INFO);
        assert_eq!(
            (k, u16_at(&d, 0), u64_at(&d, 2)),
            (REP_INFO, Some(0), Some(SIZE as u64))
        );
        assert_eq!(read_reply(&mut s, OPT_INFO).0, REP_ACK);
        send_option(&mut s, OPT_ABORT, &[]);
        assert_eq!(read_reply(&mut s, OPT_ABORT).0, REP_ACK);
        drop(s);

        // the old EXPORT_NAME way, without NO_ZEROES: size, flags, 124 zeros
        let mut s = UnixStream::connect(&srv.path).unwrap();
        read_u64(&mut s);
        read_u64(&mut s);
        s.read_exact(&mut [0u8; 2]).unwrap();
        s.write_all(&1u32.to_be_bytes()).unwrap();
        send_option(&mut s, OPT_EXPORT_NAME, b"pc");
        assert_eq!(read_u64(&mut s), SIZE as u64);
        let mut f = [0u8; 2 + 124];
        s.read_exact(&mut f).unwrap();
        assert!(f[2..].iter().all(|&b| b == 0));
        drop(s);

        let mut c = Client::connect(&srv.path, "pc");
        assert_eq!(c.size, SIZE as u64);
        let want =
            TF_HAS_FLAGS | TF_READ_ONLY | TF_SEND_FLUSH | TF_SEND_WRITE_ZEROES | TF_CAN_MULTI_CONN;
        assert_eq!(c.flags, want);
        let d = c.read(1000, 70_000).unwrap();
        assert!(d
            .iter()
            .enumerate()
            .all(|(i, &b)| b == ((1000 + i) % 253) as u8));
        assert_eq!(c.read(SIZE as u64 - 10, 10).unwrap().len(), 10);
        // out of range and too long: EINVAL, and the connection goes on
        assert_eq!(c.read(SIZE as u64 - 10, 11), Err(EINVAL));
        assert_eq!(c.read(u64::MAX - 1, 4), Err(EINVAL));
        assert_eq!(c.read(0, MAX_REQUEST + 1), Err(EINVAL));
        assert_eq!(c.request(99, 0, 0, &[]).0, EINVAL);
        // read-only: writes, zeroes and trims are refused; the device is unchanged
        assert_eq!(c.request(CMD_WRITE, 0, 4, &[9, 9, 9, 9]).0, EPERM);
        assert_eq!(c.request(CMD_WRITE_ZEROES, 0, 4096, &[]).0, EPERM);
        assert_eq!(c.request(CMD_TRIM, 0, 4096, &[]).0, EPERM);
        assert_eq!(c.request(CMD_FLUSH, 0, 0, &[]).0, 0);
        assert_eq!(c.read(0, 4).unwrap(), vec![0, 1, 2, 3]);
        c.disconnect();
        // an unknown name with EXPORT_NAME closes the connection
        let mut s = UnixStream::connect(&srv.path).unwrap();
        greet(&mut s);
        send_option(&mut s, OPT_EXPORT_NAME, b"nope");
        assert_eq!(s.read(&mut [0u8; 8]).unwrap(), 0);
        let stats = srv.stop();
        assert_eq!(stats.clients, 4);
        assert!(stats.failed_requests >= 7);
        assert!(
            !dir.path().join("s.sock").exists(),
            "the socket was not removed"
        );
    }

    #[test]
    fn writes_go_to_the_overlay_and_reads_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let b = base();
        let before = crate::blockdev::read_vec(&*b, 0, SIZE).unwrap();
        let ov: Arc<dyn BlockDev> =
            Arc::new(Overlay::new(b.clone(), OverlayStore::Memory { limit: 64 << 10 }).unwrap());
        let srv = Running::start(dir.path(), ov, true);
        let mut c = Client::connect(&srv.path, "");
        assert_eq!(c.flags & TF_READ_ONLY, 0);
        assert_eq!(c.request(CMD_WRITE, 5000, 3, &[0xab; 3]).0, 0);
        assert_eq!(c.request(CMD_WRITE_ZEROES, 8192, 4096, &[]).0, 0);
        assert_eq!(c.request(CMD_TRIM, 0, 4096, &[]).0, 0);
        assert_eq!(c.request(CMD_FLUSH, 0, 0, &[]).0, 0);
        let mut model = before.clone();
        model[5000..5003].fill(0xab);
        model[8192..12288].fill(0);
        // a second client sees the first one's writes
        let mut c2 = Client::connect(&srv.path, "pc");
        assert!(c2.read(0, 16384).unwrap() == model[..16384]);
        // beyond the end: ENOSPC for writes; a full overlay: ENOSPC
        assert_eq!(c.request(CMD_WRITE, SIZE as u64 - 1, 2, &[1, 1]).0, ENOSPC);
        assert_eq!(
            c.request(CMD_WRITE, 100_000, 65536, &[7u8; 65536]).0,
            ENOSPC
        );
        c.disconnect();
        c2.disconnect();
        let stats = srv.stop();
        assert_eq!(stats.written_bytes, 3 + 4096);
        // the base was never written
        assert_eq!(crate::blockdev::read_vec(&*b, 0, SIZE).unwrap(), before);
    }

    #[test]
    fn read_errors_are_eio_and_logged_and_the_rest_reads() {
        let dir = tempfile::tempdir().unwrap();
        let dev: Arc<dyn BlockDev> = Arc::new(FaultyDev::new(mem()).fail_reads(300_000..300_001));
        let srv = Running::start(dir.path(), dev, false);
        let mut c = Client::connect(&srv.path, "pc");
        assert_eq!(c.read(299_000, 4096), Err(EIO));
        assert_eq!(c.read(0, 4096).unwrap()[7], 7);
        c.disconnect();
        let log = srv.log.clone();
        srv.stop();
        let log = log.lock().unwrap().join("\n");
        assert!(log.contains("client 1 connected"), "{log}");
        assert!(
            log.contains("read of 4096 bytes at 299000 failed (EIO)"),
            "{log}"
        );
        assert!(log.contains("client 1 disconnected"), "{log}");
    }

    #[test]
    fn several_clients_at_once_and_cancel_ends_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let srv = Running::start(dir.path(), base(), false);
        let path = srv.path.clone();
        // clients that stay connected while others read
        let mut idle: Vec<Client> = (0..3).map(|_| Client::connect(&path, "pc")).collect();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let path = &path;
                s.spawn(move || {
                    let mut c = Client::connect(path, "pc");
                    for k in 0..50u64 {
                        let off = (t * 7919 + k * 104_729) % (SIZE as u64 - 5000);
                        let d = c.read(off, 5000).unwrap();
                        assert!(d
                            .iter()
                            .enumerate()
                            .all(|(i, &b)| b == ((off as usize + i) % 253) as u8));
                    }
                    c.disconnect();
                });
            }
        });
        assert_eq!(idle[0].read(0, 1).unwrap(), vec![0]);
        // cancelling returns although three clients are still connected, and closes them
        let stats = srv.stop();
        assert_eq!(stats.clients, 7);
        let mut b = [0u8; 1];
        assert_eq!(idle[1].s.read(&mut b).unwrap_or(0), 0);
        idle.clear();
        assert!(!path.exists(), "the socket was not removed");
    }

    #[test]
    fn the_socket_is_removed_and_only_a_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.sock");
        let s = Server::bind(&Listen::Unix(p.clone())).unwrap();
        assert_eq!(s.address(), format!("unix:{}", p.display()));
        // a live server's socket is not taken over
        assert!(matches!(
            Server::bind(&Listen::Unix(p.clone())),
            Err(Error::Refused { .. })
        ));
        drop(s);
        assert!(!p.exists());
        // a stale one (its listener gone without cleaning up) is replaced
        let stale = std::os::unix::net::UnixListener::bind(&p).unwrap();
        drop(stale);
        let s = Server::bind(&Listen::Unix(p.clone())).unwrap();
        drop(s);
        // a plain file is never removed
        std::fs::write(&p, b"keep").unwrap();
        assert!(matches!(
            Server::bind(&Listen::Unix(p.clone())),
            Err(Error::Refused { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
    }

    #[test]
    fn tcp_port_zero_picks_a_port() {
        let s = Server::bind(&Listen::Tcp("127.0.0.1:0".into())).unwrap();
        let port: u16 = s.address().rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0);
        assert_eq!(s.uri("pc"), format!("nbd://127.0.0.1:{port}/pc"));
    }
}
