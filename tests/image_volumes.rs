//! Tier 1: images split into volumes (`NAME.lbi`, `NAME.lbi.001`…) are one image to every
//! command: `verify`, `restore`, `info`, chains (a split parent under a split child),
//! `merge` and `prune` (which deletes every volume). A missing, cut or stray volume is an
//! error that names it. A file size limit (`ulimit -f`) is an error that names the limit,
//! with a non-zero exit and no file left named like the image; an existing output is refused
//! with the file named and what to do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{lifeboat_fails as fails, lifeboat_ok as ok};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: usize = 1 << 20;
const DISK: usize = 12 * MIB;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A disk of incompressible data (so that the image is as large as the disk), imaged in
/// 1 MiB volumes.
fn split_image(dir: &Path) -> (PathBuf, PathBuf) {
    let disk = dir.join("disk.raw");
    std::fs::write(&disk, common::noise(DISK, 7)).unwrap();
    let img = dir.join("full.lbi");
    let out = ok(&["image", s(&disk), "-o", s(&img), "--volume-size", "1M"]);
    assert!(out.contains("in 13 volumes"), "{out}");
    (disk, img)
}

fn restored(img: &Path, dir: &Path, name: &str) -> Vec<u8> {
    let t = dir.join(name);
    std::fs::File::create(&t)
        .unwrap()
        .set_len(DISK as u64)
        .unwrap();
    ok(&["restore", s(img), s(&t), "--yes"]);
    let b = std::fs::read(&t).unwrap();
    std::fs::remove_file(&t).unwrap();
    b
}

#[test]
fn a_split_chain_verifies_restores_merges_and_prunes_as_one_image() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let (disk, _) = split_image(d.path());
    let full = store.join("full.lbi");
    std::fs::rename(d.path().join("full.lbi"), &full).unwrap();
    for n in 1..=12 {
        std::fs::rename(
            d.path().join(format!("full.lbi.{n:03}")),
            store.join(format!("full.lbi.{n:03}")),
        )
        .unwrap();
    }
    let first = std::fs::read(&disk).unwrap();

    // info names every volume; the plan says why it splits
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", s(&full), "--json"])).unwrap();
    assert_eq!(info["volume_size"], MIB as u64);
    assert_eq!(info["files"].as_array().unwrap().len(), 13);
    assert_eq!(info["format_version"], "1.2");
    assert_eq!(info["raw_bytes"], DISK as u64);
    ok(&["verify", s(&full)]);
    assert!(restored(&full, d.path(), "t1.raw") == first);

    // a child of a split parent, itself split
    let mut second = first.clone();
    second[3 * MIB..3 * MIB + 100_000].copy_from_slice(&common::noise(100_000, 9));
    std::fs::write(&disk, &second).unwrap();
    let incr = store.join("incr.lbi");
    let plan = ok(&[
        "image",
        s(&disk),
        "-o",
        s(&incr),
        "--parent",
        s(&full),
        "--volume-size",
        "1M",
        "--dry-run",
    ]);
    assert!(
        plan.contains("split: into volumes of at most 1.0 MiB")
            && plan.contains("because --volume-size asks"),
        "{plan}"
    );
    ok(&[
        "image",
        s(&disk),
        "-o",
        s(&incr),
        "--parent",
        s(&full),
        "--volume-size",
        "1M",
    ]);
    ok(&["verify", s(&incr)]);
    assert!(restored(&incr, d.path(), "t2.raw") == second);

    // merge the chain into one full image, then prune: every volume of the old full goes
    let merged = store.join("merged.lbi");
    ok(&["merge", s(&incr), "-o", s(&merged)]);
    assert!(restored(&merged, d.path(), "t3.raw") == second);
    ok(&["prune", s(&store), "--keep", s(&merged), "--yes"]);
    assert_eq!(names(&store), vec!["merged.lbi".to_string()]);
}

