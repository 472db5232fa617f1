//! Root: network stores on this host against real servers on 127.0.0.1
//! (tests/common/servers.rs). SFTP through sshfs: an ext4 disk is imaged onto the server,
//! verified and restored from it, and the restored files are compared with the source; a
//! password from a credentials file, a wrong password, an unknown host key, a server killed
//! in the middle of an image and a full server disk each end as they must, with no image
//! that looks complete. HTTP(S) from nginx: a restore through a proxy that cuts the
//! connection resumes and restores the same files; HTTPS is checked against the test CA.
//! SMB and NFS need kernel clients this host lacks: tests/qemu_e2e.rs runs them in the
//! booted rescue system.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::servers::{DropProxy, Http, Sshd, TEST_UID};
use common::{noise, require_root, run_lifeboat, sh, LoopDev, Mount};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A 48 MiB ext4 disk file made from a folder of files (no mount needed), and the folder.
fn ext4_disk(dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("docs")).unwrap();
    for i in 0..6u32 {
        std::fs::write(tree.join(format!("r{i}.bin")), noise(3 << 20, i)).unwrap();
        std::fs::write(
            tree.join("docs").join(format!("t{i}.txt")),
            format!("line {i}\n").repeat(20_000),
        )
        .unwrap();
    }
    let disk = dir.join("disk.img");
    sh(&format!(
        "truncate -s 48M {d} && mkfs.ext4 -q -F -d {t} {d}",
        d = disk.display(),
        t = tree.display()
    ));
    (disk, tree)
}

