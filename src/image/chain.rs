//! [`Chain`]: an image opened together with every ancestor it needs, each link checked.
//!
//! Opening a chain:
//! 1. opens the image (the *leaf*) with [`ImageReader::open`], which checks its structure;
//! 2. while the current member is a child, finds its parent: first the file name its metadata
//!    records, in the leaf's directory, the folder the parent was in when the child was made,
//!    and each search directory, then every other file there whose header carries the
//!    parent's image ID;
//! 3. checks each link: the parent's image ID and root hash equal what the child recorded,
//!    and no image appears twice (a cycle);
//! 4. resolves every leaf record held by an ancestor (codec Parent) to the nearest ancestor
//!    record that stores the same blake3 hash, and refuses the chain if one is missing.
//!
//! After that, reading any leaf record is a frame read in one member plus a hash check, and
//! only the leaf's index stays in memory.

use super::format::{Codec, Header, Record, HEADER_LEN};
use super::meta::ImageKind;
use super::reader::ImageReader;
use super::writer::hex;
use crate::error::{with_causes, Error, Result};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The longest chain accepted (a guard against hostile or runaway chains).
pub const MAX_CHAIN: usize = 1000;

/// One member of a chain, as `info` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ChainLink {
    /// The image file.
    pub path: PathBuf,
    /// Image ID, hex.
    pub image_id: String,
    /// Parent image ID, hex (`None` for the full image at the chain's root).
    pub parent_id: Option<String>,
    /// Full, incremental or differential.
    pub kind: ImageKind,
    /// When the image was taken (Unix seconds).
    pub created_unix: u64,
    /// Size of the image file in bytes.
    pub file_bytes: u64,
    /// Disk bytes the image describes (its whole disk state).
    pub raw_bytes: u64,
    /// Root hash, hex.
    pub root_hash: String,
}

/// Where the bytes of one leaf record are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Chain member holding them (0 = the leaf).
    pub member: usize,
    /// The record's number in that member's index (for error messages).
    pub index: u64,
    /// That member's record: frame location, codec, hash.
    pub record: Record,
}

/// A run of leaf records whose bytes come from one frame: read once, decoded once.
#[derive(Debug, Clone)]
pub struct FrameRead {
    /// Chain member holding the frame.
    pub member: usize,
    /// Leaf record numbers, in the order given, with where each one's bytes are.
    pub parts: Vec<(usize, Located)>,
}

/// An image and its ancestors. Member 0 is the leaf; the last member is a full image.
#[derive(Debug)]
pub struct Chain {
    members: Vec<ImageReader>,
    links: Vec<ChainLink>,
    /// Leaf records held by ancestors, resolved.
    resolved: HashMap<usize, Located>,
    /// Every hash some member stores (collected on request, for a child being written).
    stored_hashes: HashSet<[u8; 32]>,
}

fn broken(image: &Path, reason: String) -> Error {
    Error::Chain {
        image: image.to_path_buf(),
        reason,
        source: None,
    }
}

/// The header of `path` if it is an image file (anything else is skipped while searching).
fn peek_header(path: &Path) -> Option<Header> {
    let mut b = vec![0u8; HEADER_LEN];
    if crate::store::is_remote(path) {
        // a parent next to a child on a web server or in an S3 store
        let f = if crate::store::s3::is_s3(path) {
            crate::store::s3::open(path).ok()?
        } else {
            crate::store::http::HttpFile::open(&path.to_string_lossy()).ok()?
        };
        f.read_exact_at(&mut b, 0).ok()?;
        return Header::decode(&b).ok();
    }
    let f = std::fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    f.read_exact_at(&mut b, 0).ok()?;
    Header::decode(&b).ok()
}

/// The kind recorded in an image's metadata (full when a parentless image says nothing, else
/// incremental).
pub fn kind_of(r: &ImageReader) -> ImageKind {
    kind_from(r.header(), r.meta())
}

/// [`kind_of`] from an image's header and metadata.
pub fn kind_from(h: &Header, m: &super::ImageMeta) -> ImageKind {
    match m.kind {
        Some(k) => k,
        None if h.is_full() => ImageKind::Full,
        None => ImageKind::Incremental,
    }
}

