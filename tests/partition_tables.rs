//! Tier 1: partition tables built with sgdisk, sfdisk and the gpt crate on sparse files, then
//! damaged on purpose. Every case must yield a precise diagnostic, never a panic or a hang.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use lifeboat::blockdev::{FileDev, MemDev, OpenMode};
use lifeboat::partition::{read_table, MbrRole, PartitionTable, Severity, TableKind};
use std::path::Path;

const MIB: u64 = 1 << 20;

fn table(path: &Path) -> PartitionTable {
    let dev = FileDev::open(path, OpenMode::Read).unwrap();
    read_table(&dev).unwrap().expect("a table")
}

fn messages(t: &PartitionTable, sev: Severity) -> Vec<String> {
    t.diagnostics
        .iter()
        .filter(|d| d.severity == sev)
        .map(|d| d.message.clone())
        .collect()
}

/// GPT disk: ESP, BIOS boot, Linux, 64 MiB.
fn gpt_disk(dir: &Path) -> std::path::PathBuf {
    require_tool("sgdisk");
    let p = dir.join("gpt.img");
    sparse(&p, 64 * MIB);
    sh(&format!(
        "sgdisk -U 11111111-2222-3333-4444-555555555555 -n1:2048:+8M -t1:ef00 -c1:ESP -n2:0:+1M -t2:ef02 -c2:bios \
         -n3:0:+20M -t3:8300 -c3:'root ü' {} >/dev/null",
        p.display()
    ));
    p
}

#[test]
fn gpt_is_read_like_sfdisk() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    let t = table(&p);
    assert_eq!(t.kind, TableKind::Gpt);
    assert_eq!(t.disk_id, "11111111-2222-3333-4444-555555555555");
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let g = t.gpt.as_ref().unwrap();
    assert_eq!(g.mbr, MbrRole::Protective);
    assert_eq!((g.entry_count, g.entry_size), (128, 128));
    assert_eq!(g.backup_lba, Some(64 * MIB / 512 - 1));

    let js: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk --json {}", p.display()))).unwrap();
    let sp = js["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(sp.len(), t.partitions.len());
    for (ours, theirs) in t.partitions.iter().zip(sp) {
        assert_eq!(ours.first_lba, theirs["start"].as_u64().unwrap());
        assert_eq!(ours.size_bytes, theirs["size"].as_u64().unwrap() * 512);
        assert_eq!(ours.part_type.to_string(), theirs["type"].as_str().unwrap());
        assert_eq!(ours.uuid.as_deref(), theirs["uuid"].as_str());
        assert_eq!(ours.name.as_deref(), theirs["name"].as_str());
    }
    assert_eq!(t.partitions[0].type_name, Some("EFI System"));
    assert_eq!(t.partitions[2].name.as_deref(), Some("root ü"));
}

#[test]
fn mbr_with_logical_partitions() {
    require_tool("sfdisk");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mbr.img");
    sparse(&p, 64 * MIB);
    sh(&format!(
        "printf 'label: dos\\nlabel-id: 0xdeadbeef\\n2048,8M,c,*\\n,8M,83\\n,4M,83\\n,30M,5\\n,10M,83\\n,10M,7\\n' | sfdisk -q {}",
        p.display()
    ));
    let t = table(&p);
    assert_eq!(t.kind, TableKind::Mbr);
    assert_eq!(t.disk_id, "0xdeadbeef");
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    let nums: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
    assert_eq!(nums, [1, 2, 3, 4, 5, 6]);
    assert_eq!(t.partitions[0].attributes, 0x80, "boot flag");
    assert!(t.partitions[3].extended);
    assert!(t.partitions[4].logical && t.partitions[5].logical);
    assert_eq!(t.partitions[5].part_type.to_string(), "0x07");

    let js: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk --json {}", p.display()))).unwrap();
    let sp = js["partitiontable"]["partitions"].as_array().unwrap();
    for (ours, theirs) in t.partitions.iter().zip(sp) {
        assert_eq!(ours.first_lba, theirs["start"].as_u64().unwrap());
        assert_eq!(ours.size_bytes, theirs["size"].as_u64().unwrap() * 512);
        let ty = u8::from_str_radix(theirs["type"].as_str().unwrap(), 16).unwrap();
        assert_eq!(ours.part_type.to_string(), format!("0x{ty:02x}"));
    }
}

