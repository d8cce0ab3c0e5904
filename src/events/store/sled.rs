//! The sled engine, the embedded default: it lays out the keys, reads events and indexes back,
//! applies the journal's batches atomically and makes them durable.
//!
//! Everything the log holds lives in one sled tree, `log`, under one-byte key prefixes, so that a
//! whole commit round is one atomic `apply_batch`:
//!
//! | key                                   | value                                      |
//! |---------------------------------------|--------------------------------------------|
//! | `S` stream `\0` version               | the stored record: hash, then body         |
//! | `R` first position                    | the round index: the streams and versions of the positions from there, as runs |
//! | `M` `head`                            | position, hash, recorded_at (µs), greatest event id |
//! | `M` `format`                          | [`FORMAT`]                                 |
//!
//! Records are clustered by stream, so rebuilding an entity is one sequential scan. Global order
//! is kept by one small `R` entry per commit round (more for a round of very many streams):
//! keyed by the round's first position, it lists the round's events in position order as runs
//! of consecutive versions of one stream (`len` u8, stream name, first version u64, count u32).
//! A position is found by a range lookup of the last `R` key at or before it, then its record;
//! reading one category filters the runs by the stream names they carry, without opening the
//! records of other categories. sled 0.34 serialises every batch behind one process-wide lock,
//! so each key written per event costs throughput: the log writes one per event (`S`) and one
//! per round, no category index and no event-id index. A retried append is found in its stream
//! instead ([`SledStore::find_event_ids`]); the head keeps the greatest event id, and a time-ordered
//! id (UUIDv7, which annals itself generates) above it cannot be a retry, so nearly every append
//! looks nothing up. A stream's version is its last `S` key. Numbers are big-endian so that
//! byte order is numeric order. Snapshots and projection checkpoints live in trees of their own:
//! they are caches, rebuilt from the log when missing.
//!
//! Logs of format [`FORMAT_V1`] kept global order with one `E` position → `S` key pointer per
//! event instead; older ones also an `I` event id + stream → position index, which nothing
//! reads but the greatest id of a log whose head does not hold one yet. Such a log is read as it
//! is: positions up to its last `E` key through the pointers, later ones through `R` entries.
//! The first round written to it also sets the format marker to [`FORMAT`], in the same batch,
//! so that a build that reads only pointers refuses the log instead of missing its new events.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use chrono::DateTime;
use uuid::Uuid;

use super::super::envelope::{EventView, Position, RecordedEvent, StreamId, Version};
use super::{Durability, EntryCounts, LogHead, RawEvent, Record, StoreError};

/// How long opening waits for a log's lock to be released.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// How long after the blob directory's last change a listing of it must come for that change's
/// time to prove, on later rounds, that nothing was added since (file times tick coarsely).
const BLOB_DIR_SETTLE: Duration = Duration::from_secs(1);

/// The on-disk format this build writes: records under stream keys, global order in a round
/// index.
pub const FORMAT: &[u8] = b"annals-log v2";
/// The format of logs that kept one position pointer per event. This build reads, verifies and
/// extends them; the first round it writes to one sets [`FORMAT`].
pub const FORMAT_V1: &[u8] = b"annals-log v1";

const STREAM: u8 = b'S';
const ROUND: u8 = b'R';
/// The position pointers of [`FORMAT_V1`] logs; no longer written.
const EVENT: u8 = b'E';
/// The size at which a round's index entry is closed and the next event opens another, so that
/// an entry stays far below the 128 KiB from which sled moves a value into a blob file.
const MAX_INDEX_ENTRY_BYTES: usize = 16 * 1024;
/// The fixed part of a run in a round index entry: name length, first version, count.
const RUN_FIXED_BYTES: usize = 1 + 8 + 4;
/// The event-id index of logs written before the head kept the greatest id; no longer written.
const LEGACY_EVENT_ID: u8 = b'I';
const META_HEAD: &[u8] = b"Mhead";
/// The head's value: position (8), hash (32), recorded_at (8), greatest event id (16). Logs
/// written before the greatest id was kept there have heads of the first 48 bytes.
const HEAD_BYTES: usize = 64;
const LEGACY_HEAD_BYTES: usize = 48;
const META_FORMAT: &[u8] = b"Mformat";

