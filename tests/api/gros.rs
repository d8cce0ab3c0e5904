//! The agent face against the real server (in-process on port 0 over HTTPS with a
//! self-signed certificate, real sled and secret store in a temporary directory, real child
//! processes), sending the bytes the real clients send: gros-gatherer's registration,
//! preflight check, export announcement, Python's logging HTTPHandler (absolute-form request
//! line) and BigBoat upload, agent-config's scrape trigger and version check. Then every error
//! with its exact text, concurrent registrations, the agent daemon's answers, and salts that
//! survive a restart of `annals serve` without ever being written in clear.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use annals::config::{Config, GrosProjectSpec};
use annals::runtime::SystemClock;
use common::app::TestApp;
use common::poll_async;
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(60);
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGros agent@host";

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// One answer, read off the socket.
type Answer = common::app::Answer<common::app::Gros>;

/// Where to send: plain HTTP, or HTTPS trusting only `der`.
#[derive(Clone)]
struct Target {
    address: String,
    der: Option<CertificateDer<'static>>,
}

fn exchange(target: &Target, request: &[u8]) -> Answer {
    let mut tcp = TcpStream::connect(&target.address).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut raw = Vec::new();
    match &target.der {
        None => {
            tcp.write_all(request).unwrap();
            let _ = tcp.read_to_end(&mut raw);
        }
        Some(der) => {
            let mut connection = common::tls::client(der.clone());
            let mut tls = rustls::Stream::new(&mut connection, &mut tcp);
            tls.write_all(request).unwrap();
            let _ = tls.read_to_end(&mut raw);
        }
    }
    Answer::parse(&raw)
}

async fn send(target: &Target, request: String) -> Answer {
    let target = target.clone();
    tokio::task::spawn_blocking(move || exchange(&target, request.as_bytes()))
        .await
        .unwrap()
}

