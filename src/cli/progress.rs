//! Renders job events: a redrawn line with rate and ETA on a terminal, a log line every
//! 10 s otherwise, or NDJSON with `--json`.

use crate::jobs::{Event, Phase};
use crate::units::human_bytes;
use crossbeam_channel::Receiver;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How events are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One line redrawn with `\r` on stderr.
    Tty,
    /// A plain line every 10 s on stderr.
    Log,
    /// Every event as one JSON line on stdout.
    Json,
}

impl Mode {
    /// `Json` when asked, else `Tty` if stderr is a terminal, else `Log`.
    pub fn pick(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Tty
        } else {
            Mode::Log
        }
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Scan => "scanning",
        Phase::Image => "imaging",
        Phase::Write => "writing",
        Phase::Verify => "verifying",
        Phase::Sync => "syncing",
        Phase::Partition => "writing partition table",
        Phase::Grow => "growing the last filesystem",
        Phase::Shrink => "shrinking filesystems on their overlays",
        Phase::Rescue => "rescuing",
    }
}

fn clock(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One progress line: phase, percent, bytes, rate and ETA.
pub fn line(phase: Phase, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let mut s = format!("{} {}", phase_name(phase), human_bytes(done));
    if let Some(t) = total.filter(|&t| t > 0) {
        let pct = (done as f64 / t as f64 * 100.0).min(100.0);
        s = format!(
            "{} {pct:5.1}% {} / {}",
            phase_name(phase),
            human_bytes(done),
            human_bytes(t)
        );
        if rate > 0.0 {
            let eta = t.saturating_sub(done) as f64 / rate;
            s.push_str(&format!(
                ", {}/s, ETA {}",
                human_bytes(rate as u64),
                clock(eta)
            ));
        }
    } else if rate > 0.0 {
        s.push_str(&format!(", {}/s", human_bytes(rate as u64)));
    }
    s
}

/// The rescue's numbers after a progress line: "pass 3 (trim): rescued 1.2 GiB, missing
/// 64 KiB, untried 0 B".
pub fn rescue_words(pass: u32, name: &str, rescued: u64, missing: u64, untried: u64) -> String {
    format!(
        "pass {pass} ({name}): rescued {}, missing {}, untried {}",
        human_bytes(rescued),
        human_bytes(missing),
        human_bytes(untried)
    )
}

/// Consumes events until the channel closes.
pub fn render(rx: Receiver<Event>, mode: Mode) {
    let mut phase = Phase::Scan;
    let mut total = None;
    let mut start = Instant::now();
    let mut last_log = Instant::now();
    let mut drawn = false;
    let mut rescue: Option<String> = None;
    let mut err = std::io::stderr();
    let mut out = std::io::stdout();
    for e in rx.iter() {
        if mode == Mode::Json {
            if let Ok(s) = serde_json::to_string(&e) {
                let _ = writeln!(out, "{s}");
                let _ = out.flush();
            }
            continue;
        }
        match e {
            Event::Phase {
                phase: p,
                total_bytes,
            } => {
                if drawn {
                    let _ = writeln!(err);
                    drawn = false;
                }
                phase = p;
                total = total_bytes;
                start = Instant::now();
                last_log = Instant::now();
                if mode == Mode::Log {
                    let _ = writeln!(err, "{}…", phase_name(p));
                }
            }
            Event::Progress {
                phase: p,
                done_bytes,
            } => {
                let mut l = line(p, done_bytes, total.filter(|_| p == phase), start.elapsed());
                if let Some(r) = &rescue {
                    l = format!("{l} | {r}");
                }
                if mode == Mode::Tty {
                    let _ = write!(err, "\r\x1b[K{l}");
                    let _ = err.flush();
                    drawn = true;
                } else if last_log.elapsed() >= Duration::from_secs(10) {
                    let _ = writeln!(err, "{l}");
                    last_log = Instant::now();
                }
            }
            Event::Rescue {
                pass,
                name,
                rescued_bytes,
                missing_bytes,
                untried_bytes,
            } => {
                rescue = Some(rescue_words(
                    pass,
                    &name,
                    rescued_bytes,
                    missing_bytes,
                    untried_bytes,
                ));
            }
            Event::Warning { message } => {
                if drawn {
                    let _ = writeln!(err);
                    drawn = false;
                }
                let _ = writeln!(err, "warning: {message}");
            }
            Event::Finished { .. } => {
                if drawn {
                    let _ = writeln!(err);
                    drawn = false;
                }
            }
        }
    }
    if drawn {
        let _ = writeln!(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_line_has_percent_rate_and_eta() {
        let l = line(
            Phase::Image,
            50 << 20,
            Some(100 << 20),
            Duration::from_secs(5),
        );
        assert_eq!(
            l,
            "imaging  50.0% 50.0 MiB / 100.0 MiB, 10.0 MiB/s, ETA 0:00:05"
        );
        assert_eq!(
            line(Phase::Verify, 0, None, Duration::from_secs(0)),
            "verifying 0 B"
        );
    }
}
