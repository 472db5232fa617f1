//! `image`: a whole disk (or a chosen set of partitions) into one verified image file.
//!
//! What is copied:
//! - everything before the first partition (MBR boot code, the GPT, the post-MBR gap that
//!   boot loaders use), the last MiB of the disk (the backup GPT), and every gap of up to
//!   16 MiB between partitions (alignment gaps and MBR extended boot records); of a larger
//!   unallocated gap only its first and last MiB;
//! - in each partition, the blocks its filesystem proves used, or every block when there is
//!   no map (unknown or damaged filesystem, journal to recover, hibernated Windows): see
//!   [`crate::fsmap`];
//! - all-zero chunks are recorded as zero and not stored.
//!
//! The whole table area is always imaged in full, whatever `--partitions` selects.

use super::chain::{chain_name_of, ChildKind, DiskIdentity};
use super::safety;
use super::survey::{chunk, survey, usable_table, SurveyOpts};
use super::writer::{dio_unit, open_direct};
use crate::blockdev::{aligned, BlockDev, FileDev, OpenMode};
use crate::discovery::SystemPaths;
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::image::crypt::{self, KeySlots, SlotKind};
use crate::image::encode::encode_pieces;
use crate::image::meta::{Compression, ParentRef, SourceDisk};
use crate::image::{format, hex, Chain, Codec, Header, ImageKind, ImageMeta, ImageWriter, Region};
use crate::inspect::{self, DiskReport};
use crate::partition::{self, PartitionTable, TableKind};
use crate::pipeline::{self, Shape};
use crate::units::MIB;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub mod damaged;
pub mod mapfile;
mod rescue;
mod rescue_log;
pub use rescue::{AreaState, RescueMap, RescueOptions, RescueReport, ResumeFrom};
pub use rescue_log::log_path as rescue_log_path;

/// Default raw chunk size: 4 MiB, aligned to the disk. A chunk is compressed as one frame.
pub const DEFAULT_CHUNK: u32 = 4 << 20;
/// Default block size: records (the unit chains match unchanged data in) never cross a
/// multiple of 64 KiB.
pub const DEFAULT_BLOCK: u32 = 64 << 10;
/// Default zstd level (1 is the fastest, 19 the smallest).
pub const DEFAULT_LEVEL: i32 = 3;
/// Chunks whose reads are started ahead of the one being read.
const READ_AHEAD: usize = 4;

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Block device or disk-image file.
    pub source: PathBuf,
    /// The image file to create.
    pub output: PathBuf,
    /// Partition numbers to include (`None` = all).
    pub partitions: Option<Vec<u32>>,
    /// zstd level (1..=19).
    pub level: i32,
    /// Worker threads (0 = every core).
    pub threads: usize,
    /// Raw chunk size in bytes (a power of two, 64 KiB..=64 MiB).
    pub chunk_size: u32,
    /// Record size in bytes (a power of two, 4 KiB..=chunk size).
    pub block_size: u32,
    /// Logical sector size assumed for a disk-image file source.
    pub file_sector_size: u32,
    /// Make a child image of this parent instead of a full image.
    pub parent: Option<ParentSpec>,
    /// Split the image into volumes of this many bytes. `None`: only where the output's
    /// filesystem needs it (FAT, see [`crate::image::volumes::volume_limit`]).
    pub volume_size: Option<u64>,
    /// Image a failing disk: survive read errors and record what cannot be read as missing
    /// (`--rescue`, see `docs/RESCUE.md`). `None`: a read error fails the job.
    pub rescue: Option<RescueOptions>,
    /// Copy swap areas whole (`--full-swap`) instead of their header and ends.
    pub full_swap: bool,
    /// Encrypt the image (`--encrypt`, `docs/FORMAT.md`). A child of an encrypted parent is
    /// encrypted with the parent's key whatever this says.
    pub encrypt: Option<Encrypt>,
    /// Write into the deduplicating store that is the output's folder (`image --dedup`,
    /// [`crate::image::packs`]): chunks the store holds are not stored again.
    pub dedup: bool,
}

/// How to encrypt a new full image.
#[derive(Debug, Clone)]
pub struct Encrypt {
    /// The passphrase of its first key slot.
    pub passphrase: crate::image::crypt::Secret,
    /// Add a recovery-key slot too, and report the key once (`--recovery-key`).
    pub recovery_key: bool,
}

impl ImageSpec {
    /// A full image of every partition of `source` into `output`, with the defaults every face
    /// shares: [`DEFAULT_LEVEL`], [`super::DEFAULT_THREADS`], [`DEFAULT_CHUNK`],
    /// [`DEFAULT_BLOCK`] and [`super::DEFAULT_FILE_SECTOR_SIZE`]. Change fields for the rest.
    pub fn new(source: PathBuf, output: PathBuf) -> Self {
        ImageSpec {
            source,
            output,
            partitions: None,
            level: DEFAULT_LEVEL,
            threads: super::DEFAULT_THREADS,
            chunk_size: DEFAULT_CHUNK,
            block_size: DEFAULT_BLOCK,
            file_sector_size: super::DEFAULT_FILE_SECTOR_SIZE,
            parent: None,
            volume_size: None,
            rescue: None,
            full_swap: false,
            encrypt: None,
            dedup: false,
        }
    }
}

/// The parent of a new incremental or differential image.
#[derive(Debug, Clone)]
pub struct ParentSpec {
    /// The parent image file.
    pub path: PathBuf,
    /// What the new image is, as its metadata records it.
    pub kind: ChildKind,
    /// Folders to look for the parent's ancestors in, besides its own.
    pub search: Vec<PathBuf>,
    /// Image a disk other than the one the parent was taken of.
    pub force_other_disk: bool,
}

impl ParentSpec {
    /// The parent for a new `kind` image of `source` among the images in `dir` (the newest
    /// image of the same disk, or the newest full one: [`super::chain::pick_parent`]), and the
    /// child's predictable name in `dir` at time `unix` ([`super::chain::child_name`]).
    pub fn newest_in(
        dir: &std::path::Path,
        source: &std::path::Path,
        file_sector_size: u32,
        kind: ChildKind,
        unix: u64,
    ) -> Result<(ParentSpec, PathBuf)> {
        // an S3 folder is listed (its images read with range requests); an HTTP one cannot be
        if crate::store::is_remote(dir) && !crate::store::s3::is_s3(dir) {
            return Err(Error::Unsupported(format!(
                "--incremental and --differential with a web server's folder ({}): name the \
                 parent with --parent and the new image with -o",
                dir.display()
            )));
        }
        let report = inspect::inspect_path(&SystemPaths::default(), source, file_sector_size)?;
        let me = DiskIdentity::of_report(&report);
        let parent = super::chain::pick_parent(dir, &me, kind)?;
        let output = super::chain::child_name(dir, &parent.chain_name, kind, unix);
        let spec = ParentSpec {
            path: parent.path,
            kind,
            search: Vec::new(),
            force_other_disk: false,
        };
        Ok((spec, output))
    }
}

