//! How far a boot got, decided from what Lifeboat alone sees: the disk's reads and writes
//! (mapped to regions: boot code, boot loaders, kernels, init, filesystems), the serial and
//! firmware debug consoles, QEMU's events (resets, panics, power-off) and whether the screen
//! is still. Pure: fed [`Observation`]s with their times, it keeps the stages reached and the
//! failure sign, and gives the [`Verdict`]. The runner feeds it live; tests feed it recorded
//! traces.

use crate::error::{Error, Result};
use regex_lite::Regex;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A stage of a boot, in the order a boot passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// 1: the firmware read the boot code (MBR code then the BIOS-boot partition, the
    /// post-MBR gap or a partition's boot sector; or the ESP's boot loader).
    BootCode = 1,
    /// 2: the boot loader read an OS kernel or initrd (half of it, or 4 MiB).
    Kernel = 2,
    /// 3: the OS started its userland from this disk: it read init, or wrote to a filesystem.
    Userland = 3,
    /// 4: the OS is up: a login prompt or `--expect` on the serial console, a DHCP request,
    /// or a screen that settled after stage 3 with no failure sign.
    Up = 4,
}

impl Stage {
    /// All stages, in order.
    pub const ALL: [Stage; 4] = [Stage::BootCode, Stage::Kernel, Stage::Userland, Stage::Up];

    /// The stage's number (1..=4).
    pub fn number(self) -> u8 {
        self as u8
    }

    /// What the stage means, for people.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::BootCode => "the firmware read the boot code",
            Stage::Kernel => "the boot loader loaded an OS kernel",
            Stage::Userland => "the OS started its userland from this disk",
            Stage::Up => "the OS is up",
        }
    }
}

/// What a region of the disk is, for the stage it proves when read (or written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionKind {
    /// Boot code run by a BIOS after the MBR's: the BIOS-boot partition, the post-MBR gap of
    /// an MBR disk, a partition's boot sector.
    BootCode,
    /// An EFI boot loader on the ESP.
    Loader,
    /// An OS kernel or initrd.
    Kernel,
    /// The first program of a userland (`/sbin/init`, systemd).
    Init,
    /// A filesystem the OS may write to once it runs (not the ESP).
    Filesystem,
}

/// A range of the disk with a meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Region {
    /// What it is.
    pub kind: RegionKind,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// What to call it: `"BIOS-boot partition (p1)"`, `"/boot/vmlinuz (p3)"`.
    pub what: String,
}

/// Something seen during the boot, at `t` seconds after the machine started.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The guest read (or wrote) `len` bytes at `offset` of the disk.
    Io {
        /// Seconds since start.
        t: f64,
        /// A write.
        write: bool,
        /// First byte.
        offset: u64,
        /// Bytes.
        len: u64,
    },
    /// New text on the serial console.
    Serial {
        /// Seconds since start.
        t: f64,
        /// The text (any bytes, lossily decoded).
        text: String,
    },
    /// New text on the firmware's debug console (SeaBIOS copies its screen text there).
    Firmware {
        /// Seconds since start.
        t: f64,
        /// The text.
        text: String,
    },
    /// The guest reset the machine (a reboot).
    Reset {
        /// Seconds since start.
        t: f64,
    },
    /// QEMU reported a guest panic (pvpanic).
    Panicked {
        /// Seconds since start.
        t: f64,
    },
    /// The guest powered the machine off.
    PoweredOff {
        /// Seconds since start.
        t: f64,
    },
    /// The screen has not changed, and the disk has been idle, for `still` seconds.
    ScreenStill {
        /// Seconds since start.
        t: f64,
        /// For how long.
        still: f64,
    },
    /// The guest asked for a DHCP lease.
    Dhcp {
        /// Seconds since start.
        t: f64,
    },
}

impl Observation {
    /// When it was seen.
    pub fn time(&self) -> f64 {
        match self {
            Observation::Io { t, .. }
            | Observation::Serial { t, .. }
            | Observation::Firmware { t, .. }
            | Observation::Reset { t }
            | Observation::Panicked { t }
            | Observation::PoweredOff { t }
            | Observation::ScreenStill { t, .. }
            | Observation::Dhcp { t } => *t,
        }
    }
}

