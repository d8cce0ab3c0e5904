//! Given/when/then tests of the GROS kinds' rules (`gros_agent` and `gros_project`), run
//! without an actor system or a log: registration, processes and their output, records, salts,
//! the restart rule, and the preflight check and controller settings they depend on.

use std::collections::BTreeMap;

use annals::blobs::{BlobHash, BlobRef};
use annals::domain::gros::service::{self, Project};
use annals::domain::gros::values::{self, ProjectKey};
use annals::domain::gros::{
    AgentCommand, AgentEvent, AgentRegistered, AgentRejection, AgentState, ExportAnnounced,
    GrosAgent, GrosProject, LogRecorded, Measurement, MeasurementsRecorded, OutputLine,
    PreflightChecked, Process, ProcessFinished, ProcessOutput, ProcessOutputRead, ProcessRun,
    ProcessStarted, ProcessSupervised, ProjectCommand, ProjectEvent, ProjectRejection,
    RegistrationAbandoned, RegistrationStarted, SaltsCreated, VersionChecked, INTERRUPTED,
};
use annals::domain::gros::{FileUploaded, Upload, UploadName, UploadsAnnounced};
use annals::process::supervised::{Offsets, Supervision};
use annals::runtime::testing::given;
use annals::runtime::Entity;
use chrono::{DateTime, Utc};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn started() -> AgentEvent {
    AgentEvent::RegistrationStarted(RegistrationStarted { at: t(1) })
}

fn registered(key: &str) -> AgentEvent {
    registered_at(key, false, t(1))
}

fn registered_at(key: &str, rekeyed: bool, at: DateTime<Utc>) -> AgentEvent {
    AgentEvent::AgentRegistered(AgentRegistered {
        public_key: key.into(),
        rekeyed,
        at,
    })
}

fn complete(public_key: &str) -> AgentCommand {
    AgentCommand::CompleteRegistration {
        public_key: public_key.into(),
    }
}

fn abandon(reason: &str) -> AgentCommand {
    AgentCommand::AbandonRegistration {
        reason: reason.into(),
    }
}

/// Checks that an agent with no registration running refuses `command`.
#[track_caller]
fn refused_unless_registering(command: AgentCommand) {
    given::<GrosAgent>([])
        .when(command)
        .then_rejected(AgentRejection::NotRegistering);
}

/// The project `PROJ`: no networks or username patterns, no processes.
fn project(environment: &str, gather_interval_s: u64) -> Project {
    Project {
        key: ProjectKey::parse("PROJ").unwrap(),
        networks: Vec::new(),
        usernames: Vec::new(),
        environment: environment.into(),
        gather_interval: std::time::Duration::from_secs(gather_interval_s),
        import: None,
        scrape: None,
    }
}

fn process_started(process: Process) -> AgentEvent {
    AgentEvent::ProcessStarted(ProcessStarted {
        process,
        argv: vec!["true".into()],
        at: t(1),
    })
}

#[test]
fn a_registration_locks_the_agent_until_it_ends() {
    given::<GrosAgent>([])
        .at(t(1))
        .when(AgentCommand::StartRegistration)
        .then(vec![started()]);
    given::<GrosAgent>([started()])
        .when(AgentCommand::StartRegistration)
        .then_rejected(AgentRejection::Locked);
}

#[test]
fn a_registration_completes_and_says_whether_the_key_changed() {
    let state = given::<GrosAgent>([started()])
        .at(t(2))
        .when(complete("ssh-rsa A"))
        .then(vec![registered_at("ssh-rsa A", false, t(2))]);
    assert!(state.registered() && !state.registering);
    given::<GrosAgent>([started(), registered("ssh-rsa A"), started()])
        .at(t(3))
        .when(complete("ssh-rsa B"))
        .then(vec![registered_at("ssh-rsa B", true, t(3))]);
    refused_unless_registering(complete("ssh-rsa A"));
}

#[test]
fn a_registration_is_abandoned_only_while_it_runs() {
    let state = given::<GrosAgent>([started()])
        .at(t(2))
        .when(abandon("disk full"))
        .then(vec![AgentEvent::RegistrationAbandoned(
            RegistrationAbandoned {
                reason: "disk full".into(),
                at: t(2),
            },
        )]);
    assert!(!state.registering);
    refused_unless_registering(abandon("x"));
}

