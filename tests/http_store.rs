//! Images read from http:// URLs (src/store/http.rs), against a small range server started
//! in this test, which can misbehave on purpose: drop connections in the middle of a body,
//! ignore ranges, fail with 500s. Tier 1: no root, no tools. The real servers (nginx, with
//! TLS, behind a dropping proxy) are in tests/root_net.rs.
#![allow(clippy::unwrap_used)]

mod common;

use common::{lifeboat_fails, lifeboat_ok, noise, run_lifeboat};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How the server behaves.
#[derive(Clone, Default)]
struct Faults {
    /// The first this many bodies are cut after `cut_after` bytes.
    cut_bodies: usize,
    cut_after: usize,
    /// Answer 200 with the whole file, as a server without range support does.
    ignore_ranges: bool,
    /// The first this many requests get a 500.
    fail_first: usize,
}

struct Server {
    port: u16,
    /// Requests seen, as (path, first byte).
    requests: Arc<Mutex<Vec<(String, u64)>>>,
    cuts: Arc<AtomicUsize>,
}

impl Server {
    fn start(root: &Path, faults: Faults) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let cuts = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let root = root.to_path_buf();
        let (rq, ct) = (requests.clone(), cuts.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (root, faults, rq, ct, served) = (
                    root.clone(),
                    faults.clone(),
                    rq.clone(),
                    ct.clone(),
                    served.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(conn, &root, &faults, &rq, &ct, &served);
                });
            }
        });
        Server {
            port,
            requests,
            cuts,
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

fn serve(
    mut conn: TcpStream,
    root: &Path,
    faults: &Faults,
    requests: &Mutex<Vec<(String, u64)>>,
    cuts: &AtomicUsize,
    served: &AtomicUsize,
) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.strip_prefix("Range: bytes=") {
            let (a, b) = v.trim().split_once('-').unwrap();
            range = Some((a.parse::<u64>().unwrap(), b.parse::<u64>().unwrap()));
        }
    }
    let n = served.fetch_add(1, Ordering::SeqCst);
    requests
        .lock()
        .unwrap()
        .push((path.clone(), range.map_or(0, |r| r.0)));
    if n < faults.fail_first {
        return conn.write_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
    }
    let Ok(data) = std::fs::read(root.join(path.trim_start_matches('/'))) else {
        return conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    };
    let total = data.len() as u64;
    let (head, body) = match range {
        Some((a, b)) if !faults.ignore_ranges => {
            let b = b.min(total - 1);
            (
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{total}\r\nContent-Length: {}\r\n\r\n",
                    b - a + 1
                ),
                &data[a as usize..=b as usize],
            )
        }
        _ => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n"),
            &data[..],
        ),
    };
    conn.write_all(head.as_bytes())?;
    if body.len() > faults.cut_after && cuts.fetch_add(1, Ordering::SeqCst) < faults.cut_bodies {
        conn.write_all(&body[..faults.cut_after])?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    conn.write_all(body)
}

