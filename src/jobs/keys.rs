//! `lifeboat key`: the key slots of an encrypted image, listed, added and removed without
//! rewriting the image. Only the header's slot area changes ([`crypt::SLOTS_AREA`]), which
//! the footer's header checksum leaves out; the old header is kept in `NAME.header-backup`
//! until the new one is on the disk.
//!
//! An encrypted fleet store's slots ([`crate::image::packs::StoreKeys`]) are changed for the
//! whole store at once ([`store_add`], [`store_remove`]): every image of the store first
//! (each header as above), then `store.key`, which later images copy. They hold the store's
//! exclusive lock, as `gc` does: they wait for the images being written, which carry the
//! slots read when they began, and writers wait for them. A run that stops half way leaves
//! some images with the new slots and some with the old; run it again.

use crate::error::{Error, Result};
use crate::image::crypt::{self, KeySlots, Slot, SlotKind};
use crate::image::format::{Header, HEADER_LEN};
use crate::image::{hex, ImageReader};
use serde::Serialize;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// One key slot, as `key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SlotInfo {
    /// Its number, from 1 (what `key remove` takes).
    pub number: usize,
    /// What opens it.
    pub kind: SlotKind,
    /// Argon2id's cost, for a passphrase slot: "m=65536 KiB, t=3, p=1".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argon2id: Option<String>,
}

/// An encrypted image's keys.
#[derive(Debug, Clone, Serialize)]
pub struct KeysReport {
    /// The image file (its first volume).
    pub path: PathBuf,
    /// The cipher.
    pub cipher: &'static str,
    /// The key ID, hex: images that share it (a chain) open with the same key.
    pub key_id: String,
    /// The slots in order.
    pub slots: Vec<SlotInfo>,
}

fn report(path: &Path, keys: &KeySlots) -> KeysReport {
    KeysReport {
        path: path.to_path_buf(),
        cipher: crypt::CIPHER,
        key_id: hex(&keys.key_id),
        slots: keys
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| SlotInfo {
                number: i + 1,
                kind: s.kind,
                argon2id: (s.kind == SlotKind::Passphrase)
                    .then(|| format!("m={} KiB, t={}, p={}", s.m_kib, s.t, s.p)),
            })
            .collect(),
    }
}

/// The header of the image `path` (its first volume, or its S3 object); refused when it is
/// not encrypted.
fn encrypted_header(path: &Path) -> Result<(Header, KeySlots)> {
    let mut b = vec![0u8; HEADER_LEN];
    if crate::store::s3::is_s3(path) {
        crate::store::s3::open(path)
            .and_then(|f| f.read_exact_at(&mut b, 0))
            .map_err(|e| Error::io("reading the header of", path, e))?;
    } else {
        let f = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        f.read_exact_at(&mut b, 0)
            .map_err(|e| Error::io("reading the header of", path, e))?;
    }
    let h = Header::decode(&b).map_err(|source| Error::Image {
        path: path.to_path_buf(),
        source,
    })?;
    match h.keys.clone() {
        Some(k) => Ok((h, k)),
        None => Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "it is not encrypted: it has no key slots".into(),
        }),
    }
}

/// Refuses to change the slots of one image in an encrypted fleet store: they are a copy of
/// the store's (`DIR/store.key`), which every image of the store shares.
fn refuse_packed(path: &Path, h: &Header) -> Result<()> {
    if h.flags & crate::image::format::FLAG_PACKED != 0 {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "it is in an encrypted fleet store, whose key slots are the store's, \
                     copied into every image there: change them for the whole store with \
                     `lifeboat key add DIR` or `key remove DIR N` on its folder"
                .into(),
        });
    }
    Ok(())
}

/// The encrypted fleet store `dir`'s slots; refused when it has none (a plain store).
fn store_keys(dir: &Path) -> Result<KeySlots> {
    crate::image::packs::StoreKeys::read(dir)?.ok_or_else(|| Error::Refused {
        path: dir.to_path_buf(),
        reason: "it is not an encrypted fleet store: it has no store.key".into(),
    })
}

/// The key slots of the encrypted fleet store `dir`. Needs no passphrase.
pub fn store_list(dir: &Path) -> Result<KeysReport> {
    let slots = crate::image::packs::StoreKeys::read(dir)?.ok_or_else(|| Error::Refused {
        path: dir.to_path_buf(),
        reason: "it is not an encrypted fleet store: it has no store.key".into(),
    })?;
    Ok(report(&crate::image::packs::store_key_path(dir), &slots))
}

/// Gives `slots` to every image of the store `dir` under their key, then to `store.key`.
/// The caller holds the store's exclusive lock ([`crate::image::packs::lock_exclusive`]):
/// no image is being written, whose header would carry the slots read when it began.
fn store_rewrite(dir: &Path, slots: &KeySlots) -> Result<()> {
    for img in crate::image::packs::images(dir)? {
        let (mut h, keys) = encrypted_header(&img)?;
        if keys.key_id != slots.key_id {
            return Err(Error::Refused {
                path: img,
                reason: "its key is not the store's; nothing more was changed".into(),
            });
        }
        h.keys = Some(slots.clone());
        write_header(&img, &h)?;
    }
    crate::image::packs::StoreKeys::replace(dir, slots)
}

