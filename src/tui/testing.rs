//! Fixtures for the TUI's tests: a few disks as the scan reports them, and a model with an
//! image storage holding two chains.

use crate::discovery::Transport;
use crate::inspect::{DiskReport, PartReport, Source};
use crate::partition::TableKind;
use std::path::PathBuf;

fn part(n: u32, size: u64, fs: &'static str, label: &str, mount: Option<&str>) -> PartReport {
    PartReport {
        number: n,
        path: Some(PathBuf::from(format!("/dev/sda{n}"))),
        start_bytes: u64::from(n) << 30,
        size_bytes: size,
        part_type: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
        type_name: Some("Linux filesystem"),
        name: None,
        partuuid: None,
        fs: Some(fs),
        fs_version: None,
        label: Some(label.into()),
        uuid: None,
        mountpoint: mount.map(PathBuf::from),
        mountpoints: mount.map(PathBuf::from).into_iter().collect(),
        swap: false,
        holders: vec![],
        used_bytes: Some(size / 3),
        logical: false,
        extended: false,
    }
}

fn disk(path: &str, size: u64, t: Transport, model: &str, boot: bool) -> DiskReport {
    DiskReport {
        path: PathBuf::from(path),
        source: Source::Disk,
        size_bytes: size,
        logical_sector_size: 512,
        physical_sector_size: 4096,
        model: Some(model.into()),
        serial: Some("S3Z9NB0K123456".into()),
        vendor: None,
        transport: Some(t),
        removable: Some(false),
        rotational: Some(false),
        read_only: Some(false),
        is_boot: boot,
        busy: None,
        backing_file: None,
        table: Some(TableKind::Gpt),
        disk_id: None,
        partitions: vec![],
        fs: None,
        diagnostics: vec![],
        error: None,
    }
}

/// Three disks: a system SSD, a USB stick that is the boot medium, an empty NVMe disk.
pub(crate) fn disks() -> Vec<DiskReport> {
    let mut sda = disk(
        "/dev/sda",
        500_107_862_016,
        Transport::Sata,
        "Samsung SSD 860 EVO 500GB",
        false,
    );
    sda.partitions = vec![
        part(1, 536_870_912, "vfat", "ESP", None),
        part(2, 400_000_000_000, "ext4", "root", None),
        part(3, 99_000_000_000, "ntfs", "Data", None),
    ];
    let mut sdb = disk(
        "/dev/sdb",
        15_518_924_800,
        Transport::Usb,
        "SanDisk Cruzer",
        true,
    );
    sdb.partitions = vec![part(
        1,
        30_000_000,
        "iso9660",
        "LIFEBOAT",
        Some("/run/boot"),
    )];
    sdb.removable = Some(true);
    let mut nvme = disk(
        "/dev/nvme0n1",
        1_000_204_886_016,
        Transport::Nvme,
        "WD Blue SN570 1TB",
        false,
    );
    nvme.table = None;
    vec![sda, sdb, nvme]
}

/// [`disks`] plus a USB drive holding the image storage (exFAT at /store) with three
/// images: a chain of the SSD (full and incremental) and an older full image of another
/// disk; the clock fixed at 2026-11-22 09:30 UTC.
pub(crate) fn storage_model() -> super::app::Model {
    use super::app::{ImageEntry, Model, Storage};
    use crate::jobs::chain::{DiskIdentity, Found};
    let mut all = disks();
    let mut sdc = disk(
        "/dev/sdc",
        2_000_398_934_016,
        Transport::Usb,
        "WD Elements 25A2",
        false,
    );
    sdc.removable = Some(true);
    sdc.partitions = vec![part(
        1,
        2_000_397_885_440,
        "exfat",
        "BACKUP",
        Some("/store"),
    )];
    sdc.partitions[0].path = Some(PathBuf::from("/dev/sdc1"));
    all.push(sdc);
    let ssd = DiskIdentity::of_report(&all[0]);
    let other = DiskIdentity {
        path: Some("/dev/sda".into()),
        model: Some("ST1000DM003".into()),
        serial: Some("Z1D5K8XQ".into()),
        disk_id: None,
        size_bytes: 1_000_204_886_016,
        backing_file: None,
    };
    let found = |name: &str, kind: &str, unix: u64, disk: &DiskIdentity, chain: &str| Found {
        path: PathBuf::from(format!("/store/{name}")),
        image_id: "00".into(),
        kind: match kind {
            "full" => crate::image::ImageKind::Full,
            "differential" => crate::image::ImageKind::Differential,
            _ => crate::image::ImageKind::Incremental,
        },
        created_unix: unix,
        full: kind == "full",
        parent_id: (kind != "full").then(|| "00".into()),
        disk: disk.clone(),
        chain_name: chain.into(),
        packed: false,
    };
    let chain = "sda-Samsung-SSD-860-20261115";
    let images = vec![
        ImageEntry {
            found: found(&format!("{chain}.lbi"), "full", 1_794_736_800, &ssd, chain),
            file_bytes: 31_457_280_000,
        },
        ImageEntry {
            found: found(
                &format!("{chain}-20261121-181500-incr.lbi"),
                "incremental",
                1_795_284_900,
                &ssd,
                chain,
            ),
            file_bytes: 1_288_490_188,
        },
        ImageEntry {
            found: found("old-hdd.lbi", "full", 1_761_535_980, &other, "old-hdd"),
            file_bytes: 120_259_084_288,
        },
    ];
    let now = std::time::Instant::now();
    Model {
        disks: all,
        storage: Some(Storage {
            dir: PathBuf::from("/store"),
            device: Some(PathBuf::from("/dev/sdc1")),
            disk: Some(PathBuf::from("/dev/sdc")),
            fs: Some("exfat".into()),
            label: Some("BACKUP".into()),
        }),
        images,
        now: Some(now),
        now_unix: 1_795_339_800,
        ..Model::default()
    }
}
