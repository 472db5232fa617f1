//! What the job commands share: running a planned job with its progress shown
//! ([`with_progress`]), JSON output, the typed confirmation prompts, and the lines restore and
//! clone both print (the table edits, what `--grow-last` did).

use super::progress::{self, Mode};
use crate::jobs::run;
use crate::jobs::{CancelToken, Job, Summary};
use crate::units::human_bytes;
use anyhow::{bail, Context};
use serde::Serialize;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// Runs a planned job on the job runner's thread, rendering its events here (a progress line,
/// log lines, or NDJSON with `json`), with Ctrl-C turned into cancellation. Returns the typed
/// summary, or the job's error (shared with its `Finished` event).
pub(super) fn with_progress(json: bool, job: Job) -> anyhow::Result<Summary> {
    crate::init::sys::catch_interrupts();
    let cancel = CancelToken::new();
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let handle = run::spawn(job, tx, cancel.clone()).context("starting the job")?;
    std::thread::scope(|s| {
        let renderer = s.spawn(move || progress::render(rx, Mode::pick(json)));
        while !handle.is_finished() {
            if crate::init::sys::signalled() {
                cancel.cancel();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = renderer.join();
    });
    let r = match handle.join() {
        Ok(r) => r,
        Err(_) => anyhow::bail!("the job's thread panicked"),
    };
    // PID 1 reads the typed result of its unattended runs from here
    if let Err(e) = crate::rescue::write_result(&crate::jobs::Event::finished(&r), true) {
        eprintln!("lifeboat: warning: writing the job's result for the rescue system: {e}");
    }
    r.map_err(anyhow::Error::from)
}

/// Runs `f` with a cancel token that Ctrl-C, SIGTERM or a hangup cancels (the signal handler
/// only sets a flag; a watcher thread turns it into the cancellation while `f` runs), for the
/// long-lived commands that are not jobs (`serve`, `boot-test`).
pub(super) fn until_signalled<R>(f: impl FnOnce(&CancelToken) -> R) -> R {
    crate::init::sys::catch_interrupts();
    let cancel = CancelToken::new();
    let done = CancelToken::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.is_cancelled() {
                if crate::init::sys::signalled() {
                    cancel.cancel();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let r = f(&cancel);
        done.cancel();
        r
    })
}

/// The summary of the job that was run, or an error naming the mix-up (a job returns its own
/// kind of summary, so this is an invariant, reported rather than panicked on).
macro_rules! summary_of {
    ($s:expr, $variant:ident) => {
        match $s {
            Summary::$variant(s) => s,
            other => anyhow::bail!(
                "internal error: a {} job returned {other:?}",
                stringify!($variant)
            ),
        }
    };
}
pub(super) use summary_of;

pub(super) fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Asks for the target's path to be typed unless `yes`; refuses without a terminal.
pub(super) fn confirm_overwrite(target: &Path, yes: bool, json: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if json || !std::io::stdin().is_terminal() {
        bail!(
            "refusing to overwrite {} without confirmation: pass --yes (stdin is not a terminal)",
            target.display()
        );
    }
    let prompt = format!(
        "All data on {} will be destroyed. Type its path to continue: ",
        target.display()
    );
    if !typed(&prompt, &target.to_string_lossy())? {
        bail!("not confirmed; {} was not touched", target.display());
    }
    Ok(())
}

/// Shows `prompt` on stderr and reads a line from the terminal without echoing it (a
/// password). Ctrl-C or Esc cancels.
pub(super) fn read_secret(prompt: &str) -> anyhow::Result<String> {
    use crossterm::event::{read, Event, KeyCode, KeyEventKind, KeyModifiers};
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    crossterm::terminal::enable_raw_mode()?;
    let mut s = String::new();
    let r = loop {
        match read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Enter => break Ok(()),
                KeyCode::Esc => break Err(anyhow::anyhow!("cancelled")),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                    break Err(anyhow::anyhow!("cancelled"))
                }
                KeyCode::Backspace => {
                    s.pop();
                }
                KeyCode::Char(c) => s.push(c),
                _ => {}
            },
            Ok(_) => {}
            Err(e) => break Err(e.into()),
        }
    };
    let _ = crossterm::terminal::disable_raw_mode();
    writeln!(err)?;
    r.map(|()| s)
}

/// Shows `prompt` on stderr and reads one line: true when the user typed `expected`.
pub(super) fn typed(prompt: &str, expected: &str) -> anyhow::Result<bool> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    Ok(answer.trim() == expected)
}

/// One line on what `--grow-last` did.
pub(super) fn grown_line(g: &crate::resize::FsGrowReport) -> String {
    let size = |b: Option<u64>| b.map_or_else(|| "?".into(), human_bytes);
    let mut s = format!(
        "grew partition {} to {}; {} {} -> {} ({})",
        g.partition,
        human_bytes(g.partition_bytes),
        g.fs.as_deref().unwrap_or("no filesystem"),
        size(g.old_bytes),
        size(g.new_bytes),
        g.method
    );
    if let Some(n) = &g.note {
        s.push_str(&format!("; note: {n}"));
    }
    s
}

