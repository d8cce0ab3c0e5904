//! Configuration: embedded defaults, then an optional TOML file, then `ANNALS_…` environment
//! variables, then command-line flags, each overriding the one before. It reads and checks
//! settings; it starts nothing.
//!
//! Every key has an environment variable derived from its place: a top-level key `data` is
//! `ANNALS_DATA`, the key `listen` of section `[http]` is `ANNALS_HTTP_LISTEN`. Sections the faces
//! add get theirs the same way, with no code of their own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actors::Settings;
use crate::auth::{Access, Account};
use crate::events::{Durability, LogOptions};

/// Everything annals can be told. `Config::default()` is the embedded configuration that
/// `annals serve` runs on without a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The directory of the log.
    pub data: PathBuf,
    /// How hard each commit is pushed to disk before it is acknowledged: fsync, flush or none.
    pub durability: Durability,
    pub log: LogSection,
    pub http: HttpSection,
    pub actors: ActorsSection,
    pub auth: AuthSection,
    pub partisci: PartisciSection,
    pub refstack: RefstackSection,
    pub patrowl: PatrowlSection,
    pub hpcwaas: HpcwaasSection,
    pub gros: GrosSection,
    /// The accounts. With none, auth is off, and annals refuses to listen on anything but a
    /// loopback address unless told `--insecure-no-auth`.
    pub accounts: Vec<Account>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Who may use the event API (`/api/…`) once any account exists: anyone, account or admin.
    pub api: Access,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection { api: Access::Admin }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Memory for sled's page cache, in MiB.
    pub cache_mb: u64,
    /// The largest event payload, in KiB.
    pub max_event_kb: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// The address of the main HTTP listener, which serves every face at its own paths.
    pub listen: String,
    /// Seconds an event stream (Server-Sent Events) goes without events before the server sends
    /// a keep-alive comment; at least 1.
    pub sse_keep_alive_s: u64,
    /// Seconds a request body may go with no byte arriving, on every listener, before the
    /// request is answered 408; at least 1.
    pub body_timeout_s: u64,
    /// Whether every listener logs each answered request at INFO (method, path, status, time).
    pub request_log: bool,
    /// A PEM certificate chain: with `tls_key`, the listener speaks HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// The inventory face (Partisci). Its routes are on the main listener too, under `/api/v1/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartisciSection {
    /// Whether the face runs at all.
    pub enabled: bool,
    /// Its own listener, HTTP and UDP on one port, so that Partisci clients keep their default
    /// port 7777; empty for none.
    pub listen: String,
    /// A PEM certificate chain for its HTTP listener; with `tls_key`, it speaks HTTPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Who may use it once any account exists: anyone (Partisci clients send no credentials),
    /// account or admin. `_danger/clear/` always needs admin when accounts exist.
    pub auth: Access,
    /// The largest `POST update/` body, in KiB; larger ones are answered 413.
    pub max_body_kb: u64,
    /// Versions not reported for this many seconds leave the queries and are expired with an
    /// event; 0 keeps them for ever.
    pub retention_s: u64,
    /// Enables `POST _danger/clear/`, which clears the whole inventory (its history stays).
    pub danger: bool,
}

impl Default for PartisciSection {
    fn default() -> Self {
        PartisciSection {
            enabled: true,
            listen: "127.0.0.1:7777".into(),
            tls_cert: None,
            tls_key: None,
            auth: Access::Anyone,
            max_body_kb: 16,
            retention_s: 0,
            danger: false,
        }
    }
}

/// The test results face (Refstack), on the main listener: the v1 routes under `/v1/` and, as
/// the 2014 server served them, without the prefix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefstackSection {
    /// Whether the face runs at all.
    pub enabled: bool,
    /// Who may use it once any account exists: anyone (refstack-client sends no credentials),
    /// account or admin.
    pub auth: Access,
    /// The largest upload (`post-result`, with its multipart envelope), in KiB; larger ones are
    /// answered 413.
    pub max_upload_kb: u64,
    /// The largest body of the other routes (a cloud, a status), in KiB.
    pub max_body_kb: u64,
    /// The most test results one upload may hold.
    pub max_tests: usize,
}

impl Default for RefstackSection {
    fn default() -> Self {
        RefstackSection {
            enabled: true,
            auth: Access::Anyone,
            max_upload_kb: 64 * 1024,
            max_body_kb: 64,
            max_tests: 100_000,
        }
    }
}

