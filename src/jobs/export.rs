//! `export`: a chain member's disk state as a file another tool opens: raw, qcow2, VHDX or
//! VMDK. The image is only read.
//!
//! - **raw** is written here, sparse: the output is sized to the disk first, then only the
//!   ranges the image holds data for are written (every chunk checked against its hash as it
//!   is decoded, on every core); what the image proved unused, or stored as zeros, stays a
//!   hole. Then every record's range is read back from the output and its blake3 compared
//!   with the record's hash.
//! - **qcow2, vhdx, vmdk** go through `qemu-img convert`, reading the image from an NBD server
//!   started in this process on a private unix socket (a fresh directory under the temporary
//!   folder), then `qemu-img compare` checks the output against the same export.
//!
//! Either way the output is written as `FILE.partial` (removed on failure) and renamed to
//! `FILE` only once checked. An existing `FILE` is refused unless `force` is set.

use crate::access::nbd::{Listen, LogSink, ServeOptions, Server};
use crate::access::ImageSource;
use crate::blockdev::BlockDev;
use crate::error::{Error, Result};
use crate::event::{CancelToken, Phase, Reporter};
use crate::image::{Chain, FrameRead};
use crate::pipeline::{self, Shape};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A plain disk image, sparse.
    Raw,
    /// QEMU's copy-on-write format.
    Qcow2,
    /// Hyper-V's format.
    Vhdx,
    /// VMware's format (monolithic sparse).
    Vmdk,
}

impl ExportFormat {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [ExportFormat; 4] = [
        ExportFormat::Raw,
        ExportFormat::Qcow2,
        ExportFormat::Vhdx,
        ExportFormat::Vmdk,
    ];

    /// The name `--format` takes, which is also `qemu-img`'s.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Raw => "raw",
            ExportFormat::Qcow2 => "qcow2",
            ExportFormat::Vhdx => "vhdx",
            ExportFormat::Vmdk => "vmdk",
        }
    }
}

words!(ExportFormat);

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("{s} is not a format (raw, qcow2, vhdx or vmdk)"))
    }
}

/// A planned export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPlan {
    /// The image (any chain member).
    pub image: PathBuf,
    /// Folders to look for its ancestors in, after its own folder.
    pub search: Vec<PathBuf>,
    /// The file to write.
    pub output: PathBuf,
    /// Its format.
    pub format: ExportFormat,
    /// Replace an existing output file.
    pub force: bool,
    /// Decoding threads for raw (0: every core).
    pub threads: usize,
    /// Decoded frames the NBD export keeps (the other formats).
    pub cache_bytes: u64,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSummary {
    /// The image read.
    pub image: PathBuf,
    /// The file written.
    pub output: PathBuf,
    /// Its format.
    pub format: ExportFormat,
    /// The disk's size (the virtual size of the output).
    pub disk_bytes: u64,
    /// Disk bytes the image holds data for (what raw wrote).
    pub data_bytes: u64,
    /// Bytes the output occupies on its filesystem (allocated blocks).
    pub file_bytes: u64,
    /// How the output was checked.
    pub verified: String,
}

/// Removes a path when dropped unless disarmed: the partial output, the private socket
/// folder.
struct Cleanup {
    path: PathBuf,
    dir: bool,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let _ = if self.dir {
                std::fs::remove_dir_all(&self.path)
            } else {
                std::fs::remove_file(&self.path)
            };
        }
    }
}

/// Checks the output path before anything is read or written.
fn check_output(plan: &ExportPlan) -> Result<()> {
    let out = &plan.output;
    let refuse = |reason: &str| Error::Refused {
        path: out.clone(),
        reason: reason.into(),
    };
    if out.file_name().is_none() {
        return Err(refuse("it is not a file name"));
    }
    match std::fs::symlink_metadata(out) {
        Ok(md) if md.is_dir() => return Err(refuse("it is a folder")),
        Ok(md) if !md.is_file() => return Err(refuse("it is not a regular file")),
        Ok(_) if !plan.force => {
            return Err(refuse(
                "it exists; pass --force to replace it, or choose another name",
            ))
        }
        _ => {}
    }
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    if crate::image::image_files(&plan.image)
        .iter()
        .any(|f| same(out, f))
    {
        return Err(refuse("it is the image being exported"));
    }
    Ok(())
}

