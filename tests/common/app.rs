//! What the faces' tests share: the real server started in-process over a temporary data
//! directory ([`TestApp`]), and its answers read whole into a typed [`Answer`] that knows the
//! error shape of the face it comes from.

use std::fmt;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use annals::config::Config;
use annals::events::EventLog;
use annals::runtime::{Clock, ManualClock};
use annals::startup::Addresses;
use serde_json::Value;

use super::{at, server_config, start_server_with_log, T0};

/// The real server, in-process on the current actix system, over a log in its own temporary
/// directory; every listener on a free loopback port.
pub struct TestApp {
    /// Where each listener listens.
    pub addresses: Addresses,
    /// The main listener's base URL, `http://127.0.0.1:port`.
    pub main: String,
    /// The configuration it was started on.
    pub config: Config,
    /// Its log, for tests that write to it behind the server's back.
    pub log: EventLog,
    /// Its data directory's parent, removed when dropped.
    pub dir: tempfile::TempDir,
}

impl TestApp {
    /// Starts the server on [`server_config`] as `configure` changes it (given the temporary
    /// directory, for files the configuration names) and on `clock`.
    pub async fn start(
        clock: Arc<dyn Clock>,
        configure: impl FnOnce(&mut Config, &Path),
    ) -> TestApp {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = server_config(dir.path());
        configure(&mut config, dir.path());
        let (addresses, log) = start_server_with_log(&config, clock).await;
        TestApp {
            main: format!("http://{}", addresses.main),
            addresses,
            config,
            log,
            dir,
        }
    }

    /// The base URL of a face's own listener, which the face must have.
    pub fn own(address: Option<std::net::SocketAddr>) -> String {
        format!("http://{}", address.expect("its own listener"))
    }
}

/// Every event of `stream`, read from the event API a thousand at a time by `get` (which asks
/// the main listener for a path, with the caller's credentials, for its JSON body).
pub async fn stream_events<F, Fut>(stream: &str, mut get: F) -> Vec<Value>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let mut events: Vec<Value> = Vec::new();
    loop {
        let uri = format!(
            "/api/streams/{stream}/events?from={}&limit=1000",
            events.len()
        );
        let page = get(uri).await;
        let page = page["events"].as_array().expect("an events page").clone();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// The first event of type `event_type` in a page of the event API (`{"events": […]}`).
#[track_caller]
pub fn first_of_type<'a>(page: &'a Value, event_type: &str) -> &'a Value {
    page["events"]
        .as_array()
        .expect("an events page")
        .iter()
        .find(|event| event["type"] == event_type)
        .unwrap_or_else(|| panic!("a {event_type} event in {page}"))
}

/// The items of a JSON list, which `list` must be.
#[track_caller]
pub fn items(list: &Value) -> &[Value] {
    list.as_array()
        .unwrap_or_else(|| panic!("a JSON list: {list}"))
}

/// The string at `pointer` (a JSON pointer, `/payload/line`) in each of `items`, which must
/// all have one there.
#[track_caller]
pub fn strings<'a>(items: impl IntoIterator<Item = &'a Value>, pointer: &str) -> Vec<String> {
    items
        .into_iter()
        .map(|item| match item.pointer(pointer).and_then(Value::as_str) {
            Some(text) => text.to_owned(),
            None => panic!("a string at {pointer} in {item}"),
        })
        .collect()
}

/// Checks that the string at `pointer` (a JSON pointer) in `value` holds `words`.
#[track_caller]
pub fn assert_says(value: &Value, pointer: &str, words: &str) {
    let text = value.pointer(pointer).and_then(Value::as_str);
    assert!(
        text.is_some_and(|text| text.contains(words)),
        "{words:?} at {pointer} in {value}"
    );
}

/// [`strings`] for numbers.
#[track_caller]
pub fn numbers<'a>(items: impl IntoIterator<Item = &'a Value>, pointer: &str) -> Vec<u64> {
    items
        .into_iter()
        .map(|item| match item.pointer(pointer).and_then(Value::as_u64) {
            Some(number) => number,
            None => panic!("a number at {pointer} in {item}"),
        })
        .collect()
}

/// Checks the output events of a program that wrote `seq 1 2000` at once: every line is its
/// own event, its text at `text` (a JSON pointer), in order; and they came in a few appends,
/// not one each. The journal seals each round with one time and a process's output has one
/// append in flight at a time, so each `recorded_at` is one append.
#[track_caller]
pub fn assert_seq_in_a_few_appends<'a>(
    events: impl IntoIterator<Item = &'a Value> + Clone,
    text: &str,
) {
    let expected: Vec<String> = (1..=2000).map(|n| n.to_string()).collect();
    assert_eq!(strings(events.clone(), text), expected);
    let appends: std::collections::BTreeSet<String> =
        strings(events, "/recorded_at").into_iter().collect();
    // At most 256 lines an append: 8 when the lines come at once, a few more when they
    // trickle in on a loaded machine; far fewer than one per line.
    assert!((8..=40).contains(&appends.len()), "{}", appends.len());
}

