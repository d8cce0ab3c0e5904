//! The `nmap` scanner against the real server and the real nmap (Debian's `nmap` package, which
//! `.ci/run` installs), on loopback targets the tests start: an HTTP server with a known banner,
//! a closed port, `localhost` for a name. PatrowlManager's sequence, the nmap engine's titles
//! and types, service versions with their CPE, a shipped NSE script's output, the raw XML in
//! the report, the fallback without raw sockets, stop, and a restart of annals mid-scan.

use crate::common;
use crate::patrowl::unzip;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use annals::config::{Config, EngineConfig, ScannerKind};
use common::app::{items, strings, TestApp};
use serde_json::{json, Value};

/// How long a scan may take to end in these tests (nmap's version detection waits some
/// seconds on each service).
const SCAN_DEADLINE: Duration = Duration::from_secs(120);

/// The banner of the test's HTTP server: one nmap's probes know, with its CPE.
const SERVER: &str = "Apache/2.4.41 (Ubuntu)";
const CPE: &str = "cpe:/a:apache:http_server:2.4.41";
/// The page title that nmap's shipped `http-title` script reports.
const TITLE: &str = "Known banner page";

type Answer = common::app::Answer<common::app::Patrowl>;

struct Face {
    main: String,
    client: awc::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Face {
    async fn get(&self, path: &str) -> Answer {
        let request = self.client.get(format!("{}{path}", self.main));
        Answer::send(request, Vec::new(), 64 << 20).await
    }

    async fn start(&self, engine: &str, scan_id: u32, assets: Value, options: Value) -> Answer {
        let body = json!({"assets": assets, "options": options, "engine_id": 1,
            "scan_id": scan_id});
        let request = self
            .client
            .post(format!("{}/engines/{engine}/startscan", self.main))
            .insert_header(("content-type", "application/json"));
        Answer::send(request, body.to_string(), 1 << 20).await
    }

    async fn accept(&self, engine: &str, scan_id: u32, assets: Value, options: Value) {
        let answer = self.start(engine, scan_id, assets, options).await;
        assert_eq!(answer.status, 200, "{}", answer.json());
    }

    /// Polls `status/<id>` as PatrowlManager does until the scan is `wanted`.
    async fn wait_for(&self, engine: &str, scan_id: u32, wanted: &[&str]) -> Value {
        common::poll_async(SCAN_DEADLINE, "the scan's status", || async {
            let body = self
                .get(&format!("/engines/{engine}/status/{scan_id}"))
                .await
                .json();
            let status = body["status"].as_str().unwrap_or_default();
            wanted.contains(&status).then_some(body)
        })
        .await
    }

    /// The `getfindings` body of a scan that must finish.
    async fn finished_findings(&self, engine: &str, scan_id: u32) -> Value {
        let ended = self
            .wait_for(engine, scan_id, &["FINISHED", "ERROR", "STOPPED"])
            .await;
        assert_eq!(ended["status"], "FINISHED", "{ended}");
        self.get(&format!("/engines/{engine}/getfindings/{scan_id}"))
            .await
            .json()
    }

    /// nmap's process group, as the scan's `ScanSupervised` event recorded it.
    async fn nmap_group(&self, engine: &str) -> u32 {
        common::poll_async(SCAN_DEADLINE, "nmap's supervision", || async {
            let history = self
                .get(&format!("/api/streams/scan-{engine}-1"))
                .await
                .json();
            let events = history["events"].as_array()?;
            let supervised = events.iter().find(|e| e["type"] == "ScanSupervised")?;
            supervised["payload"]["run"]["group"]
                .as_u64()
                .map(|g| g as u32)
        })
        .await
    }
}

/// An `nmap` engine named `name` (nmap found on `PATH`), with `privileged` as given.
fn nmap_engine(name: &str, privileged: Option<bool>) -> EngineConfig {
    EngineConfig {
        name: name.into(),
        scanner: ScannerKind::Nmap,
        privileged,
        kill_grace_s: 1,
        ..EngineConfig::defaults(ScannerKind::Nmap)
    }
}

async fn spawn(configure: impl FnOnce(&mut Config)) -> Face {
    let app = TestApp::start(common::app::t0_clock(), |config, _| {
        config.partisci.enabled = false;
        config.refstack.enabled = false;
        configure(config);
    })
    .await;
    Face {
        main: app.main,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        _dir: Some(app.dir),
    }
}

/// An HTTP server on 127.0.0.1 that answers every request with [`SERVER`] and a page titled
/// [`TITLE`], on a thread of its own; its port.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Answer once a request's head is read; a probe that sends nothing gets
                // nothing, as from a real HTTP server.
                // A head ends with an empty line, CRLF or, as the nmap engine's banner
                // request writes it, LF alone.
                let ended = |r: &[u8]| {
                    r.windows(4).any(|w| w == b"\r\n\r\n") || r.windows(2).any(|w| w == b"\n\n")
                };
                while !ended(&request) {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let page = format!("<html><head><title>{TITLE}</title></head><body></body></html>");
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nServer: {SERVER}\r\nContent-Type: text/html\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    port
}

/// A port of 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Checks what PatrowlManager's import needs of every issue: a title of at most 256
/// characters, a type of at most 50, a severity and confidence of its sets.
fn within_patrowl_managers_limits(findings: &Value) {
    for issue in items(&findings["issues"]) {
        let title = issue["title"].as_str().unwrap();
        let kind = issue["type"].as_str().unwrap();
        assert!(!title.is_empty() && title.chars().count() <= 256, "{issue}");
        assert!(!kind.is_empty() && kind.chars().count() <= 50, "{issue}");
        assert!(
            ["info", "low", "medium", "high", "critical"]
                .contains(&issue["severity"].as_str().unwrap()),
            "{issue}"
        );
        let confidence = issue["confidence"].as_str().unwrap();
        assert!(
            ["certain", "firm", "tentative", "undefined"].contains(&confidence),
            "{issue}"
        );
        assert!(confidence.len() <= 10);
        assert!(!items(&issue["target"]["addr"]).is_empty(), "{issue}");
    }
}

/// The default configuration declares an `nmap` engine, READY where nmap is installed; one
/// whose program is missing is in ERROR, says why, and refuses scans.
#[actix_rt::test]
async fn the_default_nmap_engine_is_ready_and_a_missing_nmap_is_an_error() {
    let face = spawn(|config| {
        config.patrowl.engines.push(EngineConfig {
            program: "/nonexistent/nmap".into(),
            ..nmap_engine("nonmap", None)
        });
    })
    .await;
    let status = face.get("/engines/nmap/status").await.json();
    assert_eq!(status["status"], "READY", "{status}");
    assert_eq!(status["scanner"]["scanner"], "nmap", "{status}");

    let status = face.get("/engines/nonmap/status").await.json();
    assert_eq!(status["status"], "ERROR", "{status}");
    let refused = face
        .start(
            "nonmap",
            1,
            json!([{"id": 1, "value": "127.0.0.1", "datatype": "ip"}]),
            json!({}),
        )
        .await;
    assert_eq!(refused.status, 503, "{}", refused.json());
    let reason = refused.json().to_string();
    assert!(
        reason.contains(
            "its program \\\"/nonexistent/nmap\\\" is not found or not executable (install \
             nmap: Debian's `nmap` package)"
        ),
        "{reason}"
    );

    // What nmap would refuse, or take as another host or option, is refused before it runs.
    for (assets, options, says) in [
        (
            json!([{"id": 1, "value": "a b", "datatype": "fqdn"}]),
            json!({}),
            "is not a host name",
        ),
        (
            json!([{"id": 1, "value": "127.0.0.1", "datatype": "ip"}]),
            json!({"ports": ["80"], "fast_scan": 1}),
            "nmap cannot use -F with -p",
        ),
        (
            json!([{"id": 1, "value": "127.0.0.1", "datatype": "ip"}]),
            json!({"host_file_path": "/etc/passwd"}),
            "reads no file of this server",
        ),
    ] {
        let answer = face.start("nmap", 1, assets, options).await;
        assert_eq!(answer.status, 400, "{}", answer.json());
        assert!(
            answer.json().to_string().contains(says),
            "{}",
            answer.json()
        );
    }
}

/// PatrowlManager's sequence with an nmap engine: the service and its version are found with
/// their CPE (as `vuln_refs.CPE`, which Manager tags the asset with), a shipped NSE script's
/// output is in the service's raw data, the name's IP is a finding and an asset of every
/// finding of its host, a name that does not resolve is a finding, titles and types are the
/// nmap engine's, every issue fits Manager's columns, and the report holds nmap's XML.
#[actix_rt::test]
async fn an_nmap_scan_reports_the_nmap_engines_findings() {
    let face = spawn(|_| {}).await;
    let (open, closed) = (http_server(), closed_port());
    let assets = json!([
        {"id": 1, "value": "localhost", "criticity": "low", "datatype": "fqdn"},
        {"id": 2, "value": "nowhere.invalid", "criticity": "low", "datatype": "domain"},
    ]);
    let options = json!({
        "ports": [open.to_string(), closed.to_string()],
        "detect_service_version": 1,
        "script": "http-title",
        "no_dns": 1,
        "banner": 1,
    });
    face.accept("nmap", 1, assets, options).await;
    let findings = face.finished_findings("nmap", 1).await;
    within_patrowl_managers_limits(&findings);
    let issues = items(&findings["issues"]);
    let titles = strings(issues, "/title");
    assert_eq!(
        titles,
        [
            "Host 'localhost' has ip: '127.0.0.1'".to_owned(),
            format!("Service 'http' is running on port 'tcp/{open}'"),
            format!("Port 'tcp/{open}' is open"),
            "Host 'localhost' is up".to_owned(),
            "Failed to resolve 'nowhere.invalid'".to_owned(),
            format!("Service banner for localhost:{open}"),
            format!("Service banner for 127.0.0.1:{open}"),
        ],
        "{findings}"
    );
    assert_eq!(
        strings(issues, "/type"),
        [
            "host_ip",
            "port_info",
            "port_status",
            "host_availability",
            "nmap_error_unresolved",
            "port_banner",
            "port_banner"
        ]
    );
    assert_eq!(
        strings(issues, "/severity"),
        ["info", "info", "info", "info", "low", "info", "info"]
    );
    // The server says nothing first: its banner is its answer to an HTTP request.
    let banner = &issues[6]["raw"];
    assert_eq!(banner["host"], "127.0.0.1");
    assert_eq!(banner["port"], open);
    assert!(
        banner["banner"]
            .as_str()
            .unwrap()
            .contains(&format!("Server: {SERVER}")),
        "{banner}"
    );
    let service = &issues[1];
    assert_eq!(service["target"]["addr"], json!(["localhost", "127.0.0.1"]));
    assert_eq!(service["target"]["port_id"], open);
    assert_eq!(service["metadata"]["vuln_refs"]["CPE"], json!([CPE]));
    assert_eq!(
        service["metadata"]["links"],
        json!([format!(
            "https://nvd.nist.gov/vuln/search/results?adv_search=true&cpe={CPE}"
        )])
    );
    let raw = &service["raw"];
    assert_eq!(raw["product"], "Apache httpd", "{raw}");
    assert_eq!(raw["version"], "2.4.41", "{raw}");
    assert_eq!(raw["port_state"], "open");
    assert!(
        raw["script_output"].as_str().unwrap().contains(TITLE),
        "{raw}"
    );
    assert_eq!(issues[0]["target"]["addr"], json!(["localhost"]));
    assert_eq!(issues[0]["raw"], json!({"value": "127.0.0.1"}));

    // Every asset is done once nmap is.
    let history = face.get("/api/streams/scan-nmap-1").await.json();
    let scanned: Vec<&Value> = items(&history["events"])
        .iter()
        .filter(|e| e["type"] == "AssetScanned")
        .map(|e| &e["payload"]["asset"])
        .collect();
    assert_eq!(scanned, [&json!("localhost"), &json!("nowhere.invalid")]);

    let report = unzip(&face.get("/engines/nmap/getreport/1").await.body);
    let xml = String::from_utf8_lossy(&report["raw/nmap/nmap.xml"]);
    assert!(
        xml.starts_with("<?xml") && xml.trim_end().ends_with("</nmaprun>"),
        "{xml}"
    );
    assert!(xml.contains(CPE), "{xml}");
    let command = String::from_utf8_lossy(&report["raw/nmap/command.txt"]);
    assert!(
        command.starts_with("nmap -vvv --noninteractive -oX - -iL -"),
        "{command}"
    );
    assert!(command.contains("--script http-title"), "{command}");
    assert!(report.contains_key("raw/nmap/stderr.txt"));
}

/// Without raw sockets (an engine told so, as on a host where annals is not root), a SYN scan
/// becomes a connect scan and OS detection is left out, and the scan says so in a finding and
/// in the report's command line.
#[actix_rt::test]
async fn without_raw_sockets_the_scan_falls_back_and_says_so() {
    let face = spawn(|config| {
        config
            .patrowl
            .engines
            .push(nmap_engine("plain", Some(false)));
    })
    .await;
    let closed = closed_port();
    let assets = json!([{"id": 1, "value": "127.0.0.1", "datatype": "ip"}]);
    let options = json!({"ports": [closed.to_string()], "syn_scan": 1, "detect_os": 1});
    face.accept("plain", 1, assets, options).await;
    let findings = face.finished_findings("plain", 1).await;
    within_patrowl_managers_limits(&findings);
    let issues = items(&findings["issues"]);
    let info = issues
        .iter()
        .find(|i| i["type"] == "scan_info")
        .unwrap_or_else(|| panic!("{findings}"));
    assert_eq!(
        info["title"],
        "Scan options left out without root privileges"
    );
    let description = info["description"].as_str().unwrap();
    assert!(
        description.contains("a SYN scan (-sS) needs root"),
        "{description}"
    );
    assert!(
        description.contains("OS detection (-O) needs root"),
        "{description}"
    );
    assert!(
        // As the nmap engine names a host: by its reverse name when it has one.
        strings(issues, "/title").contains(&"Host 'localhost' is up".to_owned()),
        "{findings}"
    );
    let report = unzip(&face.get("/engines/plain/getreport/1").await.body);
    let command = String::from_utf8_lossy(&report["raw/nmap/command.txt"]);
    assert!(command.contains("--unprivileged -sT -p"), "{command}");
    assert!(!command.contains("-O "), "{command}");
    assert!(command.contains("without root: OS detection"), "{command}");
}

/// A stop ends nmap's whole process group and the scan STOPPED, keeping what it had.
#[actix_rt::test]
async fn a_stop_ends_nmap() {
    let face = spawn(|_| {}).await;
    let assets = json!([{"id": 1, "value": "127.0.0.1", "datatype": "ip"}]);
    // The paranoid timing waits five minutes between probes.
    let options = json!({"ports": [closed_port().to_string()], "timing-template": 0});
    face.accept("nmap", 1, assets, options).await;
    let group = face.nmap_group("nmap").await;
    assert!(common::runs(group));
    let stopped = face.get("/engines/nmap/stop/1").await;
    assert_eq!(stopped.status, 200, "{}", stopped.json());
    face.wait_for("nmap", 1, &["STOPPED"]).await;
    common::poll(SCAN_DEADLINE, "nmap to end", || {
        (!common::runs(group)).then_some(())
    });
}

/// `annals.toml` in `dir` with one nmap engine; its path.
fn nmap_config(dir: &Path) -> PathBuf {
    let file = dir.join("annals.toml");
    std::fs::write(
        &file,
        "[patrowl]\n\n[[patrowl.engines]]\nname = \"slow\"\nscanner = \"nmap\"\nkill_grace_s = 1\n",
    )
    .unwrap();
    file
}

fn served_face(served: &common::Served) -> Face {
    Face {
        main: format!("http://{}", served.address),
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        _dir: None,
    }
}

/// nmap runs on through a crash of annals: the restarted server follows it, reads its XML again
/// and records each host's findings once, the first host's before the crash, the second's
/// after it.
#[actix_rt::test]
async fn an_nmap_scan_goes_on_through_a_crash_of_annals() {
    let (dir, data) = common::data_dir();
    let config = nmap_config(dir.path());
    let mut server = common::serve_data(&data, Some(&config), &[], &[]).expect("it starts");
    let face = served_face(&server);
    // Two hosts of one address, which nmap scans one after the other (a group of hosts it
    // scans together never holds an address twice), at the sneaky timing (15 s between
    // probes).
    let assets = json!([
        {"id": 1, "value": "127.0.0.1", "datatype": "ip"},
        {"id": 2, "value": "localhost", "datatype": "fqdn"},
    ]);
    let options = json!({"ports": [closed_port().to_string()], "timing-template": 1,
        "no_dns": 1});
    face.accept("slow", 1, assets, options).await;
    let group = face.nmap_group("slow").await;
    common::poll_async(SCAN_DEADLINE, "the first host's findings", || async {
        let row = face.get("/engines/slow/status/1").await.json();
        (row["nb_findings"].as_u64() > Some(0)).then_some(())
    })
    .await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(common::runs(group), "nmap outlives annals");

    let server = common::serve_data(&data, Some(&config), &[], &[]).expect("it starts again");
    let face = served_face(&server);
    let findings = face.finished_findings("slow", 1).await;
    let mut titles = strings(items(&findings["issues"]), "/title");
    titles.sort();
    assert_eq!(
        titles,
        [
            "Host '127.0.0.1' is up",
            "Host 'localhost' has ip: '127.0.0.1'",
            "Host 'localhost' is up"
        ],
        "{findings}"
    );
    let report = unzip(&face.get("/engines/slow/getreport/1").await.body);
    let xml = String::from_utf8_lossy(&report["raw/nmap/nmap.xml"]);
    assert_eq!(xml.matches("<host ").count(), 2, "{xml}");
    assert!(!common::runs(group));
    assert!(server.terminate().success());
}
