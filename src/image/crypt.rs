//! Encrypted images (format 1.4): the keys, the key slots in the header, the sealing of
//! frames and sections, and the process's keyring.
//!
//! An encrypted image has one random 256-bit **master key**. Nothing stores it in clear: each
//! **key slot** in the header holds it wrapped (XChaCha20-Poly1305) under a key derived from a
//! passphrase (Argon2id, its parameters in the slot) or from a printable recovery key (which
//! is itself 256 random bits, so a plain key derivation suffices). Three keys are derived
//! from the master key with blake3's key derivation, each for one purpose:
//!
//! - the **frame key**: every stored frame is `nonce (24) ‖ ciphertext ‖ tag (16)`, sealed
//!   with XChaCha20-Poly1305 under a random nonce, and its associated data binds it to its
//!   image and place: `"lifeboat-frame-v1" ‖ image ID ‖ file offset (u64) ‖ codec (u8)`.
//!   A frame in a fleet store's pack ([`super::packs`]) is shared by every image that uses
//!   it, so it is bound to its place in the store instead: `"lifeboat-pack-frame-v1" ‖ key
//!   ID ‖ pack address (u64) ‖ codec (u8)` (pack names are unique in a store, and a store has
//!   one key). The metadata and index sections are sealed the same way, with their own
//!   labels;
//! - the **content-ID key**: record hashes are blake3 keyed with it, so the index names
//!   chunks without revealing the plain blake3 of any content (and an attacker cannot test a
//!   guess of a block's content against it);
//! - the **key ID**: 16 bytes in the header naming the master key, so that a chain's members
//!   (which share their master key) are unlocked once.
//!
//! The process's [`keyring`] holds the master keys unlocked so far, the passphrases given
//! (`--key-file`), and a prompt (the CLI's, on a terminal). Readers and writers ask it.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::Mutex;
use zeroize::{Zeroize, Zeroizing};

/// The cipher of frames, sections and key slots, as plans and reports name it.
pub const CIPHER: &str = "xchacha20-poly1305";

/// A passphrase or recovery key held in memory: wiped when dropped, never printed by
/// `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub Zeroizing<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Bytes a sealed frame or section adds to its plaintext: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// The nonce that starts every sealed frame and section.
pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Where the key ID and the key slots live in the header.
pub const KEYS_AT: usize = 128;
/// The part of the header that `key add` and `key remove` rewrite: the slot count and the
/// slots. The footer's header checksum leaves it out ([`super::format::Header::binding_crc`]).
pub const SLOTS_AREA: std::ops::Range<usize> = 144..4092;
const SLOT_LEN: usize = 128;
/// Most key slots one image holds.
pub const MAX_SLOTS: usize = 16;
/// Argon2id cost of a new passphrase slot: 64 MiB, 3 passes, one lane (about 0.1 s here; the
/// rescue system has the memory).
const ARGON_M_KIB: u32 = 64 * 1024;
const ARGON_T: u32 = 3;
const ARGON_P: u32 = 1;
/// Most memory a slot may ask Argon2 for (a hostile header must not exhaust RAM): 1 GiB.
const ARGON_M_MAX_KIB: u32 = 1 << 20;

/// A 256-bit secret, wiped when dropped.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", super::writer::hex(&self.key_id()))
    }
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| {
        Error::io(
            "drawing random bytes from",
            "the kernel",
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok(b)
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Result<MasterKey> {
        Ok(MasterKey(Zeroizing::new(random()?)))
    }

    fn derive(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(blake3::derive_key(purpose, &*self.0))
    }

    /// The 16 bytes naming this key in the header.
    pub fn key_id(&self) -> [u8; 16] {
        let k = self.derive("lifeboat 2026-12 image key id");
        let mut id = [0u8; 16];
        id.copy_from_slice(&k[..16]);
        id
    }

    /// How records of images under this key hash their content.
    pub fn content_hash(&self) -> ContentHash {
        ContentHash::Keyed(*self.derive("lifeboat 2026-12 content id"))
    }

    /// The sealer of frames and sections of the image `image_id`.
    pub fn sealer(&self, image_id: [u8; 16]) -> Sealer {
        let k = self.derive("lifeboat 2026-12 frame key");
        Sealer {
            cipher: XChaCha::new(&k),
            image_id,
            key_id: self.key_id(),
        }
    }
}

/// How an image's records name their content: plain blake3, or blake3 keyed with the
/// content-ID key of an encrypted image.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum ContentHash {
    /// blake3 (plain images).
    #[default]
    Plain,
    /// blake3 keyed (encrypted images).
    Keyed([u8; 32]),
}

