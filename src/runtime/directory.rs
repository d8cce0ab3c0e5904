//! The directory of one entity kind: it activates an entity's actor on demand by id (virtual
//! actors, as in Orleans), passivates actors idle for too long, and caps how many stay resident,
//! least recently used first. It routes messages; it decides nothing about any entity. A kind
//! has one directory per [`Shards`] arbiter (one per core), and an entity lives on the shard its
//! id hashes to, so the actors of every kind use every core and no kind has a single mailbox.
//! The kind's [`Effects`] hook is declared here, with the [`Entities`] handle it receives: each
//! actor gets it as a closure, so the host knows neither.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::dev::ToEnvelope;
use actix::prelude::*;

use super::entity::{Clock, Entity};
use super::host::{
    AfterCommit, CommandError, CommandResult, Deliver, EntityActor, Env, Execute, GetState,
    Inspect, Reconcile,
};
use super::settings::Settings;
use crate::events::{EventLog, Metadata, RecordedEvent, StreamId, Version};

/// Counters of a directory's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Actors the directory routes to.
    pub resident: usize,
    /// Actors whose state is in memory: the resident ones, plus passivated ones still finishing.
    pub live: usize,
    pub activations: u64,
    pub passivations: u64,
}

struct Resident<E: Entity> {
    addr: Addr<EntityActor<E>>,
    /// The directory's use counter when this actor was last used; the key in `by_use`.
    tick: u64,
    last_used: Instant,
}

pub(crate) struct Directory<E: Entity> {
    env: Arc<Env>,
    effects: Arc<dyn Effects<E>>,
    /// The kind's handle, for the effects of its actors; set once every shard has started.
    entities: Arc<OnceLock<Entities<E>>>,
    /// The most actors this shard keeps resident: its part of `max_resident`.
    max_resident: usize,
    /// Actors resident in every shard of the kind.
    resident_in_kind: Arc<AtomicUsize>,
    residents: HashMap<String, Resident<E>>,
    /// Resident ids by last use, oldest first.
    by_use: BTreeMap<u64, String>,
    tick: u64,
    stats: Stats,
}

/// Why a message did not reach an entity's actor.
#[derive(Debug)]
enum RouteError {
    InvalidId(String),
    Stopped,
}

/// A message for the actor of entity `id`.
struct Route<M> {
    id: String,
    message: M,
}

impl<M: Message> Message for Route<M>
where
    M::Result: Send,
{
    type Result = Result<M::Result, RouteError>;
}

struct GetStats;

impl Message for GetStats {
    type Result = Stats;
}

impl<E: Entity> Directory<E> {
    /// The actor of `id`, activated if it is not resident.
    fn resident(&mut self, id: &str) -> Result<Addr<EntityActor<E>>, RouteError> {
        self.tick += 1;
        let now = Instant::now();
        if let Some(resident) = self.residents.get_mut(id) {
            self.by_use.remove(&resident.tick);
            resident.tick = self.tick;
            resident.last_used = now;
            self.by_use.insert(self.tick, id.to_owned());
            return Ok(resident.addr.clone());
        }
        let stream = StreamId::of(E::KIND, id).map_err(|e| RouteError::InvalidId(e.to_string()))?;
        // Set before the handle that routes here is returned: always there.
        let entities = self.entities.get().cloned().ok_or(RouteError::Stopped)?;
        let effects = self.effects.clone();
        let after_commit: AfterCommit<E> = Box::new(move |id, state, events, delivered| {
            if delivered {
                effects.after_delivered(id, state, events, &entities)
            } else {
                effects.after_commit(id, state, events, &entities)
            }
        });
        let addr = EntityActor::new(id.to_owned(), stream, self.env.clone(), after_commit).start();
        self.residents.insert(
            id.to_owned(),
            Resident {
                addr: addr.clone(),
                tick: self.tick,
                last_used: now,
            },
        );
        self.by_use.insert(self.tick, id.to_owned());
        self.stats.activations += 1;
        self.resident_in_kind.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::metrics::ACTOR_ACTIVATIONS, "kind" => E::KIND).increment(1);
        while self.residents.len() > self.max_resident {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.passivate(&oldest);
        }
        self.count_residents();
        Ok(addr)
    }

    /// Forgets an actor. It stops once its mailbox is empty and no one holds its address; a
    /// command it is still running completes first.
    fn passivate(&mut self, id: &str) {
        if let Some(resident) = self.residents.remove(id) {
            self.by_use.remove(&resident.tick);
            self.stats.passivations += 1;
            self.resident_in_kind.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!(crate::metrics::ACTOR_PASSIVATIONS, "kind" => E::KIND).increment(1);
        }
    }

    /// Publishes how many actors of the kind are resident; called where that changes, not per
    /// message.
    fn count_residents(&self) {
        metrics::gauge!(crate::metrics::ACTORS_RESIDENT, "kind" => E::KIND)
            .set(self.resident_in_kind.load(Ordering::Relaxed) as f64);
    }

    fn passivate_idle(&mut self) {
        let idle: Vec<String> = self
            .residents
            .iter()
            .filter(|(_, r)| r.last_used.elapsed() >= self.env.settings.idle_timeout)
            .map(|(id, _)| id.clone())
            .collect();
        if idle.is_empty() {
            return;
        }
        for id in idle {
            self.passivate(&id);
        }
        self.count_residents();
    }
}

