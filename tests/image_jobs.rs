//! Tier 1: `image`, `verify`, `info` and `restore` end to end on sparse disk-image files
//! (no root). Filesystems are built with `mkfs.ext4 -d` straight into a partition of a GPT
//! disk file; their files are dumped with `debugfs rdump` and compared after the round trip.
#![allow(clippy::unwrap_used)]

mod common;

use common::{require_tool, sh, sparse, write_at};
use lifeboat::blockdev::testing::{AlignCheckDev, FaultyDev};
use lifeboat::blockdev::{BlockDev, FileDev, MemDev, OpenMode};
use lifeboat::discovery::SystemPaths;
use lifeboat::jobs::{image, restore, CancelToken, Event, Phase, Reporter};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;
/// Partition 2 (ext4) starts here and is this long.
const P2_START: u64 = 3 * MIB;
const P2_LEN: u64 = 64 * MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic file tree: text, incompressible data, a sparse file, a hardlink, unicode.
fn make_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("docs/sub")).unwrap();
    for i in 0..50 {
        std::fs::write(
            dir.join(format!("docs/sub/note-{i}.txt")),
            format!("line {i}\n").repeat(200 + i * 37),
        )
        .unwrap();
    }
    let mut x = 0x9e37_79b9_u32;
    let noise: Vec<u8> = (0..6 * MIB as usize)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 3) as u8
        })
        .collect();
    std::fs::write(dir.join("noise.bin"), &noise).unwrap();
    std::fs::write(dir.join("ünïcødé ☃.txt"), "snow\n").unwrap();
    let f = std::fs::File::create(dir.join("sparse.img")).unwrap();
    f.set_len(20 * MIB).unwrap();
    drop(f);
    write_at(
        &dir.join("sparse.img"),
        10 * MIB,
        b"middle of a sparse file",
    );
    std::fs::hard_link(dir.join("noise.bin"), dir.join("noise-link.bin")).unwrap();
}

/// A 96 MiB GPT disk: p1 BIOS boot (1..3 MiB, random bytes), p2 ext4 with files, then free
/// space; bytes in the post-MBR gap that a boot loader would own.
fn make_disk(dir: &Path) -> PathBuf {
    require_tool("sgdisk");
    require_tool("mkfs.ext4");
    let disk = dir.join("disk.img");
    sparse(&disk, 96 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+2M -t1:ef02 -n2:{}:+{}M -t2:8300 {}",
        P2_START / 512,
        P2_LEN / MIB,
        disk.display()
    ));
    let tree = dir.join("tree");
    make_tree(&tree);
    sh(&format!(
        "mkfs.ext4 -q -F -b 4096 -E offset={P2_START} -d {} -U 11111111-2222-3333-4444-555555555555 -L data {} {}k",
        tree.display(),
        disk.display(),
        P2_LEN / 1024
    ));
    write_at(&disk, 40_000, b"GRUB-CORE-IMG-IN-THE-GAP");
    write_at(&disk, MIB + 4096, &[0xA5; 8192]); // BIOS-boot partition payload
    disk
}

fn extract(disk: &Path, start: u64, len: u64, out: &Path) {
    sh(&format!(
        "dd if={} of={} bs=1M skip={} count={} iflag=skip_bytes,count_bytes status=none",
        disk.display(),
        out.display(),
        start,
        len
    ));
}

/// Dumps an ext4 partition's files with debugfs and returns the dump directory.
fn dump_ext4(disk: &Path, dir: &Path, name: &str) -> PathBuf {
    let part = dir.join(format!("{name}.p2"));
    extract(disk, P2_START, P2_LEN, &part);
    let fsck = Command::new("e2fsck")
        .args(["-fn"])
        .arg(&part)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck on {name}: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let out = dir.join(format!("{name}.files"));
    std::fs::create_dir_all(&out).unwrap();
    sh(&format!(
        "debugfs -R 'rdump / {}' {} 2>/dev/null",
        out.display(),
        part.display()
    ));
    out
}

