//! Command-line arguments (clap derive): the first of the CLI's two stages. Only parsing
//! lives here. Each command's arguments are one struct, which the command's file in `cli/`
//! turns into the job's spec (`TryFrom`/`From`), so a spec never depends on clap. The
//! defaults shown in `--help` are the jobs layer's constants, the ones the menu uses too.

use crate::jobs::{image, DEFAULT_FILE_SECTOR_SIZE, DEFAULT_THREADS};
use crate::store::STORE_DIR;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Lifeboat: smart, verified disk images, restores and clones, from a USB stick or any Linux.
///
/// Lifeboat reads disks directly. Run it as root to see every disk's partitions. Without a
/// command, on a terminal, it opens the full-screen menu (`lifeboat tui`).
#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Args {
    /// What to do (none: the menu, on a terminal).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// For images read from https:// URLs: trust only the CA certificates in FILE (PEM),
    /// for a server with a private CA. Without it, the system's roots are used.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// For smb://, nfs:// and sftp:// stores: user, password and SSH host keys from FILE,
    /// one key=value per line (user=, password=, domain=, identity=, host_key=). Without it
    /// a password is asked for on the terminal.
    #[arg(long, global = true, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// For encrypted images: the passphrase is the whole content of FILE (one trailing
    /// newline is ignored); a recovery key works too. It opens every encrypted image the
    /// command reads, and is the passphrase of a new one (image --encrypt). Without it the
    /// passphrase is asked for on the terminal, without echo.
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The line-mode rescue console that the boot environment shows: disks, the image store,
    /// and every lifeboat command at a prompt. Type help inside it.
    Console,
    /// The full-screen menu: disks, image storage, and wizards to image, restore, clone and
    /// verify. Keyboard only; every key is shown at the bottom, and ? explains each screen.
    ///
    /// Restores and clones ask you to type the target disk's name (for example sda) before
    /// anything is written, and everything written is read back and checked.
    ///
    /// Examples:
    ///   lifeboat tui
    ///   lifeboat tui --images /mnt/backup/images
    Tui(TuiArgs),
    /// List every disk with its partitions, filesystems, labels and mount points.
    ///
    /// Disks come from sysfs (/sys/block); each is opened read-only to read its partition
    /// table and filesystems. Nothing is ever written. Problems in a partition table (CRC
    /// errors, overlaps, partitions beyond the end) are shown under the disk.
    ///
    /// Examples:
    ///   lifeboat list
    ///   lifeboat list --json | jq '.[] | {path, model, size_bytes}'
    List(ListArgs),
    /// Describe one block device or disk-image file: geometry, partition table, filesystems.
    ///
    /// PATH is a whole disk (/dev/sda, /dev/nvme0n1, /dev/loop0), a partition, or a disk-image
    /// file. The device is opened read-only. Table problems are listed as warnings and errors.
    ///
    /// Examples:
    ///   lifeboat inspect /dev/sda
    ///   lifeboat inspect --json disk.img
    ///   lifeboat inspect --sector-size 4096 nvme-4kn.img
    Inspect(InspectArgs),
    /// Image a whole disk into one compressed, checksummed file, copying only used blocks.
    ///
    /// SOURCE is a disk (/dev/sda, /dev/nvme0n1) or a disk-image file. The partition table and
    /// everything outside partitions that boot loaders use (MBR boot code, a gap of up to 16
    /// MiB before the first partition, both GPT copies) are copied whole; of a larger gap only
    /// its first and last MiB (and any table structure in it). Inside partitions only the blocks
    /// that ext2/3/4, FAT12/16/32 and NTFS mark used are read; other filesystems, and damaged,
    /// dirty or hibernated ones (Windows Fast Startup), are copied block by block with all-zero
    /// chunks left out, and a warning says why. Chunks are compressed with zstd on every core
    /// and hashed with blake3 in 64 KiB blocks. The image is written as FILE.partial, read
    /// back and verified, and only then renamed to FILE. The source is only ever read.
    ///
    /// Chains: with --parent, --incremental or --differential the new image stores only the
    /// 64 KiB blocks its parent chain does not already hold (matched by blake3 hash, so moved
    /// data is found too), yet it restores the whole disk as it is now. A differential's
    /// parent is the newest full image of the disk, so restoring it needs two files; an
    /// incremental's parent is the newest image of any kind. The disk must be the one the
    /// parent was taken of (serial number, else partition-table disk ID and size).
    ///
    /// Examples:
    ///   lifeboat image /dev/sda -o /mnt/usb/laptop.lbi
    ///   lifeboat image /dev/sda --incremental /mnt/usb      (names it laptop-DATE-incr.lbi)
    ///   lifeboat image /dev/sda --differential /mnt/usb
    ///   lifeboat image /dev/sda -o monday.lbi --parent sunday.lbi
    ///   lifeboat image /dev/nvme0n1 -o backup.lbi --partitions 1,2 --level 6
    ///   lifeboat image disk.img -o disk.lbi --dry-run
    #[command(verbatim_doc_comment)]
    Image(ImageArgs),
    /// Check every chunk and structure of an image file, and of every image its chain needs.
    ///
    /// Re-reads and re-hashes every chunk and checks the header, index, metadata and footer
    /// checksums and the root hash. For an incremental or differential image every link of
    /// its chain is checked (each parent's ID and root hash), and every chunk it takes from
    /// an ancestor is re-read there. Exit status 0 means the image is intact and restorable;
    /// 1 means it is not, and the message names the file, the chunk, the file offset, the
    /// disk range and the partition it belongs to, or the broken link.
    ///
    /// Examples:
    ///   lifeboat verify laptop.lbi
    ///   lifeboat verify laptop-20261122-030000-incr.lbi --search /mnt/old
    ///   lifeboat verify --json laptop.lbi
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Mount an image: its partitions' filesystems under DIR/p1, DIR/p2…, read-only.
    ///
    /// DIR must be an empty directory. The whole disk and each partition also appear as
    /// files, DIR/raw/disk and DIR/raw/p1…, read on demand through the image's index (nothing
    /// is decompressed ahead). ext2/3/4, XFS and btrfs are mounted by the kernel without
    /// replaying their journals; NTFS through ntfs-3g; FAT and exFAT by the kernel, else
    /// through fusefat and exfat-fuse. A filesystem that cannot be mounted is listed with the
    /// reason, and the rest are still mounted. The command returns once everything is
    /// mounted and a background server keeps serving (log: /run/lifeboat/mounts/KEY.log)
    /// until `lifeboat umount DIR`. With --rw, writes go to memory and are thrown away at
    /// umount; the image is never written. Needs root.
    ///
    /// Examples:
    ///   lifeboat mount laptop.lbi /mnt/laptop && cp /mnt/laptop/p2/home/me/thesis.odt .
    ///   lifeboat mount laptop-20261122-030000-incr.lbi /mnt/laptop --json
    ///   lifeboat mount --rw laptop.lbi /mnt/laptop      (changes vanish at umount)
    ///   lifeboat umount /mnt/laptop
    #[command(verbatim_doc_comment)]
    Mount(super::mount::MountArgs),
    /// Unmount what `lifeboat mount` mounted on DIR: every filesystem, loop device and FUSE
    /// mount, and the directories it made, leaving DIR empty. Works after the server was
    /// killed too.
    ///
    /// Examples:
    ///   lifeboat umount /mnt/laptop
    #[command(verbatim_doc_comment)]
    Umount(super::mount::UmountArgs),
    /// Show what an image holds: source disk, partition table, filesystems, sizes, hashes,
    /// and its chain.
    ///
    /// Reads the header, metadata, index and footer (all checksummed) but not the chunk data;
    /// use `lifeboat verify` for that. For an incremental or differential image the chain is
    /// listed from the image down to its full image, with IDs, dates, kinds and sizes; a
    /// broken chain is shown, not hidden.
    ///
    /// Examples:
    ///   lifeboat info laptop.lbi
    ///   lifeboat info --json laptop.lbi | jq .meta.regions
    ///   lifeboat info --json laptop-20261122-030000-incr.lbi | jq .chain
    #[command(verbatim_doc_comment)]
    Info(InfoArgs),
    /// Write an image back onto a disk or into a disk-image file. Destroys the target's data.
    ///
    /// TARGET is a disk (/dev/sdb) or a disk-image file, created with the source's size if it
    /// does not exist. The target may be the same size as the imaged disk, larger (a GPT's
    /// backup copy is moved to the new end), or smaller if every partition still fits (the
    /// exact size needed is printed otherwise). Every chunk is checked against its hash before
    /// it is written, the partition table and first MiB are written last, and everything
    /// written is read back from the disk (not the cache) and compared. Mounted or busy
    /// disks, the disk holding the image, and read-only disks are refused.
    ///
    /// Any member of a chain restores the disk exactly as it was when that member was taken;
    /// its ancestors are found next to it (or with --search) and every link is checked first.
    ///
    /// The plan is printed first. Writing needs --yes, or typing the target's path at the
    /// prompt on a terminal.
    ///
    /// Examples:
    ///   lifeboat restore laptop.lbi /dev/sdb --dry-run
    ///   lifeboat restore laptop.lbi /dev/sdb
    ///   lifeboat restore laptop-20261122-030000-incr.lbi /dev/sdb
    ///   lifeboat restore laptop.lbi restored.img --yes
    #[command(verbatim_doc_comment)]
    Restore(RestoreArgs),
    /// Copy one disk straight onto another: tables, boot areas and used blocks. Destroys the
    /// target's data.
    ///
    /// Copies what an image would hold (the boot area, the partition tables, the boot loader
    /// gap, and the blocks each ext2/3/4, FAT, exFAT, NTFS and XFS filesystem uses; other partitions
    /// whole) with no compression and no file in between: one thread reads the source while
    /// another writes the target. The partition table and first MiB are written last, then
    /// everything written is read back from the target (not the cache) and compared.
    ///
    /// TARGET may be the same size, larger (a GPT's backup copy moves to the new end; add
    /// --grow-last to grow the last partition and its filesystem into the new space), or
    /// smaller when every partition fits (otherwise the message says how much is missing and
    /// which partition is in the way). Both disks must have the same logical sector size.
    /// The clone keeps the disk and partition IDs, so it boots like the source: do not leave
    /// both attached to one computer, or pass --new-disk-id.
    ///
    /// Refused: a busy or mounted source or target, the source as its own target (or a
    /// partition of it), a read-only target. Writing needs --yes, or typing the target's path
    /// at the prompt on a terminal.
    ///
    /// Examples:
    ///   lifeboat clone /dev/sda /dev/sdb --dry-run
    ///   lifeboat clone /dev/sda /dev/nvme0n1 --grow-last
    ///   lifeboat clone /dev/sda /dev/sdb --new-disk-id --yes
    ///   lifeboat clone disk.img copy.img --yes
    #[command(verbatim_doc_comment)]
    Clone(CloneArgs),
    /// Write one self-contained full image of a chain member's disk state (a synthetic full).
    ///
    /// Reads every chunk FILE needs, from FILE and its ancestors, checks each against its
    /// hash, and writes them into NEW as a full image that describes exactly the same disk
    /// content (this is checked) and needs no other file. NEW is verified before success is
    /// reported. Nothing in the chain is changed: delete old members afterwards with
    /// `lifeboat prune`, which deletes only what no kept image needs.
    ///
    /// Examples:
    ///   lifeboat merge laptop-20261129-030000-incr.lbi -o laptop-week48.lbi
    ///   lifeboat prune /mnt/usb --keep laptop-week48.lbi --dry-run
    #[command(verbatim_doc_comment)]
    Merge(MergeArgs),
    /// Delete the images in DIR that no kept image needs, so a chain can be thinned safely.
    ///
    /// Every --keep image's chain is opened and checked first (a broken chain stops the
    /// prune). An image in DIR is deleted only when it belongs to a kept image's chain or disk
    /// and no kept image needs it; images of other disks are left alone. The list is printed
    /// first; deleting needs --yes or typing "delete". Afterwards every kept chain is
    /// reopened and checked again.
    ///
    /// Examples:
    ///   lifeboat prune /mnt/usb --keep laptop-week48.lbi --dry-run
    ///   lifeboat prune /mnt/usb --keep laptop-week48.lbi --keep laptop-20261201-030000-incr.lbi
    #[command(verbatim_doc_comment)]
    Prune(PruneArgs),
    /// Free the space in a deduplicating store (image --dedup) that no image uses any more.
    ///
    /// Deleting an image from a store (rm, or the S3 store's own tools) leaves its chunks in
    /// the store's packs, where other images may still use them. gc reads every image in
    /// DIR, deletes the packs none of them uses, and drops those packs' chunks from the
    /// store's index, so that no later image counts on them. It waits until no image is being
    /// written into the store (writers hold a lock there), and writers that start meanwhile
    /// wait for it. Every image in DIR must be readable, or nothing is deleted. The list is
    /// printed first; deleting needs --yes or typing "delete".
    ///
    /// Examples:
    ///   lifeboat gc /mnt/nas/fleet --dry-run
    ///   lifeboat gc s3://backups/pcs --yes
    #[command(verbatim_doc_comment)]
    Gc(GcArgs),
    /// Serve an image (any chain member) as a disk over NBD, for qemu, qemu-img and nbd-client.
    ///
    /// Nothing is restored or unpacked: each read decodes only the chunks it needs (kept in a
    /// cache of --cache-mib), and checks them against their hashes. A damaged chunk fails the
    /// reads that need it with an I/O error, and is named on stderr with its disk offset;
    /// other reads go on. The export is read-only, unless --overlay FILE is given: writes then
    /// go to FILE, a new sparse file, and the image is still never written. FILE is deleted
    /// when the server stops, so changes are thrown away.
    ///
    /// --nbd is where to listen: unix:PATH (a socket file, removed at the end) or
    /// tcp:ADDR:PORT (anyone who can reach ADDR can read the disk: prefer 127.0.0.1). The
    /// export is named after the image file (laptop.lbi: "laptop") or --name; clients may
    /// also ask for the empty name. Several clients can connect at once. The server runs
    /// until Ctrl-C or SIGTERM, then stops cleanly.
    ///
    /// Examples:
    ///   lifeboat serve laptop.lbi --nbd unix:/tmp/pc.sock
    ///   qemu-img info 'nbd+unix:///?socket=/tmp/pc.sock'
    ///   qemu-img convert -O qcow2 'nbd+unix:///?socket=/tmp/pc.sock' laptop.qcow2
    ///   lifeboat serve laptop.lbi --nbd unix:/tmp/pc.sock --overlay /var/tmp/pc.overlay
    ///   qemu-system-x86_64 -m 2G -drive file=nbd+unix:///?socket=/tmp/pc.sock,format=raw
    ///   lifeboat serve laptop.lbi --nbd tcp:127.0.0.1:10809
    ///   nbd-client 127.0.0.1 10809 /dev/nbd0 -N laptop      (then mount /dev/nbd0p1)
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Write an image's disk as a raw, qcow2, VHDX or VMDK file that any VM or tool opens.
    ///
    /// raw is written directly and sparse: only what the image holds data for is written,
    /// the rest stays a hole, so a mostly empty disk takes little space. qcow2, vhdx and vmdk
    /// are made by qemu-img (package qemu-utils), reading the image through a private NBD
    /// server. FILE is written as FILE.partial, checked (raw: every chunk's hash read back;
    /// others: qemu-img compare against the image), and only then renamed. An existing FILE
    /// is refused unless --force. The format is taken from FILE's extension when --format is
    /// not given (.img and .raw are raw). Any chain member exports the disk as it was then.
    ///
    /// Examples:
    ///   lifeboat export laptop.lbi -o laptop.img
    ///   lifeboat export laptop.lbi -o laptop.qcow2
    ///   lifeboat export laptop-20261122-030000-incr.lbi -o laptop.vhdx --format vhdx
    ///   lifeboat export laptop.lbi -o /vm/laptop.vmdk --force
    #[command(verbatim_doc_comment)]
    Export(ExportArgs),
    /// Copy files and folders out of an image without restoring it (single-file restore).
    ///
    /// The image (any member of a chain) is mounted read-only in a private folder, each
    /// PART:PATH is copied into DIR, and the image is unmounted again. PART is a partition as
    /// `lifeboat ls IMAGE` lists it (p1, p2, or just 2); PATH is absolute inside it, and `/`
    /// copies the whole partition into DIR/pN. Folders are copied recursively with modes,
    /// times and symlinks (as symlinks); owners too when run as root.
    ///
    /// Nothing is ever overwritten: if a name exists in DIR, nothing is copied. DIR must have
    /// room for everything (checked first). Each file is written as NAME.partial and renamed
    /// when complete; if a read fails (a damaged chunk of the image) or the copy is
    /// cancelled (Ctrl-C), everything copied so far is removed again and the error names
    /// the file. The image is only read.
    ///
    /// Examples:
    ///   lifeboat ls pc.lbi                                   (the partitions)
    ///   lifeboat ls pc.lbi p2:/home/ann                      (a folder)
    ///   lifeboat get pc.lbi p2:/home/ann/thesis.odt --to /mnt/usb
    ///   lifeboat get pc.lbi p2:/home/ann/Documents p2:/etc/fstab --to /mnt/usb
    ///   lifeboat get pc-20261122-030000-incr.lbi p1:/ --to /mnt/usb   (all of partition 1)
    #[command(verbatim_doc_comment)]
    Get(GetArgs),
    /// List an image's partitions, or the entries of one folder in one of them.
    ///
    /// Without PART:PATH, every partition with its filesystem, label, size, and whether it
    /// can be opened (with the reason when not). With PART:PATH, the folder's entries: type
    /// (d folder, - file, l symlink), size, modification time (UTC) and name. The image is
    /// mounted read-only in a private folder and unmounted before this returns.
    ///
    /// Examples:
    ///   lifeboat ls pc.lbi
    ///   lifeboat ls pc.lbi p2:/home/ann
    ///   lifeboat ls --json pc.lbi p1:/ | jq '.[].name'
    #[command(verbatim_doc_comment)]
    Ls(LsArgs),
    /// Prove that a backup boots: start it in QEMU and watch how far the boot gets.
    ///
    /// SOURCE is an image (any chain member), a disk-image file or a block device. Nothing
    /// is restored and SOURCE is never written: the guest's writes go to a temporary overlay
    /// that is thrown away. Runs on a Linux host with QEMU (the rescue system has none).
    ///
    /// How far it got is decided from what Lifeboat alone sees, with nothing installed in the
    /// guest: the disk reads and writes (mapped to the boot code, boot loaders, kernels, init
    /// and filesystems), the serial and firmware consoles, QEMU's events and the screen.
    ///   stage 1  the firmware read the boot code (MBR + BIOS-boot partition, or the ESP's loader)
    ///   stage 2  the boot loader loaded an OS kernel (/boot/vmlinuz*, the initrd)
    ///   stage 3  the OS started its userland from this disk (read /sbin/init, or wrote to a filesystem)
    ///   stage 4  the OS is up (a login prompt on the serial console, --expect, a DHCP request
    ///            with --net, or the screen settled after stage 3)
    /// Failure signs: no boot device, a kernel panic, a reboot loop, a still screen before
    /// stage 3, the timeout. Screenshots (PNG) are taken at each stage and at the end, next
    /// to the serial log, the I/O trace and report.json, in --out.
    ///
    /// Exit status: 0 booted, 1 did not boot (or failed to run), 2 usage error.
    /// See docs/BOOT-TEST.md.
    ///
    /// Examples:
    ///   lifeboat boot-test /store/laptop.lbi
    ///   lifeboat boot-test /store/laptop-incr-20261203-101500.lbi --firmware uefi
    ///   lifeboat boot-test disk.img --bus virtio --expect 'Welcome to' --out /tmp/evidence
    ///   lifeboat boot-test /dev/sdb --net --timeout 900 --json
    #[command(verbatim_doc_comment)]
    BootTest(BootTestArgs),
    /// List, add and remove the key slots of an encrypted image, without rewriting it.
    ///
    /// An encrypted image (image --encrypt) has one random key, held in up to 16 slots:
    /// each opens with a passphrase (stretched by Argon2id) or a printable recovery key.
    /// Adding or removing a slot rewrites only the image's 4 KiB header; the old header is
    /// kept in FILE.header-backup until the new one is on the disk. Adding and removing
    /// need a passphrase that opens the image (--key-file, or the prompt). Each image of a
    /// chain has its own slots: an incremental copies its parent's when it is made.
    ///
    /// Examples:
    ///   lifeboat key list laptop.lbi
    ///   lifeboat key add laptop.lbi                      (asks for the old, then the new)
    ///   lifeboat --key-file old.txt key add laptop.lbi --new-key-file new.txt
    ///   lifeboat key add laptop.lbi --recovery-key       (prints a new recovery key)
    ///   lifeboat key remove laptop.lbi 1
    #[command(verbatim_doc_comment, subcommand)]
    Key(KeyCommand),
    /// Print the shell completion script for SHELL on stdout.
    ///
    /// With it, Tab completes lifeboat's commands and options. Save it where the shell looks
    /// for completions, then start a new shell:
    ///
    ///   bash        lifeboat completions bash > /etc/bash_completion.d/lifeboat
    ///               (one user: ~/.local/share/bash-completion/completions/lifeboat)
    ///   zsh         lifeboat completions zsh > /usr/local/share/zsh/site-functions/_lifeboat
    ///               (any folder in $fpath; the file must be named _lifeboat)
    ///   fish        lifeboat completions fish > ~/.config/fish/completions/lifeboat.fish
    ///   elvish      lifeboat completions elvish >> ~/.config/elvish/rc.elv
    ///   powershell  lifeboat completions powershell >> $PROFILE
    ///
    /// Examples:
    ///   lifeboat completions bash > /etc/bash_completion.d/lifeboat
    ///   source <(lifeboat completions bash)      (this shell only)
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The arguments of `lifeboat tui`: where the menu finds and mounts the image storage.
#[derive(Debug, clap::Args)]
pub struct TuiArgs {
    /// Use this folder for images from the start (instead of choosing a filesystem).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Where a filesystem chosen as the image storage is mounted.
    #[arg(long, value_name = "DIR", default_value = STORE_DIR)]
    pub mount_at: PathBuf,
    /// Started by the rescue system: offer power off and reboot.
    #[arg(long, hide = true)]
    pub rescue: bool,
}

