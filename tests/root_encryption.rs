//! Tier 2 (root): encrypted images of a real loop disk. A GPT disk whose ext4 holds files
//! with a distinctive name and distinctive content (in text and inside noise) is imaged with
//! `--encrypt` into volumes; no volume shows the name or the content (which the disk itself
//! shows in clear). The image restores onto a second loop disk whose files, after e2fsck,
//! match the source's; a wrong passphrase leaves the target disk as it was. Then files are
//! changed, added and deleted, and an incremental (encrypted with the chain's key, showing
//! none of the new names or content) restores the new state.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::{build, contents, p, part, target, Extras, Fs, Label, MIB};
use common::{
    contains_bytes, lifeboat_fails_with, lifeboat_stdout, noise, require_root, require_tools, sh,
    LoopDev, Mount,
};
use std::path::{Path, PathBuf};

/// A file name and content that must never show in an encrypted image.
const NAME: &str = "Zebrafinch-ledger-98431.txt";
const CONTENT: &[u8] = b"Marmoset account 4471-0093-2266 balance";
/// The same for the second night.
const NAME2: &str = "Okapi-payroll-55120.csv";
const CONTENT2: &[u8] = b"Pangolin salary row 7788 confidential";
const PASS: &str = "a root test passphrase\n";

/// Every file of the image `img` (its volumes: `img`, `img.001`…).
fn image_files(img: &Path) -> Vec<PathBuf> {
    let name = img.file_name().unwrap().to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = std::fs::read_dir(img.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|f| {
            let n = f.file_name().unwrap().to_string_lossy();
            n == name
                || n.strip_prefix(&format!("{name}."))
                    .is_some_and(|x| x.len() == 3 && x.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    v.sort();
    v
}

/// Asserts that no file of `img` holds any of `needles`; the number of files.
fn shows_none(img: &Path, needles: &[&[u8]]) -> usize {
    let files = image_files(img);
    assert!(!files.is_empty());
    for f in &files {
        let b = std::fs::read(f).unwrap();
        for n in needles {
            assert!(
                !contains_bytes(&b, n),
                "{} shows {:?} in the clear",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    files.len()
}

/// The distinctive files of one night: `name` holds `content` in text lines (compressible),
/// and `vault.bin` holds it planted in noise (incompressible).
fn write_secrets(root: &Path, name: &str, content: &[u8], seed: u32) {
    let mut text = Vec::new();
    for i in 0..4000 {
        text.extend_from_slice(content);
        text.extend_from_slice(format!(" entry {i}\n").as_bytes());
    }
    std::fs::create_dir_all(root.join("private")).unwrap();
    std::fs::write(root.join("private").join(name), &text).unwrap();
    let mut n = noise(5 * MIB as usize, seed);
    for at in [4096 + 17, 2 * MIB as usize + 5, 4 * MIB as usize + 99_999] {
        n[at..at + content.len()].copy_from_slice(content);
    }
    std::fs::write(root.join(format!("private/vault-{seed}.bin")), &n).unwrap();
    sh("sync");
}

/// The files of ext4 partition 1 of `lo`, after a clean e2fsck.
fn files_of(lo: &LoopDev, scratch: &Path, what: &str) -> String {
    contents(&lo.part(1), Fs::Ext4, scratch, what)
}

/// Restores `img` onto a fresh 96 MiB loop disk with junk on it, and returns its files.
fn restore_and_read(img: &Path, key: &Path, scratch: &Path, name: &str) -> String {
    let (t, _f) = target(scratch, name, 96 * MIB, 512, &[0, 20 * MIB, 60 * MIB]);
    let o = lifeboat_stdout(&["restore", p(img), p(&t.path), "--yes", "--key-file", p(key)]);
    assert!(o.contains("verified by reading back"), "{o}");
    assert!(
        t.part(1).exists(),
        "{name}: no partition node after restore"
    );
    let got = files_of(&t, scratch, name);
    drop(t);
    got
}

#[test]
fn an_encrypted_ext4_disk_and_its_incremental_restore_and_hide_their_files() {
    if !require_root() {
        return;
    }
    require_tools(&[
        "sfdisk",
        "partx",
        "losetup",
        "mkfs.ext4",
        "e2fsck",
        "sha256sum",
    ]);
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
        write_secrets(m.dir.path(), NAME, CONTENT, 1);
    }
    sh("sync");
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let key = s.join("key");
    std::fs::write(&key, PASS).unwrap();
    let wrong = s.join("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    // the disk shows them in the clear: what the image hides is there to be hidden
    let disk = std::fs::read(&src.lo.path).unwrap();
    assert!(contains_bytes(&disk, NAME.as_bytes()) && contains_bytes(&disk, CONTENT));
    drop(disk);
    let want = files_of(&src.lo, s, "src");
    assert!(want.contains(NAME), "{want}");
    // and so does a plain image of it (the noise around the content is stored raw)
    let plain = s.join("plain.lbi");
    lifeboat_stdout(&["image", p(&src.lo.path), "-o", p(&plain)]);
    let b = std::fs::read(&plain).unwrap();
    assert!(contains_bytes(&b, CONTENT) && contains_bytes(&b, b"lbext1"));
    drop(b);
    std::fs::remove_file(&plain).unwrap();

    // the full image, in 8 MiB volumes
    let store = s.join("store");
    std::fs::create_dir(&store).unwrap();
    let full = store.join("pc.lbi");
    lifeboat_stdout(&[
        "--key-file",
        p(&key),
        "image",
        p(&src.lo.path),
        "-o",
        p(&full),
        "--encrypt",
        "--volume-size",
        "8M",
    ]);
    let volumes = shows_none(&full, &[NAME.as_bytes(), CONTENT, b"Zebrafinch", b"lbext1"]);
    assert!(volumes >= 2, "{volumes} volumes");
    let info: serde_json::Value = serde_json::from_str(&lifeboat_stdout(&[
        "info",
        "--json",
        p(&full),
        "--key-file",
        p(&key),
    ]))
    .unwrap();
    assert_eq!(info["format_version"], "1.4");
    assert!(!info["encryption"].is_null(), "{info}");
    let ext = info["meta"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 1)
        .unwrap()
        .clone();
    assert_eq!(ext["fs"], "ext4", "{ext}");
    assert_eq!(ext["method"], "used-blocks", "{ext}");
    lifeboat_stdout(&["verify", p(&full), "--key-file", p(&key)]);

    // a wrong passphrase leaves a target disk as it was
    {
        let (t, _f) = target(s, "untouched", 96 * MIB, 512, &[0, 30 * MIB]);
        let before = sh(&format!("sha256sum < {}", t.path.display()));
        lifeboat_fails_with(
            &[
                "restore",
                p(&full),
                p(&t.path),
                "--yes",
                "--key-file",
                p(&wrong),
            ],
            "wrong passphrase or key file",
        );
        assert_eq!(sh(&format!("sha256sum < {}", t.path.display())), before);
    }

    let got = restore_and_read(&full, &key, s, "full");
    assert_eq!(got, want, "the restored files differ from the source's");

    // night 2: a file changed, one deleted, new distinctive ones added
    {
        let m = Mount::new(&src.lo.part(1), "");
        let r = m.dir.path();
        std::fs::write(
            r.join("docs/deep/er/n3.txt"),
            b"rewritten on night 2\n".repeat(500),
        )
        .unwrap();
        std::fs::remove_file(r.join("docs/deep/er/n7.txt")).unwrap();
        common::write_at(&r.join("random.bin"), 1_000_000, &noise(70_000, 42));
        write_secrets(r, NAME2, CONTENT2, 2);
    }
    sh("sync");
    let want2 = files_of(&src.lo, s, "src2");
    assert!(want2.contains(NAME2) && want2 != want);
    let incr = store.join("pc-incr.lbi");
    lifeboat_stdout(&[
        "image",
        p(&src.lo.path),
        "-o",
        p(&incr),
        "--parent",
        p(&full),
        "--key-file",
        p(&key),
    ]);
    shows_none(
        &incr,
        &[NAME2.as_bytes(), CONTENT2, NAME.as_bytes(), CONTENT],
    );
    let i: serde_json::Value = serde_json::from_str(&lifeboat_stdout(&[
        "--key-file",
        p(&key),
        "info",
        "--json",
        p(&incr),
    ]))
    .unwrap();
    assert_eq!(
        i["encryption"]["key_id"], info["encryption"]["key_id"],
        "{i}"
    );
    assert!(
        i["file_bytes"].as_u64().unwrap() < 12 * MIB,
        "the incremental stores only the changes: {i}"
    );
    lifeboat_stdout(&["verify", p(&incr), "--key-file", p(&key)]);
    let got2 = restore_and_read(&incr, &key, s, "incr");
    assert_eq!(got2, want2, "the incremental's files differ from night 2's");
    // the full image still gives night 1
    let again = restore_and_read(&full, &key, s, "full-again");
    assert_eq!(again, want);
}
