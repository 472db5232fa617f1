//! GNU ddrescue mapfiles: `image --rescue --mapfile FILE` writes the rescue's state in the
//! format ddrescue, ddrescuelog and ddrescueview read, and `--domain MAPFILE` takes the
//! finished (`+`) blocks of one as the only part of the disk to read.
//!
//! The format (ddrescue's manual, "Mapfile structure"): lines starting with `#` are
//! comments; the first other line is the status line `current_pos current_status
//! [current_pass]`; every later line is a block `pos size status`, positions and sizes in
//! bytes (hex with `0x`, or decimal), the blocks in order, not overlapping. Block states:
//! `?` non-tried, `*` non-trimmed, `/` non-scraped, `-` bad sector, `+` finished.
//!
//! What a Lifeboat mapfile says: every byte of the disk has a block; the used blocks a
//! rescue read are `+`, those it could not read are `-` (or `?`, `*`, `/` when it stopped
//! before finishing them), and the blocks it never reads because their filesystem proves
//! them unused, or they lie outside the domain, are `?`.

#[cfg(test)]
use super::rescue::AreaState;
use super::rescue::RescueMap;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// The text of a mapfile for a disk of `size` bytes in the state `map`: bytes the map does
/// not track (unused blocks, used blocks outside the domain) are `?`. `pass` is the pass the
/// rescue is in, `finished` whether it is over (the status line's state is then `+`), and
/// `command` goes in the header comment.
pub fn render(map: &RescueMap, size: u64, pass: u32, finished: bool, command: &str) -> String {
    let mut blocks: Vec<(u64, u64, char)> = Vec::new();
    let mut push = |s: u64, e: u64, c: char| {
        if s >= e {
            return;
        }
        match blocks.last_mut() {
            Some(last) if last.2 == c && last.0 + last.1 == s => last.1 += e - s,
            _ => blocks.push((s, e - s, c)),
        }
    };
    let mut pos = 0u64;
    for (s, e, st) in map.iter() {
        let (s, e) = (s.min(size), e.min(size));
        push(pos, s, '?');
        push(s, e, st.ddrescue_char());
        pos = pos.max(e);
    }
    push(pos, size, '?');
    let mut out = String::new();
    out.push_str(&format!(
        "# Mapfile. Created by Lifeboat {} (GNU ddrescue mapfile format)\n",
        env!("CARGO_PKG_VERSION")
    ));
    out.push_str(&format!("# Command line: {command}\n"));
    out.push_str(if finished {
        "# Finished\n"
    } else {
        "# Rescuing\n"
    });
    out.push_str("# current_pos  current_status  current_pass\n");
    out.push_str(&format!(
        "0x{:08X}     {}               {}\n",
        pos.min(size),
        if finished { '+' } else { '?' },
        pass.max(1)
    ));
    out.push_str("#      pos        size  status\n");
    for (s, l, c) in blocks {
        out.push_str(&format!("0x{s:08X}  0x{l:08X}  {c}\n"));
    }
    out
}

/// Writes `text` to `path` atomically (a temporary file beside it, fsynced, renamed).
pub fn write(path: &Path, text: &str) -> Result<()> {
    let tmp = crate::image::partial_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming", &tmp, e))
}

/// The finished (`+`) blocks of the mapfile `text`, as `(start, len)` in order. Refuses a
/// malformed file, naming the line.
pub fn finished_blocks(path: &Path, text: &str) -> Result<Vec<(u64, u64)>> {
    let bad = |line: usize, why: String| Error::Refused {
        path: path.to_path_buf(),
        reason: format!("line {line} of this ddrescue mapfile: {why}"),
    };
    let num = |line: usize, s: &str| -> Result<u64> {
        let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse::<u64>(),
        };
        v.map_err(|_| bad(line, format!("{s:?} is not a number")))
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut seen_status = false;
    let mut end = 0u64;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        if !seen_status {
            // current_pos current_status [current_pass]
            if !(2..=3).contains(&f.len()) || f[1].chars().count() != 1 {
                return Err(bad(
                    line,
                    "the status line must be `pos status [pass]`".into(),
                ));
            }
            num(line, f[0])?;
            seen_status = true;
            continue;
        }
        if f.len() != 3 || f[2].chars().count() != 1 {
            return Err(bad(line, "a block line must be `pos size status`".into()));
        }
        let (pos, size) = (num(line, f[0])?, num(line, f[1])?);
        let state = f[2].chars().next().unwrap_or(' ');
        if !"?*/-+".contains(state) {
            return Err(bad(line, format!("{state:?} is not a block status")));
        }
        if pos < end {
            return Err(bad(line, "blocks overlap or are out of order".into()));
        }
        end = pos
            .checked_add(size)
            .ok_or_else(|| bad(line, "the block ends past 2^64".into()))?;
        if state == '+' && size > 0 {
            match out.last_mut() {
                Some(last) if last.0 + last.1 == pos => last.1 += size,
                _ => out.push((pos, size)),
            }
        }
    }
    if !seen_status {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "it has no status line: it is not a ddrescue mapfile".into(),
        });
    }
    Ok(out)
}

