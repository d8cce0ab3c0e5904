//! Test runs (the Refstack face's domain): each run is an entity opened for a cloud, whose
//! events are its opening, every status update, every uploaded result (format, parsed summary
//! and a reference to the raw upload in the blob store), and its end. Nothing here knows of
//! HTTP, reads a file or parses an upload: uploads arrive parsed and stored.

pub mod cloud;
pub mod service;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::blobs::BlobRef;
use crate::events::codec::domain_events;
use crate::runtime::entity::{Ctx, Decision, Entity};
use crate::testresults::{Format, Summary};
pub use cloud::{Cloud, CloudSpec, InvalidCloud};
pub use service::{TestRuns, TestRunsError};

/// The longest status message, in bytes.
pub const MAX_STATUS_BYTES: usize = 4096;

/// One test run.
pub struct TestRunRecord;

/// A status message: not empty (the spec's 400 "status message is empty"), at most
/// [`MAX_STATUS_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusMessage(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStatus {
    #[error("the status message is empty")]
    Empty,
    #[error("the status message is longer than {MAX_STATUS_BYTES} bytes")]
    TooLong,
}

impl StatusMessage {
    pub fn parse(raw: &str) -> Result<StatusMessage, InvalidStatus> {
        if raw.trim().is_empty() {
            Err(InvalidStatus::Empty)
        } else if raw.len() > MAX_STATUS_BYTES {
            Err(InvalidStatus::TooLong)
        } else {
            Ok(StatusMessage(raw.to_owned()))
        }
    }
}

crate::domain::string_newtype!(StatusMessage, InvalidStatus);

/// An upload, parsed and stored: what its event records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub format: Format,
    pub summary: Summary,
    /// From the stream's times, or the JSON results' `duration_seconds`.
    pub duration_seconds: Option<f64>,
    /// The raw upload in the blob store.
    pub blob: BlobRef,
}

/// One upload, as the state keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: Uuid,
    pub upload: Upload,
    pub by: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TestRunState {
    /// `None` until opened. An anonymous upload's run is opened without a cloud.
    pub opened: Option<TestRunOpened>,
    pub statuses: Vec<TestStatusUpdated>,
    pub uploads: Vec<UploadRecord>,
    #[serde(default, with = "chrono::serde::ts_microseconds_option")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl TestRunState {
    /// The opening, which what a run records after it needs.
    fn open(&self) -> Result<&TestRunOpened, TestRunRejection> {
        self.opened.as_ref().ok_or(TestRunRejection::NotOpen)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TestRunCommand {
    /// Opens the run for a cloud, or anonymously (`None`) for an upload without a test id.
    Open {
        cloud: Option<Cloud>,
        by: Option<String>,
    },
    /// Records a status update; `finished` ends the run (once).
    UpdateStatus {
        message: StatusMessage,
        finished: bool,
        by: Option<String>,
    },
    /// Records an upload already parsed and stored; its id comes from the command's caller.
    RecordUpload {
        upload_id: Uuid,
        upload: Upload,
        by: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TestRunRejection {
    #[error("the test run is already open")]
    AlreadyOpen,
    /// The spec's 400 "the test id does not exist".
    #[error("no such test run")]
    NotOpen,
}

domain_events! {
    #[derive(Clone, Debug, PartialEq)]
    pub enum TestRunEvent {
        TestRunOpened version 1 {
            pub cloud: Option<Cloud>,
            pub by: Option<String>,
        },
        TestStatusUpdated version 1 {
            pub message: String,
            pub finished: bool,
            pub by: Option<String>,
        },
        TestResultUploaded version 1 {
            pub upload_id: Uuid,
            pub format: Format,
            pub summary: Summary,
            pub duration_seconds: Option<f64>,
            pub blob: BlobRef,
            pub by: Option<String>,
        },
        TestRunEnded version 1 {},
    }
}

impl Entity for TestRunRecord {
    crate::entity_types!("test_run" version 1, state TestRunState,
        TestRunCommand => TestRunEvent, rejected TestRunRejection);

    fn decide(state: &TestRunState, command: &TestRunCommand, ctx: &Ctx) -> Decision<Self> {
        match command {
            TestRunCommand::Open { cloud, by } => {
                if state.opened.is_some() {
                    return Err(TestRunRejection::AlreadyOpen);
                }
                Ok(vec![TestRunEvent::TestRunOpened(TestRunOpened {
                    cloud: cloud.clone(),
                    by: by.clone(),
                    at: ctx.now,
                })])
            }
            TestRunCommand::UpdateStatus {
                message,
                finished,
                by,
            } => {
                state.open()?;
                let mut events = vec![TestRunEvent::TestStatusUpdated(TestStatusUpdated {
                    message: message.as_str().to_owned(),
                    finished: *finished,
                    by: by.clone(),
                    at: ctx.now,
                })];
                // A client that says "finished" twice ends the run once.
                if *finished && state.ended_at.is_none() {
                    events.push(TestRunEvent::TestRunEnded(TestRunEnded { at: ctx.now }));
                }
                Ok(events)
            }
            TestRunCommand::RecordUpload {
                upload_id,
                upload,
                by,
            } => {
                state.open()?;
                Ok(vec![TestRunEvent::TestResultUploaded(TestResultUploaded {
                    upload_id: *upload_id,
                    format: upload.format,
                    summary: upload.summary,
                    duration_seconds: upload.duration_seconds,
                    blob: upload.blob.clone(),
                    by: by.clone(),
                    at: ctx.now,
                })])
            }
        }
    }

    fn apply(state: &mut TestRunState, event: &TestRunEvent) {
        match event {
            TestRunEvent::TestRunOpened(e) => state.opened = Some(e.clone()),
            TestRunEvent::TestStatusUpdated(e) => state.statuses.push(e.clone()),
            TestRunEvent::TestResultUploaded(e) => state.uploads.push(UploadRecord {
                upload_id: e.upload_id,
                upload: Upload {
                    format: e.format,
                    summary: e.summary,
                    duration_seconds: e.duration_seconds,
                    blob: e.blob.clone(),
                },
                by: e.by.clone(),
                at: e.at,
            }),
            TestRunEvent::TestRunEnded(e) => state.ended_at = Some(e.at),
        }
    }
}