/// The table edits of a restore or clone plan.
/// The fitted layout of `--fit`: a table of every partition's old and new place, then what
/// the user should know.
pub(super) fn print_fit(
    out: &mut impl Write,
    f: &crate::jobs::fit::FitPlan,
) -> std::io::Result<()> {
    writeln!(
        out,
        "  --fit: the layout is fitted onto the smaller target:"
    )?;
    for l in f.lines() {
        writeln!(out, "    {l}")?;
    }
    for n in &f.notes {
        writeln!(out, "  note: {n}")?;
    }
    Ok(())
}

pub(super) fn print_layout(
    out: &mut impl Write,
    l: &crate::partition::edit::Layout,
    source_size: u64,
    target_size: u64,
) -> std::io::Result<()> {
    if let Some(m) = l.gpt_move.as_ref().filter(|_| l.rewrites_gpt()) {
        writeln!(
            out,
            "  backup GPT {} LBA {} (entries at {}), last usable LBA {}",
            if source_size == target_size {
                "rewritten at"
            } else {
                "moves to"
            },
            m.backup_header_lba,
            m.backup_entries_lba,
            m.last_usable_lba
        )?;
    }
    if let Some(g) = &l.grow {
        writeln!(
            out,
            "  --grow-last: partition {} grows from {} to {}{}, then its filesystem{}",
            g.number,
            human_bytes(g.old_size_bytes),
            human_bytes(g.new_size_bytes),
            g.extended
                .map(|x| format!(" (with extended partition {x})"))
                .unwrap_or_default(),
            g.limit
                .as_ref()
                .map(|w| format!(" (limit: {w})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(why) = &l.grow_skipped {
        writeln!(out, "  --grow-last: {why}")?;
    }
    if let Some(id) = &l.new_disk_id {
        writeln!(out, "  new disk ID {id} (--new-disk-id)")?;
    }
    Ok(())
}

/// The passphrase `--key-file` gave (read once by [`set_key_file`]).
static KEY_FILE: std::sync::OnceLock<crate::image::crypt::Secret> = std::sync::OnceLock::new();

/// Reads `--key-file FILE`, gives it to the keyring, and keeps it as the passphrase of a
/// new encrypted image.
pub(super) fn set_key_file(path: &std::path::Path) -> anyhow::Result<()> {
    let text = read_key_file(path)?;
    crate::image::crypt::keyring::add_secret(text.0.clone());
    let _ = KEY_FILE.set(text);
    Ok(())
}

/// A key file's passphrase: its whole content, one trailing newline dropped.
pub(super) fn read_key_file(path: &std::path::Path) -> anyhow::Result<crate::image::crypt::Secret> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("key file {}", path.display()))?,
    );
    let mut text = zeroize::Zeroizing::new(
        String::from_utf8(bytes.to_vec())
            .map_err(|_| anyhow::anyhow!("key file {}: not UTF-8 text", path.display()))?,
    );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    anyhow::ensure!(!text.is_empty(), "key file {}: it is empty", path.display());
    Ok(crate::image::crypt::Secret(text))
}

/// Asks for an encrypted image's passphrase on the terminal when nothing given opens it
/// (not in the menu, which asks in its own dialog).
pub(super) fn set_key_prompt() {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return;
    }
    crate::image::crypt::keyring::set_prompt(Box::new(|path, attempt| {
        let name = path
            .file_name()
            .unwrap_or(path.as_os_str())
            .to_string_lossy();
        let again = if attempt > 1 {
            "Wrong passphrase. "
        } else {
            ""
        };
        read_secret(&format!("{again}Passphrase (or recovery key) for {name}: "))
            .ok()
            .filter(|s| !s.is_empty())
            .map(zeroize::Zeroizing::new)
    }));
}

/// The passphrase `--key-file` gave, if any.
pub(super) fn given_passphrase() -> Option<crate::image::crypt::Secret> {
    KEY_FILE.get().cloned()
}

/// The passphrase of a new encrypted image: `--key-file`'s, or asked twice on the terminal.
pub(super) fn new_passphrase() -> anyhow::Result<crate::image::crypt::Secret> {
    if let Some(s) = KEY_FILE.get() {
        return Ok(s.clone());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        anyhow::bail!(
            "--encrypt needs a passphrase: give --key-file FILE, or run on a terminal to be asked"
        );
    }
    ask_new_passphrase("New passphrase for the image: ")
}

/// A new passphrase, asked twice on the terminal.
pub(super) fn ask_new_passphrase(prompt: &str) -> anyhow::Result<crate::image::crypt::Secret> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        anyhow::bail!("a new passphrase is needed: give it in a file (--new-key-file FILE), or run on a terminal to be asked");
    }
    let first = zeroize::Zeroizing::new(read_secret(prompt)?);
    anyhow::ensure!(!first.is_empty(), "an empty passphrase encrypts nothing");
    if first.chars().count() < 8 {
        eprintln!("warning: a passphrase of fewer than 8 characters is easy to guess");
    }
    let second = zeroize::Zeroizing::new(read_secret("The same passphrase again: ")?);
    anyhow::ensure!(
        *first == *second,
        "the two passphrases differ; nothing was written"
    );
    Ok(crate::image::crypt::Secret(first))
}
