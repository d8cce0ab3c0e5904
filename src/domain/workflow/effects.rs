//! Running executions: once an execution's request is durable, its steps run one after the
//! other as child processes (each in its own process group, through `process.rs`), and what
//! happens is fed back to the execution as commands: each step's start and end, its output
//! lines in batches as they arrive (`effects::feed_child`: one batch in flight, capped per
//! step), its outputs, and the end. A cancellation stops the running step
//! (SIGTERM, then SIGKILL after the grace period). It decides nothing about the execution's
//! state: the entity's rules do.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::catalogue::{Catalogue, InputKind, Workflow};
use super::{
    Ending, Execution, ExecutionCommand, ExecutionEvent, ExecutionState, Level, LogLine, StepEnded,
    StepRun,
};
use crate::domain::sshkey::SshKeys;
use crate::events::Metadata;
use crate::process::supervised::{self, Offsets};
use crate::process::{self, Canceller, Exit, Invocation, Stream};
use crate::runtime::effects::{self, FeedLimits, ReadItem, Taken};
use crate::runtime::{Clock, Effects, Entities};

/// The variable naming the file where a step writes its outputs.
pub const OUTPUTS_VAR: &str = "ANNALS_OUTPUTS";
/// The most outputs one step may publish.
pub const MAX_OUTPUTS: usize = 256;
/// The most bytes of log lines one step records; past them its lines are counted only
/// (`max_log_lines` bounds the lines of the whole execution).
pub const MAX_STEP_LOG_BYTES: u64 = 64 * 1024 * 1024;

/// The limits of a run, from `[hpcwaas]`.
#[derive(Clone, Debug)]
pub struct RunLimits {
    /// Between SIGTERM and SIGKILL on a timeout or a cancellation.
    pub kill_grace: Duration,
    /// The longest log line, in bytes; longer lines arrive in pieces.
    pub max_line_bytes: usize,
    /// The most lines kept per execution; the rest are counted.
    pub max_log_lines: usize,
    /// The most bytes of a step's outputs file that are read.
    pub max_output_bytes: usize,
    /// Whether a restart follows the steps a previous process left running (else it stops
    /// them).
    pub reattach: bool,
}

/// What the runner knows of a running execution, for cancellation.
#[derive(Default)]
struct Control {
    cancelled: bool,
    current: Option<Canceller>,
}

type Controls = Arc<Mutex<HashMap<String, Control>>>;

/// The side effects of executions: starting runs and cancelling them.
pub struct Runner {
    catalogue: Arc<Catalogue>,
    keys: SshKeys,
    clock: Arc<dyn Clock>,
    limits: RunLimits,
    /// Where steps get their scratch directories (outputs file, key files); emptied at start.
    work_dir: PathBuf,
    controls: Controls,
}

impl Runner {
    pub fn new(
        catalogue: Arc<Catalogue>,
        keys: SshKeys,
        clock: Arc<dyn Clock>,
        limits: RunLimits,
        work_dir: PathBuf,
    ) -> Runner {
        Runner {
            catalogue,
            keys,
            clock,
            limits,
            work_dir,
            controls: Arc::default(),
        }
    }
}