impl std::fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContentHash::Plain => "Plain",
            ContentHash::Keyed(_) => "Keyed",
        })
    }
}

impl ContentHash {
    /// The hash of `bytes`.
    pub fn hash(&self, bytes: &[u8]) -> [u8; 32] {
        match self {
            ContentHash::Plain => *blake3::hash(bytes).as_bytes(),
            ContentHash::Keyed(k) => *blake3::keyed_hash(k, bytes).as_bytes(),
        }
    }

    /// The hash of `len` zero bytes.
    pub fn zeros(&self, len: usize) -> [u8; 32] {
        self.hash(&vec![0u8; len])
    }
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha) under one key: HChaCha20 of the key and the
/// nonce's first 16 bytes gives a subkey, and ring's ChaCha20-Poly1305 (RFC 8439, its
/// assembly: more than twice the speed of a portable one here, which imaging and its read-back
/// check each pay once per stored byte) seals under that subkey with the nonce's last 8 bytes.
/// The bytes are those of any other XChaCha20-Poly1305; a test checks them against
/// RustCrypto's.
#[derive(Clone)]
pub struct XChaCha {
    key: Zeroizing<[u8; 32]>,
}

impl XChaCha {
    /// The cipher under `key`.
    pub fn new(key: &[u8; 32]) -> XChaCha {
        XChaCha {
            key: Zeroizing::new(*key),
        }
    }

    /// ring's key and nonce for one XChaCha nonce.
    fn inner(&self, nonce: &[u8; NONCE_LEN]) -> (ring::aead::LessSafeKey, ring::aead::Nonce) {
        let mut head = [0u8; 16];
        head.copy_from_slice(&nonce[..16]);
        let mut sub = Zeroizing::new([0u8; 32]);
        sub.copy_from_slice(&chacha20::hchacha::<chacha20::R20>(
            &(*self.key).into(),
            &head.into(),
        ));
        let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &*sub)
            .expect("a 32-byte key");
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&nonce[16..]);
        (
            ring::aead::LessSafeKey::new(key),
            ring::aead::Nonce::assume_unique_for_key(n),
        )
    }

    /// Encrypts `buf` in place; returns the tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let (key, n) = self.inner(nonce);
        let tag = key
            .seal_in_place_separate_tag(n, ring::aead::Aad::from(aad), buf)
            .expect("a frame within ChaCha20's 256 GiB");
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag.as_ref());
        t
    }

    /// Decrypts `buf` in place when `tag` proves it unchanged; false (and `buf` in an
    /// unspecified state) when it does not.
    pub fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
            return false;
        };
        let (key, n) = self.inner(nonce);
        key.open_in_place_separate_tag(
            n,
            ring::aead::Aad::from(aad),
            ring::aead::Tag::from(tag),
            buf,
            0..,
        )
        .is_ok()
    }
}

/// Seals and opens the frames and sections of one image.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha,
    image_id: [u8; 16],
    /// Binds frames in a fleet store's packs (one key per store).
    key_id: [u8; 16],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({})", super::writer::hex(&self.image_id))
    }
}

/// What a sealed piece is, bound into its associated data.
#[derive(Debug, Clone, Copy)]
pub enum Place {
    /// A frame at this file offset (or pack address, [`super::packs::is_address`]), stored
    /// with this codec byte.
    Frame(u64, u8),
    /// The metadata section.
    Meta,
    /// The index section.
    Index,
}

