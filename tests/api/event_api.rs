//! The event API over HTTP, against the real server on port 0 and a real log: pages, long-poll
//! waits and timeouts, filters, many concurrent followers, stream follows, replayed state, a
//! kind's streams, lookups by event or correlation id, and the error shape of bad requests.

use crate::common;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use annals::events::recent::RecentLimits;
use annals::events::{EventLog, ExpectedVersion, LogOptions, NewEvent};
use common::app::{assert_says, items, numbers, strings};
use common::{fast, line, stream, TempLog};
use serde_json::Value;

struct TestApp {
    address: String,
    client: awc::Client,
    t: TempLog,
}

impl TestApp {
    fn log(&self) -> &EventLog {
        &self.t.log
    }

    /// A GET of `path` on the server, to send.
    fn request(&self, path: &str) -> awc::ClientRequest {
        self.client.get(format!("{}{path}", self.address))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let mut response = self.request(path).send().await.expect("the server answers");
        let status = response.status().as_u16();
        let body = response
            .json::<Value>()
            .limit(64 << 20)
            .await
            .expect("a JSON body");
        (status, body)
    }

    /// Opens an event stream (Server-Sent Events) on `path`, resuming after `last_event_id`.
    async fn event_stream(
        &self,
        path: &str,
        last_event_id: Option<u64>,
    ) -> awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    > {
        let mut request = self
            .request(path)
            .insert_header(("Accept", "text/event-stream"));
        if let Some(id) = last_event_id {
            request = request.insert_header(("Last-Event-ID", id.to_string()));
        }
        request.send().await.expect("the server answers")
    }

    async fn append(&self, stream_name: &str, text: &str) -> u64 {
        self.log()
            .append(stream(stream_name), ExpectedVersion::Any, vec![line(text)])
            .await
            .unwrap()
            .first_position
    }
}

/// Starts the real server on a free port over a new log.
fn spawn_app() -> TestApp {
    spawn_app_with(fast())
}

fn spawn_app_with(options: LogOptions) -> TestApp {
    spawn_app_configured(options, annals::http::events::KEEP_ALIVE)
}

fn spawn_app_configured(options: LogOptions, sse_keep_alive: Duration) -> TestApp {
    let t = TempLog::with(options);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // Room for a thousand followers connecting at once: the standard library listens with a
    // backlog of 128, and connections beyond it wait for a SYN retransmission (1 s, then 3 s).
    // SAFETY: listen on a socket that is already listening only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 4096) }, 0);
    let address = format!("http://{}", listener.local_addr().unwrap());
    let state = annals::http::HttpState {
        sse_keep_alive,
        ..annals::http::HttpState::open(t.log.clone())
    };
    let server = annals::http::server(listener, state, None).unwrap();
    actix_rt::spawn(server);
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();
    TestApp { address, client, t }
}

fn positions(page: &Value) -> Vec<u64> {
    numbers(items(&page["events"]), "/position")
}

#[actix_rt::test]
async fn a_page_holds_the_events_after_a_position() {
    let app = spawn_app();
    for (s, text) in [
        ("job-a", "a1"),
        ("job-b", "b1"),
        ("job-a", "a2"),
        ("scan-x", "x1"),
        ("job-b", "b2"),
    ] {
        app.append(s, text).await;
    }
    let (status, page) = app.get("/api/events?from=2&limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(positions(&page), [3, 4]);
    assert_eq!(
        (page["next"].as_u64(), page["head"].as_u64()),
        (Some(4), Some(5))
    );
    let event = &page["events"][0];
    assert_eq!(event["stream"], "job-a");
    assert_eq!(event["version"], 2);
    assert_eq!(event["type"], "LineRecorded");
    assert_eq!(event["payload"]["line"], "a2");
    assert_eq!(event["metadata"]["origin"]["kind"], "system");
    assert_eq!(event["hash"].as_str().unwrap().len(), 64);

    let (_, all) = app.get("/api/events").await;
    assert_eq!(positions(&all), [1, 2, 3, 4, 5]);
}

#[actix_rt::test]
async fn a_long_poll_wakes_on_the_next_commit_and_ends_at_its_timeout() {
    let app = spawn_app();
    app.append("job-a", "first").await;

    let started = Instant::now();
    let (_, empty) = app.get("/api/events?from=1&timeout=80ms").await;
    assert!(started.elapsed() >= Duration::from_millis(80));
    assert_eq!(positions(&empty), Vec::<u64>::new());
    assert_eq!(
        (empty["next"].as_u64(), empty["head"].as_u64()),
        (Some(1), Some(1))
    );

    let started = Instant::now();
    let waiting = app.get("/api/events?from=1&timeout=60s");
    let writer = async {
        // The follower is waiting or about to: either way it must see this event.
        app.append("job-b", "second").await
    };
    let ((_, page), position) = tokio::join!(waiting, writer);
    assert_eq!(positions(&page), [position]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the wait ended at the commit, not the timeout"
    );
}

#[actix_rt::test]
async fn filtered_followers_advance_even_when_nothing_matches() {
    let app = spawn_app();
    for i in 0..5 {
        app.append("job-a", &i.to_string()).await;
    }
    let (_, scans) = app.get("/api/events?category=scan").await;
    assert_eq!(positions(&scans), Vec::<u64>::new());
    assert_eq!(scans["next"], 5);
    let (_, jobs) = app.get("/api/events?category=job&from=3").await;
    assert_eq!(positions(&jobs), [4, 5]);
    let (_, typed) = app.get("/api/events?type=JobStarted").await;
    assert_eq!(
        (positions(&typed), typed["next"].as_u64()),
        (vec![], Some(5))
    );
    let (_, lines) = app.get("/api/events?type=LineRecorded&limit=2").await;
    assert_eq!(positions(&lines), [1, 2]);
}

/// Raises this process's limit of open files to at least `wanted` (or to the hard limit, if
/// lower): a thousand followers hold a thousand client and a thousand server sockets.
/// Raises this process's limit of open files to at least `wanted` (or to the hard limit, if
/// lower): a thousand followers hold a thousand client and a thousand server sockets.
fn raise_open_files_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
}

