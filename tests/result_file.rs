//! The typed result PID 1 reads from its unattended commands: every command started with
//! `LIFEBOAT_RESULT_FILE` writes one `Finished` event there, a job's with its typed summary.
#![allow(clippy::unwrap_used)]

use lifeboat::jobs::{Event, Summary};
use lifeboat::rescue::{read_result, RESULT_FILE_ENV};
use std::process::Command;

fn run(args: &[&str], result: &std::path::Path) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(args)
        .env(RESULT_FILE_ENV, result)
        .output()
        .unwrap()
        .status
        .code()
        .unwrap()
}

#[test]
fn jobs_and_failures_write_a_typed_result() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let disk = d.join("disk.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(8 << 20).unwrap();
    drop(f);
    std::fs::write(&disk, vec![0x5au8; 1 << 20]).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let out = d.join("disk.lbi");
    let result = d.join("result.json");

    // a job: its summary, typed
    let code = run(
        &["image", disk.to_str().unwrap(), "-o", out.to_str().unwrap()],
        &result,
    );
    assert_eq!(code, 0);
    let Some(Event::Finished {
        ok: true,
        summary: Some(Summary::Image(s)),
        error: None,
    }) = read_result(&result)
    else {
        panic!("{:?}", std::fs::read_to_string(&result))
    };
    assert_eq!(s.path, out);
    assert_eq!(s.read_bytes, 8 << 20);

    // a job that fails: its error chain
    std::fs::remove_file(&result).unwrap();
    let missing = d.join("missing.lbi");
    assert_eq!(run(&["verify", missing.to_str().unwrap()], &result), 1);
    let Some(Event::Finished {
        ok: false,
        error: Some(e),
        ..
    }) = read_result(&result)
    else {
        panic!("{:?}", std::fs::read_to_string(&result))
    };
    assert!(e.message().contains("missing.lbi"), "{}", e.message());

    // a refusal before any job starts
    std::fs::remove_file(&result).unwrap();
    assert_eq!(
        run(
            &["image", disk.to_str().unwrap(), "-o", out.to_str().unwrap()],
            &result
        ),
        1
    );
    let Some(Event::Finished {
        ok: false,
        error: Some(e),
        ..
    }) = read_result(&result)
    else {
        panic!("{:?}", std::fs::read_to_string(&result))
    };
    assert!(e.message().contains("disk.lbi"), "{}", e.message());
}
