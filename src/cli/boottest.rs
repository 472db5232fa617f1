//! `lifeboat boot-test`, and the check `restore --boot-test` and `clone --boot-test` run on
//! their target: the face of [`crate::boottest`]. It turns the options into the core's, shows
//! each stage as it is reached (stderr), prints the verdict (stdout, or the report as JSON)
//! and turns Ctrl-C and SIGTERM into the run's cancellation, after which the core has
//! stopped QEMU and removed its sockets and overlay.

use super::args::{BootTestArgs, BootTestOptions, FirmwareChoice};
use super::Exit;
use crate::boottest::disk::Firmware;
use crate::boottest::judge::Verdict;
use crate::boottest::{Options, Progress, Report};
use crate::units::human_bytes;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `lifeboat boot-test`.
pub fn boot_test(a: &BootTestArgs) -> anyhow::Result<Exit> {
    check(&a.source, &a.test, &a.search, a.cache_mib << 20, a.json)
}

/// Runs the test on `source` and prints the outcome: [`Exit::Ok`] when it booted,
/// [`Exit::Failed`] when not (the verdict already printed).
pub fn check(
    source: &Path,
    t: &BootTestOptions,
    search: &[PathBuf],
    cache_bytes: u64,
    json: bool,
) -> anyhow::Result<Exit> {
    crate::init::sys::catch_interrupts();
    let opts = options(source, t, search, cache_bytes);
    run_checked(source, &opts, json)
}

/// The core's options for a test of `source`.
pub fn options(
    source: &Path,
    t: &BootTestOptions,
    search: &[PathBuf],
    cache_bytes: u64,
) -> Options {
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "disk".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = t.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "boot-test-{stem}-{}",
            crate::jobs::chain::utc_stamp(now)
        ))
    });
    Options {
        source: source.to_path_buf(),
        search: search.to_vec(),
        firmware: match t.firmware {
            FirmwareChoice::Auto => None,
            FirmwareChoice::Bios => Some(vec![Firmware::Bios]),
            FirmwareChoice::Uefi => Some(vec![Firmware::Uefi]),
            FirmwareChoice::Both => Some(vec![Firmware::Bios, Firmware::Uefi]),
        },
        bus: t.bus,
        memory_mib: t.memory.max(16),
        cpus: t.cpus.max(1),
        accel: t.accel,
        net: t.net,
        expect: t.expect.clone(),
        timeout: t.timeout.max(1) as f64,
        settle: t.settle.max(2) as f64,
        out,
        cache_bytes: cache_bytes.max(1 << 20),
    }
}

/// What `restore --boot-test` and `clone --boot-test` check before they write anything:
/// QEMU (and OVMF) are there and the output folder can be used.
pub fn preflight(target: &Path, t: &BootTestOptions) -> anyhow::Result<()> {
    crate::boottest::preflight(&options(target, t, &[], crate::access::DEFAULT_CACHE_BYTES))
        .context("--boot-test cannot run")
}

fn run_checked(source: &Path, opts: &Options, json: bool) -> anyhow::Result<Exit> {
    let mut err = std::io::stderr();
    let mut progress = |p: Progress| {
        let _ = match p {
            Progress::Starting(fw) => writeln!(err, "{fw}: starting the machine"),
            Progress::Stage(fw, r) => writeln!(
                err,
                "{fw}: {:6.1} s  stage {}  {}: {}",
                r.t,
                r.stage.number(),
                r.stage.describe(),
                r.evidence
            ),
            Progress::Done(run) => writeln!(
                err,
                "{}: {} after {:.1} s ({})",
                run.firmware,
                verdict_text(&run.verdict),
                run.seconds,
                if run.kvm { "KVM" } else { "TCG, no KVM" }
            ),
        };
    };
    let _ = writeln!(
        std::io::stderr(),
        "boot-test {}: screenshots and logs in {}",
        source.display(),
        opts.out.display()
    );
    let r =
        super::common::until_signalled(|cancel| crate::boottest::run(opts, cancel, &mut progress));
    let report = r.with_context(|| format!("boot-testing {}", source.display()))?;
    let mut o = std::io::stdout().lock();
    if json {
        // one line: after restore --json's event lines it is one more
        writeln!(o, "{}", serde_json::to_string(&report)?)?;
    } else {
        print_report(&mut o, &report)?;
    }
    Ok(if report.booted {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// "booted", "stopped at stage 2: kernel panic (…)".
fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Booted => "booted".into(),
        Verdict::Failed { stage: 0, sign } => format!("did not boot: {sign}"),
        Verdict::Failed { stage, sign } => format!("stopped at stage {stage}: {sign}"),
    }
}

fn print_report(o: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        o,
        "{} ({}), disk on {:?}:",
        r.source.display(),
        human_bytes(r.size_bytes),
        r.bus
    )?;
    for run in &r.runs {
        writeln!(
            o,
            "  {}: {} ({:.1} s)",
            run.firmware,
            verdict_text(&run.verdict),
            run.seconds
        )?;
        for s in &run.stages {
            writeln!(o, "    {:6.1} s  {}  {}", s.t, s.stage.number(), s.evidence)?;
        }
        if let Some(last) = run.screenshots.last() {
            writeln!(o, "    screen: {}", last.display())?;
        }
        writeln!(o, "    serial: {}", run.serial_log.display())?;
    }
    for n in &r.survey.notes {
        writeln!(o, "  note: {n}")?;
    }
    writeln!(
        o,
        "{}",
        if r.booted {
            "verdict: booted"
        } else {
            "verdict: did not boot"
        }
    )
}
