//! Given/when/then tests of the `scan` entity's rules (the scan engine face), run without an
//! actor system or a log: every command's success and rejection, the restart rule, the event
//! codec, and the checked inputs (engine names, scan ids).

use crate::common;

use annals::domain::scan::{
    finding_bytes, Asset, AssetScanned, Confidence, Datatype, EngineName, Finding, FindingReported,
    Progress, ScanBegan, ScanCleaned, ScanCommand, ScanEvent, ScanFailed, ScanFinished, ScanId,
    ScanOutputRead, ScanRecord, ScanRejection, ScanReportFetched, ScanRequested, ScanRun,
    ScanStatus, ScanStopped, ScanSupervised, Severity, Target, INTERRUPTED,
};
use annals::process::supervised::{Offsets, Supervision};
use annals::runtime::testing::given;
use annals::runtime::Entity;
use common::at;

fn engine() -> EngineName {
    EngineName::parse("tcp").unwrap()
}

fn asset(value: &str, datatype: Datatype) -> Asset {
    Asset {
        id: "7".into(),
        value: value.into(),
        criticity: "high".into(),
        datatype,
    }
}

fn request(assets: Vec<Asset>) -> ScanCommand {
    ScanCommand::Request {
        engine: engine(),
        scan_id: ScanId::parse("42").unwrap(),
        assets,
        options: r#"{"ports":["22"]}"#.into(),
        allowed: vec![Datatype::Ip, Datatype::Fqdn],
        by: Some("ada".into()),
    }
}

pub(crate) fn requested() -> ScanEvent {
    ScanEvent::ScanRequested(ScanRequested {
        engine: engine(),
        scan_id: ScanId::parse("42").unwrap(),
        assets: vec![asset("127.0.0.1", Datatype::Ip)],
        options: r#"{"ports":["22"]}"#.into(),
        by: Some("ada".into()),
        at: at(1),
    })
}

pub(crate) fn began() -> ScanEvent {
    ScanEvent::ScanBegan(ScanBegan { at: at(2) })
}

pub(crate) fn finding() -> Finding {
    Finding {
        severity: Severity::Info,
        confidence: Confidence::Certain,
        title: "Port '22/tcp' is open (service: ssh)".into(),
        description: "open".into(),
        solution: "n/a".into(),
        kind: "port_info".into(),
        target: Target {
            addr: vec!["127.0.0.1".into()],
            protocol: Some("tcp".into()),
            port_id: Some(22),
            port_type: Some("tcp".into()),
        },
        raw: Some("{}".into()),
        tags: vec![],
        links: vec![],
        vuln_refs: Default::default(),
    }
}

/// A scan from its request to its end: an asset scanned, a finding reported.
pub(crate) fn a_scan() -> Vec<ScanEvent> {
    vec![
        requested(),
        began(),
        ScanEvent::AssetScanned(AssetScanned {
            asset: "127.0.0.1".into(),
            at: at(3),
        }),
        ScanEvent::FindingReported(FindingReported {
            finding: finding(),
            at: at(4),
        }),
        finished(),
    ]
}

pub(crate) fn finished() -> ScanEvent {
    ScanEvent::ScanFinished(ScanFinished {
        raw: vec![],
        at: at(9),
    })
}

/// Checks that a scan never requested refuses `command` as unknown.
#[track_caller]
fn refused_when_unknown(command: ScanCommand) {
    given::<ScanRecord>([])
        .when(command)
        .then_rejected(ScanRejection::Unknown);
}

/// Checks that a finished scan refuses `command` as not running.
#[track_caller]
fn refused_when_finished(command: ScanCommand) {
    given::<ScanRecord>([requested(), began(), finished()])
        .when(command)
        .then_rejected(ScanRejection::NotRunning(ScanStatus::Finished));
}

#[test]
fn a_request_is_recorded_with_its_assets_options_and_asker() {
    let state = given::<ScanRecord>([])
        .at(at(1))
        .when(request(vec![asset("127.0.0.1", Datatype::Ip)]))
        .then(vec![requested()]);
    assert_eq!(state.status, ScanStatus::Started);
    assert!(state.visible());
}

#[test]
fn a_request_without_assets_or_with_a_datatype_the_engine_does_not_scan_is_refused() {
    given::<ScanRecord>([])
        .when(request(vec![]))
        .then_rejected(ScanRejection::NoAssets);
    given::<ScanRecord>([])
        .when(request(vec![
            asset("127.0.0.1", Datatype::Ip),
            asset("https://x", Datatype::Url),
        ]))
        .then_rejected(ScanRejection::DatatypeNotAllowed {
            value: "https://x".into(),
            datatype: "url",
            allowed: "ip, fqdn".into(),
        });
}

