//! The layout planner of `--fit` (issue 17, first stage): where each partition of a disk goes
//! on a target too small for the layout as it is, given how far each one can shrink.
//!
//! Pure: byte offsets in, byte offsets out. The jobs find each filesystem's minimum size and
//! do the shrinking and moving; this module only decides the new starts and sizes, so that
//! it can be checked on any layout, hostile ones included.
//!
//! The rules, in order:
//! - nothing changes when every partition already ends before the target's end;
//! - the disk order is kept, and no partition ever overlaps another or leaves the usable area;
//! - a partition keeps its start where it can (it shrinks in place), and moves left only as
//!   far as the partitions after it need; a moved start is aligned;
//! - a partition keeps its size where it can, and shrinks only as far as the partitions after
//!   it need, never below its minimum; one that cannot shrink (`min == size`) keeps its size;
//! - a logical partition keeps the room before it that holds its extended boot record (EBR).
//!
//! A partition may start where it started, or at any aligned offset. Placing every partition
//! at its minimum, each as early as it may start, is the tightest packing; where it ends is
//! [`FitLayout::smallest_end`], and a target whose usable area ends there or later always
//! gets a plan.
//!
//! Not yet used by `restore` or `clone`: the shrink itself (on a copy-on-write overlay) and
//! the `--fit` option come in the next stages of issue 17.

use std::fmt;

/// One partition as it is on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitPart {
    /// Its number in the table.
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Bytes.
    pub size: u64,
    /// The fewest bytes it can shrink to (its filesystem's minimum with a margin); `size` when
    /// it cannot shrink.
    pub min: u64,
    /// Bytes that must stay free right before it: the distance from its EBR to its first
    /// byte for a logical partition, 0 otherwise.
    pub room_before: u64,
}

/// The source's partitions and the target's usable area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitInput {
    /// The partitions, in any order.
    pub parts: Vec<FitPart>,
    /// The first byte a partition (or the room before it) may use on the target.
    pub first_usable: u64,
    /// One past the last byte a partition may use on the target.
    pub end: u64,
    /// Alignment of moved starts and shrunk sizes (a power of two, such as 1 MiB).
    pub align: u64,
    /// The sector size: every start and size is a multiple of it.
    pub sector: u64,
}

/// What happens to a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Stays where it is, as it is.
    Keep,
    /// Moves left, whole.
    Move,
    /// Shrinks where it is.
    Shrink,
    /// Shrinks and moves left.
    ShrinkMove,
}

/// One partition on the target.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    /// Its number in the table.
    pub number: u32,
    /// Where it was.
    pub old_start: u64,
    /// Its size on the source.
    pub old_size: u64,
    /// Where it goes.
    pub new_start: u64,
    /// Its size on the target.
    pub new_size: u64,
    /// The fewest bytes it could have shrunk to.
    pub min: u64,
    /// What happens to it.
    pub action: Action,
}

/// The fitted layout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FitLayout {
    /// The partitions in disk order.
    pub parts: Vec<Placed>,
    /// The smallest `end` for which a plan exists: where the tightest packing ends.
    pub smallest_end: u64,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFit {
    /// The partitions do not fit even at their minimum sizes: the target's usable area would
    /// have to end at `smallest_end` at least; `blocker` is the partition that reaches past
    /// the end when everything is packed at its minimum.
    TooSmall { smallest_end: u64, blocker: u32 },
    /// The input itself is wrong (overlapping partitions, a minimum above the size, offsets
    /// that are no multiple of the sector size...).
    Invalid(String),
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoFit::TooSmall {
                smallest_end,
                blocker,
            } => write!(
                f,
                "the partitions do not fit even shrunk to their minimum sizes: partition \
                 {blocker} would end past the target; the usable area must reach byte \
                 {smallest_end}"
            ),
            NoFit::Invalid(why) => write!(f, "{why}"),
        }
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

fn align_down(x: u64, a: u64) -> u64 {
    x / a * a
}

