//! The network store form, opened with `n` on Storage: type (SMB, NFS, SFTP, S3), host, port,
//! share or export or folder, user and password. Enter builds the store's URL
//! (`smb://user@host:port/share/folder`, `nfs://host:port/export/folder`,
//! `sftp://user@host:port/folder`) and checks it with [`NetStore::parse`], so the CLI's
//! rules decide what is valid; the problem shows in the form.
//!
//! SMB and NFS are then mounted at once ([`Cmd::MountNetStore`]); SFTP first asks the server
//! for its host keys ([`Cmd::HostKeys`]), shows their fingerprints and mounts only after `y`,
//! trusting exactly the keys shown. A failed mount (wrong password, unknown host, missing
//! share, unreachable server) is shown in the form, which stays open for another try.
//!
//! S3 (an S3-compatible object store: SeaweedFS, MinIO, Ceph, a cloud's) is not mounted: the
//! form takes the endpoint, bucket and folder, region, access key and secret key, and Enter
//! opens the folder `s3://bucket/folder` as the storage ([`Cmd::OpenS3`]), its images read
//! and written with S3 requests under those keys for the rest of the session
//! ([`crate::store::s3::set_session`]). A bucket that cannot be listed with them is an
//! error in the form.
//!
//! The password (or secret key) is drawn as `*`, is never part of the URL, and is hidden
//! from `Debug`: it reaches only the mount, inside [`Credentials`], or the S3 signer. The
//! state is [`Model::net_store`].

use crate::store::net::{Credentials, Kind, NetStore};
use crate::tui::app::{Cmd, Model, NetMount, S3Open};
use crate::tui::widgets::{bold, boxed, dim, form_field, red, Keys};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

/// The longest text a field takes.
const MAX_LEN: usize = 200;

/// What the form opens: a network share (mounted) or an S3 bucket's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// SMB/CIFS.
    Smb,
    /// NFS version 4.
    Nfs,
    /// SFTP over SSH.
    Sftp,
    /// An S3-compatible object store (not mounted).
    S3,
}

impl Proto {
    /// The network share kind, `None` for S3.
    pub fn net(self) -> Option<Kind> {
        match self {
            Proto::Smb => Some(Kind::Smb),
            Proto::Nfs => Some(Kind::Nfs),
            Proto::Sftp => Some(Kind::Sftp),
            Proto::S3 => None,
        }
    }
}

/// A field of the form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Field {
    /// SMB, NFS, SFTP or S3.
    #[default]
    Kind,
    /// Host name or address.
    Host,
    /// Port (empty: the protocol's own).
    Port,
    /// SMB: `share[/folder]`; NFS: the export path; SFTP: the folder on the server; S3:
    /// `bucket[/folder]`.
    Path,
    /// S3: the region (empty: us-east-1).
    Region,
    /// User (not NFS).
    User,
    /// Password (not NFS), shown as `*`.
    Password,
}

/// The form's state.
#[derive(Clone)]
pub struct NetForm {
    /// The protocol.
    pub kind: Proto,
    /// Host name or address.
    pub host: String,
    /// Port, as typed.
    pub port: String,
    /// Share and folder, export path, folder, or bucket and folder.
    pub path: String,
    /// S3: the region, as typed.
    pub region: String,
    /// User name, as typed.
    pub user: String,
    /// The password, as typed. Never drawn, logged or put in a URL.
    pub password: String,
    /// The field with the keyboard.
    pub field: Field,
    /// Why the last Enter did not mount: a bad field, or the mount's error on one line.
    pub error: Option<String>,
    /// SFTP: the store whose host keys are being confirmed, and the keys (known_hosts line,
    /// SHA256 fingerprint) the server presented.
    pub confirm: Option<(NetStore, Vec<(String, String)>)>,
}

impl Default for NetForm {
    /// An empty SMB form (most NAS boxes and Windows shares speak SMB).
    fn default() -> Self {
        NetForm {
            kind: Proto::Smb,
            host: String::new(),
            port: String::new(),
            path: String::new(),
            region: String::new(),
            user: String::new(),
            password: String::new(),
            field: Field::Kind,
            error: None,
            confirm: None,
        }
    }
}

impl std::fmt::Debug for NetForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetForm")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("path", &self.path)
            .field("region", &self.region)
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .field("field", &self.field)
            .field("error", &self.error)
            .field("confirm", &self.confirm)
            .finish()
    }
}

