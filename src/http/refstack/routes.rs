//! The face's handlers and the routes that reach them; `mod.rs` says what the face is.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::results::read_model::ResultRow;
use crate::domain::results::Results;
use crate::domain::testrun::service::{parse_test_id, TestRunsError};
use crate::domain::testrun::{Cloud, CloudSpec, StatusMessage, TestRunState, TestRuns};
use crate::http::body::read_body;
use crate::http::caller::{guarded, Authorized, Gate, Sent, Visit};

/// What the face's handlers share.
pub struct Refstack {
    pub runs: TestRuns,
    /// The later API's submitted results.
    pub results: Results,
    /// Who may call, and the largest body the handlers read.
    pub gate: Gate,
    /// The largest `post-result` body, in bytes.
    pub max_upload: usize,
}

// Every error body is `{"title", "code"}`.
guarded!(
    Refstack,
    "the test results face is not configured",
    RefstackError,
    |status, message| serde_json::json!({ "title": message, "code": status.as_u16() })
);

/// The paths of the 2014 routes, served under `/v1` and at the root.
pub const UPDATE_STATUS: &str = "/update-test-status/{test_id}";
pub const POST_RESULT: &str = "/post-result";
pub const GET_MINICONF: &str = "/get-miniconf";
pub const GET_TESTCASES: &str = "/get-testcases";

/// The routes of the face.
pub fn routes(router: &mut crate::http::Router) {
    use actix_web::http::Method;
    let only = crate::http::only::<Refstack>;
    for prefix in ["/v1", ""] {
        for (path, method, handler) in [
            (UPDATE_STATUS, Method::POST, web::to(update_status)),
            (POST_RESULT, Method::POST, web::to(post_result)),
            (GET_MINICONF, Method::GET, web::to(get_miniconf)),
            (GET_TESTCASES, Method::GET, web::to(get_testcases)),
        ] {
            router.resource(&format!("{prefix}{path}"), [(method, handler)], only);
        }
    }
    for (path, method, handler) in [
        ("/v1/test-runs", Method::POST, web::to(open_run)),
        ("/v1/test-runs/{test_id}", Method::GET, web::to(get_run)),
        (
            "/v1/test-runs/{test_id}/uploads/{upload_id}",
            Method::GET,
            web::to(get_upload),
        ),
        (
            "/v1/test-runs/{test_id}/uploads/{upload_id}/tests",
            Method::GET,
            web::to(get_upload_tests),
        ),
        ("/v1/results/schema", Method::GET, web::to(results_schema)),
    ] {
        router.resource(path, [(method, handler)], only);
    }
    // Upstream's collection controller serves both spellings, and refstack-client uses the
    // one with the slash for both methods.
    for collection in ["/v1/results", "/v1/results/"] {
        router.resource(
            collection,
            [
                (Method::GET, web::to(list_results)),
                (Method::POST, web::to(submit_results)),
            ],
            only,
        );
    }
    router.resource(
        "/v1/results/{id}",
        [(Method::GET, web::to(get_results))],
        only,
    );
}

/// Opens a test run for a cloud.
#[utoipa::path(post, path = "/v1/test-runs", operation_id = "refstack_open_run",
    summary = "Open a test run for a cloud", description = super::openapi::OPEN_DESCRIPTION,
    request_body(content = super::openapi::RefstackCloud, content_type = "application/json",
        description = "The cloud, at most `[refstack] max_body_kb` KiB. Never a password."),
    responses(
        (status = 201, description = "Opened: the test id the v1 routes take.",
            body = super::openapi::RefstackOpened),
        (status = 400, description = "Not a cloud: bad JSON, an unknown or missing key, an \
            empty name, a field too long, or a tempest option naming a password.",
            body = super::openapi::RefstackErrorBody),
        (status = 413, description = "The body is over `[refstack] max_body_kb`.",
            body = super::openapi::RefstackErrorBody)))]
async fn open_run(
    request: HttpRequest,
    Sent { caller, face, body }: Sent<Refstack>,
) -> Result<HttpResponse, RefstackError> {
    let spec: CloudSpec = serde_json::from_slice(&body)
        .map_err(|e| RefstackError::bad_request(format!("not a cloud: {e}")))?;
    let cloud = Cloud::parse(spec)?;
    let metadata = crate::http::metadata(&request, &caller);
    let test_id = face.runs.open(Some(cloud), caller.user, metadata).await?;
    Ok(HttpResponse::Created().json(super::openapi::RefstackOpened { test_id }))
}

#[derive(Deserialize, Default)]
struct StatusForm {
    status: Option<String>,
    finished: Option<String>,
}

