//! Tier 1 (no root, no loop devices): images in an S3 store (src/store/s3.rs) against a real
//! SeaweedFS started on 127.0.0.1 by the test (tests/common/servers.rs, `Weed`). The source
//! "disk" is a plain sparse file of noise, text and zeros, which lifeboat images as a whole
//! disk with no table (every non-zero chunk stored, zero chunks recorded as zeros), so a
//! restore must give it back byte for byte, even over a target that held junk.
//!
//! Four tests, each with its own server (they run side by side):
//! - `images_round_trip_refusals_and_chains`: image to `s3://lifeboat/a/disk.lbi` (more than
//!   three 16 MiB parts), `verify`, `info --json`, `restore` equal to the source; refusals
//!   (an existing name, a missing bucket, no credentials, a wrong secret, `--volume-size`)
//!   each exit 1 with a message that says why and write no object and leave no upload; a
//!   child made with `--parent s3://…` is much smaller than its parent and restores the
//!   changed source, and `export`s from the bucket as raw and qcow2 equal to it;
//!   `--incremental s3://lifeboat/a` finds that child as the newest image of
//!   the disk in the folder and names a grandchild beside it, which restores; `prune` in the
//!   bucket keeping the full image alone deletes both descendants and nothing else.
//! - `uploads_and_reads_survive_drops_and_a_dead_server_leaves_no_object`: through a TCP proxy
//!   in the test that cuts connections in the middle of a part's body and of a download's
//!   body, an image, a verify and a restore still succeed (the cuts are counted, and the
//!   proxy keeps the Host header lifeboat signed, 127.0.0.1:PROXYPORT, which weed accepts);
//!   then weed is killed while a part is held in the proxy: the image fails (exit 1, naming
//!   the object, within the 2 s of LIFEBOAT_NET_RETRY_SECS), no object of that name exists
//!   once weed is back, only an unfinished upload, which a second run aborts before it
//!   succeeds.
//! - `a_full_bucket_is_refused_clearly_leaves_nothing_and_a_retry_succeeds`: SeaweedFS's
//!   bucket quota (`weed shell`, `s3.bucket.quota` and its enforcement) turns the bucket
//!   read-only; an image then fails (exit 1) with a message that names the object and says
//!   the store may be full or over its quota, leaves no object and no upload, and succeeds
//!   once the quota is lifted.
//! - `a_large_encrypted_image_changes_its_passphrase_in_place`: `key add` and `key remove`
//!   on a 40 MB encrypted image in the bucket keep every byte after the 4 KiB header (the
//!   store copies those parts itself), leave no upload, and only the new passphrase opens it.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

use common::servers::Weed;
use common::{assert_same_file, noise, sparse, write_at};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// The source disk's size.
const DISK: u64 = 96 * MIB;
/// The size of an upload part (src/store/s3.rs, `part_size`).
const PART: u64 = 16 * MIB;

/// The environment variables of the AWS tools that the test's own environment must not pass
/// on to lifeboat: another endpoint (AWS_ENDPOINT_URL_S3 would win over the proxy), profile
/// or credentials file.
const FOREIGN_AWS: [&str; 8] = [
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_SESSION_TOKEN",
    "AWS_S3_FORCE_PATH_STYLE",
    "AWS_DEFAULT_REGION",
    "LIFEBOAT_NET_RETRY_SECS",
];

