//! The GROS data-gathering agents and their projects as entities. An agent (project key plus
//! agent name) records its registrations and key changes, preflight checks, log records, export
//! announcements, the imports and scrapes run for it with their output, and BigBoat
//! measurements, and the files it uploaded over SSH (each once complete, named by its blob),
//! which its next export announcement takes. A project records that its salts exist (never their values, which live in the
//! secret store) and, under the id `global`, the controller's version checks. Nothing here
//! knows of HTTP, files or child processes: `service.rs` does that work.

pub mod read_model;
pub mod service;
pub mod values;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::blobs::BlobRef;
use crate::events::codec::domain_events;
use crate::process::supervised::{Offsets, Supervision};
use crate::runtime::entity::{Ctx, Decision, Entity};
pub use service::{Gros, GrosError, UploadError};
pub use values::{AgentName, Measurement, ProjectKey, UploadName};

/// The id of the project entity that holds what belongs to no project: the global salts and
/// the version checks. Project keys are upper-case, so it cannot name a project.
pub const GLOBAL: &str = "global";

/// The child processes run for an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Process {
    /// The project's import command, started by an export announcement.
    Import,
    /// The agent's scrape command, started by `POST …/scrape`.
    Scrape,
}

impl Process {
    pub fn name(self) -> &'static str {
        match self {
            Process::Import => "import",
            Process::Scrape => "scrape",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The agent.

/// One agent of one project; its id is `<PROJECT>.<agent>`.
pub struct GrosAgent;

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum AgentEvent {
        RegistrationStarted version 1 {},
        AgentRegistered version 1 {
            /// The agent's SSH public key, as it sent it.
            pub public_key: String,
            /// The agent was registered before, with another key.
            pub rekeyed: bool,
        },
        RegistrationAbandoned version 1 {
            pub reason: String,
        },
        PreflightChecked version 1 {
            pub ok: bool,
            /// The names of the checks that failed.
            pub failed: Vec<String>,
        },
        LogRecorded version 1 {
            /// `levelname` of the Python logging record.
            pub level: String,
            /// `message` (or `msg` without it).
            pub message: String,
            /// Every field the logging handler sent.
            pub fields: BTreeMap<String, String>,
        },
        ExportAnnounced version 1 {
            /// The `agent` form field, JSON text (user, key, hostname, version); `null` when the
            /// client sent none.
            pub agent: String,
            /// The `files` form field, JSON text.
            pub files: String,
        },
        ProcessStarted version 1 {
            pub process: Process,
            pub argv: Vec<String>,
        },
        /// The process runs under a supervisor: where, so that a restart finds it.
        ProcessSupervised version 1 {
            pub process: Process,
            pub run: Supervision,
        },
        ProcessOutput version 1 {
            pub process: Process,
            /// `stdout` or `stderr`.
            pub stream: String,
            pub line: String,
        },
        /// How far the process's output was read: recorded with the lines read up to there.
        ProcessOutputRead version 1 {
            pub process: Process,
            pub read: Offsets,
        },
        ProcessFinished version 1 {
            pub process: Process,
            /// The exit code, when the program exited on its own.
            pub exit_code: Option<i32>,
            /// How it ended, in words (`exit code 0`, `killed by signal 9`, `timed out`, …).
            pub outcome: String,
        },
        MeasurementsRecorded version 1 {
            pub source: Option<String>,
            pub measurements: Vec<Measurement>,
        },
        /// A file the agent uploaded over SSH, whole: written to its end, closed, and kept in
        /// the blob store before this event.
        FileUploaded version 1 {
            /// Its name in the project's upload directory.
            pub name: String,
            /// Its SHA-256 and size; the blob store keeps its bytes under that hash.
            pub file: BlobRef,
        },
        /// The uploads an export announcement takes: recorded right after its
        /// `ExportAnnounced`, in the same append, when the agent uploaded anything since the
        /// last one.
        UploadsAnnounced version 1 {
            pub uploads: Vec<Upload>,
        },
    }
}

/// One uploaded file, as the agent's state and its export announcement keep it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    pub name: String,
    pub file: BlobRef,
}

/// What an agent's history amounts to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// The public key of the last registration.
    pub public_key: Option<String>,
    /// A registration has started and not ended: the agent is locked.
    pub registering: bool,
    /// When the last export was announced.
    pub last_export: Option<DateTime<Utc>>,
    pub logs: u64,
    pub measurements: u64,
    /// The files uploaded since the last export announcement, one per name (the last upload
    /// of a name replaces the one before), in the order they were first uploaded.
    #[serde(default)]
    pub uploads: Vec<Upload>,
    /// The running import's run, until it ends.
    pub import_run: Option<ProcessRun>,
    /// The running scrape's run, until it ends.
    pub scrape_run: Option<ProcessRun>,
}

