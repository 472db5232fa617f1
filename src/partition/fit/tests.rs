use super::*;
use crate::fsmap::testutil::Rng;

const MIB: u64 = 1 << 20;
const S: u64 = 512;

fn part(number: u32, start_mib: u64, size_mib: u64, min_mib: u64) -> FitPart {
    FitPart {
        number,
        start: start_mib * MIB,
        size: size_mib * MIB,
        min: min_mib * MIB,
        room_before: 0,
    }
}

fn input(parts: Vec<FitPart>, end_mib: u64) -> FitInput {
    FitInput {
        parts,
        first_usable: 34 * S,
        end: end_mib * MIB,
        align: MIB,
        sector: S,
    }
}

fn placed(l: &FitLayout) -> Vec<(u32, u64, u64, Action)> {
    l.parts
        .iter()
        .map(|p| (p.number, p.new_start / MIB, p.new_size / MIB, p.action))
        .collect()
}

#[test]
fn a_layout_that_fits_is_kept_as_it_is() {
    let l = plan_fit(&input(
        vec![part(1, 1, 100, 10), part(2, 101, 400, 50)],
        600,
    ))
    .unwrap();
    assert_eq!(
        placed(&l),
        vec![(1, 1, 100, Action::Keep), (2, 101, 400, Action::Keep)]
    );
    assert_eq!(l.smallest_end, 61 * MIB);
}

#[test]
fn the_first_partition_shrinks_in_place_and_the_next_moves_left_whole() {
    // a big, mostly empty first partition and a small one that cannot shrink (an ESP)
    let l = plan_fit(&input(
        vec![part(1, 1, 1000, 100), part(2, 1001, 100, 100)],
        500,
    ))
    .unwrap();
    assert_eq!(
        placed(&l),
        vec![(1, 1, 399, Action::Shrink), (2, 400, 100, Action::Move)]
    );
}

#[test]
fn partitions_are_placed_in_disk_order_whatever_their_numbers() {
    let l = plan_fit(&input(
        vec![
            part(3, 601, 200, 20),
            part(1, 1, 300, 30),
            part(2, 301, 300, 30),
        ],
        500,
    ))
    .unwrap();
    let numbers: Vec<u32> = l.parts.iter().map(|p| p.number).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    // the first two keep start and size; the last shrinks and moves into what is left
    assert_eq!(
        placed(&l),
        vec![
            (1, 1, 300, Action::Keep),
            (2, 301, 179, Action::Shrink),
            (3, 480, 20, Action::ShrinkMove)
        ]
    );
}

#[test]
fn too_small_names_the_partition_that_does_not_fit_and_the_smallest_end() {
    let e = plan_fit(&input(
        vec![part(1, 1, 1000, 300), part(2, 1001, 100, 100)],
        300,
    ))
    .unwrap_err();
    assert_eq!(
        e,
        NoFit::TooSmall {
            smallest_end: 401 * MIB,
            blocker: 1
        }
    );
    assert!(e.to_string().contains("partition 1"), "{e}");
    // exactly that end fits
    assert!(plan_fit(&input(
        vec![part(1, 1, 1000, 300), part(2, 1001, 100, 100)],
        401
    ))
    .is_ok());
}

#[test]
fn an_unaligned_start_is_kept_where_it_need_not_move() {
    // a partition at sector 63, as old MBR disks have them
    let p1 = FitPart {
        number: 1,
        start: 63 * S,
        size: 1000 * MIB,
        min: 10 * MIB,
        room_before: 0,
    };
    let l = plan_fit(&FitInput {
        first_usable: S,
        ..input(vec![p1], 100)
    })
    .unwrap();
    assert_eq!(l.parts[0].new_start, 63 * S);
    assert_eq!(l.parts[0].new_size, 100 * MIB - 63 * S);
    assert_eq!(l.parts[0].action, Action::Shrink);
}

#[test]
fn a_logical_partition_keeps_the_room_for_its_ebr() {
    let mut p2 = part(5, 202, 500, 10);
    p2.room_before = MIB;
    let l = plan_fit(&input(vec![part(1, 1, 200, 150), p2], 300)).unwrap();
    let (a, b) = (&l.parts[0], &l.parts[1]);
    assert!(a.new_start + a.new_size <= b.new_start - MIB);
    assert_eq!(b.new_start % MIB, 0);
}

#[test]
fn hostile_input_is_refused_not_planned() {
    let overlap = input(vec![part(1, 1, 100, 10), part(2, 50, 100, 10)], 500);
    assert!(matches!(plan_fit(&overlap), Err(NoFit::Invalid(w)) if w.contains("overlap")));
    let min_above = input(vec![part(1, 1, 100, 200)], 500);
    assert!(matches!(plan_fit(&min_above), Err(NoFit::Invalid(_))));
    let mut odd = input(vec![part(1, 1, 100, 10)], 500);
    odd.parts[0].size += 1;
    assert!(matches!(plan_fit(&odd), Err(NoFit::Invalid(_))));
    let mut huge = input(vec![part(1, 1, 100, 10)], 500);
    huge.parts[0].start = u64::MAX / S * S;
    assert!(matches!(plan_fit(&huge), Err(NoFit::Invalid(_))));
    let bad_align = FitInput {
        align: 3 * MIB,
        ..input(vec![part(1, 1, 100, 10)], 500)
    };
    assert!(matches!(plan_fit(&bad_align), Err(NoFit::Invalid(_))));
}