#[test]
fn corrupt_primary_header_falls_back_to_backup() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    let mut b = read_at(&p, 512 + 16, 1);
    b[0] ^= 0xff; // flip the stored header CRC
    write_at(&p, 512 + 16, &b);
    let t = table(&p);
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.gpt.as_ref().unwrap().source, "backup");
    let w = messages(&t, Severity::Warning);
    assert!(
        w.iter()
            .any(|m| m.contains("primary GPT (LBA 1) is unusable: header CRC mismatch")),
        "{w:?}"
    );
    assert!(!t.has_errors());
}

#[test]
fn corrupt_primary_entries_fall_back_to_backup() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    write_at(&p, 2 * 512 + 40, &[0x42]); // inside entry 1's LBA fields
    let t = table(&p);
    assert_eq!(t.gpt.as_ref().unwrap().source, "backup");
    assert!(messages(&t, Severity::Warning)
        .iter()
        .any(|m| m.contains("partition entry array CRC mismatch")));
    assert_eq!(t.partitions[0].first_lba, 2048);
}

#[test]
fn corrupt_backup_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    write_at(&p, 64 * MIB - 512, &[0u8; 8]); // wipe the backup signature
    let t = table(&p);
    assert_eq!(t.gpt.as_ref().unwrap().source, "primary");
    assert!(messages(&t, Severity::Warning)
        .iter()
        .any(|m| m.contains("backup GPT (LBA 131071) is unusable: no \"EFI PART\" signature")));
}

#[test]
fn both_headers_corrupt_is_an_error_without_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    write_at(&p, 512 + 16, &[1, 2, 3, 4]);
    write_at(&p, 64 * MIB - 512 + 16, &[1, 2, 3, 4]);
    let t = table(&p);
    assert!(t.partitions.is_empty());
    let e = messages(&t, Severity::Error);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("primary") && e[1].contains("backup"));
}

#[test]
fn primary_and_backup_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    // rename partition 2 in the backup only, with valid CRCs
    edit_gpt_copy(&p, 64 * MIB / 512 - 1, |_, entries| {
        entries[128 + 56] = b'X';
    });
    let t = table(&p);
    let e = messages(&t, Severity::Error);
    assert!(
        e.iter()
            .any(|m| m.contains("GPT disagree") && m.contains("partition entry 2 differs")),
        "{e:?}"
    );
    assert_eq!(
        t.partitions[1].name.as_deref(),
        Some("bios"),
        "primary wins"
    );
}

#[test]
fn overlapping_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    for lba in [1, 64 * MIB / 512 - 1] {
        edit_gpt_copy(&p, lba, |_, e| {
            // partition 3 starts inside partition 1
            e[256 + 32..256 + 40].copy_from_slice(&4096u64.to_le_bytes());
        });
    }
    let t = table(&p);
    let e = messages(&t, Severity::Error);
    assert!(
        e.iter()
            .any(|m| m.contains("partitions 1 (LBA 2048–18431) and 3 (LBA 4096–")),
        "{e:?}"
    );
}

#[test]
fn partition_beyond_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    for lba in [1, 64 * MIB / 512 - 1] {
        edit_gpt_copy(&p, lba, |_, e| {
            e[256 + 40..256 + 48].copy_from_slice(&10_000_000u64.to_le_bytes());
        });
    }
    let t = table(&p);
    assert!(messages(&t, Severity::Error)
        .iter()
        .any(|m| m.contains("partition 3")
            && m.contains("beyond the end of the disk (last LBA 131071)")));
}

