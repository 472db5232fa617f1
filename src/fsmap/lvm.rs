//! LVM2 physical volumes: recognised by their `LABELONE` label (UUID), and mapped through the
//! volume group's metadata to the used blocks of each logical volume's filesystem.
//!
//! The label sits in one of the first four 512-byte sectors and records its own sector number;
//! a label whose number does not match is a stale copy and ignored. The PV UUID is trusted only
//! when the label's CRC (LVM2's own CRC-32 variant) verifies.
//!
//! The map ([`used_map`]) reads the PV header after the label (its data and metadata areas),
//! the first metadata area's header (magic, version, CRC, its own place) and the current
//! metadata text it points at (CRC, size, wrapping in the circular area), and parses the text
//! (LVM2's configuration format: sections, `key = value`, lists). From it: the extent size, this
//! PV's `pe_start` and `pe_count`, and every logical volume's segments. The PV's used bytes are
//! then:
//! - everything before the first extent (the label and the metadata area) and after the last
//!   one (a second metadata area), whole;
//! - for each LV: its extents, assembled in LV order into a device of their own, whose
//!   filesystem is mapped like a partition's ([`super::map_filesystem`]): its used blocks
//!   where the filesystem proves them, every extent of the LV where it does not (an unknown or
//!   damaged filesystem, LUKS, swap kept by its header as elsewhere);
//! - extents no LV uses: nothing (LVM holds no data there).
//!
//! Copied whole, with the reason ([`MapError`]): a volume group of several PVs (one PV of it
//! is copied whole; mapping across PVs is a later step), a segment other than a linear one
//! (`striped` with one stripe): thin pools, snapshots (an origin's free blocks may hold what a
//! snapshot still shows), RAID, mirrors, caches, VDO; metadata whose checksum, magic, sizes or
//! syntax do not verify, or that does not name this PV; an LV whose extents overlap another's
//! or lie outside the PV.
//!
//! Units: offsets in bytes; `sectors` are LVM's 512-byte units, `extents` its allocation units.

use super::detect::{Format, FsInfo, FsKind};
use super::{MapError, MapResult, Used, UsedMap};
use crate::blockdev::{check_range, read_clamped, read_vec, BlockDev, Geometry};
use crate::bytes::{field, has, le32, le64};
use crate::error::Result;
use std::path::Path;

/// LVM2 is recognised and mapped.
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

/// The label sector (0 to 3) and its 512 bytes: the first `LABELONE` that records its own
/// sector.
fn find_label(head: &[u8]) -> Option<(u64, &[u8])> {
    (0..4u64).find_map(|sector| {
        let label = field(head, sector as usize * 512, 512)?;
        let ok = has(label, 0, b"LABELONE")
            && has(label, 24, b"LVM2 001")
            // the label records its own sector; a mismatch is a stale copy
            && le64(label, 8) == Some(sector);
        ok.then_some((sector, label))
    })
}

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let head = read_clamped(dev, 0, 4 * 512)?;
    let Some((_, label)) = find_label(&head) else {
        return Ok(None);
    };
    let crc_ok = le32(label, 16) == label.get(20..).map(lvm2_crc);
    Ok(Some(FsInfo {
        kind: FsKind::Lvm2,
        label: None,
        uuid: if crc_ok { lvm2_uuid(label) } else { None },
        used_bytes: None,
    }))
}

/// The PV UUID (32 characters at the pv_header, whose offset the label gives), as
/// 6-4-4-4-4-4-6 like blkid and `pvs`.
fn lvm2_uuid(label: &[u8]) -> Option<String> {
    let at = usize::try_from(le32(label, 20)?).ok()?;
    let raw = field(label, at, 32)?;
    if !raw.iter().all(u8::is_ascii_graphic) {
        return None;
    }
    let mut out = String::with_capacity(38);
    for (i, &c) in raw.iter().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            out.push('-');
        }
        out.push(char::from(c));
    }
    Some(out)
}

