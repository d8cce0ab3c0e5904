//! The OpenAPI document and Swagger UI against the real server on port 0, built from a
//! configuration as `annals serve` builds it, with every face running and accounts on: every
//! routed path is documented and every documented one is routed, every answer has a documented
//! status and a body that fits its documented schema, the documented security is the real one
//! (including the routes that ask for credentials only when their face is configured to), and
//! Swagger UI comes whole from the server, with nothing from outside.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use annals::auth::{new_token, Access, Role};
use annals::config::Config;
use annals::events::{EventLog, ExpectedVersion};
use annals::runtime::SystemClock;
use common::{line, stream};
use futures_util::StreamExt;
use serde_json::{json, Value};

struct TestApp {
    address: String,
    /// The Partisci face's own listener.
    partisci: String,
    /// The scan engine face's own listener.
    patrowl: String,
    /// The workflow face's own listener.
    hpcwaas: String,
    client: awc::Client,
    /// A bearer token of an admin account.
    token: String,
    /// A bearer token of an account without roles.
    user_token: String,
    log: EventLog,
    _dir: tempfile::TempDir,
}

/// Starts the real server on free ports over a new log, as [`spawn_with`] does with the
/// default configuration of every face.
async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// [`spawn_app`] and the OpenAPI document it serves.
async fn spawn_documented() -> (TestApp, Value) {
    let app = spawn_app().await;
    let document = app.document().await;
    (app, document)
}

/// Starts the real server from a configuration, as `annals serve` does: every face on (each
/// with its own listener, on a free port), an admin account and an account without roles, and
/// Partisci's danger mode on, so that every documented operation can succeed. `configure`
/// changes the rest.
async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let (token, token_hash) = new_token();
    let (user_token, user_token_hash) = new_token();
    let app = common::app::TestApp::start(Arc::new(SystemClock), |config, _| {
        config.accounts = vec![
            common::token_account("ops", &token_hash, &[Role::Admin]),
            common::token_account("user", &user_token_hash, &[]),
        ];
        assert!(config.partisci.enabled, "every face runs");
        config.partisci.danger = true;
        configure(config);
    })
    .await;
    let own = common::app::TestApp::own;
    // Redirects are answers to check, not to follow.
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(60))
        .finish();
    TestApp {
        address: app.main,
        partisci: own(app.addresses.of("partisci")),
        patrowl: own(app.addresses.of("patrowl")),
        hpcwaas: own(app.addresses.of("hpcwaas")),
        client,
        token,
        user_token,
        log: app.log,
        _dir: app.dir,
    }
}

type Answer = common::app::Answer;

impl TestApp {
    async fn get(&self, uri: &str, with_token: bool) -> Answer {
        let token = with_token.then_some(self.token.as_str());
        self.send("get", uri, Vec::new(), token).await
    }

    /// Sends `method` to `uri` on the main listener with this body (none when empty) and
    /// bearer token.
    async fn send(&self, method: &str, uri: &str, body: Vec<u8>, token: Option<&str>) -> Answer {
        self.send_at(&self.address, method, uri, body, token).await
    }

    /// [`TestApp::send`] to the listener at `base`.
    async fn send_at(
        &self,
        base: &str,
        method: &str,
        uri: &str,
        body: Vec<u8>,
        token: Option<&str>,
    ) -> Answer {
        let method = actix_web::http::Method::from_bytes(method.to_uppercase().as_bytes())
            .expect("an HTTP method");
        let mut request = self.client.request(method, format!("{base}{uri}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = if body.is_empty() {
            request.send().await
        } else {
            request.send_body(body).await
        }
        .expect("the server answers");
        Answer::read(response, 64 << 20).await
    }

    async fn document(&self) -> Value {
        let answer = self.get("/api/openapi.json", false).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content_type, "application/json");
        answer.json()
    }

    async fn append(&self, stream_name: &str, text: &str) -> u64 {
        self.log
            .append(stream(stream_name), ExpectedVersion::Any, vec![line(text)])
            .await
            .unwrap()
            .first_position
    }
}

/// The methods a path item may describe.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The `(path, method)` of every operation the document describes.
fn operations(document: &Value) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if METHODS.contains(&method.as_str()) {
                operations.push((path.clone(), method.clone()));
            }
        }
    }
    operations
}

/// The example of an operation's JSON request body (empty when it takes none, or only a form),
/// which must fit the body's schema.
fn example_body(document: &Value, path: &str, method: &str) -> Vec<u8> {
    let content = &document["paths"][path][method]["requestBody"]["content"];
    if content.is_null() || content["application/json"].is_null() {
        return Vec::new();
    }
    let schema = &content["application/json"]["schema"];
    let example = schema["$ref"]
        .as_str()
        .and_then(|reference| reference.strip_prefix("#/components/schemas/"))
        .map_or(&schema["example"], |name| {
            &document["components"]["schemas"][name]["example"]
        });
    assert!(
        example.is_object(),
        "{method} {path}: its body has an example"
    );
    if let Err(problem) = conforms(document, schema, example, "example") {
        panic!("{method} {path}: {problem}");
    }
    example.to_string().into_bytes()
}

/// A documented path with each path parameter replaced by its documented example.
fn example_uri(document: &Value, path: &str, method: &str) -> String {
    let operation = &document["paths"][path][method];
    let mut uri = path.to_owned();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        if parameter["in"] == "path" {
            let name = parameter["name"].as_str().unwrap();
            let example = parameter["example"]
                .as_str()
                .unwrap_or_else(|| panic!("path parameter {name} of {path} has an example"));
            uri = uri.replace(&format!("{{{name}}}"), example);
        }
    }
    assert!(
        !uri.contains('{'),
        "{path}: every path parameter has an example"
    );
    uri
}

