//! The face's handlers and the routes that reach them; `mod.rs` says what the face is.

use std::collections::BTreeMap;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::SecondsFormat;
use serde::Deserialize;
use uuid::Uuid;

use super::openapi::{
    HpcwaasExecution, HpcwaasExecutionRow, HpcwaasExecutions, HpcwaasInput, HpcwaasKey,
    HpcwaasKeyCreated, HpcwaasLogEntry, HpcwaasLogs, HpcwaasOutput, HpcwaasWorkflow,
    HpcwaasWorkflowDetail, HpcwaasWorkflows,
};
use crate::domain::sshkey::{KeyType, Metadata as KeyMetadata, SshKeys, SshKeysError};
use crate::domain::workflow::read_model::{ListQuery, MAX_PAGE};
use crate::domain::workflow::service::{Levels, LogQuery};
use crate::domain::workflow::{Executions, ExecutionsError, Status, Workflow};
use crate::events::EventLog;
use crate::http::caller::{guarded, Gate, Sent, Visit};
use crate::http::params::Wait;

/// What the face's handlers share.
pub struct Hpcwaas {
    pub executions: Executions,
    pub keys: SshKeys,
    /// For an execution's event stream.
    pub log: EventLog,
    /// Who may call, and the largest body the handlers read.
    pub gate: Gate,
}

// Every error body is `{"errors":[{"id","status","title","detail"}]}`.
guarded!(
    Hpcwaas,
    "the workflow face is not configured",
    HpcwaasError,
    |status, message| {
        let id = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::PAYLOAD_TOO_LARGE => "request_entity_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
            _ => "internal_server_error",
        };
        serde_json::json!({"errors": [{
            "id": id,
            "status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("Error"),
            "detail": message,
        }]})
    }
);

/// The routes of the face.
pub fn routes(router: &mut crate::http::Router) {
    use actix_web::http::Method;
    let envelope = crate::http::only::<Hpcwaas>;
    router
        .resource(
            "/workflows",
            [(Method::GET, web::to(list_workflows))],
            envelope,
        )
        .resource(
            "/workflows/{workflow_id}",
            [
                (Method::GET, web::to(describe_workflow)),
                (Method::POST, web::to(trigger_workflow)),
            ],
            envelope,
        )
        .resource(
            "/executions",
            [(Method::GET, web::to(list_executions))],
            envelope,
        )
        .resource(
            "/executions/{execution_id}",
            [
                (Method::GET, web::to(get_execution)),
                (Method::DELETE, web::to(cancel_execution)),
            ],
            envelope,
        )
        .resource(
            "/executions/{execution_id}/logs",
            [(Method::GET, web::to(execution_logs))],
            envelope,
        )
        .resource(
            "/executions/{execution_id}/events",
            [(Method::GET, web::to(execution_events))],
            envelope,
        )
        .resource("/ssh_keys", [(Method::POST, web::to(create_key))], envelope)
        .resource(
            "/ssh_keys/{key_id}",
            [
                (Method::GET, web::to(get_key)),
                (Method::DELETE, web::to(delete_key)),
            ],
            envelope,
        );
}

fn workflow_row(workflow: &Workflow) -> HpcwaasWorkflow {
    HpcwaasWorkflow {
        id: workflow.id.to_string(),
        name: workflow.name.clone(),
        application_id: workflow.application_id.clone(),
        environment_id: workflow.environment_id.clone(),
        environment_name: workflow.environment_name.clone(),
    }
}

fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Every workflow the server offers.
#[utoipa::path(get, path = "/workflows", operation_id = "hpcwaas_list_workflows",
    summary = "List the workflows", description = super::openapi::LIST_WORKFLOWS,
    responses((status = 200, description = "Every declared workflow the caller may trigger, in id order.",
        body = HpcwaasWorkflows)))]
async fn list_workflows(
    Visit { caller, face }: Visit<Hpcwaas>,
) -> Result<HttpResponse, HpcwaasError> {
    let workflows = face
        .executions
        .catalogue()
        .triggerable_by(caller.user.as_deref())
        .map(workflow_row)
        .collect();
    Ok(HttpResponse::Ok().json(HpcwaasWorkflows { workflows }))
}

