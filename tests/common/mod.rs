//! Helpers shared by the integration tests: external tools, sparse disks, GPT surgery, loop
//! devices, network servers (servers.rs). Tests never name a host disk; every device is a temp
//! file or a `LoopDev`.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

pub mod disks;
pub mod lvm;
pub mod servers;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Deterministic pseudo-random bytes (xorshift32): incompressible, and the same every run.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

/// The size of a block device, from `blockdev --getsize64`.
pub fn dev_size(node: &Path) -> u64 {
    sh(&format!("blockdev --getsize64 {}", node.display()))
        .trim()
        .parse()
        .unwrap()
}

/// The line `key: value` of a tool's output, value parsed as the first number.
pub fn field(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no `{key}` in:\n{text}"));
    line[line.find(':').unwrap() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// True when running under CI, where missing prerequisites must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("LIFEBOAT_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

/// Panics with an install hint if `tool` is not on PATH.
pub fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed; run `bash .ci/install-deps.sh` (installs the test prerequisites)"
    );
}

/// True when /usr/bin/python3 has fusepy, which tests/helpers/faultfs.py needs; false (skip)
/// without it, unless CI demands it (then it panics).
pub fn have_fusepy() -> bool {
    require_tool("/usr/bin/python3");
    let ok = Command::new("/usr/bin/python3")
        .args(["-c", "import fusepy"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || !in_ci(),
        "python3-fusepy is missing (bash .ci/install-deps.sh)"
    );
    ok
}

/// The lines of /proc/self/mountinfo that hold `needle`.
pub fn mounts_holding(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// The backing files of the loop devices whose backing file's name holds `needle`.
pub fn loops_holding(needle: &str) -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("loop/backing_file")).ok())
        .filter(|b| b.contains(needle))
        .collect()
}

/// Builds boot-test's fixture disks (tests/helpers/boot-fixtures.sh) with `kernel` into `dir`.
#[allow(dead_code)]
pub fn boot_fixtures(kernel: &Path, dir: &Path) {
    let o = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/helpers/boot-fixtures.sh"
        ))
        .arg(kernel)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "boot-fixtures.sh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// True when the QEMU tests can run: `files` exist and `tools` are on PATH. Skips (false)
/// under `LIFEBOAT_SKIP_QEMU=1`, which test.sh sets for tier 1 (its tier 3 runs them);
/// panics instead of skipping under CI or `LIFEBOAT_REQUIRE_QEMU=1`.
#[allow(dead_code)]
pub fn qemu_prerequisites(files: &[&Path], tools: &[&str], hint: &str) -> bool {
    if std::env::var("LIFEBOAT_SKIP_QEMU").is_ok_and(|v| v == "1") {
        eprintln!("SKIP: LIFEBOAT_SKIP_QEMU=1 (test.sh runs the QEMU tests in tier 3)");
        return false;
    }
    let mut missing: Vec<String> = files
        .iter()
        .filter(|f| !f.exists())
        .map(|f| f.display().to_string())
        .collect();
    for tool in tools {
        if sh(&format!("command -v {tool} || true")).trim().is_empty() {
            missing.push(tool.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let required = in_ci() || std::env::var("LIFEBOAT_REQUIRE_QEMU").is_ok_and(|v| v == "1");
    assert!(!required, "QEMU tests need {missing:?}: {hint}");
    eprintln!("SKIP: QEMU tests need {missing:?} ({hint})");
    false
}

/// Runs a command line through `sh -c`, panicking with its output on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates a sparse file of `size` bytes.
pub fn sparse(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0; len];
    f.read_exact_at(&mut b, offset).unwrap();
    b
}

pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, offset).unwrap();
}

/// Edits one GPT copy (header at `header_lba`, 512-byte sectors) and recomputes its CRCs, so
/// the damage is "valid but wrong" rather than a CRC error. `edit` gets (header, entries).
pub fn edit_gpt_copy(path: &Path, header_lba: u64, edit: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>)) {
    let mut hdr = read_at(path, header_lba * 512, 512);
    let entries_lba = u64::from_le_bytes(hdr[72..80].try_into().unwrap());
    let count = u32::from_le_bytes(hdr[80..84].try_into().unwrap()) as usize;
    let size = u32::from_le_bytes(hdr[84..88].try_into().unwrap()) as usize;
    // a header already made hostile may claim a huge array: do not read it
    let mut entries = if count.saturating_mul(size) <= 4 << 20 {
        read_at(path, entries_lba * 512, count * size)
    } else {
        Vec::new()
    };
    edit(&mut hdr, &mut entries);
    let new_entries_lba = u64::from_le_bytes(hdr[72..80].try_into().unwrap());
    let new_count = u32::from_le_bytes(hdr[80..84].try_into().unwrap()) as usize;
    let new_size = u32::from_le_bytes(hdr[84..88].try_into().unwrap()) as usize;
    if new_count.saturating_mul(new_size) == entries.len() {
        write_at(path, new_entries_lba * 512, &entries);
        let crc = crc32fast::hash(&entries);
        hdr[88..92].copy_from_slice(&crc.to_le_bytes());
    }
    let hsize = u32::from_le_bytes(hdr[12..16].try_into().unwrap()) as usize;
    hdr[16..20].fill(0);
    let crc = crc32fast::hash(&hdr[..hsize.min(512)]);
    hdr[16..20].copy_from_slice(&crc.to_le_bytes());
    write_at(path, header_lba * 512, &hdr);
}

