//! Whole-module tests on fake sysfs/dev/proc trees built in a temp dir. The trees mimic the
//! real layout: `sys/block/<name>` is a symlink into `sys/devices/…/block/<name>`, whose
//! `device` link points two levels up at the bus device.

use super::*;
use std::os::unix::fs::symlink;
use tempfile::TempDir;

/// A fake system root: `sys/`, `dev/`, `mountinfo`, `swaps`.
struct Fake {
    dir: TempDir,
    paths: SystemPaths,
}

const SWAPS_HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let paths = SystemPaths {
            sys: root.join("sys"),
            dev: root.join("dev"),
            mountinfo: root.join("mountinfo"),
            swaps: root.join("swaps"),
        };
        fs::create_dir_all(paths.sys.join("block")).expect("mkdir");
        fs::create_dir_all(&paths.dev).expect("mkdir");
        fs::write(&paths.mountinfo, "").expect("write");
        fs::write(&paths.swaps, SWAPS_HEADER).expect("write");
        Fake { dir, paths }
    }

    /// Writes `content` at `rel` under the root, creating parents.
    fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }

    /// Makes a symlink at `rel` (under the root) pointing at `target` (verbatim).
    fn link(&self, rel: impl AsRef<Path>, target: &str) {
        let path = self.dir.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        symlink(target, path).expect("symlink");
    }

    /// Adds disk `name` under `sys/devices/<devpath>/block/<name>` (devpath `None` means
    /// `virtual` with no `device` link), size in 512-byte sectors. Returns the block dir
    /// relative to the root.
    fn disk(&self, devpath: Option<&str>, name: &str, sectors: u64, dev: &str) -> PathBuf {
        let parent = devpath.unwrap_or("virtual");
        let block = PathBuf::from(format!("sys/devices/{parent}/block/{name}"));
        self.write(block.join("size"), format!("{sectors}\n"));
        self.write(block.join("dev"), format!("{dev}\n"));
        fs::create_dir_all(self.dir.path().join(block.join("holders"))).expect("mkdir");
        if devpath.is_some() {
            self.link(block.join("device"), "../..");
        }
        self.link(
            format!("sys/block/{name}"),
            &format!("../devices/{parent}/block/{name}"),
        );
        self.write(format!("dev/{name}"), "");
        block
    }

    /// Adds partition `name` number `number` to the disk at `block`; start and size in sectors.
    fn part(&self, block: &Path, name: &str, number: u32, start: u64, sectors: u64, dev: &str) {
        let dir = block.join(name);
        self.write(dir.join("partition"), format!("{number}\n"));
        self.write(dir.join("start"), format!("{start}\n"));
        self.write(dir.join("size"), format!("{sectors}\n"));
        self.write(dir.join("dev"), format!("{dev}\n"));
        fs::create_dir_all(self.dir.path().join(dir.join("holders"))).expect("mkdir");
        self.write(format!("dev/{name}"), "");
    }

    /// Records that `holder` holds the block device at `dir` (a disk or partition dir).
    fn hold(&self, dir: &Path, holder: &str) {
        self.link(
            dir.join("holders").join(holder),
            &format!("../../../../virtual/block/{holder}"),
        );
    }

    fn mountinfo(&self, text: &str) {
        fs::write(&self.paths.mountinfo, text).expect("write");
    }

    fn swaps(&self, lines: &str) {
        fs::write(&self.paths.swaps, format!("{SWAPS_HEADER}{lines}")).expect("write");
    }

    fn scan(&self) -> Vec<DiskInfo> {
        scan(&self.paths).expect("scan")
    }
}

fn get<'a>(disks: &'a [DiskInfo], name: &str) -> &'a DiskInfo {
    disks
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("no disk {name} in {:?}", names(disks)))
}

fn names(disks: &[DiskInfo]) -> Vec<&str> {
    disks.iter().map(|d| d.name.as_str()).collect()
}

const SATA: &str = "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0";
const NVME: &str = "pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0";
const VIRTIO: &str = "pci0000:00/0000:00:02.0/virtio1";
const VIRTIO2: &str = "pci0000:00/0000:00:03.0/virtio2";
const USB_DEV: &str = "pci0000:00/0000:00:14.0/usb2/2-1";
const USB: &str = "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0";