/// The media type of a content type, without its parameters.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Checks an answer to the operation `method path` against the document: its status is one
/// the operation lists, its content type one that response lists, and a JSON body fits the
/// schema. Returns the JSON body, if any.
fn check_answer(document: &Value, path: &str, method: &str, answer: &Answer) -> Option<Value> {
    let operation = &document["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is documented");
    let response = &operation["responses"][answer.status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {}, which its operation does not list: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
    );
    // A documented header is sent.
    for name in response["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|h| h.0)
    {
        let sent = match name.to_ascii_lowercase().as_str() {
            "location" => answer.location.is_some(),
            "www-authenticate" => answer.www_authenticate.is_some(),
            "allow" => answer.header("allow").is_some(),
            other => panic!("a documented header {other} this check does not read"),
        };
        assert!(sent, "{method} {path} ({}) sends {name}", answer.status);
    }
    // A response without content (a redirect, Swagger UI's files, an empty 200) has nothing
    // more to check.
    let content = response["content"].as_object()?;
    let (_, media) = content
        .iter()
        .find(|(documented, _)| essence(documented) == essence(&answer.content_type))
        .unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {} as {:?}, not a documented content type",
                answer.status, answer.content_type
            )
        });
    if essence(&answer.content_type) != "application/json" {
        return None;
    }
    let body = answer.json();
    if let Err(problem) = conforms(document, &media["schema"], &body, "body") {
        panic!("{method} {path} ({}): {problem}\n{body:#}", answer.status);
    }
    Some(body)
}

/// Checks `value` against `schema` as far as the document's schemas go: `$ref`, `oneOf`,
/// `type` (one or several), `enum`, `required` and `properties`, `items`, `minimum` and
/// `maximum`, and the `date-time` and `uuid` formats. Stricter than JSON Schema on purpose in
/// one way: an object member the schema does not name is an error, so that every field annals
/// sends is documented.
fn conforms(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let target = reference
            .strip_prefix("#/components/schemas/")
            .map(|name| &document["components"]["schemas"][name])
            .filter(|target| target.is_object())
            .ok_or_else(|| format!("{at}: {reference} names no schema"))?;
        return conforms(document, target, value, at);
    }
    if let Some(choices) = schema["oneOf"].as_array() {
        let outcomes: Vec<_> = choices
            .iter()
            .map(|choice| conforms(document, choice, value, at))
            .collect();
        return match outcomes.iter().filter(|outcome| outcome.is_ok()).count() {
            1 => Ok(()),
            0 => Err(format!("{at}: fits none of oneOf: {outcomes:?}")),
            n => Err(format!("{at}: fits {n} of oneOf")),
        };
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(several) => several.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let is = |name: &str| match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        other => panic!("a schema type {other} this check does not know"),
    };
    if !types.is_empty() && !types.iter().any(|name| is(name)) {
        return Err(format!("{at}: {value} is not of type {types:?}"));
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(number) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| number < min)
            || schema["maximum"].as_f64().is_some_and(|max| number > max)
        {
            return Err(format!("{at}: {value} is out of the documented range"));
        }
    }
    if let Some(text) = value.as_str() {
        let parses = match schema["format"].as_str() {
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            Some("uuid") => uuid::Uuid::parse_str(text).is_ok(),
            _ => true,
        };
        if !parses {
            return Err(format!("{at}: {text:?} is not a {}", schema["format"]));
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                conforms(document, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    // An object schema without `properties` is free-form, such as an entity's state.
    if let (Some(members), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        {
            for required in schema["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap();
                if !members.contains_key(name) {
                    return Err(format!("{at}: the required {name} is missing"));
                }
            }
            for (name, member) in members {
                let property = properties
                    .get(name)
                    .ok_or_else(|| format!("{at}: {name} is not documented"))?;
                conforms(document, property, member, &format!("{at}.{name}"))?;
            }
        }
    }
    Ok(())
}

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                match (name.as_str(), member) {
                    ("$ref", Value::String(reference)) => found.push(reference.clone()),
                    _ => references(member, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

/// Every route the main listener serves with every face running, as `(method, path)` in
/// OpenAPI's form (`{name}` for each variable segment, whatever its regex; `None` for a route
/// that answers any method), from the server's own list of what it routes.
fn routed() -> BTreeSet<(Option<String>, String)> {
    annals::faces::route_table()
        .into_iter()
        .map(|route| {
            let method = route.method.map(|method| method.as_str().to_lowercase());
            (method, openapi_form(&route.pattern))
        })
        .collect()
}

/// `/api/docs/{file:.*}` → `/api/docs/{file}`.
fn openapi_form(pattern: &str) -> String {
    let mut form = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("a closed segment");
        let name = rest[open + 1..close].split(':').next().unwrap();
        form.push_str(&rest[..open]);
        form.push_str(&format!("{{{name}}}"));
        rest = &rest[close + 1..];
    }
    form.push_str(rest);
    form
}

#[actix_rt::test]
async fn the_document_is_openapi_3_1_json_whose_references_all_resolve() {
    let (_app, document) = spawn_documented().await;
    let version = document["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.1."), "version {version}");
    assert_eq!(document["info"]["title"], "annals");

    let mut found = Vec::new();
    references(&document, &mut found);
    assert!(!found.is_empty());
    for reference in found {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{reference} points outside the schemas"));
        assert!(
            document["components"]["schemas"][name].is_object(),
            "{reference} names no schema"
        );
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["basic"]["type"], "http");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
}

#[actix_rt::test]
async fn every_routed_path_is_documented_and_every_documented_path_is_routed() {
    let (app, document) = spawn_documented().await;
    let documented: BTreeSet<String> = operations(&document)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let routes = routed();
    let routed: BTreeSet<String> = routes.iter().map(|(_, path)| path.clone()).collect();
    assert!(
        routed.contains("/healthz")
            && routed.contains("/api/streams/{stream}")
            && routed.contains("/api/v1/version/")
            && routed.contains("/engines/{name}/status"),
        "the route table misses routes: {routed:?}"
    );
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routed but not documented: {undocumented:?}"
    );
    // `/api/docs/` is Swagger UI's page, a case of `/api/docs/{file}` that the document names
    // on its own.
    let unrouted: Vec<_> = documented
        .difference(&routed)
        .filter(|path| *path != "/api/docs/")
        .collect();
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    // A route for one method is documented for that method; one for any method, for some.
    let undocumented: Vec<_> = routes
        .iter()
        .filter_map(|(method, path)| Some((method.as_ref()?, path)))
        .filter(|(method, path)| !document["paths"][path.as_str()][method.as_str()].is_object())
        .collect();
    assert!(
        undocumented.is_empty(),
        "methods routed but not documented: {undocumented:?}"
    );
    let unrouted: Vec<_> = operations(&document)
        .into_iter()
        .filter(|(path, _)| path != "/api/docs/")
        .filter(|(path, method)| {
            !routes.contains(&(Some(method.clone()), path.clone()))
                && !routes.contains(&(None, path.clone()))
        })
        .collect();
    assert!(
        unrouted.is_empty(),
        "methods documented but not routed: {unrouted:?}"
    );

    for (path, method) in operations(&document) {
        let uri = example_uri(&document, &path, &method);
        let body = example_body(&document, &path, &method);
        let answer = app.send(&method, &uri, body, Some(&app.token)).await;
        // A route may answer 404 to its example when it documents it: its example ids name
        // nothing on a fresh server (a Refstack test run). The router's own 404 is documented
        // nowhere.
        let documents_404 = document["paths"][&path][&method]["responses"]["404"].is_object();
        assert!(
            answer.status != 404 || documents_404,
            "{method} {uri} is not found"
        );
        assert_ne!(answer.status, 405, "{method} {uri} is not allowed");
        check_answer(&document, &path, &method, &answer);
    }
}

#[actix_rt::test]
async fn operation_ids_are_unique() {
    let (_app, document) = spawn_documented().await;
    let mut seen = BTreeSet::new();
    for (path, method) in operations(&document) {
        let id = document["paths"][&path][&method]["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has an operationId"));
        assert!(seen.insert(id.to_owned()), "{id} is used twice");
    }
}