/// The exclusive lock of the encrypted fleet store `dir`, for a change of its slots. Its key
/// is unlocked first (a passphrase given, or asked for: the keyring keeps it for the
/// change), so that nobody's typing holds the store's writers up.
fn lock_for_keys(dir: &Path) -> Result<crate::image::packs::StoreLock> {
    let slots = store_keys(dir)?;
    crypt::keyring::unlock(&crate::image::packs::store_key_path(dir), &slots)?;
    crate::image::packs::lock_exclusive(dir, "keys")
}

/// Adds a slot of `kind` that `secret` opens to the encrypted fleet store `dir` and every
/// image in it; the store's key is unlocked first (a passphrase given, or asked for).
pub fn store_add(dir: &Path, kind: SlotKind, secret: &[u8]) -> Result<KeysReport> {
    let _lock = lock_for_keys(dir)?;
    let mut slots = store_keys(dir)?;
    if slots.slots.len() >= crypt::MAX_SLOTS {
        return Err(Error::Refused {
            path: dir.to_path_buf(),
            reason: format!("it has {} key slots, the most it holds", crypt::MAX_SLOTS),
        });
    }
    let path = crate::image::packs::store_key_path(dir);
    let key = crypt::keyring::unlock(&path, &slots)?;
    slots.slots.push(Slot::new(kind, &key, secret)?);
    store_rewrite(dir, &slots)?;
    Ok(report(&path, &slots))
}

/// Removes slot `number` (from 1) of the encrypted fleet store `dir` and every image in it;
/// the store's key must open (a passphrase given, or asked for), and one slot must stay.
pub fn store_remove(dir: &Path, number: usize) -> Result<KeysReport> {
    removable(dir, &store_keys(dir)?, number, "store")?;
    let _lock = lock_for_keys(dir)?;
    let mut slots = store_keys(dir)?;
    removable(dir, &slots, number, "store")?;
    let path = crate::image::packs::store_key_path(dir);
    crypt::keyring::unlock(&path, &slots)?;
    slots.slots.remove(number - 1);
    store_rewrite(dir, &slots)?;
    Ok(report(&path, &slots))
}

/// The key slots of `path`. Needs no passphrase.
pub fn list(path: &Path) -> Result<KeysReport> {
    let (_, keys) = encrypted_header(path)?;
    Ok(report(path, &keys))
}

/// Adds a slot of `kind` that `secret` opens (a passphrase, or a recovery key's 32 bytes).
/// The image is opened and checked first, with a passphrase the keyring has or asks for.
pub fn add(path: &Path, kind: SlotKind, secret: &[u8]) -> Result<KeysReport> {
    let (mut h, mut keys) = encrypted_header(path)?;
    refuse_packed(path, &h)?;
    if keys.slots.len() >= crypt::MAX_SLOTS {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: format!(
                "it has {} key slots, the most an image holds",
                crypt::MAX_SLOTS
            ),
        });
    }
    ImageReader::open(path)?;
    let key = crypt::keyring::unlock(path, &keys)?;
    keys.slots.push(Slot::new(kind, &key, secret)?);
    h.keys = Some(keys.clone());
    write_header(path, &h)?;
    Ok(report(path, &keys))
}

/// Removes slot `number` (from 1). The image must open (a passphrase given, or asked for),
/// and one slot at least must stay.
pub fn remove(path: &Path, number: usize) -> Result<KeysReport> {
    let (mut h, mut keys) = encrypted_header(path)?;
    refuse_packed(path, &h)?;
    removable(path, &keys, number, "image")?;
    ImageReader::open(path)?;
    keys.slots.remove(number - 1);
    h.keys = Some(keys.clone());
    write_header(path, &h)?;
    Ok(report(path, &keys))
}

/// Refuses to remove slot `number` (from 1) of `slots` (those of the `what`, "image" or
/// "store", at `path`) when there is no such slot or it is the last.
fn removable(path: &Path, slots: &KeySlots, number: usize, what: &str) -> Result<()> {
    let n = slots.slots.len();
    let reason = if number == 0 || number > n {
        format!("it has no key slot {number}; its slots are 1 to {n}")
    } else if n == 1 {
        format!("that is its only key slot: without it nothing opens the {what}")
    } else {
        return Ok(());
    };
    Err(Error::Refused {
        path: path.to_path_buf(),
        reason,
    })
}

/// `NAME.header-backup` beside `path`.
fn backup_path(path: &Path) -> PathBuf {
    let mut n = path.file_name().unwrap_or_default().to_os_string();
    n.push(".header-backup");
    path.with_file_name(n)
}

