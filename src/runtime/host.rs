//! The actix actor that hosts one entity: it rebuilds the state on activation, then handles one
//! command at a time (decide, append with the expected version, apply, reply), replying only
//! once the events are durable. It holds no rule of its own; the entity's `decide` does.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use super::entity::{Clock, Ctx, Entity};
use super::settings::Settings;
use super::state::{self, Loaded};
use crate::events::{
    AppendError, DomainEvent, EventLog, ExpectedVersion, Metadata, NewEvent, Position,
    RecordedEvent, StreamId, Version,
};

/// How many times a command is decided again after losing a race for its stream (another
/// writer appended first) before the conflict reaches the caller.
const MAX_ATTEMPTS: usize = 3;

/// Why a command did not take effect. None of these wrote anything.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError<R> {
    /// The entity's rules refused it.
    #[error(transparent)]
    Rejected(R),
    /// The log refused or failed the append.
    #[error(transparent)]
    Append(AppendError),
    /// The entity could not be activated (its history does not load) or was stopped.
    #[error("entity unavailable: {0}")]
    Unavailable(String),
}

impl<R> CommandError<R> {
    /// The entity's rejection, or the failure this is instead, for a service that keeps the
    /// two apart.
    pub fn rejection(self) -> Result<R, CommandError<R>> {
        match self {
            CommandError::Rejected(rejection) => Ok(rejection),
            other => Err(other),
        }
    }

    /// Whether the log refused the command's events as over its size limit: what the caller
    /// asked to record is too large, a client's mistake (a face answers 413), not a failure.
    pub fn is_too_large(&self) -> bool {
        matches!(self, CommandError::Append(AppendError::TooLarge { .. }))
    }
}

/// A command that took effect.
pub struct Executed<E: Entity> {
    /// The events it caused, already durable and applied.
    pub events: Vec<E::Event>,
    /// The entity's version afterwards.
    pub version: Version,
    /// The global position of the first event, if any.
    pub first_position: Option<Position>,
}

// Written out so that they do not require the entity's marker type itself to implement them.
impl<E: Entity> std::fmt::Debug for Executed<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executed")
            .field("events", &self.events)
            .field("version", &self.version)
            .field("first_position", &self.first_position)
            .finish()
    }
}

impl<E: Entity> Clone for Executed<E> {
    fn clone(&self) -> Self {
        Executed {
            events: self.events.clone(),
            version: self.version,
            first_position: self.first_position,
        }
    }
}

impl<E: Entity> PartialEq for Executed<E> {
    fn eq(&self, other: &Self) -> bool {
        (&self.events, self.version, self.first_position)
            == (&other.events, other.version, other.first_position)
    }
}

pub type CommandResult<E> = Result<Executed<E>, CommandError<<E as Entity>::Rejection>>;

/// What an actor calls once events are durable and applied: the kind's effects, with the handle
/// to its directory (given by the directory, which the actor does not know); the flag says
/// whether another node decided them ([`Deliver`]).
pub(crate) type AfterCommit<E> =
    Box<dyn Fn(&str, &<E as Entity>::State, &[<E as Entity>::Event], bool) + Send>;

/// Everything the actors of one kind share.
pub(crate) struct Env {
    pub log: EventLog,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// How many actors of this kind are started and not yet stopped.
    pub live: AtomicUsize,
}

/// Runs a command against an entity.
pub struct Execute<E: Entity> {
    pub command: E::Command,
    pub metadata: Metadata,
}

impl<E: Entity> Message for Execute<E> {
    type Result = CommandResult<E>;
}

/// Asks for the entity's current version and state. Generic only so that the reply can name
/// the entity's state type.
pub struct GetState<E>(PhantomData<E>);

impl<E> Default for GetState<E> {
    fn default() -> Self {
        GetState(PhantomData)
    }
}

impl<E: Entity> Message for GetState<E> {
    type Result = Result<(Version, E::State), CommandError<E::Rejection>>;
}

/// Asks for what a function computes from the entity's current state, on the actor, so that a
/// reader of a small part of a large state (a page of a long log) does not copy all of it.
pub struct Inspect<E: Entity, R> {
    look: Look<E::State, R>,
}

/// What [`Inspect`] runs on the state.
type Look<S, R> = Box<dyn FnOnce(&S) -> R + Send>;

impl<E: Entity, R> Inspect<E, R> {
    pub fn new(look: impl FnOnce(&E::State) -> R + Send + 'static) -> Inspect<E, R> {
        Inspect {
            look: Box::new(look),
        }
    }
}

impl<E: Entity, R: 'static> Message for Inspect<E, R> {
    type Result = Result<(Version, R), CommandError<E::Rejection>>;
}

