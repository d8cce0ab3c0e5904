//! The agent face's part of the OpenAPI document: the controller's and the agent daemon's
//! routes, their parameters and their bodies. The types here are the very ones the handlers
//! write. It only describes; `tests/api/openapi.rs` checks real answers against these schemas.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{Content, ContentBuilder, ObjectBuilder, RefOr, Required, Type};
use utoipa::{IntoParams, Modify, ToSchema};

use crate::domain::gros::service::{Check, Preflight};
use crate::http::openapi::{answers, query};

/// The face's routes and schemas.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::access,
        super::agent,
        super::encrypt,
        super::export,
        super::log,
        super::status,
        super::measurements,
        super::version,
        super::agent_status,
        super::agent_scrape,
        super::agents
    ),
    components(schemas(
        GrosRegistered,
        GrosSalts,
        GrosUsername,
        GrosEncrypted,
        GrosStatus,
        GrosCheck,
        GrosConfiguration,
        GrosVersion,
        GrosAgentOk,
        GrosAgentErrorBody,
        GrosAgentError,
        GrosAgents
    )),
    tags((name = "gros", description = TAG)),
    modifiers(&PostOnly)
)]
pub struct GrosApi;

/// The face's tag on every operation, the scripts that take POST only, and `log.py`'s form
/// body, which utoipa's attributes cannot say: a body that must hold at least one field.
struct PostOnly;

/// The scripts that take POST only.
const POST_ONLY: [&str; 3] = ["/auth/agent.py", "/auth/export.py", "/auth/log.py"];

impl Modify for PostOnly {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        for operation in crate::http::openapi::operations(document) {
            operation.tags = Some(vec!["gros".into()]);
        }
        // The count of agents takes GET only, and refuses another method in the agent
        // daemon's shape.
        if let Some(operation) = document
            .paths
            .paths
            .get_mut("/agents")
            .and_then(|item| item.get.as_mut())
        {
            operation.responses.responses.insert(
                "405".into(),
                ResponseBuilder::new()
                    .description("Another method than GET (or HEAD).")
                    .header("Allow", allow_header("`GET`, `HEAD`"))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                "GrosAgentErrorBody",
                            )))
                            .build(),
                    )
                    .build()
                    .into(),
            );
        }
        for path in POST_ONLY {
            let Some(operation) = document
                .paths
                .paths
                .get_mut(path)
                .and_then(|item| item.post.as_mut())
            else {
                continue;
            };
            operation.responses.responses.insert(
                "405".into(),
                ResponseBuilder::new()
                    .description("Another method than POST.")
                    .header("Allow", allow_header("`POST`"))
                    .content("text/plain", text())
                    .build()
                    .into(),
            );
            if path == "/auth/log.py" {
                operation.request_body = Some(
                    RequestBodyBuilder::new()
                        .description(Some(
                            "The record's fields, as Python's `logging.handlers.HTTPHandler` \
                             sends them: at least one (else 400).",
                        ))
                        .required(Some(Required::True))
                        .content("application/x-www-form-urlencoded", log_record())
                        .build(),
                );
            }
        }
    }
}

/// The `Allow` header of a 405, naming `methods`.
fn allow_header(methods: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(format!("The methods the path takes: {methods}.")))
        .build()
}

/// A refusal of the controller's scripts, whose body is its message as text.
fn refusal(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("text/plain", text())
        .build()
        .into()
}

answers! {
    /// A script's parameter missing, given twice or malformed.
    BadParameter { "400" => refusal("A parameter missing, given twice or malformed.") }

    /// A script naming a project that is not configured.
    NoProject { "404" => refusal("The project is not configured.") }

    /// A script's body over the face's limit.
    BodyTooLarge { "413" => refusal("The body is over `[gros] max_body_kb`.") }
}

fn text() -> Content {
    ContentBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

/// A logging record: its usual fields, and any other, each a string.
fn log_record() -> Content {
    let field = |description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(description))
    };
    ContentBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .property("name", field("The logger's name."))
                .property("levelname", field("The level, such as `WARNING`."))
                .property("msg", field("The message before formatting."))
                .property("message", field("The formatted message."))
                .property("created", field("When, in seconds since the epoch."))
                .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
                .min_properties(Some(1)),
        ))
        .example(Some(serde_json::json!({
            "name": "gatherer",
            "levelname": "WARNING",
            "msg": "Something happened",
            "created": "1763805600.0"
        })))
        .build()
}

