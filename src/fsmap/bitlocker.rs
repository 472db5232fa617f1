//! BitLocker encrypted volumes: recognised by their boot sector and their first FVE metadata
//! block. What is inside is ciphertext, so there is no used-block map and every block is
//! copied.
//!
//! Three layouts, as libblkid and cryptsetup tell them apart:
//! - Windows Vista: boot code `EB 52 90`, signature `-FVE-FS-` at 3, the first metadata
//!   block's offset at 56;
//! - Windows 7 and later: boot code `EB 58 90`, signature `-FVE-FS-` at 3, the metadata GUID
//!   at 160 and the first metadata block's offset at 176;
//! - BitLocker To Go (removable disks): `MSWIN4.1` at 3 (it looks like FAT to old readers),
//!   the metadata GUID at 424 and the first metadata block's offset at 440.
//!
//! The FVE metadata block must start with `-FVE-FS-` too, so a FAT volume formatted by an old
//! Windows (`MSWIN4.1`) is not mistaken for BitLocker To Go. blkid reports no label or UUID
//! for BitLocker, and neither does this probe.
//!
//! VeraCrypt and TrueCrypt volumes cannot be recognised: their header is encrypted, and
//! without the password it is indistinguishable from random bytes, by design. Such a
//! partition is "no known filesystem" and is copied whole like any other.
//!
//! Units: offsets in bytes.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::read_soft;
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{field, has, le64};
use crate::error::Result;

/// BitLocker is recognised; it has no used-block map.
pub(super) const FORMAT: Format = Format { probe, map: None };

const SIGNATURE: &[u8] = b"-FVE-FS-";
/// `{4967d63b-2e29-4ad8-8399-f6a339e3d001}`, the FVE metadata GUID, as stored.
const FVE_GUID: [u8; 16] = [
    0x3b, 0xd6, 0x67, 0x49, 0x29, 0x2e, 0xd8, 0x4a, 0x83, 0x99, 0xf6, 0xa3, 0x39, 0xe3, 0xd0, 0x01,
];

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let bs = read_clamped(dev, 0, 512)?;
    let meta_at = if has(&bs, 0, b"\xEB\x52\x90") && has(&bs, 3, SIGNATURE) {
        le64(&bs, 56)
    } else if has(&bs, 0, b"\xEB\x58\x90") && has(&bs, 3, SIGNATURE) {
        le64(&bs, 176)
    } else if has(&bs, 3, b"MSWIN4.1") && field(&bs, 424, 16) == Some(&FVE_GUID[..]) {
        le64(&bs, 440)
    } else {
        None
    };
    let Some(at) = meta_at.filter(|&a| a > 0 && a < dev.len()) else {
        return Ok(None);
    };
    let Some(meta) = read_soft(dev, at, 8) else {
        return Ok(None);
    };
    if !has(&meta, 0, SIGNATURE) {
        return Ok(None);
    }
    Ok(Some(FsInfo {
        kind: FsKind::Bitlocker,
        label: None,
        uuid: None,
        used_bytes: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;

    /// A 1 MiB volume in `layout` ("vista", "win7", "togo") with its metadata block at 64 KiB.
    fn bitlocker_image(layout: &str) -> Vec<u8> {
        let mut d = vec![0u8; 1 << 20];
        let meta: u64 = 64 << 10;
        match layout {
            "vista" => {
                put(&mut d, 0, b"\xEB\x52\x90-FVE-FS-");
                put(&mut d, 56, &meta.to_le_bytes());
            }
            "win7" => {
                put(&mut d, 0, b"\xEB\x58\x90-FVE-FS-");
                put(&mut d, 160, &FVE_GUID);
                put(&mut d, 176, &meta.to_le_bytes());
            }
            _ => {
                put(&mut d, 0, b"\xEB\x58\x90MSWIN4.1");
                put(&mut d, 424, &FVE_GUID);
                put(&mut d, 440, &meta.to_le_bytes());
            }
        }
        put(&mut d, 510, &[0x55, 0xAA]);
        put(&mut d, meta as usize, SIGNATURE);
        d
    }

    #[test]
    fn bitlocker_volumes_are_recognised_like_blkid_does() {
        for layout in ["vista", "win7", "togo"] {
            let img = image_from(&bitlocker_image(layout));
            let info = detect_file(&img.path).unwrap_or_else(|| panic!("{layout}: not found"));
            assert_eq!(info.kind, FsKind::Bitlocker, "{layout}");
            assert_like_blkid(&img.path, &info);
            fuzz_image(&img.path, 100);
        }
    }

    #[test]
    fn a_boot_sector_without_its_metadata_block_is_not_bitlocker() {
        for layout in ["vista", "win7", "togo"] {
            let mut d = bitlocker_image(layout);
            put(&mut d, 64 << 10, b"________");
            let info = crate::fsmap::detect(&mem(d)).unwrap();
            assert!(
                info.as_ref().is_none_or(|i| i.kind != FsKind::Bitlocker),
                "{layout}: {info:?}"
            );
        }
    }
}
