//! The agents face: the GROS controller's scripts (`/auth/*.py`) and each agent's daemon
//! routes on the main listener, the local agent's daemon on a port of its own
//! (`[gros.agent] listen`), and the SSH listener for agents' uploads (`[gros.ssh] listen`,
//! `gros_ssh.rs`).

use actix_web::{web, ResponseError};

use super::{face_common, Own, Start, Started};
use crate::config::{FaceSection, GrosSection};
use crate::http::gros;

pub struct Gros;

// The per-agent routes speak the agent daemon's shape, the rest the controller's.
face_common!(Gros: gros, GrosApi, ["/auth", "/agents"], |path| {
    if path.starts_with("/agents/") || path == "/agents" {
        gros::AgentError::not_found(format!("The path '{path}' was not found."))
            .error_response()
    } else {
        gros::ControllerError::not_found(format!("{path} is not a controller script"))
            .error_response()
    }
});

impl Gros {
    async fn launch(start: Start<'_>, section: &GrosSection) -> anyhow::Result<Started> {
        let controller = crate::domain::gros::Gros::start(
            &start.core(),
            start.stores.secrets()?,
            start.stores.blobs()?,
            start.declarations.gros.clone(),
        )
        .await?;
        let face = web::Data::new(gros::GrosFace {
            gros: controller,
            max_body: section.max_body(),
            local: start.declarations.gros_agent.clone(),
            host: (!section.agent.host.is_empty()).then(|| section.agent.host.clone()),
        });
        let mut started = Started::sharing(face.clone());
        if let Some(listener) = start.others.take(super::GROS_SSH) {
            let secrets = start.stores.secrets()?;
            let (key, fingerprint) =
                crate::runtime::blocking(move || super::gros_ssh::host_key(&secrets)).await??;
            // Where it listens is logged with the other listeners (`gros_ssh listening`).
            tracing::info!(%fingerprint, "the GROS SSH listener's host key");
            started.on_stop.push(super::gros_ssh::start(
                listener,
                face.gros.clone(),
                start.stores.blobs()?,
                key,
                super::gros_ssh::Limits::of(&section.ssh),
                start.log.path(),
            )?);
        }
        if let Some(own) = start.own {
            started.own = Some(Own::Server(gros::serve_agent(
                own.tcp,
                face,
                start.listening,
            )?));
        }
        Ok(started)
    }
}
