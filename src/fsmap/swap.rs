//! Linux swap areas, version 0 (`SWAP-SPACE`) and 1 (`SWAPSPACE2`): recognised by the signature
//! at the end of the first page (label and UUID from the version 1 header).
//!
//! The map ([`used_map`]): swap holds nothing worth keeping across a reboot, so only its first
//! and last MiB are used: the header page (signature, version, size, bad pages, UUID, label),
//! so that a restore writes a valid swap area with the same UUID and label, and the rest of
//! both MiBs so that no signature of what a target held before (a btrfs superblock at 64 KiB,
//! an md superblock at the end) is left beside it for blkid to find. A system hibernated to
//! its swap has replaced the signature (`S1SUSPEND`, TuxOnIce), is not recognised as swap and
//! is copied whole; `image --full-swap` copies swap whole too.
//!
//! The page size is not recorded, so the signature is looked for at the end of every page size
//! Linux uses (4 to 64 KiB). TuxOnIce images, which keep a swap signature behind their own
//! header, are not swap (as in libblkid).
//!
//! Units: offsets in bytes.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{text_label, uuid16};
use super::{MapError, MapResult, UsedMap};
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{arr, field, has, le32};
use crate::error::Result;

/// Swap is recognised and mapped (its header).
pub(super) const FORMAT: Format = Format {
    probe,
    map: Some(used_map),
};

/// Bytes kept at each end of a swap area.
const KEEP: u64 = 1 << 20;

const SWAP_PAGE_SIZES: [u64; 5] = [4096, 8192, 16384, 32768, 65536];
/// TuxOnIce keeps a valid swap signature behind its own header; libblkid ignores those.
const TUXONICE_MAGIC: &[u8] = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c";

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    Ok(header(dev)?.map(|h| FsInfo {
        kind: FsKind::Swap,
        label: h.label,
        uuid: h.uuid,
        used_bytes: None,
    }))
}

/// What a swap header names (version 1 only; version 0 has neither).
#[derive(Default)]
struct SwapHeader {
    label: Option<String>,
    uuid: Option<String>,
}

/// The header of the swap area on `dev`, if it is one: the signature at the end of the first
/// page of some size Linux uses, not behind a TuxOnIce header, and for version 1 a header
/// that names its version and a last page.
fn header(dev: &dyn BlockDev) -> Result<Option<SwapHeader>> {
    // libblkid's minimum: ten 4 KiB pages
    if dev.len() < 10 * 4096 {
        return Ok(None);
    }
    for page in SWAP_PAGE_SIZES {
        let sig = read_clamped(dev, page - 10, 10)?;
        let v1 = sig.as_slice() == b"SWAPSPACE2";
        if !v1 && sig.as_slice() != b"SWAP-SPACE" {
            continue;
        }
        let head = read_clamped(dev, 0, 1024 + 512)?;
        if has(&head, 0, TUXONICE_MAGIC) {
            return Ok(None);
        }
        if !v1 {
            // version 0 has neither label nor UUID
            return Ok(Some(SwapHeader::default()));
        }
        return Ok(parse_swap_v1(head.get(1024..).unwrap_or_default()));
    }
    Ok(None)
}

fn parse_swap_v1(hdr: &[u8]) -> Option<SwapHeader> {
    // version 1 in either byte order, and a last page
    let version = arr::<4>(hdr, 0)?;
    if version != [1, 0, 0, 0] && version != [0, 0, 0, 1] {
        return None;
    }
    if le32(hdr, 4)? == 0 {
        return None;
    }
    // libblkid trusts label and UUID only when padding[32..34] is clear
    if le32(hdr, 172)? != 0 || le32(hdr, 176)? != 0 {
        return Some(SwapHeader::default());
    }
    Some(SwapHeader {
        label: field(hdr, 28, 16).and_then(text_label),
        uuid: field(hdr, 12, 16).and_then(uuid16),
    })
}

/// The used-block map of the swap area on `dev` (see the module docs).
pub fn used_map(dev: &dyn BlockDev) -> MapResult<UsedMap> {
    let len = dev.len();
    if header(dev)?.is_none() {
        return Ok(Err(MapError("no swap signature".into(), "swap")));
    }
    let ranges = if len <= 2 * KEEP {
        vec![(0, len)]
    } else {
        vec![(0, KEEP), (len - KEEP, KEEP)]
    };
    Ok(Ok(UsedMap {
        ranges,
        reason_unsafe: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::detect::detect;
    use crate::fsmap::testutil::*;

    #[test]
    fn swap_v0_matches_blkid() {
        let mut d = vec![0u8; 64 << 10];
        put(&mut d, 4096 - 10, b"SWAP-SPACE");
        let img = image_from(&d);
        let info = detect_file(&img.path).unwrap();
        assert_eq!(
            (info.kind, &info.label, &info.uuid),
            (FsKind::Swap, &None, &None)
        );
        assert_like_blkid(&img.path, &info);
        // too small for swap (libblkid needs ten pages)
        assert_eq!(detect(&mem(d[..32 << 10].to_vec())).unwrap(), None);
    }

    #[test]
    fn swap_images_match_blkid() {
        for page in ["4096", "16384", "65536"] {
            let args = ["-L", "slab", "-U", UUID_A, "-p", page];
            let Some((_img, info)) = mkfs_case(64 << 20, "mkswap", &args) else {
                return;
            };
            assert_eq!(
                (info.kind, info.label.as_deref(), info.uuid.as_deref()),
                (FsKind::Swap, Some("slab"), Some(UUID_A)),
                "page size {page}"
            );
        }
    }

    #[test]
    fn swap_keeps_its_header_and_both_ends() {
        let Some((img, _)) = mkfs_case(64 << 20, "mkswap", &["-L", "slab", "-U", UUID_A]) else {
            return;
        };
        let dev =
            crate::blockdev::FileDev::open(&img.path, crate::blockdev::OpenMode::Read).unwrap();
        let m = used_map(&dev).unwrap().unwrap();
        assert_eq!(m.ranges, vec![(0, KEEP), ((64 << 20) - KEEP, KEEP)]);
        assert_eq!(m.reason_unsafe, None);
        // a small swap area is kept whole
        let mut d = vec![0u8; 64 << 10];
        put(&mut d, 4096 - 10, b"SWAP-SPACE");
        assert_eq!(
            used_map(&mem(d)).unwrap().unwrap().ranges,
            vec![(0, 64 << 10)]
        );
        // hibernated: not swap, so not mapped here (detect copies it whole)
        let mut d = vec![0u8; 4 << 20];
        put(&mut d, 4096 - 10, b"S1SUSPEND\0");
        assert!(used_map(&mem(d)).unwrap().is_err());
    }
}
