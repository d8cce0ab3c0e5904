//! Copies a whole log from one engine to another (sled to PostgreSQL and back): the same
//! records byte for byte, so the same positions, versions, event ids, times and hash chain.
//! The copy goes in rounds of [`MIGRATE_ROUND`] events, each atomic and durable; the target must
//! be empty and nobody else may write to it meanwhile. Snapshots and checkpoints are caches and
//! are not copied: the target rebuilds them.

use super::envelope::{Position, RecordedEvent};
use super::store::{Committed, Durability, LogHead, Store, StoreError};
use super::verify::{verify, VerifyReport};

/// The events one round of the copy writes.
pub const MIGRATE_ROUND: usize = 2_000;

/// Why a migration stopped. Nothing is left half-written: every round is atomic, and a target
/// that is not empty is refused before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the target log is not empty (its head is at position {0}); migrate into a new log")]
    TargetNotEmpty(Position),
    #[error("another writer appended to the target log during the copy (its head moved to {0})")]
    TargetMoved(Position),
    #[error("the source log is corrupt at position {position}: {reason}")]
    Source { position: Position, reason: String },
    #[error("the copy does not verify: {0}")]
    Copy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Copies every event of `from` into the empty log `to`, then verifies the copy and checks that
/// its head hash is the source's. `progress` is called with each copied position.
pub fn migrate(
    from: &Store,
    to: &Store,
    mut progress: impl FnMut(Position),
) -> Result<VerifyReport, MigrateError> {
    let source_head = from.log_head()?;
    let target_head = to.log_head()?;
    if target_head.position != 0 {
        return Err(MigrateError::TargetNotEmpty(target_head.position));
    }
    let mut written = LogHead::EMPTY;
    let mut head = LogHead::EMPTY;
    let mut batch = to.new_batch();
    let mut staged = 0;
    for raw in from.raw_events_after(0) {
        let raw = raw.map_err(|e| MigrateError::Source {
            position: head.position + 1,
            reason: e.to_string(),
        })?;
        if raw.position > source_head.position {
            break;
        }
        let event = RecordedEvent::open(&raw.record).map_err(|e| MigrateError::Source {
            position: raw.position,
            reason: e.to_string(),
        })?;
        if raw.position != head.position + 1 || event.position != raw.position {
            return Err(MigrateError::Source {
                position: head.position + 1,
                reason: "missing or out of place".into(),
            });
        }
        batch.put_event(
            raw.position,
            &raw.stream,
            raw.version,
            event.event_id,
            raw.record.to_vec(),
        );
        head = LogHead {
            position: raw.position,
            hash: event.hash,
            recorded_at: Some(event.recorded_at),
            greatest_id: head.greatest_id.max(event.event_id),
        };
        staged += 1;
        if staged == MIGRATE_ROUND {
            let full = std::mem::replace(&mut batch, to.new_batch());
            commit(to, &written, &head, full)?;
            written = head;
            staged = 0;
        }
        progress(raw.position);
    }
    if staged > 0 {
        commit(to, &written, &head, batch)?;
    }
    let report = verify(to, |_| {}).map_err(|e| MigrateError::Copy(e.to_string()))?;
    if report.head != source_head.position || report.head_hash != source_head.hash {
        return Err(MigrateError::Copy(format!(
            "the copy ends at position {} but the source at {}, or their hashes differ",
            report.head, source_head.position
        )));
    }
    Ok(report)
}

/// Writes one round of the copy on top of `written`, the head the previous round left.
fn commit(
    to: &Store,
    written: &LogHead,
    head: &LogHead,
    mut batch: super::store::WriteBatch,
) -> Result<(), MigrateError> {
    let (found, _) = to.begin_round(written, false, &[])?;
    if found.position != written.position || found.hash != written.hash {
        return Err(MigrateError::TargetMoved(found.position));
    }
    batch.put_log_head(head);
    match to.commit(batch, Durability::Fsync)? {
        Committed::Written => Ok(()),
        Committed::HeadMoved => Err(MigrateError::TargetMoved(to.log_head()?.position)),
    }
}
