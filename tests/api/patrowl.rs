//! The scan engine face against the real server (in-process on port 0, real sled and blob
//! store in a temporary directory), with real targets: TCP and HTTP(S) listeners on 127.0.0.1
//! and real child processes. PatrowlManager's sequence for each scanner kind, every route with
//! its body shape (golden files), every refusal, stop, stopscans, clean, both base spellings,
//! the face's own listener, auth, and a restart of `annals serve` in the middle of a scan.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use annals::auth::{new_token, Role};
use annals::config::{Config, EngineConfig, ScannerKind};
use common::app::{items, strings, TestApp};
use serde_json::{json, Value};

/// How long a scan may take to end in these tests.
const SCAN_DEADLINE: Duration = Duration::from_secs(60);

struct Face {
    main: String,
    /// The face's own listener.
    own: String,
    client: awc::Client,
    dir: tempfile::TempDir,
}

type Answer = common::app::Answer<common::app::Patrowl>;

/// A `command` engine running `sh -c script`.
fn command_engine(name: &str, script: &str) -> EngineConfig {
    EngineConfig {
        name: name.into(),
        scanner: ScannerKind::Command,
        // Stated, so that the golden bodies do not follow annals' own version.
        version: "1.0".into(),
        description: format!("sh -c for {name}"),
        allowed_asset_types: vec!["ip".into(), "fqdn".into(), "keyword".into()],
        command: vec!["sh".into(), "-c".into(), script.into()],
        kill_grace_s: 1,
        ..EngineConfig::default()
    }
}

/// Writes one finding per asset (with what it read on standard input), marks each asset
/// done, writes a line that is not JSON and one on standard error.
const FINDINGS_SCRIPT: &str = r#"input=$(cat)
printf '{"title":"Seen","severity":"high","confidence":"firm","description":"read from stdin","type":"seen","raw":%s,"target":{"addr":["a.example"],"protocol":"tcp","port_id":443},"tags":["t"],"links":["https://example.org/"]}\n' "$input"
echo '{"title":"Plain"}'
echo '{"asset_done":"a.example"}'
echo 'not json at all'
echo '{"unexpected":1}'
echo 'warming up' >&2
"#;

/// The engines of the tests: the defaults (`tcp`, `http`) and command engines.
fn engines(config: &mut Config, dir: &std::path::Path) {
    let pid_file = dir.join("slow.pid");
    let slow = format!(
        "echo $$ > {}; echo '{{\"title\":\"started\"}}'; exec sleep 60",
        pid_file.display()
    );
    let mut slow = command_engine("slow", &slow);
    slow.max_scans = 1;
    let mut timeout = command_engine("timeout", "sleep 30");
    timeout.timeout_s = 1;
    let mut cmd = command_engine("cmd", FINDINGS_SCRIPT);
    cmd.options = toml::toml! {
        depth = 1
        mode = "fast"
    };
    config.patrowl.engines.extend([
        command_engine("missing", "unused"),
        cmd,
        command_engine(
            "failing",
            "echo '{\"title\":\"partial\"}'; echo 'no such thing' >&2; exit 3",
        ),
        slow,
        timeout,
    ]);
    for engine in &mut config.patrowl.engines {
        if engine.name == "missing" {
            engine.command = vec!["/nonexistent/scanner".into()];
        }
        engine.connect_timeout_ms = 500;
        engine.request_timeout_ms = 5000;
    }
}

async fn spawn(configure: impl FnOnce(&mut Config)) -> Face {
    let app = TestApp::start(common::app::t0_clock(), |config, dir| {
        config.partisci.enabled = false;
        config.refstack.enabled = false;
        engines(config, dir);
        configure(config);
    })
    .await;
    Face {
        own: TestApp::own(app.addresses.of("patrowl")),
        main: app.main,
        client: awc::Client::builder()
            .disable_redirects()
            .timeout(Duration::from_secs(60))
            .finish(),
        dir: app.dir,
    }
}

impl Face {
    async fn send(&self, request: awc::ClientRequest, body: Vec<u8>) -> Answer {
        Answer::send(request, body, 64 << 20).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.main)), Vec::new())
            .await
    }

    async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Answer {
        let request = self
            .client
            .post(format!("{}{path}", self.main))
            .insert_header(("content-type", "application/json"));
        self.send(request, body.into()).await
    }

    /// Starts a scan; the answer.
    async fn start(&self, engine: &str, body: Value) -> Answer {
        self.post(&format!("/engines/{engine}/startscan"), body.to_string())
            .await
    }

    /// Starts a scan of 127.0.0.1; the answer.
    async fn start_local(&self, engine: &str, scan_id: Value, options: Value) -> Answer {
        self.start(engine, scan_body(scan_id, ip_asset("127.0.0.1"), options))
            .await
    }

    /// Starts a scan that must be accepted; the answer.
    async fn accept(&self, engine: &str, body: Value) -> Answer {
        let answer = self.start(engine, body).await;
        assert_eq!(answer.status, 200, "{}", answer.json());
        answer
    }

    /// Starts a scan of 127.0.0.1 that must be accepted; the answer.
    async fn accept_local(&self, engine: &str, scan_id: Value, options: Value) -> Answer {
        self.accept(engine, scan_body(scan_id, ip_asset("127.0.0.1"), options))
            .await
    }

    /// The scan's report as the running engines send it (`Accept: application/json`).
    async fn json_report(&self, engine: &str, scan_id: &str) -> Answer {
        let url = format!("{}/engines/{engine}/getreport/{scan_id}", self.main);
        let request = self
            .client
            .get(url)
            .insert_header(("accept", "application/json"));
        self.send(request, Vec::new()).await
    }

    /// Polls `status/<id>` as PatrowlManager does, until the scan leaves STARTED and
    /// SCANNING; its last status body.
    async fn wait_ended(&self, engine: &str, scan_id: &str) -> Value {
        common::poll_async(SCAN_DEADLINE, "the scan to end", || async {
            let answer = self
                .get(&format!("/engines/{engine}/status/{scan_id}"))
                .await;
            assert_eq!(answer.status, 200, "{}", answer.json());
            let body = answer.json();
            let status = body["status"].as_str().unwrap().to_owned();
            assert!(
                ["STARTED", "SCANNING", "FINISHED", "ERROR", "STOPPED"].contains(&status.as_str()),
                "{body}"
            );
            (!["STARTED", "SCANNING"].contains(&status.as_str())).then_some(body)
        })
        .await
    }

    /// Waits for the scan to finish, polling as PatrowlManager does; its `getfindings` body.
    async fn finished_findings(&self, engine: &str, scan_id: &str) -> Value {
        let ended = self.wait_ended(engine, scan_id).await;
        assert_eq!(ended["status"], "FINISHED", "{ended}");
        self.get(&format!("/engines/{engine}/getfindings/{scan_id}"))
            .await
            .json()
    }

    /// The first finding of scan 1 on `engine` as its log keeps it.
    async fn first_reported(&self, engine: &str) -> Value {
        let history = self
            .get(&format!("/api/streams/scan-{engine}-1"))
            .await
            .json();
        common::app::first_of_type(&history, "FindingReported")["payload"]["finding"].clone()
    }

    /// Waits until the scan's status is `wanted`.
    async fn wait_for(&self, engine: &str, scan_id: &str, wanted: &str) -> Value {
        common::poll_async(SCAN_DEADLINE, wanted, || async {
            let body = self
                .get(&format!("/engines/{engine}/status/{scan_id}"))
                .await
                .json();
            (body["status"] == wanted).then_some(body)
        })
        .await
    }
}

/// Scan 1 of `a.example` on a `command` engine `name` that prints `lines`: the face and the
/// scan's findings.
async fn findings_of_lines(name: &str, lines: &[&Value]) -> (Face, Value) {
    let script: Vec<String> = lines.iter().map(|line| format!("echo '{line}'")).collect();
    let script = script.join("; ");
    let face = spawn(|config| {
        config.patrowl.engines.push(command_engine(name, &script));
    })
    .await;
    let asset = json!([{"id": 1, "value": "a.example", "datatype": "fqdn"}]);
    face.accept(name, scan_body(json!(1), asset, json!({})))
        .await;
    let findings = face.finished_findings(name, "1").await;
    (face, findings)
}

fn scan_body(scan_id: Value, assets: Value, options: Value) -> Value {
    json!({"assets": assets, "options": options, "engine_id": 1, "scan_id": scan_id})
}

fn ip_asset(value: &str) -> Value {
    json!([{"id": 1, "value": value, "criticity": "low", "datatype": "ip"}])
}

/// The entries of a ZIP archive, by name.
pub(crate) fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP archive");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).unwrap();
            let mut content = Vec::new();
            file.read_to_end(&mut content).unwrap();
            (file.name().to_owned(), content)
        })
        .collect()
}

