//! Tier 3: `lifeboat boot-test` on real bootable and broken disks, under QEMU (TCG). The disks
//! come from tests/helpers/boot-fixtures.sh with the mini kernel from `./build.sh`: a GPT disk
//! with GRUB for BIOS and UEFI, an MBR disk for BIOS, and broken ones (wiped boot code, no
//! kernel, a kernel that panics, a userland that reboots in a loop). Each gets its verdict and
//! stage through an image, an incremental chain member and a raw file (the good one also on
//! virtio and NVMe, and through `restore`/`clone --boot-test`); the sources are
//! unchanged afterwards (hash, `verify`), and nothing is left behind (QEMU, sockets, the
//! overlay), also after Ctrl-C. Skips like tests/qemu_e2e.rs: without the kernel or QEMU,
//! except under CI or LIFEBOAT_REQUIRE_QEMU=1, where it fails.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::sh;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const KERNEL: &str = "out/mini/vmlinuz";

fn prerequisites() -> bool {
    common::qemu_prerequisites(
        &[
            &root().join(KERNEL),
            Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd"),
        ],
        &[
            "qemu-system-x86_64",
            "grub-mkimage",
            "mcopy",
            "sgdisk",
            "busybox",
        ],
        "run ./build.sh --flavour mini and .ci/install-deps.sh",
    )
}

/// The fixtures, built once per test binary.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target/boot-fixtures");
        common::boot_fixtures(&root().join(KERNEL), &dir);
        dir
    })
}

fn lifeboat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str]) -> Output {
    let o = lifeboat().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "lifeboat {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn b3(p: &Path) -> String {
    blake3::hash(&std::fs::read(p).unwrap())
        .to_hex()
        .to_string()
}

/// Processes whose command line holds `needle`.
fn processes(needle: &str) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                v.push(c);
            }
        }
    }
    v
}

/// Checks that a finished boot-test left nothing: no private folder (sockets, the
/// firmware's variables) in /run/lifeboat or `tmp`, no overlay in `out`, no QEMU writing
/// there.
fn assert_clean(name: &str, tmp: &Path, out: &Path) {
    for dir in [Path::new("/run/lifeboat"), tmp] {
        let left: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("lifeboat-boot-test")
            })
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "{name}: left behind: {left:?}");
    }
    let overlays: Vec<_> = std::fs::read_dir(out)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("overlay.tmp"))
        .map(|e| e.path())
        .collect();
    assert!(overlays.is_empty(), "{name}: overlay left: {overlays:?}");
    assert!(
        processes(s(out)).is_empty(),
        "{name}: a process still writes to {}",
        out.display()
    );
}

/// What one boot-test printed and how it ended.
struct Tested {
    code: i32,
    report: Value,
    stderr: String,
}

/// Runs boot-test on `source` with a private TMPDIR, checks that nothing is left behind,
/// and returns the report.
fn boot_test(work: &Path, name: &str, source: &Path, extra: &[&str]) -> Tested {
    let tmp = work.join(format!("{name}.tmp"));
    std::fs::create_dir_all(&tmp).unwrap();
    let out = work.join(format!("{name}.out"));
    let started = Instant::now();
    let o = lifeboat()
        .args(["boot-test", s(source), "--accel", "tcg", "--settle", "8"])
        .args(["--timeout", "150", "--json", "--out", s(&out)])
        .args(extra)
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    eprintln!(
        "boot-test {name} ({:.0} s):\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{name}: no JSON report ({e}): {stderr}"));
    assert_clean(name, &tmp, &out);
    assert!(out.join("report.json").exists());
    Tested {
        code: o.status.code().unwrap_or(-1),
        report,
        stderr,
    }
}

/// A run's (firmware, verdict, stage, sign kind, stages reached).
type Outcome = (String, String, u64, String, Vec<u64>);

/// Each run's outcome.
fn runs(t: &Tested) -> Vec<Outcome> {
    t.report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["firmware"].as_str().unwrap().to_string(),
                r["verdict"].as_str().unwrap().to_string(),
                r["stage"].as_u64().unwrap_or(4),
                r["sign"]["kind"].as_str().unwrap_or("").to_string(),
                r["stages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| match s["stage"].as_str().unwrap() {
                        "boot_code" => 1,
                        "kernel" => 2,
                        "userland" => 3,
                        _ => 4,
                    })
                    .collect(),
            )
        })
        .collect()
}

