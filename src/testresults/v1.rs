//! Subunit v1: the text protocol, read as python-subunit's `TestProtocolServer` reads it, into
//! test results. Knows nothing of v2 or JSON.
//!
//! ```text
//! test|testing[:] NAME                      starts a test
//! success|successful|failure|error|skip|xfail|uxsuccess[:] NAME [DETAILS]
//! time: YYYY-MM-DD HH:MM:SS[.ffffff]Z       the time now
//! tags: [-]TAG ...     progress: ...        accepted, not kept
//! DETAILS: " [" LF lines "]" LF              (a line starting " ]" stands for "]")
//!        | " [ multipart" LF (Content-Type: t/s LF name LF (HEXLEN CRLF bytes)* 0 CRLF)* "]" LF
//! ```
//!
//! A directive is a keyword, one whitespace character, then the rest of the line; an outcome
//! counts only for the test in progress, with the same name. Everything else is the tests' own
//! output, skipped. Where python-subunit raises on its own input (a bad `time:`, a malformed
//! multipart part) this gives an error; where the stream ends inside a test, the test is
//! incomplete ("lost connection"). Lines may end in CRLF.

use chrono::{DateTime, NaiveDateTime};

use super::collector::{excerpt, Collector, Timestamp};
use super::error::{ParseError, V1Problem};
use super::values::{Format, Limits, Outcome, TestRun};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Test,
    Outcome(Outcome),
    Time,
    /// `tags:` and `progress:`: protocol, of no use to a result.
    Ignored,
}

fn keyword(command: &[u8]) -> Option<Keyword> {
    let end = command
        .iter()
        .rposition(|&b| b != b':')
        .map_or(0, |last| last + 1);
    Some(match &command[..end] {
        b"test" | b"testing" => Keyword::Test,
        b"success" | b"successful" => Keyword::Outcome(Outcome::Success),
        b"failure" => Keyword::Outcome(Outcome::Fail),
        b"error" => Keyword::Outcome(Outcome::Error),
        b"skip" => Keyword::Outcome(Outcome::Skip),
        b"xfail" => Keyword::Outcome(Outcome::Xfail),
        b"uxsuccess" => Keyword::Outcome(Outcome::Uxsuccess),
        b"time" => Keyword::Time,
        b"tags" | b"progress" => Keyword::Ignored,
        _ => return None,
    })
}

/// Splits a line (without its line end) into a directive and its argument, as python-subunit
/// does: no leading whitespace, a keyword, one whitespace character, then an argument that is
/// not all whitespace.
fn directive(line: &[u8]) -> Option<(Keyword, &[u8])> {
    let space = line.iter().position(|b| b.is_ascii_whitespace())?;
    if space == 0 {
        return None;
    }
    let argument = &line[space + 1..];
    if argument.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some((keyword(&line[..space])?, argument))
}

/// The line at `at`: its text without the line end, and where the next line starts.
fn line_at(input: &[u8], at: usize) -> (&[u8], usize) {
    let rest = &input[at..];
    let (mut line, next) = match memchr::memchr(b'\n', rest) {
        Some(newline) => (&rest[..newline], at + newline + 1),
        None => (rest, input.len()),
    };
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    (line, next)
}

/// Where a multipart detail is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Expecting `Content-Type: ...` or the closing `]`.
    ContentType,
    Name,
    Chunks,
}

enum State {
    Outside,
    InTest {
        name: String,
        start: Option<Timestamp>,
    },
    /// The outcome line came; its details follow.
    Details {
        test: Reported,
        multipart: Option<Part>,
    },
}

/// A test whose outcome line came. The stop time is the time of that line.
struct Reported {
    name: String,
    start: Option<Timestamp>,
    stop: Option<Timestamp>,
    outcome: Outcome,
}