/// Settles an entity found in progress at start-up with [`Entity::on_restart`]'s command.
/// Replies with no events when there is nothing to settle.
pub struct Reconcile<E>(PhantomData<E>);

impl<E> Default for Reconcile<E> {
    fn default() -> Self {
        Reconcile(PhantomData)
    }
}

impl<E: Entity> Message for Reconcile<E> {
    type Result = CommandResult<E>;
}

/// Hands an entity's owner the events another node committed to its stream (one stream's, in
/// version order), so that their side effects run here (see `crate::runtime::cluster`).
pub(crate) struct Deliver(pub(crate) Vec<RecordedEvent>);

impl Message for Deliver {
    type Result = ();
}

/// How many of its latest commands' version ranges an actor remembers, so that a delivery of
/// events it wrote itself (read back from the database before its own round was published)
/// does not run their effects twice.
const RAN_KEPT: usize = 16;

/// The state the actor owns between commands.
struct Cell<E: Entity> {
    state: E::State,
    version: Version,
    /// The version of the newest snapshot written or loaded.
    snapshot_version: Version,
    /// The log's head when the state was last read from the log: another node's write after
    /// it (`EventLog::foreign_head`) may have moved the stream on.
    checked_at: Position,
    /// The version ranges of this actor's latest commands, whose effects ran as they
    /// committed (at most [`RAN_KEPT`]).
    ran: std::collections::VecDeque<(Version, Version)>,
}

pub(crate) struct EntityActor<E: Entity> {
    id: String,
    stream: StreamId,
    env: Arc<Env>,
    after_commit: AfterCommit<E>,
    /// `None` while a command runs (the running command owns it, and actix runs nothing else on
    /// this actor meanwhile) or when activation failed.
    cell: Option<Cell<E>>,
    /// Why activation failed, answered to every command.
    broken: Option<String>,
}

impl<E: Entity> EntityActor<E> {
    pub(crate) fn new(
        id: String,
        stream: StreamId,
        env: Arc<Env>,
        after_commit: AfterCommit<E>,
    ) -> Self {
        EntityActor {
            id,
            stream,
            env,
            after_commit,
            cell: None,
            broken: None,
        }
    }

    fn unavailable(&self) -> CommandError<E::Rejection> {
        CommandError::Unavailable(
            self.broken
                .clone()
                .unwrap_or_else(|| format!("{} is not loaded", self.stream)),
        )
    }

    /// Runs `command` with the cell moved into the future, then puts the cell back, snapshots
    /// if due, and starts the side effects of what was committed.
    fn run(
        &mut self,
        command: E::Command,
        metadata: Metadata,
    ) -> AtomicResponse<Self, CommandResult<E>> {
        let Some(mut cell) = self.cell.take() else {
            let error = self.unavailable();
            return AtomicResponse::new(Box::pin(fut::ready(Err(error))));
        };
        let env = self.env.clone();
        let stream = self.stream.clone();
        let work = async move {
            let result = execute(&env, &stream, &mut cell, &command, metadata).await;
            (cell, result)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |(cell, result), actor, _| {
                actor.cell = Some(cell);
                if let Ok(executed) = &result {
                    actor.after_commit(executed);
                }
                result
            },
        )))
    }

    fn after_commit(&mut self, executed: &Executed<E>) {
        let Some(cell) = &mut self.cell else { return };
        if executed.events.is_empty() {
            return;
        }
        if cell.version - cell.snapshot_version >= self.env.settings.snapshot_every {
            cell.snapshot_in_background(&self.env.log, &self.stream);
        }
        if cell.ran.len() == RAN_KEPT {
            cell.ran.pop_front();
        }
        let first = executed.version + 1 - executed.events.len() as Version;
        cell.ran.push_back((first, executed.version));
        // Another node holds the entity's shard: it runs the effects, from the log.
        if self.env.log.ownership().owns(&self.stream) {
            (self.after_commit)(&self.id, &cell.state, &executed.events, false);
        }
    }

    /// Runs the effects of events another node committed (the state already holds them),
    /// but not of those this actor's own commands wrote and ran.
    fn run_delivered(&mut self, events: Vec<RecordedEvent>) {
        let Some(cell) = &mut self.cell else { return };
        if !self.env.log.ownership().owns(&self.stream) {
            return;
        }
        let last = events.last().map_or(0, |event| event.version);
        let mut decoded = Vec::with_capacity(events.len());
        for event in &events {
            let ran = cell
                .ran
                .iter()
                .any(|(from, to)| (*from..=*to).contains(&event.version));
            if ran || event.version > cell.version {
                continue;
            }
            match E::Event::from_recorded(event) {
                Ok(event) => decoded.push(event),
                Err(error) => {
                    tracing::error!(stream = %self.stream, version = event.version, %error,
                        "an event of another node does not decode: its effects do not run");
                }
            }
        }
        cell.ran.retain(|(_, ran_last)| *ran_last > last);
        if !decoded.is_empty() {
            (self.after_commit)(&self.id, &cell.state, &decoded, true);
        }
    }
}

