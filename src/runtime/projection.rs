//! Projections: read models fed from the global stream (or one category of it) in commit order,
//! with a durable checkpoint so that a restart folds only the tail. They answer cross-entity
//! queries (all active scans of an engine, all hosts running an app). A projection only reads
//! the log; it never appends, and a projection rebuilt from position 0 equals the live one.

use std::fmt::Debug;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

use crate::events::{CodecError, EventLog, Position, RecordedEvent, SharedEvent, StoreError};

/// One read model.
pub trait Projection: Send + Sync + 'static {
    type State: Default
        + Clone
        + Debug
        + PartialEq
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static;

    /// Names the checkpoint; unique among projections.
    fn name(&self) -> String;
    /// The schema version of the state as checkpoints store it. A checkpoint of another
    /// version is ignored and the projection is rebuilt from position 0.
    fn version(&self) -> u32;
    /// Only this category's events, or every event.
    fn category(&self) -> Option<String> {
        None
    }
    /// Folds one event. An error (an event that does not decode) stops the projection.
    fn apply(&self, state: &mut Self::State, event: &RecordedEvent) -> Result<(), CodecError>;
}

/// How often a projection saves its checkpoint and how much it reads at once.
#[derive(Clone, Copy, Debug)]
pub struct ProjectionSettings {
    /// A checkpoint is saved after this many events folded, once it is due (below).
    pub checkpoint_every: u64,
    /// A checkpoint is due this long after the last, or twenty times the last save's duration
    /// if that is longer; once caught up, unsaved events are saved when it is due. A save
    /// encodes the whole state, so it must not run after every trickle of events of a large
    /// read model.
    pub checkpoint_interval: Duration,
    /// The most events read in one step.
    pub batch: usize,
}

