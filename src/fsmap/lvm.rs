//! LVM2 physical volumes: recognised by their `LABELONE` label (UUID only). The logical volumes
//! inside are not mapped, so every block is copied.
//!
//! The label sits in one of the first four 512-byte sectors and records its own sector number;
//! a label whose number does not match is a stale copy and ignored. The PV UUID is trusted only
//! when the label's CRC (LVM2's own CRC-32 variant) verifies.
//!
//! Units: offsets in bytes.

use super::detect::{Format, FsInfo, FsKind};
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{field, has, le32, le64};
use crate::error::Result;

/// LVM2 is recognised; it has no used-block map.
pub(super) const FORMAT: Format = Format { probe, map: None };

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let head = read_clamped(dev, 0, 4 * 512)?;
    for sector in 0..4u64 {
        let Some(label) = field(&head, sector as usize * 512, 512) else {
            break;
        };
        if !has(label, 0, b"LABELONE") || !has(label, 24, b"LVM2 001") {
            continue;
        }
        // the label records its own sector; a mismatch is a stale copy
        if le64(label, 8) != Some(sector) {
            continue;
        }
        let crc_ok = le32(label, 16) == label.get(20..).map(lvm2_crc);
        return Ok(Some(FsInfo {
            kind: FsKind::Lvm2,
            label: None,
            uuid: if crc_ok { lvm2_uuid(label) } else { None },
            used_bytes: None,
        }));
    }
    Ok(None)
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
}
