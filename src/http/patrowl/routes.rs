//! The face's handlers and the routes that reach them; `mod.rs` says what the face is.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::domain::scan::read_model::ScanRow;
use crate::domain::scan::service::{Engine, EngineStatus, ScanAction};
use crate::domain::scan::{
    Asset, Datatype, Engines, EnginesError, FindingRecord, ScanId, ScanRejection, ScanState,
    Severity, MAX_ASSET_BYTES,
};
use crate::events::{Metadata, Position};
use crate::http::body::read_body;
use crate::http::caller::{guarded, Authorized, Gate, Visit};
use crate::http::error::{self, Shape};

/// What the face's handlers share.
pub struct Patrowl {
    pub engines: Engines,
    /// Who may call, and the largest body the handlers read.
    pub gate: Gate,
    /// Each engine's `status` body as last rendered, with the read model's position it shows:
    /// a manager polls it, and with many scans known, rendering is most of its cost.
    pub status_cache: Mutex<HashMap<String, CachedStatus>>,
}

impl Patrowl {
    pub fn new(engines: Engines, gate: Gate) -> Patrowl {
        Patrowl {
            engines,
            gate,
            status_cache: Mutex::default(),
        }
    }
}

/// An engine's `status` body as rendered at a position of the read model.
#[derive(Clone)]
pub struct CachedStatus {
    position: Position,
    /// Whether the engine was in ERROR, which can change without an event.
    failed: bool,
    body: Bytes,
    /// The body gzipped, once a client asked for it.
    gzipped: Option<Bytes>,
}

/// Whether the request's `Accept-Encoding` takes gzip.
fn accepts_gzip(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(',').any(|coding| {
                let mut parts = coding.split(';').map(str::trim);
                parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"))
                    && !parts.any(|p| p.replace(' ', "") == "q=0")
            })
        })
}

fn gzip(body: &[u8]) -> std::io::Result<Bytes> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(body)?;
    Ok(Bytes::from(encoder.finish()?))
}

/// A refusal in the face's shape: the page it answers for (its context), and why.
pub type Refusal = error::Refusal<Patrowl>;

/// The refusals handlers build before they name their page.
pub type PatrowlError = Refusal;

/// Names the page of an error, for `map_err`.
fn on(page: &'static str) -> impl Fn(Refusal) -> Refusal {
    move |mut refusal| {
        refusal.context = page;
        refusal
    }
}

/// A `404` for a path none of the face's routes matches.
pub fn unrouted(message: String) -> Refusal {
    on("not found")(Refusal::not_found(message))
}

/// `refused` for a scan request the engine will not take; `error` for everything else.
fn status_word(refusal: &Refusal) -> &'static str {
    match refusal.error().downcast_ref::<EnginesError>() {
        Some(
            EnginesError::Invalid(_)
            | EnginesError::Rejected(
                ScanRejection::NoAssets
                | ScanRejection::TooManyAssets(_)
                | ScanRejection::DatatypeNotAllowed { .. }
                | ScanRejection::AlreadyExists(_),
            ),
        ) => "refused",
        _ => "error",
    }
}

/// Every error body is `{"page", "status", "reason"}`, with `details` on `startscan`.
impl Shape for Patrowl {
    type Context = &'static str;

    /// The page of the route `request` matched, for a caller refused before its handler ran.
    fn context(request: &HttpRequest) -> &'static str {
        let pattern = request.match_pattern().unwrap_or_default();
        let route = ["/engines/{name}", "/engine/{name}"]
            .iter()
            .find_map(|base| pattern.strip_prefix(base))
            .unwrap_or_default();
        ROUTES
            .iter()
            .find(|(known, _)| *known == route)
            .map_or("", |(_, page)| *page)
    }

    fn answer(refusal: &Refusal, mut response: HttpResponseBuilder) -> HttpResponse {
        let reason = refusal.to_string();
        let details = (refusal.context == "startscan").then(|| super::openapi::PatrowlReason {
            reason: cut(&reason, MAX_DETAILS_REASON_CHARS).unwrap_or_else(|| reason.clone()),
        });
        response.json(super::openapi::PatrowlErrorBody {
            page: refusal.context,
            status: status_word(refusal),
            reason,
            details,
        })
    }

    fn wrong_method(message: String) -> Refusal {
        on("not allowed")(Refusal::method_not_allowed(message))
    }
}

/// The routes below an engine's base, as `test` lists them, each with the page its answers
/// name.
const ROUTES: [(&str, &str); 15] = [
    ("/", "index"),
    ("/status", "status"),
    ("/status/{scan_id}", "status"),
    ("/info", "info"),
    ("/reloadconfig", "reloadconfig"),
    ("/liveness", "liveness"),
    ("/readiness", "readiness"),
    ("/test", "test"),
    ("/startscan", "startscan"),
    ("/getfindings/{scan_id}", "getfindings"),
    ("/getreport/{scan_id}", "getreport"),
    ("/stop/{scan_id}", "stopscan"),
    ("/stopscans", "stopscans"),
    ("/clean", "clean"),
    ("/clean/{scan_id}", "clean_scan"),
];

