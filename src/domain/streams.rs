//! The read model of every stream by kind: each stream's version, last position, last event
//! type and time, folded from the whole log in O(log n) per event, for browsing a kind's streams
//! page by page (most recently written first) without reading the log. It only reads the log;
//! it decides nothing about any entity and knows no kind's events.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{CodecError, EventLog, Position, RecordedEvent, Version};
use crate::runtime::projection::{self, ProjectionError};
use crate::runtime::{Projection, ProjectionHandle, ProjectionSettings};

use super::MODEL_WAIT;

/// The read model.
pub struct StreamsModel;

/// One stream, as its last event left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRow {
    pub stream: String,
    /// Its last event's version: how many events it has.
    pub version: Version,
    /// Its last event's global position: the page cursor, since no two streams share it.
    pub position: Position,
    /// Its last event's type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When its last event was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// How many streams a kind has, and when the last of them was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KindRow {
    pub kind: String,
    pub streams: usize,
    /// The position of the kind's latest event.
    pub position: Position,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamsState {
    /// Each kind's streams, keyed by the position of their last event: most recently written
    /// last, so that a stream that moves is one removal and one insertion.
    kinds: BTreeMap<String, BTreeMap<Position, StreamRow>>,
    /// Each stream's last position, to find its row when it moves.
    last: HashMap<String, Position>,
}

impl Projection for StreamsModel {
    type State = StreamsState;

    fn name(&self) -> String {
        "streams".into()
    }

    fn version(&self) -> u32 {
        1
    }

    fn apply(&self, state: &mut StreamsState, event: &RecordedEvent) -> Result<(), CodecError> {
        let kind = event.stream.category();
        let rows = match state.kinds.get_mut(kind) {
            Some(rows) => rows,
            None => state.kinds.entry(kind.to_owned()).or_default(),
        };
        let row = match state.last.get_mut(event.stream.as_str()) {
            Some(last) => {
                let row = rows.remove(last);
                *last = event.position;
                row
            }
            None => {
                state
                    .last
                    .insert(event.stream.as_str().to_owned(), event.position);
                None
            }
        };
        let mut row = row.unwrap_or_else(|| StreamRow {
            stream: event.stream.as_str().to_owned(),
            version: 0,
            position: 0,
            event_type: String::new(),
            recorded_at: event.recorded_at,
        });
        row.version = event.version;
        row.position = event.position;
        row.event_type.clone_from(&event.event_type);
        row.recorded_at = event.recorded_at;
        rows.insert(event.position, row);
        Ok(())
    }
}

/// One page of a kind's streams, most recently written first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamsPage {
    pub streams: Vec<StreamRow>,
    /// How many streams the kind has in all.
    pub total: usize,
    /// The `before` of the next page, when there is one.
    pub next: Option<Position>,
}

impl StreamsState {
    /// Every kind with streams, by name.
    pub fn kinds(&self) -> Vec<KindRow> {
        self.kinds
            .iter()
            .filter_map(|(kind, rows)| {
                let (_, latest) = rows.last_key_value()?;
                Some(KindRow {
                    kind: kind.clone(),
                    streams: rows.len(),
                    position: latest.position,
                    recorded_at: latest.recorded_at,
                })
            })
            .collect()
    }

    /// Up to `limit` streams of `kind` whose last event is before position `before` (all
    /// when none), most recently written first.
    pub fn page(&self, kind: &str, before: Option<Position>, limit: usize) -> StreamsPage {
        let Some(rows) = self.kinds.get(kind) else {
            return StreamsPage {
                streams: Vec::new(),
                total: 0,
                next: None,
            };
        };
        let mut older = rows.range(..before.unwrap_or(Position::MAX)).rev();
        let streams: Vec<StreamRow> = older.by_ref().take(limit).map(|(_, r)| r.clone()).collect();
        let next = match older.next() {
            Some(_) => streams.last().map(|row| row.position),
            None => None,
        };
        StreamsPage {
            streams,
            total: rows.len(),
            next,
        }
    }
}

/// The streams by kind, as the event API shows them. Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    log: EventLog,
    model: ProjectionHandle<StreamsState>,
}

impl Streams {
    /// Starts the read model from its checkpoint, folding on the current Tokio runtime; the
    /// queries wait for it to catch up.
    pub fn start(log: EventLog) -> Result<Streams, ProjectionError> {
        let model = projection::start(StreamsModel, log.clone(), ProjectionSettings::default())?;
        Ok(Streams { log, model })
    }

    /// Reads the model once it has folded every event durable when asked: an event appended
    /// before the query is in its answer.
    async fn read<R>(&self, f: impl FnOnce(&StreamsState) -> R) -> Result<R, ProjectionError> {
        self.model.wait_for(self.log.head(), MODEL_WAIT).await?;
        Ok(self.model.read(|view| f(&view.state)))
    }

    /// Every kind with streams.
    pub async fn kinds(&self) -> Result<Vec<KindRow>, ProjectionError> {
        self.read(StreamsState::kinds).await
    }

    /// See [`StreamsState::page`].
    pub async fn page(
        &self,
        kind: &str,
        before: Option<Position>,
        limit: usize,
    ) -> Result<StreamsPage, ProjectionError> {
        self.read(|state| state.page(kind, before, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Metadata, StreamId};

    fn event(position: Position, stream: &str, version: Version) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: StreamId::parse(stream).unwrap(),
            version,
            event_id: uuid::Uuid::nil(),
            event_type: format!("T{position}"),
            schema_version: 1,
            recorded_at: DateTime::from_timestamp(position as i64, 0).unwrap(),
            metadata: Metadata::system(),
            payload: Vec::new(),
            hash: [0; 32],
        }
    }

    fn folded(events: &[(&str, Version)]) -> StreamsState {
        let mut state = StreamsState::default();
        for (i, (stream, version)) in events.iter().enumerate() {
            StreamsModel
                .apply(&mut state, &event(i as u64 + 1, stream, *version))
                .unwrap();
        }
        state
    }

    fn names(page: &StreamsPage) -> Vec<(&str, Version)> {
        page.streams
            .iter()
            .map(|r| (r.stream.as_str(), r.version))
            .collect()
    }

    #[test]
    fn a_stream_written_again_moves_to_the_front_once() {
        let state = folded(&[("scan-a", 1), ("scan-b", 1), ("job-x", 1), ("scan-a", 2)]);
        let page = state.page("scan", None, 10);
        assert_eq!(names(&page), [("scan-a", 2), ("scan-b", 1)]);
        assert_eq!((page.total, page.next), (2, None));
        assert_eq!(page.streams[0].event_type, "T4");
        let kinds = state.kinds();
        assert_eq!(
            kinds
                .iter()
                .map(|k| (k.kind.as_str(), k.streams, k.position))
                .collect::<Vec<_>>(),
            [("job", 1, 3), ("scan", 2, 4)]
        );
    }

    #[test]
    fn pages_follow_their_cursor_to_the_oldest() {
        let state = folded(&[("job-1", 1), ("job-2", 1), ("job-3", 1), ("job-4", 1)]);
        let first = state.page("job", None, 3);
        assert_eq!(names(&first), [("job-4", 1), ("job-3", 1), ("job-2", 1)]);
        assert_eq!(first.next, Some(2));
        let second = state.page("job", first.next, 3);
        assert_eq!(names(&second), [("job-1", 1)]);
        assert_eq!(second.next, None);
        assert_eq!(state.page("nothing", None, 3).total, 0);
    }
}
