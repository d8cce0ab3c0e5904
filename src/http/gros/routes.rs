//! The face's handlers and the routes that reach them; `mod.rs` says what the face is.

use std::collections::BTreeMap;
use std::net::{IpAddr, TcpListener};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};

use super::openapi::{
    GrosAgentError, GrosAgentErrorBody, GrosAgentOk, GrosEncrypted, GrosRegistered, GrosSalts,
    GrosStatus, GrosUsername, GrosVersion,
};
use crate::domain::gros::service::{Daemon, Logged};
use crate::domain::gros::values::{parse_measurements, GathererVersion};
use crate::domain::gros::{AgentName, Gros, GrosError, ProjectKey};
use crate::events::Metadata;
use crate::http::body::read_body;
use crate::http::error::{Refusal, Shape};

/// What the face's handlers share.
pub struct GrosFace {
    pub gros: Gros,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// The agent the daemon's own listener serves.
    pub local: Option<(ProjectKey, AgentName)>,
    /// The `Host` header the local daemon's own `/scrape` requires, when set. The main
    /// listener's `/agents/{project}/{agent}/scrape` answers to the controller's host names,
    /// not the agent's, so it is not checked there.
    pub host: Option<String>,
}

/// The face's routes on the main listener.
pub fn routes(router: &mut crate::http::Router) {
    let length_required = |resource: actix_web::Resource| {
        resource.wrap(actix_web::middleware::from_fn(length_required))
    };
    // A controller script that changes state: POST only, another method answered 405 with an
    // `Allow` header. Upstream's CGI scripts run on any method; here a GET never registers an
    // agent, starts an import or records a log record.
    let script = crate::http::only::<ControllerShape>;
    router
        .any("/auth/access.py", web::to(access), |resource| resource)
        .resource("/auth/agent.py", [(Method::POST, web::to(agent))], script)
        .any("/auth/encrypt.py", web::to(encrypt), |resource| resource)
        .resource("/auth/export.py", [(Method::POST, web::to(export))], script)
        .resource("/auth/log.py", [(Method::POST, web::to(log))], script)
        .resource(
            "/auth/status.py",
            [
                (Method::GET, web::to(status)),
                (Method::POST, web::to(measurements)),
            ],
            |resource, _| resource.default_service(web::to(not_implemented)),
        )
        // Upstream's CGI scripts that only read answer whatever the method, with a form
        // body's parameters merged in, so these do too.
        .any("/auth/version.py", web::to(version), |resource| resource)
        .resource(
            "/agents",
            [(Method::GET, web::to(agents))],
            crate::http::only::<AgentShape>,
        )
        .any(
            "/agents/{project}/{agent}/status",
            web::to(agent_status),
            length_required,
        )
        .any(
            "/agents/{project}/{agent}/scrape",
            web::to(agent_scrape),
            length_required,
        );
}

/// Any method `status.py` does not take: upstream's `status.py` answers `501` to it.
async fn not_implemented(request: HttpRequest) -> HttpResponse {
    ControllerError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!("Method {} is not supported", request.method()),
    )
    .error_response()
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// A controller error: the message and a newline, as `text/plain`.
pub type ControllerError = Refusal<ControllerShape>;

/// The controller scripts' error shape.
pub enum ControllerShape {}

impl Shape for ControllerShape {
    type Context = ();

    fn answer(refusal: &ControllerError, mut response: HttpResponseBuilder) -> HttpResponse {
        response
            .content_type("text/plain; charset=utf-8")
            .body(format!("{refusal}\n"))
    }
}

/// An agent daemon error, in the daemon's JSON shape.
pub type AgentError = Refusal<AgentShape>;

/// The agent daemon's error shape.
pub enum AgentShape {}

impl Shape for AgentShape {
    type Context = ();