#[actix_rt::test]
async fn patrowl_managers_sequence_with_the_tcp_engine_finds_the_open_ports_only() {
    let face = spawn(|_| {}).await;
    let open: Vec<std::net::TcpListener> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let open_ports: Vec<u16> = open
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };

    let status = face.get("/engines/tcp/status").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["status"], "READY");
    assert_eq!(status.json()["scanner"]["name"], "tcp");

    // PatrowlManager sends an integer scan id and the options as a JSON string.
    let ports: Vec<String> = open_ports
        .iter()
        .chain([closed].iter())
        .map(u16::to_string)
        .collect();
    let options = json!({ "ports": ports }).to_string();
    let answer = face.accept_local("tcp", json!(101), json!(options)).await;
    assert_eq!(
        answer.json(),
        json!({"page": "startscan", "status": "accepted", "details": {"scan_id": "101"}})
    );
    let ended = face.wait_ended("tcp", "101").await;
    assert_eq!(ended["status"], "FINISHED", "{ended}");

    let findings = face.get("/engines/tcp/getfindings/101").await;
    assert_eq!(findings.status, 200);
    let findings = findings.json();
    assert_eq!(findings["status"], "success");
    let issues = findings["issues"].as_array().unwrap();
    let mut found: Vec<u64> = issues
        .iter()
        .filter(|i| i["type"] == "port_info")
        .map(|i| i["target"]["port_id"].as_u64().unwrap())
        .collect();
    found.sort_unstable();
    let mut expected: Vec<u64> = open_ports.iter().map(|p| u64::from(*p)).collect();
    expected.sort_unstable();
    assert_eq!(found, expected, "the open ports, not the closed one");
    for issue in issues {
        assert_eq!(issue["target"]["addr"], json!(["127.0.0.1"]));
        assert_eq!(issue["severity"], "info");
        for key in ["title", "type", "confidence", "description", "solution"] {
            assert!(issue[key].is_string(), "{key}: {issue}");
        }
    }
    let summary: Vec<&Value> = issues
        .iter()
        .filter(|i| i["type"] == "port_summary")
        .collect();
    assert_eq!(summary.len(), 1, "one summary per host");
    assert_eq!(summary[0]["raw"]["scanned"], 3);
    assert_eq!(findings["summary"]["nb_issues"], issues.len());
    assert_eq!(findings["summary"]["nb_info"], issues.len());
    assert_eq!(findings["summary"]["engine_name"], "tcp");

    let report = face.get("/engines/tcp/getreport/101").await;
    assert_eq!(report.status, 200);
    assert_eq!(report.content_type, "application/zip");
    assert!(report
        .disposition
        .as_deref()
        .unwrap()
        .contains("tcp_101.zip"));
    let entries = unzip(&report.body);
    let in_zip: Value = serde_json::from_slice(&entries["findings.json"]).unwrap();
    assert_eq!(in_zip, findings);
    let raw = String::from_utf8(entries["raw/tcp.txt"].clone()).unwrap();
    for port in &open_ports {
        assert!(raw.contains(&format!("{port}/tcp open")), "{raw}");
    }
    let json_report = face.json_report("tcp", "101").await;
    assert_eq!(json_report.status, 200);
    assert!(json_report
        .disposition
        .as_deref()
        .unwrap()
        .contains("tcp_101.json"));
    assert_eq!(json_report.json(), findings);

    // The status lists the scan with its options and its count; gzipped when asked, as
    // PatrowlManager's HTTP library asks.
    let status = face.get("/engines/tcp/status").await.json();
    let gzipped = face
        .send(
            face.client
                .get(format!("{}/engines/tcp/status", face.main))
                .insert_header(("accept-encoding", "gzip, deflate")),
            Vec::new(),
        )
        .await;
    assert_eq!(gzipped.status, 200);
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzipped.body[..])
        .read_to_end(&mut unzipped)
        .expect("a gzip body");
    assert_eq!(serde_json::from_slice::<Value>(&unzipped).unwrap(), status);
    assert!(gzipped.body.len() < unzipped.len());
    let row = &status["scans"]["101"];
    assert_eq!(row["status"], "FINISHED");
    assert_eq!(row["nb_findings"], issues.len());
    assert_eq!(row["options"], json!({ "ports": ports }));
    drop(open);
}

#[actix_rt::test]
async fn a_tcp_scan_takes_ranges_and_subnets_and_names() {
    let face = spawn(|_| {}).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let assets = json!([
        {"id": "a", "value": "127.0.0.1-2", "datatype": "ip-range"},
        {"id": "b", "value": "127.0.0.0/31", "datatype": "ip-subnet"},
        {"id": "c", "value": "localhost", "datatype": "fqdn"}
    ]);
    let options = json!({"ports": [format!("{port}-{port}")]});
    face.accept("tcp", scan_body(json!("r1"), assets, options))
        .await;
    let findings = face.finished_findings("tcp", "r1").await;
    let issues = items(&findings["issues"]);
    let open = issues.iter().filter(|i| i["type"] == "port_info");
    let addrs = strings(open, "/target/addr/0");
    assert!(addrs.iter().any(|a| a == "127.0.0.1"), "{addrs:?}");
    assert!(addrs.iter().any(|a| a == "localhost"), "{addrs:?}");
    // 127.0.0.0/31 holds 127.0.0.0 and 127.0.0.1; the range 127.0.0.1 and 127.0.0.2.
    let summaries = issues
        .iter()
        .filter(|i| i["type"] == "port_summary")
        .count();
    assert!(summaries >= 5, "one per host: {summaries}");
    drop(listener);
}

/// An HTTP(S) target on 127.0.0.1 answering with `headers`; its port.
fn http_target(
    headers: &'static [(&'static str, &'static str)],
    tls: Option<rustls::ServerConfig>,
) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        App::new().default_service(web::to(move || async move {
            let mut response = HttpResponse::Ok();
            for header in headers {
                response.insert_header(*header);
            }
            response.body("hello")
        }))
    })
    .workers(1);
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls).unwrap(),
        None => server.listen(listener).unwrap(),
    }
    .disable_signals()
    .run();
    actix_rt::spawn(server);
    port
}

fn self_signed_tls(dir: &std::path::Path) -> rustls::ServerConfig {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    annals::http::tls::server_config(&cert, &key).unwrap()
}

