//! Test-results parsing benchmark: how fast `testresults::parse` reads a large generated subunit
//! v2 stream (MB/s and tests/s), with the same run as subunit v1 and as refstack-client JSON
//! side by side, and a v2 stream made mostly of attachments.
//!
//! Run with `cargo bench --bench testresults`. Results go to stdout as a Markdown table; each
//! timed run goes to stderr.
//!
//! Environment variables:
//! - `ANNALS_BENCH_TESTS`: tests in the tempest-like run (default 100000).
//! - `ANNALS_BENCH_RUNS`: timed parses per upload, after one untimed (default 5); the figure is
//!   their median.

#[path = "support/env.rs"]
mod env;

use std::hint::black_box;
use std::time::{Duration, Instant};

use env::env_or;

use annals::testresults::testing::{Packet, PacketStatus, V1Writer, V2Writer};
use annals::testresults::{parse, Format, Limits};

/// A tempest-like test id of about 110 bytes.
fn test_id(n: usize) -> String {
    format!(
        "tempest.api.compute.servers.test_server_actions.ServerActionsTestJSON.test_action_{n:06}\
         [id-{n:08x}-9977-400a-936f-abcfbec1218f,smoke]"
    )
}

/// What happens to test `n`: 85% pass, 10% fail with a 2 KiB traceback, 5% skip with a reason.
fn status_of(n: usize) -> PacketStatus {
    match n % 20 {
        0 | 1 => PacketStatus::Fail,
        2 => PacketStatus::Skip,
        _ => PacketStatus::Success,
    }
}

/// The run as stestr writes it: per test an `inprogress` packet and a final one, both with a
/// timestamp, worker tags and a route code, and the failure's traceback or the skip's reason
/// as an attachment in between.
fn tempest_v2(tests: usize) -> Vec<u8> {
    let traceback = "Traceback (most recent call last):\n  File \"tempest/x.py\", line 1\n"
        .repeat(32)
        .into_bytes();
    let mut writer = V2Writer::new();
    let t0 = 1_700_000_000;
    for n in 0..tests {
        let id = test_id(n);
        let worker = format!("{}", n % 8);
        let tags = [format!("worker-{worker}")];
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let start = (t0 + n as u32, 0);
        let stop = (t0 + n as u32, 500_000_000);
        writer.packet(&Packet {
            test_id: Some(&id),
            status: PacketStatus::InProgress,
            timestamp: Some(start),
            tags: &tags,
            route_code: Some(&worker),
            ..Packet::default()
        });
        let status = status_of(n);
        let attachment: Option<(&str, &[u8])> = match status {
            PacketStatus::Fail => Some(("traceback", &traceback)),
            PacketStatus::Skip => Some(("reason", b"Feature not enabled in this cloud")),
            _ => None,
        };
        if let Some((name, content)) = attachment {
            writer.packet(&Packet {
                test_id: Some(&id),
                mime_type: Some("text/plain;charset=utf8"),
                file: Some((name, content)),
                eof: true,
                timestamp: Some(stop),
                route_code: Some(&worker),
                ..Packet::default()
            });
        }
        writer.packet(&Packet {
            test_id: Some(&id),
            status,
            timestamp: Some(stop),
            tags: &tags,
            route_code: Some(&worker),
            ..Packet::default()
        });
    }
    writer.into_bytes()
}

/// The same run in subunit v1, as python-subunit's `TestProtocolClient` writes it.
fn tempest_v1(tests: usize) -> Vec<u8> {
    let traceback = "Traceback (most recent call last):\n  File \"tempest/x.py\", line 1\n"
        .repeat(32)
        .into_bytes();
    let mut writer = V1Writer::new();
    for n in 0..tests {
        let id = test_id(n);
        writer
            .line(&format!("tags: worker-{}", n % 8))
            .time("2023-11-14 22:13:20.000000Z")
            .test(&id)
            .time("2023-11-14 22:13:20.500000Z");
        match status_of(n) {
            PacketStatus::Fail => writer.outcome_multipart(
                "failure",
                &id,
                &[("text/x-traceback;charset=utf8", "traceback", &traceback)],
                4096,
            ),
            PacketStatus::Skip => writer.outcome_multipart(
                "skip",
                &id,
                &[("text/plain", "reason", b"Feature not enabled in this cloud")],
                4096,
            ),
            _ => writer.outcome_multipart("successful", &id, &[], 4096),
        };
    }
    writer.into_bytes()
}