/// A stage reached: when, and the evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reached {
    /// The stage.
    pub stage: Stage,
    /// Seconds since start.
    pub t: f64,
    /// The evidence, for people: `"read /boot/vmlinuz (p3)"`.
    pub evidence: String,
}

/// A sign that the boot failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sign {
    /// The firmware found nothing to boot.
    NoBootDevice {
        /// What it said, or why we conclude it.
        evidence: String,
    },
    /// The kernel panicked.
    KernelPanic {
        /// The panic line, or the QEMU event.
        evidence: String,
    },
    /// The machine kept rebooting.
    RebootLoop {
        /// Resets seen.
        resets: u32,
    },
    /// The screen stayed still (and the disk idle) before the OS started from the disk: an
    /// error, a firmware menu, a boot loader prompt or an emergency shell.
    StillScreen {
        /// For how long, in seconds.
        still: f64,
    },
    /// The guest powered off before it was up.
    PoweredOff,
    /// The time ran out.
    Timeout {
        /// The limit, in seconds.
        seconds: f64,
    },
}

impl std::fmt::Display for Sign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sign::NoBootDevice { evidence } => write!(f, "no boot device ({evidence})"),
            Sign::KernelPanic { evidence } => write!(f, "kernel panic ({evidence})"),
            Sign::RebootLoop { resets } => write!(f, "reboot loop ({resets} resets)"),
            Sign::StillScreen { still } => write!(
                f,
                "the screen stayed still for {still:.0} s with the disk idle"
            ),
            Sign::PoweredOff => write!(f, "the machine powered off"),
            Sign::Timeout { seconds } => write!(f, "no verdict within {seconds:.0} s"),
        }
    }
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The OS started from the disk (stage 3) and then came up (stage 4).
    Booted,
    /// It stopped after `stage` (0: nothing was booted), with a failure sign.
    Failed {
        /// The last stage reached, 0..=3.
        stage: u8,
        /// Why it is a failure.
        sign: Sign,
    },
}

/// What the judge needs besides the observations.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The disk's regions (any order; they may overlap).
    pub regions: Vec<Region>,
    /// The disk's size: I/O past it is counted, never matched.
    pub disk_bytes: u64,
    /// `--expect`: when set, only this regex on the serial console proves stage 4.
    pub expect: Option<Regex>,
    /// Seconds of still screen and idle disk that count as settled.
    pub settle: f64,
    /// Guest resets without the OS coming up that make a reboot loop.
    pub loop_resets: u32,
}

/// Serial text kept to match across chunks (a prompt may arrive in pieces).
const KEEP_TEXT: usize = 4096;

/// Bytes of a kernel file read that count as loaded, when half the file is more.
const KERNEL_LOADED: u64 = 4 << 20;

/// The unit in which a kernel's distinct bytes read are counted.
const COUNT_BLOCK: u64 = 4096;

/// Seconds of writes after a write-proven stage 3 that show a running OS rather than a boot
/// loader's burst (Windows' boot manager writes its status file, then may stop on an error).
const WRITES_GO_ON: f64 = 2.0;

/// What holds for the boot in progress; a guest reset starts a new one.
#[derive(Debug, Default)]
struct Boot {
    /// Stages reached in this boot, with their times.
    stages: Vec<(Stage, f64)>,
    /// Distinct 4 KiB blocks read of each kernel file (by its name).
    kernel_blocks: HashMap<String, HashSet<u64>>,
    /// Stage 3 came from a write, not from reading init.
    userland_by_write: bool,
    /// Seconds of the last write to a filesystem.
    last_write: Option<f64>,
}

impl Boot {
    fn at(&self, s: Stage) -> Option<f64> {
        self.stages.iter().find(|(x, _)| *x == s).map(|(_, t)| *t)
    }
}

/// The stage machine; see the module doc.
#[derive(Debug)]
pub struct Judge {
    rules: Rules,
    /// Small regions (boot code, loaders, kernels, init) sorted by start, with the running
    /// maximum of ends for the overlap search.
    sorted: Vec<Region>,
    max_end: Vec<u64>,
    /// Filesystem regions (whole partitions: few, and wide), searched on their own.
    filesystems: Vec<Region>,
    /// Bytes of each kernel file, by its name.
    kernel_len: HashMap<String, u64>,
    has_kernel: bool,
    has_init: bool,
    /// Every stage's first time, for the report (across reboots).
    reached: Vec<Reached>,
    boot: Boot,
    sign: Option<Sign>,
    resets: u32,
    serial: String,
    firmware: String,
    /// I/O that fell outside the disk (a hostile or broken trace), counted.
    outside: u64,
    /// Seconds of the last disk I/O.
    last_io: f64,
    login: Regex,
    panic: Regex,
    no_boot: Regex,
}