/// An open log directory.
pub struct SledStore {
    path: PathBuf,
    /// sled's directory of blob files, `blobs` in the log's directory.
    blobs_dir: PathBuf,
    db: sled::Db,
    log: sled::Tree,
    snapshots: sled::Tree,
    checkpoints: sled::Tree,
    /// sled's data file, opened a second time so that the journal can `fdatasync` it:
    /// sled 0.34.7's own `flush()` stops at `sync_file_range`.
    data_file: File,
    /// Blob files (sled's home for values and pages over about 128 KiB, written without any
    /// sync) already fsynced, so each is synced once.
    blobs: Mutex<BlobsSeen>,
    /// The last position a [`FORMAT_V1`] pointer leads to (0 for none): positions up to it are
    /// read through the pointers, later ones through the round index.
    legacy_end: Position,
    /// Set while the format marker still says [`FORMAT_V1`]: the next commit sets [`FORMAT`].
    upgrade_format: AtomicBool,
}

/// What [`SledStore::sync_new_blobs`] knows of sled's blob directory.
#[derive(Default)]
struct BlobsSeen {
    synced: HashSet<OsString>,
    /// The directory's modification time when it was last listed, once that listing came
    /// late enough after it that a later change cannot carry the same time.
    settled: Option<SystemTime>,
}

impl SledStore {
    /// Opens the log in `path`, creating it only when the directory is missing or empty.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
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
        let upgrade_format = match log.get(META_FORMAT)? {
            Some(found) if found == FORMAT => false,
            Some(found) if found == FORMAT_V1 => true,
            Some(found) => {
                return Err(StoreError::UnsupportedFormat {
                    path: path.to_owned(),
                    found: String::from_utf8_lossy(&found).into_owned(),
                    expected: format!(
                        "{} or {}",
                        String::from_utf8_lossy(FORMAT),
                        String::from_utf8_lossy(FORMAT_V1)
                    ),
                })
            }
            None if is_new => {
                // A new log: the format marker is the one key written outside the journal,
                // before the journal starts.
                log.insert(META_FORMAT, FORMAT)?;
                db.flush()?;
                false
            }
            None => {
                return Err(StoreError::NotALog {
                    path: path.to_owned(),
                })
            }
        };
        let legacy_end = log
            .scan_prefix([EVENT])
            .next_back()
            .transpose()?
            .map_or(0, |(key, _)| key_position(&key));
        let data_file = File::open(path.join("db"))
            .map_err(|e| open_error(format!("cannot open sled's data file: {e}")))?;
        Ok(SledStore {
            path: path.to_owned(),
            blobs_dir: path.join("blobs"),
            db,
            log,
            snapshots,
            checkpoints,
            data_file,
            blobs: Mutex::default(),
            legacy_end,
            upgrade_format: AtomicBool::new(upgrade_format),
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

    /// The record under the stream key that the index names for `position`.
    fn located(&self, position: Position, key: &[u8]) -> Result<Record, StoreError> {
        self.log.get(key)?.map(Record).ok_or_else(|| {
            StoreError::corrupt(
                format!("position {position}"),
                "missing: the stream key its index names holds no record",
            )
        })
    }

    /// The event at a global position.
    pub fn event(&self, position: Position) -> Result<Option<RecordedEvent>, StoreError> {
        if position == 0 {
            return Ok(None);
        }
        let mut cursor = Cursor::new(self, position - 1);
        match cursor.next_position() {
            Some(Ok(found)) if found == position => {
                let record = self.located(position, &cursor.key)?;
                record.open(|| format!("position {position}")).map(Some)
            }
            Some(Err(error)) => Err(error),
            _ => Ok(None),
        }
    }

    /// Every event after global position `after`, in order, read lazily.
    pub fn events_after(
        &self,
        after: Position,
    ) -> impl Iterator<Item = Result<RecordedEvent, StoreError>> + '_ {
        let mut cursor = Cursor::new(self, after);
        std::iter::from_fn(move || {
            let position = match cursor.next_position()? {
                Ok(position) => position,
                Err(error) => return Some(Err(error)),
            };
            Some(
                self.located(position, &cursor.key)
                    .and_then(|record| record.open(|| format!("position {position}"))),
            )
        })
    }

    /// Every stored event after `after` in global order, as raw bytes with the stream and
    /// version the index names for it. `verify` uses this to check records without trusting
    /// them.
    pub fn raw_events_after(
        &self,
        after: Position,
    ) -> impl Iterator<Item = Result<RawEvent, StoreError>> + '_ {
        let mut cursor = Cursor::new(self, after);
        std::iter::from_fn(move || {
            let position = match cursor.next_position()? {
                Ok(position) => position,
                Err(error) => return Some(Err(error)),
            };
            let malformed = || {
                StoreError::corrupt(
                    format!("position {position}"),
                    "the stream key its index names is malformed",
                )
            };
            let key = &cursor.key;
            let raw = match split_indexed_key(key, 8) {
                Some((stream, version)) if key.first() == Some(&STREAM) => {
                    self.located(position, key).map(|record| RawEvent {
                        position,
                        stream,
                        version: be_u64(version),
                        record,
                    })
                }
                _ => Err(malformed()),
            };
            Some(raw)
        })
    }

