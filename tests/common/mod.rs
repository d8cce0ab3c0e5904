//! Helpers shared by the integration tests: a real log in a temporary directory, event
//! builders, and polling with a deadline.
#![allow(dead_code)]

pub mod app;
pub mod postgres;
pub mod ssh;
pub mod tls;

use std::path::Path;
use std::time::{Duration, Instant};

use annals::auth::{Account, Role};
use annals::events::{
    DomainEvent, Durability, EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent, StreamId,
};
use annals::runtime::job::{JobEvent, Level, LineRecorded};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A log in its own temporary directory, removed when dropped.
pub struct TempLog {
    pub log: EventLog,
    pub dir: tempfile::TempDir,
}

impl TempLog {
    pub fn new() -> TempLog {
        TempLog::with(LogOptions::default())
    }

    pub fn with(options: LogOptions) -> TempLog {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = EventLog::open(dir.path(), options).expect("the log opens");
        TempLog { log, dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// [`TempLog::reopen`] from async code: closing blocks until the journal has stopped.
    pub async fn reopen_async(self) -> TempLog {
        tokio::task::spawn_blocking(move || self.reopen())
            .await
            .expect("the reopen finishes")
    }

    /// Closes the log and opens it again from disk.
    pub fn reopen(self) -> TempLog {
        let TempLog { log, dir } = self;
        let options = log.options().clone();
        log.close();
        drop(log);
        let log = EventLog::open(dir.path(), options).expect("the log opens again");
        TempLog { log, dir }
    }
}

/// The engines a log can be kept in, for the tests that run on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sled,
    Postgres,
}

impl Engine {
    /// `options` on this engine: on PostgreSQL, in a new database of the test server.
    pub fn options(self, options: LogOptions) -> LogOptions {
        match self {
            Engine::Sled => options,
            Engine::Postgres => postgres::at(&postgres::server().new_database(), options),
        }
    }

    /// A new, empty log on this engine.
    pub fn log(self) -> TempLog {
        TempLog::with(self.options(LogOptions::default()))
    }

    /// A new, empty log on this engine, with `options`' limits.
    pub fn log_with(self, options: LogOptions) -> TempLog {
        TempLog::with(self.options(options))
    }
}

/// Writes a test that runs on each engine: `async fn name(engine: Engine) { … }` becomes the
/// module `name` with the tests `sled` and `postgres`.
#[macro_export]
macro_rules! on_each_engine {
    ($(#[doc = $doc:literal])* async fn $name:ident($engine:ident: Engine) $body:block) => {
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($engine: $crate::common::Engine) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sled() {
                run($crate::common::Engine::Sled).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::common::Engine::Postgres).await
            }
        }
    };
}

/// Writes `contents` to the file `name` in `dir`; its path.
pub fn written(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("the file is written");
    path
}

/// A temporary directory, and where a log goes in it (`log`, not created).
/// Every file under `dir`, in its subdirectories too.
pub fn every_file(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

pub fn data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("log");
    (dir, data)
}

/// A temporary directory holding the configuration file `annals.toml` with `contents`; the
/// directory, and the file's path.
pub fn config_file(contents: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = written(dir.path(), "annals.toml", contents);
    (dir, file)
}

/// An account that signs in with the bearer token whose SHA-256 (hex) is `token_sha256`.
pub fn token_account(name: &str, token_sha256: &str, roles: &[Role]) -> Account {
    Account {
        name: name.into(),
        password_hash: None,
        token_sha256: vec![token_sha256.to_owned()],
        roles: roles.to_vec(),
    }
}

/// An account that signs in with `password` (HTTP Basic).
pub fn password_account(name: &str, password: &str, roles: &[Role]) -> Account {
    Account {
        name: name.into(),
        password_hash: Some(annals::auth::hash_password(password)),
        token_sha256: vec![],
        roles: roles.to_vec(),
    }
}

/// 2023-11-14T22:13:20Z, in Unix seconds: where the test clocks of in-process servers start.
pub const T0: i64 = 1_700_000_000;

