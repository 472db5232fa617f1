//! Root: the network servers of tests/common/servers.rs start on 127.0.0.1 only, serve with
//! real clients, refuse wrong credentials and leave no process behind. Later tests of the
//! network stores (SMB, NFS, SFTP, HTTP) build on these servers, so this proves them first:
//! smbclient puts and gets a file; libnfs's nfs-ls and nfs-cp list and write the NFSv4 export
//! (the host kernel has no NFS client); sshfs mounts the SFTP home with the key and ssh logs
//! in with the password; curl fetches a byte range over HTTP and over HTTPS checked against
//! the test CA; a download through the drop proxy is cut and then resumed.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::noise;
use common::servers::{
    is_loopback_v4, listen_addresses, prerequisites, rpc_null, DropProxy, Ganesha, Http, Smbd,
    Sshd, NFS_PROGRAM,
};
use std::path::Path;
use std::process::{Command, Output};

/// True when the clients a test uses are installed (skip or, under CI, panic otherwise).
fn clients(tools: &[(&str, &str)]) -> bool {
    prerequisites("this test's clients", true, tools)
}

/// Panics unless 127.0.0.1 (plain or IPv4-mapped) is the one address listening on `port`.
fn assert_loopback_only(port: u16) {
    let addrs = listen_addresses(port);
    assert!(
        !addrs.is_empty() && addrs.iter().all(|a| is_loopback_v4(a)),
        "port {port} listens on {addrs:?}, not on 127.0.0.1 alone"
    );
}

/// Panics unless every pid is gone (or a zombie waiting for its new parent).
fn assert_gone(pids: &[i32]) {
    std::thread::sleep(std::time::Duration::from_millis(100));
    let alive: Vec<&i32> = pids
        .iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
            })
        })
        .collect();
    assert!(
        alive.is_empty(),
        "still running after the guard's drop: {alive:?}"
    );
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(program: &str, args: &[&str]) -> String {
    let o = run(program, args);
    assert!(o.status.success(), "{program} {args:?}: {}", text(&o));
    text(&o)
}

