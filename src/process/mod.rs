//! Running external programs for the faces (workflow steps, scanner commands, scrapes): argv
//! only, never a shell; a minimal environment; each run in its own process group, whose every
//! member dies with it; output delivered line by line as it arrives; timeouts and cancellation.
//! It knows nothing of entities, events or HTTP, and it never logs or `Debug`-prints a run's
//! environment values or standard input, which may carry secrets.
//!
//! # Lifetime of a run
//!
//! [`spawn`] starts the program as the leader of a new process group and returns a [`Running`].
//! A run ends in one of three ways ([`Ending`]):
//!
//! - **Finished**: the program exited on its own.
//! - **TimedOut**: the [`Invocation::timeout`] passed first.
//! - **Cancelled**: [`Canceller::cancel`] was called first.
//!
//! On a timeout or a cancellation the whole group gets `SIGTERM`; if the program has not exited
//! after [`Invocation::kill_grace`], the group gets `SIGKILL` ([`Outcome::forced`]). However
//! the program ended, whatever it left running in its group (background children, pipelines)
//! is killed with `SIGKILL` before the program is reaped: a run never leaves processes behind
//! unless they left its group themselves (`setsid`), and the group id is never signalled after
//! the leader is reaped, so it cannot hit an unrelated group that reused the number.
//! Dropping a [`Running`] kills the group at once.
//!
//! # Environment
//!
//! The child does **not** inherit the server's environment, which holds `ANNALS_MASTER_KEY`
//! and other credentials. It gets only [`INHERITED_VARS`] from the server (with
//! [`DEFAULT_PATH`] when the server has no `PATH`), then the variables the caller gives, which
//! override them. The program name is looked up in that `PATH`.
//!
//! # Output
//!
//! Standard output and standard error are read concurrently and split into [`Line`]s, tagged
//! with their stream, in the order each stream produced them; the interleaving of the two
//! streams is the order in which they reached annals, which is not necessarily the order the
//! program wrote them. A line is cut after [`Invocation::max_line_bytes`] (at a UTF-8 character
//! boundary when there is one nearby); the rest follows in further lines, and every piece but
//! the last has [`Line::continues`] set. Text that is not UTF-8 is decoded lossily. The lines
//! travel through a bounded channel: a consumer that reads slowly slows the program down (its
//! writes block) rather than growing memory. Besides the lines, the first
//! [`Invocation::max_capture_bytes`] bytes of each stream are kept raw in the [`Outcome`], for
//! reports.
//!
//! Standard input is the given bytes, written by a separate task and then closed, so that a
//! program that writes a lot before reading cannot deadlock against us; without bytes it is
//! `/dev/null`. A program that exits without reading all of its input is not an error.
//!
//! Everything here needs a Tokio runtime with I/O and time enabled (actix's runtime has both).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

pub mod supervised;

/// The file mode creation mask programs run with, when [`set_child_umask`] gave one.
static CHILD_UMASK: AtomicU32 = AtomicU32::new(NO_UMASK);
const NO_UMASK: u32 = u32::MAX;

/// Programs run from now on get this umask rather than the server's: `annals` keeps its own
/// files private (umask 077) and gives the programs it runs the umask it was started with, so
/// that they create files as they would when run by hand.
pub fn set_child_umask(mask: libc::mode_t) {
    CHILD_UMASK.store(mask, Ordering::Relaxed);
}

/// The variables a child inherits from the server; everything else it gets from the caller.
pub const INHERITED_VARS: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];
/// The child's `PATH` when the server has none and the caller gives none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The longest line delivered in one piece, by default: 64 KiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// The most of each stream a supervised run keeps in its run directory, by default: 1 GiB; the
/// rest is read and counted, not kept.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024 * 1024;
/// The raw output kept per stream for the outcome, by default: 8 MiB.
pub const DEFAULT_MAX_CAPTURE_BYTES: usize = 8 * 1024 * 1024;
/// How long a cancelled or timed-out program has between `SIGTERM` and `SIGKILL`, by default.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);
/// How long the output pipes may stay open once the program and its group are gone. Only a
/// process that left the group (`setsid`) while holding a pipe can keep one open; after this
/// wait annals reads what is already there (at most [`AFTER_EXIT_READ_BYTES`]) and stops.
pub const ESCAPED_WRITER_WAIT: Duration = Duration::from_secs(2);
/// How much more is read from a pipe after [`ESCAPED_WRITER_WAIT`]: enough for a full pipe
/// buffer even when it was enlarged to Linux's default maximum (1 MiB).
pub const AFTER_EXIT_READ_BYTES: usize = 1024 * 1024;