/// Runs an export; see the module doc.
pub fn run(plan: &ExportPlan, reporter: &Reporter, cancel: &CancelToken) -> Result<ExportSummary> {
    check_output(plan)?;
    let chain = Chain::open(&plan.image, &plan.search)?;
    for p in chain
        .paths()
        .iter()
        .flat_map(|p| crate::image::image_files(p))
    {
        if let (Ok(a), Ok(b)) = (std::fs::metadata(&p), std::fs::metadata(&plan.output)) {
            if a.dev() == b.dev() && a.ino() == b.ino() {
                return Err(Error::Refused {
                    path: plan.output.clone(),
                    reason: format!("it is {}, which the export reads", p.display()),
                });
            }
        }
    }
    let disk_bytes = chain.leaf().header().source_size;
    let mut data_bytes = 0u64;
    for i in 0..chain.leaf().records().len() {
        let l = chain.locate(i)?;
        if !l.record.codec.reads_as_zero() {
            data_bytes += u64::from(l.record.raw_len);
        }
    }
    let tmp = crate::image::partial_path(&plan.output);
    // another export's (or the user's) file: never truncated, never removed
    if std::fs::symlink_metadata(&tmp).is_ok() {
        return Err(Error::Refused {
            path: tmp,
            reason: "it exists: another export may be writing it; remove it if none is".into(),
        });
    }
    let mut cleanup = Cleanup {
        path: tmp.clone(),
        dir: false,
        armed: true,
    };
    let verified = match plan.format {
        ExportFormat::Raw => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io("creating", &tmp, e))?;
            file.set_len(disk_bytes)
                .map_err(|e| Error::io("sizing", &tmp, e))?;
            write_raw(&chain, &file, &tmp, plan.threads, reporter, cancel)?;
            file.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
            verify_raw(&chain, &file, &tmp, reporter, cancel)?;
            "every record's blake3 read back from the output".to_string()
        }
        other => {
            let src = ImageSource::from_chain(chain, plan.cache_bytes);
            convert(Arc::new(src), other, &tmp, disk_bytes, reporter, cancel)?;
            "qemu-img compare against the image".to_string()
        }
    };
    std::fs::rename(&tmp, &plan.output)
        .map_err(|e| Error::io("renaming the finished export to", &plan.output, e))?;
    cleanup.armed = false;
    if let Some(dir) = plan.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let file_bytes = std::fs::metadata(&plan.output)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0);
    Ok(ExportSummary {
        image: plan.image.clone(),
        output: plan.output.clone(),
        format: plan.format,
        disk_bytes,
        data_bytes,
        file_bytes,
        verified,
    })
}

