//! The event API, for followers and auditors: the global stream and each stream followed with
//! long-polls or Server-Sent Events, and an entity's state replayed to a past version or time.
//! Handlers parse the request, call one library function, and map its reply.

pub mod openapi;

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, ContentType};
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::caller::ApiCaller;
use super::error::ApiError;
use super::params::{Limit, Wait};
use crate::domain::kinds::{self, ReplayError};
use crate::domain::lookup::{self, LookupError, Matched};
use crate::domain::streams::Streams;
use crate::events::follow::{self, Filter, Page};
use crate::events::verify::Verifier;
use crate::events::{EventLog, Position, SharedEvent, StreamId};
use crate::runtime::state::ReplayUntil;

/// How long an idle event stream goes without a byte before a keep-alive comment, so that
/// proxies keep it open and a vanished client is noticed, unless `[http] sse_keep_alive_s` says
/// otherwise.
pub const KEEP_ALIVE: Duration = Duration::from_secs(crate::config::DEFAULT_SSE_KEEP_ALIVE_S);

/// The keep-alive interval of event streams in effect, as app data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive(pub Duration);

impl KeepAlive {
    /// The interval the server was given, [`KEEP_ALIVE`] in an app that was given none.
    pub(crate) fn of(request: &HttpRequest) -> Duration {
        request
            .app_data::<web::Data<KeepAlive>>()
            .map_or(KEEP_ALIVE, |keep_alive| keep_alive.0)
    }
}

pub fn routes(router: &mut super::Router) {
    use actix_web::http::Method;
    let api_only = super::only::<super::error::Api>;
    let get = |handler| [(Method::GET, handler)];
    router
        .resource("/api/events", get(web::to(follow_log)), api_only)
        .resource(
            "/api/streams/{stream}",
            get(web::to(follow_stream)),
            api_only,
        )
        .resource(
            "/api/streams/{stream}/events",
            get(web::to(stream_history)),
            api_only,
        )
        .resource(
            "/api/streams/{stream}/state",
            get(web::to(replayed_state)),
            api_only,
        )
        .resource("/api/verify", get(web::to(verify_log)), api_only)
        .resource("/api/kinds", get(web::to(list_kinds)), api_only)
        .resource(
            "/api/kinds/{kind}/streams",
            get(web::to(list_streams)),
            api_only,
        )
        .resource("/api/ids/{id}", get(web::to(find_by_id)), api_only);
}

#[derive(Deserialize)]
struct FollowQuery {
    /// Events after this position (or stream version).
    from: Option<u64>,
    limit: Option<usize>,
    timeout: Option<String>,
    category: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

impl FollowQuery {
    fn limits(&self) -> Result<(Limit, Wait), ApiError> {
        let limit = Limit::parse(self.limit).map_err(ApiError::bad_request)?;
        let wait = Wait::parse(self.timeout.as_deref()).map_err(ApiError::bad_request)?;
        Ok((limit, wait))
    }
}

/// `{"events":[…],"head":POS,"next":POS}`. Each event's JSON is shared by every follower
/// that gets it, so a page copies it in instead of rendering it again: when one commit wakes
/// many followers, the event is rendered once.
fn page_body(page: Page) -> HttpResponse {
    let size: usize = page.events.iter().map(|e| e.json().len() + 1).sum();
    let mut body = String::with_capacity(size + 64);
    body.push_str("{\"events\":[");
    for (i, event) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(event.json());
    }
    // Writing to a String cannot fail.
    let _ = write!(body, "],\"head\":{},\"next\":{}}}", page.head, page.next);
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(body)
}

