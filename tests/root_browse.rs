//! Tier 2 (root): single-file restore from an image, through the real binary. A disk image
//! file (GPT, one ext4 partition made with `mkfs.ext4 -d` from a folder of known files) is
//! imaged with `lifeboat image`; then
//! - `root_tui_browse`: tmux runs `lifeboat tui --images DIR` at 100x30 and only keystrokes
//!   drive it: Browse (o), the image, p1, the file, Space, c, the destination (the images
//!   folder, a temp folder), Enter; the copied file must equal the source (content, mode,
//!   mtime), and leaving the browser must leave no mount behind;
//! - `root_get_and_ls`: `lifeboat ls` lists the partition and a folder, and `lifeboat get`
//!   copies a file and a folder (with a symlink) out; a second `get` of the same names is
//!   refused and changes nothing.
//!
//! Both need `lifeboat mount`'s machinery (`access::mount`), and the image is only a file: no
//! loop device of the test's own, no host disk.
#![allow(clippy::unwrap_used)]

mod common;

use common::{in_ci, require_root, require_tool, sh, sparse};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(60);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lifeboat(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The source files: `hello.txt` (mode 0640, a fixed mtime), `sub/` with a file of random
/// bytes and a symlink.
fn files(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from inside an image\n").unwrap();
    std::fs::write(dir.join("sub/data.bin"), common::noise(3 * MIB as usize, 5)).unwrap();
    std::os::unix::fs::symlink("data.bin", dir.join("sub/link")).unwrap();
    sh(&format!(
        "chmod 640 '{0}/hello.txt' && touch -h -d '2020-01-02 03:04:05' '{0}/hello.txt' '{0}/sub/data.bin'",
        dir.display()
    ));
}

/// A disk image file with a GPT and one ext4 partition holding `files`, and its image
/// `images/pc.lbi`. Returns (the folder of source files, the images folder).
fn make_image(d: &Path) -> (PathBuf, PathBuf) {
    for t in ["sgdisk", "mkfs.ext4"] {
        require_tool(t);
    }
    let src = d.join("src");
    files(&src);
    let fs_file = d.join("fs.img");
    sparse(&fs_file, 40 * MIB);
    sh(&format!(
        "mkfs.ext4 -q -L browse -d '{}' '{}'",
        src.display(),
        fs_file.display()
    ));
    let disk = d.join("disk.img");
    sparse(&disk, 64 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+40M -t1:8300 '{}' >/dev/null",
        disk.display()
    ));
    sh(&format!(
        "dd if='{}' of='{}' bs=1M seek=1 conv=notrunc,sparse status=none",
        fs_file.display(),
        disk.display()
    ));
    let images = d.join("images");
    std::fs::create_dir(&images).unwrap();
    let (ok, _, err) = lifeboat(&["image", s(&disk), "-o", s(&images.join("pc.lbi"))]);
    assert!(ok, "lifeboat image: {err}");
    (src, images)
}

/// Mounts in lifeboat's private folders tagged `tag` (`lifeboat-browse`, `lifeboat-get`)
/// that are still there.
fn our_mounts(tag: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("/{tag}-")))
        .map(str::to_string)
        .collect()
}

fn same_file(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{b:?}"
    );
    let (x, y) = (
        std::fs::symlink_metadata(a).unwrap(),
        std::fs::symlink_metadata(b).unwrap(),
    );
    assert_eq!(x.mode(), y.mode(), "mode of {b:?}");
    assert_eq!(x.mtime(), y.mtime(), "mtime of {b:?}");
}

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A detached tmux session running one command, killed on drop.
struct Session {
    name: String,
}