/// Decides, appends and applies, deciding again on a version conflict after catching up.
async fn execute<E: Entity>(
    env: &Env,
    stream: &StreamId,
    cell: &mut Cell<E>,
    command: &E::Command,
    metadata: Metadata,
) -> CommandResult<E> {
    let mut attempt = 1;
    loop {
        let events = E::decide(&cell.state, command, &Ctx::new(&*env.clock))
            .map_err(CommandError::Rejected)?;
        if events.is_empty() {
            return Ok(Executed {
                events,
                version: cell.version,
                first_position: None,
            });
        }
        let new_events = events
            .iter()
            .map(|event| NewEvent {
                event_id: env.log.new_event_id(env.clock.new_id()),
                event_type: event.event_type().to_owned(),
                schema_version: event.schema_version(),
                payload: event.encode_payload(),
                metadata: metadata.clone(),
            })
            .collect();
        let appended = env
            .log
            .append(
                stream.clone(),
                ExpectedVersion::Exactly(cell.version),
                new_events,
            )
            .await;
        match appended {
            Ok(appended) => {
                for event in &events {
                    E::apply(&mut cell.state, event);
                }
                cell.version = appended.stream_version;
                return Ok(Executed {
                    events,
                    version: cell.version,
                    first_position: Some(appended.first_position),
                });
            }
            Err(AppendError::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                // Another incarnation of this entity (one being passivated) wrote first.
                catch_up(env, stream, cell).await?;
                attempt += 1;
            }
            Err(error) => return Err(CommandError::Append(error)),
        }
    }
}

/// Folds the events another writer appended since the cell's version. The fold works on a copy,
/// so that a failure leaves the cell as it was: consistent, only behind.
async fn catch_up<E: Entity>(
    env: &Env,
    stream: &StreamId,
    cell: &mut Cell<E>,
) -> Result<(), CommandError<E::Rejection>> {
    let log = env.log.clone();
    let stream = stream.clone();
    let checked_at = log.head();
    let mut loaded = Loaded {
        state: cell.state.clone(),
        version: cell.version,
        snapshot_version: None,
        replayed: 0,
        took: Default::default(),
    };
    let loaded = tokio::task::spawn_blocking(move || {
        state::fold_tail::<E>(&log, &stream, &mut loaded, |_| Ok(true)).map(|()| loaded)
    })
    .await
    .map_err(|e| CommandError::Unavailable(e.to_string()))?
    .map_err(|e| CommandError::Unavailable(e.to_string()))?;
    cell.state = loaded.state;
    cell.version = loaded.version;
    cell.checked_at = cell.checked_at.max(checked_at);
    Ok(())
}

impl<E: Entity> Cell<E> {
    /// Writes a snapshot of the state as it is now, off the actor's thread, and counts it as
    /// the newest: a failure is only logged, since replay still works without it.
    fn snapshot_in_background(&mut self, log: &EventLog, stream: &StreamId) {
        self.snapshot_version = self.version;
        let (log, stream) = (log.clone(), stream.clone());
        let (version, state) = (self.version, self.state.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(error) = state::save_snapshot::<E>(&log, &stream, version, &state) {
                tracing::warn!(%stream, %error, "could not write a snapshot");
            }
        });
    }
}

impl<E: Entity> Actor for EntityActor<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.env.live.fetch_add(1, Ordering::Relaxed);
        let log = self.env.log.clone();
        let stream = self.stream.clone();
        // Read before the load: anything another node writes after it counts as newer.
        let checked_at = log.head();
        let load = async move {
            tokio::task::spawn_blocking(move || state::load::<E>(&log, &stream))
                .await
                .map_err(|e| e.to_string())
                .and_then(|loaded| loaded.map_err(|e| e.to_string()))
        };
        // `wait` holds every message until the state is loaded.
        ctx.wait(
            load.into_actor(self)
                .map(move |loaded, actor, _| match loaded {
                    Ok(loaded) => {
                        let snapshot_version = loaded.snapshot_version.unwrap_or(0);
                        let mut cell = Cell::<E> {
                            state: loaded.state,
                            version: loaded.version,
                            snapshot_version,
                            checked_at,
                            ran: Default::default(),
                        };
                        if loaded.took > actor.env.settings.replay_budget && loaded.replayed > 0 {
                            cell.snapshot_in_background(&actor.env.log, &actor.stream);
                        }
                        actor.cell = Some(cell);
                    }
                    Err(error) => {
                        tracing::error!(stream = %actor.stream, %error, "activation failed");
                        actor.broken = Some(format!("{} cannot be loaded: {error}", actor.stream));
                    }
                }),
        );
    }
}

