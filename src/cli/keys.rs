//! `lifeboat key`: an encrypted image's key slots ([`crate::jobs::keys`]).

use super::args::KeyCommand;
use super::common::print_json;
use crate::image::crypt::{self, SlotKind};
use crate::jobs::keys::{self, KeysReport};

/// Whether `file` names a fleet store's folder (its slots are the store's): a directory, or
/// an S3 "folder" (a prefix not naming an `.lbi` object).
fn is_store(file: &std::path::Path) -> bool {
    let folder = if crate::store::s3::is_s3(file) {
        file.extension().is_none_or(|x| x != "lbi")
    } else {
        file.is_dir()
    };
    folder && crate::image::packs::is_store(file)
}

/// Runs one `key` subcommand.
pub fn key(k: &KeyCommand) -> anyhow::Result<()> {
    let (report, json, recovery) = match k {
        KeyCommand::List { file, json } if is_store(file) => (keys::store_list(file)?, *json, None),
        KeyCommand::List { file, json } => (keys::list(file)?, *json, None),
        KeyCommand::Add {
            file,
            new_key_file,
            recovery_key,
            json,
        } if is_store(file) => {
            keys::store_list(file)?;
            let (kind, secret, text) = if *recovery_key {
                let (bytes, text) = crypt::new_recovery_key()?;
                (
                    SlotKind::Recovery,
                    zeroize::Zeroizing::new(bytes.to_vec()),
                    Some(text),
                )
            } else {
                let pass = match new_key_file {
                    Some(f) => super::common::read_key_file(f)?,
                    None => super::common::ask_new_passphrase("New passphrase for the store: ")?,
                };
                (
                    SlotKind::Passphrase,
                    zeroize::Zeroizing::new(pass.0.as_bytes().to_vec()),
                    None,
                )
            };
            (keys::store_add(file, kind, &secret)?, *json, text)
        }
        KeyCommand::Remove { file, slot, json } if is_store(file) => {
            (keys::store_remove(file, *slot)?, *json, None)
        }
        KeyCommand::Add {
            file,
            new_key_file,
            recovery_key,
            json,
        } => {
            // the image's own passphrase first: asking for a new one is pointless if the
            // old one does not open it
            keys::list(file)?;
            crate::image::ImageReader::open(file)?;
            if *recovery_key {
                let (bytes, text) = crypt::new_recovery_key()?;
                let r = keys::add(file, SlotKind::Recovery, &bytes[..])?;
                (r, *json, Some(text))
            } else {
                let pass = match new_key_file {
                    Some(f) => super::common::read_key_file(f)?,
                    None => super::common::ask_new_passphrase("New passphrase for the image: ")?,
                };
                (
                    keys::add(file, SlotKind::Passphrase, pass.0.as_bytes())?,
                    *json,
                    None,
                )
            }
        }
        KeyCommand::Remove { file, slot, json } => (keys::remove(file, *slot)?, *json, None),
    };
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            report: &'a KeysReport,
            #[serde(skip_serializing_if = "Option::is_none")]
            recovery_key: Option<&'a str>,
        }
        return print_json(&Out {
            report: &report,
            recovery_key: recovery.as_ref().map(|s| s.as_str()),
        });
    }
    print(&report);
    if let Some(r) = recovery {
        println!("new recovery key (shown only now; write it down and keep it apart from the passphrase):");
        println!("  {}", r.as_str());
    }
    Ok(())
}

fn print(r: &KeysReport) {
    println!(
        "{}: encrypted ({}), key ID {}",
        r.path.display(),
        r.cipher,
        r.key_id
    );
    for s in &r.slots {
        match (&s.kind, &s.argon2id) {
            (SlotKind::Passphrase, Some(a)) => {
                println!("  slot {}  passphrase (Argon2id {a})", s.number)
            }
            _ => println!("  slot {}  recovery key", s.number),
        }
    }
}
