//! Runs that outlive annals: each program starts under a supervisor of its own (the annals
//! binary in its hidden supervisor mode, [`SUPERVISOR_ARG`]), in a new session, so that neither
//! a crash nor a restart of annals ends it, and annals can always find it again and learn its
//! fate from files, without trusting a process id that may have been reused.
//!
//! # The run directory
//!
//! Each run has a directory of its own, given by the caller, holding:
//!
//! - `lock`: locked (`flock`) by the supervisor for as long as it lives. Whoever can take the
//!   lock knows the supervisor is gone, whatever became of its process id.
//! - `control`: a FIFO the supervisor reads: `c` asks for the group to be stopped (`SIGTERM`,
//!   then `SIGKILL` after the grace period), `k` kills it at once. Opening it for writing fails
//!   when nobody reads it, so a request never reaches a stranger.
//! - `stdout`, `stderr`: the program's output, copied by the supervisor as the program writes
//!   it, up to [`Invocation::max_output_bytes`] each (the rest is read and counted). Readers follow them
//!   from a byte offset, so a reader that resumes after a restart goes on exactly where the
//!   last one stopped.
//! - `supervision`: who supervises and which group (JSON, a [`Supervision`] without its
//!   directory), written before the program's start is answered, so that a run whose start
//!   the caller could not record is found from its directory alone ([`recover`]).
//! - `exit`: how the run ended (JSON), written once the whole group is gone, atomically (a
//!   temporary file renamed), after the files the run was given to remove are removed.
//!
//! The program's standard input, its environment and its arguments reach the supervisor through
//! a pipe, never a file: they may carry credentials. The supervisor owns the program's process
//! group: whatever way the program ends, it kills what is left of the group before it reaps the
//! program, as [`super::spawn`] does, and it enforces the timeout itself, so a timeout holds while
//! annals is down.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc as tokio_mpsc, oneshot, watch};
use zeroize::{Zeroize, Zeroizing};

use super::{
    Canceller, Captured, Control, Ending, Exit, Invocation, Line, LineSplitter, Outcome,
    ProcessError, Running, Stream, CHILD_UMASK, LINE_CHANNEL, NO_UMASK, READ_CHUNK,
};

/// The first argument that makes the annals binary a supervisor: `annals __supervise <dir>`.
pub const SUPERVISOR_ARG: &str = "__supervise";
/// How often a reader looks for new output and for the run's end.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

const LOCK: &str = "lock";
const CONTROL: &str = "control";
const EXIT: &str = "exit";
const STDOUT: &str = "stdout";
const STDERR: &str = "stderr";
const SUPERVISION: &str = "supervision";

/// The program started as a supervisor; the running executable unless told otherwise.
static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();
/// The running executable, even once its file was replaced (an upgrade while annals runs):
/// the new supervisors are the same build as the annals that starts them.
const RUNNING_EXECUTABLE: &str = "/proc/self/exe";

/// Runs the supervisors from `program` (an annals binary) rather than from the running
/// executable: for a process that embeds the server without being the annals binary (tests).
/// The first call wins.
pub fn use_supervisor(program: impl Into<PathBuf>) {
    let _ = SUPERVISOR.set(program.into());
}

fn supervisor_program() -> PathBuf {
    SUPERVISOR
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(RUNNING_EXECUTABLE))
}

/// Where a supervised run is and who runs it: what a start event records so that the run can
/// be found again after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supervision {
    /// The run directory.
    pub dir: PathBuf,
    /// The supervisor's process id (for people: annals never signals it).
    pub supervisor: u32,
    /// The program's process group id, signalled only when the supervisor is gone, the run
    /// has not ended and the machine has not restarted since (`boot`).
    pub group: u32,
    /// The kernel's boot id when the run started.
    pub boot: String,
}

/// Where a reader of a run starts: the offsets of the two streams (0, 0 from the beginning).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    pub stdout: u64,
    pub stderr: u64,
}

