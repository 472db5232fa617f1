//! Tier 1: encrypted images (format 1.4) end to end on plain disk-image files (no root, no
//! filesystem, so every byte of the source is imaged and a restore must reproduce the file
//! exactly). A round trip through verify, restore and export; no plaintext of the data, the
//! record hashes or the metadata anywhere in the file; a wrong or missing passphrase refused
//! with the image named, touching no target; a flipped, moved or foreign frame, and a flipped
//! sealed metadata or index section, caught; key slots added and removed in the header
//! alone; a recovery key; chains and merges that keep their key; a split image.
#![allow(clippy::unwrap_used)]

mod common;

use common::disks::p;
use common::{contains_bytes, lifeboat_fails_with, lifeboat_stdout, noise, read_at, write_at};
use lifeboat::image::crypt::keyring;
use lifeboat::image::{Codec, ImageReader};
use serde_json::Value;
use std::path::{Path, PathBuf};

const MIB: usize = 1 << 20;
/// What the data of every test source holds, and what must never show in an encrypted image.
const SECRET: &[u8] = b"Kestrel-7Q canary of the lifeboat vault";
/// Bytes a sealed frame adds: the nonce (24) and the tag (16).
const OVERHEAD: u64 = 40;
const HEADER: u64 = 4096;
const CHUNK: u64 = 4 << 20;

/// A key file `dir/name` holding `content`.
fn key_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A 10 MiB source whose data names [`SECRET`] many times:
/// - 0..4 MiB: 64 KiB stripes of text lines that hold the secret, and of noise with the secret
///   planted in it (a chunk zstd shrinks: a Zstd frame);
/// - 4..8 MiB: noise with the secret planted once (a chunk zstd cannot shrink: a Raw frame);
/// - 8..9 MiB zeros (Zero records, nothing stored), 9..10 MiB text with the secret again.
fn mixed_disk() -> Vec<u8> {
    let mut d = Vec::with_capacity(10 * MIB);
    let text: Vec<u8> = (0..)
        .flat_map(|i: u32| {
            let mut l = SECRET.to_vec();
            l.extend_from_slice(format!(" line {i}\n").as_bytes());
            l
        })
        .take(64 << 10)
        .collect();
    for stripe in 0..64u32 {
        if stripe % 2 == 0 {
            d.extend_from_slice(&text);
        } else {
            let mut n = noise(64 << 10, 100 + stripe);
            n[30_000..30_000 + SECRET.len()].copy_from_slice(SECRET);
            d.extend_from_slice(&n);
        }
    }
    let mut n = noise(4 * MIB, 7);
    n[1_234_567..1_234_567 + SECRET.len()].copy_from_slice(SECRET);
    d.extend_from_slice(&n);
    d.extend_from_slice(&vec![0u8; MIB]);
    d.extend_from_slice(&text.repeat(MIB / text.len()));
    assert_eq!(d.len(), 10 * MIB);
    d
}

/// A lab: a temp dir with the source disk `disk.img` and a key file `key` ("correct horse
/// battery staple", with a trailing newline).
struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    disk: PathBuf,
    key: PathBuf,
    data: Vec<u8>,
}

const PASS: &str = "correct horse battery staple";

fn lab(data: Vec<u8>) -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let disk = dir.join("disk.img");
    std::fs::write(&disk, &data).unwrap();
    let key = key_file(&dir, "key", &format!("{PASS}\n"));
    Lab {
        _tmp: tmp,
        dir,
        disk,
        key,
        data,
    }
}

impl Lab {
    /// `image disk.img -o NAME --encrypt EXTRA…` with the lab's key; the image's path and the
    /// job's stdout.
    fn encrypt(&self, name: &str, extra: &[&str]) -> (PathBuf, String) {
        let img = self.dir.join(name);
        let out = image_encrypted(&self.disk, &img, &self.key, extra);
        (img, out)
    }

    /// [`Lab::encrypt`]; the image's path.
    fn encrypted(&self, name: &str, extra: &[&str]) -> PathBuf {
        self.encrypt(name, extra).0
    }

    /// [`Lab::encrypt`] with `--json`; the image's path and the job's summary.
    fn encrypted_json(&self, name: &str, extra: &[&str]) -> (PathBuf, Value) {
        let (img, out) = self.encrypt(name, &[extra, &["--json"]].concat());
        (img, summary(&out))
    }

    /// Restores `img` (with `--key-file key`) into a new file; its bytes.
    fn restored(&self, img: &Path, key: &Path, name: &str) -> Vec<u8> {
        let t = self.dir.join(name);
        lifeboat_stdout(&["restore", p(img), p(&t), "--yes", "--key-file", p(key)]);
        let b = std::fs::read(&t).unwrap();
        std::fs::remove_file(&t).unwrap();
        b
    }
}

/// `--key-file KEY image SRC -o IMG EXTRA…`: the arguments.
fn image_args<'a>(key: &'a Path, src: &'a Path, img: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    [
        &["--key-file", p(key), "image", p(src), "-o", p(img)],
        extra,
    ]
    .concat()
}

/// `--key-file KEY image SRC -o IMG --encrypt EXTRA…`, which must succeed; its stdout.
fn image_encrypted(src: &Path, img: &Path, key: &Path, extra: &[&str]) -> String {
    lifeboat_stdout(&image_args(
        key,
        src,
        img,
        &[&["--encrypt"], extra].concat(),
    ))
}

/// `--key-file KEY key ACTION IMG EXTRA…`: the arguments.
fn key_args<'a>(key: &'a Path, action: &'a str, img: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    [&["--key-file", p(key), "key", action, p(img)], extra].concat()
}

/// `--key-file KEY key add IMG --new-key-file NEW`, which must succeed.
fn key_add(img: &Path, key: &Path, new: &Path) {
    lifeboat_stdout(&key_args(key, "add", img, &["--new-key-file", p(new)]));
}

