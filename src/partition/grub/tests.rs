use super::*;
use crate::fsmap::testutil::Rng;

/// GRUB 2's boot.img as grub-bios-setup leaves it on a GPT disk, built byte by byte from the
/// offsets in boot.S: the jump over the BPB, kernel_address, the kernel sector, the boot
/// drive, the nopped drive check, the instruction that loads the kernel sector, the "GRUB "
/// message, a disk signature, a protective MBR entry and the 0x55AA signature.
fn boot_img(core_lba: u64) -> Vec<u8> {
    let mut s = vec![0u8; 512];
    s[..3].copy_from_slice(&[0xEB, 0x63, 0x90]);
    s[0x5A..0x5C].copy_from_slice(&[0x00, 0x80]);
    s[0x5C..0x64].copy_from_slice(&core_lba.to_le_bytes());
    s[0x64] = 0xFF; // boot drive: the one the BIOS passes in DL
    s[0x65] = 0xFA; // cli, after_BPB
    s[0x66..0x68].copy_from_slice(&[0x90, 0x90]); // drive check nopped for a hard disk
    s[0xBB..0xC0].copy_from_slice(&[0x66, 0x8B, 0x1E, 0x5C, 0x7C]); // movl 0x7c5c, %ebx
    s[0x180..0x186].copy_from_slice(b"GRUB \0");
    s[0x1B8..0x1BC].copy_from_slice(&0x6c69_6665u32.to_le_bytes());
    s[0x1BE + 4] = 0xEE; // protective entry from LBA 1
    s[0x1BE + 8..0x1BE + 12].copy_from_slice(&1u32.to_le_bytes());
    s[0x1BE + 12..0x1BE + 16].copy_from_slice(&u32::MAX.to_le_bytes());
    s[510..].copy_from_slice(&[0x55, 0xAA]);
    s
}

/// A blocklist entry at `off`.
fn put_entry(s: &mut [u8], off: usize, start: u64, len: u16, segment: u16) {
    s[off..off + 8].copy_from_slice(&start.to_le_bytes());
    s[off + 8..off + 10].copy_from_slice(&len.to_le_bytes());
    s[off + 10..off + 12].copy_from_slice(&segment.to_le_bytes());
}

/// diskboot.img with the runs `(start LBA, sectors)` as grub-bios-setup writes them: code
/// (non-zero filler) up to 0x148 as in GRUB 2.06's build, the table from 0x1F4 down with
/// GRUB's segment chain (0x820, then 0x20 per sector), the zeros below it ending the table.
fn diskboot(runs: &[(u64, u16)]) -> Vec<u8> {
    let mut s = vec![0u8; 512];
    for (i, b) in s[..0x148].iter_mut().enumerate() {
        *b = (i as u8) | 1;
    }
    let mut segment = 0x820u16;
    for (k, &(start, len)) in runs.iter().enumerate() {
        put_entry(&mut s, 0x1F4 - 12 * k, start, len, segment);
        segment = segment.wrapping_add(len.wrapping_mul(0x20));
    }
    s
}

fn u64_at(s: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(s[off..off + 8].try_into().unwrap())
}

