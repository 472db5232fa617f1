//! The only ioctl code in Lifeboat: block-device geometry, read-only flag, partition re-read
//! and BLKPG partition nodes, plus page-cache hints. (The CLI's interrupt flag is a face
//! concern and lives in `init::sys`.)
//!
//! System calls go through `nix`. Its ioctl macros generate `unsafe fn`s (the kernel writes
//! through the pointer we pass, which nix cannot check), so each call below has a `// SAFETY:`
//! note; `posix_fadvise` has a safe nix wrapper. Request numbers are built with nix's
//! `request_code_*!` macros from the `_IO`/`_IOR` definitions in `<linux/fs.h>`; the test at
//! the bottom pins them to the kernel's numbers.
#![allow(unsafe_code)]

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// The ioctl wrappers that nix's macros generate: each is an `unsafe fn` taking the raw fd
/// and, for the reads, a pointer the kernel writes one value through.
mod ioctl {
    use nix::sys::ioctl::ioctl_num_type;

    /// `_IO(0x12, 94)`: BLKROGET, reads an int (`1` when the device is read-only).
    pub const BLKROGET: ioctl_num_type = nix::request_code_none!(0x12, 94);
    /// `_IO(0x12, 95)`: BLKRRPART, re-read the partition table.
    pub const BLKRRPART: ioctl_num_type = nix::request_code_none!(0x12, 95);
    /// `_IO(0x12, 104)`: BLKSSZGET, reads the logical sector size as an int.
    pub const BLKSSZGET: ioctl_num_type = nix::request_code_none!(0x12, 104);
    /// `_IO(0x12, 105)`: BLKPG, add or delete one partition node.
    pub const BLKPG: ioctl_num_type = nix::request_code_none!(0x12, 105);
    /// `_IO(0x12, 123)`: BLKPBSZGET, reads the physical sector size as an unsigned int.
    pub const BLKPBSZGET: ioctl_num_type = nix::request_code_none!(0x12, 123);
    /// `_IOR(0x12, 114, size_t)`: BLKGETSIZE64, reads the size in bytes as a u64. The header
    /// encodes `size_t` although the kernel writes 8 bytes, hence the explicit size.
    pub const BLKGETSIZE64: ioctl_num_type =
        nix::request_code_read!(0x12, 114, std::mem::size_of::<libc::size_t>());

    // The numbers above are "bad" in nix's sense (their `_IO` encoding does not describe the
    // argument), so they go through the `_bad` macros, which take the finished number.
    nix::ioctl_read_bad!(
        /// BLKROGET on `fd`, writing the flag through `data`.
        blkroget,
        BLKROGET,
        libc::c_int
    );
    nix::ioctl_none_bad!(
        /// BLKRRPART on `fd`.
        blkrrpart,
        BLKRRPART
    );
    nix::ioctl_read_bad!(
        /// BLKSSZGET on `fd`, writing the size through `data`.
        blksszget,
        BLKSSZGET,
        libc::c_int
    );
    nix::ioctl_write_ptr_bad!(
        /// BLKPG on `fd`; the kernel reads `data` and the partition it points to.
        blkpg,
        BLKPG,
        super::BlkpgIoctlArg
    );
    nix::ioctl_read_bad!(
        /// BLKPBSZGET on `fd`, writing the size through `data`.
        blkpbszget,
        BLKPBSZGET,
        libc::c_uint
    );
    nix::ioctl_read_bad!(
        /// BLKGETSIZE64 on `fd`, writing the size through `data`.
        blkgetsize64,
        BLKGETSIZE64,
        u64
    );
}

// <linux/blkpg.h>
const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_DEL_PARTITION: libc::c_int = 2;

/// `struct blkpg_ioctl_arg` from `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

/// `struct blkpg_partition` from `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// Size of the block device in bytes (BLKGETSIZE64).
pub fn size_bytes(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid for the call;
    // the fd is borrowed from `file` and stays open.
    unsafe { ioctl::blkgetsize64(file.as_raw_fd(), &mut size) }?;
    Ok(size)
}

/// Logical sector size in bytes (BLKSSZGET).
pub fn logical_sector_size(file: &File) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which is valid for the call.
    unsafe { ioctl::blksszget(file.as_raw_fd(), &mut v) }?;
    u32::try_from(v).map_err(|_| io::Error::other("negative logical sector size"))
}

/// Physical sector size in bytes (BLKPBSZGET).
pub fn physical_sector_size(file: &File) -> io::Result<u32> {
    let mut v: libc::c_uint = 0;
    // SAFETY: BLKPBSZGET writes one unsigned int through the pointer, valid for the call.
    unsafe { ioctl::blkpbszget(file.as_raw_fd(), &mut v) }?;
    Ok(v)
}

/// Whether the kernel marks the device read-only (BLKROGET).
pub fn is_read_only(file: &File) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int through the pointer, which is valid for the call.
    unsafe { ioctl::blkroget(file.as_raw_fd(), &mut v) }?;
    Ok(v != 0)
}

/// Asks the kernel to re-read the partition table (BLKRRPART). Fails with EBUSY while a
/// partition is in use, and with EINVAL on kernels or devices without partition parsing.
pub fn reread_partitions(file: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument and touches no memory of ours.
    unsafe { ioctl::blkrrpart(file.as_raw_fd()) }?;
    Ok(())
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
    let arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` and the `part` it points to live on this stack frame for the whole call,
    // and their layouts match struct blkpg_ioctl_arg / blkpg_partition.
    unsafe { ioctl::blkpg(file.as_raw_fd(), &arg) }?;
    Ok(())
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
    posix_fadvise(file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)?;
    Ok(())
}

/// Starts asynchronous readahead of `len` bytes at `offset` (POSIX_FADV_WILLNEED).
pub fn will_need(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    posix_fadvise(file, off, len, PosixFadviseAdvice::POSIX_FADV_WILLNEED)?;
    Ok(())
}

/// Starts writing back the dirty pages of `len` bytes at `offset` and returns at once
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that a file written front to back reaches
/// the disk while it is written, and the final fsync finds little left to do.
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let off = libc::off64_t::try_from(offset)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len =
        libc::off64_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: sync_file_range takes no pointers; the fd is valid for the call.
    let r =
        unsafe { libc::sync_file_range(file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::ioctl;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn request_numbers_match_linux_fs_h() {
        // (name, built by nix, the number the kernel headers give on x86_64)
        let cases = [
            ("BLKROGET", ioctl::BLKROGET, 0x125e),
            ("BLKRRPART", ioctl::BLKRRPART, 0x125f),
            ("BLKSSZGET", ioctl::BLKSSZGET, 0x1268),
            ("BLKPG", ioctl::BLKPG, 0x1269),
            ("BLKPBSZGET", ioctl::BLKPBSZGET, 0x127b),
            ("BLKGETSIZE64", ioctl::BLKGETSIZE64, 0x8008_1272),
        ];
        for (name, got, want) in cases {
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn blkpg_structs_match_the_kernel_layout() {
        // blkpg_ioctl_arg: 3 ints + pointer; blkpg_partition: 2 long longs, int, 2×64 chars
        assert_eq!(std::mem::size_of::<super::BlkpgIoctlArg>(), 24);
        assert_eq!(std::mem::size_of::<super::BlkpgPartition>(), 152);
    }
}