#[test]
fn each_use_of_a_scan_id_is_its_own_entity_which_takes_one_request() {
    // Using the id again is a new entity (see `entity_id`), never a second request here.
    given::<ScanRecord>([requested()])
        .when(request(vec![asset("127.0.0.1", Datatype::Ip)]))
        .then_rejected(ScanRejection::AlreadyExists("42".into()));
    given::<ScanRecord>([
        requested(),
        ScanEvent::ScanCleaned(ScanCleaned {
            by: None,
            at: at(3),
        }),
    ])
    .when(request(vec![asset("127.0.0.1", Datatype::Ip)]))
    .then_rejected(ScanRejection::AlreadyExists("42".into()));
}

#[test]
fn the_uses_of_a_scan_id_have_entity_ids_that_never_meet() {
    use annals::domain::scan::{entity_id, incarnation};
    let id = |scan: &str, n| entity_id(&engine(), &ScanId::parse(scan).unwrap(), n);
    assert_eq!(
        id("42", 1),
        "tcp-42",
        "the first use keeps the name older logs have"
    );
    assert_eq!(id("42", 2), "tcp~2-42");
    assert_eq!(id("5~2", 1), "tcp-5~2");
    assert_ne!(id("5~2", 1), id("5", 2));
    assert_ne!(id("2-5", 1), id("5", 2));
    for (entity, n) in [
        ("tcp-42", 1),
        ("tcp~2-42", 2),
        ("tcp-5~2", 1),
        ("tcp~17-a-b", 17),
    ] {
        assert_eq!(incarnation(entity), n, "{entity}");
    }
}

#[test]
fn an_ended_scans_report_fetch_is_noted_once_and_a_running_one_has_none() {
    let fetched = ScanEvent::ScanReportFetched(ScanReportFetched {
        by: Some("ada".into()),
        at: at(10),
    });
    let state = given::<ScanRecord>([requested(), began(), finished()])
        .at(at(10))
        .when(ScanCommand::RecordReportFetched {
            by: Some("ada".into()),
        })
        .then(vec![fetched.clone()]);
    assert!(state.report_fetched);
    given::<ScanRecord>([requested(), began(), finished(), fetched])
        .when(ScanCommand::RecordReportFetched { by: None })
        .then(vec![]);
    given::<ScanRecord>([requested(), began()])
        .when(ScanCommand::RecordReportFetched { by: None })
        .then_rejected(ScanRejection::NotEnded(ScanStatus::Scanning));
    refused_when_unknown(ScanCommand::RecordReportFetched { by: None });
}

#[test]
fn work_begins_records_assets_and_findings_and_finishes() {
    let state = given::<ScanRecord>([requested()])
        .at(at(2))
        .when(ScanCommand::Begin)
        .then(vec![began()]);
    assert_eq!(state.status, ScanStatus::Scanning);
    // A second begin changes nothing.
    given::<ScanRecord>([requested(), began()])
        .when(ScanCommand::Begin)
        .then(vec![]);
    given::<ScanRecord>([requested(), began()])
        .at(at(3))
        .when(ScanCommand::Record {
            progress: vec![Progress::AssetDone("127.0.0.1".into())],
            read: None,
        })
        .then(vec![ScanEvent::AssetScanned(AssetScanned {
            asset: "127.0.0.1".into(),
            at: at(3),
        })]);
    let state = given::<ScanRecord>([requested(), began()])
        .at(at(4))
        .when(ScanCommand::Record {
            progress: vec![Progress::Finding(Box::new(finding()))],
            read: None,
        })
        .then(vec![ScanEvent::FindingReported(FindingReported {
            finding: finding(),
            at: at(4),
        })]);
    assert_eq!(
        (state.findings, state.finding_bytes),
        (1, finding_bytes(&finding()) as u64)
    );
    // A batch of reports is recorded in its order, as one event each.
    let state = given::<ScanRecord>([requested(), began()])
        .at(at(5))
        .when(ScanCommand::Record {
            progress: vec![
                Progress::Finding(Box::new(finding())),
                Progress::AssetDone("127.0.0.1".into()),
                Progress::Finding(Box::new(finding())),
            ],
            read: None,
        })
        .then(vec![
            ScanEvent::FindingReported(FindingReported {
                finding: finding(),
                at: at(5),
            }),
            ScanEvent::AssetScanned(AssetScanned {
                asset: "127.0.0.1".into(),
                at: at(5),
            }),
            ScanEvent::FindingReported(FindingReported {
                finding: finding(),
                at: at(5),
            }),
        ]);
    assert_eq!(state.findings, 2, "each finding counts");
    let state = given::<ScanRecord>([requested(), began()])
        .at(at(9))
        .when(ScanCommand::Finish { raw: vec![] })
        .then(vec![finished()]);
    assert_eq!(state.status, ScanStatus::Finished);
}