/// How an operation's documented security says it may be called.
#[derive(Debug, PartialEq)]
enum Security {
    /// No security: open to anyone, whatever the configuration.
    Open,
    /// Credentials needed once accounts exist.
    Guarded,
    /// `{}` among the requirements: open unless its face's configuration asks for credentials.
    Optional,
}

fn security(document: &Value, path: &str, method: &str) -> Security {
    let Some(requirements) = document["paths"][path][method]["security"].as_array() else {
        return Security::Open;
    };
    let schemes: BTreeSet<&str> = requirements
        .iter()
        .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
        .collect();
    assert_eq!(
        schemes,
        BTreeSet::from(["basic", "bearer"]),
        "{method} {path}"
    );
    if requirements
        .iter()
        .any(|r| r.as_object().unwrap().is_empty())
    {
        Security::Optional
    } else {
        Security::Guarded
    }
}

/// Checks a refusal for want of credentials: 401, the challenge, the documented body.
fn check_unauthorized(document: &Value, path: &str, method: &str, answer: &Answer) {
    assert_eq!(answer.status, 401, "{method} {path} without credentials");
    assert_eq!(
        answer.www_authenticate.as_deref(),
        Some(r#"Basic realm="annals", Bearer realm="annals""#),
        "{method} {path}"
    );
    let body = check_answer(document, path, method, answer).expect("a JSON error");
    // The event API's body repeats the status code; the scan engine face's `status` is a word.
    if let Some(status) = body.get("status").filter(|status| status.is_number()) {
        assert_eq!(status, 401, "{method} {path}");
    }
}

#[actix_rt::test]
async fn the_documented_security_is_what_the_server_asks_for() {
    // Partisci's default: open to anyone. And the setting that makes it ask for credentials.
    let app = spawn_app().await;
    let strict = spawn_with(|config| {
        config.partisci.auth = Access::Account;
        config.refstack.auth = Access::Account;
        config.patrowl.auth = Access::Account;
    })
    .await;
    let document = app.document().await;
    assert_eq!(
        strict.document().await,
        document,
        "the document is the configuration's"
    );
    let (mut guarded, mut optional) = (0, 0);
    for (path, method) in operations(&document) {
        let uri = example_uri(&document, &path, &method);
        let body = || example_body(&document, &path, &method);
        let without = app.send(&method, &uri, body(), None).await;
        let strict_without = strict.send(&method, &uri, body(), None).await;
        match security(&document, &path, &method) {
            Security::Open => {
                for answer in [&without, &strict_without] {
                    assert_ne!(answer.status, 401, "{path} is documented as open");
                    check_answer(&document, &path, &method, answer);
                }
            }
            Security::Guarded => {
                guarded += 1;
                check_unauthorized(&document, &path, &method, &without);
                check_unauthorized(&document, &path, &method, &strict_without);
            }
            Security::Optional => {
                optional += 1;
                assert_ne!(without.status, 401, "{method} {path} is open by default");
                check_answer(&document, &path, &method, &without);
                check_unauthorized(&document, &path, &method, &strict_without);
                // Any account will do.
                let with = strict
                    .send(&method, &uri, body(), Some(&strict.user_token))
                    .await;
                // Refstack's examples name test runs a fresh server does not have, and the
                // scan engine face's name a scan: the account is let in, and the face answers
                // that the run or scan is unknown (or, for a scan started twice, used).
                let tag = &document["paths"][&path][&method]["tags"][0];
                let unknown = match tag.as_str() {
                    Some("refstack") => matches!(with.status, 400 | 404),
                    Some("patrowl") => matches!(with.status, 404 | 409),
                    _ => false,
                };
                assert!(
                    with.status < 400 || unknown,
                    "{method} {path} with an account: {}",
                    with.status
                );
                check_answer(&document, &path, &method, &with);
            }
        }
    }
    assert_eq!(
        guarded, 28,
        "the event API's eight routes, Partisci's clear, the scan engine face's stop, \
         stopscans, clean and clean/{{id}} under both bases, and the workflow face's eleven \
         are guarded"
    );
    assert_eq!(
        optional, 50,
        "Partisci's other routes ask as `[partisci] auth` says, Refstack's eighteen as \
         `[refstack] auth` says, the scan engine face's other eleven (under both bases) and \
         `/engines` as `[patrowl] auth` says"
    );
}

#[actix_rt::test]
async fn answers_fit_their_documented_schemas() {
    let (app, document) = spawn_documented().await;
    app.append("job-1", "one").await;
    app.append("job-2", "two").await;
    app.append("job-1", "three").await;

    let check = |path: &'static str, uri: &'static str| {
        let (app, document) = (&app, &document);
        async move {
            let answer = app.get(uri, true).await;
            let body = check_answer(document, path, "get", &answer).expect("a JSON body");
            (answer.status, body)
        }
    };
    let (status, page) = check("/api/events", "/api/events?from=0").await;
    assert_eq!((status, page["events"].as_array().unwrap().len()), (200, 3));
    let (_, page) = check("/api/events", "/api/events?category=job&type=LineRecorded").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let (_, page) = check("/api/streams/{stream}", "/api/streams/job-1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let (_, page) = check(
        "/api/streams/{stream}/events",
        "/api/streams/job-1/events?from=1&limit=1",
    )
    .await;
    assert_eq!(page["events"][0]["version"], 2);
    let (_, state) = check("/api/streams/{stream}/state", "/api/streams/job-1/state").await;
    assert_eq!(state["version"], 2);
    check(
        "/api/streams/{stream}/state",
        "/api/streams/job-1/state?at_version=1",
    )
    .await;
    check("/readyz", "/readyz").await;
    let (_, kinds) = check("/api/kinds", "/api/kinds").await;
    assert_eq!(kinds["kinds"][0]["streams"], 2);
    let (_, streams) = check(
        "/api/kinds/{kind}/streams",
        "/api/kinds/job/streams?limit=1",
    )
    .await;
    assert_eq!(
        (&streams["streams"][0]["stream"], &streams["next"]),
        (&"job-1".into(), &3.into())
    );
    let (_, streams) = check(
        "/api/kinds/{kind}/streams",
        "/api/kinds/job/streams?before=3",
    )
    .await;
    assert!(streams["next"].is_null(), "{streams}");
    let mut found = line("found by id");
    found.event_id = uuid::Uuid::now_v7();
    let id = found.event_id;
    app.log
        .append(stream("job-3"), ExpectedVersion::Any, vec![found])
        .await
        .unwrap();
    let answer = app.get(&format!("/api/ids/{id}"), true).await;
    let lookup = check_answer(&document, "/api/ids/{id}", "get", &answer).expect("a JSON body");
    assert_eq!(
        (answer.status, &lookup["matched"]),
        (200, &"event_id".into())
    );

    for (path, uri, expected) in [
        ("/api/events", "/api/events?limit=0", 400),
        ("/api/events", "/api/events?timeout=6m", 400),
        ("/api/streams/{stream}", "/api/streams/nodash", 400),
        (
            "/api/streams/{stream}/state",
            "/api/streams/job-1/state?at_version=1&at_time=2026-11-22T00:00:00Z",
            400,
        ),
        (
            "/api/streams/{stream}/state",
            "/api/streams/nokind-1/state",
            404,
        ),
        ("/api/kinds/{kind}/streams", "/api/kinds/Job/streams", 400),
        ("/api/ids/{id}", "/api/ids/nope", 400),
        (
            "/api/ids/{id}",
            "/api/ids/6f1c3f1e-0000-4000-8000-000000000000",
            404,
        ),
    ] {
        let (status, body) = check(path, uri).await;
        assert_eq!(
            (status, body["status"].as_u64()),
            (expected, Some(u64::from(expected))),
            "{uri}"
        );
    }

    // Every report of a verification fits, running or done.
    let mut report = check("/api/verify", "/api/verify").await.1;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while report["status"] == "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the verification ends"
        );
        report = check("/api/verify", "/api/verify").await.1;
    }
    assert_eq!(report["status"], "ok");
}

