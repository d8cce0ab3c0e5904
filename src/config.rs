//! Configuration: embedded defaults, then an optional TOML file, then `ANNALS_…` environment
//! variables, then command-line flags, each overriding the one before. It reads and checks
//! settings; it starts nothing.
//!
//! Every key has an environment variable derived from its place: a top-level key `data` is
//! `ANNALS_DATA`, the key `listen` of section `[http]` is `ANNALS_HTTP_LISTEN`. Sections the faces
//! add get theirs the same way, with no code of their own.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::auth::{Access, Account};
use crate::events::{Backend, Durability, LogOptions, PostgresOptions};

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
    /// Where the log is: `sled` (in `data`) or `postgres` (the database at `postgres_url`).
    pub backend: LogBackend,
    /// Memory for sled's page cache, in MiB.
    pub cache_mb: u64,
    /// The largest event payload, in KiB.
    pub max_event_kb: u64,
    /// The PostgreSQL log's connection string, for `backend = "postgres"`. A password is best
    /// left out of it and given in `PGPASSWORD`.
    pub postgres_url: String,
    /// Connections each node opens for reads (the journal and the follower of other nodes have
    /// one each besides).
    pub postgres_pool: u64,
    /// How long a node's lease on its shards of entities lasts without renewal, in seconds: a
    /// node that dies has its entities' effects taken over by another within this time.
    pub postgres_lease_s: u64,
    /// The PEM file of the CA certificates that signed the PostgreSQL server's certificate:
    /// connections then use TLS and check the server against it. Empty: no TLS (a URL's
    /// `sslmode=require` is then refused).
    pub postgres_ca_cert: Option<PathBuf>,
}

/// The engines a log can be kept in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    #[default]
    Sled,
    Postgres,
}

/// What every protocol face's section tells alike, however it spells it: whether the face
/// runs, its own listener and its largest request body. A face reads the rest of its section
/// itself.
pub trait FaceSection {
    /// Whether the face runs at all.
    fn enabled(&self) -> bool;
    /// The address of the face's own listener, when it runs one.
    fn own_listen(&self) -> Option<&str>;
    /// The largest request body, in bytes.
    fn max_body(&self) -> usize;
}

/// Writes [`FaceSection`] for a section with `enabled` and `max_body_kb`, given how its own
/// listener is found.
macro_rules! face_section {
    ($section:ty, |$s:ident| $own_listen:expr) => {
        impl FaceSection for $section {
            fn enabled(&self) -> bool {
                self.enabled
            }

            fn own_listen(&self) -> Option<&str> {
                let $s = self;
                $own_listen
            }

            fn max_body(&self) -> usize {
                usize::try_from(self.max_body_kb.saturating_mul(1024)).unwrap_or(usize::MAX)
            }
        }
    };
}

face_section!(PartisciSection, |s| listening(s.enabled, &s.listen));
face_section!(RefstackSection, |_s| None);
face_section!(PatrowlSection, |s| listening(s.enabled, &s.listen));
face_section!(HpcwaasSection, |s| listening(s.enabled, &s.listen));
// The local agent daemon's listener: it serves the daemon's routes, not the controller's.
face_section!(GrosSection, |s| listening(
    s.enabled && s.agent.enabled,
    &s.agent.listen
));

/// A listener a section gives: `listen`, when its face runs and it is not empty.
fn listening(enabled: bool, listen: &str) -> Option<&str> {
    (enabled && !listen.is_empty()).then_some(listen)
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
    /// What a restart of annals does to a `command` scan whose program still runs: `reattach`
    /// (follow it on, from where its findings were recorded) or `kill` (stop it, and end the
    /// scan in ERROR as interrupted).
    pub on_restart: OnRestart,
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
            on_restart: OnRestart::Reattach,
            engines: vec![
                EngineConfig {
                    name: "tcp".into(),
                    ..EngineConfig::defaults(ScannerKind::Tcp)
                },
                EngineConfig {
                    name: "http".into(),
                    ..EngineConfig::defaults(ScannerKind::Http)
                },
                // Declared whether or not nmap is installed: without it the engine is in
                // ERROR and says why.
                EngineConfig {
                    name: "nmap".into(),
                    ..EngineConfig::defaults(ScannerKind::Nmap)
                },
            ],
        }
    }
}