/// The routes of the face, under both spellings of the base.
pub fn routes(router: &mut crate::http::Router) {
    use actix_web::http::Method;
    let get = |handler| [(Method::GET, handler)];
    let only = crate::http::only::<Patrowl>;
    router.resource("/engines", get(web::to(engines)), only);
    for prefix in ["/engines", "/engine"] {
        router
            .resource(&format!("{prefix}/{{name}}"), get(web::to(redirect)), only)
            .scope(
                &format!("{prefix}/{{name}}"),
                |router| {
                    router
                        .resource("/", get(web::to(index)), only)
                        .resource("/status", get(web::to(status)), only)
                        .resource("/status/{scan_id}", get(web::to(scan_status)), only)
                        .resource("/info", get(web::to(info)), only)
                        .resource("/reloadconfig", get(web::to(reloadconfig)), only)
                        .resource("/liveness", get(web::to(liveness)), only)
                        .resource("/readiness", get(web::to(readiness)), only)
                        .resource("/test", get(web::to(test)), only)
                        .resource("/startscan", [(Method::POST, web::to(startscan))], only)
                        .resource("/getfindings/{scan_id}", get(web::to(getfindings)), only)
                        .resource("/getreport/{scan_id}", get(web::to(getreport)), only)
                        .resource("/stop/{scan_id}", get(web::to(stop)), only)
                        .resource("/stopscans", get(web::to(stopscans)), only)
                        .resource("/clean", get(web::to(clean)), only)
                        .resource("/clean/{scan_id}", get(web::to(clean_scan)), only);
                },
                |scope| scope.default_service(web::to(not_found)),
            );
    }
}

async fn not_found(request: HttpRequest, face: web::Data<Patrowl>) -> HttpResponse {
    let name = request.match_info().get("name").unwrap_or_default();
    let error = match face.engines.engine(name) {
        Err(error) => PatrowlError::from(error),
        Ok(_) => PatrowlError::not_found(format!(
            "{} is not a route of engine {name} (its routes: {})",
            request.path(),
            ROUTES.map(|(route, _)| route).join(", ")
        )),
    };
    on("not found")(error).error_response()
}

guarded!(Patrowl, "the scan engine face is not configured");

impl Patrowl {
    /// The engine called `name`.
    fn engine(&self, name: &str) -> Result<Arc<Engine>, Refusal> {
        Ok(self.engines.engine(name)?.clone())
    }
}

/// A call to a route of one engine that reads it: the caller authorized, then the engine the
/// path names found, else refused (404) with the page of the route.
struct Call {
    caller: Caller,
    face: web::Data<Patrowl>,
    /// The engine's name as the path gives it.
    name: String,
    engine: Arc<Engine>,
}

/// An admin's command to an engine's scans (stop, clean): the engine is the service's to look
/// up, and who sent the command goes into its events.
struct Command {
    face: web::Data<Patrowl>,
    /// The engine's name as the path gives it.
    name: String,
    by: Option<String>,
    metadata: Metadata,
}

/// The `{name}` of an engine's route.
#[derive(serde::Deserialize)]
struct EngineName {
    name: String,
}

/// The `{scan_id}` of a scan's route, `/engines/{name}/…/{scan_id}`: the engine's name comes
/// with [`Call`] or [`Command`].
struct ScanIdPath(String);

impl FromRequest for ScanIdPath {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let path = web::Path::<(String, String)>::extract(request);
        Box::pin(async move {
            let (_, scan_id) = path.await?.into_inner();
            Ok(ScanIdPath(scan_id))
        })
    }
}

/// What every engine's route extracts: its caller, authorized by the face's access rule (an
/// admin for `ADMIN`), the face and the engine's name.
struct EngineRoute {
    caller: Caller,
    request: HttpRequest,
    face: web::Data<Patrowl>,
    name: String,
}

/// What an engine route's extractor gives: `T`, or a refusal.
type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, Refusal>>>>;

impl EngineRoute {
    /// Extracts the route and makes `T` of it.
    fn extract<const ADMIN: bool, T: 'static>(
        request: &HttpRequest,
        payload: &mut actix_web::dev::Payload,
        make: fn(EngineRoute) -> Result<T, Refusal>,
    ) -> Extracting<T> {
        let authorized = Authorized::<Patrowl, ADMIN>::from_request(request, payload);
        let request = request.clone();
        Box::pin(async move {
            let Authorized(caller, _) = authorized.await?;
            // Neither fails once the caller is authorized (the face's rule is in its data, and
            // a name is any text), but each has its refusal all the same.
            let face = web::Data::<Patrowl>::extract(&request)
                .await
                .map_err(|e| EngineRoute::refused(&request, Refusal::internal(e)))?;
            let name = web::Path::<EngineName>::extract(&request)
                .await
                .map_err(|e| EngineRoute::refused(&request, Refusal::internal(e)))?
                .into_inner()
                .name;
            make(EngineRoute {
                caller,
                request,
                face,
                name,
            })
        })
    }

    /// `refusal` with the page of the route `request` matched, worked out only for a refusal,
    /// as the caller's is.
    fn refused(request: &HttpRequest, refusal: Refusal) -> Refusal {
        on(Patrowl::context(request))(refusal)
    }
}

impl FromRequest for Call {
    type Error = Refusal;
    type Future = Extracting<Call>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        EngineRoute::extract::<false, _>(request, payload, |route| {
            let engine = route
                .face
                .engine(&route.name)
                .map_err(|refusal| EngineRoute::refused(&route.request, refusal))?;
            Ok(Call {
                caller: route.caller,
                face: route.face,
                name: route.name,
                engine,
            })
        })
    }
}

