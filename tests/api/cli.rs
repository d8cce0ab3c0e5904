//! The `annals` binary end to end: `load`, `export`, `replay`, and `serve` with its start-up
//! reconciliation, health check and graceful stop.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use annals::cli::load_line;
use serde_json::Value;

/// `annals --data DATA ARGS`, untouched by the environment it is run from: no server, token or
/// config of the developer's is taken.
fn command(data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command
        .arg("--data")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("ANNALS_SERVER")
        .env_remove("ANNALS_TOKEN")
        .env_remove("ANNALS_CONFIG");
    command
}

fn annals(data: &Path, args: &[&str]) -> Output {
    command(data, args).output().expect("annals runs")
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

/// That `annals` ended with `code` and said `expected` on stderr.
fn assert_fails(output: &Output, code: i32, expected: &str) {
    assert_eq!(output.status.code(), Some(code), "{}", stderr(output));
    assert!(stderr(output).contains(expected), "{}", stderr(output));
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

/// A log that `annals load` wrote quietly: two writers of `events` lines each.
fn quietly_loaded(events: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let quiet = ["load", "--writers", "2", "--events", events, "--quiet"];
    stdout(&annals(dir.path(), &quiet));
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
    assert_fails(
        &unknown,
        1,
        "no entity kind is called \"nokind\"; known kinds: job",
    );
    let invalid = annals(dir.path(), &["replay", "nohyphen"]);
    assert!(
        stderr(&invalid).contains("invalid stream id"),
        "{}",
        stderr(&invalid)
    );
    let missing = annals(&dir.path().join("nothing-here"), &["export"]);
    assert_fails(&missing, 1, "no log at");
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

    let server = serve(dir.path(), None);

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
    let server = common::serve_data(
        dir.path(),
        None,
        &[],
        &[("ANNALS_HTTP_SSE_KEEP_ALIVE_S", "1")],
    )
    .expect("the server starts");
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

    let refused = common::serve_data(
        dir.path(),
        None,
        &[],
        &[("ANNALS_HTTP_SSE_KEEP_ALIVE_S", "0")],
    )
    .map(drop)
    .expect_err("a keep-alive of 0 s is refused");
    assert!(
        refused.contains("sse_keep_alive_s must be at least 1"),
        "{refused}"
    );
}

fn annals_with(data: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    command(data, args)
        .envs(envs.iter().copied())
        .output()
        .expect("annals runs")
}

fn serve(data: &Path, config: Option<&Path>) -> common::Served {
    common::serve_data(data, config, &[], &[]).expect("the server starts")
}

#[test]
fn export_replay_and_verify_ask_a_running_server_that_holds_the_log() {
    let dir = loaded_log();
    let server = serve(dir.path(), None);
    let url = format!("http://{}", server.address);

    // The server holds the log: opening it is refused with the way out.
    for verb in [&["export"][..], &["replay", "job-e-0"], &["verify"]] {
        let held = annals(dir.path(), verb);
        assert!(!held.status.success(), "{verb:?}");
        assert!(
            stderr(&held).contains("is held by a running server; use --server URL"),
            "{verb:?}: {}",
            stderr(&held)
        );
    }

    let remote = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--server", &url]);
        annals(dir.path(), &all)
    };
    // Start-up settled the two jobs the load left running: 10 events.
    let exported = stdout(&remote(&["export"]));
    assert_eq!(exported.lines().count(), 10, "{exported}");
    let tail = stdout(&remote(&["export", "--from", "5"]));
    let stream = stdout(&remote(&["export", "--stream", "job-e-1", "--from", "2"]));
    let replayed = stdout(&remote(&["replay", "job-e-0", "--at-version", "2"]));
    let verified = stdout(&remote(&["verify"]));
    assert!(
        verified.starts_with("ok: 10 events in 2 streams, head 10 ("),
        "{verified}"
    );
    // The environment names the server as well.
    let by_env = annals_with(
        dir.path(),
        &["replay", "job-e-0"],
        &[("ANNALS_SERVER", &url)],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&by_env)).unwrap()["state"]["status"],
        "interrupted"
    );

    let never = remote(&["replay", "job-never"]);
    assert_fails(&never, 1, "no such stream: job-never");
    assert!(never.stdout.is_empty());

    // Once the server is gone, the log itself says exactly the same.
    assert!(server.terminate().success());
    assert_eq!(stdout(&annals(dir.path(), &["export"])), exported);
    assert_eq!(
        stdout(&annals(dir.path(), &["export", "--from", "5"])),
        tail
    );
    assert_eq!(
        stdout(&annals(
            dir.path(),
            &["export", "--stream", "job-e-1", "--from", "2"]
        )),
        stream
    );
    assert_eq!(
        stdout(&annals(
            dir.path(),
            &["replay", "job-e-0", "--at-version", "2"]
        )),
        replayed
    );
    assert_eq!(stdout(&annals(dir.path(), &["verify"])), verified);
    let never = annals(dir.path(), &["replay", "job-never"]);
    assert_fails(&never, 1, "no such stream: job-never");
}