/// `verify IMG --key-file KEY`, which must succeed; its stdout.
fn verify(img: &Path, key: &Path) -> String {
    lifeboat_stdout(&["verify", p(img), "--key-file", p(key)])
}

/// `verify IMG --key-file KEY`, which must exit 1 with `needle` in its stderr; the stderr.
fn verify_fails(img: &Path, key: &Path, needle: &str) -> String {
    lifeboat_fails_with(&["verify", p(img), "--key-file", p(key)], needle)
}

/// `restore IMG TARGET --yes --key-file KEY`, which must exit 1 with `needle` in its stderr.
fn restore_fails(img: &Path, target: &Path, key: &Path, needle: &str) {
    lifeboat_fails_with(
        &["restore", p(img), p(target), "--yes", "--key-file", p(key)],
        needle,
    );
}

/// `merge IMG -o OUT --key-file KEY`, which must succeed.
fn merge(img: &Path, out: &Path, key: &Path) {
    lifeboat_stdout(&["merge", p(img), "-o", p(out), "--key-file", p(key)]);
}

/// The last `finished` event of a `--json` job's NDJSON output: its summary.
fn summary(ndjson: &str) -> Value {
    let last = ndjson
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["event"] == "finished")
        .unwrap_or_else(|| panic!("no finished event in:\n{ndjson}"));
    assert_eq!(last["ok"], true, "{last}");
    last["summary"].clone()
}

fn info(img: &Path, key: &Path) -> Value {
    serde_json::from_str(&lifeboat_stdout(&[
        "--key-file",
        p(key),
        "info",
        "--json",
        p(img),
    ]))
    .unwrap()
}

/// (meta_offset, meta_len, index_offset, index_len) from the footer (the last 128 bytes,
/// in clear).
fn footer(img: &Path) -> (u64, u64, u64, u64) {
    let len = std::fs::metadata(img).unwrap().len();
    let f = read_at(img, len - 128, 128);
    let u = |at: usize| u64::from_le_bytes(f[at..at + 8].try_into().unwrap());
    (u(8), u(16), u(24), u(32))
}

/// The stored frames of `img` as (file offset, stored length, codec), in file order, read
/// through the library with `pass` given to the process's keyring.
fn frames(img: &Path, pass: &str) -> Vec<(u64, u64, Codec)> {
    keyring::add_secret(zeroize::Zeroizing::new(pass.to_string()));
    let r = ImageReader::open(img).unwrap();
    let mut v: Vec<(u64, u64, Codec)> = r
        .records()
        .iter()
        .filter(|r| r.codec.stored_here())
        .map(|r| (r.file_offset, u64::from(r.stored_len), r.codec))
        .collect();
    v.sort_by_key(|f| f.0);
    v.dedup();
    v
}

/// A copy of `img` named `name` beside it, with `edit` applied to its bytes.
fn tampered(img: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut b = std::fs::read(img).unwrap();
    edit(&mut b);
    let out = img.with_file_name(name);
    std::fs::write(&out, &b).unwrap();
    out
}

#[test]
fn an_encrypted_image_verifies_restores_and_exports_identically() {
    let lab = lab(mixed_disk());
    let (img, sum) = lab.encrypted_json("enc.lbi", &[]);
    assert_eq!(sum["encrypted"], true, "{sum}");
    assert!(sum.get("recovery_key").is_none(), "{sum}");

    // the key file without its newline, and with CRLF, is the same passphrase
    let bare = key_file(&lab.dir, "bare", PASS);
    let crlf = key_file(&lab.dir, "crlf", &format!("{PASS}\r\n"));
    let i = info(&img, &bare);
    assert_eq!(i["format_version"], "1.4", "{i}");
    assert_eq!(i["encryption"]["cipher"], "xchacha20-poly1305", "{i}");
    assert_eq!(i["encryption"]["slots"], serde_json::json!(["passphrase"]));
    assert_eq!(i["raw_bytes"], lab.data.len() as u64);
    let text = lifeboat_stdout(&["info", p(&img), "--key-file", p(&crlf)]);
    assert!(text.contains("encrypted  xchacha20-poly1305"), "{text}");

    // --key-file before and after the subcommand
    let v = lifeboat_stdout(&["--key-file", p(&lab.key), "verify", p(&img)]);
    assert!(v.contains("intact"), "{v}");
    verify(&img, &bare);
    assert!(lab.restored(&img, &lab.key, "t.img") == lab.data);
    let raw = lab.dir.join("export.raw");
    lifeboat_stdout(&["export", p(&img), "-o", p(&raw), "--key-file", p(&lab.key)]);
    assert!(std::fs::read(&raw).unwrap() == lab.data, "export differs");
}

