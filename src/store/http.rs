//! Images read over HTTP and HTTPS, from any static web server: `restore`, `verify` and
//! `info` take `https://host/path/disk.lbi` where they take an image file (the image reader
//! opens URLs, so commands built on it read them too, but only those three are tested).
//!
//! An [`HttpFile`] is a read-only file whose bytes come from range requests
//! (`Range: bytes=A-B`, answered `206 Partial Content` with `Content-Range: bytes A-B/LEN`):
//! the image reader asks for the header, the footer, the metadata and the index, and then for
//! the chunks it needs, so `info` reads a few kilobytes and a restore reads each stored byte
//! once. Reads that follow one another share one response: each new request asks for more
//! than the last (up to [`MAX_WINDOW`]), so a restore streams the image in a handful of
//! requests, and a jump (a FUSE read elsewhere) costs one new request.
//!
//! **When the connection drops** (a reset, a timeout, a body cut short, a 5xx answer), the
//! read goes on with a new request from the byte it stopped at, after a pause that doubles
//! from half a second; it gives up when no byte has arrived for [`retry_for`] (60 s unless
//! set). Answers that will not change by asking again (404, 401/403, a server that ignores
//! ranges, a file whose length changed) are errors at once, each with its own message. Every
//! chunk is checked against its blake3 hash after it is read, so a resumed read that returned
//! other bytes cannot pass unnoticed.
//!
//! The client is our own HTTP/1.1 over `std::net` (one request per connection, no chunked
//! bodies: a 206 has a length), with TLS by rustls. Certificates are checked against the
//! system's roots (`/etc/ssl/certs`, as OpenSSL finds them), or Mozilla's built in where the
//! system has none (the rescue system), or only against `--ca FILE` when given
//! ([`set_ca_file`]). Redirects are followed (up to 5). Nothing here prints.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The most one request asks for: a restore streams the image in requests of this size.
pub const MAX_WINDOW: u64 = 256 << 20;
/// What the first request after a jump asks for, at least.
const MIN_WINDOW: u64 = 1 << 20;
/// A gap this small between reads is read through rather than asked for anew.
const SKIP_MAX: u64 = 256 << 10;
/// How long a connect or a read may stall before it counts as dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

static CA_FILE: OnceLock<PathBuf> = OnceLock::new();
static TLS: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
static RETRY_FOR: OnceLock<Duration> = OnceLock::new();

/// Checks TLS certificates against the CA certificates in `path` (PEM) only, for servers with
/// a private CA (`--ca FILE`). Must be called before the first HTTPS request; a second call is
/// ignored.
pub fn set_ca_file(path: &Path) {
    let _ = CA_FILE.set(path.to_path_buf());
}

/// Sets how long a read keeps retrying a dropped connection without getting a byte (before
/// the first read; later calls are ignored).
pub fn set_retry_for(d: Duration) {
    let _ = RETRY_FOR.set(d);
}

/// How long a read keeps retrying a dropped connection without progress: 60 s, or
/// `LIFEBOAT_NET_RETRY_SECS`, or what [`set_retry_for`] said.
pub fn retry_for() -> Duration {
    *RETRY_FOR.get_or_init(|| {
        let secs = std::env::var("LIFEBOAT_NET_RETRY_SECS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(60);
        Duration::from_secs(secs)
    })
}

/// True when `p` is an `http://` or `https://` URL rather than a path.
pub fn is_url(p: &Path) -> bool {
    p.to_str()
        .is_some_and(|s| s.starts_with("http://") || s.starts_with("https://"))
}

/// A parsed `http(s)://[user@]host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// HTTPS.
    pub tls: bool,
    /// The host name or address (IPv6 without its brackets).
    pub host: String,
    /// The port (80 or 443 unless given).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses `s`; the message says what is wrong.
    pub fn parse(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{s:?} is not an http:// or https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let hostport = authority.rsplit('@').next().unwrap_or(authority);
        let (host, port) = super::split_host_port(hostport).map_err(|m| format!("{s:?}: {m}"))?;
        let port = match port {
            None | Some("") => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("{s:?}: {p:?} is not a port number"))?,
        };
        if path.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "{s:?}: spaces and control characters must be %-encoded"
            ));
        }
        Ok(Url {
            tls,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The `Host:` header's value.
    pub(crate) fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let h = super::url_host(&self.host);
        if self.port == default {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }

    /// The URL a `Location:` header points at, relative to this one.
    fn follow(&self, location: &str) -> Result<Url, String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            return Url::parse(location);
        }
        if location.starts_with("//") {
            let scheme = if self.tls { "https:" } else { "http:" };
            return Url::parse(&format!("{scheme}{location}"));
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let dir = &self.path[..self.path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Url {
            path,
            ..self.clone()
        })
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_header(), self.path)
    }
}

