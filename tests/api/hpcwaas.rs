//! The workflow face against the real server (in-process on port 0, real sled and secret store
//! in a temporary directory, real child processes), sending exactly what the `waas` client
//! sends (HTTP Basic, `Accept: application/json`, POST without a content type,
//! `?from=N&levels=14&size=50`): triggers followed by long polls to their outputs, failing and
//! timed-out steps, cancellation, every bad parameter, auth, shell injection, SSH keys kept
//! encrypted and destroyed, the face's own listener, golden bodies, and a restart of
//! `annals serve` in the middle of a run.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use annals::auth::{hash_password, Account, Role};
use annals::config::Config;
use annals::domain::workflow::catalogue::{InputKind, InputSpec, OutputSpec, StepSpec};
use annals::domain::workflow::WorkflowSpec;
use common::app::{items, numbers, strings, TestApp};
use common::{poll_async, runs};
use serde_json::{json, Value};

const ADA: (&str, &str) = ("ada", "ada's password");
const BOB: (&str, &str) = ("bob", "bob's password");
const WAIT: Duration = Duration::from_secs(60);

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn workflow(name: &str, command: Vec<String>) -> WorkflowSpec {
    WorkflowSpec {
        application_id: "demo".into(),
        environment_id: "lab".into(),
        environment_name: "The lab".into(),
        name: name.into(),
        description: format!("The {name} workflow"),
        steps: vec![StepSpec {
            name: name.into(),
            command,
            ..StepSpec::default()
        }],
        ..WorkflowSpec::default()
    }
}

fn outputs(names: &[&str]) -> Vec<OutputSpec> {
    names
        .iter()
        .map(|name| OutputSpec {
            name: (*name).into(),
            description: format!("the {name}"),
        })
        .collect()
}

fn input(name: &str, required: bool, default: Option<&str>, kind: InputKind) -> InputSpec {
    InputSpec {
        name: name.into(),
        required,
        default: default.map(str::to_owned),
        description: format!("the {name}"),
        kind,
    }
}

/// The workflows of the tests; paths they use live in `dir`.
fn workflows(dir: &Path) -> Vec<WorkflowSpec> {
    let mut hello = workflow(
        "hello",
        sh(
            "echo \"hello $INPUT_WHO\"; echo 'DEBUG: detail'; echo 'WARN: careful'; \
            echo 'ERROR: bad'; echo 'INFO: done'; echo 'on stderr' >&2; \
            echo \"greeting=hello $INPUT_WHO\" >> \"$ANNALS_OUTPUTS\"",
        ),
    );
    hello.inputs = vec![input("who", false, Some("world"), InputKind::String)];
    hello.outputs = vec![OutputSpec {
        name: "greeting".into(),
        description: "what was said".into(),
    }];
    let mut two_steps = workflow(
        "gated",
        sh("echo first; read line < \"$GATE\"; echo second"),
    );
    two_steps.steps[0]
        .env
        .insert("GATE".into(), dir.join("gate").display().to_string());
    // It publishes an output it does not declare, too.
    two_steps.steps.push(StepSpec {
        name: "publish".into(),
        command: sh("echo \"result=$INPUT_N\" >> \"$ANNALS_OUTPUTS\"; \
            echo stray=1 >> \"$ANNALS_OUTPUTS\""),
        ..StepSpec::default()
    });
    two_steps.outputs = outputs(&["result"]);
    two_steps.inputs = vec![input("n", true, None, InputKind::String)];
    let mut timeout = workflow("timeout", vec!["/bin/sleep".into(), "30".into()]);
    timeout.steps[0].timeout_s = 1;
    let mut restricted = workflow("restricted", vec!["/bin/true".into()]);
    restricted.users = vec!["ada".into()];
    let mut inject = workflow("inject", vec!["/bin/echo".into()]);
    inject.steps[0].command = sh("printf '%s\\n' \"$INPUT_ARG\"");
    inject.inputs = vec![input("arg", true, None, InputKind::String)];
    let mut usekey = workflow(
        "usekey",
        sh("stat -c %a \"$INPUT_KEY\"; cp \"$INPUT_KEY\" \"$COPY\"; \
            echo \"path=$INPUT_KEY\" >> \"$ANNALS_OUTPUTS\""),
    );
    usekey.steps[0]
        .env
        .insert("COPY".into(), dir.join("key-copy").display().to_string());
    usekey.inputs = vec![input("key", true, None, InputKind::SshKey)];
    usekey.outputs = outputs(&["path"]);
    let mut chatty = workflow(
        "chatty",
        sh("echo 0123456789abcdef; echo a; echo b; echo c; seq 1 500; \
             echo small=ok >> \"$ANNALS_OUTPUTS\"; \
            printf 'big=%02000d\\n' 0 >> \"$ANNALS_OUTPUTS\""),
    );
    chatty.outputs = outputs(&["small", "big"]);
    vec![
        hello,
        chatty,
        two_steps,
        workflow("fail", sh("echo before; exit 3")),
        workflow("sleep", sh("echo ready; exec /bin/sleep 30")),
        workflow("stubborn", sh("trap '' TERM; echo ready; /bin/sleep 30")),
        timeout,
        restricted,
        inject,
        usekey,
    ]
}

fn accounts() -> Vec<Account> {
    [ADA, BOB]
        .into_iter()
        .map(|(name, password)| Account {
            name: name.into(),
            password_hash: Some(hash_password(password)),
            token_sha256: Vec::new(),
            // ada may read the event API too.
            roles: if name == "ada" {
                vec![Role::Admin]
            } else {
                Vec::new()
            },
        })
        .collect()
}

struct Face {
    main: String,
    own: String,
    client: awc::Client,
    dir: tempfile::TempDir,
}

type Answer = common::app::Answer<common::app::Hpcwaas>;

async fn spawn(configure: impl FnOnce(&mut Config)) -> Face {
    let app = TestApp::start(common::app::t0_clock(), |config, dir| {
        config.partisci.enabled = false;
        config.refstack.enabled = false;
        config.accounts = accounts();
        config.hpcwaas.workflows = workflows(dir);
        config.hpcwaas.kill_grace_s = 1;
        configure(config);
    })
    .await;
    Face {
        own: TestApp::own(app.addresses.of("hpcwaas")),
        main: app.main,
        client: awc::Client::builder().timeout(WAIT * 2).finish(),
        dir: app.dir,
    }
}

