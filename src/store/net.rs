//! Network stores: a folder on an SMB share, an NFS export or an SSH server, mounted where
//! images are written and read, exactly like a local store.
//!
//! | Spec | Mounted with |
//! |---|---|
//! | `smb://[user@]host[:port]/share[/path]` | the kernel's SMB client (`cifs`), by mount(2) |
//! | `nfs://host[:port]/export[/path]` | the kernel's NFSv4 client (4.2, 4.1, then 4.0), by mount(2) |
//! | `sftp://[user@]host[:port]/path` | `sshfs` (FUSE over `ssh`); `/path` is absolute on the server |
//!
//! **Credentials** come from a [`Credentials`] value: a password typed at a prompt, or the
//! file named by `lifeboat.credentials=` or `--credentials FILE`, whose lines are
//! `key=value` (`user`, `password`, `domain`, `identity` for an SSH private key, and
//! `host_key` lines, each a `known_hosts` line or `HOST KEYTYPE BASE64` that the SFTP server
//! must present). Passwords are passed to the kernel in the mount data or to sshfs on its
//! standard input, never on a command line, and never appear in an error or a log line:
//! [`NetStore`]'s `Display` has no password, and the URL syntax has no place for one.
//!
//! **SSH host keys.** With `host_key` lines, the server must present one of them. Without,
//! on a host: `ssh`'s own rules (`~/.ssh/known_hosts`; an unknown key is asked about on a
//! terminal, and refused with `--yes` or without one: [`Trust::Refuse`]). In the rescue
//! system the faces show the key's fingerprint ([`host_key_fingerprints`]) and ask before
//! trusting it ([`trust_host_key`] adds it to [`RESCUE_KNOWN_HOSTS`]).
//!
//! **When the network fails.** NFS is mounted `soft` (a server that stops answering makes
//! reads and writes fail after about a minute and a half, rather than hang forever), SMB
//! reconnects by itself and fails operations after its own timeouts, and sshfs reconnects
//! (`reconnect`, with keep-alives every 10 s). A job whose writes fail stops with the error;
//! its image was being written as `NAME.partial` and is never renamed into place.

use super::{Error, Result};
use nix::mount::MsFlags;
use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `known_hosts` file of the rescue system: host keys the user confirmed this session.
pub const RESCUE_KNOWN_HOSTS: &str = "/run/lifeboat/known_hosts";

/// Which protocol a network store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// SMB/CIFS (Windows shares, Samba, most NAS boxes).
    Smb,
    /// NFS version 4.
    Nfs,
    /// SFTP over SSH.
    Sftp,
}

/// A parsed network store spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NetStore {
    /// The protocol.
    pub kind: Kind,
    /// The user in the URL, if any.
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// The port, when not the protocol's own.
    pub port: Option<u16>,
    /// SMB: the share name. NFS and SFTP: empty.
    pub share: String,
    /// The folder: below the share (SMB, without a leading `/`), or the absolute path on the
    /// server (NFS, SFTP).
    pub path: String,
}

impl std::fmt::Display for NetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.kind {
            Kind::Smb => "smb",
            Kind::Nfs => "nfs",
            Kind::Sftp => "sftp",
        };
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = super::url_host(&self.host);
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        match self.kind {
            Kind::Smb if self.path.is_empty() => {
                write!(f, "{scheme}://{user}{host}{port}/{}", self.share)
            }
            Kind::Smb => write!(
                f,
                "{scheme}://{user}{host}{port}/{}/{}",
                self.share, self.path
            ),
            _ => write!(f, "{scheme}://{user}{host}{port}{}", self.path),
        }
    }
}

