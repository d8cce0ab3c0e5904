//! How a directory manages its actors (idle time, residents, snapshots), from the
//! configuration's `[actors]` section: read by the directory and by each actor it hosts, so it
//! sits below both.

use std::time::Duration;

/// How a directory manages its actors.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// An actor not used for this long is passivated (it is activated again on its next use).
    pub idle_timeout: Duration,
    /// The most actors resident at once; past it the least recently used is passivated.
    pub max_resident: usize,
    /// A snapshot is written every this many events of an entity.
    pub snapshot_every: u64,
    /// An activation whose replay takes longer than this writes a snapshot at once.
    pub replay_budget: Duration,
}

/// The configuration's defaults.
impl Default for Settings {
    fn default() -> Self {
        Settings::from(&crate::config::ActorsSection::default())
    }
}

impl From<&crate::config::ActorsSection> for Settings {
    fn from(section: &crate::config::ActorsSection) -> Self {
        Settings {
            idle_timeout: Duration::from_secs(section.idle_timeout_s),
            max_resident: section.max_resident,
            snapshot_every: section.snapshot_every.max(1),
            replay_budget: Duration::from_millis(section.replay_budget_ms),
        }
    }
}
