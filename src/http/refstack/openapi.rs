//! The test results face's part of the OpenAPI document: its routes' parameters, answers and
//! body schemas for the `#[utoipa::path]` attributes on the handlers in `mod.rs`, the 2014
//! spellings without `/v1` as copies of the prefixed routes, and the face's security. It only
//! describes; `tests/api/openapi.rs` checks real answers against these schemas.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::http::openapi::{CommonAnswers, NOT_ALLOWED};
use crate::testresults::{Format, Outcome, Status, Summary};
use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
use utoipa::openapi::{ObjectBuilder, OpenApi, RefOr, Schema, Type};
use utoipa::{IntoParams, Modify, ToSchema};

/// The face's routes, their schemas, and who may use them.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::open_run,
        super::update_status,
        super::post_result,
        super::get_miniconf,
        super::get_testcases,
        super::get_run,
        super::get_upload,
        super::get_upload_tests,
        super::submit_results,
        super::list_results,
        super::results_schema,
        super::get_results
    ),
    components(schemas(
        RefstackCloud,
        RefstackOpened,
        RefstackResults,
        RefstackResult,
        RefstackStatusForm,
        RefstackBinary,
        RefstackMultipart,
        RefstackUploaded,
        RefstackFormat,
        Summary,
        RefstackMiniconf,
        RefstackTestcases,
        RefstackRun,
        RefstackStatus,
        RefstackUpload,
        RefstackUploadTests,
        RefstackTest,
        RefstackStatusBucket,
        RefstackOutcome,
        RefstackSubmitted,
        RefstackResultsPage,
        RefstackResultRow,
        RefstackPagination,
        RefstackResultDetail,
        RefstackMeta,
        RefstackSchema,
        RefstackErrorBody
    )),
    tags((name = "refstack", description = TAG)),
    modifiers(&FaceWide)
)]
pub struct RefstackApi;

pub const TAG: &str = "The test results face: test runs of a cloud, their status updates and \
their uploaded results, as the Refstack v1 API and refstack-client speak them. The 2014 \
routes (`update-test-status`, `post-result`, `get-miniconf`, `get-testcases`) are served under \
`/v1/` and, as the 2014 server served them, without the prefix; `get-script` is not served. \
The spec needs a test id per cloud: `POST /v1/test-runs` opens a run for a cloud and gives it.\n\n\
Uploads are recognised by content: subunit v2 (binary), subunit v1 (text), refstack-client's \
JSON results and the 2014 server's JSON parsed results. The raw upload is kept whole and can \
be downloaded again byte for byte.\n\n\
Every error body is `{\"title\": \"...\", \"code\": N}`; a method a route does not take answers \
405 in that body. Open to anyone by default, since refstack-client sends no credentials; once \
accounts exist, `[refstack] auth = \"account\"` or `\"admin\"` makes every route ask for them.";

/// The 2014 spelling of each `/v1/` route, and its operation id.
const UNPREFIXED: &[(&str, &str, &str)] = &[
    (
        "/update-test-status/{test_id}",
        "/v1/update-test-status/{test_id}",
        "refstack_update_status_2014",
    ),
    (
        "/post-result",
        "/v1/post-result",
        "refstack_post_result_2014",
    ),
    (
        "/get-miniconf",
        "/v1/get-miniconf",
        "refstack_get_miniconf_2014",
    ),
    (
        "/get-testcases",
        "/v1/get-testcases",
        "refstack_get_testcases_2014",
    ),
];

pub const OPEN_DESCRIPTION: &str = "Opens a test run for a cloud and answers its test id, which \
`update-test-status`, `post-result` and `get-miniconf` take. The cloud is described by its \
identity endpoints, its test, alternate and admin user names, and extra tempest options \
(`{section: {key: value}}`), which `get-miniconf` merges into the tempest configuration it \
serves. Never a password: a tempest option whose key contains `password` is refused, and the \
client that runs tempest keeps its passwords. The description is recorded with the run, so \
the run keeps it whatever happens later.";

