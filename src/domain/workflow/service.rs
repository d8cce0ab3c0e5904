//! The executions' commands and queries, what the HPCWaaS face's transport calls once per
//! request: trigger a workflow (inputs checked against its declaration, ssh keys against their
//! owner), read an execution, cancel it, list executions, and a page of its log that waits for
//! new lines on the log's follow mechanism (never by polling storage). It holds no state of
//! its own beyond the handles it is given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::catalogue::{Catalogue, InputError, InputKind};
use super::effects::{self, RunLimits, Runner};
use super::read_model::{ExecutionsModel, ExecutionsPage, ExecutionsState, ListQuery};
use super::{
    Execution, ExecutionCommand, ExecutionEvent, ExecutionRejection, ExecutionState, Requested,
};
use super::{Level, LogLine};
use crate::domain::sshkey::SshKeys;
use crate::domain::{create_folded, start_read_model, wait_folded, Core};
use crate::events::follow;
use crate::events::{CodecError, DomainEvent, EventLog, Metadata, StoreError, StreamId};
use crate::runtime::projection::ProjectionError;
use crate::runtime::{reconcile, Clock, CommandError, Entities, ProjectionHandle};

/// How long start-up waits for the list and the settling of interrupted executions.
const STARTUP_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ExecutionsError {
    #[error("no workflow {0}")]
    UnknownWorkflow(String),
    #[error("account {user} may not trigger workflow {workflow}")]
    Forbidden { user: String, workflow: String },
    #[error(transparent)]
    Inputs(#[from] InputError),
    #[error("no execution {0}")]
    NotFound(String),
    /// The log or an actor failed: nothing was acknowledged.
    #[error("not recorded: {0}")]
    NotRecorded(#[from] CommandError<ExecutionRejection>),
    /// The list failed.
    #[error("not recorded: {0}")]
    Model(#[from] ProjectionError),
    /// An execution's events could not be followed.
    #[error("not recorded: {0}")]
    Store(#[from] StoreError),
    #[error("not recorded: {0}")]
    Codec(#[from] CodecError),
}

/// Which levels a log query wants: a mask of [`Level::bit`]s holding at least one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels(u8);

impl Levels {
    /// The API's `levels`: 0 means INFO, WARN and ERROR; a mask with no known bit (such as 16)
    /// means every level, as upstream, whose level filter is then empty.
    pub fn from_mask(mask: u8) -> Levels {
        let every = [Level::Debug, Level::Info, Level::Warn, Level::Error]
            .into_iter()
            .fold(0, |mask, level| mask | level.bit());
        if mask == 0 {
            Levels(Level::Info.bit() | Level::Warn.bit() | Level::Error.bit())
        } else if mask & every == 0 {
            Levels(every)
        } else {
            Levels(mask & every)
        }
    }

    pub fn accepts(self, level: Level) -> bool {
        self.0 & level.bit() != 0
    }
}

/// A page of an execution's log, as `GET /executions/{id}/logs` asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogQuery {
    /// An offset into the level-filtered list.
    pub from: usize,
    /// The most lines; `None`: all.
    pub size: Option<usize>,
    pub levels: Levels,
    /// How long to wait for a line when there is none at `from`.
    pub timeout: Duration,
}

/// One page of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPage {
    pub logs: Vec<LogLine>,
    /// Every line matching the levels.
    pub total_results: usize,
    pub from: usize,
}

/// The executions of one server. Cheap to clone.
#[derive(Clone)]
pub struct Executions {
    entities: Entities<Execution>,
    model: ProjectionHandle<ExecutionsState>,
    catalogue: Arc<Catalogue>,
    keys: SshKeys,
    clock: Arc<dyn Clock>,
    log: EventLog,
}

/// An execution id as clients give it: one of the server's UUIDs, or nothing known.
fn parse_id(raw: &str) -> Result<Uuid, ExecutionsError> {
    Uuid::parse_str(raw).map_err(|_| ExecutionsError::NotFound(raw.to_owned()))
}

impl Executions {
    /// Starts the list (returning once it has folded the log) and the directory with its
    /// runner, takes over the executions a previous process left running (each goes on where
    /// it was, [`effects::Runner::resume`], or is failed with a line saying it was
    /// interrupted), and empties the scratch directory of all but the steps that go on.
    pub async fn start(
        core: &Core,
        catalogue: Arc<Catalogue>,
        keys: SshKeys,
        limits: RunLimits,
        work_dir: std::path::PathBuf,
    ) -> anyhow::Result<Executions> {
        let Core { log, clock, .. } = core.clone();
        let model = start_read_model(ExecutionsModel, core, STARTUP_WAIT).await?;
        let runner = Arc::new(Runner::new(
            catalogue.clone(),
            keys.clone(),
            clock.clone(),
            limits,
            work_dir.clone(),
        ));
        let entities = core.entities_with(runner.clone());
        let running = reconcile::track_in_progress::<Execution>(&log)?;
        running.wait_for(log.head(), STARTUP_WAIT).await?;
        let ids = running.read(|view| reconcile::held_in_progress::<Execution>(&log, &view.state));
        let (mut resumed, mut interrupted) = (Vec::new(), 0);
        for id in ids {
            let (goes_on, ended) = match entities.state(&id).await {
                Ok((_, state)) => {
                    let goes_on = runner.resume(&id, &state, &entities);
                    let ended = goes_on.is_none().then(|| runner.ended(&state)).flatten();
                    (goes_on, ended)
                }
                Err(_) => (None, None),
            };
            let settled = match (goes_on, ended) {
                (Some(run), _) => {
                    resumed.push(run);
                    continue;
                }
                // Its last step had ended: it ends as the run would have ended it.
                (None, Some(ending)) => {
                    let command = ExecutionCommand::Finish(ending);
                    entities
                        .execute(&id, command, Metadata::system())
                        .await
                        .map(drop)
                }
                (None, None) => {
                    interrupted += 1;
                    entities.reconcile(&id).await.map(drop)
                }
            };
            if let Err(error) = settled {
                tracing::warn!(%id, %error, "could not settle an execution after restart");
            }
        }
        let keep: Vec<String> = resumed
            .iter()
            .filter_map(|run| run.scratch.clone())
            .collect();
        effects::prepare_work_dir(&work_dir, &keep)?;
        if !resumed.is_empty() {
            tracing::info!(count = resumed.len(), "executions go on after a restart");
        }
        if interrupted > 0 {
            tracing::info!(
                count = interrupted,
                "failed executions interrupted by a stop"
            );
        }
        resumed.into_iter().for_each(effects::Resumed::start);
        Ok(Executions {
            entities,
            model,
            catalogue,
            keys,
            clock,
            log,
        })
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Starts an execution of `workflow` and returns its id once it is recorded (the run
    /// starts after that).
    pub async fn trigger(
        &self,
        workflow: &str,
        given: &BTreeMap<String, serde_json::Value>,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<Uuid, ExecutionsError> {
        let workflow = self
            .catalogue
            .get(workflow)
            .ok_or_else(|| ExecutionsError::UnknownWorkflow(workflow.to_owned()))?;
        if !workflow.allows(by.as_deref()) {
            return Err(ExecutionsError::Forbidden {
                user: by.unwrap_or_default(),
                workflow: workflow.id.to_string(),
            });
        }
        let inputs = workflow.resolve_inputs(given)?;
        for (name, value) in &inputs {
            if workflow.input(name).map(|i| i.kind) != Some(InputKind::SshKey) {
                continue;
            }
            let usable = match Uuid::parse_str(value) {
                Ok(key) => self.keys.get(key, by.as_deref()).await.is_ok(),
                Err(_) => false,
            };
            if !usable {
                return Err(InputError::Invalid {
                    name: name.clone(),
                    reason: format!("no ssh key {value} of yours"),
                }
                .into());
            }
        }
        let command = ExecutionCommand::Request {
            workflow: workflow.id.clone(),
            inputs,
            by,
        };
        create_folded(&self.entities, &self.model, &*self.clock, command, metadata).await
    }

    /// An execution's state without its log index: its lines stay in its stream, so a status
    /// poll copies the same few fields whether the log holds 10 lines or `max_log_lines`. What
    /// was requested comes apart from the rest (whose `requested` is then `None`): an
    /// execution never requested is not found.
    pub async fn get(&self, raw: &str) -> Result<(Requested, ExecutionState), ExecutionsError> {
        let id = parse_id(raw)?;
        let (_, found) = self
            .entities
            .inspect(&id.to_string(), |state: &ExecutionState| {
                let mut state = state.without_log_index();
                Some((state.requested.take()?, state))
            })
            .await?;
        found.ok_or_else(|| ExecutionsError::NotFound(raw.to_owned()))
    }

    /// Asks a running execution to stop; an ended one stays as it is.
    pub async fn cancel(
        &self,
        raw: &str,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<(), ExecutionsError> {
        let id = parse_id(raw)?;
        match self
            .entities
            .execute(&id.to_string(), ExecutionCommand::Cancel { by }, metadata)
            .await
        {
            // The list shows CANCELLING by the time the client hears back.
            Ok(executed) => Ok(wait_folded(&self.model, &executed).await?),
            Err(CommandError::Rejected(ExecutionRejection::NotFound)) => {
                Err(ExecutionsError::NotFound(raw.to_owned()))
            }
            Err(other) => Err(other.into()),
        }
    }

    pub fn list(&self, query: &ListQuery) -> ExecutionsPage {
        self.model.read(|view| view.state.list(query))
    }

    /// The stream of an execution that exists, for followers of its events.
    pub async fn stream(&self, raw: &str) -> Result<StreamId, ExecutionsError> {
        let id = parse_id(raw)?;
        let (_, exists) = self
            .entities
            .inspect(&id.to_string(), |state: &ExecutionState| {
                state.requested.is_some()
            })
            .await?;
        if !exists {
            return Err(ExecutionsError::NotFound(raw.to_owned()));
        }
        StreamId::of(KIND, &id.to_string()).map_err(|e| ExecutionsError::NotFound(e.to_string()))
    }

    /// A page of the log. When no line at or after `from` matches, waits up to the timeout
    /// for one, following the execution's stream: each commit to it wakes the wait. It waits
    /// also when the execution has ended, as upstream does: the `waas` client's follow loops
    /// never stop on their own and rely on this wait to not ask again at once. The execution's
    /// actor only says how many lines match and where in the stream the page starts (its
    /// state's index); the lines are read from the stream, off the async threads, up to the
    /// version the actor had folded, so the total and the lines agree.
    pub async fn logs(&self, raw: &str, query: LogQuery) -> Result<LogPage, ExecutionsError> {
        let deadline = Instant::now() + query.timeout;
        let id = parse_id(raw)?;
        let stream = StreamId::of(KIND, &id.to_string())
            .map_err(|e| ExecutionsError::NotFound(e.to_string()))?;
        let (version, cut) = self
            .entities
            .inspect(&id.to_string(), move |state: &ExecutionState| {
                state.requested.as_ref()?;
                Some(LogCut::of(state, &query))
            })
            .await?;
        let cut = cut.ok_or_else(|| ExecutionsError::NotFound(raw.to_owned()))?;
        let wait = Instant::now() < deadline;
        if cut.total > query.from || !wait {
            let logs = if cut.total > query.from {
                let log = self.log.clone();
                crate::runtime::blocking(move || read_lines(&log, &stream, version, &cut, &query))
                    .await
                    .map_err(|stopped| StoreError::Corrupt {
                        what: "a log read".into(),
                        reason: stopped.to_string(),
                    })??
            } else {
                Vec::new()
            };
            return Ok(LogPage {
                logs,
                total_results: cut.total,
                from: query.from,
            });
        }
        // No matching line at `from` yet: the lines that come after the `cut.total` matching
        // ones, as the stream brings them.
        let (earlier, mut version, mut new) = (cut.total, version, Vec::new());
        loop {
            let now = Instant::now();
            // A stopping server releases followers: the poll answers with what it has.
            let wait = now < deadline && !self.log.followers_released();
            if let Ok(page) = page(&new, earlier, &query, wait) {
                return Ok(page);
            }
            let page =
                follow::follow_stream(&self.log, &stream, version, 1000, deadline - now).await?;
            for shared in &page.events {
                if let ExecutionEvent::LogLineRecorded(line) =
                    ExecutionEvent::from_recorded(shared.event())?
                {
                    new.push(line);
                }
            }
            version = page.next.max(version);
        }
    }
}

/// Where a page of the log starts, as an execution's actor tells it from the state alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogCut {
    /// Every kept line matching the levels.
    total: usize,
    /// The stream version after which reading starts: just before an indexed line.
    after: u64,
    /// The matching lines before that indexed line.
    before: usize,
}

impl LogCut {
    fn of(state: &ExecutionState, query: &LogQuery) -> LogCut {
        let matching = |counts: &[u64; 4]| -> usize {
            Level::ALL
                .into_iter()
                .filter(|level| query.levels.accepts(*level))
                .map(|level| counts[level.slot()])
                .sum::<u64>()
                .try_into()
                .unwrap_or(usize::MAX)
        };
        // The counts before each mark only grow: the last mark with at most `from` matching
        // lines before it is the nearest to the page's first line.
        let start = state
            .log_index
            .partition_point(|mark| matching(&mark.before) <= query.from)
            .checked_sub(1)
            .map(|at| &state.log_index[at]);
        LogCut {
            total: matching(&state.lines_by_level),
            after: start.map_or(0, |mark| mark.version.saturating_sub(1)),
            before: start.map_or(0, |mark| matching(&mark.before)),
        }
    }
}

/// The lines of the page `query` asks for, read from the execution's stream from where `cut`
/// starts up to `until`, the version the cut was made at. Blocking: it reads the store.
fn read_lines(
    log: &EventLog,
    stream: &StreamId,
    until: u64,
    cut: &LogCut,
    query: &LogQuery,
) -> Result<Vec<LogLine>, ExecutionsError> {
    let mut skip = query.from.saturating_sub(cut.before);
    let size = query.size.unwrap_or(usize::MAX);
    let mut lines = Vec::new();
    if size == 0 {
        return Ok(lines);
    }
    crate::runtime::state::visit_stream::<Execution>(log, stream, cut.after, until, |_, event| {
        match event {
            ExecutionEvent::LogLineRecorded(line) if query.levels.accepts(line.level) => {
                if skip > 0 {
                    skip -= 1;
                } else {
                    lines.push(line);
                }
            }
            _ => {}
        }
        lines.len() < size
    })?;
    Ok(lines)
}

/// The page `query` asks for, of `lines` that come after `earlier` lines matching its levels
/// (a long poll's lines, which came while it waited). When no matching line is at `from` yet
/// and `wait` says the wait has time left, how many matching lines there are, to wait for the
/// next.
fn page(lines: &[LogLine], earlier: usize, query: &LogQuery, wait: bool) -> Result<LogPage, usize> {
    let matching = || lines.iter().filter(|line| query.levels.accepts(line.level));
    let total_results = earlier + matching().count();
    if total_results <= query.from && wait {
        return Err(total_results);
    }
    let logs = matching()
        .skip(query.from.saturating_sub(earlier))
        .take(query.size.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    Ok(LogPage {
        logs,
        total_results,
        from: query.from,
    })
}

/// The stream category of executions.
const KIND: &str = <Execution as crate::runtime::Entity>::KIND;

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(levels: &[Level]) -> Vec<LogLine> {
        levels
            .iter()
            .enumerate()
            .map(|(n, &level)| LogLine {
                level,
                at: chrono::DateTime::from_timestamp(1_700_000_000 + n as i64, 0)
                    .expect("a valid time"),
                content: format!("line {n}"),
            })
            .collect()
    }

    fn query(from: usize, size: Option<usize>, mask: u8) -> LogQuery {
        LogQuery {
            from,
            size,
            levels: Levels::from_mask(mask),
            timeout: Duration::ZERO,
        }
    }

    fn contents(page: &LogPage) -> Vec<&str> {
        page.logs.iter().map(|line| line.content.as_str()).collect()
    }

    #[test]
    fn a_page_counts_and_offsets_the_matching_lines_only() {
        use Level::{Debug, Error, Info, Warn};
        let all = lines(&[Info, Debug, Warn, Info, Error]);
        let page = page(&all, 0, &query(1, Some(2), 0), true).expect("lines at 1");
        assert_eq!(contents(&page), ["line 2", "line 3"]);
        assert_eq!((page.total_results, page.from), (4, 1));
        let debug_only = super::page(&all, 0, &query(0, None, 1), true).expect("a debug line");
        assert_eq!(contents(&debug_only), ["line 1"]);
    }

    #[test]
    fn lines_that_came_after_earlier_ones_are_offset_by_them() {
        use Level::{Debug, Info};
        // Three matching lines came before; the new ones are the fourth and fifth.
        let new = lines(&[Debug, Info, Info]);
        let page = page(&new, 3, &query(4, None, 0), true).expect("the fifth line");
        assert_eq!(contents(&page), ["line 2"]);
        assert_eq!(page.total_results, 5);
    }

    #[test]
    fn a_mask_without_a_known_bit_wants_every_level() {
        use Level::{Debug, Error, Info, Warn};
        let all = lines(&[Info, Debug, Warn, Error]);
        for mask in [16, 32, 240] {
            let page = page(&all, 0, &query(0, None, mask), false).expect("a page");
            assert_eq!(page.total_results, 4, "{mask}");
        }
        // Unknown bits beside known ones are ignored.
        let page = page(&all, 0, &query(0, None, 16 | 8), false).expect("a page");
        assert_eq!(contents(&page), ["line 3"]);
    }

    #[test]
    fn a_cut_starts_at_the_nearest_indexed_line_before_the_page() {
        use crate::runtime::Entity;
        // 5,000 lines, every tenth an ERROR, after two events that are not lines.
        let mut state = ExecutionState {
            version: 2,
            ..ExecutionState::default()
        };
        let levels: Vec<Level> = (0..5_000)
            .map(|n| {
                if n % 10 == 9 {
                    Level::Error
                } else {
                    Level::Info
                }
            })
            .collect();
        for line in lines(&levels) {
            Execution::apply(
                &mut state,
                &crate::domain::workflow::ExecutionEvent::LogLineRecorded(line),
            );
        }
        // Lines 0, 1024, 2048, 3072, 4096 are indexed, at versions 3, 1027, ...
        let every = LogCut::of(&state, &query(2_500, Some(10), 15));
        assert_eq!(
            every,
            LogCut {
                total: 5_000,
                after: 2_050,
                before: 2_048
            }
        );
        // 500 ERROR lines; the 150th (line 1499) is after the mark of line 1024, which has
        // 102 ERROR lines before it.
        let errors = LogCut::of(&state, &query(150, Some(10), 8));
        assert_eq!(
            errors,
            LogCut {
                total: 500,
                after: 1_026,
                before: 102
            }
        );
        // Before the first mark's count, or with no line at all: from the start.
        let first = LogCut::of(&state, &query(0, None, 8));
        assert_eq!(
            first,
            LogCut {
                total: 500,
                after: 2,
                before: 0
            }
        );
        let empty = LogCut::of(&ExecutionState::default(), &query(3, None, 15));
        assert_eq!(
            empty,
            LogCut {
                total: 0,
                after: 0,
                before: 0
            }
        );
    }

    #[test]
    fn no_line_at_from_waits_unless_told_not_to() {
        let all = lines(&[Level::Info]);
        assert_eq!(page(&all, 0, &query(1, None, 0), true).err(), Some(1));
        let answered = page(&all, 0, &query(1, None, 0), false).expect("an empty page");
        assert_eq!((answered.logs.len(), answered.total_results), (0, 1));
    }
}