#[test]
fn a_server_with_accounts_is_asked_with_a_token() {
    let dir = loaded_log();
    let (token, hash) = annals::auth::new_token();
    let config = common::written(
        dir.path(),
        "annals.toml",
        format!(
            "[[accounts]]\nname = \"auditor\"\ntoken_sha256 = [\"{hash}\"]\nroles = [\"admin\"]\n"
        ),
    );
    let server = serve(dir.path(), Some(&config));
    let url = format!("http://{}", server.address);

    let refused = annals(dir.path(), &["export", "--server", &url]);
    assert_fails(&refused, 1, "--token or ANNALS_TOKEN");
    // Credentials in the URL are refused without being repeated.
    let with_password = url.replace("http://", "http://auditor:s3cret-word@");
    let refused = annals(dir.path(), &["export", "--server", &with_password]);
    assert_fails(&refused, 1, "takes no credentials in its URL");
    assert!(
        !stderr(&refused).contains("s3cret-word"),
        "{}",
        stderr(&refused)
    );
    let exported = stdout(&annals(
        dir.path(),
        &["export", "--server", &url, "--token", &token],
    ));
    assert_eq!(exported.lines().count(), 10, "{exported}");
    let verified = annals_with(
        dir.path(),
        &["verify"],
        &[("ANNALS_SERVER", &url), ("ANNALS_TOKEN", &token)],
    );
    assert!(stdout(&verified).starts_with("ok: 10 events"));
}

#[test]
fn load_counts_every_event_it_appended() {
    let dir = tempfile::tempdir().unwrap();
    let output = annals(
        dir.path(),
        &["load", "--writers", "2", "--events", "3", "--quiet"],
    );
    assert!(output.status.success());
    // Two `JobStarted` and six lines.
    assert!(
        stderr(&output).contains("appended 8 events"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn replay_at_time_takes_a_plain_date_or_a_time_without_zone() {
    let dir = loaded_log();
    let events = export(dir.path(), &["--stream", "job-e-0"]);
    let recorded = events[1]["recorded_at"].as_str().unwrap().to_owned();
    let version_at = |time: &str| -> u64 {
        let out = stdout(&annals(
            dir.path(),
            &["replay", "job-e-0", "--at-time", time],
        ));
        serde_json::from_str::<Value>(&out).unwrap()["version"]
            .as_u64()
            .unwrap()
    };
    // A date is its first moment; a time without zone is UTC.
    let day: chrono::NaiveDate = recorded[..10].parse().unwrap();
    let next_day = day.succ_opt().unwrap().to_string();
    assert_eq!(version_at(&next_day), 4);
    let replayed_at = |time: &str| {
        let output = annals(dir.path(), &["replay", "job-e-0", "--at-time", time]);
        (output.status.code(), output.stdout, output.stderr)
    };
    assert_eq!(
        replayed_at(&format!("{day}T00:00:00")),
        replayed_at(&recorded[..10])
    );
    // Before its first event the entity did not exist: no empty state is shown for it.
    let before = annals(
        dir.path(),
        &["replay", "job-e-0", "--at-time", "2000-01-01"],
    );
    assert_fails(&before, 1, "job-e-0 had no event yet at that point");
    assert_eq!(
        version_at(recorded.trim_end_matches('Z')),
        version_at(&recorded)
    );
    assert!(version_at(&recorded) >= 2);
    let bad = annals(dir.path(), &["replay", "job-e-0", "--at-time", "yesterday"]);
    assert_fails(
        &bad,
        2,
        "give RFC 3339 (2026-12-07T10:00:00Z), a date (2026-12-07)",
    );
}

#[test]
fn an_export_into_a_closed_pipe_ends_quietly() {
    use std::io::BufRead;
    // Far more than a pipe holds, so that the export is still writing when the reader goes.
    let dir = quietly_loaded("200");
    let mut child = command(dir.path(), &["export"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with('{'), "{first}");
    // The reader is dropped: the pipe is closed, as `head -1` closes it.
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        (output.status.code(), stderr(&output)),
        (Some(0), String::new())
    );
}

/// Runs `annals` with these arguments, its standard output a pipe whose reader has already
/// gone (as `| head -c1` leaves it once it has its byte): every write fails.
fn into_a_closed_pipe(data: &Path, args: &[&str]) -> Output {
    use std::os::fd::FromRawFd;
    let mut fds = [-1; 2];
    // SAFETY: fds is an array of two descriptors for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (reader, writer) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(reader);
    command(data, args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("annals runs")
}

#[test]
fn new_token_and_config_into_a_closed_pipe_end_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("annals.toml");
    std::fs::write(&config, "[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let config = config.to_str().unwrap();
    for args in [
        &["new-token"][..],
        &["--config", config, "config", "show"],
        &["config", "check", config],
    ] {
        let output = into_a_closed_pipe(dir.path(), args);
        assert_eq!(
            (output.status.code(), stderr(&output)),
            (Some(0), String::new()),
            "{args:?}"
        );
    }
}

/// A pseudo-terminal of 24 × 120: the test reads and types on the first, the child gets the
/// second.
fn pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 24,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors, which this function then owns.
    unsafe {
        assert_eq!(
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size
            ),
            0
        );
        (
            std::fs::File::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    }
}

/// Everything the terminal shows until every holder of its other side has closed it.
fn read_terminal(mut master: std::fs::File) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut shown = Vec::new();
        let mut chunk = [0u8; 4096];
        // Once the child and the test have closed the other side, reading fails (EIO).
        while let Ok(n @ 1..) = master.read(&mut chunk) {
            shown.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&shown).into_owned()
    })
}

