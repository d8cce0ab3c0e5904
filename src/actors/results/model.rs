//! The read model of submitted results: every submission in the order the log committed them,
//! folded from the `result` category, for `GET /v1/results?page=` (newest first) and
//! `GET /v1/results/{id}`. It only reads the log.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Submission, SubmissionEvent};
use crate::actors::{Entity, Projection};
use crate::blobs::BlobRef;
use crate::events::{CodecError, DomainEvent, RecordedEvent};

/// Rows per page, as the Refstack API pages them.
pub const PAGE_SIZE: usize = 20;

pub struct ResultsModel;

/// One submission, as the queries show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRow {
    pub id: Uuid,
    pub cpid: String,
    pub duration_seconds: u64,
    pub tests: u64,
    pub blob: BlobRef,
    pub public_key: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsState {
    /// Oldest first.
    rows: Vec<ResultRow>,
    /// Each id's index in `rows`.
    index: HashMap<Uuid, usize>,
}

/// One page, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<ResultRow>,
    pub current_page: usize,
    /// At least 1, so that page 1 of nothing is a page.
    pub total_pages: usize,
}

impl Projection for ResultsModel {
    type State = ResultsState;

    fn name(&self) -> String {
        "results".into()
    }

    fn version(&self) -> u32 {
        1
    }

    fn category(&self) -> Option<String> {
        Some(Submission::KIND.into())
    }

    fn apply(&self, state: &mut ResultsState, event: &RecordedEvent) -> Result<(), CodecError> {
        let SubmissionEvent::ResultsSubmitted(e) = SubmissionEvent::from_recorded(event)?;
        // Ids are the server's UUIDs; a stream written otherwise is left out of the queries.
        let Ok(id) = Uuid::parse_str(event.stream.entity_id()) else {
            return Ok(());
        };
        if state.index.contains_key(&id) {
            return Ok(());
        }
        state.index.insert(id, state.rows.len());
        state.rows.push(ResultRow {
            id,
            cpid: e.cpid,
            duration_seconds: e.duration_seconds,
            tests: e.tests,
            blob: e.blob,
            public_key: e.public_key,
            created_at: e.at,
        });
        Ok(())
    }
}

impl ResultsState {
    /// Page `page` (from 1), newest first; past the last page, no rows.
    pub fn page(&self, page: usize) -> Page {
        let total_pages = self.rows.len().div_ceil(PAGE_SIZE).max(1);
        let rows = self
            .rows
            .iter()
            .rev()
            .skip(page.saturating_sub(1).saturating_mul(PAGE_SIZE))
            .take(PAGE_SIZE)
            .cloned()
            .collect();
        Page {
            rows,
            current_page: page,
            total_pages,
        }
    }

    pub fn get(&self, id: &Uuid) -> Option<&ResultRow> {
        self.index.get(id).and_then(|i| self.rows.get(*i))
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