#[test]
fn no_plaintext_of_the_data_the_hashes_or_the_metadata_is_in_the_file() {
    // the source's name is distinctive too: the metadata names it
    let lab = lab(mixed_disk());
    let src = lab.dir.join("Quokka-sourcedisk-31337.img");
    std::fs::rename(&lab.disk, &src).unwrap();
    let name = b"Quokka-sourcedisk-31337";
    let plain = lab.dir.join("plain.lbi");
    let enc = lab.dir.join("enc.lbi");
    lifeboat_stdout(&["image", p(&src), "-o", p(&plain)]);
    image_encrypted(&src, &enc, &lab.key, &[]);
    let pb = std::fs::read(&plain).unwrap();
    let e = std::fs::read(&enc).unwrap();

    // the encrypted image stores each of the three kinds of chunk: compressed, raw, zero
    let codecs: Vec<Codec> = {
        keyring::add_secret(zeroize::Zeroizing::new(PASS.to_string()));
        let r = ImageReader::open(&enc).unwrap();
        r.records().iter().map(|r| r.codec).collect()
    };
    for c in [Codec::Zstd, Codec::Raw, Codec::Zero] {
        assert!(codecs.contains(&c), "no {c:?} record in {codecs:?}");
    }
    assert_eq!(
        frames(&enc, PASS)
            .iter()
            .filter(|f| f.2 == Codec::Raw)
            .count(),
        1,
        "the noise chunk is one raw frame"
    );

    // a plain image shows the secret (in its raw frame), the source's name and path (in its
    // metadata) and the records' blake3 (in its index): the test can see them
    assert!(
        contains_bytes(&pb, SECRET),
        "the plain image should show the data"
    );
    assert!(
        contains_bytes(&pb, name),
        "the plain metadata should name the source"
    );
    assert!(contains_bytes(&pb, p(&lab.dir).as_bytes()));
    assert!(contains_bytes(&pb, b"source_path"));
    let plain_reader = ImageReader::open(&plain).unwrap();
    let hashes: Vec<[u8; 32]> = plain_reader
        .records()
        .iter()
        .filter(|r| r.codec.stored_here())
        .map(|r| r.hash)
        .collect();
    assert!(hashes.len() > 100);
    assert!(contains_bytes(&pb, &hashes[0]));

    // the encrypted one shows none of it: not the data, in whole or in part, not the
    // metadata, not one record hash
    for needle in [SECRET, &SECRET[..12], &SECRET[SECRET.len() - 12..]] {
        assert!(
            !contains_bytes(&e, needle),
            "{:?} is in the encrypted image",
            String::from_utf8_lossy(needle)
        );
    }
    assert!(
        !contains_bytes(&e, b" line 1"),
        "a text line is in the clear"
    );
    assert!(
        !contains_bytes(&e, name),
        "the source's name is in the clear"
    );
    assert!(
        !contains_bytes(&e, p(&lab.dir).as_bytes()),
        "a path is in the clear"
    );
    for word in [&b"source_path"[..], b"regions", b"lifeboat\""] {
        assert!(
            !contains_bytes(&e, word),
            "metadata JSON {:?} is in the clear",
            String::from_utf8_lossy(word)
        );
    }
    let prefixes: std::collections::HashSet<[u8; 8]> =
        hashes.iter().map(|h| h[..8].try_into().unwrap()).collect();
    assert!(
        !e.windows(8).any(|w| prefixes.contains(w)),
        "a record's plain blake3 is in the file"
    );
    // nor the noise itself (a raw frame stored unencrypted would hold it verbatim)
    let noise_part = &lab.data[5 * MIB..5 * MIB + 64];
    assert!(contains_bytes(&pb, noise_part));
    assert!(!contains_bytes(&e, noise_part));

    // a key file given for a plain image changes nothing
    lifeboat_stdout(&["--key-file", p(&lab.key), "verify", p(&plain)]);
    let i = info(&plain, &lab.key);
    assert!(i["encryption"].is_null(), "{i}");
}

#[test]
fn record_hashes_and_the_clear_root_hash_are_keyed() {
    // The footer is in the clear, and its root hash is a hash of the records' hashes: were
    // those the plain blake3 of the content, anyone could test a guess of the disk against
    // it. Recomputed over plain blake3, the root hash must not be the footer's.
    use lifeboat::image::format::root_hash;
    let lab = lab(mixed_disk());
    let enc = lab.encrypted("enc.lbi", &[]);
    let plain = lab.dir.join("plain.lbi");
    lifeboat_stdout(&["image", p(&lab.disk), "-o", p(&plain)]);
    keyring::add_secret(zeroize::Zeroizing::new(PASS.to_string()));
    let as_if_plain = |img: &Path| {
        let r = ImageReader::open(img).unwrap();
        let mut recs = r.records().to_vec();
        let mut same = 0;
        for rec in &mut recs {
            let at = rec.disk_offset as usize;
            let h = *blake3::hash(&lab.data[at..at + rec.raw_len as usize]).as_bytes();
            same += usize::from(h == rec.hash);
            rec.hash = h;
        }
        let h = r.header();
        let recomputed = root_hash(&h.image_id, &h.parent_root, &recs);
        (same, recs.len(), recomputed == r.footer().root_hash)
    };
    let (same, n, root_matches) = as_if_plain(&plain);
    assert!(
        n > 100 && same == n && root_matches,
        "the plain image: the check itself works"
    );
    let (same, n, root_matches) = as_if_plain(&enc);
    assert_eq!(
        same, 0,
        "{same} of {n} records of the encrypted image carry a plain blake3"
    );
    assert!(
        !root_matches,
        "the encrypted image's root hash is over plain blake3 hashes"
    );
}

#[test]
fn a_wrong_passphrase_is_refused_and_touches_nothing() {
    let lab = lab(noise(2 * MIB, 3));
    let img = lab.encrypted("enc.lbi", &[]);
    let wrong = key_file(&lab.dir, "wrong", "correct horse battery stapl\n");
    let msg = format!("wrong passphrase or key file for {}", p(&img));
    lifeboat_fails_with(&["--key-file", p(&wrong), "verify", p(&img)], &msg);
    lifeboat_fails_with(&["info", p(&img), "--key-file", p(&wrong)], &msg);
    lifeboat_fails_with(&["info", "--json", p(&img), "--key-file", p(&wrong)], &msg);
    // the passphrase of the slot, not something like it: a recovery key of the right form
    // opens no passphrase slot
    let rk = key_file(
        &lab.dir,
        "rk",
        "2FFA-799F-YBUV-CLQG-H64P-PBJ9-QKRT-G2E5-AJAE-JM7Z-4RPB-CAZX-KUFC\n",
    );
    verify_fails(&img, &rk, &msg);

    // restore: the target keeps every byte
    let target = lab.dir.join("target.img");
    let pattern: Vec<u8> = b"TARGET-UNTOUCHED-"
        .iter()
        .copied()
        .cycle()
        .take(3 * MIB)
        .collect();
    std::fs::write(&target, &pattern).unwrap();
    restore_fails(&img, &target, &wrong, &msg);
    assert!(
        std::fs::read(&target).unwrap() == pattern,
        "a restore with a wrong key wrote to the target"
    );

    // an incremental on top of it: nothing written, not even a partial file
    let child = lab.dir.join("child.lbi");
    lifeboat_fails_with(
        &image_args(&wrong, &lab.disk, &child, &["--parent", p(&img)]),
        &msg,
    );
    assert!(!child.exists());
    assert!(!lab.dir.join("child.lbi.partial").exists());
    let before = std::fs::read(&img).unwrap();
    // key add with a wrong passphrase: refused, the image as it was
    let new = key_file(&lab.dir, "new", "another passphrase");
    lifeboat_fails_with(
        &key_args(&wrong, "add", &img, &["--new-key-file", p(&new)]),
        &msg,
    );
    assert!(std::fs::read(&img).unwrap() == before);
    let names: Vec<String> = std::fs::read_dir(&lab.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("partial") || n.contains("backup")),
        "{names:?}"
    );
    // the right one still opens it
    verify(&img, &lab.key);
}