    fn answer(refusal: &AgentError, mut response: HttpResponseBuilder) -> HttpResponse {
        let status = refusal.status_code();
        response.json(GrosAgentErrorBody {
            ok: false,
            error: GrosAgentError {
                status: format!(
                    "{} {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
                message: refusal.to_string(),
                traceback: None,
            },
            version: BTreeMap::from([("annals".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]),
        })
    }

    /// The daemon's own failures (a scrape that could not start, the secret store, the log)
    /// are its 500, where the controller scripts answer 503.
    fn status(error: &(dyn std::error::Error + 'static), status: StatusCode) -> StatusCode {
        match error.downcast_ref::<GrosError>() {
            Some(GrosError::CannotStart(_) | GrosError::Secret(_) | GrosError::NotRecorded(_)) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => status,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters.

/// The request's parameters: the query string's, then the form body's.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Reads the query string and, when the body is a form (or says nothing of its type), the
    /// body, within `limit` bytes.
    async fn read(
        request: &HttpRequest,
        payload: web::Payload,
        limit: usize,
    ) -> Result<Params, ControllerError> {
        let mut pairs = parse_form(request.query_string())?;
        let body = read_body(request, payload, limit).await?;
        if !body.is_empty() {
            let content_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/x-www-form-urlencoded");
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
                return Err(ControllerError::bad_request(
                    "The body must be application/x-www-form-urlencoded",
                ));
            }
            let text = std::str::from_utf8(&body)
                .map_err(|_| ControllerError::bad_request("The body is not UTF-8"))?;
            pairs.extend(parse_form(text)?);
        }
        Ok(Params(pairs))
    }

    /// The one value of `name`, if given; 400 when given more than once.
    fn one(&self, name: &str) -> Result<Option<&str>, ControllerError> {
        let mut values = self.0.iter().filter(|(key, _)| key == name);
        let first = values.next().map(|(_, value)| value.as_str());
        if values.next().is_some() {
            return Err(ControllerError::bad_request(format!(
                "Exactly one {name} must be specified"
            )));
        }
        Ok(first)
    }

    /// The one value of `name`; 400 when missing or given more than once.
    fn required(&self, name: &str) -> Result<&str, ControllerError> {
        self.one(name)?.ok_or_else(|| {
            let mut capital = name.to_owned();
            capital[..1].make_ascii_uppercase();
            ControllerError::bad_request(format!("{capital} must be specified"))
        })
    }

    /// The one value of `name`; 400 with `missing`, the script's own words, when it is not
    /// given, or when given more than once.
    fn provided(&self, name: &str, missing: &str) -> Result<&str, ControllerError> {
        self.one(name)?
            .ok_or_else(|| ControllerError::bad_request(missing.to_owned()))
    }

    fn project(&self) -> Result<ProjectKey, ControllerError> {
        ProjectKey::parse(self.required("project")?).map_err(ControllerError::bad_request)
    }

    /// The `project` parameter and the `agent` one, or the agent named after the project.
    fn project_agent(&self) -> Result<(ProjectKey, AgentName), ControllerError> {
        let project = self.project()?;
        let agent = self.agent(&project)?;
        Ok((project, agent))
    }

    /// The `agent` parameter, or the agent named after the project.
    fn agent(&self, project: &ProjectKey) -> Result<AgentName, ControllerError> {
        match self.one("agent")? {
            Some(agent) => AgentName::parse(agent).map_err(ControllerError::bad_request),
            None => Ok(AgentName::of(project)),
        }
    }
}

/// A controller script's request, read: its parameters (the query string's, then the form
/// body's, within `[gros] max_body_kb`), where it came from, and what the face's handlers
/// share.
struct Script {
    request: HttpRequest,
    params: Params,
    face: web::Data<GrosFace>,
}

impl FromRequest for Script {
    type Error = ControllerError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Script, ControllerError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let request = request.clone();
        let payload = web::Payload::from_request(&request, payload);
        Box::pin(async move {
            let face = request
                .app_data::<web::Data<GrosFace>>()
                .cloned()
                .ok_or_else(|| ControllerError::internal("the agent face is not configured"))?;
            let payload = payload.await.map_err(ControllerError::internal)?;
            let params = Params::read(&request, payload, face.max_body).await?;
            Ok(Script {
                request,
                params,
                face,
            })
        })
    }
}

impl Script {
    /// The metadata of the events the request causes: where it came from, no account.
    fn metadata(&self) -> Metadata {
        metadata(&self.request)
    }

    /// The caller's address, through trusted proxies.
    fn caller(&self) -> Option<IpAddr> {
        caller(&self.request, &self.face)
    }
}

/// The parameters of a controller request (query or form body). Public (hidden) for the fuzz
/// targets.
#[doc(hidden)]
pub fn parse_form(text: &str) -> Result<Vec<(String, String)>, ControllerError> {
    web::Query::<Vec<(String, String)>>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|e| ControllerError::bad_request(format!("The parameters are malformed: {e}")))
}

/// The metadata of the events a request causes: where it came from, no account.
fn metadata(request: &HttpRequest) -> Metadata {
    crate::http::metadata(request, &crate::auth::Caller { user: None })
}

/// The caller's address, through trusted proxies.
fn caller(request: &HttpRequest, face: &GrosFace) -> Option<IpAddr> {
    let forwarded: Vec<&str> = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v: &HeaderValue| v.to_str().ok())
        .collect();
    face.gros
        .caller(request.peer_addr().map(|peer| peer.ip()), &forwarded)
}

// ---------------------------------------------------------------------------------------------
// The controller.

#[utoipa::path(get, path = "/auth/access.py", operation_id = "gros_access",
    summary = "The projects the caller may reach", description = super::openapi::ACCESS,
    responses((status = 200, description = "`[\"*\"]` for every project, else the project keys.",
        body = Vec<String>)))]
