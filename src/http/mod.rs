//! The HTTP server: the main listener serves `/healthz`, `/metrics`, the event API, the OpenAPI
//! document and every face at its own paths; a face's own listener serves that face's routes
//! only. Handlers parse, call one library function or send one message, and map the reply;
//! nothing here touches storage.

pub mod body;
pub mod caller;
pub mod error;
pub mod events;
pub mod failures;
pub mod gros;
pub mod hpcwaas;
pub mod openapi;
pub mod params;
pub mod partisci;
pub mod patrowl;
pub mod refstack;
pub mod tls;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{dev::Server, web, App, HttpResponse, HttpServer};

use crate::auth::{Access, Auth};
use crate::events::{EventLog, Metadata, Origin};
pub use caller::Guard;
use error::ApiError;

/// What the handlers share.
pub struct HttpState {
    pub log: EventLog,
    pub guard: Guard,
    pub faces: Faces,
    /// How long an idle event stream goes before a keep-alive comment.
    pub sse_keep_alive: Duration,
}

/// The faces a server runs, each with what its handlers share; `None` for one that is off.
#[derive(Clone, Default)]
pub struct Faces {
    pub partisci: Option<web::Data<partisci::Partisci>>,
    pub refstack: Option<web::Data<refstack::Refstack>>,
    pub patrowl: Option<web::Data<patrowl::Patrowl>>,
    pub hpcwaas: Option<web::Data<hpcwaas::Hpcwaas>>,
    pub gros: Option<web::Data<gros::GrosFace>>,
}

/// A face, for a listener of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Partisci,
    Refstack,
    Patrowl,
    Hpcwaas,
    Gros,
}

impl Face {
    /// Every face, for what must cover them all whether they run or not (the test that holds
    /// the OpenAPI document to the router). A new face goes here as well as in [`Face::routes`].
    pub const ALL: [Face; 5] = [
        Face::Partisci,
        Face::Refstack,
        Face::Patrowl,
        Face::Hpcwaas,
        Face::Gros,
    ];

    /// Registers the face's routes. Its handlers find what they share in the app data, which
    /// [`Faces`] adds for the faces that run.
    pub fn routes(self, config: &mut web::ServiceConfig) {
        match self {
            Face::Partisci => partisci::routes(config),
            Face::Refstack => refstack::routes(config),
            Face::Patrowl => patrowl::routes(config),
            Face::Hpcwaas => hpcwaas::routes(config),
            Face::Gros => gros::routes(config),
        }
    }
}

/// What one listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// The main listener: health, metrics, the event API and every face.
    Everything,
    /// One face's routes only.
    Only(Face),
}

impl Faces {
    fn configure(&self, config: &mut web::ServiceConfig, serves: Serves) {
        add(config, serves, Face::Partisci, &self.partisci);
        add(config, serves, Face::Refstack, &self.refstack);
        add(config, serves, Face::Patrowl, &self.patrowl);
        add(config, serves, Face::Hpcwaas, &self.hpcwaas);
        add(config, serves, Face::Gros, &self.gros);
    }
}

/// Adds `face` with what its handlers share, when it runs and the listener serves it.
fn add<T: 'static>(
    config: &mut web::ServiceConfig,
    serves: Serves,
    face: Face,
    shared: &Option<web::Data<T>>,
) {
    let wanted = serves == Serves::Everything || serves == Serves::Only(face);
    if let Some(shared) = shared.as_ref().filter(|_| wanted) {
        config.app_data(shared.clone());
        face.routes(config);
    }
}

/// A resource that answers `route`, and any other method with 405 in a face's own shape:
/// `wrong_method` makes the face's error from a message naming the path and the method.
pub fn only<E>(
    path: &str,
    route: actix_web::Route,
    wrong_method: fn(String) -> E,
) -> actix_web::Resource
where
    E: actix_web::ResponseError + 'static,
{
    web::resource(path).route(route).default_service(web::to(
        move |request: actix_web::HttpRequest| async move {
            wrong_method(format!(
                "{} does not accept {} requests",
                request.path(),
                request.method()
            ))
            .error_response()
        },
    ))
}

