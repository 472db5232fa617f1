//! Chains from the jobs' side: which disk an image was taken of, which image in a folder is
//! the right parent for a new incremental or differential, what the new file is called, and
//! which images a set of kept images still needs (safe thinning).

use crate::error::{Error, Result};
use crate::image::{hex, Chain, ImageReader};
use crate::inspect::DiskReport;
use crate::units::human_bytes;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// How a new child image relates to its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChildKind {
    /// Parent: the newest image of the disk, whatever its kind.
    Incremental,
    /// Parent: the newest full image of the disk.
    Differential,
}

impl ChildKind {
    /// "incremental" or "differential", as metadata records it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildKind::Incremental => "incremental",
            ChildKind::Differential => "differential",
        }
    }

    /// The kind of image a child of this kind is.
    pub fn image_kind(self) -> crate::image::ImageKind {
        match self {
            ChildKind::Incremental => crate::image::ImageKind::Incremental,
            ChildKind::Differential => crate::image::ImageKind::Differential,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            ChildKind::Incremental => "incr",
            ChildKind::Differential => "diff",
        }
    }
}

/// What identifies a disk across images: serial and model when the bus reports them, the
/// partition table's disk GUID or MBR signature, the size, and the path (or a loop device's
/// backing file) as the weakest clue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskIdentity {
    /// Device path or image file when imaged.
    pub path: Option<String>,
    /// Model from sysfs.
    pub model: Option<String>,
    /// Serial number from sysfs.
    pub serial: Option<String>,
    /// GPT disk GUID or MBR signature.
    pub disk_id: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Backing file of a loop device.
    pub backing_file: Option<String>,
}

impl DiskIdentity {
    /// The identity of a disk being imaged.
    pub fn of_report(r: &DiskReport) -> DiskIdentity {
        DiskIdentity {
            path: Some(r.path.display().to_string()),
            model: r.model.clone(),
            serial: r.serial.clone(),
            disk_id: r.disk_id.clone(),
            size_bytes: r.size_bytes,
            backing_file: r.backing_file.as_ref().map(|p| p.display().to_string()),
        }
    }

    /// The identity recorded in an image's metadata.
    pub fn of_image(r: &ImageReader) -> DiskIdentity {
        Self::of_parts(r.header(), r.meta())
    }

    /// [`DiskIdentity::of_image`] from an image's header and metadata.
    pub fn of_parts(h: &crate::image::format::Header, m: &crate::image::ImageMeta) -> DiskIdentity {
        let src = m.source.clone().unwrap_or_default();
        let recorded_path =
            (!m.source_path.as_os_str().is_empty()).then(|| m.source_path.display().to_string());
        DiskIdentity {
            path: src.path().or(recorded_path),
            model: src.model(),
            serial: src.serial(),
            disk_id: src.disk_id(),
            size_bytes: h.source_size,
            backing_file: src.backing_file(),
        }
    }

    /// `None` when the two are the same disk, or why they are not. Serials decide when both
    /// disks report one; otherwise the table's disk ID, then the size and path.
    pub fn differs_from(&self, other: &DiskIdentity) -> Option<String> {
        if let (Some(a), Some(b)) = (&self.serial, &other.serial) {
            return (a != b || self.model != other.model)
                .then(|| "their model or serial numbers differ".to_string());
        }
        if let (Some(a), Some(b)) = (&self.disk_id, &other.disk_id) {
            if !a.eq_ignore_ascii_case(b) {
                return Some("their partition tables have different disk IDs".into());
            }
            return (self.size_bytes != other.size_bytes).then(|| "their sizes differ".to_string());
        }
        if self.size_bytes != other.size_bytes {
            return Some("their sizes differ".into());
        }
        let place = |d: &DiskIdentity| d.backing_file.clone().or_else(|| d.path.clone());
        (place(self) != place(other))
            .then(|| "neither has a serial number or disk ID, and their paths differ".to_string())
    }

    /// One line for messages: path, model, serial, disk ID, size.
    pub fn describe(&self) -> String {
        let mut parts = vec![self.path.clone().unwrap_or_else(|| "?".into())];
        if let Some(b) = &self.backing_file {
            parts.push(format!("(file {b})"));
        }
        if let Some(m) = &self.model {
            parts.push(m.clone());
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial {s}"));
        }
        if let Some(d) = &self.disk_id {
            parts.push(format!("disk ID {d}"));
        }
        parts.push(human_bytes(self.size_bytes));
        parts.join(" ")
    }
}