/// The 2014 client's booleans: Python's `str(True)` and the usual spellings.
fn parse_flag(raw: Option<&str>) -> Result<bool, RefstackError> {
    match raw.map(|r| r.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("false") | Some("0") | Some("no") | Some("off") => Ok(false),
        Some("true") | Some("1") | Some("yes") | Some("on") => Ok(true),
        Some(_) => Err(RefstackError::bad_request(
            "`finished` must be true or false",
        )),
    }
}

/// Records a test run's status.
#[utoipa::path(post, path = "/v1/update-test-status/{test_id}",
    operation_id = "refstack_update_status",
    summary = "Update a test run's status", description = super::openapi::STATUS_DESCRIPTION,
    params(super::openapi::TestIdPath),
    request_body(content = super::openapi::RefstackStatusForm,
        content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 201, description = "Saved; the body is empty."),
        (status = 400, description = "`Invalid test ID` (no test run has this id), an empty \
            or missing status, a status over 4096 bytes, or `finished` not a boolean.",
            body = super::openapi::RefstackErrorBody),
        (status = 413, description = "The body is over `[refstack] max_body_kb`.",
            body = super::openapi::RefstackErrorBody)))]
async fn update_status(
    request: HttpRequest,
    test_id: web::Path<String>,
    Sent { caller, face, body }: Sent<Refstack>,
) -> Result<HttpResponse, RefstackError> {
    let parse = |text: &str| {
        web::Query::<StatusForm>::from_query(text)
            .map(web::Query::into_inner)
            .map_err(|e| RefstackError::bad_request(format!("bad form: {e}")))
    };
    // The form body first; the query string as the 2014 code read it.
    let form = if body.is_empty() {
        StatusForm::default()
    } else {
        parse(
            std::str::from_utf8(&body)
                .map_err(|_| RefstackError::bad_request("the form body is not UTF-8"))?,
        )?
    };
    let query = parse(request.query_string())?;
    let status = form.status.or(query.status).unwrap_or_default();
    let finished = parse_flag(form.finished.or(query.finished).as_deref())?;
    let test_id = parse_test_id(&test_id)?;
    let message = StatusMessage::parse(&status)?;
    let metadata = crate::http::metadata(&request, &caller);
    face.runs
        .update_status(test_id, message, finished, caller.user, metadata)
        .await?;
    Ok(HttpResponse::Created().finish())
}

#[derive(Deserialize)]
struct TestIdQuery {
    test_id: Option<String>,
}

/// Takes an upload of test results.
#[utoipa::path(post, path = "/v1/post-result", operation_id = "refstack_post_result",
    summary = "Upload test results", description = super::openapi::POST_RESULT_DESCRIPTION,
    params(super::openapi::OptionalTestIdQuery),
    request_body(description = "A `multipart/form-data` body whose `file` field is the \
        results, or the results as the whole body (any other content type). At most \
        `[refstack] max_upload_kb` KiB.",
        content(
            (super::openapi::RefstackResults = "application/json"),
            (super::openapi::RefstackBinary = "application/octet-stream"),
            (super::openapi::RefstackMultipart = "multipart/form-data"))),
    responses(
        (status = 201, description = "Saved: the run it was recorded on, the upload's id, \
            and what was read from it.", body = super::openapi::RefstackUploaded),
        (status = 400, description = "No file was posted, a malformed multipart envelope, \
            results that cannot be parsed (the title says why and where), or `Invalid test \
            ID`.", body = super::openapi::RefstackErrorBody),
        (status = 413, description = "The body is over `[refstack] max_upload_kb`.",
            body = super::openapi::RefstackErrorBody),
        (status = 500, description = "The upload could not be stored.",
            body = super::openapi::RefstackErrorBody)))]