/// The positions of the events of a page body, in order, and its `next`. The body is searched
/// for each event's `"position":` key instead of being parsed: millions of events go through
/// the big follower test, and unoptimized JSON parsing would take minutes. libc's `memmem` is
/// optimized whatever this crate's profile is.
fn page_positions(body: &[u8]) -> (Vec<u64>, u64) {
    fn number_after(bytes: &[u8], key: &[u8]) -> Option<(u64, usize)> {
        // SAFETY: both pointers and lengths come from live slices; memmem only reads them.
        let found = unsafe {
            libc::memmem(
                bytes.as_ptr().cast(),
                bytes.len(),
                key.as_ptr().cast(),
                key.len(),
            )
        };
        if found.is_null() {
            return None;
        }
        let start = found as usize - bytes.as_ptr() as usize + key.len();
        let digits = &bytes[start..bytes.len().min(start + 20)];
        let digits = &digits[..digits.iter().position(|b| !b.is_ascii_digit())?];
        let number = std::str::from_utf8(digits).ok()?.parse().ok()?;
        Some((number, start + digits.len()))
    }
    let mut positions = Vec::new();
    let mut rest = body;
    while let Some((position, end)) = number_after(rest, b"\"position\":") {
        positions.push(position);
        rest = &rest[end..];
    }
    let (next, _) = number_after(rest, b"],\"head\":")
        .and_then(|(_, end)| number_after(&rest[end..], b",\"next\":"))
        .unwrap_or_else(|| panic!("a page ends with head and next: {rest:?}"));
    (positions, next)
}

/// A client for many followers: as many connections as they need, each reused for at most 2 s
/// idle, below the server's 5 s, so that few requests go out on a connection the server is
/// closing.
fn followers_client() -> awc::Client {
    awc::Client::builder()
        .connector(
            awc::Connector::new()
                .limit(0)
                .timeout(Duration::from_secs(30))
                .conn_keep_alive(Duration::from_secs(2)),
        )
        .timeout(Duration::from_secs(300))
        .finish()
}

/// `GET url`: how long the answer took and its body. A request whose connection closed before
/// any answer is sent again: the server closes a connection idle for 5 s, and a client that
/// was too busy to notice may send on it just then; HTTP lets a client retry a GET in that case
/// (RFC 9112, 9.3.1). Any other failure fails the test.
async fn timed_get(client: &awc::Client, url: &str) -> (Duration, actix_web::web::Bytes) {
    use awc::error::{ConnectError, SendRequestError};
    for _ in 0..3 {
        let started = Instant::now();
        let mut response = match client.get(url).send().await {
            Ok(response) => response,
            Err(SendRequestError::Connect(ConnectError::Disconnected)) => continue,
            Err(SendRequestError::Response(error)) if error.to_string().contains("reset") => {
                continue
            }
            Err(error) => panic!("{url}: {error}"),
        };
        assert_eq!(response.status(), 200, "{url}");
        let body = response.body().limit(64 << 20).await.expect("a body");
        return (started.elapsed(), body);
    }
    panic!("{url}: the connection closed three times before an answer");
}

/// How a follower asks and what it must see.
#[derive(Clone, Copy)]
struct FollowPlan {
    /// Events to follow, from position 0.
    total: u64,
    /// Events per page.
    limit: usize,
    /// How late an answer may come while the events are written. Each wait asks for minutes,
    /// and commits keep coming until the last event, so only a follower that missed a commit
    /// (or a server that stalled) waits longer than this.
    margin: Duration,
    /// The timeout of one last wait at the head, once every event is seen, which must end at
    /// that timeout (within `margin`) with no event.
    final_timeout: Duration,
}

/// Follows the whole log with long-polls until `plan.total` events are seen, checking every
/// page: positions gapless and in order, `next` the last one, the answer within `plan.margin`.
/// Then one last wait at the head. Returns how many requests it made.
async fn follow_to(client: &awc::Client, address: &str, id: usize, plan: FollowPlan) -> usize {
    let url = |from: u64, timeout: Duration| {
        format!(
            "{address}/api/events?from={from}&limit={}&timeout={}ms",
            plan.limit,
            timeout.as_millis()
        )
    };
    let mut last = 0;
    let mut requests = 0;
    while last < plan.total {
        let (took, body) = timed_get(client, &url(last, Duration::from_secs(120))).await;
        requests += 1;
        let (positions, next) = page_positions(&body);
        for position in &positions {
            assert_eq!(
                *position,
                last + 1,
                "follower {id} saw a gap, a repeat or a reordering"
            );
            last = *position;
        }
        assert_eq!(
            next, last,
            "follower {id}: next is the last event's position"
        );
        assert!(
            took < plan.margin,
            "follower {id} got {} events after {took:?}: a commit did not end its wait",
            positions.len()
        );
    }
    let (took, body) = timed_get(client, &url(last, plan.final_timeout)).await;
    assert_eq!(
        page_positions(&body),
        (vec![], plan.total),
        "follower {id} at the head"
    );
    assert!(
        took >= plan.final_timeout && took < plan.final_timeout + plan.margin,
        "follower {id}: a wait of {:?} at the head took {took:?}",
        plan.final_timeout
    );
    requests + 1
}

/// `writers` tasks appending `total` events between them, one per append, each to its own
/// stream, through the log's API in this process.
async fn write_concurrently(log: &EventLog, writers: u64, total: u64) {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            actix_rt::spawn(async move {
                for i in 0..total / writers {
                    common::append_line(&log, &format!("job-w{w}"), &format!("{w}/{i}")).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[actix_rt::test]
async fn a_thousand_followers_see_every_event_once_in_order_while_many_write() {
    let _load = common::LOAD_TEST.lock().await;
    const FOLLOWERS: usize = 1_000;
    const THREADS: usize = 4;
    const WRITERS: u64 = 100;
    const TOTAL: u64 = 10_000;
    let plan = FollowPlan {
        total: TOTAL,
        // Every follower reads every event, about 4 GB of JSON in all; pages of 500 keep the
        // requests few without making one answer wait long behind a thousand others.
        limit: 500,
        // An unoptimized build on a loaded two-core machine answers pages of a thousand
        // followers within a few seconds; a missed commit would wait two minutes.
        margin: Duration::from_secs(15),
        final_timeout: Duration::from_secs(1),
    };
    raise_open_files_limit(4 * FOLLOWERS as u64);
    // The window of recent events holds the whole test, so that no follower falls back to
    // reading storage, which unoptimized takes far longer than the test may; the next test
    // covers followers that fall behind the window.
    let app = spawn_app_with(LogOptions {
        recent: RecentLimits {
            events: TOTAL as usize,
            payload_bytes: 64 << 20,
        },
        ..fast()
    });
    // The followers run on threads of their own, each with its own client, so that reading
    // their answers gets a fair share of the machine next to the server's workers.
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let address = app.address.clone();
            std::thread::spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let client = followers_client();
                    let follows = (thread..FOLLOWERS)
                        .step_by(THREADS)
                        .map(|id| follow_to(&client, &address, id, plan));
                    futures_util::future::join_all(follows).await
                })
            })
        })
        .collect();
    write_concurrently(app.log(), WRITERS, TOTAL).await;
    let requests: Vec<usize> = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .flat_map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(requests.len(), FOLLOWERS);
    assert_eq!(app.log().head(), TOTAL);
}

