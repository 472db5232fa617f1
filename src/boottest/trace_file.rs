//! The I/O log boot-test keeps next to its screenshots (`bios-io.log`): one line per run of
//! adjacent requests, `SECONDS R|W OFFSET LENGTH`. Written during the run, and read back so
//! that a recorded boot can be judged again (the tests replay real traces).

use super::judge::Observation;

/// The line for a request (or a merged run of them).
pub fn line(t: f64, write: bool, offset: u64, len: u64) -> String {
    format!("{t:.3} {} {offset} {len}", if write { 'W' } else { 'R' })
}

/// The requests in a log, in order; lines that are not requests are skipped.
pub fn parse(text: &str) -> Vec<Observation> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let t = f.next()?.parse::<f64>().ok().filter(|t| t.is_finite())?;
            let write = match f.next()? {
                "R" => false,
                "W" => true,
                _ => return None,
            };
            let offset = f.next()?.parse().ok()?;
            let len = f.next()?.parse().ok()?;
            f.next().is_none().then_some(Observation::Io {
                t,
                write,
                offset,
                len,
            })
        })
        .collect()
}
