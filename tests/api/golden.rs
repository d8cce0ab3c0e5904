//! Golden files under `snapshots/`: how an event renders as JSON and how a replayed state looks,
//! for the `job` kind driven through its actor and for each real kind (scan, execution, agent,
//! test run, host) from a history of its events written as the faces write them. Ids, times and
//! hashes are redacted or fixed so that the files only change when the shapes do.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use annals::domain::gros::{
    AgentEvent, AgentRegistered, GrosAgent, LogRecorded, Measurement, MeasurementsRecorded,
    PreflightChecked, Process, ProcessFinished, ProcessOutput, ProcessStarted, RegistrationStarted,
};
use annals::domain::inventory::{HostEvent, HostRecord, VersionExpired};
use annals::domain::kinds;
use annals::domain::scan::{ScanEvent, ScanRecord, ScanReportFetched};
use annals::domain::testrun::{
    TestResultUploaded, TestRunEnded, TestRunEvent, TestRunRecord, TestStatusUpdated,
};
use annals::domain::workflow::{
    EndedAt, Execution, ExecutionEvent, LogLine, OutputsRecorded, Requested, StepEnded,
    StepEndedEvent, StepStarted,
};
use annals::events::codec::render;
use annals::events::{DomainEvent, ExpectedVersion, Metadata, NewEvent};
use annals::runtime::job::{Job, JobCommand, Level};
use annals::runtime::state::ReplayUntil;
use annals::runtime::{Entities, Entity, ManualClock, NoEffects, Settings};
use common::{at, stream, TempLog};

/// What the rendered events of every golden file hide: when they were written and the hash
/// chain, which follows from it.
const EVENT_REDACTIONS: [(&str, &str); 2] =
    [("[].recorded_at", "[recorded_at]"), ("[].hash", "[hash]")];

#[actix_rt::test]
async fn a_job_renders_and_replays_as_recorded() {
    let t = TempLog::new();
    let clock = Arc::new(ManualClock::at(at(1_700_000_000_000_000)));
    let jobs = Entities::<Job>::start(
        t.log.clone(),
        clock.clone(),
        Arc::new(NoEffects),
        Settings::default(),
    );
    let metadata = ada();
    jobs.execute(
        "golden",
        JobCommand::Start {
            name: "nightly scan".into(),
        },
        metadata.clone(),
    )
    .await
    .unwrap();
    clock.set(at(1_700_000_001_000_000));
    let line = JobCommand::RecordLine {
        line: "port 22 open".into(),
        level: Level::Warn,
    };
    jobs.execute("golden", line, metadata).await.unwrap();
    clock.set(at(1_700_000_002_000_000));
    jobs.execute(
        "golden",
        JobCommand::Finish { succeeded: true },
        Metadata::system(),
    )
    .await
    .unwrap();

    let rendered: Vec<_> = t.log.read_all(0, 10).unwrap().iter().map(render).collect();
    common::snapshots(&EVENT_REDACTIONS).bind(|| {
        insta::assert_json_snapshot!("job_events", rendered);
    });
    let replayed = kinds::replay(&t.log, &stream("job-golden"), ReplayUntil::Version(2)).unwrap();
    common::snapshots(&[])
        .bind(|| insta::assert_json_snapshot!("job_state_at_version_2", replayed));
}

/// The metadata of an HTTP request of `ada`'s, with a fixed correlation id.
fn ada() -> Metadata {
    common::from_ada(42, "127.0.0.1:40000")
}

/// Writes `events` to the stream `<kind>-golden` of a new log, each with a fixed id, as an
/// HTTP request of `ada` would; checks each decodes back to itself; and compares the rendered
/// events with `<kind>_events` and the state replayed from all of them with `<kind>_state`.
async fn golden<E: Entity>(events: Vec<E::Event>)
where
    E::Event: PartialEq + std::fmt::Debug,
{
    let t = TempLog::new();
    let name = stream(&format!("{}-golden", E::KIND));
    let metadata = ada();
    let new: Vec<NewEvent> = events
        .iter()
        .zip(1u128..)
        .map(|(event, id)| NewEvent {
            event_id: uuid::Uuid::from_u128(id),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            payload: event.encode_payload(),
            metadata: metadata.clone(),
        })
        .collect();
    t.log
        .append(name.clone(), ExpectedVersion::Exactly(0), new)
        .await
        .unwrap();

    let recorded = t.log.read_all(0, 100).unwrap();
    let decoded: Vec<E::Event> = recorded
        .iter()
        .map(|event| E::Event::from_recorded(event).expect("the event decodes"))
        .collect();
    assert_eq!(decoded, events, "the events decode to what was written");
    let rendered: Vec<_> = recorded.iter().map(render).collect();
    let replayed = kinds::replay(&t.log, &name, ReplayUntil::End).unwrap();
    common::snapshots(&EVENT_REDACTIONS).bind(|| {
        insta::assert_json_snapshot!(format!("{}_events", E::KIND), rendered);
    });
    common::snapshots(&[]).bind(|| {
        insta::assert_json_snapshot!(format!("{}_state", E::KIND), replayed);
    });
}

