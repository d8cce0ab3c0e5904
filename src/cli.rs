//! The `annals` command line: parses arguments and runs one command. Each command is a thin
//! wrapper over the library; none holds logic the library lacks.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

mod remote;

use crate::config::{Config, ConfigError};
use crate::declarations::Declarations;
use crate::domain::kinds;
use crate::events::codec::render;
use crate::events::verify::verify;
use crate::events::{
    Backend, DomainEvent, Durability, EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent,
    PostgresOptions, Store, StoreError, StreamId,
};
use crate::runtime::job::{JobEvent, JobStarted, Level, LineRecorded};
use crate::runtime::state::ReplayUntil;

#[derive(Parser, Debug)]
#[command(
    name = "annals",
    version,
    about = "Scans, agents, workflows, test runs and host records on one event log"
)]
struct Cli {
    /// A TOML configuration file (see docs/annals.example.toml); without one, the embedded
    /// defaults. `ANNALS_…` environment variables override it, and flags override both.
    #[arg(long, global = true, env = "ANNALS_CONFIG")]
    config: Option<PathBuf>,
    /// The directory of the log (default `annals-data`; `ANNALS_DATA`).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
    /// How hard each commit is pushed to disk before it is acknowledged: fsync (default),
    /// flush or none (`ANNALS_DURABILITY`; see README.md).
    #[arg(long, global = true)]
    durability: Option<Durability>,
    /// How logs are written to stderr: text or json (one object per line).
    #[arg(long, global = true, env = "ANNALS_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Checks a configuration file and names every bad key with its line.
    Check {
        /// The file (default: the one given with --config).
        file: Option<PathBuf>,
    },
    /// Prints the configuration in effect (defaults, file, environment and flags), as TOML.
    Show,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the server.
    Serve {
        /// The address of the HTTP listener (default `127.0.0.1:8080`; `ANNALS_HTTP_LISTEN`).
        #[arg(long)]
        listen: Option<String>,
        /// The Partisci face's own listener, HTTP and UDP (default `127.0.0.1:7777`;
        /// `ANNALS_PARTISCI_LISTEN`); empty for none.
        #[arg(long, value_name = "ADDR")]
        partisci_listen: Option<String>,
        /// The scan engine face's own listener (default `127.0.0.1:5001`;
        /// `ANNALS_PATROWL_LISTEN`); empty for none.
        #[arg(long, value_name = "ADDR")]
        patrowl_listen: Option<String>,
        /// The workflow face's own listener (default `127.0.0.1:9090`; `ANNALS_HPCWAAS_LISTEN`);
        /// empty for none.
        #[arg(long, value_name = "ADDR")]
        hpcwaas_listen: Option<String>,
        /// The GROS agent daemon's listener, when `[gros.agent] enabled` (default
        /// `127.0.0.1:7070`; `ANNALS_GROS_AGENT_LISTEN`); empty for none.
        #[arg(long, value_name = "ADDR")]
        gros_agent_listen: Option<String>,
        /// Log every answered request at INFO (`[http] request_log`; `ANNALS_HTTP_REQUEST_LOG`).
        #[arg(long)]
        request_log: bool,
        /// Listen on a non-loopback address even though no account is configured, so that
        /// anyone who reaches it can read the whole event log.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Reads a password on standard input (asked for, and not shown, on a terminal) and prints
    /// its argon2 hash, for `password_hash`.
    HashPassword,
    /// Prints a new random bearer token and the hash to configure for it, for `token_sha256`.
    NewToken,
    /// Prints the SHA-256 fingerprint of the GROS SSH listener's host key (made at the first
    /// start with `[gros.ssh] listen`), for agents to pin; exits 1 when there is none yet.
    GrosSshFingerprint,
    /// Checks or shows the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Writes events as NDJSON, payloads rendered as JSON.
    Export {
        /// Only events after this global position.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only this stream's events.
        #[arg(long)]
        stream: Option<String>,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Prints an entity's state replayed from its first event, as JSON.
    Replay {
        stream: String,
        /// Stop after this version.
        #[arg(long, conflicts_with = "at_time")]
        at_version: Option<u64>,
        /// Stop after the last event recorded at or before this time: RFC 3339, a date and time
        /// without zone (`2026-12-07T10:00:00`, UTC) or a date (`2026-12-07`, 00:00:00 UTC).
        #[arg(long, value_parser = parse_at_time)]
        at_time: Option<DateTime<Utc>>,
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Copies a whole log into a new, empty one on another engine, byte for byte (same
    /// positions, ids and hashes), then verifies the copy. Each side is a directory (a sled log)
    /// or a PostgreSQL URL (`postgres://user@host:port/database`; the password in PGPASSWORD).
    /// Stop the servers that use either log first.
    Migrate {
        /// The log to copy.
        #[arg(long)]
        from: String,
        /// Where to copy it: a missing or empty directory, or an empty PostgreSQL database.
        #[arg(long)]
        to: String,
    },
    /// Checks the whole log: hash chain, gapless positions and versions, the round index.
    Verify {
        #[command(flatten)]
        server: remote::ServerArgs,
    },
    /// Appends synthetic `job` events from concurrent writers, printing each acknowledgement
    /// as `ack <stream> <version> <position> <event id> <writer> <seq>`.
    Load {
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Events per writer (0: until killed).
        #[arg(long, default_value_t = 1000)]
        events: u64,
        /// All writers append to one stream (with no version check) instead of one each.
        #[arg(long)]
        shared_stream: bool,
        /// Bytes of text in each line.
        #[arg(long, default_value_t = 300)]
        line_bytes: usize,
        /// Names this run's streams: `job-<run>-<writer>`.
        #[arg(long)]
        run: Option<String>,
        /// Do not print acknowledgements.
        #[arg(long)]
        quiet: bool,
    },
}

/// Runs the command line; the exit code says how it went.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    // Everything annals creates is private to its user (directories 0700, files 0600): the
    // data directory holds the whole history. sled creates its own files, at open and later,
    // so a umask is what reaches them all; the programs annals runs get the one it was given.
    // SAFETY: umask(2) cannot fail; no other thread runs yet.
    let inherited = unsafe { libc::umask(0o077) };
    crate::process::set_child_umask(inherited);
    init_logs(cli.log_format);
    if let Command::Config {
        action: ConfigAction::Check { file },
    } = &cli.command
    {
        return check_config(file.as_deref().or(cli.config.as_deref()));
    }
    let mut config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("annals: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(data) = cli.data {
        config.data = data;
    }
    // Once, for every user of the data directory: the paths under it reach workflow steps,
    // which run in directories of their own.
    config.data = match std::path::absolute(&config.data) {
        Ok(data) => data,
        Err(error) => {
            eprintln!(
                "annals: the data directory {}: {error}",
                config.data.display()
            );
            return ExitCode::from(2);
        }
    };
    if let Some(durability) = cli.durability {
        config.durability = durability;
    }
    if let Command::Serve {
        listen,
        partisci_listen,
        patrowl_listen,
        hpcwaas_listen,
        gros_agent_listen,
        request_log,
        ..
    } = &cli.command
    {
        // Flags override the file and the environment, each only when given.
        for (flag, key) in [
            (listen, &mut config.http.listen),
            (partisci_listen, &mut config.partisci.listen),
            (patrowl_listen, &mut config.patrowl.listen),
            (hpcwaas_listen, &mut config.hpcwaas.listen),
            (gros_agent_listen, &mut config.gros.agent.listen),
        ] {
            if let Some(address) = flag {
                *key = address.clone();
            }
        }
        config.http.request_log |= request_log;
    }
    // The faces' declarations, parsed once, as start-up runs on them: a file that declares
    // something wrong is refused whatever the command, each problem at its line, as a check
    // reports it. What only the environment or the flags make wrong stops the server alone.
    let serving = matches!(cli.command, Command::Serve { .. });
    let declarations = match Declarations::parse(&config) {
        Ok(declarations) => Some(declarations),
        Err(problems) => {
            if let Some(error) = cli.config.as_deref().and_then(file_problems) {
                eprintln!("annals: {error}");
                return ExitCode::from(2);
            }
            if serving {
                eprintln!("annals: {}", problems.join("; "));
                return ExitCode::FAILURE;
            }
            None
        }
    };
    let options = config.log_options();
    let data = config.data.clone();
    let outcome = match cli.command {
        Command::Config { .. } => show_config(&config),
        Command::Serve {
            insecure_no_auth, ..
        } => match declarations {
            Some(declarations) => serve(&config, declarations, insecure_no_auth),
            None => Err(anyhow::anyhow!("the declarations are not valid")),
        },
        Command::HashPassword => hash_password(),
        Command::NewToken => new_token(),
        Command::GrosSshFingerprint => gros_ssh_fingerprint(&data, options),
        Command::Export {
            from,
            stream,
            server,
        } => export(&data, options, from, stream, &server),
        Command::Replay {
            stream,
            at_version,
            at_time,
            server,
        } => {
            let until = match (at_version, at_time) {
                (Some(version), _) => ReplayUntil::Version(version),
                (_, Some(time)) => ReplayUntil::Time(time),
                _ => ReplayUntil::End,
            };
            replay(&data, options, &stream, until, &server)
        }
        Command::Verify { server } => return verify_command(&data, options, &server),
        Command::Migrate { from, to } => migrate_command(&data, &options, &from, &to),
        Command::Load {
            writers,
            events,
            shared_stream,
            line_bytes,
            run,
            quiet,
        } => {
            let run = run.unwrap_or_else(|| Uuid::new_v4().simple().to_string()[..8].to_owned());
            let load = Load {
                writers,
                events,
                shared_stream,
                line_bytes,
                run,
                print: !quiet,
            };
            load_command(&data, options, load)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`annals export | head`) got what it wanted.
        Err(error) if is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("annals: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether an error is standard output's reader having gone away.
fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|e| e.io_error_kind())
                .is_some_and(|kind| kind == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), without actix-http's ERROR lines
/// about clients' mistakes (see `http::failures`).
fn init_logs(format: LogFormat) {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // actix-server announces each listener in several lines of its own ("starting 2 workers",
    // "starting service: …"); `serve` says it in one line per listener instead. RUST_LOG that
    // names actix_server still gets them.
    if !std::env::var("RUST_LOG").is_ok_and(|directives| directives.contains("actix_server")) {
        filter = filter.add_directive("actix_server=warn".parse().expect("a valid directive"));
    }
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => logs.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(crate::http::failures::ClientNoise)
        .with(filter)
        .with(logs)
        .init();
}

/// Opens an existing log; the read-only commands never create one.
fn open_existing(data: &Path, options: LogOptions) -> anyhow::Result<EventLog> {
    if options.backend == Backend::Sled && !data.join("db").exists() {
        bail!("no log at {} (set --data or ANNALS_DATA)", data.display());
    }
    match EventLog::open(data, options) {
        Ok(log) => Ok(log),
        Err(StoreError::Locked { path, .. }) => bail!(
            "the log at {} is held by a running server; use --server URL (or ANNALS_SERVER) \
             to ask it through its event API",
            path.display()
        ),
        Err(error) => Err(error.into()),
    }
}

/// `--at-time`: RFC 3339; a date and time without zone, in UTC; or a date alone, meaning its
/// first moment (00:00:00 UTC), as a date and time would.
fn parse_at_time(raw: &str) -> Result<DateTime<Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime};
    if let Ok(time) = DateTime::parse_from_rfc3339(raw) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(time) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(format!(
        "{raw:?} is not a time: give RFC 3339 (2026-12-07T10:00:00Z), a date (2026-12-07) or a \
         date and time in UTC (2026-12-07T10:00:00)"
    ))
}

/// The problems a configuration file holds itself, each at its line, if any.
fn file_problems(path: &Path) -> Option<ConfigError> {
    let text = std::fs::read_to_string(path).ok()?;
    let problems = crate::declarations::check(&text).err()?;
    Some(ConfigError::Invalid {
        path: path.to_owned(),
        problems,
    })
}

fn check_config(file: Option<&Path>) -> ExitCode {
    let Some(file) = file else {
        eprintln!("annals: name the file to check, or give --config");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("annals: cannot read {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let review = crate::declarations::review(&text);
    // The report is written at once, so that a reader gone early (`| head -1`) is one error
    // to tell from the others, as for every other command.
    let mut report = String::new();
    // Warnings do not make the file invalid: they are printed either way.
    for warning in &review.warnings {
        report.push_str(&format!("{}: {warning}\n", file.display()));
    }
    if review.problems.is_empty() {
        report.push_str(&format!("ok: {}\n", file.display()));
    }
    for problem in &review.problems {
        report.push_str(&format!("{}: {problem}\n", file.display()));
    }
    let valid = review.problems.is_empty();
    match std::io::stdout().lock().write_all(report.as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("annals: cannot write the report: {error}");
            ExitCode::FAILURE
        }
        _ if valid => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn show_config(config: &Config) -> anyhow::Result<()> {
    write!(
        std::io::stdout().lock(),
        "{}",
        toml::to_string_pretty(config)?
    )?;
    Ok(())
}

/// A new bearer token and the line of configuration that accepts it. Written, not printed,
/// so that a closed standard output is an error like any other command's, not a panic.
fn new_token() -> anyhow::Result<()> {
    let (token, hash) = crate::auth::new_token();
    let mut out = std::io::stdout().lock();
    writeln!(out, "token: {token}")?;
    writeln!(out, "token_sha256 = [\"{hash}\"]")?;
    out.flush()?;
    Ok(())
}

fn gros_ssh_fingerprint(data: &std::path::Path, options: LogOptions) -> anyhow::Result<()> {
    let none_yet = || {
        anyhow::anyhow!(
            "no SSH host key yet in {}: it is made when `annals serve` first starts with \
             [gros.ssh] listen",
            data.display()
        )
    };
    // On PostgreSQL the key is in the database every node shares; on sled it is looked for
    // before the store is opened, which would make a master key file in a data directory that
    // has none.
    let shared = match options.backend {
        Backend::Sled => None,
        Backend::Postgres(_) => open_existing(data, options)?.shared_files(),
    };
    let file = data
        .join(crate::secrets::SECRETS_DIR)
        .join(crate::faces::gros_ssh::HOST_KEY_SECRET);
    if shared.is_none() && !file.exists() {
        return Err(none_yet());
    }
    let secrets = crate::secrets::SecretStore::open(data, crate::secrets::KeySource::from_env()?)?
        .shared_by_nodes(shared)?;
    let fingerprint = crate::faces::gros_ssh::stored_fingerprint(&secrets)?.ok_or_else(none_yet)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{fingerprint}")?;
    out.flush()?;
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let mut password = String::new();
    let stdin = std::io::stdin();
    // On a terminal the password is typed, so it is asked for and not shown; from a pipe it
    // is read as it comes.
    let _echo_off = if stdin.is_terminal() {
        let echo_off = EchoOff::on(&stdin).context("cannot turn the terminal's echo off")?;
        eprint!("Password: ");
        Some(echo_off)
    } else {
        None
    };
    stdin
        .read_line(&mut password)
        .context("cannot read the password on standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("the password on standard input is empty");
    }
    writeln!(
        std::io::stdout(),
        "{}",
        crate::auth::hash_password(password)
    )?;
    Ok(())
}

/// A terminal's echo turned off (but for the final newline) until dropped.
struct EchoOff {
    fd: std::os::fd::RawFd,
    saved: libc::termios,
}

impl EchoOff {
    fn on(terminal: &impl std::os::fd::AsRawFd) -> std::io::Result<EchoOff> {
        let fd = terminal.as_raw_fd();
        // SAFETY: termios is plain data, filled in by tcgetattr before it is read.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is an open descriptor and saved a valid termios to write to.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above, with a termios read from the same terminal.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EchoOff { fd, saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from this terminal in `on`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Refuses to serve the event log to a network without accounts, unless told to.
fn check_exposure(config: &Config, insecure_no_auth: bool) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    for listen in crate::startup::listen_addresses(config) {
        let addresses: Vec<_> = listen
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve the listen address {listen}"))?
            .collect();
        let loopback_only = addresses.iter().all(|address| address.ip().is_loopback());
        if !loopback_only && config.accounts.is_empty() && !insecure_no_auth {
            bail!(
                "refusing to listen on {listen} without any account: anyone who reaches it could \
                 read the whole event log. Configure [[accounts]] (see docs/annals.example.toml), \
                 listen on a loopback address, or pass --insecure-no-auth"
            );
        }
    }
    Ok(())
}

fn serve(
    config: &Config,
    declarations: Declarations,
    insecure_no_auth: bool,
) -> anyhow::Result<()> {
    check_exposure(config, insecure_no_auth)?;
    let data = config.data.as_path();
    let log = EventLog::open(data, config.log_options())?;
    let system = actix_web::rt::System::new();
    let served = system.block_on({
        let log = log.clone();
        async move {
            let termination = crate::startup::termination()?;
            let application = crate::startup::build(config, declarations, log).await?;
            let addresses = &application.addresses;
            let scheme = if config.http.tls_cert.is_some() { "https" } else { "http" };
            for (face, address) in &addresses.own {
                tracing::info!(face = *face, %address, "{face} listening");
            }
            tracing::info!(address = %addresses.main, scheme, data = %data.display(), "annals listening");
            application.run_until(termination).await
        }
    });
    // Actors the system never polled (start-up failed first) are started by actix as they are
    // dropped, and their timers need the runtime: the system is dropped inside it.
    let runtime = system.runtime().tokio_runtime().handle().clone();
    {
        let _inside = runtime.enter();
        drop(system);
    }
    // The servers have stopped (SIGINT or SIGTERM): finish pending appends, then exit.
    log.close();
    if served.is_ok() {
        tracing::info!("stopped");
    }
    served
}

/// A progress bar on standard error when that is a terminal, wherever the output goes.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, {eta} left)")
            .expect("the template is valid"),
    );
    bar
}

fn export(
    data: &Path,
    options: LogOptions,
    from: u64,
    stream: Option<String>,
    server: &remote::ServerArgs,
) -> anyhow::Result<()> {
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if let Some(url) = &server.server {
        // A stream's pages count versions, not the events exported: no bar for them.
        let bar = match stream {
            Some(_) => ProgressBar::hidden(),
            None => progress_bar(0),
        };
        remote::export(server, url, from, stream.as_deref(), &mut out, &bar)?;
        bar.finish_and_clear();
        out.flush()?;
        return Ok(());
    }
    let log = open_existing(data, options)?;
    let mut write = |event: &crate::events::RecordedEvent| -> anyhow::Result<()> {
        serde_json::to_writer(&mut out, &render(event))?;
        out.write_all(b"\n")?;
        Ok(())
    };
    let head = log.head();
    match stream {
        Some(stream) => {
            let stream = StreamId::parse(stream)?;
            for event in log.store().stream_events_after(&stream, 0) {
                let event = event?;
                if event.position > from && event.position <= head {
                    write(&event)?;
                }
            }
        }
        None => {
            let bar = progress_bar(head.saturating_sub(from));
            for event in log.store().events_after(from) {
                let event = event?;
                if event.position > head {
                    break;
                }
                write(&event)?;
                bar.inc(1);
            }
            bar.finish_and_clear();
        }
    }
    out.flush()?;
    Ok(())
}

fn replay(
    data: &Path,
    options: LogOptions,
    stream: &str,
    until: ReplayUntil,
    server: &remote::ServerArgs,
) -> anyhow::Result<()> {
    let replayed = match &server.server {
        Some(url) => remote::replay(server, url, stream, until)?,
        None => {
            let log = open_existing(data, options)?;
            let stream = StreamId::parse(stream)?;
            let replayed = kinds::replay(&log, &stream, until)?;
            remote::Replayed {
                stream: replayed.stream.to_string(),
                version: replayed.version,
                state: replayed.state,
            }
        }
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &replayed)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Prints a line on standard output; a reader gone away is no failure of the command.
fn print_line(line: &str) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn verify_command(data: &Path, options: LogOptions, server: &remote::ServerArgs) -> ExitCode {
    if let Some(url) = &server.server {
        let bar = progress_bar(0);
        let verified = remote::verify(server, url, &bar);
        bar.finish_and_clear();
        return match verified {
            Ok(remote::Verdict::Sound(line)) => {
                print_line(&line);
                ExitCode::SUCCESS
            }
            Ok(remote::Verdict::Corrupt(line)) => {
                print_line(&line);
                ExitCode::FAILURE
            }
            Err(error) => {
                eprintln!("annals: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    let log = match open_existing(data, options) {
        Ok(log) => log,
        Err(error) => {
            eprintln!("annals: {error:#}");
            return ExitCode::from(2);
        }
    };
    let bar = progress_bar(log.head());
    let verified = verify(log.store(), |_| bar.inc(1));
    bar.finish_and_clear();
    match verified {
        Ok(report) => {
            print_line(&format!(
                "ok: {} events in {} streams, head {} ({})",
                report.events,
                report.streams,
                report.head,
                hex::encode(report.head_hash)
            ));
            ExitCode::SUCCESS
        }
        Err(error) => {
            print_line(&format!("corrupt: {error}"));
            ExitCode::FAILURE
        }
    }
}

/// Where a log given on the command line is: a PostgreSQL URL (trusting `ca_cert` for TLS when
/// given), or a directory of a sled log.
fn log_at(
    place: &str,
    data: &Path,
    ca_cert: Option<std::path::PathBuf>,
) -> (std::path::PathBuf, Backend) {
    let is_url = ["postgres://", "postgresql://"]
        .iter()
        .any(|scheme| place.starts_with(scheme));
    if is_url {
        let options = PostgresOptions {
            url: place.to_owned(),
            password: std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
            pool_size: 2,
            lease: std::time::Duration::from_secs(10),
            ca_cert,
        };
        (data.to_owned(), Backend::Postgres(options))
    } else {
        (std::path::PathBuf::from(place), Backend::Sled)
    }
}

/// `annals migrate`: see [`Command::Migrate`].
fn migrate_command(data: &Path, options: &LogOptions, from: &str, to: &str) -> anyhow::Result<()> {
    // The configuration's CA certificate for PostgreSQL serves the URLs given here too.
    let ca_cert = match &options.backend {
        Backend::Postgres(postgres) => postgres.ca_cert.clone(),
        Backend::Sled => None,
    };
    let (from_path, from_backend) = log_at(from, data, ca_cert.clone());
    if from_backend == Backend::Sled && !from_path.join("db").exists() {
        bail!("no log at {from}");
    }
    let (to_path, to_backend) = log_at(to, data, ca_cert);
    let source = Store::open(&from_path, &from_backend, options.cache_bytes)
        .with_context(|| format!("cannot open the log to copy ({from})"))?;
    let target = Store::open(&to_path, &to_backend, options.cache_bytes)
        .with_context(|| format!("cannot open the log to copy into ({to})"))?;
    let bar = progress_bar(source.log_head()?.position);
    let copied = crate::events::migrate::migrate(&source, &target, |_| bar.inc(1));
    bar.finish_and_clear();
    let report = copied?;
    print_line(&format!(
        "ok: {} events in {} streams copied to {}, head {} ({})",
        report.events,
        report.streams,
        target.describe(),
        report.head,
        hex::encode(report.head_hash)
    ));
    Ok(())
}

/// A synthetic load; see [`Command::Load`].
struct Load {
    writers: usize,
    events: u64,
    shared_stream: bool,
    line_bytes: usize,
    run: String,
    print: bool,
}

/// The line writer `w` records as its event `seq` in `annals load`: a test that knows `w` and
/// `seq` knows the content.
pub fn load_line(writer: usize, seq: u64, bytes: usize) -> String {
    let mut line = format!("writer {writer} event {seq} ");
    while line.len() < bytes {
        line.push(char::from(b'a' + (line.len() % 26) as u8));
    }
    line
}

fn load_command(data: &Path, options: LogOptions, load: Load) -> anyhow::Result<()> {
    let log = EventLog::open(data, options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let load = Arc::new(load);
    let total = runtime.block_on(async {
        let writers: Vec<_> = (0..load.writers)
            .map(|writer| tokio::spawn(write_load(log.clone(), load.clone(), writer)))
            .collect();
        let mut total = 0;
        for writer in writers {
            total += writer.await??;
        }
        anyhow::Ok(total)
    });
    log.close();
    let total = total?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "appended {total} events in {seconds:.2} s ({:.0} events/s)",
        total as f64 / seconds
    );
    Ok(())
}

async fn write_load(log: EventLog, load: Arc<Load>, writer: usize) -> anyhow::Result<u64> {
    let stream = if load.shared_stream {
        StreamId::parse(format!("job-{}", load.run))?
    } else {
        StreamId::parse(format!("job-{}-{writer}", load.run))?
    };
    let new_event = |event: JobEvent| NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        payload: event.encode_payload(),
        metadata: Metadata::system(),
    };
    let mut version = 0;
    let mut appended = 0;
    if !load.shared_stream || writer == 0 {
        let started = JobEvent::JobStarted(JobStarted {
            name: format!("load {}", load.run),
            at: Utc::now(),
        });
        // In a shared stream every writer but the first appends lines to whatever is there.
        version = append(
            &log,
            &stream,
            ExpectedVersion::Exactly(0),
            new_event(started),
            &load,
            writer,
            0,
        )
        .await?;
        appended += 1;
    }
    let mut seq = 1;
    while load.events == 0 || seq <= load.events {
        let line = JobEvent::LineRecorded(LineRecorded {
            line: load_line(writer, seq, load.line_bytes),
            level: Level::Info,
            at: Utc::now(),
        });
        let expected = if load.shared_stream {
            ExpectedVersion::Any
        } else {
            ExpectedVersion::Exactly(version)
        };
        version = append(&log, &stream, expected, new_event(line), &load, writer, seq).await?;
        appended += 1;
        seq += 1;
    }
    Ok(appended)
}

async fn append(
    log: &EventLog,
    stream: &StreamId,
    expected: ExpectedVersion,
    event: NewEvent,
    load: &Load,
    writer: usize,
    seq: u64,
) -> anyhow::Result<u64> {
    let event_id = event.event_id;
    let appended = log.append(stream.clone(), expected, vec![event]).await?;
    if load.print {
        // One write per line, so that lines of concurrent writers never interleave.
        let line = format!(
            "ack {stream} {} {} {event_id} {writer} {seq}\n",
            appended.stream_version, appended.first_position
        );
        std::io::stdout()
            .lock()
            .write_all(line.as_bytes())
            .context("cannot print an acknowledgement")?;
    }
    Ok(appended.stream_version)
}