#[test]
fn without_a_key_and_without_a_terminal_every_reader_says_the_image_is_encrypted() {
    let lab = lab(noise(2 * MIB, 4));
    let img = lab.encrypted("enc.lbi", &[]);
    let msg = format!(
        "{} is encrypted: give its passphrase with --key-file",
        p(&img)
    );
    let t = lab.dir.join("t.img");
    let child = lab.dir.join("child.lbi");
    let merged = lab.dir.join("merged.lbi");
    let raw = lab.dir.join("x.raw");
    for args in [
        vec!["verify", p(&img)],
        vec!["info", p(&img)],
        vec!["info", "--json", p(&img)],
        vec!["restore", p(&img), p(&t), "--yes"],
        vec!["image", p(&lab.disk), "-o", p(&child), "--parent", p(&img)],
        vec!["merge", p(&img), "-o", p(&merged)],
        vec!["export", p(&img), "-o", p(&raw)],
        vec!["ls", p(&img)],
    ] {
        lifeboat_fails_with(&args, &msg);
    }
    for f in [&t, &child, &merged, &raw] {
        assert!(!f.exists(), "{} was written", f.display());
    }
    // --encrypt has no passphrase to give the new image either
    lifeboat_fails_with(
        &["image", p(&lab.disk), "-o", p(&child), "--encrypt"],
        "--encrypt needs a passphrase",
    );
    assert!(!child.exists());
    // key list needs none
    lifeboat_stdout(&["key", "list", p(&img)]);
}

#[test]
fn a_flipped_byte_in_a_stored_frame_is_caught() {
    let lab = lab(mixed_disk());
    let img = lab.encrypted("enc.lbi", &[]);
    let (meta_offset, ..) = footer(&img);
    let fr = frames(&img, PASS);
    assert_eq!(fr[0].0, HEADER, "frames start after the header");
    let last = fr.last().unwrap();
    assert_eq!(
        last.0 + last.1,
        meta_offset,
        "frames run up to the metadata"
    );
    for w in fr.windows(2) {
        assert_eq!(w[0].0 + w[0].1, w[1].0, "frames are back to back: {fr:?}");
    }
    // the middle of the chunk area, as the footer alone tells it; then the middle of each
    // frame, the compressed and the raw one
    let mut spots = vec![(HEADER + meta_offset) / 2];
    spots.extend(fr.iter().map(|f| f.0 + f.1 / 2));
    // the nonce and the tag of the first frame
    spots.extend([fr[0].0 + 3, fr[0].0 + fr[0].1 - 1]);
    for (n, at) in spots.into_iter().enumerate() {
        let bad = tampered(&img, &format!("flip{n}.lbi"), |b| b[at as usize] ^= 0x01);
        let e = verify_fails(&bad, &lab.key, "");
        assert!(
            e.contains("does not decrypt") && e.contains("chunk"),
            "byte {at}: {e}"
        );
        let t = lab.dir.join("t.img");
        restore_fails(&bad, &t, &lab.key, "does not decrypt");
        std::fs::remove_file(&bad).unwrap();
        let _ = std::fs::remove_file(&t);
    }
    verify(&img, &lab.key);
}

/// 8 MiB of noise: two chunks that each become a raw frame of 4 MiB + 40 bytes, back to back
/// from byte 4096.
fn two_raw_frames() -> (Lab, PathBuf) {
    let lab = lab(noise(8 * MIB, 21));
    let img = lab.encrypted("enc.lbi", &[]);
    let (meta_offset, ..) = footer(&img);
    assert_eq!(
        meta_offset,
        HEADER + 2 * (CHUNK + OVERHEAD),
        "two raw frames of equal length"
    );
    assert_eq!(
        frames(&img, PASS),
        vec![
            (HEADER, CHUNK + OVERHEAD, Codec::Raw),
            (HEADER + CHUNK + OVERHEAD, CHUNK + OVERHEAD, Codec::Raw)
        ]
    );
    (lab, img)
}

#[test]
fn two_stored_frames_swapped_are_caught() {
    let (lab, img) = two_raw_frames();
    verify(&img, &lab.key);
    let (a, l) = (HEADER as usize, (CHUNK + OVERHEAD) as usize);
    let swapped = tampered(&img, "swapped.lbi", |b| {
        let first = b[a..a + l].to_vec();
        b.copy_within(a + l..a + 2 * l, a);
        b[a + l..a + 2 * l].copy_from_slice(&first);
    });
    verify_fails(&swapped, &lab.key, "does not decrypt");
    let t = lab.dir.join("t.img");
    restore_fails(&swapped, &t, &lab.key, "does not decrypt");
    // one frame copied over the other (both then in the file once at their own place)
    let dup = tampered(&img, "dup.lbi", |b| b.copy_within(a..a + l, a + l));
    verify_fails(&dup, &lab.key, "does not decrypt");
}

