//! The workflow face's part of the OpenAPI document: its routes' parameters, answers and body
//! schemas for the `#[utoipa::path]` attributes on the handlers in `mod.rs`, and the face's
//! security. It only describes; `tests/api/openapi.rs` checks real answers against these schemas.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::{ObjectBuilder, OpenApi, Type};
use utoipa::{IntoParams, Modify, ToSchema};

use crate::domain::sshkey::KeyType;
use crate::domain::workflow::{InputKind, Level, Status};
use crate::http::openapi::{
    any_case, go_duration, path_operations, query, unsigned, CommonAnswers, NOT_ALLOWED,
};

/// The face's routes, their schemas, and who may use them.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::list_workflows,
        super::describe_workflow,
        super::trigger_workflow,
        super::list_executions,
        super::get_execution,
        super::cancel_execution,
        super::execution_logs,
        super::execution_events,
        super::create_key,
        super::get_key,
        super::delete_key
    ),
    components(schemas(
        HpcwaasWorkflows,
        HpcwaasWorkflow,
        HpcwaasWorkflowDetail,
        HpcwaasInput,
        HpcwaasInputKind,
        HpcwaasOutput,
        HpcwaasTrigger,
        HpcwaasExecutions,
        HpcwaasExecutionRow,
        HpcwaasExecution,
        HpcwaasStatus,
        HpcwaasLogs,
        HpcwaasLogEntry,
        HpcwaasLevel,
        HpcwaasKeyRequest,
        HpcwaasKeyCreated,
        HpcwaasKey,
        HpcwaasKeyType,
        HpcwaasErrorBody,
        HpcwaasError
    )),
    tags((name = "hpcwaas", description = TAG)),
    modifiers(&FaceWide)
)]
pub struct HpcwaasApi;

pub const TAG: &str = "The workflow face: the eFlows4HPC HPC Workflows as a Service API as the \
`waas` client speaks it. Workflows are declared in the configuration (`[[hpcwaas.workflows]]`), \
each with its inputs, outputs and steps; a trigger starts an execution whose steps run on this \
host as child processes, and whose every log line is recorded as it arrives. SSH keys are made \
here; their private halves are kept encrypted and handed only to the steps of their owner's \
executions.\n\n\
Served on the main listener and on `[hpcwaas] listen` (the `waas` client's default port, \
9090). Every error body is `{\"errors\":[{\"id\",\"status\",\"title\",\"detail\"}]}`; a method \
a path does not take answers 405 in that body. Once accounts exist every route asks for them \
(HTTP Basic, as the client sends, or a bearer token), as `[hpcwaas] auth` says.";

pub const LIST_WORKFLOWS: &str = "Every workflow declared in the configuration that the \
caller may trigger (its `users`, when set, name the caller's account). Its id is \
`<application_id>@<environment_id>@<name>`. An empty list is `[]` (upstream sends `null`).";

pub const DESCRIBE_WORKFLOW: &str = "A workflow with its description, declared inputs (name, \
whether required, default, description, kind: `string` or `ssh_key`) and outputs.";

pub const TRIGGER: &str = "Starts an execution of the workflow with `{\"inputs\":{…}}`: every \
declared input not given takes its default; an undeclared input, or a required one missing, is \
refused with their names. A JSON string is taken as it is, another value as its JSON text. \
Inputs reach the steps only as environment variables `INPUT_<NAME>`, never on a command line. \
An `ssh_key` input takes the id of a key the caller made; the step gets the path of a 0600 file \
holding the private key, removed when the step ends. Refused with 403 to an account the \
workflow's `users` do not name. The answer's `Location` ends with the execution's id.";

pub const LIST_EXECUTIONS: &str = "Executions, newest first, optionally of one workflow and in \
one status; `from` rows are skipped and at most `size` (1 to 1000, 50 by default) are given. \
`total_results` counts every execution the filter matches. Not in the upstream API.";