pub(super) fn parse(input: &[u8], limits: &Limits) -> Result<TestRun, ParseError> {
    let mut out = Collector::new(limits);
    let mut state = State::Outside;
    let mut now: Option<Timestamp> = None;
    let mut at = 0;
    while at < input.len() {
        if let State::Details {
            multipart: Some(part @ Part::Chunks),
            ..
        } = &mut state
        {
            match chunk(input, at)? {
                Chunk::Body { next } => at = next,
                Chunk::Last { next } => {
                    *part = Part::ContentType;
                    at = next;
                }
                Chunk::CutOff => at = input.len(),
            }
            continue;
        }
        let (line, next) = line_at(input, at);
        state = match state {
            State::Outside | State::InTest { .. } => {
                let parsed = directive(line);
                match parsed {
                    Some((Keyword::Time, argument)) => {
                        let time = parse_time(argument, at)?;
                        out.saw_time(time);
                        now = Some(time);
                        state
                    }
                    Some((Keyword::Ignored, _)) => state,
                    Some((Keyword::Test, name)) if matches!(state, State::Outside) => {
                        let name = std::str::from_utf8(name).map_err(|_| ParseError::V1 {
                            offset: at,
                            problem: V1Problem::NameNotUtf8,
                        })?;
                        out.check_room(1, at)?;
                        State::InTest {
                            name: name.to_owned(),
                            start: now,
                        }
                    }
                    Some((Keyword::Outcome(outcome), argument)) => match state {
                        State::InTest { name, start } => {
                            if argument == name.as_bytes() {
                                out.finished(name, outcome, start, now, at)?;
                                State::Outside
                            } else if let Some(details) = argument
                                .strip_prefix(name.as_bytes())
                                .and_then(details_kind)
                            {
                                State::Details {
                                    test: Reported {
                                        name,
                                        start,
                                        stop: now,
                                        outcome,
                                    },
                                    multipart: details,
                                }
                            } else {
                                out.non_subunit(at, next - at)?;
                                State::InTest { name, start }
                            }
                        }
                        other => {
                            out.non_subunit(at, next - at)?;
                            other
                        }
                    },
                    // Not a directive, or `test:` inside a test: the tests' own output.
                    _ => {
                        out.non_subunit(at, next - at)?;
                        state
                    }
                }
            }
            State::Details { test, multipart } => {
                // A part's name may be anything, "]" too; elsewhere "]" closes the details.
                if line == b"]" && multipart != Some(Part::Name) {
                    out.finished(test.name, test.outcome, test.start, test.stop, at)?;
                    State::Outside
                } else {
                    let multipart = match multipart {
                        None => None,
                        Some(Part::ContentType) => {
                            check_content_type(line, at)?;
                            Some(Part::Name)
                        }
                        Some(Part::Name | Part::Chunks) => Some(Part::Chunks),
                    };
                    State::Details { test, multipart }
                }
            }
        };
        at = next;
    }
    // python-subunit's "lost connection during test": the stream ended inside a test.
    match state {
        State::Outside => {}
        State::InTest { name, start }
        | State::Details {
            test: Reported { name, start, .. },
            ..
        } => {
            out.finished(name, Outcome::Incomplete, start, None, input.len())?;
        }
    }
    out.finish(Format::SubunitV1)
}

/// What follows a test name on an outcome line that opens details: `None` for bracketed text,
/// `Some` for multipart; not details at all otherwise.
fn details_kind(after_name: &[u8]) -> Option<Option<Part>> {
    match after_name {
        b" [" => Some(None),
        b" [ multipart" => Some(Some(Part::ContentType)),
        _ => None,
    }
}

/// `Content-Type: type/subtype[;params]`: python-subunit splits the line at its first space
/// and the value at `/`, and fails on anything else.
fn check_content_type(line: &[u8], at: usize) -> Result<(), ParseError> {
    let value = line
        .iter()
        .position(|&b| b == b' ')
        .map(|space| &line[space + 1..]);
    match value {
        Some(value) if value.contains(&b'/') => Ok(()),
        _ => Err(ParseError::V1 {
            offset: at,
            problem: V1Problem::BadContentType {
                line: excerpt(line),
            },
        }),
    }
}