pub const STATUS_DESCRIPTION: &str = "Records a status update of a test run: `status` (a \
message, not blank, at most 4096 bytes) and `finished` (`true`, `1`, `yes` or `on`; anything \
else given is refused, absent is false), from a form body \
(`application/x-www-form-urlencoded`, as in `curl --data \"status=test complete\"`) or else \
from the query string, which the 2014 server read. The first update with `finished` ends the \
run. Also served at `POST /update-test-status/{test_id}`.";

pub const POST_RESULT_DESCRIPTION: &str = "Takes test results: a `multipart/form-data` body's \
`file` field, or the whole body with any other content type. The format is recognised by \
content (subunit v2, subunit v1, JSON results, JSON parsed results) and parsed before anything \
is kept: results that cannot be parsed are refused with the reason and its byte offset. The raw \
upload is kept whole (see `GET /v1/test-runs/{test_id}/uploads/{upload_id}`). With `test_id`, \
the upload is recorded on that run; without, on a new anonymous run, whose id is answered. Also \
served at `POST /post-result`.";

pub const MINICONF_DESCRIPTION: &str = "The tempest configuration fragment of a test run's \
cloud, on one line: the 2014 server's defaults (tempest's well-known image user and password, \
the CLI tests off), then the cloud's tempest options, then its `identity` endpoints and user \
names. No password of the cloud is ever in it: none is ever given to the server. Also served \
at `GET /get-miniconf`.";

pub const TESTCASES_DESCRIPTION: &str = "The test suites a client may run: only tempest. Marked \
to be deprecated in the spec; kept for clients that ask. Also served at `GET /get-testcases`.";

pub const RUN_DESCRIPTION: &str = "A test run: its cloud's name (`null` for an anonymous \
upload's run), when it was opened and ended, every status update and every upload with what \
was read from it.";

pub const UPLOAD_DESCRIPTION: &str = "An upload's raw bytes, byte for byte as they were \
uploaded (the `file` field's content for a multipart upload), checked against their SHA-256 \
before they are sent.";

pub const UPLOAD_TESTS_DESCRIPTION: &str = "An upload's tests, read again from its stored \
bytes whatever its format (subunit v2 or v1, or JSON): each test's name (its id as the stream \
gave it), its 2014 bucket, the outcome the stream gave, and its duration when the stream had \
both times; in the order the stream finished them. With the upload's format, summary and \
duration, as `post-result` answered them.";

pub const SUBMIT_DESCRIPTION: &str = "Takes results as refstack-client uploads them: \
`{\"cpid\", \"duration_seconds\", \"results\": [{\"name\", \"uuid\"?}]}`, all three keys \
required and no other, at least one result. Optionally signed: `X-Signature` is the hex of an \
RSA PKCS#1 v1.5 signature over SHA-256 of the raw body, `X-Public-Key` the signer's OpenSSH \
public key line (an RSA key of up to 16,384 bits); a signed submission shows the key in its \
`meta`. The body is kept whole, and the submission is in `GET /v1/results` as soon as this \
answers.";

pub const LIST_DESCRIPTION: &str = "Submitted results, 20 per page, newest first, as the later \
Refstack API lists them: the unsigned ones, or with `signed` the caller's own signed ones (a \
signed submission belongs to its signer; it is read by its id). `cpid`, `start_date` and \
`end_date` narrow the list; the dates are `YYYY-MM-DD HH:MM:SS` in UTC, inclusive, the format \
of `created_at`, so that a time read back can be given as a bound. Page 1 always exists; a \
page past the last is refused. Also served at `GET /v1/results/`.";

pub const SCHEMA_DESCRIPTION: &str = "The JSON schema (draft 4) of the body `POST /v1/results/` \
takes, as the later Refstack API serves it, with this server's rules written in.";

pub const GET_RESULTS_DESCRIPTION: &str = "One submission, with the names of its passing tests \
read back from the body as it was submitted.";

/// `GET /v1/results`'s query, as `list::parse` reads it (the last value of a repeated key).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// From 1 (the default); past the last page is refused.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Only this cloud's submissions (empty: every cloud's).
    pub cpid: Option<String>,
    /// Only those submitted at or after, `YYYY-MM-DD HH:MM:SS` (UTC).
    #[param(example = "2026-01-02 03:04:05")]
    pub start_date: Option<String>,
    /// Only those submitted at or before, `YYYY-MM-DD HH:MM:SS` (UTC).
    #[param(example = "2026-01-02 03:04:05")]
    pub end_date: Option<String>,
    /// Present (any value): the caller's own signed submissions instead of the unsigned
    /// ones; needs an account (`[refstack] auth` of `account` or `admin`).
    pub signed: Option<String>,
}

