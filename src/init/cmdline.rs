//! The kernel command-line contract of the rescue environment (also in `docs/BOOT.md`).
//!
//! PID 1 reads `/proc/cmdline` and acts on these words; every other word is ignored:
//!
//! | Word | Meaning |
//! |---|---|
//! | `lifeboat.store=SPEC` | mount an image store read-write at `/store` before anything runs. SPEC names a filesystem (ext2/3/4, vfat, exfat or ntfs) by `LABEL=name`, `UUID=uuid`, `PARTLABEL=name`, `PARTUUID=uuid` or a device path (`/dev/sdb1`); PID 1 waits up to `lifeboat.wait=` for it to appear (USB drives are slow). Or SPEC is a network store's URL: `smb://[USER@]HOST[:PORT]/SHARE[/FOLDER]`, `nfs://HOST[:PORT]/EXPORT[/FOLDER]` or `sftp://[USER@]HOST[:PORT]/PATH` (`sftp://` in the standard flavour only), mounted once the network is online, with the credentials of `lifeboat.credentials=` (`docs/NETWORK.md`). A URL never holds a password. When the store cannot be mounted, no command runs. |
//! | `lifeboat.run="CMD ; CMD"` | unattended mode: run these lifeboat commands in order (the words after `lifeboat`, e.g. `image /dev/sda -o /store/pc.lbi`; a leading `lifeboat` is allowed). Words may be grouped with `'…'` inside the value. A failing command stops the rest. Commands run without a terminal, so `restore` needs `--yes`. Image paths may be URLs, as in the CLI (`restore http://10.0.0.5/pc.lbi /dev/sda --yes`). |
//! | `lifeboat.then=poweroff\|reboot\|shell\|tui` | what follows the unattended commands (default `tui`: the menu on every console). `shell` starts a root shell on the first console, then the menu. |
//! | `lifeboat.credentials=PATH` | the credentials of a network store (`user=`, `password=`, `domain=`, `identity=`, `host_key=` lines): a file on the boot medium (PATH relative to its root, or absolute), or an absolute path in the initramfs. It is copied to `/run/lifeboat/credentials` (readable by root only) for the boot store and for the commands run by `lifeboat.run=` or at the console; the menu's network store form does not read it. Its content is never logged. |
//! | `lifeboat.wait=SECONDS` | how long to wait for the store's device to appear, or for the network before a store given as a URL (default 20). |
//! | `lifeboat.net=dhcp\|off\|IFACE:ADDR/PREFIX[,GATEWAY[,DNS…]]` | the network. `dhcp` (the default): DHCP in the background on every Ethernet interface that has a link or gets one within 30 s (or `lifeboat.wait=`, if longer). `off`: only `lo` comes up. Otherwise one static address, e.g. `eth0:10.0.2.20/24,10.0.2.2,10.0.2.3` (the gateway may be empty: `eth0:192.168.1.9/24,,1.1.1.1`; it must be inside the subnet). A value that does not parse is reported on the console and `dhcp` is used. |
//! | `lifeboat.debug` | log each module load on the console. |
//!
//! After the commands, one line is printed on every console:
//! `LIFEBOAT-RESULT {"ok":true,"jobs":[{"command":"…","exit_code":0,"seconds":1.2,"error":null,"summary":{"job":"image",…}}]}`.
//! Each command writes its typed result (the job runner's `Finished` event) to a file PID 1
//! names in `LIFEBOAT_RESULT_FILE`; `error` and `summary` come from there, not from stderr.
//! Before the UI or the first command, one line says the environment is up:
//! `LIFEBOAT-READY {"version":"…","boot_seconds":…,"secure_boot":…,"disks":[…],"net":{…}}`.
//! Both are single lines of JSON after a fixed prefix, for fleets and for our QEMU tests.

/// What to do after the unattended commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Then {
    /// Power the machine off.
    Poweroff,
    /// Reboot.
    Reboot,
    /// A root shell on the console.
    Shell,
    /// The interactive UI (the default).
    Tui,
}

/// Everything PID 1 takes from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOptions {
    /// `lifeboat.store=`: which filesystem to mount at `/store`.
    pub store: Option<String>,
    /// `lifeboat.run=`: commands (argument vectors without the leading `lifeboat`).
    pub run: Vec<Vec<String>>,
    /// `lifeboat.then=`.
    pub then: Then,
    /// `lifeboat.wait=`, in seconds.
    pub wait_secs: u64,
    /// `lifeboat.debug`.
    pub debug: bool,
    /// `lifeboat.credentials=`: the credentials file for a network store, a path on the boot
    /// medium (or in the initramfs).
    pub credentials: Option<String>,
    /// `lifeboat.net=`.
    pub net: crate::net::Mode,
    /// Problems with lifeboat.* words, shown on the console (never fatal).
    pub problems: Vec<String>,
}

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            store: None,
            run: Vec::new(),
            then: Then::Tui,
            wait_secs: 20,
            debug: false,
            credentials: None,
            net: crate::net::Mode::Dhcp,
            problems: Vec::new(),
        }
    }
}

// The word syntax of `lifeboat.run=` is the line console's too: it lives with what PID 1
// and the console share.
pub use crate::rescue::{split_words, QuoteError};