impl NetForm {
    /// The fields this protocol has, in order (NFS has no user or password; S3 has a region,
    /// and its endpoint holds the port).
    pub fn fields(&self) -> &'static [Field] {
        match self.kind {
            Proto::Nfs => &[Field::Kind, Field::Host, Field::Port, Field::Path],
            Proto::S3 => &[
                Field::Kind,
                Field::Host,
                Field::Path,
                Field::Region,
                Field::User,
                Field::Password,
            ],
            Proto::Smb | Proto::Sftp => &[
                Field::Kind,
                Field::Host,
                Field::Port,
                Field::Path,
                Field::User,
                Field::Password,
            ],
        }
    }

    fn text_mut(&mut self, f: Field) -> Option<&mut String> {
        match f {
            Field::Kind => None,
            Field::Host => Some(&mut self.host),
            Field::Port => Some(&mut self.port),
            Field::Path => Some(&mut self.path),
            Field::Region => Some(&mut self.region),
            Field::User => Some(&mut self.user),
            Field::Password => Some(&mut self.password),
        }
    }

    /// The store's URL from the fields, checked by [`NetStore::parse`]; the error says what
    /// to fix, in words, and never holds the password.
    pub fn store(&self) -> Result<NetStore, String> {
        let Some(kind) = self.kind.net() else {
            return Err("An S3 store is opened, not mounted.".into());
        };
        let host = self.host.trim();
        if host.is_empty() {
            return Err("Enter the server's name or address.".into());
        }
        if host.contains(|c: char| c.is_whitespace() || "/@?#".contains(c)) {
            return Err("The host is a name or an address only (no spaces, / or @).".into());
        }
        // an IPv6 address is written in brackets in a URL
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let port = self.port.trim();
        if !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "The port is a number ({:?} is not); leave it empty for the usual one.",
                port
            ));
        }
        let user = match kind {
            Kind::Nfs => "",
            _ => self.user.trim(),
        };
        if user.contains(|c: char| c.is_whitespace() || ":/".contains(c)) {
            return Err("The user name cannot have spaces, : or / in it.".into());
        }
        let path = self.path.trim().trim_start_matches('/');
        let scheme = match kind {
            Kind::Smb => "smb",
            Kind::Nfs => "nfs",
            Kind::Sftp => "sftp",
        };
        let spec = format!(
            "{scheme}://{}{host}{}/{path}",
            if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            },
            if port.is_empty() {
                String::new()
            } else {
                format!(":{port}")
            },
        );
        match NetStore::parse(&spec) {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(crate::error::with_causes(&e)),
            None => Err(format!("{spec} is not a network store")),
        }
    }

    /// What the mount gets: the password (the user is in the URL).
    pub fn credentials(&self) -> Credentials {
        Credentials {
            password: (self.kind != Proto::Nfs && !self.password.is_empty())
                .then(|| self.password.clone()),
            ..Credentials::default()
        }
    }

    /// The S3 store the fields name, checked as the S3 client will use it; the error says
    /// what to fix, in words, and never holds the secret key.
    pub fn s3(&self) -> Result<S3Open, String> {
        let host = self.host.trim();
        if host.is_empty() {
            return Err(
                "Enter the store's address: a URL (http://10.0.0.5:8333) or a name \
                        (s3.eu-west-1.amazonaws.com, reached by HTTPS)."
                    .into(),
            );
        }
        if host.contains(char::is_whitespace) {
            return Err("The address cannot have spaces in it.".into());
        }
        let endpoint = if host.contains("://") {
            host.to_string()
        } else {
            format!("https://{host}")
        };
        let path = self.path.trim().trim_matches('/');
        if path.is_empty() {
            return Err(
                "Enter the bucket, and the folder in it that holds the images \
                        (e.g. backups/pcs)."
                    .into(),
            );
        }
        let url = format!("s3://{path}");
        crate::store::s3::S3Path::parse(&url)?;
        let region = match self.region.trim() {
            "" => "us-east-1".to_string(),
            r => r.to_string(),
        };
        let access_key = self.user.trim().to_string();
        if access_key.is_empty() || self.password.is_empty() {
            return Err("Enter the access key and the secret key the store gave you.".into());
        }
        let open = S3Open {
            endpoint,
            region,
            url,
            access_key,
            secret_key: self.password.clone(),
        };
        open.config()
            .map_err(|e| format!("{}: {e}", open.endpoint))?;
        Ok(open)
    }
}

