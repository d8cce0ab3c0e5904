//! The OpenAPI 3.1 document of every route (`GET /api/openapi.json`) and the Swagger UI that
//! shows it (`/api/docs/`), both served from the binary with no outside resource. It merges the
//! pieces that each routing module describes; it describes no route but its own, and serves
//! no data, so its routes are open like `/healthz`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HttpMethod, ObjectBuilder, OpenApi, RefOr, Required, Type};
use utoipa::Modify;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::error::Api;
use super::Served;

/// The pieces of the document that are not a face's, merged before the faces' (in the order
/// the server is given them) and after them.
const BEFORE_FACES: &[fn() -> OpenApi] = &[
    <super::OperationsApi as utoipa::OpenApi>::openapi,
    <super::events::openapi::EventApi as utoipa::OpenApi>::openapi,
];
const AFTER_FACES: &[fn() -> OpenApi] = &[
    <DocumentationApi as utoipa::OpenApi>::openapi,
    <super::console::ConsoleApi as utoipa::OpenApi>::openapi,
];

/// Every piece of the document, in the order they are merged.
fn pieces<'f>(faces: &'f [&'static dyn Served]) -> impl Iterator<Item = OpenApi> + 'f {
    let faces = faces.iter().map(|face| face.openapi());
    BEFORE_FACES
        .iter()
        .map(|piece| piece())
        .chain(faces)
        .chain(AFTER_FACES.iter().map(|piece| piece()))
}

/// The name of the HTTP Basic security scheme (`name:password` of an `[[accounts]]` entry).
pub const BASIC: &str = "basic";
/// The name of the bearer token security scheme.
pub const BEARER: &str = "bearer";

/// What every piece shares: the document's title and description, the security schemes and
/// the API's error body.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "annals",
        description = "Security scans, scraper agents, workflow runs, test runs and host \
            records as actors rebuilt from one append-only event log. `docs/api.md` describes \
            every route in prose.\n\n\
            Routes that take credentials accept either scheme, and only once the configuration \
            has an account: with no account (allowed on loopback addresses only), every route \
            is open. A route whose security includes `{}` is open by default and asks for \
            credentials only when its face's configuration says so.\n\n\
            This document describes the main listener, which serves every face that runs. A \
            face may also have a listener of its own (such as `[partisci] listen`, where \
            Partisci clients send by default): it serves that face's routes only, as described \
            here under the face's tag."
    ),
    components(schemas(super::error::ErrorBody)),
    modifiers(&SecuritySchemes)
)]
struct Base;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, document: &mut OpenApi) {
        let components = document.components.get_or_insert_with(Default::default);
        let mut basic = Http::new(HttpAuthScheme::Basic);
        basic.description = Some(
            "An account's name and password, checked against the argon2 hash in `[[accounts]]`."
                .into(),
        );
        components
            .security_schemes
            .insert(BASIC.into(), SecurityScheme::Http(basic));
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "A token made by `annals new-token`, checked against the SHA-256 hash in \
             `[[accounts]]`."
                .into(),
        );
        components
            .security_schemes
            .insert(BEARER.into(), SecurityScheme::Http(bearer));
    }
}

/// The security of a route behind the configured accounts: HTTP Basic or a bearer token.
pub fn account_security() -> Vec<SecurityRequirement> {
    vec![
        SecurityRequirement::new(BASIC, Vec::<String>::new()),
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
    ]
}

/// The 405 of a face's path.
pub const NOT_ALLOWED: &str = "Any other method on this path is refused in the face's error body, \
with an `Allow` header naming the methods it takes.";

/// The answers every guarded route of a face may give, whatever it does, each in the face's
/// error body: said once per face rather than on each handler.
pub struct CommonAnswers<'a> {
    /// The component schema of the face's error body.
    pub body: &'a str,
    /// The section whose `auth` decides whether the route needs an account (`{}` comes first
    /// in its security), or `None` when it always does once accounts exist.
    pub open_by: Option<&'a str>,
    pub forbidden: &'a str,
    /// The 405 of another method, `None` on a path that takes any method.
    pub not_allowed: Option<&'a str>,
    pub unavailable: &'a str,
    /// Other answers of every route of the face (Patrowl: an unknown engine's 404).
    pub more: &'a [(&'a str, &'a str)],
}