fn link_of(r: &ImageReader) -> ChainLink {
    let h = r.header();
    ChainLink {
        path: r.path().to_path_buf(),
        image_id: hex(&h.image_id),
        parent_id: (!h.is_full()).then(|| hex(&h.parent_id)),
        kind: kind_of(r),
        created_unix: h.created_unix,
        file_bytes: r.file_len(),
        raw_bytes: r.footer().raw_bytes,
        root_hash: hex(&r.footer().root_hash),
    }
}

/// Finds and opens the parent of `child` in `dirs`, checking its ID and root hash.
fn find_parent(child: &ImageReader, dirs: &[PathBuf]) -> Result<ImageReader> {
    // The folder the parent was in when the child was made comes after the child's own.
    let mut dirs = dirs.to_vec();
    if let Some(d) = child
        .meta()
        .parent
        .as_ref()
        .and_then(|p| p.path.as_deref())
        .and_then(Path::parent)
        .filter(|d| d.is_dir())
    {
        if !dirs.iter().any(|x| x == d) {
            dirs.insert(1.min(dirs.len()), d.to_path_buf());
        }
    }
    let dirs = &dirs[..];
    let want_id = child.header().parent_id;
    let want_root = child.header().parent_root;
    let hint = child
        .meta()
        .parent
        .as_ref()
        .and_then(|p| p.file.as_deref())
        .and_then(|n| Path::new(n).file_name().map(PathBuf::from));
    let mut tried: Vec<PathBuf> = Vec::new();
    if let Some(h) = &hint {
        tried.extend(dirs.iter().map(|d| d.join(h)));
    }
    for d in dirs {
        let mut names: Vec<PathBuf> = if crate::store::s3::is_s3(d) {
            crate::store::s3::list_folder(d).unwrap_or_default()
        } else {
            std::fs::read_dir(d)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default()
        };
        names.sort();
        tried.extend(names);
    }
    let mut problems: Vec<String> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for p in tried {
        let canon = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        if canon == std::fs::canonicalize(child.path()).unwrap_or_default() || !seen.insert(canon) {
            continue;
        }
        let Some(h) = peek_header(&p) else {
            if hint
                .as_ref()
                .is_some_and(|n| p.file_name() == Some(n.as_os_str()))
                && p.exists()
            {
                problems.push(format!("{} is not a readable image", p.display()));
            }
            continue;
        };
        if h.image_id != want_id {
            if hint
                .as_ref()
                .is_some_and(|n| p.file_name() == Some(n.as_os_str()))
            {
                problems.push(format!(
                    "{} is image {}, not the parent {} (the file was replaced)",
                    p.display(),
                    hex(&h.image_id),
                    hex(&want_id)
                ));
            }
            continue;
        }
        let key_id = |h: &super::Header| h.keys.as_ref().map(|k| k.key_id);
        match ImageReader::open(&p) {
            // a parent that needs a passphrase (or another one) is not damaged: say so
            Err(e @ (Error::KeyNeeded { .. } | Error::WrongKey { .. })) => return Err(e),
            Ok(r) if key_id(r.header()) != key_id(child.header()) => problems.push(format!(
                "{} is the parent's ID but {}",
                p.display(),
                match (key_id(r.header()), key_id(child.header())) {
                    (None, _) => "it is not encrypted, and the child is",
                    (_, None) => "it is encrypted, and the child is not",
                    _ => "it is encrypted with another key than the child",
                }
            )),
            Err(e) => problems.push(format!(
                "{} is the parent but is damaged: {}",
                p.display(),
                with_causes(&e)
            )),
            Ok(r) if r.footer().root_hash != want_root => problems.push(format!(
                "{} is the parent's ID but its root hash is {}, not the {} recorded when the child was made (it was modified or rewritten)",
                p.display(),
                hex(&r.footer().root_hash),
                hex(&want_root)
            )),
            Ok(r) => return Ok(r),
        }
    }
    let place = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let named = hint
        .map(|h| format!(" (recorded as {})", h.display()))
        .unwrap_or_default();
    let reason = if problems.is_empty() {
        format!(
            "its parent image {}{named} was not found in {place}; pass --search DIR if it lives elsewhere",
            hex(&want_id)
        )
    } else {
        format!(
            "no usable parent image {}{named} in {place}: {}",
            hex(&want_id),
            problems.join("; ")
        )
    };
    Err(broken(child.path(), reason))
}

