//! Who is using a disk: mounts, swap, holders (device-mapper, md RAID, bcache…) and the boot
//! medium. Fills the `mountpoints`, `swap` and `is_boot` fields that `sysfs` leaves empty, and
//! words [`DiskInfo::is_busy`].
//!
//! Matching rules:
//! - A mount belongs to the disk or partition whose `major:minor` equals the mountinfo device
//!   number. When that number is anonymous (major 0: btrfs, or no match), the mount source is
//!   resolved as a `/dev` path instead (see `resolve`).
//! - A swap line belongs to the device its path names: the path is looked up under `paths.dev`
//!   (following `/dev/disk/by-*` and `/dev/mapper/*` symlinks when they exist), then matched by
//!   name, with `mapper/<name>` also matched through `<sys>/block/dm-N/dm/name`.
//! - **Boot medium** (`is_boot`): the device under the topmost mount of `/`. When `/` is not on a
//!   block device (initramfs rootfs, tmpfs, overlay), the device mounted at
//!   `/run/lifeboat/boot`; failing that, every device mounted as `iso9660`. Then, through
//!   `holders/`, every disk or partition beneath that device counts too (a root on `dm-0` held by
//!   `sda2` makes `sda` the boot disk; the chain is followed through any depth of dm/md).

use super::mountinfo::{MountEntry, SwapEntry};
use super::{DiskInfo, PartInfo, SystemPaths};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Mount point the init system uses for the boot medium when `/` is not a block device.
pub const LIFEBOAT_BOOT_MOUNT: &str = "/run/lifeboat/boot";

/// Where a block device sits in the disk list: disk index and optional partition index.
type Loc = (usize, Option<usize>);

/// Looks up disks and partitions by name and by device number.
pub(super) struct Index<'a> {
    paths: &'a SystemPaths,
    aliases: &'a HashMap<String, String>,
    by_name: HashMap<String, Loc>,
    by_devnum: HashMap<(u32, u32), Loc>,
}

impl<'a> Index<'a> {
    /// Indexes `disks`; `aliases` maps extra `/dev`-relative names (`mapper/x`) to block names.
    pub(super) fn new(
        paths: &'a SystemPaths,
        aliases: &'a HashMap<String, String>,
        disks: &[DiskInfo],
    ) -> Self {
        let mut by_name = HashMap::new();
        let mut by_devnum = HashMap::new();
        for (di, disk) in disks.iter().enumerate() {
            by_name.insert(disk.name.clone(), (di, None));
            if disk.major != 0 {
                by_devnum.insert((disk.major, disk.minor), (di, None));
            }
            for (pi, part) in disk.partitions.iter().enumerate() {
                by_name.insert(part.name.clone(), (di, Some(pi)));
                if part.major != 0 {
                    by_devnum.insert((part.major, part.minor), (di, Some(pi)));
                }
            }
        }
        Index {
            paths,
            aliases,
            by_name,
            by_devnum,
        }
    }

    /// The block device a mountinfo entry is on, if it is one of ours.
    fn mount(&self, m: &MountEntry) -> Option<Loc> {
        let by_num = (m.major != 0)
            .then(|| self.by_devnum.get(&(m.major, m.minor)).copied())
            .flatten();
        by_num.or_else(|| self.source(&m.source))
    }

    /// The block device an absolute `/dev/...` path from mountinfo or /proc/swaps names.
    fn source(&self, source: &str) -> Option<Loc> {
        let rel = Path::new(source).strip_prefix("/dev").ok()?;
        self.resolve(rel)
    }

    /// The block device that `rel`, a path relative to `/dev`, names. Tried in order: the
    /// target of `<paths.dev>/<rel>` after following symlinks, a `mapper/` alias, `rel` with `/`
    /// as sysfs's `!`, and `rel`'s last component.
    pub(super) fn resolve(&self, rel: &Path) -> Option<Loc> {
        let rel_str = rel.to_str()?;
        let canonical = fs::canonicalize(self.paths.dev.join(rel))
            .ok()
            .and_then(|p| p.file_name()?.to_str().map(str::to_owned));
        let candidates = [
            canonical,
            self.aliases.get(rel_str).cloned(),
            Some(rel_str.replace('/', "!")),
            rel.file_name().and_then(|n| n.to_str()).map(str::to_owned),
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|name| self.by_name.get(&name).copied())
    }
}

