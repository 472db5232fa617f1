//! `boot-test`: proves that a backup boots, with no help from the guest.
//!
//! The disk (an image's chain member, a disk-image file or a block device) is opened
//! read-only, put under a copy-on-write [`Overlay`] (the guest may
//! write; nothing reaches the source) and a [`Traced`] recorder, and served to a
//! headless QEMU over a private NBD socket. How far the boot got is decided from what Lifeboat
//! alone sees ([`judge`]): the guest's reads and writes mapped to the disk's boot code, boot
//! loaders, kernels, init and filesystems ([`disk`]), the serial and firmware consoles, QEMU's
//! events, and whether the screen is still. Screenshots are taken at each stage and at the end.
//!
//! The run: [`run`] with [`Options`], reporting stages through a callback, ending in a
//! [`Report`]. Nothing is left behind (QEMU, sockets, the overlay) on success, error or
//! cancellation.

pub mod disk;
pub mod judge;
pub mod qemu;
pub mod trace;
pub mod trace_file;

use crate::access::nbd::{Listen, ServeOptions, Server};
use crate::access::{ImageSource, Overlay, OverlayStore};
use crate::blockdev::{BlockDev, FileDev, OpenMode};
use crate::error::{Error, Result};
use crate::event::CancelToken;
use disk::{Firmware, Survey};
use judge::{Judge, Observation, Reached, Rules, Verdict};
use qemu::{Bus, DhcpWatch, Follow, Machine, MachineSpec};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use trace::{TraceTap, Traced};

/// How to run the test.
#[derive(Debug, Clone)]
pub struct Options {
    /// The disk: an image (any chain member), a disk-image file or a block device.
    pub source: PathBuf,
    /// Folders searched for an image's parents.
    pub search: Vec<PathBuf>,
    /// `None`: as the disk says ([`Survey::auto_firmware`]).
    pub firmware: Option<Vec<Firmware>>,
    /// Disk controller.
    pub bus: Bus,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Guest CPUs.
    pub cpus: u32,
    /// KVM or TCG.
    pub accel: qemu::Accel,
    /// Isolated user-mode networking.
    pub net: bool,
    /// `--expect`: a regex the serial console must match for stage 4.
    pub expect: Option<String>,
    /// Time limit per firmware, seconds.
    pub timeout: f64,
    /// Still screen and idle disk that count as settled, seconds.
    pub settle: f64,
    /// Where screenshots, logs and the report go (created; must not hold a previous run).
    pub out: PathBuf,
    /// Image cache, bytes.
    pub cache_bytes: u64,
}

/// What one boot (one firmware) did.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The firmware.
    pub firmware: Firmware,
    /// KVM (else TCG).
    pub kvm: bool,
    /// The outcome.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Stages reached, in order, with times and evidence.
    pub stages: Vec<Reached>,
    /// Seconds from start to the verdict.
    pub seconds: f64,
    /// Screenshots taken (at each stage and at the end).
    pub screenshots: Vec<PathBuf>,
    /// The serial console's log.
    pub serial_log: PathBuf,
    /// The firmware debug console's log.
    pub firmware_log: PathBuf,
    /// The I/O trace (one line per request: seconds, R/W, offset, length).
    pub io_log: PathBuf,
    /// Bytes the guest read.
    pub read_bytes: u64,
    /// Bytes the guest wrote (into the overlay; thrown away).
    pub written_bytes: u64,
    /// Requests outside the disk.
    pub outside_requests: u64,
    /// DHCP requests the guest sent (with `--net`).
    pub dhcp_requests: u64,
}

/// The whole test.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The disk tested.
    pub source: PathBuf,
    /// Its size.
    pub size_bytes: u64,
    /// Disk controller used.
    pub bus: Bus,
    /// What the disk holds for a boot.
    pub survey: Survey,
    /// One run per firmware tried.
    pub runs: Vec<Run>,
    /// Whether any firmware booted the disk.
    pub booted: bool,
    /// Where the evidence is.
    pub out: PathBuf,
    /// Peak resident memory of this process, bytes (the image cache and the overlay's map).
    pub peak_rss_bytes: u64,
}

/// What the run tells its caller as it goes.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A machine is starting with this firmware.
    Starting(Firmware),
    /// A stage was reached.
    Stage(Firmware, Reached),
    /// A run ended.
    Done(Run),
}

