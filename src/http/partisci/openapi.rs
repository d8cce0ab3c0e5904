//! The inventory face's part of the OpenAPI document: its routes' parameters, answers and body
//! schemas for the `#[utoipa::path]` attributes on the handlers in `mod.rs`, the early route
//! spellings as aliases of the final ones, and the face's security. It only describes; the
//! handlers write the bodies, and `tests/api/openapi.rs` checks real answers against these schemas
//! so that the two cannot drift apart.

use crate::http::openapi::{path_operations, CommonAnswers};
use utoipa::openapi::response::Response;
use utoipa::openapi::{Deprecated, OpenApi, RefOr};
use utoipa::{IntoParams, Modify, ToSchema};

/// The face's routes, their schemas, and who may use them.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::apps,
        super::hosts,
        super::versions,
        super::update,
        super::clear,
        super::info
    ),
    components(schemas(
        PartisciApps,
        PartisciApp,
        PartisciHosts,
        PartisciHost,
        PartisciVersions,
        PartisciVersion,
        PartisciUpdate,
        PartisciInstance,
        PartisciErrorBody
    )),
    tags((name = "partisci", description = TAG)),
    modifiers(&FaceWide)
)]
pub struct PartisciApi;

pub const TAG: &str = "The inventory face: which versions of which applications run on which \
hosts, as Partisci clients report and query them. It speaks the Partisci API: routes under \
`/api/v1/`, each ending with a slash, and `/debug/vars`. Partisci has two generations of \
routes; both are served, the early spellings as aliases (marked deprecated) that answer exactly \
as the final ones.\n\n\
Every error body is `{\"error\": \"...\"}`. A path under `/api/v1/` that is none of these routes \
(such as `/api/v1/version` without its slash) answers 404, and a method a route does not take \
answers 405, both in that body.\n\n\
Clients may also send updates as UDP datagrams, one version JSON each, to the face's own \
listener (`[partisci] listen`, HTTP and UDP on one port), which serves these HTTP routes too \
and nothing else.\n\n\
Open to anyone by default, since Partisci clients send no credentials. Once accounts exist, \
`[partisci] auth = \"account\"` or `\"admin\"` makes every route ask for them, and \
`_danger/clear/` always needs an admin.";

/// The final route of each early spelling, and the early route's operation id.
const ALIASES: &[(&str, &str, &str)] = &[
    ("/api/v1/summary/app/", APPS, "partisci_apps_early"),
    ("/api/v1/summary/host/", HOSTS, "partisci_hosts_early"),
    (
        "/api/v1/summary/hosts/",
        HOSTS,
        "partisci_hosts_early_plural",
    ),
    ("/api/v1/_partisci/", INFO, "partisci_info_early"),
];

pub const APPS: &str = "/api/v1/app/";
pub const HOSTS: &str = "/api/v1/host/";
pub const INFO: &str = "/debug/vars";
pub const CLEAR: &str = "/api/v1/_danger/clear/";

pub const APPS_DESCRIPTION: &str = "Every application with at least one active version: its \
id, its name as last reported, its newest update and on how many distinct hosts it runs. \
Active means reported within `[partisci] retention_s` (always, when that is 0). Also served at \
the early `GET /api/v1/summary/app/`.";

pub const HOSTS_DESCRIPTION: &str = "Every host with at least one active version: its newest \
update and how many distinct applications it runs. Also served at the early \
`GET /api/v1/summary/host/` and `GET /api/v1/summary/hosts/`.";

pub const VERSIONS_DESCRIPTION: &str = "Every active version, one per application, host and \
instance (the latest reported), narrowed by the filters given. Filters match exactly and \
combine; an empty one is no filter, and of one given twice the first value counts. An acknowledged update is in the very next answer.";

pub const UPDATE_DESCRIPTION: &str = "Records a version, for clients that cannot send UDP. The \
body is read as JSON whatever its content type. Keys match case-insensitively (the last \
spelling of a key wins) and unknown keys are ignored; text that is not valid Unicode is stored \
with U+FFFD in its place; `app_id`, `host_ip` and `last_update` are the server's to assign, so values \
a client sends for them are ignored. A newer report of the same application, host and instance \
replaces the older one. Answered once the update is durable and in the queries.";