/// The lines that may wait in the channel for a slow consumer before the readers block.
const LINE_CHANNEL: usize = 256;
/// One read from a pipe.
const READ_CHUNK: usize = 8 * 1024;
/// The smallest line limit: a line must be able to hold one UTF-8 character.
const MIN_LINE_BYTES: usize = 4;

/// What to run and how. Built with [`Invocation::new`] and the builder methods.
#[derive(Clone)]
pub struct Invocation {
    program: OsString,
    args: Vec<OsString>,
    /// `None`: the server's working directory.
    dir: Option<PathBuf>,
    /// Added to the inherited variables, overriding them.
    env: Vec<(OsString, OsString)>,
    /// `None`: standard input is `/dev/null`. Kept in a zeroizing buffer because it may hold a
    /// credential handed to the program.
    stdin: Option<Zeroizing<Vec<u8>>>,
    /// `None`: no limit.
    timeout: Option<Duration>,
    kill_grace: Duration,
    max_line_bytes: usize,
    max_capture_bytes: usize,
    max_output_bytes: u64,
}

impl Invocation {
    /// Runs `program` (a path, or a name looked up in the child's `PATH`) with no arguments.
    pub fn new(program: impl Into<OsString>) -> Invocation {
        Invocation {
            program: program.into(),
            args: Vec::new(),
            dir: None,
            env: Vec::new(),
            stdin: None,
            timeout: None,
            kill_grace: DEFAULT_KILL_GRACE,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_capture_bytes: DEFAULT_MAX_CAPTURE_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }

    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Invocation {
        self.args.push(arg.into());
        self
    }

    #[must_use]
    pub fn args<I: IntoIterator<Item = A>, A: Into<OsString>>(mut self, args: I) -> Invocation {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The working directory. It must exist when the run is spawned.
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Invocation {
        self.dir = Some(dir.into());
        self
    }

    /// Adds one environment variable (see the module documentation for what is inherited).
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Invocation {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Bytes written to the program's standard input, which is then closed.
    #[must_use]
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Invocation {
        self.stdin = Some(Zeroizing::new(bytes.into()));
        self
    }

    /// How long the program may run, counted from the spawn.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Invocation {
        self.timeout = Some(timeout);
        self
    }

    /// How long the group has between `SIGTERM` and `SIGKILL` on a timeout or a cancellation.
    #[must_use]
    pub fn kill_grace(mut self, grace: Duration) -> Invocation {
        self.kill_grace = grace;
        self
    }

    /// The longest line delivered in one piece, in bytes; at least 4.
    #[must_use]
    pub fn max_line_bytes(mut self, bytes: usize) -> Invocation {
        self.max_line_bytes = bytes.max(MIN_LINE_BYTES);
        self
    }

    /// How many bytes of each stream the outcome keeps raw; 0 keeps nothing.
    #[must_use]
    pub fn max_capture_bytes(mut self, bytes: usize) -> Invocation {
        self.max_capture_bytes = bytes;
        self
    }

    /// How much of each stream a supervised run keeps on disk, in bytes; past it the output
    /// is read and counted ([`Captured::total`]) but neither kept nor delivered as lines.
    #[must_use]
    pub fn max_output_bytes(mut self, bytes: u64) -> Invocation {
        self.max_output_bytes = bytes;
        self
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The program's whole environment: [`INHERITED_VARS`] from the server (`PATH` defaulting
    /// to [`DEFAULT_PATH`]), then the invocation's variables, which override them.
    fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut environment: Vec<(OsString, OsString)> = INHERITED_VARS
            .iter()
            .filter_map(|name| {
                let value = std::env::var_os(name)
                    .or_else(|| (*name == "PATH").then(|| DEFAULT_PATH.into()))?;
                Some((OsString::from(name), value))
            })
            .collect();
        for (key, value) in &self.env {
            environment.retain(|(name, _)| name != key);
            environment.push((key.clone(), value.clone()));
        }
        environment
    }

    /// What can be told before the spawn: a program is named, and the working directory
    /// exists (its absence would fail the spawn with the same error as a missing program).
    fn check(&self) -> Result<(), ProcessError> {
        if self.program.is_empty() {
            return Err(ProcessError::EmptyProgram);
        }
        match &self.dir {
            Some(dir) if !dir.is_dir() => {
                Err(ProcessError::NoWorkingDirectory { dir: dir.clone() })
            }
            _ => Ok(()),
        }
    }
}

/// Names the variables but never their values, and measures the input without showing it:
/// either may carry a credential.
impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("dir", &self.dir)
            .field(
                "env",
                &self.env.iter().map(|(key, _)| key).collect::<Vec<_>>(),
            )
            .field("stdin_bytes", &self.stdin.as_ref().map(|bytes| bytes.len()))
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("max_capture_bytes", &self.max_capture_bytes)
            .field("max_output_bytes", &self.max_output_bytes)
            .finish()
    }
}