/// The TLS configuration: `--ca FILE`'s certificates, else the system's, else Mozilla's.
fn tls_config() -> io::Result<Arc<rustls::ClientConfig>> {
    TLS.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = CA_FILE.get() {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("reading the CA file {}: {e}", ca.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("reading the CA file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("the CA file {}: {e}", ca.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "the CA file {} holds no PEM certificate",
                    ca.display()
                ));
            }
        } else {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
        // ring, because aws-lc-rs needs cmake and a larger C build; its "deprecated" is
        // rustls noting that ring has no post-quantum key exchange, which reading an image
        // from a web server can do without
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map(Arc::new)
            .map_err(|e| format!("setting up TLS: {e}"))
    })
    .clone()
    .map_err(io::Error::other)
}

/// A connection, plain or TLS.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// One response body being read: the bytes `pos..end` of the file are still to come.
struct Body {
    reader: BufReader<Box<dyn Conn>>,
    pos: u64,
    end: u64,
    /// The size of the request that opened it.
    window: u64,
}

/// Why a request failed: worth asking again (a drop, a 5xx), or not.
pub(crate) enum Failure {
    Transient(io::Error),
    Permanent(io::Error),
}

/// A file on a web server, read with range requests. See the module doc.
pub struct HttpFile {
    url: Url,
    /// What the user gave (errors name it).
    shown: String,
    len: u64,
    body: Mutex<Option<Body>>,
    /// The last read's bytes and where they start: readers that read one frame again for
    /// each record in it (a restore's first MiB) get it from here, not from the server.
    last: Mutex<(u64, Vec<u8>)>,
    resumes: std::sync::atomic::AtomicU64,
    /// Headers added to every request (an object store's signature, see
    /// [`crate::store::s3`]), made for the URL asked.
    sign: Option<Signer>,
}

/// Makes the extra headers of a GET of a URL (an S3 signature).
pub(crate) type Signer = Arc<dyn Fn(&Url) -> Vec<(String, String)> + Send + Sync>;

/// The most bytes [`HttpFile`] keeps of its last read.
const KEEP_LAST: usize = 8 << 20;

impl std::fmt::Debug for HttpFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFile")
            .field("url", &self.shown)
            .field("len", &self.len)
            .finish()
    }
}

impl HttpFile {
    /// Opens `url`, learning its length from a first range request. A missing file is an
    /// error of kind `NotFound`; every other failure says what the server or the network did.
    pub fn open(url: &str) -> io::Result<HttpFile> {
        let parsed = Url::parse(url).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        HttpFile::open_signed(parsed, url.to_string(), None)
    }

