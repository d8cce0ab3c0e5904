//! The scan engines' commands and queries, what the scan engine face's transport calls once
//! per request: start a scan (checked against the engine and its limit of concurrent scans),
//! stop and clean scans, read a scan's status, findings and report. Each scan's work runs in a
//! task started after its request is durable ([`ScanEffects`]), which drives the engine's
//! scanner and sends what it finds to the scan's actor, so that every finding is an event as
//! it is found. Engine state and scan lists come from the read model. It holds no scan state
//! of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::read_model::{EngineScans, ScanRow, ScansModel, ScansState};
use super::{
    entity_id, finding_bytes, Asset, Confidence, Datatype, EngineName, Finding, FindingRecord,
    Progress, ScanCommand, ScanEvent, ScanId, ScanRecord, ScanRejection, ScanRequested, ScanState,
    ScanStatus, Severity, Target,
};
use crate::blobs::{BlobError, BlobStore};
use crate::config::{EngineConfig, OnRestart, ScannerKind};
use crate::domain::scan::scanners::{
    CommandSettings, Ended, Follow, HttpSettings, Job, NmapSettings, Reported, Scanner, TcpSettings,
};
use crate::domain::{start_read_model, wait_folded, Core, MODEL_WAIT};
use crate::events::envelope::MAX_STREAM_ID_LEN;
use crate::events::{EventLog, Metadata, Position, StoreError, StreamId};
use crate::process::supervised::{self, Offsets, Supervision};
use crate::runtime::effects::{self, Cap, FeedLimits, Taken};
use crate::runtime::projection::ProjectionError;
use crate::runtime::{
    reconcile, CommandError, Effects, Entities, Entity, Executed, ProjectionHandle,
};

/// The most reports of a scanner recorded in one append (and waiting in its channel).
const PROGRESS_BATCH: usize = 256;
/// The most findings one scan keeps: a scanner (a `command` program, or what a target makes it
/// report) could otherwise grow a scan's state and log without end. Past it findings are
/// counted, and one last finding says how many were not kept.
pub const MAX_FINDINGS: usize = 10_000;
/// The most bytes of findings one scan keeps (their text fields); past it findings are counted
/// as past [`MAX_FINDINGS`].
pub const MAX_FINDING_BYTES: u64 = 64 * 1024 * 1024;
/// How a scanner's reports reach its scan ([`effects::feed`]): in batches of at most
/// `PROGRESS_BATCH`, at most [`MAX_FINDINGS`] findings and [`MAX_FINDING_BYTES`]; assets done
/// are always recorded.
pub const FINDING_LIMITS: FeedLimits = FeedLimits {
    batch_items: PROGRESS_BATCH,
    max_items: MAX_FINDINGS as u64,
    max_bytes: MAX_FINDING_BYTES,
    ..FeedLimits::DEFAULT
};

impl effects::Weigh for Progress {
    fn bytes(&self) -> usize {
        match self {
            Progress::Finding(finding) => finding_bytes(finding),
            Progress::AssetDone(asset) => asset.len(),
        }
    }

    fn capped(&self) -> bool {
        matches!(self, Progress::Finding(_))
    }
}

impl effects::Weigh for Reported {
    fn bytes(&self) -> usize {
        self.progress.bytes()
    }

    fn capped(&self) -> bool {
        self.progress.capped()
    }
}

/// What a scan may still record within [`FINDING_LIMITS`], given the findings it kept already
/// (a scan followed after a restart).
fn remaining_limits(state: &ScanState) -> FeedLimits {
    FeedLimits {
        max_items: FINDING_LIMITS.max_items.saturating_sub(state.findings),
        max_bytes: FINDING_LIMITS.max_bytes.saturating_sub(state.finding_bytes),
        ..FINDING_LIMITS
    }
}