impl Judge {
    /// A judge for a disk with these rules.
    pub fn new(rules: Rules) -> Result<Judge> {
        let (filesystems, mut sorted): (Vec<Region>, Vec<Region>) = rules
            .regions
            .iter()
            .cloned()
            .partition(|r| r.kind == RegionKind::Filesystem);
        sorted.sort_by_key(|r| (r.start, r.len));
        let mut max_end = Vec::with_capacity(sorted.len());
        let mut m = 0u64;
        for r in &sorted {
            m = m.max(r.start.saturating_add(r.len));
            max_end.push(m);
        }
        let mut kernel_len = HashMap::new();
        for r in sorted.iter().filter(|r| r.kind == RegionKind::Kernel) {
            *kernel_len.entry(r.what.clone()).or_insert(0u64) += r.len;
        }
        // the patterns are constants: an error here is a typo that every test catches
        let re = |p: &str| {
            Regex::new(p).map_err(|e| Error::Unsupported(format!("boot-test pattern {p}: {e}")))
        };
        Ok(Judge {
            has_kernel: !kernel_len.is_empty(),
            has_init: sorted.iter().any(|r| r.kind == RegionKind::Init),
            kernel_len,
            rules,
            sorted,
            max_end,
            filesystems,
            reached: Vec::new(),
            boot: Boot::default(),
            sign: None,
            resets: 0,
            serial: String::new(),
            firmware: String::new(),
            outside: 0,
            last_io: 0.0,
            login: re(r"(?mi)\blogin:[ \t]*$")?,
            panic: re(r"Kernel panic - not syncing[^\r\n]*")?,
            no_boot: re(
                r"(?i)(no bootable device[^\r\n]*|boot failed: not a bootable disk|no bootable option or device was found)",
            )?,
        })
    }

    /// The stages reached (each at its first time, across reboots), in the order reached.
    pub fn reached(&self) -> &[Reached] {
        &self.reached
    }

    /// The highest stage reached (0 when none).
    pub fn stage(&self) -> u8 {
        self.reached
            .iter()
            .map(|r| r.stage.number())
            .max()
            .unwrap_or(0)
    }

    /// The failure sign, once one was seen.
    pub fn sign(&self) -> Option<&Sign> {
        self.sign.as_ref()
    }

    /// I/O requests that fell outside the disk.
    pub fn outside(&self) -> u64 {
        self.outside
    }

    /// Seconds of the last disk I/O seen.
    pub fn last_io(&self) -> f64 {
        self.last_io
    }

    /// Whether the outcome is known: the OS is up, or a failure sign was seen.
    pub fn done(&self) -> bool {
        self.up() || self.sign.is_some()
    }

    fn up(&self) -> bool {
        self.boot.at(Stage::Up).is_some()
    }

    /// Whether the boot in progress reached `s`.
    fn has(&self, s: Stage) -> bool {
        self.boot.at(s).is_some()
    }

    /// The disk was busy at `t` with requests that were not recorded (the recorder's queue
    /// overflowed): it is not idle, whatever the screen does.
    pub fn disk_busy(&mut self, t: f64) {
        self.last_io = self.last_io.max(t);
    }