#[test]
fn absurd_entry_count_is_rejected_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    for lba in [1, 64 * MIB / 512 - 1] {
        edit_gpt_copy(&p, lba, |h, _| {
            h[80..84].copy_from_slice(&u32::MAX.to_le_bytes())
        });
    }
    let start = std::time::Instant::now();
    let t = table(&p);
    assert!(start.elapsed().as_secs() < 5);
    let e = messages(&t, Severity::Error);
    assert!(
        e.iter()
            .all(|m| m.contains("absurd entry array: 4294967295 entries")),
        "{e:?}"
    );
    // an entry size that would make the gpt crate assert
    for lba in [1, 64 * MIB / 512 - 1] {
        edit_gpt_copy(&p, lba, |h, _| {
            h[80..84].copy_from_slice(&128u32.to_le_bytes());
            h[84..88].copy_from_slice(&100u32.to_le_bytes());
        });
    }
    let t = table(&p);
    assert!(messages(&t, Severity::Error)
        .iter()
        .any(|m| m.contains("entry size 100")));
}

#[test]
fn grown_disk_finds_the_old_backup() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(128 * MIB)
        .unwrap();
    let t = table(&p);
    assert!(!t.has_errors(), "{:?}", t.diagnostics);
    assert_eq!(t.gpt.as_ref().unwrap().backup_lba, Some(64 * MIB / 512 - 1));
    assert!(messages(&t, Severity::Warning)
        .iter()
        .any(|m| m.contains("the disk's last LBA is 262143")));
}

#[test]
fn hybrid_mbr_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    sh(&format!("sgdisk -h 3 {} >/dev/null", p.display()));
    let t = table(&p);
    assert_eq!(t.kind, TableKind::Gpt);
    assert_eq!(t.gpt.as_ref().unwrap().mbr, MbrRole::Hybrid);
    assert!(messages(&t, Severity::Warning)
        .iter()
        .any(|m| m.contains("hybrid MBR")));
}

#[test]
fn protective_mbr_without_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let p = gpt_disk(dir.path());
    write_at(&p, 512, &[0u8; 8]);
    write_at(&p, 64 * MIB - 512, &[0u8; 8]);
    let t = table(&p);
    assert!(messages(&t, Severity::Error)
        .iter()
        .any(|m| m.contains("protective MBR (type 0xee) found but neither GPT header")));
}

#[test]
fn gpt_on_4kn_disk_built_with_the_gpt_crate() {
    let size = 64 * MIB as usize;
    let mut cur = std::io::Cursor::new(vec![0u8; size]);
    gpt::mbr::ProtectiveMBR::with_lb_size((size / 4096 - 1) as u32)
        .overwrite_lba0(&mut cur)
        .unwrap();
    let mut g = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb4096)
        .create_from_device(cur, None)
        .unwrap();
    g.add_partition("data", 16 * MIB, gpt::partition_types::LINUX_FS, 0, None)
        .unwrap();
    let data = g.write().unwrap().into_inner();
    let dev = MemDev::from_vec(data, 4096);
    let t = read_table(&dev).unwrap().unwrap();
    assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
    assert_eq!(t.sector_size, 4096);
    assert_eq!(t.partitions.len(), 1);
    assert_eq!(t.partitions[0].size_bytes, 16 * MIB);
    assert_eq!(
        t.partitions[0].start_bytes,
        t.partitions[0].first_lba * 4096
    );
    // the same bytes seen with 512-byte sectors hold no valid GPT
    let dev512 = MemDev::from_vec(dev.to_vec(), 512);
    let t512 = read_table(&dev512).unwrap().unwrap();
    assert!(t512.has_errors());
}

fn mbr_entry(boot: u8, sys: u8, start: u32, sectors: u32) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = boot;
    e[4] = sys;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    e
}

fn mbr_disk(entries: &[[u8; 16]], size: usize) -> Vec<u8> {
    let mut d = vec![0u8; size];
    for (i, e) in entries.iter().enumerate() {
        d[446 + 16 * i..462 + 16 * i].copy_from_slice(e);
    }
    d[510] = 0x55;
    d[511] = 0xaa;
    d
}