pub const TAG: &str = "The agent face: the GROS data-gathering controller (`/auth/<name>.py`) \
and scraper agent daemon, as gros-gatherer and agent-config speak them. Projects are declared \
in `[[gros.projects]]`. The controller's parameters come from the query string merged with an \
`application/x-www-form-urlencoded` body (a parameter given twice is refused); its errors are \
`text/plain`, the message and a newline. A script that only reads (`access.py`, `encrypt.py`, \
`version.py`) answers any method, as upstream's CGI scripts do; `status.py` answers another \
method than GET and POST with 501, as upstream's does; `agent.py`, `export.py` and `log.py` \
answer another method than POST with 405 and an `Allow` header. \
No credentials: trust comes from TLS (`[http] tls_cert`) and each project's networks.";

pub const ACCESS: &str = "The projects whose `networks` hold the caller's address \
(`X-Forwarded-For` counts only from `[gros] trusted_proxies`), or `[\"*\"]` when the caller is \
in `[gros] access_all_networks`. Any method, as upstream's CGI script.";

pub const AGENT: &str = "Registers the agent, or records its new key. The agent is locked while \
it registers: a concurrent registration is answered 503. The project's salts are made on its \
first registration, kept encrypted in the secret store, and the same on every call.";

pub const ENCRYPT: &str = "The SHA-256 hex digest of salt, value and pepper: with the project's \
salts (`encryption` 1; 404 before its first agent registered), or without a project with the \
global salts (`encryption` 2, made on first use). Any method, as upstream's CGI script, with a \
form body's parameters merged in.";

pub const EXPORT: &str = "Records an export announcement on the agent that sent it (the `key` of \
its `agent` JSON, else `<name>` of a `user` `agent-<name>`, else the agent named after the \
project) and starts the project's `import_command`, without a shell, unless an import is \
already running for that agent; its output and exit go on the agent's stream.";

pub const LOG: &str = "Records a Python logging record (`name`, `levelname`, `msg`, `message`, \
`created`, … in the form body). A message matching a `[gros] log_ignore` pattern is answered \
204 and not recorded.";

pub const STATUS: &str = "The preflight checks of an agent, computed from its history and the \
configuration, and recorded: `database` (the event log is open), `tracker` (the agent's last \
export is at least `gather_interval_s` old; else `Next scheduled gather moment is in \
<H:MM:SS>`), `permissions` (the agent is registered), `lock` (no registration running), \
`importer` (no import running for the agent), `daemon` (always ok), `network` (the caller is in \
the project's networks), `configuration` (the environment file's contents, only when every \
other check is OK) and `total` (`Everything OK`, else `Some parts are not OK`).";

pub const MEASUREMENTS: &str = "Records BigBoat measurements: `status` is a JSON list of \
`{name, checked_time \"YYYY-MM-DD HH:MM:SS\", ok, value, max}`.";

pub const VERSION: &str = "Compares the gatherer's commit (`<version>-<branch>-<40 hex>`, or the \
commit alone) with `[gros] controller_version`; the version must be `[gros] gatherer_version`. \
Any method, as upstream's CGI script, with a form body's parameters merged in.";

pub const AGENTS: &str = "How many agents have streams, and how many of them each status has \
(`registering`, `unregistered`: a registration abandoned before any went through, `registered`: \
no preflight check since, `preflight_passed`, `preflight_failed`: the last check's verdict), from \
a read model of the agents' events, which has folded every event durable when the request came: \
the web console's overview. annals' own route, open as the agent daemon's routes are; it names \
no agent.";

pub const AGENT_STATUS: &str = "The scraper agent daemon's `/status` for a registered agent of a \
project with a `scrape_command`. Any method.";

pub const AGENT_SCRAPE: &str =
    "The scraper agent daemon's `/scrape` for a registered agent: starts \
the project's `scrape_command` as a child process whose output and exit go on the agent's \
stream. At most `[gros] max_agent_scrapes` started here run at once. A command that fails \
within `[gros] scrape_start_check_ms` is answered 503 with its status code.";

