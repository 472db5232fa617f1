//! NTFS: recognition by the boot sector (label from `$Volume`, serial as UUID, used bytes from
//! `$Bitmap`), and the used-block map read from `$Bitmap`, plus the volume's clean/hibernated
//! state.
//!
//! **Probe.** The boot sector must carry the `NTFS    ` signature, a plausible sector and
//! cluster size, and zeros where FAT keeps its BPB fields. The label is the `$VOLUME_NAME` of MFT
//! record 3, read where the boot sector puts the MFT (the first 16 records are contiguous) and
//! parsed as leniently as libblkid does; an NTFS whose MFT lies beyond the device is still
//! reported, without a label. `used_bytes` is the clusters `$Bitmap` marks in use × cluster size
//! (what ntfs-3g's `df` reports), read through the same route as the map and only when the map
//! would accept the volume's boot sector, `$MFT` and `$Bitmap`, and the bitmap is at most
//! `USED_BITMAP_MAX_BYTES`; otherwise `None`.
//!
//! **Map.** Route: boot sector → MFT record 0 (`$MFT`, update sequence verified) → its unnamed
//! `$DATA` runlist → record 6 (`$Bitmap`) → its `$DATA` → one bit per cluster. Record 3
//! (`$Volume`) gives the dirty flag, and a scan of every in-use MFT record finds `hiberfil.sys`
//! in the root directory (record 5), whose first four bytes say whether Windows is hibernated
//! or shut down with Fast Startup (which hibernates the kernel session and writes the same
//! header).
//!
//! Used = every cluster whose `$Bitmap` bit is set, plus the boot sector and the backup boot
//! sector. The backup lies after the last cluster: the boot sector's total-sectors field
//! counts the volume without it, and it is the sector numbered total-sectors (formatters make
//! that the partition's last sector). The partition's last sector is added as well, because
//! ntfs-3g looks for the backup there; on a volume that fills its partition both are the same.
//!
//! Invariants and limits, for hostile input:
//! - The update sequence of every system record read is verified; a torn record is an error.
//! - Runlists must be complete (their clusters add up to the attribute's VCN range), lie inside
//!   the volume, and not overlap themselves; `$MFT` and `$Bitmap` must not be sparse,
//!   compressed or only partly initialised, and the bitmap must mark the boot sector, `$MFT`
//!   and itself used. A `$MFT` whose runlist continues in other records (through
//!   `$ATTRIBUTE_LIST`) is not supported and is an error.
//! - Records are 512 B to 64 KiB, clusters at most 2 MiB. Reads go in chunks of at most 1 MiB,
//!   so memory is bounded by the map itself, whatever the volume claims.
//! - Every loop is bounded by a length read from the device and checked against the volume.
//! - Every field is read with the bounds-checked readers of [`crate::bytes`]; a field beyond
//!   its structure is an error, never a panic.
//!
//! Any failure is a [`MapError`] and the caller copies the whole partition.
//!
//! Units: offsets and sizes in bytes; clusters and MFT records are numbered from 0. The map's
//! output is byte ranges relative to the filesystem's first byte.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{read_exact_soft, utf16_label};
use super::{MapError, MapResult, UsedMap};
use crate::blockdev::{read_clamped, read_vec, BlockDev};
use crate::bytes::{arr, byte, field, has, le16, le32, le64};
use crate::error::Result;

/// NTFS is recognised and mapped.
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

/// The family named in this module's [`MapError`]s.
const FAMILY: &str = "ntfs";

/// The error for a field read past the end of a structure whose length was checked before:
/// it cannot happen, and is a refusal rather than a panic if it does.
const TRUNCATED: &str = "a structure ends before one of its fields";

// ---------------------------------------------------------------------------------------------
// probe

/// Attributes walked in the $Volume record.
const NTFS_MAX_ATTRS: usize = 64;
/// Largest `$Bitmap` (bytes) counted for `used_bytes`: volumes up to 4 TiB at 4 KiB clusters.
/// Bigger ones have `used_bytes` `None`, so that listing disks stays quick.
const USED_BITMAP_MAX_BYTES: u64 = 128 << 20;

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let bs = read_clamped(dev, 0, 512)?;
    Ok(parse_ntfs(dev, &bs))
}

fn parse_ntfs(dev: &dyn BlockDev, bs: &[u8]) -> Option<FsInfo> {
    if !has(bs, 3, b"NTFS    ") {
        return None;
    }
    let bps = le16(bs, 0x0B)?;
    if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
        return None;
    }
    let spc_raw = byte(bs, 0x0D)?;
    let spc: u64 = match spc_raw {
        1..=0x80 if spc_raw.is_power_of_two() => u64::from(spc_raw),
        // above 0x80 the byte is a negative power of two: clusters above 64 KiB
        0x81..=0xFF => 1u64.checked_shl(256 - u32::from(spc_raw))?,
        _ => return None,
    };
    let cluster = u64::from(bps).checked_mul(spc)?;
    if cluster > MAX_CLUSTER {
        return None;
    }
    // fields FAT uses must be zero on NTFS
    let zero = le16(bs, 0x0E)? == 0
        && byte(bs, 0x10)? == 0
        && le16(bs, 0x11)? == 0
        && le16(bs, 0x13)? == 0
        && le16(bs, 0x16)? == 0
        && le32(bs, 0x20)? == 0;
    if !zero {
        return None;
    }
    let cpr = byte(bs, 0x40)?;
    let record_size: u64 = match cpr {
        1..=64 if cpr.is_power_of_two() => u64::from(cpr).checked_mul(cluster)?,
        // 0xE1..=0xF7 are -31..=-9: the record is 2^-n bytes
        0xE1..=0xF7 => 1u64 << (256 - u32::from(cpr)),
        _ => return None,
    };
    let serial = le64(bs, 0x48)?;
    Some(FsInfo {
        kind: FsKind::Ntfs,
        label: ntfs_label(dev, bs, cluster, record_size),
        uuid: (serial != 0).then(|| format!("{serial:016X}")),
        used_bytes: ntfs_used(dev, bs),
    })
}

fn ntfs_label(dev: &dyn BlockDev, bs: &[u8], cluster: u64, record_size: u64) -> Option<String> {
    if record_size > MAX_RECORD {
        return None;
    }
    let mft = le64(bs, 0x30)?.checked_mul(cluster)?;
    // the first 16 MFT records are contiguous, so record 3 follows record 0 directly
    let at = mft.checked_add(record_size.checked_mul(3)?)?;
    let mut rec = read_exact_soft(dev, at, record_size)?;
    if !has(&rec, 0, b"FILE") {
        return None;
    }
    apply_fixups(&mut rec)?;
    volume_name(&rec)
}