/// LVM2's label CRC (a CRC-32 variant with its own seed), from lvm2 `lib/misc/crc.c`.
fn lvm2_crc(data: &[u8]) -> u32 {
    const T: [u32; 16] = [
        0x0000_0000,
        0x1DB7_1064,
        0x3B6E_20C8,
        0x26D9_30AC,
        0x76DC_4190,
        0x6B6B_51F4,
        0x4DB2_6158,
        0x5005_713C,
        0xEDB8_8320,
        0xF00F_9344,
        0xD6D6_A3E8,
        0xCB61_B38C,
        0x9B64_C2B0,
        0x86D3_D2D4,
        0xA00A_E278,
        0xBDBD_F21C,
    ];
    let mut crc: u32 = 0xF597_A6CF;
    for &b in data {
        crc ^= u32::from(b);
        // indexes are masked to 0..=15, the table's size
        crc = (crc >> 4) ^ T[(crc & 0xF) as usize];
        crc = (crc >> 4) ^ T[(crc & 0xF) as usize];
    }
    crc
}

// ---------------------------------------------------------------------------------------------
// the used-block map

/// The family name in [`MapError`]s.
const FAMILY: &str = "LVM";
/// `MDA_HEADER_SIZE`: the metadata area's header; the circular text buffer follows it.
const MDA_HEADER: u64 = 512;
/// The metadata area header's magic.
const MDA_MAGIC: &[u8] = b" LVM2 x[5A%r0N*>";
/// Largest metadata text read (LVM's own default area is 1 MiB).
const MAX_TEXT: u64 = 16 << 20;
/// Deepest nesting of sections accepted (LVM writes four).
const MAX_DEPTH: usize = 8;
/// Most data or metadata areas a PV header may list.
const MAX_AREAS: usize = 16;

fn bad(why: impl Into<String>) -> MapError {
    MapError(why.into(), FAMILY)
}

/// A value of LVM2's metadata text.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Num(i64),
    Str(String),
    List(Vec<Value>),
    Section(Vec<(String, Value)>),
}