/// A request as Python's clients (requests, urllib) send it: a form body with its length.
fn form(method: &str, uri: &str, body: &str) -> String {
    let content_type = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/x-www-form-urlencoded\r\n".to_owned()
    };
    format!(
        "{method} {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{content_type}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(uri: &str) -> String {
    format!("GET {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// A GET of `uri` that came through proxies: `chain` is its `X-Forwarded-For` header.
fn get_forwarded(uri: &str, chain: &str) -> String {
    format!(
        "GET {uri} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         X-Forwarded-For: {chain}\r\n\r\n"
    )
}

fn project(key: &str, scrape: Vec<String>) -> GrosProjectSpec {
    GrosProjectSpec {
        key: key.into(),
        networks: vec!["127.0.0.0/8".into()],
        usernames: vec![annals::domain::gros::service::UsernamePattern {
            prefix: "ext_".into(),
            pattern: "^(.*)@example\\.org$".into(),
            replace: "\\1".into(),
        }],
        environment: format!("GROS_PROJECT={key}\n"),
        gather_interval_s: 3600,
        import_command: sh("echo importing $GROS_PROJECT; echo warned >&2"),
        scrape_command: scrape,
    }
}

/// The server and the ways to reach it.
struct Face {
    main: Target,
    daemon: Target,
    dir: tempfile::TempDir,
}

/// The real server on free ports, HTTPS on the main listener, the agent daemon on for the
/// project `PROJ`.
async fn spawn(configure: impl FnOnce(&mut Config, &Path)) -> Face {
    let mut der = None;
    let app = TestApp::start(Arc::new(SystemClock), |config, dir| {
        let (cert, key, certificate) = common::tls::self_signed(dir);
        der = Some(certificate);
        config.http.tls_cert = Some(cert);
        config.http.tls_key = Some(key);
        config.gros.controller_version = SHA.into();
        config.gros.log_ignore = vec!["^ignore me".into()];
        config.gros.agent.enabled = true;
        config.gros.agent.project = "PROJ".into();
        config.gros.projects = vec![
            project("PROJ", sh("echo scraped; echo 'scrape warning' >&2")),
            project("FAIL", sh("exit 3")),
            project("NOPE", vec!["/nonexistent/scraper".into()]),
            project(
                "SLOW",
                sh(&format!(
                    "echo waiting; {}",
                    until_exists(&dir.join("stop"))
                )),
            ),
            project("BARE", vec![]),
        ];
        configure(config, dir);
    })
    .await;
    Face {
        main: Target {
            address: app.addresses.main.to_string(),
            der,
        },
        daemon: plain(
            &app.addresses
                .of("gros")
                .expect("the daemon listens")
                .to_string(),
        ),
        dir: app.dir,
    }
}

impl Face {
    async fn events(&self, stream: &str) -> Vec<Value> {
        let answer = send(
            &self.main,
            get(&format!("/api/streams/{stream}?limit=1000")),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json()["events"].as_array().unwrap().clone()
    }

    /// Waits for the agent's stream to tell the end of a `process` ("scrape" or "import"), and
    /// gives its events then.
    async fn wait_for_end(&self, stream: &str, process: &'static str) -> Vec<Value> {
        let what = format!("the {process}'s end on {stream}");
        poll_async(WAIT, &what, || async {
            let events = self.events(stream).await;
            events.iter().any(finished(process)).then_some(events)
        })
        .await
    }

    async fn register(&self, agent: &str) -> Answer {
        self.register_in("PROJ", agent).await
    }

    /// Registers an agent of a project, as gros-gatherer does.
    async fn register_in(&self, project: &str, agent: &str) -> Answer {
        let query = format!("project={project}&agent={agent}");
        send(&self.main, registration(&query, KEY)).await
    }

    /// Announces an export of `project` as gros-gatherer's `export_files.py` does, by the
    /// agent `agent` describes.
    async fn export_as(&self, project: &str, agent: &Value, files: &[&str]) -> Answer {
        let body = format!(
            "agent={}&files={}",
            urlencode(&agent.to_string()),
            urlencode(&json!(files).to_string())
        );
        let uri = format!("/auth/export.py?project={project}");
        send(&self.main, form("POST", &uri, &body)).await
    }

    /// Announces an export of `project` by the agent `agent` describes, and checks that it is
    /// accepted and recorded on the stream of the agent `counted_as` of that project.
    async fn assert_export_counts_against(&self, project: &str, agent: &Value, counted_as: &str) {
        let export = self.export_as(project, agent, &[]).await;
        assert_eq!(export.status, 202, "{export:?}");
        let stream = format!("gros_agent-{project}.{counted_as}");
        let announced = self.events_of(&stream, "ExportAnnounced").await;
        assert!(!announced.is_empty(), "no export on {stream}");
    }

    /// The events of this type on the stream, in order.
    async fn events_of(&self, stream: &str, kind: &str) -> Vec<Value> {
        let events = self.events(stream).await;
        of_type(&events, kind).cloned().collect()
    }
}

/// gros-gatherer's registration of its public key; `query` names the project, and the agent
/// where it is not the one named after the project.
fn registration(query: &str, public_key: &str) -> String {
    form(
        "POST",
        &format!("/auth/agent.py?{query}"),
        &format!("public_key={}", urlencode(public_key)),
    )
}

/// The events of this type among these, in order.
fn of_type<'a>(events: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |e| e["type"] == kind)
}

/// One field of the payload of each event of this type among these, in order.
fn payload_fields(events: &[Value], kind: &str, field: &str) -> Vec<Value> {
    of_type(events, kind)
        .map(|e| e["payload"][field].clone())
        .collect()
}

/// A command that runs until `path` exists, for a process the test ends when it chooses.
fn until_exists(path: &Path) -> String {
    format!("while [ ! -e {} ]; do sleep 0.02; done", path.display())
}

/// The plain HTTP listener at `address`.
fn plain(address: &str) -> Target {
    Target {
        address: address.to_owned(),
        der: None,
    }
}

/// A form value, percent-encoded.
pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn finished(process: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["type"] == "ProcessFinished" && e["payload"]["process"] == process
}

#[actix_rt::test]
async fn the_real_clients_sequence_over_https() {
    let face = spawn(|_, _| {}).await;

    // gros-gatherer registers its agent: the salts and the username patterns.
    let registered = face.register("PROJ").await;
    assert_eq!(registered.status, 200, "{registered:?}");
    let body = registered.json();
    let salt = body["salts"]["salt"].as_str().unwrap().to_owned();
    let pepper = body["salts"]["pepper"].as_str().unwrap().to_owned();
    assert_eq!((salt.len(), pepper.len()), (64, 64));
    assert_eq!(
        body["usernames"],
        json!([{"prefix": "ext_", "pattern": "^(.*)@example\\.org$", "replace": "\\1"}])
    );

    // A new key: the same salts, and the history says the key changed.
    let new_key = "ssh-ed25519 AAAAnewkey agent@host";
    let rekeyed = send(&face.main, registration("project=PROJ", new_key)).await;
    assert_eq!(rekeyed.json()["salts"], body["salts"]);
    let events = face.events("gros_agent-PROJ.PROJ").await;
    let registrations = payload_fields(&events, "AgentRegistered", "rekeyed");
    assert_eq!(registrations, [json!(false), json!(true)]);

    // The preflight check passes: registered, never exported, from an allowed network.
    let preflight = send(&face.main, get("/auth/status.py?project=PROJ&agent=PROJ")).await;
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert_eq!(
        preflight.header("content-type").as_deref(),
        Some("application/json")
    );
    let status = preflight.json();
    assert_eq!(status["total"]["ok"], true);
    assert_eq!(status["configuration"]["contents"], "GROS_PROJECT=PROJ\n");

    // agent-config triggers a scrape on the agent's daemon; its output lands on the stream.
    let scrape = send(
        &face.daemon,
        "POST /scrape HTTP/1.1\r\nHost: localhost:7070\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
            .to_owned(),
    )
    .await;
    assert_eq!(answered(&scrape), (201, json!({"ok": true})));
    let events = face.wait_for_end("gros_agent-PROJ.PROJ", "scrape").await;
    let lines = payload_fields(&events, "ProcessOutput", "line");
    assert!(lines.contains(&json!("scraped")), "{events:#?}");
    assert!(lines.contains(&json!("scrape warning")), "{events:#?}");
    let end = events.iter().find(|e| finished("scrape")(e)).unwrap();
    assert_eq!(end["payload"]["exit_code"], 0);
    let idle = send(&face.daemon, get("/status")).await;
    assert_eq!(
        answered(&idle),
        (
            503,
            json!({"ok": false, "message": "No scrape process is running"})
        )
    );

    // The export: announced, and the import command runs without a shell of ours.
    let agent = json!({"user": "agent", "key": "PROJ", "hostname": "host", "version": "0.0.3"});
    let export = face.export_as("PROJ", &agent, &["data.json"]).await;
    assert_eq!(
        (export.status, export.text().as_str()),
        (202, ""),
        "{export:?}"
    );
    let events = face.wait_for_end("gros_agent-PROJ.PROJ", "import").await;
    let files = payload_fields(&events, "ExportAnnounced", "files");
    assert_eq!(files[0], r#"["data.json"]"#);
    let output: Vec<(&Value, &Value)> = of_type(&events, "ProcessOutput")
        .filter(|e| e["payload"]["process"] == "import")
        .map(|e| (&e["payload"]["stream"], &e["payload"]["line"]))
        .collect();
    assert!(
        output.contains(&(&json!("stdout"), &json!("importing PROJ"))),
        "{output:?}"
    );
    assert!(
        output.contains(&(&json!("stderr"), &json!("warned"))),
        "{output:?}"
    );

    // Right after an export, the next gather is an hour away: 503, with `total` saying why.
    let wait = send(&face.main, get("/auth/status.py?project=PROJ")).await;
    assert_eq!(wait.status, 503, "{wait:?}");
    let status = wait.json();
    assert_eq!(status["tracker"]["ok"], false);
    assert_eq!(status["total"]["ok"], false);
    assert_eq!(status["total"]["message"], "Some parts are not OK");

    // Python's logging HTTPHandler: an absolute-form request line, the record as a form.
    let record = "name=gatherer&levelname=WARNING&levelno=30&msg=disk+low&message=disk+low&\
                  created=1700000000.5&pathname=%2Fgather.py&lineno=12";
    let logged = send(
        &face.main,
        form("POST", "https://localhost/auth/log.py?project=PROJ", record),
    )
    .await;
    assert_eq!(logged.status, 202, "{logged:?}");
    let ignored = send(
        &face.main,
        form(
            "POST",
            "https://localhost/auth/log.py?project=PROJ",
            "levelname=INFO&msg=ignore+me+please",
        ),
    )
    .await;
    assert_eq!(ignored.status, 204, "{ignored:?}");
    let logs = face.events_of("gros_agent-PROJ.PROJ", "LogRecorded").await;
    assert_eq!(logs.len(), 1, "{logs:#?}");
    assert_eq!(logs[0]["payload"]["level"], "WARNING");
    assert_eq!(logs[0]["payload"]["message"], "disk low");
    assert_eq!(logs[0]["payload"]["fields"]["lineno"], "12");

    // BigBoat's measurements.
    let measurements =
        r#"[{"name":"cpu","checked_time":"2026-11-22 10:00:00","ok":true,"value":1.5,"max":4}]"#;
    let uploaded = send(
        &face.main,
        form(
            "POST",
            "/auth/status.py?project=PROJ",
            &format!("status={}&source=bigboat", urlencode(measurements)),
        ),
    )
    .await;
    assert_eq!(uploaded.status, 202, "{uploaded:?}");

    // agent-config's version check.
    let current = send(
        &face.main,
        get(&format!("/auth/version.py?version=0.0.3-master-{SHA}")),
    )
    .await;
    assert_eq!(
        answered(&current),
        (200, json!({"up_to_date": true, "version": SHA}))
    );
    let old = send(
        &face.main,
        get(&format!(
            "/auth/version.py?version=0.0.3-feature-x-{}",
            "f".repeat(40)
        )),
    )
    .await;
    assert_eq!(old.json()["up_to_date"], false);

    // The pseudonyms: SHA-256 of salt, value and pepper; global salts without a project.
    let encrypted = send(&face.main, get("/auth/encrypt.py?project=PROJ&value=jdoe")).await;
    let expected = hex::encode(sha2::Sha256::digest(format!("{salt}jdoe{pepper}")));
    assert_eq!(
        answered(&encrypted),
        (200, json!({"value": expected, "encryption": 1}))
    );
    let global = send(&face.main, get("/auth/encrypt.py?value=jdoe"))
        .await
        .json();
    assert_eq!(global["encryption"], 2);
    assert_ne!(global["value"], expected);
    let again = send(&face.main, get("/auth/encrypt.py?value=jdoe"))
        .await
        .json();
    assert_eq!(global, again);

    // access.py: the caller is on loopback, where every project allows agents.
    let access = send(&face.main, get("/auth/access.py")).await;
    assert_eq!(
        access.json(),
        json!(["BARE", "FAIL", "NOPE", "PROJ", "SLOW"])
    );

    // Everything the clients did is on the agent's stream, and no salt is.
    let events = face.events("gros_agent-PROJ.PROJ").await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in [
        "RegistrationStarted",
        "AgentRegistered",
        "PreflightChecked",
        "ProcessStarted",
        "ExportAnnounced",
        "LogRecorded",
        "MeasurementsRecorded",
    ] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    let project = face.events("gros_project-PROJ").await;
    assert_eq!(project[0]["type"], "SaltsCreated");
    let checks = face
        .events_of("gros_project-global", "VersionChecked")
        .await;
    assert!(!checks.is_empty());
    let everything = send(&face.main, get("/api/events?limit=1000")).await.text();
    assert!(!everything.contains(&salt) && !everything.contains(&pepper));
}

#[actix_rt::test]
async fn every_controller_error_has_its_exact_text() {
    let face = spawn(|_, _| {}).await;
    let version = format!("0.0.3-master-{SHA}");
    let cases: Vec<(String, u16, String)> = vec![
        (
            get("/auth/status.py"),
            400,
            "Project must be specified".into(),
        ),
        (
            get("/auth/status.py?project=PROJ&project=PROJ"),
            400,
            "Exactly one project must be specified".into(),
        ),
        (
            form("POST", "/auth/log.py?project=PROJ", "project=PROJ&msg=x"),
            400,
            "Exactly one project must be specified".into(),
        ),
        (
            get("/auth/status.py?project=proj"),
            400,
            "Project key must be all-uppercase, only alphabetic characters".into(),
        ),
        (
            get(&format!("/auth/status.py?project={}", "A".repeat(21))),
            400,
            "Project key must be all-uppercase, only alphabetic characters".into(),
        ),
        (
            get("/auth/status.py?project=OTHER"),
            404,
            "Project OTHER is not configured".into(),
        ),
        (
            get("/auth/status.py?project=PROJ&agent=a.b"),
            400,
            "Agent name must be 1 to 64 letters, digits, '-' or '_' characters".into(),
        ),
        (
            form("POST", "/auth/agent.py?project=PROJ", ""),
            400,
            "Public key must be provided as a POST message".into(),
        ),
        (
            form("POST", "/auth/agent.py?project=PROJ", "public_key=+"),
            400,
            "Public key must be provided as a POST message".into(),
        ),
        (
            get("/auth/agent.py?project=PROJ"),
            405,
            "/auth/agent.py does not accept GET requests".into(),
        ),
        (
            get("/auth/export.py?project=PROJ"),
            405,
            "/auth/export.py does not accept GET requests".into(),
        ),
        (
            get("/auth/log.py?project=PROJ&msg=x"),
            405,
            "/auth/log.py does not accept GET requests".into(),
        ),
        (
            form("PUT", "/auth/status.py?project=PROJ", ""),
            501,
            "Method PUT is not supported".into(),
        ),
        (
            get("/auth/encrypt.py"),
            400,
            "Value must be provided".into(),
        ),
        (
            get("/auth/encrypt.py?project=BARE&value=x"),
            404,
            "Project BARE has no salts".into(),
        ),
        (
            form("POST", "/auth/export.py?project=PROJ", "agent=not+json"),
            400,
            "agent must be JSON: expected ident at line 1 column 2".into(),
        ),
        (
            form("POST", "/auth/log.py?project=PROJ", ""),
            400,
            "No logging parameters were provided".into(),
        ),
        (
            form("POST", "/auth/status.py?project=PROJ", ""),
            400,
            "Status must be provided".into(),
        ),
        (
            form("POST", "/auth/status.py?project=PROJ", "status=%7B%7D"),
            400,
            "Status must be a JSON list: invalid type: map, expected a sequence at line 1 \
             column 0"
                .into(),
        ),
        (
            get("/auth/version.py"),
            400,
            "Version must be specified".into(),
        ),
        (
            get(&format!(
                "/auth/version.py?version={version}&version={version}"
            )),
            400,
            "Exactly one version must be specified".into(),
        ),
        (
            get(&format!("/auth/version.py?version=0.0.2-master-{SHA}")),
            400,
            "Can only compare version 0.0.3".into(),
        ),
        (
            get("/auth/version.py?version=0.0.3-master-abc"),
            400,
            "Version hash must be a valid commit hexsha".into(),
        ),
        (
            "POST /auth/log.py?project=PROJ HTTP/1.1\r\nHost: localhost\r\n\
             Connection: close\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\n\r\n{}"
                .to_owned(),
            400,
            "The body must be application/x-www-form-urlencoded".into(),
        ),
    ];
    for (request, status, text) in cases {
        let answer = send(&face.main, request.clone()).await;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (status, format!("{text}\n").as_str()),
            "{request}"
        );
        assert_eq!(
            answer.header("content-type").as_deref(),
            Some("text/plain; charset=utf-8"),
            "{request}"
        );
    }
}

#[actix_rt::test]
async fn bodies_over_the_limit_are_refused() {
    let face = spawn(|config, _| config.gros.max_body_kb = 1).await;
    let body = format!("msg={}", "x".repeat(2000));
    let answer = send(&face.main, form("POST", "/auth/log.py?project=PROJ", &body)).await;
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (413, "the request body is over the limit of 1024 bytes\n")
    );
}

#[actix_rt::test]
async fn a_record_too_large_for_the_log_is_refused_as_too_large() {
    // A body within the face's limit whose record makes an event over the log's.
    let face = spawn(|config, _| {
        config.gros.max_body_kb = 256;
        config.log.max_event_kb = 64;
    })
    .await;
    let body = format!("msg={}", "x".repeat(100_000));
    let answer = send(&face.main, form("POST", "/auth/log.py?project=PROJ", &body)).await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(
        answer
            .text()
            .starts_with("the record is too large to keep: an event of "),
        "{}",
        answer.text()
    );
    assert!(answer
        .text()
        .ends_with(" bytes is over the limit of 65536 bytes\n"));
}

#[actix_rt::test]
async fn concurrent_registrations_of_one_agent_are_refused_not_mixed() {
    let face = spawn(|_, _| {}).await;
    // Rounds of eight registrations at once, until one found the agent locked: each holds the
    // lock across a round trip to the secret store, so overlaps come quickly.
    let (mut salts, mut refused, mut rounds) = (Vec::new(), 0, 0);
    while refused == 0 {
        rounds += 1;
        assert!(rounds <= 50, "no registration ever overlapped another");
        let answers = futures_util::future::join_all((0..8).map(|_| face.register("racer"))).await;
        for answer in &answers {
            match answer.status {
                200 => salts.push(answer.json()["salts"].clone()),
                503 => {
                    refused += 1;
                    assert_eq!(
                        answer.text(),
                        "Agent racer is locked by another registration\n",
                        "{answer:?}"
                    );
                }
                _ => panic!("{answer:?}"),
            }
        }
    }
    assert!(!salts.is_empty());
    assert!(salts.windows(2).all(|w| w[0] == w[1]), "{salts:?}");
    // Whatever the interleaving, every registration that took the lock released it.
    let events = face.events("gros_agent-PROJ.racer").await;
    let started = of_type(&events, "RegistrationStarted").count();
    let ended = of_type(&events, "AgentRegistered").count()
        + of_type(&events, "RegistrationAbandoned").count();
    assert_eq!((started, ended), (salts.len(), salts.len()), "{events:#?}");
    let status = send(&face.main, get("/auth/status.py?project=PROJ&agent=racer")).await;
    assert_eq!(status.json()["lock"]["ok"], true);
    assert_eq!(status.json()["permissions"]["ok"], true);
}

#[actix_rt::test]
async fn agents_are_counted_by_their_registration_and_last_preflight_check() {
    let face = spawn(|_, _| {}).await;
    let empty = send(&face.main, get("/agents")).await;
    assert_eq!(
        (empty.status, empty.json()),
        (200, json!({"agents": 0, "by_status": {}}))
    );
    for agent in ["PROJ", "other"] {
        let registered = face.register(agent).await;
        assert_eq!(registered.status, 200, "{registered:?}");
    }
    // Registered, never exported, from an allowed network: the check passes.
    let preflight = send(&face.main, get("/auth/status.py?project=PROJ&agent=PROJ")).await;
    assert_eq!(preflight.status, 200, "{preflight:?}");
    // An agent of another project that never registered: its check fails.
    let unknown = send(&face.main, get("/auth/status.py?project=FAIL&agent=nobody")).await;
    assert_eq!(unknown.status, 503, "{unknown:?}");

    let agents = send(&face.main, get("/agents")).await;
    assert_eq!(agents.status, 200, "{agents:?}");
    assert_eq!(
        agents.json(),
        json!({"agents": 3, "by_status":
            {"preflight_passed": 1, "registered": 1, "unregistered": 1}})
    );
    // Only GET.
    let post = send(&face.main, form("POST", "/agents", "")).await;
    assert_eq!(post.status, 405, "{post:?}");
}

#[actix_rt::test]
async fn the_preflight_check_says_what_is_wrong() {
    let face = spawn(|config, _| {
        config.gros.projects[0].networks = vec!["10.0.0.0/8".into()];
        config.gros.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    // Not registered, and loopback is not in the project's networks.
    let answer = send(&face.main, get("/auth/status.py?project=PROJ")).await;
    assert_eq!(answer.status, 503);
    let status = answer.json();
    assert_eq!(status["permissions"]["ok"], false);
    assert_eq!(status["network"]["ok"], false);
    assert_eq!(status["total"]["message"], "Some parts are not OK");
    // The environment file is only handed to an agent that may gather.
    assert_eq!(
        status["configuration"],
        json!({"ok": false, "message": "Cannot look up environment due to other problems"})
    );
    // Through a trusted proxy, the forwarded address counts.
    let forwarded = send(
        &face.main,
        get_forwarded("/auth/status.py?project=PROJ", "192.0.2.1, 10.1.2.3"),
    )
    .await;
    assert_eq!(forwarded.json()["network"]["ok"], true, "{forwarded:?}");
    assert_eq!(
        forwarded.json()["network"]["message"],
        "10.1.2.3 is an allowed network address"
    );
    let access = send(&face.main, get_forwarded("/auth/access.py", "10.1.2.3")).await;
    assert_eq!(access.json(), json!(["PROJ"]));
}

/// A trusted proxy that writes something other than an address for its client (`unknown`, as
/// some proxies do) vouches for nobody: the hops before it were written by the client.
#[actix_rt::test]
async fn a_hop_that_is_not_an_address_ends_the_forwarded_chain() {
    let face = spawn(|config, _| {
        config.gros.projects[0].networks = vec!["10.0.0.0/8".into()];
        config.gros.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let answer = send(
        &face.main,
        get_forwarded("/auth/status.py?project=PROJ", "10.1.2.3, unknown"),
    )
    .await;
    assert_eq!(answer.json()["network"]["ok"], false, "{answer:?}");
    assert_eq!(
        answer.json()["network"]["message"],
        "127.0.0.1 is not in an allowed network"
    );
    let access = send(
        &face.main,
        get_forwarded("/auth/access.py", "10.1.2.3, unknown"),
    )
    .await;
    // The other projects allow loopback; PROJ allows only 10.0.0.0/8.
    assert_eq!(access.json(), json!(["BARE", "FAIL", "NOPE", "SLOW"]));
}

#[actix_rt::test]
async fn an_untrusted_peer_cannot_forward_its_address() {
    let face = spawn(|config, _| {
        config.gros.projects[0].networks = vec!["10.0.0.0/8".into()];
        config.gros.access_all_networks = vec!["127.0.0.1/32".into()];
    })
    .await;
    let answer = send(
        &face.main,
        get_forwarded("/auth/status.py?project=PROJ", "10.1.2.3"),
    )
    .await;
    assert_eq!(answer.json()["network"]["ok"], false);
    let access = send(&face.main, get("/auth/access.py")).await;
    assert_eq!(access.json(), json!(["*"]));
}

/// The agent daemon's refusal: the status of `status_line` ("503 Service Unavailable"), and
/// the error body that says it.
fn refusal(status_line: &str, message: &str) -> (u16, Value) {
    let status = status_line[..3].parse().unwrap();
    let body = json!({
        "ok": false,
        "error": {"status": status_line, "message": message, "traceback": null},
        "version": {"annals": env!("CARGO_PKG_VERSION")},
    });
    (status, body)
}

/// An answer's status and JSON body, to compare with what is expected of it whole.
fn answered(answer: &Answer) -> (u16, Value) {
    (answer.status, answer.json())
}

/// An empty POST, as agent-config sends to start a scrape.
async fn post(target: &Target, path: &str, host: &str) -> Answer {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    );
    send(target, request).await
}

#[actix_rt::test]
async fn the_agent_daemon_answers_as_upstream_does() {
    let face = spawn(|config, _| {
        config.gros.agent.host = "agent.example:7070".into();
        // Long enough for `exit 3` to be seen failing at once however loaded the machine is;
        // the long scrape below and the other tests keep the default, as a scrape still
        // running costs the whole wait.
        config.gros.scrape_start_check_ms = 5000;
    })
    .await;
    for (project, agent) in [("FAIL", "FAIL"), ("NOPE", "NOPE")] {
        assert_eq!(face.register_in(project, agent).await.status, 200);
    }
    // Without a length, a request of a method with a body is refused first, on any path, in
    // CherryPy's words; then the Host header; then the method.
    let lengthless = |method: &str, path: &str, host: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    };
    let length_required = refusal("411 Length Required", "Client must specify Content-Length");
    let cases = [
        (
            send(&face.daemon, lengthless("POST", "/scrape", "elsewhere")).await,
            length_required.clone(),
        ),
        (
            send(&face.daemon, lengthless("POST", "/status", "localhost")).await,
            length_required.clone(),
        ),
        (
            send(&face.daemon, lengthless("PUT", "/nowhere", "localhost")).await,
            length_required.clone(),
        ),
        (
            send(
                &face.main,
                lengthless("POST", "/agents/PROJ/PROJ/status", "localhost"),
            )
            .await,
            length_required,
        ),
        (
            // A chunked body says where it ends: no length needed.
            send(
                &face.daemon,
                "POST /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                    .to_owned(),
            )
            .await,
            (
                503,
                json!({"ok": false, "message": "No scrape process is running"}),
            ),
        ),
        (
            send(&face.daemon, get("/scrape")).await,
            refusal("403 Forbidden", "Invalid Host header"),
        ),
        (
            send(
                &face.daemon,
                lengthless("GET", "/scrape", "agent.example:7070"),
            )
            .await,
            refusal("400 Bad Request", "Must be POSTed"),
        ),
        (
            post(&face.daemon, "/scrape", "elsewhere").await,
            refusal("403 Forbidden", "Invalid Host header"),
        ),
        (
            send(&face.daemon, get("/nowhere")).await,
            refusal("404 Not Found", "The path '/nowhere' was not found."),
        ),
        (
            // `[gros.agent] host` is the local daemon's: the main listener does not check it.
            post(&face.main, "/agents/FAIL/FAIL/scrape", "controller.example").await,
            refusal("503 Service Unavailable", "Status code 3"),
        ),
        (
            post(&face.main, "/agents/NOPE/NOPE/scrape", "agent.example:7070").await,
            refusal(
                "500 Internal Server Error",
                "Scrape process could not be started: the program \"/nonexistent/scraper\" \
                 was not found",
            ),
        ),
        (
            post(&face.main, "/agents/BARE/BARE/scrape", "agent.example:7070").await,
            refusal(
                "404 Not Found",
                "No scrape command is configured for agent BARE.BARE",
            ),
        ),
        (
            send(&face.main, get("/agents/lower/x/status")).await,
            refusal(
                "404 Not Found",
                "Project key must be all-uppercase, only alphabetic characters",
            ),
        ),
    ];
    for (answer, expected) in cases {
        assert_eq!(answered(&answer), expected, "{answer:?}");
    }
    // The daemon's own listener counts its requests too.
    let metrics = send(&face.main, get("/metrics")).await;
    assert!(
        metrics.text().lines().any(|line| {
            line.starts_with("annals_http_requests_total{")
                && line.contains("route=\"/scrape\"")
                && line.contains("status=\"411\"")
        }),
        "{}",
        metrics.text()
    );

    // A long scrape: running, refused a second time, then done. On a server with the default
    // start check: a scrape still running is answered only once the whole check has passed.
    let long = spawn(|config, _| config.gros.agent.host = "agent.example:7070".into()).await;
    assert_eq!(long.register_in("SLOW", "a1").await.status, 200);
    let started = post(&long.main, "/agents/SLOW/a1/scrape", "agent.example:7070").await;
    assert_eq!(answered(&started), (201, json!({"ok": true})));
    let running = send(&long.main, get("/agents/SLOW/a1/status")).await;
    assert_eq!(
        answered(&running),
        (
            200,
            json!({"ok": true, "message": "Scrape process is running"})
        )
    );
    let again = post(&long.main, "/agents/SLOW/a1/scrape", "agent.example:7070").await;
    assert_eq!(
        answered(&again),
        refusal(
            "503 Service Unavailable",
            "Another scrape process is already running"
        )
    );
    std::fs::write(long.dir.path().join("stop"), "").unwrap();
    long.wait_for_end("gros_agent-SLOW.a1", "scrape").await;
    let idle = send(&long.main, get("/agents/SLOW/a1/status")).await;
    assert_eq!(idle.status, 503);
    let failed = face.events("gros_agent-FAIL.FAIL").await;
    let end = failed.iter().find(|e| finished("scrape")(e)).unwrap();
    assert_eq!(end["payload"]["outcome"], "exit code 3");

    common::snapshots(&[]).bind(|| {
        insta::assert_json_snapshot!("gros_agent_error", again.json(), {".version.annals" => "[version]"});
    });
}

#[actix_rt::test]
async fn scrapes_and_imports_are_stopped_at_their_timeouts() {
    let face = spawn(|config, _| {
        config.gros.scrape_timeout_s = 1;
        config.gros.import_timeout_s = 1;
        config.gros.kill_grace_s = 1;
        config.gros.scrape_start_check_ms = 100;
        config.gros.projects[3].scrape_command = sh("echo long; exec sleep 60");
        config.gros.projects[3].import_command = sh("echo long import; exec sleep 60");
    })
    .await;
    assert_eq!(face.register_in("SLOW", "SLOW").await.status, 200);
    let started = send(&face.main, form("POST", "/agents/SLOW/SLOW/scrape", "")).await;
    assert_eq!(started.status, 201, "{started:?}");
    let exported = face.export_as("SLOW", &json!({}), &[]).await;
    assert_eq!(exported.status, 202, "{exported:?}");
    let both = poll_async(WAIT, "both processes' ends", || async {
        let ends: Vec<Value> = face
            .events_of("gros_agent-SLOW.SLOW", "ProcessFinished")
            .await
            .into_iter()
            .map(|e| e["payload"].clone())
            .collect();
        (ends.len() == 2).then_some(ends)
    })
    .await;
    for end in both {
        assert_eq!(
            (&end["outcome"], &end["exit_code"]),
            (&json!("timed out"), &Value::Null),
            "{end}"
        );
    }
}

#[actix_rt::test]
async fn golden_preflight_body() {
    let face = spawn(|_, _| {}).await;
    face.register("PROJ").await;
    let answer = send(&face.main, get("/auth/status.py?project=PROJ")).await;
    common::snapshots(&[]).bind(|| {
        insta::assert_json_snapshot!("gros_status", answer.json());
    });
}

/// `annals serve` on a configuration file with one project, plain HTTP.
fn serve(dir: &Path) -> common::Served {
    std::fs::write(
        dir.join("annals.toml"),
        "[gros]\n[[gros.projects]]\nkey = \"PROJ\"\nnetworks = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    serve_in(dir)
}

/// `annals serve` as a child process on `dir/annals.toml`, its log in `dir/log`, its main
/// listener on a free port.
pub(crate) fn serve_in(dir: &Path) -> common::Served {
    serve_on(dir, "log", &[])
}

/// [`serve_in`] with its data in `dir/<data>` and these variables besides.
fn serve_on(dir: &Path, data: &str, envs: &[(&str, &str)]) -> common::Served {
    let (config, data) = (dir.join("annals.toml"), dir.join(data));
    let args = [
        "--config".as_ref(),
        config.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "serve".as_ref(),
    ];
    let mut all = vec![("ANNALS_HTTP_LISTEN", "127.0.0.1:0")];
    all.extend_from_slice(envs);
    common::spawn_serve(&args, &all).expect("the server starts")
}

#[test]
fn salts_survive_a_restart_and_are_never_written_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let register = |address: &str| {
        let target = plain(address);
        let registered = exchange(&target, registration("project=PROJ", KEY).as_bytes());
        assert_eq!(registered.status, 200, "{registered:?}");
        let global = exchange(&target, get("/auth/encrypt.py?value=v").as_bytes());
        (
            registered.json()["salts"].clone(),
            global.json()["value"].clone(),
        )
    };
    let served = serve(dir.path());
    let first = register(&served.address);
    assert!(served.terminate().success());
    let served = serve(dir.path());
    let second = register(&served.address);
    assert!(served.terminate().success());
    assert_eq!(first, second, "the same salts after a restart");

    let (salt, pepper) = (
        first.0["salt"].as_str().unwrap(),
        first.0["pepper"].as_str().unwrap(),
    );
    let found = common::every_file(dir.path());
    assert!(found.len() > 3, "{found:?}");
    for file in found {
        let bytes = std::fs::read(&file).unwrap();
        for secret in [salt, pepper] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a salt in clear",
                file.display()
            );
        }
    }
}

/// The pid that a process's line `<word> <pid>` gives on the agent's stream (not its
/// command, which says `<word> $$`).
fn said_pid(target: &Target, stream: &str, word: &str) -> Option<u32> {
    let events = exchange(target, stream.as_bytes()).json().to_string();
    events.split(&format!("{word} ")).skip(1).find_map(|rest| {
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    })
}

/// A server whose project `SLOW` has a scrape and an import that each say `<word> <pid>` and
/// `one`, wait for the file `first`, say `two`, wait for `second`, say `three` and exit 0; with
/// its agent registered and both started.
struct Slow {
    dir: tempfile::TempDir,
    served: common::Served,
    target: Target,
    scraping: u32,
    importing: u32,
}

const SCRAPE: &str = "POST /agents/SLOW/SLOW/scrape HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                      Content-Length: 0\r\n\r\n";
const SLOW_STREAM: &str = "/api/streams/gros_agent-SLOW.SLOW";

impl Slow {
    fn start(on_restart: &str) -> Slow {
        let dir = tempfile::tempdir().unwrap();
        let waiting = |word: &str| {
            let wait = |file: &str| {
                let file = dir.path().join(file);
                format!("while [ ! -e {} ]; do sleep 0.02; done", file.display())
            };
            format!(
                "[\"/bin/sh\", \"-c\", \"echo {word} $$; echo one; {}; echo two; {}; echo three\"]",
                wait("first"),
                wait("second"),
            )
        };
        std::fs::write(
            dir.path().join("annals.toml"),
            format!(
                "[gros]\non_restart = \"{on_restart}\"\n[[gros.projects]]\nkey = \"SLOW\"\n\
                 networks = [\"127.0.0.1\"]\nscrape_command = {}\nimport_command = {}\n",
                waiting("begun"),
                waiting("importing"),
            ),
        )
        .unwrap();
        let mut slow = Slow {
            served: serve_in(dir.path()),
            target: plain("127.0.0.1:1"),
            dir,
            scraping: 0,
            importing: 0,
        };
        slow.target = plain(&slow.served.address);
        let registered = exchange(&slow.target, registration("project=SLOW", KEY).as_bytes());
        assert_eq!(registered.status, 200, "{registered:?}");
        assert_eq!(exchange(&slow.target, SCRAPE.as_bytes()).status, 201);
        let export = form("POST", "/auth/export.py?project=SLOW", "files=%5B%5D");
        assert_eq!(exchange(&slow.target, export.as_bytes()).status, 202);
        slow.scraping = common::poll(WAIT, "the scrape's first line", || {
            said_pid(&slow.target, &get(SLOW_STREAM), "begun")
        });
        slow.importing = common::poll(WAIT, "the import's first line", || {
            said_pid(&slow.target, &get(SLOW_STREAM), "importing")
        });
        common::poll(WAIT, "both processes' second line", || {
            (slow.lines("scrape").len() == 2 && slow.lines("import").len() == 2).then_some(())
        });
        slow
    }

    /// A crash (no chance to record anything more), `while_down`, then a start on the same log.
    fn crash_and_restart(&mut self, while_down: impl FnOnce(&Slow)) {
        self.served.child.kill().unwrap();
        self.served.child.wait().unwrap();
        while_down(self);
        self.served = serve_in(self.dir.path());
        self.target = plain(&self.served.address);
    }

    /// Makes the file a process waits for.
    fn touch(&self, file: &str) {
        std::fs::write(self.dir.path().join(file), "").unwrap();
    }

    fn events(&self) -> Vec<Value> {
        let events = exchange(&self.target, get(SLOW_STREAM).as_bytes()).json();
        events["events"].as_array().unwrap().clone()
    }

    /// The lines recorded for `process`, in order.
    fn lines(&self, process: &str) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["type"] == "ProcessOutput" && e["payload"]["process"] == process)
            .map(|e| e["payload"]["line"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `(process, outcome)` of each recorded end.
    fn ends(&self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .filter(|e| e["type"] == "ProcessFinished")
            .map(|e| {
                let payload = &e["payload"];
                let text = |key: &str| payload[key].as_str().unwrap().to_owned();
                (text("process"), text("outcome"))
            })
            .collect()
    }

    /// The `/agents/…/status` code and `status.py`'s importer check.
    fn statuses(&self) -> (u16, bool) {
        let status = exchange(&self.target, get("/agents/SLOW/SLOW/status").as_bytes());
        let importer = exchange(
            &self.target,
            get("/auth/status.py?project=SLOW&agent=SLOW").as_bytes(),
        );
        let importer_ok = importer.json()["importer"]["ok"].as_bool().unwrap();
        (status.status, importer_ok)
    }

    /// A file of the run directory of `process` (`<agent id>.<process>.<start>`).
    fn run_file(&self, process: &str, file: &str) -> String {
        let runs = std::fs::read_dir(self.dir.path().join("log/gros-work")).unwrap();
        let prefix = format!("SLOW.SLOW.{process}.");
        runs.map(|entry| entry.unwrap().path())
            .find(|dir| {
                dir.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&prefix)
            })
            .and_then(|dir| std::fs::read_to_string(dir.join(file)).ok())
            .unwrap_or_default()
    }
}

#[test]
fn a_scrape_runs_on_across_a_crash_and_its_lines_are_recorded_once() {
    let mut slow = Slow::start("reattach");
    let (scraping, importing) = (slow.scraping, slow.importing);
    slow.crash_and_restart(|slow| {
        // Both outlive the server. The import's supervisor is then killed: the import has no
        // one left to record its end.
        assert!(common::runs(scraping) && common::runs(importing));
        let supervision: Value = serde_json::from_str(&slow.run_file("import", "supervision"))
            .expect("the import's supervision");
        let supervisor = supervision["supervisor"].as_u64().unwrap() as u32;
        let killed = std::process::Command::new("kill")
            .args(["-9", &supervisor.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        // The scrape goes on while the server is down.
        slow.touch("first");
        common::poll(WAIT, "the scrape's line while the server is down", || {
            slow.run_file("scrape", "stdout")
                .contains("two")
                .then_some(())
        });
    });
    // The scrape is followed on; the import, whose supervisor is gone, is stopped and says so.
    common::poll(WAIT, "the import's end", || {
        (!slow.ends().is_empty()).then_some(())
    });
    assert_eq!(
        slow.ends(),
        [(
            "import".to_owned(),
            annals::domain::gros::service::LOST.to_owned()
        )]
    );
    assert!(
        !common::runs(importing),
        "{importing} runs on after the restart"
    );
    assert!(common::runs(scraping));
    // The status pages see the real processes: a scrape runs, no import does; and a second
    // scrape is not started beside the one that runs on.
    assert_eq!(slow.statuses(), (200, true));
    assert_eq!(exchange(&slow.target, SCRAPE.as_bytes()).status, 503);
    slow.touch("second");
    common::poll(WAIT, "the scrape's end", || {
        (slow.ends().len() == 2).then_some(())
    });
    assert_eq!(slow.ends()[1], ("scrape".into(), "exit code 0".into()));
    let said = |word: &str, pid: u32| format!("{word} {pid}");
    assert_eq!(
        slow.lines("scrape"),
        [&said("begun", scraping), "one", "two", "three"]
    );
    assert_eq!(slow.lines("import"), [&said("importing", importing), "one"]);
    assert_eq!(slow.statuses(), (503, true));
    common::poll(WAIT, "the run directories removed", || {
        let left = std::fs::read_dir(slow.dir.path().join("log/gros-work")).unwrap();
        (left.count() == 0).then_some(())
    });
    assert!(slow.served.terminate().success());
}

#[test]
fn an_import_that_ends_while_the_server_is_down_has_its_real_end_recorded() {
    let mut slow = Slow::start("reattach");
    let importing = slow.importing;
    slow.crash_and_restart(|slow| {
        slow.touch("first");
        slow.touch("second");
        // Its supervisor records the end once the output is in its file.
        common::poll(WAIT, "the import's end while the server is down", || {
            (!slow.run_file("import", "exit").is_empty()).then_some(())
        });
        assert!(!common::runs(importing));
        assert!(slow.run_file("import", "stdout").contains("three"));
    });
    common::poll(WAIT, "both ends", || (slow.ends().len() == 2).then_some(()));
    let mut ends = slow.ends();
    ends.sort();
    assert_eq!(
        ends,
        [
            ("import".into(), "exit code 0".into()),
            ("scrape".into(), "exit code 0".into())
        ]
    );
    let importing = format!("importing {importing}");
    assert_eq!(slow.lines("import"), [&importing, "one", "two", "three"]);
    assert!(slow.served.terminate().success());
}

#[test]
fn with_on_restart_kill_a_scrape_and_an_import_cut_short_by_a_crash_are_stopped_and_settled() {
    let mut slow = Slow::start("kill");
    let (scraping, importing) = (slow.scraping, slow.importing);
    slow.crash_and_restart(|_| {});
    let mut ends = slow.ends();
    ends.sort();
    let interrupted = "interrupted: the server stopped".to_owned();
    assert_eq!(
        ends,
        [
            ("import".into(), interrupted.clone()),
            ("scrape".into(), interrupted)
        ]
    );
    assert_eq!(slow.statuses(), (503, true));
    // Both were stopped before they were settled: the log says they ended, and they have.
    for pid in [scraping, importing] {
        assert!(!common::runs(pid), "{pid} runs on after the restart");
    }
    // So a new scrape is the only one.
    assert_eq!(exchange(&slow.target, SCRAPE.as_bytes()).status, 201);
    slow.touch("first");
    slow.touch("second");
    assert!(slow.served.terminate().success());
}

/// A scrape starts a process, so on the main listener only a caller in the project's
/// networks may ask for one; the agent daemon's own listener is the agent's host's.
#[actix_rt::test]
async fn a_scrape_from_outside_the_projects_networks_is_refused() {
    let face = spawn(|config, _| {
        config.gros.projects[0].networks = vec!["10.0.0.0/8".into()];
    })
    .await;
    assert_eq!(face.register("PROJ").await.status, 200);
    let refused = post(&face.main, "/agents/PROJ/PROJ/scrape", "agent.example:7070").await;
    assert_eq!(
        answered(&refused),
        refusal(
            "403 Forbidden",
            "The caller's address is not in the networks of project PROJ"
        )
    );
    let idle = send(&face.main, get("/agents/PROJ/PROJ/status")).await;
    assert_eq!(idle.status, 503, "nothing started: {idle:?}");
    let unknown = post(&face.main, "/agents/ZZZ/ZZZ/scrape", "agent.example:7070").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let local = post(&face.daemon, "/scrape", "agent.example:7070").await;
    assert_eq!(local.status, 201, "{local:?}");
}

/// agent-config's scrape button gives up after 1 s: on the default start check, a scrape that
/// keeps running is answered 201 well within that.
#[actix_rt::test]
async fn a_scrape_is_answered_well_within_agent_configs_timeout_by_default() {
    let face = spawn(|config, dir| {
        config.gros.scrape_start_check_ms =
            annals::config::GrosSection::default().scrape_start_check_ms;
        config.gros.projects[0].scrape_command = sh(&until_exists(&dir.join("stop")));
    })
    .await;
    let began = std::time::Instant::now();
    let started = post(&face.daemon, "/scrape", "localhost:7070").await;
    let took = began.elapsed();
    assert_eq!(answered(&started), (201, json!({"ok": true})));
    // 1 s is agent-config's `scrape_timeout`; the margin is for a loaded machine.
    assert!(took < Duration::from_millis(700), "answered after {took:?}");
    std::fs::write(face.dir.path().join("stop"), "").unwrap();
    face.wait_for_end("gros_agent-PROJ.PROJ", "scrape").await;
}

/// gros-gatherer's `preflight.py`: the warning it logs for a 503, from the answer's parts.
fn preflight_warning(status: &Value) -> String {
    let mut problems = vec!["controller-service-unavailable".to_owned()];
    for (key, value) in status.as_object().unwrap() {
        if key != "total" && value["ok"] == false {
            let message = value["message"].as_str().unwrap_or("Not OK");
            problems.push(format!("Status '{key}': {message}"));
        }
    }
    format!(
        "Controller status: {}: {}",
        status["total"]["message"].as_str().unwrap(),
        problems.join(", ")
    )
}

/// An agent of several projects is named by its first project's key in every one of them
/// (`Configuration.get_agent_key()`), and says so in its export's `agent.key`: the export
/// counts against that agent, so its next preflight for the project waits for the gather
/// interval and the import, reported so that the agent's own log ignore pattern matches.
#[actix_rt::test]
async fn an_export_counts_against_the_agent_that_sent_it() {
    let face = spawn(|config, dir| {
        config.gros.projects[3].import_command = sh(&until_exists(&dir.join("import-stop")));
    })
    .await;
    let registered = face.register_in("SLOW", "PROJ").await;
    assert_eq!(registered.status, 200, "{registered:?}");
    let preflight = || send(&face.main, get("/auth/status.py?project=SLOW&agent=PROJ"));
    let before = preflight().await;
    assert_eq!(before.status, 200, "{before:?}");
    assert_eq!(
        before.json()["configuration"]["contents"],
        "GROS_PROJECT=SLOW\n"
    );

    // export_files.py's announcement, as the agent of PROJ and SLOW sends it for SLOW.
    let agent = json!({"user": "agent", "key": "PROJ", "hostname": "host", "version": "0.0.3"});
    face.assert_export_counts_against("SLOW", &agent, "PROJ")
        .await;

    let after = preflight().await;
    assert_eq!(after.status, 503, "{after:?}");
    let status = after.json();
    assert_eq!(status["tracker"]["ok"], false);
    let wait = status["tracker"]["message"].as_str().unwrap();
    let form_of_wait =
        regex::Regex::new(r"^Next scheduled gather moment is in 0:59:[0-5][0-9](\.[0-9]{6})?$")
            .unwrap();
    assert!(form_of_wait.is_match(wait), "{wait}");
    assert_eq!(status["importer"]["ok"], false, "{status}");
    assert_eq!(status["total"]["message"], "Some parts are not OK");
    assert!(
        status["configuration"].get("contents").is_none(),
        "{status}"
    );
    // gros-gatherer's `Log_Setup.IGNORE_MESSAGES` entry for this warning.
    let ignored = regex::Regex::new(concat!(
        r"^Controller status: Some parts are not OK: .*",
        r"Status 'tracker': Next scheduled gather moment is in"
    ))
    .unwrap();
    let warning = preflight_warning(&status);
    assert!(ignored.is_match(&warning), "{warning}");

    // A `user` of the form agent-<name> names the agent when there is no key; an unusable key
    // is refused.
    let by_user = json!({"user": "agent-other", "key": "-"});
    face.assert_export_counts_against("PROJ", &by_user, "other")
        .await;
    let bad = face.export_as("PROJ", &json!({"key": "a b"}), &[]).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(
        bad.text(),
        "The agent's key \"a b\": Agent name must be 1 to 64 letters, digits, '-' or '_' \
         characters\n"
    );
    std::fs::write(face.dir.path().join("import-stop"), "").unwrap();
    face.wait_for_end("gros_agent-SLOW.PROJ", "import").await;
}

/// The main listener answers for every project's agents, so only a registered agent's scrape
/// starts a process there, and at most `[gros] max_agent_scrapes` run at once; the local
/// daemon's own listener is neither gated nor counted.
#[actix_rt::test]
async fn scrapes_on_the_main_listener_are_for_registered_agents_and_capped() {
    let face = spawn(|config, dir| {
        config.gros.max_agent_scrapes = 1;
        config.gros.projects[0].scrape_command = sh(&until_exists(&dir.join("stop")));
    })
    .await;
    for path in ["/agents/SLOW/madeup/scrape", "/agents/SLOW/madeup/status"] {
        let unknown = post(&face.main, path, "localhost").await;
        assert_eq!(
            answered(&unknown),
            refusal("404 Not Found", "Agent SLOW.madeup is not registered"),
            "{path}"
        );
    }
    assert!(face.events("gros_agent-SLOW.madeup").await.is_empty());

    for agent in ["a1", "a2"] {
        assert_eq!(face.register_in("SLOW", agent).await.status, 200);
    }
    let first = post(&face.main, "/agents/SLOW/a1/scrape", "localhost").await;
    assert_eq!(first.status, 201, "{first:?}");
    let full = post(&face.main, "/agents/SLOW/a2/scrape", "localhost").await;
    assert_eq!(
        answered(&full),
        refusal(
            "503 Service Unavailable",
            "Too many scrapes are running: at most 1 at once"
        )
    );
    // The agent's own scrape running is said as such, not as a full daemon.
    let again = post(&face.main, "/agents/SLOW/a1/scrape", "localhost").await;
    assert_eq!(
        again.json()["error"]["message"],
        "Another scrape process is already running"
    );
    // The local agent's daemon is not counted against the shared ones.
    let local = post(&face.daemon, "/scrape", "localhost").await;
    assert_eq!(local.status, 201, "{local:?}");

    // The slot is free again once the scrape ends.
    std::fs::write(face.dir.path().join("stop"), "").unwrap();
    face.wait_for_end("gros_agent-SLOW.a1", "scrape").await;
    let second = poll_async(WAIT, "a free slot", || async {
        let answer = post(&face.main, "/agents/SLOW/a2/scrape", "localhost").await;
        (answer.status != 503).then_some(answer)
    })
    .await;
    assert_eq!(second.status, 201, "{second:?}");
    face.wait_for_end("gros_agent-SLOW.a2", "scrape").await;
    face.wait_for_end("gros_agent-PROJ.PROJ", "scrape").await;
}

/// Upstream's `export.py` takes the `agent` field as optional: without it, the export counts
/// against the agent named after the project, and the import starts all the same.
#[actix_rt::test]
async fn an_export_without_an_agent_field_counts_against_the_projects_agent() {
    let face = spawn(|_, _| {}).await;
    for body in ["files=%5B%5D", ""] {
        let export = send(
            &face.main,
            form("POST", "/auth/export.py?project=PROJ", body),
        )
        .await;
        assert_eq!(
            (export.status, export.text().as_str()),
            (202, ""),
            "{body:?}"
        );
    }
    let events = face.wait_for_end("gros_agent-PROJ.PROJ", "import").await;
    let announced = payload_fields(&events, "ExportAnnounced", "agent");
    assert_eq!(announced, [json!("null"), json!("null")], "{events:#?}");
}

/// The CGI scripts that only read (`access.py`, `encrypt.py`, `version.py`) answer whatever
/// the method, as upstream's do, with a form body's parameters merged in; those that change
/// state take POST only, and `status.py` GET and POST, as upstream's.
#[actix_rt::test]
async fn the_reading_scripts_answer_any_method() {
    let face = spawn(|_, _| {}).await;
    let projects = send(&face.main, get("/auth/access.py")).await.json();
    let version = urlencode(&format!("0.0.3-master-{SHA}"));
    for method in ["POST", "PUT"] {
        let compared = send(
            &face.main,
            form(method, "/auth/version.py", &format!("version={version}")),
        )
        .await;
        assert_eq!(
            answered(&compared),
            (200, json!({"up_to_date": true, "version": SHA})),
            "{method}"
        );
        let access = send(&face.main, form(method, "/auth/access.py", "")).await;
        assert_eq!(answered(&access), (200, projects.clone()), "{method}");
        let encrypted = send(&face.main, form(method, "/auth/encrypt.py", "value=x")).await;
        assert_eq!(
            (encrypted.status, encrypted.json()["encryption"].clone()),
            (200, json!(2)),
            "{method}"
        );
    }
}

/// A scrape asked for now skips the schedule: upstream's daemon starts `scrape.sh` with
/// `PREFLIGHT_ARGS=--skip`, which `run.sh` hands to `preflight.py`, so that a scrape started
/// from agent-config's button is not stopped by the gather interval. The scrape command gets
/// the same, from either listener.
#[actix_rt::test]
async fn a_scrape_asked_for_now_skips_the_preflight_schedule() {
    let face = spawn(|config, _| {
        config.gros.projects[0].scrape_command = sh("echo \"preflight args: $PREFLIGHT_ARGS\"");
    })
    .await;
    assert_eq!(face.register("PROJ").await.status, 200);
    for (target, path) in [
        (&face.daemon, "/scrape"),
        (&face.main, "/agents/PROJ/PROJ/scrape"),
    ] {
        let scrape = post(target, path, "localhost").await;
        assert_eq!(scrape.status, 201, "{path}: {scrape:?}");
        poll_async(WAIT, "the scrape's end", || async {
            let events = face.events("gros_agent-PROJ.PROJ").await;
            let ended = events.iter().filter(|e| finished("scrape")(e)).count();
            (ended == 1 + usize::from(path != "/scrape")).then_some(())
        })
        .await;
    }
    let events = face.events("gros_agent-PROJ.PROJ").await;
    let lines = payload_fields(&events, "ProcessOutput", "line");
    assert_eq!(
        lines,
        [
            json!("preflight args: --skip"),
            json!("preflight args: --skip")
        ]
    );
}

/// Every event of `stream`, page after page.
async fn every_event(face: &Face, stream: &str) -> Vec<Value> {
    common::app::stream_events(stream, |uri| async move {
        let answer = send(&face.main, get(&uri)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json()
    })
    .await
}

/// Runs the local agent's scrape with this command and gives its output events once it ended.
async fn scrape_output(command: &str) -> Vec<Value> {
    let face = spawn(|config, _| config.gros.projects[0].scrape_command = sh(command)).await;
    let scrape = post(&face.daemon, "/scrape", "localhost").await;
    assert_eq!(scrape.status, 201, "{scrape:?}");
    let events = poll_async(WAIT, "the scrape's end", || async {
        let events = every_event(&face, "gros_agent-PROJ.PROJ").await;
        events.iter().any(finished("scrape")).then_some(events)
    })
    .await;
    of_type(&events, "ProcessOutput").cloned().collect()
}

/// A process that writes many lines at once has them recorded in a few appends, not one each:
/// every line is still its own `ProcessOutput`, in order. The journal seals each round with one
/// time and the output has one append in flight at a time, so each `recorded_at` is one append.
#[actix_rt::test]
async fn many_lines_of_output_are_recorded_in_a_few_appends() {
    let output = scrape_output("seq 1 2000").await;
    common::app::assert_seq_in_a_few_appends(&output, "/payload/line");
}

/// A process's output is capped per run, in lines: past the limit lines are counted, and one
/// last line on `stderr` says how many more there were.
#[actix_rt::test]
async fn a_run_records_at_most_its_limit_of_lines() {
    use annals::domain::gros::service::OUTPUT_LIMITS;
    let max = OUTPUT_LIMITS.max_items;
    let output = scrape_output(&format!("seq 1 {}", max + 5)).await;
    assert_eq!(output.len() as u64, max + 1);
    assert_eq!(
        output[max as usize - 1]["payload"]["line"],
        json!(max.to_string())
    );
    let last = &output[max as usize]["payload"];
    assert_eq!(last["stream"], "stderr");
    let bytes: usize = (max + 1..=max + 5).map(|n| n.to_string().len()).sum();
    assert_eq!(
        last["line"],
        json!(format!(
            "annals: 5 more lines ({bytes} bytes) of output were not recorded: a run records \
             at most {max} lines and {} bytes",
            OUTPUT_LIMITS.max_bytes
        ))
    );
}

/// The cap in bytes: a line longer than the line limit comes in pieces, and the pieces past
/// the run's bytes are counted, not recorded.
#[actix_rt::test]
async fn a_run_records_at_most_its_limit_of_bytes() {
    use annals::domain::gros::service::OUTPUT_LIMITS;
    let piece = annals::process::DEFAULT_MAX_LINE_BYTES as u64;
    let total = OUTPUT_LIMITS.max_bytes + 3 * piece + 10;
    let output = scrape_output(&format!("head -c {total} /dev/zero | tr '\\0' x")).await;
    let kept = OUTPUT_LIMITS.max_bytes / piece;
    assert_eq!(output.len() as u64, kept + 1);
    let recorded: u64 = output[..kept as usize]
        .iter()
        .map(|e| e["payload"]["line"].as_str().unwrap().len() as u64)
        .sum();
    assert_eq!(recorded, OUTPUT_LIMITS.max_bytes);
    let note = output[kept as usize]["payload"]["line"].as_str().unwrap();
    assert!(
        note.starts_with(&format!(
            "annals: 4 more lines ({} bytes) of output were not recorded",
            total - OUTPUT_LIMITS.max_bytes
        )),
        "{note}"
    );
}

/// Two nodes on one PostgreSQL log (the same master key: the projects' salts are shared): an
/// agent registered, scraping and exporting through node b has its scrape and its import run
/// on node a, which holds every shard (it started first); a scrape that fails at once is
/// reported so by b; every line and end is recorded once, and read alike on either node.
#[test]
fn an_agents_processes_run_on_the_node_holding_its_shard() {
    let url = common::postgres::server().new_database();
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let waiting = |word: &str| {
        format!(
            "[\"/bin/sh\", \"-c\", \"echo {word} $$; echo one; \
             while [ ! -e {} ]; do sleep 0.02; done; echo two\"]",
            go.display()
        )
    };
    let config = dir.path().join("annals.toml");
    std::fs::write(
        &config,
        format!(
            "[gros]\n[[gros.projects]]\nkey = \"SLOW\"\nnetworks = [\"127.0.0.1\"]\n\
             scrape_command = {}\nimport_command = {}\n\
             [[gros.projects]]\nkey = \"FAIL\"\nnetworks = [\"127.0.0.1\"]\n\
             scrape_command = [\"/bin/sh\", \"-c\", \"exit 3\"]\n",
            waiting("begun"),
            waiting("importing"),
        ),
    )
    .unwrap();
    let master_key = "12".repeat(32);
    let node = |name: &str| {
        let envs = [
            ("ANNALS_LOG_BACKEND", "postgres"),
            ("ANNALS_LOG_POSTGRES_URL", url.as_str()),
            ("ANNALS_LOG_POSTGRES_LEASE_S", "1"),
            ("ANNALS_MASTER_KEY", master_key.as_str()),
        ];
        serve_on(dir.path(), name, &envs)
    };
    let a = node("a");
    let b = node("b");
    let (on_a, on_b) = (plain(&a.address), plain(&b.address));
    for project in ["SLOW", "FAIL"] {
        let registered = exchange(
            &on_b,
            registration(&format!("project={project}"), KEY).as_bytes(),
        );
        assert_eq!(registered.status, 200, "{registered:?}");
    }
    assert_eq!(exchange(&on_b, SCRAPE.as_bytes()).status, 201);
    let failing = SCRAPE.replace("SLOW/SLOW", "FAIL/FAIL");
    let failed = exchange(&on_b, failing.as_bytes());
    assert_eq!(failed.status, 503, "{failed:?}");
    assert_eq!(failed.json()["error"]["message"], "Status code 3");
    let export = form("POST", "/auth/export.py?project=SLOW", "files=%5B%5D");
    assert_eq!(exchange(&on_b, export.as_bytes()).status, 202);
    for word in ["begun", "importing"] {
        let pid = common::poll(WAIT, word, || said_pid(&on_b, &get(SLOW_STREAM), word));
        assert!(
            common::supervised_under(pid, &dir.path().join("a")),
            "{word}: runs on node a"
        );
    }
    std::fs::write(&go, "").unwrap();
    let ends = |on: &Target| {
        let events = exchange(on, get(SLOW_STREAM).as_bytes()).json();
        let events = events["events"].as_array().unwrap().clone();
        let outcomes: Vec<String> = events
            .iter()
            .filter(|e| e["type"] == "ProcessFinished")
            .map(|e| e["payload"]["outcome"].as_str().unwrap().to_owned())
            .collect();
        let lines = events
            .iter()
            .filter(|e| e["type"] == "ProcessOutput")
            .count();
        (outcomes, lines)
    };
    let ended = common::poll(WAIT, "both ends", || {
        let (outcomes, lines) = ends(&on_b);
        (outcomes.len() == 2).then_some((outcomes, lines))
    });
    assert_eq!(ended.0, ["exit code 0", "exit code 0"]);
    assert_eq!(ended.1, 6, "three lines each, once");
    assert_eq!(ends(&on_a), ended);
    for node in [a, b] {
        assert!(node.terminate().success());
    }
}
