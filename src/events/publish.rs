//! How durable rounds become visible on this node: the recent-events window is filled in
//! position order without gaps, then the new head is published, so a follower that sees a head
//! finds every event up to it. On sled the journal is the only source of rounds. On PostgreSQL
//! other nodes commit too: their rounds are read from the database, in order, before anything
//! after them is published, whether a notification, the fallback poll or this node's own next
//! round brings the news.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::envelope::{Position, RecordedEvent};
use super::log::ForeignEvents;
use super::ownership::Ownership;
use super::recent::RecentEvents;
use super::store::{Store, StoreError};

/// How many events one read of another node's rounds fetches.
const CATCH_UP_PAGE: usize = 1024;

/// Publishes durable positions on this node.
pub(crate) struct Publisher {
    recent: Arc<RecentEvents>,
    committed: watch::Sender<Position>,
    /// Held while publishing, so that the journal and the follower of other nodes never
    /// interleave their events.
    order: Mutex<()>,
    /// The newest position published from the store rather than from this node's journal:
    /// another node's round (or, rarely, one of this node's that the follower read first).
    foreign: Arc<AtomicU64>,
    /// Which streams' events read from the store go to `foreign_events`: this node's shards.
    ownership: Arc<Ownership>,
    foreign_events: ForeignEvents,
}

impl Publisher {
    pub(crate) fn new(
        recent: Arc<RecentEvents>,
        committed: watch::Sender<Position>,
        foreign: Arc<AtomicU64>,
        (ownership, foreign_events): (Arc<Ownership>, ForeignEvents),
    ) -> Publisher {
        Publisher {
            recent,
            committed,
            order: Mutex::new(()),
            foreign,
            ownership,
            foreign_events,
        }
    }

    /// The last published position.
    pub(crate) fn published(&self) -> Position {
        *self.committed.borrow()
    }

    /// Publishes a round this node committed, after whatever other nodes committed before it
    /// that is not published yet. Events already published (read from the database by the
    /// follower before this call) are skipped.
    pub(crate) fn publish_round(
        &self,
        store: &Store,
        round: Vec<RecordedEvent>,
    ) -> Result<(), StoreError> {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let Some(first) = round.first().map(|event| event.position) else {
            return Ok(());
        };
        self.fill(store, first - 1)?;
        let published = self.published();
        let round: Vec<RecordedEvent> = if first > published {
            round
        } else {
            round
                .into_iter()
                .filter(|e| e.position > published)
                .collect()
        };
        if let Some(last) = round.last().map(|event| event.position) {
            // The events first, then the head: a follower that sees the head finds them.
            self.recent.push_round(round);
            self.committed.send_replace(last);
        }
        Ok(())
    }

    /// Publishes every position up to `head`, reading from the store those not published yet.
    pub(crate) fn catch_up(&self, store: &Store, head: Position) -> Result<(), StoreError> {
        let _order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        self.fill(store, head)
    }

    fn fill(&self, store: &Store, head: Position) -> Result<(), StoreError> {
        loop {
            let published = self.published();
            if published >= head {
                return Ok(());
            }
            let want =
                usize::try_from(head - published).map_or(CATCH_UP_PAGE, |n| n.min(CATCH_UP_PAGE));
            let events = store.read_all(published, want)?;
            let gapless = events
                .iter()
                .zip(published + 1..)
                .all(|(event, position)| event.position == position);
            let last = match events.last() {
                Some(last) if gapless => last.position,
                _ => {
                    return Err(StoreError::Corrupt {
                        what: format!("position {}", published + 1),
                        reason: format!("missing, though the log's head is {head}"),
                    })
                }
            };
            let ours = self
                .foreign_events
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let effects: Option<Vec<RecordedEvent>> = ours.as_ref().map(|_| {
                events
                    .iter()
                    .filter(|event| self.ownership.owns(&event.stream))
                    .cloned()
                    .collect()
            });
            self.recent.push_round(events);
            // Before the head: whoever sees the head sees that it came from elsewhere.
            self.foreign.fetch_max(last, Ordering::Release);
            self.committed.send_replace(last);
            // After the head: whoever acts on them reads the log up to them.
            if let (Some(sender), Some(effects)) = (ours.as_ref(), effects) {
                if !effects.is_empty() {
                    let _ = sender.send(effects);
                }
            }
        }
    }
}