fn booted(fw: &str) -> Outcome {
    (
        fw.into(),
        "booted".into(),
        4,
        String::new(),
        vec![1, 2, 3, 4],
    )
}

fn failed(fw: &str, stage: u64, sign: &str, stages: &[u64]) -> Outcome {
    (
        fw.into(),
        "failed".into(),
        stage,
        sign.into(),
        stages.to_vec(),
    )
}

#[test]
fn every_fixture_gets_its_verdict_and_stage_through_an_image() {
    if !prerequisites() {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cases: Vec<(&str, &[&str], Vec<_>, i32)> = vec![
        (
            "good-gpt",
            &["--firmware", "both"],
            vec![booted("bios"), booted("uefi")],
            0,
        ),
        ("good-mbr", &[], vec![booted("bios")], 0),
        (
            "wiped",
            &["--firmware", "both"],
            vec![
                failed("bios", 0, "no_boot_device", &[]),
                failed("uefi", 0, "no_boot_device", &[]),
            ],
            1,
        ),
        (
            "no-kernel",
            &[],
            vec![
                failed("bios", 1, "still_screen", &[1]),
                failed("uefi", 1, "still_screen", &[1]),
            ],
            1,
        ),
        (
            "panic",
            &[],
            vec![
                failed("bios", 2, "kernel_panic", &[1, 2]),
                failed("uefi", 2, "kernel_panic", &[1, 2]),
            ],
            1,
        ),
        (
            "reboot-loop",
            &["--firmware", "bios"],
            vec![failed("bios", 3, "reboot_loop", &[1, 2, 3])],
            1,
        ),
    ];
    for (name, extra, want, code) in cases {
        let img = w.join(format!("{name}.lbi"));
        ok(&["image", s(&fx.join(format!("{name}.img"))), "-o", s(&img)]);
        let before = b3(&img);
        let t = boot_test(w, name, &img, extra);
        assert_eq!(runs(&t), want, "{name}: {}", t.stderr);
        assert_eq!(t.code, code, "{name}");
        assert_eq!(t.report["booted"], code == 0, "{name}");
        // the image is unchanged, and still verifies
        assert_eq!(b3(&img), before, "{name}: the image changed");
        ok(&["verify", s(&img)]);
        // the evidence: a screenshot per stage and at the end, the serial log
        for r in t.report["runs"].as_array().unwrap() {
            let shots = r["screenshots"].as_array().unwrap();
            assert!(!shots.is_empty(), "{name}: no screenshot");
            for p in shots {
                let png = std::fs::read(p.as_str().unwrap()).unwrap();
                assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}: {p}");
            }
        }
    }
}

/// Every fixture's outcome under SeaBIOS.
fn bios_outcomes() -> Vec<(&'static str, Outcome)> {
    vec![
        ("good-gpt", booted("bios")),
        ("good-mbr", booted("bios")),
        ("wiped", failed("bios", 0, "no_boot_device", &[])),
        ("no-kernel", failed("bios", 1, "still_screen", &[1])),
        ("panic", failed("bios", 2, "kernel_panic", &[1, 2])),
        ("reboot-loop", failed("bios", 3, "reboot_loop", &[1, 2, 3])),
    ]
}

/// The newest image in `dir` whose name holds `kind`.
fn newest(dir: &Path, kind: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| s(p).contains(kind))
        .collect();
    v.sort();
    v.pop().unwrap()
}