pub const CLEAR_DESCRIPTION: &str = "Clears the whole inventory: every version leaves the \
queries, and each host's record says it was cleared (its history stays in the log). Refused \
with 403 unless `[partisci] danger = true`. Once accounts exist it needs an admin, whatever \
`[partisci] auth` says.";

pub const INFO_DESCRIPTION: &str = "What this instance is. Also served at the early \
`GET /api/v1/_partisci/`.";

/// `GET /api/v1/version/`: the three exact filters. The handler reads the query's pairs
/// itself, so that the first of a repeated parameter counts, as in partiscid.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionParams {
    /// Only versions of this application id (such as `demo_app`).
    pub app_id: Option<String>,
    /// Only versions on this host (such as `web1`).
    pub host: Option<String>,
    /// Only this version string (such as `1.1`).
    pub ver: Option<String>,
}

/// `{"data": [...]}` of `GET /api/v1/app/`.
#[derive(ToSchema)]
pub struct PartisciApps {
    pub data: Vec<PartisciApp>,
}

/// An application with at least one active version. The body the handler writes.
#[derive(ToSchema, serde::Serialize)]
pub struct PartisciApp {
    /// `app` lower-cased one character to one, each character outside `0-9a-z` replaced by `_`.
    #[schema(example = "demo_app")]
    pub app_id: String,
    /// The name as last reported.
    #[schema(example = "Demo App")]
    pub app: String,
    /// The newest update of any of its versions, in Unix seconds.
    pub last_update: i64,
    /// How many distinct hosts run it.
    #[schema(minimum = 1)]
    pub host_count: usize,
}

/// `{"data": [...]}` of `GET /api/v1/host/`.
#[derive(ToSchema)]
pub struct PartisciHosts {
    pub data: Vec<PartisciHost>,
}

/// A host with at least one active version. The body the handler writes.
#[derive(ToSchema, serde::Serialize)]
pub struct PartisciHost {
    /// The host as reported (empty when a client gave none).
    #[schema(example = "web1")]
    pub host: String,
    /// The newest update of any of its versions, in Unix seconds.
    pub last_update: i64,
    /// How many distinct applications it runs.
    #[schema(minimum = 1)]
    pub app_count: usize,
}

/// `{"data": [...]}` of `GET /api/v1/version/`.
#[derive(ToSchema)]
pub struct PartisciVersions {
    pub data: Vec<PartisciVersion<'static>>,
}

/// One active version: the client's report and what the server assigned. The body the handler
/// writes, borrowed from the read model (a full list holds tens of thousands).
#[derive(ToSchema, serde::Serialize)]
pub struct PartisciVersion<'a> {
    /// Assigned by the server: `app` lower-cased one character to one, each character outside
    /// `0-9a-z` made `_`.
    #[schema(example = "demo_app")]
    pub app_id: &'a str,
    #[schema(example = "Demo App")]
    pub app: &'a str,
    #[schema(example = "1.2.3dev")]
    pub ver: &'a str,
    #[schema(example = "web1")]
    pub host: &'a str,
    /// Tells apart several copies of one application on one host.
    #[schema(maximum = 65535)]
    pub instance: u16,
    /// The address the report came from (the HTTP peer or the UDP sender); an IPv4 sender
    /// on a dual-stack listener is shown dotted, as Partisci showed it.
    #[schema(example = "192.0.2.7")]
    pub host_ip: &'a str,
    /// When the server received the report, in Unix seconds.
    pub last_update: i64,
}

/// A version update as a client sends it. A `null` field is as good as a missing one.
// Schema attributes take only literals: a unit test holds the 50 to `report::MAX_FIELD_CHARS`.
#[derive(ToSchema)]
#[schema(example = json!({"app": "Demo App", "ver": "1.2.3dev", "host": "web1", "instance": 0}))]
pub struct PartisciUpdate {
    /// The application's name, 1 to 50 Unicode characters.
    #[schema(min_length = 1, max_length = 50)]
    pub app: String,
    /// Its version, 1 to 50 Unicode characters.
    #[schema(min_length = 1, max_length = 50)]
    pub ver: String,
    /// The host it runs on, at most 50 Unicode characters (default empty).
    #[schema(max_length = 50)]
    pub host: Option<String>,
    /// Which copy on that host, 0 to 65535 (default 0).
    #[schema(default = 0, maximum = 65535)]
    pub instance: Option<u16>,
}