/// Applies the update-sequence array: the last two bytes of every 512-byte stride must hold
/// the sequence number and are replaced by the saved originals. `None` on a torn record.
/// Laxer than the map's [`fixup`] (no header checks), as libblkid is for the label.
fn apply_fixups(rec: &mut [u8]) -> Option<()> {
    let usa_ofs = usize::from(le16(rec, 4)?);
    let usa_count = usize::from(le16(rec, 6)?);
    let strides = usa_count.checked_sub(1)?;
    if strides.checked_mul(FIXUP_STRIDE)? > rec.len() {
        return None;
    }
    let usn: [u8; 2] = arr(rec, usa_ofs)?;
    for i in 1..=strides {
        let saved: [u8; 2] = arr(rec, usa_ofs.checked_add(i.checked_mul(2)?)?)?;
        let end = i.checked_mul(FIXUP_STRIDE)?;
        let tail = rec.get_mut(end.checked_sub(2)?..end)?;
        if *tail != usn {
            return None;
        }
        tail.copy_from_slice(&saved);
    }
    Some(())
}

/// The resident $VOLUME_NAME (0x60) attribute of a fixed-up MFT record, UTF-16LE.
fn volume_name(rec: &[u8]) -> Option<String> {
    let mut off = usize::from(le16(rec, 0x14)?);
    let end = usize::try_from(le32(rec, 0x18)?).ok()?.min(rec.len());
    for _ in 0..NTFS_MAX_ATTRS {
        let ty = le32(rec, off)?;
        if ty == 0xFFFF_FFFF {
            return None;
        }
        let len = usize::try_from(le32(rec, off.checked_add(4)?)?).ok()?;
        if len < 24 || off.checked_add(len)? > end {
            return None;
        }
        if ty == 0x60 {
            let attr = field(rec, off, len)?;
            if byte(attr, 8)? != 0 {
                return None; // non-resident volume name: not produced by any real NTFS
            }
            let value_len = usize::try_from(le32(attr, 0x10)?).ok()?;
            let value_off = usize::from(le16(attr, 0x14)?);
            return utf16_label(field(attr, value_off, value_len)?, false);
        }
        off = off.checked_add(len)?;
    }
    None
}

/// Clusters in use × cluster size, from `$Bitmap`, read and checked as the map does (see the
/// module documentation). `None` when anything on the way is unreadable or inconsistent.
fn ntfs_used(dev: &dyn BlockDev, bs: &[u8]) -> Option<u64> {
    let (b, mft) = open_volume(dev, bs).ok()?.ok()?;
    if b.clusters.div_ceil(8) > USED_BITMAP_MAX_BYTES {
        return None;
    }
    let ranges = bitmap_ranges(dev, &b, &mft).ok()?.ok()?;
    Some(ranges.iter().map(|r| r.1).sum())
}

// ---------------------------------------------------------------------------------------------
// map

/// The used space and state of one NTFS volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtfsMap {
    /// Byte ranges `(start, len)` relative to the filesystem's first byte, sorted, merged (no
    /// two ranges touch) and inside the partition.
    pub ranges: Vec<(u64, u64)>,
    /// `$Volume`'s `VOLUME_IS_DIRTY` flag (0x0001 of `$VOLUME_INFORMATION`): Windows or
    /// ntfs-3g did not finish with the volume, or chkdsk was requested.
    pub dirty: bool,
    /// `\hiberfil.sys` starts with `hibr`, `HIBR`, `wake` or `WAKE`: Windows is hibernated or
    /// was shut down with Fast Startup, so it will resume from memory state that describes
    /// this volume, and writes to a copy (or the original) made now may be lost or corrupt it.
    pub hibernated: bool,
    /// A sentence for the user when the copy may not be consistent: the volume is dirty, is
    /// hibernated, or its hibernation state could not be determined (records that failed
    /// verification, or a `hiberfil.sys` whose data is described elsewhere). `None` when
    /// neither applies. The map itself is exact either way.
    pub reason_unsafe: Option<String>,
}

const FIXUP_STRIDE: usize = 512;
const MIN_RECORD: u64 = 512;
const MAX_RECORD: u64 = 64 << 10;
const MAX_CLUSTER: u64 = 2 << 20;
/// Largest single read of the bitmap or the MFT.
const CHUNK: u64 = 1 << 20;

const AT_ATTRIBUTE_LIST: u32 = 0x20;
const AT_FILE_NAME: u32 = 0x30;
const AT_VOLUME_INFORMATION: u32 = 0x70;
const AT_DATA: u32 = 0x80;
const AT_END: u32 = 0xFFFF_FFFF;

const ROOT_DIR_RECORD: u64 = 5;
const MFT_RECORD: u64 = 0;
const VOLUME_RECORD: u64 = 3;
const BITMAP_RECORD: u64 = 6;

/// A local result: `Err` is a reason the volume is not trusted.
type Check<T> = std::result::Result<T, String>;

/// Boot-sector geometry, in bytes unless named otherwise.
#[derive(Debug)]
struct Boot {
    bps: u64,
    cluster: u64,
    total_sectors: u64,
    clusters: u64,
    mft_lcn: u64,
    record: u64,
}

fn boot(bs: &[u8], dev_len: u64) -> Check<Boot> {
    if !has(bs, 3, b"NTFS    ") {
        return Err("no NTFS signature in the boot sector".into());
    }
    let bps = u64::from(le16(bs, 0x0B).ok_or(TRUNCATED)?);
    if !bps.is_power_of_two() || !(256..=4096).contains(&bps) {
        return Err(format!("{bps} bytes per sector"));
    }
    let spc = match byte(bs, 0x0D).ok_or(TRUNCATED)? {
        v @ 1..=0x80 if v.is_power_of_two() => u64::from(v),
        // above 0x80 the byte is a negative exponent: clusters above 64 KiB
        v @ 0xF4..=0xFF => 1 << (256 - u32::from(v)),
        v => return Err(format!("sectors-per-cluster byte {v:#04x}")),
    };
    let cluster = bps * spc;
    if cluster > MAX_CLUSTER {
        return Err(format!("{cluster}-byte clusters"));
    }
    let total_sectors = le64(bs, 0x28).ok_or(TRUNCATED)?;
    match total_sectors.checked_mul(bps) {
        Some(b) if b <= dev_len => {}
        _ => {
            return Err(format!(
                "{total_sectors} sectors of {bps} bytes exceed the partition ({dev_len} bytes)"
            ))
        }
    }
    let clusters = total_sectors / spc;
    if clusters == 0 {
        return Err("no clusters".into());
    }
    let record = match byte(bs, 0x40).ok_or(TRUNCATED)? as i8 {
        v @ 1..=127 => u64::from(v.unsigned_abs()) * cluster,
        v @ -31..=-1 => 1 << v.unsigned_abs(),
        v => return Err(format!("clusters-per-record byte {v}")),
    };
    if !record.is_power_of_two() || !(MIN_RECORD..=MAX_RECORD).contains(&record) {
        return Err(format!("{record}-byte MFT records"));
    }
    let mft_lcn = le64(bs, 0x30).ok_or(TRUNCATED)?;
    if mft_lcn >= clusters || (mft_lcn * cluster).saturating_add(record * 16) > clusters * cluster {
        return Err(format!("MFT at cluster {mft_lcn} is outside the volume"));
    }
    Ok(Boot {
        bps,
        cluster,
        total_sectors,
        clusters,
        mft_lcn,
        record,
    })
}