/// Empties the directory of scratch directories but those of the steps `keep` names (steps
/// that run on, re-attached): whatever else a crash left there (a private key among them)
/// goes.
pub fn prepare_work_dir(dir: &Path, keep: &[String]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if keep.iter().any(|name| entry.file_name() == name.as_str()) {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            // A step a restart does not follow was told to stop; its supervisor may still be
            // writing its end here: it is waited for before the directory goes.
            supervised::stop(&path.join(RUN_DIR))?;
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The name of step `index`'s scratch directory under the work directory.
pub fn scratch_name(execution: &str, index: usize) -> String {
    format!("{execution}-{index}")
}

/// The supervised run directory of a step, inside its scratch directory.
const RUN_DIR: &str = "run";

fn lock(controls: &Controls) -> std::sync::MutexGuard<'_, HashMap<String, Control>> {
    controls.lock().unwrap_or_else(|p| p.into_inner())
}

impl Runner {
    /// A run of `workflow` for execution `id`, from step `first` on (see [`Resume`]).
    fn run(
        &self,
        id: &str,
        workflow: Workflow,
        requested: &super::Requested,
        entities: &Entities<Execution>,
        first: usize,
        resume: Resume,
    ) -> Run {
        lock(&self.controls).insert(id.to_owned(), Control::default());
        Run {
            id: id.to_owned(),
            workflow,
            inputs: requested.inputs.clone(),
            by: requested.by.clone(),
            entities: entities.clone(),
            keys: self.keys.clone(),
            clock: self.clock.clone(),
            limits: self.limits.clone(),
            work_dir: self.work_dir.clone(),
            controls: self.controls.clone(),
            full: std::cell::Cell::new(false),
            first,
            resume: std::cell::RefCell::new(resume),
            read: std::cell::Cell::new(Offsets::default()),
        }
    }

    /// What to do with an execution a previous process left running. With re-attachment on,
    /// it goes on where it was: a step running under its supervisor is followed from where
    /// its output was recorded (also one whose supervisor's start was not recorded yet: its
    /// run directory tells), a step recorded as started whose program never started is
    /// started (one whose supervisor is still starting it is stopped instead), and the steps
    /// after run (a cancellation already asked for stops the step).
    /// Otherwise (re-attachment off, its workflow gone from the configuration, a step that
    /// ended in failure, or a cancellation between steps) whatever its last step left running
    /// is killed, and `None` leaves the execution for the caller to settle as interrupted.
    pub fn resume(
        &self,
        id: &str,
        state: &ExecutionState,
        entities: &Entities<Execution>,
    ) -> Option<Resumed> {
        let plan = || {
            let requested = state.requested.as_ref()?;
            let workflow = self.catalogue.get(&requested.workflow).cloned()?;
            let cancelling = state.status == Some(super::Status::Cancelling);
            let (first, resume) = match (&state.run, state.steps.last()) {
                (Some(run), _) => (run.index, Resume::Follow(run.clone(), false)),
                (None, Some(step)) if step.ended.is_none() => {
                    let dir = self.run_dir(id, step.index as usize);
                    match supervised::recover(&dir) {
                        Some(supervision) => (
                            step.index,
                            Resume::Follow(
                                StepRun {
                                    index: step.index,
                                    supervision,
                                    read: Offsets::default(),
                                },
                                true,
                            ),
                        ),
                        // A supervisor that listens but recorded no program yet (the
                        // previous process ended within its first milliseconds): stopped,
                        // rather than a second program started beside it.
                        None if supervised::kill(&dir) => return None,
                        None => (step.index, Resume::Started),
                    }
                }
                (None, Some(step)) if succeeded(step.ended.as_ref()?) && !cancelling => {
                    (step.index + 1, Resume::Fresh)
                }
                (None, None) if !cancelling => (0, Resume::Fresh),
                (None, _) => return None,
            };
            let first = first as usize;
            (self.limits.reattach && first <= workflow.steps.len())
                .then_some((requested, workflow, first, resume, cancelling))
        };
        let Some((requested, workflow, first, resume, cancelling)) = plan() else {
            self.stop_left_running(id, state);
            return None;
        };
        let scratch = matches!(resume, Resume::Follow(..)).then(|| scratch_name(id, first));
        let resumed = self.run(id, workflow, requested, entities, first, resume);
        if cancelling {
            if let Some(control) = lock(&self.controls).get_mut(id) {
                control.cancelled = true;
            }
        }
        Some(Resumed {
            scratch,
            run: resumed,
        })
    }

    /// How an execution that does not go on after a restart ends when its last step had ended
    /// before the stop, as the run would have ended it right after: failed with the step's
    /// reason, cancelled, or succeeded after its last step. `None` when a step was still
    /// running: it is settled as interrupted.
    pub fn ended(&self, state: &ExecutionState) -> Option<Ending> {
        let requested = state.requested.as_ref()?;
        let workflow = self.catalogue.get(&requested.workflow);
        let cancelling = state.status == Some(super::Status::Cancelling);
        let Some(step) = state.steps.last() else {
            return cancelling.then_some(Ending::Cancelled);
        };
        let timeout = workflow
            .and_then(|w| w.steps.get(step.index as usize))
            .and_then(|s| s.timeout);
        match StepResult::of(&step.name, step.ended.as_ref()?, timeout, false) {
            StepResult::Cancelled => Some(Ending::Cancelled),
            StepResult::Failed(reason) => Some(Ending::Failed { reason }),
            StepResult::Succeeded if cancelling => Some(Ending::Cancelled),
            StepResult::Succeeded => {
                let last = workflow.is_some_and(|w| step.index as usize + 1 == w.steps.len());
                last.then_some(Ending::Success)
            }
        }
    }

    /// The supervised run directory of step `index` of execution `id`.
    fn run_dir(&self, id: &str, index: usize) -> PathBuf {
        self.work_dir.join(scratch_name(id, index)).join(RUN_DIR)
    }

    /// Kills what the last started step of an execution that does not go on left running:
    /// through its supervisor, or, the supervisor gone, its group.
    fn stop_left_running(&self, id: &str, state: &ExecutionState) {
        if let Some(run) = &state.run {
            if !supervised::kill(&run.supervision.dir) {
                supervised::kill_lost(&run.supervision);
            }
        }
        // A step whose start was recorded but not its supervisor's: its run directory tells.
        if let Some(step) = state.steps.last().filter(|step| step.ended.is_none()) {
            supervised::kill(&self.run_dir(id, step.index as usize));
        }
    }
}

/// Where a run starts at its first step.
enum Resume {
    /// Afresh: the step is started and its start recorded.
    Fresh,
    /// The step's start is recorded, its program not started: it is started.
    Started,
    /// The step runs under its supervisor from a previous process: it is followed from where
    /// its output was recorded; `true` when its supervision is still to be recorded.
    Follow(StepRun, bool),
}

/// Whether a step that ended lets the steps after it run.
fn succeeded(ended: &StepEnded) -> bool {
    ended.exit_code == Some(0) && !ended.timed_out && !ended.cancelled
}

/// An execution that goes on after a restart, not yet started again.
pub struct Resumed {
    /// The scratch directory its running step keeps, when one runs on.
    pub scratch: Option<String>,
    run: Run,
}

impl Resumed {
    pub fn start(self) {
        actix_rt::spawn(self.run.run());
    }
}

impl Effects<Execution> for Runner {
    fn after_commit(
        &self,
        id: &str,
        _state: &super::ExecutionState,
        events: &[ExecutionEvent],
        entities: &Entities<Execution>,
    ) {
        for event in events {
            match event {
                ExecutionEvent::ExecutionRequested(requested) => {
                    let Some(workflow) = self.catalogue.get(&requested.workflow).cloned() else {
                        // The workflow left the configuration between the request and now.
                        let entities = entities.clone();
                        let id = id.to_owned();
                        let reason = format!("workflow {} is not configured", requested.workflow);
                        actix_rt::spawn(async move {
                            let _ = entities
                                .execute(
                                    &id,
                                    ExecutionCommand::Finish(Ending::Failed { reason }),
                                    Metadata::system(),
                                )
                                .await;
                        });
                        continue;
                    };
                    let run = self.run(id, workflow, requested, entities, 0, Resume::Fresh);
                    actix_rt::spawn(run.run());
                }
                ExecutionEvent::CancelRequested(_) => {
                    if let Some(control) = lock(&self.controls).get_mut(id) {
                        control.cancelled = true;
                        if let Some(canceller) = &control.current {
                            canceller.cancel();
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// An execution requested on a node that died before it started any step starts here, as
    /// a restart of that node would have started it (with re-attachment on); any other is
    /// settled as interrupted.
    fn take_over(
        &self,
        id: &str,
        state: &super::ExecutionState,
        entities: &Entities<Execution>,
    ) -> bool {
        let Some(requested) = &state.requested else {
            return false;
        };
        let waiting = state.steps.is_empty()
            && state.run.is_none()
            && state.status == Some(super::Status::Running);
        let Some(workflow) = self.catalogue.get(&requested.workflow).cloned() else {
            return false;
        };
        if !waiting || !self.limits.reattach {
            return false;
        }
        let run = self.run(id, workflow, requested, entities, 0, Resume::Fresh);
        actix_rt::spawn(run.run());
        true
    }
}

/// One execution being run.
struct Run {
    id: String,
    workflow: Workflow,
    inputs: BTreeMap<String, String>,
    by: Option<String>,
    entities: Entities<Execution>,
    keys: SshKeys,
    clock: Arc<dyn Clock>,
    limits: RunLimits,
    work_dir: PathBuf,
    controls: Controls,
    /// The execution has reached its limit of lines: later lines are only counted here, and
    /// recorded as one count per step, so that a step that writes without end does not grow
    /// the log without end.
    full: std::cell::Cell<bool>,
    /// The step to start from.
    first: usize,
    /// How the first step starts; taken by it.
    resume: std::cell::RefCell<Resume>,
    /// Where the running step's output goes on after the last recorded line.
    read: std::cell::Cell<Offsets>,
}

/// How one step went.
enum StepResult {
    Succeeded,
    Failed(String),
    Cancelled,
}

impl StepResult {
    /// How step `name` went, from its recorded end; `lost` when its supervisor ended without
    /// recording the end.
    fn of(name: &str, ended: &StepEnded, timeout: Option<Duration>, lost: bool) -> StepResult {
        if ended.cancelled {
            return StepResult::Cancelled;
        }
        StepResult::Failed(if lost {
            format!("step {name} was interrupted: its supervisor ended without recording its end")
        } else if ended.timed_out {
            format!(
                "step {name} timed out after {}s",
                timeout.unwrap_or_default().as_secs_f64()
            )
        } else {
            match (ended.exit_code, ended.signal) {
                (Some(0), _) => return StepResult::Succeeded,
                (Some(code), _) => format!("step {name} exited with code {code}"),
                (None, Some(signal)) => format!("step {name} was killed by signal {signal}"),
                (None, None) => format!("step {name} ended in an unknown way"),
            }
        })
    }
}

impl Run {
    async fn run(self) {
        let ending = self.steps().await;
        lock(&self.controls).remove(&self.id);
        self.send(ExecutionCommand::Finish(ending)).await;
    }

    fn cancelled(&self) -> bool {
        lock(&self.controls)
            .get(&self.id)
            .is_some_and(|control| control.cancelled)
    }

    async fn send(&self, command: ExecutionCommand) {
        if let Err(error) = self
            .entities
            .execute(&self.id, command, Metadata::system())
            .await
        {
            tracing::warn!(execution = %self.id, %error, "a run's report was not recorded");
        }
    }

    async fn line(&self, level: Level, content: String) {
        let line = LogLine {
            level,
            at: self.clock.now(),
            content,
        };
        self.send(ExecutionCommand::RecordLines {
            lines: vec![line],
            max_lines: self.limits.max_log_lines,
            read: None,
        })
        .await;
    }

    async fn steps(&self) -> Ending {
        for index in self.first..self.workflow.steps.len() {
            let following = matches!(*self.resume.borrow(), Resume::Follow(..));
            if self.cancelled() && !following {
                return Ending::Cancelled;
            }
            let scratch = self.work_dir.join(scratch_name(&self.id, index));
            let result = self.step(index, &scratch).await;
            let removed = off_thread(move || match std::fs::remove_dir_all(&scratch) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(error.to_string())
                }
                _ => Ok(()),
            })
            .await
            .and_then(|removed| removed);
            if let Err(error) = removed {
                tracing::warn!(execution = %self.id, %error, "a step's scratch directory stays");
            }
            match result {
                StepResult::Succeeded if self.cancelled() => return Ending::Cancelled,
                StepResult::Succeeded => {}
                StepResult::Failed(reason) => return Ending::Failed { reason },
                StepResult::Cancelled => return Ending::Cancelled,
            }
        }
        Ending::Success
    }

    /// The step's invocation: its program and arguments, its environment with the inputs as
    /// `INPUT_<NAME>` (an ssh key as the path of a 0600 file in the scratch directory) and
    /// `ANNALS_OUTPUTS`.
    async fn invocation(
        &self,
        index: usize,
        scratch: &Path,
    ) -> Result<(Invocation, Vec<PathBuf>), String> {
        let step = &self.workflow.steps[index];
        let outputs = scratch.join("outputs");
        let (dir, file) = (scratch.to_owned(), outputs.clone());
        off_thread(move || {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("the scratch directory could not be made: {e}"))?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&file)
                .map(drop)
                .map_err(|e| format!("the outputs file could not be made: {e}"))
        })
        .await??;
        let mut invocation = self
            .output_limits(Invocation::new(&step.program))
            .args(&step.args)
            .current_dir(step.dir.clone().unwrap_or_else(|| scratch.to_owned()))
            .kill_grace(self.limits.kill_grace);
        let mut key_files = Vec::new();
        if let Some(timeout) = step.timeout {
            invocation = invocation.timeout(timeout);
        }
        for (key, value) in &step.env {
            invocation = invocation.env(key, value);
        }
        for (name, value) in &self.inputs {
            let Some(input) = self.workflow.input(name) else {
                continue;
            };
            let value = match input.kind {
                InputKind::String => value.clone(),
                InputKind::SshKey => {
                    let id = uuid::Uuid::parse_str(value)
                        .map_err(|_| format!("input {name} is not an ssh key id"))?;
                    let key = self
                        .keys
                        .private_key(id, self.by.as_deref())
                        .await
                        .map_err(|e| format!("input {name}: {e}"))?;
                    let path = scratch.join(format!("key-{name}"));
                    let file = path.clone();
                    off_thread(move || write_private(&file, key.expose()))
                        .await?
                        .map_err(|e| format!("input {name}: the key file: {e}"))?;
                    key_files.push(path.clone());
                    path.display().to_string()
                }
            };
            invocation = invocation.env(&input.variable, value);
        }
        Ok((invocation.env(OUTPUTS_VAR, outputs), key_files))
    }

    /// How a step's output is read: lines up to the configured length, nothing captured raw.
    fn output_limits(&self, invocation: Invocation) -> Invocation {
        invocation
            .max_line_bytes(self.limits.max_line_bytes)
            .max_capture_bytes(0)
    }

    /// Starts step `index` under its supervisor and records where it runs; or, for the step a
    /// previous process left running, follows it from where its output was recorded.
    async fn start(&self, index: usize, scratch: &Path) -> Result<process::Running, String> {
        let resume = std::mem::replace(&mut *self.resume.borrow_mut(), Resume::Fresh);
        let step = &self.workflow.steps[index];
        match resume {
            Resume::Follow(run, record) => {
                if record {
                    self.send(ExecutionCommand::SuperviseStep {
                        index: index as u32,
                        run: run.supervision.clone(),
                    })
                    .await;
                }
                self.read.set(run.read);
                let limits = self.output_limits(Invocation::new("step"));
                return Ok(supervised::attach(&run.supervision, run.read, &limits));
            }
            Resume::Started => {}
            Resume::Fresh => {
                self.send(ExecutionCommand::StartStep {
                    index: index as u32,
                    name: step.name.clone(),
                })
                .await;
            }
        }
        self.read.set(Offsets::default());
        let (invocation, key_files) = self.invocation(index, scratch).await?;
        let (running, run) =
            effects::start_supervised(invocation, &scratch.join(RUN_DIR), key_files)
                .map_err(|e| e.to_string())?;
        self.send(ExecutionCommand::SuperviseStep {
            index: index as u32,
            run,
        })
        .await;
        Ok(running)
    }

    /// Ends step `index` as not run and fails the execution with `reason`.
    async fn end_not_run(&self, index: u32, reason: String) -> StepResult {
        self.send(ExecutionCommand::EndStep {
            index,
            ended: not_run(),
        })
        .await;
        StepResult::Failed(reason)
    }

    async fn step(&self, index: usize, scratch: &Path) -> StepResult {
        let step = &self.workflow.steps[index];
        let step_index = index as u32;
        let running = match self.start(index, scratch).await {
            Ok(running) => running,
            Err(reason) => {
                // The execution's last line gives the reason.
                let reason = format!("step {} could not start: {reason}", step.name);
                return self.end_not_run(step_index, reason).await;
            }
        };
        {
            let mut controls = lock(&self.controls);
            if let Some(control) = controls.get_mut(&self.id) {
                if control.cancelled {
                    running.canceller().cancel();
                }
                control.current = Some(running.canceller());
            }
        }
        let outcome = self.feed_lines(running).await;
        if let Some(control) = lock(&self.controls).get_mut(&self.id) {
            control.current = None;
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                let reason = format!("step {}: {error}", step.name);
                return self.end_not_run(step_index, reason).await;
            }
        };
        let (path, max) = (scratch.join("outputs"), self.limits.max_output_bytes);
        let read = off_thread(move || read_outputs(&path, max))
            .await
            .and_then(|read| read);
        let (outputs, over) = match read {
            Ok(read) => read,
            Err(problem) => {
                self.line(Level::Warn, format!("step {}: {problem}", step.name))
                    .await;
                Default::default()
            }
        };
        if over {
            let limit = self.limits.max_output_bytes;
            self.line(
                Level::Warn,
                format!(
                    "step {}: only the first {limit} bytes of its outputs were read",
                    step.name
                ),
            )
            .await;
        }
        let (outputs, undeclared) = declared_only(outputs, &self.workflow);
        if !undeclared.is_empty() {
            self.line(
                Level::Warn,
                format!(
                    "step {}: outputs the workflow does not declare were not published: {}",
                    step.name,
                    name_some(&undeclared)
                ),
            )
            .await;
        }
        if !outputs.is_empty() {
            self.send(ExecutionCommand::RecordOutputs { outputs }).await;
        }
        let (exit_code, signal) = match outcome.exit {
            Exit::Code(code) => (Some(code), None),
            Exit::Signal(signal) => (None, Some(signal)),
            Exit::Unknown => (None, None),
        };
        let ended = StepEnded {
            exit_code,
            signal,
            duration_ms: outcome.elapsed.as_millis() as u64,
            timed_out: outcome.ending == process::Ending::TimedOut,
            cancelled: outcome.ending == process::Ending::Cancelled,
        };
        let lost = outcome.ending == process::Ending::Lost;
        let result = StepResult::of(&step.name, &ended, step.timeout, lost);
        self.send(ExecutionCommand::EndStep {
            index: step_index,
            ended,
        })
        .await;
        result
    }

    /// Records the step's lines as they arrive, through [`effects::feed_child`]: one batch in
    /// flight at a time, at most `max_log_lines` lines and [`MAX_STEP_LOG_BYTES`] bytes per step.
    /// Once the execution is full (or the step past its cap), lines are counted, and the count
    /// recorded when the step's output ends. Then waits for the step's end.
    async fn feed_lines(
        &self,
        running: process::Running,
    ) -> Result<process::Outcome, process::ProcessError> {
        let limits = FeedLimits {
            max_items: if self.full.get() {
                0
            } else {
                self.limits.max_log_lines as u64
            },
            max_bytes: MAX_STEP_LOG_BYTES,
            ..FeedLimits::DEFAULT
        };
        let ended = effects::feed_child(
            running,
            &limits,
            |line| ReadItem::of(line, |line| self.log_line(line)),
            |batch| {
                let (lines, read) = ReadItem::split(batch, self.read.get());
                let command = ExecutionCommand::RecordLines {
                    lines,
                    max_lines: self.limits.max_log_lines,
                    read: Some(read),
                };
                async move {
                    match self
                        .entities
                        .execute(&self.id, command, Metadata::system())
                        .await
                    {
                        Ok(executed) => {
                            self.read.set(read);
                            let full = executed
                                .events
                                .iter()
                                .any(|e| matches!(e, ExecutionEvent::LogLinesDropped(_)));
                            if full {
                                self.full.set(true);
                                Taken::Full
                            } else {
                                Taken::More
                            }
                        }
                        Err(error) => {
                            tracing::warn!(execution = %self.id, %error, "lines were not recorded");
                            Taken::More
                        }
                    }
                }
            },
        )
        .await;
        if ended.fed.capped.is_some() {
            self.full.set(true);
        }
        if ended.fed.dropped > 0 {
            self.send(ExecutionCommand::CountDroppedLines {
                count: ended.fed.dropped,
            })
            .await;
        }
        ended.outcome
    }

    fn log_line(&self, line: process::Line) -> LogLine {
        let (level, content) = level_of(line.stream, line.text);
        LogLine {
            level,
            at: self.clock.now(),
            content,
        }
    }
}

impl effects::Weigh for LogLine {
    fn bytes(&self) -> usize {
        self.content.len()
    }
}

/// A line's level: its own when it starts with `DEBUG:`, `INFO:`, `WARN:` or `ERROR:` (the
/// prefix is taken off), else INFO for standard output and WARN for standard error.
pub fn level_of(stream: Stream, text: String) -> (Level, String) {
    for (prefix, level) in [
        ("DEBUG:", Level::Debug),
        ("INFO:", Level::Info),
        ("WARN:", Level::Warn),
        ("ERROR:", Level::Error),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return (level, rest.trim_start().to_owned());
        }
    }
    let level = match stream {
        Stream::Stdout => Level::Info,
        Stream::Stderr => Level::Warn,
    };
    (level, text)
}

/// The `KEY=VALUE` lines of a step's outputs file, within its first `max_bytes`, and whether
/// the file went on past them (a line cut by the limit is left out, not kept truncated). No
/// file is no outputs. Anything but a regular file (a FIFO the step made there, a device) is
/// refused without reading: it could hold this thread for ever.
fn read_outputs(path: &Path, max_bytes: usize) -> Result<(BTreeMap<String, String>, bool), String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = Vec::new();
    // Opening a FIFO for reading waits for a writer, unless non-blocking.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    if let Ok(file) = opened {
        if !file.metadata().is_ok_and(|meta| meta.is_file()) {
            return Err("$ANNALS_OUTPUTS is not a regular file: its outputs were not read".into());
        }
        let _ = file.take(max_bytes as u64 + 1).read_to_end(&mut text);
    }
    let over = text.len() > max_bytes;
    if over {
        text.truncate(max_bytes);
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        text.truncate(whole);
    }
    let outputs = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|line| line.split_once('='))
        .filter(|(key, _)| !key.trim().is_empty())
        .take(MAX_OUTPUTS)
        .map(|(key, value)| (key.trim().to_owned(), value.to_owned()))
        .collect();
    Ok((outputs, over))
}