#[test]
fn records_are_kept_in_any_state() {
    // Preflight checks, log records and measurements have no rule to break: an agent may
    // report them before it is registered (the preflight check then says so).
    given::<GrosAgent>([started()])
        .at(t(2))
        .when(AgentCommand::RecordPreflight {
            failed: vec!["lock".into()],
        })
        .then(vec![AgentEvent::PreflightChecked(PreflightChecked {
            ok: false,
            failed: vec!["lock".into()],
            at: t(2),
        })]);
    let fields = BTreeMap::from([("msg".to_owned(), "hello".to_owned())]);
    let state = given::<GrosAgent>([])
        .at(t(2))
        .when(AgentCommand::RecordLog {
            level: "INFO".into(),
            message: "hello".into(),
            fields: fields.clone(),
        })
        .then(vec![AgentEvent::LogRecorded(LogRecorded {
            level: "INFO".into(),
            message: "hello".into(),
            fields,
            at: t(2),
        })]);
    assert_eq!(state.logs, 1);
    let measurement = Measurement {
        name: "cpu".into(),
        checked_time: "2026-11-22 10:00:00".into(),
        ok: true,
        value: None,
        max: None,
    };
    let state = given::<GrosAgent>([])
        .at(t(2))
        .when(AgentCommand::RecordMeasurements {
            source: None,
            measurements: vec![measurement.clone()],
        })
        .then(vec![AgentEvent::MeasurementsRecorded(
            MeasurementsRecorded {
                source: None,
                measurements: vec![measurement],
                at: t(2),
            },
        )]);
    assert_eq!(state.measurements, 1);
}

#[test]
fn an_export_starts_an_import_unless_one_is_running() {
    let export = || AgentCommand::AnnounceExport {
        agent: "{}".into(),
        files: "[]".into(),
        import: Some(vec!["true".into()]),
    };
    let announced = AgentEvent::ExportAnnounced(ExportAnnounced {
        agent: "{}".into(),
        files: "[]".into(),
        at: t(1),
    });
    let state = given::<GrosAgent>([])
        .at(t(1))
        .when(export())
        .then(vec![announced.clone(), process_started(Process::Import)]);
    assert_eq!(state.last_export, Some(t(1)));
    assert!(state.running(Process::Import));
    given::<GrosAgent>([process_started(Process::Import)])
        .at(t(1))
        .when(export())
        .then(vec![announced]);
}

#[test]
fn one_scrape_runs_at_a_time() {
    given::<GrosAgent>([])
        .at(t(1))
        .when(AgentCommand::StartScrape {
            argv: vec!["true".into()],
        })
        .then(vec![process_started(Process::Scrape)]);
    given::<GrosAgent>([process_started(Process::Scrape)])
        .when(AgentCommand::StartScrape {
            argv: vec!["true".into()],
        })
        .then_rejected(AgentRejection::ScrapeRunning);
}

fn output(stream: &str, line: &str) -> OutputLine {
    OutputLine {
        stream: stream.into(),
        line: line.into(),
    }
}

#[test]
fn output_and_ends_belong_to_running_processes() {
    given::<GrosAgent>([process_started(Process::Scrape)])
        .at(t(2))
        .when(AgentCommand::RecordOutput {
            process: Process::Scrape,
            lines: vec![output("stdout", "hi"), output("stderr", "there")],
            read: None,
        })
        .then(vec![
            AgentEvent::ProcessOutput(ProcessOutput {
                process: Process::Scrape,
                stream: "stdout".into(),
                line: "hi".into(),
                at: t(2),
            }),
            AgentEvent::ProcessOutput(ProcessOutput {
                process: Process::Scrape,
                stream: "stderr".into(),
                line: "there".into(),
                at: t(2),
            }),
        ]);
    given::<GrosAgent>([process_started(Process::Scrape)])
        .when(AgentCommand::RecordOutput {
            process: Process::Import,
            lines: vec![output("stdout", "hi")],
            read: None,
        })
        .then_rejected(AgentRejection::NotRunning(Process::Import));
    let state = given::<GrosAgent>([process_started(Process::Import)])
        .at(t(2))
        .when(AgentCommand::FinishProcess {
            process: Process::Import,
            exit_code: Some(0),
            outcome: "exit code 0".into(),
        })
        .then(vec![AgentEvent::ProcessFinished(ProcessFinished {
            process: Process::Import,
            exit_code: Some(0),
            outcome: "exit code 0".into(),
            at: t(2),
        })]);
    assert!(!state.running(Process::Import));
    given::<GrosAgent>([])
        .when(AgentCommand::FinishProcess {
            process: Process::Scrape,
            exit_code: None,
            outcome: "x".into(),
        })
        .then_rejected(AgentRejection::NotRunning(Process::Scrape));
}

/// A registration abandoned by a restart at t(5).
fn abandoned() -> AgentEvent {
    AgentEvent::RegistrationAbandoned(RegistrationAbandoned {
        reason: INTERRUPTED.into(),
        at: t(5),
    })
}