impl<E: Entity> Actor for Directory<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.env.settings.idle_timeout / 4).max(Duration::from_millis(10));
        ctx.run_interval(every, |directory, _| directory.passivate_idle());
    }
}

impl<E, M> Handler<Route<M>> for Directory<E>
where
    E: Entity,
    M: Message + Send + 'static,
    M::Result: Send,
    EntityActor<E>: Handler<M>,
    <EntityActor<E> as Actor>::Context: ToEnvelope<EntityActor<E>, M>,
{
    type Result = ResponseFuture<Result<M::Result, RouteError>>;

    fn handle(&mut self, route: Route<M>, _: &mut Self::Context) -> Self::Result {
        let addr = self.resident(&route.id);
        Box::pin(async move {
            addr?
                .send(route.message)
                .await
                .map_err(|_| RouteError::Stopped)
        })
    }
}

impl<E: Entity> Handler<GetStats> for Directory<E> {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(Stats {
            resident: self.residents.len(),
            live: self.env.live.load(std::sync::atomic::Ordering::Relaxed),
            ..self.stats
        })
    }
}

/// The side effects of one entity kind.
pub trait Effects<E: Entity>: Send + Sync + 'static {
    /// Called once per successful command, after its `events` are durable and folded into
    /// `state`. Work that takes time runs in a spawned task and reports back through
    /// `entities.execute(id, …)`, which makes its results events like any other command's.
    ///
    /// A crash between the append and this call loses the work, never the events: start-up
    /// reconciliation ([`Entity::on_restart`]) settles entities whose work died.
    fn after_commit(&self, id: &str, state: &E::State, events: &[E::Event], entities: &Entities<E>);

    /// Called on the node holding entity `id`'s shard with events another node's command
    /// committed (`crate::runtime::cluster`), once `state` holds them. By default the same as
    /// [`Effects::after_commit`]; a kind whose requests start their work themselves, on the
    /// node that decided them when it holds the shard, starts it here for the others.
    fn after_delivered(
        &self,
        id: &str,
        state: &E::State,
        events: &[E::Event],
        entities: &Entities<E>,
    ) {
        self.after_commit(id, state, events, entities)
    }

    /// Called on a node that took over the shard of entity `id`, left in progress by a node
    /// that died (`crate::runtime::cluster`): starts here what a restart of that node would
    /// have started again, and answers whether it did. When it did not, the entity is settled
    /// with [`Entity::on_restart`]. By default nothing starts again.
    fn take_over(&self, _id: &str, _state: &E::State, _entities: &Entities<E>) -> bool {
        false
    }
}

/// The effects of a kind that has none.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEffects;

impl<E: Entity> Effects<E> for NoEffects {
    fn after_commit(&self, _: &str, _: &E::State, _: &[E::Event], _: &Entities<E>) {}
}

/// The arbiters entities run on: one per core by default, shared by every kind.
#[derive(Clone)]
pub struct Shards(Arc<[ArbiterHandle]>);

impl Shards {
    /// Starts `count` arbiters (threads with an actix runtime each) in the current system;
    /// 0: one per core. They stop with [`Shards::stop`], or when the current arbiter's runtime
    /// ends (a test's system), whichever comes first: their actors hold the log open.
    pub fn start(count: usize) -> Shards {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            count => count,
        };
        let shards = Shards((0..count).map(|_| Arbiter::new().handle()).collect());
        let guard = StopOnDrop(shards.clone());
        actix_rt::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
        shards
    }

    /// Stops the arbiters; their actors stop with them.
    pub fn stop(&self) {
        for arbiter in self.0.iter() {
            arbiter.stop();
        }
    }

    /// The arbiter that work named `key` goes to: the same one for the same key.
    pub fn for_key(&self, key: &str) -> &ArbiterHandle {
        &self.0[shard_of(key, self.0.len())]
    }

    /// The current arbiter alone.
    pub fn current() -> Shards {
        Shards(Arc::new([Arbiter::current()]))
    }
}

/// Which of `count` shards the entity or work named `key` goes to.
fn shard_of(key: &str, count: usize) -> usize {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish() as usize % count
}

