//! The HTTP server: the main listener serves `/healthz`, `/metrics`, the event API, the OpenAPI
//! document and every face at its own paths; a face's own listener serves that face's routes
//! only. Handlers parse, call one library function or send one message, and map the reply;
//! nothing here touches storage.

pub mod body;
pub mod caller;
pub mod console;
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

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{HttpServiceFactory, Server, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer, ResponseError};

use crate::auth::{Access, Auth};
use crate::events::{EventLog, Metadata, Origin};
pub use caller::{Gate, Guard};
use error::{Api, ApiError, Refusal, Shape};
use openapi::RefusesOtherMethods;

/// What the handlers share.
pub struct HttpState {
    pub log: EventLog,
    pub guard: Guard,
    pub faces: Faces,
    /// How long an idle event stream goes before a keep-alive comment.
    pub sse_keep_alive: Duration,
}

/// What every listener does alike, whatever it serves: set in `[http]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listening {
    /// How long a request body may go with no byte arriving before the request is answered
    /// `408` (`[http] body_timeout_s`).
    pub body_timeout: Duration,
    /// Whether every answered request is logged at INFO (`[http] request_log`).
    pub request_log: bool,
}

impl Default for Listening {
    fn default() -> Self {
        Listening {
            body_timeout: body::BODY_TIMEOUT,
            request_log: false,
        }
    }
}

/// A face as the HTTP server knows it: its routes, its piece of the OpenAPI document, the paths
/// it owns and its answer to a path it does not know. The faces module makes each one.
pub trait Served: Sync {
    /// The face's name: its configuration section (`[partisci]`), its label in logs.
    fn name(&self) -> &'static str;

    /// Registers the face's routes; their handlers find what they share in the face's
    /// [`AppData`].
    fn routes(&self, router: &mut Router);

    /// The face's piece of the OpenAPI document.
    fn openapi(&self) -> utoipa::openapi::OpenApi;

