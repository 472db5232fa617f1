//! `copy_out`: single-file restore. Copies chosen files and folders (absolute paths, usually
//! inside a partition of a mounted image) into a destination folder, recursively, the way a
//! careful `cp -a` would, and never overwriting anything.
//!
//! Invariants:
//! - **Plan, then execute.** [`plan`] checks everything that can refuse before a byte is
//!   written: every source exists, every name is new in the destination (nothing is ever
//!   overwritten; a name that exists fails the plan, naming the path), the destination is a
//!   writable folder with room for the whole selection (`statvfs`), and a FAT destination can
//!   hold every file (4 GiB limit).
//! - **Nothing half-copied looks complete.** Each file is written as `NAME.partial` (a
//!   `NAME.N.partial` when that name is taken), synced, given its mode and times, and only
//!   then renamed to `NAME` (without replacing anything). On an error or a cancel everything
//!   the job created is removed again, so the destination holds the whole selection or none
//!   of it.
//! - **What is kept**: contents, mode, mtime and atime, symlinks as symlinks (never followed,
//!   so a link in an image cannot reach the host's files), and owners when run as root.
//!   Device nodes, FIFOs and sockets are skipped with a warning. A destination that cannot
//!   keep modes or owners (FAT, exFAT) gets the files anyway, with one warning.
//! - A read error (EIO from a damaged chunk of the image) fails the job as
//!   [`Error::Read`] naming the source file and the offset in it.
//!
//! Progress is one [`Phase::Write`] over the bytes of every regular file, cumulative.
//!
//! Browsing support shared by the CLI (`lifeboat ls`, `lifeboat get`) and the menu lives here
//! too: [`list_dir`] (a folder's entries, never following symlinks), [`inside`] (a path inside
//! a mounted partition that does not leave it through a symlink) and [`private_dir`] (a fresh
//! folder to mount an image in).

use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::units::human_bytes;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::{self, File, FileTimes};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes read and written per step (cancel is checked between steps).
const BUF: usize = 1 << 20;

/// One thing to copy: `source` (a file, folder or symlink) becomes `dest/name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyItem {
    /// Absolute path of what is copied (not followed if it is a symlink).
    pub source: PathBuf,
    /// Its name in the destination folder (one path component).
    pub name: OsString,
}

impl CopyItem {
    /// `source` under its own file name (`/` and other nameless paths need an explicit name).
    pub fn named_after(source: PathBuf) -> Option<CopyItem> {
        let name = source.file_name()?.to_os_string();
        Some(CopyItem { source, name })
    }
}

/// What to copy where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// The files and folders, in order.
    pub items: Vec<CopyItem>,
    /// The folder they go into (must exist).
    pub dest: PathBuf,
}

/// A checked copy, ready to run: what it will copy and the room it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyPlan {
    /// The items, in order.
    pub items: Vec<CopyItem>,
    /// The destination folder.
    pub dest: PathBuf,
    /// Regular files to copy.
    pub files: u64,
    /// Folders to create (the selected ones and every folder inside them).
    pub dirs: u64,
    /// Symlinks to recreate.
    pub symlinks: u64,
    /// Device nodes, FIFOs and sockets that will be skipped.
    pub skipped: u64,
    /// Bytes of file content to copy.
    pub bytes: u64,
    /// Bytes the destination must have free (contents rounded to its blocks, plus a block per
    /// folder and symlink).
    pub need_bytes: u64,
    /// Bytes free at the destination when planned.
    pub free_bytes: u64,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopySummary {
    /// The destination folder.
    pub dest: PathBuf,
    /// Where each item went (`dest/name`), in order.
    pub copied: Vec<PathBuf>,
    /// Regular files copied.
    pub files: u64,
    /// Folders created.
    pub dirs: u64,
    /// Symlinks recreated.
    pub symlinks: u64,
    /// Special files skipped.
    pub skipped: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Seconds the copy took.
    pub seconds: f64,
}

