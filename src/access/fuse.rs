//! The FUSE side of `mount`: a flat directory of regular files, each a byte window of the
//! image (`disk` for the whole disk, `p1`, `p2`… for partitions), served by `fuser` without
//! libfuse. Files are read-only (mode 0444) unless the session is read-write, where writes go
//! to the device (an [`Overlay`](super::Overlay), never the image).
//!
//! A read or write that the device fails is answered with EIO (ENOSPC when a memory overlay is
//! full), never with wrong bytes, and the failure goes to the warning sink (the server's log)
//! with the file and byte range; the image source adds the damaged chunk's number and disk
//! offset once per chunk. The directory is fixed for the session's life, so inode numbers are
//! the file's index plus 2 (1 is the root).

use crate::blockdev::BlockDev;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, OpenAccMode, OpenFlags,
    ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request,
};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where messages about failed reads and writes go.
pub(crate) type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// How long the kernel may cache names and attributes: they never change.
const TTL: Duration = Duration::from_secs(3600);

/// One file of the directory.
pub(crate) struct RawFile {
    /// Its name (`disk`, `p1`…).
    pub name: String,
    /// Its bytes.
    pub dev: Arc<dyn BlockDev>,
}

/// The filesystem `fuser` serves on `DIR/raw`.
pub(crate) struct RawFs {
    files: Vec<RawFile>,
    writable: bool,
    /// Let the kernel cache writes (`FUSE_WRITEBACK_CACHE`): only for files whose writers
    /// flush them (`DevFiles`), since a failed write then surfaces at the flush.
    writeback: bool,
    time: SystemTime,
    warn: Sink,
    /// Messages already logged: the kernel retries a failed page read, page by page.
    logged: Mutex<HashSet<String>>,
}

/// At most this many distinct failure messages are remembered (the rest are logged again).
const LOGGED_MAX: usize = 4096;

impl RawFs {
    /// A directory of `files`, writable when `writable`, sending failures to `warn`.
    pub(crate) fn new(files: Vec<RawFile>, writable: bool, warn: Sink) -> Self {
        RawFs {
            files,
            writable,
            writeback: false,
            time: SystemTime::now(),
            warn,
            logged: Mutex::new(HashSet::new()),
        }
    }

    /// The same, with the kernel's writeback cache (see the field).
    pub(crate) fn with_writeback(mut self) -> Self {
        self.writeback = true;
        self
    }

    fn file(&self, ino: INodeNo) -> Option<&RawFile> {
        let i = usize::try_from(ino.0.checked_sub(2)?).ok()?;
        self.files.get(i)
    }

    fn attr(&self, ino: INodeNo) -> Option<FileAttr> {
        let (kind, perm, size, nlink) = if ino == INodeNo::ROOT {
            (FileType::Directory, 0o555, 0, 2)
        } else {
            let f = self.file(ino)?;
            let perm = if self.writable { 0o644 } else { 0o444 };
            (FileType::RegularFile, perm, f.dev.len(), 1)
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: self.time,
            mtime: self.time,
            ctime: self.time,
            crtime: self.time,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// The errno for a failed device call, after logging it.
    fn fail(&self, what: &str, name: &str, offset: u64, len: usize, e: &crate::Error) -> Errno {
        let msg = format!(
            "{what} of {name} bytes {offset}..{} failed: {}",
            offset + len as u64,
            crate::error::with_causes(e)
        );
        let fresh = match self.logged.lock() {
            Ok(mut l) if l.len() < LOGGED_MAX => l.insert(msg.clone()),
            Ok(l) => !l.contains(&msg),
            Err(_) => true,
        };
        if fresh {
            (self.warn)(&msg);
        }
        let raw = match e {
            crate::Error::Write { source, .. } | crate::Error::Read { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        };
        match raw {
            Some(libc::ENOSPC) => Errno::ENOSPC,
            _ => Errno::EIO,
        }
    }
}

impl fuser::Filesystem for RawFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        if self.writable && self.writeback {
            // the kernel gathers small writes (ntfsresize relocates a few clusters per write)
            // into pages it sends in larger requests, and serves reads of them from its cache
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE);
            let _ = config.set_max_write(1 << 20);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        let found = self
            .files
            .iter()
            .position(|f| OsStr::new(&f.name) == name)
            .and_then(|i| self.attr(INodeNo(i as u64 + 2)));
        match found {
            Some(a) => reply.entry(&TTL, &a, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(a) => reply.attr(&TTL, &a),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.file(ino).is_none() {
            return reply.error(Errno::ENOENT);
        }
        if !self.writable && flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let Some(f) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        let len = f.dev.len();
        if offset >= len {
            return reply.data(&[]);
        }
        let n = (len - offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; n];
        match f.dev.read_at(&mut buf, offset) {
            Ok(()) => reply.data(&buf),
            Err(e) => reply.error(self.fail("read", &f.name, offset, n, &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(f) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if !self.writable {
            return reply.error(Errno::EROFS);
        }
        let len = f.dev.len();
        if data.is_empty() {
            return reply.written(0);
        }
        if offset >= len {
            return reply.error(Errno::ENOSPC);
        }
        let n = (len - offset).min(data.len() as u64) as usize;
        match f.dev.write_at(&data[..n], offset) {
            Ok(()) => reply.written(n as u32),
            Err(e) => reply.error(self.fail("write", &f.name, offset, n, &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // the files have the image's fixed sizes: a truncate to another size is refused, and
        // other attribute changes are ignored
        let Some(a) = self.attr(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match size {
            Some(s) if s != a.size => reply.error(Errno::EPERM),
            _ => reply.attr(&TTL, &a),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // writes land in the overlay as they come; there is nothing to make durable
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (INodeNo::ROOT, FileType::Directory, ".".to_string()),
            (INodeNo::ROOT, FileType::Directory, "..".to_string()),
        ];
        for (i, f) in self.files.iter().enumerate() {
            entries.push((INodeNo(i as u64 + 2), FileType::RegularFile, f.name.clone()));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(ino, i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bytes: u64 = self.files.iter().map(|f| f.dev.len()).sum();
        let n = self.files.len() as u64 + 1;
        reply.statfs(bytes.div_ceil(4096), 0, 0, n, 0, 4096, 255, 4096);
    }
}

/// Mounts `fs` on `dir` and serves it from background threads until the returned session is
/// unmounted (or dropped). Only root (the owner) may use the files.
pub(crate) fn spawn(fs: RawFs, dir: &std::path::Path) -> std::io::Result<fuser::BackgroundSession> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("lifeboat".into()),
        fuser::MountOption::Subtype("lifeboat".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoExec,
        if fs.writable {
            fuser::MountOption::RW
        } else {
            fuser::MountOption::RO
        },
    ];
    config.n_threads = Some(4);
    fuser::Session::new(fs, dir, &config)?.spawn()
}
