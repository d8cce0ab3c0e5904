//! The test runs' commands and queries, what the Refstack face's transport calls once per
//! request: open a run, update its status, take an upload (parsed within limits, stored in the
//! blob store, then recorded on its run), read a run and an upload's raw bytes or tests back. Parsing
//! and file I/O run on the blocking pool. It holds no state of its own.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    Cloud, StatusMessage, TestRunCommand, TestRunRecord, TestRunRejection, TestRunState, Upload,
};
use crate::blobs::{BlobError, BlobHash, BlobStore};
use crate::domain::Core;
use crate::events::Metadata;
use crate::runtime::blocking::{blocking, cpu_bound, Stopped};
use crate::runtime::{Clock, CommandError, Entities};
use crate::testresults::{self, Limits, ParseError, TestRun};

#[derive(Debug, thiserror::Error)]
pub enum TestRunsError {
    /// The id is no test run's (also when it is not a UUID at all).
    #[error("Invalid test ID")]
    UnknownRun,
    #[error("the upload cannot be read: {0}")]
    Unparseable(#[from] ParseError),
    #[error(transparent)]
    Rejected(TestRunRejection),
    #[error("no upload {0} in this test run")]
    UnknownUpload(Uuid),
    /// The log, an actor or the blob store failed: nothing was acknowledged.
    #[error("not recorded: {0}")]
    NotRecorded(#[source] CommandError<TestRunRejection>),
    /// The blocking pool dropped the work: nothing was acknowledged.
    #[error("not recorded: {0}")]
    Stopped(#[from] Stopped),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl From<CommandError<TestRunRejection>> for TestRunsError {
    fn from(error: CommandError<TestRunRejection>) -> Self {
        match error {
            CommandError::Rejected(TestRunRejection::NotOpen) => TestRunsError::UnknownRun,
            CommandError::Rejected(rejection) => TestRunsError::Rejected(rejection),
            other => TestRunsError::NotRecorded(other),
        }
    }
}

/// What an accepted upload gave.
#[derive(Debug)]
pub struct Accepted {
    /// The run it was recorded on: the one named, or a new anonymous one.
    pub test_id: Uuid,
    pub upload_id: Uuid,
    pub run: TestRun,
}

/// The test runs of one server. Cheap to clone.
#[derive(Clone)]
pub struct TestRuns {
    runs: Entities<TestRunRecord>,
    blobs: BlobStore,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

/// A client's test id: a run's UUID, or nothing known.
pub fn parse_test_id(raw: &str) -> Result<Uuid, TestRunsError> {
    Uuid::parse_str(raw.trim()).map_err(|_| TestRunsError::UnknownRun)
}

impl TestRuns {
    /// Starts the run directory on the current actix system.
    pub fn start(core: &Core, blobs: BlobStore, limits: Limits) -> TestRuns {
        TestRuns {
            runs: core.entities(),
            blobs,
            clock: core.clock.clone(),
            limits,
        }
    }

    /// Opens a run for `cloud` (`None`: anonymous) and returns its test id.
    pub async fn open(
        &self,
        cloud: Option<Cloud>,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<Uuid, TestRunsError> {
        let id = self.clock.new_id();
        self.runs
            .execute(
                &id.to_string(),
                TestRunCommand::Open { cloud, by },
                metadata,
            )
            .await?;
        Ok(id)
    }

    pub async fn update_status(
        &self,
        test_id: Uuid,
        message: StatusMessage,
        finished: bool,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<(), TestRunsError> {
        let command = TestRunCommand::UpdateStatus {
            message,
            finished,
            by,
        };
        self.runs
            .execute(&test_id.to_string(), command, metadata)
            .await?;
        Ok(())
    }

    /// A run's state; [`TestRunsError::UnknownRun`] when it was never opened.
    pub async fn get(&self, test_id: Uuid) -> Result<TestRunState, TestRunsError> {
        let (_, state) = self
            .runs
            .state(&test_id.to_string())
            .await
            .map_err(TestRunsError::from)?;
        if state.opened.is_none() {
            return Err(TestRunsError::UnknownRun);
        }
        Ok(state)
    }

    /// Takes an upload: checks the run exists, parses the bytes (an unparseable upload is
    /// refused before anything is stored), stores them, and records the upload on the run
    /// named, or on a new anonymous run.
    pub async fn upload(
        &self,
        test_id: Option<Uuid>,
        bytes: actix_web::web::Bytes,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<Accepted, TestRunsError> {
        if let Some(id) = test_id {
            self.get(id).await?;
        }
        let (blobs, limits) = (self.blobs.clone(), self.limits.clone());
        let (run, blob) = cpu_bound(move || -> Result<_, TestRunsError> {
            let run = testresults::parse(&bytes, &limits)?;
            let blob = blobs.put(&bytes)?;
            Ok((run, blob))
        })
        .await??;
        let test_id = match test_id {
            Some(id) => id,
            None => self.open(None, by.clone(), metadata.clone()).await?,
        };
        let upload_id = self.clock.new_id();
        let command = TestRunCommand::RecordUpload {
            upload_id,
            upload: Upload {
                format: run.format,
                summary: run.summary,
                duration_seconds: run.duration_seconds,
                blob,
            },
            by,
        };
        self.runs
            .execute(&test_id.to_string(), command, metadata)
            .await?;
        Ok(Accepted {
            test_id,
            upload_id,
            run,
        })
    }

    /// The tests of an upload of a run, read again from its stored bytes on the blocking pool
    /// under the face's limits: each test's id, bucket, outcome and duration, whichever format
    /// it came in (subunit keeps no names anywhere else).
    pub async fn upload_tests(
        &self,
        test_id: Uuid,
        upload_id: Uuid,
    ) -> Result<TestRun, TestRunsError> {
        let bytes = self.raw_upload(test_id, upload_id).await?;
        let limits = self.limits.clone();
        Ok(cpu_bound(move || testresults::parse(&bytes, &limits)).await??)
    }

    /// The raw bytes of an upload of a run, exactly as they were uploaded.
    pub async fn raw_upload(
        &self,
        test_id: Uuid,
        upload_id: Uuid,
    ) -> Result<Vec<u8>, TestRunsError> {
        let state = self.get(test_id).await?;
        let hash: BlobHash = state
            .uploads
            .iter()
            .find(|upload| upload.upload_id == upload_id)
            .map(|upload| upload.upload.blob.sha256.clone())
            .ok_or(TestRunsError::UnknownUpload(upload_id))?;
        let blobs = self.blobs.clone();
        Ok(blocking(move || blobs.get(&hash)).await??)
    }
}
