//! Given/when/then tests of the `test_run` and `result` entities' rules (the Refstack face),
//! run without an actor system or a log; their event codecs; and the checked inputs a run takes
//! (clouds, status messages) with the configuration fragment a cloud gives.

use crate::common;

use std::collections::BTreeMap;

use annals::blobs::BlobHash;
use annals::domain::testrun::{
    Cloud, CloudSpec, InvalidCloud, InvalidStatus, StatusMessage, TestResultUploaded,
    TestRunCommand, TestRunEnded, TestRunEvent, TestRunOpened, TestRunRecord, TestRunRejection,
    TestStatusUpdated, Upload, MAX_STATUS_BYTES,
};
use annals::events::DomainEvent;
use annals::runtime::testing::given;
use annals::testresults::{self, Format, Limits};
use common::at;
use uuid::Uuid;

fn cloud() -> Cloud {
    let mut options = BTreeMap::new();
    options.insert(
        "compute".to_owned(),
        BTreeMap::from([("image_ssh_user".to_owned(), "cirros".to_owned())]),
    );
    Cloud::parse(CloudSpec {
        name: "lab".into(),
        identity_uri: "http://keystone:5000/v2.0".into(),
        identity_uri_v3: "http://keystone:5000/v3".into(),
        username: "demo".into(),
        alt_username: "alt_demo".into(),
        admin_username: "admin".into(),
        tempest_options: options,
    })
    .expect("a valid cloud")
}

pub(crate) fn opened(micros: i64) -> TestRunEvent {
    TestRunEvent::TestRunOpened(TestRunOpened {
        cloud: Some(cloud()),
        by: Some("ada".into()),
        at: at(micros),
    })
}

fn status(text: &str, finished: bool) -> TestRunCommand {
    TestRunCommand::UpdateStatus {
        message: StatusMessage::parse(text).expect("a valid status"),
        finished,
        by: None,
    }
}

pub(crate) fn upload() -> Upload {
    let stream = b"test: a.B.test_x\nsuccess: a.B.test_x\ntest: a.B.test_y\nfailure: a.B.test_y\n";
    let run = testresults::parse(stream, &Limits::default()).expect("parses");
    Upload {
        format: run.format,
        summary: run.summary,
        duration_seconds: run.duration_seconds,
        blob: annals::blobs::BlobRef {
            sha256: BlobHash::of(stream),
            size: stream.len() as u64,
        },
    }
}

#[test]
fn opening_records_the_cloud_who_and_when() {
    let state = given::<TestRunRecord>([])
        .at(at(3))
        .when(TestRunCommand::Open {
            cloud: Some(cloud()),
            by: Some("ada".into()),
        })
        .then(vec![opened(3)]);
    let opened = state.opened.expect("open");
    assert_eq!(opened.cloud.as_ref().map(Cloud::name), Some("lab"));
    assert!(state.ended_at.is_none());
}

#[test]
fn a_run_opens_once() {
    given::<TestRunRecord>([opened(1)])
        .when(TestRunCommand::Open {
            cloud: None,
            by: None,
        })
        .then_rejected(TestRunRejection::AlreadyOpen);
}

/// The status update a caller without a name sent at `micros`.
fn updated(message: &str, finished: bool, micros: i64) -> TestRunEvent {
    TestRunEvent::TestStatusUpdated(TestStatusUpdated {
        message: message.into(),
        finished,
        by: None,
        at: at(micros),
    })
}

#[test]
fn a_status_update_is_recorded_and_finished_ends_the_run() {
    let state = given::<TestRunRecord>([opened(1)])
        .at(at(5))
        .when(status("running tempest", false))
        .then(vec![updated("running tempest", false, 5)]);
    assert_eq!(state.statuses.len(), 1);
    assert!(state.ended_at.is_none());

    let state = given::<TestRunRecord>([opened(1)])
        .at(at(9))
        .when(status("test complete", true))
        .then(vec![
            updated("test complete", true, 9),
            TestRunEvent::TestRunEnded(TestRunEnded { at: at(9) }),
        ]);
    assert_eq!(state.ended_at, Some(at(9)));
}

#[test]
fn a_second_finished_status_does_not_end_the_run_again() {
    given::<TestRunRecord>([
        opened(1),
        TestRunEvent::TestRunEnded(TestRunEnded { at: at(2) }),
    ])
    .at(at(4))
    .when(status("done, really", true))
    .then(vec![updated("done, really", true, 4)]);
}

#[test]
fn a_status_for_a_run_never_opened_is_refused() {
    given::<TestRunRecord>([])
        .when(status("hello", false))
        .then_rejected(TestRunRejection::NotOpen);
}

#[test]
fn an_upload_records_its_format_summary_and_blob() {
    let id = Uuid::from_u128(7);
    let state = given::<TestRunRecord>([opened(1)])
        .at(at(6))
        .when(TestRunCommand::RecordUpload {
            upload_id: id,
            upload: upload(),
            by: Some("ada".into()),
        })
        .then(vec![TestRunEvent::TestResultUploaded(TestResultUploaded {
            upload_id: id,
            format: Format::SubunitV1,
            summary: upload().summary,
            duration_seconds: None,
            blob: upload().blob,
            by: Some("ada".into()),
            at: at(6),
        })]);
    let record = &state.uploads[0];
    assert_eq!(
        (record.upload.summary.pass, record.upload.summary.fail),
        (1, 1)
    );
    assert_eq!(record.upload.summary.total, 2);
}