#[actix_rt::test]
async fn followers_behind_the_window_of_recent_events_read_storage_and_miss_nothing() {
    // A window of a few events, and pages small enough that followers fall behind it while
    // the writers write: they keep moving between storage and the window.
    let app = spawn_app_with(LogOptions {
        recent: RecentLimits {
            events: 16,
            payload_bytes: 1 << 20,
        },
        ..fast()
    });
    let store_reads_before = follow_reads(&app, "store").await;
    let client = followers_client();
    let follows = futures_util::future::join_all((0..12).map(|id| {
        let plan = FollowPlan {
            total: 1_200,
            limit: [7, 50, 1000][id % 3],
            margin: Duration::from_secs(15),
            final_timeout: Duration::from_millis(300),
        };
        follow_to(&client, &app.address, id, plan)
    }));
    let (requests, ()) = tokio::join!(follows, write_concurrently(app.log(), 20, 1_200));
    // The followers with pages of 7 read at least 1200 / 7 pages each.
    assert!(requests.iter().step_by(3).all(|r| *r > 1_200 / 7));
    assert!(follow_reads(&app, "store").await > store_reads_before);
}

/// The server's count of follower reads from `source` (`recent` or `store`), in this process.
async fn follow_reads(app: &TestApp, source: &str) -> u64 {
    let mut response = app
        .request("/metrics")
        .send()
        .await
        .expect("the server answers");
    let text = response.body().await.expect("a body");
    let wanted = format!("annals_follow_reads_total{{source=\"{source}\"}} ");
    std::str::from_utf8(&text)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .map_or(0, |count| count.parse().unwrap())
}

