//! `EventLog`, the handle the rest of annals holds: appends through the journal, reads that see
//! only durable events, and waits for the next commit. It owns no storage logic of its own.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use super::envelope::{NewEvent, Position, RecordedEvent, StreamId, Version};
use super::journal::{AppendError, AppendRequest, Appended, ExpectedVersion, Journal};
use super::ownership::Ownership;
use super::publish::Publisher;
use super::recent::{RecentEvents, RecentLimits};
use super::shared::SharedFiles;
use super::store::{Backend, Durability, Store, StoreError};

/// Where the log is, its limits and durability, named so that they can be documented and
/// tested.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// The engine: sled in the data directory (the default) or a PostgreSQL database.
    pub backend: Backend,
    pub durability: Durability,
    /// The largest payload one event may carry. Bigger content belongs in a file next to the
    /// log, referenced by hash from an event.
    pub max_event_bytes: usize,
    /// The most events one append may carry.
    pub max_events_per_append: usize,
    /// The memory sled may use to cache pages of the log. Rebuilding an entity whose pages are
    /// not cached reads them from disk.
    pub cache_bytes: u64,
    /// How many of the latest durable events are kept in memory for followers.
    pub recent: RecentLimits,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            backend: Backend::Sled,
            durability: Durability::Fsync,
            max_event_bytes: 1024 * 1024,
            max_events_per_append: 10_000,
            cache_bytes: 1024 * 1024 * 1024,
            recent: RecentLimits::default(),
        }
    }
}

/// Publishes the rounds other nodes commit to the same PostgreSQL log, for as long as the log
/// is open here: the journal holds the publisher, so that closing the log ends every wait for a
/// commit, and this follower with it.
fn follow_other_nodes(
    postgres: &super::store::PgStore,
    store: std::sync::Weak<Store>,
    publisher: std::sync::Weak<Publisher>,
    durability: Durability,
) -> Result<(), StoreError> {
    postgres.follow_heads(move |head| {
        let (Some(store), Some(publisher)) = (store.upgrade(), publisher.upgrade()) else {
            return false;
        };
        if let Some(head) = head.filter(|head| *head > publisher.published()) {
            // Other nodes' rounds are committed before they are flushed: nothing is published
            // here before it is as durable as this node's own rounds.
            let durable = store.make_durable(durability);
            if let Err(error) = durable.and_then(|()| publisher.catch_up(&store, head)) {
                tracing::warn!(%error, "cannot read other nodes' rounds yet");
            }
        }
        true
    })
}

/// The most positions one category read looks at.
pub const CATEGORY_SCAN: u64 = 10_000;

/// An open event log. Clones share one store and one journal.
#[derive(Clone)]
pub struct EventLog {
    store: Arc<Store>,
    journal: Arc<Journal>,
    /// The position of the last durable event, published by the journal after each round.
    committed: watch::Receiver<Position>,
    /// The latest durable events, filled by the journal before it publishes each head.
    recent: Arc<RecentEvents>,
    options: LogOptions,
    ids: Arc<IdFloor>,
    /// Set once the server stops: followers stop waiting for commits (see
    /// [`EventLog::release_followers`]).
    released: Arc<watch::Sender<bool>>,
    /// See [`EventLog::foreign_head`].
    foreign: Arc<AtomicU64>,
    /// The shards whose entities' effects this node runs.
    ownership: Arc<Ownership>,
    /// Where other nodes' events of this node's shards go (see [`EventLog::foreign_events`]).
    foreign_events: ForeignEvents,
    /// The journal's publisher, for [`EventLog::sync`] (the journal owns it).
    publisher: std::sync::Weak<Publisher>,
}

/// A lock held across the nodes of a log (see [`EventLog::exclusive`]), released when dropped.
#[must_use = "the lock is released when this is dropped"]
pub struct Exclusive {
    held: Option<(std::sync::mpsc::Sender<()>, Position)>,
}