/// A manual clock at [`T0`]: what in-process servers record as now, so that golden bodies need
/// no redaction of times.
pub fn t0_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(at(T0 * 1_000_000)))
}

/// The error shape of the face an [`Answer`] comes from, and what its tests check of it.
pub trait Shape {
    /// Whether an empty body reads as JSON `null` (the faces that answer some requests with
    /// no body at all), rather than being refused as not JSON.
    const EMPTY_IS_NULL: bool = false;
}

/// Answers checked only for what HTTP says (the event API, OpenAPI, operations).
pub struct Plain;
impl Shape for Plain {}

/// The scan engine face: `{"status": word, "reason": …, "page": …}`.
pub struct Patrowl;
impl Shape for Patrowl {}

/// The workflow face: a JSON:API `errors` list.
pub struct Hpcwaas;
impl Shape for Hpcwaas {
    const EMPTY_IS_NULL: bool = true;
}

/// The test results face: `{"code": status, "title": …}`.
pub struct Refstack;
impl Shape for Refstack {
    const EMPTY_IS_NULL: bool = true;
}

/// The GROS face, read off the socket as its Python clients read it.
pub struct Gros;
impl Shape for Gros {}

/// One answer, read whole: its status, the headers the tests look at, every header, the body.
pub struct Answer<S: Shape = Plain> {
    pub status: u16,
    /// `Content-Type`, empty when there is none.
    pub content_type: String,
    pub disposition: Option<String>,
    pub location: Option<String>,
    pub www_authenticate: Option<String>,
    /// Every header as received, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    shape: PhantomData<S>,
}

impl<S: Shape> Answer<S> {
    fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Answer<S> {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        Answer {
            status,
            content_type: header("content-type").unwrap_or_default(),
            disposition: header("content-disposition"),
            location: header("location"),
            www_authenticate: header("www-authenticate"),
            shape: PhantomData,
            headers,
            body,
        }
    }

    /// Sends `request` with `body` and reads the answer, its body up to `limit` bytes.
    pub async fn send(
        request: awc::ClientRequest,
        body: impl Into<Vec<u8>>,
        limit: usize,
    ) -> Answer<S> {
        let response = request
            .send_body(body.into())
            .await
            .expect("the server answers");
        Answer::read(response, limit).await
    }

    /// Reads a response whole, its body up to `limit` bytes.
    pub async fn read<St>(mut response: awc::ClientResponse<St>, limit: usize) -> Answer<S>
    where
        St: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    {
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = value.to_str().expect("an ASCII header");
                (name.as_str().to_owned(), value.to_owned())
            })
            .collect();
        let body = response
            .body()
            .limit(limit)
            .await
            .expect("a whole body")
            .to_vec();
        Answer::new(response.status().as_u16(), headers, body)
    }

    /// An answer as it came off the socket: status line, headers, a blank line, the body as
    /// sent (no transfer coding undone).
    pub fn parse(raw: &[u8]) -> Answer<S> {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {text:?}"));
        let headers = lines
            .filter_map(|line| {
                let (key, value) = line.split_once(':')?;
                Some((key.trim().to_ascii_lowercase(), value.trim().to_owned()))
            })
            .collect();
        Answer::new(status, headers, body.as_bytes().to_vec())
    }

    /// The first header of this name (any case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    }

    /// The body as JSON; `null` for an empty body where the face's [`Shape`] says so.
    #[track_caller]
    pub fn json(&self) -> Value {
        if S::EMPTY_IS_NULL && self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "a JSON body: {e}: {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }

    /// The body as text, which must be UTF-8.
    #[track_caller]
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }
}

impl<S: Shape> fmt::Debug for Answer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Answer<Patrowl> {
    /// Checks a refusal in the face's shape; returns its reason.
    #[track_caller]
    pub fn refused(&self, status: u16, word: &str) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        assert_eq!(body["status"], word, "{body}");
        assert!(body["page"].is_string(), "{body}");
        body["reason"].as_str().expect("a reason").to_owned()
    }
}

impl Answer<Hpcwaas> {
    /// Checks a refusal in the face's envelope, and returns its detail.
    #[track_caller]
    pub fn refused(&self, status: u16, id: &str) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        let errors = body["errors"].as_array().expect("an errors list");
        assert_eq!(errors.len(), 1, "{body}");
        assert_eq!(errors[0]["id"], id, "{body}");
        assert_eq!(errors[0]["status"], status, "{body}");
        assert!(errors[0]["title"].is_string(), "{body}");
        errors[0]["detail"].as_str().expect("a detail").to_owned()
    }
}

impl Answer<Refstack> {
    /// Checks a refusal in the face's shape, and returns its title.
    #[track_caller]
    pub fn refused(&self, status: u16) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        assert_eq!(body["code"], status, "{body}");
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
        body["title"].as_str().expect("a title").to_owned()
    }
}