impl FromRequest for Command {
    type Error = Refusal;
    type Future = Extracting<Command>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        EngineRoute::extract::<true, _>(request, payload, |route| {
            let (by, metadata) = admin_command(&route.request, route.caller);
            Ok(Command {
                face: route.face,
                name: route.name,
                by,
                metadata,
            })
        })
    }
}

impl Command {
    /// Sends `action` to the engine's scan `scan_id`.
    async fn act(self, scan_id: &str, action: ScanAction) -> Result<(), EnginesError> {
        let engines = &self.face.engines;
        engines
            .act(&self.name, scan_id, action, self.by, self.metadata)
            .await
    }
}

/// Who an admin's command to scans (stop, clean) is for the events.
fn admin_command(request: &HttpRequest, caller: Caller) -> (Option<String>, Metadata) {
    let metadata = crate::http::metadata(request, &caller);
    (caller.user, metadata)
}

/// The engine's configuration as the face shows it.
fn engine_view(engine: &Engine, status: &'static str) -> super::openapi::PatrowlEngine {
    super::openapi::PatrowlEngine {
        name: engine.name.as_str().to_owned(),
        version: engine.version.clone(),
        description: engine.description.clone(),
        scanner: engine.scanner.name().into(),
        allowed_asset_types: engine.allowed.iter().map(|d| d.as_str()).collect(),
        max_scans: engine.max_scans,
        options: Value::Object(engine.defaults.clone()),
        status,
    }
}

fn engine_state(status: &EngineStatus) -> &'static str {
    if status.failed {
        "ERROR"
    } else if status.busy {
        "BUSY"
    } else {
        "READY"
    }
}

fn options_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Map::new()))
}

fn scan_rows(status: &EngineStatus) -> BTreeMap<String, super::openapi::PatrowlScanRow> {
    status
        .scans
        .scans
        .iter()
        .map(|(id, row)| (id.clone(), scan_row(row)))
        .collect()
}

fn scan_row(row: &ScanRow) -> super::openapi::PatrowlScanRow {
    super::openapi::PatrowlScanRow {
        status: row.status.as_str(),
        options: options_value(&row.options),
        nb_findings: row.nb_findings,
        reason: row.reason.clone(),
    }
}

/// `/engines/<name>` without its slash: to the index.
#[utoipa::path(get, path = "/engines/{name}", operation_id = "patrowl_redirect",
    summary = "To the engine's index", params(super::openapi::EnginePath),
    responses((status = 308, description = "To `/engines/<name>/`.",
        headers(("Location" = String, description = "The same path with a trailing slash.")))))]
async fn redirect(request: HttpRequest) -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, format!("{}/", request.path())))
        .finish()
}

/// Every engine with its scans counted by status: annals' own overview, which PatrowlManager
/// does not call.
#[utoipa::path(get, path = "/engines", operation_id = "patrowl_engines",
    summary = "Every engine's scans by status", description = super::openapi::ENGINES_DESCRIPTION,
    responses((status = 200, description = "Every engine, by name.",
        body = super::openapi::PatrowlEngines)))]
async fn engines(Visit { face, .. }: Visit<Patrowl>) -> Result<HttpResponse, Refusal> {
    let engines = face
        .engines
        .scans_by_status()
        .into_iter()
        .map(|(name, scans)| super::openapi::PatrowlEngineScans { name, scans })
        .collect();
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlEngines { engines }))
}

/// `{"page": "index"}`.
#[utoipa::path(get, path = "/engines/{name}/", operation_id = "patrowl_index",
    summary = "The engine's index", params(super::openapi::EnginePath),
    responses((status = 200, description = "`{\"page\": \"index\"}`.", body = super::openapi::PatrowlPage)))]
async fn index(_call: Call) -> Result<HttpResponse, Refusal> {
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlPage {
        page: "index",
        status: None,
    }))
}

/// The engine's state and scans.
#[utoipa::path(get, path = "/engines/{name}/status", operation_id = "patrowl_status",
    summary = "The engine's state and scans", description = super::openapi::STATUS_DESCRIPTION,
    params(super::openapi::EnginePath),
    responses((status = 200, description = "READY or BUSY, the engine, every scan not cleaned.",
        body = super::openapi::PatrowlStatus)))]
async fn status(call: Call, request: HttpRequest) -> Result<HttpResponse, Refusal> {
    let Call {
        face, name, engine, ..
    } = call;
    let position = face.engines.position();
    let failed = engine.problem().is_some() || face.engines.failure().is_some();
    let cache = || face.status_cache.lock().unwrap_or_else(|p| p.into_inner());
    let cached = cache()
        .get(name.as_str())
        .filter(|cached| cached.position == position && cached.failed == failed)
        .cloned();
    let cached = match cached {
        Some(cached) => cached,
        None => {
            let status = face
                .engines
                .status(&name)
                .map_err(|e| on("status")(e.into()))?;
            let state = engine_state(&status);
            let body = Bytes::from(
                serde_json::to_vec(&super::openapi::PatrowlStatus {
                    page: "status",
                    status: state,
                    scanner: engine_view(&engine, state),
                    scans: scan_rows(&status),
                })
                .unwrap_or_default(),
            );
            let cached = CachedStatus {
                position: status.position,
                failed: status.failed,
                body,
                gzipped: None,
            };
            cache().insert(name.to_string(), cached.clone());
            cached
        }
    };
    let mut response = HttpResponse::Ok();
    response
        .content_type("application/json")
        .insert_header((header::VARY, "Accept-Encoding"));
    if !accepts_gzip(&request) {
        return Ok(response.body(cached.body));
    }
    let gzipped = match cached.gzipped {
        Some(gzipped) => gzipped,
        None => {
            // Compressed once per change of the body, not once per request.
            let gzipped = gzip(&cached.body).map_err(|e| {
                on("status")(PatrowlError::from(EnginesError::Report(e.to_string())))
            })?;
            if let Some(entry) = cache().get_mut(name.as_str()) {
                if entry.position == cached.position && entry.failed == cached.failed {
                    entry.gzipped = Some(gzipped.clone());
                }
            }
            gzipped
        }
    };
    Ok(response
        .insert_header((header::CONTENT_ENCODING, "gzip"))
        .body(gzipped))
}

