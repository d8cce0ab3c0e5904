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

use crate::actors::job::{JobEvent, JobStarted, Level, LineRecorded};
use crate::actors::kinds;
use crate::actors::state::ReplayUntil;
use crate::config::Config;
use crate::events::codec::render;
use crate::events::verify::verify;
use crate::events::{
    DomainEvent, Durability, EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent, StreamId,
};

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
        /// Listen on a non-loopback address even though no account is configured, so that
        /// anyone who reaches it can read the whole event log.
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Reads a password on standard input and prints its argon2 hash, for `password_hash`.
    HashPassword,
    /// Prints a new random bearer token and the hash to configure for it, for `token_sha256`.
    NewToken,
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
    },
    /// Prints an entity's state replayed from its first event, as JSON.
    Replay {
        stream: String,
        /// Stop after this version.
        #[arg(long, conflicts_with = "at_time")]
        at_version: Option<u64>,
        /// Stop after the last event recorded at or before this time (RFC 3339).
        #[arg(long)]
        at_time: Option<DateTime<Utc>>,
    },
    /// Checks the whole log: hash chain, gapless positions and versions, position pointers.
    Verify,
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
    if let Some(durability) = cli.durability {
        config.durability = durability;
    }
    if let Command::Serve {
        listen: Some(listen),
        ..
    } = &cli.command
    {
        config.http.listen = listen.clone();
    }
    let options = config.log_options();
    let data = config.data.clone();
    let outcome = match cli.command {
        Command::Config { .. } => show_config(&config),
        Command::Serve {
            insecure_no_auth, ..
        } => serve(&config, insecure_no_auth),
        Command::HashPassword => hash_password(),
        Command::NewToken => {
            let (token, hash) = crate::auth::new_token();
            println!("token: {token}");
            println!("token_sha256 = [\"{hash}\"]");
            Ok(())
        }
        Command::Export { from, stream } => export(&data, options, from, stream),
        Command::Replay {
            stream,
            at_version,
            at_time,
        } => {
            let until = match (at_version, at_time) {
                (Some(version), _) => ReplayUntil::Version(version),
                (_, Some(time)) => ReplayUntil::Time(time),
                _ => ReplayUntil::End,
            };
            replay(&data, options, &stream, until)
        }
        Command::Verify => return verify_command(&data, options),
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
        Err(error) => {
            eprintln!("annals: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), without actix-http's ERROR lines
/// about clients' mistakes (see `http::failures`).
fn init_logs(format: LogFormat) {
    use tracing_subscriber::layer::{Layer as _, SubscriberExt as _};
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
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
    if !data.join("db").exists() {
        bail!("no log at {} (set --data or ANNALS_DATA)", data.display());
    }
    Ok(EventLog::open(data, options)?)
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
    match crate::config::check(&text) {
        Ok(_) => {
            println!("ok: {}", file.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in problems {
                println!("{}: {problem}", file.display());
            }
            ExitCode::FAILURE
        }
    }
}

fn show_config(config: &Config) -> anyhow::Result<()> {
    print!("{}", toml::to_string_pretty(config)?);
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password on standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        bail!("the password on standard input is empty");
    }
    println!("{}", crate::auth::hash_password(password));
    Ok(())
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

fn serve(config: &Config, insecure_no_auth: bool) -> anyhow::Result<()> {
    check_exposure(config, insecure_no_auth)?;
    let data = config.data.as_path();
    let log = EventLog::open(data, config.log_options())?;
    let system = actix_web::rt::System::new();
    let served = system.block_on({
        let log = log.clone();
        async move {
            let termination = crate::startup::termination()?;
            let application = crate::startup::build(config, log).await?;
            let addresses = &application.addresses;
            let scheme = if config.http.tls_cert.is_some() { "https" } else { "http" };
            if let Some(partisci) = addresses.partisci {
                tracing::info!(%partisci, "partisci listening (HTTP and UDP)");
            }
            if let Some(patrowl) = addresses.patrowl {
                tracing::info!(%patrowl, "patrowl engines listening");
            }
            if let Some(hpcwaas) = addresses.hpcwaas {
                tracing::info!(%hpcwaas, "hpcwaas listening");
            }
            if let Some(gros_agent) = addresses.gros_agent {
                tracing::info!(%gros_agent, "gros agent daemon listening");
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

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
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
) -> anyhow::Result<()> {
    let log = open_existing(data, options)?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
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
) -> anyhow::Result<()> {
    let log = open_existing(data, options)?;
    let stream = StreamId::parse(stream)?;
    let replayed = kinds::replay(&log, &stream, until)?;
    println!("{}", serde_json::to_string_pretty(&replayed)?);
    Ok(())
}

fn verify_command(data: &Path, options: LogOptions) -> ExitCode {
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
            println!(
                "ok: {} events in {} streams, head {} ({})",
                report.events,
                report.streams,
                report.head,
                hex::encode(report.head_hash)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            println!("corrupt: {error}");
            ExitCode::FAILURE
        }
    }
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
        seq += 1;
    }
    Ok(seq - 1)
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
