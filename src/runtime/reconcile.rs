//! Start-up reconciliation: an entity left with work in progress by a crash or a stop is settled
//! with an explicit event (such as "interrupted") instead of staying "running" forever. Which
//! entities those are comes from a projection over [`Entity::in_progress`], not from waking
//! every actor.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::time::Duration;

use super::directory::Entities;
use super::entity::Entity;
use super::host::CommandResult;
use super::projection::{self, Projection, ProjectionError, ProjectionHandle, ProjectionSettings};
use crate::events::{CodecError, DomainEvent, EventLog, RecordedEvent};

/// The ids of the entities of kind `E` whose latest [`Entity::in_progress`] answer was `true`.
pub struct InProgress<E>(PhantomData<fn() -> E>);

impl<E> Default for InProgress<E> {
    fn default() -> Self {
        InProgress(PhantomData)
    }
}

impl<E: Entity> Projection for InProgress<E> {
    type State = BTreeSet<String>;

    fn name(&self) -> String {
        format!("in-progress:{}", E::KIND)
    }

    fn version(&self) -> u32 {
        1
    }

    fn category(&self) -> Option<String> {
        Some(E::KIND.to_owned())
    }

    fn apply(
        &self,
        running: &mut BTreeSet<String>,
        event: &RecordedEvent,
    ) -> Result<(), CodecError> {
        match E::in_progress(&E::Event::from_recorded(event)?) {
            Some(true) => {
                running.insert(event.stream.entity_id().to_owned());
            }
            Some(false) => {
                running.remove(event.stream.entity_id());
            }
            None => {}
        }
        Ok(())
    }
}

/// Starts the in-progress projection of kind `E`.
pub fn track_in_progress<E: Entity>(
    log: &EventLog,
) -> Result<ProjectionHandle<BTreeSet<String>>, ProjectionError> {
    projection::start(
        InProgress::<E>::default(),
        log.clone(),
        ProjectionSettings::default(),
    )
}

/// The ids of the entities of kind `E` in progress in `view` whose shard this node holds: the
/// ones whose work it runs, or ran before it stopped.
pub fn held_in_progress<E: Entity>(log: &EventLog, view: &BTreeSet<String>) -> Vec<String> {
    let ownership = log.ownership();
    view.iter()
        .filter(|id| crate::events::StreamId::of(E::KIND, id).is_ok_and(|s| ownership.owns(&s)))
        .cloned()
        .collect()
}

/// Settles every entity of kind `E` found in progress in this node's shards, once the
/// projection has caught up with the log. Returns each settled id with what its settling did.
pub async fn reconcile<E: Entity>(
    log: &EventLog,
    entities: &Entities<E>,
    in_progress: &ProjectionHandle<BTreeSet<String>>,
    timeout: Duration,
) -> Result<Vec<(String, CommandResult<E>)>, ProjectionError> {
    in_progress.wait_for(log.head(), timeout).await?;
    let ids = in_progress.read(|view| held_in_progress::<E>(log, &view.state));
    let mut settled = Vec::with_capacity(ids.len());
    for id in ids {
        let result = entities.reconcile(&id).await;
        if let Err(error) = &result {
            tracing::warn!(kind = E::KIND, %id, %error, "could not settle an entity after restart");
        }
        settled.push((id, result));
    }
    Ok(settled)
}
