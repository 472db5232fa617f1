//! What the probes of several formats share: soft reads of secondary structures, label and
//! UUID formatting the way libblkid prints them, CRC-32C, and the bounded scan of FAT/exFAT
//! directory entries.
//!
//! Invariants: every helper is bounded (the byte and iteration limits below) and never panics
//! on any bytes; a read that fails or comes up short is "not available" (`None`), never an
//! error, because a probe that got this far has already identified its format (see the damage
//! and I/O policy in [`super::detect`](mod@super::detect)).
//!
//! Units: offsets and lengths in bytes.

use crate::blockdev::{read_clamped, BlockDev};

/// Bytes of directory entries scanned for a label (and the exFAT bitmap entry).
pub(super) const DIR_SCAN_BYTES: u64 = 1 << 20;
/// Clusters followed along a directory's cluster chain.
pub(super) const CHAIN_MAX: usize = 64;
/// Largest single read while counting FAT entries or bitmap bits.
pub(super) const COUNT_CHUNK: u64 = 1 << 20;
/// Block size of directory reads.
const DIR_BLOCK: u64 = 4096;

// ---------------------------------------------------------------------------------------------
// soft reads

/// A read of a secondary structure: errors and short reads are "not available".
pub(super) fn read_soft(dev: &dyn BlockDev, offset: u64, len: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(len).ok()?;
    read_clamped(dev, offset, len).ok()
}

/// Like [`read_soft`] but only a complete read counts.
pub(super) fn read_exact_soft(dev: &dyn BlockDev, offset: u64, len: u64) -> Option<Vec<u8>> {
    let buf = read_soft(dev, offset, len)?;
    (buf.len() as u64 == len).then_some(buf)
}

// ---------------------------------------------------------------------------------------------
// label and UUID formatting, following libblkid

/// blkid's `isspace` trim of the C locale.
fn rtrim(s: &str) -> &str {
    s.trim_end_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// A byte-string label: up to the first NUL, lossy UTF-8, trailing whitespace trimmed.
pub(super) fn text_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(raw.get(..end)?);
    non_empty(rtrim(&s))
}

/// A UTF-16 label: up to the first NUL unit, unpaired surrogates replaced, trimmed.
pub(super) fn utf16_label(raw: &[u8], big_endian: bool) -> Option<String> {
    let read: fn(&[u8], usize) -> Option<u16> = if big_endian {
        crate::bytes::be16
    } else {
        crate::bytes::le16
    };
    let units = raw
        .chunks_exact(2)
        .filter_map(|p| read(p, 0))
        .take_while(|&u| u != 0);
    let s: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    non_empty(rtrim(&s))
}

/// A 16-byte binary UUID as lowercase hyphenated text; all zeros is no UUID.
pub(super) fn uuid16(raw: &[u8]) -> Option<String> {
    if raw.iter().all(|&b| b == 0) {
        return None;
    }
    uuid::Uuid::from_slice(raw)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// A little-endian 32-bit FAT/exFAT volume serial as blkid prints it: `ABCD-1234`.
pub(super) fn fat_serial(raw: [u8; 4]) -> Option<String> {
    if raw == [0; 4] {
        return None;
    }
    let [a, b, c, d] = raw;
    Some(format!("{d:02X}{c:02X}-{b:02X}{a:02X}"))
}

// ---------------------------------------------------------------------------------------------
// CRC-32C

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32C_TABLE: [u32; 256] = crc32c_table();

/// CRC-32C (Castagnoli) update without pre- or post-inversion: the kernel's `crc32c_le`.
pub(super) fn crc32c_raw(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        // index is masked to 0..=255, the table's size
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// Standard CRC-32C (initial and final inversion), as btrfs and XFS store it.
pub(super) fn crc32c(data: &[u8]) -> u32 {
    !crc32c_raw(!0, data)
}

// ---------------------------------------------------------------------------------------------
// directory scanning shared by FAT and exFAT

/// Feeds the 32-byte entries of `len` bytes of directory at `offset` to `visit`, in blocks of
/// at most [`DIR_BLOCK`] bytes, until `visit` returns true. Returns true when the scan must
/// stop: the visitor asked, a read failed or came up short, or `budget` (bytes) ran out.
pub(super) fn scan_dir(
    dev: &dyn BlockDev,
    offset: u64,
    len: u64,
    budget: &mut u64,
    visit: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    let mut pos = 0u64;
    while pos < len {
        let n = (len - pos).min(DIR_BLOCK).min(*budget);
        if n == 0 {
            return true;
        }
        let Some(at) = offset.checked_add(pos) else {
            return true;
        };
        let Some(block) = read_exact_soft(dev, at, n) else {
            return true;
        };
        for entry in block.chunks_exact(32) {
            if visit(entry) {
                return true;
            }
        }
        pos += n;
        *budget -= n;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsmap::testutil::{HAND_UUID, HAND_UUID_TEXT};

    #[test]
    fn checksums_match_reference_vectors() {
        // RFC 3720 B.4 / the usual "123456789" check value
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn label_and_uuid_formatting() {
        assert_eq!(text_label(b"abc  \t\0junk"), Some("abc".into()));
        assert_eq!(text_label(b"   "), None);
        assert_eq!(text_label(b""), None);
        let utf16: Vec<u8> = "Été \0x"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(utf16_label(&utf16, false), Some("Été".into()));
        assert_eq!(
            utf16_label(&[0x00, 0xD8, 0x41, 0x00], false),
            Some("\u{FFFD}A".into())
        );
        assert_eq!(uuid16(&HAND_UUID), Some(HAND_UUID_TEXT.into()));
        assert_eq!(uuid16(&[0; 16]), None);
        assert_eq!(
            fat_serial(0x1234_ABCDu32.to_le_bytes()),
            Some("1234-ABCD".into())
        );
        assert_eq!(fat_serial([0; 4]), None);
    }
}
