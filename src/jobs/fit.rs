//! `--fit` for `restore` and `clone`: a layout that does not fit the target is made to fit by
//! shrinking filesystems and moving the partitions after them left
//! ([`crate::partition::fit`] decides where everything goes).
//!
//! Nothing is ever written to the source disk or the image:
//! - each partition that shrinks is a copy-on-write [`Overlay`] of the source's partition;
//!   its filesystem is shrunk there ([`crate::resize::shrink`]), through a FUSE file for
//!   e2fsck, resize2fs and ntfsresize ([`DevFiles`]). The overlay keeps what they write in
//!   memory up to `--overlay-memory`, then in an unnamed file in `--scratch DIR`;
//! - the used blocks of each partition (read again from the overlay after a shrink) are
//!   copied to the partition's new place, hashed and read back like any clone;
//! - the partition table is rewritten ([`edit::apply_fit`]) and written last, after the data
//!   is verified, as always (STYLE §9).
//!
//! Order of a run: the target's table areas are wiped first (so a failure at any later point,
//! a SIGKILL included, leaves no table), then the shrink, then the data, then the tables.
//! The plan measures each filesystem's minimum with its own tool on a read-only view, so it
//! refuses a target that cannot work before anything is written.
//!
//! What moves and is referenced by position is updated: the "hidden sectors" field of a moved
//! FAT or NTFS boot sector (and its backup), and GRUB's pointer to core.img when a BIOS boot
//! partition moves. What cannot be updated is said in the plan's notes: Windows' BCD names
//! its partitions by byte offset on MBR disks.

use super::readback::write_and_read_back;
use super::target::{self, TargetPlan, Written};
use super::writer::DataWriter;
use crate::access::devfiles::DevFiles;
use crate::access::{Overlay, OverlayStore, Window};
use crate::blockdev::{read_vec, BlockDev};
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::fsmap::detect::{self, FsKind};
use crate::fsmap::{self, Used};
use crate::partition::edit;
use crate::partition::fit::{plan_fit, Action, FitInput, FitPart, NoFit, Placed};
use crate::partition::{PartitionTable, TableKind};
use crate::pipeline::{self, Shape};
use crate::resize::shrink;
use crate::units::{human_bytes, MIB};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default memory an overlay may hold before it needs `--scratch`: 1 GiB.
pub const DEFAULT_OVERLAY_MEMORY: u64 = 1 << 30;

/// Decoded frames an image source keeps for a fitted restore: the tools and the copy read
/// mostly in order, so a few frames per thread do.
pub const SOURCE_CACHE_BYTES: u64 = 64 << 20;

/// Largest piece read and written at once.
const PIECE: u64 = 4 * MIB;

/// What the user gave for `--fit`.
#[derive(Debug, Clone, Default)]
pub struct FitOptions {
    /// Where the overlays spill past their memory (`--scratch DIR`).
    pub scratch: Option<PathBuf>,
    /// Bytes the overlays may keep in memory together (`--overlay-memory`); `None`: the
    /// default ([`default_overlay_memory`]).
    pub overlay_memory: Option<u64>,
}

/// One partition of the fitted layout, as the plan shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FitPartPlan {
    /// Partition number.
    pub number: u32,
    /// The filesystem found on it.
    pub fs: Option<String>,
    /// Where it starts on the source.
    pub old_start: u64,
    /// Its size on the source.
    pub old_size: u64,
    /// Where it starts on the target.
    pub new_start: u64,
    /// Its size on the target.
    pub new_size: u64,
    /// Bytes its filesystem uses, when known.
    pub used: Option<u64>,
    /// The fewest bytes it may shrink to: its filesystem's minimum with a margin, or its
    /// size when it cannot shrink.
    pub min: u64,
    /// What happens to it.
    pub action: Action,
    /// Why it keeps its size, when it cannot shrink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(skip)]
    kind: Option<FsKind>,
    /// A BIOS boot partition (GRUB's core.img).
    #[serde(skip)]
    bios_boot: bool,
}