#[test]
fn smbd_serves_its_share_to_its_user_only() {
    if !clients(&[("smbclient", "smbclient")]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let share = work.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let Some(smb) = Smbd::start(&share, "alice", "wonder-land") else {
        return;
    };
    assert_loopback_only(smb.port());
    let data = noise(300_000, 19);
    std::fs::write(work.path().join("up.bin"), &data).unwrap();
    let port = smb.port().to_string();
    let unc = smb.unc();
    let client = |creds: &[&str], cmd: &str| {
        let mut args = vec!["-p", &port, &unc];
        args.extend_from_slice(creds);
        args.extend_from_slice(&["-c", cmd]);
        Command::new("smbclient")
            .current_dir(work.path())
            .args(&args)
            .output()
            .unwrap()
    };
    let o = client(
        &["-U", "alice%wonder-land"],
        "put up.bin; ls; get up.bin down.bin",
    );
    assert!(o.status.success(), "smbclient: {}\n{}", text(&o), smb.log());
    assert!(text(&o).contains("up.bin"), "{}", text(&o));
    assert_eq!(std::fs::read(share.join("up.bin")).unwrap(), data);
    assert_eq!(std::fs::read(work.path().join("down.bin")).unwrap(), data);

    let o = client(&["-U", "alice%wrong"], "ls");
    assert!(
        !o.status.success(),
        "a wrong password was let in: {}",
        text(&o)
    );
    assert!(text(&o).contains("NT_STATUS_LOGON_FAILURE"), "{}", text(&o));
    let o = client(&["-N"], "ls");
    assert!(!o.status.success(), "a guest was let in: {}", text(&o));

    let pids = smb.pids();
    assert!(pids.len() > 1, "smbd started no helpers? {pids:?}");
    drop(smb);
    assert_gone(&pids);
    assert!(listen_addresses(port.parse().unwrap()).is_empty());
}

#[test]
fn ganesha_serves_nfs4_without_rpcbind() {
    if !clients(&[("nfs-ls", "libnfs-utils"), ("nfs-cp", "libnfs-utils")]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("export");
    std::fs::create_dir(&export).unwrap();
    std::fs::write(export.join("hello.txt"), "hello over nfs\n").unwrap();
    let Some(nfs) = Ganesha::start(&export) else {
        return;
    };
    assert_loopback_only(nfs.port());
    // no rpcbind runs for it (NFSv4 needs none); ganesha logs that it could not register
    rpc_null(nfs.port(), NFS_PROGRAM, 4).unwrap();

    let listing = ok("nfs-ls", &[&nfs.url("")]);
    assert!(listing.contains("hello.txt"), "{listing}\n{}", nfs.log());
    // a large file read back whole
    let data = noise(3 << 20, 7);
    std::fs::write(export.join("big.bin"), &data).unwrap();
    let back = work.path().join("back.bin");
    ok("nfs-cp", &[&nfs.url("big.bin"), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(back).unwrap(), data);
    // a small file written: Debian 12's libnfs 4.0 cannot encode an NFSv4 WRITE much over
    // 2 KB ("ZDR error: Failed to encode COMPOUND4args"), a client limit, not the server's
    let small = noise(2000, 8);
    let local = work.path().join("up.bin");
    std::fs::write(&local, &small).unwrap();
    ok("nfs-cp", &[local.to_str().unwrap(), &nfs.url("up.bin")]);
    assert_eq!(std::fs::read(export.join("up.bin")).unwrap(), small);
}

/// An sshfs mount, unmounted on drop (lazily, if the server is already gone).
struct SshfsMount<'a>(&'a Path);

impl Drop for SshfsMount<'_> {
    fn drop(&mut self) {
        let gone = Command::new("umount")
            .arg(self.0)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !gone {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

#[test]
fn sshd_serves_sftp_with_a_key_and_a_password() {
    if !clients(&[
        ("sshfs", "sshfs"),
        ("sshpass", "sshpass"),
        ("ssh", "openssh-client"),
    ]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let Some(ssh) = Sshd::start() else {
        return;
    };
    assert_loopback_only(ssh.port());
    let port = ssh.port().to_string();
    // a known_hosts file from the guard's line: strict host key checking must pass
    let known = work.path().join("known_hosts");
    std::fs::write(&known, format!("{}\n", ssh.known_hosts_line())).unwrap();
    assert!(ssh.fingerprint().starts_with("SHA256:"));
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let opts = format!(
        "IdentityFile={},StrictHostKeyChecking=yes,UserKnownHostsFile={},BatchMode=yes",
        ssh.key().display(),
        known.display()
    );
    let remote = format!("{}@127.0.0.1:{}", ssh.user(), ssh.home().display());
    let data = noise(500_000, 3);
    {
        let o = run(
            "sshfs",
            &["-p", &port, "-o", &opts, &remote, mnt.to_str().unwrap()],
        );
        assert!(o.status.success(), "sshfs: {}\n{}", text(&o), ssh.log());
        let _mount = SshfsMount(&mnt);
        std::fs::write(mnt.join("via-sftp.bin"), &data).unwrap();
    }
    assert_eq!(
        std::fs::read(ssh.home().join("via-sftp.bin")).unwrap(),
        data
    );

    let password_login = |password: &str| {
        Command::new("sshpass")
            .args(["-p", password, "ssh", "-p", &port])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .arg(format!("{}@127.0.0.1", ssh.user()))
            .arg("id -u && wc -c < via-sftp.bin")
            .output()
            .unwrap()
    };
    let o = password_login(ssh.password());
    assert!(
        o.status.success(),
        "password login: {}\n{}",
        text(&o),
        ssh.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}\n{}\n", common::servers::TEST_UID, data.len())
    );
    let o = password_login("not-the-password");
    assert!(
        !o.status.success(),
        "a wrong password was let in: {}",
        text(&o)
    );

    // drop the server under a live mount: its connection children (setsid) go too
    let o = run(
        "sshfs",
        &["-p", &port, "-o", &opts, &remote, mnt.to_str().unwrap()],
    );
    assert!(o.status.success(), "sshfs: {}", text(&o));
    let _mount = SshfsMount(&mnt);
    let pids = ssh.pids();
    assert!(pids.len() > 1, "no connection child under sshd? {pids:?}");
    drop(ssh);
    assert_gone(&pids);
}

/// `curl` of bytes 100..=199 of `url`; (HTTP status, body).
fn curl_range(url: &str, extra: &[&str]) -> (String, Vec<u8>) {
    let o = Command::new("curl")
        .args(["-sS", "-r", "100-199", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {url}: {}", text(&o));
    let split = o.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    (
        String::from_utf8_lossy(&o.stdout[split + 1..]).into_owned(),
        o.stdout[..split].to_vec(),
    )
}

#[test]
fn nginx_serves_ranges_over_http_and_https() {
    if !clients(&[("curl", "curl")]) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = noise(1 << 20, 11);
    std::fs::write(root.path().join("disk.img"), &data).unwrap();

    let Some(http) = Http::start(root.path(), false) else {
        return;
    };
    assert_loopback_only(http.port());
    assert!(http.ca_file().is_none());
    let (status, body) = curl_range(&http.url("disk.img"), &[]);
    assert_eq!((status.as_str(), &body[..]), ("206", &data[100..200]));

    let Some(https) = Http::start(root.path(), true) else {
        return;
    };
    assert_loopback_only(https.port());
    let ca = https.ca_file().unwrap();
    let ca = ca.to_str().unwrap();
    let (status, body) = curl_range(&https.url("/disk.img"), &["--cacert", ca]);
    assert_eq!((status.as_str(), &body[..]), ("206", &data[100..200]));
    // the certificate names localhost too
    let local = https.url("disk.img").replace("127.0.0.1", "localhost");
    let (status, _) = curl_range(&local, &["--cacert", ca]);
    assert_eq!(status, "206");
    // without the CA, the certificate is not trusted (curl: 60, peer certificate)
    let o = run("curl", &["-sS", "-o", "/dev/null", &https.url("disk.img")]);
    assert_eq!(o.status.code(), Some(60), "{}", text(&o));
}

#[test]
fn drop_proxy_cuts_a_download_that_then_resumes() {
    if !clients(&[("curl", "curl")]) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let data = noise(3 << 20, 5);
    std::fs::write(root.path().join("disk.img"), &data).unwrap();
    let Some(http) = Http::start(root.path(), false) else {
        return;
    };
    let Some(proxy) = DropProxy::start(http.port(), 1, 1 << 20) else {
        return;
    };
    assert_loopback_only(proxy.port());
    let url = format!("http://127.0.0.1:{}/disk.img", proxy.port());
    let out = root.path().join("download");
    let out = out.to_str().unwrap();
    // the first connection is cut after 1 MiB of response: curl 18, partial file
    let o = run("curl", &["-sS", "-o", out, &url]);
    assert_eq!(o.status.code(), Some(18), "{}\n{}", text(&o), proxy.log());
    let got = std::fs::metadata(out).unwrap().len();
    assert!(
        got > 0 && got < data.len() as u64,
        "{got} bytes after the cut"
    );
    // the second goes through: curl resumes with a Range request
    ok("curl", &["-sS", "-C", "-", "-o", out, &url]);
    assert_eq!(std::fs::read(out).unwrap(), data);
    // the proxy logs a connection when the server closes it, which can be just after curl
    // is done: wait for the line
    let mut log = proxy.log();
    for _ in 0..50 {
        if log.contains("connection 2: passed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = proxy.log();
    }
    assert!(log.contains("connection 1: cut after 1048576"), "{log}");
    assert!(log.contains("connection 2: passed"), "{log}");
}
