//! The heap a test-results parse holds, measured: for every upload format, for the detection,
//! and for hostile shapes (long class names with many tests, many tiny tests, long names, deep
//! nesting), a parse ends in a value or an error and never holds more than the documented bound,
//! four times the upload plus [`PER_TEST`] bytes per test the limits allow, plus a little.

use annals::testresults::testing::{Packet, PacketStatus, V1Writer, V2Writer};
use annals::testresults::{
    detect, parse, Format, Limits, ParseError, TestRun, UploadedResults, MAX_CLASS_NAME_BYTES,
};

#[path = "common/heap.rs"]
mod heap;

use heap::peak_heap;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

// ---------------------------------------------------------------------------------------------
// The bound.

/// What one test may cost beyond the bytes it brought, as docs/ARCHITECTURE.md states it: its
/// result and its place in the containers (with their doubling), and, in a JSON parsed-results
/// upload, its class name spelled out again in its id (at most [`MAX_CLASS_NAME_BYTES`]).
const PER_TEST: usize = 1536;

/// The fixed part: buffers, error messages.
const SLACK: usize = 64 * 1024;

/// The fewest bytes in which any format spells one test (results JSON's `"a",`).
const MIN_TEST_BYTES: usize = 4;

/// The most heap a parse of `input` that read `tests` tests may hold.
fn bound(input: &[u8], tests: usize) -> usize {
    4 * input.len() + PER_TEST * tests + SLACK
}

/// The most tests `input` can spell within `limits`: what a parse refused part way may have
/// read.
fn most_tests(input: &[u8], limits: &Limits) -> usize {
    limits.max_tests.min(input.len() / MIN_TEST_BYTES)
}

/// Parses `input` (and detects its format), asserting that neither holds more than its bound.
/// The detection keeps no test, only what serde_json needs to skip values (a byte per open
/// bracket), so its bound has no part per test.
fn parse_bounded(what: &str, input: &[u8], limits: &Limits) -> Result<TestRun, ParseError> {
    let (format, peak) = peak_heap(|| detect(input));
    assert!(
        peak <= 4 * input.len() + SLACK,
        "{what}: detecting {format:?} held {peak} bytes for a {} byte upload",
        input.len()
    );
    let (result, peak) = peak_heap(|| parse(input, limits));
    // A parse that ended in a run is held to the tests it read; one refused, to the most the
    // upload could spell.
    let tests = match &result {
        Ok(run) => run.tests.len(),
        Err(_) => most_tests(input, limits),
    };
    let limit = bound(input, tests);
    assert!(
        peak <= limit,
        "{what}: {peak} bytes for a {} byte upload (bound {limit}): {:?}",
        input.len(),
        result.as_ref().map(|run| run.tests.len())
    );
    result
}

fn defaults() -> Limits {
    Limits::default()
}

// ---------------------------------------------------------------------------------------------
// Uploads.

fn v2(ids: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut writer = V2Writer::new();
    for id in ids {
        writer.test(&id, PacketStatus::Success, (1, 0), (2, 0), &[]);
    }
    writer.into_bytes()
}

fn v1(ids: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut writer = V1Writer::new();
    for id in ids {
        writer.test(&id).outcome("success", &id);
    }
    writer.into_bytes()
}

fn results_json(ids: impl IntoIterator<Item = String>) -> Vec<u8> {
    let names: Vec<String> = ids.into_iter().collect();
    serde_json::to_vec(&serde_json::json!({
        "cpid": "c", "duration_seconds": 1, "results": names
    }))
    .unwrap()
}