impl NetStore {
    /// Parses `smb://`, `cifs://`, `nfs://`, `sftp://` or `ssh://` specs: `None` for anything
    /// else (a local spec), an error naming the problem for a bad one.
    pub fn parse(spec: &str) -> Option<Result<NetStore>> {
        let (scheme, rest) = spec.split_once("://")?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "smb" | "cifs" => Kind::Smb,
            "nfs" => Kind::Nfs,
            "sftp" | "ssh" => Kind::Sftp,
            _ => return None,
        };
        Some(Self::parse_rest(spec, kind, rest))
    }

    fn parse_rest(spec: &str, kind: Kind, rest: &str) -> Result<NetStore> {
        let bad = |reason: &str| Error::BadNetSpec {
            spec: redacted(spec),
            reason: reason.to_string(),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => {
                if u.contains(':') {
                    return Err(bad(
                        "a password does not belong in the URL (it would show on the screen \
                         and in logs): give it at the prompt or in the credentials file",
                    ));
                }
                (Some(u.to_string()).filter(|u| !u.is_empty()), h)
            }
            None => (None, authority),
        };
        let (host, port) = super::split_host_port(hostport).map_err(bad)?;
        let port = match port {
            None | Some("") => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad(&format!("{p:?} is not a port number")))?,
            ),
        };
        if path.contains(|c: char| c.is_control() || c == ',') {
            return Err(bad("the path has a comma or a control character"));
        }
        let path = path.trim_end_matches('/');
        let (share, path) = match kind {
            Kind::Smb => {
                let p = path.trim_start_matches('/');
                let (share, sub) = p.split_once('/').unwrap_or((p, ""));
                if share.is_empty() {
                    return Err(bad("no share: smb://host/SHARE[/folder]"));
                }
                (share.to_string(), sub.trim_matches('/').to_string())
            }
            Kind::Nfs if path.is_empty() => {
                return Err(bad("no export path: nfs://host/EXPORT[/folder]"))
            }
            Kind::Nfs | Kind::Sftp => (
                String::new(),
                if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
            ),
        };
        Ok(NetStore {
            kind,
            user,
            host,
            port,
            share,
            path,
        })
    }

    /// The store one folder up and the last name: for a URL that names an image file
    /// (`sftp://host/backups/pc.lbi` is the store `sftp://host/backups` and `pc.lbi`).
    pub fn split_file(&self) -> Option<(NetStore, String)> {
        let mut s = self.clone();
        let (dir, name) = match self.kind {
            Kind::Smb => {
                let (d, n) = self.path.rsplit_once('/').unwrap_or(("", &self.path));
                (d.to_string(), n.to_string())
            }
            _ => {
                let (d, n) = self.path.rsplit_once('/')?;
                (
                    if d.is_empty() {
                        "/".into()
                    } else {
                        d.to_string()
                    },
                    n.to_string(),
                )
            }
        };
        if name.is_empty() || (self.kind == Kind::Nfs && dir == "/") {
            return None;
        }
        s.path = dir;
        Some((s, name))
    }

    /// The user to log in as: the URL's, else the credentials file's.
    fn user<'a>(&'a self, creds: &'a Credentials) -> Option<&'a str> {
        self.user.as_deref().or(creds.user.as_deref())
    }

    /// Whether mounting it will want a password that `creds` does not have: SMB with a user
    /// (guest access needs none), and never SSH (keys and agents first; ssh asks itself).
    pub fn wants_password(&self, creds: &Credentials) -> bool {
        self.kind == Kind::Smb && creds.password.is_none() && self.user(creds).is_some()
    }
}

/// `spec` with any password in it (`user:password@`) replaced by `***`.
fn redacted(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{}", &rest[end..])
        }
        _ => spec.to_string(),
    }
}

/// The keys of a credentials file that belong to an S3 store ([`super::s3`]).
pub const S3_KEYS: [&str; 5] = [
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "aws_region",
    "aws_endpoint_url",
];

/// What a store's credentials file or prompt gave.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// `user=`.
    pub user: Option<String>,
    /// `password=` (or what was typed at the prompt).
    pub password: Option<String>,
    /// `domain=` (SMB).
    pub domain: Option<String>,
    /// `identity=`: an SSH private key file.
    pub identity: Option<PathBuf>,
    /// `host_key=` lines: the SSH host keys to accept (known_hosts lines).
    pub host_keys: Vec<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .field("domain", &self.domain)
            .field("identity", &self.identity)
            .field("host_keys", &self.host_keys.len())
            .finish()
    }
}