/// The fitted layout and what the shrink needs.
#[derive(Debug, Clone, Serialize)]
pub struct FitPlan {
    /// Every partition, in disk order.
    pub parts: Vec<FitPartPlan>,
    /// The smallest target this layout fits on.
    pub smallest_target: u64,
    /// About how many bytes the overlays will hold: what the shrinks relocate, and their
    /// metadata.
    pub scratch_bytes: u64,
    /// Where the overlays spill (`--scratch`), if anywhere.
    pub scratch: Option<PathBuf>,
    /// Bytes each overlay keeps in memory.
    pub overlay_memory: u64,
    /// What the user should know about booting the result.
    pub notes: Vec<String>,
}

impl FitPlan {
    /// The placed partitions, for the table edit.
    fn placed(&self) -> Vec<Placed> {
        self.parts
            .iter()
            .map(|p| Placed {
                number: p.number,
                old_start: p.old_start,
                old_size: p.old_size,
                new_start: p.new_start,
                new_size: p.new_size,
                min: p.min,
                action: p.action,
            })
            .collect()
    }

    /// About how many bytes the fit writes: what its filesystems use.
    pub fn write_bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| p.used.unwrap_or(p.new_size).min(p.new_size))
            .sum()
    }

    /// The first partition's new start and the last one's new end.
    pub fn span(&self) -> Option<(u64, u64)> {
        let first = self.parts.iter().map(|p| p.new_start).min()?;
        let end = self.parts.iter().map(|p| p.new_start + p.new_size).max()?;
        Some((first, end))
    }

    /// The lines a plan prints: one per partition, then the totals.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{:>4}  {:<6}  {:>10} {:>10}  ->  {:>10} {:>10}  {:>10} {:>10}  {}",
            "part", "fs", "start", "size", "start", "size", "used", "minimum", "action"
        )];
        for p in &self.parts {
            let action = match p.action {
                Action::Keep => "keep",
                Action::Move => "move",
                Action::Shrink => "shrink",
                Action::ShrinkMove => "shrink and move",
            };
            out.push(format!(
                "{:>4}  {:<6}  {:>10} {:>10}  ->  {:>10} {:>10}  {:>10} {:>10}  {}{}",
                p.number,
                p.fs.as_deref().unwrap_or("-"),
                human_bytes(p.old_start),
                human_bytes(p.old_size),
                human_bytes(p.new_start),
                human_bytes(p.new_size),
                p.used.map_or("-".into(), human_bytes),
                human_bytes(p.min),
                action,
                p.fixed
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            ));
        }
        out.push(format!(
            "smallest target: {} ({} bytes); the shrink writes about {} to its overlays ({} in memory{})",
            human_bytes(self.smallest_target),
            self.smallest_target,
            human_bytes(self.scratch_bytes),
            human_bytes(self.overlay_memory),
            self.scratch
                .as_ref()
                .map(|s| format!(", then {}", s.display()))
                .unwrap_or_else(|| ", no --scratch".into())
        ));
        out
    }
}

/// Why a partition is copied whole and never shrunk, from its type alone (the type names
/// the table reader gives).
fn whole_by_type(p: &crate::partition::Partition) -> Option<&'static str> {
    match p.type_name {
        Some("EFI System") => Some("the EFI system partition is copied whole"),
        Some("BIOS boot") => Some("the BIOS boot partition is copied whole"),
        _ => None,
    }
}

/// `--fit` keeps every ID; a new disk ID on a fitted layout is not done.
pub(crate) fn refuse_new_disk_id(new_disk_id: bool, target: &Path) -> Result<()> {
    if new_disk_id {
        return Err(Error::Unsupported(format!(
            "{}: --new-disk-id together with a fitted (shrunk) layout is not supported; run without --new-disk-id",
            target.display()
        )));
    }
    Ok(())
}

/// The minimum with its margin: a tenth more, at least 8 MiB more, rounded up to 1 MiB, and
/// never more than `size`.
fn with_margin(min: u64, size: u64) -> u64 {
    (min + (min / 10).max(8 * MIB))
        .next_multiple_of(MIB)
        .min(size)
}

