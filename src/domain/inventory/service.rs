//! The inventory's commands and queries: a report goes to its host's actor and is answered once
//! the read model has folded it (so the next query sees it); queries read the model; a clear
//! and the retention sweep send one command per host. It holds no state of its own.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt};

use super::read_model::{AppSummary, HostSummary, InventoryModel, InventoryState, VersionFilter};
use super::{host_entity_id, HostCommand, HostRecord, HostRejection, Version, VersionReport, Via};
use crate::domain::{start_read_model, Core, MODEL_WAIT};
use crate::events::{Metadata, Position};
use crate::runtime::projection::ProjectionError;
use crate::runtime::{Clock, CommandError, Entities, ProjectionHandle};

/// How long start-up waits for the read model to fold the log.
const STARTUP_WAIT: Duration = Duration::from_secs(3600);

/// How many hosts a clear or a sweep commands at once.
const FAN_OUT: usize = 64;

/// The longest pause between two retention sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Rejected(HostRejection),
    /// The log or an actor failed: nothing was acknowledged.
    #[error("the report was not recorded: {0}")]
    NotRecorded(#[source] CommandError<HostRejection>),
    #[error(transparent)]
    Model(#[from] ProjectionError),
}

impl From<CommandError<HostRejection>> for InventoryError {
    fn from(error: CommandError<HostRejection>) -> Self {
        error
            .rejection()
            .map_or_else(Self::NotRecorded, Self::Rejected)
    }
}

/// The inventory of one server. Cheap to clone.
#[derive(Clone)]
pub struct Inventory {
    hosts: Entities<HostRecord>,
    model: ProjectionHandle<InventoryState>,
    clock: Arc<dyn Clock>,
    /// Versions not reported for this long leave the queries and are expired; `None` keeps
    /// them for ever.
    retention: Option<Duration>,
}

impl Inventory {
    /// Starts the host directory and the read model (from its checkpoint), on the current actix
    /// system, and returns once the model has folded the whole log: the first query after
    /// start-up sees everything acknowledged before.
    pub async fn start(
        core: &Core,
        retention: Option<Duration>,
    ) -> Result<Inventory, ProjectionError> {
        let model = start_read_model(InventoryModel, core, STARTUP_WAIT).await?;
        Ok(Inventory {
            hosts: core.entities(),
            model,
            clock: core.clock.clone(),
            retention,
        })
    }

    /// Records a report sent from `sender` (unknown: no `host_ip`) and returns its position,
    /// without waiting for the read model.
    pub async fn record(
        &self,
        report: VersionReport,
        sender: Option<IpAddr>,
        via: Via,
        metadata: Metadata,
    ) -> Result<Position, InventoryError> {
        let id = host_entity_id(report.host());
        let command = HostCommand::Report {
            report,
            host_ip: host_ip(sender),
            via,
        };
        let executed = self.hosts.execute(&id, command, metadata).await?;
        Ok(executed.first_position.unwrap_or_default())
    }

    /// Records a report and returns once every query sees it.
    pub async fn report(
        &self,
        report: VersionReport,
        sender: Option<IpAddr>,
        via: Via,
        metadata: Metadata,
    ) -> Result<(), InventoryError> {
        let position = self.record(report, sender, via, metadata).await?;
        Ok(self.model.wait_for(position, MODEL_WAIT).await?)
    }

    /// The oldest update still active, if retention is on.
    fn active_since(&self) -> Option<DateTime<Utc>> {
        self.retention
            .and_then(|window| chrono::Duration::from_std(window).ok())
            .map(|window| self.clock.now() - window)
    }

    pub fn versions(&self, filter: &VersionFilter) -> Vec<Arc<Version>> {
        let since = self.active_since();
        self.model
            .read(|view| view.state.versions(filter, since).cloned().collect())
    }

    pub fn apps(&self) -> Vec<AppSummary> {
        let since = self.active_since();
        self.model.read(|view| view.state.apps(since))
    }

    pub fn hosts(&self) -> Vec<HostSummary> {
        let since = self.active_since();
        self.model.read(|view| view.state.hosts(since))
    }

    /// The position the read model has folded: the summaries change only when it moves, unless
    /// retention is on ([`Inventory::retains`]).
    pub fn position(&self) -> crate::events::Position {
        self.model.position()
    }

    /// Whether versions leave the queries as the clock moves.
    pub fn retains(&self) -> bool {
        self.retention.is_some()
    }

    /// How many versions the read model holds, active or not.
    pub fn version_count(&self) -> usize {
        self.model.read(|view| view.state.len())
    }

    /// Clears every host's record, each with its own `HostCleared` event, and returns once the
    /// queries see an empty inventory (reports that arrive meanwhile may stay).
    pub async fn clear(&self, metadata: Metadata) -> Result<usize, InventoryError> {
        let hosts: Vec<String> = self
            .model
            .read(|view| view.state.host_ids().map(str::to_owned).collect());
        self.command_each(hosts, || HostCommand::Clear, metadata)
            .await
    }

    /// One retention sweep: expires, with events, every version not reported within the
    /// window. Returns how many hosts had something to expire.
    pub async fn expire(&self) -> Result<usize, InventoryError> {
        let Some(before) = self.active_since() else {
            return Ok(0);
        };
        let hosts: Vec<String> = self
            .model
            .read(|view| view.state.hosts_stale_before(before).into_iter().collect());
        self.command_each(hosts, || HostCommand::Expire { before }, Metadata::system())
            .await
    }

    /// Sends a command to each host, a few at a time, then waits for the read model to fold
    /// every resulting event. Returns how many hosts wrote events.
    async fn command_each(
        &self,
        hosts: Vec<String>,
        command: impl Fn() -> HostCommand,
        metadata: Metadata,
    ) -> Result<usize, InventoryError> {
        let results: Vec<_> = stream::iter(hosts)
            .map(|id| {
                let (command, metadata) = (command(), metadata.clone());
                async move { self.hosts.execute(&id, command, metadata).await }
            })
            .buffer_unordered(FAN_OUT)
            .collect()
            .await;
        let mut changed = 0;
        let mut last = 0;
        for result in results {
            let executed = result?;
            if let Some(first) = executed.first_position {
                changed += 1;
                last = last.max(first + executed.events.len() as u64 - 1);
            }
        }
        self.model.wait_for(last, MODEL_WAIT).await?;
        Ok(changed)
    }

    /// Runs retention sweeps for as long as the returned task is not aborted. With retention
    /// off, returns `None`.
    pub fn spawn_sweeper(&self) -> Option<tokio::task::JoinHandle<()>> {
        let window = self.retention?;
        let every = window
            .min(MAX_SWEEP_INTERVAL)
            .max(Duration::from_millis(100));
        let inventory = self.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match inventory.expire().await {
                    Ok(0) => {}
                    Ok(hosts) => tracing::info!(hosts, "expired versions past retention"),
                    Err(error) => tracing::warn!(%error, "the retention sweep failed"),
                }
            }
        }))
    }
}

/// A sender's `host_ip` as partiscid printed it: an IPv4 sender reaching a dual-stack IPv6
/// socket (`::ffff:a.b.c.d`) is shown dotted, as Go's `net.IP` prints it, so that the same
/// machine has the same `host_ip` whichever way the server listens.
fn host_ip(sender: Option<IpAddr>) -> String {
    sender
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_default()
}