impl Credentials {
    /// Parses a credentials file's text: `key=value` lines, `#` comments and blank lines
    /// ignored; an unknown key is an error naming its line (a typo must not silently leave a
    /// password out).
    pub fn parse(text: &str, file: &Path) -> Result<Credentials> {
        let mut c = Credentials::default();
        for (i, line) in text.lines().enumerate() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let bad = |reason: String| Error::Credentials {
                file: file.to_path_buf(),
                line: i + 1,
                reason,
            };
            let (k, v) = l
                .split_once('=')
                .ok_or_else(|| bad("expected key=value".into()))?;
            let v = v.trim_end_matches(['\r', '\n']);
            match k.trim() {
                "user" | "username" => c.user = Some(v.trim().to_string()),
                "password" | "pass" => c.password = Some(v.to_string()),
                "domain" => c.domain = Some(v.trim().to_string()),
                "identity" => c.identity = Some(PathBuf::from(v.trim())),
                "host_key" => c.host_keys.push(v.trim().to_string()),
                // an S3 store's, read by store/s3.rs
                k if S3_KEYS.contains(&k) => {}
                other => {
                    return Err(bad(format!(
                        "unknown key {other:?} (user, password, domain, identity, host_key, \
                         or an S3 store's aws_access_key_id, aws_secret_access_key, \
                         aws_session_token, aws_region, aws_endpoint_url)"
                    )))
                }
            }
        }
        Ok(c)
    }

    /// Reads and parses a credentials file.
    pub fn read(file: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::CredentialsFile {
            file: file.to_path_buf(),
            source,
        })?;
        Credentials::parse(&text, file)
    }
}

/// Where the rescue system keeps the boot credentials (`lifeboat.credentials=`), for the
/// store at boot, the console, the menu's network store form (under what is typed there)
/// and network paths on the command line.
pub const CREDENTIALS: &str = "/run/lifeboat/credentials";

/// The credentials given at boot ([`CREDENTIALS`]), or none.
pub fn default_credentials() -> Result<Credentials> {
    let p = Path::new(CREDENTIALS);
    if p.is_file() {
        Credentials::read(p)
    } else {
        Ok(Credentials::default())
    }
}

/// What to do about an SSH host key that is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Let `ssh` ask on the terminal (a host CLI on a terminal).
    Ask,
    /// Refuse it (`--yes`, no terminal, unattended boots).
    Refuse,
}

/// Mounts `store` at `at` (created if need be), read-write. The error says which of wrong
/// credentials, an unknown host, a missing share or export, an unreachable server or a
/// missing client it was.
pub fn mount(store: &NetStore, creds: &Credentials, trust: Trust, at: &Path) -> Result<()> {
    std::fs::create_dir_all(at).map_err(|source| Error::CreateDir {
        path: at.to_path_buf(),
        source,
    })?;
    match store.kind {
        Kind::Smb => mount_smb(store, creds, at),
        Kind::Nfs => mount_nfs(store, at),
        Kind::Sftp => mount_sftp(store, creds, trust, at),
    }
}