impl Session {
    fn start(cmd: &str) -> Session {
        let name = format!("lifeboat-root-browse-{}", std::process::id());
        let o = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "100",
                "-y",
                "30",
                cmd,
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Session { name }
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            tmux(&["send-keys", "-t", &self.name, k]);
        }
    }

    fn wait_for(&self, what: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if what.iter().all(|w| screen.contains(w)) {
                return screen;
            }
            assert!(
                !screen.contains("EXITED rc=") || what.iter().any(|w| w.contains("EXITED")),
                "lifeboat exited while waiting for {what:?}:\n{screen}"
            );
            assert!(
                !screen.contains(" Error ") || what.iter().any(|w| w.contains("Error")),
                "an error while waiting for {what:?}:\n{screen}"
            );
            assert!(
                start.elapsed() < WAIT,
                "{what:?} never appeared within {WAIT:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn highlighted(&self) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if let Some(l) = screen.lines().find(|l| l.contains("│>")) {
                return l.to_string();
            }
            assert!(start.elapsed() < WAIT, "no highlighted row:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the highlight down until its row contains `needle`.
    fn select_row(&self, needle: &str) {
        for _ in 0..40 {
            let line = self.highlighted();
            if line.contains(needle) {
                return;
            }
            self.keys(&["Down"]);
            let t = Instant::now();
            while self.highlighted() == line && t.elapsed() < Duration::from_millis(1500) {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_ne!(
                self.highlighted(),
                line,
                "no row contains {needle:?}:\n{}",
                self.screen()
            );
        }
        panic!("no row contains {needle:?}:\n{}", self.screen());
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}

#[test]
fn root_tui_browse() {
    if !require_root() {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(!in_ci(), "tmux is not installed (bash .ci/install-deps.sh)");
        eprintln!("SKIP: tmux not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, images) = make_image(dir.path());
    let image_sha = sh(&format!(
        "sha256sum < '{}'",
        images.join("pc.lbi").display()
    ));
    let tui = Session::start(&format!(
        "{} tui --images '{}'; echo EXITED rc=$?; sleep 60",
        env!("CARGO_BIN_EXE_lifeboat"),
        images.display()
    ));
    tui.wait_for(&["Disks"]);
    tui.keys(&["o"]);
    tui.wait_for(&["Which image do you want to browse?", "pc.lbi"]);
    tui.select_row("pc.lbi");
    tui.keys(&["Enter"]);
    tui.wait_for(&["Partitions of pc.lbi", "can be opened"]);
    tui.select_row("p1");
    tui.keys(&["Enter"]);
    tui.wait_for(&["p1:/", "hello.txt", "sub/"]);
    tui.select_row("hello.txt");
    tui.keys(&["Space"]);
    tui.wait_for(&["1 selected: 1 file"]);
    tui.keys(&["c"]);
    tui.wait_for(&["Where should the copies go?"]);
    tui.select_row(&images.display().to_string());
    tui.keys(&["Enter"]);
    tui.wait_for(&["Check, then copy", "1 file, 0 folders"]);
    tui.keys(&["Enter"]);
    tui.wait_for(&["Finished", "Copied 1 file"]);
    same_file(&src.join("hello.txt"), &images.join("hello.txt"));
    // back to the folder, then out: Esc to the partitions, Esc closes the image
    tui.keys(&["Enter"]);
    tui.wait_for(&["p1:/", "Nothing selected yet"]);
    tui.keys(&["Escape"]);
    tui.wait_for(&["Partitions of pc.lbi"]);
    tui.keys(&["Escape"]);
    tui.wait_for(&["Which image do you want to browse?"]);
    let t = Instant::now();
    while !our_mounts("lifeboat-browse").is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        our_mounts("lifeboat-browse"),
        Vec::<String>::new(),
        "the image is still mounted"
    );
    tui.keys(&["Escape"]);
    tui.wait_for(&["Disks"]);
    tui.keys(&["q"]);
    tui.wait_for(&["EXITED rc=0"]);
    drop(tui);
    assert_eq!(
        sh(&format!(
            "sha256sum < '{}'",
            images.join("pc.lbi").display()
        )),
        image_sha,
        "the image was written"
    );
}

#[test]
fn root_get_and_ls() {
    if !require_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (src, images) = make_image(dir.path());
    let img = images.join("pc.lbi");
    let (ok, out, err) = lifeboat(&["ls", s(&img)]);
    assert!(ok, "{err}");
    assert!(
        out.contains("p1") && out.contains("ext4") && out.contains("browse"),
        "{out}"
    );
    let (ok, out, err) = lifeboat(&["ls", s(&img), "p1:/sub"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("data.bin") && out.contains("link -> data.bin"),
        "{out}"
    );
    let (ok, out, err) = lifeboat(&["ls", "--json", s(&img), "p1:/"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "hello.txt"),
        "{out}"
    );

    let to = dir.path().join("out");
    std::fs::create_dir(&to).unwrap();
    let (ok, out, err) = lifeboat(&["get", s(&img), "p1:/hello.txt", "p1:/sub", "--to", s(&to)]);
    assert!(ok, "{err}");
    assert!(out.contains("Copied 2 files, 1 folder and 1 link"), "{out}");
    same_file(&src.join("hello.txt"), &to.join("hello.txt"));
    same_file(&src.join("sub/data.bin"), &to.join("sub/data.bin"));
    assert_eq!(
        std::fs::read_link(to.join("sub/link")).unwrap(),
        Path::new("data.bin")
    );
    // the same names again: refused, nothing changed, nothing left mounted
    std::fs::write(to.join("hello.txt"), "mine").unwrap();
    let (ok, _, err) = lifeboat(&["get", s(&img), "p1:/hello.txt", "--to", s(&to)]);
    assert!(!ok && err.contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read(to.join("hello.txt")).unwrap(), b"mine");
    // a whole partition goes into DIR/p1
    let all = dir.path().join("all");
    std::fs::create_dir(&all).unwrap();
    let (ok, _, err) = lifeboat(&["get", s(&img), "p1:/", "--to", s(&all)]);
    assert!(ok, "{err}");
    same_file(&src.join("hello.txt"), &all.join("p1/hello.txt"));
    // bad input: a partition that does not exist, a path that does not
    let (ok, _, err) = lifeboat(&["get", s(&img), "p7:/x", "--to", s(&all)]);
    assert!(!ok && err.contains("has no partition p7"), "{err}");
    let (ok, _, err) = lifeboat(&["get", s(&img), "p1:/nope", "--to", s(&all)]);
    assert!(!ok && err.contains("/nope"), "{err}");
    assert_eq!(
        our_mounts("lifeboat-get"),
        Vec::<String>::new(),
        "a mount was left behind"
    );
}