/// Sends a request and checks its answer against the operation `method path`. Returns the
/// status and the JSON body (`null` when there is none).
async fn checked(
    app: &TestApp,
    document: &Value,
    (method, path): (&str, &str),
    uri: &str,
    body: impl Into<Vec<u8>>,
    token: Option<&str>,
) -> (u16, Value) {
    let answer = app.send(method, uri, body.into(), token).await;
    let body = check_answer(document, path, method, &answer).unwrap_or(Value::Null);
    (answer.status, body)
}

#[actix_rt::test]
async fn partisci_answers_fit_their_documented_schemas() {
    let (app, document) = spawn_documented().await;
    let update = ("post", "/api/v1/update/");
    let clear = ("post", "/api/v1/_danger/clear/");
    let versions = ("get", "/api/v1/version/");
    for host in ["web1", "web2"] {
        let report = json!({"app": "Demo App", "ver": "1.1", "host": host, "instance": 1});
        let answer = checked(&app, &document, update, update.1, report.to_string(), None).await;
        assert_eq!(answer, (200, Value::Null), "{report}");
    }
    for (path, rows) in [
        ("/api/v1/app/", 1),
        ("/api/v1/summary/app/", 1),
        ("/api/v1/host/", 2),
        ("/api/v1/summary/host/", 2),
        ("/api/v1/summary/hosts/", 2),
        ("/api/v1/version/", 2),
    ] {
        let (status, body) = checked(&app, &document, ("get", path), path, "", None).await;
        assert_eq!(
            (status, body["data"].as_array().map(Vec::len)),
            (200, Some(rows)),
            "{path}: {body}"
        );
    }
    let (_, body) = checked(
        &app,
        &document,
        versions,
        "/api/v1/version/?app_id=demo_app&host=web2&ver=1.1",
        "",
        None,
    )
    .await;
    assert_eq!(body["data"][0]["host_ip"], "127.0.0.1", "{body}");
    for path in ["/debug/vars", "/api/v1/_partisci/"] {
        let (status, body) = checked(&app, &document, ("get", path), path, "", None).await;
        assert_eq!(
            (status, &body["versions"], &body["danger"]),
            (200, &json!(2), &json!(true))
        );
    }

    // Every documented refusal, in the documented body.
    let big = format!(
        r#"{{"app":"a","ver":"1","pad":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    for (operation, uri, body, expected) in [
        (update, update.1, r#"{"ver":"1"}"#.to_owned(), 415),
        (update, update.1, "not json".to_owned(), 415),
        (update, update.1, big, 413),
    ] {
        let (status, body) = checked(&app, &document, operation, uri, body, None).await;
        assert_eq!(status, expected, "{uri}: {body}");
    }
    let user = Some(app.user_token.as_str());
    let (status, body) = checked(&app, &document, clear, clear.1, "", user).await;
    assert_eq!(status, 403, "clearing needs an admin: {body}");
    let admin = Some(app.token.as_str());
    let answer = checked(&app, &document, clear, clear.1, "", admin).await;
    assert_eq!(answer, (200, Value::Null));
    let (_, body) = checked(&app, &document, versions, versions.1, "", None).await;
    assert_eq!(body, json!({"data": []}));
    let off = spawn_with(|config| config.partisci.danger = false).await;
    let off_admin = Some(off.token.as_str());
    let (status, body) = checked(&off, &document, clear, clear.1, "", off_admin).await;
    assert_eq!(status, 403, "clearing needs danger mode: {body}");
    common::app::assert_says(&body, "/error", "danger = true");

    // Every route that documents 405 answers it to another method.
    let mut refused = 0;
    for (path, method) in operations(&document) {
        if document["paths"][&path][&method]["responses"]["405"].is_null() {
            continue;
        }
        refused += 1;
        // A method the path does not take (a path may take both GET and POST).
        let item = document["paths"][&path].as_object().unwrap();
        let other = ["post", "get", "delete"]
            .into_iter()
            .find(|other| !item.contains_key(*other))
            .unwrap();
        let answer = app.send(other, &path, Vec::new(), admin).await;
        assert_eq!(answer.status, 405, "{other} {path}");
        check_answer(&document, &path, &method, &answer);
    }
    assert_eq!(
        refused, 92,
        "every Partisci route (10), Refstack route (18), scan engine route (16, under both \
         bases, and `/engines`), workflow route (11), event API route (8), operational route (3), \
         documentation route (4), the home page, the three GROS scripts that take POST only and \
         GROS's `/agents` document 405"
    );

    // A path under /api/v1/ that is no route is the face's 404, as the face's tag says.
    let tag = document["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|tag| tag["name"] == "partisci")
        .expect("the face's tag");
    common::app::assert_says(tag, "/description", "404");
    for uri in ["/api/v1/nothing/", "/api/v1/version"] {
        let answer = app.get(uri, false).await;
        assert_eq!(answer.status, 404, "{uri}");
        let schema = json!({ "$ref": "#/components/schemas/PartisciErrorBody" });
        conforms(&document, &schema, &answer.json(), "body").unwrap();
    }
}

#[actix_rt::test]
async fn the_faces_own_listener_serves_the_faces_documented_routes() {
    let (app, document) = spawn_documented().await;
    let mut served = 0;
    for (path, method) in operations(&document) {
        let operation = &document["paths"][&path][&method];
        let partisci = operation["tags"][0] == "partisci";
        if method != "get" {
            continue;
        }
        let uri = example_uri(&document, &path, &method);
        let answer = app
            .send_at(&app.partisci, "get", &uri, Vec::new(), None)
            .await;
        if partisci {
            served += 1;
            assert_eq!(answer.status, 200, "{uri} on the face's own listener");
            check_answer(&document, &path, &method, &answer);
        } else {
            assert_eq!(answer.status, 404, "{uri} is not the face's");
        }
    }
    assert_eq!(served, 8);
    common::app::assert_says(&document, "/info/description", "[partisci] listen");
}

#[actix_rt::test]
async fn the_documented_event_streams_are_served() {
    let (app, document) = spawn_documented().await;
    app.append("job-1", "one").await;
    let mut streamed = 0;
    for (path, method) in operations(&document) {
        let operation = &document["paths"][&path][&method];
        if operation["responses"]["200"]["content"]["text/event-stream"].is_null() {
            continue;
        }
        // An execution's events need an execution, which a fresh server has none of:
        // tests/hpcwaas.rs follows one.
        if operation["tags"][0] == "hpcwaas" {
            continue;
        }
        streamed += 1;
        let uri = example_uri(&document, &path, &method);
        let mut response = app
            .client
            .get(format!("{}{uri}", app.address))
            .bearer_auth(&app.token)
            .insert_header(("Accept", "text/event-stream"))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), 200, "{uri}");
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        // The first frame is the event already in the log; its data is a documented event.
        let mut frames = String::new();
        while !frames.contains("\n\n") {
            let chunk = response
                .next()
                .await
                .expect("the stream goes on")
                .expect("a chunk");
            frames.push_str(std::str::from_utf8(&chunk).expect("UTF-8 frames"));
        }
        let data = frames
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .expect("a data line");
        let event: Value = serde_json::from_str(data).expect("JSON data");
        let schema = serde_json::json!({ "$ref": "#/components/schemas/Event" });
        conforms(&document, &schema, &event, "data").unwrap();
    }
    assert_eq!(streamed, 2, "both follow routes stream events");
}

