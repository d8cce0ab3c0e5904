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

mod error;
mod json;
pub mod signature;
pub mod testing;
mod v1;
mod v2;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use error::{ParseError, V1Problem, V2Problem};
pub use json::{upload_schema, ResultEntry, UploadedResults, EMPTY_RESULTS};

/// The largest subunit v2 packet: its length is a varint of at most 3 octets (spec: "< 4 MiB").
pub const MAX_V2_PACKET_BYTES: usize = 0x3F_FFFF;

/// The longest class name a JSON parsed-results upload may give. Each of the class's tests gets
/// an id that spells the class out again, so this bounds what a test costs beyond the bytes it
/// brought; tempest's longest class names are about 100 bytes.
pub const MAX_CLASS_NAME_BYTES: usize = 512;

/// The formats an upload can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Binary subunit: `0xB3` packets with a CRC32 each.
    SubunitV2,
    /// Text subunit: `test:`, `success:`, `failure:` ... lines.
    SubunitV1,
    /// refstack-client's results: `{"cpid", "duration_seconds", "results": [{"name", "uuid"}]}`,
    /// passing tests only.
    ResultsJson,
    /// The 2014 server's parsed results: `{"summary": {...}, "data": {class: [[test, status,
    /// seconds]]}}` ([`ParsedResults`]).
    ParsedResultsJson,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::SubunitV2 => "subunit v2",
            Format::SubunitV1 => "subunit v1",
            Format::ResultsJson => "JSON results",
            Format::ParsedResultsJson => "JSON parsed results",
        })
    }
}

/// What to do with bytes that are outside the protocol: v2 bytes between packets, v1 lines that
/// are no directive (a test's own output, usually).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonSubunit {
    /// Skip and count them ([`TestRun::non_subunit_bytes`]), as python-subunit's filters do
    /// when given a name for such output.
    #[default]
    Skip,
    /// Reject the upload ([`ParseError::NonSubunit`]), as python-subunit's v2 reader does by
    /// default. Then a v2 stream with any bit flipped is always an error.
    Reject,
}

/// Bounds on what one upload may cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Larger uploads are refused before any parsing. The parse itself holds no more than four
    /// times the upload plus 1.5 KiB per test (`tests/parse_bounds.rs`).
    pub max_input_bytes: usize,
    /// Test results (and, in v2, tests still open) an upload may hold.
    pub max_tests: usize,
    pub non_subunit: NonSubunit,
}

impl Default for Limits {
    /// 64 MiB and 100,000 tests: a full tempest run with its attachments is well under both.
    fn default() -> Self {
        Limits {
            max_input_bytes: 64 * 1024 * 1024,
            max_tests: 100_000,
            non_subunit: NonSubunit::Skip,
        }
    }
}

/// What a stream said about a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Fail,
    /// v1 `error:` (v2 has no such status).
    Error,
    Skip,
    /// Expected failure.
    Xfail,
    /// Unexpected success.
    Uxsuccess,
    /// Started, never finished.
    Incomplete,
}

/// The summary bucket of a test, named as the 2014 server named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "FAIL")]
    Fail,
    /// A class fixture (`setUpClass`) failed: none of the class's tests ran.
    #[serde(rename = "FAIL_SETUP")]
    FailSetup,
    #[serde(rename = "ERROR")]
    Error,
    #[serde(rename = "SKIP")]
    Skip,
}

impl Status {
    /// The bucket of `outcome` for the test `id` (see the module documentation).
    pub fn of(outcome: Outcome, id: &str) -> Status {
        match outcome {
            Outcome::Success | Outcome::Xfail => Status::Pass,
            Outcome::Skip => Status::Skip,
            Outcome::Incomplete => Status::Error,
            Outcome::Fail | Outcome::Error if class_fixture(id).is_some() => Status::FailSetup,
            Outcome::Fail | Outcome::Uxsuccess => Status::Fail,
            Outcome::Error => Status::Error,
        }
    }

    /// The outcome a JSON parsed result stands for: the bucket is all such a file keeps.
    fn outcome(self) -> Outcome {
        match self {
            Status::Pass => Outcome::Success,
            Status::Fail | Status::FailSetup => Outcome::Fail,
            Status::Error => Outcome::Error,
            Status::Skip => Outcome::Skip,
        }
    }
}