#[test]
fn a_frame_from_another_image_is_caught_even_under_the_same_key() {
    let (lab, img) = two_raw_frames();
    // a merge re-encrypts every frame under the same key for a new image ID; the frames of
    // the same content stay at the same offsets with the same lengths
    let merged = lab.dir.join("merged.lbi");
    merge(&img, &merged, &lab.key);
    let (a, b) = (info(&img, &lab.key), info(&merged, &lab.key));
    assert_eq!(a["encryption"]["key_id"], b["encryption"]["key_id"]);
    assert_ne!(a["image_id"], b["image_id"]);
    assert_eq!(frames(&merged, PASS), frames(&img, PASS));
    verify(&merged, &lab.key);
    let l = (CHUNK + OVERHEAD) as usize;
    let theirs = read_at(&merged, HEADER, l);
    assert!(
        theirs != read_at(&img, HEADER, l),
        "the merge's frame is byte for byte the original's: nothing to test"
    );
    let foreign = tampered(&img, "foreign.lbi", |bytes| {
        bytes[HEADER as usize..HEADER as usize + l].copy_from_slice(&theirs)
    });
    verify_fails(&foreign, &lab.key, "does not decrypt");

    // and one from an image of the same disk under another passphrase (another key)
    let other_key = key_file(&lab.dir, "other", "a different passphrase");
    let other = lab.dir.join("other.lbi");
    image_encrypted(&lab.disk, &other, &other_key, &[]);
    let theirs = read_at(&other, HEADER + l as u64, l);
    let foreign = tampered(&img, "foreign2.lbi", |bytes| {
        bytes[HEADER as usize + l..HEADER as usize + 2 * l].copy_from_slice(&theirs)
    });
    verify_fails(&foreign, &lab.key, "does not decrypt");
}

/// Flips one byte `at` (from the section's start) in the section `[start, start + len)`
/// of a copy of `img`, and recomputes the section's CRC32 (its last 4 bytes, over all
/// before), so that only the sealing can tell.
fn flip_in_section(img: &Path, name: &str, start: u64, len: u64, at: u64) -> PathBuf {
    tampered(img, name, |b| {
        let (st, ln) = (start as usize, len as usize);
        b[st + at as usize] ^= 0x40;
        let crc = crc32fast::hash(&b[st..st + ln - 4]);
        b[st + ln - 4..st + ln].copy_from_slice(&crc.to_le_bytes());
    })
}

#[test]
fn a_flipped_byte_in_the_sealed_metadata_or_index_is_caught() {
    let lab = lab(mixed_disk());
    let img = lab.encrypted("enc.lbi", &[]);
    let (mo, ml, io, il) = footer(&img);
    assert_eq!(mo + ml, io);
    let k = p(&lab.key);
    // flipped: the section's CRC finds it
    let bad = tampered(&img, "meta-crc.lbi", |b| b[(mo + ml / 2) as usize] ^= 1);
    lifeboat_fails_with(&["verify", p(&bad), "--key-file", k], "metadata");
    let bad = tampered(&img, "index-crc.lbi", |b| b[(io + il / 2) as usize] ^= 1);
    lifeboat_fails_with(&["verify", p(&bad), "--key-file", k], "index");
    // flipped with the CRC made to match: the decryption finds it. The section is magic (8),
    // length (8), then nonce, ciphertext and tag, then the CRC (4).
    for (what, start, len) in [("metadata", mo, ml), ("index", io, il)] {
        for (n, at) in [16 + 2, len / 2, len - 5].into_iter().enumerate() {
            let bad = flip_in_section(&img, &format!("{what}{n}.lbi"), start, len, at);
            for cmd in ["verify", "info"] {
                let e = lifeboat_fails_with(&[cmd, p(&bad), "--key-file", k], "does not decrypt");
                assert!(e.contains(what), "{what} byte {at}: {e}");
            }
        }
    }
    // the untouched image, and a copy whose CRC was recomputed over the same bytes, are fine
    let same = tampered(&img, "same.lbi", |_| {});
    lifeboat_stdout(&["verify", p(&same), "--key-file", k]);
}