impl CopySummary {
    /// What was copied where, in sentences (the CLI prints them, the menu shows them).
    pub fn lines(&self) -> Vec<String> {
        let n = |k: u64, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
        let mut v = vec![format!(
            "Copied {}, {} and {} ({}) into {}.",
            n(self.files, "file"),
            n(self.dirs, "folder"),
            n(self.symlinks, "link"),
            human_bytes(self.bytes),
            self.dest.display()
        )];
        v.extend(self.copied.iter().map(|p| format!("  {}", p.display())));
        if self.skipped > 0 {
            v.push(format!(
                "{} skipped (device nodes, FIFOs and sockets are not copied).",
                n(self.skipped, "special file")
            ));
        }
        v
    }
}

/// Counts of a tree walk.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    dirs: u64,
    symlinks: u64,
    skipped: u64,
    bytes: u64,
    need: u64,
    /// The largest file and its path (for the FAT limit).
    largest: Option<(u64, PathBuf)>,
}

fn lstat(p: &Path) -> Result<fs::Metadata> {
    fs::symlink_metadata(p).map_err(|e| Error::io("reading", p, e))
}

/// Adds `p` (not followed) and everything under it to `t`; `block` rounds sizes.
fn walk(p: &Path, block: u64, t: &mut Tally) -> Result<()> {
    let md = lstat(p)?;
    let ft = md.file_type();
    if ft.is_symlink() {
        t.symlinks += 1;
        t.need += block;
    } else if ft.is_dir() {
        t.dirs += 1;
        t.need += block;
        for e in fs::read_dir(p).map_err(|e| Error::io("listing", p, e))? {
            let e = e.map_err(|e| Error::io("listing", p, e))?;
            walk(&e.path(), block, t)?;
        }
    } else if ft.is_file() {
        t.files += 1;
        t.bytes += md.len();
        t.need += md.len().div_ceil(block) * block;
        if t.largest.as_ref().is_none_or(|(n, _)| md.len() > *n) {
            t.largest = Some((md.len(), p.to_path_buf()));
        }
    } else {
        t.skipped += 1;
    }
    Ok(())
}

fn refuse(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
    Error::Refused {
        path: path.into(),
        reason: reason.into(),
    }
}

/// Checks `spec` and measures what it copies; writes nothing.
pub fn plan(spec: &CopySpec) -> Result<CopyPlan> {
    let dest = &spec.dest;
    let md = fs::metadata(dest).map_err(|e| Error::io("opening the destination", dest, e))?;
    if !md.is_dir() {
        return Err(refuse(dest, "the destination is not a folder"));
    }
    if let Err(e) = nix::unistd::access(dest, nix::unistd::AccessFlags::W_OK) {
        let why = match e {
            nix::errno::Errno::EROFS => "it is on a read-only filesystem",
            _ => "it cannot be written",
        };
        return Err(refuse(dest, why));
    }
    if spec.items.is_empty() {
        return Err(refuse(dest, "nothing was chosen to copy"));
    }
    let vfs = nix::sys::statvfs::statvfs(dest)
        .map_err(|e| Error::io("reading the free space of", dest, e.into()))?;
    let block = vfs.fragment_size().max(512);
    let free = vfs.blocks_available().saturating_mul(block);
    let mut t = Tally::default();
    let mut names: Vec<&OsString> = Vec::new();
    for item in &spec.items {
        let n = Path::new(&item.name);
        let mut comps = n.components();
        if !matches!(
            (comps.next(), comps.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(refuse(
                dest.join(n),
                "a copied item's name must be one plain file name",
            ));
        }
        if names.contains(&&item.name) {
            return Err(refuse(
                dest.join(n),
                "two chosen items have this name; copy them one at a time",
            ));
        }
        names.push(&item.name);
        let to = dest.join(n);
        if fs::symlink_metadata(&to).is_ok() {
            return Err(refuse(
                &to,
                "it exists already, and lifeboat never overwrites: choose another destination, or move it away first",
            ));
        }
        walk(&item.source, block, &mut t)?;
    }
    if t.need > free {
        return Err(Error::TooSmall {
            path: dest.clone(),
            need: t.need,
            have: free,
            why: format!(
                "the selection needs {} more free space",
                human_bytes(t.need - free)
            ),
        });
    }
    if let Some((n, big)) = &t.largest {
        if let Some(l) = crate::image::volumes::volume_limit(dest) {
            if *n > l.max_file {
                return Err(refuse(
                    dest,
                    format!(
                        "it is a FAT filesystem, which cannot hold {} ({}, over {}); choose an ext4, exFAT or NTFS destination",
                        big.display(),
                        human_bytes(*n),
                        human_bytes(l.max_file + 1)
                    ),
                ));
            }
        }
    }
    Ok(CopyPlan {
        items: spec.items.clone(),
        dest: dest.clone(),
        files: t.files,
        dirs: t.dirs,
        symlinks: t.symlinks,
        skipped: t.skipped,
        bytes: t.bytes,
        need_bytes: t.need,
        free_bytes: free,
    })
}

/// Opens a source file for reading (the seam tests use to inject read errors).
type Opener<'a> = dyn Fn(&Path) -> io::Result<Box<dyn Read>> + 'a;

fn open_file(p: &Path) -> io::Result<Box<dyn Read>> {
    Ok(Box::new(File::open(p)?))
}

/// Runs `plan`: copies every item, reporting [`Phase::Write`] progress. On failure or cancel,
/// everything created is removed again.
pub fn run(plan: &CopyPlan, reporter: &Reporter, cancel: &CancelToken) -> Result<CopySummary> {
    run_with(plan, reporter, cancel, &open_file)
}

/// Something the job made, to remove again if it fails.
#[derive(Debug)]
enum Made {
    File(PathBuf),
    Dir(PathBuf),
}

struct Copier<'a> {
    reporter: &'a Reporter,
    cancel: &'a CancelToken,
    open: &'a Opener<'a>,
    made: Vec<Made>,
    buf: Vec<u8>,
    done: u64,
    files: u64,
    dirs: u64,
    symlinks: u64,
    skipped: u64,
    /// Warned already that modes (or owners, or times) do not stick.
    warned: [bool; 3],
}

