//! The registry of entity kinds known to this build, by stream category, for the tools that
//! work on any stream (`annals replay`). Each face adds its kind here.

use serde::Serialize;

use super::entity::Entity;
use super::gros::{GrosAgent, GrosProject};
use super::inventory::HostRecord;
use super::job::Job;
use super::results::Submission;
use super::scan::ScanRecord;
use super::sshkey::SshKey;
use super::state::{self, LoadError, ReplayUntil};
use super::testrun::TestRunRecord;
use super::workflow::Execution;
use crate::events::{DomainEvent, EventLog, StreamId, Version};

/// A state replayed for audit, as JSON.
#[derive(Debug, Serialize)]
pub struct Replayed {
    pub stream: StreamId,
    /// The version of the last event folded in (0: none).
    pub version: Version,
    pub state: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no entity kind is called {0:?}; known kinds: {known}", known = KINDS.join(", "))]
    UnknownKind(String),
    /// No event was ever appended to the stream: there is no state to show, not even an empty
    /// one, which would read as an entity that exists.
    #[error("no such stream: {0} has no event")]
    NoSuchStream(StreamId),
    /// The point asked for comes before the stream's first event: the entity did not exist yet,
    /// and its empty state would read as one that did.
    #[error("{0} had no event yet at that point: its first event comes later")]
    NotYet(StreamId),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Every kind `replay` knows.
pub const KINDS: &[&str] = &[
    Job::KIND,
    HostRecord::KIND,
    TestRunRecord::KIND,
    Submission::KIND,
    ScanRecord::KIND,
    Execution::KIND,
    SshKey::KIND,
    GrosAgent::KIND,
    GrosProject::KIND,
];

/// Every kind with the event types it writes, in the order of [`KINDS`].
pub fn event_types() -> [(&'static str, &'static [&'static str]); 9] {
    fn of<E: Entity>() -> (&'static str, &'static [&'static str]) {
        (E::KIND, <E::Event as DomainEvent>::TYPES)
    }
    [
        of::<Job>(),
        of::<HostRecord>(),
        of::<TestRunRecord>(),
        of::<Submission>(),
        of::<ScanRecord>(),
        of::<Execution>(),
        of::<SshKey>(),
        of::<GrosAgent>(),
        of::<GrosProject>(),
    ]
}

/// Replays a stream of any known kind from its first event up to `until`.
pub fn replay(
    log: &EventLog,
    stream: &StreamId,
    until: ReplayUntil,
) -> Result<Replayed, ReplayError> {
    match stream.category() {
        Job::KIND => replay_as::<Job>(log, stream, until),
        HostRecord::KIND => replay_as::<HostRecord>(log, stream, until),
        TestRunRecord::KIND => replay_as::<TestRunRecord>(log, stream, until),
        Submission::KIND => replay_as::<Submission>(log, stream, until),
        ScanRecord::KIND => replay_as::<ScanRecord>(log, stream, until),
        Execution::KIND => replay_as::<Execution>(log, stream, until),
        SshKey::KIND => replay_as::<SshKey>(log, stream, until),
        GrosAgent::KIND => replay_as::<GrosAgent>(log, stream, until),
        GrosProject::KIND => replay_as::<GrosProject>(log, stream, until),
        other => Err(ReplayError::UnknownKind(other.to_owned())),
    }
}

fn replay_as<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
    until: ReplayUntil,
) -> Result<Replayed, ReplayError> {
    if log.stream_version(stream).map_err(LoadError::from)? == 0 {
        return Err(ReplayError::NoSuchStream(stream.clone()));
    }
    let loaded = state::replay::<E>(log, stream, until)?;
    if loaded.version == 0 {
        return Err(ReplayError::NotYet(stream.clone()));
    }
    Ok(Replayed {
        stream: stream.clone(),
        version: loaded.version,
        // Entity states are plain data with string keys; they always render as JSON.
        state: serde_json::to_value(&loaded.state).expect("entity states render as JSON"),
    })
}
