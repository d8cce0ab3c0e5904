//! The web console at `/` on the main listener: one page compiled into the binary (markup,
//! style and one plain script, no build step, nothing loaded from outside) that reads the
//! event API and the faces' own routes with the browser's credentials, so it sees exactly
//! what the caller's account may see. It holds no data and reads no storage: the page is
//! open like the documentation, every request its script sends is authorized as any other.
//! Pages are hash routes (`/#/streams/<stream>`, `/#/results/<id>` as refstack-client prints
//! it), so every view has a stable URL while the server serves one document.

use std::sync::LazyLock;

use super::openapi::RefusesOtherMethods;
use actix_web::http::header;
use actix_web::HttpResponse;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The console's script: the hash router and every view. Every value from the server is
/// written with `textContent`, never as markup: a stream id, a test name or a finding's title
/// is a client's text.
pub const SCRIPT: &str = include_str!("console.js");

/// The console's style sheet.
const STYLE: &str = include_str!("console.css");

/// The page: its markup with the style and the script put in.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("page.html")
        .replace("/*STYLE*/", STYLE)
        .replace("/*SCRIPT*/", SCRIPT)
});

/// The page's content security policy: its own inline script (by hash) and style, requests
/// (fetches and event streams) to this server only, nothing else.
static POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(SCRIPT));
    format!(
        "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
});

/// The console.
#[utoipa::path(get, path = "/", tag = "documentation", operation_id = "home",
    summary = "The web console",
    description = "The web console: the log's head and latest events live, streams by kind, \
        a stream's timeline with its state at any version or time, test results (at \
        `/#/results/<id>`, the address refstack-client prints after an upload), and the \
        log's verification. One page whose script reads the event API and the faces' routes \
        with the browser's credentials.",
    responses((status = 200, description = "The page.", body = String,
        content_type = "text/html")))]
pub async fn console() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, POLICY.as_str()))
        .body(PAGE.as_str())
}

/// The console's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(console), modifiers(&RefusesOtherMethods))]
pub struct ConsoleApi;