impl Default for ProjectionSettings {
    fn default() -> Self {
        ProjectionSettings {
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(1),
            batch: 1_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("projection {name} cannot fold the event at position {position}: {source}")]
    Apply {
        name: String,
        position: Position,
        source: CodecError,
    },
    #[error("projection {name} stopped: {reason}")]
    Stopped { name: String, reason: String },
    #[error("projection {name} did not reach position {position} within {timeout:?}")]
    Timeout {
        name: String,
        position: Position,
        timeout: Duration,
    },
}

/// A projection's state as of a position.
#[derive(Clone, Debug, PartialEq)]
pub struct View<S> {
    /// Every event up to here is folded in.
    pub position: Position,
    pub state: S,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    position: Position,
    #[serde(with = "serde_bytes")]
    state: Vec<u8>,
}

struct Shared<S> {
    name: String,
    view: RwLock<View<S>>,
    /// The position folded so far, for waiters.
    position: watch::Sender<Position>,
    /// Why the projection stopped, if it did.
    failure: RwLock<Option<String>>,
    /// Dropped with the last handle, which tells the runner to stop.
    _alive: oneshot::Sender<()>,
}

/// A live projection. Cheap to clone; the projection stops when the last clone is dropped.
pub struct ProjectionHandle<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for ProjectionHandle<S> {
    fn clone(&self) -> Self {
        ProjectionHandle {
            shared: self.shared.clone(),
        }
    }
}

impl<S> ProjectionHandle<S> {
    /// Reads the current view.
    pub fn read<R>(&self, f: impl FnOnce(&View<S>) -> R) -> R {
        f(&self.shared.view.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The position folded so far.
    pub fn position(&self) -> Position {
        *self.shared.position.borrow()
    }

    /// Why the projection stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until every event up to `position` is folded in: after an append acknowledged at
    /// position P, `wait_for(P)` makes the next query see it.
    pub async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let mut folded = self.shared.position.subscribe();
        let settled = folded.wait_for(|p| *p >= position || self.failure().is_some());
        let reached = tokio::time::timeout(timeout, settled)
            .await
            .is_ok_and(|r| r.is_ok())
            && self.position() >= position;
        match (reached, self.failure()) {
            (true, _) => Ok(()),
            (_, Some(reason)) => Err(ProjectionError::Stopped {
                name: self.shared.name.clone(),
                reason,
            }),
            _ => Err(ProjectionError::Timeout {
                name: self.shared.name.clone(),
                position,
                timeout,
            }),
        }
    }
}

/// Starts a projection from its checkpoint (or from 0) and keeps it following the log, on the
/// current Tokio runtime.
pub fn start<P: Projection>(
    projection: P,
    log: EventLog,
    settings: ProjectionSettings,
) -> Result<ProjectionHandle<P::State>, ProjectionError> {
    start_spawned(projection, log, settings, |run| {
        tokio::spawn(run);
        true
    })
}

/// [`start`], the folding on `arbiter` (a shard's thread): a read model every query and every
/// answer of its kind waits for does not share the thread of whatever started it.
pub fn start_on<P: Projection>(
    projection: P,
    log: EventLog,
    settings: ProjectionSettings,
    arbiter: &actix::ArbiterHandle,
) -> Result<ProjectionHandle<P::State>, ProjectionError> {
    start_spawned(projection, log, settings, |run| arbiter.spawn(run))
}

/// Starts a projection with `spawn`, which runs its fold loop and says whether it could.
fn start_spawned<P: Projection>(
    projection: P,
    log: EventLog,
    settings: ProjectionSettings,
    spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> bool,
) -> Result<ProjectionHandle<P::State>, ProjectionError> {
    let name = projection.name();
    let view = load_checkpoint(&projection, &log)?.unwrap_or_else(|| View {
        position: 0,
        state: P::State::default(),
    });
    let (position, _) = watch::channel(view.position);
    let (alive, stopped) = oneshot::channel();
    let shared = Arc::new(Shared {
        name,
        view: RwLock::new(view),
        position,
        failure: RwLock::new(None),
        _alive: alive,
    });
    let runner = Runner {
        projection: Arc::new(projection),
        log,
        settings,
        shared: Arc::downgrade(&shared),
    };
    if !spawn(Box::pin(runner.run(stopped))) {
        return Err(ProjectionError::Stopped {
            name: shared.name.clone(),
            reason: "the thread it was to fold on has stopped".into(),
        });
    }
    Ok(ProjectionHandle { shared })
}

/// The position of a projection's saved checkpoint, if it has a usable one. Checkpoints are
/// saved off the fold path, so this trails [`ProjectionHandle::position`].
pub fn saved_position<P: Projection>(
    projection: &P,
    log: &EventLog,
) -> Result<Option<Position>, StoreError> {
    Ok(load_checkpoint(projection, log)?.map(|view| view.position))
}

/// Folds every durable event from position 0, as a fresh projection would.
pub fn rebuild<P: Projection>(
    projection: &P,
    log: &EventLog,
) -> Result<View<P::State>, ProjectionError> {
    let mut view = View {
        position: 0,
        state: P::State::default(),
    };
    let category = projection.category();
    loop {
        let (events, scanned_to) = read(log, category.as_deref(), view.position, 10_000)?;
        if scanned_to == view.position {
            break;
        }
        fold(projection, &mut view.state, &Batch::Stored(events))?;
        view.position = scanned_to;
    }
    view.position = view.position.max(log.head());
    Ok(view)
}

/// Up to `limit` events after `after`, and the last position looked at (`after` when there is
/// nothing more to look at yet).
fn read(
    log: &EventLog,
    category: Option<&str>,
    after: Position,
    limit: usize,
) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
    match category {
        Some(category) => log.read_category(category, after, limit),
        None => {
            let events = log.read_all(after, limit)?;
            let scanned_to = events.last().map_or(after, |e| e.position);
            Ok((events, scanned_to))
        }
    }
}

/// Events to fold: shared from the window of recent events, or read from storage.
enum Batch {
    Recent(Vec<Arc<SharedEvent>>),
    Stored(Vec<RecordedEvent>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Batch::Recent(events) => events.len(),
            Batch::Stored(events) => events.len(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &RecordedEvent> + '_> {
        match self {
            Batch::Recent(events) => Box::new(events.iter().map(|shared| shared.event())),
            Batch::Stored(events) => Box::new(events.iter()),
        }
    }
}

fn fold<P: Projection>(
    projection: &P,
    state: &mut P::State,
    events: &Batch,
) -> Result<(), ProjectionError> {
    for event in events.iter() {
        projection
            .apply(state, event)
            .map_err(|source| ProjectionError::Apply {
                name: projection.name(),
                position: event.position,
                source,
            })?;
    }
    Ok(())
}

fn load_checkpoint<P: Projection>(
    projection: &P,
    log: &EventLog,
) -> Result<Option<View<P::State>>, StoreError> {
    let Some(raw) = log.store().checkpoint(&projection.name())? else {
        return Ok(None);
    };
    let Ok(checkpoint) = rmp_serde::from_slice::<Checkpoint>(&raw) else {
        return Ok(None);
    };
    // A checkpoint of another schema, or ahead of the log, is a cache that no longer applies.
    if checkpoint.version != projection.version() || checkpoint.position > log.head() {
        return Ok(None);
    }
    Ok(rmp_serde::from_slice(&checkpoint.state)
        .ok()
        .map(|state| View {
            position: checkpoint.position,
            state,
        }))
}

struct Runner<P: Projection> {
    projection: Arc<P>,
    log: EventLog,
    settings: ProjectionSettings,
    shared: Weak<Shared<P::State>>,
}

impl<P: Projection> Runner<P> {
    async fn run(self, mut stopped: oneshot::Receiver<()>) {
        let category = self.projection.category();
        let mut unsaved = 0;
        // When the next save of a caught-up projection is due.
        let mut save_due = tokio::time::Instant::now();
        loop {
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            let after = *shared.position.borrow();
            let limit = self.settings.batch;
            // Near the head, the journal's window of recent events has them in memory; further
            // behind, they are read from storage off the async threads.
            let in_category =
                |e: &RecordedEvent| category.as_deref().is_none_or(|c| e.stream.category() == c);
            let recent = self
                .log
                .recent()
                .after(after, self.log.head(), limit, in_category);
            let (events, scanned_to) = match recent {
                Some((events, scanned_to)) => (Batch::Recent(events), scanned_to),
                None => {
                    let log = self.log.clone();
                    let category = category.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        read(&log, category.as_deref(), after, limit)
                    })
                    .await;
                    match read {
                        Ok(Ok((events, scanned_to))) => (Batch::Stored(events), scanned_to),
                        Ok(Err(error)) => return self.fail(&shared, error.to_string()),
                        Err(error) => return self.fail(&shared, error.to_string()),
                    }
                }
            };
            if scanned_to > after {
                let folded = {
                    let mut view = shared.view.write().unwrap_or_else(|p| p.into_inner());
                    let folded = fold(&*self.projection, &mut view.state, &events);
                    view.position = scanned_to;
                    folded
                };
                if let Err(error) = folded {
                    return self.fail(&shared, error.to_string());
                }
                shared.position.send_replace(scanned_to);
                // Moving past other categories' events changes no state, so it alone is not
                // worth a checkpoint.
                unsaved += events.len() as u64;
                // A save encodes the whole state: under a steady load it waits for its due
                // time too, so that a large read model does not spend its time saving.
                if unsaved >= self.settings.checkpoint_every
                    && tokio::time::Instant::now() >= save_due
                {
                    save_due = self.save(shared.clone()).await;
                    unsaved = 0;
                }
                continue;
            }
            // Caught up with the durable head.
            if unsaved > 0 && tokio::time::Instant::now() >= save_due {
                save_due = self.save(shared.clone()).await;
                unsaved = 0;
            }
            drop(shared);
            let save = async {
                if unsaved > 0 {
                    tokio::time::sleep_until(save_due).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = &mut stopped => return,
                head = self.log.wait_past(scanned_to, Duration::from_secs(3600)) => {
                    if head.is_none() {
                        return;
                    }
                }
                // Loops back, finds nothing new, and saves.
                _ = save => {}
            }
        }
    }