    /// The stored records of one stream with a version above `after`, in order: one point read
    /// of the next version, then, if there is one, a sequential scan of the rest, for folding
    /// through [`EventView`] without copying. Most activations find nothing after their snapshot
    /// (or no event at all, for a new entity): the point read answers that without the scan,
    /// which copies a leaf of the tree.
    pub fn stream_records_after<'a>(
        &'a self,
        stream: &StreamId,
        after: Version,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + 'a {
        let next = after.saturating_add(1);
        let (first, rest) = match self.log.get(stream_key(stream, next)) {
            Ok(None) => (None, None),
            Ok(Some(record)) => {
                let rest = (next < u64::MAX).then(|| {
                    self.log
                        .range(stream_key(stream, next + 1)..=stream_key(stream, u64::MAX))
                });
                (Some(Ok(Record(record))), rest)
            }
            Err(error) => (Some(Err(error.into())), None),
        };
        first
            .into_iter()
            .chain(rest.into_iter().flatten().map(|item| Ok(Record(item?.1))))
    }

    /// Up to `limit` events of one category (all `scan-*` streams) after global position `after`.
    /// It walks the global order, whose stream names tell the category, and opens only the
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
        let mut cursor = Cursor::new(self, after);
        while let Some(position) = cursor.next_position().transpose()? {
            if position > until {
                break;
            }
            if cursor.key.starts_with(&prefix) {
                let record = self.located(position, &cursor.key)?;
                events.push(record.open(|| format!("position {position}"))?);
                if events.len() >= limit {
                    return Ok((events, position));
                }
            }
        }
        Ok((events, until))
    }

    /// Applies one commit round atomically. Only the journal calls this.
    pub(crate) fn commit(&self, mut batch: SledBatch) -> Result<(), StoreError> {
        batch.close_index_entry();
        // A log of the old layout gets its new format marker with the first round that gives
        // it a round index, atomically: never one without the other.
        let upgrade = self.upgrade_format.load(Ordering::Acquire);
        if upgrade {
            batch.batch.insert(META_FORMAT, FORMAT);
        }
        self.log.apply_batch(batch.batch)?;
        if upgrade {
            self.upgrade_format.store(false, Ordering::Release);
        }
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
    /// entry yet lost on power failure. sled writes a blob for any value or page it serialises
    /// over about 128 KiB, which a round of small events can cause too (a page consolidated
    /// with many records), so the directory is watched rather than the round's sizes: its
    /// modification time, one `stat`, tells whether it has changed since it was last listed.
    fn sync_new_blobs(&self) -> Result<(), StoreError> {
        let dir = &self.blobs_dir;
        let modified = match std::fs::metadata(dir) {
            Ok(meta) => meta.modified()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut seen = self.blobs.lock().unwrap_or_else(|p| p.into_inner());
        if seen.settled == Some(modified) {
            return Ok(());
        }
        let listed_at = SystemTime::now();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let synced = &mut seen.synced;
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
            File::open(dir)?.sync_all()?;
        }
        // A file system stamps times from a coarse clock: a blob written just after this
        // listing, in the same tick as the change seen, could leave the same time behind. Only
        // a listing made well after the time it saw lets that time stand for "nothing new".
        let settled = listed_at
            .duration_since(modified)
            .is_ok_and(|since| since >= BLOB_DIR_SETTLE);
        seen.settled = settled.then_some(modified);
        Ok(())
    }

    /// The bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// The newest snapshot of a stream, as written by [`SledStore::put_snapshot`].
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
    /// record and one place in global order (a position pointer of the old layout, or a place
    /// in a round index entry).
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
            positions: count(EVENT, &|key, _| key_position(key) <= head)?
                + self.round_index_positions(head)?,
        })
    }

    /// How many positions up to `head` the round index lists.
    fn round_index_positions(&self, head: Position) -> Result<u64, StoreError> {
        let mut positions = 0;
        for item in self.log.range(round_key(0)..=round_key(head)) {
            let (key, value) = item?;
            let first = key_position(&key);
            let runs = parse_index_entry(&value).map_err(|reason| {
                StoreError::corrupt(format!("the round index entry at position {first}"), reason)
            })?;
            let listed: u64 = runs.iter().map(|run| run.count).sum();
            positions += listed.min(head - first + 1);
        }
        Ok(positions)
    }
}

