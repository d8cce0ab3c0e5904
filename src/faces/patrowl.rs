//! The scan engine face: Patrowl engines at `/engines/<name>/`, on the main listener and on a
//! port of its own (`[patrowl] listen`).

use actix_web::{web, ResponseError};
use futures_util::future::LocalBoxFuture;

use super::{face_common, Face, Own, Start, Started};
use crate::config::FaceSection;
use crate::domain::scan::Engines;
use crate::http::patrowl;

pub struct Patrowl;

face_common!(Patrowl: patrowl, PatrowlApi, ["/engines", "/engine"], |path| {
    patrowl::unrouted(format!(
        "{path} is not a route of the scan engines (theirs are under /engines/<name>/)"
    ))
    .error_response()
});

impl Face for Patrowl {
    face_common!(section patrowl);

    fn start<'a>(&'a self, start: Start<'a>) -> LocalBoxFuture<'a, anyhow::Result<Started>> {
        Box::pin(async move {
            let section = &start.config.patrowl;
            let engines = Engines::start(
                &start.core(),
                start.stores.blobs()?,
                start.declarations.engines.clone(),
            )
            .await?;
            let mut started = Started::sharing(web::Data::new(patrowl::Patrowl::new(
                engines,
                start.auth.clone(),
                section.auth,
                section.max_body(),
            )));
            // Engines are reached over plain HTTP, as PatrowlManager reaches upstream's.
            started.own = start.own.map(|own| Own::Routes {
                listener: own.tcp,
                tls: None,
            });
            Ok(started)
        })
    }
}