fn run_with(
    plan: &CopyPlan,
    reporter: &Reporter,
    cancel: &CancelToken,
    open: &Opener<'_>,
) -> Result<CopySummary> {
    let started = Instant::now();
    let mut c = Copier {
        reporter,
        cancel,
        open,
        made: Vec::new(),
        buf: vec![0u8; BUF],
        done: 0,
        files: 0,
        dirs: 0,
        symlinks: 0,
        skipped: 0,
        warned: [false; 3],
    };
    reporter.phase(Phase::Write, Some(plan.bytes));
    let mut copied = Vec::with_capacity(plan.items.len());
    let r = (|| {
        for item in &plan.items {
            let to = plan.dest.join(&item.name);
            c.copy(&item.source, &to)?;
            copied.push(to);
        }
        Ok(())
    })();
    if let Err(e) = r {
        c.undo();
        return Err(e);
    }
    reporter.progress_final(Phase::Write, c.done);
    Ok(CopySummary {
        dest: plan.dest.clone(),
        copied,
        files: c.files,
        dirs: c.dirs,
        symlinks: c.symlinks,
        skipped: c.skipped,
        bytes: c.done,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn time_spec(t: SystemTime) -> nix::sys::time::TimeSpec {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    nix::sys::time::TimeSpec::from_duration(d)
}

impl Copier<'_> {
    fn warn_once(&mut self, which: usize, msg: String) {
        if let Some(w) = self.warned.get_mut(which) {
            if !*w {
                *w = true;
                self.reporter.warn(msg);
            }
        }
    }

    /// Gives `to` (just made) the owner of `md` (only root may give files away; anyone else
    /// gets one warning when the owners differ from theirs).
    fn own(&mut self, to: &Path, md: &fs::Metadata) {
        if let Err(e) = std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid())) {
            self.warn_once(
                1,
                format!(
                    "owners are not kept in {} ({e}); the copies belong to whoever runs lifeboat",
                    to.parent().unwrap_or(to).display()
                ),
            );
        }
    }

    fn mode(&mut self, to: &Path, md: &fs::Metadata) {
        let perm = fs::Permissions::from_mode(md.mode() & 0o7777);
        if let Err(e) = fs::set_permissions(to, perm) {
            self.warn_once(
                0,
                format!(
                    "permissions are not kept in {} ({e}); its filesystem may not store them",
                    to.parent().unwrap_or(to).display()
                ),
            );
        }
    }

    /// Sets atime and mtime of `to` (not following a symlink).
    fn times(&mut self, to: &Path, md: &fs::Metadata) {
        let (Ok(a), Ok(m)) = (md.accessed(), md.modified()) else {
            return;
        };
        let r = nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            to,
            &time_spec(a),
            &time_spec(m),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        );
        if let Err(e) = r {
            self.warn_once(
                2,
                format!(
                    "times are not kept in {} ({e})",
                    to.parent().unwrap_or(to).display()
                ),
            );
        }
    }

    fn copy(&mut self, from: &Path, to: &Path) -> Result<()> {
        self.cancel.check()?;
        let md = lstat(from)?;
        let ft = md.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(from).map_err(|e| Error::io("reading the link", from, e))?;
            std::os::unix::fs::symlink(&target, to)
                .map_err(|e| Error::io("creating the link", to, e))?;
            self.made.push(Made::File(to.to_path_buf()));
            self.own(to, &md);
            self.times(to, &md);
            self.symlinks += 1;
        } else if ft.is_dir() {
            fs::create_dir(to).map_err(|e| Error::io("creating the folder", to, e))?;
            self.made.push(Made::Dir(to.to_path_buf()));
            self.dirs += 1;
            let mut names: Vec<OsString> = fs::read_dir(from)
                .map_err(|e| Error::io("listing", from, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<_>>()
                .map_err(|e| Error::io("listing", from, e))?;
            names.sort();
            for n in names {
                self.copy(&from.join(&n), &to.join(&n))?;
            }
            // after the contents: a read-only folder is filled first
            self.own(to, &md);
            self.mode(to, &md);
            self.times(to, &md);
        } else if ft.is_file() {
            self.copy_file(from, to, &md)?;
        } else {
            self.skipped += 1;
            self.reporter.warn(format!(
                "{} skipped: device nodes, FIFOs and sockets are not copied",
                from.display()
            ));
        }
        Ok(())
    }

    /// Creates `to`'s partial file: `NAME.partial`, else `NAME.N.partial`, never replacing.
    fn create_partial(&mut self, to: &Path) -> Result<(File, PathBuf)> {
        let name = to.file_name().unwrap_or_default().to_string_lossy();
        for n in 0..1000u32 {
            let p = if n == 0 {
                to.with_file_name(format!("{name}.partial"))
            } else {
                to.with_file_name(format!("{name}.{n}.partial"))
            };
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
            {
                Ok(f) => {
                    self.made.push(Made::File(p.clone()));
                    return Ok((f, p));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("creating", p, e)),
            }
        }
        Err(refuse(to, "no free name for its partial file"))
    }

    fn copy_file(&mut self, from: &Path, to: &Path, md: &fs::Metadata) -> Result<()> {
        let mut src = (self.open)(from).map_err(|e| Error::io("opening", from, e))?;
        let (mut out, partial) = self.create_partial(to)?;
        let mut pos = 0u64;
        loop {
            self.cancel.check()?;
            let n = loop {
                match src.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(Error::Read {
                            path: from.to_path_buf(),
                            offset: pos,
                            len: self.buf.len(),
                            source: e,
                        })
                    }
                }
            };
            if n == 0 {
                break;
            }
            let chunk = self.buf.get(..n).unwrap_or_default();
            out.write_all(chunk).map_err(|e| Error::Write {
                path: partial.clone(),
                offset: pos,
                len: n,
                source: e,
            })?;
            pos += n as u64;
            self.done += n as u64;
            self.reporter.progress(Phase::Write, self.done);
        }
        out.sync_data().map_err(|e| Error::Write {
            path: partial.clone(),
            offset: pos,
            len: 0,
            source: e,
        })?;
        if let Err(e) = out.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777)) {
            self.warn_once(
                0,
                format!(
                    "permissions are not kept in {} ({e}); its filesystem may not store them",
                    to.parent().unwrap_or(to).display()
                ),
            );
        }
        if let (Ok(a), Ok(m)) = (md.accessed(), md.modified()) {
            if let Err(e) = out.set_times(FileTimes::new().set_accessed(a).set_modified(m)) {
                self.warn_once(
                    2,
                    format!(
                        "times are not kept in {} ({e})",
                        to.parent().unwrap_or(to).display()
                    ),
                );
            }
        }
        drop(out);
        self.own(&partial, md);
        rename_new(&partial, to)?;
        if let Some(Made::File(p)) = self.made.last_mut() {
            *p = to.to_path_buf();
        }
        self.files += 1;
        Ok(())
    }

    /// Removes everything made, newest first (folders opened up first, so that a read-only
    /// one can be emptied).
    fn undo(&mut self) {
        for m in &self.made {
            if let Made::Dir(d) = m {
                let _ = fs::set_permissions(d, fs::Permissions::from_mode(0o700));
            }
        }
        for m in self.made.drain(..).rev() {
            let _ = match m {
                Made::File(p) => fs::remove_file(p),
                Made::Dir(d) => fs::remove_dir(d),
            };
        }
    }
}