impl Exclusive {
    /// The position a read model must have folded before deciding under the lock: the head
    /// published once it was taken, when other nodes write to the log too; `None` on sled,
    /// where the caller's own lock already orders every write that matters.
    pub fn caught_up_to(&self) -> Option<Position> {
        self.held.as_ref().map(|(_, head)| *head)
    }
}

/// Where [`Publisher`] sends other nodes' events of this node's shards, once someone asked.
pub(crate) type ForeignEvents =
    Arc<Mutex<Option<tokio::sync::mpsc::UnboundedSender<Vec<RecordedEvent>>>>>;

/// This node's name among the nodes of a PostgreSQL log, kept in `file` (made on first use).
fn node_id(file: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(file) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let id = Uuid::new_v4().to_string();
    let partial = file.with_extension("partial");
    std::fs::write(&partial, &id)?;
    std::fs::rename(&partial, file)?;
    Ok(id)
}

/// What [`EventLog::new_event_id`] keeps: the greatest event id when the log was opened, and
/// the last id it handed out above it.
struct IdFloor {
    opened: Uuid,
    last: Mutex<u128>,
}

impl EventLog {
    /// Opens (or creates) the log of `options.backend`, with `path` as the data directory, and
    /// starts its journal (and, on PostgreSQL, the follower of other nodes' rounds).
    pub fn open(path: &Path, options: LogOptions) -> Result<EventLog, StoreError> {
        let store = Arc::new(Store::open(path, &options.backend, options.cache_bytes)?);
        let head = store.log_head()?;
        let (publish, committed) = watch::channel(head.position);
        let recent = Arc::new(RecentEvents::new(head.position, options.recent));
        let foreign = Arc::new(AtomicU64::new(0));
        let ownership = Arc::new(Ownership::default());
        let foreign_events = ForeignEvents::default();
        let publisher = Arc::new(Publisher::new(
            recent.clone(),
            publish,
            foreign.clone(),
            (ownership.clone(), foreign_events.clone()),
        ));
        let opened = head.greatest_id;
        let journal = Journal::start(store.clone(), options.durability, publisher.clone())?;
        if let Some(postgres) = store.as_postgres() {
            follow_other_nodes(
                postgres,
                Arc::downgrade(&store),
                Arc::downgrade(&publisher),
                options.durability,
            )?;
        }
        Ok(EventLog {
            store,
            journal: Arc::new(journal),
            committed,
            recent,
            options,
            ids: Arc::new(IdFloor {
                opened,
                last: Mutex::new(opened.as_u128()),
            }),
            released: Arc::new(watch::channel(false).0),
            foreign,
            ownership,
            foreign_events,
            publisher: Arc::downgrade(&publisher),
        })
    }

    /// Holds the lock named `name` across every node of the log until the answer is dropped,
    /// then publishes here what other nodes committed ([`EventLog::sync`]): what is decided
    /// under it from read models caught up with [`Exclusive::caught_up_to`] sees every event
    /// committed under it before. On sled, where this node is the only writer, there is
    /// nothing to hold: its callers serialize within the node.
    pub async fn exclusive(&self, name: &str) -> Result<Exclusive, StoreError> {
        let Some(postgres) = self.store.as_postgres() else {
            return Ok(Exclusive { held: None });
        };
        let key = super::ownership::fnv1a(name.as_bytes()) as i64;
        let lock = postgres.hold_lock(key).await?;
        self.sync().await?;
        Ok(Exclusive {
            held: Some((lock, self.head())),
        })
    }

