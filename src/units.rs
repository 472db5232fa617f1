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
    fn lba_math_is_checked() {
        assert_eq!(lba_to_bytes(2048, 512), Some(1 << 20));
        assert_eq!(lba_to_bytes(u64::MAX, 512), None);
    }
}