fn stream_id(raw: &str) -> Result<StreamId, ApiError> {
    StreamId::parse(raw).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Whether the client asked for Server-Sent Events.
fn wants_events_stream(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// The position in a reconnecting client's `Last-Event-ID`, if it sent one.
fn last_event_id(request: &HttpRequest) -> Result<Option<Position>, ApiError> {
    let Some(raw) = request.headers().get("Last-Event-ID") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .and_then(|raw| raw.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event's position"))
}

/// What an event stream follows.
pub(crate) enum Source {
    Log(Filter),
    Stream(StreamId),
}

/// Streams Server-Sent Events from `next` on: `id:` is the event's position, `data:` its JSON;
/// a comment after `keep_alive` without events. It ends when the server stops (the log's
/// followers are released), so that a graceful stop is not held by it.
pub(crate) fn events_stream(
    log: EventLog,
    source: Source,
    next: u64,
    keep_alive: Duration,
) -> HttpResponse {
    let pending: VecDeque<Arc<SharedEvent>> = VecDeque::new();
    let frames = futures_util::stream::unfold(
        (log, source, next, pending),
        move |(log, source, mut next, mut pending)| async move {
            loop {
                if log.followers_released() {
                    return None;
                }
                if let Some(event) = pending.pop_front() {
                    let frame =
                        format!("id: {}\ndata: {}\n\n", event.event().position, event.json());
                    return Some((
                        Ok::<_, ApiError>(Bytes::from(frame)),
                        (log, source, next, pending),
                    ));
                }
                let page = match &source {
                    Source::Log(filter) => {
                        follow::follow_log(&log, filter, next, 1000, keep_alive).await
                    }
                    Source::Stream(stream) => {
                        follow::follow_stream(&log, stream, next, 1000, keep_alive).await
                    }
                };
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::warn!(%error, "an event stream ended on a read error");
                        return None;
                    }
                };
                next = page.next;
                if page.events.is_empty() {
                    let alive = Bytes::from_static(b": keep-alive\n\n");
                    return Some((Ok(alive), (log, source, next, pending)));
                }
                pending.extend(page.events);
            }
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(frames)
}

/// `GET /api/events?from=POS&limit=N&timeout=DUR&category=KIND&type=TYPE`, or with
/// `Accept: text/event-stream`, the same as Server-Sent Events resuming from `Last-Event-ID`.
#[utoipa::path(get, path = "/api/events", summary = "Follow the whole log",
    description = openapi::FOLLOW_LOG, params(openapi::FollowLogParams),
    responses(openapi::Followed))]
async fn follow_log(
    _caller: ApiCaller,
    request: HttpRequest,
    log: web::Data<EventLog>,
    query: web::Query<FollowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (Limit(limit), Wait(wait)) = query.limits()?;
    let query = query.into_inner();
    let filter = Filter {
        category: query.category,
        event_type: query.event_type,
    };
    let from = last_event_id(&request)?.or(query.from).unwrap_or(0);
    if wants_events_stream(&request) {
        return Ok(events_stream(
            log.get_ref().clone(),
            Source::Log(filter),
            from,
            KeepAlive::of(&request),
        ));
    }
    let page = follow::follow_log(&log, &filter, from, limit, wait)
        .await
        .map_err(ApiError::internal)?;
    Ok(page_body(page))
}

/// `GET /api/streams/{stream}?from=VERSION&limit=N&timeout=DUR`, or with
/// `Accept: text/event-stream`, the same as Server-Sent Events resuming from `Last-Event-ID`
/// (a position, as in the global stream).
#[utoipa::path(get, path = "/api/streams/{stream}", summary = "Follow one stream",
    description = openapi::FOLLOW_STREAM, params(openapi::FollowStreamParams),
    responses(openapi::Followed))]
async fn follow_stream(
    _caller: ApiCaller,
    request: HttpRequest,
    log: web::Data<EventLog>,
    stream: web::Path<String>,
    query: web::Query<FollowQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = stream_id(&stream)?;
    let (Limit(limit), Wait(wait)) = query.limits()?;
    // Read whatever the answer, so that a malformed one is refused as on `/api/events`, though
    // only an event stream resumes from it.
    let last_event_id = last_event_id(&request)?;
    if wants_events_stream(&request) {
        let from = match last_event_id {
            Some(position) => {
                let (reader, of) = (log.get_ref().clone(), stream.clone());
                let version = web::block(move || follow::version_at(&reader, &of, position))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?;
                version.ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Last-Event-ID {position} is not an event of {stream}"
                    ))
                })?
            }
            None => query.from.unwrap_or(0),
        };
        return Ok(events_stream(
            log.get_ref().clone(),
            Source::Stream(stream),
            from,
            KeepAlive::of(&request),
        ));
    }
    let page = follow::follow_stream(&log, &stream, query.from.unwrap_or(0), limit, wait)
        .await
        .map_err(ApiError::internal)?;
    Ok(page_body(page))
}

/// `GET /api/streams/{stream}/events?from=VERSION&limit=N`: a page of the stream's history,
/// each event with its metadata (who or what caused it). It never waits.
#[utoipa::path(get, path = "/api/streams/{stream}/events",
    summary = "A page of one stream's history",
    description = openapi::STREAM_HISTORY, params(openapi::StreamHistoryParams),
    responses(openapi::History))]
async fn stream_history(
    _caller: ApiCaller,
    log: web::Data<EventLog>,
    stream: web::Path<String>,
    query: web::Query<FollowQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = stream_id(&stream)?;
    let (Limit(limit), _) = query.limits()?;
    let from = query.from.unwrap_or(0);
    let page = follow::follow_stream(&log, &stream, from, limit, Duration::ZERO)
        .await
        .map_err(ApiError::internal)?;
    Ok(page_body(page))
}

#[derive(Deserialize)]
struct StateQuery {
    at_version: Option<u64>,
    at_time: Option<String>,
}

/// `GET /api/streams/{stream}/state[?at_version=N | ?at_time=RFC3339]`
#[utoipa::path(get, path = "/api/streams/{stream}/state", summary = "An entity's state, replayed",
    description = openapi::REPLAYED_STATE, params(openapi::ReplayedStateParams),
    responses(openapi::Replayed))]
