//! Tier 2 (root): images in an S3 store (src/store/s3.rs), against a real SeaweedFS started
//! on 127.0.0.1 by the test (tests/common/servers.rs, `Weed`). One server serves every step,
//! in order:
//! - a GPT disk with ext4 is imaged to `s3://lifeboat/pcs/pc.lbi`, which `info` and `verify`
//!   read and which restores onto a second loop disk whose files match the source's; the
//!   bucket then holds that one object and no unfinished upload;
//! - a second image of that name is refused, and the object is as it was;
//! - an incremental named with `--parent s3://…` restores the changed files, and is mounted
//!   (`mount`) and served over NBD (`serve`) straight from the bucket;
//! - an encrypted image shows none of the disk's file names or content in the object (read
//!   with curl, not with the code under test), and a wrong passphrase writes nothing; its
//!   passphrases are changed in the bucket (`key add`, `key remove`);
//! - wrong credentials are refused with a message that names them;
//! - the server is stopped in the middle of an upload: the image fails (exit 1), the bucket
//!   holds no object of that name, and once the server is back a second run succeeds and
//!   leaves no unfinished upload behind.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{build, contents, p, part, snapshot, target, Extras, Fs, Label, MIB};
use common::servers::Weed;
use common::{contains_bytes, noise, require_root, require_tools, sh, Mount};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NAME: &str = "Quokka-invoices-30117.txt";
const CONTENT: &[u8] = b"Narwhal ledger line 5521-8830 private";

/// `lifeboat args` with the store's credentials in the environment (and `extra` after them).
fn lb(weed: &Weed, extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in weed.env() {
        c.env(k, v);
    }
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `lb`, which must succeed; its output.
fn ok(weed: &Weed, args: &[&str]) -> String {
    let o = lb(weed, &[], args);
    assert!(o.status.success(), "lifeboat {args:?}: {}", text(&o));
    text(&o)
}

/// `lb` with `env`, which must fail with exit 1 and `needle` in its output.
fn fails(weed: &Weed, env: &[(&str, &str)], args: &[&str], needle: &str) -> String {
    let o = lb(weed, env, args);
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "lifeboat {args:?} should fail: {t}"
    );
    assert!(
        t.contains(needle),
        "lifeboat {args:?}: no `{needle}` in:\n{t}"
    );
    t
}

/// The distinctive files: text lines (compressible) and the content planted in noise.
fn write_secrets(root: &Path, seed: u32) {
    let mut t = Vec::new();
    for i in 0..3000 {
        t.extend_from_slice(CONTENT);
        t.extend_from_slice(format!(" row {i}\n").as_bytes());
    }
    std::fs::create_dir_all(root.join("private")).unwrap();
    std::fs::write(root.join("private").join(NAME), &t).unwrap();
    let mut n = noise(4 * MIB as usize, seed);
    n[MIB as usize + 7..MIB as usize + 7 + CONTENT.len()].copy_from_slice(CONTENT);
    std::fs::write(root.join(format!("private/vault-{seed}.bin")), &n).unwrap();
}

/// Restores `img` onto a fresh loop disk with junk on it; the files of its ext4 partition.
fn restore_and_read(
    weed: &Weed,
    img: &str,
    key: Option<&Path>,
    scratch: &Path,
    name: &str,
) -> String {
    let (t, _f) = target(scratch, name, 96 * MIB, 512, &[0, 20 * MIB, 60 * MIB]);
    let mut args = vec!["restore", img, p(&t.path), "--yes"];
    if let Some(k) = key {
        args.extend(["--key-file", p(k)]);
    }
    let o = ok(weed, &args);
    assert!(o.contains("verified by reading back"), "{o}");
    contents(&t.part(1), Fs::Ext4, scratch, name)
}