#[actix_rt::test]
async fn a_stream_is_followed_by_version_and_replayed_to_a_point() {
    let app = spawn_app();
    for i in 0..4 {
        app.append("job-s", &format!("line {i}")).await;
    }
    app.append("job-other", "elsewhere").await;
    let (_, page) = app.get("/api/streams/job-s?from=1&limit=2").await;
    assert_eq!(numbers(items(&page["events"]), "/version"), [2, 3]);
    assert_eq!(
        (page["next"].as_u64(), page["head"].as_u64()),
        (Some(3), Some(4))
    );
    let (_, empty) = app.get("/api/streams/job-s?from=4&timeout=30ms").await;
    assert_eq!(
        (
            empty["events"].as_array().unwrap().len(),
            empty["next"].as_u64()
        ),
        (0, Some(4))
    );

    let (status, state) = app.get("/api/streams/job-s/state?at_version=2").await;
    assert_eq!(status, 200);
    assert_eq!(
        (state["version"].as_u64(), state["state"]["lines"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(state["state"]["last_line"], "line 1");

    let events = app.log().read_stream(&stream("job-s"), 0, 10).unwrap();
    let time = events[2].recorded_at.to_rfc3339();
    let expected = events
        .iter()
        .filter(|e| e.recorded_at <= events[2].recorded_at)
        .count();
    let (_, at_time) = app
        .get(&format!(
            "/api/streams/job-s/state?at_time={}",
            time.replace('+', "%2B")
        ))
        .await;
    assert_eq!(at_time["version"].as_u64(), Some(expected as u64));
    let (_, now) = app.get("/api/streams/job-s/state").await;
    assert_eq!(now["version"], 4);
}

#[actix_rt::test]
async fn bad_requests_get_a_json_error_and_no_500() {
    let app = spawn_app();
    for (path, status, says) in [
        ("/api/events?from=minus", 400, "bad query"),
        ("/api/events?limit=1001", 400, "over the limit of 1000"),
        ("/api/events?limit=0", 400, "at least 1"),
        ("/api/events?timeout=forever", 400, "not a duration"),
        ("/api/events?timeout=6m", 400, "over the limit of 5m"),
        ("/api/streams/nohyphen", 400, "invalid stream id"),
        (
            "/api/streams/job-x/state?at_version=1&at_time=2026-01-01T00:00:00Z",
            400,
            "not both",
        ),
        ("/api/streams/job-x/state?at_time=yesterday", 400, "at_time"),
        (
            "/api/streams/job-never/state",
            404,
            "no such stream: job-never",
        ),
        (
            "/api/streams/nokind-x/state",
            404,
            "no entity kind is called \"nokind\"",
        ),
    ] {
        let (got, body) = app.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["status"], status, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    // A Last-Event-ID that is no position is refused on both follow URLs, even for a JSON page,
    // which does not resume from it.
    for path in ["/api/events", "/api/streams/job-x"] {
        let mut response = app
            .request(path)
            .insert_header(("Last-Event-ID", "{}"))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status().as_u16(), 400, "{path}");
        let body = response.json::<Value>().await.expect("a JSON body");
        assert!(
            body["error"].as_str().unwrap().contains("Last-Event-ID"),
            "{path}: {body}"
        );
    }
}

/// Reads Server-Sent Events frames until `want` events arrived; keep-alive comments are skipped.
async fn read_events<S>(body: &mut S, buffer: &mut String, want: usize) -> Vec<(u64, Value)>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    use futures_util::StreamExt;
    let mut events = Vec::new();
    while events.len() < want {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            for line in frame.lines() {
                if let Some(rest) = line.strip_prefix("id: ") {
                    id = Some(rest.parse::<u64>().unwrap());
                } else if let Some(rest) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(rest).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                assert_eq!(data["position"], id);
                events.push((id, data));
            }
            if events.len() == want {
                return events;
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(60), body.next())
            .await
            .expect("an event within a minute")
            .expect("the stream stays open")
            .expect("a chunk");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    events
}

#[actix_rt::test]
async fn an_event_stream_resumes_after_a_disconnect_losing_and_repeating_nothing() {
    let app = spawn_app();
    let total = 300u64;
    let log = app.log().clone();
    let writer = actix_rt::spawn(async move {
        for i in 0..total {
            let s = stream(&format!("job-{}", i % 3));
            log.append(s, ExpectedVersion::Any, vec![line(&i.to_string())])
                .await
                .unwrap();
        }
    });
    let path = "/api/events";
    let mut first = app.event_stream(path, None).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        first.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let mut buffer = String::new();
    let mut seen: Vec<u64> = read_events(&mut first, &mut buffer, 120)
        .await
        .iter()
        .map(|(id, _)| *id)
        .collect();
    drop(first);

    let last = *seen.last().unwrap();
    let mut second = app.event_stream(path, Some(last)).await;
    let mut buffer = String::new();
    let rest = read_events(&mut second, &mut buffer, (total - last) as usize).await;
    seen.extend(rest.iter().map(|(id, _)| *id));
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    writer.await.unwrap();
}

#[actix_rt::test]
async fn an_idle_event_stream_gets_a_keep_alive_comment_every_configured_interval() {
    let interval = Duration::from_millis(200);
    let app = spawn_app_configured(fast(), interval);
    app.append("job-a", "one").await;
    let started = Instant::now();
    // Resumed after the only event: nothing to send but keep-alives.
    let mut events = app.event_stream("/api/events", Some(1)).await;
    assert_eq!(events.status(), 200);
    // Well short of the 15 s default, so that a setting that does not reach the handler fails.
    let deadline = tokio::time::Instant::from_std(started + 2 * interval + Duration::from_secs(3));
    let mut text = String::new();
    let mut comments = Vec::new();
    while comments.len() < 2 {
        let chunk = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut events))
            .await
            .unwrap_or_else(|_| panic!("keep-alives by the deadline; got {comments:?}, {text:?}"))
            .expect("the stream stays open")
            .expect("a chunk");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find(": keep-alive\n\n") {
            assert_eq!(end, 0, "only keep-alives on an idle stream: {text:?}");
            text.drain(..": keep-alive\n\n".len());
            comments.push(started.elapsed());
        }
    }
    // Each comment follows a full interval without events; when this client reads them is
    // less regular than when they were sent, so only their lower bounds are exact.
    assert!(comments[0] >= interval, "the first after {:?}", comments[0]);
    assert!(
        comments[1] >= 2 * interval,
        "the second after {:?}",
        comments[1]
    );

    // Events still come through between keep-alives.
    let position = app.append("job-a", "two").await;
    let mut buffer = text;
    let got = read_events(&mut events, &mut buffer, 1).await;
    assert_eq!(got[0].0, position);
}

#[actix_rt::test]
async fn a_stream_event_stream_resumes_from_a_position_of_that_stream() {
    let app = spawn_app();
    let mut mine = Vec::new();
    for i in 0..6 {
        let position = app
            .append(if i % 2 == 0 { "job-s" } else { "job-t" }, &i.to_string())
            .await;
        if i % 2 == 0 {
            mine.push(position);
        }
    }
    let path = "/api/streams/job-s";
    let mut events = app.event_stream(path, None).await;
    let mut buffer = String::new();
    let got = read_events(&mut events, &mut buffer, 3).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), mine);
    assert!(got.iter().all(|(_, e)| e["stream"] == "job-s"));
    drop(events);

    let mut resumed = app.event_stream(path, Some(mine[0])).await;
    let mut buffer = String::new();
    let got = read_events(&mut resumed, &mut buffer, 2).await;
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), mine[1..]);

    // A position of another stream cannot be resumed from.
    let mut refused = app.event_stream(path, Some(2)).await;
    assert_eq!(refused.status(), 400);
    let body = refused.json::<Value>().await.unwrap();
    common::app::assert_says(&body, "/error", "not an event of job-s");
}

#[actix_rt::test]
async fn readiness_and_stream_history_with_origins() {
    let app = spawn_app();
    app.append("job-h", "one").await;
    let mut from_peer = line("two");
    from_peer.metadata.origin = annals::events::Origin::Http {
        addr: "127.0.0.1:4242".into(),
        user: Some("ada".into()),
    };
    app.log()
        .append(stream("job-h"), ExpectedVersion::Any, vec![from_peer])
        .await
        .unwrap();

    let (status, ready) = app.get("/readyz").await;
    assert_eq!(
        (status, ready["status"].as_str(), ready["head"].as_u64()),
        (200, Some("ready"), Some(2))
    );

    let (_, history) = app.get("/api/streams/job-h/events?limit=10").await;
    let origins: Vec<&Value> = items(&history["events"])
        .iter()
        .map(|e| &e["metadata"]["origin"])
        .collect();
    assert_eq!(origins[0]["kind"], "system");
    assert_eq!(origins[1]["kind"], "http");
    assert_eq!(origins[1]["addr"], "127.0.0.1:4242");
    assert_eq!(origins[1]["user"], "ada");
    assert_eq!(
        (history["next"].as_u64(), history["head"].as_u64()),
        (Some(2), Some(2))
    );
}

#[actix_rt::test]
async fn an_absolute_form_request_line_is_routed_like_its_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app();
    app.append("job-a", "one").await;
    let authority = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&authority).await.unwrap();
    // As Python's logging HTTPHandler sends it: the full URL in the request line.
    let request = format!(
        "GET https://annals.example.test/api/events?from=0&limit=5 HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(positions(&body), [1]);
}

/// Polls `GET /api/verify` until the run covering at least `head` is finished.
async fn verified(app: &TestApp, head: u64) -> Value {
    common::poll_async(
        Duration::from_secs(60),
        "a finished verification",
        || async {
            let (status, report) = app.get("/api/verify").await;
            assert_eq!(status, 200, "{report}");
            (report["status"] != "running" && report["head"].as_u64().unwrap() >= head)
                .then_some(report)
        },
    )
    .await
}