#[test]
fn sata_disk_serial_from_vpd_pg80() {
    let f = Fake::new();
    let b = f.disk(Some(SATA), "sda", 2_000_000, "8:0");
    let dev = format!("sys/devices/{SATA}");
    f.write(format!("{dev}/model"), "QEMU HARDDISK   \n");
    f.write(format!("{dev}/vendor"), "ATA     \n");
    let mut page = vec![0x00, 0x80, 0x00, 0x14];
    page.extend_from_slice(b"     WD-WCC4N1234567");
    f.write(format!("{dev}/vpd_pg80"), page);
    f.write(
        format!("{dev}/wwid"),
        "t10.ATA     QEMU HARDDISK  QM00001\n",
    );
    fs::create_dir_all(f.dir.path().join(format!("{dev}/scsi_disk/0:0:0:0"))).expect("mkdir");
    f.write(b.join("queue/rotational"), "1\n");
    f.write(b.join("queue/logical_block_size"), "512\n");
    f.write(b.join("queue/physical_block_size"), "4096\n");
    f.write(b.join("removable"), "0\n");
    f.write(b.join("ro"), "0\n");

    let disks = f.scan();
    let d = get(&disks, "sda");
    assert_eq!(d.transport, Transport::Sata);
    assert_eq!(d.model.as_deref(), Some("QEMU HARDDISK"));
    assert_eq!(d.vendor.as_deref(), Some("ATA"));
    assert_eq!(d.serial.as_deref(), Some("WD-WCC4N1234567"));
    assert_eq!((d.major, d.minor), (8, 0));
    assert_eq!(d.size_bytes, 2_000_000 * 512);
    assert_eq!((d.logical_sector_size, d.physical_sector_size), (512, 4096));
    assert!(d.rotational && !d.removable && !d.read_only);
    assert_eq!(d.dev_path, f.paths.dev.join("sda"));
    assert!(d.is_busy().is_none());
}

#[test]
fn sata_disk_falls_back_to_wwid_and_defaults() {
    let f = Fake::new();
    f.disk(Some(SATA), "sda", 100, "8:0");
    f.write(
        format!("sys/devices/{SATA}/wwid"),
        "t10.ATA     QEMU HARDDISK                           QM00001   \n",
    );
    let disks = f.scan();
    let d = get(&disks, "sda");
    assert_eq!(
        d.serial.as_deref(),
        Some("t10.ATA     QEMU HARDDISK                           QM00001")
    );
    assert_eq!(d.model, None);
    // no queue/ or flags at all: defaults
    assert_eq!((d.logical_sector_size, d.physical_sector_size), (512, 512));
    assert!(!d.rotational && !d.removable && !d.read_only);
}

#[test]
fn nvme_disk_trims_padding() {
    let f = Fake::new();
    let b = f.disk(Some(NVME), "nvme0n1", 1_953_525_168, "259:0");
    let dev = format!("sys/devices/{NVME}");
    f.write(
        format!("{dev}/model"),
        "Samsung SSD 970 EVO Plus 1TB            \n",
    );
    f.write(format!("{dev}/serial"), "  S4EWNX0N123456     \n");
    f.part(&b, "nvme0n1p1", 1, 2048, 1_048_576, "259:1");
    f.part(&b, "nvme0n1p2", 2, 1_050_624, 1_952_474_511, "259:2");
    let disks = f.scan();
    let d = get(&disks, "nvme0n1");
    assert_eq!(d.transport, Transport::Nvme);
    assert_eq!(d.model.as_deref(), Some("Samsung SSD 970 EVO Plus 1TB"));
    assert_eq!(d.serial.as_deref(), Some("S4EWNX0N123456"));
    assert_eq!(d.vendor, None);
    let p: Vec<(&str, u32, u64, u64)> = d
        .partitions
        .iter()
        .map(|p| (p.name.as_str(), p.number, p.start_bytes, p.size_bytes))
        .collect();
    assert_eq!(
        p,
        vec![
            ("nvme0n1p1", 1, 2048 * 512, 1_048_576 * 512),
            ("nvme0n1p2", 2, 1_050_624 * 512, 1_952_474_511 * 512),
        ]
    );
    assert_eq!((d.partitions[1].major, d.partitions[1].minor), (259, 2));
}