    /// Opens `url` (shown as `shown`), adding `sign`'s headers to every request.
    pub(crate) fn open_signed(
        url: Url,
        shown: String,
        sign: Option<Signer>,
    ) -> io::Result<HttpFile> {
        let mut f = HttpFile {
            url,
            shown,
            sign,
            len: u64::MAX,
            body: Mutex::new(None),
            last: Mutex::new((0, Vec::new())),
            resumes: Default::default(),
        };
        let deadline = Instant::now() + retry_for();
        let mut pause = Duration::from_millis(500);
        let (body, len) = loop {
            match f.request(0, MIN_WINDOW) {
                Ok(v) => break v,
                Err(Failure::Permanent(e)) => return Err(e),
                Err(Failure::Transient(e)) if Instant::now() + pause > deadline => return Err(e),
                Err(Failure::Transient(_)) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(8));
                }
            }
        };
        f.len = len;
        *f.body.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(body);
        Ok(f)
    }

    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many times a dropped connection was resumed.
    pub fn resumes(&self) -> u64 {
        self.resumes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, resuming dropped connections (see the
    /// module doc). Past the end is an `UnexpectedEof` error.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > self.len)
        {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at {offset} are past the end of the file ({} bytes)",
                    buf.len(),
                    self.len
                ),
            ));
        }
        {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = offset
                .checked_sub(last.0)
                .map(|i| i as usize)
                .filter(|&i| i + buf.len() <= last.1.len())
            {
                buf.copy_from_slice(&last.1[i..i + buf.len()]);
                return Ok(());
            }
        }
        self.read_from_server(buf, offset)?;
        if buf.len() <= KEEP_LAST {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.0 = offset;
            last.1.clear();
            last.1.extend_from_slice(buf);
        }
        Ok(())
    }

    fn read_from_server(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut slot = self.body.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0usize;
        let mut last_progress = Instant::now();
        let mut pause = Duration::from_millis(500);
        while done < buf.len() {
            let at = offset + done as u64;
            let want = (buf.len() - done) as u64;
            // the open body serves this read if it is at `at`, or a little before it
            let usable = slot
                .as_ref()
                .is_some_and(|b| b.pos <= at && at < b.end && at - b.pos <= SKIP_MAX);
            if !usable {
                let window = match slot.take() {
                    // a read that follows the last one's body: ask for more this time
                    Some(b) if b.end == at => (b.window * 4).min(MAX_WINDOW),
                    _ => MIN_WINDOW,
                }
                .max(want)
                .min(self.len - at);
                match self.request(at, window) {
                    Ok((b, len)) if len == self.len => *slot = Some(b),
                    Ok((_, len)) => {
                        return Err(io::Error::other(format!(
                            "the file changed while it was read: it was {} bytes, now {len}",
                            self.len
                        )))
                    }
                    Err(Failure::Permanent(e)) => return Err(e),
                    Err(Failure::Transient(e)) => {
                        if last_progress.elapsed() + pause > retry_for() {
                            return Err(io::Error::new(
                                e.kind(),
                                format!(
                                    "{e} (retried for {} s from byte {at})",
                                    retry_for().as_secs()
                                ),
                            ));
                        }
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(8));
                        continue;
                    }
                }
            }
            let Some(b) = slot.as_mut() else { continue };
            let r = if b.pos < at {
                // read through a small gap
                let gap = at - b.pos;
                io::copy(&mut (&mut b.reader).take(gap), &mut io::sink()).and_then(|n| {
                    b.pos += n;
                    if n < gap {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    } else {
                        Ok(0)
                    }
                })
            } else {
                let n = want.min(b.end - b.pos) as usize;
                b.reader.read(&mut buf[done..done + n]).and_then(|got| {
                    if got == 0 {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    } else {
                        Ok(got)
                    }
                })
            };
            match r {
                Ok(got) => {
                    b.pos += got as u64;
                    done += got;
                    last_progress = Instant::now();
                    pause = Duration::from_millis(500);
                    if b.pos == b.end {
                        // keep the finished body's place, so the next read asks for more
                        let (end, window) = (b.end, b.window);
                        *slot = Some(Body {
                            reader: BufReader::new(Box::new(io::empty())),
                            pos: end,
                            end,
                            window,
                        });
                    }
                }
                Err(e) => {
                    // the connection dropped: ask again from where it stopped, after a pause
                    let at = b.pos;
                    *slot = None;
                    if last_progress.elapsed() + pause > retry_for() {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "the connection dropped at byte {at}: {e} (retried for {} s)",
                                retry_for().as_secs()
                            ),
                        ));
                    }
                    self.resumes
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(8));
                }
            }
        }
        Ok(())
    }

    /// One GET of `len` bytes at `start` (following redirects): the open body and the file's
    /// whole length from `Content-Range`.
    fn request(&self, start: u64, len: u64) -> Result<(Body, u64), Failure> {
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            match self.request_once(&url, start, len)? {
                Answer::Body(b, total) => return Ok((b, total)),
                Answer::Redirect(to) => {
                    url = url.follow(&to).map_err(|m| {
                        Failure::Permanent(io::Error::other(format!(
                            "the server redirected to {to:?}: {m}"
                        )))
                    })?;
                }
            }
        }
        Err(Failure::Permanent(io::Error::other(format!(
            "more than {MAX_REDIRECTS} redirects"
        ))))
    }

    fn request_once(&self, url: &Url, start: u64, len: u64) -> Result<Answer, Failure> {
        let transient = |what: &str, e: io::Error| {
            Failure::Transient(io::Error::new(e.kind(), format!("{what}: {e}")))
        };
        let permanent =
            |kind: io::ErrorKind, m: String| Failure::Permanent(io::Error::new(kind, m));
        let mut reader = connect(url)?;
        let mut extra = String::new();
        for (k, v) in self.sign.as_ref().map(|s| s(url)).unwrap_or_default() {
            extra.push_str(&format!("{k}: {v}\r\n"));
        }
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nRange: bytes={}-{}\r\nUser-Agent: lifeboat/{}\r\n\
             Accept-Encoding: identity\r\n{extra}Connection: close\r\n\r\n",
            url.path,
            url.host_header(),
            start,
            start + len.max(1) - 1,
            env!("CARGO_PKG_VERSION")
        );
        let sent = reader
            .get_mut()
            .write_all(req.as_bytes())
            .and_then(|()| reader.get_mut().flush());
        if let Err(e) = sent {
            return Err(tls_or(e, url, &transient, &permanent));
        }
        let (status, reason) = status_line(&mut reader, url)?;
        let mut line = String::new();
        let mut content_range = None;
        let mut content_length = None;
        let mut location = None;
        let mut chunked = false;
        loop {
            line.clear();
            read_line(&mut reader, &mut line).map_err(|e| transient("reading the answer", e))?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-range" => content_range = Some(v.to_string()),
                "content-length" => content_length = v.parse::<u64>().ok(),
                "location" => location = Some(v.to_string()),
                "transfer-encoding" => chunked = !v.eq_ignore_ascii_case("identity"),
                _ => {}
            }
        }
        match status {
            206 => {}
            301 | 302 | 303 | 307 | 308 => {
                return location.map(Answer::Redirect).ok_or_else(|| {
                    permanent(
                        io::ErrorKind::InvalidData,
                        format!("{reason} without a Location"),
                    )
                })
            }
            200 => {
                return Err(permanent(
                    io::ErrorKind::Unsupported,
                    "the server ignores range requests (it sent the whole file); Lifeboat \
                     reads images over HTTP with Range: use a server that supports it (nginx, \
                     Apache, Caddy, lighttpd and most do)"
                        .into(),
                ))
            }
            404 | 410 => {
                return Err(permanent(
                    io::ErrorKind::NotFound,
                    format!("not found ({reason})"),
                ))
            }
            401 | 403 => {
                return Err(permanent(
                    io::ErrorKind::PermissionDenied,
                    format!("the server refused access ({reason})"),
                ))
            }
            416 => {
                return Err(permanent(
                    io::ErrorKind::UnexpectedEof,
                    format!("bytes from {start} are past the file's end ({reason})"),
                ))
            }
            s if s >= 500 => return Err(transient("the server failed", io::Error::other(reason))),
            _ => {
                return Err(permanent(
                    io::ErrorKind::Other,
                    format!("unexpected answer {reason}"),
                ))
            }
        }
        if chunked {
            return Err(permanent(
                io::ErrorKind::Unsupported,
                "the server sent a range in chunked encoding, which Lifeboat does not read".into(),
            ));
        }
        let (a, b, total) = content_range
            .as_deref()
            .and_then(parse_content_range)
            .ok_or_else(|| {
                permanent(
                    io::ErrorKind::InvalidData,
                    format!("a 206 answer without a valid Content-Range ({content_range:?})"),
                )
            })?;
        let end = b + 1;
        if a != start || end > total || content_length.is_some_and(|l| l != end - a) {
            return Err(permanent(
                io::ErrorKind::InvalidData,
                format!(
                    "asked for bytes {start}-{} and got {a}-{b}/{total}",
                    start + len.max(1) - 1
                ),
            ));
        }
        Ok(Answer::Body(
            Body {
                reader,
                pos: a,
                end,
                window: len,
            },
            total,
        ))
    }
}

