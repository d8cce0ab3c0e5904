//! Following the log: the next page of durable events after a position (or a stream version),
//! waiting for a commit when there is none yet. The head is read before the events, and the wait
//! is for a commit past that head, so an event committed between the read and the wait always
//! ends the wait. Events near the head come from the log's in-memory window of recent events,
//! older ones from the store. It reads; it never writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::envelope::{Position, RecordedEvent, StreamId, Version};
use super::log::EventLog;
use super::recent::SharedEvent;
use super::store::StoreError;

/// Which events of the global stream a follower wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only streams of this kind (`scan` for every `scan-*` stream).
    pub category: Option<String>,
    /// Only events of this type.
    pub event_type: Option<String>,
}

impl Filter {
    fn accepts(&self, event: &RecordedEvent) -> bool {
        self.category
            .as_deref()
            .is_none_or(|wanted| event.stream.category() == wanted)
            && self
                .event_type
                .as_deref()
                .is_none_or(|wanted| event.event_type == wanted)
    }
}

/// One page of a follow.
#[derive(Debug)]
pub struct Page {
    /// Shared with every other follower reading the same events, each rendered once.
    pub events: Vec<Arc<SharedEvent>>,
    /// Where the next request starts: every position (or version) up to here has been
    /// considered, so a filtered follower advances even when nothing matched.
    pub next: u64,
    /// The durable head (of the log, or of the stream) when the page was read.
    pub head: u64,
}

/// The most events a filtered read looks at before answering with what it has, so that a
/// follower of a rare type still gets a `next` that moves on.
const SCAN_BUDGET: usize = 10_000;

/// Up to `limit` durable events after `after` that pass `filter`, waiting up to `timeout` for
/// one to be committed.
pub async fn follow_log(
    log: &EventLog,
    filter: &Filter,
    after: Position,
    limit: usize,
    timeout: Duration,
) -> Result<Page, StoreError> {
    let deadline = Instant::now() + timeout;
    let mut after = after;
    loop {
        let head = log.head();
        let until = head.min(after.saturating_add(SCAN_BUDGET as u64));
        let recent = log
            .recent()
            .after(after, until, limit, |e| filter.accepts(e));
        let (log_, filter) = (log.clone(), filter.clone());
        let (events, scanned_to) = recent_or_store(
            recent,
            move || read_filtered(&log_, &filter, after, limit, head),
            |(events, scanned_to)| (shared(events), scanned_to),
        )
        .await?;
        if !events.is_empty() || scanned_to < head {
            return Ok(Page {
                events,
                next: scanned_to,
                head,
            });
        }
        after = scanned_to;
        if !wait(log, head, deadline).await {
            return Ok(Page {
                events,
                next: after.max(head),
                head: log.head(),
            });
        }
    }
}

/// Reads up to `limit` matching events in `(after, head]`, looking at no more than
/// [`SCAN_BUDGET`] events; returns them and the last position looked at.
fn read_filtered(
    log: &EventLog,
    filter: &Filter,
    after: Position,
    limit: usize,
    head: Position,
) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
    let mut matches = Vec::new();
    let mut scanned_to = after;
    while matches.len() < limit && scanned_to < head && scanned_to - after < SCAN_BUDGET as u64 {
        let (batch, scanned) = match &filter.category {
            Some(category) => log.read_category(category, scanned_to, limit - matches.len())?,
            None => {
                let batch = log.read_all(scanned_to, (limit - matches.len()).min(1000))?;
                let scanned = batch.last().map_or(head, |e| e.position);
                (batch, scanned)
            }
        };
        // The log may have moved past `head` since it was read; the rest is for the next page.
        scanned_to = scanned.min(head);
        matches.extend(
            batch
                .into_iter()
                .filter(|e| e.position <= head && filter.accepts(e)),
        );
    }
    Ok((matches, scanned_to))
}

/// Up to `limit` durable events of one stream with a version above `after`, waiting up to
/// `timeout` for one to be committed. `next` and `head` are versions; `head` is the stream's
/// version as stored, which may count a round still being made durable.
pub async fn follow_stream(
    log: &EventLog,
    stream: &StreamId,
    after: Version,
    limit: usize,
    timeout: Duration,
) -> Result<Page, StoreError> {
    let deadline = Instant::now() + timeout;
    // A position up to which the stream is known to have no event above `after`: after the
    // first empty read, each wake needs to look only at what the window got since.
    let mut none_until = None;
    loop {
        let head = log.head();
        let recent =
            none_until.and_then(|seen| log.recent().of_stream(stream, after, seen, head, limit));
        let (log_, stream_) = (log.clone(), stream.clone());
        let events = recent_or_store(
            recent,
            move || log_.read_stream(&stream_, after, limit),
            shared,
        )
        .await?;
        if let Some(last) = events.last().map(|e| e.event().version) {
            return Ok(Page {
                events,
                next: last,
                head: stream_version(log, stream).await?.max(last),
            });
        }
        none_until = Some(head);
        if !wait(log, head, deadline).await {
            return Ok(Page {
                events,
                next: after,
                head: stream_version(log, stream).await?.min(after),
            });
        }
    }
}

/// The stream's version as stored, read off the async threads.
async fn stream_version(log: &EventLog, stream: &StreamId) -> Result<Version, StoreError> {
    let (log, stream) = (log.clone(), stream.clone());
    off_thread(move || log.stream_version(&stream)).await
}

/// Runs a store read on the blocking pool, so that a cold read never stalls the async threads.
async fn off_thread<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| StoreError::Corrupt {
            what: "a follow".into(),
            reason: e.to_string(),
        })?
}

/// What the window of recent events `found`, or else what `read` finds in the store (read off
/// the async threads, then turned `into` the same form); either way counted by its source.
async fn recent_or_store<T, R: Send + 'static>(
    found: Option<T>,
    read: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
    into: impl FnOnce(R) -> T,
) -> Result<T, StoreError> {
    let source = if found.is_some() { "recent" } else { "store" };
    metrics::counter!(crate::metrics::FOLLOW_READS, "source" => source).increment(1);
    match found {
        Some(found) => Ok(found),
        None => Ok(into(off_thread(read).await?)),
    }
}

fn shared(events: Vec<RecordedEvent>) -> Vec<Arc<SharedEvent>> {
    events
        .into_iter()
        .map(|event| Arc::new(SharedEvent::new(event)))
        .collect()
}

/// The version of the event at `position` if it belongs to `stream`: where a stream follower
/// that last saw that position resumes. Blocking: it reads the store.
pub fn version_at(
    log: &EventLog,
    stream: &StreamId,
    position: Position,
) -> Result<Option<Version>, StoreError> {
    if position > log.head() {
        return Ok(None);
    }
    Ok(log
        .store()
        .event(position)?
        .filter(|event| &event.stream == stream)
        .map(|event| event.version))
}

/// Waits until `deadline` for a commit past `head`; true when one came, false when none did
/// (the time is up, the log closed, or the followers were released because the server stops).
async fn wait(log: &EventLog, head: Position, deadline: Instant) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    let timeout = deadline - now;
    let _waiting = crate::metrics::Waiting::start();
    tokio::select! {
        head_now = log.wait_past(head, timeout) => head_now.is_some_and(|h| h > head),
        () = log.followers_release() => false,
    }
}
