//! The scan engine face's part of the OpenAPI document: the bodies its handlers write (these
//! very types), its parameters, the `/engine/<name>/` spelling as a copy of each
//! `/engines/<name>/` route, and the face's security. It only describes; `tests/api/openapi.rs`
//! checks real answers against these schemas.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::response::Response;
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{IntoParams, Modify, ToSchema};

use crate::http::openapi::{path_operations, CommonAnswers, NOT_ALLOWED};

/// The face's routes, their schemas, and who may use them.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::engines,
        super::redirect,
        super::index,
        super::status,
        super::scan_status,
        super::info,
        super::reloadconfig,
        super::liveness,
        super::readiness,
        super::test,
        super::startscan,
        super::getfindings,
        super::getreport,
        super::stop,
        super::stopscans,
        super::clean,
        super::clean_scan
    ),
    components(schemas(
        PatrowlEngines,
        PatrowlEngineScans,
        PatrowlPage,
        PatrowlEngine,
        PatrowlScanRow,
        PatrowlStatus,
        PatrowlInfo,
        PatrowlReload,
        PatrowlTest,
        PatrowlStartScan,
        PatrowlAsset,
        PatrowlIdValue,
        PatrowlAccepted,
        PatrowlScanId,
        PatrowlScanStatus,
        PatrowlFindings,
        PatrowlFindingsAnswer,
        PatrowlFindingsScan,
        PatrowlSummary,
        PatrowlIssue,
        PatrowlTarget,
        PatrowlIssueMetadata,
        PatrowlStopped,
        PatrowlStopAnswer,
        PatrowlNotRunning,
        PatrowlDone,
        PatrowlIds,
        PatrowlCleaned,
        PatrowlErrorBody,
        PatrowlReason
    )),
    tags((name = "patrowl", description = TAG)),
    modifiers(&FaceWide)
)]
pub struct PatrowlApi;

pub const TAG: &str = "The scan engine face: Patrowl engines, as PatrowlManager drives them. \
Each engine of `[[patrowl.engines]]` is served at `/engines/<name>/` and, as Patrowl's prose \
documentation spells it, `/engine/<name>/`; both answer exactly the same. A manager pointed at \
`http://host:port/engines/<name>/` runs its whole job unchanged: `status`, `startscan`, polls \
of `status/<id>`, `getfindings/<id>`, `getreport/<id>`.\n\n\
Every scan is an entity whose events (request, progress, every finding, end, cleaning) stay in \
the log: a cleaned scan leaves the engine's list but not the log. Every error body is \
`{\"page\", \"status\": \"error\" or \"refused\", \"reason\"}`; a path under `/engines/<name>/` \
that is no route, or an unknown engine, answers 404 in that body (upstream answers 200 \
`{\"page\": \"not found\"}`).\n\n\
Open to anyone by default, since PatrowlManager sends no credentials. Once accounts exist, \
`[patrowl] auth` may ask for them, and `stop`, `stopscans`, `clean` and `clean/<id>` always \
need an admin.";

pub const ENGINES_DESCRIPTION: &str = "Every engine of `[[patrowl.engines]]`, by name, with \
its scans (those not cleaned) counted by status, from the read model of scans: the web \
console's overview. annals' own route; PatrowlManager does not call it.";

pub const STATUS_DESCRIPTION: &str = "The engine's state and every scan it knows (not \
cleaned). `BUSY` when its STARTED and SCANNING scans reach `max_scans`; `ERROR` when it \
cannot scan (a `command` engine whose program is missing, or the read model of scans \
stopped); `READY` otherwise. PatrowlManager reads the top-level `status`. Sent gzipped \
(`Content-Encoding: gzip`) to a client whose `Accept-Encoding` takes it.";