fn unknown_scan(name: &str, scan_id: &str, error: EnginesError) -> PatrowlError {
    match error {
        EnginesError::Rejected(ScanRejection::Unknown) => {
            PatrowlError::not_found(format!("no scan {scan_id:?} on engine {name}"))
        }
        EnginesError::Rejected(ScanRejection::Cleaned) => PatrowlError::not_found(format!(
            "scan {scan_id:?} on engine {name} was cleaned (its history stays in the log)"
        )),
        other => other.into(),
    }
}

/// One scan's status, which PatrowlManager polls.
#[utoipa::path(get, path = "/engines/{name}/status/{scan_id}",
    operation_id = "patrowl_scan_status", summary = "One scan's status",
    description = "STARTED and SCANNING until the scan ends, then FINISHED, ERROR (with the \
        reason) or STOPPED. An unknown or cleaned scan answers 404.",
    params(super::openapi::ScanPath),
    responses((status = 200, description = "The scan's status.", body = super::openapi::PatrowlScanStatus)))]
async fn scan_status(
    Call { face, name, .. }: Call,
    ScanIdPath(scan_id): ScanIdPath,
) -> Result<HttpResponse, Refusal> {
    let row = face
        .engines
        .scan_status(&name, &scan_id)
        .map_err(|e| on("status")(unknown_scan(&name, &scan_id, e)))?;
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlScanStatus {
        page: "status",
        scan_id,
        status: row.status.as_str(),
        nb_findings: row.nb_findings,
        reason: row.reason,
    }))
}

/// The engine's configuration and scans.
#[utoipa::path(get, path = "/engines/{name}/info", operation_id = "patrowl_info",
    summary = "The engine's configuration", params(super::openapi::EnginePath),
    responses((status = 200, description = "The engine and its state.", body = super::openapi::PatrowlInfo)))]
async fn info(call: Call) -> Result<HttpResponse, Refusal> {
    let Call {
        face, name, engine, ..
    } = call;
    let status = face
        .engines
        .status(&name)
        .map_err(|e| on("info")(e.into()))?;
    let state = engine_state(&status);
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlInfo {
        page: "info",
        status: state,
        engine_config: engine_view(&engine, state),
        scans: scan_rows(&status),
    }))
}

/// The engine's configuration, as reloaded.
#[utoipa::path(get, path = "/engines/{name}/reloadconfig", operation_id = "patrowl_reloadconfig",
    summary = "The engine's configuration",
    description = "The configuration is read at start-up only: this answers the one in effect \
        (upstream engines read their JSON file again), after looking for a `command` engine's \
        program again.",
    params(super::openapi::EnginePath),
    responses((status = 200, description = "The engine.", body = super::openapi::PatrowlReload)))]
async fn reloadconfig(call: Call) -> Result<HttpResponse, Refusal> {
    let Call {
        face, name, engine, ..
    } = call;
    // What can change without a restart: whether a command engine's program is there. The
    // look walks `PATH`: off the async threads.
    // A server shutting down may not run it: the last look then stands.
    let looking = engine.clone();
    let _ = crate::runtime::blocking(move || looking.check_program()).await;
    let status = face
        .engines
        .status(&name)
        .map_err(|e| on("reloadconfig")(e.into()))?;
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlReload {
        page: "reloadconfig",
        config: engine_view(&engine, engine_state(&status)),
    }))
}

/// The engine is up.
#[utoipa::path(get, path = "/engines/{name}/liveness", operation_id = "patrowl_liveness",
    summary = "The engine is up", params(super::openapi::EnginePath),
    responses((status = 200, description = "`{\"page\": \"liveness\", \"status\": \"success\"}`.",
        body = super::openapi::PatrowlPage)))]
async fn liveness(_call: Call) -> Result<HttpResponse, Refusal> {
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlPage {
        page: "liveness",
        status: Some("success"),
    }))
}

/// The engine takes scans.
#[utoipa::path(get, path = "/engines/{name}/readiness", operation_id = "patrowl_readiness",
    summary = "The engine takes scans",
    description = "Ready once the server listens (the log is open, the read model has folded \
        it, scans left running were settled) and while the engine is not in ERROR. A busy \
        engine is ready (it answers startscan, with 503).",
    params(super::openapi::EnginePath),
    responses(
        (status = 200, description = "`{\"page\": \"readiness\", \"status\": \"success\"}`.",
            body = super::openapi::PatrowlPage),
        (status = 500, description = "`{\"page\": \"readiness\", \"status\": \"error\"}`: the \
            engine is in ERROR.", body = super::openapi::PatrowlPage)))]
