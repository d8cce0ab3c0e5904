//! The HTTP server. For now it answers `/healthz`; the faces and the event API mount here.
//! Handlers parse, send one message and map the reply; nothing here touches storage.

use std::net::TcpListener;

use actix_web::{dev::Server, web, App, HttpResponse, HttpServer};

/// Binds nothing itself: the caller passes a bound listener, so that tests can use port 0.
pub fn server(listener: TcpListener) -> std::io::Result<Server> {
    let server = HttpServer::new(|| App::new().route("/healthz", web::get().to(healthz)))
        .listen(listener)?
        .shutdown_timeout(30)
        .run();
    Ok(server)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}
