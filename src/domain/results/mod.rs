//! Submitted results (the Refstack face's later API, `POST /v1/results/`): each submission is
//! an entity with one event, recording the cloud's id, the run's duration, how many tests
//! passed, who signed it, and a reference to the body in the blob store (the test names stay
//! there, not in the log). The read model in [`read_model`] pages them; [`service`] is what the
//! transport calls. Nothing here knows of HTTP or verifies signatures.

pub mod read_model;
pub mod service;

use serde::{Deserialize, Serialize};

use crate::blobs::BlobRef;
use crate::events::codec::domain_events;
use crate::runtime::entity::{Ctx, Entity};
pub use service::{Results, ResultsError};

/// One submission of results.
pub struct Submission;

/// What a submission says, as its command carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The cloud's id as refstack-client computes it (its keystone's id).
    pub cpid: String,
    pub duration_seconds: u64,
    /// How many passing tests it lists.
    pub tests: u64,
    /// The body, whole, in the blob store.
    pub blob: BlobRef,
    /// The OpenSSH public key (`ssh-rsa <base64>`) whose signature of the body verified;
    /// `None` for an unsigned submission.
    pub public_key: Option<String>,
    pub by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionState {
    pub submitted: Option<ResultsSubmitted>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmissionCommand {
    Submit(Submitted),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmissionRejection {
    /// Results are immutable once submitted.
    #[error("these results were already submitted")]
    AlreadySubmitted,
}

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum SubmissionEvent {
        ResultsSubmitted version 1 {
            pub cpid: String,
            pub duration_seconds: u64,
            pub tests: u64,
            pub blob: BlobRef,
            pub public_key: Option<String>,
            pub by: Option<String>,
        },
    }
}

impl Entity for Submission {
    const KIND: &'static str = "result";
    const STATE_VERSION: u32 = 1;

    type State = SubmissionState;
    type Command = SubmissionCommand;
    type Event = SubmissionEvent;
    type Rejection = SubmissionRejection;

    fn decide(
        state: &SubmissionState,
        command: &SubmissionCommand,
        ctx: &Ctx,
    ) -> Result<Vec<SubmissionEvent>, SubmissionRejection> {
        let SubmissionCommand::Submit(submitted) = command;
        if state.submitted.is_some() {
            return Err(SubmissionRejection::AlreadySubmitted);
        }
        Ok(vec![SubmissionEvent::ResultsSubmitted(ResultsSubmitted {
            cpid: submitted.cpid.clone(),
            duration_seconds: submitted.duration_seconds,
            tests: submitted.tests,
            blob: submitted.blob.clone(),
            public_key: submitted.public_key.clone(),
            by: submitted.by.clone(),
            at: ctx.now,
        })])
    }

    fn apply(state: &mut SubmissionState, event: &SubmissionEvent) {
        let SubmissionEvent::ResultsSubmitted(e) = event;
        state.submitted = Some(e.clone());
    }
}