fn supervision() -> Supervision {
    Supervision {
        dir: "/data/patrowl-work/tcp-42".into(),
        supervisor: 100,
        group: 101,
        boot: "boot".into(),
    }
}

pub(crate) fn supervised() -> ScanEvent {
    ScanEvent::ScanSupervised(ScanSupervised {
        run: supervision(),
        at: at(3),
    })
}

const READ: Offsets = Offsets {
    stdout: 120,
    stderr: 7,
};

#[test]
fn where_the_program_runs_and_how_far_its_output_was_read_are_recorded_with_the_findings() {
    let state = given::<ScanRecord>([requested(), began()])
        .at(at(3))
        .when(ScanCommand::Supervise { run: supervision() })
        .then(vec![supervised()]);
    assert_eq!(
        state.run,
        Some(ScanRun {
            supervision: supervision(),
            read: Offsets::default(),
        })
    );
    // The offset goes in the same append as the findings read up to it.
    let state = given::<ScanRecord>([requested(), began(), supervised()])
        .at(at(4))
        .when(ScanCommand::Record {
            progress: vec![Progress::Finding(Box::new(finding()))],
            read: Some(READ),
        })
        .then(vec![
            ScanEvent::FindingReported(FindingReported {
                finding: finding(),
                at: at(4),
            }),
            ScanEvent::ScanOutputRead(ScanOutputRead {
                read: READ,
                at: at(4),
            }),
        ]);
    assert_eq!(state.run.map(|run| run.read), Some(READ));
    // Without a recorded run, there is nothing to read on from.
    given::<ScanRecord>([requested(), began()])
        .at(at(4))
        .when(ScanCommand::Record {
            progress: vec![Progress::AssetDone("127.0.0.1".into())],
            read: Some(READ),
        })
        .then(vec![ScanEvent::AssetScanned(AssetScanned {
            asset: "127.0.0.1".into(),
            at: at(4),
        })]);
    // However the scan ends, its run is over.
    let stopped = ScanEvent::ScanStopped(ScanStopped {
        by: None,
        at: at(5),
    });
    let failed = ScanEvent::ScanFailed(ScanFailed {
        reason: "r".into(),
        raw: vec![],
        at: at(5),
    });
    for end in [finished(), stopped, failed] {
        let mut state = annals::domain::scan::ScanState::default();
        for event in [requested(), began(), supervised(), end] {
            ScanRecord::apply(&mut state, &event);
        }
        assert_eq!(state.run, None);
    }
}

#[test]
fn an_ended_or_unknown_scan_takes_no_more_work() {
    for command in [
        ScanCommand::Begin,
        ScanCommand::Record {
            progress: vec![Progress::AssetDone("127.0.0.1".into())],
            read: None,
        },
        ScanCommand::Record {
            progress: vec![Progress::Finding(Box::new(finding()))],
            read: None,
        },
        ScanCommand::Supervise { run: supervision() },
        ScanCommand::Finish { raw: vec![] },
        ScanCommand::Fail {
            reason: "x".into(),
            raw: vec![],
        },
    ] {
        refused_when_finished(command.clone());
        refused_when_unknown(command);
    }
}

#[test]
fn a_failure_keeps_its_reason() {
    let state = given::<ScanRecord>([requested(), began()])
        .at(at(5))
        .when(ScanCommand::Fail {
            reason: "the command exited with code 3".into(),
            raw: vec![],
        })
        .then(vec![ScanEvent::ScanFailed(ScanFailed {
            reason: "the command exited with code 3".into(),
            raw: vec![],
            at: at(5),
        })]);
    assert_eq!(state.status, ScanStatus::Error);
    assert_eq!(
        state.reason.as_deref(),
        Some("the command exited with code 3")
    );
}

#[test]
fn a_running_scan_stops_and_an_ended_one_does_not() {
    given::<ScanRecord>([requested(), began()])
        .at(at(5))
        .when(ScanCommand::Stop { by: None })
        .then(vec![ScanEvent::ScanStopped(ScanStopped {
            by: None,
            at: at(5),
        })]);
    refused_when_finished(ScanCommand::Stop { by: None });
    refused_when_unknown(ScanCommand::Stop { by: None });
}