#[actix_rt::test]
async fn the_log_is_verified_while_it_is_written() {
    let app = spawn_app();
    for i in 0..50 {
        app.append(&format!("job-{}", i % 5), &i.to_string()).await;
    }
    let report = verified(&app, 50).await;
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(
        (
            report["head"].as_u64(),
            report["events"].as_u64(),
            report["streams"].as_u64()
        ),
        (Some(50), Some(50), Some(5))
    );
    assert_eq!(report["hash"].as_str().unwrap().len(), 64);
    // Asked again with nothing new, it reports the same run.
    let (_, again) = app.get("/api/verify").await;
    assert_eq!(again["finished_at"], report["finished_at"]);

    // Writers keep appending while new runs check what was durable when each started.
    let log = app.log().clone();
    let writer = actix_rt::spawn(async move {
        for i in 0..300 {
            common::append_line(&log, &format!("job-w{}", i % 7), "more").await;
        }
    });
    let mut last_head = 50;
    while !writer.is_finished() {
        let report = verified(&app, last_head + 1).await;
        assert_eq!(report["status"], "ok", "{report}");
        last_head = report["head"].as_u64().unwrap();
        if last_head >= 350 {
            break;
        }
    }
    writer.await.unwrap();
    let report = verified(&app, 350).await;
    assert_eq!(
        (report["status"].as_str(), report["events"].as_u64()),
        (Some("ok"), Some(350))
    );
}

#[actix_rt::test]
async fn a_waiter_naming_its_run_sees_it_finish_while_the_log_moves_on() {
    let app = spawn_app();
    for i in 0..20 {
        app.append("job-v", &i.to_string()).await;
    }
    let report = verified(&app, 20).await;
    assert_eq!(
        (report["status"].as_str(), report["head"].as_u64()),
        (Some("ok"), Some(20))
    );
    // The log moves on: unnamed, a request starts a new run; naming the finished run's head,
    // it gets that run's report, as a waiter polling a busy log needs.
    app.append("job-v", "more").await;
    let (_, named) = app.get("/api/verify?covering=20").await;
    assert_eq!(named["finished_at"], report["finished_at"], "{named}");
    let (_, unnamed) = app.get("/api/verify").await;
    assert_eq!(unnamed["head"], 21, "{unnamed}");
    let (status, bad) = app.get("/api/verify?covering=soon").await;
    assert_eq!((status, bad["status"].as_u64()), (400, Some(400)), "{bad}");
}