/// The class whose fixture the test id names: `setUpClass (pkg.Class)` (unittest's name for a
/// failed class fixture) or `pkg.Class.setUpClass` (the 2014 server's rewrite of it).
fn class_fixture(id: &str) -> Option<&str> {
    if let Some(class) = id
        .strip_prefix("setUpClass (")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        return Some(class);
    }
    id.strip_suffix(".setUpClass")
}

/// One test's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// The id as the stream gave it, e.g.
    /// `tempest.api.compute.test_x.XTest.test_y[id-8f2d...,smoke]`.
    pub id: String,
    pub status: Status,
    pub outcome: Outcome,
    /// Seconds from start to stop, when the stream had both times.
    pub duration_seconds: Option<f64>,
}

/// Counts per bucket, with the 2014 keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    #[serde(rename = "PASS")]
    pub pass: u64,
    #[serde(rename = "FAIL")]
    pub fail: u64,
    #[serde(rename = "FAIL_SETUP")]
    pub fail_setup: u64,
    #[serde(rename = "ERROR")]
    pub error: u64,
    #[serde(rename = "SKIP")]
    pub skip: u64,
    #[serde(rename = "Total")]
    pub total: u64,
}

impl Summary {
    fn count(&mut self, status: Status) {
        match status {
            Status::Pass => self.pass += 1,
            Status::Fail => self.fail += 1,
            Status::FailSetup => self.fail_setup += 1,
            Status::Error => self.error += 1,
            Status::Skip => self.skip += 1,
        }
        self.total += 1;
    }

    /// The summary of `tests`.
    pub fn of<'a>(tests: impl IntoIterator<Item = &'a TestResult>) -> Summary {
        Summary::of_statuses(tests.into_iter().map(|test| test.status))
    }

    fn of_statuses(statuses: impl IntoIterator<Item = Status>) -> Summary {
        let mut summary = Summary::default();
        for status in statuses {
            summary.count(status);
        }
        summary
    }
}

/// A parsed upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRun {
    pub format: Format,
    /// In the order the stream finished them (JSON: document order).
    pub tests: Vec<TestResult>,
    pub summary: Summary,
    /// From the earliest to the latest time the stream gave (subunit), or the file's
    /// `duration_seconds` (JSON results).
    pub duration_seconds: Option<f64>,
    /// Bytes skipped as outside the protocol (see [`NonSubunit`]).
    pub non_subunit_bytes: u64,
}

/// The 2014 server's view of a run: the summary, and per class `[test, status, seconds]`
/// (`seconds` is `null` when the stream had no times). A failed `setUpClass (pkg.Class)` is
/// listed as test `setUpClass` of class `pkg.Class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParsedResults {
    pub summary: Summary,
    pub data: BTreeMap<String, Vec<(String, Status, Option<f64>)>>,
}

impl TestRun {
    /// The 2014 view of this run.
    pub fn to_parsed_results(&self) -> ParsedResults {
        let mut data: BTreeMap<String, Vec<(String, Status, Option<f64>)>> = BTreeMap::new();
        for test in &self.tests {
            let rewritten;
            let id = match (test.status, class_fixture(&test.id)) {
                (Status::FailSetup, Some(class)) => {
                    rewritten = format!("{class}.setUpClass");
                    rewritten.as_str()
                }
                _ => test.id.as_str(),
            };
            let (class, name) = split_id(id);
            data.entry(class.to_owned()).or_default().push((
                name.to_owned(),
                test.status,
                test.duration_seconds,
            ));
        }
        ParsedResults {
            summary: self.summary,
            data,
        }
    }

    /// The passing tests as refstack-client uploads them: the name without its `[...]`
    /// attributes, and the uuid from an `id-<uuid>` attribute when there is one.
    pub fn passing_tests(&self) -> Vec<ResultEntry> {
        self.tests
            .iter()
            .filter(|test| test.outcome == Outcome::Success)
            .map(|test| ResultEntry::from_test_id(&test.id))
            .collect()
    }
}

/// `pkg.Class.test` → (`pkg.Class`, `test`), splitting at the last dot before any `[...]`
/// attributes; an id without a dot has the class `""`.
fn split_id(id: &str) -> (&str, &str) {
    let plain = id.find('[').map_or(id, |bracket| &id[..bracket]);
    match plain.rfind('.') {
        Some(dot) => (&id[..dot], &id[dot + 1..]),
        None => ("", id),
    }
}

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

