//! Puts arrow keys back together when a serial line splits their bytes.
//!
//! An arrow key is three bytes (`Esc [ B`). On a serial console they can arrive in separate
//! reads, and crossterm then reports a lone Esc followed by the characters `[` and `B`. A
//! lone Esc means "back" in most screens, so a person pressing Down would leave the screen.
//! [`Joiner`] sits between crossterm and the menu: after an Esc it waits briefly for more,
//! and when what follows is a known escape sequence it sends the key that sequence stands
//! for. Anything else passes through unchanged, Esc included.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// How long after an Esc the rest of a sequence may take to arrive. A person cannot press
/// Esc and then `[` this fast; a 9600-baud line delivers three bytes in about 3 ms.
pub const WAIT: std::time::Duration = std::time::Duration::from_millis(60);

/// The longest sequence looked for after `Esc [`: digits, `;` and the final byte (`5~`,
/// `1;5A`).
const LONGEST: usize = 6;

/// Collects the keys after an Esc until they make a sequence, or cannot.
///
/// A complete sequence that stands for no key the menu knows (`Esc [ 2 9 ~`, `Esc O x`) is
/// dropped whole: delivered as Esc and characters, it would go back a screen and type into
/// a field.
#[derive(Debug, Default)]
pub struct Joiner {
    /// The characters after the Esc so far; `None` when no Esc is pending.
    pending: Option<Vec<KeyEvent>>,
}

impl Joiner {
    /// True while an Esc waits for the rest of its sequence: the caller waits at most
    /// [`WAIT`] for the next key, and calls [`Joiner::flush`] when none comes.
    pub fn waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes one key; returns the keys to deliver now, in order.
    pub fn push(&mut self, key: KeyEvent) -> Vec<KeyEvent> {
        let Some(mut after) = self.pending.take() else {
            if is_plain(&key, KeyCode::Esc) {
                self.pending = Some(Vec::new());
                return Vec::new();
            }
            return vec![key];
        };
        if !matches!(key.code, KeyCode::Char(_)) || !plain_mods(&key) {
            // not a character: the Esc was a real one
            let mut out = release(after);
            out.extend(self.push(key));
            return out;
        }
        after.push(key);
        let text: String = after
            .iter()
            .filter_map(|k| match k.code {
                KeyCode::Char(c) => Some(c),
                _ => None,
            })
            .collect();
        match decode(&text) {
            Decoded::Key(code) => vec![KeyEvent::new(code, KeyModifiers::NONE)],
            Decoded::Unknown => Vec::new(),
            Decoded::More if text.len() < LONGEST => {
                self.pending = Some(after);
                Vec::new()
            }
            // not a sequence: Esc, and the characters as they came
            _ => release(after),
        }
    }

    /// No more keys came in time: the pending Esc, and what followed it, as they were.
    pub fn flush(&mut self) -> Vec<KeyEvent> {
        match self.pending.take() {
            Some(after) => release(after),
            None => Vec::new(),
        }
    }
}

/// What a run of characters after Esc stands for.
#[derive(Debug, PartialEq)]
enum Decoded {
    Key(KeyCode),
    /// A sequence could still begin this way.
    More,
    /// A complete sequence, of no key the menu knows.
    Unknown,
    /// It is not one.
    Not,
}