/// What a run's supervisor is doing, as seen from its directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    /// The supervisor lives: the run goes on (or is ending).
    Running,
    /// The run ended and its end is recorded.
    Ended,
    /// The supervisor is gone and recorded no end (it was killed, or the machine restarted).
    Lost,
}

/// What the supervisor reads on its standard input.
#[derive(Serialize, Deserialize)]
struct Spec {
    program: Vec<u8>,
    args: Vec<Vec<u8>>,
    dir: Option<Vec<u8>>,
    /// The program's whole environment.
    env: Vec<(Vec<u8>, Vec<u8>)>,
    stdin: Option<Vec<u8>>,
    timeout_ms: Option<u64>,
    kill_grace_ms: u64,
    umask: Option<u32>,
    /// The most of each stream kept in its file.
    #[serde(default = "default_max_output_bytes")]
    max_output_bytes: u64,
    /// Files removed once the group is gone, before the end is recorded.
    remove_at_end: Vec<Vec<u8>>,
}

fn default_max_output_bytes() -> u64 {
    super::DEFAULT_MAX_OUTPUT_BYTES
}

/// How a run ended, as the supervisor records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Recorded {
    ending: Ending,
    code: Option<i32>,
    signal: Option<i32>,
    forced: bool,
    elapsed_ms: u64,
    /// How many bytes each stream carried, kept or not.
    #[serde(default)]
    stdout_total: Option<u64>,
    #[serde(default)]
    stderr_total: Option<u64>,
}