#[test]
fn missing_cut_or_gap_volumes_are_named() {
    let d = tempfile::tempdir().unwrap();
    let (_, img) = split_image(d.path());
    let vol = |n: usize| d.path().join(format!("full.lbi.{n:03}"));

    // a later volume given for the image: pointed at the first
    let e = fails(&["verify", s(&vol(3))]);
    assert!(
        e.contains("later volume of a split image") && e.contains("full.lbi"),
        "{e}"
    );

    // a middle volume gone: the gap is named, for every command that reads the image
    let kept = std::fs::read(vol(5)).unwrap();
    std::fs::remove_file(vol(5)).unwrap();
    for cmd in [&["verify", s(&img)][..], &["info", s(&img)][..]] {
        let e = fails(cmd);
        assert!(
            e.contains("full.lbi.005") && e.contains("missing"),
            "{cmd:?}: {e}"
        );
    }
    let t = d.path().join("t.raw");
    std::fs::File::create(&t)
        .unwrap()
        .set_len(DISK as u64)
        .unwrap();
    let e = fails(&["restore", s(&img), s(&t), "--yes"]);
    assert!(e.contains("full.lbi.005"), "{e}");

    // a middle volume cut short
    std::fs::write(vol(5), &kept[..kept.len() / 2]).unwrap();
    let e = fails(&["verify", s(&img)]);
    assert!(e.contains("full.lbi.005") && e.contains("truncated"), "{e}");
    std::fs::write(vol(5), &kept).unwrap();
    ok(&["verify", s(&img)]);

    // a volume of the image is never a restore target
    let e = fails(&["restore", s(&img), s(&vol(3)), "--yes"]);
    assert!(e.contains("image file itself (or a volume of it)"), "{e}");

    // the last volume cut short, then gone
    let last = std::fs::read(vol(12)).unwrap();
    std::fs::write(vol(12), &last[..last.len() - 1]).unwrap();
    let e = fails(&["verify", s(&img)]);
    assert!(e.contains("full.lbi.012") && e.contains("truncated"), "{e}");
    std::fs::remove_file(vol(12)).unwrap();
    let e = fails(&["verify", s(&img)]);
    assert!(e.contains("full.lbi.012") && e.contains("missing"), "{e}");

    // a stray volume after the end (a set of two images mixed up)
    std::fs::write(vol(12), &last).unwrap();
    std::fs::write(vol(13), b"stray").unwrap();
    let e = fails(&["verify", s(&img)]);
    assert!(e.contains("full.lbi.012"), "{e}");
}

#[test]
fn a_file_size_limit_is_an_error_that_names_it_and_leaves_no_image() {
    let d = tempfile::tempdir().unwrap();
    let disk = d.path().join("disk.raw");
    std::fs::write(&disk, common::noise(DISK, 3)).unwrap();
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let img = out.join("limited.lbi");
    // bash's ulimit -f counts 1024-byte blocks: 4 MiB, a third of the image
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -f 4096 && exec {} image {} -o {}",
            env!("CARGO_BIN_EXE_lifeboat"),
            s(&disk),
            s(&img)
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "not killed by SIGXFSZ: {err}");
    assert!(
        err.contains("limited.lbi cannot grow past 4194304 bytes")
            && err.contains("ulimit -f")
            && err.contains("--volume-size"),
        "{err}"
    );
    assert!(err.contains("warning: the file size limit"), "{err}");
    assert!(names(&out).is_empty(), "{:?}", names(&out));

    // with volumes under the limit, the same job succeeds
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -f 4096 && exec {} image {} -o {} --volume-size 4M",
            env!("CARGO_BIN_EXE_lifeboat"),
            s(&disk),
            s(&img)
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(names(&out).len(), 4, "{:?}", names(&out));
    ok(&["verify", s(&img)]);
}

#[test]
fn an_existing_output_or_leftover_is_refused_with_what_to_do() {
    let d = tempfile::tempdir().unwrap();
    let disk = d.path().join("disk.raw");
    std::fs::write(&disk, common::noise(2 * MIB, 1)).unwrap();
    let img = d.path().join("old.lbi");
    ok(&["image", s(&disk), "-o", s(&img)]);
    let e = fails(&["image", s(&disk), "-o", s(&img)]);
    assert!(
        e.contains("old.lbi: it already exists") && e.contains("choose another name"),
        "{e}"
    );
    assert!(!e.contains("entity already exists"), "{e}");
    // a stray volume of that name is just as much in the way
    std::fs::write(d.path().join("new.lbi.001"), b"x").unwrap();
    let e = fails(&["image", s(&disk), "-o", s(&d.path().join("new.lbi"))]);
    assert!(e.contains("new.lbi.001 already exists"), "{e}");
    let e = fails(&["merge", s(&img), "-o", s(&img)]);
    assert!(e.contains("it already exists"), "{e}");
}
