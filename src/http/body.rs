//! Reading a request body under a limit and a timeout, so that each face answers an oversized
//! body with 413, and a body that stops arriving with 408, in its own error shape instead of
//! actix's default; it never buffers more than the limit nor waits on a silent client for ever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};

use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{Bytes, BytesMut, Payload};
use actix_web::{HttpMessage, HttpRequest};
use futures_util::StreamExt;

/// How long a body may go with no byte arriving, unless the listener's [`super::Listening`]
/// says otherwise (`[http] body_timeout_s`). actix-web bounds the wait for the headers
/// (`client_request_timeout`, 5 s) but not for the body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(crate::config::DEFAULT_BODY_TIMEOUT_S);

/// The most a body's buffer takes before its bytes arrive: a `Content-Length` is the client's
/// word, and a client that declares the limit and then sends nothing would otherwise hold that
/// much memory per connection until the body timeout.
const PREALLOCATE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is over the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error(
        "the request body stopped arriving: nothing for {} s ([http] body_timeout_s)",
        after.as_secs_f64()
    )]
    TimedOut { after: Duration },
    #[error("the request body could not be read: {0}")]
    Broken(String),
}

/// A request body that stopped arriving, held until its answer is sent: actix closes the
/// connection after an answer only while the body it left unread is still held.
pub struct AbandonedBody {
    _held: Payload,
}

impl AbandonedBody {
    /// The answer's body, holding the abandoned request body until its last byte is sent.
    pub fn held_by(self, answer: BoxBody) -> BoxBody {
        BoxBody::new(Holding {
            answer,
            _abandoned: self,
        })
    }
}

/// An answer's body and what it keeps alive while it is sent.
struct Holding {
    answer: BoxBody,
    _abandoned: AbandonedBody,
}

impl MessageBody for Holding {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.answer.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.answer).poll_next(cx)
    }
}

/// Reads the whole body, refusing it as soon as it is known to exceed `limit` bytes: at once
/// from its `Content-Length`, else while it streams in; and giving up on it when no byte has
/// come for the listener's body timeout.
pub async fn read_body(
    request: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let timeout = request
        .app_data::<super::Listening>()
        .map_or(BODY_TIMEOUT, |listening| listening.body_timeout);
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(PREALLOCATE));
    loop {
        let Ok(next) = tokio::time::timeout(timeout, payload.next()).await else {
            // Kept for the answer, so that the connection is closed after it.
            request
                .extensions_mut()
                .insert(AbandonedBody { _held: payload });
            return Err(BodyError::TimedOut { after: timeout });
        };
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