/// The arguments of `lifeboat list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON (an array of disks) instead of a table. Field names are stable.
    #[arg(long)]
    pub json: bool,
    /// Read disks from this sysfs tree instead of /sys (for testing).
    #[arg(long, hide = true, default_value = "/sys")]
    pub sysfs_root: PathBuf,
}

/// The arguments of `lifeboat inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Block device or disk-image file.
    pub path: PathBuf,
    /// Print JSON (one disk object) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Logical sector size assumed for image files (block devices report their own).
    #[arg(long, default_value_t = DEFAULT_FILE_SECTOR_SIZE, value_parser = parse_sector_size)]
    pub sector_size: u32,
}

/// The arguments of `lifeboat image`; becomes a [`crate::jobs::image::ImageSpec`].
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// Disk or disk-image file to read.
    pub source: PathBuf,
    /// The image file to create (refused if it exists): a path, or on a network store
    /// smb://USER@HOST/SHARE/DIR/NAME.lbi, nfs://HOST/EXPORT/DIR/NAME.lbi or
    /// sftp://USER@HOST/DIR/NAME.lbi (see --credentials), or an object in an S3 store,
    /// s3://BUCKET/PREFIX/NAME.lbi (endpoint and keys from AWS_ENDPOINT_URL,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or ~/.aws; see docs/STORES.md). Optional
    /// with --incremental and --differential, which name it
    /// CHAIN-YYYYMMDD-HHMMSS-incr.lbi (or -diff) in DIR.
    #[arg(
        short,
        long,
        value_name = "FILE",
        required_unless_present_any = ["incremental", "differential"]
    )]
    pub output: Option<PathBuf>,
    /// Store only what PARENT's chain lacks (an incremental; a differential when PARENT
    /// is a full image).
    #[arg(long, value_name = "PARENT", group = "chain")]
    pub parent: Option<PathBuf>,
    /// Find the newest image of SOURCE in DIR and store an incremental on top of it.
    #[arg(long, value_name = "DIR", group = "chain")]
    pub incremental: Option<PathBuf>,
    /// Find the newest full image of SOURCE in DIR and store a differential on top of it.
    #[arg(long, value_name = "DIR", group = "chain")]
    pub differential: Option<PathBuf>,
    /// Also look for the parent's ancestors in DIR (repeatable; the parent's own folder
    /// is always searched first).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Store SOURCE against a parent taken of another disk (refused otherwise).
    #[arg(long)]
    pub force_other_disk: bool,
    /// Image only these partitions (numbers as `lifeboat inspect` shows them); the table
    /// and boot areas are always included.
    #[arg(long, value_delimiter = ',', value_name = "N,M")]
    pub partitions: Option<Vec<u32>>,
    /// zstd compression level, 1 (fastest) to 19 (smallest).
    #[arg(long, default_value_t = image::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Compression threads (0 = one per core).
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
    /// Print the plan (regions, filesystems, what will be copied) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Print events as JSON lines (NDJSON) on stdout instead of a progress line.
    #[arg(long)]
    pub json: bool,
    /// Logical sector size assumed for a disk-image file source.
    #[arg(long, default_value_t = DEFAULT_FILE_SECTOR_SIZE, value_parser = parse_sector_size)]
    pub sector_size: u32,
    /// Block size in KiB: the unit chains deduplicate in (a power of two, 4 to 4096). For
    /// benchmarks; children always use their parent's.
    #[arg(long, default_value_t = image::DEFAULT_BLOCK >> 10, hide = true)]
    pub block_kib: u32,
    /// Split the image into volumes of at most SIZE (e.g. 4000M, 2G; at least 1M):
    /// FILE, FILE.001, FILE.002… Every command reads the set as one image. Without it,
    /// images are split into 4 GiB volumes only where they are written to FAT, which
    /// cannot hold larger files.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub volume_size: Option<u64>,
    /// Copy swap partitions whole. Without it only their first and last MiB are kept (the
    /// header with its UUID and label): swap holds nothing across a reboot, and a restore
    /// writes a valid swap area with the same UUID and label. A system hibernated to its swap
    /// is always copied whole.
    #[arg(long)]
    pub full_swap: bool,
    /// Image a failing disk: read errors do not stop the job. The good data is read first
    /// (skipping ahead after an error), then failed areas are trimmed and scraped down to
    /// single sectors and retried. What cannot be read is recorded in the image as missing,
    /// never as zeros: `info` lists it, `restore` writes zeros there and names it.
    #[arg(long)]
    pub rescue: bool,
    /// With --rescue: passes over the bad sectors after scraping; the last runs backwards.
    #[arg(long, value_name = "N", default_value_t = image::RescueOptions::default().retries, requires = "rescue")]
    pub retries: u32,
    /// With --rescue: seconds one read may take before it counts as failed (a disk that
    /// hangs cannot hang Lifeboat).
    #[arg(long, value_name = "SECS", default_value_t = image::RescueOptions::default().read_timeout_secs, value_parser = parse_secs, requires = "rescue")]
    pub read_timeout: f64,
    /// With --rescue: go on with an earlier rescue into FILE instead of starting over. After
    /// a crash or power loss it goes on from FILE.partial and its log FILE.rescue without
    /// reading again what they hold; on a finished image it reads the missing ranges again
    /// (a disk that has cooled down may give more) and replaces FILE.
    #[arg(long, requires = "rescue")]
    pub resume: bool,
    /// With --rescue: keep a GNU ddrescue mapfile of the rescue in MAPFILE (for ddrescuelog
    /// and ddrescueview): read blocks `+`, unreadable `-`, unused `?`.
    #[arg(long, value_name = "MAPFILE", requires = "rescue")]
    pub mapfile: Option<PathBuf>,
    /// With --rescue: read only the finished (`+`) blocks of this ddrescue mapfile; used
    /// blocks outside it are recorded as missing.
    #[arg(long, value_name = "MAPFILE", requires = "rescue")]
    pub domain: Option<PathBuf>,
    /// Encrypt the image: every chunk, the metadata and the index, with XChaCha20-Poly1305
    /// under a random key that a passphrase unlocks (Argon2id). The passphrase comes from
    /// --key-file, or is asked for twice on the terminal. Every later command that reads
    /// the image needs it. A child of an encrypted image is encrypted with its key anyway.
    #[arg(long)]
    pub encrypt: bool,
    /// Write into a deduplicating store: the folder of -o (a path, or s3://BUCKET/PREFIX)
    /// holds many machines' images, and every chunk once. Chunks already there (from any
    /// image) are not stored again; new ones go to packs in FOLDER/packs, with an index in
    /// FOLDER/index. The image itself is small and restores, verifies and reads like any
    /// other. Full images only. With --encrypt, the store is encrypted: its first image makes
    /// the store's key (FOLDER/store.key), and every later image must be written with
    /// --encrypt and the same passphrase, which it shares so that chunks still deduplicate
    /// (see docs/STORES.md).
    #[arg(long, conflicts_with_all = ["parent", "incremental", "differential", "rescue", "volume_size"])]
    pub dedup: bool,
    /// With --encrypt: also make a printable recovery key that opens the image, shown once
    /// when the image is written. Keep it apart from the passphrase.
    #[arg(long, requires = "encrypt")]
    pub recovery_key: bool,
}

