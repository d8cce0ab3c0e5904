//! What the parsers share while they read: the [`Collector`] that gathers results within the
//! limits and makes the run, timestamps, and the byte-level helpers for error messages and UTF-8.

use super::error::ParseError;
use super::values::{Format, Limits, NonSubunit, Outcome, Status, Summary, TestResult, TestRun};

/// A point in time, in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Timestamp(pub(super) i64);

impl Timestamp {
    /// Seconds from `self` to `later`; negative when `later` is earlier. Two i64 nanosecond
    /// times (1677 to 2262 from a v1 `time:`) can be further apart than an i64 holds.
    pub(super) fn seconds_until(self, later: Timestamp) -> f64 {
        (i128::from(later.0) - i128::from(self.0)) as f64 / 1e9
    }
}

/// Gathers results as a parser finds them, enforcing the test limit, and makes the run.
pub(super) struct Collector<'l> {
    limits: &'l Limits,
    tests: Vec<TestResult>,
    earliest: Option<Timestamp>,
    latest: Option<Timestamp>,
    non_subunit_bytes: u64,
}

impl<'l> Collector<'l> {
    pub(super) fn new(limits: &'l Limits) -> Self {
        Collector {
            limits,
            tests: Vec::new(),
            earliest: None,
            latest: None,
            non_subunit_bytes: 0,
        }
    }

    pub(super) fn saw_time(&mut self, time: Timestamp) {
        self.earliest = Some(self.earliest.map_or(time, |t| t.min(time)));
        self.latest = Some(self.latest.map_or(time, |t| t.max(time)));
    }

    /// Skips (or, per the limits, rejects) `len` bytes outside the protocol at `offset`.
    pub(super) fn non_subunit(&mut self, offset: usize, len: usize) -> Result<(), ParseError> {
        if self.limits.non_subunit == NonSubunit::Reject {
            return Err(ParseError::NonSubunit { offset });
        }
        self.non_subunit_bytes += len as u64;
        Ok(())
    }

    /// Fails when `more` tests (results, or tests still open) would not fit beside the results.
    pub(super) fn check_room(&self, more: usize, offset: usize) -> Result<(), ParseError> {
        if self.tests.len().saturating_add(more) > self.limits.max_tests {
            return Err(ParseError::TooManyTests {
                limit: self.limits.max_tests,
                offset,
            });
        }
        Ok(())
    }

    /// Records a finished test of a subunit stream.
    pub(super) fn finished(
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

    pub(super) fn push(&mut self, test: TestResult, offset: usize) -> Result<(), ParseError> {
        self.check_room(1, offset)?;
        self.tests.push(test);
        Ok(())
    }

    pub(super) fn finish(self, format: Format) -> Result<TestRun, ParseError> {
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
pub(super) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Whether the byte at `at` starts a UTF-8 character, looking back no further than `from`: the
/// test python-subunit applies to bytes that are not subunit, where a `0xB3` in the middle of a
/// character is text, not a packet. An invalid sequence ends the character it interrupts.
pub(super) fn at_char_boundary(input: &[u8], from: usize, at: usize) -> bool {
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