#[test]
fn export_shows_progress_on_a_terminal_while_its_output_goes_to_a_file() {
    let dir = quietly_loaded("500");
    let (master, slave) = pty();
    let shown = read_terminal(master.try_clone().unwrap());
    let out = dir.path().join("events.ndjson");
    let status = command(dir.path(), &["export"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(slave)
        .status()
        .unwrap();
    assert!(status.success());
    drop(master);
    let shown = shown.join().unwrap();
    assert!(shown.contains("/1002 events"), "{shown:?}");
    let written = std::fs::read_to_string(&out).unwrap();
    assert_eq!(written.lines().count(), 1002);
    assert!(!written.contains("events ("), "progress went to the file");
}

#[test]
fn hash_password_asks_without_echo_on_a_terminal() {
    let (mut master, slave) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("hash-password")
        .env_remove("ANNALS_CONFIG")
        .stdin(slave)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The prompt comes once the echo is off; typing before it would be echoed.
    let mut stderr = child.stderr.take().unwrap();
    let (prompts, prompted) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = stderr.read(&mut byte) {
            seen.push(byte[0]);
            if seen.ends_with(b"Password: ") {
                let _ = prompts.send(());
            }
        }
    });
    prompted
        .recv_timeout(Duration::from_secs(60))
        .expect("a prompt on standard error");
    let shown = read_terminal(master.try_clone().unwrap());
    master.write_all(b"s3cret pass\n").unwrap();
    let output = child.wait_with_output().unwrap();
    drop(master);
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let shown = shown.join().unwrap();
    assert!(
        !shown.contains("s3cret"),
        "the password was echoed: {shown:?}"
    );
}

#[test]
fn an_https_server_is_asked_trusting_the_certificate_given() {
    let dir = loaded_log();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let server = common::serve_data(
        dir.path(),
        None,
        &[],
        &[
            ("ANNALS_HTTP_TLS_CERT", cert.to_str().unwrap()),
            ("ANNALS_HTTP_TLS_KEY", key.to_str().unwrap()),
        ],
    )
    .expect("the server starts");
    let url = format!("https://{}", server.address);

    let untrusted = annals(dir.path(), &["verify", "--server", &url]);
    assert_fails(&untrusted, 2, "needs --ca-cert FILE");
    let exported = stdout(&annals(
        dir.path(),
        &[
            "export",
            "--server",
            &url,
            "--ca-cert",
            cert.to_str().unwrap(),
        ],
    ));
    assert_eq!(exported.lines().count(), 10, "{exported}");
    // Another certificate is not trusted in its place.
    let other = common::written(
        dir.path(),
        "other.pem",
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
            .unwrap()
            .cert
            .pem(),
    );
    let refused = annals(
        dir.path(),
        &[
            "export",
            "--server",
            &url,
            "--ca-cert",
            other.to_str().unwrap(),
        ],
    );
    assert_fails(&refused, 1, "cannot reach the server");
}