/// One workflow with its inputs and outputs.
#[utoipa::path(get, path = "/workflows/{workflow_id}", operation_id = "hpcwaas_describe_workflow",
    summary = "Describe a workflow", description = super::openapi::DESCRIBE_WORKFLOW,
    params(super::openapi::WorkflowIdPath),
    responses(
        (status = 200, description = "The workflow.", body = HpcwaasWorkflowDetail),
        (status = 404, description = "No such workflow.", body = super::openapi::HpcwaasErrorBody)))]
async fn describe_workflow(
    Visit { face, .. }: Visit<Hpcwaas>,
    workflow_id: web::Path<String>,
) -> Result<HttpResponse, HpcwaasError> {
    let workflow = face
        .executions
        .catalogue()
        .get(&workflow_id)
        .ok_or_else(|| ExecutionsError::UnknownWorkflow(workflow_id.into_inner()))?;
    Ok(HttpResponse::Ok().json(HpcwaasWorkflowDetail {
        workflow: workflow_row(workflow),
        description: workflow.description.clone(),
        inputs: workflow
            .inputs
            .iter()
            .map(|input| HpcwaasInput {
                name: input.name.clone(),
                required: input.required,
                default: input.default.clone(),
                description: input.description.clone(),
                kind: input.kind,
            })
            .collect(),
        outputs: workflow
            .outputs
            .iter()
            .map(|output| HpcwaasOutput {
                name: output.name.clone(),
                description: output.description.clone(),
            })
            .collect(),
    }))
}

/// The inputs of a trigger: `{"inputs":{…}}`, `{}`, `null` or `{"inputs":null}`. Public (hidden)
/// for the fuzz targets.
#[doc(hidden)]
pub fn parse_inputs(body: &[u8]) -> Result<BTreeMap<String, serde_json::Value>, HpcwaasError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HpcwaasError::bad_request(
            "the body is empty: send {} to trigger without inputs",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| HpcwaasError::bad_request(format!("the body is not JSON: {e}")))?;
    match value {
        serde_json::Value::Null => Ok(BTreeMap::new()),
        serde_json::Value::Object(mut object) => match object.remove("inputs") {
            None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
            Some(serde_json::Value::Object(inputs)) => Ok(inputs.into_iter().collect()),
            Some(_) => Err(HpcwaasError::bad_request(
                "inputs must be an object of input names to values",
            )),
        },
        _ => Err(HpcwaasError::bad_request(
            "the body must be an object such as {\"inputs\":{}}",
        )),
    }
}

/// Starts an execution.
#[utoipa::path(post, path = "/workflows/{workflow_id}", operation_id = "hpcwaas_trigger_workflow",
    summary = "Trigger a workflow", description = super::openapi::TRIGGER,
    params(super::openapi::WorkflowIdPath),
    request_body(content = super::openapi::HpcwaasTrigger, content_type = "application/json",
        description = "Any content type (the `waas` client sends none), at most \
            `[hpcwaas] max_body_kb` KiB; `{}`, `null` and `{\"inputs\":null}` give no inputs."),
    responses(
        (status = 201, description = "Started; the body is empty.",
            headers(("Location" = String, description = "`/executions/<execution_id>`"))),
        (status = 400, description = "An empty body, not JSON, undeclared or missing inputs \
            (named), or an ssh key input naming no key of the caller's.",
            body = super::openapi::HpcwaasErrorBody),
        (status = 404, description = "No such workflow.", body = super::openapi::HpcwaasErrorBody),
        (status = 413, description = "The body is over `[hpcwaas] max_body_kb`.",
            body = super::openapi::HpcwaasErrorBody)))]
async fn trigger_workflow(
    request: HttpRequest,
    workflow_id: web::Path<String>,
    Sent { caller, face, body }: Sent<Hpcwaas>,
) -> Result<HttpResponse, HpcwaasError> {
    let inputs = parse_inputs(&body)?;
    let metadata = crate::http::metadata(&request, &caller);
    let id = face
        .executions
        .trigger(&workflow_id, &inputs, caller.user, metadata)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/executions/{id}")))
        .finish())
}