/// Renames `from` to `to` unless `to` exists (atomically where the filesystem can).
fn rename_new(from: &Path, to: &Path) -> Result<()> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOSYS) => {
            // a filesystem without RENAME_NOREPLACE (some FUSE drivers): check, then rename
            if fs::symlink_metadata(to).is_ok() {
                return Err(refuse(to, "it appeared while copying; it was not replaced"));
            }
            fs::rename(from, to).map_err(|e| Error::io("renaming", from, e))
        }
        Err(nix::errno::Errno::EEXIST) => {
            Err(refuse(to, "it appeared while copying; it was not replaced"))
        }
        Err(e) => Err(Error::io("renaming", from, e.into())),
    }
}

/// What a folder entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A folder.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (never followed).
    Symlink,
    /// A device node, FIFO or socket.
    Other,
}

/// One entry of a folder, as `lifeboat ls` and the menu's browser show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its name (lossy UTF-8).
    pub name: String,
    /// Its full path.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (a file's length; 0 for folders).
    pub size_bytes: u64,
    /// Last modification, seconds since 1970.
    pub mtime_unix: i64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Where a symlink points.
    pub link: Option<PathBuf>,
}

/// The entries of `dir`: folders first, then by name. Symlinks are listed, not followed.
pub fn list_dir(dir: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let e = e.map_err(|e| Error::io("listing", dir, e))?;
        let path = e.path();
        let md = lstat(&path)?;
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        out.push(Entry {
            name: e.file_name().to_string_lossy().into_owned(),
            link: (kind == EntryKind::Symlink)
                .then(|| fs::read_link(&path).ok())
                .flatten(),
            path,
            kind,
            size_bytes: if kind == EntryKind::Dir { 0 } else { md.len() },
            mtime_unix: md.mtime(),
            mode: md.mode() & 0o7777,
        });
    }
    out.sort_by(|a, b| {
        (a.kind != EntryKind::Dir, &a.name).cmp(&(b.kind != EntryKind::Dir, &b.name))
    });
    Ok(out)
}

