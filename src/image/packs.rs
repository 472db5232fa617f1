//! Deduplicating stores ("fleet stores", `image --dedup`): many machines' images in one
//! folder (local, on a network store, or `s3://bucket/prefix`), each chunk stored once.
//!
//! **Layout** of a store folder `DIR`:
//! - `DIR/NAME.lbi`: each image, small: a header with [`super::format::FLAG_PACKED`], its metadata, its
//!   index and its footer, but no frames. Its records point into packs.
//! - `DIR/packs/XXXXXXXX.pack`: frames (zstd or raw, as in any image), about
//!   [`PACK_TARGET`] bytes each, named by a random 31-bit ID. A record's `file_offset` is a
//!   *pack address*: bit 63 set, the pack ID in bits 32..63, the offset in the pack below.
//! - `DIR/index/ID.idx`: one per image written, listing the records of the frames that image
//!   added to packs (hash, pack address, stored length, codec, place in its frame). A writer
//!   loads every index to learn what the store already holds.
//!
//! **Writing** ([`PackWriter`]): the job passes the store's known hashes to the encoder, which
//! leaves known blocks out of the frames it compresses; the writer points their records at
//! the packs that hold them and appends new frames to a pack of its own. A pack's name is
//! reserved when it starts (created exclusively: `O_EXCL`, or `If-None-Match: *` in S3), so
//! two writers never share one; its bytes are written when it is full. Then, in this order:
//! every pack is durable, the image's index file is written, and last the image itself. A
//! run that stops earlier leaves packs (and perhaps an index) that no image names: space, not
//! damage; a later writer may even reuse their chunks.
//!
//! **Reading**: [`super::volumes::VolumeFile`] maps pack addresses to `DIR/packs/…`, so the
//! reader, `verify`, `restore` and every other command read a packed image as any other.
//!
//! **Concurrency**: writers only create new objects (packs with reserved names, index files
//! and images with unique names), so any number may write at once. Deleting is [`gc`]'s
//! alone: it removes packs that no image in the folder uses, and only while no writer runs.
//! Writers hold a lock (`DIR/locks/write-ID.lock`, refreshed every minute) from before they
//! read the index until their image is written and checked; the collector holds
//! `DIR/locks/gc-ID.lock`, waits until no writer's lock is left, and writers that find it
//! wait until it is gone. A lock not refreshed for 30 minutes is a dead run's and is
//! ignored. So a chunk a writer counts on cannot be deleted under it, and a collection never
//! sees an image half-written.
//!
//! **Encrypted stores** (`image --dedup --encrypt`): a store is encrypted or plain from its
//! first image on. An encrypted store has one master key, whose key slots are in
//! `DIR/store.key` ([`StoreKeys`]), written by the first writer; every image of the store
//! is encrypted under that key and carries a copy of its slots in its header. So the
//! content IDs (keyed blake3) are the same in every image of the store, and chunks still
//! deduplicate across machines; a frame in a pack is sealed to its pack address and the
//! store's key ID, not to one image ([`super::crypt`]). The index files list content IDs and
//! pack addresses only.

use super::crypt::{self, KeySlots, Sealer};
use super::format::{Codec, Record, RECORD_LEN};
use crate::error::{Error, Result};
use crate::store::s3;
use crossbeam_channel::{bounded, Sender};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bit 63 of a record's `file_offset`: the frame is in a pack.
pub const PACKED_BIT: u64 = 1 << 63;

/// About how many bytes one pack holds before the next one starts.
pub const PACK_TARGET: usize = 32 << 20;

/// The magic at the start of an index file.
const INDEX_MAGIC: [u8; 8] = *b"LBPKIDX1";

/// The place of a stored record: (file offset, stored length, codec, frame offset).
pub type Place = (u64, u32, Codec, u32);

/// Where a store holds each chunk it holds, by hash.
pub type Known = HashMap<[u8; 32], Place>;

/// The pack address of byte `at` of pack `id`.
pub fn address(id: u32, at: u32) -> u64 {
    PACKED_BIT | (u64::from(id & 0x7fff_ffff) << 32) | u64::from(at)
}