/// The writes of one commit round, applied atomically by [`SledStore::commit`]: each event's
/// record, the round's index entries and the head.
#[derive(Default)]
pub(crate) struct SledBatch {
    batch: sled::Batch,
    /// The index entry being filled: the position of its first event, and its runs.
    index_first: Position,
    /// The position the next event must have (checked in debug builds).
    index_next: Position,
    index: Vec<u8>,
    /// Where the last run's name lies in `index`, and the version that would continue it.
    last_run: Option<(std::ops::Range<usize>, Version)>,
    /// The stream key being built, kept to reuse its allocation.
    key: Vec<u8>,
}

impl SledBatch {
    /// Adds one sealed event under its stream key and lists it in the round's index. Events
    /// come in position order without gaps, the journal's order.
    pub(crate) fn put_event(
        &mut self,
        position: Position,
        stream: &StreamId,
        version: Version,
        record: Vec<u8>,
    ) {
        let name = stream.as_str().as_bytes();
        self.key.clear();
        self.key.push(STREAM);
        self.key.extend_from_slice(name);
        self.key.push(0);
        self.key.extend_from_slice(&version.to_be_bytes());
        self.batch.insert(self.key.as_slice(), record);

        debug_assert!(
            self.index.is_empty() || position == self.index_next,
            "positions come in order"
        );
        self.index_next = position + 1;
        let continues = match &self.last_run {
            Some((run_name, next)) => *next == version && self.index[run_name.clone()] == *name,
            None => false,
        };
        if continues {
            let (run_name, next) = self.last_run.as_mut().expect("matched above");
            let at = run_name.end + 8;
            let count = u32::from_be_bytes(self.index[at..at + 4].try_into().expect("4 bytes"));
            if let Some(count) = count.checked_add(1) {
                self.index[at..at + 4].copy_from_slice(&count.to_be_bytes());
                *next += 1;
                return;
            }
        }
        if self.index.len() + RUN_FIXED_BYTES + name.len() > MAX_INDEX_ENTRY_BYTES {
            self.close_index_entry();
        }
        if self.index.is_empty() {
            self.index_first = position;
        }
        // Stream ids are at most `MAX_STREAM_ID_LEN` (200) bytes, so the length fits a byte.
        self.index.push(name.len() as u8);
        let start = self.index.len();
        self.index.extend_from_slice(name);
        let end = self.index.len();
        self.index.extend_from_slice(&version.to_be_bytes());
        self.index.extend_from_slice(&1u32.to_be_bytes());
        self.last_run = Some((start..end, version + 1));
    }