/// `project` (query or form).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectParam {
    /// The project key: upper-case letters only, at most 20.
    #[param(example = "PROJ", pattern = "^[A-Z]{1,20}$")]
    pub project: String,
}

/// `project`, optional.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptionalProjectParam {
    /// The project whose salts are used; without it, the global salts.
    #[param(example = "PROJ", pattern = "^[A-Z]{1,20}$")]
    pub project: Option<String>,
}

/// `agent`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentParam {
    /// The agent's name (1 to 64 letters, digits, `-` and `_`); the project key when not
    /// given.
    #[param(example = "PROJ", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub agent: Option<String>,
}

/// `project` and `agent`: the agent a script acts for.
pub struct ProjectAgentParams;

impl IntoParams for ProjectAgentParams {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut params = ProjectParam::into_params(&parameter_in);
        params.extend(AgentParam::into_params(parameter_in));
        params
    }
}

/// `public_key`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PublicKeyParam {
    /// The agent's SSH public key (usually in the form body); not blank.
    #[param(
        example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA agent@host",
        pattern = "\\S"
    )]
    pub public_key: String,
}

/// `value`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValueParam {
    /// The value to pseudonymise.
    #[param(example = "jdoe")]
    pub value: String,
}

/// The export's `agent`.
pub struct ExportAgentParam;

impl IntoParams for ExportAgentParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![query(
            "agent",
            false,
            "JSON: the agent's `user`, `key`, `hostname` and `version` (usually in the form \
             body). Without it, the export counts against the agent named after the project.",
            export_agent(),
        )]
    }
}

/// `files`.
pub struct FilesParam;

impl IntoParams for FilesParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![query(
            "files",
            false,
            "JSON: the exported files; `[]` when not given.",
            any_json(),
        )]
    }
}

/// `status`.
pub struct StatusParam;

impl IntoParams for StatusParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![query(
            "status",
            true,
            "JSON list of measurements (usually in the form body).",
            measurements(),
        )]
    }
}

/// `source`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourceParam {
    /// Where the measurements come from.
    #[param(example = "bigboat")]
    pub source: Option<String>,
}

/// `version`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionParam {
    /// `<gatherer version>-<branch>-<40 hex commit>`, or the commit alone; the gatherer
    /// version must be `[gros] gatherer_version`.
    #[param(
        example = "0.0.3-master-0123456789abcdef0123456789abcdef01234567",
        pattern = "^([^-]*-(.*-)?)?[0-9a-f]{40}$"
    )]
    pub version: String,
}

/// The export's `agent`: any JSON (anything but an object counts as none), whose `key` (else
/// a `user` `agent-<name>`) names the agent.
fn export_agent() -> ObjectBuilder {
    let text =
        || ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .property(
            "key",
            text()
                .pattern(Some("^[A-Za-z0-9_-]{0,64}$"))
                .description(Some("The agent's name; empty or `-` for none.")),
        )
        .property(
            "user",
            text().description(Some("`agent-<name>` names the agent when `key` does not.")),
        )
        .property("hostname", text())
        .property("version", text())
        .extensions(Some(crate::http::openapi::json_parameter()))
        .examples([serde_json::json!({
            "user": "agent", "key": "PROJ", "hostname": "h", "version": "0.0.3"
        })])
}

/// Any JSON.
fn any_json() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .extensions(Some(crate::http::openapi::json_parameter()))
        .examples([serde_json::json!(["data.json"])])
}

/// BigBoat's measurements, as `parse_measurements` reads them.
fn measurements() -> utoipa::openapi::schema::Array {
    let number =
        || ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Number, Type::Null]));
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .property("name", ObjectBuilder::new().schema_type(Type::String))
                .property(
                    "checked_time",
                    ObjectBuilder::new().schema_type(Type::String).pattern(Some(
                        "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]) \
                         ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
                    )),
                )
                .property("ok", ObjectBuilder::new().schema_type(Type::Boolean))
                .property("value", number())
                .property("max", number())
                .required("name")
                .required("checked_time")
                .required("ok")
                .additional_properties(Some(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                )),
        )
        .max_items(Some(crate::domain::gros::values::MAX_MEASUREMENTS))
        .extensions(Some(crate::http::openapi::json_parameter()))
        .examples([serde_json::json!([{
            "name": "cpu", "checked_time": "2026-11-22 10:00:00", "ok": true, "value": 1, "max": 4
        }])])
        .build()
}

