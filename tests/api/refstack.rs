//! The test results face against the real server (in-process on port 0, real sled and blob
//! store in a temporary directory): opening runs, status updates from the form body and the
//! query string, uploads of every format (multipart and raw, with and without a test id), the
//! miniconf, every documented error, both route spellings, the raw upload downloaded back
//! byte-identical, the hostile corpus (400 every time), body limits, auth, the later
//! `/v1/results` API with signatures (keys up to 16,384 bits, as refstack-client signs), a base
//! URL with a trailing slash, golden bodies, and a restart of `annals serve`.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use annals::auth::{new_token, Access, Account, Role};
use annals::config::Config;
use annals::runtime::ManualClock;
use annals::testresults::testing::{damaged_uploads, PacketStatus, V1Writer, V2Writer};
use common::app::{items, strings, TestApp};
use common::{at, T0};
use serde_json::{json, Value};

struct Refstack {
    main: String,
    client: awc::Client,
    config: Config,
    /// The server's clock: what it records as now.
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn spawn(configure: impl FnOnce(&mut Config)) -> Refstack {
    let clock = t0();
    let app = TestApp::start(clock.clone(), |config, _| {
        config.partisci.enabled = false;
        configure(config);
    })
    .await;
    Refstack {
        main: app.main,
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        config: app.config,
        clock,
        _dir: app.dir,
    }
}

fn t0() -> Arc<ManualClock> {
    common::app::t0_clock()
}

type Answer = common::app::Answer<common::app::Refstack>;

impl Refstack {
    async fn send(&self, request: awc::ClientRequest, body: impl Into<Vec<u8>>) -> Answer {
        Answer::send(request, body, 256 << 20).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(format!("{}{path}", self.main)), "")
            .await
    }

    async fn post(&self, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Answer {
        let request = self
            .client
            .post(format!("{}{path}", self.main))
            .insert_header(("content-type", content_type));
        self.send(request, body).await
    }

    /// `POST /v1/update-test-status/{id}` with `form`, as refstack-client sends it.
    async fn update_status(&self, id: &str, form: &str) -> Answer {
        let path = format!("/v1/update-test-status/{id}");
        self.post(&path, "application/x-www-form-urlencoded", form)
            .await
    }

    async fn open(&self) -> String {
        let answer = self
            .post("/v1/test-runs", "application/json", cloud().to_string())
            .await;
        assert_eq!(answer.status, 201, "{}", answer.json());
        answer.json()["test_id"].as_str().unwrap().to_owned()
    }

    async fn upload_multipart(&self, path: &str, file: &[u8]) -> Answer {
        self.post(
            path,
            "multipart/form-data; boundary=b0undary",
            multipart(file),
        )
        .await
    }
}

fn cloud() -> Value {
    json!({
        "name": "lab",
        "identity_uri": "http://192.0.2.10:5000/v2.0",
        "identity_uri_v3": "http://192.0.2.10:5000/v3",
        "username": "demo",
        "alt_username": "alt_demo",
        "admin_username": "admin",
        "tempest_options": {"compute": {"image_ssh_user": "cirros"}, "dashboard": {"login_url": "http://192.0.2.10/"}}
    })
}

/// A form as refstack-client's `requests` sends it: another field, then `file`.
fn multipart(file: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(
        b"--b0undary\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n",
    );
    body.extend_from_slice(
        b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"results.subunit\"\r\n\
          Content-Type: application/octet-stream\r\n\r\n",
    );
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--b0undary--\r\n");
    body
}

/// A v2 stream: a pass with an attachment, a failure, a skip, a failed class fixture, and bytes
/// that are not subunit between packets.
fn v2_stream() -> Vec<u8> {
    let mut w = V2Writer::new();
    w.test(
        "tempest.api.a.ATest.test_ok[id-8f2d4a1e-0c3b-4d5e-9f6a-7b8c9d0e1f2a,smoke]",
        PacketStatus::Success,
        (T0 as u32, 0),
        (T0 as u32 + 2, 500_000_000),
        &[("stdout", "text/plain", b"some output\n")],
    )
    .raw(b"noise between packets\n");
    // Each test's id, status, and the seconds after T0 it started and ended at.
    for (id, status, start, end) in [
        ("tempest.api.a.ATest.test_bad", PacketStatus::Fail, 3, 4),
        ("tempest.api.a.ATest.test_skipped", PacketStatus::Skip, 4, 4),
        ("setUpClass (tempest.api.b.BTest)", PacketStatus::Fail, 5, 5),
    ] {
        let second = |after: u32| (T0 as u32 + after, 0);
        w.test(id, status, second(start), second(end), &[]);
    }
    w.into_bytes()
}

fn v1_stream() -> Vec<u8> {
    let mut w = V1Writer::new();
    w.test("tempest.api.c.CTest.test_one")
        .outcome("success", "tempest.api.c.CTest.test_one")
        .test("tempest.api.c.CTest.test_two")
        .outcome_bracketed("failure", "tempest.api.c.CTest.test_two", "Traceback...\n")
        .test("tempest.api.c.CTest.test_three")
        .outcome("skip", "tempest.api.c.CTest.test_three");
    w.into_bytes()
}

#[actix_rt::test]
async fn a_run_is_opened_updated_uploaded_to_and_read_back() {
    let face = spawn(|_| {}).await;
    let id = face.open().await;

    // The spec's example: the status in a form body.
    let answer = face.update_status(&id, "status=test%20started").await;
    assert_eq!((answer.status, answer.json()), (201, Value::Null));
    // The 2014 spelling, with the status in the query string as the 2014 code read it.
    let answer = face
        .post(
            &format!("/update-test-status/{id}?status=test%20complete&finished=True"),
            "text/plain",
            "",
        )
        .await;
    assert_eq!(answer.status, 201);

    let stream = v2_stream();
    let answer = face
        .upload_multipart(&format!("/v1/post-result?test_id={id}"), &stream)
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    let uploaded = answer.json();
    assert_eq!(uploaded["test_id"], id.as_str());
    assert_eq!(uploaded["format"], "subunit_v2");
    assert_eq!(
        uploaded["summary"],
        json!({"PASS": 1, "FAIL": 1, "FAIL_SETUP": 1, "ERROR": 0, "SKIP": 1, "Total": 4})
    );
    let upload_id = uploaded["upload_id"].as_str().unwrap().to_owned();

    let run = face.get(&format!("/v1/test-runs/{id}")).await;
    assert_eq!(run.status, 200);
    let run = run.json();
    assert_eq!(run["cloud"], "lab");
    assert_eq!(run["statuses"].as_array().unwrap().len(), 2);
    assert_eq!(run["statuses"][1]["finished"], true);
    assert!(run["ended_at"].is_string(), "{run}");
    assert_eq!(run["uploads"][0]["size"], stream.len());

    // The raw upload, byte for byte.
    let raw = face
        .get(&format!("/v1/test-runs/{id}/uploads/{upload_id}"))
        .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.content_type, "application/octet-stream");
    assert!(raw.body == stream, "the download is byte-identical");
}

