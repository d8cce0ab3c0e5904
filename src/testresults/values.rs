//! What a parse reads an upload into: the formats, the limits, each test's outcome and summary
//! bucket, the run and its 2014 view. Shared by every parser; it imports none of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
    pub(super) fn outcome(self) -> Outcome {
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
pub(super) fn class_fixture(id: &str) -> Option<&str> {
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

    pub(super) fn of_statuses(statuses: impl IntoIterator<Item = Status>) -> Summary {
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
}

/// `pkg.Class.test` → (`pkg.Class`, `test`), splitting at the last dot before any `[...]`
/// attributes; an id without a dot has the class `""`.
pub(super) fn split_id(id: &str) -> (&str, &str) {
    let plain = id.find('[').map_or(id, |bracket| &id[..bracket]);
    match plain.rfind('.') {
        Some(dot) => (&id[..dot], &id[dot + 1..]),
        None => ("", id),
    }
}