/// Splits the kernel command line the way the kernel does: blanks separate words and double
/// quotes group (and are removed). An unterminated quote runs to the end.
fn kernel_words(cmdline: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_quotes = false;
    for c in cmdline.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Parses `/proc/cmdline`. Never fails: problems are collected in `problems`.
pub fn parse(cmdline: &str) -> BootOptions {
    let mut o = BootOptions::default();
    for word in kernel_words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        match (key, value) {
            ("lifeboat.store", Some(v)) if !v.is_empty() => o.store = Some(v.to_string()),
            ("lifeboat.run", Some(v)) => match split_words(v) {
                Ok(words) => {
                    o.run = words
                        .split(|w| w == ";")
                        .filter(|c| !c.is_empty())
                        .map(|c| {
                            // "lifeboat image …" and "image …" mean the same
                            let skip = usize::from(c.first().is_some_and(|w| w == "lifeboat"));
                            c.iter().skip(skip).cloned().collect()
                        })
                        .collect();
                }
                Err(e) => o.problems.push(format!("lifeboat.run: {e}")),
            },
            ("lifeboat.then", Some(v)) => match v {
                "poweroff" => o.then = Then::Poweroff,
                "reboot" => o.then = Then::Reboot,
                "shell" => o.then = Then::Shell,
                "tui" => o.then = Then::Tui,
                other => o.problems.push(format!(
                    "lifeboat.then={other}: expected poweroff, reboot, shell or tui; using tui"
                )),
            },
            ("lifeboat.wait", Some(v)) => match v.parse::<u64>() {
                Ok(s) if s <= 3600 => o.wait_secs = s,
                _ => o
                    .problems
                    .push(format!("lifeboat.wait={v}: expected seconds (0-3600)")),
            },
            ("lifeboat.debug", _) => o.debug = true,
            ("lifeboat.credentials", Some(v)) if !v.is_empty() => {
                o.credentials = Some(v.to_string())
            }
            ("lifeboat.net", Some(v)) => match crate::net::Mode::parse(v) {
                Ok(mode) => o.net = mode,
                Err(e) => o
                    .problems
                    .push(format!("lifeboat.net={v}: {e}; using dhcp")),
            },
            (k, _) if k.starts_with("lifeboat.") => {
                o.problems.push(format!("unknown or empty option {word}"));
            }
            _ => {}
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn words_split_like_a_shell() {
        assert_eq!(split_words("  a  b\tc ").unwrap(), w(&["a", "b", "c"]));
        assert_eq!(
            split_words(r#"image '/store/my pc.lbi' "x y" a\ b"#).unwrap(),
            w(&["image", "/store/my pc.lbi", "x y", "a b"])
        );
        assert_eq!(split_words("''").unwrap(), w(&[""]));
        assert_eq!(split_words("a'b'c").unwrap(), w(&["abc"]));
        assert_eq!(split_words("'a").unwrap_err(), QuoteError('\''));
        assert!(split_words("").unwrap().is_empty());
    }

    #[test]
    fn the_documented_example_parses() {
        let o = parse(
            "BOOT_IMAGE=/boot/vmlinuz initrd=initrd quiet lifeboat.store=LABEL=BACKUPS \
             lifeboat.run=\"image /dev/sda -o '/store/my pc.lbi' ; lifeboat restore /store/pc.lbi /dev/nvme0n1 --yes\" \
             lifeboat.then=poweroff console=ttyS0",
        );
        assert_eq!(o.store.as_deref(), Some("LABEL=BACKUPS"));
        assert_eq!(
            o.run,
            vec![
                w(&["image", "/dev/sda", "-o", "/store/my pc.lbi"]),
                w(&["restore", "/store/pc.lbi", "/dev/nvme0n1", "--yes"]),
            ]
        );
        assert_eq!(o.then, Then::Poweroff);
        assert!(o.problems.is_empty(), "{:?}", o.problems);
    }

    #[test]
    fn defaults_and_problems_never_fail() {
        let o = parse("ro root=/dev/sda1");
        assert_eq!(o, BootOptions::default());
        let o = parse("lifeboat.then=dance lifeboat.wait=x lifeboat.bogus lifeboat.run=\"a 'b\"");
        assert_eq!(o.then, Then::Tui);
        assert_eq!(o.problems.len(), 4, "{:?}", o.problems);
        assert!(o.run.is_empty());
        assert_eq!(o.net, crate::net::Mode::Dhcp);
        // an unterminated kernel quote runs to the end, as in the kernel
        let o = parse("lifeboat.run=\"list --json");
        assert_eq!(o.run, vec![w(&["list", "--json"])]);
    }

    #[test]
    fn the_network_word() {
        use crate::net::Mode;
        assert_eq!(parse("lifeboat.net=off").net, Mode::Off);
        assert_eq!(parse("lifeboat.net=off lifeboat.net=dhcp").net, Mode::Dhcp);
        let o = parse("lifeboat.net=eth0:10.0.2.20/24,10.0.2.2,10.0.2.3");
        let spec = match &o.net {
            Mode::Static(s) => s.to_string(),
            other => format!("{other:?}"),
        };
        assert_eq!(spec, "eth0:10.0.2.20/24,10.0.2.2,10.0.2.3");
        assert!(o.problems.is_empty(), "{:?}", o.problems);
        // bad values are problems, never fatal, and leave DHCP on
        for bad in [
            "lifeboat.net=eth0:10.0.2.20",
            "lifeboat.net=wifi",
            "lifeboat.net=eth0:10.0.2.20/24,192.168.0.1",
            "lifeboat.net=",
        ] {
            let o = parse(bad);
            assert_eq!(o.net, Mode::Dhcp, "{bad}");
            assert_eq!(o.problems.len(), 1, "{bad}: {:?}", o.problems);
        }
        let o = parse("lifeboat.net=eth0:1.2.3.4/8,9.9.9.9");
        assert!(
            o.problems.iter().any(|p| p.contains("outside 1.0.0.0/8")),
            "{:?}",
            o.problems
        );
    }
}
