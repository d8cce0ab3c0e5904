//! The read model of scans: per engine, every scan not cleaned with its status, options and
//! number of findings, and how many are active, folded from the `scan` category. It answers
//! an engine's `status` (READY or BUSY, the scan list) without waking any scan's actor, and
//! maps each scan id to the entity of its current use (its incarnation), so that a scan id
//! used again reaches its newest scan while the older ones keep their streams. It only reads
//! the log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{incarnation, ScanEvent, ScanRecord, ScanRejection, ScanStatus};
use crate::events::{CodecError, DomainEvent, RecordedEvent};
use crate::runtime::Projection;

pub struct ScansModel;

/// One scan as the engine's list shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRow {
    pub status: ScanStatus,
    /// The options in effect, as JSON text.
    pub options: String,
    pub nb_findings: u64,
    /// Why the scan failed.
    pub reason: Option<String>,
    /// The entity of this use of the scan id (see [`super::entity_id`]).
    pub entity: String,
    /// Whether its report was fetched, which frees the scan id once the scan has ended.
    pub report_fetched: bool,
}

/// One engine's scans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineScans {
    /// By scan id; cleaned scans leave.
    pub scans: BTreeMap<String, ScanRow>,
    /// How many of them are STARTED or SCANNING.
    pub active: usize,
    /// The ids of cleaned scans (not used again since), each with the entity of its last use,
    /// so that a query about one can say so and a new use takes the next incarnation.
    pub cleaned: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScansState {
    /// By engine name.
    pub engines: BTreeMap<String, EngineScans>,
    /// Entity id to (engine, scan id), for the events that do not repeat them.
    pub index: BTreeMap<String, (String, String)>,
}

impl Projection for ScansModel {
    // 2: rows name their entity, cleaned ids their last entity, and the report's fetch is
    // noted.
    crate::domain::read_model_of!(ScanRecord, "scans", version 2, state ScansState);

    fn apply(&self, state: &mut ScansState, event: &RecordedEvent) -> Result<(), CodecError> {
        let entity = event.stream.entity_id();
        let event = ScanEvent::from_recorded(event)?;
        if let ScanEvent::ScanRequested(e) = &event {
            let (engine, scan_id) = (e.engine.as_str().to_owned(), e.scan_id.as_str().to_owned());
            let scans = state.engines.entry(engine.clone()).or_default();
            // A new use of the id takes the place of the last in the list.
            let earlier = scans.scans.insert(
                scan_id.clone(),
                ScanRow {
                    status: ScanStatus::Started,
                    options: e.options.clone(),
                    nb_findings: 0,
                    reason: None,
                    entity: entity.to_owned(),
                    report_fetched: false,
                },
            );
            if earlier.is_some_and(|row| row.status.active()) {
                scans.active -= 1;
            }
            scans.cleaned.remove(&scan_id);
            scans.active += 1;
            state.index.insert(entity.to_owned(), (engine, scan_id));
            return Ok(());
        }
        let Some((engine, scan_id)) = state.index.get(entity) else {
            return Ok(());
        };
        let Some(scans) = state.engines.get_mut(engine) else {
            return Ok(());
        };
        // Events of an earlier use of the id change nothing the engine shows.
        let Some(row) = scans
            .scans
            .get_mut(scan_id)
            .filter(|row| row.entity == entity)
        else {
            return Ok(());
        };
        if let ScanEvent::ScanCleaned(_) = event {
            if row.status.active() {
                scans.active -= 1;
            }
            scans.scans.remove(scan_id);
            scans.cleaned.insert(scan_id.clone(), entity.to_owned());
            return Ok(());
        }
        let was_active = row.status.active();
        match event {
            ScanEvent::ScanBegan(_) => row.status = ScanStatus::Scanning,
            ScanEvent::FindingReported(_) => row.nb_findings += 1,
            ScanEvent::ScanFinished(_) => row.status = ScanStatus::Finished,
            ScanEvent::ScanFailed(e) => {
                row.status = ScanStatus::Error;
                row.reason = Some(e.reason);
            }
            ScanEvent::ScanStopped(_) => row.status = ScanStatus::Stopped,
            ScanEvent::ScanReportFetched(_) => row.report_fetched = true,
            _ => {}
        }
        if was_active && !row.status.active() {
            scans.active -= 1;
        }
        Ok(())
    }
}

impl ScansState {
    pub fn engine(&self, engine: &str) -> Option<&EngineScans> {
        self.engines.get(engine)
    }

    pub fn active(&self, engine: &str) -> usize {
        self.engine(engine).map_or(0, |scans| scans.active)
    }

    pub fn scan(&self, engine: &str, scan_id: &str) -> Option<&ScanRow> {
        self.engine(engine)
            .and_then(|scans| scans.scans.get(scan_id))
    }

    pub fn cleaned(&self, engine: &str, scan_id: &str) -> bool {
        self.engine(engine)
            .is_some_and(|scans| scans.cleaned.contains_key(scan_id))
    }

    /// The entity of the current use of a scan id: the one in the list, else the last cleaned;
    /// `None` for an id never used.
    pub fn current(&self, engine: &str, scan_id: &str) -> Option<&str> {
        let scans = self.engine(engine)?;
        scans
            .scans
            .get(scan_id)
            .map(|row| row.entity.as_str())
            .or_else(|| scans.cleaned.get(scan_id).map(String::as_str))
    }

    /// Which use (incarnation, from 1) a new scan with this id would be, or why the id is not
    /// free: it is in use while its scan runs, and once it ended until its report is fetched or
    /// it is cleaned.
    pub fn admit(&self, engine: &str, scan_id: &str) -> Result<u32, ScanRejection> {
        let Some(scans) = self.engine(engine) else {
            return Ok(1);
        };
        match scans.scans.get(scan_id) {
            Some(row) if row.status.active() || !row.report_fetched => {
                Err(ScanRejection::AlreadyExists(scan_id.to_owned()))
            }
            Some(row) => Ok(incarnation(&row.entity) + 1),
            None => Ok(scans
                .cleaned
                .get(scan_id)
                .map_or(1, |entity| incarnation(entity) + 1)),
        }
    }
}