pub const STARTSCAN_DESCRIPTION: &str = "Starts a scan of the assets with the options (an \
object, or an object as a JSON string), over the engine's default options. `scan_id` and each \
asset's `id` may be numbers or strings. Accepted once the request is durable and in `status`; \
the work runs after, each finding recorded as it is found. Refused, with the reason, when there \
is no asset, an asset's datatype is not one the engine scans, the options or an asset cannot be \
scanned (such as a port out of range, a range over `max_hosts`), or the scan id is in use on \
this engine: its scan runs, or ended and its report was not fetched nor the scan cleaned (400 \
or 409, `status: refused`); once fetched or cleaned, the id starts a new scan (the earlier \
one's history stays in the log); 503 when the engine is busy or in \
ERROR.";

pub const FINDINGS_DESCRIPTION: &str = "The findings of an ended scan (FINISHED, ERROR or \
STOPPED: what was found until it ended), numbered from 1 in the order found, with their count \
by severity. A scan still running answers 200 with `status: error`, as Patrowl engines do; an \
unknown or cleaned scan 404.";

pub const REPORT_DESCRIPTION: &str = "The report of an ended scan: by default a ZIP archive \
holding `findings.json` (the `getfindings` body) and the scanner's raw outputs under `raw/`; \
the `getfindings` body itself when the request's `Accept` names `application/json`. Both come \
as an attachment named `<engine>_<id>.zip` or `.json`. The scan stays known afterwards.";

pub const CLEAN_DESCRIPTION: &str = "Removes every scan of the engine from its list, stopping \
those that run first. Their history stays in the log. Needs an admin once accounts exist.";

/// `{name}` and `{scan_id}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EnginePath {
    /// An engine's name, as `[[patrowl.engines]]` configures it.
    #[param(example = "tcp")]
    pub name: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ScanPath {
    /// An engine's name, as `[[patrowl.engines]]` configures it.
    #[param(example = "tcp")]
    pub name: String,
    /// A scan's id, as `startscan` was given it.
    #[param(example = "1")]
    pub scan_id: String,
}

/// `{"page": "index"}`, and the liveness and readiness answers.
#[derive(ToSchema, Serialize)]
pub struct PatrowlPage {
    #[schema(example = "index")]
    pub page: &'static str,
    /// `success`, or `error` when not ready; absent on the index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

/// An engine's configuration as its `status`, `info` and `reloadconfig` show it.
#[derive(ToSchema, Serialize, Clone)]
pub struct PatrowlEngine {
    #[schema(example = "tcp")]
    pub name: String,
    pub version: String,
    pub description: String,
    /// `tcp`, `http`, `nmap` or `command`.
    pub scanner: String,
    pub allowed_asset_types: Vec<&'static str>,
    /// The most scans STARTED or SCANNING at once.
    pub max_scans: usize,
    /// The options every scan gets.
    #[schema(value_type = Object)]
    pub options: Value,
    /// READY, BUSY or ERROR.
    #[schema(example = "READY")]
    pub status: &'static str,
}

/// One scan in an engine's list.
#[derive(ToSchema, Serialize)]
pub struct PatrowlScanRow {
    /// STARTED, SCANNING, FINISHED, ERROR or STOPPED.
    #[schema(example = "FINISHED")]
    pub status: &'static str,
    /// The options in effect.
    #[schema(value_type = Object)]
    pub options: Value,
    pub nb_findings: u64,
    /// Why an ERROR scan failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /engines`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlEngines {
    pub engines: Vec<PatrowlEngineScans>,
}

/// One engine's scans by status.
#[derive(ToSchema, Serialize)]
pub struct PatrowlEngineScans {
    #[schema(example = "tcp")]
    pub name: String,
    /// How many scans each status has (STARTED, SCANNING, FINISHED, ERROR, STOPPED); a status
    /// no scan has is left out.
    #[schema(example = json!({"FINISHED": 2, "SCANNING": 1}))]
    pub scans: BTreeMap<&'static str, u64>,
}

/// `GET status`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlStatus {
    #[schema(example = "status")]
    pub page: &'static str,
    /// READY, BUSY or ERROR.
    #[schema(example = "READY")]
    pub status: &'static str,
    pub scanner: PatrowlEngine,
    /// By scan id.
    pub scans: BTreeMap<String, PatrowlScanRow>,
}

