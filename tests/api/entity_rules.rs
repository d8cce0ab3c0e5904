//! Given/when/then tests of the `job` entity's rules, run without an actor system or a log,
//! and of its event codec (upcasting, unknown types and versions).

use crate::common;

use annals::events::codec::{to_payload, CodecError};
use annals::events::DomainEvent;
use annals::runtime::job::{
    Job, JobCommand, JobEvent, JobFinished, JobInterrupted, JobRejection, JobStarted, JobStatus,
    Level, LineRecorded, LineRecordedV1, MAX_LINE_BYTES,
};
use annals::runtime::testing::given;
use annals::runtime::Entity;
use common::at;

fn started() -> JobEvent {
    JobEvent::JobStarted(JobStarted {
        name: "nightly".into(),
        at: at(1_000),
    })
}

fn finished() -> JobEvent {
    JobEvent::JobFinished(JobFinished {
        succeeded: true,
        at: at(2_000),
    })
}

fn start(name: &str) -> JobCommand {
    JobCommand::Start { name: name.into() }
}

fn record(line: &str, level: Level) -> JobCommand {
    JobCommand::RecordLine {
        line: line.into(),
        level,
    }
}

/// Checks that `command` is refused before the job started and after it ended.
#[track_caller]
fn refused_unless_running(command: impl Fn() -> JobCommand) {
    given::<Job>([])
        .when(command())
        .then_rejected(JobRejection::NotRunning(JobStatus::New));
    given::<Job>([started(), finished()])
        .when(command())
        .then_rejected(JobRejection::NotRunning(JobStatus::Succeeded));
}

#[test]
fn start_records_the_name_and_time() {
    let state = given::<Job>([])
        .at(at(5))
        .when(start("nightly"))
        .then(vec![JobEvent::JobStarted(JobStarted {
            name: "nightly".into(),
            at: at(5),
        })]);
    assert_eq!(state.status, JobStatus::Running);
    assert_eq!(state.started_at, Some(at(5)));
}

#[test]
fn start_is_refused_twice_and_without_a_name() {
    given::<Job>([started()])
        .when(start("again"))
        .then_rejected(JobRejection::AlreadyStarted);
    given::<Job>([])
        .when(start("  "))
        .then_rejected(JobRejection::EmptyName);
}

#[test]
fn a_running_job_records_lines() {
    let state = given::<Job>([started()])
        .at(at(7))
        .when(record("step 1", Level::Warn))
        .then(vec![JobEvent::LineRecorded(LineRecorded {
            line: "step 1".into(),
            level: Level::Warn,
            at: at(7),
        })]);
    assert_eq!(
        (state.lines, state.last_line.as_deref()),
        (1, Some("step 1"))
    );
}

#[test]
fn lines_are_refused_before_start_after_the_end_and_over_the_limit() {
    refused_unless_running(|| record("x", Level::Info));
    given::<Job>([started()])
        .when(record(&"y".repeat(MAX_LINE_BYTES + 1), Level::Info))
        .then_rejected(JobRejection::LineTooLong(MAX_LINE_BYTES + 1));
}

#[test]
fn finish_ends_a_running_job() {
    let state = given::<Job>([started()])
        .at(at(9))
        .when(JobCommand::Finish { succeeded: false })
        .then(vec![JobEvent::JobFinished(JobFinished {
            succeeded: false,
            at: at(9),
        })]);
    assert_eq!(
        (state.status, state.ended_at),
        (JobStatus::Failed, Some(at(9)))
    );
}

#[test]
fn finish_is_refused_unless_running() {
    refused_unless_running(|| JobCommand::Finish { succeeded: true });
}

#[test]
fn a_running_job_can_be_marked_interrupted() {
    let state = given::<Job>([started()])
        .at(at(11))
        .when(JobCommand::MarkInterrupted)
        .then(vec![JobEvent::JobInterrupted(JobInterrupted {
            at: at(11),
        })]);
    assert_eq!(state.status, JobStatus::Interrupted);
}

#[test]
fn only_a_running_job_can_be_marked_interrupted() {
    given::<Job>([started(), finished()])
        .when(JobCommand::MarkInterrupted)
        .then_rejected(JobRejection::NotRunning(JobStatus::Succeeded));
}

#[test]
fn restart_settles_running_jobs_only() {
    let mut state = Default::default();
    assert_eq!(Job::on_restart(&state), None);
    Job::apply(&mut state, &started());
    assert_eq!(Job::on_restart(&state), Some(JobCommand::MarkInterrupted));
    Job::apply(&mut state, &finished());
    assert_eq!(Job::on_restart(&state), None);
    assert_eq!(Job::in_progress(&started()), Some(true));
    assert_eq!(Job::in_progress(&finished()), Some(false));
}

#[test]
fn every_event_decodes_from_what_it_encodes() {
    let events = [
        started(),
        JobEvent::LineRecorded(LineRecorded {
            line: "l".into(),
            level: Level::Error,
            at: at(3),
        }),
        finished(),
        JobEvent::JobInterrupted(JobInterrupted { at: at(4) }),
    ];
    common::assert_round_trips(events);
}

#[test]
fn an_old_line_is_upcast_to_the_current_version() {
    let v1 = to_payload(&LineRecordedV1 {
        text: "from an older build".into(),
        at: at(42),
    });
    let decoded = JobEvent::decode("LineRecorded", 1, &v1).unwrap();
    assert_eq!(
        decoded,
        JobEvent::LineRecorded(LineRecorded {
            line: "from an older build".into(),
            level: Level::Info,
            at: at(42),
        })
    );
}

#[test]
fn unknown_types_versions_and_payloads_are_errors() {
    let payload = started().encode_payload();
    common::assert_unknown_type::<JobEvent>("JobExploded", &payload);
    common::assert_unknown_version::<JobEvent>("JobStarted", 9, &payload);
    let error = JobEvent::decode("JobFinished", 1, &payload).unwrap_err();
    assert!(matches!(error, CodecError::Payload { .. }));
    assert!(error.to_string().contains("JobFinished"), "{error}");
    assert!(JobEvent::decode("JobStarted", 1, &[0xc1, 0xff, 0x00]).is_err());
}

#[test]
fn payloads_carry_field_names_so_fields_can_be_added() {
    let payload = started().encode_payload();
    let json = annals::events::codec::payload_to_json(&payload).unwrap();
    assert_eq!(json["name"], "nightly");
    // A payload with an extra field, as a newer build might write, still decodes.
    #[derive(serde::Serialize)]
    struct Newer {
        name: String,
        #[serde(with = "chrono::serde::ts_microseconds")]
        at: chrono::DateTime<chrono::Utc>,
        priority: u8,
    }
    let newer = to_payload(&Newer {
        name: "n".into(),
        at: at(1),
        priority: 3,
    });
    assert!(JobEvent::decode("JobStarted", 1, &newer).is_ok());
}