/// A point in time, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timestamp(i64);

impl Timestamp {
    /// Seconds from `self` to `later`; negative when `later` is earlier. Two i64 nanosecond
    /// times (1677 to 2262 from a v1 `time:`) can be further apart than an i64 holds.
    fn seconds_until(self, later: Timestamp) -> f64 {
        (i128::from(later.0) - i128::from(self.0)) as f64 / 1e9
    }
}

/// Gathers results as a parser finds them, enforcing the test limit, and makes the run.
struct Collector<'l> {
    limits: &'l Limits,
    tests: Vec<TestResult>,
    earliest: Option<Timestamp>,
    latest: Option<Timestamp>,
    non_subunit_bytes: u64,
}

impl<'l> Collector<'l> {
    fn new(limits: &'l Limits) -> Self {
        Collector {
            limits,
            tests: Vec::new(),
            earliest: None,
            latest: None,
            non_subunit_bytes: 0,
        }
    }

    fn saw_time(&mut self, time: Timestamp) {
        self.earliest = Some(self.earliest.map_or(time, |t| t.min(time)));
        self.latest = Some(self.latest.map_or(time, |t| t.max(time)));
    }

    /// Skips (or, per the limits, rejects) `len` bytes outside the protocol at `offset`.
    fn non_subunit(&mut self, offset: usize, len: usize) -> Result<(), ParseError> {
        if self.limits.non_subunit == NonSubunit::Reject {
            return Err(ParseError::NonSubunit { offset });
        }
        self.non_subunit_bytes += len as u64;
        Ok(())
    }

    /// Fails when `more` tests (results, or tests still open) would not fit beside the results.
    fn check_room(&self, more: usize, offset: usize) -> Result<(), ParseError> {
        if self.tests.len().saturating_add(more) > self.limits.max_tests {
            return Err(ParseError::TooManyTests {
                limit: self.limits.max_tests,
                offset,
            });
        }
        Ok(())
    }

    /// Records a finished test of a subunit stream.
    fn finished(
        &mut self,
        id: String,
        outcome: Outcome,
        start: Option<Timestamp>,
        stop: Option<Timestamp>,
        offset: usize,
    ) -> Result<(), ParseError> {
        // The runner's exit status, reported as a test by testr; the 2014 server ignored its
        // failures.
        if outcome == Outcome::Fail && id == "process-returncode" {
            return Ok(());
        }
        let duration_seconds = match (start, stop) {
            (Some(start), Some(stop)) => Some(start.seconds_until(stop)),
            _ => None,
        };
        let status = Status::of(outcome, &id);
        self.push(
            TestResult {
                id,
                status,
                outcome,
                duration_seconds,
            },
            offset,
        )
    }

    fn push(&mut self, test: TestResult, offset: usize) -> Result<(), ParseError> {
        self.check_room(1, offset)?;
        self.tests.push(test);
        Ok(())
    }

    fn finish(self, format: Format) -> Result<TestRun, ParseError> {
        if self.tests.is_empty() {
            return Err(ParseError::NoTests { format });
        }
        let duration_seconds = match (self.earliest, self.latest) {
            (Some(earliest), Some(latest)) => Some(earliest.seconds_until(latest)),
            _ => None,
        };
        Ok(TestRun {
            format,
            summary: Summary::of(&self.tests),
            tests: self.tests,
            duration_seconds,
            non_subunit_bytes: self.non_subunit_bytes,
        })
    }
}

/// At most 80 characters of `bytes`, for error messages that quote the upload.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Whether the byte at `at` starts a UTF-8 character, looking back no further than `from`: the
/// test python-subunit applies to bytes that are not subunit, where a `0xB3` in the middle of a
/// character is text, not a packet. An invalid sequence ends the character it interrupts.
fn at_char_boundary(input: &[u8], from: usize, at: usize) -> bool {
    let mut continuation_bytes = 0;
    let mut before = at;
    while before > from && continuation_bytes < 3 {
        before -= 1;
        let byte = input[before];
        if byte & 0xC0 == 0x80 {
            continuation_bytes += 1;
            continue;
        }
        let needed = match byte {
            0xC2..=0xDF => 1,
            0xE0..=0xEF => 2,
            0xF0..=0xF4 => 3,
            _ => 0,
        };
        return continuation_bytes >= needed;
    }
    true
}

#[cfg(test)]
mod tests {
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
