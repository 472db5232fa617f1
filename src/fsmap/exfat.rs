//! exFAT: recognised by its boot sector (label and the allocation bitmap's location from the
//! root directory, serial as UUID, used bytes from the allocation bitmap), and mapped by its
//! allocation bitmap.
//!
//! The map ([`used_map`]): everything before the cluster heap (boot regions, FAT) and every
//! cluster the first allocation bitmap marks allocated. Made only when the boot region's
//! checksum verifies, the geometry fits the partition, the volume has one FAT (TexFAT's two
//! are not mapped), the root directory names the bitmap, and the bitmap marks its own
//! clusters and the root directory's first cluster in use; a volume marked dirty or with
//! media failures is copied whole (its bitmap may be stale).
//!
//! `used_bytes` is the area before the cluster heap plus allocated clusters × cluster size,
//! counted in the first allocation bitmap, and only when the boot-region checksum verifies and
//! the bitmap is at most [`BITMAP_MAX_BYTES`]. The root directory is scanned for at most
//! [`DIR_SCAN_BYTES`] along at most [`CHAIN_MAX`] clusters.
//!
//! Units: offsets and sizes in bytes; clusters are numbered from 2 as on disk.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{
    fat_serial, read_exact_soft, scan_dir, utf16_label, CHAIN_MAX, COUNT_CHUNK, DIR_SCAN_BYTES,
};
use super::{MapError, MapResult, UsedMap};
use crate::blockdev::{read_clamped, read_vec, BlockDev};
use crate::bytes::{arr, byte, field, has, le16, le32, le64};
use crate::error::Result;

/// exFAT is recognised and mapped.
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

/// Largest exFAT allocation bitmap (bytes) counted for `used_bytes`.
const BITMAP_MAX_BYTES: u64 = 32 << 20;

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let bs = read_clamped(dev, 0, 512)?;
    Ok(parse_exfat(dev, &bs))
}

/// Geometry of an exFAT volume, from its boot sector.
struct Exfat {
    sector: u64,
    cluster: u64,
    fat_offset: u64,
    heap_offset: u64,
    cluster_count: u32,
}

impl Exfat {
    fn cluster_offset(&self, c: u32) -> Option<u64> {
        if c < 2 || c > self.cluster_count.checked_add(1)? {
            return None;
        }
        let index = u64::from(c - 2);
        self.heap_offset
            .checked_add(index.checked_mul(self.cluster)?)
    }

    fn next_cluster(&self, dev: &dyn BlockDev, c: u32) -> Option<u32> {
        let at = self.fat_offset.checked_add(u64::from(c).checked_mul(4)?)?;
        let entry = read_exact_soft(dev, at, 4)?;
        le32(&entry, 0)
    }
}

/// The geometry in an exFAT boot sector, if it is one.
fn geometry(bs: &[u8]) -> Option<Exfat> {
    if !has(bs, 3, b"EXFAT   ") || !has(bs, 0, &[0xEB, 0x76, 0x90]) || !has(bs, 510, &[0x55, 0xAA])
    {
        return None;
    }
    if field(bs, 11, 53)?.iter().any(|&b| b != 0) {
        return None;
    }
    let sector_shift = u32::from(byte(bs, 108)?);
    let cluster_shift = u32::from(byte(bs, 109)?);
    // sectors 512..4096 bytes, clusters up to 32 MiB (exFAT specification §3.1.14–15)
    if !(9..=12).contains(&sector_shift) || sector_shift + cluster_shift > 25 {
        return None;
    }
    let sector = 1u64 << sector_shift;
    Some(Exfat {
        sector,
        cluster: sector << cluster_shift,
        fat_offset: u64::from(le32(bs, 80)?).checked_mul(sector)?,
        heap_offset: u64::from(le32(bs, 88)?).checked_mul(sector)?,
        cluster_count: le32(bs, 92)?,
    })
}