/// Opens a connection to `url`'s host (TLS for https), with the timeouts set. Failing to
/// resolve the host, or a TLS setup error, is permanent; failing to connect is a drop.
fn connect(url: &Url) -> Result<BufReader<Box<dyn Conn>>, Failure> {
    let transient = |what: &str, e: io::Error| {
        Failure::Transient(io::Error::new(e.kind(), format!("{what}: {e}")))
    };
    let permanent = |kind: io::ErrorKind, m: String| Failure::Permanent(io::Error::new(kind, m));
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| {
            permanent(
                io::ErrorKind::NotFound,
                format!("cannot resolve the host {:?}: {e}", url.host),
            )
        })?
        .collect();
    let mut last = io::Error::other("no address");
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, IO_TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp =
        tcp.ok_or_else(|| transient(&format!("connecting to {}:{}", url.host, url.port), last))?;
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_nodelay(true);
    let conn: Box<dyn Conn> = if url.tls {
        let cfg = tls_config().map_err(|e| permanent(io::ErrorKind::Other, e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
            permanent(
                io::ErrorKind::InvalidInput,
                format!("{:?} is not a TLS server name: {e}", url.host),
            )
        })?;
        let c = rustls::ClientConnection::new(cfg, name)
            .map_err(|e| permanent(io::ErrorKind::Other, format!("TLS: {e}")))?;
        Box::new(rustls::StreamOwned::new(c, tcp))
    } else {
        Box::new(tcp)
    };
    Ok(BufReader::with_capacity(256 << 10, conn))
}

