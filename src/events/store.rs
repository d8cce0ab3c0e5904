//! The storage engine behind the log. This is the only module that names sled: it lays out the
//! keys, reads events and indexes back, applies the journal's batches atomically and makes them
//! durable. It never decides what to write; the journal does.
//!
//! Everything the log holds lives in one sled tree, `log`, under one-byte key prefixes, so that a
//! whole commit round is one atomic `apply_batch`:
//!
//! | key                                   | value                                      |
//! |---------------------------------------|--------------------------------------------|
//! | `S` stream `\0` version               | the stored record: hash, then body         |
//! | `E` position                          | the `S` key of the event at that position  |
//! | `M` `head`                            | position, hash, recorded_at (µs), greatest event id |
//! | `M` `format`                          | [`FORMAT`]                                 |
//!
//! Records are clustered by stream, so rebuilding an entity is one sequential scan; reading in
//! global order follows the `E` pointers, and reading one category filters them by the stream
//! name they carry, without opening the records of other categories. sled 0.34 serialises every
//! batch behind one process-wide lock, so each key written per event costs throughput: the log
//! writes two (`S`, `E`), no category index and no event-id index. A retried append is found
//! in its stream instead ([`Store::find_event_ids`]); the head keeps the greatest event id, and
//! a time-ordered id (UUIDv7, which annals itself generates) above it cannot be a retry, so
//! nearly every append looks nothing up. Logs written before carry an `I` event id + stream →
//! position index as well, which nothing reads but the greatest id of a log whose head does not
//! hold one yet. A stream's version is its last `S` key. Numbers are big-endian u64 so that
//! byte order is numeric order. Snapshots and projection checkpoints live in trees of their
//! own: they are caches, rebuilt from the log when missing.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::envelope::{
    DecodeError, EventView, Hash, Position, RecordedEvent, StreamId, Version, GENESIS_HASH,
};

/// How long opening waits for a log's lock to be released.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The on-disk format this build reads and writes.
pub const FORMAT: &[u8] = b"annals-log v1";

const EVENT: u8 = b'E';
const STREAM: u8 = b'S';
/// The event-id index of logs written before the head kept the greatest id; no longer written.
const LEGACY_EVENT_ID: u8 = b'I';
const META_HEAD: &[u8] = b"Mhead";
/// The head's value: position (8), hash (32), recorded_at (8), greatest event id (16). Logs
/// written before the greatest id was kept there have heads of the first 48 bytes.
const HEAD_BYTES: usize = 64;
const LEGACY_HEAD_BYTES: usize = 48;
const META_FORMAT: &[u8] = b"Mformat";