impl<E: Entity> Drop for EntityActor<E> {
    fn drop(&mut self) {
        self.env.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<E: Entity> Handler<Execute<E>> for EntityActor<E> {
    type Result = AtomicResponse<Self, CommandResult<E>>;

    fn handle(&mut self, message: Execute<E>, _: &mut Self::Context) -> Self::Result {
        self.run(message.command, message.metadata)
    }
}

impl<E: Entity> EntityActor<E> {
    /// Answers from the state, after catching up with the stream when another node wrote to
    /// the log since the state was last read (never on sled, where this node is the only
    /// writer).
    fn answer<R: 'static>(
        &mut self,
        answer: impl FnOnce(&Cell<E>) -> R + 'static,
    ) -> AtomicResponse<Self, Result<R, CommandError<E::Rejection>>> {
        let foreign = self.env.log.foreign_head();
        let cell = match self.cell.take() {
            Some(cell) if cell.checked_at >= foreign => {
                let answered = answer(&cell);
                self.cell = Some(cell);
                return AtomicResponse::new(Box::pin(fut::ready(Ok(answered))));
            }
            Some(cell) => cell,
            None => {
                let error = self.unavailable();
                return AtomicResponse::new(Box::pin(fut::ready(Err(error))));
            }
        };
        let (env, stream) = (self.env.clone(), self.stream.clone());
        let work = async move {
            let mut cell = cell;
            let caught = catch_up(&env, &stream, &mut cell).await;
            (cell, caught)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |(cell, caught), actor, _| {
                let answered = caught.map(|()| answer(&cell));
                actor.cell = Some(cell);
                answered
            },
        )))
    }
}

impl<E: Entity> Handler<GetState<E>> for EntityActor<E> {
    type Result = AtomicResponse<Self, Result<(Version, E::State), CommandError<E::Rejection>>>;

    fn handle(&mut self, _: GetState<E>, _: &mut Self::Context) -> Self::Result {
        self.answer(|cell| (cell.version, cell.state.clone()))
    }
}

impl<E: Entity, R: 'static> Handler<Inspect<E, R>> for EntityActor<E> {
    type Result = AtomicResponse<Self, Result<(Version, R), CommandError<E::Rejection>>>;

    fn handle(&mut self, inspect: Inspect<E, R>, _: &mut Self::Context) -> Self::Result {
        self.answer(move |cell| (cell.version, (inspect.look)(&cell.state)))
    }
}

impl<E: Entity> Handler<Deliver> for EntityActor<E> {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, Deliver(events): Deliver, _: &mut Self::Context) -> Self::Result {
        let through = events.last().map_or(0, |event| event.version);
        let Some(mut cell) = self.cell.take() else {
            tracing::error!(stream = %self.stream, "another node's events reached an actor \
                that is not loaded: their effects do not run");
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        let (env, stream) = (self.env.clone(), self.stream.clone());
        let work = async move {
            let caught = if cell.version < through {
                catch_up(&env, &stream, &mut cell).await
            } else {
                Ok(())
            };
            (cell, caught)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |(cell, caught), actor, _| {
                actor.cell = Some(cell);
                match caught {
                    Ok(()) => actor.run_delivered(events),
                    Err(error) => tracing::error!(stream = %actor.stream, %error,
                        "cannot read another node's events: their effects do not run"),
                }
            },
        )))
    }
}

impl<E: Entity> Handler<Reconcile<E>> for EntityActor<E> {
    type Result = AtomicResponse<Self, CommandResult<E>>;

    fn handle(&mut self, _: Reconcile<E>, _: &mut Self::Context) -> Self::Result {
        let settle = self.cell.as_ref().map(|cell| E::on_restart(&cell.state));
        match settle {
            Some(Some(command)) => self.run(command, Metadata::system()),
            Some(None) => {
                let version = self.cell.as_ref().map_or(0, |cell| cell.version);
                AtomicResponse::new(Box::pin(fut::ready(Ok(Executed {
                    events: Vec::new(),
                    version,
                    first_position: None,
                }))))
            }
            None => {
                let error = self.unavailable();
                AtomicResponse::new(Box::pin(fut::ready(Err(error))))
            }
        }
    }
}