async fn post_result(
    Visit { caller, face }: Visit<Refstack>,
    request: HttpRequest,
    query: web::Query<TestIdQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, RefstackError> {
    let test_id = match query.test_id.as_deref().filter(|id| !id.is_empty()) {
        Some(raw) => Some(parse_test_id(raw)?),
        None => None,
    };
    let body = read_body(&request, payload, face.max_upload).await?;
    let mime = request
        .mime_type()
        .map_err(|e| RefstackError::bad_request(format!("bad content type: {e}")))?;
    let file = match mime {
        Some(mime)
            if mime.type_() == actix_web::mime::MULTIPART
                && mime.subtype() == actix_web::mime::FORM_DATA =>
        {
            let boundary = mime.get_param(actix_web::mime::BOUNDARY);
            super::multipart::file_field(&body, boundary.as_ref().map(|b| b.as_str()))?
        }
        _ => body,
    };
    if file.is_empty() {
        return Err(RefstackError::bad_request("No file was posted"));
    }
    let metadata = crate::http::metadata(&request, &caller);
    let accepted = face
        .runs
        .upload(test_id, file, caller.user, metadata)
        .await?;
    Ok(
        HttpResponse::Created().json(super::openapi::RefstackUploaded {
            test_id: accepted.test_id,
            upload_id: accepted.upload_id,
            format: accepted.run.format,
            summary: accepted.run.summary,
            duration_seconds: accepted.run.duration_seconds,
        }),
    )
}

/// The tempest configuration fragment of a test run's cloud.
#[utoipa::path(get, path = "/v1/get-miniconf", operation_id = "refstack_get_miniconf",
    summary = "A test run's tempest configuration", description = super::openapi::MINICONF_DESCRIPTION,
    params(super::openapi::TestIdQuery),
    responses(
        (status = 200, description = "`{section: {key: value}}` on a single line, with \
            `Content-Disposition: attachment; filename=miniconf.json`.",
            body = super::openapi::RefstackMiniconf),
        (status = 400, description = "`Invalid test ID`: missing, not a test run's, or a run \
            of an anonymous upload (it has no cloud).", body = super::openapi::RefstackErrorBody)))]
async fn get_miniconf(
    Visit { face, .. }: Visit<Refstack>,
    query: web::Query<TestIdQuery>,
) -> Result<HttpResponse, RefstackError> {
    let test_id = parse_test_id(query.test_id.as_deref().unwrap_or_default())?;
    let state = face.runs.get(test_id).await?;
    let cloud = state
        .opened
        .and_then(|opened| opened.cloud)
        .ok_or(TestRunsError::UnknownRun)?;
    // serde_json's compact form is one line: clients read only the first.
    let body = serde_json::to_string(&cloud.miniconf())
        .map_err(|e| RefstackError::bad_request(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename("miniconf.json".into())],
        })
        .body(body))
}

/// The test suites a client may run.
#[utoipa::path(get, path = "/v1/get-testcases", operation_id = "refstack_get_testcases",
    summary = "The test suites to run", description = super::openapi::TESTCASES_DESCRIPTION,
    responses((status = 200, description = "Always `{\"testcases\": [\"tempest\"]}`.",
        body = super::openapi::RefstackTestcases)))]
async fn get_testcases(_: Authorized<Refstack>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "testcases": ["tempest"] }))
}

fn run_view(test_id: Uuid, state: TestRunState) -> Option<super::openapi::RefstackRun> {
    let opened = state.opened?;
    Some(super::openapi::RefstackRun {
        test_id,
        cloud: opened.cloud.map(|cloud| cloud.name().to_owned()),
        opened_at: opened.at,
        ended_at: state.ended_at,
        statuses: state
            .statuses
            .into_iter()
            .map(|s| super::openapi::RefstackStatus {
                status: s.message,
                finished: s.finished,
                at: s.at,
            })
            .collect(),
        uploads: state
            .uploads
            .into_iter()
            .map(|u| super::openapi::RefstackUpload {
                upload_id: u.upload_id,
                format: u.upload.format,
                summary: u.upload.summary,
                duration_seconds: u.upload.duration_seconds,
                sha256: u.upload.blob.sha256.to_string(),
                size: u.upload.blob.size,
                at: u.at,
            })
            .collect(),
    })
}

/// The face's own routes answer an unknown run 404, the spec's routes 400.
/// A test run's id and one of its uploads' ids, from a path; a malformed one names nothing.
fn upload_ids((test_id, upload_id): (String, String)) -> Result<(Uuid, Uuid), RefstackError> {
    let test_id = parse_test_id(&test_id).map_err(not_found)?;
    let upload_id =
        Uuid::parse_str(&upload_id).map_err(|_| RefstackError::not_found("no such upload"))?;
    Ok((test_id, upload_id))
}

fn not_found(error: TestRunsError) -> RefstackError {
    match error {
        TestRunsError::UnknownRun => RefstackError::not_found("no such test run"),
        other => other.into(),
    }
}

/// A test run: its cloud, statuses and uploads.
#[utoipa::path(get, path = "/v1/test-runs/{test_id}", operation_id = "refstack_get_run",
    summary = "A test run", description = super::openapi::RUN_DESCRIPTION,
    params(super::openapi::TestIdPath),
    responses(
        (status = 200, description = "The run.", body = super::openapi::RefstackRun),
        (status = 404, description = "No test run has this id.",
            body = super::openapi::RefstackErrorBody)))]