/// Skips (returns false) when not root, unless CI demands root, in which case it panics.
pub fn require_root() -> bool {
    // SAFETY-free check: `id -u` keeps tests free of unsafe code.
    let uid = sh("id -u");
    if uid.trim() == "0" {
        return true;
    }
    assert!(
        !in_ci(),
        "root tests need root (CI=true or LIFEBOAT_REQUIRE_ROOT=1 forbids skipping)"
    );
    eprintln!("SKIP: not root");
    false
}

/// A loop device over a file, detached on drop. Partition nodes are created with `partx -a`
/// because the host kernel has no partition parser (`losetup -P` creates nothing here).
pub struct LoopDev {
    pub path: PathBuf,
}

impl LoopDev {
    pub fn attach(file: &Path) -> Self {
        Self::attach_with(file, "")
    }

    /// `extra` is passed to losetup, e.g. `-b 4096`.
    pub fn attach_with(file: &Path, extra: &str) -> Self {
        let out = sh(&format!("losetup -f --show -P {extra} {}", file.display()));
        LoopDev {
            path: PathBuf::from(out.trim()),
        }
    }

    /// Adds partition nodes for the table on the device.
    pub fn add_partitions(&self) {
        sh(&format!("partx -a {}", self.path.display()));
        sh("udevadm settle 2>/dev/null || true");
        // devtmpfs creates nodes asynchronously; wait for the first one
        for _ in 0..50 {
            if self.part(1).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Path of partition node `n`, e.g. /dev/loop3p1.
    pub fn part(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}p{n}", self.path.display()))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("partx")
            .arg("-d")
            .arg(&self.path)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

/// Unmounts on drop.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    pub fn new(dev: &Path, opts: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        sh(&format!(
            "mount {opts} {} {}",
            dev.display(),
            dir.path().display()
        ));
        Mount { dir }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A FUSE-backed faulty file, `mnt/disk` (tests/helpers/faultfs.py), unmounted on drop.
/// Put a loop device over `disk()` to get read and write errors from the block layer.
pub struct FaultFs {
    mnt: PathBuf,
    control: PathBuf,
    child: std::process::Child,
}

impl FaultFs {
    pub fn start(backing: &Path, work: &Path, control_json: &str) -> FaultFs {
        // a fresh mount point each time: a previous one may still be going away
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mnt = work.join(if n == 0 {
            "mnt".to_string()
        } else {
            format!("mnt-{n}")
        });
        std::fs::create_dir_all(&mnt).unwrap();
        let control = work.join("control.json");
        std::fs::write(&control, control_json).unwrap();
        let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/faultfs.py");
        let child = std::process::Command::new("/usr/bin/python3")
            .arg(helper)
            .arg(backing)
            .arg(&mnt)
            .arg(&control)
            .spawn()
            .unwrap();
        let f = FaultFs {
            mnt,
            control,
            child,
        };
        for _ in 0..100 {
            if f.disk().exists() {
                return f;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("faultfs did not come up");
    }

    pub fn disk(&self) -> PathBuf {
        self.mnt.join("disk")
    }

    pub fn set(&self, json: &str) {
        let tmp = self.control.with_extension("tmp");
        std::fs::write(&tmp, json).unwrap();
        std::fs::rename(&tmp, &self.control).unwrap();
    }

    /// Faults injected so far (the helper's stats file).
    pub fn stats(&self) -> String {
        std::fs::read_to_string(format!("{}.stats", self.control.display())).unwrap_or_default()
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        // a loop device detached just before may hold the file for a moment: retry, and
        // never leave a dead FUSE mount behind (ENOTCONN for whoever comes next)
        let umount = |extra: &[&str]| {
            std::process::Command::new("umount")
                .args(extra)
                .arg(&self.mnt)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let mut gone = false;
        for _ in 0..50 {
            if umount(&[]) {
                gone = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !gone {
            umount(&["-l"]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs this crate's `lifeboat` binary with `args`, stdin from /dev/null (what
/// `Command::output` gives anyway, said here because tests of passphrases rely on it: with no
/// terminal, nothing is ever prompted for).
pub fn run_lifeboat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// `lifeboat args`, which must succeed; its stdout and then its stderr.
pub fn lifeboat_ok(args: &[&str]) -> String {
    let o = run_lifeboat(args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "lifeboat {args:?}: {out}{err}");
    format!("{out}{err}")
}

/// `lifeboat args`, which must succeed; its stdout alone (JSON).
pub fn lifeboat_stdout(args: &[&str]) -> String {
    let o = run_lifeboat(args);
    assert!(
        o.status.success(),
        "lifeboat {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The region of `image DISK --dry-run --json` (with `extra` arguments) that `pick` chooses.
pub fn plan_region(
    disk: &Path,
    extra: &[&str],
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let out = disk.with_extension("plan.lbi");
    let mut args = vec!["image", disk.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(&["--dry-run", "--json"]);
    args.extend_from_slice(extra);
    let plan: serde_json::Value = serde_json::from_str(&lifeboat_stdout(&args)).unwrap();
    plan["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| pick(r))
        .cloned()
        .unwrap_or_else(|| panic!("no such region in {plan}"))
}

/// Images `disk` (whose partition 1 holds a `fs` filesystem) into `img`, after checking that
/// the plan copies that partition by its used blocks and at most `1/fraction` of it; then
/// holds the image to at most 1.02x the size of `partclone.FS -c` of the partition through
/// `zstd -3` (issue 21's bar).
pub fn image_by_used_blocks(disk: &Path, img: &Path, fs: &str, fraction: u64) {
    let r = plan_region(disk, &[], |r| r["fs"] == fs);
    assert_eq!(r["method"], "used-blocks", "{r}");
    let (copy, size) = (
        r["copy_bytes"].as_u64().unwrap(),
        r["size_bytes"].as_u64().unwrap(),
    );
    assert!(
        copy < size / fraction,
        "{copy} of {size} bytes to copy: {r}"
    );
    lifeboat_stdout(&["image", disk.to_str().unwrap(), "-o", img.to_str().unwrap()]);
    let peer: u64 = {
        let lo = LoopDev::attach(disk);
        lo.add_partitions();
        sh(&format!(
            "partclone.{fs} -q -c -s {} -o - 2>/dev/null | zstd -3 -q -c | wc -c",
            lo.part(1).display()
        ))
        .trim()
        .parse()
        .unwrap()
    };
    let ours = std::fs::metadata(img).unwrap().len();
    eprintln!("image {ours} bytes, partclone.{fs} | zstd -3 {peer} bytes");
    assert!(
        ours as f64 <= peer as f64 * 1.02,
        "the image ({ours} bytes) is larger than 1.02x partclone.{fs} | zstd -3 ({peer} bytes)"
    );
}

/// `lifeboat args`, which must fail with exit 1; its stderr.
pub fn lifeboat_fails(args: &[&str]) -> String {
    let o = run_lifeboat(args);
    assert_eq!(o.status.code(), Some(1), "lifeboat {args:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `lifeboat args`, which must fail with exit 1 and `needle` in its stderr; the stderr.
pub fn lifeboat_fails_with(args: &[&str], needle: &str) -> String {
    let err = lifeboat_fails(args);
    assert!(
        err.contains(needle),
        "lifeboat {args:?}: no `{needle}` in:\n{err}"
    );
    err
}

/// Whether `needle` stands anywhere in `hay`.
pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// [`require_tool`] for each of `tools`.
pub fn require_tools(tools: &[&str]) {
    for t in tools {
        require_tool(t);
    }
}

/// `fusefat -o OPTS` on a device (the host kernel has no vfat), unmounted on drop.
pub struct FuseFat {
    pub dir: tempfile::TempDir,
}

impl FuseFat {
    pub fn new(dev: &Path, opts: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        sh(&format!(
            "fusefat -o {opts} {} {} >/dev/null",
            dev.display(),
            dir.path().display()
        ));
        FuseFat { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for FuseFat {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// `mount.exfat-fuse` on a device (the host kernel has no exfat driver), unmounted on drop.
pub struct FuseExfat {
    pub dir: tempfile::TempDir,
    mounted: bool,
}

impl FuseExfat {
    pub fn new(dev: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        sh(&format!(
            "mount.exfat-fuse {} {}",
            dev.display(),
            dir.path().display()
        ));
        FuseExfat { dir, mounted: true }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Unmounts now and fails the test when umount fails (the drop only tries).
    pub fn unmount(mut self) {
        sh(&format!("umount {}", self.dir.path().display()));
        self.mounted = false;
    }
}

impl Drop for FuseExfat {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(self.dir.path()).status();
        }
    }
}

/// Panics unless the files `a` and `b` hold the same bytes, naming the first that differs.
pub fn assert_same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(
        x.len(),
        y.len(),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    if let Some(i) = x.iter().zip(&y).position(|(p, q)| p != q) {
        panic!(
            "{} and {} differ from byte {i} (MiB {})",
            a.display(),
            b.display(),
            i >> 20
        );
    }
}