/// Plans the fit of `table` (on `src`, the source disk or the image) onto a target of
/// `target_size` bytes. Reads only: each filesystem's minimum is measured on a read-only
/// view. Refuses with [`Error::TooSmall`] ("needs at least …") when nothing fits.
pub fn plan(
    src: Arc<dyn BlockDev>,
    table: &PartitionTable,
    target: &Path,
    target_size: u64,
    opts: &FitOptions,
) -> Result<FitPlan> {
    let ss = u64::from(table.sector_size);
    let mut parts: Vec<&crate::partition::Partition> =
        table.partitions.iter().filter(|p| !p.extended).collect();
    parts.sort_by_key(|p| p.start_bytes);
    // the EBR distance of each logical partition
    let mut room = std::collections::HashMap::new();
    if let Some(x) = table.partitions.iter().find(|p| p.extended) {
        for e in edit::ebr_chain(&*src, ss, x.first_lba)? {
            room.insert(e.data_lba * ss, (e.data_lba - e.lba) * ss);
        }
    }
    // what each one is, and which need a file to measure
    let mut rows = Vec::with_capacity(parts.len());
    let mut files: Vec<(String, Arc<dyn BlockDev>)> = Vec::new();
    for p in &parts {
        let win: Arc<dyn BlockDev> =
            Arc::new(Window::new(src.clone(), p.start_bytes, p.size_bytes));
        let info = detect::detect(&*win)?;
        let kind = info.as_ref().map(|i| i.kind);
        let map = fsmap::map_filesystem(&*win)?;
        let used = map
            .used_bytes()
            .or(info.as_ref().and_then(|i| i.used_bytes));
        let fixed = whole_by_type(p).map(String::from).or_else(|| match kind {
            None => Some("no known filesystem on it".into()),
            Some(k) if !shrink::can_shrink(k) => {
                Some(format!("{} filesystems cannot be shrunk", k.blkid_name()))
            }
            Some(_) => None,
        });
        if fixed.is_none() && kind.is_some_and(shrink::needs_file) {
            files.push((format!("p{}", p.number), win.clone()));
        }
        let past = match &map.used {
            Used::Ranges { ranges } => ranges.clone(),
            Used::All { .. } => vec![(0, p.size_bytes)],
        };
        rows.push((p, kind, used, fixed, win, past));
    }
    let session = if files.is_empty() {
        None
    } else {
        Some(DevFiles::open("fit-plan", files, false)?)
    };
    let mut fit_parts = Vec::with_capacity(rows.len());
    for (p, kind, _, fixed, win, _) in rows.iter_mut() {
        let mut min = p.size_bytes;
        if let (None, Some(k)) = (fixed.as_ref(), *kind) {
            let file = session.as_ref().map(|s| s.path(&format!("p{}", p.number)));
            let file = file.as_deref().filter(|_| shrink::needs_file(k));
            match shrink::min_bytes(k, &**win, file) {
                Ok(m) => min = with_margin(m, p.size_bytes).next_multiple_of(ss),
                Err(e) => *fixed = Some(format!("it cannot be shrunk: {e}")),
            }
            min = min.min(p.size_bytes);
        }
        fit_parts.push(FitPart {
            number: p.number,
            start: p.start_bytes,
            size: p.size_bytes,
            min,
            room_before: room.get(&p.start_bytes).copied().unwrap_or(0),
        });
    }
    drop(session);
    let first_start = fit_parts
        .iter()
        .map(|p| p.start - p.room_before)
        .min()
        .unwrap_or(MIB);
    let (first_usable, end, tail) = match (&table.kind, &table.gpt) {
        (TableKind::Gpt, Some(g)) => {
            let entry_sectors = (u64::from(g.entry_count) * u64::from(g.entry_size)).div_ceil(ss);
            let n = target_size / ss;
            let last_usable = n.saturating_sub(2 + entry_sectors);
            (
                g.first_usable_lba * ss,
                (last_usable + 1) * ss,
                (entry_sectors + 1) * ss,
            )
        }
        _ => (
            first_start.min(MIB),
            (target_size / ss).min(u64::from(u32::MAX)) * ss,
            0,
        ),
    };
    let align = MIB.max(ss);
    let input = FitInput {
        parts: fit_parts,
        first_usable,
        end,
        align,
        sector: ss,
    };
    let layout = plan_fit(&input).map(|tight| share_slack(&input, tight));
    let layout = match layout {
        Ok(l) => l,
        Err(NoFit::TooSmall {
            smallest_end,
            blocker,
        }) => {
            let need = smallest_end + tail;
            let fixed: Vec<String> = rows
                .iter()
                .filter_map(|(p, _, _, f, _, _)| {
                    f.as_ref()
                        .map(|f| format!("partition {} keeps its size: {f}", p.number))
                })
                .collect();
            return Err(Error::TooSmall {
                path: target.to_path_buf(),
                need,
                have: target_size,
                why: format!(
                    "even with every filesystem shrunk to its minimum the layout needs at least {} ({need} bytes), {} more; partition {blocker} is the one that does not fit{}",
                    human_bytes(need),
                    human_bytes(need - target_size.min(need)),
                    if fixed.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", fixed.join("; "))
                    }
                ),
            });
        }
        Err(NoFit::Invalid(why)) => {
            return Err(Error::Refused {
                path: src.path().to_path_buf(),
                reason: format!("its partitions cannot be fitted: {why}"),
            })
        }
    };
    let mut out = Vec::with_capacity(layout.parts.len());
    let mut scratch_bytes = 0;
    for placed in &layout.parts {
        let (p, kind, used, fixed, _, ranges) = rows
            .iter()
            .find(|r| r.0.number == placed.number)
            .expect("every placed partition was planned");
        if placed.new_size < placed.old_size {
            // what lies past the new end moves, and the tools write their metadata
            let past: u64 = ranges
                .iter()
                .map(|&(s, l)| (s + l).saturating_sub(s.max(placed.new_size)))
                .sum();
            scratch_bytes += past + 32 * MIB;
        }
        out.push(FitPartPlan {
            number: p.number,
            fs: kind.map(|k| k.blkid_name().to_string()),
            old_start: placed.old_start,
            old_size: placed.old_size,
            new_start: placed.new_start,
            new_size: placed.new_size,
            used: *used,
            min: placed.min,
            action: placed.action,
            fixed: fixed.clone(),
            kind: *kind,
            bios_boot: p.type_name == Some("BIOS boot"),
        });
    }
    let mut notes = Vec::new();
    for p in &out {
        let moved = p.new_start != p.old_start;
        if moved && table.kind == TableKind::Mbr && p.kind == Some(FsKind::Ntfs) {
            notes.push(format!(
                "partition {} (NTFS) moves: on an MBR disk Windows' boot configuration (BCD) names partitions by byte offset, so a Windows installed there does not boot until its BCD is rebuilt (bcdboot from Windows' recovery console)",
                p.number
            ));
        }
        if moved && p.bios_boot {
            notes.push(format!(
                "the BIOS boot partition {} moves: GRUB's pointer to it in the first sector is updated when the boot code is GRUB's; other BIOS boot code will not find it",
                p.number
            ));
        }
    }
    let overlay_memory = opts.overlay_memory.unwrap_or_else(default_overlay_memory);
    let plan = FitPlan {
        parts: out,
        smallest_target: layout.smallest_end + tail,
        scratch_bytes,
        scratch: opts.scratch.clone(),
        overlay_memory,
        notes,
    };
    // the table edit, tried now on the source's bytes: what it refuses is refused before the
    // user confirms anything
    let he = head_end(&plan, table, ss, src.len())?;
    let mut head = vec![(0u64, read_vec(&*src, 0, he as usize)?)];
    edit::apply_fit(table, &*src, &plan.placed(), target_size, &mut head)?;
    Ok(plan)
}