impl Sealer {
    fn aad(&self, place: Place) -> Vec<u8> {
        let mut a = Vec::with_capacity(48);
        match place {
            Place::Frame(address, codec) if super::packs::is_address(address) => {
                a.extend_from_slice(b"lifeboat-pack-frame-v1");
                a.extend_from_slice(&self.key_id);
                a.extend_from_slice(&address.to_le_bytes());
                a.push(codec);
            }
            Place::Frame(offset, codec) => {
                a.extend_from_slice(b"lifeboat-frame-v1");
                a.extend_from_slice(&self.image_id);
                a.extend_from_slice(&offset.to_le_bytes());
                a.push(codec);
            }
            Place::Meta => {
                a.extend_from_slice(b"lifeboat-meta-v1");
                a.extend_from_slice(&self.image_id);
            }
            Place::Index => {
                a.extend_from_slice(b"lifeboat-index-v1");
                a.extend_from_slice(&self.image_id);
            }
        }
        a
    }

    /// Encrypts `buf` in place for `place`; returns the nonce to write before it and the tag
    /// to write after it (what [`Sealer::seal`] makes, without copying the frame).
    pub fn seal_in_place(
        &self,
        place: Place,
        buf: &mut [u8],
    ) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN])> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let tag = self.cipher.seal(&nonce, &self.aad(place), buf);
        Ok((nonce, tag))
    }

    /// `plain` sealed for `place`: nonce, ciphertext, tag.
    pub fn seal(&self, place: Place, plain: &[u8]) -> Result<Vec<u8>> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut out = vec![0u8; plain.len() + OVERHEAD];
        out[..NONCE_LEN].copy_from_slice(&nonce);
        let body = &mut out[NONCE_LEN..NONCE_LEN + plain.len()];
        body.copy_from_slice(plain);
        let tag = self.cipher.seal(&nonce, &self.aad(place), body);
        out[NONCE_LEN + plain.len()..].copy_from_slice(&tag);
        Ok(out)
    }

    /// Opens `sealed` (made by [`Sealer::seal`] for `place`) into `out`; false when it was
    /// changed, moved, or sealed under another key or for another image or place. The
    /// ciphertext is copied into `out` and decrypted there (ring decrypts in place only; a
    /// reused `out` is not zeroed first).
    pub fn open(&self, place: Place, sealed: &[u8], out: &mut Vec<u8>) -> bool {
        if sealed.len() < OVERHEAD {
            out.clear();
            return false;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("NONCE_LEN bytes");
        out.clear();
        out.extend_from_slice(body);
        let ok = self.cipher.open(nonce, &self.aad(place), out, tag);
        if !ok {
            out.clear();
        }
        ok
    }
}

/// What unlocks a key slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotKind {
    /// A passphrase, stretched by Argon2id.
    Passphrase = 1,
    /// A printable recovery key (256 random bits).
    Recovery = 2,
}

/// One key slot: the master key wrapped under a key derived from a passphrase or a recovery
/// key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// What unlocks it.
    pub kind: SlotKind,
    /// Argon2id memory in KiB, passes and lanes (0 for a recovery slot).
    pub m_kib: u32,
    /// Argon2id passes.
    pub t: u32,
    /// Argon2id lanes.
    pub p: u32,
    salt: [u8; 16],
    nonce: [u8; NONCE_LEN],
    wrapped: [u8; 48],
}

/// The header's key ID and slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlots {
    /// Names the master key ([`MasterKey::key_id`]).
    pub key_id: [u8; 16],
    /// The slots, in order; `key remove` takes their numbers from 1.
    pub slots: Vec<Slot>,
}

/// A key-slot area that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("key slots: {0}")]
pub struct SlotError(pub String);

impl Slot {
    fn kek(
        kind: SlotKind,
        secret: &[u8],
        salt: &[u8; 16],
        m: u32,
        t: u32,
        p: u32,
    ) -> Option<Zeroizing<[u8; 32]>> {
        let mut kek = Zeroizing::new([0u8; 32]);
        match kind {
            SlotKind::Passphrase => {
                let params = argon2::Params::new(m, t, p, Some(32)).ok()?;
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password_into(secret, salt, &mut *kek)
                    .ok()?;
            }
            SlotKind::Recovery => {
                let mut h = blake3::Hasher::new_derive_key("lifeboat 2026-12 recovery slot");
                h.update(salt);
                h.update(secret);
                kek.copy_from_slice(h.finalize().as_bytes());
            }
        }
        Some(kek)
    }