/// Decodes the characters after an Esc: `[A`..`[D`, `[H`, `[F`, `OA`..`OD` (a terminal in
/// application mode), `[Z` (Shift-Tab), `OP`..`OS` (F1-F4), `[[A`..`[[E` (F1-F5 on the
/// Linux console), and `[n~` for Insert, Delete, Home, End, Page Up, Page Down and F1-F12.
fn decode(text: &str) -> Decoded {
    let mut chars = text.chars();
    let intro = chars.next();
    let rest: String = chars.collect();
    let letter = |c: char| match c {
        'A' => Some(KeyCode::Up),
        'B' => Some(KeyCode::Down),
        'C' => Some(KeyCode::Right),
        'D' => Some(KeyCode::Left),
        'H' => Some(KeyCode::Home),
        'F' => Some(KeyCode::End),
        _ => None,
    };
    match intro {
        None => Decoded::More,
        Some('O') => match rest.chars().next() {
            None => Decoded::More,
            Some(c) if rest.len() == 1 => match c {
                'P' => Decoded::Key(KeyCode::F(1)),
                'Q' => Decoded::Key(KeyCode::F(2)),
                'R' => Decoded::Key(KeyCode::F(3)),
                'S' => Decoded::Key(KeyCode::F(4)),
                c if c.is_ascii_alphabetic() => letter(c).map_or(Decoded::Unknown, Decoded::Key),
                _ => Decoded::Not,
            },
            Some(_) => Decoded::Not,
        },
        // the Linux console's F1-F5: `[[A`..`[[E`
        Some('[') if rest.starts_with('[') => match rest.chars().nth(1) {
            None => Decoded::More,
            Some(c @ 'A'..='E') if rest.len() == 2 => Decoded::Key(KeyCode::F(c as u8 - b'A' + 1)),
            Some(_) => Decoded::Unknown,
        },
        Some('[') => {
            let Some(last) = rest.chars().last() else {
                return Decoded::More;
            };
            let body = &rest[..rest.len() - last.len_utf8()];
            if !body.chars().all(|c| c.is_ascii_digit() || c == ';') {
                return Decoded::Not;
            }
            if last.is_ascii_digit() || last == ';' {
                return Decoded::More;
            }
            // a CSI sequence ends in a byte from `@` to `~`; anything else cannot end one
            if !('@'..='~').contains(&last) {
                return Decoded::Not;
            }
            // modifiers (`1;5A`) are dropped: the menu uses none with these keys
            let first = body.split(';').next().unwrap_or("");
            match last {
                '~' => match first {
                    "1" | "7" => Decoded::Key(KeyCode::Home),
                    "2" => Decoded::Key(KeyCode::Insert),
                    "3" => Decoded::Key(KeyCode::Delete),
                    "4" | "8" => Decoded::Key(KeyCode::End),
                    "5" => Decoded::Key(KeyCode::PageUp),
                    "6" => Decoded::Key(KeyCode::PageDown),
                    "11" => Decoded::Key(KeyCode::F(1)),
                    "12" => Decoded::Key(KeyCode::F(2)),
                    "13" => Decoded::Key(KeyCode::F(3)),
                    "14" => Decoded::Key(KeyCode::F(4)),
                    "15" => Decoded::Key(KeyCode::F(5)),
                    "17" => Decoded::Key(KeyCode::F(6)),
                    "18" => Decoded::Key(KeyCode::F(7)),
                    "19" => Decoded::Key(KeyCode::F(8)),
                    "20" => Decoded::Key(KeyCode::F(9)),
                    "21" => Decoded::Key(KeyCode::F(10)),
                    "23" => Decoded::Key(KeyCode::F(11)),
                    "24" => Decoded::Key(KeyCode::F(12)),
                    _ => Decoded::Unknown,
                },
                'Z' if body.is_empty() => Decoded::Key(KeyCode::BackTab),
                c if body.is_empty() || first == "1" => {
                    letter(c).map_or(Decoded::Unknown, Decoded::Key)
                }
                _ => Decoded::Unknown,
            }
        }
        Some(_) => Decoded::Not,
    }
}

fn esc() -> KeyEvent {
    KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)
}

/// Esc, then the keys that followed it.
fn release(after: Vec<KeyEvent>) -> Vec<KeyEvent> {
    std::iter::once(esc()).chain(after).collect()
}

/// Shift is allowed: crossterm reports `B` as Shift+B.
fn plain_mods(k: &KeyEvent) -> bool {
    k.kind != KeyEventKind::Release && (k.modifiers - KeyModifiers::SHIFT).is_empty()
}

