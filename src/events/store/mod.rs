//! The storage engines behind the log, and what they share. `sled` (embedded, the default) keeps
//! the log in the data directory; `postgres` keeps it in one PostgreSQL database that several
//! annals nodes can share. Both hold the same sealed records (hash, then body) with the same
//! positions, versions and chain, so a log moves between them unchanged (`annals migrate`).
//! The engines lay out and read records, apply the journal's rounds atomically and make them
//! durable; they never decide what to write: the journal does. Nothing above this module names
//! an engine.

mod postgres;
mod sled;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use self::postgres::PgBatch;
use self::sled::{SledBatch, SledStore};
use super::envelope::{
    DecodeError, EventView, Hash, Position, RecordedEvent, StreamId, Version, GENESIS_HASH,
};

pub use self::postgres::{PgStore, PostgresOptions, POSTGRES_FORMAT};
pub use self::sled::{FORMAT, FORMAT_V1, LOCK_WAIT};

/// Which engine holds the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// sled, in the data directory: nothing to install.
    #[default]
    Sled,
    /// One PostgreSQL database, shared by every node that names it.
    Postgres(PostgresOptions),
}

/// How hard the journal pushes each commit round towards the disk before acknowledging it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// sled: its `flush()`, then `fdatasync` on its data file and `fsync` on any new blob file.
    /// PostgreSQL: `synchronous_commit = on`. An acknowledged event survives a process crash and
    /// a power loss (on PostgreSQL, of the primary and of any synchronous standby).
    #[default]
    Fsync,
    /// sled: its `flush()` alone, which writes the data with `sync_file_range` but does not flush
    /// the disk's cache or file metadata. PostgreSQL: `synchronous_commit = local` (the primary's
    /// disk only). An acknowledged event survives a crash of annals, not necessarily a power loss.
    Flush,
    /// Nothing: sled writes in the background about every 500 ms; PostgreSQL
    /// (`synchronous_commit = off`) within three times its `wal_writer_delay`. An acknowledged
    /// event can be lost by a crash within that window.
    None,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "flush" => Ok(Durability::Flush),
            "none" => Ok(Durability::None),
            other => Err(format!(
                "unknown durability {other:?}: expected fsync, flush or none"
            )),
        }
    }
}

/// What the store could not do. Every variant names what was wrong; none is a panic.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the log at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    /// Another process (a running server) holds the log: sled takes an exclusive lock.
    #[error("cannot open the log at {path}: another process holds it (waited {waited:?})")]
    Locked { path: PathBuf, waited: Duration },
    #[error("{path} is not empty and holds no annals log (no format marker); use an empty or new directory")]
    NotALog { path: PathBuf },
    #[error("{path} holds an annals log in format {found:?}; this build reads {expected:?}")]
    UnsupportedFormat {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("storage error: {0}")]
    Engine(#[from] ::sled::Error),
    /// PostgreSQL refused a statement or the connection failed; the message says which.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("I/O error while making the log durable: {0}")]
    Sync(#[from] std::io::Error),
    #[error("the log is corrupt at {what}: {reason}")]
    Corrupt { what: String, reason: String },
}

impl StoreError {
    fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

/// The head of the whole log: the last committed event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    pub position: Position,
    pub hash: Hash,
    /// When the last event was recorded; the journal never records an event earlier than this.
    pub recorded_at: Option<DateTime<Utc>>,
    /// The greatest event id in the log, in byte order (nil for none). A new id above it cannot
    /// be a retry.
    pub greatest_id: Uuid,
}

impl LogHead {
    pub const EMPTY: LogHead = LogHead {
        position: 0,
        hash: GENESIS_HASH,
        recorded_at: None,
        greatest_id: Uuid::nil(),
    };
}

/// A stored record (hash, then body), as the store holds it.
pub struct Record(::sled::IVec);

impl From<Vec<u8>> for Record {
    fn from(bytes: Vec<u8>) -> Record {
        Record(bytes.into())
    }
}

impl Record {
    /// Decodes the record; `what` names it in the error.
    fn open(&self, what: impl FnOnce() -> String) -> Result<RecordedEvent, StoreError> {
        RecordedEvent::open(&self.0).map_err(|e| StoreError::corrupt(what(), e))
    }

    /// Reads the record in place.
    pub fn view(&self) -> Result<EventView<'_>, DecodeError> {
        EventView::parse(&self.0)
    }
}

