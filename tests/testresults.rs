//! The test-results parser against generated uploads: subunit v2 and v1 fixtures (successes,
//! failures, skips, class fixture failures, attachments, noise), both JSON formats, each parsed
//! to the expected view; then hostile uploads (truncated, bit-flipped, oversized, random) that
//! must give an error or a valid parse, never a panic, with the heap they cost measured.
//! Its own test binary, not a module of `tests/api`: the heap is measured by a counting global
//! allocator, which would slow every other test.

use annals::testresults::testing::{
    damaged_uploads, encode_packet, Packet, PacketStatus, V1Writer, V2Writer,
};
use annals::testresults::{
    detect, parse, Format, Limits, NonSubunit, Outcome, ParseError, ParsedResults, Status, Summary,
    TestResult, TestRun, UploadedResults, V1Problem, V2Problem,
};
use proptest::prelude::*;

#[path = "common/heap.rs"]
mod heap;

use heap::peak_heap;

#[global_allocator]
static ALLOCATOR: heap::CountingAllocator = heap::CountingAllocator;

// ---------------------------------------------------------------------------------------------
// Helpers.

const T0: u32 = 1_700_000_000;

fn test(id: &str, status: Status, outcome: Outcome, duration: Option<f64>) -> TestResult {
    TestResult {
        id: id.to_owned(),
        status,
        outcome,
        duration_seconds: duration,
    }
}

fn summary(pass: u64, fail: u64, fail_setup: u64, error: u64, skip: u64) -> Summary {
    Summary {
        pass,
        fail,
        fail_setup,
        error,
        skip,
        total: pass + fail + fail_setup + error + skip,
    }
}

fn parsed(input: &[u8]) -> TestRun {
    match parse(input, &Limits::default()) {
        Ok(run) => run,
        Err(error) => panic!("the upload should parse: {error}"),
    }
}

fn rejected(input: &[u8], limits: &Limits) -> ParseError {
    match parse(input, limits) {
        Ok(run) => panic!("the upload should be rejected, parsed {run:?}"),
        Err(error) => error,
    }
}

fn strict() -> Limits {
    Limits {
        non_subunit: NonSubunit::Reject,
        ..Limits::default()
    }
}

/// Every format an upload can come in.
const EVERY_FORMAT: [Format; 4] = [
    Format::SubunitV2,
    Format::SubunitV1,
    Format::ResultsJson,
    Format::ParsedResultsJson,
];

const TRACEBACK: &[u8] =
    b"Traceback (most recent call last):\n  File \"x.py\", line 1\nAssertionError: 1 != 2\n";

// ---------------------------------------------------------------------------------------------
// Subunit v2.

/// A run with every outcome: what tempest produces, plus the rarer statuses.
fn v2_run() -> Vec<u8> {
    let mut writer = V2Writer::new();
    writer
        .test(
            "tempest.api.compute.test_servers.ServersTest.test_create[id-5de47127-9977-400a-936f-abcfbec1218f,smoke]",
            PacketStatus::Success,
            (T0, 0),
            (T0 + 2, 500_000_000),
            &[],
        )
        .test(
            "tempest.api.compute.test_servers.ServersTest.test_delete",
            PacketStatus::Fail,
            (T0 + 3, 0),
            (T0 + 4, 250_000_000),
            &[("traceback", "text/x-traceback;charset=utf8", TRACEBACK)],
        )
        .test(
            "tempest.api.image.test_images.ImagesTest.test_upload",
            PacketStatus::Skip,
            (T0 + 5, 0),
            (T0 + 5, 0),
            &[("reason", "text/plain;charset=utf8", b"Glance v1 is disabled")],
        )
        .test(
            "setUpClass (tempest.api.network.test_ports.PortsTest)",
            PacketStatus::Fail,
            (T0 + 6, 0),
            (T0 + 7, 0),
            &[("traceback", "text/plain", b"NotFound: network")],
        )
        .test(
            "pkg.ExpectedTest.test_known_bug",
            PacketStatus::Xfail,
            (T0 + 8, 0),
            (T0 + 9, 0),
            &[],
        )
        .test(
            "pkg.ExpectedTest.test_fixed_bug",
            PacketStatus::Uxsuccess,
            (T0 + 9, 0),
            (T0 + 10, 0),
            &[],
        )
        // testr's pseudo-test for the runner's exit code: its failure is not a result.
        .test(
            "process-returncode",
            PacketStatus::Fail,
            (T0 + 10, 0),
            (T0 + 10, 0),
            &[],
        );
    writer.into_bytes()
}

fn v2_run_expected() -> Vec<TestResult> {
    vec![
        test(
            "tempest.api.compute.test_servers.ServersTest.test_create[id-5de47127-9977-400a-936f-abcfbec1218f,smoke]",
            Status::Pass,
            Outcome::Success,
            Some(2.5),
        ),
        test(
            "tempest.api.compute.test_servers.ServersTest.test_delete",
            Status::Fail,
            Outcome::Fail,
            Some(1.25),
        ),
        test(
            "tempest.api.image.test_images.ImagesTest.test_upload",
            Status::Skip,
            Outcome::Skip,
            Some(0.0),
        ),
        test(
            "setUpClass (tempest.api.network.test_ports.PortsTest)",
            Status::FailSetup,
            Outcome::Fail,
            Some(1.0),
        ),
        test(
            "pkg.ExpectedTest.test_known_bug",
            Status::Pass,
            Outcome::Xfail,
            Some(1.0),
        ),
        test(
            "pkg.ExpectedTest.test_fixed_bug",
            Status::Fail,
            Outcome::Uxsuccess,
            Some(1.0),
        ),
    ]
}

