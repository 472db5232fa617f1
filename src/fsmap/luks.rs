//! LUKS encrypted volumes: recognised by their header (label and UUID only; what is inside is
//! ciphertext, so there is no used-block map and every block is copied).
//!
//! The header is at byte 0; a LUKS2 volume whose primary header was wiped is still found through
//! its secondary header, at one of the offsets cryptsetup may use. A LUKS2 header records its
//! own offset, and a copy found elsewhere is stale and ignored.
//!
//! Units: offsets in bytes.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{read_soft, text_label};
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{be16, be64, field, has};
use crate::error::Result;

/// LUKS is recognised; it has no used-block map.
pub(super) const FORMAT: Format = Format { probe, map: None };

pub(super) const LUKS_MAGIC: &[u8] = b"LUKS\xba\xbe";
const LUKS2_SECONDARY_MAGIC: &[u8] = b"SKUL\xba\xbe";
/// Where cryptsetup may put the LUKS2 secondary header (libblkid `LUKS2_HDR2_OFFSETS`).
const LUKS2_SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
];

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let hdr = read_clamped(dev, 0, 512)?;
    if has(&hdr, 0, LUKS_MAGIC) {
        if let Some(info) = parse_luks(&hdr, 0) {
            return Ok(Some(info));
        }
    }
    for off in LUKS2_SECONDARY_OFFSETS {
        if off >= dev.len() {
            break;
        }
        if let Some(h) = read_soft(dev, off, 512) {
            if has(&h, 0, LUKS2_SECONDARY_MAGIC) {
                if let Some(info) = parse_luks(&h, off) {
                    return Ok(Some(info));
                }
            }
        }
    }
    Ok(None)
}

/// Parses a LUKS header found at byte `offset` of the device.
fn parse_luks(h: &[u8], offset: u64) -> Option<FsInfo> {
    let kind = match be16(h, 6)? {
        1 if offset == 0 => FsKind::Luks1,
        // a LUKS2 header records its own offset; a copy elsewhere is stale
        2 if be64(h, 256)? == offset => FsKind::Luks2,
        _ => return None,
    };
    let label = match kind {
        FsKind::Luks2 => field(h, 24, 48).and_then(text_label),
        _ => None,
    };
    Some(FsInfo {
        kind,
        label,
        uuid: field(h, 168, 40).and_then(text_label),
        used_bytes: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::detect::detect;
    use crate::fsmap::testutil::*;

    #[test]
    fn luks_hand_built() {
        let mut d = vec![0u8; 64 << 10];
        put(&mut d, 0, LUKS_MAGIC);
        put(&mut d, 6, &2u16.to_be_bytes());
        put(&mut d, 24, b"crypt label");
        put(&mut d, 168, HAND_UUID_TEXT.as_bytes());
        let info = detect(&mem(d.clone())).unwrap().unwrap();
        assert_eq!(info.kind, FsKind::Luks2);
        assert_eq!(info.label.as_deref(), Some("crypt label"));
        assert_eq!(info.uuid.as_deref(), Some(HAND_UUID_TEXT));
        // a LUKS2 header that claims to live elsewhere is stale
        put(&mut d, 256, &0x4000u64.to_be_bytes());
        assert_eq!(detect(&mem(d.clone())).unwrap(), None);
        // ...unless it is found there, as the secondary header
        let mut second = vec![0u8; 64 << 10];
        second[0x4000..0x4000 + 512].copy_from_slice(&d[..512]);
        put(&mut second, 0x4000, LUKS2_SECONDARY_MAGIC);
        assert_eq!(detect(&mem(second)).unwrap().unwrap().kind, FsKind::Luks2);
        // unknown versions are not guessed at
        put(&mut d, 6, &3u16.to_be_bytes());
        assert_eq!(detect(&mem(d)).unwrap(), None);
    }

    #[test]
    fn luks_images_match_blkid() {
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("key");
        std::fs::write(&key, b"not a secret").unwrap();
        let key = key.to_str().unwrap();
        let fast = ["--pbkdf-force-iterations", "1000", "--key-file", key];
        let luks2 = [
            &["luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2"][..],
            &fast,
            &["--label", "myluks", "--uuid", UUID_A],
        ]
        .concat();
        let luks1 = [&["luksFormat", "-q", "--type", "luks1"][..], &fast].concat();
        let cases: [(&[&str], FsKind, Option<&str>); 2] = [
            (&luks2, FsKind::Luks2, Some("myluks")),
            (&luks1, FsKind::Luks1, None),
        ];
        for (args, kind, label) in cases {
            let Some((img, info)) = mkfs_case(32 << 20, "cryptsetup", args) else {
                return;
            };
            assert_eq!((info.kind, info.label.as_deref()), (kind, label));
            if kind == FsKind::Luks2 {
                assert_eq!(info.uuid.as_deref(), Some(UUID_A));
                // primary header wiped: found through the secondary one, like blkid
                patch(&img.path, 0, &[0u8; 512]);
                let info = detect_file(&img.path).unwrap();
                assert_eq!(info.kind, FsKind::Luks2);
                assert_like_blkid(&img.path, &info);
            }
        }
    }
}