/// `process` settled as interrupted by a restart at t(5).
fn interrupted(process: Process) -> AgentEvent {
    AgentEvent::ProcessFinished(ProcessFinished {
        process,
        exit_code: None,
        outcome: INTERRUPTED.into(),
        at: t(5),
    })
}

#[test]
fn a_restart_settles_everything_left_running() {
    let state = given::<GrosAgent>([
        started(),
        process_started(Process::Import),
        process_started(Process::Scrape),
    ])
    .at(t(5))
    .when(AgentCommand::SettleAfterRestart {
        going_on: Vec::new(),
    })
    .then(vec![
        abandoned(),
        interrupted(Process::Import),
        interrupted(Process::Scrape),
    ]);
    assert_eq!(GrosAgent::on_restart(&state), None);
    given::<GrosAgent>([registered("k")])
        .when(AgentCommand::SettleAfterRestart {
            going_on: Vec::new(),
        })
        .then_rejected(AgentRejection::NothingToSettle);
}

fn supervision() -> Supervision {
    Supervision {
        dir: "/data/gros-work/P.a.scrape".into(),
        supervisor: 40,
        group: 41,
        boot: "boot".into(),
    }
}

#[test]
fn a_running_process_keeps_where_it_runs_and_how_far_its_output_was_read() {
    let supervised = AgentEvent::ProcessSupervised(ProcessSupervised {
        process: Process::Scrape,
        run: supervision(),
        at: t(2),
    });
    given::<GrosAgent>([process_started(Process::Scrape)])
        .at(t(2))
        .when(AgentCommand::SuperviseProcess {
            process: Process::Scrape,
            run: supervision(),
        })
        .then(vec![supervised.clone()]);
    given::<GrosAgent>([])
        .when(AgentCommand::SuperviseProcess {
            process: Process::Import,
            run: supervision(),
        })
        .then_rejected(AgentRejection::NotRunning(Process::Import));
    let read = Offsets {
        stdout: 7,
        stderr: 3,
    };
    let state = given::<GrosAgent>([process_started(Process::Scrape), supervised.clone()])
        .at(t(3))
        .when(AgentCommand::RecordOutput {
            process: Process::Scrape,
            lines: vec![output("stdout", "hello"), output("stderr", "ab")],
            read: Some(read),
        })
        .then(vec![
            AgentEvent::ProcessOutput(ProcessOutput {
                process: Process::Scrape,
                stream: "stdout".into(),
                line: "hello".into(),
                at: t(3),
            }),
            AgentEvent::ProcessOutput(ProcessOutput {
                process: Process::Scrape,
                stream: "stderr".into(),
                line: "ab".into(),
                at: t(3),
            }),
            AgentEvent::ProcessOutputRead(ProcessOutputRead {
                process: Process::Scrape,
                read,
                at: t(3),
            }),
        ]);
    // What a restart re-attaches to, with what the run's caps have already counted.
    assert_eq!(
        state.run(Process::Scrape),
        Some(&ProcessRun {
            started: t(1),
            supervision: Some(supervision()),
            read,
            lines: 2,
            bytes: 7,
        })
    );
    assert_eq!(state.run(Process::Import), None);
    let finished = AgentEvent::ProcessFinished(ProcessFinished {
        process: Process::Scrape,
        exit_code: Some(0),
        outcome: "exit code 0".into(),
        at: t(4),
    });
    let ended = given::<GrosAgent>([process_started(Process::Scrape), supervised])
        .at(t(4))
        .when(AgentCommand::FinishProcess {
            process: Process::Scrape,
            exit_code: Some(0),
            outcome: "exit code 0".into(),
        })
        .then(vec![finished]);
    assert_eq!(ended.run(Process::Scrape), None);
}

#[test]
fn a_restart_settles_all_but_what_goes_on() {
    given::<GrosAgent>([
        started(),
        process_started(Process::Import),
        process_started(Process::Scrape),
    ])
    .at(t(5))
    .when(AgentCommand::SettleAfterRestart {
        going_on: vec![Process::Scrape],
    })
    .then(vec![abandoned(), interrupted(Process::Import)]);
    given::<GrosAgent>([process_started(Process::Scrape)])
        .when(AgentCommand::SettleAfterRestart {
            going_on: vec![Process::Scrape],
        })
        .then_rejected(AgentRejection::NothingToSettle);
}

