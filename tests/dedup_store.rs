//! Tier 1 (no root, no loop devices): deduplicating fleet stores (`image --dedup`, `gc`,
//! `verify DIR`; src/image/packs.rs), plain and encrypted (`--dedup --encrypt`: one master
//! key per store in `DIR/store.key`, frames in packs sealed to the store's key and their pack
//! address; src/image/crypt.rs), in a local folder and in S3 (a real SeaweedFS started on
//! 127.0.0.1 by the test, tests/common/servers.rs).
//!
//! The "disks" are plain files shaped like a fleet installed from one image: a 48 MiB base
//! with 28 MiB of incompressible "operating system" (noise), 6 MiB of text and 13 MiB of free
//! space (zeros); five machines are copies of it, each with its own user data written at the
//! same places in the free space (3 MiB of noise, 512 KiB of text) and its own 4 KiB config
//! block inside the system's text: 7% of each disk is its own. A file with no partition table
//! is imaged whole: every non-zero block stored, zero ones recorded as zeros (checked with
//! `info --json`), so a restore must give back the source byte for byte, even over a target
//! that held junk.
//!
//! Tests (each with its own store; they run side by side):
//! - `local_store_holds_five_machines_in_little_more_than_one`: five machines into one
//!   folder; each after the first adds about its own data; every image and `verify DIR`
//!   pass; three restore equal; the store is at most 1.6x one plain image (printed with five
//!   plain images).
//! - `s3_store_holds_five_machines_and_gc_frees_deleted_ones`: the same into
//!   `s3://lifeboat/fleet/`, an existing name refused, then two images deleted with the
//!   store's own tools, `gc --dry-run --json` (nothing deleted) and `gc --yes --json` (their
//!   packs and index files gone), the rest verify and restore, a deleted machine re-imaged.
//! - `gc_frees_exactly_the_packs_of_deleted_machines`: the same `gc` in a local folder, where
//!   the packs freed must be exactly those the two deleted machines wrote.
//! - `writers_and_gc_started_together_and_locks`: two writers and a `gc --yes` started at
//!   once over a store whose only image was deleted (gc may free its packs only if no writer
//!   counts on them), then a `gc` started while a writer holds its lock (it must wait and
//!   read that writer's image); all exit 0 and every image restores. Then a fresh writer's
//!   lock stops `gc` (exit 1, names it, deletes nothing), a fresh collector's lock stops a
//!   writer, and stale locks are ignored.
//! - `refusals_write_nothing`: `--dedup` with `--volume-size`, `--parent`, `--incremental`,
//!   `--rescue` (clap refuses them: exit 2), an existing name, `gc` of a folder that is no
//!   store, `gc` without confirmation, `gc` with an unreadable image.
//! - `damaged_pack_and_damaged_index`: a flipped byte in a pack fails `verify` and `restore`
//!   of the image using it and `verify DIR` (naming it), not the others; a flipped byte in an
//!   index file is skipped with a warning and its chunks are stored again.
//! - `encrypted_local_store_dedups_and_hides_content`: five machines into an encrypted
//!   store: `store.key` made once, each machine after the first adds about its own data, one
//!   key ID in every image, all verify with `--key-file`, two restore equal, at most 1.6x one
//!   plain image; no file of the store holds a secret line, the system's or a user's noise
//!   (which a plain store of the same machines shows) or their text. Refused, writing
//!   nothing: a wrong passphrase, none, a plain image, `key add`/`key remove` of its image;
//!   `verify`, `verify DIR` and `restore` without the key (the target untouched); `gc`
//!   without the key (nothing deleted), then with it (exactly the moved-out machine's packs);
//!   a damaged `store.key` (nothing added, the images still verify); `--dedup --encrypt`
//!   into a plain store, and into an empty folder without a passphrase. Last, `key add DIR`
//!   gives a second passphrase to store.key and every image (it verifies the store, `key
//!   list` of an image shows it), `key remove DIR 2` takes it away again (it opens nothing),
//!   the last slot stays, and a plain store has no slots to list.
//! - `encrypted_store_catches_moved_and_foreign_frames`: disks made from machine 1 with
//!   fresh noise blocks, so their packs' layout is known (one sealed 64 KiB frame per new
//!   block): a flipped byte, two frames swapped inside their pack, two packs swapped by name,
//!   and the same frames sealed by another store made with the same passphrase each fail
//!   `verify` ("does not decrypt") and `restore` of the image using them, and `verify DIR`
//!   names that image only; mended, all verify.
//! - `encrypted_s3_store_round_trip`: three machines into an encrypted `s3://` store: the
//!   `store.key` object, own data only per machine, no noise readable in any object, `verify`
//!   with the key (and refused without), a restore; one image deleted: `gc` without the key
//!   deletes nothing, with it exactly that machine's packs and index file; the rest verify
//!   and restore.
//! - `encrypted_store_first_writers_race_for_its_key`: two first writers of an empty folder
//!   started together: one key becomes the store's; a writer that planned another refuses
//!   (exit 1, "run again", no image), runs again into the same key, and no pack is orphaned.
//!
//! Every run is killed, and fails the test, past [`LIMIT`]. Two bugs these tests found in
//! src/image/packs.rs, now fixed, are guarded where they showed (each marked REGRESSION): a
//! `gc` that finds no writer took 60 s (the lock refresher missed its stop signal; see
//! [`Running::finish`]), and a `gc` that read a writer's lock file before its first write
//! refused as if another collection ran (`writers_and_gc_started_together_and_locks`).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::servers::Weed;
use common::{assert_same_file, noise, sparse, write_at};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MIB: u64 = 1 << 20;
/// Each disk's size.
const DISK: u64 = 48 * MIB;
/// The machines of the fleet.
const MACHINES: usize = 5;
/// The base's "operating system": noise at (offset, length, seed).
const OS_NOISE: [(u64, u64, u32); 2] = [(MIB, 20 * MIB, 0x21), (27 * MIB, 8 * MIB, 0x23)];
/// The base's text (documentation, configuration): 21..27 MiB.
const OS_TEXT: (u64, u64) = (21 * MIB, 6 * MIB);
/// Each machine's own config block, inside the system's text.
const CONFIG_AT: u64 = 24 * MIB + 8192;
/// Each machine's user data, in the base's free space (35..48 MiB): noise, then text.
const USER_NOISE: (u64, u64) = (38 * MIB, 3 * MIB);
const USER_TEXT: (u64, u64) = (43 * MIB, MIB / 2);
/// The incompressible bytes of one machine: a plain image stores at least these.
const NOISE_BYTES: u64 = 20 * MIB + 8 * MIB + 3 * MIB;

/// How long one lifeboat run may take. Every run here takes well under 3 s when the program
/// is right (a `gc` waits for running writers, a writer for a running `gc`, polling every
/// 2 s); a run past this is killed and fails the test.
const LIMIT: Duration = Duration::from_secs(25);

/// The environment variables of the AWS tools (and lifeboat's own knobs) that the test's own
/// environment must not pass on to lifeboat: a store's runs get [`Weed::env`], local ones none.
const FOREIGN: [&str; 13] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_S3_FORCE_PATH_STYLE",
    "LIFEBOAT_NET_RETRY_SECS",
    "LIFEBOAT_STORE_LOCK_WAIT",
];

type Env = [(String, String)];

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The lifeboat binary with `env` and `args`, stdin null, the foreign environment removed.
fn lifeboat(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    for k in FOREIGN {
        c.env_remove(k);
    }
    c.args(args).envs(env.iter().cloned()).stdin(Stdio::null());
    c
}

/// `lifeboat ARGS` of `cmd`, for messages.
fn describe(cmd: &Command) -> String {
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    format!("lifeboat {}", args.join(" "))
}

/// A lifeboat run started in the background, its output read as it comes; killed if
/// dropped while it runs (a failed test leaves no process behind).
struct Running {
    what: String,
    gc: bool,
    child: Child,
    out: Option<std::thread::JoinHandle<Vec<u8>>>,
    err: Option<std::thread::JoinHandle<Vec<u8>>>,
    started: Instant,
}

fn start(mut cmd: Command) -> Running {
    let what = describe(&cmd);
    let gc = cmd.get_args().next().is_some_and(|a| a == "gc");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            r.read_to_end(&mut b).unwrap();
            b
        })
    };
    let out = Some(drain(Box::new(child.stdout.take().unwrap())));
    let err = Some(drain(Box::new(child.stderr.take().unwrap())));
    Running {
        what,
        gc,
        child,
        out,
        err,
        started: Instant::now(),
    }
}

impl Running {
    fn output(&mut self) -> (Vec<u8>, Vec<u8>) {
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| h.map(|h| h.join().unwrap());
        (
            join(self.out.take()).unwrap_or_default(),
            join(self.err.take()).unwrap_or_default(),
        )
    }

