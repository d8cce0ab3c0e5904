//! One rule for logging what goes wrong with a request, on every listener: a client's mistake
//! (a 4xx answer, a malformed or abandoned request, a method a face does not implement: 501) is
//! logged at DEBUG, because anyone who can reach a listener can send as many as they like and
//! would otherwise fill the log; 503 at WARN, since the faces' protocols answer it for states a
//! client can bring about (a scrape already running, a check that fails) as well as when the log
//! refuses a write (which the journal logs at ERROR itself); any other 5xx, a failure of the
//! server, at ERROR.

use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Logs an answer by the rule, with the error it came from.
pub fn log_answer<B: MessageBody>(route: &str, response: &ServiceResponse<B>) {
    let status = response.status();
    // Formatted only when the line is logged: a client can send as many 4xx as it likes.
    let error = ErrorText(response.response().error());
    let code = status.as_u16();
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            tracing::warn!(route, status = code, %error, "request answered unavailable");
        }
        StatusCode::NOT_IMPLEMENTED => {
            tracing::debug!(route, status = code, %error, "request refused");
        }
        _ if status.is_server_error() => {
            tracing::error!(route, status = code, %error, "request failed");
        }
        _ if status.is_client_error() => {
            tracing::debug!(route, status = code, %error, "request refused");
        }
        _ => {}
    }
}

/// The error an answer came from, or nothing.
struct ErrorText<'a>(Option<&'a actix_web::Error>);

impl std::fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(error) => error.fmt(f),
            None => Ok(()),
        }
    }
}

/// What actix-http logs at ERROR about a connection when the client caused it: a request it
/// could not parse (answered 400 or 431), a connection the client dropped or left idle
/// mid-request. actix-http has no setting for their level and logs the same at TRACE too
/// (`RUST_LOG=actix_http=trace`), so these ERROR lines are left out; its ERROR lines about
/// the server's own failures stay.
const CLIENT_CAUSED: &[&str] = &[
    "stream error: request parse error",
    "stream error: I/O error",
    "stream error: request did not complete within the specified timeout",
    "stream error: connection shutdown timeout",
    "stream error: handler dropped payload before reading EOF",
    "MAX_BUFFER_SIZE unprocessed data reached",
];

/// A layer that leaves out actix-http's ERROR lines about clients' mistakes (`CLIENT_CAUSED`).
pub struct ClientNoise;

impl<S: Subscriber> Layer<S> for ClientNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if *metadata.level() != Level::ERROR || !metadata.target().starts_with("actix_http::") {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        !CLIENT_CAUSED
            .iter()
            .any(|prefix| message.0.starts_with(prefix))
    }
}

/// The `message` field of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }
}