/// `{id}` of submitted results.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ResultIdPath {
    /// As `POST /v1/results/` answered it (`test_id`).
    #[param(example = "0192f3a4-5b6c-7d8e-9f00-aabbccddeeff")]
    pub id: String,
}

/// The optional signature.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct SignatureHeaders {
    /// Hex of the RSA PKCS#1 v1.5 SHA-256 signature of the raw body.
    #[param(rename = "X-Signature")]
    pub x_signature: Option<String>,
    /// The signer's OpenSSH public key line, `ssh-rsa AAAA… comment`, of up to 16,384 bits.
    #[param(rename = "X-Public-Key")]
    pub x_public_key: Option<String>,
}

/// `POST /v1/results/`'s answer.
#[derive(ToSchema, Serialize)]
pub struct RefstackSubmitted {
    pub test_id: uuid::Uuid,
    /// `<scheme>://<host>/#/results/<id>`, which refstack-client prints.
    #[schema(example = "http://127.0.0.1:8080/#/results/0192f3a4-5b6c-7d8e-9f00-aabbccddeeff")]
    pub url: String,
}

/// `GET /v1/results`.
#[derive(ToSchema, Serialize)]
pub struct RefstackResultsPage {
    pub results: Vec<RefstackResultRow>,
    pub pagination: RefstackPagination,
}

/// One submission in a page.
#[derive(ToSchema, Serialize)]
pub struct RefstackResultRow {
    pub id: uuid::Uuid,
    /// `YYYY-MM-DD HH:MM:SS`, UTC, as `start_date` and `end_date` take it.
    #[schema(example = "2026-01-02 03:04:05")]
    pub created_at: String,
    pub duration_seconds: u64,
    pub meta: RefstackMeta,
    pub url: String,
}

/// What is known of a submission besides its results.
#[derive(ToSchema, Serialize)]
pub struct RefstackMeta {
    /// The OpenSSH key (`ssh-rsa <base64>`) whose signature verified; absent when unsigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

#[derive(ToSchema, Serialize)]
pub struct RefstackPagination {
    #[schema(minimum = 1)]
    pub current_page: usize,
    /// At least 1: page 1 of nothing is an empty page.
    #[schema(minimum = 1)]
    pub total_pages: usize,
}

/// `GET /v1/results/{id}`.
#[derive(ToSchema, Serialize)]
pub struct RefstackResultDetail {
    pub id: uuid::Uuid,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    #[schema(example = "2026-01-02 03:04:05")]
    pub created_at: String,
    pub duration_seconds: u64,
    pub cpid: String,
    pub meta: RefstackMeta,
    pub url: String,
    /// The passing tests' names, as submitted.
    pub results: Vec<String>,
}

/// A JSON schema.
#[derive(ToSchema)]
#[schema(value_type = Object)]
pub struct RefstackSchema(pub serde_json::Value);

/// `{test_id}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TestIdPath {
    /// A test run's id, as `POST /v1/test-runs` or `post-result` answered it.
    #[param(example = "0192f3a4-5b6c-7d8e-9f00-112233445566", format = Uuid)]
    pub test_id: String,
}

/// `{upload_id}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UploadIdPath {
    /// An upload's id, as `post-result` answered it.
    #[param(example = "0192f3a4-5b6c-7d8e-9f00-665544332211")]
    pub upload_id: String,
}

/// `?test_id=` where it is required.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TestIdQuery {
    /// The test run's id.
    #[param(format = Uuid)]
    pub test_id: String,
}

/// `?test_id=` where it is optional.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptionalTestIdQuery {
    /// The test run to record the upload on; without it, a new anonymous run.
    #[param(format = Uuid)]
    pub test_id: Option<String>,
}

