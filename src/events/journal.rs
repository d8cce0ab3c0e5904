//! The journal: the node's only writer of the log. One thread takes every pending append
//! request, checks expected versions, writes all accepted events of the round in one atomic
//! batch, makes the batch durable once, and only then publishes the round and acknowledges it.
//! On PostgreSQL the journals of several nodes write to one log: a round is sealed on the head
//! it read and written only if that head is still the log's, else sealed again on the new one.
//! It never reads on behalf of anyone else and never holds entity state.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use chrono::{SubsecRound, Utc};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::envelope::{NewEvent, Position, RecordedEvent, StreamId, Version};
use super::publish::Publisher;
use super::store::{Committed, Durability, LogHead, Store, StoreError, WriteBatch};

/// What the writer believes a stream's version to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check: append whatever the version is.
    Any,
    /// The stream must have exactly this version (0: the stream must not exist yet).
    Exactly(Version),
}

/// What an accepted append became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The global position of the first event (of the last one the stream had when nothing was
    /// appended).
    pub first_position: Position,
    /// The stream's version after the append.
    pub stream_version: Version,
    /// How many events the request held.
    pub count: usize,
    /// True when every event id was already in the stream: an idempotent retry, not written again.
    pub duplicate: bool,
}

/// Why an append was refused. Nothing of a refused request is written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream} is at version {actual}, not the expected {expected}")]
    Conflict {
        stream: StreamId,
        expected: Version,
        actual: Version,
    },
    #[error("an event of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("{count} events in one append are over the limit of {limit}")]
    TooMany { count: usize, limit: usize },
    #[error("event id {0} appears twice in one append")]
    RepeatedId(Uuid),
    #[error("some event ids of this append are already in stream {0} and some are not")]
    PartlyDuplicate(StreamId),
    #[error("the log could not be written: {0}")]
    Storage(String),
    #[error("the journal is closed")]
    Closed,
}

pub(crate) struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<Appended, AppendError>>,
}

enum Message {
    Append(AppendRequest),
    Close,
}

/// How many times a round is checked and sealed again because other nodes moved the log's head
/// first (PostgreSQL), before its requests are refused.
const MAX_ROUND_ATTEMPTS: usize = 1000;

/// The most requests gathered into one round, so that a flood still gets acknowledged in steps.
const MAX_ROUND_REQUESTS: usize = 4096;

/// How many stream versions the journal keeps in memory before starting its cache afresh.
const MAX_CACHED_VERSIONS: usize = 100_000;

