//! The inventory (the Partisci face's domain): each host's record is an entity, whose events are
//! the version reports accepted for it, the versions expired by retention, and clears. The
//! read model in [`read_model`] answers every query; [`service`] runs commands and the retention
//! sweep. Nothing here knows of HTTP or UDP.

pub mod read_model;
pub mod service;
pub mod values;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::codec::domain_events;
use crate::runtime::entity::{Ctx, Decision, Entity};
pub use service::{Inventory, InventoryError};
pub use values::{InvalidReport, VersionReport};

/// The record of one host.
pub struct HostRecord;

/// How a report arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Udp,
    Http,
}

/// One application instance's latest version on a host, as the queries return it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub app_id: String,
    pub app: String,
    pub ver: String,
    pub host: String,
    pub instance: u16,
    /// The address the report came from, never what the client claimed.
    pub host_ip: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub last_update: DateTime<Utc>,
}

impl Version {
    /// The version a report recorded, last updated when it was.
    pub fn reported(e: &VersionReported) -> Version {
        Version {
            app_id: e.app_id.clone(),
            app: e.app.clone(),
            ver: e.ver.clone(),
            host: e.host.clone(),
            instance: e.instance,
            host_ip: e.host_ip.clone(),
            last_update: e.at,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    /// The host's name, fixed by its first report.
    pub host: Option<String>,
    /// The latest version per `app_id/instance`.
    pub versions: BTreeMap<String, Version>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCommand {
    /// Records a report that came from `host_ip`.
    Report {
        report: VersionReport,
        host_ip: String,
        via: Via,
    },
    /// Expires every version last updated before `before`.
    Expire { before: DateTime<Utc> },
    /// Forgets every version of the host (the history stays in the log).
    Clear,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostRejection {
    /// Two host names mapped to one entity id: refused rather than mixed.
    #[error("this record is host {record:?}, not {reported:?}")]
    OtherHost { record: String, reported: String },
}

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum HostEvent {
        VersionReported version 1 {
            pub app_id: String,
            pub app: String,
            pub ver: String,
            pub host: String,
            pub instance: u16,
            pub host_ip: String,
            pub via: Via,
        },
        VersionExpired version 1 {
            pub app_id: String,
            pub instance: u16,
            /// When the expired version was last reported.
            #[serde(with = "chrono::serde::ts_microseconds")]
            pub last_update: DateTime<Utc>,
        },
        HostCleared version 1 {
            /// How many versions the host had.
            pub versions: u64,
        },
    }
}

/// The key of a version within its host.
fn version_key(app_id: &str, instance: u16) -> String {
    format!("{app_id}/{instance}")
}

/// The entity id of a host's record: the host name itself when it makes a readable stream id,
/// else `~` and a hash of it (empty names, control characters, very long names).
pub fn host_entity_id(host: &str) -> String {
    let readable = !host.is_empty()
        && host.len() <= 150
        && !host.starts_with('~')
        && !host.chars().any(char::is_control);
    if readable {
        host.to_owned()
    } else {
        let digest = Sha256::digest(host.as_bytes());
        format!("~{}", hex::encode(&digest[..16]))
    }
}

impl Entity for HostRecord {
    crate::entity_types!("host" version 1, state HostState,
        HostCommand => HostEvent, rejected HostRejection);

    fn decide(state: &HostState, command: &HostCommand, ctx: &Ctx) -> Decision<Self> {
        match command {
            HostCommand::Report {
                report,
                host_ip,
                via,
            } => {
                if let Some(record) = state.host.as_deref().filter(|h| *h != report.host()) {
                    return Err(HostRejection::OtherHost {
                        record: record.to_owned(),
                        reported: report.host().to_owned(),
                    });
                }
                Ok(vec![HostEvent::VersionReported(VersionReported {
                    app_id: report.app_id(),
                    app: report.app().to_owned(),
                    ver: report.ver().to_owned(),
                    host: report.host().to_owned(),
                    instance: report.instance(),
                    host_ip: host_ip.clone(),
                    via: *via,
                    at: ctx.now,
                })])
            }
            HostCommand::Expire { before } => Ok(state
                .versions
                .values()
                .filter(|version| version.last_update < *before)
                .map(|version| {
                    HostEvent::VersionExpired(VersionExpired {
                        app_id: version.app_id.clone(),
                        instance: version.instance,
                        last_update: version.last_update,
                        at: ctx.now,
                    })
                })
                .collect()),
            HostCommand::Clear if state.versions.is_empty() => Ok(Vec::new()),
            HostCommand::Clear => Ok(vec![HostEvent::HostCleared(HostCleared {
                versions: state.versions.len() as u64,
                at: ctx.now,
            })]),
        }
    }

    fn apply(state: &mut HostState, event: &HostEvent) {
        match event {
            HostEvent::VersionReported(e) => {
                state.host.get_or_insert_with(|| e.host.clone());
                state
                    .versions
                    .insert(version_key(&e.app_id, e.instance), Version::reported(e));
            }
            HostEvent::VersionExpired(e) => {
                state.versions.remove(&version_key(&e.app_id, e.instance));
            }
            HostEvent::HostCleared(_) => state.versions.clear(),
        }
    }
}
