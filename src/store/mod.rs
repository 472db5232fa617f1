//! The image store: the filesystem where images are written and read, mounted at
//! [`STORE_DIR`] (or wherever a face asks). `lifeboat.store=SPEC` mounts one at boot, the line
//! console's `store` command and the menu's storage screen do it by hand.
//!
//! A store is something that can be mounted read-write at a folder and unmounted again; what
//! it is decides how it is found and mounted, one file per kind:
//! - [`local`]: a filesystem on a local disk (ext2/3/4, FAT, exFAT, NTFS), found by label,
//!   UUID or device path and mounted with the kernel's drivers or ntfs-3g.
//!
//! - [`net`]: a folder on an SMB share, an NFS export or an SSH server (`smb://`, `nfs://`,
//!   `sftp://`), mounted with the kernel's clients or sshfs.
//! - [`http`]: not a mounted store but a way to read one image: `https://…/disk.lbi` is read
//!   with range requests wherever an image is read.
//! - [`s3`]: not mounted either: `s3://bucket/disk.lbi` is written by a multipart upload and
//!   read with signed range requests.
//!
//! Unmounting is the same for every kind
//! and lives here: [`release`] (never lazy, for replacing the store while jobs may run) and
//! [`unmount`] (flushing, lazy as a last resort, for power-off).
//!
//! Nothing here prints: failures are [`Error`]s, and the output of the tools run (ntfs-3g) is
//! captured into them. mount(2), umount2(2) and sync(2) come from `nix` (safe wrappers).

pub mod http;
pub mod local;
pub mod net;
pub mod s3;

use nix::mount::MntFlags;

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// Where the rescue system mounts the store.
pub const STORE_DIR: &str = "/store";