#[test]
fn key_slots_are_added_and_removed_in_the_header_alone() {
    let lab = lab(noise(2 * MIB, 5));
    let img = lab.encrypted("enc.lbi", &[]);
    let second = key_file(&lab.dir, "second", "a second passphrase, quite long\n");
    let list = |img: &Path| -> Value {
        serde_json::from_str(&lifeboat_stdout(&["key", "list", p(img), "--json"])).unwrap()
    };
    let l = list(&img);
    assert_eq!(l["cipher"], "xchacha20-poly1305");
    assert_eq!(l["slots"].as_array().unwrap().len(), 1);
    assert_eq!(l["slots"][0]["number"], 1);
    assert_eq!(l["slots"][0]["kind"], "passphrase");
    let key_id = info(&img, &lab.key)["encryption"]["key_id"].clone();
    assert_eq!(l["key_id"], key_id);
    let text = lifeboat_stdout(&["key", "list", p(&img)]);
    assert!(
        text.contains("slot 1  passphrase (Argon2id m=65536 KiB"),
        "{text}"
    );

    let before = std::fs::read(&img).unwrap();
    let out: Value = serde_json::from_str(&lifeboat_stdout(&key_args(
        &lab.key,
        "add",
        &img,
        &["--new-key-file", p(&second), "--json"],
    )))
    .unwrap();
    assert_eq!(out["slots"].as_array().unwrap().len(), 2, "{out}");
    assert!(out.get("recovery_key").is_none());
    let after = std::fs::read(&img).unwrap();
    assert_eq!(before.len(), after.len());
    assert!(
        before[HEADER as usize..] == after[HEADER as usize..],
        "key add changed bytes past the header"
    );
    assert!(before[..144] == after[..144], "key add changed the key ID");
    assert!(!lab.dir.join("enc.lbi.header-backup").exists());
    assert_eq!(list(&img)["key_id"], key_id);
    for k in [&lab.key, &second] {
        verify(&img, k);
    }
    // removing needs a passphrase that opens the image
    let wrong = key_file(&lab.dir, "wrong", "not the passphrase");
    lifeboat_fails_with(
        &key_args(&wrong, "remove", &img, &["2"]),
        "wrong passphrase or key file",
    );
    lifeboat_fails_with(&["key", "remove", p(&img), "2"], "is encrypted");
    assert!(std::fs::read(&img).unwrap() == after);

    // slot 1 goes: the first passphrase no longer opens it, the second does
    lifeboat_stdout(&key_args(&second, "remove", &img, &["1"]));
    let after2 = std::fs::read(&img).unwrap();
    assert!(before[HEADER as usize..] == after2[HEADER as usize..]);
    let l = list(&img);
    assert_eq!(l["slots"].as_array().unwrap().len(), 1);
    verify_fails(&img, &lab.key, "wrong passphrase or key file");
    verify(&img, &second);
    assert!(lab.restored(&img, &second, "t.img") == lab.data);

    // the last slot stays; a slot that is not there is named
    lifeboat_fails_with(&key_args(&second, "remove", &img, &["1"]), "only key slot");
    lifeboat_fails_with(&key_args(&second, "remove", &img, &["7"]), "no key slot 7");
    assert!(std::fs::read(&img).unwrap() == after2);

    // a recovery-key slot added later opens it too
    let out: Value = serde_json::from_str(&lifeboat_stdout(&key_args(
        &second,
        "add",
        &img,
        &["--recovery-key", "--json"],
    )))
    .unwrap();
    assert_eq!(out["slots"][1]["kind"], "recovery", "{out}");
    let rk = key_file(&lab.dir, "rk", out["recovery_key"].as_str().unwrap());
    verify(&img, &rk);
    assert!(std::fs::read(&img).unwrap()[HEADER as usize..] == before[HEADER as usize..]);

    // a plain image has no slots to manage
    let plain = lab.dir.join("plain.lbi");
    lifeboat_stdout(&["image", p(&lab.disk), "-o", p(&plain)]);
    lifeboat_fails_with(&["key", "list", p(&plain)], "not encrypted");
    lifeboat_fails_with(
        &key_args(&lab.key, "add", &plain, &["--new-key-file", p(&second)]),
        "not encrypted",
    );
}

#[test]
fn a_recovery_key_opens_the_image_in_any_case_and_spacing() {
    let lab = lab(mixed_disk());
    let (img, sum) = lab.encrypted_json("enc.lbi", &["--recovery-key"]);
    assert_eq!(sum["encrypted"], true);
    let rk = sum["recovery_key"].as_str().unwrap().to_string();
    assert_eq!(rk.len(), 52 + 12, "{rk}");
    assert_eq!(rk.split('-').count(), 13, "{rk}");
    assert!(!contains_bytes(
        &std::fs::read(&img).unwrap(),
        rk.as_bytes()
    ));
    let i = info(&img, &lab.key);
    assert_eq!(
        i["encryption"]["slots"],
        serde_json::json!(["passphrase", "recovery"])
    );

    let as_given = key_file(&lab.dir, "rk", &format!("{rk}\n"));
    assert!(lab.restored(&img, &as_given, "t1.img") == lab.data);
    for (n, variant) in [
        rk.to_lowercase(),
        rk.replace('-', " ").to_lowercase(),
        rk.replace('-', ""),
    ]
    .into_iter()
    .enumerate()
    {
        let f = key_file(&lab.dir, &format!("rk{n}"), &variant);
        let v = verify(&img, &f);
        assert!(v.contains("intact"), "{variant}: {v}");
    }
    // one character changed is not the key
    let mut typo: Vec<char> = rk.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let typo = key_file(&lab.dir, "typo", &typo.into_iter().collect::<String>());
    verify_fails(&img, &typo, "wrong passphrase or key file");

    // the text summary prints it once too
    let (img2, text) = lab.encrypt("enc2.lbi", &["--recovery-key"]);
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("recovery key"))
        .nth(1)
        .unwrap_or_else(|| panic!("no recovery key in:\n{text}"));
    let f = key_file(&lab.dir, "rk-text", line.trim());
    verify(&img2, &f);
    // and that key is the second image's own: it does not open the first
    verify_fails(&img, &f, "wrong passphrase or key file");
}