/// The disk as a read-only device: an image through [`ImageSource`], anything else as a
/// plain read-only file or block device.
pub fn open_source(path: &Path, search: &[PathBuf], cache_bytes: u64) -> Result<Arc<dyn BlockDev>> {
    let mut magic = [0u8; 8];
    let is_image = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && magic == crate::image::format::MAGIC;
    if is_image {
        Ok(Arc::new(ImageSource::open(path, search, cache_bytes)?))
    } else {
        Ok(Arc::new(FileDev::open(path, OpenMode::Read)?))
    }
}

/// A private folder (sockets, the firmware's variables), removed with what is in it when
/// dropped.
struct WorkDir(PathBuf);

/// The private folders' name prefix: `lifeboat-boot-test-PID-N`.
const WORK_TAG: &str = "lifeboat-boot-test";

/// Removes the private folders of boot-tests that died without cleaning up (killed with
/// SIGKILL): those whose process is gone. Only sockets and a copy of the firmware's
/// variables are in them.
pub fn sweep_stale() {
    for base in [
        Path::new("/run/lifeboat").to_path_buf(),
        std::env::temp_dir(),
    ] {
        let Ok(dir) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(WORK_TAG)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| r.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            let gone = matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            );
            if gone && pid > 0 {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A file removed when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Stops the NBD server when dropped: also when the watch panics, so that the scope that
/// joins the server's thread cannot wait forever.
struct StopOnDrop<'a>(&'a CancelToken);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What can be checked before the disk is even opened (and, for `restore --boot-test`,
/// before anything is written): QEMU and OVMF are there, the output folder is new or empty.
pub fn preflight(opts: &Options) -> Result<()> {
    let uefi = opts
        .firmware
        .as_ref()
        .is_some_and(|f| f.contains(&Firmware::Uefi));
    qemu::check_tools(uefi)?;
    if let Ok(mut d) = std::fs::read_dir(&opts.out) {
        if d.next().is_some() {
            return Err(out_not_empty(&opts.out));
        }
    }
    Ok(())
}

fn out_not_empty(out: &Path) -> Error {
    Error::Refused {
        path: out.to_path_buf(),
        reason:
            "it is not empty; boot-test writes its screenshots and logs to a new or empty folder"
                .into(),
    }
}

/// Creates the output folder, refusing one that holds anything.
fn out_dir(out: &Path) -> Result<()> {
    match std::fs::read_dir(out) {
        Ok(mut d) => {
            if d.next().is_some() {
                return Err(out_not_empty(out));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))
        }
        Err(e) => Err(Error::io("reading", out, e)),
    }
}

/// Peak resident memory of this process (VmHWM), bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<u64>().ok())
            })
        })
        .map_or(0, |k| k * 1024)
}