impl CommonAnswers<'_> {
    /// Tags `operation`, says who may call it, and adds each common answer it does not
    /// describe itself.
    pub fn apply(&self, operation: &mut Operation, tag: &str) {
        operation.tags = Some(vec![tag.into()]);
        let mut unauthorized = "No or wrong credentials, while accounts are configured".to_owned();
        operation.security = Some(match self.open_by {
            None => account_security(),
            Some(section) => {
                unauthorized += &format!(" and `[{section}] auth` is `account` or `admin`");
                let mut optional = vec![SecurityRequirement::default()];
                optional.extend(account_security());
                optional
            }
        });
        unauthorized.push('.');
        let responses = &mut operation.responses.responses;
        let mut add = |status: &str, answer: RefOr<Response>| {
            responses.entry(status.into()).or_insert(answer);
        };
        add("401", unauthorized_answer(&unauthorized, self.body));
        add("403", error_answer(self.forbidden, self.body));
        for (status, description) in self.more {
            add(status, error_answer(description, self.body));
        }
        if let Some(description) = self.not_allowed {
            add("405", not_allowed_answer(description, self.body));
        }
        add("503", error_answer(self.unavailable, self.body));
    }
}

/// Declares each route's answers, a type whose `IntoResponses` are the `status => answer` rows
/// listed: answers several routes share are written once.
macro_rules! answers {
    ($($(#[$doc:meta])* $name:ident { $($status:literal => $answer:expr),* $(,)? })*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                std::collections::BTreeMap::from([$(($status.into(), $answer)),*])
            }
        }
    )*};
}
pub(crate) use answers;

/// An error answer whose body is the component schema `body` (a face's own error body).
pub fn error_answer(description: &str, body: &str) -> RefOr<Response> {
    json_answer(description, body)
}

/// An answer whose JSON body is the component schema `schema`.
pub fn json_answer(description: &str, schema: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", error_content(schema))
        .build()
        .into()
}

/// A 405 with the `Allow` header every one carries, in the error body `body`.
pub fn not_allowed_answer(description: &str, body: &str) -> RefOr<Response> {
    error_answer_with_header(
        description,
        body,
        "Allow",
        "The methods the path takes, such as `GET, HEAD` (`HEAD` wherever `GET` is).",
    )
}

/// Every route of a piece answers another method with 405 in the API's error body: the
/// main listener's routes, which [`super::only`] finishes.
pub struct RefusesOtherMethods;

impl Modify for RefusesOtherMethods {
    fn modify(&self, document: &mut OpenApi) {
        for operation in operations(document) {
            operation
                .responses
                .responses
                .entry("405".into())
                .or_insert_with(|| not_allowed_answer(NOT_ALLOWED_HERE, "ErrorBody"));
        }
    }
}

/// The 405 of a route of the main listener.
const NOT_ALLOWED_HERE: &str = "Any other method on this path is refused, with an `Allow` header \
naming the methods it takes.";

/// A 401 with the `WWW-Authenticate` challenge every refusal carries, in the error body `body`.
pub fn unauthorized_answer(description: &str, body: &str) -> RefOr<Response> {
    error_answer_with_header(
        description,
        body,
        "WWW-Authenticate",
        super::error::CHALLENGE,
    )
}

/// An error answer in the error body `body` that carries the string header `header`, which
/// `says` describes.
fn error_answer_with_header(
    description: &str,
    body: &str,
    header: &str,
    says: &str,
) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .header(
            header,
            utoipa::openapi::header::HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(says))
                .build(),
        )
        .content("application/json", error_content(body))
        .build()
        .into()
}

fn error_content(body: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name(body)))
        .build()
}

/// A count or position the server reads as a `u64`: 0 to `u64::MAX`, said as bounds rather
/// than the `int64` format, whose bound is lower.
pub fn unsigned() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(u64::MAX))
}