async fn access(request: HttpRequest, face: web::Data<GrosFace>) -> HttpResponse {
    HttpResponse::Ok().json(face.gros.access(caller(&request, &face)))
}

#[utoipa::path(post, path = "/auth/agent.py", operation_id = "gros_register",
    summary = "Register or re-key an agent", description = super::openapi::AGENT,
    params(super::openapi::ProjectAgentParams, super::openapi::PublicKeyParam),
    responses(
        (status = 200, description = "Registered: the project's salts and username patterns.",
            body = GrosRegistered),
        super::openapi::BadParameter,
        super::openapi::NoProject,
        super::openapi::BodyTooLarge,
        (status = 503, description = "The agent is locked by another registration.",
            body = String, content_type = "text/plain")))]
async fn agent(script: Script) -> Result<HttpResponse, ControllerError> {
    let Script { params, face, .. } = &script;
    let (project, agent) = params.project_agent()?;
    // Upstream's words, though the key may come in the query string here too.
    let missing_key = "Public key must be provided as a POST message";
    let public_key = params
        .provided("public_key", missing_key)?
        .trim()
        .to_owned();
    if public_key.is_empty() {
        return Err(ControllerError::bad_request(missing_key));
    }
    let registration = face
        .gros
        .register(&project, &agent, public_key, script.metadata())
        .await?;
    Ok(HttpResponse::Ok().json(GrosRegistered {
        salts: GrosSalts {
            salt: registration.salts.salt.clone(),
            pepper: registration.salts.pepper.clone(),
        },
        usernames: registration
            .usernames
            .into_iter()
            .map(|u| GrosUsername {
                prefix: u.prefix,
                pattern: u.pattern,
                replace: u.replace,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/auth/encrypt.py", operation_id = "gros_encrypt",
    summary = "Pseudonymise a value", description = super::openapi::ENCRYPT,
    params(super::openapi::ValueParam, super::openapi::OptionalProjectParam),
    responses(
        (status = 200, description = "The pseudonym.", body = GrosEncrypted),
        super::openapi::BadParameter,
        (status = 404, description = "The project is not configured or has no salts.",
            body = String, content_type = "text/plain")))]
async fn encrypt(script: Script) -> Result<HttpResponse, ControllerError> {
    let Script { params, face, .. } = &script;
    let value = params.provided("value", "Value must be provided")?;
    let project = params
        .one("project")?
        .map(|p| ProjectKey::parse(p).map_err(ControllerError::bad_request))
        .transpose()?;
    let (value, encryption) = face
        .gros
        .encrypt(project.as_ref(), value, script.metadata())
        .await?;
    Ok(HttpResponse::Ok().json(GrosEncrypted { value, encryption }))
}

#[utoipa::path(post, path = "/auth/export.py", operation_id = "gros_export",
    summary = "Announce an export", description = super::openapi::EXPORT,
    params(super::openapi::ProjectParam, super::openapi::ExportAgentParam, super::openapi::FilesParam),
    responses(
        (status = 202, description = "Recorded; the import command, if any, started."),
        (status = 400, description = "A parameter missing, given twice, or not JSON.",
            body = String, content_type = "text/plain"),
        super::openapi::NoProject,
        super::openapi::BodyTooLarge))]
async fn export(script: Script) -> Result<HttpResponse, ControllerError> {
    let Script { params, face, .. } = &script;
    let project = params.project()?;
    // Both fields are optional, as upstream's `export.py` has them: without `agent`, the
    // export counts against the agent named after the project (and is recorded as `null`).
    let json = |name: &str| -> Result<Option<serde_json::Value>, ControllerError> {
        params
            .one(name)?
            .map(|raw| {
                serde_json::from_str(raw)
                    .map_err(|e| ControllerError::bad_request(format!("{name} must be JSON: {e}")))
            })
            .transpose()
    };
    let agent_info = json("agent")?.unwrap_or(serde_json::Value::Null);
    let agent = export_agent(&project, &agent_info)?;
    let files = json("files")?.map_or_else(|| "[]".to_owned(), |files| files.to_string());
    face.gros
        .export(
            &project,
            &agent,
            agent_info.to_string(),
            files,
            script.metadata(),
        )
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

/// The agent an export counts against, as upstream's `export.py` picks it from the client's
/// `agent` JSON: its `key` (the agent's first project, so an agent of several projects is one
/// agent in each), else the name in a `user` of the form `agent-<name>`, else the agent named
/// after the project.
fn export_agent(
    project: &ProjectKey,
    info: &serde_json::Value,
) -> Result<AgentName, ControllerError> {
    let field = |name: &str| match info.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(ControllerError::bad_request(format!(
            "The agent's {name} must be a string"
        ))),
    };
    let named = match (field("key")?, field("user")?) {
        (Some(key), _) if !key.is_empty() && key != "-" => key,
        (_, Some(user)) if user.starts_with("agent-") => &user["agent-".len()..],
        _ => return Ok(AgentName::of(project)),
    };
    AgentName::parse(named)
        .map_err(|e| ControllerError::bad_request(format!("The agent's key {named:?}: {e}")))
}

#[utoipa::path(post, path = "/auth/log.py", operation_id = "gros_log",
    summary = "Record a log record", description = super::openapi::LOG,
    params(super::openapi::ProjectAgentParams),
    responses(
        (status = 202, description = "Recorded."),
        (status = 204, description = "Its message matches a `[gros] log_ignore` pattern: \
            not recorded."),
        (status = 400, description = "No fields, or a parameter missing or given twice.",
            body = String, content_type = "text/plain"),
        super::openapi::NoProject,
        (status = 413, description = "The body is over `[gros] max_body_kb`, or the record \
            would make an event over `[log] max_event_kb`.", body = String,
            content_type = "text/plain")))]
