//! The read model of submitted results: every submission in the order the log committed them,
//! folded from the `result` category, for `GET /v1/results?page=` (newest first, filtered as
//! the later Refstack API filters) and `GET /v1/results/{id}`. It only reads the log.

use std::collections::HashMap;
use std::num::NonZeroU64;

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Submission, SubmissionEvent, Submitted};
use crate::events::{CodecError, DomainEvent, RecordedEvent};
use crate::runtime::Projection;

/// Rows per page, as the Refstack API pages them.
pub const PAGE_SIZE: usize = 20;

pub struct ResultsModel;

/// One submission, as the queries show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRow {
    pub id: Uuid,
    /// What it says; stored flat, beside `id` and `created_at`.
    #[serde(flatten)]
    pub submitted: Submitted,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub created_at: DateTime<Utc>,
}

/// Which submissions a page is taken from, as the later Refstack API filters them: every bound
/// is inclusive and compared at the second, the precision its times are shown with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultsFilter {
    /// Only this cloud's.
    pub cpid: Option<String>,
    /// Only those submitted at or after this time (UTC).
    pub start: Option<NaiveDateTime>,
    /// Only those submitted at or before this time (UTC).
    pub end: Option<NaiveDateTime>,
    pub visibility: Visibility,
}

/// Whose submissions are listed. As upstream, a signed submission belongs to its signer and is
/// left out of the public list (upstream lists it once shared; nothing is shared here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Visibility {
    /// The unsigned submissions.
    #[default]
    Unsigned,
    /// The signed submissions of this account.
    SignedBy(String),
}

impl ResultsFilter {
    fn admits(&self, row: &ResultRow) -> bool {
        let at = row.created_at.naive_utc().trunc_subsecs(0);
        let submitted = &row.submitted;
        let visible = match &self.visibility {
            Visibility::Unsigned => submitted.public_key.is_none(),
            Visibility::SignedBy(account) => {
                submitted.public_key.is_some() && submitted.by.as_deref() == Some(account.as_str())
            }
        };
        visible
            && self
                .cpid
                .as_ref()
                .is_none_or(|cpid| *cpid == submitted.cpid)
            && self.start.is_none_or(|start| at >= start)
            && self.end.is_none_or(|end| at <= end)
    }
}

/// A page asked for that is past the last page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Invalid page number: The page number is greater than the total number of pages.")]
pub struct PastLastPage;

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
    // 2: rows hold who submitted them.
    crate::domain::read_model_of!(Submission, "results", version 2, state ResultsState);

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
            submitted: e.submitted,
            created_at: e.at,
        });
        Ok(())
    }
}

