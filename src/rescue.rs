//! What the rescue system's PID 1 (`init/`) and the programs it starts (the line console
//! `lifeboat console`, the menu `lifeboat tui --rescue`) agree on: the exit codes that ask
//! PID 1 to power off, reboot or show the menu again, the boot log's path, how a command line
//! is split into words (the console's prompt and `lifeboat.run=` alike), and the firmware
//! facts both show. `init/` and `cli/` both import this; neither imports the other.
//!
//! Nothing here prints, and nothing here exits: `main.rs` turns a face's `cli::Exit` into
//! these codes.

/// The exit code that asks PID 1 to power off (the console's `poweroff`, the menu's power
/// off).
pub const EXIT_POWEROFF: i32 = 100;
/// The exit code that asks PID 1 to reboot.
pub const EXIT_REBOOT: i32 = 101;
/// The line console's exit code that asks PID 1 to start the menu (TUI) again.
pub const EXIT_MENU: i32 = 102;
/// The log of this boot, written by PID 1 and shown by the console's `log`.
pub const LOG_FILE: &str = "/run/lifeboat.log";

/// A quoting error in a command line: the quote character left open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unterminated {0} quote")]
pub struct QuoteError(pub char);

/// Splits a line into words like a shell does for simple words: blanks separate words,
/// `"…"` and `'…'` group (quotes are removed), and a backslash outside single quotes escapes
/// the next character. No variables, globs or operators.
pub fn split_words(line: &str) -> Result<Vec<String>, QuoteError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        return Err(QuoteError(q));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Whether UEFI Secure Boot is on: `None` under BIOS, or when the firmware's SecureBoot
/// variable cannot be read (efivarfs missing).
pub fn secure_boot() -> Option<bool> {
    const VAR: &str = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
    if !is_uefi() {
        return None;
    }
    // 4 bytes of attributes, then the value
    std::fs::read(VAR).ok().map(|b| b.get(4) == Some(&1))
}

/// True when the machine booted through UEFI.
pub fn is_uefi() -> bool {
    std::path::Path::new("/sys/firmware/efi").exists()
}

/// The environment variable PID 1 sets for each unattended command it starts: the file the
/// command writes its result to, as one JSON `Finished` event ([`crate::jobs::Event`]), so
/// PID 1 reads a typed result instead of the command's words on stderr.
pub const RESULT_FILE_ENV: &str = "LIFEBOAT_RESULT_FILE";

/// Writes `finished` to the file [`RESULT_FILE_ENV`] names, when it is set; `overwrite` false
/// keeps a result written earlier (a job's own, before a later step failed). Errors are
/// returned for the caller to show; the command's outcome does not depend on them.
pub fn write_result(finished: &crate::jobs::Event, overwrite: bool) -> std::io::Result<()> {
    let Some(path) = std::env::var_os(RESULT_FILE_ENV) else {
        return Ok(());
    };
    let path = std::path::PathBuf::from(path);
    if !overwrite && path.exists() {
        return Ok(());
    }
    let json = serde_json::to_vec(finished).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

/// Reads a result written by [`write_result`]: the `Finished` event, or `None` when there is
/// none or it does not parse as one.
pub fn read_result(path: &std::path::Path) -> Option<crate::jobs::Event> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        e @ crate::jobs::Event::Finished { .. } => Some(e),
        _ => None,
    }
}