fn same_files(a: &Path, b: &Path) {
    let d = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        d.status.success(),
        "trees differ: {}",
        String::from_utf8_lossy(&d.stdout)
    );
    let n = sh(&format!("find {} -type f | wc -l", b.display()));
    assert!(
        n.trim().parse::<u32>().unwrap() >= 54,
        "only {n} files dumped"
    );
}

/// Defaults the CLI would use, with two threads.
fn spec_for(disk: &Path, output: PathBuf) -> image::ImageSpec {
    image::ImageSpec {
        source: disk.to_path_buf(),
        output,
        partitions: None,
        level: 3,
        threads: 2,
        chunk_size: image::DEFAULT_CHUNK,
        block_size: image::DEFAULT_BLOCK,
        file_sector_size: 512,
        parent: None,
        volume_size: None,
        rescue: None,
        full_swap: false,
        encrypt: None,
        dedup: false,
    }
}

fn image_of(dir: &Path, disk: &Path) -> PathBuf {
    let img = dir.join("disk.lbi");
    let o = lifeboat(&[
        "image",
        disk.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "image failed: {}", stderr(&o));
    img
}

#[test]
fn gpt_ext4_round_trip_onto_same_larger_and_smaller_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let img = image_of(d, &disk);

    let v = lifeboat(&["verify", img.to_str().unwrap()]);
    assert!(v.status.success(), "{}", stderr(&v));
    let info = lifeboat(&["info", "--json", img.to_str().unwrap()]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let p2 = info["meta"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["partition"] == 2)
        .unwrap()
        .clone();
    assert_eq!(p2["fs"], "ext4");
    assert_eq!(p2["label"], "data");
    assert_eq!(p2["method"], "used-blocks");
    assert!(p2["used_bytes"].as_u64().unwrap() < P2_LEN / 2, "{p2}");
    // Much less than the disk is stored: unused blocks are not read.
    assert!(info["file_bytes"].as_u64().unwrap() < 16 * MIB, "{info}");

    let want = dump_ext4(&disk, d, "source");
    for (name, size) in [
        ("same", 96 * MIB),
        ("larger", 128 * MIB),
        ("smaller", 72 * MIB),
    ] {
        let target = d.join(format!("{name}.img"));
        if name != "same" {
            sparse(&target, size); // existing files keep their size
        }
        let o = lifeboat(&[
            "restore",
            img.to_str().unwrap(),
            target.to_str().unwrap(),
            "--yes",
        ]);
        assert!(o.status.success(), "restore {name}: {}", stderr(&o));
        assert_eq!(std::fs::metadata(&target).unwrap().len(), size);
        let v = sh(&format!("sgdisk -v {} 2>&1", target.display()));
        assert!(v.contains("No problems found"), "{name}: {v}");
        // Boot-loader bytes in the gap and the BIOS-boot partition survive.
        assert_eq!(
            common::read_at(&target, 40_000, 24),
            b"GRUB-CORE-IMG-IN-THE-GAP"
        );
        assert_eq!(common::read_at(&target, MIB + 4096, 8192), vec![0xA5; 8192]);
        let got = dump_ext4(&target, d, name);
        same_files(&want, &got);
        let parts = sh(&format!("sgdisk -p {} | tail -2", target.display()));
        assert!(
            parts.contains(&format!("{}", P2_START / 512)),
            "{name}: {parts}"
        );
    }

    // Too small: refused with the exact size needed, target untouched.
    let tiny = d.join("tiny.img");
    sparse(&tiny, 60 * MIB);
    let o = lifeboat(&[
        "restore",
        img.to_str().unwrap(),
        tiny.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let need = P2_START + P2_LEN + 33 * 512;
    assert!(
        stderr(&o).contains(&format!("need at least {need} bytes, it has {}", 60 * MIB)),
        "{}",
        stderr(&o)
    );
    assert!(common::read_at(&tiny, 0, 4096).iter().all(|&b| b == 0));
}

#[test]
fn events_are_phase_progress_warning_finished() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let spec = spec_for(&disk, d.join("ev.lbi"));
    let plan = image::plan(&spec, &SystemPaths::default()).unwrap();
    assert_eq!(plan.table, Some("gpt"));
    // through the job runner, which ends the stream with exactly one typed Finished
    let (tx, rx) = crossbeam_channel::unbounded();
    let job = lifeboat::jobs::Job::Image(Box::new(plan.clone()));
    let r = lifeboat::jobs::run::spawn(job, tx, CancelToken::new())
        .unwrap()
        .join()
        .unwrap();
    let ev: Vec<Event> = rx.iter().collect();
    let Ok(lifeboat::jobs::Summary::Image(summary)) = r else {
        panic!("{r:?}")
    };
    // BIOS boot has no filesystem: that is not a warning, just "all".
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Warning { .. })),
        "{ev:?}"
    );
    assert_eq!(
        ev[0],
        Event::Phase {
            phase: Phase::Image,
            total_bytes: Some(plan.copy_bytes)
        }
    );
    let mut last = 0;
    for e in &ev {
        if let Event::Progress {
            phase: Phase::Image,
            done_bytes,
        } = e
        {
            assert!(*done_bytes >= last);
            last = *done_bytes;
        }
    }
    assert_eq!(last, plan.copy_bytes);
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Phase {
            phase: Phase::Verify,
            ..
        }
    )));
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Finished { .. }))
            .count(),
        1
    );
    let Some(Event::Finished {
        ok: true,
        summary: Some(lifeboat::jobs::Summary::Image(s)),
        error: None,
    }) = ev.last()
    else {
        panic!("{:?}", ev.last())
    };
    assert_eq!(*s, summary);
    assert_eq!(s.read_bytes, plan.copy_bytes);
}

