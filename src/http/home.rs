//! The main listener's home page (`GET /`): links to the documentation and, for the address
//! refstack-client prints after an upload (`/#/results/<id>`), that submission, fetched by a few
//! lines of plain script from `GET /v1/results/<id>`. It holds no data itself and is open like
//! the documentation; the script's request is authorized as any other request to the face.
//! A stand-in until a console exists: it must stay small, with nothing loaded from outside.

use std::sync::LazyLock;

use super::openapi::RefusesOtherMethods;
use actix_web::http::header;
use actix_web::HttpResponse;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The page's only script: shows the submission the fragment names, if any. Every value is
/// written with `textContent`, never as markup: a cloud id or a test name is the uploader's
/// text.
pub const SCRIPT: &str = r#"
(function () {
  var out = document.getElementById("result");
  function line(parent, tag, text) {
    var node = document.createElement(tag);
    node.textContent = text;
    parent.appendChild(node);
    return node;
  }
  function render(id, ok, body) {
    out.textContent = "";
    if (!ok) {
      line(out, "p", "Result " + id + ": " + (body && body.title ? body.title : "not found"));
      return;
    }
    line(out, "h2", "Result " + body.id);
    var facts = line(out, "dl", "");
    [["Cloud (cpid)", body.cpid], ["Uploaded (UTC)", body.created_at],
     ["Duration (s)", body.duration_seconds],
     ["Signed by", body.meta && body.meta.public_key ? body.meta.public_key : "not signed"]]
      .forEach(function (fact) {
        line(facts, "dt", fact[0]);
        line(facts, "dd", String(fact[1]));
      });
    var tests = body.results || [];
    line(out, "h3", tests.length + " passing tests");
    var list = line(out, "ul", "");
    tests.forEach(function (name) { line(list, "li", name); });
  }
  function show() {
    var match = /^#\/results\/([0-9A-Za-z-]+)$/.exec(window.location.hash);
    out.hidden = !match;
    out.textContent = "";
    if (!match) { return; }
    var id = match[1];
    line(out, "p", "Reading result " + id + "…");
    fetch("/v1/results/" + id, { headers: { Accept: "application/json" } })
      .then(function (answer) {
        return answer.json().then(function (body) { render(id, answer.ok, body); });
      })
      .catch(function (error) {
        out.textContent = "";
        line(out, "p", "Result " + id + " could not be read: " + error);
      });
  }
  window.addEventListener("hashchange", show);
  show();
})();
"#;

/// The page around [`SCRIPT`].
static PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>annals</title>
<style>body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }} dt {{ font-weight: bold; }}</style>
</head>
<body>
<h1>annals</h1>
<p>Every route this server serves is described in <a href="/api/docs/">the API documentation</a>
(<a href="/api/openapi.json">OpenAPI document</a>).</p>
<section id="result" hidden></section>
<script>{SCRIPT}</script>
</body>
</html>
"#
    )
});

/// The page's content security policy: its own inline script (by hash) and style, requests
/// to this server only, nothing else.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
});

/// The home page.
#[utoipa::path(get, path = "/", tag = "documentation", operation_id = "home",
    summary = "The home page",
    description = "Links to the API documentation; for `/#/results/<id>`, the address \
        refstack-client prints after an upload, it shows that submission, read by its script \
        from `GET /v1/results/{id}`.",
    responses((status = 200, description = "The page.", body = String,
        content_type = "text/html")))]
pub async fn home() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY.as_str()))
        .body(PAGE.as_str())
}

/// The home page's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(home), modifiers(&RefusesOtherMethods))]
pub struct HomeApi;