    fn fail(&self, shared: &Shared<P::State>, reason: String) {
        tracing::error!(projection = %shared.name, %reason, "projection stopped");
        *shared.failure.write().unwrap_or_else(|p| p.into_inner()) = Some(reason);
        // Wake waiters so that they see the failure instead of their timeout.
        shared.position.send_modify(|_| {});
    }

    /// Saves a checkpoint; returns when the next save of a caught-up projection is due. The
    /// state is encoded off the async threads: a large read model takes a while to encode, and
    /// the actors sharing this thread must not wait for it.
    async fn save(&self, shared: Arc<Shared<P::State>>) -> tokio::time::Instant {
        let started = tokio::time::Instant::now();
        let (log, version, name) = (
            self.log.clone(),
            self.projection.version(),
            shared.name.clone(),
        );
        let saved = tokio::task::spawn_blocking(move || {
            let raw = {
                let view = shared.view.read().unwrap_or_else(|p| p.into_inner());
                let state = rmp_serde::to_vec_named(&view.state)
                    .map_err(|e| format!("the state cannot be encoded: {e}"))?;
                let checkpoint = Checkpoint {
                    version,
                    position: view.position,
                    state,
                };
                rmp_serde::to_vec_named(&checkpoint).expect("a checkpoint record always encodes")
            };
            log.store()
                .put_checkpoint(&shared.name, &raw)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(reason) = saved {
            tracing::warn!(projection = %name, %reason, "could not save a checkpoint");
        }
        let cost = started.elapsed();
        tokio::time::Instant::now() + self.settings.checkpoint_interval.max(cost * 20)
    }
}