impl Value {
    fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Section(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn num(&self, key: &str) -> Option<u64> {
        match self.get(key)? {
            Value::Num(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    fn text(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn sections(&self) -> impl Iterator<Item = (&str, &Value)> {
        let entries = match self {
            Value::Section(e) => e.as_slice(),
            _ => &[],
        };
        entries
            .iter()
            .filter(|(_, v)| matches!(v, Value::Section(_)))
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// Parses LVM2's configuration text: `key = value` (numbers, quoted strings, `[lists]`),
/// `name { … }` sections, `#` comments.
fn parse(text: &str) -> std::result::Result<Value, String> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let entries = p.entries(0)?;
    p.skip();
    if p.i < p.b.len() {
        return Err(format!("unexpected `{}`", char::from(p.b[p.i])));
    }
    Ok(Value::Section(entries))
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b'#' {
                while self.b.get(self.i).is_some_and(|&c| c != b'\n') {
                    self.i += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> Option<String> {
        let start = self.i;
        while self
            .b
            .get(self.i)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || b"_-.+".contains(&c))
        {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.b[start..self.i]).into_owned())
    }

    /// Entries until `}` (depth > 0) or the end (depth 0).
    fn entries(&mut self, depth: usize) -> std::result::Result<Vec<(String, Value)>, String> {
        if depth > MAX_DEPTH {
            return Err("sections nest too deep".into());
        }
        let mut out = Vec::new();
        loop {
            self.skip();
            match self.b.get(self.i) {
                None if depth == 0 => return Ok(out),
                None => return Err("a section is not closed".into()),
                Some(b'}') if depth > 0 => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => {}
            }
            let key = self
                .ident()
                .ok_or_else(|| "a name was expected".to_string())?;
            self.skip();
            match self.b.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    out.push((key, Value::Section(self.entries(depth + 1)?)));
                }
                Some(b'=') => {
                    self.i += 1;
                    let v = self.value(depth)?;
                    out.push((key, v));
                }
                _ => return Err(format!("`=` or `{{` was expected after `{key}`")),
            }
        }
    }

    fn value(&mut self, depth: usize) -> std::result::Result<Value, String> {
        self.skip();
        match self.b.get(self.i) {
            Some(b'"') => {
                self.i += 1;
                let mut s = Vec::new();
                loop {
                    match self.b.get(self.i) {
                        None => return Err("a string is not closed".into()),
                        Some(b'"') => {
                            self.i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let c = *self.b.get(self.i + 1).ok_or("a string is not closed")?;
                            s.push(c);
                            self.i += 2;
                        }
                        Some(&c) => {
                            s.push(c);
                            self.i += 1;
                        }
                    }
                }
                Ok(Value::Str(String::from_utf8_lossy(&s).into_owned()))
            }
            Some(b'[') => {
                if depth >= MAX_DEPTH {
                    return Err("lists nest too deep".into());
                }
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.skip();
                    match self.b.get(self.i) {
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::List(items));
                        }
                        Some(b',') => self.i += 1,
                        None => return Err("a list is not closed".into()),
                        _ => items.push(self.value(depth + 1)?),
                    }
                }
            }
            _ => {
                let start = self.i;
                if self.b.get(self.i) == Some(&b'-') {
                    self.i += 1;
                }
                while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    self.i += 1;
                }
                // LVM writes floats for some settings; only their integer part is kept
                if self.b.get(self.i) == Some(&b'.') {
                    self.i += 1;
                    while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                        self.i += 1;
                    }
                }
                let t = std::str::from_utf8(&self.b[start..self.i]).unwrap_or("");
                let int = t.split('.').next().unwrap_or("");
                int.parse()
                    .map(Value::Num)
                    .map_err(|_| format!("a value was expected at `{t}`"))
            }
        }
    }
}

/// One logical volume's extents on this PV, in LV order: (first PV extent, extent count).
#[derive(Debug, Clone, PartialEq)]
struct Lv {
    name: String,
    segments: Vec<(u64, u64)>,
}

/// What the metadata says about this PV.
#[derive(Debug, Clone, PartialEq)]
struct Vg {
    /// Bytes of one extent.
    extent: u64,
    /// First byte of the first extent.
    pe_start: u64,
    pe_count: u64,
    lvs: Vec<Lv>,
}

/// The PV UUID as the metadata writes it (6-4-4-4-4-4-6), from the label's 32 characters.
fn pv_id(label: &[u8]) -> Option<String> {
    lvm2_uuid(label)
}

