//! Tier 2 (root): the real binary's TUI does a full image and restore on loop devices. tmux
//! runs `lifeboat tui` at 100x30 and only keystrokes drive it: choose the storage (a
//! whole-disk ext4), image a GPT disk holding an ext4 full of files, then restore that image,
//! first onto a disk that is too small ("Does not fit", nothing written), then onto a larger
//! one with "grow last partition" on, after a mistyped confirmation (refused, nothing
//! written). The result is checked like the engine's round trips: e2fsck is clean, the last
//! partition and its filesystem reach the end of the disk, the files (names, types, sizes,
//! modes, mtimes, symlink targets, contents) match the source's, the source was not written,
//! and the storage holds one finished `.lbi` and no `.partial`.
//!
//! Rows are selected by our own loop devices' names only; the host's disks are never touched.
//! The host kernel has no partition-table parser: source nodes come from `partx -a`, target
//! nodes from lifeboat itself (or `partx -a` if it left none).
#![allow(clippy::unwrap_used)]

mod common;

use common::{
    dev_size, field, in_ci, noise, require_root, require_tool, sh, sparse, LoopDev, Mount,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const WAIT: Duration = Duration::from_secs(60);

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
        let name = format!("lifeboat-root-tui-{}", std::process::id());
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
        assert!(
            o.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Session { name }
    }

    fn screen(&self) -> String {
        tmux(&["capture-pane", "-p", "-t", &self.name])
    }

    /// Sends tmux key names (`Down`, `Enter`, `BSpace`) or single characters.
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            tmux(&["send-keys", "-t", &self.name, k]);
        }
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        tmux(&["send-keys", "-t", &self.name, "-l", text]);
    }

    /// Waits until the pane shows every one of `what`, returning the screen. Fails early if
    /// lifeboat exited while we were not waiting for that.
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
                start.elapsed() < WAIT,
                "{what:?} never appeared within {WAIT:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The highlighted table row (the line with the highlight symbol just inside the
    /// border) and the screen, once there is one.
    fn highlighted(&self) -> (String, String) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if let Some(l) = screen.lines().find(|l| l.contains("│>")) {
                return (l.to_string(), screen);
            }
            assert!(
                start.elapsed() < WAIT,
                "no highlighted row (│>) within {WAIT:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves the highlight with Down (then Up, if the list ended first) until the highlighted
    /// row contains `needle`.
    fn select_row(&self, needle: &str) {
        let (mut line, mut screen) = self.highlighted();
        for key in ["Down", "Up"] {
            for _ in 0..40 {
                if line.contains(needle) {
                    return;
                }
                let before = std::mem::take(&mut line);
                self.keys(&[key]);
                // the highlight moves on the next draw; at the list's end it does not move
                let pressed = Instant::now();
                loop {
                    (line, screen) = self.highlighted();
                    if line != before || pressed.elapsed() > Duration::from_millis(1500) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                if line == before {
                    break;
                }
            }
        }
        panic!("no row contains {needle:?}:\n{screen}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
    }
}

/// Unmounts `dir` on drop if something is mounted there (the TUI mounts the storage and may
/// still hold it when the test fails).
struct UnmountOnDrop(PathBuf);

fn mounted(dir: &Path) -> bool {
    Command::new("mountpoint")
        .arg("-q")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        for _ in 0..50 {
            if !mounted(&self.0) {
                return;
            }
            let _ = Command::new("umount").arg(&self.0).status();
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Files of different sizes, a subdirectory, a symlink, random data, an odd mode.
fn fill(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("empty"), "").unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from lifeboat\n").unwrap();
    for i in 0..25 {
        std::fs::write(
            dir.join(format!("sub/note{i}.txt")),
            format!("note {i} ").repeat(1 + i * 400),
        )
        .unwrap();
    }
    std::fs::write(dir.join("random.bin"), noise(5 * MIB as usize, 7)).unwrap();
    std::fs::write(dir.join("sub/deeper/odd.bin"), noise(123_457, 3)).unwrap();
    std::os::unix::fs::symlink("sub/deeper/odd.bin", dir.join("link")).unwrap();
    sh(&format!("chmod 640 '{}'", dir.join("hello.txt").display()));
    sh(&format!("chmod 700 '{}'", dir.join("sub/deeper").display()));
    sh("sync");
}

/// Path, type, size, mode, mtime and symlink target of everything under `dir`, and the
/// sha256 of every regular file.
fn snapshot(dir: &Path) -> String {
    let listing = sh(&format!(
        "cd '{}' && find . -printf '%p %y %s %m %T@ %l\\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum",
        dir.display()
    ));
    assert!(
        listing.lines().count() > 30
            && listing.contains("./link l")
            && listing.contains("random.bin"),
        "suspiciously few files in {}: {listing}",
        dir.display()
    );
    listing
}

fn sha(path: &Path) -> String {
    sh(&format!("sha256sum < '{}'", path.display()))
}

fn all_zero(path: &Path) -> bool {
    std::fs::read(path).unwrap().iter().all(|&b| b == 0)
}

fn name_of(lo: &LoopDev) -> String {
    lo.path.file_name().unwrap().to_str().unwrap().to_string()
}

/// The names in `dir` but mkfs's lost+found.
fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lost+found")
        .collect();
    v.sort();
    v
}

#[test]
fn tui_images_a_disk_and_restores_it_onto_a_larger_one_with_keystrokes() {
    if !require_root() {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(!in_ci(), "tmux is not installed (bash .ci/install-deps.sh)");
        eprintln!("SKIP: tmux not installed");
        return;
    }
    for t in [
        "sgdisk",
        "partx",
        "losetup",
        "blockdev",
        "mkfs.ext4",
        "e2fsck",
        "dumpe2fs",
        "mountpoint",
    ] {
        require_tool(t);
    }
    let began = Instant::now();
    // declared first, dropped last: the loop devices and mounts go before their files
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // the source: GPT, one ext4 partition of 40 MiB full of files
    let src_file = d.join("src.img");
    sparse(&src_file, 64 * MIB);
    sh(&format!(
        "sgdisk -n1:2048:+40M -t1:8300 '{}' >/dev/null",
        src_file.display()
    ));
    let src = LoopDev::attach(&src_file);
    src.add_partitions();
    assert!(src.part(1).exists(), "partx made no {:?}", src.part(1));
    sh(&format!("mkfs.ext4 -q -L lbtui {}", src.part(1).display()));
    let want = {
        let m = Mount::new(&src.part(1), "");
        fill(m.dir.path());
        snapshot(m.dir.path())
    };
    let src_sha = sha(&src.path);

    // the storage: a whole-disk ext4; the targets: blank, one too small and one larger
    let store_file = d.join("store.img");
    sparse(&store_file, 200 * MIB);
    sh(&format!(
        "mkfs.ext4 -q -L lbstore '{}'",
        store_file.display()
    ));
    let store = LoopDev::attach(&store_file);
    let small_file = d.join("small.img");
    sparse(&small_file, 24 * MIB);
    let small = LoopDev::attach(&small_file);
    let tgt_file = d.join("tgt.img");
    sparse(&tgt_file, 96 * MIB);
    let tgt = LoopDev::attach(&tgt_file);
    let (src_row, store_row, small_row, tgt_row) = (
        format!("{} ", src.path.display()),
        format!("{} ", store.path.display()),
        format!("{} ", small.path.display()),
        format!("{} ", tgt.path.display()),
    );

    let store_dir = d.join("store");
    let _unmount = UnmountOnDrop(store_dir.clone());
    let tui = Session::start(&format!(
        "{} tui --mount-at '{}'; echo EXITED rc=$?; sleep 60",
        env!("CARGO_BIN_EXE_lifeboat"),
        store_dir.display()
    ));

    // storage
    tui.wait_for(&["Disks"]);
    tui.keys(&["s"]);
    tui.wait_for(&["Choose where images are kept"]);
    tui.select_row(&store_row);
    tui.keys(&["Enter"]);
    tui.wait_for(&[&format!("images: {}", store_dir.display())]);
    assert!(mounted(&store_dir), "the storage is not mounted");

    // image the source
    tui.keys(&["i"]);
    tui.wait_for(&["Which disk do you want to image?"]);
    tui.select_row(&src_row);
    tui.keys(&["Enter"]);
    let s = tui.wait_for(&["Options", "kind", "file name", ".lbi"]);
    assert!(s.contains(&format!("{}-", name_of(&src))), "{s}");
    tui.keys(&["Enter"]);
    tui.wait_for(&["Check, then start", "Press Enter to start"]);
    let t = Instant::now();
    tui.keys(&["Enter"]);
    tui.wait_for(&["Finished", "was written and verified"]);
    eprintln!("image: {:.1?}", t.elapsed());
    let stored = files_in(&store_dir);
    let image = match &stored[..] {
        [f] if f.ends_with(".lbi") => f.clone(),
        _ => panic!("the storage should hold one .lbi and nothing else: {stored:?}"),
    };
    tui.keys(&["Enter"]);
    tui.wait_for(&["Disks"]);

    // restore: the image just made (listed once the rescan after the job is done), then the
    // too-small target
    tui.keys(&["r"]);
    tui.wait_for(&["Which image do you want to restore?"]);
    tui.select_row(&image);
    tui.keys(&["Enter"]);
    tui.wait_for(&["Which disk do you want to OVERWRITE?"]);
    tui.select_row(&small_row);
    tui.keys(&["Enter"]);
    tui.wait_for(&["Does not fit", "This disk is too small"]);
    assert!(all_zero(&small_file), "the too-small target was written");

    // the larger target, grown, after a wrong name
    tui.select_row(&tgt_row);
    tui.keys(&["g"]);
    tui.wait_for(&["grow the last partition to the end of a larger disk: on"]);
    tui.keys(&["Enter"]);
    let s = tui.wait_for(&["WILL BE ERASED"]);
    assert!(s.contains(&tgt.path.display().to_string()), "{s}");
    let name = name_of(&tgt);
    tui.type_text("sdz");
    tui.keys(&["Enter"]);
    tui.wait_for(&[&format!("That is not {name}")]);
    assert!(all_zero(&tgt_file), "a mistyped name wrote the target");
    tui.keys(&["BSpace", "BSpace", "BSpace"]);
    tui.type_text(&name);
    let t = Instant::now();
    tui.keys(&["Enter"]);
    // all three, so that a capture in the middle of a frame cannot miss the last line
    let s = tui.wait_for(&["Finished", "match the image", "Partition 1 grew to"]);
    eprintln!("restore: {:.1?}", t.elapsed());
    assert!(s.contains("Partition 1 grew to"), "{s}");
    tui.keys(&["Enter"]);
    tui.wait_for(&["Disks"]);
    tui.keys(&["q"]);
    tui.wait_for(&["EXITED rc=0"]);
    drop(tui);
    // on a host, quitting unmounts the storage the menu mounted
    assert!(!mounted(&store_dir), "the storage is still mounted after q");
    let stored = files_in(Mount::new(&store.path, "-o ro").dir.path());
    assert_eq!(
        stored,
        [image.as_str()],
        "the storage should hold the image and no .partial"
    );

    // the result, like the engine's round trips
    assert!(all_zero(&small_file), "the too-small target was written");
    assert_eq!(sha(&src.path), src_sha, "the source was written");
    if !tgt.part(1).exists() {
        tgt.add_partitions();
    }
    let node = tgt.part(1);
    assert!(node.exists(), "no {node:?} after the restore");
    let v = sh(&format!("sgdisk -v {} 2>&1", tgt.path.display()));
    assert!(v.contains("No problems found"), "{v}");
    // grown: from 1 MiB to before the backup GPT (its header and 16 KiB of entries)
    let want_part = 96 * MIB - 512 - 16384 - MIB;
    assert_eq!(dev_size(&node), want_part, "the grown partition's size");
    let e = Command::new("e2fsck")
        .arg("-fn")
        .arg(&node)
        .output()
        .unwrap();
    assert!(
        e.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&e.stdout),
        String::from_utf8_lossy(&e.stderr)
    );
    let dump = sh(&format!("dumpe2fs -h {} 2>/dev/null", node.display()));
    let bs = field(&dump, "Block size:");
    let unit = bs.max(4096); // resize2fs rounds to whole pages when blocks are smaller
    assert_eq!(
        field(&dump, "Block count:") * bs,
        want_part / unit * unit,
        "the ext4 did not fill the grown partition"
    );
    let got = snapshot(Mount::new(&node, "-o ro").dir.path());
    assert_eq!(got, want, "the restored files differ");
    eprintln!("total: {:.1?}", began.elapsed());
}