    fn wrap_aad(key_id: &[u8; 16], kind: SlotKind) -> Vec<u8> {
        let mut a = b"lifeboat-slot-v1".to_vec();
        a.extend_from_slice(key_id);
        a.push(kind as u8);
        a
    }

    /// A new slot that `secret` (a passphrase, or a recovery key's 32 bytes) unlocks.
    pub fn new(kind: SlotKind, key: &MasterKey, secret: &[u8]) -> Result<Slot> {
        let (m, t, p) = match kind {
            SlotKind::Passphrase => (ARGON_M_KIB, ARGON_T, ARGON_P),
            SlotKind::Recovery => (0, 0, 0),
        };
        let salt = random()?;
        let nonce = random()?;
        let kek = Slot::kek(kind, secret, &salt, m, t, p)
            .ok_or_else(|| Error::Unsupported("Argon2id refused its parameters".into()))?;
        let mut body = *key.0;
        let tag = XChaCha::new(&kek).seal(&nonce, &Slot::wrap_aad(&key.key_id(), kind), &mut body);
        let mut wrapped = [0u8; 48];
        wrapped[..32].copy_from_slice(&body);
        wrapped[32..].copy_from_slice(&tag);
        body.zeroize();
        Ok(Slot {
            kind,
            m_kib: m,
            t,
            p,
            salt,
            nonce,
            wrapped,
        })
    }

    /// The master key, when `secret` unlocks this slot and the key it holds is `key_id`.
    fn unlock(&self, key_id: &[u8; 16], secret: &[u8]) -> Option<MasterKey> {
        let kek = Slot::kek(self.kind, secret, &self.salt, self.m_kib, self.t, self.p)?;
        let mut body = Zeroizing::new([0u8; 32]);
        body.copy_from_slice(&self.wrapped[..32]);
        XChaCha::new(&kek)
            .open(
                &self.nonce,
                &Slot::wrap_aad(key_id, self.kind),
                body.as_mut_slice(),
                &self.wrapped[32..],
            )
            .then_some(())?;
        let key = MasterKey(body);
        (key.key_id() == *key_id).then_some(key)
    }

    fn encode(&self, b: &mut [u8]) {
        b[0] = self.kind as u8;
        b[4..8].copy_from_slice(&self.m_kib.to_le_bytes());
        b[8..12].copy_from_slice(&self.t.to_le_bytes());
        b[12..16].copy_from_slice(&self.p.to_le_bytes());
        b[16..32].copy_from_slice(&self.salt);
        b[32..56].copy_from_slice(&self.nonce);
        b[56..104].copy_from_slice(&self.wrapped);
    }

    fn decode(b: &[u8], n: usize) -> Result<Slot, SlotError> {
        let kind = match b[0] {
            1 => SlotKind::Passphrase,
            2 => SlotKind::Recovery,
            k => return Err(SlotError(format!("slot {} has unknown kind {k}", n + 1))),
        };
        let u = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let s = Slot {
            kind,
            m_kib: u(4),
            t: u(8),
            p: u(12),
            salt: b[16..32].try_into().expect("16 bytes"),
            nonce: b[32..56].try_into().expect("24 bytes"),
            wrapped: b[56..104].try_into().expect("48 bytes"),
        };
        if kind == SlotKind::Passphrase
            && (s.m_kib > ARGON_M_MAX_KIB || s.t == 0 || s.t > 64 || s.p == 0 || s.p > 16)
        {
            return Err(SlotError(format!(
                "slot {} asks Argon2id for m={} KiB, t={}, p={}, beyond what Lifeboat allows",
                n + 1,
                s.m_kib,
                s.t,
                s.p
            )));
        }
        Ok(s)
    }
}