#[actix_rt::test]
async fn an_uploads_tests_are_served_with_their_outcomes_whatever_its_format() {
    let face = spawn(|_| {}).await;
    let id = face.open().await;
    // A stream python-subunit wrote for a real unittest run (`tests/data/sample_tests.py`).
    let stream = include_bytes!("../data/python-subunit-v2.subunit");
    let answer = face
        .post(
            &format!("/v1/post-result?test_id={id}"),
            "application/octet-stream",
            stream.to_vec(),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    let upload_id = answer.json()["upload_id"].as_str().unwrap().to_owned();

    let answer = face
        .get(&format!("/v1/test-runs/{id}/uploads/{upload_id}/tests"))
        .await;
    assert_eq!(answer.status, 200);
    let body = answer.json();
    assert_eq!(body["format"], "subunit_v2");
    assert_eq!(
        body["summary"],
        json!({"PASS": 2, "FAIL": 1, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 1, "Total": 4})
    );
    let mut tests: Vec<(String, String, String)> = body["tests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|test| {
            // python-subunit gives every test its start and stop times.
            assert!(test["duration_seconds"].as_f64().unwrap() >= 0.0, "{test}");
            let text = |key: &str| test[key].as_str().unwrap().to_owned();
            (text("name"), text("status"), text("outcome"))
        })
        .collect();
    tests.sort();
    let class = "sample_tests.ServersTest";
    let expected = [
        ("test_attach_interface", "SKIP", "skip"),
        ("test_create_server", "PASS", "success"),
        ("test_known_bug", "PASS", "xfail"),
        ("test_reboot_server", "FAIL", "fail"),
    ]
    .map(|(name, status, outcome)| (format!("{class}.{name}"), status.into(), outcome.into()));
    assert_eq!(tests, expected);

    // A JSON upload's tests, the same way; a run or upload that is not there is 404.
    let parsed = json!({"summary": {"PASS": 0, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 1, "Total": 1},
        "data": {"tempest.api.x.Y": [["test_later", "SKIP", null]]}});
    let answer = face
        .post("/v1/post-result", "application/json", parsed.to_string())
        .await;
    let uploaded = answer.json();
    let path = format!(
        "/v1/test-runs/{}/uploads/{}/tests",
        uploaded["test_id"].as_str().unwrap(),
        uploaded["upload_id"].as_str().unwrap()
    );
    let body = face.get(&path).await.json();
    assert_eq!(
        body["tests"],
        json!([{"name": "tempest.api.x.Y.test_later", "status": "SKIP", "outcome": "skip",
            "duration_seconds": null}])
    );
    for (path, says) in [
        (
            format!("/v1/test-runs/{id}/uploads/{id}/tests"),
            "no upload",
        ),
        (
            format!("/v1/test-runs/{upload_id}/uploads/{upload_id}/tests"),
            "no such test run",
        ),
        (
            format!("/v1/test-runs/{id}/uploads/nope/tests"),
            "no such upload",
        ),
    ] {
        let answer = face.get(&path).await;
        assert_eq!(answer.status, 404, "{path}");
        common::app::assert_says(&answer.json(), "/title", says);
    }
}