/// `{project}` and `{agent}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AgentPath {
    /// The project key.
    #[param(example = "PROJ", pattern = "^[A-Z]{1,20}$")]
    pub project: String,
    /// The agent's name.
    #[param(example = "PROJ", pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub agent: String,
}

/// `agent.py`'s answer.
#[derive(Serialize, ToSchema)]
pub struct GrosRegistered {
    pub salts: GrosSalts,
    pub usernames: Vec<GrosUsername>,
}

/// A project's salts.
#[derive(Serialize, ToSchema)]
pub struct GrosSalts {
    pub salt: String,
    pub pepper: String,
}

/// A username pattern.
#[derive(Serialize, ToSchema)]
pub struct GrosUsername {
    pub prefix: String,
    pub pattern: String,
    pub replace: String,
}

/// `encrypt.py`'s answer.
#[derive(Serialize, ToSchema)]
pub struct GrosEncrypted {
    /// 64 hex digits.
    pub value: String,
    /// 1: the project's salts; 2: the global ones.
    pub encryption: u8,
}

/// One preflight check.
#[derive(Serialize, ToSchema)]
pub struct GrosCheck {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<Check> for GrosCheck {
    fn from(check: Check) -> Self {
        GrosCheck {
            ok: check.ok,
            message: check.message,
        }
    }
}

/// The configuration check, with the environment file.
#[derive(Serialize, ToSchema)]
pub struct GrosConfiguration {
    pub ok: bool,
    pub message: String,
    /// The agent's environment file; only when every other check is OK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
}

/// `status.py`'s preflight answer.
#[derive(Serialize, ToSchema)]
pub struct GrosStatus {
    pub database: GrosCheck,
    pub tracker: GrosCheck,
    pub permissions: GrosCheck,
    pub lock: GrosCheck,
    pub importer: GrosCheck,
    pub daemon: GrosCheck,
    pub network: GrosCheck,
    pub configuration: GrosConfiguration,
    pub total: GrosCheck,
}

impl From<Preflight> for GrosStatus {
    fn from(p: Preflight) -> Self {
        GrosStatus {
            database: p.database.into(),
            tracker: p.tracker.into(),
            permissions: p.permissions.into(),
            lock: p.lock.into(),
            importer: p.importer.into(),
            daemon: p.daemon.into(),
            network: p.network.into(),
            configuration: GrosConfiguration {
                ok: p.configuration.ok,
                message: p.configuration.message,
                contents: p.configuration.contents,
            },
            total: p.total.into(),
        }
    }
}

/// `version.py`'s answer.
#[derive(Serialize, ToSchema)]
pub struct GrosVersion {
    pub up_to_date: bool,
    /// The controller's commit.
    pub version: String,
}

/// `GET /agents`.
#[derive(Serialize, ToSchema)]
pub struct GrosAgents {
    /// How many agents have events.
    pub agents: u64,
    /// How many agents each status has; a status none has is left out.
    #[schema(example = json!({"preflight_passed": 2, "registering": 1}))]
    pub by_status: BTreeMap<&'static str, u64>,
}

/// The agent daemon's answers that are not errors.
#[derive(Serialize, ToSchema)]
pub struct GrosAgentOk {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The agent daemon's error body.
#[derive(Serialize, ToSchema)]
pub struct GrosAgentErrorBody {
    /// Always false.
    pub ok: bool,
    pub error: GrosAgentError,
    /// The components and their versions.
    pub version: BTreeMap<String, String>,
}

#[derive(Serialize, ToSchema)]
pub struct GrosAgentError {
    /// `<code> <reason phrase>`.
    pub status: String,
    pub message: String,
    /// Always null: tracebacks are never sent.
    pub traceback: Option<String>,
}
