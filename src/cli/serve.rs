//! `lifeboat serve`: an image as a disk over NBD until Ctrl-C or SIGTERM. The server is the
//! core's [`crate::access::nbd::Server`]; this face opens the image (and the overlay), says
//! where it listens, writes the server's log to stderr and turns the signals into its
//! cancellation. It is a long-lived command, not a job with progress, so it does not go
//! through the job runner.

use super::args::ServeArgs;
use crate::access::nbd::{LogSink, ServeOptions, Server};
use crate::access::{ImageSource, Overlay, OverlayStore};
use crate::blockdev::BlockDev;
use crate::units::human_bytes;
use anyhow::{bail, Context};
use std::io::Write;
use std::sync::Arc;

/// Deletes the overlay file when the server stops (its changes are thrown away).
struct OverlayFile(Option<std::path::PathBuf>);

impl Drop for OverlayFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `lifeboat serve`.
/// What `serve --json` prints once it listens: one line.
#[derive(serde::Serialize)]
struct Serving<'a> {
    /// The image served.
    image: &'a std::path::Path,
    /// Where it listens (`unix:PATH` or `tcp:ADDR:PORT`).
    listen: &'a str,
    /// The NBD URI for qemu.
    uri: &'a str,
    /// The export's name.
    export: &'a str,
    /// The disk's size.
    size_bytes: u64,
    /// Writes are taken (into the overlay).
    writable: bool,
    /// The overlay file, if any.
    overlay: Option<&'a std::path::Path>,
}

pub fn serve(a: &ServeArgs) -> anyhow::Result<()> {
    crate::init::sys::catch_interrupts();
    let src = ImageSource::open(&a.file, &a.search, a.cache_mib.max(1) << 20)
        .with_context(|| format!("opening {}", a.file.display()))?;
    // stderr may be a closed pipe: a failed log line must not stop a client's thread
    src.on_warning(|m| {
        let _ = writeln!(std::io::stderr(), "lifeboat serve: {m}");
    });
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if name.len() > 4096 {
        bail!("the export name is longer than NBD allows (4096 bytes)");
    }
    let size = src.len();
    let src: Arc<dyn BlockDev> = Arc::new(src);
    let mut overlay_file = OverlayFile(None);
    let dev: Arc<dyn BlockDev> = match &a.overlay {
        None => src,
        Some(p) => {
            if std::fs::symlink_metadata(p).is_ok() {
                bail!(
                    "refusing --overlay {}: it exists; the overlay must be a new file (it is deleted when the server stops)",
                    p.display()
                );
            }
            let ov = Overlay::new(src, OverlayStore::File(p.clone()))
                .with_context(|| format!("creating the overlay {}", p.display()))?;
            overlay_file.0 = Some(p.clone());
            Arc::new(ov)
        }
    };
    let writable = a.overlay.is_some();
    let server = Server::bind(&a.nbd).context("starting the NBD server")?;
    let uri = server.uri(&name);
    {
        let mut out = std::io::stdout().lock();
        if a.json {
            let v = Serving {
                image: &a.file,
                listen: server.address(),
                uri: &uri,
                export: &name,
                size_bytes: size,
                writable,
                overlay: a.overlay.as_deref(),
            };
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        } else {
            writeln!(
                out,
                "serving {} ({}, {}) as export \"{name}\" on {}",
                a.file.display(),
                human_bytes(size),
                if writable {
                    "writes go to the overlay"
                } else {
                    "read-only"
                },
                server.address()
            )?;
            writeln!(out, "  qemu-img info '{uri}'")?;
            writeln!(out, "stop with Ctrl-C or SIGTERM")?;
        }
        out.flush()?;
    }
    let log: LogSink = Arc::new(|m: &str| {
        let _ = writeln!(std::io::stderr(), "lifeboat serve: {m}");
    });
    let opts = ServeOptions {
        name,
        writable,
        log: Some(log),
    };
    let stats = super::common::until_signalled(|cancel| server.serve(dev.clone(), &opts, cancel));
    drop(server);
    drop(dev);
    drop(overlay_file);
    let stats = stats.context("serving")?;
    eprintln!(
        "lifeboat serve: stopped: {} client{}, {} read, {} written{}",
        stats.clients,
        if stats.clients == 1 { "" } else { "s" },
        human_bytes(stats.read_bytes),
        human_bytes(stats.written_bytes),
        if stats.failed_requests > 0 {
            format!(", {} failed requests", stats.failed_requests)
        } else {
            String::new()
        }
    );
    Ok(())
}