    /// The paths the face owns on the main listener: a path is the face's when it is one of
    /// these or continues one after a `/`. An unmatched path is answered in the shape of the
    /// face that owns it.
    fn prefixes(&self) -> &'static [&'static str];

    /// The face's `404` for a path none of its routes matches, in the face's own error shape.
    fn not_found(&self, path: &str) -> HttpResponse;

    /// Whether `path` is under one of the face's [`Served::prefixes`].
    fn owns(&self, path: &str) -> bool {
        self.prefixes().iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// What a face's handlers share, added to an app: called for each listener (and each of its
/// workers) that serves the face.
pub type AppData = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// The faces a server runs, each with what its handlers share, and every face it may run,
/// which the OpenAPI document describes whether it runs or not.
#[derive(Clone, Default)]
pub struct Faces {
    running: Vec<(&'static dyn Served, AppData)>,
    described: Vec<&'static dyn Served>,
}

/// What one listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serves {
    /// The main listener: health, metrics, the event API and every face.
    Everything,
    /// One face's routes only, by the face's name.
    Only(&'static str),
}

impl Serves {
    fn serves(self, face: &dyn Served) -> bool {
        self == Serves::Everything || self == Serves::Only(face.name())
    }
}

impl Faces {
    /// No face running yet, of those `described`, every face the server may run.
    pub fn describing(described: Vec<&'static dyn Served>) -> Faces {
        Faces {
            running: Vec::new(),
            described,
        }
    }

    /// Adds a face that runs, with what its handlers share.
    pub fn add(&mut self, face: &'static dyn Served, data: AppData) {
        self.running.push((face, data));
    }

    /// Adds the faces the listener serves, with what their handlers share.
    fn configure(&self, router: &mut Router, serves: Serves) {
        for (face, data) in self.running.iter().filter(|(face, _)| serves.serves(*face)) {
            data(router.config());
            face.routes(router);
        }
    }
}

/// The `404` of a path no route of the listener matches: on a face's own listener, in that
/// face's shape; on the main listener, in the shape of the running face whose prefix the path
/// is under, else in the event API's.
fn not_found(path: &str, serves: Serves, faces: &Faces) -> HttpResponse {
    let owner = faces
        .running
        .iter()
        .map(|(face, _)| *face)
        .find(|face| match serves {
            Serves::Only(name) => face.name() == name,
            Serves::Everything => face.owns(path),
        });
    match owner {
        Some(face) => face.not_found(path),
        None => ApiError::not_found(format!(
            "{path} is not a route of annals (every route: /api/docs/)"
        ))
        .error_response(),
    }
}

/// `resource`, answering any method it does not route with 405 in face `F`'s shape and an
/// `Allow` header naming `allowed`, the methods it answers (RFC 9110 asks for both), and a query
/// or path it cannot parse with 400 in that shape too.
pub fn only<F: Shape>(resource: actix_web::Resource, allowed: &[Method]) -> actix_web::Resource {
    resource
        .default_service(refuse_method::<F>(allowed))
        .app_data(web::QueryConfig::default().error_handler(|error, _| {
            Refusal::<F>::bad_request(format!("bad query: {error}")).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|error, _| {
            Refusal::<F>::bad_request(format!("bad path: {error}")).into()
        }))
}

/// What answers a method a resource does not take: 405 in face `F`'s shape, with an `Allow`
/// header naming `allowed` (and `HEAD` beside `GET`).
pub fn refuse_method<F: Shape>(allowed: &[Method]) -> actix_web::Route {
    let allow = allowed
        .iter()
        .flat_map(|method| match *method {
            Method::GET => vec![Method::GET, Method::HEAD],
            _ => vec![method.clone()],
        })
        .map(|method| method.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    web::to(move |request: actix_web::HttpRequest| {
        let mut answer = F::wrong_method(format!(
            "{} does not accept {} requests",
            request.path(),
            request.method()
        ))
        .error_response();
        if let Ok(allow) = actix_web::http::header::HeaderValue::from_str(&allow) {
            answer
                .headers_mut()
                .insert(actix_web::http::header::ALLOW, allow);
        }
        async move { answer }
    })
}

/// One route a listener serves: a method (`None`: any method) and a path pattern as actix
/// reads it, scopes' prefixes included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routed {
    pub method: Option<Method>,
    pub pattern: String,
}

/// Registers routes on an actix `ServiceConfig` and lists each one as it does, so that the list
/// (the faces module's `route_table`) comes from the very calls that route: actix-web has no
/// public way to list an app's routes.
pub struct Router<'c> {
    config: &'c mut web::ServiceConfig,
    prefix: String,
    /// Where each route is listed; `None` when nothing asks for the list (a worker's app).
    table: Option<&'c mut Vec<Routed>>,
}

impl<'c> Router<'c> {
    /// Routes on `config`, listing each route in `table`.
    pub fn new(config: &'c mut web::ServiceConfig, table: &'c mut Vec<Routed>) -> Router<'c> {
        Router {
            config,
            prefix: String::new(),
            table: Some(table),
        }
    }

    /// Routes on `config` without listing them: what each worker's app does.
    fn unlisted(config: &'c mut web::ServiceConfig) -> Router<'c> {
        Router {
            config,
            prefix: String::new(),
            table: None,
        }
    }

    /// The app being configured, for what is not a route (app data).
    pub fn config(&mut self) -> &mut web::ServiceConfig {
        self.config
    }

    fn list(&mut self, method: Option<Method>, path: &str) {
        if let Some(table) = &mut self.table {
            table.push(Routed {
                method,
                pattern: format!("{}{path}", self.prefix),
            });
        }
    }

    /// A resource at `path` serving each `(method, handler)` of `routes`, which `finish`
    /// completes, given the methods routed (its answer to other methods, its app data, its
    /// middleware).
    pub fn resource<const N: usize, R: HttpServiceFactory + 'static>(
        &mut self,
        path: &str,
        routes: [(Method, actix_web::Route); N],
        finish: impl FnOnce(actix_web::Resource, &[Method]) -> R,
    ) -> &mut Self {
        let mut resource = web::resource(path);
        let mut allowed = Vec::with_capacity(N);
        for (method, handler) in routes {
            self.list(Some(method.clone()), path);
            resource = resource.route(handler.method(method.clone()));
            allowed.push(method);
        }
        self.config.service(finish(resource, &allowed));
        self
    }

    /// A resource at `path` serving `handler` whatever the method, which `finish` completes.
    pub fn any<R: HttpServiceFactory + 'static>(
        &mut self,
        path: &str,
        handler: actix_web::Route,
        finish: impl FnOnce(actix_web::Resource) -> R,
    ) -> &mut Self {
        self.list(None, path);
        self.config
            .service(finish(web::resource(path).route(handler)));
        self
    }

    /// A service that is not a resource (Swagger UI's files), made by `service` from its
    /// pattern `path` and serving `method` there.
    pub fn service<S: HttpServiceFactory + 'static>(
        &mut self,
        method: Method,
        path: &'static str,
        service: impl FnOnce(&'static str) -> S,
    ) -> &mut Self {
        self.list(Some(method), path);
        self.config.service(service(path));
        self
    }

    /// A scope under `prefix` with the routes `routes` registers in it, which `finish`
    /// completes (its default service).
    pub fn scope<R: HttpServiceFactory + 'static>(
        &mut self,
        prefix: &str,
        routes: impl FnOnce(&mut Router),
        finish: impl FnOnce(actix_web::Scope) -> R,
    ) -> &mut Self {
        let full = format!("{}{prefix}", self.prefix);
        let table = self.table.as_deref_mut();
        let scope = web::scope(prefix).configure(|config| {
            routes(&mut Router {
                config,
                prefix: full,
                table,
            })
        });
        self.config.service(finish(scope));
        self
    }
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
    serve(
        listener,
        state,
        Serves::Everything,
        tls,
        Listening::default(),
    )
}