/// How long start-up waits for the read model to fold the log.
const STARTUP_WAIT: Duration = Duration::from_secs(3600);
/// How long start-up may take to settle scans left running.
const RECONCILE_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum EnginesError {
    #[error("no engine is called {0:?}")]
    UnknownEngine(String),
    #[error("Scan refused: max concurrent active scans reached ({0})")]
    Busy(usize),
    /// The engine is in ERROR.
    #[error("Scan refused: {0}")]
    EngineError(String),
    /// The request cannot be scanned as it is (a bad asset, bad options).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Rejected(ScanRejection),
    #[error("scan {0:?} is {status}, not ended: its findings are not final", status = .1.as_str())]
    NotEnded(String, ScanStatus),
    /// What the request asked to record makes an event over the log's size limit.
    #[error("the scan is too large to keep: {0}")]
    TooLarge(#[source] CommandError<ScanRejection>),
    /// The log or an actor failed: nothing was acknowledged.
    #[error("not recorded: {0}")]
    NotRecorded(#[source] CommandError<ScanRejection>),
    #[error(transparent)]
    Model(#[from] ProjectionError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the report cannot be written: {0}")]
    Report(String),
    /// The engine's scans on every node could not be counted (a PostgreSQL log unreachable).
    #[error("the engine's active scans cannot be counted: {0}")]
    Admission(#[source] StoreError),
    /// A scan's findings could not be read from its stream.
    #[error("the findings cannot be read: {0}")]
    Store(#[from] StoreError),
}

impl From<CommandError<ScanRejection>> for EnginesError {
    fn from(error: CommandError<ScanRejection>) -> Self {
        match error {
            CommandError::Rejected(rejection) => EnginesError::Rejected(rejection),
            other if other.is_too_large() => EnginesError::TooLarge(other),
            other => EnginesError::NotRecorded(other),
        }
    }
}

/// One engine as declared, parsed: what the face shows of it and the scanner it runs.
#[derive(Debug)]
pub struct Engine {
    pub name: EngineName,
    pub version: String,
    pub description: String,
    pub allowed: Vec<Datatype>,
    /// The most scans STARTED or SCANNING at once; at least 1.
    pub max_scans: usize,
    /// The options every scan gets, which its own override key by key.
    pub defaults: Map<String, Value>,
    pub scanner: Scanner,
    /// Why the engine cannot scan (a `command` engine whose program is missing), as last
    /// checked: at start-up and by `reloadconfig`. The engine is then in ERROR.
    problem: std::sync::RwLock<Option<String>>,
}

impl Engine {
    /// Parses an engine's declaration: its name, asset types, default options and scanner
    /// settings. Its program, if any, is not looked for: [`Engine::check_program`] does.
    pub fn parse(config: &EngineConfig) -> Result<Engine, String> {
        let name = EngineName::parse(&config.name)?;
        let allowed = config
            .allowed_asset_types
            .iter()
            .map(|raw| {
                Datatype::parse(raw).ok_or_else(|| {
                    format!(
                        "engine {}: allowed_asset_types: {raw:?} is not a Patrowl datatype",
                        config.name
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if allowed.is_empty() {
            return Err(format!(
                "engine {}: allowed_asset_types is empty",
                config.name
            ));
        }
        if config.max_scans == 0 {
            return Err(format!(
                "engine {}: max_scans must be at least 1",
                config.name
            ));
        }
        let scanner = match config.scanner {
            ScannerKind::Tcp => Scanner::Tcp(TcpSettings {
                concurrency: config.concurrency.max(1),
                connect_timeout: Duration::from_millis(config.connect_timeout_ms.max(1)),
                max_hosts: config.max_hosts,
            }),
            ScannerKind::Http => Scanner::Http(HttpSettings {
                request_timeout: Duration::from_millis(config.request_timeout_ms.max(1)),
            }),
            ScannerKind::Nmap => {
                if config.program.trim().is_empty() {
                    return Err(format!(
                        "engine {}: an nmap engine needs `program` (nmap's path or name)",
                        config.name
                    ));
                }
                Scanner::Nmap(NmapSettings {
                    program: config.program.clone(),
                    privileged: config.privileged,
                    max_hosts: config.max_hosts as u128,
                    timeout: Duration::from_secs(config.timeout_s.max(1)),
                    kill_grace: Duration::from_secs(config.kill_grace_s),
                })
            }
            ScannerKind::Command => {
                let Some((program, args)) = config.command.split_first() else {
                    return Err(format!(
                        "engine {}: a command engine needs `command` (the program and its \
                         arguments)",
                        config.name
                    ));
                };
                Scanner::Command(CommandSettings {
                    program: program.clone(),
                    args: args.to_vec(),
                    timeout: Duration::from_secs(config.timeout_s.max(1)),
                    kill_grace: Duration::from_secs(config.kill_grace_s),
                })
            }
        };
        let defaults = match serde_json::to_value(&config.options) {
            Ok(Value::Object(map)) => map,
            _ => return Err(format!("engine {}: options must be a table", config.name)),
        };
        // Defaults every scan gets must be ones the scanner takes, or every scan is refused.
        scanner
            .check_options(&defaults)
            .map_err(|e| format!("engine {}: options: {e}", config.name))?;
        Ok(Engine {
            name,
            version: config.version.clone(),
            description: config.description.clone(),
            allowed,
            max_scans: config.max_scans,
            defaults,
            scanner,
            problem: Default::default(),
        })
    }

    /// Why the engine cannot scan, if it cannot.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Looks for a `command` engine's program again (the server's `PATH` for a bare name, as
    /// the program is run), and returns why the engine cannot scan, if it cannot.
    pub fn check_program(&self) -> Option<String> {
        let found = self
            .scanner
            .program()
            .is_none_or(|program| crate::process::find_program(program, None, None));
        self.set_program_found(found)
    }

    /// Records whether a `command` engine's program was found, looked for by the caller;
    /// returns why the engine cannot scan, if it cannot.
    pub fn set_program_found(&self, found: bool) -> Option<String> {
        let problem = match self.scanner.program() {
            Some(program) if !found => Some(format!(
                "engine {} cannot scan: its program {program:?} is not found or not executable{}",
                self.name.as_str(),
                match self.scanner {
                    Scanner::Nmap(_) => " (install nmap: Debian's `nmap` package)",
                    _ => "",
                }
            )),
            _ => None,
        };
        *self.problem.write().unwrap_or_else(|p| p.into_inner()) = problem.clone();
        problem
    }
}

/// What an engine's status shows, as of a position of the read model.
#[derive(Clone, Debug)]
pub struct EngineStatus {
    pub position: Position,
    pub busy: bool,
    /// The read model stopped: what it shows may be stale, and the engine is in ERROR.
    pub failed: bool,
    pub scans: EngineScans,
}

/// What a client asks of a scan once it runs or has run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanAction {
    /// Stop it while it runs.
    Stop,
    /// Remove it from the engine's list (stopping it first if it runs); its history stays.
    Clean,
    /// Note that its report was fetched, which frees its id for a new scan.
    ReportFetched,
}

impl ScanAction {
    fn command(self, by: Option<String>) -> ScanCommand {
        match self {
            ScanAction::Stop => ScanCommand::Stop { by },
            ScanAction::Clean => ScanCommand::Clean { by },
            ScanAction::ReportFetched => ScanCommand::RecordReportFetched { by },
        }
    }
}

/// The engines of one server. Cheap to clone.
#[derive(Clone)]
pub struct Engines {
    engines: Arc<BTreeMap<String, Arc<Engine>>>,
    scans: Entities<ScanRecord>,
    model: ProjectionHandle<ScansState>,
    blobs: BlobStore,
    /// Where a scan's findings are read from: its stream.
    log: EventLog,
    /// One lock per engine, held while a start is checked against the engine's limit and
    /// recorded, so that two starts cannot both take the last place.
    starting: Arc<HashMap<String, tokio::sync::Mutex<()>>>,
}

impl Engines {
    /// Starts the scan directory, the read model (waiting until it has folded the log) and
    /// takes over the scans left running by the previous process, on the current actix
    /// system: with `on_restart` [`OnRestart::Reattach`], a scan whose program runs on under
    /// its supervisor is followed again ([`ScanEffects::resume`]); every other is settled as
    /// interrupted once whatever it left running is stopped.
    pub async fn start(
        core: &Core,
        blobs: BlobStore,
        engines: Vec<Arc<Engine>>,
        on_restart: OnRestart,
    ) -> anyhow::Result<Engines> {
        let log = &core.log;
        let engines: Arc<BTreeMap<String, Arc<Engine>>> = Arc::new(
            engines
                .into_iter()
                .map(|engine| (engine.name.as_str().to_owned(), engine))
                .collect(),
        );
        let runs = log.path().join(WORK_DIR);
        let effects = Arc::new(ScanEffects {
            engines: engines.clone(),
            blobs: blobs.clone(),
            stops: Arc::default(),
            runs: runs.clone(),
            reattach: on_restart == OnRestart::Reattach,
        });
        let scans = core.entities_with(effects.clone());
        let running = reconcile::track_in_progress::<ScanRecord>(log)?;
        running.wait_for(log.head(), RECONCILE_WAIT).await?;
        let ids = running.read(|view| reconcile::held_in_progress::<ScanRecord>(log, &view.state));
        let (mut resumed, mut interrupted) = (Vec::new(), Vec::new());
        for id in ids {
            let goes_on = match scans.state(&id).await {
                Ok((_, state)) => effects.resume(&id, &state),
                Err(_) => None,
            };
            match goes_on {
                Some(work) => resumed.push(work),
                None => interrupted.push(id),
            }
        }
        // Programs of a previous process that no scan follows on are stopped, and their run
        // directories removed, before their scans are settled as interrupted.
        let keep: Vec<std::path::PathBuf> = resumed
            .iter()
            .map(|work| work.job.run_dir.clone())
            .collect();
        let root = runs.clone();
        let stopped = crate::runtime::blocking(move || {
            std::fs::create_dir_all(&root)?;
            supervised::stop_all_but(&root, &keep)
        })
        .await??;
        if stopped > 0 {
            tracing::info!(count = stopped, "scan programs left running were stopped");
        }
        for id in &interrupted {
            if let Err(error) = scans.reconcile(id).await {
                tracing::warn!(%id, %error, "could not settle a scan after restart");
            }
        }
        if !interrupted.is_empty() {
            tracing::info!(
                count = interrupted.len(),
                "scans left running were marked interrupted"
            );
        }
        if !resumed.is_empty() {
            tracing::info!(count = resumed.len(), "scans go on after a restart");
        }
        let model = start_read_model(ScansModel, core, STARTUP_WAIT).await?;
        let starting = Arc::new(
            engines
                .keys()
                .map(|name| (name.clone(), tokio::sync::Mutex::new(())))
                .collect(),
        );
        for work in resumed {
            effects.launch(work, &scans);
        }
        Ok(Engines {
            engines,
            scans,
            model,
            blobs,
            log: log.clone(),
            starting,
        })
    }

    pub fn engine(&self, name: &str) -> Result<&Arc<Engine>, EnginesError> {
        self.engines
            .get(name)
            .ok_or_else(|| EnginesError::UnknownEngine(name.to_owned()))
    }

    /// Every engine, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.engines.keys().map(String::as_str)
    }

    /// The engine's scans and whether it is busy, from the read model.
    pub fn status(&self, name: &str) -> Result<EngineStatus, EnginesError> {
        let engine = self.engine(name)?;
        let max = engine.max_scans;
        Ok(self.model.read(|view| {
            let scans = view.state.engine(name).cloned().unwrap_or_default();
            EngineStatus {
                position: view.position,
                busy: scans.active >= max,
                failed: self.model.failure().is_some() || engine.problem().is_some(),
                scans,
            }
        }))
    }

    /// Each engine's scans (those not cleaned) counted by status, from the read model: what
    /// an overview shows, without copying any scan.
    pub fn scans_by_status(&self) -> Vec<(String, BTreeMap<&'static str, u64>)> {
        self.model.read(|view| {
            self.names()
                .map(|name| {
                    let mut counts = BTreeMap::new();
                    for row in view
                        .state
                        .engine(name)
                        .iter()
                        .flat_map(|e| e.scans.values())
                    {
                        *counts.entry(row.status.as_str()).or_insert(0) += 1;
                    }
                    (name.to_owned(), counts)
                })
                .collect()
        })
    }

    /// Why the read model stopped, if it did.
    pub fn failure(&self) -> Option<String> {
        self.model.failure()
    }

    /// The position the read model has folded, for callers that cache what they render.
    pub fn position(&self) -> Position {
        self.model.position()
    }

    /// One scan's row, from the read model; a cleaned or unknown scan is
    /// [`ScanRejection::Unknown`].
    pub fn scan_status(&self, name: &str, scan_id: &str) -> Result<ScanRow, EnginesError> {
        self.engine(name)?;
        self.model
            .read(|view| match view.state.scan(name, scan_id) {
                Some(row) => Ok(row.clone()),
                None if view.state.cleaned(name, scan_id) => {
                    Err(EnginesError::Rejected(ScanRejection::Cleaned))
                }
                None => Err(EnginesError::Rejected(ScanRejection::Unknown)),
            })
    }

    /// Starts a scan: checks its assets and options against the engine's scanner, refuses it
    /// when the engine is busy, records the request (the scan's rules refuse a duplicate id,
    /// no assets and datatypes the engine does not scan) and returns once `status` shows it.
    /// The scan's work starts once the request is durable.
    pub async fn start_scan(
        &self,
        name: &str,
        scan_id: ScanId,
        assets: Vec<Asset>,
        options: Map<String, Value>,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<(), EnginesError> {
        let engine = self.engine(name)?.clone();
        if let Some(problem) = engine.problem() {
            return Err(EnginesError::EngineError(problem));
        }
        let mut merged = engine.defaults.clone();
        merged.extend(options);
        // The scan's rules refuse an empty scan, too many assets and a datatype the engine does
        // not scan, with their own reasons, before the scanner looks at any asset; the scanner
        // checks the rest.
        let counted = !assets.is_empty() && assets.len() <= super::MAX_ASSETS;
        if counted && assets.iter().all(|a| engine.allowed.contains(&a.datatype)) {
            engine
                .scanner
                .check(&assets, &merged)
                .map_err(EnginesError::Invalid)?;
        }
        let command = ScanCommand::Request {
            engine: engine.name.clone(),
            scan_id: scan_id.clone(),
            assets,
            options: Value::Object(merged).to_string(),
            allowed: engine.allowed.clone(),
            by,
        };
        let _admitting = match self.starting.get(name) {
            Some(lock) => lock.lock().await,
            None => return Err(EnginesError::UnknownEngine(name.to_owned())),
        };
        // The engine's lock across every node of the log, and the read model caught up with
        // every scan requested before it was taken: `max_scans` holds across the nodes.
        let everywhere = self
            .log
            .exclusive(&format!("patrowl-admission:{name}"))
            .await
            .map_err(EnginesError::Admission)?;
        if let Some(head) = everywhere.caught_up_to() {
            self.model.wait_for(head, MODEL_WAIT).await?;
        }
        // Under the engine's lock, and with every earlier command folded, the read model says
        // whether the id is free and which use of it this is. A duplicate id is a duplicate
        // whether or not the engine is busy.
        let (incarnation, active) = self.model.read(|view| {
            (
                view.state.admit(name, scan_id.as_str()),
                view.state.active(name),
            )
        });
        let id = entity_id(
            &engine.name,
            &scan_id,
            incarnation.map_err(EnginesError::Rejected)?,
        );
        if active >= engine.max_scans {
            return Err(EnginesError::Busy(engine.max_scans));
        }
        if StreamId::of(ScanRecord::KIND, &id).is_err() {
            return Err(EnginesError::Invalid(format!(
                "scan id {:?} is too long to be used again on engine {name}: its stream's name \
                 would be over {MAX_STREAM_ID_LEN} bytes",
                scan_id.as_str()
            )));
        }
        let executed = self.scans.execute(&id, command, metadata).await?;
        self.folded(&executed).await
    }

    /// Waits until the read model has folded what a command wrote.
    async fn folded(&self, executed: &Executed<ScanRecord>) -> Result<(), EnginesError> {
        Ok(wait_folded(&self.model, executed).await?)
    }

    /// The entity of the current use of a scan id (see [`ScansState::current`]).
    fn current(&self, name: &str, scan_id: &str) -> Result<String, EnginesError> {
        self.engine(name)?;
        self.model
            .read(|view| view.state.current(name, scan_id).map(str::to_owned))
            .ok_or(EnginesError::Rejected(ScanRejection::Unknown))
    }

    /// A scan's state and the version of its stream it was folded at; unknown and cleaned
    /// scans are refused.
    async fn scan(
        &self,
        name: &str,
        scan_id: &str,
    ) -> Result<(String, u64, ScanState), EnginesError> {
        let id = self.current(name, scan_id)?;
        let (version, state) = self.scans.state(&id).await?;
        match (&state.request, state.cleaned) {
            (None, _) => Err(EnginesError::Rejected(ScanRejection::Unknown)),
            (Some(_), true) => Err(EnginesError::Rejected(ScanRejection::Cleaned)),
            (Some(_), false) => Ok((id, version, state)),
        }
    }

    /// A scan that has ended (finished, failed or stopped), with its findings: read from its
    /// stream, off the async threads, up to the version its state was folded at (no finding
    /// comes after the end).
    pub async fn ended_scan(
        &self,
        name: &str,
        scan_id: &str,
    ) -> Result<(ScanState, Vec<FindingRecord>), EnginesError> {
        let (id, version, state) = self.scan(name, scan_id).await?;
        if state.status.active() {
            return Err(EnginesError::NotEnded(scan_id.to_owned(), state.status));
        }
        let stream = StreamId::of(ScanRecord::KIND, &id)
            .map_err(|_| EnginesError::Rejected(ScanRejection::Unknown))?;
        let (log, capacity) = (self.log.clone(), state.findings);
        let findings =
            crate::runtime::blocking(move || read_findings(&log, &stream, version, capacity))
                .await
                .map_err(|stopped| StoreError::Corrupt {
                    what: "a read of findings".into(),
                    reason: stopped.to_string(),
                })??;
        Ok((state, findings))
    }

    /// Sends `command` to one scan and waits for the read model.
    async fn command(
        &self,
        name: &str,
        scan_id: &str,
        command: ScanCommand,
        metadata: Metadata,
    ) -> Result<(), EnginesError> {
        let id = self.current(name, scan_id)?;
        let executed = self.scans.execute(&id, command, metadata).await?;
        self.folded(&executed).await
    }

    /// Does `action` to one scan, for `by`.
    pub async fn act(
        &self,
        name: &str,
        scan_id: &str,
        action: ScanAction,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<(), EnginesError> {
        self.command(name, scan_id, action.command(by), metadata)
            .await
    }

    /// Does `action` to every scan of the engine it concerns (stopping: the running ones;
    /// otherwise every listed one); returns their ids. A scan that ended or left meanwhile is
    /// skipped.
    pub async fn act_on_every(
        &self,
        name: &str,
        action: ScanAction,
        by: Option<String>,
        metadata: Metadata,
    ) -> Result<Vec<String>, EnginesError> {
        let active_only = action == ScanAction::Stop;
        let ids: Vec<String> = self
            .status(name)?
            .scans
            .scans
            .into_iter()
            .filter(|(_, row)| !active_only || row.status.active())
            .map(|(id, _)| id)
            .collect();
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            match self
                .act(name, &id, action, by.clone(), metadata.clone())
                .await
            {
                Ok(()) => done.push(id),
                Err(EnginesError::Rejected(_)) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(done)
    }

    /// The report of an ended scan as a ZIP archive: `findings.json` (what `render` writes
    /// from the scan's state and findings) and each raw output under `raw/`.
    pub async fn report_zip(
        &self,
        name: &str,
        scan_id: &str,
        render: impl FnOnce(&ScanState, &[FindingRecord]) -> Vec<u8>,
    ) -> Result<Vec<u8>, EnginesError> {
        let (state, findings) = self.ended_scan(name, scan_id).await?;
        let findings = render(&state, &findings);
        let (blobs, raw) = (self.blobs.clone(), state.raw.clone());
        crate::runtime::blocking(move || -> Result<Vec<u8>, EnginesError> {
            let mut entries = vec![("findings.json".to_owned(), findings)];
            for output in raw {
                entries.push((
                    format!("raw/{}", output.name),
                    blobs.get(&output.blob.sha256)?,
                ));
            }
            super::archive::zip(&entries).map_err(EnginesError::Report)
        })
        .await
        .map_err(|stopped| EnginesError::Report(stopped.to_string()))?
    }
}

/// Starts each scan's work once its request is durable, and stops it when the scan is stopped.
pub struct ScanEffects {
    engines: Arc<BTreeMap<String, Arc<Engine>>>,
    blobs: BlobStore,
    /// The stop signal of each scan whose work runs, by entity id.
    stops: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
    /// Where `command` scanners make their programs' run directories.
    runs: std::path::PathBuf,
    /// Whether a restart follows the programs a previous process left running (else they are
    /// stopped and their scans interrupted).
    reattach: bool,
}

/// Where the scan engine face's programs have their run directories, under the data
/// directory.
pub const WORK_DIR: &str = "patrowl-work";

/// One scan's work, ready to run.
struct Work {
    id: String,
    engine: Arc<Engine>,
    job: Job,
    /// What the scan may still record.
    limits: FeedLimits,
    /// The supervision of a program found from its run directory alone (a previous process
    /// ended before recording it): recorded before anything else.
    unrecorded: Option<Supervision>,
}

impl ScanEffects {
    /// The run directory of scan `id`'s program: named after the scan, so that a restart finds
    /// the program before its supervision is recorded.
    fn run_dir(&self, id: &str) -> std::path::PathBuf {
        self.runs.join(id)
    }

    /// The work of scan `id` as requested, its program to start afresh.
    fn job(&self, id: &str, requested: &ScanRequested) -> Job {
        let options = match serde_json::from_str(&requested.options) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        Job {
            engine: requested.engine.as_str().to_owned(),
            scan_id: requested.scan_id.as_str().to_owned(),
            assets: requested.assets.clone(),
            options,
            run_dir: self.run_dir(id),
            follow: None,
        }
    }

    /// What becomes of a scan a previous process left running. With re-attachment on, a scan
    /// of a `command` engine still configured whose program was started goes on: its program
    /// is followed from where its output was recorded (one whose supervision was not recorded
    /// yet, from its run directory, when it recorded no report), and a program whose
    /// supervisor is gone without an end has its group killed and fails the scan as
    /// interrupted. Otherwise `None`: the caller stops what the scan left running and settles
    /// it as interrupted.
    fn resume(&self, id: &str, state: &ScanState) -> Option<Work> {
        let requested = state.request.as_ref()?;
        let engine = self.engines.get(requested.engine.as_str())?.clone();
        if !self.reattach || !state.status.active() || engine.scanner.program().is_none() {
            return None;
        }
        let (run, read, unrecorded) = match &state.run {
            Some(run) => (run.supervision.clone(), run.read, None),
            // Reports recorded without a run: where they were read up to is unknown.
            None if state.findings > 0 || !state.assets_done.is_empty() => return None,
            None => {
                let run = supervised::recover(&self.run_dir(id))?;
                (run.clone(), Offsets::default(), Some(run))
            }
        };
        let mut job = self.job(id, requested);
        job.run_dir = run.dir.clone();
        job.follow = Some(Follow { run, read });
        Some(Work {
            id: id.to_owned(),
            engine,
            job,
            limits: remaining_limits(state),
            unrecorded,
        })
    }

    /// Runs `work` until its scan ends; a stop of the scan stops it.
    fn launch(&self, work: Work, entities: &Entities<ScanRecord>) {
        let (stop, stopped) = watch::channel(false);
        lock(&self.stops).insert(work.id.clone(), stop);
        actix_rt::spawn(drive(
            work,
            stopped,
            entities.clone(),
            self.blobs.clone(),
            self.stops.clone(),
        ));
    }
}

impl Effects<ScanRecord> for ScanEffects {
    fn after_commit(
        &self,
        id: &str,
        _: &ScanState,
        events: &[ScanEvent],
        entities: &Entities<ScanRecord>,
    ) {
        for event in events {
            match event {
                ScanEvent::ScanRequested(requested) => {
                    let Some(engine) = self.engines.get(requested.engine.as_str()).cloned() else {
                        tracing::warn!(%id, "a scan names an engine no longer configured");
                        continue;
                    };
                    let work = Work {
                        id: id.to_owned(),
                        engine,
                        job: self.job(id, requested),
                        limits: FINDING_LIMITS,
                        unrecorded: None,
                    };
                    self.launch(work, entities);
                }
                ScanEvent::ScanStopped(_) => {
                    if let Some(stop) = lock(&self.stops).get(id) {
                        stop.send_replace(true);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The findings of a scan's stream up to `until`, numbered from 1 in the order found; `capacity`,
/// how many its state counts. Blocking: it reads the store.
fn read_findings(
    log: &EventLog,
    stream: &StreamId,
    until: u64,
    capacity: u64,
) -> Result<Vec<FindingRecord>, EnginesError> {
    let mut findings = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    crate::runtime::state::visit_stream::<ScanRecord>(log, stream, 0, until, |_, event| {
        if let ScanEvent::FindingReported(reported) = event {
            findings.push(FindingRecord {
                issue_id: findings.len() as u64 + 1,
                finding: reported.finding,
                at: reported.at,
            });
        }
        true
    })?;
    Ok(findings)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a batch of progress on the scan; false when the scan takes no more (stopped,
/// cleaned, or the log failed: the scanner is then told by its closed channel).
async fn record(
    entities: &Entities<ScanRecord>,
    id: &str,
    batch: Vec<Reported>,
    metadata: &Metadata,
) -> bool {
    // Reports come in the order read: the last offset is where the output goes on after them.
    let read = batch.iter().rev().find_map(|reported| reported.read);
    let command = ScanCommand::Record {
        progress: batch
            .into_iter()
            .map(|reported| reported.progress)
            .collect(),
        read,
    };
    match entities.execute(id, command, metadata.clone()).await {
        Ok(_) => true,
        Err(error) => {
            if !matches!(error, CommandError::Rejected(ScanRejection::NotRunning(_))) {
                tracing::warn!(%id, %error, "a scan's progress was not recorded");
            }
            false
        }
    }
}

/// The last finding of a scan whose scanner reported more than [`FINDING_LIMITS`] allow.
fn findings_dropped(dropped: u64, cap: Cap, assets: &[String]) -> Finding {
    let limit = match cap {
        Cap::Items => format!("the limit of {MAX_FINDINGS}"),
        Cap::Bytes => format!("the limit of {} MiB of findings", MAX_FINDING_BYTES >> 20),
    };
    Finding {
        severity: Severity::Info,
        confidence: Confidence::Certain,
        title: format!("{dropped} more findings were not kept"),
        description: format!(
            "The scanner reported {dropped} findings past {limit} per scan; \
             they were counted, not kept. Narrow the scan to see them."
        ),
        solution: "Scan fewer assets or ports at a time.".into(),
        kind: "findings_dropped".into(),
        target: Target {
            addr: assets.to_vec(),
            ..Target::default()
        },
        raw: None,
        tags: Vec::new(),
        links: Vec::new(),
        vuln_refs: Default::default(),
    }
}

/// Records where scan `id`'s program runs.
async fn supervise(
    entities: &Entities<ScanRecord>,
    id: &str,
    run: Supervision,
    metadata: &Metadata,
) {
    let command = ScanCommand::Supervise { run };
    match entities.execute(id, command, metadata.clone()).await {
        Ok(_) | Err(CommandError::Rejected(ScanRejection::NotRunning(_))) => {}
        Err(error) => tracing::warn!(%id, %error, "where a scan's program runs was not recorded"),
    }
}

/// One scan's work: marks it begun, runs the scanner (recording where its program runs, if it
/// has one, before anything it reports), records its findings and assets as they come
/// (through [`effects::feed`], within the work's limits), keeps the raw outputs in the blob
/// store and ends the scan with them; then removes its program's run directory.
async fn drive(
    work: Work,
    stopped: watch::Receiver<bool>,
    entities: Entities<ScanRecord>,
    blobs: BlobStore,
    stops: Arc<Mutex<HashMap<String, watch::Sender<bool>>>>,
) {
    let Work {
        id,
        engine,
        job,
        limits,
        unrecorded,
    } = work;
    let metadata = Metadata::system();
    if let Err(error) = entities
        .execute(&id, ScanCommand::Begin, metadata.clone())
        .await
    {
        // Stopped before its work began, or the log failed: nothing to run. A program that
        // runs already is followed even so: the stop stops it, and its end is seen.
        if !matches!(error, CommandError::Rejected(ScanRejection::NotRunning(_))) {
            tracing::warn!(%id, %error, "a scan's work did not begin");
        }
        if job.follow.is_none() {
            lock(&stops).remove(&id);
            return;
        }
    }
    if let Some(run) = unrecorded {
        supervise(&entities, &id, run, &metadata).await;
    }
    let run_dir = job.run_dir.clone();
    let assets: Vec<String> = job.assets.iter().map(|a| a.value.clone()).collect();
    let (progress, mut reports) = mpsc::channel(PROGRESS_BATCH);
    let (supervised, supervision) = oneshot::channel();
    let scanner = {
        let engine = engine.clone();
        actix_rt::spawn(async move { engine.scanner.run(job, progress, stopped, supervised).await })
    };
    // Recorded before the first report, so that every report's offset is recorded with it.
    if let Ok(run) = supervision.await {
        supervise(&entities, &id, run, &metadata).await;
    }
    // What the scanner reported while the last batch was being written goes in the next one:
    // one append for many findings when they come fast, one for each when they come slowly.
    let fed = effects::feed(&mut reports, &limits, |batch| {
        let (entities, id, metadata) = (entities.clone(), id.clone(), metadata.clone());
        async move {
            if record(&entities, &id, batch, &metadata).await {
                Taken::More
            } else {
                Taken::Stop
            }
        }
    })
    .await;
    // A scanner still reporting sees the channel closed and stops.
    drop(reports);
    if let Some(cap) = fed.capped {
        let batch = vec![Reported {
            progress: Progress::Finding(Box::new(findings_dropped(fed.dropped, cap, &assets))),
            read: None,
        }];
        record(&entities, &id, batch, &metadata).await;
    }
    let ended = scanner.await.unwrap_or_else(|_| Ended {
        result: Err("the scanner stopped unexpectedly".into()),
        raw: Vec::new(),
    });
    let Ended { result, raw } = ended;
    let raw = crate::runtime::blocking(move || {
        raw.into_iter()
            .filter_map(|(name, bytes)| match blobs.put(&bytes) {
                Ok(blob) => Some(super::RawOutput { name, blob }),
                Err(error) => {
                    tracing::warn!(%error, "a scan's raw output was not kept");
                    None
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let command = match result {
        Ok(()) => ScanCommand::Finish { raw },
        Err(reason) => ScanCommand::Fail { reason, raw },
    };
    match entities.execute(&id, command, metadata).await {
        Ok(_) | Err(CommandError::Rejected(ScanRejection::NotRunning(_))) => {
            // The end is in the log: nothing of the run is wanted any more. (Unrecorded, the
            // run stays for the next start to follow.)
            let removed = crate::runtime::blocking(move || std::fs::remove_dir_all(run_dir)).await;
            if let Ok(Err(error)) = removed {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(%id, %error, "a scan's run directory stays");
                }
            }
        }
        Err(error) => tracing::warn!(%id, %error, "a scan's end was not recorded"),
    }
    lock(&stops).remove(&id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScannerKind;
    use crate::domain::scan::ScanRun;

    /// Effects with a `command` engine `cmd` and a `tcp` engine `tcp`, their run directories
    /// under `dir`.
    fn effects(dir: &std::path::Path, reattach: bool) -> ScanEffects {
        let engine = |name: &str, scanner| {
            let config = EngineConfig {
                name: name.into(),
                command: vec!["true".into()],
                ..EngineConfig::defaults(scanner)
            };
            (name.to_owned(), Arc::new(Engine::parse(&config).unwrap()))
        };
        ScanEffects {
            engines: Arc::new(BTreeMap::from([
                engine("cmd", ScannerKind::Command),
                engine("tcp", ScannerKind::Tcp),
            ])),
            blobs: BlobStore::open(dir).unwrap(),
            stops: Arc::default(),
            runs: dir.join(WORK_DIR),
            reattach,
        }
    }

    /// A scan of `engine` that began; `run`, its recorded run.
    fn running(engine: &str, run: Option<ScanRun>) -> ScanState {
        ScanState {
            request: Some(ScanRequested {
                engine: EngineName::parse(engine).unwrap(),
                scan_id: ScanId::parse("1").unwrap(),
                assets: Vec::new(),
                options: "{}".into(),
                by: None,
                at: chrono::DateTime::UNIX_EPOCH,
            }),
            status: ScanStatus::Scanning,
            run,
            ..ScanState::default()
        }
    }

    #[test]
    fn only_a_command_scan_whose_program_was_started_goes_on_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let on = effects(dir.path(), true);
        let recorded = Supervision {
            dir: dir.path().join("elsewhere"),
            supervisor: 10,
            group: 11,
            boot: "b".into(),
        };
        let read = Offsets {
            stdout: 40,
            stderr: 3,
        };
        let run = ScanRun {
            supervision: recorded.clone(),
            read,
        };
        // A recorded run is followed from where its output was recorded, in its directory.
        let work = on
            .resume("cmd-1", &running("cmd", Some(run.clone())))
            .unwrap();
        let follow = work.job.follow.unwrap();
        assert_eq!((follow.run, follow.read), (recorded.clone(), read));
        assert_eq!(work.job.run_dir, recorded.dir);
        assert_eq!(work.unrecorded, None);
        // Not with re-attachment off, for a built-in scanner, an engine gone, an ended scan.
        let off = effects(dir.path(), false);
        assert!(off
            .resume("cmd-1", &running("cmd", Some(run.clone())))
            .is_none());
        assert!(on
            .resume("tcp-1", &running("tcp", Some(run.clone())))
            .is_none());
        assert!(on
            .resume("gone-1", &running("gone", Some(run.clone())))
            .is_none());
        let mut ended = running("cmd", Some(run));
        ended.status = ScanStatus::Finished;
        assert!(on.resume("cmd-1", &ended).is_none());
        // No run recorded and no program in the scan's run directory: nothing to follow.
        assert!(on.resume("cmd-1", &running("cmd", None)).is_none());
        // A program started but not recorded is found in the scan's run directory (by the
        // file its supervisor writes there), followed from the start and recorded.
        let run_dir = on.run_dir("cmd-1");
        std::fs::create_dir_all(&run_dir).unwrap();
        let written = Supervision {
            dir: std::path::PathBuf::new(),
            ..recorded
        };
        std::fs::write(
            run_dir.join("supervision"),
            serde_json::to_vec(&written).unwrap(),
        )
        .unwrap();
        let work = on.resume("cmd-1", &running("cmd", None)).unwrap();
        let found = Supervision {
            dir: run_dir.clone(),
            ..written
        };
        assert_eq!(work.unrecorded, Some(found.clone()));
        let follow = work.job.follow.unwrap();
        assert_eq!((follow.run, follow.read), (found, Offsets::default()));
        // Unless findings were recorded without it: where they were read to is unknown.
        let mut reported = running("cmd", None);
        reported.assets_done.push("a".into());
        assert!(on.resume("cmd-1", &reported).is_none());
    }

    #[test]
    fn a_scan_followed_again_may_record_only_what_its_limits_leave() {
        let finding = findings_dropped(1, Cap::Items, &["a".into()]);
        let mut state = ScanState::default();
        assert_eq!(remaining_limits(&state), FINDING_LIMITS);
        // What three such findings leave in the state.
        let reported = ScanEvent::FindingReported(super::super::FindingReported {
            finding: finding.clone(),
            at: chrono::DateTime::UNIX_EPOCH,
        });
        for _ in 0..3 {
            ScanRecord::apply(&mut state, &reported);
        }
        let limits = remaining_limits(&state);
        assert_eq!(limits.max_items, MAX_FINDINGS as u64 - 3);
        assert_eq!(
            limits.max_bytes,
            MAX_FINDING_BYTES - 3 * finding_bytes(&finding) as u64
        );
        assert_eq!(limits.batch_items, FINDING_LIMITS.batch_items);
        // Past the limit (the count of the dropped ones is a finding too), nothing more.
        state.findings = MAX_FINDINGS as u64 + 1;
        assert_eq!(remaining_limits(&state).max_items, 0);
    }
}
