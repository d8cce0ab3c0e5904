//! The inventory's read model: the latest version of every application instance on every
//! host, folded from the `host` category, and the Partisci queries over it. It only reads the
//! log; a host's summary is computed from its versions, never stored separately, so it cannot
//! go stale.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{HostEvent, HostRecord, Version};
use crate::events::{CodecError, DomainEvent, RecordedEvent};
use crate::runtime::Projection;

/// The read model's projection.
pub struct InventoryModel;

/// `(app_id, host, instance)`: distinct keys never collide.
type Key = (String, String, u16);

/// Every known version. Versions are shared, so that a query copies pointers, not strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InventoryState {
    versions: BTreeMap<Key, Arc<Version>>,
    /// The keys of each host's versions, by the host's entity id.
    by_host: BTreeMap<String, BTreeSet<Key>>,
}

/// Exact-match filters of `GET version/`; each one given narrows the answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionFilter {
    pub app_id: Option<String>,
    pub host: Option<String>,
    pub ver: Option<String>,
}

/// One row of `GET app/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AppSummary {
    pub app_id: String,
    /// The name the application last reported itself with.
    pub app: String,
    /// The newest update of any of its versions.
    pub last_update: DateTime<Utc>,
    /// Distinct hosts running it.
    pub host_count: usize,
}

/// One row of `GET host/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostSummary {
    pub host: String,
    pub last_update: DateTime<Utc>,
    /// Distinct applications on it.
    pub app_count: usize,
}

impl Projection for InventoryModel {
    crate::domain::read_model_of!(HostRecord, "inventory", version 1, state InventoryState);

    fn apply(&self, state: &mut InventoryState, event: &RecordedEvent) -> Result<(), CodecError> {
        let entity = event.stream.entity_id();
        match HostEvent::from_recorded(event)? {
            HostEvent::VersionReported(e) => {
                let key = (e.app_id.clone(), e.host.clone(), e.instance);
                state
                    .by_host
                    .entry(entity.to_owned())
                    .or_default()
                    .insert(key.clone());
                state.versions.insert(key, Arc::new(Version::reported(&e)));
            }
            HostEvent::VersionExpired(e) => {
                if let Some(keys) = state.by_host.get_mut(entity) {
                    let expired = keys
                        .iter()
                        .find(|(app_id, _, instance)| {
                            *app_id == e.app_id && *instance == e.instance
                        })
                        .cloned();
                    if let Some(key) = expired {
                        keys.remove(&key);
                        state.versions.remove(&key);
                    }
                    if keys.is_empty() {
                        state.by_host.remove(entity);
                    }
                }
            }
            HostEvent::HostCleared(_) => {
                for key in state.by_host.remove(entity).unwrap_or_default() {
                    state.versions.remove(&key);
                }
            }
        }
        Ok(())
    }
}

impl InventoryState {
    /// The versions matching `filter`, updated at or after `active_since`, in `(app_id, host,
    /// instance)` order.
    pub fn versions<'a>(
        &'a self,
        filter: &'a VersionFilter,
        active_since: Option<DateTime<Utc>>,
    ) -> impl Iterator<Item = &'a Arc<Version>> + 'a {
        // Keys start with the app id: a filter on it reads only that range; a filter on the
        // host reads only that host's keys.
        let candidates: Box<dyn Iterator<Item = &Arc<Version>>> =
            match (&filter.app_id, &filter.host) {
                (Some(app_id), _) => Box::new(
                    self.versions
                        .range((app_id.clone(), String::new(), 0)..)
                        .take_while(move |((id, _, _), _)| id == app_id)
                        .map(|(_, version)| version),
                ),
                (None, Some(host)) => Box::new(
                    self.by_host
                        .get(&super::host_entity_id(host))
                        .into_iter()
                        .flatten()
                        .filter_map(|key| self.versions.get(key)),
                ),
                (None, None) => Box::new(self.versions.values()),
            };
        candidates
            .filter(move |v| filter.host.as_ref().is_none_or(|host| v.host == *host))
            .filter(move |v| filter.ver.as_ref().is_none_or(|ver| v.ver == *ver))
            .filter(move |v| active_since.is_none_or(|since| v.last_update >= since))
    }

    /// Every active application, by app id.
    pub fn apps(&self, active_since: Option<DateTime<Utc>>) -> Vec<AppSummary> {
        let mut apps: BTreeMap<&str, (AppSummary, BTreeSet<&str>)> = BTreeMap::new();
        let all = VersionFilter::default();
        for version in self.versions(&all, active_since) {
            let (summary, hosts) = apps.entry(&version.app_id).or_insert_with(|| {
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
            hosts.insert(&version.host);
        }
        apps.into_values()
            .map(|(mut summary, hosts)| {
                summary.host_count = hosts.len();
                summary
            })
            .collect()
    }

    /// Every active host, by name.
    pub fn hosts(&self, active_since: Option<DateTime<Utc>>) -> Vec<HostSummary> {
        let mut hosts: BTreeMap<&str, (DateTime<Utc>, BTreeSet<&str>)> = BTreeMap::new();
        let all = VersionFilter::default();
        for version in self.versions(&all, active_since) {
            let (last_update, apps) = hosts
                .entry(&version.host)
                .or_insert((version.last_update, BTreeSet::new()));
            *last_update = (*last_update).max(version.last_update);
            apps.insert(&version.app_id);
        }
        hosts
            .into_iter()
            .map(|(host, (last_update, apps))| HostSummary {
                host: host.to_owned(),
                last_update,
                app_count: apps.len(),
            })
            .collect()
    }

    /// The entity ids of hosts with a version last updated before `before`.
    pub fn hosts_stale_before(&self, before: DateTime<Utc>) -> BTreeSet<String> {
        self.versions
            .values()
            .filter(|v| v.last_update < before)
            .map(|v| super::host_entity_id(&v.host))
            .collect()
    }

    /// The entity ids of every host with a version.
    pub fn host_ids(&self) -> impl Iterator<Item = &str> {
        self.by_host.keys().map(String::as_str)
    }

    /// How many versions are known, active or not.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}
