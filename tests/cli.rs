//! The `annals` binary end to end: `load`, `export`, `replay`, and `serve` with its start-up
//! reconciliation, health check and graceful stop.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use annals::cli::load_line;
use serde_json::Value;

fn annals(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("annals runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "annals failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn export(data: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["export"];
    all.extend_from_slice(args);
    stdout(&annals(data, &all))
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

/// Two writers, three lines each: `job-e-0` and `job-e-1`, 8 events.
fn loaded_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&annals(
        dir.path(),
        &["load", "--writers", "2", "--events", "3", "--run", "e"],
    ));
    assert_eq!(out.lines().count(), 8, "{out}");
    dir
}

#[test]
fn export_writes_every_event_as_one_json_line() {
    let dir = loaded_log();
    let events = export(dir.path(), &[]);
    assert_eq!(events.len(), 8);
    for (position, event) in (1..).zip(&events) {
        assert_eq!(event["position"], position);
        for key in [
            "stream",
            "version",
            "event_id",
            "type",
            "schema_version",
            "recorded_at",
            "metadata",
            "hash",
        ] {
            assert!(!event[key].is_null(), "{key} missing in {event}");
        }
        assert_eq!(event["metadata"]["origin"]["kind"], "system");
        assert_eq!(event["hash"].as_str().unwrap().len(), 64);
        if event["type"] == "LineRecorded" {
            let writer = if event["stream"] == "job-e-0" { 0 } else { 1 };
            let seq = event["version"].as_u64().unwrap() - 1;
            assert_eq!(event["payload"]["line"], load_line(writer, seq, 300));
            assert_eq!(event["payload"]["level"], "INFO");
        } else {
            assert_eq!(event["type"], "JobStarted");
            assert_eq!(event["payload"]["name"], "load e");
        }
    }
    let tail = export(dir.path(), &["--from", "5"]);
    assert_eq!(
        tail.iter()
            .map(|e| e["position"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [6, 7, 8]
    );
    let one = export(dir.path(), &["--stream", "job-e-1"]);
    assert_eq!(one.len(), 4);
    assert!(one.iter().all(|e| e["stream"] == "job-e-1"));
}

#[test]
fn replay_prints_the_state_at_a_version_or_a_time() {
    let dir = loaded_log();
    let at_two: Value = serde_json::from_str(&stdout(&annals(
        dir.path(),
        &["replay", "job-e-0", "--at-version", "2"],
    )))
    .unwrap();
    assert_eq!(at_two["stream"], "job-e-0");
    assert_eq!(at_two["version"], 2);
    assert_eq!(at_two["state"]["lines"], 1);
    assert_eq!(at_two["state"]["status"], "running");
    assert_eq!(at_two["state"]["last_line"], load_line(0, 1, 300));

    let events = export(dir.path(), &["--stream", "job-e-0"]);
    let time = events[2]["recorded_at"].as_str().unwrap();
    let expected = events
        .iter()
        .filter(|e| e["recorded_at"].as_str().unwrap() <= time)
        .count();
    let at_time: Value = serde_json::from_str(&stdout(&annals(
        dir.path(),
        &["replay", "job-e-0", "--at-time", time],
    )))
    .unwrap();
    assert_eq!(at_time["version"], expected);

    let end: Value =
        serde_json::from_str(&stdout(&annals(dir.path(), &["replay", "job-e-0"]))).unwrap();
    assert_eq!(
        (end["version"].as_u64(), end["state"]["lines"].as_u64()),
        (Some(4), Some(3))
    );
}

#[test]
fn bad_arguments_get_clear_errors() {
    let dir = loaded_log();
    let unknown = annals(dir.path(), &["replay", "nokind-x"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no entity kind is called \"nokind\"; known kinds: job"),
        "{}",
        stderr(&unknown)
    );
    let invalid = annals(dir.path(), &["replay", "nohyphen"]);
    assert!(
        stderr(&invalid).contains("invalid stream id"),
        "{}",
        stderr(&invalid)
    );
    let missing = annals(&dir.path().join("nothing-here"), &["export"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no log at"),
        "{}",
        stderr(&missing)
    );
    assert!(
        !dir.path().join("nothing-here").exists(),
        "export must not create a log"
    );
    let durability = annals(dir.path(), &["--durability", "sometimes", "verify"]);
    assert!(
        stderr(&durability).contains("expected fsync, flush or none"),
        "{}",
        stderr(&durability)
    );
}

fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn serve_settles_jobs_left_running_answers_health_checks_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // A load leaves its jobs running, as a crash would.
    stdout(&annals(
        dir.path(),
        &[
            "load",
            "--writers",
            "1",
            "--events",
            "2",
            "--run",
            "r",
            "--quiet",
        ],
    ));

    let server = common::spawn_serve(
        &["--data".as_ref(), dir.path().as_os_str(), "serve".as_ref()],
        &[("ANNALS_HTTP_LISTEN", "127.0.0.1:0")],
    )
    .expect("the server starts");

    let health = get(&server.address, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"), "{health}");

    let status = server.terminate();
    assert!(status.success(), "{status}");

    let job: Value =
        serde_json::from_str(&stdout(&annals(dir.path(), &["replay", "job-r-0"]))).unwrap();
    assert_eq!(job["state"]["status"], "interrupted");
    assert_eq!(job["version"], 4);
    assert!(stdout(&annals(dir.path(), &["verify"])).starts_with("ok: 4 events"));
}

#[test]
fn serve_sends_event_stream_keep_alives_at_the_configured_interval() {
    let dir = tempfile::tempdir().unwrap();
    let served = common::spawn_serve(
        &["--data".as_ref(), dir.path().as_os_str(), "serve".as_ref()],
        &[
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:0"),
            ("ANNALS_HTTP_SSE_KEEP_ALIVE_S", "1"),
        ],
    );
    let server = served.expect("the server starts");
    let address = server.address.clone();
    let started = Instant::now();
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "GET /api/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    // Far less than the 15 s default: the setting must reach the event API.
    let deadline = started + Duration::from_secs(5);
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains(": keep-alive\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no keep-alive by the deadline: {}",
            String::from_utf8_lossy(&received)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => panic!("the server closed the event stream"),
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(e) => panic!("reading the event stream: {e}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_secs(1));
    drop(server);

    let refused = common::spawn_serve(
        &["--data".as_ref(), dir.path().as_os_str(), "serve".as_ref()],
        &[
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:0"),
            ("ANNALS_HTTP_SSE_KEEP_ALIVE_S", "0"),
        ],
    )
    .map(|served| {
        drop(served);
    })
    .expect_err("a keep-alive of 0 s is refused");
    assert!(
        refused.contains("sse_keep_alive_s must be at least 1"),
        "{refused}"
    );
}