/// Stops its shards when dropped.
struct StopOnDrop(Shards);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The handle through which everything else talks to one entity kind. Cheap to clone.
pub struct Entities<E: Entity> {
    /// The kind's directory on each shard.
    shards: Arc<[Addr<Directory<E>>]>,
}

impl<E: Entity> Clone for Entities<E> {
    fn clone(&self) -> Self {
        Entities {
            shards: self.shards.clone(),
        }
    }
}

impl<E: Entity> Entities<E> {
    /// Starts the directory of kind `E` on the current actix arbiter.
    pub fn start(
        log: EventLog,
        clock: Arc<dyn Clock>,
        effects: Arc<dyn Effects<E>>,
        settings: Settings,
    ) -> Entities<E> {
        Entities::start_on(&Shards::current(), log, clock, effects, settings)
    }

    /// Starts a directory of kind `E` on each of `shards`; `max_resident` is shared out
    /// among them.
    pub fn start_on(
        shards: &Shards,
        log: EventLog,
        clock: Arc<dyn Clock>,
        effects: Arc<dyn Effects<E>>,
        settings: Settings,
    ) -> Entities<E> {
        let env = Arc::new(Env {
            log,
            clock,
            settings,
            live: Default::default(),
        });
        let entities = Arc::new(OnceLock::new());
        let resident_in_kind = Arc::new(AtomicUsize::new(0));
        let max_resident = settings.max_resident.div_ceil(shards.0.len().max(1)).max(1);
        let directories = shards
            .0
            .iter()
            .map(|arbiter| {
                let directory = Directory {
                    env: env.clone(),
                    effects: effects.clone(),
                    entities: entities.clone(),
                    max_resident,
                    resident_in_kind: resident_in_kind.clone(),
                    residents: HashMap::new(),
                    by_use: BTreeMap::new(),
                    tick: 0,
                    stats: Stats::default(),
                };
                Directory::start_in_arbiter(arbiter, move |_| directory)
            })
            .collect();
        let handle = Entities {
            shards: directories,
        };
        let _ = entities.set(handle.clone());
        handle
    }

    /// The directory of the shard entity `id` lives on.
    fn directory(&self, id: &str) -> &Addr<Directory<E>> {
        &self.shards[shard_of(id, self.shards.len())]
    }

    async fn route<M>(&self, id: &str, message: M) -> Result<M::Result, CommandError<E::Rejection>>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        EntityActor<E>: Handler<M>,
        <EntityActor<E> as Actor>::Context: ToEnvelope<EntityActor<E>, M>,
    {
        let route = Route {
            id: id.to_owned(),
            message,
        };
        match self.directory(id).send(route).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(RouteError::InvalidId(reason))) => Err(CommandError::Unavailable(reason)),
            Ok(Err(RouteError::Stopped)) | Err(_) => Err(CommandError::Unavailable(format!(
                "the actor of {}-{id} stopped",
                E::KIND
            ))),
        }
    }

    /// Runs a command against entity `id`, activating it if needed. Resolves once the events
    /// are durable and applied, or with why nothing was written.
    pub async fn execute(
        &self,
        id: &str,
        command: E::Command,
        metadata: Metadata,
    ) -> CommandResult<E> {
        self.route(id, Execute { command, metadata }).await?
    }

    /// The current version and state of entity `id` (version 0 and the default state when it
    /// has no event).
    pub async fn state(&self, id: &str) -> Result<(Version, E::State), CommandError<E::Rejection>> {
        self.route(id, GetState::default()).await?
    }

    /// What `look` computes from the current state of entity `id` (the default state when it
    /// has no event), with its version; `look` runs on the entity's actor.
    pub async fn inspect<R: Send + 'static>(
        &self,
        id: &str,
        look: impl FnOnce(&E::State) -> R + Send + 'static,
    ) -> Result<(Version, R), CommandError<E::Rejection>> {
        self.route(id, Inspect::new(look)).await?
    }

    /// Hands entity `id`'s actor events another node committed to its stream, for their side
    /// effects; in order with every other delivery, without waiting.
    pub(crate) fn deliver(&self, id: &str, events: Vec<RecordedEvent>) {
        self.directory(id).do_send(Route {
            id: id.to_owned(),
            message: Deliver(events),
        });
    }

    /// Settles entity `id` after a restart with [`Entity::on_restart`].
    pub async fn reconcile(&self, id: &str) -> CommandResult<E> {
        self.route(id, Reconcile::default()).await?
    }

    /// How many actors are resident, activated and passivated so far, in every shard.
    pub async fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for directory in self.shards.iter() {
            let stats = directory.send(GetStats).await.unwrap_or_default();
            total.resident += stats.resident;
            total.live = stats.live;
            total.activations += stats.activations;
            total.passivations += stats.passivations;
        }
        total
    }
}
