//! Submitted results (the Refstack face's later API, `POST /v1/results/`): each submission is
//! an entity with one event, recording the cloud's id, the run's duration, how many tests
//! passed, who signed it, and a reference to the body in the blob store (the test names stay
//! there, not in the log). The read model in [`read_model`] pages them; [`service`] is what the
//! transport calls. Nothing here knows of HTTP or verifies signatures.

pub mod read_model;
pub mod service;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::blobs::BlobRef;
use crate::events::codec::domain_events;
use crate::runtime::entity::{Ctx, Decision, Entity};
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
    /// The account that submitted it, when the face asked for one: whose `signed` list it is in.
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

/// What the log records of a submission: what it says, and when. Its payload is the fields of
/// [`Submitted`] then `at`, one flat map, as a payload struct declared with its fields writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsSubmitted {
    #[serde(flatten)]
    pub submitted: Submitted,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum SubmissionEvent {
        ResultsSubmitted(ResultsSubmitted) version 1,
    }
}

impl Entity for Submission {
    crate::entity_types!("result" version 1, state SubmissionState,
        SubmissionCommand => SubmissionEvent, rejected SubmissionRejection);

    fn decide(state: &SubmissionState, command: &SubmissionCommand, ctx: &Ctx) -> Decision<Self> {
        let SubmissionCommand::Submit(submitted) = command;
        if state.submitted.is_some() {
            return Err(SubmissionRejection::AlreadySubmitted);
        }
        Ok(vec![SubmissionEvent::ResultsSubmitted(ResultsSubmitted {
            submitted: submitted.clone(),
            at: ctx.now,
        })])
    }

    fn apply(state: &mut SubmissionState, event: &SubmissionEvent) {
        let SubmissionEvent::ResultsSubmitted(e) = event;
        state.submitted = Some(e.clone());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::blobs::BlobHash;
    use crate::events::DomainEvent;

    /// One value as MessagePack with named fields.
    pub(crate) fn named<T: Serialize>(value: &T) -> Vec<u8> {
        rmp_serde::to_vec_named(value).unwrap()
    }

    /// A map of these keys and encoded values, in this order, as a struct with these fields
    /// encodes with named fields.
    pub(crate) fn flat_map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut map = vec![0x80 | u8::try_from(entries.len()).unwrap()];
        for (key, value) in entries {
            map.extend(rmp_serde::to_vec(key).unwrap());
            map.extend(value);
        }
        map
    }

    /// `Submitted`'s fields, in order, as a flat map holds them.
    pub(crate) fn submitted_entries(s: &Submitted) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("cpid", named(&s.cpid)),
            ("duration_seconds", named(&s.duration_seconds)),
            ("tests", named(&s.tests)),
            ("blob", named(&s.blob)),
            ("public_key", named(&s.public_key)),
            ("by", named(&s.by)),
        ]
    }

    pub(crate) fn submitted() -> Submitted {
        Submitted {
            cpid: "c1".into(),
            duration_seconds: 42,
            tests: 300,
            blob: BlobRef {
                sha256: BlobHash::of(b"results"),
                size: 7,
            },
            public_key: Some("ssh-rsa AAAA".into()),
            by: None,
        }
    }

    /// The payload stays the one flat map of named fields it was when the event's struct listed
    /// them itself: `Submitted`'s fields in order, then `at`, each value encoded on its own.
    #[test]
    fn the_payload_is_one_flat_map_of_named_fields() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let event = SubmissionEvent::ResultsSubmitted(ResultsSubmitted {
            submitted: submitted(),
            at,
        });
        let mut entries = submitted_entries(&submitted());
        entries.push(("at", named(&at.timestamp_micros())));
        let expected = flat_map(&entries);
        assert_eq!(event.encode_payload(), expected);
        let decoded = SubmissionEvent::decode("ResultsSubmitted", 1, &expected).unwrap();
        assert_eq!(decoded, event);
    }
}
