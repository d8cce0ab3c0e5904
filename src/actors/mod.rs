//! Entities on top of the log: the `Entity` trait, the actix actor hosting one entity, the
//! directory that activates and passivates them, state rebuilding and snapshots, side effects
//! after durability, start-up reconciliation and projections. Nothing here writes the log except
//! through `EventLog::append`, and nothing here names the storage engine.

pub mod blocking;
pub mod directory;
pub mod effects;
pub mod entity;
pub mod gros;
mod host;
pub mod inventory;
pub mod job;
pub mod kinds;
pub mod projection;
pub mod reconcile;
pub mod results;
pub mod scan;
pub mod sshkey;
pub mod state;
pub mod testing;
pub mod testrun;
pub mod workflow;

pub use blocking::blocking;
pub use directory::{Entities, Settings, Stats};
pub use effects::{Effects, NoEffects};
pub use entity::{Clock, Ctx, Entity, ManualClock, SystemClock};
pub use host::{CommandError, CommandResult, Executed};
pub use projection::{Projection, ProjectionHandle, ProjectionSettings, View};
