//! The event API's part of the OpenAPI document: its parameters, answers and body schemas, for
//! the `#[utoipa::path]` attributes on the handlers in `events.rs`. It only describes; the
//! bodies themselves are written by the handlers and `codec::render`, and `tests/api/openapi.rs`
//! checks real answers against these schemas so that the two cannot drift apart.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required};
use utoipa::{IntoParams, Modify, ToSchema};
use uuid::Uuid;

use crate::http::openapi::{answers, json_answer as json, RefusesOtherMethods};
use crate::http::params::{MAX_LIMIT, MAX_WAIT};

/// The event API's routes, their schemas, and the accounts that guard them.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::follow_log,
        super::follow_stream,
        super::stream_history,
        super::replayed_state,
        super::verify_log,
        super::list_kinds,
        super::list_streams,
        super::find_by_id
    ),
    components(schemas(
        Page,
        Event,
        Metadata,
        Origin,
        ReplayedState,
        VerifyReport,
        KindList,
        KindSummary,
        StreamList,
        StreamSummary,
        IdLookup,
        Matched
    )),
    tags((name = "events",
        description = "Follow, page through and replay the event log, for followers and \
            auditors.")),
    modifiers(&BehindAccounts, &RefusesOtherMethods)
)]
pub struct EventApi;

/// Every route of the event API goes through the `ApiCaller` extractor, so every one takes the
/// accounts' credentials and can answer 401 and 403; said once here rather than on each handler.
struct BehindAccounts;

impl Modify for BehindAccounts {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        for operation in crate::http::openapi::operations(document) {
            operation.tags = Some(vec!["events".into()]);
            operation.security = Some(crate::http::openapi::account_security());
            operation.responses.responses.insert(
                "401".into(),
                error(
                    "No or wrong credentials, while accounts are configured. Carries \
                     `WWW-Authenticate: Basic realm=\"annals\", Bearer realm=\"annals\"`.",
                ),
            );
            operation.responses.responses.insert(
                "403".into(),
                error("The account lacks the access `[auth] api` asks for."),
            );
        }
    }
}

pub const FOLLOW_LOG: &str = "Durable events after position `from`, in commit order, with \
`next` to pass as the following request's `from`: a follower that does so sees every event \
exactly once. When none is there yet, waits up to `timeout` for one to be committed. With \
`category` or `type`, `next` still moves past events that did not match, and one request looks \
at no more than 10,000 events.\n\n\
With `Accept: text/event-stream`, answers Server-Sent Events instead: `id: <position>` and \
`data: <event JSON>` frames, a `: keep-alive` comment after 15 s without events, resuming after \
`Last-Event-ID` when a reconnecting client sends it; `limit` and `timeout` do not apply.";

pub const FOLLOW_STREAM: &str = "The same as `/api/events` for one stream: events with a \
version above `from`; `next` and `head` are versions. As Server-Sent Events, `id:` is still \
the event's global position, and a `Last-Event-ID` must be one of this stream's events.";

pub const STREAM_HISTORY: &str = "A page of the stream's history, each event with its \
metadata (who or what caused it). It never waits.";

pub const REPLAYED_STATE: &str = "The entity's state replayed from its first event up to \
`at_version` or `at_time` (or its last event), ignoring snapshots, for audit. Give at most one \
of the two.";

pub const VERIFY: &str = "Starts a verification of the whole log up to its durable head when \
none has run or the log has moved on since the last, and reports where it stands. Events \
appended during a run are left to the next. A client waiting for a run passes its `head` as \
`covering`, so that on a log written all the time it still sees that run finish.";

pub const KINDS: &str = "Every kind that has streams (the part of a stream id before its first \
`-`), by name: how many streams it has, and its latest event. Read from a read model of the \
whole log, which has folded every event durable when the request came.";

pub const KIND_STREAMS: &str = "A page of one kind's streams, the most recently written first, \
each with its version (how many events it has) and its last event's position, type and time. \
Pass `next` as `before` for the following page. Read from a read model of the whole log, which \
has folded every event durable when the request came; a kind with no stream has an empty page.";

pub const FIND_BY_ID: &str = "The event whose `event_id` is `id`, or else the events whose \
`metadata.correlation_id` is `id` (at most 1,000, in commit order). annals mints both kinds of \
id as UUIDv7, whose first bits are the time it was minted, and records every event at or after \
that time: the lookup finds the first position recorded from 100 ms before the id's time by \
binary search and reads at most 10,000 events from there, never the whole log. An id that is \
not a UUIDv7 (one a client chose, or a test clock's) cannot be found this way, and is answered \
404, as is an id none of those events carries.";

