//! The scan engine face: Patrowl engines at `/engines/<name>/`, on the main listener and on a
//! port of its own (`[patrowl] listen`).

use actix_web::{web, ResponseError};

use super::{face_common, Own, Start, Started};
use crate::config::{FaceSection, PatrowlSection};
use crate::domain::scan::Engines;
use crate::http::patrowl;

pub struct Patrowl;

face_common!(Patrowl: patrowl, PatrowlApi, ["/engines", "/engine"], |path| {
    patrowl::unrouted(format!(
        "{path} is not a route of the scan engines (theirs are under /engines/<name>/)"
    ))
    .error_response()
});

impl Patrowl {
    async fn launch(start: Start<'_>, section: &PatrowlSection) -> anyhow::Result<Started> {
        let engines = Engines::start(
            &start.core(),
            start.stores.blobs()?,
            start.declarations.engines.clone(),
            section.on_restart,
        )
        .await?;
        let mut started = Started::sharing(web::Data::new(patrowl::Patrowl::new(
            engines,
            start.gate(section.auth, section.max_body()),
        )));
        // Engines are reached over plain HTTP, as PatrowlManager reaches upstream's.
        started.own = start.own.map(|own| Own::Routes {
            listener: own.tcp,
            tls: None,
        });
        Ok(started)
    }
}