#[test]
fn virtio_serial_file() {
    let f = Fake::new();
    let a = f.disk(Some(VIRTIO), "vda", 20_971_520, "254:0");
    f.write(a.join("serial"), "QM-SERIAL-7\n");
    f.write(format!("sys/devices/{VIRTIO}/vendor"), "0x1af4\n");
    let b = f.disk(Some(VIRTIO2), "vdb", 2048, "254:16");
    f.write(b.join("serial"), "\n");
    let disks = f.scan();
    assert_eq!(names(&disks), vec!["vda", "vdb"]);
    assert_eq!(disks[0].transport, Transport::Virtio);
    assert_eq!(disks[0].serial.as_deref(), Some("QM-SERIAL-7"));
    assert_eq!((&disks[0].model, &disks[0].vendor), (&None, &None));
    assert_eq!(disks[1].transport, Transport::Virtio);
    assert_eq!(disks[1].serial, None);
}

#[test]
fn virtio_scsi_disk_reads_scsi_attributes() {
    let f = Fake::new();
    let path = "pci0000:00/0000:00:04.0/virtio3/host0/target0:0:0/0:0:0:0";
    f.disk(Some(path), "sda", 2048, "8:0");
    f.write(format!("sys/devices/{path}/model"), "QEMU HARDDISK   \n");
    f.write(format!("sys/devices/{path}/vendor"), "QEMU    \n");
    f.write(
        format!("sys/devices/{path}/vpd_pg80"),
        b"\x00\x80\x00\x04scsi",
    );
    let disks = f.scan();
    let d = get(&disks, "sda");
    assert_eq!(d.transport, Transport::Virtio);
    assert_eq!(d.model.as_deref(), Some("QEMU HARDDISK"));
    assert_eq!(d.vendor.as_deref(), Some("QEMU"));
    assert_eq!(d.serial.as_deref(), Some("scsi"));
}

#[test]
fn usb_identity_from_nearest_usb_ancestor() {
    let f = Fake::new();
    let b = f.disk(Some(USB), "sdb", 30_000_000, "8:16");
    f.write(b.join("removable"), "1\n");
    // root hub also has idVendor: the nearest ancestor must win
    f.write(
        "sys/devices/pci0000:00/0000:00:14.0/usb2/idVendor",
        "1d6b\n",
    );
    f.write(
        "sys/devices/pci0000:00/0000:00:14.0/usb2/serial",
        "0000:00:14.0\n",
    );
    let usb = format!("sys/devices/{USB_DEV}");
    f.write(format!("{usb}/idVendor"), "0781\n");
    f.write(format!("{usb}/serial"), "4C530001234567891234\n");
    f.write(format!("{usb}/product"), "Cruzer Blade\n");
    f.write(format!("{usb}/manufacturer"), "SanDisk\n");
    fs::create_dir_all(
        f.dir
            .path()
            .join(format!("sys/devices/{USB}/scsi_disk/6:0:0:0")),
    )
    .expect("mkdir");

    let disks = f.scan();
    let d = get(&disks, "sdb");
    assert_eq!(d.transport, Transport::Usb);
    assert_eq!(d.serial.as_deref(), Some("4C530001234567891234"));
    assert_eq!(d.model.as_deref(), Some("Cruzer Blade"));
    assert_eq!(d.vendor.as_deref(), Some("SanDisk"));
    assert!(d.removable);

    // device/model (SCSI INQUIRY) is preferred over the USB product string
    f.write(format!("sys/devices/{USB}/model"), "Cruzer Blade INQ\n");
    let disks = f.scan();
    assert_eq!(
        get(&disks, "sdb").model.as_deref(),
        Some("Cruzer Blade INQ")
    );
}