#[derive(Deserialize)]
struct ListParams {
    workflow: Option<String>,
    status: Option<String>,
    from: Option<String>,
    size: Option<String>,
}

/// A non-negative integer parameter.
fn parse_count(name: &str, raw: Option<&str>, default: usize) -> Result<usize, HpcwaasError> {
    match raw {
        None => Ok(default),
        Some(raw) => raw.parse().map_err(|_| {
            HpcwaasError::bad_request(format!(
                "{name} must be a non-negative integer, not {raw:?}"
            ))
        }),
    }
}

/// Executions, newest first.
#[utoipa::path(get, path = "/executions", operation_id = "hpcwaas_list_executions",
    summary = "List executions", description = super::openapi::LIST_EXECUTIONS,
    params(super::openapi::ListParams),
    responses(
        (status = 200, description = "A page, newest first.", body = HpcwaasExecutions),
        (status = 400, description = "A bad parameter, named.",
            body = super::openapi::HpcwaasErrorBody)))]
async fn list_executions(
    Visit { face, .. }: Visit<Hpcwaas>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, HpcwaasError> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(Status::parse(raw).ok_or_else(|| {
            HpcwaasError::bad_request(format!(
                "status must be RUNNING, SUCCESS, FAILED, CANCELLING or CANCELLED, not {raw:?}"
            ))
        })?),
    };
    let from = parse_count("from", params.from.as_deref(), 0)?;
    let size = parse_count("size", params.size.as_deref(), 50)?;
    if size == 0 || size > MAX_PAGE {
        return Err(HpcwaasError::bad_request(format!(
            "size must be 1 to {MAX_PAGE}"
        )));
    }
    let page = face.executions.list(&ListQuery {
        workflow: params.workflow.clone().filter(|w| !w.is_empty()),
        status,
        offset: from,
        limit: size,
    });
    Ok(HttpResponse::Ok().json(HpcwaasExecutions {
        executions: page
            .rows
            .into_iter()
            .map(|row| HpcwaasExecutionRow {
                id: row.id,
                workflow: row.workflow,
                status: row.status,
                user: row.by,
                requested_at: time(row.requested_at),
                ended_at: row.ended_at.map(time),
            })
            .collect(),
        total_results: page.total,
        from,
    }))
}

/// An execution's status and outputs.
#[utoipa::path(get, path = "/executions/{execution_id}", operation_id = "hpcwaas_get_execution",
    summary = "An execution's status", description = super::openapi::GET_EXECUTION,
    params(super::openapi::ExecutionIdPath),
    responses(
        (status = 200, description = "The execution.", body = HpcwaasExecution),
        (status = 404, description = "No such execution.", body = super::openapi::HpcwaasErrorBody)))]
async fn get_execution(
    Visit { face, .. }: Visit<Hpcwaas>,
    execution_id: web::Path<String>,
) -> Result<HttpResponse, HpcwaasError> {
    let (requested, state) = face.executions.get(&execution_id).await?;
    Ok(HttpResponse::Ok().json(HpcwaasExecution {
        id: execution_id.into_inner(),
        status: state.status.unwrap_or(Status::Running),
        outputs: state.outputs.clone(),
        workflow: requested.workflow,
        reason: state.reason.clone(),
        requested_at: time(requested.at),
        ended_at: state.ended_at.map(time),
    }))
}

/// Cancels an execution.
#[utoipa::path(delete, path = "/executions/{execution_id}",
    operation_id = "hpcwaas_cancel_execution", summary = "Cancel an execution",
    description = super::openapi::CANCEL, params(super::openapi::ExecutionIdPath),
    responses(
        (status = 202, description = "Asked (or already ended); the body is empty."),
        (status = 404, description = "No such execution.", body = super::openapi::HpcwaasErrorBody)))]
async fn cancel_execution(
    Visit { caller, face }: Visit<Hpcwaas>,
    request: HttpRequest,
    execution_id: web::Path<String>,
) -> Result<HttpResponse, HpcwaasError> {
    let metadata = crate::http::metadata(&request, &caller);
    face.executions
        .cancel(&execution_id, caller.user, metadata)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Deserialize)]
