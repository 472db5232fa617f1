//! System calls for PID 1: mount, reboot, process groups and terminals, reaping, signals,
//! and `finit_module(2)` (the compressed-file flag comes from `<linux/module.h>`).
//!
//! They go through `nix`, keeping the `libc` types in the signatures so the callers' flag
//! constants stay as they are. Three calls stay on `libc`, each for a reason given at it:
//! `klogctl` (nix has no wrapper), `waitpid` (nix's loses a child killed by a real-time
//! signal) and, through a nix-generated ioctl, `TIOCSCTTY`. The only unsafe code of `init/`;
//! every block says why it is sound.
#![allow(unsafe_code)]

use nix::errno::Errno;
use nix::kmod::ModuleInitFlags;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// mount(2). `data` is the filesystem's option string.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    nix::mount::mount(
        Some(source),
        target,
        Some(fstype),
        MsFlags::from_bits_retain(flags),
        Some(data),
    )?;
    Ok(())
}

/// umount2(2) with the given flags (0, or `libc::MNT_DETACH`).
pub fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    nix::mount::umount2(target, MntFlags::from_bits_retain(flags))?;
    Ok(())
}

/// sync(2): flush every filesystem and block device.
pub fn sync() {
    nix::unistd::sync();
}

/// How the machine stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// ACPI power-off.
    Off,
    /// Restart.
    Reboot,
}

/// reboot(2). Returns only on failure.
pub fn power(how: Power) -> io::Error {
    let mode = match how {
        Power::Off => RebootMode::RB_POWER_OFF,
        Power::Reboot => RebootMode::RB_AUTOBOOT,
    };
    match nix::sys::reboot::reboot(mode) {
        Err(e) => e.into(),
        Ok(never) => match never {},
    }
}

// TIOCSCTTY takes its argument (1: steal the terminal from another session if need be) by
// value, so it is a "bad" ioctl in nix's terms.
nix::ioctl_write_int_bad!(
    /// ioctl(TIOCSCTTY) on `fd` with the integer `data`.
    tiocsctty,
    libc::TIOCSCTTY
);