/// Writes `h` over the first 4096 bytes of `path`: the old header is saved beside it first
/// and removed once the new one is durable, so a crash leaves one of the two whole.
fn rewrite_header(path: &Path, h: &Header) -> Result<()> {
    let new = h.encode();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening for writing", path, e))?;
    let mut old = vec![0u8; HEADER_LEN];
    f.read_exact_at(&mut old, 0)
        .map_err(|e| Error::io("reading the header of", path, e))?;
    let bak = backup_path(path);
    std::fs::write(&bak, &old).map_err(|e| Error::io("saving the old header to", &bak, e))?;
    std::fs::File::open(&bak)
        .and_then(|b| b.sync_all())
        .map_err(|e| Error::io("syncing", &bak, e))?;
    f.write_all_at(&new, 0)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("writing the new header of", path, e))?;
    // checked before the backup goes: the image opens, with its new slots
    let mut back = vec![0u8; HEADER_LEN];
    f.read_exact_at(&mut back, 0)
        .map_err(|e| Error::io("reading back the header of", path, e))?;
    if back != new {
        return Err(Error::VerifyMismatch {
            path: path.to_path_buf(),
            offset: 0,
            end: HEADER_LEN as u64,
        });
    }
    ImageReader::open(path)?;
    std::fs::remove_file(&bak).map_err(|e| Error::io("removing", &bak, e))?;
    Ok(())
}

/// Writes `h` as the header of the image `path`: in place for a file, by uploading the object
/// again in S3.
fn write_header(path: &Path, h: &Header) -> Result<()> {
    if crate::store::s3::is_s3(path) {
        rewrite_object_header(path, h)
    } else {
        rewrite_header(path, h)
    }
}

/// [`rewrite_header`] for an image in S3, whose objects cannot be written in place: the
/// object is copied through a new multipart upload with `h` in front (the rest unchanged),
/// which replaces it only when the upload completes. The new object must open, else the old
/// header is put back the same way.
fn rewrite_object_header(path: &Path, h: &Header) -> Result<()> {
    let old = {
        let mut b = vec![0u8; HEADER_LEN];
        crate::store::s3::open(path)
            .and_then(|f| f.read_exact_at(&mut b, 0))
            .map_err(|e| Error::io("reading the header of", path, e))?;
        b
    };
    copy_with_header(path, &h.encode())?;
    if let Err(e) = ImageReader::open(path) {
        let _ = copy_with_header(path, &old);
        return Err(e);
    }
    Ok(())
}

/// Gives the S3 object `path` `header` as its first [`HEADER_LEN`] bytes, the rest
/// unchanged ([`crate::store::s3::replace_head`]: the store copies all but the first 16 MiB
/// itself, and the size is checked).
fn copy_with_header(path: &Path, header: &[u8]) -> Result<()> {
    crate::store::s3::replace_head(path, header)
        .map(|_| ())
        .map_err(|e| Error::io("rewriting the header of", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::crypt::{keyring, MasterKey};
    use crate::image::{format, Codec, EncodedChunk, ImageMeta, ImageWriter};

    fn encrypted_image(dir: &Path) -> (PathBuf, MasterKey) {
        let key = MasterKey::generate().unwrap();
        let slots = KeySlots::new(&key, &[(SlotKind::Passphrase, b"first pass")]).unwrap();
        keyring::add_key(key.clone());
        let path = dir.join("k.lbi");
        let header = Header {
            keys: Some(slots),
            chunk_size: 1 << 20,
            ..format::sample_header()
        };
        let mut w = ImageWriter::create(&path, header).unwrap();
        let raw = vec![5u8; 4096];
        let h = key.content_hash().hash(&raw);
        let mut c = EncodedChunk::single(0, &raw, Codec::Raw, raw.clone());
        c.records[0].hash = h;
        w.push(c).unwrap();
        w.finish(&ImageMeta::default()).unwrap();
        (path, key)
    }

    #[test]
    fn slots_are_added_and_removed_in_place_and_the_image_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _key) = encrypted_image(dir.path());
        let before = std::fs::read(&path).unwrap();
        let r = add(&path, SlotKind::Passphrase, b"second pass").unwrap();
        assert_eq!(r.slots.len(), 2);
        let after = std::fs::read(&path).unwrap();
        assert_eq!(before.len(), after.len());
        assert_eq!(
            before[HEADER_LEN..],
            after[HEADER_LEN..],
            "only the header changed"
        );
        assert!(!backup_path(&path).exists());
        let (_, keys) = encrypted_header(&path).unwrap();
        assert!(keys.unlock("second pass").is_some());
        assert!(keys.unlock("first pass").is_some());
        remove(&path, 1).unwrap();
        let (_, keys) = encrypted_header(&path).unwrap();
        assert!(keys.unlock("first pass").is_none());
        assert!(keys.unlock("second pass").is_some());
        assert!(
            matches!(remove(&path, 1), Err(Error::Refused { .. })),
            "the last slot"
        );
        assert!(matches!(remove(&path, 7), Err(Error::Refused { .. })));
        ImageReader::open(&path).unwrap();
    }
}