/// A configuration for the real server in-process: its log under `dir`, flushed rather than
/// fsynced (enough for a process crash), the main listener and the Partisci face's own on free
/// loopback ports.
pub fn server_config(dir: &Path) -> annals::config::Config {
    let mut config = annals::config::Config {
        data: dir.join("log"),
        durability: Durability::Flush,
        ..annals::config::Config::default()
    };
    config.http.listen = "127.0.0.1:0".into();
    config.partisci.listen = "127.0.0.1:0".into();
    config.patrowl.listen = "127.0.0.1:0".into();
    config.hpcwaas.listen = "127.0.0.1:0".into();
    config.gros.agent.listen = "127.0.0.1:0".into();
    config
}

/// Whether process `pid` runs (a zombie, killed and not yet reaped, does not).
/// Whether process `pid` runs under a supervisor of a node whose data directory is `data`:
/// the supervisor names the run directory it keeps there.
pub fn supervised_under(pid: u32, data: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's name in parentheses: the state, then the parent's pid.
    let parent = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1);
    let cmdline = parent
        .and_then(|parent| std::fs::read(format!("/proc/{parent}/cmdline")).ok())
        .unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&data.display().to_string())
}

pub fn runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Runs the real server in-process, on the current actix system, on `config` and `clock`;
/// where it listens.
pub async fn start_server(
    config: &annals::config::Config,
    clock: std::sync::Arc<dyn annals::runtime::Clock>,
) -> annals::startup::Addresses {
    start_server_with_log(config, clock).await.0
}

/// [`start_server`], with the server's log, for tests that write to it behind the server's back.
pub async fn start_server_with_log(
    config: &annals::config::Config,
    clock: std::sync::Arc<dyn annals::runtime::Clock>,
) -> (annals::startup::Addresses, EventLog) {
    // The supervisors of child processes are the annals binary, not this test binary.
    annals::process::supervised::use_supervisor(env!("CARGO_BIN_EXE_annals"));
    let log = EventLog::open(&config.data, config.log_options()).expect("the log opens");
    let application = annals::startup::Application::build(config, log.clone(), clock)
        .await
        .expect("the server starts");
    let addresses = application.addresses.clone();
    actix_rt::spawn(application.run());
    (addresses, log)
}

/// Held by the load tests (a thousand followers, SIGKILL and SIGTERM under write load) for
/// their whole run: they share one test binary with everything else, and each one's time limits
/// assume the machine is not also running another of them. `lock().await` from async tests,
/// `blocking_lock()` from the others.
pub static LOAD_TEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Options for tests that do not need power-loss durability: appends are still acknowledged
/// only after sled has written them, which is all a process crash needs.
pub fn fast() -> LogOptions {
    LogOptions {
        durability: Durability::Flush,
        ..LogOptions::default()
    }
}

pub fn stream(name: &str) -> StreamId {
    StreamId::parse(name).expect("a valid stream id")
}

pub fn at(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("a valid time")
}

/// The metadata of an HTTP request of `ada`'s from `addr`, with the correlation id
/// `correlation`.
pub fn from_ada(correlation: u128, addr: &str) -> Metadata {
    Metadata {
        correlation_id: Some(Uuid::from_u128(correlation)),
        causation_id: None,
        origin: annals::events::Origin::Http {
            addr: addr.into(),
            user: Some("ada".into()),
        },
    }
}

/// A `LineRecorded` event with this text, as a new event with a fresh id.
pub fn line(text: &str) -> NewEvent {
    new_event(&JobEvent::LineRecorded(LineRecorded {
        line: text.to_owned(),
        level: Level::Info,
        at: at(0),
    }))
}

/// Appends a [`line`] of `text` to the stream `name`, whatever its version; it must be stored.
pub async fn append_line(log: &EventLog, name: &str, text: &str) -> annals::events::Appended {
    log.append(stream(name), ExpectedVersion::Any, vec![line(text)])
        .await
        .expect("the line is appended")
}

pub fn new_event<E: DomainEvent>(event: &E) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        payload: event.encode_payload(),
        metadata: Metadata::system(),
    }
}