impl std::ops::Deref for Record {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A record reached from its global position, with the stream and version its pointer names.
pub struct RawEvent {
    pub position: Position,
    pub stream: StreamId,
    pub version: Version,
    pub record: Record,
}

/// Entry counts of each key family; see [`Store::entry_counts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryCounts {
    pub records: u64,
    pub positions: u64,
}

/// An open log, in one of the engines.
pub enum Store {
    Sled(SledStore),
    /// Boxed: its connection settings make it twice sled's size.
    Postgres(Box<PgStore>),
}

/// An iterator over one engine's reads, boxed so that both engines share one signature.
pub type Reads<'a, T> = Box<dyn Iterator<Item = Result<T, StoreError>> + 'a>;

/// Calls the same method on whichever engine holds the log.
macro_rules! on_engine {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            Store::Sled($store) => $call,
            Store::Postgres($store) => $call,
        }
    };
}

impl Store {
    /// Opens the log of `backend`: sled's in `path` (created only when the directory is missing or
    /// empty), or the PostgreSQL database (its tables created when missing), with `path` as the
    /// node's data directory.
    pub fn open(path: &Path, backend: &Backend, cache_bytes: u64) -> Result<Store, StoreError> {
        match backend {
            Backend::Sled => SledStore::open(path, cache_bytes).map(Store::Sled),
            Backend::Postgres(options) => {
                PgStore::open(path, options).map(|s| Store::Postgres(Box::new(s)))
            }
        }
    }

    /// The node's data directory, beside which faces keep files the log references by hash.
    pub fn path(&self) -> &Path {
        on_engine!(self, s => s.path())
    }

    /// Where the log is, for messages: the data directory, or the database (without password).
    pub fn describe(&self) -> String {
        match self {
            Store::Sled(s) => s.path().display().to_string(),
            Store::Postgres(s) => s.describe(),
        }
    }

    /// The last committed event's position, hash and time, and the greatest event id.
    pub fn log_head(&self) -> Result<LogHead, StoreError> {
        on_engine!(self, s => s.log_head())
    }

