//! Units and checked byte arithmetic shared by every layer.

/// One mebibyte in bytes.
pub const MIB: u64 = 1 << 20;

/// Formats `bytes` as a short human size with binary units, e.g. `"465.8 GiB"`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `lba * sector_size` in bytes, or `None` on overflow.
pub fn lba_to_bytes(lba: u64, sector_size: u32) -> Option<u64> {
    lba.checked_mul(u64::from(sector_size))
}

/// Little-endian u16 at byte `at` of `b`, for buffers whose length the caller has checked
/// (fixed-size headers read whole): the one family of readers is [`crate::bytes`], and a
/// short slice here is a bug in the caller, so this panics rather than guessing.
pub fn le_u16(b: &[u8], at: usize) -> u16 {
    crate::bytes::le16(b, at).expect("the caller checked the buffer's length")
}

/// Little-endian u32 at byte `at` of `b` (see [`le_u16`] for the length contract).
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    crate::bytes::le32(b, at).expect("the caller checked the buffer's length")
}

/// Little-endian u64 at byte `at` of `b` (see [`le_u16`] for the length contract).
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    crate::bytes::le64(b, at).expect("the caller checked the buffer's length")
}

/// The `N` bytes at byte `at` of `b` (see [`le_u16`] for the length contract).
pub fn le_array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    crate::bytes::arr(b, at).expect("the caller checked the buffer's length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(500_107_862_016), "465.8 GiB");
    }

    #[test]
    fn little_endian_readers() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le_u16(&b, 1), 0x0302);
        assert_eq!(le_u32(&b, 0), 0x0403_0201);
        assert_eq!(le_u64(&b, 1), 0x0908_0706_0504_0302);
        assert_eq!(le_array::<2>(&b, 7), [8, 9]);
    }

    #[test]
    fn lba_math_is_checked() {
        assert_eq!(lba_to_bytes(2048, 512), Some(1 << 20));
        assert_eq!(lba_to_bytes(u64::MAX, 512), None);
    }
}