#[actix_rt::test]
async fn every_format_is_recognised_raw_or_multipart_and_anonymous_uploads_get_a_run() {
    let face = spawn(|_| {}).await;
    let results = json!({"cpid": "c1", "duration_seconds": 12,
        "results": [{"name": "tempest.api.x.Y.test_z"}]});
    let parsed = json!({"summary": {"PASS": 1, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": 1},
        "data": {"tempest.api.x.Y": [["test_z", "PASS", 0.5]]}});
    for (bytes, format, total) in [
        (v2_stream(), "subunit_v2", 4),
        (v1_stream(), "subunit_v1", 3),
        (results.to_string().into_bytes(), "results_json", 1),
        (parsed.to_string().into_bytes(), "parsed_results_json", 1),
    ] {
        for multipart in [false, true] {
            let answer = if multipart {
                face.upload_multipart("/post-result", &bytes).await
            } else {
                face.post("/v1/post-result", "application/octet-stream", bytes.clone())
                    .await
            };
            assert_eq!(answer.status, 201, "{format}: {}", answer.json());
            let body = answer.json();
            assert_eq!(body["format"], format);
            assert_eq!(body["summary"]["Total"], total, "{format}");
            // Without a test id: a new anonymous run, with no cloud.
            let run = face
                .get(&format!(
                    "/v1/test-runs/{}",
                    body["test_id"].as_str().unwrap()
                ))
                .await
                .json();
            assert_eq!(run["cloud"], Value::Null);
            assert_eq!(run["uploads"].as_array().unwrap().len(), 1);
        }
    }
}

#[actix_rt::test]
async fn the_miniconf_is_one_line_of_the_clouds_tempest_options_as_an_attachment() {
    let face = spawn(|_| {}).await;
    let id = face.open().await;
    for path in ["/v1/get-miniconf", "/get-miniconf"] {
        let answer = face.get(&format!("{path}?test_id={id}")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.disposition.as_deref(),
            Some("attachment; filename=\"miniconf.json\"")
        );
        let text = String::from_utf8(answer.body.clone()).unwrap();
        assert!(!text.contains('\n'), "one line: {text}");
        assert_eq!(
            answer.json(),
            json!({
                "cli": {"enabled": "False"},
                "compute": {"image_alt_ssh_password": "password", "image_alt_ssh_user": "root",
                    "image_ssh_password": "password", "image_ssh_user": "cirros"},
                "dashboard": {"login_url": "http://192.0.2.10/"},
                "identity": {"admin_username": "admin", "alt_username": "alt_demo",
                    "uri": "http://192.0.2.10:5000/v2.0", "uri_v3": "http://192.0.2.10:5000/v3",
                    "username": "demo"}
            })
        );
    }
    let testcases = face.get("/get-testcases").await;
    assert_eq!(testcases.json(), json!({"testcases": ["tempest"]}));
    assert_eq!(face.get("/v1/get-testcases").await.json(), testcases.json());
    assert_eq!(
        face.get("/get-script").await.status,
        404,
        "no scripts are served"
    );
}

#[actix_rt::test]
async fn every_documented_error_is_answered_in_the_faces_shape() {
    let face = spawn(|config| config.refstack.max_upload_kb = 64).await;
    let id = face.open().await;
    let unknown = "0192f3a4-5b6c-7d8e-9f00-112233445566";
    let form = "application/x-www-form-urlencoded";

    // update-test-status: unknown or malformed test id, empty or missing status, bad flag.
    for path in [
        format!("/v1/update-test-status/{unknown}"),
        "/update-test-status/100".to_owned(),
    ] {
        let title = face.post(&path, form, "status=x").await.refused(400);
        assert_eq!(title, "Invalid test ID");
    }
    let status_path = format!("/v1/update-test-status/{id}");
    for body in ["status=", "status=%20%20", "finished=true", ""] {
        let title = face.post(&status_path, form, body).await.refused(400);
        assert!(title.contains("empty"), "{body:?}: {title}");
    }
    let title = face
        .post(&status_path, form, "status=x&finished=maybe")
        .await
        .refused(400);
    assert!(title.contains("finished"), "{title}");

    // post-result: no file, an empty multipart file, unparseable results, an unknown run.
    let post_result = |content_type, body: Vec<u8>| {
        let face = &face;
        async move {
            let answer = face.post("/v1/post-result", content_type, body).await;
            answer.refused(400)
        }
    };
    let title = post_result("application/octet-stream", vec![]).await;
    assert_eq!(title, "No file was posted");
    let no_file = b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n";
    let title = post_result("multipart/form-data; boundary=b", no_file.to_vec()).await;
    assert!(title.starts_with("No file was posted"), "{title}");
    let title = post_result("multipart/form-data", b"x".to_vec()).await;
    assert!(title.contains("boundary"), "{title}");
    let title = post_result("application/json", b"{\"cpid\": 1}".to_vec()).await;
    assert!(title.starts_with("the upload cannot be read"), "{title}");
    // A parsed-results class name past its limit (each test's id would repeat it).
    let long_class = serde_json::json!({
        "summary": {"PASS": 1, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": 1},
        "data": {"c".repeat(513): [["t", "PASS", null]]}
    });
    let title = post_result("application/json", long_class.to_string().into_bytes()).await;
    assert!(
        title.contains("is 513 bytes, more than the limit of 512 bytes"),
        "{title}"
    );
    let title = face
        .post(
            &format!("/v1/post-result?test_id={unknown}"),
            "application/octet-stream",
            v1_stream(),
        )
        .await
        .refused(400);
    assert_eq!(title, "Invalid test ID");
    face.post("/v1/post-result?test_id=nope", "text/plain", v1_stream())
        .await
        .refused(400);
    // Over `max_upload_kb`: 413 in the face's shape.
    face.post(
        "/v1/post-result",
        "application/octet-stream",
        vec![b'x'; 65 * 1024],
    )
    .await
    .refused(413);

    // get-miniconf: missing, unknown, and an anonymous run (it has no cloud).
    face.get("/v1/get-miniconf").await.refused(400);
    face.get(&format!("/v1/get-miniconf?test_id={unknown}"))
        .await
        .refused(400);
    let anonymous = face
        .post("/v1/post-result", "text/plain", v1_stream())
        .await
        .json()["test_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let title = face
        .get(&format!("/get-miniconf?test_id={anonymous}"))
        .await
        .refused(400);
    assert_eq!(title, "Invalid test ID");

    // test-runs: a bad cloud, a password, unknown runs and uploads, another method.
    face.post("/v1/test-runs", "application/json", "{}")
        .await
        .refused(400);
    let mut with_password = cloud();
    with_password["tempest_options"]["identity"] = json!({"password": "hunter2"});
    let title = face
        .post(
            "/v1/test-runs",
            "application/json",
            with_password.to_string(),
        )
        .await
        .refused(400);
    assert!(title.contains("password"), "{title}");
    face.get(&format!("/v1/test-runs/{unknown}"))
        .await
        .refused(404);
    face.get(&format!("/v1/test-runs/{id}/uploads/{unknown}"))
        .await
        .refused(404);
    face.get("/v1/post-result").await.refused(405);
}

#[actix_rt::test]
async fn every_damaged_upload_is_refused_with_400_never_a_500() {
    let face = spawn(|config| config.refstack.max_upload_kb = 1024).await;
    let id = face.open().await;
    let limit = face.config.refstack.max_upload_kb as usize * 1024;
    let corpus = damaged_uploads(limit);
    assert!(corpus.len() > 20, "a corpus worth the name");
    for (i, damaged) in corpus.iter().enumerate() {
        let path = if i % 2 == 0 {
            format!("/v1/post-result?test_id={id}")
        } else {
            "/post-result".to_owned()
        };
        let answer = if i % 3 == 0 {
            face.upload_multipart(&path, &damaged.bytes).await
        } else {
            face.post(&path, "application/octet-stream", damaged.bytes.clone())
                .await
        };
        // An oversized input over the body limit is 413; everything else is a parse error.
        if damaged.bytes.len() > limit - 1024 {
            assert!(
                matches!(answer.status, 400 | 413),
                "{}: {}",
                damaged.what,
                answer.status
            );
        } else {
            let title = answer.refused(400);
            assert!(!title.is_empty(), "{}", damaged.what);
        }
    }
    // Nothing was recorded on the run, and the server still takes a good upload.
    let run = face.get(&format!("/v1/test-runs/{id}")).await.json();
    assert_eq!(run["uploads"], json!([]));
    let answer = face
        .post(
            &format!("/v1/post-result?test_id={id}"),
            "text/plain",
            v1_stream(),
        )
        .await;
    assert_eq!(answer.status, 201);
}

#[actix_rt::test]
async fn with_auth_on_the_face_asks_for_credentials() {
    let (token, hash) = new_token();
    let face = spawn(|config| {
        config.refstack.auth = Access::Account;
        config.accounts = vec![common::token_account("ada", &hash, &[Role::Admin])];
    })
    .await;
    let answer = face.get("/v1/get-testcases").await;
    answer.refused(401);
    let request = face
        .client
        .post(format!("{}/v1/test-runs", face.main))
        .bearer_auth(&token)
        .insert_header(("content-type", "application/json"));
    let answer = face.send(request, cloud().to_string()).await;
    assert_eq!(answer.status, 201);
}

fn results_body(cpid: &str, names: &[&str]) -> Vec<u8> {
    let results: Vec<Value> = names.iter().map(|name| json!({"name": name})).collect();
    json!({"cpid": cpid, "duration_seconds": 42, "results": results})
        .to_string()
        .into_bytes()
}

/// A fresh RSA key and its OpenSSH public key line.
fn signing_key() -> (rsa::RsaPrivateKey, String) {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).expect("a key");
    let line = crate::common::ssh::public_key_line(&key, "someone@example.org");
    (key, line)
}

fn sign(key: &rsa::RsaPrivateKey, body: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let signature = key
        .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
        .expect("signed");
    hex::encode(signature)
}

impl Refstack {
    async fn submit(&self, body: &[u8], headers: &[(&str, &str)]) -> Answer {
        self.submit_at("/v1/results/", body, headers).await
    }

    /// Submits results at `path`, one spelling of the collection.
    async fn submit_at(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.main))
            .insert_header(("content-type", "application/json"));
        for (name, value) in headers {
            request = request.insert_header((*name, *value));
        }
        self.send(request, body.to_vec()).await
    }
}

