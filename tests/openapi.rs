//! The OpenAPI document and Swagger UI against the real server on port 0, with accounts on:
//! every routed path is documented and every documented one is routed, every answer has a
//! documented status and a body that fits its documented schema, the documented security is
//! the real one, and Swagger UI comes whole from the server, with nothing from outside.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use annals::auth::{new_token, Access, Account, Auth, Role};
use annals::events::ExpectedVersion;
use annals::http::{Guard, HttpState};
use common::{fast, line, stream, TempLog};
use futures_util::StreamExt;
use serde_json::Value;

struct TestApp {
    address: String,
    client: awc::Client,
    /// A bearer token of an admin account.
    token: String,
    t: TempLog,
}

/// Starts the real server on a free port over a new log, with one admin account.
fn spawn_app() -> TestApp {
    let t = TempLog::with(fast());
    let (token, token_hash) = new_token();
    let auth = Auth::new(vec![Account {
        name: "ops".into(),
        password_hash: None,
        token_sha256: vec![token_hash],
        roles: vec![Role::Admin],
    }])
    .unwrap();
    let state = HttpState {
        log: t.log.clone(),
        guard: Guard {
            auth: Arc::new(auth),
            api: Access::Admin,
        },
        faces: Default::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    actix_rt::spawn(annals::http::server(listener, state, None).unwrap());
    // Redirects are answers to check, not to follow.
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(60))
        .finish();
    TestApp {
        address,
        client,
        token,
        t,
    }
}

/// One answer of the server.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    location: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "a JSON body: {e}: {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

impl TestApp {
    async fn get(&self, uri: &str, with_token: bool) -> Answer {
        let mut request = self.client.get(format!("{}{uri}", self.address));
        if with_token {
            request = request.bearer_auth(&self.token);
        }
        let mut response = request.send().await.expect("the server answers");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("an ASCII header").to_owned())
        };
        let content_type = header("content-type").unwrap_or_default();
        let location = header("location");
        let body = response
            .body()
            .limit(64 << 20)
            .await
            .expect("a whole body")
            .to_vec();
        Answer {
            status: response.status().as_u16(),
            content_type,
            body,
            location,
        }
    }

    async fn document(&self) -> Value {
        let answer = self.get("/api/openapi.json", false).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content_type, "application/json");
        answer.json()
    }

    async fn append(&self, stream_name: &str, text: &str) -> u64 {
        self.t
            .log
            .append(stream(stream_name), ExpectedVersion::Any, vec![line(text)])
            .await
            .unwrap()
            .first_position
    }
}

/// The `(path, method)` of every operation the document describes.
fn operations(document: &Value) -> Vec<(String, String)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            operations.push((path.clone(), method.clone()));
        }
    }
    operations
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