/// The arguments of `lifeboat verify`; becomes a [`crate::jobs::run::VerifyJob`].
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The image file; or its http://, https:// or s3://BUCKET/KEY URL (read with range
    /// requests; its ancestors are looked for next to it); or smb://, nfs:// or sftp:// (its folder is
    /// mounted for the command). Or a deduplicating store (image --dedup), a folder or
    /// s3://BUCKET/PREFIX: every image in it is verified.
    pub file: PathBuf,
    /// Also look for ancestors in DIR (repeatable; the image's folder comes first).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Print events as JSON lines (NDJSON) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Decompression threads (0 = one per core).
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
}

/// `lifeboat key`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List the key slots (needs no passphrase).
    List {
        /// The encrypted image (its first volume, or s3://BUCKET/KEY), or an encrypted fleet
        /// store's folder (or s3://BUCKET/FOLDER).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a passphrase slot (or, with --recovery-key, a recovery-key slot).
    Add {
        /// The encrypted image (its first volume; in S3 its object is uploaded again), or an
        /// encrypted fleet store's folder or s3://BUCKET/FOLDER (the slot is added to
        /// store.key and to every image there).
        file: PathBuf,
        /// The new passphrase is the whole content of FILE (one trailing newline ignored).
        /// Without it, it is asked for twice on the terminal.
        #[arg(long, value_name = "FILE", conflicts_with = "recovery_key")]
        new_key_file: Option<PathBuf>,
        /// Make a new printable recovery key instead, and print it once.
        #[arg(long)]
        recovery_key: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove key slot N (numbered from 1, as key list shows them). The last slot stays.
    Remove {
        /// The encrypted image (its first volume; in S3 its object is uploaded again), or an
        /// encrypted fleet store's folder or s3://BUCKET/FOLDER (the slot is removed from
        /// store.key and from every image there).
        file: PathBuf,
        /// The slot's number.
        slot: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The arguments of `lifeboat info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The image file; or its http://, https:// or s3://BUCKET/KEY URL (read with range
    /// requests; its ancestors are looked for next to it); or smb://, nfs:// or sftp:// (its folder is
    /// mounted for the command).
    pub file: PathBuf,
    /// Also look for ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// For an image with missing ranges (`image --rescue`): read its filesystems and list
    /// the files and structures those ranges hit.
    #[arg(long)]
    pub damaged: bool,
}

/// `--fit` and its options, shared by `restore` and `clone`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FitArgs {
    /// Make the layout fit the target, of any size. Onto a smaller disk: shrink filesystems
    /// (ext2/3/4 with resize2fs, NTFS with ntfsresize, FAT in place) and move the
    /// partitions after them left; the shrink runs on a copy-on-write overlay, so the source
    /// and the image are never written. XFS and unknown contents keep their size. Onto a
    /// larger disk: grow the last partition, as --grow-last does. The plan shows every
    /// partition's old and new place before anything is written.
    #[arg(long)]
    pub fit: bool,
    /// With --fit: a folder for what the shrinks write beyond --overlay-memory. It must be on
    /// another disk than the target and the source; the file in it has no name and is gone
    /// when lifeboat ends.
    #[arg(long, value_name = "DIR", requires = "fit")]
    pub scratch: Option<PathBuf>,
    /// With --fit: bytes the shrinking partitions' overlays keep in memory together (e.g.
    /// 512M, 2G; default 1G, or half the available memory when that is less; 0 sends
    /// everything to --scratch). Past it, the overlays need --scratch, or the shrink stops
    /// with "no space left".
    #[arg(long, value_name = "SIZE", requires = "fit", value_parser = parse_size)]
    pub overlay_memory: Option<u64>,
}

impl FitArgs {
    /// The job's options, when `--fit` is given.
    pub fn options(&self) -> Option<crate::jobs::fit::FitOptions> {
        self.fit.then(|| crate::jobs::fit::FitOptions {
            scratch: self.scratch.clone(),
            overlay_memory: self.overlay_memory,
        })
    }
}

/// The arguments of `lifeboat restore`; becomes a [`crate::jobs::restore::RestoreSpec`].
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The image file; or its http://, https:// or s3://BUCKET/KEY URL (read with range
    /// requests; its ancestors are looked for next to it); or smb://, nfs:// or sftp:// (its folder is
    /// mounted for the command).
    pub file: PathBuf,
    /// Disk or disk-image file to overwrite.
    pub target: PathBuf,
    /// Also look for ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the read-back verification (not recommended).
    #[arg(long)]
    pub no_verify: bool,
    /// Print events as JSON lines (NDJSON) on stdout. Requires --yes or --dry-run.
    #[arg(long)]
    pub json: bool,
    /// Decompression threads (0 = one per core).
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
    /// Grow the last partition to the target's end, and its filesystem with it (ext2/3/4
    /// with resize2fs, NTFS with ntfsresize, FAT in place as far as its FAT allows).
    #[arg(long)]
    pub grow_last: bool,
    /// Give the target a new disk GUID (GPT, both copies) or disk signature (MBR).
    #[arg(long)]
    pub new_disk_id: bool,
    /// --fit, --scratch, --overlay-memory.
    #[command(flatten)]
    pub fit: FitArgs,
    /// Then boot the target in QEMU, through a throw-away overlay, and report how far it
    /// got, as `lifeboat boot-test` does (exit 1 when it does not boot). Needs QEMU: not in
    /// the rescue system.
    #[arg(long)]
    pub boot_test: bool,
    /// The boot test's options.
    #[command(flatten, next_help_heading = "Boot test (with --boot-test)")]
    pub boot: BootTestOptions,
}

/// The arguments of `lifeboat clone`; becomes a [`crate::jobs::clone::CloneSpec`].
#[derive(Debug, clap::Args)]
pub struct CloneArgs {
    /// Disk or disk-image file to copy (only read).
    pub source: PathBuf,
    /// Disk or disk-image file to overwrite (a missing file is created with the source's size).
    pub target: PathBuf,
    /// Grow the last partition to the target's end, and its filesystem with it (ext2/3/4
    /// with resize2fs, NTFS with ntfsresize, FAT in place as far as its FAT allows).
    #[arg(long)]
    pub grow_last: bool,
    /// Give the target a new disk GUID (GPT, both copies) or disk signature (MBR).
    #[arg(long)]
    pub new_disk_id: bool,
    /// Copy swap partitions whole (without it, only their header and ends, as `image`).
    #[arg(long)]
    pub full_swap: bool,
    /// --fit, --scratch, --overlay-memory.
    #[command(flatten)]
    pub fit: FitArgs,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Print the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip the read-back verification (not recommended).
    #[arg(long)]
    pub no_verify: bool,
    /// Print events as JSON lines (NDJSON) on stdout. Requires --yes or --dry-run.
    #[arg(long)]
    pub json: bool,
    /// Reading and hashing threads (0 = one per core, at least 4).
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
    /// Logical sector size of a disk-image file source (512 or 4096); disks report theirs.
    #[arg(long, default_value_t = DEFAULT_FILE_SECTOR_SIZE, value_parser = parse_sector_size)]
    pub sector_size: u32,
    /// Then boot the target in QEMU, through a throw-away overlay, and report how far it
    /// got, as `lifeboat boot-test` does (exit 1 when it does not boot). Needs QEMU: not in
    /// the rescue system.
    #[arg(long)]
    pub boot_test: bool,
    /// The boot test's options.
    #[command(flatten, next_help_heading = "Boot test (with --boot-test)")]
    pub boot: BootTestOptions,
}

/// The arguments of `lifeboat merge`; becomes a [`crate::jobs::merge::MergeSpec`].
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The chain member whose state NEW holds.
    pub file: PathBuf,
    /// The new full image (refused if it exists).
    #[arg(short, long, value_name = "NEW")]
    pub output: PathBuf,
    /// Also look for ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// zstd level of NEW (default: FILE's).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: Option<i32>,
    /// Compression threads (0 = one per core).
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
    /// Print events as JSON lines (NDJSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `lifeboat get`; becomes a [`crate::jobs::copy_out::CopySpec`].
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The image file (any member of a chain).
    pub file: PathBuf,
    /// What to copy: a partition and an absolute path in it (p2:/home/ann/thesis.odt).
    #[arg(required = true, value_name = "PART:PATH")]
    pub paths: Vec<String>,
    /// The folder to copy into (must exist; nothing in it is overwritten).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Also look for the image's ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Print events as JSON lines (NDJSON) on stdout; the last one holds the summary.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `lifeboat ls`.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// The image file (any member of a chain).
    pub file: PathBuf,
    /// The folder to list: a partition and an absolute path in it (p2:/home). Without it,
    /// the partitions are listed.
    #[arg(value_name = "PART:PATH")]
    pub path: Option<String>,
    /// Also look for the image's ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--expect`: a regular expression, checked when the command line is read (exit 2).
fn parse_regex(s: &str) -> Result<String, String> {
    regex_lite::Regex::new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a regular expression: {e}"))
}

/// Which firmware `boot-test` starts the machine with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FirmwareChoice {
    /// As the disk says: BIOS for MBR boot code or a BIOS-boot partition, UEFI for an ESP
    /// with EFI/BOOT/BOOTX64.EFI, both in turn when both are there.
    Auto,
    /// SeaBIOS.
    Bios,
    /// OVMF, with a fresh copy of its variables (Secure Boot off).
    Uefi,
    /// BIOS, then UEFI.
    Both,
}

/// The options `boot-test`, `restore --boot-test` and `clone --boot-test` share.
#[derive(Debug, Clone, clap::Args)]
pub struct BootTestOptions {
    /// Firmware: auto, bios, uefi or both.
    #[arg(long, value_enum, default_value = "auto")]
    pub firmware: FirmwareChoice,
    /// The disk controller: ahci (SATA; Windows has no virtio driver), virtio or nvme.
    #[arg(long, value_enum, default_value = "ahci")]
    pub bus: crate::boottest::qemu::Bus,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory: u64,
    /// Guest CPUs.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cpus: u32,
    /// kvm, tcg, or auto: KVM when /dev/kvm opens (LIFEBOAT_QEMU_ACCEL=tcg|kvm decides
    /// instead). Some hosts (nested virtualisation) have a KVM that starts but cannot run a
    /// 64-bit kernel: use tcg there.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: crate::boottest::qemu::Accel,
    /// Give the guest isolated user-mode networking (it reaches neither the host nor the
    /// outside); its DHCP request then counts as "up".
    #[arg(long)]
    pub net: bool,
    /// Stage 4 only when the serial console matches REGEX (instead of a login prompt, the
    /// screen or DHCP).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub expect: Option<String>,
    /// Seconds each firmware's boot may take (the default suits QEMU without KVM).
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,
    /// Seconds of still screen and idle disk that count as settled.
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    pub settle: u64,
    /// Where screenshots, logs and report.json go: a new or empty folder (default:
    /// ./boot-test-NAME-TIME).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The arguments of `lifeboat boot-test`.
#[derive(Debug, clap::Args)]
pub struct BootTestArgs {
    /// The image (any chain member), disk-image file or block device.
    pub source: PathBuf,
    /// The test's options.
    #[command(flatten)]
    pub test: BootTestOptions,
    /// Also look for an image's ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// MiB of decoded image chunks kept in memory.
    #[arg(long, value_name = "N", default_value_t = crate::access::DEFAULT_CACHE_BYTES >> 20)]
    pub cache_mib: u64,
    /// Print the report as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `lifeboat prune`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// The store: a folder, or s3://BUCKET/PREFIX.
    pub dir: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Print what would be deleted and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON. Requires --yes or --dry-run.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `lifeboat prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// The folder holding the chain.
    pub dir: PathBuf,
    /// An image that must stay restorable (repeatable, at least one).
    #[arg(long, value_name = "FILE", required = true)]
    pub keep: Vec<PathBuf>,
    /// Also look for ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Print what would be deleted and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan (and the result) as JSON. Requires --yes or --dry-run.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `lifeboat serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The image file (any chain member).
    pub file: PathBuf,
    /// Where to listen: unix:PATH or tcp:ADDR:PORT.
    #[arg(long, value_name = "ADDR")]
    pub nbd: crate::access::nbd::Listen,
    /// Take writes into FILE, a new sparse file (refused if it exists; deleted at the end).
    #[arg(long, value_name = "FILE")]
    pub overlay: Option<PathBuf>,
    /// MiB of decoded chunks kept in memory.
    #[arg(long, value_name = "N", default_value_t = crate::access::DEFAULT_CACHE_BYTES >> 20)]
    pub cache_mib: u64,
    /// The export's name (default: the image file's name without its extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Also look for ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Print where it listens as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `lifeboat export`; becomes a [`crate::jobs::export::ExportPlan`].
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The image file (any chain member).
    pub file: PathBuf,
    /// The file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// raw, qcow2, vhdx or vmdk (default: from FILE's extension).
    #[arg(long, value_parser = ["raw", "qcow2", "vhdx", "vmdk"])]
    pub format: Option<String>,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Also look for ancestors in DIR (repeatable).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Decompression threads for raw (0 = one per core).
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    pub threads: usize,
    /// MiB of decoded chunks kept in memory (qcow2, vhdx, vmdk).
    #[arg(long, value_name = "N", default_value_t = crate::access::DEFAULT_CACHE_BYTES >> 20)]
    pub cache_mib: u64,
    /// Print events as JSON lines (NDJSON) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A size in bytes: a number with an optional K, M, G or T suffix (powers of 1024; a
/// trailing `iB` or `B` is accepted).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{s:?} is not a size (examples: 4000M, 2G, 1048576)"))
}

fn parse_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.05..=86_400.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0.05 and 86400"
        )),
    }
}

fn parse_sector_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n @ (512 | 1024 | 2048 | 4096)) => Ok(n),
        _ => Err(format!(
            "{s} is not a sector size (512, 1024, 2048 or 4096)"
        )),
    }
}
