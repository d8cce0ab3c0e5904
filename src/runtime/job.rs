//! `job`, the reference entity: a named piece of work that starts, records output lines and ends.
//! It exercises every part of the machinery (rules, upcasting, work in progress, restart
//! settling) and is what `annals load` and the benchmarks write. Faces define their own kinds.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::entity::{Ctx, Decision, Entity};
use crate::events::codec::domain_events;

/// The longest output line a job records, in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

pub struct Job;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    #[default]
    New,
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub status: JobStatus,
    pub name: String,
    pub lines: u64,
    pub last_line: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobCommand {
    Start { name: String },
    RecordLine { line: String, level: Level },
    Finish { succeeded: bool },
    MarkInterrupted,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JobRejection {
    #[error("a job needs a name")]
    EmptyName,
    #[error("the job has already started")]
    AlreadyStarted,
    #[error("the job is {0:?}, not running")]
    NotRunning(JobStatus),
    #[error("a line of {0} bytes is over the limit of {MAX_LINE_BYTES}")]
    LineTooLong(usize),
}

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum JobEvent {
        JobStarted version 1 {
            pub name: String,
        },
        /// `LineRecorded` v2. Version 1 had only `text`; see [`LineRecordedV1`].
        LineRecorded version 2 upcasts { 1 => LineRecordedV1 } {
            pub line: String,
            pub level: Level,
        },
        JobFinished version 1 {
            pub succeeded: bool,
        },
        JobInterrupted version 1 {},
    }
}

/// `LineRecorded` v1, read as v2 through its `From` conversion. Its time was an RFC 3339
/// string; v2 stores microseconds, as every current payload does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRecordedV1 {
    pub text: String,
    pub at: DateTime<Utc>,
}

impl From<LineRecordedV1> for LineRecorded {
    /// v1 lines had no level; they were all ordinary output.
    fn from(v1: LineRecordedV1) -> LineRecorded {
        LineRecorded {
            line: v1.text,
            level: Level::Info,
            at: v1.at,
        }
    }
}

impl Entity for Job {
    crate::entity_types!("job" version 1, state JobState,
        JobCommand => JobEvent, rejected JobRejection);

    fn decide(state: &JobState, command: &JobCommand, ctx: &Ctx) -> Decision<Self> {
        let running = || match state.status {
            JobStatus::Running => Ok(()),
            other => Err(JobRejection::NotRunning(other)),
        };
        let event = match command {
            JobCommand::Start { name } => {
                if state.status != JobStatus::New {
                    return Err(JobRejection::AlreadyStarted);
                }
                if name.trim().is_empty() {
                    return Err(JobRejection::EmptyName);
                }
                JobEvent::JobStarted(JobStarted {
                    name: name.clone(),
                    at: ctx.now,
                })
            }
            JobCommand::RecordLine { line, level } => {
                running()?;
                if line.len() > MAX_LINE_BYTES {
                    return Err(JobRejection::LineTooLong(line.len()));
                }
                JobEvent::LineRecorded(LineRecorded {
                    line: line.clone(),
                    level: *level,
                    at: ctx.now,
                })
            }
            JobCommand::Finish { succeeded } => {
                running()?;
                JobEvent::JobFinished(JobFinished {
                    succeeded: *succeeded,
                    at: ctx.now,
                })
            }
            JobCommand::MarkInterrupted => {
                running()?;
                JobEvent::JobInterrupted(JobInterrupted { at: ctx.now })
            }
        };
        Ok(vec![event])
    }

    fn apply(state: &mut JobState, event: &JobEvent) {
        match event {
            JobEvent::JobStarted(e) => {
                state.status = JobStatus::Running;
                state.name = e.name.clone();
                state.started_at = Some(e.at);
            }
            JobEvent::LineRecorded(e) => {
                state.lines += 1;
                state.last_line = Some(e.line.clone());
            }
            JobEvent::JobFinished(e) => {
                state.status = if e.succeeded {
                    JobStatus::Succeeded
                } else {
                    JobStatus::Failed
                };
                state.ended_at = Some(e.at);
            }
            JobEvent::JobInterrupted(e) => {
                state.status = JobStatus::Interrupted;
                state.ended_at = Some(e.at);
            }
        }
    }

    fn in_progress(event: &JobEvent) -> Option<bool> {
        match event {
            JobEvent::JobStarted(_) => Some(true),
            JobEvent::JobFinished(_) | JobEvent::JobInterrupted(_) => Some(false),
            JobEvent::LineRecorded(_) => None,
        }
    }

    fn on_restart(state: &JobState) -> Option<JobCommand> {
        (state.status == JobStatus::Running).then_some(JobCommand::MarkInterrupted)
    }
}