impl Face {
    fn data(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    async fn send_as(
        &self,
        user: Option<(&str, &str)>,
        method: &str,
        uri: &str,
        body: &[u8],
    ) -> Answer {
        let method = awc::http::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{uri}", self.main))
            .insert_header(("Accept", "application/json"));
        if let Some((name, password)) = user {
            request = request.basic_auth(name, password);
        }
        // As the `waas` client: no content type, whatever the body.
        Answer::send(request, body.to_vec(), 16 * 1024 * 1024).await
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send_as(Some(ADA), "GET", uri, b"").await
    }

    /// Triggers a workflow as ada, as the client does, and returns the execution id (the last
    /// segment of `Location`).
    async fn trigger(&self, workflow: &str, inputs: Value) -> String {
        let body = json!({ "inputs": inputs }).to_string();
        let answer = self
            .send_as(
                Some(ADA),
                "POST",
                &format!("/workflows/{workflow}"),
                body.as_bytes(),
            )
            .await;
        assert_eq!(
            answer.status,
            201,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(answer.body.is_empty());
        let location = answer.location.expect("a Location");
        assert!(location.starts_with("/executions/"), "{location}");
        location.rsplit('/').next().unwrap().to_owned()
    }

    /// Follows an execution as `waas executions status --follow` does: while its lower-cased
    /// status ends in "ing"; returns the last answer.
    async fn follow(&self, id: &str) -> Value {
        poll_async(WAIT, "the execution to end", || async {
            let body = self.get(&format!("/executions/{id}")).await.json();
            let status = body["status"].as_str().unwrap().to_ascii_lowercase();
            (!status.ends_with("ing")).then_some(body)
        })
        .await
    }

    /// The log as the client asks for it.
    async fn logs(&self, id: &str, query: &str) -> Value {
        let answer = self.get(&format!("/executions/{id}/logs?{query}")).await;
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()
    }
}

fn contents(page: &Value) -> Vec<String> {
    strings(items(&page["logs"]), "/content")
}

#[actix_rt::test]
async fn a_trigger_followed_by_long_polls_ends_in_success_with_outputs() {
    let face = spawn(|_| {}).await;
    let gate = face.dir.path().join("gate");
    let status = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(status.success());
    let id = face.trigger("demo@lab@gated", json!({"n": 42})).await;

    // The first line is there (or arrives while the request waits).
    let first = face.logs(&id, "from=0&levels=14&size=50").await;
    assert_eq!(contents(&first), ["first"]);
    assert_eq!(
        (first["total_results"].clone(), first["from"].clone()),
        (json!(1), json!(0))
    );
    // The next request waits for the second line, which comes once the gate opens.
    let waiting = {
        let face_url = face.main.clone();
        let id = id.clone();
        actix_rt::spawn(async move {
            let client = awc::Client::builder().timeout(WAIT * 2).finish();
            let mut response = client
                .get(format!(
                    "{face_url}/executions/{id}/logs?from=1&levels=14&size=50"
                ))
                .basic_auth(ADA.0, ADA.1)
                .insert_header(("Accept", "application/json"))
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            body
        })
    };
    let open = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut fifo = std::fs::OpenOptions::new().write(true).open(gate).unwrap();
        fifo.write_all(b"go\n").unwrap();
    });
    let second = waiting.await.unwrap();
    open.await.unwrap();
    assert_eq!(contents(&second), ["second"]);
    assert_eq!(second["from"], 1);

    let done = face.follow(&id).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    // Only the declared output is published; a line says which were not.
    assert_eq!(done["outputs"], json!({"result": "42"}));
    assert_eq!(done["id"], id);
    assert_eq!(
        contents(&face.logs(&id, "levels=4").await),
        ["step publish: outputs the workflow does not declare were not published: stray"]
    );
}

#[actix_rt::test]
async fn a_long_poll_on_an_ended_execution_waits_out_its_timeout() {
    let face = spawn(|_| {}).await;
    let id = face.trigger("demo@lab@hello", json!({})).await;
    assert_eq!(face.follow(&id).await["status"], "SUCCESS");
    // The `waas` client's follow loops ask again as soon as they are answered: with nothing at
    // `from`, the answer comes when the timeout has passed, as upstream, not at once.
    let timeout = Duration::from_millis(300);
    for query in ["from=5&levels=14&size=50", "from=1&levels=8&size=50"] {
        let asked = std::time::Instant::now();
        let page = face.logs(&id, &format!("{query}&timeout=300ms")).await;
        let waited = asked.elapsed();
        assert!(waited >= timeout, "{query}: answered after {waited:?}");
        assert!(waited < WAIT, "{query}: answered after {waited:?}");
        assert_eq!(contents(&page), Vec::<String>::new(), "{query}");
    }
    // A line at `from` is answered at once, and `timeout=0` does not wait.
    let asked = std::time::Instant::now();
    let at_once = face.logs(&id, "from=3&levels=11&timeout=1m").await;
    assert_eq!(contents(&at_once), ["done"]);
    let page = face.logs(&id, "from=5&timeout=0").await;
    assert_eq!(contents(&page), Vec::<String>::new());
    assert!(asked.elapsed() < timeout, "{:?}", asked.elapsed());
}

#[actix_rt::test]
async fn levels_and_pagination_against_a_known_log() {
    let face = spawn(|_| {}).await;
    let id = face.trigger("demo@lab@hello", json!({"who": "ada"})).await;
    let done = face.follow(&id).await;
    assert_eq!(done["status"], "SUCCESS");
    assert_eq!(done["outputs"], json!({"greeting": "hello ada"}));

    let all = face.logs(&id, "levels=15&timeout=0").await;
    assert_eq!(all["total_results"], 6);
    let page = face.logs(&id, "levels=11").await;
    assert_eq!(contents(&page), ["hello ada", "detail", "bad", "done"]);
    let levels = strings(items(&page["logs"]), "/level");
    assert_eq!(levels, ["INFO", "DEBUG", "ERROR", "INFO"]);
    let page = face.logs(&id, "from=1&size=2&levels=11").await;
    assert_eq!(contents(&page), ["detail", "bad"]);
    assert_eq!(
        (page["total_results"].clone(), page["from"].clone()),
        (json!(4), json!(1))
    );
    assert_eq!(contents(&face.logs(&id, "levels=8").await), ["bad"]);
    // Standard error is WARN; its order against standard output is not fixed.
    let mut warnings = contents(&face.logs(&id, "levels=4").await);
    warnings.sort();
    assert_eq!(warnings, ["careful", "on stderr"]);
    // 0 is INFO, WARN and ERROR: everything but the DEBUG line.
    assert_eq!(face.logs(&id, "levels=0").await["total_results"], 5);
    assert_eq!(face.logs(&id, "").await["total_results"], 5);
    // A mask with no known bit is every level, as upstream; unknown bits beside known ones
    // are ignored.
    assert_eq!(face.logs(&id, "levels=16").await["total_results"], 6);
    assert_eq!(face.logs(&id, "levels=240").await["total_results"], 6);
    assert_eq!(contents(&face.logs(&id, "levels=24").await), ["bad"]);
    // `size=0` is the default page: every line.
    let whole = face.logs(&id, "size=0&levels=15").await;
    assert_eq!(contents(&whole).len(), 6);
    assert_eq!(
        contents(&face.logs(&id, "from=3&size=0&levels=11").await),
        ["done"]
    );
    // Past the end: nothing.
    let past = face.logs(&id, "from=99&levels=14&size=50&timeout=0").await;
    assert_eq!(
        (contents(&past).len(), past["from"].clone()),
        (0, json!(99))
    );

    // Every bad parameter is a 400 that names it.
    for (query, name) in [
        ("from=-1", "from"),
        ("from=x", "from"),
        ("size=-2", "size"),
        ("size=ten", "size"),
        ("timeout=60", "timeout"),
        ("timeout=1x", "timeout"),
        ("timeout=6m", "timeout"),
        ("levels=256", "levels"),
        ("levels=-1", "levels"),
        ("levels=info", "levels"),
    ] {
        let detail = face
            .get(&format!("/executions/{id}/logs?{query}"))
            .await
            .refused(400, "bad_request");
        assert!(detail.contains(name), "{query}: {detail}");
    }
    for timeout in ["300ms", "1m30s", "1.5h", "0"] {
        let answer = face
            .get(&format!("/executions/{id}/logs?timeout={timeout}"))
            .await;
        // 1.5h is over the 5m limit.
        let expected = if timeout == "1.5h" { 400 } else { 200 };
        assert_eq!(answer.status, expected, "{timeout}");
    }
}

