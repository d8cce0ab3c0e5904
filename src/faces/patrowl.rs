//! The scan engine face: Patrowl engines at `/engines/<name>/`, on the main listener and on a
//! port of its own (`[patrowl] listen`).

use actix_web::{web, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use utoipa::openapi::OpenApi;

use super::{own_listen, Face, Own, Start, Started};
use crate::config::Config;
use crate::domain::scan::Engines;
use crate::http::patrowl;

pub struct Patrowl;

impl Face for Patrowl {
    fn name(&self) -> &'static str {
        "patrowl"
    }

    fn enabled(&self, config: &Config) -> bool {
        config.patrowl.enabled
    }

    fn own_listen<'c>(&self, config: &'c Config) -> Option<&'c str> {
        own_listen(config.patrowl.enabled, &config.patrowl.listen)
    }

    fn start<'a>(&'a self, start: Start<'a>) -> LocalBoxFuture<'a, anyhow::Result<Started>> {
        Box::pin(async move {
            let section = &start.config.patrowl;
            let engines = Engines::start(
                start.log.clone(),
                start.clock.clone(),
                start.settings,
                start.stores.blobs()?,
                start.declarations.engines.clone(),
            )
            .await?;
            let mut started = Started::sharing(web::Data::new(patrowl::Patrowl::new(
                engines,
                start.auth.clone(),
                section.auth,
                (section.max_body_kb * 1024) as usize,
            )));
            // Engines are reached over plain HTTP, as PatrowlManager reaches upstream's.
            started.own = start.own.map(|own| Own::Routes {
                listener: own.tcp,
                tls: None,
            });
            Ok(started)
        })
    }

    fn routes(&self, router: &mut crate::http::Router) {
        patrowl::routes(router)
    }

    fn openapi(&self) -> OpenApi {
        <patrowl::openapi::PatrowlApi as utoipa::OpenApi>::openapi()
    }

    fn prefixes(&self) -> &'static [&'static str] {
        &["/engines", "/engine"]
    }

    fn not_found(&self, path: &str) -> HttpResponse {
        patrowl::unrouted(format!(
            "{path} is not a route of the scan engines (theirs are under /engines/<name>/)"
        ))
        .error_response()
    }
}
