//! The face's handlers and the routes that reach them; `mod.rs` says what the face is.

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::inventory::read_model::VersionFilter;
use crate::domain::inventory::{Inventory, Version, VersionReport, Via};
use crate::events::Position;
use crate::http::caller::{guarded, Admin, Gate, Sent, Visit};
use crate::http::error::Refusal;

/// What the face's handlers share.
pub struct Partisci {
    pub inventory: Inventory,
    /// Who may call, and the largest body the handlers read.
    pub gate: Gate,
    /// Whether `_danger/clear/` may clear the inventory.
    pub danger: bool,
    /// The last bodies of `GET app/` and `GET host/`.
    pub rendered: Rendered,
}

/// The last body of `GET app/` and of `GET host/`, with the read model's position it was made
/// at (or past): between two events a summary cannot change, so readers share one rendering
/// instead of each serializing every row. Not used with retention, whose window moves with the
/// clock.
#[derive(Default)]
pub struct Rendered {
    apps: std::sync::Mutex<Option<(Position, web::Bytes)>>,
    hosts: std::sync::Mutex<Option<(Position, web::Bytes)>>,
}

/// The body kept in `slot` if it was made at `inventory`'s position, else a new one `render`
/// makes (and keeps).
fn rendered(
    slot: &std::sync::Mutex<Option<(Position, web::Bytes)>>,
    inventory: &Inventory,
    render: impl FnOnce() -> web::Bytes,
) -> HttpResponse {
    if inventory.retains() {
        return json(render());
    }
    // Read before rendering: the rows are then at least as new as the position kept.
    let position = inventory.position();
    let lock = || slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, body)) = lock().as_ref() {
        if *at == position {
            return json(body.clone());
        }
    }
    let body = render();
    *lock() = Some((position, body.clone()));
    json(body)
}

// Every error body is `{"error": "..."}`.
guarded!(
    Partisci,
    "the inventory face is not configured",
    PartisciError,
    |_, message| serde_json::json!({ "error": message })
);

/// A bad update: Partisci answers 415 whatever is wrong with it.
fn bad_update(message: String) -> PartisciError {
    Refusal::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
}

/// The routes of the face, under `/api/v1/`, and `/debug/vars`.
pub fn routes(router: &mut crate::http::Router) {
    let only = crate::http::only::<Partisci>;
    router
        .scope(
            "/api/v1",
            |router| {
                router
                    .resource("/app/", [(Method::GET, web::to(apps))], only)
                    .resource("/summary/app/", [(Method::GET, web::to(apps))], only)
                    .resource("/host/", [(Method::GET, web::to(hosts))], only)
                    .resource("/summary/host/", [(Method::GET, web::to(hosts))], only)
                    .resource("/summary/hosts/", [(Method::GET, web::to(hosts))], only)
                    .resource("/version/", [(Method::GET, web::to(versions))], only)
                    .resource("/update/", [(Method::POST, web::to(update))], only)
                    .resource("/_danger/clear/", [(Method::POST, web::to(clear))], only)
                    .resource("/_partisci/", [(Method::GET, web::to(info))], only);
            },
            |scope| scope.default_service(web::to(not_found)),
        )
        .resource("/debug/vars", [(Method::GET, web::to(info))], only);
}

/// An unknown path under `/api/v1`. The bare prefix itself is redirected to `/api/v1/` (with
/// its query, whatever the method), as partiscid's Go router answers a tree's root without its
/// slash; it is not a route of its own, so it stays out of the OpenAPI document.
async fn not_found(request: HttpRequest) -> HttpResponse {
    if request.path() == "/api/v1" {
        let location = match request.query_string() {
            "" => "/api/v1/".to_string(),
            query => format!("/api/v1/?{query}"),
        };
        return HttpResponse::MovedPermanently()
            .insert_header((actix_web::http::header::LOCATION, location))
            .finish();
    }
    PartisciError::not_found(format!(
        "{} is not a Partisci route (routes end with a slash, as in /api/v1/version/)",
        request.path()
    ))
    .error_response()
}

/// `{"data": [...]}`, serialized straight from the rows.
fn data<T: Serialize>(rows: impl IntoIterator<Item = T>) -> HttpResponse {
    json(data_body(rows))
}

/// A JSON answer of `body`.
fn json(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(body)
}

#[derive(Serialize)]
struct Data<T> {
    data: Vec<T>,
}

/// [`data`]'s body.
fn data_body<T: Serialize>(rows: impl IntoIterator<Item = T>) -> web::Bytes {
    let data = Data {
        data: rows.into_iter().collect::<Vec<_>>(),
    };
    // Rows of strings and numbers always serialize.
    serde_json::to_vec(&data).unwrap_or_default().into()
}

/// Partisci's times are whole Unix seconds.
fn unix(time: DateTime<Utc>) -> i64 {
    time.timestamp()
}

impl<'a> From<&'a Version> for super::openapi::PartisciVersion<'a> {
    fn from(v: &'a Version) -> Self {
        super::openapi::PartisciVersion {
            app_id: &v.app_id,
            app: &v.app,
            ver: &v.ver,
            host: &v.host,
            instance: v.instance,
            host_ip: &v.host_ip,
            last_update: unix(v.last_update),
        }
    }
}

/// Active applications.
#[utoipa::path(get, path = "/api/v1/app/", operation_id = "partisci_apps",
    summary = "Active applications", description = super::openapi::APPS_DESCRIPTION,
    responses((status = 200, description = "`{\"data\": [...]}`, `[]` when there is none.",
        body = super::openapi::PartisciApps)))]