/// The outputs the workflow declares, and the names of the others: only a declared output is
/// published, so that what a client reads is what the workflow's description promises.
fn declared_only(
    outputs: BTreeMap<String, String>,
    workflow: &Workflow,
) -> (BTreeMap<String, String>, Vec<String>) {
    let (declared, undeclared): (BTreeMap<_, _>, BTreeMap<_, _>) = outputs
        .into_iter()
        .partition(|(name, _)| workflow.outputs.iter().any(|o| &o.name == name));
    (declared, undeclared.into_keys().collect())
}

/// The most names a line lists; the rest are counted.
const MAX_NAMES_SHOWN: usize = 10;

/// `names`, at most [`MAX_NAMES_SHOWN`] of them, cut to a readable length each.
fn name_some(names: &[String]) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(MAX_NAMES_SHOWN)
        .map(|name| match name.char_indices().nth(64) {
            Some((cut, _)) => format!("{}…", &name[..cut]),
            None => name.clone(),
        })
        .collect();
    if names.len() > MAX_NAMES_SHOWN {
        shown.push(format!("and {} more", names.len() - MAX_NAMES_SHOWN));
    }
    shown.join(", ")
}

/// Writes a private key to a new file readable by its owner only. Not synced: the file lives
/// for one step, and a copy that never reaches the disk is the better one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Runs file work on the blocking pool: the runner's tasks share their thread with the
/// entities' actors, which file I/O must not stall.
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    crate::runtime::blocking(work)
        .await
        .map_err(|crate::runtime::blocking::Stopped(e)| format!("the file work stopped: {e}"))
}