/// Reads the volume group from the metadata text, for the PV whose id is `pv`.
fn volume_group(text: &str, pv: &str) -> std::result::Result<Vg, MapError> {
    let root = parse(text).map_err(|e| bad(format!("its metadata cannot be read: {e}")))?;
    let mut vgs = root.sections();
    let (vg_name, vg) = vgs
        .next()
        .ok_or_else(|| bad("its metadata names no volume group"))?;
    let sectors = |v: &Value, key: &str| {
        v.num(key)
            .and_then(|n| n.checked_mul(512))
            .ok_or_else(|| bad(format!("its metadata has no valid {key}")))
    };
    let extent = sectors(vg, "extent_size")?;
    if extent == 0 {
        return Err(bad("its metadata gives an extent size of 0"));
    }
    let pvs: Vec<(&str, &Value)> = vg
        .get("physical_volumes")
        .map(|p| p.sections().collect())
        .unwrap_or_default();
    if pvs.len() != 1 {
        return Err(bad(format!(
            "volume group {vg_name} spans {} physical volumes; each is copied whole",
            pvs.len()
        )));
    }
    let (pv_name, this) = pvs[0];
    if this.text("id") != Some(pv) {
        return Err(bad(format!(
            "its metadata describes another physical volume ({})",
            this.text("id").unwrap_or("no id")
        )));
    }
    let pe_start = sectors(this, "pe_start")?;
    let pe_count = this
        .num("pe_count")
        .ok_or_else(|| bad("its metadata has no valid pe_count"))?;
    let mut lvs = Vec::new();
    if let Some(list) = vg.get("logical_volumes") {
        for (name, lv) in list.sections() {
            let mut segs: Vec<(u64, u64, u64)> = Vec::new();
            for (_, seg) in lv.sections() {
                let kind = seg.text("type").unwrap_or("");
                let stripes = match seg.get("stripes") {
                    Some(Value::List(l)) => l.as_slice(),
                    _ => &[],
                };
                if kind != "striped" || seg.num("stripe_count") != Some(1) || stripes.len() != 2 {
                    return Err(bad(format!(
                        "logical volume {name} has a {} segment (thin, snapshot, RAID, mirror, cache or striped volumes are not mapped yet)",
                        if kind == "striped" { "multi-stripe" } else { kind }
                    )));
                }
                let (Value::Str(on), Value::Num(first)) = (&stripes[0], &stripes[1]) else {
                    return Err(bad(format!("logical volume {name}'s segment is not valid")));
                };
                if on != pv_name {
                    return Err(bad(format!(
                        "logical volume {name} lies on a physical volume this one does not know"
                    )));
                }
                let (Some(start), Some(count), Ok(first)) = (
                    seg.num("start_extent"),
                    seg.num("extent_count"),
                    u64::try_from(*first),
                ) else {
                    return Err(bad(format!("logical volume {name}'s segment is not valid")));
                };
                segs.push((start, first, count));
            }
            segs.sort_unstable();
            // the segments must tile the LV from its first extent
            let mut next = 0u64;
            for &(start, _, count) in &segs {
                if start != next || count == 0 {
                    return Err(bad(format!(
                        "logical volume {name}'s segments do not follow each other"
                    )));
                }
                next = start.saturating_add(count);
            }
            lvs.push(Lv {
                name: name.to_string(),
                segments: segs.into_iter().map(|(_, f, c)| (f, c)).collect(),
            });
        }
    }
    // no extent used twice, none past the PV's last
    let mut used: Vec<(u64, u64, &str)> = lvs
        .iter()
        .flat_map(|lv| {
            lv.segments
                .iter()
                .map(move |&(f, c)| (f, c, lv.name.as_str()))
        })
        .collect();
    used.sort_unstable();
    let mut end = 0u64;
    for &(f, c, name) in &used {
        if f < end || f.checked_add(c).is_none_or(|e| e > pe_count) {
            return Err(bad(format!(
                "logical volume {name}'s extents overlap another's or pass the volume's end"
            )));
        }
        end = f + c;
    }
    Ok(Vg {
        extent,
        pe_start,
        pe_count,
        lvs,
    })
}