#[test]
fn loop_and_skipped_devices() {
    let f = Fake::new();
    let l0 = f.disk(None, "loop0", 8192, "7:0");
    f.write(l0.join("loop/backing_file"), "/var/tmp/disk.img\n");
    f.disk(None, "loop1", 0, "7:1"); // unbacked
    let l2 = f.disk(None, "loop2", 0, "7:2");
    f.write(l2.join("loop/backing_file"), "/var/tmp/empty.img\n");
    let l3 = f.disk(None, "loop3", 8192, "7:3");
    f.write(l3.join("loop/backing_file"), "\n"); // empty: treated as missing
    f.disk(None, "ram0", 131_072, "1:0");
    f.disk(None, "zram0", 0, "252:0");
    f.disk(None, "zram1", 1024, "252:1");
    f.disk(
        Some("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0"),
        "sr0",
        0,
        "11:0",
    );
    f.disk(
        Some("pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0"),
        "sr1",
        1000,
        "11:1",
    );
    f.disk(None, "dm-0", 0, "253:0");
    f.disk(None, "md127", 4096, "9:127");

    let disks = f.scan();
    assert_eq!(
        names(&disks),
        vec!["dm-0", "loop0", "md127", "sr1", "zram1"]
    );
    let l = get(&disks, "loop0");
    assert_eq!(l.transport, Transport::Loop);
    assert_eq!(
        l.backing_file.as_deref(),
        Some(Path::new("/var/tmp/disk.img"))
    );
    assert_eq!((l.model.as_ref(), l.serial.as_ref()), (None, None));
    assert_eq!(get(&disks, "dm-0").transport, Transport::Unknown);
    assert_eq!(get(&disks, "md127").transport, Transport::Unknown);
    assert_eq!(get(&disks, "zram1").transport, Transport::Unknown);
    assert_eq!(get(&disks, "sr1").transport, Transport::Sata);
}

#[test]
fn four_kn_disk_sizes_stay_in_512_units() {
    let f = Fake::new();
    let b = f.disk(Some(VIRTIO), "vda", 2_097_152, "254:0");
    f.write(b.join("queue/logical_block_size"), "4096\n");
    f.write(b.join("queue/physical_block_size"), "4096\n");
    f.part(&b, "vda1", 1, 2048, 1_048_576, "254:1");
    let disks = f.scan();
    let d = get(&disks, "vda");
    assert_eq!(d.size_bytes, 1 << 30);
    assert_eq!(
        (d.logical_sector_size, d.physical_sector_size),
        (4096, 4096)
    );
    assert_eq!(d.partitions[0].start_bytes, 1 << 20);
    assert_eq!(d.partitions[0].size_bytes, 512 << 20);
}

#[test]
fn partition_dirs_need_all_files_and_sort_by_number() {
    let f = Fake::new();
    let b = f.disk(Some(SATA), "sda", 1 << 20, "8:0");
    f.part(&b, "sda10", 10, 4096, 100, "8:10");
    f.part(&b, "sda2", 2, 2048, 100, "8:2");
    // a partition dir missing `dev` is ignored, and so are non-partition dirs
    f.write(b.join("sda3/partition"), "3\n");
    f.write(b.join("sda3/start"), "9000\n");
    f.write(b.join("sda3/size"), "1\n");
    f.write(b.join("power/control"), "auto\n");
    f.write(b.join("sda4/partition"), "not a number\n");
    let disks = f.scan();
    let parts: Vec<&str> = disks[0]
        .partitions
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(parts, vec!["sda2", "sda10"]);
}