    /// Publishes on this node whatever other nodes committed up to the head the store has now:
    /// afterwards, reads and followers here see every event that was durable when it was
    /// called. On sled, where this node is the only writer, there is nothing to do.
    pub async fn sync(&self) -> Result<(), StoreError> {
        if self.store.as_postgres().is_none() {
            return Ok(());
        }
        let (store, publisher) = (self.store.clone(), self.publisher.clone());
        let durability = self.options.durability;
        tokio::task::spawn_blocking(move || {
            let head = store.log_head()?.position;
            store.make_durable(durability)?;
            match publisher.upgrade() {
                Some(publisher) => publisher.catch_up(&store, head),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| StoreError::Sync(std::io::Error::other(e)))?
    }

    /// The files every node of the log shares, on PostgreSQL; `None` on sled, whose one node
    /// keeps its files in its data directory.
    pub fn shared_files(&self) -> Option<SharedFiles> {
        self.store
            .as_postgres()
            .map(|_| SharedFiles::new(self.store.clone()))
    }

    /// The shards whose entities' side effects this node runs: all of them, until
    /// [`EventLog::hold_leases`].
    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// On PostgreSQL, leases shards for this node (named by `node_id` in the data directory,
    /// made on first use, so that a restarted node finds its leases again) and keeps
    /// [`EventLog::ownership`] to the shards it holds, renewed several times per `lease`, for
    /// as long as the log is open. Resolves after the first renewal. On sled, the one node
    /// keeps every shard.
    pub async fn hold_leases(&self, lease: Duration) -> Result<(), StoreError> {
        let Some(postgres) = self.store.as_postgres() else {
            return Ok(());
        };
        let file = self.store.path().join("node-id");
        let node = tokio::task::spawn_blocking(move || node_id(&file))
            .await
            .map_err(|e| StoreError::Sync(std::io::Error::other(e)))?
            .map_err(StoreError::Sync)?;
        postgres
            .hold_leases(node, lease, Arc::downgrade(&self.ownership))
            .await
    }

    /// The events other nodes commit to streams of this node's shards, in position order, as
    /// they are published here: the effects of another node's commands run on the node that
    /// holds the entity's shard. Only the last receiver asked for is fed; nothing is kept
    /// before it is asked for.
    pub fn foreign_events(&self) -> tokio::sync::mpsc::UnboundedReceiver<Vec<RecordedEvent>> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        *self
            .foreign_events
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(sender);
        receiver
    }

    /// The id of a new event, from `minted`, an id just made by a clock: `minted` itself when
    /// it is greater than every id the log held when it was opened, as time-ordered ids are;
    /// otherwise (the clock was set back behind the log's newest event) the next id above the
    /// greatest handed out so far. The journal looks for an id no greater than the log's
    /// greatest as a possible retry, through its stream; a new event's id never needs that.
    pub fn new_event_id(&self, minted: Uuid) -> Uuid {
        if minted > self.ids.opened {
            return minted;
        }
        let mut last = self.ids.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = last.wrapping_add(1);
        Uuid::from_u128(*last)
    }

    pub fn options(&self) -> &LogOptions {
        &self.options
    }

    /// The log's data directory, beside which faces keep files the log references by hash.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Appends events to one stream if it is at the expected version. Resolves once the events
    /// are durable (as far as the configured durability goes), or with the reason they were
    /// refused; a refused append writes nothing.
    pub async fn append(
        &self,
        stream: StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, AppendError> {
        self.check_limits(&events)?;
        let submitted = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        self.journal.submit(AppendRequest {
            stream,
            expected,
            events,
            reply,
        });
        let answer = answer.await.unwrap_or(Err(AppendError::Closed));
        if answer.is_ok() {
            metrics::histogram!(crate::metrics::APPEND_SECONDS)
                .record(submitted.elapsed().as_secs_f64());
        }
        answer
    }

    fn check_limits(&self, events: &[NewEvent]) -> Result<(), AppendError> {
        let limit = self.options.max_events_per_append;
        if events.len() > limit {
            return Err(AppendError::TooMany {
                count: events.len(),
                limit,
            });
        }
        // Most appends carry one event, which cannot repeat an id: no set to build for them.
        let mut ids = (events.len() > 1).then(|| HashSet::with_capacity(events.len()));
        for event in events {
            let size = event.payload.len();
            if size > self.options.max_event_bytes {
                return Err(AppendError::TooLarge {
                    size,
                    limit: self.options.max_event_bytes,
                });
            }
            if let Some(ids) = &mut ids {
                if !ids.insert(event.event_id) {
                    return Err(AppendError::RepeatedId(event.event_id));
                }
            }
        }
        Ok(())
    }

    /// The newest position this node has published from another node's round (0 on sled,
    /// whose only writer is this node's journal). A state kept in memory since a position
    /// below it may be behind its stream.
    pub fn foreign_head(&self) -> Position {
        self.foreign.load(Ordering::Acquire)
    }

    /// The position of the last durable event (0 for an empty log).
    pub fn head(&self) -> Position {
        *self.committed.borrow()
    }

    /// Waits until an event after `after` is durable or `timeout` passes, and returns the head;
    /// `None` once the log is closed. The check and the wait are one step, so a commit between
    /// a reader's read and this call is never missed.
    pub async fn wait_past(&self, after: Position, timeout: Duration) -> Option<Position> {
        let mut committed = self.committed.clone();
        let waited = tokio::time::timeout(timeout, committed.wait_for(|head| *head > after)).await;
        let head = match waited {
            Ok(Ok(head)) => Some(*head),
            Ok(Err(_closed)) => None,
            Err(_timeout) => Some(after),
        };
        head.map(|head| head.max(*self.committed.borrow()))
    }

    /// Up to `limit` durable events after global position `after`.
    pub fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head();
        let limit = limit.min(head.saturating_sub(after) as usize);
        self.store.read_all(after, limit)
    }

    /// Up to `limit` durable events of one stream with a version above `after`.
    pub fn read_stream(
        &self,
        stream: &StreamId,
        after: Version,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let head = self.head();
        let mut events: Vec<RecordedEvent> = self
            .store
            .stream_events_after(stream, after)
            .take(limit)
            .collect::<Result<_, _>>()?;
        events.retain(|e| e.position <= head);
        Ok(events)
    }

    /// Up to `limit` durable events of one category (`scan` for every `scan-*` stream) after
    /// global position `after`, looking at no more than [`CATEGORY_SCAN`] positions. Returns the
    /// events and the last position looked at: the next read starts there, so that a follower
    /// of a rare category moves on without scanning the whole log in one call.
    pub fn read_category(
        &self,
        category: &str,
        after: Position,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
        let until = self.head().min(after.saturating_add(CATEGORY_SCAN));
        self.store.read_category(category, after, until, limit)
    }

    /// The latest durable events, in memory: what followers near the head read instead of the
    /// store. Everything up to [`EventLog::head`] is there or older than it.
    pub fn recent(&self) -> &RecentEvents {
        &self.recent
    }

    /// The durable version of a stream (0 when it has no event).
    pub fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        // This may count events of a round that is being made durable right now.
        self.store.stream_version(stream)
    }

    /// The store underneath, for snapshots, checkpoints, exports and verification.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Finishes the appends already submitted and stops the journal; later appends fail with
    /// [`AppendError::Closed`]. Blocks until the journal thread has stopped.
    pub fn close(&self) {
        self.journal.close();
    }

    /// Ends every follower's wait for a commit, now and from now on: long polls answer with
    /// what they have and event streams end. A stopping server calls it first, so that its
    /// graceful stop is not held by followers that would wait for minutes. Appends and reads
    /// go on.
    pub fn release_followers(&self) {
        self.released.send_replace(true);
    }

    /// Whether [`EventLog::release_followers`] has been called.
    pub fn followers_released(&self) -> bool {
        *self.released.borrow()
    }

    /// Resolves once [`EventLog::release_followers`] is called (at once if it was).
    pub async fn followers_release(&self) {
        let mut released = self.released.subscribe();
        // The sender lives as long as this log, so the wait ends only when it is set.
        let _ = released.wait_for(|released| *released).await;
    }
}