#[test]
fn v2_outcomes_give_the_2014_buckets_and_durations() {
    let input = v2_run();
    assert_eq!(detect(&input), Some(Format::SubunitV2));
    let run = parsed(&input);
    assert_eq!(run.format, Format::SubunitV2);
    assert_eq!(run.tests, v2_run_expected());
    assert_eq!(run.summary, summary(2, 2, 1, 0, 1));
    assert_eq!(run.duration_seconds, Some(10.0));
    assert_eq!(run.non_subunit_bytes, 0);
}

#[test]
fn v2_run_gives_the_2014_parsed_results() {
    let view = parsed(&v2_run()).to_parsed_results();
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "summary": {"PASS": 2, "FAIL": 2, "FAIL_SETUP": 1, "ERROR": 0, "SKIP": 1, "Total": 6},
            "data": {
                "pkg.ExpectedTest": [
                    ["test_known_bug", "PASS", 1.0],
                    ["test_fixed_bug", "FAIL", 1.0]
                ],
                "tempest.api.compute.test_servers.ServersTest": [
                    ["test_create[id-5de47127-9977-400a-936f-abcfbec1218f,smoke]", "PASS", 2.5],
                    ["test_delete", "FAIL", 1.25]
                ],
                "tempest.api.image.test_images.ImagesTest": [["test_upload", "SKIP", 0.0]],
                "tempest.api.network.test_ports.PortsTest": [["setUpClass", "FAIL_SETUP", 1.0]]
            }
        })
    );
}

#[test]
fn v2_passing_tests_are_what_refstack_client_uploads() {
    let passing = parsed(&v2_run()).passing_tests();
    let json = serde_json::to_value(&passing).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "name": "tempest.api.compute.test_servers.ServersTest.test_create",
            "uuid": "5de47127-9977-400a-936f-abcfbec1218f"
        }])
    );
}

#[test]
fn v2_attachments_tags_route_codes_and_global_packets_are_read() {
    let mut writer = V2Writer::new();
    // A packet about no test: a global attachment, with a timestamp.
    writer.packet(&Packet {
        file: Some(("stdout", b"collecting tests\n")),
        mime_type: Some("text/plain"),
        timestamp: Some((T0 - 1, 0)),
        ..Packet::default()
    });
    // The same test id on two workers (route codes) is two results.
    for worker in ["0", "1"] {
        writer.packet(&Packet {
            test_id: Some("pkg.T.test_twice"),
            status: PacketStatus::InProgress,
            timestamp: Some((T0, 0)),
            tags: &["worker-0", "smoke"],
            route_code: Some(worker),
            ..Packet::default()
        });
    }
    // An attachment split over two packets, the way testtools sends a large file.
    for piece in [&TRACEBACK[..20], &TRACEBACK[20..]] {
        writer.packet(&Packet {
            test_id: Some("pkg.T.test_twice"),
            file: Some(("traceback", piece)),
            route_code: Some("1"),
            ..Packet::default()
        });
    }
    writer.packet(&Packet {
        test_id: Some("pkg.T.test_twice"),
        status: PacketStatus::Fail,
        timestamp: Some((T0 + 3, 0)),
        route_code: Some("1"),
        eof: true,
        ..Packet::default()
    });
    writer.packet(&Packet {
        test_id: Some("pkg.T.test_twice"),
        status: PacketStatus::Success,
        timestamp: Some((T0 + 1, 0)),
        route_code: Some("0"),
        runnable: false,
        ..Packet::default()
    });
    let run = parsed(&writer.into_bytes());
    assert_eq!(
        run.tests,
        vec![
            test("pkg.T.test_twice", Status::Fail, Outcome::Fail, Some(3.0)),
            test(
                "pkg.T.test_twice",
                Status::Pass,
                Outcome::Success,
                Some(1.0)
            ),
        ]
    );
    assert_eq!(run.duration_seconds, Some(4.0));
}

#[test]
fn v2_noise_between_packets_is_skipped_and_counted() {
    let noise_1 = b"Running tests...\n";
    // "x\xC2\xB3" is "x³": its 0xB3 is inside a character, not a packet start.
    let noise_2 = "temperature 20 m³ \u{1F600}\n".as_bytes();
    let mut writer = V2Writer::new();
    writer.raw(noise_1);
    writer.test("a.T.test_one", PacketStatus::Success, (T0, 0), (T0, 1), &[]);
    writer.raw(noise_2);
    writer.test("a.T.test_two", PacketStatus::Skip, (T0, 2), (T0, 3), &[]);
    let input = writer.into_bytes();

    let run = parsed(&input);
    assert_eq!(run.format, Format::SubunitV2);
    assert_eq!(
        run.tests.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["a.T.test_one", "a.T.test_two"]
    );
    assert_eq!(
        run.non_subunit_bytes,
        (noise_1.len() + noise_2.len()) as u64
    );

    assert_eq!(
        rejected(&input, &strict()),
        ParseError::NonSubunit { offset: 0 }
    );
}