/// The status update's form, as refstack-client posts it. The same fields in the query string,
/// as the 2014 server read them, are taken too, the form's first; said in the description only,
/// since a schema cannot say that a field may be in either place.
#[derive(ToSchema)]
pub struct RefstackStatusForm {
    /// The status message: not blank, at most 4096 bytes.
    #[schema(schema_with = status_message)]
    pub status: String,
    /// Whether the run is finished: `true`, `1`, `yes`, `on`, or their opposites (any case).
    #[schema(schema_with = finished_flag)]
    pub finished: Option<String>,
}

fn status_message() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("The status message: not blank, at most 4096 bytes."))
        .min_length(Some(1))
        .max_length(Some(crate::domain::testrun::MAX_STATUS_BYTES))
        .pattern(Some("\\S"))
}

fn finished_flag() -> ObjectBuilder {
    crate::http::openapi::any_case(&["true", "false", "1", "0", "yes", "no", "on", "off"])
        .description(Some(
            "Whether the run is finished: `true`, `1`, `yes`, `on`, or their opposites (any \
             case); absent is false.",
        ))
}

/// A cloud, as `POST /v1/test-runs` takes it. Every key but `name` may be left out.
#[derive(ToSchema)]
#[schema(example = json!({"name": "lab", "identity_uri": "http://192.0.2.10:5000/v2.0",
    "identity_uri_v3": "http://192.0.2.10:5000/v3", "username": "demo",
    "alt_username": "alt_demo", "admin_username": "admin",
    "tempest_options": {"compute": {"image_ssh_user": "cirros"}}}))]
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefstackCloud {
    /// Not blank, at most 1024 bytes, no control character.
    #[schema(schema_with = cloud_name)]
    pub name: String,
    /// Keystone v2 (tempest's `identity.uri`).
    #[schema(schema_with = identity_uri)]
    pub identity_uri: Option<String>,
    /// Keystone v3 (`identity.uri_v3`).
    #[schema(schema_with = identity_uri_v3)]
    pub identity_uri_v3: Option<String>,
    #[schema(schema_with = cloud_field)]
    pub username: Option<String>,
    #[schema(schema_with = cloud_field)]
    pub alt_username: Option<String>,
    #[schema(schema_with = cloud_field)]
    pub admin_username: Option<String>,
    /// `{section: {key: value}}`, at most 256 options; no key may contain `password`.
    #[schema(schema_with = tempest_options)]
    pub tempest_options: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// Characters none of a cloud's fields may hold: Unicode's control characters.
const NO_CONTROL: &str = "\\u0000-\\u001f\\u007f-\\u009f";

/// A field of a cloud: at most `MAX_FIELD_BYTES` bytes, no control character.
fn cloud_field() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(crate::domain::testrun::cloud::MAX_FIELD_BYTES))
        .pattern(Some(format!("^[^{NO_CONTROL}]*$")))
}

fn identity_uri() -> ObjectBuilder {
    cloud_field().description(Some("Keystone v2 (tempest's `identity.uri`)."))
}

fn identity_uri_v3() -> ObjectBuilder {
    cloud_field().description(Some("Keystone v3 (`identity.uri_v3`)."))
}

/// A cloud's name: a field that is not blank.
fn cloud_name() -> ObjectBuilder {
    cloud_field()
        .description(Some("Not blank, at most 1024 bytes, no control character."))
        .min_length(Some(1))
        .pattern(Some(format!(
            "^[^{NO_CONTROL}]*[^\\s{NO_CONTROL}][^{NO_CONTROL}]*$"
        )))
}

/// `{section: {key: value}}`: sections and keys not empty, each a field.
fn tempest_options() -> ObjectBuilder {
    let name = || cloud_field().min_length(Some(1));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "`{section: {key: value}}`, at most 256 options; no key may contain `password`.",
        ))
        .property_names(Some(name()))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property_names(Some(name()))
                .additional_properties(Some(cloud_field())),
        ))
}

/// `POST /v1/test-runs`'s answer.
#[derive(ToSchema, Serialize)]
pub struct RefstackOpened {
    pub test_id: uuid::Uuid,
}

