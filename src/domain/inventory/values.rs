//! A version report as a client sends it (over UDP or `POST update/`), parsed into a type that
//! cannot exist unvalidated. It owns the rules of the Partisci version JSON; it knows nothing
//! of transports, entities or storage.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The longest `app`, `ver` or `host`, in Unicode characters.
pub const MAX_FIELD_CHARS: usize = 50;

/// A valid version report. Only the client's fields: `app_id`, `host_ip` and `last_update` are
/// the server's to assign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionReport {
    app: String,
    ver: String,
    host: String,
    instance: u16,
}

/// Why a report was refused; the message is meant for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReport {
    #[error("the update is empty")]
    Empty,
    #[error("the update is not valid JSON: {0}")]
    NotJson(String),
    #[error("the update must be a JSON object")]
    NotAnObject,
    #[error("`{0}` is required and must not be empty")]
    Missing(&'static str),
    #[error("`{0}` must be a string")]
    NotAString(&'static str),
    #[error("`{0}` is longer than {MAX_FIELD_CHARS} characters")]
    TooLong(&'static str),
    #[error("`instance` must be an integer from 0 to 65535")]
    BadInstance,
}

impl VersionReport {
    /// Parses an update: a JSON object with `app` and `ver` (non-empty), optional `host` and
    /// `instance`, read as partiscid's Go decoder reads it, since its clients were written
    /// against it: keys match whatever their case and the last one in the document wins, a
    /// `null` leaves a field as it was, unknown keys are ignored, and text that is not valid
    /// Unicode (bytes that are not UTF-8, `\u` escapes of lone surrogates) holds U+FFFD in
    /// their place. Trailing bytes after the object are refused.
    pub fn parse(body: &[u8]) -> Result<VersionReport, InvalidReport> {
        if body.trim_ascii().is_empty() {
            return Err(InvalidReport::Empty);
        }
        let text = replace_invalid_text(body);
        let Document::Object(fields) =
            serde_json::from_slice(&text).map_err(|e| InvalidReport::NotJson(e.to_string()))?
        else {
            return Err(InvalidReport::NotAnObject);
        };
        let field = |name: &str| {
            fields
                .iter()
                .filter(|(key, value)| key_matches(key, name) && !value.is_null())
                .map(|(_, value)| value)
                .next_back()
        };
        let text_field = |name: &'static str, required: bool| -> Result<String, InvalidReport> {
            let text = match field(name) {
                None => String::new(),
                Some(Value::String(text)) => text.clone(),
                Some(_) => return Err(InvalidReport::NotAString(name)),
            };
            if required && text.is_empty() {
                return Err(InvalidReport::Missing(name));
            }
            if text.chars().count() > MAX_FIELD_CHARS {
                return Err(InvalidReport::TooLong(name));
            }
            Ok(text)
        };
        let instance = match field("instance") {
            None => 0,
            Some(value) => value
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(InvalidReport::BadInstance)?,
        };
        Ok(VersionReport {
            app: text_field("app", true)?,
            ver: text_field("ver", true)?,
            host: text_field("host", false)?,
            instance,
        })
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    pub fn ver(&self) -> &str {
        &self.ver
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn instance(&self) -> u16 {
        self.instance
    }

    /// The application's id: `app` lower-cased, each character outside `0-9a-z` replaced by
    /// `_` (one per character).
    pub fn app_id(&self) -> String {
        app_id(&self.app)
    }
}

/// `"Demo App É!"` → `"demo_app___"`. Each character is lower-cased to exactly one character,
/// as Go's `strings.ToLower` does (Unicode's simple mapping): `İ` becomes `i`, not `i` and a
/// combining dot, so its id is partiscid's `i`.
pub fn app_id(app: &str) -> String {
    app.chars()
        .map(|c| {
            // The full mapping is longer than one character only for `İ`, whose simple
            // mapping is the first character of its full one.
            let lower = c.to_lowercase().next().unwrap_or(c);
            if lower.is_ascii_lowercase() || lower.is_ascii_digit() {
                lower
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a key names a field, as Go's decoder matches them: Unicode case folding, under
/// which the long `ſ` is an `s` and the Kelvin sign a `k`. `name` is lower-case ASCII.
fn key_matches(key: &str, name: &str) -> bool {
    key.chars().count() == name.len()
        && key.chars().zip(name.chars()).all(|(k, n)| {
            k.to_ascii_lowercase() == n
                || (n == 's' && k == '\u{17f}')
                || (n == 'k' && k == '\u{212a}')
        })
}

/// A document's top level: an object's members in the order they were written (a map would
/// sort them, and the last spelling of a key must win), or anything else.
enum Document {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry::<String, Value>()? {
            members.push(member);
        }
        Ok(Document::Object(members))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Document::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Document, E> {
        Ok(Document::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Document, E> {
        Ok(Document::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Document, E> {
        Ok(Document::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Document, E> {
        Ok(Document::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Document, E> {
        Ok(Document::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
        Ok(Document::Other)
    }
}

/// The text of a JSON document with what Go's decoder replaces by U+FFFD replaced the same way,
/// inside strings only: each byte that does not begin a valid UTF-8 character, and each `\u`
/// escape of a surrogate that is not half of a pair. Everything else is copied unchanged, so a
/// document that is not JSON stays not JSON.
fn replace_invalid_text(body: &[u8]) -> Vec<u8> {
    const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();
    let mut out = Vec::with_capacity(body.len());
    let mut in_string = false;
    let mut i = 0;
    while i < body.len() {
        let byte = body[i];
        if !in_string {
            in_string = byte == b'"';
            out.push(byte);
            i += 1;
        } else if byte == b'"' {
            in_string = false;
            out.push(byte);
            i += 1;
        } else if byte == b'\\' {
            let escape = &body[i..];
            match unicode_escape(escape) {
                Some(0xd800..=0xdbff)
                    if matches!(unicode_escape(&escape[6..]), Some(0xdc00..=0xdfff)) =>
                {
                    out.extend_from_slice(&escape[..12]);
                    i += 12;
                }
                Some(0xd800..=0xdfff) => {
                    out.extend_from_slice(b"\\ufffd");
                    i += 6;
                }
                _ => {
                    // Any other escape, valid or not, is the parser's to judge; its second
                    // byte is copied with it so that an escaped quote does not end the string.
                    let length = escape.len().min(2);
                    out.extend_from_slice(&escape[..length]);
                    i += length;
                }
            }
        } else if byte < 0x80 {
            out.push(byte);
            i += 1;
        } else {
            let width = match byte {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => 0,
            };
            match body.get(i..i + width) {
                Some(character) if width > 0 && std::str::from_utf8(character).is_ok() => {
                    out.extend_from_slice(character);
                    i += width;
                }
                _ => {
                    out.extend_from_slice(REPLACEMENT);
                    i += 1;
                }
            }
        }
    }
    out
}

/// The code unit of a `\uXXXX` escape at the start of `text`, if there is one.
fn unicode_escape(text: &[u8]) -> Option<u16> {
    let hex = text.strip_prefix(b"\\u")?.get(..4)?;
    u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<VersionReport, InvalidReport> {
        VersionReport::parse(text.as_bytes())
    }

    #[test]
    fn a_full_update_parses() {
        let report = parse(r#"{"app":"Demo App","ver":"1.2.3dev","host":"web1","instance":3}"#)
            .expect("valid");
        assert_eq!(
            (report.app(), report.ver(), report.host(), report.instance()),
            ("Demo App", "1.2.3dev", "web1", 3)
        );
        assert_eq!(report.app_id(), "demo_app");
    }

    #[test]
    fn keys_match_whatever_their_case_and_unknown_ones_are_ignored() {
        let report = parse(r#"{"APP":"a","Ver":"1","HOST":"h","colour":"blue"}"#).expect("valid");
        assert_eq!((report.app(), report.ver(), report.host()), ("a", "1", "h"));
    }

    #[test]
    fn server_assigned_fields_sent_by_a_client_are_ignored() {
        let report =
            parse(r#"{"app":"a","ver":"1","app_id":"zzz","host_ip":"6.6.6.6","last_update":5}"#)
                .expect("valid");
        assert_eq!(report.app_id(), "a");
    }

    #[test]
    fn bad_updates_are_refused_with_their_reason() {
        let long = "x".repeat(51);
        let cases = [
            ("", InvalidReport::Empty),
            ("{}", InvalidReport::Missing("app")),
            (r#"{"ver":"1"}"#, InvalidReport::Missing("app")),
            (r#"{"app":"","ver":"1"}"#, InvalidReport::Missing("app")),
            (r#"{"app":"a"}"#, InvalidReport::Missing("ver")),
            (r#"{"app":"a","ver":""}"#, InvalidReport::Missing("ver")),
            (r#"{"app":1,"ver":"1"}"#, InvalidReport::NotAString("app")),
            (r#"[1]"#, InvalidReport::NotAnObject),
            (
                r#"{"app":"a","ver":"1","instance":70000}"#,
                InvalidReport::BadInstance,
            ),
            (
                r#"{"app":"a","ver":"1","instance":-1}"#,
                InvalidReport::BadInstance,
            ),
            (
                r#"{"app":"a","ver":"1","instance":1.5}"#,
                InvalidReport::BadInstance,
            ),
            (
                r#"{"app":"a","ver":"1","instance":"2"}"#,
                InvalidReport::BadInstance,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body), Err(expected), "{body}");
        }
        let too_long = format!(r#"{{"app":"{long}","ver":"1"}}"#);
        assert_eq!(parse(&too_long), Err(InvalidReport::TooLong("app")));
        let host_too_long = format!(r#"{{"app":"a","ver":"1","host":"{long}"}}"#);
        assert_eq!(parse(&host_too_long), Err(InvalidReport::TooLong("host")));
        assert!(matches!(
            parse(r#"{"app":"a","ver":"1"} junk"#),
            Err(InvalidReport::NotJson(_))
        ));
    }

    #[test]
    fn the_last_spelling_of_a_key_wins_whatever_its_case_and_a_null_changes_nothing() {
        let report = parse(r#"{"app":"first","App":"last","ver":"1","VER":null}"#).expect("valid");
        assert_eq!((report.app(), report.ver()), ("last", "1"));
        let report = parse(r#"{"App":"first","app":"last","ver":"1"}"#).expect("valid");
        assert_eq!(report.app(), "last");
        // Go folds case as Unicode does: a long s is an s.
        let report = parse("{\"app\":\"a\",\"ver\":\"1\",\"ho\u{17f}t\":\"h\"}").expect("valid");
        assert_eq!(report.host(), "h");
        assert!(!key_matches("hostname", "host"));
    }

    #[test]
    fn text_that_is_not_unicode_holds_replacement_characters_as_in_go() {
        let report = VersionReport::parse(b"{\"app\":\"a\xff\xe2\x82b\",\"ver\":\"\xed\xa0\x80\"}")
            .expect("valid");
        assert_eq!(report.app(), "a\u{fffd}\u{fffd}\u{fffd}b");
        assert_eq!(report.ver(), "\u{fffd}\u{fffd}\u{fffd}");
        let report = parse(
            r#"{"app":"\ud800\u0041\udc00","ver":"\ud83d\ude00\ud800\ud800","host":"\\ud800\""}"#,
        )
        .expect("valid");
        assert_eq!(report.app(), "\u{fffd}A\u{fffd}");
        assert_eq!(report.ver(), "\u{1f600}\u{fffd}\u{fffd}");
        assert_eq!(report.host(), "\\ud800\"");
        // Outside strings nothing is repaired: such a document is still not JSON.
        assert!(matches!(
            VersionReport::parse(b"{\"app\":\"a\",\"ver\":\"1\"\xff}"),
            Err(InvalidReport::NotJson(_))
        ));
    }

    /// One underscore replaces each other character; lower-casing maps one character to one,
    /// as Go's does.
    #[test]
    fn app_ids_lower_case_one_character_to_one_and_replace_the_others() {
        for (app, id) in [
            ("Demo App É!", "demo_app___"),
            ("x86_64", "x86_64"),
            ("\u{130}stanbul", "istanbul"),
            ("\u{212a}elvin", "kelvin"),
        ] {
            assert_eq!(app_id(app), id, "{app}");
        }
    }

    #[test]
    fn fifty_characters_are_counted_as_characters_not_bytes() {
        let app = "é".repeat(50);
        let body = format!(r#"{{"app":"{app}","ver":"1"}}"#);
        assert!(parse(&body).is_ok());
    }
}