fn is_plain(k: &KeyEvent, code: KeyCode) -> bool {
    k.code == code && plain_mods(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn chars(s: &str) -> Vec<KeyEvent> {
        s.chars().map(|c| key(KeyCode::Char(c))).collect()
    }

    /// Feeds the keys; a `None` is a pause longer than [`WAIT`].
    fn feed(keys: Vec<Option<KeyEvent>>) -> Vec<KeyCode> {
        let mut j = Joiner::default();
        let mut out = Vec::new();
        for k in keys {
            match k {
                Some(k) => out.extend(j.push(k)),
                None => out.extend(j.flush()),
            }
        }
        out.extend(j.flush());
        out.into_iter().map(|k| k.code).collect()
    }

    fn split(s: &str) -> Vec<Option<KeyEvent>> {
        std::iter::once(Some(key(KeyCode::Esc)))
            .chain(chars(s).into_iter().map(Some))
            .collect()
    }

    #[test]
    fn split_arrow_keys_are_joined() {
        for (seq, want) in [
            ("[A", KeyCode::Up),
            ("[B", KeyCode::Down),
            ("[C", KeyCode::Right),
            ("[D", KeyCode::Left),
            ("OB", KeyCode::Down),
            ("[H", KeyCode::Home),
            ("[4~", KeyCode::End),
            ("[5~", KeyCode::PageUp),
            ("[6~", KeyCode::PageDown),
            ("[3~", KeyCode::Delete),
            ("[1;5A", KeyCode::Up),
            ("[Z", KeyCode::BackTab),
            ("OP", KeyCode::F(1)),
            ("[11~", KeyCode::F(1)),
            ("[15~", KeyCode::F(5)),
            ("[24~", KeyCode::F(12)),
            ("[[A", KeyCode::F(1)),
            ("[[E", KeyCode::F(5)),
        ] {
            assert_eq!(feed(split(seq)), vec![want], "{seq}");
        }
    }

    #[test]
    fn a_lone_esc_is_still_esc() {
        assert_eq!(feed(vec![Some(key(KeyCode::Esc))]), vec![KeyCode::Esc]);
        // Esc, a pause, then the characters: two keys and two characters apart
        let mut keys = split("");
        keys.push(None);
        keys.extend(chars("[B").into_iter().map(Some));
        assert_eq!(
            feed(keys),
            vec![KeyCode::Esc, KeyCode::Char('['), KeyCode::Char('B')]
        );
    }

    #[test]
    fn what_is_not_a_sequence_passes_through_in_order() {
        assert_eq!(feed(split("x")), vec![KeyCode::Esc, KeyCode::Char('x')]);
        // complete sequences of keys the menu does not know are dropped whole
        assert_eq!(feed(split("[9~")), vec![]);
        assert_eq!(feed(split("[29~")), vec![]);
        assert_eq!(feed(split("Ox")), vec![]);
        assert_eq!(feed(split("[1;5P")), vec![]);
        // a character that cannot end a sequence: all of it, as it came
        assert_eq!(
            feed(split("[1 ")),
            vec![
                KeyCode::Esc,
                KeyCode::Char('['),
                KeyCode::Char('1'),
                KeyCode::Char(' ')
            ]
        );
        // Esc then Enter: both
        assert_eq!(
            feed(vec![Some(key(KeyCode::Esc)), Some(key(KeyCode::Enter))]),
            vec![KeyCode::Esc, KeyCode::Enter]
        );
        // two Escs: the first is a real one, and the second starts a sequence
        let mut keys = vec![Some(key(KeyCode::Esc))];
        keys.extend(split("[B"));
        assert_eq!(feed(keys), vec![KeyCode::Esc, KeyCode::Down]);
        // Esc, '[' and a second Esc whose arrow follows
        let mut keys = split("[");
        keys.extend(split("[A"));
        assert_eq!(
            feed(keys),
            vec![KeyCode::Esc, KeyCode::Char('['), KeyCode::Up]
        );
        // a run of digits that never ends stops at the longest sequence
        let out = feed(split("[1111111A"));
        assert_eq!(out[0], KeyCode::Esc);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn keys_without_an_esc_are_untouched() {
        assert_eq!(
            feed(chars("[B").into_iter().map(Some).collect()),
            vec![KeyCode::Char('['), KeyCode::Char('B')]
        );
    }
}