/// An image found in a folder.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The file.
    pub path: PathBuf,
    /// Image ID, hex.
    pub image_id: String,
    /// Full, incremental or differential.
    pub kind: crate::image::ImageKind,
    /// When it was taken.
    pub created_unix: u64,
    /// Whether it is a full image.
    pub full: bool,
    /// Its parent's image ID, hex.
    pub parent_id: Option<String>,
    /// The disk it was taken of.
    pub disk: DiskIdentity,
    /// The chain's name (the full image's file stem).
    pub chain_name: String,
    /// In a fleet store (`image --dedup`): its chunks are in the store's packs, and it has no
    /// children.
    pub packed: bool,
}

/// Every complete image in `dir` (not recursive; `.partial` files and other files skipped).
pub fn images_in(dir: &Path) -> Result<Vec<Found>> {
    images_and_locked_in(dir).map(|(found, _)| found)
}

/// [`images_in`], and the encrypted images in `dir` that nothing given opens (no passphrase
/// yet, or a wrong one): they cannot be listed until one is typed.
pub fn images_and_locked_in(dir: &Path) -> Result<(Vec<Found>, Vec<PathBuf>)> {
    let s3 = crate::store::s3::is_s3(dir);
    let mut names: Vec<PathBuf> = if s3 {
        // a bucket's folder: its `.lbi` objects (each read with a few range requests)
        crate::store::s3::list_folder(dir)
            .map_err(|e| Error::io("listing", dir, e))?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "lbi"))
            .collect()
    } else {
        let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
        rd.filter_map(|e| e.ok().map(|e| e.path())).collect()
    };
    names.sort();
    names.retain(|p| (s3 || p.is_file()) && p.extension().is_none_or(|e| e != "partial"));
    // only each image's header, footer and metadata are read (not its index), several at
    // once: a bucket's folder of hundreds of images lists in a few round trips' time. Nobody
    // is asked for a passphrase meanwhile; the images that need one are opened again one by
    // one afterwards, when a prompt may ask.
    let opened = open_summaries(&names, LISTING_THREADS, false);
    let mut out = Vec::new();
    let mut locked = Vec::new();
    for (p, r) in names.into_iter().zip(opened) {
        let r = match r {
            Err(Error::KeyNeeded { .. } | Error::WrongKey { .. })
                if crate::image::crypt::keyring::can_prompt() =>
            {
                ImageReader::open_summary(&p, true)
            }
            r => r,
        };
        let r = match r {
            Ok(r) => r,
            Err(Error::KeyNeeded { .. } | Error::WrongKey { .. }) => {
                locked.push(p);
                continue;
            }
            Err(_) => continue,
        };
        let h = r.header();
        out.push(Found {
            image_id: hex(&h.image_id),
            kind: crate::image::kind_from(h, r.meta()),
            created_unix: h.created_unix,
            full: h.is_full(),
            parent_id: (!h.is_full()).then(|| hex(&h.parent_id)),
            disk: DiskIdentity::of_parts(h, r.meta()),
            chain_name: chain_name_from(r.meta(), &p),
            packed: h.flags & crate::image::format::FLAG_PACKED != 0,
            path: p,
        });
    }
    Ok((out, locked))
}

/// How many images a listing opens at once.
const LISTING_THREADS: usize = 4;

/// [`ImageReader::open_summary`] of every path, `threads` at a time; the results in order.
fn open_summaries(
    paths: &[PathBuf],
    threads: usize,
    prompt: bool,
) -> Vec<Result<crate::image::ImageSummary>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<crate::image::ImageSummary>>>> =
        paths.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, paths.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = paths.get(i) else { break };
                let r = ImageReader::open_summary(p, prompt);
                *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_else(|| Err(Error::Unsupported("a listing thread stopped".into())))
        })
        .collect()
}

/// The chain name an image records, or its file stem.
pub fn chain_name_of(r: &ImageReader) -> String {
    chain_name_from(r.meta(), r.path())
}

/// [`chain_name_of`] from an image's metadata and path.
fn chain_name_from(m: &crate::image::ImageMeta, path: &Path) -> String {
    if m.chain_name.is_empty() {
        stem(path)
    } else {
        m.chain_name.clone()
    }
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into())
}

