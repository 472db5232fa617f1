//! ISO 9660 (CD/DVD images), with or without Joliet: recognised by the primary volume
//! descriptor at 32 KiB (label, the volume date as UUID, and the volume size as used bytes).
//! There is no used-block map, so every block is copied; an image is usually full anyway.
//!
//! The label is the Joliet one when it says more than the primary descriptor's d-characters,
//! and the UUID is the modification date, or the creation date when that is unset, as blkid
//! prints them. At most [`ISO_MAX_DESCRIPTORS`] descriptors are read looking for Joliet.
//!
//! Units: offsets in bytes; ISO sectors are 2048 bytes.

use super::detect::{Format, FsInfo, FsKind};
use super::probe::{read_exact_soft, text_label, utf16_label};
use crate::blockdev::{read_clamped, BlockDev};
use crate::bytes::{byte, field, has, le16, le32};
use crate::error::Result;

/// ISO 9660 is recognised; it has no used-block map.
pub(super) const FORMAT: Format = Format { probe, map: None };

const ISO_PVD: u64 = 0x8000;
const ISO_SECTOR: u64 = 2048;
/// Volume descriptors examined after the primary one.
const ISO_MAX_DESCRIPTORS: u64 = 16;

fn probe(dev: &dyn BlockDev) -> Result<Option<FsInfo>> {
    let pvd = read_clamped(dev, ISO_PVD, ISO_SECTOR as usize)?;
    if !has(&pvd, 1, b"CD001") {
        return Ok(None);
    }
    let pvd_label = field(&pvd, 40, 32).unwrap_or_default();
    let label = match joliet_label(dev) {
        // use the Joliet label only when it says more than the d-character one
        Some(joliet) if !ascii_eq_utf16be(pvd_label, joliet.as_slice()) => {
            utf16_label(&joliet, true)
        }
        _ => text_label(pvd_label),
    };
    // blkid's UUID: the modification date, or the creation date when that is unset
    let uuid = match field(&pvd, 830, 17).and_then(iso_date) {
        Some(IsoDate::Unset) | None => match field(&pvd, 813, 17).and_then(iso_date) {
            Some(IsoDate::Set(u)) => u,
            _ => None,
        },
        Some(IsoDate::Set(u)) => u,
    };
    let used_bytes = match (le32(&pvd, 80), le16(&pvd, 128)) {
        (Some(blocks), Some(size)) if size.is_power_of_two() && size >= 512 => {
            u64::from(blocks).checked_mul(u64::from(size))
        }
        _ => None,
    };
    Ok(Some(FsInfo {
        kind: FsKind::Iso9660,
        label,
        uuid,
        used_bytes,
    }))
}

/// The 32-byte volume identifier of the first Joliet supplementary volume descriptor.
fn joliet_label(dev: &dyn BlockDev) -> Option<Vec<u8>> {
    for i in 1..=ISO_MAX_DESCRIPTORS {
        let vd = read_exact_soft(dev, ISO_PVD + i * ISO_SECTOR, ISO_SECTOR)?;
        if !has(&vd, 1, b"CD001") {
            return None;
        }
        match byte(&vd, 0)? {
            0xFF => return None, // set terminator
            2 if has(&vd, 88, b"%/@") || has(&vd, 88, b"%/C") || has(&vd, 88, b"%/E") => {
                return field(&vd, 40, 32).map(<[u8]>::to_vec);
            }
            _ => {}
        }
    }
    None
}

/// libblkid's test whether the UTF-16BE Joliet label starts with the same characters as the
/// primary label.
fn ascii_eq_utf16be(ascii: &[u8], utf16: &[u8]) -> bool {
    utf16
        .chunks_exact(2)
        .zip(ascii)
        .all(|(u, &a)| u.first() == Some(&0) && u.get(1) == Some(&a))
}

enum IsoDate {
    /// All digits '0' and no zone offset: the standard's "not specified".
    Unset,
    /// Formatted as `YYYY-MM-DD-HH-MM-SS-CC`; `None` when the field is all NUL bytes.
    Set(Option<String>),
}

fn iso_date(d: &[u8]) -> Option<IsoDate> {
    let digits = field(d, 0, 16)?;
    if digits.iter().all(|&c| c == b'0') && byte(d, 16)? == 0 {
        return Some(IsoDate::Unset);
    }
    if digits.iter().all(|&c| c == 0) {
        return Some(IsoDate::Set(None));
    }
    let mut out = Vec::with_capacity(22);
    for (i, &c) in digits.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10 | 12 | 14) {
            out.push(b'-');
        }
        out.push(c);
    }
    Some(IsoDate::Set(Some(
        String::from_utf8_lossy(&out).into_owned(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::*;
    use std::process::Command;

    #[test]
    fn iso9660_images_match_blkid() {
        let Some(xorriso) = tool("xorriso") else {
            return;
        };
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("hello.txt"), b"hello\n").unwrap();
        std::fs::write(tree.path().join("boot.img"), [0u8; 2048]).unwrap();
        let tree = tree.path().to_str().unwrap();
        let cases: [(&str, Vec<&str>, Option<&str>); 4] = [
            ("plain", vec!["-as", "mkisofs", "-V", "ISOLAB"], None),
            (
                "joliet",
                vec!["-as", "mkisofs", "-J", "-V", "Joliet Lab"],
                None,
            ),
            (
                // the El Torito boot record sits between the primary and Joliet descriptors
                "joliet after boot record",
                vec![
                    "-as",
                    "mkisofs",
                    "-J",
                    "-V",
                    "Joliet Lab",
                    "-b",
                    "boot.img",
                    "-no-emul-boot",
                ],
                None,
            ),
            (
                "dates",
                vec![
                    "-volid",
                    "DATES",
                    "-volume_date",
                    "c",
                    "2011010203040500",
                    "-volume_date",
                    "m",
                    "2012010203040500",
                    "-map",
                    tree,
                    "/",
                ],
                Some("2012-01-02-03-04-05-00"),
            ),
        ];
        for (name, args, uuid) in cases {
            let img = sparse(0);
            std::fs::remove_file(&img.path).unwrap();
            let mut cmd = Command::new(&xorriso);
            if name == "dates" {
                // native xorriso commands run in order: the output device comes first
                cmd.arg("-outdev").arg(&img.path).args(&args);
            } else {
                cmd.args(&args).arg("-o").arg(&img.path).arg(tree);
            }
            output(&mut cmd);
            let info = detect_file(&img.path).unwrap();
            assert_eq!(info.kind, FsKind::Iso9660, "{name}");
            assert_like_blkid(&img.path, &info);
            if let Some(uuid) = uuid {
                assert_eq!(info.uuid.as_deref(), Some(uuid), "{name}");
            }
            let len = std::fs::metadata(&img.path).unwrap().len();
            assert!(info.used_bytes.is_some_and(|u| u > 0 && u <= len), "{name}");
            fuzz_image(&img.path, 150);
            if name.starts_with("joliet") {
                // a primary label that differs from the Joliet one (as a strict mkisofs
                // would upper-case it): the Joliet label wins, as in blkid
                patch(
                    &img.path,
                    0x8028,
                    format!("{:<32}", "JOLIET_LAB").as_bytes(),
                );
                let info = detect_file(&img.path).unwrap();
                assert_eq!(info.label.as_deref(), Some("Joliet Lab"));
                assert_like_blkid(&img.path, &info);
            }
        }
    }
}
