//! Tier 1: the generated documentation stays in step with the CLI. `docs/lifeboat.1` is
//! rendered here from the clap definition (with `clap_mangen`) and compared with the file in
//! the repository; `scripts/update-manpage.sh` regenerates it (by running this test with
//! `LIFEBOAT_UPDATE_MANPAGE=1`). Also checks `lifeboat completions`.
//!
//! The man page is one file: the top-level page (name, synopsis, description, options), then
//! a COMMANDS section with one subsection per visible subcommand holding its synopsis, its
//! long help and its arguments, then the exit status. One page is what `man lifeboat` finds
//! and what is easy to ship; `clap_mangen` alone renders one page per command.
#![allow(clippy::unwrap_used)]

use clap::CommandFactory;
use clap_mangen::Man;
use std::process::Command;

const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/lifeboat.1");

/// The roff one of `Man`'s section renderers writes, without the preamble that each of them
/// repeats (the page's own comes with the title) and, when `heading` is false, without the
/// `.SH` line that opens the section.
fn section(heading: bool, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut buf = Vec::new();
    render(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let mut lines = text.lines().skip_while(|l| !l.starts_with(".SH "));
    if !heading {
        lines.next();
    }
    lines.map(|l| format!("{l}\n")).collect()
}

/// Renders the whole page in memory.
fn render() -> String {
    let mut cmd = lifeboat::cli::Args::command().disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone());
    // the preamble, then our own .TH: clap_mangen writes an empty date as nothing, which
    // shifts its source and manual into the date's place
    let mut title = Vec::new();
    man.render_title(&mut title).unwrap();
    let mut page: String = String::from_utf8(title)
        .unwrap()
        .lines()
        .take_while(|l| !l.starts_with(".TH "))
        .map(|l| format!("{l}\n"))
        .collect();
    let version = cmd.get_version().unwrap_or_default();
    page.push_str(&format!(
        ".TH LIFEBOAT 1 \"\" \"lifeboat {version}\" \"User Commands\"\n"
    ));
    page.push_str(&section(true, |w| man.render_name_section(w)));
    page.push_str(&section(true, |w| man.render_synopsis_section(w)));
    page.push_str(&section(true, |w| man.render_description_section(w)));
    page.push_str(&section(true, |w| man.render_options_section(w)));
    page.push_str(".SH COMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub_man = Man::new(sub.clone());
        page.push_str(&format!(".SS \"lifeboat {}\"\n", sub.get_name()));
        page.push_str(&section(false, |w| sub_man.render_synopsis_section(w)));
        page.push_str(".PP\n");
        page.push_str(&section(false, |w| sub_man.render_description_section(w)));
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            page.push_str(".PP\n");
            page.push_str(&section(false, |w| sub_man.render_options_section(w)));
        }
    }
    // exit codes are mapped in main.rs, not in clap
    page.push_str(
        ".SH \"EXIT STATUS\"\n\
         .TP\n0\nSuccess.\n\
         .TP\n1\nThe command failed; the message on standard error names the cause.\n\
         .TP\n2\nUsage error: unknown command or option, or a bad value.\n\
         .TP\n130\nCancelled (Ctrl-C); no partial image file is left behind.\n",
    );
    page
}

#[test]
fn manpage_matches_cli() {
    let page = render();
    if std::env::var("LIFEBOAT_UPDATE_MANPAGE").is_ok_and(|v| v == "1") {
        std::fs::write(PAGE, &page).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(PAGE).unwrap_or_default();
    if on_disk != page {
        let first = on_disk
            .lines()
            .zip(page.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(page.lines().count()));
        panic!(
            "docs/lifeboat.1 is stale (first difference at line {}): run scripts/update-manpage.sh",
            first + 1
        );
    }
}

fn lifeboat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_for_every_shell() {
    let (code, bash, err) = lifeboat(&["completions", "bash"]);
    assert_eq!(code, 0, "{err}");
    assert!(bash.contains("complete -F _lifeboat"), "{bash}");
    for sub in ["image", "restore", "clone", "verify", "completions"] {
        assert!(
            bash.contains(&format!("lifeboat,{sub})")),
            "no {sub} in:\n{bash}"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, script, err) = lifeboat(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(script.contains("restore"), "{shell}:\n{script}");
    }
}

#[test]
fn completions_for_an_unknown_shell_is_a_usage_error() {
    let (code, out, err) = lifeboat(&["completions", "nosuchshell"]);
    assert_eq!(code, 2);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("invalid value 'nosuchshell'"), "{err}");
    let (code, _, _) = lifeboat(&["completions"]);
    assert_eq!(code, 2);
}