/// Picks the parent for a new `kind` image of `disk` among the images in `dir`: the newest
/// image of the same disk (incremental) or the newest full one (differential).
pub fn pick_parent(dir: &Path, disk: &DiskIdentity, kind: ChildKind) -> Result<Found> {
    let all = images_in(dir)?;
    let total = all.len();
    let mut same: Vec<Found> = all
        .into_iter()
        .filter(|f| f.disk.differs_from(disk).is_none())
        .filter(|f| kind == ChildKind::Incremental || f.full)
        .collect();
    // Newest by time; within one second (times are whole seconds), an image whose child is
    // also a candidate is older than that child.
    let parents: HashSet<String> = same.iter().filter_map(|f| f.parent_id.clone()).collect();
    same.sort_by(|a, b| {
        (a.created_unix, !parents.contains(&a.image_id), &a.path).cmp(&(
            b.created_unix,
            !parents.contains(&b.image_id),
            &b.path,
        ))
    });
    same.pop().ok_or_else(|| Error::Refused {
        path: dir.to_path_buf(),
        reason: format!(
            "it holds no {}image of {} ({total} images of other disks or kinds); make a full image first: lifeboat image {} -o {}",
            if kind == ChildKind::Differential { "full " } else { "" },
            disk.describe(),
            disk.path.as_deref().unwrap_or("DISK"),
            dir.join("NAME.lbi").display()
        ),
    })
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub fn utc_stamp(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The predictable name of a new child: `CHAIN-YYYYMMDD-HHMMSS-incr.lbi` (or `-diff`) in
/// `dir`, with `-2`, `-3`… added if that name is taken.
pub fn child_name(dir: &Path, chain_name: &str, kind: ChildKind, unix: u64) -> PathBuf {
    let base = format!("{chain_name}-{}-{}", utc_stamp(unix), kind.suffix());
    let mut p = dir.join(format!("{base}.lbi"));
    let mut n = 2;
    while !crate::image::volumes::existing_files(&p).is_empty() {
        p = dir.join(format!("{base}-{n}.lbi"));
        n += 1;
    }
    p
}

/// The result of planning a prune.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    /// Images kept, with every file each one needs (itself first).
    pub keep: Vec<(PathBuf, Vec<PathBuf>)>,
    /// Images in the folder that belong to the kept images' chains and that no kept image
    /// needs: safe to delete.
    pub delete: Vec<PathBuf>,
    /// Images in the folder left alone: other disks or chains.
    pub untouched: Vec<PathBuf>,
    /// Bytes freed by deleting.
    pub freed_bytes: u64,
}

/// Which images in `dir` can be deleted while every image in `keep` stays restorable. Each
/// kept image's chain is opened and checked (a broken chain stops the prune); an image is
/// deleted only if it shares a chain name or disk with a kept image and no kept chain uses it.
pub fn plan_prune(dir: &Path, keep: &[PathBuf], search: &[PathBuf]) -> Result<PrunePlan> {
    // an S3 key is its own canonical name
    let canon = |p: &Path| {
        if crate::store::s3::is_s3(p) {
            return Ok(p.to_path_buf());
        }
        std::fs::canonicalize(p).map_err(|e| Error::io("resolving", p, e))
    };
    let mut needed: HashSet<PathBuf> = HashSet::new();
    let mut kept = Vec::new();
    let mut disks: Vec<DiskIdentity> = Vec::new();
    let mut chains: HashSet<String> = HashSet::new();
    for k in keep {
        let chain = Chain::open(k, search)?;
        let files: Vec<PathBuf> = chain
            .paths()
            .iter()
            .map(|p| canon(p))
            .collect::<Result<_>>()?;
        needed.extend(files.iter().cloned());
        disks.push(DiskIdentity::of_image(chain.leaf()));
        chains.insert(chain_name_of(chain.leaf()));
        kept.push((k.clone(), files));
    }
    let mut delete = Vec::new();
    let mut untouched = Vec::new();
    let mut freed = 0;
    for f in images_in(dir)? {
        let c = canon(&f.path)?;
        if needed.contains(&c) {
            continue;
        }
        let related = chains.contains(&f.chain_name)
            || disks.iter().any(|d| d.differs_from(&f.disk).is_none());
        if related {
            freed += crate::image::image_bytes(&f.path);
            delete.push(f.path);
        } else {
            untouched.push(f.path);
        }
    }
    Ok(PrunePlan {
        keep: kept,
        delete,
        untouched,
        freed_bytes: freed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-chunk image at `dir/name`.
    fn small_image(dir: &Path, name: &str) {
        use crate::image::{format, Codec, EncodedChunk, ImageMeta, ImageWriter};
        let header = format::Header {
            chunk_size: 1 << 20,
            ..format::sample_header()
        };
        let raw = vec![name.len() as u8; 4096];
        let c = EncodedChunk::single(0, &raw, Codec::Raw, raw.clone());
        let mut w = ImageWriter::create(&dir.join(name), header).unwrap();
        w.push(c).unwrap();
        w.finish(&ImageMeta::default()).unwrap();
    }

    #[test]
    fn a_listing_reads_no_index_and_keeps_name_order() {
        let d = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..20).map(|i| format!("img-{i:02}.lbi")).collect();
        for n in &names {
            small_image(d.path(), n);
        }
        // a damaged index: listed from its header and metadata (opening it to read fails)
        let hurt = d.path().join("img-07.lbi");
        let mut bytes = std::fs::read(&hurt).unwrap();
        let at = bytes.len() - crate::image::format::FOOTER_LEN - 8;
        bytes[at] ^= 0xff;
        std::fs::write(&hurt, &bytes).unwrap();
        assert!(ImageReader::open(&hurt).is_err());
        std::fs::write(d.path().join("notes.txt"), b"not an image").unwrap();
        std::fs::write(d.path().join("img-99.lbi.partial"), b"half").unwrap();
        let (found, locked) = images_and_locked_in(d.path()).unwrap();
        let listed: Vec<String> = found
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(listed, names);
        assert!(found
            .iter()
            .all(|f| f.full && f.kind == crate::image::ImageKind::Full));
        assert!(locked.is_empty());
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(utc_stamp(1_795_307_723), "20261122-003523");
    }

    fn id(serial: Option<&str>, disk: Option<&str>, size: u64, path: &str) -> DiskIdentity {
        DiskIdentity {
            path: Some(path.into()),
            model: serial.map(|_| "Disk".into()),
            serial: serial.map(str::to_string),
            disk_id: disk.map(str::to_string),
            size_bytes: size,
            backing_file: None,
        }
    }

    #[test]
    fn identity_rules() {
        // Serials decide, whatever the path or table.
        assert!(id(Some("A"), Some("x"), 1, "/dev/sda")
            .differs_from(&id(Some("A"), Some("y"), 2, "/dev/sdb"))
            .is_none());
        assert!(id(Some("A"), None, 1, "p")
            .differs_from(&id(Some("B"), None, 1, "p"))
            .is_some());
        // Without serials, the disk ID and size.
        assert!(id(None, Some("G1"), 1, "a")
            .differs_from(&id(None, Some("g1"), 1, "b"))
            .is_none());
        assert!(id(None, Some("G1"), 1, "a")
            .differs_from(&id(None, Some("G2"), 1, "a"))
            .is_some());
        assert!(id(None, Some("G1"), 1, "a")
            .differs_from(&id(None, Some("G1"), 2, "a"))
            .is_some());
        // Nothing but a path and size.
        assert!(id(None, None, 1, "a")
            .differs_from(&id(None, None, 1, "a"))
            .is_none());
        assert!(id(None, None, 1, "a")
            .differs_from(&id(None, None, 1, "b"))
            .is_some());
    }

    #[test]
    fn child_names_are_predictable_and_unique() {
        let d = tempfile::tempdir().unwrap();
        let p = child_name(d.path(), "laptop", ChildKind::Incremental, 0);
        assert_eq!(p, d.path().join("laptop-19700101-000000-incr.lbi"));
        std::fs::write(&p, b"x").unwrap();
        let q = child_name(d.path(), "laptop", ChildKind::Incremental, 0);
        assert_eq!(q, d.path().join("laptop-19700101-000000-incr-2.lbi"));
        let r = child_name(d.path(), "laptop", ChildKind::Differential, 0);
        assert_eq!(r, d.path().join("laptop-19700101-000000-diff.lbi"));
    }
}
