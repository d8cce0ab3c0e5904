//! The workflow face: eFlows4HPC HPCWaaS (`/workflows`, `/executions`, `/ssh_keys`), on the
//! main listener and on a port of its own (`[hpcwaas] listen`, over TLS when configured).

use std::time::Duration;

use actix_web::{web, ResponseError};

use super::{face_common, tls_config, Own, Start, Started};
use crate::config::{FaceSection, HpcwaasSection};
use crate::domain::sshkey::SshKeys;
use crate::domain::workflow::{effects::RunLimits, Executions};
use crate::http::hpcwaas;

/// Where workflow steps get their scratch directories, under the data directory; emptied at
/// every start.
pub const WORK_DIR: &str = "hpcwaas-work";

pub struct Hpcwaas;

face_common!(Hpcwaas: hpcwaas, HpcwaasApi, ["/workflows", "/executions", "/ssh_keys"], |path| {
    hpcwaas::HpcwaasError::not_found(format!("{path} is not a route of the workflow API"))
        .error_response()
});

impl Hpcwaas {
    async fn launch(start: Start<'_>, section: &HpcwaasSection) -> anyhow::Result<Started> {
        let tls = tls_config("hpcwaas", &section.tls_cert, &section.tls_key)?;
        let core = start.core();
        let keys = SshKeys::start(&core, start.stores.secrets()?);
        let limits = RunLimits {
            kill_grace: Duration::from_secs(section.kill_grace_s),
            max_line_bytes: section.max_line_bytes,
            max_log_lines: section.max_log_lines,
            max_output_bytes: (section.max_output_kb * 1024) as usize,
            reattach: section.on_restart == crate::config::OnRestart::Reattach,
        };
        let executions = Executions::start(
            &core,
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
            gate: start.gate(section.auth, section.max_body()),
        }));
        started.own = start.own.map(|own| Own::Routes {
            listener: own.tcp,
            tls: tls.map(Box::new),
        });
        Ok(started)
    }
}