/// Starts `invocation` under a supervisor, with `dir` (created here, and not existing yet) as
/// its run directory; `remove_at_end` are files the supervisor removes when the run ends (a
/// credential handed to the program). The [`Running`] reads the run's output from its files;
/// dropping it leaves the run alone (it is found again with [`attach`]).
pub fn spawn(
    invocation: Invocation,
    dir: &Path,
    remove_at_end: Vec<PathBuf>,
) -> Result<(Running, Supervision), ProcessError> {
    invocation.check()?;
    let program = invocation.program.clone();
    let failed = |source: std::io::Error| ProcessError::Spawn {
        program: program.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    let mut of = Spec::of(&invocation, remove_at_end);
    let spec = rmp_serde::to_vec_named(&of).map(Zeroizing::new);
    // The input may be a credential: it lives on only in the zeroizing buffer.
    if let Some(mut stdin) = of.stdin.take() {
        stdin.zeroize();
    }
    let spec = spec.map_err(|e| failed(std::io::Error::other(e)))?;
    let mut command = tokio::process::Command::new(supervisor_program());
    command
        .arg(SUPERVISOR_ARG)
        .arg(dir)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe and touches nothing of the parent. A session of its
    // own: the supervisor outlives annals and no terminal signal of annals' reaches it.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Tokio reaps the supervisor when it ends, whether or not anyone waits for it.
    let mut supervisor = command.spawn().map_err(failed)?;
    let supervisor_pid = supervisor.id().unwrap_or(0);
    let mut input = supervisor
        .stdin
        .take()
        .and_then(|pipe| pipe.into_owned_fd().ok())
        .map(File::from)
        .ok_or_else(|| failed(std::io::Error::other("no pipe to the supervisor")))?;
    let output = supervisor
        .stdout
        .take()
        .and_then(|pipe| pipe.into_owned_fd().ok())
        .map(File::from)
        .ok_or_else(|| failed(std::io::Error::other("no pipe from the supervisor")))?;
    drop(supervisor);
    // The supervisor answers as soon as the program is started (or could not be): a few
    // milliseconds, so the spawn stays synchronous as the unsupervised one is.
    input.write_all(&spec).map_err(failed)?;
    drop(input);
    let mut answer = String::new();
    BufReader::new(output)
        .read_line(&mut answer)
        .map_err(failed)?;
    let group = match answer.trim_end().split_once(' ') {
        Some(("ready", group)) => group
            .parse::<u32>()
            .map_err(|_| failed(std::io::Error::other(format!("supervisor said {answer:?}"))))?,
        Some(("error", kind)) => {
            let _ = std::fs::remove_dir_all(dir);
            return Err(match kind {
                "not_found" => ProcessError::NotFound { program },
                "permission_denied" => ProcessError::PermissionDenied { program },
                other => failed(std::io::Error::other(other.to_owned())),
            });
        }
        _ => {
            let _ = std::fs::remove_dir_all(dir);
            return Err(failed(std::io::Error::other(
                "the supervisor ended without starting the program",
            )));
        }
    };
    let supervision = Supervision {
        dir: dir.to_path_buf(),
        supervisor: supervisor_pid,
        group,
        boot: boot_id(),
    };
    let running = attach(&supervision, Offsets::default(), &invocation);
    Ok((running, supervision))
}

impl Spec {
    fn of(invocation: &Invocation, remove_at_end: Vec<PathBuf>) -> Spec {
        let env = invocation
            .environment()
            .into_iter()
            .map(|(key, value)| (key.into_vec(), value.into_vec()))
            .collect();
        let umask = CHILD_UMASK.load(std::sync::atomic::Ordering::Relaxed);
        Spec {
            program: bytes(&invocation.program),
            args: invocation.args.iter().map(|a| bytes(a)).collect(),
            dir: invocation.dir.as_ref().map(|d| bytes(d.as_os_str())),
            env,
            stdin: invocation.stdin.as_ref().map(|bytes| bytes.to_vec()),
            timeout_ms: invocation.timeout.map(|t| t.as_millis() as u64),
            kill_grace_ms: invocation.kill_grace.as_millis() as u64,
            umask: (umask != NO_UMASK).then_some(umask),
            max_output_bytes: invocation.max_output_bytes,
            remove_at_end: remove_at_end
                .into_iter()
                .map(|p| p.into_os_string().into_vec())
                .collect(),
        }
    }
}

fn bytes(text: &OsStr) -> Vec<u8> {
    text.as_bytes().to_vec()
}

/// Follows a supervised run from `from`: its lines from there on, then its outcome. The
/// invocation gives the line and capture limits. A run whose supervisor is gone without an end
/// has its group killed (unless the machine restarted since) and ends [`Ending::Lost`].
/// Dropping the [`Running`] stops following and leaves the run alone.
pub fn attach(supervision: &Supervision, from: Offsets, limits: &Invocation) -> Running {
    let (line_sender, lines) = tokio_mpsc::channel(LINE_CHANNEL);
    let (control_sender, control) = watch::channel(Control::Run);
    let (outcome_sender, outcome) = oneshot::channel();
    let follower = Follower {
        supervision: supervision.clone(),
        from,
        max_line_bytes: limits.max_line_bytes,
        max_capture_bytes: limits.max_capture_bytes,
        lines: line_sender,
        control,
    };
    tokio::spawn(async move {
        if let Ok(outcome) = follower.run().await {
            let _ = outcome_sender.send(outcome);
        }
    });
    Running {
        pid: supervision.group,
        lines,
        outcome: Some(outcome),
        canceller: Canceller {
            control: std::sync::Arc::new(control_sender),
        },
    }
}

/// The supervision of the run in `dir`, from its directory alone: for a run whose start was
/// not recorded. `None` when no supervisor got as far as starting a program there.
pub fn recover(dir: &Path) -> Option<Supervision> {
    let bytes = std::fs::read(dir.join(SUPERVISION)).ok()?;
    let mut supervision: Supervision = serde_json::from_slice(&bytes).ok()?;
    supervision.dir = dir.to_path_buf();
    Some(supervision)
}

/// Writes `bytes` to `dir/name` whole or not at all: a temporary file, synced, renamed.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!("{name}.tmp"));
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(name))
}

/// What became of a run, from its directory alone.
pub fn fate(dir: &Path) -> Fate {
    if dir.join(EXIT).exists() {
        return Fate::Ended;
    }
    if supervisor_alive(dir) {
        return Fate::Running;
    }
    // The end may have been recorded between the two looks.
    if dir.join(EXIT).exists() {
        Fate::Ended
    } else {
        Fate::Lost
    }
}