/// Makes this process a session leader with its stdin terminal as the controlling terminal,
/// so that Ctrl-C reaches it. "Already a session leader" is fine.
pub fn take_controlling_tty() -> io::Result<()> {
    match nix::unistd::setsid() {
        Ok(_) | Err(Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    // SAFETY: TIOCSCTTY takes a plain integer and touches no memory of ours; fd 0 is only
    // read by the kernel (a closed fd makes the call fail with EBADF).
    unsafe { tiocsctty(0, 1) }?;
    Ok(())
}

/// Sets the kernel's console log level: messages below `level` still reach the consoles
/// (with 4: errors and worse, such as disk I/O errors), routine notices no longer print over
/// the menu.
///
/// On `libc`: nix has no `klogctl` (its `syslog` module is the userspace syslog(3)).
pub fn console_loglevel(level: i32) -> io::Result<()> {
    // SAFETY: SYSLOG_ACTION_CONSOLE_LEVEL (8) reads no buffer; it takes the level as its length.
    let r = unsafe { libc::klogctl(8, std::ptr::null_mut(), level) };
    Errno::result(r)?;
    Ok(())
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Waits for any child. `Ok(None)` when there is nothing to wait for (ECHILD) or a signal
/// interrupted the wait (EINTR), so the caller can look at its signal flag.
///
/// On `libc`: nix's `waitpid` decodes the status into its `Signal` enum, which has no
/// real-time signals; for a child killed by one it reaps the child and then returns EINVAL,
/// so PID 1 would never learn which process ended (a console's menu would not restart).
pub fn wait_any(block: bool) -> io::Result<Option<(u32, Exit)>> {
    let mut status: libc::c_int = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: status is a valid out-pointer for the duration of the call.
    let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
    let pid = match Errno::result(pid) {
        Ok(0) => return Ok(None),
        Ok(pid) => pid,
        Err(Errno::ECHILD | Errno::EINTR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let exit = if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    };
    Ok(Some((pid.unsigned_abs(), exit)))
}

static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
}

extern "C" fn on_child(_sig: libc::c_int) {}

/// Sets the disposition of `sig`. Interrupted system calls restart (SA_RESTART, as
/// `signal(3)` sets it). sigaction has no safe wrapper in nix: a handler must be
/// async-signal-safe, which the compiler cannot check.
///
/// # Safety
/// `handler`, when it is a function, must be async-signal-safe.
unsafe fn set_disposition(sig: Signal, handler: SigHandler) {
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the caller vouches for the handler; sigaction fails only for an invalid signal
    // or for SIGKILL/SIGSTOP, which no caller passes.
    let _ = unsafe { sigaction(sig, &action) };
}

/// PID 1's signals: SIGTERM (reboot), SIGUSR1/SIGUSR2 (halt/power off, as busybox's
/// `poweroff` sends them) and SIGINT (Ctrl-Alt-Del) set a flag read by [`take_signal`];
/// SIGCHLD gets an empty handler. Ctrl-Alt-Del is routed to PID 1 as SIGINT rather than
/// rebooting at once.
pub fn install_pid1_signals() {
    for sig in [
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGINT,
    ] {
        // SAFETY: the handler is async-signal-safe (one atomic store) and lives forever.
        unsafe { set_disposition(sig, SigHandler::Handler(on_signal)) };
    }
    // SAFETY: an empty handler is async-signal-safe.
    unsafe { set_disposition(Signal::SIGCHLD, SigHandler::Handler(on_child)) };
    // fails only without CAP_SYS_BOOT, and then Ctrl-Alt-Del cannot reboot either
    let _ = nix::sys::reboot::set_cad_enabled(false);
}

/// The last signal caught by [`install_pid1_signals`], if any, clearing it.
pub fn take_signal() -> Option<i32> {
    match LAST_SIGNAL.swap(0, Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Ignores SIGINT and SIGQUIT in this process (the console, while a child job owns Ctrl-C);
/// `restore` puts the defaults back.
pub fn ignore_interrupts(ignore: bool) {
    let h = if ignore {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    for sig in [Signal::SIGINT, Signal::SIGQUIT] {
        // SAFETY: SIG_IGN and SIG_DFL run no code of ours.
        unsafe { set_disposition(sig, h) };
    }
}

/// Ignores SIGXFSZ, which the kernel sends when a write passes the file size limit
/// (`ulimit -f`) and whose default kills the process: ignored, the write fails with EFBIG
/// instead, and the job reports the limit and cleans up ([`crate::error::Error::FileTooLarge`]).
pub fn ignore_file_size_signal() {
    // SAFETY: SIG_IGN runs no code of ours.
    unsafe { set_disposition(Signal::SIGXFSZ, SigHandler::SigIgn) };
}

/// Sends signal `sig` to a process; 0 only checks that the process exists. A number nix's
/// `Signal` does not name (a real-time signal) is refused with EINVAL.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let sig = match sig {
        0 => None,
        s => Some(Signal::try_from(s)?),
    };
    nix::sys::signal::kill(Pid::from_raw(pid), sig)?;
    Ok(())
}

/// `MODULE_INIT_COMPRESSED_FILE`: the file is compressed and the kernel decompresses it
/// (Linux 6.1+ with `CONFIG_MODULE_DECOMPRESS`; otherwise the call fails with EOPNOTSUPP).
/// nix's `ModuleInitFlags` does not name it, so it is passed as raw bits.
pub const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// Loads the kernel module in `file` with the parameter string `params` (`finit_module(2)`).
/// Needs CAP_SYS_MODULE. The kernel reads the whole file during the call; `file` may be closed
/// afterwards.
pub fn finit_module(file: &File, params: &CStr, flags: libc::c_uint) -> io::Result<()> {
    nix::kmod::finit_module(file, params, ModuleInitFlags::from_bits_retain(flags))?;
    Ok(())
}
static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_interrupt(_sig: libc::c_int) {
    SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Installs SIGINT, SIGTERM and SIGHUP (the terminal went away) handlers that only set a flag, read by [`signalled`]: the
/// CLI turns the flag into a job's cancellation (a face concern, so it lives here, not in
/// the block-device layer).
/// Interrupted system calls restart (SA_RESTART, as `signal(3)` sets it).
pub fn catch_interrupts() {
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_interrupt),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        // SAFETY: the handler is async-signal-safe (one atomic store) and lives forever.
        // sigaction fails only for an invalid signal, which these are not.
        let _ = unsafe { nix::sys::signal::sigaction(sig, &action) };
    }
}

/// True once SIGINT, SIGTERM or SIGHUP arrived after [`catch_interrupts`].
pub fn signalled() -> bool {
    SIGNALLED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Spawns `cmd` so that the kernel kills it (SIGKILL) when the thread that spawned it ends:
/// a helper such as QEMU never outlives a Lifeboat that was killed or crashed. Spawn from a
/// thread that lives as long as the child (the kernel ties the signal to that thread).
pub fn spawn_dying_with_parent(cmd: &mut std::process::Command) -> io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid, kill), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // the parent may have died before prctl took effect
            if libc::getppid() != parent {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
    cmd.spawn()
}