/// Restores nothing; mounts `disk` read-only and compares its files with `tree`.
fn assert_same_files(disk: &Path, tree: &Path) {
    let lo = LoopDev::attach(disk);
    let m = Mount::new(&lo.path, "-o ro");
    let out = std::process::Command::new("diff")
        .arg("-r")
        .arg(tree)
        .arg(m.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // mkfs -d adds lost+found
    let differences: Vec<&str> = text.lines().filter(|l| !l.contains("lost+found")).collect();
    assert!(
        differences.is_empty(),
        "restored files differ: {differences:?}"
    );
}

fn lifeboat(args: &[&str]) -> Output {
    let o = run_lifeboat(args);
    eprintln!(
        "lifeboat {args:?} -> {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// Files in `dir` whose names start with `prefix`.
fn files_like(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A credentials file with these lines.
fn creds(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let f = dir.join(name);
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    f
}

/// The credentials line naming the test user's private key.
fn identity(sshd: &Sshd) -> String {
    format!("identity={}", sshd.key().display())
}

/// The credentials line pinning the server's real host key.
fn host_key(sshd: &Sshd) -> String {
    format!("host_key={}", sshd.host_key())
}

/// `dir/key.creds`: the test user's key and the server's host key, all an SFTP login needs.
fn key_creds(dir: &Path, sshd: &Sshd) -> PathBuf {
    creds(dir, "key.creds", &[identity(sshd), host_key(sshd)])
}

/// The SFTP URL of the folder `dir` on `sshd`, as the test user.
fn sftp_folder(sshd: &Sshd, dir: &Path) -> String {
    format!(
        "sftp://{}@127.0.0.1:{}{}",
        sshd.user(),
        sshd.port(),
        dir.display()
    )
}

/// The SFTP URL of the file `name` in the folder `dir` on `sshd`.
fn sftp_url(sshd: &Sshd, dir: &Path, name: &str) -> String {
    format!("{}/{name}", sftp_folder(sshd, dir))
}

fn fresh_target(dir: &Path) -> PathBuf {
    let t = dir.join("target.img");
    let _ = std::fs::remove_file(&t);
    sh(&format!("truncate -s 48M {}", t.display()));
    t
}

/// Starts `lifeboat image DISK -o URL --level 19` (slow, so there is time to act), with
/// writes retried for 20 s, and returns once its partial file has bytes in it.
fn image_in_background(key: &Path, disk: &Path, url: &str, partial: &Path) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args([
            "--credentials",
            key.to_str().unwrap(),
            "image",
            disk.to_str().unwrap(),
            "-o",
            url,
            "--level",
            "19",
        ])
        // the writes are retried this long once the server is gone (60 s by default)
        .env("LIFEBOAT_NET_RETRY_SECS", "20")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if partial.metadata().is_ok_and(|m| m.len() > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(partial.exists(), "the image never started");
    child
}

#[test]
fn sftp_image_verify_and_restore_round_trip() {
    if !require_root() {
        return;
    }
    let Some(sshd) = Sshd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (disk, tree) = ext4_disk(dir.path());
    let url = sftp_url(&sshd, &sshd.home(), "pc.lbi");
    let key = key_creds(dir.path(), &sshd);
    let key = key.to_str().unwrap();
    ok(&lifeboat(&[
        "--credentials",
        key,
        "image",
        disk.to_str().unwrap(),
        "-o",
        &url,
    ]));
    // on the server: the image, owned by the user who logged in, and nothing partial
    let on_server = sshd.home().join("pc.lbi");
    assert!(on_server.is_file());
    assert_eq!(files_like(&sshd.home(), "pc.lbi"), vec!["pc.lbi"]);
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&on_server.metadata().unwrap()),
        TEST_UID
    );
    ok(&lifeboat(&["verify", on_server.to_str().unwrap()]));
    ok(&lifeboat(&["--credentials", key, "verify", &url]));
    let target = fresh_target(dir.path());
    ok(&lifeboat(&[
        "--credentials",
        key,
        "restore",
        &url,
        target.to_str().unwrap(),
        "--yes",
    ]));
    assert_same_files(&target, &tree);

    // a child next to its parent, over SFTP: --incremental takes the folder's URL
    let folder = sftp_folder(&sshd, &sshd.home());
    ok(&lifeboat(&[
        "--credentials",
        key,
        "image",
        disk.to_str().unwrap(),
        "--incremental",
        &folder,
    ]));
    assert_eq!(
        files_like(&sshd.home(), "").len(),
        2,
        "{:?}",
        files_like(&sshd.home(), "")
    );
    // no mount is left behind
    assert!(common::mounts_holding("lifeboat-store-").is_empty());
}

#[test]
fn sftp_passwords_and_host_keys() {
    if !require_root() {
        return;
    }
    let Some(sshd) = Sshd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = ext4_disk(dir.path());
    let url = |name: &str| sftp_url(&sshd, &sshd.home(), name);
    let hk = host_key(&sshd);
    // the password from a credentials file
    let good = creds(
        dir.path(),
        "good",
        &[format!("password={}", sshd.password()), hk.clone()],
    );
    ok(&lifeboat(&[
        "--credentials",
        good.to_str().unwrap(),
        "image",
        disk.to_str().unwrap(),
        "-o",
        &url("pw.lbi"),
    ]));
    assert!(sshd.home().join("pw.lbi").is_file());
    // a wrong one: refused, said so, nothing written
    let bad = creds(dir.path(), "bad", &["password=not-the-password".into(), hk]);
    let o = lifeboat(&[
        "--credentials",
        bad.to_str().unwrap(),
        "image",
        disk.to_str().unwrap(),
        "-o",
        &url("bad.lbi"),
    ]);
    fails_with(&o, "access denied");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("not-the-password"));
    assert!(files_like(&sshd.home(), "bad").is_empty());
    // an unknown host key without a terminal: refused, not asked about
    let nokey = creds(dir.path(), "nokey", &[identity(&sshd)]);
    let home = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args([
            "--credentials",
            nokey.to_str().unwrap(),
            "image",
            disk.to_str().unwrap(),
            "-o",
            &url("nokey.lbi"),
        ])
        .env("HOME", home.path()) // an empty ~/.ssh/known_hosts
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    fails_with(&o, "host key is not known");
    assert!(files_like(&sshd.home(), "nokey").is_empty());
    // a host key that is not the server's
    let other = creds(
        dir.path(),
        "other",
        &[
            identity(&sshd),
            "host_key=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnKqJ0B1ZqfH9c5mYx1yT0L0v0p1Lb5Q0m0m0m0m0m0".into(),
        ],
    );
    let o = lifeboat(&[
        "--credentials",
        other.to_str().unwrap(),
        "info",
        &url("pw.lbi"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("host key"),
        "{o:?}"
    );
}

#[test]
fn sftp_server_gone_or_full_leaves_no_image() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // a full disk on the server: an 8 MiB ext4 for the user, mounted before sshd starts
    // (sshd runs in a mount namespace of its own, which later mounts do not reach)
    let small = dir.path().join("small.img");
    sh(&format!(
        "truncate -s 8M {s} && mkfs.ext4 -q -F {s}",
        s = small.display()
    ));
    let lo = LoopDev::attach(&small);
    let m = Mount::new(&lo.path, "");
    std::os::unix::fs::chown(m.dir.path(), Some(TEST_UID), Some(TEST_UID)).unwrap();
    let Some(sshd) = Sshd::start() else { return };
    // a disk of random data, so the image is as large as the disk and takes a while
    let disk = dir.path().join("rand.img");
    std::fs::write(&disk, noise(160 << 20, 7)).unwrap();
    let key = key_creds(dir.path(), &sshd);
    let url = sftp_url(&sshd, m.dir.path(), "full.lbi");
    let o = lifeboat(&[
        "--credentials",
        key.to_str().unwrap(),
        "image",
        disk.to_str().unwrap(),
        "-o",
        &url,
    ]);
    fails_with(&o, "the store is full");
    assert!(
        files_like(m.dir.path(), "full.lbi").is_empty(),
        "the partial image is removed"
    );

    // the server killed in the middle: a clear error, and no complete-looking image
    let url = sftp_url(&sshd, &sshd.home(), "gone.lbi");
    let child = image_in_background(&key, &disk, &url, &sshd.home().join("gone.lbi.partial"));
    for p in sshd.pids() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
    let o = child.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    fails_with(&o, "on the network store sftp://");
    assert!(
        !sshd.home().join("gone.lbi").exists(),
        "a complete-looking image was left"
    );
    assert!(common::mounts_holding("lifeboat-store-").is_empty());
}

#[test]
fn http_restore_through_a_dropping_proxy_and_over_tls() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (disk, tree) = ext4_disk(dir.path());
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    ok(&lifeboat(&[
        "image",
        disk.to_str().unwrap(),
        "-o",
        www.join("pc.lbi").to_str().unwrap(),
    ]));
    let Some(http) = Http::start(&www, false) else {
        return;
    };
    // the first 3 connections are cut after 2 MiB of answer
    let Some(proxy) = DropProxy::start(http.port(), 3, 2 << 20) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/pc.lbi", proxy.port());
    let target = fresh_target(dir.path());
    ok(&lifeboat(&[
        "restore",
        &url,
        target.to_str().unwrap(),
        "--yes",
    ]));
    assert_same_files(&target, &tree);
    assert!(
        proxy.log().matches("cut").count() >= 1,
        "the proxy cut nothing: {}",
        proxy.log()
    );

    let Some(https) = Http::start(&www, true) else {
        return;
    };
    let url = https.url("pc.lbi");
    let o = lifeboat(&["info", &url]);
    fails_with(&o, "--ca FILE");
    let ca = https.ca_file().unwrap();
    ok(&lifeboat(&["--ca", ca.to_str().unwrap(), "verify", &url]));
    let target = fresh_target(dir.path());
    ok(&lifeboat(&[
        "restore",
        &url,
        target.to_str().unwrap(),
        "--yes",
        "--ca",
        ca.to_str().unwrap(),
    ]));
    assert_same_files(&target, &tree);
}

#[test]
fn sftp_a_dropped_connection_is_resumed() {
    if !require_root() {
        return;
    }
    let Some(sshd) = Sshd::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("rand.img");
    std::fs::write(&disk, noise(96 << 20, 11)).unwrap();
    let key = key_creds(dir.path(), &sshd);
    let url = sftp_url(&sshd, &sshd.home(), "drop.lbi");
    let child = image_in_background(&key, &disk, &url, &sshd.home().join("drop.lbi.partial"));
    // the connection's own sshd processes die; the listener stays, as after a network blip
    // ([s]: the pattern must not match this shell's own command line)
    let killed = sh(&format!(
        "pkill -KILL -f '[s]shd: {}' ; echo $?",
        sshd.user()
    ));
    assert_eq!(killed.trim(), "0", "no session process to kill");
    let o = child.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&o.stderr));
    ok(&o);
    let img = sshd.home().join("drop.lbi");
    ok(&lifeboat(&["verify", img.to_str().unwrap()]));
}