#[test]
fn a_chain_keeps_its_key_and_a_plain_parent_is_not_mixed_with_encryption() {
    let lab = lab(mixed_disk());
    let dir = lab.dir.join("store");
    std::fs::create_dir(&dir).unwrap();
    let full = lab.encrypted("store/pc.lbi", &[]);
    let key_id = info(&full, &lab.key)["encryption"]["key_id"].clone();

    // new data, with a new secret in it
    let mut second = lab.data.clone();
    let fresh = b"Ocelot-44 second-night canary";
    let mut n = noise(MIB, 77);
    n[500_000..500_000 + fresh.len()].copy_from_slice(fresh);
    second[MIB..2 * MIB].copy_from_slice(&n);
    std::fs::write(&lab.disk, &second).unwrap();
    let child = dir.join("pc-child.lbi");
    // --key-file after the subcommand
    lifeboat_stdout(&[
        "image",
        p(&lab.disk),
        "-o",
        p(&child),
        "--parent",
        p(&full),
        "--key-file",
        p(&lab.key),
    ]);
    let i = info(&child, &lab.key);
    assert_eq!(i["kind"], "differential", "{i}");
    assert!(!i["encryption"].is_null(), "{i}");
    assert_eq!(i["encryption"]["key_id"], key_id);
    let c = std::fs::read(&child).unwrap();
    assert!(!contains_bytes(&c, fresh) && !contains_bytes(&c, SECRET));
    assert!(
        c.len() < 2 * MIB,
        "the child stores only the change: {}",
        c.len()
    );
    verify(&child, &lab.key);
    assert!(lab.restored(&child, &lab.key, "t1.img") == second);
    // the members share one key: a passphrase added to the child alone opens the parent too
    // once the child is open (the key is unlocked once for the chain)
    let childs = key_file(&lab.dir, "childs", "only in the child's slots");
    key_add(&child, &lab.key, &childs);
    verify_fails(&full, &childs, "wrong passphrase or key file");
    assert!(lab.restored(&child, &childs, "t1b.img") == second);
    assert!(lab.restored(&full, &lab.key, "t0.img") == lab.data);

    // another incremental, found by --incremental DIR, without --encrypt: encrypted anyway
    let mut third = second.clone();
    third[9 * MIB..9 * MIB + 4096].copy_from_slice(&noise(4096, 78));
    std::fs::write(&lab.disk, &third).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    lifeboat_stdout(&[
        "--key-file",
        p(&lab.key),
        "image",
        p(&lab.disk),
        "--incremental",
        p(&dir),
    ]);
    let incr = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("-incr"))
        .expect("the --incremental image");
    let i = info(&incr, &lab.key);
    assert_eq!(i["encryption"]["key_id"], key_id, "{i}");
    assert_eq!(i["chain"].as_array().unwrap().len(), 3, "{i}");
    assert!(lab.restored(&incr, &lab.key, "t2.img") == third);

    // the merged chain: one encrypted full image, the same key, standing alone
    let merged = lab.dir.join("merged.lbi");
    merge(&incr, &merged, &lab.key);
    let m = info(&merged, &lab.key);
    assert_eq!(m["kind"], "full", "{m}");
    assert_eq!(m["encryption"]["key_id"], key_id, "{m}");
    let mb = std::fs::read(&merged).unwrap();
    assert!(!contains_bytes(&mb, fresh) && !contains_bytes(&mb, SECRET));
    verify(&merged, &lab.key);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(lab.restored(&merged, &lab.key, "t3.img") == third);

    // an encrypted child of a plain parent is refused, and nothing is written
    let plain = lab.dir.join("plain.lbi");
    lifeboat_stdout(&["image", p(&lab.disk), "-o", p(&plain)]);
    let refused = lab.dir.join("refused.lbi");
    lifeboat_fails_with(
        &image_args(
            &lab.key,
            &lab.disk,
            &refused,
            &["--parent", p(&plain), "--encrypt"],
        ),
        "it is not encrypted",
    );
    assert!(!refused.exists() && !lab.dir.join("refused.lbi.partial").exists());
}

#[test]
fn a_split_encrypted_image_round_trips_and_no_volume_shows_the_data() {
    let mut data = noise(5 * MIB, 9);
    for at in [100_000, MIB + 3, 3 * MIB + 77_777] {
        data[at..at + SECRET.len()].copy_from_slice(SECRET);
    }
    let lab = lab(data);
    let img = lab.encrypted("split.lbi", &["--volume-size", "1M"]);
    let files: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&lab.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("split.lbi"))
            .collect();
        v.sort();
        v
    };
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        let b = std::fs::read(f).unwrap();
        assert!(b.len() as u64 <= MIB as u64, "{}", f.display());
        assert!(
            !contains_bytes(&b, SECRET),
            "{} shows the data",
            f.display()
        );
        assert!(!contains_bytes(&b, &lab.data[2 * MIB..2 * MIB + 32]));
    }
    let i = info(&img, &lab.key);
    assert_eq!(i["files"].as_array().unwrap().len(), files.len(), "{i}");
    assert_eq!(i["volume_size"], MIB as u64);
    assert_eq!(i["format_version"], "1.4");
    assert!(!i["encryption"].is_null());
    verify(&img, &lab.key);
    assert!(lab.restored(&img, &lab.key, "t.img") == lab.data);
    lifeboat_fails_with(&["verify", p(&img)], "is encrypted: give its passphrase");
    // a slot added to the set (its header is the first volume's) opens every volume
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let second = key_file(&lab.dir, "second", "the split set's second passphrase");
    key_add(&img, &lab.key, &second);
    for (f, b) in files.iter().zip(&before) {
        let now = std::fs::read(f).unwrap();
        let from = if f == &img { HEADER as usize } else { 0 };
        assert!(now[from..] == b[from..], "key add changed {}", f.display());
    }
    assert!(lab.restored(&img, &second, "t2.img") == lab.data);
    // a flipped byte in a middle volume's stored data is caught
    let mid = &files[2];
    let len = std::fs::metadata(mid).unwrap().len();
    let byte = read_at(mid, len / 2, 1)[0];
    write_at(mid, len / 2, &[byte ^ 0x80]);
    verify_fails(&img, &lab.key, "does not decrypt");
}