#[actix_rt::test]
async fn results_are_submitted_listed_newest_first_and_read_back_with_their_tests() {
    let face = spawn(|_| {}).await;
    let mut ids = Vec::new();
    for n in 0..21 {
        let names = ["tempest.api.a.A.test_one", "tempest.api.a.A.test_two"];
        let answer = face
            .submit(&results_body(&format!("cloud{n}"), &names), &[])
            .await;
        assert_eq!(answer.status, 201, "{}", answer.json());
        let body = answer.json();
        let id = body["test_id"].as_str().unwrap().to_owned();
        assert_eq!(
            body["url"],
            format!("{}/#/results/{id}", face.main),
            "the url refstack-client prints"
        );
        ids.push(id);
    }
    // Twenty per page, newest first; the first submission alone on page 2.
    let first = face.get("/v1/results").await.json();
    assert_eq!(
        first["pagination"],
        json!({"current_page": 1, "total_pages": 2})
    );
    let newest: Vec<String> = ids.iter().rev().take(20).cloned().collect();
    assert_eq!(listed_ids(&first), newest);
    assert_eq!(first["results"][0]["duration_seconds"], 42);
    assert_eq!(first["results"][0]["meta"], json!({}));
    let second = face.get("/v1/results?page=2").await.json();
    assert_eq!(second["results"][0]["id"], ids[0].as_str());
    assert_eq!(second["results"].as_array().unwrap().len(), 1);
    // Pages as upstream numbers them, refused in its words.
    for (query, title) in [
        (
            "page=3",
            "Invalid page number: The page number is greater than the total number of pages.",
        ),
        (
            "page=0",
            "Invalid page number: The page number less or equal zero.",
        ),
        (
            "page=-2",
            "Invalid page number: The page number less or equal zero.",
        ),
        (
            "page=x",
            "Invalid page number: The page number can not be converted to an integer",
        ),
        (
            "page=",
            "Invalid page number: The page number can not be converted to an integer",
        ),
        (
            "page=99999999999999999999999999",
            "Invalid page number: The page number is greater than the total number of pages.",
        ),
    ] {
        let answer = face.get(&format!("/v1/results?{query}")).await;
        assert_eq!(answer.refused(400), title, "{query}");
    }

    let detail = face.get(&format!("/v1/results/{}", ids[3])).await;
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["cpid"], "cloud3");
    assert_eq!(
        detail["results"],
        json!(["tempest.api.a.A.test_one", "tempest.api.a.A.test_two"])
    );
    face.get("/v1/results/0192f3a4-5b6c-7d8e-9f00-aabbccddeeff")
        .await
        .refused(404);
    face.get("/v1/results/nope").await.refused(404);
}