#[test]
fn cleaning_stops_a_running_scan_first_and_happens_once() {
    let state = given::<ScanRecord>([requested(), began()])
        .at(at(6))
        .when(ScanCommand::Clean {
            by: Some("ada".into()),
        })
        .then(vec![
            ScanEvent::ScanStopped(ScanStopped {
                by: Some("ada".into()),
                at: at(6),
            }),
            ScanEvent::ScanCleaned(ScanCleaned {
                by: Some("ada".into()),
                at: at(6),
            }),
        ]);
    assert!(!state.visible());
    given::<ScanRecord>([requested(), began(), finished()])
        .at(at(6))
        .when(ScanCommand::Clean { by: None })
        .then(vec![ScanEvent::ScanCleaned(ScanCleaned {
            by: None,
            at: at(6),
        })]);
    given::<ScanRecord>([
        requested(),
        finished(),
        ScanEvent::ScanCleaned(ScanCleaned {
            by: None,
            at: at(6),
        }),
    ])
    .when(ScanCommand::Clean { by: None })
    .then_rejected(ScanRejection::Cleaned);
    refused_when_unknown(ScanCommand::Clean { by: None });
}

#[test]
fn a_scan_left_running_is_interrupted_at_restart_and_an_ended_one_is_left_alone() {
    let mut state = annals::domain::scan::ScanState::default();
    for event in [requested(), began()] {
        ScanRecord::apply(&mut state, &event);
    }
    assert_eq!(
        ScanRecord::on_restart(&state),
        Some(ScanCommand::MarkInterrupted)
    );
    given::<ScanRecord>([requested(), began()])
        .at(at(7))
        .when(ScanCommand::MarkInterrupted)
        .then(vec![ScanEvent::ScanFailed(ScanFailed {
            reason: INTERRUPTED.into(),
            raw: vec![],
            at: at(7),
        })]);
    refused_when_finished(ScanCommand::MarkInterrupted);
    ScanRecord::apply(&mut state, &finished());
    assert_eq!(ScanRecord::on_restart(&state), None);
    assert_eq!(ScanRecord::in_progress(&requested()), Some(true));
    assert_eq!(ScanRecord::in_progress(&finished()), Some(false));
    assert_eq!(ScanRecord::in_progress(&began()), None);
}

#[test]
fn every_event_round_trips_through_its_codec() {
    let mut events = a_scan();
    events.extend([
        ScanEvent::ScanFailed(ScanFailed {
            reason: "r".into(),
            raw: vec![],
            at: at(5),
        }),
        ScanEvent::ScanStopped(ScanStopped {
            by: None,
            at: at(6),
        }),
        ScanEvent::ScanCleaned(ScanCleaned {
            by: None,
            at: at(7),
        }),
        ScanEvent::ScanReportFetched(ScanReportFetched {
            by: Some("ada".into()),
            at: at(8),
        }),
        supervised(),
        ScanEvent::ScanOutputRead(ScanOutputRead {
            read: READ,
            at: at(4),
        }),
    ]);
    common::assert_round_trips(events);
    common::assert_unknown_version::<ScanEvent>("ScanRequested", 9, &[]);
    common::assert_unknown_type::<ScanEvent>("ScanExploded", &[]);
}

#[test]
fn engine_names_and_scan_ids_are_checked() {
    let too_long = "x".repeat(65);
    let bad = ["", "Nmap", "a-b", "a/b", &too_long];
    common::assert_checked(EngineName::parse, &["nmap_2"], &bad);
    let too_long = "x".repeat(129);
    let bad = ["", "a/b", "a\nb", &too_long];
    common::assert_checked(ScanId::parse, &["42", "scan 42 é"], &bad);
}

#[test]
fn a_tcp_engine_whose_default_options_it_does_not_do_is_refused_at_start() {
    use annals::config::{EngineConfig, ScannerKind};
    use annals::domain::scan::service::Engine;
    let config = |options: toml::Table| EngineConfig {
        name: "tcp".into(),
        scanner: ScannerKind::Tcp,
        allowed_asset_types: vec!["ip".into()],
        options,
        ..EngineConfig::default()
    };
    let error = Engine::parse(&config(toml::toml! { detect_os = 1 })).unwrap_err();
    assert!(
        error.contains("engine tcp: options: ") && error.contains("options.detect_os"),
        "{error}"
    );
    assert!(Engine::parse(&config(toml::toml! { detect_os = 0 })).is_ok());
    assert!(Engine::parse(&config(toml::toml! { ports = ["-"] })).is_ok());
}