/// Which output stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output, without its line ending (`\n` or `\r\n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub stream: Stream,
    pub text: String,
    /// The line was longer than the limit: this is a piece of it and the rest follows.
    pub continues: bool,
    /// Where its stream goes on after it, in bytes from the stream's start: a reader that
    /// resumes there reads the next line first.
    pub offset: u64,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The program exited on its own.
    Finished,
    /// The timeout passed and the group was killed.
    TimedOut,
    /// The run was cancelled (or its `Running` dropped) and the group was killed.
    Cancelled,
    /// A supervised run's supervisor ended without recording the end (it was killed, or the
    /// machine restarted): its group was killed, and its exit is unknown.
    Lost,
}

/// How the program (the group's leader) exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// Something other than annals reaped it (which only a handler for `SIGCHLD` installed
    /// elsewhere in the process could do), so its status is lost.
    Unknown,
}

/// The raw bytes kept from one stream.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes of the stream, at most the invocation's `max_capture_bytes`.
    pub bytes: Vec<u8>,
    /// How many bytes the stream carried in all.
    pub total: u64,
}

impl Captured {
    /// Whether some of the stream was not kept.
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }
}

/// Sizes only: the output may be megabytes, and a run's output can echo what it was given.
impl fmt::Debug for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Captured")
            .field("kept", &self.bytes.len())
            .field("total", &self.total)
            .finish()
    }
}

/// How a run ended, with the output kept for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ending: Ending,
    pub exit: Exit,
    /// The grace period ran out and the group got `SIGKILL`.
    pub forced: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    /// From the spawn to the reaping of the program.
    pub elapsed: Duration,
}

impl Outcome {
    /// The program finished on its own with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.ending == Ending::Finished && self.exit == Exit::Code(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no program to run")]
    EmptyProgram,
    #[error("the program {program:?} was not found")]
    NotFound { program: OsString },
    #[error("the program {program:?} may not be executed")]
    PermissionDenied { program: OsString },
    #[error("the working directory {dir} does not exist or is not a directory")]
    NoWorkingDirectory { dir: PathBuf },
    #[error("the program {program:?} could not be started: {source}")]
    Spawn {
        program: OsString,
        source: std::io::Error,
    },
    #[error(
        "the run's supervisor stopped before the program ended (the runtime is shutting down)"
    )]
    Lost,
}

/// What the owner of a run asked its supervisor for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Run,
    /// `SIGTERM`, then `SIGKILL` after the grace period.
    Cancel,
    /// The `Running` was dropped: `SIGKILL` at once, nobody waits for the outcome.
    Abandon,
}

/// Cancels a run from anywhere; cheap to clone. The signals are sent by the run's supervisor,
/// which alone knows whether the program is still unreaped.
#[derive(Clone, Debug)]
pub struct Canceller {
    control: Arc<watch::Sender<Control>>,
}

impl Canceller {
    /// Asks for the group to be stopped: `SIGTERM` now, `SIGKILL` after the grace period. The
    /// outcome says `Cancelled` unless the program had already exited. Calling it again, or
    /// after the end, does nothing.
    pub fn cancel(&self) {
        self.control.send_if_modified(|control| {
            let asked = *control == Control::Run;
            if asked {
                *control = Control::Cancel;
            }
            asked
        });
    }