/// The overlays' memory when `--overlay-memory` is not given: 1 GiB, or half the memory
/// available now when that is less (a rescue system may have little).
pub fn default_overlay_memory() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib * 1024);
    DEFAULT_OVERLAY_MEMORY.min(available / 2)
}

/// The planner keeps every partition's size where the ones after it allow, so the last ones
/// to shrink take all of it. This shares the free room instead: every partition that shrinks
/// keeps the same share of what it could give up (`size - min`), as far as alignment allows.
/// Falls back to `tight` when the shared plan does not fit.
fn share_slack(
    input: &FitInput,
    tight: crate::partition::fit::FitLayout,
) -> crate::partition::fit::FitLayout {
    let slack = input.end.saturating_sub(tight.smallest_end);
    let range: u64 = input.parts.iter().map(|p| p.size - p.min).sum();
    if range == 0 || slack >= range {
        return tight;
    }
    let mut shared = input.clone();
    for p in shared.parts.iter_mut() {
        let give = u128::from(p.size - p.min) * u128::from(slack) / u128::from(range);
        let want = p.min + give as u64;
        p.min = (want / input.align * input.align).max(p.min).min(p.size);
    }
    match plan_fit(&shared) {
        Ok(mut l) => {
            for (placed, orig) in l.parts.iter_mut().zip(tight.parts.iter()) {
                placed.min = orig.min;
            }
            l.smallest_end = tight.smallest_end;
            l
        }
        Err(_) => tight,
    }
}