pub const GET_EXECUTION: &str = "An execution's status (`RUNNING`, `SUCCESS`, `FAILED`, \
`CANCELLING`, `CANCELLED`) and the outputs its steps published, with the workflow, why it \
failed or who cancelled it, and when it was requested and ended. Unknown ids are 404 (upstream \
answers 500).";

pub const CANCEL: &str = "Asks a running execution to stop: it is `CANCELLING` at once, the \
running step's process group gets SIGTERM, then SIGKILL after `[hpcwaas] kill_grace_s`, and \
the execution ends `CANCELLED`. Cancelling an execution that has ended changes nothing and is \
no error.";

pub const LOGS: &str = "The log lines of an execution matching `levels`, from the offset \
`from` into that filtered list, at most `size` of them. When none is at or after `from`, the \
request waits up to `timeout` for one (a long poll on the log's own commits), then answers what \
it has, possibly nothing; it waits also once the execution has ended, as upstream, since the \
`waas` client's follow loops ask again as soon as they are answered. `total_results` counts every line \
matching `levels`; `from` echoes the request. Standard output lines are INFO, standard error \
WARN; a line starting with `DEBUG:`, `INFO:`, `WARN:` or `ERROR:` has that level (the prefix is \
taken off).";

pub const EVENTS: &str = "Every event of the execution from its request on, then each new one \
as it is committed, as Server-Sent Events: the request, each step's start and end, every log \
line, the outputs, the cancellation and the end. Not in the upstream API.";

pub const CREATE_KEY: &str = "Makes an SSH key pair, RSA 2048 unless `type` is `ed25519`, and \
answers its id and public half (an OpenSSH `authorized_keys` line with its newline). The \
private half (PKCS#1 PEM for RSA, OpenSSH's format for Ed25519) is kept encrypted in the \
secret store and never shown. `metadata` is kept with the key; its `privateKey` and \
`publicKey` entries are ignored.";

pub const GET_KEY: &str = "A key's public half, fingerprint, type and metadata, for the account \
that made it. Not in the upstream API.";

pub const DELETE_KEY: &str = "Destroys a key's private half for good: executions can no longer \
use it and it can no longer be read; its history (who made it and who deleted it, when) stays \
in the log. Not in the upstream API.";

/// `{workflow_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkflowIdPath {
    /// `<application_id>@<environment_id>@<name>`.
    #[param(example = "demo@lab@hello")]
    pub workflow_id: String,
}

/// `{execution_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ExecutionIdPath {
    /// As the trigger's `Location` ends.
    #[param(example = "0192f3a4-5b6c-7d8e-9f00-aabbccddeeff")]
    pub execution_id: String,
}

/// `{key_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyIdPath {
    /// As `POST /ssh_keys` answered it.
    #[param(example = "0192f3a4-5b6c-7d8e-9f00-112233445566")]
    pub key_id: String,
}

/// `GET /executions`' parameters.
pub struct ListParams;

impl IntoParams for ListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query(
                "workflow",
                false,
                "Only this workflow's executions.",
                ObjectBuilder::new().schema_type(Type::String),
            ),
            query(
                "status",
                false,
                "Only executions in this status: `RUNNING`, `SUCCESS`, `FAILED`, `CANCELLING` \
                 or `CANCELLED`, in any case; empty is any status.",
                any_case(&["RUNNING", "SUCCESS", "FAILED", "CANCELLING", "CANCELLED"])
                    .examples(["RUNNING"]),
            ),
            query("from", false, "Rows skipped (0 by default).", unsigned()),
            query(
                "size",
                false,
                "The most rows, 1 to 1000 (50 by default).",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(1000)),
            ),
        ]
    }
}

/// `GET /executions/{id}/logs`' parameters.
pub struct LogsParams;