/// The metadata of events an HTTP request causes: who sent it, from where, and a fresh
/// correlation id grouping every event of the request.
pub fn metadata(request: &actix_web::HttpRequest, caller: &crate::auth::Caller) -> Metadata {
    Metadata {
        correlation_id: Some(uuid::Uuid::now_v7()),
        causation_id: None,
        origin: Origin::Http {
            addr: request
                .peer_addr()
                .map(|peer| peer.to_string())
                .unwrap_or_default(),
            user: caller.user.clone(),
        },
    }
}

impl HttpState {
    /// A state with no accounts: every route open, as on a loopback listener by default.
    pub fn open(log: EventLog) -> HttpState {
        HttpState {
            log,
            guard: Guard {
                auth: Arc::new(Auth::new(Vec::new()).expect("no accounts is valid")),
                api: Access::Admin,
            },
            faces: Faces::default(),
            sse_keep_alive: events::KEEP_ALIVE,
        }
    }
}

/// Serves everything on a listener the caller bound (so that tests can use port 0), over TLS
/// when given a configuration.
pub fn server(
    listener: TcpListener,
    state: HttpState,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    serve(listener, state, Serves::Everything, tls)
}

/// Serves what `serves` says on a listener the caller bound.
pub fn serve(
    listener: TcpListener,
    state: HttpState,
    serves: Serves,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    crate::metrics::handle();
    openapi::check().map_err(std::io::Error::other)?;
    let faces = state.faces;
    let log = web::Data::new(state.log);
    let guard = web::Data::new(state.guard);
    let keep_alive = web::Data::new(events::KeepAlive(state.sse_keep_alive));
    let verifier = web::Data::new(std::sync::Arc::new(
        crate::events::verify::Verifier::default(),
    ));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(log.clone())
            .app_data(guard.clone())
            .app_data(keep_alive.clone())
            .app_data(verifier.clone())
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                ApiError::BadRequest(format!("bad query: {error}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|error, _| {
                ApiError::BadRequest(format!("bad path: {error}")).into()
            }))
            .wrap(actix_web::middleware::from_fn(count_request))
            // The faces first: their clients' requests then meet static prefixes before the
            // event API's patterns, which actix matches with a regex each. No face route
            // overlaps a main one.
            .configure(|config| {
                faces.configure(config, serves);
                if serves == Serves::Everything {
                    routes(config);
                }
            })
    });
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    // Signals are the caller's to handle (`startup::Application::run_until`), once for every
    // listener.
    Ok(server.shutdown_timeout(30).disable_signals().run())
}

/// Counts each answered request by route pattern and status, on every listener, and logs it by
/// [`failures::log_answer`]'s rule.
pub async fn count_request(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let response = next.call(request).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    failures::log_answer(&route, &response);
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => status)
        .increment(1);
    Ok(response)
}

/// Every route of the main listener but the faces', which [`Faces`] adds. Each routing module
/// adds its `configure` line here (a face: in [`Face::routes`]) and its piece of the OpenAPI
/// document in `openapi::PIECES`.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/metrics", web::get().to(prometheus))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .configure(events::routes)
        .configure(openapi::routes);
}

/// The operational routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(prometheus, healthz, readyz),
    components(schemas(Readiness)),
    tags((name = "operations",
        description = "Health, readiness and metrics: open to anyone, they hold no data."))
)]
pub struct OperationsApi;

/// Every metric in Prometheus' text format. Open like `/healthz`: it holds counts, not data.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    summary = "Every metric, in Prometheus' text format",
    responses((status = 200, description = "Prometheus' text exposition format 0.0.4.",
        body = String, content_type = "text/plain; version=0.0.4")))]
async fn prometheus() -> HttpResponse {
    let handle = crate::metrics::handle();
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up.", body = String,
        content_type = "text/plain", example = "ok\n")))]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// The server takes requests: the log is open and start-up reconciliation is done (the listener
/// only starts after both). Answers the durable head.
#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "The server takes requests",
    responses((status = 200, description = "Ready, with the log's durable head.",
        body = Readiness)))]
async fn readyz(log: web::Data<EventLog>) -> HttpResponse {
    HttpResponse::Ok().json(Readiness {
        status: "ready",
        head: log.head(),
    })
}

/// The body of `/readyz`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Always `ready`: a server that is not ready does not listen yet.
    #[schema(value_type = String, example = "ready")]
    pub status: &'static str,
    /// The log's durable head: the position of its last durable event (0: none).
    #[schema(value_type = u64)]
    pub head: crate::events::Position,
}