/// Where the head ends: the bytes before every partition, old place or new (at most 1 MiB,
/// at least the MBR), which are copied from the source with the tables patched in and
/// written last. It must never reach into a partition, or the source's old bytes would land
/// over what the shrink wrote there. A GPT whose entries reach into a partition is refused.
fn head_end(fit: &FitPlan, table: &PartitionTable, ss: u64, len: u64) -> Result<u64> {
    let first = fit
        .parts
        .iter()
        .map(|p| p.old_start.min(p.new_start))
        .min()
        .unwrap_or(MIB);
    if let Some(g) = &table.gpt {
        let entries_end = g.first_usable_lba * ss;
        if first < entries_end {
            return Err(Error::Refused {
                path: PathBuf::from("the partition table"),
                reason: format!(
                    "a partition starts at byte {first}, inside the GPT (its first usable byte is {entries_end})"
                ),
            });
        }
    }
    Ok(first.min(MIB).max(ss).min(len))
}

/// A piece to copy: the partition's index, the offset in it, the length.
type Piece = (usize, u64, u64);

/// Bytes that replace what a copied piece holds at a target offset (a patched boot sector).
type Patches = Vec<(u64, Vec<u8>)>;

/// A partition's place on the target and where its bytes come from.
struct Source {
    dev: Arc<dyn BlockDev>,
    new_start: u64,
}