/// A random layout: 1 to 8 partitions with random gaps, some at unaligned starts, some that
/// cannot shrink, some logical (room for an EBR before them), numbered in shuffled order.
fn random_input(rng: &mut Rng) -> FitInput {
    let sector = if rng.below(4) == 0 { 4096 } else { 512 };
    let align = if rng.below(5) == 0 {
        4096.max(sector)
    } else {
        MIB
    };
    let n = 1 + rng.below(8) as usize;
    let first_usable = 34 * sector;
    let mut at = MIB.max(first_usable);
    let mut parts = Vec::new();
    for i in 0..n {
        let room_before = match rng.below(4) {
            0 => sector,
            1 => MIB,
            _ => 0,
        };
        at += rng.below(3) * rng.below(64) * MIB + room_before;
        if rng.below(4) == 0 {
            at += rng.below(2048) * sector; // unaligned
        }
        let size = (1 + rng.below(2000 * MIB / sector)) * sector;
        let min = if rng.below(3) == 0 {
            size
        } else {
            (1 + rng.below(size / sector)) * sector
        };
        parts.push(FitPart {
            number: i as u32 + 1,
            start: at,
            size,
            min,
            room_before,
        });
        at += size;
    }
    // shuffled numbering and order
    for i in (1..parts.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        parts.swap(i, j);
        let (a, b) = (parts[i].number, parts[j].number);
        parts[i].number = b;
        parts[j].number = a;
    }
    let end = (at / 4 + rng.below(at + at / 4) / sector * sector) / sector * sector;
    FitInput {
        parts,
        first_usable,
        end: end.max(first_usable),
        align,
        sector,
    }
}

/// Every property a plan must have, or why it lacks one.
fn check(input: &FitInput, l: &FitLayout) -> Result<(), String> {
    let mut src = input.parts.clone();
    src.sort_by_key(|p| p.start);
    if l.parts.len() != src.len() {
        return Err("a partition was lost".into());
    }
    let everything_fits = src.iter().all(|p| p.start + p.size <= input.end);
    let mut prev_end = input.first_usable;
    for (p, s) in l.parts.iter().zip(&src) {
        let n = p.number;
        if p.number != s.number || p.old_start != s.start || p.old_size != s.size {
            return Err(format!("partition {n}: the disk order changed"));
        }
        if p.new_start < prev_end + s.room_before {
            return Err(format!(
                "partition {n} overlaps the one before or its EBR room"
            ));
        }
        if p.new_start + p.new_size > input.end {
            return Err(format!("partition {n} runs past the end"));
        }
        if p.new_size < s.min || p.new_size > s.size {
            return Err(format!(
                "partition {n}: size {} outside its range",
                p.new_size
            ));
        }
        if p.new_start != s.start && !p.new_start.is_multiple_of(input.align) {
            return Err(format!("partition {n} moved to an unaligned start"));
        }
        if p.new_start > s.start {
            return Err(format!("partition {n} moved right"));
        }
        if !(p.new_start | p.new_size).is_multiple_of(input.sector) {
            return Err(format!("partition {n} is not whole sectors"));
        }
        let want = match (p.new_start == s.start, p.new_size == s.size) {
            (true, true) => Action::Keep,
            (false, true) => Action::Move,
            (true, false) => Action::Shrink,
            (false, false) => Action::ShrinkMove,
        };
        if p.action != want {
            return Err(format!(
                "partition {n}: action {:?}, not {want:?}",
                p.action
            ));
        }
        if everything_fits && p.action != Action::Keep {
            return Err(format!("partition {n} changed although everything fits"));
        }
        prev_end = p.new_start + p.new_size;
    }
    Ok(())
}

#[test]
fn every_plan_of_two_thousand_random_layouts_keeps_every_rule() {
    let mut rng = Rng(0x05EE_DF17_u64);
    let (mut planned, mut refused) = (0, 0);
    for round in 0..2000 {
        let inp = random_input(&mut rng);
        match plan_fit(&inp) {
            Ok(l) => {
                planned += 1;
                if let Err(why) = check(&inp, &l) {
                    panic!("round {round}: {why}\n{inp:?}\n{l:?}");
                }
                assert!(l.smallest_end <= inp.end, "round {round}");
            }
            Err(NoFit::TooSmall { smallest_end, .. }) => {
                refused += 1;
                assert!(
                    smallest_end > inp.end,
                    "round {round}: refused below its own minimum"
                );
                // the smallest end it names is enough, and a sector less is not
                let at = FitInput {
                    end: smallest_end,
                    ..inp.clone()
                };
                let l = plan_fit(&at).unwrap_or_else(|e| panic!("round {round}: {e}\n{at:?}"));
                check(&at, &l).unwrap_or_else(|why| panic!("round {round}: {why}"));
                let below = FitInput {
                    end: smallest_end - inp.sector,
                    ..inp.clone()
                };
                assert!(
                    matches!(plan_fit(&below), Err(NoFit::TooSmall { .. })),
                    "round {round}: a sector under the smallest end was planned"
                );
            }
            Err(NoFit::Invalid(why)) => panic!("round {round}: {why}\n{inp:?}"),
        }
    }
    // the generator reaches both outcomes often
    assert!(
        planned > 400 && refused > 400,
        "{planned} planned, {refused} refused"
    );
}
