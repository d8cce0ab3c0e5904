//! Finding events by an id without scanning the log: the event with an event id, or the events
//! of a correlation id. annals mints both as UUIDv7, whose first 48 bits are the time they were
//! minted, and the journal records every event at or after the time its ids were minted, never
//! going backwards; so the events an id names are at or after the first position recorded at
//! that time, which a binary search over positions finds with point reads, and a bounded window
//! from there is all that is read. It only reads the log.

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::events::{EventLog, Position, RecordedEvent, StoreError};

/// How many events from an id's time on a lookup reads at most: an event committed later than
/// that after its id was minted, or a correlation's events past it, are not found.
pub const LOOKUP_WINDOW: u64 = 10_000;

/// How long before an id's time the window starts: a UUIDv7 generator keeps its ids increasing
/// by running its time a little ahead when it mints many in one millisecond, and a clock may be
/// stepped back a little between minting an id and recording its event. At the log's fastest
/// (about 35,000 events/s, `docs/benchmarks.md`) this adds a few thousand events to the window.
pub const CLOCK_LEAD: TimeDelta = TimeDelta::milliseconds(100);

/// The most events of one correlation a lookup answers with.
pub const MAX_FOUND: usize = 1000;

/// What an id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// The event with this id.
    EventId,
    /// The events with this correlation id, in commit order.
    CorrelationId,
}

/// The events an id names, and the positions looked at.
#[derive(Debug)]
pub struct Lookup {
    pub matched: Matched,
    pub events: Vec<RecordedEvent>,
    /// The first position read.
    pub from: Position,
    /// The last position read.
    pub to: Position,
    /// Whether more of the correlation's events were left out once [`MAX_FOUND`] were found.
    pub truncated: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(
        "{0} is not a time-ordered (version 7) UUID: annals mints event and correlation ids \
         as UUIDv7, and finds them by the time they carry"
    )]
    NotTimeOrdered(Uuid),
    #[error(
        "no event has the id or the correlation id {id} among the {} events recorded from \
         its time on (from position {from}; a lookup reads at most {LOOKUP_WINDOW})",
        (to + 1).saturating_sub(*from)
    )]
    NotFound {
        id: Uuid,
        from: Position,
        to: Position,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The time a UUIDv7 was minted, to the millisecond.
fn minted_at(id: Uuid) -> Option<DateTime<Utc>> {
    if id.get_version() != Some(uuid::Version::SortRand) {
        return None;
    }
    let (seconds, nanos) = id.get_timestamp()?.to_unix();
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, nanos)
}

/// The first durable position recorded at or after `since` (one past the head when none is):
/// a binary search, one point read per step.
fn first_at_or_after(log: &EventLog, since: DateTime<Utc>) -> Result<Position, StoreError> {
    let head = log.head();
    // The answer is in `low..=high`; `high` is one past the head when no event qualifies.
    let (mut low, mut high) = (1, head + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        match log.store().event(middle)? {
            Some(event) if event.recorded_at >= since => high = middle,
            // A position that holds no event (none do below the head) is taken as earlier.
            _ => low = middle + 1,
        }
    }
    Ok(low)
}

/// The event with the id `id`, or else the events with the correlation id `id`, looked for
/// among at most [`LOOKUP_WINDOW`] events from the id's time on.
pub fn find(log: &EventLog, id: Uuid) -> Result<Lookup, LookupError> {
    let minted = minted_at(id).ok_or(LookupError::NotTimeOrdered(id))?;
    let since = minted.checked_sub_signed(CLOCK_LEAD).unwrap_or(minted);
    let head = log.head();
    let from = first_at_or_after(log, since)?;
    let until = head.min(from.saturating_add(LOOKUP_WINDOW - 1));
    let mut correlated = Vec::new();
    let mut truncated = false;
    let mut looked_to = from.saturating_sub(1);
    let mut after = from.saturating_sub(1);
    'read: while after < until {
        let chunk = usize::try_from((until - after).min(1000)).unwrap_or(1000);
        let events = log.read_all(after, chunk)?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        for event in events {
            if event.position > until {
                break 'read;
            }
            looked_to = event.position;
            if event.event_id == id {
                return Ok(Lookup {
                    matched: Matched::EventId,
                    from,
                    to: event.position,
                    events: vec![event],
                    truncated: false,
                });
            }
            if event.metadata.correlation_id == Some(id) {
                if correlated.len() == MAX_FOUND {
                    truncated = true;
                    looked_to -= 1;
                    break 'read;
                }
                correlated.push(event);
            }
        }
        after = last;
    }
    if correlated.is_empty() {
        return Err(LookupError::NotFound {
            id,
            from,
            to: looked_to,
        });
    }
    Ok(Lookup {
        matched: Matched::CorrelationId,
        events: correlated,
        from,
        to: looked_to,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_the_ones_the_documentation_states() {
        // `docs/api.md` and the OpenAPI description of `/api/ids/{id}` spell these out.
        assert_eq!(LOOKUP_WINDOW, 10_000);
        assert_eq!(MAX_FOUND, 1000);
        assert_eq!(CLOCK_LEAD, TimeDelta::milliseconds(100));
    }

    #[test]
    fn only_time_ordered_ids_carry_a_time() {
        assert_eq!(minted_at(Uuid::new_v4()), None);
        assert_eq!(minted_at(Uuid::from_u128(1)), None);
        let at = DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap();
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            1_700_000_000,
            123_000_000,
        ));
        assert_eq!(minted_at(id), Some(at));
    }
}
