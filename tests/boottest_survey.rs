//! Tier 1: what boot-test's survey finds on the fixture disks (tests/helpers/boot-fixtures.sh,
//! built here with a stand-in kernel file: nothing boots, only the layout matters): the boot
//! code a BIOS runs, the ESP's loader, the kernel and init on ext4, the filesystems, and the
//! firmware `--firmware auto` picks.
#![allow(clippy::unwrap_used)]

mod common;

use lifeboat::blockdev::{FileDev, OpenMode};
use lifeboat::boottest::disk::{survey, Firmware, Survey};
use lifeboat::boottest::judge::RegionKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        // a stand-in kernel: 3 MiB of noise, so that its ranges are easy to check
        let kernel = dir.join("kernel");
        let noise: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&kernel, &noise).unwrap();
        common::boot_fixtures(&kernel, &dir.join("out"));
        dir.join("out")
    })
}

fn survey_of(name: &str) -> Survey {
    let dev = FileDev::open(&fixtures().join(format!("{name}.img")), OpenMode::Read).unwrap();
    survey(&dev).unwrap()
}

fn named(s: &Survey, kind: RegionKind) -> Vec<String> {
    let mut v: Vec<String> = s
        .common
        .iter()
        .chain(&s.bios)
        .chain(&s.uefi)
        .filter(|r| r.kind == kind)
        .map(|r| r.what.clone())
        .collect();
    v.dedup();
    v
}

#[test]
fn the_gpt_disk_has_bios_and_uefi_boot_code_a_kernel_and_init() {
    let s = survey_of("good-gpt");
    assert!(s.mbr_code && s.fallback_loader);
    assert_eq!(s.auto_firmware(), [Firmware::Bios, Firmware::Uefi]);
    assert!(named(&s, RegionKind::BootCode).contains(&"BIOS-boot partition (p1)".to_string()));
    assert_eq!(
        named(&s, RegionKind::Loader),
        ["/EFI/BOOT/BOOTX64.EFI (p2)"]
    );
    assert_eq!(named(&s, RegionKind::Kernel), ["/boot/vmlinuz (p3)"]);
    assert_eq!(named(&s, RegionKind::Init), ["/sbin/init (p3)"]);
    assert_eq!(named(&s, RegionKind::Filesystem), ["ext4 (p3)"]);
    // the kernel's ranges hold the kernel's bytes
    let kernel: u64 = s
        .common
        .iter()
        .filter(|r| r.kind == RegionKind::Kernel)
        .map(|r| r.len)
        .sum();
    assert_eq!(kernel, 3 << 20);
    let img = std::fs::read(fixtures().join("good-gpt.img")).unwrap();
    let want = std::fs::read(fixtures().join("../kernel")).unwrap();
    let mut got = Vec::new();
    for r in s.common.iter().filter(|r| r.kind == RegionKind::Kernel) {
        got.extend_from_slice(&img[r.start as usize..(r.start + r.len) as usize]);
    }
    assert!(got == want);
    assert!(s.notes.is_empty(), "{:?}", s.notes);
}

#[test]
fn the_mbr_disk_boots_from_the_gap_after_the_mbr() {
    let s = survey_of("good-mbr");
    assert_eq!(s.auto_firmware(), [Firmware::Bios]);
    assert!(!s.fallback_loader && s.uefi.is_empty());
    let boot = named(&s, RegionKind::BootCode);
    assert!(
        boot.contains(&"the gap after the MBR".to_string()),
        "{boot:?}"
    );
    assert_eq!(named(&s, RegionKind::Kernel), ["/boot/vmlinuz (p1)"]);
}

#[test]
fn broken_disks_show_what_is_missing() {
    let s = survey_of("wiped");
    assert!(!s.mbr_code && !s.fallback_loader && s.uefi.is_empty());
    // a BIOS-boot partition is still there (zeroed): BIOS is tried, and fails on its own
    assert_eq!(s.auto_firmware(), [Firmware::Bios]);
    let s = survey_of("no-kernel");
    assert!(named(&s, RegionKind::Kernel).is_empty());
    assert_eq!(named(&s, RegionKind::Init), ["/sbin/init (p3)"]);
}