impl IntoParams for LogsParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query(
                "from",
                false,
                "An offset into the level-filtered list (0 by default).",
                unsigned(),
            ),
            query(
                "size",
                false,
                "The most lines; -1 (the default) or 0 for all.",
                unsigned().minimum(Some(-1)),
            ),
            query(
                "timeout",
                false,
                "How long to wait for a line, in Go's syntax (`300ms`, `1m30s`, `0`), at most \
                 5m; 1m by default. A number without a unit is refused.",
                go_duration().examples(["1m"]),
            ),
            query(
                "levels",
                false,
                "A bitmask: DEBUG=1, INFO=2, WARN=4, ERROR=8; 0 (the default) is \
                 INFO+WARN+ERROR, a mask with none of these bits every level.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(255)),
            ),
        ]
    }
}

/// `GET /workflows`.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasWorkflows {
    pub workflows: Vec<HpcwaasWorkflow>,
}

/// A workflow in the list.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasWorkflow {
    /// `<application_id>@<environment_id>@<name>`.
    pub id: String,
    pub name: String,
    pub application_id: String,
    pub environment_id: String,
    pub environment_name: String,
}

/// `GET /workflows/{id}`.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasWorkflowDetail {
    #[serde(flatten)]
    #[schema(inline)]
    pub workflow: HpcwaasWorkflow,
    pub description: String,
    pub inputs: Vec<HpcwaasInput>,
    pub outputs: Vec<HpcwaasOutput>,
}

/// A declared input.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasInput {
    pub name: String,
    pub required: bool,
    /// Its value when the trigger gives none; `null`: none.
    pub default: Option<String>,
    pub description: String,
    #[schema(value_type = HpcwaasInputKind)]
    pub kind: InputKind,
}

/// What an input holds: any text, or the id of an SSH key.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HpcwaasInputKind {
    String,
    SshKey,
}

/// A declared output.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasOutput {
    pub name: String,
    pub description: String,
}

/// A trigger's body.
#[derive(ToSchema)]
#[schema(example = json!({"inputs": {"who": "world"}}))]
pub struct HpcwaasTrigger {
    /// Input names to values; `null` or absent: none.
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<BTreeMap<String, serde_json::Value>>,
}

/// `GET /executions`.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasExecutions {
    pub executions: Vec<HpcwaasExecutionRow>,
    pub total_results: usize,
    pub from: usize,
}

/// An execution in the list.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasExecutionRow {
    pub id: String,
    pub workflow: String,
    #[schema(value_type = HpcwaasStatus)]
    pub status: Status,
    /// The account that triggered it; `null` when accounts were off.
    pub user: Option<String>,
    pub requested_at: String,
    pub ended_at: Option<String>,
}

/// `GET /executions/{id}`.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasExecution {
    pub id: String,
    #[schema(value_type = HpcwaasStatus)]
    pub status: Status,
    /// What the steps published.
    pub outputs: BTreeMap<String, String>,
    pub workflow: String,
    /// Why it failed, or who cancelled it.
    pub reason: Option<String>,
    pub requested_at: String,
    pub ended_at: Option<String>,
}

/// An execution's status.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HpcwaasStatus {
    Running,
    Success,
    Failed,
    Cancelling,
    Cancelled,
}

/// A page of an execution's log.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasLogs {
    pub logs: Vec<HpcwaasLogEntry>,
    /// Every line matching `levels`.
    pub total_results: usize,
    /// The request's `from`.
    pub from: usize,
}

/// One log line.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasLogEntry {
    #[schema(value_type = HpcwaasLevel)]
    pub level: Level,
    /// When it arrived, RFC 3339 in UTC to the millisecond.
    #[schema(example = "2022-10-20T12:32:29.774Z")]
    pub timestamp: String,
    pub content: String,
}