async fn readiness(Call { face, name, .. }: Call) -> Result<HttpResponse, Refusal> {
    let ready = face
        .engines
        .status(&name)
        .is_ok_and(|status| !status.failed);
    let (code, word) = if ready {
        (StatusCode::OK, "success")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "error")
    };
    Ok(HttpResponse::build(code).json(super::openapi::PatrowlPage {
        page: "readiness",
        status: Some(word),
    }))
}

/// The engine's routes.
#[utoipa::path(get, path = "/engines/{name}/test", operation_id = "patrowl_test",
    summary = "The engine's routes", params(super::openapi::EnginePath),
    responses((status = 200, description = "Every route of the engine.", body = super::openapi::PatrowlTest)))]
async fn test(Call { engine, .. }: Call) -> Result<HttpResponse, Refusal> {
    let base = format!("/engines/{}", engine.name.as_str());
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlTest {
        page: "test",
        routes: ROUTES
            .iter()
            .map(|(route, _)| format!("{base}{route}"))
            .collect(),
    }))
}

/// A `startscan` body, parsed: the scan id, the assets, the client's options.
struct StartScan {
    scan_id: ScanId,
    assets: Vec<Asset>,
    options: Map<String, Value>,
}

/// A JSON number or string, as text.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The most characters of a client's value a refusal quotes.
const SHOWN_CHARS: usize = 100;

/// A client's value as a refusal quotes it: its JSON, cut after [`SHOWN_CHARS`] characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Reads a `startscan` body as the route does and gives its assets; the fuzz targets' entry
/// point (the parsed body itself stays private).
#[doc(hidden)]
pub fn parse_startscan_assets(body: &[u8]) -> Result<Vec<Asset>, String> {
    StartScan::parse(body).map(|scan| scan.assets)
}

impl StartScan {
    fn parse(body: &[u8]) -> Result<StartScan, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let Value::Object(mut body) = value else {
            return Err("the body is not a JSON object".into());
        };
        let scan_id = match body.get("scan_id") {
            None | Some(Value::Null) => return Err("scan_id is missing".into()),
            Some(value) => scalar_text(value).ok_or_else(|| {
                format!("scan_id must be a number or a string, not {}", shown(value))
            })?,
        };
        let scan_id = ScanId::parse(&scan_id)?;
        let assets = match body.remove("assets") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_asset(i, item))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("assets must be a list, not {}", shown(&other))),
        };
        let options = match body.remove("options") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            // PatrowlManager sends the options as a JSON string.
            Some(Value::String(text)) if text.trim().is_empty() => Map::new(),
            Some(Value::String(text)) => match serde_json::from_str(&text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(format!(
                        "options is a string that is not a JSON object: {}",
                        shown(&Value::String(text))
                    ))
                }
            },
            Some(other) => {
                return Err(format!(
                    "options must be an object or an object as a JSON string, not {}",
                    shown(&other)
                ))
            }
        };
        Ok(StartScan {
            scan_id,
            assets,
            options,
        })
    }
}

fn parse_asset(i: usize, item: &Value) -> Result<Asset, String> {
    let Value::Object(asset) = item else {
        return Err(format!("assets[{i}] is not an object"));
    };
    let value = match asset.get("value") {
        Some(Value::String(value)) if !value.trim().is_empty() => value.clone(),
        _ => return Err(format!("assets[{i}].value is missing or empty")),
    };
    if value.len() > MAX_ASSET_BYTES {
        return Err(format!(
            "assets[{i}].value is longer than {MAX_ASSET_BYTES} bytes"
        ));
    }
    let datatype = match asset.get("datatype") {
        Some(Value::String(raw)) => Datatype::parse(raw).ok_or_else(|| {
            format!(
                "assets[{i}].datatype {raw:?} is not a Patrowl datatype (one of {})",
                Datatype::ALL.map(Datatype::as_str).join(", ")
            )
        })?,
        _ => return Err(format!("assets[{i}].datatype is missing")),
    };
    let id = match asset.get("id") {
        None | Some(Value::Null) => String::new(),
        Some(id) => {
            scalar_text(id).ok_or_else(|| format!("assets[{i}].id must be a number or a string"))?
        }
    };
    let criticity = asset
        .get("criticity")
        .and_then(Value::as_str)
        .unwrap_or("low")
        .to_owned();
    Ok(Asset {
        id,
        value,
        criticity,
        datatype,
    })
}

/// Starts a scan.
#[utoipa::path(post, path = "/engines/{name}/startscan", operation_id = "patrowl_startscan",
    summary = "Start a scan", description = super::openapi::STARTSCAN_DESCRIPTION,
    params(super::openapi::EnginePath),
    request_body(content = super::openapi::PatrowlStartScan, content_type = "application/json",
        description = "The scan, at most `[patrowl] max_body_kb` KiB."),
    responses(
        (status = 200, description = "Accepted.", body = super::openapi::PatrowlAccepted),
        (status = 400, description = "Not JSON, no scan id, no assets, a datatype the engine \
            does not scan, options or an asset it cannot scan.", body = super::openapi::PatrowlErrorBody),
        (status = 409, description = "The scan id is in use on this engine: its scan runs, \
            or ended and its report was neither fetched nor the scan cleaned.",
            body = super::openapi::PatrowlErrorBody),
        (status = 413, description = "The body is over `[patrowl] max_body_kb`, or the scan \
            would make an event over `[log] max_event_kb`.",
            body = super::openapi::PatrowlErrorBody)))]