#[test]
fn v2_tests_left_open_are_incomplete_errors_and_listings_are_not_results() {
    let mut writer = V2Writer::new();
    writer.packet(&Packet {
        test_id: Some("a.T.test_listed"),
        status: PacketStatus::Exists,
        ..Packet::default()
    });
    writer.packet(&Packet {
        test_id: Some("a.T.test_hung"),
        status: PacketStatus::InProgress,
        timestamp: Some((T0, 0)),
        ..Packet::default()
    });
    writer.test(
        "a.T.test_done",
        PacketStatus::Success,
        (T0, 0),
        (T0 + 1, 0),
        &[],
    );
    let run = parsed(&writer.into_bytes());
    assert_eq!(
        run.tests,
        vec![
            test("a.T.test_done", Status::Pass, Outcome::Success, Some(1.0)),
            test("a.T.test_hung", Status::Error, Outcome::Incomplete, None),
        ]
    );

    let mut listing = V2Writer::new();
    listing.packet(&Packet {
        test_id: Some("a.T.test_listed"),
        status: PacketStatus::Exists,
        ..Packet::default()
    });
    assert_eq!(
        rejected(&listing.into_bytes(), &Limits::default()),
        ParseError::NoTests {
            format: Format::SubunitV2
        }
    );
}

/// A packet from its flags and fields, with a correct CRC and the length given (or right).
fn frame(flags: u16, fields: &[u8], length: Option<usize>) -> Vec<u8> {
    let length = length.unwrap_or(1 + 2 + 1 + fields.len() + 4);
    assert!(length < 64, "one-octet lengths only");
    let mut packet = vec![0xB3];
    packet.extend_from_slice(&flags.to_be_bytes());
    packet.push(length as u8);
    packet.extend_from_slice(fields);
    let crc = crc32fast::hash(&packet);
    packet.extend_from_slice(&crc.to_be_bytes());
    packet
}

#[test]
fn v2_bad_packets_are_named_with_their_offset() {
    let good = encode_packet(&Packet {
        test_id: Some("a.T.test"),
        status: PacketStatus::Success,
        ..Packet::default()
    });
    let at = good.len();
    let cases: Vec<(Vec<u8>, ParseError)> = vec![
        // After a good packet: a stream that starts with another version is not taken for v2.
        (
            [&good[..], &frame(0x3803, b"\x01a", None)[..]].concat(),
            ParseError::V2 {
                offset: at,
                problem: V2Problem::Version { version: 3 },
            },
        ),
        (
            frame(0x2803, b"\x05ab", None),
            ParseError::V2 {
                offset: 5,
                problem: V2Problem::FieldOverrun { field: "test id" },
            },
        ),
        (
            frame(0x2803, b"\x02\xFF\xFE", None),
            ParseError::V2 {
                offset: 5,
                problem: V2Problem::NotUtf8 { field: "test id" },
            },
        ),
        (
            frame(0x2803, b"\x02a\x00", None),
            ParseError::V2 {
                offset: 5,
                problem: V2Problem::Nul { field: "test id" },
            },
        ),
        (
            frame(0x2803, b"\x01aXY", None),
            ParseError::V2 {
                offset: 6,
                problem: V2Problem::TrailingBytes { count: 2 },
            },
        ),
        (
            frame(0x2203, b"\x00\x00\x00\x01\xFB\x9A\xCA\x00", None),
            ParseError::V2 {
                offset: 8,
                problem: V2Problem::Nanoseconds {
                    nanoseconds: 0x3B9A_CA00,
                },
            },
        ),
        (
            frame(0x2080, b"\x3F\x01a", None),
            ParseError::V2 {
                offset: 7,
                problem: V2Problem::FieldOverrun { field: "tags" },
            },
        ),
        (
            [&good[..], &frame(0x2803, b"\x01a", Some(6))[..]].concat(),
            ParseError::V2 {
                offset: at,
                problem: V2Problem::LengthTooSmall {
                    length: 6,
                    minimum: 8,
                },
            },
        ),
        (
            [&good[..], &[0xB3, 0x28, 0x03, 0xFF, 0xFF, 0xFF, 0xFF][..]].concat(),
            ParseError::V2 {
                offset: at + 3,
                problem: V2Problem::LengthTooLong,
            },
        ),
        (
            [&good[..], &good[..good.len() - 1]].concat(),
            ParseError::V2 {
                offset: at,
                problem: V2Problem::Truncated {
                    needed: good.len(),
                    available: good.len() - 1,
                },
            },
        ),
    ];
    for (input, expected) in cases {
        let error = rejected(&input, &Limits::default());
        assert_eq!(error, expected, "{input:02X?}");
        assert!(
            error
                .to_string()
                .ends_with(&format!("at byte {}", expected.offset().unwrap())),
            "{error}"
        );
    }

    let mut flipped = good.clone();
    flipped[6] ^= 0x01;
    let error = rejected(&flipped, &Limits::default());
    assert!(
        matches!(
            error,
            ParseError::V2 {
                offset: 0,
                problem: V2Problem::Crc { .. }
            }
        ),
        "{error}"
    );
    assert!(error
        .to_string()
        .starts_with("subunit v2: bad CRC32: computed 0x"));
}

#[test]
fn v2_largest_packets_parse_and_claims_beyond_the_upload_cost_nothing() {
    // A packet of almost 4 MiB: the largest the length can say.
    let content = vec![b'x'; 0x3F_FFFF - 64];
    let mut writer = V2Writer::new();
    writer.test(
        "a.T.test_big",
        PacketStatus::Fail,
        (T0, 0),
        (T0, 0),
        &[("log", "text/plain", &content)],
    );
    let input = writer.into_bytes();
    let (run, _) = peak_heap(|| parse(&input, &Limits::default()));
    assert_eq!(run.unwrap().summary.fail, 1);

    // A packet that claims 4 MiB and stops after a few bytes: an error, no allocation by claim.
    let claim = [0xB3, 0x28, 0x03, 0xBF, 0xFF, 0xFF, 1, b'a'];
    let (result, peak) = peak_heap(|| parse(&claim, &Limits::default()));
    assert!(matches!(
        result,
        Err(ParseError::V2 {
            problem: V2Problem::Truncated { .. },
            ..
        })
    ));
    assert!(peak < 4096, "{peak} bytes");
}

