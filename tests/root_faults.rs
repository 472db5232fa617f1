//! Tier 2 (root): read and write errors on real block devices. A FUSE file that fails chosen
//! byte ranges (tests/helpers/faultfs.py) sits under a loop device, so the errors come from
//! the kernel's block layer exactly as a bad sector or a dying target would deliver them.
#![allow(clippy::unwrap_used)]

mod common;

use common::{require_root, require_tool, sh, sparse, FaultFs, LoopDev};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;
const P2_START: u64 = 3 * MIB;
const P2_LEN: u64 = 64 * MIB;

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .expect("running lifeboat")
}

fn p(x: &Path) -> &str {
    x.to_str().unwrap()
}

fn prerequisites() -> bool {
    if !require_root() {
        return false;
    }
    for t in ["sgdisk", "mkfs.ext4", "losetup", "/usr/bin/python3"] {
        require_tool(t);
    }
    common::have_fusepy()
}

/// A 96 MiB GPT disk file with ext4 full of data in partition 2.
fn make_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.img");
    sparse(&disk, 96 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+2M -t1:ef02 -n2:{}:+{}M {}",
        P2_START / 512,
        P2_LEN / MIB,
        disk.display()
    ));
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    for i in 0..8u8 {
        std::fs::write(
            tree.join(format!("f{i}")),
            vec![i.wrapping_mul(37) | 1; 3 * MIB as usize],
        )
        .unwrap();
    }
    sh(&format!(
        "mkfs.ext4 -q -F -b 4096 -E offset={P2_START} -d {} {} {}k",
        tree.display(),
        disk.display(),
        P2_LEN / 1024
    ));
    disk
}

#[test]
fn bad_sector_on_the_source_stops_image_with_its_offset() {
    if !prerequisites() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let disk = make_disk(work.path());
    // A 4 KiB bad patch in the middle of the files' data (page-aligned: buffered reads
    // fail page by page).
    let bad = P2_START + 20 * MIB;
    let fs = FaultFs::start(
        &disk,
        work.path(),
        &format!("{{\"bad_read\": [[{bad}, 4096]]}}"),
    );
    let lo = LoopDev::attach_with(&fs.disk(), "-r");
    let out = work.path().join("out.lbi");
    let o = lifeboat(&["image", p(&lo.path), "-o", p(&out)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "read error on {} at byte {bad}",
            lo.path.display()
        )),
        "{err}"
    );
    assert!(!out.exists() && !work.path().join("out.lbi.partial").exists());
    drop(lo);
    fs.set("{}");
}

#[test]
fn write_errors_and_a_full_target_fail_restore_and_leave_no_table() {
    if !prerequisites() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let disk = make_disk(work.path());
    let img = work.path().join("disk.lbi");
    let o = lifeboat(&["image", p(&disk), "-o", p(&img)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Restore writes whole chunks with O_DIRECT. A loop device passes an EIO on through
    // when it fails a request's first bytes, but reports a short write (a fault in the middle
    // of a request) as done: that write is lost, and the read-back must catch it.
    let at_request = 24 * MIB; // where a chunk's write starts
    let mid_request = P2_START + 20 * MIB;
    let (write, check) = ("write error on", "verification failed on");
    for (name, control, bad, says) in [
        (
            "write EIO",
            format!("{{\"bad_write\": [[{at_request}, 4096]]}}"),
            at_request,
            &[write][..],
        ),
        (
            "write EIO mid-request",
            format!("{{\"bad_write\": [[{mid_request}, 4096]]}}"),
            mid_request,
            &[write, check][..],
        ),
        (
            "lost write",
            format!("{{\"drop_writes\": [[{mid_request}, 4096]]}}"),
            mid_request,
            &[check][..],
        ),
        (
            "ENOSPC",
            format!("{{\"enospc_after\": {mid_request}}}"),
            mid_request,
            &[write][..],
        ),
    ] {
        let target = work.path().join("target.img");
        // an old, valid GPT disk whose partitions hold other data
        std::fs::copy(&disk, &target).unwrap();
        let noise: Vec<u8> = (0..P2_LEN).map(|i| (i * 7919 % 251) as u8).collect();
        common::write_at(&target, P2_START, &noise);
        let fs = FaultFs::start(&target, work.path(), &control);
        let lo = LoopDev::attach(&fs.disk());
        let o = lifeboat(&["restore", p(&img), p(&lo.path), "--yes"]);
        let err = String::from_utf8_lossy(&o.stderr);
        let outp = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            says.iter()
                .any(|s| err.contains(&format!("{s} {}", lo.path.display()))),
            "{name}: {err}"
        );
        // the range named is at most one chunk, inside the write that hit the fault (a lost
        // write loses what the loop device had not completed, the fault's neighbours too)
        let (a, b) = err
            .split_once(" bytes ")
            .and_then(|(_, r)| r.split_once(".."))
            .map(|(a, r)| {
                let b: String = r.chars().take_while(char::is_ascii_digit).collect();
                (a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap())
            })
            .unwrap_or_else(|| panic!("{name}: no range in {err}"));
        // (a full disk fails every write past its limit: the first to fail, or the flush
        // after the old tables were wiped, which names the whole disk)
        if name != "ENOSPC" {
            let holds = a <= bad + 4095 && bad < b;
            let near = a < bad + 4 * MIB && bad < b + 4 * MIB;
            let ok = if name.contains("mid-request") {
                near
            } else {
                holds
            };
            assert!(ok && b - a <= 4 * MIB, "{name}: {err}");
        }
        assert!(!outp.contains("restored"), "{name}: {outp}");
        drop(lo);
        fs.set("{}");
        drop(fs);
        // The old table is gone and no new one was written: nothing looks restored.
        let head = common::read_at(&target, 0, 34 * 512);
        assert!(
            head.iter().all(|&b| b == 0),
            "{name}: a partition table survived"
        );
        std::fs::remove_file(&target).unwrap();
    }
}