/// Writes every non-zero record of the leaf at its disk offset, decoding on every core.
fn write_raw(
    chain: &Chain,
    file: &File,
    path: &Path,
    threads: usize,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<u64> {
    let records = chain.leaf().records();
    let mut items = Vec::new();
    for i in 0..records.len() {
        if !chain.locate(i)?.record.codec.reads_as_zero() {
            items.push(i);
        }
    }
    let reads = chain.frame_reads(items)?;
    let total: u64 = reads
        .iter()
        .flat_map(|f| f.parts.iter())
        .map(|(_, l)| u64::from(l.record.raw_len))
        .sum();
    reporter.phase(Phase::Write, Some(total));
    let mut next = 0usize;
    let mut done = 0u64;
    pipeline::run(
        Shape::for_threads(threads),
        cancel,
        |mut stored: Vec<u8>| {
            let Some(fr) = reads.get(next) else {
                return Ok(None);
            };
            next += 1;
            chain.read(fr, &mut stored)?;
            Ok(Some((fr, stored)))
        },
        |(fr, stored): (&FrameRead, Vec<u8>)| {
            let mut frame = pipeline::trade_spare(Vec::new());
            let r = chain.decode_checked(fr, &stored, &mut frame);
            // the stored bytes become this worker's spare; the frame travels on
            let _ = pipeline::trade_spare(stored);
            r.map(|_| (fr, frame))
        },
        |(fr, frame): (&FrameRead, Vec<u8>)| {
            for (i, l) in &fr.parts {
                let at = records.get(*i).map_or(0, |r| r.disk_offset);
                let start = l.record.frame_offset as usize;
                let bytes = frame
                    .get(start..start + l.record.raw_len as usize)
                    .ok_or_else(|| Error::Unsupported(format!("chunk {i} frame too short")))?;
                file.write_all_at(bytes, at)
                    .map_err(|source| Error::Write {
                        path: path.to_path_buf(),
                        offset: at,
                        len: bytes.len(),
                        source,
                    })?;
                done += bytes.len() as u64;
            }
            reporter.progress(Phase::Write, done);
            Ok(frame)
        },
    )?;
    reporter.progress_final(Phase::Write, done);
    Ok(done)
}

/// Reads every record's range back from the output and compares its blake3 with the
/// record's hash (zero records included: their holes must read as zeros).
fn verify_raw(
    chain: &Chain,
    file: &File,
    path: &Path,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<()> {
    let records = chain.leaf().records();
    let hasher = chain.hasher();
    let total: u64 = records.iter().map(|r| u64::from(r.raw_len)).sum();
    reporter.phase(Phase::Verify, Some(total));
    let mut buf = Vec::new();
    let mut done = 0u64;
    for r in records {
        cancel.check()?;
        buf.resize(r.raw_len as usize, 0);
        file.read_exact_at(&mut buf, r.disk_offset)
            .map_err(|source| Error::Read {
                path: path.to_path_buf(),
                offset: r.disk_offset,
                len: buf.len(),
                source,
            })?;
        if hasher.hash(&buf) != r.content_hash(hasher) {
            return Err(Error::VerifyMismatch {
                path: path.to_path_buf(),
                offset: r.disk_offset,
                end: r.disk_offset + u64::from(r.raw_len),
            });
        }
        done += u64::from(r.raw_len);
        reporter.progress(Phase::Verify, done);
    }
    reporter.progress_final(Phase::Verify, done);
    Ok(())
}

/// Runs `qemu-img ARGS`, turning its `-p` percentages into progress of `phase` (of
/// `total` bytes) and killing it when `cancel` is set.
fn qemu_img(
    args: &[&str],
    out: &Path,
    phase: Phase,
    total: u64,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<()> {
    let tool = format!("qemu-img {}", args.join(" "));
    let mut child = Command::new("qemu-img")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Tool {
            tool: "qemu-img".into(),
            path: out.to_path_buf(),
            detail: if e.kind() == std::io::ErrorKind::NotFound {
                "it is not installed; install qemu-utils (Debian, Ubuntu) or qemu-img \
                 (Fedora), or export --format raw, which needs no other tool"
                    .into()
            } else {
                format!("cannot run it: {e}")
            },
        })?;
    reporter.phase(phase, Some(total));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = Mutex::new(String::new());
    let status = std::thread::scope(|s| {
        if let Some(mut so) = stdout {
            let output = &output;
            s.spawn(move || {
                // "    (12.34/100%)\r" repeated; other lines kept for the error message
                let mut piece = Vec::new();
                let mut b = [0u8; 256];
                while let Ok(n) = so.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    for &c in &b[..n] {
                        if c != b'\r' && c != b'\n' {
                            piece.push(c);
                            continue;
                        }
                        let text = String::from_utf8_lossy(&piece).trim().to_string();
                        piece.clear();
                        let pct = text
                            .strip_prefix('(')
                            .and_then(|t| t.split('/').next())
                            .and_then(|p| p.parse::<f64>().ok());
                        match pct {
                            Some(p) => reporter.progress(phase, (total as f64 * p / 100.0) as u64),
                            None if !text.is_empty() => {
                                if let Ok(mut o) = output.lock() {
                                    o.push_str(&text);
                                    o.push('\n');
                                }
                            }
                            None => {}
                        }
                    }
                }
            });
        }
        if let Some(mut se) = stderr {
            let output = &output;
            s.spawn(move || {
                let mut text = String::new();
                let _ = se.read_to_string(&mut text);
                if let Ok(mut o) = output.lock() {
                    o.push_str(&text);
                }
            });
        }
        loop {
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) if cancel.is_cancelled() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(Error::Cancelled);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => break Err(Error::io("waiting for qemu-img on", out, e)),
            }
        }
    })?;
    if status.success() {
        reporter.progress_final(phase, total);
        return Ok(());
    }
    let text = output.into_inner().unwrap_or_default();
    let tail: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(6)
        .collect();
    Err(Error::Tool {
        tool,
        path: out.to_path_buf(),
        detail: format!(
            "exit code {}: {}",
            status
                .code()
                .map_or("none (killed)".to_string(), |c| c.to_string()),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ),
    })
}