/// A running process: where it runs once its supervisor started it, and how much of its output
/// was recorded. What a restart re-attaches to, and what keeps its caps across the restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRun {
    /// When it was started: what names its run directory.
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub started: DateTime<Utc>,
    /// `None` until `ProcessSupervised`.
    pub supervision: Option<Supervision>,
    /// Where each output stream goes on after the last recorded line.
    pub read: Offsets,
    /// Lines recorded, and their bytes.
    pub lines: u64,
    pub bytes: u64,
}

impl AgentState {
    pub fn registered(&self) -> bool {
        self.public_key.is_some()
    }

    pub fn running(&self, process: Process) -> bool {
        self.run(process).is_some()
    }

    /// The running process's run; `None` when it does not run.
    pub fn run(&self, process: Process) -> Option<&ProcessRun> {
        match process {
            Process::Import => self.import_run.as_ref(),
            Process::Scrape => self.scrape_run.as_ref(),
        }
    }

    pub fn run_mut(&mut self, process: Process) -> &mut Option<ProcessRun> {
        match process {
            Process::Import => &mut self.import_run,
            Process::Scrape => &mut self.scrape_run,
        }
    }
}

/// One line of a process's output, as `ProcessOutput` records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputLine {
    /// `stdout` or `stderr`.
    pub stream: String,
    pub line: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentCommand {
    /// Locks the agent for a registration.
    StartRegistration,
    CompleteRegistration {
        public_key: String,
    },
    AbandonRegistration {
        reason: String,
    },
    RecordPreflight {
        failed: Vec<String>,
    },
    RecordLog {
        level: String,
        message: String,
        fields: BTreeMap<String, String>,
    },
    /// Records an export; with `import`, the project's import command, starts it unless one
    /// is already running.
    AnnounceExport {
        agent: String,
        files: String,
        import: Option<Vec<String>>,
    },
    StartScrape {
        argv: Vec<String>,
    },
    /// Where a started process runs.
    SuperviseProcess {
        process: Process,
        run: Supervision,
    },
    /// Lines a process wrote, in order: one `ProcessOutput` each, in one append; with `read`,
    /// how far its output was read with them.
    RecordOutput {
        process: Process,
        lines: Vec<OutputLine>,
        read: Option<Offsets>,
    },
    FinishProcess {
        process: Process,
        exit_code: Option<i32>,
        outcome: String,
    },
    RecordMeasurements {
        source: Option<String>,
        measurements: Vec<Measurement>,
    },
    /// Records a complete upload; refused when it would make more than `max_files` files for
    /// the next export.
    RecordUpload {
        name: UploadName,
        file: BlobRef,
        max_files: usize,
    },
    /// Ends what a previous process left running: its registration, and its import and scrape
    /// but those in `going_on` (re-attached after the restart).
    SettleAfterRestart {
        going_on: Vec<Process>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentRejection {
    #[error("the agent is locked by another registration")]
    Locked,
    #[error("no registration is in progress")]
    NotRegistering,
    #[error("a scrape process is already running")]
    ScrapeRunning,
    #[error("no {} process is running", .0.name())]
    NotRunning(Process),
    #[error("there is nothing to settle")]
    NothingToSettle,
    #[error("an export holds at most {0} files")]
    TooManyFiles(usize),
}

/// The reason recorded for a process the server stopped while it ran (on restart).
pub const INTERRUPTED: &str = "interrupted: the server stopped";

impl Entity for GrosAgent {
    crate::entity_types!("gros_agent" version 3, state AgentState,
        AgentCommand => AgentEvent, rejected AgentRejection);

    fn decide(state: &AgentState, command: &AgentCommand, ctx: &Ctx) -> Decision<Self> {
        let at = ctx.now;
        Ok(match command {
            AgentCommand::StartRegistration => {
                if state.registering {
                    return Err(AgentRejection::Locked);
                }
                vec![AgentEvent::RegistrationStarted(RegistrationStarted { at })]
            }
            AgentCommand::CompleteRegistration { public_key } => {
                if !state.registering {
                    return Err(AgentRejection::NotRegistering);
                }
                let rekeyed = state
                    .public_key
                    .as_ref()
                    .is_some_and(|known| known != public_key);
                vec![AgentEvent::AgentRegistered(AgentRegistered {
                    public_key: public_key.clone(),
                    rekeyed,
                    at,
                })]
            }
            AgentCommand::AbandonRegistration { reason } => {
                if !state.registering {
                    return Err(AgentRejection::NotRegistering);
                }
                vec![AgentEvent::RegistrationAbandoned(RegistrationAbandoned {
                    reason: reason.clone(),
                    at,
                })]
            }
            AgentCommand::RecordPreflight { failed } => {
                vec![AgentEvent::PreflightChecked(PreflightChecked {
                    ok: failed.is_empty(),
                    failed: failed.clone(),
                    at,
                })]
            }
            AgentCommand::RecordLog {
                level,
                message,
                fields,
            } => vec![AgentEvent::LogRecorded(LogRecorded {
                level: level.clone(),
                message: message.clone(),
                fields: fields.clone(),
                at,
            })],
            AgentCommand::AnnounceExport {
                agent,
                files,
                import,
            } => {
                let mut events = vec![AgentEvent::ExportAnnounced(ExportAnnounced {
                    agent: agent.clone(),
                    files: files.clone(),
                    at,
                })];
                if !state.uploads.is_empty() {
                    events.push(AgentEvent::UploadsAnnounced(UploadsAnnounced {
                        uploads: state.uploads.clone(),
                        at,
                    }));
                }
                if let Some(argv) = import.as_ref().filter(|_| !state.running(Process::Import)) {
                    events.push(AgentEvent::ProcessStarted(ProcessStarted {
                        process: Process::Import,
                        argv: argv.clone(),
                        at,
                    }));
                }
                events
            }
            AgentCommand::StartScrape { argv } => {
                if state.running(Process::Scrape) {
                    return Err(AgentRejection::ScrapeRunning);
                }
                vec![AgentEvent::ProcessStarted(ProcessStarted {
                    process: Process::Scrape,
                    argv: argv.clone(),
                    at,
                })]
            }
            AgentCommand::SuperviseProcess { process, run } => {
                if !state.running(*process) {
                    return Err(AgentRejection::NotRunning(*process));
                }
                vec![AgentEvent::ProcessSupervised(ProcessSupervised {
                    process: *process,
                    run: run.clone(),
                    at,
                })]
            }
            AgentCommand::RecordOutput {
                process,
                lines,
                read,
            } => {
                if !state.running(*process) {
                    return Err(AgentRejection::NotRunning(*process));
                }
                let mut events: Vec<AgentEvent> = lines
                    .iter()
                    .map(|output| {
                        AgentEvent::ProcessOutput(ProcessOutput {
                            process: *process,
                            stream: output.stream.clone(),
                            line: output.line.clone(),
                            at,
                        })
                    })
                    .collect();
                if let Some(read) = read {
                    events.push(AgentEvent::ProcessOutputRead(ProcessOutputRead {
                        process: *process,
                        read: *read,
                        at,
                    }));
                }
                events
            }
            AgentCommand::FinishProcess {
                process,
                exit_code,
                outcome,
            } => {
                if !state.running(*process) {
                    return Err(AgentRejection::NotRunning(*process));
                }
                vec![AgentEvent::ProcessFinished(ProcessFinished {
                    process: *process,
                    exit_code: *exit_code,
                    outcome: outcome.clone(),
                    at,
                })]
            }
            AgentCommand::RecordMeasurements {
                source,
                measurements,
            } => vec![AgentEvent::MeasurementsRecorded(MeasurementsRecorded {
                source: source.clone(),
                measurements: measurements.clone(),
                at,
            })],
            AgentCommand::RecordUpload {
                name,
                file,
                max_files,
            } => {
                let replaces = state.uploads.iter().any(|u| u.name == name.as_str());
                if !replaces && state.uploads.len() >= *max_files {
                    return Err(AgentRejection::TooManyFiles(*max_files));
                }
                vec![AgentEvent::FileUploaded(FileUploaded {
                    name: name.as_str().to_owned(),
                    file: file.clone(),
                    at,
                })]
            }
            AgentCommand::SettleAfterRestart { going_on } => {
                let mut events = Vec::new();
                if state.registering {
                    events.push(AgentEvent::RegistrationAbandoned(RegistrationAbandoned {
                        reason: INTERRUPTED.into(),
                        at,
                    }));
                }
                for process in [Process::Import, Process::Scrape] {
                    if state.running(process) && !going_on.contains(&process) {
                        events.push(AgentEvent::ProcessFinished(ProcessFinished {
                            process,
                            exit_code: None,
                            outcome: INTERRUPTED.into(),
                            at,
                        }));
                    }
                }
                if events.is_empty() {
                    return Err(AgentRejection::NothingToSettle);
                }
                events
            }
        })
    }

    fn apply(state: &mut AgentState, event: &AgentEvent) {
        match event {
            AgentEvent::RegistrationStarted(_) => state.registering = true,
            AgentEvent::AgentRegistered(e) => {
                state.registering = false;
                state.public_key = Some(e.public_key.clone());
            }
            AgentEvent::RegistrationAbandoned(_) => state.registering = false,
            AgentEvent::PreflightChecked(_) => {}
            AgentEvent::LogRecorded(_) => state.logs += 1,
            AgentEvent::ExportAnnounced(e) => state.last_export = Some(e.at),
            AgentEvent::ProcessStarted(e) => {
                *state.run_mut(e.process) = Some(ProcessRun {
                    started: e.at,
                    ..ProcessRun::default()
                })
            }
            AgentEvent::ProcessSupervised(e) => {
                if let Some(run) = state.run_mut(e.process) {
                    run.supervision = Some(e.run.clone());
                }
            }
            AgentEvent::ProcessOutput(e) => {
                if let Some(run) = state.run_mut(e.process) {
                    run.lines += 1;
                    run.bytes += e.line.len() as u64;
                }
            }
            AgentEvent::ProcessOutputRead(e) => {
                if let Some(run) = state.run_mut(e.process) {
                    run.read = e.read;
                }
            }
            AgentEvent::ProcessFinished(e) => *state.run_mut(e.process) = None,
            AgentEvent::MeasurementsRecorded(e) => {
                state.measurements += e.measurements.len() as u64
            }
            AgentEvent::FileUploaded(e) => {
                let upload = Upload {
                    name: e.name.clone(),
                    file: e.file.clone(),
                };
                match state.uploads.iter_mut().find(|u| u.name == e.name) {
                    Some(known) => *known = upload,
                    None => state.uploads.push(upload),
                }
            }
            AgentEvent::UploadsAnnounced(_) => state.uploads.clear(),
        }
    }

    fn in_progress(event: &AgentEvent) -> Option<bool> {
        // An agent may have a registration, an import and a scrape under way at once, and the
        // end of one says nothing of the others: so an end never takes the agent off the list
        // reconciliation visits. An agent that once started something is visited at every
        // start, and `on_restart` settles whatever its state still shows running.
        match event {
            AgentEvent::RegistrationStarted(_) | AgentEvent::ProcessStarted(_) => Some(true),
            _ => None,
        }
    }

    fn on_restart(state: &AgentState) -> Option<AgentCommand> {
        (state.registering || state.running(Process::Import) || state.running(Process::Scrape))
            .then_some(AgentCommand::SettleAfterRestart {
                going_on: Vec::new(),
            })
    }
}

// ---------------------------------------------------------------------------------------------
// The project.

/// One project (or [`GLOBAL`]).
pub struct GrosProject;

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum ProjectEvent {
        SaltsCreated version 1 {
            /// The secret store's id of the salts; the values are only there.
            pub secret: String,
        },
        VersionChecked version 1 {
            /// The gatherer's version, branch and commit as it sent them.
            pub version: String,
            pub up_to_date: bool,
        },
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectState {
    /// When the salts were made: from then on they exist in the secret store.
    pub salts_created: Option<DateTime<Utc>>,
    /// The secret store's id of the salts.
    pub salts_secret: Option<String>,
    pub version_checks: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectCommand {
    /// Records that the salts under `secret` exist; nothing when already recorded.
    RecordSalts {
        secret: String,
    },
    RecordVersionCheck {
        version: String,
        up_to_date: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProjectRejection {
    #[error("the salts were recorded under another secret")]
    SaltsElsewhere,
}

impl Entity for GrosProject {
    crate::entity_types!("gros_project" version 1, state ProjectState,
        ProjectCommand => ProjectEvent, rejected ProjectRejection);

    fn decide(state: &ProjectState, command: &ProjectCommand, ctx: &Ctx) -> Decision<Self> {
        Ok(match command {
            ProjectCommand::RecordSalts { secret } => match &state.salts_secret {
                Some(known) if known == secret => vec![],
                Some(_) => return Err(ProjectRejection::SaltsElsewhere),
                None => {
                    vec![ProjectEvent::SaltsCreated(SaltsCreated {
                        secret: secret.clone(),
                        at: ctx.now,
                    })]
                }
            },
            ProjectCommand::RecordVersionCheck {
                version,
                up_to_date,
            } => vec![ProjectEvent::VersionChecked(VersionChecked {
                version: version.clone(),
                up_to_date: *up_to_date,
                at: ctx.now,
            })],
        })
    }

    fn apply(state: &mut ProjectState, event: &ProjectEvent) {
        match event {
            ProjectEvent::SaltsCreated(e) => {
                state.salts_created = Some(e.at);
                state.salts_secret = Some(e.secret.clone());
            }
            ProjectEvent::VersionChecked(_) => state.version_checks += 1,
        }
    }
}
