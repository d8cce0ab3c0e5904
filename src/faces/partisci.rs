//! The inventory face: Partisci's HTTP API and UDP updates, on the main listener and on a port
//! of its own (`[partisci] listen`, HTTP and UDP on one port).

use std::time::Duration;

use actix_web::{web, ResponseError};

use super::{face_common, tls_config, Own, Start, Started};
use crate::config::{FaceSection, PartisciSection};
use crate::domain::inventory::Inventory;
use crate::http::partisci;

pub struct Partisci;

face_common!(Partisci: partisci udp, PartisciApi, ["/api/v1", "/debug"], |path| {
    partisci::PartisciError::not_found(format!("{path} is not a Partisci route"))
        .error_response()
});

impl Partisci {
    async fn launch(start: Start<'_>, section: &PartisciSection) -> anyhow::Result<Started> {
        // Checked before anything starts, as the other faces do.
        let tls = tls_config("partisci", &section.tls_cert, &section.tls_key)?;
        let retention = (section.retention_s > 0).then(|| Duration::from_secs(section.retention_s));
        let inventory = Inventory::start(&start.core(), retention).await?;
        let mut started = Started::sharing(web::Data::new(partisci::Partisci {
            inventory: inventory.clone(),
            gate: start.gate(section.auth, section.max_body()),
            danger: section.danger,
            rendered: Default::default(),
        }));
        started.tasks.extend(inventory.spawn_sweeper());
        if let Some(own) = start.own {
            if let Some(socket) = own.udp {
                let mut udp =
                    partisci::udp::Receiver::start(socket, inventory, actix::Arbiter::current())?;
                started.on_stop.push(Box::new(move || udp.stop()));
            }
            started.own = Some(Own::Routes {
                listener: own.tcp,
                tls: tls.map(Box::new),
            });
        }
        Ok(started)
    }
}