impl KeySlots {
    /// Slots for a new master key, one per `(kind, secret)`.
    pub fn new(key: &MasterKey, secrets: &[(SlotKind, &[u8])]) -> Result<KeySlots> {
        let mut slots = Vec::new();
        for (kind, secret) in secrets {
            slots.push(Slot::new(*kind, key, secret)?);
        }
        Ok(KeySlots {
            key_id: key.key_id(),
            slots,
        })
    }

    /// Writes the key ID and slots into the header bytes `b` (the whole header).
    pub fn encode_into(&self, b: &mut [u8]) {
        b[KEYS_AT..KEYS_AT + 16].copy_from_slice(&self.key_id);
        let n = self.slots.len().min(MAX_SLOTS) as u32;
        b[KEYS_AT + 16..KEYS_AT + 20].copy_from_slice(&n.to_le_bytes());
        for (i, s) in self.slots.iter().take(MAX_SLOTS).enumerate() {
            let at = SLOTS_AREA.start + 16 + i * SLOT_LEN;
            s.encode(&mut b[at..at + SLOT_LEN]);
        }
    }

    /// Reads the key ID and slots from the header bytes `b`.
    pub fn decode(b: &[u8]) -> Result<KeySlots, SlotError> {
        let n = u32::from_le_bytes(b[KEYS_AT + 16..KEYS_AT + 20].try_into().expect("4")) as usize;
        if n == 0 || n > MAX_SLOTS {
            return Err(SlotError(format!(
                "{n} key slots; an encrypted image has 1 to {MAX_SLOTS}"
            )));
        }
        let mut slots = Vec::with_capacity(n);
        for i in 0..n {
            let at = SLOTS_AREA.start + 16 + i * SLOT_LEN;
            slots.push(Slot::decode(&b[at..at + SLOT_LEN], i)?);
        }
        Ok(KeySlots {
            key_id: b[KEYS_AT..KEYS_AT + 16].try_into().expect("16 bytes"),
            slots,
        })
    }

    /// The master key that `secret` unlocks: a passphrase tries the passphrase slots, and a
    /// recovery key (as [`parse_recovery_key`] reads it) the recovery slots.
    pub fn unlock(&self, secret: &str) -> Option<MasterKey> {
        let recovery = parse_recovery_key(secret);
        self.slots.iter().find_map(|s| match (s.kind, &recovery) {
            (SlotKind::Passphrase, _) => s.unlock(&self.key_id, secret.as_bytes()),
            (SlotKind::Recovery, Some(r)) => s.unlock(&self.key_id, &r[..]),
            (SlotKind::Recovery, None) => None,
        })
    }
}

const RECOVERY_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A new recovery key: 256 random bits, and how it is printed (52 characters of a
/// 32-letter alphabet without 0, O, 1 or I, in groups of four; the last character carries
/// a check of the others, so a mistyped key is told apart from a wrong one).
pub fn new_recovery_key() -> Result<(Zeroizing<[u8; 32]>, Zeroizing<String>)> {
    let key = Zeroizing::new(random::<32>()?);
    let text = format_recovery_key(&key);
    Ok((key, text))
}

fn format_recovery_key(key: &[u8; 32]) -> Zeroizing<String> {
    // 256 bits as 52 five-bit digits (the last carries 1 bit and 4 bits of check)
    let mut digits = Vec::with_capacity(52);
    let mut acc = 0u32;
    let mut bits = 0;
    for &byte in key.iter() {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            digits.push(((acc >> bits) & 31) as u8);
        }
    }
    let check = blake3::hash(key).as_bytes()[0] & 15;
    digits.push((((acc & 1) as u8) << 4) | check);
    let mut s = String::with_capacity(64);
    for (i, d) in digits.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            s.push('-');
        }
        s.push(RECOVERY_ALPHABET[*d as usize] as char);
    }
    Zeroizing::new(s)
}

