//! A log in a temporary directory, for the benchmarks that drive one directly rather than
//! through the server.

use annals::events::{Durability, EventLog, LogOptions};

/// A new log in its own temporary directory (removed when that is dropped), appended to with
/// `durability`.
pub fn temp_log(durability: Durability) -> anyhow::Result<(tempfile::TempDir, EventLog)> {
    let dir = tempfile::tempdir()?;
    let options = LogOptions {
        durability,
        ..LogOptions::default()
    };
    let log = EventLog::open(dir.path(), options)?;
    Ok((dir, log))
}
