//! The workflow face: eFlows4HPC HPCWaaS (`/workflows`, `/executions`, `/ssh_keys`), on the
//! main listener and on a port of its own (`[hpcwaas] listen`, over TLS when configured).

use std::time::Duration;

use actix_web::{web, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use utoipa::openapi::OpenApi;

use super::{own_listen, tls_config, Face, Own, Start, Started};
use crate::config::Config;
use crate::domain::sshkey::SshKeys;
use crate::domain::workflow::{effects::RunLimits, Executions};
use crate::http::hpcwaas;

/// Where workflow steps get their scratch directories, under the data directory; emptied at
/// every start.
pub const WORK_DIR: &str = "hpcwaas-work";

pub struct Hpcwaas;

impl Face for Hpcwaas {
    fn name(&self) -> &'static str {
        "hpcwaas"
    }

    fn enabled(&self, config: &Config) -> bool {
        config.hpcwaas.enabled
    }

    fn own_listen<'c>(&self, config: &'c Config) -> Option<&'c str> {
        own_listen(config.hpcwaas.enabled, &config.hpcwaas.listen)
    }

    fn start<'a>(&'a self, start: Start<'a>) -> LocalBoxFuture<'a, anyhow::Result<Started>> {
        Box::pin(async move {
            let section = &start.config.hpcwaas;
            let tls = tls_config("hpcwaas", &section.tls_cert, &section.tls_key)?;
            let keys = SshKeys::start(
                start.log.clone(),
                start.clock.clone(),
                start.settings,
                start.stores.secrets()?,
            );
            let limits = RunLimits {
                kill_grace: Duration::from_secs(section.kill_grace_s),
                max_line_bytes: section.max_line_bytes,
                max_log_lines: section.max_log_lines,
                max_output_bytes: (section.max_output_kb * 1024) as usize,
            };
            let executions = Executions::start(
                start.log.clone(),
                start.clock.clone(),
                start.settings,
                start.declarations.workflows.clone(),
                keys.clone(),
                limits,
                start.log.path().join(WORK_DIR),
            )
            .await?;
            let mut started = Started::sharing(web::Data::new(hpcwaas::Hpcwaas {
                executions,
                keys,
                log: start.log.clone(),
                auth: start.auth.clone(),
                access: section.auth,
                max_body: (section.max_body_kb * 1024) as usize,
            }));
            started.own = start.own.map(|own| Own::Routes {
                listener: own.tcp,
                tls: tls.map(Box::new),
            });
            Ok(started)
        })
    }

    fn routes(&self, router: &mut crate::http::Router) {
        hpcwaas::routes(router)
    }

    fn openapi(&self) -> OpenApi {
        <hpcwaas::openapi::HpcwaasApi as utoipa::OpenApi>::openapi()
    }

    fn prefixes(&self) -> &'static [&'static str] {
        &["/workflows", "/executions", "/ssh_keys"]
    }

    fn not_found(&self, path: &str) -> HttpResponse {
        hpcwaas::HpcwaasError::not_found(format!("{path} is not a route of the workflow API"))
            .error_response()
    }
}