async fn log(script: Script) -> Result<HttpResponse, ControllerError> {
    let Script { params, face, .. } = &script;
    let (project, agent) = params.project_agent()?;
    let mut fields = BTreeMap::new();
    for (key, value) in &params.0 {
        if key == "project" || key == "agent" {
            continue;
        }
        if fields.insert(key.clone(), value.clone()).is_some() {
            return Err(ControllerError::bad_request(format!(
                "Exactly one {key} must be specified"
            )));
        }
    }
    if fields.is_empty() {
        return Err(ControllerError::bad_request(
            "No logging parameters were provided",
        ));
    }
    match face
        .gros
        .log(&project, &agent, fields, script.metadata())
        .await?
    {
        Logged::Recorded => Ok(HttpResponse::Accepted().finish()),
        Logged::Ignored => Ok(HttpResponse::NoContent().finish()),
    }
}

#[utoipa::path(get, path = "/auth/status.py", operation_id = "gros_preflight",
    summary = "The preflight status of an agent", description = super::openapi::STATUS,
    params(super::openapi::ProjectAgentParams),
    responses(
        (status = 200, description = "Every check passed.", body = GrosStatus),
        super::openapi::BadParameter,
        super::openapi::NoProject,
        (status = 503, description = "A check failed: `total` says which.",
            body = GrosStatus)))]
async fn status(script: Script) -> Result<HttpResponse, ControllerError> {
    let Script { params, face, .. } = &script;
    let (project, agent) = params.project_agent()?;
    let preflight = face
        .gros
        .preflight(&project, &agent, script.caller(), script.metadata())
        .await?;
    let code = if preflight.total.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(code).json(GrosStatus::from(preflight)))
}

#[utoipa::path(post, path = "/auth/status.py", operation_id = "gros_measurements",
    summary = "Record BigBoat measurements", description = super::openapi::MEASUREMENTS,
    params(super::openapi::ProjectAgentParams, super::openapi::StatusParam,
        super::openapi::SourceParam),
    responses(
        (status = 202, description = "Recorded."),
        (status = 400, description = "A parameter missing or given twice, or `status` not a \
            JSON list of measurements.", body = String, content_type = "text/plain"),
        (status = 431, description = "A request head over 32 KiB, such as a long `status` in \
            the query string rather than the form body: actix-web's HTTP parser answers it \
            before any route, without a body (or `400`)."),
        super::openapi::NoProject,
        super::openapi::BodyTooLarge))]