// ---------------------------------------------------------------------------------------------
// Subunit v1.

fn v1_run() -> Vec<u8> {
    let mut writer = V1Writer::new();
    writer
        .line("tags: worker-0")
        .time("2014-08-15 10:34:49.000000Z")
        .test("tempest.api.a.T.test_pass[id-0146f675-ffbd-4208-b3a4-60eb628dbc5e,gate]")
        .time("2014-08-15 10:34:51.500000Z")
        .outcome(
            "successful",
            "tempest.api.a.T.test_pass[id-0146f675-ffbd-4208-b3a4-60eb628dbc5e,gate]",
        )
        .test("tempest.api.a.T.test_fail")
        .line("some output of the test")
        .line("success: another.test")
        .time("2014-08-15 10:34:52Z")
        .outcome_bracketed(
            "failure",
            "tempest.api.a.T.test_fail",
            "Traceback:\n]\nfailure: tempest.api.a.T.test_fail\ntime: 1999-01-01 00:00:00Z\n",
        )
        .test("tempest.api.a.T.test_skip")
        .outcome_multipart(
            "skip",
            "tempest.api.a.T.test_skip",
            &[
                (
                    "text/plain;charset=utf8",
                    "reason",
                    b"no ]\nswift\r\n]\ntest: x\n",
                ),
                ("text/plain", "log", b""),
            ],
            5,
        )
        .time("2014-08-15 10:34:53Z")
        .test("setUpClass (tempest.api.b.U)")
        .time("2014-08-15 10:34:55Z")
        .outcome_bracketed("error", "setUpClass (tempest.api.b.U)", "Boom\n")
        .test("tempest.api.b.V.test_error")
        .outcome("error:", "tempest.api.b.V.test_error")
        .test("tempest.api.c.W.test_xfail")
        .outcome("xfail", "tempest.api.c.W.test_xfail")
        .test("tempest.api.c.W.test_uxsuccess")
        .outcome_multipart("uxsuccess", "tempest.api.c.W.test_uxsuccess", &[], 1)
        .line("progress: +3")
        .test("process-returncode")
        .outcome("failure", "process-returncode")
        .line("tags: -worker-0");
    writer.into_bytes()
}

#[test]
fn v1_outcomes_details_and_times_give_the_expected_view() {
    let input = v1_run();
    assert_eq!(detect(&input), Some(Format::SubunitV1));
    let run = parsed(&input);
    assert_eq!(
        run.tests,
        vec![
            test(
                "tempest.api.a.T.test_pass[id-0146f675-ffbd-4208-b3a4-60eb628dbc5e,gate]",
                Status::Pass,
                Outcome::Success,
                Some(2.5)
            ),
            test(
                "tempest.api.a.T.test_fail",
                Status::Fail,
                Outcome::Fail,
                Some(0.5)
            ),
            test(
                "tempest.api.a.T.test_skip",
                Status::Skip,
                Outcome::Skip,
                Some(0.0)
            ),
            test(
                "setUpClass (tempest.api.b.U)",
                Status::FailSetup,
                Outcome::Error,
                Some(2.0)
            ),
            test(
                "tempest.api.b.V.test_error",
                Status::Error,
                Outcome::Error,
                Some(0.0)
            ),
            test(
                "tempest.api.c.W.test_xfail",
                Status::Pass,
                Outcome::Xfail,
                Some(0.0)
            ),
            test(
                "tempest.api.c.W.test_uxsuccess",
                Status::Fail,
                Outcome::Uxsuccess,
                Some(0.0)
            ),
        ]
    );
    assert_eq!(run.summary, summary(2, 2, 1, 1, 1));
    assert_eq!(run.duration_seconds, Some(6.0));
    // The two stray lines inside the failing test.
    assert_eq!(
        run.non_subunit_bytes,
        ("some output of the test\n".len() + "success: another.test\n".len()) as u64
    );
    let view = run.to_parsed_results();
    assert_eq!(
        view.data["tempest.api.b.U"],
        vec![("setUpClass".to_owned(), Status::FailSetup, Some(2.0))]
    );
}

#[test]
fn v1_refstack_client_fixture_and_crlf_lines_parse() {
    // The shape of refstack-client's own v1 fixture: `successful:` with empty multipart
    // details, tags, and a last line without its newline.
    let mut writer = V1Writer::new();
    writer
        .time("2014-08-15 10:34:49.010492Z")
        .line("tags: worker-0")
        .test("tempest.passed.test")
        .time("2014-08-15 10:34:51.020584Z")
        .line("successful: tempest.passed.test [ multipart")
        .line("]")
        .raw(b"tags: worker-0");
    let run = parsed(&writer.into_bytes());
    assert_eq!(run.tests.len(), 1);
    assert_eq!(run.tests[0].status, Status::Pass);
    let duration = run.tests[0].duration_seconds.unwrap();
    assert!((duration - 2.010092).abs() < 1e-9, "{duration}");

    let crlf = b"test: a.T.t\r\nfailure: a.T.t [\r\nline\r\n]\r\n";
    let run = parsed(crlf);
    assert_eq!(
        run.tests,
        vec![test("a.T.t", Status::Fail, Outcome::Fail, None)]
    );
}

