//! Side effects when several nodes serve one log. Any node decides any entity's commands (the
//! expected version fences them), but an entity's side effects run only on the node that holds
//! its shard (`crate::events::Ownership`): its own commands' effects as they commit, and those
//! of commands other nodes decided as their events are published here ([`Cluster::start`]
//! hands them to the entity's actor). When shards come to this node later (their holder died
//! and its leases expired), their entities left in progress are taken over as a restart of
//! that node would have: started again where the kind can ([`Effects::take_over`], such as a
//! workflow execution that had not started a step), otherwise settled with
//! [`Entity::on_restart`] (their work ran on the node that is gone).
//!
//! On sled, and on any node that holds every shard from the start, nothing here ever runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;

use super::directory::{Effects, Entities};
use super::entity::Entity;
use super::reconcile;
use crate::events::{EventLog, RecordedEvent, StreamId};

/// How long settling the entities of shards taken over waits for its projection.
const TAKE_OVER_WAIT: Duration = Duration::from_secs(300);

/// Hands an entity's actor the events of its stream.
type Deliver = Box<dyn Fn(&str, Vec<RecordedEvent>) + Send>;

/// Takes over a kind's entities in progress in the shards of a set.
type TakeOver = Arc<dyn Fn(u64) -> LocalBoxFuture<'static, ()> + Send + Sync>;

/// The kinds whose effects follow the shards this node holds. Cheap to clone.
#[derive(Clone, Default)]
pub struct Cluster(Arc<Mutex<Kinds>>);

#[derive(Default)]
struct Kinds {
    deliver: HashMap<&'static str, Deliver>,
    take_over: Vec<TakeOver>,
}

impl Cluster {
    fn kinds(&self) -> std::sync::MutexGuard<'_, Kinds> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes kind `E`'s effects follow the shards: other nodes' events of its streams go to
    /// its actors here, and its entities in progress in shards taken over are settled.
    pub fn register<E: Entity>(
        &self,
        log: &EventLog,
        entities: &Entities<E>,
        effects: Arc<dyn Effects<E>>,
    ) {
        let mut kinds = self.kinds();
        let delivering = entities.clone();
        kinds.deliver.insert(
            E::KIND,
            Box::new(move |id, events| delivering.deliver(id, events)),
        );
        let (log, entities) = (log.clone(), entities.clone());
        kinds.take_over.push(Arc::new(move |gained| {
            let (log, entities, effects) = (log.clone(), entities.clone(), effects.clone());
            Box::pin(async move { settle_taken_over(&log, &entities, &*effects, gained).await })
        }));
    }

    /// Follows, on the current arbiter, the events other nodes commit to this node's shards and
    /// the shards it comes to hold after `held` (those it held when its kinds started, which
    /// their own start-up settled).
    pub fn start(&self, log: &EventLog, held: u64) -> Vec<tokio::task::JoinHandle<()>> {
        let mut foreign = log.foreign_events();
        let kinds = self.clone();
        let delivering = actix_rt::spawn(async move {
            while let Some(events) = foreign.recv().await {
                kinds.deliver(events);
            }
        });
        let mut changes = log.ownership().changes();
        let kinds = self.clone();
        let taking_over = actix_rt::spawn(async move {
            let mut seen = held;
            loop {
                let now = *changes.borrow_and_update();
                metrics::gauge!(crate::metrics::SHARDS_HELD).set(f64::from(now.count_ones()));
                let gained = now & !seen;
                seen = now;
                if gained != 0 {
                    tracing::info!(shards = gained.count_ones(), "took over shards");
                    let take_over = kinds.kinds().take_over.clone();
                    for settle in take_over {
                        settle(gained).await;
                    }
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
        vec![delivering, taking_over]
    }

    /// Hands each stream's events to its actor, for the kinds registered.
    fn deliver(&self, events: Vec<RecordedEvent>) {
        let mut by_stream: BTreeMap<StreamId, Vec<RecordedEvent>> = BTreeMap::new();
        for event in events {
            by_stream
                .entry(event.stream.clone())
                .or_default()
                .push(event);
        }
        let kinds = self.kinds();
        for (stream, events) in by_stream {
            if let Some(deliver) = kinds.deliver.get(stream.category()) {
                deliver(stream.entity_id(), events);
            }
        }
    }
}

/// Starts again, or settles, the entities of kind `E` in progress whose shards are in
/// `gained`.
async fn settle_taken_over<E: Entity>(
    log: &EventLog,
    entities: &Entities<E>,
    effects: &dyn Effects<E>,
    gained: u64,
) {
    let settled = async {
        log.sync().await?;
        let running = reconcile::track_in_progress::<E>(log)?;
        running.wait_for(log.head(), TAKE_OVER_WAIT).await?;
        let ids: Vec<String> = running.read(|view| view.state.iter().cloned().collect());
        let mut count = 0;
        for id in ids {
            let taken = StreamId::of(E::KIND, &id)
                .is_ok_and(|stream| log.ownership().held_in(gained, &stream));
            if !taken {
                continue;
            }
            let started = match entities.state(&id).await {
                Ok((_, state)) => effects.take_over(&id, &state, entities),
                Err(_) => false,
            };
            if started {
                count += 1;
                continue;
            }
            match entities.reconcile(&id).await {
                Ok(_) => count += 1,
                Err(error) => {
                    tracing::warn!(kind = E::KIND, %id, %error, "could not settle an entity taken over")
                }
            }
        }
        anyhow::Ok(count)
    };
    match settled.await {
        Ok(0) => {}
        Ok(count) => tracing::info!(kind = E::KIND, count, "took over entities in progress"),
        Err(error) => {
            tracing::error!(kind = E::KIND, %error, "could not settle the entities taken over")
        }
    }
}