#[actix_rt::test]
async fn bad_results_and_bad_signatures_are_refused_with_their_reason() {
    let face = spawn(|_| {}).await;
    let title = face
        .submit(
            br#"{"cpid": "c", "duration_seconds": 1, "results": []}"#,
            &[],
        )
        .await
        .refused(400);
    assert!(
        title.contains(annals::testresults::EMPTY_RESULTS),
        "{title}"
    );
    for bad in [
        &br#"{"cpid": "c", "duration_seconds": 1, "results": [{"name": "t"}], "extra": 1}"#[..],
        br#"{"duration_seconds": 1, "results": [{"name": "t"}]}"#,
        br#"{"cpid": "c", "duration_seconds": -1, "results": [{"name": "t"}]}"#,
        b"not json",
        b"",
    ] {
        face.submit(bad, &[]).await.refused(400);
    }

    let (key, public) = signing_key();
    let body = results_body("signed", &["tempest.api.a.A.test_one"]);
    let signature = sign(&key, &body);
    let answer = face
        .submit(
            &body,
            &[("X-Signature", &signature), ("X-Public-Key", &public)],
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    let id = answer.json()["test_id"].as_str().unwrap().to_owned();
    let detail = face.get(&format!("/v1/results/{id}")).await.json();
    let shown = detail["meta"]["public_key"]
        .as_str()
        .expect("the signer's key");
    assert!(
        public.starts_with(shown) && !shown.contains("someone"),
        "{shown}"
    );

    let other = results_body("other", &["tempest.api.a.A.test_one"]);
    let (_, stranger) = signing_key();
    for (headers, expected) in [
        // Another body's signature, another key, bad hex, a bad key, one header alone.
        (
            vec![
                ("X-Signature", sign(&key, &other)),
                ("X-Public-Key", public.clone()),
            ],
            "does not verify",
        ),
        (
            vec![
                ("X-Signature", signature.clone()),
                ("X-Public-Key", stranger),
            ],
            "does not verify",
        ),
        (
            vec![
                ("X-Signature", "zz".to_owned()),
                ("X-Public-Key", public.clone()),
            ],
            "hex",
        ),
        (
            vec![
                ("X-Signature", signature.clone()),
                ("X-Public-Key", "ssh-rsa !!!".to_owned()),
            ],
            "OpenSSH",
        ),
        (
            vec![
                ("X-Signature", signature.clone()),
                ("X-Public-Key", "ssh-ed25519 AAAA".to_owned()),
            ],
            "OpenSSH",
        ),
        (
            vec![
                ("X-Signature", signature.clone()),
                ("X-Public-Key", "ssh-rsa AAAAB3NzaC1yc2EAAAAD".to_owned()),
            ],
            "OpenSSH",
        ),
        (vec![("X-Signature", signature.clone())], "together"),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let title = face.submit(&body, &headers).await.refused(400);
        assert!(title.contains(expected), "{headers:?}: {title}");
    }
    // Only the good submission was kept; as upstream, a signed one is its signer's, out of
    // the public list.
    let page = face.get("/v1/results").await.json();
    assert_eq!(page["results"], json!([]));
}

/// `annals serve` as a child process on `data`, on free ports.
fn serve(data: &std::path::Path) -> common::Served {
    common::serve_data(data, None, &[], &[]).expect("the server starts")
}

#[actix_rt::test]
async fn runs_statuses_and_uploads_survive_a_restart() {
    let (_dir, data) = common::data_dir();
    let client = || Refstack {
        main: String::new(),
        client: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
        config: Config::default(),
        clock: t0(),
        _dir: tempfile::tempdir().unwrap(),
    };
    let stream = v2_stream();
    let server = serve(&data);
    let face = Refstack {
        main: format!("http://{}", server.address),
        ..client()
    };
    let id = face.open().await;
    let answer = face.update_status(&id, "status=done&finished=1").await;
    assert_eq!(answer.status, 201);
    let uploaded = face
        .upload_multipart(&format!("/v1/post-result?test_id={id}"), &stream)
        .await
        .json();
    let upload_id = uploaded["upload_id"].as_str().unwrap().to_owned();
    let before = face.get(&format!("/v1/test-runs/{id}")).await.json();
    let submitted = face.submit(&results_body("c", &["t.T.test"]), &[]).await;
    assert_eq!(submitted.status, 201);
    let results_before = face.get("/v1/results").await.json();
    assert!(server.terminate().success());

    let server = serve(&data);
    let face = Refstack {
        main: format!("http://{}", server.address),
        ..client()
    };
    let after = face.get(&format!("/v1/test-runs/{id}")).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.json(), before, "the run is what it was");
    assert_eq!(before["statuses"][0]["status"], "done");
    assert_eq!(before["uploads"][0]["upload_id"], upload_id.as_str());
    let raw = face
        .get(&format!("/v1/test-runs/{id}/uploads/{upload_id}"))
        .await;
    assert_eq!(raw.status, 200);
    assert!(
        raw.body == stream,
        "the download after a restart is byte-identical"
    );
    // The same page, but for the port in each `url`.
    let without_urls = |mut page: Value| {
        for row in page["results"].as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("url");
        }
        page
    };
    assert_eq!(
        without_urls(face.get("/v1/results").await.json()),
        without_urls(results_before)
    );
    let miniconf = face.get(&format!("/get-miniconf?test_id={id}")).await;
    assert_eq!(miniconf.json()["identity"]["username"], "demo");
    assert!(server.terminate().success());
}

