//! The GROS controller's and agents' commands and queries: registering an agent (its salts
//! made once per project and kept in the secret store), pseudonymising values, answering which
//! projects a caller may reach, recording exports (and running the project's import command),
//! log records, preflight checks, BigBoat measurements and version checks, and running an
//! agent's scrape command. Child processes run under supervisors of their own
//! (`crate::process::supervised`) and outlive a restart of annals; everything they say goes on
//! the agent's stream. Nothing here knows of HTTP; salts never reach an event.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::read_model::{AgentsModel, AgentsState};
use super::values::{
    agent_id, AgentName, GathererVersion, Measurement, Network, ProjectKey, Salts,
};
use super::{
    AgentCommand, AgentEvent, AgentRejection, AgentState, GrosAgent, GrosProject, OutputLine,
    Process, ProcessRun, ProjectCommand, ProjectRejection, Upload, UploadName, GLOBAL,
};
use crate::blobs::{BlobRef, BlobStore};
use crate::domain::{start_read_model, Core, MODEL_WAIT};
use crate::events::{DomainEvent, EventLog, Metadata, StreamId};
use crate::process::supervised::{self, Supervision};
use crate::process::{self, Exit, Invocation, Stream};
use crate::runtime::blocking::Stopped;
use crate::runtime::effects::{self, Fed, FeedLimits, ReadItem, Taken};
use crate::runtime::projection::ProjectionError;
use crate::runtime::{reconcile, Clock, CommandError, Effects, Entities, Entity, ProjectionHandle};
use crate::secrets::{Secret, SecretError, SecretId, SecretStore};

/// How long start-up reconciliation may take.
const STARTUP_WAIT: Duration = Duration::from_secs(300);
/// How an import's or a scrape's output reaches the agent's stream: lines in batches, one
/// `ProcessOutput` each, and at most [`effects::MAX_RUN_ITEMS`] lines and
/// [`effects::MAX_RUN_BYTES`] bytes per run; past them one last line says how many more
/// there were (`cut_output_note`).
pub const OUTPUT_LIMITS: FeedLimits = FeedLimits::DEFAULT;
/// How the last line of a run cut at [`OUTPUT_LIMITS`] begins.
pub const CUT_OUTPUT_PREFIX: &str = "annals: ";

fn output_line(line: process::Line) -> OutputLine {
    OutputLine {
        stream: match line.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
        .to_owned(),
        line: line.text,
    }
}

impl effects::Weigh for OutputLine {
    fn bytes(&self) -> usize {
        self.line.len()
    }
}

/// The line, on `stderr`, that ends the output of a run cut at [`OUTPUT_LIMITS`].
fn cut_output_note(fed: &Fed) -> OutputLine {
    OutputLine {
        stream: "stderr".into(),
        line: format!(
            "{CUT_OUTPUT_PREFIX}{} more lines ({} bytes) of output were not recorded: a run \
             records at most {} lines and {} bytes",
            fed.dropped, fed.dropped_bytes, OUTPUT_LIMITS.max_items, OUTPUT_LIMITS.max_bytes
        ),
    }
}

pub use crate::config::UsernamePattern;

/// A configured project, checked.
#[derive(Clone, Debug)]
pub struct Project {
    pub key: ProjectKey,
    pub networks: Vec<Network>,
    pub usernames: Vec<UsernamePattern>,
    /// The contents of the agents' environment file, shown by the preflight check.
    pub environment: String,
    /// How long after an export the agent should gather again.
    pub gather_interval: Duration,
    /// The import command's argv, run after each export; none when empty.
    pub import: Option<Vec<String>>,
    /// The scrape command's argv for the project's agents; none when empty.
    pub scrape: Option<Vec<String>>,
}

/// What the face is told by its configuration, checked.
#[derive(Clone, Debug)]
pub struct Controller {
    pub projects: BTreeMap<ProjectKey, Project>,
    /// The gatherer version `version.py` compares against.
    pub gatherer_version: String,
    /// The controller's commit, as `version.py` reports it.
    pub controller_version: String,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Network>,
    /// Callers from these networks may reach every project (`access.py` answers `["*"]`).
    pub access_all: Vec<Network>,
    /// Log messages matching one of these are not recorded.
    pub log_ignore: Vec<regex::Regex>,
    pub import_timeout: Duration,
    pub scrape_timeout: Duration,
    /// How long a scrape that fails at once is waited for, to answer with its status code.
    pub start_check: Duration,
    /// The most scrapes the shared daemon ([`Daemon::Shared`]) runs at once.
    pub max_agent_scrapes: usize,
    pub kill_grace: Duration,
    /// Imports and scrapes a previous process left running run on and are followed again;
    /// otherwise they are stopped and recorded as interrupted.
    pub reattach: bool,
}

/// The `PREFLIGHT_ARGS` of every scrape the daemon starts, as upstream's daemon sets them.
pub const SCRAPE_PREFLIGHT_ARGS: &str = "--skip";