async fn startscan(
    Call {
        caller, face, name, ..
    }: Call,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Refusal> {
    let page = on("startscan");
    let body = read_body(&request, payload, face.gate.max_body)
        .await
        .map_err(|e| page(e.into()))?;
    let scan = StartScan::parse(&body).map_err(|e| page(PatrowlError::bad_request(e)))?;
    let scan_id = scan.scan_id.as_str().to_owned();
    let metadata = crate::http::metadata(&request, &caller);
    face.engines
        .start_scan(
            &name,
            scan.scan_id,
            scan.assets,
            scan.options,
            caller.user,
            metadata,
        )
        .await
        .map_err(|e| page(e.into()))?;
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlAccepted {
        page: "startscan",
        status: "accepted",
        details: super::openapi::PatrowlScanId { scan_id },
    }))
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// The longest `details.reason` of a `startscan` refusal, in characters. PatrowlManager puts
/// it in an event message (`Event.message`: `CharField(max_length=250)`) after a prefix and a
/// sentence of up to 206 characters (a periodic scan's task id, a job position of up to 8
/// digits); a longer message fails its task before the event is written, so the scan never
/// ends and nobody learns why. The whole answer, `reason` included, is the event's
/// description.
pub const MAX_DETAILS_REASON_CHARS: usize = 40;
/// The longest `title` PatrowlManager takes, in characters: `Finding.title` is a
/// `CharField(max_length=256)`, but its import writes `"<prefix> New finding: <title>"` as an
/// event message (`CharField(max_length=250)`), whose prefix names the scan and the scan job
/// (76 characters with ids of 10 digits), and a longer message fails the whole import.
pub const MAX_TITLE_CHARS: usize = 174;
/// The longest `type` it stores (`Finding.type`: `CharField(max_length=50)`).
pub const MAX_TYPE_CHARS: usize = 50;
/// The longest `target.addr` entry it stores: each becomes a finding's `asset_name`
/// (`CharField(max_length=256)`).
pub const MAX_ADDR_CHARS: usize = 256;

/// `text` cut to at most `max` characters, its end replaced by an ellipsis; `None` when it
/// fits. PatrowlManager's import fails the whole scan job on a value over a column's limit,
/// so an issue never carries one.
fn cut(text: &str, max: usize) -> Option<String> {
    // More than `max` characters: keep `max - 1` of them and the ellipsis.
    text.chars().nth(max)?;
    let keep = text
        .char_indices()
        .nth(max.saturating_sub(1))
        .map_or(text.len(), |(i, _)| i);
    Some(format!("{}…", &text[..keep]))
}

/// `text` with U+FFFD in place of each NUL character. PatrowlManager keeps findings in
/// PostgreSQL, which takes no NUL in a text column nor a `\u0000` in a JSON one: one such
/// finding fails its whole import.
fn no_nul(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

/// `value` with [`no_nul`] applied to every string in it, keys included.
fn no_nul_value(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(no_nul(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(no_nul_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (no_nul(&key), no_nul_value(value)))
                .collect(),
        ),
        other => other,
    }
}

/// The finding with [`no_nul`] applied to its texts (its `raw` is cleaned where it is parsed,
/// in [`issue_fields`]).
fn without_nul(f: &crate::domain::scan::Finding) -> crate::domain::scan::Finding {
    let all = |texts: &[String]| texts.iter().map(|t| no_nul(t)).collect();
    crate::domain::scan::Finding {
        title: no_nul(&f.title),
        description: no_nul(&f.description),
        solution: no_nul(&f.solution),
        kind: no_nul(&f.kind),
        target: crate::domain::scan::Target {
            addr: all(&f.target.addr),
            protocol: f.target.protocol.as_deref().map(no_nul),
            port_id: f.target.port_id,
            port_type: f.target.port_type.as_deref().map(no_nul),
        },
        tags: all(&f.tags),
        links: all(&f.links),
        ..f.clone()
    }
}

/// One finding as an issue within PatrowlManager's limits: a `title`, `type` or `target.addr`
/// entry over [`MAX_TITLE_CHARS`], [`MAX_TYPE_CHARS`] or [`MAX_ADDR_CHARS`] is cut with an
/// ellipsis, and its full text kept in `raw` as `full_title`, `full_type` or `full_addr`.
/// (Severity and confidence are closed sets within their columns; description, solution and
/// the JSON fields have no limit.) The log keeps what the scanner reported.
fn issue_fields(f: &crate::domain::scan::Finding) -> (String, String, Vec<String>, Value) {
    let mut raw = match f.raw.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(value)) => match no_nul_value(value) {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        },
        Some(Err(_)) | None => Map::new(),
    };
    // `text` cut to `max`, its full text kept in `raw` under `key` when it was cut.
    let mut fitted = |key: &str, text: &str, max: usize| match cut(text, max) {
        Some(short) => {
            raw.insert(key.into(), Value::String(text.to_owned()));
            short
        }
        None => text.to_owned(),
    };
    let title = fitted("full_title", &f.title, MAX_TITLE_CHARS);
    let kind = fitted("full_type", &f.kind, MAX_TYPE_CHARS);
    let addr = if f
        .target
        .addr
        .iter()
        .any(|a| a.chars().nth(MAX_ADDR_CHARS).is_some())
    {
        raw.insert("full_addr".into(), serde_json::json!(f.target.addr));
        f.target
            .addr
            .iter()
            .map(|a| cut(a, MAX_ADDR_CHARS).unwrap_or_else(|| a.clone()))
            .collect()
    } else {
        f.target.addr.clone()
    };
    (title, kind, addr, Value::Object(raw))
}