/// The footer while the form is open.
pub(crate) fn footer(form: &NetForm) -> Keys {
    if form.confirm.is_some() {
        return vec![("y", "trust and mount"), ("n", "do not trust")];
    }
    let mut k = vec![("Up/Down", "field")];
    if form.field == Field::Kind {
        k.push(("Left/Right", "type"));
    }
    let enter = if form.kind == Proto::S3 {
        "open"
    } else {
        "mount"
    };
    k.extend([("Enter", enter), ("Esc", "back"), ("F1", "help")]);
    k
}

/// The help while the form is open.
pub(crate) const HELP: [&str; 12] = [
    "A network store: a folder on an SMB share (Windows, Samba, a NAS),",
    "an NFS export, or an SSH server (SFTP). It is mounted at the storage",
    "folder, where images go, like a USB drive. Or a folder of an S3",
    "bucket (SeaweedFS, MinIO, Ceph, a cloud), used without a mount.",
    "",
    "SMB: share and folder, e.g. backups/pcs. NFS: the export path,",
    "e.g. /srv/images; no user or password. SFTP: the folder on the",
    "server, e.g. /home/ann/images; its host key is shown to confirm.",
    "S3: the endpoint (http://10.0.0.5:8333, or a name for HTTPS), the",
    "bucket/folder, the region, the access key and the secret key.",
    "The port may stay empty. The password is never shown or logged;",
    "Esc closes the form and forgets it.",
];

fn next_kind(k: Proto, forward: bool) -> Proto {
    let all = [Proto::Smb, Proto::Nfs, Proto::Sftp, Proto::S3];
    let at = all.iter().position(|x| *x == k).unwrap_or(0);
    let n = all.len();
    all[if forward {
        (at + 1) % n
    } else {
        (at + n - 1) % n
    }]
}

/// A key while the form is open (it is only open on Storage).
pub(crate) fn key(model: &mut Model, k: KeyEvent) -> Option<Cmd> {
    if k.code == KeyCode::F(1) {
        model.help = true;
        return None;
    }
    let form = model.net_store.as_mut()?;
    if let Some((store, keys)) = &form.confirm {
        return match k.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                let m = NetMount {
                    store: store.clone(),
                    creds: form.credentials(),
                    trust: keys.iter().map(|(line, _)| line.clone()).collect(),
                };
                form.confirm = None;
                model.busy = Some(format!("Mounting {}...", m.store));
                Some(Cmd::MountNetStore(m))
            }
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                form.confirm = None;
                form.error = Some("The host key was not trusted, so nothing was mounted.".into());
                None
            }
            _ => None,
        };
    }
    let fields = form.fields();
    let at = fields.iter().position(|f| *f == form.field).unwrap_or(0);
    match k.code {
        KeyCode::Esc => {
            model.net_store = None; // the password goes with it
            None
        }
        KeyCode::Up | KeyCode::BackTab => {
            form.field = fields[at.saturating_sub(1)];
            None
        }
        KeyCode::Down | KeyCode::Tab => {
            form.field = fields[(at + 1).min(fields.len() - 1)];
            None
        }
        KeyCode::Left | KeyCode::Right | KeyCode::Char(' ') if form.field == Field::Kind => {
            form.kind = next_kind(form.kind, k.code != KeyCode::Left);
            form.error = None;
            None
        }
        KeyCode::Backspace => {
            if let Some(t) = form.text_mut(form.field) {
                t.pop();
                form.error = None;
            }
            None
        }
        KeyCode::Char(c) if !c.is_control() && !k.modifiers.contains(KeyModifiers::CONTROL) => {
            if let Some(t) = form.text_mut(form.field) {
                if t.chars().count() < MAX_LEN {
                    t.push(c);
                }
                form.error = None;
            }
            None
        }
        KeyCode::Enter if form.kind == Proto::S3 => match form.s3() {
            Ok(o) => {
                form.error = None;
                model.busy = Some(format!("Opening {} at {}...", o.url, o.endpoint));
                Some(Cmd::OpenS3(o))
            }
            Err(e) => {
                form.error = Some(e);
                None
            }
        },
        KeyCode::Enter => {
            let store = match form.store() {
                Ok(s) => s,
                Err(e) => {
                    form.error = Some(e);
                    return None;
                }
            };
            form.error = None;
            if store.kind == Kind::Sftp {
                model.busy = Some(format!("Asking {} for its SSH host key...", store.host));
                Some(Cmd::HostKeys(store))
            } else {
                let m = NetMount {
                    store,
                    creds: form.credentials(),
                    trust: Vec::new(),
                };
                model.busy = Some(format!("Mounting {}...", m.store));
                Some(Cmd::MountNetStore(m))
            }
        }
        _ => None,
    }
}