/// The whole answer to one [`exchange`].
#[derive(Debug)]
pub(crate) struct Response {
    /// The status code.
    pub status: u16,
    /// The status line, for messages.
    pub reason: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request of `method` to `url` with `headers` and `body`, and its whole answer, whatever
/// its status (bodies longer than `max_body` are an error). For an object store's requests
/// ([`crate::store::s3`]); one request per connection, like [`HttpFile`]'s. Failing to
/// connect, or the connection dropping, is [`Failure::Transient`].
pub(crate) fn exchange(
    url: &Url,
    method: &str,
    headers: &[(String, String)],
    body: &[u8],
    max_body: usize,
) -> Result<Response, Failure> {
    let transient = |what: &str, e: io::Error| {
        Failure::Transient(io::Error::new(e.kind(), format!("{what}: {e}")))
    };
    let permanent = |kind: io::ErrorKind, m: String| Failure::Permanent(io::Error::new(kind, m));
    let mut reader = connect(url)?;
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lifeboat/{}\r\nContent-Length: {}\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    let sent = {
        let w = reader.get_mut();
        w.write_all(req.as_bytes())
            .and_then(|()| w.write_all(body))
            .and_then(|()| w.flush())
    };
    if let Err(e) = sent {
        return Err(tls_or(e, url, &transient, &permanent));
    }
    let (status, reason) = status_line(&mut reader, url)?;
    let mut line = String::new();
    let mut headers = Vec::new();
    loop {
        line.clear();
        read_line(&mut reader, &mut line).map_err(|e| transient("reading the answer", e))?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        if headers.len() > 200 {
            return Err(permanent(
                io::ErrorKind::InvalidData,
                "more than 200 header lines".into(),
            ));
        }
    }
    let mut resp = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let too_long = || {
        permanent(
            io::ErrorKind::InvalidData,
            format!("an answer of more than {max_body} bytes"),
        )
    };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
    if chunked {
        loop {
            line.clear();
            read_line(&mut reader, &mut line).map_err(|e| transient("reading the answer", e))?;
            let size = line.trim_end().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                permanent(
                    io::ErrorKind::InvalidData,
                    format!("a bad chunk size {:?}", line.trim_end()),
                )
            })?;
            if size == 0 {
                break;
            }
            if resp.body.len() + size > max_body {
                return Err(too_long());
            }
            let at = resp.body.len();
            resp.body.resize(at + size, 0);
            reader
                .read_exact(&mut resp.body[at..])
                .map_err(|e| transient("reading the answer", e))?;
            line.clear();
            read_line(&mut reader, &mut line).map_err(|e| transient("reading the answer", e))?;
        }
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| {
            permanent(
                io::ErrorKind::InvalidData,
                format!("a bad Content-Length {len:?}"),
            )
        })?;
        if len > max_body {
            return Err(too_long());
        }
        resp.body.resize(len, 0);
        reader
            .read_exact(&mut resp.body)
            .map_err(|e| transient("reading the answer", e))?;
    } else {
        (&mut reader)
            .take(max_body as u64 + 1)
            .read_to_end(&mut resp.body)
            .map_err(|e| transient("reading the answer", e))?;
        if resp.body.len() > max_body {
            return Err(too_long());
        }
    }
    Ok(resp)
}

