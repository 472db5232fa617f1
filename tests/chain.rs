//! Tier 1: image chains on plain disk-image files (no root, no filesystem, so every byte of
//! the disk is imaged and a restore must reproduce the file exactly). Full, incremental and
//! differential images restore their own state; moved data is not stored again; hostile
//! chains (a missing member, a swapped member, a modified parent, a flipped bit only a parent
//! holds, a cycle, another disk) are refused with the file and link named; merge and prune.
#![allow(clippy::unwrap_used)]

use lifeboat::image::format::Header;
use lifeboat::image::{Chain, EncodedChunk, ImageReader, ImageWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: usize = 1 << 20;
const DISK: usize = 24 * MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

fn ok(args: &[&str]) -> String {
    let o = lifeboat(args);
    assert!(
        o.status.success(),
        "lifeboat {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let o = lifeboat(args);
    assert!(!o.status.success(), "lifeboat {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Deterministic bytes: half text-like, half noise, so compression matters.
fn fill(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (i / 8192) % 2 == 0 {
                b"lifeboat chain "[(x % 15) as usize]
            } else {
                (x >> 7) as u8
            }
        })
        .collect()
}

fn patch(disk: &mut [u8], at: usize, bytes: &[u8]) {
    disk[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The original disk: data in the first 12 MiB, zeros after.
fn original() -> Vec<u8> {
    let mut d = vec![0u8; DISK];
    patch(&mut d, 0, &fill(1, 12 * MIB));
    d
}

fn restore_and_compare(img: &Path, dir: &Path, want: &[u8], name: &str) {
    let t = dir.join(format!("restored-{name}.img"));
    ok(&["restore", s(img), s(&t), "--yes"]);
    let got = std::fs::read(&t).unwrap();
    assert!(
        got == want,
        "{name}: the restored disk differs from its state when imaged"
    );
    std::fs::remove_file(&t).unwrap();
}

struct Lab {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    disk: PathBuf,
    states: Vec<(PathBuf, Vec<u8>)>,
}

/// A full image and two incrementals (by --incremental DIR), and a differential.
fn build_chain() -> Lab {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    let disk = tmp.path().join("disk.img");
    let mut d = original();
    std::fs::write(&disk, &d).unwrap();
    let full = dir.join("pc.lbi");
    ok(&["image", s(&disk), "-o", s(&full)]);
    let mut states = vec![(full.clone(), d.clone())];

    // Night 1: modify 100 KiB, add 1 MiB in free space, delete (zero) 512 KiB.
    patch(&mut d, 3 * MIB + 4096, &fill(2, 100 << 10));
    patch(&mut d, 14 * MIB, &fill(3, MIB));
    patch(&mut d, 8 * MIB, &vec![0u8; 512 << 10]);
    std::fs::write(&disk, &d).unwrap();
    let out = ok(&["image", s(&disk), "--incremental", s(&dir)]);
    let i1 = newest(&dir, "-incr");
    assert!(out.contains("incremental image"), "{out}");
    states.push((i1, d.clone()));

    // Night 2: move 2 MiB (64 KiB aligned) to another place, change 64 KiB.
    let moved = d[MIB..3 * MIB].to_vec();
    patch(&mut d, 16 * MIB, &moved);
    patch(&mut d, 10 * MIB, &fill(4, 64 << 10));
    std::fs::write(&disk, &d).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(&["image", s(&disk), "--incremental", s(&dir)]);
    let i2 = newest(&dir, "-incr");
    assert_ne!(i2, states[1].0);
    states.push((i2, d.clone()));

    // A differential of the same state: its parent is the full image.
    ok(&["image", s(&disk), "--differential", s(&dir)]);
    let diff = newest(&dir, "-diff");
    states.push((diff, d.clone()));
    Lab {
        _tmp: tmp,
        dir,
        disk,
        states,
    }
}

/// The newest file in `dir` whose name contains `tag`.
fn newest(dir: &Path, tag: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(tag))
        .collect();
    v.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    v.pop().unwrap()
}

fn info(img: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["info", "--json", s(img)])).unwrap()
}

#[test]
fn every_member_restores_its_own_state_and_only_changes_are_stored() {
    let lab = build_chain();
    let full_len = std::fs::metadata(&lab.states[0].0).unwrap().len();
    let names = ["full", "incr1", "incr2", "diff"];
    let lengths = [1, 2, 3, 2];
    let kinds = ["full", "incremental", "incremental", "differential"];
    for (k, (img, want)) in lab.states.iter().enumerate() {
        let i = info(img);
        assert_eq!(i["kind"], kinds[k], "{}", img.display());
        if k > 0 {
            assert_eq!(i["chain"].as_array().unwrap().len(), lengths[k]);
            let last = i["chain"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["path"].as_str().unwrap(), s(&lab.states[0].0));
        }
        restore_and_compare(img, &lab.dir, want, names[k]);
        ok(&["verify", s(img)]);
    }
    // Night 1 changed 1.1 MiB of data (text and noise): the image stores about that.
    let i1 = std::fs::metadata(&lab.states[1].0).unwrap().len();
    assert!(i1 < 1_400_000, "incremental 1 is {i1} bytes");
    assert!(i1 < full_len / 4, "incremental {i1} vs full {full_len}");
    // Night 2 moved 2 MiB (found by hash, not stored) and changed 64 KiB.
    let i2 = std::fs::metadata(&lab.states[2].0).unwrap().len();
    assert!(
        i2 < 200_000,
        "incremental 2 is {i2} bytes: moved data was stored again"
    );
    // The text says where the data came from.
    let v = ok(&["verify", s(&lab.states[2].0)]);
    assert!(v.contains("ancestors"), "{v}");
    let t = String::from_utf8_lossy(&lifeboat(&["info", s(&lab.states[2].0)]).stdout).into_owned();
    assert!(t.contains("chain      3 images"), "{t}");
}

#[test]
fn a_missing_middle_member_is_named() {
    let lab = build_chain();
    let i1 = &lab.states[1].0;
    let id = info(i1)["image_id"].as_str().unwrap().to_string();
    std::fs::remove_file(i1).unwrap();
    let i2 = s(&lab.states[2].0);
    for cmd in [
        vec!["verify", i2],
        vec!["restore", i2, "/nonexistent-target.img", "--yes"],
    ] {
        let e = fails(&cmd);
        assert!(e.contains("was not found") && e.contains(&id), "{e}");
        assert!(e.contains(i1.file_name().unwrap().to_str().unwrap()), "{e}");
    }
    assert!(!Path::new("/nonexistent-target.img").exists());
    // Found again through --search once it is back somewhere else.
    let info_text = String::from_utf8_lossy(&lifeboat(&["info", i2]).stdout).into_owned();
    assert!(info_text.contains("BROKEN"), "{info_text}");
}

#[test]
fn parents_are_found_through_search_folders() {
    let lab = build_chain();
    let elsewhere = lab.dir.parent().unwrap().join("old");
    std::fs::create_dir(&elsewhere).unwrap();
    for (p, _) in &lab.states[..2] {
        std::fs::rename(p, elsewhere.join(p.file_name().unwrap())).unwrap();
    }
    let i2 = s(&lab.states[2].0);
    fails(&["verify", i2]);
    ok(&["verify", i2, "--search", s(&elsewhere)]);
}

#[test]
fn a_member_swapped_for_an_image_of_another_disk_is_refused() {
    let lab = build_chain();
    let other = lab.dir.parent().unwrap().join("other.img");
    std::fs::write(&other, fill(9, 8 * MIB)).unwrap();
    let i1 = &lab.states[1].0;
    std::fs::remove_file(i1).unwrap();
    ok(&["image", s(&other), "-o", s(i1)]);
    let e = fails(&["verify", s(&lab.states[2].0)]);
    assert!(e.contains("was replaced") && e.contains(s(i1)), "{e}");
}

#[test]
fn a_parent_modified_after_the_child_was_made_is_refused() {
    let lab = build_chain();
    let full = &lab.states[0].0;
    // Rewrite the full image with the same ID but other content: a valid image whose root
    // hash no longer matches what the children recorded.
    let r = ImageReader::open(full).unwrap();
    let h: Header = r.header().clone();
    drop(r);
    let fake = lab.dir.join("fake.lbi");
    let mut w = ImageWriter::create(&fake, h).unwrap();
    let data = fill(7, 65536);
    w.push(EncodedChunk::single(
        0,
        &data,
        lifeboat::image::Codec::Raw,
        data.clone(),
    ))
    .unwrap();
    w.finish(&serde_json::json!({"kind": "full"})).unwrap();
    std::fs::rename(&fake, full).unwrap();
    let e = fails(&["verify", s(&lab.states[1].0)]);
    assert!(e.contains("root hash") && e.contains("modified"), "{e}");
    let e = fails(&[
        "restore",
        s(&lab.states[3].0),
        "/nonexistent-target.img",
        "--yes",
    ]);
    assert!(e.contains("modified"), "{e}");
}

#[test]
fn a_flipped_bit_only_the_parent_holds_fails_the_childs_verify() {
    let lab = build_chain();
    let full = &lab.states[0].0;
    let i1 = &lab.states[1].0;
    // A record the incremental takes from the full image.
    let chain = Chain::open(i1, &[]).unwrap();
    let n = chain.leaf().records().len();
    let l = (0..n)
        .map(|i| chain.locate(i).unwrap())
        .find(|l| l.member == 1 && l.record.stored_len > 1000)
        .unwrap();
    drop(chain);
    let mut b = std::fs::read(full).unwrap();
    let at = (l.record.file_offset + u64::from(l.record.stored_len) / 2) as usize;
    b[at] ^= 0x10;
    std::fs::write(full, &b).unwrap();
    let e = fails(&["verify", s(i1)]);
    assert!(e.contains(s(full)) && e.contains("corrupt"), "{e}");
    let target = lab.dir.join("t.img");
    let e = fails(&["restore", s(i1), s(&target), "--yes"]);
    assert!(e.contains("corrupt"), "{e}");
    assert!(
        !target.exists(),
        "a failed restore into a new file leaves nothing"
    );
}

#[test]
fn a_chain_that_loops_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("loop.lbi");
    let h = Header {
        minor: lifeboat::image::format::VERSION_MINOR,
        flags: 0,
        image_id: [5; 16],
        parent_id: [5; 16],
        parent_root: [6; 32],
        created_unix: 0,
        chunk_size: 1 << 20,
        zstd_level: 3,
        source_size: 1 << 20,
        sector_size: 512,
        block_size: 65536,
        volume_size: 0,
        keys: None,
    };
    let mut w = ImageWriter::create(&p, h).unwrap();
    let data = fill(8, 4096);
    w.push(EncodedChunk::single(
        0,
        &data,
        lifeboat::image::Codec::Raw,
        data.clone(),
    ))
    .unwrap();
    w.finish(&serde_json::json!({})).unwrap();
    let e = fails(&["verify", s(&p)]);
    assert!(e.contains("cycle"), "{e}");
}