#[test]
fn v1_times_at_the_ends_of_the_range_give_a_duration() {
    let input = b"time: 1677-09-22 00:00:00Z\ntest: a\ntime: 2262-04-10 00:00:00Z\nsuccess: a\n";
    let run = parsed(input);
    let duration = run.tests[0].duration_seconds.unwrap();
    assert!((duration - 18_446_486_400.0).abs() < 1.0, "{duration}");
    assert!(matches!(
        rejected(b"time: 2263-01-01 00:00:00Z\n", &Limits::default()),
        ParseError::V1 {
            offset: 0,
            problem: V1Problem::BadTime { .. }
        }
    ));
}

#[test]
fn v1_streams_that_end_inside_a_test_give_incomplete_errors() {
    for (input, at) in [
        (&b"test: a.T.t\n"[..], "in the test"),
        (
            b"test: a.T.t\nfailure: a.T.t [\nTraceback",
            "in bracketed details",
        ),
        (
            b"test: a.T.t\nfailure: a.T.t [ multipart\nContent-Type: text/plain\nlog\nFF\r\nabc",
            "in a chunk",
        ),
    ] {
        let run = parsed(input);
        assert_eq!(
            run.tests,
            vec![test("a.T.t", Status::Error, Outcome::Incomplete, None)],
            "{at}"
        );
    }
}

#[test]
fn v1_malformed_directives_are_named_with_their_offset() {
    let cases: Vec<(&[u8], usize, V1Problem)> = vec![
        (
            b"test: a\ntime: yesterday\n",
            8,
            V1Problem::BadTime {
                text: "yesterday".into(),
            },
        ),
        (b"test: \xFF\xFE\n", 0, V1Problem::NameNotUtf8),
        (
            b"test: a\nfailure: a [ multipart\ntext/plain\n",
            31,
            V1Problem::BadContentType {
                line: "text/plain".into(),
            },
        ),
        (
            b"test: a\nfailure: a [ multipart\nContent-Type: text/plain\nlog\nxyz\r\n",
            60,
            V1Problem::BadChunkLength,
        ),
    ];
    for (input, offset, problem) in cases {
        let error = rejected(input, &Limits::default());
        assert_eq!(error, ParseError::V1 { offset, problem }, "{input:?}");
        assert!(error.to_string().ends_with(&format!("at byte {offset}")));
    }
}

#[test]
fn text_without_any_test_is_no_test_run() {
    for input in [
        &b"hello world\n"[..],
        b"[1, 2, 3]",
        b"tags: a\ntime: 2014-08-15 10:34:49Z\n",
    ] {
        assert_eq!(
            rejected(input, &Limits::default()),
            ParseError::NoTests {
                format: Format::SubunitV1
            }
        );
    }
    assert_eq!(rejected(b"", &Limits::default()), ParseError::Empty);
    assert_eq!(rejected(b" \n\t", &Limits::default()), ParseError::Empty);
    assert_eq!(detect(b"  "), None);
}

// ---------------------------------------------------------------------------------------------
// JSON.

#[test]
fn refstack_client_results_are_passing_tests() {
    let body = br#"{"cpid": "6b678f2c7fa94c7e942728b300451b56", "duration_seconds": 6123,
        "results": [
            {"name": "tempest.api.a.T.test_x", "uuid": "0146f675-ffbd-4208-b3a4-60eb628dbc5e"},
            {"name": "tempest.api.a.T.test_y", "extra": [1, {"ignored": true}]},
            "tempest.api.a.T.test_z"
        ]}"#;
    assert_eq!(detect(body), Some(Format::ResultsJson));
    let run = parsed(body);
    assert_eq!(run.format, Format::ResultsJson);
    assert_eq!(
        run.tests,
        [
            "tempest.api.a.T.test_x",
            "tempest.api.a.T.test_y",
            "tempest.api.a.T.test_z"
        ]
        .map(|id| test(id, Status::Pass, Outcome::Success, None))
    );
    assert_eq!(run.summary, summary(3, 0, 0, 0, 0));
    assert_eq!(run.duration_seconds, Some(6123.0));

    let results = UploadedResults::parse(body, &Limits::default()).unwrap();
    assert_eq!(results.cpid, "6b678f2c7fa94c7e942728b300451b56");
    assert_eq!(
        results.results[0].uuid.as_deref(),
        Some("0146f675-ffbd-4208-b3a4-60eb628dbc5e")
    );
    // The later API's schema names a `uuid_hex` format but validates without a format
    // checker: any string is taken as it is.
    let body =
        br#"{"cpid": "c", "duration_seconds": 1, "results": [{"name": "a", "uuid": "nope"}]}"#;
    let results = UploadedResults::parse(body, &Limits::default()).unwrap();
    assert_eq!(results.results[0].uuid.as_deref(), Some("nope"));
}

