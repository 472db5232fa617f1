//! Root: the kernel's own NBD client on `lifeboat serve`. `nbd-client` connects /dev/nbdN to
//! the server's unix socket and the block device must equal the disk the image was taken of.
//! Runs only where the kernel has the nbd driver (built in, loaded, or loadable with
//! `modprobe nbd`); elsewhere it says so and returns, even under CI, because no package can
//! add a driver to the running kernel.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Disconnects the nbd device and stops the server, even when the test fails.
struct Guard {
    dev: Option<String>,
    server: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(d) = &self.dev {
            let _ = Command::new("nbd-client").args(["-d", d]).status();
        }
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn kernel_has_nbd() -> bool {
    Path::new("/sys/module/nbd").exists()
        || Command::new("modprobe")
            .arg("nbd")
            .status()
            .is_ok_and(|s| s.success())
            && Path::new("/sys/module/nbd").exists()
}

/// An nbd device nobody uses (its `pid` file is absent while unconnected).
fn free_nbd() -> Option<String> {
    (0..16)
        .map(|i| format!("nbd{i}"))
        .find(|n| {
            Path::new(&format!("/sys/block/{n}")).exists()
                && !Path::new(&format!("/sys/block/{n}/pid")).exists()
        })
        .map(|n| format!("/dev/{n}"))
}

#[test]
fn the_kernel_nbd_client_reads_the_disk() {
    if !common::require_root() {
        return;
    }
    if !kernel_has_nbd() {
        eprintln!(
            "SKIP: this kernel has no nbd driver (no /sys/module/nbd, modprobe nbd failed); \
             the kernel client cannot be tested here"
        );
        return;
    }
    common::require_tool("nbd-client");
    let Some(dev) = free_nbd() else {
        eprintln!("SKIP: every /dev/nbdN is in use");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk.img");
    let mut d = vec![0u8; 16 << 20];
    d[..4 << 20].copy_from_slice(&common::noise(4 << 20, 9));
    std::fs::write(&disk, &d).unwrap();
    let img = tmp.path().join("pc.lbi");
    let st = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["image", disk.to_str().unwrap(), "-o", img.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    let sock = tmp.path().join("k.sock");
    let mut server = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["serve", img.to_str().unwrap(), "--nbd"])
        .arg(format!("unix:{}", sock.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut guard = Guard {
        dev: None,
        server: Some(server),
    };
    common::sh(&format!(
        "nbd-client -unix {} {dev} -N pc -b 4096",
        sock.display()
    ));
    guard.dev = Some(dev.clone());
    assert_eq!(common::dev_size(Path::new(&dev)), d.len() as u64);
    let got = common::read_at(Path::new(&dev), 0, d.len());
    assert!(got == d, "{dev} differs from the disk");
}