async fn get_run(
    Visit { face, .. }: Visit<Refstack>,
    test_id: web::Path<String>,
) -> Result<HttpResponse, RefstackError> {
    let test_id = parse_test_id(&test_id).map_err(not_found)?;
    let state = face.runs.get(test_id).await.map_err(not_found)?;
    let view = run_view(test_id, state).ok_or_else(|| not_found(TestRunsError::UnknownRun))?;
    Ok(HttpResponse::Ok().json(view))
}

/// An upload's bytes, exactly as they were uploaded.
#[utoipa::path(get, path = "/v1/test-runs/{test_id}/uploads/{upload_id}",
    operation_id = "refstack_get_upload",
    summary = "An upload, byte for byte", description = super::openapi::UPLOAD_DESCRIPTION,
    params(super::openapi::TestIdPath, super::openapi::UploadIdPath),
    responses(
        (status = 200, description = "The raw upload.", body = Vec<u8>,
            content_type = "application/octet-stream"),
        (status = 404, description = "No test run has this id, or it has no such upload.",
            body = super::openapi::RefstackErrorBody),
        (status = 500, description = "The stored upload is missing or damaged.",
            body = super::openapi::RefstackErrorBody)))]
async fn get_upload(
    Visit { face, .. }: Visit<Refstack>,
    ids: web::Path<(String, String)>,
) -> Result<HttpResponse, RefstackError> {
    let (test_id, upload_id) = upload_ids(ids.into_inner())?;
    let bytes = face
        .runs
        .raw_upload(test_id, upload_id)
        .await
        .map_err(not_found)?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(bytes))
}

/// An upload's tests, each with its outcome, read again from the stored bytes.
#[utoipa::path(get, path = "/v1/test-runs/{test_id}/uploads/{upload_id}/tests",
    operation_id = "refstack_get_upload_tests",
    summary = "An upload's tests and their outcomes",
    description = super::openapi::UPLOAD_TESTS_DESCRIPTION,
    params(super::openapi::TestIdPath, super::openapi::UploadIdPath),
    responses(
        (status = 200, description = "The upload's tests.",
            body = super::openapi::RefstackUploadTests),
        (status = 404, description = "No test run has this id, or it has no such upload.",
            body = super::openapi::RefstackErrorBody),
        (status = 500, description = "The stored upload is missing or damaged, or no longer \
            reads under the face's current limits.",
            body = super::openapi::RefstackErrorBody)))]
async fn get_upload_tests(
    Visit { face, .. }: Visit<Refstack>,
    ids: web::Path<(String, String)>,
) -> Result<HttpResponse, RefstackError> {
    let (test_id, upload_id) = upload_ids(ids.into_inner())?;
    let run = match face.runs.upload_tests(test_id, upload_id).await {
        Ok(run) => run,
        // It was read when it was taken: what no longer reads is annals' problem.
        Err(TestRunsError::Unparseable(error)) => {
            return Err(RefstackError::internal(format!(
                "the stored upload no longer reads: {error}"
            )))
        }
        Err(error) => return Err(not_found(error)),
    };
    Ok(
        HttpResponse::Ok().json(super::openapi::RefstackUploadTests {
            format: run.format,
            summary: run.summary,
            duration_seconds: run.duration_seconds,
            tests: run
                .tests
                .into_iter()
                .map(|test| super::openapi::RefstackTest {
                    name: test.id,
                    status: test.status,
                    outcome: test.outcome,
                    duration_seconds: test.duration_seconds,
                })
                .collect(),
        }),
    )
}

/// Where the Refstack web UI shows a result: `<scheme>://<host>/#/results/<id>`.
fn result_url(request: &HttpRequest, id: Uuid) -> String {
    let info = request.connection_info();
    format!("{}://{}/#/results/{id}", info.scheme(), info.host())
}

fn header(request: &HttpRequest, name: &str) -> Result<Option<String>, RefstackError> {
    request
        .headers()
        .get(name)
        .map(|value| {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| RefstackError::bad_request(format!("{name} is not ASCII")))
        })
        .transpose()
}

/// Takes refstack-client's results.
#[utoipa::path(post, path = "/v1/results/", operation_id = "refstack_submit_results",
    summary = "Submit results", description = super::openapi::SUBMIT_DESCRIPTION,
    params(super::openapi::SignatureHeaders),
    request_body(content = super::openapi::RefstackResults, content_type = "application/json",
        description = "At most `[refstack] max_upload_kb` KiB."),
    responses(
        (status = 201, description = "Saved: its id and where the web UI shows it.",
            body = super::openapi::RefstackSubmitted),
        (status = 400, description = "Not results (a missing or unknown key, a bad type, \
            empty `results`: `Uploaded results must contain at least one passing test.`), or \
            a signature that is not hex, a key that is not an OpenSSH RSA key or is over \
            16,384 bits, a signature that does not verify, or only one of the two headers.",
            body = super::openapi::RefstackErrorBody),
        (status = 413, description = "The body is over `[refstack] max_upload_kb`.",
            body = super::openapi::RefstackErrorBody),
        (status = 500, description = "The body could not be stored.",
            body = super::openapi::RefstackErrorBody)))]
