//! Tier 1: boot-test's stage logic fed with recorded I/O traces, console text and QEMU
//! events, including hostile ones (an empty trace, requests outside the disk, a reboot loop,
//! a prompt before the OS started from the disk).
#![allow(clippy::unwrap_used, clippy::panic)]

use lifeboat::boottest::judge::{
    Judge, Observation, Region, RegionKind, Rules, Sign, Stage, Verdict,
};
use lifeboat::boottest::trace_file;

const MIB: u64 = 1 << 20;
const DISK: u64 = 64 * MIB;

fn region(kind: RegionKind, start: u64, len: u64, what: &str) -> Region {
    Region {
        kind,
        start,
        len,
        what: what.into(),
    }
}

/// The good GPT fixture's layout: BIOS-boot p1, ESP p2 with a loader, ext4 p3 with a kernel
/// and init.
fn rules() -> Rules {
    Rules {
        regions: vec![
            region(RegionKind::BootCode, MIB, MIB, "BIOS-boot partition (p1)"),
            region(
                RegionKind::Loader,
                3 * MIB,
                512 * 1024,
                "/EFI/BOOT/BOOTX64.EFI (p2)",
            ),
            region(RegionKind::Filesystem, 18 * MIB, 46 * MIB, "ext4 (p3)"),
            region(RegionKind::Kernel, 20 * MIB, MIB, "/boot/vmlinuz (p3)"),
            region(RegionKind::Init, 30 * MIB, MIB, "/bin/busybox (p3)"),
        ],
        disk_bytes: DISK,
        expect: None,
        settle: 10.0,
        loop_resets: 3,
    }
}

fn io(t: f64, write: bool, offset: u64, len: u64) -> Observation {
    Observation::Io {
        t,
        write,
        offset,
        len,
    }
}

fn serial(t: f64, s: &str) -> Observation {
    Observation::Serial { t, text: s.into() }
}

fn judge(rules: Rules, obs: &[Observation]) -> Judge {
    let mut j = Judge::new(rules).unwrap();
    for o in obs {
        j.feed(o);
    }
    j
}

fn stages(j: &Judge) -> Vec<(u8, f64)> {
    j.reached()
        .iter()
        .map(|r| (r.stage.number(), r.t))
        .collect()
}

#[test]
fn a_good_boot_passes_the_four_stages_in_order_with_their_times() {
    let j = judge(
        rules(),
        &[
            io(0.1, false, 0, 512),
            io(0.5, false, MIB + 4096, 32 * 1024),
            io(2.0, false, 20 * MIB, MIB),
            io(5.0, false, 30 * MIB, 4096),
            io(5.5, true, 40 * MIB, 4096),
            serial(7.0, "Welcome\r\nfixture lo"),
            serial(7.2, "gin: "),
        ],
    );
    assert_eq!(stages(&j), [(1, 0.5), (2, 2.0), (3, 5.0), (4, 7.2)]);
    assert_eq!(j.verdict(), Verdict::Booted);
    assert!(j.done());
    assert_eq!(
        j.reached()[1].evidence,
        "read /boot/vmlinuz (p3) (100% of it so far)"
    );
}

#[test]
fn an_empty_trace_and_a_still_screen_is_no_boot_device() {
    let j = judge(
        rules(),
        &[Observation::ScreenStill {
            t: 30.0,
            still: 12.0,
        }],
    );
    match j.verdict() {
        Verdict::Failed {
            stage: 0,
            sign: Sign::NoBootDevice { .. },
        } => {}
        v => panic!("{v:?}"),
    }
    // and nothing at all is a timeout at stage 0
    let mut j = judge(rules(), &[]);
    assert!(!j.done());
    j.timeout(600.0);
    assert_eq!(
        j.verdict(),
        Verdict::Failed {
            stage: 0,
            sign: Sign::Timeout { seconds: 600.0 }
        }
    );
}

#[test]
fn requests_outside_the_disk_are_counted_and_never_matched() {
    let j = judge(
        rules(),
        &[
            io(0.1, false, DISK, 512),
            io(0.2, false, u64::MAX - 10, 4096),
            io(0.3, false, DISK - 512, 1024),
            io(0.4, false, MIB, 0),
        ],
    );
    assert_eq!(j.outside(), 4);
    assert!(j.reached().is_empty());
}

