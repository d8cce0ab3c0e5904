//! The inventory face against the real server (in-process on port 0, real sled in a temporary
//! directory, real UDP): every route and filter over a known inventory (golden bodies), both
//! route generations, validation over HTTP and UDP, read-your-write, retention, clearing, body
//! limits, auth, the face's own listener, and concurrent writers.

use crate::common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use annals::auth::{Access, Account, Role};
use annals::config::Config;
use annals::runtime::ManualClock;
use common::app::TestApp;
use common::{at, poll_async, T0};
use serde_json::{json, Value};

struct Inventory {
    main: String,
    /// The face's own listener: HTTP and UDP on this address.
    partisci: SocketAddr,
    client: awc::Client,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn spawn(configure: impl FnOnce(&mut Config)) -> Inventory {
    let clock = common::app::t0_clock();
    let app = TestApp::start(clock.clone(), |config, _| configure(config)).await;
    Inventory {
        main: app.main,
        partisci: app.addresses.of("partisci").expect("its own listener"),
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        clock,
        _dir: app.dir,
    }
}

impl Inventory {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.main)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_at(&self.url(path)).await
    }

    async fn get_at(&self, url: &str) -> (u16, Value) {
        let mut response = self.client.get(url).send().await.expect("an answer");
        let body = response.body().limit(64 << 20).await.unwrap();
        (response.status().as_u16(), json_or_text(&body))
    }

    async fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
        self.post_with(self.client.post(self.url(path)), body).await
    }

    async fn post_with(
        &self,
        request: awc::ClientRequest,
        body: impl Into<Vec<u8>>,
    ) -> (u16, Value) {
        let mut response = request.send_body(body.into()).await.expect("an answer");
        let body = response.body().await.unwrap();
        (response.status().as_u16(), json_or_text(&body))
    }

    async fn update(&self, update: Value) {
        let (status, body) = self.post("/api/v1/update/", update.to_string()).await;
        assert_eq!((status, body), (200, Value::Null), "{update}");
    }

    /// Sets the clock to `seconds` after T0.
    fn at(&self, seconds: i64) {
        self.clock.set(at((T0 + seconds) * 1_000_000));
    }

    fn udp(&self, datagram: &[u8]) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.send_to(datagram, self.partisci).unwrap();
    }

    async fn versions(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/version/{query}")).await;
        assert_eq!(status, 200, "{body}");
        body["data"].as_array().expect("a data list").clone()
    }

    /// How many datagrams `/metrics` counts with this outcome.
    async fn datagrams(&self, outcome: &str) -> u64 {
        let mut response = self.client.get(self.url("/metrics")).send().await.unwrap();
        let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
        let series = format!("annals_partisci_udp_datagrams_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |count| count.trim().parse().unwrap())
    }
}

/// A JSON body, or `null` when empty, or the text when it is not JSON.
fn json_or_text(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()))
}

fn settings() -> insta::Settings {
    common::snapshots(&[])
}

/// The known inventory: two apps, three hosts, two instances of one app on one host.
async fn known_inventory(inventory: &Inventory) {
    let reports = [
        (0, json!({"app": "Demo App", "ver": "1.0", "host": "web1"})),
        (
            10,
            json!({"app": "Demo App", "ver": "1.0", "host": "web2", "instance": 0}),
        ),
        (
            20,
            json!({"app": "Demo App", "ver": "1.1", "host": "web2", "instance": 1}),
        ),
        (30, json!({"app": "db", "ver": "9.6", "host": "db1"})),
        (40, json!({"app": "db", "ver": "9.6", "host": "web2"})),
        // A newer report of the same instance replaces the older one.
        (
            50,
            json!({"APP": "Demo App", "VER": "1.1", "Host": "web1", "host_ip": "6.6.6.6"}),
        ),
    ];
    for (seconds, report) in reports {
        inventory.at(seconds);
        inventory.update(report).await;
    }
}

