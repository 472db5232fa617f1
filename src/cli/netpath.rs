//! Network stores where the CLI takes a path: `lifeboat image /dev/sda -o
//! sftp://me@nas/backups/pc.lbi`, `lifeboat restore smb://nas/images/pc.lbi /dev/sda`,
//! `--incremental nfs://nas/export/pcs`. Each store is mounted ([`crate::store::net`]) in a
//! private folder for the length of the command and unmounted after it; the command then
//! works on files in that folder, as on any local store. `http(s)://` images are not
//! mounted: they are read with range requests ([`crate::store::http`]).

use super::args::Command;
use crate::store::net::{self, Credentials, NetStore, Trust};
use anyhow::Context;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The stores mounted for one command; dropping it unmounts them.
#[derive(Default)]
pub struct Mounts {
    creds: Credentials,
    trust: Option<Trust>,
    mounted: Vec<(String, PathBuf)>,
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for (_, dir) in self.mounted.drain(..).rev() {
            unmount(&dir);
        }
    }
}

/// Unmounts a store this command mounted (fusermount for an sshfs mount of a user who is
/// not root), then removes its folder.
fn unmount(dir: &Path) {
    if crate::store::unmount(dir).is_err() {
        for tool in ["fusermount3", "fusermount"] {
            let ok = std::process::Command::new(tool)
                .arg("-u")
                .arg(dir)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
    let _ = std::fs::remove_file(net::known_hosts_beside(dir));
}

impl Mounts {
    /// `e` with the network stores it may concern named: a write error on
    /// `/tmp/lifeboat-store-…/pc.lbi.partial` says which server that folder is.
    pub fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        let text = format!("{e:#}");
        match self
            .mounted
            .iter()
            .find(|(_, d)| text.contains(&*d.to_string_lossy()))
        {
            Some((spec, d)) => {
                // SFTP says "failure" (EIO here) for a full disk: ask the server what is free
                let free = nix::sys::statvfs::statvfs(d.as_path())
                    .ok()
                    .map(|v| v.blocks_available() * v.fragment_size());
                let why = match free {
                    Some(f) if f < 64 << 20 => {
                        format!("the store is full: {} free", crate::units::human_bytes(f))
                    }
                    Some(_) => "the connection to the server was probably lost".to_string(),
                    None => "the connection to the server was lost".to_string(),
                };
                e.context(format!(
                    "on the network store {spec} (mounted at {}): {why}",
                    d.display()
                ))
            }
            None => e,
        }
    }

    /// The mount of `store`'s folder, mounting it first if this command has not yet.
    fn folder(&mut self, store: &NetStore) -> anyhow::Result<PathBuf> {
        let key = store.to_string();
        if let Some((_, d)) = self.mounted.iter().find(|(k, _)| *k == key) {
            return Ok(d.clone());
        }
        let dir = std::env::temp_dir().join(format!(
            "lifeboat-store-{}-{}",
            std::process::id(),
            self.mounted.len()
        ));
        let mut creds = self.creds.clone();
        if store.wants_password(&creds) {
            if !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "{store} needs a password: give it in a credentials file (--credentials \
                     FILE, a line password=...), or run on a terminal to be asked"
                );
            }
            creds.password = Some(super::common::read_secret(&format!(
                "Password for {store}: "
            ))?);
        }
        let trust = self.trust.unwrap_or(Trust::Refuse);
        net::mount(store, &creds, trust, &dir)?;
        // a password typed once serves the command's other stores on the same server
        self.creds = creds;
        self.mounted.push((key, dir.clone()));
        Ok(dir)
    }

    /// `p` itself, or for a network store URL that names a file, the file in its mounted
    /// folder.
    fn file(&mut self, p: &mut PathBuf) -> anyhow::Result<()> {
        let Some(store) = NetStore::parse(&p.to_string_lossy()) else {
            return Ok(());
        };
        let store = store?;
        let (folder, name) = store
            .split_file()
            .with_context(|| format!("{store} names no file (expected .../NAME.lbi)"))?;
        *p = self.folder(&folder)?.join(name);
        Ok(())
    }

    /// An image (`file`) and its `--search` folders, with `trust` for SSH host keys.
    fn image_and_search(
        &mut self,
        trust: Trust,
        file: &mut PathBuf,
        search: &mut [PathBuf],
    ) -> anyhow::Result<()> {
        self.trust = Some(trust);
        self.file(file)?;
        for d in search {
            self.dir(d)?;
        }
        Ok(())
    }

    /// `p` itself, or for a network store URL, its mounted folder.
    fn dir(&mut self, p: &mut PathBuf) -> anyhow::Result<()> {
        let Some(store) = NetStore::parse(&p.to_string_lossy()) else {
            return Ok(());
        };
        *p = self.folder(&store?)?;
        Ok(())
    }
}

/// Mounts every network store that `command`'s paths name and points the paths into the
/// mounts. `credentials` is `--credentials FILE`; `interactive` says whether ssh may ask
/// about an unknown host key (a terminal, and no `--yes`).
pub fn resolve(command: &mut Command, credentials: Option<&Path>) -> anyhow::Result<Mounts> {
    let mut m = Mounts::default();
    m.creds = match credentials {
        Some(f) => Credentials::read(f)?,
        // in the rescue system, lifeboat.credentials= from the boot
        None => net::default_credentials()?,
    };
    let terminal = std::io::stdin().is_terminal();
    m.trust = Some(Trust::Refuse);
    let ask = |yes: bool| {
        if terminal && !yes {
            Trust::Ask
        } else {
            Trust::Refuse
        }
    };
    match command {
        Command::Image(a) => {
            m.trust = Some(ask(a.json));
            if let Some(o) = a.output.as_mut() {
                m.file(o)?;
            }
            if let Some(p) = a.parent.as_mut() {
                m.file(p)?;
            }
            for d in [a.incremental.as_mut(), a.differential.as_mut()]
                .into_iter()
                .flatten()
            {
                m.dir(d)?;
            }
            for d in &mut a.search {
                m.dir(d)?;
            }
        }
        Command::Restore(a) => {
            m.image_and_search(ask(a.yes || a.json), &mut a.file, &mut a.search)?
        }
        Command::Verify(a) => m.image_and_search(ask(a.json), &mut a.file, &mut a.search)?,
        Command::Info(a) => m.image_and_search(ask(a.json), &mut a.file, &mut a.search)?,
        Command::Get(a) => m.image_and_search(ask(a.json), &mut a.file, &mut a.search)?,
        Command::Ls(a) => m.image_and_search(ask(a.json), &mut a.file, &mut a.search)?,
        Command::Export(a) => m.image_and_search(ask(a.json), &mut a.file, &mut a.search)?,
        Command::Merge(a) => {
            m.image_and_search(ask(a.json), &mut a.file, &mut a.search)?;
            m.file(&mut a.output)?;
        }
        Command::Prune(a) => {
            m.trust = Some(ask(a.yes));
            m.dir(&mut a.dir)?;
            for d in &mut a.search {
                m.dir(d)?;
            }
        }
        _ => {}
    }
    Ok(m)
}