/// One run of a runlist: `len` clusters from `vcn`, at `lcn` (`None` = sparse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    vcn: u64,
    len: u64,
    lcn: Option<u64>,
}

/// A little-endian two's-complement integer of 1 to 8 bytes.
fn signed(b: &[u8]) -> i64 {
    let mut v: i64 = if b.last().is_some_and(|&x| x & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &x in b.iter().rev() {
        v = (v << 8) | i64::from(x);
    }
    v
}

/// Decodes mapping pairs `mp` describing VCNs `first..end` of a volume of `clusters`.
fn decode_runs(mp: &[u8], first: u64, end: u64, clusters: u64) -> Check<Vec<Run>> {
    let mut runs = Vec::new();
    let mut pos = 0usize;
    let mut vcn = first;
    let mut lcn: i64 = 0;
    loop {
        let Some(&head) = mp.get(pos) else {
            return Err("runlist runs off its attribute".into());
        };
        if head == 0 {
            break;
        }
        let (nlen, noff) = (usize::from(head & 0xF), usize::from(head >> 4));
        if !(1..=8).contains(&nlen) || noff > 8 {
            return Err(format!("runlist header byte {head:#04x}"));
        }
        let Some(bytes) = mp.get(pos + 1..pos + 1 + nlen + noff) else {
            return Err("runlist runs off its attribute".into());
        };
        pos += 1 + nlen + noff;
        let len = signed(&bytes[..nlen]);
        if len <= 0 {
            return Err(format!("run of {len} clusters at VCN {vcn}"));
        }
        let len = len.unsigned_abs();
        let at = if noff == 0 {
            None
        } else {
            lcn = lcn
                .checked_add(signed(&bytes[nlen..]))
                .ok_or("runlist offset overflows")?;
            let start = u64::try_from(lcn).map_err(|_| format!("run at cluster {lcn}"))?;
            if start.checked_add(len).is_none_or(|e| e > clusters) {
                return Err(format!(
                    "run of {len} clusters at cluster {start} is outside the volume \
                     ({clusters} clusters)"
                ));
            }
            Some(start)
        };
        runs.push(Run { vcn, len, lcn: at });
        vcn = vcn
            .checked_add(len)
            .filter(|&v| v <= end)
            .ok_or_else(|| format!("runlist goes past VCN {end}"))?;
    }
    if vcn != end {
        return Err(format!("runlist covers VCNs {first}..{vcn}, not ..{end}"));
    }
    // a run that revisits clusters of an earlier one is corrupt (or a loop)
    let mut placed: Vec<(u64, u64)> = runs
        .iter()
        .filter_map(|r| r.lcn.map(|l| (l, r.len)))
        .collect();
    placed.sort_unstable();
    if placed.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
        return Err("runlist runs overlap".into());
    }
    Ok(runs)
}

/// A non-resident attribute's data: its runs and sizes in bytes.
#[derive(Debug)]
struct Stream {
    runs: Vec<Run>,
    size: u64,
    initialized: u64,
}

impl Stream {
    fn has_holes(&self) -> bool {
        self.runs.iter().any(|r| r.lcn.is_none())
    }

    /// Fills `buf` from byte `off` of the stream (sparse runs read as zeros).
    fn read(
        &self,
        dev: &dyn BlockDev,
        cluster: u64,
        mut off: u64,
        buf: &mut [u8],
    ) -> Result<Check<()>> {
        let mut done = 0usize;
        while done < buf.len() {
            let vcn = off / cluster;
            let i = self.runs.partition_point(|r| r.vcn + r.len <= vcn);
            let Some(run) = self.runs.get(i).filter(|r| r.vcn <= vcn) else {
                return Ok(Err(format!("byte {off} is beyond the runlist")));
            };
            let in_run = off - run.vcn * cluster;
            let n = ((run.len * cluster - in_run) as usize).min(buf.len() - done);
            let part = &mut buf[done..done + n];
            match run.lcn {
                Some(lcn) => dev.read_at(part, lcn * cluster + in_run)?,
                None => part.fill(0),
            }
            done += n;
            off += n as u64;
        }
        Ok(Ok(()))
    }
}

/// One attribute of a record: its type, whether it is resident, its name length and bytes.
struct Attr<'a> {
    kind: u32,
    resident: bool,
    named: bool,
    bytes: &'a [u8],
}

impl<'a> Attr<'a> {
    /// A resident attribute's value.
    fn value(&self) -> Check<&'a [u8]> {
        let len = le32(self.bytes, 16).ok_or(TRUNCATED)? as usize;
        let off = usize::from(le16(self.bytes, 20).ok_or(TRUNCATED)?);
        self.bytes
            .get(off..off.saturating_add(len))
            .ok_or_else(|| format!("attribute {:#x} value outside the attribute", self.kind))
    }

    /// A non-resident attribute's runs, checked against its sizes. Only a first extent
    /// (lowest VCN 0) that covers the whole allocation is accepted.
    fn stream(&self, b: &Boot) -> Check<Stream> {
        let what = self.kind;
        let u64_at = |off: usize| le64(self.bytes, off).ok_or(TRUNCATED);
        let lowest = u64_at(16)?;
        let end = u64_at(24)?.wrapping_add(1);
        let mp = usize::from(le16(self.bytes, 32).ok_or(TRUNCATED)?);
        let allocated = u64_at(40)?;
        let size = u64_at(48)?;
        let initialized = u64_at(56)?;
        if lowest != 0 {
            return Err(format!("attribute {what:#x} starts at VCN {lowest}"));
        }
        if allocated.checked_div(b.cluster) != Some(end) || !allocated.is_multiple_of(b.cluster) {
            return Err(format!(
                "attribute {what:#x}: {allocated} bytes allocated but VCNs 0..{end} mapped \
                 (the rest would be in other records, through $ATTRIBUTE_LIST)"
            ));
        }
        if size > allocated || initialized > size {
            return Err(format!(
                "attribute {what:#x}: size {size}, initialised {initialized}, allocated \
                 {allocated}"
            ));
        }
        let mp = self
            .bytes
            .get(mp..)
            .filter(|_| mp >= 0x40)
            .ok_or("mapping pairs outside the attribute")?;
        Ok(Stream {
            runs: decode_runs(mp, 0, end, b.clusters)?,
            size,
            initialized,
        })
    }
}