#[test]
fn salts_are_recorded_once_and_never_moved() {
    let created = ProjectEvent::SaltsCreated(SaltsCreated {
        secret: "gros-salts-P".into(),
        at: t(1),
    });
    given::<GrosProject>([])
        .at(t(1))
        .when(ProjectCommand::RecordSalts {
            secret: "gros-salts-P".into(),
        })
        .then(vec![created.clone()]);
    given::<GrosProject>([created.clone()])
        .when(ProjectCommand::RecordSalts {
            secret: "gros-salts-P".into(),
        })
        .then(vec![]);
    given::<GrosProject>([created])
        .when(ProjectCommand::RecordSalts {
            secret: "elsewhere".into(),
        })
        .then_rejected(ProjectRejection::SaltsElsewhere);
}

#[test]
fn version_checks_are_recorded() {
    // A version check has no rule to break: any parsed version may be compared.
    let state = given::<GrosProject>([])
        .at(t(1))
        .when(ProjectCommand::RecordVersionCheck {
            version: "abc".into(),
            up_to_date: false,
        })
        .then(vec![ProjectEvent::VersionChecked(VersionChecked {
            version: "abc".into(),
            up_to_date: false,
            at: t(1),
        })]);
    assert_eq!(state.version_checks, 1);
}

#[test]
fn the_end_of_one_process_does_not_hide_another_from_reconciliation() {
    // An import runs while a scrape starts and ends: the import must still be settled after a
    // crash, so no end takes the agent off the list of agents visited at start-up.
    let ended = AgentEvent::ProcessFinished(ProcessFinished {
        process: Process::Scrape,
        exit_code: Some(0),
        outcome: "exit code 0".into(),
        at: t(3),
    });
    assert_eq!(
        GrosAgent::in_progress(&process_started(Process::Import)),
        Some(true)
    );
    assert_eq!(GrosAgent::in_progress(&ended), None);
    let state = given::<GrosAgent>([
        process_started(Process::Import),
        process_started(Process::Scrape),
        ended,
    ])
    .at(t(5))
    .when(AgentCommand::SettleAfterRestart {
        going_on: Vec::new(),
    })
    .then(vec![interrupted(Process::Import)]);
    assert_eq!(GrosAgent::on_restart(&state), None);
}

/// A gather interval past the calendar's end (a configuration's `gather_interval_s`) means the
/// next gather never comes: the tracker check fails instead of the addition panicking.
#[test]
fn a_gather_interval_past_the_calendar_means_never() {
    let state = AgentState {
        last_export: Some(t(0)),
        ..AgentState::default()
    };
    for interval in [u64::MAX, 10_000_000_000_000] {
        let project = project("", interval);
        let preflight = service::preflight(&project, &state, None, t(1));
        assert!(!preflight.tracker.ok, "{interval}: {preflight:?}");
        assert!(!preflight.total.ok, "{interval}: {preflight:?}");
    }
}

/// The wait for the next gather is told in upstream's words and Python's `timedelta` form, which
/// the agent's own log ignore pattern expects; the environment file is withheld while any other
/// check fails.
#[test]
fn a_wait_is_reported_as_upstream_reports_it() {
    let project = project("A=1\n", 90_061);
    let state = AgentState {
        public_key: Some("key".into()),
        last_export: Some(t(0)),
        ..AgentState::default()
    };
    let caller = Some("10.1.2.3".parse().unwrap());
    let half = t(0) + chrono::Duration::milliseconds(500);
    let cases = [
        (half, "1 day, 1:01:00.500000"),
        (t(86_400), "1:01:01"),
        (t(90_000), "0:01:01"),
        (t(0) - chrono::Duration::days(2), "3 days, 1:01:01"),
    ];
    for (now, wait) in cases {
        let preflight = service::preflight(&project, &state, caller, now);
        assert_eq!(
            preflight.tracker.message.as_deref(),
            Some(format!("Next scheduled gather moment is in {wait}").as_str())
        );
        assert!(!preflight.tracker.ok);
        assert_eq!(
            preflight.total.message.as_deref(),
            Some("Some parts are not OK")
        );
        assert!(!preflight.configuration.ok);
        assert_eq!(preflight.configuration.contents, None);
    }
    let due = service::preflight(&project, &state, None, t(90_061));
    assert!(due.tracker.ok, "{due:?}");
    assert!(!due.network.ok, "{due:?}");
    assert_eq!(
        due.configuration.contents, None,
        "withheld: the network check failed"
    );
    let project = service::Project {
        networks: vec![values::Network::parse("10.0.0.0/8").unwrap()],
        ..project
    };
    let ok = service::preflight(&project, &state, caller, t(90_061));
    assert_eq!(ok.configuration.contents.as_deref(), Some("A=1\n"));
    assert_eq!(
        (ok.total.ok, ok.total.message.as_deref()),
        (true, Some("Everything OK"))
    );
}