/// Whether the supervisor of the run in `dir` lives: whether its lock is held.
fn supervisor_alive(dir: &Path) -> bool {
    let Ok(lock) = File::open(dir.join(LOCK)) else {
        return false;
    };
    // SAFETY: flock(2) on a descriptor this function owns; it touches no memory.
    let taken = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
    // Closing the file releases the lock at once if it was taken.
    !taken
}

/// Kills the group of a run whose supervisor is gone without recording an end. The group id
/// is signalled only when the machine has not restarted since the run began and the run's
/// directory still holds its lock file: a directory is removed only once its run has ended
/// (its end recorded in the log, which a log written without sync can lose), and then the
/// number may be another group's. A process that reused the number after the supervisor died
/// is a risk annals takes only then, as every supervisor of a group kills it before it ends.
pub fn kill_lost(supervision: &Supervision) {
    let this_boot = supervision.boot == boot_id();
    if this_boot && supervision.group > 1 && supervision.dir.join(LOCK).exists() {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
        unsafe {
            libc::kill(-(supervision.group as libc::pid_t), libc::SIGKILL);
        }
    }
}

/// How long [`stop`] waits for a supervisor to record the end of the run it was told to kill.
pub const STOP_WAIT: Duration = Duration::from_secs(10);

/// Stops every run whose directory is under `root` but those in `keep` (runs followed on after
/// a restart), and removes their directories: at start-up, so that nothing of a previous
/// process runs on unknown. Blocking. Returns how many runs were still running.
pub fn stop_all_but(root: &Path, keep: &[PathBuf]) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut stopped = 0;
    for entry in entries {
        let dir = entry?.path();
        if !keep.contains(&dir) && stop(&dir)? {
            stopped += 1;
        }
    }
    Ok(stopped)
}

/// Stops the run in `dir`, if it runs, and removes the directory. Blocking. Returns whether the
/// run was still running.
pub fn stop(dir: &Path) -> std::io::Result<bool> {
    let running = match fate(dir) {
        Fate::Running => {
            kill(dir);
            let deadline = Instant::now() + STOP_WAIT;
            // The supervisor kills the group and records the end within milliseconds.
            while fate(dir) == Fate::Running && Instant::now() < deadline {
                std::thread::sleep(POLL_INTERVAL);
            }
            true
        }
        Fate::Lost => {
            if let Some(supervision) = recover(dir) {
                kill_lost(&supervision);
            }
            false
        }
        Fate::Ended => false,
    };
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(running),
    }
}

/// Kills the group of the run in `dir` at once, through its supervisor; false when no
/// supervisor listens (the run has ended, or its supervisor is gone: see [`kill_lost`]).
pub fn kill(dir: &Path) -> bool {
    ask(dir, b'k')
}

/// Asks the supervisor of the run in `dir` for `request` (`b'c'` stop, `b'k'` kill); false
/// when no supervisor listens.
fn ask(dir: &Path, request: u8) -> bool {
    let opened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.join(CONTROL));
    match opened {
        Ok(mut control) => control.write_all(&[request]).is_ok(),
        Err(_) => false,
    }
}

/// The kernel's boot id, or empty where there is none.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// The reader of one run.
struct Follower {
    supervision: Supervision,
    from: Offsets,
    max_line_bytes: usize,
    max_capture_bytes: usize,
    lines: tokio_mpsc::Sender<Line>,
    control: watch::Receiver<Control>,
}

/// One output file, read from an offset on.
struct Tail {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    splitter: LineSplitter,
    at: u64,
    /// One read's bytes, kept between reads.
    buffer: Vec<u8>,
}

impl Tail {
    fn new(dir: &Path, name: &str, stream: Stream, max_line_bytes: usize, from: u64) -> Tail {
        Tail {
            file: None,
            path: dir.join(name),
            splitter: LineSplitter::new(stream, max_line_bytes, from),
            at: from,
            buffer: vec![0u8; READ_CHUNK],
        }
    }