    /// Takes one observation; returns the stages it newly reached (usually none).
    pub fn feed(&mut self, o: &Observation) -> Vec<Reached> {
        if self.done() {
            return Vec::new();
        }
        let before = self.reached.len();
        match o {
            Observation::Io {
                t,
                write,
                offset,
                len,
            } => self.io(*t, *write, *offset, *len),
            Observation::Serial { t, text } => self.serial_text(*t, text),
            Observation::Firmware { text, .. } => {
                push_keep(&mut self.firmware, text);
                if self.stage() == 0 {
                    if let Some(m) = self.no_boot.find(&self.firmware) {
                        self.sign = Some(Sign::NoBootDevice {
                            evidence: format!("the firmware said \"{}\"", m.as_str().trim()),
                        });
                    }
                }
            }
            Observation::Reset { .. } => {
                self.resets += 1;
                // a new boot: stage 4 must follow stage 3 of the same boot
                self.boot = Boot::default();
                self.serial.clear();
                if self.resets >= self.rules.loop_resets.max(1) {
                    self.sign = Some(Sign::RebootLoop {
                        resets: self.resets,
                    });
                }
            }
            Observation::Panicked { .. } => {
                self.sign = Some(Sign::KernelPanic {
                    evidence: "QEMU reported a guest panic".into(),
                });
            }
            Observation::PoweredOff { .. } => self.sign = Some(Sign::PoweredOff),
            Observation::ScreenStill { t, still } => self.still(*t, *still),
            Observation::Dhcp { t } => {
                if self.rules.expect.is_none() {
                    self.reach(Stage::Up, *t, "the guest asked for a DHCP lease".into());
                }
            }
        }
        self.reached[before..].to_vec()
    }

    fn still(&mut self, t: f64, still: f64) {
        if still < self.rules.settle || t - self.last_io < self.rules.settle {
            return;
        }
        let Some(t3) = self.boot.at(Stage::Userland) else {
            self.sign = Some(if self.stage() == 0 {
                Sign::NoBootDevice {
                    evidence: format!(
                        "no boot code was read and the screen stayed still for {still:.0} s"
                    ),
                }
            } else {
                Sign::StillScreen { still }
            });
            return;
        };
        if self.rules.expect.is_some() {
            return;
        }
        // a settled screen is an OS that is up only when it also wrote after it started
        // (a real userland writes within seconds: its journal, logs, a random seed); when
        // writes were the only sign of a userland, they must have gone on for a while, or
        // it was a boot loader's burst followed by an error screen
        let wrote = match (self.boot.last_write, self.boot.userland_by_write) {
            (Some(w), false) => w > t3,
            (Some(w), true) => w >= t3 + WRITES_GO_ON,
            (None, _) => false,
        };
        if wrote {
            self.reach(
                Stage::Up,
                t,
                format!("the screen settled ({still:.0} s still, disk idle) after the OS wrote to its disk"),
            );
        } else {
            self.sign = Some(Sign::StillScreen { still });
        }
    }

    /// Ends the run with the time limit `seconds` reached (no-op when already done).
    pub fn timeout(&mut self, seconds: f64) {
        if !self.done() {
            self.sign = Some(Sign::Timeout { seconds });
        }
    }

    /// The verdict so far (a run that is not done is a timeout at the stage reached).
    pub fn verdict(&self) -> Verdict {
        if self.up() {
            return Verdict::Booted;
        }
        Verdict::Failed {
            stage: self.stage().min(3),
            sign: self.sign.clone().unwrap_or(Sign::Timeout { seconds: 0.0 }),
        }
    }

    fn reach(&mut self, stage: Stage, t: f64, evidence: String) {
        if self.has(stage) {
            return;
        }
        // stage 4 counts only after stage 3 of the same boot: a screen or prompt before the
        // OS started from the disk (an emergency shell, a firmware menu) is not a boot
        if stage == Stage::Up && !self.has(Stage::Userland) {
            return;
        }
        self.boot.stages.push((stage, t));
        if !self.reached.iter().any(|r| r.stage == stage) {
            self.reached.push(Reached { stage, t, evidence });
        }
    }

    fn serial_text(&mut self, t: f64, text: &str) {
        push_keep(&mut self.serial, text);
        if let Some(m) = self.panic.find(&self.serial) {
            self.sign = Some(Sign::KernelPanic {
                evidence: m.as_str().trim().to_string(),
            });
            return;
        }
        if self.stage() == 0 {
            if let Some(m) = self.no_boot.find(&self.serial) {
                self.sign = Some(Sign::NoBootDevice {
                    evidence: format!("the console said \"{}\"", m.as_str().trim()),
                });
                return;
            }
        }
        if !self.has(Stage::Userland) {
            return;
        }
        let hit = match &self.rules.expect {
            Some(re) => re.find(&self.serial).map(|m| {
                format!(
                    "the serial console matched --expect: \"{}\"",
                    m.as_str().trim()
                )
            }),
            None => self
                .login
                .find(&self.serial)
                .map(|_| "a login prompt on the serial console".to_string()),
        };
        if let Some(e) = hit {
            self.reach(Stage::Up, t, e);
        }
    }