/// `GET info`: the engine's configuration, with its state at the top level too.
#[derive(ToSchema, Serialize)]
pub struct PatrowlInfo {
    #[schema(example = "info")]
    pub page: &'static str,
    #[schema(example = "READY")]
    pub status: &'static str,
    pub engine_config: PatrowlEngine,
    pub scans: BTreeMap<String, PatrowlScanRow>,
}

/// `GET reloadconfig`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlReload {
    #[schema(example = "reloadconfig")]
    pub page: &'static str,
    pub config: PatrowlEngine,
}

/// `GET test`: the engine's routes.
#[derive(ToSchema, Serialize)]
pub struct PatrowlTest {
    #[schema(example = "test")]
    pub page: &'static str,
    pub routes: Vec<String>,
}

/// A `startscan` body, as PatrowlManager sends it.
#[derive(ToSchema)]
#[schema(example = json!({"assets": [{"id": 1, "value": "127.0.0.1", "criticity": "low",
    "datatype": "ip"}], "options": {"ports": ["9"]}, "engine_id": 1, "scan_id": 1}))]
pub struct PatrowlStartScan {
    #[schema(min_items = 1)]
    pub assets: Vec<PatrowlAsset>,
    /// An object, or an object as a JSON string.
    #[schema(value_type = Option<Object>)]
    pub options: Option<Value>,
    /// PatrowlManager's engine id; not read, so any JSON.
    #[schema(schema_with = any_value)]
    pub engine_id: Option<i64>,
    #[schema(schema_with = scan_id)]
    pub scan_id: PatrowlIdValue,
}

/// An asset's id: a number, a string or null.
fn asset_id() -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::Number,
            Type::String,
            Type::Null,
        ]))
        .description(Some(
            "A number or a string, as text; null or absent for none.",
        ))
}

/// Any JSON value.
fn any_value() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
}

/// A scan id as `startscan` takes it: a number (PatrowlManager's are integers; any other is
/// read as the text JSON gives it), or 1 to `MAX_SCAN_ID_BYTES` bytes of text
/// without a control character or `/`.
fn scan_id() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::{ObjectBuilder, Type};
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::domain::scan::MAX_SCAN_ID_BYTES))
                .pattern(Some("^[^\\u0000-\\u001f\\u007f-\\u009f/]+$")),
        )
        .build()
        .into()
}

/// An id PatrowlManager sends as a number, and test harnesses as a string.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
pub enum PatrowlIdValue {
    Number(i64),
    Text(String),
}

/// One asset of a `startscan` body.
#[derive(ToSchema)]
pub struct PatrowlAsset {
    /// A number or a string, as text; null or absent for none.
    #[schema(schema_with = asset_id)]
    pub id: Option<PatrowlIdValue>,
    /// Not blank.
    #[schema(example = "127.0.0.1", pattern = "\\S")]
    pub value: String,
    /// `low` when not a string.
    #[schema(schema_with = any_value)]
    pub criticity: Option<String>,
    /// ip, ip-range, ip-subnet, fqdn, domain, url, keyword, person, organisation, path or
    /// application.
    #[schema(example = "ip")]
    pub datatype: String,
}

/// `{"scan_id": "..."}`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlScanId {
    pub scan_id: String,
}

/// A started scan.
#[derive(ToSchema, Serialize)]
pub struct PatrowlAccepted {
    #[schema(example = "startscan")]
    pub page: &'static str,
    #[schema(example = "accepted")]
    pub status: &'static str,
    pub details: PatrowlScanId,
}

/// `GET status/<id>`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlScanStatus {
    #[schema(example = "status")]
    pub page: &'static str,
    pub scan_id: String,
    /// STARTED, SCANNING, FINISHED, ERROR or STOPPED.
    #[schema(example = "SCANNING")]
    pub status: &'static str,
    pub nb_findings: u64,
    /// Why an ERROR scan failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The scan a findings body is about.