/// Runs the fit: wipes the target's tables, shrinks on overlays, copies every partition's
/// used blocks to its new place, then writes the rewritten tables; see the module doc.
/// `src` is the source disk or the image (only read); `dev` the target, `direct` its
/// `O_DIRECT` handle.
#[allow(clippy::too_many_arguments)]
pub fn run(
    fit: &FitPlan,
    src: Arc<dyn BlockDev>,
    table: &PartitionTable,
    target_plan: &TargetPlan,
    dev: &dyn BlockDev,
    direct: Option<&dyn BlockDev>,
    fresh: bool,
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<Written> {
    let ss = u64::from(table.sector_size);
    let placed = fit.placed();
    // the head: everything before the first partition (or its EBR), at most 1 MiB
    let head_end = head_end(fit, table, ss, src.len())?;
    let mut head = vec![(0u64, read_vec(&*src, 0, head_end as usize)?)];
    let extra = edit::apply_fit(table, &*src, &placed, target_plan.size, &mut head)?;
    let mut tables: Vec<(u64, Vec<u8>)> = Vec::new();
    for (o, b) in extra {
        if o < head_end {
            edit::overlay(&mut head[0].1, 0, &[(o, b)]);
        } else {
            tables.push((o, b));
        }
    }

    // GRUB's BIOS pointers to core.img, when the BIOS boot partition holding it moves
    let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
    if let Some(b) = fit
        .parts
        .iter()
        .find(|p| p.bios_boot && p.new_start != p.old_start)
    {
        let sector0 = &mut head[0].1[..512];
        let g = crate::partition::grub::GRUB_SECTOR as u64;
        let done = match crate::partition::grub::core_lba(sector0) {
            Some(core) if ss == g => {
                let (from, to) = (b.old_start / g, b.new_start / g);
                let inside = core >= from && core < from + b.old_size / g;
                match core.checked_mul(g).filter(|_| inside) {
                    None => Err(format!(
                        "boot.img points at LBA {core}, outside the BIOS boot partition"
                    )),
                    Some(at) => read_vec(&*src, at, g as usize)
                        .map_err(|e| e.to_string())
                        .and_then(|mut diskboot| {
                            crate::partition::grub::relocate(
                                sector0,
                                &mut diskboot,
                                from,
                                to,
                                b.old_size / g,
                            )
                            .map(|()| patches.push(((to + core - from) * g, diskboot)))
                            .map_err(|e| e.to_string())
                        }),
                }
            }
            Some(_) => Err("the disk's sectors are not 512 bytes".into()),
            None => Err("sector 0 does not hold GRUB's boot.img".into()),
        };
        if let Err(why) = done {
            reporter.warn(format!(
                "the BIOS boot partition {} moves but GRUB's pointers to it were not updated ({why}); the copy will not boot under BIOS until grub-install is run on it",
                b.number
            ));
        }
    }

    // 1. no table on the target from here until the end
    if !fresh {
        target::wipe_tables(dev, ss, fit.span())?;
    }
    cancel.check()?;

    // 2. the shrinks, each on its own overlay, sharing the memory the plan allows
    let shrinking = fit.parts.iter().filter(|p| p.new_size < p.old_size).count();
    let share = fit.overlay_memory / shrinking.max(1) as u64;
    let store = |_: u32| match &fit.scratch {
        Some(dir) => OverlayStore::Spill {
            memory: share,
            dir: dir.clone(),
        },
        None => OverlayStore::Memory { limit: share },
    };
    let mut sources = Vec::with_capacity(fit.parts.len());
    let mut overlays: Vec<(usize, Arc<Overlay>)> = Vec::new();
    for (i, p) in fit.parts.iter().enumerate() {
        let win: Arc<dyn BlockDev> = Arc::new(Window::new(src.clone(), p.old_start, p.old_size));
        let dev: Arc<dyn BlockDev> = if p.new_size < p.old_size {
            let ov = Arc::new(Overlay::new(win, store(p.number))?);
            overlays.push((i, ov.clone()));
            ov
        } else {
            win
        };
        sources.push(Source {
            dev,
            new_start: p.new_start,
        });
    }
    let files: Vec<(String, Arc<dyn BlockDev>)> = overlays
        .iter()
        .filter(|(i, _)| fit.parts[*i].kind.is_some_and(shrink::needs_file))
        .map(|(i, ov)| {
            (
                format!("p{}", fit.parts[*i].number),
                ov.clone() as Arc<dyn BlockDev>,
            )
        })
        .collect();
    let session = if files.is_empty() {
        None
    } else {
        Some(DevFiles::open("fit", files, true)?)
    };
    if !overlays.is_empty() {
        reporter.phase(Phase::Shrink, Some(overlays.len() as u64));
    }
    // one shrink, on the calling thread: the tool, then its file flushed (the kernel caches
    // the tools' writes), so that the overlay holds everything before it is read directly
    let shrink_one = |i: usize, ov: &Arc<Overlay>| -> Result<()> {
        cancel.check()?;
        let p = &fit.parts[i];
        let kind = p.kind.ok_or_else(|| {
            Error::Unsupported(format!(
                "partition {} has no filesystem to shrink",
                p.number
            ))
        })?;
        let name = format!("p{}", p.number);
        let file = session.as_ref().map(|s| s.path(&name)).unwrap_or_default();
        let r = shrink::shrink(kind, &**ov, &file, p.new_size).and_then(|_| match &session {
            Some(s) if shrink::needs_file(kind) => s.flush(std::slice::from_ref(&name)),
            _ => Ok(()),
        });
        r.map_err(|e| {
            let mine = format!(" of {name} bytes ");
            let failures: Vec<String> = session
                .as_ref()
                .map(DevFiles::failures)
                .unwrap_or_default()
                .into_iter()
                .filter(|m| m.contains(&mine))
                .collect();
            match failures.first() {
                // the tool saw a read error or a full overlay: that is the cause
                Some(f) => {
                    let full = failures.iter().any(|m| m.contains("No space left"));
                    let hint = match (&fit.scratch, full) {
                        (_, false) => String::new(),
                        (Some(dir), true) => format!(
                            "; the scratch folder {} is full: give one with more free space",
                            dir.display()
                        ),
                        (None, true) => format!(
                            "; the overlays keep at most {} in memory together: give --scratch DIR on another disk, or a larger --overlay-memory",
                            human_bytes(fit.overlay_memory)
                        ),
                    };
                    Error::Tool {
                        tool: format!("shrinking partition {}", p.number),
                        path: src.path().to_path_buf(),
                        detail: format!("{f}{hint} (then: {e})"),
                    }
                }
                None => e,
            }
        })
    };
    // a partition's pieces and boot-sector patches, once its bytes are final
    let prepare = |i: usize| -> Result<(Vec<Piece>, Patches)> {
        let (p, s) = (&fit.parts[i], &sources[i]);
        let view = crate::blockdev::Slice::new(&*s.dev, 0, p.new_size);
        let mut pieces = Vec::new();
        for (start, len) in used_after(&view, p)? {
            let mut off = start;
            while off < start + len {
                let n = PIECE.min(start + len - off);
                pieces.push((i, off, n));
                off += n;
            }
        }
        let mut own = Vec::new();
        if p.new_start != p.old_start {
            hidden_sectors(&view, p, ss, &mut own)?;
        }
        Ok((pieces, own))
    };

    // 3. every partition's used blocks, at their new place: those that keep their size at
    //    once, each shrunk one as soon as its shrink is done (the others still shrinking)
    let parts_patches: Vec<std::sync::OnceLock<Patches>> = fit
        .parts
        .iter()
        .map(|_| std::sync::OnceLock::new())
        .collect();
    let mut queue: std::collections::VecDeque<Piece> = Default::default();
    for (i, slot) in parts_patches.iter().enumerate() {
        if overlays.iter().any(|(k, _)| *k == i) {
            continue;
        }
        let (pieces, own) = prepare(i)?;
        let _ = slot.set(own);
        queue.extend(pieces);
    }
    let tables: Vec<(u64, Vec<u8>)> = tables.into_iter().chain(head).collect();
    let writer = DataWriter::new(dev, direct);
    let workers = target::io_workers(threads);
    let mut written: Vec<(u64, u64, [u8; 32])> = Vec::new();
    let mut done = 0u64;
    let mut writing = false;
    let mut pending = overlays.len();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<()>)>();
    std::thread::scope(|scope| {
        for (i, ov) in &overlays {
            let (tx, shrink_one) = (tx.clone(), &shrink_one);
            scope.spawn(move || {
                let _ = tx.send((*i, shrink_one(*i, ov)));
            });
        }
        drop(tx);
        // the producer runs on its own thread and borrows it
        let rx = std::sync::Mutex::new(rx);
        write_and_read_back(
            dev,
            target_plan,
            threads,
            &tables,
            reporter,
            cancel,
            |overlap| {
                pipeline::run(
                    Shape::for_threads(workers),
                    cancel,
                    |buf: Vec<u8>| loop {
                        if let Some((i, off, len)) = queue.pop_front() {
                            if !writing {
                                writing = true;
                                reporter.phase(Phase::Write, Some(fit.write_bytes()));
                            }
                            return Ok(Some((i, off, len, buf)));
                        }
                        if pending == 0 {
                            return Ok(None);
                        }
                        let next = rx
                            .lock()
                            .map_err(|_| Error::Unsupported("shrink results poisoned".into()))?
                            .recv();
                        let (i, r) = next.map_err(|_| {
                            Error::Unsupported("a shrink ended without a result".into())
                        })?;
                        pending -= 1;
                        r?;
                        let (pieces, own) = prepare(i)?;
                        let _ = parts_patches[i].set(own);
                        queue.extend(pieces);
                    },
                    |(i, off, len, mut buf): (usize, u64, u64, Vec<u8>)| {
                        let s = &sources[i];
                        let slice = crate::blockdev::aligned(&mut buf, len as usize);
                        let skip = slice.as_ptr() as usize - buf.as_ptr() as usize;
                        let piece = &mut buf[skip..skip + len as usize];
                        s.dev.read_at(piece, off)?;
                        let at = s.new_start + off;
                        edit::overlay(piece, at, &patches);
                        if let Some(own) = parts_patches[i].get() {
                            edit::overlay(piece, at, own);
                        }
                        let hash = *blake3::hash(piece).as_bytes();
                        let mut rest = Vec::new();
                        writer.write_units(at, &buf, skip, len as usize, &mut rest)?;
                        Ok((at, len, hash, rest, buf))
                    },
                    |(at, len, hash, rest, buf)| {
                        for (o, a, l) in rest {
                            writer.write_rest(o, &buf[a..a + l])?;
                        }
                        written.push((at, len, hash));
                        if let Some(o) = overlap.as_mut() {
                            o.add((at, len, hash))?;
                        }
                        done += len;
                        reporter.progress(Phase::Write, done);
                        Ok(buf)
                    },
                )
                .and_then(|()| writer.finish())?;
                Ok((std::mem::take(&mut written), done))
            },
        )
    })
}