/// Fills `mountpoints`, `swap` and `is_boot` on `disks` from parsed mountinfo and swaps.
pub(super) fn annotate(
    disks: &mut [DiskInfo],
    index: &Index<'_>,
    mounts: &[MountEntry],
    swaps: &[SwapEntry],
) {
    for m in mounts {
        if let Some(loc) = index.mount(m) {
            let points = &mut target(disks, loc).0;
            if !points.contains(&m.mount_point) {
                points.push(m.mount_point.clone());
            }
        }
    }
    for s in swaps {
        if let Some(loc) = s.path.to_str().and_then(|p| index.source(p)) {
            *target(disks, loc).1 = true;
        }
    }
    let boot = boot_devices(index, mounts);
    let names: Vec<String> = boot.iter().map(|&loc| name_of(disks, loc)).collect();
    let beneath = beneath(disks, names);
    for disk in disks.iter_mut() {
        disk.is_boot = beneath.contains(&disk.name)
            || disk.partitions.iter().any(|p| beneath.contains(&p.name));
    }
}

/// The mount-point list and swap flag of the disk or partition at `loc`.
fn target(disks: &mut [DiskInfo], loc: Loc) -> (&mut Vec<PathBuf>, &mut bool) {
    let disk = &mut disks[loc.0];
    match loc.1 {
        Some(pi) => {
            let part: &mut PartInfo = &mut disk.partitions[pi];
            (&mut part.mountpoints, &mut part.swap)
        }
        None => (&mut disk.mountpoints, &mut disk.swap),
    }
}

/// The block name at `loc`.
fn name_of(disks: &[DiskInfo], loc: Loc) -> String {
    let disk = &disks[loc.0];
    match loc.1 {
        Some(pi) => disk.partitions[pi].name.clone(),
        None => disk.name.clone(),
    }
}

/// The devices the running system booted from, by the rule in the module docs.
fn boot_devices(index: &Index<'_>, mounts: &[MountEntry]) -> Vec<Loc> {
    let topmost = |point: &str| {
        mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == Path::new(point))
    };
    if let Some(loc) = topmost("/").and_then(|m| index.mount(m)) {
        return vec![loc];
    }
    if let Some(loc) = topmost(LIFEBOAT_BOOT_MOUNT).and_then(|m| index.mount(m)) {
        return vec![loc];
    }
    mounts
        .iter()
        .filter(|m| m.fs_type == "iso9660")
        .filter_map(|m| index.mount(m))
        .collect()
}

/// `top` plus every disk or partition that holds one of them, directly or through a chain of
/// holders (the `slaves` direction, computed from `holders/`).
fn beneath(disks: &[DiskInfo], top: Vec<String>) -> HashSet<String> {
    let all: Vec<(&str, &[String])> = disks
        .iter()
        .flat_map(|d| {
            std::iter::once((d.name.as_str(), d.holders.as_slice())).chain(
                d.partitions
                    .iter()
                    .map(|p| (p.name.as_str(), p.holders.as_slice())),
            )
        })
        .collect();
    let mut found: HashSet<String> = top.iter().cloned().collect();
    let mut queue = top;
    while let Some(name) = queue.pop() {
        for (lower, holders) in &all {
            if holders.contains(&name) && found.insert((*lower).to_owned()) {
                queue.push((*lower).to_owned());
            }
        }
    }
    found
}

/// Appends why block device `name` is in use to `out`.
fn describe(
    name: &str,
    mountpoints: &[PathBuf],
    swap: bool,
    holders: &[String],
    out: &mut Vec<String>,
) {
    if !mountpoints.is_empty() {
        let list: Vec<String> = mountpoints
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        out.push(format!("{name} is mounted at {}", list.join(", ")));
    }
    if swap {
        out.push(format!("{name} is in use as swap"));
    }
    if !holders.is_empty() {
        out.push(format!("{name} is held by {}", holders.join(", ")));
    }
}

impl PartInfo {
    /// Why this partition must not be written (mounted, swap, held), or `None`.
    pub fn is_busy(&self) -> Option<String> {
        let mut reasons = Vec::new();
        describe(
            &self.name,
            &self.mountpoints,
            self.swap,
            &self.holders,
            &mut reasons,
        );
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

impl DiskInfo {
    /// Why this disk must not be written, or `None` when nothing uses it. Reasons name the disk
    /// or partition and the mount point, swap or holder, joined with `"; "`, e.g.
    /// `"sda holds the running system; sda1 is mounted at /boot; sda2 is held by dm-0"`.
    /// Reflects the state at [`scan`](super::scan) time only.
    pub fn is_busy(&self) -> Option<String> {
        let mut reasons = Vec::new();
        if self.is_boot {
            reasons.push(format!("{} holds the running system", self.name));
        }
        describe(
            &self.name,
            &self.mountpoints,
            self.swap,
            &self.holders,
            &mut reasons,
        );
        for p in &self.partitions {
            describe(&p.name, &p.mountpoints, p.swap, &p.holders, &mut reasons);
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}