impl Chain {
    /// Opens `path` and its ancestors, looking next to it and then in `search`.
    pub fn open(path: &Path, search: &[PathBuf]) -> Result<Chain> {
        Self::open_inner(path, search, false)
    }

    /// Like [`Chain::open`], and also collects every hash the chain stores, so that a new
    /// child can refer to them ([`Chain::stored_hashes`]).
    pub fn open_for_child(path: &Path, search: &[PathBuf]) -> Result<Chain> {
        Self::open_inner(path, search, true)
    }

    fn open_inner(path: &Path, search: &[PathBuf], collect: bool) -> Result<Chain> {
        let leaf = ImageReader::open(path)?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        let own = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dirs.push(own.to_path_buf());
        for d in search {
            if !dirs.contains(d) {
                dirs.push(d.clone());
            }
        }
        let mut members = vec![leaf];
        let mut ids: HashSet<[u8; 16]> = HashSet::new();
        ids.insert(members[0].header().image_id);
        while let Some(cur) = members.last().filter(|c| !c.header().is_full()) {
            if members.len() >= MAX_CHAIN {
                return Err(broken(
                    path,
                    format!("the chain is longer than {MAX_CHAIN} images"),
                ));
            }
            if ids.contains(&cur.header().parent_id) {
                return Err(broken(
                    cur.path(),
                    format!(
                        "its parent {} is already in the chain: the chain is a cycle",
                        hex(&cur.header().parent_id)
                    ),
                ));
            }
            let parent = find_parent(cur, &dirs)?;
            if parent.header().sector_size != cur.header().sector_size {
                return Err(broken(
                    cur.path(),
                    format!(
                        "its parent {} has {}-byte sectors, the child {}",
                        parent.path().display(),
                        parent.header().sector_size,
                        cur.header().sector_size
                    ),
                ));
            }
            ids.insert(parent.header().image_id);
            members.push(parent);
        }

        // Resolve the leaf's parent-held records, nearest ancestor first.
        let mut needed: HashMap<[u8; 32], Vec<usize>> = HashMap::new();
        for (i, r) in members[0].records().iter().enumerate() {
            if r.codec == Codec::Parent {
                needed.entry(r.hash).or_default().push(i);
            }
        }
        let mut resolved = HashMap::new();
        let mut stored_hashes = HashSet::new();
        for (m, member) in members.iter().enumerate() {
            for (j, r) in member.records().iter().enumerate() {
                if !r.codec.stored_here() {
                    continue;
                }
                if collect {
                    stored_hashes.insert(r.hash);
                }
                if m == 0 {
                    continue;
                }
                if let Some(leaf_records) = needed.remove(&r.hash) {
                    for i in leaf_records {
                        resolved.insert(
                            i,
                            Located {
                                member: m,
                                index: j as u64,
                                record: *r,
                            },
                        );
                    }
                }
            }
        }
        if let Some(i) = needed.values().flatten().min() {
            let r = members[0].records()[*i];
            return Err(broken(
                path,
                format!(
                    "chunk {i} (disk bytes {}..{}, blake3 {}) is held by none of its {} ancestors",
                    r.disk_offset,
                    r.disk_offset + u64::from(r.raw_len),
                    hex(&r.hash),
                    members.len() - 1
                ),
            ));
        }
        for m in members.iter_mut().skip(1) {
            m.forget_records();
        }
        let links = members.iter().map(link_of).collect();
        Ok(Chain {
            members,
            links,
            resolved,
            stored_hashes,
        })
    }

    /// The image that was opened.
    pub fn leaf(&self) -> &ImageReader {
        &self.members[0]
    }

    /// The members, leaf first, full image last.
    pub fn links(&self) -> &[ChainLink] {
        &self.links
    }

    /// Every hash stored somewhere in the chain (empty unless opened with
    /// [`Chain::open_for_child`]).
    pub fn stored_hashes(&self) -> &HashSet<[u8; 32]> {
        &self.stored_hashes
    }

    /// Where leaf record `i`'s bytes are.
    pub fn locate(&self, i: usize) -> Result<Located> {
        let leaf = self.leaf();
        let r = *leaf
            .records()
            .get(i)
            .ok_or_else(|| broken(leaf.path(), format!("it has no chunk {i}")))?;
        if r.codec != Codec::Parent {
            return Ok(Located {
                member: 0,
                index: i as u64,
                record: r,
            });
        }
        self.resolved
            .get(&i)
            .copied()
            .ok_or_else(|| broken(leaf.path(), format!("chunk {i} was not resolved")))
    }