/// The end of a step whose program never ran (or whose end was lost).
fn not_run() -> StepEnded {
    StepEnded {
        exit_code: None,
        signal: None,
        duration_ms: 0,
        timed_out: false,
        cancelled: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::workflow::catalogue::{OutputSpec, StepSpec, WorkflowSpec};

    #[test]
    fn only_declared_outputs_are_kept_and_the_others_named_within_bounds() {
        let workflow = Workflow::parse(&WorkflowSpec {
            application_id: "a".into(),
            environment_id: "e".into(),
            name: "w".into(),
            outputs: vec![OutputSpec {
                name: "kept".into(),
                description: String::new(),
            }],
            steps: vec![StepSpec {
                command: vec!["/bin/true".into()],
                ..StepSpec::default()
            }],
            ..WorkflowSpec::default()
        })
        .expect("a valid workflow");
        let written: BTreeMap<String, String> = [("kept", "1"), ("stray", "2"), ("other", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let (published, undeclared) = declared_only(written, &workflow);
        assert_eq!(published.into_keys().collect::<Vec<_>>(), ["kept"]);
        assert_eq!(undeclared, ["other", "stray"]);
        let many: Vec<String> = (0..12).map(|n| format!("n{n:02}")).collect();
        assert!(name_some(&many).ends_with("n09, and 2 more"));
        let long = "x".repeat(100);
        assert_eq!(name_some(&[long]).chars().count(), 65);
    }

    #[test]
    fn a_line_sets_its_own_level() {
        for (stream, line, level, content) in [
            (Stream::Stdout, "DEBUG: x", Level::Debug, "x"),
            (Stream::Stdout, "ERROR:boom", Level::Error, "boom"),
            (Stream::Stderr, "plain", Level::Warn, "plain"),
            (Stream::Stdout, "plain", Level::Info, "plain"),
        ] {
            assert_eq!(
                level_of(stream, line.into()),
                (level, content.into()),
                "{line}"
            );
        }
    }
}