/// sda: boot disk (sda1 /boot, sda2 /). sdb: sdb1 mounted at "/mnt/my disk", sdb2 swap,
/// sdb3 held by dm-0 (mounted at /home), sdb4 swap through a by-uuid link. sdc: idle, whole
/// disk sdd mounted, dm-1 (mapper/vg-swap) swap held by sdc1.
fn busy_tree() -> Fake {
    let f = Fake::new();
    let a = f.disk(Some(SATA), "sda", 1 << 24, "8:0");
    f.part(&a, "sda1", 1, 2048, 1 << 20, "8:1");
    f.part(&a, "sda2", 2, (1 << 20) + 2048, 1 << 22, "8:2");
    let b = f.disk(
        Some("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0"),
        "sdb",
        1 << 24,
        "8:16",
    );
    f.part(&b, "sdb1", 1, 2048, 1 << 20, "8:17");
    f.part(&b, "sdb2", 2, (1 << 20) + 2048, 1 << 20, "8:18");
    f.part(&b, "sdb3", 3, (2 << 20) + 2048, 1 << 20, "8:19");
    f.part(&b, "sdb4", 4, (3 << 20) + 2048, 1 << 20, "8:20");
    f.hold(&b.join("sdb3"), "dm-0");
    f.disk(None, "dm-0", 1 << 20, "253:0");
    let c = f.disk(
        Some("pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0"),
        "sdc",
        1 << 24,
        "8:32",
    );
    f.part(&c, "sdc1", 1, 2048, 1 << 20, "8:33");
    f.hold(&c.join("sdc1"), "dm-1");
    let dm1 = f.disk(None, "dm-1", 1 << 20, "253:1");
    f.write(dm1.join("dm/name"), "vg-swap\n");
    f.disk(
        Some("pci0000:00/0000:00:1f.2/ata4/host3/target3:0:0/3:0:0:0"),
        "sdd",
        1 << 20,
        "8:48",
    );
    f.disk(
        Some("pci0000:00/0000:00:1f.2/ata5/host4/target4:0:0/4:0:0:0"),
        "sde",
        1 << 20,
        "8:64",
    );
    f.link("dev/disk/by-uuid/1234-abcd", "../../sdb4");
    f.mountinfo(
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
         27 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n\
         28 27 8:1 / /boot rw,relatime shared:2 - vfat /dev/sda1 rw\n\
         29 27 8:17 / /mnt/my\\040disk rw,relatime - ext4 /dev/sdb1 rw\n\
         30 27 253:0 / /home rw,relatime - xfs /dev/mapper/vg-home rw\n\
         31 27 8:48 / /srv rw - ext4 /dev/sdd rw\n\
         32 27 8:48 / /srv rw - ext4 /dev/sdd rw\n\
         this line is malformed\n",
    );
    f.swaps(
        "/dev/sdb2                               partition\t1048572\t\t0\t\t-2\n\
         /dev/disk/by-uuid/1234-abcd             partition\t1048572\t\t0\t\t-3\n\
         /dev/mapper/vg-swap                     partition\t1048572\t\t0\t\t-4\n\
         /swapfile                               file\t\t1048572\t\t0\t\t-5\n",
    );
    f
}

#[test]
fn mounts_swap_and_holders() {
    let f = busy_tree();
    let disks = f.scan();
    let a = get(&disks, "sda");
    assert_eq!(a.partitions[0].mountpoints, vec![PathBuf::from("/boot")]);
    assert_eq!(a.partitions[1].mountpoints, vec![PathBuf::from("/")]);

    let b = get(&disks, "sdb");
    assert_eq!(
        b.partitions[0].mountpoints,
        vec![PathBuf::from("/mnt/my disk")]
    );
    assert!(b.partitions[1].swap);
    assert_eq!(b.partitions[2].holders, vec!["dm-0".to_owned()]);
    assert!(
        b.partitions[3].swap,
        "swap through /dev/disk/by-uuid symlink"
    );
    assert!(!b.is_boot);
    assert_eq!(
        b.is_busy().as_deref(),
        Some(
            "sdb1 is mounted at /mnt/my disk; sdb2 is in use as swap; \
             sdb3 is held by dm-0; sdb4 is in use as swap"
        )
    );

    let dm0 = get(&disks, "dm-0");
    assert_eq!(dm0.mountpoints, vec![PathBuf::from("/home")]);
    assert_eq!(dm0.is_busy().as_deref(), Some("dm-0 is mounted at /home"));
    assert!(get(&disks, "dm-1").swap, "swap through /dev/mapper alias");
    assert_eq!(
        get(&disks, "sdc").is_busy().as_deref(),
        Some("sdc1 is held by dm-1")
    );

    let d = get(&disks, "sdd");
    assert_eq!(
        d.mountpoints,
        vec![PathBuf::from("/srv")],
        "whole-disk mount, deduplicated"
    );
    assert_eq!(d.is_busy().as_deref(), Some("sdd is mounted at /srv"));
    assert_eq!(get(&disks, "sde").is_busy(), None);
}