#[derive(Debug, thiserror::Error)]
pub enum GrosError {
    #[error("Project {0} is not configured")]
    UnknownProject(String),
    #[error("Project {0} has no salts")]
    NoSalts(String),
    #[error("Agent {0} is locked by another registration")]
    Locked(String),
    #[error("Another scrape process is already running")]
    ScrapeRunning,
    #[error("The caller's address is not in the networks of project {0}")]
    OutsideNetworks(String),
    #[error("No scrape command is configured for agent {0}")]
    NoScrape(String),
    #[error("Agent {0} is not registered")]
    NotRegistered(String),
    #[error("Too many scrapes are running: at most {0} at once")]
    TooManyScrapes(usize),
    #[error("Scrape process could not be started: {0}")]
    CannotStart(String),
    #[error("Status code {0}")]
    FailedAtOnce(String),
    #[error("the secret store failed: {0}")]
    Secret(#[from] SecretError),
    /// What the request asked to record makes an event over the log's size limit.
    #[error("the record is too large to keep: {0}")]
    TooLarge(#[source] RecordFailure),
    /// The log, an actor, the blocking pool or the stored salts failed: nothing was
    /// acknowledged.
    #[error("not recorded: {0}")]
    NotRecorded(#[source] RecordFailure),
}

/// Why a GROS command was not recorded, kept whole for the error's `source` chain. Each says
/// what the failure itself says (the face's answers carry that text).
#[derive(Debug, thiserror::Error)]
pub enum RecordFailure {
    #[error(transparent)]
    Agent(#[from] CommandError<AgentRejection>),
    #[error(transparent)]
    Project(#[from] CommandError<ProjectRejection>),
    #[error(transparent)]
    Stopped(#[from] Stopped),
    #[error("the stored salts are damaged: {0}")]
    DamagedSalts(#[source] serde_json::Error),
    /// A registration was abandoned because its project's salts could not be had.
    #[error(transparent)]
    NoSaltsForRegistration(Box<GrosError>),
    #[error("the salts could not be made")]
    SaltsNotMade,
}

impl RecordFailure {
    /// Whether the log refused the events as over its size limit: the client's mistake.
    fn is_too_large(&self) -> bool {
        match self {
            RecordFailure::Agent(error) => error.is_too_large(),
            RecordFailure::Project(error) => error.is_too_large(),
            _ => false,
        }
    }
}

impl From<RecordFailure> for GrosError {
    fn from(failure: RecordFailure) -> Self {
        if failure.is_too_large() {
            GrosError::TooLarge(failure)
        } else {
            GrosError::NotRecorded(failure)
        }
    }
}

// A rejection the service does not answer in its own words stays inside the command error:
// it was answered as not recorded, and still is.
impl From<CommandError<AgentRejection>> for GrosError {
    fn from(error: CommandError<AgentRejection>) -> Self {
        RecordFailure::Agent(error).into()
    }
}

impl From<CommandError<ProjectRejection>> for GrosError {
    fn from(error: CommandError<ProjectRejection>) -> Self {
        RecordFailure::Project(error).into()
    }
}

/// Why an upload was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("an export holds at most {0} files: announce the export before uploading more")]
    TooManyFiles(usize),
    #[error("the upload was not recorded: {0}")]
    NotRecorded(#[source] RecordFailure),
}

/// Whether two OpenSSH public key lines name the same key: the same algorithm and key data,
/// whatever their comments.
pub fn same_public_key(a: &str, b: &str) -> bool {
    let key = |line: &str| {
        let mut fields = line.split_whitespace();
        (
            fields.next().map(str::to_owned),
            fields.next().map(str::to_owned),
        )
    };
    let (a, b) = (key(a), key(b));
    a.0.is_some() && a.1.is_some() && a == b
}

/// What a registered agent gets.
#[derive(Debug)]
pub struct Registration {
    pub salts: Salts,
    pub usernames: Vec<UsernamePattern>,
}

/// One check of the preflight status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn check(ok: bool, message: impl Into<String>) -> Check {
    Check {
        ok,
        message: Some(message.into()),
    }
}

/// The preflight status of an agent, in the order the client reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preflight {
    pub database: Check,
    pub tracker: Check,
    pub permissions: Check,
    pub lock: Check,
    pub importer: Check,
    pub daemon: Check,
    pub network: Check,
    pub configuration: Configuration,
    pub total: Check,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Configuration {
    pub ok: bool,
    pub message: String,
    /// The agent's environment file: only when every other check is OK, as upstream, so an
    /// agent that may not gather is not handed its configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
}

/// Which daemon answers for an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Daemon {
    /// The local agent's own daemon, on the agent's host: it answers for that agent alone.
    Local,
    /// The daemon shared by every agent, reachable from the projects' networks: it answers only
    /// for registered agents, and runs at most `max_agent_scrapes` scrapes at once, since each
    /// scrape is a process of this host.
    Shared,
}

/// Whether a log record was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logged {
    Recorded,
    Ignored,
}

/// The face's service. Cheap to clone.
#[derive(Clone)]
pub struct Gros {
    agents: Entities<GrosAgent>,
    projects: Entities<GrosProject>,
    secrets: Arc<SecretStore>,
    controller: Arc<Controller>,
    clock: Arc<dyn Clock>,
    /// Salts already made and recorded, by project: they never change, so `encrypt.py` and
    /// `agent.py` need neither the secret store's file nor the project's actor once they are
    /// known. Only salts that exist are kept.
    known_salts: Arc<std::sync::Mutex<HashMap<String, Salts>>>,
    /// A permit for each scrape the shared daemon may run; a running scrape holds one.
    shared_scrapes: Arc<tokio::sync::Semaphore>,
    /// Where scrapes and imports have their run directories, each under its supervisor.
    work_dir: PathBuf,
    /// Where uploaded files wait for the blob store's copy the import reads.
    blobs: BlobStore,
    /// Where each import finds its export's uploaded files ([`EXPORTS_DIR`]).
    exports_dir: PathBuf,
    /// The agents by status, for the console's overview.
    agents_model: ProjectionHandle<AgentsState>,
    /// The log, whose head a query of `agents_model` waits for.
    log: EventLog,
}

/// A scrape or an import running under its supervisor, as its follower takes it.
struct Child {
    running: process::Running,
    /// Its run directory, removed once its end is recorded.
    dir: PathBuf,
    /// Where it runs, when that is still to be recorded.
    supervision: Option<Supervision>,
    /// What was recorded of it before (a run followed on after a restart): its caps count it.
    recorded: ProcessRun,
}

/// Starts, on the node holding an agent's shard, the scrapes and imports that other nodes'
/// requests recorded. A node that holds the shard starts those it records itself, in
/// [`Gros::scrape`] and [`Gros::export`], so its own commands start nothing here.
#[derive(Default)]
struct RecordedElsewhere {
    /// Set once the service is built (it holds the agents' directory, which holds this).
    gros: std::sync::OnceLock<Gros>,
}

impl Effects<GrosAgent> for RecordedElsewhere {
    fn after_commit(&self, _: &str, _: &AgentState, _: &[AgentEvent], _: &Entities<GrosAgent>) {}

    fn after_delivered(
        &self,
        id: &str,
        state: &AgentState,
        events: &[AgentEvent],
        _: &Entities<GrosAgent>,
    ) {
        let Some(gros) = self.gros.get() else { return };
        // An import's files are recorded with its export, in the same append, when there are
        // any: without the export's record among these events, they are unknown.
        let announced = events
            .iter()
            .any(|event| matches!(event, AgentEvent::ExportAnnounced(_)));
        let uploads = events.iter().find_map(|event| match event {
            AgentEvent::UploadsAnnounced(announced) => Some(announced.uploads.clone()),
            _ => None,
        });
        let uploads = uploads.or_else(|| announced.then(Vec::new));
        for event in events {
            let AgentEvent::ProcessStarted(started) = event else {
                continue;
            };
            // Only a run still going as recorded: one another node already ended is not started.
            let going = state
                .run(started.process)
                .is_some_and(|run| run.started == started.at);
            if going {
                let run =
                    gros.clone()
                        .run_recorded(id.to_owned(), started.clone(), uploads.clone());
                actix_rt::spawn(run);
            }
        }
    }
}

/// The outcome recorded for a process whose supervisor ended without recording its end (it
/// was killed): its group is killed.
pub const LOST: &str = "interrupted: its supervisor ended without recording its end";

/// Where the GROS face's processes have their run directories, under the data directory.
pub const WORK_DIR: &str = "gros-work";

/// Where each import finds the files its export's agent uploaded, under the data directory:
/// one directory per import, named as its run directory, removed once its end is recorded.
pub const EXPORTS_DIR: &str = "gros-exports";

/// The variable that names an import's directory of uploaded files.
pub const EXPORT_DIR_VAR: &str = "GROS_EXPORT_DIR";

/// The secret store's id of a project's salts (or the global ones).
fn salts_secret(project: &str) -> String {
    format!("gros-salts-{project}")
}

impl Gros {
    /// Starts the agents' and projects' directories and takes over what a previous process left
    /// running ([`Gros::take_over`]).
    pub async fn start(
        core: &Core,
        secrets: Arc<SecretStore>,
        blobs: BlobStore,
        controller: Controller,
    ) -> anyhow::Result<Gros> {
        let work_dir = core.log.path().join(WORK_DIR);
        let exports_dir = core.log.path().join(EXPORTS_DIR);
        let roots = [work_dir.clone(), exports_dir.clone()];
        crate::runtime::blocking(move || {
            roots.iter().try_for_each(|root| {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(root)
            })
        })
        .await??;
        let effects = Arc::new(RecordedElsewhere::default());
        let gros = Gros {
            agents: core.entities_with(effects.clone()),
            projects: core.entities(),
            secrets,
            shared_scrapes: Arc::new(tokio::sync::Semaphore::new(controller.max_agent_scrapes)),
            controller: Arc::new(controller),
            clock: core.clock.clone(),
            known_salts: Arc::default(),
            work_dir,
            blobs,
            exports_dir,
            agents_model: start_read_model(AgentsModel, core, STARTUP_WAIT).await?,
            log: core.log.clone(),
        };
        let _ = effects.gros.set(gros.clone());
        gros.take_over(&core.log).await?;
        Ok(gros)
    }

    /// Whether this node runs agent `id`'s processes: it holds the agent's shard.
    fn runs_here(&self, id: &str) -> bool {
        StreamId::of(GrosAgent::KIND, id).is_ok_and(|stream| self.log.ownership().owns(&stream))
    }

    /// Runs a process another node's request recorded for agent `id`, on this node, which
    /// holds the agent's shard. `uploads` are the files of the export that started an import,
    /// recorded with it (`None`: that record was not among the events delivered with it).
    async fn run_recorded(
        self,
        id: String,
        started: super::ProcessStarted,
        uploads: Option<Vec<Upload>>,
    ) {
        let names = id
            .split_once('.')
            .and_then(|(p, a)| Some((ProjectKey::parse(p).ok()?, AgentName::parse(a).ok()?)));
        let Some((project, agent)) = names else {
            let outcome = format!("not started: {id} is not a project and an agent");
            return self.finish(&id, started.process, None, outcome).await;
        };
        match started.process {
            Process::Import => {
                let Some(uploads) = uploads else {
                    let outcome = "not started: the files its export announced were not read \
                                   with it";
                    return self
                        .finish(&id, Process::Import, None, outcome.into())
                        .await;
                };
                self.start_import(&id, &project, &agent, &started.argv, started.at, uploads)
                    .await;
            }
            Process::Scrape => {
                // A place among the shared daemon's scrapes when there is one, never refused:
                // the node that took the request admitted it.
                let _slot = self.shared_scrapes.clone().try_acquire_owned().ok();
                let scrape = self.start_scrape(&id, &project, &agent, &started.argv, started.at);
                if let Ok(child) = scrape.await {
                    self.follow(id, Process::Scrape, child, None).await;
                }
            }
        }
    }

    /// Starts agent `id`'s scrape, `argv` recorded as started at `started`, under its
    /// supervisor; one that cannot start has that recorded as its end, and says why.
    async fn start_scrape(
        &self,
        id: &str,
        project: &ProjectKey,
        agent: &AgentName,
        argv: &[String],
        started: DateTime<Utc>,
    ) -> Result<Child, String> {
        // As upstream's daemon: a scrape asked for now is a test run, so its preflight check
        // skips the schedule (upstream's `run.sh` hands these arguments to `preflight.py`).
        let invocation = self
            .invocation(project, agent, argv, self.controller.scrape_timeout)
            .env("PREFLIGHT_ARGS", SCRAPE_PREFLIGHT_ARGS);
        let started = self
            .start_child(id, Process::Scrape, started, invocation)
            .await;
        if let Err(reason) = &started {
            self.finish(id, Process::Scrape, None, format!("not started: {reason}"))
                .await;
        }
        started
    }

    /// How the process agent `id` recorded after `version` fared within the start check, when
    /// another node (the one holding the agent's shard) runs it: its exit code once its end is
    /// recorded (`Some(None)` without one), `None` while it still runs.
    async fn ended_elsewhere(
        &self,
        id: &str,
        process: Process,
        version: u64,
    ) -> Option<Option<i32>> {
        let stream = StreamId::of(GrosAgent::KIND, id).ok()?;
        let deadline = tokio::time::Instant::now() + self.controller.start_check;
        let mut after = version;
        loop {
            let head = self.log.head();
            let (log, read) = (self.log.clone(), stream.clone());
            let events = crate::runtime::blocking(move || log.read_stream(&read, after, 256))
                .await
                .ok()?
                .ok()?;
            for event in &events {
                after = event.version;
                if let Ok(AgentEvent::ProcessFinished(end)) = AgentEvent::from_recorded(event) {
                    if end.process == process {
                        return Some(end.exit_code);
                    }
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            if events.is_empty() {
                self.log.wait_past(head, left).await;
            }
        }
    }

    /// Takes over the imports and scrapes a previous process left running: with
    /// [`Controller::reattach`], each whose supervisor the run directory still knows is
    /// followed on from where its output was recorded, to its real end. Every other run is
    /// stopped (its group killed) before the log records it as interrupted, so nothing runs on
    /// that the log says has ended; registrations left open are abandoned.
    async fn take_over(&self, log: &crate::events::EventLog) -> anyhow::Result<()> {
        let running = reconcile::track_in_progress::<GrosAgent>(log)?;
        running.wait_for(log.head(), STARTUP_WAIT).await?;
        let ids = running.read(|view| reconcile::held_in_progress::<GrosAgent>(log, &view.state));
        let (mut followed, mut to_settle) = (Vec::new(), Vec::new());
        for id in ids {
            let (_, state) = self.agents.state(&id).await?;
            let mut going_on = Vec::new();
            for process in [Process::Import, Process::Scrape] {
                let Some(run) = state.run(process) else {
                    continue;
                };
                if let Some(child) = self.reattach(&id, process, run) {
                    going_on.push(process);
                    followed.push((id.clone(), process, child));
                }
            }
            let settles = state.registering
                || [Process::Import, Process::Scrape]
                    .into_iter()
                    .any(|p| state.running(p) && !going_on.contains(&p));
            if settles {
                to_settle.push((id, going_on));
            }
        }
        let keep: Vec<PathBuf> = followed.iter().map(|(_, _, c)| c.dir.clone()).collect();
        let root = self.work_dir.clone();
        let exports = self.exports_dir.clone();
        let stopped = crate::runtime::blocking(move || {
            let stopped = supervised::stop_all_but(&root, &keep)?;
            // An import's files stay while it is followed on; the others' are done with.
            let names: Vec<_> = keep.iter().filter_map(|dir| dir.file_name()).collect();
            for entry in std::fs::read_dir(&exports)? {
                let entry = entry?;
                if !names.contains(&entry.file_name().as_os_str()) {
                    std::fs::remove_dir_all(entry.path())?;
                }
            }
            Ok::<_, std::io::Error>(stopped)
        })
        .await??;
        if stopped > 0 {
            tracing::info!(count = stopped, "GROS processes left running were stopped");
        }
        for (id, going_on) in &to_settle {
            let going_on = going_on.clone();
            let command = AgentCommand::SettleAfterRestart { going_on };
            if let Err(error) = self.agents.execute(id, command, Metadata::system()).await {
                tracing::warn!(agent = %id, %error, "could not settle an agent after restart");
            }
        }
        if !to_settle.is_empty() {
            tracing::info!(count = to_settle.len(), "GROS agents settled after a stop");
        }
        if !followed.is_empty() {
            tracing::info!(
                count = followed.len(),
                "GROS processes go on after a restart"
            );
        }
        for (id, process, child) in followed {
            // A scrape of the shared daemon holds a place among its scrapes, as before.
            let slot = (process == Process::Scrape)
                .then(|| self.shared_scrapes.clone().try_acquire_owned().ok());
            let following = self.clone().follow(id, process, child, None);
            actix_rt::spawn(async move {
                following.await;
                drop(slot);
            });
        }
        Ok(())
    }

    /// The run of `process` that a previous process left running for agent `id`, followed on,
    /// when it goes on: re-attachment is on and a supervisor started its program (its start
    /// recorded, or found in its run directory).
    fn reattach(&self, id: &str, process: Process, run: &ProcessRun) -> Option<Child> {
        if !self.controller.reattach {
            return None;
        }
        let (supervision, to_record) = match &run.supervision {
            Some(supervision) => (supervision.clone(), false),
            None => (
                supervised::recover(&self.run_dir(id, process, run.started))?,
                true,
            ),
        };
        let running = supervised::attach(&supervision, run.read, &Invocation::new(process.name()));
        Some(Child {
            running,
            dir: supervision.dir.clone(),
            supervision: to_record.then_some(supervision),
            recorded: run.clone(),
        })
    }

    /// The run directory of agent `id`'s `process` started at `started` (its `ProcessStarted`):
    /// named from the log alone, so that a restart finds a run whose supervision was not
    /// recorded yet, and each run's own, so that the follower of a run that ended removes its
    /// directory and never the next run's.
    fn run_dir(&self, id: &str, process: Process, started: DateTime<Utc>) -> PathBuf {
        let at = started.timestamp_micros();
        self.work_dir.join(format!("{id}.{}.{at}", process.name()))
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// How many agents there are, and how many each status has, once the read model has
    /// folded every event durable when asked.
    pub async fn agents_by_status(
        &self,
    ) -> Result<(usize, BTreeMap<&'static str, u64>), ProjectionError> {
        self.agents_model
            .wait_for(self.log.head(), MODEL_WAIT)
            .await?;
        Ok(self
            .agents_model
            .read(|view| (view.state.len(), view.state.by_status())))
    }

    fn project(&self, key: &ProjectKey) -> Result<&Project, GrosError> {
        self.controller
            .projects
            .get(key)
            .ok_or_else(|| GrosError::UnknownProject(key.as_str().to_owned()))
    }

    /// Refuses a caller whose address is in neither the project's networks nor
    /// `access_all_networks`: the trust the controller places in callers.
    pub fn check_network(
        &self,
        project: &ProjectKey,
        caller: Option<IpAddr>,
    ) -> Result<(), GrosError> {
        let config = self.project(project)?;
        let allowed = caller.is_some_and(|caller| {
            let controller = &self.controller;
            controller.access_all.iter().any(|n| n.contains(caller))
                || config.networks.iter().any(|n| n.contains(caller))
        });
        if allowed {
            Ok(())
        } else {
            Err(GrosError::OutsideNetworks(project.as_str().to_owned()))
        }
    }

    /// The caller's address: the peer, or what trusted proxies say they forwarded for.
    pub fn caller(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        let mut caller = peer?;
        let hops: Vec<&str> = forwarded_for
            .iter()
            .flat_map(|header| header.split(','))
            .collect();
        // Each trusted proxy vouches for the hop before it, from the nearest one outwards. A
        // hop that is not an address (`unknown`) vouches for nobody: what precedes it was
        // written by the client, so the walk ends at the proxy that wrote it.
        for hop in hops.iter().rev() {
            let trusted = self
                .controller
                .trusted_proxies
                .iter()
                .any(|proxy| proxy.contains(caller));
            match hop.trim().parse() {
                Ok(address) if trusted => caller = address,
                _ => break,
            }
        }
        Some(caller)
    }

    /// Registers or re-keys an agent: locks it, makes the project's salts if it has none yet,
    /// records the key.
    pub async fn register(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        public_key: String,
        metadata: Metadata,
    ) -> Result<Registration, GrosError> {
        let usernames = self.project(project)?.usernames.clone();
        let id = agent_id(project, agent);
        match self
            .agents
            .execute(&id, AgentCommand::StartRegistration, metadata.clone())
            .await
        {
            Err(CommandError::Rejected(AgentRejection::Locked)) => {
                return Err(GrosError::Locked(agent.as_str().to_owned()))
            }
            other => other?,
        };
        let salts = match self.salts(project.as_str(), true, metadata.clone()).await {
            Ok(Some(salts)) => salts,
            failed => {
                let failure = match failed {
                    Err(error) => RecordFailure::NoSaltsForRegistration(Box::new(error)),
                    _ => RecordFailure::SaltsNotMade,
                };
                let _ = self
                    .agents
                    .execute(
                        &id,
                        AgentCommand::AbandonRegistration {
                            reason: failure.to_string(),
                        },
                        metadata,
                    )
                    .await;
                return Err(GrosError::NotRecorded(failure));
            }
        };
        self.agents
            .execute(
                &id,
                AgentCommand::CompleteRegistration { public_key },
                metadata,
            )
            .await?;
        Ok(Registration { salts, usernames })
    }

    /// The salts of `project` (or [`GLOBAL`]), made and recorded when `create` says so and
    /// there are none yet.
    async fn salts(
        &self,
        project: &str,
        create: bool,
        metadata: Metadata,
    ) -> Result<Option<Salts>, GrosError> {
        // The lock is only held to look up or insert, which cannot panic: never poisoned.
        let known = self
            .known_salts
            .lock()
            .expect("never poisoned")
            .get(project)
            .cloned();
        if let Some(salts) = known {
            return Ok(Some(salts));
        }
        let secret = salts_secret(project);
        let id = SecretId::parse(secret.clone())?;
        let store = self.secrets.clone();
        let found = crate::runtime::blocking(move || -> Result<Option<Secret>, SecretError> {
            if create {
                store
                    .get_or_create(&id, || {
                        let salts = Salts::generate();
                        Secret::new(serde_json::to_vec(&salts).expect("salts serialize"))
                    })
                    .map(Some)
            } else {
                store.get(&id)
            }
        })
        .await
        .map_err(|stopped| GrosError::NotRecorded(stopped.into()))??;
        let Some(found) = found else {
            return Ok(None);
        };
        let salts: Salts = serde_json::from_slice(found.expose())
            .map_err(|e| GrosError::NotRecorded(RecordFailure::DamagedSalts(e)))?;
        if create {
            self.projects
                .execute(project, ProjectCommand::RecordSalts { secret }, metadata)
                .await?;
            // Recorded: from now on the salts are known. Salts found but not asked to be made
            // may not be recorded yet, so they are not kept.
            self.known_salts
                .lock()
                .expect("never poisoned")
                .insert(project.to_owned(), salts.clone());
        }
        Ok(Some(salts))
    }

    /// The pseudonym of `value` with the project's salts (encryption 1), or with the global
    /// salts (encryption 2), made on first use.
    pub async fn encrypt(
        &self,
        project: Option<&ProjectKey>,
        value: &str,
        metadata: Metadata,
    ) -> Result<(String, u8), GrosError> {
        match project {
            Some(project) => {
                self.project(project)?;
                let salts = self
                    .salts(project.as_str(), false, metadata)
                    .await?
                    .ok_or_else(|| GrosError::NoSalts(project.as_str().to_owned()))?;
                Ok((salts.encrypt(value), 1))
            }
            None => {
                let salts = self
                    .salts(GLOBAL, true, metadata)
                    .await?
                    .ok_or_else(|| GrosError::NoSalts(GLOBAL.to_owned()))?;
                Ok((salts.encrypt(value), 2))
            }
        }
    }

    /// The projects a caller may reach: `["*"]` for every one.
    pub fn access(&self, caller: Option<IpAddr>) -> Vec<String> {
        let Some(caller) = caller else {
            return Vec::new();
        };
        if self
            .controller
            .access_all
            .iter()
            .any(|n| n.contains(caller))
        {
            return vec!["*".to_owned()];
        }
        self.controller
            .projects
            .values()
            .filter(|p| p.networks.iter().any(|n| n.contains(caller)))
            .map(|p| p.key.as_str().to_owned())
            .collect()
    }

    /// Records an export announcement and starts the project's import command, unless one is
    /// already running for this agent.
    pub async fn export(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        agent_info: String,
        files: String,
        metadata: Metadata,
    ) -> Result<(), GrosError> {
        let import = self.project(project)?.import.clone();
        let id = agent_id(project, agent);
        let executed = self
            .agents
            .execute(
                &id,
                AgentCommand::AnnounceExport {
                    agent: agent_info,
                    files,
                    import: import.clone(),
                },
                metadata,
            )
            .await?;
        let Some((started, argv)) = started(&executed.events, Process::Import).zip(import) else {
            return Ok(());
        };
        if !self.runs_here(&id) {
            // The node holding the agent's shard starts it, from the log.
            return Ok(());
        }
        let uploads = executed
            .events
            .iter()
            .find_map(|event| match event {
                AgentEvent::UploadsAnnounced(announced) => Some(announced.uploads.clone()),
                _ => None,
            })
            .unwrap_or_default();
        self.start_import(&id, project, agent, &argv, started, uploads)
            .await;
        Ok(())
    }

    /// Lays out an export's `uploads` and starts the project's import command on them, as
    /// recorded for agent `id` at `started`; what stops it is recorded as its end.
    async fn start_import(
        &self,
        id: &str,
        project: &ProjectKey,
        agent: &AgentName,
        argv: &[String],
        started: DateTime<Utc>,
        uploads: Vec<Upload>,
    ) {
        let files = self.exports_dir.join(
            self.run_dir(id, Process::Import, started)
                .file_name()
                .unwrap_or_default(),
        );
        let invocation = self
            .invocation(project, agent, argv, self.controller.import_timeout)
            .env(EXPORT_DIR_VAR, files.clone().into_os_string());
        if let Err(error) = self.lay_out(files, uploads).await {
            self.finish(
                id,
                Process::Import,
                None,
                format!("not started: its uploaded files could not be laid out: {error}"),
            )
            .await;
            return;
        }
        match self
            .start_child(id, Process::Import, started, invocation)
            .await
        {
            Ok(child) => {
                actix_rt::spawn(
                    self.clone()
                        .follow(id.to_owned(), Process::Import, child, None),
                );
            }
            Err(error) => {
                self.finish(id, Process::Import, None, format!("not started: {error}"))
                    .await;
            }
        }
    }

    /// Copies an export's uploaded files from the blob store into `dir`, each under its name,
    /// for the import command.
    async fn lay_out(&self, dir: PathBuf, uploads: Vec<Upload>) -> Result<(), String> {
        let blobs = self.blobs.clone();
        crate::runtime::blocking(move || -> Result<(), String> {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| e.to_string())?;
            for upload in uploads {
                let from = blobs
                    .local_path(&upload.file.sha256)
                    .map_err(|e| format!("{}: {e}", upload.name))?;
                std::fs::copy(&from, dir.join(&upload.name))
                    .map_err(|e| format!("{}: {e}", upload.name))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Starts agent `id`'s `process`, recorded as started at `started`, under its supervisor,
    /// in its run directory, which [`Gros::follow`] removes once the end is recorded.
    async fn start_child(
        &self,
        id: &str,
        process: Process,
        started: DateTime<Utc>,
        invocation: Invocation,
    ) -> Result<Child, String> {
        let dir = self.run_dir(id, process, started);
        let started = crate::runtime::blocking(move || {
            effects::start_supervised(invocation, &dir, Vec::new())
                .map(|(running, supervision)| (running, dir, supervision))
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?;
        let (running, dir, supervision) = started?;
        Ok(Child {
            running,
            dir,
            supervision: Some(supervision),
            recorded: ProcessRun::default(),
        })
    }

    fn invocation(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        argv: &[String],
        timeout: Duration,
    ) -> Invocation {
        Invocation::new(&argv[0])
            .args(&argv[1..])
            .env("GROS_PROJECT", project.as_str())
            .env("GROS_AGENT", agent.as_str())
            .timeout(timeout)
            .kill_grace(self.controller.kill_grace)
    }

    async fn finish(&self, id: &str, process: Process, exit_code: Option<i32>, outcome: String) {
        let command = AgentCommand::FinishProcess {
            process,
            exit_code,
            outcome,
        };
        if let Err(error) = self.agents.execute(id, command, Metadata::system()).await {
            tracing::warn!(agent = %id, %error, "the end of a process was not recorded");
        }
    }

    /// Records where a process runs, then its lines (in batches, at most [`OUTPUT_LIMITS`] of
    /// them over the whole run, with how far its output was read) and its end on the agent's
    /// stream; tells `done` how it ended.
    async fn follow(
        self,
        id: String,
        process: Process,
        child: Child,
        done: Option<tokio::sync::oneshot::Sender<Option<i32>>>,
    ) {
        let Child {
            running,
            dir,
            supervision,
            recorded,
        } = child;
        if let Some(run) = supervision {
            let command = AgentCommand::SuperviseProcess { process, run };
            if let Err(error) = self.agents.execute(&id, command, Metadata::system()).await {
                tracing::warn!(agent = %id, %error, "where a process runs was not recorded");
            }
        }
        let limits = FeedLimits {
            max_items: OUTPUT_LIMITS.max_items.saturating_sub(recorded.lines),
            max_bytes: OUTPUT_LIMITS.max_bytes.saturating_sub(recorded.bytes),
            ..OUTPUT_LIMITS
        };
        let read = std::cell::Cell::new(recorded.read);
        let ended = effects::feed_child(
            running,
            &limits,
            |line| ReadItem::of(line, output_line),
            |batch| {
                let (agents, id) = (self.agents.clone(), id.clone());
                let (lines, now_read) = ReadItem::split(batch, read.get());
                let read = &read;
                async move {
                    let command = AgentCommand::RecordOutput {
                        process,
                        lines,
                        read: Some(now_read),
                    };
                    match agents.execute(&id, command, Metadata::system()).await {
                        Ok(_) => {
                            read.set(now_read);
                            Taken::More
                        }
                        // Settled meanwhile (a restart's reconciliation): nothing more goes on.
                        Err(CommandError::Rejected(AgentRejection::NotRunning(_))) => Taken::Stop,
                        Err(error) => {
                            tracing::warn!(agent = %id, %error, "lines of output were not recorded");
                            Taken::More
                        }
                    }
                }
            },
        )
        .await;
        if ended.fed.capped.is_some() {
            let note = cut_output_note(&ended.fed);
            let command = AgentCommand::RecordOutput {
                process,
                lines: vec![note],
                read: None,
            };
            if let Err(error) = self.agents.execute(&id, command, Metadata::system()).await {
                tracing::warn!(agent = %id, %error, "the note of cut output was not recorded");
            }
        }
        let (code, outcome) = match ended.outcome {
            Ok(outcome) => {
                let code = match outcome.exit {
                    Exit::Code(code) => Some(code),
                    _ => None,
                };
                let words = match (outcome.ending, outcome.exit) {
                    (process::Ending::TimedOut, _) => "timed out".to_owned(),
                    (process::Ending::Cancelled, _) => "cancelled".to_owned(),
                    (process::Ending::Lost, _) => LOST.to_owned(),
                    (_, Exit::Code(code)) => format!("exit code {code}"),
                    (_, Exit::Signal(signal)) => format!("killed by signal {signal}"),
                    (_, Exit::Unknown) => "exit status unknown".to_owned(),
                };
                (code, words)
            }
            Err(error) => (None, format!("failed: {error}")),
        };
        self.finish(&id, process, code, outcome).await;
        if let Some(done) = done {
            let _ = done.send(code);
        }
        // Its end is recorded: nothing of the run is needed any more, nor of an import's files.
        let files = (process == Process::Import)
            .then(|| dir.file_name().map(|name| self.exports_dir.join(name)))
            .flatten();
        let removed = crate::runtime::blocking(move || {
            if let Some(files) = files {
                match std::fs::remove_dir_all(files) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::remove_dir_all(dir)
        })
        .await;
        if let Ok(Err(error)) = removed {
            tracing::warn!(agent = %id, %error, "a process's run directory stays");
        }
    }

    /// Records a log record, unless its message matches an ignore pattern.
    pub async fn log(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        fields: BTreeMap<String, String>,
        metadata: Metadata,
    ) -> Result<Logged, GrosError> {
        self.project(project)?;
        let message = fields
            .get("message")
            .or_else(|| fields.get("msg"))
            .cloned()
            .unwrap_or_default();
        if self
            .controller
            .log_ignore
            .iter()
            .any(|pattern| pattern.is_match(&message))
        {
            return Ok(Logged::Ignored);
        }
        let level = fields.get("levelname").cloned().unwrap_or_default();
        self.agents
            .execute(
                &agent_id(project, agent),
                AgentCommand::RecordLog {
                    level,
                    message,
                    fields,
                },
                metadata,
            )
            .await?;
        Ok(Logged::Recorded)
    }

    /// Computes the preflight status of an agent from its state and the configuration, and
    /// records it.
    pub async fn preflight(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        caller: Option<IpAddr>,
        metadata: Metadata,
    ) -> Result<Preflight, GrosError> {
        let config = self.project(project)?;
        let id = agent_id(project, agent);
        let (_, state) = self.agents.state(&id).await?;
        let state = observed(state).await;
        let preflight = preflight(config, &state, caller, self.clock.now());
        let failed = failed_checks(&preflight);
        self.agents
            .execute(&id, AgentCommand::RecordPreflight { failed }, metadata)
            .await?;
        Ok(preflight)
    }

    /// The projects in which agent `agent` is registered with the public key `public_key`
    /// (an OpenSSH line): the upload directories a session that proved it holds that key may
    /// reach.
    pub async fn upload_projects(
        &self,
        agent: &AgentName,
        public_key: &str,
    ) -> Result<Vec<ProjectKey>, GrosError> {
        let mut projects = Vec::new();
        for project in self.controller.projects.keys() {
            let (_, registered) = self
                .agents
                .inspect(&agent_id(project, agent), |state: &AgentState| {
                    state.public_key.clone()
                })
                .await?;
            if registered.is_some_and(|known| same_public_key(&known, public_key)) {
                projects.push(project.clone());
            }
        }
        Ok(projects)
    }

    /// The files the agent uploaded since its last export announcement.
    pub async fn uploads(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
    ) -> Result<Vec<Upload>, GrosError> {
        let (_, uploads) = self
            .agents
            .inspect(&agent_id(project, agent), |state: &AgentState| {
                state.uploads.clone()
            })
            .await?;
        Ok(uploads)
    }

    /// Records a complete upload, already kept in the blob store, for the agent's next
    /// export; refused past `max_files` files in one export.
    pub async fn record_upload(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        name: UploadName,
        file: BlobRef,
        max_files: usize,
    ) -> Result<(), UploadError> {
        let command = AgentCommand::RecordUpload {
            name,
            file,
            max_files,
        };
        match self
            .agents
            .execute(&agent_id(project, agent), command, Metadata::system())
            .await
        {
            Ok(_) => Ok(()),
            Err(CommandError::Rejected(AgentRejection::TooManyFiles(max))) => {
                Err(UploadError::TooManyFiles(max))
            }
            Err(error) => Err(UploadError::NotRecorded(error.into())),
        }
    }

    /// Records BigBoat measurements.
    pub async fn measurements(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        source: Option<String>,
        measurements: Vec<Measurement>,
        metadata: Metadata,
    ) -> Result<(), GrosError> {
        self.project(project)?;
        self.agents
            .execute(
                &agent_id(project, agent),
                AgentCommand::RecordMeasurements {
                    source,
                    measurements,
                },
                metadata,
            )
            .await?;
        Ok(())
    }

    /// Compares a gatherer's commit with the controller's, and records the check.
    pub async fn version(
        &self,
        raw: &str,
        version: &GathererVersion,
        metadata: Metadata,
    ) -> Result<bool, GrosError> {
        let up_to_date = version.commit == self.controller.controller_version;
        self.projects
            .execute(
                GLOBAL,
                ProjectCommand::RecordVersionCheck {
                    version: raw.to_owned(),
                    up_to_date,
                },
                metadata,
            )
            .await?;
        Ok(up_to_date)
    }

    /// Whether the agent's scrape is running.
    pub async fn scraping(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        daemon: Daemon,
    ) -> Result<bool, GrosError> {
        let (_, state) = self.daemon_state(project, agent, daemon).await?;
        Ok(observed(state).await.running(Process::Scrape))
    }

    /// The scrape command and the state of an agent the daemon answers for: one of a project
    /// with a scrape command, and for the shared daemon a registered one.
    async fn daemon_state(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        daemon: Daemon,
    ) -> Result<(Vec<String>, AgentState), GrosError> {
        let argv = self.scrape_command(project, agent)?;
        let id = agent_id(project, agent);
        let (_, state) = self.agents.state(&id).await?;
        if daemon == Daemon::Shared && !state.registered() {
            return Err(GrosError::NotRegistered(id));
        }
        Ok((argv, state))
    }

    fn scrape_command(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
    ) -> Result<Vec<String>, GrosError> {
        self.project(project)?
            .scrape
            .clone()
            .ok_or_else(|| GrosError::NoScrape(agent_id(project, agent)))
    }

    /// Starts the agent's scrape command. A command that exits with a failure within the
    /// start check is reported with its status code.
    pub async fn scrape(
        &self,
        project: &ProjectKey,
        agent: &AgentName,
        daemon: Daemon,
        metadata: Metadata,
    ) -> Result<(), GrosError> {
        let (argv, state) = self.daemon_state(project, agent, daemon).await?;
        let id = agent_id(project, agent);
        // The agent's own scrape running is the better answer than a full daemon; the command
        // below still refuses a scrape started meanwhile.
        if state.running(Process::Scrape) {
            return Err(GrosError::ScrapeRunning);
        }
        // Held until the process ends; dropped with any refusal before it starts.
        let slot = match daemon {
            Daemon::Local => None,
            Daemon::Shared => Some(
                self.shared_scrapes
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| GrosError::TooManyScrapes(self.controller.max_agent_scrapes))?,
            ),
        };
        let executed = match self
            .agents
            .execute(
                &id,
                AgentCommand::StartScrape { argv: argv.clone() },
                metadata,
            )
            .await
        {
            Err(CommandError::Rejected(AgentRejection::ScrapeRunning)) => {
                return Err(GrosError::ScrapeRunning)
            }
            other => other?,
        };
        let started = started(&executed.events, Process::Scrape).unwrap_or_default();
        if !self.runs_here(&id) {
            // The node holding the agent's shard starts it, from the log; its end within the
            // start check is read from there too.
            drop(slot);
            return match self
                .ended_elsewhere(&id, Process::Scrape, executed.version)
                .await
            {
                Some(Some(0)) | None => Ok(()),
                Some(Some(code)) => Err(GrosError::FailedAtOnce(code.to_string())),
                Some(None) => Err(GrosError::FailedAtOnce("unknown".into())),
            };
        }
        let child = self
            .start_scrape(&id, project, agent, &argv, started)
            .await
            .map_err(GrosError::CannotStart)?;
        let (done, ended) = tokio::sync::oneshot::channel();
        let following = self.clone().follow(id, Process::Scrape, child, Some(done));
        actix_rt::spawn(async move {
            following.await;
            drop(slot);
        });
        match tokio::time::timeout(self.controller.start_check, ended).await {
            Ok(Ok(Some(0))) | Err(_) => Ok(()),
            Ok(Ok(Some(code))) => Err(GrosError::FailedAtOnce(code.to_string())),
            Ok(Ok(None)) | Ok(Err(_)) => Err(GrosError::FailedAtOnce("unknown".into())),
        }
    }
}

/// When `process` was started, if `events` started it.
fn started(events: &[AgentEvent], process: Process) -> Option<DateTime<Utc>> {
    events.iter().find_map(|event| match event {
        AgentEvent::ProcessStarted(s) if s.process == process => Some(s.at),
        _ => None,
    })
}

/// The agent's state with only the processes that really run: one whose supervisor has ended
/// (its end about to be recorded) or is gone (the next start records it) runs no more. Upstream
/// looks at the host's processes for the same answer.
async fn observed(mut state: AgentState) -> AgentState {
    let dirs: Vec<(Process, PathBuf)> = [Process::Import, Process::Scrape]
        .into_iter()
        .filter_map(|process| {
            let supervision = state.run(process)?.supervision.as_ref()?;
            Some((process, supervision.dir.clone()))
        })
        .collect();
    if dirs.is_empty() {
        return state;
    }
    let ended = crate::runtime::blocking(move || {
        dirs.into_iter()
            .filter(|(_, dir)| supervised::fate(dir) != supervised::Fate::Running)
            .map(|(process, _)| process)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    for process in ended {
        *state.run_mut(process) = None;
    }
    state
}

/// The preflight checks, from the project's configuration, the agent's state, the caller and
/// the time.
pub fn preflight(
    project: &Project,
    state: &AgentState,
    caller: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Preflight {
    // An interval past the calendar's end means the next gather never comes.
    let next_gather = state.last_export.map(|at| {
        chrono::Duration::from_std(project.gather_interval)
            .ok()
            .and_then(|interval| at.checked_add_signed(interval))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    });
    // The wait is reported in upstream's words (its tracker check, Python's `timedelta`): the
    // agent's own log ignore patterns match them, so a wait is not logged as a problem.
    let tracker = match next_gather {
        Some(next) if next > now => check(
            false,
            format!(
                "Next scheduled gather moment is in {}",
                python_timedelta(next - now)
            ),
        ),
        Some(_) => check(true, "Scheduled gather moment has passed"),
        None => check(true, "No export recorded yet"),
    };
    let network = match caller {
        Some(caller) if project.networks.iter().any(|n| n.contains(caller)) => {
            check(true, format!("{caller} is an allowed network address"))
        }
        Some(caller) => check(false, format!("{caller} is not in an allowed network")),
        None => check(false, "The caller's address is unknown"),
    };
    let mut preflight = Preflight {
        database: check(
            true,
            "The event log is open; it holds the gathered data's records",
        ),
        tracker,
        permissions: if state.registered() {
            check(true, "The agent is registered")
        } else {
            check(false, "The agent is not registered")
        },
        lock: if state.registering {
            check(false, "The agent is locked by a registration")
        } else {
            check(true, "The agent is not locked")
        },
        importer: if state.running(Process::Import) {
            check(false, "An import is running for this agent")
        } else {
            check(true, "No import is running")
        },
        daemon: check(
            true,
            "The import and scrape runners are part of this server",
        ),
        network,
        configuration: Configuration {
            ok: true,
            message: "The agent's environment file".into(),
            contents: Some(project.environment.clone()),
        },
        total: check(true, "Everything OK"),
    };
    if !failed_checks(&preflight).is_empty() {
        preflight.configuration = Configuration {
            ok: false,
            message: "Cannot look up environment due to other problems".into(),
            contents: None,
        };
        preflight.total = check(false, "Some parts are not OK");
    }
    preflight
}

/// A positive duration as Python's `str(timedelta)` writes it: `[D day[s], ]H:MM:SS[.ffffff]`.
fn python_timedelta(duration: chrono::Duration) -> String {
    let micros_total = duration.num_microseconds().unwrap_or(i64::MAX).max(0);
    let (seconds_total, micros) = (micros_total / 1_000_000, micros_total % 1_000_000);
    let days = seconds_total / 86_400;
    let rest = seconds_total % 86_400;
    let mut text = match days {
        0 => String::new(),
        1 => "1 day, ".to_owned(),
        days => format!("{days} days, "),
    };
    text.push_str(&format!(
        "{}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ));
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    text
}

fn failed_checks(preflight: &Preflight) -> Vec<String> {
    [
        ("database", &preflight.database),
        ("tracker", &preflight.tracker),
        ("permissions", &preflight.permissions),
        ("lock", &preflight.lock),
        ("importer", &preflight.importer),
        ("daemon", &preflight.daemon),
        ("network", &preflight.network),
    ]
    .into_iter()
    .filter(|(_, check)| !check.ok)
    .map(|(name, _)| name.to_owned())
    .chain((!preflight.configuration.ok).then(|| "configuration".to_owned()))
    .collect()
}

impl Controller {
    /// Checks the `[gros]` section: project keys, networks, patterns, versions, commands.
    pub fn parse(section: &crate::config::GrosSection) -> Result<Controller, String> {
        let networks = |what: &str, raw: &[String]| -> Result<Vec<Network>, String> {
            raw.iter()
                .map(|n| Network::parse(n).map_err(|e| format!("{what}: {e}")))
                .collect()
        };
        let mut projects = BTreeMap::new();
        for spec in &section.projects {
            let key =
                ProjectKey::parse(&spec.key).map_err(|e| format!("project {:?}: {e}", spec.key))?;
            let command = |argv: &[String]| (!argv.is_empty()).then(|| argv.to_vec());
            let project = Project {
                networks: networks(&format!("project {}", spec.key), &spec.networks)?,
                usernames: spec.usernames.clone(),
                environment: spec.environment.clone(),
                gather_interval: Duration::from_secs(spec.gather_interval_s),
                import: command(&spec.import_command),
                scrape: command(&spec.scrape_command),
                key: key.clone(),
            };
            if projects.insert(key, project).is_some() {
                return Err(format!("project {} is declared twice", spec.key));
            }
        }
        let sha = &section.controller_version;
        if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("controller_version {sha:?} is not 40 hex digits"));
        }
        if section.gatherer_version.is_empty() || section.gatherer_version.contains('-') {
            return Err("gatherer_version must be a version without '-'".into());
        }
        if section.max_agent_scrapes == 0 {
            return Err("max_agent_scrapes must be at least 1".into());
        }
        // tokio's semaphore holds at most this many permits.
        if section.max_agent_scrapes > tokio::sync::Semaphore::MAX_PERMITS {
            return Err(format!(
                "max_agent_scrapes must be at most {}",
                tokio::sync::Semaphore::MAX_PERMITS
            ));
        }
        let log_ignore = section
            .log_ignore
            .iter()
            .map(|p| regex::Regex::new(p).map_err(|e| format!("log_ignore {p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let agent = &section.agent;
        if agent.enabled {
            let key = ProjectKey::parse(&agent.project)
                .map_err(|e| format!("agent project {:?}: {e}", agent.project))?;
            let project = projects
                .get(&key)
                .ok_or_else(|| format!("agent project {} is not configured", agent.project))?;
            if project.scrape.is_none() {
                return Err(format!(
                    "agent project {} has no scrape_command",
                    agent.project
                ));
            }
            if !agent.agent.is_empty() {
                AgentName::parse(&agent.agent).map_err(|e| format!("agent: {e}"))?;
            }
        }
        Ok(Controller {
            projects,
            gatherer_version: section.gatherer_version.clone(),
            controller_version: sha.to_ascii_lowercase(),
            trusted_proxies: networks("trusted_proxies", &section.trusted_proxies)?,
            access_all: networks("access_all_networks", &section.access_all_networks)?,
            log_ignore,
            import_timeout: Duration::from_secs(section.import_timeout_s),
            scrape_timeout: Duration::from_secs(section.scrape_timeout_s),
            start_check: Duration::from_millis(section.scrape_start_check_ms),
            max_agent_scrapes: section.max_agent_scrapes,
            kill_grace: Duration::from_secs(section.kill_grace_s),
            reattach: section.on_restart == crate::config::OnRestart::Reattach,
        })
    }
}