#[test]
fn hostile_mbrs() {
    // overlapping primaries and one beyond the end
    let d = mbr_disk(
        &[
            mbr_entry(0, 0x83, 2048, 4096),
            mbr_entry(0, 0x83, 4000, 100),
            mbr_entry(0, 0x83, 8192, u32::MAX),
        ],
        8 * MIB as usize,
    );
    let t = read_table(&MemDev::from_vec(d, 512)).unwrap().unwrap();
    let e = messages(&t, Severity::Error);
    assert!(
        e.iter()
            .any(|m| m.contains("partitions 1 (LBA 2048–6143) and 2 (LBA 4000–4099) overlap")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.contains("partition 3") && m.contains("beyond the end")),
        "{e:?}"
    );

    // an EBR chain that loops back to itself
    let mut d = mbr_disk(&[mbr_entry(0, 0x05, 2048, 8192)], 8 * MIB as usize);
    let ebr = mbr_disk(
        &[mbr_entry(0, 0x83, 63, 100), mbr_entry(0, 0x05, 0, 1000)],
        512,
    );
    d[2048 * 512..2049 * 512].copy_from_slice(&ebr);
    let t = read_table(&MemDev::from_vec(d.clone(), 512))
        .unwrap()
        .unwrap();
    assert_eq!(t.partitions.iter().filter(|p| p.logical).count(), 1);
    // next pointer 0 ends the chain; now make it point backwards
    let ebr2 = mbr_disk(
        &[mbr_entry(0, 0x83, 63, 100), mbr_entry(0, 0x05, 100, 1000)],
        512,
    );
    let ebr3 = mbr_disk(
        &[mbr_entry(0, 0x83, 63, 10), mbr_entry(0, 0x05, 100, 1000)],
        512,
    );
    d[2048 * 512..2049 * 512].copy_from_slice(&ebr2);
    d[2148 * 512..2149 * 512].copy_from_slice(&ebr3);
    let t = read_table(&MemDev::from_vec(d, 512)).unwrap().unwrap();
    assert!(
        messages(&t, Severity::Error)
            .iter()
            .any(|m| m.contains("chain loops back")),
        "{:?}",
        t.diagnostics
    );

    // a bad boot flag in an otherwise ordinary MBR
    let d = mbr_disk(&[mbr_entry(0x42, 0x83, 2048, 100)], MIB as usize);
    let t = read_table(&MemDev::from_vec(d, 512)).unwrap().unwrap();
    assert!(messages(&t, Severity::Error)[0].contains("cannot be decoded"));
}

#[test]
fn long_ebr_chain_is_bounded() {
    let mut d = mbr_disk(&[mbr_entry(0, 0x05, 2048, 16 * 1024)], 16 * MIB as usize);
    for i in 0..400u32 {
        let ebr = mbr_disk(
            &[mbr_entry(0, 0x83, 1, 1), mbr_entry(0, 0x05, (i + 1) * 2, 2)],
            512,
        );
        let at = (2048 + i as usize * 2) * 512;
        d[at..at + 512].copy_from_slice(&ebr);
    }
    let t = read_table(&MemDev::from_vec(d, 512)).unwrap().unwrap();
    assert_eq!(t.partitions.iter().filter(|p| p.logical).count(), 257);
    assert!(messages(&t, Severity::Error)
        .iter()
        .any(|m| m.contains("more than 256 logical partitions")));
}

#[test]
fn random_garbage_never_panics() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..300 {
        let mut d = vec![0u8; 256 * 1024];
        let n = 2 + (round % 40) * 64;
        for b in d.iter_mut().take(n * 8) {
            *b = next() as u8;
        }
        if round % 2 == 0 {
            d[510] = 0x55;
            d[511] = 0xaa;
            for i in 0..4 {
                d[446 + 16 * i] = [0, 0x80][i % 2];
            }
        }
        if round % 3 == 0 {
            d[512..520].copy_from_slice(b"EFI PART");
        }
        let _ = read_table(&MemDev::from_vec(d, 512)).unwrap();
    }
}

#[test]
fn whole_disk_filesystem_has_no_table() {
    require_tool("mkfs.vfat");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("floppy.img");
    sparse(&p, 32 * MIB);
    sh(&format!("mkfs.vfat -F 32 {} >/dev/null", p.display()));
    let dev = FileDev::open(&p, OpenMode::Read).unwrap();
    assert!(read_table(&dev).unwrap().is_none());
    let empty = MemDev::new(MIB as usize, 512);
    assert!(read_table(&empty).unwrap().is_none());
}