/// The SFTP server's host keys came back (or asking failed): the form asks to trust them.
pub fn host_keys(model: &mut Model, r: Result<(NetStore, Vec<(String, String)>), String>) {
    let Some(form) = model.net_store.as_mut() else {
        return; // the form was closed meanwhile
    };
    match r {
        Ok(keys) => form.confirm = Some(keys),
        Err(e) => form.error = Some(e),
    }
}

/// The mount failed: its error, on one line, shows in the form, which stays open.
pub fn mount_failed(form: &mut NetForm, causes: &[String]) {
    form.confirm = None;
    form.error = Some(causes.join(": "));
}

fn field_line(form: &NetForm, f: Field, label: &str, value: String) -> Line<'static> {
    let focused = form.field == f && form.confirm.is_none();
    let value = if focused && f != Field::Kind {
        format!("{value}_")
    } else {
        value
    };
    form_field(label, 14, value, focused)
}

/// Draws the form over Storage's `area`.
pub(crate) fn draw(form: &NetForm, f: &mut Frame, area: Rect) {
    let kind = form.kind;
    let mut lines = vec![Line::raw("")];
    let kinds = [
        (Proto::Smb, "SMB"),
        (Proto::Nfs, "NFS"),
        (Proto::Sftp, "SFTP"),
        (Proto::S3, "S3"),
    ]
    .iter()
    .map(|(k, n)| {
        if *k == kind {
            format!("[{n}]")
        } else {
            format!(" {n} ")
        }
    })
    .collect::<Vec<_>>()
    .join(" ");
    lines.push(field_line(
        form,
        Field::Kind,
        "type",
        format!("< {kinds} >"),
    ));
    let s3 = kind == Proto::S3;
    let host_label = if s3 { "endpoint" } else { "host" };
    lines.push(field_line(form, Field::Host, host_label, form.host.clone()));
    if !s3 {
        lines.push(field_line(form, Field::Port, "port", form.port.clone()));
    }
    let (path_label, path_hint) = match kind {
        Proto::Smb => ("share/folder", "e.g. backups/pcs"),
        Proto::Nfs => ("export path", "e.g. /srv/images"),
        Proto::Sftp => ("folder", "e.g. /home/ann/images"),
        Proto::S3 => ("bucket/folder", "e.g. backups/pcs"),
    };
    lines.push(field_line(form, Field::Path, path_label, form.path.clone()));
    if s3 {
        lines.push(field_line(
            form,
            Field::Region,
            "region",
            form.region.clone(),
        ));
    }
    if kind != Proto::Nfs {
        let (user, password) = if s3 {
            ("access key", "secret key")
        } else {
            ("user", "password")
        };
        lines.push(field_line(form, Field::User, user, form.user.clone()));
        lines.push(field_line(
            form,
            Field::Password,
            password,
            "*".repeat(form.password.chars().count()),
        ));
    }
    lines.push(Line::raw(""));
    let hint = match form.field {
        Field::Kind => {
            "Left/Right: SMB (Windows, Samba, NAS), NFS, SFTP (SSH), S3 (object store)".to_string()
        }
        Field::Host if s3 => {
            "http://10.0.0.5:8333, or a name reached by HTTPS (s3.eu-west-1.amazonaws.com)"
                .to_string()
        }
        Field::Host => "a name (nas.local) or an address (192.168.1.20)".to_string(),
        Field::Port => "empty: the usual one (SMB 445, NFS 2049, SSH 22)".to_string(),
        Field::Path => path_hint.to_string(),
        Field::Region => "empty: us-east-1 (most self-hosted stores ignore it)".to_string(),
        Field::User => match kind {
            Proto::Smb => "empty: guest access".to_string(),
            Proto::S3 => "the store's access key ID".to_string(),
            _ => "empty: root".to_string(),
        },
        Field::Password => match kind {
            Proto::Sftp => "empty: SSH keys only".to_string(),
            _ => "shown as *".to_string(),
        },
    };
    lines.push(Line::styled(format!("   {hint}"), dim()));
    if s3 {
        match form.s3() {
            Ok(o) => lines.push(Line::raw(format!(
                "   will open {} at {}",
                o.url, o.endpoint
            ))),
            Err(_) => lines.push(Line::raw("")),
        }
    } else {
        match form.store() {
            Ok(s) => lines.push(Line::raw(format!("   will mount {s}"))),
            Err(_) => lines.push(Line::raw("")),
        }
    }
    let [top, bottom] = Layout::vertical([
        Constraint::Length(lines.len() as u16 + 2),
        Constraint::Min(3),
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(lines).block(boxed("Network store (SMB, NFS, SFTP, S3)")),
        top,
    );
    let mut note = Vec::new();
    if let Some((store, keys)) = &form.confirm {
        note.push(Line::styled(
            format!(
                "The SSH server {}{} presents these host keys:",
                store.host,
                store.port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            bold(),
        ));
        for (line, fp) in keys {
            let ty = line.split_whitespace().nth(1).unwrap_or("key");
            note.push(Line::raw(format!("  {ty:<20} {fp}")));
        }
        note.push(Line::raw(
            "Compare them with the server's own (ssh-keygen -lf on its host keys).",
        ));
        note.push(Line::styled(
            "Trust them for this session and mount? y: yes   n: no",
            bold(),
        ));
    } else if let Some(e) = &form.error {
        note.push(Line::styled(e.clone(), red()));
        note.push(Line::styled(
            "Correct the form and press Enter to try again, or Esc.",
            dim(),
        ));
    } else if kind == Proto::S3 {
        note.push(Line::styled(
            "Enter opens the bucket's folder as the storage: images are listed, written and \
             restored there with S3 requests.",
            dim(),
        ));
    } else {
        note.push(Line::styled(
            "Enter mounts it at the storage folder; the storage in use is released first.",
            dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(note)
            .wrap(Wrap { trim: false })
            .block(boxed(if form.confirm.is_some() {
                "Confirm the host key"
            } else {
                "Status"
            })),
        bottom,
    );
}

/// Forms filled in for the tests, reached by keys as a person would.
#[cfg(test)]
pub(crate) mod fixture {
    use crate::tui::app::{update, Model, Msg, Screen};
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    /// The password the fixtures type; no frame or message may ever show it.
    pub(crate) const SECRET: &str = "Tr0ub4dor&3";

    pub(crate) fn press(m: &mut Model, code: KeyCode) -> Option<crate::tui::app::Cmd> {
        update(m, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    pub(crate) fn type_str(m: &mut Model, s: &str) {
        for c in s.chars() {
            assert!(press(m, KeyCode::Char(c)).is_none(), "typing {c:?}");
        }
    }

    /// Storage (from the disk list, `then` a restore) with the form open.
    pub(crate) fn open(mut m: Model) -> Model {
        m.screen = Screen::Storage {
            cursor: 0,
            then: Some(crate::tui::app::Action::Restore),
        };
        assert!(press(&mut m, KeyCode::Char('n')).is_none());
        assert!(m.net_store.is_some());
        m
    }

    /// The form with `kind` chosen (Right presses from SMB) and `fields` typed in order
    /// (host, port, path, user, password; fewer for NFS).
    pub(crate) fn filled(m: Model, rights: usize, fields: &[&str]) -> Model {
        let mut m = open(m);
        for _ in 0..rights {
            press(&mut m, KeyCode::Right);
        }
        for f in fields {
            press(&mut m, KeyCode::Down);
            type_str(&mut m, f);
        }
        m
    }

    /// SMB to nas.local, share backups/pcs, user ann with [`SECRET`].
    pub(crate) fn smb(m: Model) -> Model {
        filled(m, 0, &["nas.local", "", "backups/pcs", "ann", SECRET])
    }

    /// S3 at http://10.0.0.5:8333, bucket backups and folder pcs, the default region, with
    /// access key AKIDEXAMPLE and [`SECRET`] as its secret key.
    pub(crate) fn s3(m: Model) -> Model {
        filled(
            m,
            3,
            &[
                "http://10.0.0.5:8333",
                "backups/pcs",
                "",
                "AKIDEXAMPLE",
                SECRET,
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{filled, open, press, smb, type_str, SECRET};
    use super::*;
    use crate::tui::app::{update, Failure, Msg, Screen};
    use crate::tui::testing::disks;

    fn home() -> Model {
        let mut m = Model::default();
        update(&mut m, Msg::Devices(Ok(disks())));
        m
    }

    fn form(m: &Model) -> &NetForm {
        m.net_store.as_ref().expect("the form is open")
    }

    fn mount_cmd(cmd: Option<Cmd>) -> NetMount {
        match cmd {
            Some(Cmd::MountNetStore(n)) => n,
            c => panic!("expected a network mount, got {c:?}"),
        }
    }

    #[test]
    fn smb_builds_its_url_and_mounts_with_the_password_kept_out_of_it() {
        let mut m = smb(home());
        assert!(crate::tui::app::typing(&m), "letters are typed, not keys");
        let n = mount_cmd(press(&mut m, KeyCode::Enter));
        assert_eq!(n.store.to_string(), "smb://ann@nas.local/backups/pcs");
        assert_eq!(n.store.share, "backups");
        assert_eq!(n.creds.password.as_deref(), Some(SECRET));
        assert!(n.trust.is_empty());
        let busy = m.busy.clone().unwrap_or_default();
        assert_eq!(busy, "Mounting smb://ann@nas.local/backups/pcs...");
        // the password is in no message, no Debug output, no URL
        for text in [busy, format!("{m:?}"), format!("{n:?}")] {
            assert!(!text.contains(SECRET), "the password leaked: {text}");
        }
    }

    #[test]
    fn nfs_has_no_user_or_password_and_takes_a_port() {
        let mut m = filled(home(), 1, &["10.0.0.5", "2050", "srv/images"]);
        assert_eq!(form(&m).kind, Proto::Nfs);
        assert_eq!(form(&m).field, Field::Path, "Down stops at the last field");
        press(&mut m, KeyCode::Down);
        assert_eq!(form(&m).field, Field::Path);
        let n = mount_cmd(press(&mut m, KeyCode::Enter));
        assert_eq!(n.store.to_string(), "nfs://10.0.0.5:2050/srv/images");
        assert_eq!(n.creds, Credentials::default());
    }

    #[test]
    fn bad_fields_are_explained_in_the_form_and_nothing_is_asked() {
        // (what is typed in host, port, path, user; the start of the error)
        let cases: [(&str, usize, [&str; 4], &str); 7] = [
            (
                "no host",
                0,
                ["", "", "share", ""],
                "Enter the server's name",
            ),
            (
                "a URL as host",
                0,
                ["nas/share", "", "x", ""],
                "The host is a name",
            ),
            (
                "letters as port",
                0,
                ["nas", "44x", "share", ""],
                "The port is a number",
            ),
            (
                "a huge port",
                0,
                ["nas", "70000", "share", ""],
                "store \"smb://nas:70000/share\": \"70000\" is not a port number",
            ),
            (
                "smb without a share",
                0,
                ["nas", "", "", ""],
                "store \"smb://nas/\": no share",
            ),
            (
                "nfs without an export",
                1,
                ["nas", "", "", ""],
                "store \"nfs://nas/\": no export path",
            ),
            (
                "a password in the user",
                2,
                ["nas", "", "/x", "ann:pw"],
                "The user name cannot",
            ),
        ];
        for (name, rights, fields, want) in cases {
            let fields: Vec<&str> = fields
                .iter()
                .copied()
                .take(if rights == 1 { 3 } else { 4 })
                .collect();
            let mut m = filled(home(), rights, &fields);
            assert!(press(&mut m, KeyCode::Enter).is_none(), "{name}");
            let e = form(&m).error.clone().unwrap_or_default();
            assert!(e.starts_with(want), "{name}: {e}");
            assert!(m.busy.is_none(), "{name}");
            // editing clears the message
            press(&mut m, KeyCode::Backspace);
            assert!(form(&m).error.is_none(), "{name}");
        }
    }

    #[test]
    fn ipv6_hosts_are_bracketed_and_a_leading_slash_is_optional() {
        let m = filled(home(), 2, &["fd00::5", "2222", "/srv/img", "ann"]);
        let s = form(&m).store().unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.path.as_str()),
            ("fd00::5", Some(2222), "/srv/img")
        );
        let m = filled(home(), 2, &["h", "", "srv/img", ""]);
        assert_eq!(form(&m).store().unwrap().to_string(), "sftp://h/srv/img");
    }

    fn sftp_keys() -> Vec<(String, String)> {
        vec![
            (
                "[h.example]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO".into(),
                "SHA256:2Qh0HyP0T6zYzP8cWk5eXyBk7Pq5kZ4p1yP9l3R6e2A".into(),
            ),
            (
                "[h.example]:2222 ecdsa-sha2-nistp256 AAAAE2VjZHNh".into(),
                "SHA256:Xb0t1m6sQy1F2m0k2hNn3kq7a4d4zqk2yqkz1Ue5oP8".into(),
            ),
        ]
    }

    /// An SFTP form submitted: the host keys are asked for first.
    fn sftp_asked() -> (Model, NetStore) {
        let mut m = filled(home(), 2, &["h.example", "2222", "/backups", "ann", SECRET]);
        let cmd = press(&mut m, KeyCode::Enter);
        let Some(Cmd::HostKeys(store)) = cmd else {
            panic!("expected the host keys to be asked for, got {cmd:?}");
        };
        assert_eq!(store.to_string(), "sftp://ann@h.example:2222/backups");
        assert!(m.busy.as_deref().unwrap_or("").contains("h.example"));
        (m, store)
    }

    #[test]
    fn sftp_mounts_only_after_the_host_keys_are_confirmed() {
        let (mut m, store) = sftp_asked();
        update(&mut m, Msg::HostKeys(Ok((store.clone(), sftp_keys()))));
        assert!(m.busy.is_none());
        assert!(form(&m).confirm.is_some());
        // other keys do nothing while the question is open
        assert!(press(&mut m, KeyCode::Enter).is_none());
        assert!(press(&mut m, KeyCode::Char('x')).is_none());
        assert_eq!(form(&m).password, SECRET, "typing went nowhere");
        let n = mount_cmd(press(&mut m, KeyCode::Char('y')));
        assert_eq!(n.store, store);
        assert_eq!(
            n.trust,
            sftp_keys().into_iter().map(|(l, _)| l).collect::<Vec<_>>()
        );
        assert_eq!(n.creds.password.as_deref(), Some(SECRET));
        assert!(form(&m).confirm.is_none());
    }

    #[test]
    fn refusing_the_host_key_mounts_nothing_and_keeps_the_form() {
        let (mut m, store) = sftp_asked();
        update(&mut m, Msg::HostKeys(Ok((store, sftp_keys()))));
        assert!(press(&mut m, KeyCode::Char('n')).is_none());
        let f = form(&m);
        assert!(f.confirm.is_none());
        assert!(f.error.as_deref().unwrap_or("").contains("not trusted"));
        assert_eq!(f.host, "h.example", "the form is kept for another try");
    }

    #[test]
    fn a_server_that_gives_no_key_is_an_error_in_the_form() {
        let (mut m, _) = sftp_asked();
        update(
            &mut m,
            Msg::HostKeys(Err(
                "sftp://ann@h.example:2222/backups: the server cannot be reached: no SSH server answered".into(),
            )),
        );
        assert!(m.busy.is_none() && form(&m).confirm.is_none());
        assert!(form(&m)
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no SSH server answered"));
        // a form closed while waiting ignores a late answer
        m.net_store = None;
        update(&mut m, Msg::HostKeys(Ok((form_store(), sftp_keys()))));
        assert!(m.net_store.is_none());
    }

    fn form_store() -> NetStore {
        NetStore::parse("sftp://h/x").unwrap().unwrap()
    }

    #[test]
    fn a_failed_mount_stays_in_the_form_and_a_good_one_closes_it() {
        let mut m = smb(home());
        mount_cmd(press(&mut m, KeyCode::Enter));
        update(
            &mut m,
            Msg::StorageReady(Err(Failure {
                what: "mounting the network store".into(),
                causes: vec![
                    "smb://ann@nas.local/backups/pcs: access denied: the server refused the user name or password".into(),
                ],
                ..Failure::default()
            })),
        );
        assert!(
            m.busy.is_none() && m.failure.is_none(),
            "no overlay: the form says it"
        );
        assert!(m.storage.is_none());
        let f = form(&m);
        assert!(f.error.as_deref().unwrap_or("").contains("access denied"));
        assert_eq!(f.password, SECRET, "kept for another try");
        // the retry: a corrected password, then the mount works
        for _ in 0..SECRET.len() {
            press(&mut m, KeyCode::Backspace);
        }
        type_str(&mut m, "right");
        let n = mount_cmd(press(&mut m, KeyCode::Enter));
        assert_eq!(n.creds.password.as_deref(), Some("right"));
        let st = crate::tui::app::Storage {
            dir: "/store".into(),
            device: None,
            disk: None,
            fs: Some("cifs".into()),
            label: Some(n.store.to_string()),
        };
        update(
            &mut m,
            Msg::StorageReady(Ok((st, crate::tui::app::Listing::of(vec![])))),
        );
        assert!(m.net_store.is_none(), "the form and its password are gone");
        assert!(
            matches!(m.screen, Screen::Restore(_)),
            "then the wizard it was opened for"
        );
    }

    #[test]
    fn s3_opens_the_bucket_folder_with_its_keys_and_never_shows_the_secret() {
        let mut m = super::fixture::s3(home());
        assert_eq!(form(&m).kind, Proto::S3);
        assert_eq!(
            form(&m).field,
            Field::Password,
            "Down stops at the last field"
        );
        let cmd = press(&mut m, KeyCode::Enter);
        let Some(Cmd::OpenS3(o)) = cmd else {
            panic!("expected the bucket to be opened, got {cmd:?}");
        };
        assert_eq!(o.url, "s3://backups/pcs");
        assert_eq!(o.endpoint, "http://10.0.0.5:8333");
        assert_eq!(o.region, "us-east-1");
        assert_eq!(o.access_key, "AKIDEXAMPLE");
        assert_eq!(o.secret_key, SECRET);
        let busy = m.busy.clone().unwrap_or_default();
        assert_eq!(busy, "Opening s3://backups/pcs at http://10.0.0.5:8333...");
        for text in [busy, format!("{m:?}"), format!("{o:?}")] {
            assert!(!text.contains(SECRET), "the secret key leaked: {text}");
        }
        // a name without a scheme is reached by HTTPS, and a region typed is kept
        let m = filled(
            home(),
            3,
            &["s3.example.com", "/bkt/", "eu-west-1", "k", "s"],
        );
        let o = form(&m).s3().unwrap();
        assert_eq!(
            (o.endpoint.as_str(), o.url.as_str(), o.region.as_str()),
            ("https://s3.example.com", "s3://bkt", "eu-west-1")
        );
    }

    #[test]
    fn s3_fields_that_cannot_work_are_explained_in_the_form() {
        // (endpoint, bucket/folder, access key, secret key; the start of the error)
        let cases = [
            (
                "no endpoint",
                ["", "bkt", "k", "s"],
                "Enter the store's address",
            ),
            (
                "no bucket",
                ["http://h:1", "", "k", "s"],
                "Enter the bucket",
            ),
            (
                "a bad bucket",
                ["http://h:1", "B!", "k", "s"],
                "\"s3://B!\": ",
            ),
            (
                "no keys",
                ["http://h:1", "bkt", "", ""],
                "Enter the access key",
            ),
            (
                "no secret",
                ["http://h:1", "bkt", "k", ""],
                "Enter the access key",
            ),
            ("a bad endpoint", ["ftp://h", "bkt", "k", "s"], "ftp://h: "),
        ];
        for (name, [host, path, user, secret], want) in cases {
            let mut m = filled(home(), 3, &[host, path, "", user, secret]);
            assert!(press(&mut m, KeyCode::Enter).is_none(), "{name}");
            let e = form(&m).error.clone().unwrap_or_default();
            assert!(e.starts_with(want), "{name}: {e}");
            assert!(m.busy.is_none(), "{name}");
        }
    }

    #[test]
    fn esc_closes_the_form_and_forgets_the_password() {
        let mut m = smb(home());
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert!(m.net_store.is_none());
        assert!(
            matches!(m.screen, Screen::Storage { .. }),
            "back to the list"
        );
        assert!(press(&mut m, KeyCode::Esc).is_none());
        assert!(matches!(m.screen, Screen::Home));
    }

    #[test]
    fn f1_opens_help_and_the_type_cycles_both_ways() {
        let mut m = open(home());
        press(&mut m, KeyCode::F(1));
        assert!(m.help);
        press(&mut m, KeyCode::Char('z'));
        assert!(
            !m.help && form(&m).host.is_empty(),
            "the key only closed help"
        );
        press(&mut m, KeyCode::Left);
        assert_eq!(form(&m).kind, Proto::S3);
        press(&mut m, KeyCode::Left);
        assert_eq!(form(&m).kind, Proto::Sftp);
        press(&mut m, KeyCode::Char(' '));
        assert_eq!(form(&m).kind, Proto::S3);
        press(&mut m, KeyCode::Char(' '));
        assert_eq!(form(&m).kind, Proto::Smb);
        // letters on the type field type nothing
        press(&mut m, KeyCode::Char('q'));
        assert!(m.net_store.is_some());
    }
}