/// A query parameter, for the `IntoParams` implementations that need a schema the derive
/// cannot say (its `schema_with` drops the description and whether it is required).
pub fn query(
    name: &str,
    required: bool,
    description: impl Into<String>,
    schema: impl Into<RefOr<utoipa::openapi::schema::Schema>>,
) -> utoipa::openapi::path::Parameter {
    parameter(name, ParameterIn::Query, required, description, schema)
}

/// A parameter `name` in `parameter_in`, such as a header (what [`query`] is for the query).
pub fn parameter(
    name: &str,
    parameter_in: ParameterIn,
    required: bool,
    description: impl Into<String>,
    schema: impl Into<RefOr<utoipa::openapi::schema::Schema>>,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(parameter_in)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// A duration in Go's syntax, as [`super::params::GoDuration`] reads it. The pattern says its
/// form; its bound (such as a long-poll's 5 minutes) is in the parameter's description, since
/// a pattern cannot bound a sum of terms.
pub fn go_duration() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(super::params::GO_DURATION_PATTERN))
}

/// A string that is one of `words` in any case, or empty (as no value), as a pattern: JSON
/// Schema's `enum` is case-sensitive.
pub fn any_case(words: &[&str]) -> ObjectBuilder {
    let alternatives = words
        .iter()
        .map(|word| {
            word.chars()
                .map(|c| match (c.to_ascii_uppercase(), c.to_ascii_lowercase()) {
                    (upper, lower) if upper != lower => format!("[{upper}{lower}]"),
                    _ => regex::escape(&c.to_string()),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^({})?$", alternatives.join("|"))))
}

/// The extension that marks the properties of an object schema that may not come together:
/// utoipa has no builder for JSON Schema's `not`, so the document as served turns it into
/// `not: {required: [...]}` ([`finish`]).
const NOT_TOGETHER: &str = "x-not-together";

/// `object`, whose `properties` may not all come together.
pub fn not_together(object: ObjectBuilder, properties: &[&str]) -> ObjectBuilder {
    object.extensions(Some(
        utoipa::openapi::extensions::ExtensionsBuilder::new()
            .add(NOT_TOGETHER, serde_json::json!(properties))
            .build(),
    ))
}

/// The extension that marks the schema of a parameter whose value is JSON text: utoipa has no
/// builder for a parameter's `content`, so the document as served moves such a schema under
/// `content: {"application/json": {schema}}` ([`finish`]), which says that the value is the
/// schema's instance written as JSON.
const JSON_PARAMETER: &str = "x-json-parameter";

/// The extensions that mark a parameter's schema as JSON text's (`JSON_PARAMETER`).
pub fn json_parameter() -> utoipa::openapi::extensions::Extensions {
    utoipa::openapi::extensions::ExtensionsBuilder::new()
        .add(JSON_PARAMETER, true)
        .build()
}

/// The document as served: each [`NOT_TOGETHER`] mark made JSON Schema's `not`, and each
/// [`JSON_PARAMETER`] mark a parameter's `content`.
fn finish(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            if let Some(properties) = object.remove(NOT_TOGETHER) {
                object.insert("not".into(), serde_json::json!({ "required": properties }));
            }
            let json_text = object
                .get_mut("schema")
                .and_then(serde_json::Value::as_object_mut)
                .and_then(|schema| schema.remove(JSON_PARAMETER))
                .is_some();
            if json_text && object.contains_key("in") {
                if let Some(schema) = object.remove("schema") {
                    // The schema's example, where clients and tools look for a parameter's.
                    if let Some(example) = schema.get("examples").and_then(|e| e.get(0)) {
                        object.insert("example".into(), example.clone());
                    }
                    object.insert(
                        "content".into(),
                        serde_json::json!({ "application/json": { "schema": schema } }),
                    );
                }
            }
            object.values_mut().for_each(finish);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(finish),
        _ => {}
    }
}

/// Every operation of a document, for modifiers that say something of all of a piece's routes.
pub fn operations(document: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    document.paths.paths.values_mut().flat_map(path_operations)
}

/// The operations of one path, whatever their methods.
pub fn path_operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The document: the base and every piece. Two pieces describing the same path, or the same
/// schema name differently, is an error rather than the silent drop of `OpenApi::merge`.
pub fn document(faces: &[&'static dyn Served]) -> Result<OpenApi, String> {
    merge(pieces(faces))
}

fn merge(pieces: impl IntoIterator<Item = OpenApi>) -> Result<OpenApi, String> {
    let mut document = <Base as utoipa::OpenApi>::openapi();
    for piece in pieces {
        if let Some(path) = piece
            .paths
            .paths
            .keys()
            .find(|path| document.paths.paths.contains_key(*path))
        {
            return Err(format!(
                "two pieces of the OpenAPI document describe {path}"
            ));
        }
        if let (Some(ours), Some(theirs)) = (&document.components, &piece.components) {
            if let Some(name) = theirs.schemas.iter().find_map(|(name, schema)| {
                ours.schemas
                    .get(name)
                    .is_some_and(|existing| existing != schema)
                    .then_some(name)
            }) {
                return Err(format!(
                    "two pieces of the OpenAPI document define the schema {name} differently"
                ));
            }
        }
        document.merge(piece);
    }
    Ok(document)
}

/// The document as served, built once per listener that serves it, before it listens: one whose
/// pieces do not merge stops the server rather than failing a request.
pub struct Document(actix_web::web::Bytes);

impl Document {
    /// The document of the main routes and of `faces`, every face the server may run.
    pub fn of(faces: &[&'static dyn Served]) -> Result<Document, String> {
        let mut json = serde_json::to_value(document(faces)?).map_err(|error| error.to_string())?;
        finish(&mut json);
        Ok(Document(json.to_string().into()))
    }
}

/// The pattern of Swagger UI's page and files.
const SWAGGER_UI: &str = "/api/docs/{file:.*}";

/// The document's route, and Swagger UI's: its page and every file that page loads, all
/// compiled into the binary.
pub fn routes(router: &mut super::Router) {
    use actix_web::http::Method;
    router
        // Gzipped for clients that accept it: the document is large and compresses well.
        .resource(
            "/api/openapi.json",
            [(Method::GET, web::to(openapi_json))],
            |resource, allowed| {
                super::only::<Api>(resource, allowed)
                    .wrap(actix_web::middleware::Compress::default())
            },
        )
        .resource(
            "/api/docs",
            [(Method::GET, web::to(docs_page))],
            super::only::<Api>,
        )
        .service(Method::GET, SWAGGER_UI, |path| {
            SwaggerUi::new(path).config(
                Config::new(["/api/openapi.json"])
                    // Swagger UI's default sends the document to a public validator.
                    .validator_url("none")
                    .try_it_out_enabled(true),
            )
        });
    // Swagger UI's service answers GET only and lets any other method through: refuse it
    // here, after it, as every other route of the listener does.
    router.config().service(
        web::resource(SWAGGER_UI).default_service(super::refuse_method::<Api>(&[Method::GET])),
    );
}

/// The OpenAPI 3.1 document of every route.
#[utoipa::path(get, path = "/api/openapi.json", tag = "documentation",
    responses((status = 200, description = "This document.", body = Object,
        content_type = "application/json")))]
async fn openapi_json(document: web::Data<Document>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// Swagger UI, at its address with the trailing slash (its page loads its files by relative
/// URLs, which resolve under `/api/docs/` only).
#[utoipa::path(get, path = "/api/docs", tag = "documentation",
    summary = "Swagger UI, at its address with a trailing slash",
    responses((status = 308, description = "To `/api/docs/`.",
        headers(("Location" = String, description = "`/api/docs/`")))))]
async fn docs_page() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/api/docs/"))
        .finish()
}

/// The documentation routes' part of the document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(openapi_json, docs_page),
    tags((name = "documentation", description = "This document and Swagger UI, served by annals \
        itself: open to anyone, they hold no data.")),
    modifiers(&SwaggerUiPaths, &RefusesOtherMethods)
)]
struct DocumentationApi;