/// The parent of a planned child image.
#[derive(Debug, Clone, Serialize)]
pub struct ParentPlan {
    /// The parent image file.
    pub path: PathBuf,
    /// Its image ID, hex.
    pub image_id: String,
    /// Its root hash, hex.
    pub root_hash: String,
    /// Its kind.
    pub parent_kind: ImageKind,
    /// "incremental" or "differential": the new image's kind.
    pub kind: ChildKind,
    /// Images in the chain the new one extends (the parent and its ancestors).
    pub chain_length: usize,
    /// Files of that chain, parent first.
    pub chain_files: Vec<PathBuf>,
    /// Folders searched for ancestors.
    pub search: Vec<PathBuf>,
    /// Hashes the chain already stores.
    pub known_blocks: usize,
}

/// The printable, serializable plan of an image job.
#[derive(Debug, Clone, Serialize)]
pub struct ImagePlan {
    /// Source path.
    pub source: PathBuf,
    /// Output path.
    pub output: PathBuf,
    /// Source size in bytes.
    pub size_bytes: u64,
    /// Logical sector size.
    pub sector_size: u32,
    /// Table kind ("gpt", "mbr") or `None`.
    pub table: Option<&'static str>,
    /// Regions in disk order.
    pub regions: Vec<Region>,
    /// Total bytes that will be read.
    pub copy_bytes: u64,
    /// Chunks that will be written.
    pub chunks: usize,
    /// Warnings that do not stop the job.
    pub warnings: Vec<String>,
    /// zstd level.
    pub level: i32,
    /// Worker threads.
    pub threads: usize,
    /// Raw chunk size.
    pub chunk_size: u32,
    /// Record (block) size.
    pub block_size: u32,
    /// Full, incremental or differential.
    pub kind: ImageKind,
    /// The parent, for a child image.
    pub parent: Option<ParentPlan>,
    /// The chain's name: the full image's file stem, inherited by its children.
    pub chain_name: String,
    /// The volume size when the image is written as volumes (`NAME.lbi`, `NAME.lbi.001`…);
    /// 0 for one file.
    pub volume_size: u64,
    /// Why the image is split, when it is.
    pub split_reason: Option<String>,
    /// How a rescue reads (`--rescue`), or `None` for a normal image.
    pub rescue: Option<RescueOptions>,
    /// What `--resume` goes on from.
    pub resume: Option<ResumeFrom>,
    /// The cipher of an encrypted image ("xchacha20-poly1305"), `None` for a plain one.
    pub encryption: Option<&'static str>,
    /// Into a deduplicating store (`--dedup`).
    pub dedup: bool,
    /// The key slots of an encrypted image (its master key is in the keyring). For a new
    /// image file, only its key ID until `pending_slots` is done.
    #[serde(skip)]
    keys: Option<crate::image::crypt::KeySlots>,
    /// The key slots of a new encrypted image file, being made (Argon2id) while it is
    /// written: the writer puts them in its header at the end ([`ImageWriter::slots_later`]).
    #[serde(skip)]
    pending_slots: Option<Arc<std::sync::Mutex<Option<PendingSlots>>>>,
    /// The recovery key made for a new encrypted image (`--recovery-key`), reported once.
    #[serde(skip)]
    recovery_key: Option<crate::image::crypt::Secret>,
    /// Used bytes outside the `--domain` mapfile: not read, recorded as missing.
    #[serde(skip)]
    outside_domain: Vec<(u64, u64)>,
    #[serde(skip)]
    chain: Option<Arc<Chain>>,
    #[serde(skip)]
    chunk_list: Vec<(u64, u32, usize)>,
    #[serde(skip)]
    report: Option<DiskReport>,
    #[serde(skip)]
    raw_table: Vec<u8>,
    #[serde(skip)]
    table_kind: Option<TableKind>,
    #[serde(skip)]
    file_sector_size: u32,
}

/// What a finished image job reports.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ImageSummary {
    /// The image file.
    pub path: PathBuf,
    /// Image ID, hex.
    pub image_id: String,
    /// Root hash, hex.
    pub root_hash: String,
    /// Chunks recorded.
    pub chunk_count: u64,
    /// Source bytes read.
    pub read_bytes: u64,
    /// Of those, bytes found in the parent chain and not stored again.
    pub parent_bytes: u64,
    /// Full, incremental or differential.
    pub kind: ImageKind,
    /// Size of the image, all its volumes together.
    pub file_bytes: u64,
    /// Its files: the image, or its volumes in order.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Seconds until the image was written and sealed, before its check; part of `seconds`.
    #[serde(default)]
    pub write_seconds: f64,
    /// Seconds the check of the written image took (re-reading and re-hashing it), part of
    /// `seconds`.
    #[serde(default)]
    pub verify_seconds: f64,
    /// Source bytes that could not be read and are recorded as missing (`--rescue`).
    #[serde(default)]
    pub missing_bytes: u64,
    /// Those bytes' ranges, in disk order.
    #[serde(default)]
    pub missing: Vec<crate::image::MissingRange>,
    /// What the rescue did, for `--rescue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescue: Option<RescueReport>,
    /// What the missing ranges hit: files and filesystem structures, region by region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<damaged::RegionDamage>,
    /// True for an encrypted image.
    #[serde(default)]
    pub encrypted: bool,
    /// The recovery key of a new encrypted image made with `--recovery-key`: shown once,
    /// kept nowhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_key: Option<String>,
}

