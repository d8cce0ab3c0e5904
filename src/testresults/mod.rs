//! Test-results uploads for the Refstack face: subunit v2 (binary), subunit v1 (text) and the two
//! JSON results formats, recognised by content and read into one view: each test's id, status and
//! duration, and the 2014 summary (`PASS`, `FAIL`, `FAIL_SETUP`, `ERROR`, `SKIP`, `Total`).
//! Pure functions over bytes: no I/O, no clock, no HTTP, no log; hostile bytes give a typed error,
//! never a panic, and memory bounded by [`Limits`].
//!
//! # Statuses
//!
//! Each test keeps the outcome its stream gave ([`Outcome`]) and the summary bucket it counts in
//! ([`Status`]). The buckets follow the 2014 Refstack server: success is `PASS`, skip is `SKIP`,
//! a failure is `FAIL`, except that a failure of a class fixture (`setUpClass (pkg.Class)`) is
//! `FAIL_SETUP`, and a failure of the runner's `process-returncode` pseudo-test is dropped. Where
//! the 2014 code had no rule, ours are:
//! - a v1 `error:` is `ERROR`, or `FAIL_SETUP` for a class fixture (unittest reports a
//!   `setUpClass` exception as an error; the 2014 code counted it as `ERROR` under a mangled
//!   class name);
//! - `xfail` counts as `PASS` and `uxsuccess` as `FAIL`, the verdicts of unittest's
//!   `wasSuccessful` (the 2014 code left both out of the summary, so `Total` did not add up);
//! - a test that started but never finished (v1: the stream ends inside it; v2: no final status
//!   by the end) is [`Outcome::Incomplete`] and counts as `ERROR`, as python-subunit and testtools
//!   report it.
//!
//! # Durations
//!
//! A test's duration is its stop time minus its start time, when the stream has both: in v1 the
//! last `time:` before `test:` and before the outcome; in v2 the timestamp of the test's first
//! packet and of the packet with its final status (testtools' `StreamToDict`).

mod collector;
mod error;
mod json;
pub mod signature;
pub mod testing;
mod v1;
mod v2;
mod values;

pub use error::{ParseError, V1Problem, V2Problem};
pub use json::{upload_schema, ResultEntry, UploadedResults, EMPTY_RESULTS};
pub use values::{
    Format, Limits, NonSubunit, Outcome, ParsedResults, Status, Summary, TestResult, TestRun,
    MAX_CLASS_NAME_BYTES, MAX_V2_PACKET_BYTES,
};

/// Recognises the format of an upload from its bytes, without parsing it whole. `None` when it
/// is empty or only whitespace.
///
/// A subunit v2 packet start (`0xB3`, then flags of version 2) at a UTF-8 character boundary
/// makes a v2 stream, wherever it is: v1 text and JSON are UTF-8, where `0xB3` is only ever a
/// continuation byte. Otherwise text that starts with `{` is JSON, and anything else is v1.
///
/// Which of the two JSON formats is told by the object's top-level keys (`summary` or `data`:
/// parsed results), read without keeping anything.
pub fn detect(input: &[u8]) -> Option<Format> {
    Some(match sniff(input)? {
        Sniffed::V2 => Format::SubunitV2,
        Sniffed::V1 => Format::SubunitV1,
        Sniffed::Json(object) if json::looks_like_parsed_results(object) => {
            Format::ParsedResultsJson
        }
        Sniffed::Json(_) => Format::ResultsJson,
    })
}

enum Sniffed<'a> {
    V2,
    V1,
    /// The input from its `{` on.
    Json(&'a [u8]),
}

fn sniff(input: &[u8]) -> Option<Sniffed<'_>> {
    let text = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let first = text.iter().position(|b| !b.is_ascii_whitespace())?;
    Some(if v2::find_packet_start(input).is_some() {
        Sniffed::V2
    } else if text[first] == b'{' {
        Sniffed::Json(&text[first..])
    } else {
        Sniffed::V1
    })
}

/// Parses an upload in whichever format [`detect`] recognises.
pub fn parse(input: &[u8], limits: &Limits) -> Result<TestRun, ParseError> {
    if input.len() > limits.max_input_bytes {
        return Err(ParseError::TooLarge {
            size: input.len(),
            limit: limits.max_input_bytes,
        });
    }
    match sniff(input).ok_or(ParseError::Empty)? {
        Sniffed::V2 => v2::parse(input, limits),
        Sniffed::V1 => v1::parse(input, limits),
        Sniffed::Json(_) => json::parse(input, limits),
    }
}

/// Parses an upload as `format`, whatever its bytes look like: the fuzz targets' way into each
/// parser past the detection. Everything else goes through [`parse`].
#[doc(hidden)]
pub fn parse_as(format: Format, input: &[u8], limits: &Limits) -> Result<TestRun, ParseError> {
    if input.len() > limits.max_input_bytes {
        return Err(ParseError::TooLarge {
            size: input.len(),
            limit: limits.max_input_bytes,
        });
    }
    match format {
        Format::SubunitV2 => v2::parse(input, limits),
        Format::SubunitV1 => v1::parse(input, limits),
        Format::ResultsJson | Format::ParsedResultsJson => json::parse(input, limits),
    }
}

#[cfg(test)]
mod tests {
    use super::collector::{at_char_boundary, excerpt};
    use super::values::{class_fixture, split_id};
    use super::*;

    #[test]
    fn split_id_keeps_attributes_whole() {
        assert_eq!(split_id("a.b.C.test_x"), ("a.b.C", "test_x"));
        assert_eq!(
            split_id("a.C.test_x[id-1,v1.2]"),
            ("a.C", "test_x[id-1,v1.2]")
        );
        assert_eq!(split_id("bare"), ("", "bare"));
    }

    #[test]
    fn class_fixtures_are_recognised_in_both_spellings() {
        assert_eq!(class_fixture("setUpClass (a.b.C)"), Some("a.b.C"));
        assert_eq!(class_fixture("a.b.C.setUpClass"), Some("a.b.C"));
        assert_eq!(class_fixture("a.b.C.test_setUpClass_twice"), None);
        assert_eq!(
            Status::of(Outcome::Error, "setUpClass (a.C)"),
            Status::FailSetup
        );
        assert_eq!(Status::of(Outcome::Skip, "setUpClass (a.C)"), Status::Skip);
    }

    #[test]
    fn utf8_boundaries_hide_continuation_bytes() {
        let text = "a³€\u{1F600}".as_bytes();
        let boundaries: Vec<bool> = (0..text.len())
            .map(|at| at_char_boundary(text, 0, at))
            .collect();
        assert_eq!(
            boundaries,
            [true, true, false, true, false, false, true, false, false, false]
        );
        // Nothing before `from` counts; an invalid byte ends a character.
        assert!(at_char_boundary(b"\xC2\xB3", 1, 1));
        assert!(at_char_boundary(b"\xE2x\xB3", 0, 2));
        assert!(at_char_boundary(b"\x80\x80\x80\xB3", 0, 3));
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(b"abc"), "abc");
        assert_eq!(excerpt(&[b'x'; 200]).len(), 83);
    }
}