#[test]
fn partition_subset_skips_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let img = d.join("p1.lbi");
    let o = lifeboat(&[
        "image",
        disk.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
        "--partitions",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value =
        serde_json::from_slice(&lifeboat(&["info", "--json", img.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(info["meta"]["selected_partitions"], serde_json::json!([1]));
    let o = lifeboat(&[
        "image",
        disk.to_str().unwrap(),
        "-o",
        d.join("x.lbi").to_str().unwrap(),
        "--partitions",
        "7",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("it has no partition 7 (partitions: 1, 2)"),
        "{}",
        stderr(&o)
    );
    // A dry run plans and writes nothing.
    let o = lifeboat(&[
        "restore",
        img.to_str().unwrap(),
        d.join("new.img").to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("partition 2 is not in the image"));
    assert!(!d.join("new.img").exists());
}

/// Every kind of damage: `verify` exits 1 naming it, `restore` refuses and leaves no target.
#[test]
fn damaged_images_are_named_and_never_restored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let img = image_of(d, &disk);
    let good = std::fs::read(&img).unwrap();
    let reader = lifeboat::image::ImageReader::open(&img).unwrap();
    let rec = *reader
        .records()
        .iter()
        .find(|r| r.stored_len > 1000 && r.disk_offset >= P2_START)
        .unwrap();
    let index_off = reader.footer().index_offset;
    let chunk_end = rec.file_offset + u64::from(rec.stored_len);
    drop(reader);

    let flip = |at: u64| {
        let mut b = good.clone();
        b[at as usize] ^= 0x10;
        b
    };
    let mut newer = good.clone();
    newer[8] = 2;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("chunk", flip(rec.file_offset + 100), "partition 2"),
        ("index", flip(index_off + 40), "index"),
        ("header", flip(200), "header"),
        (
            "truncated mid-file",
            good[..good.len() / 2].to_vec(),
            "incomplete",
        ),
        (
            "truncated at a chunk end",
            good[..chunk_end as usize].to_vec(),
            "incomplete",
        ),
        ("empty", Vec::new(), "not a lifeboat image"),
        ("newer version", newer, "version 2"),
    ];
    for (name, bytes, expect) in cases {
        let bad = d.join("bad.lbi");
        std::fs::write(&bad, &bytes).unwrap();
        let v = lifeboat(&["verify", bad.to_str().unwrap()]);
        assert_eq!(v.status.code(), Some(1), "{name}");
        let msg = stderr(&v).to_lowercase();
        assert!(msg.contains(expect), "{name}: {msg}");
        let target = d.join("target.img");
        let r = lifeboat(&[
            "restore",
            bad.to_str().unwrap(),
            target.to_str().unwrap(),
            "--yes",
        ]);
        assert_eq!(r.status.code(), Some(1), "{name}: {}", stderr(&r));
        assert!(
            !target.exists(),
            "{name}: a target exists after a failed restore"
        );
        assert!(
            !String::from_utf8_lossy(&r.stdout).contains("restored"),
            "{name}"
        );
    }
    if let Some(o) = Some(stderr(&lifeboat(&["verify", img.to_str().unwrap()]))) {
        assert!(o.is_empty() || !o.contains("error"), "{o}");
    }
}

#[test]
fn sigkill_during_image_leaves_nothing_that_looks_like_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A raw 300 MiB source of noise at level 19 on one thread takes many seconds.
    let src = d.join("noise.img");
    let mut x = 0x1234_5678_u64;
    let mut buf = vec![0u8; (300 * MIB) as usize];
    for b in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&(x & 0x3f3f_3f3f_3f3f_3f3f).to_le_bytes()[..b.len()]);
    }
    std::fs::write(&src, &buf).unwrap();
    drop(buf);
    let out = d.join("killed.lbi");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args([
            "image",
            src.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--level",
            "19",
            "--threads",
            "1",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = d.join("killed.lbi.partial");
    for _ in 0..100 {
        if std::fs::metadata(&partial).is_ok_and(|m| m.len() > 4096) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !out.exists(),
        "a file with the image's name exists after SIGKILL"
    );
    // The leftover partial file is never accepted as an image.
    let v = lifeboat(&["verify", partial.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    assert!(stderr(&v).contains("incomplete"), "{}", stderr(&v));
}

#[test]
fn read_errors_on_the_source_name_the_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let spec = spec_for(&disk, d.join("f.lbi"));
    let plan = image::plan(&spec, &SystemPaths::default()).unwrap();
    let src = FileDev::open(&disk, OpenMode::Read).unwrap();
    let bad = P2_START + 4096 * 3; // inside ext4's used metadata
    let faulty = FaultyDev::new(src).fail_reads(bad..bad + 512);
    // through the page cache, and through an O_DIRECT handle (the same device here)
    for direct in [false, true] {
        let d2 = direct.then_some(&faulty as &dyn BlockDev);
        let e = image::run_on(&plan, &faulty, d2, &Reporter::silent(), &CancelToken::new())
            .unwrap_err();
        let msg = e.to_string();
        // The exact bad sector, not the start of its chunk.
        assert!(
            msg.contains("read error") && msg.contains(&format!("at byte {bad} (length 512)")),
            "direct {direct}: {msg}"
        );
        assert!(!d.join("f.lbi").exists());
        assert!(!d.join("f.lbi.partial").exists());
    }
}

#[test]
fn write_errors_on_the_target_fail_and_leave_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let img = image_of(d, &disk);
    let plan = restore_plan(&img, &d.join("t.img"));
    let chain = lifeboat::image::Chain::open(&img, &[]).unwrap();
    // through the page cache, and through an O_DIRECT handle (the same device here): either
    // way the error names a range holding the bad block
    for direct in [false, true] {
        // The target already holds an old GPT: it must be gone after the failure.
        let old = std::fs::read(&disk).unwrap();
        let mem = MemDev::from_vec(old, 512);
        let bad = P2_START + 8 * MIB;
        let faulty = FaultyDev::new(mem).fail_writes(bad..bad + 4096);
        let e = restore::run_on(
            &plan,
            &chain,
            &faulty,
            direct.then_some(&faulty as &dyn BlockDev),
            false,
            &Reporter::silent(),
            &CancelToken::new(),
        )
        .unwrap_err();
        match &e {
            lifeboat::Error::Write { offset, len, .. } => {
                assert!(
                    *offset <= bad && bad < offset + *len as u64,
                    "direct {direct}: {e}"
                );
            }
            other => panic!("direct {direct}: not a write error: {other}"),
        }
        let mut head = vec![0u8; 34 * 512];
        faulty.inner().read_at(&mut head, 0).unwrap();
        assert!(
            head.iter().all(|&b| b == 0),
            "direct {direct}: the table survived a failed restore"
        );
    }
}

#[test]
fn restore_refuses_the_image_itself_and_unconfirmed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let img = image_of(d, &disk);
    let o = lifeboat(&[
        "restore",
        img.to_str().unwrap(),
        img.to_str().unwrap(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("it is the image file itself"),
        "{}",
        stderr(&o)
    );
    // Without --yes and without a terminal: refused, nothing created.
    let t = d.join("t.img");
    let o = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["restore", img.to_str().unwrap(), t.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("without confirmation: pass --yes"),
        "{}",
        stderr(&o)
    );
    assert!(!t.exists());
    // An existing image is never overwritten.
    let o = lifeboat(&["image", disk.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
}

/// Windows Fast Startup: a hibernated NTFS is imaged block by block with a warning, so the
/// restore is byte-identical and nothing Windows resumes with can be lost.
#[test]
fn hibernated_ntfs_is_copied_whole_with_a_warning() {
    require_tool("mkntfs");
    require_tool("ntfscp");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fs = d.join("ntfs.img");
    sparse(&fs, 32 * MIB);
    sh(&format!("mkntfs -q -F -Q {} >/dev/null 2>&1", fs.display()));
    let clean = d.join("clean.lbi");
    let o = lifeboat(&["image", fs.to_str().unwrap(), "-o", clean.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));

    let mut hiber = b"hibr".to_vec();
    hiber.extend(vec![0x5a; 64 << 10]);
    std::fs::write(d.join("hiberfil.sys"), &hiber).unwrap();
    sh(&format!(
        "ntfscp -f {} {} /hiberfil.sys >/dev/null 2>&1",
        fs.display(),
        d.join("hiberfil.sys").display()
    ));
    // Garbage in free space must come back too: the hibernated kernel may own it.
    let img = d.join("hiber.lbi");
    let o = lifeboat(&["image", fs.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: whole device copied: Windows is hibernated"),
        "{}",
        stderr(&o)
    );
    let info: serde_json::Value =
        serde_json::from_slice(&lifeboat(&["info", "--json", img.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(info["meta"]["regions"][0]["method"], "all", "{info}");
    restores_byte_for_byte(&img, &fs, d);
}

#[test]
fn a_lost_write_is_caught_by_the_read_back_and_leaves_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let img = image_of(d, &disk);
    let mut plan = restore_plan(&img, &disk);
    plan.target.readback_region = MIB;
    let chain = lifeboat::image::Chain::open(&img, &[]).unwrap();
    // an old disk with the same table but other data, and a device that loses 4 KiB of
    // what is written to it while reporting success, under the direct handle and the other
    let mut old = std::fs::read(&disk).unwrap();
    for (i, b) in old[P2_START as usize..(P2_START + P2_LEN) as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i % 251) as u8 ^ 0x5a;
    }
    let bad = P2_START + 8 * MIB;
    let lossy = FaultyDev::new(MemDev::from_vec(old, 512)).drop_writes(bad..bad + 4096);
    let e = restore::run_on(
        &plan,
        &chain,
        &lossy,
        Some(&lossy),
        false,
        &Reporter::silent(),
        &CancelToken::new(),
    )
    .unwrap_err();
    match &e {
        lifeboat::Error::VerifyMismatch { offset, end, .. } => {
            assert!(
                *offset < bad + 4096 && bad < *end && end - offset <= 4 * MIB,
                "{e}"
            );
        }
        other => panic!("not a mismatch: {other}"),
    }
    let mut head = vec![0u8; 34 * 512];
    lossy.inner().read_at(&mut head, 0).unwrap();
    assert!(
        head.iter().all(|&b| b == 0),
        "a table was written after a failed read-back"
    );
}

/// FAT with 512-byte clusters in an MBR partition at sector 63, and ext4 at 1 MiB: records
/// whose ends fall inside 4 KiB units. Restored with a direct handle that fails any I/O
/// O_DIRECT would refuse, the disk comes out byte for byte, and the partial units are
/// read-modify-written (the bytes around them keep what was there).
#[test]
fn restore_direct_writes_are_aligned_for_every_layout() {
    require_tool("sfdisk");
    require_tool("mkfs.fat");
    require_tool("mcopy");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("disk.img");
    sparse(&disk, 72 * MIB);
    sh(&format!(
        "printf '63,81857,6\\n81920,,83\\n' | sfdisk -q {}",
        disk.display()
    ));
    sh(&format!(
        "mkfs.fat -F 32 -s 1 -S 512 --offset 63 {} 40928 >/dev/null",
        disk.display()
    ));
    let tree = d.join("tree");
    make_tree(&tree);
    sh(&format!(
        "mcopy -s -i {}@@{} {}/* ::/",
        disk.display(),
        63 * 512,
        tree.display()
    ));
    sh(&format!(
        "mkfs.ext4 -q -F -b 4096 -E offset={} -d {} {} {}k",
        40 * MIB,
        tree.display(),
        disk.display(),
        32 * MIB / 1024
    ));
    let img = image_of(d, &disk);
    let plan = restore_plan(&img, &disk);
    let chain = lifeboat::image::Chain::open(&img, &[]).unwrap();
    let want = std::fs::read(&disk).unwrap();
    // the target held other bytes: what the image does not cover must keep them
    let old: Vec<u8> = (0..want.len()).map(|i| (i % 253) as u8 | 1).collect();
    let mem = MemDev::from_vec(old.clone(), 512);
    let direct = AlignCheckDev::new(&mem, 4096);
    let w = restore::run_on(
        &plan,
        &chain,
        &mem,
        Some(&direct),
        false,
        &Reporter::silent(),
        &CancelToken::new(),
    )
    .unwrap();
    assert!(
        direct.writes() > 0,
        "nothing went through the direct handle"
    );
    let mut got = vec![0u8; want.len()];
    mem.read_at(&mut got, 0).unwrap();
    let mut covered = vec![false; want.len()];
    for &(off, len, _) in &w.ranges {
        covered[off as usize..(off + len) as usize].fill(true);
    }
    // (the old tables' areas before the first partition and at the end are wiped)
    let keep = 63 * 512..want.len() - (17 << 10);
    for (i, c) in covered.iter().enumerate() {
        let expect = match (*c, keep.contains(&i)) {
            (true, _) => want[i],
            (false, true) => old[i],
            (false, false) => continue,
        };
        assert_eq!(got[i], expect, "byte {i} (written by the restore: {c})");
    }
}

/// The plan of a verified restore of `img` onto `target`, on two threads.
fn restore_plan(img: &Path, target: &Path) -> restore::RestorePlan {
    let spec = restore::RestoreSpec {
        image: img.to_path_buf(),
        target: target.to_path_buf(),
        verify: true,
        threads: 2,
        search: vec![],
        grow_last: false,
        new_disk_id: false,
        fit: None,
    };
    restore::plan(&spec, &SystemPaths::default()).unwrap()
}

/// A memory target that logs every read and write, in order.
#[derive(Debug)]
struct Spy {
    inner: MemDev,
    log: std::sync::Mutex<Vec<(&'static str, u64, u64, bool)>>,
}

impl BlockDev for Spy {
    fn geometry(&self) -> lifeboat::blockdev::Geometry {
        self.inner.geometry()
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> lifeboat::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(("read", offset, buf.len() as u64, false));
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> lifeboat::Result<()> {
        let zeros = buf.iter().all(|&b| b == 0);
        self.log
            .lock()
            .unwrap()
            .push(("write", offset, buf.len() as u64, zeros));
        self.inner.write_at(buf, offset)
    }
    fn sync(&self) -> lifeboat::Result<()> {
        self.log.lock().unwrap().push(("sync", 0, 0, false));
        self.inner.sync()
    }
}

#[test]
fn the_partition_table_is_written_only_after_the_data_was_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = make_disk(d);
    let img = image_of(d, &disk);
    let mut plan = restore_plan(&img, &d.join("t.img"));
    // small regions, so that the read-back runs while the data is still being written
    plan.target.readback_region = MIB;
    let old = std::fs::read(&disk).unwrap();
    let spy = Spy {
        inner: MemDev::from_vec(old, 512),
        log: std::sync::Mutex::new(Vec::new()),
    };
    let chain = lifeboat::image::Chain::open(&img, &[]).unwrap();
    let (rep, rx) = Reporter::channel();
    let w = restore::run_on(&plan, &chain, &spy, None, false, &rep, &CancelToken::new()).unwrap();
    drop(rep);
    assert!(w.verified > 0);
    let size = spy.inner.len();
    let log = spy.log.into_inner().unwrap();
    // the first non-zero write into the primary GPT (LBA 0..34) is the table going down
    let table = log
        .iter()
        .position(|(op, off, _, zeros)| *op == "write" && *off < 34 * 512 && !zeros)
        .expect("no table was written");
    let backup = log
        .iter()
        .position(|(op, off, len, zeros)| *op == "write" && *off + *len > size - 33 * 512 && !zeros)
        .expect("no backup table was written");
    // Every read-back of data comes after a sync that follows every write of its bytes,
    // and nothing writes those bytes again until the tables.
    let data_area = |off: u64| (MIB..size - MIB).contains(&off);
    let mut reads = 0;
    for (i, &(op, off, len, _)) in log[..table].iter().enumerate() {
        if op != "read" || !data_area(off) {
            continue;
        }
        reads += 1;
        let hits =
            |e: &&(&str, u64, u64, bool)| e.0 == "write" && e.1 < off + len && off < e.1 + e.2;
        assert!(
            !log[i..table].iter().any(|e| hits(&e)),
            "bytes {off}+{len} were written again after they were read back"
        );
        let last = log[..i]
            .iter()
            .rposition(|e| hits(&e))
            .unwrap_or_else(|| panic!("bytes {off}+{len} read back but never written"));
        assert!(
            log[last..i].iter().any(|(op, ..)| *op == "sync"),
            "bytes {off}+{len} read back before a sync"
        );
    }
    assert!(reads > 0, "nothing was read back");
    // and the read-back ran while the data was still being written
    let first_read = log
        .iter()
        .position(|(op, off, ..)| *op == "read" && data_area(*off))
        .unwrap();
    let last_write = log[..table]
        .iter()
        .rposition(|(op, off, ..)| *op == "write" && data_area(*off))
        .unwrap();
    assert!(
        first_read < last_write,
        "the read-back waited for the end of the writing"
    );
    let readback = log[..table]
        .iter()
        .rposition(|(op, off, ..)| *op == "read" && data_area(*off))
        .unwrap();
    assert!(
        readback < table && readback < backup,
        "a table was written before the data was read back"
    );
    assert!(
        !log[table..].iter().any(|(op, off, len, _)| *op == "write"
            && *off >= MIB
            && *off + *len <= P2_START + P2_LEN),
        "data written after the table"
    );
    // and the table itself is synced and read back at the end
    let after = &log[table..];
    let s = after.iter().position(|(op, ..)| *op == "sync").unwrap();
    assert!(after[s..]
        .iter()
        .any(|(op, off, ..)| *op == "read" && *off < 34 * 512));
    // the events say so too: verify, then partition
    let phases: Vec<Phase> = rx
        .iter()
        .filter_map(|e: Event| match e {
            Event::Phase { phase, .. } => Some(phase),
            _ => None,
        })
        .collect();
    let at = |p: Phase| phases.iter().position(|x| *x == p).unwrap();
    assert!(at(Phase::Write) < at(Phase::Sync));
    assert!(at(Phase::Sync) < at(Phase::Verify));
    assert!(at(Phase::Verify) < at(Phase::Partition), "{phases:?}");
}

#[test]
fn nothing_to_image_is_refused_and_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // an empty file, and a GPT disk cut short after its first partition began
    let empty = d.join("empty.img");
    std::fs::File::create(&empty).unwrap();
    let disk = make_disk(d);
    let cut = d.join("cut.img");
    std::fs::copy(&disk, &cut).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(P2_START + MIB)
        .unwrap();
    for (src, want) in [
        (&empty, "there is nothing to image"),
        (&cut, "truncated copy"),
    ] {
        let out = d.join("x.lbi");
        let o = lifeboat(&["image", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(stderr(&o).contains(want), "{}", stderr(&o));
        assert!(stderr(&o).contains(src.to_str().unwrap()), "{}", stderr(&o));
        assert!(!out.exists());
        assert!(!d.join("x.lbi.partial").exists());
    }
}

#[test]
fn encrypted_partitions_are_copied_whole_and_named_so_in_the_plan_and_info() {
    require_tool("sgdisk");
    require_tool("cryptsetup");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("disk.img");
    sparse(&disk, 48 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+20M -n2:0:+20M {} >/dev/null",
        disk.display()
    ));
    // p1: LUKS2, written into a file and copied in (cryptsetup needs no device for a header)
    let luks = d.join("luks.img");
    sparse(&luks, 20 * MIB);
    std::fs::write(d.join("key"), b"not a secret").unwrap();
    sh(&format!(
        "cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file {} {}",
        d.join("key").display(),
        luks.display()
    ));
    write_at(&disk, MIB, &std::fs::read(&luks).unwrap());
    // p2: BitLocker (Windows 7 layout): the boot sector and the first FVE metadata block
    let p2 = 21 * MIB;
    let mut bs = vec![0u8; 512];
    bs[..11].copy_from_slice(b"\xEB\x58\x90-FVE-FS-");
    bs[160..176].copy_from_slice(&[
        0x3b, 0xd6, 0x67, 0x49, 0x29, 0x2e, 0xd8, 0x4a, 0x83, 0x99, 0xf6, 0xa3, 0x39, 0xe3, 0xd0,
        0x01,
    ]);
    bs[176..184].copy_from_slice(&(1u64 << 20).to_le_bytes());
    bs[510..].copy_from_slice(&[0x55, 0xAA]);
    write_at(&disk, p2, &bs);
    write_at(&disk, p2 + MIB, b"-FVE-FS-");
    // ciphertext-like bytes deep inside both, which must come back
    write_at(&disk, 15 * MIB, &[0x5A; 4096]);
    write_at(&disk, p2 + 12 * MIB, &[0xA5; 4096]);

    let img = d.join("enc.lbi");
    let o = lifeboat(&["image", disk.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (n, name) in [(1, "LUKS2"), (2, "BitLocker")] {
        assert!(
            stderr(&o).contains(&format!(
                "partition {n} is copied block by block: encrypted ({name}), copied whole"
            )),
            "{}",
            stderr(&o)
        );
    }
    let info: serde_json::Value =
        serde_json::from_slice(&lifeboat(&["info", "--json", img.to_str().unwrap()]).stdout)
            .unwrap();
    let regions = info["meta"]["regions"].as_array().unwrap();
    for (fs, name) in [("crypto_LUKS", "LUKS2"), ("BitLocker", "BitLocker")] {
        let r = regions
            .iter()
            .find(|r| r["fs"] == fs)
            .unwrap_or_else(|| panic!("no {fs} region in {info}"));
        assert_eq!(r["method"], "all", "{r}");
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .starts_with(&format!("encrypted ({name})")),
            "{r}"
        );
    }
    let text = String::from_utf8(lifeboat(&["info", img.to_str().unwrap()]).stdout).unwrap();
    assert!(
        text.contains("all: encrypted (BitLocker), copied whole"),
        "{text}"
    );
    restores_byte_for_byte(&img, &disk, d);
}

/// `img` restored onto a new file in `dir` is `source`, byte for byte.
fn restores_byte_for_byte(img: &Path, source: &Path, dir: &Path) {
    let back = dir.join("back.img");
    let o = lifeboat(&[
        "restore",
        img.to_str().unwrap(),
        back.to_str().unwrap(),
        "--yes",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(&back).unwrap() == std::fs::read(source).unwrap(),
        "not byte-identical"
    );
}