    fn abandon(&self) {
        self.control.send_if_modified(|control| {
            let changed = *control != Control::Abandon;
            *control = Control::Abandon;
            changed
        });
    }
}

/// A run in progress: its lines as they arrive, then its outcome. Dropping it kills the group.
#[derive(Debug)]
pub struct Running {
    pid: u32,
    lines: mpsc::Receiver<Line>,
    outcome: Option<oneshot::Receiver<Outcome>>,
    canceller: Canceller,
}

impl Running {
    /// The program's process id, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A handle that cancels this run.
    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// The next line of output, as soon as it is complete; `None` once both streams are closed.
    pub async fn next_line(&mut self) -> Option<Line> {
        self.lines.recv().await
    }

    /// Waits for the end of the run, discarding lines not yet read (the outcome still holds the
    /// captured output).
    pub async fn wait(mut self) -> Result<Outcome, ProcessError> {
        while self.lines.recv().await.is_some() {}
        match self.outcome.take() {
            Some(outcome) => outcome.await.map_err(|_| ProcessError::Lost),
            None => Err(ProcessError::Lost),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // After `wait` the supervisor is gone and this changes nothing.
        self.canceller.abandon();
    }
}

/// Whether `program` names an executable file where [`spawn`] would look for it: a name with a
/// `/` is a path (relative to `dir`, the child's working directory, when given), a bare name is
/// looked up in `path`, the `PATH` the child gets (the server's, or [`DEFAULT_PATH`], unless the
/// caller gives one). Programs are declared in the configuration long before they run, so this
/// lets start-up say at once that one is missing.
pub fn find_program(program: &str, path: Option<&OsStr>, dir: Option<&std::path::Path>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |file: &std::path::Path| {
        std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return match dir {
            Some(dir) => executable(&dir.join(program)),
            None => executable(std::path::Path::new(program)),
        };
    }
    let inherited = std::env::var_os("PATH");
    let path = path
        .or(inherited.as_deref())
        .unwrap_or(OsStr::new(DEFAULT_PATH));
    !program.is_empty() && std::env::split_paths(path).any(|dir| executable(&dir.join(program)))
}

/// Runs `invocation` to its end, discarding the lines; the outcome keeps the captured output.
pub async fn run(invocation: Invocation) -> Result<Outcome, ProcessError> {
    spawn(invocation)?.wait().await
}

/// Starts the program. See the module documentation for the environment, the group and the
/// output.
pub fn spawn(invocation: Invocation) -> Result<Running, ProcessError> {
    invocation.check()?;
    let program = invocation.program.clone();
    let spawn_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => ProcessError::NotFound {
            program: program.clone(),
        },
        std::io::ErrorKind::PermissionDenied => ProcessError::PermissionDenied {
            program: program.clone(),
        },
        _ => ProcessError::Spawn {
            program: program.clone(),
            source,
        },
    };

