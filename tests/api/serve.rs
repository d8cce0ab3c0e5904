//! `annals serve` as a real child process with the inventory face: everything survives a
//! restart, SIGTERM under write load loses no acknowledged update, a non-loopback face
//! listener without accounts is refused, a start-up that cannot bind or open its log ends
//! with one error line, SIGTERM ends event streams and long polls at once, malformed
//! requests to every face leave no ERROR line in the log, and nothing in the data directory
//! is readable by anyone but its owner. And what every listener does alike: a body that stops
//! arriving is answered 408 after `[http] body_timeout_s`, each face's own listener moves or
//! turns off with a flag or variable, start-up says one line per listener, and the request log.

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::process::supervised;
use common::{failed_serve, poll, serve_data, Served};
use serde_json::{json, Value};

fn serve(data: &Path) -> Served {
    serve_data(data, None, &[], &[]).expect("the server starts")
}

/// A new connection to `address` whose reads give up after `timeout`.
fn connect(address: &str, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
}

/// One HTTP/1.1 request on a new connection; the status and body.
fn request(address: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    Ok((status, body))
}

fn versions(address: &str) -> Vec<Value> {
    let (status, body) = request(address, "GET", "/api/v1/version/", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["data"].as_array().unwrap().clone()
}

#[test]
fn the_inventory_survives_a_restart() {
    let (_dir, data) = common::data_dir();
    let server = serve(&data);
    for n in 0..20 {
        let update = json!({"app": "web", "ver": n.to_string(), "host": format!("h{n}")});
        let (status, body) = request(
            &server.address,
            "POST",
            "/api/v1/update/",
            &update.to_string(),
        )
        .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let partisci = server.partisci.clone().expect("the face's own listener");
    udp.send_to(br#"{"app":"udp","ver":"1","host":"u"}"#, &partisci)
        .unwrap();
    let before = poll(Duration::from_secs(30), "the datagram", || {
        let all = versions(&server.address);
        (all.len() == 21).then_some(all)
    });
    assert!(server.terminate().success());

    let server = serve(&data);
    assert_eq!(versions(&server.address), before);
    let (status, body) = request(&server.address, "GET", "/api/v1/app/", "").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("\"host_count\":20"), "{body}");
    assert!(server.terminate().success());
}

#[test]
fn sigterm_under_write_load_loses_no_acknowledged_update() {
    let _load = common::LOAD_TEST.blocking_lock();
    let (_dir, data) = common::data_dir();
    let server = serve(&data);
    let address = server.address.clone();
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (address, acknowledged, sent, stop) = (
                address.clone(),
                acknowledged.clone(),
                sent.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                for n in 0u32.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let update = json!({"app": "load", "ver": "1",
                                        "host": format!("w{writer}"), "instance": n});
                    sent.fetch_add(1, Ordering::Relaxed);
                    match request(&address, "POST", "/api/v1/update/", &update.to_string()) {
                        Ok((200, _)) => {
                            acknowledged.lock().unwrap().insert((writer, n));
                        }
                        // The server is going away: refused connections, resets, 503s.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    poll(Duration::from_secs(60), "some acknowledged updates", || {
        (acknowledged.lock().unwrap().len() >= 200).then_some(())
    });
    let status = server.terminate();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(status.success(), "{status}");

    let acknowledged = acknowledged.lock().unwrap().clone();
    let server = serve(&data);
    let stored: BTreeSet<(usize, u32)> = versions(&server.address)
        .iter()
        .map(|v| {
            let writer = v["host"].as_str().unwrap()[1..].parse().unwrap();
            (writer, v["instance"].as_u64().unwrap() as u32)
        })
        .collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.len() <= sent.load(Ordering::Relaxed));
    assert!(server.terminate().success());
}

/// Starts `annals serve` with these variables, expecting it to refuse, saying `expected`.
fn assert_refused(envs: &[(&str, &str)], expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let error = serve_data(dir.path(), None, &[], envs)
        .err()
        .expect("the server refuses to start");
    assert!(error.contains(expected), "{error}");
}

#[test]
fn a_face_listener_off_loopback_without_accounts_is_refused() {
    assert_refused(
        &[("ANNALS_PARTISCI_LISTEN", "0.0.0.0:0")],
        "refusing to listen on 0.0.0.0:0 without any account",
    );
}

/// Sends the headers of a `POST path` announcing a body of `length` bytes, then only `sent`
/// bytes of it, and waits (at most a minute) for the answer and the end of the connection:
/// the status, the body, and how long after the partial body the answer came.
fn half_a_body(address: &str, path: &str, length: usize, sent: &[u8]) -> (u16, String, Duration) {
    let mut stream = connect(address, Duration::from_secs(60));
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
    .unwrap();
    stream.write_all(sent).unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("an answer, then the connection closed, within a minute");
    let took = started.elapsed();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body, took)
}