#[test]
fn images_go_to_s3_and_come_back_whole_through_faults() {
    if !require_root() {
        return;
    }
    require_tools(&[
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.ext4",
        "e2fsck",
        "curl",
        "qemu-img",
    ]);
    let Some(mut weed) = Weed::start() else {
        return;
    };
    let src = build(
        tempfile::tempdir().unwrap(),
        Label::Gpt,
        512,
        96,
        &[part(1, Fs::Ext4, 1, 80)],
        Extras::default(),
    );
    {
        let m = Mount::new(&src.lo.part(1), "");
        write_secrets(m.dir.path(), 1);
    }
    sh("sync");
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let want = contents(&src.lo.part(1), Fs::Ext4, s, "src");
    assert!(want.contains(NAME), "{want}");

    // plain: image, info, verify, restore
    let full = "s3://lifeboat/pcs/pc.lbi";
    let o = ok(&weed, &["image", p(&src.lo.path), "-o", full]);
    assert!(o.contains("written and verified"), "{o}");
    let info: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &lb(&weed, &[], &["info", "--json", full]).stdout,
    ))
    .unwrap();
    let ext4 = info["meta"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["fs"] == "ext4" && r["method"] == "used-blocks");
    assert!(ext4, "{info}");
    ok(&weed, &["verify", full]);
    let objects = weed.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].0, "pcs/pc.lbi");
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    let size = objects[0].1;
    assert!(size > MIB && size < 40 * MIB, "{size}");
    assert_eq!(restore_and_read(&weed, full, None, s, "plain"), want);

    // never overwritten
    fails(
        &weed,
        &[],
        &["image", p(&src.lo.path), "-o", full],
        "already exists",
    );
    assert_eq!(weed.size("pcs/pc.lbi"), Some(size));

    // an incremental beside it, its parent named by --parent
    {
        let m = Mount::new(&src.lo.part(1), "");
        std::fs::write(
            m.dir.path().join("new-file.txt"),
            b"added after the full image\n",
        )
        .unwrap();
        std::fs::remove_file(m.dir.path().join("private/vault-1.bin")).unwrap();
    }
    sh("sync");
    let want2 = contents(&src.lo.part(1), Fs::Ext4, s, "src2");
    let inc = "s3://lifeboat/pcs/pc-inc1.lbi";
    let o = ok(
        &weed,
        &["image", p(&src.lo.path), "--parent", full, "-o", inc],
    );
    assert!(
        o.contains("incremental") || o.contains("differential"),
        "{o}"
    );
    assert!(
        weed.size("pcs/pc-inc1.lbi").unwrap() < size / 2,
        "the child stores only what changed"
    );
    assert_eq!(restore_and_read(&weed, inc, None, s, "inc"), want2);

    // opened without a restore, straight from the bucket (the parent read from it too):
    // mounted, its files are the disk's when the incremental was made; served over NBD, its
    // disk is byte for byte what `export` writes. REGRESSION: `mount` once made the s3://
    // path absolute like a file's ("/cwd/s3:/bucket/…") and found nothing.
    {
        let at = tempfile::tempdir().unwrap();
        let o = ok(&weed, &["mount", inc, p(at.path())]);
        assert!(o.contains("ext4"), "{o}");
        let got = snapshot(&at.path().join("p1"));
        ok(&weed, &["umount", p(at.path())]);
        assert_eq!(got, want2, "the mounted incremental");
    }
    {
        let raw = s.join("exported.raw");
        ok(&weed, &["export", inc, "-o", p(&raw)]);
        let sock = s.join("nbd.sock");
        let mut c = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        c.args([
            "serve",
            inc,
            "--nbd",
            &format!("unix:{}", p(&sock)),
            "--json",
        ]);
        for (k, v) in weed.env() {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("serve printed {line:?} ({e})")
        });
        let uri = v["uri"].as_str().unwrap().to_string();
        let cmp = Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw", p(&raw), &uri])
            .output()
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(cmp.status.success(), "qemu-img compare: {}", text(&cmp));
        std::fs::remove_file(&raw).unwrap();
    }

    // encrypted: nothing of the disk in the object
    let key = s.join("key");
    std::fs::write(&key, "an S3 test passphrase\n").unwrap();
    let wrong = s.join("wrong");
    std::fs::write(&wrong, "not it\n").unwrap();
    let enc = "s3://lifeboat/pcs/secret.lbi";
    ok(
        &weed,
        &[
            "--key-file",
            p(&key),
            "image",
            p(&src.lo.path),
            "-o",
            enc,
            "--encrypt",
        ],
    );
    let body = weed.get("pcs/secret.lbi").unwrap();
    for needle in [
        NAME.as_bytes(),
        CONTENT,
        b"Quokka",
        b"new-file.txt",
        b"lbext1",
    ] {
        assert!(
            !contains_bytes(&body, needle),
            "the encrypted object shows {:?}",
            String::from_utf8_lossy(needle)
        );
    }
    let plain_body = weed.get("pcs/pc.lbi").unwrap();
    assert!(
        contains_bytes(&plain_body, CONTENT),
        "the plain image shows the planted content"
    );
    {
        let (t, _f) = target(s, "untouched", 96 * MIB, 512, &[0, 30 * MIB]);
        let before = sh(&format!("sha256sum < {}", t.path.display()));
        fails(
            &weed,
            &[],
            &["restore", enc, p(&t.path), "--yes", "--key-file", p(&wrong)],
            "wrong passphrase or key file",
        );
        assert_eq!(sh(&format!("sha256sum < {}", t.path.display())), before);
    }
    assert_eq!(restore_and_read(&weed, enc, Some(&key), s, "enc"), want2);

    // its passphrases changed in the bucket: the object is uploaded again with the new key
    // slots in its header, the same size, no upload left unfinished
    let second = s.join("second");
    std::fs::write(&second, "a second S3 test passphrase\n").unwrap();
    let size = weed.size("pcs/secret.lbi");
    let t = ok(
        &weed,
        &[
            "--key-file",
            p(&key),
            "key",
            "add",
            enc,
            "--new-key-file",
            p(&second),
        ],
    );
    assert!(t.contains("slot 2"), "{t}");
    ok(&weed, &["--key-file", p(&key), "key", "remove", enc, "1"]);
    assert_eq!(weed.size("pcs/secret.lbi"), size);
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    fails(
        &weed,
        &[],
        &["verify", enc, "--key-file", p(&key)],
        "wrong passphrase or key file",
    );
    let o = ok(&weed, &["verify", enc, "--key-file", p(&second)]);
    assert!(o.contains("intact"), "{o}");

    // wrong credentials
    fails(
        &weed,
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        &["info", full],
        "AWS_SECRET_ACCESS_KEY",
    );
    fails(
        &weed,
        &[("AWS_SECRET_ACCESS_KEY", "not-the-secret")],
        &[
            "image",
            p(&src.lo.path),
            "-o",
            "s3://lifeboat/pcs/denied.lbi",
        ],
        "refused access",
    );
    assert_eq!(weed.size("pcs/denied.lbi"), None);

    // the server stops mid-upload: no object, and a retry once it is back succeeds
    drop(src);
    let big = build(
        tempfile::tempdir().unwrap(),
        Label::Gpt,
        512,
        160,
        &[part(1, Fs::Ext4, 1, 150)],
        Extras::default(),
    );
    {
        let m = Mount::new(&big.lo.part(1), "");
        for i in 0..12 {
            std::fs::write(
                m.dir.path().join(format!("noise{i}")),
                noise(10 * MIB as usize, 40 + i),
            )
            .unwrap();
        }
    }
    sh("sync");
    let cut = "s3://lifeboat/pcs/cut.lbi";
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["image", p(&big.lo.path), "-o", cut])
        .envs(weed.env())
        .env("LIFEBOAT_NET_RETRY_SECS", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // stop the server once the upload has begun
    let t0 = Instant::now();
    while weed.uploads().is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the upload never began"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the image ended before the upload began"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    weed.stop();
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("cut.lbi"), "the error names the image: {t}");
    weed.restart();
    assert_eq!(
        weed.size("pcs/cut.lbi"),
        None,
        "an object after a failed upload"
    );
    let o = ok(&weed, &["image", p(&big.lo.path), "-o", cut]);
    assert!(o.contains("written and verified"), "{o}");
    assert!(
        weed.uploads().is_empty(),
        "unfinished uploads left: {:?}",
        weed.uploads()
    );
    ok(&weed, &["verify", cut]);
}