async fn measurements(script: Script) -> Result<HttpResponse, ControllerError> {
    let Script { params, face, .. } = &script;
    let (project, agent) = params.project_agent()?;
    let list = parse_measurements(params.provided("status", "Status must be provided")?)
        .map_err(ControllerError::bad_request)?;
    let source = params.one("source")?.map(str::to_owned);
    face.gros
        .measurements(&project, &agent, source, list, script.metadata())
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

#[utoipa::path(get, path = "/auth/version.py", operation_id = "gros_version",
    summary = "Whether a gatherer is up to date", description = super::openapi::VERSION,
    params(super::openapi::VersionParam),
    responses(
        (status = 200, description = "The comparison.", body = GrosVersion),
        (status = 400, description = "No version, several, a foreign gatherer version or a \
            malformed commit.", body = String, content_type = "text/plain")))]
async fn version(script: Script) -> Result<HttpResponse, ControllerError> {
    let Script { params, face, .. } = &script;
    let raw = params.required("version")?;
    let parsed = GathererVersion::parse(raw, &face.gros.controller().gatherer_version)
        .map_err(ControllerError::bad_request)?;
    let up_to_date = face.gros.version(raw, &parsed, script.metadata()).await?;
    Ok(HttpResponse::Ok().json(GrosVersion {
        up_to_date,
        version: face.gros.controller().controller_version.clone(),
    }))
}

// ---------------------------------------------------------------------------------------------
// The agent daemon.

/// The project and agent of `/agents/{project}/{agent}/…`.
fn agent_path(path: &web::Path<(String, String)>) -> Result<(ProjectKey, AgentName), AgentError> {
    let not_found = |e: String| AgentError::new(StatusCode::NOT_FOUND, e);
    Ok((
        ProjectKey::parse(&path.0).map_err(not_found)?,
        AgentName::parse(&path.1).map_err(not_found)?,
    ))
}

#[utoipa::path(get, path = "/agents", operation_id = "gros_agents",
    summary = "How many agents each status has", description = super::openapi::AGENTS,
    responses((status = 200, description = "The agents by status.",
        body = super::openapi::GrosAgents)))]
async fn agents(face: web::Data<GrosFace>) -> Result<HttpResponse, AgentError> {
    let (agents, by_status) = face
        .gros
        .agents_by_status()
        .await
        .map_err(AgentError::internal)?;
    Ok(HttpResponse::Ok().json(super::openapi::GrosAgents {
        agents: agents as u64,
        by_status,
    }))
}

#[utoipa::path(get, path = "/agents/{project}/{agent}/status",
    operation_id = "gros_agent_status",
    summary = "Whether the agent's scrape is running", description = super::openapi::AGENT_STATUS,
    params(super::openapi::AgentPath),
    responses(
        (status = 200, description = "A scrape is running.", body = GrosAgentOk),
        (status = 404, description = "No such registered agent with a scrape command.",
            body = GrosAgentErrorBody),
        (status = 503, description = "No scrape is running.", body = GrosAgentOk)))]
async fn agent_status(
    path: web::Path<(String, String)>,
    face: web::Data<GrosFace>,
) -> Result<HttpResponse, AgentError> {
    let (project, agent) = agent_path(&path)?;
    daemon_status(&face, &project, &agent, Daemon::Shared).await
}

#[utoipa::path(post, path = "/agents/{project}/{agent}/scrape",
    operation_id = "gros_agent_scrape",
    summary = "Start the agent's scrape", description = super::openapi::AGENT_SCRAPE,
    params(super::openapi::AgentPath),
    responses(
        (status = 201, description = "The scrape started.", body = GrosAgentOk),
        (status = 400, description = "`Must be POSTed`.", body = GrosAgentErrorBody),
        (status = 403, description = "A caller (through trusted proxies) outside the \
            project's networks and `access_all_networks`.", body = GrosAgentErrorBody),
        (status = 404, description = "No such registered agent with a scrape command.",
            body = GrosAgentErrorBody),
        (status = 411, description = "`Client must specify Content-Length`.",
            body = GrosAgentErrorBody),
        (status = 500, description = "The scrape command could not be started.",
            body = GrosAgentErrorBody),
        (status = 503, description = "A scrape is already running, `[gros] \
            max_agent_scrapes` run already, or it failed at once (`Status code <rc>`).",
            body = GrosAgentErrorBody)))]
async fn agent_scrape(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    face: web::Data<GrosFace>,
) -> Result<HttpResponse, AgentError> {
    check_scrape_request(&request, None)?;
    let (project, agent) = agent_path(&path)?;
    // Each scrape starts a process: on the main listener, only callers the project trusts
    // may start one (the local daemon's own listener is trusted as the agent's host).
    face.gros.check_network(&project, caller(&request, &face))?;
    daemon_scrape(&request, &face, &project, &agent, Daemon::Shared).await
}