#[test]
fn another_disk_against_a_parent_is_refused_unless_forced() {
    let lab = build_chain();
    let other = lab.dir.parent().unwrap().join("other.img");
    std::fs::write(&other, original()).unwrap();
    let out = lab.dir.join("x.lbi");
    let e = fails(&[
        "image",
        s(&other),
        "-o",
        s(&out),
        "--parent",
        s(&lab.states[0].0),
    ]);
    assert!(
        e.contains("is not the disk") && e.contains(s(&other)) && e.contains(s(&lab.disk)),
        "{e}"
    );
    assert!(e.contains("--force-other-disk"), "{e}");
    assert!(!out.exists());
    // Forced: the same content is found in the chain, so almost nothing is stored.
    ok(&[
        "image",
        s(&other),
        "-o",
        s(&out),
        "--parent",
        s(&lab.states[0].0),
        "--force-other-disk",
    ]);
    assert!(std::fs::metadata(&out).unwrap().len() < 100_000);
    restore_and_compare(&out, &lab.dir, &original(), "forced");
    // --incremental finds no image of the other disk.
    let e = fails(&[
        "image",
        s(&other),
        "--incremental",
        s(&lab.dir.join("empty-not-there")),
    ]);
    assert!(e.contains("listing"), "{e}");
}

