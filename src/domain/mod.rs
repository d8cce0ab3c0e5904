//! The faces' entity kinds, each in a module of the same layout: `mod.rs` (its events,
//! commands, state, `decide` and `apply`), `values.rs` (values parsed from clients' input, so
//! that a bad one cannot exist), `read_model.rs` (its projection), `service.rs` (what the
//! handlers call), `effects.rs` (what runs after its events are durable). A kind has only the
//! files it needs. Nothing here names the storage engine or HTTP.

pub mod gros;
pub mod inventory;
pub mod kinds;
pub mod lookup;
pub mod results;
pub mod scan;
pub mod sshkey;
pub mod streams;
pub mod testrun;
pub mod workflow;

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::events::{EventLog, Metadata};
use crate::runtime::projection::{self, Projection, ProjectionError};
use crate::runtime::{
    Clock, Cluster, CommandError, Effects, Entities, Entity, Executed, NoEffects, ProjectionHandle,
    ProjectionSettings, Settings, Shards,
};

/// What every kind's service starts on: the log, the clock that stamps its commands and its
/// actors' settings. Cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub log: EventLog,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// The arbiters every kind's actors are spread over.
    pub shards: Shards,
    /// The kinds whose effects follow the shards this node holds.
    pub cluster: Cluster,
}

impl Core {
    /// Starts the directory of kind `E`, whose events start no side effects.
    pub fn entities<E: Entity>(&self) -> Entities<E> {
        let (log, clock) = (self.log.clone(), self.clock.clone());
        Entities::start_on(&self.shards, log, clock, Arc::new(NoEffects), self.settings)
    }

    /// Starts the directory of kind `E`, whose durable events start `effects` on the node
    /// that holds the entity's shard.
    pub fn entities_with<E: Entity>(&self, effects: Arc<dyn Effects<E>>) -> Entities<E> {
        let (log, clock) = (self.log.clone(), self.clock.clone());
        let entities = Entities::start_on(&self.shards, log, clock, effects.clone(), self.settings);
        self.cluster.register(&self.log, &entities, effects);
        entities
    }
}

/// How long an answer waits for its kind's read model to fold what it recorded, before the
/// answer is an error.
pub(crate) const MODEL_WAIT: Duration = Duration::from_secs(30);

/// Waits until a kind's read model has folded every event a command appended (none: returns at
/// once), at most [`MODEL_WAIT`]: the next query sees what the command did.
pub(crate) async fn wait_folded<E: Entity, S>(
    model: &ProjectionHandle<S>,
    executed: &Executed<E>,
) -> Result<(), ProjectionError> {
    if let Some(first) = executed.first_position {
        let last = first + executed.events.len() as u64 - 1;
        model.wait_for(last, MODEL_WAIT).await?;
    }
    Ok(())
}

/// Records `command` on a new entity under an id from `clock`, and answers that id once `model`
/// has folded what it wrote: the client's next query finds it.
pub(crate) async fn create_folded<E: Entity, S, Error>(
    entities: &Entities<E>,
    model: &ProjectionHandle<S>,
    clock: &dyn Clock,
    command: E::Command,
    metadata: Metadata,
) -> Result<Uuid, Error>
where
    Error: From<CommandError<E::Rejection>> + From<ProjectionError>,
{
    let id = clock.new_id();
    let executed = entities.execute(&id.to_string(), command, metadata).await?;
    wait_folded(model, &executed).await?;
    Ok(id)
}

/// Starts a kind's read model from its checkpoint, folding on one of the shards (chosen by its
/// name), and returns once it has folded the whole log, waiting at most `within`: the first
/// query after start-up sees everything acknowledged before.
pub(crate) async fn start_read_model<P: Projection>(
    model: P,
    core: &Core,
    within: Duration,
) -> Result<ProjectionHandle<P::State>, ProjectionError> {
    let arbiter = core.shards.for_key(&model.name());
    let model = projection::start_on(
        model,
        core.log.clone(),
        ProjectionSettings::default(),
        arbiter,
    )?;
    model.wait_for(core.log.head(), within).await?;
    Ok(model)
}

/// `as_str` and `TryFrom<String>` for a newtype of `String` whose one way in is its `parse`:
/// `TryFrom` goes through `parse`, so a `#[serde(try_from = "String")]` value is checked too.
macro_rules! string_newtype {
    ($name:ident, $error:ty) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $error;
            fn try_from(raw: String) -> Result<Self, $error> {
                $name::parse(&raw)
            }
        }
    };
}
pub(crate) use string_newtype;

/// Whether `raw` is 1 to `max` bytes, each of them `allowed`: the rule of the names that go
/// into entity ids.
pub(crate) fn is_name(raw: &str, max: usize, allowed: impl Fn(u8) -> bool) -> bool {
    !raw.is_empty() && raw.len() <= max && raw.bytes().all(allowed)
}

/// Checks that a value read by serde is checked as its `parse` checks it: `good` (the value's
/// text) deserializes to what `parse` makes of it, and every one of `bad` is refused.
#[cfg(test)]
pub(crate) fn assert_deserializes_as_parsed<T, E: std::fmt::Debug>(
    parse: impl Fn(&str) -> Result<T, E>,
    good: &str,
    bad: &[&str],
) where
    T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = |raw: &str| serde_json::Value::from(raw).to_string();
    assert_eq!(
        serde_json::from_str::<T>(&json(good)).unwrap(),
        parse(good).unwrap()
    );
    for raw in bad {
        assert!(serde_json::from_str::<T>(&json(raw)).is_err(), "{raw:?}");
    }
}

/// What every read model of one entity kind says the same way: its state, its checkpoint's
/// name, the state's schema version and the kind whose events it folds.
macro_rules! read_model_of {
    ($kind:ty, $name:literal, version $version:literal, state $state:ty) => {
        type State = $state;

        fn name(&self) -> String {
            $name.into()
        }

        fn version(&self) -> u32 {
            $version
        }

        fn category(&self) -> Option<String> {
            Some(<$kind as crate::runtime::entity::Entity>::KIND.into())
        }
    };
}
pub(crate) use read_model_of;