    /// Writes the index entry being filled, if any.
    fn close_index_entry(&mut self) {
        if !self.index.is_empty() {
            let entry = std::mem::take(&mut self.index);
            self.batch.insert(&round_key(self.index_first), entry);
        }
        self.last_run = None;
    }

    /// Sets the head of the whole log.
    pub(crate) fn put_log_head(&mut self, head: &LogHead) {
        let mut raw = Vec::with_capacity(HEAD_BYTES);
        raw.extend_from_slice(&head.position.to_be_bytes());
        raw.extend_from_slice(&head.hash);
        let micros = head.recorded_at.map_or(0, |t| t.timestamp_micros());
        raw.extend_from_slice(&micros.to_be_bytes());
        raw.extend_from_slice(head.greatest_id.as_bytes());
        self.batch.insert(META_HEAD, raw);
    }
}

/// One run of a round index entry: `count` consecutive versions of one stream from
/// `first_version`, at consecutive positions. `name` is where the stream name lies in the
/// entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Run {
    name: std::ops::Range<usize>,
    first_version: Version,
    count: u64,
}

/// Reads a round index entry: runs of `len` (u8), stream name, first version (u64), count
/// (u32), back to back.
fn parse_index_entry(entry: &[u8]) -> Result<Vec<Run>, &'static str> {
    let mut runs = Vec::new();
    let mut at = 0;
    while at < entry.len() {
        let len = usize::from(entry[at]);
        let name = at + 1..at + 1 + len;
        let end = name.end + 12;
        if end > entry.len() {
            return Err("a run is cut short");
        }
        let first_version = be_u64(&entry[name.end..]);
        let count = u64::from(u32::from_be_bytes(
            entry[name.end + 8..end].try_into().expect("4 bytes"),
        ));
        if len == 0 || first_version == 0 || count == 0 {
            return Err("a run names no stream or no version");
        }
        if first_version.checked_add(count).is_none() {
            return Err("a run goes past the greatest version");
        }
        runs.push(Run {
            name,
            first_version,
            count,
        });
        at = end;
    }
    if runs.is_empty() {
        return Err("it lists no event");
    }
    Ok(runs)
}

/// A round index entry being walked.
struct IndexWalk {
    entry: sled::IVec,
    runs: Vec<Run>,
    /// The run and the offset within it of the next position.
    run: usize,
    offset: u64,
    next: Position,
}

impl IndexWalk {
    /// Skips `n` positions.
    fn skip(&mut self, mut n: u64) {
        while n > 0 && self.run < self.runs.len() {
            let left = self.runs[self.run].count - self.offset;
            if n < left {
                self.offset += n;
                self.next += n;
                return;
            }
            n -= left;
            self.next += left;
            self.run += 1;
            self.offset = 0;
        }
    }