async fn replayed_state(
    _caller: ApiCaller,
    log: web::Data<EventLog>,
    stream: web::Path<String>,
    query: web::Query<StateQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = stream_id(&stream)?;
    let until = match (query.at_version, query.at_time.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give at_version or at_time, not both",
            ))
        }
        (Some(version), None) => ReplayUntil::Version(version),
        (None, Some(time)) => ReplayUntil::Time(
            DateTime::parse_from_rfc3339(time)
                .map_err(|e| ApiError::bad_request(format!("at_time {time:?}: {e}")))?
                .with_timezone(&Utc),
        ),
        (None, None) => ReplayUntil::End,
    };
    let log = log.into_inner();
    let replayed = web::block(move || kinds::replay(&log, &stream, until))
        .await
        .map_err(ApiError::internal)?;
    match replayed {
        Ok(replayed) => Ok(HttpResponse::Ok().json(replayed)),
        Err(
            error @ (ReplayError::UnknownKind(_)
            | ReplayError::NoSuchStream(_)
            | ReplayError::NotYet(_)),
        ) => Err(ApiError::not_found(error.to_string())),
        Err(error) => Err(ApiError::internal(error)),
    }
}

/// `GET /api/verify[?covering=POS]`: starts a verification of the whole log up to its current
/// head when none has run or the log has moved on since the last (past `covering`, when given),
/// and reports where it stands.
#[utoipa::path(get, path = "/api/verify", summary = "Verify the whole log",
    description = openapi::VERIFY, params(openapi::VerifyParams), responses(openapi::Verified))]
async fn verify_log(
    _caller: ApiCaller,
    log: web::Data<EventLog>,
    verifier: web::Data<std::sync::Arc<Verifier>>,
    query: web::Query<VerifyQuery>,
) -> HttpResponse {
    HttpResponse::Ok().json(verifier.start_or_report(&log, query.covering))
}

#[derive(Deserialize)]
struct VerifyQuery {
    /// Report a finished run that reached this position instead of starting a new one.
    covering: Option<Position>,
}

/// `GET /api/kinds`: every kind with streams, how many, and its latest event.
#[utoipa::path(get, path = "/api/kinds", summary = "Every kind of stream",
    description = openapi::KINDS, responses(openapi::KindsListed))]
async fn list_kinds(
    _caller: ApiCaller,
    streams: web::Data<Streams>,
) -> Result<HttpResponse, ApiError> {
    let kinds = streams.kinds().await.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "kinds": kinds })))
}

#[derive(Deserialize)]
struct StreamsQuery {
    /// Streams whose last event is before this position.
    before: Option<Position>,
    limit: Option<usize>,
}

/// `GET /api/kinds/{kind}/streams?before=POS&limit=N`: a page of the kind's streams, the most
/// recently written first.
#[utoipa::path(get, path = "/api/kinds/{kind}/streams", summary = "A page of one kind's streams",
    description = openapi::KIND_STREAMS, params(openapi::KindStreamsParams),
    responses(openapi::StreamsListed))]
async fn list_streams(
    _caller: ApiCaller,
    streams: web::Data<Streams>,
    kind: web::Path<String>,
    query: web::Query<StreamsQuery>,
) -> Result<HttpResponse, ApiError> {
    // A kind is valid when a stream of it can be named.
    StreamId::of(&kind, "x").map_err(|_| {
        ApiError::bad_request(format!(
            "invalid kind {:?}: a kind is lower-case letters, digits or '_'",
            kind.as_str()
        ))
    })?;
    let Limit(limit) = Limit::parse(query.limit).map_err(ApiError::bad_request)?;
    let page = streams
        .page(&kind, query.before, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/ids/{id}`: the event with this event id, or the events with this correlation id.
#[utoipa::path(get, path = "/api/ids/{id}", summary = "Find events by event or correlation id",
    description = openapi::FIND_BY_ID, params(openapi::IdParams), responses(openapi::IdFound))]
async fn find_by_id(
    _caller: ApiCaller,
    log: web::Data<EventLog>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request(format!("{:?} is not a UUID", id.as_str())))?;
    let log = log.into_inner();
    let found = web::block(move || lookup::find(&log, id))
        .await
        .map_err(ApiError::internal)?;
    let found = match found {
        Ok(found) => found,
        Err(error @ (LookupError::NotTimeOrdered(_) | LookupError::NotFound { .. })) => {
            return Err(ApiError::not_found(error.to_string()))
        }
        Err(error) => return Err(ApiError::internal(error)),
    };
    let events: Vec<serde_json::Value> = found
        .events
        .iter()
        .map(crate::events::codec::render)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": id,
        "matched": match found.matched {
            Matched::EventId => "event_id",
            Matched::CorrelationId => "correlation_id",
        },
        "events": events,
        "from": found.from,
        "to": found.to,
        "truncated": found.truncated,
    })))
}