/// Reads `path` and returns its finished blocks ([`finished_blocks`]).
pub fn read_domain(path: &Path) -> Result<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    finished_blocks(path, &text)
}

/// Extents `(start, len, region)`, and ranges `(start, len)` outside the domain.
pub type DomainSplit = (Vec<(u64, u64, usize)>, Vec<(u64, u64)>);

/// Splits the extents `(start, len, region)` into those inside the `domain` blocks and
/// the bytes outside it, `(start, len)`. Both come out in disk order.
pub fn split_by_domain(extents: &[(u64, u64, usize)], domain: &[(u64, u64)]) -> DomainSplit {
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for &(s, l, region) in extents {
        let e = s + l;
        let mut pos = s;
        for &(ds, dl) in domain {
            let de = ds + dl;
            if de <= pos || ds >= e {
                continue;
            }
            let (is, ie) = (ds.max(pos), de.min(e));
            if is > pos {
                outside.push((pos, is - pos));
            }
            inside.push((is, ie - is, region));
            pos = ie;
        }
        if pos < e {
            outside.push((pos, e - pos));
        }
    }
    (inside, outside)
}

/// The parts of the `(start, end)` ranges `a` that no range of `b` covers; both sorted and
/// disjoint, and so is the result.
pub fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0usize;
    for &(s, e) in a {
        let mut pos = s;
        while j < b.len() && b[j].1 <= pos {
            j += 1;
        }
        let mut k = j;
        while pos < e && k < b.len() && b[k].0 < e {
            let (bs, be) = b[k];
            if bs > pos {
                out.push((pos, bs));
            }
            pos = pos.max(be);
            k += 1;
        }
        if pos < e {
            out.push((pos, e));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_covers_the_disk_and_reads_back() {
        let mut map = RescueMap::new([(4096, 65536), (1 << 20, 8192)]);
        map.set(4096, 65536 + 4096, AreaState::Finished);
        map.set(1 << 20, (1 << 20) + 512, AreaState::Bad);
        map.set((1 << 20) + 512, (1 << 20) + 8192, AreaState::Finished);
        let text = render(
            &map,
            2 << 20,
            5,
            true,
            "lifeboat image /dev/sdb -o x.lbi --rescue",
        );
        let blocks: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            blocks,
            vec![
                "0x00102000     +               5",
                "0x00000000  0x00001000  ?",
                "0x00001000  0x00010000  +",
                "0x00011000  0x000EF000  ?",
                "0x00100000  0x00000200  -",
                "0x00100200  0x00001E00  +",
                "0x00102000  0x000FE000  ?",
            ]
        );
        let p = Path::new("m");
        assert_eq!(
            finished_blocks(p, &text).unwrap(),
            vec![(4096, 65536), ((1 << 20) + 512, 8192 - 512)]
        );
    }

    #[test]
    fn malformed_mapfiles_are_refused_with_the_line() {
        let p = Path::new("m");
        for (text, want) in [
            ("", "no status line"),
            ("0 + 1\n0x0 0x10 +\n0x8 0x10 +\n", "line 3"),
            ("0 + 1\n0x0 0x10 X\n", "not a block status"),
            ("0 + 1\n0xZZ 0x10 +\n", "not a number"),
            ("0 + 1\n0x0 0x10\n", "pos size status"),
        ] {
            let e = finished_blocks(p, text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // decimal numbers and a status line without the pass are ddrescue's too
        assert_eq!(
            finished_blocks(p, "# c\n0 +\n0 512 +\n512 512 -\n1024 1024 +\n").unwrap(),
            vec![(0, 512), (1024, 1024)]
        );
    }

    #[test]
    fn subtract_leaves_what_is_not_covered() {
        assert_eq!(
            subtract(&[(0, 100), (200, 300)], &[(10, 20), (90, 210), (250, 260)]),
            vec![(0, 10), (20, 90), (210, 250), (260, 300)]
        );
        assert_eq!(subtract(&[(0, 10)], &[]), vec![(0, 10)]);
        assert_eq!(subtract(&[(0, 10)], &[(0, 10)]), vec![]);
    }

    #[test]
    fn extents_split_by_the_domain() {
        let ext = [(0, 100, 0), (200, 100, 1)];
        let (inside, outside) = split_by_domain(&ext, &[(50, 200)]);
        assert_eq!(inside, vec![(50, 50, 0), (200, 50, 1)]);
        assert_eq!(outside, vec![(0, 50), (250, 50)]);
    }
}