/// The lifeboat binary with `env` (a store's environment) and `args`, stdin null.
fn lifeboat(env: &[(String, String)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    for k in FOREIGN_AWS {
        c.env_remove(k);
    }
    c.args(args).envs(env.iter().cloned()).stdin(Stdio::null());
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `lifeboat args`, which must succeed; its stdout and stderr, and how long it took.
fn ok(env: &[(String, String)], args: &[&str]) -> String {
    let t0 = Instant::now();
    let o = lifeboat(env, args).output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "lifeboat {args:?}: {t}");
    eprintln!("lifeboat {} ({:.1?})", args.join(" "), t0.elapsed());
    t
}

/// `lifeboat args` as `cmd` sets it up, which must exit 1 with `needle` in its output.
fn fails(mut cmd: Command, needle: &str) -> String {
    let o = cmd.output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{cmd:?} should fail: {t}");
    assert!(t.contains(needle), "{cmd:?}: no `{needle}` in:\n{t}");
    eprintln!("refused: {}", t.lines().last().unwrap_or(""));
    t
}

/// `lifeboat info --json img`, which must succeed.
fn info_json(env: &[(String, String)], img: &str) -> serde_json::Value {
    let o = lifeboat(env, &["info", "--json", img]).output().unwrap();
    assert!(o.status.success(), "info --json {img}: {}", text(&o));
    serde_json::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap()
}

/// The source disk: 96 MiB, sparse, with 60 MiB of noise (incompressible: the image spans
/// four 16 MiB parts), 3 MiB of text and zeros elsewhere.
fn source_disk(dir: &Path) -> PathBuf {
    let p = dir.join("source.img");
    sparse(&p, DISK);
    write_at(&p, 0, b"LIFEBOAT S3 TEST DISK\n");
    write_at(&p, MIB, &noise(30 * MIB as usize, 1));
    let mut t = Vec::new();
    for i in 0..60_000 {
        t.extend_from_slice(format!("line {i} of a compressible region\n").as_bytes());
    }
    t.truncate(3 * MIB as usize);
    write_at(&p, 40 * MIB, &t);
    write_at(&p, 50 * MIB, &noise(30 * MIB as usize, 2));
    p
}

/// A restore target: a sparse file of the source's size, with junk where the source has
/// zeros (32-36 MiB and 84-88 MiB), so that a restore that left zero ranges unwritten shows.
fn target_disk(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    sparse(&p, DISK);
    write_at(&p, 32 * MIB, &vec![b'J'; 4 * MIB as usize]);
    write_at(&p, 84 * MIB, &vec![b'K'; 4 * MIB as usize]);
    p
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn images_round_trip_refusals_and_chains() {
    let t_all = Instant::now();
    let Some(weed) = Weed::start() else {
        return;
    };
    let env = weed.env();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = source_disk(d);

    // 1. round trip: image, verify, info --json, restore
    let full = "s3://lifeboat/a/disk.lbi";
    let o = ok(&env, &["image", p(&src), "-o", full]);
    assert!(o.contains("written and verified"), "{o}");
    let objects = weed.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].0, "a/disk.lbi");
    let size = objects[0].1;
    assert!(
        size > 3 * PART && size < 64 * MIB,
        "60 MiB of noise stored in more than 3 parts: {size} bytes"
    );
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    let o = ok(&env, &["verify", full]);
    assert!(o.contains("intact"), "{o}");
    let info = info_json(&env, full);
    assert_eq!(info["kind"], "full", "{info}");
    assert_eq!(info["path"], full, "{info}");
    assert_eq!(info["raw_bytes"], DISK, "{info}");
    assert_eq!(info["file_bytes"], size, "{info}");
    assert_eq!(info["missing_bytes"], 0, "{info}");
    let regions = info["meta"]["regions"].as_array().unwrap();
    assert!(
        regions.len() == 1 && regions[0]["method"] == "all" && regions[0]["what"] == "disk",
        "a file with no table is copied whole: {regions:?}"
    );
    let t1 = target_disk(d, "t1.img");
    let o = ok(&env, &["restore", full, p(&t1), "--yes"]);
    assert!(o.contains("verified by reading back"), "{o}");
    assert_same_file(&src, &t1);
    eprintln!("round trip done at {:.1?}", t_all.elapsed());

    // 2. refusals: exit 1, a message that says why, no object and no upload left
    let before = weed.objects();
    let nothing_written = |what: &str| {
        assert_eq!(weed.objects(), before, "{what} wrote an object");
        assert!(
            weed.uploads().is_empty(),
            "{what} left an upload: {:?}",
            weed.uploads()
        );
    };
    let t = fails(
        lifeboat(&env, &["image", p(&src), "-o", full]),
        "already exists",
    );
    assert!(t.contains("a/disk.lbi"), "{t}");
    nothing_written("an existing name");
    assert_eq!(weed.size("a/disk.lbi"), Some(size));

    fails(
        lifeboat(&env, &["image", p(&src), "-o", "s3://nobucket/x.lbi"]),
        "no bucket \"nobucket\"",
    );
    nothing_written("a missing bucket");

    let home = tempfile::tempdir().unwrap();
    let mut c = lifeboat(
        &env,
        &["image", p(&src), "-o", "s3://lifeboat/a/nokeys.lbi"],
    );
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", home.path());
    let t = fails(c, "AWS_ACCESS_KEY_ID");
    assert!(t.contains("no S3 credentials"), "{t}");
    nothing_written("no credentials");

    let mut c = lifeboat(
        &env,
        &["image", p(&src), "-o", "s3://lifeboat/a/denied.lbi"],
    );
    c.env("AWS_SECRET_ACCESS_KEY", "not-the-secret-key");
    let t = fails(c, "refused access");
    assert!(t.contains("AWS_SECRET_ACCESS_KEY"), "{t}");
    nothing_written("a wrong secret key");
    // reading with a wrong secret is refused as clearly
    let mut c = lifeboat(&env, &["info", full]);
    c.env("AWS_SECRET_ACCESS_KEY", "not-the-secret-key");
    fails(c, "AWS_SECRET_ACCESS_KEY");

    let t = fails(
        lifeboat(
            &env,
            &[
                "image",
                p(&src),
                "-o",
                "s3://lifeboat/a/split.lbi",
                "--volume-size",
                "8M",
            ],
        ),
        "--volume-size",
    );
    assert!(t.contains("S3"), "{t}");
    nothing_written("--volume-size");

    fails(
        lifeboat(&env, &["info", "s3://lifeboat/a/missing.lbi"]),
        "no object",
    );
    eprintln!("refusals done at {:.1?}", t_all.elapsed());

    // 3. a child of the image, its parent named by --parent s3://…
    write_at(&src, 10 * MIB, &noise(MIB as usize, 9));
    write_at(&src, 60 * MIB, &vec![0u8; 2 * MIB as usize]);
    write_at(&src, 88 * MIB + 12345, b"written after the full image");
    let child = "s3://lifeboat/a/child.lbi";
    let o = ok(&env, &["image", p(&src), "--parent", full, "-o", child]);
    assert!(o.contains("written and verified"), "{o}");
    let child_size = weed.size("a/child.lbi").unwrap();
    assert!(
        child_size < size / 4,
        "the child stores only what changed: {child_size} of the parent's {size} bytes"
    );
    assert_eq!(
        weed.size("a/disk.lbi"),
        Some(size),
        "the parent is untouched"
    );
    let info = info_json(&env, child);
    let chain = info["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 2, "{info}");
    assert_eq!(
        chain[1]["path"], full,
        "the parent is found beside the child: {info}"
    );
    let t2 = target_disk(d, "t2.img");
    ok(&env, &["restore", child, p(&t2), "--yes"]);
    assert_same_file(&src, &t2);
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    eprintln!("chain done at {:.1?}", t_all.elapsed());

    // 3b. export of the child straight from the bucket: raw (checked by lifeboat against the
    // hashes, and here byte for byte) and qcow2 (through qemu-img, converted back here)
    let raw = d.join("export.img");
    ok(&env, &["export", child, "-o", p(&raw)]);
    assert_same_file(&src, &raw);
    let qcow = d.join("export.qcow2");
    ok(&env, &["export", child, "-o", p(&qcow)]);
    let back = d.join("back.img");
    let st = Command::new("qemu-img")
        .args(["convert", "-O", "raw", p(&qcow), p(&back)])
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img convert");
    assert_same_file(&src, &back);
    for f in [&raw, &qcow, &back] {
        std::fs::remove_file(f).unwrap();
    }
    eprintln!("export done at {:.1?}", t_all.elapsed());

    // 3c. merge of the chain, from the bucket into the bucket: a full image that needs no
    // other object and holds the child's disk
    let merged = "s3://lifeboat/merged.lbi";
    let t = ok(&env, &["merge", child, "-o", merged]);
    assert!(t.contains("needs no other file"), "{t}");
    let info = info_json(&env, merged);
    assert_eq!(info["kind"], "full", "{info}");
    let raw = d.join("merged.img");
    ok(&env, &["export", merged, "-o", p(&raw)]);
    assert_same_file(&src, &raw);
    std::fs::remove_file(&raw).unwrap();
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    weed.delete("merged.lbi");
    eprintln!("merge done at {:.1?}", t_all.elapsed());

    // 4. --incremental with the bucket's folder: the newest image of this disk there (the
    // child, listed and read with range requests) is the parent, and the new image is named
    // beside it
    write_at(&src, 30 * MIB + 777, b"written after the child");
    let before: Vec<String> = weed.objects().into_iter().map(|o| o.0).collect();
    let o = ok(
        &env,
        &["image", p(&src), "--incremental", "s3://lifeboat/a"],
    );
    assert!(o.contains("written and verified"), "{o}");
    let new: Vec<String> = weed
        .objects()
        .into_iter()
        .map(|o| o.0)
        .filter(|k| !before.contains(k))
        .collect();
    assert!(
        new.len() == 1 && new[0].starts_with("a/") && new[0].ends_with(".lbi"),
        "one new image in the folder: {new:?}"
    );
    let inc = format!("s3://lifeboat/{}", new[0]);
    let info = info_json(&env, &inc);
    let chain = info["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 3, "full, child, and the new one: {info}");
    assert_eq!(
        chain[1]["path"], child,
        "the newest image is its parent: {info}"
    );
    let t3 = target_disk(d, "t3.img");
    ok(&env, &["restore", &inc, p(&t3), "--yes"]);
    assert_same_file(&src, &t3);

    // 5. prune in the bucket: keeping the full image alone deletes its two descendants
    let o = ok(&env, &["prune", "s3://lifeboat/a", "--keep", full, "--yes"]);
    assert!(o.contains("2 images") || o.contains("delete"), "{o}");
    let left: Vec<String> = weed
        .objects()
        .into_iter()
        .map(|o| o.0)
        .filter(|k| k.starts_with("a/"))
        .collect();
    assert_eq!(left, vec!["a/disk.lbi".to_string()], "prune left {left:?}");
    ok(&env, &["verify", full]);
    eprintln!(
        "--incremental and prune done; the whole test took {:.1?}",
        t_all.elapsed()
    );
}

/// What the proxy does and has done; shared by its threads and the test.
#[derive(Default)]
struct ProxyState {
    /// weed's S3 port.
    upstream: u16,
    /// Connections accepted.
    conns: AtomicUsize,
    /// Tickets: connections whose request passed [`UP_MARK`] bytes (part uploads), and whose
    /// answer passed [`DOWN_MARK`] bytes (large ranged reads), numbered from 1 in that order.
    up_tickets: AtomicUsize,
    down_tickets: AtomicUsize,
    /// The tickets whose connection is to be cut at the mark.
    cut_up: Mutex<Vec<usize>>,
    cut_down: Mutex<Vec<usize>>,
    /// Connections cut so far, in the request and in the answer.
    cuts_up: AtomicUsize,
    cuts_down: AtomicUsize,
    /// While set, a request that reaches [`UP_MARK`] is held there (not forwarded further).
    hold: AtomicBool,
    held: AtomicUsize,
    /// The Host header of every request seen.
    hosts: Mutex<Vec<String>>,
}

/// Where a request is cut or held: 1 MiB into it, in the middle of a 16 MiB part.
const UP_MARK: u64 = MIB;
/// Where an answer is cut: 2 MiB in, past the first read's 1 MiB window.
const DOWN_MARK: u64 = 2 * MIB;

/// A TCP proxy on 127.0.0.1 in front of weed's S3 port that can cut connections in the
/// middle of a request body or of an answer body, and hold requests.
struct Proxy {
    port: u16,
    st: Arc<ProxyState>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = Arc::new(ProxyState {
            upstream,
            ..ProxyState::default()
        });
        let s = Arc::clone(&st);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let s = Arc::clone(&s);
                std::thread::spawn(move || relay(client, &s));
            }
        });
        Proxy { port, st }
    }

    /// The store's environment with the proxy as its endpoint.
    fn env(&self, weed: &Weed) -> Vec<(String, String)> {
        let mut env = weed.env();
        for (k, v) in &mut env {
            if k == "AWS_ENDPOINT_URL" {
                *v = format!("http://127.0.0.1:{}", self.port);
            }
        }
        env
    }

    /// Cuts the `nth` (from 1) of the next requests that pass [`UP_MARK`].
    fn cut_requests(&self, nth: &[usize]) {
        let base = self.st.up_tickets.load(Ordering::SeqCst);
        *self.st.cut_up.lock().unwrap() = nth.iter().map(|n| base + n).collect();
    }

    /// Cuts the `nth` (from 1) of the next answers that pass [`DOWN_MARK`].
    fn cut_answers(&self, nth: &[usize]) {
        let base = self.st.down_tickets.load(Ordering::SeqCst);
        *self.st.cut_down.lock().unwrap() = nth.iter().map(|n| base + n).collect();
    }

    fn cuts(&self) -> (usize, usize) {
        (
            self.st.cuts_up.load(Ordering::SeqCst),
            self.st.cuts_down.load(Ordering::SeqCst),
        )
    }
}