#[test]
fn every_fixture_boots_as_an_incremental_chain_member_holds_it() {
    if !prerequisites() {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // one GPT disk imaged in each of its states: good-gpt as the full image, every other
    // state as an incremental on top of the one before; the MBR disk the same way, from a
    // blank disk of its size
    let mut members = Vec::new();
    for (chain, states) in [
        (
            "gpt",
            vec!["good-gpt", "no-kernel", "panic", "reboot-loop", "wiped"],
        ),
        ("mbr", vec!["blank", "good-mbr"]),
    ] {
        let disk = w.join(format!("{chain}.img"));
        let dir = w.join(chain);
        std::fs::create_dir(&dir).unwrap();
        for (k, state) in states.iter().enumerate() {
            if *state == "blank" {
                let size = std::fs::metadata(fx.join("good-mbr.img")).unwrap().len();
                std::fs::write(&disk, vec![0u8; size as usize]).unwrap();
            } else {
                std::fs::copy(fx.join(format!("{state}.img")), &disk).unwrap();
            }
            if k == 0 {
                ok(&[
                    "image",
                    s(&disk),
                    "-o",
                    s(&dir.join(format!("{chain}.lbi"))),
                ]);
            } else {
                // image names carry the second: one per second
                std::thread::sleep(Duration::from_millis(1100));
                ok(&["image", s(&disk), "--incremental", s(&dir)]);
                members.push((*state, newest(&dir, "-incr")));
            }
        }
    }
    members.insert(0, ("good-gpt", w.join("gpt/gpt.lbi")));
    let hashes: Vec<String> = members.iter().map(|(_, m)| b3(m)).collect();
    let want = bios_outcomes();
    for (state, member) in &members {
        let (_, outcome) = want.iter().find(|(n, _)| n == state).unwrap();
        // the good disk also with isolated networking: the guest has a network card (the
        // mini kernel has no driver for it, so no DHCP request; the login prompt proves
        // stage 4)
        let extra: &[&str] = if *state == "good-gpt" {
            &["--firmware", "bios", "--net"]
        } else {
            &["--firmware", "bios"]
        };
        let t = boot_test(w, &format!("chain-{state}"), member, extra);
        assert_eq!(
            runs(&t),
            std::slice::from_ref(outcome),
            "{state}: {}",
            t.stderr
        );
        if *state == "good-gpt" {
            assert_eq!(t.report["runs"][0]["dhcp_requests"], 0);
        }
    }
    let after: Vec<String> = members.iter().map(|(_, m)| b3(m)).collect();
    assert_eq!(after, hashes, "a chain member changed");
    ok(&["verify", s(&members.last().unwrap().1)]);
    ok(&["verify", s(&newest(&w.join("gpt"), "-incr"))]);
}

#[test]
fn every_fixture_boots_as_a_raw_file() {
    if !prerequisites() {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // raw files: opened read-only, the guest's writes go to the overlay
    for (name, outcome) in bios_outcomes() {
        let raw = w.join(format!("{name}-raw.img"));
        std::fs::copy(fx.join(format!("{name}.img")), &raw).unwrap();
        let before = b3(&raw);
        let t = boot_test(w, &format!("raw-{name}"), &raw, &["--firmware", "bios"]);
        assert_eq!(runs(&t), [outcome], "{name}: {}", t.stderr);
        assert_eq!(b3(&raw), before, "{name}: the raw file changed");
        if name.starts_with("good") {
            // the guest wrote (it remounts / read-write and writes /var/booted)
            assert!(t.report["runs"][0]["written_bytes"].as_u64().unwrap() > 0);
        }
    }
    // and on the other buses, under UEFI
    for bus in ["virtio", "nvme"] {
        let raw = w.join("good-gpt-raw.img");
        let t = boot_test(
            w,
            &format!("raw-{bus}"),
            &raw,
            &["--firmware", "uefi", "--bus", bus],
        );
        assert_eq!(runs(&t), [booted("uefi")], "{bus}: {}", t.stderr);
    }
}

#[test]
fn ctrl_c_stops_the_machine_and_leaves_nothing_behind() {
    if !prerequisites() {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let img = w.join("loop.lbi");
    ok(&["image", s(&fx.join("reboot-loop.img")), "-o", s(&img)]);
    let before = b3(&img);
    let tmp = w.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let errf = w.join("stderr");
    let mut child = lifeboat()
        .args(["boot-test", s(&img), "--accel", "tcg", "--firmware", "bios"])
        .args(["--out", s(&w.join("out"))])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    // interrupt once the boot code was read: QEMU, the server and the overlay are all up
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&errf).unwrap().contains("stage 1") {
        assert!(Instant::now() < deadline, "no stage 1 within 120 s");
        assert!(child.try_wait().unwrap().is_none(), "boot-test ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = w.join("out");
    assert!(!processes(s(&out)).is_empty(), "QEMU is not running");
    sh(&format!("kill -INT {}", child.id()));
    let st = child.wait().unwrap();
    assert_eq!(
        st.code(),
        Some(130),
        "{}",
        std::fs::read_to_string(&errf).unwrap()
    );
    assert_clean("ctrl-c", &tmp, &out);
    assert_eq!(b3(&img), before);
    // killed outright, it still leaves no machine running: QEMU dies with its parent
    let out = w.join("out-kill");
    let mut child = lifeboat()
        .args(["boot-test", s(&img), "--accel", "tcg", "--firmware", "bios"])
        .args(["--out", s(&out)])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes(s(&out)).is_empty() {
        assert!(Instant::now() < deadline, "QEMU did not start within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes(s(&out)).is_empty() {
        assert!(
            Instant::now() < deadline,
            "QEMU outlived a killed boot-test"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(b3(&img), before);
    // the killed run's private folder (sockets, variables) is swept by the next boot-test,
    // even one that fails at once
    let o = lifeboat()
        .args(["boot-test", "/nonexistent.lbi"])
        .args(["--out", s(&w.join("out-none"))])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert_clean("after kill", &tmp, &w.join("out-none"));
}

#[test]
fn restore_and_clone_boot_test_their_target() {
    if !prerequisites() {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let img = w.join("mbr.lbi");
    ok(&["image", s(&fx.join("good-mbr.img")), "-o", s(&img)]);
    let target = w.join("restored.img");
    let tmp = w.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // `lifeboat ARGS --boot-test` with the test's settings, evidence in w/NAME.out
    let with_test = |name: &str, args: &[&str]| {
        lifeboat()
            .args(args)
            .args(["--yes", "--boot-test", "--accel", "tcg", "--settle", "8"])
            .args(["--out", s(&w.join(format!("{name}.out")))])
            .env("TMPDIR", &tmp)
            .output()
            .unwrap()
    };
    let o = with_test("r", &["restore", s(&img), s(&target)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.contains("restored ") && out.contains("verdict: booted"),
        "{out}"
    );
    // a broken disk cloned: the clone is written and verified, and the test says no
    let clone = w.join("cloned.img");
    let panic = fx.join("panic.img");
    let o = with_test(
        "c",
        &[
            "clone",
            s(&panic),
            s(&clone),
            "--json",
            "--firmware",
            "bios",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["booted"], false);
    assert_eq!(report["runs"][0]["sign"]["kind"], "kernel_panic");
    assert_eq!(
        b3(&clone),
        b3(&fx.join("panic.img")),
        "the clone changed after its test"
    );
    assert_clean("restore", &tmp, &w.join("r.out"));
    assert_clean("clone", &tmp, &w.join("c.out"));
}

/// `--fit` (issue 17): the GRUB disk whose root comes first and whose BIOS boot partition and
/// ESP lie after it, cloned onto a disk too small for that layout. The root (with /boot)
/// shrinks, the BIOS boot partition (core.img) and the ESP move left, GRUB's pointers follow,
/// and the copy boots under both firmwares. The source is unchanged.
#[test]
fn a_grub_disk_fitted_onto_a_smaller_disk_boots_under_bios_and_uefi() {
    if !prerequisites() {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = fx.join("fit-gpt.img");
    let before = b3(&src);
    let target = w.join("fitted.img");
    // 59 MiB onto 34 MiB
    std::fs::File::create(&target)
        .unwrap()
        .set_len(34 << 20)
        .unwrap();
    let tmp = w.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let plan = ok(&["clone", s(&src), s(&target), "--fit", "--dry-run", "--json"]);
    let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
    let parts = plan["fit"]["parts"].as_array().unwrap();
    let by = |n: u64| parts.iter().find(|p| p["number"] == n).unwrap();
    assert_eq!(by(3)["action"], "shrink", "{plan}");
    assert_eq!(by(1)["action"], "move", "{plan}");
    assert_eq!(by(2)["action"], "move", "{plan}");
    let o = lifeboat()
        .args(["clone", s(&src), s(&target), "--fit", "--yes"])
        .args(["--boot-test", "--accel", "tcg", "--settle", "8"])
        .args(["--out", s(&w.join("fit.out"))])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("verdict: booted"), "{out}");
    for fw in ["BIOS: booted", "UEFI: booted"] {
        assert!(out.contains(fw), "{fw}: {out}");
    }
    assert_eq!(b3(&src), before, "the source changed");
}