/// The `getfindings` body of a scan.
fn findings_body(
    engine: &Engine,
    scan_id: &str,
    state: &ScanState,
    findings: &[FindingRecord],
) -> super::openapi::PatrowlFindings {
    let count = |severity: Severity| {
        findings
            .iter()
            .filter(|f| f.finding.severity == severity)
            .count()
    };
    let issues = findings
        .iter()
        .map(|record| {
            let f = &without_nul(&record.finding);
            let (title, kind, addr, raw) = issue_fields(f);
            super::openapi::PatrowlIssue {
                issue_id: record.issue_id,
                severity: severity_word(f.severity),
                confidence: match f.confidence {
                    crate::domain::scan::Confidence::Certain => "certain",
                    crate::domain::scan::Confidence::Firm => "firm",
                    crate::domain::scan::Confidence::Tentative => "tentative",
                    crate::domain::scan::Confidence::Undefined => "undefined",
                },
                title,
                description: f.description.clone(),
                solution: f.solution.clone(),
                kind,
                timestamp: record.at.timestamp_millis(),
                raw,
                target: super::openapi::PatrowlTarget {
                    addr,
                    protocol: f.target.protocol.clone(),
                    port_id: f.target.port_id,
                    port_type: f.target.port_type.clone(),
                },
                metadata: super::openapi::PatrowlIssueMetadata {
                    tags: f.tags.clone(),
                    links: f.links.clone(),
                    vuln_refs: serde_json::json!(f.vuln_refs),
                    risk: Value::Object(Map::new()),
                },
            }
        })
        .collect();
    super::openapi::PatrowlFindings {
        page: "getfindings",
        scan_id: scan_id.to_owned(),
        status: "success",
        scan: super::openapi::PatrowlFindingsScan {
            scan_id: scan_id.to_owned(),
            status: state.status.as_str(),
            reason: state.reason.clone(),
        },
        summary: super::openapi::PatrowlSummary {
            nb_issues: findings.len(),
            nb_info: count(Severity::Info),
            nb_low: count(Severity::Low),
            nb_medium: count(Severity::Medium),
            nb_high: count(Severity::High),
            nb_critical: count(Severity::Critical),
            engine_name: engine.name.as_str().to_owned(),
            engine_version: engine.version.clone(),
        },
        issues,
    }
}

/// An ended scan's findings.
#[utoipa::path(get, path = "/engines/{name}/getfindings/{scan_id}",
    operation_id = "patrowl_getfindings", summary = "A scan's findings",
    description = super::openapi::FINDINGS_DESCRIPTION, params(super::openapi::ScanPath),
    responses((status = 200, description = "The findings, or `status: error` with the reason \
        while the scan runs.", body = super::openapi::PatrowlFindingsAnswer)))]
async fn getfindings(
    Call {
        face, name, engine, ..
    }: Call,
    ScanIdPath(scan_id): ScanIdPath,
) -> Result<HttpResponse, Refusal> {
    let page = on("getfindings");
    let (state, findings) = face
        .engines
        .ended_scan(&name, &scan_id)
        .await
        .map_err(|e| page(unknown_scan(&name, &scan_id, e)))?;
    Ok(HttpResponse::Ok().json(findings_body(&engine, &scan_id, &state, &findings)))
}

/// An ended scan's report.
#[utoipa::path(get, path = "/engines/{name}/getreport/{scan_id}",
    operation_id = "patrowl_getreport", summary = "A scan's report",
    description = super::openapi::REPORT_DESCRIPTION, params(super::openapi::ScanPath),
    responses(
        (status = 200, description = "The report, as an attachment: a ZIP archive, or the \
            findings as JSON when asked for (while the scan runs: `status: error`).",
            content(
                (Vec<u8> = "application/zip"),
                (super::openapi::PatrowlFindingsAnswer = "application/json"))),
        (status = 500, description = "A raw output is missing from the blob store.",
            body = super::openapi::PatrowlErrorBody)))]
async fn getreport(
    Call {
        caller,
        face,
        name,
        engine,
    }: Call,
    request: HttpRequest,
    ScanIdPath(scan_id): ScanIdPath,
) -> Result<HttpResponse, Refusal> {
    let page = on("getreport");
    let metadata = crate::http::metadata(&request, &caller);
    let wants_json = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    let attachment = |extension: &str| ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(format!(
            "{}_{}.{extension}",
            engine.name.as_str(),
            scan_id.replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
                "_"
            )
        ))],
    };
    let missing = |e| page(unknown_scan(&name, &scan_id, e));
    // Upstream engines forget a scan once its report is fetched, and PatrowlManager may use
    // its id again: the fetch is noted (once), which frees the id; the scan stays listed.
    let fetched = || {
        face.engines.act(
            &name,
            &scan_id,
            ScanAction::ReportFetched,
            caller.user.clone(),
            metadata.clone(),
        )
    };
    if wants_json {
        let (state, findings) = face
            .engines
            .ended_scan(&name, &scan_id)
            .await
            .map_err(missing)?;
        fetched().await.map_err(missing)?;
        return Ok(HttpResponse::Ok()
            .insert_header(attachment("json"))
            .json(findings_body(&engine, &scan_id, &state, &findings)));
    }
    let archive = face
        .engines
        .report_zip(&name, &scan_id, |state, findings| {
            serde_json::to_vec_pretty(&findings_body(&engine, &scan_id, state, findings))
                .unwrap_or_default()
        })
        .await
        .map_err(missing)?;
    fetched().await.map_err(missing)?;
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(attachment("zip"))
        .body(archive))
}