/// The current metadata text of the PV on `dev`, whose label is `label` (at sector
/// `label_sector`): from the first metadata area the PV header lists.
fn metadata_text(
    dev: &dyn BlockDev,
    label: &[u8],
) -> Result<std::result::Result<String, MapError>> {
    if le32(label, 16) != label.get(20..).map(lvm2_crc) {
        return Ok(Err(bad("its label's checksum does not match")));
    }
    let Some(hdr) = le32(label, 20).and_then(|o| usize::try_from(o).ok()) else {
        return Ok(Err(bad("its label is not valid")));
    };
    // the PV header: UUID (32), device size (8), data areas, then metadata areas, each list
    // ended by a zero entry
    let mut at = hdr + 40;
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            let (Some(off), Some(size)) = (le64(label, at), le64(label, at + 8)) else {
                return Ok(Err(bad("its physical volume header is cut short")));
            };
            at += 16;
            if off == 0 && size == 0 {
                break;
            }
            if list.len() == MAX_AREAS {
                return Ok(Err(bad("its physical volume header lists too many areas")));
            }
            list.push((off, size));
        }
    }
    let Some(&(mda, mda_size)) = lists[1].first() else {
        return Ok(Err(bad(
            "it holds no metadata area, so its logical volumes cannot be read",
        )));
    };
    if mda_size <= MDA_HEADER || mda.checked_add(mda_size).is_none_or(|e| e > dev.len()) {
        return Ok(Err(bad("its metadata area lies outside the volume")));
    }
    let h = read_vec(dev, mda, MDA_HEADER as usize)?;
    if !has(&h, 4, MDA_MAGIC) || le32(&h, 20) != Some(1) || le64(&h, 24) != Some(mda) {
        return Ok(Err(bad("its metadata area's header is not valid")));
    }
    if le32(&h, 0) != h.get(4..).map(lvm2_crc) {
        return Ok(Err(bad("its metadata area's checksum does not match")));
    }
    let (off, size, crc) = (
        le64(&h, 40).unwrap_or(0),
        le64(&h, 48).unwrap_or(0),
        le32(&h, 56).unwrap_or(0),
    );
    let ring = mda_size - MDA_HEADER;
    if size == 0 || size > ring.min(MAX_TEXT) || off < MDA_HEADER || off >= mda_size {
        return Ok(Err(bad("its metadata area holds no valid metadata")));
    }
    // the text may wrap from the area's end to just after its header
    let first = size.min(mda_size - off);
    let mut text = read_vec(dev, mda + off, first as usize)?;
    if first < size {
        text.extend(read_vec(dev, mda + MDA_HEADER, (size - first) as usize)?);
    }
    if lvm2_crc(&text) != crc {
        return Ok(Err(bad("its metadata text's checksum does not match")));
    }
    // the text ends with a NUL
    while text.last() == Some(&0) {
        text.pop();
    }
    match String::from_utf8(text) {
        Ok(t) => Ok(Ok(t)),
        Err(_) => Ok(Err(bad("its metadata text is not valid UTF-8"))),
    }
}

/// One logical volume as a device: its extents on the PV, in order.
struct LvDev<'a> {
    pv: &'a dyn BlockDev,
    /// (first byte on the PV, bytes), in LV order.
    pieces: Vec<(u64, u64)>,
    len: u64,
}

impl LvDev<'_> {
    /// Calls `f(pv_offset, lv_offset_in_range, len)` for each piece of `offset..offset+len`.
    fn each(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(u64, u64, u64) -> Result<()>,
    ) -> Result<()> {
        let (mut lv_at, end) = (0u64, offset + len);
        for &(pv_at, n) in &self.pieces {
            let (s, e) = (offset.max(lv_at), end.min(lv_at + n));
            if s < e {
                f(pv_at + (s - lv_at), s - offset, e - s)?;
            }
            lv_at += n;
        }
        Ok(())
    }
}

impl BlockDev for LvDev<'_> {
    fn geometry(&self) -> Geometry {
        let g = self.pv.geometry();
        Geometry {
            size_bytes: self.len,
            ..g
        }
    }
    fn path(&self) -> &Path {
        self.pv.path()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(self.path(), offset, buf.len(), self.len)?;
        self.each(offset, buf.len() as u64, |pv_at, at, n| {
            self.pv
                .read_at(&mut buf[at as usize..(at + n) as usize], pv_at)
        })
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> Result<()> {
        Err(crate::error::Error::ReadOnly {
            path: self.path().to_path_buf(),
        })
    }
    fn sync(&self) -> Result<()> {
        Ok(())
    }
}