    /// Groups leaf records `items` into frame reads: all records whose bytes lie in the
    /// same frame of the same member share one read and one decode, in the order their first
    /// record appears (a frame that a child's changes cut into pieces is still decoded once).
    /// Consecutive zero records share one group. Parts keep the order of `items` within a
    /// group; callers place bytes by the leaf record number, never by position.
    pub fn frame_reads(&self, items: impl IntoIterator<Item = usize>) -> Result<Vec<FrameRead>> {
        let mut out: Vec<FrameRead> = Vec::new();
        let mut by_frame: HashMap<(usize, u64), usize> = HashMap::new();
        for i in items {
            let l = self.locate(i)?;
            if l.record.codec.reads_as_zero() {
                if let Some(last) = out.last_mut() {
                    if last
                        .parts
                        .first()
                        .is_some_and(|p| p.1.record.codec.reads_as_zero())
                    {
                        last.parts.push((i, l));
                        continue;
                    }
                }
                out.push(FrameRead {
                    member: l.member,
                    parts: vec![(i, l)],
                });
                continue;
            }
            let key = (l.member, l.record.file_offset);
            match by_frame.get(&key).and_then(|&g| out.get_mut(g)) {
                Some(g) => g.parts.push((i, l)),
                None => {
                    by_frame.insert(key, out.len());
                    out.push(FrameRead {
                        member: l.member,
                        parts: vec![(i, l)],
                    });
                }
            }
        }
        Ok(out)
    }

    /// Reads the stored frame of `fr` (nothing for zero records). Runs on the producer.
    pub fn read(&self, fr: &FrameRead, stored: &mut Vec<u8>) -> Result<()> {
        let Some((_, l)) = fr.parts.first() else {
            stored.clear();
            return Ok(());
        };
        self.member(fr.member)?.read_frame(&l.record, stored)
    }

    /// Whether frames may be read by several threads at once, out of order: not when any
    /// image of the chain is on a FUSE store or a web server ([`ImageReader::in_order`]).
    pub fn parallel_reads(&self) -> bool {
        !self.members.iter().any(|m| m.in_order())
    }

    /// How the chain's records hash their content: its members share one key, so the
    /// leaf's ([`ImageReader::hasher`]).
    pub fn hasher(&self) -> &super::crypt::ContentHash {
        self.leaf().hasher()
    }

    /// The largest chunk size of the chain's images: the most bytes one frame decodes to.
    pub fn max_chunk_size(&self) -> u64 {
        let sizes = self
            .members
            .iter()
            .map(|m| u64::from(m.header().chunk_size));
        sizes.max().unwrap_or(0)
    }

    /// [`Chain::read`] into `stored[range]`, bypassing the page cache where the image's
    /// filesystem allows; returns the range. Pipeline workers call it, so that several reads
    /// are in flight.
    pub fn read_uncached(
        &self,
        fr: &FrameRead,
        stored: &mut Vec<u8>,
    ) -> Result<std::ops::Range<usize>> {
        let Some((_, l)) = fr.parts.first() else {
            return Ok(0..0);
        };
        self.member(fr.member)?
            .read_frame_uncached(&l.record, stored)
    }

    /// The producer's half of a pipeline's frame read: on a chain that must be read in order
    /// ([`Chain::parallel_reads`] is false: a FUSE store), reads `fr`'s stored bytes into
    /// `stored` now and returns where they are; elsewhere returns `None`, and the worker
    /// reads them ([`Chain::read_in_worker`]), so that several reads are in flight.
    pub fn read_in_order(
        &self,
        fr: &FrameRead,
        stored: &mut Vec<u8>,
    ) -> Result<Option<std::ops::Range<usize>>> {
        if self.parallel_reads() {
            return Ok(None);
        }
        self.read_uncached(fr, stored).map(Some)
    }

    /// The worker's half: the range [`Chain::read_in_order`] returned, or `fr`'s stored bytes
    /// read now into `stored`, bypassing the page cache where the store allows.
    pub fn read_in_worker(
        &self,
        fr: &FrameRead,
        read: Option<std::ops::Range<usize>>,
        stored: &mut Vec<u8>,
    ) -> Result<std::ops::Range<usize>> {
        match read {
            Some(r) => Ok(r),
            None => self.read_uncached(fr, stored),
        }
    }

