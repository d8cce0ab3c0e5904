//! Workflow executions (the HPCWaaS face's domain): each execution is an entity whose events are
//! its request (workflow, inputs, user), each step's start and end, every log line, the outputs,
//! a cancellation request and its end (success, failure with a reason, cancellation). Nothing
//! here knows of HTTP or runs a program: `effects.rs` runs the steps and reports back through
//! commands.

pub mod catalogue;
pub mod effects;
pub mod read_model;
pub mod service;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::codec::domain_events;
use crate::process::supervised::{Offsets, Supervision};
use crate::runtime::entity::{Ctx, Decision, Entity};
pub use catalogue::{Catalogue, InputKind, Workflow, WorkflowId, WorkflowSpec};
pub use service::{Executions, ExecutionsError};

/// One execution.
pub struct Execution;

/// A log line's level, as the HPCWaaS API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    #[serde(rename = "DEBUG")]
    Debug,
    #[serde(rename = "INFO")]
    Info,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "ERROR")]
    Error,
}

impl Level {
    /// Every level, in the order of [`ExecutionState::lines_by_level`].
    pub const ALL: [Level; 4] = [Level::Debug, Level::Info, Level::Warn, Level::Error];

    /// Its place in [`Level::ALL`].
    pub fn slot(self) -> usize {
        match self {
            Level::Debug => 0,
            Level::Info => 1,
            Level::Warn => 2,
            Level::Error => 3,
        }
    }

    /// Its bit in the API's `levels` mask: DEBUG=1, INFO=2, WARN=4, ERROR=8.
    pub fn bit(self) -> u8 {
        match self {
            Level::Debug => 1,
            Level::Info => 2,
            Level::Warn => 4,
            Level::Error => 8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// The status of an execution, as the HPCWaaS API spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    #[serde(rename = "RUNNING")]
    Running,
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "CANCELLING")]
    Cancelling,
    #[serde(rename = "CANCELLED")]
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
            Status::Cancelling => "CANCELLING",
            Status::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(raw: &str) -> Option<Status> {
        [
            Status::Running,
            Status::Success,
            Status::Failed,
            Status::Cancelling,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str().eq_ignore_ascii_case(raw))
    }

    /// Whether nothing more will happen to the execution.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Success | Status::Failed | Status::Cancelled)
    }
}

/// One line of a step's output (or of the runner), as it is kept and served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: Level,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub content: String,
}

/// What the request recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    pub workflow: String,
    pub inputs: BTreeMap<String, String>,
    pub by: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

/// One step, as the state keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: u32,
    pub name: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub started_at: DateTime<Utc>,
    pub ended: Option<StepEnded>,
}

/// The step running under a supervisor, and how far its output was recorded: what a restart
/// re-attaches to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRun {
    pub index: u32,
    pub supervision: Supervision,
    /// Where each output stream goes on after the last recorded line.
    pub read: Offsets,
}

/// Every this many kept lines, the state notes where the next one is in the stream: a page of
/// the log reads at most this many lines before its first.
pub const LOG_INDEX_STEP: u64 = 1024;

/// Where a kept line is in the execution's stream, and how many of each level came before it:
/// where a page of the log starts reading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogMark {
    /// The stream version of the line's event.
    pub version: u64,
    /// The kept lines before it, by level, in [`Level::ALL`] order.
    pub before: [u64; 4],
}

/// What `decide` and the status need of an execution. Its lines stay in its stream (one
/// `LogLineRecorded` event each): the state keeps their counts and a sparse index of them, so
/// that it, its snapshot and a status read cost the same at 10 lines and at 100,000.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionState {
    /// The stream's version as folded (each event counts one): where each indexed line is.
    pub version: u64,
    /// `None` until requested.
    pub requested: Option<Requested>,
    pub status: Option<Status>,
    pub steps: Vec<StepRecord>,
    /// How many lines were kept.
    pub lines: u64,
    /// The kept lines by level, in [`Level::ALL`] order: a page's total without its lines.
    pub lines_by_level: [u64; 4],
    /// The first kept line and every [`LOG_INDEX_STEP`]-th after it.
    pub log_index: Vec<LogMark>,
    /// Lines not kept because the execution had reached its limit.
    pub dropped_lines: u64,
    pub outputs: BTreeMap<String, String>,
    /// Why it failed, or who cancelled it.
    pub reason: Option<String>,
    #[serde(default, with = "chrono::serde::ts_microseconds_option")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The running step's supervised run, until the step ends.
    #[serde(default)]
    pub run: Option<StepRun>,
}