/// The used-block map of the LVM2 physical volume on `dev` (see the module docs).
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    let head = read_vec(dev, 0, (4 * 512).min(dev.len()) as usize)?;
    let Some((_, label)) = find_label(&head) else {
        return Ok(Err(bad("its label is not valid")));
    };
    let text = try_map!(metadata_text(dev, label)?);
    let Some(id) = pv_id(label) else {
        return Ok(Err(bad("its label's UUID is not valid")));
    };
    let vg = try_map!(volume_group(&text, &id));
    let data_end = vg
        .pe_count
        .checked_mul(vg.extent)
        .and_then(|b| b.checked_add(vg.pe_start))
        .filter(|&e| e <= dev.len());
    let Some(data_end) = data_end else {
        return Ok(Err(bad(format!(
            "its metadata gives it more extents than the partition holds ({} bytes)",
            dev.len()
        ))));
    };
    let mut ranges: Vec<(u64, u64)> = vec![(0, vg.pe_start)];
    for lv in &vg.lvs {
        let pieces: Vec<(u64, u64)> = lv
            .segments
            .iter()
            .map(|&(first, count)| (vg.pe_start + first * vg.extent, count * vg.extent))
            .collect();
        let len = pieces.iter().map(|p| p.1).sum();
        let lvdev = LvDev {
            pv: dev,
            pieces,
            len,
        };
        let used = match super::map_filesystem(&lvdev)?.used {
            Used::Ranges { ranges } => ranges,
            Used::All { .. } => vec![(0, len)],
        };
        for (s, l) in used {
            lvdev.each(s, l, |pv_at, _, n| {
                ranges.push((pv_at, n));
                Ok(())
            })?;
        }
    }
    if data_end < dev.len() {
        ranges.push((data_end, dev.len() - data_end));
    }
    ranges.retain(|r| r.1 > 0);
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, l) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.0 + last.1 => last.1 = last.1.max(s + l - last.0),
            _ => merged.push((s, l)),
        }
    }
    Ok(Ok(UsedMap {
        ranges: merged,
        reason_unsafe: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::detect::detect;
    use crate::fsmap::testutil::*;

    /// 1 MiB holding an LVM2 PV label in sector 1 with PV UUID `pv`.
    fn lvm2_image(pv: &[u8; 32]) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        let l = &mut d[512..1024];
        put(l, 0, b"LABELONE");
        put(l, 8, &1u64.to_le_bytes());
        put(l, 20, &32u32.to_le_bytes());
        put(l, 24, b"LVM2 001");
        put(l, 32, pv);
        put(l, 64, &(1u64 << 20).to_le_bytes()); // device size
        let crc = lvm2_crc(&l[20..]);
        put(l, 16, &crc.to_le_bytes());
        d
    }

    #[test]
    fn lvm2_hand_built() {
        let info = detect(&mem(lvm2_image(b"abcdefGHIJKL0123456789mnopqrstuv"))).unwrap();
        assert_eq!(
            info,
            Some(FsInfo {
                kind: FsKind::Lvm2,
                label: None,
                uuid: Some("abcdef-GHIJ-KL01-2345-6789-mnop-qrstuv".into()),
                used_bytes: None,
            })
        );
        let mut bad_crc = lvm2_image(b"abcdefGHIJKL0123456789mnopqrstuv");
        bad_crc[512 + 100] ^= 1;
        let info = detect(&mem(bad_crc)).unwrap().unwrap();
        assert_eq!((info.kind, info.uuid), (FsKind::Lvm2, None));
        let mut wrong_sector = lvm2_image(b"abcdefGHIJKL0123456789mnopqrstuv");
        put(&mut wrong_sector, 512 + 8, &2u64.to_le_bytes());
        assert_eq!(detect(&mem(wrong_sector)).unwrap(), None);
    }

    #[test]
    fn lvm2_hand_built_matches_blkid() {
        let img = image_from(&lvm2_image(b"Zq3xY7AbCdEfGhIjKlMnOpQrStUvWx01"));
        // libblkid skips RAID-type probes on very small devices
        std::fs::OpenOptions::new()
            .write(true)
            .open(&img.path)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let info = detect_file(&img.path).unwrap();
        assert_eq!(
            info.uuid.as_deref(),
            Some("Zq3xY7-AbCd-EfGh-IjKl-MnOp-QrSt-UvWx01")
        );
        assert_like_blkid(&img.path, &info);
    }

    /// Metadata text for a VG with extent size 8 sectors (4 KiB) on PV `pv0` (id `PV_ID`),
    /// `pe_start` 2048 sectors, `pe_count` 1000, and the logical volumes `lvs`.
    fn vg_text(lvs: &str) -> String {
        format!(
            "contents = \"Text Format Volume Group\"\nversion = 1\n\n# a comment\nlbvg {{\n\tid = \"x\"\n\tseqno = 3\n\textent_size = 8\t# 4 KiB\n\tphysical_volumes {{\n\t\tpv0 {{\n\t\t\tid = \"{PV_ID}\"\n\t\t\tdevice = \"/dev/sda2\"\n\t\t\tstatus = [\"ALLOCATABLE\"]\n\t\t\tdev_size = 16384\n\t\t\tpe_start = 2048\n\t\t\tpe_count = 1000\n\t\t}}\n\t}}\n\tlogical_volumes {{\n{lvs}\t}}\n}}\ncreation_time = 1700000000\n"
        )
    }

    const PV_ID: &str = "abcdef-GHIJ-KL01-2345-6789-mnop-qrstuv";

    fn lv(name: &str, segs: &[(u64, u64, u64)]) -> String {
        let mut t = format!(
            "\t\t{name} {{\n\t\t\tid = \"y\"\n\t\t\tsegment_count = {}\n",
            segs.len()
        );
        for (i, (start, count, first)) in segs.iter().enumerate() {
            t.push_str(&format!(
                "\t\t\tsegment{} {{\n\t\t\t\tstart_extent = {start}\n\t\t\t\textent_count = {count}\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", {first}\n\t\t\t\t]\n\t\t\t}}\n",
                i + 1
            ));
        }
        t.push_str("\t\t}\n");
        t
    }

    /// An 8 MiB PV: the label, one metadata area at 4 KiB holding `text`, extents from 1 MiB.
    fn pv_image(text: &str) -> Vec<u8> {
        let mut d = lvm2_image(b"abcdefGHIJKL0123456789mnopqrstuv");
        d.resize(8 << 20, 0);
        {
            let l = &mut d[512..1024];
            // data area at 1 MiB (size 0: to the end), then the metadata area at 4 KiB
            put(l, 72, &(1u64 << 20).to_le_bytes());
            put(l, 104, &4096u64.to_le_bytes());
            put(l, 112, &((1u64 << 20) - 4096).to_le_bytes());
            let crc = lvm2_crc(&l[20..]);
            put(l, 16, &crc.to_le_bytes());
        }
        let mut body = text.as_bytes().to_vec();
        body.push(0);
        let mut h = vec![0u8; 512];
        put(&mut h, 4, MDA_MAGIC);
        put(&mut h, 20, &1u32.to_le_bytes());
        put(&mut h, 24, &4096u64.to_le_bytes());
        put(&mut h, 32, &((1u64 << 20) - 4096).to_le_bytes());
        put(&mut h, 40, &512u64.to_le_bytes());
        put(&mut h, 48, &(body.len() as u64).to_le_bytes());
        put(&mut h, 56, &lvm2_crc(&body).to_le_bytes());
        let crc = lvm2_crc(&h[4..]);
        put(&mut h, 0, &crc.to_le_bytes());
        put(&mut d, 4096, &h);
        put(&mut d, 4096 + 512, &body);
        d
    }

    fn map(d: Vec<u8>) -> std::result::Result<UsedMap, MapError> {
        used_map(&mem(d)).unwrap()
    }

    #[test]
    fn the_metadata_text_parses_like_lvm_writes_it() {
        let t = parse(&vg_text(&lv("root", &[(0, 10, 5)]))).unwrap();
        let vg = t.get("lbvg").unwrap();
        assert_eq!(vg.num("extent_size"), Some(8));
        let pv = vg.get("physical_volumes").unwrap().get("pv0").unwrap();
        assert_eq!(pv.text("id"), Some(PV_ID));
        assert_eq!(
            pv.get("status"),
            Some(&Value::List(vec![Value::Str("ALLOCATABLE".into())]))
        );
        for broken in ["a {", "a = [1, 2", "a = \"x", "= 3", "a 3", "a { b = }"] {
            assert!(parse(broken).is_err(), "{broken}");
        }
        assert!(parse(&"a { ".repeat(40)).is_err(), "deep nesting");
    }

    #[test]
    fn logical_volumes_are_mapped_extent_by_extent() {
        // root: PV extents 10..20 then 5..10 (out of order), "other" 100..104; their payloads
        // are no known filesystem, so both are copied whole; free extents are not copied
        // (tests/root_lvm.rs maps real filesystems inside LVs)
        let lvs = lv("root", &[(0, 10, 10), (10, 5, 5)]) + &lv("other", &[(0, 4, 100)]);
        let m = map(pv_image(&vg_text(&lvs))).unwrap();
        let (mib, x) = (1u64 << 20, 4096u64);
        assert_eq!(
            m.ranges,
            vec![
                (0, mib),
                (mib + 5 * x, 15 * x),
                (mib + 100 * x, 4 * x),
                // past the last extent (1000 of them): a second metadata area's place
                (mib + 1000 * x, (8 << 20) - mib - 1000 * x),
            ]
        );
    }

    #[test]
    fn what_cannot_be_mapped_is_refused_with_the_reason() {
        let ok = vg_text(&lv("root", &[(0, 10, 0)]));
        assert!(map(pv_image(&ok)).is_ok());
        let cases: Vec<(String, &str)> = vec![
            (
                ok.replace("type = \"striped\"", "type = \"thin-pool\""),
                "thin-pool",
            ),
            (
                ok.replace("stripe_count = 1", "stripe_count = 2"),
                "multi-stripe",
            ),
            (
                ok.replace(
                    "pv0 {",
                    "pv1 { id = \"z\" pe_start = 1 pe_count = 1 }\n\t\tpv0 {",
                ),
                "2 physical volumes",
            ),
            (
                ok.replace(PV_ID, "zzzzzz-GHIJ-KL01-2345-6789-mnop-qrstuv"),
                "another physical volume",
            ),
            (
                vg_text(&(lv("a", &[(0, 10, 0)]) + &lv("b", &[(0, 10, 5)]))),
                "overlap",
            ),
            (vg_text(&lv("a", &[(0, 10, 995)])), "overlap"),
            (
                vg_text(&lv("a", &[(0, 10, 0), (12, 3, 20)])),
                "do not follow",
            ),
            (
                ok.replace("pe_count = 1000", "pe_count = 4000"),
                "more extents",
            ),
            (
                ok.replace("extent_size = 8", "extent_size = 0"),
                "extent size",
            ),
            (ok.replace("lbvg {", "lbvg {{"), "cannot be read"),
        ];
        for (text, says) in cases {
            let e = map(pv_image(&text)).unwrap_err().to_string();
            assert!(e.contains(says), "{e} (wanted {says:?})");
        }
        // checksums
        let mut d = pv_image(&ok);
        d[4096 + 512 + 30] ^= 1;
        assert!(map(d).unwrap_err().to_string().contains("text's checksum"));
        let mut d = pv_image(&ok);
        d[4096 + 100] ^= 1;
        assert!(map(d).unwrap_err().to_string().contains("area's checksum"));
    }

    #[test]
    fn fuzzed_lvm_metadata_never_panics() {
        let text = vg_text(&lv("root", &[(0, 10, 10), (10, 5, 5)]));
        let img = image_from(&pv_image(&text));
        fuzz_map(&img.path, used_map, 300, 0x1F2E);
    }
}