/// One event of every type of every kind, as JSON in its payload's shape. Each goes through its
/// kind's own decoder and encoder before it is appended, so a sample that is not a real event
/// fails here rather than testing something the journal never stores.
fn samples() -> Vec<(&'static str, &'static str, Value)> {
    use serde_json::json;
    let at = 1_700_000_000_000_000_i64;
    let blob = json!({"sha256": "ab".repeat(32), "size": 12});
    let by = "ada";
    vec![
        ("job", "JobStarted", json!({"name": "nightly", "at": at})),
        (
            "job",
            "LineRecorded",
            json!({"line": "port 22", "level": "WARN", "at": at}),
        ),
        ("job", "JobFinished", json!({"succeeded": true, "at": at})),
        ("job", "JobInterrupted", json!({"at": at})),
        (
            "host",
            "VersionReported",
            json!({"app_id": "a", "app": "A", "ver": "1.0",
            "host": "web01", "instance": 1, "host_ip": "10.0.0.1", "via": "udp", "at": at}),
        ),
        (
            "host",
            "VersionExpired",
            json!({"app_id": "a", "instance": 1, "last_update": at,
            "at": at}),
        ),
        ("host", "HostCleared", json!({"versions": 2, "at": at})),
        (
            "test_run",
            "TestRunOpened",
            json!({"cloud": {"name": "c", "identity_uri": "",
            "identity_uri_v3": "", "username": "", "alt_username": "", "admin_username": "",
            "tempest_options": {"auth": {"use_dynamic_credentials": "true"}}}, "by": by,
            "at": at}),
        ),
        (
            "test_run",
            "TestStatusUpdated",
            json!({"message": "running", "finished": false,
            "by": by, "at": at}),
        ),
        (
            "test_run",
            "TestResultUploaded",
            json!({"upload_id": UPLOAD_ID,
            "format": "subunit_v2", "summary": {"PASS": 3, "FAIL": 1, "FAIL_SETUP": 0,
            "ERROR": 0, "SKIP": 2, "Total": 6}, "duration_seconds": 1.5, "blob": blob,
            "by": by, "at": at}),
        ),
        ("test_run", "TestRunEnded", json!({"at": at})),
        (
            "result",
            "ResultsSubmitted",
            json!({"cpid": "c1", "duration_seconds": 10,
            "tests": 3, "blob": blob, "public_key": null, "by": by, "at": at}),
        ),
        (
            "scan",
            "ScanRequested",
            json!({"engine": "nmap", "scan_id": "1",
            "assets": [{"id": "1", "value": "10.0.0.1", "criticity": "low",
            "datatype": "ip"}], "options": "{}", "by": by, "at": at}),
        ),
        ("scan", "ScanBegan", json!({"at": at})),
        (
            "scan",
            "ScanSupervised",
            json!({"run": {"dir": "/d/patrowl-work/nmap-1", "supervisor": 10,
            "group": 11, "boot": "b"}, "at": at}),
        ),
        (
            "scan",
            "ScanOutputRead",
            json!({"read": {"stdout": 2, "stderr": 0}, "at": at}),
        ),
        (
            "scan",
            "AssetScanned",
            json!({"asset": "10.0.0.1", "at": at}),
        ),
        (
            "scan",
            "FindingReported",
            json!({"finding": {"severity": "high",
            "confidence": "firm", "title": "t", "description": "d", "solution": "s",
            "kind": "port_info", "target": {"addr": ["10.0.0.1"], "port_id": 22},
            "raw": "{}", "tags": ["x"], "links": []}, "at": at}),
        ),
        (
            "scan",
            "ScanFinished",
            json!({"raw": [{"name": "out.xml", "blob": blob}],
            "at": at}),
        ),
        (
            "scan",
            "ScanFailed",
            json!({"reason": "r", "raw": [], "at": at}),
        ),
        ("scan", "ScanStopped", json!({"by": by, "at": at})),
        ("scan", "ScanCleaned", json!({"by": by, "at": at})),
        ("scan", "ScanReportFetched", json!({"by": by, "at": at})),
        (
            "execution",
            "ExecutionRequested",
            json!({"workflow": "app@env@wf",
            "inputs": {"n": "1"}, "by": by, "at": at}),
        ),
        (
            "execution",
            "StepStarted",
            json!({"index": 0, "name": "build", "at": at}),
        ),
        (
            "execution",
            "StepSupervised",
            json!({"index": 0, "run": {"dir": "/d/run", "supervisor": 10, "group": 11,
            "boot": "b"}, "at": at}),
        ),
        (
            "execution",
            "LogLineRecorded",
            json!({"level": "INFO", "at": at,
            "content": "hello"}),
        ),
        (
            "execution",
            "StepOutputRead",
            json!({"index": 0, "read": {"stdout": 6, "stderr": 0}, "at": at}),
        ),
        ("execution", "LogLinesDropped", json!({"count": 3})),
        (
            "execution",
            "StepEnded",
            json!({"index": 0, "ended": {"exit_code": 0,
            "signal": null, "duration_ms": 5, "timed_out": false, "cancelled": false},
            "at": at}),
        ),
        (
            "execution",
            "OutputsRecorded",
            json!({"outputs": {"A": "1"}}),
        ),
        ("execution", "CancelRequested", json!({"by": by, "at": at})),
        ("execution", "ExecutionSucceeded", json!({"at": at})),
        (
            "execution",
            "ExecutionFailed",
            json!({"reason": "r", "at": at}),
        ),
        ("execution", "ExecutionCancelled", json!({"at": at})),
        (
            "ssh_key",
            "SshKeyCreated",
            json!({"key_type": "ed25519",
            "fingerprint": "SHA256:x", "public_key": "ssh-ed25519 AAAA\n",
            "metadata": {"name": "k"}, "by": by, "at": at}),
        ),
        ("ssh_key", "SshKeyDeleted", json!({"by": by, "at": at})),
        ("gros_agent", "RegistrationStarted", json!({"at": at})),
        (
            "gros_agent",
            "AgentRegistered",
            json!({"public_key": "ssh-rsa AAAA",
            "rekeyed": false, "at": at}),
        ),
        (
            "gros_agent",
            "RegistrationAbandoned",
            json!({"reason": "r", "at": at}),
        ),
        (
            "gros_agent",
            "PreflightChecked",
            json!({"ok": false, "failed": ["disk"],
            "at": at}),
        ),
        (
            "gros_agent",
            "LogRecorded",
            json!({"level": "INFO", "message": "m",
            "fields": {"msg": "m"}, "at": at}),
        ),
        (
            "gros_agent",
            "ExportAnnounced",
            json!({"agent": "{}", "files": "[]", "at": at}),
        ),
        (
            "gros_agent",
            "FileUploaded",
            json!({"name": "data.json",
            "file": {"sha256": "ab".repeat(32), "size": 21}, "at": at}),
        ),
        (
            "gros_agent",
            "UploadsAnnounced",
            json!({"uploads": [{"name": "data.json",
            "file": {"sha256": "ab".repeat(32), "size": 21}}], "at": at}),
        ),
        (
            "gros_agent",
            "ProcessStarted",
            json!({"process": "import", "argv": ["a"],
            "at": at}),
        ),
        (
            "gros_agent",
            "ProcessSupervised",
            json!({"process": "import", "run": {"dir": "/d/P.a.import", "supervisor": 10,
            "group": 11, "boot": "b"}, "at": at}),
        ),
        (
            "gros_agent",
            "ProcessOutput",
            json!({"process": "scrape", "stream": "stdout",
            "line": "l", "at": at}),
        ),
        (
            "gros_agent",
            "ProcessOutputRead",
            json!({"process": "scrape", "read": {"stdout": 2, "stderr": 0}, "at": at}),
        ),
        (
            "gros_agent",
            "ProcessFinished",
            json!({"process": "import", "exit_code": 0,
            "outcome": "exit code 0", "at": at}),
        ),
        (
            "gros_agent",
            "MeasurementsRecorded",
            json!({"source": null,
            "measurements": [{"name": "n", "checked_time": "2026-01-01 00:00:00",
            "ok": true, "value": 1.5, "max": 2}], "at": at}),
        ),
        (
            "gros_project",
            "SaltsCreated",
            json!({"secret": "s", "at": at}),
        ),
        (
            "gros_project",
            "VersionChecked",
            json!({"version": "1", "up_to_date": true,
            "at": at}),
        ),
    ]
}

const UPLOAD_ID: &str = "0191e3a4-7b5c-7def-8123-456789abcdef";

/// A sample's JSON as MessagePack, with a UUID's text written as its 16 bytes, as a `Uuid`
/// field is stored.
struct AsStored<'a>(&'a Value);

impl serde::Serialize for AsStored<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::String(text) if text.len() == 36 => match uuid::Uuid::parse_str(text) {
                Ok(id) => serializer.serialize_bytes(id.as_bytes()),
                Err(_) => serializer.serialize_str(text),
            },
            Value::Array(items) => serializer.collect_seq(items.iter().map(AsStored)),
            Value::Object(fields) => {
                serializer.collect_map(fields.iter().map(|(key, value)| (key, AsStored(value))))
            }
            other => other.serialize(serializer),
        }
    }
}

/// Encodes a sample as its kind stores it: decoded by the kind's decoder at the first schema
/// version that takes it, then encoded at the version this build writes.
fn encode_as<E: annals::runtime::entity::Entity>(
    event_type: &str,
    fields: &Value,
) -> annals::events::NewEvent {
    use annals::events::DomainEvent;
    let payload = annals::events::codec::to_payload(&AsStored(fields));
    let decoded: Vec<_> = (1..=8)
        .map(|version| E::Event::decode(event_type, version, &payload))
        .collect();
    let Some(event) = decoded.iter().find_map(|event| event.as_ref().ok()) else {
        panic!(
            "the sample of {event_type} is no {} event: {decoded:?}",
            E::KIND
        );
    };
    annals::events::NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: event.event_type().to_owned(),
        schema_version: event.schema_version(),
        payload: event.encode_payload(),
        metadata: annals::events::Metadata::system(),
    }
}