/// The scan engine face (Patrowl engines): its routes are on the main listener too, under
/// `/engines/<name>/` and `/engine/<name>/`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatrowlSection {
    /// Whether the face runs at all.
    pub enabled: bool,
    /// Its own listener, on the port Patrowl engines use by default; empty for none.
    pub listen: String,
    /// Who may use it once any account exists: anyone (PatrowlManager sends no credentials),
    /// account or admin. `stop`, `stopscans`, `clean` always need admin once accounts exist.
    pub auth: Access,
    /// The largest `startscan` body, in KiB; larger ones are answered 413.
    pub max_body_kb: u64,
    /// The engines served, each at `/engines/<name>/`.
    pub engines: Vec<EngineConfig>,
}

impl Default for PatrowlSection {
    fn default() -> Self {
        PatrowlSection {
            enabled: true,
            listen: "127.0.0.1:5001".into(),
            auth: Access::Anyone,
            max_body_kb: 1024,
            engines: vec![
                EngineConfig {
                    name: "tcp".into(),
                    scanner: ScannerKind::Tcp,
                    version: env!("CARGO_PKG_VERSION").into(),
                    description: "TCP connect scan of the ports asked for".into(),
                    allowed_asset_types: ["ip", "ip-range", "ip-subnet", "fqdn", "domain"]
                        .map(String::from)
                        .to_vec(),
                    ..EngineConfig::default()
                },
                EngineConfig {
                    name: "http".into(),
                    scanner: ScannerKind::Http,
                    version: env!("CARGO_PKG_VERSION").into(),
                    description: "HTTP security headers and banners".into(),
                    allowed_asset_types: ["url", "fqdn"].map(String::from).to_vec(),
                    ..EngineConfig::default()
                },
            ],
        }
    }
}

/// Which built-in scanner an engine runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// A TCP connect scan.
    #[default]
    Tcp,
    /// A GET on each URL, for security headers and banners.
    Http,
    /// An external program: assets as JSON on its standard input, findings as JSON lines on
    /// its standard output.
    Command,
}

/// One `[[patrowl.engines]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Served at `/engines/<name>/`: lower-case letters, digits and `_`.
    pub name: String,
    pub scanner: ScannerKind,
    pub version: String,
    pub description: String,
    /// The asset datatypes a scan may hold (`ip`, `ip-range`, `ip-subnet`, `fqdn`, `domain`,
    /// `url`, …).
    pub allowed_asset_types: Vec<String>,
    /// The most scans STARTED or SCANNING at once; past it the engine is BUSY and refuses
    /// new scans with 503.
    pub max_scans: usize,
    /// Options every scan gets; a scan's own options override them key by key.
    pub options: toml::Table,
    /// tcp: connections tried at once.
    pub concurrency: usize,
    /// tcp: milliseconds a connection may take to open before the port counts as closed.
    pub connect_timeout_ms: u64,
    /// tcp: the most hosts an `ip-range` or `ip-subnet` asset may hold.
    pub max_hosts: usize,
    /// http: milliseconds a request may take, connection included.
    pub request_timeout_ms: u64,
    /// command: the program and its arguments, run without a shell.
    pub command: Vec<String>,
    /// command: seconds the program may run before it is stopped and the scan fails.
    pub timeout_s: u64,
    /// command: seconds between SIGTERM and SIGKILL when the program is stopped.
    pub kill_grace_s: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            name: String::new(),
            scanner: ScannerKind::Tcp,
            version: "1.0".into(),
            description: String::new(),
            allowed_asset_types: Vec::new(),
            max_scans: 5,
            options: toml::Table::new(),
            concurrency: 256,
            connect_timeout_ms: 1000,
            max_hosts: 256,
            request_timeout_ms: 10_000,
            command: Vec::new(),
            timeout_s: 3600,
            kill_grace_s: 5,
        }
    }
}

/// The workflow face (eFlows4HPC HPCWaaS): workflows declared here, executions that run their
/// steps, SSH keys kept encrypted in the secret store. On the main listener and its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HpcwaasSection {
    /// Whether the face runs at all.
    pub enabled: bool,
    /// Its own listener, on the port the `waas` client uses by default; empty for none.
    pub listen: String,
    /// A PEM certificate chain for its own listener; with `tls_key`, it speaks HTTPS (the
    /// `waas` client's default URL is `https://127.0.0.1:9090`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Who may use it once any account exists: anyone, account or admin.
    pub auth: Access,
    /// The largest request body, in KiB.
    pub max_body_kb: u64,
    /// Seconds between SIGTERM and SIGKILL when a step is cancelled or times out.
    pub kill_grace_s: u64,
    /// The longest log line, in bytes; longer lines are cut into pieces.
    pub max_line_bytes: usize,
    /// The most log lines kept per execution; later ones are counted, not kept.
    pub max_log_lines: usize,
    /// The most bytes of a step's outputs file that are read.
    pub max_output_kb: u64,
    /// The workflows, as a workflow developer declares them.
    pub workflows: Vec<crate::actors::workflow::WorkflowSpec>,
}