    /// Reads what was appended since the last call into lines.
    async fn read(&mut self, out: &mut Vec<Line>) -> std::io::Result<()> {
        if self.file.is_none() {
            match tokio::fs::File::open(&self.path).await {
                Ok(mut file) => {
                    file.seek(std::io::SeekFrom::Start(self.at)).await?;
                    self.file = Some(file);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        loop {
            let count = file.read(&mut self.buffer).await?;
            if count == 0 {
                return Ok(());
            }
            self.at += count as u64;
            self.splitter.push(&self.buffer[..count], out);
            if out.len() >= LINE_CHANNEL {
                return Ok(());
            }
        }
    }
}

impl Follower {
    /// Follows the run to its end; `Err` when the reader was dropped (nobody wants the end).
    async fn run(mut self) -> Result<Outcome, ()> {
        let dir = self.supervision.dir.clone();
        let mut stdout = Tail::new(
            &dir,
            STDOUT,
            Stream::Stdout,
            self.max_line_bytes,
            self.from.stdout,
        );
        let mut stderr = Tail::new(
            &dir,
            STDERR,
            Stream::Stderr,
            self.max_line_bytes,
            self.from.stderr,
        );
        let mut asked = false;
        let mut ready = Vec::new();
        loop {
            // The fate first, then the output: what the run wrote before it ended is read below.
            let fate = fate(&dir);
            if fate == Fate::Lost {
                kill_lost(&self.supervision);
            }
            loop {
                stdout.read(&mut ready).await.map_err(drop)?;
                stderr.read(&mut ready).await.map_err(drop)?;
                if ready.is_empty() {
                    break;
                }
                for line in ready.drain(..) {
                    self.lines.send(line).await.map_err(drop)?;
                }
            }
            if fate != Fate::Running {
                stdout.splitter.finish(&mut ready);
                stderr.splitter.finish(&mut ready);
                for line in ready.drain(..) {
                    self.lines.send(line).await.map_err(drop)?;
                }
                return Ok(self.outcome(fate).await);
            }
            let request = *self.control.borrow_and_update();
            match request {
                Control::Run => {}
                Control::Cancel if !asked => asked = ask(&dir, b'c'),
                Control::Cancel => {}
                // The reader was dropped: the run goes on without it.
                Control::Abandon => return Err(()),
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                changed = self.control.changed() => {
                    if changed.is_err() {
                        return Err(());
                    }
                }
            }
        }
    }

    async fn outcome(&self, fate: Fate) -> Outcome {
        let dir = &self.supervision.dir;
        let recorded = match fate {
            Fate::Ended => tokio::fs::read(dir.join(EXIT))
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Recorded>(&bytes).ok()),
            Fate::Running | Fate::Lost => None,
        };
        let mut stdout = captured(&dir.join(STDOUT), self.max_capture_bytes).await;
        let mut stderr = captured(&dir.join(STDERR), self.max_capture_bytes).await;
        if let Some(recorded) = &recorded {
            stdout.total = recorded.stdout_total.unwrap_or(stdout.total);
            stderr.total = recorded.stderr_total.unwrap_or(stderr.total);
        }
        let Some(recorded) = recorded else {
            return Outcome {
                ending: Ending::Lost,
                exit: Exit::Unknown,
                forced: true,
                stdout,
                stderr,
                elapsed: Duration::ZERO,
            };
        };
        Outcome {
            ending: recorded.ending,
            exit: match (recorded.code, recorded.signal) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Unknown,
            },
            forced: recorded.forced,
            stdout,
            stderr,
            elapsed: Duration::from_millis(recorded.elapsed_ms),
        }
    }
}

/// The first `max` bytes of an output file, and its length.
async fn captured(path: &Path, max: usize) -> Captured {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Captured::default();
    };
    let total = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    let _ = (&mut file).take(max as u64).read_to_end(&mut bytes).await;
    Captured { bytes, total }
}