#[test]
fn merge_makes_a_self_contained_full_image_and_prune_keeps_what_is_needed() {
    let lab = build_chain();
    let (i2, want) = lab.states[2].clone();
    let out_dir = lab.dir.parent().unwrap().join("merged");
    std::fs::create_dir(&out_dir).unwrap();
    let merged = out_dir.join("week.lbi");
    ok(&["merge", s(&i2), "-o", s(&merged)]);
    assert_eq!(info(&merged)["kind"], "full");
    assert!(info(&merged)["parent_id"].is_null());
    // Prune in a copy of the folder: keeping incr1 needs the full image and incr1 only.
    let copy = lab.dir.parent().unwrap().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for (p, _) in &lab.states {
        std::fs::copy(p, copy.join(p.file_name().unwrap())).unwrap();
    }
    let keep = copy.join(lab.states[1].0.file_name().unwrap());
    let dry = ok(&["prune", s(&copy), "--keep", s(&keep), "--dry-run"]);
    assert!(dry.contains("2 images to delete"), "{dry}");
    ok(&["prune", s(&copy), "--keep", s(&keep), "--yes"]);
    let left: Vec<String> = std::fs::read_dir(&copy)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"pc.lbi".to_string()));
    ok(&["verify", s(&keep)]);
    // Now delete the whole original chain: the merged image does not need it.
    for (p, _) in &lab.states {
        std::fs::remove_file(p).unwrap();
    }
    ok(&["verify", s(&merged)]);
    restore_and_compare(&merged, &out_dir, &want, "merged");
    // An incremental on top of the merged image works like on any full image.
    let mut d = want.clone();
    patch(&mut d, 5 * MIB, &fill(11, 64 << 10));
    std::fs::write(&lab.disk, &d).unwrap();
    ok(&["image", s(&lab.disk), "--incremental", s(&out_dir)]);
    let next = newest(&out_dir, "-incr");
    assert!(next
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("week-"));
    restore_and_compare(&next, &out_dir, &d, "after-merge");
}

#[test]
fn a_damaged_parent_is_named_with_what_is_wrong() {
    let lab = build_chain();
    let full = &lab.states[0].0;
    // Cut the full image short: it is no longer a complete image.
    let b = std::fs::read(full).unwrap();
    std::fs::write(full, &b[..b.len() - 1000]).unwrap();
    let e = fails(&["verify", s(&lab.states[1].0)]);
    assert!(
        e.contains(s(full)) && e.contains("damaged") && e.contains("incomplete"),
        "{e}"
    );
    let target = lab.dir.join("t.img");
    let e = fails(&["restore", s(&lab.states[3].0), s(&target), "--yes"]);
    assert!(e.contains("damaged"), "{e}");
    assert!(!target.exists());
}