/// Checks the record header and applies its update sequence (fixups) in place.
fn fixup(rec: &mut [u8]) -> Check<()> {
    let usa_ofs = usize::from(le16(rec, 4).ok_or(TRUNCATED)?);
    let usa_count = usize::from(le16(rec, 6).ok_or(TRUNCATED)?);
    let strides = rec.len() / FIXUP_STRIDE;
    if usa_count != strides + 1 || usa_ofs < 0x28 || usa_ofs + 2 * usa_count > rec.len() {
        return Err(format!(
            "update sequence of {usa_count} entries at {usa_ofs} in a {}-byte record",
            rec.len()
        ));
    }
    let usn: [u8; 2] = arr(rec, usa_ofs).ok_or(TRUNCATED)?;
    for i in 1..usa_count {
        let end = i * FIXUP_STRIDE;
        let saved: [u8; 2] = arr(rec, usa_ofs + 2 * i).ok_or(TRUNCATED)?;
        let tail = rec.get_mut(end - 2..end).ok_or(TRUNCATED)?;
        if *tail != usn {
            return Err(format!(
                "update sequence mismatch in sector {} (torn write)",
                i - 1
            ));
        }
        tail.copy_from_slice(&saved);
    }
    Ok(())
}

/// The attributes of a fixed-up record, bounded by its bytes-in-use.
fn attributes(rec: &[u8]) -> Check<Vec<Attr<'_>>> {
    let mut pos = usize::from(le16(rec, 0x14).ok_or(TRUNCATED)?);
    let in_use = le32(rec, 0x18).ok_or(TRUNCATED)? as usize;
    if in_use > rec.len() || pos < 0x2A {
        return Err(format!(
            "record header: attributes at {pos}, {in_use} bytes in use"
        ));
    }
    let mut out = Vec::new();
    loop {
        if pos + 4 > in_use {
            return Err("attributes run past the record's bytes in use".into());
        }
        let kind = le32(rec, pos).ok_or(TRUNCATED)?;
        if kind == AT_END {
            return Ok(out);
        }
        if pos + 16 > in_use {
            return Err("attribute header past the record's end".into());
        }
        let len = le32(rec, pos + 4).ok_or(TRUNCATED)? as usize;
        let resident = byte(rec, pos + 8).ok_or(TRUNCATED)? == 0;
        let min = if resident { 24 } else { 0x40 };
        if len < min || !len.is_multiple_of(8) || pos + len > in_use {
            return Err(format!("attribute {kind:#x} of {len} bytes at {pos}"));
        }
        out.push(Attr {
            kind,
            resident,
            named: byte(rec, pos + 9).ok_or(TRUNCATED)? != 0,
            bytes: field(rec, pos, len).ok_or(TRUNCATED)?,
        });
        pos += len;
    }
}

/// The MFT, as far as we need it: its record size and where its records are.
struct Mft {
    stream: Stream,
    records: u64,
}

impl Mft {
    /// Reads, checks and fixes up system record `n`.
    fn record(&self, dev: &dyn BlockDev, b: &Boot, n: u64) -> Result<Check<Vec<u8>>> {
        if n >= self.records {
            return Ok(Err(format!("MFT has no record {n}")));
        }
        let mut rec = vec![0u8; b.record as usize];
        if let Err(e) = self.stream.read(dev, b.cluster, n * b.record, &mut rec)? {
            return Ok(Err(e));
        }
        Ok(check_record(&mut rec, n).map(|()| rec))
    }
}

/// Magic, in-use flag, fixups and (NTFS 3.1 headers) the record number of record `n`.
fn check_record(rec: &mut [u8], n: u64) -> Check<()> {
    if !has(rec, 0, b"FILE") {
        return Err(format!("MFT record {n} has no FILE signature"));
    }
    fixup(rec).map_err(|e| format!("MFT record {n}: {e}"))?;
    if le16(rec, 0x16).ok_or(TRUNCATED)? & 1 == 0 {
        return Err(format!("MFT record {n} is not in use"));
    }
    let number = le32(rec, 0x2C).ok_or(TRUNCATED)?;
    if le16(rec, 4).ok_or(TRUNCATED)? >= 0x30 && u64::from(number) != n {
        return Err(format!("MFT record {n} says it is record {number}"));
    }
    Ok(())
}

/// The unnamed `$DATA` attribute of a record.
fn unnamed_data<'a>(attrs: &'a [Attr<'a>]) -> Option<&'a Attr<'a>> {
    attrs.iter().find(|a| a.kind == AT_DATA && !a.named)
}

/// A non-resident unnamed `$DATA` usable for reading metadata: no holes, no compression.
fn metadata_stream(rec: &[u8], b: &Boot, what: &str) -> Check<Stream> {
    let attrs = attributes(rec).map_err(|e| format!("{what}: {e}"))?;
    let data = unnamed_data(&attrs).ok_or_else(|| format!("{what} has no $DATA"))?;
    let list = attrs.iter().any(|a| a.kind == AT_ATTRIBUTE_LIST);
    if data.resident {
        return Err(format!("{what} $DATA is resident"));
    }
    if le16(data.bytes, 12).ok_or(TRUNCATED)? != 0 {
        return Err(format!("{what} $DATA is compressed, sparse or encrypted"));
    }
    let s = data.stream(b).map_err(|e| {
        let hint = if list {
            " ($ATTRIBUTE_LIST is not supported)"
        } else {
            ""
        };
        format!("{what}: {e}{hint}")
    })?;
    if s.has_holes() || s.initialized != s.size {
        return Err(format!("{what} $DATA has holes or uninitialised bytes"));
    }
    Ok(s)
}

/// Adds `(start, len)` to sorted, merged `ranges`, keeping them so.
fn add_range(ranges: &mut Vec<(u64, u64)>, start: u64, len: u64) {
    ranges.push((start, len));
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(s, n) in ranges.iter() {
        match out.last_mut() {
            Some(last) if s <= last.0 + last.1 => last.1 = last.1.max(s + n - last.0),
            _ => out.push((s, n)),
        }
    }
    *ranges = out;
}

/// True when `[start, start + len)` lies inside one of the sorted, merged `ranges`.
fn covered(ranges: &[(u64, u64)], start: u64, len: u64) -> bool {
    let i = ranges.partition_point(|r| r.0 + r.1 <= start);
    ranges
        .get(i)
        .is_some_and(|r| r.0 <= start && start + len <= r.0 + r.1)
}

