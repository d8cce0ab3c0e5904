//! Submitted results' commands and queries, what the transport calls once per request: a
//! submission is parsed and its signature verified (on the blocking pool), its body stored in
//! the blob store, recorded as a new entity, and answered once the read model has folded it;
//! pages and single results are read from the model, a result's test names from its body.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use uuid::Uuid;

use super::read_model::{Page, PastLastPage, ResultRow, ResultsFilter, ResultsModel, ResultsState};
use super::{Submission, SubmissionCommand, SubmissionRejection, Submitted};
use crate::blobs::{BlobError, BlobStore};
use crate::domain::{create_folded, start_read_model, Core};
use crate::events::Metadata;
use crate::runtime::blocking::{cpu_bound, Stopped};
use crate::runtime::projection::ProjectionError;
use crate::runtime::{Clock, CommandError, Entities, ProjectionHandle};
use crate::testresults::signature::{self, SignatureError};
use crate::testresults::{Limits, ParseError, ResultEntry, UploadedResults};

/// How long start-up waits for the read model to fold the log.
const STARTUP_WAIT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// The body is not results: the message is the reason (the later API's own words for
    /// empty results).
    #[error("{0}")]
    Invalid(#[from] ParseError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("no results {0}")]
    NotFound(Uuid),
    #[error(transparent)]
    PastLastPage(#[from] PastLastPage),
    #[error(transparent)]
    Rejected(SubmissionRejection),
    #[error("not recorded: {0}")]
    NotRecorded(#[source] CommandError<SubmissionRejection>),
    /// The blocking pool dropped the work: nothing was acknowledged.
    #[error("not recorded: {0}")]
    Stopped(#[from] Stopped),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Model(#[from] ProjectionError),
}

impl From<CommandError<SubmissionRejection>> for ResultsError {
    fn from(error: CommandError<SubmissionRejection>) -> Self {
        error
            .rejection()
            .map_or_else(Self::NotRecorded, Self::Rejected)
    }
}

/// The submitted results of one server. Cheap to clone.
#[derive(Clone)]
pub struct Results {
    submissions: Entities<Submission>,
    model: ProjectionHandle<ResultsState>,
    blobs: BlobStore,
    clock: Arc<dyn Clock>,
    limits: Limits,
}

impl Results {
    /// Starts the directory and the read model, and returns once the model has folded the
    /// whole log.
    pub async fn start(
        core: &Core,
        blobs: BlobStore,
        limits: Limits,
    ) -> Result<Results, ProjectionError> {
        let model = start_read_model(ResultsModel, core, STARTUP_WAIT).await?;
        Ok(Results {
            submissions: core.entities(),
            model,
            blobs,
            clock: core.clock.clone(),
            limits,
        })
    }

    /// Takes a `POST /v1/results/` body with its optional signature headers; answers its id
    /// once the queries see it.
    pub async fn submit(
        &self,
        body: Bytes,
        signature: Option<String>,
        public_key: Option<String>,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<Uuid, ResultsError> {
        let (blobs, limits) = (self.blobs.clone(), self.limits.clone());
        let (results, signer, blob) = cpu_bound(move || -> Result<_, ResultsError> {
            let results = UploadedResults::parse(&body, &limits)?;
            let signer = signature::verify(&body, signature.as_deref(), public_key.as_deref())?;
            let blob = blobs.put(&body)?;
            Ok((results, signer, blob))
        })
        .await??;
        let command = SubmissionCommand::Submit(Submitted {
            cpid: results.cpid,
            duration_seconds: results.duration_seconds,
            tests: results.results.len() as u64,
            blob,
            public_key: signer.map(|s| s.public_key),
            by,
        });
        create_folded(
            &self.submissions,
            &self.model,
            &*self.clock,
            command,
            metadata,
        )
        .await
    }

    /// Page `page` of the submissions `filter` admits, newest first.
    pub fn page(&self, page: NonZeroU64, filter: &ResultsFilter) -> Result<Page, ResultsError> {
        Ok(self.model.read(|view| view.state.page(page, filter))?)
    }

    /// One submission and its tests, read back from its body.
    pub async fn get(&self, id: Uuid) -> Result<(ResultRow, Vec<ResultEntry>), ResultsError> {
        let row = self
            .model
            .read(|view| view.state.get(&id).cloned())
            .ok_or(ResultsError::NotFound(id))?;
        let (blobs, limits, hash) = (
            self.blobs.clone(),
            self.limits.clone(),
            row.submitted.blob.sha256.clone(),
        );
        let results = cpu_bound(move || -> Result<_, ResultsError> {
            let body = blobs.get(&hash)?;
            Ok(UploadedResults::parse(&body, &limits)?)
        })
        .await??;
        Ok((row, results.results))
    }
}