/// The 32 bytes of a recovery key typed as [`new_recovery_key`] printed it (any case, with
/// or without dashes and spaces), or `None` when `text` is not one.
pub fn parse_recovery_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let digits: Vec<u8> = text
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| {
            RECOVERY_ALPHABET
                .iter()
                .position(|&a| a as char == c.to_ascii_uppercase())
                .map(|p| p as u8)
        })
        .collect::<Option<_>>()?;
    if digits.len() != 52 {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut n = 0;
    for &d in &digits[..51] {
        acc = (acc << 5) | u32::from(d);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            key[n] = (acc >> bits) as u8;
            n += 1;
        }
    }
    // 51 digits are 255 bits; the last digit's top bit is the 256th
    let last = digits[51];
    acc = (acc << 1) | u32::from(last >> 4);
    key[31] = acc as u8;
    (n == 31 && blake3::hash(&*key).as_bytes()[0] & 15 == last & 15).then_some(key)
}

/// The process's keyring: master keys unlocked so far, passphrases given, and a prompt.
pub mod keyring {
    use super::*;

    /// Asks for a passphrase for the image at the path; `attempt` counts from 1. `None` when
    /// the user gives up (or there is no one to ask).
    pub type Prompt = Box<dyn Fn(&Path, u32) -> Option<Zeroizing<String>> + Send + Sync>;

    #[derive(Default)]
    struct Ring {
        keys: Vec<MasterKey>,
        secrets: Vec<Zeroizing<String>>,
        prompt: Option<Prompt>,
    }

    static RING: Mutex<Option<Ring>> = Mutex::new(None);

    fn with<T>(f: impl FnOnce(&mut Ring) -> T) -> T {
        let mut g = RING.lock().unwrap_or_else(|p| p.into_inner());
        f(g.get_or_insert_with(Ring::default))
    }

    /// Adds a passphrase (or recovery key) to try on every encrypted image opened.
    pub fn add_secret(secret: Zeroizing<String>) {
        with(|r| {
            if !r.secrets.iter().any(|s| **s == *secret) {
                r.secrets.push(secret);
            }
        });
    }

    /// Adds a master key already known (the one a new image was made with).
    pub fn add_key(key: MasterKey) {
        with(|r| {
            if !r.keys.iter().any(|k| k.key_id() == key.key_id()) {
                r.keys.push(key);
            }
        });
    }

    /// Sets the prompt asked when no known key or secret opens an image.
    pub fn set_prompt(prompt: Prompt) {
        with(|r| r.prompt = Some(prompt));
    }

    /// The master key of the image at `path`, whose header holds `slots`: a key unlocked
    /// before, else one a given secret unlocks, else one the prompt's answer unlocks (up to
    /// three tries). [`Error::KeyNeeded`] when there is nothing to try, [`Error::WrongKey`]
    /// when nothing tried opens it.
    pub fn unlock(path: &Path, slots: &KeySlots) -> Result<MasterKey> {
        unlock_with(path, slots, true)
    }

    /// True when a prompt is set: [`unlock`] may ask a person.
    pub fn can_prompt() -> bool {
        with(|r| r.prompt.is_some())
    }