/// The supervisor's side: `annals __supervise <dir>`. Returns `None` when the process was not
/// started as a supervisor; the binary's `main` calls it before anything else.
pub fn run_if_asked() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != OsStr::new(SUPERVISOR_ARG) {
        return None;
    }
    let dir = PathBuf::from(args.next()?);
    Some(match supervise(&dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    })
}

/// Copies `pipe` to `file` until the pipe ends, keeping at most `cap` bytes and reading the
/// rest without keeping it, so the program never blocks on a full pipe. Returns how many bytes
/// the pipe carried.
fn copy_capped(mut pipe: impl Read, mut file: File, cap: u64) -> u64 {
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut total: u64 = 0;
    // A write that fails (a full disk) ends the keeping, never the run.
    let mut keeping = true;
    loop {
        let count = match pipe.read(&mut buffer) {
            Ok(0) => return total,
            Ok(count) => count,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return total,
        };
        let room = cap.saturating_sub(total).min(count as u64) as usize;
        if keeping && room > 0 && file.write_all(&buffer[..room]).is_err() {
            keeping = false;
        }
        total += count as u64;
    }
}

/// What the supervisor waits for.
enum Event {
    Exited,
    Stop,
    Kill,
}

fn supervise(dir: &Path) -> std::io::Result<()> {
    let mut input = Zeroizing::new(Vec::new());
    std::io::stdin().read_to_end(&mut input)?;
    let mut spec: Spec = rmp_serde::from_slice(&input).map_err(std::io::Error::other)?;
    drop(input);
    let private = |path: PathBuf| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
    };
    let lock = private(dir.join(LOCK))?;
    // SAFETY: flock(2) on a descriptor this function owns, held until the process ends.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let control_path = std::ffi::CString::new(dir.join(CONTROL).into_os_string().into_vec())
        .map_err(std::io::Error::other)?;
    // SAFETY: mkfifo(3) with a NUL-terminated path this function owns.
    if unsafe { libc::mkfifo(control_path.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Read and write: the FIFO never reports an end while the supervisor holds it.
    let mut control = OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(CONTROL))?;
    let stdout = private(dir.join(STDOUT))?;
    let stderr = private(dir.join(STDERR))?;

    let mut command = std::process::Command::new(OsStr::from_bytes(&spec.program));
    command
        .args(spec.args.iter().map(|a| OsStr::from_bytes(a)))
        .env_clear()
        .envs(
            spec.env
                .iter()
                .map(|(k, v)| (OsStr::from_bytes(k), OsStr::from_bytes(v))),
        )
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(work) = &spec.dir {
        command.current_dir(OsStr::from_bytes(work));
    }
    if let Some(umask) = spec.umask {
        // SAFETY: umask(2) is async-signal-safe and touches nothing of the parent.
        unsafe {
            command.pre_exec(move || {
                libc::umask(umask as libc::mode_t);
                Ok(())
            });
        }
    }
    let started = Instant::now();
    let mut answer = std::io::stdout();
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => "not_found".to_owned(),
                std::io::ErrorKind::PermissionDenied => "permission_denied".to_owned(),
                _ => e.to_string().replace('\n', " "),
            };
            writeln!(answer, "error {kind}")?;
            return Err(e);
        }
    };
    let pgid = child.id();
    let supervision = Supervision {
        dir: PathBuf::new(),
        supervisor: std::process::id(),
        group: pgid,
        boot: boot_id(),
    };
    let recorded = serde_json::to_vec(&supervision)
        .map_err(std::io::Error::other)
        .and_then(|json| write_atomically(dir, SUPERVISION, &json));
    if let Err(error) = recorded {
        // Unfindable after a restart: the program does not run on.
        // SAFETY: kill(2) of the program's group, which is not reaped.
        unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
        let _ = child.wait();
        writeln!(answer, "error {}", error.to_string().replace('\n', " "))?;
        return Err(error);
    }
    // Whoever started the run may be gone already: the run goes on, found from its directory.
    let _ = writeln!(answer, "ready {pgid}").and_then(|()| answer.flush());
    // Nothing more is said: standard output goes nowhere from here.
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2(2) onto this process's own standard output.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }

    // The output goes through the supervisor, which keeps each stream up to its cap.
    let (copied, copies) = mpsc::channel();
    for (stream, pipe, file) in [
        (
            0,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            stdout,
        ),
        (
            1,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            stderr,
        ),
    ] {
        let (copied, cap) = (copied.clone(), spec.max_output_bytes);
        std::thread::spawn(move || {
            let total = pipe.map_or(0, |pipe| copy_capped(pipe, file, cap));
            let _ = copied.send((stream, total));
        });
    }
    drop(copied);
    let (events, waiting) = mpsc::channel();
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), spec.stdin.take()) {
        std::thread::spawn(move || {
            let bytes = Zeroizing::new(bytes);
            // A program may exit without reading its input; the broken pipe is not an error.
            let _ = pipe.write_all(&bytes);
        });
    }
    let requests = events.clone();
    std::thread::spawn(move || {
        let mut byte = [0u8; 1];
        while let Ok(1) = control.read(&mut byte) {
            let event = if byte[0] == b'k' {
                Event::Kill
            } else {
                Event::Stop
            };
            if requests.send(event).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        loop {
            // SAFETY: siginfo_t is plain data (all zeroes is valid); waitid(2) writes only into
            // it. WNOWAIT: the program stays a zombie, so its group id stays reserved while the
            // rest of the group is killed.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let result = unsafe {
                libc::waitid(
                    libc::P_PID,
                    pgid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOWAIT,
                )
            };
            if result == 0
                || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break;
            }
        }
        let _ = events.send(Event::Exited);
    });

    let group = -(pgid as libc::pid_t);
    // SAFETY (both): kill(2) of the program's group while the program is not reaped.
    let stop = || unsafe {
        libc::kill(group, libc::SIGTERM);
        libc::kill(group, libc::SIGCONT);
    };
    let kill = || unsafe {
        libc::kill(group, libc::SIGKILL);
    };
    let grace = Duration::from_millis(spec.kill_grace_ms);
    let deadline = spec
        .timeout_ms
        .map(|ms| started + Duration::from_millis(ms));
    let mut ending = Ending::Finished;
    let mut forced = false;
    let mut grace_until: Option<Instant> = None;
    loop {
        let running = ending == Ending::Finished;
        let wake = grace_until.or(if running { deadline } else { None });
        let event = match wake {
            Some(at) => waiting.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => waiting
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(Event::Exited) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(Event::Stop) if running => {
                ending = Ending::Cancelled;
                stop();
                grace_until = Some(Instant::now() + grace);
            }
            Ok(Event::Stop) => {}
            Ok(Event::Kill) => {
                if running {
                    ending = Ending::Cancelled;
                }
                kill();
                forced = true;
                grace_until = None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) if grace_until.is_some() => {
                kill();
                forced = true;
                grace_until = None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                ending = Ending::TimedOut;
                stop();
                grace_until = Some(Instant::now() + grace);
            }
        }
    }
    // The program has exited and is not reaped: its group id is still its own.
    kill();
    let status = child.wait()?;
    let elapsed = started.elapsed();
    // Both streams to their end, unless a process that left the group holds one open.
    let mut totals = [None, None];
    let until = Instant::now() + super::ESCAPED_WRITER_WAIT;
    while totals.iter().any(Option::is_none) {
        match copies.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok((stream, total)) => totals[stream] = Some(total),
            Err(_) => break,
        }
    }
    for path in &spec.remove_at_end {
        let _ = std::fs::remove_file(OsStr::from_bytes(path));
    }
    use std::os::unix::process::ExitStatusExt;
    let recorded = Recorded {
        ending,
        code: status.code(),
        signal: status.signal(),
        forced,
        elapsed_ms: elapsed.as_millis() as u64,
        stdout_total: totals[0],
        stderr_total: totals[1],
    };
    write_atomically(
        dir,
        EXIT,
        &serde_json::to_vec(&recorded).map_err(std::io::Error::other)?,
    )?;
    drop(lock);
    Ok(())
}