    /// The next position, with its stream key written into `key`.
    fn next_into(&mut self, key: &mut Vec<u8>) -> Option<Position> {
        let run = self.runs.get(self.run)?;
        key.clear();
        key.push(STREAM);
        key.extend_from_slice(&self.entry[run.name.clone()]);
        key.push(0);
        key.extend_from_slice(&(run.first_version + self.offset).to_be_bytes());
        let position = self.next;
        self.next += 1;
        self.offset += 1;
        if self.offset == run.count {
            self.run += 1;
            self.offset = 0;
        }
        Some(position)
    }
}

/// A walk through global order after a position, across both layouts: the [`FORMAT_V1`]
/// pointers up to the last of them, then the round index. It writes each position's stream
/// key into a buffer it reuses, so that the walk allocates per index entry, not per event.
struct Cursor<'a> {
    store: &'a SledStore,
    /// The last position handed out (or the one the walk starts after).
    after: Position,
    legacy: Option<sled::Iter>,
    rounds: Option<sled::Iter>,
    walk: Option<IndexWalk>,
    /// The stream key of the last position handed out.
    key: Vec<u8>,
}

impl<'a> Cursor<'a> {
    fn new(store: &'a SledStore, after: Position) -> Cursor<'a> {
        let legacy = (after < store.legacy_end).then(|| {
            store
                .log
                .range(event_key(after + 1)..=event_key(store.legacy_end))
        });
        Cursor {
            store,
            after,
            legacy,
            rounds: None,
            walk: None,
            key: Vec::new(),
        }
    }

    /// The next position in global order; its stream key is then in `self.key`.
    fn next_position(&mut self) -> Option<Result<Position, StoreError>> {
        if let Some(legacy) = &mut self.legacy {
            match legacy.next() {
                Some(Ok((key, pointer))) => {
                    let position = key_position(&key);
                    self.key.clear();
                    self.key.extend_from_slice(&pointer);
                    self.after = position;
                    return Some(Ok(position));
                }
                Some(Err(error)) => return Some(Err(error.into())),
                None => self.legacy = None,
            }
        }
        loop {
            if let Some(walk) = &mut self.walk {
                if let Some(position) = walk.next_into(&mut self.key) {
                    self.after = position;
                    return Some(Ok(position));
                }
                self.walk = None;
            }
            if self.rounds.is_none() {
                // The entry that holds the next position starts at or before it.
                let wanted = self.after.saturating_add(1);
                let holding = self
                    .store
                    .log
                    .range(round_key(0)..=round_key(wanted))
                    .next_back();
                let start = match holding {
                    Some(Ok((key, _))) => key_position(&key),
                    Some(Err(error)) => return Some(Err(error.into())),
                    None => wanted,
                };
                self.rounds = Some(self.store.log.range(round_key(start)..=round_key(u64::MAX)));
            }
            let rounds = self.rounds.as_mut().expect("set above");
            let (key, entry) = match rounds.next()? {
                Ok(item) => item,
                Err(error) => return Some(Err(error.into())),
            };
            let first = key_position(&key);
            let runs = match parse_index_entry(&entry) {
                Ok(runs) => runs,
                Err(reason) => {
                    // The walk goes on after the damaged entry; the caller decides whether to.
                    return Some(Err(StoreError::corrupt(
                        format!("the round index entry at position {first}"),
                        reason,
                    )));
                }
            };
            let mut walk = IndexWalk {
                entry,
                runs,
                run: 0,
                offset: 0,
                next: first,
            };
            if first <= self.after {
                walk.skip(self.after - first + 1);
            }
            self.walk = Some(walk);
        }
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

fn round_key(first: Position) -> [u8; 9] {
    let mut key = [ROUND; 9];
    key[1..].copy_from_slice(&first.to_be_bytes());
    key
}

/// The position in an `E` or `R` key.
fn key_position(key: &[u8]) -> Position {
    key.get(1..9).map_or(0, be_u64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::envelope::{Metadata, NewEvent};

    fn name(i: usize, len: usize) -> StreamId {
        let id = format!("job-{i}-");
        StreamId::parse(format!("{id}{}", "x".repeat(len - id.len()))).unwrap()
    }

    fn event(i: usize) -> NewEvent {
        NewEvent {
            event_id: Uuid::from_u128(i as u128 + 1),
            event_type: "LineRecorded".into(),
            schema_version: 1,
            payload: vec![0x80],
            metadata: Metadata::system(),
        }
    }

    /// The runs of the index entry being filled, as (stream, first version, count).
    fn runs(batch: &SledBatch) -> Vec<(String, Version, u64)> {
        parse_index_entry(&batch.index)
            .unwrap()
            .into_iter()
            .map(|run| {
                let name = String::from_utf8(batch.index[run.name].to_vec()).unwrap();
                (name, run.first_version, run.count)
            })
            .collect()
    }

    #[test]
    fn consecutive_versions_of_one_stream_share_a_run() {
        let (a, b) = (name(1, 10), name(2, 10));
        let mut batch = SledBatch::default();
        for (position, (stream, version)) in [(&a, 3), (&a, 4), (&a, 5), (&b, 1), (&a, 6), (&a, 8)]
            .into_iter()
            .enumerate()
        {
            batch.put_event(position as u64 + 10, stream, version, vec![0; 40]);
        }
        assert_eq!(batch.index_first, 10);
        let a = a.as_str().to_owned();
        assert_eq!(
            runs(&batch),
            [
                (a.clone(), 3, 3),
                (b.as_str().to_owned(), 1, 1),
                (a.clone(), 6, 1),
                (a, 8, 1)
            ]
        );
    }

    #[test]
    fn a_malformed_index_entry_is_refused_with_a_reason() {
        let mut good = vec![5];
        good.extend_from_slice(b"job-1");
        good.extend_from_slice(&7u64.to_be_bytes());
        good.extend_from_slice(&2u32.to_be_bytes());
        assert_eq!(parse_index_entry(&good).unwrap()[0].count, 2);
        assert!(parse_index_entry(&good[..good.len() - 1]).is_err());
        assert!(parse_index_entry(&[]).is_err());
        let mut no_count = good.clone();
        no_count[good.len() - 1] = 0;
        assert!(parse_index_entry(&no_count).is_err());
        let mut past_max = good.clone();
        past_max[6..14].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(parse_index_entry(&past_max).is_err());
    }

    /// A round holding a value big enough for sled to put it in a blob file gets that file
    /// synced before the round counts as durable, whether or not rounds without blobs came
    /// between; the directory is listed again only when its time changed.
    #[test]
    fn every_blob_file_is_synced_by_the_round_that_made_it_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        let stream = name(1, 20);
        let at = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        let mut head = LogHead::EMPTY;
        let mut blobs_seen = 0;
        for (i, size) in [300_000, 100, 100, 300_000, 100].into_iter().enumerate() {
            let mut new = event(i);
            new.payload = vec![7; size];
            head.position += 1;
            let (record, hash) =
                RecordedEvent::seal(&head.hash, head.position, &stream, head.position, at, &new);
            head.hash = hash;
            head.recorded_at = Some(at);
            let mut batch = SledBatch::default();
            batch.put_event(head.position, &stream, head.position, record);
            batch.put_log_head(&head);
            store.commit(batch).unwrap();
            store.make_durable(Durability::Fsync).unwrap();
            let on_disk: HashSet<OsString> = std::fs::read_dir(&store.blobs_dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name())
                .collect();
            let seen = store.blobs.lock().unwrap();
            assert!(on_disk.is_subset(&seen.synced), "round {i}: {on_disk:?}");
            blobs_seen = blobs_seen.max(on_disk.len());
        }
        assert!(blobs_seen > 0, "sled wrote no blob file");
        let report =
            crate::events::verify::verify(&super::super::Store::Sled(store), |_| {}).unwrap();
        assert_eq!(report.events, 5);
    }

    /// Sets a path's times to `seconds` after the Unix epoch, to the nanosecond.
    fn set_time(path: &Path, seconds: i64) {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        let times = [
            libc::timespec {
                tv_sec: seconds,
                tv_nsec: 0,
            },
            libc::timespec {
                tv_sec: seconds,
                tv_nsec: 0,
            },
        ];
        // SAFETY: a NUL-terminated path and two timespecs, as utimensat takes them.
        let done = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) };
        assert_eq!(done, 0, "{}", std::io::Error::last_os_error());
    }

    /// Once a listing came well after the blob directory's last change, rounds skip the listing
    /// while the directory's time stays; a new file changes it and is synced.
    #[test]
    fn the_blob_directory_is_listed_only_when_its_time_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        let blobs = store.blobs_dir.clone();
        // Long before now, so that the listing comes well after it.
        let long_ago = 1_700_000_000;
        std::fs::write(blobs.join("1"), b"first").unwrap();
        set_time(&blobs, long_ago);
        store.make_durable(Durability::Fsync).unwrap();
        let listed = |store: &SledStore, name: &str| {
            let seen = store.blobs.lock().unwrap();
            seen.synced.contains(std::ffi::OsStr::new(name))
        };
        assert!(listed(&store, "1"));
        // A file that leaves the directory's time as it was is not seen: nothing was listed.
        std::fs::write(blobs.join("2"), b"second").unwrap();
        set_time(&blobs, long_ago);
        store.make_durable(Durability::Fsync).unwrap();
        assert!(!listed(&store, "2"));
        // A file that changes the time is seen, with everything else new.
        std::fs::write(blobs.join("3"), b"third").unwrap();
        store.make_durable(Durability::Fsync).unwrap();
        assert!(listed(&store, "2") && listed(&store, "3"));
    }