/// Checks that each of `events` decodes back to itself from its type, schema version and
/// payload.
#[track_caller]
pub fn assert_round_trips<E>(events: impl IntoIterator<Item = E>)
where
    E: DomainEvent + PartialEq + std::fmt::Debug,
{
    for event in events {
        let decoded = E::decode(
            event.event_type(),
            event.schema_version(),
            &event.encode_payload(),
        )
        .expect("the event decodes");
        assert_eq!(decoded, event);
    }
}

/// Checks that `parse` takes each of `good` and refuses each of `bad`.
#[track_caller]
pub fn assert_checked<T, E>(parse: impl Fn(&str) -> Result<T, E>, good: &[&str], bad: &[&str]) {
    for text in good {
        assert!(parse(text).is_ok(), "{text:?} is refused");
    }
    for text in bad {
        assert!(parse(text).is_err(), "{text:?} is taken");
    }
}

/// Checks that `E` refuses, as a type it does not know, to decode an event of `event_type`.
#[track_caller]
pub fn assert_unknown_type<E: DomainEvent + std::fmt::Debug>(event_type: &str, payload: &[u8]) {
    let decoded = E::decode(event_type, 1, payload);
    assert!(
        matches!(decoded, Err(annals::events::CodecError::UnknownType { .. })),
        "{event_type}: {decoded:?}"
    );
}

/// Checks that `E` refuses, as a version it does not know, to decode `event_type` at
/// `schema_version`.
#[track_caller]
pub fn assert_unknown_version<E: DomainEvent + std::fmt::Debug>(
    event_type: &str,
    schema_version: u16,
    payload: &[u8],
) {
    let decoded = E::decode(event_type, schema_version, payload);
    assert!(
        matches!(
            decoded,
            Err(annals::events::CodecError::UnknownVersion { .. })
        ),
        "{event_type} v{schema_version}: {decoded:?}"
    );
}

/// The text of a stored `LineRecorded` event.
pub fn line_text(event: &annals::events::RecordedEvent) -> String {
    match JobEvent::from_recorded(event).expect("a job event") {
        JobEvent::LineRecorded(line) => line.line,
        other => panic!("expected a line, got {other:?}"),
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::park_timeout(Duration::from_millis(5));
    }
}

/// [`poll`] for async checks: awaits `check` until it returns `Some` or `timeout` passes.
pub async fn poll_async<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `annals serve` running as a child process, with the addresses it listens on.
pub struct Served {
    pub child: std::process::Child,
    pub address: String,
    /// The Partisci face's own listener (HTTP and UDP), when it has one.
    pub partisci: Option<String>,
    /// The scan engine face's own listener, when it has one.
    pub patrowl: Option<String>,
    /// The HPCWaaS face's own listener, when it has one.
    pub hpcwaas: Option<String>,
    /// What it logged up to the line that says where the main listener listens, that one
    /// included.
    pub started: Vec<String>,
    /// The lines it writes to stderr after those, as they come.
    pub stderr: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// Sends SIGTERM and waits (at most a minute) for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.stop()
    }

    /// [`Served::terminate`], keeping the server for what it wrote to stderr meanwhile.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) },
            0
        );
        poll(
            Duration::from_secs(60),
            "the server to stop on SIGTERM",
            || self.child.try_wait().expect("the child can be waited for"),
        )
    }

    /// The start-up log lines ([`Served::started`]) that are JSON records, as JSON.
    pub fn start_up(&self) -> Vec<serde_json::Value> {
        self.started
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The next log record on stderr, within a minute.
    pub fn next_entry(&self) -> serde_json::Value {
        let line = self
            .stderr
            .recv_timeout(Duration::from_secs(60))
            .expect("a log line within a minute");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("a JSON log record: {line}"))
    }

    /// The rest of stderr once the server has exited, read until the pipe closes (at most a
    /// minute).
    pub fn rest_of_stderr(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut lines = Vec::new();
        while let Ok(line) = self
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            lines.push(line);
        }
        lines
    }
}