impl Default for HpcwaasSection {
    fn default() -> Self {
        HpcwaasSection {
            enabled: true,
            listen: "127.0.0.1:9090".into(),
            tls_cert: None,
            tls_key: None,
            auth: Access::Account,
            max_body_kb: 64,
            kill_grace_s: 5,
            max_line_bytes: 16 * 1024,
            max_log_lines: 100_000,
            max_output_kb: 64,
            workflows: Vec::new(),
        }
    }
}

/// The agent face (GROS data gathering): the controller's `/auth/<name>.py` routes on the main
/// listener, the projects they serve, and the scraper agent daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrosSection {
    /// Whether the face runs at all.
    pub enabled: bool,
    /// The gatherer version `version.py` accepts (the part before the first `-`).
    pub gatherer_version: String,
    /// The controller's commit (40 hex digits) that `version.py` compares agents with.
    pub controller_version: String,
    /// Addresses or networks of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Networks whose callers may reach every project (`access.py` answers `["*"]`).
    pub access_all_networks: Vec<String>,
    /// Regular expressions: a `log.py` record whose message matches one is answered 204 and
    /// not recorded.
    pub log_ignore: Vec<String>,
    /// The largest request body, in KiB.
    pub max_body_kb: u64,
    /// Seconds an import command may run before it is stopped.
    pub import_timeout_s: u64,
    /// Seconds a scrape command may run before it is stopped.
    pub scrape_timeout_s: u64,
    /// Milliseconds a new scrape is watched: one that fails within them is answered 503 with
    /// its status code.
    pub scrape_start_check_ms: u64,
    /// Seconds between SIGTERM and SIGKILL when a command is stopped.
    pub kill_grace_s: u64,
    /// The scraper agent daemon of the local agent.
    pub agent: GrosAgentSection,
    /// The projects, each with its agents' settings.
    pub projects: Vec<GrosProjectSpec>,
}

impl Default for GrosSection {
    fn default() -> Self {
        GrosSection {
            enabled: true,
            gatherer_version: "0.0.3".into(),
            controller_version: "0".repeat(40),
            trusted_proxies: Vec::new(),
            access_all_networks: Vec::new(),
            log_ignore: Vec::new(),
            max_body_kb: 256,
            import_timeout_s: 3600,
            scrape_timeout_s: 3600,
            scrape_start_check_ms: 1000,
            kill_grace_s: 5,
            agent: GrosAgentSection::default(),
            projects: Vec::new(),
        }
    }
}

/// The scraper agent daemon: `/status` and `/scrape` of one local agent on a listener of its
/// own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrosAgentSection {
    /// Whether the daemon's listener runs.
    pub enabled: bool,
    /// Its listener, on the port the agent's daemon uses by default.
    pub listen: String,
    /// The local agent's project key; its scrape command is the project's.
    pub project: String,
    /// The local agent's name; empty: named after its project.
    pub agent: String,
    /// When not empty, `/scrape` refuses other `Host` headers with 403.
    pub host: String,
}

impl Default for GrosAgentSection {
    fn default() -> Self {
        GrosAgentSection {
            enabled: false,
            listen: "127.0.0.1:7070".into(),
            project: String::new(),
            agent: String::new(),
            host: String::new(),
        }
    }
}