async fn apps(Visit { face, .. }: Visit<Partisci>) -> Result<HttpResponse, PartisciError> {
    let render = || {
        data_body(
            face.inventory
                .apps()
                .into_iter()
                .map(|app| super::openapi::PartisciApp {
                    app_id: app.app_id,
                    app: app.app,
                    last_update: unix(app.last_update),
                    host_count: app.host_count,
                }),
        )
    };
    Ok(rendered(&face.rendered.apps, &face.inventory, render))
}

/// Active hosts.
#[utoipa::path(get, path = "/api/v1/host/", operation_id = "partisci_hosts",
    summary = "Active hosts", description = super::openapi::HOSTS_DESCRIPTION,
    responses((status = 200, description = "`{\"data\": [...]}`, `[]` when there is none.",
        body = super::openapi::PartisciHosts)))]
async fn hosts(Visit { face, .. }: Visit<Partisci>) -> Result<HttpResponse, PartisciError> {
    let render = || {
        data_body(
            face.inventory
                .hosts()
                .into_iter()
                .map(|host| super::openapi::PartisciHost {
                    host: host.host,
                    last_update: unix(host.last_update),
                    app_count: host.app_count,
                }),
        )
    };
    Ok(rendered(&face.rendered.hosts, &face.inventory, render))
}

/// Active versions, filtered.
#[utoipa::path(get, path = "/api/v1/version/", operation_id = "partisci_versions",
    summary = "Active versions", description = super::openapi::VERSIONS_DESCRIPTION,
    params(super::openapi::VersionParams),
    responses(
        (status = 200, description = "`{\"data\": [...]}`, `[]` when none matches.",
            body = super::openapi::PartisciVersions)))]
async fn versions(
    Visit { face, .. }: Visit<Partisci>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, PartisciError> {
    // The first value of a parameter given twice counts, and an empty one is no filter, as
    // Go's `FormValue` reads them for partiscid.
    let given = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    let filter = VersionFilter {
        app_id: given("app_id"),
        host: given("host"),
        ver: given("ver"),
    };
    let versions = face.inventory.versions(&filter);
    Ok(data(versions.iter().map(|version| {
        super::openapi::PartisciVersion::from(&**version)
    })))
}

/// Records a version update.
#[utoipa::path(post, path = "/api/v1/update/", operation_id = "partisci_update",
    summary = "Record a version", description = super::openapi::UPDATE_DESCRIPTION,
    request_body(content = super::openapi::PartisciUpdate, content_type = "application/json",
        description = "One version JSON, at most `[partisci] max_body_kb` KiB."),
    responses(
        (status = 200, description = "Recorded; the body is empty."),
        (status = 400, description = "The body could not be read.",
            body = super::openapi::PartisciErrorBody),
        (status = 409, description = "The host's record belongs to another host name: two \
            long or unusual names whose hashed record ids collide.",
            body = super::openapi::PartisciErrorBody),
        (status = 413, description = "The body is over `[partisci] max_body_kb`.",
            body = super::openapi::PartisciErrorBody),
        (status = 415, description = "A bad update: not a JSON object, `app` or `ver` \
            missing or empty, a field too long, an `instance` out of 0 to 65535.",
            body = super::openapi::PartisciErrorBody),
        (status = 500, description = "The inventory failed to take the update in.",
            body = super::openapi::PartisciErrorBody),
        (status = 503, description = "The update was not recorded (the log or an actor \
            failed), or the credentials could not be checked.",
            body = super::openapi::PartisciErrorBody)))]
async fn update(
    request: HttpRequest,
    Sent { caller, face, body }: Sent<Partisci>,
) -> Result<HttpResponse, PartisciError> {
    let report = VersionReport::parse(&body).map_err(|e| bad_update(e.to_string()))?;
    let sender = request.peer_addr().map(|peer| peer.ip());
    let metadata = crate::http::metadata(&request, &caller);
    face.inventory
        .report(report, sender, Via::Http, metadata)
        .await?;
    Ok(HttpResponse::Ok().finish())
}

/// Clears the inventory, in danger mode only.
#[utoipa::path(post, path = "/api/v1/_danger/clear/", operation_id = "partisci_clear",
    summary = "Clear the inventory", description = super::openapi::CLEAR_DESCRIPTION,
    responses(
        (status = 200, description = "Cleared; the body is empty."),
        (status = 500, description = "The inventory failed to take the clear in.",
            body = super::openapi::PartisciErrorBody),
        (status = 503, description = "Not every host was cleared (the log or an actor \
            failed), or the credentials could not be checked.",
            body = super::openapi::PartisciErrorBody)))]
async fn clear(
    Visit { caller, face }: Admin<Partisci>,
    request: HttpRequest,
) -> Result<HttpResponse, PartisciError> {
    if !face.danger {
        return Err(PartisciError::forbidden(
            "clearing the inventory is off: enable it with `danger = true` in the [partisci] \
             section of the configuration (or ANNALS_PARTISCI_DANGER=true)",
        ));
    }
    let hosts = face
        .inventory
        .clear(crate::http::metadata(&request, &caller))
        .await?;
    tracing::warn!(hosts, user = ?caller.user, "the inventory was cleared through _danger/clear/");
    Ok(HttpResponse::Ok().finish())
}

/// `_partisci/` and `/debug/vars`: what this instance is.
#[utoipa::path(get, path = "/debug/vars", operation_id = "partisci_info",
    summary = "This instance", description = super::openapi::INFO_DESCRIPTION,
    responses((status = 200, description = "annals' version and the inventory's size.",
        body = super::openapi::PartisciInstance)))]
async fn info(Visit { face, .. }: Visit<Partisci>) -> Result<HttpResponse, PartisciError> {
    Ok(HttpResponse::Ok().json(super::openapi::PartisciInstance {
        version: env!("CARGO_PKG_VERSION"),
        server: "annals",
        versions: face.inventory.version_count(),
        danger: face.danger,
    }))
}