#[test]
fn root_partition_marks_boot_disk() {
    let f = busy_tree();
    let disks = f.scan();
    let boot: Vec<&str> = disks
        .iter()
        .filter(|d| d.is_boot)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(boot, vec!["sda"]);
    assert_eq!(
        get(&disks, "sda").is_busy().as_deref(),
        Some("sda holds the running system; sda1 is mounted at /boot; sda2 is mounted at /")
    );
}

#[test]
fn root_on_dm_marks_disks_beneath_through_holders() {
    let f = Fake::new();
    // nvme0n1p2 and sda1 -> md0 -> dm-0 (mounted at /)
    let n = f.disk(Some(NVME), "nvme0n1", 1 << 24, "259:0");
    f.part(&n, "nvme0n1p2", 2, 2048, 1 << 20, "259:2");
    f.hold(&n.join("nvme0n1p2"), "md0");
    let a = f.disk(Some(SATA), "sda", 1 << 24, "8:0");
    f.part(&a, "sda1", 1, 2048, 1 << 20, "8:1");
    f.hold(&a.join("sda1"), "md0");
    let md = f.disk(None, "md0", 1 << 20, "9:0");
    f.hold(&md, "dm-0");
    f.disk(None, "dm-0", 1 << 20, "253:0");
    f.disk(Some(VIRTIO), "vda", 1 << 20, "254:0");
    f.mountinfo("1 0 253:0 / / rw - ext4 /dev/mapper/root rw\n");
    let disks = f.scan();
    let boot: Vec<&str> = disks
        .iter()
        .filter(|d| d.is_boot)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(boot, vec!["dm-0", "md0", "nvme0n1", "sda"]);
    assert_eq!(
        get(&disks, "sda").is_busy().as_deref(),
        Some("sda holds the running system; sda1 is held by md0")
    );
}

#[test]
fn boot_fallbacks_when_root_is_not_a_block_device() {
    let f = Fake::new();
    f.disk(Some(USB), "sdb", 1 << 20, "8:16");
    f.disk(Some(SATA), "sda", 1 << 20, "8:0");
    f.disk(
        Some("pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0"),
        "sr0",
        1 << 20,
        "11:0",
    );
    let rootfs = "1 1 0:2 / / rw - rootfs rootfs rw\n";

    // the /run/lifeboat/boot mount wins over iso9660 mounts
    f.mountinfo(&format!(
        "{rootfs}\
         2 1 11:0 / /media/cd ro - iso9660 /dev/sr0 ro\n\
         3 1 8:16 / /run/lifeboat/boot ro - vfat /dev/sdb ro\n"
    ));
    let boot: Vec<String> = f
        .scan()
        .into_iter()
        .filter(|d| d.is_boot)
        .map(|d| d.name)
        .collect();
    assert_eq!(boot, vec!["sdb"]);

    // else every iso9660 mount of a disk
    f.mountinfo(&format!(
        "{rootfs}2 1 11:0 / /media/cd ro - iso9660 /dev/sr0 ro\n"
    ));
    let boot: Vec<String> = f
        .scan()
        .into_iter()
        .filter(|d| d.is_boot)
        .map(|d| d.name)
        .collect();
    assert_eq!(boot, vec!["sr0"]);

    // a block-device root overmounting the initramfs wins (topmost "/")
    f.mountinfo(&format!(
        "{rootfs}2 1 11:0 / /media/cd ro - iso9660 /dev/sr0 ro\n5 1 8:0 / / rw - ext4 /dev/sda rw\n"
    ));
    let boot: Vec<String> = f
        .scan()
        .into_iter()
        .filter(|d| d.is_boot)
        .map(|d| d.name)
        .collect();
    assert_eq!(boot, vec!["sda"]);

    // nothing recognisable: no boot disk
    f.mountinfo("1 1 0:20 / / rw - overlay overlay rw,lowerdir=/a\n");
    assert!(f.scan().iter().all(|d| !d.is_boot));
}

#[test]
fn btrfs_anonymous_devnum_matches_by_source() {
    let f = Fake::new();
    let a = f.disk(Some(NVME), "nvme0n1", 1 << 24, "259:0");
    f.part(&a, "nvme0n1p2", 2, 2048, 1 << 22, "259:2");
    f.mountinfo(
        "1 0 0:31 /@ / rw - btrfs /dev/nvme0n1p2 rw,subvol=/@\n\
         2 1 0:31 /@home /home rw - btrfs /dev/nvme0n1p2 rw,subvol=/@home\n",
    );
    let disks = f.scan();
    let d = get(&disks, "nvme0n1");
    assert!(d.is_boot);
    assert_eq!(
        d.partitions[0].mountpoints,
        vec![PathBuf::from("/"), PathBuf::from("/home")]
    );
}