/// refstack-client's JSON results, one of the formats `post-result` reads (the example is
/// sent as the whole body).
#[derive(ToSchema)]
#[schema(example = json!({"cpid": "a2b4c6", "duration_seconds": 42,
    "results": [{"name": "tempest.api.compute.test_x.XTest.test_y",
        "uuid": "8f2d4a1e-0c3b-4d5e-9f6a-7b8c9d0e1f2a"}]}))]
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefstackResults {
    pub cpid: String,
    #[schema(schema_with = crate::http::openapi::unsigned)]
    pub duration_seconds: u64,
    #[schema(schema_with = passing_tests)]
    pub results: Vec<RefstackResult>,
}

/// At least one passing test, each a `RefstackResult` or a bare name (refstack-client's 2014
/// files).
fn passing_tests() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::schema::OneOfBuilder::new()
                .item(utoipa::openapi::Ref::from_schema_name("RefstackResult"))
                .item(ObjectBuilder::new().schema_type(Type::String)),
        )
        .min_items(Some(1))
        .build()
}

/// One passing test.
#[derive(ToSchema, serde::Deserialize)]
pub struct RefstackResult {
    pub name: String,
    /// Tempest's test id; any string, as the later server takes it (its schema names a
    /// `uuid_hex` format but nothing checks it).
    pub uuid: Option<String>,
}

/// A subunit stream (v2 binary or v1 text) as the whole body.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RefstackBinary(pub Vec<u8>);

/// A form whose `file` field holds the results.
#[derive(ToSchema)]
pub struct RefstackMultipart {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// How an upload was read: the schema of `testresults::Format`, which the bodies carry (the
/// document's test holds the two together).
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefstackFormat {
    SubunitV2,
    SubunitV1,
    ResultsJson,
    ParsedResultsJson,
}

/// Tests per 2014 bucket: the schema of `testresults::Summary`, which the bodies carry, under
/// the 2014 keys its serde names give. Written out rather than derived: the type refuses unknown
/// keys when it is read back, and the derive would make that a closed schema.
impl utoipa::PartialSchema for Summary {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
            "Tests per 2014 bucket: the schema of `testresults::Summary`, which the bodies carry.",
        ));
        for (key, description) in [
            ("PASS", None),
            ("FAIL", None),
            ("FAIL_SETUP", Some("A class fixture (`setUpClass`) failed.")),
            ("ERROR", None),
            ("SKIP", None),
            ("Total", None),
        ] {
            let count = ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(0))
                .description(description);
            object = object.property(key, count).required(key);
        }
        object.into()
    }
}

impl ToSchema for Summary {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("RefstackSummary")
    }
}

/// `post-result`'s answer.
#[derive(ToSchema, Serialize)]
pub struct RefstackUploaded {
    /// The run the upload was recorded on: the one named, or a new anonymous one.
    pub test_id: uuid::Uuid,
    pub upload_id: uuid::Uuid,
    #[schema(value_type = RefstackFormat)]
    pub format: Format,
    pub summary: Summary,
    /// From the stream's times, or the JSON results' own; `null` when it had none.
    pub duration_seconds: Option<f64>,
}

/// `{section: {key: value}}`.
#[derive(ToSchema)]
#[schema(value_type = Object, example = json!({"cli": {"enabled": "False"},
    "identity": {"uri": "http://192.0.2.10:5000/v2.0", "username": "demo"}}))]
pub struct RefstackMiniconf(pub BTreeMap<String, BTreeMap<String, String>>);

/// `GET get-testcases`.
#[derive(ToSchema)]
pub struct RefstackTestcases {
    #[schema(example = json!(["tempest"]))]
    pub testcases: Vec<String>,
}

/// A test run.
#[derive(ToSchema, Serialize)]
pub struct RefstackRun {
    pub test_id: uuid::Uuid,
    /// The cloud's name; `null` for an anonymous upload's run.
    pub cloud: Option<String>,
    pub opened_at: chrono::DateTime<chrono::Utc>,
    pub ended_at: Option<chrono::DateTime<chrono::Utc>>,
    pub statuses: Vec<RefstackStatus>,
    pub uploads: Vec<RefstackUpload>,
}