/// How hard the journal pushes each commit round towards the disk before acknowledging it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// sled's `flush()`, then `fdatasync` on its data file and `fsync` on any new blob file: an
    /// acknowledged event survives a process crash and a power loss.
    #[default]
    Fsync,
    /// sled's `flush()` alone, which writes the data with `sync_file_range` but does not flush the
    /// disk's cache or file metadata: an acknowledged event survives a process crash, not
    /// necessarily a power loss.
    Flush,
    /// Nothing: sled writes in the background about every 500 ms, so an acknowledged event can
    /// be lost by a process crash or a power loss within that window.
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
    Engine(#[from] sled::Error),
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

/// An open log directory.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    log: sled::Tree,
    snapshots: sled::Tree,
    checkpoints: sled::Tree,
    /// sled's data file, opened a second time so that the journal can `fdatasync` it:
    /// sled 0.34.7's own `flush()` stops at `sync_file_range`.
    data_file: File,
    /// Blob files (sled's home for values and pages over about 128 KiB, written without any
    /// sync) already fsynced, so each is synced once.
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl Store {
    /// Opens the log in `path`, creating it only when the directory is missing or empty.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.to_owned(),
            reason,
        };
        // sled panics on a page cache too small for a page; the configuration counts it in MiB.
        if cache_bytes < 1024 * 1024 {
            return Err(open_error(format!(
                "a page cache of {cache_bytes} bytes is too small: [log] cache_mb must be at \
                 least 1"
            )));
        }
        // Private even where no umask says so (the library in another program): the log is
        // the whole history.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(path)
            .map_err(|e| open_error(e.to_string()))?;
        // A new log is only ever created in an empty directory, so that a mistyped `--data`
        // never turns someone's files (or a damaged log) into a fresh, empty log.
        let is_new = std::fs::read_dir(path)
            .map_err(|e| open_error(e.to_string()))?
            .next()
            .is_none();
        // sled writes `conf` when it creates a database; without it this is not one, and
        // sled must not get to rewrite what is there.
        if !is_new && !path.join("conf").exists() {
            return Err(StoreError::NotALog {
                path: path.to_owned(),
            });
        }
        // An empty directory made beforehand (a service's state directory) has whatever mode
        // its maker's umask gave it; the log it is about to hold is as private as one made here.
        // An existing log's directory keeps the mode its operator chose.
        if is_new {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(|e| open_error(e.to_string()))?;
        }
        let config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes);
        // sled's background threads keep its data file, and so its lock, open for a moment after
        // the last handle of a log is dropped: a log closed and opened again in one process can
        // find it still locked. Another process holding the log keeps it locked for good.
        let deadline = Instant::now() + LOCK_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                // sled 0.34.7 (pinned) says so only in its message.
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(StoreError::Locked {
                            path: path.to_owned(),
                            waited: LOCK_WAIT,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(open_error(e.to_string())),
            }
        };
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| open_error(format!("cannot open tree {name}: {e}")))
        };
        let log = tree("log")?;
        let snapshots = tree("snapshots")?;
        let checkpoints = tree("checkpoints")?;
        match log.get(META_FORMAT)? {
            Some(found) if found == FORMAT => {}
            Some(found) => {
                return Err(StoreError::UnsupportedFormat {
                    path: path.to_owned(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                    expected: String::from_utf8_lossy(FORMAT).into_owned(),
                })
            }
            None if is_new => {
                // A new log: the format marker is the one key written outside the journal,
                // before the journal starts.
                log.insert(META_FORMAT, FORMAT)?;
                db.flush()?;
            }
            None => {
                return Err(StoreError::NotALog {
                    path: path.to_owned(),
                })
            }
        }
        let data_file = File::open(path.join("db"))
            .map_err(|e| open_error(format!("cannot open sled's data file: {e}")))?;
        Ok(Store {
            path: path.to_owned(),
            db,
            log,
            snapshots,
            checkpoints,
            data_file,
            synced_blobs: Mutex::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last committed event's position, hash and time, and the greatest event id.
    pub fn log_head(&self) -> Result<LogHead, StoreError> {
        let Some(raw) = self.log.get(META_HEAD)? else {
            return Ok(LogHead::EMPTY);
        };
        if raw.len() != HEAD_BYTES && raw.len() != LEGACY_HEAD_BYTES {
            return Err(StoreError::corrupt(
                "the log head",
                format!("it is {} bytes, not {HEAD_BYTES}", raw.len()),
            ));
        }
        let micros = i64::from_be_bytes(raw[40..48].try_into().expect("8 bytes"));
        let greatest_id = match raw.get(LEGACY_HEAD_BYTES..) {
            Some(id) if !id.is_empty() => Uuid::from_slice(id).expect("16 bytes"),
            _ => self.legacy_greatest_event_id()?,
        };
        Ok(LogHead {
            position: be_u64(&raw[..8]),
            hash: raw[8..40].try_into().expect("32 bytes"),
            recorded_at: DateTime::from_timestamp_micros(micros),
            greatest_id,
        })
    }

    /// The version of a stream's last event; 0 when the stream has none.
    pub fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let last = self
            .log
            .range(stream_key(stream, 0)..=stream_key(stream, u64::MAX))
            .next_back()
            .transpose()?;
        Ok(last.map_or(0, |(key, _)| be_u64(&key[key.len() - 8..])))
    }

    /// The greatest event id of a log whose head does not keep it yet: the id part of the last
    /// key of its legacy event-id index.
    fn legacy_greatest_event_id(&self) -> Result<Uuid, StoreError> {
        let last = self
            .log
            .scan_prefix([LEGACY_EVENT_ID])
            .next_back()
            .transpose()?;
        Ok(last
            .and_then(|(key, _)| Uuid::from_slice(key.get(1..17)?).ok())
            .unwrap_or(Uuid::nil()))
    }

    /// Where the events of `stream` that carry these ids are, for the ids found. An append that
    /// expected version `expected` and was written put its events right after it, so those
    /// versions are read first; ids still missing are looked for through the whole stream,
    /// newest first. The journal asks only about ids no greater than the log's greatest: a
    /// retry, or an id a caller used again.
    pub fn find_event_ids(
        &self,
        stream: &StreamId,
        ids: &[Uuid],
        expected: Option<Version>,
    ) -> Result<HashMap<Uuid, Position>, StoreError> {
        let wanted: HashSet<Uuid> = ids.iter().copied().collect();
        let mut found = HashMap::new();
        let mut look = |record: Record| -> Result<bool, StoreError> {
            let view = record
                .view()
                .map_err(|e| StoreError::corrupt(format!("a record of {stream}"), e))?;
            if wanted.contains(&view.event_id()) {
                found.insert(view.event_id(), view.position());
            }
            Ok(found.len() == wanted.len())
        };
        if let Some(expected) = expected {
            for record in self.stream_records_after(stream, expected).take(ids.len()) {
                if look(record?)? {
                    return Ok(found);
                }
            }
        }
        let all = stream_key(stream, 0)..=stream_key(stream, u64::MAX);
        for item in self.log.range(all).rev() {
            if look(Record(item?.1))? {
                break;
            }
        }
        Ok(found)
    }

    /// The record a position pointer (`E` value) leads to.
    fn pointed(&self, position: Position, pointer: &[u8]) -> Result<Record, StoreError> {
        self.log.get(pointer)?.map(Record).ok_or_else(|| {
            StoreError::corrupt(
                format!("position {position}"),
                "its pointer leads to no stored record",
            )
        })
    }

    /// The event at a global position.
    pub fn event(&self, position: Position) -> Result<Option<RecordedEvent>, StoreError> {
        let Some(pointer) = self.log.get(event_key(position))? else {
            return Ok(None);
        };
        let record = self.pointed(position, &pointer)?;
        record.open(|| format!("position {position}")).map(Some)
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
    pub fn events_after(
        &self,
        after: Position,
    ) -> impl Iterator<Item = Result<RecordedEvent, StoreError>> + '_ {
        self.raw_events_after(after).map(|item| {
            let raw = item?;
            raw.record.open(|| format!("position {}", raw.position))
        })
    }

    /// Every stored event after `after` in global order, as raw bytes with the pointer that led
    /// to it. `verify` uses this to check records without trusting them.
    pub fn raw_events_after(
        &self,
        after: Position,
    ) -> impl Iterator<Item = Result<RawEvent, StoreError>> + '_ {
        let start = event_key(after.saturating_add(1));
        self.log.range(start.to_vec()..vec![EVENT + 1]).map(|item| {
            let (key, pointer) = item?;
            let position = be_u64(&key[1..]);
            let malformed =
                || StoreError::corrupt(format!("position {position}"), "its pointer is malformed");
            if pointer.first() != Some(&STREAM) {
                return Err(malformed());
            }
            let (stream, version) = split_indexed_key(&pointer, 8).ok_or_else(malformed)?;
            Ok(RawEvent {
                position,
                stream,
                version: be_u64(version),
                record: self.pointed(position, &pointer)?,
            })
        })
    }

    /// Every event of one stream with a version above `after`, in order, read lazily.
    pub fn stream_events_after<'a>(
        &'a self,
        stream: &StreamId,
        after: Version,
    ) -> impl Iterator<Item = Result<RecordedEvent, StoreError>> + 'a {
        let stream = stream.clone();
        self.stream_records_after(&stream, after)
            .map(move |record| record?.open(|| format!("a record of {stream}")))
    }

    /// The stored records of one stream with a version above `after`, in order: one sequential
    /// scan, for folding through [`EventView`] without copying.
    pub fn stream_records_after<'a>(
        &'a self,
        stream: &StreamId,
        after: Version,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + 'a {
        let start = stream_key(stream, after.saturating_add(1));
        let end = stream_key(stream, u64::MAX);
        self.log.range(start..=end).map(|item| Ok(Record(item?.1)))
    }

    /// Up to `limit` events of one category (all `scan-*` streams) after global position `after`.
    /// It walks the position pointers, whose stream names tell the category, and opens only the
    /// records that belong to it.
    /// Looks at positions in `(after, until]` only, and stops after `limit` matches; returns
    /// the events and the last position looked at, where the next read starts.
    pub fn read_category(
        &self,
        category: &str,
        after: Position,
        until: Position,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
        let mut prefix = Vec::with_capacity(category.len() + 2);
        prefix.push(STREAM);
        prefix.extend_from_slice(category.as_bytes());
        prefix.push(b'-');
        let mut events = Vec::new();
        if until <= after {
            return Ok((events, after));
        }
        let range = event_key(after + 1)..=event_key(until);
        for item in self.log.range(range) {
            let (key, pointer) = item?;
            let position = be_u64(&key[1..]);
            if pointer.starts_with(&prefix) {
                let record = self.pointed(position, &pointer)?;
                events.push(record.open(|| format!("position {position}"))?);
                if events.len() >= limit {
                    return Ok((events, position));
                }
            }
        }
        Ok((events, until))
    }

    /// Applies one commit round atomically. Only the journal calls this.
    pub(crate) fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.log.apply_batch(batch.0)?;
        Ok(())
    }

    /// Pushes everything committed so far towards the disk, as far as `durability` asks.
    pub(crate) fn make_durable(&self, durability: Durability) -> Result<(), StoreError> {
        match durability {
            Durability::None => Ok(()),
            Durability::Flush => {
                self.db.flush()?;
                Ok(())
            }
            Durability::Fsync => {
                self.db.flush()?;
                self.sync_new_blobs()?;
                self.data_file.sync_data()?;
                Ok(())
            }
        }
    }

    /// fsyncs the blob files sled wrote since the last call. sled 0.34.7 writes them with
    /// plain `write_all`, so without this a large value could be referenced by a durable log
    /// entry yet lost on power failure.
    fn sync_new_blobs(&self) -> Result<(), StoreError> {
        let dir = self.path.join("blobs");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut any = false;
        for entry in entries {
            let name = entry?.file_name();
            if synced.contains(&name) {
                continue;
            }
            match File::open(dir.join(&name)) {
                Ok(file) => file.sync_all()?,
                // sled removes blobs it no longer needs; a vanished one needs no sync.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            synced.insert(name);
            any = true;
        }
        if any {
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    }

    /// The bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// The newest snapshot of a stream, as written by [`Store::put_snapshot`].
    pub fn snapshot(&self, stream: &StreamId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.snapshots.get(stream.as_str())?.map(|v| v.to_vec()))
    }

    /// Replaces a stream's snapshot. Snapshots are a cache of the log, not part of it.
    pub fn put_snapshot(&self, stream: &StreamId, bytes: &[u8]) -> Result<(), StoreError> {
        self.snapshots.insert(stream.as_str(), bytes)?;
        Ok(())
    }

    /// A projection's saved checkpoint.
    pub fn checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.checkpoints.get(name)?.map(|v| v.to_vec()))
    }

    /// Saves a projection's checkpoint. Like snapshots, checkpoints are a cache of the log.
    pub fn put_checkpoint(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.checkpoints.insert(name, bytes)?;
        Ok(())
    }

    /// How many entries each part of the log holds, for `verify`: every event has exactly one
    /// record and one position pointer.
    /// Only entries of events up to `head` count, so that a log being written can be checked;
    /// a record that cannot be read counts too, so that it cannot hide.
    pub fn entry_counts(&self, head: Position) -> Result<EntryCounts, StoreError> {
        let count =
            |prefix: u8, within: &dyn Fn(&[u8], &[u8]) -> bool| -> Result<u64, StoreError> {
                let mut n = 0;
                for item in self.log.scan_prefix([prefix]) {
                    let (key, value) = item?;
                    n += u64::from(within(&key, &value));
                }
                Ok(n)
            };
        Ok(EntryCounts {
            records: count(STREAM, &|_, record| {
                EventView::parse(record).map_or(true, |view| view.position() <= head)
            })?,
            positions: count(EVENT, &|key, _| be_u64(&key[1..]) <= head)?,
        })
    }
}