#[derive(ToSchema, Serialize)]
pub struct PatrowlFindingsScan {
    pub scan_id: String,
    #[schema(example = "FINISHED")]
    pub status: &'static str,
    /// Why an ERROR scan failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Counts of a scan's findings.
#[derive(ToSchema, Serialize)]
pub struct PatrowlSummary {
    pub nb_issues: usize,
    pub nb_info: usize,
    pub nb_low: usize,
    pub nb_medium: usize,
    pub nb_high: usize,
    pub nb_critical: usize,
    pub engine_name: String,
    pub engine_version: String,
}

/// Where an issue is.
#[derive(ToSchema, Serialize)]
pub struct PatrowlTarget {
    /// The asset values concerned, or the hosts of a range or subnet the tcp scanner found.
    pub addr: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_type: Option<String>,
}

/// An issue's metadata.
#[derive(ToSchema, Serialize)]
pub struct PatrowlIssueMetadata {
    pub tags: Vec<String>,
    pub links: Vec<String>,
    #[schema(value_type = Object)]
    pub vuln_refs: Value,
    #[schema(value_type = Object)]
    pub risk: Value,
}

/// One finding, in the shape PatrowlManager imports.
#[derive(ToSchema, Serialize)]
pub struct PatrowlIssue {
    /// From 1, in the order found.
    pub issue_id: u64,
    /// info, low, medium, high or critical.
    #[schema(example = "info")]
    pub severity: &'static str,
    /// certain, firm or tentative (or undefined: an OS guess of the nmap scanner).
    #[schema(example = "certain")]
    pub confidence: &'static str,
    pub title: String,
    pub description: String,
    pub solution: String,
    /// Such as `port_info`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was found, in Unix milliseconds.
    pub timestamp: i64,
    /// What the scanner saw.
    #[schema(value_type = Object)]
    pub raw: Value,
    pub target: PatrowlTarget,
    pub metadata: PatrowlIssueMetadata,
}

/// `GET getfindings/<id>` of an ended scan.
#[derive(ToSchema, Serialize)]
pub struct PatrowlFindings {
    #[schema(example = "getfindings")]
    pub page: &'static str,
    pub scan_id: String,
    #[schema(example = "success")]
    pub status: &'static str,
    pub scan: PatrowlFindingsScan,
    pub summary: PatrowlSummary,
    pub issues: Vec<PatrowlIssue>,
}

/// The findings, or why there are none yet.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
pub enum PatrowlFindingsAnswer {
    Findings(PatrowlFindings),
    NotEnded(PatrowlErrorBody),
}

/// `GET stop/<id>`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlStopped {
    #[schema(example = "stopscan")]
    pub page: &'static str,
    #[schema(example = "SUCCESS")]
    pub status: &'static str,
    pub details: PatrowlScanId,
}

/// The answer of `GET stop/<id>`: stopped, or not running.
#[derive(ToSchema, Serialize)]
#[serde(untagged)]
pub enum PatrowlStopAnswer {
    Stopped(PatrowlStopped),
    NotRunning(PatrowlNotRunning),
}

/// `GET stop/<id>` of a scan that had already ended: 200, as upstream engines answer, with
/// `status` `ERROR` (which PatrowlManager, looking for `error`, takes as nothing to do).
#[derive(ToSchema, Serialize)]
pub struct PatrowlNotRunning {
    #[schema(example = "stopscan")]
    pub page: &'static str,
    #[schema(example = "ERROR")]
    pub status: &'static str,
    #[schema(example = "scan '7' is not running (status=FINISHED)")]
    pub reason: String,
}

/// The scan ids a `stopscans` or `clean` acted on.
#[derive(ToSchema, Serialize)]
pub struct PatrowlIds {
    pub scan_ids: Vec<String>,
}

/// `GET stopscans` and `GET clean`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlDone {
    #[schema(example = "stopscans")]
    pub page: &'static str,
    #[schema(example = "SUCCESS")]
    pub status: &'static str,
    pub details: PatrowlIds,
}