fn encode_sample(kind: &str, event_type: &str, fields: &Value) -> annals::events::NewEvent {
    use annals::domain::{gros, inventory, results, scan, sshkey, testrun, workflow};
    use annals::runtime::job;
    match kind {
        "job" => encode_as::<job::Job>(event_type, fields),
        "host" => encode_as::<inventory::HostRecord>(event_type, fields),
        "test_run" => encode_as::<testrun::TestRunRecord>(event_type, fields),
        "result" => encode_as::<results::Submission>(event_type, fields),
        "scan" => encode_as::<scan::ScanRecord>(event_type, fields),
        "execution" => encode_as::<workflow::Execution>(event_type, fields),
        "ssh_key" => encode_as::<sshkey::SshKey>(event_type, fields),
        "gros_agent" => encode_as::<gros::GrosAgent>(event_type, fields),
        "gros_project" => encode_as::<gros::GrosProject>(event_type, fields),
        other => panic!("no sample encoder for kind {other}"),
    }
}

#[actix_rt::test]
async fn every_event_of_every_kind_renders_completely() {
    let app = spawn_app();
    let samples = samples();
    // The samples cover every type of every kind: a type added without a sample fails here.
    let mut expected = std::collections::BTreeSet::new();
    for (kind, types) in annals::domain::kinds::event_types() {
        for event_type in types {
            expected.insert((kind.to_owned(), event_type.to_string()));
        }
    }
    let sampled: std::collections::BTreeSet<_> = samples
        .iter()
        .map(|(kind, event_type, _)| (kind.to_string(), event_type.to_string()))
        .collect();
    assert_eq!(sampled, expected, "one sample per event type of each kind");

    for (kind, event_type, fields) in &samples {
        let event = encode_sample(kind, event_type, fields);
        app.log()
            .append(
                stream(&format!("{kind}-sample")),
                ExpectedVersion::Any,
                vec![event],
            )
            .await
            .unwrap();
    }
    let (status, page) = app.get("/api/events?limit=1000").await;
    assert_eq!(status, 200, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), samples.len());
    for (event, (kind, event_type, fields)) in events.iter().zip(&samples) {
        assert_eq!(
            (event["stream"].as_str(), event["type"].as_str()),
            (Some(format!("{kind}-sample").as_str()), Some(*event_type))
        );
        assert!(event.get("payload_error").is_none(), "{event}");
        // Every field the sample gave is there, under its name.
        for key in fields.as_object().unwrap().keys() {
            assert!(
                event["payload"].get(key).is_some(),
                "{key} missing from {event}"
            );
        }
    }
    // Binary fields, such as a Uuid, render as lower-case hex, here and in a stream's history.
    let (status, history) = app.get("/api/streams/test_run-sample/events").await;
    assert_eq!(status, 200, "{history}");
    let uploaded = &history["events"][2];
    assert_eq!(uploaded["type"], "TestResultUploaded");
    assert_eq!(uploaded["payload"]["upload_id"], UPLOAD_ID.replace('-', ""));
    assert_eq!(uploaded["payload"]["summary"]["Total"], 6);
    assert_eq!(uploaded["payload"]["duration_seconds"], 1.5);
}

/// A `LineRecorded` event of `text` with this event id and correlation id.
fn line_with_ids(text: &str, event_id: uuid::Uuid, correlation: Option<uuid::Uuid>) -> NewEvent {
    let mut event = line(text);
    event.event_id = event_id;
    event.metadata.correlation_id = correlation;
    event
}

/// A UUIDv7 minted at `at`.
fn v7_at(at: chrono::DateTime<chrono::Utc>) -> uuid::Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap();
    uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        seconds,
        at.timestamp_subsec_nanos(),
    ))
}

