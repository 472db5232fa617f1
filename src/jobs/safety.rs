//! Refusals shared by every job that reads a disk or writes one (STYLE §9). Each refusal
//! names the device and the reason.

use crate::discovery::{self, DiskInfo, SystemPaths};
use crate::error::{Error, Result};
use crate::image::volumes::parent_dir;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The disk (and partition) a block-device path refers to, if discovery knows it.
fn lookup(paths: &SystemPaths, disks: &[DiskInfo], path: &Path) -> Option<(usize, Option<usize>)> {
    let (d, p) = discovery::find_by_path(paths, disks, path)?;
    let di = disks.iter().position(|x| x.name == d.name)?;
    let pi = p.and_then(|p| d.partitions.iter().position(|x| x.name == p.name));
    Some((di, pi))
}

/// The disk and partition holding the filesystem that `file` lives on.
fn holder_of(disks: &[DiskInfo], file: &Path) -> Option<(String, Option<String>)> {
    let meta = std::fs::metadata(file).ok()?;
    let dev = meta.dev();
    let (d, p) = discovery::find_by_devnum(disks, libc::major(dev), libc::minor(dev))?;
    Some((d.name.clone(), p.map(|p| p.name.clone())))
}

fn kind_check(path: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("opening", path, e))?;
    let ft = meta.file_type();
    if !(ft.is_block_device() || ft.is_file()) {
        return Err(Error::NotADisk {
            path: path.to_path_buf(),
        });
    }
    Ok(meta)
}

/// An imaging source must be a disk or image file that is not in use, and the image must not
/// be written onto the source.
pub fn check_image_source(paths: &SystemPaths, source: &Path, output: &Path) -> Result<()> {
    let meta = kind_check(source)?;
    if crate::store::s3::is_s3(output) {
        // an object in a store on the network: on no local disk
        return Ok(());
    }
    let out_dir = parent_dir(output);
    let out_meta = std::fs::metadata(&out_dir).map_err(|e| Error::io("opening", &out_dir, e))?;
    if !out_meta.is_dir() {
        return Err(Error::Refused {
            path: output.to_path_buf(),
            reason: format!("{} is not a directory", out_dir.display()),
        });
    }
    if meta.file_type().is_file() {
        if let Ok(o) = std::fs::metadata(output) {
            if (o.dev(), o.ino()) == (meta.dev(), meta.ino()) {
                return Err(Error::Refused {
                    path: output.to_path_buf(),
                    reason: "it is the source itself".into(),
                });
            }
        }
        return Ok(());
    }
    let disks = discovery::scan(paths).unwrap_or_default();
    let Some((di, pi)) = lookup(paths, &disks, source) else {
        return Ok(());
    };
    let disk = &disks[di];
    let busy = match pi {
        None => disk.is_busy(),
        Some(pi) => disk.partitions[pi].is_busy(),
    };
    if let Some(reason) = busy {
        return Err(Error::Busy {
            path: source.to_path_buf(),
            reason: format!("{reason}; unmount it first so that the image is consistent"),
        });
    }
    if let Some((hd, hp)) = holder_of(&disks, &out_dir) {
        if hd == disk.name {
            return Err(Error::Refused {
                path: source.to_path_buf(),
                reason: format!(
                    "the image would be written to {}, which is on {}, part of the disk being imaged",
                    out_dir.display(),
                    hp.unwrap_or(hd)
                ),
            });
        }
    }
    Ok(())
}

/// A restore target must not be the image, hold the image, or be in use.
pub fn check_restore_target(paths: &SystemPaths, target: &Path, image: &Path) -> Result<()> {
    // a split image is several files: the target must be none of them (an image on a web
    // server is no local file)
    let files: Vec<(u64, u64)> = if crate::store::is_remote(image) {
        Vec::new()
    } else {
        let img = std::fs::metadata(image).map_err(|e| Error::io("opening", image, e))?;
        crate::image::image_files(image)
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| (m.dev(), m.ino()))
            .chain([(img.dev(), img.ino())])
            .collect()
    };
    let Ok(meta) = std::fs::metadata(target) else {
        // A file that does not exist yet: it will be created.
        let dir = parent_dir(target);
        return std::fs::metadata(&dir)
            .map(|_| ())
            .map_err(|e| Error::io("opening", &dir, e));
    };
    kind_check(target)?;
    if meta.file_type().is_file() {
        if files.contains(&(meta.dev(), meta.ino())) {
            return Err(Error::Refused {
                path: target.to_path_buf(),
                reason: "it is the image file itself (or a volume of it)".into(),
            });
        }
        return Ok(());
    }
    let disks = discovery::scan(paths).unwrap_or_default();
    let Some((di, pi)) = lookup(paths, &disks, target) else {
        return Ok(());
    };
    let disk = &disks[di];
    let name = pi.map_or(disk.name.clone(), |p| disk.partitions[p].name.clone());
    if let Some((hd, hp)) = holder_of(&disks, image) {
        let holds = match pi {
            None => hd == disk.name,
            Some(p) => hp.as_deref() == Some(disk.partitions[p].name.as_str()),
        };
        if holds {
            return Err(Error::Refused {
                path: target.to_path_buf(),
                reason: format!(
                    "{name} holds the image file {} (on {})",
                    image.display(),
                    hp.unwrap_or(hd)
                ),
            });
        }
    }
    if let Some(b) = &disk.backing_file {
        let same = std::fs::metadata(b).is_ok_and(|m| files.contains(&(m.dev(), m.ino())));
        if same {
            return Err(Error::Refused {
                path: target.to_path_buf(),
                reason: format!("{name} is a loop device over the image file itself"),
            });
        }
    }
    let busy = match pi {
        None => disk.is_busy(),
        Some(pi) => disk.partitions[pi].is_busy(),
    };
    if let Some(reason) = busy {
        return Err(Error::Busy {
            path: target.to_path_buf(),
            reason,
        });
    }
    Ok(())
}