#[test]
fn refstack_client_results_are_checked_like_the_later_api() {
    let cases: [(&[u8], &str); 8] = [
        (
            br#"{"cpid": "c", "duration_seconds": 1, "results": []}"#,
            "Uploaded results must contain at least one passing test.",
        ),
        (
            br#"{"cpid": "c", "duration_seconds": 1, "results": [{"name": "a"}], "x": 1}"#,
            "unknown key `x`",
        ),
        (
            br#"{"cpid": "c", "results": [{"name": "a"}]}"#,
            "missing field `duration_seconds`",
        ),
        (
            br#"{"cpid": "c", "duration_seconds": 1.5, "results": [{"name": "a"}]}"#,
            "invalid type: floating point `1.5`",
        ),
        (
            br#"{"cpid": "c", "duration_seconds": 1, "results": [{"uuid": null}]}"#,
            "missing field `name`",
        ),
        (
            br#"{"cpid": "c", "duration_seconds": 1, "results": [{"name": "a", "uuid": 7}]}"#,
            "invalid type: integer `7`, expected a string",
        ),
        (
            br#"{"cpid": "c", "cpid": "d", "duration_seconds": 1, "results": [{"name": "a"}]}"#,
            "duplicate key `cpid`",
        ),
        (
            br#"{"cpid": "c", "duration_seconds": 1, "results": [{"name": "a"}]} trailing"#,
            "trailing characters",
        ),
    ];
    for (body, message) in cases {
        let error = UploadedResults::parse(body, &Limits::default()).unwrap_err();
        let ParseError::Json {
            offset,
            message: got,
        } = &error
        else {
            panic!("{error:?}");
        };
        assert!(got.starts_with(message), "{got} / {message}");
        assert!(*offset <= body.len());
        assert_eq!(parse(body, &Limits::default()).unwrap_err(), error);
    }
}

#[test]
fn parsed_results_read_back_to_the_same_view() {
    let run = parsed(&v2_run());
    let json = serde_json::to_vec_pretty(&run.to_parsed_results()).unwrap();
    assert_eq!(detect(&json), Some(Format::ParsedResultsJson));
    let again = parsed(&json);
    assert_eq!(again.format, Format::ParsedResultsJson);
    assert_eq!(again.summary, run.summary);
    assert_eq!(again.to_parsed_results(), run.to_parsed_results());
    // A FAIL_SETUP entry keeps its bucket; the outcome is all a JSON file can say.
    let setup = again
        .tests
        .iter()
        .find(|t| t.id == "tempest.api.network.test_ports.PortsTest.setUpClass")
        .unwrap();
    assert_eq!(
        (setup.status, setup.outcome),
        (Status::FailSetup, Outcome::Fail)
    );
}

#[test]
fn parsed_results_must_agree_with_their_summary() {
    let body =
        br#"{"summary": {"PASS": 2, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": 2},
                    "data": {"a.T": [["test_x", "PASS", 0.5]]}}"#;
    let error = rejected(body, &Limits::default());
    assert!(
        error
            .to_string()
            .starts_with("JSON results: `summary` does not match `data`, which holds {\"PASS\":1"),
        "{error}"
    );
    let bad_status =
        br#"{"summary": {"PASS": 1, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": 1},
                          "data": {"a.T": [["test_x", "GREAT", 0.5]]}}"#;
    let error = rejected(bad_status, &Limits::default());
    assert!(
        error.to_string().contains("unknown variant `GREAT`"),
        "{error}"
    );
    let mixed = br#"{"cpid": "c", "data": {}}"#;
    assert!(rejected(mixed, &Limits::default())
        .to_string()
        .contains("mixes the keys"));
}

// ---------------------------------------------------------------------------------------------
// Limits and memory.

#[test]
fn oversized_uploads_are_refused_before_parsing() {
    let limits = Limits {
        max_input_bytes: 100,
        ..Limits::default()
    };
    let input = vec![b' '; 101];
    assert_eq!(
        rejected(&input, &limits),
        ParseError::TooLarge {
            size: 101,
            limit: 100
        }
    );
    assert!(matches!(
        UploadedResults::parse(&input, &limits),
        Err(ParseError::TooLarge { .. })
    ));
}