/// Reads the boot sector, `$MFT`, `$Volume` and `$Bitmap` of the NTFS volume on `dev`, scans
/// the MFT for `hiberfil.sys`, and returns the used space and state.
///
/// `dev` is the partition (offset 0 is the boot sector). The outer `Err` is an I/O error; the
/// inner one means the metadata is inconsistent, unsupported or does not fit `dev`, so
/// nothing can be called unused. Reads the bitmap once and the whole MFT at most once, in
/// chunks of at most 1 MiB.
pub fn used_ranges(dev: &dyn BlockDev) -> MapResult<NtfsMap> {
    Ok(map(dev)?.map_err(|why| MapError(why, FAMILY)))
}

/// [`used_ranges`] in the shape every mappable filesystem shares: a dirty or hibernated
/// volume (or one whose hibernation state is unknown) carries the reason, and the caller
/// copies every block, so that a restore is byte-identical to what Windows will resume with.
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    Ok(used_ranges(dev)?.map(|m| UsedMap {
        ranges: m.ranges,
        reason_unsafe: m.reason_unsafe,
    }))
}

/// The boot sector `bs` and `$MFT` of the volume on `dev`, checked.
fn open_volume(dev: &dyn BlockDev, bs: &[u8]) -> Result<Check<(Boot, Mft)>> {
    let b = match boot(bs, dev.len()) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };

    // $MFT, read where the boot sector says it starts
    let mut rec0 = read_vec(dev, b.mft_lcn * b.cluster, b.record as usize)?;
    if let Err(e) = check_record(&mut rec0, MFT_RECORD) {
        return Ok(Err(e));
    }
    let stream = match metadata_stream(&rec0, &b, "$MFT") {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let records = stream.size / b.record;
    if records < 16 || stream.runs.first().and_then(|r| r.lcn) != Some(b.mft_lcn) {
        return Ok(Err(format!(
            "$MFT: {records} records, first run not at the boot sector's cluster {}",
            b.mft_lcn
        )));
    }
    Ok(Ok((b, Mft { stream, records })))
}

/// The clusters `$Bitmap` marks in use, as sorted, merged byte ranges, checked to cover the
/// boot sector, `$MFT` and `$Bitmap` itself.
fn bitmap_ranges(dev: &dyn BlockDev, b: &Boot, mft: &Mft) -> Result<Check<Vec<(u64, u64)>>> {
    let rec6 = match mft.record(dev, b, BITMAP_RECORD)? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let bitmap = match metadata_stream(&rec6, b, "$Bitmap") {
        Ok(s) => s,
        Err(e) => return Ok(Err(e)),
    };
    let ranges = match read_bitmap(dev, b, &bitmap)? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    for (what, runs) in [("$MFT", &mft.stream.runs), ("$Bitmap", &bitmap.runs)] {
        for r in runs.iter() {
            let lcn = r.lcn.unwrap_or(0);
            if !covered(&ranges, lcn * b.cluster, r.len * b.cluster) {
                return Ok(Err(format!(
                    "$Bitmap marks clusters {lcn}..{} of {what} free",
                    lcn + r.len
                )));
            }
        }
    }
    if !covered(&ranges, 0, b.bps) {
        return Ok(Err("$Bitmap marks the boot sector free".into()));
    }
    Ok(Ok(ranges))
}

fn map(dev: &dyn BlockDev) -> Result<Check<NtfsMap>> {
    if dev.len() < 512 {
        return Ok(Err("device too small for a boot sector".into()));
    }
    let bs = read_vec(dev, 0, 512)?;
    let (b, mft) = match open_volume(dev, &bs)? {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };

    // $Volume: the dirty flag
    let rec3 = match mft.record(dev, &b, VOLUME_RECORD)? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let dirty = match volume_flags(&rec3) {
        Ok(f) => f & 1 != 0,
        Err(e) => return Ok(Err(format!("$Volume: {e}"))),
    };

    // $Bitmap: one bit per cluster
    let mut ranges = match bitmap_ranges(dev, &b, &mft)? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };

    // the backup boot sector, after the last cluster, and where ntfs-3g looks for it
    let backup = b.total_sectors * b.bps;
    if backup + b.bps <= dev.len() {
        add_range(&mut ranges, backup, b.bps);
    }
    let last = dev.len() / b.bps * b.bps;
    if last >= backup + b.bps {
        add_range(&mut ranges, last - b.bps, b.bps);
    }

    let hiber = hibernation(dev, &b, &mft)?;
    let mut reasons = Vec::new();
    if dirty {
        reasons.push("the volume is marked dirty (not cleanly unmounted; run chkdsk)".to_owned());
    }
    let hibernated = match hiber {
        Hiber::Yes => {
            reasons.push(
                "Windows is hibernated or was shut down with Fast Startup (hiberfil.sys is \
                 active)"
                    .to_owned(),
            );
            true
        }
        Hiber::No => false,
        Hiber::Unknown(why) => {
            reasons.push(format!("hibernation state unknown: {why}"));
            false
        }
    };
    Ok(Ok(NtfsMap {
        ranges,
        dirty,
        hibernated,
        reason_unsafe: (!reasons.is_empty()).then(|| reasons.join("; ")),
    }))
}

fn volume_flags(rec: &[u8]) -> Check<u16> {
    let attrs = attributes(rec)?;
    let info = attrs
        .iter()
        .find(|a| a.kind == AT_VOLUME_INFORMATION && a.resident)
        .ok_or("no $VOLUME_INFORMATION")?;
    let v = info.value()?;
    if v.len() < 12 {
        return Err(format!("$VOLUME_INFORMATION of {} bytes", v.len()));
    }
    Ok(le16(v, 10).ok_or(TRUNCATED)?)
}

/// Turns the bitmap's first `clusters` bits into byte ranges.
fn read_bitmap(dev: &dyn BlockDev, b: &Boot, bitmap: &Stream) -> Result<Check<Vec<(u64, u64)>>> {
    let need = b.clusters.div_ceil(8);
    if bitmap.size < need {
        return Ok(Err(format!(
            "$Bitmap has {} bytes, {need} needed for {} clusters",
            bitmap.size, b.clusters
        )));
    }
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut run: Option<u64> = None;
    let flush = |ranges: &mut Vec<(u64, u64)>, from: u64, to: u64| {
        ranges.push((from * b.cluster, (to - from) * b.cluster));
    };
    let mut off = 0u64;
    let mut buf = Vec::new();
    while off < need {
        let n = CHUNK.min(need - off);
        buf.resize(n as usize, 0);
        if let Err(e) = bitmap.read(dev, b.cluster, off, &mut buf)? {
            return Ok(Err(format!("$Bitmap: {e}")));
        }
        for (i, &byte) in buf.iter().enumerate() {
            let base = (off + i as u64) * 8;
            match (byte, run) {
                (0xFF, Some(_)) | (0, None) => continue,
                _ => {}
            }
            for bit in 0..8u64 {
                let c = base + bit;
                if c >= b.clusters {
                    break;
                }
                match (byte & (1 << bit) != 0, run) {
                    (true, None) => run = Some(c),
                    (false, Some(r)) => {
                        flush(&mut ranges, r, c);
                        run = None;
                    }
                    _ => {}
                }
            }
        }
        off += n;
    }
    if let Some(r) = run {
        flush(&mut ranges, r, b.clusters);
    }
    Ok(Ok(ranges))
}