/// Stops a running scan.
#[utoipa::path(get, path = "/engines/{name}/stop/{scan_id}", operation_id = "patrowl_stop",
    summary = "Stop a scan",
    description = "Stops a running scan (a `command` scanner's program gets SIGTERM, then \
        SIGKILL after the engine's grace). Its findings so far stay. Needs an admin once \
        accounts exist.",
    params(super::openapi::ScanPath),
    responses(
        (status = 200, description = "Stopped; or, with `status` `ERROR` and the reason, the \
            scan had already ended, as upstream engines answer: PatrowlManager stops a scan's \
            jobs one after the other and gives up on any 409 or `error`.",
            body = super::openapi::PatrowlStopAnswer)))]
async fn stop(command: Command, ScanIdPath(scan_id): ScanIdPath) -> Result<HttpResponse, Refusal> {
    let name = command.name.clone();
    let page = on("stopscan");
    let answer = match command.act(&scan_id, ScanAction::Stop).await {
        Ok(()) => super::openapi::PatrowlStopAnswer::Stopped(super::openapi::PatrowlStopped {
            page: "stopscan",
            status: "SUCCESS",
            details: super::openapi::PatrowlScanId { scan_id },
        }),
        Err(EnginesError::Rejected(ScanRejection::NotRunning(status))) => {
            super::openapi::PatrowlStopAnswer::NotRunning(super::openapi::PatrowlNotRunning {
                page: "stopscan",
                status: "ERROR",
                reason: format!(
                    "scan '{scan_id}' is not running (status={})",
                    status.as_str()
                ),
            })
        }
        Err(error) => return Err(page(unknown_scan(&name, &scan_id, error))),
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// Stops every running scan.
#[utoipa::path(get, path = "/engines/{name}/stopscans", operation_id = "patrowl_stopscans",
    summary = "Stop every scan",
    description = "Stops every running scan of the engine. Needs an admin once accounts exist.",
    params(super::openapi::EnginePath),
    responses((status = 200, description = "The scans stopped.", body = super::openapi::PatrowlDone)))]
async fn stopscans(command: Command) -> Result<HttpResponse, Refusal> {
    every_scan(command, EveryScan::Stop).await
}

/// What `stopscans` and `clean` do to every scan of an engine.
#[derive(Clone, Copy)]
enum EveryScan {
    Stop,
    Clean,
}

/// `stopscans` and `clean`: an admin's command to every scan, answered with their ids.
async fn every_scan(command: Command, what: EveryScan) -> Result<HttpResponse, Refusal> {
    let (page_name, action) = match what {
        EveryScan::Stop => ("stopscans", ScanAction::Stop),
        EveryScan::Clean => ("clean", ScanAction::Clean),
    };
    let Command {
        face,
        name,
        by,
        metadata,
    } = command;
    let done = face.engines.act_on_every(&name, action, by, metadata).await;
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlDone {
        page: page_name,
        status: "SUCCESS",
        details: super::openapi::PatrowlIds {
            scan_ids: done.map_err(|e| on(page_name)(e.into()))?,
        },
    }))
}

/// Cleans every scan.
#[utoipa::path(get, path = "/engines/{name}/clean", operation_id = "patrowl_clean",
    summary = "Clean every scan", description = super::openapi::CLEAN_DESCRIPTION,
    params(super::openapi::EnginePath),
    responses((status = 200, description = "The scans cleaned.", body = super::openapi::PatrowlDone)))]
async fn clean(command: Command) -> Result<HttpResponse, Refusal> {
    every_scan(command, EveryScan::Clean).await
}

/// Cleans one scan.
#[utoipa::path(get, path = "/engines/{name}/clean/{scan_id}", operation_id = "patrowl_clean_scan",
    summary = "Clean a scan",
    description = "Removes the scan from the engine's list, stopping it first if it runs. Its \
        history stays in the log. Needs an admin once accounts exist.",
    params(super::openapi::ScanPath),
    responses((status = 200, description = "Removed.", body = super::openapi::PatrowlCleaned)))]
async fn clean_scan(
    command: Command,
    ScanIdPath(scan_id): ScanIdPath,
) -> Result<HttpResponse, Refusal> {
    let name = command.name.clone();
    let page = on("clean_scan");
    command
        .act(&scan_id, ScanAction::Clean)
        .await
        .map_err(|e| page(unknown_scan(&name, &scan_id, e)))?;
    Ok(HttpResponse::Ok().json(super::openapi::PatrowlCleaned {
        page: "clean_scan",
        scan_id,
        status: "removed",
    }))
}