/// Checks the input; returns the partitions in disk order.
fn sorted(input: &FitInput) -> Result<Vec<FitPart>, NoFit> {
    let bad = |why: String| Err(NoFit::Invalid(why));
    let (a, ss) = (input.align, input.sector);
    if ss == 0 || !ss.is_power_of_two() || a < ss || !a.is_power_of_two() {
        return bad(format!(
            "alignment {a} and sector size {ss} must be powers of two, alignment at least a sector"
        ));
    }
    if !input.first_usable.is_multiple_of(ss)
        || !input.end.is_multiple_of(ss)
        || input.first_usable > input.end
    {
        return bad(format!(
            "the usable area {}..{} is not whole sectors",
            input.first_usable, input.end
        ));
    }
    let mut parts = input.parts.clone();
    parts.sort_by_key(|p| p.start);
    for p in &parts {
        let n = p.number;
        if p.size == 0 || p.min == 0 || p.min > p.size {
            return bad(format!(
                "partition {n}: minimum {} of size {}",
                p.min, p.size
            ));
        }
        if [p.start, p.size, p.min, p.room_before]
            .iter()
            .any(|v| !v.is_multiple_of(ss))
        {
            return bad(format!("partition {n} is not whole sectors"));
        }
        if p.start.checked_add(p.size).is_none() || p.start < p.room_before {
            return bad(format!("partition {n} lies outside the disk"));
        }
    }
    for w in parts.windows(2) {
        if w[0].start + w[0].size > w[1].start - w[1].room_before {
            return bad(format!(
                "partitions {} and {} overlap",
                w[0].number, w[1].number
            ));
        }
    }
    Ok(parts)
}

/// The earliest start at or after `x` that `p` may take: its own start where that lies
/// before the next aligned offset, else that aligned offset.
fn earliest_start(p: &FitPart, x: u64, a: u64) -> u64 {
    let up = align_up(x, a).unwrap_or(u64::MAX);
    if p.start >= x && p.start < up {
        p.start
    } else {
        up
    }
}

/// The latest start at or before `y` that `p` may take: its own start where that lies after
/// the aligned offset below `y`, else that aligned offset.
fn latest_start(p: &FitPart, y: u64, a: u64) -> u64 {
    let down = align_down(y, a);
    if p.start <= y && p.start > down {
        p.start
    } else {
        down
    }
}

/// Where the partitions go on a target whose usable area is `input.first_usable..input.end`.
pub fn plan_fit(input: &FitInput) -> Result<FitLayout, NoFit> {
    let parts = sorted(input)?;
    let a = input.align;
    // The tightest packing: each partition at its minimum, as early as it may start.
    let mut cursor = input.first_usable;
    let mut blocker = None;
    for p in &parts {
        let start = earliest_start(p, cursor.saturating_add(p.room_before), a);
        cursor = start.saturating_add(p.min);
        if cursor > input.end && blocker.is_none() {
            blocker = Some(p.number);
        }
    }
    let smallest_end = cursor;
    if let Some(blocker) = blocker {
        return Err(NoFit::TooSmall {
            smallest_end,
            blocker,
        });
    }
    // The latest start of each partition such that it and every partition after it still
    // fit at their minimum sizes (backwards from the end). The packing fit, so none of
    // these subtractions can go below the packing's own starts.
    let invalid = |n: u32| NoFit::Invalid(format!("partition {n} could not be placed"));
    let mut latest = vec![0u64; parts.len()];
    let mut limit = input.end;
    for (i, p) in parts.iter().enumerate().rev() {
        let top = limit.checked_sub(p.min).ok_or_else(|| invalid(p.number))?;
        latest[i] = latest_start(p, top, a);
        limit = latest[i]
            .checked_sub(p.room_before)
            .ok_or_else(|| invalid(p.number))?;
    }
    // Forwards: keep each start and size where the partitions after it allow.
    let mut out = Vec::with_capacity(parts.len());
    let mut cursor = input.first_usable;
    for (i, p) in parts.iter().enumerate() {
        let earliest = cursor + p.room_before;
        let start = if p.start >= earliest && p.start <= latest[i] {
            p.start
        } else if p.start < earliest {
            earliest_start(p, earliest, a)
        } else {
            latest[i]
        };
        let room_end = match parts.get(i + 1) {
            Some(next) => latest[i + 1] - next.room_before,
            None => input.end,
        };
        // a shrunk partition ends on an alignment boundary where its minimum allows
        let room = room_end.saturating_sub(start);
        let size = if room >= p.size {
            p.size
        } else {
            ((start + room) / a * a)
                .saturating_sub(start)
                .max(p.min)
                .min(room)
        };
        if start < earliest || start > latest[i] || size < p.min {
            // cannot happen once the packing fit: a guard against a wrong plan
            return Err(invalid(p.number));
        }
        let action = match (start == p.start, size == p.size) {
            (true, true) => Action::Keep,
            (false, true) => Action::Move,
            (true, false) => Action::Shrink,
            (false, false) => Action::ShrinkMove,
        };
        out.push(Placed {
            number: p.number,
            old_start: p.start,
            old_size: p.size,
            new_start: start,
            new_size: size,
            min: p.min,
            action,
        });
        cursor = start + size;
    }
    Ok(FitLayout {
        parts: out,
        smallest_end,
    })
}

#[cfg(test)]
mod tests;
