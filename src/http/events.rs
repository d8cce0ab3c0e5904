//! The event API, for followers and auditors: the global stream and each stream followed with
//! long-polls, and an entity's state replayed to a past version or time. Handlers parse the
//! request, call one library function, and map its reply.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::ApiError;
use super::params::{Limit, Wait};
use crate::actors::kinds::{self, ReplayError};
use crate::actors::state::ReplayUntil;
use crate::events::codec::render;
use crate::events::follow::{self, Filter, Page};
use crate::events::{EventLog, StreamId};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/events", web::get().to(follow_log))
        .route("/api/streams/{stream}", web::get().to(follow_stream))
        .route("/api/streams/{stream}/state", web::get().to(replayed_state));
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
        let limit = Limit::parse(self.limit).map_err(ApiError::BadRequest)?;
        let wait = Wait::parse(self.timeout.as_deref()).map_err(ApiError::BadRequest)?;
        Ok((limit, wait))
    }
}

fn page_body(page: Page) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "events": page.events.iter().map(render).collect::<Vec<_>>(),
        "next": page.next,
        "head": page.head,
    }))
}

fn stream_id(raw: &str) -> Result<StreamId, ApiError> {
    StreamId::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// `GET /api/events?from=POS&limit=N&timeout=DUR&category=KIND&type=TYPE`
async fn follow_log(
    log: web::Data<EventLog>,
    query: web::Query<FollowQuery>,
) -> Result<HttpResponse, ApiError> {
    let (Limit(limit), Wait(wait)) = query.limits()?;
    let query = query.into_inner();
    let filter = Filter {
        category: query.category,
        event_type: query.event_type,
    };
    let page = follow::follow_log(&log, &filter, query.from.unwrap_or(0), limit, wait)
        .await
        .map_err(ApiError::internal)?;
    Ok(page_body(page))
}

/// `GET /api/streams/{stream}?from=VERSION&limit=N&timeout=DUR`
async fn follow_stream(
    log: web::Data<EventLog>,
    stream: web::Path<String>,
    query: web::Query<FollowQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = stream_id(&stream)?;
    let (Limit(limit), Wait(wait)) = query.limits()?;
    let page = follow::follow_stream(&log, &stream, query.from.unwrap_or(0), limit, wait)
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
async fn replayed_state(
    log: web::Data<EventLog>,
    stream: web::Path<String>,
    query: web::Query<StateQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream = stream_id(&stream)?;
    let until = match (query.at_version, query.at_time.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give at_version or at_time, not both".into(),
            ))
        }
        (Some(version), None) => ReplayUntil::Version(version),
        (None, Some(time)) => ReplayUntil::Time(
            DateTime::parse_from_rfc3339(time)
                .map_err(|e| ApiError::BadRequest(format!("at_time {time:?}: {e}")))?
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
        Err(error @ ReplayError::UnknownKind(_)) => Err(ApiError::NotFound(error.to_string())),
        Err(error) => Err(ApiError::internal(error)),
    }
}