/// A parsed-results upload with `classes` classes named `class` plus a number, each holding
/// `per_class` tests with short names, and a summary that matches.
fn parsed_json(class: &str, classes: usize, per_class: usize) -> Vec<u8> {
    let mut data = serde_json::Map::new();
    for c in 0..classes {
        let entries: Vec<_> = (0..per_class)
            .map(|n| serde_json::json!([format!("t{n:x}"), "PASS", null]))
            .collect();
        let name = if classes == 1 {
            class.to_owned()
        } else {
            format!("{class}{c:x}")
        };
        data.insert(name, entries.into());
    }
    let total = (classes * per_class) as u64;
    serde_json::to_vec(&serde_json::json!({
        "summary": {"PASS": total, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": total},
        "data": data
    }))
    .unwrap()
}

fn short_ids(count: usize) -> impl Iterator<Item = String> {
    (0..count).map(|n| format!("{n:x}"))
}

fn every_format(count: usize, ids: impl Fn(usize) -> Vec<String>) -> Vec<(Format, Vec<u8>)> {
    vec![
        (Format::SubunitV2, v2(ids(count))),
        (Format::SubunitV1, v1(ids(count))),
        (Format::ResultsJson, results_json(ids(count))),
        (
            Format::ParsedResultsJson,
            parsed_json("", 1, count), // short names under the empty class
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn many_tiny_tests_up_to_the_default_limit_stay_bounded_in_every_format() {
    let limits = defaults();
    for (format, input) in every_format(limits.max_tests, |n| short_ids(n).collect()) {
        assert_eq!(detect(&input), Some(format));
        let run = parse_bounded(&format!("{format}"), &input, &limits).unwrap();
        assert_eq!(run.tests.len(), limits.max_tests, "{format}");
    }
}

#[test]
fn one_test_over_the_default_limit_is_refused_within_the_bound_in_every_format() {
    let limits = defaults();
    for (format, input) in every_format(limits.max_tests + 1, |n| short_ids(n).collect()) {
        let result = parse_bounded(&format!("{format}"), &input, &limits);
        assert!(
            matches!(result, Err(ParseError::TooManyTests { limit: 100_000, .. })),
            "{format}: {:?}",
            result.map(|run| run.tests.len())
        );
    }
}

#[test]
fn long_test_names_cost_what_they_brought() {
    let limits = defaults();
    let long = "n".repeat(2 * 1024 * 1024);
    for (format, input) in every_format(1, |_| vec![long.clone()]) {
        let what = format!("{format}, one 2 MiB name");
        let run = parse_bounded(&what, &input, &limits).unwrap();
        assert_eq!(run.tests.len(), 1, "{what}");
    }
    let input = parsed_json(&"c".repeat(MAX_CLASS_NAME_BYTES), 1, 1);
    // A parsed-results test with a long name: the name is one entry of the class.
    let mut value: serde_json::Value = serde_json::from_slice(&input).unwrap();
    value["data"]["c".repeat(MAX_CLASS_NAME_BYTES)][0][0] = long.clone().into();
    let input = serde_json::to_vec(&value).unwrap();
    let run = parse_bounded("a long name in a long class", &input, &limits).unwrap();
    assert_eq!(run.tests[0].id.len(), MAX_CLASS_NAME_BYTES + 1 + long.len());
}

#[test]
fn uploads_of_the_default_maximum_size_stay_bounded_in_every_format() {
    let limits = defaults();
    // Names of a 64th of the limit each, as many as fit: subunit spells each name twice (when
    // its test starts and when it ends), the JSON formats once.
    let name = "n".repeat(limits.max_input_bytes / 64);
    let names = |count: usize| vec![name.clone(); count];
    let mut parsed: serde_json::Value = serde_json::from_slice(&parsed_json("c", 1, 63)).unwrap();
    for entry in parsed["data"]["c"].as_array_mut().unwrap() {
        entry[0] = name.clone().into();
    }
    let inputs = [
        (Format::SubunitV2, 31, v2(names(31))),
        (Format::SubunitV1, 31, v1(names(31))),
        (Format::ResultsJson, 63, results_json(names(63))),
        (
            Format::ParsedResultsJson,
            63,
            serde_json::to_vec(&parsed).unwrap(),
        ),
    ];
    for (format, tests, input) in inputs {
        let what = format!("{format}, {} bytes", input.len());
        assert!(input.len() <= limits.max_input_bytes, "{what}");
        assert!(input.len() > limits.max_input_bytes / 64 * 61, "{what}");
        assert_eq!(detect(&input), Some(format), "{what}");
        let run = parse_bounded(&what, &input, &limits).unwrap();
        assert_eq!(run.tests.len(), tests, "{what}");
    }
}

#[test]
fn a_class_at_the_name_limit_with_many_tests_stays_bounded() {
    let limits = defaults();
    let class = "A".repeat(MAX_CLASS_NAME_BYTES);
    let input = parsed_json(&class, 1, 20_000);
    let run = parse_bounded("one long class", &input, &limits).unwrap();
    assert_eq!(run.tests.len(), 20_000);
    assert_eq!(run.tests[0].id, format!("{class}.t0"));
    // Many classes, each at the limit.
    let input = parsed_json(&class[3..], 4_000, 3);
    let run = parse_bounded("many long classes", &input, &limits).unwrap();
    assert_eq!(run.tests.len(), 12_000);
}

#[test]
fn a_class_name_past_the_limit_is_refused_before_its_tests_are_read() {
    let limits = defaults();
    // The shape that once asked for gigabytes: a 100,000-byte class of 20,000 tests (460 KB), and
    // a 1 MiB class of 100,000 tests (about 2.7 MB), each with a summary that matches.
    for (length, tests) in [
        (MAX_CLASS_NAME_BYTES + 1, 10),
        (100_000, 20_000),
        (1024 * 1024, 100_000),
    ] {
        let input = parsed_json(&"A".repeat(length), 1, tests);
        let what = format!("a {length}-byte class of {tests} tests");
        let error = parse_bounded(&what, &input, &limits).unwrap_err();
        let ParseError::Json { offset, message } = &error else {
            panic!("{what}: {error:?}");
        };
        assert!(
            message.ends_with(&format!(
                "is {length} bytes, more than the limit of {MAX_CLASS_NAME_BYTES} bytes"
            )),
            "{what}: {message}"
        );
        // Where the class name ends, before any of its tests.
        assert!(*offset <= length + 200, "{what}: at byte {offset}");
    }
    // The name is measured in bytes, not characters.
    let input = parsed_json(&"é".repeat(MAX_CLASS_NAME_BYTES / 2 + 1), 1, 1);
    assert!(parse_bounded("multibyte", &input, &limits).is_err());
    let input = parsed_json(&"é".repeat(MAX_CLASS_NAME_BYTES / 2), 1, 1);
    assert!(parse_bounded("multibyte at the limit", &input, &limits).is_ok());
}

#[test]
fn many_empty_classes_stay_bounded() {
    let limits = defaults();
    let input = parsed_json("k", limits.max_tests, 0);
    let error = parse_bounded("empty classes", &input, &limits).unwrap_err();
    // No test at all: the summary of zero tests matches, and the run is empty.
    assert!(
        matches!(
            error,
            ParseError::NoTests {
                format: Format::ParsedResultsJson
            }
        ),
        "{error:?}"
    );
}

#[test]
fn deep_nesting_is_an_error_within_the_bound() {
    let limits = defaults();
    let depth = 1024 * 1024;
    let nested = |open: &str, close: &str| -> String {
        format!("{}{}", open.repeat(depth), close.repeat(depth))
    };
    let uploads = [
        ("bare arrays", nested("[", "]")),
        (
            "bare objects",
            format!("{{\"a\":{}}}", nested("{\"a\":", "}")),
        ),
        (
            "in a parsed-results entry",
            format!(
                "{{\"summary\":{{}},\"data\":{{\"c\":[{}]}}}}",
                nested("[", "]")
            ),
        ),
        (
            "in an unknown key",
            format!("{{\"x\":{}}}", nested("{\"y\":", "}")),
        ),
    ];
    for (what, input) in uploads {
        assert!(
            parse_bounded(what, input.as_bytes(), &limits).is_err(),
            "{what}"
        );
    }
    // A key a result may carry and the parser ignores is skipped without recursion, at any depth.
    let input = format!(
        "{{\"cpid\":\"c\",\"duration_seconds\":1,\"results\":[{{\"name\":\"n\",\"x\":{}}}]}}",
        nested("[", "]")
    );
    parse_bounded("in a result's unknown key", input.as_bytes(), &limits).unwrap();
    // v1 details do not nest: brackets are text, kept with the outcome they detail.
    let input = format!("test: a\nfailure: a [\n{}]\n", "[\n".repeat(depth));
    parse_bounded("v1 brackets", input.as_bytes(), &limits).unwrap();
}

#[test]
fn v2_packets_that_open_tests_without_ending_them_stay_bounded() {
    let limits = defaults();
    let mut writer = V2Writer::new();
    for n in 0..limits.max_tests {
        writer.packet(&Packet {
            test_id: Some(&format!("{n:x}")),
            status: PacketStatus::InProgress,
            ..Packet::default()
        });
    }
    let input = writer.into_bytes();
    let run = parse_bounded("open tests", &input, &limits).unwrap();
    assert_eq!(run.tests.len(), limits.max_tests);
}

#[test]
fn results_bodies_stay_bounded() {
    let limits = defaults();
    let body = results_json(short_ids(limits.max_tests));
    let (result, peak) = peak_heap(|| UploadedResults::parse(&body, &limits));
    assert_eq!(result.unwrap().results.len(), limits.max_tests);
    assert!(peak <= bound(&body, limits.max_tests), "{peak} bytes");
    // Uuids and ignored keys beside each name.
    let entries: Vec<_> = (0..20_000)
        .map(|n| serde_json::json!({"name": format!("{n:x}"), "uuid": "u".repeat(64), "x": [[1]]}))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "cpid": "c", "duration_seconds": 1, "results": entries
    }))
    .unwrap();
    let (result, peak) = peak_heap(|| UploadedResults::parse(&body, &limits));
    assert_eq!(result.unwrap().results.len(), 20_000);
    assert!(peak <= bound(&body, 20_000), "{peak} bytes");
}