fn settings() -> insta::Settings {
    common::snapshots(&[
        // The listener's port is in every `url`.
        (".url", "[url]"),
        (".results[].url", "[url]"),
    ])
}

#[actix_rt::test]
async fn golden_bodies() {
    // The manual clock: times are T0, ids count up from 1, so nothing needs redacting.
    let face = spawn(|_| {}).await;
    let id = face.open().await;
    face.update_status(&id, "status=test%20complete&finished=true")
        .await;
    let uploaded = face
        .upload_multipart(&format!("/v1/post-result?test_id={id}"), &v2_stream())
        .await
        .json();
    let run = face.get(&format!("/v1/test-runs/{id}")).await.json();
    let miniconf = face
        .get(&format!("/v1/get-miniconf?test_id={id}"))
        .await
        .json();
    let submitted = face
        .submit(&results_body("cloud0", &["tempest.api.a.A.test_one"]), &[])
        .await
        .json();
    let results_id = submitted["test_id"].as_str().unwrap().to_owned();
    let page = face.get("/v1/results").await.json();
    let detail = face.get(&format!("/v1/results/{results_id}")).await.json();
    for (name, body) in [
        ("uploaded", uploaded),
        ("run", run),
        ("miniconf", miniconf),
        ("submitted", submitted),
        ("results_page", page),
        ("results_detail", detail),
    ] {
        settings().bind(|| insta::assert_json_snapshot!(format!("refstack_{name}"), body));
    }
}

#[actix_rt::test]
async fn the_collection_answers_both_methods_at_both_spellings_as_refstack_client_calls_it() {
    let face = spawn(|_| {}).await;
    // Nothing yet: page 1 exists, page 2 does not.
    let empty = face.get("/v1/results/?page=1").await;
    assert_eq!(empty.status, 200);
    assert_eq!(
        empty.json(),
        json!({"results": [], "pagination": {"current_page": 1, "total_pages": 1}})
    );
    face.get("/v1/results/?page=2").await.refused(400);

    let unslashed = face
        .submit_at("/v1/results", &results_body("c1", &["t.T.test_a"]), &[])
        .await;
    assert_eq!(unslashed.status, 201, "{}", unslashed.json());
    let slashed = face.submit(&results_body("c2", &["t.T.test_b"]), &[]).await;
    assert_eq!(slashed.status, 201);
    for path in ["/v1/results?page=1", "/v1/results/?page=1", "/v1/results/"] {
        let page = face.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(
            listed_ids(&page.json()),
            [
                slashed.json()["test_id"].as_str().unwrap(),
                unslashed.json()["test_id"].as_str().unwrap()
            ],
            "{path}"
        );
    }
    // Another method is still the face's 405.
    let request = face.client.delete(format!("{}/v1/results/", face.main));
    face.send(request, "").await.refused(405);

    // The schema of what the collection takes.
    let schema = face.get("/v1/results/schema").await;
    assert_eq!(schema.status, 200);
    let schema = schema.json();
    assert_eq!(
        schema["required"],
        json!(["cpid", "duration_seconds", "results"])
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["properties"]["results"]["items"]["oneOf"][0]["properties"]["uuid"]["format"],
        "uuid_hex"
    );
}

#[actix_rt::test]
async fn a_uuid_that_is_not_a_uuid_is_taken_as_upstream_takes_it() {
    let face = spawn(|_| {}).await;
    let body = json!({"cpid": "c", "duration_seconds": 1,
        "results": [{"name": "t.T.test_a", "uuid": "not-a-uuid"}, {"name": "t.T.test_b", "uuid": ""}]});
    let answer = face.submit(body.to_string().as_bytes(), &[]).await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    let id = answer.json()["test_id"].as_str().unwrap().to_owned();
    let detail = face.get(&format!("/v1/results/{id}")).await.json();
    assert_eq!(detail["results"], json!(["t.T.test_a", "t.T.test_b"]));
}