/// `GET /api/kinds/{kind}/streams`.
pub struct KindStreamsParams;

impl IntoParams for KindStreamsParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("kind")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("A kind: lower-case ASCII letters, digits and `_`."))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[a-z0-9_]+$")),
                ))
                .example(Some("job".into()))
                .build(),
            query(
                "before",
                false,
                "Streams whose last event is before this position: the `next` of the page \
                 before (none: from the most recently written).",
                unsigned(),
            ),
            query(
                "limit",
                false,
                format!("The most streams in the page: 1 to {MAX_LIMIT}."),
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_LIMIT as u64))
                    .default(Some(100.into())),
            ),
        ]
    }
}

/// `GET /api/ids/{id}`.
pub struct IdParams;

impl IntoParams for IdParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("An event id or a correlation id."))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ))
            .example(Some("01939a4e-7c00-7000-8000-000000000000".into()))
            .build()]
    }
}

/// `GET /api/verify`.
pub struct VerifyParams;

impl IntoParams for VerifyParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("covering")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(
                "Report the last run when it reached this position, rather than start a new \
                 one because the log has moved on since.",
            ))
            .schema(Some(unsigned().minimum(Some(0))))
            .build()]
    }
}

/// `GET /api/events`: where to start, how much, how long to wait, which events.
pub struct FollowLogParams;

impl IntoParams for FollowLogParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            from("Events after this position (0: from the first event)."),
            limit(),
            timeout(),
            query_string(
                "category",
                "Only events of streams of this kind, the part of the stream id before the \
                 first `-` (such as `job`).",
            ),
            query_string("type", "Only events of this type (such as `LineRecorded`)."),
            last_event_id(
                "Server-Sent Events only: resume right after this position; it takes \
                 precedence over `from`.",
            ),
        ]
    }
}

/// `GET /api/streams/{stream}`.
pub struct FollowStreamParams;

impl IntoParams for FollowStreamParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            stream(),
            from("Events with a version above this one (0: from the stream's first event)."),
            limit(),
            timeout(),
            last_event_id(
                "Server-Sent Events only: resume right after the event at this global \
                 position, which must be one of this stream's events (else 400).",
            ),
        ]
    }
}

/// `GET /api/streams/{stream}/events`.
pub struct StreamHistoryParams;

impl IntoParams for StreamHistoryParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            stream(),
            from("Events with a version above this one (0: from the stream's first event)."),
            limit(),
        ]
    }
}

/// `GET /api/streams/{stream}/state`.
pub struct ReplayedStateParams;

impl IntoParams for ReplayedStateParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            stream(),
            // One exploded object rather than two parameters, since only a schema can say
            // that two parameters may not come together.
            ParameterBuilder::new()
                .name("at")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .style(Some(ParameterStyle::Form))
                .explode(Some(true))
                .description(Some(
                    "Where to stop: `at_version` or `at_time`, each its own query parameter \
                     (such as `?at_version=3`), not both.",
                ))
                .schema(Some(crate::http::openapi::not_together(
                    ObjectBuilder::new()
                        .property(
                            "at_version",
                            unsigned()
                                .description(Some("Replay up to and including this version.")),
                        )
                        .property(
                            "at_time",
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                                .description(Some(
                                    "Replay the events recorded up to this time (RFC 3339, \
                                     such as `2026-11-22T08:00:00Z`).",
                                )),
                        ),
                    &["at_version", "at_time"],
                )))
                .build(),
        ]
    }
}

use crate::http::openapi::{parameter, query, unsigned};

fn stream() -> Parameter {
    ParameterBuilder::new()
        .name("stream")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(
            "A stream id, `<kind>-<id>`: the kind lower-case ASCII letters, digits and `_`, \
             the id any non-empty text without control characters; at most 200 bytes.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(crate::events::envelope::MAX_STREAM_ID_LEN))
                .pattern(Some("^[a-z0-9_]+-[^\\u0000-\\u001f\\u007f-\\u009f]+$")),
        ))
        .example(Some("job-1".into()))
        .build()
}

fn from(description: &str) -> Parameter {
    query(
        "from",
        false,
        description,
        unsigned().minimum(Some(0)).default(Some(0.into())),
    )
}