/// One status update.
#[derive(ToSchema, Serialize)]
pub struct RefstackStatus {
    pub status: String,
    pub finished: bool,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// One upload.
#[derive(ToSchema, Serialize)]
pub struct RefstackUpload {
    pub upload_id: uuid::Uuid,
    #[schema(value_type = RefstackFormat)]
    pub format: Format,
    pub summary: Summary,
    pub duration_seconds: Option<f64>,
    /// The raw upload's SHA-256, in hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// An upload's tests.
#[derive(ToSchema, Serialize)]
pub struct RefstackUploadTests {
    #[schema(value_type = RefstackFormat)]
    pub format: Format,
    pub summary: Summary,
    /// From the stream's times, or the JSON results' own; `null` when it had none.
    pub duration_seconds: Option<f64>,
    /// In the order the stream finished them (JSON: document order).
    pub tests: Vec<RefstackTest>,
}

/// One test of an upload.
#[derive(ToSchema, Serialize)]
pub struct RefstackTest {
    /// The test's id as the stream gave it.
    #[schema(example = "tempest.api.compute.test_x.XTest.test_y[id-8f2d,smoke]")]
    pub name: String,
    #[schema(value_type = RefstackStatusBucket)]
    pub status: Status,
    #[schema(value_type = RefstackOutcome)]
    pub outcome: Outcome,
    /// Seconds from its start to its stop; `null` when the stream did not give both.
    pub duration_seconds: Option<f64>,
}

/// The 2014 summary bucket a test counts in: the schema of `testresults::Status`.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(dead_code)]
pub enum RefstackStatusBucket {
    Pass,
    Fail,
    FailSetup,
    Error,
    Skip,
}

/// What the stream said of a test, `incomplete` when it started and never finished: the schema
/// of `testresults::Outcome`.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RefstackOutcome {
    Success,
    Fail,
    Error,
    Skip,
    Xfail,
    Uxsuccess,
    Incomplete,
}

/// Every error of the face.
#[derive(ToSchema)]
#[schema(example = json!({"title": "Invalid test ID", "code": 400}))]
pub struct RefstackErrorBody {
    /// What went wrong, in words meant for the person reading them.
    pub title: String,
    /// The HTTP status again.
    pub code: u16,
}

/// What every operation of the face shares, and the 2014 spellings.
struct FaceWide;

impl Modify for FaceWide {
    fn modify(&self, document: &mut OpenApi) {
        // The collection answers both methods at both spellings, as upstream's does.
        let paths = &mut document.paths.paths;
        if let (Some(bare), Some(slashed)) = (
            paths.get("/v1/results").cloned(),
            paths.get("/v1/results/").cloned(),
        ) {
            let spelled = |operation: Option<utoipa::openapi::path::Operation>, id: &str| {
                operation.map(|mut operation| {
                    operation.operation_id = Some(id.into());
                    operation
                })
            };
            if let Some(item) = paths.get_mut("/v1/results") {
                item.post = spelled(slashed.post, "refstack_submit_results_unslashed");
            }
            if let Some(item) = paths.get_mut("/v1/results/") {
                item.get = spelled(bare.get, "refstack_list_results_slashed");
            }
        }
        for (unprefixed, prefixed, operation_id) in UNPREFIXED {
            let Some(mut item) = document.paths.paths.get(*prefixed).cloned() else {
                continue;
            };
            for operation in crate::http::openapi::path_operations(&mut item) {
                operation.operation_id = Some((*operation_id).into());
                operation.summary = Some(format!("The 2014 spelling of {prefixed}"));
                operation.description = Some(format!(
                    "`{prefixed}` without its `/v1` prefix, as the 2014 server served it: it \
                     answers exactly the same."
                ));
            }
            document.paths.paths.insert((*unprefixed).into(), item);
        }
        let answers = CommonAnswers {
            body: "RefstackErrorBody",
            open_by: Some("refstack"),
            forbidden: "The account lacks the access `[refstack] auth` asks for.",
            not_allowed: Some(NOT_ALLOWED),
            unavailable: "Not recorded (the log or an actor failed), or the credentials could \
                not be checked.",
            more: &[],
        };
        for item in document.paths.paths.values_mut() {
            for operation in crate::http::openapi::path_operations(item) {
                answers.apply(operation, "refstack");
            }
        }
    }
}