/// Every asset datatype Patrowl names, in its order: what a `command` engine takes unless
/// told otherwise. The scan engine face parses each into its own type; a test keeps the two
/// lists equal.
pub const ASSET_TYPES: [&str; 11] = [
    "ip",
    "ip-range",
    "ip-subnet",
    "fqdn",
    "domain",
    "url",
    "keyword",
    "person",
    "organisation",
    "path",
    "application",
];

/// Which built-in scanner an engine runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerKind {
    /// A TCP connect scan.
    #[default]
    Tcp,
    /// A GET on each URL, for security headers and banners.
    Http,
    /// The real nmap, with the options and findings of Patrowl's nmap engine.
    Nmap,
    /// An external program: assets as JSON on its standard input, findings as JSON lines on
    /// its standard output.
    Command,
}

/// One `[[patrowl.engines]]` entry. A key an entry leaves out takes its scanner's default
/// ([`EngineConfig::defaults`]), the value `docs/annals.example.toml` shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "EngineEntry")]
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
    /// tcp, nmap: the most hosts an `ip-range` or `ip-subnet` asset may hold.
    pub max_hosts: usize,
    /// http: milliseconds a request may take, connection included.
    pub request_timeout_ms: u64,
    /// command: the program and its arguments, run without a shell.
    pub command: Vec<String>,
    /// nmap: the nmap program, a path or a name looked for on `PATH`.
    pub program: String,
    /// nmap: whether nmap may use raw sockets (SYN and UDP scans, OS detection); left out,
    /// when annals runs as root. `true` for an nmap given capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// command, nmap: seconds the program may run before it is stopped and the scan fails.
    pub timeout_s: u64,
    /// command, nmap: seconds between SIGTERM and SIGKILL when the program is stopped.
    pub kill_grace_s: u64,
}

impl EngineConfig {
    /// An engine running `scanner`, unnamed, with every other key at its documented default:
    /// annals' version, and the scanner's description and asset datatypes (a `command`
    /// scanner's program may take any datatype).
    pub fn defaults(scanner: ScannerKind) -> EngineConfig {
        let names = |types: &[&str]| types.iter().map(|t| t.to_string()).collect();
        let (description, allowed_asset_types) = match scanner {
            ScannerKind::Tcp => (
                "TCP connect scan of the ports asked for",
                names(&["ip", "ip-range", "ip-subnet", "fqdn", "domain"]),
            ),
            ScannerKind::Http => ("HTTP security headers and banners", names(&["url", "fqdn"])),
            ScannerKind::Nmap => (
                "nmap: open ports, services and versions, NSE scripts, OS detection",
                names(&["ip", "ip-range", "ip-subnet", "fqdn", "domain", "url"]),
            ),
            ScannerKind::Command => ("", names(&ASSET_TYPES)),
        };
        let nmap = scanner == ScannerKind::Nmap;
        EngineConfig {
            name: String::new(),
            scanner,
            version: env!("CARGO_PKG_VERSION").into(),
            description: description.into(),
            allowed_asset_types,
            max_scans: 5,
            options: toml::Table::new(),
            concurrency: 256,
            connect_timeout_ms: 1000,
            // nmap scans a /16, as Patrowl's nmap engine does.
            max_hosts: if nmap { 65_536 } else { 256 },
            request_timeout_ms: 10_000,
            command: Vec::new(),
            program: if nmap { "nmap".into() } else { String::new() },
            privileged: None,
            // The nmap engine's own default (APP_SCAN_TIMEOUT_DEFAULT).
            timeout_s: if nmap { 7200 } else { 3600 },
            kill_grace_s: 5,
        }
    }
}

/// A `tcp` engine's defaults, unnamed.
impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::defaults(ScannerKind::default())
    }
}

/// An engine entry as a file writes it: the keys it gives. The defaults of the others depend
/// on its scanner, so they are filled in once the whole entry is read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineEntry {
    name: Option<String>,
    scanner: Option<ScannerKind>,
    version: Option<String>,
    description: Option<String>,
    allowed_asset_types: Option<Vec<String>>,
    max_scans: Option<usize>,
    options: Option<toml::Table>,
    concurrency: Option<usize>,
    connect_timeout_ms: Option<u64>,
    max_hosts: Option<usize>,
    request_timeout_ms: Option<u64>,
    command: Option<Vec<String>>,
    program: Option<String>,
    privileged: Option<bool>,
    timeout_s: Option<u64>,
    kill_grace_s: Option<u64>,
}