/// A clone reads `source` and overwrites `target`: the source must be idle (like an imaging
/// source), the target idle and writable (like a restore target), and they must not be the
/// same device, nor one a partition of the other.
pub fn check_clone(paths: &SystemPaths, source: &Path, target: &Path) -> Result<()> {
    let src = kind_check(source)?;
    if let Ok(t) = std::fs::metadata(target) {
        kind_check(target)?;
        let same = if src.file_type().is_block_device() && t.file_type().is_block_device() {
            src.rdev() == t.rdev()
        } else {
            (src.dev(), src.ino()) == (t.dev(), t.ino())
        };
        if same {
            return Err(Error::Refused {
                path: target.to_path_buf(),
                reason: format!("it is the source {} itself", source.display()),
            });
        }
    }
    let disks = discovery::scan(paths).unwrap_or_default();
    let s = lookup(paths, &disks, source);
    let t = lookup(paths, &disks, target);
    if let (Some((sd, sp)), Some((td, tp))) = (s, t) {
        if sd == td && (sp.is_none() || tp.is_none()) {
            let d = &disks[sd];
            return Err(Error::Refused {
                path: target.to_path_buf(),
                reason: format!(
                    "it overlaps the source {}: both are on disk {}",
                    source.display(),
                    d.name
                ),
            });
        }
    }
    if let Some((di, pi)) = s {
        let disk = &disks[di];
        let busy = match pi {
            None => disk.is_busy(),
            Some(pi) => disk.partitions[pi].is_busy(),
        };
        if let Some(reason) = busy {
            return Err(Error::Busy {
                path: source.to_path_buf(),
                reason: format!("{reason}; unmount it first so that the clone is consistent"),
            });
        }
    }
    // Loop devices over the same file, or over each other's files.
    let backing = |p: &Path| {
        lookup(paths, &disks, p)
            .and_then(|(di, _)| disks[di].backing_file.clone())
            .and_then(|f| std::fs::metadata(f).ok())
            .map(|m| (m.dev(), m.ino()))
    };
    if let (Some(a), Some(b)) = (backing(source), backing(target)) {
        if a == b {
            return Err(Error::Refused {
                path: target.to_path_buf(),
                reason: format!(
                    "it and the source {} are loop devices over the same file",
                    source.display()
                ),
            });
        }
    }
    for (a, b) in [(source, target), (target, source)] {
        if let Some((di, _)) = lookup(paths, &disks, a) {
            if let Some(f) = &disks[di].backing_file {
                let same = match (std::fs::metadata(f), std::fs::metadata(b)) {
                    (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
                    _ => false,
                };
                if same {
                    return Err(Error::Refused {
                        path: target.to_path_buf(),
                        reason: format!("{} is a loop device over {}", a.display(), b.display()),
                    });
                }
            }
        }
    }
    if std::fs::metadata(target).is_ok() {
        // Busy, mounted, holding the source: the restore rules with the source as the "image".
        check_restore_target(paths, target, source)?;
    }
    Ok(())
}

/// `--grow-last` needs a whole disk (or a disk-image file): the partition it grows is found
/// on the target's own table. A partition as the target is refused.
pub fn check_grow_target(paths: &SystemPaths, target: &Path) -> Result<()> {
    let disks = discovery::scan(paths).unwrap_or_default();
    if let Some((_, Some(p))) = discovery::find_by_path(paths, &disks, target) {
        return Err(Error::Refused {
            path: target.to_path_buf(),
            reason: format!(
                "it is partition {} of a disk; --grow-last grows the last partition of a whole disk, so give the disk itself (or leave out --grow-last)",
                p.name
            ),
        });
    }
    Ok(())
}

/// `--scratch DIR` holds what the shrinks of `--fit` write: it must be an existing folder,
/// and not on the target (which is overwritten meanwhile), nor on the disk being read
/// (`source`: the clone's source, or the image). A target or source that is a file counts as
/// its own place: the folder may not be the file, and may not be a loop device's backing.
pub fn check_scratch(
    paths: &SystemPaths,
    scratch: &Path,
    target: &Path,
    source: &Path,
) -> Result<()> {
    let refuse = |reason: String| Error::Refused {
        path: scratch.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(scratch).map_err(|e| Error::io("opening", scratch, e))?;
    let same = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    };
    if same(target) {
        return Err(refuse(format!(
            "--scratch is the target {} itself; give a folder on another disk",
            target.display()
        )));
    }
    if same(source) {
        return Err(refuse(format!(
            "--scratch is the source {} itself; give a folder on another disk",
            source.display()
        )));
    }
    if !meta.is_dir() {
        return Err(refuse("--scratch must be a folder".into()));
    }
    let disks = discovery::scan(paths).unwrap_or_default();
    let Some((hd, hp)) = holder_of(&disks, scratch) else {
        return Ok(());
    };
    for (what, p) in [("target", target), ("source", source)] {
        let Some((di, pi)) = lookup(paths, &disks, p) else {
            continue;
        };
        let disk = &disks[di];
        let on = match pi {
            None => hd == disk.name,
            Some(i) => hp.as_deref() == Some(disk.partitions[i].name.as_str()),
        };
        if on {
            return Err(refuse(format!(
                "--scratch is on the {what} {} ({}); give a folder on another disk",
                p.display(),
                hp.unwrap_or(hd)
            )));
        }
    }
    Ok(())
}
