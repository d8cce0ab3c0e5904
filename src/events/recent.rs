//! The latest durable events, kept in memory as the journal publishes them, so that followers
//! near the head read them without touching storage and each event is rendered as JSON once for
//! all of them. It holds only events the journal has made durable; it never reads or writes the
//! store.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, RwLock};

use super::codec::render;
use super::envelope::{Position, RecordedEvent, StreamId, Version};

/// A durable event shared by every reader that is handed it, with its JSON rendering made at
/// most once.
#[derive(Debug)]
pub struct SharedEvent {
    event: RecordedEvent,
    json: OnceLock<Box<str>>,
}

impl SharedEvent {
    pub fn new(event: RecordedEvent) -> SharedEvent {
        SharedEvent {
            event,
            json: OnceLock::new(),
        }
    }

    pub fn event(&self) -> &RecordedEvent {
        &self.event
    }

    /// The event as compact JSON ([`render`]), made by the first reader that asks.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            // A `serde_json::Value` always serializes: its map keys are strings.
            serde_json::to_string(&render(&self.event))
                .expect("a rendered event serializes")
                .into_boxed_str()
        })
    }
}

/// How much the window keeps: the last `events` events, fewer when their payloads add up to
/// more than `payload_bytes`.
#[derive(Clone, Copy, Debug)]
pub struct RecentLimits {
    pub events: usize,
    pub payload_bytes: usize,
}

impl Default for RecentLimits {
    fn default() -> Self {
        // Four pages of the largest size the event API serves, and a memory bound that stays
        // small next to sled's page cache even when events are big.
        RecentLimits {
            events: 4096,
            payload_bytes: 16 << 20,
        }
    }
}

/// The window: consecutive positions `(start, start + len]`, oldest first.
#[derive(Debug)]
struct Window {
    start: Position,
    events: VecDeque<Arc<SharedEvent>>,
    payload_bytes: usize,
}

/// The latest durable events. The journal adds each round here before it publishes the new
/// head, so every position up to a published head is either here or older than the window.
#[derive(Debug)]
pub struct RecentEvents {
    window: RwLock<Window>,
    limits: RecentLimits,
}

impl RecentEvents {
    /// An empty window whose next event is the one after `head`.
    pub fn new(head: Position, limits: RecentLimits) -> RecentEvents {
        RecentEvents {
            window: RwLock::new(Window {
                start: head,
                events: VecDeque::new(),
                payload_bytes: 0,
            }),
            limits,
        }
    }

    /// Adds a durable round. Its first event must follow the last one added; the journal, the
    /// only caller, commits positions in order without gaps.
    pub(crate) fn push_round(&self, round: Vec<RecordedEvent>) {
        let mut window = self.window.write().unwrap_or_else(|p| p.into_inner());
        for event in round {
            debug_assert_eq!(
                event.position,
                window.start + window.events.len() as u64 + 1,
                "rounds arrive in order"
            );
            window.payload_bytes += event.payload.len();
            window.events.push_back(Arc::new(SharedEvent::new(event)));
        }
        while window.events.len() > self.limits.events
            || (window.payload_bytes > self.limits.payload_bytes && window.events.len() > 1)
        {
            if let Some(oldest) = window.events.pop_front() {
                window.payload_bytes -= oldest.event.payload.len();
                window.start += 1;
            }
        }
    }

    /// Up to `limit` events in `(after, head]` that `accepts` lets through, looking at every
    /// position of that range until `limit` is reached; returns them with the last position
    /// looked at. `None` when the window no longer holds the event after `after`.
    pub fn after(
        &self,
        after: Position,
        head: Position,
        limit: usize,
        accepts: impl Fn(&RecordedEvent) -> bool,
    ) -> Option<(Vec<Arc<SharedEvent>>, Position)> {
        let window = self.window.read().unwrap_or_else(|p| p.into_inner());
        if after < window.start {
            return None;
        }
        let end = head.min(window.start + window.events.len() as u64);
        let mut found = Vec::new();
        let mut looked_at = after;
        // `after` may lie past the window's newest event, when a follower asks from beyond
        // the head.
        let first = ((after - window.start) as usize).min(window.events.len());
        for shared in window.events.range(first..) {
            if looked_at >= end || found.len() >= limit {
                break;
            }
            looked_at = shared.event.position;
            if accepts(&shared.event) {
                found.push(shared.clone());
            }
        }
        Some((found, looked_at))
    }