#[test]
fn an_upload_for_a_run_never_opened_is_refused() {
    given::<TestRunRecord>([])
        .when(TestRunCommand::RecordUpload {
            upload_id: Uuid::from_u128(1),
            upload: upload(),
            by: None,
        })
        .then_rejected(TestRunRejection::NotOpen);
}

#[test]
fn events_round_trip_and_unknown_versions_are_refused() {
    let u = upload();
    for event in [
        opened(1),
        TestRunEvent::TestStatusUpdated(TestStatusUpdated {
            message: "m".into(),
            finished: false,
            by: Some("ada".into()),
            at: at(2),
        }),
        TestRunEvent::TestResultUploaded(TestResultUploaded {
            upload_id: Uuid::from_u128(3),
            format: u.format,
            summary: u.summary,
            duration_seconds: Some(1.5),
            blob: u.blob,
            by: None,
            at: at(3),
        }),
        TestRunEvent::TestRunEnded(TestRunEnded { at: at(4) }),
    ] {
        let payload = event.encode_payload();
        let decoded = TestRunEvent::decode(event.event_type(), 1, &payload).expect("decodes");
        assert_eq!(decoded, event);
        common::assert_unknown_version::<TestRunEvent>(event.event_type(), 2, &payload);
    }
    common::assert_unknown_type::<TestRunEvent>("TestRunReopened", &[]);
}

#[test]
fn status_messages_are_neither_empty_nor_huge() {
    assert_eq!(StatusMessage::parse(""), Err(InvalidStatus::Empty));
    assert_eq!(StatusMessage::parse(" \n\t"), Err(InvalidStatus::Empty));
    assert_eq!(
        StatusMessage::parse(&"x".repeat(MAX_STATUS_BYTES + 1)),
        Err(InvalidStatus::TooLong)
    );
    assert_eq!(
        StatusMessage::parse("test complete").map(|m| m.as_str().to_owned()),
        Ok("test complete".to_owned())
    );
}

#[test]
fn a_cloud_never_holds_a_password_or_a_blank_name() {
    let spec = CloudSpec::from(cloud());
    let mut with_password = spec.clone();
    with_password
        .tempest_options
        .entry("identity".into())
        .or_default()
        .insert("Admin_Password".into(), "hunter2".into());
    assert_eq!(
        Cloud::parse(with_password),
        Err(InvalidCloud::Password {
            section: "identity".into(),
            key: "Admin_Password".into()
        })
    );
    let nameless = CloudSpec {
        name: "  ".into(),
        ..spec.clone()
    };
    assert_eq!(Cloud::parse(nameless), Err(InvalidCloud::NoName));
    let control = CloudSpec {
        username: "a\nb".into(),
        ..spec
    };
    assert!(matches!(
        Cloud::parse(control),
        Err(InvalidCloud::ControlCharacter { .. })
    ));
}

#[test]
fn the_miniconf_merges_defaults_options_and_identity_in_that_order() {
    let conf = cloud().miniconf();
    let json = serde_json::to_value(&conf).expect("renders");
    assert_eq!(
        json,
        serde_json::json!({
            "cli": {"enabled": "False"},
            "compute": {
                "image_alt_ssh_password": "password",
                "image_alt_ssh_user": "root",
                "image_ssh_password": "password",
                // The operator's option overrides the default.
                "image_ssh_user": "cirros",
            },
            "identity": {
                "admin_username": "admin",
                "alt_username": "alt_demo",
                "uri": "http://keystone:5000/v2.0",
                "uri_v3": "http://keystone:5000/v3",
                "username": "demo",
            }
        })
    );
}

fn submitted() -> annals::domain::results::Submitted {
    annals::domain::results::Submitted {
        cpid: "c1".into(),
        duration_seconds: 42,
        tests: 2,
        blob: upload().blob,
        public_key: Some("ssh-rsa AAAA".into()),
        by: None,
    }
}

#[test]
fn a_submission_records_its_results_once() {
    use annals::domain::results::{
        ResultsSubmitted, Submission, SubmissionCommand, SubmissionEvent, SubmissionRejection,
    };
    let event = SubmissionEvent::ResultsSubmitted(ResultsSubmitted {
        submitted: submitted(),
        at: at(8),
    });
    let state = given::<Submission>([])
        .at(at(8))
        .when(SubmissionCommand::Submit(submitted()))
        .then(vec![event.clone()]);
    assert_eq!(state.submitted.map(|s| s.submitted.tests), Some(2));
    given::<Submission>([event.clone()])
        .when(SubmissionCommand::Submit(submitted()))
        .then_rejected(SubmissionRejection::AlreadySubmitted);
    let decoded =
        SubmissionEvent::decode("ResultsSubmitted", 1, &event.encode_payload()).expect("decodes");
    assert_eq!(decoded, event);
    common::assert_unknown_version::<SubmissionEvent>(
        "ResultsSubmitted",
        2,
        &event.encode_payload(),
    );
}
