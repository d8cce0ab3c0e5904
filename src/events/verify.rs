//! Verification of a whole log: the hash chain, gapless positions and versions, and the
//! global order (round index entries, or the position pointers of old logs) against the
//! records. It reads raw records and trusts nothing it has not recomputed; it never writes. It expects a quiet log: the `annals verify` command holds the
//! log's lock while it runs.

use std::collections::HashMap;

use super::envelope::{
    chain, split_record, Hash, Position, RecordedEvent, StreamId, Version, GENESIS_HASH,
};
use super::store::{RawEvent, Store, StoreError};

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

/// Walks the whole log as it is on disk. `progress` is called with each verified position.
pub fn verify(store: &Store, progress: impl FnMut(Position)) -> Result<VerifyReport, VerifyError> {
    let head = store.log_head()?.position;
    verify_up_to(store, head, progress)
}

/// Walks the log up to position `head`, ignoring anything appended after it, so that a log in
/// use can be checked. `progress` is called with each verified position.
pub fn verify_up_to(
    store: &Store,
    head: Position,
    mut progress: impl FnMut(Position),
) -> Result<VerifyReport, VerifyError> {
    let mut prev = GENESIS_HASH;
    let mut expected_position: Position = 1;
    let mut versions: HashMap<StreamId, Version> = HashMap::new();
    for item in store.raw_events_after(0) {
        if expected_position > head {
            break;
        }
        // An index entry or pointer that is malformed or leads nowhere is a fault of the next
        // position.
        let raw = item.map_err(|e| VerifyError::at(expected_position, e.to_string()))?;
        if raw.position != expected_position {
            return Err(VerifyError::at(
                expected_position,
                format!(
                    "missing: the next stored event is at position {}",
                    raw.position
                ),
            ));
        }
        let event = check_record(&raw, &prev)?;
        let version = versions.entry(event.stream.clone()).or_insert(0);
        if event.version != *version + 1 {
            return Err(VerifyError::at(
                raw.position,
                format!(
                    "stream {} jumps from version {} to {}",
                    event.stream, version, event.version
                ),
            ));
        }
        *version = event.version;
        prev = event.hash;
        expected_position += 1;
        progress(raw.position);
    }
    let events = expected_position - 1;

    if events != head {
        return Err(VerifyError::at(
            events + 1,
            "missing: the log ends before its head",
        ));
    }
    let stored = store.log_head()?;
    if stored.position < head || (stored.position == head && stored.hash != prev) {
        return Err(VerifyError::log(format!(
            "the log head says position {} but the events reach {head}, or its hash differs",
            stored.position
        )));
    }
    let counts = store.entry_counts(head)?;
    for (name, count) in [
        ("stored records", counts.records),
        ("positions in global order", counts.positions),
    ] {
        if count != events {
            return Err(VerifyError::log(format!(
                "the log holds {count} {name} for {events} events"
            )));
        }
    }
    Ok(VerifyReport {
        events,
        streams: versions.len() as u64,
        head: events,
        head_hash: prev,
    })
}

/// The record must chain to the one before, decode, and be the event the index names.
fn check_record(raw: &RawEvent, prev: &Hash) -> Result<RecordedEvent, VerifyError> {
    let at = raw.position;
    let (claimed, body) = split_record(&raw.record)
        .ok_or_else(|| VerifyError::at(at, "the record is shorter than its hash"))?;
    if chain(prev, body) != claimed {
        return Err(VerifyError::at(
            at,
            "hash mismatch: the event or the one before it was changed after it was written",
        ));
    }
    let event = RecordedEvent::open(&raw.record)
        .map_err(|e| VerifyError::at(at, format!("undecodable: {e}")))?;
    if event.position != at {
        return Err(VerifyError::at(
            at,
            format!("the event says it is at position {}", event.position),
        ));
    }
    if event.stream != raw.stream || event.version != raw.version {
        return Err(VerifyError::at(
            at,
            format!(
                "the position points at {} version {}, which holds {} version {}",
                raw.stream, raw.version, event.stream, event.version
            ),
        ));
    }
    Ok(event)
}

/// Where a verification of a log in use stands, as `GET /api/verify` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum VerifyStatus {
    Running {
        head: Position,
        checked: Position,
        started_at: chrono::DateTime<chrono::Utc>,
    },
    Ok {
        head: Position,
        events: u64,
        streams: u64,
        hash: String,
        started_at: chrono::DateTime<chrono::Utc>,
        finished_at: chrono::DateTime<chrono::Utc>,
    },
    Failed {
        head: Position,
        position: Option<Position>,
        problem: String,
        started_at: chrono::DateTime<chrono::Utc>,
        finished_at: chrono::DateTime<chrono::Utc>,
    },
}

/// Runs one verification at a time over a log in use: asked while none has run, or after the
/// log has moved past the last one, it starts a new run (on a thread of its own, up to the
/// durable head of that moment); otherwise it reports the current or last run. A caller waiting
/// for a run it started names that run's head as `covering`: a finished run up to there is then
/// reported rather than followed by a new one, so that a log written all the time still lets
/// the waiter see its run end.
#[derive(Default)]
pub struct Verifier {
    last: std::sync::Mutex<Option<VerifyStatus>>,
    checked: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Verifier {
    pub fn start_or_report(
        self: &std::sync::Arc<Self>,
        log: &super::EventLog,
        covering: Option<Position>,
    ) -> VerifyStatus {
        use std::sync::atomic::Ordering;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let head = log.head();
        let wanted = covering.map_or(head, |covering| covering.min(head));
        let start = match &*last {
            None => true,
            Some(VerifyStatus::Running { .. }) => false,
            Some(VerifyStatus::Ok { head: done, .. } | VerifyStatus::Failed { head: done, .. }) => {
                *done < wanted
            }
        };
        if start {
            let started_at = chrono::Utc::now();
            self.checked.store(0, Ordering::Relaxed);
            *last = Some(VerifyStatus::Running {
                head,
                checked: 0,
                started_at,
            });
            let verifier = self.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                let checked = verifier.checked.clone();
                let outcome = verify_up_to(log.store(), head, |position| {
                    checked.store(position, Ordering::Relaxed)
                });
                let finished_at = chrono::Utc::now();
                let status = match outcome {
                    Ok(report) => VerifyStatus::Ok {
                        head,
                        events: report.events,
                        streams: report.streams,
                        hash: hex::encode(report.head_hash),
                        started_at,
                        finished_at,
                    },
                    Err(error) => VerifyStatus::Failed {
                        head,
                        position: error.position,
                        problem: error.problem,
                        started_at,
                        finished_at,
                    },
                };
                *verifier.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
            });
        }
        match last.clone().expect("set above") {
            VerifyStatus::Running {
                head, started_at, ..
            } => VerifyStatus::Running {
                head,
                checked: self.checked.load(Ordering::Relaxed),
                started_at,
            },
            done => done,
        }
    }
}