struct LogsParams {
    from: Option<String>,
    size: Option<String>,
    timeout: Option<String>,
    levels: Option<String>,
}

/// The default wait of a logs request.
const DEFAULT_LOGS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl LogsParams {
    fn parse(&self) -> Result<LogQuery, HpcwaasError> {
        let bad = |message: String| HpcwaasError::bad_request(message);
        let from = parse_count("from", self.from.as_deref(), 0)?;
        // 0, as upstream, is the default page: every line (a page of none would send a
        // follower straight back).
        let size = match self.size.as_deref() {
            None | Some("-1") => None,
            Some(raw) => match raw.parse::<usize>() {
                Ok(0) => None,
                Ok(size) => Some(size),
                Err(_) => {
                    return Err(bad(format!(
                        "size must be -1 (all) or a non-negative integer, not {raw:?}"
                    )))
                }
            },
        };
        let timeout = match self.timeout.as_deref() {
            None => DEFAULT_LOGS_TIMEOUT,
            Some(raw) => Wait::parse(Some(raw)).map_err(bad)?.0,
        };
        let levels = match self.levels.as_deref() {
            None => 0,
            Some(raw) => raw.parse::<u8>().map_err(|_| {
                bad(format!(
                    "levels must be a bitmask from 0 to 255, not {raw:?}"
                ))
            })?,
        };
        Ok(LogQuery {
            from,
            size,
            levels: Levels::from_mask(levels),
            timeout,
        })
    }
}

/// A page of an execution's log, waiting for lines when there are none yet.
#[utoipa::path(get, path = "/executions/{execution_id}/logs",
    operation_id = "hpcwaas_execution_logs", summary = "Follow an execution's log",
    description = super::openapi::LOGS, params(super::openapi::ExecutionIdPath, super::openapi::LogsParams),
    responses(
        (status = 200, description = "The page (empty when the wait ended without a line).",
            body = HpcwaasLogs),
        (status = 400, description = "A bad parameter, named.",
            body = super::openapi::HpcwaasErrorBody),
        (status = 404, description = "No such execution.", body = super::openapi::HpcwaasErrorBody)))]
async fn execution_logs(
    Visit { face, .. }: Visit<Hpcwaas>,
    execution_id: web::Path<String>,
    params: web::Query<LogsParams>,
) -> Result<HttpResponse, HpcwaasError> {
    let query = params.parse()?;
    let page = face.executions.logs(&execution_id, query).await?;
    Ok(HttpResponse::Ok().json(HpcwaasLogs {
        logs: page
            .logs
            .into_iter()
            .map(|line| HpcwaasLogEntry {
                level: line.level,
                timestamp: time(line.at),
                content: line.content,
            })
            .collect(),
        total_results: page.total_results,
        from: page.from,
    }))
}

/// The execution's events as Server-Sent Events.
#[utoipa::path(get, path = "/executions/{execution_id}/events",
    operation_id = "hpcwaas_execution_events", summary = "An execution's events, as they happen",
    description = super::openapi::EVENTS, params(super::openapi::ExecutionIdPath),
    responses(
        (status = 200, description = "`id:` the event's position, `data:` the event as the \
            event API renders it; a comment when idle.", content_type = "text/event-stream",
            body = String),
        (status = 404, description = "No such execution.", body = super::openapi::HpcwaasErrorBody)))]
async fn execution_events(
    Visit { face, .. }: Visit<Hpcwaas>,
    request: HttpRequest,
    execution_id: web::Path<String>,
) -> Result<HttpResponse, HpcwaasError> {
    let stream = face.executions.stream(&execution_id).await?;
    Ok(crate::http::events::events_stream(
        face.log.clone(),
        crate::http::events::Source::Stream(stream),
        0,
        crate::http::events::KeepAlive::of(&request),
    ))
}

#[derive(Deserialize, Default)]
struct KeyRequest {
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "type")]
    key_type: Option<String>,
}