#[test]
fn find_by_devnum_and_path() {
    let f = busy_tree();
    f.link(
        "dev/disk/by-id/ata-QEMU_HARDDISK_QM00001-part1",
        "../../sda1",
    );
    let disks = f.scan();
    let (d, p) = find_by_devnum(&disks, 8, 17).expect("sdb1");
    assert_eq!(
        (d.name.as_str(), p.map(|p| p.name.as_str())),
        ("sdb", Some("sdb1"))
    );
    let (d, p) = find_by_devnum(&disks, 8, 48).expect("sdd");
    assert_eq!((d.name.as_str(), p.is_none()), ("sdd", true));
    assert!(find_by_devnum(&disks, 8, 99).is_none());
    assert!(find_by_devnum(&disks, 0, 0).is_none());

    let dev = &f.paths.dev;
    type Expected<'a> = Option<(&'a str, Option<&'a str>)>;
    let cases: [(&str, PathBuf, Expected); 6] = [
        ("disk node", dev.join("sdc"), Some(("sdc", None))),
        (
            "partition node",
            dev.join("sdb2"),
            Some(("sdb", Some("sdb2"))),
        ),
        (
            "by-id link",
            dev.join("disk/by-id/ata-QEMU_HARDDISK_QM00001-part1"),
            Some(("sda", Some("sda1"))),
        ),
        (
            "mapper alias",
            dev.join("mapper/vg-swap"),
            Some(("dm-1", None)),
        ),
        ("unknown node", dev.join("sdz"), None),
        ("outside dev", f.dir.path().join("sda"), None),
    ];
    for (case, path, want) in cases {
        let got = find_by_path(&f.paths, &disks, &path)
            .map(|(d, p)| (d.name.as_str(), p.map(|p| p.name.as_str())));
        assert_eq!(got, want, "case {case}");
    }
}

#[test]
fn errors_and_missing_files() {
    let f = Fake::new();
    f.disk(Some(SATA), "sda", 100, "8:0");
    fs::remove_file(&f.paths.swaps).expect("rm");
    assert_eq!(f.scan().len(), 1, "missing swaps file means no swap");

    fs::remove_file(&f.paths.mountinfo).expect("rm");
    assert!(matches!(
        scan(&f.paths),
        Err(Error::Io { op: "reading", .. })
    ));

    let empty = tempfile::tempdir().expect("tempdir");
    let paths = SystemPaths {
        sys: empty.path().join("sys"),
        ..f.paths.clone()
    };
    match scan(&paths) {
        Err(Error::Io { op, path, .. }) => {
            assert_eq!(op, "listing");
            assert_eq!(path, empty.path().join("sys/block"));
        }
        other => panic!("expected an io error, got {other:?}"),
    }
}

#[test]
fn dangling_block_link_is_skipped() {
    let f = Fake::new();
    f.disk(Some(SATA), "sda", 100, "8:0");
    f.link("sys/block/sdx", "../devices/gone/block/sdx");
    assert_eq!(names(&f.scan()), vec!["sda"]);
}

#[test]
fn transport_serializes_lowercase() {
    let json = serde_json::to_string(&[Transport::Sata, Transport::Nvme, Transport::Unknown])
        .expect("json");
    assert_eq!(json, r#"["sata","nvme","unknown"]"#);
}

#[test]
fn default_paths_are_the_real_ones() {
    let p = SystemPaths::default();
    assert_eq!(p.sys, Path::new("/sys"));
    assert_eq!(p.dev, Path::new("/dev"));
    assert_eq!(p.mountinfo, Path::new("/proc/self/mountinfo"));
    assert_eq!(p.swaps, Path::new("/proc/swaps"));
}

/// Reads the real host; asserts only that the scan succeeds (no test names a host disk).
#[test]
fn scan_real_host() {
    assert!(scan(&SystemPaths::default()).is_ok());
}
