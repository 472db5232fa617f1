//! `lifeboat mount IMAGE DIR` and `lifeboat umount DIR`.
//!
//! `mount` returns once everything is mounted and leaves a server running in the background,
//! as sshfs does: it starts itself again (`/proc/self/exe mount --foreground --server …`) in a
//! new session, with stderr on the log (`/run/lifeboat/mounts/KEY.log`, see
//! [`crate::access::mount::log_path`]) and stdout on a pipe, on which the server sends
//! `ready` and the report as one JSON line, or `error: …`, then moves its stdout to the log.
//! The server serves until SIGTERM, SIGINT or SIGHUP (which `umount` sends), then removes
//! everything it made. `--foreground` serves in this process instead.

use crate::access::mount::{self, MountOptions, MountReport, MountSession};
use crate::units::human_bytes;
use anyhow::Context;
use nix::sys::signal::{SigSet, Signal};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The arguments of `lifeboat mount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The image file (any member of a chain).
    pub image: PathBuf,
    /// An empty directory to mount it on.
    pub dir: PathBuf,
    /// Mount read-write through an overlay in memory; changes are thrown away at umount.
    #[arg(long)]
    pub rw: bool,
    /// Memory the --rw overlay may hold, in MiB (writes beyond it fail with "no space").
    #[arg(long, value_name = "MIB", default_value_t = crate::access::DEFAULT_MEMORY_LIMIT >> 20)]
    pub overlay_limit_mib: u64,
    /// Decoded image data kept in memory, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = crate::access::DEFAULT_CACHE_BYTES >> 20)]
    pub cache_mib: u64,
    /// Also look for ancestors in DIR (repeatable; the image's folder comes first).
    #[arg(long, value_name = "DIR")]
    pub search: Vec<PathBuf>,
    /// Stay attached: serve in this process until Ctrl-C or `lifeboat umount`.
    #[arg(long)]
    pub foreground: bool,
    /// Print what was mounted where as JSON.
    #[arg(long)]
    pub json: bool,
    /// Internal: the background server, reporting readiness on stdout.
    #[arg(long, hide = true)]
    pub server: bool,
}

/// The arguments of `lifeboat umount`.
#[derive(Debug, clap::Args)]
pub struct UmountArgs {
    /// The directory given to `lifeboat mount`.
    pub dir: PathBuf,
}

impl From<&MountArgs> for MountOptions {
    fn from(a: &MountArgs) -> Self {
        MountOptions {
            read_write: a.rw,
            cache_bytes: a.cache_mib << 20,
            overlay_limit: a.overlay_limit_mib << 20,
            search: a.search.clone(),
        }
    }
}

/// `lifeboat mount`.
pub fn mount(a: &MountArgs) -> anyhow::Result<super::Exit> {
    if a.foreground || a.server {
        return serve(a);
    }
    // refuse a bad DIR here, before a server is started
    let dir = mount::check_dir(&a.dir)?;
    std::fs::create_dir_all(mount::RUN_DIR)
        .with_context(|| format!("creating {}", mount::RUN_DIR))?;
    let log_path = mount::log_path(&dir);
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    // the server runs in /: relative paths are made absolute first (a URL, http(s):// or
    // s3://, stays as it is)
    let abs = |p: &std::path::Path| {
        if crate::store::is_remote(p) {
            return p.to_path_buf();
        }
        std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
    };
    let mut cmd = Command::new("/proc/self/exe");
    // the server runs in / (as sshfs does), so it pins no filesystem the caller was in
    cmd.current_dir("/")
        .arg("mount")
        .arg(abs(&a.image))
        .arg(&dir)
        .arg("--foreground")
        .arg("--server")
        .arg("--cache-mib")
        .arg(a.cache_mib.to_string())
        .arg("--overlay-limit-mib")
        .arg(a.overlay_limit_mib.to_string());
    if a.rw {
        cmd.arg("--rw");
    }
    for s in &a.search {
        cmd.arg("--search").arg(abs(s));
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting the mount server")?;
    let out = child
        .stdout
        .take()
        .context("starting the mount server: no pipe")?;
    let mut lines = std::io::BufReader::new(out).lines();
    let first = lines.next().transpose().ok().flatten();
    match first.as_deref() {
        Some("ready") => {
            let json = lines
                .next()
                .transpose()
                .ok()
                .flatten()
                .context("the mount server sent no report")?;
            let report: MountReport =
                serde_json::from_str(&json).context("reading the mount server's report")?;
            print_report(&report, a.json, Some(&log_path))?;
            Ok(super::Exit::Ok)
        }
        Some(line) => {
            let _ = child.wait();
            anyhow::bail!("{}", line.strip_prefix("error: ").unwrap_or(line))
        }
        None => {
            let status = child.wait().ok();
            anyhow::bail!(
                "the mount server ended before mounting ({}); see {}",
                status.map(|s| s.to_string()).unwrap_or_default(),
                log_path.display()
            )
        }
    }
}

/// Mounts, serves until a stop signal, and unmounts.
fn serve(a: &MountArgs) -> anyhow::Result<super::Exit> {
    if a.server {
        // leave the caller's session and terminal: a Ctrl-C there must not reach us
        let _ = nix::unistd::setsid();
    }
    // block the stop signals in every thread (FUSE threads inherit the mask), to take them
    // one at a time below
    let mut stop = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        stop.add(s);
    }
    stop.thread_block().context("blocking the stop signals")?;
    let opts = MountOptions::from(a);
    let session = MountSession::open_logged(&a.image, &a.dir, &opts, |m| {
        // the log (stderr) may be full or gone: a failed line must not stop a FUSE thread
        let _ = writeln!(std::io::stderr(), "{} lifeboat mount: {m}", stamp());
    });
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let e = anyhow::Error::new(e).context(format!("mounting {}", a.image.display()));
            if a.server {
                println!("error: {e:#}");
            }
            return Err(e);
        }
    };
    let report = session.report().clone();
    if a.server {
        let json = serde_json::to_string(&report).context("writing the report")?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready\n{json}").context("reporting readiness")?;
        out.flush().context("reporting readiness")?;
        drop(out);
        // the pipe closes: the waiting `mount` prints the report and returns
        nix::unistd::dup2_stdout(std::io::stderr()).context("moving stdout to the log")?;
    } else {
        print_report(&report, a.json, None)?;
    }
    eprintln!(
        "{} lifeboat mount: serving {} on {} (pid {})",
        stamp(),
        report.image.display(),
        report.dir.display(),
        std::process::id()
    );
    let sig = stop.wait().context("waiting for a stop signal")?;
    eprintln!("{} lifeboat mount: {sig}: unmounting", stamp());
    session
        .close()
        .with_context(|| format!("unmounting {}", report.dir.display()))?;
    eprintln!(
        "{} lifeboat mount: unmounted {}",
        stamp(),
        report.dir.display()
    );
    Ok(super::Exit::Ok)
}

/// Seconds since the epoch, for log lines.
fn stamp() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("[{}.{:03}]", t.as_secs(), t.subsec_millis())
}

fn print_report(r: &MountReport, json: bool, log: Option<&std::path::Path>) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(r).context("writing the report")?
        );
        return Ok(());
    }
    println!(
        "{} mounted on {}{}",
        r.image.display(),
        r.dir.display(),
        if r.read_write {
            " (read-write; changes are thrown away at umount)"
        } else {
            " (read-only)"
        }
    );
    println!("  {:<28} the whole disk", r.disk.display());
    for p in &r.parts {
        let what = format!(
            "{}{}, {}",
            p.fs.as_deref().unwrap_or("unknown"),
            p.label
                .as_deref()
                .map(|l| format!(" \"{l}\""))
                .unwrap_or_default(),
            human_bytes(p.size_bytes)
        );
        match (&p.dir, &p.reason) {
            (Some(d), _) => println!(
                "  {:<28} {what} ({})",
                d.display(),
                p.driver.as_deref().unwrap_or("mounted")
            ),
            (None, r) => println!(
                "  {:<28} {what}: not mounted: {}",
                p.raw.display(),
                r.as_deref().unwrap_or("unknown reason")
            ),
        }
    }
    if let Some(l) = log {
        println!(
            "Log: {}. Unmount with: lifeboat umount {}",
            l.display(),
            r.dir.display()
        );
    }
    Ok(())
}

/// `lifeboat umount`.
pub fn umount(a: &UmountArgs) -> anyhow::Result<()> {
    mount::unmount(&a.dir).with_context(|| format!("unmounting {}", a.dir.display()))?;
    println!("unmounted {}", a.dir.display());
    Ok(())
}