/// Builds the plan: reads the table and every filesystem map. Reads the source only.
pub fn plan(spec: &ImageSpec, paths: &SystemPaths) -> Result<ImagePlan> {
    if !(1..=19).contains(&spec.level) {
        return Err(Error::Refused {
            path: spec.output.clone(),
            reason: format!("zstd level {} is outside 1..=19", spec.level),
        });
    }
    if !spec.chunk_size.is_power_of_two()
        || !(64 << 10..=format::MAX_CHUNK_RAW).contains(&spec.chunk_size)
    {
        return Err(Error::Refused {
            path: spec.output.clone(),
            reason: format!(
                "chunk size {} is not a power of two between 64 KiB and 64 MiB",
                spec.chunk_size
            ),
        });
    }
    if !spec.block_size.is_power_of_two() || !(4 << 10..=spec.chunk_size).contains(&spec.block_size)
    {
        return Err(Error::Refused {
            path: spec.output.clone(),
            reason: format!(
                "block size {} is not a power of two between 4 KiB and the chunk size",
                spec.block_size
            ),
        });
    }
    if spec.dedup && (spec.parent.is_some() || spec.rescue.is_some() || spec.volume_size.is_some())
    {
        return Err(Error::Unsupported(
            "--dedup with a parent (--parent, --incremental, --differential), --rescue or \
             --volume-size: a deduplicating store holds full images (their chunks are shared \
             with every other image there instead)"
                .into(),
        ));
    }
    // an encrypted fleet store's key slots: every image there shares its key
    let store_keys = if spec.dedup {
        crate::image::packs::StoreKeys::read(&crate::image::volumes::parent_dir(&spec.output))?
    } else {
        None
    };
    // a new key is made now, its slots (Argon2id, about 0.1 s) on another thread while the
    // disk is surveyed (and, for an image file, while it is written: see `pending_slots`)
    let new_keys = spec
        .encrypt
        .as_ref()
        .filter(|_| {
            spec.parent.is_none()
                && !spec.rescue.as_ref().is_some_and(|o| o.resume)
                && store_keys.is_none()
        })
        .map(NewKeys::start)
        .transpose()?;
    let resume = match &spec.rescue {
        Some(o) if o.resume && rescue::died_before_its_log(&spec.output) => {
            // nothing was rescued yet: it starts over
            crate::image::volumes::remove_partials(&spec.output);
            None
        }
        Some(o) if o.resume => Some(rescue::resume_point(&spec.output)?),
        _ => {
            crate::image::volumes::refuse_existing(&spec.output)?;
            None
        }
    };
    safety::check_image_source(paths, &spec.source, &spec.output)?;
    let file = FileDev::open_with_sector_size(&spec.source, OpenMode::Read, spec.file_sector_size)?;
    let mut warnings = Vec::new();
    // A rescue plans through reads with a timeout, reads the table leniently (a sector it
    // cannot read reads as zeros, which no table's checksum accepts) and copies a
    // filesystem whose maps it cannot read whole.
    let (dev, report, table): (Box<dyn BlockDev>, _, _) = match &spec.rescue {
        None => {
            let report = inspect::inspect_path(paths, &spec.source, spec.file_sector_size).ok();
            let table = partition::read_table(&file)?;
            (Box::new(file), report, table)
        }
        Some(o) => {
            drop(file);
            let (source, _) = rescue::open_source(&spec.source, spec.file_sector_size)?;
            let timed = crate::blockdev::timed::TimedReader::new(
                source,
                std::time::Duration::from_secs_f64(o.read_timeout_secs.clamp(0.05, 86_400.0)),
            );
            let report = rescue::inspect_in_time(paths, spec, o);
            let table = rescue::lenient_table(&timed, &mut warnings);
            (Box::new(timed), report, table)
        }
    };
    let dev = &*dev;
    let size = dev.len();
    let ss = dev.geometry().logical_sector_size;
    refuse_empty_or_truncated(dev, &spec.source, size, ss, table.as_ref())?;
    let (mut chunk_size, mut block_size) = (spec.chunk_size, spec.block_size);
    let mut parent_plan = None;
    let mut chain = None;
    if let Some(ps) = &spec.parent {
        let c = Chain::open_for_child(&ps.path, &ps.search)?;
        let ph = c.leaf().header().clone();
        let here = match &report {
            Some(r) => DiskIdentity::of_report(r),
            None => DiskIdentity {
                path: Some(spec.source.display().to_string()),
                size_bytes: size,
                ..DiskIdentity::default()
            },
        };
        let there = DiskIdentity::of_image(c.leaf());
        if let Some(why) = here.differs_from(&there) {
            let msg = format!(
                "{} is not the disk {} was taken of ({why}): this disk is {}, the parent's is {}",
                spec.source.display(),
                ps.path.display(),
                here.describe(),
                there.describe()
            );
            if !ps.force_other_disk {
                return Err(Error::Refused {
                    path: spec.source.clone(),
                    reason: format!(
                        "{msg}; pass --force-other-disk to store it against this parent anyway"
                    ),
                });
            }
            warnings.push(format!("{msg} (--force-other-disk)"));
        }
        if ph.sector_size != ss {
            return Err(Error::Refused {
                path: spec.source.clone(),
                reason: format!(
                    "it has {ss}-byte sectors but the parent {} has {}-byte sectors",
                    ps.path.display(),
                    ph.sector_size
                ),
            });
        }
        // Children cut chunks and blocks like their parent, so unchanged data matches.
        chunk_size = ph.chunk_size;
        if ph.block_size > 0 {
            block_size = ph.block_size;
        }
        parent_plan = Some(ParentPlan {
            path: ps.path.clone(),
            image_id: hex(&ph.image_id),
            root_hash: hex(&c.leaf().footer().root_hash),
            parent_kind: crate::image::kind_of(c.leaf()),
            kind: ps.kind,
            chain_length: c.links().len(),
            chain_files: c.paths(),
            search: ps.search.clone(),
            known_blocks: c.stored_hashes().len(),
        });
        chain = Some(Arc::new(c));
    }

    if let Some((_, h)) = &resume {
        // the image goes on as it was begun: same disk, same parent, same cutting
        let parent_id = plan_parent_id(&chain);
        let why = if h.source_size != size || h.sector_size != ss {
            Some(format!(
                "it was begun on a disk of {} bytes with {}-byte sectors; this one has {size} bytes and {ss}-byte sectors",
                h.source_size, h.sector_size
            ))
        } else if h.parent_id != parent_id {
            Some(if h.is_full() {
                "it is a full image: resume it without --parent, --incremental or --differential"
                    .to_string()
            } else {
                format!(
                    "it was begun on top of the image {}: give the same parent",
                    hex(&h.parent_id)
                )
            })
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::Refused {
                path: spec.output.clone(),
                reason: format!("cannot resume it from {}: {why}", spec.source.display()),
            });
        }
        chunk_size = h.chunk_size;
        block_size = h.block_size;
    }

    let usable = usable_table(table.as_ref(), &mut warnings);
    if let Some(sel) = &spec.partitions {
        let nums: Vec<u32> = usable
            .map(|t| t.partitions.iter().map(|p| p.number).collect())
            .unwrap_or_default();
        for n in sel {
            if !nums.contains(n) {
                return Err(Error::Refused {
                    path: spec.source.clone(),
                    reason: format!(
                        "it has no partition {n} (partitions: {})",
                        if nums.is_empty() {
                            "none".to_string()
                        } else {
                            nums.iter()
                                .map(u32::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                });
            }
        }
    }

    let (regions, extents) = survey(
        dev,
        usable,
        spec.partitions.as_deref(),
        SurveyOpts {
            lenient: spec.rescue.is_some(),
            full_swap: spec.full_swap,
        },
        &mut warnings,
    )?;
    // --domain: only the used blocks inside it are read; the rest is recorded as missing
    let (extents, outside_domain) = match spec.rescue.as_ref().and_then(|o| o.domain.as_ref()) {
        Some(path) => {
            let domain = mapfile::read_domain(path)?;
            let (inside, outside) = mapfile::split_by_domain(&extents, &domain);
            let bytes: u64 = outside.iter().map(|o| o.1).sum();
            if bytes > 0 {
                warnings.push(format!(
                    "{bytes} bytes of used blocks lie outside the domain {} and are recorded as missing",
                    path.display()
                ));
            }
            (inside, outside)
        }
        None => (extents, Vec::new()),
    };
    let chunk_list = chunk(&extents, u64::from(chunk_size));
    let copy_bytes = chunk_list.iter().map(|c| u64::from(c.1)).sum();
    let (volume_size, split_reason) = match &resume {
        // the volumes already written decide
        Some((_, h)) => (h.volume_size, None),
        None => volume_plan(
            &spec.output,
            spec.volume_size,
            largest_image(copy_bytes, chunk_list.len() as u64, block_size),
        )?,
    };
    if let Some(w) = file_limit_warning(if volume_size > 0 {
        volume_size
    } else {
        largest_image(copy_bytes, chunk_list.len() as u64, block_size)
    }) {
        warnings.push(w);
    }
    // an image file's slots may come while it is written (its header is written again at
    // the end); a fleet store's key needs them at the start, an object in S3 and a rescue
    // (whose partial file a resume reads) have their header written once
    let defer = !spec.dedup && spec.rescue.is_none() && !crate::store::s3::is_s3(&spec.output);
    let mut pending_slots = None;
    let (keys, recovery_key) = if spec.dedup {
        plan_store_keys(spec, store_keys, new_keys, &mut warnings)?
    } else {
        plan_keys(
            spec,
            chain.as_deref(),
            resume.as_ref().map(|r| &r.1),
            new_keys,
            defer.then_some(&mut pending_slots),
        )?
    };
    let raw_table = table
        .as_ref()
        .map(|t| match &spec.rescue {
            None => raw_table_bytes(dev, t),
            Some(_) => raw_table_bytes(&rescue::Lenient::new(dev), t),
        })
        .transpose()?
        .unwrap_or_default();
    Ok(ImagePlan {
        source: spec.source.clone(),
        output: spec.output.clone(),
        size_bytes: size,
        sector_size: ss,
        table: table.as_ref().map(|t| t.kind.as_str()),
        regions,
        copy_bytes,
        chunks: chunk_list.len(),
        warnings,
        level: spec.level,
        threads: Shape::for_threads(spec.threads).threads,
        chunk_size,
        block_size,
        kind: parent_plan
            .as_ref()
            .map_or(ImageKind::Full, |p| p.kind.image_kind()),
        chain_name: match &chain {
            Some(c) => chain_name_of(c.leaf()),
            None => spec
                .output
                .file_stem()
                .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned()),
        },
        parent: parent_plan,
        volume_size,
        split_reason,
        rescue: spec.rescue.clone(),
        resume: resume.map(|r| r.0),
        encryption: keys.as_ref().map(|_| crate::image::crypt::CIPHER),
        dedup: spec.dedup,
        keys,
        pending_slots: pending_slots.map(|h| Arc::new(std::sync::Mutex::new(Some(h)))),
        recovery_key,
        outside_domain,
        chain,
        chunk_list,
        report,
        raw_table,
        table_kind: table.as_ref().map(|t| t.kind),
        file_sector_size: spec.file_sector_size,
    })
}

/// The key slots of the image `spec` asks for, and its new recovery key: a child takes its
/// parent's slots (and master key), a resumed rescue those it was begun with, and `--encrypt`
/// makes a new master key with a passphrase slot (and a recovery slot).
fn plan_keys(
    spec: &ImageSpec,
    chain: Option<&Chain>,
    resumed: Option<&Header>,
    new_keys: Option<NewKeys>,
    defer: Option<&mut Option<PendingSlots>>,
) -> Result<(Option<KeySlots>, Option<crypt::Secret>)> {
    if let Some(h) = resumed {
        if let Some(slots) = &h.keys {
            // unlocked now, so that a wrong passphrase stops the resume before anything
            crypt::keyring::unlock(&spec.output, slots)?;
        }
        return Ok((h.keys.clone(), None));
    }
    if let Some(c) = chain {
        return match (&c.leaf().header().keys, &spec.encrypt) {
            (Some(slots), _) => Ok((Some(slots.clone()), None)),
            (None, Some(_)) => Err(Error::Refused {
                path: c.leaf().path().to_path_buf(),
                reason: "it is not encrypted, and an incremental or differential image is \
                         encrypted exactly as its parent is: start a new full image with --encrypt"
                    .into(),
            }),
            (None, None) => Ok((None, None)),
        };
    }
    let Some(e) = &spec.encrypt else {
        return Ok((None, None));
    };
    let new = match new_keys {
        Some(n) => n,
        None => NewKeys::start(e)?,
    };
    if let Some(later) = defer {
        // the header holds the key ID now and the slots when the image is finished
        let placeholder = KeySlots {
            key_id: new.key.key_id(),
            slots: Vec::new(),
        };
        crypt::keyring::add_key(new.key);
        *later = Some(new.slots);
        return Ok((Some(placeholder), new.recovery));
    }
    let (key, slots, recovery) = new.join()?;
    crypt::keyring::add_key(key);
    Ok((Some(slots), recovery))
}

/// The key slots of an image into a fleet store: the store's own (an encrypted store, which
/// the passphrase given must unlock), new ones (the first image of a new encrypted store),
/// or none (a plain store). A store is encrypted or plain from its first image on.
fn plan_store_keys(
    spec: &ImageSpec,
    store_keys: Option<KeySlots>,
    new_keys: Option<NewKeys>,
    warnings: &mut Vec<String>,
) -> Result<(Option<KeySlots>, Option<crypt::Secret>)> {
    let dir = crate::image::volumes::parent_dir(&spec.output);
    match (store_keys, &spec.encrypt) {
        (Some(slots), Some(e)) => {
            if !e.passphrase.0.is_empty() {
                crypt::keyring::add_secret(e.passphrase.0.clone());
            }
            crypt::keyring::unlock(&crate::image::packs::store_key_path(&dir), &slots)?;
            if e.recovery_key {
                warnings.push(
                    "--recovery-key: the store's key slots were made with its first image \
                     (a recovery key, if asked for, was shown then); this image uses them"
                        .into(),
                );
            }
            Ok((Some(slots), None))
        }
        (Some(_), None) => Err(Error::Refused {
            path: dir,
            reason: "it is an encrypted fleet store: image into it with --encrypt and the \
                     store's passphrase (--key-file, or asked), so that the image shares its key"
                .into(),
        }),
        (None, Some(_)) if crate::image::packs::is_store(&dir) => Err(Error::Refused {
            path: dir,
            reason: "it is a fleet store of plain images, and a store is encrypted or plain \
                     from its first image on: an encrypted fleet store needs a folder of its own"
                .into(),
        }),
        (None, _) => plan_keys(spec, None, None, new_keys, None),
    }
}

/// The key slots of a new encrypted image being made on another thread (Argon2id).
pub type PendingSlots = std::thread::JoinHandle<Result<KeySlots>>;

/// A new master key and the recovery key's text (`--recovery-key`), made at once, and its key
/// slots, made on another thread.
struct NewKeys {
    key: crypt::MasterKey,
    recovery: Option<crypt::Secret>,
    slots: PendingSlots,
}

impl NewKeys {
    /// Makes a new master key for `e`, and starts making its slots.
    fn start(e: &Encrypt) -> Result<NewKeys> {
        let key = crypt::MasterKey::generate()?;
        let recovery = if e.recovery_key {
            Some(crypt::new_recovery_key()?)
        } else {
            None
        };
        let (k, pass) = (key.clone(), e.passphrase.clone());
        let rec = recovery.as_ref().map(|(bytes, _)| bytes.clone());
        let slots = std::thread::spawn(move || {
            let mut secrets: Vec<(SlotKind, &[u8])> =
                vec![(SlotKind::Passphrase, pass.0.as_bytes())];
            if let Some(bytes) = &rec {
                secrets.push((SlotKind::Recovery, &bytes[..]));
            }
            KeySlots::new(&k, &secrets)
        });
        Ok(NewKeys {
            key,
            recovery: recovery.map(|(_, text)| crypt::Secret(text)),
            slots,
        })
    }

    /// Waits for the slots.
    fn join(self) -> Result<(crypt::MasterKey, KeySlots, Option<crypt::Secret>)> {
        Ok((self.key, join_slots(self.slots)?, self.recovery))
    }
}

/// The slots made by `h`.
pub fn join_slots(h: PendingSlots) -> Result<KeySlots> {
    h.join()
        .map_err(|_| Error::Unsupported("making the key slots failed".into()))?
}

impl ImagePlan {
    /// How the new image's records hash their content (keyed when it is encrypted).
    pub fn content_hash(&self) -> Result<crypt::ContentHash> {
        match &self.keys {
            Some(slots) => Ok(crypt::keyring::unlock(&self.output, slots)?.content_hash()),
            None => Ok(crypt::ContentHash::Plain),
        }
    }

    /// The key slots of an encrypted image.
    pub fn keys(&self) -> Option<&KeySlots> {
        self.keys.as_ref()
    }

    /// The recovery key made for it, to tell the user once.
    pub fn recovery_key(&self) -> Option<&str> {
        self.recovery_key.as_ref().map(|s| s.0.as_str())
    }
}

/// The image ID a child of `chain` names as its parent; all zero without one.
fn plan_parent_id(chain: &Option<Arc<Chain>>) -> [u8; 16] {
    chain
        .as_ref()
        .map_or([0; 16], |c| c.leaf().header().image_id)
}

/// The most bytes an image of `copy_bytes` in `chunks` chunks can take: every byte stored
/// raw, a record per block, the header, footer and a generous metadata section.
pub(crate) fn largest_image(copy_bytes: u64, chunks: u64, block_size: u32) -> u64 {
    let records = copy_bytes / u64::from(block_size.max(1)) + 2 * chunks;
    copy_bytes + records * format::RECORD_LEN as u64 + 16 * MIB
}

/// A warning when this process's file size limit (`ulimit -f`) is below `largest`, the
/// most one file of the image may take.
pub(crate) fn file_limit_warning(largest: u64) -> Option<String> {
    crate::image::volumes::file_size_limit()
        .filter(|&soft| soft < largest)
        .map(|soft| {
            format!(
                "the file size limit of this process (ulimit -f) is {}, and a file of this image may take up to {}: raise the limit, or pass --volume-size",
                crate::units::human_bytes(soft),
                crate::units::human_bytes(largest)
            )
        })
}

/// Whether an image of at most `largest` bytes written to `output` is split, into what size
/// of volume, and why: `explicit` (`--volume-size`) when given; otherwise volumes of
/// [`crate::image::volumes::FAT_VOLUME`] when `output`'s folder is on FAT and the image may
/// not fit one file. `(0, None)`: one file.
pub(crate) fn volume_plan(
    output: &std::path::Path,
    explicit: Option<u64>,
    largest: u64,
) -> Result<(u64, Option<String>)> {
    use crate::image::volumes::{volume_limit, MAX_VOLUMES, MIN_VOLUME};
    use crate::units::human_bytes;
    let refuse = |reason: String| Error::Refused {
        path: output.to_path_buf(),
        reason,
    };
    let limit = volume_limit(&crate::image::volumes::parent_dir(output));
    let (size, why) = match (explicit, &limit) {
        (Some(v), _) if v < MIN_VOLUME => {
            return Err(refuse(format!(
                "--volume-size {v} is below the smallest volume, {}",
                human_bytes(MIN_VOLUME)
            )))
        }
        (Some(v), Some(l)) if v > l.bytes => {
            return Err(refuse(format!(
                "--volume-size {} is more than the folder takes: {}; use at most {} (or leave it out: Lifeboat picks it)",
                human_bytes(v),
                l.why,
                human_bytes(l.bytes)
            )))
        }
        (Some(v), _) => (v, format!("--volume-size asks for volumes of {}", human_bytes(v))),
        (None, Some(l)) => (
            l.bytes,
            format!(
                "{}, and the image may take up to {}",
                l.why,
                human_bytes(largest)
            ),
        ),
        (None, None) => return Ok((0, None)),
    };
    if largest <= size {
        return Ok((0, None));
    }
    if largest.div_ceil(size) > MAX_VOLUMES as u64 {
        return Err(refuse(format!(
            "the image may take up to {}, more than {MAX_VOLUMES} volumes of {}: use a larger --volume-size",
            human_bytes(largest),
            human_bytes(size)
        )));
    }
    Ok((size, Some(why)))
}

/// Refuses a source with nothing to image (no whole sector), or one smaller than its own
/// partition table says the disk is (a truncated copy): imaging it would seal an image of a
/// disk that never existed.
fn refuse_empty_or_truncated(
    dev: &dyn BlockDev,
    source: &std::path::Path,
    size: u64,
    ss: u32,
    table: Option<&PartitionTable>,
) -> Result<()> {
    if size < u64::from(ss) {
        return Err(Error::Refused {
            path: source.to_path_buf(),
            reason: format!(
                "it holds {size} bytes, less than one {ss}-byte sector: there is nothing to image"
            ),
        });
    }
    let Some(t) = table else { return Ok(()) };
    // the primary GPT header as written (checksummed), even when the reader found it
    // unusable because it reaches past the end
    let gpt_end = match t.kind {
        partition::TableKind::Gpt => crate::blockdev::read_vec(dev, u64::from(ss), ss as usize)
            .ok()
            .and_then(|b| partition::gpt::parse_header(&b, 1).ok())
            .and_then(|h| h.last_usable.max(h.alternate_lba).checked_add(1))
            .and_then(|lba| lba.checked_mul(u64::from(ss))),
        partition::TableKind::Mbr => None,
    };
    let parts_end = t.partitions.iter().map(|p| p.end_bytes()).max();
    let need = gpt_end.into_iter().chain(parts_end).max().unwrap_or(0);
    if need > size {
        return Err(Error::Refused {
            path: source.to_path_buf(),
            reason: format!(
                "it holds {size} bytes, less than its own {} partition table describes ({need} bytes): it looks like a truncated copy of a disk",
                t.kind.as_str()
            ),
        });
    }
    Ok(())
}

/// LBA 0 and, for GPT, the primary header and entry array, as they are on the source.
fn raw_table_bytes(dev: &dyn BlockDev, t: &PartitionTable) -> Result<Vec<u8>> {
    let ss = u64::from(t.sector_size);
    let mut len = ss;
    if let Some(g) = &t.gpt {
        let entries = u64::from(g.entry_count) * u64::from(g.entry_size);
        len = (2 * ss + entries).min(4 * MIB);
    }
    crate::blockdev::read_clamped(dev, 0, len as usize)
}

/// Runs a plan: reads the source, writes the image (renamed into place when sealed), then
/// re-reads and checks it; an image that fails the check, or whose check is cancelled, is
/// deleted.
pub fn run(plan: &ImagePlan, reporter: &Reporter, cancel: &CancelToken) -> Result<ImageSummary> {
    if let Some(opts) = &plan.rescue {
        return rescue::run(plan, opts, reporter, cancel);
    }
    let dev = FileDev::open_with_sector_size(&plan.source, OpenMode::Read, plan.file_sector_size)?;
    // Chunks are read through an O_DIRECT handle where the source allows one: no page-cache
    // copy (a tenth of imaging's CPU on this VM), several reads in flight.
    let direct = open_direct(&plan.source, OpenMode::ReadDirect, plan.file_sector_size);
    let direct = direct.as_ref().map(|d| d as &dyn BlockDev);
    run_on(plan, &dev, direct, reporter, cancel)
}

/// [`run`] of a rescue plan (`plan.rescue` set) reading from an already open source in
/// units of `unit` bytes (its logical sector): tests inject read errors, slow and hung reads
/// here.
pub fn run_rescue_on(
    plan: &ImagePlan,
    dev: Arc<dyn BlockDev>,
    unit: u64,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<ImageSummary> {
    let Some(opts) = &plan.rescue else {
        return Err(Error::Unsupported("the plan is not a rescue".into()));
    };
    rescue::run_on(plan, opts, dev, unit, reporter, cancel)
}

/// [`run`] reading from an already open source, and through `direct` (the same source opened
/// with `O_DIRECT`) where given (tests inject faults here).
pub fn run_on(
    plan: &ImagePlan,
    dev: &dyn BlockDev,
    direct: Option<&dyn BlockDev>,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<ImageSummary> {
    let started = Instant::now();
    begin_run(plan, dev.len(), reporter)?;
    let created_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let image_id = *uuid::Uuid::new_v4().as_bytes();
    let (parent_id, parent_root) = match &plan.chain {
        Some(c) => (c.leaf().header().image_id, c.leaf().footer().root_hash),
        None => ([0; 16], [0; 32]),
    };
    let mut header = Header {
        minor: format::VERSION_MINOR,
        flags: 0,
        image_id,
        parent_id,
        parent_root,
        created_unix,
        chunk_size: plan.chunk_size,
        zstd_level: plan.level,
        source_size: plan.size_bytes,
        sector_size: plan.sector_size,
        block_size: plan.block_size,
        volume_size: plan.volume_size,
        keys: plan.keys.clone(),
    };
    let hasher = plan.content_hash()?;
    // a deduplicating store: what it holds already is left out of the frames, and found there
    // (the writer's lock keeps a collection from deleting what it counts on, until its
    // image is written and checked)
    let _store_lock = if plan.dedup {
        let dir = crate::image::volumes::parent_dir(&plan.output);
        let lock = crate::image::packs::lock_writer(&dir)?;
        if let Some(mine) = &plan.keys {
            // the first image of an encrypted store makes its key (a no-op for later ones)
            let theirs = crate::image::packs::StoreKeys::create(&dir, mine)?;
            if theirs.key_id != mine.key_id {
                return Err(Error::Refused {
                    path: crate::image::packs::store_key_path(&dir),
                    reason: "another writer made the store's key while this image was \
                             planned; nothing was written: run the command again to use it"
                        .into(),
                });
            }
            // `key add|remove DIR` changed the store's slots since the plan read them (it
            // cannot while this lock is held): the image takes the store's slots as they
            // are now, so a passphrase removed from the store does not open it
            header.keys = Some(theirs);
        }
        Some(lock)
    } else {
        None
    };
    let store = if plan.dedup {
        let dir = crate::image::volumes::parent_dir(&plan.output);
        let (places, skipped) = crate::image::packs::load_known(&dir)?;
        for why in skipped {
            reporter.warn(format!("an index of the store is skipped: {why}"));
        }
        Some(std::sync::Arc::new(places))
    } else {
        None
    };
    // one copy of the store's index, shared by the encoders and the writer
    let known: Option<&dyn crate::image::encode::KnownBlocks> = match &store {
        Some(places) => Some(&**places),
        None => plan
            .chain
            .as_ref()
            .map(|c| c.stored_hashes() as &dyn crate::image::encode::KnownBlocks),
    };
    let block = u64::from(plan.block_size);
    let mut parent_bytes = 0u64;
    let mut writer = match store.as_ref() {
        Some(places) => {
            ImageWriter::create_packed(&plan.output, header, std::sync::Arc::clone(places))?
        }
        None => ImageWriter::create(&plan.output, header)?,
    };
    if let Some(p) = &plan.pending_slots {
        match p.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(h) => writer.slots_later(h),
            None => {
                return Err(Error::Unsupported(
                    "running one plan of a new encrypted image twice (plan it again)".into(),
                ))
            }
        }
    }
    let mut stored_per_region = vec![0u64; plan.regions.len()];
    let mut chunks_per_region = vec![0u64; plan.regions.len()];
    reporter.phase(Phase::Image, Some(plan.copy_bytes));
    let mut next = 0usize;
    let mut done = 0u64;
    let level = plan.level;
    // The aligned cover of a chunk (FAT's clusters can start at any sector) is read direct,
    // unless it runs past the end of the source.
    let cover = |off: u64, len: u32| {
        let d = direct?;
        let unit = dio_unit(d);
        let (start, end) = (
            off / unit * unit,
            (off + u64::from(len)).next_multiple_of(unit),
        );
        (end <= d.len()).then_some((d, start, end))
    };
    // The chunks of one chunk window and region are one item: read into one buffer (the span
    // from the first to the last, with one read for each run of them that no gap of more
    // than READ_GAP_MAX parts), and their records compressed into one frame. Scattered small
    // files then compress together, as a stream would (an XFS filled by cp: 4% smaller).
    let groups = window_groups(&plan.chunk_list, u64::from(plan.chunk_size));
    pipeline::run(
        // two workers per compression thread: one reads while the other compresses
        Shape::for_threads(plan.threads.max(1) * 2),
        cancel,
        // The producer only hands out groups; the workers read them (so several reads are
        // in flight), then compress and hash them.
        |buf: Vec<u8>| {
            let Some(g) = groups.get(next).cloned() else {
                return Ok(None);
            };
            next += 1;
            // Without O_DIRECT, keep the device busy: ask for the groups ahead.
            let ahead = if next == 1 {
                1..=READ_AHEAD
            } else {
                next - 1 + READ_AHEAD..=next - 1 + READ_AHEAD
            };
            for a in ahead.filter_map(|i| groups.get(i)) {
                let chunks = &plan.chunk_list[a.clone()];
                let (a_off, a_end) = span(chunks);
                if cover(a_off, (a_end - a_off) as u32).is_none() {
                    for (r_off, r_end) in reads(chunks) {
                        dev.will_need(r_off, r_end - r_off);
                    }
                }
            }
            Ok(Some((g, buf)))
        },
        |(g, mut buf): (std::ops::Range<usize>, Vec<u8>)| {
            let chunks = &plan.chunk_list[g];
            let region = chunks[0].2;
            let (off, end) = span(chunks);
            let len = (end - off) as u32;
            // buf[at..] holds the source's bytes from `start` on: the span's aligned cover
            // when it is read direct, else the span
            let (is_direct, at, start) = match cover(off, len) {
                Some((_, start, end)) => {
                    let slice = aligned(&mut buf, (end - start) as usize);
                    let at = slice.as_ptr() as usize - buf.as_ptr() as usize;
                    (true, at, start)
                }
                None => {
                    if buf.len() < len as usize {
                        buf.resize(len as usize, 0);
                    }
                    (false, 0, off)
                }
            };
            for (r_off, r_end) in reads(chunks) {
                let r_len = (r_end - r_off) as u32;
                // a direct read covers its range with whole units; its cover lies inside the
                // span's, which ends inside the source
                let (from, r_start, r_stop) = match cover(r_off, r_len).filter(|_| is_direct) {
                    Some(c) => c,
                    None => (dev, r_off, r_end),
                };
                let into = at + (r_start - start) as usize;
                let target = &mut buf[into..into + (r_stop - r_start) as usize];
                if let Err(e) = from.read_at(target, r_start) {
                    // narrowed down to the first bad sector through the same handle when the
                    // read is aligned (a buffered one would name the page's start)
                    let by = if r_start == r_off && r_stop == r_end {
                        from
                    } else {
                        dev
                    };
                    return Err(crate::blockdev::narrow_read_error(by, r_off, r_len, e));
                }
            }
            let base = at + (off - start) as usize;
            let pieces = chunks.iter().map(|&(c_off, c_len, _)| {
                let from = base + (c_off - off) as usize;
                (c_off, &buf[from..from + c_len as usize])
            });
            let c = encode_pieces(level, pieces, block, known, &hasher)?;
            Ok((c, region, buf))
        },
        |(c, region, buf)| {
            done += c.raw_len();
            parent_bytes += c
                .records
                .iter()
                .filter(|r| r.codec == Codec::Parent)
                .map(|r| u64::from(r.raw_len))
                .sum::<u64>();
            stored_per_region[region] += c.data.len() as u64;
            chunks_per_region[region] += 1;
            writer.push(c)?;
            reporter.progress(Phase::Image, done);
            Ok(buf)
        },
    )?;
    reporter.progress_final(Phase::Image, done);
    let meta = metadata(plan, created_unix, &stored_per_region, &chunks_per_region);
    let summary = writer.finish(&meta)?;

    let check_started = Instant::now();
    check_written(plan, &summary, reporter, cancel)?;

    Ok(ImageSummary {
        path: summary.path,
        image_id: crate::image::hex(&image_id),
        root_hash: summary.root_hash,
        chunk_count: summary.chunk_count,
        read_bytes: done,
        parent_bytes,
        file_bytes: summary.file_bytes,
        files: summary.files,
        kind: plan.kind,
        seconds: started.elapsed().as_secs_f64(),
        write_seconds: (check_started - started).as_secs_f64(),
        verify_seconds: check_started.elapsed().as_secs_f64(),
        missing_bytes: 0,
        missing: Vec::new(),
        rescue: None,
        damaged: Vec::new(),
        encrypted: plan.keys.is_some(),
        recovery_key: plan.recovery_key().map(str::to_string),
    })
}

/// The chunk list cut into groups (index ranges): consecutive chunks of one region inside
/// one window of `chunk_size` bytes. A group is one frame, read with one read per run of
/// chunks that no large gap parts ([`reads`]).
fn window_groups(list: &[(u64, u32, usize)], chunk_size: u64) -> Vec<std::ops::Range<usize>> {
    let cs = chunk_size.max(1);
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, &(off, _, region)) in list.iter().enumerate() {
        match out.last_mut() {
            Some(g)
                if {
                    let (f_off, _, f_region) = list[g.start];
                    f_region == region && f_off / cs == off / cs
                } =>
            {
                g.end = i + 1
            }
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// Unused bytes between two chunks of one group up to which both are read with one read
/// (through the gap); a larger gap is skipped, and the chunk after it read with a new read.
/// Reading a gap costs its transfer time, skipping it one more request: some tens of µs on an
/// SSD, which transfers 64 to 256 KiB in that time, and a seek of milliseconds on a spinning
/// disk, about 1 MiB of transfer. 256 KiB reads through the gaps that cost no more than a
/// request would on either (an estimate from those figures, not a measurement). Only the
/// reads change: the group stays one frame, and the image is the same.
const READ_GAP_MAX: u64 = 256 << 10;

/// The reads of a group of chunks (disjoint, in disk order), as (start, end) in bytes: runs of
/// chunks that no gap of more than [`READ_GAP_MAX`] bytes parts, each from its first chunk's
/// start to its last one's end.
fn reads(chunks: &[(u64, u32, usize)]) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut rest = chunks;
    std::iter::from_fn(move || {
        let (&(first, first_len, _), tail) = rest.split_first()?;
        let mut end = first + u64::from(first_len);
        let mut joined = 0;
        for &(off, len, _) in tail {
            if off.saturating_sub(end) > READ_GAP_MAX {
                break;
            }
            end = off + u64::from(len);
            joined += 1;
        }
        rest = &tail[joined..];
        Some((first, end))
    })
}

/// The bytes a group of chunks spans: the first one's start to the last one's end.
fn span(chunks: &[(u64, u32, usize)]) -> (u64, u64) {
    match (chunks.first(), chunks.last()) {
        (Some(f), Some(l)) => (f.0, l.0 + u64::from(l.1)),
        _ => (0, 0),
    }
}

/// Nothing is reported as done before the file on disk has been read back and checked:
/// every frame the image `written` stores is re-read and re-hashed, and for a child the chain
/// is reopened, so every link and every record held by an ancestor is checked to resolve.
/// (The ancestors' own data was verified when they were made; `lifeboat verify` of the new
/// image re-reads it all.) An image that fails its check, or whose check is cancelled, is
/// deleted, so it is not left to look like a good one.
fn check_written(
    plan: &ImagePlan,
    written: &crate::image::WriteSummary,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<()> {
    let scope = if plan.chain.is_some() {
        super::verify::Scope::Own
    } else {
        super::verify::Scope::All
    };
    let checked = Chain::open(&written.path, &plan_search(plan)).and_then(|c| {
        super::verify::verify_chain(&c, scope, plan.threads.max(1) * 2, reporter, cancel)
    });
    if let Err(e) = checked {
        crate::image::volumes::remove_files(&written.files);
        return Err(e);
    }
    Ok(())
}

/// The folders a plan's parent chain is looked for in.
fn plan_search(plan: &ImagePlan) -> Vec<PathBuf> {
    plan.parent
        .as_ref()
        .map(|p| p.search.clone())
        .unwrap_or_default()
}

/// Before a run: the plan's warnings are given, and a source whose size changed since the
/// plan is refused.
fn begin_run(plan: &ImagePlan, dev_len: u64, reporter: &Reporter) -> Result<()> {
    for w in &plan.warnings {
        reporter.warn(w.clone());
    }
    if dev_len != plan.size_bytes {
        return Err(Error::Refused {
            path: plan.source.clone(),
            reason: format!(
                "its size changed from {} to {dev_len} bytes since the plan",
                plan.size_bytes
            ),
        });
    }
    Ok(())
}

/// The metadata section: what `info` shows and what `restore` plans with.
fn metadata(plan: &ImagePlan, created_unix: u64, stored: &[u64], chunks: &[u64]) -> ImageMeta {
    let regions: Vec<Region> = plan
        .regions
        .iter()
        .enumerate()
        .map(|(i, r)| Region {
            stored_bytes: Some(stored[i]),
            chunks: Some(chunks[i]),
            ..r.clone()
        })
        .collect();
    ImageMeta {
        tool: "lifeboat".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        created_unix,
        kind: Some(plan.kind),
        chain_name: plan.chain_name.clone(),
        parent: plan.parent.as_ref().map(|p| ParentRef {
            file: p.path.file_name().map(|n| n.to_string_lossy().into_owned()),
            path: Some(std::fs::canonicalize(&p.path).unwrap_or_else(|_| p.path.clone())),
            image_id: p.image_id.clone(),
            root_hash: p.root_hash.clone(),
            kind: p.parent_kind,
        }),
        source: plan.report.as_ref().and_then(SourceDisk::of_report),
        source_path: plan.source.clone(),
        size_bytes: plan.size_bytes,
        sector_size: plan.sector_size,
        table: plan.table_kind,
        raw_table_hex: crate::image::hex(&plan.raw_table),
        selected_partitions: regions
            .iter()
            .filter(|r| r.is_selected_partition())
            .filter_map(|r| r.partition)
            .collect(),
        regions,
        warnings: plan.warnings.clone(),
        compression: Compression {
            codec: crate::image::meta::Codec::Zstd,
            level: plan.level,
            chunk_size: plan.chunk_size,
            block_size: plan.block_size,
        },
        merged_unix: None,
        merged_from: Vec::new(),
    }
}

/// A plan for the TUI's snapshot tests: a 500 GB disk with an ESP and an ext4 root.
#[cfg(test)]
pub(crate) fn example_plan() -> ImagePlan {
    let part = |n: u32, start: u64, size: u64, fs: &str, used: u64| Region {
        what: crate::image::RegionKind::Partition,
        partition: Some(n),
        start_bytes: start,
        size_bytes: size,
        fs: Some(fs.into()),
        label: None,
        uuid: None,
        method: crate::image::CopyMethod::UsedBlocks,
        reason: None,
        used_bytes: Some(used),
        copy_bytes: used,
        stored_bytes: None,
        chunks: None,
    };
    ImagePlan {
        source: PathBuf::from("/dev/sda"),
        output: PathBuf::from("/store/sda-Samsung-SSD-860-20261122.lbi"),
        size_bytes: 500_107_862_016,
        sector_size: 512,
        table: Some("gpt"),
        regions: vec![
            part(1, 1 << 20, 536_870_912, "vfat", 31_457_280),
            part(2, 537_919_488, 400_000_000_000, "ext4", 61_203_283_968),
        ],
        copy_bytes: 61_235_789_824,
        chunks: 14_600,
        warnings: vec![],
        level: 3,
        threads: 2,
        chunk_size: DEFAULT_CHUNK,
        block_size: 64 << 10,
        kind: ImageKind::Full,
        parent: None,
        chain_name: "sda-Samsung-SSD-860-20261122".into(),
        volume_size: 0,
        split_reason: None,
        rescue: None,
        resume: None,
        encryption: None,
        dedup: false,
        keys: None,
        pending_slots: None,
        recovery_key: None,
        outside_domain: Vec::new(),
        chain: None,
        chunk_list: Vec::new(),
        report: None,
        raw_table: Vec::new(),
        table_kind: Some(TableKind::Gpt),
        file_sector_size: 512,
    }
}

#[cfg(test)]
mod window_tests {
    use super::*;

    #[test]
    fn groups_are_the_chunks_of_one_window_and_one_region() {
        let mib = 1u64 << 20;
        let list = [
            (0, 4096, 0),
            (8192, 4096, 0),
            (mib - 4096, 4096, 1), // another region, same window
            (mib, 4096, 1),        // another window
            (mib + 8192, 100, 1),
            (3 * mib, 5, 1),
        ];
        assert_eq!(window_groups(&list, mib), vec![0..2, 2..3, 3..5, 5..6]);
        assert_eq!(span(&list[3..5]), (mib, mib + 8292));
        assert!(window_groups(&[], mib).is_empty());
    }

    #[test]
    fn a_group_is_read_through_small_gaps_and_past_large_ones() {
        let kib = 1u64 << 10;
        let gap = READ_GAP_MAX;
        let list = [
            (0, 4096, 0),
            (4096, 4096, 0),                  // no gap
            (8 * kib + gap, 4096, 0),         // a gap of READ_GAP_MAX: read through
            (12 * kib + 2 * gap + 1, 100, 0), // one byte more: a new read
            (3 << 20, 5, 0),
        ];
        let got: Vec<(u64, u64)> = reads(&list).collect();
        assert_eq!(
            got,
            vec![
                (0, 12 * kib + gap),
                (12 * kib + 2 * gap + 1, 12 * kib + 2 * gap + 101),
                (3 << 20, (3 << 20) + 5),
            ]
        );
        assert_eq!(reads(&list[..1]).collect::<Vec<_>>(), vec![(0, 4096)]);
        assert_eq!(reads(&[]).count(), 0);
    }

    /// A window's chunks, parted by a gap larger than READ_GAP_MAX that cannot be read, are
    /// imaged through the page cache and through an aligned (O_DIRECT-like) handle: the gap
    /// is never read, and the window is still one frame, the same on both paths.
    #[test]
    fn a_large_gap_in_a_window_is_not_read_and_the_window_stays_one_frame() {
        use crate::blockdev::testing::{AlignCheckDev, FaultyDev};
        use crate::blockdev::MemDev;
        let mib = 1u64 << 20;
        let size = 8 * mib;
        let chunk_list: Vec<(u64, u32, usize)> = vec![
            (mib + 512, 3000, 0), // not aligned
            (mib + 8192, 4096, 0),
            (mib + 12288 + READ_GAP_MAX, 8192, 0), // read through the gap before it
            (2 * mib + 100, 5000, 0),              // after a gap of about 700 KiB
        ];
        let mut data = vec![0u8; size as usize];
        let mut x = 0x9E37_79B9u32;
        for b in &mut data {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x % 7) as u8; // compressible, and never an all-zero block
        }
        let bad = 2 * mib - 64 * 1024; // inside the large gap, outside every aligned cover
        let dev = FaultyDev::new(MemDev::from_vec(data.clone(), 512)).fail_reads(bad..bad + 512);
        let dir = tempfile::tempdir().unwrap();
        let mut frames = Vec::new();
        for direct in [false, true] {
            let mut plan = example_plan();
            plan.output = dir.path().join(format!("w{direct}.lbi"));
            plan.size_bytes = size;
            plan.regions.truncate(1);
            plan.copy_bytes = chunk_list.iter().map(|c| u64::from(c.1)).sum();
            plan.chunks = chunk_list.len();
            plan.chunk_list = chunk_list.clone();
            let aligned = AlignCheckDev::new(&dev, 4096);
            let d2 = direct.then_some(&aligned as &dyn BlockDev);
            let summary =
                run_on(&plan, &dev, d2, &Reporter::silent(), &CancelToken::new()).unwrap();
            let chain = Chain::open(&summary.path, &[]).unwrap();
            let records = chain.leaf().records().to_vec();
            assert!(
                records
                    .iter()
                    .all(|r| r.file_offset == records[0].file_offset),
                "direct {direct}: one frame: {records:?}"
            );
            let mut got = Vec::new();
            for &(off, len, _) in &chunk_list {
                for (i, r) in records.iter().enumerate() {
                    if r.disk_offset >= off && r.disk_offset < off + u64::from(len) {
                        let mut bytes = Vec::new();
                        chain.read_record(i, &mut bytes).unwrap();
                        got.extend_from_slice(&bytes);
                    }
                }
                let want = &data[off as usize..(off + u64::from(len)) as usize];
                assert_eq!(&got[got.len() - want.len()..], want, "direct {direct}");
            }
            frames.push(
                records
                    .iter()
                    .map(|r| (r.disk_offset, r.raw_len, r.codec, r.frame_offset, r.hash))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(frames[0], frames[1]);
    }
}