#[actix_rt::test]
async fn swagger_ui_is_served_whole_by_the_server() {
    let app = spawn_app().await;
    let redirect = app.get("/api/docs", false).await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.location.as_deref(), Some("/api/docs/"));

    let page = app.get("/api/docs/", false).await;
    assert_eq!(page.status, 200);
    assert_eq!(essence(&page.content_type), "text/html");
    let html = page.text();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    // Every `src=` and `href=` of the page: scripts, stylesheets and icons.
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for (start, _) in html.match_indices(attribute) {
            let value = &html[start + attribute.len()..];
            assets.push(value[..value.find('"').expect("a closing quote")].to_owned());
        }
    }
    let scripts = assets.iter().filter(|a| a.ends_with(".js")).count();
    let stylesheets = assets.iter().filter(|a| a.ends_with(".css")).count();
    assert!(scripts >= 2 && stylesheets >= 1, "{assets:?}");
    for asset in &assets {
        assert!(
            !asset.contains("//") && !asset.starts_with('/'),
            "{asset} is not relative to the page"
        );
        let uri = format!("/api/docs/{}", asset.trim_start_matches("./"));
        let answer = app.get(&uri, false).await;
        assert_eq!(answer.status, 200, "{uri}");
        assert!(!answer.body.is_empty(), "{uri}");
        let expected = match asset.rsplit('.').next() {
            Some("js") => "text/javascript",
            Some("css") => "text/css",
            Some("png") => "image/png",
            _ => panic!("an asset of an unexpected kind: {asset}"),
        };
        assert_eq!(essence(&answer.content_type), expected, "{uri}");
    }

    // The page loads the document from this server and sends it to no outside validator.
    let initializer = app
        .get("/api/docs/swagger-initializer.js", false)
        .await
        .text();
    assert!(
        initializer.contains(r#""url": "/api/openapi.json""#),
        "{initializer}"
    );
    assert!(
        initializer.contains(r#""validatorUrl": "none""#),
        "{initializer}"
    );
}

#[actix_rt::test]
async fn patrowl_answers_fit_their_documented_schemas() {
    let (app, document) = spawn_documented().await;
    let admin = Some(app.token.as_str());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = json!({"assets": [{"id": "a", "value": "127.0.0.1", "datatype": "ip"}],
        "options": json!({"ports": [port.to_string()]}).to_string(), "scan_id": "s1"});
    let start = ("post", "/engines/{name}/startscan");
    let start_s1 = async |token| {
        checked(
            &app,
            &document,
            start,
            "/engines/tcp/startscan",
            body.to_string(),
            token,
        )
        .await
    };
    let (status, answer) = start_s1(None).await;
    assert_eq!(status, 200, "{answer}");
    let scan_status = ("get", "/engines/{name}/status/{scan_id}");
    common::poll_async(Duration::from_secs(60), "the scan to end", || async {
        let (_, body) = checked(
            &app,
            &document,
            scan_status,
            "/engines/tcp/status/s1",
            "",
            None,
        )
        .await;
        (body["status"] == "FINISHED").then_some(())
    })
    .await;
    for (path, uri) in [
        ("/engines/{name}/status", "/engines/tcp/status"),
        (
            "/engines/{name}/getfindings/{scan_id}",
            "/engines/tcp/getfindings/s1",
        ),
        (
            "/engine/{name}/getfindings/{scan_id}",
            "/engine/tcp/getfindings/s1",
        ),
        ("/engines/{name}/info", "/engines/tcp/info"),
    ] {
        let (status, body) = checked(&app, &document, ("get", path), uri, "", None).await;
        assert_eq!(status, 200, "{uri}: {body}");
    }
    // Until its report is fetched, an ended scan keeps its id.
    let (status, answer) = start_s1(admin).await;
    assert_eq!(status, 409, "{answer}");
    let report = app
        .send("get", "/engines/tcp/getreport/s1", Vec::new(), None)
        .await;
    check_answer(
        &document,
        "/engines/{name}/getreport/{scan_id}",
        "get",
        &report,
    );
    assert_eq!(report.content_type, "application/zip");
    for (operation, uri, body, expected) in [
        (start, "/engines/tcp/startscan", "{".to_owned(), 400),
        (
            start,
            "/engines/tcp/startscan",
            json!({"scan_id": 2}).to_string(),
            400,
        ),
        (
            ("get", "/engines/{name}/stop/{scan_id}"),
            "/engines/tcp/stop/s1",
            String::new(),
            200,
        ),
        (
            ("get", "/engines/{name}/stop/{scan_id}"),
            "/engines/tcp/stop/nope",
            String::new(),
            404,
        ),
        (
            ("get", "/engines/{name}/clean/{scan_id}"),
            "/engines/tcp/clean/s1",
            String::new(),
            200,
        ),
        (scan_status, "/engines/tcp/status/s1", String::new(), 404),
        (
            ("get", "/engines/{name}/"),
            "/engines/openvas/",
            String::new(),
            404,
        ),
    ] {
        let (status, body) = checked(&app, &document, operation, uri, body, admin).await;
        assert_eq!(status, expected, "{uri}: {body}");
    }
    drop(listener);
}

#[actix_rt::test]
async fn hpcwaas_answers_fit_their_documented_schemas() {
    use annals::domain::workflow::catalogue::{InputSpec, OutputSpec, StepSpec};
    use annals::domain::workflow::WorkflowSpec;
    let app = spawn_with(|config| {
        config.hpcwaas.workflows = vec![WorkflowSpec {
            application_id: "demo".into(),
            environment_id: "lab".into(),
            environment_name: "The lab".into(),
            name: "hello".into(),
            inputs: vec![InputSpec {
                name: "who".into(),
                ..InputSpec::default()
            }],
            outputs: vec![OutputSpec {
                name: "said".into(),
                description: String::new(),
            }],
            steps: vec![StepSpec {
                command: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "echo hi; echo \"said=hi\" >> \"$ANNALS_OUTPUTS\"".into(),
                ],
                ..StepSpec::default()
            }],
            ..WorkflowSpec::default()
        }];
    })
    .await;
    let document = app.document().await;
    let admin = Some(app.token.as_str());
    let ask = |(method, path): (&'static str, &'static str), uri: String, body: &'static str| {
        let (app, document) = (&app, &document);
        async move { checked(app, document, (method, path), &uri, body, admin).await }
    };
    let (status, body) = ask(("get", "/workflows"), "/workflows".into(), "").await;
    assert_eq!(
        (status, body["workflows"][0]["id"].clone()),
        (200, json!("demo@lab@hello"))
    );
    let (status, _) = ask(
        ("get", "/workflows/{workflow_id}"),
        "/workflows/demo@lab@hello".into(),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let answer = app
        .send("post", "/workflows/demo@lab@hello", b"{}".to_vec(), admin)
        .await;
    check_answer(&document, "/workflows/{workflow_id}", "post", &answer);
    let id = answer
        .location
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let logs = format!("/executions/{id}/logs?timeout=30s");
    let (status, body) = ask(("get", "/executions/{execution_id}/logs"), logs, "").await;
    assert_eq!(
        (status, body["logs"][0]["content"].clone()),
        (200, json!("hi"))
    );
    let mut execution = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while execution["status"] != "SUCCESS" {
        assert!(std::time::Instant::now() < deadline, "the execution ends");
        let uri = format!("/executions/{id}");
        execution = ask(("get", "/executions/{execution_id}"), uri, "").await.1;
    }
    let (_, list) = ask(
        ("get", "/executions"),
        "/executions?status=SUCCESS".into(),
        "",
    )
    .await;
    assert_eq!(list["total_results"], 1);
    let uri = format!("/executions/{id}");
    let (status, _) = ask(("delete", "/executions/{execution_id}"), uri, "").await;
    assert_eq!(status, 202);
    let (status, key) = ask(
        ("post", "/ssh_keys"),
        "/ssh_keys".into(),
        r#"{"type":"ed25519"}"#,
    )
    .await;
    assert_eq!(status, 201);
    let uri = format!("/ssh_keys/{}", key["id"].as_str().unwrap());
    let (status, _) = ask(("get", "/ssh_keys/{key_id}"), uri.clone(), "").await;
    assert_eq!(status, 200);
    let (status, _) = ask(("delete", "/ssh_keys/{key_id}"), uri, "").await;
    assert_eq!(status, 204);
    for (route, uri) in [
        (
            ("get", "/executions/{execution_id}/logs"),
            format!("/executions/{id}/logs?levels=x"),
        ),
        (("get", "/executions"), "/executions?size=0".into()),
        (("post", "/ssh_keys"), "/ssh_keys".into()),
    ] {
        let body = if route.0 == "post" {
            r#"{"type":"dsa"}"#
        } else {
            ""
        };
        let (status, body) = ask(route, uri, body).await;
        assert_eq!(
            (status, body["errors"][0]["status"].clone()),
            (400, json!(400))
        );
    }
}