    let mut command = tokio::process::Command::new(&invocation.program);
    command
        .args(&invocation.args)
        .env_clear()
        .stdin(if invocation.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Should the supervisor be dropped without reaping (the runtime shutting down), the
        // leader is killed and reaped by Tokio; `Group`'s drop kills the rest.
        .kill_on_drop(true);
    command.envs(invocation.environment());
    if let Some(dir) = &invocation.dir {
        command.current_dir(dir);
    }
    let umask = CHILD_UMASK.load(Ordering::Relaxed);
    if umask != NO_UMASK {
        // SAFETY: umask(2) is async-signal-safe and touches nothing of the parent.
        unsafe {
            command.pre_exec(move || {
                libc::umask(umask);
                Ok(())
            });
        }
    }

    // Listening before the spawn, so that the program's exit cannot be signalled before anyone
    // listens for it.
    let sigchld = signal(SignalKind::child()).map_err(spawn_error)?;
    let started = Instant::now();
    let mut child = command.spawn().map_err(spawn_error)?;
    let Some(pid) = child.id() else {
        // `id` is `None` only once the child has been reaped, which nothing has done yet.
        return Err(spawn_error(std::io::Error::other(
            "the child has no process id",
        )));
    };

    let (line_sender, lines) = mpsc::channel(LINE_CHANNEL);
    let (stop_sender, stop) = watch::channel(false);
    let reader = |pipe: Option<Box<dyn AsyncRead + Send + Unpin>>, stream| {
        pipe.map(|pipe| {
            tokio::spawn(read_stream(
                pipe,
                stream,
                line_sender.clone(),
                invocation.max_line_bytes,
                invocation.max_capture_bytes,
                stop.clone(),
            ))
        })
    };
    let stdout_reader = reader(
        child.stdout.take().map(|pipe| Box::new(pipe) as Box<_>),
        Stream::Stdout,
    );
    let stderr_reader = reader(
        child.stderr.take().map(|pipe| Box::new(pipe) as Box<_>),
        Stream::Stderr,
    );
    // The readers hold the only senders: the channel closes when both reach their end.
    drop(line_sender);
    let writer = match (child.stdin.take(), invocation.stdin) {
        (Some(mut pipe), Some(bytes)) => Some(tokio::spawn(async move {
            // A program may exit without reading its input; the broken pipe is not an error.
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        })),
        _ => None,
    };

    let (control_sender, control) = watch::channel(Control::Run);
    let (outcome_sender, outcome) = oneshot::channel();
    let supervisor = Supervisor {
        group: Group {
            pgid: pid as libc::pid_t,
            child: Some(child),
            reaped_elsewhere: AtomicBool::new(false),
        },
        sigchld,
        control,
        deadline: invocation.timeout.map(|timeout| started + timeout),
        kill_grace: invocation.kill_grace,
        stdout_reader,
        stderr_reader,
        stop_readers: stop_sender,
        writer,
        started,
    };
    tokio::spawn(async move {
        let outcome = supervisor.run().await;
        // Nobody may be waiting any more (the `Running` was dropped).
        let _ = outcome_sender.send(outcome);
    });
    Ok(Running {
        pid,
        lines,
        outcome: Some(outcome),
        canceller: Canceller {
            control: Arc::new(control_sender),
        },
    })
}

/// The program and its process group, until the program is reaped.
struct Group {
    pgid: libc::pid_t,
    /// `None` once reaped: from then on the group id may be reused and is never signalled.
    child: Option<tokio::process::Child>,
    /// Something else reaped the leader (see [`Exit::Unknown`]): the group id may already be
    /// reused, so it is never signalled again.
    reaped_elsewhere: AtomicBool,
}

impl Group {
    fn signal(&self, signal: libc::c_int) {
        if self.child.is_some() && !self.reaped_elsewhere.load(Ordering::Relaxed) {
            // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
            // The leader is not reaped (it is alive or a zombie), so the id is still this group's.
            // ESRCH (the group is empty) is expected and needs no handling.
            unsafe {
                libc::kill(-self.pgid, signal);
            }
        }
    }

    /// Whether the leader has exited, without reaping it: `waitid` with `WNOWAIT`, so that the
    /// zombie keeps the group id reserved while the rest of the group is killed.
    fn leader_exited(&self) -> bool {
        if self.child.is_none() {
            return true;
        }
        loop {
            // SAFETY: siginfo_t is plain data, for which all zeroes is a valid value, and
            // waitid(2) only writes into the struct it is given.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let result = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.pgid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            if result == -1 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // ECHILD: someone else reaped it. Nothing is left to wait for.
                self.reaped_elsewhere.store(true, Ordering::Relaxed);
                return true;
            }
            // SAFETY: after a successful waitid, si_pid is set: the pid, or 0 when no child
            // has exited yet (WNOHANG).
            return unsafe { info.si_pid() } != 0;
        }
    }