    /// The version of a stream's last event; 0 when the stream has none.
    pub fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        on_engine!(self, s => s.stream_version(stream))
    }

    /// Where the events of `stream` that carry these ids are, for the ids found. `expected` is
    /// the version an append expected: a retry that was written put its events right after it.
    pub fn find_event_ids(
        &self,
        stream: &StreamId,
        ids: &[Uuid],
        expected: Option<Version>,
    ) -> Result<HashMap<Uuid, Position>, StoreError> {
        on_engine!(self, s => s.find_event_ids(stream, ids, expected))
    }

    /// The event at a global position.
    pub fn event(&self, position: Position) -> Result<Option<RecordedEvent>, StoreError> {
        on_engine!(self, s => s.event(position))
    }

    /// Up to `limit` events after global position `after`, in order.
    pub fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.events_after(after).take(limit).collect()
    }

    /// Every event after global position `after`, in order, read lazily.
    pub fn events_after(&self, after: Position) -> Reads<'_, RecordedEvent> {
        match self {
            Store::Sled(s) => Box::new(s.events_after(after)),
            Store::Postgres(s) => Box::new(s.raw_events_after(after).map(|raw| {
                let raw = raw?;
                raw.record.open(|| format!("position {}", raw.position))
            })),
        }
    }

    /// Every stored event after `after` in global order, as raw bytes with the stream and
    /// version its place in global order names. `verify` uses this to check records without
    /// trusting them.
    pub fn raw_events_after(&self, after: Position) -> Reads<'_, RawEvent> {
        on_engine!(self, s => Box::new(s.raw_events_after(after)))
    }

    /// Every event of one stream with a version above `after`, in order, read lazily.
    pub fn stream_events_after<'a>(
        &'a self,
        stream: &StreamId,
        after: Version,
    ) -> Reads<'a, RecordedEvent> {
        let stream = stream.clone();
        Box::new(
            self.stream_records_after(&stream, after)
                .map(move |record| record?.open(|| format!("a record of {stream}"))),
        )
    }

    /// The stored records of one stream with a version above `after`, in order, for folding
    /// through [`EventView`] without copying.
    pub fn stream_records_after<'a>(
        &'a self,
        stream: &StreamId,
        after: Version,
    ) -> Reads<'a, Record> {
        on_engine!(self, s => Box::new(s.stream_records_after(stream, after)))
    }

    /// Up to `limit` events of one category (all `scan-*` streams) at positions in
    /// `(after, until]`; returns them and the last position looked at, where the next read
    /// starts.
    pub fn read_category(
        &self,
        category: &str,
        after: Position,
        until: Position,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
        on_engine!(self, s => s.read_category(category, after, until, limit))
    }

    /// The bytes the log takes: sled's files, or the PostgreSQL tables with their indexes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        on_engine!(self, s => s.size_on_disk())
    }

    /// The newest snapshot of a stream, as written by [`Store::put_snapshot`].
    pub fn snapshot(&self, stream: &StreamId) -> Result<Option<Vec<u8>>, StoreError> {
        on_engine!(self, s => s.snapshot(stream))
    }

    /// Replaces a stream's snapshot. Snapshots are a cache of the log, not part of it.
    pub fn put_snapshot(&self, stream: &StreamId, bytes: &[u8]) -> Result<(), StoreError> {
        on_engine!(self, s => s.put_snapshot(stream, bytes))
    }

    /// A projection's saved checkpoint.
    pub fn checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        on_engine!(self, s => s.checkpoint(name))
    }

    /// Saves a projection's checkpoint. Like snapshots, checkpoints are a cache of the log.
    pub fn put_checkpoint(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        on_engine!(self, s => s.put_checkpoint(name, bytes))
    }

    /// How many entries each part of the log holds up to `head`, for `verify`: every event has
    /// exactly one record and one place in global order.
    pub fn entry_counts(&self, head: Position) -> Result<EntryCounts, StoreError> {
        on_engine!(self, s => s.entry_counts(head))
    }

    /// Starts a commit round: the head it chains to and the versions of `streams` (0 for a
    /// stream with no event), as one consistent view. sled has one writer, the journal, whose
    /// head (`mine`) is the log's. On PostgreSQL another node may have moved it: both are read
    /// in one statement, and [`Store::commit`] writes only if the head is still there; a
    /// `contended` round (its last attempt lost that race) locks the head row from this read
    /// to its commit, and cannot lose. A round begun and not committed is ended with
    /// [`Store::abandon_round`]. Only the journal (and `migrate`) call this.
    pub(crate) fn begin_round(
        &self,
        mine: &LogHead,
        contended: bool,
        streams: &[StreamId],
    ) -> Result<(LogHead, HashMap<StreamId, Version>), StoreError> {
        match self {
            Store::Sled(s) => {
                let versions = streams
                    .iter()
                    .map(|stream| Ok((stream.clone(), s.stream_version(stream)?)))
                    .collect::<Result<_, StoreError>>()?;
                Ok((*mine, versions))
            }
            Store::Postgres(s) => s.begin_round(contended, streams),
        }
    }

    /// Ends a round begun and not committed (it writes nothing): on PostgreSQL, a contended
    /// round's lock on the head row is released.
    pub(crate) fn abandon_round(&self) -> Result<(), StoreError> {
        match self {
            Store::Sled(_) => Ok(()),
            Store::Postgres(s) => s.abandon_round(),
        }
    }

    /// Whether versions a round found stay exact for the next round (sled: this node's journal
    /// is the only writer), so that the journal may keep them rather than read them again.
    pub(crate) fn versions_stay_exact(&self) -> bool {
        matches!(self, Store::Sled(_))
    }

    /// An empty batch for a round.
    pub(crate) fn new_batch(&self) -> WriteBatch {
        match self {
            Store::Sled(_) => WriteBatch::Sled(SledBatch::default()),
            Store::Postgres(_) => WriteBatch::Postgres(PgBatch::default()),
        }
    }

    /// Applies one commit round atomically and makes it as durable as `durability` asks. Only
    /// the journal calls this.
    pub(crate) fn commit(
        &self,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<Committed, StoreError> {
        match (self, batch) {
            (Store::Sled(s), WriteBatch::Sled(batch)) => {
                s.commit(batch)?;
                s.make_durable(durability)?;
                Ok(Committed::Written)
            }
            // The round's durability barrier is the durability point.
            (Store::Postgres(s), WriteBatch::Postgres(batch)) => s.commit(batch, durability),
            _ => Err(StoreError::corrupt(
                "a commit round",
                "its batch was made for the other engine",
            )),
        }
    }

    /// Pushes everything committed so far as far towards the disk as `durability` asks: on
    /// sled this node's writes; on PostgreSQL whatever any node committed before the call.
    pub(crate) fn make_durable(&self, durability: Durability) -> Result<(), StoreError> {
        match self {
            Store::Sled(s) => s.make_durable(durability),
            Store::Postgres(s) => s.make_durable(durability),
        }
    }

    /// Whether a round that failed may have left the log in a state only a restart recovers
    /// from (sled: part of a batch may be on disk, never acknowledged), rather than rolled back
    /// whole (PostgreSQL: a transaction).
    pub(crate) fn failure_is_fatal(&self) -> bool {
        matches!(self, Store::Sled(_))
    }

    /// Keeps `bytes` as file `name` of `area` for every node (PostgreSQL only: a sled log's
    /// one node keeps its files in its data directory). Whether they were written: one already
    /// there is kept unless `replace`.
    pub(crate) fn put_file(
        &self,
        area: &'static str,
        name: &str,
        bytes: Vec<u8>,
        replace: bool,
    ) -> Result<bool, StoreError> {
        self.shared()?
            .put_file(area, name.to_owned(), bytes, replace)
    }

    /// The bytes of file `name` of `area`, if a node kept it (PostgreSQL only).
    pub(crate) fn get_file(
        &self,
        area: &'static str,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared()?.get_file(area, name.to_owned())
    }

    /// Removes file `name` of `area`; whether it was there (PostgreSQL only).
    pub(crate) fn delete_file(&self, area: &'static str, name: &str) -> Result<bool, StoreError> {
        self.shared()?.delete_file(area, name.to_owned())
    }

    fn shared(&self) -> Result<&PgStore, StoreError> {
        self.as_postgres()
            .ok_or_else(|| StoreError::Postgres("a sled log shares no files between nodes".into()))
    }

    /// The PostgreSQL engine, to follow other nodes' rounds.
    pub(crate) fn as_postgres(&self) -> Option<&PgStore> {
        match self {
            Store::Sled(_) => None,
            Store::Postgres(s) => Some(s),
        }
    }
}

/// What a round's commit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Committed {
    /// The round is in the log, durable.
    Written,
    /// Nothing was written: another node moved the head since [`Store::begin_round`]
    /// (PostgreSQL only). The round is to be checked and sealed again.
    HeadMoved,
}

/// The writes of one commit round: each event's record and the new head.
pub(crate) enum WriteBatch {
    Sled(SledBatch),
    Postgres(PgBatch),
}

impl WriteBatch {
    /// Adds one sealed event. Events come in position order without gaps, the journal's order.
    pub(crate) fn put_event(
        &mut self,
        position: Position,
        stream: &StreamId,
        version: Version,
        event_id: Uuid,
        record: Vec<u8>,
    ) {
        match self {
            WriteBatch::Sled(batch) => batch.put_event(position, stream, version, record),
            WriteBatch::Postgres(batch) => {
                batch.put_event(position, stream, version, event_id, record)
            }
        }
    }

    /// Sets the head of the whole log.
    pub(crate) fn put_log_head(&mut self, head: &LogHead) {
        match self {
            WriteBatch::Sled(batch) => batch.put_log_head(head),
            WriteBatch::Postgres(batch) => batch.put_log_head(head),
        }
    }
}