/// A hybrid ISO on a CD drive (2048-byte sectors) carries a GPT in 512-byte units: that is a
/// warning about the medium, not a broken table.
#[test]
fn hybrid_iso_gpt_on_optical_sectors_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let img = gpt_disk(dir.path());
    let data = std::fs::read(&img).unwrap();
    let t = read_table(&MemDev::from_vec(data.clone(), 2048))
        .unwrap()
        .unwrap();
    assert!(t.partitions.is_empty());
    assert!(
        messages(&t, Severity::Error).is_empty(),
        "{:?}",
        t.diagnostics
    );
    assert!(
        messages(&t, Severity::Warning)
            .iter()
            .any(|m| m.contains("hybrid ISO")),
        "{:?}",
        t.diagnostics
    );
    // the same bytes with 512-byte sectors still read as the GPT they are
    let t = read_table(&MemDev::from_vec(data, 512)).unwrap().unwrap();
    assert_eq!(t.kind, TableKind::Gpt);
    assert!(!t.partitions.is_empty());
}

/// `edit::apply_fit` on a copy of `src` shrunk to `target` bytes: the edited first MiB and
/// the extra writes land on a new sparse file, which sfdisk then reads.
fn fitted(
    src: &Path,
    placed: &[lifeboat::partition::fit::Placed],
    target: u64,
) -> std::path::PathBuf {
    use std::os::unix::fs::FileExt;
    let dev = FileDev::open(src, OpenMode::Read).unwrap();
    let t = read_table(&dev).unwrap().unwrap();
    let mut head = vec![(
        0u64,
        lifeboat::blockdev::read_vec(&dev, 0, MIB as usize).unwrap(),
    )];
    let extra = lifeboat::partition::edit::apply_fit(&t, &dev, placed, target, &mut head).unwrap();
    let out = src.with_extension("fitted");
    sparse(&out, target);
    let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
    for (o, b) in extra.iter().chain(head.iter()) {
        f.write_all_at(b, *o).unwrap();
    }
    out
}

fn placed(number: u32, old: (u64, u64), new: (u64, u64)) -> lifeboat::partition::fit::Placed {
    use lifeboat::partition::fit::Action;
    lifeboat::partition::fit::Placed {
        number,
        old_start: old.0,
        old_size: old.1,
        new_start: new.0,
        new_size: new.1,
        min: new.1,
        action: match (old.0 == new.0, old.1 == new.1) {
            (true, true) => Action::Keep,
            (false, true) => Action::Move,
            (true, false) => Action::Shrink,
            (false, false) => Action::ShrinkMove,
        },
    }
}

/// (start, size) in sectors of every partition sfdisk lists, in its order.
fn sfdisk_parts(p: &Path) -> Vec<(String, u64, u64, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&sh(&format!("sfdisk --json {}", p.display()))).unwrap();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                {
                    let node = p["node"].as_str().unwrap();
                    let digits =
                        node.len() - node.trim_end_matches(|c: char| c.is_ascii_digit()).len();
                    node[node.len() - digits..].to_string()
                },
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn apply_fit_moves_gpt_entries_and_rebuilds_both_headers() {
    require_tool("sgdisk");
    let d = tempfile::tempdir().unwrap();
    let src = gpt_disk(d.path()); // ESP 1..9, BIOS boot 9..10, root 10..30 MiB of 64
    let fit = [
        placed(1, (MIB, 8 * MIB), (MIB, 8 * MIB)),
        placed(2, (9 * MIB, MIB), (9 * MIB, MIB)),
        placed(3, (10 * MIB, 20 * MIB), (10 * MIB, 12 * MIB)),
    ];
    let out = fitted(&src, &fit, 24 * MIB);
    let v = sh(&format!("sgdisk -v {} 2>&1", out.display()));
    assert!(v.contains("No problems found"), "{v}");
    let parts = sfdisk_parts(&out);
    assert_eq!(parts[2].1, 10 * 2048);
    assert_eq!(parts[2].2, 12 * 2048);
    // disk GUID, names and types kept
    let info = sh(&format!("sgdisk -p -i3 {}", out.display()));
    assert!(
        info.contains("11111111-2222-3333-4444-555555555555"),
        "{info}"
    );
    assert!(info.contains("root ü"), "{info}");
}