/// The host's first IPv4 address (the kernel clients take addresses, not names).
fn resolve(store: &NetStore, default_port: u16) -> Result<std::net::IpAddr> {
    let addrs: Vec<_> = (store.host.as_str(), store.port.unwrap_or(default_port))
        .to_socket_addrs()
        .map_err(|e| Error::NetUnknownHost {
            host: store.host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .map(|a| a.ip())
        .ok_or_else(|| Error::NetUnknownHost {
            host: store.host.clone(),
            reason: "no address".into(),
        })
}

/// What a mount(2) errno means for a network store.
fn mount_error(store: &NetStore, fs: &'static str, e: nix::errno::Errno) -> Error {
    use nix::errno::Errno;
    let spec = store.to_string();
    match e {
        Errno::EACCES | Errno::EPERM | Errno::EKEYREJECTED => Error::NetDenied {
            spec,
            reason: match store.kind {
                Kind::Smb => "the server refused the user name or password".into(),
                _ => "the server refused access to the export (check its client list)".into(),
            },
        },
        Errno::ENOENT | Errno::ENXIO | Errno::EBADF => Error::NetNoShare {
            spec,
            what: match store.kind {
                Kind::Smb => "share or folder",
                _ => "export or folder",
            },
        },
        Errno::ENODEV => Error::NetNoClient { spec, fs },
        Errno::ECONNREFUSED
        | Errno::EHOSTUNREACH
        | Errno::ENETUNREACH
        | Errno::ETIMEDOUT
        | Errno::EHOSTDOWN => Error::NetUnreachable {
            spec,
            reason: std::io::Error::from(e).to_string(),
        },
        other => Error::NetMount {
            spec,
            fs,
            source: std::io::Error::from(other),
        },
    }
}

fn mount_smb(store: &NetStore, creds: &Credentials, at: &Path) -> Result<()> {
    let _ = crate::net::load_fs_module("cifs");
    let ip = resolve(store, 445)?;
    let mut data = format!("ip={ip},unc=\\\\{}\\{}", store.host, store.share);
    if !store.path.is_empty() {
        data.push_str(&format!(",prefixpath={}", store.path));
    }
    if let Some(p) = store.port {
        data.push_str(&format!(",port={p}"));
    }
    match store.user(creds) {
        Some(u) => {
            data.push_str(&format!(",username={u}"));
            // the kernel reads a doubled comma as a comma inside the password
            if let Some(p) = &creds.password {
                data.push_str(&format!(",password={}", p.replace(',', ",,")));
            }
        }
        // no user: the server's guest account (the kernel has no "guest" option of its own)
        None => data.push_str(",username=guest"),
    }
    if let Some(d) = &creds.domain {
        data.push_str(&format!(",domain={d}"));
    }
    data.push_str(",uid=0,gid=0,file_mode=0600,dir_mode=0700,nobrl");
    let source = format!("//{}/{}", store.host, store.share);
    let flags = MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    nix::mount::mount(
        Some(source.as_str()),
        at,
        Some("cifs"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|e| mount_error(store, "cifs", e))
}

fn mount_nfs(store: &NetStore, at: &Path) -> Result<()> {
    let _ = crate::net::load_fs_module("nfs4");
    let ip = resolve(store, 2049)?;
    let host = if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    };
    let source = format!("{host}:{}", store.path);
    let flags = MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
    let mut last = nix::errno::Errno::EPROTONOSUPPORT;
    for vers in ["4.2", "4.1", "4.0"] {
        let mut data =
            format!("vers={vers},addr={ip},clientaddr=0.0.0.0,soft,timeo=150,retrans=3,proto=tcp");
        if let Some(p) = store.port {
            data.push_str(&format!(",port={p}"));
        }
        match nix::mount::mount(
            Some(source.as_str()),
            at,
            Some("nfs4"),
            flags,
            Some(data.as_str()),
        ) {
            Ok(()) => return Ok(()),
            // the server does not speak this minor version: try the next
            Err(e @ (nix::errno::Errno::EPROTONOSUPPORT | nix::errno::Errno::EINVAL)) => last = e,
            Err(e) => return Err(mount_error(store, "nfs4", e)),
        }
    }
    Err(mount_error(store, "nfs4", last))
}

/// Options shared by sshfs and ssh-keyscan callers: the port, the key file, host keys.
fn ssh_options(
    store: &NetStore,
    creds: &Credentials,
    trust: Trust,
    known: Option<&Path>,
) -> Vec<String> {
    let mut o = vec![
        "ServerAliveInterval=10".to_string(),
        "ServerAliveCountMax=3".to_string(),
        "ConnectTimeout=15".to_string(),
    ];
    if let Some(k) = known {
        o.push(format!("UserKnownHostsFile={}", k.display()));
        o.push("StrictHostKeyChecking=yes".into());
    } else if trust == Trust::Refuse {
        o.push("StrictHostKeyChecking=yes".into());
    }
    if let Some(id) = &creds.identity {
        o.push(format!("IdentityFile={}", id.display()));
    }
    if creds.password.is_none() && trust == Trust::Refuse {
        // nobody to type a password or a key's passphrase: fail instead of waiting
        o.push("BatchMode=yes".into());
    }
    if let Some(p) = store.port {
        o.push(format!("Port={p}"));
    }
    o
}

fn mount_sftp(store: &NetStore, creds: &Credentials, trust: Trust, at: &Path) -> Result<()> {
    // the keys to accept: the credentials file's, else the ones confirmed this session in
    // the rescue system, else ssh's own files
    let known = if !creds.host_keys.is_empty() {
        // beside the mount point, kept while it is mounted: sshfs's reconnects check the key
        // again (netpath removes it after unmounting)
        let f = known_hosts_beside(at);
        let port = store.port.unwrap_or(22);
        let text: String = creds
            .host_keys
            .iter()
            .map(|k| known_hosts_line(k, &store.host, port) + "\n")
            .collect();
        std::fs::write(&f, text).map_err(|source| Error::CreateDir {
            path: f.clone(),
            source,
        })?;
        Some(f)
    } else if Path::new(RESCUE_KNOWN_HOSTS).exists() {
        Some(PathBuf::from(RESCUE_KNOWN_HOSTS))
    } else {
        None
    };
    let user = store
        .user(creds)
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let host = super::url_host(&store.host);
    let mut cmd = Command::new("sshfs");
    cmd.arg(format!("{user}{host}:{}", store.path)).arg(at);
    // max_write: 1 MiB FUSE writes instead of 128 KiB. AES-GCM first: with AES-NI it costs a
    // third of ChaCha20's CPU, and on loopback the server's crypto shares the cores with the
    // compression (bench/net.sh). "^" puts it at the head of ssh's default list (OpenSSH
    // 8.7+), which a server without it falls back to; a list with commas cannot pass
    // through sshfs's -o
    let mut opts = vec![
        "reconnect".to_string(),
        "default_permissions".into(),
        "idmap=none".into(),
        "max_write=1048576".into(),
        "Ciphers=^aes128-gcm@openssh.com".into(),
    ];
    if creds.password.is_some() {
        opts.push("password_stdin".into());
    }
    opts.extend(ssh_options(store, creds, trust, known.as_deref()));
    cmd.arg("-o").arg(opts.join(","));
    // ssh's own messages (a refused password, a host key) go to this file: sshfs shows
    // them only in its debug mode
    let ssh_log = std::env::temp_dir().join(format!("lifeboat-ssh-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&ssh_log);
    cmd.arg("-o")
        .arg(format!("ssh_command=ssh -E {}", ssh_log.display()));
    // the password on standard input; ssh's own prompts (a host key, a passphrase) go to the
    // terminal when there is one and Trust::Ask lets them
    cmd.stdin(if creds.password.is_some() {
        Stdio::piped()
    } else {
        Stdio::inherit()
    });
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NetNoClient {
            spec: store.to_string(),
            fs: "SFTP (sshfs)",
        },
        _ => Error::HelperStart {
            tool: "sshfs",
            fs: "SFTP",
            source,
        },
    })?;
    if let (Some(p), Some(mut stdin)) = (&creds.password, child.stdin.take()) {
        let _ = writeln!(stdin, "{p}");
    }
    let out = child
        .wait_with_output()
        .map_err(|source| Error::HelperStart {
            tool: "sshfs",
            fs: "SFTP",
            source,
        })?;
    let logged = std::fs::read_to_string(&ssh_log).unwrap_or_default();
    let _ = std::fs::remove_file(&ssh_log);
    if out.status.success() {
        more_readahead(at);
        return Ok(());
    }
    let said = format!("{logged}{}", String::from_utf8_lossy(&out.stderr));
    Err(sftp_error(store, &said))
}

/// Kernel read-ahead on the FUSE mount at `at`: 1 MiB instead of the kernel's 128 KiB, so
/// that a sequential read (a restore, the check after imaging) keeps more SFTP reads in
/// flight per round trip. The check of a 530 MB image on loopback took 1.2 to 1.4 s against
/// 1.5 to 2.1 s. Best effort: the knob is the mount's backing device in sysfs, which only
/// root may write.
fn more_readahead(at: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(at) else {
        return;
    };
    let dev = m.dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    let _ = std::fs::write(knob, "1024");
}

/// The known_hosts file an sftp mount at `at` made from `host_key=` lines: beside it, for as
/// long as it is mounted.
pub fn known_hosts_beside(at: &Path) -> PathBuf {
    let mut name = at.as_os_str().to_os_string();
    name.push(".known_hosts");
    PathBuf::from(name)
}

/// What sshfs's (and ssh's) message means.
fn sftp_error(store: &NetStore, said: &str) -> Error {
    let spec = store.to_string();
    let low = said.to_ascii_lowercase();
    let line = said
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if low.contains("host key verification failed")
        || low.contains("remote host identification has changed")
    {
        Error::NetHostKey {
            host: store.host.clone(),
            reason: if low.contains("has changed") {
                "the server's host key is not the one recorded: someone may be impersonating it"
                    .into()
            } else {
                "the server's host key is not known: confirm it (its fingerprint is shown by \
                 the console's store command and the menu) or give host_key= in the \
                 credentials file"
                    .into()
            },
        }
    } else if low.contains("permission denied") || low.contains("authentication failed") {
        Error::NetDenied {
            spec,
            reason: "the server refused the user name, password or key".into(),
        }
    } else if low.contains("could not resolve hostname")
        || low.contains("name or service not known")
    {
        Error::NetUnknownHost {
            host: store.host.clone(),
            reason: line,
        }
    } else if low.contains("no such file") {
        Error::NetNoShare {
            spec,
            what: "folder",
        }
    } else if low.contains("connection refused")
        || low.contains("timed out")
        || low.contains("no route to host")
        || low.contains("network is unreachable")
        || low.contains("connection closed")
        || low.contains("read: connection reset")
    {
        Error::NetUnreachable { spec, reason: line }
    } else {
        Error::NetHelper {
            spec,
            tool: "sshfs",
            output: line,
        }
    }
}

/// A `host_key=` value as a known_hosts line for `host`:`port`: a full line is kept; a bare
/// `KEYTYPE BASE64` gets the host in front.
fn known_hosts_line(key: &str, host: &str, port: u16) -> String {
    let first = key.split_whitespace().next().unwrap_or("");
    if first.starts_with("ssh-") || first.starts_with("ecdsa-") || first.starts_with("sk-") {
        let h = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        format!("{h} {key}")
    } else {
        key.to_string()
    }
}

/// The SSH server's host keys, with their SHA256 fingerprints, as `ssh-keyscan` and
/// `ssh-keygen -l` report them: for a face to show before it trusts one.
pub fn host_key_fingerprints(store: &NetStore) -> Result<Vec<(String, String)>> {
    let port = store.port.unwrap_or(22).to_string();
    let out = Command::new("ssh-keyscan")
        .args(["-T", "10", "-p", &port, &store.host])
        .stderr(Stdio::null())
        .output()
        .map_err(|source| Error::HelperStart {
            tool: "ssh-keyscan",
            fs: "SFTP",
            source,
        })?;
    let mut keys = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut kg = Command::new("ssh-keygen")
            .args(["-l", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| Error::HelperStart {
                tool: "ssh-keygen",
                fs: "SFTP",
                source,
            })?;
        if let Some(mut i) = kg.stdin.take() {
            let _ = writeln!(i, "{line}");
        }
        let o = kg.wait_with_output().map_err(|source| Error::HelperStart {
            tool: "ssh-keygen",
            fs: "SFTP",
            source,
        })?;
        let fp = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        keys.push((line.to_string(), fp));
    }
    if keys.is_empty() {
        return Err(Error::NetUnreachable {
            spec: store.to_string(),
            reason: "no SSH server answered".into(),
        });
    }
    Ok(keys)
}

/// Whether this session already trusts a key of `store`'s server ([`RESCUE_KNOWN_HOSTS`]
/// has a line for its host and port).
pub fn host_key_trusted(store: &NetStore) -> bool {
    let port = store.port.unwrap_or(22);
    let name = if port == 22 {
        store.host.clone()
    } else {
        format!("[{}]:{port}", store.host)
    };
    std::fs::read_to_string(RESCUE_KNOWN_HOSTS).is_ok_and(|t| {
        t.lines()
            .filter_map(|l| l.split_whitespace().next())
            .any(|hosts| hosts.split(',').any(|h| h == name))
    })
}

/// Trusts a known_hosts line (from [`host_key_fingerprints`]) for the rest of this session
/// of the rescue system.
pub fn trust_host_key(line: &str) -> Result<()> {
    let p = Path::new(RESCUE_KNOWN_HOSTS);
    if let Some(d) = p.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .and_then(|mut f| writeln!(f, "{line}"))
        .map_err(|source| Error::CreateDir {
            path: p.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> NetStore {
        NetStore::parse(s).expect("a network spec").expect("valid")
    }

    #[test]
    fn specs_parse() {
        let s = p("smb://alice@nas.local/backups/pcs/room1/");
        assert_eq!(
            (
                s.kind,
                s.user.as_deref(),
                s.host.as_str(),
                s.port,
                s.share.as_str(),
                s.path.as_str()
            ),
            (
                Kind::Smb,
                Some("alice"),
                "nas.local",
                None,
                "backups",
                "pcs/room1"
            )
        );
        assert_eq!(s.to_string(), "smb://alice@nas.local/backups/pcs/room1");
        let s = p("nfs://10.0.2.2:2050/export/images");
        assert_eq!(
            (s.kind, s.port, s.path.as_str()),
            (Kind::Nfs, Some(2050), "/export/images")
        );
        let s = p("sftp://root@[::1]:2222/srv/img");
        assert_eq!(
            (s.kind, s.host.as_str(), s.port, s.path.as_str()),
            (Kind::Sftp, "::1", Some(2222), "/srv/img")
        );
        assert_eq!(s.to_string(), "sftp://root@[::1]:2222/srv/img");
        assert_eq!(p("sftp://h").path, "/");
        assert!(NetStore::parse("LABEL=x").is_none());
        assert!(NetStore::parse("https://h/x").is_none());
        for bad in [
            "smb://h",
            "smb://h/",
            "nfs://h",
            "smb:///share",
            "smb://u:secret@h/share",
            "sftp://h:99999/x",
            "nfs://h/a,b",
        ] {
            assert!(matches!(NetStore::parse(bad), Some(Err(_))), "{bad}");
        }
        // the password never shows
        let e = NetStore::parse("smb://u:secret@h/share")
            .unwrap()
            .unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn a_file_url_splits_into_its_store_and_name() {
        let (s, n) = p("sftp://h/srv/pc.lbi").split_file().unwrap();
        assert_eq!((s.path.as_str(), n.as_str()), ("/srv", "pc.lbi"));
        let (s, n) = p("smb://h/share/pc.lbi").split_file().unwrap();
        assert_eq!(
            (s.share.as_str(), s.path.as_str(), n.as_str()),
            ("share", "", "pc.lbi")
        );
        let (s, n) = p("smb://h/share/a/b/pc.lbi").split_file().unwrap();
        assert_eq!((s.path.as_str(), n.as_str()), ("a/b", "pc.lbi"));
        assert!(p("nfs://h/export").split_file().is_none());
        let (s, n) = p("sftp://h/pc.lbi").split_file().unwrap();
        assert_eq!((s.path.as_str(), n.as_str()), ("/", "pc.lbi"));
    }

    #[test]
    fn credentials_files_parse_and_hide_the_password() {
        let f = Path::new("/boot/creds");
        let c = Credentials::parse(
            "# the NAS\nuser=alice\npassword=p=a,ss \ndomain=HOME\nhost_key=ssh-ed25519 AAAA\n\n",
            f,
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(
            c.password.as_deref(),
            Some("p=a,ss "),
            "kept exactly, spaces too"
        );
        assert_eq!(c.host_keys, vec!["ssh-ed25519 AAAA"]);
        assert!(!format!("{c:?}").contains("p=a,ss"));
        let e = Credentials::parse("user=a\npasswd=x\n", f).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        assert!(
            !e.to_string().contains('x') || !e.to_string().contains("=x"),
            "{e}"
        );
        assert!(Credentials::parse("nonsense\n", f).is_err());
    }

    #[test]
    fn host_keys_become_known_hosts_lines() {
        assert_eq!(
            known_hosts_line("ssh-ed25519 AAAA", "h", 22),
            "h ssh-ed25519 AAAA"
        );
        assert_eq!(
            known_hosts_line("ssh-ed25519 AAAA", "10.0.2.2", 2222),
            "[10.0.2.2]:2222 ssh-ed25519 AAAA"
        );
        assert_eq!(
            known_hosts_line("nas ssh-rsa BBBB", "h", 22),
            "nas ssh-rsa BBBB"
        );
    }

    #[test]
    fn sshfs_messages_are_told_apart() {
        let s = p("sftp://u@h/x");
        let kind = |m: &str| match sftp_error(&s, m) {
            Error::NetHostKey { .. } => "hostkey",
            Error::NetDenied { .. } => "denied",
            Error::NetUnknownHost { .. } => "unknown",
            Error::NetNoShare { .. } => "missing",
            Error::NetUnreachable { .. } => "unreachable",
            _ => "other",
        };
        assert_eq!(
            kind("Host key verification failed.\nread: Connection reset by peer"),
            "hostkey"
        );
        assert_eq!(
            kind("u@h: Permission denied (publickey,password).\n"),
            "denied"
        );
        assert_eq!(
            kind("ssh: Could not resolve hostname h: Name or service not known"),
            "unknown"
        );
        assert_eq!(
            kind("remote host has disconnected\nNo such file or directory"),
            "missing"
        );
        assert_eq!(
            kind("ssh: connect to host h port 22: Connection refused"),
            "unreachable"
        );
        assert_eq!(kind("something else"), "other");
    }
}