enum Chunk {
    /// A chunk of bytes; the next chunk header is at `next`.
    Body { next: usize },
    /// The `0` chunk that ends a part.
    Last { next: usize },
    /// The stream ends inside the chunk: the test is incomplete.
    CutOff,
}

/// Reads the chunk (HTTP chunked coding: hexadecimal length, CRLF, the bytes) at `at`.
fn chunk(input: &[u8], at: usize) -> Result<Chunk, ParseError> {
    let bad = || ParseError::V1 {
        offset: at,
        problem: V1Problem::BadChunkLength,
    };
    let rest = &input[at..];
    let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let after = &rest[digits..];
    let line_end = if after.starts_with(b"\r\n") {
        2
    } else if after.starts_with(b"\n") {
        1
    } else if after.is_empty() || after == b"\r" {
        return Ok(Chunk::CutOff);
    } else {
        return Err(bad());
    };
    if digits == 0 {
        return Err(bad());
    }
    // At most 16 hex digits fit a u64; more cannot be a length within the upload anyway.
    let length = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(bad)?;
    let body = at + digits + line_end;
    if length == 0 {
        return Ok(Chunk::Last { next: body });
    }
    match usize::try_from(length)
        .ok()
        .and_then(|length| body.checked_add(length))
    {
        Some(next) if next <= input.len() => Ok(Chunk::Body { next }),
        _ => Ok(Chunk::CutOff),
    }
}

/// `time:`'s argument: ISO 8601 with a space or `T`, optional fraction, `Z` or an offset (UTC
/// when there is none), as python-subunit's `iso8601` module reads it.
fn parse_time(argument: &[u8], at: usize) -> Result<Timestamp, ParseError> {
    let bad = || ParseError::V1 {
        offset: at,
        problem: V1Problem::BadTime {
            text: excerpt(argument),
        },
    };
    let text = std::str::from_utf8(argument).map_err(|_| bad())?.trim();
    let time = DateTime::parse_from_rfc3339(text)
        .map(|time| time.to_utc())
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
                .map(|naive| naive.and_utc())
        })
        .map_err(|_| bad())?;
    time.timestamp_nanos_opt().map(Timestamp).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_need_a_keyword_a_space_and_an_argument() {
        assert_eq!(directive(b"test: a.b"), Some((Keyword::Test, &b"a.b"[..])));
        assert_eq!(
            directive(b"successful a.b"),
            Some((Keyword::Outcome(Outcome::Success), &b"a.b"[..]))
        );
        assert_eq!(directive(b"test:"), None);
        assert_eq!(directive(b"test:   "), None);
        assert_eq!(directive(b" test: a"), None);
        assert_eq!(directive(b"s: a"), None);
        assert_eq!(directive(b"fail: a"), None);
    }

    #[test]
    fn times_are_read_with_a_space_or_a_t() {
        let expected = Timestamp(1_408_098_889_010_492_000);
        assert_eq!(parse_time(b"2014-08-15 10:34:49.010492Z", 0), Ok(expected));
        assert_eq!(parse_time(b"2014-08-15T10:34:49.010492Z", 0), Ok(expected));
        assert_eq!(parse_time(b"2014-08-15 10:34:49.010492", 0), Ok(expected));
        assert_eq!(
            parse_time(b"2014-08-15 12:34:49.010492+02:00", 0),
            Ok(expected)
        );
        assert!(parse_time(b"yesterday", 7).is_err());
    }

    #[test]
    fn chunks_are_read_by_their_hexadecimal_length() {
        assert!(matches!(
            chunk(b"A\r\n0123456789rest", 0),
            Ok(Chunk::Body { next: 13 })
        ));
        assert!(matches!(chunk(b"0\r\n]\n", 0), Ok(Chunk::Last { next: 3 })));
        assert!(matches!(chunk(b"FF\r\nshort", 0), Ok(Chunk::CutOff)));
        assert!(matches!(
            chunk(b"FFFFFFFFFFFFFFFFFFFFFF\r\n", 0),
            Err(ParseError::V1 { .. })
        ));
        assert!(matches!(chunk(b"zz\r\n", 0), Err(ParseError::V1 { .. })));
    }
}