impl ResultsState {
    /// Page `page` (from 1) of the submissions `filter` admits, newest first. Page 1 always
    /// exists; a page past the last is refused, as upstream refuses it.
    pub fn page(&self, page: NonZeroU64, filter: &ResultsFilter) -> Result<Page, PastLastPage> {
        // One pass over the rows: every admitted one is counted, and the page's are kept.
        let first = usize::try_from(page.get() - 1)
            .map_or(usize::MAX, |before| before.saturating_mul(PAGE_SIZE));
        let mut rows = Vec::new();
        let mut admitted = 0;
        for row in self.rows.iter().rev().filter(|row| filter.admits(row)) {
            if admitted >= first && rows.len() < PAGE_SIZE {
                rows.push(row.clone());
            }
            admitted += 1;
        }
        let total_pages = admitted.div_ceil(PAGE_SIZE).max(1);
        let current_page = usize::try_from(page.get())
            .ok()
            .filter(|page| *page <= total_pages)
            .ok_or(PastLastPage)?;
        Ok(Page {
            rows,
            current_page,
            total_pages,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blobs::{BlobHash, BlobRef};

    fn row(n: u128, cpid: &str, seconds: i64, signer: Option<(&str, &str)>) -> ResultRow {
        ResultRow {
            id: Uuid::from_u128(n),
            submitted: Submitted {
                cpid: cpid.into(),
                duration_seconds: 1,
                tests: 1,
                blob: BlobRef {
                    sha256: BlobHash::of(b""),
                    size: 0,
                },
                public_key: signer.map(|(key, _)| key.into()),
                by: signer.map(|(_, by)| by.into()),
            },
            // A fraction of a second past each whole second.
            created_at: DateTime::from_timestamp(seconds, 900_000_000).unwrap(),
        }
    }

    fn state(rows: Vec<ResultRow>) -> ResultsState {
        let index = rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
        ResultsState { rows, index }
    }

    fn ids(state: &ResultsState, page: u64, filter: &ResultsFilter) -> Vec<u128> {
        let page = state.page(NonZeroU64::new(page).unwrap(), filter).unwrap();
        page.rows.iter().map(|row| row.id.as_u128()).collect()
    }

    fn at(seconds: i64) -> Option<NaiveDateTime> {
        DateTime::from_timestamp(seconds, 0).map(|t| t.naive_utc())
    }

    #[test]
    fn bounds_are_inclusive_at_the_second_shown() {
        let state = state(vec![row(1, "a", 10, None), row(2, "b", 20, None)]);
        let filter = |start, end| ResultsFilter {
            start: at(start),
            end: at(end),
            ..ResultsFilter::default()
        };
        assert_eq!(ids(&state, 1, &filter(10, 20)), [2, 1]);
        assert_eq!(ids(&state, 1, &filter(20, 20)), [2]);
        assert_eq!(ids(&state, 1, &filter(11, 19)), Vec::<u128>::new());
        let cpid = ResultsFilter {
            cpid: Some("a".into()),
            ..ResultsFilter::default()
        };
        assert_eq!(ids(&state, 1, &cpid), [1]);
    }

    #[test]
    fn signed_rows_are_their_submitters_alone() {
        let state = state(vec![
            row(1, "a", 1, None),
            row(2, "a", 2, Some(("ssh-rsa k", "ada"))),
            row(3, "a", 3, Some(("ssh-rsa k", "bob"))),
        ]);
        assert_eq!(ids(&state, 1, &ResultsFilter::default()), [1]);
        let ada = ResultsFilter {
            visibility: Visibility::SignedBy("ada".into()),
            ..ResultsFilter::default()
        };
        assert_eq!(ids(&state, 1, &ada), [2]);
    }

    #[test]
    fn page_one_always_exists_and_a_page_past_the_last_is_refused() {
        let empty = state(Vec::new());
        let page = empty
            .page(NonZeroU64::MIN, &ResultsFilter::default())
            .unwrap();
        assert_eq!((page.rows.len(), page.total_pages), (0, 1));
        let two = NonZeroU64::new(2).unwrap();
        assert_eq!(
            empty.page(two, &ResultsFilter::default()),
            Err(PastLastPage)
        );
        let full = state(
            (0..=PAGE_SIZE as u128)
                .map(|n| row(n, "a", n as i64, None))
                .collect(),
        );
        assert_eq!(ids(&full, 2, &ResultsFilter::default()), [0]);
        assert_eq!(
            full.page(NonZeroU64::MAX, &ResultsFilter::default()),
            Err(PastLastPage)
        );
    }

    /// A row, as the read model's checkpoint stores it, stays one flat map of named fields:
    /// `id`, the submission's fields, `created_at`.
    #[test]
    fn a_stored_row_is_one_flat_map() {
        use crate::domain::results::tests::{flat_map, named, submitted, submitted_entries};
        let created_at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let row = ResultRow {
            id: Uuid::from_u128(7),
            submitted: submitted(),
            created_at,
        };
        let mut entries = vec![("id", named(&row.id))];
        entries.extend(submitted_entries(&row.submitted));
        entries.push(("created_at", named(&created_at.timestamp_micros())));
        let expected = flat_map(&entries);
        assert_eq!(named(&row), expected);
        assert_eq!(rmp_serde::from_slice::<ResultRow>(&expected).unwrap(), row);
    }
}