#[actix_rt::test]
async fn a_scan_renders_and_replays_as_recorded() {
    let mut events = super::scan_rules::a_scan();
    events.push(ScanEvent::ScanReportFetched(ScanReportFetched {
        by: Some("ada".into()),
        at: at(10),
    }));
    golden::<ScanRecord>(events).await;
}

#[actix_rt::test]
async fn an_execution_renders_and_replays_as_recorded() {
    golden::<Execution>(vec![
        ExecutionEvent::ExecutionRequested(Requested {
            workflow: "demo@lab@hello".into(),
            inputs: BTreeMap::from([("who".to_owned(), "golden".to_owned())]),
            by: Some("ada".into()),
            at: at(1),
        }),
        ExecutionEvent::StepStarted(StepStarted {
            index: 0,
            name: "greet".into(),
            at: at(2),
        }),
        ExecutionEvent::LogLineRecorded(LogLine {
            level: annals::domain::workflow::Level::Info,
            at: at(3),
            content: "hello golden".into(),
        }),
        ExecutionEvent::StepEnded(StepEndedEvent {
            index: 0,
            ended: StepEnded {
                exit_code: Some(0),
                signal: None,
                duration_ms: 1,
                timed_out: false,
                cancelled: false,
            },
            at: at(4),
        }),
        ExecutionEvent::OutputsRecorded(OutputsRecorded {
            outputs: BTreeMap::from([("greeting".to_owned(), "hello golden".to_owned())]),
        }),
        ExecutionEvent::ExecutionSucceeded(EndedAt { at: at(5) }),
    ])
    .await;
}

#[actix_rt::test]
async fn an_agent_renders_and_replays_as_recorded() {
    golden::<GrosAgent>(vec![
        AgentEvent::RegistrationStarted(RegistrationStarted { at: at(1) }),
        AgentEvent::AgentRegistered(AgentRegistered {
            public_key: "-----BEGIN PGP PUBLIC KEY BLOCK-----".into(),
            rekeyed: false,
            at: at(2),
        }),
        AgentEvent::PreflightChecked(PreflightChecked {
            ok: true,
            failed: vec![],
            at: at(3),
        }),
        AgentEvent::LogRecorded(LogRecorded {
            level: "INFO".into(),
            message: "exported".into(),
            fields: BTreeMap::from([("project".to_owned(), "PROJ".to_owned())]),
            at: at(4),
        }),
        AgentEvent::ProcessStarted(ProcessStarted {
            process: Process::Scrape,
            argv: vec!["scrape".into(), "PROJ".into()],
            at: at(5),
        }),
        AgentEvent::ProcessOutput(ProcessOutput {
            process: Process::Scrape,
            stream: "stdout".into(),
            line: "scraped".into(),
            at: at(6),
        }),
        AgentEvent::ProcessFinished(ProcessFinished {
            process: Process::Scrape,
            exit_code: Some(0),
            outcome: "success".into(),
            at: at(7),
        }),
        AgentEvent::MeasurementsRecorded(MeasurementsRecorded {
            source: Some("scrape".into()),
            measurements: vec![Measurement {
                name: "disk".into(),
                checked_time: "2023-11-14 22:13:20".into(),
                ok: true,
                value: Some(42.into()),
                max: Some(100.into()),
            }],
            at: at(8),
        }),
    ])
    .await;
}

#[actix_rt::test]
async fn a_test_run_renders_and_replays_as_recorded() {
    use super::testrun_rules::{opened, upload};
    let upload = upload();
    golden::<TestRunRecord>(vec![
        opened(1),
        TestRunEvent::TestStatusUpdated(TestStatusUpdated {
            message: "test complete".into(),
            finished: false,
            by: None,
            at: at(2),
        }),
        TestRunEvent::TestResultUploaded(TestResultUploaded {
            upload_id: uuid::Uuid::from_u128(7),
            format: upload.format,
            summary: upload.summary,
            duration_seconds: upload.duration_seconds,
            blob: upload.blob,
            by: Some("ada".into()),
            at: at(3),
        }),
        TestRunEvent::TestRunEnded(TestRunEnded { at: at(4) }),
    ])
    .await;
}

#[actix_rt::test]
async fn a_host_renders_and_replays_as_recorded() {
    use super::inventory_rules::reported;
    golden::<HostRecord>(vec![
        reported("demo_app", "golden", 0, 1),
        reported("db", "golden", 1, 2),
        HostEvent::VersionExpired(VersionExpired {
            app_id: "db".into(),
            instance: 1,
            last_update: at(2),
            at: at(3),
        }),
    ])
    .await;
}