    /// Decodes `fr`'s frame into `frame` (for zero records: zeros as long as the longest).
    pub fn decode(&self, fr: &FrameRead, stored: &[u8], frame: &mut Vec<u8>) -> Result<()> {
        self.decode_at(fr, stored, frame, 0)
    }

    /// [`Chain::decode`] into `frame[base..]`, leaving the first `base` bytes as they are.
    fn decode_at(
        &self,
        fr: &FrameRead,
        stored: &[u8],
        frame: &mut Vec<u8>,
        base: usize,
    ) -> Result<()> {
        let Some((_, l)) = fr.parts.first() else {
            frame.resize(base, 0);
            return Ok(());
        };
        let m = self.member(fr.member)?;
        if l.record.codec.reads_as_zero() {
            let longest = fr.parts.iter().map(|(_, l)| l.record.raw_len).max();
            frame.resize(base, 0);
            frame.resize(base + longest.unwrap_or(0) as usize, 0);
            return Ok(());
        }
        m.decode_frame_at(l.index, &l.record, stored, frame, base)
    }

    /// [`Chain::decode`] with the frame starting at an address aligned to `align` bytes, so
    /// that its pieces can be written with `O_DIRECT` without a copy: the decoded frame is
    /// `frame[pad..]`, and `pad` is returned.
    pub fn decode_aligned(
        &self,
        fr: &FrameRead,
        stored: &[u8],
        frame: &mut Vec<u8>,
        align: usize,
    ) -> Result<usize> {
        loop {
            let at = frame.as_ptr();
            let pad = at.align_offset(align).min(align - 1);
            self.decode_at(fr, stored, frame, pad)?;
            if frame.as_ptr() == at {
                return Ok(pad);
            }
            // The buffer grew and moved: decode again into the room it has now.
            frame.reserve(align);
        }
    }

    /// Part `k` of `fr`: its bytes inside the decoded `frame`, checked against its hash.
    pub fn part<'f>(&self, fr: &FrameRead, k: usize, frame: &'f [u8]) -> Result<&'f [u8]> {
        let (_, l) = fr
            .parts
            .get(k)
            .ok_or_else(|| broken(self.leaf().path(), format!("frame read has no part {k}")))?;
        let m = self.member(fr.member)?;
        if l.record.codec.reads_as_zero() {
            let bytes = frame.get(..l.record.raw_len as usize).unwrap_or_default();
            let mut r = l.record;
            r.frame_offset = 0;
            return m.record_bytes(l.index, &r, bytes).map(|_| bytes);
        }
        m.record_bytes(l.index, &l.record, frame)
    }

    /// Decodes `fr`'s frame into `frame` and checks every part against its hash: the worker
    /// step of a pipeline over frame reads. Returns the bytes checked.
    pub fn decode_checked(
        &self,
        fr: &FrameRead,
        stored: &[u8],
        frame: &mut Vec<u8>,
    ) -> Result<u64> {
        self.decode(fr, stored, frame)?;
        let mut len = 0u64;
        for k in 0..fr.parts.len() {
            len += self.part(fr, k, frame)?.len() as u64;
        }
        Ok(len)
    }

    /// Reads leaf record `i` into `out`, verified (one frame decode; for random access).
    pub fn read_record(&self, i: usize, out: &mut Vec<u8>) -> Result<()> {
        let fr = self.frame_reads([i])?;
        let Some(fr) = fr.first() else {
            return Ok(());
        };
        let mut stored = Vec::new();
        let mut frame = Vec::new();
        self.read(fr, &mut stored)?;
        self.decode(fr, &stored, &mut frame)?;
        let bytes = self.part(fr, 0, &frame)?;
        out.clear();
        out.extend_from_slice(bytes);
        Ok(())
    }

    fn member(&self, m: usize) -> Result<&ImageReader> {
        self.members
            .get(m)
            .ok_or_else(|| broken(self.leaf().path(), format!("no chain member {m}")))
    }

    /// Path of member `m` (for messages).
    pub fn member_path(&self, m: usize) -> Option<&Path> {
        self.members.get(m).map(|r| r.path())
    }

    /// The files of every member, leaf first.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.members
            .iter()
            .map(|m| m.path().to_path_buf())
            .collect()
    }
}