enum Hiber {
    Yes,
    No,
    Unknown(String),
}

const HIBER_MAGICS: [&[u8; 4]; 4] = [b"hibr", b"HIBR", b"wake", b"WAKE"];

/// Scans every in-use MFT record for `hiberfil.sys` in the root directory and reads the first
/// four bytes of its data.
fn hibernation(dev: &dyn BlockDev, b: &Boot, mft: &Mft) -> Result<Hiber> {
    let per_chunk = (CHUNK / b.record).max(1);
    let mut torn = 0u64;
    let mut first = 0u64;
    let mut buf = Vec::new();
    while first < mft.records {
        let n = per_chunk.min(mft.records - first);
        buf.resize((n * b.record) as usize, 0);
        if let Err(e) = mft
            .stream
            .read(dev, b.cluster, first * b.record, &mut buf)?
        {
            return Ok(Hiber::Unknown(e));
        }
        for (i, rec) in buf.chunks_exact_mut(b.record as usize).enumerate() {
            if has(rec, 0, b"BAAD") {
                torn += 1;
                continue;
            }
            if !has(rec, 0, b"FILE") || le16(rec, 0x16).is_none_or(|f| f & 1 == 0) {
                continue;
            }
            if fixup(rec).is_err() {
                torn += 1;
                continue;
            }
            let Ok(attrs) = attributes(rec) else {
                torn += 1;
                continue;
            };
            if !attrs.iter().any(is_hiberfil_name) {
                continue;
            }
            let record = first + i as u64;
            let Some(data) = unnamed_data(&attrs) else {
                return Ok(Hiber::Unknown(format!(
                    "hiberfil.sys (record {record}) keeps its data in another record"
                )));
            };
            return hiberfil_magic(dev, b, data, record);
        }
        first += n;
    }
    Ok(if torn > 0 {
        Hiber::Unknown(format!("{torn} MFT records failed verification"))
    } else {
        Hiber::No
    })
}

/// A resident `$FILE_NAME` of `hiberfil.sys` (any case) whose parent is the root directory.
fn is_hiberfil_name(a: &Attr<'_>) -> bool {
    if a.kind != AT_FILE_NAME || !a.resident {
        return false;
    }
    let Ok(v) = a.value() else {
        return false;
    };
    if le64(v, 0).is_none_or(|parent| parent & 0xFFFF_FFFF_FFFF != ROOT_DIR_RECORD) {
        return false;
    }
    let Some(len) = byte(v, 0x40) else {
        return false;
    };
    let Some(name) = field(v, 0x42, 2 * usize::from(len)) else {
        return false;
    };
    let want = "hiberfil.sys".encode_utf16();
    name.chunks_exact(2)
        .filter_map(|c| le16(c, 0))
        .map(|u| u8::try_from(u).map_or(u, |c| u16::from(c.to_ascii_lowercase())))
        .eq(want)
}

