//! Entities on top of the log: the `Entity` trait, the actix actor hosting one entity, the
//! directory that activates and passivates them, state rebuilding and snapshots, side effects
//! after durability, start-up reconciliation and projections. Nothing here writes the log except
//! through `EventLog::append`, and nothing here names the storage engine.

pub mod blocking;
pub mod cluster;
pub mod directory;
pub mod effects;
pub mod entity;
mod host;
pub mod job;
pub mod projection;
pub mod reconcile;
pub mod settings;
pub mod state;
pub mod testing;

pub use blocking::{blocking, cpu_bound};
pub use cluster::Cluster;
pub use directory::{Effects, Entities, NoEffects, Shards, Stats};
pub use entity::{Clock, Ctx, Decision, Entity, ManualClock, SystemClock};
pub use host::{CommandError, CommandResult, Executed};
pub use projection::{Projection, ProjectionHandle, ProjectionSettings, View};
pub use settings::Settings;