/// Checks an answer to `GET path` against the document: its status is one the operation
/// lists, its content type one that response lists, and a JSON body fits the schema. Returns
/// the JSON body, if any.
fn check_answer(document: &Value, path: &str, answer: &Answer) -> Option<Value> {
    let operation = &document["paths"][path]["get"];
    let response = &operation["responses"][answer.status.to_string()];
    assert!(
        response.is_object(),
        "GET {path} answered {}, which its operation does not list: {}",
        answer.status,
        String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
    );
    // A response without content (a redirect, Swagger UI's files) has nothing more to check.
    let content = response["content"].as_object()?;
    let (_, media) = content
        .iter()
        .find(|(documented, _)| essence(documented) == essence(&answer.content_type))
        .unwrap_or_else(|| {
            panic!(
                "GET {path} answered {} as {:?}, not a documented content type",
                answer.status, answer.content_type
            )
        });
    if essence(&answer.content_type) != "application/json" {
        return None;
    }
    let body = answer.json();
    if let Err(problem) = conforms(document, &media["schema"], &body, "body") {
        panic!("GET {path} ({}): {problem}\n{body:#}", answer.status);
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

/// Every route pattern the server's router holds, in OpenAPI's form (`{name}` for each
/// variable segment, whatever its regex). actix-web has no public way to list its routes, but
/// its `ResourceMap`'s debug form names each resource's pattern, nested under the scopes that
/// prefix it; this reads the patterns from there, so that a route added anywhere is seen.
async fn routed_paths() -> BTreeSet<String> {
    let app =
        actix_web::test::init_service(actix_web::App::new().configure(annals::http::routes)).await;
    let request = actix_web::test::TestRequest::get()
        .uri("/healthz")
        .to_request();
    let response = actix_web::test::call_service(&app, request).await;
    let map = format!("{:#?}", response.request().resource_map());

    let mut routed = BTreeSet::new();
    // The prefixes of the scopes around the current line, with the indentation of each.
    let mut scopes: Vec<(usize, String)> = Vec::new();
    let mut lines = map.lines();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let line = line.trim();
        // Named resources are listed again in their parents' `named` maps: skip those copies.
        if line == "named: {" {
            for inner in lines.by_ref() {
                if inner.len() - inner.trim_start().len() == indent && inner.trim() == "}," {
                    break;
                }
            }
            continue;
        }
        if line.starts_with("patterns: List(") {
            panic!("a resource with several patterns: teach routed_paths to read them");
        }
        if line != "patterns: Single(" {
            continue;
        }
        let pattern = lines.next().expect("a pattern").trim();
        let pattern: String = serde_json::from_str(pattern.trim_end_matches(','))
            .expect("a pattern is a debug-quoted string");
        let is_prefix = lines
            .by_ref()
            .map(str::trim)
            .find(|line| line.starts_with("is_prefix: "))
            .expect("is_prefix follows the pattern")
            == "is_prefix: true,";
        scopes.retain(|(scope_indent, _)| *scope_indent < indent);
        let full: String = scopes
            .iter()
            .map(|(_, prefix)| prefix.as_str())
            .chain([pattern.as_str()])
            .collect();
        if is_prefix {
            scopes.push((indent, pattern));
        } else {
            routed.insert(openapi_form(&full));
        }
    }
    assert!(
        routed.contains("/healthz") && routed.contains("/api/streams/{stream}"),
        "the router's debug form changed: {routed:?}"
    );
    routed
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
    let app = spawn_app();
    let document = app.document().await;
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
    let app = spawn_app();
    let document = app.document().await;
    let documented: BTreeSet<String> = operations(&document)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let routed = routed_paths().await;
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

    for (path, method) in operations(&document) {
        assert_eq!(method, "get", "{path}: teach this test to send {method}");
        let uri = example_uri(&document, &path, &method);
        let answer = app.get(&uri, true).await;
        assert_ne!(answer.status, 404, "GET {uri} is not found");
        check_answer(&document, &path, &answer);
    }
}

#[actix_rt::test]
async fn the_documented_security_is_what_the_server_asks_for() {
    let app = spawn_app();
    let document = app.document().await;
    let mut guarded = 0;
    for (path, method) in operations(&document) {
        let operation = &document["paths"][&path][&method];
        let uri = example_uri(&document, &path, &method);
        let without = app.get(&uri, false).await;
        match operation["security"].as_array() {
            Some(requirements) => {
                guarded += 1;
                let schemes: BTreeSet<&str> = requirements
                    .iter()
                    .flat_map(|r| r.as_object().unwrap().keys().map(String::as_str))
                    .collect();
                assert_eq!(schemes, BTreeSet::from(["basic", "bearer"]), "{path}");
                assert_eq!(without.status, 401, "GET {uri} without credentials");
                let body = check_answer(&document, &path, &without).expect("a JSON error");
                assert_eq!(body["status"], 401);
            }
            None => {
                assert_ne!(without.status, 401, "{path} is documented as open");
                check_answer(&document, &path, &without);
            }
        }
    }
    assert_eq!(guarded, 5, "the event API's five routes are guarded");
}

#[actix_rt::test]
async fn answers_fit_their_documented_schemas() {
    let app = spawn_app();
    let document = app.document().await;
    app.append("job-1", "one").await;
    app.append("job-2", "two").await;
    app.append("job-1", "three").await;

    let check = |path: &'static str, uri: &'static str| {
        let (app, document) = (&app, &document);
        async move {
            let answer = app.get(uri, true).await;
            let body = check_answer(document, path, &answer).expect("a JSON body");
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

#[actix_rt::test]
async fn the_documented_event_streams_are_served() {
    let app = spawn_app();
    let document = app.document().await;
    app.append("job-1", "one").await;
    let mut streamed = 0;
    for (path, method) in operations(&document) {
        let operation = &document["paths"][&path][&method];
        if operation["responses"]["200"]["content"]["text/event-stream"].is_null() {
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
    let app = spawn_app();
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