/// `max_agent_scrapes` is a count of processes: none would refuse every scrape of the shared
/// daemon, so the configuration says so at start.
#[test]
fn the_shared_daemon_runs_at_least_one_scrape() {
    let section = annals::config::GrosSection {
        max_agent_scrapes: 0,
        ..annals::config::GrosSection::default()
    };
    assert_eq!(
        service::Controller::parse(&section).unwrap_err(),
        "max_agent_scrapes must be at least 1"
    );
    let section = annals::config::GrosSection {
        max_agent_scrapes: 1,
        ..section
    };
    assert_eq!(
        service::Controller::parse(&section)
            .unwrap()
            .max_agent_scrapes,
        1
    );
}

fn upload(name: &str, hash: char, size: u64) -> Upload {
    Upload {
        name: name.into(),
        file: BlobRef {
            sha256: BlobHash::parse(&hash.to_string().repeat(64)).unwrap(),
            size,
        },
    }
}

fn uploaded(upload: &Upload) -> AgentEvent {
    AgentEvent::FileUploaded(FileUploaded {
        name: upload.name.clone(),
        file: upload.file.clone(),
        at: t(1),
    })
}

fn record(upload: &Upload, max_files: usize) -> AgentCommand {
    AgentCommand::RecordUpload {
        name: UploadName::parse(&upload.name).unwrap(),
        file: upload.file.clone(),
        max_files,
    }
}

#[test]
fn uploads_are_recorded_for_the_next_export_up_to_its_limit_of_files() {
    let (a, b, a_again) = (
        upload("a", 'a', 1),
        upload("b", 'b', 2),
        upload("a", 'c', 3),
    );
    let state = given::<GrosAgent>([uploaded(&a)])
        .at(t(1))
        .when(record(&b, 2))
        .then(vec![uploaded(&b)]);
    assert_eq!(state.uploads, [a.clone(), b.clone()]);
    // Full: a new name is refused, a name already there is replaced in its place.
    given::<GrosAgent>([uploaded(&a), uploaded(&b)])
        .when(record(&upload("c", 'c', 1), 2))
        .then_rejected(AgentRejection::TooManyFiles(2));
    let state = given::<GrosAgent>([uploaded(&a), uploaded(&b)])
        .at(t(1))
        .when(record(&a_again, 2))
        .then(vec![uploaded(&a_again)]);
    assert_eq!(state.uploads, [a_again, b]);
}

#[test]
fn an_export_takes_the_uploads_and_the_next_one_starts_empty() {
    let (a, b) = (upload("a", 'a', 1), upload("b", 'b', 2));
    let announced = AgentEvent::ExportAnnounced(ExportAnnounced {
        agent: "{}".into(),
        files: "[]".into(),
        at: t(1),
    });
    let export = AgentCommand::AnnounceExport {
        agent: "{}".into(),
        files: "[]".into(),
        import: None,
    };
    let state = given::<GrosAgent>([uploaded(&a), uploaded(&b)])
        .at(t(1))
        .when(export.clone())
        .then(vec![
            announced.clone(),
            AgentEvent::UploadsAnnounced(UploadsAnnounced {
                uploads: vec![a, b],
                at: t(1),
            }),
        ]);
    assert!(state.uploads.is_empty());
    // Nothing uploaded: the announcement alone, as before uploads existed.
    given::<GrosAgent>([])
        .at(t(1))
        .when(export)
        .then(vec![announced]);
}

#[test]
fn upload_names_are_one_plain_path_component() {
    let long = "x".repeat(values::MAX_UPLOAD_NAME);
    let too_long = "x".repeat(values::MAX_UPLOAD_NAME + 1);
    for good in ["data.json", "a b", "ünïcode", "x..y", long.as_str()] {
        assert!(UploadName::parse(good).is_ok(), "{good:?}");
    }
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "a/b",
        "../x",
        "a\\b",
        "a\nb",
        "a\0b",
        too_long.as_str(),
    ] {
        assert!(UploadName::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_public_key_is_the_same_whatever_its_comment() {
    use service::same_public_key;
    assert!(same_public_key("ssh-rsa AAAA agent@host", "ssh-rsa AAAA"));
    assert!(same_public_key("ssh-rsa AAAA\n", " ssh-rsa  AAAA other"));
    assert!(!same_public_key("ssh-rsa AAAA", "ssh-rsa AAAB"));
    assert!(!same_public_key("ssh-ed25519 AAAA", "ssh-rsa AAAA"));
    assert!(!same_public_key("ssh-rsa", "ssh-rsa"));
    assert!(!same_public_key("", ""));
}
