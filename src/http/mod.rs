//! The HTTP server: `/healthz` and the event API, with the faces to come mounting here.
//! Handlers parse, call one library function or send one message, and map the reply; nothing
//! here touches storage.

pub mod caller;
pub mod error;
pub mod events;
pub mod params;
pub mod tls;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{dev::Server, web, App, HttpResponse, HttpServer};

use crate::auth::{Access, Auth};
use crate::events::EventLog;
pub use caller::Guard;
use error::ApiError;

/// What the handlers share.
pub struct HttpState {
    pub log: EventLog,
    pub guard: Guard,
    /// How long an idle event stream waits before a keep-alive comment.
    pub sse_keep_alive: Duration,
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
            sse_keep_alive: events::KEEP_ALIVE,
        }
    }
}

/// Serves on a listener the caller bound (so that tests can use port 0), over TLS when given a
/// configuration.
pub fn server(
    listener: TcpListener,
    state: HttpState,
    tls: Option<rustls::ServerConfig>,
) -> std::io::Result<Server> {
    crate::metrics::handle();
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
            .wrap_fn(|request, service| {
                use actix_web::dev::Service;
                let answered = service.call(request);
                async move {
                    let response = answered.await?;
                    let route = response
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".into());
                    let status = response.status().as_u16().to_string();
                    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => status)
                        .increment(1);
                    Ok(response)
                }
            })
            .route("/metrics", web::get().to(prometheus))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .configure(events::routes)
    });
    let server = match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?,
        None => server.listen(listener)?,
    };
    Ok(server.shutdown_timeout(30).run())
}

/// Every metric in Prometheus' text format. Open like `/healthz`: it holds counts, not data.
async fn prometheus() -> HttpResponse {
    let handle = crate::metrics::handle();
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

/// The process is up.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// The server takes requests: the log is open and start-up reconciliation is done (the listener
/// only starts after both). Answers the durable head.
async fn readyz(log: web::Data<EventLog>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "head": log.head() }))
}