    /// Waits for the run to end (killing it, and failing, past [`LIMIT`]); its output and
    /// how long it took.
    fn finish(mut self) -> (Output, Duration) {
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if self.started.elapsed() > LIMIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (out, err) = self.output();
                // REGRESSION (src/image/packs.rs, StoreLock::hold): the lock's refresher
                // thread once waited on its condvar without first looking at the stop flag,
                // so a lock dropped before that thread ran (any `gc` that finds no writer:
                // about 2 ms) lost its wake-up and Drop's join waited LOCK_REFRESH, 60 s.
                panic!(
                    "{} did not end within {LIMIT:?} (killed){}\n{}{}",
                    self.what,
                    if self.gc {
                        ": a gc that finds no writer should take well under a second (see \
                         the REGRESSION note in tests/dedup_store.rs: StoreLock's refresher \
                         missing the stop signal held the lock for 60 s)"
                    } else {
                        ""
                    },
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.started.elapsed();
        let (stdout, stderr) = self.output();
        (
            Output {
                status,
                stdout,
                stderr,
            },
            took,
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` (within [`LIMIT`]): its output and how long it took.
fn run(cmd: Command) -> (Output, Duration) {
    start(cmd).finish()
}

/// `lifeboat args`, which must succeed; its stdout and stderr.
fn ok(env: &Env, args: &[&str]) -> String {
    let cmd = lifeboat(env, args);
    let what = describe(&cmd);
    let (o, took) = run(cmd);
    let t = text(&o);
    assert!(o.status.success(), "{what}: {t}");
    eprintln!("ok ({took:.1?}): {what}");
    t
}

/// `lifeboat args`, which must succeed; its stdout parsed as JSON.
fn ok_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let (o, _) = run(lifeboat(env, args));
    assert!(o.status.success(), "lifeboat {args:?}: {}", text(&o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("lifeboat {args:?}: not JSON ({e}): {}", text(&o)))
}

/// `cmd`, which must exit with `code` and say `needle`; its output.
fn fails(cmd: Command, code: i32, needle: &str) -> String {
    let what = describe(&cmd);
    let (o, _) = run(cmd);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(code), "{what} should fail: {t}");
    assert!(t.contains(needle), "{what}: no `{needle}` in:\n{t}");
    let said = t.lines().find(|l| l.contains("error"));
    eprintln!("refused ({code}): {}", said.unwrap_or(t.trim()));
    t
}

// ---- the fleet ----

/// Text of `len` bytes, every line naming `who`.
fn text_bytes(len: u64, who: &str) -> Vec<u8> {
    let mut t = Vec::with_capacity(len as usize + 200);
    let mut i = 0u64;
    while (t.len() as u64) < len {
        t.extend_from_slice(
            format!(
                "{who}: /usr/share/doc/package-{}/README line {i}: how to configure it\n",
                i % 977
            )
            .as_bytes(),
        );
        i += 1;
    }
    t.truncate(len as usize);
    t
}

/// A temp dir with the base disk and the machines made from it.
struct Fleet {
    dir: tempfile::TempDir,
    machines: Vec<PathBuf>,
}

impl Fleet {
    fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        sparse(&base, DISK);
        write_at(
            &base,
            0,
            b"LIFEBOAT FLEET BASE DISK: a system installed once\n",
        );
        for (at, len, seed) in OS_NOISE {
            write_at(&base, at, &noise(len as usize, seed));
        }
        write_at(&base, OS_TEXT.0, &text_bytes(OS_TEXT.1, "system"));
        let machines = (1..=MACHINES)
            .map(|k| {
                let m = dir.path().join(format!("m{k}.img"));
                std::fs::copy(&base, &m).unwrap();
                let mut config = format!("[machine]\nhostname=pc{k}\nid={k:08}\n").into_bytes();
                config.resize(4096, b'#');
                write_at(&m, CONFIG_AT, &config);
                // odd seeds (noise() sets bit 0), one per machine
                let seed = 0x1001 + 2 * k as u32;
                write_at(&m, USER_NOISE.0, &noise(USER_NOISE.1 as usize, seed));
                write_at(
                    &m,
                    USER_TEXT.0,
                    &text_bytes(USER_TEXT.1, &format!("pc{k} user document")),
                );
                assert_eq!(std::fs::metadata(&m).unwrap().len(), DISK);
                m
            })
            .collect();
        Fleet { dir, machines }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Machine `k` (from 1).
    fn m(&self, k: usize) -> &Path {
        &self.machines[k - 1]
    }

    /// A restore target: a sparse file of the disk's size with junk over free space (where
    /// the sources hold zeros) and over data.
    fn target(&self, name: &str) -> PathBuf {
        let t = self.path().join(name);
        let _ = std::fs::remove_file(&t);
        sparse(&t, DISK);
        write_at(&t, 36 * MIB, &vec![b'J'; MIB as usize]);
        write_at(&t, 5 * MIB, &vec![b'K'; MIB as usize]);
        write_at(&t, DISK - 65536, &vec![b'L'; 65536]);
        t
    }

    /// Restores `img` (a path or an s3:// URL) over a junk target; it must equal machine `k`.
    fn restores_equal(&self, env: &Env, img: &str, k: usize) {
        self.restores_equal_with(env, img, k, &[]);
    }

    /// [`Fleet::restores_equal`] with `extra` arguments (`--key-file K`).
    fn restores_equal_with(&self, env: &Env, img: &str, k: usize, extra: &[&str]) {
        let t = self.target(&format!("restore-m{k}.img"));
        let mut args = vec!["restore", img, p(&t), "--yes"];
        args.extend_from_slice(extra);
        let o = ok(env, &args);
        assert!(o.contains("verified by reading back"), "{o}");
        assert_same_file(self.m(k), &t);
        std::fs::remove_file(&t).unwrap();
    }
}

// ---- looking at stores ----

/// Every file under `dir` (relative path → (size, modified)).
fn tree(dir: &Path) -> BTreeMap<String, (u64, SystemTime)> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, (u64, SystemTime)>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, (m.len(), m.modified().unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The bytes under `dir`, by what they are: (packs, index files, images, everything).
fn store_bytes(dir: &Path) -> (u64, u64, u64, u64) {
    let t = tree(dir);
    let sum = |pre: &str| -> u64 {
        t.iter()
            .filter(|(k, _)| k.starts_with(pre))
            .map(|(_, v)| v.0)
            .sum()
    };
    let images = t
        .iter()
        .filter(|(k, _)| k.ends_with(".lbi"))
        .map(|(_, v)| v.0)
        .sum();
    (
        sum("packs/"),
        sum("index/"),
        images,
        t.values().map(|v| v.0).sum(),
    )
}

/// The packs of the local store `dir`: name → size.
fn packs(dir: &Path) -> BTreeMap<String, u64> {
    tree(&dir.join("packs"))
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// The files in `dir/locks`.
fn locks(dir: &Path) -> Vec<String> {
    tree(&dir.join("locks")).into_keys().collect()
}

/// The file name of a path or URL.
/// The objects of the S3 store under `prefix` ("fleet/"): key → size.
fn store_objects(weed: &Weed, prefix: &str) -> BTreeMap<String, u64> {
    weed.objects()
        .into_iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .collect()
}

/// The pack names among a store's `objects` (under `prefix`).
fn packs_among(objects: &BTreeMap<String, u64>, prefix: &str) -> BTreeSet<String> {
    let packs = format!("{prefix}packs/");
    objects
        .keys()
        .filter(|k| k.starts_with(&packs))
        .map(|k| name_of(k))
        .collect()
}

fn name_of(s: &str) -> String {
    s.rsplit('/').next().unwrap().to_string()
}

/// A `gc --json` report's unused packs, by file name.
fn unused(report: &serde_json::Value) -> BTreeSet<String> {
    report["unused_packs"]
        .as_array()
        .unwrap_or_else(|| panic!("no unused_packs in {report}"))
        .iter()
        .map(|v| name_of(v.as_str().unwrap()))
        .collect()
}

/// The image ID of `img` (names its index file `index/ID.idx`).
fn image_id(env: &Env, img: &str) -> String {
    let info = ok_json(env, &["info", "--json", img]);
    info["image_id"].as_str().unwrap().to_string()
}

/// Flips bit `mask` of byte `at` of `file`.
fn flip(file: &Path, at: u64, mask: u8) {
    let mut b = common::read_at(file, at, 1);
    b[0] ^= mask;
    write_at(file, at, &b);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Images machine `k` of `f` into the local store `store` with --dedup; the names of the
/// packs it added.
fn image_into(f: &Fleet, store: &Path, k: usize) -> BTreeSet<String> {
    image_into_with(f, store, k, &[])
}

/// [`image_into`] with `extra` arguments (an encrypted store's `--encrypt --key-file K`).
fn image_into_with(f: &Fleet, store: &Path, k: usize, extra: &[&str]) -> BTreeSet<String> {
    image_file(f.m(k), &store.join(format!("m{k}.lbi")), extra)
}

/// Images the disk file `disk` as `img` (in a local store) with --dedup and `extra`; the
/// names of the packs it added.
fn image_file(disk: &Path, img: &Path, extra: &[&str]) -> BTreeSet<String> {
    let store = img.parent().unwrap();
    let before = packs(store);
    let mut args = vec!["image", p(disk), "-o", p(img), "--dedup"];
    args.extend_from_slice(extra);
    let o = ok(&[], &args);
    assert!(o.contains("written and verified"), "{o}");
    packs(store)
        .into_keys()
        .filter(|n| !before.contains_key(n))
        .collect()
}

#[test]
fn local_store_holds_five_machines_in_little_more_than_one() {
    let t_all = Instant::now();
    let f = Fleet::new();
    let store = f.path().join("store");
    std::fs::create_dir(&store).unwrap();

    // 1. five machines into one store: the first stores the system, each other only its own
    let mut grew = Vec::new();
    let mut took = Vec::new();
    for k in 1..=MACHINES {
        let before = store_bytes(&store).3;
        let t0 = Instant::now();
        image_into(&f, &store, k);
        took.push(t0.elapsed());
        grew.push(store_bytes(&store).3 - before);
        assert!(locks(&store).is_empty(), "a writer left its lock");
    }
    eprintln!("store growth per machine: {grew:?} bytes, times {took:.2?}");
    assert!(
        grew[0] >= NOISE_BYTES,
        "the first machine stores all its noise: {grew:?}"
    );
    for (k, g) in grew.iter().enumerate().skip(1) {
        assert!(
            (USER_NOISE.1..=USER_NOISE.1 + 2 * MIB).contains(g),
            "machine {} adds its own 3 MiB of noise and little else, not {g} bytes: {grew:?}",
            k + 1
        );
    }
    assert_eq!(tree(&store.join("index")).len(), MACHINES);
    let info = ok_json(&[], &["info", "--json", p(&store.join("m2.lbi"))]);
    assert_eq!(info["format_version"], "1.5", "{info}");
    assert_eq!(info["raw_bytes"], DISK, "{info}");
    assert!(
        info["file_bytes"].as_u64().unwrap() < 256 << 10,
        "a packed image file is small: {info}"
    );

    // 2. plain images of the same machines, for comparison; a file with no table is copied
    // whole: every non-zero block is stored (all the noise), zero blocks are not
    let plain = f.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let mut plain_sizes = Vec::new();
    for k in 1..=MACHINES {
        let img = plain.join(format!("m{k}.lbi"));
        ok(&[], &["image", p(f.m(k)), "-o", p(&img)]);
        plain_sizes.push(std::fs::metadata(&img).unwrap().len());
    }
    let info = ok_json(&[], &["info", "--json", p(&plain.join("m1.lbi"))]);
    let regions = info["meta"]["regions"].as_array().unwrap();
    assert!(
        regions.len() == 1 && regions[0]["method"] == "all" && regions[0]["what"] == "disk",
        "a file with no table is copied whole: {regions:?}"
    );
    assert_eq!(info["raw_bytes"], DISK, "{info}");
    assert_eq!(info["missing_bytes"], 0, "{info}");
    let stored = info["stored_bytes"].as_u64().unwrap();
    assert!(
        (NOISE_BYTES..NOISE_BYTES + 2 * MIB).contains(&stored),
        "every noise byte is stored, the text compressed, the zeros not: {stored} bytes"
    );

    // 3. every image verifies, alone and as the store
    for k in 1..=MACHINES {
        let o = ok(&[], &["verify", p(&store.join(format!("m{k}.lbi")))]);
        assert!(o.contains("intact"), "{o}");
    }
    let o = ok(&[], &["verify", p(&store)]);
    assert!(o.contains("5 images, 5 intact"), "{o}");
    assert!(!o.contains("DAMAGED") && !o.contains("index"), "{o}");

    // 4. restores give back each machine (the first, one between and the last)
    for k in [1, 3, MACHINES] {
        f.restores_equal(&[], p(&store.join(format!("m{k}.lbi"))), k);
    }

    // 5. the fleet's space
    let (pk, ix, im, total) = store_bytes(&store);
    let one = plain_sizes[0];
    let five: u64 = plain_sizes.iter().sum();
    eprintln!(
        "LOCAL FLEET: store {total} bytes (packs {pk}, index {ix}, images {im}) = {:.2}x one \
         plain image ({one} bytes), {:.2}x five plain images ({five} bytes); {:.1?}",
        total as f64 / one as f64,
        total as f64 / five as f64,
        t_all.elapsed()
    );
    assert!(
        total as f64 <= 1.6 * one as f64,
        "five machines take {total} bytes, more than 1.6x one plain image ({one})"
    );
    assert!(
        total >= one + 4 * USER_NOISE.1,
        "each machine's own noise is stored once: {total} bytes"
    );
}

#[test]
fn s3_store_holds_five_machines_and_gc_frees_deleted_ones() {
    let t_all = Instant::now();
    let Some(weed) = Weed::start() else {
        return;
    };
    let env = weed.env();
    let f = Fleet::new();
    let url = |name: &str| format!("s3://lifeboat/fleet/{name}");
    let store = "s3://lifeboat/fleet";
    let objects = || store_objects(&weed, "fleet/");
    let packs_of = |o: &BTreeMap<String, u64>| packs_among(o, "fleet/");

    // 1. five machines into s3://lifeboat/fleet/
    let mut made = vec![BTreeSet::new()];
    for k in 1..=MACHINES {
        let before = packs_of(&objects());
        let o = ok(
            &env,
            &[
                "image",
                p(f.m(k)),
                "-o",
                &url(&format!("m{k}.lbi")),
                "--dedup",
            ],
        );
        assert!(o.contains("written and verified"), "{o}");
        made.push(&packs_of(&objects()) - &before);
    }
    let objs = objects();
    let count = |pre: &str, suf: &str| {
        objs.keys()
            .filter(|k| k.starts_with(pre) && k.ends_with(suf))
            .count()
    };
    assert_eq!(count("fleet/m", ".lbi"), MACHINES, "{objs:?}");
    assert_eq!(count("fleet/index/", ".idx"), MACHINES, "{objs:?}");
    assert_eq!(
        count("fleet/locks/", ""),
        0,
        "a writer left its lock: {objs:?}"
    );
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    for (k, own) in made.iter().enumerate().skip(1) {
        assert!(!own.is_empty(), "machine {k} stored its own data");
    }

    // 2. every image verifies, as the store too; two restore equal
    let o = ok(&env, &["verify", store]);
    assert!(o.contains("5 images, 5 intact"), "{o}");
    f.restores_equal(&env, &url("m1.lbi"), 1);
    f.restores_equal(&env, &url(&format!("m{MACHINES}.lbi")), MACHINES);

    // 3. the space, against one plain image of machine 1
    let plain = f.path().join("plain-m1.lbi");
    ok(&[], &["image", p(f.m(1)), "-o", p(&plain)]);
    let one = std::fs::metadata(&plain).unwrap().len();
    let total: u64 = objs.values().sum();
    let pk: u64 = objs
        .iter()
        .filter(|(k, _)| k.starts_with("fleet/packs/"))
        .map(|(_, v)| v)
        .sum();
    eprintln!(
        "S3 FLEET: store {total} bytes in {} objects (packs {pk}) = {:.2}x one plain image \
         ({one} bytes), {:.2}x five plain images ({} bytes); {:.1?}",
        objs.len(),
        total as f64 / one as f64,
        total as f64 / (5 * one) as f64,
        5 * one,
        t_all.elapsed()
    );
    assert!(
        total as f64 <= 1.6 * one as f64,
        "five machines take {total} bytes in S3, more than 1.6x one plain image ({one})"
    );

    // 4. an existing name is refused, and nothing is written
    fails(
        lifeboat(&env, &["image", p(f.m(2)), "-o", &url("m2.lbi"), "--dedup"]),
        1,
        "already exists",
    );
    assert_eq!(objects(), objs, "a refused image wrote into the store");
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());

    // 5. two machines deleted with the store's tools; gc frees their packs
    let ids: Vec<String> = (1..=MACHINES)
        .map(|k| image_id(&env, &url(&format!("m{k}.lbi"))))
        .collect();
    weed.delete("fleet/m2.lbi");
    weed.delete("fleet/m3.lbi");
    let before = objects();
    let dry = ok_json(&env, &["gc", store, "--dry-run", "--json"]);
    assert_eq!(objects(), before, "gc --dry-run deleted something");
    let freed = &made[2] | &made[3];
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["images"], 3, "{dry}");
    assert_eq!(dry["packs"], packs_of(&before).len(), "{dry}");
    assert_eq!(unused(&dry), freed, "the packs of m2 and m3 alone: {dry}");
    let done = ok_json(&env, &["gc", store, "--yes", "--json"]);
    eprintln!("S3 gc: {done}");
    assert_eq!(done["dry_run"], false, "{done}");
    assert_eq!(unused(&done), freed, "{done}");
    let freed_bytes: u64 = before
        .iter()
        .filter(|(k, _)| freed.contains(&name_of(k)))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(done["unused_bytes"], freed_bytes, "{done}");
    assert_eq!(done["index_deleted"], 2, "{done}");
    let after = objects();
    let gone: BTreeSet<String> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    let mut expected: BTreeSet<String> = freed.iter().map(|n| format!("fleet/packs/{n}")).collect();
    expected.insert(format!("fleet/index/{}.idx", ids[1]));
    expected.insert(format!("fleet/index/{}.idx", ids[2]));
    assert_eq!(
        gone, expected,
        "gc deleted exactly m2's and m3's packs and index files"
    );
    assert!(after.keys().all(|k| before.contains_key(k)), "{after:?}");

    // 6. the rest verify and restore
    let o = ok(&env, &["verify", store]);
    assert!(o.contains("3 images, 3 intact"), "{o}");
    for k in [1, 4, 5] {
        f.restores_equal(&env, &url(&format!("m{k}.lbi")), k);
    }

    // 7. a deleted machine imaged again: its data is stored again (no index counts on the
    // deleted packs), and it verifies and restores
    let o = ok(&env, &["image", p(f.m(2)), "-o", &url("m2.lbi"), "--dedup"]);
    assert!(o.contains("written and verified"), "{o}");
    let again = objects();
    let added: u64 = again
        .iter()
        .filter(|(k, _)| k.starts_with("fleet/packs/") && !after.contains_key(*k))
        .map(|(_, v)| v)
        .sum();
    assert!(
        added >= USER_NOISE.1,
        "m2's own data stored again: {added} bytes"
    );
    ok(&env, &["verify", &url("m2.lbi")]);
    f.restores_equal(&env, &url("m2.lbi"), 2);
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    eprintln!("S3 test done in {:.1?}", t_all.elapsed());
}

#[test]
fn gc_frees_exactly_the_packs_of_deleted_machines() {
    let t_all = Instant::now();
    let f = Fleet::new();
    let store = f.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let img = |k: usize| store.join(format!("m{k}.lbi"));
    let mut made = vec![BTreeSet::new()];
    for k in 1..=MACHINES {
        made.push(image_into(&f, &store, k));
    }
    let ids: Vec<String> = (1..=MACHINES).map(|k| image_id(&[], p(&img(k)))).collect();

    // two machines deleted: their own packs are unused, the system's are not
    std::fs::remove_file(img(2)).unwrap();
    std::fs::remove_file(img(4)).unwrap();
    let before = tree(&store);
    let packs_before = packs(&store);
    let dry = ok_json(&[], &["gc", p(&store), "--dry-run", "--json"]);
    assert_eq!(
        tree(&store),
        before,
        "gc --dry-run changed the store: {dry}"
    );
    let freed = &made[2] | &made[4];
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["images"], 3, "{dry}");
    assert_eq!(dry["packs"], packs_before.len(), "{dry}");
    assert_eq!(
        dry["pack_bytes"],
        packs_before.values().sum::<u64>(),
        "{dry}"
    );
    assert_eq!(
        unused(&dry),
        freed,
        "exactly the packs m2 and m4 wrote: {dry}"
    );
    let freed_bytes: u64 = freed.iter().map(|n| packs_before[n]).sum();
    assert_eq!(dry["unused_bytes"], freed_bytes, "{dry}");

    let done = ok_json(&[], &["gc", p(&store), "--yes", "--json"]);
    eprintln!("local gc: {done}");
    assert_eq!(done["dry_run"], false, "{done}");
    assert_eq!(done["images"], 3, "{done}");
    assert_eq!(unused(&done), freed, "{done}");
    assert_eq!(done["unused_bytes"], freed_bytes, "{done}");
    assert_eq!(done["index_deleted"], 2, "{done}");
    assert_eq!(done["index_rewritten"], 0, "{done}");
    let packs_after = packs(&store);
    let mut expected = packs_before.clone();
    expected.retain(|n, _| !freed.contains(n));
    assert_eq!(
        packs_after, expected,
        "the unused packs, and only they, are gone"
    );
    let index: BTreeSet<String> = tree(&store.join("index")).into_keys().collect();
    let expected: BTreeSet<String> = [0, 2, 4]
        .iter()
        .map(|&i| format!("{}.idx", ids[i]))
        .collect();
    assert_eq!(
        index, expected,
        "the deleted machines' index files are gone"
    );
    assert!(locks(&store).is_empty(), "gc left its lock");

    // the rest verify and restore; a second gc finds nothing
    let o = ok(&[], &["verify", p(&store)]);
    assert!(o.contains("3 images, 3 intact"), "{o}");
    for k in [1, 3, 5] {
        f.restores_equal(&[], p(&img(k)), k);
    }
    let again = ok_json(&[], &["gc", p(&store), "--yes", "--json"]);
    assert!(unused(&again).is_empty(), "{again}");
    assert_eq!(packs(&store), packs_after);

    // a deleted machine imaged again stores its data again and restores
    let added = image_into(&f, &store, 2);
    let added_bytes: u64 = added.iter().map(|n| packs(&store)[n]).sum();
    assert!(
        added_bytes >= USER_NOISE.1,
        "m2's own data is stored again ({added_bytes} bytes): no index counts on deleted packs"
    );
    ok(&[], &["verify", p(&img(2))]);
    f.restores_equal(&[], p(&img(2)), 2);
    let o = ok(&[], &["verify", p(&store)]);
    assert!(o.contains("4 images, 4 intact"), "{o}");
    eprintln!("local gc test done in {:.1?}", t_all.elapsed());
}

#[test]
fn writers_and_gc_started_together_and_locks() {
    let t_all = Instant::now();
    let f = Fleet::new();
    let store = f.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let img = |k: usize| store.join(format!("m{k}.lbi"));
    // the store's only image is deleted: gc may free the system's packs, but only if no
    // writer counts on them
    image_into(&f, &store, 1);
    std::fs::remove_file(img(1)).unwrap();

    // 1. two writers and a gc, started together
    let wait = [("LIFEBOAT_STORE_LOCK_WAIT".to_string(), "120".to_string())];
    let t0 = Instant::now();
    let writers: Vec<Running> = [2, 3]
        .iter()
        .map(|&k| {
            start(lifeboat(
                &wait,
                &["image", p(f.m(k)), "-o", p(&img(k)), "--dedup"],
            ))
        })
        .collect();
    let gc = start(lifeboat(&wait, &["gc", p(&store), "--yes"]));
    // the gc first: it waits for the writers at most as long as they run. REGRESSION
    // (src/image/packs.rs, read_locks): a lock file read between its creation (O_EXCL) and
    // its first write is empty; it once counted as a lock of unknown kind, and a gc that read
    // it refused at once ("another clean-up [or key change] holds …/write-….lock", exit 1). Its name now
    // says whose it is.
    for r in std::iter::once(gc).chain(writers) {
        let what = r.what.clone();
        let (o, took) = r.finish();
        let t = text(&o);
        assert!(
            o.status.success(),
            "{what}: {t}{}",
            if t.contains("another clean-up") && t.contains("/write-") {
                "\n(the REGRESSION above: a writer's lock read before its first write)"
            } else {
                ""
            }
        );
        eprintln!(
            "together ({took:.1?}): {what}: {}",
            t.lines()
                .rfind(|l| !l.starts_with("root hash"))
                .unwrap_or("")
        );
    }
    eprintln!("two writers and gc done in {:.1?}", t0.elapsed());
    assert!(locks(&store).is_empty(), "{:?}", locks(&store));
    let o = ok(&[], &["verify", p(&store)]);
    assert!(o.contains("2 images, 2 intact"), "{o}");
    f.restores_equal(&[], p(&img(2)), 2);
    f.restores_equal(&[], p(&img(3)), 3);

    // 2. a gc started while a writer holds its lock, over a store whose images were all
    // deleted again: without the lock it would delete every pack, the system's too, under
    // writers that count on them; it must wait, then keep what their images use
    std::fs::remove_file(img(2)).unwrap();
    std::fs::remove_file(img(3)).unwrap();
    let t0 = Instant::now();
    let mut writers: Vec<Running> = [4, 5]
        .iter()
        .map(|&k| {
            start(lifeboat(
                &wait,
                &["image", p(f.m(k)), "-o", p(&img(k)), "--dedup"],
            ))
        })
        .collect();
    // a lock held: the same writer's lock seen twice, 5 ms apart (a writer that finds
    // another's lock half-written takes it for a collector's, and drops its own at once)
    let write_locks = || -> BTreeSet<String> {
        locks(&store)
            .into_iter()
            .filter(|l| l.starts_with("write-"))
            .collect()
    };
    let mut seen = write_locks();
    loop {
        assert!(
            writers
                .iter_mut()
                .all(|w| w.child.try_wait().unwrap().is_none()),
            "a writer ended before its lock was seen held"
        );
        assert!(t0.elapsed() < LIMIT, "no writer held its lock");
        std::thread::sleep(Duration::from_millis(5));
        let now = write_locks();
        if now.intersection(&seen).next().is_some() {
            break;
        }
        seen = now;
    }
    let gc = start(lifeboat(&wait, &["gc", p(&store), "--yes", "--json"]));
    let (o, took) = gc.finish();
    assert!(o.status.success(), "gc under writers: {}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!("gc under writers ({took:.1?}): {report}");
    assert!(
        report["images"].as_u64().unwrap() >= 1,
        "gc waited for the writer whose lock it found, and read its image: {report}"
    );
    assert!(
        !unused(&report).is_empty(),
        "m2's and m3's own packs: {report}"
    );
    for w in writers {
        let what = w.what.clone();
        let (o, took) = w.finish();
        assert!(o.status.success(), "{what}: {}", text(&o));
        eprintln!("writer beside gc ({took:.1?}): {what}");
    }
    assert!(locks(&store).is_empty(), "{:?}", locks(&store));
    let o = ok(&[], &["verify", p(&store)]);
    assert!(o.contains("2 images, 2 intact"), "{o}");
    f.restores_equal(&[], p(&img(4)), 4);
    f.restores_equal(&[], p(&img(5)), 5);

    // 3. a fresh writer's lock: gc waits LIFEBOAT_STORE_LOCK_WAIT, then fails, deleting
    // nothing (m4 is deleted, so there is something it would delete)
    std::fs::remove_file(img(4)).unwrap();
    let lock = store.join("locks/write-test.lock");
    let lock_body = |t: u64| format!(r#"{{"kind":"write","refreshed_unix":{t},"host":"t"}}"#);
    std::fs::write(&lock, lock_body(unix_now())).unwrap();
    let short = [("LIFEBOAT_STORE_LOCK_WAIT".to_string(), "3".to_string())];
    let before = tree(&store);
    let t0 = Instant::now();
    let t = fails(
        lifeboat(&short, &["gc", p(&store), "--yes"]),
        1,
        "write-test.lock",
    );
    let took = t0.elapsed();
    assert!(t.contains("nothing was deleted"), "{t}");
    assert!(
        took >= Duration::from_secs(3),
        "gc waited for the writer first: {took:?}"
    );
    assert_eq!(
        tree(&store),
        before,
        "gc deleted something under a writer's lock"
    );

    // 4. a fresh collector's lock: a writer waits, then fails, writing nothing
    let gc_lock = store.join("locks/gc-test.lock");
    std::fs::write(
        &gc_lock,
        lock_body(unix_now()).replace("\"write\"", "\"gc\""),
    )
    .unwrap();
    let before = tree(&store);
    let t = fails(
        lifeboat(&short, &["image", p(f.m(2)), "-o", p(&img(2)), "--dedup"]),
        1,
        "gc-test.lock",
    );
    assert!(t.contains("being cleaned up"), "{t}");
    assert_eq!(
        tree(&store),
        before,
        "a writer wrote while gc held the store"
    );

    // 5. stale locks (not refreshed for an hour) belong to dead runs and are ignored
    std::fs::write(&lock, lock_body(unix_now() - 3600)).unwrap();
    std::fs::write(
        &gc_lock,
        lock_body(unix_now() - 3600).replace("\"write\"", "\"gc\""),
    )
    .unwrap();
    let done = ok_json(&short, &["gc", p(&store), "--yes", "--json"]);
    assert_eq!(done["dry_run"], false, "{done}");
    assert!(
        !unused(&done).is_empty(),
        "m4's own packs are freed: {done}"
    );
    for n in unused(&done) {
        assert!(
            !store.join("packs").join(&n).exists(),
            "{n} was not deleted"
        );
    }
    let o = ok(&short, &["image", p(f.m(2)), "-o", p(&img(2)), "--dedup"]);
    assert!(o.contains("written and verified"), "{o}");
    let o = ok(&[], &["verify", p(&store)]);
    assert!(o.contains("2 images, 2 intact"), "{o}");
    f.restores_equal(&[], p(&img(5)), 5);
    f.restores_equal(&[], p(&img(2)), 2);
    eprintln!("concurrency and locks done in {:.1?}", t_all.elapsed());
}

#[test]
fn refusals_write_nothing() {
    let f = Fleet::new();
    let store = f.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let m1 = store.join("m1.lbi");
    image_into(&f, &store, 1);
    image_into(&f, &store, 2);
    let before = tree(&store);
    let m1_bytes = std::fs::read(&m1).unwrap();
    let new = store.join("new.lbi");

    // options a fleet store cannot take: clap refuses the pair (exit 2, its usage message)
    for extra in [
        vec!["--volume-size", "8M"],
        vec!["--parent", p(&m1)],
        vec!["--incremental", p(&store)],
        vec!["--rescue"],
    ] {
        let mut args = vec!["image", p(f.m(3)), "-o", p(&new), "--dedup"];
        args.extend_from_slice(&extra);
        let t = fails(lifeboat(&[], &args), 2, "cannot be used with");
        assert!(t.contains("'--dedup'") && t.contains(extra[0]), "{t}");
        assert_eq!(tree(&store), before, "{extra:?} wrote into the store");
    }

    // an existing name
    let t = fails(
        lifeboat(&[], &["image", p(f.m(3)), "-o", p(&m1), "--dedup"]),
        1,
        "already exists",
    );
    assert!(t.contains("m1.lbi"), "{t}");
    assert_eq!(tree(&store), before, "a refused image wrote into the store");
    assert_eq!(std::fs::read(&m1).unwrap(), m1_bytes);

    // gc of a folder that is no store (a plain image in it), or of none
    let plain = f.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    ok(&[], &["image", p(f.m(1)), "-o", p(&plain.join("m1.lbi"))]);
    let plain_before = tree(&plain);
    fails(
        lifeboat(&[], &["gc", p(&plain), "--yes"]),
        1,
        "is not a deduplicating store",
    );
    assert_eq!(
        tree(&plain),
        plain_before,
        "gc wrote into a folder that is no store"
    );
    assert!(!plain.join("locks").exists());
    let none = f.path().join("nothing-here");
    fails(
        lifeboat(&[], &["gc", p(&none), "--yes"]),
        1,
        "is not a deduplicating store",
    );
    assert!(!none.exists(), "gc created the folder");

    // gc --json must not prompt; gc with something to delete asks, and stdin is no terminal
    std::fs::remove_file(store.join("m2.lbi")).unwrap();
    let before = tree(&store);
    fails(
        lifeboat(&[], &["gc", p(&store), "--json"]),
        1,
        "--json needs",
    );
    let t = fails(
        lifeboat(&[], &["gc", p(&store)]),
        1,
        "refusing to delete without confirmation",
    );
    assert!(t.contains("--yes"), "{t}");
    assert_eq!(tree(&store), before, "gc deleted without confirmation");

    // an image gc cannot read: what it uses is unknown, so nothing is deleted
    std::fs::write(store.join("broken.lbi"), b"not an image at all").unwrap();
    let before = tree(&store);
    let t = fails(lifeboat(&[], &["gc", p(&store), "--yes"]), 1, "broken.lbi");
    assert!(t.contains("nothing was deleted"), "{t}");
    assert_eq!(
        tree(&store),
        before,
        "gc deleted with an unreadable image in the store"
    );
}

#[test]
fn damaged_pack_and_damaged_index() {
    let f = Fleet::new();
    let store = f.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let img = |k: usize| store.join(format!("m{k}.lbi"));
    image_into(&f, &store, 1);
    let own = image_into(&f, &store, 2);

    // 1. a flipped byte in the middle of a pack only m2 uses (its own noise)
    let pack = own
        .iter()
        .map(|n| store.join("packs").join(n))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let len = std::fs::metadata(&pack).unwrap().len();
    assert!(
        len >= USER_NOISE.1,
        "{} holds m2's noise: {len} bytes",
        pack.display()
    );
    flip(&pack, len / 2, 0x40);
    let t = fails(lifeboat(&[], &["verify", p(&img(2))]), 1, "corrupt");
    assert!(t.contains("m2.lbi"), "{t}");
    ok(&[], &["verify", p(&img(1))]);
    let t = fails(lifeboat(&[], &["verify", p(&store)]), 1, "damaged");
    assert!(t.contains("2 images, 1 intact"), "{t}");
    let named = t.lines().last().unwrap();
    assert!(
        named.contains("m2.lbi") && !named.contains("m1.lbi"),
        "verify DIR names the damaged image, and only it: {t}"
    );
    let target = f.target("damaged.img");
    fails(
        lifeboat(&[], &["restore", p(&img(2)), p(&target), "--yes"]),
        1,
        "corrupt",
    );
    // mended, it verifies again: the damage was that byte
    flip(&pack, len / 2, 0x40);
    ok(&[], &["verify", p(&store)]);

    // 2. a flipped byte in the system's index file (m1's): writers skip it, with a warning,
    // and store its chunks again rather than trust it
    let idx = store
        .join("index")
        .join(format!("{}.idx", image_id(&[], p(&img(1)))));
    flip(&idx, 100, 0x01);
    let before = store_bytes(&store).0;
    let o = ok(&[], &["image", p(f.m(3)), "-o", p(&img(3)), "--dedup"]);
    assert!(
        o.contains("an index of the store is skipped") && o.contains(&name_of(p(&idx))),
        "the writer warns, naming the index file: {o}"
    );
    let grew = store_bytes(&store).0 - before;
    assert!(
        grew >= NOISE_BYTES,
        "the chunks of the damaged index were stored again: {grew} bytes"
    );
    ok(&[], &["verify", p(&img(3))]);
    f.restores_equal(&[], p(&img(3)), 3);
    // verify DIR: every image intact (exit 0), the damaged index named
    let o = ok(&[], &["verify", p(&store)]);
    assert!(o.contains("3 images, 3 intact"), "{o}");
    assert!(
        o.contains("1 damaged index file") && o.contains(&name_of(p(&idx))),
        "{o}"
    );
}

// ---- encrypted stores ----

/// The bytes of one block of a packed image: a frame in a pack holds the new blocks of one
/// 4 MiB chunk (checked with `info --json` where the tests count on it).
const BLOCK: u64 = 64 << 10;
/// What sealing adds to a frame: a 24-byte nonce and a 16-byte tag (src/image/crypt.rs).
const SEAL: u64 = 40;

/// A line of text that must not be readable in an encrypted store.
const SECRET: &[u8] = b"lifeboat test secret: the payroll file of pc3 says 4217 coins";

/// A key file `name` in `dir` (outside any store) holding `passphrase` and a newline.
fn pass_file(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let k = dir.join(name);
    std::fs::write(&k, format!("{passphrase}\n")).unwrap();
    k
}

/// Whether `needle` occurs in `hay`.
fn holds(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A disk `name` in `f`'s folder: machine 1 with a block of fresh noise at each (offset,
/// seed) of `blocks` (in its free space, where machine 1 holds zeros).
fn derive(f: &Fleet, name: &str, blocks: &[(u64, u32)]) -> PathBuf {
    let d = f.path().join(name);
    std::fs::copy(f.m(1), &d).unwrap();
    for &(at, seed) in blocks {
        assert!(
            common::read_at(&d, at, BLOCK as usize)
                .iter()
                .all(|&b| b == 0),
            "{at} is in machine 1's free space"
        );
        write_at(&d, at, &noise(BLOCK as usize, seed));
    }
    d
}

/// Swaps the bytes of `a` and `b` (files of the same size).
fn swap_files(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(x.len(), y.len(), "{} and {}", a.display(), b.display());
    std::fs::write(a, y).unwrap();
    std::fs::write(b, x).unwrap();
}

/// The key ID of the encrypted image `img` (`info --json`, which needs `key`).
fn key_id(env: &Env, img: &str, key: &Path) -> String {
    let info = ok_json(env, &["info", "--json", img, "--key-file", p(key)]);
    assert_eq!(info["encryption"]["cipher"], "xchacha20-poly1305", "{info}");
    info["encryption"]["key_id"].as_str().unwrap().to_string()
}

#[test]
fn encrypted_local_store_dedups_and_hides_content() {
    let t_all = Instant::now();
    let f = Fleet::new();
    let store = f.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let img = |k: usize| store.join(format!("m{k}.lbi"));
    let key = pass_file(f.path(), "fleet.pass", "correct horse battery staple");
    let wrong = pass_file(f.path(), "wrong.pass", "correct horse battery stapler");
    let enc = ["--encrypt", "--key-file", p(&key)];
    let with_key = ["--key-file", p(&key)];
    let store_key = store.join("store.key");
    // wrong words in output that is otherwise right: listed together at the end, so that
    // they do not hide what the rest of the test checks
    let mut wrong_output = Vec::new();

    // a secret line in machine 3's own noise
    write_at(f.m(3), USER_NOISE.0 + MIB + 4000, SECRET);

    // 1. five machines into one encrypted store: the first makes the store's key, each
    // other adds only its own data
    let mut grew = Vec::new();
    let mut made = vec![BTreeSet::new()];
    let mut key_bytes = Vec::new();
    for k in 1..=MACHINES {
        let before = store_bytes(&store).3;
        made.push(image_into_with(&f, &store, k, &enc));
        grew.push(store_bytes(&store).3 - before);
        assert!(locks(&store).is_empty(), "a writer left its lock");
        if k == 1 {
            key_bytes = std::fs::read(&store_key).unwrap();
            assert_eq!(key_bytes.len(), 4096, "store.key");
            assert_eq!(&key_bytes[..8], b"LBSTKEY1", "store.key's magic");
        }
        assert_eq!(
            std::fs::read(&store_key).unwrap(),
            key_bytes,
            "machine {k} changed the store's key"
        );
    }
    eprintln!("encrypted store growth per machine: {grew:?} bytes");
    assert!(
        grew[0] >= NOISE_BYTES,
        "the first machine stores all its noise: {grew:?}"
    );
    for (k, g) in grew.iter().enumerate().skip(1) {
        assert!(
            (USER_NOISE.1..=USER_NOISE.1 + 2 * MIB).contains(g),
            "machine {} adds its own 3 MiB of noise and little else, not {g} bytes: chunks \
             deduplicate across machines of one encrypted store (one master key, so one \
             content-ID key): {grew:?}",
            k + 1
        );
    }
    // one key for the store: every image carries the same key ID
    let id = key_id(&[], p(&img(1)), &key);
    for k in 2..=MACHINES {
        assert_eq!(key_id(&[], p(&img(k)), &key), id, "m{k}.lbi's key");
    }

    // 2. every image verifies, and the store; two restore equal
    for k in 1..=MACHINES {
        let o = ok(&[], &["verify", p(&img(k)), "--key-file", p(&key)]);
        assert!(o.contains("intact"), "{o}");
    }
    let o = ok(&[], &["verify", p(&store), "--key-file", p(&key)]);
    assert!(o.contains("5 images, 5 intact"), "{o}");
    f.restores_equal_with(&[], p(&img(2)), 2, &with_key);
    f.restores_equal_with(&[], p(&img(MACHINES)), MACHINES, &with_key);

    // 3. the space, against one plain image of machine 1
    let plain = f.path().join("plain-m1.lbi");
    ok(&[], &["image", p(f.m(1)), "-o", p(&plain)]);
    let one = std::fs::metadata(&plain).unwrap().len();
    let (pk, ix, im, total) = store_bytes(&store);
    eprintln!(
        "ENCRYPTED LOCAL FLEET: store {total} bytes (packs {pk}, index {ix}, images {im}) = \
         {:.2}x one plain image ({one} bytes); {:.1?}",
        total as f64 / one as f64,
        t_all.elapsed()
    );
    assert!(
        total as f64 <= 1.6 * one as f64,
        "five machines take {total} bytes, more than 1.6x one plain image ({one})"
    );

    // 4. no plaintext anywhere in the store. Each needle is in its source disk; a plain
    // fleet store of the same machines shows those zstd leaves as they are (a line of text in
    // a block of noise is stored raw, as the noise is), so the search finds what is there.
    let plain_store = f.path().join("plain-store");
    std::fs::create_dir(&plain_store).unwrap();
    image_into(&f, &plain_store, 1);
    image_into(&f, &plain_store, 3);
    let plain_bytes: Vec<u8> = tree(&plain_store)
        .keys()
        .flat_map(|n| std::fs::read(plain_store.join(n)).unwrap())
        .collect();
    let m1_bytes = std::fs::read(f.m(1)).unwrap();
    let m3_bytes = std::fs::read(f.m(3)).unwrap();
    let at = |d: &[u8], off: u64| d[off as usize..off as usize + 64].to_vec();
    // (what, needle, its source disk, whether a plain store shows it)
    let needles: [(&str, Vec<u8>, &[u8], bool); 6] = [
        ("a secret line", SECRET.to_vec(), &m3_bytes, true),
        (
            "system noise",
            at(&m1_bytes, OS_NOISE[0].0 + 5 * MIB + 77),
            &m1_bytes,
            true,
        ),
        (
            "a user's noise",
            at(&m3_bytes, USER_NOISE.0 + 2 * MIB + 13),
            &m3_bytes,
            true,
        ),
        // compressed in a plain store too: only absent here
        (
            "system text",
            b"/usr/share/doc/package-".to_vec(),
            &m1_bytes,
            false,
        ),
        (
            "a user's text",
            b"pc3 user document".to_vec(),
            &m3_bytes,
            false,
        ),
        ("a config block", b"hostname=pc3".to_vec(), &m3_bytes, false),
    ];
    for (what, needle, source, shown) in &needles {
        assert!(holds(source, needle), "{what} is in its source disk");
        assert_eq!(
            holds(&plain_bytes, needle),
            *shown,
            "{what}: in a plain fleet store of machines 1 and 3"
        );
    }
    let files = tree(&store);
    assert!(
        files.keys().any(|k| k.starts_with("packs/"))
            && files.keys().any(|k| k.starts_with("index/"))
            && files.contains_key("store.key")
            && files.contains_key("m4.lbi"),
        "{files:?}"
    );
    for name in files.keys() {
        let bytes = std::fs::read(store.join(name)).unwrap();
        for (what, needle, _, _) in &needles {
            assert!(
                !holds(&bytes, needle),
                "{what} ({:?}) is readable in {name}",
                String::from_utf8_lossy(needle)
            );
        }
    }

    // 5. refusals, each writing nothing
    let before = tree(&store);
    let new = store.join("new.lbi");
    let t = fails(
        lifeboat(
            &[],
            &[
                "image",
                p(f.m(3)),
                "-o",
                p(&new),
                "--dedup",
                "--encrypt",
                "--key-file",
                p(&wrong),
            ],
        ),
        1,
        "wrong passphrase or key file",
    );
    assert!(t.contains("store.key"), "{t}");
    assert_eq!(
        tree(&store),
        before,
        "a wrong passphrase wrote into the store"
    );
    // no passphrase, and no terminal to ask on
    fails(
        lifeboat(
            &[],
            &["image", p(f.m(3)), "-o", p(&new), "--dedup", "--encrypt"],
        ),
        1,
        "--key-file",
    );
    assert_eq!(tree(&store), before, "an image without passphrase wrote");
    // a plain image into the encrypted store
    fails(
        lifeboat(&[], &["image", p(f.m(3)), "-o", p(&new), "--dedup"]),
        1,
        "it is an encrypted fleet store",
    );
    assert_eq!(tree(&store), before, "a plain image wrote into the store");
    // the key slots of an image of the store are the store's: not changed one by one
    let m1_image = std::fs::read(img(1)).unwrap();
    for args in [
        vec!["key", "add", p(&img(1)), "--new-key-file", p(&wrong)],
        vec!["key", "remove", p(&img(1)), "1"],
    ] {
        let mut args = args;
        args.extend_from_slice(&with_key);
        let t = fails(lifeboat(&[], &args), 1, "whole store");
        assert!(t.contains("key add DIR"), "{t}");
    }
    assert_eq!(
        std::fs::read(img(1)).unwrap(),
        m1_image,
        "key add/remove changed m1.lbi"
    );
    assert_eq!(tree(&store), before, "key add/remove wrote into the store");

    // without the key: verify and restore fail, naming what they need
    let t = fails(lifeboat(&[], &["verify", p(&img(1))]), 1, "--key-file");
    assert!(t.contains("m1.lbi is encrypted"), "{t}");
    let (o, _) = run(lifeboat(&[], &["verify", p(&store)]));
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "verify DIR without its key: {t}");
    assert!(
        t.contains("--key-file") && t.contains("5 images, 0 intact"),
        "{t}"
    );
    if t.to_lowercase().contains("damaged") {
        wrong_output.push(format!(
            "`verify DIR` without --key-file calls intact images damaged (they are locked, \
             not damaged; an operator may throw them away):\n{t}"
        ));
    }
    let target = f.target("locked.img");
    let target_before = std::fs::read(&target).unwrap();
    let t = fails(
        lifeboat(&[], &["restore", p(&img(2)), p(&target), "--yes"]),
        1,
        "--key-file",
    );
    assert!(t.contains("m2.lbi is encrypted"), "{t}");
    assert!(
        std::fs::read(&target).unwrap() == target_before,
        "a restore without the key wrote its target"
    );
    std::fs::remove_file(&target).unwrap();
    assert_eq!(
        tree(&store),
        before,
        "a run without the key wrote into the store"
    );

    // 6. gc: machine 5's image moved out, so its own packs are unused. Without the key gc
    // cannot read what the images use, and deletes nothing; with it, exactly those packs go.
    let away = f.path().join("m5-away.lbi");
    std::fs::rename(img(5), &away).unwrap();
    let before = tree(&store);
    let t = fails(
        lifeboat(&[], &["gc", p(&store), "--yes"]),
        1,
        "nothing was deleted",
    );
    assert!(t.contains("--key-file"), "{t}");
    assert_eq!(tree(&store), before, "gc without the key deleted something");
    let done = ok_json(
        &[],
        &["gc", p(&store), "--yes", "--json", "--key-file", p(&key)],
    );
    eprintln!("encrypted local gc: {done}");
    assert_eq!(done["images"], 4, "{done}");
    assert_eq!(unused(&done), made[5], "exactly the packs m5 wrote: {done}");
    assert_eq!(done["index_deleted"], 1, "{done}");
    for n in &made[5] {
        assert!(!store.join("packs").join(n).exists(), "{n} is left");
    }
    let o = ok(&[], &["verify", p(&store), "--key-file", p(&key)]);
    assert!(o.contains("4 images, 4 intact"), "{o}");
    f.restores_equal_with(&[], p(&img(4)), 4, &with_key);

    // 7. a damaged store.key: nothing can be added (the images carry their own copies of the
    // slots, so they still verify)
    flip(&store_key, 200, 0x01);
    let before = tree(&store);
    let t = fails(
        lifeboat(
            &[],
            &[
                "image",
                p(f.m(5)),
                "-o",
                p(&img(5)),
                "--dedup",
                "--encrypt",
                "--key-file",
                p(&key),
            ],
        ),
        1,
        "the store's key cannot be read",
    );
    assert!(t.contains("store.key"), "{t}");
    if !t.contains("can be added to the store") {
        wrong_output.push(format!(
            "the refusal over a damaged store.key has a run of spaces in its sentence \
             (src/image/packs.rs StoreKeys::read: a string continued without `\\`):\n{t}"
        ));
    }
    assert_eq!(
        tree(&store),
        before,
        "an image wrote past a damaged store.key"
    );
    let o = ok(&[], &["verify", p(&store), "--key-file", p(&key)]);
    assert!(o.contains("4 images, 4 intact"), "{o}");
    flip(&store_key, 200, 0x01);
    assert_eq!(std::fs::read(&store_key).unwrap(), key_bytes);

    // 8. a plain fleet store takes no encrypted image, and a new encrypted store needs a
    // passphrase
    let before = tree(&plain_store);
    fails(
        lifeboat(
            &[],
            &[
                "image",
                p(f.m(2)),
                "-o",
                p(&plain_store.join("m2.lbi")),
                "--dedup",
                "--encrypt",
                "--key-file",
                p(&key),
            ],
        ),
        1,
        "fleet store of plain images",
    );
    assert_eq!(
        tree(&plain_store),
        before,
        "an encrypted image wrote into a plain store"
    );
    assert!(!plain_store.join("store.key").exists());
    let empty = f.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails(
        lifeboat(
            &[],
            &[
                "image",
                p(f.m(1)),
                "-o",
                p(&empty.join("m1.lbi")),
                "--dedup",
                "--encrypt",
            ],
        ),
        1,
        "passphrase",
    );
    assert!(tree(&empty).is_empty(), "{:?}", tree(&empty));

    // 9. the store's slots, changed for the whole store: a second passphrase added to
    // store.key and to every image opens them all; removed again, it opens none
    let second = pass_file(f.path(), "second.pass", "a second passphrase for the fleet");
    let add_second = [
        "key",
        "add",
        p(&store),
        "--new-key-file",
        p(&second),
        "--key-file",
        p(&key),
    ];
    let t = ok(&[], &add_second);
    assert!(t.contains("slot 2"), "{t}");
    let t = ok(&[], &["verify", p(&store), "--key-file", p(&second)]);
    assert!(t.contains("intact"), "{t}");
    let listed = ok(&[], &["key", "list", p(&img(1))]);
    assert!(
        listed.contains("slot 2"),
        "every image carries the store's slots: {listed}"
    );
    let t = ok(
        &[],
        &["key", "remove", p(&store), "2", "--key-file", p(&key)],
    );
    assert!(!t.contains("slot 2"), "{t}");
    fails(
        lifeboat(&[], &["verify", p(&img(1)), "--key-file", p(&second)]),
        1,
        "wrong passphrase",
    );
    ok(&[], &["verify", p(&store), "--key-file", p(&key)]);
    fails(
        lifeboat(
            &[],
            &["key", "remove", p(&store), "1", "--key-file", p(&key)],
        ),
        1,
        "only key slot",
    );
    fails(
        lifeboat(&[], &["key", "list", p(&plain_store)]),
        1,
        "no store.key",
    );

    // 10. a change of the store's slots holds the store as gc does: it waits for an image
    // being written (whose header carries the slots read when it began), and a writer
    // waits for it; either gives up after LIFEBOAT_STORE_LOCK_WAIT, changing nothing
    let short = [("LIFEBOAT_STORE_LOCK_WAIT".to_string(), "2".to_string())];
    let lock_body = |kind: &str| {
        format!(
            r#"{{"kind":"{kind}","refreshed_unix":{},"host":"t"}}"#,
            unix_now()
        )
    };
    // a fresh lock of `kind`: the command waits, then gives up naming it and saying `says`
    let refused_by = |kind: &str, args: &[&str], says: &str| {
        let lock = store.join(format!("locks/{kind}-test.lock"));
        std::fs::write(&lock, lock_body(kind)).unwrap();
        let before = tree(&store);
        let t = fails(lifeboat(&short, args), 1, &format!("{kind}-test.lock"));
        assert!(t.contains(says) && t.contains("try again when"), "{t}");
        assert_eq!(
            tree(&store),
            before,
            "{args:?} went on beside a {kind} lock"
        );
        std::fs::remove_file(&lock).unwrap();
    };
    refused_by("write", &add_second, "being written into the store (locks");
    refused_by(
        "keys",
        &[
            "image",
            p(f.m(2)),
            "-o",
            p(&store.join("late.lbi")),
            "--dedup",
            "--encrypt",
            "--key-file",
            p(&key),
        ],
        "passphrases are being changed",
    );

    eprintln!("encrypted local store test done in {:.1?}", t_all.elapsed());
    assert!(
        wrong_output.is_empty(),
        "{} wrong output(s):\n{}",
        wrong_output.len(),
        wrong_output.join("\n\n")
    );
}

#[test]
fn encrypted_store_catches_moved_and_foreign_frames() {
    let t_all = Instant::now();
    let f = Fleet::new();
    let key = pass_file(f.path(), "fleet.pass", "one passphrase for two stores");
    let enc = ["--encrypt", "--key-file", p(&key)];
    let with_key = ["--key-file", p(&key)];
    let a = f.path().join("store-a");
    std::fs::create_dir(&a).unwrap();
    let img = |name: &str| a.join(format!("{name}.lbi"));
    // verify DIR of store A: 5 images, `intact` of them intact; its output
    let verify_a = |intact: usize| -> String {
        let args = ["verify", p(&a), "--key-file", p(&key)];
        let t = if intact == 5 {
            ok(&[], &args)
        } else {
            fails(lifeboat(&[], &args), 1, "damaged")
        };
        assert!(t.contains(&format!("5 images, {intact} intact")), "{t}");
        t
    };
    // the images verify DIR names in its last line (the damaged ones)
    let named = |t: &str| -> BTreeSet<String> {
        let last = t.lines().last().unwrap();
        ["m1", "m2", "x", "y1", "y2"]
            .iter()
            .filter(|n| last.contains(&format!("/{n}.lbi")))
            .map(|n| n.to_string())
            .collect()
    };
    let set = |v: &[&str]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };

    // store A: two machines, then three made from machine 1 whose only new data are fresh
    // noise blocks in its free space, so their packs' layout is known: x adds two blocks in
    // two chunks (two frames, one pack), y1 and y2 one block each (one frame, one pack)
    image_into_with(&f, &a, 1, &enc);
    image_into_with(&f, &a, 2, &enc);
    let info = ok_json(
        &[],
        &["info", "--json", p(&img("m1")), "--key-file", p(&key)],
    );
    assert_eq!(info["block_size"], BLOCK, "{info}");
    assert_eq!(info["chunk_size"], 4 * MIB, "{info}");
    let x = derive(&f, "x.img", &[(42 * MIB, 0x3001), (44 * MIB, 0x3003)]);
    let y1 = derive(&f, "y1.img", &[(44 * MIB, 0x3005)]);
    let y2 = derive(&f, "y2.img", &[(44 * MIB, 0x3007)]);
    let one_pack = |made: BTreeSet<String>, frames: u64| -> PathBuf {
        assert_eq!(made.len(), 1, "{made:?}");
        let pack = a.join("packs").join(made.first().unwrap());
        assert_eq!(
            std::fs::metadata(&pack).unwrap().len(),
            frames * (BLOCK + SEAL),
            "{} holds {frames} sealed frame(s) of one raw noise block each",
            pack.display()
        );
        pack
    };
    let px = one_pack(image_file(&x, &img("x"), &enc), 2);
    let py1 = one_pack(image_file(&y1, &img("y1"), &enc), 1);
    let py2 = one_pack(image_file(&y2, &img("y2"), &enc), 1);
    verify_a(5);

    // 1. a flipped byte in the first frame of x's pack: x is damaged, and only x
    let px_bytes = std::fs::read(&px).unwrap();
    flip(&px, (BLOCK + SEAL) / 2, 0x10);
    let t = fails(
        lifeboat(&[], &["verify", p(&img("x")), "--key-file", p(&key)]),
        1,
        "does not decrypt",
    );
    assert!(t.contains("x.lbi"), "{t}");
    let t = verify_a(4);
    assert_eq!(named(&t), set(&["x"]), "{t}");
    let target = f.target("x-restore.img");
    let x_img = img("x");
    let mut args = vec!["restore", p(&x_img), p(&target), "--yes"];
    args.extend_from_slice(&with_key);
    fails(lifeboat(&[], &args), 1, "does not decrypt");
    std::fs::write(&px, &px_bytes).unwrap();
    verify_a(5);

    // 2. x's two frames swapped inside their pack: each is whole, but sealed to the other's
    // place (its pack address is in the associated data)
    let (first, second) = px_bytes.split_at((BLOCK + SEAL) as usize);
    std::fs::write(&px, [second, first].concat()).unwrap();
    let t = fails(
        lifeboat(&[], &["verify", p(&img("x")), "--key-file", p(&key)]),
        1,
        "does not decrypt",
    );
    assert!(t.contains("x.lbi"), "{t}");
    let t = verify_a(4);
    assert_eq!(named(&t), set(&["x"]), "{t}");
    fails(lifeboat(&[], &args), 1, "does not decrypt");
    std::fs::write(&px, &px_bytes).unwrap();
    verify_a(5);

    // 3. y1's and y2's packs swapped by name: each frame sits at the right offset of a pack
    // of the right length, in the other pack
    swap_files(&py1, &py2);
    let t = verify_a(3);
    assert_eq!(named(&t), set(&["y1", "y2"]), "{t}");
    assert!(t.contains("does not decrypt"), "{t}");
    swap_files(&py1, &py2);
    verify_a(5);

    // 4. a foreign pack: store B, made with the same passphrase, has a key of its own; the
    // same machines into it give x a pack of the same size, holding the same blocks at the
    // same offsets, sealed under B's key. Put in place of A's, it does not open.
    let b = f.path().join("store-b");
    std::fs::create_dir(&b).unwrap();
    image_into_with(&f, &b, 1, &enc);
    let made = image_file(&x, &b.join("x.lbi"), &enc);
    assert_eq!(made.len(), 1, "{made:?}");
    let qx = b.join("packs").join(made.first().unwrap());
    assert_ne!(
        key_id(&[], p(&b.join("x.lbi")), &key),
        key_id(&[], p(&img("x")), &key),
        "two stores made with one passphrase have keys of their own"
    );
    let qx_bytes = std::fs::read(&qx).unwrap();
    assert_eq!(qx_bytes.len(), px_bytes.len());
    std::fs::write(&px, &qx_bytes).unwrap();
    let t = verify_a(4);
    assert_eq!(named(&t), set(&["x"]), "{t}");
    assert!(t.contains("does not decrypt"), "{t}");
    fails(lifeboat(&[], &args), 1, "does not decrypt");
    std::fs::write(&px, &px_bytes).unwrap();
    verify_a(5);
    f.restores_equal_with(&[], p(&img("m2")), 2, &with_key);
    eprintln!(
        "moved and foreign frames test done in {:.1?}",
        t_all.elapsed()
    );
}

#[test]
fn encrypted_s3_store_round_trip() {
    let t_all = Instant::now();
    let Some(weed) = Weed::start() else {
        return;
    };
    let env = weed.env();
    let f = Fleet::new();
    let key = pass_file(f.path(), "fleet.pass", "an S3 fleet's passphrase");
    let with_key = ["--key-file", p(&key)];
    let url = |name: &str| format!("s3://lifeboat/secret-fleet/{name}");
    let store = "s3://lifeboat/secret-fleet";
    let objects = || store_objects(&weed, "secret-fleet/");
    let packs_of = |o: &BTreeMap<String, u64>| packs_among(o, "secret-fleet/");

    // 1. three machines with --dedup --encrypt: the first makes the store's key object
    let mut made = vec![BTreeSet::new()];
    let mut grew = Vec::new();
    for k in 1..=3 {
        let before = objects();
        let o = ok(
            &env,
            &[
                "image",
                p(f.m(k)),
                "-o",
                &url(&format!("m{k}.lbi")),
                "--dedup",
                "--encrypt",
                "--key-file",
                p(&key),
            ],
        );
        assert!(o.contains("written and verified"), "{o}");
        let after = objects();
        made.push(&packs_of(&after) - &packs_of(&before));
        grew.push(after.values().sum::<u64>() - before.values().sum::<u64>());
    }
    eprintln!("encrypted S3 store growth per machine: {grew:?} bytes");
    for (k, g) in grew.iter().enumerate().skip(1) {
        assert!(
            (USER_NOISE.1..=USER_NOISE.1 + 2 * MIB).contains(g),
            "machine {} adds its own data only, not {g} bytes: {grew:?}",
            k + 1
        );
    }
    let objs = objects();
    let store_key = weed
        .get("secret-fleet/store.key")
        .expect("the store.key object");
    assert_eq!(store_key.len(), 4096);
    assert_eq!(&store_key[..8], b"LBSTKEY1");
    assert_eq!(
        objs.keys()
            .filter(|k| k.starts_with("secret-fleet/locks/"))
            .count(),
        0,
        "a writer left its lock: {objs:?}"
    );
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    // machine 2's own noise is in no object
    let needle = common::read_at(f.m(2), USER_NOISE.0 + MIB + 13, 64);
    for k in objs.keys() {
        let body = weed.get(k).unwrap();
        assert!(
            !holds(&body, &needle),
            "machine 2's noise is readable in {k}"
        );
    }

    // 2. the store verifies with the key, one machine restores equal; without the key
    // verify fails
    let o = ok(&env, &["verify", store, "--key-file", p(&key)]);
    assert!(o.contains("3 images, 3 intact"), "{o}");
    f.restores_equal_with(&env, &url("m2.lbi"), 2, &with_key);
    let (o, _) = run(lifeboat(&env, &["verify", store]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--key-file"), "{}", text(&o));

    // 3. machine 3 deleted; gc without the key deletes nothing, with it frees m3's packs
    let id3 = ok_json(
        &env,
        &["info", "--json", &url("m3.lbi"), "--key-file", p(&key)],
    )["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    weed.delete("secret-fleet/m3.lbi");
    let before = objects();
    let t = fails(
        lifeboat(&env, &["gc", store, "--yes"]),
        1,
        "nothing was deleted",
    );
    assert!(t.contains("--key-file"), "{t}");
    assert_eq!(objects(), before, "gc without the key deleted something");
    let done = ok_json(
        &env,
        &["gc", store, "--yes", "--json", "--key-file", p(&key)],
    );
    eprintln!("encrypted S3 gc: {done}");
    assert_eq!(done["images"], 2, "{done}");
    assert_eq!(unused(&done), made[3], "exactly m3's packs: {done}");
    let after = objects();
    let gone: BTreeSet<String> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    let mut expected: BTreeSet<String> = made[3]
        .iter()
        .map(|n| format!("secret-fleet/packs/{n}"))
        .collect();
    expected.insert(format!("secret-fleet/index/{id3}.idx"));
    assert_eq!(
        gone, expected,
        "gc deleted m3's packs and index file, nothing else"
    );
    assert!(after.contains_key("secret-fleet/store.key"), "{after:?}");

    // 4. the rest verify and restore
    let o = ok(&env, &["verify", store, "--key-file", p(&key)]);
    assert!(o.contains("2 images, 2 intact"), "{o}");
    f.restores_equal_with(&env, &url("m1.lbi"), 1, &with_key);
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());

    // 5. the store's passphrases, changed in the bucket: every image object is uploaded
    // again with the new slots in its header (nothing else of it changes), then store.key;
    // a removed passphrase opens nothing of the store afterwards
    let second = pass_file(f.path(), "second.pass", "a second S3 fleet passphrase");
    let before = objects();
    let t = ok(
        &env,
        &[
            "key",
            "add",
            store,
            "--new-key-file",
            p(&second),
            "--key-file",
            p(&key),
        ],
    );
    assert!(t.contains("slot 2"), "{t}");
    let after = objects();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the same objects, none added or left behind"
    );
    for (k, len) in &before {
        assert_eq!(after[k], *len, "{k} changed size");
    }
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    let listed = ok(&env, &["key", "list", store]);
    assert!(listed.contains("slot 2"), "{listed}");
    let listed = ok(&env, &["key", "list", &url("m2.lbi")]);
    assert!(
        listed.contains("slot 2"),
        "every image carries them: {listed}"
    );
    let o = ok(&env, &["verify", store, "--key-file", p(&second)]);
    assert!(o.contains("2 images, 2 intact"), "{o}");
    f.restores_equal_with(&env, &url("m2.lbi"), 2, &["--key-file", p(&second)]);
    // a new machine into the store with the second passphrase shares the store's key
    ok(
        &env,
        &[
            "image",
            p(f.m(4)),
            "-o",
            &url("m4.lbi"),
            "--dedup",
            "--encrypt",
            "--key-file",
            p(&second),
        ],
    );
    ok(
        &env,
        &["key", "remove", store, "1", "--key-file", p(&second)],
    );
    for m in ["m1.lbi", "m2.lbi", "m4.lbi"] {
        fails(
            lifeboat(&env, &["verify", &url(m), "--key-file", p(&key)]),
            1,
            "wrong passphrase",
        );
    }
    let o = ok(&env, &["verify", store, "--key-file", p(&second)]);
    assert!(o.contains("3 images, 3 intact"), "{o}");
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    eprintln!("encrypted S3 test done in {:.1?}", t_all.elapsed());
}

#[test]
fn encrypted_store_first_writers_race_for_its_key() {
    let f = Fleet::new();
    let key = pass_file(f.path(), "fleet.pass", "two writers, one key");
    let store = f.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let img = |k: usize| store.join(format!("m{k}.lbi"));
    let args = |k: usize| {
        let (m, i) = (p(f.m(k)).to_string(), p(&img(k)).to_string());
        lifeboat(
            &[],
            &[
                "image",
                &m,
                "-o",
                &i,
                "--dedup",
                "--encrypt",
                "--key-file",
                p(&key),
            ],
        )
    };

    // two first writers of an empty folder, started together: each plans a key of its own
    // (if it finds no store.key), and only one key can be the store's. The other writes
    // nothing and says to run again.
    let writers: Vec<(usize, Running)> = [1, 2].iter().map(|&k| (k, start(args(k)))).collect();
    let mut lost = Vec::new();
    for (k, w) in writers {
        let (o, took) = w.finish();
        let t = text(&o);
        if o.status.success() {
            eprintln!("first writer m{k} ({took:.1?}): ok");
        } else {
            assert_eq!(o.status.code(), Some(1), "m{k}: {t}");
            assert!(
                t.contains("another writer made the store's key") && t.contains("again"),
                "m{k}: {t}"
            );
            assert!(!img(k).exists(), "the writer that lost left its image");
            let said = t.lines().rfind(|l| l.contains("error")).unwrap_or("");
            eprintln!("first writer m{k} ({took:.1?}) lost the race: {said}");
            lost.push(k);
        }
    }
    assert!(lost.len() < 2, "one writer makes the store's key");
    for &k in &lost {
        let o = ok(
            &[],
            &[
                "image",
                p(f.m(k)),
                "-o",
                p(&img(k)),
                "--dedup",
                "--encrypt",
                "--key-file",
                p(&key),
            ],
        );
        assert!(o.contains("written and verified"), "{o}");
    }
    assert!(locks(&store).is_empty(), "{:?}", locks(&store));

    // one key, both images intact, nothing left over by the loser
    assert_eq!(key_id(&[], p(&img(1)), &key), key_id(&[], p(&img(2)), &key));
    let o = ok(&[], &["verify", p(&store), "--key-file", p(&key)]);
    assert!(o.contains("2 images, 2 intact"), "{o}");
    let dry = ok_json(
        &[],
        &[
            "gc",
            p(&store),
            "--dry-run",
            "--json",
            "--key-file",
            p(&key),
        ],
    );
    assert!(
        unused(&dry).is_empty(),
        "a writer left packs no image uses: {dry}"
    );
    f.restores_equal_with(&[], p(&img(2)), 2, &["--key-file", p(&key)]);
}