#[actix_rt::test]
async fn a_kinds_streams_are_listed_most_recently_written_first_page_by_page() {
    let app = spawn_app();
    app.append("job-a", "one").await;
    app.append("job-b", "two").await;
    app.append("scan-x", "three").await;
    let a_again = app.append("job-a", "four").await;
    // More events than the event API's largest page and the console's window of latest
    // events, none of them `job`'s: the oldest job streams are still listed.
    for _ in 0..3 {
        let lines = (0..500).map(|i| line(&format!("busy {i}"))).collect();
        app.log()
            .append(stream("scan-busy"), ExpectedVersion::Any, lines)
            .await
            .unwrap();
    }
    let c = app.append("job-c", "five").await;

    let (status, kinds) = app.get("/api/kinds").await;
    assert_eq!(status, 200);
    let kinds = items(&kinds["kinds"]);
    assert_eq!(
        kinds
            .iter()
            .map(|k| (k["kind"].as_str().unwrap(), k["streams"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        [("job", 3), ("scan", 2)]
    );
    assert_eq!(kinds[0]["position"], c);

    let (status, first) = app.get("/api/kinds/job/streams?limit=2").await;
    assert_eq!(status, 200, "{first}");
    let streams = items(&first["streams"]);
    assert_eq!(
        streams
            .iter()
            .map(|s| (
                s["stream"].as_str().unwrap(),
                s["version"].as_u64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [("job-c", 1), ("job-a", 2)]
    );
    assert_eq!(numbers(streams, "/position"), [c, a_again]);
    assert_eq!(streams[0]["type"], "LineRecorded");
    assert!(streams[0]["recorded_at"].is_string());
    assert_eq!(
        (first["total"].as_u64(), first["next"].as_u64()),
        (Some(3), Some(a_again))
    );
    let (_, second) = app
        .get(&format!("/api/kinds/job/streams?limit=2&before={a_again}"))
        .await;
    assert_eq!(
        items(&second["streams"])
            .iter()
            .map(|s| s["stream"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["job-b"]
    );
    assert!(second["next"].is_null(), "{second}");

    // A kind with no stream has an empty page; a bad kind or limit is refused.
    let (status, none) = app.get("/api/kinds/nothing_yet/streams").await;
    assert_eq!((status, none["total"].as_u64()), (200, Some(0)));
    for (path, says) in [
        ("/api/kinds/Job/streams", "invalid kind"),
        ("/api/kinds/job/streams?limit=0", "at least 1"),
        (
            "/api/kinds/job/streams?limit=1001",
            "over the limit of 1000",
        ),
        ("/api/kinds/job/streams?before=later", "bad query"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(
            (status, body["status"].as_u64()),
            (400, Some(400)),
            "{path}: {body}"
        );
        assert_says(&body, "/error", says);
    }
}

#[actix_rt::test]
async fn events_are_found_by_event_id_and_by_correlation_id_without_a_scan() {
    let app = spawn_app();
    let fillers = (0..300).map(|i| line(&format!("filler {i}"))).collect();
    let filled = app
        .log()
        .append(stream("job-filler"), ExpectedVersion::Any, fillers)
        .await
        .unwrap();
    let last_filler = app
        .log()
        .store()
        .event(filled.first_position + 299)
        .unwrap()
        .unwrap();
    // Ids minted once the clock is past the fillers' time and the lookup's lead before it.
    let lead = annals::domain::lookup::CLOCK_LEAD;
    common::poll_async(Duration::from_secs(5), "the clock to move on", || async {
        (chrono::Utc::now() > last_filler.recorded_at + lead * 2).then_some(())
    })
    .await;
    let correlation = uuid::Uuid::now_v7();
    let event_id = uuid::Uuid::now_v7();
    let found_at = app
        .log()
        .append(
            stream("job-one"),
            ExpectedVersion::Any,
            vec![line_with_ids("first", event_id, Some(correlation))],
        )
        .await
        .unwrap()
        .first_position;
    app.log()
        .append(
            stream("job-two"),
            ExpectedVersion::Any,
            vec![line_with_ids(
                "second",
                uuid::Uuid::now_v7(),
                Some(correlation),
            )],
        )
        .await
        .unwrap();

    let (status, by_event) = app.get(&format!("/api/ids/{event_id}")).await;
    assert_eq!(status, 200, "{by_event}");
    assert_eq!(by_event["matched"], "event_id");
    assert_eq!(numbers(items(&by_event["events"]), "/position"), [found_at]);
    assert_eq!(by_event["events"][0]["stream"], "job-one");
    // The binary search skipped the fillers: none of them was read.
    assert!(
        by_event["from"].as_u64().unwrap() > last_filler.position,
        "{by_event}"
    );

    let (status, by_correlation) = app.get(&format!("/api/ids/{correlation}")).await;
    assert_eq!(status, 200, "{by_correlation}");
    assert_eq!(by_correlation["matched"], "correlation_id");
    assert_eq!(
        strings(items(&by_correlation["events"]), "/stream"),
        ["job-one", "job-two"]
    );
    assert_eq!(by_correlation["truncated"], false);

    // An id a client chose (not time-ordered), or one no event carries, is not found, and
    // the answer says why; what is not a UUID is a bad request.
    let later = v7_at(chrono::Utc::now() + chrono::TimeDelta::hours(1));
    for (id, status, says) in [
        (
            uuid::Uuid::new_v4().to_string(),
            404,
            "not a time-ordered (version 7) UUID",
        ),
        (uuid::Uuid::now_v7().to_string(), 404, "no event has the id"),
        (later.to_string(), 404, "among the 0 events"),
        ("not-an-id".to_owned(), 400, "is not a UUID"),
    ] {
        let (got, body) = app.get(&format!("/api/ids/{id}")).await;
        assert_eq!(
            (got, body["status"].as_u64()),
            (status, Some(u64::from(status))),
            "{id}: {body}"
        );
        assert_says(&body, "/error", says);
    }
}

#[actix_rt::test]
async fn a_correlations_events_are_answered_up_to_a_limit() {
    use annals::domain::lookup::MAX_FOUND;
    let app = spawn_app();
    let correlation = uuid::Uuid::now_v7();
    let lines = (0..=MAX_FOUND)
        .map(|i| {
            line_with_ids(
                &format!("line {i}"),
                uuid::Uuid::now_v7(),
                Some(correlation),
            )
        })
        .collect();
    let first = app
        .log()
        .append(stream("job-many"), ExpectedVersion::Any, lines)
        .await
        .unwrap()
        .first_position;
    let (status, found) = app.get(&format!("/api/ids/{correlation}")).await;
    assert_eq!(status, 200, "{found}");
    let events = items(&found["events"]);
    assert_eq!(events.len(), MAX_FOUND);
    assert_eq!(found["truncated"], true);
    // What was read ends with the last event answered.
    assert_eq!(found["to"].as_u64(), Some(first + MAX_FOUND as u64 - 1));
}

#[actix_rt::test]
async fn a_lookup_reads_a_bounded_window_from_the_ids_time() {
    use annals::domain::lookup::LOOKUP_WINDOW;
    let app = spawn_app();
    // An id minted an hour before the log's first event: its window starts at position 1.
    let old = v7_at(chrono::Utc::now() - chrono::TimeDelta::hours(1));
    let within = v7_at(chrono::Utc::now() - chrono::TimeDelta::hours(1));
    app.log()
        .append(
            stream("job-early"),
            ExpectedVersion::Any,
            vec![line_with_ids("early", within, None)],
        )
        .await
        .unwrap();
    let window = usize::try_from(LOOKUP_WINDOW).unwrap();
    for _ in 0..window / 1000 {
        let lines = (0..1000).map(|i| line(&format!("filler {i}"))).collect();
        app.log()
            .append(stream("job-filler"), ExpectedVersion::Any, lines)
            .await
            .unwrap();
    }
    // Position LOOKUP_WINDOW + 2: past the window of an id of that time.
    let beyond = app
        .log()
        .append(
            stream("job-late"),
            ExpectedVersion::Any,
            vec![line_with_ids("late", old, None)],
        )
        .await
        .unwrap()
        .first_position;
    assert_eq!(beyond, LOOKUP_WINDOW + 2);

    let (status, found) = app.get(&format!("/api/ids/{within}")).await;
    assert_eq!((status, found["from"].as_u64()), (200, Some(1)), "{found}");
    let (status, missed) = app.get(&format!("/api/ids/{old}")).await;
    assert_eq!(status, 404, "{missed}");
    assert_says(
        &missed,
        "/error",
        &format!("among the {LOOKUP_WINDOW} events recorded from its time on (from position 1;"),
    );
}
