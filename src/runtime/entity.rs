//! The `Entity` trait: what an entity kind must say about itself so that the machinery can host
//! it. Rules live in `decide`, folding in `apply`; time and new ids reach `decide` through
//! [`Ctx`], so that tests control them. Nothing here does I/O.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

use crate::events::DomainEvent;

/// One kind of entity (scan, agent, execution…): its state, commands, events and rules.
pub trait Entity: Sized + Send + 'static {
    /// The stream category of this kind: entity `42` of kind `job` lives in stream `job-42`.
    const KIND: &'static str;
    /// The schema version of [`Entity::State`] as snapshots store it. Bump it whenever the state's
    /// shape or meaning changes: older snapshots are then ignored and the state is replayed.
    const STATE_VERSION: u32;

    type State: Default
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + Unpin
        + 'static;
    type Command: Debug + Send + 'static;
    type Event: DomainEvent + Clone + Debug + PartialEq + Send + Sync + 'static;
    type Rejection: std::error::Error + Clone + PartialEq + Send + Sync + 'static;

    /// Holds every rule: given the current state, what happens when this command arrives.
    /// An `Err` writes nothing.
    fn decide(state: &Self::State, command: &Self::Command, ctx: &Ctx) -> Decision<Self>;

    /// Folds one event into the state. No I/O, no clock, no randomness; it never fails, because
    /// the event already happened.
    fn apply(state: &mut Self::State, event: &Self::Event);

    /// Whether this event leaves the entity with work in progress (`Some(true)`: a scan
    /// started, a child process launched) or done with it (`Some(false)`). Start-up
    /// reconciliation visits the entities whose latest answer was `Some(true)`.
    fn in_progress(_event: &Self::Event) -> Option<bool> {
        None
    }

    /// The command that settles an entity found in progress at start-up, whose work died with
    /// the previous process (for example "mark interrupted"). `None` leaves it as it is.
    fn on_restart(_state: &Self::State) -> Option<Self::Command> {
        None
    }
}

/// What [`Entity::decide`] answers: the events to record, or why the command is refused.
pub type Decision<E> = Result<Vec<<E as Entity>::Event>, <E as Entity>::Rejection>;

/// What every entity kind says the same way at the head of its `impl Entity`: its stream
/// category ([`Entity::KIND`]), its state's schema version and its state, command, event and
/// rejection types:
///
/// ```text
/// impl Entity for Job {
///     entity_types!("job" version 1, state JobState,
///         JobCommand => JobEvent, rejected JobRejection);
///     fn decide(state: &JobState, command: &JobCommand, ctx: &Ctx) -> Decision<Self> { … }
/// }
/// ```
#[macro_export]
macro_rules! entity_types {
    (
        $kind:literal version $version:expr, state $state:ty,
        $command:ty => $event:ty, rejected $rejection:ty
    ) => {
        const KIND: &'static str = $kind;
        const STATE_VERSION: u32 = $version;

        type State = $state;
        type Command = $command;
        type Event = $event;
        type Rejection = $rejection;
    };
}

/// Where time and new ids come from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn new_id(&self) -> Uuid;
}

/// The real clock, and time-ordered (v7) ids, each greater than the ids before it, as the log's
/// new event ids should be (`EventLog::new_event_id` covers a clock set back).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// A clock for tests: time moves only when told, ids count up from 1.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
    ids: AtomicU64,
}

impl ManualClock {
    pub fn at(now: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Mutex::new(now),
            ids: AtomicU64::new(0),
        }
    }

    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn new_id(&self) -> Uuid {
        Uuid::from_u128(u128::from(self.ids.fetch_add(1, Ordering::Relaxed) + 1))
    }
}

/// What `decide` may know of the world besides state and command.
pub struct Ctx<'a> {
    /// The time at which the command is decided, to the microsecond: the resolution at which
    /// the log stores times, so that a replayed state equals the live one.
    pub now: DateTime<Utc>,
    clock: &'a dyn Clock,
}

impl<'a> Ctx<'a> {
    pub fn new(clock: &'a dyn Clock) -> Ctx<'a> {
        let now = clock.now();
        Ctx {
            now: now.trunc_subsecs(6),
            clock,
        }
    }

    /// A fresh id, for entities that name things they create.
    pub fn new_id(&self) -> Uuid {
        self.clock.new_id()
    }
}