/// A stored record (hash, then body), as the store holds it.
pub struct Record(sled::IVec);

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

/// The writes of one commit round, applied atomically by [`Store::commit`].
#[derive(Default)]
pub(crate) struct WriteBatch(sled::Batch);

impl WriteBatch {
    /// Adds one sealed event and its position pointer.
    pub(crate) fn put_event(
        &mut self,
        position: Position,
        stream: &StreamId,
        version: Version,
        record: Vec<u8>,
    ) {
        let record_key = stream_key(stream, version);
        self.0.insert(&event_key(position), record_key.as_slice());
        self.0.insert(record_key, record);
    }

    /// Sets the head of the whole log.
    pub(crate) fn put_log_head(&mut self, head: &LogHead) {
        let mut raw = Vec::with_capacity(HEAD_BYTES);
        raw.extend_from_slice(&head.position.to_be_bytes());
        raw.extend_from_slice(&head.hash);
        let micros = head.recorded_at.map_or(0, |t| t.timestamp_micros());
        raw.extend_from_slice(&micros.to_be_bytes());
        raw.extend_from_slice(head.greatest_id.as_bytes());
        self.0.insert(META_HEAD, raw);
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("index values are 8 bytes"))
}

fn event_key(position: Position) -> [u8; 9] {
    let mut key = [EVENT; 9];
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

/// `prefix name \0 suffix`
fn indexed_key(prefix: u8, name: &str, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + name.len() + suffix.len());
    key.push(prefix);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(suffix);
    key
}

/// Splits `prefix stream \0 suffix` where the suffix has a known length.
fn split_indexed_key(key: &[u8], suffix_len: usize) -> Option<(StreamId, &[u8])> {
    let name_end = key.len().checked_sub(suffix_len + 1)?;
    if name_end < 1 || key[name_end] != 0 {
        return None;
    }
    let stream = StreamId::parse(std::str::from_utf8(&key[1..name_end]).ok()?).ok()?;
    Some((stream, &key[name_end + 1..]))
}

fn stream_key(stream: &StreamId, version: Version) -> Vec<u8> {
    indexed_key(STREAM, stream.as_str(), &version.to_be_bytes())
}