#[test]
fn the_firmware_saying_no_bootable_device_ends_the_run_at_stage_0() {
    let j = judge(
        rules(),
        &[
            io(0.1, false, 0, 512),
            Observation::Firmware {
                t: 1.0,
                text: "Booting from Hard Disk...\nBoot failed: not a bootable disk\n\nNo bootable device.  Retrying in 60 seconds.".into(),
            },
        ],
    );
    match j.verdict() {
        Verdict::Failed {
            stage: 0,
            sign: Sign::NoBootDevice { evidence },
        } => assert!(evidence.contains("not a bootable disk"), "{evidence}"),
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_reboot_loop_is_named_with_the_stage_it_reached() {
    let mut obs = Vec::new();
    for k in 0..3 {
        let t = 10.0 * f64::from(k);
        obs.push(io(t + 0.5, false, MIB, 4096));
        obs.push(io(t + 2.0, false, 20 * MIB, MIB));
        obs.push(io(t + 4.0, false, 30 * MIB, 4096));
        obs.push(Observation::Reset { t: t + 5.0 });
    }
    let j = judge(rules(), &obs);
    assert_eq!(
        j.verdict(),
        Verdict::Failed {
            stage: 3,
            sign: Sign::RebootLoop { resets: 3 }
        }
    );
}

#[test]
fn a_kernel_panic_on_the_serial_console_stops_at_stage_2() {
    let j = judge(
        rules(),
        &[
            io(0.5, false, MIB, 4096),
            io(2.0, false, 20 * MIB, MIB),
            serial(4.0, "[    1.2] VFS: Cannot open root device \"sda9\"\n[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"),
        ],
    );
    match j.verdict() {
        Verdict::Failed {
            stage: 2,
            sign: Sign::KernelPanic { evidence },
        } => assert!(evidence.contains("Unable to mount root fs"), "{evidence}"),
        v => panic!("{v:?}"),
    }
    // QEMU's own panic event counts the same
    let j = judge(
        rules(),
        &[io(0.5, false, MIB, 512), Observation::Panicked { t: 1.0 }],
    );
    assert!(matches!(
        j.verdict(),
        Verdict::Failed {
            stage: 1,
            sign: Sign::KernelPanic { .. }
        }
    ));
}

#[test]
fn a_prompt_or_settled_screen_before_the_os_started_from_the_disk_is_not_a_boot() {
    // an initramfs emergency shell: the kernel was read, the root never was; the shell
    // prints a prompt and the screen settles
    let j = judge(
        rules(),
        &[
            io(0.5, false, MIB, 4096),
            io(2.0, false, 20 * MIB, MIB),
            serial(
                6.0,
                "Gave up waiting for root file system device.\n(initramfs) login: ",
            ),
            Observation::ScreenStill {
                t: 30.0,
                still: 20.0,
            },
        ],
    );
    assert_eq!(
        j.verdict(),
        Verdict::Failed {
            stage: 2,
            sign: Sign::StillScreen { still: 20.0 }
        }
    );
}

#[test]
fn a_boot_loader_writing_before_any_kernel_is_not_the_userland() {
    // GRUB saving grubenv on the root filesystem, then stopping at its prompt
    let j = judge(
        rules(),
        &[
            io(0.5, false, MIB, 4096),
            io(1.0, true, 40 * MIB, 1024),
            Observation::ScreenStill {
                t: 20.0,
                still: 15.0,
            },
        ],
    );
    assert_eq!(stages(&j), [(1, 0.5)]);
    assert!(matches!(
        j.verdict(),
        Verdict::Failed {
            stage: 1,
            sign: Sign::StillScreen { .. }
        }
    ));
}

#[test]
fn writes_prove_the_userland_when_no_kernel_file_could_be_located() {
    // an NTFS system: no kernel or init regions, only the filesystem
    let mut r = rules();
    r.regions
        .retain(|x| !matches!(x.kind, RegionKind::Kernel | RegionKind::Init));
    let booting = [
        io(0.5, false, MIB, 4096),
        io(9.0, true, 40 * MIB, 4096),
        io(14.0, true, 41 * MIB, 4096),
        Observation::ScreenStill {
            t: 60.0,
            still: 20.0,
        },
    ];
    let j = judge(r.clone(), &booting);
    assert_eq!(stages(&j), [(1, 0.5), (3, 9.0), (4, 60.0)]);
    assert_eq!(j.verdict(), Verdict::Booted);
    // one burst of writes (a boot manager's status file), then an error screen: not up
    let mut burst = booting.to_vec();
    burst.remove(2);
    let j = judge(r, &burst);
    assert_eq!(stages(&j), [(1, 0.5), (3, 9.0)]);
    assert!(matches!(
        j.verdict(),
        Verdict::Failed {
            stage: 3,
            sign: Sign::StillScreen { .. }
        }
    ));
}

#[test]
fn a_settled_screen_after_init_without_any_write_is_not_up() {
    // init started and crashed: the panic is on the screen only (no serial console)
    let obs = [
        io(0.5, false, MIB, 4096),
        io(2.0, false, 20 * MIB, MIB),
        io(4.0, false, 30 * MIB, 4096),
        Observation::ScreenStill {
            t: 40.0,
            still: 30.0,
        },
    ];
    let j = judge(rules(), &obs);
    assert!(matches!(
        j.verdict(),
        Verdict::Failed {
            stage: 3,
            sign: Sign::StillScreen { .. }
        }
    ));
    // with a write after init, the same screen is an OS that is up
    let mut obs = obs.to_vec();
    obs.insert(3, io(6.0, true, 40 * MIB, 4096));
    let j = judge(rules(), &obs);
    assert_eq!(j.verdict(), Verdict::Booted);
}

#[test]
fn a_reboot_starts_a_new_boot_and_a_kernel_reread_counts_once() {
    // boot 1 reaches its userland, resets; boot 2 stops at the boot loader's screen
    let j = judge(
        rules(),
        &[
            io(0.5, false, MIB, 4096),
            io(2.0, false, 20 * MIB, MIB),
            io(4.0, false, 30 * MIB, 4096),
            io(5.0, true, 40 * MIB, 4096),
            Observation::Reset { t: 6.0 },
            io(6.5, false, MIB, 4096),
            Observation::ScreenStill {
                t: 40.0,
                still: 30.0,
            },
        ],
    );
    assert_eq!(
        j.verdict(),
        Verdict::Failed {
            stage: 3,
            sign: Sign::StillScreen { still: 30.0 }
        }
    );
    // the same 64 KiB of the kernel read twenty times is not the kernel loaded
    let mut obs = vec![io(0.5, false, MIB, 4096)];
    for k in 0..20 {
        obs.push(io(1.0 + f64::from(k), false, 20 * MIB, 65536));
    }
    let j = judge(rules(), &obs);
    assert_eq!(stages(&j), [(1, 0.5)]);
}

#[test]
fn expect_replaces_the_login_prompt_and_the_screen() {
    let mut r = rules();
    r.expect = Some(regex_lite::Regex::new("all services up").unwrap());
    let j = judge(
        r,
        &[
            io(0.5, false, MIB, 4096),
            io(2.0, false, 20 * MIB, MIB),
            io(4.0, false, 30 * MIB, 4096),
            serial(5.0, "host login: "),
            Observation::ScreenStill {
                t: 40.0,
                still: 30.0,
            },
        ],
    );
    assert_eq!(j.stage(), 3);
    assert!(!j.done());
    let mut j = j;
    j.feed(&serial(41.0, "...all services up\n"));
    assert_eq!(j.verdict(), Verdict::Booted);
}

#[test]
fn a_still_screen_while_the_disk_is_busy_is_not_settled() {
    let j = judge(
        rules(),
        &[
            io(0.5, false, MIB, 4096),
            io(2.0, false, 20 * MIB, MIB),
            io(4.0, false, 30 * MIB, 4096),
            io(29.0, false, 40 * MIB, 4096),
            Observation::ScreenStill {
                t: 30.0,
                still: 25.0,
            },
        ],
    );
    assert_eq!(j.stage(), 3);
    assert!(!j.done());
}

#[test]
fn a_recorded_io_log_replays_to_the_same_stages() {
    let log = "0.100 R 0 512\n0.500 R 1052672 32768\n2.000 R 20971520 1048576\n\
               garbage line\n5.000 R 31457280 4096\n5.500 W 41943040 4096\n9 X 1 1\n";
    let obs = trace_file::parse(log);
    assert_eq!(obs.len(), 5);
    let j = judge(rules(), &obs);
    assert_eq!(stages(&j), [(1, 0.5), (2, 2.0), (3, 5.0)]);
    assert_eq!(Stage::ALL.len(), 4);
}

#[test]
fn a_loader_chunk_touching_a_kernel_or_init_edge_proves_nothing() {
    let mut r = rules();
    // init's first block sits right after the kernel's last one, as mkfs lays them out
    r.regions
        .push(region(RegionKind::Init, 21 * MIB, 4096, "/sbin/init (p3)"));
    let j = judge(
        r,
        &[
            io(0.5, false, MIB, 4096),
            // a 32 KiB chunk over the kernel's end and init's start: neither loaded nor run
            io(1.0, false, 21 * MIB - 16384, 32768),
            io(1.1, false, 20 * MIB, 256 * 1024),
        ],
    );
    assert_eq!(stages(&j), [(1, 0.5)]);
    let mut j = j;
    // the rest of the kernel: now it is loaded; init read on its own is the userland
    j.feed(&io(2.0, false, 20 * MIB + 256 * 1024, 512 * 1024));
    j.feed(&io(3.0, false, 21 * MIB, 4096));
    assert_eq!(stages(&j), [(1, 0.5), (2, 2.0), (3, 3.0)]);
}

#[test]
fn init_blocks_read_while_no_kernel_was_loaded_are_the_boot_loader_searching() {
    // no-kernel: GRUB looks for /boot/vmlinuz, reading directory chunks that hold init's
    // blocks, then stops at its error
    let mut r = rules();
    r.regions.retain(|x| x.kind != RegionKind::Kernel);
    let j = judge(
        r,
        &[
            io(0.5, false, MIB, 4096),
            io(0.6, false, 30 * MIB, 4096),
            Observation::ScreenStill {
                t: 30.0,
                still: 25.0,
            },
        ],
    );
    assert_eq!(stages(&j), [(1, 0.5)]);
    assert!(matches!(
        j.verdict(),
        Verdict::Failed {
            stage: 1,
            sign: Sign::StillScreen { .. }
        }
    ));
}