fn limit() -> Parameter {
    query(
        "limit",
        false,
        format!("The most events in the page: 1 to {MAX_LIMIT}."),
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT as u64))
            .default(Some(100.into())),
    )
}

fn timeout() -> Parameter {
    query(
        "timeout",
        false,
        format!(
            "How long to wait for an event when there is none yet, in Go's duration syntax \
             (`300ms`, `1.5s`, `2m`, `1m30s`); at most {}s. Without it, the answer is \
             immediate, possibly with no event.",
            MAX_WAIT.as_secs()
        ),
        crate::http::openapi::go_duration()
            .default(Some("0".into()))
            .examples(["30s"]),
    )
}

/// An optional filter. Its examples stay in the description: Swagger UI would fill an example
/// into the form, filtering what a reader meant to see whole.
fn query_string(name: &str, description: &str) -> Parameter {
    query(
        name,
        false,
        description,
        ObjectBuilder::new().schema_type(Type::String),
    )
}

fn last_event_id(description: &str) -> Parameter {
    parameter(
        "Last-Event-ID",
        ParameterIn::Header,
        false,
        description,
        unsigned().minimum(Some(0)),
    )
}

/// An error answer in the API's error body.
fn error(description: &str) -> RefOr<Response> {
    json(description, "ErrorBody")
}

fn bad_request() -> RefOr<Response> {
    error(
        "A bad parameter: a malformed or out-of-range number or duration, a bad stream id, \
         a bad time, a bad `Last-Event-ID`.",
    )
}

fn internal() -> RefOr<Response> {
    error("annals failed to read its log; the message says how.")
}

answers! {
    /// The answers of the two follow routes: a page, or with `Accept: text/event-stream`, a
    /// never-ending stream of events.
    Followed {
        "200" => followed(),
        "400" => bad_request(),
        "500" => internal(),
    }

    /// The answers of `GET /api/streams/{stream}/events`.
    History {
        "200" => json("A page of the stream's events.", "Page"),
        "400" => bad_request(),
        "500" => internal(),
    }

    /// The answers of `GET /api/streams/{stream}/state`.
    Replayed {
        "200" => json("The replayed state.", "ReplayedState"),
        "400" => error("A bad stream id, version or time, or both `at_version` and `at_time`."),
        "404" => error(
            "The stream's kind is none that annals knows, the stream has no event \
             (`no such stream`), or none yet at the version or time asked for.",
        ),
        "500" => internal(),
    }

    /// The answers of `GET /api/kinds`.
    KindsListed {
        "200" => json("Every kind with streams.", "KindList"),
        "500" => internal(),
    }

    /// The answers of `GET /api/kinds/{kind}/streams`.
    StreamsListed {
        "200" => json("A page of the kind's streams.", "StreamList"),
        "400" => error("A bad kind, `before` or `limit`."),
        "500" => internal(),
    }

    /// The answers of `GET /api/ids/{id}`.
    IdFound {
        "200" => json("The event, or the correlation's events.", "IdLookup"),
        "400" => error("The id is not a UUID."),
        "404" => error(
            "The id is not a UUIDv7, or no event among those read carries it; the message \
             says which, and where the lookup read.",
        ),
        "500" => internal(),
    }

    /// The answers of `GET /api/verify`.
    Verified {
        "200" => json("Where the current or last verification stands.", "VerifyReport"),
        "400" => error("`covering` is not a position."),
    }
}

/// A follow's page, or with `Accept: text/event-stream`, a never-ending stream of events.
fn followed() -> RefOr<Response> {
    ResponseBuilder::new()
        .description(
            "A page of events (possibly none, once `timeout` passed), or with \
             `Accept: text/event-stream`, Server-Sent Events as they are committed.",
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Page")))
                .build(),
        )
        .content(
            "text/event-stream",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .example(Some(
                    "id: 1\ndata: {\"position\":1,\"stream\":\"job-1\",…}\n\n: keep-alive\n\n"
                        .into(),
                ))
                .build(),
        )
        .build()
        .into()
}

/// A page of a follow.
#[derive(Serialize, ToSchema)]
pub struct Page {
    /// The events, in commit (or version) order.
    pub events: Vec<Event>,
    /// The `from` of the next request: every position (or version) up to here has been
    /// considered, matched or not.
    pub next: u64,
    /// The durable head (of the log, or of the stream) when the page was read.
    pub head: u64,
}