    /// Waits until the leader has exited, without reaping it.
    async fn exited(&self, sigchld: &mut Signal) {
        loop {
            if self.leader_exited() {
                return;
            }
            if sigchld.recv().await.is_none() {
                // The signal driver is gone (the runtime is shutting down): fall back to
                // polling for the little time left.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Reaps the leader. Called once it has exited and the rest of the group was killed.
    async fn reap(&mut self) -> Exit {
        let Some(mut child) = self.child.take() else {
            return Exit::Unknown;
        };
        match child.wait().await {
            Ok(status) => exit_of(status),
            Err(_) => Exit::Unknown,
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Only when the supervisor is dropped mid-run: kill everything rather than leak it.
        self.signal(libc::SIGKILL);
    }
}

fn exit_of(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Unknown,
    }
}

/// The task that owns a run: it waits for the end, the timeout or a cancellation, kills the
/// group, reaps the program and gathers the output.
struct Supervisor {
    group: Group,
    sigchld: Signal,
    control: watch::Receiver<Control>,
    deadline: Option<Instant>,
    kill_grace: Duration,
    stdout_reader: Option<JoinHandle<Captured>>,
    stderr_reader: Option<JoinHandle<Captured>>,
    stop_readers: watch::Sender<bool>,
    writer: Option<JoinHandle<()>>,
    started: Instant,
}

impl Supervisor {
    async fn run(mut self) -> Outcome {
        let deadline_at = self.deadline;
        let deadline = async {
            match deadline_at {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let (ending, first_request) = tokio::select! {
            // The exit is checked first so that a program that has already exited counts as
            // finished even if a cancellation arrived at the same moment.
            biased;
            _ = self.group.exited(&mut self.sigchld) => (Ending::Finished, Control::Run),
            _ = deadline => (Ending::TimedOut, Control::Cancel),
            request = requested(&mut self.control) => (Ending::Cancelled, request),
        };
        let mut forced = false;
        if ending != Ending::Finished {
            forced = self.stop_group(first_request).await;
        }
        // The leader has exited but is not reaped: its group id is still reserved, so the rest
        // of the group can be killed without any risk of hitting another group.
        self.group.signal(libc::SIGKILL);
        let exit = self.group.reap().await;
        let elapsed = self.started.elapsed();
        let (stdout, stderr) = self.gather_output().await;
        if let Some(writer) = self.writer.take() {
            writer.abort();
        }
        Outcome {
            ending,
            exit,
            forced,
            stdout,
            stderr,
            elapsed,
        }
    }

    /// `SIGTERM`, then `SIGKILL` after the grace period (at once when abandoned); returns
    /// whether `SIGKILL` was needed. Returns once the leader has exited.
    async fn stop_group(&mut self, request: Control) -> bool {
        let Supervisor {
            group,
            sigchld,
            control,
            kill_grace,
            ..
        } = self;
        if request == Control::Abandon {
            group.signal(libc::SIGKILL);
            group.exited(sigchld).await;
            return true;
        }
        group.signal(libc::SIGTERM);
        // A stopped process only acts on SIGTERM once continued.
        group.signal(libc::SIGCONT);
        let abandoned = async {
            if control.wait_for(|c| *c == Control::Abandon).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let forced = tokio::select! {
            biased;
            _ = group.exited(sigchld) => false,
            _ = tokio::time::sleep(*kill_grace) => true,
            _ = abandoned => true,
        };
        if forced {
            group.signal(libc::SIGKILL);
            group.exited(sigchld).await;
        }
        forced
    }

    /// Waits for both readers to reach the end of their pipes, telling them to stop waiting
    /// after [`ESCAPED_WRITER_WAIT`].
    async fn gather_output(&mut self) -> (Captured, Captured) {
        let result = |joined: Option<Result<Captured, tokio::task::JoinError>>| {
            // A reader that panicked (a bug) leaves its stream empty rather than the run lost.
            joined.and_then(Result::ok).unwrap_or_default()
        };
        let stdout = self.stdout_reader.take();
        let stderr = self.stderr_reader.take();
        let both = async {
            let stdout = match stdout {
                Some(reader) => Some(reader.await),
                None => None,
            };
            let stderr = match stderr {
                Some(reader) => Some(reader.await),
                None => None,
            };
            (stdout, stderr)
        };
        tokio::pin!(both);
        let (stdout, stderr) = tokio::select! {
            joined = &mut both => joined,
            _ = tokio::time::sleep(ESCAPED_WRITER_WAIT) => {
                let _ = self.stop_readers.send(true);
                both.await
            }
        };
        (result(stdout), result(stderr))
    }
}

/// Waits until the owner asks for something other than running on.
async fn requested(control: &mut watch::Receiver<Control>) -> Control {
    loop {
        let current = *control.borrow_and_update();
        if current != Control::Run {
            return current;
        }
        if control.changed().await.is_err() {
            // Every sender is gone, which only happens after `Running` was dropped and set
            // `Abandon`, seen above. Nothing more can be asked.
            std::future::pending::<()>().await;
        }
    }
}

/// Reads one pipe to its end: keeps the first bytes raw and sends each line.
async fn read_stream<R: AsyncRead + Unpin>(
    mut pipe: R,
    stream: Stream,
    lines: mpsc::Sender<Line>,
    max_line_bytes: usize,
    max_capture_bytes: usize,
    mut stop: watch::Receiver<bool>,
) -> Captured {
    let mut captured = Captured::default();
    let mut splitter = LineSplitter::new(stream, max_line_bytes, 0);
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut ready = Vec::new();
    let mut listening = true;
    // Counts down once told to stop, so that a writer that escaped the group cannot keep the
    // run open for ever.
    let mut budget_after_stop = AFTER_EXIT_READ_BYTES;
    loop {
        let read = tokio::select! {
            // Reading first: what is already in the pipe is taken before stopping.
            biased;
            read = pipe.read(&mut buffer) => read,
            _ = stopped(&mut stop) => break,
        };
        let count = match read {
            Ok(0) => break,
            Ok(count) => count,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A pipe that cannot be read any more has nothing more to give.
            Err(_) => break,
        };
        let chunk = &buffer[..count];
        captured.total += count as u64;
        let room = max_capture_bytes.saturating_sub(captured.bytes.len());
        captured
            .bytes
            .extend_from_slice(&chunk[..room.min(chunk.len())]);
        splitter.push(chunk, &mut ready);
        for line in ready.drain(..) {
            // Once the consumer is gone, the pipe is still drained (the program must not block
            // on it) and captured, but lines go nowhere.
            if listening && lines.send(line).await.is_err() {
                listening = false;
            }
        }
        if *stop.borrow() {
            budget_after_stop = budget_after_stop.saturating_sub(count);
            if budget_after_stop == 0 {
                break;
            }
        }
    }
    splitter.finish(&mut ready);
    for line in ready.drain(..) {
        if listening && lines.send(line).await.is_err() {
            listening = false;
        }
    }
    captured
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Splits a byte stream into lines of at most `max` bytes, each with the offset its stream
/// goes on from after it.
struct LineSplitter {
    stream: Stream,
    max: usize,
    /// The bytes of the current line so far: never more than `max` between calls.
    pending: Vec<u8>,
    /// The stream offset of `pending`'s first byte.
    start: u64,
}

impl LineSplitter {
    /// A splitter for a stream read from `start` on (0: its beginning).
    fn new(stream: Stream, max: usize, start: u64) -> LineSplitter {
        LineSplitter {
            stream,
            max: max.max(MIN_LINE_BYTES),
            pending: Vec::new(),
            start,
        }
    }

    fn push(&mut self, mut bytes: &[u8], out: &mut Vec<Line>) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.pending.extend_from_slice(&bytes[..end]);
                    self.cut_long(out);
                    // The line ends after its newline.
                    let consumed = self.pending.len() + 1;
                    if self.pending.last() == Some(&b'\r') {
                        self.pending.pop();
                    }
                    self.emit(self.pending.len(), consumed, false, out);
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.pending.extend_from_slice(bytes);
                    self.cut_long(out);
                    bytes = &[];
                }
            }
        }
    }

    /// The last line, if the stream did not end with a line ending.
    fn finish(&mut self, out: &mut Vec<Line>) {
        if !self.pending.is_empty() {
            self.emit(self.pending.len(), self.pending.len(), false, out);
        }
    }

    /// Emits pieces of `max` bytes while the pending line is longer than that. A line of
    /// exactly `max` bytes waits: it may yet end there.
    fn cut_long(&mut self, out: &mut Vec<Line>) {
        while self.pending.len() > self.max {
            let cut = char_boundary_before(&self.pending, self.max);
            self.emit(cut, cut, true, out);
        }
    }

    /// Emits the first `len` pending bytes as a line that used `consumed` bytes of the stream.
    fn emit(&mut self, len: usize, consumed: usize, continues: bool, out: &mut Vec<Line>) {
        let text = String::from_utf8_lossy(&self.pending[..len]).into_owned();
        self.pending.drain(..len);
        self.start += consumed as u64;
        out.push(Line {
            stream: self.stream,
            text,
            continues,
            offset: self.start,
        });
    }
}

/// The largest cut at or below `max` (and above `max - 4`) that does not split a UTF-8
/// character; `max` itself when the bytes there are not UTF-8 anyway. `bytes` is longer
/// than `max`.
fn char_boundary_before(bytes: &[u8], max: usize) -> usize {
    let is_continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&cut| cut > 0 && !is_continuation(bytes[cut]))
        .unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_found_as_spawn_would_find_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tool");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().as_os_str();
        assert!(find_program("tool", Some(path), None));
        assert!(!find_program("plain", Some(path), None), "not executable");
        assert!(!find_program(
            "tool",
            Some(OsStr::new("/nonexistent")),
            None
        ));
        assert!(find_program(script.to_str().unwrap(), None, None));
        assert!(find_program("./tool", None, Some(dir.path())));
        assert!(!find_program(
            "./tool",
            None,
            Some(std::path::Path::new("/"))
        ));
        assert!(
            !find_program(dir.path().to_str().unwrap(), None, None),
            "a directory"
        );
        assert!(find_program("sh", None, None));
        assert!(!find_program("", None, None));
    }

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut splitter = LineSplitter::new(Stream::Stdout, max, 0);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut out);
        }
        splitter.finish(&mut out);
        out.into_iter().map(|l| (l.text, l.continues)).collect()
    }

    fn whole(text: &str) -> (String, bool) {
        (text.to_owned(), false)
    }

    #[test]
    fn lines_are_split_on_newlines_across_chunks() {
        assert_eq!(
            split(100, &[b"ab", b"c\nde", b"f\n\ng"]),
            vec![whole("abc"), whole("def"), whole(""), whole("g")]
        );
    }

    #[test]
    fn each_line_says_where_its_stream_goes_on() {
        let mut splitter = LineSplitter::new(Stream::Stdout, 4, 10);
        let mut out = Vec::new();
        splitter.push(b"ab\r\ncdef", &mut out);
        splitter.push(b"g\nh", &mut out);
        splitter.finish(&mut out);
        let lines: Vec<(&str, u64)> = out.iter().map(|l| (l.text.as_str(), l.offset)).collect();
        assert_eq!(lines, [("ab", 14), ("cdef", 18), ("g", 20), ("h", 21)]);
    }

    #[test]
    fn crlf_endings_are_removed_but_lone_carriage_returns_kept() {
        assert_eq!(
            split(100, &[b"a\r\nb\rc\n"]),
            vec![whole("a"), whole("b\rc")]
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_piece() {
        assert_eq!(split(4, &[b"abcd\n"]), vec![whole("abcd")]);
        assert_eq!(split(4, &[b"ab", b"cd", b"\n"]), vec![whole("abcd")]);
    }

    #[test]
    fn long_lines_are_cut_into_pieces_that_say_they_continue() {
        assert_eq!(
            split(4, &[b"abcdefghij\nk"]),
            vec![
                ("abcd".to_owned(), true),
                ("efgh".to_owned(), true),
                whole("ij"),
                whole("k"),
            ]
        );
    }

    #[test]
    fn cuts_do_not_split_utf8_characters() {
        // "aé€" is 1 + 2 + 3 bytes: a cut at 4 would fall inside the euro sign.
        let pieces = split(4, &["aé€x\n".as_bytes()]);
        assert_eq!(
            pieces,
            vec![("aé".to_owned(), true), ("€x".to_owned(), false)]
        );
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily_and_cut_at_the_limit() {
        let pieces = split(4, &[&[0xff, 0xff, 0xff, 0xff, 0xff, b'\n']]);
        assert_eq!(
            pieces,
            vec![("\u{fffd}".repeat(4), true), whole("\u{fffd}")]
        );
    }

    #[test]
    fn debug_of_an_invocation_hides_values_and_input() {
        let invocation = Invocation::new("tool")
            .env("TOKEN", "hunter2-value")
            .stdin(b"private-input".to_vec());
        let shown = format!("{invocation:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("private-input"), "{shown}");
    }
}