/// The run's passing tests as refstack-client uploads them.
fn tempest_json(v2: &[u8], limits: &Limits) -> anyhow::Result<Vec<u8>> {
    let run = parse(v2, limits)?;
    Ok(serde_json::to_vec(&serde_json::json!({
        "cpid": "6b678f2c7fa94c7e942728b300451b56",
        "duration_seconds": 6123,
        "results": run.passing_tests(),
    }))?)
}

/// Few tests, each with a 64 KiB log: the rate of reading attachments (CRC32 and skipping).
fn attachments_v2(tests: usize) -> Vec<u8> {
    let log = vec![b'l'; 64 * 1024];
    let mut writer = V2Writer::new();
    for n in 0..tests {
        writer.test(
            &test_id(n),
            PacketStatus::Success,
            (1_700_000_000, 0),
            (1_700_000_001, 0),
            &[("pythonlogging:''", "text/plain;charset=utf8", &log)],
        );
    }
    writer.into_bytes()
}

struct Row {
    name: String,
    bytes: usize,
    tests: usize,
    median: Duration,
}

fn measure(name: &str, input: &[u8], limits: &Limits, runs: usize) -> anyhow::Result<Row> {
    let run = parse(input, limits)?;
    let tests = run.tests.len();
    let mut times = Vec::with_capacity(runs);
    for round in 0..runs {
        let started = Instant::now();
        let run = black_box(parse(black_box(input), limits))?;
        let elapsed = started.elapsed();
        anyhow::ensure!(run.tests.len() == tests, "{name}: the parse changed");
        eprintln!("{name}: run {round}: {:.3} ms", elapsed.as_secs_f64() * 1e3);
        times.push(elapsed);
        drop(run);
    }
    times.sort();
    Ok(Row {
        name: name.to_owned(),
        bytes: input.len(),
        tests,
        median: times[times.len() / 2],
    })
}

fn main() -> anyhow::Result<()> {
    let tests = env_or("ANNALS_BENCH_TESTS", 100_000)?;
    let runs = env_or("ANNALS_BENCH_RUNS", 5)?.max(1);
    let limits = Limits {
        max_input_bytes: usize::MAX,
        max_tests: usize::MAX,
        ..Limits::default()
    };

    let v2 = tempest_v2(tests);
    let v1 = tempest_v1(tests);
    let json = tempest_json(&v2, &limits)?;
    let heavy = attachments_v2(1_000);
    for (input, format) in [
        (&v2, Format::SubunitV2),
        (&v1, Format::SubunitV1),
        (&json, Format::ResultsJson),
        (&heavy, Format::SubunitV2),
    ] {
        anyhow::ensure!(annals::testresults::detect(input) == Some(format));
    }

    let rows = [
        measure(
            &format!("subunit v2, tempest-like, {tests} tests"),
            &v2,
            &limits,
            runs,
        )?,
        measure(
            &format!("subunit v1, the same run, {tests} tests"),
            &v1,
            &limits,
            runs,
        )?,
        measure(
            "JSON results (refstack-client), its passing tests",
            &json,
            &limits,
            runs,
        )?,
        measure(
            "subunit v2, 1000 tests with a 64 KiB attachment each",
            &heavy,
            &limits,
            runs,
        )?,
    ];

    println!("| upload | size (MB) | tests | median parse (ms) | MB/s | tests/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let seconds = row.median.as_secs_f64();
        println!(
            "| {} | {:.1} | {} | {:.1} | {:.0} | {:.0} |",
            row.name,
            row.bytes as f64 / 1e6,
            row.tests,
            seconds * 1e3,
            row.bytes as f64 / 1e6 / seconds,
            row.tests as f64 / seconds,
        );
    }
    Ok(())
}
