//! Tier 1: `lifeboat serve` and `lifeboat export` on plain disk-image files, checked with
//! qemu-img and qemu-io (qemu-utils). Every chain member served over NBD equals its disk
//! state; several clients read at once; writes through `--overlay` are read back while the
//! image file stays byte for byte the same and still verifies; a flipped chunk fails exactly
//! the reads in it and the log names it; SIGINT and SIGTERM stop the server with status 0
//! and no socket left. Exports: raw equals the disk and is sparse, qcow2 and vmdk compare
//! equal, and bad inputs fail with a clear message.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const MIB: usize = 1 << 20;
const DISK: usize = 32 * MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = lifeboat(args);
    assert!(
        o.status.success(),
        "lifeboat {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `lifeboat ARGS` must fail; returns its stderr.
fn fails(args: &[&str]) -> String {
    let o = lifeboat(args);
    assert!(!o.status.success(), "lifeboat {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn qemu(tool: &str, args: &[&str]) -> Output {
    common::require_tool(tool);
    Command::new(tool).args(args).output().unwrap()
}

fn qemu_ok(tool: &str, args: &[&str]) -> String {
    let o = qemu(tool, args);
    assert!(
        o.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A full image and an incremental of a 32 MiB file, with the disk state each describes
/// saved as `state-N.img`.
fn chain(tmp: &Path) -> Vec<(PathBuf, PathBuf)> {
    let dir = tmp.join("images");
    std::fs::create_dir(&dir).unwrap();
    let disk = tmp.join("disk.img");
    let mut d = vec![0u8; DISK];
    d[..6 * MIB].copy_from_slice(&common::noise(6 * MIB, 1));
    d[20 * MIB..21 * MIB].fill(b'L');
    std::fs::write(&disk, &d).unwrap();
    let full = dir.join("pc.lbi");
    ok(&["image", s(&disk), "-o", s(&full)]);
    let st0 = tmp.join("state-0.img");
    std::fs::write(&st0, &d).unwrap();
    d[2 * MIB + 4096..2 * MIB + 4096 + 70_000].copy_from_slice(&common::noise(70_000, 2));
    d[12 * MIB..13 * MIB].copy_from_slice(&common::noise(MIB, 3));
    std::fs::write(&disk, &d).unwrap();
    let incr = dir.join("pc-2.lbi");
    ok(&["image", s(&disk), "-o", s(&incr), "--parent", s(&full)]);
    let st1 = tmp.join("state-1.img");
    std::fs::write(&st1, &d).unwrap();
    vec![(full, st0), (incr, st1)]
}

/// A `lifeboat serve` in the background, killed if a test fails before stopping it.
struct Serving {
    child: Option<Child>,
    uri: String,
    socket: PathBuf,
}

impl Serving {
    fn start(image: &Path, socket: &Path, extra: &[&str]) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args([
                "serve",
                s(image),
                "--nbd",
                &format!("unix:{}", s(socket)),
                "--json",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut sv = Serving {
            child: Some(child),
            uri: String::new(),
            socket: socket.to_path_buf(),
        };
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("serve printed {line:?} ({e}): {}", sv.stop_with("TERM").1));
        assert_eq!(v["listen"], format!("unix:{}", s(socket)));
        sv.uri = v["uri"].as_str().unwrap().to_string();
        assert!(socket.exists());
        sv
    }

    /// Sends SIGname, waits; (exit status, stderr).
    fn stop_with(&mut self, sig: &str) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let status = child.wait().unwrap();
        assert!(!self.socket.exists(), "the socket outlived the server");
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn compare(uri: &str, disk: &Path) -> Output {
    qemu(
        "qemu-img",
        &["compare", "-f", "raw", "-F", "raw", uri, s(disk)],
    )
}

#[test]
fn every_chain_member_serves_its_disk_state_to_several_clients() {
    let tmp = tempfile::tempdir().unwrap();
    for (k, (img, state)) in chain(tmp.path()).iter().enumerate() {
        let sock = tmp.path().join(format!("s{k}.sock"));
        let mut sv = Serving::start(img, &sock, &[]);
        let o = compare(&sv.uri, state);
        assert!(o.status.success(), "{}: {:?}", img.display(), o);
        // the empty export name is the same export
        let plain = format!("nbd+unix:///?socket={}", s(&sock));
        let info = qemu_ok("qemu-img", &["info", "--output=json", &plain]);
        assert!(
            info.contains(&format!("\"virtual-size\": {DISK}")),
            "{info}"
        );
        // two clients at once
        let mut a = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw", &sv.uri, s(state)])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let b = compare(&plain, state);
        assert!(a.wait().unwrap().success() && b.status.success());
        // convert from the export
        let out = tmp.path().join(format!("conv{k}.qcow2"));
        qemu_ok(
            "qemu-img",
            &["convert", "-f", "raw", "-O", "qcow2", &sv.uri, s(&out)],
        );
        qemu_ok("qemu-img", &["compare", "-F", "qcow2", s(state), s(&out)]);
        // reads only: qemu-io's write is refused
        let w = qemu(
            "qemu-io",
            &["-f", "raw", "-c", "write -P 0x11 0 4k", &sv.uri],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&w.stdout),
            String::from_utf8_lossy(&w.stderr)
        );
        assert!(!text.contains("wrote 4096"), "{text}");
        let (status, log) = sv.stop_with("TERM");
        assert!(status.success(), "{status:?}: {log}");
        assert!(log.contains("client 1 connected"), "{log}");
        assert!(!sock.exists(), "socket left behind");
    }
}

#[test]
fn overlay_writes_read_back_and_the_image_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let states = chain(tmp.path());
    let (img, state) = &states[1];
    let before = std::fs::read(img).unwrap();
    let hash = blake3::hash(&before);
    let ov = tmp.path().join("pc.overlay");
    let sock = tmp.path().join("w.sock");
    // an existing overlay file is refused
    std::fs::write(&ov, b"x").unwrap();
    let e = fails(&[
        "serve",
        s(img),
        "--nbd",
        &format!("unix:{}", s(&sock)),
        "--overlay",
        s(&ov),
    ]);
    assert!(e.contains("exists"), "{e}");
    assert_eq!(std::fs::read(&ov).unwrap(), b"x");
    std::fs::remove_file(&ov).unwrap();

    let mut sv = Serving::start(img, &sock, &["--overlay", s(&ov)]);
    let out = qemu_ok(
        "qemu-io",
        &[
            "-f",
            "raw",
            "-c",
            "write -P 0xab 1M 1M",
            "-c",
            "write -z 4M 64k",
            &sv.uri,
        ],
    );
    assert!(out.contains("wrote 1048576"), "{out}");
    // read back through a new connection: the written bytes, the rest as before
    let back = tmp.path().join("back.raw");
    qemu_ok(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &sv.uri, s(&back)],
    );
    let mut want = std::fs::read(state).unwrap();
    want[MIB..2 * MIB].fill(0xab);
    want[4 * MIB..4 * MIB + 65536].fill(0);
    assert!(std::fs::read(&back).unwrap() == want, "read-back differs");
    let (status, log) = sv.stop_with("INT");
    assert!(status.success(), "{log}");
    assert!(
        !sock.exists() && !ov.exists(),
        "socket or overlay left behind"
    );
    // the image is byte for byte the same, and verifies
    assert_eq!(blake3::hash(&std::fs::read(img).unwrap()), hash);
    ok(&["verify", s(img)]);
}

#[test]
fn a_flipped_chunk_fails_its_reads_only_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let states = chain(tmp.path());
    let (img, state) = &states[0];
    // flip a byte in the middle of the stored bytes of the chunk holding disk byte 3 MiB
    let chain = lifeboat::image::Chain::open(img, &[]).unwrap();
    let rec = *chain
        .leaf()
        .records()
        .iter()
        .find(|r| {
            r.disk_offset <= 3 * MIB as u64 && r.disk_offset + u64::from(r.raw_len) > 3 * MIB as u64
        })
        .unwrap();
    let same_frame: Vec<(u64, u64)> = chain
        .leaf()
        .records()
        .iter()
        .filter(|r| r.file_offset == rec.file_offset)
        .map(|r| (r.disk_offset, r.disk_offset + u64::from(r.raw_len)))
        .collect();
    drop(chain);
    common::write_at(
        img,
        rec.file_offset + u64::from(rec.stored_len) / 2,
        &[common::read_at(img, rec.file_offset + u64::from(rec.stored_len) / 2, 1)[0] ^ 0x20],
    );
    let sock = tmp.path().join("d.sock");
    let mut sv = Serving::start(img, &sock, &[]);
    let o = compare(&sv.uri, state);
    assert!(!o.status.success(), "compare passed over a damaged chunk");
    // the first 1 MiB (before the damaged frame) and the 20 MiB mark read fine
    for (skip, n) in [(0usize, 1usize), (20, 1)] {
        let out = tmp.path().join(format!("dd{skip}"));
        qemu_ok(
            "qemu-img",
            &[
                "dd",
                "-f",
                "raw",
                "-O",
                "raw",
                "bs=1M",
                &format!("skip={skip}"),
                // qemu-img dd counts from the start, skipped blocks included
                &format!("count={}", skip + n),
                &format!("if={}", sv.uri),
                &format!("of={}", s(&out)),
            ],
        );
        let got = std::fs::read(&out).unwrap();
        assert!(
            got == common::read_at(state, (skip * MIB) as u64, n * MIB),
            "dd at {skip} MiB"
        );
    }
    let (status, log) = sv.stop_with("TERM");
    assert!(status.success(), "{log}");
    // a frame holds several records: the log names one of those stored in the flipped frame
    let named = same_frame.iter().any(|(d, e)| {
        log.contains(&format!("damaged chunk: image {}: chunk", s(img)))
            && log.contains(&format!("(disk bytes {d}..{e},"))
    });
    assert!(named, "{log}");
    assert!(log.contains("failed (EIO)"), "{log}");
    // an export of the damaged image fails and names the chunk, leaving no output
    for out in ["bad.img", "bad.qcow2"] {
        let out = tmp.path().join(out);
        let e = fails(&["export", s(img), "-o", s(&out)]);
        assert!(e.contains("corrupt") && e.contains("chunk"), "{e}");
        assert!(!out.exists());
    }
}

#[test]
fn exports_equal_the_disk_raw_is_sparse() {
    let tmp = tempfile::tempdir().unwrap();
    let states = chain(tmp.path());
    for (img, state) in &states {
        let raw = tmp.path().join("out.img");
        let _ = std::fs::remove_file(&raw);
        ok(&["export", s(img), "-o", s(&raw)]);
        assert!(std::fs::read(&raw).unwrap() == std::fs::read(state).unwrap());
        let md = std::fs::metadata(&raw).unwrap();
        assert_eq!(md.len(), DISK as u64);
        // 8 MiB of data on a 32 MiB disk
        assert!(
            md.blocks() * 512 < 12 * MIB as u64,
            "not sparse: {} blocks",
            md.blocks()
        );
        assert!(!tmp.path().join("out.img.partial").exists());
    }
    let (img, state) = &states[1];
    for fmt in ["qcow2", "vmdk", "vhdx"] {
        let out = tmp.path().join(format!("out.{fmt}"));
        let text = ok(&["export", s(img), "-o", s(&out)]);
        assert!(text.contains(fmt), "{text}");
        qemu_ok(
            "qemu-img",
            &["compare", "-f", "raw", "-F", fmt, s(state), s(&out)],
        );
    }
    // --json: NDJSON events ending with the summary
    let out = tmp.path().join("j.qcow2");
    let j = ok(&[
        "export",
        s(img),
        "-o",
        s(&out),
        "--format",
        "qcow2",
        "--json",
    ]);
    let last: serde_json::Value = serde_json::from_str(j.lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["format"], "qcow2");
    assert_eq!(last["summary"]["disk_bytes"], DISK as u64);
}

#[test]
fn bad_inputs_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let states = chain(tmp.path());
    let (full, _) = &states[0];
    let (incr, _) = &states[1];
    let out = tmp.path().join("x.img");
    // existing output
    std::fs::write(&out, b"mine").unwrap();
    let e = fails(&["export", s(full), "-o", s(&out)]);
    assert!(e.contains("--force"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), b"mine");
    ok(&["export", s(full), "-o", s(&out), "--force"]);
    std::fs::remove_file(&out).unwrap();
    // unknown extension without --format
    let e = fails(&["export", s(full), "-o", s(&tmp.path().join("x.foo"))]);
    assert!(e.contains("--format"), "{e}");
    // truncated image
    let cut = tmp.path().join("cut.lbi");
    let b = std::fs::read(full).unwrap();
    std::fs::write(&cut, &b[..b.len() / 2]).unwrap();
    let e = fails(&["export", s(&cut), "-o", s(&out)]);
    assert!(e.contains("cut.lbi"), "{e}");
    let e = fails(&[
        "serve",
        s(&cut),
        "--nbd",
        &format!("unix:{}", s(&tmp.path().join("c.sock"))),
    ]);
    assert!(e.contains("cut.lbi"), "{e}");
    // missing parent (moved away)
    let away = tmp.path().join("away.lbi");
    std::fs::rename(full, &away).unwrap();
    let e = fails(&["export", s(incr), "-o", s(&out)]);
    assert!(e.contains("chain broken") && e.contains("parent"), "{e}");
    let sock = tmp.path().join("m.sock");
    let e = fails(&["serve", s(incr), "--nbd", &format!("unix:{}", s(&sock))]);
    assert!(e.contains("chain broken") && e.contains("parent"), "{e}");
    assert!(!sock.exists());
    std::fs::rename(&away, full).unwrap();
    assert!(!out.exists() && !tmp.path().join("x.img.partial").exists());
    // a bad listen address
    let e = fails(&["serve", s(full), "--nbd", "/tmp/x.sock"]);
    assert!(e.contains("unix:PATH"), "{e}");
    // a plain file where the socket would go is not removed
    let f = tmp.path().join("notasocket");
    std::fs::write(&f, b"keep").unwrap();
    let e = fails(&["serve", s(full), "--nbd", &format!("unix:{}", s(&f))]);
    assert!(e.contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&f).unwrap(), b"keep");
}