/// Uploads built to cost as much memory per byte as each format allows: many tests with tiny
/// ids, never finished (v2 keeps them open), or as JSON results.
fn many_tests(format: Format, count: usize) -> Vec<u8> {
    match format {
        Format::SubunitV2 => {
            let mut writer = V2Writer::new();
            for n in 0..count {
                writer.packet(&Packet {
                    test_id: Some(&format!("{n:x}")),
                    status: PacketStatus::InProgress,
                    runnable: false,
                    ..Packet::default()
                });
            }
            writer.into_bytes()
        }
        Format::SubunitV1 => (0..count)
            .flat_map(|n| format!("test: {n:x}\nerror: {n:x}\n").into_bytes())
            .collect(),
        Format::ResultsJson => {
            let names: Vec<String> = (0..count).map(|n| format!("{n:x}")).collect();
            serde_json::to_vec(&serde_json::json!({
                "cpid": "c", "duration_seconds": 1, "results": names
            }))
            .unwrap()
        }
        Format::ParsedResultsJson => {
            let entries: Vec<_> = (0..count)
                .map(|n| serde_json::json!([format!("{n:x}"), "PASS", null]))
                .collect();
            let total = count as u64;
            serde_json::to_vec(&serde_json::json!({
                "summary": {"PASS": total, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": total},
                "data": {"": entries}
            }))
            .unwrap()
        }
    }
}

#[test]
fn the_test_limit_is_exact_in_every_format() {
    let limits = Limits {
        max_tests: 3,
        ..Limits::default()
    };
    for format in EVERY_FORMAT {
        let run = parse(&many_tests(format, 3), &limits);
        assert_eq!(run.map(|run| run.tests.len()), Ok(3), "{format}");
        let error = rejected(&many_tests(format, 4), &limits);
        assert!(
            matches!(error, ParseError::TooManyTests { limit: 3, .. }),
            "{format}: {error:?}"
        );
        assert!(error.to_string().starts_with("more than 3 tests, at byte "));
    }
}

#[test]
fn the_test_limit_bounds_every_format_and_the_heap() {
    let limits = Limits {
        max_tests: 2_000,
        ..Limits::default()
    };
    for format in EVERY_FORMAT {
        let fits = many_tests(format, 1_000);
        let (run, peak) = peak_heap(|| parse(&fits, &limits));
        assert_eq!(run.unwrap().tests.len(), 1_000, "{format}");
        // The allocation per test: its id, its result, and (v2) its open entry, with the
        // doubling of their containers.
        assert!(peak < 1_000 * 512 + 64 * 1024, "{format}: {peak} bytes");

        let too_many = many_tests(format, 200_000);
        let (result, peak) = peak_heap(|| parse(&too_many, &limits));
        assert!(
            matches!(result, Err(ParseError::TooManyTests { limit: 2_000, .. })),
            "{format}: {result:?}"
        );
        assert!(peak < 2_000 * 512 + 64 * 1024, "{format}: {peak} bytes");
    }
}

#[test]
fn the_damaged_corpus_is_rejected_whole() {
    let corpus = damaged_uploads(1024 * 1024);
    assert!(corpus.len() > 100, "{}", corpus.len());
    for limits in [
        Limits {
            max_input_bytes: 1024 * 1024,
            ..Limits::default()
        },
        Limits {
            max_input_bytes: 1024 * 1024,
            ..strict()
        },
    ] {
        for upload in &corpus {
            let (result, peak) = peak_heap(|| parse(&upload.bytes, &limits));
            let error = match result {
                Err(error) => error,
                Ok(run) => panic!("{}: parsed {run:?}", upload.what),
            };
            assert!(!error.to_string().is_empty());
            let bound = 4 * upload.bytes.len().min(limits.max_input_bytes) + 64 * 1024;
            assert!(peak < bound, "{}: {peak} bytes", upload.what);
        }
    }
    // The same corpus on every call: a face's tests can name what failed.
    let again = damaged_uploads(1024 * 1024);
    assert!(corpus.iter().zip(&again).all(|(a, b)| a.bytes == b.bytes));
}

// ---------------------------------------------------------------------------------------------
// Properties: generated runs parse to what was written; damaged ones never panic.

#[derive(Debug, Clone)]
struct GeneratedTest {
    id: String,
    status: PacketStatus,
    start: (u32, u32),
    nanoseconds: u64,
    attachment: Option<Vec<u8>>,
}

fn generated_test() -> impl Strategy<Value = GeneratedTest> {
    let id = prop_oneof![
        "[a-z]{1,6}(\\.[A-Za-z_]{1,8}){1,3}(\\[id-[0-9a-f]{4},smoke\\])?",
        "[a-z]{1,6}\\.[A-Z][a-z]{1,5}".prop_map(|class| format!("setUpClass ({class})")),
        "\\PC{1,12}",
    ];
    let status = prop::sample::select(vec![
        PacketStatus::Success,
        PacketStatus::Fail,
        PacketStatus::Skip,
        PacketStatus::Xfail,
        PacketStatus::Uxsuccess,
    ]);
    (
        id,
        status,
        (0u32..2_000_000_000, 0u32..1_000_000_000),
        0u64..10_000_000_000,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..300)),
    )
        .prop_map(
            |(id, status, start, nanoseconds, attachment)| GeneratedTest {
                id,
                status,
                start,
                nanoseconds,
                attachment,
            },
        )
}

fn outcome_of(status: PacketStatus) -> Outcome {
    match status {
        PacketStatus::Success => Outcome::Success,
        PacketStatus::Fail => Outcome::Fail,
        PacketStatus::Skip => Outcome::Skip,
        PacketStatus::Xfail => Outcome::Xfail,
        PacketStatus::Uxsuccess => Outcome::Uxsuccess,
        other => unreachable!("{other:?}"),
    }
}

/// Writes the tests as a v2 stream; returns it with where each packet ends.
fn write_v2(tests: &[GeneratedTest]) -> (Vec<u8>, Vec<usize>) {
    let mut writer = V2Writer::new();
    let mut ends = Vec::new();
    for test in tests {
        let stop_total = u64::from(test.start.1) + test.nanoseconds;
        let stop = (
            test.start.0 + (stop_total / 1_000_000_000) as u32,
            (stop_total % 1_000_000_000) as u32,
        );
        let attachments: Vec<(&str, &str, &[u8])> = test
            .attachment
            .as_deref()
            .map(|bytes| ("log", "application/octet-stream", bytes))
            .into_iter()
            .collect();
        for packet in [
            Packet {
                test_id: Some(&test.id),
                status: PacketStatus::InProgress,
                timestamp: Some(test.start),
                ..Packet::default()
            },
            Packet {
                test_id: Some(&test.id),
                file: attachments.first().map(|(name, _, bytes)| (*name, *bytes)),
                ..Packet::default()
            },
            Packet {
                test_id: Some(&test.id),
                status: test.status,
                timestamp: Some(stop),
                ..Packet::default()
            },
        ] {
            writer.packet(&packet);
            ends.push(writer.len());
        }
    }
    (writer.into_bytes(), ends)
}

fn expected_v2(tests: &[GeneratedTest]) -> Vec<TestResult> {
    tests
        .iter()
        .enumerate()
        .filter(|(_, t)| !(t.id == "process-returncode" && t.status == PacketStatus::Fail))
        .map(|(_, t)| {
            let outcome = outcome_of(t.status);
            TestResult {
                id: t.id.clone(),
                status: Status::of(outcome, &t.id),
                outcome,
                duration_seconds: Some(t.nanoseconds as f64 / 1e9),
            }
        })
        .collect()
}

