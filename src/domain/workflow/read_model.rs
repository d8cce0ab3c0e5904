//! The read model of executions: one row per execution (workflow, status, who asked, when),
//! folded from the `execution` category, for `GET /executions` filtered by workflow and status,
//! newest first. Log lines are skipped by their type without being decoded. It only reads the
//! log.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Execution, ExecutionEvent, Status};
use crate::events::{CodecError, DomainEvent, RecordedEvent};
use crate::runtime::Projection;

/// The most rows one page holds.
pub const MAX_PAGE: usize = 1000;

pub struct ExecutionsModel;

/// One execution, as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionRow {
    pub id: String,
    pub workflow: String,
    pub status: Status,
    pub by: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub requested_at: DateTime<Utc>,
    #[serde(default, with = "chrono::serde::ts_microseconds_option")]
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionsState {
    /// Oldest first.
    rows: Vec<ExecutionRow>,
    index: HashMap<String, usize>,
}

/// What a list asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    pub workflow: Option<String>,
    pub status: Option<Status>,
    /// Rows skipped, newest first.
    pub offset: usize,
    pub limit: usize,
}

/// One page of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionsPage {
    pub rows: Vec<ExecutionRow>,
    /// Every row the filter matches.
    pub total: usize,
}

impl Projection for ExecutionsModel {
    crate::domain::read_model_of!(Execution, "executions", version 1, state ExecutionsState);

    fn apply(&self, state: &mut ExecutionsState, event: &RecordedEvent) -> Result<(), CodecError> {
        // Lines are most of an execution's events and change nothing here.
        if matches!(
            event.event_type.as_str(),
            "LogLineRecorded" | "LogLinesDropped" | "StepStarted" | "StepEnded" | "OutputsRecorded"
        ) {
            return Ok(());
        }
        let id = event.stream.entity_id();
        let row = state.index.get(id).copied();
        match ExecutionEvent::from_recorded(event)? {
            ExecutionEvent::ExecutionRequested(e) => {
                if row.is_none() {
                    state.index.insert(id.to_owned(), state.rows.len());
                    state.rows.push(ExecutionRow {
                        id: id.to_owned(),
                        workflow: e.workflow,
                        status: Status::Running,
                        by: e.by,
                        requested_at: e.at,
                        ended_at: None,
                    });
                }
            }
            other => {
                let Some(row) = row.and_then(|i| state.rows.get_mut(i)) else {
                    return Ok(());
                };
                match other {
                    ExecutionEvent::CancelRequested(_) => row.status = Status::Cancelling,
                    ExecutionEvent::ExecutionSucceeded(e) => {
                        row.status = Status::Success;
                        row.ended_at = Some(e.at);
                    }
                    ExecutionEvent::ExecutionFailed(e) => {
                        row.status = Status::Failed;
                        row.ended_at = Some(e.at);
                    }
                    ExecutionEvent::ExecutionCancelled(e) => {
                        row.status = Status::Cancelled;
                        row.ended_at = Some(e.at);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl ExecutionsState {
    /// The rows matching `query`, newest first.
    pub fn list(&self, query: &ListQuery) -> ExecutionsPage {
        let matching = self.rows.iter().rev().filter(|row| {
            query.workflow.as_deref().is_none_or(|w| row.workflow == w)
                && query.status.is_none_or(|s| row.status == s)
        });
        let mut total = 0;
        let mut rows = Vec::new();
        for row in matching {
            if total >= query.offset && rows.len() < query.limit {
                rows.push(row.clone());
            }
            total += 1;
        }
        ExecutionsPage { rows, total }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