/// One stored event, as the API and `annals export` render it.
#[derive(Serialize, ToSchema)]
pub struct Event {
    /// Its place in the whole log: 1 for the first event, gapless, in commit order.
    pub position: u64,
    /// Its stream, `<kind>-<id>`.
    #[schema(example = "job-1")]
    pub stream: String,
    /// Its place in its stream: 1 for the stream's first event, gapless.
    pub version: u64,
    /// Chosen by its writer; a retried append with the same id is stored once.
    pub event_id: Uuid,
    /// Its stable type name.
    #[serde(rename = "type")]
    #[schema(example = "LineRecorded")]
    pub event_type: String,
    /// The version of its type's payload schema.
    pub schema_version: u16,
    /// When the journal recorded it (RFC 3339, microseconds, UTC).
    pub recorded_at: DateTime<Utc>,
    pub metadata: Metadata,
    /// The payload, decoded from MessagePack, binary fields (such as a UUID) as lower-case
    /// hex; `null` when the stored bytes are not MessagePack (then `payload_error` says why).
    pub payload: serde_json::Value,
    /// Present only when the payload could not be decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_error: Option<String>,
    /// The SHA-256 that chains this event to the one before it in the log, in hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub hash: String,
}

/// Who or what caused an event.
#[derive(Serialize, ToSchema)]
pub struct Metadata {
    /// Groups every event that one outside request led to.
    pub correlation_id: Option<Uuid>,
    /// The event or command that directly caused this one.
    pub causation_id: Option<Uuid>,
    pub origin: Origin,
}

/// Where an event came from.
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// An HTTP request: the peer address and, when authenticated, the user.
    Http { addr: String, user: Option<String> },
    /// A UDP datagram from this peer.
    Udp { addr: String },
    /// annals itself: start-up reconciliation, a timer, a finished child process.
    System,
}

/// An entity's state replayed for audit.
#[derive(Serialize, ToSchema)]
pub struct ReplayedState {
    #[schema(example = "job-1")]
    pub stream: String,
    /// The version of the last event folded in (0: none).
    pub version: u64,
    /// The entity's state; its shape is the entity kind's.
    pub state: serde_json::Value,
}

/// Where a verification of the log stands.
#[derive(Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum VerifyReport {
    /// Under way: `checked` is the last position checked so far.
    Running {
        head: u64,
        checked: u64,
        started_at: DateTime<Utc>,
    },
    /// Every event up to `head` checked: the hash chain, gapless positions and versions, and
    /// the round index. `hash` is the head's chain hash.
    Ok {
        head: u64,
        events: u64,
        streams: u64,
        hash: String,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    },
    /// A problem at `position` (none when it is not at one event).
    Failed {
        head: u64,
        position: Option<u64>,
        problem: String,
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
    },
}

/// Every kind with streams.
#[derive(Serialize, ToSchema)]
pub struct KindList {
    /// By name.
    pub kinds: Vec<KindSummary>,
}

/// One kind of stream.
#[derive(Serialize, ToSchema)]
pub struct KindSummary {
    #[schema(example = "job")]
    pub kind: String,
    /// How many streams of this kind have events.
    pub streams: u64,
    /// The position of the kind's latest event.
    pub position: u64,
    /// When that event was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// A page of one kind's streams.
#[derive(Serialize, ToSchema)]
pub struct StreamList {
    /// The most recently written first.
    pub streams: Vec<StreamSummary>,
    /// How many streams the kind has.
    pub total: u64,
    /// The `before` of the next page; `null` on the last.
    pub next: Option<u64>,
}

/// One stream, as its last event left it.
#[derive(Serialize, ToSchema)]
pub struct StreamSummary {
    #[schema(example = "job-1")]
    pub stream: String,
    /// Its last event's version: how many events it has.
    pub version: u64,
    /// Its last event's position.
    pub position: u64,
    /// Its last event's type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When its last event was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// The events an id names.
#[derive(Serialize, ToSchema)]
pub struct IdLookup {
    /// The id looked for.
    pub id: Uuid,
    /// Whether it is the event's id (one event) or a correlation id (its events).
    pub matched: Matched,
    pub events: Vec<Event>,
    /// The first position read.
    pub from: u64,
    /// The last position read.
    pub to: u64,
    /// Whether more of the correlation's events were left out, past the first 1,000.
    pub truncated: bool,
}

/// What an id was found as.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Matched {
    EventId,
    CorrelationId,
}