/// Relays one connection both ways until either side ends it, or a cut.
fn relay(client: TcpStream, st: &ProxyState) {
    st.conns.fetch_add(1, Ordering::SeqCst);
    let Ok(server) = TcpStream::connect(("127.0.0.1", st.upstream)) else {
        // weed is down: the client sees its connection closed
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::scope(|scope| {
        scope.spawn(|| pump(&client, &server, true, st));
        pump(&s2, &c2, false, st);
    });
}

/// Copies `from` to `to` (the request when `up`, else the answer), cutting or holding at the
/// mark as [`ProxyState`] says. A cut shuts both sockets down, both ways.
fn pump(from: &TcpStream, to: &TcpStream, up: bool, st: &ProxyState) {
    let cut = || {
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    };
    let mark = if up { UP_MARK } else { DOWN_MARK };
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    let mut head = Vec::new();
    let mut host_seen = !up;
    loop {
        let n = match (&mut &*from).read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        if !host_seen && head.len() < 16 << 10 {
            head.extend_from_slice(&buf[..n]);
            if let Some(h) = String::from_utf8_lossy(&head)
                .lines()
                .find_map(|l| l.strip_prefix("Host: ").map(str::to_string))
            {
                st.hosts.lock().unwrap().push(h);
                host_seen = true;
            }
        }
        let crosses = total < mark && total + n as u64 >= mark;
        if crosses {
            // forward up to the mark, then decide
            let k = (mark - total) as usize;
            if (&mut &*to).write_all(&buf[..k]).is_err() {
                return cut();
            }
            total += k as u64;
            let (tickets, cuts, cut_list) = if up {
                (&st.up_tickets, &st.cuts_up, &st.cut_up)
            } else {
                (&st.down_tickets, &st.cuts_down, &st.cut_down)
            };
            let ticket = tickets.fetch_add(1, Ordering::SeqCst) + 1;
            if cut_list.lock().unwrap().contains(&ticket) {
                cuts.fetch_add(1, Ordering::SeqCst);
                return cut();
            }
            if up && st.hold.load(Ordering::SeqCst) {
                st.held.fetch_add(1, Ordering::SeqCst);
                while st.hold.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if (&mut &*to).write_all(&buf[k..n]).is_err() {
                return cut();
            }
            total += (n - k) as u64;
            continue;
        }
        if (&mut &*to).write_all(&buf[..n]).is_err() {
            return cut();
        }
        total += n as u64;
    }
}

#[test]
fn uploads_and_reads_survive_drops_and_a_dead_server_leaves_no_object() {
    let t_all = Instant::now();
    let Some(mut weed) = Weed::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = source_disk(d);
    let proxy = Proxy::start(weed.port());
    let env = proxy.env(&weed);

    // 1. two parts cut 1 MiB into their bodies: each is sent again, the image is whole
    proxy.cut_requests(&[1, 3]);
    let img = "s3://lifeboat/p/disk.lbi";
    let o = ok(&env, &["image", p(&src), "-o", img]);
    assert!(o.contains("written and verified"), "{o}");
    assert_eq!(proxy.cuts(), (2, 0), "the proxy cut two part uploads");
    assert!(
        proxy.st.up_tickets.load(Ordering::SeqCst) >= 6,
        "4 parts and 2 sent again passed the mark"
    );
    let size = weed.size("p/disk.lbi").unwrap();
    assert!(size > 3 * PART, "{size}");
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    // every request went through the proxy, signed for the Host lifeboat sent to it
    let want_host = format!("127.0.0.1:{}", proxy.port);
    let hosts = proxy.st.hosts.lock().unwrap().clone();
    assert!(
        !hosts.is_empty() && hosts.iter().all(|h| *h == want_host),
        "Host headers {hosts:?}, not {want_host}"
    );

    // 2. an answer cut 2 MiB in, in a verify and in a restore: each resumes
    proxy.cut_answers(&[1]);
    let o = ok(&env, &["verify", img]);
    assert!(o.contains("intact"), "{o}");
    assert_eq!(
        proxy.cuts(),
        (2, 1),
        "the proxy cut an answer of the verify"
    );
    proxy.cut_answers(&[1]);
    let t1 = target_disk(d, "t1.img");
    ok(&env, &["restore", img, p(&t1), "--yes"]);
    assert_eq!(
        proxy.cuts(),
        (2, 2),
        "the proxy cut an answer of the restore"
    );
    assert_same_file(&src, &t1);
    eprintln!(
        "drops survived at {:.1?}, {} connections",
        t_all.elapsed(),
        proxy.st.conns.load(Ordering::SeqCst)
    );

    // 3. weed dies while a part is on its way (held in the proxy): the image fails, and no
    // object of that name appears
    let cut = "s3://lifeboat/d/cut.lbi";
    proxy.st.hold.store(true, Ordering::SeqCst);
    let (out, err) = (d.join("cut.out"), d.join("cut.err"));
    let mut child = lifeboat(&env, &["image", p(&src), "-o", cut])
        .env("LIFEBOAT_NET_RETRY_SECS", "2")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while proxy.st.held.load(Ordering::SeqCst) == 0 {
        if t0.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no part reached the proxy: {}{}",
                std::fs::read_to_string(&out).unwrap(),
                std::fs::read_to_string(&err).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(weed.uploads(), ["d/cut.lbi"], "the upload had begun");
    weed.stop();
    let stopped = Instant::now();
    proxy.st.hold.store(false, Ordering::SeqCst);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if stopped.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the image still ran 60 s after the server died");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let gave_up = stopped.elapsed();
    let t = format!(
        "{}{}",
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap()
    );
    assert_eq!(status.code(), Some(1), "{t}");
    assert!(t.contains("d/cut.lbi"), "the error names the object: {t}");
    eprintln!(
        "the image gave up {gave_up:.1?} after weed died: {}",
        t.trim()
    );
    assert!(
        gave_up < Duration::from_secs(20),
        "with LIFEBOAT_NET_RETRY_SECS=2 the image gives up soon: {gave_up:?}"
    );
    weed.restart();
    assert_eq!(
        weed.size("d/cut.lbi"),
        None,
        "an object after a failed upload"
    );
    // the dead server could not be told to abort: its upload is left, for the next run
    assert_eq!(weed.uploads(), ["d/cut.lbi"], "the failed run's upload");
    let o = ok(&env, &["image", p(&src), "-o", cut]);
    assert!(o.contains("written and verified"), "{o}");
    assert!(
        weed.uploads().is_empty(),
        "unfinished uploads left: {:?}",
        weed.uploads()
    );
    assert!(weed.size("d/cut.lbi").unwrap() > 3 * PART);
    ok(&env, &["verify", cut]);
    eprintln!("the whole test took {:.1?}", t_all.elapsed());
}

/// Runs `weed shell` commands until `done` holds of their output, for up to 60 s (the master
/// learns a bucket's size from the volume servers' heartbeats, seconds late); the last output.
fn shell_until(weed: &Weed, commands: &str, done: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    loop {
        let out = weed.shell(commands);
        if done(&out) {
            return out;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "weed shell {commands:?} never gave what was waited for:\n{out}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_full_bucket_is_refused_clearly_leaves_nothing_and_a_retry_succeeds() {
    let Some(weed) = Weed::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("small.img");
    sparse(&src, 16 * MIB);
    write_at(&src, 0, &noise(6 * MIB as usize, 7));
    let mut env = weed.env();
    env.push(("LIFEBOAT_NET_RETRY_SECS".into(), "2".into()));
    let bucket = weed.bucket().to_string();
    ok(&env, &["image", p(&src), "-o", "s3://lifeboat/q/first.lbi"]);
    // a 1 MB quota, and SeaweedFS's enforcement: the bucket, holding 6 MB, turns read-only
    weed.shell(&format!("s3.bucket.quota -name={bucket} -op=set -sizeMB=1"));
    shell_until(&weed, "s3.bucket.quota.enforce -apply", |o| {
        o.contains("read only")
    });
    let before = weed.objects();
    let t = fails(
        lifeboat(
            &env,
            &["image", p(&src), "-o", "s3://lifeboat/q/second.lbi"],
        ),
        "over its quota",
    );
    assert!(t.contains("s3://lifeboat/q/second.lbi"), "{t}");
    assert_eq!(weed.objects(), before, "a failed image left an object");
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    // the quota lifted: the same command succeeds, and both images verify
    weed.shell(&format!("s3.bucket.quota -name={bucket} -op=remove"));
    shell_until(&weed, "s3.bucket.quota.enforce -apply", |o| {
        !o.contains("read only")
    });
    let t0 = Instant::now();
    loop {
        let o = lifeboat(
            &env,
            &["image", p(&src), "-o", "s3://lifeboat/q/second.lbi"],
        )
        .output()
        .unwrap();
        if o.status.success() {
            break;
        }
        // the filers learn that the bucket is writable again a moment later
        assert!(t0.elapsed() < Duration::from_secs(60), "{}", text(&o));
        std::thread::sleep(Duration::from_secs(1));
    }
    for img in ["s3://lifeboat/q/first.lbi", "s3://lifeboat/q/second.lbi"] {
        ok(&env, &["verify", img]);
    }
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
}

#[test]
fn a_large_encrypted_image_changes_its_passphrase_in_place() {
    // the new header goes in a new upload whose parts after the first 16 MiB the store
    // copies from the object itself (UploadPartCopy); every byte after the header must stay
    let Some(weed) = Weed::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = d.join("noise.img");
    sparse(&src, 48 * MIB);
    write_at(&src, 0, &noise(40 * MIB as usize, 11));
    let env = weed.env();
    let (first, second) = (d.join("first"), d.join("second"));
    std::fs::write(&first, "the first S3 passphrase\n").unwrap();
    std::fs::write(&second, "the second S3 passphrase\n").unwrap();
    let img = "s3://lifeboat/k/big.lbi";
    ok(
        &env,
        &[
            "--key-file",
            p(&first),
            "image",
            p(&src),
            "-o",
            img,
            "--encrypt",
        ],
    );
    let before = weed.get("k/big.lbi").unwrap();
    assert!(before.len() as u64 > 2 * PART, "{} bytes", before.len());
    let t = ok(
        &env,
        &[
            "--key-file",
            p(&first),
            "key",
            "add",
            img,
            "--new-key-file",
            p(&second),
        ],
    );
    assert!(t.contains("slot 2"), "{t}");
    let after = weed.get("k/big.lbi").unwrap();
    const HEADER: usize = 4096;
    assert_eq!(after.len(), before.len());
    assert_ne!(
        after[..HEADER],
        before[..HEADER],
        "the header has the new slot"
    );
    assert!(
        after[HEADER..] == before[HEADER..],
        "bytes after the header changed"
    );
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
    ok(&env, &["--key-file", p(&first), "key", "remove", img, "1"]);
    fails(
        lifeboat(&env, &["verify", img, "--key-file", p(&first)]),
        "wrong passphrase or key file",
    );
    let o = ok(&env, &["verify", img, "--key-file", p(&second)]);
    assert!(o.contains("intact"), "{o}");
    let t = d.join("t.img");
    sparse(&t, 48 * MIB);
    ok(
        &env,
        &["restore", img, p(&t), "--yes", "--key-file", p(&second)],
    );
    assert_same_file(&src, &t);
    assert!(weed.uploads().is_empty(), "{:?}", weed.uploads());
}
