//! Raw system calls for PID 1: mount, reboot, process groups and terminals, reaping, signals,
//! and `finit_module(2)` (the flag value comes from `<linux/module.h>`).
//! The only unsafe code of `init/`; every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// mount(2). `data` is the filesystem's option string.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let source = CString::new(source).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fstype = CString::new(fstype).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let data = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let target = cstr(target)?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })
}

/// umount2(2) with the given flags (0, or `libc::MNT_DETACH`).
pub fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: a valid NUL-terminated path that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })
}

/// sync(2): flush every filesystem and block device.
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
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
    let cmd = match how {
        Power::Off => libc::RB_POWER_OFF,
        Power::Reboot => libc::RB_AUTOBOOT,
    };
    // SAFETY: reboot takes a plain integer command; on success it does not return.
    unsafe { libc::reboot(cmd) };
    io::Error::last_os_error()
}

/// Makes this process a session leader with its stdin terminal as the controlling terminal,
/// so that Ctrl-C reaches it. "Already a session leader" is fine.
pub fn take_controlling_tty() -> io::Result<()> {
    // SAFETY: setsid and ioctl(TIOCSCTTY) take plain integers.
    unsafe {
        if libc::setsid() < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
            return Err(io::Error::last_os_error());
        }
        check(libc::ioctl(0, libc::TIOCSCTTY, 1))
    }
}

/// Sets the kernel's console log level: messages below `level` still reach the consoles
/// (with 4: errors and worse, such as disk I/O errors), routine notices no longer print over
/// the menu.
pub fn console_loglevel(level: i32) -> io::Result<()> {
    // SAFETY: SYSLOG_ACTION_CONSOLE_LEVEL (8) reads no buffer; it takes the level as its length.
    check(unsafe { libc::klogctl(8, std::ptr::null_mut(), level) })
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
pub fn wait_any(block: bool) -> io::Result<Option<(u32, Exit)>> {
    let mut status: libc::c_int = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: status is a valid out-pointer for the duration of the call.
    let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
    if pid < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ECHILD) | Some(libc::EINTR) => Ok(None),
            _ => Err(e),
        };
    }
    if pid == 0 {
        return Ok(None);
    }
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

/// PID 1's signals: SIGTERM (reboot), SIGUSR1/SIGUSR2 (halt/power off, as busybox's
/// `poweroff` sends them) and SIGINT (Ctrl-Alt-Del) set a flag read by [`take_signal`];
/// SIGCHLD gets an empty handler so that a blocking wait returns EINTR for it too.
/// Ctrl-Alt-Del is routed to PID 1 as SIGINT rather than rebooting at once.
pub fn install_pid1_signals() {
    for sig in [libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2, libc::SIGINT] {
        // SAFETY: the handler is async-signal-safe (one atomic store) and lives forever.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    // SAFETY: an empty handler is async-signal-safe; reboot(CAD_OFF) takes a plain integer.
    unsafe {
        libc::signal(libc::SIGCHLD, on_child as *const () as libc::sighandler_t);
        libc::reboot(libc::RB_DISABLE_CAD);
    }
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
    let h = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: SIG_IGN and SIG_DFL are always valid dispositions.
        unsafe {
            libc::signal(sig, h);
        }
    }
}

/// Sends a signal to a process.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes plain integers.
    check(unsafe { libc::kill(pid, sig) })
}

/// `MODULE_INIT_COMPRESSED_FILE`: the file is compressed and the kernel decompresses it
/// (Linux 6.1+ with `CONFIG_MODULE_DECOMPRESS`; otherwise the call fails with EOPNOTSUPP).
pub const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// Loads the kernel module in `file` with the parameter string `params` (`finit_module(2)`).
/// Needs CAP_SYS_MODULE. The kernel reads the whole file during the call; `file` may be closed
/// afterwards.
pub fn finit_module(file: &File, params: &CStr, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: the fd is open for the whole call (borrowed from `file`), `params` is a valid
    // NUL-terminated string that outlives the call, and the kernel only reads from both.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