/// Result alias of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store could not be found, mounted or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SPEC names no filesystem in a way this store understands.
    #[error(
        "store {spec:?}: expected LABEL=, UUID=, PARTLABEL=, PARTUUID=, a device path, or \
         smb://, nfs:// or sftp://"
    )]
    BadSpec {
        /// What the user wrote.
        spec: String,
    },
    /// SPEC matches a partition the kernel made no device node for.
    #[error("store {spec:?} is partition {number} of {disk}, which has no device node")]
    NoDeviceNode {
        /// What the user wrote.
        spec: String,
        /// The partition number.
        number: u32,
        /// The disk holding it.
        disk: PathBuf,
    },
    /// SPEC matches a partition without a filesystem Lifeboat recognises.
    #[error("store {spec:?} ({device}) has no filesystem Lifeboat recognises")]
    NoFilesystem {
        /// What the user wrote.
        spec: String,
        /// The partition's device node.
        device: PathBuf,
    },
    /// The filesystem is not one a store may have ([`local::STORE_FILESYSTEMS`]).
    #[error(
        "{device} holds {fs}, which cannot be an image store (use ext4, FAT32, exFAT or NTFS)"
    )]
    Unsupported {
        /// The device node.
        device: PathBuf,
        /// Its blkid-style filesystem type.
        fs: &'static str,
    },
    /// The mount point could not be created.
    #[error("creating {path}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// mount(2) failed.
    #[error("mounting {device} ({fs}) at {at}")]
    Mount {
        /// The device node.
        device: PathBuf,
        /// Its blkid-style filesystem type.
        fs: &'static str,
        /// The mount point.
        at: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A mount helper (ntfs-3g) could not be started.
    #[error("running {tool} to mount the {fs} store")]
    HelperStart {
        /// The helper's name.
        tool: &'static str,
        /// The filesystem it mounts ("NTFS").
        fs: &'static str,
        /// Why it did not start.
        #[source]
        source: io::Error,
    },
    /// ntfs-3g ran and refused the volume. `output` is what it said first, on one line (""
    /// if nothing).
    #[error(
        "ntfs-3g could not mount {device} at {at} ({status}); a Windows volume that is \
         hibernated or was not shut down cleanly is refused read-write{}",
        if output.is_empty() { String::new() } else { format!("; ntfs-3g said: {output}") }
    )]
    Ntfs3g {
        /// The device node.
        device: PathBuf,
        /// The mount point.
        at: PathBuf,
        /// How ntfs-3g ended.
        status: ExitStatus,
        /// Its message.
        output: String,
    },
    /// A network store spec that cannot be used; `reason` says why.
    #[error("store {spec:?}: {reason}")]
    BadNetSpec {
        /// What the user wrote.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A credentials file could not be read.
    #[error("reading the credentials file {file}")]
    CredentialsFile {
        /// The file.
        file: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A credentials file has a bad line (the line's value is never shown: it may be a
    /// password).
    #[error("the credentials file {file}, line {line}: {reason}")]
    Credentials {
        /// The file.
        file: PathBuf,
        /// Its line number (from 1).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The server refused the credentials or the client.
    #[error("{spec}: access denied: {reason}")]
    NetDenied {
        /// The store (no password in it).
        spec: String,
        /// Which credentials, in words.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("unknown host {host:?}: {reason}")]
    NetUnknownHost {
        /// The host.
        host: String,
        /// The resolver's message.
        reason: String,
    },
    /// The share, export or folder does not exist on the server.
    #[error("{spec}: no such {what} on the server")]
    NetNoShare {
        /// The store.
        spec: String,
        /// "share or folder", "export or folder", "folder".
        what: &'static str,
    },
    /// The server does not answer.
    #[error("{spec}: the server cannot be reached: {reason}")]
    NetUnreachable {
        /// The store.
        spec: String,
        /// What the network said.
        reason: String,
    },
    /// This system has no client for the protocol.
    #[error(
        "{spec}: this system has no {fs} client (the standard rescue system has them all, the \
         mini one SMB and NFS; on a host, load the kernel module or install sshfs)"
    )]
    NetNoClient {
        /// The store.
        spec: String,
        /// The filesystem type ("cifs", "nfs4").
        fs: &'static str,
    },
    /// An SSH host key is unknown or changed.
    #[error("the SSH host {host}: {reason}")]
    NetHostKey {
        /// The host.
        host: String,
        /// Unknown or changed, and what to do.
        reason: String,
    },
    /// mount(2) of a network filesystem failed otherwise.
    #[error("mounting {spec} ({fs})")]
    NetMount {
        /// The store.
        spec: String,
        /// The filesystem type.
        fs: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A mount helper (sshfs) failed otherwise; `output` is what it said, on one line.
    #[error("{tool} could not mount {spec}: {output}")]
    NetHelper {
        /// The store.
        spec: String,
        /// The helper.
        tool: &'static str,
        /// Its message.
        output: String,
    },
    /// umount2(2) failed (the store was then detached lazily).
    #[error("unmounting {at}")]
    Unmount {
        /// The mount point.
        at: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// True when `p` names an image on a server rather than a file: `http(s)://` or `s3://`.
pub fn is_remote(p: &Path) -> bool {
    http::is_url(p) || s3::is_s3(p)
}

/// Splits a URL's `host[:port]` or `[v6addr][:port]` into the host (without brackets) and the
/// port's text, if any; the error says what is wrong. Shared by the network stores and HTTP.
pub(crate) fn split_host_port(
    hostport: &str,
) -> std::result::Result<(String, Option<&str>), &'static str> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    Ok((host, port))
}

/// A host as a URL writes it: an IPv6 address in brackets.
pub(crate) fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Unmounts what is mounted at `at`, if anything, but never lazily: a busy store (a job on
/// another console writing to it) stays mounted and the error (EBUSY) says so. For replacing
/// the store while the machine runs; [`unmount`] is for power-off. The caller names `at` in
/// its message: the error is the bare OS error.
pub fn release(at: &Path) -> io::Result<()> {
    match umount(at, MntFlags::empty()) {
        Ok(()) => Ok(()),
        // nothing mounted there, or no such folder yet
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unmounts the store at `at`, flushing it first (sync(2)); nothing mounted there is fine.
/// FUSE daemons (ntfs-3g) finish writing when they see the unmount; when the unmount fails, a
/// lazy unmount (MNT_DETACH) follows so that power-off is never blocked, and the error is
/// still returned.
pub fn unmount(at: &Path) -> Result<()> {
    nix::unistd::sync();
    match umount(at, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()), // not mounted
        Err(source) => {
            let _ = umount(at, MntFlags::MNT_DETACH);
            Err(Error::Unmount {
                at: at.to_path_buf(),
                source,
            })
        }
    }
}

/// umount2(2), as an `io::Error`.
fn umount(at: &Path, flags: MntFlags) -> io::Result<()> {
    nix::mount::umount2(at, flags).map_err(io::Error::from)
}