#[actix_rt::test]
async fn every_route_and_filter_answers_from_the_known_inventory() {
    let inventory = spawn(|_| {}).await;
    for route in ["app/", "host/", "version/"] {
        let (status, body) = inventory.get(&format!("/api/v1/{route}")).await;
        assert_eq!((status, body), (200, json!({"data": []})), "{route}");
    }
    known_inventory(&inventory).await;

    let queries = [
        ("app", "/api/v1/app/"),
        ("host", "/api/v1/host/"),
        ("version_all", "/api/v1/version/"),
        ("version_app", "/api/v1/version/?app_id=demo_app"),
        ("version_host", "/api/v1/version/?host=web2"),
        (
            "version_app_host",
            "/api/v1/version/?app_id=demo_app&host=web2",
        ),
        (
            "version_app_ver",
            "/api/v1/version/?app_id=demo_app&ver=1.1",
        ),
        ("version_host_ver", "/api/v1/version/?host=web2&ver=1.1"),
        ("version_ver", "/api/v1/version/?ver=9.6"),
        (
            "version_all_three",
            "/api/v1/version/?app_id=db&host=web2&ver=9.6",
        ),
        ("version_unknown_app", "/api/v1/version/?app_id=nope"),
        (
            "version_empty_filters",
            "/api/v1/version/?app_id=&host=&ver=",
        ),
    ];
    for (name, path) in queries {
        let (status, body) = inventory.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        settings().bind(|| insta::assert_json_snapshot!(format!("partisci_{name}"), body));
    }

    // The early generation answers exactly as the final one.
    let (_, apps) = inventory.get("/api/v1/app/").await;
    assert_eq!(inventory.get("/api/v1/summary/app/").await, (200, apps));
    let (_, hosts) = inventory.get("/api/v1/host/").await;
    for early in ["/api/v1/summary/host/", "/api/v1/summary/hosts/"] {
        assert_eq!(inventory.get(early).await, (200, hosts.clone()), "{early}");
    }
    for info in ["/api/v1/_partisci/", "/debug/vars"] {
        let (status, body) = inventory.get(info).await;
        assert_eq!(status, 200);
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"), "{info}");
        assert_eq!(body["versions"], 5, "{info}");
    }
}

#[actix_rt::test]
async fn instances_count_separately_and_server_fields_are_the_servers() {
    let inventory = spawn(|_| {}).await;
    for instance in [0, 1, 65535] {
        inventory
            .update(
                json!({"app": "a", "ver": "1", "host": "h", "instance": instance,
                           "app_id": "forged", "host_ip": "6.6.6.6", "last_update": 1}),
            )
            .await;
    }
    let versions = inventory.versions("?app_id=a").await;
    assert_eq!(versions.len(), 3);
    for version in &versions {
        assert_eq!(version["host_ip"], "127.0.0.1");
        assert_eq!(version["last_update"], T0);
    }
    assert!(inventory.versions("?app_id=forged").await.is_empty());
    let (_, apps) = inventory.get("/api/v1/app/").await;
    assert_eq!(apps["data"][0]["host_count"], 1, "{apps}");
    // Keys that upstream would concatenate into one ("ab" + "c" = "a" + "bc") stay apart.
    inventory
        .update(json!({"app": "ab", "ver": "1", "host": "c"}))
        .await;
    inventory
        .update(json!({"app": "a", "ver": "2", "host": "bc"}))
        .await;
    assert_eq!(inventory.versions("?app_id=ab").await.len(), 1);
    assert_eq!(inventory.versions("?app_id=a&host=bc").await.len(), 1);
}

#[actix_rt::test]
async fn an_acknowledged_update_is_in_the_very_next_query() {
    let inventory = spawn(|_| {}).await;
    for n in 0..100 {
        let host = format!("host{n}");
        inventory
            .update(json!({"app": "ryw", "ver": n.to_string(), "host": host}))
            .await;
        let found = inventory.versions(&format!("?host={host}")).await;
        assert_eq!(found.len(), 1, "update {n} is not visible yet");
        assert_eq!(found[0]["ver"], n.to_string());
        // The summaries too, though a body made between two updates is kept for the next
        // readers: asked twice, they move with each update.
        for _ in 0..2 {
            let (_, apps) = inventory.get("/api/v1/app/").await;
            assert_eq!(apps["data"][0]["host_count"], n + 1, "{apps}");
            let (_, hosts) = inventory.get("/api/v1/host/").await;
            assert_eq!(hosts["data"].as_array().unwrap().len(), n + 1, "{hosts}");
        }
    }
}

