//! The read model of scans: per engine, every scan not cleaned with its status, options and
//! number of findings, and how many are active, folded from the `scan` category. It answers
//! an engine's `status` (READY or BUSY, the scan list) without waking any scan's actor. It
//! only reads the log.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ScanEvent, ScanRecord, ScanStatus};
use crate::actors::{Entity, Projection};
use crate::events::{CodecError, DomainEvent, RecordedEvent};

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
}

/// One engine's scans.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineScans {
    /// By scan id; cleaned scans leave.
    pub scans: BTreeMap<String, ScanRow>,
    /// How many of them are STARTED or SCANNING.
    pub active: usize,
    /// The ids of cleaned scans, so that a query about one can say so.
    pub cleaned: BTreeSet<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScansState {
    /// By engine name.
    pub engines: BTreeMap<String, EngineScans>,
    /// Entity id to (engine, scan id), for the events that do not repeat them.
    pub index: BTreeMap<String, (String, String)>,
}

impl Projection for ScansModel {
    type State = ScansState;

    fn name(&self) -> String {
        "scans".into()
    }

    fn version(&self) -> u32 {
        1
    }

    fn category(&self) -> Option<String> {
        Some(ScanRecord::KIND.into())
    }

    fn apply(&self, state: &mut ScansState, event: &RecordedEvent) -> Result<(), CodecError> {
        let entity = event.stream.entity_id();
        let event = ScanEvent::from_recorded(event)?;
        if let ScanEvent::ScanRequested(e) = &event {
            let (engine, scan_id) = (e.engine.as_str().to_owned(), e.scan_id.as_str().to_owned());
            let scans = state.engines.entry(engine.clone()).or_default();
            scans.scans.insert(
                scan_id.clone(),
                ScanRow {
                    status: ScanStatus::Started,
                    options: e.options.clone(),
                    nb_findings: 0,
                    reason: None,
                },
            );
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
        if let ScanEvent::ScanCleaned(_) = event {
            if let Some(row) = scans.scans.remove(scan_id) {
                if row.status.active() {
                    scans.active -= 1;
                }
            }
            scans.cleaned.insert(scan_id.clone());
            return Ok(());
        }
        let Some(row) = scans.scans.get_mut(scan_id) else {
            return Ok(());
        };
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
            .is_some_and(|scans| scans.cleaned.contains(scan_id))
    }
}
