//! Verification of a whole log: the hash chain, gapless positions and versions, and every index
//! against the events. It reads raw records and trusts nothing it has not recomputed; it never
//! writes.

use std::collections::HashMap;

use super::envelope::{
    chain, split_record, Hash, Position, RecordedEvent, StreamId, Version, GENESIS_HASH,
};
use super::store::{Store, StoreError};

/// What a clean log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub head: Position,
    pub head_hash: Hash,
}

/// The first problem found. `position` names the first bad event when one is to blame.
#[derive(Debug, thiserror::Error)]
#[error("{}{problem}", position.map(|p| format!("position {p}: ")).unwrap_or_default())]
pub struct VerifyError {
    pub position: Option<Position>,
    pub problem: String,
}

impl VerifyError {
    fn at(position: Position, problem: impl Into<String>) -> VerifyError {
        VerifyError {
            position: Some(position),
            problem: problem.into(),
        }
    }

    fn log(problem: impl Into<String>) -> VerifyError {
        VerifyError {
            position: None,
            problem: problem.into(),
        }
    }
}

impl From<StoreError> for VerifyError {
    fn from(error: StoreError) -> Self {
        VerifyError::log(error.to_string())
    }
}

/// Walks the whole log. `progress` is called with each verified position.
pub fn verify(
    store: &Store,
    mut progress: impl FnMut(Position),
) -> Result<VerifyReport, VerifyError> {
    let mut prev = GENESIS_HASH;
    let mut expected_position: Position = 1;
    let mut versions: HashMap<StreamId, Version> = HashMap::new();
    for item in store.raw_events_after(0) {
        let (position, record) = item?;
        if position != expected_position {
            return Err(VerifyError::at(
                expected_position,
                format!("missing: the next stored event is at position {position}"),
            ));
        }
        let (claimed, body) = split_record(&record)
            .ok_or_else(|| VerifyError::at(position, "the record is shorter than its hash"))?;
        if chain(&prev, body) != claimed {
            return Err(VerifyError::at(
                position,
                "hash mismatch: the event or the one before it was changed after it was written",
            ));
        }
        let event = RecordedEvent::open(&record)
            .map_err(|e| VerifyError::at(position, format!("undecodable: {e}")))?;
        if event.position != position {
            return Err(VerifyError::at(
                position,
                format!("the event says it is at position {}", event.position),
            ));
        }
        let version = versions.entry(event.stream.clone()).or_insert(0);
        if event.version != *version + 1 {
            return Err(VerifyError::at(
                position,
                format!(
                    "stream {} jumps from version {} to {}",
                    event.stream, version, event.version
                ),
            ));
        }
        *version = event.version;
        check_indexes(store, &event)?;
        prev = event.hash;
        expected_position += 1;
        progress(position);
    }
    let events = expected_position - 1;

    let head = store.log_head()?;
    if head.position != events || head.hash != prev {
        return Err(VerifyError::log(format!(
            "the log head says position {} but the last event is at {events}, or its hash differs",
            head.position
        )));
    }
    check_index_sizes(store, events, &versions)?;
    Ok(VerifyReport {
        events,
        streams: versions.len() as u64,
        head: events,
        head_hash: prev,
    })
}

/// Every index must list the event where it is.
fn check_indexes(store: &Store, event: &RecordedEvent) -> Result<(), VerifyError> {
    let at = event.position;
    if store.position_of_version(&event.stream, event.version)? != Some(at) {
        return Err(VerifyError::at(at, "the stream index does not point at it"));
    }
    if store.position_of_event_id(&event.stream, event.event_id)? != Some(at) {
        return Err(VerifyError::at(
            at,
            "the event-id index does not point at it",
        ));
    }
    if !store.category_lists(event.stream.category(), at)? {
        return Err(VerifyError::at(at, "the category index does not list it"));
    }
    Ok(())
}

/// Each event has exactly one entry in each index and each stream one head, so equal counts
/// (with every event's entries found) mean there is nothing extra.
fn check_index_sizes(
    store: &Store,
    events: u64,
    versions: &HashMap<StreamId, Version>,
) -> Result<(), VerifyError> {
    let count =
        |iter: &mut dyn Iterator<Item = Result<(), StoreError>>| -> Result<u64, VerifyError> {
            let mut n = 0;
            for item in iter {
                item?;
                n += 1;
            }
            Ok(n)
        };
    let sizes = [
        (
            "stream index",
            count(&mut store.stream_index().map(|r| r.map(drop)))?,
        ),
        (
            "event-id index",
            count(&mut store.event_id_index().map(|r| r.map(drop)))?,
        ),
        (
            "category index",
            count(&mut store.category_index().map(|r| r.map(drop)))?,
        ),
    ];
    for (name, size) in sizes {
        if size != events {
            return Err(VerifyError::log(format!(
                "the {name} has {size} entries for {events} events"
            )));
        }
    }
    let mut heads = 0;
    for item in store.stream_heads() {
        let (stream, version) = item?;
        if versions.get(&stream) != Some(&version) {
            return Err(VerifyError::log(format!(
                "stream {stream} has head version {version}, but its events end at {}",
                versions.get(&stream).copied().unwrap_or(0)
            )));
        }
        heads += 1;
    }
    if heads != versions.len() {
        return Err(VerifyError::log(format!(
            "{heads} stream heads for {} streams",
            versions.len()
        )));
    }
    Ok(())
}