/// A server whose bodies time out after one second (`[http] body_timeout_s = 1`).
fn serve_with_a_body_timeout_of_one_second(data: &Path) -> Served {
    serve_data(data, None, &[], &[("ANNALS_HTTP_BODY_TIMEOUT_S", "1")]).expect("the server starts")
}

#[test]
fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_a_body_timeout_of_one_second(dir.path());
    let hpcwaas = server.hpcwaas.clone().expect("the face's own listener");
    let patrowl = server.patrowl.clone().expect("the face's own listener");
    let cases = [
        (
            &server.address,
            "/api/v1/update/",
            (|body: &Value| body["error"].as_str().map(str::to_owned)) as fn(&Value) -> _,
        ),
        (&server.address, "/v1/results/", |body| {
            (body["code"] == 408).then(|| body["title"].as_str().unwrap().to_owned())
        }),
        (&hpcwaas, "/workflows/any", |body| {
            let error = &body["errors"][0];
            (error["id"] == "request_timeout").then(|| error["detail"].as_str().unwrap().to_owned())
        }),
        (&patrowl, "/engines/tcp/startscan", |body| {
            (body["status"] == "error").then(|| body["reason"].as_str().unwrap().to_owned())
        }),
    ];
    // The faces wait out their body timeouts side by side, not one after another.
    let answers: Vec<_> = std::thread::scope(|scope| {
        let waiting: Vec<_> = cases
            .iter()
            .map(|&(address, path, _)| {
                scope.spawn(move || half_a_body(address, path, 100, br#"{"app": "we"#))
            })
            .collect();
        waiting.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for ((_, path, check), (status, body, took)) in cases.into_iter().zip(answers) {
        assert_eq!(status, 408, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let message = check(&body).unwrap_or_else(|| panic!("{path}: the face's shape: {body}"));
        assert!(
            message.contains("stopped arriving") && message.contains("body_timeout_s"),
            "{path}: {message}"
        );
        // The configured second, not actix's minute or two.
        assert!(took < Duration::from_secs(20), "{path}: {took:?}");
    }
    assert!(server.terminate().success());
}

/// A chunked body that stops arriving in the middle of a chunk is answered 408 too, and the
/// connection is closed then: actix would otherwise keep it, waiting for the rest of the body.
#[test]
fn a_chunked_body_that_stops_arriving_is_answered_408_and_its_connection_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_a_body_timeout_of_one_second(dir.path());
    // Well past the body timeout, well short of actix's own timeouts.
    let mut stream = connect(&server.address, Duration::from_secs(15));
    write!(
        stream,
        "POST /api/v1/update/ HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n\
         20\r\n{{\"app\": \"we",
        server.address
    )
    .unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("an answer, then the connection closed");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("body_timeout_s"), "{answer}");
    assert!(server.terminate().success());
}

#[test]
fn a_body_timeout_of_zero_is_refused() {
    assert_refused(
        &[("ANNALS_HTTP_BODY_TIMEOUT_S", "0")],
        "body_timeout_s must be at least 1",
    );
}

#[test]
fn each_faces_own_listener_moves_or_turns_off_with_a_flag_or_a_variable() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for flag in [
        "--partisci-listen <ADDR>",
        "--patrowl-listen <ADDR>",
        "--hpcwaas-listen <ADDR>",
        "--gros-agent-listen <ADDR>",
        "--request-log",
    ] {
        assert!(help.contains(flag), "serve --help lists {flag}: {help}");
    }

    let dir = tempfile::tempdir().unwrap();
    let server = serve_data(
        dir.path(),
        None,
        &["--partisci-listen=", "--hpcwaas-listen", "127.0.0.1:0"],
        &[
            // The flag wins over the variable; the variable alone turns Patrowl's off.
            ("ANNALS_HPCWAAS_LISTEN", ""),
            ("ANNALS_PATROWL_LISTEN", ""),
        ],
    )
    .expect("the server starts");
    assert_eq!(server.partisci, None, "turned off by the flag");
    assert_eq!(server.patrowl, None, "turned off by the variable");
    let hpcwaas = server.hpcwaas.clone().expect("moved by the flag");
    let (status, body) = request(&hpcwaas, "GET", "/workflows", "").unwrap();
    assert_eq!(status, 200, "{body}");
    // The faces stay on the main listener.
    let (status, _) = request(&server.address, "GET", "/api/v1/version/", "").unwrap();
    assert_eq!(status, 200);
    let (status, body) = request(&server.address, "GET", "/engines/tcp/liveness", "").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(server.terminate().success());
}

/// The start-up lines that say a listener listens.
fn listening(server: &Served) -> Vec<Value> {
    server
        .start_up()
        .into_iter()
        .filter(|entry| {
            entry["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("listening")
        })
        .collect()
}

#[test]
fn start_up_says_one_line_per_listener_and_the_request_log_one_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_data(dir.path(), None, &["--request-log"], &[]).expect("the server starts");
    let from_actix: Vec<_> = server
        .start_up()
        .into_iter()
        .filter(|entry| entry["target"].as_str().unwrap().starts_with("actix"))
        .collect();
    assert!(from_actix.is_empty(), "{from_actix:?}");
    let listening = listening(&server);
    assert_eq!(
        listening.len(),
        4,
        "main, partisci, patrowl, hpcwaas: {listening:?}"
    );
    let address = server.address.clone();

    // HEAD on an event stream answers its headers and ends, as the stream never would.
    let mut stream = connect(&address, Duration::from_secs(60));
    write!(
        stream,
        "HEAD /api/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/event-stream"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");

    let (status, _) = request(&address, "GET", "/healthz", "").unwrap();
    assert_eq!(status, 200);
    let logged = poll(Duration::from_secs(60), "the request's log line", || {
        let entry = server.next_entry();
        (entry["fields"]["path"] == "/healthz").then_some(entry)
    });
    assert_eq!(logged["level"], "INFO");
    assert_eq!(logged["fields"]["method"], "GET");
    assert_eq!(logged["fields"]["status"], 200);
}

#[test]
fn the_gros_agent_daemons_listener_moves_or_turns_off_with_its_flag() {
    let (dir, config) = common::config_file(
        "[gros.agent]\nenabled = true\nproject = \"PROJ\"\n\n\
         [[gros.projects]]\nkey = \"PROJ\"\nscrape_command = [\"true\"]\n",
    );
    let data = dir.path().join("log");
    let moved = serve_data(
        &data,
        Some(&config),
        &["--gros-agent-listen", "127.0.0.1:0"],
        &[],
    )
    .expect("the server starts");
    let daemon = moved
        .start_up()
        .iter()
        .find_map(|entry| {
            let address = entry["fields"]["address"].as_str().map(str::to_owned);
            address.filter(|_| entry["fields"]["face"] == "gros")
        })
        .expect("the daemon's start-up line");
    let (status, body) = request(&daemon, "GET", "/status", "").unwrap();
    assert_eq!(status, 503, "no scrape runs: {body}");
    drop(moved);

    let off = serve_data(&data, Some(&config), &["--gros-agent-listen="], &[])
        .expect("the server starts");
    assert_eq!(listening(&off).len(), 4, "no daemon: {:?}", off.started);
    // The agent's routes stay on the main listener.
    // (Served there to registered agents only.)
    let (status, body) = request(&off.address, "GET", "/agents/PROJ/PROJ/status", "").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("is not registered"), "{body}");
}

/// Exit code 1, no panic, and `expected` as the one line that is not a log record.
fn assert_one_error_line(status: std::process::ExitStatus, stderr: &str, expected: &str) {
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<_> = stderr
        .lines()
        .filter(|line| {
            !line.trim().is_empty()
                && !serde_json::from_str::<Value>(line).is_ok_and(|entry| entry["level"] == "INFO")
        })
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("annals: "), "{stderr}");
    assert!(lines[0].contains(expected), "{stderr}");
}