/// A log line's level.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HpcwaasLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// `POST /ssh_keys`' optional body.
#[derive(ToSchema)]
#[schema(example = json!({"metadata": {"site": "lab"}}))]
pub struct HpcwaasKeyRequest {
    /// Names (1 to 128 bytes) to strings (at most 4096 bytes), at most 64 besides
    /// `privateKey` and `publicKey`, which are ignored.
    #[schema(schema_with = key_metadata)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// `rsa` (the default) or `ed25519`.
    #[serde(rename = "type")]
    #[schema(value_type = Option<HpcwaasKeyType>)]
    pub key_type: Option<KeyType>,
}

/// A key's metadata, as `KeyMetadata::parse` takes it.
fn key_metadata() -> utoipa::openapi::ObjectBuilder {
    use crate::domain::sshkey::service::{
        MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_METADATA_VALUE_BYTES,
    };
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .description(Some(
            "Names (1 to 128 bytes) to strings (at most 4096 bytes), at most 64 besides \
             `privateKey` and `publicKey`, which are ignored.",
        ))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_METADATA_KEY_BYTES)),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_METADATA_VALUE_BYTES)),
        ))
        .max_properties(Some(MAX_METADATA_ENTRIES))
}

/// `POST /ssh_keys`' answer.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasKeyCreated {
    pub id: uuid::Uuid,
    /// An OpenSSH `authorized_keys` line, with its newline.
    pub public_key: String,
}

/// `GET /ssh_keys/{id}`.
#[derive(ToSchema, Serialize)]
pub struct HpcwaasKey {
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    #[schema(value_type = HpcwaasKeyType)]
    pub key_type: KeyType,
    pub public_key: String,
    /// `SHA256:<base64>`, as `ssh-keygen -l` shows it.
    pub fingerprint: String,
    pub metadata: BTreeMap<String, String>,
    pub created_by: Option<String>,
    pub created_at: String,
}

/// A key's type.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HpcwaasKeyType {
    Rsa,
    Ed25519,
}

/// Every error of the face.
#[derive(ToSchema)]
#[schema(example = json!({"errors": [{"id": "not_found", "status": 404, "title": "Not Found",
    "detail": "no execution 0192f3a4-5b6c-7d8e-9f00-aabbccddeeff"}]}))]
pub struct HpcwaasErrorBody {
    pub errors: Vec<HpcwaasError>,
}

/// One error.
#[derive(ToSchema)]
pub struct HpcwaasError {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`, `request_timeout`,
    /// `request_entity_too_large`, `service_unavailable` or `internal_server_error`.
    pub id: String,
    pub status: u16,
    /// The status' reason phrase.
    pub title: String,
    /// What went wrong, in words meant for the person reading them.
    pub detail: String,
}

/// What every operation of the face shares.
struct FaceWide;

impl Modify for FaceWide {
    fn modify(&self, document: &mut OpenApi) {
        // `POST /ssh_keys` takes no body at all as well (the `waas` client sends none), which
        // the path attribute cannot say of a body it names.
        if let Some(body) = document
            .paths
            .paths
            .get_mut("/ssh_keys")
            .and_then(|item| item.post.as_mut())
            .and_then(|operation| operation.request_body.as_mut())
        {
            body.required = Some(utoipa::openapi::Required::False);
        }
        // And JSON's `null` for none.
        if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(request))) =
            document
                .components
                .as_mut()
                .and_then(|components| components.schemas.get_mut("HpcwaasKeyRequest"))
        {
            request.schema_type =
                utoipa::openapi::schema::SchemaType::from_iter([Type::Object, Type::Null]);
        }
        for item in document.paths.paths.values_mut() {
            let answers = CommonAnswers {
                body: "HpcwaasErrorBody",
                open_by: None,
                forbidden: "The account lacks the access `[hpcwaas] auth` asks for, or may not \
                    trigger this workflow.",
                not_allowed: Some(NOT_ALLOWED),
                unavailable: "Not recorded (the log or an actor failed), or the credentials \
                    could not be checked.",
                more: &[],
            };
            for operation in path_operations(item) {
                answers.apply(operation, "hpcwaas");
            }
        }
    }
}