/// Serves `src` on a private unix socket while qemu-img converts it into `tmp`, then compares.
fn convert(
    src: Arc<ImageSource>,
    format: ExportFormat,
    tmp: &Path,
    disk_bytes: u64,
    reporter: &Reporter,
    cancel: &CancelToken,
) -> Result<()> {
    let dir = crate::access::mount::private_dir("lifeboat-export")?;
    let _dir_cleanup = Cleanup {
        path: dir.clone(),
        dir: true,
        armed: true,
    };
    // a damaged chunk fails qemu-img's read; the warning names it
    let warn = reporter.clone();
    src.on_warning(move |m| warn.warn(m));
    let server = Server::bind(&Listen::Unix(dir.join("nbd.sock")))?;
    let uri = server.uri("");
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let f2 = failures.clone();
    let log: LogSink = Arc::new(move |m: &str| {
        if m.contains("failed") {
            if let Ok(mut f) = f2.lock() {
                f.push(m.to_string());
            }
        }
    });
    let opts = ServeOptions {
        name: String::new(),
        writable: false,
        log: Some(log),
    };
    let stop = CancelToken::new();
    let dev: Arc<dyn BlockDev> = src;
    let tmp_s = tmp.to_string_lossy().into_owned();
    let r = std::thread::scope(|s| {
        let serving = s.spawn(|| server.serve(dev, &opts, &stop));
        let r = qemu_img(
            &[
                "convert",
                "-p",
                "-f",
                "raw",
                "-O",
                format.as_str(),
                &uri,
                &tmp_s,
            ],
            tmp,
            Phase::Write,
            disk_bytes,
            reporter,
            cancel,
        )
        .and_then(|()| {
            qemu_img(
                &[
                    "compare",
                    "-p",
                    "-f",
                    "raw",
                    "-F",
                    format.as_str(),
                    &uri,
                    &tmp_s,
                ],
                tmp,
                Phase::Verify,
                disk_bytes,
                reporter,
                cancel,
            )
        });
        stop.cancel();
        let served = serving
            .join()
            .map_err(|_| Error::Unsupported("the NBD server's thread panicked".into()));
        r.and(served.and_then(|x| x).map(drop))
    });
    if r.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    // the server's own account of a failed read is better than qemu-img's "I/O error"
    if let (Err(Error::Tool { tool, path, detail }), Ok(f)) = (&r, failures.lock()) {
        if let Some(first) = f.first() {
            return Err(Error::Tool {
                tool: tool.clone(),
                path: path.clone(),
                detail: format!("{detail}; the export: {first}"),
            });
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::partial_path;

    #[test]
    fn formats_parse_and_print() {
        for f in ExportFormat::ALL {
            assert_eq!(f.as_str().parse::<ExportFormat>(), Ok(f));
            assert_eq!(f.to_string(), f.as_str());
        }
        assert!("vdi".parse::<ExportFormat>().is_err());
        assert_eq!(
            partial_path(Path::new("/a/b.qcow2")),
            PathBuf::from("/a/b.qcow2.partial")
        );
    }

    #[test]
    fn outputs_are_checked_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("out.raw");
        std::fs::write(&existing, b"keep").unwrap();
        let mut plan = ExportPlan {
            image: dir.path().join("missing.lbi"),
            search: vec![],
            output: existing.clone(),
            format: ExportFormat::Raw,
            force: false,
            threads: 1,
            cache_bytes: 1 << 20,
        };
        let e = run(&plan, &Reporter::silent(), &CancelToken::new()).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        plan.output = dir.path().to_path_buf();
        plan.force = true;
        let e = run(&plan, &Reporter::silent(), &CancelToken::new()).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        // with --force, the missing image is the next error, and nothing was touched
        plan.output = existing.clone();
        let e = run(&plan, &Reporter::silent(), &CancelToken::new()).unwrap_err();
        assert!(e.to_string().contains("missing.lbi"), "{e}");
        assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
        assert!(!partial_path(&existing).exists());
    }
}