#[actix_rt::test]
async fn head_answers_every_documented_get_route_as_get_without_its_body() {
    let (app, document) = spawn_documented().await;
    let mut checked = 0;
    for (path, method) in operations(&document) {
        if method != "get" {
            continue;
        }
        let uri = example_uri(&document, &path, &method);
        let get = app.get(&uri, true).await;
        let head = app.send("head", &uri, Vec::new(), Some(&app.token)).await;
        assert_eq!(head.status, get.status, "HEAD {uri}");
        assert_eq!(head.content_type, get.content_type, "HEAD {uri}");
        assert!(head.body.is_empty(), "HEAD {uri} has a body");
        checked += 1;
    }
    assert!(checked > 30, "{checked} GET routes");
    // On a face's own listener too.
    let head = app
        .send_at(&app.partisci, "head", "/api/v1/version/", Vec::new(), None)
        .await;
    assert_eq!((head.status, head.body.len()), (200, 0));
}

/// Reads the `Content-Length` the server announces for `method path` on the listener at
/// `base`, over a raw connection: the header as sent, and the bytes after the headers.
async fn raw_length(base: &str, method: &str, path: &str) -> (Option<usize>, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers");
    let length = head
        .lines()
        .find_map(|line| {
            line.to_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .map(|length| length.trim().parse().unwrap());
    (length, body.len())
}

#[actix_rt::test]
async fn head_keeps_the_content_length_of_get() {
    let app = spawn_app().await;
    for (base, path) in [
        (&app.address, "/healthz"),
        (&app.address, "/api/openapi.json"),
        (&app.address, "/api/v1/version/"),
        (&app.address, "/metrics"),
        (&app.partisci, "/api/v1/version/"),
    ] {
        let (get_length, get_body) = raw_length(base, "GET", path).await;
        let (head_length, head_body) = raw_length(base, "HEAD", path).await;
        assert_eq!(get_length, Some(get_body), "GET {path}");
        assert_eq!(head_body, 0, "HEAD {path} has a body");
        // `/metrics` counts the GET itself in between.
        if path != "/metrics" {
            assert_eq!(head_length, get_length, "HEAD {path}");
        } else {
            assert!(head_length.is_some_and(|length| length > 0), "HEAD {path}");
        }
    }
}

/// The routes that keep upstream's answer to a method they do not document: the GROS
/// controller's scripts that only read and the agent daemon's `/status` answer any method,
/// `status.py` answers 501 and the daemon's `/scrape` 400.
const UPSTREAM_METHODS: [(&str, Option<u16>); 6] = [
    ("/auth/access.py", None),
    ("/auth/encrypt.py", None),
    ("/auth/version.py", None),
    ("/agents/{project}/{agent}/status", None),
    ("/auth/status.py", Some(501)),
    ("/agents/{project}/{agent}/scrape", Some(400)),
];

#[actix_rt::test]
async fn a_method_a_path_does_not_take_is_405_with_allow_in_the_faces_shape() {
    let (app, document) = spawn_documented().await;
    let admin = Some(app.token.as_str());
    let mut refused = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        let documented: BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .filter(|method| METHODS.contains(&method.as_str()))
            .map(|method| method.to_uppercase())
            .collect();
        let upstream = UPSTREAM_METHODS.iter().find(|(p, _)| p == path);
        for method in ["trace", "query", "options", "put", "patch"] {
            if documented.contains(&method.to_uppercase()) {
                continue;
            }
            let answer = app.send(method, path, Vec::new(), admin).await;
            if let Some((_, status)) = upstream {
                assert_ne!(
                    answer.status, 405,
                    "{method} {path} keeps upstream's answer"
                );
                if let Some(status) = status {
                    if path.starts_with("/auth") {
                        assert_eq!(answer.status, *status, "{method} {path}");
                    }
                }
                continue;
            }
            assert_eq!(answer.status, 405, "{method} {path}: {}", answer.text());
            let mut allow: BTreeSet<String> = answer
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: an Allow header"))
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert!(
                !documented.contains("GET") || allow.remove("HEAD"),
                "{method} {path}: HEAD beside GET"
            );
            assert_eq!(allow, documented, "{method} {path}");
            // The 405 is documented on every operation of the path, in the face's shape.
            for documented in &documented {
                check_answer(&document, path, &documented.to_lowercase(), &answer);
            }
            refused += 1;
        }
    }
    assert!(refused > 400, "{refused}");
}

/// The schema of the error body each tag's routes answer with on the main listener; `None`
/// for the GROS controller's plain text.
fn error_schema(tag: &str, path: &str) -> Option<&'static str> {
    match tag {
        "partisci" => Some("PartisciErrorBody"),
        "refstack" => Some("RefstackErrorBody"),
        "patrowl" => Some("PatrowlErrorBody"),
        "hpcwaas" => Some("HpcwaasErrorBody"),
        "gros" if path.starts_with("/agents") => Some("GrosAgentErrorBody"),
        "gros" => None,
        _ => Some("ErrorBody"),
    }
}