/// Ids unique within a run, so that no test is reopened by another's packets.
fn unique(mut tests: Vec<GeneratedTest>) -> Vec<GeneratedTest> {
    for (n, test) in tests.iter_mut().enumerate() {
        test.id = format!("{}{n}", test.id);
    }
    tests
}

/// The parse must end in a value or an error, and never cost more than a bounded heap.
fn parse_bounded(input: &[u8], limits: &Limits) -> Result<TestRun, ParseError> {
    let (result, peak) = peak_heap(|| parse(input, limits));
    let bound = 4 * input.len() + 512 * limits.max_tests.min(input.len()) + 64 * 1024;
    assert!(
        peak <= bound,
        "{peak} bytes for a {} byte upload",
        input.len()
    );
    result
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_v2_runs_parse_to_what_was_written(
        tests in prop::collection::vec(generated_test(), 1..30).prop_map(unique),
    ) {
        let (input, _) = write_v2(&tests);
        let run = parse_bounded(&input, &Limits::default()).unwrap();
        let expected = expected_v2(&tests);
        prop_assert_eq!(run.tests.len(), expected.len());
        for (got, want) in run.tests.iter().zip(&expected) {
            prop_assert_eq!(&got.id, &want.id);
            prop_assert_eq!(got.status, want.status);
            prop_assert_eq!(got.outcome, want.outcome);
            let (got, want) = (got.duration_seconds.unwrap(), want.duration_seconds.unwrap());
            prop_assert!((got - want).abs() < 1e-6, "{} != {}", got, want);
        }
        prop_assert_eq!(run.summary, Summary::of(&expected));
    }

    #[test]
    fn v2_runs_cut_inside_a_packet_are_errors(
        tests in prop::collection::vec(generated_test(), 1..10).prop_map(unique),
        cut in any::<prop::sample::Index>(),
    ) {
        let (input, ends) = write_v2(&tests);
        let cut = cut.index(input.len());
        let result = parse_bounded(&input[..cut], &Limits::default());
        if ends.contains(&cut) {
            prop_assert!(
                result.is_ok() || result == Err(ParseError::NoTests { format: Format::SubunitV2 }),
                "{:?}", result
            );
        } else if cut > 0 {
            prop_assert!(
                matches!(result, Err(ParseError::V2 { problem: V2Problem::Truncated { .. }, .. })),
                "{:?}", result
            );
        }
    }

    #[test]
    fn v2_runs_with_a_bit_flipped_are_errors_when_noise_is_rejected(
        tests in prop::collection::vec(generated_test(), 1..10).prop_map(unique),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let (mut input, _) = write_v2(&tests);
        let at = at.index(input.len());
        input[at] ^= 1 << bit;
        // Every byte of a packet but its signature is under its CRC; a damaged signature
        // turns the packet into bytes outside the protocol.
        prop_assert!(parse_bounded(&input, &strict()).is_err());
        // When such bytes are skipped instead, the run may lose the damaged packet's test.
        let _ = parse_bounded(&input, &Limits::default());
    }

    #[test]
    fn damaged_v1_and_json_uploads_never_panic(
        tests in prop::collection::vec(generated_test(), 1..10).prop_map(unique),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let run = parse(&write_v2(&tests).0, &Limits::default()).unwrap();
        let mut v1 = V1Writer::new();
        for test in &run.tests {
            v1.time("2014-08-15 10:34:49Z").test(&test.id).outcome_multipart(
                "failure",
                &test.id,
                &[("text/plain", "log", test.id.as_bytes())],
                3,
            );
        }
        let json = serde_json::to_vec(&run.to_parsed_results()).unwrap();
        for upload in [v1.into_bytes(), json] {
            let mut damaged = upload.clone();
            for (at, byte) in &damage {
                let at = at.index(damaged.len());
                damaged[at] = *byte;
            }
            let _ = parse_bounded(&damaged, &Limits::default());
            let _ = parse_bounded(&damaged, &strict());
            let _ = parse_bounded(&upload[..cut.index(upload.len())], &Limits::default());
        }
    }

    #[test]
    fn json_cut_short_is_an_error(
        tests in prop::collection::vec(generated_test(), 1..10).prop_map(unique),
        cut in any::<prop::sample::Index>(),
    ) {
        let run = parse(&write_v2(&tests).0, &Limits::default()).unwrap();
        let json = serde_json::to_vec(&run.to_parsed_results()).unwrap();
        let cut = cut.index(json.len());
        prop_assert!(parse_bounded(&json[..cut], &Limits::default()).is_err());
    }

    #[test]
    fn random_bytes_never_panic(
        prefix in prop::sample::select(vec![&b""[..], b"\xB3\x2B", b"\xB3\x28\x03", b"test: a\n", b"{\"data\":"]),
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        let input = [prefix, &bytes[..]].concat();
        let _ = parse_bounded(&input, &Limits::default());
        let _ = parse_bounded(&input, &strict());
        let _ = detect(&input);
    }
}

#[test]
fn parsed_results_serialize_with_the_2014_keys() {
    let view = ParsedResults {
        summary: summary(1, 0, 0, 0, 0),
        data: [(
            "a.T".to_owned(),
            vec![("test_x".to_owned(), Status::Pass, None)],
        )]
        .into(),
    };
    assert_eq!(
        serde_json::to_string(&view).unwrap(),
        r#"{"summary":{"PASS":1,"FAIL":0,"FAIL_SETUP":0,"ERROR":0,"SKIP":0,"Total":1},"data":{"a.T":[["test_x","PASS",null]]}}"#
    );
}