#[test]
fn a_port_in_use_ends_start_up_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for variable in [
        "ANNALS_HTTP_LISTEN",
        "ANNALS_PATROWL_LISTEN",
        "ANNALS_HPCWAAS_LISTEN",
    ] {
        let (status, stderr) = failed_serve(&dir.path().join("log"), None, &[(variable, &address)]);
        assert_one_error_line(status, &stderr, &format!("cannot listen on {address}"));
    }
}

#[test]
fn a_log_that_cannot_be_opened_ends_start_up_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let (status, stderr) = failed_serve(&file, None, &[]);
    assert_one_error_line(status, &stderr, "cannot open the log");

    let data = dir.path().join("log");
    let running = serve(&data);
    let (status, stderr) = failed_serve(&data, None, &[]);
    assert_one_error_line(status, &stderr, "another process holds it");
    assert!(running.terminate().success());
}

/// A page cache too small for sled is a clear refusal, not sled's panic, whether the
/// configuration file or the environment says so.
#[test]
fn a_log_cache_of_zero_ends_start_up_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = failed_serve(
        &dir.path().join("log"),
        None,
        &[("ANNALS_LOG_CACHE_MB", "0")],
    );
    assert_one_error_line(status, &stderr, "cache_mb must be at least 1");
}

/// The value of an unlabelled sample in the server's `/metrics`.
fn metric(address: &str, name: &str) -> Option<f64> {
    let (_, text) = request(address, "GET", "/metrics", "").ok()?;
    text.lines()
        .find(|line| line.split(' ').next() == Some(name))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// A workflow whose one step writes a line, then runs until stopped.
const WAITING_WORKFLOW: &str = r#"
[[hpcwaas.workflows]]
application_id = "demo"
environment_id = "lab"
name = "wait"
[[hpcwaas.workflows.steps]]
name = "wait"
command = ["/bin/sh", "-c", "echo started; exec sleep 600"]
timeout_s = 0
"#;

#[test]
fn sigterm_ends_event_streams_and_long_polls_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("annals.toml");
    std::fs::write(&config, WAITING_WORKFLOW).unwrap();
    let data = dir.path().join("log");
    let mut server = serve_data(&data, Some(&config), &[], &[]).expect("the server starts");
    let address = server.address.clone();
    let (status, body) = request(&address, "POST", "/workflows/demo@lab@wait", "{}").unwrap();
    assert_eq!(status, 201, "{body}");
    let (_, listed) = request(&address, "GET", "/executions", "").unwrap();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let execution = listed["executions"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an execution: {listed}"))
        .to_owned();
    // Once the step has said it started, nothing more is written until the stop.
    poll(Duration::from_secs(60), "the step to start", || {
        let logs = format!("/executions/{execution}/logs");
        let (_, body) = request(&address, "GET", &logs, "").unwrap();
        body.contains("started").then_some(())
    });
    let (_, ready) = request(&address, "GET", "/readyz", "").unwrap();
    let head = serde_json::from_str::<Value>(&ready).unwrap()["head"]
        .as_u64()
        .unwrap();

    let mut events = connect(&address, Duration::from_secs(120));
    write!(
        events,
        "GET /api/events?from={head} HTTP/1.1\r\nHost: annals\r\n\
         Accept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let events = std::thread::spawn(move || {
        let mut seen = String::new();
        let ended = events.read_to_string(&mut seen);
        (ended.map_err(|error| error.kind()), seen)
    });
    let polls: Vec<_> = [
        format!("/api/events?from={head}&timeout=5m"),
        "/api/streams/job-waited?timeout=5m".to_owned(),
        format!("/executions/{execution}/logs?from=5&timeout=5m"),
    ]
    .into_iter()
    .map(|path| {
        let address = address.clone();
        std::thread::spawn(move || request(&address, "GET", &path, ""))
    })
    .collect();
    poll(Duration::from_secs(60), "four waiting followers", || {
        (metric(&address, "annals_followers_waiting") == Some(4.0)).then_some(())
    });

    let asked = std::time::Instant::now();
    let status = server.stop();
    let took = asked.elapsed();
    // The shutdown timeout is 30 s; released followers do not come near it.
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    assert!(status.success(), "{status}");

    let (ended, seen) = events.join().unwrap();
    assert_eq!(
        ended,
        Ok(seen.len()),
        "the event stream ended cleanly: {seen}"
    );
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    for poll in polls {
        let (status, body) = poll.join().unwrap().expect("the long poll is answered");
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("\"events\":[]") || body.contains("\"logs\":[]"),
            "{body}"
        );
    }
    let lines = server.rest_of_stderr();
    let last: Value = serde_json::from_str(lines.last().expect("a last log line")).unwrap();
    assert_eq!(last["fields"]["message"], "stopped", "{lines:#?}");
    // The step outlives the stop, under its supervisor, for the next start to follow on; this
    // test starts none, so it stops the step itself.
    let run = data
        .join("hpcwaas-work")
        .join(format!("{execution}-0"))
        .join("run");
    assert_eq!(supervised::fate(&run), supervised::Fate::Running);
    assert!(supervised::kill(&run), "the step's supervisor listens");
    poll(Duration::from_secs(60), "the step to end", || {
        (supervised::fate(&run) == supervised::Fate::Ended).then_some(())
    });
}