fn hiberfil_magic(dev: &dyn BlockDev, b: &Boot, data: &Attr<'_>, record: u64) -> Result<Hiber> {
    let unknown = |e: String| {
        Ok(Hiber::Unknown(format!(
            "hiberfil.sys (record {record}): {e}"
        )))
    };
    let mut head = [0u8; 4];
    if data.resident {
        match data.value() {
            Ok(v) => match arr(v, 0) {
                Some(h) => head = h,
                None => return Ok(Hiber::No),
            },
            Err(e) => return unknown(e),
        }
    } else {
        if le16(data.bytes, 12).is_none_or(|f| f & 0x4001 != 0) {
            return unknown("$DATA is compressed or encrypted".into());
        }
        let s = match data.stream(b) {
            Ok(s) => s,
            Err(e) => return unknown(e),
        };
        if s.initialized < 4 {
            return Ok(Hiber::No);
        }
        if let Err(e) = s.read(dev, b.cluster, 0, &mut head)? {
            return unknown(e);
        }
    }
    Ok(if HIBER_MAGICS.iter().any(|m| **m == head) {
        Hiber::Yes
    } else {
        Hiber::No
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::MemDev;

    const REC: usize = 1024;
    const MFT_LCN: usize = 16;
    const RECORDS: usize = 20;
    const BITMAP_LCN: usize = 64;
    const HIBER_LCN: usize = 100;
    const SECTORS: u64 = 2047; // the device has one more: the backup boot sector

    fn attr_resident(kind: u32, value: &[u8]) -> Vec<u8> {
        let len = (0x18 + value.len()).div_ceil(8) * 8;
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&kind.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[16..20].copy_from_slice(&(value.len() as u32).to_le_bytes());
        a[20..22].copy_from_slice(&0x18u16.to_le_bytes());
        a[0x18..0x18 + value.len()].copy_from_slice(value);
        a
    }

    fn attr_data(vcns: u64, size: u64, runs: &[u8]) -> Vec<u8> {
        let len = (0x40 + runs.len() + 1).div_ceil(8) * 8;
        let mut a = vec![0u8; len];
        a[0..4].copy_from_slice(&AT_DATA.to_le_bytes());
        a[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        a[8] = 1;
        a[24..32].copy_from_slice(&(vcns - 1).to_le_bytes());
        a[32..34].copy_from_slice(&0x40u16.to_le_bytes());
        a[40..48].copy_from_slice(&(vcns * 512).to_le_bytes());
        a[48..56].copy_from_slice(&size.to_le_bytes());
        a[56..64].copy_from_slice(&size.to_le_bytes());
        a[0x40..0x40 + runs.len()].copy_from_slice(runs);
        a
    }

    fn file_name(parent: u64, name: &str) -> Vec<u8> {
        let mut v = vec![0u8; 0x42];
        v[0..8].copy_from_slice(&(parent | 1 << 48).to_le_bytes());
        v[0x40] = name.len() as u8;
        v[0x41] = 3;
        for u in name.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        attr_resident(AT_FILE_NAME, &v)
    }

    /// A record with `attrs`, update sequence applied (sequence number 7).
    fn record(n: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut r = vec![0u8; REC];
        r[0..4].copy_from_slice(b"FILE");
        r[4..6].copy_from_slice(&0x30u16.to_le_bytes());
        r[6..8].copy_from_slice(&3u16.to_le_bytes());
        r[0x14..0x16].copy_from_slice(&0x38u16.to_le_bytes());
        r[0x16..0x18].copy_from_slice(&1u16.to_le_bytes());
        r[0x1C..0x20].copy_from_slice(&(REC as u32).to_le_bytes());
        r[0x2C..0x30].copy_from_slice(&n.to_le_bytes());
        let mut pos = 0x38;
        for a in attrs {
            r[pos..pos + a.len()].copy_from_slice(a);
            pos += a.len();
        }
        r[pos..pos + 4].copy_from_slice(&AT_END.to_le_bytes());
        r[0x18..0x1C].copy_from_slice(&((pos + 8) as u32).to_le_bytes());
        r[0x30..0x32].copy_from_slice(&[7, 0]);
        for i in 1..3 {
            let end = i * 512;
            r[0x30 + 2 * i] = r[end - 2];
            r[0x30 + 2 * i + 1] = r[end - 1];
            r[end - 2..end].copy_from_slice(&[7, 0]);
        }
        r
    }

    struct Img {
        mft_runs: Vec<u8>,
        bitmap_runs: Vec<u8>,
        volume_flags: u16,
        hiber: &'static [u8; 4],
    }

    impl Default for Img {
        fn default() -> Self {
            Img {
                mft_runs: vec![0x11, (RECORDS * 2) as u8, MFT_LCN as u8],
                bitmap_runs: vec![0x11, 1, BITMAP_LCN as u8],
                volume_flags: 0,
                hiber: b"\0\0\0\0",
            }
        }
    }

    /// A 1 MiB volume: 512-byte sectors and clusters, 1 KiB records, MFT at cluster 16,
    /// bitmap at 64, `hiberfil.sys` (record 17) with data at cluster 100.
    fn build(img: &Img) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        d[3..11].copy_from_slice(b"NTFS    ");
        d[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        d[0x0D] = 1;
        d[0x28..0x30].copy_from_slice(&SECTORS.to_le_bytes());
        d[0x30..0x38].copy_from_slice(&(MFT_LCN as u64).to_le_bytes());
        d[0x40] = 0xF6; // -10: 1 KiB
        let rec_at = |n: usize| MFT_LCN * 512 + n * REC;
        let put = |d: &mut Vec<u8>, n: usize, r: Vec<u8>| {
            d[rec_at(n)..rec_at(n) + REC].copy_from_slice(&r);
        };
        for n in 0..RECORDS {
            put(&mut d, n, record(n as u32, &[]));
        }
        put(
            &mut d,
            0,
            record(
                0,
                &[attr_data(
                    (RECORDS * 2) as u64,
                    (RECORDS * REC) as u64,
                    &img.mft_runs,
                )],
            ),
        );
        let mut vi = vec![0u8; 12];
        vi[8] = 3;
        vi[9] = 1;
        vi[10..12].copy_from_slice(&img.volume_flags.to_le_bytes());
        put(
            &mut d,
            3,
            record(3, &[attr_resident(AT_VOLUME_INFORMATION, &vi)]),
        );
        put(&mut d, 6, record(6, &[attr_data(1, 256, &img.bitmap_runs)]));
        put(
            &mut d,
            17,
            record(
                17,
                &[
                    file_name(5, "hiberfil.sys"),
                    attr_data(1, 512, &[0x11, 1, HIBER_LCN as u8]),
                ],
            ),
        );
        d[HIBER_LCN * 512..HIBER_LCN * 512 + 4].copy_from_slice(img.hiber);
        // used: boot (0..16), MFT (16..56), bitmap (64), hiberfil (100)
        let bm = BITMAP_LCN * 512;
        d[bm..bm + 7].fill(0xFF);
        d[bm + 8] = 1;
        d[bm + 12] = 0x10;
        d
    }

    fn map_of(d: Vec<u8>) -> std::result::Result<NtfsMap, MapError> {
        used_ranges(&MemDev::from_vec(d, 512)).unwrap()
    }

    #[test]
    fn bitmap_and_backup_boot_sector() {
        let m = map_of(build(&Img::default())).unwrap();
        assert_eq!(
            m.ranges,
            vec![
                (0, 56 * 512),
                (64 * 512, 512),
                (100 * 512, 512),
                (SECTORS * 512, 512)
            ]
        );
        assert!(!m.dirty && !m.hibernated);
        assert_eq!(m.reason_unsafe, None);
    }

    #[test]
    fn dirty_and_hibernated() {
        let m = map_of(build(&Img {
            volume_flags: 1,
            hiber: b"HIBR",
            ..Img::default()
        }))
        .unwrap();
        assert!(m.dirty && m.hibernated);
        let why = m.reason_unsafe.unwrap();
        assert!(
            why.contains("dirty") && why.contains("Fast Startup"),
            "{why}"
        );
        for magic in [b"hibr", b"wake", b"WAKE"] {
            let img = Img {
                hiber: magic,
                ..Img::default()
            };
            assert!(map_of(build(&img)).unwrap().hibernated);
        }
        let img = Img {
            hiber: b"RSTR",
            ..Img::default()
        };
        assert!(!map_of(build(&img)).unwrap().hibernated);
    }

    #[test]
    fn torn_record_elsewhere_makes_hibernation_unknown() {
        let mut d = build(&Img::default());
        d[MFT_LCN * 512 + 17 * REC + 510] ^= 1; // hiberfil.sys's record, first sector's tail
        let m = map_of(d).unwrap();
        assert!(!m.hibernated);
        assert!(m.reason_unsafe.unwrap().contains("unknown"));
    }

    #[test]
    fn hostile_volumes_are_errors() {
        type Edit = fn(&mut Vec<u8>);
        let cases: [(&str, Edit, &str); 9] = [
            ("odd sector size", |d| d[0x0B] = 3, "bytes per sector"),
            ("cluster byte", |d| d[0x0D] = 3, "sectors-per-cluster"),
            ("record 4 GiB", |d| d[0x40] = 0xE0, "clusters-per-record"),
            ("record 128 B", |d| d[0x40] = 0xF9, "128-byte MFT records"),
            (
                "bigger than the device",
                |d| d[0x28..0x30].copy_from_slice(&4096u64.to_le_bytes()),
                "exceed the partition",
            ),
            (
                "MFT beyond the volume",
                |d| d[0x30..0x38].copy_from_slice(&u64::MAX.to_le_bytes()),
                "outside the volume",
            ),
            (
                "torn $MFT",
                |d| d[MFT_LCN * 512 + 1022] ^= 1,
                "update sequence mismatch",
            ),
            (
                "torn $Bitmap",
                |d| d[MFT_LCN * 512 + 6 * REC + 510] ^= 1,
                "MFT record 6: update sequence",
            ),
            (
                "endless attribute",
                |d| {
                    // record 3's first attribute claims length 0; fix up the update sequence
                    let at = MFT_LCN * 512 + 3 * REC + 0x38 + 4;
                    d[at..at + 4].fill(0);
                },
                "attribute 0x70 of 0 bytes",
            ),
        ];
        for (name, edit, want) in cases {
            let mut d = build(&Img::default());
            edit(&mut d);
            let e = map_of(d).unwrap_err();
            assert!(e.0.contains(want), "{name}: {e}");
        }
        assert!(map_of(vec![0; 100]).is_err());
        assert!(map_of(vec![0; 4096]).is_err());
    }

    #[test]
    fn hostile_runlists_are_errors() {
        let cases: [(&str, Img, &str); 7] = [
            (
                "bitmap outside the device",
                Img {
                    bitmap_runs: vec![0x21, 1, 0x00, 0x40],
                    ..Img::default()
                },
                "outside the volume",
            ),
            (
                "runs overlap (a loop)",
                Img {
                    mft_runs: vec![0x11, 20, MFT_LCN as u8, 0x11, 20, 0xF6],
                    ..Img::default()
                },
                "overlap",
            ),
            (
                "negative cluster",
                Img {
                    mft_runs: vec![0x11, 40, 0x80],
                    ..Img::default()
                },
                "run at cluster -128",
            ),
            (
                "zero-length run",
                Img {
                    mft_runs: vec![0x11, 0, 16],
                    ..Img::default()
                },
                "run of 0 clusters",
            ),
            (
                "short runlist (rest in an attribute list)",
                Img {
                    mft_runs: vec![0x11, 20, 16],
                    ..Img::default()
                },
                "covers VCNs 0..20",
            ),
            (
                "bad header",
                Img {
                    mft_runs: vec![0x19, 40, 16],
                    ..Img::default()
                },
                "header byte 0x19",
            ),
            (
                "sparse bitmap",
                Img {
                    bitmap_runs: vec![0x01, 1],
                    ..Img::default()
                },
                "holes",
            ),
        ];
        for (name, img, want) in cases {
            let e = map_of(build(&img)).unwrap_err();
            assert!(e.0.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn bitmap_must_cover_the_mft() {
        let mut d = build(&Img::default());
        d[BITMAP_LCN * 512 + 4] = 0xF0; // clusters 32..36 of the MFT free
        let e = map_of(d).unwrap_err();
        assert!(e.0.contains("marks clusters"), "{e}");
    }

    #[test]
    fn detect_counts_bitmap_clusters_as_used_bytes() {
        use crate::fsmap::detect::detect;
        // 58 clusters of 512 bytes marked in use: 0..56, 64 and 100; the backup boot sector
        // is in the map but not in used_bytes (it is no cluster)
        let info = detect(&MemDev::from_vec(build(&Img::default()), 512))
            .unwrap()
            .unwrap();
        assert_eq!((info.kind, info.used_bytes), (FsKind::Ntfs, Some(58 * 512)));
        let m = map_of(build(&Img::default())).unwrap();
        let mapped: u64 = m.ranges.iter().map(|r| r.1).sum();
        assert_eq!(mapped, 58 * 512 + 512);
        // a dirty or hibernated volume still has a bitmap to count
        let img = Img {
            volume_flags: 1,
            hiber: b"HIBR",
            ..Img::default()
        };
        let info = detect(&MemDev::from_vec(build(&img), 512))
            .unwrap()
            .unwrap();
        assert_eq!(info.used_bytes, Some(58 * 512));
        // a torn $Bitmap record, or a bitmap that leaves the MFT free: no count, still NTFS
        let mut torn = build(&Img::default());
        torn[MFT_LCN * 512 + 6 * REC + 510] ^= 1;
        let mut free_mft = build(&Img::default());
        free_mft[BITMAP_LCN * 512 + 4] = 0xF0;
        for d in [torn, free_mft] {
            let info = detect(&MemDev::from_vec(d, 512)).unwrap().unwrap();
            assert_eq!((info.kind, info.used_bytes), (FsKind::Ntfs, None));
        }
    }
}

/// The probe's tests, moved from `detect`: hand-built boot sectors and real volumes from
/// mkntfs, compared with blkid.
#[cfg(test)]
mod probe_tests {
    use super::*;
    use crate::fsmap::detect::detect;
    use crate::fsmap::testutil::*;

    #[test]
    fn ntfs_hand_built_applies_fixups() {
        let info = detect(&mem(ntfs_image())).unwrap().unwrap();
        assert_eq!(
            info,
            FsInfo {
                kind: FsKind::Ntfs,
                label: Some("HandMade".into()),
                uuid: Some("0123456789ABCDEF".into()),
                used_bytes: None,
            }
        );
    }

    #[test]
    fn ntfs_hostile_boot_sectors() {
        let mut bad_record_size = ntfs_image();
        bad_record_size[0x40] = 0x80;
        assert_eq!(detect(&mem(bad_record_size)).unwrap(), None);

        for lcn in [1u64 << 40, u64::MAX / 4096 + 1, u64::MAX] {
            let mut far = ntfs_image();
            put(&mut far, 0x30, &lcn.to_le_bytes());
            let info = detect(&mem(far)).unwrap().unwrap();
            assert_eq!((info.kind, info.label), (FsKind::Ntfs, None), "lcn {lcn}");
        }

        let mut torn = ntfs_image();
        torn[4 * 4096 + 3 * 1024 + 1022] = 8;
        assert_eq!(detect(&mem(torn)).unwrap().unwrap().label, None);

        let mut looping = ntfs_image();
        put(&mut looping, 4 * 4096 + 3 * 1024 + 484, &0u32.to_le_bytes());
        assert_eq!(detect(&mem(looping)).unwrap().unwrap().label, None);

        let mut huge_clusters = ntfs_image();
        huge_clusters[0x0D] = 0x81; // 2^127 sectors per cluster
        assert_eq!(detect(&mem(huge_clusters)).unwrap(), None);

        let mut fat_fields = ntfs_image();
        fat_fields[0x10] = 2;
        assert_eq!(detect(&mem(fat_fields)).unwrap(), None);
    }

    #[test]
    fn ntfs_images_match_blkid() {
        let cases: [(&str, &[&str], &str); 3] = [
            ("default", &["-L", "Nt Lab"], "Nt Lab"),
            ("4K sectors", &["-s", "4096", "-L", "four"], "four"),
            (
                "64K clusters",
                &["-c", "65536", "-L", "Big Clusters"],
                "Big Clusters",
            ),
        ];
        for (name, extra, label) in cases {
            let mut args = vec!["-F", "-Q", "-q"];
            args.extend_from_slice(extra);
            let Some((_img, info)) = mkfs_case(64 << 20, "mkntfs", &args) else {
                return;
            };
            assert_eq!(info.kind, FsKind::Ntfs, "{name}");
            assert_eq!(info.label.as_deref(), Some(label), "{name}");
            assert_eq!(info.uuid.as_ref().map(String::len), Some(16), "{name}");
        }
    }
}
