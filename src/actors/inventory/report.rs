//! A version report as a client sends it (over UDP or `POST update/`), parsed into a type that
//! cannot exist unvalidated. It owns the rules of the Partisci version JSON; it knows nothing
//! of transports, entities or storage.

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
    #[error("the update is not UTF-8")]
    NotUtf8,
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
    /// `instance`. Keys match case-insensitively and unknown keys are ignored, as Partisci
    /// clients expect; trailing bytes after the object are refused.
    pub fn parse(body: &[u8]) -> Result<VersionReport, InvalidReport> {
        let text = std::str::from_utf8(body).map_err(|_| InvalidReport::NotUtf8)?;
        if text.trim().is_empty() {
            return Err(InvalidReport::Empty);
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| InvalidReport::NotJson(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(InvalidReport::NotAnObject);
        };
        // Case-insensitive keys: the last spelling of a key wins, as in a JSON object.
        let field = |name: &str| {
            fields
                .iter()
                .filter(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
                .next_back()
                .filter(|value| !value.is_null())
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

/// `"Demo App É!"` → `"demo_app___"`.
pub fn app_id(app: &str) -> String {
    app.chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect()
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
    fn app_ids_replace_one_underscore_per_character() {
        assert_eq!(app_id("Demo App É!"), "demo_app___");
        assert_eq!(app_id("x86_64"), "x86_64");
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
        assert_eq!(
            VersionReport::parse(b"{\"app\":\"\xff\",\"ver\":\"1\"}"),
            Err(InvalidReport::NotUtf8)
        );
    }

    #[test]
    fn fifty_characters_are_counted_as_characters_not_bytes() {
        let app = "é".repeat(50);
        let body = format!(r#"{{"app":"{app}","ver":"1"}}"#);
        assert!(parse(&body).is_ok());
    }
}