/// Sends `bytes` on a new connection; the status line of the answer (empty if none came).
fn raw(address: &str, bytes: &[u8]) -> String {
    let mut stream = connect(address, Duration::from_secs(60));
    stream.write_all(bytes).unwrap();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn malformed_requests_to_every_face_log_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(&dir.path().join("log"));
    let main = server.address.clone();
    let partisci = server.partisci.clone().unwrap();
    let patrowl = server.patrowl.clone().unwrap();
    let hpcwaas = server.hpcwaas.clone().unwrap();
    let json = |address: &str, method: &str, path: &str, body: &str| {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: annals\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        raw(address, request.as_bytes())
    };
    let client_errors = [
        json(&main, "GET", "/api/events?limit=abc", ""),
        json(&main, "GET", "/api/streams/BAD%20ID?timeout=forever", ""),
        json(&main, "GET", "/api/streams/job-x/state?at_time=yesterday", ""),
        json(&partisci, "POST", "/api/v1/update/", "{not json"),
        json(&main, "POST", "/v1/test-runs", "{not json"),
        json(&main, "POST", "/v1/results/", "{not json"),
        json(&main, "POST", "/v1/test-runs/nope/update-test-status", "[]"),
        json(&patrowl, "POST", "/engines/tcp/startscan", "{not json"),
        json(&patrowl, "GET", "/engines/tcp/status/nope", ""),
        json(&hpcwaas, "POST", "/workflows/nope", "{not json"),
        json(&hpcwaas, "POST", "/ssh_keys", "{not json"),
        json(&hpcwaas, "GET", "/executions/nope/logs?timeout=forever", ""),
        json(&main, "POST", "/auth/status.py", "{not a form"),
        json(&main, "PUT", "/auth/version.py", ""),
        json(&main, "GET", "/agents/x/y/status", ""),
        json(&main, "GET", "/no/such/page", ""),
        // What the HTTP parser itself refuses, on the main listener and a face's own.
        raw(&main, b"GARBAGE\r\n\r\n"),
        raw(&patrowl, b"GET / HTTP/1.1\r\nHost: annals\r\nBad Header\r\n\r\n"),
        raw(
            &hpcwaas,
            b"POST /ssh_keys HTTP/1.1\r\nHost: annals\r\nContent-Length: 3\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        ),
        raw(
            &partisci,
            b"POST /api/v1/update/ HTTP/1.1\r\nHost: annals\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
        ),
        raw(&main, format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(40_000)).as_bytes()),
        // A body cut short by the client.
        raw(
            &partisci,
            b"POST /api/v1/update/ HTTP/1.1\r\nHost: annals\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"app\"",
        ),
    ];
    for (n, status) in client_errors.iter().enumerate() {
        let code: Option<u16> = status.split(' ').nth(1).and_then(|code| code.parse().ok());
        assert!(
            code.is_none_or(|code| (400..500).contains(&code) || code == 501),
            "request {n}: {status}"
        );
    }
    // Everything is in the pipe by the time the server has stopped.
    assert!(server.stop().success());
    let lines = server.rest_of_stderr();
    let errors: Vec<_> = lines
        .iter()
        .filter(|line| line.contains("\"level\":\"ERROR\"") || line.contains("panicked"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

/// Every path under `dir`, itself included, with its permission bits.
fn modes(dir: &Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = vec![(
        dir.to_owned(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
    )];
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let metadata = entry.metadata().unwrap();
        if metadata.is_dir() {
            found.extend(modes(&entry.path()));
        } else {
            found.push((entry.path(), metadata.permissions().mode() & 0o777));
        }
    }
    found
}

#[test]
fn the_data_directory_is_private_to_its_owner() {
    // The usual umask, which would leave new files readable by all; annals must not rely on a
    // stricter one. Every test of this binary is content with it.
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(0o022) };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = serve(&data);
    let update = json!({"app": "web", "ver": "1", "host": "h"}).to_string();
    let (status, body) = request(&server.address, "POST", "/api/v1/update/", &update).unwrap();
    assert_eq!(status, 200, "{body}");
    let results = json!({"cpid": "c1", "duration_seconds": 1,
                         "results": [{"name": "tempest.api.x.Y.test_z"}]})
    .to_string();
    let (status, body) = request(&server.address, "POST", "/v1/post-result", &results).unwrap();
    assert!((200..300).contains(&status), "{status} {body}");
    assert!(server.stop().success());

    let found = modes(&data);
    assert!(
        found.iter().any(|(path, _)| path.ends_with("conf")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|(path, _)| path.to_string_lossy().contains("sha256/")),
        "an upload is kept: {found:#?}"
    );
    let open: Vec<_> = found.iter().filter(|(_, mode)| mode & 0o077 != 0).collect();
    assert!(open.is_empty(), "readable by others: {open:#?}");
}

/// A data directory made beforehand (`mkdir`, as for a service's state directory) is empty and
/// takes the mode the umask gave it; the new log made in it is private all the same.
#[test]
fn a_new_log_in_a_directory_made_beforehand_makes_it_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut server = serve(&data);
    assert!(server.stop().success());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");

    // An existing log's directory is the operator's: its mode is left as it is.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o750)).unwrap();
    let mut server = serve(&data);
    assert!(server.stop().success());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o750, "{mode:o}");
}
