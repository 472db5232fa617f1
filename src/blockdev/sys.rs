//! The only ioctl code in Lifeboat: block-device geometry, read-only flag, partition re-read
//! and BLKPG partition nodes. Request numbers come from `<linux/fs.h>` and `<linux/blkpg.h>`.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

// <linux/fs.h>: _IO(0x12, n) and _IOR(0x12, 114, size_t)
const BLKROGET: libc::c_ulong = 0x125e;
const BLKRRPART: libc::c_ulong = 0x125f;
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKPG: libc::c_ulong = 0x1269;
const BLKPBSZGET: libc::c_ulong = 0x127b;
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;

// <linux/blkpg.h>
const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_DEL_PARTITION: libc::c_int = 2;

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Size of the block device in bytes (BLKGETSIZE64).
pub fn size_bytes(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid for the call.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) })?;
    Ok(size)
}

/// Logical sector size in bytes (BLKSSZGET).
pub fn logical_sector_size(file: &File) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which is valid for the call.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut v as *mut libc::c_int) })?;
    u32::try_from(v).map_err(|_| io::Error::other("negative logical sector size"))
}

/// Physical sector size in bytes (BLKPBSZGET).
pub fn physical_sector_size(file: &File) -> io::Result<u32> {
    let mut v: libc::c_uint = 0;
    // SAFETY: BLKPBSZGET writes one unsigned int through the pointer, valid for the call.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKPBSZGET, &mut v as *mut libc::c_uint) })?;
    Ok(v)
}

/// Whether the kernel marks the device read-only (BLKROGET).
pub fn is_read_only(file: &File) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer, which is valid for the call.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKROGET, &mut v as *mut libc::c_int) })?;
    Ok(v != 0)
}

/// Asks the kernel to re-read the partition table (BLKRRPART). Fails with EBUSY while a
/// partition is in use, and with EINVAL on kernels or devices without partition parsing.
pub fn reread_partitions(file: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKRRPART, 0) })
}

fn blkpg(file: &File, op: libc::c_int, pno: u32, start: u64, length: u64) -> io::Result<()> {
    let too_big = |_| io::Error::from(io::ErrorKind::InvalidInput);
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(too_big)?,
        length: i64::try_from(length).map_err(too_big)?,
        pno: libc::c_int::try_from(pno).map_err(too_big)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` and the `part` it points to live on this stack frame for the whole call,
    // and their layouts match struct blkpg_ioctl_arg / blkpg_partition.
    check(unsafe { libc::ioctl(file.as_raw_fd(), BLKPG, &mut arg as *mut BlkpgIoctlArg) })
}

/// Creates partition node `pno` covering `length` bytes at byte `start` (BLKPG_ADD_PARTITION).
/// This works on kernels without MSDOS/GPT parsers, where BLKRRPART creates nothing.
pub fn add_partition(file: &File, pno: u32, start: u64, length: u64) -> io::Result<()> {
    blkpg(file, BLKPG_ADD_PARTITION, pno, start, length)
}

/// Removes partition node `pno` (BLKPG_DEL_PARTITION).
pub fn delete_partition(file: &File, pno: u32) -> io::Result<()> {
    blkpg(file, BLKPG_DEL_PARTITION, pno, 0, 0)
}

/// Drops the clean page-cache pages of `file` (POSIX_FADV_DONTNEED), so that the next reads
/// come from the device. Call after `fsync`, which makes the pages clean.
pub fn drop_cache(file: &File) -> io::Result<()> {
    // SAFETY: posix_fadvise only reads its integer arguments.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Starts asynchronous readahead of `len` bytes at `offset` (POSIX_FADV_WILLNEED).
pub fn will_need(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: posix_fadvise only reads its integer arguments.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_WILLNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

static SIGNALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    SIGNALLED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Installs SIGINT and SIGTERM handlers that only set a flag, read by [`signalled`].
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler is async-signal-safe (one atomic store) and lives forever.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// True once SIGINT or SIGTERM arrived after [`catch_interrupts`].
pub fn signalled() -> bool {
    SIGNALLED.load(std::sync::atomic::Ordering::SeqCst)
}
