//! A log in a temporary directory, for the benchmarks that drive one directly rather than
//! through the server, and the events they append to it.
// Each benchmark uses part of it.
#![allow(dead_code)]

use annals::events::{DomainEvent, Durability, EventLog, LogOptions, Metadata, NewEvent};
use uuid::Uuid;

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

/// `event` as an append takes it, with a time-ordered id as annals makes them.
pub fn new_event<E: DomainEvent>(event: &E) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        payload: event.encode_payload(),
        metadata: Metadata::system(),
    }
}