    /// One round of many streams with long names spans several index entries; every position
    /// is found from any starting point, and the log verifies.
    #[test]
    fn a_round_of_many_streams_spans_index_entries_and_reads_from_any_position() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 8 << 20).unwrap();
        let mut batch = SledBatch::default();
        let mut head = LogHead::EMPTY;
        let at = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        let mut expected = Vec::new();
        for i in 0..300 {
            // Every tenth stream gets three versions in a row.
            let versions = if i % 10 == 0 { 3 } else { 1 };
            let stream = name(i, 190);
            for version in 1..=versions {
                head.position += 1;
                let (record, hash) = RecordedEvent::seal(
                    &head.hash,
                    head.position,
                    &stream,
                    version,
                    at,
                    &event(expected.len()),
                );
                head.hash = hash;
                batch.put_event(head.position, &stream, version, record);
                expected.push((stream.clone(), version));
            }
        }
        head.recorded_at = Some(at);
        batch.put_log_head(&head);
        store.commit(batch).unwrap();

        let entries = store.log.scan_prefix([ROUND]).count();
        assert!(entries > 1, "{entries} index entries");
        let last = expected.len() as u64;
        assert_eq!(store.entry_counts(last).unwrap().positions, last);
        for after in 0..=last {
            let next: Vec<_> = store
                .raw_events_after(after)
                .take(2)
                .map(|raw| raw.unwrap())
                .collect();
            let want: Vec<_> = (after + 1..=last.min(after + 2)).collect();
            assert_eq!(next.iter().map(|r| r.position).collect::<Vec<_>>(), want);
            for raw in &next {
                let (stream, version) = &expected[raw.position as usize - 1];
                assert_eq!((&raw.stream, raw.version), (stream, *version));
            }
            let event = store.event(after + 1).unwrap();
            assert_eq!(event.map(|e| e.position), want.first().copied());
        }
        assert!(store.event(0).unwrap().is_none());
        let report =
            crate::events::verify::verify(&super::super::Store::Sled(store), |_| {}).unwrap();
        assert_eq!((report.events, report.streams), (last, 300));
    }
}