/// One project of the GROS controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrosProjectSpec {
    /// The project key: upper-case letters only, at most 20.
    pub key: String,
    /// Addresses or networks (CIDR) its agents may call from; none allows none.
    pub networks: Vec<String>,
    /// The username patterns handed to its agents at registration.
    pub usernames: Vec<crate::actors::gros::service::UsernamePattern>,
    /// The contents of its agents' environment file, shown by the preflight check.
    pub environment: String,
    /// Seconds between gathers: an agent that exported less long ago is told to wait.
    pub gather_interval_s: u64,
    /// The import command's argv, run (without a shell) after each export; empty for none.
    pub import_command: Vec<String>,
    /// The scrape command's argv of its agents, run by `…/scrape`; empty for none.
    pub scrape_command: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorsSection {
    /// Seconds an entity's actor stays in memory unused before it is passivated.
    pub idle_timeout_s: u64,
    /// The most entity actors in memory per kind; the least recently used go first.
    pub max_resident: usize,
    /// A snapshot every this many events of an entity.
    pub snapshot_every: u64,
    /// Milliseconds of replay at activation after which a snapshot is written at once.
    pub replay_budget_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data: PathBuf::from("annals-data"),
            durability: Durability::Fsync,
            log: LogSection::default(),
            http: HttpSection::default(),
            actors: ActorsSection::default(),
            auth: AuthSection::default(),
            partisci: PartisciSection::default(),
            refstack: RefstackSection::default(),
            patrowl: PatrowlSection::default(),
            hpcwaas: HpcwaasSection::default(),
            gros: GrosSection::default(),
            accounts: Vec::new(),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        let log = LogOptions::default();
        LogSection {
            cache_mb: log.cache_bytes / (1024 * 1024),
            max_event_kb: log.max_event_bytes as u64 / 1024,
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:8080".into(),
            sse_keep_alive_s: crate::http::events::KEEP_ALIVE.as_secs(),
            body_timeout_s: crate::http::body::BODY_TIMEOUT.as_secs(),
            request_log: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for ActorsSection {
    fn default() -> Self {
        let settings = Settings::default();
        ActorsSection {
            idle_timeout_s: settings.idle_timeout.as_secs(),
            max_resident: settings.max_resident,
            snapshot_every: settings.snapshot_every,
            replay_budget_ms: settings.replay_budget.as_millis() as u64,
        }
    }
}

/// Every key a configuration may hold, with a value of its type: the defaults, plus a value
/// for each key whose default is "unset". Each optional key a section adds is filled in here.
pub fn schema() -> toml::Table {
    let mut config = Config::default();
    config.http.tls_cert = Some(PathBuf::new());
    config.http.tls_key = Some(PathBuf::new());
    config.partisci.tls_cert = Some(PathBuf::new());
    config.partisci.tls_key = Some(PathBuf::new());
    config.hpcwaas.tls_cert = Some(PathBuf::new());
    config.hpcwaas.tls_key = Some(PathBuf::new());
    toml::Table::try_from(config).expect("the schema serializes")
}

impl Config {
    pub fn log_options(&self) -> LogOptions {
        LogOptions {
            durability: self.durability,
            max_event_bytes: (self.log.max_event_kb * 1024) as usize,
            cache_bytes: self.log.cache_mb * 1024 * 1024,
            ..LogOptions::default()
        }
    }

    pub fn actor_settings(&self) -> Settings {
        Settings {
            idle_timeout: Duration::from_secs(self.actors.idle_timeout_s),
            max_resident: self.actors.max_resident,
            snapshot_every: self.actors.snapshot_every.max(1),
            replay_budget: Duration::from_millis(self.actors.replay_budget_ms),
        }
    }

    /// The defaults, overridden by `file` (if any), then by the `ANNALS_…` variables in `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::try_from(Config::default()).expect("the defaults serialize");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let from_file = check(&text).map_err(|problems| ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })?;
            merge(&mut merged, from_file);
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        apply_env(&schema(), &mut merged, "ANNALS", &env)?;
        toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| {
                ConfigError::Env(format!(
                    "an ANNALS_… environment variable is invalid: {}",
                    e.message()
                ))
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration {path} is not valid:\n  {}", problems.join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("{0}")]
    Env(String),
}

/// Checks a configuration file's text: its syntax, every key against the known ones, and every
/// value's type. Returns the file's table, or every problem found as `line N: …`.
pub fn check(text: &str) -> Result<toml::Table, Vec<String>> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let document = toml_edit::ImDocument::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |span| line_of(span.start));
        vec![format!("line {line}: {}", e.message())]
    })?;
    let known = schema();
    let mut problems = Vec::new();
    unknown_keys(document.as_table(), &known, "", &line_of, &mut problems);
    if problems.is_empty() {
        match toml::from_str::<Config>(text) {
            Err(e) => {
                let line = e.span().map_or(1, |span| line_of(span.start));
                problems.push(format!("line {line}: {}", e.message()));
            }
            // The faces' declarations are checked as start-up checks them, so that a file
            // that passes here does not stop `annals serve`.
            Ok(config) => {
                if let Err(reasons) = config.declarations() {
                    problems.extend(reasons);
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(toml::from_str(text).expect("a checked configuration parses"))
    } else {
        Err(problems)
    }
}

/// The faces' declarations, checked: what `annals serve` refuses to start with and
/// `annals config check` reports, found by one function so that the two never disagree.
pub struct Declarations {
    /// The scan engines of `[[patrowl.engines]]`.
    pub engines: Vec<std::sync::Arc<crate::actors::scan::service::Engine>>,
    /// The workflows of `[[hpcwaas.workflows]]`.
    pub workflows: std::sync::Arc<crate::actors::workflow::Catalogue>,
    /// The GROS controller's projects and settings.
    pub gros: crate::actors::gros::service::Controller,
    /// The GROS local agent, when `[gros.agent] enabled`.
    pub gros_agent: Option<(
        crate::actors::gros::ProjectKey,
        crate::actors::gros::AgentName,
    )>,
}

impl Config {
    /// Checks every face's declarations, enabled or not: a section that says something wrong
    /// is refused even while its face is off. Every problem is reported, not only the first.
    pub fn declarations(&self) -> Result<Declarations, Vec<String>> {
        use crate::actors::gros::{AgentName, ProjectKey};
        let mut problems = Vec::new();
        let mut engines = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for engine in &self.patrowl.engines {
            match crate::actors::scan::service::Engine::parse(engine) {
                Ok(engine) if !names.insert(engine.name.as_str().to_owned()) => {
                    problems.push(format!(
                        "[[patrowl.engines]]: engine {} is configured twice",
                        engine.name.as_str()
                    ))
                }
                Ok(engine) => engines.push(std::sync::Arc::new(engine)),
                Err(reason) => problems.push(format!("[[patrowl.engines]]: {reason}")),
            }
        }
        let workflows = crate::actors::workflow::Catalogue::parse(&self.hpcwaas.workflows)
            .map_err(|reason| problems.push(format!("[[hpcwaas.workflows]]: {reason}")));
        let gros = crate::actors::gros::service::Controller::parse(&self.gros)
            .map_err(|reason| problems.push(format!("[gros]: {reason}")));
        // `Controller::parse` has checked the local agent's names when it is enabled.
        let agent = &self.gros.agent;
        let gros_agent = agent
            .enabled
            .then(|| {
                let project = ProjectKey::parse(&agent.project).ok()?;
                let name = if agent.agent.is_empty() {
                    AgentName::of(&project)
                } else {
                    AgentName::parse(&agent.agent).ok()?
                };
                Some((project, name))
            })
            .flatten();
        match (workflows, gros) {
            (Ok(workflows), Ok(gros)) if problems.is_empty() => Ok(Declarations {
                engines,
                workflows: std::sync::Arc::new(workflows),
                gros,
                gros_agent,
            }),
            _ => Err(problems),
        }
    }
}

/// Reports every key of `table` that `known` does not have, recursing into sections.
fn unknown_keys(
    table: &toml_edit::Table,
    known: &toml::Table,
    prefix: &str,
    line_of: &dyn Fn(usize) -> usize,
    problems: &mut Vec<String>,
) {
    for (key, item) in table.iter() {
        let name = format!("{prefix}{key}");
        let line = table
            .key(key)
            .and_then(|k| k.span())
            .map_or(0, |span| line_of(span.start));
        match (known.get(key), item) {
            (None, _) => problems.push(format!("line {line}: unknown key `{name}`")),
            (Some(toml::Value::Table(section)), toml_edit::Item::Table(inner)) => {
                unknown_keys(inner, section, &format!("{name}."), line_of, problems)
            }
            _ => {}
        }
    }
}

/// Overlays `from` on `into`, section by section.
fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(section)), toml::Value::Table(inner)) => merge(section, inner),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Sets each key of `schema` whose variable (`PREFIX_KEY`, `PREFIX_SECTION_KEY`) is in `env`,
/// parsed as the type the schema gives that key.
fn apply_env(
    schema: &toml::Table,
    table: &mut toml::Table,
    prefix: &str,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    for (key, shape) in schema {
        let var = format!("{prefix}_{}", key.to_uppercase());
        if let toml::Value::Table(section_schema) = shape {
            let section = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(section) = section {
                apply_env(section_schema, section, &var, env)?;
            }
            continue;
        }
        let Some((_, raw)) = env.iter().find(|(name, _)| *name == var) else {
            continue;
        };
        let bad = |expected: &str| ConfigError::Env(format!("{var}={raw:?}: expected {expected}"));
        let value = match shape {
            toml::Value::String(_) => toml::Value::String(raw.clone()),
            toml::Value::Integer(_) => {
                toml::Value::Integer(raw.parse().map_err(|_| bad("an integer"))?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(raw.parse().map_err(|_| bad("true or false"))?)
            }
            toml::Value::Float(_) => toml::Value::Float(raw.parse().map_err(|_| bad("a number"))?),
            _ => {
                return Err(bad(
                    "a value set in the configuration file, not in the environment",
                ))
            }
        };
        table.insert(key.clone(), value);
    }
    Ok(())
}