impl From<EngineEntry> for EngineConfig {
    fn from(entry: EngineEntry) -> EngineConfig {
        let d = EngineConfig::defaults(entry.scanner.unwrap_or_default());
        EngineConfig {
            name: entry.name.unwrap_or(d.name),
            scanner: d.scanner,
            version: entry.version.unwrap_or(d.version),
            description: entry.description.unwrap_or(d.description),
            allowed_asset_types: entry.allowed_asset_types.unwrap_or(d.allowed_asset_types),
            max_scans: entry.max_scans.unwrap_or(d.max_scans),
            options: entry.options.unwrap_or(d.options),
            concurrency: entry.concurrency.unwrap_or(d.concurrency),
            connect_timeout_ms: entry.connect_timeout_ms.unwrap_or(d.connect_timeout_ms),
            max_hosts: entry.max_hosts.unwrap_or(d.max_hosts),
            request_timeout_ms: entry.request_timeout_ms.unwrap_or(d.request_timeout_ms),
            command: entry.command.unwrap_or(d.command),
            program: entry.program.unwrap_or(d.program),
            privileged: entry.privileged.or(d.privileged),
            timeout_s: entry.timeout_s.unwrap_or(d.timeout_s),
            kill_grace_s: entry.kill_grace_s.unwrap_or(d.kill_grace_s),
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
    /// What a restart of annals does to a step that is still running: `reattach` (follow it
    /// on, from where its output was recorded) or `kill` (stop it, and fail the execution as
    /// interrupted).
    pub on_restart: OnRestart,
    /// The workflows, as a workflow developer declares them.
    pub workflows: Vec<WorkflowSpec>,
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
            on_restart: OnRestart::Reattach,
            workflows: Vec::new(),
        }
    }
}

/// What a restart of annals does to the work a previous process left running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRestart {
    /// The work runs on, and annals follows it again.
    Reattach,
    /// The work is stopped and recorded as interrupted.
    Kill,
}

/// One workflow as the configuration declares it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowSpec {
    pub application_id: String,
    pub environment_id: String,
    pub environment_name: String,
    /// The workflow's name; its id is `application_id@environment_id@name`.
    pub name: String,
    pub description: String,
    /// The accounts that may trigger it; empty: every account.
    pub users: Vec<String>,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<OutputSpec>,
    pub steps: Vec<StepSpec>,
}

/// A declared input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSpec {
    /// Letters, digits and `_`; the step sees it as `INPUT_<NAME>` (upper-cased).
    pub name: String,
    pub required: bool,
    /// The value when the trigger gives none; unset: no value (the variable is not set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    pub description: String,
    pub kind: InputKind,
}

/// What an input holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Any text.
    #[default]
    String,
    /// The id of a key made by `POST /ssh_keys`: the step gets the path of a 0600 file holding
    /// the private key, removed when the step ends.
    SshKey,
}

/// A declared output: a step publishes it by writing `NAME=VALUE` to `$ANNALS_OUTPUTS`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSpec {
    pub name: String,
    pub description: String,
}

/// One step: a program and its arguments, never through a shell unless the author writes one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepSpec {
    pub name: String,
    /// The program, then its arguments.
    pub command: Vec<String>,
    /// The working directory; empty: a scratch directory of the step's own.
    pub dir: String,
    /// Variables added to the step's minimal environment.
    pub env: std::collections::BTreeMap<String, String>,
    /// Seconds the step may run before it is stopped and the execution fails; 0: no limit.
    pub timeout_s: u64,
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
    /// its status code. Upstream's daemon looks after 100 ms, and agent-config gives up after
    /// 1 s, so the default stays well under that.
    pub scrape_start_check_ms: u64,
    /// Seconds between SIGTERM and SIGKILL when a command is stopped.
    pub kill_grace_s: u64,
    /// The most scrapes started through the main listener's `/agents/{project}/{agent}/scrape`
    /// that run at once (each is a process of this host); more are answered 503.
    pub max_agent_scrapes: usize,
    /// What a restart of annals does to an import or a scrape that is still running:
    /// `reattach` (follow it on, from where its output was recorded) or `kill` (stop it, and
    /// record it as interrupted).
    pub on_restart: OnRestart,
    /// The scraper agent daemon of the local agent.
    pub agent: GrosAgentSection,
    /// The SSH listener that takes the agents' uploads.
    pub ssh: GrosSshSection,
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
            scrape_start_check_ms: 100,
            kill_grace_s: 5,
            max_agent_scrapes: 4,
            on_restart: OnRestart::Reattach,
            agent: GrosAgentSection::default(),
            ssh: GrosSshSection::default(),
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
    /// When not empty, this listener's `/scrape` refuses other `Host` headers with 403 (the
    /// main listener's `/agents/…/scrape` does not check it).
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