/// `GET clean/<id>`.
#[derive(ToSchema, Serialize)]
pub struct PatrowlCleaned {
    #[schema(example = "clean_scan")]
    pub page: &'static str,
    pub scan_id: String,
    #[schema(example = "removed")]
    pub status: &'static str,
}

/// `{"reason": "..."}`, as `startscan` refusals repeat it.
#[derive(ToSchema, Serialize)]
pub struct PatrowlReason {
    pub reason: String,
}

/// Every error of the face.
#[derive(ToSchema, Serialize)]
#[schema(example = json!({"page": "startscan", "status": "refused",
    "reason": "no assets: a scan needs at least one asset",
    "details": {"reason": "no assets: a scan needs at least one as…"}}))]
pub struct PatrowlErrorBody {
    /// The route's page name, such as `startscan`, `status` or `not found`.
    pub page: &'static str,
    /// `refused` for a scan request the engine will not take, `error` otherwise.
    #[schema(example = "error")]
    pub status: &'static str,
    /// What is wrong, in words meant for the person reading them.
    pub reason: String,
    /// `startscan` repeats the reason here, where PatrowlManager reads it, cut to its first 40
    /// characters (with `…`), as it must fit in PatrowlManager's event message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<PatrowlReason>,
}

/// What every operation of the face shares, and the `/engine/` copies of its routes.
struct FaceWide;

/// Routes that stop or remove scans: admin only once accounts exist.
fn destructive(path: &str) -> bool {
    [
        "/stopscans",
        "/clean",
        "/clean/{scan_id}",
        "/stop/{scan_id}",
    ]
    .iter()
    .any(|end| path.ends_with(end))
}

impl Modify for FaceWide {
    fn modify(&self, document: &mut OpenApi) {
        let plural: Vec<(String, utoipa::openapi::PathItem)> = document
            .paths
            .paths
            .iter()
            .map(|(path, item)| (path.clone(), item.clone()))
            .collect();
        for (path, mut item) in plural {
            let Some(rest) = path.strip_prefix("/engines/") else {
                continue;
            };
            for operation in path_operations(&mut item) {
                operation.operation_id = operation
                    .operation_id
                    .as_ref()
                    .map(|id| format!("{id}_engine"));
                operation.summary = Some(format!("{path}, as spelled /engine/{rest}"));
                operation.description = Some(format!(
                    "`{path}` under `/engine/`, as Patrowl's prose documentation spells it: \
                     it answers exactly the same."
                ));
            }
            document.paths.paths.insert(format!("/engine/{rest}"), item);
        }
        for (path, item) in document.paths.paths.iter_mut() {
            let admin = destructive(path);
            // The redirect to the index holds nothing: open, as `/api/docs` is.
            let redirect = !path.ends_with('/') && path.matches('/').count() == 2;
            for operation in path_operations(item) {
                operation.tags = Some(vec!["patrowl".into()]);
                if redirect {
                    operation
                        .responses
                        .responses
                        .entry("405".into())
                        .or_insert_with(|| {
                            crate::http::openapi::not_allowed_answer(
                                NOT_ALLOWED,
                                "PatrowlErrorBody",
                            )
                        });
                    continue;
                }
                let answers = CommonAnswers {
                    body: "PatrowlErrorBody",
                    open_by: (!admin).then_some("patrowl"),
                    forbidden: if admin {
                        "The account is not an admin."
                    } else {
                        "The account lacks the access `[patrowl] auth` asks for."
                    },
                    not_allowed: Some(NOT_ALLOWED),
                    unavailable: "The credentials could not be checked, or the command was not \
                        recorded (the log or an actor failed).",
                    more: &[(
                        "404",
                        "No engine has this name (or, for a scan's route, no such scan).",
                    )],
                };
                answers.apply(operation, "patrowl");
            }
        }
    }
}

pub fn error(description: &str) -> RefOr<Response> {
    crate::http::openapi::error_answer(description, "PatrowlErrorBody")
}