    fn io(&mut self, t: f64, write: bool, offset: u64, len: u64) {
        let end = match offset.checked_add(len) {
            Some(e) if e <= self.rules.disk_bytes && len > 0 => e,
            _ => {
                self.outside += 1;
                return;
            }
        };
        self.last_io = self.last_io.max(t);
        if write {
            self.write(t, offset, end);
            return;
        }
        // regions overlapping [offset, end): those starting before `end` whose end is past
        // `offset`; max_end bounds the backward scan
        let upto = self.sorted.partition_point(|r| r.start < end);
        let mut hits: Vec<(RegionKind, usize, u64, u64)> = Vec::new();
        for i in (0..upto).rev() {
            if self.max_end[i] <= offset {
                break;
            }
            let r = &self.sorted[i];
            let r_end = r.start.saturating_add(r.len);
            if r_end > offset {
                hits.push((r.kind, i, r.start.max(offset), r_end.min(end)));
            }
        }
        // boot loaders read in aligned chunks (GRUB: 32 KiB), so the end of a kernel's chunk
        // may hold the first bytes of the file after it: a read that also touches boot code,
        // a loader or a kernel proves nothing about init
        let loader_read = hits.iter().any(|(k, ..)| {
            matches!(
                k,
                RegionKind::BootCode | RegionKind::Loader | RegionKind::Kernel
            )
        });
        for (kind, i, from, to) in hits {
            let what = self.sorted[i].what.clone();
            match kind {
                RegionKind::BootCode | RegionKind::Loader => {
                    self.reach(Stage::BootCode, t, format!("read {what}"));
                }
                RegionKind::Kernel => {
                    // loaded, not merely touched: half the file (or 4 MiB of it) read,
                    // counting each block once (a loader probing, a reboot loop)
                    let blocks = self.boot.kernel_blocks.entry(what.clone()).or_default();
                    for b in from / COUNT_BLOCK..to.div_ceil(COUNT_BLOCK) {
                        blocks.insert(b);
                    }
                    let total = self.kernel_len.get(&what).copied().unwrap_or(0);
                    let done = (blocks.len() as u64 * COUNT_BLOCK).min(total);
                    if done >= (total / 2).clamp(1, KERNEL_LOADED) {
                        let pct = (done * 100).checked_div(total).unwrap_or(100);
                        self.reach(
                            Stage::Kernel,
                            t,
                            format!("read {what} ({pct}% of it so far)"),
                        );
                    }
                }
                // init counts once a kernel was loaded: a boot loader searching its
                // directories (GRUB looking for a missing kernel) reads chunks that may hold
                // init's blocks
                RegionKind::Init if !loader_read && self.has(Stage::Kernel) => {
                    self.reach(Stage::Userland, t, format!("read {what}"));
                }
                _ => {}
            }
        }
    }

    fn write(&mut self, t: f64, offset: u64, end: u64) {
        let Some(fs) = self
            .filesystems
            .iter()
            .find(|r| r.start < end && r.start.saturating_add(r.len) > offset)
        else {
            return;
        };
        let what = fs.what.clone();
        if self.has(Stage::Userland) {
            self.boot.last_write = Some(t);
            return;
        }
        // writes prove a userland only where its init could not be located: a boot loader
        // writes before any kernel (grubenv), an initramfs replays a journal or runs fsck
        // before it finds init. They count once a kernel was loaded, or once the boot code
        // ran when no kernel file could be located either (Windows on NTFS, LVM, LUKS).
        if !self.has_init
            && (self.has(Stage::Kernel) || (!self.has_kernel && self.has(Stage::BootCode)))
        {
            self.boot.userland_by_write = true;
            self.boot.last_write = Some(t);
            self.reach(Stage::Userland, t, format!("wrote to {what}"));
        }
    }
}

/// Appends `text` to `buf`, keeping its last [`KEEP_TEXT`] bytes (at a char boundary).
fn push_keep(buf: &mut String, text: &str) {
    buf.push_str(text);
    if buf.len() > KEEP_TEXT {
        let mut cut = buf.len() - KEEP_TEXT;
        while !buf.is_char_boundary(cut) {
            cut += 1;
        }
        buf.drain(..cut);
    }
}