/// Runs the test; see the module doc. `progress` hears each start, stage and end.
pub fn run(
    opts: &Options,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report> {
    sweep_stale();
    preflight(opts)?;
    let source = open_source(&opts.source, &opts.search, opts.cache_bytes)?;
    let survey = disk::survey(&*source)?;
    let expect = match &opts.expect {
        Some(e) => Some(regex_lite::Regex::new(e).map_err(|err| Error::Refused {
            path: opts.source.clone(),
            reason: format!("--expect {e:?} is not a regular expression: {err}"),
        })?),
        None => None,
    };
    out_dir(&opts.out)?;
    let firmwares = opts
        .firmware
        .clone()
        .unwrap_or_else(|| survey.auto_firmware());
    let mut runs = Vec::new();
    let mut failed = None;
    for fw in firmwares {
        if cancel.is_cancelled() {
            break;
        }
        progress(Progress::Starting(fw));
        let rules = Rules {
            regions: survey.regions(fw),
            disk_bytes: source.len(),
            expect: expect.clone(),
            settle: opts.settle,
            loop_resets: 3,
        };
        match one(opts, fw, source.clone(), rules, cancel, progress) {
            Ok(r) => {
                progress(Progress::Done(r.clone()));
                runs.push(r);
            }
            Err(e) => {
                // the runs that finished keep their evidence in report.json
                failed = Some(e);
                break;
            }
        }
    }
    let booted = runs.iter().any(|r| r.verdict == Verdict::Booted);
    let report = Report {
        source: opts.source.clone(),
        size_bytes: source.len(),
        bus: opts.bus,
        survey,
        runs,
        booted,
        out: opts.out.clone(),
        peak_rss_bytes: peak_rss(),
    };
    let json = serde_json::to_string_pretty(&report).unwrap_or_default();
    let rp = opts.out.join("report.json");
    std::fs::write(&rp, json + "\n").map_err(|e| Error::io("writing", &rp, e))?;
    if let Some(e) = failed {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    Ok(report)
}

/// The I/O log: coalesced requests, one line each, at most this many lines.
const IO_LOG_LINES: u64 = 200_000;

/// How often the screen is looked at.
const SCREEN_EVERY: Duration = Duration::from_secs(2);

fn one(
    opts: &Options,
    fw: Firmware,
    source: Arc<dyn BlockDev>,
    rules: Rules,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Run> {
    let work = WorkDir(crate::access::mount::private_dir(WORK_TAG)?);
    let tag = match fw {
        Firmware::Bios => "bios",
        Firmware::Uefi => "uefi",
    };
    // the guest's writes go to a sparse file next to the evidence (a disk, where the
    // private folder may be tmpfs, which is memory), removed when the run ends
    let overlay_path = opts.out.join(format!(".{tag}-overlay.tmp"));
    let _overlay_file = RemoveOnDrop(overlay_path.clone());
    let overlay = Arc::new(Overlay::new(source, OverlayStore::File(overlay_path))?);
    let (traced, tap) = Traced::new(overlay.clone());
    let traced: Arc<dyn BlockDev> = Arc::new(traced);
    let sock = work.0.join("nbd.sock");
    let server = Server::bind(&Listen::Unix(sock.clone()))?;
    let stop_server = CancelToken::new();
    let serial_log = opts.out.join(format!("{tag}-serial.log"));
    let firmware_log = opts.out.join(format!("{tag}-firmware.log"));
    let io_log = opts.out.join(format!("{tag}-io.log"));
    let spec = MachineSpec {
        firmware: fw,
        bus: opts.bus,
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        accel: opts.accel.resolve(),
        net: opts.net,
        nbd_socket: sock,
        export: "boot-test".into(),
        work: work.0.clone(),
        serial_log: serial_log.clone(),
        firmware_log: firmware_log.clone(),
    };
    std::thread::scope(|scope| -> Result<Run> {
        let serving = scope.spawn(|| {
            server.serve(
                traced.clone(),
                &ServeOptions {
                    name: "boot-test".into(),
                    writable: true,
                    log: None,
                },
                &stop_server,
            )
        });
        let stop = StopOnDrop(&stop_server);
        let r = watch(opts, fw, &spec, rules, &tap, &io_log, cancel, progress);
        drop(stop);
        let _ = serving.join();
        let mut run = r?;
        run.written_bytes = run.written_bytes.max(overlay.written_bytes());
        Ok(run)
    })
}

/// Starts the machine and follows it until the judge decides, the time runs out or the
/// run is cancelled; stops the machine in every case.
#[allow(clippy::too_many_arguments)]
fn watch(
    opts: &Options,
    fw: Firmware,
    spec: &MachineSpec,
    rules: Rules,
    tap: &TraceTap,
    io_log: &Path,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<Run> {
    let tag = match fw {
        Firmware::Bios => "bios",
        Firmware::Uefi => "uefi",
    };
    let mut judge = Judge::new(rules)?;
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(io_log).map_err(|e| Error::io("creating", io_log, e))?,
    );
    let mut machine = Machine::start(spec)?;
    // one clock for the disk, the consoles, the screen and QEMU's events
    let start = tap.start();
    let mut serial = Follow::new(&spec.serial_log);
    let mut firmware = Follow::new(&spec.firmware_log);
    let mut pcap = machine.pcap.as_deref().map(Follow::new);
    let mut dhcp = DhcpWatch::default();
    let mut dhcp_requests = 0u64;
    let mut screenshots = Vec::new();
    let scratch = spec.work.join("screen.png");
    let mut screens: Vec<blake3::Hash> = Vec::new();
    let mut still_since = 0.0f64;
    let mut next_screen = Duration::ZERO;
    let (mut read_bytes, mut written_bytes, mut lines) = (0u64, 0u64, 0u64);
    let mut pending: Option<(bool, u64, u64, f64)> = None;
    let mut shutdown = false;
    let mut failure: Option<Error> = None;
    while !judge.done() {
        if cancel.is_cancelled() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let now = start.elapsed();
        let t = now.as_secs_f64();
        let mut obs = Vec::new();
        let (ios, dropped) = tap.drain();
        if dropped > 0 {
            judge.disk_busy(t);
        }
        for io in ios {
            if io.write {
                written_bytes += io.len;
            } else {
                read_bytes += io.len;
            }
            // the log merges runs of adjacent requests of one kind
            match &mut pending {
                Some((w, off, len, _)) if *w == io.write && *off + *len == io.offset => {
                    *len += io.len;
                }
                _ => {
                    if let Some((w, off, len, at)) = pending.take() {
                        if lines < IO_LOG_LINES {
                            let _ = writeln!(log, "{}", trace_file::line(at, w, off, len));
                            lines += 1;
                        }
                    }
                    pending = Some((io.write, io.offset, io.len, io.t));
                }
            }
            obs.push(Observation::Io {
                t: io.t,
                write: io.write,
                offset: io.offset,
                len: io.len,
            });
        }
        let text = serial.read_new();
        if !text.is_empty() {
            obs.push(Observation::Serial {
                t,
                text: String::from_utf8_lossy(&text).into_owned(),
            });
        }
        let text = firmware.read_new();
        if !text.is_empty() {
            obs.push(Observation::Firmware {
                t,
                text: String::from_utf8_lossy(&text).into_owned(),
            });
        }
        if let Some(p) = &mut pcap {
            let n = dhcp.feed(&p.read_new());
            if n > 0 {
                dhcp_requests += n;
                obs.push(Observation::Dhcp { t });
            }
        }
        // whether QEMU has exited is asked before its last events are read, and the reader
        // is given a moment: a power-off or panic just before the exit is never lost
        let exited = machine.exited();
        if exited {
            std::thread::sleep(Duration::from_millis(200));
        }
        for ev in machine.events() {
            let name = ev.get("event").and_then(|e| e.as_str()).unwrap_or("");
            let guest = ev
                .get("data")
                .and_then(|d| d.get("guest"))
                .and_then(|g| g.as_bool())
                .unwrap_or(false);
            match name {
                "RESET" if guest => {
                    // a new boot: its screen is judged afresh
                    screens.clear();
                    still_since = t;
                    obs.push(Observation::Reset { t });
                }
                "GUEST_PANICKED" => obs.push(Observation::Panicked { t }),
                "SHUTDOWN" if guest => shutdown = true,
                _ => {}
            }
        }
        if exited {
            if shutdown {
                obs.push(Observation::PoweredOff { t });
            } else {
                failure = Some(Error::Unsupported(format!(
                    "QEMU stopped unexpectedly: {}",
                    machine.stderr_text().trim()
                )));
            }
        } else if now >= next_screen {
            next_screen = now + SCREEN_EVERY;
            if machine.screendump(&scratch).is_ok() {
                if let Ok(png) = std::fs::read(&scratch) {
                    // a blinking cursor flips the text screen between two pictures: a
                    // screen that only returns to one of its last few pictures is still
                    let h = blake3::hash(&png);
                    if !screens.contains(&h) {
                        if screens.len() == 4 {
                            screens.remove(0);
                        }
                        screens.push(h);
                        still_since = t;
                    } else {
                        obs.push(Observation::ScreenStill {
                            t,
                            still: t - still_since,
                        });
                    }
                }
            }
        }
        for o in &obs {
            for r in judge.feed(o) {
                let shot = opts
                    .out
                    .join(format!("{tag}-stage-{}.png", r.stage.number()));
                if machine.screendump(&shot).is_ok() {
                    screenshots.push(shot);
                }
                progress(Progress::Stage(fw, r));
            }
            if judge.done() {
                break;
            }
        }
        if failure.is_some() {
            break;
        }
        if t >= opts.timeout {
            judge.timeout(opts.timeout);
        }
    }
    if let Some((w, off, len, at)) = pending.take() {
        if lines < IO_LOG_LINES {
            let _ = writeln!(log, "{}", trace_file::line(at, w, off, len));
        }
    }
    let _ = log.flush();
    let end = opts.out.join(format!("{tag}-final.png"));
    if !machine.exited() && machine.screendump(&end).is_ok() {
        screenshots.push(end);
    }
    let kvm = machine.kvm;
    machine.stop();
    if let Some(e) = failure {
        return Err(e);
    }
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    Ok(Run {
        firmware: fw,
        kvm,
        verdict: judge.verdict(),
        stages: judge.reached().to_vec(),
        seconds: start.elapsed().as_secs_f64(),
        screenshots,
        serial_log: spec.serial_log.clone(),
        firmware_log: spec.firmware_log.clone(),
        io_log: io_log.to_path_buf(),
        read_bytes,
        written_bytes,
        outside_requests: judge.outside(),
        dhcp_requests,
    })
}