fn check_not_found(document: &Value, schema: Option<&str>, uri: &str, answer: &Answer) {
    assert_eq!(answer.status, 404, "{uri}");
    match schema {
        Some(name) => {
            let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
            if let Err(problem) = conforms(document, &schema, &answer.json(), "body") {
                panic!("{uri}: not a {name}: {problem}: {}", answer.text());
            }
        }
        None => {
            assert_eq!(essence(&answer.content_type), "text/plain", "{uri}");
            assert!(answer.text().contains(uri), "{uri}: {}", answer.text());
        }
    }
}

#[actix_rt::test]
async fn unmatched_paths_answer_404_in_the_shape_of_the_face_they_are_under() {
    let (app, document) = spawn_documented().await;
    let mut seen = BTreeSet::new();
    for (path, method) in operations(&document) {
        // Swagger UI serves any file name under its prefix.
        if path.starts_with("/api/docs") {
            continue;
        }
        let tag = document["paths"][&path][&method]["tags"][0]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let uri = format!(
            "{}/no-such/route",
            example_uri(&document, &path, &method).trim_end_matches('/')
        );
        for method in ["get", "post"] {
            let answer = app.send(method, &uri, Vec::new(), Some(&app.token)).await;
            check_not_found(&document, error_schema(&tag, &path), &uri, &answer);
        }
        seen.insert(tag);
    }
    assert_eq!(seen.len(), 8, "every tag: {seen:?}");
    for (uri, tag) in [
        ("/no-such-route", "events"),
        ("/engines/", "patrowl"),
        ("/engine/", "patrowl"),
        ("/v1", "refstack"),
        ("/get-miniconfs", "events"),
        ("/debug/pprof", "partisci"),
        ("/ssh_keys/a/b", "hpcwaas"),
        ("/auth/nothing.py", "gros"),
        ("/agents/", "gros"),
    ] {
        let answer = app.get(uri, true).await;
        check_not_found(&document, error_schema(tag, uri), uri, &answer);
    }

    // A face's own listener answers every path it does not serve in the face's shape.
    for (base, tag) in [
        (&app.partisci, "partisci"),
        (&app.patrowl, "patrowl"),
        (&app.hpcwaas, "hpcwaas"),
    ] {
        for uri in [
            "/",
            "/no-such-route",
            "/api/events",
            "/v1/results",
            "/healthz",
        ] {
            let answer = app
                .send_at(base, "get", uri, Vec::new(), Some(&app.token))
                .await;
            check_not_found(&document, error_schema(tag, uri), uri, &answer);
        }
    }
}