/// A 24 MiB disk of mixed data (noise, text, zeros) and its image in `dir/name`.
fn disk_and_image(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let disk = dir.join("disk.img");
    let mut data = Vec::new();
    for i in 0..6u32 {
        data.extend(noise(2 << 20, i));
        data.extend(std::iter::repeat_n(b'a' + i as u8, 1 << 20));
        data.extend(vec![0u8; 1 << 20]);
    }
    std::fs::write(&disk, &data).unwrap();
    let img = dir.join(name);
    lifeboat_ok(&["image", disk.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    (disk, img)
}

fn restore_to(url: &str, dir: &Path) -> (std::process::Output, PathBuf) {
    let target = dir.join("target.img");
    let _ = std::fs::remove_file(&target);
    std::fs::File::create(&target)
        .unwrap()
        .set_len(24 << 20)
        .unwrap();
    let o = run_lifeboat(&["restore", url, target.to_str().unwrap(), "--yes"]);
    (o, target)
}

fn same(a: &Path, b: &Path) -> bool {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    std::fs::File::open(a).unwrap().read_to_end(&mut x).unwrap();
    std::fs::File::open(b).unwrap().read_to_end(&mut y).unwrap();
    x == y
}

#[test]
fn info_verify_and_restore_read_a_chain_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let (disk, full) = disk_and_image(dir.path(), "www/full.lbi");
    // change a MiB and take a child of it, next to its parent
    common::write_at(&disk, 5 << 20, &noise(1 << 20, 99));
    let child = www.join("child.lbi");
    lifeboat_ok(&[
        "image",
        disk.to_str().unwrap(),
        "-o",
        child.to_str().unwrap(),
        "--parent",
        full.to_str().unwrap(),
    ]);
    // the images move away from where they were made: only the server has them
    let served = dir.path().join("served");
    std::fs::rename(&www, &served).unwrap();
    let s = Server::start(&served, Faults::default());

    let info = lifeboat_ok(&["info", &s.url("child.lbi"), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let chain = v["chain"].as_array().expect("a chain in info --json");
    assert_eq!(chain.len(), 2, "{info}");
    assert_eq!(
        chain[1]["path"],
        s.url("full.lbi"),
        "the parent is found next to the child's URL"
    );

    let out = lifeboat_ok(&["verify", &s.url("child.lbi")]);
    assert!(out.contains("intact"), "{out}");

    let (o, target) = restore_to(&s.url("child.lbi"), dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        same(&disk, &target),
        "the restored disk differs from the source"
    );
    // info reads the header, footer, metadata and index, not the chunks
    let reqs = s.requests.lock().unwrap().clone();
    assert!(reqs.iter().all(|(p, _)| p.ends_with(".lbi")), "{reqs:?}");
}

#[test]
fn a_restore_resumes_after_dropped_connections() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    let (disk, _) = disk_and_image(dir.path(), "www/d.lbi");
    let s = Server::start(
        &www,
        Faults {
            cut_bodies: 4,
            cut_after: 300 << 10,
            ..Faults::default()
        },
    );
    let (o, target) = restore_to(&s.url("d.lbi"), dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(same(&disk, &target));
    assert_eq!(
        s.cuts.load(Ordering::SeqCst).min(4),
        4,
        "the server cut 4 bodies"
    );
    // a resumed request starts where the cut body stopped, not at the start of the file
    let reqs = s.requests.lock().unwrap().clone();
    assert!(
        reqs.iter()
            .any(|(_, at)| reqs.iter().any(|(_, from)| *at == from + (300 << 10))),
        "no request resumed at a cut: {reqs:?}"
    );
}

/// `lifeboat verify URL` with network retries cut to 2 s (LIFEBOAT_NET_RETRY_SECS), which must
/// fail with exit code 1; its stderr.
fn verify_fails_retrying_2s(url: &str) -> String {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["verify", url])
        .env("LIFEBOAT_NET_RETRY_SECS", "2")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    err
}

#[test]
fn server_errors_are_retried_then_reported() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    disk_and_image(dir.path(), "www/d.lbi");
    // two 500s, then good answers: the retries get through
    let s = Server::start(
        &www,
        Faults {
            fail_first: 2,
            ..Faults::default()
        },
    );
    let out = lifeboat_ok(&["verify", &s.url("d.lbi")]);
    assert!(out.contains("intact"), "{out}");

    // a server that ignores ranges, a missing file, a server that is gone: each its message
    let s = Server::start(
        &www,
        Faults {
            ignore_ranges: true,
            ..Faults::default()
        },
    );
    let err = lifeboat_fails(&["info", &s.url("d.lbi")]);
    assert!(err.contains("ignores range requests"), "{err}");
    let err = lifeboat_fails(&["info", &s.url("missing.lbi")]);
    assert!(err.contains("not found"), "{err}");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = std::time::Instant::now();
    let err = verify_fails_retrying_2s(&format!("http://127.0.0.1:{port}/d.lbi"));
    assert!(err.contains("connecting to 127.0.0.1"), "{err}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "the retries are bounded"
    );
}

#[test]
fn a_server_that_keeps_dropping_ends_in_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    disk_and_image(dir.path(), "www/d.lbi");
    let s = Server::start(
        &www,
        Faults {
            cut_bodies: usize::MAX,
            cut_after: 0,
            ..Faults::default()
        },
    );
    let err = verify_fails_retrying_2s(&s.url("d.lbi"));
    assert!(err.contains("retried for 2 s"), "{err}");
}