/// `path` (absolute, as the user wrote it: `/home/ann/thesis.odt`) inside the mounted
/// partition `root`. Its parent folders must not leave `root` through a symlink (a link in an
/// image may point anywhere on the host); the last component itself is not followed.
pub fn inside(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(refuse(path, "use a path without \"..\""))
            }
        }
    }
    let full = root.join(&rel);
    let Some(parent) = full.parent().filter(|_| !rel.as_os_str().is_empty()) else {
        return Ok(root.to_path_buf());
    };
    let real_root = fs::canonicalize(root).map_err(|e| Error::io("opening", root, e))?;
    let real_parent = fs::canonicalize(parent).map_err(|e| Error::io("opening", parent, e))?;
    if !real_parent.starts_with(&real_root) {
        return Err(refuse(
            path,
            "a folder on the way is a symlink that leaves the partition",
        ));
    }
    lstat(&full)?;
    Ok(full)
}

pub use crate::access::mount::private_dir;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::DirBuilderExt;

    fn spec(items: &[&Path], dest: &Path) -> CopySpec {
        CopySpec {
            items: items
                .iter()
                .map(|p| CopyItem::named_after(p.to_path_buf()).unwrap())
                .collect(),
            dest: dest.to_path_buf(),
        }
    }

    fn set_times(p: &Path, a: i64, m: i64) {
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            p,
            &nix::sys::time::TimeSpec::new(a, 123_456_789),
            &nix::sys::time::TimeSpec::new(m, 987_654_321),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }

    /// A tree: a folder with a file (mode 0640, fixed times), a nested read-only folder, an
    /// empty file, a symlink, and a 3 MiB file (several buffers).
    fn tree(root: &Path) -> PathBuf {
        let d = root.join("docs");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("thesis.odt"), b"chapter one\n").unwrap();
        fs::set_permissions(d.join("thesis.odt"), fs::Permissions::from_mode(0o640)).unwrap();
        set_times(&d.join("thesis.odt"), 1_600_000_000, 1_500_000_000);
        fs::write(d.join("empty"), b"").unwrap();
        let big: Vec<u8> = (0..3 * BUF + 17).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(d.join("big.bin"), &big).unwrap();
        std::os::unix::fs::symlink("thesis.odt", d.join("link")).unwrap();
        set_times(&d.join("link"), 1_400_000_000, 1_300_000_000);
        fs::DirBuilder::new()
            .mode(0o755)
            .create(d.join("ro"))
            .unwrap();
        fs::write(d.join("ro/inner.txt"), b"inner").unwrap();
        fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        set_times(&d, 1_200_000_000, 1_100_000_000);
        d
    }

    /// Type, size, mode, mtime (ns), link target and content of everything under `p`.
    fn describe(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let full = if rel.as_os_str().is_empty() {
                p.to_path_buf()
            } else {
                p.join(&rel)
            };
            let md = fs::symlink_metadata(&full).unwrap();
            let mut line = format!(
                "{} {:o} {} {}",
                rel.display(),
                md.mode(),
                md.mtime(),
                md.mtime_nsec()
            );
            if md.file_type().is_symlink() {
                line.push_str(&format!(" -> {}", fs::read_link(&full).unwrap().display()));
            } else if md.is_file() {
                line.push_str(&format!(" {}", blake3::hash(&fs::read(&full).unwrap())));
            } else if md.is_dir() {
                for e in fs::read_dir(&full).unwrap() {
                    stack.push(rel.join(e.unwrap().file_name()));
                }
            }
            out.push(line);
        }
        out.sort();
        out
    }

    fn all_names(p: &Path) -> Vec<String> {
        let mut v = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                v.push(e.path().display().to_string());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        v
    }

    #[test]
    fn a_folder_is_copied_with_contents_modes_times_and_symlinks() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let d = tree(src.path());
        let single = src.path().join("single.txt");
        fs::write(&single, b"one file").unwrap();
        set_times(&single, 1_000_000_000, 900_000_000);
        let p = plan(&spec(&[&d, &single], dst.path())).unwrap();
        assert_eq!((p.files, p.dirs, p.symlinks, p.skipped), (5, 2, 1, 0));
        assert_eq!(p.bytes, 12 + (3 * BUF as u64 + 17) + 5 + 8);
        assert!(p.free_bytes >= p.need_bytes && p.need_bytes >= p.bytes);
        let (rep, rx) = Reporter::channel::<()>();
        let s = run(&p, &rep, &CancelToken::new()).unwrap();
        drop(rep);
        // atime first: reading a file (to compare it) may change its atime
        let got = fs::metadata(dst.path().join("docs/thesis.odt")).unwrap();
        assert_eq!(
            (got.atime(), got.atime_nsec()),
            (1_600_000_000, 123_456_789)
        );
        assert_eq!(describe(&d), describe(&dst.path().join("docs")));
        assert_eq!(describe(&single), describe(&dst.path().join("single.txt")));
        assert_eq!(
            s.copied,
            [dst.path().join("docs"), dst.path().join("single.txt")]
        );
        assert_eq!((s.files, s.dirs, s.symlinks, s.bytes), (5, 2, 1, p.bytes));
        assert!(
            !all_names(dst.path()).iter().any(|n| n.contains(".partial")),
            "a partial file was left"
        );
        let ev: Vec<_> = rx.try_iter().collect();
        assert_eq!(
            ev.first(),
            Some(&crate::event::Event::Phase {
                phase: Phase::Write,
                total_bytes: Some(p.bytes)
            })
        );
        assert_eq!(
            ev.last(),
            Some(&crate::event::Event::Progress {
                phase: Phase::Write,
                done_bytes: p.bytes
            })
        );
        fs::set_permissions(
            dst.path().join("docs/ro"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn an_existing_name_is_refused_before_anything_is_written() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let a = src.path().join("a.txt");
        let b = src.path().join("b.txt");
        fs::write(&a, b"new a").unwrap();
        fs::write(&b, b"new b").unwrap();
        fs::write(dst.path().join("b.txt"), b"old b").unwrap();
        let e = plan(&spec(&[&a, &b], dst.path())).unwrap_err();
        let msg = crate::error::with_causes(&e);
        assert!(matches!(e, Error::Refused { .. }), "{msg}");
        assert!(
            msg.contains(&dst.path().join("b.txt").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("never overwrites"), "{msg}");
        assert_eq!(fs::read(dst.path().join("b.txt")).unwrap(), b"old b");
        assert!(!dst.path().join("a.txt").exists());
        // a dangling symlink with the name counts as existing too
        std::os::unix::fs::symlink("/nowhere", dst.path().join("a.txt")).unwrap();
        assert!(plan(&spec(&[&a], dst.path())).is_err());
    }

    #[test]
    fn bad_selections_and_destinations_are_refused() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let a = src.path().join("a");
        fs::write(&a, b"x").unwrap();
        fs::create_dir(src.path().join("sub")).unwrap();
        fs::write(src.path().join("sub/a"), b"y").unwrap();
        let twice = spec(&[&a, &src.path().join("sub/a")], dst.path());
        assert!(crate::error::with_causes(&plan(&twice).unwrap_err()).contains("two chosen"));
        let missing = spec(&[&src.path().join("nope")], dst.path());
        assert!(matches!(plan(&missing).unwrap_err(), Error::Io { .. }));
        let not_dir = spec(&[&a], &src.path().join("a"));
        assert!(crate::error::with_causes(&plan(&not_dir).unwrap_err()).contains("not a folder"));
        let bad_name = CopySpec {
            items: vec![CopyItem {
                source: a.clone(),
                name: "../escape".into(),
            }],
            dest: dst.path().to_path_buf(),
        };
        assert!(plan(&bad_name).is_err());
        assert!(plan(&spec(&[], dst.path())).is_err());
    }

    #[test]
    fn too_little_free_space_is_refused_with_the_sizes() {
        // a 1 MiB tmpfs would need root; instead: the real free space, and a sparse source
        // file claiming more than that
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let free = {
            let v = nix::sys::statvfs::statvfs(dst.path()).unwrap();
            v.blocks_available() * v.fragment_size()
        };
        let huge = src.path().join("huge.img");
        let f = File::create(&huge).unwrap();
        if f.set_len(free + (1 << 30)).is_err() {
            return; // the filesystem's file size limit is below its free space
        }
        let e = plan(&spec(&[&huge], dst.path())).unwrap_err();
        assert!(matches!(e, Error::TooSmall { .. }), "{e}");
        assert!(e.to_string().contains("more free space"), "{e}");
        assert!(!dst.path().join("huge.img").exists());
    }

    /// A reader that fails with `err` after `after` bytes (or cancels `token` then).
    struct Faulty {
        inner: File,
        left: usize,
        err: Option<i32>,
        token: Option<CancelToken>,
    }

    impl Read for Faulty {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                if let Some(t) = &self.token {
                    t.cancel();
                } else if let Some(e) = self.err {
                    return Err(io::Error::from_raw_os_error(e));
                }
            }
            let n = buf.len().min(self.left.max(1));
            let n = self.inner.read(&mut buf[..n])?;
            self.left = self.left.saturating_sub(n);
            Ok(n)
        }
    }

    fn faulty_opener<'a>(
        bad: &'a str,
        err: Option<i32>,
        token: Option<CancelToken>,
    ) -> impl Fn(&Path) -> io::Result<Box<dyn Read>> + 'a {
        move |p: &Path| {
            let f = File::open(p)?;
            if p.file_name().is_some_and(|n| n == bad) {
                Ok(Box::new(Faulty {
                    inner: f,
                    left: BUF + 5,
                    err,
                    token: token.clone(),
                }) as Box<dyn Read>)
            } else {
                Ok(Box::new(f))
            }
        }
    }

    #[test]
    fn a_read_error_fails_naming_the_file_and_leaves_nothing() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let d = tree(src.path());
        let p = plan(&spec(&[&d], dst.path())).unwrap();
        let open = faulty_opener("big.bin", Some(libc::EIO), None);
        let e = run_with(&p, &Reporter::silent(), &CancelToken::new(), &open).unwrap_err();
        let msg = crate::error::with_causes(&e);
        assert!(
            msg.contains(&d.join("big.bin").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("Input/output error"), "{msg}");
        assert!(
            matches!(e, Error::Read { offset, .. } if offset == BUF as u64 + 5),
            "{msg}"
        );
        assert_eq!(all_names(dst.path()), Vec::<String>::new());
        fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn cancel_in_the_middle_of_a_file_leaves_nothing() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let d = tree(src.path());
        let keep = dst.path().join("unrelated.txt");
        fs::write(&keep, b"mine").unwrap();
        let p = plan(&spec(&[&d], dst.path())).unwrap();
        let cancel = CancelToken::new();
        let open = faulty_opener("big.bin", None, Some(cancel.clone()));
        let e = run_with(&p, &Reporter::silent(), &cancel, &open).unwrap_err();
        assert!(matches!(e, Error::Cancelled), "{e}");
        assert_eq!(all_names(dst.path()), [keep.display().to_string()]);
        assert_eq!(fs::read(&keep).unwrap(), b"mine");
        fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_taken_partial_name_is_not_overwritten() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let d = src.path().join("d");
        fs::create_dir(&d).unwrap();
        // "a" is copied after "a.partial" (sorted), whose name its partial would take
        fs::write(d.join("a"), b"the a").unwrap();
        fs::write(d.join("a.partial"), b"a file really named a.partial").unwrap();
        let p = plan(&spec(&[&d], dst.path())).unwrap();
        run(&p, &Reporter::silent(), &CancelToken::new()).unwrap();
        assert_eq!(fs::read(dst.path().join("d/a")).unwrap(), b"the a");
        assert_eq!(
            fs::read(dst.path().join("d/a.partial")).unwrap(),
            b"a file really named a.partial"
        );
        assert_eq!(fs::read_dir(dst.path().join("d")).unwrap().count(), 2);
    }

    #[test]
    fn listing_puts_folders_first_and_does_not_follow_links() {
        let src = tempfile::tempdir().unwrap();
        let d = tree(src.path());
        let v = list_dir(&d).unwrap();
        let names: Vec<(&str, EntryKind)> = v.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            names,
            [
                ("ro", EntryKind::Dir),
                ("big.bin", EntryKind::File),
                ("empty", EntryKind::File),
                ("link", EntryKind::Symlink),
                ("thesis.odt", EntryKind::File)
            ]
        );
        let t = v.iter().find(|e| e.name == "thesis.odt").unwrap();
        assert_eq!(
            (t.size_bytes, t.mode, t.mtime_unix),
            (12, 0o640, 1_500_000_000)
        );
        assert_eq!(
            v.iter().find(|e| e.name == "link").unwrap().link,
            Some(PathBuf::from("thesis.odt"))
        );
        assert!(list_dir(&src.path().join("nope")).is_err());
        fs::set_permissions(d.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn inside_keeps_paths_in_the_partition() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir(r.join("home")).unwrap();
        fs::write(r.join("home/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", r.join("escape")).unwrap();
        assert_eq!(inside(r, Path::new("/home/f")).unwrap(), r.join("home/f"));
        assert_eq!(inside(r, Path::new("/")).unwrap(), r);
        // the link itself may be copied (as a link), but not walked through
        assert_eq!(inside(r, Path::new("/escape")).unwrap(), r.join("escape"));
        let e = inside(r, Path::new("/escape/passwd")).unwrap_err();
        assert!(e.to_string().contains("leaves the partition"), "{e}");
        assert!(inside(r, Path::new("/home/../home/f")).is_err());
        assert!(inside(r, Path::new("/home/missing")).is_err());
    }

    #[test]
    fn private_dirs_are_new_and_empty() {
        let a = private_dir("lifeboat-test").unwrap();
        let b = private_dir("lifeboat-test").unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::read_dir(&a).unwrap().count(), 0);
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o777, 0o700);
        fs::remove_dir(a).unwrap();
        fs::remove_dir(b).unwrap();
    }
}
