//! Bounds-checked readers of fixed-width integers in byte buffers that came from a disk and
//! may be hostile: superblocks, boot sectors, MFT records, directory entries.
//!
//! Every reader takes a buffer and a byte offset and returns `None` when the field does not lie
//! entirely inside the buffer (including when `off + len` overflows), so a parser can use `?`
//! instead of indexing and never panics on short or damaged input. Little-endian readers are
//! `le16`/`le32`/`le64`, big-endian ones `be16`/`be32`/`be64` (XFS, LUKS, ISO 9660's Joliet).
//!
//! Units: offsets and lengths are in bytes from the start of the buffer.

/// The `len` bytes at `off`, or `None` when they are not all inside `b`.
pub fn field(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// The `N` bytes at `off` as an array, or `None` when they are not all inside `b`.
pub fn arr<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    field(b, off, N)?.try_into().ok()
}

/// The byte at `off`, or `None` past the end of `b`.
pub fn byte(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

/// Little-endian u16 at `off`.
pub fn le16(b: &[u8], off: usize) -> Option<u16> {
    arr(b, off).map(u16::from_le_bytes)
}

/// Little-endian u32 at `off`.
pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    arr(b, off).map(u32::from_le_bytes)
}

/// Little-endian u64 at `off`.
pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    arr(b, off).map(u64::from_le_bytes)
}

/// Big-endian u16 at `off`.
pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    arr(b, off).map(u16::from_be_bytes)
}

/// Big-endian u32 at `off`.
pub fn be32(b: &[u8], off: usize) -> Option<u32> {
    arr(b, off).map(u32::from_be_bytes)
}

/// Big-endian u64 at `off`.
pub fn be64(b: &[u8], off: usize) -> Option<u64> {
    arr(b, off).map(u64::from_be_bytes)
}

/// True when `magic` sits at `off` (false when `b` is too short to hold it there).
pub fn has(b: &[u8], off: usize, magic: &[u8]) -> bool {
    field(b, off, magic.len()) == Some(magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_bounds_checked() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&b, 0), Some(0x0201));
        assert_eq!(be16(&b, 0), Some(0x0102));
        assert_eq!(le32(&b, 4), Some(0x0807_0605));
        assert_eq!(be32(&b, 4), Some(0x0506_0708));
        assert_eq!(le64(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(be64(&b, 0), Some(0x0102_0304_0506_0708));
        assert_eq!(le16(&b, 7), None);
        assert_eq!(le32(&b, 5), None);
        assert_eq!(le64(&b, 1), None);
        assert_eq!(be64(&b, usize::MAX), None);
        assert_eq!(byte(&b, 7), Some(8));
        assert_eq!(byte(&b, 8), None);
        assert_eq!(field(&b, 6, 2), Some(&b[6..]));
        assert_eq!(field(&b, usize::MAX, 2), None);
        assert_eq!(arr::<3>(&b, 5), Some([6, 7, 8]));
        assert!(has(&b, 2, &[3, 4]));
        assert!(!has(&b, 7, &[8, 9]));
        assert!(!has(&[], 0, b"x"));
    }
}