/// `GET /debug/vars` and `GET /api/v1/_partisci/`. The body the handler writes.
#[derive(ToSchema, serde::Serialize)]
pub struct PartisciInstance {
    /// annals' version.
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// Always `annals`.
    #[schema(example = "annals")]
    pub server: &'static str,
    /// How many versions the inventory holds, active or not.
    pub versions: usize,
    /// Whether `_danger/clear/` may clear the inventory (`[partisci] danger`).
    pub danger: bool,
}

/// Every error of the face, in Partisci's shape.
#[derive(ToSchema)]
#[schema(example = json!({"error": "`ver` is required and must not be empty"}))]
pub struct PartisciErrorBody {
    /// What went wrong, in words meant for the person reading them.
    pub error: String,
}

/// What every operation of the face shares: its tag, its security, the answers any of its
/// routes can give; and the early spellings, copied from the final routes' operations.
struct FaceWide;

impl Modify for FaceWide {
    fn modify(&self, document: &mut OpenApi) {
        for (early, final_route, operation_id) in ALIASES {
            let Some(item) = document.paths.paths.get(*final_route).cloned() else {
                // The unit test below and tests/api/openapi.rs both notice an alias left out.
                continue;
            };
            let mut alias = item;
            for operation in path_operations(&mut alias) {
                operation.operation_id = Some((*operation_id).into());
                operation.deprecated = Some(Deprecated::True);
                operation.summary = Some(format!("The early spelling of {final_route}"));
                operation.description = Some(format!(
                    "An alias of `{final_route}`, from Partisci's early generation of routes, \
                     kept for clients that still use it: it answers exactly the same."
                ));
            }
            document.paths.paths.insert((*early).into(), alias);
        }
        for (path, item) in document.paths.paths.iter_mut() {
            let clear = path == CLEAR;
            let answers = CommonAnswers {
                body: "PartisciErrorBody",
                // `{}` first for all but clearing: no credentials needed, unless
                // `[partisci] auth` says so.
                open_by: (!clear).then_some("partisci"),
                forbidden: if clear {
                    "The account is not an admin, or `[partisci] danger` is off; the message \
                     says which, and how to turn danger mode on."
                } else {
                    "The account lacks the access `[partisci] auth` asks for."
                },
                not_allowed: Some(
                    "Any other method on this path (such as `GET` on a `POST` route) is refused \
                     in the face's error body, with an `Allow` header naming the methods it \
                     takes.",
                ),
                unavailable: "The credentials could not be checked: the server is shutting down.",
                more: &[],
            };
            for operation in path_operations(item) {
                answers.apply(operation, "partisci");
            }
        }
    }
}

pub fn error(description: &str) -> RefOr<Response> {
    crate::http::openapi::error_answer(description, "PartisciErrorBody")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::inventory::values::MAX_FIELD_CHARS;

    fn document() -> serde_json::Value {
        serde_json::to_value(<PartisciApi as utoipa::OpenApi>::openapi()).expect("it serializes")
    }

    #[test]
    fn the_documented_field_lengths_are_the_enforced_ones() {
        let document = document();
        let update = &document["components"]["schemas"]["PartisciUpdate"]["properties"];
        for field in ["app", "ver", "host"] {
            assert_eq!(update[field]["maxLength"], MAX_FIELD_CHARS, "{field}");
        }
    }

    #[test]
    fn every_early_spelling_is_an_alias_of_a_described_route() {
        let document = document();
        for (early, final_route, _) in ALIASES {
            let operation = &document["paths"][early]["get"];
            assert_eq!(operation["deprecated"], true, "{early}");
            let final_operation = &document["paths"][final_route]["get"];
            assert!(final_operation.is_object(), "{final_route}");
            assert_eq!(
                operation["responses"], final_operation["responses"],
                "{early} answers as {final_route}"
            );
            assert_eq!(
                operation["security"], final_operation["security"],
                "{early}"
            );
        }
    }
}