/// A page of `size` lines from `from` of a long log, as the client asks for it.
async fn page_of(face: &Face, id: &str, from: usize, size: usize, levels: u8) -> Vec<String> {
    let query = format!("from={from}&size={size}&levels={levels}&timeout=0");
    contents(&face.logs(id, &query).await)
}

#[actix_rt::test]
async fn pages_of_a_long_log_are_read_from_its_middle() {
    // 3,000 lines: standard output (INFO) and every third on standard error (WARN), whose
    // order against each other is not fixed; within a level it is.
    let face = spawn(|config| {
        config.hpcwaas.workflows.push(workflow(
            "long",
            sh("i=1; while [ $i -le 3000 ]; do \
                if [ $((i % 3)) -eq 0 ]; then echo \"w $i\" >&2; else echo \"i $i\"; fi; \
                i=$((i + 1)); done"),
        ))
    })
    .await;
    let id = face.trigger("demo@lab@long", json!({})).await;
    assert_eq!(face.follow(&id).await["status"], "SUCCESS");
    let info = contents(&face.logs(&id, "levels=2&timeout=0").await);
    let expected: Vec<String> = (1..=3000)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("i {i}"))
        .collect();
    assert_eq!(info, expected);
    let warn = contents(&face.logs(&id, "levels=4&timeout=0").await);
    assert_eq!(warn.len(), 1000);
    let every = contents(&face.logs(&id, "levels=15&timeout=0").await);
    assert_eq!(every.len(), 3000);
    // Pages that start before, at and past each indexed line (every 1,024th), by one level
    // and by several.
    for from in [0, 1, 1023, 1024, 1025, 1500, 2047, 2048, 2900, 2995] {
        for (levels, all) in [(2, &info), (4, &warn), (6, &every), (15, &every)] {
            let want: Vec<String> = all.iter().skip(from).take(7).cloned().collect();
            let got = page_of(&face, &id, from, 7, levels).await;
            assert_eq!(got, want, "from={from} levels={levels}");
        }
    }
    let page = face.logs(&id, "from=1990&size=50&levels=2&timeout=0").await;
    assert_eq!(
        (page["total_results"].clone(), page["from"].clone()),
        (json!(2000), json!(1990))
    );
    assert_eq!(contents(&page), expected[1990..]);
    // `size=0` from the middle: every line from there on.
    let rest = contents(&face.logs(&id, "from=700&size=0&levels=4&timeout=0").await);
    assert_eq!(rest, warn[700..]);
    let rest = contents(&face.logs(&id, "from=1025&size=0&levels=6&timeout=0").await);
    assert_eq!(rest, every[1025..]);
}

#[actix_rt::test]
async fn failing_and_timed_out_steps_fail_the_execution() {
    let face = spawn(|_| {}).await;
    let failing = face.trigger("demo@lab@fail", json!({})).await;
    let timed_out = face.trigger("demo@lab@timeout", json!({})).await;
    let done = face.follow(&failing).await;
    assert_eq!(done["status"], "FAILED");
    common::app::assert_says(&done, "/reason", "exited with code 3");
    // The last line says why it failed.
    assert_eq!(
        contents(&face.logs(&failing, "").await),
        ["before", "failed: step fail exited with code 3"]
    );
    let done = face.follow(&timed_out).await;
    assert_eq!(done["status"], "FAILED");
    common::app::assert_says(&done, "/reason", "timed out");
}

#[actix_rt::test]
async fn a_cancel_stops_the_step_and_a_stubborn_one_is_killed() {
    let face = spawn(|_| {}).await;
    for workflow in ["demo@lab@sleep", "demo@lab@stubborn"] {
        let id = face.trigger(workflow, json!(null)).await;
        // The step runs (and the stubborn one's trap is set) once it says it is ready.
        let ready = face.logs(&id, "from=0&levels=14&size=50").await;
        assert_eq!(contents(&ready), ["ready"]);
        let answer = face
            .send_as(Some(ADA), "DELETE", &format!("/executions/{id}"), b"")
            .await;
        assert_eq!((answer.status, answer.body.len()), (202, 0));
        if workflow.ends_with("stubborn") {
            // It ignores SIGTERM: it is CANCELLING until SIGKILL comes, a second later.
            let now = face.get(&format!("/executions/{id}")).await.json();
            assert_eq!(now["status"], "CANCELLING", "{now}");
        }
        let done = face.follow(&id).await;
        assert_eq!(done["status"], "CANCELLED", "{workflow}: {done}");
        // The last line says who cancelled it.
        let lines = face.logs(&id, "levels=4").await;
        assert_eq!(contents(&lines), ["cancelled by ada"], "{workflow}");
        let history = face
            .get(&format!("/api/streams/execution-{id}/events"))
            .await
            .json();
        let ended = common::app::first_of_type(&history, "StepEnded")["payload"]["ended"].clone();
        // SIGTERM (15) ends the plain sleep; the stubborn step needed SIGKILL (9).
        let signal = if workflow.ends_with("stubborn") {
            9
        } else {
            15
        };
        assert_eq!(
            (ended["signal"].clone(), ended["cancelled"].clone()),
            (json!(signal), json!(true)),
            "{ended}"
        );
        common::app::assert_says(&done, "/reason", "ada");
        // Cancelling again is no error.
        let again = face
            .send_as(Some(ADA), "DELETE", &format!("/executions/{id}"), b"")
            .await;
        assert_eq!(again.status, 202);
    }
}