async fn submit_results(
    Visit { caller, face }: Visit<Refstack>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, RefstackError> {
    let signature = header(&request, "X-Signature")?;
    let public_key = header(&request, "X-Public-Key")?;
    let body = read_body(&request, payload, face.max_upload).await?;
    let metadata = crate::http::metadata(&request, &caller);
    let id = face
        .results
        .submit(body, signature, public_key, caller.user, metadata)
        .await?;
    Ok(
        HttpResponse::Created().json(super::openapi::RefstackSubmitted {
            test_id: id,
            url: result_url(&request, id),
        }),
    )
}

fn meta(row: &ResultRow) -> super::openapi::RefstackMeta {
    super::openapi::RefstackMeta {
        public_key: row.submitted.public_key.clone(),
    }
}

/// Submitted results, newest first.
#[utoipa::path(get, path = "/v1/results", operation_id = "refstack_list_results",
    summary = "Submitted results", description = super::openapi::LIST_DESCRIPTION,
    params(super::openapi::ListParams),
    responses(
        (status = 200, description = "One page, newest first.", body = super::openapi::RefstackResultsPage),
        (status = 400, description = "`Invalid page number: …` (not an integer, not above \
            zero, or past the last page), `Invalid date format: …`, `Invalid dates: start_date \
            more than end_date`, or `signed` without an account (`To see signed test results \
            you need to authenticate`).",
            body = super::openapi::RefstackErrorBody)))]
async fn list_results(
    Visit { caller, face }: Visit<Refstack>,
    request: HttpRequest,
) -> Result<HttpResponse, RefstackError> {
    let (page, filter) = super::list::parse(request.query_string(), &caller)?;
    let page = face.results.page(page, &filter)?;
    let results = page
        .rows
        .iter()
        .map(|row| super::openapi::RefstackResultRow {
            id: row.id,
            created_at: super::list::shown_time(row.created_at),
            duration_seconds: row.submitted.duration_seconds,
            meta: meta(row),
            url: result_url(&request, row.id),
        })
        .collect();
    Ok(
        HttpResponse::Ok().json(super::openapi::RefstackResultsPage {
            results,
            pagination: super::openapi::RefstackPagination {
                current_page: page.current_page,
                total_pages: page.total_pages,
            },
        }),
    )
}

/// The schema of what `POST /v1/results/` takes.
#[utoipa::path(get, path = "/v1/results/schema", operation_id = "refstack_results_schema",
    summary = "The schema of submitted results", description = super::openapi::SCHEMA_DESCRIPTION,
    responses((status = 200, description = "A JSON schema (draft 4).",
        body = super::openapi::RefstackSchema)))]
async fn results_schema(_: Authorized<Refstack>) -> HttpResponse {
    HttpResponse::Ok().json(crate::testresults::upload_schema())
}

/// One submission with its tests.
#[utoipa::path(get, path = "/v1/results/{id}", operation_id = "refstack_get_results",
    summary = "Submitted results, with their tests", description = super::openapi::GET_RESULTS_DESCRIPTION,
    params(super::openapi::ResultIdPath),
    responses(
        (status = 200, description = "The submission.", body = super::openapi::RefstackResultDetail),
        (status = 404, description = "No results have this id.",
            body = super::openapi::RefstackErrorBody),
        (status = 500, description = "The stored body is missing or damaged.",
            body = super::openapi::RefstackErrorBody)))]
async fn get_results(
    Visit { face, .. }: Visit<Refstack>,
    request: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, RefstackError> {
    let id =
        Uuid::parse_str(&id).map_err(|_| RefstackError::not_found(format!("no results {id}")))?;
    let (row, tests) = face.results.get(id).await?;
    Ok(
        HttpResponse::Ok().json(super::openapi::RefstackResultDetail {
            id: row.id,
            created_at: super::list::shown_time(row.created_at),
            duration_seconds: row.submitted.duration_seconds,
            meta: meta(&row),
            url: result_url(&request, row.id),
            results: tests.into_iter().map(|test| test.name).collect(),
            cpid: row.submitted.cpid,
        }),
    )
}