    /// Up to `limit` events of `stream` with a version above `after` in `(seen, head]`, for a
    /// caller that knows the stream has no such event at or below `seen`: then these are all of
    /// them up to `head`. `None` when the window no longer holds the event after `seen`.
    pub fn of_stream(
        &self,
        stream: &StreamId,
        after: Version,
        seen: Position,
        head: Position,
        limit: usize,
    ) -> Option<Vec<Arc<SharedEvent>>> {
        let window = self.window.read().unwrap_or_else(|p| p.into_inner());
        if seen < window.start {
            return None;
        }
        let first = ((seen - window.start) as usize).min(window.events.len());
        Some(
            window
                .events
                .range(first..)
                .take_while(|shared| shared.event.position <= head)
                .filter(|shared| &shared.event.stream == stream && shared.event.version > after)
                .take(limit)
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::envelope::{Metadata, GENESIS_HASH};

    fn event(position: Position, stream: &str, version: Version, payload: usize) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: StreamId::parse(stream).unwrap(),
            version,
            event_id: uuid::Uuid::new_v4(),
            event_type: "LineRecorded".into(),
            schema_version: 1,
            recorded_at: chrono::DateTime::from_timestamp_micros(0).unwrap(),
            metadata: Metadata::system(),
            payload: vec![0x80; payload],
            hash: GENESIS_HASH,
        }
    }

    fn positions(events: &[Arc<SharedEvent>]) -> Vec<Position> {
        events.iter().map(|e| e.event().position).collect()
    }

    #[test]
    fn reads_are_capped_at_the_head_and_the_limit() {
        let recent = RecentEvents::new(10, RecentLimits::default());
        recent.push_round((11..=15).map(|p| event(p, "job-a", p - 10, 1)).collect());
        let (found, looked_at) = recent.after(10, 13, 100, |_| true).unwrap();
        assert_eq!((positions(&found), looked_at), (vec![11, 12, 13], 13));
        let (found, looked_at) = recent.after(11, 15, 2, |_| true).unwrap();
        assert_eq!((positions(&found), looked_at), (vec![12, 13], 13));
        let (found, looked_at) = recent.after(15, 15, 10, |_| true).unwrap();
        assert_eq!((positions(&found), looked_at), (vec![], 15));
        let (found, looked_at) = recent.after(11, 15, 10, |e| e.position == 14).unwrap();
        assert_eq!((positions(&found), looked_at), (vec![14], 15));
        assert!(recent.after(9, 15, 10, |_| true).is_none());
    }

    #[test]
    fn the_window_drops_its_oldest_events_past_its_limits() {
        let limits = RecentLimits {
            events: 3,
            payload_bytes: 250,
        };
        let recent = RecentEvents::new(0, limits);
        recent.push_round((1..=5).map(|p| event(p, "job-a", p, 10)).collect());
        assert!(recent.after(1, 5, 10, |_| true).is_none());
        let (found, _) = recent.after(2, 5, 10, |_| true).unwrap();
        assert_eq!(positions(&found), [3, 4, 5]);
        recent.push_round(vec![event(6, "job-a", 6, 200), event(7, "job-a", 7, 100)]);
        assert!(recent.after(5, 7, 10, |_| true).is_none());
        let (found, _) = recent.after(6, 7, 10, |_| true).unwrap();
        assert_eq!(positions(&found), [7]);
        // One event bigger than the whole budget is still kept until the next arrives.
        recent.push_round(vec![event(8, "job-a", 8, 1000)]);
        let (found, _) = recent.after(7, 8, 10, |_| true).unwrap();
        assert_eq!(positions(&found), [8]);
    }

    #[test]
    fn a_stream_is_answered_from_what_came_after_a_position_the_caller_has_seen() {
        let recent = RecentEvents::new(0, RecentLimits::default());
        let a = || StreamId::parse("job-a").unwrap();
        recent.push_round(vec![
            event(1, "job-a", 4, 1),
            event(2, "job-b", 1, 1),
            event(3, "job-a", 5, 1),
            event(4, "job-a", 6, 1),
        ]);
        let found = recent.of_stream(&a(), 3, 0, 4, 10).unwrap();
        assert_eq!(positions(&found), [1, 3, 4]);
        assert_eq!(
            positions(&recent.of_stream(&a(), 3, 0, 3, 10).unwrap()),
            [1, 3]
        );
        assert_eq!(
            positions(&recent.of_stream(&a(), 3, 0, 4, 2).unwrap()),
            [1, 3]
        );
        assert_eq!(
            positions(&recent.of_stream(&a(), 5, 2, 4, 10).unwrap()),
            [4]
        );
        assert_eq!(
            positions(&recent.of_stream(&a(), 6, 4, 4, 10).unwrap()),
            Vec::<Position>::new()
        );
        let small = RecentEvents::new(
            0,
            RecentLimits {
                events: 2,
                payload_bytes: 1 << 20,
            },
        );
        small.push_round((1..=4).map(|p| event(p, "job-a", p, 1)).collect());
        assert!(small.of_stream(&a(), 1, 1, 4, 10).is_none());
        assert_eq!(
            positions(&small.of_stream(&a(), 2, 2, 4, 10).unwrap()),
            [3, 4]
        );
    }

    #[test]
    fn an_event_renders_once_as_the_export_renders_it() {
        let shared = SharedEvent::new(event(1, "job-a", 1, 0));
        let json = shared.json();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(json).unwrap(),
            render(shared.event())
        );
        assert!(std::ptr::eq(json, shared.json()));
    }
}