#[actix_rt::test]
async fn the_list_filters_by_cloud_and_dates_in_upstreams_format() {
    let face = spawn(|_| {}).await;
    // Three submissions ten seconds apart, the first and last of cloud `a`; a fraction of a
    // second, which the shown times leave out, must not push one out of its own bounds.
    let mut ids = Vec::new();
    for (n, cpid) in ["a", "b", "a"].iter().enumerate() {
        face.clock
            .set(at((T0 + 10 * n as i64) * 1_000_000 + 250_000));
        let answer = face.submit(&results_body(cpid, &["t.T.test"]), &[]).await;
        assert_eq!(answer.status, 201);
        ids.push(answer.json()["test_id"].as_str().unwrap().to_owned());
    }
    let listed = |query: String| {
        let face = &face;
        async move {
            let answer = face.get(&format!("/v1/results/?{query}")).await;
            assert_eq!(answer.status, 200, "{query}: {}", answer.json());
            listed_ids(&answer.json())
        }
    };
    let all = face.get("/v1/results").await.json();
    let created = strings(items(&all["results"]), "/created_at");
    assert_eq!(
        created,
        [
            "2023-11-14 22:13:40",
            "2023-11-14 22:13:30",
            "2023-11-14 22:13:20"
        ]
    );
    let detail = face.get(&format!("/v1/results/{}", ids[0])).await.json();
    assert_eq!(detail["created_at"], "2023-11-14 22:13:20");

    let encode = |time: &str| time.replace(' ', "%20");
    // A time read back is a bound, inclusive at both ends.
    assert_eq!(
        listed(format!("start_date={}", encode(&created[1]))).await,
        [ids[2].clone(), ids[1].clone()]
    );
    assert_eq!(
        listed(format!(
            "start_date={}&end_date={}",
            encode(&created[1]),
            encode(&created[1])
        ))
        .await,
        [ids[1].clone()]
    );
    assert_eq!(
        listed(format!("end_date={}", encode(&created[2]))).await,
        [ids[0].clone()]
    );
    assert_eq!(
        listed("end_date=1000-01-01+12:00:00".into()).await,
        Vec::<String>::new()
    );
    assert_eq!(
        listed("cpid=a".into()).await,
        [ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(
        listed("cpid=a&start_date=2023-11-14+22:13:21".into()).await,
        [ids[2].clone()]
    );
    assert_eq!(listed("cpid=".into()).await.len(), 3);
    // A filtered list is paged by what it holds.
    let one = face.get("/v1/results?cpid=b").await.json();
    assert_eq!(
        one["pagination"],
        json!({"current_page": 1, "total_pages": 1})
    );
    face.get("/v1/results?cpid=b&page=2").await.refused(400);

    for (query, title) in [
        (
            "start_date=2023-11-14",
            "Invalid date format: time data '2023-11-14' does not match format '%Y-%m-%d %H:%M:%S'",
        ),
        (
            "end_date=2023-11-14T22:13:20Z",
            "Invalid date format: time data '2023-11-14T22:13:20Z' does not match format '%Y-%m-%d %H:%M:%S'",
        ),
        (
            // The value as Python's `repr` shows it: in double quotes when it holds a quote.
            "start_date=it's",
            "Invalid date format: time data \"it's\" does not match format '%Y-%m-%d %H:%M:%S'",
        ),
        (
            // Python's `strptime`, which upstream calls, names what is left after a date.
            "end_date=2023-11-14+22:13:20.250000",
            "Invalid date format: unconverted data remains: .250000",
        ),
        (
            "start_date=2023-11-14+22:13:21&end_date=2023-11-14+22:13:20",
            "Invalid dates: start_date more than end_date",
        ),
        ("signed", "To see signed test results you need to authenticate"),
    ] {
        let answer = face.get(&format!("/v1/results?{query}")).await;
        assert_eq!(answer.refused(400), title, "{query}");
    }
}

#[actix_rt::test]
async fn signed_lists_the_callers_own_signed_results_and_the_public_list_the_unsigned() {
    let (ada, ada_hash) = new_token();
    let (bob, bob_hash) = new_token();
    let face = spawn(|config| {
        config.refstack.auth = Access::Account;
        config.accounts = [("ada", ada_hash), ("bob", bob_hash)]
            .into_iter()
            .map(|(name, hash)| Account {
                name: name.into(),
                password_hash: None,
                token_sha256: vec![hash],
                roles: vec![],
            })
            .collect();
    })
    .await;
    let (key, public) = signing_key();
    let as_account = |token: &str, method: &str, path: &str| {
        face.client
            .request(method.parse().unwrap(), format!("{}{path}", face.main))
            .bearer_auth(token)
    };
    let submit = |token: &str, body: Vec<u8>, signed: bool| {
        let mut request = as_account(token, "POST", "/v1/results/")
            .insert_header(("content-type", "application/json"));
        if signed {
            request = request
                .insert_header(("X-Signature", sign(&key, &body)))
                .insert_header(("X-Public-Key", public.clone()));
        }
        let face = &face;
        async move {
            let answer = face.send(request, body).await;
            assert_eq!(answer.status, 201, "{}", answer.json());
            answer.json()["test_id"].as_str().unwrap().to_owned()
        }
    };
    let ada_signed = submit(&ada, results_body("a", &["t.T.test"]), true).await;
    let ada_unsigned = submit(&ada, results_body("b", &["t.T.test"]), false).await;
    let bob_signed = submit(&bob, results_body("c", &["t.T.test"]), true).await;
    let list = |token: &str, query: &str| {
        let request = as_account(token, "GET", &format!("/v1/results?{query}"));
        let face = &face;
        async move {
            let answer = face.send(request, "").await;
            assert_eq!(answer.status, 200, "{}", answer.json());
            listed_ids(&answer.json())
        }
    };
    assert_eq!(list(&ada, "").await, [ada_unsigned.as_str()]);
    assert_eq!(list(&bob, "").await, [ada_unsigned.as_str()]);
    assert_eq!(list(&ada, "signed").await, [ada_signed.as_str()]);
    assert_eq!(list(&ada, "signed=&cpid=c").await, Vec::<String>::new());
    assert_eq!(list(&bob, "signed=true").await, [bob_signed]);
    // A signed submission is still read by its id, as the url the client prints says.
    let request = as_account(&bob, "GET", &format!("/v1/results/{ada_signed}"));
    assert_eq!(face.send(request, "").await.status, 200);
}

#[actix_rt::test]
async fn a_multipart_part_is_named_by_its_disposition_read_with_quoted_strings() {
    let face = spawn(|_| {}).await;
    let decoy = |file: Option<&[u8]>| {
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--b0undary\r\nContent-Disposition: form-data; name=\"other\"; \
              filename=\"a;name=file\"\r\n\r\nnot results\r\n",
        );
        if let Some(file) = file {
            body.extend_from_slice(
                b"--b0undary\r\nContent-Disposition: form-data; filename=\"x;y\"; name=\"file\"\r\n\r\n",
            );
            body.extend_from_slice(file);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--b0undary--\r\n");
        body
    };
    let content_type = "multipart/form-data; boundary=b0undary";
    let answer = face
        .post("/v1/post-result", content_type, decoy(Some(&v2_stream())))
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    assert_eq!(answer.json()["format"], "subunit_v2");
    let title = face
        .post("/v1/post-result", content_type, decoy(None))
        .await
        .refused(400);
    assert!(title.starts_with("No file was posted"), "{title}");
}

#[actix_rt::test]
async fn the_url_refstack_client_prints_opens_a_page_that_shows_the_result() {
    use base64::Engine;
    use sha2::Digest;
    let face = spawn(|_| {}).await;
    let submitted = face
        .submit(&results_body("lab", &["tempest.api.a.A.test_one"]), &[])
        .await
        .json();
    let url = submitted["url"].as_str().unwrap();
    let (page_url, fragment) = url.split_once('#').expect("a fragment");
    assert_eq!(page_url, format!("{}/", face.main));

    // What a browser loads for that url: the page at `/` (the fragment stays in the browser).
    let mut response = face.client.get(page_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let policy = header("content-security-policy");
    let page = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    assert!(page.contains(r#"<a href="/api/docs/">"#), "{page}");
    // The page's one inline script is the one its policy lets run.
    let script = page
        .split_once("<script>")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .expect("an inline script")
        .0;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(script));
    assert!(
        policy.contains(&format!("script-src 'sha256-{hash}'"))
            && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    // The script reads the id from that fragment and asks the API for it, where the result is.
    assert!(
        script.contains(r"/^#\/results\/([0-9A-Za-z-]+)$/"),
        "{script}"
    );
    let id = fragment.strip_prefix("/results/").expect("#/results/<id>");
    assert!(
        id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "{id}"
    );
    assert!(script.contains(r#"fetch("/v1/results/" + id"#), "{script}");
    let detail = face.get(&format!("/v1/results/{id}")).await;
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    // Every field the script shows is there.
    for field in [
        "id",
        "cpid",
        "created_at",
        "duration_seconds",
        "meta",
        "results",
    ] {
        assert!(script.contains(&format!("body.{field}")), "{field}");
        assert!(!detail[field].is_null(), "{field}");
    }
    // Uploaded text is written as text, never as markup.
    assert!(!script.contains("innerHTML"));
}

#[actix_rt::test]
async fn a_base_url_given_with_a_trailing_slash_reaches_the_results_as_a_proxy_would_merge_it() {
    // refstack-client joins `<url>/v1/results/`, so `--url http://host/` asks for
    // `//v1/results/`; upstream's deployment (nginx) merges the slashes.
    let face = spawn(|_| {}).await;
    let submitted = face
        .submit_at("//v1/results/", &results_body("lab", &["t.T.test"]), &[])
        .await;
    assert_eq!(submitted.status, 201, "{}", submitted.json());
    let id = submitted.json()["test_id"].as_str().unwrap().to_owned();
    assert_eq!(
        submitted.json()["url"],
        format!("{}/#/results/{id}", face.main)
    );
    let page = face.get("//v1/results/?page=1").await;
    assert_eq!(page.status, 200, "{}", page.json());
    assert_eq!(listed_ids(&page.json()), [id.as_str()]);
    assert_eq!(face.get(&format!("//v1//results/{id}")).await.status, 200);
    // A path that is no route stays the face's 404 once merged.
    let title = face.get("//v1/nothing").await.refused(404);
    assert!(title.contains("/v1/nothing"), "{title}");
}

/// The ids of a page of `GET /v1/results`, in its order.
fn listed_ids(page: &Value) -> Vec<String> {
    strings(items(&page["results"]), "/id")
}

#[actix_rt::test]
async fn a_body_signed_with_an_8192_bit_key_as_refstack_client_signs_it_is_taken() {
    // What refstack-client sent for `upload -i key` with an 8192-bit key (`openssl genrsa
    // 8192`; ssh-keygen makes RSA keys up to 16,384 bits): its JSON body, X-Signature and
    // X-Public-Key. Upstream verifies keys of any size.
    let sent: Value =
        serde_json::from_str(include_str!("../data/refstack-client-signed-8192.json")).unwrap();
    let face = spawn(|_| {}).await;
    let answer = face
        .submit(
            sent["body"].as_str().unwrap().as_bytes(),
            &[
                ("X-Signature", sent["signature"].as_str().unwrap()),
                ("X-Public-Key", sent["public_key"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.json());
    let id = answer.json()["test_id"].as_str().unwrap().to_owned();
    let detail = face.get(&format!("/v1/results/{id}")).await.json();
    assert_eq!(detail["meta"]["public_key"], sent["public_key"]);

    // The same body with a signature one bit off is still refused.
    let mut signature = sent["signature"].as_str().unwrap().to_owned();
    let last = if signature.ends_with('0') { "1" } else { "0" };
    signature.replace_range(signature.len() - 1.., last);
    let title = face
        .submit(
            sent["body"].as_str().unwrap().as_bytes(),
            &[
                ("X-Signature", signature.as_str()),
                ("X-Public-Key", sent["public_key"].as_str().unwrap()),
            ],
        )
        .await
        .refused(400);
    assert!(title.contains("does not verify"), "{title}");

    // A key over 16,384 bits, the most ssh-keygen makes, is refused with its size.
    let line = crate::common::ssh::rsa_line(&[1, 0, 1], &[0xC3; 16_392 / 8]);
    let title = face
        .submit(
            sent["body"].as_str().unwrap().as_bytes(),
            &[("X-Signature", "00"), ("X-Public-Key", line.as_str())],
        )
        .await
        .refused(400);
    assert!(
        title.contains("16392-bit") && title.contains("16384"),
        "{title}"
    );
}
