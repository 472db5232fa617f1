//! Loop devices for `mount`: attach a file (a partition exposed by the FUSE server) to a free
//! loop device with `LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE` (Linux 5.8+, one atomic call that
//! sets the file, the offset, the flags and the block size), and detach it with `LOOP_CLR_FD`.
//!
//! Devices are attached with `LO_FLAGS_AUTOCLEAR`: once the filesystem mounted on one is
//! unmounted and the last opener closes it, the kernel detaches it by itself, so even a killed
//! server leaves no bound loop device once its mounts are gone. Detaching explicitly as well is
//! harmless. Request numbers and structures are those of `<linux/loop.h>`; the tests pin them.
//!
//! nix's ioctl macros generate `unsafe fn`s (the kernel reads the structure we pass), so this
//! module allows `unsafe_code` for its three calls, each with a `// SAFETY:` note.
#![allow(unsafe_code)]

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `<linux/loop.h>` request numbers.
mod ioctl {
    /// LOOP_CLR_FD: detach the backing file.
    pub const LOOP_CLR_FD: nix::sys::ioctl::ioctl_num_type = 0x4C01;
    /// LOOP_CONFIGURE: bind a file with its status in one call (struct loop_config).
    pub const LOOP_CONFIGURE: nix::sys::ioctl::ioctl_num_type = 0x4C0A;
    /// LOOP_CTL_GET_FREE (on /dev/loop-control): the number of a free device, made if needed.
    pub const LOOP_CTL_GET_FREE: nix::sys::ioctl::ioctl_num_type = 0x4C82;

    nix::ioctl_none_bad!(
        /// LOOP_CLR_FD on a loop device.
        loop_clr_fd,
        LOOP_CLR_FD
    );
    nix::ioctl_write_ptr_bad!(
        /// LOOP_CONFIGURE on a loop device; the kernel reads `data`.
        loop_configure,
        LOOP_CONFIGURE,
        super::LoopConfig
    );
    nix::ioctl_none_bad!(
        /// LOOP_CTL_GET_FREE on /dev/loop-control; returns the device number.
        loop_ctl_get_free,
        LOOP_CTL_GET_FREE
    );
}

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn io(op: &'static str, path: &Path, e: impl Into<std::io::Error>) -> Error {
    Error::io(op, path, e.into())
}

/// Attaches `file` to a free loop device (read-only unless `writable`, with logical block
/// size `block_size`) and returns the device's path, e.g. `/dev/loop7`, with an open handle
/// on it. The device detaches itself once nothing holds it open (autoclear), so the handle
/// must be kept until the device is mounted; [`detach`] also detaches it.
pub fn attach(file: &Path, writable: bool, block_size: u32) -> Result<(PathBuf, File)> {
    let backing = OpenOptions::new()
        .read(true)
        .write(writable)
        .open(file)
        .map_err(|e| io("opening the loop device's backing file", file, e))?;
    let ctl_path = Path::new("/dev/loop-control");
    let ctl = File::open(ctl_path).map_err(|e| io("opening", ctl_path, e))?;
    let mut name = [0u8; LO_NAME_SIZE];
    let bytes = file.as_os_str().as_encoded_bytes();
    let n = bytes.len().min(LO_NAME_SIZE - 1);
    name[..n].copy_from_slice(&bytes[..n]);
    let mut flags = LO_FLAGS_AUTOCLEAR;
    if !writable {
        flags |= LO_FLAGS_READ_ONLY;
    }
    let config = LoopConfig {
        fd: u32::try_from(backing.as_raw_fd()).map_err(|_| {
            io(
                "attaching a loop device to",
                file,
                std::io::Error::from_raw_os_error(libc::EBADF),
            )
        })?,
        block_size,
        info: LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: flags,
            lo_file_name: name,
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        },
        reserved: [0; 8],
    };
    // another process may take the free device between the two calls: try again
    let mut last = None;
    for _ in 0..10 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and touches no memory of ours; the fd
        // is borrowed from `ctl`, open for the call.
        let num = unsafe { ioctl::loop_ctl_get_free(ctl.as_raw_fd()) }
            .map_err(|e| io("finding a free loop device", ctl_path, e))?;
        let dev = PathBuf::from(format!("/dev/loop{num}"));
        let loopf = OpenOptions::new()
            .read(true)
            .write(writable)
            .open(&dev)
            .map_err(|e| io("opening", &dev, e))?;
        // SAFETY: `config` lives on this stack frame for the whole call and has the layout of
        // struct loop_config; the kernel only reads it.
        match unsafe { ioctl::loop_configure(loopf.as_raw_fd(), &config) } {
            Ok(_) => return Ok((dev, loopf)),
            Err(nix::errno::Errno::EBUSY) => last = Some(nix::errno::Errno::EBUSY),
            Err(e) => return Err(io("attaching a loop device to", file, e)),
        }
    }
    Err(io(
        "attaching a loop device to",
        file,
        last.unwrap_or(nix::errno::Errno::EBUSY),
    ))
}

/// Detaches loop device `dev`. A device that is already free (or gone) is not an error.
pub fn detach(dev: &Path) -> Result<()> {
    let f = match File::open(dev) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("opening", dev, e)),
    };
    // SAFETY: LOOP_CLR_FD takes no argument and touches no memory of ours.
    match unsafe { ioctl::loop_clr_fd(f.as_raw_fd()) } {
        Ok(_) | Err(nix::errno::Errno::ENXIO) => Ok(()),
        Err(e) => Err(io("detaching the loop device", dev, e)),
    }
}

/// The file loop device `dev` (`/dev/loopN`) is bound to, from sysfs; `None` when free.
pub fn backing_file(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?.to_str()?;
    let s = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    let s = s.trim_end_matches('\n');
    (!s.is_empty()).then(|| PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn structs_match_linux_loop_h() {
        // loop_info64: 5 u64, 4 u32, 2×64 + 32 bytes, 2 u64 = 232; loop_config: 2 u32 + 232 + 64
        assert_eq!(std::mem::size_of::<super::LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<super::LoopConfig>(), 304);
    }
}