/// A handle on the journal thread.
pub(crate) struct Journal {
    sender: mpsc::Sender<Message>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Journal {
    /// Starts the journal thread over an open store, publishing each durable round through
    /// `publisher`.
    pub(crate) fn start(
        store: Arc<Store>,
        durability: Durability,
        publisher: Arc<Publisher>,
    ) -> Result<Journal, StoreError> {
        let head = store.log_head()?;
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            store,
            durability,
            head,
            publisher,
            versions: HashMap::new(),
            failure: None,
        };
        let thread = std::thread::Builder::new()
            .name("annals-journal".into())
            .spawn(move || writer.run(receiver))
            .map_err(StoreError::Sync)?;
        Ok(Journal {
            sender,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub(crate) fn submit(&self, request: AppendRequest) {
        if let Err(mpsc::SendError(Message::Append(request))) =
            self.sender.send(Message::Append(request))
        {
            let _ = request.reply.send(Err(AppendError::Closed));
        }
    }

    /// Finishes the requests already submitted, then stops the thread. Later appends fail with
    /// [`AppendError::Closed`]. Blocks until the thread has stopped.
    pub(crate) fn close(&self) {
        let _ = self.sender.send(Message::Close);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Answers every request with `error`.
fn answer_all(requests: Vec<AppendRequest>, error: &AppendError) {
    for request in requests {
        let _ = request.reply.send(Err(error.clone()));
    }
}

/// A sealed event as it was before sealing, to be sealed again elsewhere in the log.
fn unsealed(event: RecordedEvent) -> NewEvent {
    NewEvent {
        event_id: event.event_id,
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload: event.payload,
        metadata: event.metadata,
    }
}

/// The state owned by the journal thread.
struct Writer {
    store: Arc<Store>,
    durability: Durability,
    /// The last durable event this journal knows of; the next round chains to it (on
    /// PostgreSQL, to the head the round reads, which another node may have moved).
    head: LogHead,
    /// Where each durable round goes, for followers.
    publisher: Arc<Publisher>,
    /// The versions of recently written streams, kept on sled, where this journal is the only
    /// writer and they stay exact; a stream not here is looked up in the store. On PostgreSQL
    /// each round reads its streams' versions with the head.
    versions: HashMap<StreamId, Version>,
    /// Set when a sled round could not be made durable. The store may then hold writes that
    /// were never acknowledged, so the journal refuses everything until a restart recovers the
    /// log from disk. (A PostgreSQL round that fails is rolled back whole.)
    failure: Option<String>,
}

/// Where a round stands while its requests are staged.
struct Round {
    head: LogHead,
    batch: WriteBatch,
    /// Stream versions as staged so far in this round, with the stream's number in the round.
    versions: HashMap<StreamId, (Version, u32)>,
    /// Event ids staged in this round by stream number, for retries that arrive in the same
    /// round.
    ids: HashMap<(u32, Uuid), Position>,
    writes: usize,
    /// The staged events as followers will read them once the round is durable.
    events: Vec<RecordedEvent>,
}

impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Message>) {
        while let Ok(first) = receiver.recv() {
            let mut requests = Vec::new();
            let mut close = false;
            let mut next = Some(first);
            while let Some(message) = next {
                match message {
                    Message::Append(request) => requests.push(request),
                    Message::Close => {
                        close = true;
                        break;
                    }
                }
                next = if requests.len() < MAX_ROUND_REQUESTS {
                    receiver.try_recv().ok()
                } else {
                    None
                };
            }
            self.commit_round(requests);
            if close {
                break;
            }
        }
        self.sync_on_stop();
    }

    /// Whatever the durability mode, a journal that stops cleanly leaves every acknowledged
    /// event on disk.
    fn sync_on_stop(&self) {
        if self.failure.is_none() {
            if let Err(error) = self.store.make_durable(Durability::Fsync) {
                tracing::error!(%error, "could not sync the log while stopping");
            }
        }
    }

    fn commit_round(&mut self, requests: Vec<AppendRequest>) {
        let mut pending = requests;
        for attempt in 0..MAX_ROUND_ATTEMPTS {
            if pending.is_empty() {
                return;
            }
            pending = match &self.failure {
                Some(failure) => {
                    answer_all(pending, &AppendError::Storage(failure.clone()));
                    return;
                }
                // After a lost race the round locks the head: it cannot lose twice in a row.
                None => self.try_round(pending, attempt > 0),
            };
        }
        let busy = format!(
            "other nodes moved the log's head {MAX_ROUND_ATTEMPTS} times in a row under this \
             round; nothing of it was written"
        );
        answer_all(pending, &AppendError::Storage(busy));
    }

    /// One attempt at writing `requests` as a round. Refused requests are answered at once,
    /// accepted ones once the round is durable (or with the error that stopped it). Returns
    /// the requests to try again, their events given back, when another node moved the head
    /// between reading it and writing (PostgreSQL).
    fn try_round(
        &mut self,
        mut requests: Vec<AppendRequest>,
        contended: bool,
    ) -> Vec<AppendRequest> {
        if let Err(error) = self.begin_round(&requests, contended) {
            answer_all(requests, &AppendError::Storage(error.to_string()));
            return Vec::new();
        }
        let mut round = Round {
            head: self.head,
            batch: self.store.new_batch(),
            versions: HashMap::new(),
            ids: HashMap::new(),
            writes: 0,
            // Most requests carry one event.
            events: Vec::with_capacity(requests.len()),
        };
        // Time never runs backwards in the log, even if the clock does. It is stored in
        // microseconds, so the events kept in memory carry it at that precision too.
        let now = Utc::now().trunc_subsecs(6);
        let now = round.head.recorded_at.map_or(now, |last| last.max(now));
        // The accepted requests, each with its answer and how many events it staged.
        let mut accepted = Vec::with_capacity(requests.len());
        for mut request in requests.drain(..) {
            let staged = request.events.len();
            match self.stage(&mut round, &mut request, now) {
                Ok(appended) => {
                    let staged = if appended.duplicate { 0 } else { staged };
                    accepted.push((request, appended, staged));
                }
                // A refused request stages nothing, so it can be answered at once.
                Err(error) => {
                    let _ = request.reply.send(Err(error));
                }
            }
        }
        if round.writes == 0 {
            if let Err(error) = self.store.abandon_round() {
                tracing::warn!(%error, "could not end a round that writes nothing");
            }
            for (request, appended, _) in accepted {
                let _ = request.reply.send(Ok(appended));
            }
            return Vec::new();
        }
        round.batch.put_log_head(&round.head);
        match self.store.commit(round.batch, self.durability) {
            Ok(Committed::Written) => {}
            Ok(Committed::HeadMoved) => {
                // Nothing was written: the accepted requests get their events back, to be
                // checked and sealed again on top of the new head.
                let mut events = round.events.into_iter();
                return accepted
                    .into_iter()
                    .map(|(mut request, _, staged)| {
                        request.events = events.by_ref().take(staged).map(unsealed).collect();
                        request
                    })
                    .collect();
            }
            Err(error) => {
                let failure = if self.store.failure_is_fatal() {
                    let failure = format!(
                        "{error} (after position {}; restart annals to recover the log from disk)",
                        self.head.position
                    );
                    tracing::error!(%failure, "the journal stopped");
                    self.failure = Some(failure.clone());
                    failure
                } else {
                    // Nothing of it was written, or all of it: the next round starts from the
                    // head it finds, and retries are recognised by their event ids.
                    tracing::warn!(%error, "a commit round failed");
                    error.to_string()
                };
                let error = AppendError::Storage(failure);
                for (request, _, _) in accepted {
                    let _ = request.reply.send(Err(error.clone()));
                }
                return Vec::new();
            }
        }
        self.head = round.head;
        if let Err(error) = self.publisher.publish_round(&self.store, round.events) {
            // Durable all the same: the follower of the log publishes it once it can read.
            tracing::warn!(%error, "a durable round could not be published yet");
        }
        metrics::counter!(crate::metrics::APPENDED_EVENTS).increment(round.writes as u64);
        metrics::histogram!(crate::metrics::ROUND_EVENTS).record(round.writes as f64);
        if self.store.versions_stay_exact() {
            if self.versions.len() + round.versions.len() > MAX_CACHED_VERSIONS {
                self.versions.clear();
            }
            self.versions.extend(
                round
                    .versions
                    .into_iter()
                    .map(|(stream, (version, _))| (stream, version)),
            );
        }
        for (request, appended, _) in accepted {
            let _ = request.reply.send(Ok(appended));
        }
        Vec::new()
    }

    /// Starts a round: takes the log's head and the versions of the round's streams that are
    /// not cached. On PostgreSQL nothing is cached (another node may write any stream), and
    /// both come from one read.
    fn begin_round(
        &mut self,
        requests: &[AppendRequest],
        contended: bool,
    ) -> Result<(), StoreError> {
        if !self.store.versions_stay_exact() {
            self.versions.clear();
        }
        let missing: std::collections::HashSet<&StreamId> = requests
            .iter()
            .map(|request| &request.stream)
            .filter(|stream| !self.versions.contains_key(*stream))
            .collect();
        let missing: Vec<StreamId> = missing.into_iter().cloned().collect();
        let (head, found) = self.store.begin_round(&self.head, contended, &missing)?;
        self.head = head;
        self.versions.extend(found);
        Ok(())
    }

    /// Checks one request against the round so far and, when it is accepted, moves its events
    /// into the round. A refused request leaves the round unchanged.
    fn stage(
        &self,
        round: &mut Round,
        request: &mut AppendRequest,
        now: chrono::DateTime<Utc>,
    ) -> Result<Appended, AppendError> {
        let storage = |e: StoreError| AppendError::Storage(e.to_string());
        let stream = &request.stream;
        let staged = round.versions.get(stream).copied();
        let current = match staged.map(|(version, _)| version) {
            Some(version) => version,
            None => match self.versions.get(stream) {
                Some(version) => *version,
                None => self.store.stream_version(stream).map_err(storage)?,
            },
        };

        let number = staged.map(|(_, number)| number);
        if let Some(appended) = self.find_retry(round, request, number, current)? {
            return Ok(appended);
        }
        if let ExpectedVersion::Exactly(expected) = request.expected {
            if expected != current {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected,
                    actual: current,
                });
            }
        }
        if request.events.is_empty() {
            return Ok(Appended {
                first_position: round.head.position,
                stream_version: current,
                count: 0,
                duplicate: false,
            });
        }

        let first_position = round.head.position + 1;
        let count = request.events.len();
        // The stream's number in this round, which its staged ids are kept under.
        let number = number.unwrap_or(round.versions.len() as u32);
        let mut version = current;
        round.head.recorded_at = Some(now);
        for event in request.events.drain(..) {
            version += 1;
            round.head.position += 1;
            let (record, hash) = RecordedEvent::seal(
                &round.head.hash,
                round.head.position,
                stream,
                version,
                now,
                &event,
            );
            round.head.hash = hash;
            round.head.greatest_id = round.head.greatest_id.max(event.event_id);
            round
                .batch
                .put_event(round.head.position, stream, version, event.event_id, record);
            round
                .ids
                .insert((number, event.event_id), round.head.position);
            round.writes += 1;
            round.events.push(RecordedEvent {
                position: round.head.position,
                stream: stream.clone(),
                version,
                event_id: event.event_id,
                event_type: event.event_type,
                schema_version: event.schema_version,
                recorded_at: now,
                metadata: event.metadata,
                payload: event.payload,
                hash,
            });
        }
        match round.versions.get_mut(stream) {
            Some(staged) => staged.0 = version,
            None => {
                round.versions.insert(stream.clone(), (version, number));
            }
        }
        Ok(Appended {
            first_position,
            stream_version: version,
            count,
            duplicate: false,
        })
    }

    /// Recognises an idempotent retry: every event id already in the stream (in the log or
    /// earlier in this round). Returns `None` when none is. Only ids no greater than the log's
    /// greatest can be in the log, so an append of new time-ordered ids looks nothing up.
    /// `number` is the stream's number in the round when it has events staged there.
    fn find_retry(
        &self,
        round: &Round,
        request: &AppendRequest,
        number: Option<u32>,
        current: Version,
    ) -> Result<Option<Appended>, AppendError> {
        let stream = &request.stream;
        let staged = |id: Uuid| number.and_then(|n| round.ids.get(&(n, id)).copied());
        // Nearly every append: new ids, above the log's greatest, of a stream not yet in the
        // round. Nothing to look up, nothing to allocate.
        let greatest = self.head.greatest_id;
        if number.is_none() && request.events.iter().all(|e| e.event_id > greatest) {
            return Ok(None);
        }
        let mut positions: Vec<Option<Position>> = request
            .events
            .iter()
            .map(|event| staged(event.event_id))
            .collect();
        let stored: Vec<Uuid> = request
            .events
            .iter()
            .zip(&positions)
            .filter(|(event, staged)| staged.is_none() && event.event_id <= self.head.greatest_id)
            .map(|(event, _)| event.event_id)
            .collect();
        if !stored.is_empty() {
            let expected = match request.expected {
                ExpectedVersion::Exactly(version) if version < current => Some(version),
                _ => None,
            };
            let found = self
                .store
                .find_event_ids(stream, &stored, expected)
                .map_err(|e| AppendError::Storage(e.to_string()))?;
            for (event, position) in request.events.iter().zip(&mut positions) {
                if position.is_none() {
                    *position = found.get(&event.event_id).copied();
                }
            }
        }
        let found = positions.iter().flatten().count();
        match positions.iter().flatten().next() {
            None => Ok(None),
            Some(&first_position) if found == request.events.len() => Ok(Some(Appended {
                first_position,
                stream_version: current,
                count: found,
                duplicate: true,
            })),
            Some(_) => Err(AppendError::PartlyDuplicate(stream.clone())),
        }
    }
}