/// The used ranges of partition `p` as `view` (its new bytes) holds them: from the
/// filesystem's map, or everything when there is none. A shrunk NTFS is marked for a
/// consistency check by ntfsresize, which the general map takes as "copy everything": its
/// map is read as it is.
fn used_after(view: &dyn BlockDev, p: &FitPartPlan) -> Result<Vec<(u64, u64)>> {
    let all = vec![(0, p.new_size)];
    if p.kind == Some(FsKind::Ntfs) && p.new_size < p.old_size {
        return Ok(match fsmap::ntfs::used_map(view)? {
            Ok(m) => m.ranges,
            Err(_) => all,
        });
    }
    Ok(match fsmap::map_filesystem(view)?.used {
        Used::Ranges { ranges } => ranges,
        Used::All { .. } => all,
    })
}

/// The boot sector's "hidden sectors" (the partition's first LBA, at 0x1C) of a moved FAT or
/// NTFS partition, and of its backup boot sector, as patches at their target offsets.
fn hidden_sectors(
    view: &dyn BlockDev,
    p: &FitPartPlan,
    ss: u64,
    patches: &mut Vec<(u64, Vec<u8>)>,
) -> Result<()> {
    let Some(kind) = p.kind else { return Ok(()) };
    let Ok(lba) = u32::try_from(p.new_start / ss) else {
        return Ok(());
    };
    let mut at = vec![0u64];
    let boot = read_vec(view, 0, 512)?;
    let bps = u64::from(crate::units::le_u16(&boot, 11)).max(512);
    match kind {
        FsKind::Fat32 => {
            let bk = u64::from(crate::units::le_u16(&boot, 50));
            if bk != 0 && bk != 0xFFFF {
                at.push(bk * bps);
            }
        }
        FsKind::Ntfs => {
            // after the last cluster (where ntfs-3g looks) and in the partition's last
            // sector (where ntfsresize writes it, and Windows and ntfsfix look)
            if let Some(size) = crate::resize::fs_size(view, kind)? {
                if size + bps <= p.new_size {
                    at.push(size);
                }
            }
            let last = p.new_size - bps;
            if !at.contains(&last) {
                at.push(last);
            }
        }
        FsKind::Fat12 | FsKind::Fat16 => {}
        _ => return Ok(()),
    }
    for off in at {
        let mut s = read_vec(view, off, 512)?;
        if s[510..512] != [0x55, 0xAA] {
            continue;
        }
        s[0x1C..0x20].copy_from_slice(&lba.to_le_bytes());
        patches.push((p.new_start + off, s));
    }
    Ok(())
}