/// Bad updates, each with what its error must mention.
fn bad_updates() -> Vec<(Vec<u8>, &'static str)> {
    let long = "x".repeat(51);
    vec![
        (b"".to_vec(), "empty"),
        (b"{}".to_vec(), "`app`"),
        (br#"{"ver":"1"}"#.to_vec(), "`app`"),
        (br#"{"app":"","ver":"1"}"#.to_vec(), "`app`"),
        (br#"{"app":"a"}"#.to_vec(), "`ver`"),
        (br#"{"app":"a","ver":""}"#.to_vec(), "`ver`"),
        (br#"{"app":"a","ver":"1"} trailing"#.to_vec(), "JSON"),
        (
            br#"{"app":"a","ver":"1","instance":70000}"#.to_vec(),
            "`instance`",
        ),
        (
            br#"{"app":"a","ver":"1","instance":-1}"#.to_vec(),
            "`instance`",
        ),
        (
            br#"{"app":"a","ver":"1","instance":1.5}"#.to_vec(),
            "`instance`",
        ),
        (
            format!(r#"{{"app":"{long}","ver":"1"}}"#).into_bytes(),
            "50",
        ),
        (
            format!(r#"{{"app":"a","ver":"{long}"}}"#).into_bytes(),
            "50",
        ),
        (
            format!(r#"{{"app":"a","ver":"1","host":"{long}"}}"#).into_bytes(),
            "50",
        ),
        (b"[\"app\"]".to_vec(), "object"),
    ]
}

#[actix_rt::test]
async fn bad_updates_are_refused_over_http_and_dropped_and_counted_over_udp() {
    let inventory = spawn(|_| {}).await;
    for (body, mentions) in bad_updates() {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (status, answer) = inventory.post("/api/v1/update/", body).await;
        assert_eq!(status, 415, "{shown}: {answer}");
        let error = answer["error"].as_str().expect("an error message");
        assert!(error.contains(mentions), "{shown}: {error}");
    }

    let invalid_before = inventory.datagrams("invalid").await;
    let mut datagrams: Vec<Vec<u8>> = bad_updates().into_iter().map(|(body, _)| body).collect();
    // Longer than a Partisci server reads from one datagram, though otherwise valid.
    let padded = format!(r#"{{"app":"a","ver":"1","pad":"{}"}}"#, "x".repeat(2100));
    datagrams.push(padded.into_bytes());
    for datagram in &datagrams {
        inventory.udp(datagram);
    }
    // A valid datagram sent last: once it is in, every earlier one has been handled.
    inventory.udp(br#"{"app":"after","ver":"1","host":"u"}"#);
    poll_async(Duration::from_secs(30), "the valid datagram", || async {
        inventory.versions("?app_id=after").await.first().cloned()
    })
    .await;
    let invalid = inventory.datagrams("invalid").await - invalid_before;
    assert_eq!(invalid, datagrams.len() as u64);
    assert_eq!(inventory.versions("").await.len(), 1);
}

/// Reports that partiscid's Go decoder takes in, each with the version it stores.
fn reports_read_as_partiscid_reads_them() -> Vec<(Vec<u8>, Value)> {
    vec![
        // The last spelling of a key wins, whatever its case and wherever it sorts.
        (
            br#"{"app":"first","App":"Last","ver":"1","host":"case"}"#.to_vec(),
            json!({"host": "case", "app": "Last", "app_id": "last", "ver": "1"}),
        ),
        // Go lower-cases one character to one: `İ` is `i`, not `i` and a combining dot.
        (
            "{\"app\":\"\u{130}zmir\",\"ver\":\"1\",\"host\":\"dot\"}".into(),
            json!({"host": "dot", "app": "\u{130}zmir", "app_id": "izmir", "ver": "1"}),
        ),
        // Bytes that are not UTF-8 and lone surrogates are stored as U+FFFD.
        (
            b"{\"app\":\"bad\xc3\x28\",\"ver\":\"\xff1\",\"host\":\"utf8\"}".to_vec(),
            json!({"host": "utf8", "app": "bad\u{fffd}(", "app_id": "bad__", "ver": "\u{fffd}1"}),
        ),
        (
            br#"{"app":"lone\ud800","ver":"\udc00\ud83d\ude00","host":"surrogate"}"#.to_vec(),
            json!({"host": "surrogate", "app": "lone\u{fffd}", "app_id": "lone_", "ver": "\u{fffd}\u{1f600}"}),
        ),
    ]
}

#[actix_rt::test]
async fn reports_are_read_as_partiscid_reads_them_over_http_and_udp() {
    let http = spawn(|_| {}).await;
    let udp = spawn(|_| {}).await;
    for (report, expected) in reports_read_as_partiscid_reads_them() {
        let shown = String::from_utf8_lossy(&report).into_owned();
        let (status, answer) = http.post("/api/v1/update/", report.clone()).await;
        assert_eq!((status, answer), (200, Value::Null), "{shown}");
        udp.udp(&report);
        let host = expected["host"].as_str().unwrap();
        let query = format!("?host={host}");
        let over_udp = poll_async(Duration::from_secs(30), "the datagram", || async {
            udp.versions(&query).await.first().cloned()
        })
        .await;
        for found in [http.versions(&query).await[0].clone(), over_udp] {
            for field in ["app", "app_id", "ver"] {
                assert_eq!(found[field], expected[field], "{shown}: {field} of {found}");
            }
        }
    }
}

#[actix_rt::test]
async fn a_filter_given_twice_uses_its_first_value_and_the_bare_prefix_redirects() {
    let inventory = spawn(|_| {}).await;
    for host in ["a", "b"] {
        inventory
            .update(json!({"app": "twice", "ver": "1", "host": host}))
            .await;
    }
    let found = inventory.versions("?host=a&host=b&app_id=twice").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["host"], "a");
    let found = inventory.versions("?host=&host=b").await;
    assert_eq!(
        found.len(),
        2,
        "an empty first value is no filter: {found:?}"
    );

    let client = awc::Client::builder().disable_redirects().finish();
    let own = format!("http://{}", inventory.partisci);
    for base in [inventory.main.as_str(), own.as_str()] {
        for (path, location) in [
            ("/api/v1", "/api/v1/"),
            ("/api/v1?host=a", "/api/v1/?host=a"),
        ] {
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 301, "{base}{path}");
            assert_eq!(
                response.headers().get("location").unwrap(),
                location,
                "{base}{path}"
            );
        }
    }
}

#[actix_rt::test]
async fn updates_over_udp_arrive_with_the_senders_address() {
    let inventory = spawn(|_| {}).await;
    inventory.udp(br#"{"app":"Udp App","ver":"2.0","host":"box","instance":7}"#);
    let found = poll_async(
        Duration::from_secs(30),
        "the datagram's version",
        || async { inventory.versions("?app_id=udp_app").await.first().cloned() },
    )
    .await;
    assert_eq!(found["host"], "box");
    assert_eq!(found["instance"], 7);
    assert_eq!(found["host_ip"], "127.0.0.1");
    // The face's own listener serves the same HTTP routes.
    let own = format!(
        "http://{}/api/v1/version/?app_id=udp_app",
        inventory.partisci
    );
    let (status, body) = inventory.get_at(&own).await;
    assert_eq!(
        (status, body["data"][0]["ver"].clone()),
        (200, json!("2.0"))
    );
}

#[actix_rt::test]
async fn an_ipv4_sender_on_a_dual_stack_listener_has_a_dotted_host_ip() {
    // A listener on an IPv6 address that takes IPv4 too (as `[::]:7777` does) sees IPv4
    // senders as `::ffff:a.b.c.d`; partiscid, on Go's dual-stack listener, printed them dotted.
    // `::ffff:127.0.0.1` keeps the test on loopback.
    let inventory = spawn(|config| config.partisci.listen = "[::ffff:127.0.0.1]:0".into()).await;
    let own = format!("127.0.0.1:{}", inventory.partisci.port());
    let client = &inventory.client;
    let mut response = client
        .post(format!("http://{own}/api/v1/update/"))
        .send_body(r#"{"app":"over http","ver":"1","host":"h"}"#)
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200, "{:?}", response.body().await);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .send_to(br#"{"app":"over udp","ver":"1","host":"h"}"#, &own)
        .unwrap();
    let found = poll_async(Duration::from_secs(30), "both versions", || async {
        let versions = inventory.versions("?host=h").await;
        (versions.len() == 2).then_some(versions)
    })
    .await;
    for version in found {
        assert_eq!(version["host_ip"], "127.0.0.1", "{version}");
    }
}

#[actix_rt::test]
async fn versions_past_retention_leave_the_queries_and_are_expired_with_events() {
    let inventory = spawn(|config| config.partisci.retention_s = 1).await;
    inventory
        .update(json!({"app": "old", "ver": "1", "host": "h1"}))
        .await;
    inventory.at(5);
    inventory
        .update(json!({"app": "new", "ver": "1", "host": "h2"}))
        .await;
    // At T0+5 with a window of 1 s, only the report made at T0+5 is active.
    let versions = inventory.versions("").await;
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(versions[0]["app"], "new");
    let (_, apps) = inventory.get("/api/v1/app/").await;
    assert_eq!(apps["data"].as_array().unwrap().len(), 1, "{apps}");
    // The sweep records the expiry as an event of the host's stream.
    let expired = poll_async(Duration::from_secs(30), "the expiry event", || async {
        let (_, page) = inventory
            .get("/api/events?category=host&type=VersionExpired")
            .await;
        page["events"]
            .as_array()
            .and_then(|events| events.first().cloned())
    })
    .await;
    assert_eq!(expired["stream"], "host-h1");
    assert_eq!(expired["payload"]["app_id"], "old");
    let (_, state) = inventory.get("/api/streams/host-h1/state").await;
    assert_eq!(state["state"]["versions"], json!({}), "{state}");
}

#[actix_rt::test]
async fn clearing_needs_danger_mode() {
    let inventory = spawn(|_| {}).await;
    inventory
        .update(json!({"app": "a", "ver": "1", "host": "h"}))
        .await;
    let (status, body) = inventory.post("/api/v1/_danger/clear/", "").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("danger = true"),
        "{body}"
    );
    assert_eq!(inventory.versions("").await.len(), 1);
}

#[actix_rt::test]
async fn a_clear_empties_the_queries_and_keeps_the_history() {
    let inventory = spawn(|config| config.partisci.danger = true).await;
    known_inventory(&inventory).await;
    let (status, body) = inventory.post("/api/v1/_danger/clear/", "").await;
    assert_eq!((status, body), (200, Value::Null));
    for route in ["app/", "host/", "version/"] {
        let (_, body) = inventory.get(&format!("/api/v1/{route}")).await;
        assert_eq!(body, json!({"data": []}), "{route}");
    }
    // Each host's record says it was cleared; its history replays up to before the clear.
    let (_, page) = inventory
        .get("/api/events?category=host&type=HostCleared")
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3, "{page}");
    let (_, before) = inventory
        .get("/api/streams/host-web2/state?at_version=3")
        .await;
    assert_eq!(before["state"]["versions"].as_object().unwrap().len(), 3);
    // The early spelling clears too, and reports after a clear count again.
    inventory
        .update(json!({"app": "a", "ver": "1", "host": "web2"}))
        .await;
    assert_eq!(inventory.versions("").await.len(), 1);
    let (status, _) = inventory.post("/api/v1/_danger/clear/", "").await;
    assert_eq!(status, 200);
    assert!(inventory.versions("").await.is_empty());
}

#[actix_rt::test]
async fn wrong_methods_unknown_routes_and_big_bodies_answer_in_partiscis_shape() {
    let inventory = spawn(|config| config.partisci.max_body_kb = 1).await;
    for path in ["/api/v1/update/", "/api/v1/_danger/clear/"] {
        let (status, body) = inventory.get(path).await;
        assert_eq!(status, 405, "{path}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, body) = inventory.post("/api/v1/version/", "{}").await;
    assert_eq!(status, 405, "{body}");
    for path in ["/api/v1/version", "/api/v1/nothing/"] {
        let (status, body) = inventory.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body["error"].as_str().unwrap().contains(path), "{body}");
    }

    let big = format!(r#"{{"app":"a","ver":"1","pad":"{}"}}"#, "x".repeat(2000));
    let (status, body) = inventory.post("/api/v1/update/", big.clone()).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("1024 bytes"),
        "{body}"
    );
    // Without a Content-Length (chunked), the limit holds while the body streams in.
    let chunks = futures_util::stream::iter(
        big.into_bytes()
            .chunks(100)
            .map(|chunk| Ok::<_, std::io::Error>(actix_web::web::Bytes::copy_from_slice(chunk)))
            .collect::<Vec<_>>(),
    );
    let mut response = inventory
        .client
        .post(inventory.url("/api/v1/update/"))
        .send_stream(chunks)
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
    // Just under the limit is fine.
    let fits = format!(r#"{{"app":"a","ver":"1","pad":"{}"}}"#, "x".repeat(900));
    assert_eq!(inventory.post("/api/v1/update/", fits).await.0, 200);
}

#[actix_rt::test]
async fn the_faces_own_listener_serves_only_the_face() {
    let inventory = spawn(|_| {}).await;
    let own = |path: &str| format!("http://{}{path}", inventory.partisci);
    for path in ["/api/v1/app/", "/api/v1/_partisci/", "/debug/vars"] {
        assert_eq!(inventory.get_at(&own(path)).await.0, 200, "{path}");
    }
    for path in ["/healthz", "/api/events", "/metrics"] {
        assert_eq!(inventory.get_at(&own(path)).await.0, 404, "{path}");
    }
    // The main listener serves the face as well as everything else.
    assert_eq!(inventory.get("/api/v1/app/").await.0, 200);
    assert_eq!(inventory.get("/healthz").await.0, 200);
}

fn accounts() -> Vec<Account> {
    vec![
        common::password_account("ada", "admin pass", &[Role::Admin]),
        common::password_account("bob", "bob pass", &[]),
    ]
}

#[actix_rt::test]
async fn with_accounts_the_face_asks_for_what_its_setting_says() {
    let inventory = spawn(|config| {
        config.accounts = accounts();
        config.partisci.auth = Access::Account;
        config.partisci.danger = true;
    })
    .await;
    let update = json!({"app": "a", "ver": "1", "host": "h"}).to_string();
    let as_user = |request: awc::ClientRequest, user: &str, password: &str| {
        request.basic_auth(user, password)
    };

    let (status, body) = inventory.get("/api/v1/version/").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string());
    let response = inventory
        .client
        .get(inventory.url("/api/v1/version/"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    let wrong = as_user(
        inventory.client.post(inventory.url("/api/v1/update/")),
        "bob",
        "nope",
    );
    assert_eq!(inventory.post_with(wrong, update.clone()).await.0, 401);
    let bob = as_user(
        inventory.client.post(inventory.url("/api/v1/update/")),
        "bob",
        "bob pass",
    );
    assert_eq!(inventory.post_with(bob, update.clone()).await.0, 200);
    // Clearing is destructive: admin only.
    let bob = as_user(
        inventory
            .client
            .post(inventory.url("/api/v1/_danger/clear/")),
        "bob",
        "bob pass",
    );
    let (status, body) = inventory.post_with(bob, "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].is_string());
    let ada = as_user(
        inventory
            .client
            .post(inventory.url("/api/v1/_danger/clear/")),
        "ada",
        "admin pass",
    );
    assert_eq!(inventory.post_with(ada, "").await.0, 200);
    // The event API stays admin-only, in its own shape.
    let (status, body) = inventory.get("/api/events").await;
    assert_eq!((status, body["status"].clone()), (401, json!(401)));
}

#[actix_rt::test]
async fn by_default_partisci_clients_need_no_credentials_even_with_accounts() {
    let inventory = spawn(|config| config.accounts = accounts()).await;
    inventory
        .update(json!({"app": "a", "ver": "1", "host": "h"}))
        .await;
    assert_eq!(inventory.versions("").await.len(), 1);
    let (status, _) = inventory.post("/api/v1/_danger/clear/", "").await;
    assert_eq!(status, 401, "clearing needs an admin");
}

#[actix_rt::test]
async fn concurrent_udp_and_http_writers_and_readers_end_with_what_was_sent() {
    let inventory = std::rc::Rc::new(spawn(|_| {}).await);
    const WRITERS: usize = 4;
    const EACH: usize = 150;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let http = inventory.clone();
        tasks.push(actix_rt::spawn(async move {
            for n in 0..EACH {
                let update = json!({"app": "http", "ver": n.to_string(),
                                    "host": format!("w{writer}"), "instance": n});
                http.update(update).await;
            }
        }));
        let udp = inventory.clone();
        tasks.push(actix_rt::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            for n in 0..EACH {
                let update = json!({"app": "udp", "ver": n.to_string(),
                                    "host": format!("w{writer}"), "instance": n});
                socket
                    .send_to(update.to_string().as_bytes(), udp.partisci)
                    .unwrap();
                // Yield so that readers and the receiver run between sends.
                tokio::task::yield_now().await;
            }
        }));
        let reader = inventory.clone();
        tasks.push(actix_rt::spawn(async move {
            for _ in 0..50 {
                for path in [
                    "/api/v1/app/",
                    "/api/v1/host/",
                    "/api/v1/version/?app_id=http",
                ] {
                    let (status, body) = reader.get(path).await;
                    assert_eq!(status, 200, "{body}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("no task panics");
    }
    let expected = WRITERS * EACH;
    assert_eq!(inventory.versions("?app_id=http").await.len(), expected);
    poll_async(Duration::from_secs(60), "every datagram", || async {
        let got = inventory.versions("?app_id=udp").await.len();
        (got == expected).then_some(())
    })
    .await;
    assert_eq!(inventory.datagrams("overloaded").await, 0);
    // Every version is the last one sent for its key.
    let (_, hosts) = inventory.get("/api/v1/host/").await;
    for host in hosts["data"].as_array().unwrap() {
        assert_eq!(host["app_count"], 2, "{host}");
    }
}