enum Answer {
    Body(Body, u64),
    Redirect(String),
}

/// A TLS certificate failure is permanent and says what to do; anything else is a drop.
fn tls_or(
    e: io::Error,
    url: &Url,
    transient: &dyn Fn(&str, io::Error) -> Failure,
    permanent: &dyn Fn(io::ErrorKind, String) -> Failure,
) -> Failure {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned();
    match tls {
        Some(t) => permanent(
            io::ErrorKind::PermissionDenied,
            format!(
                "TLS with {}:{} failed: {t}{}",
                url.host,
                url.port,
                if matches!(t, rustls::Error::InvalidCertificate(_)) {
                    " (a server with a private CA needs --ca FILE)"
                } else {
                    ""
                }
            ),
        ),
        None => transient("sending the request", e),
    }
}

/// Reads an answer's status line: its code, and the line (for messages).
fn status_line(reader: &mut impl BufRead, url: &Url) -> Result<(u16, String), Failure> {
    let transient = |what: &str, e: io::Error| {
        Failure::Transient(io::Error::new(e.kind(), format!("{what}: {e}")))
    };
    let permanent = |kind: io::ErrorKind, m: String| Failure::Permanent(io::Error::new(kind, m));
    let mut line = String::new();
    read_line(reader, &mut line).map_err(|e| tls_or(e, url, &transient, &permanent))?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            permanent(
                io::ErrorKind::InvalidData,
                format!("not an HTTP answer: {:?}", line.trim_end()),
            )
        })?;
    Ok((status, line.trim_end().to_string()))
}

/// One header line, bounded (a hostile server cannot make us read forever).
fn read_line(r: &mut impl BufRead, line: &mut String) -> io::Result<()> {
    let n = r.take(16 << 10).read_line(line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before the answer",
        ));
    }
    if !line.ends_with('\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a header line over 16 KiB",
        ));
    }
    Ok(())
}

/// `bytes A-B/TOTAL` → (A, B, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b, total) = (
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (a <= b && b < total).then_some((a, b, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = Url::parse("https://example.org/a/b.lbi").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "example.org", 443, "/a/b.lbi")
        );
        let u = Url::parse("http://10.0.2.2:8080/x.lbi?k=v").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "10.0.2.2", 8080, "/x.lbi?k=v")
        );
        let u = Url::parse("http://[::1]:81/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 81));
        assert_eq!(u.to_string(), "http://[::1]:81/x");
        let u = Url::parse("http://user@host").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("host", "/"));
        for bad in [
            "ftp://h/x",
            "http:///x",
            "http://h:0/x",
            "http://h:99999/x",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve() {
        let u = Url::parse("https://h:8443/dir/a.lbi").unwrap();
        assert_eq!(
            u.follow("/other/b.lbi").unwrap().to_string(),
            "https://h:8443/other/b.lbi"
        );
        assert_eq!(
            u.follow("b.lbi").unwrap().to_string(),
            "https://h:8443/dir/b.lbi"
        );
        assert_eq!(u.follow("http://x/y").unwrap().to_string(), "http://x/y");
        assert_eq!(u.follow("//x/y").unwrap().to_string(), "https://x/y");
    }

    #[test]
    fn content_ranges_parse() {
        assert_eq!(parse_content_range("bytes 0-99/1000"), Some((0, 99, 1000)));
        assert_eq!(parse_content_range("bytes 5-4/1000"), None);
        assert_eq!(parse_content_range("bytes 0-1000/1000"), None);
        assert_eq!(parse_content_range("bytes */1000"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn paths_and_urls_are_told_apart() {
        assert!(is_url(Path::new("https://h/x.lbi")));
        assert!(is_url(Path::new("http://h/x.lbi")));
        assert!(!is_url(Path::new("/store/x.lbi")));
        assert!(!is_url(Path::new("http:/h")));
        // a URL's parent and a sibling are found textually, as chains need
        let p = Path::new("https://h/dir/child.lbi");
        assert_eq!(
            p.parent().unwrap().join("parent.lbi"),
            Path::new("https://h/dir/parent.lbi")
        );
    }
}
