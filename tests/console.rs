//! The web console in a real browser: headless Chromium driven over WebDriver by chromedriver,
//! which each test starts on a free port, against the real server in-process (real sled in a
//! temporary directory, every listener on port 0). The WebDriver client is the few commands
//! these tests need, spoken over the HTTP client the tests already use. Nothing sleeps: every
//! wait polls the page with a deadline. With `CONSOLE_SCREENSHOTS=<dir>` set, the tests save
//! screenshots of the pages they open there (`docs/console/` holds the ones the README shows).

#[path = "common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::config::{Config, EngineConfig, ScannerKind};
use annals::domain::workflow::catalogue::StepSpec;
use annals::domain::workflow::WorkflowSpec;
use annals::runtime::SystemClock;
use common::app::TestApp;
use serde_json::{json, Value};

/// How long a page may take to show what a test waits for, on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
/// How soon an event appended through a face must appear on an open page.
const LIVE: Duration = Duration::from_secs(1);

/// One browser at a time: each is a Chromium of several processes, and the machine running
/// the tests may have two cores.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The key of an element reference in WebDriver's answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver, started by the test, with one headless Chromium session.
struct Browser {
    driver: Child,
    /// chromedriver's base URL.
    base: String,
    session: String,
    client: awc::Client,
}