/// The GROS controller's SSH listener: agents upload their exports there (scp and sftp,
/// with the key they registered), as to upstream's controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrosSshSection {
    /// Its address; empty (the default): no SSH listener. [`GROS_SSH_PORT`] is the port the
    /// documentation uses.
    pub listen: String,
    /// The largest file an agent may upload, in MiB.
    pub max_file_mb: u64,
    /// The most files one export may hold: uploads since the last export announcement.
    pub max_files_per_export: usize,
    /// The most SSH sessions (connections) one agent may have at once.
    pub max_sessions_per_agent: usize,
    /// Seconds a connection may stay silent before it is closed.
    pub idle_timeout_s: u64,
}

/// The port of the GROS SSH listener in the documentation and examples (agents reach it as
/// their `ssh` host, on port 22 unless their SSH configuration says otherwise).
pub const GROS_SSH_PORT: u16 = 2222;

impl Default for GrosSshSection {
    fn default() -> Self {
        GrosSshSection {
            listen: String::new(),
            max_file_mb: 256,
            max_files_per_export: 1000,
            max_sessions_per_agent: 4,
            idle_timeout_s: 300,
        }
    }
}

impl GrosSshSection {
    /// The listener's address, when the face runs and it has one.
    pub fn listening(&self, gros_enabled: bool) -> Option<&str> {
        listening(gros_enabled, &self.listen)
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
    pub usernames: Vec<UsernamePattern>,
    /// The contents of its agents' environment file, shown by the preflight check.
    pub environment: String,
    /// Seconds between gathers: an agent that exported less long ago is told to wait.
    pub gather_interval_s: u64,
    /// The import command's argv, run (without a shell) after each export; empty for none.
    pub import_command: Vec<String>,
    /// The scrape command's argv of its agents, run by `…/scrape`; empty for none.
    pub scrape_command: Vec<String>,
}

/// A username pattern handed to registering agents, as the project declares it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsernamePattern {
    pub prefix: String,
    pub pattern: String,
    pub replace: String,
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
    /// The threads entity actors run on, each entity on the one its id hashes to; 0: one per
    /// core.
    pub threads: usize,
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
            backend: LogBackend::Sled,
            cache_mb: log.cache_bytes / (1024 * 1024),
            max_event_kb: log.max_event_bytes as u64 / 1024,
            postgres_url: String::new(),
            postgres_pool: 8,
            postgres_lease_s: 10,
            postgres_ca_cert: None,
        }
    }
}

/// Seconds an event stream goes quiet before a keep-alive comment, when not configured.
pub const DEFAULT_SSE_KEEP_ALIVE_S: u64 = 15;
/// Seconds a request body may go with no byte arriving, when not configured.
pub const DEFAULT_BODY_TIMEOUT_S: u64 = 30;

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:8080".into(),
            sse_keep_alive_s: DEFAULT_SSE_KEEP_ALIVE_S,
            body_timeout_s: DEFAULT_BODY_TIMEOUT_S,
            request_log: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// The entity runtime's defaults: `actors::Settings::default` is made from them.