fn parse_exfat(dev: &dyn BlockDev, bs: &[u8]) -> Option<FsInfo> {
    let geo = geometry(bs)?;
    let root = le32(bs, 96)?;
    let dir = exfat_scan_root(dev, &geo, root);
    let used_bytes = match dir.bitmap {
        Some((first, len)) if exfat_checksum_ok(dev, &geo) => exfat_used(dev, &geo, first, len),
        _ => None,
    };
    Some(FsInfo {
        kind: FsKind::Exfat,
        label: dir.label,
        uuid: fat_serial(arr(bs, 100)?),
        used_bytes,
    })
}

/// The boot-region checksum (exFAT specification §3.4): sectors 0–10, skipping VolumeFlags and
/// PercentInUse, must match every 32-bit word of sector 11.
fn exfat_checksum_ok(dev: &dyn BlockDev, geo: &Exfat) -> bool {
    let Some(region) = read_exact_soft(dev, 0, geo.sector * 12) else {
        return false;
    };
    let split = (geo.sector * 11) as usize; // at most 11 × 4096
    let (summed, expected) = region.split_at(split.min(region.len()));
    let mut sum: u32 = 0;
    for (i, &b) in summed.iter().enumerate() {
        if matches!(i, 106 | 107 | 112) {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(u32::from(b));
    }
    expected.chunks_exact(4).all(|w| le32(w, 0) == Some(sum))
}

#[derive(Default)]
struct ExfatRoot {
    label: Option<String>,
    /// First cluster and length in bytes of the first allocation bitmap.
    bitmap: Option<(u32, u64)>,
}

fn exfat_scan_root(dev: &dyn BlockDev, geo: &Exfat, root: u32) -> ExfatRoot {
    let mut found = ExfatRoot::default();
    let mut have_label = false;
    let mut visit = |e: &[u8]| -> bool {
        match byte(e, 0) {
            None | Some(0x00) => return true, // end of directory
            Some(0x83) => {
                let chars = usize::from(byte(e, 1).unwrap_or(0)).min(11);
                found.label = field(e, 2, chars * 2).and_then(|raw| utf16_label(raw, false));
                have_label = true;
            }
            // first allocation bitmap (BitmapFlags bit 0 clear)
            Some(0x81) if found.bitmap.is_none() && byte(e, 1).unwrap_or(1) & 1 == 0 => {
                found.bitmap = le32(e, 20).zip(le64(e, 24));
            }
            _ => {}
        }
        have_label && found.bitmap.is_some()
    };
    let mut budget = DIR_SCAN_BYTES;
    let mut cluster = root;
    for _ in 0..CHAIN_MAX {
        let Some(at) = geo.cluster_offset(cluster) else {
            break;
        };
        if scan_dir(dev, at, geo.cluster, &mut budget, &mut visit) {
            break;
        }
        match geo.next_cluster(dev, cluster) {
            Some(next) => cluster = next,
            None => break,
        }
    }
    found
}

/// Heap offset plus allocated clusters, counted in the allocation bitmap. The bitmap is read as
/// one contiguous run from its first cluster, as the Linux exfat driver does.
fn exfat_used(dev: &dyn BlockDev, geo: &Exfat, first: u32, len: u64) -> Option<u64> {
    let count = u64::from(geo.cluster_count);
    if count.div_ceil(8) > BITMAP_MAX_BYTES {
        return None;
    }
    let at = bitmap_offset(geo, first, len)?;
    let mut allocated = 0u64;
    let whole = read_bitmap(dev, at, count, |_, chunk| {
        allocated += chunk
            .iter()
            .map(|&b| u64::from(b.count_ones()))
            .sum::<u64>();
    });
    if !whole.ok()? {
        return None;
    }
    geo.heap_offset
        .checked_add(allocated.checked_mul(geo.cluster)?)
}

/// Where the allocation bitmap that starts at cluster `first` and is `len` bytes long begins
/// (bytes), if that cluster is in the heap and the bitmap has a bit for every cluster.
fn bitmap_offset(geo: &Exfat, first: u32, len: u64) -> Option<u64> {
    if u64::from(geo.cluster_count).div_ceil(8) > len {
        return None;
    }
    geo.cluster_offset(first)
}

/// Reads the allocation bitmap at `at` (bytes) for `count` clusters, in reads of at most
/// [`COUNT_CHUNK`] bytes, and gives `visit` each read's index of its first byte in the bitmap
/// and its bytes, with the bits past `count` in the last byte cleared. `Ok(false)` when the
/// bitmap runs past the end of `dev` (what was read before has been visited).
fn read_bitmap(
    dev: &dyn BlockDev,
    at: u64,
    count: u64,
    mut visit: impl FnMut(u64, &[u8]),
) -> Result<bool> {
    let need = count.div_ceil(8);
    let mut done = 0u64;
    while done < need {
        let n = (need - done).min(COUNT_CHUNK);
        let Some(from) = at.checked_add(done) else {
            return Ok(false);
        };
        let mut chunk = read_clamped(dev, from, n as usize)?;
        if chunk.len() as u64 != n {
            return Ok(false);
        }
        done += n;
        if done == need && !count.is_multiple_of(8) {
            if let Some(last) = chunk.last_mut() {
                *last &= (1u8 << (count % 8)) - 1;
            }
        }
        visit(done - n, &chunk);
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// the used-block map

fn bad<T>(why: impl Into<String>) -> MapResult<T> {
    Ok(Err(MapError(why.into(), "exfat")))
}

/// The used-block map of the exFAT volume on `dev` (see the module docs).
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    let bs = read_vec(dev, 0, 512)?;
    let Some(geo) = geometry(&bs) else {
        return bad("the boot sector is not valid");
    };
    if !exfat_checksum_ok(dev, &geo) {
        return bad("the boot region's checksum does not match");
    }
    if byte(&bs, 110) != Some(1) {
        return bad("it has two FATs (TexFAT), which this version does not map");
    }
    let num = |v: Option<u32>| u64::from(v.unwrap_or(0));
    let fat_len = num(le32(&bs, 84)) * geo.sector;
    let volume_len = le64(&bs, 72).unwrap_or(u64::MAX).checked_mul(geo.sector);
    let count = u64::from(geo.cluster_count);
    let heap_end = geo.heap_offset + count * geo.cluster;
    let fits = geo.fat_offset >= 24 * geo.sector
        && geo.fat_offset + fat_len <= geo.heap_offset
        && count > 0
        && volume_len.is_some_and(|v| heap_end <= v && v <= dev.len());
    if !fits {
        return bad(format!(
            "its geometry does not fit together or in its partition ({} bytes)",
            dev.len()
        ));
    }
    let root = le32(&bs, 96).unwrap_or(0);
    let Some(root_at) = geo.cluster_offset(root) else {
        return bad(format!(
            "its root directory cluster ({root}) is outside the heap"
        ));
    };
    let Some((first, len)) = exfat_scan_root(dev, &geo, root).bitmap else {
        return bad("its root directory names no allocation bitmap");
    };
    let need = count.div_ceil(8);
    let bitmap_at = bitmap_offset(&geo, first, len);
    let Some(bitmap_at) = bitmap_at.filter(|&a| a + need <= heap_end) else {
        return bad(format!(
            "its allocation bitmap (cluster {first}, {len} bytes) does not fit {count} clusters"
        ));
    };
    // the allocated runs of clusters, as byte ranges; the area before the heap is used
    let mut ranges: Vec<(u64, u64)> = vec![(0, geo.heap_offset)];
    let mut run: Option<u64> = None; // first cluster index of the open run
    let whole = read_bitmap(dev, bitmap_at, count, |done, chunk| {
        for (i, &b) in chunk.iter().enumerate() {
            if (b == 0 && run.is_none()) || (b == 0xFF && run.is_some()) {
                continue; // the common cases: a whole byte that changes nothing
            }
            for bit in 0..8u64 {
                let index = (done + i as u64) * 8 + bit;
                if index >= count {
                    break;
                }
                match (b >> bit & 1 == 1, run) {
                    (true, None) => run = Some(index),
                    (false, Some(s)) => {
                        push_run(&mut ranges, &geo, s, index);
                        run = None;
                    }
                    _ => {}
                }
            }
        }
    })?;
    if !whole {
        // not reached: the heap, and so the bitmap, was checked to end inside `dev`
        return bad("its allocation bitmap runs past the end of the partition");
    }
    if let Some(s) = run {
        push_run(&mut ranges, &geo, s, count);
    }
    // the bitmap's own clusters and the root directory's first are allocated
    let in_use = |at: u64, len: u64| ranges.iter().any(|&(s, l)| s <= at && at + len <= s + l);
    if !in_use(bitmap_at, len.div_ceil(geo.cluster) * geo.cluster) || !in_use(root_at, geo.cluster)
    {
        return bad("its allocation bitmap does not mark itself and the root directory in use");
    }
    let flags = le16(&bs, 106).unwrap_or(0);
    let reason_unsafe = if flags & 0x2 != 0 {
        Some("the exFAT volume is marked dirty (not cleanly unmounted), so its allocation bitmap is not trusted".to_owned())
    } else if flags & 0x4 != 0 {
        Some(
            "the exFAT volume reports media failures, so its allocation bitmap is not trusted"
                .to_owned(),
        )
    } else {
        None
    };
    Ok(Ok(UsedMap {
        ranges,
        reason_unsafe,
    }))
}

/// Adds the clusters `from..to` (indices from 0, cluster 2 on disk) to `ranges`.
fn push_run(ranges: &mut Vec<(u64, u64)>, geo: &Exfat, from: u64, to: u64) {
    let (s, l) = (
        geo.heap_offset + from * geo.cluster,
        (to - from) * geo.cluster,
    );
    match ranges.last_mut() {
        Some(last) if last.0 + last.1 == s => last.1 += l,
        _ => ranges.push((s, l)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;
    use std::process::Command;

    #[test]
    fn exfat_image_matches_blkid_and_dump() {
        let Some((img, info)) = mkfs_case(64 << 20, "mkfs.exfat", &["-L", "ExLab"]) else {
            return;
        };
        assert_eq!(
            (info.kind, info.label.as_deref()),
            (FsKind::Exfat, Some("ExLab"))
        );
        assert!(info.uuid.is_some());
        let Some(dump) = tool("dump.exfat") else {
            return;
        };
        let text = output(Command::new(dump).arg(&img.path));
        let sector = 1u64 << kv(&text, "Sector Size Bits");
        let heap = kv(&text, "Cluster Heap Offset (sector offset)") * sector;
        let used = kv(&text, "Total Clusters") - kv(&text, "Free Clusters");
        assert_eq!(
            info.used_bytes,
            Some(heap + used * kv(&text, "Cluster size"))
        );
        // a damaged boot-region checksum keeps the kind and label, not the count
        patch(&img.path, 0x70, &[0x01]);
        patch(&img.path, 0x1F0, &[0xAB]);
        let damaged = detect_file(&img.path).unwrap();
        assert_eq!(
            (damaged.kind, damaged.label.as_deref(), damaged.used_bytes),
            (FsKind::Exfat, Some("ExLab"), None)
        );
    }

    fn map_of(path: &std::path::Path) -> MapResult<UsedMap> {
        let dev = crate::blockdev::FileDev::open(path, crate::blockdev::OpenMode::Read).unwrap();
        used_map(&dev)
    }

    /// `dump.exfat`'s geometry of `img`: (sector, cluster, heap offset, total and free clusters).
    fn dump(img: &std::path::Path) -> Option<(u64, u64, u64, u64, u64)> {
        let text = output(Command::new(tool("dump.exfat")?).arg(img));
        let sector = 1u64 << kv(&text, "Sector Size Bits");
        Some((
            sector,
            kv(&text, "Cluster size"),
            kv(&text, "Cluster Heap Offset (sector offset)") * sector,
            kv(&text, "Total Clusters"),
            kv(&text, "Free Clusters"),
        ))
    }

    #[test]
    fn exfat_maps_follow_the_allocation_bitmap() {
        for (name, args) in [
            ("4 KiB clusters", &["-L", "ExMap"][..]),
            (
                "32 KiB clusters, packed bitmap",
                &["-c", "32K", "--pack-bitmap"][..],
            ),
        ] {
            let Some((img, _)) = mkfs_case(64 << 20, "mkfs.exfat", args) else {
                return;
            };
            let Some((_, cluster, heap, total, free)) = dump(&img.path) else {
                return;
            };
            let m = map_of(&img.path)
                .unwrap()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.reason_unsafe, None, "{name}");
            let used: u64 = m.ranges.iter().map(|r| r.1).sum();
            assert_eq!(used, heap + (total - free) * cluster, "{name}");
            assert_eq!(m.ranges[0].0, 0, "{name}");
            // mark clusters 100..=102 and 200 allocated (bits 98..=100 and 198) by hand
            let bs = read_prefix(&img.path, 512);
            let geo = geometry(&bs).unwrap();
            let root = exfat_scan_root(
                &crate::blockdev::FileDev::open(&img.path, crate::blockdev::OpenMode::Read)
                    .unwrap(),
                &geo,
                le32(&bs, 96).unwrap(),
            );
            let at = geo.cluster_offset(root.bitmap.unwrap().0).unwrap();
            let mut bitmap = read_prefix(&img.path, at + 32)[at as usize..].to_vec();
            for bit in [98usize, 99, 100, 198] {
                bitmap[bit / 8] |= 1 << (bit % 8);
            }
            patch(&img.path, at, &bitmap);
            let m2 = map_of(&img.path).unwrap().unwrap();
            let c = |i: u64| heap + (i - 2) * cluster;
            assert!(
                m2.ranges.contains(&(c(100), 3 * cluster)),
                "{name}: {:?}",
                m2.ranges
            );
            assert!(
                m2.ranges.contains(&(c(200), cluster)),
                "{name}: {:?}",
                m2.ranges
            );
            let used2: u64 = m2.ranges.iter().map(|r| r.1).sum();
            assert_eq!(used2, used + 4 * cluster, "{name}");
        }
    }

    #[test]
    fn exfat_maps_refuse_what_they_cannot_prove() {
        let Some((img, _)) = mkfs_case(64 << 20, "mkfs.exfat", &["-L", "ExBad"]) else {
            return;
        };
        assert!(map_of(&img.path).unwrap().is_ok());
        let orig = read_prefix(&img.path, 12 * 512);
        let refused = |says: &str| match map_of(&img.path).unwrap() {
            Ok(m) => panic!("mapped ({} ranges), wanted {says:?}", m.ranges.len()),
            Err(e) => assert!(e.to_string().contains(says), "{e} (wanted {says:?})"),
        };
        // a boot sector edit the checksum does not cover
        patch(&img.path, 92, &0x7FFF_FFFFu32.to_le_bytes());
        refused("checksum");
        patch(&img.path, 0, &orig);
        // dirty: copied whole, with the reason (VolumeFlags is outside the checksum)
        patch(&img.path, 106, &[0x02]);
        let m = map_of(&img.path).unwrap().unwrap();
        assert!(m.reason_unsafe.unwrap().contains("dirty"));
        patch(&img.path, 0, &orig);
        // a bitmap that does not mark itself in use
        let bs = read_prefix(&img.path, 512);
        let geo = geometry(&bs).unwrap();
        let dev =
            crate::blockdev::FileDev::open(&img.path, crate::blockdev::OpenMode::Read).unwrap();
        let (first, _) = exfat_scan_root(&dev, &geo, le32(&bs, 96).unwrap())
            .bitmap
            .unwrap();
        drop(dev);
        let at = geo.cluster_offset(first).unwrap();
        let bitmap = read_prefix(&img.path, at + 4096)[at as usize..].to_vec();
        patch(&img.path, at, &vec![0u8; 4096]);
        refused("does not mark itself");
        patch(&img.path, at, &bitmap);
        // a volume larger than its partition
        let short = BytesDev(&read_prefix(&img.path, 32 << 20)[..]).0.to_vec();
        let e = used_map(&BytesDev(&short)).unwrap().unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        assert!(
            map_of(&img.path).unwrap().is_ok(),
            "the image is whole again"
        );
    }

    #[test]
    fn fuzzed_exfat_metadata_never_panics() {
        let Some((img, _)) = mkfs_case(64 << 20, "mkfs.exfat", &["-L", "ExFuzz"]) else {
            return;
        };
        fuzz_map(&img.path, used_map, 400, 0xE4FA7);
    }
}
