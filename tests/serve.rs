//! `annals serve` as a real child process with the inventory face: everything survives a
//! restart, SIGTERM under write load loses no acknowledged update, and a non-loopback face
//! listener without accounts is refused. And what every listener does alike: a body that stops
//! arriving is answered 408 after `[http] body_timeout_s`, each face's own listener moves or
//! turns off with a flag or variable, start-up says one line per listener, and the request log.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{poll, spawn_serve, Served};
use serde_json::{json, Value};

fn serve(data: &Path) -> Served {
    spawn_serve(
        &["--data".as_ref(), data.as_os_str(), "serve".as_ref()],
        &[("ANNALS_HTTP_LISTEN", "127.0.0.1:0")],
    )
    .expect("the server starts")
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
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
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
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

#[test]
fn a_face_listener_off_loopback_without_accounts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = spawn_serve(
        &["--data".as_ref(), dir.path().as_os_str(), "serve".as_ref()],
        &[
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:0"),
            ("ANNALS_PARTISCI_LISTEN", "0.0.0.0:0"),
        ],
    )
    .err()
    .expect("the server refuses to start");
    assert!(
        error.contains("refusing to listen on 0.0.0.0:0 without any account"),
        "{error}"
    );
}

/// Sends the headers of a `POST path` announcing a body of `length` bytes, then only `sent`
/// bytes of it, and waits (at most a minute) for the answer and the end of the connection:
/// the status, the body, and how long after the partial body the answer came.
fn half_a_body(address: &str, path: &str, length: usize, sent: &[u8]) -> (u16, String, Duration) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
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

#[test]
fn a_body_that_stops_arriving_is_answered_408_after_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = spawn_serve(
        &["--data".as_ref(), dir.path().as_os_str(), "serve".as_ref()],
        &[
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:0"),
            ("ANNALS_HTTP_BODY_TIMEOUT_S", "1"),
        ],
    )
    .expect("the server starts");
    let hpcwaas = server.hpcwaas.clone().expect("the face's own listener");
    let patrowl = server.patrowl.clone().expect("the face's own listener");
    for (address, path, check) in [
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
    ] {
        let (status, body, took) = half_a_body(address, path, 100, br#"{"app": "we"#);
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

#[test]
fn a_body_timeout_of_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = spawn_serve(
        &["--data".as_ref(), dir.path().as_os_str(), "serve".as_ref()],
        &[
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:0"),
            ("ANNALS_HTTP_BODY_TIMEOUT_S", "0"),
        ],
    )
    .err()
    .expect("the server refuses to start");
    assert!(
        error.contains("body_timeout_s must be at least 1"),
        "{error}"
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
    let server = spawn_serve(
        &[
            "--data".as_ref(),
            dir.path().as_os_str(),
            "serve".as_ref(),
            "--partisci-listen=".as_ref(),
            "--hpcwaas-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        &[
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:0"),
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

/// `annals serve` as a child process, its log read line by line.
struct Logged {
    child: std::process::Child,
    log: std::sync::mpsc::Receiver<Value>,
    /// The lines logged up to the main listener's, included.
    start_up: Vec<Value>,
    /// The main listener's address.
    address: String,
}

impl Logged {
    /// Starts `annals --log-format json serve` with these arguments after `serve`, every
    /// listener on a free port unless `args` says otherwise, and reads its log until the main
    /// listener's line (at most a minute).
    fn start(data: &Path, args: &[&str]) -> Logged {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_annals"))
            .args(["--log-format", "json", "--data"])
            .arg(data)
            .arg("serve")
            .args(args)
            .env_remove("ANNALS_CONFIG")
            .env("RUST_LOG", "info")
            .env("ANNALS_HTTP_LISTEN", "127.0.0.1:0")
            .env("ANNALS_PARTISCI_LISTEN", "127.0.0.1:0")
            .env("ANNALS_PATROWL_LISTEN", "127.0.0.1:0")
            .env("ANNALS_HPCWAAS_LISTEN", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(serde_json::from_str::<Value>(&line).unwrap());
            }
        });
        let mut logged = Logged {
            child,
            log,
            start_up: Vec::new(),
            address: String::new(),
        };
        loop {
            let entry = logged.next();
            logged.start_up.push(entry.clone());
            if let Some(address) = entry["fields"]["address"].as_str() {
                logged.address = address.to_owned();
                return logged;
            }
        }
    }

    /// The next log line, within a minute.
    fn next(&self) -> Value {
        self.log
            .recv_timeout(Duration::from_secs(60))
            .expect("a log line within a minute")
    }

    /// The start-up lines that say a listener listens.
    fn listening(&self) -> Vec<&Value> {
        self.start_up
            .iter()
            .filter(|entry| {
                entry["fields"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("listening")
            })
            .collect()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn start_up_says_one_line_per_listener_and_the_request_log_one_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = Logged::start(dir.path(), &["--request-log"]);
    let from_actix: Vec<_> = server
        .start_up
        .iter()
        .filter(|entry| entry["target"].as_str().unwrap().starts_with("actix"))
        .collect();
    assert!(from_actix.is_empty(), "{from_actix:?}");
    let listening = server.listening();
    assert_eq!(
        listening.len(),
        4,
        "main, partisci, patrowl, hpcwaas: {listening:?}"
    );
    let address = server.address.clone();

    // HEAD on an event stream answers its headers and ends, as the stream never would.
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
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
        let entry = server.next();
        (entry["fields"]["path"] == "/healthz").then_some(entry)
    });
    assert_eq!(logged["level"], "INFO");
    assert_eq!(logged["fields"]["method"], "GET");
    assert_eq!(logged["fields"]["status"], 200);
}

#[test]
fn the_gros_agent_daemons_listener_moves_or_turns_off_with_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("annals.toml");
    std::fs::write(
        &config,
        "[gros.agent]\nenabled = true\nproject = \"PROJ\"\n\n\
         [[gros.projects]]\nkey = \"PROJ\"\nscrape_command = [\"true\"]\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let data = dir.path().join("log");
    let moved = Logged::start(
        &data,
        &["--config", config, "--gros-agent-listen", "127.0.0.1:0"],
    );
    let daemon = moved
        .start_up
        .iter()
        .find_map(|entry| entry["fields"]["gros_agent"].as_str())
        .expect("the daemon's start-up line")
        .to_owned();
    let (status, body) = request(&daemon, "GET", "/status", "").unwrap();
    assert_eq!(status, 503, "no scrape runs: {body}");
    drop(moved);

    let off = Logged::start(&data, &["--config", config, "--gros-agent-listen="]);
    assert_eq!(off.listening().len(), 4, "no daemon: {:?}", off.start_up);
    // The agent's routes stay on the main listener.
    let (status, _) = request(&off.address, "GET", "/agents/PROJ/PROJ/status", "").unwrap();
    assert_eq!(status, 503);
}