/// Makes a key pair; answers the public half.
#[utoipa::path(post, path = "/ssh_keys", operation_id = "hpcwaas_create_key",
    summary = "Make an SSH key pair", description = super::openapi::CREATE_KEY,
    request_body(content = super::openapi::HpcwaasKeyRequest, content_type = "application/json",
        description = "Optional; any content type (the `waas` client sends none)."),
    responses(
        (status = 201, description = "Made.", body = HpcwaasKeyCreated),
        (status = 400, description = "Not JSON, metadata that is not an object of strings or \
            is over its limits, or an unknown key type.", body = super::openapi::HpcwaasErrorBody),
        (status = 413, description = "The body is over `[hpcwaas] max_body_kb`.",
            body = super::openapi::HpcwaasErrorBody)))]
async fn create_key(
    request: HttpRequest,
    Sent { caller, face, body }: Sent<Hpcwaas>,
) -> Result<HttpResponse, HpcwaasError> {
    let asked: KeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        KeyRequest::default()
    } else {
        let bad =
            |e: serde_json::Error| HpcwaasError::bad_request(format!("not a key request: {e}"));
        // An object or null: serde alone would also read the request from a JSON array.
        match serde_json::from_slice::<Option<serde_json::Map<String, serde_json::Value>>>(&body)
            .map_err(bad)?
        {
            None => KeyRequest::default(),
            Some(object) => {
                serde_json::from_value(serde_json::Value::Object(object)).map_err(bad)?
            }
        }
    };
    let key_type = match asked.key_type.as_deref() {
        None => KeyType::Rsa,
        Some(raw) => KeyType::parse(raw).map_err(HpcwaasError::bad_request)?,
    };
    let metadata = KeyMetadata::parse(asked.metadata.unwrap_or_default())
        .map_err(HpcwaasError::bad_request)?;
    let event_metadata = crate::http::metadata(&request, &caller);
    let created = face
        .keys
        .create(key_type, metadata, caller.user, event_metadata)
        .await?;
    Ok(HttpResponse::Created().json(HpcwaasKeyCreated {
        id: created.id,
        public_key: created.public_key,
    }))
}

fn key_id(raw: &str) -> Result<Uuid, HpcwaasError> {
    Uuid::parse_str(raw).map_err(|_| HpcwaasError::from(SshKeysError::NotFound))
}

/// A key's public half and what is known of it.
#[utoipa::path(get, path = "/ssh_keys/{key_id}", operation_id = "hpcwaas_get_key",
    summary = "Read an SSH key's public half", description = super::openapi::GET_KEY,
    params(super::openapi::KeyIdPath),
    responses(
        (status = 200, description = "The key.", body = HpcwaasKey),
        (status = 404, description = "No such key (or deleted, or another account's).",
            body = super::openapi::HpcwaasErrorBody)))]
async fn get_key(
    Visit { caller, face }: Visit<Hpcwaas>,
    key: web::Path<String>,
) -> Result<HttpResponse, HpcwaasError> {
    let id = key_id(&key)?;
    let state = face.keys.get(id, caller.user.as_deref()).await?;
    let created = state.usable().ok_or(SshKeysError::NotFound)?;
    Ok(HttpResponse::Ok().json(HpcwaasKey {
        id,
        key_type: created.key_type,
        public_key: created.public_key.clone(),
        fingerprint: created.fingerprint.clone(),
        metadata: created.metadata.clone(),
        created_by: created.by.clone(),
        created_at: time(created.at),
    }))
}

/// Destroys a key's private half for good.
#[utoipa::path(delete, path = "/ssh_keys/{key_id}", operation_id = "hpcwaas_delete_key",
    summary = "Delete an SSH key", description = super::openapi::DELETE_KEY,
    params(super::openapi::KeyIdPath),
    responses(
        (status = 204, description = "Deleted; the body is empty."),
        (status = 404, description = "No such key (or already deleted, or another account's).",
            body = super::openapi::HpcwaasErrorBody)))]
async fn delete_key(
    Visit { caller, face }: Visit<Hpcwaas>,
    request: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, HpcwaasError> {
    let id = key_id(&key)?;
    let metadata = crate::http::metadata(&request, &caller);
    face.keys.delete(id, caller.user, metadata).await?;
    Ok(HttpResponse::NoContent().finish())
}