#[test]
fn apply_fit_rebuilds_the_ebr_chain_of_moved_logical_partitions() {
    require_tool("sfdisk");
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("mbr.img");
    sparse(&p, 64 * MIB);
    // p1 1..9, p2 9..17, p3 17..18 MiB, extended p4 18..48 with logicals p5 and p6 (10 MiB)
    sh(&format!(
        "printf 'label: dos\\nlabel-id: 0xdeadbeef\\n2048,8M,c,*\\n,8M,83\\n,1M,83\\n,30M,5\\n,10M,83\\n,10M,7\\n' | sfdisk -q {}",
        p.display()
    ));
    let before = sfdisk_parts(&p);
    let at = |n: &str| before.iter().find(|x| x.0 == n).unwrap().clone();
    let (p3, x, p5, p6) = (at("3"), at("4"), at("5"), at("6"));
    assert_eq!(x.3, "5", "{before:?}");
    let s = 512;
    // p2 shrinks to 4 MiB, p3 and the logicals move left by 4 MiB, p6 shrinks to 6 MiB
    let shift = 4 * MIB;
    let fit = [
        placed(1, (MIB, 8 * MIB), (MIB, 8 * MIB)),
        placed(2, (9 * MIB, 8 * MIB), (9 * MIB, 4 * MIB)),
        placed(3, (p3.1 * s, p3.2 * s), (p3.1 * s - shift, p3.2 * s)),
        placed(5, (p5.1 * s, p5.2 * s), (p5.1 * s - shift, p5.2 * s)),
        placed(6, (p6.1 * s, p6.2 * s), (p6.1 * s - shift, 6 * MIB)),
    ];
    let out = fitted(&p, &fit, 40 * MIB);
    sh(&format!("sfdisk -V {}", out.display()));
    let after = sfdisk_parts(&out);
    let got = |n: &str| after.iter().find(|x| x.0 == n).unwrap().clone();
    assert_eq!((got("2").1, got("2").2), (9 * 2048, 4 * 2048));
    assert_eq!(got("3").1 * s, p3.1 * s - shift);
    assert_eq!(
        (got("5").1 * s, got("5").2 * s),
        (p5.1 * s - shift, p5.2 * s)
    );
    assert_eq!(
        (got("6").1 * s, got("6").2 * s),
        (p6.1 * s - shift, 6 * MIB)
    );
    assert_eq!((got("5").3.as_str(), got("6").3.as_str()), ("83", "7"));
    // the extended partition starts at the first EBR (moved with it) and holds both
    let nx = got("4");
    assert_eq!(nx.1 * s, x.1 * s - shift, "{after:?}");
    let end = (nx.1 + nx.2) * s;
    assert!(
        end >= p6.1 * s - shift + 6 * MIB && end <= 40 * MIB,
        "{after:?}"
    );
    let id = sh(&format!("sfdisk --disk-id {}", out.display()));
    assert_eq!(id.trim(), "0xdeadbeef");
}

#[test]
fn apply_fit_refuses_a_hybrid_mbr_when_something_moves() {
    require_tool("sgdisk");
    let d = tempfile::tempdir().unwrap();
    let src = gpt_disk(d.path());
    // gdisk's hybrid MBR: partition 1 also in the MBR
    sh(&format!("sgdisk -h 1 {} >/dev/null", src.display()));
    let dev = FileDev::open(&src, OpenMode::Read).unwrap();
    let t = read_table(&dev).unwrap().unwrap();
    let mut head = vec![(
        0u64,
        lifeboat::blockdev::read_vec(&dev, 0, MIB as usize).unwrap(),
    )];
    let fit = [placed(3, (10 * MIB, 20 * MIB), (10 * MIB, 12 * MIB))];
    let e = lifeboat::partition::edit::apply_fit(&t, &dev, &fit, 24 * MIB, &mut head)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hybrid MBR"), "{e}");
}