#[cfg(test)]
impl FitPlan {
    /// A fitted layout for the TUI's snapshot tests: a 500 GB disk onto a 256 GB one.
    pub(crate) fn example() -> FitPlan {
        let gib = 1u64 << 30;
        let part =
            |number, fs: &str, old: (u64, u64), new: (u64, u64), used, min, action| FitPartPlan {
                number,
                fs: Some(fs.into()),
                old_start: old.0,
                old_size: old.1,
                new_start: new.0,
                new_size: new.1,
                used: Some(used),
                min,
                action,
                fixed: None,
                kind: None,
                bios_boot: false,
            };
        FitPlan {
            parts: vec![
                part(
                    1,
                    "vfat",
                    (MIB, 512 * MIB),
                    (MIB, 512 * MIB),
                    40 * MIB,
                    512 * MIB,
                    Action::Keep,
                ),
                part(
                    2,
                    "ntfs",
                    (513 * MIB, 300 * gib),
                    (513 * MIB, 160 * gib),
                    80 * gib,
                    90 * gib,
                    Action::Shrink,
                ),
                part(
                    3,
                    "ext4",
                    (513 * MIB + 300 * gib, 165 * gib),
                    (513 * MIB + 160 * gib, 78 * gib),
                    30 * gib,
                    35 * gib,
                    Action::ShrinkMove,
                ),
            ],
            smallest_target: 126 * gib,
            scratch_bytes: 3 * gib,
            scratch: None,
            overlay_memory: DEFAULT_OVERLAY_MEMORY,
            notes: vec![],
        }
    }
}