/// Serves what `serves` says on a listener the caller bound.
pub fn serve(
    listener: TcpListener,
    state: HttpState,
    serves: Serves,
    tls: Option<rustls::ServerConfig>,
    listening: Listening,
) -> std::io::Result<Server> {
    crate::metrics::handle();
    let document = match serves {
        Serves::Everything => Some(web::Data::new(
            openapi::Document::of(&state.faces.described).map_err(std::io::Error::other)?,
        )),
        Serves::Only(_) => None,
    };
    let faces = state.faces;
    // The read model of streams by kind, for the event API's browsing routes: only the main
    // listener serves them.
    let streams = match serves {
        Serves::Everything => Some(web::Data::new(
            crate::domain::streams::Streams::start(state.log.clone())
                .map_err(std::io::Error::other)?,
        )),
        Serves::Only(_) => None,
    };
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
            .configure(|config| {
                if let Some(document) = &document {
                    config.app_data(document.clone());
                }
                if let Some(streams) = &streams {
                    config.app_data(streams.clone());
                }
            })
            .app_data(web::QueryConfig::default().error_handler(|error, _| {
                ApiError::bad_request(format!("bad query: {error}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|error, _| {
                ApiError::bad_request(format!("bad path: {error}")).into()
            }))
            .app_data(listening)
            // Clients join a base URL and a path, so a base given with a trailing slash asks
            // for `//v1/…`; merge the slashes as a proxy in front of the upstream servers does.
            .wrap(actix_web::middleware::NormalizePath::new(
                actix_web::middleware::TrailingSlash::MergeOnly,
            ))
            .wrap(actix_web::middleware::from_fn(count_request))
            .wrap(actix_web::middleware::from_fn(every_request))
            // The faces first: their clients' requests then meet static prefixes before the
            // event API's patterns, which actix matches with a regex each. No face route
            // overlaps a main one.
            .configure(|config| {
                let mut router = Router::unlisted(config);
                faces.configure(&mut router, serves);
                if serves == Serves::Everything {
                    routes(&mut router);
                }
            })
            .default_service(web::to({
                let faces = faces.clone();
                move |request: actix_web::HttpRequest| {
                    let answer = not_found(request.path(), serves, &faces);
                    async move { answer }
                }
            }))
    });
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    // Signals are the caller's to handle (`startup::Application::run_until`), once for every
    // listener.
    Ok(server.shutdown_timeout(30).disable_signals().run())
}

/// What every listener does to every request, outermost: answers `HEAD` through the `GET`
/// route and drops the body (actix sends the `Content-Length` of a body of known size and no
/// byte of it; an unbounded one, such as an event stream, is not even started), closes the
/// connection of a body that stopped arriving, and logs the answer when the listener's
/// [`Listening`] says so.
pub async fn every_request(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let head = request.method() == Method::HEAD;
    if head {
        request.head_mut().method = Method::GET;
    }
    let logged = request
        .app_data::<Listening>()
        .is_some_and(|listening| listening.request_log);
    let started = logged.then(std::time::Instant::now);
    let response = next.call(request).await?;
    if let Some(started) = started {
        log_request(&response, head, started.elapsed());
    }
    // A body that stopped arriving leaves the connection in the middle of it. actix closes a
    // connection whose body is unread only while the body is still held when the answer goes
    // out (a chunked one it would wait to drain, for ever from a silent client): the answer
    // holds it.
    let abandoned = response
        .request()
        .extensions_mut()
        .remove::<body::AbandonedBody>();
    Ok(response.map_body(|_, body| {
        if head && body.size() == actix_web::body::BodySize::Stream {
            EitherBody::right(actix_web::body::BoxBody::new(actix_web::body::None::new()))
        } else if let Some(abandoned) = abandoned {
            EitherBody::right(abandoned.held_by(body.boxed()))
        } else {
            EitherBody::left(body)
        }
    }))
}

/// One line of the request log, at INFO: who asked what, the answer and how long it took.
fn log_request<B>(response: &ServiceResponse<B>, head: bool, took: Duration) {
    let request = response.request();
    let method = if head {
        &Method::HEAD
    } else {
        request.method()
    };
    let peer = request
        .peer_addr()
        .map(|peer| peer.to_string())
        .unwrap_or_default();
    tracing::info!(
        target: "annals::request",
        %method,
        path = request.path(),
        status = response.status().as_u16(),
        took_ms = took.as_millis() as u64,
        peer,
        "request"
    );
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
/// that is not a face adds its `routes` call here and its piece of the OpenAPI document in
/// `openapi.rs`; a face is listed in the faces module's `FACES` instead.
pub fn routes(router: &mut Router) {
    router
        .resource(
            "/metrics",
            [(Method::GET, web::to(prometheus))],
            only::<Api>,
        )
        .resource("/healthz", [(Method::GET, web::to(healthz))], only::<Api>)
        .resource("/readyz", [(Method::GET, web::to(readyz))], only::<Api>)
        .resource("/", [(Method::GET, web::to(console::console))], only::<Api>);
    events::routes(router);
    openapi::routes(router);
}

/// The operational routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(prometheus, healthz, readyz),
    components(schemas(Readiness)),
    modifiers(&RefusesOtherMethods),
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
