//! Rebuilding an entity's state from its stream: from the newest usable snapshot plus the tail
//! (activation), or from the first event up to a version or a time (audit replay). Also writes
//! snapshots. It reads the log and the snapshot cache; it never appends.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::entity::Entity;
use crate::events::envelope::{DecodeError, EventView};
use crate::events::{CodecError, DomainEvent, EventLog, Position, StoreError, StreamId, Version};

/// Why a state could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("version {version} of {stream} is unreadable: {reason}")]
    Corrupt {
        stream: StreamId,
        version: Version,
        reason: String,
    },
    #[error("event at position {position} of {stream}: {source}")]
    Codec {
        stream: StreamId,
        position: Position,
        source: CodecError,
    },
}

/// A rebuilt state and how it was rebuilt.
#[derive(Debug)]
pub struct Loaded<S> {
    pub state: S,
    pub version: Version,
    /// The version of the snapshot the load started from, if one was usable.
    pub snapshot_version: Option<Version>,
    /// How many events were folded on top of the snapshot (or from the start).
    pub replayed: u64,
    pub took: Duration,
}

/// How a snapshot is stored. Field names are part of the on-disk format.
#[derive(Serialize, Deserialize)]
struct SnapshotRecord {
    /// [`Entity::STATE_VERSION`] when the snapshot was taken.
    state_version: u32,
    version: Version,
    #[serde(with = "serde_bytes")]
    state: Vec<u8>,
}

/// The newest snapshot of a stream, if it was taken under the current state schema and decodes.
/// A stale or undecodable snapshot is ignored (the caller replays instead), never an error.
fn usable_snapshot<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
) -> Result<Option<(E::State, Version)>, StoreError> {
    let Some(raw) = log.store().snapshot(stream)? else {
        return Ok(None);
    };
    let Ok(record) = rmp_serde::from_slice::<SnapshotRecord>(&raw) else {
        tracing::warn!(%stream, "ignoring an undecodable snapshot");
        return Ok(None);
    };
    if record.state_version != E::STATE_VERSION || record.version > log.stream_version(stream)? {
        return Ok(None);
    }
    match rmp_serde::from_slice(&record.state) {
        Ok(state) => Ok(Some((state, record.version))),
        Err(error) => {
            tracing::warn!(%stream, %error, "ignoring a snapshot whose state does not decode");
            Ok(None)
        }
    }
}

/// Rebuilds the current state: the newest usable snapshot, then every durable event after it.
pub fn load<E: Entity>(log: &EventLog, stream: &StreamId) -> Result<Loaded<E::State>, LoadError> {
    let started = Instant::now();
    let (state, version) = usable_snapshot::<E>(log, stream)?.unzip();
    let mut loaded = Loaded {
        state: state.unwrap_or_default(),
        version: version.unwrap_or(0),
        snapshot_version: version,
        replayed: 0,
        took: Duration::ZERO,
    };
    fold_tail::<E>(log, stream, &mut loaded, |_| Ok(true))?;
    loaded.took = started.elapsed();
    Ok(loaded)
}

/// Folds the durable events after `loaded.version` into it, while `keep` accepts them. Records
/// are read in place ([`EventView`]): folding copies nothing but what the payload decodes to.
pub fn fold_tail<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
    loaded: &mut Loaded<E::State>,
    keep: impl FnMut(&EventView) -> Result<bool, DecodeError>,
) -> Result<(), LoadError> {
    each_event::<E>(log, stream, loaded.version, keep, |version, event| {
        E::apply(&mut loaded.state, &event);
        loaded.version = version;
        loaded.replayed += 1;
        true
    })
}

/// Decodes the durable events of a stream after version `after`, in order, while `keep`
/// accepts their records and `take` asks for more.
fn each_event<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
    after: Version,
    mut keep: impl FnMut(&EventView) -> Result<bool, DecodeError>,
    mut take: impl FnMut(Version, E::Event) -> bool,
) -> Result<(), LoadError> {
    let head = log.head();
    let mut last = after;
    for record in log.store().stream_records_after(stream, after) {
        let record = record?;
        let corrupt = |error: DecodeError| LoadError::Corrupt {
            stream: stream.clone(),
            version: last + 1,
            reason: error.to_string(),
        };
        let view = record.view().map_err(corrupt)?;
        if view.position() > head || !keep(&view).map_err(corrupt)? {
            break;
        }
        let event = E::Event::decode(view.event_type(), view.schema_version(), view.payload())
            .map_err(|source| LoadError::Codec {
                stream: stream.clone(),
                position: view.position(),
                source,
            })?;
        last = view.version();
        if !take(last, event) {
            break;
        }
    }
    Ok(())
}

/// Where an audit replay stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayUntil {
    /// The newest durable event.
    End,
    /// This version, inclusive.
    Version(Version),
    /// The last event recorded at or before this time.
    Time(DateTime<Utc>),
}

/// Rebuilds a state from the stream's first event, ignoring snapshots, up to a point.
pub fn replay<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
    until: ReplayUntil,
) -> Result<Loaded<E::State>, LoadError> {
    let started = Instant::now();
    let mut loaded = Loaded {
        state: E::State::default(),
        version: 0,
        snapshot_version: None,
        replayed: 0,
        took: Duration::ZERO,
    };
    fold_tail::<E>(log, stream, &mut loaded, |event| match until {
        ReplayUntil::End => Ok(true),
        ReplayUntil::Version(version) => Ok(event.version() <= version),
        ReplayUntil::Time(time) => Ok(event.recorded_at()? <= time),
    })?;
    loaded.took = started.elapsed();
    Ok(loaded)
}

/// Writes a snapshot of a state at a version.
pub fn save_snapshot<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
    version: Version,
    state: &E::State,
) -> Result<(), StoreError> {
    let record = SnapshotRecord {
        state_version: E::STATE_VERSION,
        version,
        state: rmp_serde::to_vec_named(state).map_err(|e| StoreError::Corrupt {
            what: format!("the state of {stream}"),
            reason: format!("it cannot be encoded for a snapshot: {e}"),
        })?,
    };
    let raw = rmp_serde::to_vec_named(&record).expect("a snapshot record always encodes");
    log.store().put_snapshot(stream, &raw)
}

/// Visits the durable events of a stream with a version in `(after, until]`, in order, until
/// `visit` says to stop: how a service reads what a state does not keep (an execution's log
/// lines, a scan's findings) from the entity's own stream. It reads the store: run it off the
/// async threads. An event that does not decode is a corrupt log to the caller.
pub fn visit_stream<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
    after: Version,
    until: Version,
    visit: impl FnMut(Version, E::Event) -> bool,
) -> Result<(), StoreError> {
    each_event::<E>(
        log,
        stream,
        after,
        |view| Ok(view.version() <= until),
        visit,
    )
    .map_err(|error| match error {
        LoadError::Store(error) => error,
        other => StoreError::Corrupt {
            what: stream.to_string(),
            reason: other.to_string(),
        },
    })
}