impl Default for ActorsSection {
    fn default() -> Self {
        ActorsSection {
            idle_timeout_s: 600,
            max_resident: 10_000,
            snapshot_every: 1_000,
            replay_budget_ms: 20,
            threads: 0,
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
    config.log.postgres_ca_cert = Some(PathBuf::new());
    toml::Table::try_from(config).expect("the schema serializes")
}

impl Config {
    /// The log's options; a PostgreSQL password comes from `PGPASSWORD`, as for PostgreSQL's
    /// own tools, so that no file needs to hold it.
    pub fn log_options(&self) -> LogOptions {
        let backend = match self.log.backend {
            LogBackend::Sled => Backend::Sled,
            LogBackend::Postgres => Backend::Postgres(PostgresOptions {
                url: self.log.postgres_url.clone(),
                password: std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
                pool_size: self.log.postgres_pool as usize,
                lease: std::time::Duration::from_secs(self.log.postgres_lease_s),
                ca_cert: self.log.postgres_ca_cert.clone(),
            }),
        };
        LogOptions {
            backend,
            durability: self.durability,
            max_event_bytes: (self.log.max_event_kb * 1024) as usize,
            cache_bytes: self.log.cache_mb * 1024 * 1024,
            ..LogOptions::default()
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
            let from_file = check_file(&text).map_err(|problems| ConfigError::Invalid {
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

/// Checks a configuration file's text as a file: its syntax, every key against the known
/// ones, every value's type and the settings start-up refuses (see [`Config::problems`]).
/// Returns the file's table, or every problem found as `line N: …`. The faces' declarations
/// are parsed, and checked, outside this module (`crate::declarations::check`).
pub fn check_file(text: &str) -> Result<toml::Table, Vec<String>> {
    let review = read(text).review();
    if review.problems.is_empty() {
        Ok(toml::from_str(text).expect("a checked configuration parses"))
    } else {
        Err(review.problems)
    }
}

/// What a check of a configuration file found, each as `line N: …`, in the order of the lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// What makes the file invalid: `annals serve` would refuse to start with it.
    pub problems: Vec<String>,
    /// What start-up only warns about: programs that declarations name and that are not found.
    pub warnings: Vec<String>,
}

/// A configuration file read in one pass, every problem with its line. A syntax error stops
/// the reading (nothing after it can be read reliably); otherwise each key or value that is
/// refused is blanked out (its bytes made spaces, so that every line keeps its number) and the
/// rest is read again, so that one bad value does not hide the next. What the file gives is
/// then [`Reading::config`], on which the settings are checked and the declarations can be,
/// each problem filed back at the line of its [`Place`].
pub struct Reading<'a> {
    text: &'a str,
    document: Option<toml_edit::ImDocument<&'a str>>,
    /// The pieces of text that were refused and blanked out.
    blanked: Vec<Range<usize>>,
    config: Option<Config>,
    problems: Vec<(usize, String)>,
    warnings: Vec<(usize, String)>,
}

/// Reads a configuration file's text: see [`Reading`].
pub fn read(text: &str) -> Reading<'_> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let document = match toml_edit::ImDocument::parse(text) {
        Ok(document) => document,
        Err(e) => {
            let line = e.span().map_or(1, |span| line_of(span.start));
            return Reading {
                text,
                document: None,
                blanked: Vec::new(),
                config: None,
                problems: vec![(line, format!("line {line}: {}", e.message()))],
                warnings: Vec::new(),
            };
        }
    };
    let mut problems: Vec<(usize, String)> = Vec::new();
    let mut blanked: Vec<Range<usize>> = Vec::new();
    unknown_keys(
        document.as_table(),
        None,
        &schema(),
        "",
        text,
        &mut problems,
        &mut blanked,
    );
    let mut readable = text.as_bytes().to_vec();
    for range in &blanked {
        blank(&mut readable, range.clone());
    }
    let config = loop {
        // Blanking keeps the text UTF-8 and TOML; should it ever not, the check stops here
        // rather than report a problem of its own making.
        let Some(left) = std::str::from_utf8(&readable)
            .ok()
            .filter(|left| toml_edit::ImDocument::parse(*left).is_ok())
        else {
            break None;
        };
        let error = match toml::from_str::<Config>(left) {
            Ok(config) => break Some(config),
            Err(error) => error,
        };
        let line = error.span().map_or(1, |span| line_of(span.start));
        problems.push((line, format!("line {line}: {}", error.message())));
        let pieces = error
            .span()
            .and_then(|span| refused_item(document.as_table(), None, text, span.start))
            .unwrap_or_default();
        let before = readable.clone();
        for piece in &pieces {
            blank(&mut readable, piece.clone());
        }
        // Nothing left to blank: what is wrong is not one item.
        if readable == before {
            break None;
        }
        blanked.extend(pieces);
    };
    let mut reading = Reading {
        text,
        document: Some(document),
        blanked,
        config: None,
        problems,
        warnings: Vec::new(),
    };
    if let Some(config) = config {
        for (place, problem) in config.problems() {
            reading.problem(place, &problem);
        }
        reading.config = Some(config);
    }
    reading
}

impl Reading<'_> {
    /// What the file gives, read past the values refused; none when it cannot be read.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// Files a problem about a declaration at its line, unless a value of the declaration was
    /// refused: what it says about the default that stood in for that value would mislead.
    pub fn problem(&mut self, place: Place, problem: &str) {
        let (line, spoiled) = self.locate(place);
        if !spoiled {
            self.problems
                .push((line, format!("line {line}: {place}: {problem}")));
        }
    }

    /// Files a warning about a declaration at its line.
    pub fn warning(&mut self, place: Place, warning: &str) {
        let (line, _) = self.locate(place);
        self.warnings
            .push((line, format!("line {line}: warning: {place}: {warning}")));
    }

    /// The line of `place`, and whether a piece of it was refused.
    fn locate(&self, place: Place) -> (usize, bool) {
        let text = self.text;
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let extent = self
            .document
            .as_ref()
            .and_then(|document| place.find(document))
            .as_ref()
            .and_then(extent);
        let spoiled = extent.as_ref().is_some_and(|extent| {
            self.blanked
                .iter()
                .any(|b| b.start < extent.end && extent.start < b.end)
        });
        (extent.map_or(1, |extent| line_of(extent.start)), spoiled)
    }

    /// Everything found, in the order of the lines.
    pub fn review(self) -> Review {
        let in_order = |mut found: Vec<(usize, String)>| {
            found.sort_by_key(|(line, _)| *line);
            found.into_iter().map(|(_, text)| text).collect()
        };
        Review {
            problems: in_order(self.problems),
            warnings: in_order(self.warnings),
        }
    }
}

/// Makes `range` of `text` spaces, keeping its line breaks.
fn blank(text: &mut [u8], range: Range<usize>) {
    let end = range.end.min(text.len());
    for byte in &mut text[range.start.min(end)..end] {
        if *byte != b'\n' {
            *byte = b' ';
        }
    }
}

/// The header line of the table whose span starts at `start`.
fn header(text: &str, start: usize) -> Range<usize> {
    let end = text[start..].find('\n').map_or(text.len(), |n| start + n);
    start..end
}

/// The byte ranges that hold `item` (whose key starts at `key_start`): a value with its key,
/// a table's header and everything in it. A dotted table has no header: its keys start at its
/// own key.
fn pieces(
    item: &toml_edit::Item,
    key_start: Option<usize>,
    text: &str,
    out: &mut Vec<Range<usize>>,
) {
    match item {
        toml_edit::Item::Value(value) => {
            if let (Some(start), Some(span)) = (key_start, value.span()) {
                out.push(start..span.end);
            }
        }
        toml_edit::Item::Table(table) => table_pieces(table, key_start, text, out),
        toml_edit::Item::ArrayOfTables(array) => {
            for table in array.iter() {
                table_pieces(table, None, text, out);
            }
        }
        toml_edit::Item::None => {}
    }
}

fn table_pieces(
    table: &toml_edit::Table,
    dotted_start: Option<usize>,
    text: &str,
    out: &mut Vec<Range<usize>>,
) {
    if !table.is_dotted() {
        if let Some(span) = table.span() {
            out.push(header(text, span.start));
        }
    }
    for (key, child) in table.iter() {
        pieces(child, key_start(table, key, dotted_start), text, out);
    }
}

/// Where the key of `table`'s item `key` starts in the text: at the first part of a dotted key
/// (`http.listen = …`), since blanking only its last part would leave `http.` behind.
/// `dotted_start` is where the dotted key that holds `table` starts, if it is one.
fn key_start(table: &toml_edit::Table, key: &str, dotted_start: Option<usize>) -> Option<usize> {
    if table.is_dotted() {
        dotted_start
    } else {
        table.key(key).and_then(|k| k.span()).map(|span| span.start)
    }
}

/// The pieces of the innermost key and value (or table header) of `table` that holds the byte
/// at `at`, where a value was refused. An entry of an array of tables keeps its header, so that
/// the entries after it keep their places.
fn refused_item(
    table: &toml_edit::Table,
    dotted_start: Option<usize>,
    text: &str,
    at: usize,
) -> Option<Vec<Range<usize>>> {
    for (key, item) in table.iter() {
        let key_start = key_start(table, key, dotted_start);
        let found = match item {
            toml_edit::Item::Table(inner) => {
                refused_item(inner, key_start, text, at).or_else(|| {
                    let span = inner.span()?;
                    header(text, span.start).contains(&at).then(|| {
                        let mut out = Vec::new();
                        table_pieces(inner, key_start, text, &mut out);
                        out
                    })
                })
            }
            toml_edit::Item::ArrayOfTables(array) => array
                .iter()
                .find_map(|entry| refused_item(entry, None, text, at)),
            toml_edit::Item::Value(value) => {
                let (start, span) = (key_start?, value.span()?);
                (start..span.end.max(start + 1))
                    .contains(&at)
                    .then(|| std::iter::once(start..span.end).collect())
            }
            toml_edit::Item::None => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Where everything of `item` lies, from its first byte to its last.
fn extent(item: &toml_edit::Item) -> Option<Range<usize>> {
    let mut out = Vec::new();
    collect_spans(item, &mut out);
    let start = out.iter().map(|r| r.start).min()?;
    let end = out.iter().map(|r| r.end).max()?;
    Some(start..end)
}

fn collect_spans(item: &toml_edit::Item, out: &mut Vec<Range<usize>>) {
    let table = |table: &toml_edit::Table, out: &mut Vec<Range<usize>>| {
        out.extend(table.span());
        for (key, child) in table.iter() {
            out.extend(table.key(key).and_then(|k| k.span()));
            collect_spans(child, out);
        }
    };
    match item {
        toml_edit::Item::Value(value) => out.extend(value.span()),
        toml_edit::Item::Table(inner) => table(inner, out),
        toml_edit::Item::ArrayOfTables(array) => {
            for entry in array.iter() {
                table(entry, out);
            }
        }
        toml_edit::Item::None => {}
    }
}

/// A declaration that a problem or a warning is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// An entry of an array of tables, such as the second `[[patrowl.engines]]`.
    Entry { array: &'static str, index: usize },
    /// A section as a whole, such as `[gros]`.
    Section(&'static str),
    /// One key of a section, such as `[http] listen`: shown as its section, found at its line.
    Key {
        section: &'static str,
        key: &'static str,
    },
}

impl Place {
    /// Its item in a document, found by its dotted path.
    fn find(&self, document: &toml_edit::ImDocument<&str>) -> Option<toml_edit::Item> {
        let (path, key, index) = match self {
            Place::Entry { array, index } => (*array, None, Some(*index)),
            Place::Section(name) => (*name, None, None),
            Place::Key { section, key } => (*section, Some(*key), None),
        };
        let mut item = document.as_item();
        for segment in path.split('.').chain(key) {
            item = item.get(segment)?;
        }
        match (index, item) {
            (None, item) => Some(item.clone()),
            (Some(index), toml_edit::Item::ArrayOfTables(array)) => {
                array.get(index).cloned().map(toml_edit::Item::Table)
            }
            (Some(index), toml_edit::Item::Value(toml_edit::Value::Array(array))) => {
                array.get(index).cloned().map(toml_edit::Item::Value)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Entry { array, .. } => write!(f, "[[{array}]]"),
            Place::Section(name) | Place::Key { section: name, .. } => write!(f, "[{name}]"),
        }
    }
}

impl Config {
    /// What is wrong with the settings outside the declarations: the log's sizes, the
    /// listeners' addresses, the HTTP timeouts, the TLS pairs and the accounts, as start-up
    /// would refuse them.
    pub fn problems(&self) -> Vec<(Place, String)> {
        let mut problems = Vec::new();
        if self.log.backend == LogBackend::Postgres && self.log.postgres_url.trim().is_empty() {
            problems.push((
                Place::Key {
                    section: "log",
                    key: "postgres_url",
                },
                "backend \"postgres\" needs postgres_url (such as \
                 postgres://annals@127.0.0.1:5432/annals)"
                    .to_owned(),
            ));
        }
        let listeners = [
            ("http", &self.http.listen, false),
            ("partisci", &self.partisci.listen, true),
            ("patrowl", &self.patrowl.listen, true),
            ("hpcwaas", &self.hpcwaas.listen, true),
            ("gros.agent", &self.gros.agent.listen, true),
            ("gros.ssh", &self.gros.ssh.listen, true),
        ];
        for (section, listen, may_be_empty) in listeners {
            if !(may_be_empty && listen.is_empty() || is_host_and_port(listen)) {
                problems.push((
                    Place::Key {
                        section,
                        key: "listen",
                    },
                    format!(
                        "listen {listen:?} is not an address and port (such as 127.0.0.1:8080)"
                    ),
                ));
            }
        }
        // The log's sizes: no room for a page, or for any event, and sled refuses the one,
        // every append the other. Then the HTTP timeouts, in seconds.
        for (section, key, value, unit) in [
            ("log", "cache_mb", self.log.cache_mb, ""),
            ("log", "max_event_kb", self.log.max_event_kb, ""),
            ("log", "postgres_pool", self.log.postgres_pool, ""),
            (
                "log",
                "postgres_lease_s",
                self.log.postgres_lease_s,
                " (second)",
            ),
            (
                "http",
                "sse_keep_alive_s",
                self.http.sse_keep_alive_s,
                " (second)",
            ),
            (
                "http",
                "body_timeout_s",
                self.http.body_timeout_s,
                " (second)",
            ),
            ("gros.ssh", "max_file_mb", self.gros.ssh.max_file_mb, ""),
            (
                "gros.ssh",
                "max_files_per_export",
                self.gros.ssh.max_files_per_export as u64,
                "",
            ),
            (
                "gros.ssh",
                "max_sessions_per_agent",
                self.gros.ssh.max_sessions_per_agent as u64,
                "",
            ),
            (
                "gros.ssh",
                "idle_timeout_s",
                self.gros.ssh.idle_timeout_s,
                " (second)",
            ),
        ] {
            if value == 0 {
                problems.push((
                    Place::Key { section, key },
                    format!("{key} must be at least 1{unit}"),
                ));
            }
        }
        for (section, cert, key) in [
            ("http", &self.http.tls_cert, &self.http.tls_key),
            ("partisci", &self.partisci.tls_cert, &self.partisci.tls_key),
            ("hpcwaas", &self.hpcwaas.tls_cert, &self.hpcwaas.tls_key),
        ] {
            if cert.is_some() != key.is_some() {
                let key = if cert.is_some() {
                    "tls_cert"
                } else {
                    "tls_key"
                };
                problems.push((
                    Place::Key { section, key },
                    "tls_cert and tls_key go together: give both or neither".to_owned(),
                ));
            }
        }
        // Each account alone, so that every one at fault is named at its own line.
        let mut names = std::collections::BTreeSet::new();
        for (index, account) in self.accounts.iter().enumerate() {
            let place = Place::Entry {
                array: "accounts",
                index,
            };
            if !names.insert(account.name.as_str()) {
                problems.push((
                    place,
                    format!("account {} is configured twice", account.name),
                ));
            } else if let Err(reason) = crate::auth::Auth::new(vec![account.clone()]) {
                problems.push((place, reason));
            }
        }
        problems
    }
}

/// Whether `listen` has the form a listener binds to, `host:port` as the standard library
/// splits it (the host a name or an address), without resolving a name: a check must not
/// depend on DNS.
fn is_host_and_port(listen: &str) -> bool {
    listen.parse::<std::net::SocketAddr>().is_ok()
        || listen
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Reports every key of `table` that `known` does not have, recursing into sections, with the
/// pieces of text that hold it.
fn unknown_keys(
    table: &toml_edit::Table,
    dotted_start: Option<usize>,
    known: &toml::Table,
    prefix: &str,
    text: &str,
    problems: &mut Vec<(usize, String)>,
    blanked: &mut Vec<Range<usize>>,
) {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    for (key, item) in table.iter() {
        let name = format!("{prefix}{key}");
        let key_start = key_start(table, key, dotted_start);
        match (known.get(key), item) {
            (None, _) => {
                let line = key_start.map_or(0, line_of);
                problems.push((line, format!("line {line}: unknown key `{name}`")));
                pieces(item, key_start, text, blanked);
            }
            (Some(toml::Value::Table(section)), toml_edit::Item::Table(inner)) => unknown_keys(
                inner,
                key_start,
                section,
                &format!("{name}."),
                text,
                problems,
                blanked,
            ),
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
