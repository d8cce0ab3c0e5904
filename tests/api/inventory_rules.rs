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

/// The read model's summaries, kept as versions change, against a fold of the versions
/// themselves, over any sequence of reports, expiries and clears, with retention or without.
mod summaries {
    use std::collections::{BTreeMap, BTreeSet};

    use annals::domain::inventory::read_model::{
        AppSummary, HostSummary, InventoryModel, InventoryState, VersionFilter,
    };
    use annals::domain::inventory::{
        host_entity_id, HostCleared, HostEvent, VersionExpired, VersionReported, Via,
    };
    use annals::events::{DomainEvent, Metadata, RecordedEvent};
    use annals::runtime::Projection;
    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::common;

    /// One change: a report of (app, host, instance) at a time, an expiry of an (app, instance)
    /// on a host, or a clear of a host.
    #[derive(Clone, Debug)]
    enum Change {
        Report(u8, u8, u16, i64),
        Expire(u8, u8, u16),
        Clear(u8),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => (0..4u8, 0..5u8, 0..2u16, 0..20i64)
                .prop_map(|(app, host, instance, at)| Change::Report(app, host, instance, at)),
            1 => (0..4u8, 0..5u8, 0..2u16)
                .prop_map(|(app, host, instance)| Change::Expire(app, host, instance)),
            1 => (0..5u8).prop_map(Change::Clear),
        ]
    }

    fn recorded(host: &str, position: u64, event: HostEvent) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: common::stream(&format!("host-{}", host_entity_id(host))),
            version: position,
            event_id: uuid::Uuid::new_v4(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            recorded_at: common::at(0),
            metadata: Metadata::system(),
            payload: event.encode_payload(),
            hash: Default::default(),
        }
    }

    /// `GET app/` as a fold of every active version: the first by key of the newest names it.
    fn apps_folded(state: &InventoryState, since: Option<DateTime<Utc>>) -> Vec<AppSummary> {
        let mut apps: BTreeMap<String, (AppSummary, BTreeSet<String>)> = BTreeMap::new();
        for version in state.versions(&VersionFilter::default(), since) {
            let (summary, hosts) = apps.entry(version.app_id.clone()).or_insert_with(|| {
                let summary = AppSummary {
                    app_id: version.app_id.clone(),
                    app: version.app.clone(),
                    last_update: version.last_update,
                    host_count: 0,
                };
                (summary, BTreeSet::new())
            });
            if version.last_update > summary.last_update {
                summary.last_update = version.last_update;
                summary.app.clone_from(&version.app);
            }
            hosts.insert(version.host.clone());
        }
        apps.into_values()
            .map(|(summary, hosts)| AppSummary {
                host_count: hosts.len(),
                ..summary
            })
            .collect()
    }

    /// `GET host/` as a fold of every active version.
    fn hosts_folded(state: &InventoryState, since: Option<DateTime<Utc>>) -> Vec<HostSummary> {
        let mut hosts: BTreeMap<String, (DateTime<Utc>, BTreeSet<String>)> = BTreeMap::new();
        for version in state.versions(&VersionFilter::default(), since) {
            let (last_update, apps) = hosts
                .entry(version.host.clone())
                .or_insert((version.last_update, BTreeSet::new()));
            *last_update = (*last_update).max(version.last_update);
            apps.insert(version.app_id.clone());
        }
        hosts
            .into_iter()
            .map(|(host, (last_update, apps))| HostSummary {
                host,
                last_update,
                app_count: apps.len(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn kept_summaries_equal_a_fold_of_the_versions(
            changes in proptest::collection::vec(change(), 0..80),
            since in 0..22i64,
        ) {
            let mut state = InventoryState::default();
            for (position, change) in changes.into_iter().enumerate() {
                let (host, event) = match change {
                    Change::Report(app, host, instance, at) => {
                        let host = format!("h{host}");
                        // Each instance names its application its own way: the newest names
                        // the row.
                        let event = HostEvent::VersionReported(VersionReported {
                            app_id: format!("a{app}"),
                            app: format!("a{app} on {host}/{instance}"),
                            ver: "1".into(),
                            host: host.clone(),
                            instance,
                            host_ip: "10.0.0.1".into(),
                            via: Via::Udp,
                            at: common::at(at),
                        });
                        (host, event)
                    }
                    Change::Expire(app, host, instance) => {
                        let event = HostEvent::VersionExpired(VersionExpired {
                            app_id: format!("a{app}"),
                            instance,
                            last_update: common::at(0),
                            at: common::at(30),
                        });
                        (format!("h{host}"), event)
                    }
                    Change::Clear(host) => {
                        let event = HostEvent::HostCleared(HostCleared {
                            versions: 0,
                            at: common::at(30),
                        });
                        (format!("h{host}"), event)
                    }
                };
                let event = recorded(&host, position as u64 + 1, event);
                InventoryModel.apply(&mut state, &event).unwrap();
            }
            for since in [None, Some(common::at(since))] {
                prop_assert_eq!(state.apps(since), apps_folded(&state, since));
                prop_assert_eq!(state.hosts(since), hosts_folded(&state, since));
                let stale: BTreeSet<String> = state
                    .versions(&VersionFilter::default(), None)
                    .filter(|v| since.is_some_and(|since| v.last_update < since))
                    .map(|v| host_entity_id(&v.host))
                    .collect();
                let before = since.unwrap_or(common::at(0));
                prop_assert_eq!(state.hosts_stale_before(before), stale);
            }
            // Read back from its checkpoint, the state has the same indexes and tallies.
            let stored = rmp_serde::to_vec_named(&state).unwrap();
            let read_back: InventoryState = rmp_serde::from_slice(&stored).unwrap();
            prop_assert_eq!(read_back, state);
        }
    }
}