async fn daemon_status(
    face: &GrosFace,
    project: &ProjectKey,
    agent: &AgentName,
    daemon: Daemon,
) -> Result<HttpResponse, AgentError> {
    if face.gros.scraping(project, agent, daemon).await? {
        Ok(HttpResponse::Ok().json(GrosAgentOk {
            ok: true,
            message: Some("Scrape process is running".into()),
        }))
    } else {
        Ok(HttpResponse::ServiceUnavailable().json(GrosAgentOk {
            ok: false,
            message: Some("No scrape process is running".into()),
        }))
    }
}

/// The daemon's `411` (CherryPy's): a request of a method that carries a body (POST, PUT,
/// PATCH) that says neither its length nor that it is chunked is refused on every path of the
/// daemon, before its route or any other check, as upstream reads bodies before handlers run.
pub async fn length_required(
    request: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use actix_web::http::Method;
    // HTTP/2 frames every body, so only HTTP/1 requests can leave their length unsaid.
    let carries_body = [Method::POST, Method::PUT, Method::PATCH].contains(request.method())
        && request.version() < actix_web::http::Version::HTTP_2;
    let headers = request.headers();
    if carries_body
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
    {
        let refusal = AgentError::new(
            StatusCode::LENGTH_REQUIRED,
            "Client must specify Content-Length",
        )
        .error_response();
        return Ok(request.into_response(refusal));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// The host and method checks of `/scrape`, in the daemon's order; `host` is the `Host`
/// header required, if any.
fn check_scrape_request(request: &HttpRequest, host: Option<&str>) -> Result<(), AgentError> {
    if let Some(expected) = host {
        let given = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given != expected {
            return Err(AgentError::new(
                StatusCode::FORBIDDEN,
                "Invalid Host header",
            ));
        }
    }
    if request.method() != actix_web::http::Method::POST {
        return Err(AgentError::new(StatusCode::BAD_REQUEST, "Must be POSTed"));
    }
    Ok(())
}

async fn daemon_scrape(
    request: &HttpRequest,
    face: &GrosFace,
    project: &ProjectKey,
    agent: &AgentName,
    daemon: Daemon,
) -> Result<HttpResponse, AgentError> {
    face.gros
        .scrape(project, agent, daemon, metadata(request))
        .await?;
    Ok(HttpResponse::Created().json(GrosAgentOk {
        ok: true,
        message: None,
    }))
}

async fn local_status(face: web::Data<GrosFace>) -> Result<HttpResponse, AgentError> {
    let (project, agent) = local(&face)?;
    daemon_status(&face, project, agent, Daemon::Local).await
}

async fn local_scrape(
    request: HttpRequest,
    face: web::Data<GrosFace>,
) -> Result<HttpResponse, AgentError> {
    check_scrape_request(&request, face.host.as_deref())?;
    let (project, agent) = local(&face)?;
    daemon_scrape(&request, &face, project, agent, Daemon::Local).await
}

fn local(face: &GrosFace) -> Result<(&ProjectKey, &AgentName), AgentError> {
    face.local
        .as_ref()
        .map(|(project, agent)| (project, agent))
        .ok_or_else(|| AgentError::new(StatusCode::NOT_FOUND, "No local agent is configured"))
}

async fn local_not_found(request: HttpRequest) -> HttpResponse {
    AgentError::new(
        StatusCode::NOT_FOUND,
        format!("The path '{}' was not found.", request.path()),
    )
    .error_response()
}

/// Serves the local agent's daemon (`/status`, `/scrape`) on a listener of its own.
pub fn serve_agent(
    listener: TcpListener,
    face: web::Data<GrosFace>,
    listening: crate::http::Listening,
) -> std::io::Result<actix_web::dev::Server> {
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(face.clone())
            .app_data(listening)
            .wrap(actix_web::middleware::from_fn(length_required))
            .wrap(actix_web::middleware::from_fn(crate::http::count_request))
            .wrap(actix_web::middleware::from_fn(crate::http::every_request))
            .service(web::resource(["/status", "/status/"]).to(local_status))
            .service(web::resource(["/scrape", "/scrape/"]).to(local_scrape))
            .default_service(web::to(local_not_found))
    })
    .listen(listener)?;
    Ok(server.shutdown_timeout(30).disable_signals().run())
}