/// Swagger UI's own routes, served by `utoipa-swagger-ui` rather than a handler of ours.
struct SwaggerUiPaths;

impl Modify for SwaggerUiPaths {
    fn modify(&self, document: &mut OpenApi) {
        let page = OperationBuilder::new()
            .tag("documentation")
            .operation_id(Some("swagger_ui"))
            .summary(Some("Swagger UI"))
            .description(Some(
                "Swagger UI showing this document. Its scripts and stylesheets are served from \
                 `/api/docs/{file}`; it needs nothing from the internet.",
            ))
            .response(
                "200",
                ResponseBuilder::new()
                    .description("Swagger UI's page.")
                    .content(
                        "text/html",
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .build(),
                    ),
            )
            .build();
        let file = OperationBuilder::new()
            .tag("documentation")
            .operation_id(Some("swagger_ui_file"))
            .summary(Some("One of Swagger UI's files"))
            .parameter(
                ParameterBuilder::new()
                    .name("file")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .description(Some("A file of Swagger UI's distribution."))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .example(Some("swagger-ui-bundle.js".into())),
            )
            .response(
                "200",
                ResponseBuilder::new()
                    .description("The file, with the content type its name implies."),
            )
            .response(
                "404",
                ResponseBuilder::new().description("No such file in Swagger UI."),
            )
            .build();
        document
            .paths
            .paths
            .insert("/api/docs/".into(), PathItem::new(HttpMethod::Get, page));
        document.paths.paths.insert(
            "/api/docs/{file}".into(),
            PathItem::new(HttpMethod::Get, file),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pieces_merge_into_one_openapi_3_1_document() {
        let faces = crate::faces::described();
        let document = document(&faces).expect("the pieces merge");
        let json = serde_json::to_value(&document).expect("it serializes");
        assert!(json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")));
        for piece in pieces(&faces) {
            for path in piece.paths.paths.keys() {
                assert!(
                    document.paths.paths.contains_key(path),
                    "{path} was dropped"
                );
            }
        }
    }

    #[test]
    fn the_served_document_says_what_utoipa_cannot() {
        let document = Document::of(&crate::faces::described()).expect("it builds");
        let json: serde_json::Value = serde_json::from_slice(&document.0).expect("JSON");
        let text = json.to_string();
        assert!(!text.contains(NOT_TOGETHER) && !text.contains(JSON_PARAMETER));
        let parameter = |path: &str, method: &str, name: &str| {
            json["paths"][path][method]["parameters"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == name).cloned())
                .unwrap_or_else(|| panic!("{method} {path} takes {name}"))
        };
        let at = parameter("/api/streams/{stream}/state", "get", "at");
        assert_eq!(
            at["schema"]["not"],
            serde_json::json!({"required": ["at_version", "at_time"]})
        );
        let agent = parameter("/auth/export.py", "post", "agent");
        assert!(agent["schema"].is_null(), "{agent}");
        assert!(agent["content"]["application/json"]["schema"].is_object());
    }

    #[test]
    fn a_path_or_schema_described_twice_is_refused() {
        let documentation = <DocumentationApi as utoipa::OpenApi>::openapi;
        let error = merge([documentation(), documentation()])
            .err()
            .expect("a path twice is refused");
        assert!(error.contains("/api/docs"), "{error}");

        let other_error_body = || {
            let mut piece = OpenApi::default();
            piece
                .components
                .get_or_insert_with(Default::default)
                .schemas
                .insert("ErrorBody".into(), ObjectBuilder::new().build().into());
            piece
        };
        let error = merge([other_error_body()])
            .err()
            .expect("a schema redefined is refused");
        assert!(error.contains("ErrorBody"), "{error}");
        // The same schema twice is no conflict: pieces may share the API's error body.
        let same_error_body = || <Base as utoipa::OpenApi>::openapi();
        merge([same_error_body()]).expect("the same schema again merges");
    }
}