#[actix_rt::test]
async fn patrowl_managers_sequence_with_the_http_engine_finds_missing_headers_and_banners() {
    let face = spawn(|_| {}).await;
    let plain = http_target(
        &[
            ("server", "Apache/2.4.58 (Unix)"),
            ("x-frame-options", "DENY"),
        ],
        None,
    );
    let secure = http_target(
        &[
            (
                "content-security-policy",
                "default-src 'self'; frame-ancestors 'none'",
            ),
            ("x-content-type-options", "nosniff"),
        ],
        Some(self_signed_tls(face.dir.path())),
    );
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let plain_url = format!("http://127.0.0.1:{plain}/");
    let secure_url = format!("https://127.0.0.1:{secure}/login");
    let dead_url = format!("http://127.0.0.1:{unreachable}/");
    let assets = json!([
        {"id": 1, "value": plain_url, "criticity": "high", "datatype": "url"},
        {"id": 2, "value": secure_url, "criticity": "high", "datatype": "url"},
        {"id": 3, "value": dead_url, "criticity": "low", "datatype": "url"},
    ]);
    assert_eq!(
        face.get("/engines/http/status").await.json()["status"],
        "READY"
    );
    face.accept("http", scan_body(json!(7), assets, json!({})))
        .await;
    let findings = face.finished_findings("http", "7").await;
    let issues = findings["issues"].as_array().unwrap();
    // Checks, for each of `words`, whether the titles of `url`'s findings hold it.
    let expect_titles = |url: &str, words: &[(&str, bool)]| {
        let titles = issues
            .iter()
            .filter(|i| i["target"]["addr"][0] == url)
            .map(|i| i["title"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        for &(word, held) in words {
            assert_eq!(titles.contains(word), held, "{url}: {word}: {titles}");
        }
    };
    expect_titles(
        &plain_url,
        &[
            ("'Content-Security-Policy'", true),
            ("'X-Content-Type-Options'", true),
            ("'X-Frame-Options'", false),
            // Plain HTTP is not told to send HSTS.
            ("Strict-Transport-Security", false),
            ("Apache/2.4.58", true),
        ],
    );
    expect_titles(
        &secure_url,
        &[
            // A self-signed certificate is scanned.
            ("answers HTTP 200", true),
            ("'Strict-Transport-Security'", true),
            ("'Content-Security-Policy'", false),
            // Its Content-Security-Policy's frame-ancestors stands in for X-Frame-Options.
            ("'X-Frame-Options'", false),
            ("'X-Content-Type-Options'", false),
        ],
    );
    expect_titles(&dead_url, &[("is unreachable", true)]);
    let banner = issues.iter().find(|i| i["type"] == "http_banner").unwrap();
    assert_eq!(banner["severity"], "low");
    assert_eq!(
        findings["summary"]["nb_low"],
        issues.iter().filter(|i| i["severity"] == "low").count()
    );

    let entries = unzip(&face.get("/engines/http/getreport/7").await.body);
    let first = String::from_utf8(entries["raw/http/1.txt"].clone()).unwrap();
    assert!(first.contains("server: Apache/2.4.58"), "{first}");
    assert!(entries.contains_key("raw/http/3.txt"));
}

#[actix_rt::test]
async fn patrowl_managers_sequence_with_a_command_engine_reads_its_json_lines() {
    let face = spawn(|_| {}).await;
    let assets =
        json!([{"id": 5, "value": "a.example", "criticity": "medium", "datatype": "fqdn"}]);
    face.accept("cmd", scan_body(json!("c-1"), assets, json!({"depth": 2})))
        .await;
    let findings = face.finished_findings("cmd", "c-1").await;
    let issues = findings["issues"].as_array().unwrap();
    assert_eq!(issues.len(), 2, "{findings}");
    // The program read the scan on its standard input.
    let seen = &issues[0]["raw"];
    assert_eq!(seen["scan_id"], "c-1");
    assert_eq!(seen["engine"], "cmd");
    assert_eq!(seen["assets"][0]["value"], "a.example");
    assert_eq!(seen["assets"][0]["id"], "5");
    assert_eq!(
        seen["options"],
        json!({"depth": 2, "mode": "fast"}),
        "over the defaults"
    );
    assert_eq!(issues[0]["severity"], "high");
    assert_eq!(issues[0]["target"]["port_id"], 443);
    // Defaults for a bare finding.
    assert_eq!(issues[1]["severity"], "info");
    assert_eq!(issues[1]["type"], "command");
    assert_eq!(issues[1]["target"]["addr"], json!(["a.example"]));
    assert_eq!(findings["summary"]["nb_high"], 1);

    let entries = unzip(&face.get("/engines/cmd/getreport/c-1").await.body);
    let stdout = String::from_utf8(entries["raw/command/stdout.txt"].clone()).unwrap();
    assert!(stdout.contains("not json at all"), "{stdout}");
    assert_eq!(entries["raw/command/stderr.txt"], b"warming up\n");
    let ignored = String::from_utf8(entries["raw/command/ignored.txt"].clone()).unwrap();
    assert!(ignored.contains("unexpected"), "{ignored}");

    // A failing program: ERROR with its exit code and last error line; findings so far kept.
    let answer = face.start_local("failing", json!(1), json!({})).await;
    assert_eq!(answer.status, 200);
    let ended = face.wait_ended("failing", "1").await;
    assert_eq!(ended["status"], "ERROR");
    assert_eq!(
        ended["reason"],
        "the command exited with code 3: no such thing"
    );
    let findings = face.get("/engines/failing/getfindings/1").await.json();
    assert_eq!(findings["scan"]["status"], "ERROR");
    assert_eq!(findings["issues"][0]["title"], "partial");

    // An engine whose program is not there is in ERROR, and says why it refuses scans.
    let status = face.get("/engines/missing/status").await.json();
    assert_eq!(status["status"], "ERROR");
    assert_eq!(status["scanner"]["status"], "ERROR");
    let readiness = face.get("/engines/missing/readiness").await;
    assert_eq!(readiness.status, 500);
    assert_eq!(
        readiness.json(),
        json!({"page": "readiness", "status": "error"})
    );
    let reason = face
        .start_local("missing", json!(1), json!({}))
        .await
        .refused(503, "error");
    assert!(
        reason.contains("its program \"/nonexistent/scanner\" is not found"),
        "{reason}"
    );
    let reloaded = face.get("/engines/missing/reloadconfig").await.json();
    assert_eq!(reloaded["config"]["status"], "ERROR");

    // A program over its time is stopped.
    let answer = face.start_local("timeout", json!(1), json!({})).await;
    assert_eq!(answer.status, 200);
    let ended = face.wait_ended("timeout", "1").await;
    assert_eq!(ended["status"], "ERROR");
    common::app::assert_says(&ended, "/reason", "timed out after 1 s");
}

#[actix_rt::test]
async fn every_engines_scans_are_counted_by_status() {
    let face = spawn(|_| {}).await;
    let assets =
        json!([{"id": 5, "value": "a.example", "criticity": "medium", "datatype": "fqdn"}]);
    face.accept("cmd", scan_body(json!("c-1"), assets, json!({})))
        .await;
    face.finished_findings("cmd", "c-1").await;
    assert_eq!(
        face.start_local("failing", json!(1), json!({}))
            .await
            .status,
        200
    );
    face.wait_ended("failing", "1").await;

    let answer = face.get("/engines").await;
    assert_eq!(answer.status, 200);
    let engines = answer.json();
    let counts: std::collections::BTreeMap<String, Value> = engines["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|engine| {
            (
                engine["name"].as_str().unwrap().to_owned(),
                engine["scans"].clone(),
            )
        })
        .collect();
    assert_eq!(counts["cmd"], json!({"FINISHED": 1}));
    assert_eq!(counts["failing"], json!({"ERROR": 1}));
    assert_eq!(counts["tcp"], json!({}));
    // Every engine, by name.
    let names: Vec<&String> = counts.keys().collect();
    assert_eq!(
        names,
        ["cmd", "failing", "http", "missing", "nmap", "slow", "tcp", "timeout"]
    );
}

#[actix_rt::test]
async fn a_scan_too_large_for_the_log_is_refused_as_too_large() {
    // A body within the face's limit whose scan makes an event over the log's: the default
    // body limit (1 MiB) and event limit (1 MiB) allow it, scaled down here.
    let face = spawn(|config| {
        config.patrowl.max_body_kb = 256;
        config.log.max_event_kb = 64;
    })
    .await;
    let big = scan_body(
        json!(1),
        ip_asset("127.0.0.1"),
        json!({"pad": "x".repeat(100_000)}),
    );
    let answer = face.post("/engines/tcp/startscan", big.to_string()).await;
    let reason = answer.refused(413, "error");
    assert!(
        reason.contains("is over the limit of 65536 bytes"),
        "{reason}"
    );
    // Nothing of it is kept: the scan id is free.
    let small = scan_body(json!(1), ip_asset("127.0.0.1"), json!({"ports": ["9"]}));
    let answer = face.post("/engines/tcp/startscan", small.to_string()).await;
    assert_eq!(answer.status, 200, "{}", answer.json());
}

#[actix_rt::test]
async fn too_many_assets_are_refused_before_any_is_looked_at() {
    let face = spawn(|_| {}).await;
    // Each asset alone is also refused by the scanner (a /8 is over max_hosts): the count
    // comes first, so that no asset of an oversized request is expanded.
    let assets: Vec<_> = (0..=annals::domain::scan::MAX_ASSETS)
        .map(|i| json!({"id": i, "value": "10.0.0.0/8", "datatype": "ip-subnet"}))
        .collect();
    let body = scan_body(json!(1), json!(assets), json!({}));
    let answer = face.post("/engines/tcp/startscan", body.to_string()).await;
    let reason = answer.refused(400, "refused");
    assert_eq!(reason, "too many assets: 10001 (at most 10000)");
}

#[actix_rt::test]
async fn every_refusal_says_what_is_wrong_in_the_faces_shape() {
    let face = spawn(|config| {
        config.patrowl.max_body_kb = 1;
    })
    .await;
    let start = |body: String| face.post("/engines/tcp/startscan", body);

    let answer = start(json!({"scan_id": 2, "options": {}}).to_string()).await;
    assert!(answer.refused(400, "refused").contains("no assets"));
    assert_eq!(
        answer.json()["details"]["reason"],
        "no assets: a scan needs at least one as…"
    );
    // Each body, its refusal's status and word, and what its reason says.
    let url = json!([{"id": 1, "value": "https://x.example/", "datatype": "url"}]);
    let planet = json!([{"value": "x", "datatype": "planet"}]);
    let subnet = json!([{"id": 1, "value": "10.0.0.0/8", "datatype": "ip-subnet"}]);
    let local = || ip_asset("127.0.0.1");
    let big = json!({"pad": "x".repeat(2048)});
    for (body, status, word, says) in [
        (
            scan_body(json!(1), json!([]), json!({})).to_string(),
            400,
            "refused",
            &["no assets"][..],
        ),
        (
            scan_body(json!(3), url, json!({})).to_string(),
            400,
            "refused",
            &["datatype url", "ip, ip-range"],
        ),
        (
            scan_body(json!(4), planet, json!({})).to_string(),
            400,
            "error",
            &["\"planet\" is not a Patrowl datatype"],
        ),
        (
            scan_body(json!(5), local(), json!({"ports": ["70000"]})).to_string(),
            400,
            "refused",
            &["\"70000\" is not a port"],
        ),
        (
            scan_body(json!(6), subnet, json!({})).to_string(),
            400,
            "refused",
            &["max_hosts"],
        ),
        ("this is not json".into(), 400, "error", &["not JSON"]),
        ("[1, 2]".into(), 400, "error", &["not a JSON object"]),
        (
            json!({"assets": []}).to_string(),
            400,
            "error",
            &["scan_id is missing"],
        ),
        (
            scan_body(json!([1]), local(), json!({})).to_string(),
            400,
            "error",
            &["scan_id must be a number or a string"],
        ),
        (
            scan_body(json!(7), local(), json!("{not json")).to_string(),
            400,
            "error",
            &["options is a string that is not a JSON object"],
        ),
        (
            scan_body(json!(8), local(), big).to_string(),
            413,
            "error",
            &["over the limit of 1024 bytes"],
        ),
    ] {
        let reason = start(body).await.refused(status, word);
        for said in says {
            assert!(reason.contains(said), "{said}: {reason}");
        }
    }

    // A duplicate scan id.
    let first = scan_body(json!(9), ip_asset("127.0.0.1"), json!({"ports": ["9"]}));
    assert_eq!(start(first.to_string()).await.status, 200);
    let reason = start(first.to_string()).await.refused(409, "refused");
    assert!(
        reason.contains("\"9\" is in use on this engine"),
        "{reason}"
    );

    // Busy: the slow engine takes one scan at a time.
    let slow = face.start_local("slow", json!(1), json!({})).await;
    assert_eq!(slow.status, 200);
    let status = face.get("/engines/slow/status").await.json();
    assert_eq!(status["status"], "BUSY");
    let busy = face.start_local("slow", json!(2), json!({})).await;
    assert_eq!(busy.status, 503);
    assert_eq!(
        busy.json(),
        json!({"page": "startscan", "status": "error",
            "reason": "Scan refused: max concurrent active scans reached (1)",
            "details": {"reason": "Scan refused: max concurrent active sca…"}})
    );
    let stopped = face.get("/engines/slow/stop/1").await;
    assert_eq!(stopped.status, 200);
    assert_eq!(
        face.get("/engines/slow/status").await.json()["status"],
        "READY"
    );

    // An unknown scan id on every route that takes one.
    for route in ["status", "getfindings", "getreport", "stop", "clean"] {
        let answer = face.get(&format!("/engines/tcp/{route}/nope")).await;
        let reason = answer.refused(404, "error");
        assert!(
            reason.contains("no scan \"nope\" on engine tcp"),
            "{route}: {reason}"
        );
    }
    // An unknown engine (another of Patrowl's, which annals does not serve), an unknown
    // route, another method.
    for path in [
        "/engines/openvas/status",
        "/engines/openvas/",
        "/engines/openvas/status/1",
        "/engine/openvas/info",
    ] {
        let reason = face.get(path).await.refused(404, "error");
        assert!(
            reason.contains("no engine is called \"openvas\""),
            "{path}: {reason}"
        );
    }
    let reason = face.get("/engines/tcp/nothing").await.refused(404, "error");
    assert!(reason.contains("is not a route of engine tcp"), "{reason}");
    let reason = face
        .get("/engines/tcp/startscan")
        .await
        .refused(405, "error");
    assert!(reason.contains("does not accept GET"), "{reason}");
    // A scan still running has no findings yet: 200 with `status: error`, as upstream.
    let slow = face.start_local("slow", json!(3), json!({})).await;
    assert_eq!(slow.status, 200);
    let answer = face.get("/engines/slow/getfindings/3").await;
    let reason = answer.refused(200, "error");
    assert!(reason.contains("not ended"), "{reason}");
    face.get("/engines/slow/stop/3").await;
}

#[actix_rt::test]
async fn concurrent_starts_never_exceed_the_engines_limit() {
    // The slow engine takes one scan at a time; ten clients ask at once.
    let face = spawn(|_| {}).await;
    let answers = futures_util::future::join_all(
        (0..10).map(|id| face.start_local("slow", json!(id), json!({}))),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        9,
        "{statuses:?}"
    );
    let status = face.get("/engines/slow/status").await.json();
    assert_eq!(status["status"], "BUSY");
    assert_eq!(status["scans"].as_object().unwrap().len(), 1);
    let stopped = face.get("/engines/slow/stopscans").await.json();
    assert_eq!(stopped["details"]["scan_ids"].as_array().unwrap().len(), 1);
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rfind(')')
                .is_some_and(|end| !stat[end + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[actix_rt::test]
async fn stop_stopscans_and_clean_end_scans_and_keep_their_history() {
    let face = spawn(|config| {
        for engine in &mut config.patrowl.engines {
            engine.max_scans = 5;
        }
    })
    .await;
    let pid_file = face.dir.path().join("slow.pid");
    let started = face.start_local("slow", json!(1), json!({})).await;
    assert_eq!(started.status, 200);
    // Its first finding arrives while it runs.
    common::poll_async(SCAN_DEADLINE, "the first finding", || async {
        let body = face.get("/engines/slow/status/1").await.json();
        (body["status"] == "SCANNING" && body["nb_findings"] == 1).then_some(())
    })
    .await;
    let pid: u32 = common::poll_async(SCAN_DEADLINE, "the program's pid", || async {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
    })
    .await;
    assert!(process_alive(pid));
    let stopped = face.get("/engines/slow/stop/1").await;
    assert_eq!(
        stopped.json(),
        json!({"page": "stopscan", "status": "SUCCESS", "details": {"scan_id": "1"}})
    );
    assert_eq!(
        face.get("/engines/slow/status/1").await.json()["status"],
        "STOPPED"
    );
    let _ = std::fs::remove_file(&pid_file);
    tokio::task::spawn_blocking(move || {
        common::poll(SCAN_DEADLINE, "the program to be killed", || {
            (!process_alive(pid)).then_some(())
        })
    })
    .await
    .unwrap();
    // Stopping again answers 200 with `ERROR`, as upstream engines do: PatrowlManager, which
    // stops a scan's jobs one after the other, gives up on a 409 or an `error` and leaves
    // the rest running. Its findings so far stay.
    let again = face.get("/engines/slow/stop/1").await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json(),
        json!({"page": "stopscan", "status": "ERROR",
            "reason": "scan '1' is not running (status=STOPPED)"})
    );
    let findings = face.get("/engines/slow/getfindings/1").await.json();
    assert_eq!(findings["scan"]["status"], "STOPPED");
    assert_eq!(findings["issues"][0]["title"], "started");

    // stopscans stops every running scan.
    for id in [2, 3] {
        let answer = face.start_local("slow", json!(id), json!({})).await;
        assert_eq!(answer.status, 200);
    }
    let answer = face.get("/engines/slow/stopscans").await.json();
    assert_eq!(answer["page"], "stopscans");
    assert_eq!(answer["status"], "SUCCESS");
    assert_eq!(answer["details"]["scan_ids"], json!(["2", "3"]));
    let status = face.get("/engines/slow/status").await.json();
    for id in ["1", "2", "3"] {
        assert_eq!(status["scans"][id]["status"], "STOPPED");
    }

    // clean/<id> removes one scan from the list; its history stays in the log.
    let cleaned = face.get("/engines/slow/clean/1").await;
    assert_eq!(
        cleaned.json(),
        json!({"page": "clean_scan", "scan_id": "1", "status": "removed"})
    );
    let reason = face
        .get("/engines/slow/status/1")
        .await
        .refused(404, "error");
    assert!(reason.contains("was cleaned"), "{reason}");
    face.get("/engines/slow/clean/1")
        .await
        .refused(404, "error");
    let status = face.get("/engines/slow/status").await.json();
    assert!(status["scans"].get("1").is_none());
    let history = face.get("/api/streams/scan-slow-1").await.json();
    assert_eq!(
        strings(items(&history["events"]), "/type"),
        [
            "ScanRequested",
            "ScanBegan",
            "ScanSupervised",
            "FindingReported",
            "ScanOutputRead",
            "ScanStopped",
            "ScanCleaned"
        ]
    );
    // A cleaned id is free again: its new use is a scan of its own, in a stream of its own,
    // and the first one's history stays whole.
    face.accept_local("slow", json!(1), json!({})).await;
    let row = face.get("/engines/slow/status/1").await.json();
    assert!(
        ["STARTED", "SCANNING"].contains(&row["status"].as_str().unwrap()),
        "{row}"
    );
    // While it runs, the id is in use.
    let reason = face
        .start_local("slow", json!(1), json!({}))
        .await
        .refused(409, "refused");
    assert!(reason.contains("\"1\" is in use"), "{reason}");
    let history = face.get("/api/streams/scan-slow-1").await.json();
    assert_eq!(history["events"].as_array().unwrap().len(), 7);
    let second = face.get("/api/streams/scan-slow~2-1").await.json();
    assert_eq!(second["events"][0]["type"], "ScanRequested", "{second}");

    // clean removes the rest, stopping one that runs.
    let running = face.start_local("slow", json!(4), json!({})).await;
    assert_eq!(running.status, 200);
    let answer = face.get("/engines/slow/clean").await.json();
    assert_eq!(answer["details"]["scan_ids"], json!(["1", "2", "3", "4"]));
    let status = face.get("/engines/slow/status").await.json();
    assert_eq!(status["scans"], json!({}));
    assert_eq!(status["status"], "READY");
}

#[actix_rt::test]
async fn both_base_spellings_and_the_own_listener_answer_the_same() {
    let face = spawn(|_| {}).await;
    for base in [
        format!("{}/engines/tcp", face.main),
        format!("{}/engine/tcp", face.main),
        format!("{}/engines/tcp", face.own),
        format!("{}/engine/tcp", face.own),
    ] {
        let index = face
            .send(face.client.get(format!("{base}/")), Vec::new())
            .await;
        assert_eq!(index.json(), json!({"page": "index"}), "{base}");
        let redirect = face.send(face.client.get(&base), Vec::new()).await;
        assert_eq!(redirect.status, 308, "{base}");
        assert!(redirect.location.unwrap().ends_with("/tcp/"));
        for (route, page) in [
            ("info", "info"),
            ("liveness", "liveness"),
            ("readiness", "readiness"),
            ("test", "test"),
            ("reloadconfig", "reloadconfig"),
        ] {
            let answer = face
                .send(face.client.get(format!("{base}/{route}")), Vec::new())
                .await;
            assert_eq!(answer.status, 200, "{base}/{route}");
            assert_eq!(answer.json()["page"], page);
        }
    }
    // The own listener serves the face only.
    let other = face
        .send(face.client.get(format!("{}/healthz", face.own)), Vec::new())
        .await;
    assert_eq!(other.status, 404);
    let info = face.get("/engines/tcp/info").await.json();
    assert_eq!(info["status"], "READY");
    assert_eq!(info["engine_config"]["status"], "READY");
    assert_eq!(
        info["engine_config"]["allowed_asset_types"],
        json!(["ip", "ip-range", "ip-subnet", "fqdn", "domain"])
    );
    let liveness = face.get("/engines/tcp/liveness").await.json();
    assert_eq!(liveness, json!({"page": "liveness", "status": "success"}));
}

#[actix_rt::test]
async fn with_accounts_stopping_and_cleaning_need_an_admin() {
    let (admin, admin_hash) = new_token();
    let (user, user_hash) = new_token();
    let face = spawn(move |config| {
        config.accounts = vec![
            common::token_account("ops", &admin_hash, &[Role::Admin]),
            common::token_account("user", &user_hash, &[]),
        ];
    })
    .await;
    // PatrowlManager sends no credentials: scanning stays open.
    let started = face.start_local("slow", json!(1), json!({})).await;
    assert_eq!(started.status, 200);
    let stop = |token: Option<&str>| {
        let mut request = face
            .client
            .get(format!("{}/engines/slow/stop/1", face.main));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        face.send(request, Vec::new())
    };
    stop(None).await.refused(401, "error");
    stop(Some(&user)).await.refused(403, "error");
    // A refusal before the handler runs still names the route's page.
    assert_eq!(stop(Some(&user)).await.json()["page"], "stopscan");
    assert_eq!(stop(Some(&admin)).await.status, 200);
    let history = face
        .send(
            face.client
                .get(format!("{}/api/streams/scan-slow-1", face.main))
                .bearer_auth(&admin),
            Vec::new(),
        )
        .await
        .json();
    let stopped = common::app::first_of_type(&history, "ScanStopped").clone();
    assert_eq!(stopped["payload"]["by"], "ops", "{stopped}");
}

fn settings() -> insta::Settings {
    common::snapshots(&[])
}

#[actix_rt::test]
async fn golden_bodies() {
    // The manual clock: every time is T0, so nothing needs redacting.
    let face = spawn(|_| {}).await;
    let assets =
        json!([{"id": 5, "value": "a.example", "criticity": "medium", "datatype": "fqdn"}]);
    let accepted = face
        .start("cmd", scan_body(json!(1), assets, json!({})))
        .await
        .json();
    let scan_status = face.wait_ended("cmd", "1").await;
    let findings = face.get("/engines/cmd/getfindings/1").await.json();
    let status = face.get("/engines/cmd/status").await.json();
    let info = face.get("/engines/tcp/info").await.json();
    let test = face.get("/engines/tcp/test").await.json();
    let refused = face
        .start("cmd", scan_body(json!(2), json!([]), json!({})))
        .await
        .json();
    let unknown = face.get("/engines/cmd/status/2").await.json();
    let index = face.get("/engines/cmd/").await.json();
    let liveness = face.get("/engines/cmd/liveness").await.json();
    let readiness = face.get("/engines/cmd/readiness").await.json();
    let reloadconfig = face.get("/engines/cmd/reloadconfig").await.json();
    let report = face.json_report("cmd", "1").await.json();
    let slow = |id: u32| face.start_local("slow", json!(id), json!({}));
    assert_eq!(slow(1).await.status, 200);
    let busy = slow(2).await.json();
    let stopped = face.get("/engines/slow/stop/1").await.json();
    let stop_ended = face.get("/engines/slow/stop/1").await.json();
    assert_eq!(slow(3).await.status, 200);
    let stopscans = face.get("/engines/slow/stopscans").await.json();
    let clean_scan = face.get("/engines/slow/clean/1").await.json();
    let cleaned_status = face.get("/engines/slow/status/1").await.json();
    let clean = face.get("/engines/slow/clean").await.json();
    let not_found = face.get("/engines/openvas/status").await.json();
    let no_route = face.get("/engines/cmd/nothing").await.json();
    for (name, body) in [
        ("accepted", accepted),
        ("scan_status", scan_status),
        ("findings", findings),
        ("status", status),
        ("info", info),
        ("test", test),
        ("refused", refused),
        ("unknown_scan", unknown),
        ("index", index),
        ("liveness", liveness),
        ("readiness", readiness),
        ("reloadconfig", reloadconfig),
        ("report_json", report),
        ("busy", busy),
        ("stopped", stopped),
        ("stop_ended", stop_ended),
        ("stopscans", stopscans),
        ("clean_scan", clean_scan),
        ("cleaned_status", cleaned_status),
        ("clean", clean),
        ("unknown_engine", not_found),
        ("no_route", no_route),
    ] {
        settings().bind(|| insta::assert_json_snapshot!(format!("patrowl_{name}"), body));
    }
}

/// `annals serve` as a child process on `data` with the configuration file `config`.
fn serve(data: &std::path::Path, config: &std::path::Path) -> common::Served {
    common::serve_data(data, Some(config), &[], &[]).expect("the server starts")
}

/// A `command` engine entry of a configuration file: `script` run by `sh -c`, for `ip`
/// assets, one scan at a time, with a grace of 1 s.
fn sh_engine(name: &str, script: &str) -> Value {
    json!({"name": name, "scanner": "command", "allowed_asset_types": ["ip"],
        "command": ["sh", "-c", script], "kill_grace_s": 1, "max_scans": 1})
}

/// `annals.toml` in `dir`: `[patrowl] on_restart = how` (left to its default when `None`) and
/// `engines`; its path.
fn restart_config(dir: &Path, how: Option<&str>, engines: &[Value]) -> PathBuf {
    let mut patrowl = json!({ "engines": engines });
    if let Some(how) = how {
        patrowl["on_restart"] = json!(how);
    }
    let config: toml::Value = serde_json::from_value(json!({ "patrowl": patrowl })).unwrap();
    let file = dir.join("annals.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    file
}

/// The scan engine face of `annals serve` running as a child process.
fn served_face(served: &common::Served) -> Face {
    Face {
        main: format!("http://{}", served.address),
        own: served
            .patrowl
            .clone()
            .map(|a| format!("http://{a}"))
            .unwrap_or_default(),
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        dir: tempfile::tempdir().unwrap(),
    }
}

/// `annals serve` killed with SIGKILL, as a crash would end it.
fn crash(server: &mut common::Served) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// The number a program wrote to `file` (its pid), once it is there.
fn pid_in(file: &Path) -> u32 {
    common::poll(SCAN_DEADLINE, "a pid in its file", || {
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    })
}

/// `annals serve` on `data` and `config`, once scan 1 of `engine` recorded `findings` findings.
async fn serve_with_findings(
    data: &Path,
    config: &Path,
    engine: &str,
    findings: u64,
) -> common::Served {
    let server = serve(data, config);
    let face = served_face(&server);
    face.accept_local(engine, json!(1), json!({})).await;
    common::poll_async(SCAN_DEADLINE, "the scan's first findings", || async {
        let body = face
            .get(&format!("/engines/{engine}/status/1"))
            .await
            .json();
        (body["nb_findings"] == findings).then_some(())
    })
    .await;
    server
}

/// Waits until none of `pids` runs.
fn wait_gone(pids: &[u32], what: &str) {
    common::poll(SCAN_DEADLINE, what, || {
        (!pids.iter().any(|pid| common::runs(*pid))).then_some(())
    });
}

/// With `on_restart = "kill"`, a restart after a crash stops a running scan's program, leaves
/// no run directory and interrupts the scan; ended scans stay as they were.
#[actix_rt::test]
async fn after_a_crash_ended_scans_stay_and_a_running_one_is_stopped_and_interrupted() {
    let (dir, data) = common::data_dir();
    let pid_file = dir.path().join("slow.pid");
    let slow = format!(
        "echo '{{\"title\":\"before\"}}'; echo $$ > {}; exec sleep 60",
        pid_file.display()
    );
    let config = restart_config(
        dir.path(),
        Some("kill"),
        &[
            sh_engine("cmd", "echo '{\"title\":\"kept\"}'"),
            sh_engine("slow", &slow),
        ],
    );
    let mut server = serve(&data, &config);
    let before = served_face(&server);
    assert!(!before.own.is_empty(), "the face's own listener is logged");
    let answer = before.start_local("cmd", json!(1), json!({})).await;
    assert_eq!(answer.status, 200);
    let findings = before.finished_findings("cmd", "1").await;
    let report = before.get("/engines/cmd/getreport/1").await.body;
    let answer = before.start_local("slow", json!(2), json!({})).await;
    assert_eq!(answer.status, 200);
    before.wait_for("slow", "2", "SCANNING").await;
    common::poll_async(SCAN_DEADLINE, "the first finding", || async {
        let body = before.get("/engines/slow/status/2").await.json();
        (body["nb_findings"] == 1).then_some(())
    })
    .await;
    let pid = pid_in(&pid_file);
    // A crash: the program outlives annals, under its supervisor.
    crash(&mut server);
    let runs = common::runs;
    assert!(runs(pid), "the program outlives annals");

    let server = serve(&data, &config);
    let after = served_face(&server);
    assert_eq!(
        after.get("/engines/cmd/getfindings/1").await.json(),
        findings
    );
    let report_after = after.get("/engines/cmd/getreport/1").await.body;
    assert_eq!(
        unzip(&report_after),
        unzip(&report),
        "the report is the same"
    );
    // Stopped before its scan was settled as interrupted.
    assert!(!runs(pid), "the program runs on after the restart");
    let interrupted = after.get("/engines/slow/status/2").await.json();
    assert_eq!(interrupted["status"], "ERROR");
    assert_eq!(interrupted["reason"], "interrupted by restart");
    assert_eq!(interrupted["nb_findings"], 1);
    let status = after.get("/engines/slow/status").await.json();
    assert_eq!(status["status"], "READY");
    assert_eq!(status["scans"]["2"]["status"], "ERROR");
    assert_eq!(
        std::fs::read_dir(data.join("patrowl-work"))
            .unwrap()
            .count(),
        0,
        "no run directory is left"
    );
    // The report of scan 1 was fetched before the restart: its id is free, and its next use
    // is the second.
    after.accept_local("cmd", json!(1), json!({})).await;
    assert_eq!(after.wait_ended("cmd", "1").await["status"], "FINISHED");
    let second = after.get("/api/streams/scan-cmd~2-1").await.json();
    assert_eq!(second["events"][0]["type"], "ScanRequested", "{second}");
    assert!(server.terminate().success());
}

/// How many findings the counting program prints in all (more after the restart than the
/// scanner's channel holds).
const COUNTED: u32 = 300;

/// A program that says its pid, prints three findings, waits for the file `go`, then prints
/// the rest up to [`COUNTED`] and a line of text; and what it prints.
fn counting_script(dir: &Path) -> (String, String) {
    let finding = |i: u32| format!("{{\"title\":\"finding {i}\"}}\n");
    let mut printed: String = (1..=COUNTED).map(finding).collect();
    printed.push_str("the end\n");
    let script = format!(
        "cat > /dev/null; echo $$ > {pid}; \
         for i in 1 2 3; do echo '{{\"title\":\"finding '$i'\"}}'; done; \
         while [ ! -e {go} ]; do sleep 0.02; done; \
         for i in $(seq 4 {COUNTED}); do echo '{{\"title\":\"finding '$i'\"}}'; done; \
         echo 'the end'",
        pid = dir.join("counting.pid").display(),
        go = dir.join("go").display(),
    );
    (script, printed)
}

/// A `command` scan goes on through a crash or a stop of annals, whether its program ends while
/// annals is down or after the restart: the scan finishes with every finding once, in order,
/// its report has the program's whole output, and it counts against its engine's limit
/// meanwhile.
#[actix_rt::test]
async fn a_command_scan_goes_on_through_a_restart_of_annals() {
    for (signal, ends_while_down) in [("SIGKILL", false), ("SIGKILL", true), ("SIGTERM", false)] {
        let (dir, data) = common::data_dir();
        let (script, printed) = counting_script(dir.path());
        let config = restart_config(dir.path(), None, &[sh_engine("counting", &script)]);
        let mut server = serve_with_findings(&data, &config, "counting", 3).await;
        let pid = pid_in(&dir.path().join("counting.pid"));
        if signal == "SIGKILL" {
            crash(&mut server);
        } else {
            assert!(server.stop().success());
        }
        assert!(common::runs(pid), "{signal}: the program outlives annals");
        let go = dir.path().join("go");
        if ends_while_down {
            std::fs::write(&go, "").unwrap();
            wait_gone(&[pid], "the program to end while annals is down");
        }

        let server = serve(&data, &config);
        let after = served_face(&server);
        if !ends_while_down {
            let row = after.get("/engines/counting/status/1").await.json();
            assert_eq!(row["status"], "SCANNING", "{row}");
            // The scan followed again counts against the engine's limit.
            let busy = after.start_local("counting", json!(2), json!({})).await;
            assert_eq!(busy.status, 503, "{}", busy.json());
            std::fs::write(&go, "").unwrap();
        }
        let findings = after.finished_findings("counting", "1").await;
        let titles: Vec<String> = (1..=COUNTED).map(|i| format!("finding {i}")).collect();
        assert_eq!(
            strings(items(&findings["issues"]), "/title"),
            titles,
            "{signal}, ended while down: {ends_while_down}"
        );
        let report = unzip(&after.get("/engines/counting/getreport/1").await.body);
        assert_eq!(
            String::from_utf8_lossy(&report["raw/command/stdout.txt"]),
            printed
        );
        let history = after.get("/api/streams/scan-counting-1").await.json();
        let types = strings(items(&history["events"]), "/type");
        assert_eq!(
            types.iter().filter(|t| *t == "ScanSupervised").count(),
            1,
            "{types:?}"
        );
        assert!(!common::runs(pid));
        common::poll(SCAN_DEADLINE, "the run directory to go", || {
            (std::fs::read_dir(data.join("patrowl-work")).ok()?.count() == 0).then_some(())
        });
        assert!(server.terminate().success());
    }
}

/// A program that says its pid and its background child's, reports one finding and waits.
fn waiting_script(dir: &Path) -> String {
    format!(
        "cat > /dev/null; echo $$ > {pid}; sleep 1000 & echo $! > {child}; \
         echo '{{\"title\":\"started\"}}'; wait",
        pid = dir.join("waiting.pid").display(),
        child = dir.join("child.pid").display(),
    )
}

/// Starts annals on `data` and `config` and a scan of the `waiting` engine, waits for its
/// finding and crashes annals: the pids of the program's group, and its supervisor's as the log
/// recorded it.
async fn crash_while_waiting(data: &Path, config: &Path, dir: &Path) -> ([u32; 2], u32) {
    let mut server = serve_with_findings(data, config, "waiting", 1).await;
    let face = served_face(&server);
    let group = [
        pid_in(&dir.join("waiting.pid")),
        pid_in(&dir.join("child.pid")),
    ];
    let history = face.get("/api/streams/scan-waiting-1").await.json();
    let supervised = items(&history["events"])
        .iter()
        .find(|e| e["type"] == "ScanSupervised")
        .expect("where the program runs is recorded");
    let supervisor = supervised["payload"]["run"]["supervisor"].as_u64().unwrap() as u32;
    crash(&mut server);
    assert!(
        group.iter().all(|pid| common::runs(*pid)),
        "it outlives annals"
    );
    (group, supervisor)
}

/// A scan followed after a restart is stopped as any other, by `stop/<id>` or `stopscans`: its
/// program's whole group is stopped.
#[actix_rt::test]
async fn a_stop_after_a_restart_stops_the_programs_group() {
    for route in ["stop/1", "stopscans"] {
        let (dir, data) = common::data_dir();
        let config = restart_config(
            dir.path(),
            Some("reattach"),
            &[sh_engine("waiting", &waiting_script(dir.path()))],
        );
        let (group, _) = crash_while_waiting(&data, &config, dir.path()).await;
        let server = serve(&data, &config);
        let after = served_face(&server);
        let row = after.get("/engines/waiting/status/1").await.json();
        assert_eq!(row["status"], "SCANNING", "{row}");
        let stopped = after.get(&format!("/engines/waiting/{route}")).await.json();
        assert_eq!(stopped["status"], "SUCCESS", "{stopped}");
        assert_eq!(
            after.get("/engines/waiting/status/1").await.json()["status"],
            "STOPPED"
        );
        wait_gone(&group, "the program's group to be stopped");
        let findings = after.get("/engines/waiting/getfindings/1").await.json();
        assert_eq!(strings(items(&findings["issues"]), "/title"), ["started"]);
        assert!(server.terminate().success());
    }
}

/// A program whose supervisor was killed with -9 while annals was down: the restart kills its
/// group and ends the scan in ERROR as interrupted.
#[actix_rt::test]
async fn a_scan_whose_supervisor_died_while_annals_was_down_is_interrupted() {
    let (dir, data) = common::data_dir();
    let config = restart_config(
        dir.path(),
        None,
        &[sh_engine("waiting", &waiting_script(dir.path()))],
    );
    let (group, supervisor) = crash_while_waiting(&data, &config, dir.path()).await;
    // SAFETY: kill(2) of the supervisor this test's server started.
    unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
    wait_gone(&[supervisor], "the supervisor to die");
    assert!(
        group.iter().all(|pid| common::runs(*pid)),
        "the group outlives it"
    );

    restarted_scan_fails(&data, &config, &group, "interrupted").await;
}

/// Starts annals again: the `waiting` scan ends in ERROR with a reason that `says` something,
/// and no process of the program's `group` is left.
async fn restarted_scan_fails(data: &Path, config: &Path, group: &[u32], says: &str) {
    let server = serve(data, config);
    let after = served_face(&server);
    let ended = after.wait_ended("waiting", "1").await;
    assert_eq!(ended["status"], "ERROR", "{ended}");
    let reason = ended["reason"].as_str().unwrap();
    assert!(reason.contains(says), "{reason}");
    wait_gone(group, "the program's group to be gone");
    assert!(server.terminate().success());
}

/// A program's noise cannot grow the scan's memory: ignored lines are kept up to a bound and
/// then counted, and a line over the line limit is named as ignored instead of vanishing.
#[actix_rt::test]
async fn a_command_engines_ignored_lines_are_bounded_and_overlong_lines_named() {
    let script = r#"cat > /dev/null
printf '{"title":"'; head -c 70000 /dev/zero | tr '\0' a; printf '"}\n'
yes '{"unexpected":1}' | head -n 100000
echo '{"title":"kept"}'
"#;
    let face = spawn(|config| config.patrowl.engines.push(command_engine("noisy", script))).await;
    face.accept_local("noisy", json!(1), json!({})).await;
    let findings = face.finished_findings("noisy", "1").await;
    let titles = strings(items(&findings["issues"]), "/title");
    assert_eq!(titles, ["kept"], "{findings}");
    let entries = unzip(&face.get("/engines/noisy/getreport/1").await.body);
    let ignored = String::from_utf8(entries["raw/command/ignored.txt"].clone()).unwrap();
    assert!(
        ignored.len() <= annals::domain::scan::scanners::command::MAX_IGNORED_BYTES + 100,
        "{} bytes",
        ignored.len()
    );
    let first = ignored.lines().next().unwrap();
    assert!(first.starts_with("{\"title\":\"aaaa"), "{first}");
    assert!(first.contains("longer than"), "{first}");
    assert!(first.len() < 1000, "{}", first.len());
    assert!(ignored.contains("unexpected"), "{ignored:.300}");
    assert!(
        ignored.trim_end().ends_with("more lines ignored"),
        "{}",
        &ignored[ignored.len() - 200..]
    );
}

/// A scanner that reports without end does not grow its scan without end: past
/// `MAX_FINDINGS` findings are counted, and one last finding says how many were not kept.
#[actix_rt::test]
async fn a_scan_keeps_at_most_its_limit_of_findings() {
    let over = annals::domain::scan::service::MAX_FINDINGS + 5;
    let script = format!("cat > /dev/null\nyes '{{\"title\":\"again\"}}' | head -n {over}\n");
    let face = spawn(|config| {
        config
            .patrowl
            .engines
            .push(command_engine("chatty", &script))
    })
    .await;
    face.accept_local("chatty", json!(1), json!({})).await;
    let findings = face.finished_findings("chatty", "1").await;
    let issues = findings["issues"].as_array().unwrap();
    assert_eq!(
        issues.len(),
        annals::domain::scan::service::MAX_FINDINGS + 1
    );
    let last = issues.last().unwrap();
    assert_eq!(
        (last["type"].as_str(), last["title"].as_str()),
        (
            Some("findings_dropped"),
            Some("5 more findings were not kept")
        )
    );
    assert_eq!(last["target"]["addr"], json!(["127.0.0.1"]));
}

/// A refusal quotes the beginning of a bad value, not all of it: a body near the limit does
/// not come back twice in the answer (`reason` and `details.reason`).
#[actix_rt::test]
async fn a_refusal_quotes_only_the_beginning_of_a_bad_value() {
    let face = spawn(|_| {}).await;
    let big = "x".repeat(500_000);
    for (body, said) in [
        (
            json!({"scan_id": 1, "assets": big}),
            "assets must be a list, not \"xxx",
        ),
        (
            json!({"scan_id": [big]}),
            "scan_id must be a number or a string, not [\"xxx",
        ),
        (
            json!({"scan_id": 1, "assets": [ip_asset("127.0.0.1")[0]], "options": big}),
            "options is a string that is not a JSON object: \"xxx",
        ),
        (
            json!({"scan_id": 1, "assets": [ip_asset("127.0.0.1")[0]], "options": [big]}),
            "options must be an object or an object as a JSON string, not [\"xxx",
        ),
    ] {
        let answer = face.post("/engines/tcp/startscan", body.to_string()).await;
        assert!(answer.body.len() < 1000, "{} bytes", answer.body.len());
        let reason = answer.refused(400, "error");
        assert!(reason.starts_with(said), "{reason}");
        assert!(reason.ends_with('…'), "{reason}");
    }
}

#[actix_rt::test]
async fn patrowl_managers_all_ports_policy_scans_every_port() {
    let face = spawn(|_| {}).await;
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    // PatrowlManager's shipped policy "List open ports (all)", as it sends it.
    let options = json!({"ports": ["-"], "no_dns": 1, "no_ping": 0, "show_open_ports": 1,
        "detect_service_version": 0})
    .to_string();
    face.accept_local("tcp", json!(1), json!(options)).await;
    let ended = face.wait_ended("tcp", "1").await;
    assert_eq!(ended["status"], "FINISHED", "{ended}");
    let findings = face.get("/engines/tcp/getfindings/1").await.json();
    let issues = findings["issues"].as_array().unwrap();
    let summary = issues
        .iter()
        .find(|i| i["type"] == "port_summary")
        .expect("a summary");
    assert_eq!(summary["raw"]["scanned"], 65535, "{summary}");
    assert!(
        issues
            .iter()
            .any(|i| i["type"] == "port_info" && i["target"]["port_id"] == port),
        "the open port {port} is found"
    );
    drop(open);

    // A refusal quotes the value it could not read.
    let reason = face
        .start_local("tcp", json!(2), json!({"ports": ["-x"]}))
        .await
        .refused(400, "refused");
    assert!(reason.contains("\"-x\""), "{reason}");
}

#[actix_rt::test]
async fn options_the_tcp_scanner_does_not_do_and_multi_line_hosts_are_refused() {
    let face = spawn(|_| {}).await;
    // Set to a value Python takes as true, each is refused with its reason.
    for (key, value, why) in [
        ("detect_service_version", json!(1), "version detection"),
        ("script", json!("libs/vulners.nse"), "NSE scripts"),
        ("detect_os", json!(true), "OS detection"),
        ("scan_udp", json!("0"), "TCP only"),
        ("min-rate", json!(1000), "connect_timeout_ms"),
    ] {
        let mut options = json!({"ports": ["22"]});
        options[key] = value;
        let answer = face
            .start_local("tcp", json!(key), json!(options.to_string()))
            .await;
        let reason = answer.refused(400, "refused");
        assert!(
            reason.contains(&format!("options.{key} (")) && reason.contains(why),
            "{key}: {reason}"
        );
        let details = answer.json()["details"]["reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            reason.starts_with(details.trim_end_matches('…')),
            "{details}"
        );
    }
    // Turned off (0, false, ""), as PatrowlManager's policies send them, they are taken.
    face.accept_local(
        "tcp",
        json!("off"),
        json!({"ports": ["9"], "detect_service_version": 0, "detect_os": false,
                    "script": "", "no_dns": 1, "fast_scan": 0}),
    )
    .await;

    // top_ports up to its documented maximum; past it, a refusal naming the limit.
    face.accept_local("tcp", json!("top100"), json!({"top_ports": "100"}))
        .await;
    let reason = face
        .start_local("tcp", json!("top101"), json!({"top_ports": 101}))
        .await
        .refused(400, "refused");
    assert!(reason.contains("101 is more than the 100"), "{reason}");

    // A host name with a line break or NUL, refused by every scanner alike.
    for (i, (engine, value)) in [
        ("tcp", "a.example\nb.example"),
        ("tcp", "a.example\0"),
        ("cmd", "a.example\r\n-oN /tmp/x"),
        ("cmd", "a.example\0b"),
        ("http", "a.example\nb"),
    ]
    .into_iter()
    .enumerate()
    {
        let asset = json!([{"id": 1, "value": value, "criticity": "low", "datatype": "fqdn"}]);
        let reason = face
            .start(
                engine,
                scan_body(json!(format!("host{i}")), asset, json!({})),
            )
            .await
            .refused(400, "refused");
        assert!(
            reason.contains("carriage return, line feed or NUL"),
            "{engine} {value:?}: {reason}"
        );
    }
}

#[actix_rt::test]
async fn findings_over_patrowl_managers_column_limits_are_cut_and_kept_whole_in_raw() {
    let title = "é".repeat(300);
    let kind = "t".repeat(60);
    let addr = format!("{}.example", "h".repeat(300));
    let finding = json!({"title": title, "type": kind, "raw": "plain",
        "target": {"addr": [addr, "a.example"]}});
    let fits = json!({"title": "x".repeat(174), "type": "y".repeat(50), "raw": {"k": 1}});
    let (face, findings) = findings_of_lines("long", &[&finding, &fits]).await;
    let issue = &findings["issues"][0];
    let shown = issue["title"].as_str().unwrap();
    assert_eq!(shown.chars().count(), 174, "{shown}");
    assert_eq!(shown, format!("{}…", "é".repeat(173)));
    assert_eq!(issue["type"], format!("{}…", "t".repeat(49)));
    let addrs = issue["target"]["addr"].as_array().unwrap();
    assert_eq!(addrs[0].as_str().unwrap().chars().count(), 256);
    assert!(addrs[0].as_str().unwrap().ends_with('…'));
    assert_eq!(addrs[1], "a.example");
    assert_eq!(
        issue["raw"],
        json!({"value": "plain", "full_title": title, "full_type": kind,
            "full_addr": [addr, "a.example"]})
    );
    // At the limits exactly, nothing is cut or added.
    let issue = &findings["issues"][1];
    assert_eq!(issue["title"], "x".repeat(174));
    assert_eq!(issue["type"], "y".repeat(50));
    assert_eq!(issue["raw"], json!({"k": 1}));
    // The log keeps what the scanner reported.
    assert_eq!(face.first_reported("long").await["title"], title);
}

#[actix_rt::test]
async fn a_scan_id_is_free_again_once_its_report_is_fetched_or_it_is_cleaned() {
    let face = spawn(|_| {}).await;
    let body = || scan_body(json!(7), ip_asset("127.0.0.1"), json!({}));
    let types = |history: &Value| strings(items(&history["events"]), "/type");
    assert_eq!(face.start("cmd", body()).await.status, 200);
    assert_eq!(face.wait_ended("cmd", "7").await["status"], "FINISHED");
    // Ended, its report not fetched: still in use (another manager may be about to fetch it).
    face.start("cmd", body()).await.refused(409, "refused");

    // PatrowlManager's sequence: findings, then the report, which upstream forgets the scan
    // after. The id is then free, and each use is a new scan with its own findings.
    let first = face.get("/engines/cmd/getfindings/7").await.json();
    assert_eq!(face.get("/engines/cmd/getreport/7").await.status, 200);
    assert_eq!(face.get("/engines/cmd/getreport/7").await.status, 200);
    face.accept("cmd", body()).await;
    let second = face.finished_findings("cmd", "7").await;
    assert_eq!(second["issues"][0]["issue_id"], 1);
    assert_eq!(
        second["summary"]["nb_issues"], first["summary"]["nb_issues"],
        "its own findings, not added to the first use's"
    );
    let status = face.get("/engines/cmd/status").await.json();
    assert_eq!(status["scans"].as_object().unwrap().len(), 1);
    assert_eq!(status["scans"]["7"]["status"], "FINISHED");

    // Each use keeps its own stream; the report's fetch is noted once.
    let old = face.get("/api/streams/scan-cmd-7").await.json();
    let old_types = types(&old);
    assert_eq!(old_types.first().unwrap(), "ScanRequested");
    assert_eq!(
        old_types
            .iter()
            .filter(|t| *t == "ScanReportFetched")
            .count(),
        1,
        "{old_types:?}"
    );
    assert_eq!(old_types.last().unwrap(), "ScanReportFetched");
    let new = face.get("/api/streams/scan-cmd~2-7").await.json();
    assert_eq!(types(&new).first().unwrap(), "ScanRequested");
    assert!(!types(&new).contains(&"ScanReportFetched".to_owned()));

    // Cleaned, without its report fetched: free as well; the third use.
    assert_eq!(face.get("/engines/cmd/clean/7").await.status, 200);
    face.accept("cmd", body()).await;
    assert_eq!(face.wait_ended("cmd", "7").await["status"], "FINISHED");
    let third = face.get("/api/streams/scan-cmd~3-7").await.json();
    assert_eq!(types(&third).first().unwrap(), "ScanRequested");
    assert_eq!(
        types(&face.get("/api/streams/scan-cmd~2-7").await.json())
            .last()
            .unwrap(),
        "ScanCleaned"
    );
}

/// The longest prefix PatrowlManager gives a scan job's events: `start_periodic_scan_task`'s,
/// with its task's UUID, then `_run_scan_job`'s `[Job=N]` (here a thousandth job).
const MANAGER_JOB_PREFIX: &str =
    "[EngineTasks/start_periodic_scan_task/01234567-89ab-cdef-0123-456789abcdef] [Job=1000]";

/// The event message PatrowlManager writes for a refused `startscan` (its `_run_scan_job`):
/// `details.reason`, else `reason`, in a sentence. `Event.message` is a
/// `CharField(max_length=250)`: a longer one fails the job's task before the event is
/// written, so the scan never ends and nobody learns why.
fn manager_refusal_event(answer: &Answer) -> String {
    let body = answer.json();
    let reason = body["details"]["reason"]
        .as_str()
        .or(body["reason"].as_str())
        .unwrap_or("Unknown");
    format!(
        "{MANAGER_JOB_PREFIX} DuringScan - Something goes wrong (response_status_code={}, \
         response_status={}, response_details={reason}). Task aborted.",
        answer.status,
        body["status"].as_str().unwrap()
    )
}

#[actix_rt::test]
async fn a_refusal_fits_the_event_patrowl_manager_writes_about_it() {
    let face = spawn(|_| {}).await;
    // Two of PatrowlManager's own nmap policies, that the tcp scanner cannot do.
    let vulners = json!({"ports": ["135", "80", "53", "443", "25", "445", "3389"],
        "no_dns": 1, "script": "libs/vulners.nse", "no_ping": 0, "detect_os": 1});
    let advanced = json!({"script": "libs/vulners.nse", "script_args": "newtargets",
        "show_open_ports": 1, "script_output_fields": ["coucou", "gnagna"],
        "detect_service_version": 1});
    let url = json!([{"id": 1, "value": "https://x.example/", "datatype": "url"}]);
    let mut answers = vec![
        face.start_local("tcp", json!(1), vulners).await,
        face.start_local("tcp", json!(2), advanced).await,
        face.start("tcp", scan_body(json!(3), url, json!({}))).await,
    ];
    face.accept_local("slow", json!(1), json!({})).await;
    answers.push(face.start_local("slow", json!(2), json!({})).await);
    for answer in &answers {
        assert_ne!(answer.status, 200, "{}", answer.json());
        let event = manager_refusal_event(answer);
        assert!(
            event.chars().count() <= 250,
            "{} characters: {event}",
            event.chars().count()
        );
    }
    // The whole reason is still in `reason`, which PatrowlManager keeps in the event's
    // description with the rest of the answer.
    let reason = answers[1].refused(400, "refused");
    for option in [
        "script",
        "script_args",
        "script_output_fields",
        "detect_service_version",
    ] {
        assert!(reason.contains(&format!("options.{option} (")), "{reason}");
    }
    // What PatrowlManager shows names the first option refused.
    let details = answers[1].json()["details"]["reason"].clone();
    assert_eq!(details, "options.script (NSE scripts need nmap),…");
    let busy = answers[3].json();
    assert_eq!(
        busy["reason"],
        "Scan refused: max concurrent active scans reached (1)"
    );
    let details = busy["details"]["reason"].as_str().unwrap();
    assert!(details.starts_with("Scan refused: max "), "{details}");
    face.get("/engines/slow/stopscans").await;
}

#[actix_rt::test]
async fn a_findings_title_fits_the_event_patrowl_manager_writes_about_it() {
    let face = spawn(|_| {}).await;
    let port = http_target(&[("server", "Apache/2.4.58 (Unix)")], None);
    // A URL asset of 150 characters: the http scanner names it in its titles.
    let path = "p".repeat(150 - format!("http://127.0.0.1:{port}/").len());
    let url = format!("http://127.0.0.1:{port}/{path}");
    let asset = json!([{"id": 1, "value": url, "criticity": "high", "datatype": "url"}]);
    face.accept("http", scan_body(json!(1), asset, json!({})))
        .await;
    let findings = face.finished_findings("http", "1").await;
    let issues = findings["issues"].as_array().unwrap();
    assert!(issues.len() >= 4, "{findings}");
    for issue in issues {
        // PatrowlManager's `_import_findings` writes this event for every finding new to
        // it, its scan and scan job ids being database keys (at most 10 digits).
        let event = format!(
            "[EngineTasks/_import_findings()/scan_id={}/{}] New finding: {}",
            i32::MAX,
            i32::MAX,
            issue["title"].as_str().unwrap()
        );
        assert!(
            event.chars().count() <= 250,
            "{} characters: {event}",
            event.chars().count()
        );
        let full = issue["raw"]["full_title"].as_str();
        let title = issue["title"].as_str().unwrap();
        if let Some(full) = full {
            assert!(full.contains(&url), "{full}");
            assert!(full.starts_with(title.trim_end_matches('…')), "{title}");
        }
    }
}

#[actix_rt::test]
async fn a_range_or_subnets_findings_name_each_host_as_nmap_does() {
    let face = spawn(|_| {}).await;
    // The same port open on two hosts of a range.
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = first.local_addr().unwrap().port();
    let second = std::net::TcpListener::bind(("127.0.0.2", port)).unwrap();
    let assets = json!([
        {"id": 1, "value": "127.0.0.1-2", "criticity": "low", "datatype": "ip-range"},
        {"id": 2, "value": "127.0.0.0/30", "criticity": "low", "datatype": "ip-subnet"}
    ]);
    face.accept("tcp", scan_body(json!(1), assets, json!({"ports": [port]})))
        .await;
    let findings = face.finished_findings("tcp", "1").await;
    let issues = findings["issues"].as_array().unwrap();
    let open: Vec<(String, String)> = issues
        .iter()
        .filter(|i| i["type"] == "port_info")
        .map(|i| {
            let addr = i["target"]["addr"].as_array().unwrap();
            assert_eq!(addr.len(), 1, "{i}");
            (
                addr[0].as_str().unwrap().to_owned(),
                i["title"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // PatrowlManager files a finding under its address (creating the host's asset, under the
    // range or subnet it belongs to) and keeps one finding per address and title: each host
    // is its own address, as in the nmap engine's issues.
    let hosts: Vec<&str> = open.iter().map(|(addr, _)| addr.as_str()).collect();
    assert_eq!(hosts, ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2"]);
    let summaries: Vec<&str> = issues
        .iter()
        .filter(|i| i["type"] == "port_summary")
        .map(|i| i["target"]["addr"][0].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        [
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.0",
            "127.0.0.1",
            "127.0.0.2",
            "127.0.0.3"
        ]
    );
    drop((first, second));
}

#[actix_rt::test]
async fn an_issue_carries_no_nul_character_which_patrowl_managers_database_refuses() {
    // PostgreSQL takes no NUL in a text column nor `\u0000` in a JSON one: one such finding
    // fails PatrowlManager's whole import.
    let finding = json!({"title": "a\u{0}b", "description": "c\u{0}d", "solution": "e\u{0}",
        "type": "t\u{0}", "raw": {"k\u{0}": ["v\u{0}"]}, "tags": ["g\u{0}"],
        "links": ["l\u{0}"], "target": {"addr": ["h\u{0}.example"], "protocol": "p\u{0}"}});
    let (face, findings) = findings_of_lines("nul", &[&finding]).await;
    let issue = &findings["issues"][0];
    assert!(!issue.to_string().contains("\\u0000"), "{issue}");
    assert_eq!(issue["title"], "a\u{fffd}b");
    assert_eq!(issue["description"], "c\u{fffd}d");
    assert_eq!(issue["raw"], json!({"k\u{fffd}": ["v\u{fffd}"]}));
    assert_eq!(issue["target"]["addr"], json!(["h\u{fffd}.example"]));
    // The report's findings too, and the log keeps what the scanner reported.
    let report = face.json_report("nul", "1").await;
    assert!(!String::from_utf8_lossy(&report.body).contains("\\u0000"));
    assert_eq!(face.first_reported("nul").await["title"], "a\u{0}b");
}

/// Findings that come fast are recorded in a few appends, not one each: every finding is still
/// its own `FindingReported`. The journal seals each round with one time and a scan has one
/// append in flight at a time, so each `recorded_at` is one append.
#[actix_rt::test]
async fn many_findings_at_once_are_recorded_in_a_few_appends() {
    let script = "cat > /dev/null\nyes '{\"title\":\"again\"}' | head -n 2000\n";
    let face = spawn(|config| config.patrowl.engines.push(command_engine("fast", script))).await;
    face.accept_local("fast", json!(1), json!({})).await;
    let findings = face.finished_findings("fast", "1").await;
    assert_eq!(findings["issues"].as_array().unwrap().len(), 2000);
    let face = &face;
    let events =
        common::app::stream_events(
            "scan-fast-1",
            |uri| async move { face.get(&uri).await.json() },
        )
        .await;
    let appends: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e["type"] == "FindingReported")
        .map(|e| e["recorded_at"].as_str().unwrap())
        .collect();
    // At most 256 findings an append: 8 when they come at once, a few more when they trickle
    // in on a loaded machine; far fewer than one per finding.
    assert!((8..=40).contains(&appends.len()), "{}", appends.len());
}

/// A scan followed after a restart still times out: its supervisor keeps the timeout, counted
/// from the program's start.
#[actix_rt::test]
async fn a_scan_followed_after_a_restart_still_times_out() {
    let (dir, data) = common::data_dir();
    let mut waiting = sh_engine("waiting", &waiting_script(dir.path()));
    waiting["timeout_s"] = json!(2);
    let config = restart_config(dir.path(), None, &[waiting]);
    let (group, _) = crash_while_waiting(&data, &config, dir.path()).await;
    restarted_scan_fails(&data, &config, &group, "timed out after 2 s").await;
}

/// A scan whose engine left the configuration does not go on: its program is stopped and the
/// scan interrupted before the server answers.
#[actix_rt::test]
async fn a_scan_whose_engine_left_the_configuration_is_stopped_and_interrupted() {
    let (dir, data) = common::data_dir();
    let waiting = sh_engine("waiting", &waiting_script(dir.path()));
    let config = restart_config(dir.path(), None, &[waiting]);
    let (group, _) = crash_while_waiting(&data, &config, dir.path()).await;
    let config = restart_config(dir.path(), None, &[sh_engine("other", "true")]);
    let server = serve(&data, &config);
    assert!(!group.iter().any(|pid| common::runs(*pid)), "it runs on");
    let after = served_face(&server);
    let history = after.get("/api/streams/scan-waiting-1").await.json();
    let last = items(&history["events"]).last().unwrap().clone();
    assert_eq!(last["type"], "ScanFailed", "{history}");
    assert_eq!(last["payload"]["reason"], "interrupted by restart");
    assert_eq!(
        std::fs::read_dir(data.join("patrowl-work"))
            .unwrap()
            .count(),
        0,
        "no run directory is left"
    );
    assert!(server.terminate().success());
}

/// A program followed after a restart that exits non-zero fails its scan with its code and
/// its last line of standard error, also one written before the restart, and the report
/// keeps its whole standard error.
#[actix_rt::test]
async fn a_program_that_fails_after_a_restart_fails_its_scan_with_its_last_error() {
    let (dir, data) = common::data_dir();
    let script = format!(
        "cat > /dev/null; echo 'no such thing' >&2; echo '{{\"title\":\"partial\"}}'; \
         while [ ! -e {go} ]; do sleep 0.02; done; exit 3",
        go = dir.path().join("go").display(),
    );
    let config = restart_config(dir.path(), None, &[sh_engine("failing", &script)]);
    let mut server = serve_with_findings(&data, &config, "failing", 1).await;
    crash(&mut server);
    let server = serve(&data, &config);
    let after = served_face(&server);
    std::fs::write(dir.path().join("go"), "").unwrap();
    let ended = after.wait_ended("failing", "1").await;
    assert_eq!(ended["status"], "ERROR", "{ended}");
    assert_eq!(
        ended["reason"],
        "the command exited with code 3: no such thing"
    );
    assert_eq!(ended["nb_findings"], 1);
    let report = unzip(&after.get("/engines/failing/getreport/1").await.body);
    assert_eq!(report["raw/command/stderr.txt"], b"no such thing\n");
    assert!(server.terminate().success());
}

/// Two nodes on one PostgreSQL log serve one engine that takes one scan at a time: of
/// starts sent to both at once, exactly one is accepted; its program runs on the node holding
/// its shard, and a stop sent to the other node stops it, after which either node accepts the
/// next scan.
#[actix_rt::test]
async fn max_scans_holds_across_the_nodes_of_one_log() {
    let url = common::postgres::server().new_database();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("slow.pid");
    let slow = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let config = restart_config(dir.path(), None, &[sh_engine("slow", &slow)]);
    let master_key = "cd".repeat(32);
    let node = |name: &str| {
        let envs = [
            ("ANNALS_LOG_BACKEND", "postgres"),
            ("ANNALS_LOG_POSTGRES_URL", url.as_str()),
            ("ANNALS_LOG_POSTGRES_LEASE_S", "1"),
            ("ANNALS_MASTER_KEY", &master_key),
        ];
        let data = dir.path().join(name);
        common::serve_data(&data, Some(&config), &[], &envs).expect("the node starts")
    };
    // Node a starts first and holds every shard.
    let (a, b) = (node("a"), node("b"));
    let (on_a, on_b) = (served_face(&a), served_face(&b));
    let starts = (0..8).map(|n| {
        let face = if n % 2 == 0 { &on_a } else { &on_b };
        face.start_local("slow", json!(n), json!({}))
    });
    let answers = futures_util::future::join_all(starts).await;
    let accepted: Vec<usize> = (0..8).filter(|n| answers[*n].status == 200).collect();
    assert_eq!(
        accepted.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    for answer in answers.iter().filter(|answer| answer.status != 200) {
        assert_eq!(answer.status, 503, "{}", answer.json());
        let reason = answer.json()["reason"].clone();
        assert_eq!(
            reason,
            "Scan refused: max concurrent active scans reached (1)"
        );
    }
    let scan = accepted[0].to_string();
    let pid = pid_in(&pid_file);
    assert!(
        common::supervised_under(pid, &dir.path().join("a")),
        "the program runs on node a"
    );
    // Stopped through node b.
    assert_eq!(
        on_b.get(&format!("/engines/slow/stop/{scan}")).await.status,
        200
    );
    common::poll(SCAN_DEADLINE, "the program to end", || {
        (!common::runs(pid)).then_some(())
    });
    for face in [&on_a, &on_b] {
        common::poll_async(SCAN_DEADLINE, "the engine ready", || async {
            let status = face.get("/engines/slow/status").await.json();
            (status["status"] == "READY").then_some(())
        })
        .await;
    }
    on_b.accept_local("slow", json!(100), json!({})).await;
    let busy = on_a.start_local("slow", json!(101), json!({})).await;
    assert_eq!(busy.status, 503, "{}", busy.json());
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}