/// A server left running by a failed test is killed rather than orphaned.
impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `annals --log-format json serve` with these arguments and environment, and waits
/// (at most a minute) for the address it logs. If it exits first, the error is its stderr.
/// The Partisci face listens on a free port unless `envs` says otherwise.
pub fn spawn_serve(args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> Result<Served, String> {
    spawn_serve_in(None, args, envs)
}

/// [`spawn_serve`] started in `current_dir` (else in the tests' own).
pub fn spawn_serve_in(
    current_dir: Option<&Path>,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, &str)],
) -> Result<Served, String> {
    use std::io::BufRead;
    let mut command = serve_command(args, envs);
    if let Some(dir) = current_dir {
        command.current_dir(dir);
    }
    let mut child = command.spawn().expect("annals starts");
    // Log lines arrive through a channel, so that waiting for the address has a deadline.
    let (lines, log_lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let mut partisci = None;
    let mut patrowl = None;
    let mut hpcwaas = None;
    loop {
        let Ok(line) = log_lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            // It exited (or never said where it listens): reap it and tell what it said.
            let _ = child.kill();
            let _ = child.wait();
            return Err(seen.join("\n"));
        };
        if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) {
            let address = entry["fields"]["address"].as_str().map(str::to_owned);
            match entry["fields"]["face"].as_str() {
                Some("partisci") => partisci = address,
                Some("patrowl") => patrowl = address,
                Some("hpcwaas") => hpcwaas = address,
                Some(_) => {}
                None => {
                    if let Some(address) = address {
                        seen.push(line);
                        return Ok(Served {
                            child,
                            address: address.to_owned(),
                            partisci,
                            patrowl,
                            hpcwaas,
                            started: seen,
                            stderr: log_lines,
                        });
                    }
                }
            }
        }
        seen.push(line);
    }
}

/// `annals --log-format json ARGS…` with these variables, each face's own listener on a free
/// loopback port unless `envs` says otherwise, its stderr piped and its stdout discarded.
fn serve_command(args: &[&std::ffi::OsStr], envs: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_annals"));
    command
        .arg("--log-format")
        .arg("json")
        .args(args)
        .env_remove("ANNALS_CONFIG")
        .env("RUST_LOG", "info")
        .env("ANNALS_PARTISCI_LISTEN", "127.0.0.1:0")
        .env("ANNALS_PATROWL_LISTEN", "127.0.0.1:0")
        .env("ANNALS_HPCWAAS_LISTEN", "127.0.0.1:0")
        .env("ANNALS_GROS_AGENT_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

/// The arguments of `annals [--config CONFIG] --data DATA serve ARGS…`.
fn serve_args<'a>(
    data: &'a Path,
    config: Option<&'a Path>,
    args: &[&'a str],
) -> Vec<&'a std::ffi::OsStr> {
    let mut all: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(config) = config {
        all.extend(["--config".as_ref(), config.as_os_str()]);
    }
    all.extend(["--data".as_ref(), data.as_os_str(), "serve".as_ref()]);
    all.extend(args.iter().map(|arg| std::ffi::OsStr::new(*arg)));
    all
}

/// [`spawn_serve`] of `annals [--config CONFIG] --data DATA serve ARGS…`, the main listener on
/// a free loopback port unless `envs` says otherwise.
pub fn serve_data(
    data: &Path,
    config: Option<&Path>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<Served, String> {
    let mut all = vec![("ANNALS_HTTP_LISTEN", "127.0.0.1:0")];
    all.extend_from_slice(envs);
    spawn_serve(&serve_args(data, config, args), &all)
}

/// Runs [`serve_data`]'s command expecting it to fail at start-up: its exit status and all it
/// wrote to stderr, within a minute.
pub fn failed_serve(
    data: &Path,
    config: Option<&Path>,
    envs: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut all = vec![("ANNALS_HTTP_LISTEN", "127.0.0.1:0")];
    all.extend_from_slice(envs);
    let mut child = serve_command(&serve_args(data, config, &[]), &all)
        .spawn()
        .expect("annals starts");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = poll(Duration::from_secs(60), "annals to give up", || {
        child.try_wait().expect("the child can be waited for")
    });
    (status, reader.join().expect("stderr is read"))
}

/// The settings every golden file is checked with: the files live in `snapshots/` at the
/// crate's root, named without the test's module, and each of `redactions` (a selector and what
/// stands in for it) hides what changes from run to run.
pub fn snapshots(redactions: &[(&str, &str)]) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    for (selector, replacement) in redactions {
        settings.add_redaction(selector, *replacement);
    }
    settings
}
