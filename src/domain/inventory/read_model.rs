//! The inventory's read model: the latest version of every application instance on every
//! host, folded from the `host` category, and the Partisci queries over it. It only reads the
//! log. Beside the versions it keeps, as they change, a tally of each application's and each
//! host's versions (their times and what they count), so a summary row costs the same however
//! many versions there are, and can never disagree with the versions: both change in one
//! step, under the projection's lock.

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

/// A version's last update and key: the order of the time indexes.
type Dated = (DateTime<Utc>, Key);

/// The smallest key: where a range of [`Dated`] from a time starts.
fn dated_from(at: DateTime<Utc>) -> Dated {
    (at, (String::new(), String::new(), 0))
}

/// Every known version. Versions are shared, so that a query copies pointers, not strings.
/// Stored (in the projection's checkpoint) as its versions and their hosts; the indexes and
/// tallies are made again from them when it is read back.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(from = "Stored")]
pub struct InventoryState {
    versions: BTreeMap<Key, Arc<Version>>,
    /// The keys of each host's versions, by the host's entity id.
    by_host: BTreeMap<String, BTreeSet<Key>>,
    /// Every version by its last update: what retention sweeps.
    by_time: BTreeSet<Dated>,
    /// Each application's versions, by app id: its `GET app/` row.
    apps: BTreeMap<String, Tally>,
    /// Each host's versions, by host name: its `GET host/` row.
    hosts: BTreeMap<String, Tally>,
}

/// What a summary row needs of an application's (or a host's) versions.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tally {
    /// Its versions by last update: the newest dates the row (and names an application); the
    /// oldest tells whether they are all still active.
    by_time: BTreeSet<Dated>,
    /// How many of its versions each host (of an application) or each application (of a host)
    /// has: the row counts them.
    counts: BTreeMap<String, u32>,
}

impl Tally {
    fn add(&mut self, dated: Dated, counted: &str) {
        self.by_time.insert(dated);
        *self.counts.entry(counted.to_owned()).or_default() += 1;
    }

    /// Takes a version off; true when no version is left.
    fn remove(&mut self, dated: &Dated, counted: &str) -> bool {
        self.by_time.remove(dated);
        if let Some(count) = self.counts.get_mut(counted) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(counted);
            }
        }
        self.by_time.is_empty()
    }

    /// The newest version (of those updated last, the first by key) and how many hosts or
    /// applications the versions updated at or after `since` count; `None` when none is.
    /// Versions past retention stay until the sweep expires them: only then are the active
    /// ones counted one by one.
    fn row(
        &self,
        since: Option<DateTime<Utc>>,
        counted: impl Fn(&Key) -> &str,
    ) -> Option<(&Dated, usize)> {
        let (newest, _) = self.by_time.last()?;
        let newest = self.by_time.range(dated_from(*newest)..).next()?;
        let count = match since {
            Some(since) if newest.0 < since => return None,
            Some(since) if self.by_time.first()?.0 < since => self
                .by_time
                .range(dated_from(since)..)
                .map(|(_, key)| counted(key))
                .collect::<BTreeSet<_>>()
                .len(),
            _ => self.counts.len(),
        };
        Some((newest, count))
    }
}

/// What the state's checkpoint holds.
#[derive(Deserialize)]
struct Stored {
    versions: BTreeMap<Key, Arc<Version>>,
}

impl From<Stored> for InventoryState {
    fn from(stored: Stored) -> InventoryState {
        let mut state = InventoryState::default();
        for version in stored.versions.into_values() {
            state.insert(version);
        }
        state
    }
}

impl Serialize for InventoryState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct StoredRef<'a> {
            versions: &'a BTreeMap<Key, Arc<Version>>,
            by_host: &'a BTreeMap<String, BTreeSet<Key>>,
        }
        StoredRef {
            versions: &self.versions,
            by_host: &self.by_host,
        }
        .serialize(serializer)
    }
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
            HostEvent::VersionReported(e) => state.insert(Arc::new(Version::reported(&e))),
            HostEvent::VersionExpired(e) => {
                let expired = state.by_host.get(entity).and_then(|keys| {
                    keys.iter()
                        .find(|(app_id, _, instance)| {
                            *app_id == e.app_id && *instance == e.instance
                        })
                        .cloned()
                });
                if let Some(key) = expired {
                    state.remove(&key);
                }
            }
            HostEvent::HostCleared(_) => {
                for key in state.by_host.get(entity).cloned().unwrap_or_default() {
                    state.remove(&key);
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
        self.apps
            .iter()
            .filter_map(|(app_id, tally)| {
                let ((last_update, key), host_count) = tally.row(active_since, |key| &key.1)?;
                Some(AppSummary {
                    app_id: app_id.clone(),
                    app: self.versions.get(key)?.app.clone(),
                    last_update: *last_update,
                    host_count,
                })
            })
            .collect()
    }

    /// Every active host, by name.
    pub fn hosts(&self, active_since: Option<DateTime<Utc>>) -> Vec<HostSummary> {
        self.hosts
            .iter()
            .filter_map(|(host, tally)| {
                let ((last_update, _), app_count) = tally.row(active_since, |key| &key.0)?;
                Some(HostSummary {
                    host: host.clone(),
                    last_update: *last_update,
                    app_count,
                })
            })
            .collect()
    }

    /// The entity ids of hosts with a version last updated before `before`.
    pub fn hosts_stale_before(&self, before: DateTime<Utc>) -> BTreeSet<String> {
        self.by_time
            .range(..dated_from(before))
            .map(|(_, (_, host, _))| super::host_entity_id(host))
            .collect()
    }

    /// Adds a version, in place of the one its key had.
    fn insert(&mut self, version: Arc<Version>) {
        let key = (
            version.app_id.clone(),
            version.host.clone(),
            version.instance,
        );
        self.remove(&key);
        let dated = (version.last_update, key.clone());
        self.by_time.insert(dated.clone());
        self.apps
            .entry(version.app_id.clone())
            .or_default()
            .add(dated.clone(), &version.host);
        self.hosts
            .entry(version.host.clone())
            .or_default()
            .add(dated, &version.app_id);
        self.by_host
            .entry(super::host_entity_id(&version.host))
            .or_default()
            .insert(key.clone());
        self.versions.insert(key, version);
    }

    /// Takes the version of `key` off, with every trace of it.
    fn remove(&mut self, key: &Key) {
        let Some(version) = self.versions.remove(key) else {
            return;
        };
        let dated = (version.last_update, key.clone());
        self.by_time.remove(&dated);
        let (app_id, host, _) = key;
        if self
            .apps
            .get_mut(app_id)
            .is_some_and(|t| t.remove(&dated, host))
        {
            self.apps.remove(app_id);
        }
        if self
            .hosts
            .get_mut(host)
            .is_some_and(|t| t.remove(&dated, app_id))
        {
            self.hosts.remove(host);
        }
        let entity = super::host_entity_id(host);
        if let Some(keys) = self.by_host.get_mut(&entity) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_host.remove(&entity);
            }
        }
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