    /// [`unlock`]; without `prompt`, nobody is asked: only keys and secrets given before are
    /// tried (for listings, which open many images at once).
    pub fn unlock_with(path: &Path, slots: &KeySlots, prompt: bool) -> Result<MasterKey> {
        let secrets = with(|r| {
            if let Some(k) = r.keys.iter().find(|k| k.key_id() == slots.key_id) {
                return Err(k.clone());
            }
            Ok(r.secrets.clone())
        });
        let secrets = match secrets {
            Err(k) => return Ok(k),
            Ok(s) => s,
        };
        for s in &secrets {
            if let Some(k) = slots.unlock(s) {
                add_key(k.clone());
                return Ok(k);
            }
        }
        // the prompt runs without the lock held (it waits for a person)
        let prompt = if prompt {
            with(|r| r.prompt.take())
        } else {
            None
        };
        let Some(prompt) = prompt else {
            return Err(if secrets.is_empty() {
                Error::KeyNeeded {
                    path: path.to_path_buf(),
                }
            } else {
                Error::WrongKey {
                    path: path.to_path_buf(),
                }
            });
        };
        let mut out = Err(Error::KeyNeeded {
            path: path.to_path_buf(),
        });
        for attempt in 1..=3 {
            let Some(s) = prompt(path, attempt) else {
                break;
            };
            if let Some(k) = slots.unlock(&s) {
                add_secret(s);
                add_key(k.clone());
                out = Ok(k);
                break;
            }
            out = Err(Error::WrongKey {
                path: path.to_path_buf(),
            });
        }
        with(|r| {
            if r.prompt.is_none() {
                r.prompt = Some(prompt);
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ring-backed cipher makes the bytes of RustCrypto's XChaCha20-Poly1305 (itself
    /// checked against the draft's vectors), at every length around ChaCha's 64-byte blocks
    /// and ring's larger strides, and opens what that one seals.
    #[test]
    fn xchacha_matches_the_reference_cipher() {
        use chacha20poly1305::aead::{AeadInOut, KeyInit};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        for (i, len) in [
            0usize, 1, 15, 16, 63, 64, 65, 255, 256, 257, 1000, 4096, 300_001,
        ]
        .into_iter()
        .enumerate()
        {
            let key: [u8; 32] = random().unwrap();
            let nonce: [u8; NONCE_LEN] = random().unwrap();
            let aad = vec![i as u8; i * 7];
            let plain: Vec<u8> = (0..len).map(|j| (j * 31 + i) as u8).collect();
            let mut ours = plain.clone();
            let tag = XChaCha::new(&key).seal(&nonce, &aad, &mut ours);
            let mut theirs = plain.clone();
            let their_tag = XChaCha20Poly1305::new(&key.into())
                .encrypt_inout_detached(&XNonce::from(nonce), &aad, theirs.as_mut_slice().into())
                .unwrap();
            assert_eq!(ours, theirs, "ciphertext, {len} bytes");
            assert_eq!(tag.as_slice(), their_tag.as_slice(), "tag, {len} bytes");
            let mut back = theirs.clone();
            assert!(XChaCha::new(&key).open(&nonce, &aad, &mut back, &their_tag));
            assert_eq!(back, plain);
            if len > 0 {
                let mut bent = theirs.clone();
                bent[len / 2] ^= 1;
                assert!(!XChaCha::new(&key).open(&nonce, &aad, &mut bent, &tag));
            }
            let mut other = [0u8; NONCE_LEN];
            other.copy_from_slice(&nonce);
            other[20] ^= 1; // the part ring's nonce carries, not the subkey's
            let mut c = theirs.clone();
            assert!(!XChaCha::new(&key).open(&other, &aad, &mut c, &tag));
            assert!(!XChaCha::new(&key).open(&nonce, &aad, &mut theirs, &tag[..15]));
        }
    }

    #[test]
    fn frames_open_only_in_their_place_and_image() {
        let k = MasterKey::generate().unwrap();
        let s = k.sealer([1; 16]);
        let sealed = s.seal(Place::Frame(4096, 1), b"secret bytes").unwrap();
        assert_eq!(sealed.len(), 12 + OVERHEAD);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let mut out = Vec::new();
        assert!(s.open(Place::Frame(4096, 1), &sealed, &mut out));
        assert_eq!(out, b"secret bytes");
        assert!(!s.open(Place::Frame(8192, 1), &sealed, &mut out), "moved");
        assert!(
            !s.open(Place::Frame(4096, 2), &sealed, &mut out),
            "other codec"
        );
        assert!(!s.open(Place::Meta, &sealed, &mut out), "other section");
        assert!(
            !k.sealer([2; 16])
                .open(Place::Frame(4096, 1), &sealed, &mut out),
            "other image"
        );
        let other = MasterKey::generate().unwrap();
        assert!(!other
            .sealer([1; 16])
            .open(Place::Frame(4096, 1), &sealed, &mut out));
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(
            !s.open(Place::Frame(4096, 1), &flipped, &mut out),
            "flipped"
        );
        assert!(
            !s.open(Place::Frame(4096, 1), &sealed[..10], &mut out),
            "short"
        );
    }

    #[test]
    fn pack_frames_are_bound_to_the_store_and_their_place_in_it_not_the_image() {
        let k = MasterKey::generate().unwrap();
        let at = super::super::packs::address(7, 4096);
        let sealed = k
            .sealer([1; 16])
            .seal(Place::Frame(at, 1), b"shared")
            .unwrap();
        let mut out = Vec::new();
        // any image of the store opens it: the frame is shared
        assert!(k
            .sealer([2; 16])
            .open(Place::Frame(at, 1), &sealed, &mut out));
        assert_eq!(out, b"shared");
        let moved = super::super::packs::address(8, 4096);
        assert!(!k
            .sealer([1; 16])
            .open(Place::Frame(moved, 1), &sealed, &mut out));
        assert!(!k
            .sealer([1; 16])
            .open(Place::Frame(at, 2), &sealed, &mut out));
        // another store (another key), and a plain frame at the same low bits
        let other = MasterKey::generate().unwrap();
        assert!(!other
            .sealer([1; 16])
            .open(Place::Frame(at, 1), &sealed, &mut out));
        assert!(!k
            .sealer([1; 16])
            .open(Place::Frame(4096, 1), &sealed, &mut out));
    }

    #[test]
    fn slots_unlock_with_their_secret_only_and_survive_encoding() {
        let k = MasterKey::generate().unwrap();
        let (rk, text) = new_recovery_key().unwrap();
        let slots = KeySlots::new(
            &k,
            &[
                (SlotKind::Passphrase, b"correct horse"),
                (SlotKind::Recovery, &rk[..]),
            ],
        )
        .unwrap();
        let mut header = vec![0u8; 4096];
        slots.encode_into(&mut header);
        let back = KeySlots::decode(&header).unwrap();
        assert_eq!(back, slots);
        assert_eq!(back.unlock("correct horse").unwrap().key_id(), k.key_id());
        assert!(back.unlock("wrong horse").is_none());
        assert_eq!(back.unlock(&text).unwrap().key_id(), k.key_id());
        assert_eq!(
            back.unlock(&text.to_lowercase().replace('-', " "))
                .unwrap()
                .key_id(),
            k.key_id()
        );
        // a hostile slot asking for too much memory is refused before Argon2 runs
        let mut bad = header.clone();
        bad[SLOTS_AREA.start + 16 + 4..SLOTS_AREA.start + 16 + 8]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(KeySlots::decode(&bad).is_err());
        let mut none = header.clone();
        none[KEYS_AT + 16..KEYS_AT + 20].copy_from_slice(&0u32.to_le_bytes());
        assert!(KeySlots::decode(&none).is_err());
    }

    #[test]
    fn recovery_keys_round_trip_and_a_typo_is_not_a_key() {
        for _ in 0..20 {
            let (k, text) = new_recovery_key().unwrap();
            assert_eq!(text.len(), 52 + 12);
            assert_eq!(*parse_recovery_key(&text).unwrap(), *k);
            let mut typo: Vec<char> = text.chars().collect();
            typo[5] = if typo[5] == 'A' { 'B' } else { 'A' };
            let typo: String = typo.into_iter().collect();
            // a single changed digit fails the 4-bit check 15 times in 16; it never yields
            // the same key
            assert!(parse_recovery_key(&typo).is_none_or(|t| *t != *k));
        }
        assert!(parse_recovery_key("not a key").is_none());
    }

    #[test]
    fn keyed_content_hashes_differ_from_plain_and_between_keys() {
        let a = MasterKey::generate().unwrap().content_hash();
        let b = MasterKey::generate().unwrap().content_hash();
        let plain = ContentHash::Plain;
        assert_eq!(plain.hash(b"x"), *blake3::hash(b"x").as_bytes());
        assert_ne!(a.hash(b"x"), plain.hash(b"x"));
        assert_ne!(a.hash(b"x"), b.hash(b"x"));
        assert_eq!(a.zeros(5), a.hash(&[0; 5]));
    }
}