/// The byte offsets where `a` and `b` differ.
fn diff(a: &[u8], b: &[u8]) -> Vec<usize> {
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

#[test]
fn grub_boot_img_points_at_core() {
    assert_eq!(classify(&boot_img(2048)), BootCode::Grub { core_lba: 2048 });
    assert_eq!(core_lba(&boot_img(2048)), Some(2048));
    // the MBR gap of an MBR disk, and a 64-bit LBA
    assert_eq!(core_lba(&boot_img(1)), Some(1));
    assert_eq!(core_lba(&boot_img(1 << 40)), Some(1 << 40));
    // sector 0 read with a 4096-byte logical sector: only its first 512 bytes count
    let mut big = boot_img(2048);
    big.resize(4096, 0xAB);
    assert_eq!(core_lba(&big), Some(2048));
    // the drive check left as a jump (--allow-floppy), a FAT BPB copied in, another boot drive
    let mut s = boot_img(34);
    s[0x66..0x68].copy_from_slice(&[0xEB, 0x05]);
    s[3..0x5A].fill(0x42);
    s[0x64] = 0x80;
    assert_eq!(core_lba(&s), Some(34));
}

#[test]
fn other_boot_code_is_not_grub() {
    let mut zeros = vec![0u8; 512];
    zeros[510..].copy_from_slice(&[0x55, 0xAA]);
    // Windows 7's MBR starts xor ax,ax; mov ss,ax; mov sp,0x7c00 and carries its messages
    let mut windows = zeros.clone();
    windows[..7].copy_from_slice(&[0x33, 0xC0, 0x8E, 0xD0, 0xBC, 0x00, 0x7C]);
    let msg =
        b"Invalid partition table\0Error loading operating system\0Missing operating system\0";
    windows[0x163..0x163 + msg.len()].copy_from_slice(msg);
    // syslinux's gptmbr.bin: cli; xor ax,ax; ... and its one message
    let mut syslinux = zeros.clone();
    syslinux[..5].copy_from_slice(&[0x33, 0xC0, 0xFA, 0x8E, 0xD8]);
    let msg = b"Missing OS\r\n\0Boot error\r\n\0";
    syslinux[0x190..0x190 + msg.len()].copy_from_slice(msg);
    // the code area cut off before the message
    let short = boot_img(2048)[..0x100].to_vec();
    let cases: [(&str, &[u8]); 6] = [
        ("empty", &[]),
        ("short", &short),
        ("zeros with a signature", &zeros),
        ("windows", &windows),
        ("syslinux", &syslinux),
        ("random", &Rng(3).bytes(512)),
    ];
    for (name, mbr) in cases {
        assert_eq!(classify(mbr), BootCode::Other, "{name}");
        assert_eq!(core_lba(mbr), None, "{name}");
    }
}

#[test]
fn grub_lookalikes_are_unknown_grub() {
    // GRUB Legacy's stage1: jumps to 0x4A and keeps stage2's sector at 0x44
    let mut legacy = vec![0u8; 512];
    legacy[..3].copy_from_slice(&[0xEB, 0x48, 0x90]);
    legacy[0x44..0x48].copy_from_slice(&1u32.to_le_bytes());
    let msg = b"GRUB \0Geom\0Hard Disk\0Read\0 Error\0";
    legacy[0x17D..0x17D + msg.len()].copy_from_slice(msg);
    legacy[510..].copy_from_slice(&[0x55, 0xAA]);
    // grub-mkrescue's boot_hybrid.img: nops over the BPB, no kernel sector at 0x5C, the
    // load instruction reading 0x7DB0
    let mut hybrid = boot_img(0);
    hybrid[3..0x1A].fill(0x90);
    hybrid[0xBB..0xC0].copy_from_slice(&[0x66, 0x8B, 0x1E, 0xB0, 0x7D]);
    hybrid[0x1B0..0x1B8].copy_from_slice(&64u64.to_le_bytes());
    let mut hybrid_lba = hybrid.clone();
    hybrid_lba[0x5C] = 1;
    let mut no_load = boot_img(2048);
    no_load[0xBB..0xC0].fill(0x90);
    let mut other_address = boot_img(2048);
    other_address[0x5A..0x5C].copy_from_slice(&[0x00, 0x70]);
    let cases = [
        ("legacy stage1", legacy),
        ("hybrid", hybrid),
        ("hybrid with a value at 0x5c", hybrid_lba),
        ("kernel sector unset", boot_img(0)),
        ("no load of 0x7c5c", no_load),
        ("other kernel_address", other_address),
    ];
    for (name, mbr) in cases {
        assert_eq!(classify(&mbr), BootCode::UnknownGrub, "{name}");
        assert_eq!(core_lba(&mbr), None, "{name}");
    }
}

#[test]
fn a_bios_boot_partition_moved_left_is_re_pointed() {
    // as tests/helpers/boot-fixtures.sh installs it: core.img (128 sectors) at the start of
    // the BIOS-boot partition, its other sectors in one run right after the first
    let (mut mbr, mut db) = (boot_img(4096), diskboot(&[(4097, 127)]));
    let (mbr0, db0) = (mbr.clone(), db.clone());
    relocate(&mut mbr, &mut db, 4096, 2048, 2048).unwrap();
    assert_eq!(core_lba(&mbr), Some(2048));
    assert_eq!(u64_at(&db, 0x1F4), 2049);
    // only the two pointers changed: partition table, signature, code and segments are kept
    assert!(diff(&mbr0, &mbr).iter().all(|i| (0x5C..0x64).contains(i)));
    assert!(diff(&db0, &db).iter().all(|i| (0x1F4..0x1FC).contains(i)));
}

#[test]
fn every_run_inside_the_range_shifts() {
    // a blocklist install: core.img a file inside the moved partition, in four runs, the
    // last one ending on the range's last sector
    let runs = [(123_457, 3), (200_000, 10), (250_000, 1), (599_999, 1)];
    let (mut mbr, mut db) = (boot_img(123_456), diskboot(&runs));
    let db0 = db.clone();
    relocate(&mut mbr, &mut db, 100_000, 40_000, 500_000).unwrap();
    assert_eq!(core_lba(&mbr), Some(63_456));
    for (k, &(start, _)) in runs.iter().enumerate() {
        let off = 0x1F4 - 12 * k;
        assert_eq!(u64_at(&db, off), start - 60_000, "run {k}");
        assert_eq!(db[off + 8..off + 12], db0[off + 8..off + 12], "run {k}");
    }
    assert_eq!(db[..0x1F4 - 12 * 4 + 12], db0[..0x1F4 - 12 * 4 + 12]);
}

#[test]
fn moves_right_and_in_place_work_too() {
    let (mut mbr, mut db) = (boot_img(2048), diskboot(&[(2049, 63)]));
    relocate(&mut mbr, &mut db, 2048, 1 << 33, 2048).unwrap();
    assert_eq!(core_lba(&mbr), Some(1 << 33));
    assert_eq!(u64_at(&db, 0x1F4), (1 << 33) + 1);
    let (mbr0, db0) = (mbr.clone(), db.clone());
    relocate(&mut mbr, &mut db, 1 << 33, 1 << 33, 2048).unwrap();
    assert_eq!((mbr, db), (mbr0, db0));
}

/// A refused move: its name, sector 0, core.img's first sector, from, to, sectors, the error.
type Refusal = (&'static str, Vec<u8>, Vec<u8>, u64, u64, u64, GrubError);

#[test]
fn refusals_name_the_problem_and_leave_both_buffers_untouched() {
    let grub = boot_img(2048);
    let one_run = diskboot(&[(2049, 63)]);
    let mut hybrid = boot_img(2048);
    hybrid[0xBB..0xC0].copy_from_slice(&[0x66, 0x8B, 0x1E, 0xB0, 0x7D]);
    let mut first_segment = one_run.clone();
    first_segment[0x1FE..0x200].copy_from_slice(&0x7C0u16.to_le_bytes());
    let mut second_segment = diskboot(&[(2049, 10), (2100, 5)]);
    second_segment[0x1E8 + 10..0x1E8 + 12].copy_from_slice(&0x820u16.to_le_bytes());
    // every slot down to byte 8 holds a run: GRUB's loader would read on into its own code
    let mut endless = vec![0u8; 512];
    let mut segment = 0x820u16;
    for k in 0..=41 {
        put_entry(&mut endless, 0x1F4 - 12 * k, 2049 + k as u64, 1, segment);
        segment += 0x20;
    }
    let outside = |start, len| GrubError::EntryOutside {
        offset: 0x1F4,
        start,
        len,
        from: 2048,
        end: 4096,
    };
    #[rustfmt::skip]
    let cases: Vec<Refusal> = vec![
        ("zeros", vec![0; 512], one_run.clone(), 2048, 34, 2048, GrubError::NotGrub),
        ("short mbr", grub[..100].to_vec(), one_run.clone(), 2048, 34, 2048, GrubError::NotGrub),
        ("hybrid", hybrid, one_run.clone(), 2048, 34, 2048, GrubError::NotGrub),
        ("core before the range", grub.clone(), one_run.clone(), 2049, 34, 2048,
            GrubError::CoreOutside { core_lba: 2048, from: 2049, end: 4097 }),
        ("core at the range's end", grub.clone(), one_run.clone(), 1024, 34, 1024,
            GrubError::CoreOutside { core_lba: 2048, from: 1024, end: 2048 }),
        ("short diskboot", grub.clone(), one_run[..511].to_vec(), 2048, 34, 2048,
            GrubError::ShortDiskboot(511)),
        ("empty blocklist", grub.clone(), diskboot(&[]), 2048, 34, 2048,
            GrubError::EmptyBlocklist),
        ("no terminator", grub.clone(), endless, 2048, 34, 2048, GrubError::NoTerminator),
        ("run before the range", grub.clone(), diskboot(&[(2047, 5)]), 2048, 34, 2048,
            outside(2047, 5)),
        ("run past the range", grub.clone(), diskboot(&[(2049, 2048)]), 2048, 34, 2048,
            outside(2049, 2048)),
        ("run on another disk area", grub.clone(), diskboot(&[(1 << 20, 1)]), 2048, 34, 2048,
            outside(1 << 20, 1)),
        ("run ending past u64", grub.clone(), diskboot(&[(u64::MAX - 1, 5)]), 2048, 1,
            u64::MAX - 2048,
            GrubError::EntryOutside { offset: 0x1F4, start: u64::MAX - 1, len: 5, from: 2048,
                end: u64::MAX }),
        ("first segment", grub.clone(), first_segment, 2048, 34, 2048,
            GrubError::BadSegment { offset: 0x1F4, found: 0x7C0, expected: 0x820 }),
        ("second segment", grub.clone(), second_segment, 2048, 34, 2048,
            GrubError::BadSegment { offset: 0x1E8, found: 0x820, expected: 0x820 + 10 * 0x20 }),
        ("onto sector 0", grub.clone(), one_run.clone(), 2048, 0, 2048,
            GrubError::OntoSectorZero),
        ("range end overflows", grub.clone(), one_run.clone(), u64::MAX - 10, 34, 20,
            GrubError::Overflow { from: u64::MAX - 10, to: 34, sectors: 20 }),
        ("new end overflows", grub.clone(), one_run.clone(), 2048, u64::MAX - 5, 2048,
            GrubError::Overflow { from: 2048, to: u64::MAX - 5, sectors: 2048 }),
    ];
    for (name, mbr0, db0, from, to, sectors, want) in cases {
        let (mut mbr, mut db) = (mbr0.clone(), db0.clone());
        assert_eq!(
            relocate(&mut mbr, &mut db, from, to, sectors),
            Err(want),
            "{name}"
        );
        assert_eq!(mbr, mbr0, "{name}: sector 0 changed");
        assert_eq!(db, db0, "{name}: diskboot changed");
    }
}

#[test]
fn messages_are_lowercase_and_name_the_numbers() {
    let e = GrubError::EntryOutside {
        offset: 0x1E8,
        start: 9000,
        len: 4,
        from: 2048,
        end: 4096,
    };
    assert_eq!(
        e.to_string(),
        "blocklist entry at byte 0x1e8 (LBA 9000, 4 sectors) lies outside the moved LBAs 2048..4096"
    );
    assert_eq!(
        GrubError::NotGrub.to_string(),
        "sector 0 does not hold GRUB's boot.img"
    );
}

#[test]
fn damaged_sectors_never_panic_and_refusals_change_nothing() {
    let mut rng = Rng(0x6752_5542_2000_0001);
    let mut moved = 0;
    for round in 0..5000 {
        let core = 1 + rng.below(1 << 20);
        let mut mbr = if rng.below(4) == 0 {
            let len = rng.below(600) as usize;
            rng.bytes(len)
        } else {
            boot_img(core)
        };
        let runs: Vec<(u64, u16)> = (0..rng.below(5))
            .map(|k| (core + 1 + 100 * k, 1 + rng.below(90) as u16))
            .collect();
        let mut db = if rng.below(4) == 0 {
            let len = rng.below(600) as usize;
            rng.bytes(len)
        } else {
            diskboot(&runs)
        };
        for _ in 0..rng.below(3) {
            if !db.is_empty() {
                let at = rng.below(db.len() as u64) as usize;
                db[at] = rng.next() as u8;
            }
            if !mbr.is_empty() {
                let at = rng.below(mbr.len() as u64) as usize;
                mbr[at] = rng.next() as u8;
            }
        }
        let from = match rng.below(4) {
            0 => rng.next(),
            1 => u64::MAX - rng.below(1000),
            _ => core.saturating_sub(rng.below(10)),
        };
        let to = if rng.below(5) == 0 {
            rng.next()
        } else {
            rng.below(1 << 21)
        };
        let sectors = match rng.below(4) {
            0 => rng.next(),
            _ => rng.below(1000),
        };
        let (mbr0, db0) = (mbr.clone(), db.clone());
        match relocate(&mut mbr, &mut db, from, to, sectors) {
            Ok(()) => {
                moved += 1;
                let old = core_lba(&mbr0).unwrap();
                assert_eq!(core_lba(&mbr), Some(old - from + to), "round {round}");
            }
            Err(_) => {
                assert_eq!(mbr, mbr0, "round {round}");
                assert_eq!(db, db0, "round {round}");
            }
        }
    }
    assert!(moved > 100, "only {moved} rounds moved anything");
}