/// An image of an encrypted fleet store carries the store's key slots as they are when it is
/// written, not as they were when it was planned: a `key add|remove DIR` between the two
/// (which waits for writers, and writers for it, but cannot wait for a plan) would otherwise
/// leave it with the old slots, and a passphrase removed from the store would still open it.
#[test]
fn a_fleet_image_takes_the_store_slots_of_when_it_is_written() {
    use lifeboat::discovery::SystemPaths;
    use lifeboat::image::crypt::{Secret, SlotKind};
    use lifeboat::jobs::{image, CancelToken, Reporter};
    let lab = lab(mixed_disk());
    let store = lab.dir.join("store");
    std::fs::create_dir(&store).unwrap();
    image_encrypted(&lab.disk, &store.join("m1.lbi"), &lab.key, &["--dedup"]);

    keyring::add_secret(zeroize::Zeroizing::new(PASS.to_string()));
    let mut spec = image::ImageSpec::new(lab.disk.clone(), store.join("m2.lbi"));
    spec.dedup = true;
    spec.encrypt = Some(image::Encrypt {
        passphrase: Secret(zeroize::Zeroizing::new(PASS.to_string())),
        recovery_key: false,
    });
    let plan = image::plan(&spec, &SystemPaths::default()).unwrap();
    assert_eq!(plan.keys().unwrap().slots.len(), 1);
    const SECOND: &str = "a second passphrase for the store";
    lifeboat::jobs::keys::store_add(&store, SlotKind::Passphrase, SECOND.as_bytes()).unwrap();
    image::run(&plan, &Reporter::silent(), &CancelToken::new()).unwrap();

    let listed: Value = serde_json::from_str(&lifeboat_stdout(&[
        "key",
        "list",
        p(&store.join("m2.lbi")),
        "--json",
    ]))
    .unwrap();
    assert_eq!(listed["slots"].as_array().unwrap().len(), 2, "{listed}");
    let second = key_file(&lab.dir, "second", SECOND);
    let out = lifeboat_stdout(&["--key-file", p(&second), "verify", p(&store.join("m2.lbi"))]);
    assert!(out.contains("intact"), "{out}");
}

/// An encrypted image made by an earlier build (format 1.4, the build of 2026-12-06;
/// tests/fixtures/golden-v1.4-encrypted.lbi, of the 2 MiB disk built below, passphrase
/// "golden passphrase") verifies and restores byte for byte with its passphrase, and not
/// with another: later builds must keep reading what users already have.
#[test]
fn an_encrypted_image_of_an_earlier_build_still_restores() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/golden-v1.4-encrypted.lbi"
    );
    let mut disk = Vec::new();
    for i in 0..256 {
        let line = format!("Lifeboat golden encrypted chunk {i:03}. ");
        for _ in 0..4096 / line.len() {
            disk.extend_from_slice(line.as_bytes());
        }
        disk.resize((i + 1) * 4096, 0);
    }
    disk.resize(2 * MIB, 0);
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", "golden passphrase\n");
    let wrong = key_file(dir.path(), "wrong", "not the golden passphrase\n");
    let target = dir.path().join("t.img");
    std::fs::write(&target, vec![0xAAu8; 2 * MIB]).unwrap();
    lifeboat_fails_with(
        &["--key-file", p(&wrong), "verify", fixture],
        "wrong passphrase",
    );
    let out = lifeboat_stdout(&["--key-file", p(&key), "verify", fixture]);
    assert!(out.contains("intact"), "{out}");
    lifeboat_stdout(&[
        "--key-file",
        p(&key),
        "restore",
        fixture,
        p(&target),
        "--yes",
    ]);
    assert!(
        std::fs::read(&target).unwrap() == disk,
        "restored bytes differ"
    );
}

/// A new encrypted image file gets its key slots (Argon2id) while its chunks are written: the
/// header is written first with the key ID alone and again at the end with the slots, before
/// the file is renamed into place. The file on disk holds them; when making them fails, no
/// image and no partial file is left.
#[test]
fn slots_made_while_an_image_is_written_reach_its_header_or_nothing_is_kept() {
    use lifeboat::image::crypt::{KeySlots, MasterKey, SlotKind};
    use lifeboat::image::format::{Header, HEADER_LEN, VERSION_MINOR};
    use lifeboat::image::{Codec, EncodedChunk, ImageWriter};
    let dir = tempfile::tempdir().unwrap();
    let key = MasterKey::generate().unwrap();
    keyring::add_key(key.clone());
    let header = Header {
        minor: VERSION_MINOR,
        block_size: 65536,
        volume_size: 0,
        keys: Some(KeySlots {
            key_id: key.key_id(),
            slots: Vec::new(),
        }),
        flags: 0,
        image_id: *b"slots-come-later",
        parent_id: [0; 16],
        parent_root: [0; 32],
        created_unix: 1_795_000_000,
        chunk_size: 65536,
        zstd_level: 3,
        source_size: 1 << 20,
        sector_size: 512,
    };
    let data = noise(65536, 3);
    let meta = serde_json::json!({"tool": "lifeboat test", "source": {"size_bytes": 1048576}});
    let write = |name: &str, slots: lifeboat::jobs::image::PendingSlots| {
        let path = dir.path().join(name);
        let mut w = ImageWriter::create(&path, header.clone()).unwrap();
        w.push(EncodedChunk::single(0, &data, Codec::Raw, data.clone()))
            .unwrap();
        w.slots_later(slots);
        (path.clone(), w.finish(&meta))
    };

    let k = key.clone();
    let (good, done) = write(
        "good.lbi",
        std::thread::spawn(move || KeySlots::new(&k, &[(SlotKind::Passphrase, b"made later")])),
    );
    done.unwrap();
    let on_disk = Header::decode(&std::fs::read(&good).unwrap()[..HEADER_LEN]).unwrap();
    let slots = on_disk.keys.unwrap();
    assert_eq!(slots.key_id, key.key_id());
    assert_eq!(slots.slots.len(), 1, "the slot reached the file");
    // another process, with that passphrase only, opens it
    let pass = key_file(dir.path(), "later", "made later\n");
    let listed = lifeboat_stdout(&["--key-file", p(&pass), "info", p(&good), "--json"]);
    assert!(listed.contains("\"encryption\""), "{listed}");

    let (bad, done) = write(
        "bad.lbi",
        std::thread::spawn(|| Err(lifeboat::Error::Unsupported("no slots today".into()))),
    );
    assert!(done.unwrap_err().to_string().contains("no slots today"));
    assert!(!bad.exists() && !dir.path().join("bad.lbi.partial").exists());
}
