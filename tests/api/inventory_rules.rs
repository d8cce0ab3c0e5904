//! Given/when/then tests of the `host` entity's rules (the inventory face), run without an
//! actor system or a log, and of its event codec and entity ids.

use crate::common;

use annals::domain::inventory::{
    host_entity_id, HostCleared, HostCommand, HostEvent, HostRecord, HostRejection, VersionExpired,
    VersionReport, VersionReported, Via,
};
use annals::events::DomainEvent;
use annals::runtime::testing::given;
use common::at;

fn report(app: &str, ver: &str, host: &str, instance: u16) -> VersionReport {
    let body = serde_json::json!({"app": app, "ver": ver, "host": host, "instance": instance});
    VersionReport::parse(body.to_string().as_bytes()).expect("a valid report")
}

pub(crate) fn reported(app_id: &str, host: &str, instance: u16, micros: i64) -> HostEvent {
    recorded(
        [app_id, app_id, "1", host],
        instance,
        ("10.0.0.1", Via::Udp),
        micros,
    )
}

/// Where [`command`]'s reports come from.
const HTTP: (&str, Via) = ("10.0.0.9", Via::Http);

/// A version recorded at `micros`: its app id, app, version and host, its instance, and the
/// address and the way it came from.
fn recorded(
    [app_id, app, ver, host]: [&str; 4],
    instance: u16,
    (host_ip, via): (&str, Via),
    micros: i64,
) -> HostEvent {
    HostEvent::VersionReported(VersionReported {
        app_id: app_id.into(),
        app: app.into(),
        ver: ver.into(),
        host: host.into(),
        instance,
        host_ip: host_ip.into(),
        via,
        at: at(micros),
    })
}

fn command(report: VersionReport) -> HostCommand {
    HostCommand::Report {
        report,
        host_ip: "10.0.0.9".into(),
        via: Via::Http,
    }
}

#[test]
fn a_report_records_the_version_with_the_servers_address_and_time() {
    let state = given::<HostRecord>([])
        .at(at(7))
        .when(command(report("Demo App", "2.0", "web1", 3)))
        .then(vec![recorded(
            ["demo_app", "Demo App", "2.0", "web1"],
            3,
            HTTP,
            7,
        )]);
    assert_eq!(state.host.as_deref(), Some("web1"));
    assert_eq!(state.versions["demo_app/3"].ver, "2.0");
}

#[test]
fn a_newer_report_replaces_the_instances_version_and_instances_stay_apart() {
    let state = given::<HostRecord>([reported("a", "h", 0, 1), reported("a", "h", 1, 2)])
        .at(at(9))
        .when(command(report("a", "5", "h", 0)))
        .then(vec![recorded(["a", "a", "5", "h"], 0, HTTP, 9)]);
    assert_eq!(state.versions.len(), 2);
    assert_eq!(state.versions["a/0"].ver, "5");
    assert_eq!(state.versions["a/1"].ver, "1");
}

#[test]
fn a_report_for_another_host_name_is_refused() {
    given::<HostRecord>([reported("a", "web1", 0, 1)])
        .when(command(report("a", "1", "web2", 0)))
        .then_rejected(HostRejection::OtherHost {
            record: "web1".into(),
            reported: "web2".into(),
        });
}

#[test]
fn expiry_takes_only_versions_older_than_the_cutoff() {
    let state = given::<HostRecord>([reported("old", "h", 0, 10), reported("new", "h", 0, 50)])
        .at(at(60))
        .when(HostCommand::Expire { before: at(20) })
        .then(vec![HostEvent::VersionExpired(VersionExpired {
            app_id: "old".into(),
            instance: 0,
            last_update: at(10),
            at: at(60),
        })]);
    assert_eq!(state.versions.keys().collect::<Vec<_>>(), ["new/0"]);
}

#[test]
fn expiry_with_nothing_old_writes_nothing() {
    given::<HostRecord>([reported("new", "h", 0, 50)])
        .when(HostCommand::Expire { before: at(20) })
        .then(vec![]);
}

#[test]
fn a_clear_forgets_every_version_and_says_how_many() {
    let state = given::<HostRecord>([reported("a", "h", 0, 1), reported("b", "h", 0, 2)])
        .at(at(3))
        .when(HostCommand::Clear)
        .then(vec![HostEvent::HostCleared(HostCleared {
            versions: 2,
            at: at(3),
        })]);
    assert!(state.versions.is_empty());
    assert_eq!(
        state.host.as_deref(),
        Some("h"),
        "the record keeps its name"
    );
}

#[test]
fn clearing_an_empty_host_writes_nothing() {
    given::<HostRecord>([])
        .when(HostCommand::Clear)
        .then(vec![]);
}

#[test]
fn host_names_that_make_poor_stream_ids_are_hashed() {
    assert_eq!(host_entity_id("web1.example.org"), "web1.example.org");
    for awkward in ["", "~tilde", "tab\there", &"é".repeat(80)] {
        let id = host_entity_id(awkward);
        assert!(id.starts_with('~') && id.len() == 33, "{awkward:?} → {id}");
    }
    assert_ne!(host_entity_id(""), host_entity_id("~tilde"));
}

#[test]
fn events_round_trip_and_unknown_versions_are_refused() {
    for event in [
        reported("a", "h", 1, 5),
        HostEvent::VersionExpired(VersionExpired {
            app_id: "a".into(),
            instance: 1,
            last_update: at(5),
            at: at(6),
        }),
        HostEvent::HostCleared(HostCleared {
            versions: 1,
            at: at(7),
        }),
    ] {
        let decoded =
            HostEvent::decode(event.event_type(), 1, &event.encode_payload()).expect("decodes");
        assert_eq!(decoded, event);
        common::assert_unknown_version::<HostEvent>(event.event_type(), 2, &event.encode_payload());
    }
}