/// How an execution ended, as the runner reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Success,
    Failed { reason: String },
    Cancelled,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExecutionCommand {
    /// Records a trigger; the inputs are already checked against the workflow.
    Request {
        workflow: WorkflowId,
        inputs: BTreeMap<String, String>,
        by: Option<String>,
    },
    StartStep {
        index: u32,
        name: String,
    },
    /// The running step's program started under its supervisor.
    SuperviseStep {
        index: u32,
        run: Supervision,
    },
    /// Records lines as they arrived; past `max_lines` kept lines, the rest are only counted.
    /// `read`: where the running step's output goes on after these lines, recorded with them.
    RecordLines {
        lines: Vec<LogLine>,
        max_lines: usize,
        read: Option<Offsets>,
    },
    /// Counts lines the runner did not send once the execution was full: one event for all
    /// of a step's, instead of one per batch.
    CountDroppedLines {
        count: u64,
    },
    EndStep {
        index: u32,
        ended: StepEnded,
    },
    RecordOutputs {
        outputs: BTreeMap<String, String>,
    },
    /// A client asks for the execution to stop.
    Cancel {
        by: Option<String>,
    },
    Finish(Ending),
    /// Settles an execution whose runner died with the previous process.
    MarkInterrupted,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionRejection {
    #[error("the execution was already requested")]
    AlreadyRequested,
    #[error("no such execution")]
    NotFound,
    #[error("the execution has ended")]
    Ended,
    #[error("step {0} is not the one running")]
    WrongStep(u32),
}

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum ExecutionEvent {
        ExecutionRequested(Requested) version 1,
        StepStarted version 1 {
            pub index: u32,
            pub name: String,
        },
        /// The step's program runs under a supervisor: where, so that a restart finds it.
        StepSupervised version 1 {
            pub index: u32,
            pub run: Supervision,
        },
        LogLineRecorded(LogLine) version 1,
        /// How far the running step's output was read: recorded with the lines read up to there.
        StepOutputRead version 1 {
            pub index: u32,
            pub read: Offsets,
        },
        LogLinesDropped(LogLinesDropped) version 1,
        StepEnded(StepEndedEvent) version 1,
        OutputsRecorded(OutputsRecorded) version 1,
        CancelRequested version 1 {
            pub by: Option<String>,
        },
        ExecutionSucceeded(EndedAt) version 1,
        ExecutionFailed version 1 {
            pub reason: String,
        },
        ExecutionCancelled(EndedAt) version 1,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLinesDropped {
    pub count: u64,
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEnded {
    /// `None` when a signal ended it (or it never started).
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub cancelled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEndedEvent {
    pub index: u32,
    pub ended: StepEnded,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputsRecorded {
    pub outputs: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndedAt {
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

/// The line recorded when an execution is settled after a restart.
pub const INTERRUPTED: &str = "interrupted: annals stopped while the execution was running";
/// How the line recorded at a failure starts; the reason follows.
pub const FAILED: &str = "failed";
/// The line recorded at a cancellation when no one is named as having asked for it.
pub const CANCELLED: &str = "cancelled";

impl ExecutionState {
    /// The state without its log index, for a status read, which needs none of it.
    pub fn without_log_index(&self) -> ExecutionState {
        ExecutionState {
            version: self.version,
            requested: self.requested.clone(),
            status: self.status,
            steps: self.steps.clone(),
            lines: self.lines,
            lines_by_level: self.lines_by_level,
            log_index: Vec::new(),
            dropped_lines: self.dropped_lines,
            outputs: self.outputs.clone(),
            reason: self.reason.clone(),
            ended_at: self.ended_at,
            run: self.run.clone(),
        }
    }

    /// Refuses unless step `index` is the one running.
    fn running_step(&self, index: u32) -> Result<(), ExecutionRejection> {
        match self.steps.last() {
            Some(step) if step.index == index && step.ended.is_none() => Ok(()),
            _ => Err(ExecutionRejection::WrongStep(index)),
        }
    }

    fn live(&self) -> Result<Status, ExecutionRejection> {
        match self.status {
            None => Err(ExecutionRejection::NotFound),
            Some(status) if status.is_final() => Err(ExecutionRejection::Ended),
            Some(status) => Ok(status),
        }
    }
}

impl Entity for Execution {
    // Version 2: the state keeps the running step's supervised run. 3: it keeps counts and an
    // index of the lines instead of the lines.
    crate::entity_types!("execution" version 3, state ExecutionState,
        ExecutionCommand => ExecutionEvent, rejected ExecutionRejection);

    fn decide(state: &ExecutionState, command: &ExecutionCommand, ctx: &Ctx) -> Decision<Self> {
        let now = ctx.now;
        match command {
            ExecutionCommand::Request {
                workflow,
                inputs,
                by,
            } => {
                if state.requested.is_some() {
                    return Err(ExecutionRejection::AlreadyRequested);
                }
                Ok(vec![ExecutionEvent::ExecutionRequested(Requested {
                    workflow: workflow.as_str().to_owned(),
                    inputs: inputs.clone(),
                    by: by.clone(),
                    at: now,
                })])
            }
            ExecutionCommand::StartStep { index, name } => {
                state.live()?;
                Ok(vec![ExecutionEvent::StepStarted(StepStarted {
                    index: *index,
                    name: name.clone(),
                    at: now,
                })])
            }
            ExecutionCommand::SuperviseStep { index, run } => {
                state.live()?;
                state.running_step(*index)?;
                Ok(vec![ExecutionEvent::StepSupervised(StepSupervised {
                    index: *index,
                    run: run.clone(),
                    at: now,
                })])
            }
            ExecutionCommand::RecordLines {
                lines,
                max_lines,
                read,
            } => {
                state.live()?;
                let kept = usize::try_from(state.lines).unwrap_or(usize::MAX);
                let room = max_lines.saturating_sub(kept);
                let mut events: Vec<ExecutionEvent> = lines
                    .iter()
                    .take(room)
                    .cloned()
                    .map(ExecutionEvent::LogLineRecorded)
                    .collect();
                let dropped = lines.len().saturating_sub(room) as u64;
                if dropped > 0 {
                    events.push(ExecutionEvent::LogLinesDropped(LogLinesDropped {
                        count: dropped,
                    }));
                }
                if let (Some(read), Some(run)) = (read, &state.run) {
                    events.push(ExecutionEvent::StepOutputRead(StepOutputRead {
                        index: run.index,
                        read: *read,
                        at: now,
                    }));
                }
                Ok(events)
            }
            ExecutionCommand::CountDroppedLines { count } => {
                state.live()?;
                if *count == 0 {
                    return Ok(Vec::new());
                }
                Ok(vec![ExecutionEvent::LogLinesDropped(LogLinesDropped {
                    count: *count,
                })])
            }
            ExecutionCommand::EndStep { index, ended } => {
                state.live()?;
                state.running_step(*index)?;
                Ok(vec![ExecutionEvent::StepEnded(StepEndedEvent {
                    index: *index,
                    ended: ended.clone(),
                    at: now,
                })])
            }
            ExecutionCommand::RecordOutputs { outputs } => {
                state.live()?;
                if outputs.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(vec![ExecutionEvent::OutputsRecorded(OutputsRecorded {
                    outputs: outputs.clone(),
                })])
            }
            ExecutionCommand::Cancel { by } => match state.status {
                None => Err(ExecutionRejection::NotFound),
                // Cancelling twice, or after the end, changes nothing and is no error for
                // the client.
                Some(Status::Running) => {
                    Ok(vec![ExecutionEvent::CancelRequested(CancelRequested {
                        by: by.clone(),
                        at: now,
                    })])
                }
                Some(_) => Ok(Vec::new()),
            },
            // A failure or a cancellation ends with a line saying so, as an interrupted
            // execution does: a client that follows only the log learns how it ended.
            ExecutionCommand::Finish(ending) => {
                state.live()?;
                let at = now;
                let line = |level, content: String| {
                    ExecutionEvent::LogLineRecorded(LogLine { level, at, content })
                };
                Ok(match ending {
                    Ending::Success => vec![ExecutionEvent::ExecutionSucceeded(EndedAt { at })],
                    Ending::Failed { reason } => vec![
                        line(Level::Error, format!("{FAILED}: {reason}")),
                        ExecutionEvent::ExecutionFailed(ExecutionFailed {
                            reason: reason.clone(),
                            at,
                        }),
                    ],
                    Ending::Cancelled => vec![
                        line(
                            Level::Warn,
                            state.reason.clone().unwrap_or_else(|| CANCELLED.into()),
                        ),
                        ExecutionEvent::ExecutionCancelled(EndedAt { at }),
                    ],
                })
            }
            ExecutionCommand::MarkInterrupted => {
                let status = state.live()?;
                let line = ExecutionEvent::LogLineRecorded(LogLine {
                    level: Level::Error,
                    at: now,
                    content: INTERRUPTED.into(),
                });
                // A cancellation already asked for is what the client wanted: the run is
                // stopped either way.
                let end = if status == Status::Cancelling {
                    ExecutionEvent::ExecutionCancelled(EndedAt { at: now })
                } else {
                    ExecutionEvent::ExecutionFailed(ExecutionFailed {
                        reason: "interrupted".into(),
                        at: now,
                    })
                };
                Ok(vec![line, end])
            }
        }
    }

    fn apply(state: &mut ExecutionState, event: &ExecutionEvent) {
        state.version += 1;
        match event {
            ExecutionEvent::ExecutionRequested(e) => {
                state.requested = Some(e.clone());
                state.status = Some(Status::Running);
            }
            ExecutionEvent::StepStarted(e) => state.steps.push(StepRecord {
                index: e.index,
                name: e.name.clone(),
                started_at: e.at,
                ended: None,
            }),
            ExecutionEvent::StepSupervised(e) => {
                state.run = Some(StepRun {
                    index: e.index,
                    supervision: e.run.clone(),
                    read: Offsets::default(),
                });
            }
            ExecutionEvent::StepOutputRead(e) => {
                if let Some(run) = state.run.as_mut().filter(|run| run.index == e.index) {
                    run.read = e.read;
                }
            }
            ExecutionEvent::LogLineRecorded(line) => {
                if state.lines % LOG_INDEX_STEP == 0 {
                    state.log_index.push(LogMark {
                        version: state.version,
                        before: state.lines_by_level,
                    });
                }
                state.lines += 1;
                state.lines_by_level[line.level.slot()] += 1;
            }
            ExecutionEvent::LogLinesDropped(e) => state.dropped_lines += e.count,
            ExecutionEvent::StepEnded(e) => {
                if state.run.as_ref().is_some_and(|run| run.index == e.index) {
                    state.run = None;
                }
                if let Some(step) = state.steps.iter_mut().rev().find(|s| s.index == e.index) {
                    step.ended = Some(e.ended.clone());
                }
            }
            ExecutionEvent::OutputsRecorded(e) => {
                state
                    .outputs
                    .extend(e.outputs.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            ExecutionEvent::CancelRequested(e) => {
                state.status = Some(Status::Cancelling);
                state.reason = Some(match &e.by {
                    Some(user) => format!("cancelled by {user}"),
                    None => "cancelled".into(),
                });
            }
            ExecutionEvent::ExecutionSucceeded(e) => {
                state.status = Some(Status::Success);
                state.ended_at = Some(e.at);
            }
            ExecutionEvent::ExecutionFailed(e) => {
                state.status = Some(Status::Failed);
                state.reason = Some(e.reason.clone());
                state.ended_at = Some(e.at);
            }
            ExecutionEvent::ExecutionCancelled(e) => {
                state.status = Some(Status::Cancelled);
                state.ended_at = Some(e.at);
            }
        }
    }

    fn in_progress(event: &ExecutionEvent) -> Option<bool> {
        match event {
            ExecutionEvent::ExecutionRequested(_) => Some(true),
            ExecutionEvent::ExecutionSucceeded(_)
            | ExecutionEvent::ExecutionFailed(_)
            | ExecutionEvent::ExecutionCancelled(_) => Some(false),
            _ => None,
        }
    }

    fn on_restart(state: &ExecutionState) -> Option<ExecutionCommand> {
        state
            .status
            .filter(|status| !status.is_final())
            .map(|_| ExecutionCommand::MarkInterrupted)
    }
}