#[actix_rt::test]
async fn the_document_is_gzipped_for_clients_that_accept_it() {
    use std::io::Read;
    let app = spawn_app().await;
    let plain = app.document().await;
    let mut response = app
        .client
        .get(format!("{}/api/openapi.json", app.address))
        .insert_header(("Accept-Encoding", "gzip"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-encoding").unwrap(), "gzip");
    let compressed = response.body().limit(64 << 20).await.unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut json)
        .expect("a gzip body");
    assert!(compressed.len() * 4 < json.len(), "gzip compresses it");
    assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), plain);
}

#[actix_rt::test]
async fn refstack_upload_tests_fit_their_documented_schema() {
    let (app, document) = spawn_documented().await;
    let parsed = json!({"summary": {"PASS": 1, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": 1},
        "data": {"tempest.api.x.Y": [["test_z", "PASS", 0.5]]}});
    let (status, uploaded) = checked(
        &app,
        &document,
        ("post", "/v1/post-result"),
        "/v1/post-result",
        parsed.to_string(),
        Some(&app.token),
    )
    .await;
    assert_eq!(status, 201, "{uploaded}");
    let path = "/v1/test-runs/{test_id}/uploads/{upload_id}/tests";
    let uri = format!(
        "/v1/test-runs/{}/uploads/{}/tests",
        uploaded["test_id"].as_str().unwrap(),
        uploaded["upload_id"].as_str().unwrap()
    );
    let (status, tests) = checked(&app, &document, ("get", path), &uri, "", Some(&app.token)).await;
    assert_eq!(
        (status, &tests["tests"][0]["outcome"]),
        (200, &json!("success"))
    );
    let missing = uri.replace(
        uploaded["upload_id"].as_str().unwrap(),
        &uuid::Uuid::nil().to_string(),
    );
    let (status, _) = checked(
        &app,
        &document,
        ("get", path),
        &missing,
        "",
        Some(&app.token),
    )
    .await;
    assert_eq!(status, 404);
}