/// Whether `offset` is a pack address.
pub fn is_address(offset: u64) -> bool {
    offset & PACKED_BIT != 0
}

/// A pack address's (pack ID, offset in the pack).
pub fn split(offset: u64) -> (u32, u32) {
    (((offset >> 32) & 0x7fff_ffff) as u32, offset as u32)
}

/// `DIR/packs/XXXXXXXX.pack`: pack `id` of the store `dir`.
pub fn pack_path(dir: &Path, id: u32) -> PathBuf {
    dir.join("packs").join(format!("{id:08x}.pack"))
}

/// `DIR/index`: the store's index files.
pub fn index_dir(dir: &Path) -> PathBuf {
    dir.join("index")
}

/// Creates `path` with `data` unless it exists: false when it does. Local files are created
/// with `O_EXCL` and synced; S3 objects with `If-None-Match: *`.
fn put_new(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    if s3::is_s3(path) {
        return s3::put_new(path, data);
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    f.write_all(data)?;
    f.sync_all()?;
    Ok(true)
}

/// Replaces the content of `path` (a pack whose name was reserved) with `data`, durably.
fn put(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if s3::is_s3(path) {
        return s3::put(path, data);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// Reads all of the (small) file or object `path`.
fn get(path: &Path) -> std::io::Result<Vec<u8>> {
    if s3::is_s3(path) {
        return s3::get(path);
    }
    std::fs::read(path)
}

/// The files (objects) directly in `dir`; none when it does not exist.
fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if s3::is_s3(dir) {
        return s3::list_folder(dir);
    }
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes the store `dir`'s index file `name` listing `records` (those of new frames).
fn write_index(dir: &Path, name: &str, records: &[Record]) -> Result<PathBuf> {
    let mut b = Vec::with_capacity(20 + records.len() * RECORD_LEN);
    b.extend_from_slice(&INDEX_MAGIC);
    b.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for r in records {
        r.encode(&mut b);
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let path = index_dir(dir).join(format!("{name}.idx"));
    match put_new(&path, &b) {
        Ok(true) => Ok(path),
        Ok(false) => Err(Error::Refused {
            path: path.clone(),
            reason: "an index file of that name exists".into(),
        }),
        Err(e) => Err(Error::io("writing", &path, e)),
    }
}

/// Decodes an index file's records; the error says what is wrong.
fn read_index(b: &[u8]) -> std::result::Result<Vec<Record>, String> {
    if b.len() < 20 || b[..8] != INDEX_MAGIC {
        return Err("not a Lifeboat pack index".into());
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("its checksum does not match (damaged or cut short)".into());
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&body[8..16]);
    let count = u64::from_le_bytes(n) as usize;
    let recs = &body[16..];
    if recs.len() != count.saturating_mul(RECORD_LEN) {
        return Err(format!(
            "{count} records do not fit its {} bytes",
            recs.len()
        ));
    }
    recs.chunks_exact(RECORD_LEN)
        .enumerate()
        .map(|(i, c)| {
            Record::decode(c, i as u64, 16 + (i * RECORD_LEN) as u64).map_err(|e| e.to_string())
        })
        .collect()
}

/// What a store already holds: every stored record's place, by hash, from its index files.
/// A damaged index file is skipped (its chunks are stored again), never trusted.
pub fn load_known(dir: &Path) -> Result<(Known, Vec<String>)> {
    let idx = index_dir(dir);
    let files = list(&idx).map_err(|e| Error::io("listing", &idx, e))?;
    let mut known = HashMap::new();
    let mut skipped = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "idx"))
    {
        let b = get(f).map_err(|e| Error::io("reading", f, e))?;
        match read_index(&b) {
            Ok(recs) => {
                for r in recs {
                    if r.codec.stored_here() && is_address(r.file_offset) {
                        known.entry(r.hash).or_insert((
                            r.file_offset,
                            r.stored_len,
                            r.codec,
                            r.frame_offset,
                        ));
                    }
                }
            }
            Err(why) => skipped.push(format!("{}: {why}", f.display())),
        }
    }
    Ok((known, skipped))
}

/// `DIR/store.key`: the key slots of an encrypted store.
pub fn store_key_path(dir: &Path) -> PathBuf {
    dir.join("store.key")
}

/// The magic at the start of `store.key`.
const STORE_KEY_MAGIC: [u8; 8] = *b"LBSTKEY1";
/// The length of `store.key`: laid out as an image header's key area (the key ID at
/// [`crypt::KEYS_AT`], the slots in [`crypt::SLOTS_AREA`]), then a CRC-32 of the rest.
const STORE_KEY_LEN: usize = 4096;

/// The key slots of an encrypted store, as `DIR/store.key` holds them.
#[derive(Debug, Clone)]
pub struct StoreKeys;

impl StoreKeys {
    /// Encodes `slots` as the bytes of `store.key`.
    pub fn encode(slots: &KeySlots) -> Vec<u8> {
        let mut b = vec![0u8; STORE_KEY_LEN];
        b[..8].copy_from_slice(&STORE_KEY_MAGIC);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        slots.encode_into(&mut b);
        let crc = crc32fast::hash(&b[..STORE_KEY_LEN - 4]);
        b[STORE_KEY_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes the bytes of `store.key`; the error says what is wrong.
    pub fn decode(b: &[u8]) -> std::result::Result<KeySlots, String> {
        if b.len() != STORE_KEY_LEN || b[..8] != STORE_KEY_MAGIC {
            return Err("not a Lifeboat store key file".into());
        }
        if crc32fast::hash(&b[..STORE_KEY_LEN - 4]).to_le_bytes() != b[STORE_KEY_LEN - 4..] {
            return Err("its checksum does not match (damaged or cut short)".into());
        }
        if b[8..12] != 1u32.to_le_bytes() {
            return Err("it is of a later version of Lifeboat".into());
        }
        KeySlots::decode(b).map_err(|e| e.to_string())
    }

    /// The key slots of the store `dir`: `None` for a plain store (or a new folder).
    pub fn read(dir: &Path) -> Result<Option<KeySlots>> {
        let path = store_key_path(dir);
        let b = match get(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", &path, e)),
        };
        StoreKeys::decode(&b)
            .map(Some)
            .map_err(|why| Error::Refused {
                path,
                reason: format!(
                    "{why}: the store's key cannot be read, so nothing can be added to the \
                     store (its images still carry their own copies of the key slots)"
                ),
            })
    }

    /// Makes `slots` the store `dir`'s key, unless it has one. Returns the store's slots:
    /// `slots`, or those another writer made first.
    pub fn create(dir: &Path, slots: &KeySlots) -> Result<KeySlots> {
        let path = store_key_path(dir);
        match put_new(&path, &StoreKeys::encode(slots)) {
            Ok(true) => Ok(slots.clone()),
            Ok(false) => StoreKeys::read(dir)?.ok_or_else(|| Error::Refused {
                path,
                reason: "it appeared and vanished while the store's key was made".into(),
            }),
            Err(e) => Err(Error::io("writing", &path, e)),
        }
    }

    /// Replaces the store `dir`'s key slots with `slots` (`key add|remove DIR`), at once: a
    /// new file renamed over `store.key` (synced, then its folder), or one PUT in S3.
    pub fn replace(dir: &Path, slots: &KeySlots) -> Result<()> {
        let path = store_key_path(dir);
        let bytes = StoreKeys::encode(slots);
        let write = || -> std::io::Result<()> {
            if s3::is_s3(&path) {
                return s3::put(&path, &bytes);
            }
            let tmp = path.with_extension("key.new");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| Error::io("writing", &path, e))
    }
}

/// Deletes the file or object `path` (one already gone is fine).
fn delete(path: &Path) -> std::io::Result<()> {
    if s3::is_s3(path) {
        return s3::delete(path);
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The files in `dir` with their sizes.
fn list_sizes(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    if s3::is_s3(dir) {
        return s3::list_folder_sizes(dir);
    }
    Ok(list(dir)?
        .into_iter()
        .map(|p| {
            let l = std::fs::metadata(&p).map_or(0, |m| m.len());
            (p, l)
        })
        .collect())
}

/// `DIR/locks`: who is writing or collecting.
fn locks_dir(dir: &Path) -> PathBuf {
    dir.join("locks")
}

/// A lock not refreshed for this long belongs to a run that died (writers refresh theirs
/// every minute).
pub const LOCK_STALE_SECS: u64 = 30 * 60;

/// How often a lock is refreshed.
const LOCK_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock_body(kind: &str) -> Vec<u8> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    serde_json::json!({
        "kind": kind,
        "refreshed_unix": unix_now(),
        "host": host.trim(),
        "pid": std::process::id(),
    })
    .to_string()
    .into_bytes()
}

/// One lock in `DIR/locks`: its path, kind ("write", "gc" or "keys") and when it was
/// refreshed.
#[derive(Debug, Clone)]
struct LockInfo {
    path: PathBuf,
    kind: String,
    refreshed_unix: u64,
    host: String,
}

impl LockInfo {
    fn stale(&self) -> bool {
        unix_now().saturating_sub(self.refreshed_unix) > LOCK_STALE_SECS
    }
}

/// The locks of the store `dir` (a lock that cannot be read counts as a fresh one of
/// unknown kind: it blocks everything until it is gone or stale).
fn read_locks(dir: &Path) -> Result<Vec<LockInfo>> {
    let ld = locks_dir(dir);
    let mut out = Vec::new();
    for p in list(&ld).map_err(|e| Error::io("listing", &ld, e))? {
        let v: serde_json::Value = match get(&p) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading", &p, e)),
        };
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        out.push(LockInfo {
            path: p,
            // a lock caught between its creation and its first write (or a refresh's
            // truncation) is empty: its name still says whose it is
            kind: v["kind"]
                .as_str()
                .or_else(|| {
                    ["write", "gc", "keys"]
                        .into_iter()
                        .find(|k| name.starts_with(&format!("{k}-")))
                })
                .unwrap_or("unknown")
                .to_string(),
            refreshed_unix: v["refreshed_unix"].as_u64().unwrap_or_else(unix_now),
            host: v["host"].as_str().unwrap_or("?").to_string(),
        });
    }
    Ok(out)
}

/// How long a writer waits for a collection to end, and a collection for writers: 10
/// minutes, or `LIFEBOAT_STORE_LOCK_WAIT` seconds.
fn lock_wait() -> std::time::Duration {
    std::time::Duration::from_secs(
        std::env::var("LIFEBOAT_STORE_LOCK_WAIT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    )
}

/// The pause between two looks at the locks: 1.5 to 2.5 s, at random, so that a writer and
/// a collection do not look in step.
fn poll_pause() {
    let jitter = getrandom::u32().unwrap_or(0) % 1000;
    std::thread::sleep(std::time::Duration::from_millis(1500 + u64::from(jitter)));
}

/// A lock held in a store: refreshed by a thread, deleted when dropped.
#[derive(Debug)]
pub struct StoreLock {
    path: PathBuf,
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl StoreLock {
    /// Creates a lock of `kind` in `dir` under a new name.
    fn create(dir: &Path, kind: &str) -> Result<PathBuf> {
        let id = getrandom::u64()
            .map_err(|e| Error::io("naming a lock in", dir, std::io::Error::other(e)))?;
        let path = locks_dir(dir).join(format!("{kind}-{id:016x}.lock"));
        match put_new(&path, &lock_body(kind)) {
            Ok(true) => Ok(path),
            Ok(false) => Err(Error::Refused {
                path,
                reason: "a lock of that random name exists".into(),
            }),
            Err(e) => Err(Error::io("creating", &path, e)),
        }
    }

    /// Holds `path` (of `kind`): refreshes it until dropped.
    fn hold(path: PathBuf, kind: &'static str) -> StoreLock {
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let (p, st) = (path.clone(), std::sync::Arc::clone(&stop));
        let refresher = std::thread::spawn(move || {
            let (m, cv) = &*st;
            let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
            // the flag is looked at before every wait: a stop signalled before this thread
            // first took the mutex would otherwise be lost, and Drop's join wait LOCK_REFRESH
            while !*stopped {
                let (g, t) = cv
                    .wait_timeout(stopped, LOCK_REFRESH)
                    .unwrap_or_else(|e| e.into_inner());
                stopped = g;
                if !*stopped && t.timed_out() {
                    let _ = put(&p, &lock_body(kind));
                }
            }
        });
        StoreLock {
            path,
            stop,
            refresher: Some(refresher),
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        {
            let (m, cv) = &*self.stop;
            *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let _ = delete(&self.path);
    }
}

/// Takes a writer's lock in the store `dir`: any number of writers hold one at once, but
/// none while a collection ([`gc`]) runs. Waits for a running collection (up to
/// ten minutes, `LIFEBOAT_STORE_LOCK_WAIT`); the error names it.
pub fn lock_writer(dir: &Path) -> Result<StoreLock> {
    let deadline = std::time::Instant::now() + lock_wait();
    loop {
        let mine = StoreLock::create(dir, "write")?;
        let gcs: Vec<LockInfo> = read_locks(dir)?
            .into_iter()
            .filter(|l| l.path != mine && l.kind != "write" && !l.stale())
            .collect();
        let Some(g) = gcs.first() else {
            return Ok(StoreLock::hold(mine, "write"));
        };
        let _ = delete(&mine);
        if std::time::Instant::now() > deadline {
            let what = if g.kind == "keys" {
                "its passphrases are being changed (lifeboat key"
            } else {
                "the store is being cleaned up (lifeboat gc"
            };
            return Err(Error::Refused {
                path: dir.to_path_buf(),
                reason: format!(
                    "{what}, {} on {}); try again when it ends",
                    g.path.display(),
                    g.host
                ),
            });
        }
        poll_pause();
    }
}

/// Takes the store's exclusive lock in `dir`, of `kind` ("gc" for a collection, "keys" for
/// a change of the store's key slots): waits until no writer holds a lock (up to ten
/// minutes, `LIFEBOAT_STORE_LOCK_WAIT`), and keeps new writers waiting until it is dropped;
/// refuses when another collection or key change runs.
pub fn lock_exclusive(dir: &Path, kind: &'static str) -> Result<StoreLock> {
    let mine = StoreLock::create(dir, kind)?;
    let held = StoreLock::hold(mine.clone(), kind);
    let deadline = std::time::Instant::now() + lock_wait();
    loop {
        let others: Vec<LockInfo> = read_locks(dir)?
            .into_iter()
            .filter(|l| l.path != mine && !l.stale())
            .collect();
        if let Some(g) = others.iter().find(|l| l.kind != "write") {
            return Err(Error::Refused {
                path: dir.to_path_buf(),
                reason: format!(
                    "another clean-up or key change holds {} (on {})",
                    g.path.display(),
                    g.host
                ),
            });
        }
        if others.is_empty() {
            return Ok(held);
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Refused {
                path: dir.to_path_buf(),
                reason: format!(
                    "{} image(s) are being written into the store (locks {}); nothing was \
                     {}, try again when they end",
                    others.len(),
                    others
                        .iter()
                        .map(|l| l.path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if kind == "gc" { "deleted" } else { "changed" }
                ),
            });
        }
        poll_pause();
    }
}

/// What a collection found and did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    /// The store.
    pub store: PathBuf,
    /// Images read (every one in the folder).
    pub images: usize,
    /// Packs in the store before.
    pub packs: usize,
    /// Their bytes.
    pub pack_bytes: u64,
    /// The packs no image uses (deleted unless `dry_run`).
    pub unused_packs: Vec<PathBuf>,
    /// Their bytes.
    pub unused_bytes: u64,
    /// Index files rewritten without those packs' chunks, and deleted.
    pub index_rewritten: usize,
    /// Index files deleted (all their packs unused).
    pub index_deleted: usize,
    /// Only reported, nothing deleted.
    pub dry_run: bool,
}

/// Deletes what no image in the store `dir` uses: packs that no image's records point
/// into (left by deleted images, or by writers that died), and their chunks from the index
/// files, so no later writer counts on them. Safe with writers: it waits until none writes
/// and keeps them out while it runs ([`lock_writer`]). Every image in the folder must be
/// readable: one that is not (damaged, or encrypted without its key) stops it before
/// anything is deleted, since what that image uses is unknown.
pub fn gc(dir: &Path, dry_run: bool) -> Result<GcReport> {
    let _lock = lock_exclusive(dir, "gc")?;
    let mut report = GcReport {
        store: dir.to_path_buf(),
        dry_run,
        ..GcReport::default()
    };
    let mut used = std::collections::HashSet::new();
    let files = list(dir).map_err(|e| Error::io("listing", dir, e))?;
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "lbi"))
    {
        let r = super::ImageReader::open(f).map_err(|e| Error::Refused {
            path: f.clone(),
            reason: format!(
                "it cannot be read ({e}), so the chunks it uses are unknown; nothing was \
                 deleted (move it out of the store, or mend it, first)"
            ),
        })?;
        report.images += 1;
        for rec in r.records() {
            if rec.codec.stored_here() && is_address(rec.file_offset) {
                used.insert(split(rec.file_offset).0);
            }
        }
    }
    let pd = dir.join("packs");
    let mut doomed = std::collections::HashSet::new();
    for (p, len) in list_sizes(&pd).map_err(|e| Error::io("listing", &pd, e))? {
        let Some(id) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pack"))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        else {
            continue;
        };
        report.packs += 1;
        report.pack_bytes += len;
        if !used.contains(&id) {
            doomed.insert(id);
            report.unused_packs.push(p);
            report.unused_bytes += len;
        }
    }
    // first no index may name a doomed pack (a writer must never count on one), then the
    // packs go: a collection that stops half-way leaves unused packs, never missing ones
    let idx = index_dir(dir);
    for f in list(&idx).map_err(|e| Error::io("listing", &idx, e))? {
        let b = get(&f).map_err(|e| Error::io("reading", &f, e))?;
        let Ok(recs) = read_index(&b) else {
            continue; // writers skip it anyway
        };
        let keep: Vec<Record> = recs
            .iter()
            .filter(|r| !doomed.contains(&split(r.file_offset).0))
            .cloned()
            .collect();
        if keep.len() == recs.len() {
            continue;
        }
        if keep.is_empty() {
            report.index_deleted += 1;
        } else {
            report.index_rewritten += 1;
            if !dry_run {
                let id = getrandom::u64()
                    .map_err(|e| Error::io("naming an index in", dir, std::io::Error::other(e)))?;
                write_index(dir, &format!("gc-{id:016x}"), &keep)?;
            }
        }
        if !dry_run {
            delete(&f).map_err(|e| Error::io("deleting", &f, e))?;
        }
    }
    if !dry_run {
        for p in &report.unused_packs {
            delete(p).map_err(|e| Error::io("deleting", p, e))?;
        }
    }
    Ok(report)
}

/// The images (`*.lbi`) in the store `dir`, in name order.
pub fn images(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(list(dir)
        .map_err(|e| Error::io("listing", dir, e))?
        .into_iter()
        .filter(|f| f.extension().is_some_and(|x| x == "lbi"))
        .collect())
}

/// Whether `dir` is a deduplicating store (it has packs, an index, or a store key).
pub fn is_store(dir: &Path) -> bool {
    if s3::is_s3(dir) {
        // packs too: a collection that stopped after dropping the index can be run again
        return list(&index_dir(dir)).is_ok_and(|v| !v.is_empty())
            || list(&dir.join("packs")).is_ok_and(|v| !v.is_empty())
            || s3::get(&store_key_path(dir)).is_ok();
    }
    index_dir(dir).is_dir() || dir.join("packs").is_dir() || store_key_path(dir).is_file()
}

/// A pack being filled, or handed to the writer thread.
struct Pack {
    id: u32,
    data: Vec<u8>,
}

/// Appends frames to packs of the store `dir` (see the module doc).
pub struct PackWriter {
    dir: PathBuf,
    current: Option<Pack>,
    /// Packs handed to the thread that writes them.
    tx: Option<Sender<Pack>>,
    worker: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// The IDs of the packs this writer made.
    made: Vec<u32>,
    /// Bytes of frames added.
    bytes: u64,
}

impl std::fmt::Debug for PackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackWriter")
            .field("dir", &self.dir)
            .field("made", &self.made.len())
            .finish_non_exhaustive()
    }
}

impl PackWriter {
    /// A writer of packs into the store `dir`.
    pub fn new(dir: &Path) -> PackWriter {
        let (tx, rx) = bounded::<Pack>(1);
        let d = dir.to_path_buf();
        let worker = std::thread::spawn(move || {
            let mut first_err = None;
            for p in rx {
                if first_err.is_none() {
                    if let Err(e) = put(&pack_path(&d, p.id), &p.data) {
                        first_err = Some(std::io::Error::new(
                            e.kind(),
                            format!("writing {}: {e}", pack_path(&d, p.id).display()),
                        ));
                    }
                }
            }
            first_err.map_or(Ok(()), Err)
        });
        PackWriter {
            dir: dir.to_path_buf(),
            current: None,
            tx: Some(tx),
            worker: Some(worker),
            made: Vec::new(),
            bytes: 0,
        }
    }

    /// Reserves a new pack's name.
    fn start_pack(&mut self) -> Result<Pack> {
        for _ in 0..64 {
            let id = getrandom::u32()
                .map_err(|e| Error::io("naming a pack in", &self.dir, std::io::Error::other(e)))?
                & 0x7fff_ffff;
            let path = pack_path(&self.dir, id);
            match put_new(&path, &[]) {
                Ok(true) => {
                    self.made.push(id);
                    return Ok(Pack {
                        id,
                        data: Vec::with_capacity(PACK_TARGET + (8 << 20)),
                    });
                }
                Ok(false) => continue,
                Err(e) => return Err(Error::io("creating", &path, e)),
            }
        }
        Err(Error::Refused {
            path: self.dir.join("packs"),
            reason: "64 random pack names in a row were taken".into(),
        })
    }

    /// Appends `frame` (stored with `codec`), sealed to its pack address when `sealer` is
    /// given (an encrypted store); its pack address and the bytes it takes there.
    pub fn add(
        &mut self,
        frame: &mut [u8],
        codec: Codec,
        sealer: Option<&Sealer>,
    ) -> Result<(u64, usize)> {
        if self.current.is_none() {
            self.current = Some(self.start_pack()?);
        }
        let Some(p) = self.current.as_mut() else {
            return Err(Error::Unsupported("a pack that vanished".into()));
        };
        let at = address(p.id, p.data.len() as u32);
        let len = match sealer {
            // encrypted where it lies (no copy of the frame): nonce, ciphertext, tag
            Some(s) => {
                let (nonce, tag) = s.seal_in_place(crypt::Place::Frame(at, codec as u8), frame)?;
                p.data.extend_from_slice(&nonce);
                p.data.extend_from_slice(frame);
                p.data.extend_from_slice(&tag);
                frame.len() + crypt::OVERHEAD
            }
            None => {
                p.data.extend_from_slice(frame);
                frame.len()
            }
        };
        self.bytes += len as u64;
        if p.data.len() >= PACK_TARGET {
            self.hand_over()?;
        }
        Ok((at, len))
    }

    /// Hands the current pack to the writer thread.
    fn hand_over(&mut self) -> Result<()> {
        if let (Some(p), Some(tx)) = (self.current.take(), &self.tx) {
            let path = pack_path(&self.dir, p.id);
            tx.send(p).map_err(|_| {
                Error::io(
                    "writing",
                    &path,
                    std::io::Error::other("the pack writer stopped"),
                )
            })?;
        }
        Ok(())
    }

    /// Bytes of frames added so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the last pack and waits until every pack is durable; then writes the index
    /// file `name` of the frames added (`records`: the image's records, of which those in this
    /// writer's packs are listed).
    pub fn finish(mut self, name: &str, records: &[Record]) -> Result<()> {
        self.hand_over()?;
        self.tx = None;
        if let Some(w) = self.worker.take() {
            w.join()
                .map_err(|_| Error::Unsupported("the pack writer panicked".into()))?
                .map_err(|e| Error::io("writing packs in", &self.dir, e))?;
        }
        let mine: std::collections::HashSet<u32> = self.made.iter().copied().collect();
        let mut seen = std::collections::HashSet::new();
        let new: Vec<Record> = records
            .iter()
            .filter(|r| {
                r.codec.stored_here()
                    && is_address(r.file_offset)
                    && mine.contains(&split(r.file_offset).0)
                    && seen.insert(r.hash)
            })
            .cloned()
            .collect();
        write_index(&self.dir, name, &new)?;
        Ok(())
    }
}

impl Drop for PackWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_and_are_told_from_offsets() {
        let a = address(0x1234_5678, 99);
        assert!(is_address(a) && !is_address(4096));
        assert_eq!(split(a), (0x1234_5678, 99));
        assert_eq!(
            split(address(0xffff_ffff, u32::MAX)),
            (0x7fff_ffff, u32::MAX)
        );
    }

    #[test]
    fn index_files_round_trip_and_damage_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let r = Record {
            disk_offset: 65536,
            raw_len: 4096,
            stored_len: 100,
            file_offset: address(7, 4096),
            codec: Codec::Zstd,
            frame_offset: 0,
            hash: [3; 32],
        };
        let p = write_index(d.path(), "one", &[r]).unwrap();
        let (known, skipped) = load_known(d.path()).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(
            known.get(&[3; 32]),
            Some(&(address(7, 4096), 100, Codec::Zstd, 0))
        );
        // a name is never written twice
        assert!(write_index(d.path(), "one", &[r]).is_err());
        // a flipped byte: skipped, and said so
        let mut b = std::fs::read(&p).unwrap();
        b[30] ^= 1;
        std::fs::write(&p, b).unwrap();
        let (known, skipped) = load_known(d.path()).unwrap();
        assert!(known.is_empty() && skipped.len() == 1, "{skipped:?}");
    }

    #[test]
    fn packs_get_names_of_their_own_and_hold_the_frames() {
        let d = tempfile::tempdir().unwrap();
        let mut w = PackWriter::new(d.path());
        let (a, _) = w
            .add(&mut b"first frame".to_vec(), Codec::Raw, None)
            .unwrap();
        let (b, _) = w.add(&mut b"second".to_vec(), Codec::Raw, None).unwrap();
        assert_eq!(split(a).0, split(b).0);
        assert_eq!(split(b).1, 11);
        let (id, _) = split(a);
        w.finish("img", &[]).unwrap();
        let bytes = std::fs::read(pack_path(d.path(), id)).unwrap();
        assert_eq!(bytes, b"first framesecond");
        assert!(index_dir(d.path()).join("img.idx").is_file());
    }

    #[test]
    fn sealed_pack_frames_open_at_their_address_and_store_keys_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let key = crypt::MasterKey::generate().unwrap();
        let sealer = key.sealer([5; 16]);
        let mut w = PackWriter::new(d.path());
        let mut plain = b"confidential frame".to_vec();
        let (a, len) = w
            .add(&mut plain.clone(), Codec::Raw, Some(&sealer))
            .unwrap();
        assert_eq!(len, plain.len() + crypt::OVERHEAD);
        w.finish("img", &[]).unwrap();
        let bytes = std::fs::read(pack_path(d.path(), split(a).0)).unwrap();
        assert!(!bytes.windows(12).any(|x| x == b"confidential"));
        let mut out = Vec::new();
        // another image of the same store opens it
        assert!(key.sealer([6; 16]).open(
            crypt::Place::Frame(a, Codec::Raw as u8),
            &bytes,
            &mut out
        ));
        assert_eq!(out, plain);
        plain.clear();

        assert!(StoreKeys::read(d.path()).unwrap().is_none());
        let slots = KeySlots::new(&key, &[(crypt::SlotKind::Passphrase, b"pw")]).unwrap();
        assert_eq!(StoreKeys::create(d.path(), &slots).unwrap(), slots);
        // a second writer's new key loses: the store keeps the first
        let other = crypt::MasterKey::generate().unwrap();
        let theirs = KeySlots::new(&other, &[(crypt::SlotKind::Passphrase, b"pw")]).unwrap();
        assert_eq!(StoreKeys::create(d.path(), &theirs).unwrap(), slots);
        assert!(is_store(d.path()));
        let mut b = std::fs::read(store_key_path(d.path())).unwrap();
        b[200] ^= 1;
        std::fs::write(store_key_path(d.path()), b).unwrap();
        assert!(StoreKeys::read(d.path()).is_err());
    }
}