#[actix_rt::test]
async fn bodies_inputs_unknown_ids_and_auth_are_refused_in_the_envelope() {
    let face = spawn(|config| config.hpcwaas.max_body_kb = 1).await;
    let post =
        |body: &'static [u8]| face.send_as(Some(ADA), "POST", "/workflows/demo@lab@hello", body);
    let detail = post(b"").await.refused(400, "bad_request");
    assert!(detail.contains("empty"), "{detail}");
    post(b"{not json").await.refused(400, "bad_request");
    post(b"[1]").await.refused(400, "bad_request");
    // An array is no key request, whatever serde would read from it.
    let detail = face
        .send_as(Some(ADA), "POST", "/ssh_keys", b"[null, null]")
        .await
        .refused(400, "bad_request");
    assert!(detail.contains("not a key request"), "{detail}");
    let detail = post(br#"{"inputs":{"who":"x","extra":1,"other":2}}"#)
        .await
        .refused(400, "bad_request");
    assert!(
        detail.contains("extra") && detail.contains("other"),
        "{detail}"
    );
    for body in [&b"{}"[..], b"null", br#"{"inputs":null}"#] {
        assert_eq!(
            post(body).await.status,
            201,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let detail = face
        .send_as(Some(ADA), "POST", "/workflows/demo@lab@inject", b"{}")
        .await
        .refused(400, "bad_request");
    assert!(detail.contains("arg"), "{detail}");
    let big = vec![b' '; 2048];
    face.send_as(Some(ADA), "POST", "/workflows/demo@lab@hello", &big)
        .await
        .refused(413, "request_entity_too_large");
    face.send_as(Some(ADA), "POST", "/workflows/demo@lab@nothing", b"{}")
        .await
        .refused(404, "not_found");

    let unknown = "0192f3a4-5b6c-7d8e-9f00-aabbccddeeff";
    for (method, uri) in [
        ("GET", format!("/executions/{unknown}")),
        ("GET", format!("/executions/{unknown}/logs")),
        ("GET", format!("/executions/{unknown}/events")),
        ("DELETE", format!("/executions/{unknown}")),
        ("GET", "/executions/not-an-id".to_owned()),
        ("GET", format!("/ssh_keys/{unknown}")),
        ("DELETE", format!("/ssh_keys/{unknown}")),
        ("GET", "/workflows/demo@lab@nothing".to_owned()),
    ] {
        face.send_as(Some(ADA), method, &uri, b"")
            .await
            .refused(404, "not_found");
    }
    face.send_as(Some(ADA), "PUT", "/executions", b"")
        .await
        .refused(405, "method_not_allowed");
    let detail = face
        .get("/executions?status=DONE")
        .await
        .refused(400, "bad_request");
    assert!(detail.contains("status"), "{detail}");

    for user in [None, Some(("ada", "wrong")), Some(("nobody", "x"))] {
        for uri in ["/workflows", "/executions", "/ssh_keys"] {
            let method = if uri == "/ssh_keys" { "POST" } else { "GET" };
            let answer = face.send_as(user, method, uri, b"").await;
            assert!(answer.www_authenticate.is_some(), "{uri}");
            answer.refused(401, "unauthorized");
        }
    }
    let detail = face
        .send_as(Some(BOB), "POST", "/workflows/demo@lab@restricted", b"{}")
        .await
        .refused(403, "forbidden");
    assert!(detail.contains("bob"), "{detail}");
    let answer = face
        .send_as(Some(ADA), "POST", "/workflows/demo@lab@restricted", b"{}")
        .await;
    assert_eq!(answer.status, 201);
}

#[actix_rt::test]
async fn lines_and_outputs_are_kept_within_their_limits() {
    let face = spawn(|config| {
        config.hpcwaas.max_line_bytes = 8;
        config.hpcwaas.max_log_lines = 4;
        config.hpcwaas.max_output_kb = 1;
    })
    .await;
    let id = face.trigger("demo@lab@chatty", json!({})).await;
    let done = face.follow(&id).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    // The long line comes in pieces; lines past the fourth are counted, not kept.
    let lines = contents(&face.logs(&id, "levels=15").await);
    assert_eq!(lines, ["01234567", "89abcdef", "a", "b"]);
    // The output cut by the limit is left out, not kept truncated.
    assert_eq!(done["outputs"], json!({"small": "ok"}));
    // Every line past the limit is counted, in a few events rather than one per batch.
    let history = face
        .get(&format!("/api/streams/execution-{id}/events?limit=1000"))
        .await
        .json();
    let dropped = items(&history["events"])
        .iter()
        .filter(|e| e["type"] == "LogLinesDropped");
    let counts = numbers(dropped, "/payload/count");
    // 501 of the step's lines, and the runner's warning that the outputs were cut.
    assert_eq!(counts.iter().sum::<u64>(), 502, "{counts:?}");
    assert!(counts.len() <= 3, "{counts:?}");
}

#[actix_rt::test]
async fn a_step_that_leaves_a_fifo_for_its_outputs_ends_with_a_warning() {
    let face = spawn(|config| {
        config.hpcwaas.workflows.push(workflow(
            "fifo",
            sh("rm -f \"$ANNALS_OUTPUTS\"; mkfifo \"$ANNALS_OUTPUTS\"; echo made"),
        ))
    })
    .await;
    let id = face.trigger("demo@lab@fifo", json!({})).await;
    let done = face.follow(&id).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(done["outputs"], json!({}));
    let lines = contents(&face.logs(&id, "levels=15").await);
    assert_eq!(
        lines,
        [
            "made",
            "step fifo: $ANNALS_OUTPUTS is not a regular file: its outputs were not read"
        ]
    );
}

#[actix_rt::test]
async fn an_input_crafted_as_a_shell_injection_runs_harmlessly() {
    let face = spawn(|_| {}).await;
    let marker = face.dir.path().join("pwned");
    let crafted = format!(
        "x; touch {m} $(touch {m}) `touch {m}` && touch {m} | touch {m}\ntouch {m}",
        m = marker.display()
    );
    let id = face
        .trigger("demo@lab@inject", json!({ "arg": crafted }))
        .await;
    assert_eq!(face.follow(&id).await["status"], "SUCCESS");
    let lines = contents(&face.logs(&id, "").await);
    assert_eq!(
        lines.join("\n"),
        crafted,
        "the input came back as plain text"
    );
    assert!(!marker.exists(), "nothing ran the input");
}

#[actix_rt::test]
async fn executions_are_listed_newest_first_and_workflows_described() {
    let face = spawn(|_| {}).await;
    let first = face.trigger("demo@lab@hello", json!({})).await;
    let second = face.trigger("demo@lab@fail", json!({})).await;
    let third = face.trigger("demo@lab@hello", json!({})).await;
    for id in [&first, &second, &third] {
        face.follow(id).await;
    }
    let ids = |page: &Value| strings(items(&page["executions"]), "/id");
    let all = face.get("/executions").await.json();
    assert_eq!(ids(&all), [third.clone(), second.clone(), first.clone()]);
    assert_eq!(all["total_results"], 3);
    assert_eq!(all["executions"][0]["user"], "ada");
    let hello = face
        .get("/executions?workflow=demo@lab@hello&status=SUCCESS")
        .await
        .json();
    assert_eq!(ids(&hello), [third.clone(), first.clone()]);
    let page = face.get("/executions?from=1&size=1").await.json();
    assert_eq!(
        (ids(&page), page["total_results"].clone()),
        (vec![second.clone()], json!(3))
    );
    let failed = face.get("/executions?status=failed").await.json();
    assert_eq!(ids(&failed), vec![second.clone()]);

    let workflows = face.get("/workflows").await.json();
    let listed = strings(items(&workflows["workflows"]), "/id");
    assert!(
        listed.iter().any(|id| id == "demo@lab@hello") && listed.len() == 10,
        "{listed:?}"
    );
    // bob sees only what he may trigger: not the workflow whose `users` name only ada.
    let answer = face.send_as(Some(BOB), "GET", "/workflows", b"").await;
    let for_bob = strings(items(&answer.json()["workflows"]), "/id");
    assert_eq!(for_bob.len(), 9, "{for_bob:?}");
    assert!(!for_bob.iter().any(|id| id == "demo@lab@restricted"));
    let described = face.get("/workflows/demo@lab@hello").await.json();
    assert_eq!(described["inputs"][0]["default"], "world");
    assert_eq!(described["outputs"][0]["name"], "greeting");

    // The face's own listener serves the face, and only it.
    let get_as_ada = |url: String| face.client.get(url).basic_auth(ADA.0, ADA.1).send();
    let own = get_as_ada(format!("{}/workflows", face.own)).await.unwrap();
    assert_eq!(own.status(), 200);
    let health = face
        .client
        .get(format!("{}/healthz", face.own))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 404);

    // An execution's events as Server-Sent Events, from its request to its end.
    let mut events = get_as_ada(format!("{}/executions/{first}/events", face.main))
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let mut seen = String::new();
    while !seen.contains("ExecutionSucceeded") {
        use futures_util::StreamExt;
        let chunk = events.next().await.expect("more events").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.starts_with("id: ") && seen.contains("ExecutionRequested"),
        "{seen}"
    );
}

/// Every file under `dir`, whole.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

#[actix_rt::test]
async fn keys_are_kept_encrypted_used_by_steps_and_destroyed() {
    let face = spawn(|_| {}).await;
    // As the client: no body, no content type.
    let made = face.send_as(Some(ADA), "POST", "/ssh_keys", b"").await;
    assert_eq!(made.status, 201);
    let made = made.json();
    let key = made["id"].as_str().unwrap().to_owned();
    let public = made["public_key"].as_str().unwrap();
    assert!(
        public.starts_with("ssh-rsa AAAA") && public.ends_with('\n'),
        "{public}"
    );
    let ed = face
        .send_as(
            Some(ADA),
            "POST",
            "/ssh_keys",
            br#"{"type":"ed25519","metadata":{"site":"lab","privateKey":"ignored"}}"#,
        )
        .await
        .json();
    assert!(ed["public_key"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519 "));
    let read = face
        .get(&format!("/ssh_keys/{}", ed["id"].as_str().unwrap()))
        .await
        .json();
    assert_eq!(read["metadata"], json!({"site": "lab"}));
    assert_eq!(read["type"], "ed25519");
    assert!(read["fingerprint"].as_str().unwrap().starts_with("SHA256:"));
    // Another account neither sees nor uses ada's key.
    face.send_as(Some(BOB), "GET", &format!("/ssh_keys/{key}"), b"")
        .await
        .refused(404, "not_found");
    let body = json!({"inputs": {"key": key}}).to_string();
    let use_key_as = |user: (&'static str, &'static str)| {
        face.send_as(
            Some(user),
            "POST",
            "/workflows/demo@lab@usekey",
            body.as_bytes(),
        )
    };
    use_key_as(BOB).await.refused(400, "bad_request");

    let id = face.trigger("demo@lab@usekey", json!({ "key": key })).await;
    let done = face.follow(&id).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(contents(&face.logs(&id, "").await), ["600"], "a 0600 file");
    let path = done["outputs"]["path"].as_str().unwrap();
    assert!(
        !Path::new(path).exists(),
        "the key file is removed after the step"
    );
    let copy = std::fs::read_to_string(face.dir.path().join("key-copy")).unwrap();
    assert!(
        copy.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS#1 PEM"
    );
    // No line of the PEM body is anywhere in the data directory in clear.
    let body_lines: Vec<&str> = copy.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(body_lines.len() > 10);
    for (file, bytes) in files(&face.data()) {
        for line in &body_lines {
            assert!(
                !bytes.windows(line.len()).any(|w| w == line.as_bytes()),
                "{} holds the private key in clear",
                file.display()
            );
        }
    }

    let deleted = face
        .send_as(Some(ADA), "DELETE", &format!("/ssh_keys/{key}"), b"")
        .await;
    assert_eq!((deleted.status, deleted.body.len()), (204, 0));
    face.get(&format!("/ssh_keys/{key}"))
        .await
        .refused(404, "not_found");
    face.send_as(Some(ADA), "DELETE", &format!("/ssh_keys/{key}"), b"")
        .await
        .refused(404, "not_found");
    let detail = use_key_as(ADA).await.refused(400, "bad_request");
    assert!(detail.contains("key"), "{detail}");
    // Its secret file is gone; the history says who deleted it (ada is an admin, who may read
    // the event API).
    let secret = face.data().join("secrets").join(format!("ssh-key-{key}"));
    assert!(!secret.exists());
    let history = face
        .get(&format!("/api/streams/ssh_key-{key}/events"))
        .await
        .json();
    let deleted = &history["events"][1];
    assert_eq!(deleted["type"], "SshKeyDeleted", "{history}");
    assert_eq!(deleted["payload"]["by"], "ada", "{history}");
    assert!(!history.to_string().contains("PRIVATE KEY"));
}

fn settings() -> insta::Settings {
    common::snapshots(&[
        (".public_key", "[public key]"),
        (".fingerprint", "[fingerprint]"),
    ])
}

#[actix_rt::test]
async fn golden_bodies() {
    // The manual clock: times are T0, ids count up from 1, so only key material is redacted.
    let face = spawn(|_| {}).await;
    let golden = |name: &str, body: Value| {
        let mut settings = settings();
        if name.starts_with("key") {
            // A key's id comes after the run's events, whose number depends on how its lines
            // were batched.
            settings.add_redaction(".id", "[id]");
        }
        settings.bind(|| insta::assert_json_snapshot!(format!("hpcwaas_{name}"), body));
    };
    let id = face
        .trigger("demo@lab@hello", json!({"who": "golden"}))
        .await;
    golden("execution", face.follow(&id).await);
    golden("logs", face.logs(&id, "levels=11").await);
    golden("executions", face.get("/executions").await.json());
    golden("workflows", face.get("/workflows").await.json());
    golden(
        "workflow",
        face.get("/workflows/demo@lab@hello").await.json(),
    );
    let key = face
        .send_as(
            Some(ADA),
            "POST",
            "/ssh_keys",
            br#"{"type":"ed25519","metadata":{"a":"b"}}"#,
        )
        .await
        .json();
    let read = face
        .get(&format!("/ssh_keys/{}", key["id"].as_str().unwrap()))
        .await
        .json();
    golden("key_created", key);
    golden("key", read);
    golden("not_found", face.get("/executions/not-an-id").await.json());
}

/// `annals.toml` in `dir`, declaring [`workflows`]; its path.
/// The workflows of the restart tests, besides the others.
fn restart_workflows(dir: &Path) -> Vec<WorkflowSpec> {
    // Numbered lines, a wait for the test's go-ahead (the step's own poll), more lines and
    // an output, then a second step.
    let mut counting = workflow(
        "counting",
        sh("for i in 1 2 3 4 5; do echo \"line $i\"; done; \
            while [ ! -e \"$GO\" ]; do sleep 0.02; done; \
            for i in 6 7 8 9 10; do echo \"line $i\"; done; \
            echo 'count=10' >> \"$ANNALS_OUTPUTS\""),
    );
    counting.steps[0]
        .env
        .insert("GO".into(), dir.join("go").display().to_string());
    counting.steps.push(StepSpec {
        name: "after".into(),
        command: sh("echo after"),
        ..StepSpec::default()
    });
    counting.outputs = outputs(&["count"]);
    // Two steps that each say their pid, then 30 numbered lines a few milliseconds apart.
    let ticking = |name: &str| {
        format!("echo \"pid $$\"; for i in $(seq 1 30); do echo \"{name} $i\"; sleep 0.005; done")
    };
    let mut ticker = workflow("ticker", sh(&ticking("a")));
    ticker.steps.push(StepSpec {
        name: "b".into(),
        command: sh(&ticking("b")),
        ..StepSpec::default()
    });
    let mut all = workflows(dir);
    all.push(counting);
    all.push(ticker);
    all.push(workflow("pid", sh("echo $$; exec /bin/sleep 1000")));
    all
}

fn config_file(dir: &Path) -> std::path::PathBuf {
    config_file_of(dir, workflows(dir), None)
}

fn config_file_of(
    dir: &Path,
    workflows: Vec<WorkflowSpec>,
    on_restart: Option<&str>,
) -> std::path::PathBuf {
    let mut section = toml::Table::new();
    if let Some(how) = on_restart {
        section.insert("on_restart".into(), how.into());
    }
    section.insert(
        "workflows".into(),
        toml::Value::try_from(workflows).unwrap(),
    );
    let mut config = toml::Table::new();
    config.insert("hpcwaas".into(), toml::Value::Table(section));
    let file = dir.join("annals.toml");
    std::fs::write(&file, toml::to_string(&config).unwrap()).unwrap();
    file
}

/// The configuration of the restart tests, with `[hpcwaas] on_restart` set to `how`.
fn restart_config(dir: &Path, how: &str) -> std::path::PathBuf {
    config_file_of(dir, restart_workflows(dir), Some(how))
}

/// The contents of every line of an execution, in order.
fn every_line(client: &reqwest_like::Client, base: &str, id: &str) -> Vec<String> {
    contents(&client.get(
        base,
        &format!("/executions/{id}/logs?from=0&levels=15&size=1000"),
    ))
}

/// A step goes on through a stop of annals, however it stops and whenever the step ends: the
/// execution ends as it would have, with every line once, in order, and its outputs.
#[test]
fn a_running_step_goes_on_through_a_restart_of_annals() {
    for (stop, go_while_down) in [("SIGKILL", false), ("SIGTERM", true)] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let file = restart_config(dir.path(), "reattach");
        let mut server = common::serve_data(&data, Some(&file), &[], &[]).expect("starts");
        let base = format!("http://{}", server.address);
        let client = reqwest_like::Client::new();
        let id = client.trigger(&base, "demo@lab@counting");
        common::poll(WAIT, "the first five lines", || {
            (every_line(&client, &base, &id).len() == 5).then_some(())
        });
        if stop == "SIGKILL" {
            server.child.kill().unwrap();
            server.child.wait().unwrap();
        } else {
            assert!(server.stop().success());
        }
        if go_while_down {
            std::fs::write(dir.path().join("go"), "").unwrap();
        }
        let server = common::serve_data(&data, Some(&file), &[], &[]).expect("starts again");
        let base = format!("http://{}", server.address);
        if !go_while_down {
            std::fs::write(dir.path().join("go"), "").unwrap();
        }
        let done = client.wait_for(&base, &id, |e| e["status"] != "RUNNING");
        assert_eq!(done["status"], "SUCCESS", "{stop}: {done}");
        assert_eq!(done["outputs"], json!({"count": "10"}), "{stop}");
        let mut expected: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
        expected.push("after".into());
        assert_eq!(every_line(&client, &base, &id), expected, "{stop}");
        assert!(server.terminate().success());
    }
}

/// An execution whose step had ended when annals stopped, before the execution's own end was
/// recorded, ends at the next start as its run would have ended it: failed with the step's
/// reason, cancelled, or succeeded after its last step; never "interrupted".
#[test]
fn an_execution_whose_step_ended_just_before_a_stop_ends_as_it_would_have() {
    use annals::domain::workflow::{
        CancelRequested, ExecutionEvent, Requested, StepEnded, StepEndedEvent, StepStarted,
    };
    use annals::events::{EventLog, ExpectedVersion, LogOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = restart_config(dir.path(), "reattach");
    let at = chrono::Utc::now();
    let ended = |index: u32, exit_code: i32| {
        ExecutionEvent::StepEnded(StepEndedEvent {
            index,
            ended: StepEnded {
                exit_code: Some(exit_code),
                signal: None,
                duration_ms: 5,
                timed_out: false,
                cancelled: false,
            },
            at,
        })
    };
    let started = |index: u32, name: &str| {
        ExecutionEvent::StepStarted(StepStarted {
            index,
            name: name.into(),
            at,
        })
    };
    let requested = ExecutionEvent::ExecutionRequested(Requested {
        workflow: "demo@lab@counting".into(),
        inputs: Default::default(),
        by: None,
        at,
    });
    let cancel = ExecutionEvent::CancelRequested(CancelRequested { by: None, at });
    let histories = [
        (
            vec![started(0, "count"), ended(0, 3)],
            "FAILED",
            "step count exited with code 3",
        ),
        (
            vec![started(0, "count"), ended(0, 0), cancel],
            "CANCELLED",
            "",
        ),
        (
            vec![
                started(0, "count"),
                ended(0, 0),
                started(1, "after"),
                ended(1, 0),
            ],
            "SUCCESS",
            "",
        ),
    ];
    let ids: Vec<String> = actix_rt::System::new().block_on(async {
        let log = EventLog::open(&data, LogOptions::default()).expect("the log opens");
        let mut ids = Vec::new();
        for (history, _, _) in &histories {
            let id = uuid::Uuid::now_v7().to_string();
            let events = std::iter::once(&requested)
                .chain(history)
                .map(common::new_event)
                .collect();
            let stream = common::stream(&format!("execution-{id}"));
            log.append(stream, ExpectedVersion::Exactly(0), events)
                .await
                .expect("the history is appended");
            ids.push(id);
        }
        ids
    });
    let server = common::serve_data(&data, Some(&file), &[], &[]).expect("starts");
    let base = format!("http://{}", server.address);
    let client = reqwest_like::Client::new();
    for (id, (_, status, reason)) in ids.iter().zip(&histories) {
        let done = client.wait_for(&base, id, |e| e["status"] != "RUNNING");
        assert_eq!(done["status"], *status, "{done}");
        if !reason.is_empty() {
            assert_eq!(done["reason"], *reason, "{done}");
        }
    }
    assert!(server.terminate().success());
}

/// Twenty `kill -9`s of annals at chosen moments while steps run: after each restart no step
/// of an ended execution is alive, and in the end every execution succeeds with each of its
/// lines once, in order.
#[test]
fn steps_survive_a_campaign_of_kills() {
    let _load = common::LOAD_TEST.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = restart_config(dir.path(), "reattach");
    let client = reqwest_like::Client::new();
    let mut ids: Vec<String> = Vec::new();
    // A fixed sequence of kill moments (lines recorded before the kill), so a failure repeats.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for cycle in 0..20 {
        let mut server = common::serve_data(&data, Some(&file), &[], &[]).expect("starts");
        let base = format!("http://{}", server.address);
        for id in &ids {
            let execution = client.get(&base, &format!("/executions/{id}"));
            if execution["status"] == "RUNNING" {
                continue;
            }
            assert_eq!(execution["status"], "SUCCESS", "cycle {cycle}: {execution}");
            for line in every_line(&client, &base, id) {
                if let Some(pid) = line.strip_prefix("pid ") {
                    let pid: u32 = pid.parse().unwrap();
                    assert!(!runs(pid), "cycle {cycle}: a step of ended {id} runs on");
                }
            }
        }
        ids.push(client.trigger(&base, "demo@lab@ticker"));
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let kill_after = 1 + (seed >> 33) % 60;
        let newest = ids.last().unwrap().clone();
        common::poll(WAIT, "lines before the kill", || {
            let lines = every_line(&client, &base, &newest).len() as u64;
            let ended = client.get(&base, &format!("/executions/{newest}"))["status"] != "RUNNING";
            (lines >= kill_after || ended).then_some(())
        });
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    let server = common::serve_data(&data, Some(&file), &[], &[]).expect("starts");
    let base = format!("http://{}", server.address);
    for id in &ids {
        let done = client.wait_for(&base, id, |e| e["status"] != "RUNNING");
        assert_eq!(done["status"], "SUCCESS", "{done}");
        let lines: Vec<String> = every_line(&client, &base, id)
            .into_iter()
            .filter(|line| !line.starts_with("pid "))
            .collect();
        let expected: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|name| (1..=30).map(move |i| format!("{name} {i}")))
            .collect();
        assert_eq!(lines, expected, "{id}");
    }
    assert!(server.terminate().success());
}

/// With `on_restart = "kill"`, a restart stops the running step and fails its execution as
/// interrupted; with re-attachment, a cancellation after the restart stops the step.
#[test]
fn a_restart_kills_or_follows_the_running_step_as_configured() {
    for how in ["kill", "reattach"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let file = restart_config(dir.path(), how);
        let mut server = common::serve_data(&data, Some(&file), &[], &[]).expect("starts");
        let base = format!("http://{}", server.address);
        let client = reqwest_like::Client::new();
        let id = client.trigger(&base, "demo@lab@pid");
        let pid: u32 = common::poll(WAIT, "the step's pid", || {
            every_line(&client, &base, &id).first()?.parse().ok()
        });
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        assert!(runs(pid), "{how}: the step outlives annals");

        let server = common::serve_data(&data, Some(&file), &[], &[]).expect("starts again");
        let base = format!("http://{}", server.address);
        if how == "kill" {
            let execution = client.wait_for(&base, &id, |e| e["status"] == "FAILED");
            assert_eq!(execution["reason"], "interrupted");
            let logs = client.get(&base, &format!("/executions/{id}/logs?levels=8"));
            common::app::assert_says(&logs, "/logs/0/content", "interrupted");
        } else {
            let (status, _, body) = client.send(&base, "DELETE", &format!("/executions/{id}"), "");
            assert_eq!(status, 202, "{body}");
            let execution = client.wait_for(&base, &id, |e| e["status"] == "CANCELLED");
            assert_eq!(execution["status"], "CANCELLED");
        }
        common::poll(WAIT, "the step to be gone", || (!runs(pid)).then_some(()));
        assert!(server.terminate().success());
    }
}

#[test]
fn a_relative_data_directory_is_taken_from_where_annals_starts() {
    // annals starts in a directory of its own with `--data data`, as with the embedded
    // default `annals-data`; its steps run elsewhere, in their scratch directories.
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path());
    let args = [
        "--config".as_ref(),
        file.as_os_str(),
        "--data".as_ref(),
        "data".as_ref(),
        "serve".as_ref(),
    ];
    let envs = [("ANNALS_HTTP_LISTEN", "127.0.0.1:0")];
    let server = common::spawn_serve_in(Some(dir.path()), &args, &envs).expect("the server starts");
    assert!(
        dir.path().join("data").join("db").exists(),
        "the log is there"
    );
    let base = format!("http://{}", server.address);
    let client = reqwest_like::Client::new();
    let ended = |e: &Value| e["status"] != "RUNNING";

    // A step writes its outputs to `$ANNALS_OUTPUTS`.
    let id = client.trigger(&base, "demo@lab@hello");
    let done = client.wait_for(&base, &id, ended);
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert_eq!(done["outputs"], json!({"greeting": "hello world"}));

    // A step reads the key file it is given.
    let (status, _, made) = client.send(&base, "POST", "/ssh_keys", "");
    assert_eq!(status, 201, "{made}");
    let key: Value = serde_json::from_str(&made).unwrap();
    let body = json!({"inputs": {"key": key["id"]}}).to_string();
    let (status, location, answer) =
        client.send(&base, "POST", "/workflows/demo@lab@usekey", &body);
    assert_eq!(status, 201, "{answer}");
    let id = location.rsplit('/').next().unwrap();
    let done = client.wait_for(&base, id, ended);
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let path = done["outputs"]["path"].as_str().unwrap();
    assert!(Path::new(path).is_absolute(), "{path}");
    assert!(std::fs::read_to_string(dir.path().join("key-copy"))
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(server.terminate().success());
}

/// A node of a cluster on the PostgreSQL log at `url`: `annals serve` with its data in
/// `data`, leases of one second, the main listener on a free port and no face listener of its
/// own (the nodes share one machine), and the same master key.
fn cluster_node(url: &str, data: &Path, config: &Path) -> common::Served {
    cluster_node_leasing(url, data, config, "1")
}

/// [`cluster_node`] with leases of `lease_s` seconds.
fn cluster_node_leasing(url: &str, data: &Path, config: &Path, lease_s: &str) -> common::Served {
    let master_key = "ab".repeat(32);
    let envs = [
        ("ANNALS_LOG_BACKEND", "postgres"),
        ("ANNALS_LOG_POSTGRES_URL", url),
        ("ANNALS_LOG_POSTGRES_LEASE_S", lease_s),
        // Every node of a cluster has the same master key.
        ("ANNALS_MASTER_KEY", &master_key),
        ("ANNALS_PARTISCI_LISTEN", ""),
        ("ANNALS_PATROWL_LISTEN", ""),
        ("ANNALS_HPCWAAS_LISTEN", ""),
    ];
    common::serve_data(data, Some(config), &[], &envs).expect("the node starts")
}

/// Three nodes on one PostgreSQL log. A long poll on one wakes for a request written through
/// another. A step runs once, on the node holding its execution's shard, whichever node took
/// the request; a cancel sent to another node stops it, and an SSH key made on one node serves
/// a step on another. When that node is killed, the others take its shards: the execution it ran is settled as interrupted,
/// one requested meanwhile starts on its new node, and new executions run on the nodes left;
/// the log verifies.
#[test]
fn three_nodes_share_the_steps_and_take_over_from_a_dead_one() {
    let url = common::postgres::server().new_database();
    let dir = tempfile::tempdir().unwrap();
    let file = restart_config(dir.path(), "reattach");
    let data: Vec<PathBuf> = ["a", "b", "c"].map(|n| dir.path().join(n)).into();
    // The first node holds every shard: the others start once it does.
    let mut a = cluster_node(&url, &data[0], &file);
    let (b, c) = (
        cluster_node(&url, &data[1], &file),
        cluster_node(&url, &data[2], &file),
    );
    let [on_a, on_b, on_c] = [&a, &b, &c].map(|node| format!("http://{}", node.address));
    let client = reqwest_like::Client::new();
    let held = |on: &str| -> u32 {
        let (_, _, metrics) = client.send(on, "GET", "/metrics", "");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("annals_shards_held "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the metric is there")
    };
    assert_eq!([held(&on_a), held(&on_b), held(&on_c)], [64, 0, 0]);

    // A long poll on A wakes for the request written through C.
    let head = client.get(&on_a, "/api/events?from=0&limit=1")["head"]
        .as_u64()
        .unwrap();
    let polling = {
        let on_a = on_a.clone();
        std::thread::spawn(move || {
            reqwest_like::Client::new().get(&on_a, &format!("/api/events?from={head}&timeout=50s"))
        })
    };

    // Triggered on C, run on A, cancelled through B, seen ended on C.
    let id = client.trigger(&on_c, "demo@lab@pid");
    let woken = polling.join().unwrap();
    assert_eq!(
        woken["events"][0]["stream"],
        format!("execution-{id}"),
        "{woken}"
    );
    let pid: u32 = common::poll(WAIT, "the step's pid", || {
        every_line(&client, &on_c, &id).first()?.parse().ok()
    });
    assert!(
        common::supervised_under(pid, &data[0]),
        "the step runs on node a"
    );
    let (status, _, body) = client.send(&on_c, "DELETE", &format!("/executions/{id}"), "");
    assert_eq!(status, 202, "{body}");
    let cancelled = client.wait_for(&on_b, &id, |e| {
        !["RUNNING", "CANCELLING"].contains(&e["status"].as_str().unwrap_or(""))
    });
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");
    common::poll(WAIT, "the cancelled step to be gone", || {
        (!runs(pid)).then_some(())
    });

    // A key made on C is checked by B and used by the step on A.
    let (status, _, made) = client.send(&on_c, "POST", "/ssh_keys", "");
    assert_eq!(status, 201, "{made}");
    let key: Value = serde_json::from_str(&made).unwrap();
    let body = json!({"inputs": {"key": key["id"]}}).to_string();
    let (status, location, answer) =
        client.send(&on_b, "POST", "/workflows/demo@lab@usekey", &body);
    assert_eq!(status, 201, "{answer}");
    let used = location.rsplit('/').next().unwrap();
    let done = client.wait_for(&on_a, used, |e| e["status"] != "RUNNING");
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(std::fs::read_to_string(dir.path().join("key-copy"))
        .unwrap()
        .starts_with("-----BEGIN RSA PRIVATE KEY-----"));

    // Triggered on B, run on A, which is killed: B or C settles it.
    let id = client.trigger(&on_b, "demo@lab@pid");
    let pid: u32 = common::poll(WAIT, "the step's pid", || {
        every_line(&client, &on_a, &id).first()?.parse().ok()
    });
    assert!(
        common::supervised_under(pid, &data[0]),
        "the step runs on node a"
    );
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // Requested before a's leases expire: recorded, and started by the node taking it over.
    let waiting = client.trigger(&on_b, "demo@lab@hello");
    let settled = client.wait_for(&on_b, &id, |e| e["status"] != "RUNNING");
    assert_eq!(settled["status"], "FAILED", "{settled}");
    assert_eq!(settled["reason"], "interrupted", "{settled}");
    // The step of the dead node's supervisor is nothing the log waits for any more.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    common::poll(WAIT, "every shard held by the nodes left", || {
        (held(&on_b) + held(&on_c) == 64).then_some(())
    });
    let started = client.wait_for(&on_c, &waiting, |e| e["status"] != "RUNNING");
    assert_eq!(started["status"], "SUCCESS", "{started}");

    // New work runs on the nodes left, once each whichever node takes it.
    let mut ran = Vec::new();
    for on in [&on_b, &on_c, &on_b, &on_c] {
        let id = client.trigger(on, "demo@lab@hello");
        let done = client.wait_for(on, &id, |e| e["status"] != "RUNNING");
        assert_eq!(done["status"], "SUCCESS", "{done}");
        // Its stdout and stderr lines are read apart: either may come first.
        let lines = every_line(&client, on, &id);
        assert!(lines.iter().any(|line| line == "hello world"), "{lines:?}");
        ran.push(id);
    }
    for node in [b, c] {
        assert!(node.terminate().success());
    }
    let verify = common::postgres::annals_on(&url, &data[1])
        .arg("verify")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{said}");
}

/// A node of a cluster killed and started again on its data before its leases expire holds
/// its shards again at once (its data names it) and follows the step it was running to its
/// end, as a node alone does; the other node never takes them.
#[test]
fn a_node_started_again_on_its_data_keeps_its_shards_and_its_running_step() {
    let url = common::postgres::server().new_database();
    let dir = tempfile::tempdir().unwrap();
    let file = restart_config(dir.path(), "reattach");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let mut a = cluster_node_leasing(&url, &data_a, &file, "30");
    let b = cluster_node_leasing(&url, &data_b, &file, "30");
    let on_b = format!("http://{}", b.address);
    let client = reqwest_like::Client::new();
    let id = client.trigger(&on_b, "demo@lab@counting");
    common::poll(WAIT, "the first five lines", || {
        (every_line(&client, &on_b, &id).len() == 5).then_some(())
    });
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let a = cluster_node_leasing(&url, &data_a, &file, "30");
    let on_a = format!("http://{}", a.address);
    let (_, _, metrics) = client.send(&on_a, "GET", "/metrics", "");
    assert!(
        metrics.lines().any(|line| line == "annals_shards_held 64"),
        "{metrics}"
    );
    std::fs::write(dir.path().join("go"), "").unwrap();
    let done = client.wait_for(&on_b, &id, |e| e["status"] != "RUNNING");
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let mut expected: Vec<String> = (1..=10).map(|i| format!("line {i}")).collect();
    expected.push("after".into());
    assert_eq!(every_line(&client, &on_b, &id), expected);
    for node in [a, b] {
        assert!(node.terminate().success());
    }
}

/// A blocking HTTP client for the test that runs `annals serve` as a child process.
mod reqwest_like {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use serde_json::Value;

    pub struct Client;

    impl Client {
        pub fn new() -> Client {
            Client
        }

        pub fn send(
            &self,
            base: &str,
            method: &str,
            path: &str,
            body: &str,
        ) -> (u16, String, String) {
            let address = base.trim_start_matches("http://");
            let mut stream = TcpStream::connect(address).unwrap();
            write!(
                stream,
                "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\n\
                 Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let location = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("location: ")
                        .or(l.strip_prefix("Location: "))
                })
                .unwrap_or("")
                .to_owned();
            (status, location, body.to_owned())
        }

        pub fn trigger(&self, base: &str, workflow: &str) -> String {
            let (status, location, body) =
                self.send(base, "POST", &format!("/workflows/{workflow}"), "{}");
            assert_eq!(status, 201, "{body}");
            location.rsplit('/').next().unwrap().to_owned()
        }

        pub fn get(&self, base: &str, path: &str) -> Value {
            let (status, _, body) = self.send(base, "GET", path, "");
            assert_eq!(status, 200, "{body}");
            serde_json::from_str(&body).unwrap()
        }

        pub fn wait_for(&self, base: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
            super::common::poll(super::WAIT, "the execution's status", || {
                let execution = self.get(base, &format!("/executions/{id}"));
                done(&execution).then_some(execution)
            })
        }
    }
}

/// A step's supervisor killed with -9 while annals runs: annals kills what is left of the
/// step's group and fails the execution as interrupted.
#[actix_rt::test]
async fn a_step_whose_supervisor_dies_is_killed_and_its_execution_interrupted() {
    let face = spawn(|config| {
        config
            .hpcwaas
            .workflows
            .push(workflow("pid", sh("echo $$; exec /bin/sleep 1000")))
    })
    .await;
    let id = face.trigger("demo@lab@pid", json!({})).await;
    let pid: u32 = poll_async(WAIT, "the step's pid", || async {
        contents(&face.logs(&id, "from=0&levels=15&size=10").await)
            .first()?
            .parse()
            .ok()
    })
    .await;
    let face = &face;
    let events = common::app::stream_events(&format!("execution-{id}"), |uri| async move {
        face.get(&uri).await.json()
    })
    .await;
    let supervised = events
        .iter()
        .find(|e| e["type"] == "StepSupervised")
        .expect("the step's supervision is recorded");
    let supervisor = supervised["payload"]["run"]["supervisor"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) of the supervisor this test's server started.
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    let done = face.follow(&id).await;
    assert_eq!(done["status"], "FAILED", "{done}");
    let reason = done["reason"].as_str().unwrap();
    assert!(reason.contains("interrupted"), "{reason}");
    poll_async(WAIT, "the step to be gone", || async {
        (!runs(pid)).then_some(())
    })
    .await;
}

/// A step that writes many lines at once has them recorded in a few appends: every line is
/// still its own `LogLineRecorded`, in order. The journal seals each round with one time and
/// the runner has one append in flight at a time, so each `recorded_at` is one append.
#[actix_rt::test]
async fn many_lines_of_a_step_are_recorded_in_a_few_appends() {
    let face = spawn(|config| {
        config
            .hpcwaas
            .workflows
            .push(workflow("many", sh("seq 1 2000")))
    })
    .await;
    let id = face.trigger("demo@lab@many", json!({})).await;
    let done = face.follow(&id).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let face = &face;
    let events = common::app::stream_events(&format!("execution-{id}"), |uri| async move {
        face.get(&uri).await.json()
    })
    .await;
    let lines = events.iter().filter(|e| e["type"] == "LogLineRecorded");
    common::app::assert_seq_in_a_few_appends(lines, "/payload/content");
}