impl Browser {
    /// Starts chromedriver on a free port and a session of headless Chromium at `width` ×
    /// `height`. Fails, naming the packages to install, where chromedriver is missing.
    async fn start(width: u32, height: u32) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let program = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let driver = Command::new(&program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "{program} does not start ({error}): the browser tests need Chromium and \
                     its WebDriver, Debian's packages `chromium` and `chromium-driver` \
                     (apt-get install chromium chromium-driver)"
                )
            });
        let base = format!("http://127.0.0.1:{port}");
        let client = awc::Client::builder().timeout(WAIT * 2).finish();
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = match client.get(format!("{base}/status")).send().await {
                Ok(mut answer) => answer
                    .json::<Value>()
                    .await
                    .is_ok_and(|status| status["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut args = vec![
            "--headless=new".to_owned(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            format!("--window-size={width},{height}"),
        ];
        // Chromium refuses to run as root inside its sandbox.
        if unsafe { libc::geteuid() } == 0 {
            args.push("--no-sandbox".into());
        }
        let mut options = json!({ "args": args });
        // Chromium's windows are at least 500 px wide: a phone's width is emulated.
        if width < 500 {
            options["mobileEmulation"] =
                json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1}});
        }
        if let Some(binary) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|path| Path::new(path).exists())
        {
            options["binary"] = json!(binary);
        }
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            client,
        };
        let created = browser
            .command(
                "POST",
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome", "goog:chromeOptions": options}}}),
            )
            .await;
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser
    }

    /// Sends a WebDriver command (`path` under the session when it starts with `/` after
    /// `/session`); its `value`.
    async fn command(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if self.session.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let request = self.client.request(method.clone(), &url);
        // A GET has no body; chromedriver refuses one that is not an object.
        let sent = if method == awc::http::Method::GET {
            request.send().await
        } else {
            request.send_json(&body).await
        };
        let mut answer = sent.unwrap_or_else(|error| panic!("{method} {url}: {error}"));
        let body: Value = answer
            .json()
            .limit(64 << 20)
            .await
            .unwrap_or_else(|error| panic!("{method} {url}: {error}"));
        assert!(answer.status().is_success(), "{method} {url}: {body}");
        body["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.command("POST", "/url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body, `return …`) in the page; what it returns.
    async fn eval(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Polls `script` until it returns something else than `null` or `false`, for at most
    /// `wait`; that.
    async fn until(&self, wait: Duration, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let value = self.eval(script).await;
            if !value.is_null() && value != false {
                return value;
            }
            if Instant::now() >= deadline {
                let text = self.text("body").await;
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The text of the first element `css` selects ("" for none).
    async fn text(&self, css: &str) -> String {
        let script = format!(
            "var e = document.querySelector({}); return e ? e.innerText : '';",
            json!(css)
        );
        self.eval(&script).await.as_str().unwrap_or("").to_owned()
    }

    /// Waits until the page follows its events live (its event stream is open).
    async fn wait_live(&self) {
        self.until(
            WAIT,
            "the page to follow",
            "return document.body.dataset.live",
        )
        .await;
    }

    /// Waits until an element `css` selects shows `wanted` in its text; that text.
    async fn wait_for_text(&self, wait: Duration, css: &str, wanted: &str) -> String {
        let script = format!(
            "var e = document.querySelector({}); \
             return e && e.innerText.indexOf({}) >= 0 ? e.innerText : null;",
            json!(css),
            json!(wanted)
        );
        let what = format!("{wanted:?} in {css}");
        self.until(wait, &what, &script)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Clicks the first element `css` selects, as a user would.
    async fn click(&self, css: &str) {
        let found = self
            .command(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        let id = found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned();
        self.command("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    /// Saves a screenshot of the page as `<CONSOLE_SCREENSHOTS>/<name>.png`, when set.
    async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let Some(dir) = std::env::var_os("CONSOLE_SCREENSHOTS") else {
            return;
        };
        let png = self.command("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("a PNG");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    /// Ends the session (which closes Chromium) and chromedriver, whether the test passed or
    /// not: a blocking request, since a drop cannot await.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let address = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                let _ = stream.set_read_timeout(Some(WAIT));
                let _ = write!(
                    stream,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\n\
                     Connection: close\r\n\r\n",
                    self.session
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The real server, on the real clock (the pages show times and rates), with `configure`'s
/// changes; no account, so every route is open as on a loopback listener.
async fn server(configure: impl FnOnce(&mut Config, &Path)) -> TestApp {
    TestApp::start(Arc::new(SystemClock), configure).await
}

/// An HTTP client for the faces.
fn client() -> awc::Client {
    awc::Client::builder().timeout(WAIT).finish()
}

/// POSTs `body` as JSON to the main listener at `path`; the status and the body.
async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Vec<u8>) {
    let mut answer = client()
        .post(format!("{}{path}", app.main))
        .send_json(&body)
        .await
        .expect("the server answers");
    let bytes = answer.body().limit(1 << 20).await.expect("a body");
    (answer.status().as_u16(), bytes.to_vec())
}

/// Reports version `ver` of `app_name` on `host` through the inventory face.
async fn report(app: &TestApp, host: &str, app_name: &str, ver: &str) {
    let (status, body) = post(
        app,
        "/api/v1/update/",
        json!({"app": app_name, "ver": ver, "host": host}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[actix_rt::test]
async fn a_streams_timeline_shows_the_state_at_the_version_picked_and_follows_new_events() {
    timeline_scenario(common::Engine::Sled).await;
}

/// The same pages over a log in PostgreSQL: the console reads the event API and the faces'
/// read models, whichever engine holds the log.
#[actix_rt::test]
async fn on_a_postgresql_log_the_timeline_shows_the_state_at_a_version_and_follows_new_events() {
    timeline_scenario(common::Engine::Postgres).await;
}

async fn timeline_scenario(engine: common::Engine) {
    let _one = ONE_BROWSER.lock().await;
    let app = server(|config, _| {
        if engine == common::Engine::Postgres {
            config.log.backend = annals::config::LogBackend::Postgres;
            config.log.postgres_url = common::postgres::server().new_database();
        }
    })
    .await;
    report(&app, "web01", "nginx", "1.24.0").await;
    report(&app, "web01", "nginx", "1.25.3").await;
    let browser = Browser::start(1280, 900).await;

    // The overview lists the host's kind and its events.
    browser.open(&format!("{}/", app.main)).await;
    browser.wait_for_text(WAIT, "#kinds", "host").await;
    browser.wait_for_text(WAIT, "#latest", "host-web01").await;
    browser
        .wait_for_text(WAIT, "#faces", "Inventory hosts\n1")
        .await;
    if engine == common::Engine::Sled {
        browser.screenshot("overview").await;
    }

    // The stream page lists both versions; picking the first shows the state then.
    browser
        .open(&format!("{}/#/streams/host-web01", app.main))
        .await;
    browser.wait_for_text(WAIT, "#timeline", "1.25.3").await;
    browser.click("#timeline tr[data-version='1'] a").await;
    browser
        .wait_for_text(WAIT, "#state-version", "up to version 1.")
        .await;
    let state = browser.text("#state-json").await;
    assert!(
        state.contains("1.24.0") && !state.contains("1.25.3"),
        "{state}"
    );
    let selected = browser
        .eval("return document.querySelector('#timeline tr.selected').dataset.version")
        .await;
    assert_eq!(selected, "1");

    // The second version's state, with what changed from the first.
    browser.click("#timeline tr[data-version='2'] a").await;
    browser
        .wait_for_text(WAIT, "#state-version", "up to version 2.")
        .await;
    let changes = browser.text("#changes").await;
    assert!(
        changes.contains("\"1.24.0\" → \"1.25.3\""),
        "what changed: {changes}"
    );
    assert!(browser.text("#state-json").await.contains("1.25.3"));
    assert!(browser.eval("return location.hash").await == "#/streams/host-web01/v/2");
    if engine == common::Engine::Sled {
        browser.screenshot("stream").await;
    }

    // A report through the face appears on the open page within a second.
    browser.wait_live().await;
    report(&app, "web01", "nginx", "1.27.0").await;
    browser.wait_for_text(LIVE, "#timeline", "1.27.0").await;

    // The inventory: applications × hosts, with the latest version.
    browser.open(&format!("{}/#/inventory", app.main)).await;
    let inventory = browser.wait_for_text(WAIT, "#inventory", "1.27.0").await;
    assert!(inventory.contains("nginx"), "{inventory}");
    if engine == common::Engine::Sled {
        browser.screenshot("inventory").await;
    }

    // Going back in time by a date: before the first event there is nothing.
    browser
        .open(&format!(
            "{}/#/streams/host-web01/at/2000-01-01T00:00:00Z",
            app.main
        ))
        .await;
    browser
        .wait_for_text(WAIT, "#state", "had no event yet")
        .await;
}

#[actix_rt::test]
async fn the_address_refstack_client_prints_lists_the_uploads_tests() {
    let _one = ONE_BROWSER.lock().await;
    let app = server(|_, _| {}).await;
    let names = [
        "tempest.api.compute.test_one",
        "tempest.api.network.test_two",
    ];
    let results: Vec<Value> = names.iter().map(|name| json!({"name": name})).collect();
    let (status, body) = post(
        &app,
        "/v1/results/",
        json!({"cpid": "lab", "duration_seconds": 42, "results": results}),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let url = serde_json::from_slice::<Value>(&body).unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();

    let browser = Browser::start(1280, 900).await;
    browser.open(&url).await;
    let tests = browser
        .wait_for_text(WAIT, "#tests", "tempest.api.network.test_two")
        .await;
    assert!(tests.contains("tempest.api.compute.test_one"), "{tests}");
    assert!(browser.text("main").await.contains("2 passing tests"));
    browser.screenshot("result").await;
}

#[actix_rt::test]
async fn a_running_executions_log_lines_appear_live_on_a_phones_width() {
    let _one = ONE_BROWSER.lock().await;
    let go = std::sync::OnceLock::new();
    let app = server(|config, dir| {
        let file = dir.join("go");
        let script = format!(
            "echo first line; while [ ! -e {0} ]; do sleep 0.05; done; echo second line; \
             echo >&2 on standard error",
            file.display()
        );
        go.set(file).unwrap();
        config.hpcwaas.workflows = vec![WorkflowSpec {
            application_id: "demo".into(),
            environment_id: "lab".into(),
            environment_name: "The lab".into(),
            name: "wait".into(),
            description: "waits for its file".into(),
            steps: vec![StepSpec {
                name: "wait".into(),
                command: vec!["/bin/sh".into(), "-c".into(), script],
                ..StepSpec::default()
            }],
            ..WorkflowSpec::default()
        }];
    })
    .await;
    let mut answer = client()
        .post(format!("{}/workflows/demo@lab@wait", app.main))
        .send_body("{}")
        .await
        .expect("the server answers");
    assert_eq!(answer.status(), 201, "{:?}", answer.body().await);
    let location = answer
        .headers()
        .get("location")
        .expect("a Location")
        .to_str()
        .unwrap()
        .to_owned();
    let id = location.trim_start_matches("/executions/");

    // A phone's width.
    let browser = Browser::start(390, 844).await;
    browser
        .open(&format!("{}/#/streams/execution-{id}", app.main))
        .await;
    browser.wait_for_text(WAIT, "#log", "first line").await;
    browser.wait_live().await;
    std::fs::write(go.get().unwrap(), "").unwrap();
    browser.wait_for_text(WAIT, "#log", "second line").await;
    // The page fits the phone's width.
    assert_eq!(browser.eval("return window.innerWidth").await, 390);
    let overflow = browser
        .eval("return document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "wider than the screen by {overflow}"
    );
    browser.screenshot("execution-phone").await;

    // The executions, with its status.
    browser.open(&format!("{}/#/executions", app.main)).await;
    browser.wait_for_text(WAIT, "#executions", id).await;
}

#[actix_rt::test]
async fn a_scans_page_shows_its_findings_by_severity() {
    let _one = ONE_BROWSER.lock().await;
    let app = server(|config, _| {
        config.patrowl.engines.push(EngineConfig {
            name: "cmd".into(),
            scanner: ScannerKind::Command,
            version: "1.0".into(),
            description: "two findings".into(),
            allowed_asset_types: vec!["ip".into()],
            command: vec![
                "sh".into(),
                "-c".into(),
                r#"cat >/dev/null
echo '{"title":"Weak TLS","severity":"high","confidence":"firm","description":"d","type":"tls","target":{"addr":["10.0.0.1"],"protocol":"tcp","port_id":443}}'
echo '{"title":"Banner","severity":"info","confidence":"firm","description":"d","type":"banner","target":{"addr":["10.0.0.1"],"protocol":"tcp","port_id":22}}'
"#
                .into(),
            ],
            kill_grace_s: 1,
            ..EngineConfig::default()
        });
    })
    .await;
    let (status, body) = post(
        &app,
        "/engines/cmd/startscan",
        json!({"assets": [{"id": 1, "value": "10.0.0.1", "criticity": "low", "datatype": "ip"}],
               "options": {}, "engine_id": 1, "scan_id": 7}),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    let browser = Browser::start(1280, 900).await;
    browser
        .open(&format!("{}/#/streams/scan-cmd-7", app.main))
        .await;
    let findings = browser.wait_for_text(WAIT, "#findings", "Banner").await;
    assert!(findings.contains("Weak TLS"), "{findings}");
    let severities = browser.text("#severities").await;
    assert!(
        severities.contains("high 1") && severities.contains("info 1"),
        "{severities}"
    );
    browser.screenshot("scan").await;

    // The overview counts it among the scans by status, once it has finished.
    browser.open(&format!("{}/", app.main)).await;
    browser.wait_for_text(WAIT, "#scans", "FINISHED 1").await;

    // Found by its first event's id, and by the correlation id of the request that started
    // it, which the server looks up by the time the id carries.
    let mut answer = client()
        .get(format!("{}/api/streams/scan-cmd-7/events", app.main))
        .send()
        .await
        .expect("the server answers");
    let history: Value = answer.json().limit(1 << 20).await.unwrap();
    let first = &history["events"][0];
    for (id, says) in [
        (&first["event_id"], "The event with this id"),
        (&first["metadata"]["correlation_id"], "of this correlation"),
    ] {
        browser.open(&format!("{}/#/streams", app.main)).await;
        browser
            .eval(&format!(
                "document.getElementById('find').value = {id}; return true;"
            ))
            .await;
        browser.click("form button").await;
        let found = browser
            .wait_for_text(WAIT, "#found", "scan-cmd-7 v1 ScanRequested")
            .await;
        assert!(found.contains(says), "{found}");
    }

    // Browsed by kind, from the server's list of every stream of the kind.
    browser.open(&format!("{}/#/streams", app.main)).await;
    browser
        .wait_for_text(WAIT, "#kind-list", "scan (1 stream,")
        .await;
    browser.click("#kind-list a").await;
    browser.wait_for_text(WAIT, "#streams", "scan-cmd-7").await;
    let listed = browser.text("#stream-list").await;
    assert!(listed.contains("1 stream, the most recently"), "{listed}");
    browser.screenshot("kind").await;
}

/// Writes 10 events to a new log at `path`, closes it, then flips a bit of the stored hash of
/// the event at position 5, as a failing disk or an attacker would, through sled itself.
fn tampered_log(path: &Path) {
    let path = path.to_owned();
    // The test runs inside the server's runtime; the log is written from a runtime of its own.
    std::thread::spawn(move || {
        let log = annals::events::EventLog::open(&path, common::fast()).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            for i in 0..10 {
                let stream = common::stream(&format!("job-{}", i % 3));
                log.append(
                    stream,
                    annals::events::ExpectedVersion::Any,
                    vec![common::line(&format!("event {i}"))],
                )
                .await
                .unwrap();
            }
        });
        log.close();
        drop(log);
        // sled's threads hold the lock of a log just closed for a moment.
        let db = common::poll(annals::events::store::LOCK_WAIT, "the log's lock", || {
            sled::open(&path).ok()
        });
        let tree = db.open_tree("log").unwrap();
        let (key, _) = tree
            .scan_prefix(b"S")
            .map(Result::unwrap)
            .find(|(_, record)| {
                annals::events::RecordedEvent::open(record)
                    .unwrap()
                    .position
                    == 5
            })
            .unwrap();
        let mut record = tree.get(&key).unwrap().unwrap().to_vec();
        record[0] ^= 0x80;
        tree.insert(key, record).unwrap();
        db.flush().unwrap();
    })
    .join()
    .unwrap();
}

#[actix_rt::test]
async fn verify_from_the_page_names_a_tampered_logs_first_bad_position() {
    let _one = ONE_BROWSER.lock().await;
    let app = server(|config, _| tampered_log(&config.data)).await;
    let browser = Browser::start(1280, 900).await;
    browser.open(&format!("{}/#/verify", app.main)).await;
    browser.click("#verify").await;
    browser
        .wait_for_text(WAIT, "#verify-status", "failed")
        .await;
    let position = browser.text("#verify-position").await;
    assert_eq!(position, "First bad position: 5");
    browser.screenshot("verify").await;
}

#[actix_rt::test]
async fn a_test_runs_page_shows_each_tests_outcome_filterable() {
    let _one = ONE_BROWSER.lock().await;
    let app = server(|_, _| {}).await;
    let parsed = json!({"summary": {"PASS": 1, "FAIL": 1, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 1, "Total": 3},
        "data": {"tempest.api.x.Y": [["test_ok", "PASS", 0.5], ["test_bad", "FAIL", 0.1],
                                     ["test_later", "SKIP", 0.0]]}});
    let (status, body) = post(&app, "/v1/post-result", parsed).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let run = serde_json::from_slice::<Value>(&body).unwrap()["test_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // And a subunit v2 stream python-subunit wrote, on the same run: its tests' names are
    // only in its bytes, which the server reads again for the page.
    let mut answer = client()
        .post(format!("{}/v1/post-result?test_id={run}", app.main))
        .insert_header(("content-type", "application/octet-stream"))
        .send_body(include_bytes!("data/python-subunit-v2.subunit").to_vec())
        .await
        .expect("the server answers");
    assert_eq!(answer.status(), 201, "{:?}", answer.body().await);

    let browser = Browser::start(1280, 900).await;
    browser
        .open(&format!("{}/#/streams/test_run-{run}", app.main))
        .await;
    let tests = browser
        .wait_for_text(WAIT, "#uploads .outcomes", "tempest.api.x.Y.test_later")
        .await;
    assert!(
        tests.contains("FAIL\ttempest.api.x.Y.test_bad\t0.100 s"),
        "{tests}"
    );
    let subunit = browser
        .wait_for_text(
            WAIT,
            "#uploads",
            "sample_tests.ServersTest.test_reboot_server",
        )
        .await;
    assert!(
        subunit.contains("PASS (xfail)\tsample_tests.ServersTest.test_known_bug")
            && subunit.contains("SKIP\tsample_tests.ServersTest.test_attach_interface"),
        "{subunit}"
    );
    assert!(browser.text("#uploads .summary").await.contains("SKIP 1"));
    // Only the failures.
    browser
        .eval(
            "var s = document.querySelector('#uploads select.outcome'); s.value = 'FAIL'; \
             s.dispatchEvent(new Event('change')); return true;",
        )
        .await;
    let shown = browser.text("#uploads .outcomes").await;
    assert_eq!(shown.trim(), "FAIL\ttempest.api.x.Y.test_bad\t0.100 s");
    browser.screenshot("test-run").await;
}

#[actix_rt::test]
async fn with_accounts_the_page_is_open_and_what_it_reads_asks_the_browser_for_credentials() {
    use annals::auth::Role;
    let app = server(|config, _| {
        config.accounts = vec![common::password_account(
            "ada",
            "ada's password",
            &[Role::Admin],
        )];
    })
    .await;
    // The page holds no data: open, as the documentation.
    let mut page = client().get(format!("{}/", app.main)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.body().limit(1 << 20).await.unwrap();
    assert!(!String::from_utf8_lossy(&html).contains("ada's password"));
    // What its script reads is refused without credentials, with the Basic challenge that
    // makes a browser ask for them, and answered with them.
    for path in ["/api/events?from=0&limit=1", "/api/verify"] {
        let refused = client()
            .get(format!("{}{path}", app.main))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        let challenge = refused.headers().get("www-authenticate").unwrap();
        assert!(
            challenge.to_str().unwrap().starts_with("Basic realm="),
            "{challenge:?}"
        );
        let answered = client()
            .get(format!("{}{path}", app.main))
            .basic_auth("ada", "ada's password")
            .send()
            .await
            .unwrap();
        assert_eq!(answered.status(), 200, "{path}");
    }
}

#[actix_rt::test]
async fn an_agents_page_shows_its_registration_preflight_check_and_exports() {
    let _one = ONE_BROWSER.lock().await;
    let app = server(|config, _| {
        config.gros.projects = vec![annals::config::GrosProjectSpec {
            key: "PROJ".into(),
            networks: vec!["127.0.0.0/8".into()],
            ..Default::default()
        }];
    })
    .await;
    let url = |path: &str| format!("{}{path}", app.main);
    let registered = client()
        .post(url("/auth/agent.py?project=PROJ&agent=a1"))
        .send_form(&[(
            "public_key",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGros agent@host",
        )])
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let checked = client()
        .get(url("/auth/status.py?project=PROJ&agent=a1"))
        .send()
        .await
        .unwrap();
    assert!([200, 503].contains(&checked.status().as_u16()));
    let exported = client()
        .post(url("/auth/export.py?project=PROJ"))
        .send_form(&[
            ("agent", json!({"key": "a1"}).to_string()),
            ("files", json!(["data_jira.json"]).to_string()),
        ])
        .await
        .unwrap();
    assert_eq!(exported.status(), 202);

    let browser = Browser::start(1280, 900).await;
    browser
        .open(&format!("{}/#/streams/gros_agent-PROJ.a1", app.main))
        .await;
    browser
        .wait_for_text(WAIT, "#exports", "data_jira.json")
        .await;
    let agent = browser.text("#agent").await;
    assert!(
        agent.contains("Registered") && agent.contains("Last preflight check"),
        "{agent}"
    );
    browser.screenshot("agent").await;

    // The overview counts it by its last preflight check.
    let verdict = if checked.status() == 200 {
        "preflight passed 1"
    } else {
        "preflight failed 1"
    };
    browser.open(&format!("{}/", app.main)).await;
    let agents = browser.wait_for_text(WAIT, "#agents", verdict).await;
    assert!(agents.starts_with("Agents\n1"), "{agents}");
}
